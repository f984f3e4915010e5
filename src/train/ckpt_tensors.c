/* train/ckpt_tensors.c — parameters and AdamW state to and from safetensors files. */
#include <stdio.h>
#include <string.h>

#include "liandan/io.h"
#include "train/ckpt_tensors.h"

/* The tensor to save for parameter t: itself, or its m / v. */
static ld_tensor *pick(ld_tensor *t, ld_adamw *opt, int which, int part) {
    if (which == 0) return part == 0 ? t : NULL;
    return ld_adamw_state(opt, t, part);
}

static int total_params(ld_params *const *sets, int n_sets) {
    int n = 0;
    for (int s = 0; s < n_sets; s++) n += ld_params_count(sets[s]);
    return n;
}

ld_status ld_ckpt_write_sets(ld_ctx *ctx, const char *path, ld_params *const *sets, int n_sets, ld_adamw *opt,
                             int which) {
    int n = total_params(sets, n_sets), parts = which ? 2 : 1, k = 0;
    ld_st_write_tensor *w = ld_calloc(ctx, (size_t)(n * parts) + 1, sizeof *w);
    if (!w) return ld_ctx_status(ctx);
    for (int s = 0; s < n_sets; s++)
        for (int i = 0; i < ld_params_count(sets[s]); i++)
            for (int part = 0; part < parts; part++) {
                ld_tensor *t = pick(ld_params_at(sets[s], i), opt, which, part);
                if (!t) continue;
                w[k++] = (ld_st_write_tensor){.name = t->name, .dtype = LD_F32, .ndim = t->ndim, .shape = t->shape,
                                              .data = t->data};
            }
    ld_str_pair meta[] = {{"format", which ? "liandan-optimizer" : "pt"}};
    ld_status st = ld_safetensors_write(ctx, path, w, (size_t)k, meta, 1);
    ld_free(ctx, w);
    return st;
}

ld_status ld_ckpt_read_sets(ld_ctx *ctx, const char *path, ld_params *const *sets, int n_sets, ld_adamw *opt,
                            int which) {
    ld_safetensors *sf = NULL;
    ld_status st = ld_safetensors_open(ctx, path, &sf);
    if (st) return st;
    int parts = which ? 2 : 1;
    size_t expected = 0;
    for (int s = 0; s < n_sets && !st; s++)
        for (int i = 0; i < ld_params_count(sets[s]) && !st; i++)
            for (int part = 0; part < parts && !st; part++) {
                ld_tensor *t = pick(ld_params_at(sets[s], i), opt, which, part);
                if (!t) continue;
                expected++;
                const ld_tensor_info *info;
                if ((st = ld_safetensors_get(ctx, sf, t->name, &info))) break;
                bool same = info->dtype == LD_F32 && info->ndim == t->ndim;
                for (int d = 0; same && d < t->ndim; d++) same = info->shape[d] == t->shape[d];
                if (!same) {
                    char want[64];
                    st = ld_error(ctx, LD_ERR_SHAPE, "%s: tensor '%s' is %s with %d dims, expected F32 %s", path,
                                  t->name, info->dtype_name, info->ndim, ld_tensor_shape_str(t, want, sizeof want));
                    break;
                }
                memcpy(t->data, info->data, info->nbytes);
            }
    if (!st && ld_safetensors_count(sf) != expected)
        st = ld_error(ctx, LD_ERR_MISMATCH, "%s: holds %zu tensors, the model expects %zu", path,
                      ld_safetensors_count(sf), expected);
    ld_safetensors_close(sf);
    return st;
}

ld_status ld_ckpt_write_params(ld_ctx *ctx, const char *path, ld_params *p, ld_adamw *opt, int which) {
    return ld_ckpt_write_sets(ctx, path, &p, 1, opt, which);
}

ld_status ld_ckpt_read_params(ld_ctx *ctx, const char *path, ld_params *p, ld_adamw *opt, int which) {
    return ld_ckpt_read_sets(ctx, path, &p, 1, opt, which);
}

ld_status ld_ckpt_read_model(ld_ctx *ctx, const char *dir, ld_params *p) {
    ld_st_set *set = NULL;
    ld_status st = ld_st_set_open(ctx, dir, &set);
    if (st) return st;
    for (int i = 0; i < ld_params_count(p) && !st; i++) {
        ld_tensor *t = ld_params_at(p, i);
        const ld_tensor_info *info;
        if ((st = ld_st_set_get(ctx, set, t->name, &info))) {
            st = ld_error_wrap(ctx, st, "%s: ", dir);
            break;
        }
        bool same = info->dtype == LD_F32 && info->ndim == t->ndim;
        for (int d = 0; same && d < t->ndim; d++) same = info->shape[d] == t->shape[d];
        if (!same) {
            char want[64];
            st = ld_error(ctx, LD_ERR_SHAPE, "%s: tensor '%s' is %s with %d dims, expected F32 %s", dir, t->name,
                          info->dtype_name, info->ndim, ld_tensor_shape_str(t, want, sizeof want));
        } else if (t->data) {
            memcpy(t->data, info->data, info->nbytes);
        }
    }
    if (!st && ld_st_set_count(set) != (size_t)ld_params_count(p))
        st = ld_error(ctx, LD_ERR_MISMATCH, "%s: the model files hold %zu tensors, the model expects %d", dir,
                      ld_st_set_count(set), ld_params_count(p));
    ld_st_set_close(set);
    return st;
}

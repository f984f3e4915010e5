/* nn/params.c — a named set of parameters with gradient buffers, one arena per lifetime. */
#include <stdio.h>
#include <string.h>

#include "core/team.h"
#include "nn/nn_internal.h"

ld_status ld_params_new(ld_ctx *ctx, ld_params **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_params_new: NULL out");
    *out = NULL;
    ld_params *p = ld_calloc(ctx, 1, sizeof *p);
    if (!p) return ld_ctx_status(ctx);
    p->ctx = ctx;
    ld_status st = ld_arena_new(ctx, (size_t)16 << 20, &p->values);
    if (!st) st = ld_arena_new(ctx, (size_t)16 << 20, &p->grads);
    if (st) {
        ld_params_free(p);
        return st;
    }
    *out = p;
    return LD_OK;
}

void ld_params_free(ld_params *p) {
    if (!p) return;
    ld_arena_free(p->values);
    ld_arena_free(p->grads);
    ld_free(p->ctx, p->list);
    ld_free(p->ctx, p->bf16);
    ld_free(p->ctx, p);
}

static ld_status add_grad(ld_params *p, ld_tensor *t) {
    if (t->grad) return LD_OK;
    ld_tensor *g = NULL;
    ld_status st = ld_tensor_new(p->ctx, p->grads, LD_F32, t->ndim, t->shape, &g);
    if (st) return st;
    snprintf(g->name, sizeof g->name, "%s.grad", t->name);
    t->grad = g;
    return LD_OK;
}

/* Adds a parameter: F32 values of its own (zeroed), or borrowed (view: data may be NULL). */
static ld_status add_param(ld_params *p, const char *name, int ndim, const int64_t *shape, bool trainable, bool view,
                           void *data, ld_tensor **out) {
    if (!p || !name || !out) return ld_error(p ? p->ctx : NULL, LD_ERR_INVALID_ARG, "ld_params_add: NULL argument");
    *out = NULL;
    if (strlen(name) >= LD_TENSOR_NAME_MAX)
        return ld_error(p->ctx, LD_ERR_INVALID_ARG, "parameter name '%.40s...' longer than %d bytes", name,
                        LD_TENSOR_NAME_MAX - 1);
    if (ld_params_find(p, name)) return ld_error(p->ctx, LD_ERR_INVALID_ARG, "parameter '%s' added twice", name);
    if (p->count == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        ld_tensor **list = ld_alloc(p->ctx, sizeof *list * (size_t)cap);
        uint16_t **bf16 = ld_calloc(p->ctx, (size_t)cap, sizeof *bf16);
        if (!list || !bf16) {
            ld_free(p->ctx, list);
            ld_free(p->ctx, bf16);
            return ld_ctx_status(p->ctx);
        }
        if (p->count) {
            memcpy(list, p->list, sizeof *list * (size_t)p->count);
            memcpy(bf16, p->bf16, sizeof *bf16 * (size_t)p->count);
        }
        ld_free(p->ctx, p->list);
        ld_free(p->ctx, p->bf16);
        p->list = list;
        p->bf16 = bf16;
        p->cap = cap;
    }
    ld_tensor *t = NULL;
    ld_status st;
    if (view) {
        ld_tensor tmp;
        if ((st = ld_tensor_init(p->ctx, &tmp, LD_F32, ndim, shape))) return ld_error_wrap(p->ctx, st, "parameter '%s': ", name);
        if (!(t = ld_arena_alloc(p->values, sizeof *t))) return ld_ctx_status(p->ctx);
        *t = tmp;
        t->data = data;
    } else if ((st = ld_tensor_new(p->ctx, p->values, LD_F32, ndim, shape, &t))) {
        return ld_error_wrap(p->ctx, st, "parameter '%s': ", name);
    }
    ld_tensor_set_name(t, name);
    t->flags = LD_TENSOR_PARAM | (trainable ? LD_TENSOR_TRAINABLE : 0) | (view ? LD_TENSOR_VIEW : 0);
    if (trainable && (st = add_grad(p, t))) return st;
    p->list[p->count++] = t;
    *out = t;
    return LD_OK;
}

ld_status ld_params_add(ld_params *p, const char *name, int ndim, const int64_t *shape, bool trainable,
                        ld_tensor **out) {
    return add_param(p, name, ndim, shape, trainable, false, NULL, out);
}

ld_status ld_params_add_view(ld_params *p, const char *name, int ndim, const int64_t *shape, void *data,
                             ld_tensor **out) {
    return add_param(p, name, ndim, shape, false, true, data, out);
}

int ld_params_count(const ld_params *p) {
    return p ? p->count : 0;
}

ld_tensor *ld_params_at(const ld_params *p, int i) {
    return p && i >= 0 && i < p->count ? p->list[i] : NULL;
}

ld_tensor *ld_params_find(const ld_params *p, const char *name) {
    if (!p || !name) return NULL;
    for (int i = 0; i < p->count; i++)
        if (!strcmp(p->list[i]->name, name)) return p->list[i];
    return NULL;
}

int64_t ld_params_numel(const ld_params *p, bool trainable_only) {
    int64_t n = 0;
    for (int i = 0; p && i < p->count; i++)
        if (!trainable_only || (p->list[i]->flags & LD_TENSOR_TRAINABLE)) n += ld_tensor_numel(p->list[i]);
    return n;
}

int ld_params_set_trainable(ld_params *p, const char *substr, bool trainable) {
    if (!p) return -1;
    int n = 0;
    for (int i = 0; i < p->count; i++) {
        ld_tensor *t = p->list[i];
        if (substr && !strstr(t->name, substr)) continue;
        n++;
        if (trainable) {
            if (t->flags & LD_TENSOR_VIEW) {
                ld_error(p->ctx, LD_ERR_STATE, "parameter '%s' has no values of its own to train (the model was "
                         "loaded for inference: load it for training)", t->name);
                return -1;
            }
            if (add_grad(p, t)) return -1;
            t->flags |= LD_TENSOR_TRAINABLE;
        } else {
            t->flags &= ~(uint32_t)LD_TENSOR_TRAINABLE;
        }
    }
    return n;
}

static void zero_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    memset((float *)arg + lo, 0, (size_t)(hi - lo) * sizeof(float));
}

/* On the context's team: one thread's memset moves about half of what two do (the 124M
 * shape's 500 MB of gradients every step). */
void ld_params_zero_grad(ld_params *p) {
    LD_TEAM_SCOPE(p ? p->ctx : NULL);
    for (int i = 0; p && i < p->count; i++) {
        ld_tensor *t = p->list[i];
        if (t->grad && (t->flags & LD_TENSOR_TRAINABLE)) ld_par_for(ld_tensor_numel(t->grad), LD_PAR_MIN, zero_part, t->grad->data);
    }
}

ld_status ld_params_enable_bf16(ld_params *p) {
    LD_TEAM_SCOPE(p ? p->ctx : NULL);
    if (!p) return LD_ERR_INVALID_ARG;
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    for (int i = 0; i < p->count; i++) {
        ld_tensor *t = p->list[i];
        if (t->ndim != 2 || p->bf16[i] || !t->data) continue;
        int64_t n = ld_tensor_numel(t);
        p->bf16[i] = ld_arena_alloc(p->values, (size_t)n * sizeof(uint16_t));
        if (!p->bf16[i]) return ld_ctx_status(p->ctx);
        k->f32_to_bf16(p->bf16[i], t->data, n);
    }
    return LD_OK;
}

const uint16_t *ld_params_bf16_of(const ld_params *p, const ld_tensor *t) {
    if (!p || !p->bf16) return NULL;
    for (int i = 0; i < p->count; i++)
        if (p->list[i] == t) return p->bf16[i];
    return NULL;
}

void ld_params_refresh_bf16(ld_params *p) {
    LD_TEAM_SCOPE(p ? p->ctx : NULL);
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    for (int i = 0; p && i < p->count; i++)
        if (p->bf16[i] && p->list[i]->data) k->f32_to_bf16(p->bf16[i], p->list[i]->data, ld_tensor_numel(p->list[i]));
}

double ld_bf16_gemm_speedup(void) {
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    return k->gemm_bf16_speedup ? k->gemm_bf16_speedup() : 1.0;
}

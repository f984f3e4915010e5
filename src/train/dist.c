/* train/dist.c — data-parallel training (docs/scale-out.md): attaching a trainer to its ranks,
 * and the ZeRO-1 optimizer shards of a checkpoint:
 *
 *   step-NNNNNNN/optimizer-RRRRR-of-WWWWW.safetensors   rank R's range of the flat order:
 *                                                        "exp_avg" and "exp_avg_sq", F32 [hi - lo]
 *                optimizer_shards.json                   {"format_version": 1, "ranks": W,
 *                                                         "n_trainable": N, "shards": [{"file",
 *                                                         "lo", "hi"}...], "parameters": [{"name",
 *                                                         "numel"}...] in the flat order}
 *
 * A checkpoint loads on any number of ranks: each rank copies the parts of the shards (or of a
 * single-process optimizer.safetensors) that overlap its own range. */
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/io.h"
#include "train/ckpt_tensors.h"
#include "train/grad_sync.h"
#include "train/trainer_internal.h"

#define SHARDS_VERSION 1

static bool keep_dense(void *user, const ld_tensor *x) {
    return lm_expert_index(user, x) < 0;
}
static bool keep_expert(void *user, const ld_tensor *x) {
    return lm_expert_index(user, x) >= 0;
}

/* Expert parallelism over groups of P = t->p.expert_parallel consecutive ranks: the group's
 * communicator (and the one of the ranks holding the same experts), the model told which
 * experts this rank computes. A job's model holds only those (lm_build_part: the others have
 * no values); a model holding every expert (a trainer made through the API) has the others
 * frozen here and the optimizer made again for what still trains. Before the starting values
 * are sent. */
static ld_status ep_setup(ld_trainer *t) {
    ld_ctx *ctx = t->ctx;
    const int P = (int)t->p.expert_parallel;
    ld_status st;
    if (t->p.zero) return ld_error(ctx, LD_ERR_UNSUPPORTED, "expert_parallel %d: not with zero (ZeRO-1) yet", P);
    if (t->adapter || !t->base_trainable)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "expert_parallel %d: trains a model's own experts, not an adapter", P);
    if (t->p.early_stopping > 0)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "expert_parallel %d: not with early_stopping yet (each rank keeps "
                        "only its own experts' best values)", P);
    if ((st = ld_comm_split(t->comm, t->rank / P, t->rank, &t->ep_comm))) return st;
    if (t->world > P && (st = ld_comm_split(t->comm, t->rank % P, t->rank, &t->ep_dp))) return st;
    if ((st = lm_set_expert_parallel(t->m, t->ep_comm))) return st;
    const int n = ld_params_count(t->params);
    if (!(t->ep_is_expert = ld_calloc(ctx, (size_t)n + 1, 1)) ||
        !(t->ep_frozen = ld_calloc(ctx, (size_t)n + 1, sizeof *t->ep_frozen)))
        return ld_ctx_status(ctx);
    for (int i = 0; i < n; i++) {
        ld_tensor *x = ld_params_at(t->params, i);
        int64_t e = lm_expert_index(t->m, x);
        t->ep_is_expert[i] = e >= 0;
        if (e >= 0 && (e < t->m->ep_lo || e >= t->m->ep_hi) && (x->flags & LD_TENSOR_TRAINABLE)) {
            x->flags &= ~(uint32_t)LD_TENSOR_TRAINABLE;
            t->ep_frozen[t->n_ep_frozen++] = x;
        }
    }
    ld_adamw_free(t->opt), t->opt = NULL;
    if ((st = ld_adamw_new(t->sets[0], &t->p.optim, &t->opt))) return st;
    t->n_trainable = ld_params_numel(t->params, true);
    return LD_OK;
}

void ld_dist_ep_free(ld_trainer *t) {
    for (int i = 0; i < t->n_ep_frozen; i++) t->ep_frozen[i]->flags |= LD_TENSOR_TRAINABLE;
    if (t->ep_comm && t->m) lm_set_expert_parallel(t->m, NULL);
    ld_grad_sync_free(t->gs_exp);
    ld_comm_free(t->ep_dp);
    ld_comm_free(t->ep_comm);
    ld_free(t->ctx, t->ep_frozen);
    ld_free(t->ctx, t->ep_is_expert);
    t->gs_exp = NULL, t->ep_dp = t->ep_comm = NULL, t->ep_frozen = NULL, t->ep_is_expert = NULL, t->n_ep_frozen = 0;
}

ld_status ld_dist_write_model(ld_trainer *t, const char *dir, bool meta) {
    ld_status st = LD_OK;
    if (!t->ep_comm || t->rank >= ld_comm_size(t->ep_comm)) return LD_OK; /* the first group's files hold every expert */
    if (meta && t->rank == 0) st = lm_save_meta(t->m, dir);
    return st ? st : lm_save_ep_part(t->m, dir, t->rank == 0);
}

ld_status ld_trainer_set_comm(ld_trainer *t, ld_comm *comm) {
    if (!t || !comm) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    if (t->comm) return ld_error(ctx, LD_ERR_STATE, "data parallel: the trainer already has its ranks");
    t->comm = comm, t->rank = ld_comm_rank(comm), t->world = ld_comm_size(comm);
    const int64_t P = t->p.expert_parallel;
    if (P > 1 && (!t->m || t->m->cfg.n_experts < 1))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "expert_parallel %lld: the model has no mixture-of-experts layers",
                        (long long)P);
    if (P > 1 && t->world % P)
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "expert_parallel %lld needs a multiple of %lld ranks (this run has %d; start it with mpirun -np "
                        "N)", (long long)P, (long long)P, t->world);
    if (t->world == 1) return LD_OK;
    ld_status st = P > 1 ? ep_setup(t) : LD_OK;
    if (st) return st;
    /* one starting point: rank 0's trainable values (expert parallelism: each expert's from the
     * first rank holding it) */
    for (int s = 0; s < t->n_sets && !st; s++) {
        for (int i = 0; i < ld_params_count(t->sets[s]) && !st; i++) {
            ld_tensor *x = ld_params_at(t->sets[s], i);
            if (!(x->flags & LD_TENSOR_TRAINABLE)) continue;
            if (P > 1 && s == 0 && t->ep_is_expert[i]) {
                if (t->ep_dp) st = ld_comm_bcast(t->ep_dp, x->data, ld_tensor_numel(x), LD_COMM_F32, 0);
            } else {
                st = ld_comm_bcast(comm, x->data, ld_tensor_numel(x), LD_COMM_F32, 0);
            }
        }
        ld_params_refresh_bf16(t->sets[s]);
    }
    if (st) return ld_error_wrap(ctx, st, "data parallel: sending rank 0's parameters: ");
    float mb = t->p.dp_bucket_mb > 0 ? t->p.dp_bucket_mb : 25.0f;
    size_t bucket = (size_t)((double)mb * 1048576.0);
    if (P > 1) { /* the dense gradients over every rank, the experts' over the ranks holding them */
        if ((st = ld_grad_sync_new_only(ctx, comm, t->sets, t->n_sets, bucket, !t->p.dp_no_overlap, keep_dense, t->m,
                                        &t->gs)))
            return st;
        if (t->ep_dp && (st = ld_grad_sync_new_only(ctx, t->ep_dp, t->sets, t->n_sets, bucket, false, keep_expert, t->m,
                                                    &t->gs_exp)))
            return st;
        if (t->p.dp_bf16 && ((st = ld_grad_sync_set_bf16(t->gs, true)) || (t->gs_exp && (st = ld_grad_sync_set_bf16(t->gs_exp, true)))))
            return st;
        return LD_OK;
    }
    if ((st = ld_grad_sync_new(ctx, comm, t->sets, t->n_sets, bucket, !t->p.dp_no_overlap, &t->gs))) return st;
    if (t->p.dp_bf16 && (st = ld_grad_sync_set_bf16(t->gs, true))) return st;
    if (t->p.zero) {
        const int64_t *b = ld_grad_sync_bounds(t->gs);
        if ((st = ld_adamw_shard(t->opt, b[t->rank], b[t->rank + 1]))) return st;
        t->zero = true;
    }
    return LD_OK;
}

void ld_dist_fault(const ld_trainer *t) {
    const char *f = getenv("LD_FAULT_KILL");
    int rank = -1;
    long long step = -1;
    if (f && sscanf(f, "%d:%lld", &rank, &step) == 2 && rank == t->rank && step == (long long)t->step) {
        ld_log(t->ctx, LD_LOG_WARN, "LD_FAULT_KILL: rank %d kills itself before step %lld", rank, step + 1);
        raise(SIGKILL);
    }
}

ld_status ld_dist_agree(ld_trainer *t, ld_status st, const char *what) {
    if (!t->comm || t->world == 1) return st;
    int64_t first = st ? t->rank : t->world;
    ld_status cs = ld_comm_allreduce(t->comm, &first, 1, LD_COMM_I64, LD_COMM_MIN);
    if (cs) return st ? st : cs;
    if (st || first == t->world) return st;
    return ld_error(t->ctx, LD_ERR_STATE, "%s failed on rank %lld (see its log)", what, (long long)first);
}

/* The trainable parameters in the flat order, as (tensor, offset) pairs, via a callback. */
typedef ld_status (*flat_fn)(void *user, ld_tensor *x, int64_t off);
static ld_status each_flat(ld_trainer *t, flat_fn fn, void *user) {
    int64_t off = 0;
    for (int s = 0; s < t->n_sets; s++)
        for (int i = 0; i < ld_params_count(t->sets[s]); i++) {
            ld_tensor *x = ld_params_at(t->sets[s], i);
            if (!(x->flags & LD_TENSOR_TRAINABLE)) continue;
            ld_status st = fn(user, x, off);
            if (st) return st;
            off += ld_tensor_numel(x);
        }
    return LD_OK;
}

static ld_status add_param(void *user, ld_tensor *x, int64_t off) {
    (void)off;
    cJSON *e = cJSON_CreateObject();
    if (!e) return LD_ERR_NOMEM;
    cJSON_AddStringToObject(e, "name", x->name);
    cJSON_AddNumberToObject(e, "numel", (double)ld_tensor_numel(x));
    cJSON_AddItemToArray(user, e);
    return LD_OK;
}

ld_status ld_dist_write_optimizer(ld_trainer *t, const char *dir) {
    ld_ctx *ctx = t->ctx;
    int64_t lo, hi, N = ld_adamw_numel(t->opt);
    ld_adamw_range(t->opt, &lo, &hi);
    int64_t n = hi - lo;
    char path[LD_TRAIN_PATH_MAX + 64], v_lo[32], v_hi[32], v_n[32];
    float *m = ld_alloc(ctx, (size_t)(n > 0 ? n : 1) * sizeof(float) * 2);
    if (!m) return ld_ctx_status(ctx);
    float *v = m + (n > 0 ? n : 1);
    ld_status st = ld_adamw_state_io(t->opt, lo, n, m, v, false);
    snprintf(path, sizeof path, "%s/optimizer-%05d-of-%05d.safetensors", dir, t->rank, t->world);
    snprintf(v_lo, sizeof v_lo, "%lld", (long long)lo);
    snprintf(v_hi, sizeof v_hi, "%lld", (long long)hi);
    snprintf(v_n, sizeof v_n, "%lld", (long long)N);
    ld_st_write_tensor w[2] = {{.name = "exp_avg", .dtype = LD_F32, .ndim = 1, .shape = &n, .data = m},
                               {.name = "exp_avg_sq", .dtype = LD_F32, .ndim = 1, .shape = &n, .data = v}};
    ld_str_pair meta[] = {{"format", "liandan-optimizer-shard"}, {"lo", v_lo}, {"hi", v_hi}, {"n_trainable", v_n}};
    if (!st) st = ld_safetensors_write(ctx, path, w, 2, meta, 4);
    ld_free(ctx, m);
    if (st || t->rank != 0) return st;
    /* the manifest: every rank's range, and what the flat order is made of */
    cJSON *o = cJSON_CreateObject(), *shards = o ? cJSON_AddArrayToObject(o, "shards") : NULL;
    cJSON *params = o ? cJSON_AddArrayToObject(o, "parameters") : NULL;
    if (!shards || !params) {
        cJSON_Delete(o);
        return ld_error(ctx, LD_ERR_NOMEM, "checkpoint manifest: out of memory");
    }
    cJSON_AddNumberToObject(o, "format_version", SHARDS_VERSION);
    cJSON_AddNumberToObject(o, "ranks", t->world);
    cJSON_AddNumberToObject(o, "n_trainable", (double)N);
    const int64_t *b = ld_grad_sync_bounds(t->gs);
    for (int r = 0; r < t->world; r++) {
        cJSON *e = cJSON_CreateObject();
        char name[64];
        snprintf(name, sizeof name, "optimizer-%05d-of-%05d.safetensors", r, t->world);
        cJSON_AddStringToObject(e, "file", name);
        cJSON_AddNumberToObject(e, "lo", (double)b[r]);
        cJSON_AddNumberToObject(e, "hi", (double)b[r + 1]);
        cJSON_AddItemToArray(shards, e);
    }
    st = each_flat(t, add_param, params);
    char *js = st ? NULL : cJSON_Print(o);
    cJSON_Delete(o);
    if (!js) return ld_error(ctx, LD_ERR_NOMEM, "checkpoint manifest: out of memory");
    snprintf(path, sizeof path, "%s/optimizer_shards.json", dir);
    st = ld_file_write_atomic(ctx, path, js, strlen(js));
    free(js);
    return st;
}

/* A whole number in [0, max] from a JSON number, or -1. */
static int64_t json_count(const cJSON *v, double max) {
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > max ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return -1;
    return (int64_t)v->valuedouble;
}

void ld_opt_manifest_free(ld_ctx *ctx, ld_opt_manifest *m) {
    if (!m) return;
    for (int i = 0; m->files && i < m->n_shards; i++) ld_free(ctx, m->files[i]);
    for (int i = 0; m->names && i < m->n_params; i++) ld_free(ctx, m->names[i]);
    ld_free(ctx, m->files), ld_free(ctx, m->names), ld_free(ctx, m->lo), ld_free(ctx, m->numel);
    *m = (ld_opt_manifest){0};
}

static char *dup_str(ld_ctx *ctx, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = ld_alloc(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

ld_status ld_opt_manifest_parse(ld_ctx *ctx, const char *text, size_t len, const char *path, ld_opt_manifest *out) {
    *out = (ld_opt_manifest){0};
    cJSON *o = text ? cJSON_ParseWithLength(text, len) : NULL;
    ld_status st = LD_OK;
    const cJSON *ver = cJSON_GetObjectItem(o, "format_version"), *shards = cJSON_GetObjectItem(o, "shards");
    const cJSON *params = cJSON_GetObjectItem(o, "parameters");
    int64_t n_tr = json_count(cJSON_GetObjectItem(o, "n_trainable"), 1e15);
    if (!cJSON_IsObject(o) || json_count(ver, 1e9) != SHARDS_VERSION || !cJSON_IsArray(shards) || !cJSON_IsArray(params) ||
        n_tr < 0) {
        cJSON_Delete(o);
        return ld_error(ctx, LD_ERR_FORMAT,
                        "%s: not a version-%d optimizer shard manifest (format_version, n_trainable, shards, parameters)",
                        path, SHARDS_VERSION);
    }
    int ns = cJSON_GetArraySize(shards), np = cJSON_GetArraySize(params);
    out->n_trainable = n_tr;
    if (ns < 1 || ns > (1 << 20) || np > (1 << 24)) {
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: %d shards and %d parameters (need 1 to 2^20 shards, at most 2^24 parameters)",
                      path, ns, np);
        goto done;
    }
    if (!(out->files = ld_calloc(ctx, (size_t)ns, sizeof *out->files)) ||
        !(out->lo = ld_calloc(ctx, 2 * (size_t)ns, sizeof *out->lo)) ||
        !(out->names = ld_calloc(ctx, (size_t)np + 1, sizeof *out->names)) ||
        !(out->numel = ld_calloc(ctx, (size_t)np + 1, sizeof *out->numel))) {
        st = ld_ctx_status(ctx);
        goto done;
    }
    out->hi = out->lo + ns;
    int64_t expect = 0; /* shards tile [0, n_trainable) in order */
    const cJSON *it;
    cJSON_ArrayForEach(it, shards) {
        int i = out->n_shards;
        const cJSON *file = cJSON_GetObjectItem(it, "file");
        int64_t lo = json_count(cJSON_GetObjectItem(it, "lo"), 1e15), hi = json_count(cJSON_GetObjectItem(it, "hi"), 1e15);
        if (!cJSON_IsString(file) || !file->valuestring[0] || strchr(file->valuestring, '/') ||
            !strcmp(file->valuestring, "..") || strlen(file->valuestring) > 255) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: shard %d: 'file' must be a plain file name in the checkpoint", path, i);
            goto done;
        }
        if (lo != expect || hi < lo || hi > n_tr) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: shard %d: need lo = %lld and lo <= hi <= n_trainable %lld", path, i,
                          (long long)expect, (long long)n_tr);
            goto done;
        }
        if (!(out->files[i] = dup_str(ctx, file->valuestring))) {
            st = ld_ctx_status(ctx);
            goto done;
        }
        out->lo[i] = lo, out->hi[i] = hi, out->n_shards++;
        expect = hi;
    }
    if (expect != n_tr) {
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: the shards end at %lld, not at n_trainable %lld", path, (long long)expect,
                      (long long)n_tr);
        goto done;
    }
    int64_t total = 0;
    cJSON_ArrayForEach(it, params) {
        int i = out->n_params;
        const cJSON *name = cJSON_GetObjectItem(it, "name");
        int64_t n = json_count(cJSON_GetObjectItem(it, "numel"), 1e15);
        if (!cJSON_IsString(name) || n < 1) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: parameter %d: need a string 'name' and a 'numel' >= 1", path, i);
            goto done;
        }
        if (!(out->names[i] = dup_str(ctx, name->valuestring))) {
            st = ld_ctx_status(ctx);
            goto done;
        }
        out->numel[i] = n, out->n_params++;
        total += n;
    }
    if (total != n_tr)
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: the parameters hold %lld values, not n_trainable %lld", path,
                      (long long)total, (long long)n_tr);
done:
    cJSON_Delete(o);
    if (st) ld_opt_manifest_free(ctx, out);
    return st;
}

typedef struct check_args {
    const ld_opt_manifest *m;
    int at;
    const char *path;
    ld_ctx *ctx;
} check_args;

static ld_status check_param(void *user, ld_tensor *x, int64_t off) {
    check_args *a = user;
    (void)off;
    const ld_opt_manifest *m = a->m;
    if (a->at >= m->n_params || strcmp(m->names[a->at], x->name) || m->numel[a->at] != ld_tensor_numel(x))
        return ld_error(a->ctx, LD_ERR_MISMATCH,
                        "%s: the optimizer shards were written for other parameters (at '%s' [%lld]: the checkpoint "
                        "has '%s')",
                        a->path, x->name, (long long)ld_tensor_numel(x), a->at < m->n_params ? m->names[a->at] : "nothing");
    a->at++;
    return LD_OK;
}

/* State of [b, e) from one shard file covering [slo, shi). */
static ld_status read_shard(ld_trainer *t, const char *path, int64_t slo, int64_t shi, int64_t b, int64_t e) {
    ld_ctx *ctx = t->ctx;
    ld_safetensors *sf = NULL;
    ld_status st = ld_safetensors_open(ctx, path, &sf);
    if (st) return st;
    const ld_tensor_info *m = NULL, *v = NULL;
    if (!(st = ld_safetensors_get(ctx, sf, "exp_avg", &m)) && !(st = ld_safetensors_get(ctx, sf, "exp_avg_sq", &v))) {
        size_t want = (size_t)(shi - slo) * sizeof(float);
        if (m->dtype != LD_F32 || v->dtype != LD_F32 || m->nbytes != want || v->nbytes != want)
            st = ld_error(ctx, LD_ERR_SHAPE, "%s: exp_avg / exp_avg_sq must be F32 [%lld] (the manifest's range)", path,
                          (long long)(shi - slo));
        else
            st = ld_adamw_state_io(t->opt, b, e - b, (float *)m->data + (b - slo), (float *)v->data + (b - slo), true);
    }
    ld_safetensors_close(sf);
    return st;
}

static ld_status read_sharded(ld_trainer *t, const char *dir, const char *text, size_t len, const char *mpath) {
    ld_ctx *ctx = t->ctx;
    ld_opt_manifest m;
    ld_status st = ld_opt_manifest_parse(ctx, text, len, mpath, &m);
    if (st) return st;
    int64_t N = ld_adamw_numel(t->opt), lo, hi;
    ld_adamw_range(t->opt, &lo, &hi);
    check_args ca = {&m, 0, mpath, ctx};
    if (m.n_trainable != N)
        st = ld_error(ctx, LD_ERR_MISMATCH, "%s: the shards hold %lld trainable values, this run trains %lld", mpath,
                      (long long)m.n_trainable, (long long)N);
    if (!st) st = each_flat(t, check_param, &ca);
    for (int i = 0; !st && i < m.n_shards; i++) {
        int64_t b = m.lo[i] > lo ? m.lo[i] : lo, e = m.hi[i] < hi ? m.hi[i] : hi;
        if (b >= e) continue;
        char path[LD_TRAIN_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, m.files[i]);
        st = read_shard(t, path, m.lo[i], m.hi[i], b, e);
    }
    ld_opt_manifest_free(ctx, &m);
    return st;
}

typedef struct slice_args {
    ld_trainer *t;
    ld_safetensors *sf;
    const char *path;
    int64_t lo, hi;
} slice_args;

/* ZeRO-1 from a single-process optimizer.safetensors: this rank's slice of each parameter's m, v. */
static ld_status read_slice(void *user, ld_tensor *x, int64_t off) {
    slice_args *a = user;
    int64_t n = ld_tensor_numel(x), b = off > a->lo ? off : a->lo, e = off + n < a->hi ? off + n : a->hi;
    if (b >= e) return LD_OK;
    char nm[2][sizeof x->name + 16];
    snprintf(nm[0], sizeof nm[0], "%s.exp_avg", x->name);
    snprintf(nm[1], sizeof nm[1], "%s.exp_avg_sq", x->name);
    const ld_tensor_info *info[2];
    for (int k = 0; k < 2; k++) {
        ld_status st = ld_safetensors_get(a->t->ctx, a->sf, nm[k], &info[k]);
        if (st) return st;
        if (info[k]->dtype != LD_F32 || info[k]->nbytes != (size_t)n * sizeof(float))
            return ld_error(a->t->ctx, LD_ERR_SHAPE, "%s: tensor '%s' does not match the parameter", a->path, nm[k]);
    }
    return ld_adamw_state_io(a->t->opt, b, e - b, (float *)info[0]->data + (b - off), (float *)info[1]->data + (b - off),
                             true);
}

ld_status ld_dist_read_optimizer(ld_trainer *t, const char *dir) {
    ld_ctx *ctx = t->ctx;
    char path[LD_TRAIN_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/optimizer_shards.json", dir);
    char *text = NULL;
    size_t len = 0;
    ld_status st = ld_file_read(ctx, path, (size_t)64 << 20, &text, &len);
    if (st == LD_OK) {
        st = read_sharded(t, dir, text, len, path);
        ld_free(ctx, text);
        return st;
    }
    if (st != LD_ERR_NOT_FOUND) return st;
    ld_ctx_clear_error(ctx);
    if (t->ep_comm) { /* expert parallelism: this rank's own file, written by the same layout of ranks */
        snprintf(path, sizeof path, "%s/optimizer-ep-%05d-of-%05d.safetensors", dir, t->rank, t->world);
        if ((st = ld_ckpt_read_sets(ctx, path, t->sets, t->n_sets, t->opt, 1)))
            return ld_error_wrap(ctx, st, "an expert-parallel run resumes a checkpoint of the same ranks and "
                                 "expert_parallel (%d, %lld): ", t->world, (long long)t->p.expert_parallel);
        return LD_OK;
    }
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (!t->zero) return ld_ckpt_read_sets(ctx, path, t->sets, t->n_sets, t->opt, 1);
    slice_args a = {.t = t, .path = path};
    ld_adamw_range(t->opt, &a.lo, &a.hi);
    if ((st = ld_safetensors_open(ctx, path, &a.sf))) return st;
    st = each_flat(t, read_slice, &a);
    ld_safetensors_close(a.sf);
    return st;
}

/* nn/adamw.c — AdamW with decoupled weight decay and global-norm gradient clipping over a
 * parameter set (or a few: a base model's and an adapter's, clipped by their global norm). State
 * (m, v) lives in its own arena: the optimizer lifetime class. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/team.h"
#include "nn/nn_internal.h"

#define ADAMW_MAX_SETS 4

/* The state of one parameter set: m and v per parameter index (NULL for frozen ones). */
typedef struct adamw_set {
    ld_params *params;
    ld_tensor **m, **v;
    int64_t *first;  /* ZeRO-1: per parameter, its first element with state (NULL: all of them) */
    int n;
} adamw_set;

struct ld_adamw {
    ld_ctx *ctx;
    ld_adamw_config cfg;
    ld_arena *state;
    adamw_set sets[ADAMW_MAX_SETS];
    int n_sets;
    int64_t steps;
    int64_t lo, hi;   /* ZeRO-1: the flat range with state (hi < 0: everything) */
};

ld_adamw_config ld_adamw_default_config(void) {
    ld_adamw_config c = {.lr = 3e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                         .max_grad_norm = 1.0f};
    return c;
}

void ld_adamw_free(ld_adamw *o) {
    if (!o) return;
    ld_arena_free(o->state);
    for (int s = 0; s < o->n_sets; s++) {
        ld_free(o->ctx, o->sets[s].m);
        ld_free(o->ctx, o->sets[s].v);
        ld_free(o->ctx, o->sets[s].first);
    }
    ld_free(o->ctx, o);
}

ld_status ld_adamw_add_params(ld_adamw *o, ld_params *p) {
    if (!o || !p) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = o->ctx;
    if (o->n_sets == ADAMW_MAX_SETS)
        return ld_error(ctx, LD_ERR_LIMIT, "adamw: at most %d parameter sets", ADAMW_MAX_SETS);
    adamw_set *s = &o->sets[o->n_sets];
    s->params = p;
    s->n = p->count;
    if (!(s->m = ld_calloc(ctx, (size_t)s->n + 1, sizeof *s->m)) || !(s->v = ld_calloc(ctx, (size_t)s->n + 1, sizeof *s->v))) {
        ld_free(ctx, s->m);
        s->m = NULL;
        return ld_ctx_status(ctx);
    }
    o->n_sets++;
    ld_status st = LD_OK;
    for (int i = 0; !st && i < s->n; i++) {
        ld_tensor *t = p->list[i];
        if (!(t->flags & LD_TENSOR_TRAINABLE)) continue;
        st = ld_tensor_new(ctx, o->state, LD_F32, t->ndim, t->shape, &s->m[i]);
        if (!st) st = ld_tensor_new(ctx, o->state, LD_F32, t->ndim, t->shape, &s->v[i]);
        if (!st) {
            snprintf(s->m[i]->name, sizeof s->m[i]->name, "%s.exp_avg", t->name);
            snprintf(s->v[i]->name, sizeof s->v[i]->name, "%s.exp_avg_sq", t->name);
        }
    }
    return st;
}

ld_status ld_adamw_new(ld_params *p, const ld_adamw_config *cfg, ld_adamw **out) {
    if (!p || !out) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = p->ctx;
    *out = NULL;
    ld_adamw_config c = cfg ? *cfg : ld_adamw_default_config();
    if (!(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1 && c.eps > 0 && c.weight_decay >= 0))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "adamw: need 0 <= beta1, beta2 < 1, eps > 0, weight_decay >= 0");
    ld_adamw *o = ld_calloc(ctx, 1, sizeof *o);
    if (!o) return ld_ctx_status(ctx);
    o->ctx = ctx, o->lo = 0, o->hi = -1;
    o->cfg = c;
    ld_status st = ld_arena_new(ctx, (size_t)16 << 20, &o->state);
    if (!st) st = ld_adamw_add_params(o, p);
    if (st) {
        ld_adamw_free(o);
        return st;
    }
    *out = o;
    return LD_OK;
}

double ld_params_grad_norm(ld_params *p, float grad_scale) {
    LD_TEAM_SCOPE(p ? p->ctx : NULL);
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    double ss = 0;
    for (int i = 0; p && i < p->count; i++) {
        ld_tensor *t = p->list[i];
        if ((t->flags & LD_TENSOR_TRAINABLE) && t->grad) ss += k->sumsq(t->grad->data, ld_tensor_numel(t));
    }
    return sqrt(ss) * fabs((double)grad_scale);
}

ld_status ld_adamw_step(ld_adamw *o, float lr, float grad_scale, double *grad_norm) {
    LD_TEAM_SCOPE(o ? o->ctx : NULL);
    if (!o) return LD_ERR_INVALID_ARG;
    double ss = 0;
    for (int s = 0; o->n_sets > 1 && s < o->n_sets; s++) {
        double n = ld_params_grad_norm(o->sets[s].params, grad_scale);
        ss += n * n;
    }
    double norm = o->n_sets == 1 ? ld_params_grad_norm(o->sets[0].params, grad_scale) : sqrt(ss);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return ld_error(o->ctx, LD_ERR_NUMERIC, "gradient norm is %g: update skipped", norm);
    float scale = grad_scale;
    if (o->cfg.max_grad_norm > 0 && norm > o->cfg.max_grad_norm) scale *= (float)(o->cfg.max_grad_norm / norm);
    o->steps++;
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    for (int s = 0; s < o->n_sets; s++) {
        const adamw_set *S = &o->sets[s];
        for (int i = 0; i < S->n; i++) {
            ld_tensor *t = S->params->list[i];
            if (!(t->flags & LD_TENSOR_TRAINABLE) || !S->m[i]) continue;
            ld_adamw_params ap = {.lr = lr, .beta1 = o->cfg.beta1, .beta2 = o->cfg.beta2, .eps = o->cfg.eps,
                                  .weight_decay = t->ndim >= 2 ? o->cfg.weight_decay : 0.0f, .step = o->steps,
                                  .grad_scale = scale};
            int64_t f = S->first ? S->first[i] : 0; /* ZeRO-1: the slice [f, f + numel(m)) */
            uint16_t *b16 = S->params->bf16[i] ? S->params->bf16[i] + f : NULL;
            k->adamw((float *)t->data + f, (float *)t->grad->data + f, S->m[i]->data, S->v[i]->data, b16,
                     ld_tensor_numel(S->m[i]), &ap);
        }
    }
    return LD_OK;
}

int64_t ld_adamw_steps(const ld_adamw *o) {
    return o ? o->steps : 0;
}
void ld_adamw_set_steps(ld_adamw *o, int64_t steps) {
    if (o) o->steps = steps;
}

ld_tensor *ld_adamw_state(ld_adamw *o, const ld_tensor *param, int which) {
    if (!o || !param) return NULL;
    for (int s = 0; s < o->n_sets; s++)
        for (int i = 0; i < o->sets[s].n; i++)
            if (o->sets[s].params->list[i] == param) return which ? o->sets[s].v[i] : o->sets[s].m[i];
    return NULL;
}

int64_t ld_adamw_numel(const ld_adamw *o) {
    int64_t n = 0;
    for (int s = 0; o && s < o->n_sets; s++)
        for (int i = 0; i < o->sets[s].n; i++)
            if (o->sets[s].params->list[i]->flags & LD_TENSOR_TRAINABLE) n += ld_tensor_numel(o->sets[s].params->list[i]);
    return n;
}

void ld_adamw_range(const ld_adamw *o, int64_t *lo, int64_t *hi) {
    *lo = o && o->hi >= 0 ? o->lo : 0;
    *hi = o && o->hi >= 0 ? o->hi : ld_adamw_numel(o);
}

ld_status ld_adamw_shard(ld_adamw *o, int64_t lo, int64_t hi) {
    if (!o) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = o->ctx;
    int64_t N = ld_adamw_numel(o);
    if (lo < 0 || hi < lo || hi > N)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "adamw: shard [%lld, %lld) is not inside the %lld trainable values",
                        (long long)lo, (long long)hi, (long long)N);
    ld_arena *a = NULL;
    ld_status st = ld_arena_new(ctx, (size_t)16 << 20, &a);
    if (st) return st;
    for (int s = 0; s < o->n_sets; s++) {
        adamw_set *S = &o->sets[s];
        if (!S->first && !(S->first = ld_calloc(ctx, (size_t)S->n + 1, sizeof *S->first))) {
            ld_arena_free(a);
            return ld_ctx_status(ctx);
        }
    }
    int64_t off = 0;
    for (int s = 0; s < o->n_sets && !st; s++) {
        adamw_set *S = &o->sets[s];
        for (int i = 0; i < S->n && !st; i++) {
            ld_tensor *t = S->params->list[i];
            S->m[i] = S->v[i] = NULL, S->first[i] = 0;
            if (!(t->flags & LD_TENSOR_TRAINABLE)) continue;
            int64_t n = ld_tensor_numel(t), b = off > lo ? off : lo, e = off + n < hi ? off + n : hi;
            off += n;
            if (b >= e) continue;
            int64_t len = e - b;
            S->first[i] = b - (off - n);
            st = ld_tensor_new(ctx, a, LD_F32, 1, &len, &S->m[i]);
            if (!st) st = ld_tensor_new(ctx, a, LD_F32, 1, &len, &S->v[i]);
            if (!st) {
                snprintf(S->m[i]->name, sizeof S->m[i]->name, "%s.exp_avg", t->name);
                snprintf(S->v[i]->name, sizeof S->v[i]->name, "%s.exp_avg_sq", t->name);
            }
        }
    }
    if (st) { /* the old arena is gone with its tensors only on success: restore nothing, fail whole */
        ld_arena_free(a);
        for (int s = 0; s < o->n_sets; s++)
            for (int i = 0; i < o->sets[s].n; i++) o->sets[s].m[i] = o->sets[s].v[i] = NULL;
        return st;
    }
    ld_arena_free(o->state);
    o->state = a, o->lo = lo, o->hi = hi;
    return LD_OK;
}

ld_status ld_adamw_state_io(ld_adamw *o, int64_t at, int64_t n, float *m, float *v, bool to_state) {
    if (!o || n < 0 || (n > 0 && (!m || !v))) return LD_ERR_INVALID_ARG;
    int64_t lo, hi;
    ld_adamw_range(o, &lo, &hi);
    if (at < lo || at + n > hi)
        return ld_error(o->ctx, LD_ERR_INVALID_ARG, "adamw: values [%lld, %lld) are not in this optimizer's state [%lld, %lld)",
                        (long long)at, (long long)(at + n), (long long)lo, (long long)hi);
    int64_t off = 0;
    for (int s = 0; s < o->n_sets; s++) {
        adamw_set *S = &o->sets[s];
        for (int i = 0; i < S->n; i++) {
            ld_tensor *t = S->params->list[i];
            if (!(t->flags & LD_TENSOR_TRAINABLE)) continue;
            int64_t pn = ld_tensor_numel(t), p0 = off;
            off += pn;
            if (!S->m[i]) continue;
            int64_t s0 = p0 + (S->first ? S->first[i] : 0), s1 = s0 + ld_tensor_numel(S->m[i]); /* state's flat range */
            int64_t b = s0 > at ? s0 : at, e = s1 < at + n ? s1 : at + n;
            if (b >= e) continue;
            float *sm = (float *)S->m[i]->data + (b - s0), *sv = (float *)S->v[i]->data + (b - s0);
            size_t bytes = (size_t)(e - b) * sizeof(float);
            if (to_state) memcpy(sm, m + (b - at), bytes), memcpy(sv, v + (b - at), bytes);
            else memcpy(m + (b - at), sm, bytes), memcpy(v + (b - at), sv, bytes);
        }
    }
    return LD_OK;
}

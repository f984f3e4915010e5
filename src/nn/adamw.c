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
    int n;
} adamw_set;

struct ld_adamw {
    ld_ctx *ctx;
    ld_adamw_config cfg;
    ld_arena *state;
    adamw_set sets[ADAMW_MAX_SETS];
    int n_sets;
    int64_t steps;
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
    o->ctx = ctx;
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
            k->adamw(t->data, t->grad->data, S->m[i]->data, S->v[i]->data, S->params->bf16[i], ld_tensor_numel(t), &ap);
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

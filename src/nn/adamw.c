/* nn/adamw.c — AdamW with decoupled weight decay and global-norm gradient clipping over a
 * parameter set. State (m, v) lives in its own arena: the optimizer lifetime class. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn_internal.h"

struct ld_adamw {
    ld_params *params;
    ld_adamw_config cfg;
    ld_arena *state;
    ld_tensor **m, **v; /* per parameter index; NULL for frozen ones at creation */
    int n;
    int64_t steps;
};

ld_adamw_config ld_adamw_default_config(void) {
    ld_adamw_config c = {.lr = 3e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                         .max_grad_norm = 1.0f};
    return c;
}

void ld_adamw_free(ld_adamw *o) {
    if (!o) return;
    ld_ctx *ctx = o->params->ctx;
    ld_arena_free(o->state);
    ld_free(ctx, o->m);
    ld_free(ctx, o->v);
    ld_free(ctx, o);
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
    o->params = p;
    o->cfg = c;
    o->n = p->count;
    ld_status st = ld_arena_new(ctx, (size_t)16 << 20, &o->state);
    if (!st && (!(o->m = ld_calloc(ctx, (size_t)o->n + 1, sizeof *o->m)) ||
                !(o->v = ld_calloc(ctx, (size_t)o->n + 1, sizeof *o->v))))
        st = ld_ctx_status(ctx);
    for (int i = 0; !st && i < o->n; i++) {
        ld_tensor *t = p->list[i];
        if (!(t->flags & LD_TENSOR_TRAINABLE)) continue;
        st = ld_tensor_new(ctx, o->state, LD_F32, t->ndim, t->shape, &o->m[i]);
        if (!st) st = ld_tensor_new(ctx, o->state, LD_F32, t->ndim, t->shape, &o->v[i]);
        if (!st) {
            snprintf(o->m[i]->name, sizeof o->m[i]->name, "%s.exp_avg", t->name);
            snprintf(o->v[i]->name, sizeof o->v[i]->name, "%s.exp_avg_sq", t->name);
        }
    }
    if (st) {
        ld_adamw_free(o);
        return st;
    }
    *out = o;
    return LD_OK;
}

double ld_params_grad_norm(ld_params *p, float grad_scale) {
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    double ss = 0;
    for (int i = 0; p && i < p->count; i++) {
        ld_tensor *t = p->list[i];
        if ((t->flags & LD_TENSOR_TRAINABLE) && t->grad) ss += k->sumsq(t->grad->data, ld_tensor_numel(t));
    }
    return sqrt(ss) * fabs((double)grad_scale);
}

ld_status ld_adamw_step(ld_adamw *o, float lr, float grad_scale, double *grad_norm) {
    if (!o) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = o->params->ctx;
    double norm = ld_params_grad_norm(o->params, grad_scale);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return ld_error(ctx, LD_ERR_NUMERIC, "gradient norm is %g: update skipped", norm);
    float scale = grad_scale;
    if (o->cfg.max_grad_norm > 0 && norm > o->cfg.max_grad_norm) scale *= (float)(o->cfg.max_grad_norm / norm);
    o->steps++;
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    for (int i = 0; i < o->n; i++) {
        ld_tensor *t = o->params->list[i];
        if (!(t->flags & LD_TENSOR_TRAINABLE) || !o->m[i]) continue;
        ld_adamw_params ap = {.lr = lr, .beta1 = o->cfg.beta1, .beta2 = o->cfg.beta2, .eps = o->cfg.eps,
                              .weight_decay = t->ndim >= 2 ? o->cfg.weight_decay : 0.0f, .step = o->steps,
                              .grad_scale = scale};
        k->adamw(t->data, t->grad->data, o->m[i]->data, o->v[i]->data, o->params->bf16[i], ld_tensor_numel(t), &ap);
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
    for (int i = 0; i < o->n; i++)
        if (o->params->list[i] == param) return which ? o->v[i] : o->m[i];
    return NULL;
}

/* nn/tape.c — the autograd tape: records ops in the forward pass, runs their backward
 * passes in reverse. Activations and gradients come from two arenas rewound every step. */
#include <string.h>

#include "core/team.h"
#include "nn/nn_internal.h"

ld_status ld_tape_new(ld_ctx *ctx, ld_tape **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tape_new: NULL out");
    *out = NULL;
    ld_tape *t = ld_calloc(ctx, 1, sizeof *t);
    if (!t) return ld_ctx_status(ctx);
    t->ctx = ctx;
    t->k = ld_kernels_get(LD_BACKEND_AUTO);
    t->grad_enabled = true;
    ld_status st = ld_arena_new(ctx, (size_t)64 << 20, &t->act);
    if (!st) st = ld_arena_new(ctx, (size_t)64 << 20, &t->grads);
    if (st) {
        ld_tape_free(t);
        return st;
    }
    *out = t;
    return LD_OK;
}

void ld_tape_free(ld_tape *t) {
    if (!t) return;
    ld_arena_free(t->act);
    ld_arena_free(t->grads);
    ld_free(t->ctx, t->nodes);
    ld_free(t->ctx, t->wscratch);
    ld_free(t->ctx, t);
}

void ld_tape_reset(ld_tape *t) {
    if (!t) return;
    ld_arena_reset(t->act);
    ld_arena_reset(t->grads);
    t->n_nodes = 0;
    t->dropout_offset = 0;
}

void ld_tape_set_grad_enabled(ld_tape *t, bool enabled) {
    if (t) t->grad_enabled = enabled;
}
void ld_tape_set_bf16(ld_tape *t, const ld_params *p) {
    if (t) t->bf16_params = p;
}
void ld_tape_set_seed(ld_tape *t, uint64_t seed) {
    if (t) t->seed = seed;
}
void ld_tape_set_node_done(ld_tape *t, ld_tape_node_done_fn fn, void *user) {
    if (t) t->node_done = fn, t->node_done_user = user;
}
int ld_tape_node_count(const ld_tape *t) {
    return t ? t->n_nodes : 0;
}
const ld_tensor *ld_tape_node_input(const ld_tape *t, int node, int k) {
    if (!t || node < 0 || node >= t->n_nodes || k < 0 || k > 2) return NULL;
    return t->nodes[node].in[k];
}
void ld_tape_set_kernels(ld_tape *t, const ld_kernels *k) {
    if (t && k) t->k = k;
}
ld_ctx *ld_tape_ctx(const ld_tape *t) {
    return t ? t->ctx : NULL;
}
size_t ld_tape_memory(const ld_tape *t) {
    return t ? ld_arena_capacity(t->act) + ld_arena_capacity(t->grads) : 0;
}

ld_status ld_tape_tensor(ld_tape *t, int ndim, const int64_t *shape, ld_tensor **out) {
    if (!t) return LD_ERR_INVALID_ARG;
    return ld_tensor_new(t->ctx, t->act, LD_F32, ndim, shape, out);
}

bool ld_tape_needs_grad(const ld_tensor *x) {
    if (!x) return false;
    if (x->flags & LD_TENSOR_PARAM) return (x->flags & LD_TENSOR_TRAINABLE) && x->grad;
    return (x->flags & LD_TENSOR_NEEDS_GRAD) != 0;
}

float *ld_tape_grad(ld_tape *t, ld_tensor *x) {
    if (!ld_tape_needs_grad(x)) return NULL;
    if (!x->grad) {
        ld_tensor *g = NULL;
        if (ld_tensor_new(t->ctx, t->grads, LD_F32, x->ndim, x->shape, &g)) return NULL;
        x->grad = g;
    }
    return x->grad->data;
}

ld_status ld_tape_backward(ld_tape *t, ld_tensor *loss) {
    LD_TEAM_SCOPE(t ? t->ctx : NULL);
    if (!t || !loss) return ld_error(t ? t->ctx : NULL, LD_ERR_INVALID_ARG, "ld_tape_backward: NULL argument");
    if (ld_tensor_numel(loss) != 1)
        return ld_error(t->ctx, LD_ERR_SHAPE, "backward needs a one-element loss, got %lld elements",
                        (long long)ld_tensor_numel(loss));
    if (!ld_tape_needs_grad(loss))
        return ld_error(t->ctx, LD_ERR_STATE, "the loss does not depend on any trainable parameter");
    ld_ctx_clear_error(t->ctx);
    float *g = ld_tape_grad(t, loss);
    if (!g) return ld_ctx_status(t->ctx);
    g[0] = 1.0f;
    for (int i = t->n_nodes - 1; i >= 0; i--) {
        ld_node *n = &t->nodes[i];
        if (n->out->grad) { /* else nothing downstream used this output */
            n->backward(t, n);
            /* gradient buffers come from the arena: the only possible failure is memory */
            if (ld_ctx_status(t->ctx) != LD_OK)
                return ld_error_wrap(t->ctx, ld_ctx_status(t->ctx), "backward of %s: ", n->op);
        }
        if (t->node_done) {
            ld_status st = t->node_done(t->node_done_user, i);
            if (st) return st;
        }
    }
    return LD_OK;
}

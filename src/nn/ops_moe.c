/* nn/ops_moe.c — the ops of a mixture-of-experts block (文匯 / FastMoE, Mixtral, Qwen2-MoE):
 * the router's top-k gates with a capacity per expert, dispatch of token rows grouped by
 * expert, one matrix product per expert over its rows, the gated combine, and the router's
 * load-balancing and z losses.
 *
 * A block reads, for x [M, C] and E experts of k chosen per token:
 *   logits = x Wr^T                          [M, E]   (ld_op_linear)
 *   gates  = moe_route(logits)               [M, k]   + route: expert and row of each choice
 *   xs     = moe_dispatch(x)                 [A, C]   rows grouped by expert (A kept choices)
 *   h      = swiglu(moe_linear(xs, Wg), moe_linear(xs, Wu))    [A, I]
 *   ys     = moe_linear(h, Wd)               [A, C]   one GEMM per expert and matrix
 *   y      = moe_combine(ys, gates)          [M, C]   y[m] = sum_j gates[m, j] ys[row(m, j)]
 * A choice beyond its expert's capacity is dropped (counted in the route): it adds nothing
 * to y, so that token's residual stream carries it past the block. */
#include <math.h>
#include <string.h>

#include "core/comm.h"
#include "core/team.h"
#include "nn/nn_internal.h"

static ld_status moe_error(ld_tape *t, const char *op, const char *what) {
    return ld_error(t->ctx, LD_ERR_SHAPE, "%s: %s", op, what);
}

/* ---- route ------------------------------------------------------------------------- */

/* A copy of the route in the tape's arena (backward reads it after the caller's is gone). */
static ld_moe_route *route_copy(ld_tape *t, const ld_moe_route *r) {
    ld_moe_route *c = ld_arena_alloc(t->act, sizeof *c);
    if (c) *c = *r;
    return c;
}

static void route_bwd(ld_tape *t, ld_node *n) {
    const ld_moe_route *r = n->saved[0];
    const float *p = n->saved[1]; /* softmax of the logits [M, E] */
    float *dl = ld_tape_grad(t, n->in[0]);
    if (!dl) return;
    const float *g = n->out->data, *dg = n->out->grad->data;
    const int64_t M = r->M, E = r->E, k = r->k;
    for (int64_t m = 0; m < M; m++) {
        const int32_t *ex = r->expert + m * k;
        if (r->norm_topk) { /* gates = softmax over the chosen logits */
            double s = 0;
            for (int64_t j = 0; j < k; j++) s += (double)g[m * k + j] * dg[m * k + j];
            for (int64_t j = 0; j < k; j++) dl[m * E + ex[j]] += g[m * k + j] * (float)(dg[m * k + j] - s);
        } else { /* gates = the chosen softmax probabilities over all experts */
            const float *pm = p + m * E;
            double s = 0;
            for (int64_t j = 0; j < k; j++) s += (double)pm[ex[j]] * dg[m * k + j];
            for (int64_t e = 0; e < E; e++) dl[m * E + e] -= pm[e] * (float)s;
            for (int64_t j = 0; j < k; j++) dl[m * E + ex[j]] += pm[ex[j]] * dg[m * k + j];
        }
    }
}

ld_status ld_op_moe_route(ld_tape *t, const ld_tensor *logits, const ld_moe_route_opts *o, ld_tensor **out_,
                          ld_moe_route *r) {
    static const char *op = "moe_route";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "logits", logits))) return st;
    if (!o || !r || !out_) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: NULL argument", op);
    const int64_t E = logits->shape[logits->ndim - 1], M = ld_tensor_numel(logits) / (E > 0 ? E : 1), k = o->k;
    if (E < 1 || E > 4096) return moe_error(t, op, "the number of experts (the logits' last dimension) must be 1..4096");
    if (k < 1 || k > E || k > LD_MOE_MAX_K)
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: experts per token %lld outside 1..%lld", op, (long long)k,
                        (long long)(E < LD_MOE_MAX_K ? E : LD_MOE_MAX_K));
    if (!(o->capacity_factor >= 0) || !isfinite(o->capacity_factor))
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: capacity factor %g must be finite and not negative", op,
                        o->capacity_factor);
    memset(r, 0, sizeof *r);
    r->M = M, r->E = E, r->k = k, r->norm_topk = o->norm_topk;
    /* capacity: ceil(factor * M k / E) choices per expert; 0 = no limit */
    r->capacity = o->capacity_factor > 0 ? (int64_t)ceil(o->capacity_factor * (double)(M * k) / (double)E) : 0;
    float *p = ld_arena_alloc(t->act, (size_t)(M * E) * sizeof(float));
    r->expert = ld_arena_alloc(t->act, (size_t)(M * k) * sizeof(int32_t));
    r->row = ld_arena_alloc(t->act, (size_t)(M * k) * sizeof(int32_t));
    r->offset = ld_arena_alloc(t->act, (size_t)(E + 1) * sizeof(int64_t));
    r->chosen = ld_arena_alloc(t->act, (size_t)E * sizeof(int64_t));
    r->token = ld_arena_alloc(t->act, (size_t)(M * k) * sizeof(int32_t));
    if (!p || !r->expert || !r->row || !r->offset || !r->chosen || !r->token) return ld_ctx_status(t->ctx);
    if ((st = ld_nn_new_out(t, 2, (int64_t[]){M, k}, logits, NULL, NULL, out_))) return st;
    float *g = (*out_)->data;
    t->k->softmax_fwd(p, logits->data, M, E);
    memset(r->chosen, 0, (size_t)E * sizeof(int64_t));
    for (int64_t m = 0; m < M; m++) {
        const float *pm = p + m * E;
        int32_t *ex = r->expert + m * k;
        /* the k largest probabilities, largest first (ties: the lower expert) */
        for (int64_t j = 0; j < k; j++) {
            int32_t best = -1;
            for (int32_t e = 0; e < (int32_t)E; e++) {
                bool taken = false;
                for (int64_t i = 0; i < j; i++) taken |= ex[i] == e;
                if (!taken && (best < 0 || pm[e] > pm[best])) best = e;
            }
            ex[j] = best;
            r->chosen[best]++;
        }
        double s = 0;
        for (int64_t j = 0; j < k; j++) s += pm[ex[j]];
        for (int64_t j = 0; j < k; j++) g[m * k + j] = r->norm_topk ? (float)(pm[ex[j]] / s) : pm[ex[j]];
    }
    /* rows grouped by expert: first choices of every token before second choices (so
     * capacity drops second choices first), tokens in order within each */
    int64_t *fill = ld_arena_alloc(t->act, (size_t)E * sizeof(int64_t));
    if (!fill) return ld_ctx_status(t->ctx);
    memset(fill, 0, (size_t)E * sizeof(int64_t));
    for (int64_t j = 0; j < k; j++)
        for (int64_t m = 0; m < M; m++) {
            int32_t e = r->expert[m * k + j];
            if (r->capacity && fill[e] >= r->capacity) r->row[m * k + j] = -1, r->dropped++;
            else r->row[m * k + j] = (int32_t)fill[e]++; /* within the expert for now */
        }
    r->offset[0] = 0;
    for (int64_t e = 0; e < E; e++) r->offset[e + 1] = r->offset[e] + fill[e];
    for (int64_t i = 0; i < M * k; i++)
        if (r->row[i] >= 0) {
            r->row[i] += (int32_t)r->offset[r->expert[i]];
            r->token[r->row[i]] = (int32_t)(i / k);
        }
    ld_moe_route *saved = route_copy(t, r);
    if (!saved) return ld_ctx_status(t->ctx);
    ld_node *n = ld_nn_record(t, op, route_bwd, *out_, (ld_tensor *)logits, NULL, NULL);
    if (!n && ((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return ld_ctx_status(t->ctx);
    if (n) n->saved[0] = saved, n->saved[1] = p;
    return LD_OK;
}

/* ---- dispatch ---------------------------------------------------------------------- */

typedef struct rows_args {
    float *dst;
    const float *src;
    const ld_moe_route *r;
    int64_t C;
    bool scatter; /* false: dst[row] = src[token]; true: dst[token] += src[row] (by token) */
} rows_args;

static void dispatch_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const rows_args *a = arg;
    const int64_t C = a->C;
    for (int64_t i = lo; i < hi; i++) memcpy(a->dst + i * C, a->src + (int64_t)a->r->token[i] * C, (size_t)C * sizeof(float));
}

/* dx[m] += dxs[row(m, j)] for each kept choice: by token, so no two pieces write one row */
static void dispatch_bwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const rows_args *a = arg;
    const ld_moe_route *r = a->r;
    for (int64_t m = lo; m < hi; m++)
        for (int64_t j = 0; j < r->k; j++) {
            int32_t row = r->row[m * r->k + j];
            if (row < 0) continue;
            float *d = a->dst + m * a->C;
            const float *s = a->src + (int64_t)row * a->C;
            for (int64_t c = 0; c < a->C; c++) d[c] += s[c];
        }
}

static void dispatch_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (!dx) return;
    const ld_moe_route *r = n->saved[0];
    rows_args a = {dx, n->out->grad->data, r, n->i[0], true};
    ld_par_for(r->M, ld_par_grain(n->i[0] * r->k), dispatch_bwd_part, &a);
}

static ld_status check_route(ld_tape *t, const char *op, const ld_moe_route *r) {
    if (!r || !r->expert || !r->row || !r->offset || !r->token || r->M < 1 || r->E < 1 || r->k < 1)
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: the route is not one ld_op_moe_route filled", op);
    return LD_OK;
}

ld_status ld_op_moe_dispatch(ld_tape *t, const ld_tensor *x, const ld_moe_route *r, ld_tensor **out_) {
    static const char *op = "moe_dispatch";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", x)) || (st = check_route(t, op, r))) return st;
    const int64_t C = x->shape[x->ndim - 1], M = ld_tensor_numel(x) / C, A = r->offset[r->E];
    if (M != r->M) return moe_error(t, op, "the input's rows are not the routed tokens");
    /* an empty dispatch (every choice dropped) still has one row's shape: [0, C] is not a tensor */
    if ((st = ld_nn_new_out(t, 2, (int64_t[]){A > 0 ? A : 1, C}, x, NULL, NULL, out_))) return st;
    rows_args a = {(*out_)->data, x->data, r, C, false};
    ld_par_for(A, ld_par_grain(C), dispatch_part, &a);
    ld_moe_route *saved = route_copy(t, r);
    if (!saved) return ld_ctx_status(t->ctx);
    ld_node *n = ld_nn_record(t, op, dispatch_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (!n && ((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return ld_ctx_status(t->ctx);
    if (n) n->saved[0] = saved, n->i[0] = C;
    return LD_OK;
}

/* ---- grouped linear ---------------------------------------------------------------- */

static void moe_linear_bwd(ld_tape *t, ld_node *n) {
    const ld_moe_route *r = n->saved[0];
    ld_tensor *const *w = n->saved[1];
    ld_tensor *xs = n->in[0];
    const int64_t K = n->i[0], N = n->i[1];
    const float *dy = n->out->grad->data;
    float *dx = ld_tape_grad(t, xs);
    for (int64_t e = 0; e < r->E; e++) {
        const int64_t o = r->offset[e], rows = r->offset[e + 1] - o;
        if (!rows) continue;
        float *dw = ld_tape_grad(t, w[e]);
        if (dx) t->k->gemm_f32(false, false, rows, K, N, 1.0f, dy + o * N, N, w[e]->data, K, 1.0f, dx + o * K, K);
        if (dw) t->k->gemm_f32(true, false, N, K, rows, 1.0f, dy + o * N, N, (const float *)xs->data + o * K, K, 1.0f, dw, K);
    }
}

ld_status ld_op_moe_linear(ld_tape *t, const ld_tensor *xs, const ld_moe_route *r, ld_tensor *const *w,
                           ld_tensor **out_) {
    static const char *op = "moe_linear";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", xs)) || (st = check_route(t, op, r))) return st;
    if (!w) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: NULL weights", op);
    const int64_t K = xs->shape[xs->ndim - 1], A = r->offset[r->E];
    if (xs->ndim != 2 || xs->shape[0] != (A > 0 ? A : 1)) return moe_error(t, op, "the input is not the route's dispatched rows");
    const int64_t N = w[0] ? w[0]->shape[0] : 0;
    bool any_grad = false;
    for (int64_t e = 0; e < r->E; e++) {
        if ((st = ld_nn_check_f32(t, op, "expert weight", w[e]))) return st;
        if (w[e]->ndim != 2 || w[e]->shape[0] != N || w[e]->shape[1] != K) {
            char a[64], b[64];
            return ld_error(t->ctx, LD_ERR_SHAPE, "%s: expert %lld's weight '%s' is %s, expected [%lld, %lld] (input %s)", op,
                            (long long)e, w[e]->name, ld_tensor_shape_str(w[e], a, sizeof a), (long long)N,
                            (long long)K, ld_tensor_shape_str(xs, b, sizeof b));
        }
        any_grad |= ld_tape_needs_grad(w[e]);
    }
    if ((st = ld_nn_new_out(t, 2, (int64_t[]){xs->shape[0], N}, xs, NULL, NULL, out_))) return st;
    if (t->grad_enabled && any_grad) (*out_)->flags |= LD_TENSOR_NEEDS_GRAD;
    float *y = (*out_)->data;
    if (A == 0) memset(y, 0, (size_t)N * sizeof(float));
    for (int64_t e = 0; e < r->E; e++) { /* one product per expert over its rows */
        const int64_t o = r->offset[e], rows = r->offset[e + 1] - o;
        if (rows) t->k->gemm_f32(false, true, rows, N, K, 1.0f, (const float *)xs->data + o * K, K, w[e]->data, K, 0.0f, y + o * N, N);
    }
    if (!((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return LD_OK;
    ld_moe_route *saved = route_copy(t, r);
    ld_tensor **ws = ld_arena_alloc(t->act, (size_t)r->E * sizeof *ws);
    if (!saved || !ws) return ld_ctx_status(t->ctx);
    memcpy(ws, w, (size_t)r->E * sizeof *ws);
    ld_node *n = ld_nn_record(t, op, moe_linear_bwd, *out_, (ld_tensor *)xs, NULL, NULL);
    if (!n) return ld_ctx_status(t->ctx);
    n->saved[0] = saved, n->saved[1] = ws, n->i[0] = K, n->i[1] = N;
    return LD_OK;
}

/* ---- combine ----------------------------------------------------------------------- */

typedef struct combine_args {
    float *y, *dys, *dg;
    const float *ys, *g, *dy;
    const ld_moe_route *r;
    int64_t C;
} combine_args;

static void combine_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const combine_args *a = arg;
    const ld_moe_route *r = a->r;
    const int64_t C = a->C;
    for (int64_t m = lo; m < hi; m++) {
        float *y = a->y + m * C;
        memset(y, 0, (size_t)C * sizeof(float));
        for (int64_t j = 0; j < r->k; j++) {
            int32_t row = r->row[m * r->k + j];
            if (row < 0) continue;
            const float gj = a->g[m * r->k + j], *s = a->ys + (int64_t)row * C;
            for (int64_t c = 0; c < C; c++) y[c] += gj * s[c];
        }
    }
}

/* dys[row(m, j)] += g[m, j] dy[m]; dg[m, j] += dy[m] . ys[row(m, j)] (each row has one token) */
static void combine_bwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const combine_args *a = arg;
    const ld_moe_route *r = a->r;
    const int64_t C = a->C;
    for (int64_t m = lo; m < hi; m++) {
        const float *dy = a->dy + m * C;
        for (int64_t j = 0; j < r->k; j++) {
            int32_t row = r->row[m * r->k + j];
            if (row < 0) continue;
            if (a->dys) {
                float *d = a->dys + (int64_t)row * C, gj = a->g[m * r->k + j];
                for (int64_t c = 0; c < C; c++) d[c] += gj * dy[c];
            }
            if (a->dg) {
                const float *s = a->ys + (int64_t)row * C;
                double dot = 0;
                for (int64_t c = 0; c < C; c++) dot += (double)dy[c] * s[c];
                a->dg[m * r->k + j] += (float)dot;
            }
        }
    }
}

static void combine_bwd(ld_tape *t, ld_node *n) {
    const ld_moe_route *r = n->saved[0];
    combine_args a = {NULL, ld_tape_grad(t, n->in[0]), ld_tape_grad(t, n->in[1]), n->in[0]->data, n->in[1]->data,
                      n->out->grad->data, r, n->i[0]};
    if (a.dys || a.dg) ld_par_for(r->M, ld_par_grain(n->i[0] * r->k), combine_bwd_part, &a);
}

ld_status ld_op_moe_combine(ld_tape *t, const ld_tensor *ys, const ld_tensor *gates, const ld_moe_route *r,
                            ld_tensor **out_) {
    static const char *op = "moe_combine";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "expert outputs", ys)) || (st = ld_nn_check_f32(t, op, "gates", gates)) ||
        (st = check_route(t, op, r)))
        return st;
    const int64_t C = ys->shape[ys->ndim - 1], A = r->offset[r->E];
    if (ys->ndim != 2 || ys->shape[0] != (A > 0 ? A : 1)) return moe_error(t, op, "the expert outputs are not the route's rows");
    if (ld_tensor_numel(gates) != r->M * r->k) return moe_error(t, op, "the gates are not [tokens, k] of the route");
    if ((st = ld_nn_new_out(t, 2, (int64_t[]){r->M, C}, ys, gates, NULL, out_))) return st;
    combine_args a = {(*out_)->data, NULL, NULL, ys->data, gates->data, NULL, r, C};
    ld_par_for(r->M, ld_par_grain(C * r->k), combine_part, &a);
    ld_moe_route *saved = route_copy(t, r);
    if (!saved) return ld_ctx_status(t->ctx);
    ld_node *n = ld_nn_record(t, op, combine_bwd, *out_, (ld_tensor *)ys, (ld_tensor *)gates, NULL);
    if (!n && ((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return ld_ctx_status(t->ctx);
    if (n) n->saved[0] = saved, n->i[0] = C;
    return LD_OK;
}

/* ---- router losses ----------------------------------------------------------------- */

/* aux = E sum_e f_e P_e with f_e = (choices of e) / M (constant) and P_e the mean softmax
 * probability of e: dlogits[m] = softmax_bwd(dP) with dP_e = dloss E f_e / M. */
static void aux_bwd(ld_tape *t, ld_node *n) {
    float *dl = ld_tape_grad(t, n->in[0]);
    if (!dl) return;
    const float *p = n->saved[0], *coef = n->saved[1];
    const int64_t M = n->i[0], E = n->i[1];
    const float d = *(const float *)n->out->grad->data;
    float *dp = ld_arena_alloc(t->grads, (size_t)(M * E) * sizeof(float));
    if (!dp) return;
    for (int64_t m = 0; m < M; m++)
        for (int64_t e = 0; e < E; e++) dp[m * E + e] = d * coef[e];
    t->k->softmax_bwd(dl, dp, p, M, E);
}

ld_status ld_op_moe_aux_loss(ld_tape *t, const ld_tensor *logits, const ld_moe_route *r, ld_tensor **out_) {
    static const char *op = "moe_aux_loss";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "logits", logits)) || (st = check_route(t, op, r))) return st;
    const int64_t E = logits->shape[logits->ndim - 1], M = ld_tensor_numel(logits) / E;
    if (E != r->E || M != r->M) return moe_error(t, op, "the logits are not the route's [tokens, experts]");
    float *p = ld_arena_alloc(t->act, (size_t)(M * E) * sizeof(float)), *coef = ld_arena_alloc(t->act, (size_t)E * sizeof(float));
    if (!p || !coef) return ld_ctx_status(t->ctx);
    t->k->softmax_fwd(p, logits->data, M, E);
    if ((st = ld_nn_new_out(t, 1, (int64_t[]){1}, logits, NULL, NULL, out_))) return st;
    double loss = 0;
    for (int64_t e = 0; e < E; e++) {
        double P = 0;
        for (int64_t m = 0; m < M; m++) P += p[m * E + e];
        const double f = (double)r->chosen[e] / (double)M;
        coef[e] = (float)((double)E * f / (double)M);
        loss += (double)E * f * P / (double)M;
    }
    *(float *)(*out_)->data = (float)loss;
    ld_node *n = ld_nn_record(t, op, aux_bwd, *out_, (ld_tensor *)logits, NULL, NULL);
    if (!n && ((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return ld_ctx_status(t->ctx);
    if (n) n->saved[0] = p, n->saved[1] = coef, n->i[0] = M, n->i[1] = E;
    return LD_OK;
}

/* z = mean_m lse(logits[m])^2: dlogits[m] = dloss 2 lse_m softmax(logits[m]) / M. */
static void z_bwd(ld_tape *t, ld_node *n) {
    float *dl = ld_tape_grad(t, n->in[0]);
    if (!dl) return;
    const float *lse = n->saved[0];
    const float *x = n->in[0]->data;
    const int64_t M = n->i[0], E = n->i[1];
    const float d = *(const float *)n->out->grad->data;
    for (int64_t m = 0; m < M; m++) {
        const float s = d * 2.0f * lse[m] / (float)M;
        for (int64_t e = 0; e < E; e++) dl[m * E + e] += s * expf(x[m * E + e] - lse[m]);
    }
}

ld_status ld_op_moe_z_loss(ld_tape *t, const ld_tensor *logits, ld_tensor **out_) {
    static const char *op = "moe_z_loss";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "logits", logits))) return st;
    const int64_t E = logits->shape[logits->ndim - 1], M = ld_tensor_numel(logits) / (E > 0 ? E : 1);
    if (E < 1 || M < 1) return moe_error(t, op, "empty logits");
    float *lse = ld_arena_alloc(t->act, (size_t)M * sizeof(float));
    if (!lse) return ld_ctx_status(t->ctx);
    if ((st = ld_nn_new_out(t, 1, (int64_t[]){1}, logits, NULL, NULL, out_))) return st;
    const float *x = logits->data;
    double loss = 0;
    for (int64_t m = 0; m < M; m++) {
        float mx = x[m * E];
        for (int64_t e = 1; e < E; e++) mx = fmaxf(mx, x[m * E + e]);
        double s = 0;
        for (int64_t e = 0; e < E; e++) s += exp((double)(x[m * E + e] - mx));
        lse[m] = mx + (float)log(s);
        loss += (double)lse[m] * lse[m];
    }
    *(float *)(*out_)->data = (float)(loss / (double)M);
    ld_node *n = ld_nn_record(t, op, z_bwd, *out_, (ld_tensor *)logits, NULL, NULL);
    if (!n && ((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return ld_ctx_status(t->ctx);
    if (n) n->saved[0] = lse, n->i[0] = M, n->i[1] = E;
    return LD_OK;
}

/* ---- sigmoid-gated rows (a shared expert's gate) ----------------------------------- */

static void sigmoid_gate_bwd(ld_tape *t, ld_node *n) {
    const float *x = n->in[0]->data, *sv = n->in[1]->data, *dy = n->out->grad->data;
    float *dx = ld_tape_grad(t, n->in[0]), *ds = ld_tape_grad(t, n->in[1]);
    const int64_t R = n->i[0], N = n->i[1];
    for (int64_t r = 0; r < R; r++) {
        const float g = 1.0f / (1.0f + expf(-sv[r]));
        double dot = 0;
        for (int64_t j = 0; j < N; j++) {
            if (dx) dx[r * N + j] += g * dy[r * N + j];
            dot += (double)dy[r * N + j] * x[r * N + j];
        }
        if (ds) ds[r] += (float)(dot * g * (1.0f - g));
    }
}

ld_status ld_op_sigmoid_gate(ld_tape *t, const ld_tensor *x, const ld_tensor *s, ld_tensor **out_) {
    static const char *op = "sigmoid_gate";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", x)) || (st = ld_nn_check_f32(t, op, "gate", s))) return st;
    const int64_t N = x->shape[x->ndim - 1], R = ld_tensor_numel(x) / N;
    if (s->shape[s->ndim - 1] != 1 || ld_tensor_numel(s) != R) {
        char a[64], b[64];
        return ld_error(t->ctx, LD_ERR_SHAPE, "%s: the gate '%s' %s is not one value per row of '%s' %s", op, s->name,
                        ld_tensor_shape_str(s, a, sizeof a), x->name, ld_tensor_shape_str(x, b, sizeof b));
    }
    if ((st = ld_nn_new_out(t, x->ndim, x->shape, x, s, NULL, out_))) return st;
    float *y = (*out_)->data;
    const float *xv = x->data, *sv = s->data;
    for (int64_t r = 0; r < R; r++) {
        const float g = 1.0f / (1.0f + expf(-sv[r]));
        for (int64_t j = 0; j < N; j++) y[r * N + j] = g * xv[r * N + j];
    }
    ld_node *n = ld_nn_record(t, op, sigmoid_gate_bwd, *out_, (ld_tensor *)x, (ld_tensor *)s, NULL);
    if (!n && ((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return ld_ctx_status(t->ctx);
    if (n) n->i[0] = R, n->i[1] = N;
    return LD_OK;
}

/* ---- expert parallelism: rows to the ranks that hold their experts, and back ------------ */

/* dst's blocks = every rank's block of src for this rank: src is send_rows[q] rows for each
 * rank q in rank order, dst recv_rows[q] rows from each q in rank order (rows of C floats). */
static ld_status exchange_rows(ld_ctx *ctx, ld_comm *c, const float *src, const int64_t *send_rows,
                               const int64_t *recv_rows, float *dst, int64_t C) {
    const int P = ld_comm_size(c);
    int64_t *a = ld_alloc(ctx, 4 * sizeof(int64_t) * (size_t)P);
    if (!a) return ld_ctx_status(ctx);
    int64_t *sc = a, *sd = a + P, *rc = a + 2 * P, *rd = a + 3 * P, so = 0, ro = 0;
    for (int q = 0; q < P; q++) {
        sc[q] = send_rows[q] * C, sd[q] = so, so += sc[q];
        rc[q] = recv_rows[q] * C, rd[q] = ro, ro += rc[q];
    }
    ld_status st = ld_comm_alltoallv(c, src, sc, sd, dst, rc, rd, LD_COMM_F32);
    ld_free(ctx, a);
    return st;
}

/* the gradient goes back the way the rows came: dx[sent rows] += the rows' gradients from
 * the ranks they went to */
static void exchange_bwd(ld_tape *t, ld_node *n) {
    ld_comm *c = n->saved[0];
    const int64_t *send = n->saved[1], *recv = send + ld_comm_size(c); /* the forward's counts */
    const int64_t C = n->i[0], rows_in = n->i[1];
    float *dx = ld_tape_grad(t, n->in[0]);
    float *tmp = ld_arena_alloc(t->grads, (size_t)(rows_in > 0 ? rows_in : 1) * (size_t)C * sizeof(float));
    if (!tmp) return;
    /* every rank takes part, also one whose input needs no gradient */
    ld_status st = exchange_rows(t->ctx, c, n->out->grad->data, recv, send, tmp, C);
    if (st) {
        ld_error_wrap(t->ctx, st, "moe_exchange (backward): ");
        return;
    }
    if (dx)
        for (int64_t i = 0; i < rows_in * C; i++) dx[i] += tmp[i];
}

ld_status ld_op_moe_exchange(ld_tape *t, const ld_tensor *x, ld_comm *c, const int64_t *send_rows,
                             const int64_t *recv_rows, ld_tensor **out_) {
    static const char *op = "moe_exchange";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", x))) return st;
    if (!c || !send_rows || !recv_rows || !out_) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: NULL argument", op);
    const int P = ld_comm_size(c);
    const int64_t C = x->shape[x->ndim - 1], R = ld_tensor_numel(x) / (C > 0 ? C : 1);
    int64_t rows_in = 0, rows_out = 0;
    for (int q = 0; q < P; q++) {
        if (send_rows[q] < 0 || recv_rows[q] < 0) return moe_error(t, op, "a negative row count");
        rows_in += send_rows[q], rows_out += recv_rows[q];
    }
    if (rows_in > R) return moe_error(t, op, "the input has fewer rows than it sends");
    /* nothing received still has one row's shape (zeros): [0, C] is not a tensor */
    if ((st = ld_nn_new_out(t, 2, (int64_t[]){rows_out > 0 ? rows_out : 1, C}, x, NULL, NULL, out_))) return st;
    /* every rank records the node alike (its backward is a collective too) */
    if (t->grad_enabled) (*out_)->flags |= LD_TENSOR_NEEDS_GRAD;
    float *y = (*out_)->data;
    if (rows_out == 0) memset(y, 0, (size_t)C * sizeof(float));
    if ((st = exchange_rows(t->ctx, c, x->data, send_rows, recv_rows, y, C))) return ld_error_wrap(t->ctx, st, "%s: ", op);
    if (!((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return LD_OK;
    int64_t *counts = ld_arena_alloc(t->act, 2 * (size_t)P * sizeof(int64_t));
    if (!counts) return ld_ctx_status(t->ctx);
    memcpy(counts, send_rows, (size_t)P * sizeof(int64_t));
    memcpy(counts + P, recv_rows, (size_t)P * sizeof(int64_t));
    ld_node *n = ld_nn_record(t, op, exchange_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (!n) return ld_ctx_status(t->ctx);
    n->saved[0] = c, n->saved[1] = counts, n->i[0] = C, n->i[1] = rows_in;
    return LD_OK;
}

/* nn/ops.c — differentiable ops: each checks shapes, runs the forward kernel, and records
 * a node whose backward calls the matching backward kernel (which accumulates). */
#include <math.h>
#include <string.h>

#include "core/team.h"
#include "nn/nn_internal.h"

/* ---- helpers ---------------------------------------------------------------------- */

static int64_t rows_of(const ld_tensor *x) {
    return ld_tensor_numel(x) / x->shape[x->ndim - 1];
}
static int64_t cols_of(const ld_tensor *x) {
    return x->shape[x->ndim - 1];
}

static ld_status check_f32(ld_tape *t, const char *op, const char *what, const ld_tensor *x) {
    if (!x) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: %s is NULL", op, what);
    if (x->dtype != LD_F32)
        return ld_error(t->ctx, LD_ERR_DTYPE, "%s: %s '%s' is %s, expected F32", op, what, x->name,
                        ld_dtype_traits(x->dtype) ? ld_dtype_traits(x->dtype)->name : "?");
    if (!ld_tensor_is_contiguous(x))
        return ld_error(t->ctx, LD_ERR_STATE, "%s: %s '%s' is not contiguous", op, what, x->name);
    return LD_OK;
}

static ld_status shape_error(ld_tape *t, const char *op, const ld_tensor *a, const ld_tensor *b, const char *why) {
    char sa[80], sb[80];
    return ld_error(t->ctx, LD_ERR_SHAPE, "%s: %s ('%s' %s vs '%s' %s)", op, why, a->name,
                    ld_tensor_shape_str(a, sa, sizeof sa), b->name, ld_tensor_shape_str(b, sb, sizeof sb));
}

/* A new activation of the given shape; it needs a gradient if any input does. */
static ld_status new_out(ld_tape *t, int ndim, const int64_t *shape, const ld_tensor *i0, const ld_tensor *i1,
                         const ld_tensor *i2, ld_tensor **out) {
    ld_status st = ld_tensor_new(t->ctx, t->act, LD_F32, ndim, shape, out);
    if (st) return st;
    if (t->grad_enabled && (ld_tape_needs_grad(i0) || ld_tape_needs_grad(i1) || ld_tape_needs_grad(i2)))
        (*out)->flags |= LD_TENSOR_NEEDS_GRAD;
    return LD_OK;
}

/* The same for an output whose every element the op writes before anything reads it (a
 * product with beta = 0, a pointwise map): not cleared first — clearing every op's output was
 * ~11 % of a small training step (bench clip, emoji shape). */
static ld_status new_out_unset(ld_tape *t, int ndim, const int64_t *shape, const ld_tensor *i0, const ld_tensor *i1,
                               const ld_tensor *i2, ld_tensor **out) {
    ld_tensor tmp;
    *out = NULL;
    ld_status st = ld_tensor_init(t->ctx, &tmp, LD_F32, ndim, shape);
    if (st) return st;
    ld_tensor *o = ld_arena_alloc(t->act, sizeof *o);
    if (!o) return ld_ctx_status(t->ctx);
    *o = tmp;
    if (!(o->data = ld_arena_alloc(t->act, ld_tensor_nbytes(&tmp)))) return ld_ctx_status(t->ctx);
    if (t->grad_enabled && (ld_tape_needs_grad(i0) || ld_tape_needs_grad(i1) || ld_tape_needs_grad(i2)))
        o->flags |= LD_TENSOR_NEEDS_GRAD;
    *out = o;
    return LD_OK;
}

static float *scratch(ld_tape *t, int64_t n) {
    return ld_arena_alloc(t->act, (size_t)n * sizeof(float));
}

/* Records a node if the output needs a gradient; returns NULL when nothing is recorded. */
static ld_node *record(ld_tape *t, const char *op, ld_backward_fn bw, ld_tensor *out, ld_tensor *i0, ld_tensor *i1,
                       ld_tensor *i2) {
    if (!(out->flags & LD_TENSOR_NEEDS_GRAD)) return NULL;
    if (t->n_nodes == t->cap_nodes) {
        int cap = t->cap_nodes ? 2 * t->cap_nodes : 256;
        ld_node *nodes = ld_alloc(t->ctx, sizeof *nodes * (size_t)cap);
        if (!nodes) return NULL;
        if (t->n_nodes) memcpy(nodes, t->nodes, sizeof *nodes * (size_t)t->n_nodes);
        ld_free(t->ctx, t->nodes);
        t->nodes = nodes;
        t->cap_nodes = cap;
    }
    ld_node *n = &t->nodes[t->n_nodes++];
    memset(n, 0, sizeof *n);
    n->op = op;
    n->backward = bw;
    n->out = out;
    n->in[0] = i0, n->in[1] = i1, n->in[2] = i2;
    return n;
}
/* record() fails only on memory; the op must then fail too. */
#define RECORD_OR_FAIL(n, ...)                                        \
    ld_node *n = record(__VA_ARGS__);                                 \
    if (!n && ((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return ld_ctx_status(t->ctx)

/* The helpers above for ops defined in other files (nn_internal.h). */
ld_status ld_nn_check_f32(ld_tape *t, const char *op, const char *what, const ld_tensor *x) {
    return check_f32(t, op, what, x);
}
ld_status ld_nn_new_out(ld_tape *t, int ndim, const int64_t *shape, const ld_tensor *i0, const ld_tensor *i1,
                        const ld_tensor *i2, ld_tensor **out) {
    return new_out(t, ndim, shape, i0, i1, i2, out);
}
ld_node *ld_nn_record(ld_tape *t, const char *op, ld_backward_fn bw, ld_tensor *out, ld_tensor *i0, ld_tensor *i1,
                      ld_tensor *i2) {
    return record(t, op, bw, out, i0, i1, i2);
}

/* ---- linear ----------------------------------------------------------------------- */

/* Mixed-precision backward: dy converted to bf16 once, both products in bf16. */
static void linear_bwd_bf16(ld_tape *t, ld_node *n, float *dx, float *dw) {
    const uint16_t *xb = (const uint16_t *)n->saved[0], *wb = (const uint16_t *)n->saved[1];
    int64_t M = n->i[0], K = n->i[1], N = n->i[2];
    bool w_kn = n->flag;
    uint16_t *dyb = ld_arena_alloc(t->grads, (size_t)(M * N) * sizeof(uint16_t));
    if (!dyb) return;
    t->k->f32_to_bf16(dyb, n->out->grad->data, M * N);
    if (dx) {
        if (w_kn) t->k->gemm_bf16(false, true, M, K, N, 1.0f, dyb, N, wb, N, 1.0f, dx, K);
        else t->k->gemm_bf16(false, false, M, K, N, 1.0f, dyb, N, wb, K, 1.0f, dx, K);
    }
    if (dw) {
        if (w_kn) t->k->gemm_bf16(true, false, K, N, M, 1.0f, xb, K, dyb, N, 1.0f, dw, N);
        else t->k->gemm_bf16(true, false, N, K, M, 1.0f, dyb, N, xb, K, 1.0f, dw, K);
    }
}

/* The bias gradient db[j] += sum over rows of dy[r][j], for columns [j0, j1): each column's
 * sum runs over the rows in order from 0 (as a per-column loop would), but row by row over
 * blocks of BIAS_BLOCK columns with the kernels' add_inplace, so it streams dy once along its
 * rows instead of once per column with a stride. */
#define BIAS_BLOCK 512
typedef struct {
    float *db;
    const float *dy;
    int64_t M, N;
    void (*add_inplace)(float *y, const float *x, int64_t n);
} bias_grad_args;

static void bias_grad_part(void *arg, int64_t j0, int64_t j1, int piece) {
    (void)piece;
    const bias_grad_args *a = arg;
    float acc[BIAS_BLOCK] __attribute__((aligned(64)));
    for (int64_t c0 = j0; c0 < j1; c0 += BIAS_BLOCK) {
        int64_t n = j1 - c0 < BIAS_BLOCK ? j1 - c0 : BIAS_BLOCK;
        memset(acc, 0, (size_t)n * sizeof(float));
        for (int64_t r = 0; r < a->M; r++) a->add_inplace(acc, a->dy + r * a->N + c0, n);
        a->add_inplace(a->db + c0, acc, n);
    }
}

static void linear_bwd(ld_tape *t, ld_node *n) {
    ld_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const float *dy = n->out->grad->data;
    int64_t M = n->i[0], K = n->i[1], N = n->i[2];
    bool w_kn = n->flag;
    float *dx = ld_tape_grad(t, x), *dw = ld_tape_grad(t, w), *db = b ? ld_tape_grad(t, b) : NULL;
    if (n->saved[1]) { /* mixed precision: dX and dW, both in bf16 */
        linear_bwd_bf16(t, n, dx, dw);
    } else if (dx) {
        if (w_kn) t->k->gemm_f32(false, true, M, K, N, 1.0f, dy, N, w->data, N, 1.0f, dx, K);
        else t->k->gemm_f32(false, false, M, K, N, 1.0f, dy, N, w->data, K, 1.0f, dx, K);
    }
    if (dw && !n->saved[1]) {
        if (w_kn) t->k->gemm_f32(true, false, K, N, M, 1.0f, x->data, K, dy, N, 1.0f, dw, N);
        else t->k->gemm_f32(true, false, N, K, M, 1.0f, dy, N, x->data, K, 1.0f, dw, K);
    }
    if (db) {
        bias_grad_args a = {db, dy, M, N, t->k->add_inplace};
        ld_par_for(N, ld_par_cols_grain(M), bias_grad_part, &a);
    }
}

/* y[r] += b for rows [r0, r1) (the team splits the rows: one row's add is too small to split). */
typedef struct {
    const ld_kernels *k;
    float *y;
    const float *b;
    int64_t N;
} bias_add_args;

static void bias_add_part(void *arg, int64_t r0, int64_t r1, int piece) {
    (void)piece;
    const bias_add_args *a = arg;
    for (int64_t r = r0; r < r1; r++) a->k->add_inplace(a->y + r * a->N, a->b, a->N);
}

ld_status ld_op_linear(ld_tape *t, const ld_tensor *x, ld_tensor *w, ld_tensor *b, bool w_kn, ld_tensor **out_) {
    static const char *op = "linear";
    ld_status st;
    if ((st = check_f32(t, op, "input", x)) || (st = check_f32(t, op, "weight", w))) return st;
    if (w->ndim != 2) return shape_error(t, op, w, x, "weight must be 2-D");
    int64_t M = rows_of(x), K = cols_of(x), N = w_kn ? w->shape[1] : w->shape[0];
    if ((w_kn ? w->shape[0] : w->shape[1]) != K) return shape_error(t, op, x, w, "input features do not match weight");
    if (b && ((st = check_f32(t, op, "bias", b)) || ld_tensor_numel(b) != N))
        return st ? st : shape_error(t, op, b, w, "bias length does not match weight");
    int64_t shape[LD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    if ((st = new_out_unset(t, x->ndim, shape, x, w, b, out_))) return st; /* every GEMM below has beta = 0 */
    float *y = (*out_)->data;
    const uint16_t *wb = ld_params_bf16_of(t->bf16_params, w);
    uint16_t *xb = NULL;
    if (wb) { /* mixed precision: x to bf16 once (kept for backward), product in bf16 */
        if (!(xb = ld_arena_alloc(t->act, (size_t)(M * K) * sizeof(uint16_t)))) return ld_ctx_status(t->ctx);
        t->k->f32_to_bf16(xb, x->data, M * K);
        if (w_kn) t->k->gemm_bf16(false, false, M, N, K, 1.0f, xb, K, wb, N, 0.0f, y, N);
        else t->k->gemm_bf16(false, true, M, N, K, 1.0f, xb, K, wb, K, 0.0f, y, N);
    } else if (w_kn) {
        t->k->gemm_f32(false, false, M, N, K, 1.0f, x->data, K, w->data, N, 0.0f, y, N);
    } else {
        t->k->gemm_f32(false, true, M, N, K, 1.0f, x->data, K, w->data, K, 0.0f, y, N);
    }
    if (b) {
        bias_add_args a = {t->k, y, b->data, N};
        ld_par_for(M, ld_par_grain(N), bias_add_part, &a);
    }
    RECORD_OR_FAIL(n, t, op, linear_bwd, *out_, (ld_tensor *)x, w, b);
    if (n) {
        n->i[0] = M, n->i[1] = K, n->i[2] = N;
        n->flag = w_kn;
        n->saved[0] = xb;
        n->saved[1] = (void *)wb;
    }
    return LD_OK;
}

/* ---- embedding -------------------------------------------------------------------- */

static void embedding_bwd(ld_tape *t, ld_node *n) {
    float *dtable = ld_tape_grad(t, n->in[0]);
    if (dtable) t->k->embedding_bwd(dtable, n->ids, n->out->grad->data, n->i[0], n->i[1]);
}

ld_status ld_op_embedding(ld_tape *t, const int32_t *ids, int64_t n_ids, ld_tensor *table, ld_tensor **out_) {
    static const char *op = "embedding";
    ld_status st;
    if ((st = check_f32(t, op, "table", table))) return st;
    if (!ids || n_ids <= 0) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "embedding: no ids");
    if (table->ndim != 2) return ld_error(t->ctx, LD_ERR_SHAPE, "embedding: table '%s' must be 2-D", table->name);
    int64_t V = table->shape[0], C = table->shape[1];
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ld_error(t->ctx, LD_ERR_INVALID_ARG, "embedding '%s': id %d at position %lld outside 0..%lld",
                            table->name, ids[i], (long long)i, (long long)V - 1);
    if ((st = new_out(t, 2, (int64_t[]){n_ids, C}, table, NULL, NULL, out_))) return st;
    t->k->embedding_fwd((*out_)->data, ids, table->data, n_ids, C);
    RECORD_OR_FAIL(n, t, op, embedding_bwd, *out_, table, NULL, NULL);
    if (n) n->ids = ids, n->i[0] = n_ids, n->i[1] = C;
    return LD_OK;
}

/* ---- normalisation ---------------------------------------------------------------- */

static void layernorm_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]), *dw = ld_tape_grad(t, n->in[1]);
    float *db = n->in[2] ? ld_tape_grad(t, n->in[2]) : NULL;
    t->k->layernorm_bwd(dx, dw, db, n->out->grad->data, n->in[0]->data, n->in[1]->data, n->saved[0], n->saved[1],
                        n->i[0], n->i[1]);
}

ld_status ld_op_layernorm(ld_tape *t, const ld_tensor *x, ld_tensor *w, ld_tensor *b, float eps, ld_tensor **out_) {
    static const char *op = "layernorm";
    ld_status st;
    if ((st = check_f32(t, op, "input", x)) || (st = check_f32(t, op, "weight", w))) return st;
    int64_t N = rows_of(x), C = cols_of(x);
    if (ld_tensor_numel(w) != C) return shape_error(t, op, w, x, "weight length must equal the last dimension");
    if (b && ((st = check_f32(t, op, "bias", b)) || ld_tensor_numel(b) != C))
        return st ? st : shape_error(t, op, b, x, "bias length must equal the last dimension");
    if ((st = new_out(t, x->ndim, x->shape, x, w, b, out_))) return st;
    float *mean = scratch(t, N), *rstd = scratch(t, N);
    if (!mean || !rstd) return ld_ctx_status(t->ctx);
    t->k->layernorm_fwd((*out_)->data, mean, rstd, x->data, w->data, b ? b->data : NULL, N, C, eps);
    RECORD_OR_FAIL(n, t, op, layernorm_bwd, *out_, (ld_tensor *)x, w, b);
    if (n) n->saved[0] = mean, n->saved[1] = rstd, n->i[0] = N, n->i[1] = C;
    return LD_OK;
}

static void rmsnorm_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]), *dw = ld_tape_grad(t, n->in[1]);
    t->k->rmsnorm_bwd(dx, dw, n->out->grad->data, n->in[0]->data, n->in[1]->data, n->saved[0], n->i[0], n->i[1]);
}

ld_status ld_op_rmsnorm(ld_tape *t, const ld_tensor *x, ld_tensor *w, float eps, ld_tensor **out_) {
    static const char *op = "rmsnorm";
    ld_status st;
    if ((st = check_f32(t, op, "input", x)) || (st = check_f32(t, op, "weight", w))) return st;
    int64_t N = rows_of(x), C = cols_of(x);
    if (ld_tensor_numel(w) != C) return shape_error(t, op, w, x, "weight length must equal the last dimension");
    if ((st = new_out(t, x->ndim, x->shape, x, w, NULL, out_))) return st;
    float *rstd = scratch(t, N);
    if (!rstd) return ld_ctx_status(t->ctx);
    t->k->rmsnorm_fwd((*out_)->data, rstd, x->data, w->data, N, C, eps);
    RECORD_OR_FAIL(n, t, op, rmsnorm_bwd, *out_, (ld_tensor *)x, w, NULL);
    if (n) n->saved[0] = rstd, n->i[0] = N, n->i[1] = C;
    return LD_OK;
}

/* ---- rotary embedding -------------------------------------------------------------- */

static void rope_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->rope_bwd(dx, n->out->grad->data, n->i[0], n->i[1], n->i[2], n->i[3], (int64_t)n->f[1], n->f[0]);
}

ld_status ld_op_rope(ld_tape *t, const ld_tensor *x, int64_t n_heads, int64_t pos0, float theta, ld_tensor **out_) {
    static const char *op = "rope";
    ld_status st;
    if ((st = check_f32(t, op, "input", x))) return st;
    if (x->ndim != 3 || n_heads <= 0 || x->shape[2] % n_heads || (x->shape[2] / n_heads) % 2)
        return ld_error(t->ctx, LD_ERR_SHAPE, "rope: '%s' must be [B, T, H*D] with %lld heads of even size D",
                        x->name, (long long)n_heads);
    if (pos0 < 0 || pos0 > (1 << 24)) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "rope: position %lld out of range", (long long)pos0);
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2] / n_heads;
    if ((st = new_out(t, 3, x->shape, x, NULL, NULL, out_))) return st;
    t->k->rope_fwd((*out_)->data, x->data, B, T, n_heads, D, pos0, theta);
    RECORD_OR_FAIL(n, t, op, rope_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->i[0] = B, n->i[1] = T, n->i[2] = n_heads, n->i[3] = D, n->f[0] = theta, n->f[1] = (float)pos0;
    return LD_OK;
}

static void rope_freq_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx)
        t->k->rope_freq_bwd(dx, n->out->grad->data, n->i[0], n->i[1], n->i[2], n->i[3], (int64_t)n->f[1], n->saved[0],
                            n->f[0]);
}

ld_status ld_op_rope_freqs(ld_tape *t, const ld_tensor *x, int64_t n_heads, int64_t pos0, const float *inv_freq,
                           float mscale, ld_tensor **out_) {
    static const char *op = "rope";
    ld_status st;
    if ((st = check_f32(t, op, "input", x))) return st;
    if (x->ndim != 3 || n_heads <= 0 || x->shape[2] % n_heads || (x->shape[2] / n_heads) % 2 || !inv_freq)
        return ld_error(t->ctx, LD_ERR_SHAPE, "rope: '%s' must be [B, T, H*D] with %lld heads of even size D",
                        x->name, (long long)n_heads);
    if (pos0 < 0 || pos0 > (1 << 24)) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "rope: position %lld out of range", (long long)pos0);
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2] / n_heads;
    if ((st = new_out(t, 3, x->shape, x, NULL, NULL, out_))) return st;
    t->k->rope_freq_fwd((*out_)->data, x->data, B, T, n_heads, D, pos0, inv_freq, mscale);
    RECORD_OR_FAIL(n, t, op, rope_freq_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->i[0] = B, n->i[1] = T, n->i[2] = n_heads, n->i[3] = D, n->f[0] = mscale, n->f[1] = (float)pos0,
           n->saved[0] = (void *)inv_freq;
    return LD_OK;
}

/* ---- attention -------------------------------------------------------------------- */

/* The node keeps its attention shape in the tape's arena (saved[1]). */
static ld_attn_shape attn_shape(const ld_node *n) {
    return *(const ld_attn_shape *)n->saved[1];
}

static void attention_bwd(ld_tape *t, ld_node *n) {
    ld_attn_shape s = attn_shape(n);
    float *dq = ld_tape_grad(t, n->in[0]), *dk = ld_tape_grad(t, n->in[1]), *dv = ld_tape_grad(t, n->in[2]);
    void *scr = ld_arena_alloc(t->grads, t->k->attention_bwd_scratch(&s));
    if (!scr) return;
    t->k->attention_bwd(dq, dk, dv, n->out->grad->data, n->out->data, n->saved[0], n->in[0]->data, n->in[1]->data,
                        n->in[2]->data, &s, scr);
}

ld_attn_opts ld_attn_default_opts(int64_t n_heads, int64_t n_kv_heads) {
    return (ld_attn_opts){.n_heads = n_heads, .n_kv_heads = n_kv_heads, .causal = true};
}

ld_status ld_op_attention_ex(ld_tape *t, const ld_tensor *q, const ld_tensor *k, const ld_tensor *v,
                             const ld_attn_opts *o, ld_tensor **out_) {
    static const char *op = "attention";
    ld_status st;
    if ((st = check_f32(t, op, "q", q)) || (st = check_f32(t, op, "k", k)) || (st = check_f32(t, op, "v", v)))
        return st;
    if (!o) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "attention: NULL options");
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3)
        return ld_error(t->ctx, LD_ERR_SHAPE, "attention: q, k, v must be [B, T, heads*D]");
    if (o->n_heads <= 0 || o->n_kv_heads <= 0 || o->n_heads % o->n_kv_heads || q->shape[2] % o->n_heads)
        return ld_error(t->ctx, LD_ERR_SHAPE, "attention: %lld query heads are not a multiple of %lld kv heads or do "
                        "not divide width %lld", (long long)o->n_heads, (long long)o->n_kv_heads, (long long)q->shape[2]);
    if (o->window < 0 || o->softcap < 0 || o->scale < 0 || (o->window && !o->causal))
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "attention: window %lld (needs causal), softcap %g and scale %g "
                        "must not be negative", (long long)o->window, o->softcap, o->scale);
    int64_t D = q->shape[2] / o->n_heads;
    if (!ld_tensor_same_shape(k, v)) return shape_error(t, op, k, v, "k and v differ");
    if (k->shape[0] != q->shape[0] || k->shape[1] != q->shape[1] || k->shape[2] != o->n_kv_heads * D)
        return shape_error(t, op, q, k, "k does not match q's batch, length or head size");
    if ((st = new_out(t, 3, q->shape, q, k, v, out_))) return st;
    ld_attn_shape *s = ld_arena_alloc(t->act, sizeof *s);
    if (!s) return ld_ctx_status(t->ctx);
    *s = (ld_attn_shape){.B = q->shape[0], .Tq = q->shape[1], .Tk = q->shape[1], .Hq = o->n_heads,
                         .Hkv = o->n_kv_heads, .D = D, .causal = o->causal,
                         .scale = o->scale > 0 ? o->scale : 1.0f / sqrtf((float)D), .key_len = o->key_len,
                         .window = o->window, .softcap = o->softcap};
    float *lse = scratch(t, s->B * s->Hq * s->Tq);
    if (!lse) return ld_ctx_status(t->ctx);
    t->k->attention_fwd((*out_)->data, lse, q->data, k->data, v->data, s);
    RECORD_OR_FAIL(n, t, op, attention_bwd, *out_, (ld_tensor *)q, (ld_tensor *)k, (ld_tensor *)v);
    if (n) n->saved[0] = lse, n->saved[1] = s;
    return LD_OK;
}

ld_status ld_op_attention(ld_tape *t, const ld_tensor *q, const ld_tensor *k, const ld_tensor *v, int64_t n_heads,
                          int64_t n_kv_heads, bool causal, const int32_t *key_len, ld_tensor **out_) {
    ld_attn_opts o = ld_attn_default_opts(n_heads, n_kv_heads);
    o.causal = causal, o.key_len = key_len;
    return ld_op_attention_ex(t, q, k, v, &o, out_);
}

/* ---- pointwise -------------------------------------------------------------------- */

static void gelu_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->gelu_bwd(dx, n->out->grad->data, n->in[0]->data, ld_tensor_numel(n->out));
}
static void gelu_erf_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->gelu_erf_bwd(dx, n->out->grad->data, n->in[0]->data, ld_tensor_numel(n->out));
}
static void silu_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->silu_bwd(dx, n->out->grad->data, n->in[0]->data, ld_tensor_numel(n->out));
}

static void quick_gelu_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->quick_gelu_bwd(dx, n->out->grad->data, n->in[0]->data, ld_tensor_numel(n->out));
}

typedef void (*unary_fwd)(float *y, const float *x, int64_t n);
static ld_status unary(ld_tape *t, const char *op, const ld_tensor *x, unary_fwd fwd, ld_backward_fn bw,
                       ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, op, "input", x))) return st;
    if ((st = new_out_unset(t, x->ndim, x->shape, x, NULL, NULL, out_))) return st; /* fwd writes all of it */
    fwd((*out_)->data, x->data, ld_tensor_numel(x));
    RECORD_OR_FAIL(n, t, op, bw, *out_, (ld_tensor *)x, NULL, NULL);
    (void)n;
    return LD_OK;
}

ld_status ld_op_gelu(ld_tape *t, const ld_tensor *x, ld_tensor **y) {
    return unary(t, "gelu", x, t->k->gelu_fwd, gelu_bwd, y);
}
ld_status ld_op_gelu_erf(ld_tape *t, const ld_tensor *x, ld_tensor **y) {
    return unary(t, "gelu_erf", x, t->k->gelu_erf_fwd, gelu_erf_bwd, y);
}
ld_status ld_op_silu(ld_tape *t, const ld_tensor *x, ld_tensor **y) {
    return unary(t, "silu", x, t->k->silu_fwd, silu_bwd, y);
}
ld_status ld_op_quick_gelu(ld_tape *t, const ld_tensor *x, ld_tensor **y) {
    return unary(t, "quick_gelu", x, t->k->quick_gelu_fwd, quick_gelu_bwd, y);
}

static void softmax_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->softmax_bwd(dx, n->out->grad->data, n->out->data, rows_of(n->out), cols_of(n->out));
}

ld_status ld_op_softmax(ld_tape *t, const ld_tensor *x, ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "softmax", "input", x))) return st;
    if ((st = new_out(t, x->ndim, x->shape, x, NULL, NULL, out_))) return st;
    t->k->softmax_fwd((*out_)->data, x->data, rows_of(x), cols_of(x));
    RECORD_OR_FAIL(n, t, "softmax", softmax_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    (void)n;
    return LD_OK;
}

static ld_status check_same(ld_tape *t, const char *op, const ld_tensor *a, const ld_tensor *b) {
    ld_status st;
    if ((st = check_f32(t, op, "first input", a)) || (st = check_f32(t, op, "second input", b))) return st;
    if (!ld_tensor_same_shape(a, b)) return shape_error(t, op, a, b, "shapes differ");
    return LD_OK;
}

static void swiglu_bwd(ld_tape *t, ld_node *n) {
    float *dg = ld_tape_grad(t, n->in[0]), *du = ld_tape_grad(t, n->in[1]);
    t->k->swiglu_bwd(dg, du, n->out->grad->data, n->in[0]->data, n->in[1]->data, ld_tensor_numel(n->out));
}

ld_status ld_op_swiglu(ld_tape *t, const ld_tensor *gate, const ld_tensor *up, ld_tensor **out_) {
    ld_status st;
    if ((st = check_same(t, "swiglu", gate, up))) return st;
    if ((st = new_out(t, gate->ndim, gate->shape, gate, up, NULL, out_))) return st;
    t->k->swiglu_fwd((*out_)->data, gate->data, up->data, ld_tensor_numel(gate));
    RECORD_OR_FAIL(n, t, "swiglu", swiglu_bwd, *out_, (ld_tensor *)gate, (ld_tensor *)up, NULL);
    (void)n;
    return LD_OK;
}

static void geglu_bwd(ld_tape *t, ld_node *n) {
    float *dg = ld_tape_grad(t, n->in[0]), *du = ld_tape_grad(t, n->in[1]);
    t->k->geglu_bwd(dg, du, n->out->grad->data, n->in[0]->data, n->in[1]->data, ld_tensor_numel(n->out));
}

ld_status ld_op_geglu(ld_tape *t, const ld_tensor *gate, const ld_tensor *up, ld_tensor **out_) {
    ld_status st;
    if ((st = check_same(t, "geglu", gate, up))) return st;
    if ((st = new_out(t, gate->ndim, gate->shape, gate, up, NULL, out_))) return st;
    t->k->geglu_fwd((*out_)->data, gate->data, up->data, ld_tensor_numel(gate));
    RECORD_OR_FAIL(n, t, "geglu", geglu_bwd, *out_, (ld_tensor *)gate, (ld_tensor *)up, NULL);
    (void)n;
    return LD_OK;
}

static void softcap_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->softcap_bwd(dx, n->out->grad->data, n->in[0]->data, n->f[0], ld_tensor_numel(n->out));
}

ld_status ld_op_softcap(ld_tape *t, const ld_tensor *x, float cap, ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "softcap", "input", x))) return st;
    if (!(cap > 0)) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "softcap: cap %g must be positive", cap);
    if ((st = new_out(t, x->ndim, x->shape, x, NULL, NULL, out_))) return st;
    t->k->softcap_fwd((*out_)->data, x->data, cap, ld_tensor_numel(x));
    RECORD_OR_FAIL(n, t, "softcap", softcap_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->f[0] = cap;
    return LD_OK;
}

static void add_bwd(ld_tape *t, ld_node *n) {
    int64_t len = ld_tensor_numel(n->out);
    for (int j = 0; j < 2; j++) {
        float *d = ld_tape_grad(t, n->in[j]);
        if (d) t->k->add_inplace(d, n->out->grad->data, len);
    }
}

ld_status ld_op_add(ld_tape *t, const ld_tensor *a, const ld_tensor *b, ld_tensor **out_) {
    ld_status st;
    if ((st = check_same(t, "add", a, b))) return st;
    if ((st = new_out(t, a->ndim, a->shape, a, b, NULL, out_))) return st;
    t->k->add_fwd((*out_)->data, a->data, b->data, ld_tensor_numel(a));
    RECORD_OR_FAIL(n, t, "add", add_bwd, *out_, (ld_tensor *)a, (ld_tensor *)b, NULL);
    (void)n;
    return LD_OK;
}

static void scale_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->axpy(dx, n->f[0], n->out->grad->data, ld_tensor_numel(n->out));
}

ld_status ld_op_scale(ld_tape *t, const ld_tensor *x, float alpha, ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "scale", "input", x))) return st;
    if ((st = new_out(t, x->ndim, x->shape, x, NULL, NULL, out_))) return st;
    t->k->scale_fwd((*out_)->data, x->data, alpha, ld_tensor_numel(x));
    RECORD_OR_FAIL(n, t, "scale", scale_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->f[0] = alpha;
    return LD_OK;
}

static void scale_rows_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (!dx) return;
    const float *s = n->saved[0], *dy = n->out->grad->data;
    int64_t R = rows_of(n->out), C = cols_of(n->out);
    for (int64_t r = 0; r < R; r++) t->k->axpy(dx + r * C, s[r], dy + r * C, C);
}

ld_status ld_op_scale_rows(ld_tape *t, const ld_tensor *x, const float *s, ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "scale_rows", "input", x))) return st;
    if (!s) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "scale_rows: no row scales");
    if ((st = new_out(t, x->ndim, x->shape, x, NULL, NULL, out_))) return st;
    int64_t R = rows_of(x), C = cols_of(x);
    float *y = (*out_)->data;
    const float *xs = x->data;
    for (int64_t r = 0; r < R; r++) t->k->scale_fwd(y + r * C, xs + r * C, s[r], C);
    RECORD_OR_FAIL(n, t, "scale_rows", scale_rows_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->saved[0] = (void *)s;
    return LD_OK;
}

static void dropout_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx)
        t->k->dropout_bwd(dx, n->out->grad->data, n->f[0], t->seed, (uint64_t)n->i[0], ld_tensor_numel(n->out));
}

ld_status ld_op_dropout(ld_tape *t, const ld_tensor *x, float p, ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "dropout", "input", x))) return st;
    if (!(p >= 0.0f && p < 1.0f)) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "dropout: p = %g outside [0, 1)", p);
    if ((st = new_out(t, x->ndim, x->shape, x, NULL, NULL, out_))) return st;
    int64_t len = ld_tensor_numel(x);
    uint64_t offset = t->dropout_offset;
    t->dropout_offset += (uint64_t)len;
    t->k->dropout_fwd((*out_)->data, x->data, p, t->seed, offset, len);
    RECORD_OR_FAIL(n, t, "dropout", dropout_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->f[0] = p, n->i[0] = (int64_t)offset;
    return LD_OK;
}

/* ---- reshape ---------------------------------------------------------------------- */

static void reshape_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (dx) t->k->add_inplace(dx, n->out->grad->data, ld_tensor_numel(n->out));
}

ld_status ld_op_reshape(ld_tape *t, const ld_tensor *x, int ndim, const int64_t *shape, ld_tensor **out_) {
    ld_status st;
    ld_tensor probe;
    if ((st = check_f32(t, "reshape", "input", x))) return st;
    if ((st = ld_tensor_init(t->ctx, &probe, LD_F32, ndim, shape))) return st;
    if (ld_tensor_numel(&probe) != ld_tensor_numel(x)) return shape_error(t, "reshape", x, &probe, "element counts differ");
    if ((st = new_out(t, ndim, shape, x, NULL, NULL, out_))) return st;
    memcpy((*out_)->data, x->data, ld_tensor_nbytes(x));
    RECORD_OR_FAIL(n, t, "reshape", reshape_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    (void)n;
    return LD_OK;
}

/* ---- column slice ------------------------------------------------------------------ */

static void slice_cols_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (!dx) return;
    int64_t R = rows_of(n->out), L = cols_of(n->out), C = cols_of(n->in[0]), s = n->i[0];
    const float *dy = n->out->grad->data;
    for (int64_t r = 0; r < R; r++) t->k->add_inplace(dx + r * C + s, dy + r * L, L);
}

ld_status ld_op_slice_cols(ld_tape *t, const ld_tensor *x, int64_t start, int64_t len, ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "slice_cols", "input", x))) return st;
    int64_t C = cols_of(x), R = rows_of(x);
    if (start < 0 || len <= 0 || start > C || len > C - start)
        return ld_error(t->ctx, LD_ERR_SHAPE, "slice_cols: columns [%lld, %lld) outside '%s' width %lld",
                        (long long)start, (long long)(start + len), x->name, (long long)C);
    int64_t shape[LD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = len;
    if ((st = new_out(t, x->ndim, shape, x, NULL, NULL, out_))) return st;
    float *y = (*out_)->data;
    const float *xs = x->data;
    for (int64_t r = 0; r < R; r++) memcpy(y + r * len, xs + r * C + start, (size_t)len * sizeof(float));
    RECORD_OR_FAIL(n, t, "slice_cols", slice_cols_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->i[0] = start;
    return LD_OK;
}

/* ---- cross-entropy ----------------------------------------------------------------- */

/* Checks targets against V and counts the rows that are not ignored (shared by the losses). */
static ld_status count_targets(ld_tape *t, const char *op, const int32_t *targets, int32_t ignore_index, int64_t N,
                               int64_t V, int64_t *counted) {
    if (!targets) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: targets are NULL", op);
    *counted = 0;
    for (int64_t r = 0; r < N; r++) {
        if (targets[r] == ignore_index) continue;
        if (targets[r] < 0 || targets[r] >= V)
            return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: target %d at row %lld outside 0..%lld", op, targets[r],
                            (long long)r, (long long)V - 1);
        (*counted)++;
    }
    return LD_OK;
}

/* The mean of per-row losses over the counted rows. */
static float mean_loss(const float *loss, int64_t N, int64_t counted) {
    double sum = 0;
    for (int64_t r = 0; r < N; r++) sum += loss[r];
    return counted ? (float)(sum / (double)counted) : 0.0f;
}

/* The gradient each counted row's loss gets from the mean: d(loss)/counted. */
static float *per_row_dloss(ld_node *n) {
    float g = n->out->grad->data ? ((float *)n->out->grad->data)[0] : 0.0f;
    float *dloss = n->saved[1];
    float per_row = n->i[3] > 0 ? g / (float)n->i[3] : 0.0f;
    for (int64_t r = 0; r < n->i[0]; r++) dloss[r] = per_row;
    return dloss;
}

static void xent_bwd(ld_tape *t, ld_node *n) {
    float *dlogits = ld_tape_grad(t, n->in[0]);
    if (!dlogits) return;
    float *dloss = per_row_dloss(n);
    t->k->xent_bwd(dlogits, dloss, n->in[0]->data, n->saved[0], n->ids, n->i[0], n->i[1], (int32_t)n->i[2]);
}

ld_status ld_op_cross_entropy(ld_tape *t, const ld_tensor *logits, const int32_t *targets, int32_t ignore_index,
                              ld_tensor **out_, int64_t *n_counted) {
    ld_status st;
    if ((st = check_f32(t, "cross_entropy", "logits", logits))) return st;
    int64_t N = rows_of(logits), V = cols_of(logits), counted = 0;
    if ((st = count_targets(t, "cross_entropy", targets, ignore_index, N, V, &counted))) return st;
    if ((st = new_out(t, 1, (int64_t[]){1}, logits, NULL, NULL, out_))) return st;
    float *loss = scratch(t, N), *lse = scratch(t, N), *dloss = scratch(t, N);
    if (!loss || !lse || !dloss) return ld_ctx_status(t->ctx);
    t->k->xent_fwd(loss, lse, logits->data, targets, N, V, ignore_index);
    ((float *)(*out_)->data)[0] = mean_loss(loss, N, counted);
    if (n_counted) *n_counted = counted;
    RECORD_OR_FAIL(n, t, "cross_entropy", xent_bwd, *out_, (ld_tensor *)logits, NULL, NULL);
    if (n) n->ids = targets, n->i[0] = N, n->i[1] = V, n->i[2] = ignore_index, n->i[3] = counted, n->saved[0] = lse,
        n->saved[1] = dloss;
    return LD_OK;
}

/* ---- distillation loss -------------------------------------------------------------- */

static void distill_bwd(ld_tape *t, ld_node *n) {
    float *ds = ld_tape_grad(t, n->in[0]);
    if (!ds) return;
    t->k->distill_bwd(ds, per_row_dloss(n), n->in[0]->data, n->in[1]->data, n->saved[0], n->ids, n->i[0], n->i[1],
                      n->f[0], n->f[1], (int32_t)n->i[2]);
}

ld_status ld_op_distill_xent(ld_tape *t, const ld_tensor *student, const ld_tensor *teacher, const int32_t *targets,
                             int32_t ignore_index, float temperature, float alpha, ld_tensor **out_,
                             int64_t *n_counted) {
    ld_status st;
    if ((st = check_f32(t, "distill", "student logits", student)) ||
        (st = check_f32(t, "distill", "teacher logits", teacher)))
        return st;
    int64_t N = rows_of(student), V = cols_of(student), counted = 0;
    if (rows_of(teacher) != N || cols_of(teacher) != V)
        return shape_error(t, "distill", student, teacher, "student and teacher logits differ in shape");
    if (!(temperature > 0) || !isfinite(temperature))
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "distill: temperature %g must be a positive number",
                        (double)temperature);
    if (!(alpha >= 0 && alpha <= 1))
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "distill: alpha %g must be in [0, 1]", (double)alpha);
    if ((st = count_targets(t, "distill", targets, ignore_index, N, V, &counted))) return st;
    if ((st = new_out(t, 1, (int64_t[]){1}, student, NULL, NULL, out_))) return st;
    float *loss = scratch(t, N), *stats = scratch(t, 3 * N), *dloss = scratch(t, N);
    if (!loss || !stats || !dloss) return ld_ctx_status(t->ctx);
    t->k->distill_fwd(loss, stats, student->data, teacher->data, targets, N, V, temperature, alpha, ignore_index);
    ((float *)(*out_)->data)[0] = mean_loss(loss, N, counted);
    if (n_counted) *n_counted = counted;
    /* the teacher rides along as in[1] for its data only: it never gets a gradient */
    RECORD_OR_FAIL(n, t, "distill", distill_bwd, *out_, (ld_tensor *)student, (ld_tensor *)teacher, NULL);
    if (n) n->ids = targets, n->i[0] = N, n->i[1] = V, n->i[2] = ignore_index, n->i[3] = counted, n->saved[0] = stats,
        n->saved[1] = dloss, n->f[0] = temperature, n->f[1] = alpha;
    return LD_OK;
}

/* ---- two-tower contrastive learning: L2 normalisation and symmetric InfoNCE ----------- */
/* Plain loops (both are O(B^2 E) or less, small next to the towers): these are their own
 * scalar reference. */

static void l2norm_bwd(ld_tape *t, ld_node *n) {
    float *dx = ld_tape_grad(t, n->in[0]);
    if (!dx) return;
    const float *y = n->out->data, *dy = n->out->grad->data, *inv = n->saved[0];
    int64_t R = rows_of(n->out), C = cols_of(n->out);
    for (int64_t r = 0; r < R; r++) { /* dx = (dy - y (y . dy)) / |x| */
        const float *yr = y + r * C, *g = dy + r * C;
        double dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)yr[c] * g[c];
        for (int64_t c = 0; c < C; c++) dx[r * C + c] += (float)(((double)g[c] - (double)yr[c] * dot) * inv[r]);
    }
}

ld_status ld_op_l2_normalize(ld_tape *t, const ld_tensor *x, ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "l2_normalize", "input", x))) return st;
    if ((st = new_out(t, x->ndim, x->shape, x, NULL, NULL, out_))) return st;
    int64_t R = rows_of(x), C = cols_of(x);
    float *inv = scratch(t, R), *y = (*out_)->data;
    const float *xs = x->data;
    if (!inv) return ld_ctx_status(t->ctx);
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t c = 0; c < C; c++) s += (double)xs[r * C + c] * xs[r * C + c];
        inv[r] = (float)(1.0 / sqrt(s + 1e-12)); /* a zero row stays zero */
        for (int64_t c = 0; c < C; c++) y[r * C + c] = xs[r * C + c] * inv[r];
    }
    RECORD_OR_FAIL(n, t, "l2_normalize", l2norm_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->saved[0] = inv;
    return LD_OK;
}

/* The two directions of InfoNCE: L1 = s a [b; qb]^T [B, B + Qb] (a's rows against b's and the
 * text-side queue), L2 = s b [a; qa]^T [B, B + Qa]; G1, G2 = dloss/dL (including the 1 / 2B). */
typedef struct infonce_saved {
    float *G1, *G2, *L1, *L2;
    const float *qa, *qb;
} infonce_saved;

static void infonce_bwd(ld_tape *t, ld_node *n) {
    const infonce_saved *sv = n->saved[0];
    const float *a = n->in[0]->data, *b = n->in[1]->data;
    int64_t B = n->i[0], E = n->i[1], Qa = n->i[2], Qb = n->i[3], M1 = B + Qb, M2 = B + Qa;
    float g = ((const float *)n->out->grad->data)[0], s = n->f[0];
    float *da = ld_tape_grad(t, n->in[0]), *db = ld_tape_grad(t, n->in[1]), *dl = ld_tape_grad(t, n->in[2]);
    /* L1 = s a [b; qb]^T: da += s G1 [b; qb], db += s G1[:, :B]^T a; L2 = s b [a; qa]^T: db += s G2
     * [a; qa], da += s G2[:, :B]^T b (the queues have no gradient) */
    for (int pass = 0; pass < 2; pass++) {
        const float *G = pass ? sv->G2 : sv->G1, *x = pass ? b : a, *y = pass ? a : b, *q = pass ? sv->qa : sv->qb;
        float *dx = pass ? db : da, *dy = pass ? da : db;
        int64_t M = pass ? M2 : M1;
        for (int64_t i = 0; i < B; i++)
            for (int64_t j = 0; j < M; j++) {
                float w = g * s * G[i * M + j];
                if (w == 0) continue;
                const float *yj = j < B ? y + j * E : q + (j - B) * E;
                for (int64_t e = 0; dx && e < E; e++) dx[i * E + e] += w * yj[e];
                for (int64_t e = 0; dy && j < B && e < E; e++) dy[j * E + e] += w * x[i * E + e];
            }
    }
    if (dl && !n->flag) { /* d/d(log s) of a logit is the logit itself; no gradient while clamped */
        double sum = 0;
        for (int64_t k = 0; k < B * M1; k++) sum += (double)sv->G1[k] * sv->L1[k];
        for (int64_t k = 0; k < B * M2; k++) sum += (double)sv->G2[k] * sv->L2[k];
        dl[0] += g * (float)sum;
    }
}

/* b may hold more than B rows (ld_op_infonce's inline queue, passed again as qb): only its
 * first B are read as b and get gradient. */
static ld_status infonce_core(ld_tape *t, const ld_tensor *a, const ld_tensor *b, const float *qa, int64_t n_qa,
                              const float *qb, int64_t n_qb, ld_tensor *log_scale, float max_log_scale,
                              ld_tensor **out_) {
    ld_status st;
    int64_t B = rows_of(a), E = cols_of(a);
    if ((st = check_f32(t, "infonce", "log scale", log_scale))) return st;
    if (n_qa < 0 || n_qb < 0 || (n_qa && !qa) || (n_qb && !qb))
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "infonce: a queue of %lld / %lld rows without its data",
                        (long long)n_qa, (long long)n_qb);
    if (ld_tensor_numel(log_scale) != 1)
        return ld_error(t->ctx, LD_ERR_SHAPE, "infonce: log scale '%s' must have one element", log_scale->name);
    if ((st = new_out(t, 1, (int64_t[]){1}, a, b, log_scale, out_))) return st;
    float ls = ((const float *)log_scale->data)[0];
    bool clamped = ls > max_log_scale;
    float s = expf(clamped ? max_log_scale : ls);
    int64_t M1 = B + n_qb, M2 = B + n_qa;
    infonce_saved *sv = ld_arena_alloc(t->act, sizeof *sv);
    if (!sv) return ld_ctx_status(t->ctx);
    *sv = (infonce_saved){.G1 = scratch(t, B * M1), .G2 = scratch(t, B * M2), .L1 = scratch(t, B * M1),
                          .L2 = scratch(t, B * M2), .qa = qa, .qb = qb};
    if (!sv->G1 || !sv->G2 || !sv->L1 || !sv->L2) return ld_ctx_status(t->ctx);
    const float *ad = a->data, *bd = b->data;
    double loss = 0;
    for (int pass = 0; pass < 2; pass++) { /* rows of a against [b; qb], then rows of b against [a; qa] */
        const float *x = pass ? bd : ad, *y = pass ? ad : bd, *q = pass ? qa : qb;
        int64_t M = pass ? M2 : M1;
        float *L = pass ? sv->L2 : sv->L1, *G = pass ? sv->G2 : sv->G1;
        for (int64_t i = 0; i < B; i++) {
            for (int64_t j = 0; j < M; j++) {
                const float *yj = j < B ? y + j * E : q + (j - B) * E;
                double dot = 0;
                for (int64_t e = 0; e < E; e++) dot += (double)x[i * E + e] * yj[e];
                L[i * M + j] = s * (float)dot;
            }
            const float *Li = L + i * M;
            double mx = -INFINITY, z = 0;
            for (int64_t j = 0; j < M; j++) mx = fmax(mx, Li[j]);
            for (int64_t j = 0; j < M; j++) z += exp(Li[j] - mx);
            loss += log(z) + mx - Li[i];
            for (int64_t j = 0; j < M; j++) G[i * M + j] = (float)((exp(Li[j] - mx) / z - (j == i)) / (2.0 * (double)B));
        }
    }
    ((float *)(*out_)->data)[0] = (float)(loss / (2.0 * (double)B));
    RECORD_OR_FAIL(n, t, "infonce", infonce_bwd, *out_, (ld_tensor *)a, (ld_tensor *)b, log_scale);
    if (n) n->saved[0] = sv, n->i[0] = B, n->i[1] = E, n->i[2] = n_qa, n->i[3] = n_qb, n->f[0] = s, n->flag = clamped;
    return LD_OK;
}

ld_status ld_op_infonce_queues(ld_tape *t, const ld_tensor *a, const ld_tensor *b, const float *qa, int64_t n_qa,
                               const float *qb, int64_t n_qb, ld_tensor *log_scale, float max_log_scale,
                               ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "infonce", "first embeddings", a)) || (st = check_f32(t, "infonce", "second embeddings", b)))
        return st;
    if (a->ndim != 2 || b->ndim != 2 || cols_of(b) != cols_of(a) || rows_of(b) != rows_of(a))
        return shape_error(t, "infonce", a, b, "need two [B, E] embeddings");
    return infonce_core(t, a, b, qa, n_qa, qb, n_qb, log_scale, max_log_scale, out_);
}

ld_status ld_op_infonce(ld_tape *t, const ld_tensor *a, const ld_tensor *b, int64_t n_queue, ld_tensor *log_scale,
                        float max_log_scale, ld_tensor **out_) {
    ld_status st;
    if ((st = check_f32(t, "infonce", "first embeddings", a)) || (st = check_f32(t, "infonce", "second embeddings", b)))
        return st;
    int64_t B = rows_of(a), E = cols_of(a), M = rows_of(b);
    if (cols_of(b) != E || n_queue < 0 || M != B + n_queue)
        return shape_error(t, "infonce", a, b, "need [B, E] and [B + queue, E] embeddings");
    return infonce_core(t, a, b, NULL, 0, (const float *)b->data + B * E, n_queue, log_scale, max_log_scale, out_);
}

/* nn/ops_adapt.c — the differentiable ops that adapting a pretrained model needs: the LoRA
 * branch added to a frozen product, prompt rows put before (or into) every sequence,
 * dropping them again, pooling a sequence to one vector for a classification head, and
 * products with frozen matrices kept in a block format (QLoRA: the base stays quantized;
 * its rows are decoded a slice at a time). */
#include <string.h>

#include "nn/nn_internal.h"

#define RECORD_OR_FAIL(n, ...)                                 \
    ld_node *n = ld_nn_record(__VA_ARGS__);                    \
    if (!n && ((*out_)->flags & LD_TENSOR_NEEDS_GRAD)) return ld_ctx_status(t->ctx)

static ld_status need_3d(ld_tape *t, const char *op, const ld_tensor *x) {
    if (x->ndim != 3)
        return ld_error(t->ctx, LD_ERR_SHAPE, "%s: input '%s' must be [B, T, C] (has %d dims)", op, x->name, x->ndim);
    return LD_OK;
}

/* ---- the LoRA branch ---------------------------------------------------------------- */

/* Saved: su = s (x A^T) [M, r] (in the activation arena). in = x, A, B; y in saved[1]. */
static void lora_bwd(ld_tape *t, ld_node *n) {
    ld_tensor *x = n->in[0], *A = n->in[1], *B = n->in[2], *y = n->saved[1];
    const float *su = n->saved[0], *dout = n->out->grad->data;
    int64_t M = n->i[0], K = n->i[1], N = n->i[2], r = n->i[3];
    float s = n->f[0];
    if (ld_tape_needs_grad(y)) {
        /* dy = dout. Backward runs in reverse tape order, so out's gradient is dead once this
         * node is done: y takes the buffer over instead of a copy, unless y already has one. */
        if (!y->grad) y->grad = n->out->grad;
        else t->k->add_inplace(y->grad->data, dout, M * N);
    }
    float *dA = ld_tape_grad(t, A), *dB = ld_tape_grad(t, B), *dx = ld_tape_grad(t, x);
    if (dB) t->k->gemm_f32(true, false, N, r, M, 1.0f, dout, N, su, r, 1.0f, dB, r); /* dB += dout^T su */
    if (!dA && !dx) return;
    float *du = ld_arena_alloc(t->grads, (size_t)(M * r) * sizeof(float));
    if (!du) return; /* the tape reports the context's out-of-memory status */
    t->k->gemm_f32(false, false, M, r, N, s, dout, N, B->data, r, 0.0f, du, r); /* du = s dout B */
    if (dA) t->k->gemm_f32(true, false, r, K, M, 1.0f, du, r, x->data, K, 1.0f, dA, K);  /* dA += du^T x */
    if (dx) t->k->gemm_f32(false, false, M, K, r, 1.0f, du, r, A->data, K, 1.0f, dx, K); /* dx += du A */
}

ld_status ld_op_lora(ld_tape *t, const ld_tensor *x, const ld_tensor *y, ld_tensor *A, ld_tensor *B, float s,
                     ld_tensor **out_) {
    static const char *op = "lora";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", x)) || (st = ld_nn_check_f32(t, op, "base output", y)) ||
        (st = ld_nn_check_f32(t, op, "A", A)) || (st = ld_nn_check_f32(t, op, "B", B)))
        return st;
    int64_t K = x->shape[x->ndim - 1], M = ld_tensor_numel(x) / K, N = y->shape[y->ndim - 1];
    if (A->ndim != 2 || B->ndim != 2 || A->shape[1] != K || B->shape[0] != N || B->shape[1] != A->shape[0] ||
        ld_tensor_numel(y) != M * N)
        return ld_error(t->ctx, LD_ERR_SHAPE,
                        "%s: A '%s' must be [r, %lld] and B '%s' [%lld, r] for input '%s' and base output '%s' (%lld rows)",
                        op, A->name, (long long)K, B->name, (long long)N, x->name, y->name, (long long)M);
    int64_t r = A->shape[0];
    if ((st = ld_nn_new_out(t, y->ndim, y->shape, x, A, B, out_))) return st;
    if (ld_tape_needs_grad(y) && t->grad_enabled) (*out_)->flags |= LD_TENSOR_NEEDS_GRAD;
    float *su = ld_arena_alloc(t->act, (size_t)(M * r) * sizeof(float)), *o = (*out_)->data;
    if (!su) return ld_ctx_status(t->ctx);
    t->k->gemm_f32(false, true, M, r, K, s, x->data, K, A->data, K, 0.0f, su, r); /* su = s x A^T */
    memcpy(o, y->data, (size_t)(M * N) * sizeof(float));
    t->k->gemm_f32(false, true, M, N, r, 1.0f, su, r, B->data, r, 1.0f, o, N); /* out = y + su B^T */
    RECORD_OR_FAIL(n, t, op, lora_bwd, *out_, (ld_tensor *)x, A, B);
    if (n) {
        n->saved[0] = su, n->saved[1] = (ld_tensor *)y;
        n->i[0] = M, n->i[1] = K, n->i[2] = N, n->i[3] = r, n->f[0] = s;
    }
    return LD_OK;
}

/* ---- prompt rows -------------------------------------------------------------------- */

/* insert: y [B, P + T, C] = rows then x; add: y = x with rows added to positions 0..P-1. */
static void rows_insert_bwd(ld_tape *t, ld_node *n) {
    int64_t B = n->i[0], Ty = n->i[1], C = n->i[2], P = n->i[3];
    bool add = n->flag;
    int64_t Tx = add ? Ty : Ty - P;
    const float *dy = n->out->grad->data;
    float *dx = ld_tape_grad(t, n->in[0]), *dr = ld_tape_grad(t, n->in[1]);
    for (int64_t b = 0; b < B; b++) {
        const float *db = dy + b * Ty * C;
        if (dr) t->k->add_inplace(dr, db, P * C);
        if (dx) t->k->add_inplace(dx + b * Tx * C, add ? db : db + P * C, Tx * C);
    }
}

ld_status ld_op_rows_insert(ld_tape *t, const ld_tensor *x, ld_tensor *rows, bool add, ld_tensor **out_) {
    static const char *op = "rows_insert";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", x)) || (st = ld_nn_check_f32(t, op, "rows", rows)) ||
        (st = need_3d(t, op, x)))
        return st;
    int64_t B = x->shape[0], Tx = x->shape[1], C = x->shape[2];
    if (rows->ndim != 2 || rows->shape[1] != C)
        return ld_error(t->ctx, LD_ERR_SHAPE, "%s: rows '%s' must be [P, %lld]", op, rows->name, (long long)C);
    int64_t P = rows->shape[0], Ty = add ? Tx : Tx + P;
    if (add && P > Tx)
        return ld_error(t->ctx, LD_ERR_SHAPE, "%s: %lld prompt rows do not fit %lld positions", op, (long long)P,
                        (long long)Tx);
    if ((st = ld_nn_new_out(t, 3, (int64_t[]){B, Ty, C}, x, rows, NULL, out_))) return st;
    float *y = (*out_)->data;
    const float *xs = x->data;
    for (int64_t b = 0; b < B; b++) {
        float *yb = y + b * Ty * C;
        if (add) {
            memcpy(yb, xs + b * Tx * C, (size_t)(Tx * C) * sizeof(float));
            t->k->add_inplace(yb, rows->data, P * C);
        } else {
            memcpy(yb, rows->data, (size_t)(P * C) * sizeof(float));
            memcpy(yb + P * C, xs + b * Tx * C, (size_t)(Tx * C) * sizeof(float));
        }
    }
    RECORD_OR_FAIL(n, t, op, rows_insert_bwd, *out_, (ld_tensor *)x, rows, NULL);
    if (n) n->i[0] = B, n->i[1] = Ty, n->i[2] = C, n->i[3] = P, n->flag = add;
    return LD_OK;
}

static void rows_drop_bwd(ld_tape *t, ld_node *n) {
    int64_t B = n->i[0], T = n->i[1], C = n->i[2], P = n->i[3];
    float *dx = ld_tape_grad(t, n->in[0]);
    if (!dx) return;
    for (int64_t b = 0; b < B; b++)
        t->k->add_inplace(dx + (b * T + P) * C, (const float *)n->out->grad->data + b * (T - P) * C, (T - P) * C);
}

ld_status ld_op_rows_drop(ld_tape *t, const ld_tensor *x, int64_t P, ld_tensor **out_) {
    static const char *op = "rows_drop";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", x)) || (st = need_3d(t, op, x))) return st;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    if (P < 0 || P >= T)
        return ld_error(t->ctx, LD_ERR_SHAPE, "%s: cannot drop %lld of %lld positions", op, (long long)P, (long long)T);
    if ((st = ld_nn_new_out(t, 3, (int64_t[]){B, T - P, C}, x, NULL, NULL, out_))) return st;
    for (int64_t b = 0; b < B; b++)
        memcpy((float *)(*out_)->data + b * (T - P) * C, (const float *)x->data + (b * T + P) * C,
               (size_t)((T - P) * C) * sizeof(float));
    RECORD_OR_FAIL(n, t, op, rows_drop_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->i[0] = B, n->i[1] = T, n->i[2] = C, n->i[3] = P;
    return LD_OK;
}

/* ---- pooling ------------------------------------------------------------------------ */

static void pool_bwd(ld_tape *t, ld_node *n) {
    int64_t B = n->i[0], T = n->i[1], C = n->i[2];
    float *dx = ld_tape_grad(t, n->in[0]);
    if (!dx) return;
    const float *dy = n->out->grad->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t len = n->ids[b];
        const float *g = dy + b * C;
        if (!n->flag) {
            t->k->add_inplace(dx + (b * T + len - 1) * C, g, C);
            continue;
        }
        float inv = 1.0f / (float)len;
        for (int64_t p = 0; p < len; p++) {
            float *d = dx + (b * T + p) * C;
            for (int64_t c = 0; c < C; c++) d[c] += g[c] * inv;
        }
    }
}

ld_status ld_op_pool(ld_tape *t, const ld_tensor *x, const int32_t *lengths, bool mean, ld_tensor **out_) {
    static const char *op = "pool";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", x)) || (st = need_3d(t, op, x))) return st;
    int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    if (!lengths) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: no lengths", op);
    for (int64_t b = 0; b < B; b++)
        if (lengths[b] < 1 || lengths[b] > T)
            return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: row %lld has length %d outside 1..%lld", op, (long long)b,
                            lengths[b], (long long)T);
    if ((st = ld_nn_new_out(t, 2, (int64_t[]){B, C}, x, NULL, NULL, out_))) return st;
    float *y = (*out_)->data;
    const float *xs = x->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t len = lengths[b];
        float *yb = y + b * C;
        if (!mean) {
            memcpy(yb, xs + (b * T + len - 1) * C, (size_t)C * sizeof(float));
            continue;
        }
        for (int64_t p = 0; p < len; p++) t->k->add_inplace(yb, xs + (b * T + p) * C, C);
        float inv = 1.0f / (float)len;
        for (int64_t c = 0; c < C; c++) yb[c] *= inv;
    }
    RECORD_OR_FAIL(n, t, op, pool_bwd, *out_, (ld_tensor *)x, NULL, NULL);
    if (n) n->i[0] = B, n->i[1] = T, n->i[2] = C, n->ids = lengths, n->flag = mean;
    return LD_OK;
}

/* ---- frozen block-format matrices ----------------------------------------------------- */

#define WSCRATCH_FLOATS ((size_t)4 << 20) /* 16 MiB of decoded rows at a time */

/* Rows per slice for width K, and the scratch they need. */
static int64_t slice_rows(const ld_frozen_matrix *w) {
    int64_t r = (int64_t)(WSCRATCH_FLOATS / (size_t)w->K);
    if (r < 1) r = 1;
    return r < w->N ? r : w->N;
}

static float *wscratch(ld_tape *t, size_t floats) {
    if (t->wscratch_cap >= floats) return t->wscratch;
    float *p = ld_alloc(t->ctx, floats * sizeof(float));
    if (!p) return NULL;
    ld_free(t->ctx, t->wscratch);
    t->wscratch = p, t->wscratch_cap = floats;
    return p;
}

static ld_status check_frozen(ld_tape *t, const char *op, const ld_frozen_matrix *w) {
    if (!w || !w->data || !w->decode || w->N <= 0 || w->K <= 0)
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: frozen matrix '%s' is incomplete", op,
                        w && w->name ? w->name : "?");
    const ld_dtype_info *ti = ld_dtype_traits(w->dtype);
    size_t rb = 0;
    if (!ti || ld_dtype_row_bytes(w->dtype, w->K, &rb) || rb != w->row_bytes)
        return ld_error(t->ctx, LD_ERR_SHAPE, "%s: frozen matrix '%s': rows of %lld elements are not whole %s blocks",
                        op, w->name ? w->name : "?", (long long)w->K, ti ? ti->name : "?");
    return LD_OK;
}

/* Decodes rows [r0, r0 + nr) of w into buf. */
static ld_status decode_rows(ld_tape *t, const ld_frozen_matrix *w, int64_t r0, int64_t nr, float *buf) {
    ld_status st = w->decode(t->ctx, w->dtype, (const char *)w->data + (size_t)r0 * w->row_bytes, buf, nr * w->K);
    if (st) return ld_error_wrap(t->ctx, st, "decoding rows of '%s': ", w->name ? w->name : "?");
    return LD_OK;
}

static void linear_frozen_bwd(ld_tape *t, ld_node *n) {
    const ld_frozen_matrix *w = n->saved[0];
    int64_t M = n->i[0], K = w->K, N = w->N, R = slice_rows(w);
    const float *dy = n->out->grad->data;
    float *dx = ld_tape_grad(t, n->in[0]), *db = n->in[1] ? ld_tape_grad(t, n->in[1]) : NULL;
    if (dx) {
        float *buf = wscratch(t, (size_t)(R * K));
        if (!buf) return; /* the tape reports the context's out-of-memory status */
        for (int64_t r0 = 0; r0 < N; r0 += R) {
            int64_t nr = N - r0 < R ? N - r0 : R;
            if (decode_rows(t, w, r0, nr, buf)) return;
            t->k->gemm_f32(false, false, M, K, nr, 1.0f, dy + r0, N, buf, K, 1.0f, dx, K);
        }
    }
    if (db)
        for (int64_t r = 0; r < M; r++) t->k->add_inplace(db, dy + r * N, N);
}

ld_status ld_op_linear_frozen(ld_tape *t, const ld_tensor *x, const ld_frozen_matrix *w, ld_tensor *b,
                              ld_tensor **out_) {
    static const char *op = "linear_frozen";
    ld_status st;
    if ((st = ld_nn_check_f32(t, op, "input", x)) || (st = check_frozen(t, op, w))) return st;
    int64_t M = ld_tensor_numel(x) / x->shape[x->ndim - 1], K = x->shape[x->ndim - 1], N = w->N;
    if (K != w->K)
        return ld_error(t->ctx, LD_ERR_SHAPE, "%s: input '%s' has %lld features but '%s' takes %lld", op, x->name,
                        (long long)K, w->name ? w->name : "?", (long long)w->K);
    if (b && ((st = ld_nn_check_f32(t, op, "bias", b)) || ld_tensor_numel(b) != N))
        return st ? st : ld_error(t->ctx, LD_ERR_SHAPE, "%s: bias '%s' is not %lld long", op, b->name, (long long)N);
    int64_t shape[LD_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = N;
    if ((st = ld_nn_new_out(t, x->ndim, shape, x, b, NULL, out_))) return st;
    int64_t R = slice_rows(w);
    float *y = (*out_)->data, *buf = wscratch(t, (size_t)(R * K));
    if (!buf) return ld_ctx_status(t->ctx);
    for (int64_t r0 = 0; r0 < N; r0 += R) {
        int64_t nr = N - r0 < R ? N - r0 : R;
        if ((st = decode_rows(t, w, r0, nr, buf))) return st;
        t->k->gemm_f32(false, true, M, nr, K, 1.0f, x->data, K, buf, K, 0.0f, y + r0, N);
    }
    if (b)
        for (int64_t r = 0; r < M; r++) t->k->add_inplace(y + r * N, b->data, N);
    RECORD_OR_FAIL(n, t, op, linear_frozen_bwd, *out_, (ld_tensor *)x, b, NULL);
    if (n) {
        ld_frozen_matrix *keep = ld_arena_alloc(t->act, sizeof *keep);
        if (!keep) return ld_ctx_status(t->ctx);
        *keep = *w;
        n->saved[0] = keep;
        n->i[0] = M;
    }
    return LD_OK;
}

ld_status ld_op_embedding_frozen(ld_tape *t, const int32_t *ids, int64_t n_ids, const ld_frozen_matrix *table,
                                 ld_tensor **out) {
    static const char *op = "embedding_frozen";
    ld_status st;
    if ((st = check_frozen(t, op, table))) return st;
    if (!ids || n_ids <= 0) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "%s: no ids", op);
    int64_t V = table->N, C = table->K;
    for (int64_t i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= V)
            return ld_error(t->ctx, LD_ERR_INVALID_ARG, "embedding '%s': id %d at position %lld outside 0..%lld",
                            table->name ? table->name : "?", ids[i], (long long)i, (long long)V - 1);
    if ((st = ld_tensor_new(t->ctx, t->act, LD_F32, 2, (int64_t[]){n_ids, C}, out))) return st;
    float *y = (*out)->data;
    for (int64_t i = 0; i < n_ids; i++)
        if ((st = decode_rows(t, table, ids[i], 1, y + i * C))) return st;
    return LD_OK;
}

/* kernels/cpu/rows_avx512.c — AVX-512 kernels that work row by row: LayerNorm,
 * RMSNorm, softmax, fused softmax-cross-entropy, the fused distillation loss, embedding
 * lookup, RoPE.
 *
 * Rows are cut into pieces for the thread team (core/team.h). Each row is read from memory
 * once: a row of a norm (a few KB) stays in L1/L2 between the passes over it, and the
 * cross-entropy forward finds max and sum of exponentials in a single online pass.
 * Reductions over rows (the weight gradients of the norms) keep one partial sum per piece,
 * added in piece order: the same bits on any number of threads. Semantics are those of
 * kernels/kernels.h; ref_ops_impl.h is the oracle. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/ops_avx512.h"
#include "kernels/cpu/simd_avx512.h"
#include "kernels/ref/ref.h"

/* ---- embeddings ---- */

typedef struct {
    float *out;
    const int32_t *ids;
    const float *table;
    int64_t C;
} embedding_fwd_args;

static void embedding_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const embedding_fwd_args *a = arg;
    float *out = a->out;
    const int32_t *ids = a->ids;
    const float *table = a->table;
    int64_t C = a->C;
    for (int64_t n = lo; n < hi; n++) memcpy(out + n * C, table + (int64_t)ids[n] * C, (size_t)C * sizeof(float));
}

void ld_avx512_embedding_fwd(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C) {
    embedding_fwd_args a = {out, ids, table, C};
    ld_par_for(N, ld_par_grain(C), embedding_fwd_part, &a);
}

typedef struct {
    float *dtable;
    const int32_t *ids;
    const float *dout;
    int64_t N, C;
} embedding_bwd_args;

/* A piece is a slice of columns [c0, c1) walked over all rows in order, so repeated ids
 * never race and the summation order is fixed. */
static void embedding_bwd_part(void *arg, int64_t c0, int64_t c1, int piece) {
    (void)piece;
    const embedding_bwd_args *a = arg;
    for (int64_t n = 0; n < a->N; n++) {
        float *d = a->dtable + (int64_t)a->ids[n] * a->C;
        const float *s = a->dout + n * a->C;
        for (int64_t c = c0; c < c1; c += 16) {
            __mmask16 k = ld_tail16(c1 - c);
            _mm512_mask_storeu_ps(d + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, d + c),
                                                          _mm512_maskz_loadu_ps(k, s + c)));
        }
    }
}

void ld_avx512_embedding_bwd(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t C) {
    if (!dtable) return;
    embedding_bwd_args a = {dtable, ids, dout, N, C};
    ld_par_for(C, ld_par_cols_grain(N), embedding_bwd_part, &a);
}

/* ---- LayerNorm and RMSNorm: one implementation, `center` = LayerNorm ---- */

/* One row: mean (LayerNorm only) and variance from the row held in L1, then y. Returns
 * rstd and stores the mean in *mu_out. */
static float norm_fwd_row(float *yr, float *mu_out, const float *xr, const float *w, const float *b, int64_t C,
                          float eps, int center, int strm) {
    __m512 mu = _mm512_setzero_ps();
    double mud = 0;
    if (center) {
        __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
        int64_t c = 0;
        for (; c + 32 <= C; c += 32) {
            s0 = _mm512_add_ps(s0, _mm512_loadu_ps(xr + c));
            s1 = _mm512_add_ps(s1, _mm512_loadu_ps(xr + c + 16));
        }
        for (; c < C; c += 16) s0 = _mm512_add_ps(s0, _mm512_maskz_loadu_ps(ld_tail16(C - c), xr + c));
        mud = (double)ld_hsum512(_mm512_add_ps(s0, s1)) / (double)C;
        mu = _mm512_set1_ps((float)mud);
    }
    /* second pass over the row (now in L1): sum of squared deviations */
    __m512 q0 = _mm512_setzero_ps(), q1 = _mm512_setzero_ps();
    int64_t c = 0;
    for (; c + 32 <= C; c += 32) {
        __m512 d0 = _mm512_sub_ps(_mm512_loadu_ps(xr + c), mu);
        __m512 d1 = _mm512_sub_ps(_mm512_loadu_ps(xr + c + 16), mu);
        q0 = _mm512_fmadd_ps(d0, d0, q0);
        q1 = _mm512_fmadd_ps(d1, d1, q1);
    }
    for (; c < C; c += 16) {
        __mmask16 k = ld_tail16(C - c);
        __m512 d = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, xr + c), mu);
        q0 = _mm512_fmadd_ps(d, d, q0);
    }
    double var = (double)ld_hsum512(_mm512_add_ps(q0, q1)) / (double)C;
    float rs = (float)(1.0 / sqrt(var + (double)eps));
    __m512 vrs = _mm512_set1_ps(rs);
    for (c = 0; c < C; c += 16) {
        __mmask16 k = ld_tail16(C - c);
        __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), mu), vrs);
        __m512 v = b ? _mm512_fmadd_ps(xh, _mm512_maskz_loadu_ps(k, w + c), _mm512_maskz_loadu_ps(k, b + c))
                     : _mm512_mul_ps(xh, _mm512_maskz_loadu_ps(k, w + c));
        ld_store_out(yr + c, k, v, strm);
    }
    *mu_out = (float)mud;
    return rs;
}

typedef struct {
    float *y, *mean, *rstd;
    const float *x, *w, *b;
    int64_t C;
    float eps;
    int center, strm;
} norm_fwd_args;

static void norm_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const norm_fwd_args *a = arg;
    for (int64_t n = lo; n < hi; n++) {
        float mu, rs = norm_fwd_row(a->y + n * a->C, &mu, a->x + n * a->C, a->w, a->b, a->C, a->eps, a->center, a->strm);
        if (a->mean) a->mean[n] = mu;
        if (a->rstd) a->rstd[n] = rs;
    }
    if (a->strm) _mm_sfence(); /* publish streamed rows before the loop ends */
}

static void norm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                     int64_t N, int64_t C, float eps, int center) {
    /* large outputs are streamed; rows stay 64-byte aligned when C is a multiple of 16 */
    const int strm = C % 16 == 0 && ld_use_stream(y, N * C * (int64_t)sizeof(float));
    norm_fwd_args a = {y, mean, rstd, x, w, b, C, eps, center, strm};
    ld_par_for(N, ld_par_grain(C), norm_fwd_part, &a);
}

void ld_avx512_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                             const float *b, int64_t N, int64_t C, float eps) {
    norm_fwd(y, mean, rstd, x, w, b, N, C, eps, 1);
}

void ld_avx512_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                           float eps) {
    norm_fwd(y, NULL, rstd, x, w, NULL, N, C, eps, 0);
}

/* Largest C whose per-piece dw/db partials (2 C floats each) are kept; wider rows take a
 * second, column-parallel pass for dw/db instead. At most LD_NORM_MAX_PIECES pieces of
 * rows have partials. */
#define LD_NORM_PART_MAX_C 32768
#define LD_NORM_MAX_PIECES 64

/* One row of the norm backward: dx += rstd * (g - a - xhat * mean(g * xhat)), g = dy * w,
 * a = mean(g) for LayerNorm and 0 for RMSNorm; pdw += dy * xhat, pdb += dy (if not NULL). */
static void norm_bwd_row(float *dxr, float *pdw, float *pdb, const float *dyr, const float *xr,
                         const float *w, float mu_, float rs_, int center, int64_t C) {
    __m512 mu = _mm512_set1_ps(mu_), rs = _mm512_set1_ps(rs_);
    __m512 a = _mm512_setzero_ps(), bc = _mm512_setzero_ps();
    if (dxr) {
        __m512 sg = _mm512_setzero_ps(), sgx = _mm512_setzero_ps();
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 k = ld_tail16(C - c);
            __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), mu), rs);
            __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, dyr + c), _mm512_maskz_loadu_ps(k, w + c));
            sg = _mm512_add_ps(sg, g);
            sgx = _mm512_fmadd_ps(g, xh, sgx);
        }
        if (center) a = _mm512_set1_ps((float)((double)ld_hsum512(sg) / (double)C));
        bc = _mm512_set1_ps((float)((double)ld_hsum512(sgx) / (double)C));
    }
    for (int64_t c = 0; c < C; c += 16) {
        __mmask16 k = ld_tail16(C - c);
        __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), mu), rs);
        __m512 dy = _mm512_maskz_loadu_ps(k, dyr + c);
        if (dxr) {
            __m512 g = _mm512_mul_ps(dy, _mm512_maskz_loadu_ps(k, w + c));
            __m512 d = _mm512_mul_ps(rs, _mm512_fnmadd_ps(xh, bc, _mm512_sub_ps(g, a)));
            _mm512_mask_storeu_ps(dxr + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dxr + c), d));
        }
        if (pdw) _mm512_mask_storeu_ps(pdw + c, k, _mm512_fmadd_ps(dy, xh, _mm512_maskz_loadu_ps(k, pdw + c)));
        if (pdb) _mm512_mask_storeu_ps(pdb + c, k, _mm512_add_ps(dy, _mm512_maskz_loadu_ps(k, pdb + c)));
    }
}

typedef struct {
    float *dx, *dw, *db;
    float *parts; /* per piece of rows: its partial dw then db, 2 C floats; or NULL */
    const float *dy, *x, *w, *mean, *rstd;
    int64_t N, C;
    int center;
} norm_bwd_args;

/* Rows [lo, hi): dx, and the piece's partial dw/db when there are partials. */
static void norm_bwd_rows_part(void *arg, int64_t lo, int64_t hi, int piece) {
    const norm_bwd_args *a = arg;
    const int64_t C = a->C;
    float *pdw = NULL, *pdb = NULL;
    if (a->parts) {
        float *p = a->parts + (int64_t)piece * 2 * C;
        memset(p, 0, 2 * (size_t)C * sizeof(float));
        pdw = a->dw ? p : NULL, pdb = a->db ? p + C : NULL;
    }
    for (int64_t n = lo; n < hi; n++)
        norm_bwd_row(a->dx ? a->dx + n * C : NULL, pdw, pdb, a->dy + n * C, a->x + n * C, a->w,
                     a->center ? a->mean[n] : 0.0f, a->rstd[n], a->center, C);
}

/* Columns [c0, c1) of dw/db: the pieces' partials added in piece order. */
typedef struct {
    const norm_bwd_args *nb;
    int pieces;
} norm_sum_args;

static void norm_bwd_sum_part(void *arg, int64_t c0, int64_t c1, int piece) {
    (void)piece;
    const norm_sum_args *s = arg;
    const norm_bwd_args *a = s->nb;
    for (int64_t c = c0; c < c1; c += 16) {
        __mmask16 k = ld_tail16(c1 - c);
        __m512 sw = _mm512_setzero_ps(), sb = _mm512_setzero_ps();
        for (int p = 0; p < s->pieces; p++) {
            const float *part = a->parts + (int64_t)p * 2 * a->C;
            sw = _mm512_add_ps(sw, _mm512_maskz_loadu_ps(k, part + c));
            sb = _mm512_add_ps(sb, _mm512_maskz_loadu_ps(k, part + a->C + c));
        }
        if (a->dw) _mm512_mask_storeu_ps(a->dw + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, a->dw + c), sw));
        if (a->db) _mm512_mask_storeu_ps(a->db + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, a->db + c), sb));
    }
}

/* Columns [c0, c1) of dw/db walked over all rows (rows too wide for partials). */
static void norm_bwd_cols_part(void *arg, int64_t c0, int64_t c1, int piece) {
    (void)piece;
    const norm_bwd_args *a = arg;
    for (int64_t n = 0; n < a->N; n++) {
        int64_t o = n * a->C;
        norm_bwd_row(NULL, a->dw ? a->dw + c0 : NULL, a->db ? a->db + c0 : NULL, a->dy + o + c0, a->x + o + c0,
                     a->w + c0, a->center ? a->mean[n] : 0.0f, a->rstd[n], a->center, c1 - c0);
    }
}

static void norm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                     const float *mean, const float *rstd, int64_t N, int64_t C) {
    norm_bwd_args a = {dx, dw, db, NULL, dy, x, w, mean, rstd, N, C, mean != NULL};
    int64_t grain = ld_par_grain(C);
    int pieces = 0;
    if ((dw || db) && C <= LD_NORM_PART_MAX_C) {
        /* at most LD_NORM_MAX_PIECES partials: their sum is a small part of the work */
        if (grain < (N + LD_NORM_MAX_PIECES - 1) / LD_NORM_MAX_PIECES) grain = (N + LD_NORM_MAX_PIECES - 1) / LD_NORM_MAX_PIECES;
        pieces = ld_par_pieces(N, grain);
        a.parts = ld_thread_scratch(LD_SCRATCH_ROWS, (size_t)pieces * 2 * (size_t)C * sizeof(float));
    }
    if (dx || a.parts) ld_par_for(N, grain, norm_bwd_rows_part, &a);
    if (a.parts) {
        norm_sum_args s = {&a, pieces};
        ld_par_for(C, ld_par_cols_grain(pieces), norm_bwd_sum_part, &s);
    } else if (dw || db) {
        ld_par_for(C, ld_par_cols_grain(N), norm_bwd_cols_part, &a);
    }
}

void ld_avx512_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, const float *mean, const float *rstd, int64_t N, int64_t C) {
    norm_bwd(dx, dw, db, dy, x, w, mean, rstd, N, C);
}

void ld_avx512_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                           const float *rstd, int64_t N, int64_t C) {
    norm_bwd(dx, dw, NULL, dy, x, w, NULL, rstd, N, C);
}

/* ---- rotary position embedding ---- */

/* Largest head dimension handled here (cos/sin of one position live on the stack). */
#define LD_ROPE_MAX_D 8192

/* Rotates every head of every batch at each position; sign -1 applies the inverse rotation
 * and accumulates into out (backward). cos/sin are computed in double once per position. */
typedef struct {
    float *out;
    const float *in;
    const double *inv_freq;
    int64_t B, T, H, D, pos0;
    int inverse;
} rope_args;

/* Positions [t0, t1). */
static void rope_part(void *arg, int64_t t0, int64_t t1, int piece) {
    (void)piece;
    const rope_args *a = arg;
    float *out = a->out;
    const float *in = a->in;
    const int64_t B = a->B, T = a->T, H = a->H, D = a->D, half = D / 2;
    const int inverse = a->inverse;
    for (int64_t t = t0; t < t1; t++) {
        float cs[half > 0 ? half : 1], sn[half > 0 ? half : 1];
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)(a->pos0 + t) * a->inv_freq[i];
            cs[i] = (float)cos(ang);
            sn[i] = (float)(inverse ? -sin(ang) : sin(ang));
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                int64_t o = ((b * T + t) * H + h) * D;
                for (int64_t i = 0; i < half; i += 16) {
                    __mmask16 k = ld_tail16(half - i);
                    __m512 x1 = _mm512_maskz_loadu_ps(k, in + o + i), x2 = _mm512_maskz_loadu_ps(k, in + o + half + i);
                    __m512 c = _mm512_maskz_loadu_ps(k, cs + i), s = _mm512_maskz_loadu_ps(k, sn + i);
                    __m512 y1 = _mm512_fmsub_ps(x1, c, _mm512_mul_ps(x2, s));
                    __m512 y2 = _mm512_fmadd_ps(x2, c, _mm512_mul_ps(x1, s));
                    if (inverse) {
                        y1 = _mm512_add_ps(_mm512_maskz_loadu_ps(k, out + o + i), y1);
                        y2 = _mm512_add_ps(_mm512_maskz_loadu_ps(k, out + o + half + i), y2);
                    }
                    _mm512_mask_storeu_ps(out + o + i, k, y1);
                    _mm512_mask_storeu_ps(out + o + half + i, k, y2);
                }
            }
    }
}

static void rope_apply(float *out, const float *in, int64_t B, int64_t T, int64_t H, int64_t D,
                       int64_t pos0, float theta, int inverse) {
    int64_t half = D / 2;
    double inv_freq[half > 0 ? half : 1];
    for (int64_t i = 0; i < half; i++) inv_freq[i] = pow((double)theta, -2.0 * (double)i / (double)D);
    rope_args a = {out, in, inv_freq, B, T, H, D, pos0, inverse};
    ld_par_for(T, ld_par_grain(B * H * D), rope_part, &a);
}

void ld_avx512_rope_fwd(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D,
                        int64_t pos0, float theta) {
    if (D > LD_ROPE_MAX_D)
        ld_ref_rope_fwd(y, x, B, T, H, D, pos0, theta);
    else
        rope_apply(y, x, B, T, H, D, pos0, theta, 0);
}

void ld_avx512_rope_bwd(float *dx, const float *dy, int64_t B, int64_t T, int64_t H, int64_t D,
                        int64_t pos0, float theta) {
    if (!dx) return;
    if (D > LD_ROPE_MAX_D)
        ld_ref_rope_bwd(dx, dy, B, T, H, D, pos0, theta);
    else
        rope_apply(dx, dy, B, T, H, D, pos0, theta, 1);
}

/* ---- softmax ---- */

static float row_max(const float *xr, int64_t C) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    for (int64_t c = 0; c < C; c += 16)
        m = _mm512_max_ps(m, _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), ld_tail16(C - c), xr + c));
    return _mm512_reduce_max_ps(m);
}

typedef struct {
    float *y;
    const float *x;
    int64_t C;
} softmax_fwd_args;

static void softmax_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const softmax_fwd_args *a = arg;
    float *y = a->y;
    const float *x = a->x;
    int64_t C = a->C;
    for (int64_t n = lo; n < hi; n++) {
        const float *xr = x + n * C;
        float *yr = y + n * C;
        __m512 mx = _mm512_set1_ps(row_max(xr, C)), s = _mm512_setzero_ps();
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 k = ld_tail16(C - c);
            __m512 e = _mm512_maskz_mov_ps(k, ld_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), mx)));
            s = _mm512_add_ps(s, e);
            _mm512_mask_storeu_ps(yr + c, k, e);
        }
        __m512 inv = _mm512_set1_ps((float)(1.0 / (double)ld_hsum512(s)));
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 k = ld_tail16(C - c);
            _mm512_mask_storeu_ps(yr + c, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, yr + c), inv));
        }
    }
}

void ld_avx512_softmax_fwd(float *y, const float *x, int64_t N, int64_t C) {
    softmax_fwd_args a = {y, x, C};
    ld_par_for(N, ld_par_grain(C), softmax_fwd_part, &a);
}

typedef struct {
    float *dx;
    const float *dy;
    const float *y;
    int64_t C;
} softmax_bwd_args;

static void softmax_bwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const softmax_bwd_args *a = arg;
    float *dx = a->dx;
    const float *dy = a->dy;
    const float *y = a->y;
    int64_t C = a->C;
    for (int64_t n = lo; n < hi; n++) {
        const float *yr = y + n * C, *dyr = dy + n * C;
        float *dxr = dx + n * C;
        __m512 s = _mm512_setzero_ps();
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 k = ld_tail16(C - c);
            s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, dyr + c), _mm512_maskz_loadu_ps(k, yr + c), s);
        }
        __m512 dot = _mm512_set1_ps(ld_hsum512(s));
        for (int64_t c = 0; c < C; c += 16) {
            __mmask16 k = ld_tail16(C - c);
            __m512 g = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, yr + c), _mm512_sub_ps(_mm512_maskz_loadu_ps(k, dyr + c), dot));
            _mm512_mask_storeu_ps(dxr + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dxr + c), g));
        }
    }
}

void ld_avx512_softmax_bwd(float *dx, const float *dy, const float *y, int64_t N, int64_t C) {
    if (!dx) return;
    softmax_bwd_args a = {dx, dy, y, C};
    ld_par_for(N, ld_par_grain(C), softmax_bwd_part, &a);
}

/* ---- fused softmax + cross-entropy ---- */

/* log-sum-exp of a row in one pass: per lane a running max m and sum s of e^(x - m),
 * rescaled only when a lane's max grows; lanes are combined at the end. */
static float row_logsumexp(const float *xr, int64_t V) {
    __m512 m = _mm512_set1_ps(-FLT_MAX), s = _mm512_setzero_ps();
    for (int64_t c = 0; c < V; c += 16) {
        __m512 x = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), ld_tail16(V - c), xr + c);
        if (_mm512_cmp_ps_mask(x, m, _CMP_GT_OQ)) {
            __m512 mn = _mm512_max_ps(m, x);
            s = _mm512_mul_ps(s, ld_exp512(_mm512_sub_ps(m, mn)));
            m = mn;
        }
        s = _mm512_add_ps(s, ld_exp512(_mm512_sub_ps(x, m)));
    }
    float M = _mm512_reduce_max_ps(m);
    float S = ld_hsum512(_mm512_mul_ps(s, ld_exp512(_mm512_sub_ps(m, _mm512_set1_ps(M)))));
    return (float)((double)M + log((double)S));
}

typedef struct {
    float *loss;
    float *lse;
    const float *logits;
    const int32_t *target;
    int64_t V;
    int32_t ignore_index;
} xent_fwd_args;

static void xent_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const xent_fwd_args *a = arg;
    float *loss = a->loss;
    float *lse = a->lse;
    const float *logits = a->logits;
    const int32_t *target = a->target;
    int64_t V = a->V;
    int32_t ignore_index = a->ignore_index;
    for (int64_t n = lo; n < hi; n++) {
        const float *xr = logits + n * V;
        float l = row_logsumexp(xr, V);
        if (lse) lse[n] = l;
        loss[n] = target[n] == ignore_index ? 0.0f : (float)((double)l - (double)xr[target[n]]);
    }
}

void ld_avx512_xent_fwd(float *loss, float *lse, const float *logits, const int32_t *target, int64_t N,
                        int64_t V, int32_t ignore_index) {
    xent_fwd_args a = {loss, lse, logits, target, V, ignore_index};
    ld_par_for(N, ld_par_grain(V), xent_fwd_part, &a);
}

typedef struct {
    float *dlogits;
    const float *dloss;
    const float *logits;
    const float *lse;
    const int32_t *target;
    int64_t V;
    int32_t ignore_index;
} xent_bwd_args;

static void xent_bwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const xent_bwd_args *a = arg;
    float *dlogits = a->dlogits;
    const float *dloss = a->dloss;
    const float *logits = a->logits;
    const float *lse = a->lse;
    const int32_t *target = a->target;
    int64_t V = a->V;
    int32_t ignore_index = a->ignore_index;
    int overwrite = dlogits == logits;
    for (int64_t n = lo; n < hi; n++) {
        float *dr = dlogits + n * V;
        const float *xr = logits + n * V;
        if (target[n] == ignore_index) {
            if (overwrite) memset(dr, 0, (size_t)V * sizeof(float));
            continue;
        }
        int64_t tg = target[n];
        float xt = xr[tg], old_t = overwrite ? 0.0f : dr[tg];
        __m512 d = _mm512_set1_ps(dloss[n]), l = _mm512_set1_ps(lse[n]);
        for (int64_t c = 0; c < V; c += 16) {
            __mmask16 k = ld_tail16(V - c);
            __m512 g = _mm512_mul_ps(d, ld_exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + c), l)));
            if (!overwrite) g = _mm512_add_ps(_mm512_maskz_loadu_ps(k, dr + c), g);
            _mm512_mask_storeu_ps(dr + c, k, g);
        }
        /* the target's own term, d * (p - 1), computed without cancellation against d * p */
        float pt = _mm512_cvtss_f32(ld_exp512(_mm512_set1_ps(xt - lse[n])));
        dr[tg] = old_t + dloss[n] * (pt - 1.0f);
    }
}

void ld_avx512_xent_bwd(float *dlogits, const float *dloss, const float *logits, const float *lse,
                        const int32_t *target, int64_t N, int64_t V, int32_t ignore_index) {
    if (!dlogits) return;
    xent_bwd_args a = {dlogits, dloss, logits, lse, target, V, ignore_index};
    ld_par_for(N, ld_par_grain(V), xent_bwd_part, &a);
}

/* ---- fused distillation loss (soft KL at temperature T + hard cross-entropy) ---- */

/* Everything the forward needs from one row, in a single pass over s and t: per lane, running
 * maxima ms of s and mt of t and the sums
 *   S1 = sum e^(s - ms), ST = sum e^((s - ms)/T), TT = sum e^((t - mt)/T),
 *   W  = sum e^((t - mt)/T) * (t - s),
 * each rescaled when its lane's maximum grows (max(s/T) = max(s)/T since T > 0). Then
 *   lse(s) = ms + log S1, lse(s/T) = ms/T + log ST, lse(t/T) = mt/T + log TT,
 *   KL(p_t || p_s) = sum p_t (t - s)/T - lse(t/T) + lse(s/T) = W / (TT T) - lse(t/T) + lse(s/T). */
typedef struct distill_row {
    float lse_sT, lse_tT, lse_s;
    double kl;
} distill_row;

static distill_row distill_row_stats(const float *sr, const float *tr, int64_t V, float temp) {
    const __m512 invT = _mm512_set1_ps(1.0f / temp), ninf = _mm512_set1_ps(-INFINITY);
    __m512 ms = _mm512_set1_ps(-FLT_MAX), mt = ms;
    __m512 S1 = _mm512_setzero_ps(), ST = S1, TT = S1, W = S1;
    for (int64_t c = 0; c < V; c += 16) {
        __mmask16 k = ld_tail16(V - c);
        __m512 x = _mm512_mask_loadu_ps(ninf, k, sr + c), y = _mm512_mask_loadu_ps(ninf, k, tr + c);
        if (_mm512_cmp_ps_mask(x, ms, _CMP_GT_OQ)) {
            __m512 mn = _mm512_max_ps(ms, x), dm = _mm512_sub_ps(ms, mn);
            S1 = _mm512_mul_ps(S1, ld_exp512(dm));
            ST = _mm512_mul_ps(ST, ld_exp512(_mm512_mul_ps(dm, invT)));
            ms = mn;
        }
        if (_mm512_cmp_ps_mask(y, mt, _CMP_GT_OQ)) {
            __m512 mn = _mm512_max_ps(mt, y), f = ld_exp512(_mm512_mul_ps(_mm512_sub_ps(mt, mn), invT));
            TT = _mm512_mul_ps(TT, f);
            W = _mm512_mul_ps(W, f);
            mt = mn;
        }
        __m512 ds = _mm512_sub_ps(x, ms), et = ld_exp512(_mm512_mul_ps(_mm512_sub_ps(y, mt), invT));
        S1 = _mm512_add_ps(S1, ld_exp512(ds));
        ST = _mm512_add_ps(ST, ld_exp512(_mm512_mul_ps(ds, invT)));
        TT = _mm512_add_ps(TT, et);
        W = _mm512_fmadd_ps(et, _mm512_maskz_sub_ps(k, y, x), W); /* masked lanes: -inf - -inf */
    }
    /* combine the lanes at the row's maxima */
    float Ms = _mm512_reduce_max_ps(ms), Mt = _mm512_reduce_max_ps(mt);
    __m512 ds = _mm512_sub_ps(ms, _mm512_set1_ps(Ms)), ft = ld_exp512(_mm512_mul_ps(_mm512_sub_ps(mt, _mm512_set1_ps(Mt)), invT));
    double s1 = ld_hsum512(_mm512_mul_ps(S1, ld_exp512(ds)));
    double sT = ld_hsum512(_mm512_mul_ps(ST, ld_exp512(_mm512_mul_ps(ds, invT))));
    double tT = ld_hsum512(_mm512_mul_ps(TT, ft)), w = ld_hsum512(_mm512_mul_ps(W, ft));
    distill_row r;
    double lse_sT = (double)Ms / temp + log(sT), lse_tT = (double)Mt / temp + log(tT);
    r.lse_s = (float)((double)Ms + log(s1)), r.lse_sT = (float)lse_sT, r.lse_tT = (float)lse_tT;
    r.kl = w / (tT * temp) - lse_tT + lse_sT;
    return r;
}

typedef struct {
    float *loss;
    float *stats;
    const float *s;
    const float *t;
    const int32_t *target;
    int64_t V;
    float temp;
    float alpha;
    int32_t ignore_index;
} distill_fwd_args;

static void distill_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const distill_fwd_args *a = arg;
    float *loss = a->loss;
    float *stats = a->stats;
    const float *s = a->s;
    const float *t = a->t;
    const int32_t *target = a->target;
    int64_t V = a->V;
    float temp = a->temp;
    float alpha = a->alpha;
    int32_t ignore_index = a->ignore_index;
    for (int64_t n = lo; n < hi; n++) {
        if (target[n] == ignore_index) {
            loss[n] = 0.0f;
            continue;
        }
        const float *sr = s + n * V;
        distill_row r = distill_row_stats(sr, t + n * V, V, temp);
        double ce = (double)r.lse_s - (double)sr[target[n]];
        loss[n] = (float)((double)alpha * temp * temp * r.kl + (1.0 - (double)alpha) * ce);
        stats[3 * n] = r.lse_sT, stats[3 * n + 1] = r.lse_tT, stats[3 * n + 2] = r.lse_s;
    }
}

void ld_avx512_distill_fwd(float *loss, float *stats, const float *s, const float *t, const int32_t *target,
                           int64_t N, int64_t V, float temp, float alpha, int32_t ignore_index) {
    distill_fwd_args a = {loss, stats, s, t, target, V, temp, alpha, ignore_index};
    ld_par_for(N, ld_par_grain(V), distill_fwd_part, &a);
}

/* One pass: ds += d * (aT * (e^(s/T - lse(s/T)) - e^(t/T - lse(t/T))) + (1 - a) * e^(s - lse(s))),
 * then the target's term, (1 - a) * (p - 1), is redone without cancellation (as in xent). */
typedef struct {
    float *ds;
    const float *dloss;
    const float *s;
    const float *t;
    const float *stats;
    const int32_t *target;
    int64_t V;
    float temp;
    float alpha;
    int32_t ignore_index;
} distill_bwd_args;

static void distill_bwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const distill_bwd_args *a = arg;
    float *ds = a->ds;
    const float *dloss = a->dloss;
    const float *s = a->s;
    const float *t = a->t;
    const float *stats = a->stats;
    const int32_t *target = a->target;
    int64_t V = a->V;
    float temp = a->temp;
    float alpha = a->alpha;
    int32_t ignore_index = a->ignore_index;
    const float aT = alpha * temp, hard = 1.0f - alpha;
    const __m512 invT = _mm512_set1_ps(1.0f / temp);
    for (int64_t n = lo; n < hi; n++) {
        if (target[n] == ignore_index) continue;
        const float *sr = s + n * V, *tr = t + n * V;
        float *dr = ds + n * V;
        int64_t tg = target[n];
        float old_t = dr[tg], st = stats[3 * n], tt = stats[3 * n + 1], s1 = stats[3 * n + 2];
        __m512 lsT = _mm512_set1_ps(st), ltT = _mm512_set1_ps(tt), ls = _mm512_set1_ps(s1);
        __m512 dsoft = _mm512_set1_ps(dloss[n] * aT), dhard = _mm512_set1_ps(dloss[n] * hard);
        for (int64_t c = 0; c < V; c += 16) {
            __mmask16 k = ld_tail16(V - c);
            __m512 x = _mm512_maskz_loadu_ps(k, sr + c), g = _mm512_maskz_loadu_ps(k, dr + c);
            if (aT != 0.0f) {
                __m512 y = _mm512_maskz_loadu_ps(k, tr + c);
                __m512 soft = _mm512_sub_ps(ld_exp512(_mm512_fmsub_ps(x, invT, lsT)), ld_exp512(_mm512_fmsub_ps(y, invT, ltT)));
                g = _mm512_fmadd_ps(dsoft, soft, g);
            }
            if (hard != 0.0f) g = _mm512_fmadd_ps(dhard, ld_exp512(_mm512_sub_ps(x, ls)), g);
            _mm512_mask_storeu_ps(dr + c, k, g);
        }
        double pT_s = exp((double)sr[tg] / temp - st), pT_t = exp((double)tr[tg] / temp - tt);
        double p = exp((double)sr[tg] - s1);
        dr[tg] = (float)((double)old_t + (double)dloss[n] * ((double)aT * (pT_s - pT_t) + (double)hard * (p - 1.0)));
    }
}

void ld_avx512_distill_bwd(float *ds, const float *dloss, const float *s, const float *t, const float *stats,
                           const int32_t *target, int64_t N, int64_t V, float temp, float alpha,
                           int32_t ignore_index) {
    if (!ds) return;
    distill_bwd_args a = {ds, dloss, s, t, stats, target, V, temp, alpha, ignore_index};
    ld_par_for(N, ld_par_grain(V), distill_bwd_part, &a);
}

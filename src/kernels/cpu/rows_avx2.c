/* kernels/cpu/rows_avx2.c — AVX2 + FMA kernels that work row by row: LayerNorm,
 * RMSNorm, softmax, fused softmax-cross-entropy, the fused distillation loss, embedding
 * lookup, RoPE (by theta, and by explicit scaled frequencies: Llama 3, YaRN). The same
 * algorithms as rows_avx512.c on 8-lane vectors (RoPE by frequencies is this level's only).
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

#include "kernels/cpu/ops_avx2.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/ref/ref.h"

#define V8 8
/* c-th 8-float step of a row of C: the lane mask and whether all 8 lanes are valid */
#define STEP_MASK(C, c) const int full = (C) - (c) >= V8; const __m256i k = ld_tail8((C) - (c))
#define LOAD(p) ld_load8((p), k, full)
#define STORE(p, v) ld_store8((p), k, full, (v))

/* Loads 8 floats with masked-off lanes set to `fill`. */
static inline __m256 load_fill(const float *p, __m256i k, int full, float fill) {
    if (full) return _mm256_loadu_ps(p);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, k), _mm256_castsi256_ps(k));
}

/* ---- embeddings ---- */

typedef struct {
    float *out; /* rows of C (forward), or the table's gradient (backward) */
    const float *in;
    const int32_t *ids;
    int64_t N, C;
} embedding_args;

static void embedding_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const embedding_args *a = arg;
    for (int64_t n = lo; n < hi; n++)
        memcpy(a->out + n * a->C, a->in + (int64_t)a->ids[n] * a->C, (size_t)a->C * sizeof(float));
}

void ld_avx2_embedding_fwd(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C) {
    embedding_args a = {out, table, ids, N, C};
    ld_par_for(N, ld_par_grain(C), embedding_fwd_part, &a);
}

/* A piece is a slice of columns [c0, c1) walked over all rows in order, so repeated ids
 * never race and the summation order is fixed. */
static void embedding_bwd_part(void *arg, int64_t c0, int64_t c1, int piece) {
    (void)piece;
    const embedding_args *a = arg;
    for (int64_t n = 0; n < a->N; n++) {
        float *d = a->out + (int64_t)a->ids[n] * a->C;
        const float *s = a->in + n * a->C;
        for (int64_t c = c0; c < c1; c += V8) {
            STEP_MASK(c1, c);
            STORE(d + c, _mm256_add_ps(LOAD(d + c), LOAD(s + c)));
        }
    }
}

void ld_avx2_embedding_bwd(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t C) {
    if (!dtable) return;
    embedding_args a = {dtable, dout, ids, N, C};
    ld_par_for(C, ld_par_cols_grain(N), embedding_bwd_part, &a);
}

/* ---- LayerNorm and RMSNorm: one implementation, `center` = LayerNorm ---- */

/* One row: mean (LayerNorm only) and variance from the row held in L1, then y. Returns
 * rstd and stores the mean in *mu_out. */
static float norm_fwd_row(float *yr, float *mu_out, const float *xr, const float *w, const float *b, int64_t C,
                          float eps, int center, int strm) {
    __m256 mu = _mm256_setzero_ps();
    double mud = 0;
    if (center) {
        __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
        int64_t c = 0;
        for (; c + 16 <= C; c += 16) {
            s0 = _mm256_add_ps(s0, _mm256_loadu_ps(xr + c));
            s1 = _mm256_add_ps(s1, _mm256_loadu_ps(xr + c + 8));
        }
        for (; c < C; c += V8) {
            STEP_MASK(C, c);
            s0 = _mm256_add_ps(s0, LOAD(xr + c));
        }
        mud = (double)ld_hsum8(_mm256_add_ps(s0, s1)) / (double)C;
        mu = _mm256_set1_ps((float)mud);
    }
    /* second pass over the row (now in L1): sum of squared deviations */
    __m256 q0 = _mm256_setzero_ps(), q1 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
        __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(xr + c), mu);
        __m256 d1 = _mm256_sub_ps(_mm256_loadu_ps(xr + c + 8), mu);
        q0 = _mm256_fmadd_ps(d0, d0, q0);
        q1 = _mm256_fmadd_ps(d1, d1, q1);
    }
    for (; c < C; c += V8) {
        STEP_MASK(C, c);
        __m256 d = _mm256_and_ps(_mm256_sub_ps(LOAD(xr + c), mu), _mm256_castsi256_ps(k));
        q0 = _mm256_fmadd_ps(d, d, q0);
    }
    double var = (double)ld_hsum8(_mm256_add_ps(q0, q1)) / (double)C;
    float rs = (float)(1.0 / sqrt(var + (double)eps));
    __m256 vrs = _mm256_set1_ps(rs);
    for (c = 0; c < C; c += V8) {
        STEP_MASK(C, c);
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LOAD(xr + c), mu), vrs);
        __m256 v = b ? _mm256_fmadd_ps(xh, LOAD(w + c), LOAD(b + c)) : _mm256_mul_ps(xh, LOAD(w + c));
        if (strm && full) _mm256_stream_ps(yr + c, v);
        else STORE(yr + c, v);
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
    /* large outputs are streamed; rows stay 32-byte aligned when C is a multiple of 8 */
    const int strm = C % V8 == 0 && ld_use_stream(y, N * C * (int64_t)sizeof(float));
    norm_fwd_args a = {y, mean, rstd, x, w, b, C, eps, center, strm};
    ld_par_for(N, ld_par_grain(C), norm_fwd_part, &a);
}

void ld_avx2_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                           int64_t N, int64_t C, float eps) {
    norm_fwd(y, mean, rstd, x, w, b, N, C, eps, 1);
}

void ld_avx2_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C, float eps) {
    norm_fwd(y, NULL, rstd, x, w, NULL, N, C, eps, 0);
}

/* Largest C whose per-piece dw/db partials (2 C floats each) are kept; wider rows take a
 * second, column-parallel pass for dw/db instead. At most LD_NORM_MAX_PIECES pieces of
 * rows have partials. */
#define LD_NORM_PART_MAX_C 32768
#define LD_NORM_MAX_PIECES 64

/* One row of the norm backward: dx += rstd * (g - a - xhat * mean(g * xhat)), g = dy * w,
 * a = mean(g) for LayerNorm and 0 for RMSNorm; pdw += dy * xhat, pdb += dy (if not NULL). */
static void norm_bwd_row(float *dxr, float *pdw, float *pdb, const float *dyr, const float *xr, const float *w,
                         float mu_, float rs_, int center, int64_t C) {
    __m256 mu = _mm256_set1_ps(mu_), rs = _mm256_set1_ps(rs_);
    __m256 a = _mm256_setzero_ps(), bc = _mm256_setzero_ps();
    if (dxr) {
        __m256 sg = _mm256_setzero_ps(), sgx = _mm256_setzero_ps();
        for (int64_t c = 0; c < C; c += V8) {
            STEP_MASK(C, c);
            __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LOAD(xr + c), mu), rs);
            __m256 g = _mm256_mul_ps(LOAD(dyr + c), LOAD(w + c)); /* 0 in masked-off lanes */
            sg = _mm256_add_ps(sg, g);
            sgx = _mm256_fmadd_ps(g, xh, sgx);
        }
        if (center) a = _mm256_set1_ps((float)((double)ld_hsum8(sg) / (double)C));
        bc = _mm256_set1_ps((float)((double)ld_hsum8(sgx) / (double)C));
    }
    for (int64_t c = 0; c < C; c += V8) {
        STEP_MASK(C, c);
        __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LOAD(xr + c), mu), rs);
        __m256 dy = LOAD(dyr + c);
        if (dxr) {
            __m256 g = _mm256_mul_ps(dy, LOAD(w + c));
            __m256 d = _mm256_mul_ps(rs, _mm256_fnmadd_ps(xh, bc, _mm256_sub_ps(g, a)));
            STORE(dxr + c, _mm256_add_ps(LOAD(dxr + c), d));
        }
        if (pdw) STORE(pdw + c, _mm256_fmadd_ps(dy, xh, LOAD(pdw + c)));
        if (pdb) STORE(pdb + c, _mm256_add_ps(dy, LOAD(pdb + c)));
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
    for (int64_t c = c0; c < c1; c += V8) {
        STEP_MASK(c1, c);
        __m256 sw = _mm256_setzero_ps(), sb = _mm256_setzero_ps();
        for (int p = 0; p < s->pieces; p++) {
            const float *part = a->parts + (int64_t)p * 2 * a->C;
            sw = _mm256_add_ps(sw, LOAD(part + c));
            sb = _mm256_add_ps(sb, LOAD(part + a->C + c));
        }
        if (a->dw) STORE(a->dw + c, _mm256_add_ps(LOAD(a->dw + c), sw));
        if (a->db) STORE(a->db + c, _mm256_add_ps(LOAD(a->db + c), sb));
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

void ld_avx2_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                           const float *mean, const float *rstd, int64_t N, int64_t C) {
    norm_bwd(dx, dw, db, dy, x, w, mean, rstd, N, C);
}

void ld_avx2_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, const float *rstd,
                         int64_t N, int64_t C) {
    norm_bwd(dx, dw, NULL, dy, x, w, NULL, rstd, N, C);
}

/* ---- rotary position embedding ---- */

/* Largest head dimension handled here (cos/sin of one position live on the stack). */
#define LD_ROPE_MAX_D 8192

/* Rotates every head of every batch at each position by the angles (pos0 + t) inv_freq[i],
 * scaled by mscale; `inverse` applies the inverse rotation and accumulates into out
 * (backward). cos/sin are computed in double once per position. */
typedef struct {
    float *out;
    const float *in;
    const double *inv_freq;
    double mscale;
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
    const double mscale = a->mscale;
    for (int64_t t = t0; t < t1; t++) {
        float cs[half > 0 ? half : 1], sn[half > 0 ? half : 1];
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)(a->pos0 + t) * a->inv_freq[i];
            cs[i] = (float)(mscale * cos(ang));
            sn[i] = (float)(inverse ? -mscale * sin(ang) : mscale * sin(ang));
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++) {
                int64_t o = ((b * T + t) * H + h) * D;
                for (int64_t i = 0; i < half; i += V8) {
                    STEP_MASK(half, i);
                    __m256 x1 = LOAD(in + o + i), x2 = LOAD(in + o + half + i);
                    __m256 c = LOAD(cs + i), s = LOAD(sn + i);
                    __m256 y1 = _mm256_fmsub_ps(x1, c, _mm256_mul_ps(x2, s));
                    __m256 y2 = _mm256_fmadd_ps(x2, c, _mm256_mul_ps(x1, s));
                    if (inverse) {
                        y1 = _mm256_add_ps(LOAD(out + o + i), y1);
                        y2 = _mm256_add_ps(LOAD(out + o + half + i), y2);
                    }
                    STORE(out + o + i, y1);
                    STORE(out + o + half + i, y2);
                }
            }
    }
}

static void rope_apply(float *out, const float *in, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                       const double *inv_freq, double mscale, int inverse) {
    rope_args a = {out, in, inv_freq, mscale, B, T, H, D, pos0, inverse};
    ld_par_for(T, ld_par_grain(B * H * D), rope_part, &a);
}

/* theta^(-2i/D), in double as the reference computes it */
static void theta_freqs(double *f, int64_t D, float theta) {
    for (int64_t i = 0; i < D / 2; i++) f[i] = pow((double)theta, -2.0 * (double)i / (double)D);
}

void ld_avx2_rope_fwd(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                      float theta) {
    if (D > LD_ROPE_MAX_D) {
        ld_ref_rope_fwd(y, x, B, T, H, D, pos0, theta);
        return;
    }
    double f[D / 2 > 0 ? D / 2 : 1];
    theta_freqs(f, D, theta);
    rope_apply(y, x, B, T, H, D, pos0, f, 1.0, 0);
}

void ld_avx2_rope_bwd(float *dx, const float *dy, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                      float theta) {
    if (!dx) return;
    if (D > LD_ROPE_MAX_D) {
        ld_ref_rope_bwd(dx, dy, B, T, H, D, pos0, theta);
        return;
    }
    double f[D / 2 > 0 ? D / 2 : 1];
    theta_freqs(f, D, theta);
    rope_apply(dx, dy, B, T, H, D, pos0, f, 1.0, 1);
}

/* Explicit (scaled: Llama 3, YaRN, linear, rope_freqs.weight) frequencies and magnitude. */
void ld_avx2_rope_freq_fwd(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                           const float *inv_freq, float mscale) {
    if (D > LD_ROPE_MAX_D) {
        ld_ref_rope_freq_fwd(y, x, B, T, H, D, pos0, inv_freq, mscale);
        return;
    }
    double f[D / 2 > 0 ? D / 2 : 1];
    for (int64_t i = 0; i < D / 2; i++) f[i] = inv_freq[i];
    rope_apply(y, x, B, T, H, D, pos0, f, mscale, 0);
}

/* The backward of a rotation scaled by m is the inverse rotation scaled by m. */
void ld_avx2_rope_freq_bwd(float *dx, const float *dy, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                           const float *inv_freq, float mscale) {
    if (!dx) return;
    if (D > LD_ROPE_MAX_D) {
        ld_ref_rope_freq_bwd(dx, dy, B, T, H, D, pos0, inv_freq, mscale);
        return;
    }
    double f[D / 2 > 0 ? D / 2 : 1];
    for (int64_t i = 0; i < D / 2; i++) f[i] = inv_freq[i];
    rope_apply(dx, dy, B, T, H, D, pos0, f, mscale, 1);
}

/* ---- softmax ---- */

static float row_max(const float *xr, int64_t C) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    for (int64_t c = 0; c < C; c += V8) {
        STEP_MASK(C, c);
        m = _mm256_max_ps(m, load_fill(xr + c, k, full, -INFINITY));
    }
    return ld_hmax8(m);
}

typedef struct {
    float *y;          /* softmax: the output; backward: dx */
    const float *x;    /* softmax: the input; backward: the forward's output */
    const float *dy;   /* backward only */
    int64_t C;
} softmax_args;

static void softmax_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const softmax_args *a = arg;
    const int64_t C = a->C;
    for (int64_t n = lo; n < hi; n++) {
        const float *xr = a->x + n * C;
        float *yr = a->y + n * C;
        __m256 mx = _mm256_set1_ps(row_max(xr, C)), s = _mm256_setzero_ps();
        for (int64_t c = 0; c < C; c += V8) {
            STEP_MASK(C, c);
            __m256 e = _mm256_and_ps(ld_exp8(_mm256_sub_ps(LOAD(xr + c), mx)), _mm256_castsi256_ps(k));
            s = _mm256_add_ps(s, e);
            STORE(yr + c, e);
        }
        __m256 inv = _mm256_set1_ps((float)(1.0 / (double)ld_hsum8(s)));
        for (int64_t c = 0; c < C; c += V8) {
            STEP_MASK(C, c);
            STORE(yr + c, _mm256_mul_ps(LOAD(yr + c), inv));
        }
    }
}

void ld_avx2_softmax_fwd(float *y, const float *x, int64_t N, int64_t C) {
    softmax_args a = {y, x, NULL, C};
    ld_par_for(N, ld_par_grain(C), softmax_fwd_part, &a);
}

static void softmax_bwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const softmax_args *a = arg;
    const int64_t C = a->C;
    for (int64_t n = lo; n < hi; n++) {
        const float *yr = a->x + n * C, *dyr = a->dy + n * C;
        float *dxr = a->y + n * C;
        __m256 s = _mm256_setzero_ps();
        for (int64_t c = 0; c < C; c += V8) {
            STEP_MASK(C, c);
            s = _mm256_fmadd_ps(LOAD(dyr + c), LOAD(yr + c), s);
        }
        __m256 dot = _mm256_set1_ps(ld_hsum8(s));
        for (int64_t c = 0; c < C; c += V8) {
            STEP_MASK(C, c);
            __m256 g = _mm256_mul_ps(LOAD(yr + c), _mm256_sub_ps(LOAD(dyr + c), dot));
            STORE(dxr + c, _mm256_add_ps(LOAD(dxr + c), g));
        }
    }
}

void ld_avx2_softmax_bwd(float *dx, const float *dy, const float *y, int64_t N, int64_t C) {
    if (!dx) return;
    softmax_args a = {dx, y, dy, C};
    ld_par_for(N, ld_par_grain(C), softmax_bwd_part, &a);
}

/* ---- fused softmax + cross-entropy ---- */

/* log-sum-exp of a row in one pass: per lane a running max m and sum s of e^(x - m),
 * rescaled only when a lane's max grows; lanes are combined at the end. */
static float row_logsumexp(const float *xr, int64_t V) {
    __m256 m = _mm256_set1_ps(-FLT_MAX), s = _mm256_setzero_ps();
    for (int64_t c = 0; c < V; c += V8) {
        STEP_MASK(V, c);
        __m256 x = load_fill(xr + c, k, full, -INFINITY);
        if (_mm256_movemask_ps(_mm256_cmp_ps(x, m, _CMP_GT_OQ))) {
            __m256 mn = _mm256_max_ps(m, x);
            s = _mm256_mul_ps(s, ld_exp8(_mm256_sub_ps(m, mn)));
            m = mn;
        }
        s = _mm256_add_ps(s, ld_exp8(_mm256_sub_ps(x, m)));
    }
    float M = ld_hmax8(m);
    float S = ld_hsum8(_mm256_mul_ps(s, ld_exp8(_mm256_sub_ps(m, _mm256_set1_ps(M)))));
    return (float)((double)M + log((double)S));
}

/* The arguments of the loss kernels (cross-entropy and distillation), rows of V logits. */
typedef struct {
    float *loss, *row_out;      /* forwards: per-row loss; lse (xent) or 3 stats (distill) */
    float *d;                   /* backwards: the logits' gradient */
    const float *s, *t;         /* the (student's) logits; the teacher's */
    const float *dloss, *row_in; /* backwards: the loss's gradient; lse or stats */
    const int32_t *target;
    int64_t V;
    float temp, alpha;
    int32_t ignore_index;
    int overwrite; /* xent backward: d is the logits, overwritten */
} loss_args;

static void xent_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const loss_args *a = arg;
    const int64_t V = a->V;
    for (int64_t n = lo; n < hi; n++) {
        const float *xr = a->s + n * V;
        float l = row_logsumexp(xr, V);
        if (a->row_out) a->row_out[n] = l;
        a->loss[n] = a->target[n] == a->ignore_index ? 0.0f : (float)((double)l - (double)xr[a->target[n]]);
    }
}

void ld_avx2_xent_fwd(float *loss, float *lse, const float *logits, const int32_t *target, int64_t N, int64_t V,
                      int32_t ignore_index) {
    loss_args a = {.loss = loss, .row_out = lse, .s = logits, .target = target, .V = V, .ignore_index = ignore_index};
    ld_par_for(N, ld_par_grain(V), xent_fwd_part, &a);
}

static void xent_bwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const loss_args *a = arg;
    const int64_t V = a->V;
    const int overwrite = a->overwrite;
    const int32_t *target = a->target, ignore_index = a->ignore_index;
    const float *dloss = a->dloss, *lse = a->row_in;
    for (int64_t n = lo; n < hi; n++) {
        float *dr = a->d + n * V;
        const float *xr = a->s + n * V;
        if (target[n] == ignore_index) {
            if (overwrite) memset(dr, 0, (size_t)V * sizeof(float));
            continue;
        }
        int64_t tg = target[n];
        float xt = xr[tg], old_t = overwrite ? 0.0f : dr[tg];
        __m256 d = _mm256_set1_ps(dloss[n]), l = _mm256_set1_ps(lse[n]);
        for (int64_t c = 0; c < V; c += V8) {
            STEP_MASK(V, c);
            __m256 g = _mm256_mul_ps(d, ld_exp8(_mm256_sub_ps(LOAD(xr + c), l)));
            if (!overwrite) g = _mm256_add_ps(LOAD(dr + c), g);
            STORE(dr + c, g);
        }
        /* the target's own term, d * (p - 1), computed without cancellation against d * p */
        float pt = _mm256_cvtss_f32(ld_exp8(_mm256_set1_ps(xt - lse[n])));
        dr[tg] = old_t + dloss[n] * (pt - 1.0f);
    }
}

void ld_avx2_xent_bwd(float *dlogits, const float *dloss, const float *logits, const float *lse,
                      const int32_t *target, int64_t N, int64_t V, int32_t ignore_index) {
    if (!dlogits) return;
    loss_args a = {.d = dlogits, .s = logits, .dloss = dloss, .row_in = lse, .target = target, .V = V,
                   .ignore_index = ignore_index, .overwrite = dlogits == logits};
    ld_par_for(N, ld_par_grain(V), xent_bwd_part, &a);
}

/* ---- fused distillation loss (soft KL at temperature T + hard cross-entropy) ---- */

/* One pass over s and t per row, as rows_avx512.c's distill_row_stats: per lane running
 * maxima ms of s and mt of t and the sums S1 = sum e^(s - ms), ST = sum e^((s - ms)/T),
 * TT = sum e^((t - mt)/T), W = sum e^((t - mt)/T) * (t - s), each rescaled when its lane's
 * maximum grows; then lse(s), lse(s/T), lse(t/T) and KL = W / (TT T) - lse(t/T) + lse(s/T). */
typedef struct distill_row {
    float lse_sT, lse_tT, lse_s;
    double kl;
} distill_row;

static distill_row distill_row_stats(const float *sr, const float *tr, int64_t V, float temp) {
    const __m256 invT = _mm256_set1_ps(1.0f / temp);
    __m256 ms = _mm256_set1_ps(-FLT_MAX), mt = ms;
    __m256 S1 = _mm256_setzero_ps(), ST = S1, TT = S1, W = S1;
    for (int64_t c = 0; c < V; c += V8) {
        STEP_MASK(V, c);
        __m256 x = load_fill(sr + c, k, full, -INFINITY), y = load_fill(tr + c, k, full, -INFINITY);
        if (_mm256_movemask_ps(_mm256_cmp_ps(x, ms, _CMP_GT_OQ))) {
            __m256 mn = _mm256_max_ps(ms, x), dm = _mm256_sub_ps(ms, mn);
            S1 = _mm256_mul_ps(S1, ld_exp8(dm));
            ST = _mm256_mul_ps(ST, ld_exp8(_mm256_mul_ps(dm, invT)));
            ms = mn;
        }
        if (_mm256_movemask_ps(_mm256_cmp_ps(y, mt, _CMP_GT_OQ))) {
            __m256 mn = _mm256_max_ps(mt, y), f = ld_exp8(_mm256_mul_ps(_mm256_sub_ps(mt, mn), invT));
            TT = _mm256_mul_ps(TT, f);
            W = _mm256_mul_ps(W, f);
            mt = mn;
        }
        __m256 ds = _mm256_sub_ps(x, ms), et = ld_exp8(_mm256_mul_ps(_mm256_sub_ps(y, mt), invT));
        S1 = _mm256_add_ps(S1, ld_exp8(ds));
        ST = _mm256_add_ps(ST, ld_exp8(_mm256_mul_ps(ds, invT)));
        TT = _mm256_add_ps(TT, et);
        /* masked-off lanes: -inf - -inf is NaN, so they add 0 explicitly */
        W = _mm256_fmadd_ps(et, _mm256_and_ps(_mm256_sub_ps(y, x), _mm256_castsi256_ps(k)), W);
    }
    float Ms = ld_hmax8(ms), Mt = ld_hmax8(mt);
    __m256 ds = _mm256_sub_ps(ms, _mm256_set1_ps(Ms)), ft = ld_exp8(_mm256_mul_ps(_mm256_sub_ps(mt, _mm256_set1_ps(Mt)), invT));
    double s1 = ld_hsum8(_mm256_mul_ps(S1, ld_exp8(ds)));
    double sT = ld_hsum8(_mm256_mul_ps(ST, ld_exp8(_mm256_mul_ps(ds, invT))));
    double tT = ld_hsum8(_mm256_mul_ps(TT, ft)), w = ld_hsum8(_mm256_mul_ps(W, ft));
    distill_row r;
    double lse_sT = (double)Ms / temp + log(sT), lse_tT = (double)Mt / temp + log(tT);
    r.lse_s = (float)((double)Ms + log(s1)), r.lse_sT = (float)lse_sT, r.lse_tT = (float)lse_tT;
    r.kl = w / (tT * temp) - lse_tT + lse_sT;
    return r;
}

static void distill_fwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const loss_args *a = arg;
    const int64_t V = a->V;
    const float temp = a->temp, alpha = a->alpha;
    float *loss = a->loss, *stats = a->row_out;
    for (int64_t n = lo; n < hi; n++) {
        if (a->target[n] == a->ignore_index) {
            loss[n] = 0.0f;
            continue;
        }
        const float *sr = a->s + n * V;
        distill_row r = distill_row_stats(sr, a->t + n * V, V, temp);
        double ce = (double)r.lse_s - (double)sr[a->target[n]];
        loss[n] = (float)((double)alpha * temp * temp * r.kl + (1.0 - (double)alpha) * ce);
        stats[3 * n] = r.lse_sT, stats[3 * n + 1] = r.lse_tT, stats[3 * n + 2] = r.lse_s;
    }
}

void ld_avx2_distill_fwd(float *loss, float *stats, const float *s, const float *t, const int32_t *target, int64_t N,
                         int64_t V, float temp, float alpha, int32_t ignore_index) {
    loss_args a = {.loss = loss, .row_out = stats, .s = s, .t = t, .target = target, .V = V, .temp = temp,
                   .alpha = alpha, .ignore_index = ignore_index};
    ld_par_for(N, ld_par_grain(V), distill_fwd_part, &a);
}

/* One pass: ds += d * (aT * (e^(s/T - lse(s/T)) - e^(t/T - lse(t/T))) + (1 - a) * e^(s - lse(s))),
 * then the target's term, (1 - a) * (p - 1), is redone without cancellation (as in xent). */
static void distill_bwd_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const loss_args *a = arg;
    const int64_t V = a->V;
    const float temp = a->temp, aT = a->alpha * temp, hard = 1.0f - a->alpha;
    const __m256 invT = _mm256_set1_ps(1.0f / temp);
    const float *s = a->s, *t = a->t, *dloss = a->dloss, *stats = a->row_in;
    const int32_t *target = a->target, ignore_index = a->ignore_index;
    float *ds = a->d;
    for (int64_t n = lo; n < hi; n++) {
        if (target[n] == ignore_index) continue;
        const float *sr = s + n * V, *tr = t + n * V;
        float *dr = ds + n * V;
        int64_t tg = target[n];
        float old_t = dr[tg], st = stats[3 * n], tt = stats[3 * n + 1], s1 = stats[3 * n + 2];
        __m256 lsT = _mm256_set1_ps(st), ltT = _mm256_set1_ps(tt), ls = _mm256_set1_ps(s1);
        __m256 dsoft = _mm256_set1_ps(dloss[n] * aT), dhard = _mm256_set1_ps(dloss[n] * hard);
        for (int64_t c = 0; c < V; c += V8) {
            STEP_MASK(V, c);
            __m256 x = LOAD(sr + c), g = LOAD(dr + c);
            if (aT != 0.0f) {
                __m256 y = LOAD(tr + c);
                __m256 soft = _mm256_sub_ps(ld_exp8(_mm256_fmsub_ps(x, invT, lsT)), ld_exp8(_mm256_fmsub_ps(y, invT, ltT)));
                g = _mm256_fmadd_ps(dsoft, soft, g);
            }
            if (hard != 0.0f) g = _mm256_fmadd_ps(dhard, ld_exp8(_mm256_sub_ps(x, ls)), g);
            STORE(dr + c, g);
        }
        double pT_s = exp((double)sr[tg] / temp - st), pT_t = exp((double)tr[tg] / temp - tt);
        double p = exp((double)sr[tg] - s1);
        dr[tg] = (float)((double)old_t + (double)dloss[n] * ((double)aT * (pT_s - pT_t) + (double)hard * (p - 1.0)));
    }
}

void ld_avx2_distill_bwd(float *ds, const float *dloss, const float *s, const float *t, const float *stats,
                         const int32_t *target, int64_t N, int64_t V, float temp, float alpha, int32_t ignore_index) {
    if (!ds) return;
    loss_args a = {.d = ds, .s = s, .t = t, .dloss = dloss, .row_in = stats, .target = target, .V = V,
                   .temp = temp, .alpha = alpha, .ignore_index = ignore_index};
    ld_par_for(N, ld_par_grain(V), distill_bwd_part, &a);
}

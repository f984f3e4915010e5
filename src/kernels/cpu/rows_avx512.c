/* kernels/cpu/rows_avx512.c — AVX-512 + OpenMP kernels that work row by row: LayerNorm,
 * RMSNorm, softmax, fused softmax-cross-entropy, the fused distillation loss, embedding
 * lookup, RoPE.
 *
 * Rows are split statically over threads. Each row is read from memory once: a row of a
 * norm (a few KB) stays in L1/L2 between the passes over it, and the cross-entropy forward
 * finds max and sum of exponentials in a single online pass. Reductions over rows (the
 * weight gradients of the norms) go through per-thread partial sums on the thread's stack,
 * combined in thread order: deterministic for a given thread count. Semantics are those
 * of kernels/kernels.h; ref_ops_impl.h is the oracle. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "kernels/cpu/ops_avx512.h"
#include "kernels/cpu/simd_avx512.h"
#include "kernels/ref/ref.h"

/* ---- embeddings ---- */

void ld_avx512_embedding_fwd(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= LD_PAR_MIN)
    for (int64_t n = 0; n < N; n++) memcpy(out + n * C, table + (int64_t)ids[n] * C, (size_t)C * sizeof(float));
}

/* Each thread owns a slice of columns and walks all rows in order, so repeated ids never
 * race and the summation order is fixed. */
void ld_avx512_embedding_bwd(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t C) {
    if (!dtable) return;
#pragma omp parallel if (N * C >= LD_PAR_MIN)
    {
        int64_t c0, c1;
        ld_split(C, 16, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
        for (int64_t n = 0; n < N; n++) {
            float *d = dtable + (int64_t)ids[n] * C;
            const float *s = dout + n * C;
            for (int64_t c = c0; c < c1; c += 16) {
                __mmask16 k = ld_tail16(c1 - c);
                _mm512_mask_storeu_ps(d + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, d + c),
                                                              _mm512_maskz_loadu_ps(k, s + c)));
            }
        }
    }
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

static void norm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w, const float *b,
                     int64_t N, int64_t C, float eps, int center) {
    /* large outputs are streamed; rows stay 64-byte aligned when C is a multiple of 16 */
    const int strm = C % 16 == 0 && ld_use_stream(y, N * C * (int64_t)sizeof(float));
#pragma omp parallel if (N * C >= LD_PAR_MIN)
    {
#pragma omp for schedule(static) nowait
        for (int64_t n = 0; n < N; n++) {
            float mu, rs = norm_fwd_row(y + n * C, &mu, x + n * C, w, b, C, eps, center, strm);
            if (mean) mean[n] = mu;
            if (rstd) rstd[n] = rs;
        }
        _mm_sfence(); /* publish streamed rows before the region's closing barrier */
    }
}

void ld_avx512_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                             const float *b, int64_t N, int64_t C, float eps) {
    norm_fwd(y, mean, rstd, x, w, b, N, C, eps, 1);
}

void ld_avx512_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                           float eps) {
    norm_fwd(y, NULL, rstd, x, w, NULL, N, C, eps, 0);
}

/* Largest C whose per-thread dw/db partials (2 C floats) live on the thread's stack; wider
 * rows take a second, column-parallel pass for dw/db instead. */
#define LD_NORM_PART_MAX_C 32768

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

static void norm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                     const float *mean, const float *rstd, int64_t N, int64_t C) {
    int center = mean != NULL;
    int want_p = dw || db;
    int fused = want_p && C <= LD_NORM_PART_MAX_C;
    int nt_max = N * C >= LD_PAR_MIN ? omp_get_max_threads() : 1;
    float *parts[nt_max];
#pragma omp parallel num_threads(nt_max)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        float part[fused ? 2 * C : 1];
        float *pdw = fused && dw ? part : NULL, *pdb = fused && db ? part + C : NULL;
        if (fused) {
            memset(part, 0, 2 * (size_t)C * sizeof(float));
            parts[t] = part;
        }
        int64_t lo, hi;
        ld_split(N, 1, t, nt, &lo, &hi);
        if (dx || fused)
            for (int64_t n = lo; n < hi; n++)
                norm_bwd_row(dx ? dx + n * C : NULL, pdw, pdb, dy + n * C, x + n * C, w,
                             center ? mean[n] : 0.0f, rstd[n], center, C);
        if (fused) {
#pragma omp barrier
            /* combine the partials of every thread, in thread order, over my columns */
            int64_t c0, c1;
            ld_split(C, 16, t, nt, &c0, &c1);
            for (int64_t c = c0; c < c1; c += 16) {
                __mmask16 k = ld_tail16(c1 - c);
                __m512 sw = _mm512_setzero_ps(), sb = _mm512_setzero_ps();
                for (int tt = 0; tt < nt; tt++) {
                    sw = _mm512_add_ps(sw, _mm512_maskz_loadu_ps(k, parts[tt] + c));
                    sb = _mm512_add_ps(sb, _mm512_maskz_loadu_ps(k, parts[tt] + C + c));
                }
                if (dw) _mm512_mask_storeu_ps(dw + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, dw + c), sw));
                if (db) _mm512_mask_storeu_ps(db + c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, db + c), sb));
            }
#pragma omp barrier /* the partials live on the threads' stacks until everyone is done */
        }
    }
    if (want_p && !fused) {
        /* very wide rows: each thread owns a slice of columns and walks all rows */
#pragma omp parallel
        {
            int64_t c0, c1;
            ld_split(C, 16, omp_get_thread_num(), omp_get_num_threads(), &c0, &c1);
            for (int64_t n = 0; n < N; n++) {
                int64_t o = n * C;
                norm_bwd_row(NULL, dw ? dw + c0 : NULL, db ? db + c0 : NULL, dy + o + c0, x + o + c0, w + c0,
                             center ? mean[n] : 0.0f, rstd[n], center, c1 - c0);
            }
        }
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
static void rope_apply(float *out, const float *in, int64_t B, int64_t T, int64_t H, int64_t D,
                       int64_t pos0, float theta, int inverse) {
    int64_t half = D / 2;
    double inv_freq[half > 0 ? half : 1];
    for (int64_t i = 0; i < half; i++) inv_freq[i] = pow((double)theta, -2.0 * (double)i / (double)D);
#pragma omp parallel for schedule(static) if (B * T * H * D >= LD_PAR_MIN)
    for (int64_t t = 0; t < T; t++) {
        float cs[half > 0 ? half : 1], sn[half > 0 ? half : 1];
        for (int64_t i = 0; i < half; i++) {
            double ang = (double)(pos0 + t) * inv_freq[i];
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

void ld_avx512_softmax_fwd(float *y, const float *x, int64_t N, int64_t C) {
#pragma omp parallel for schedule(static) if (N * C >= LD_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
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

void ld_avx512_softmax_bwd(float *dx, const float *dy, const float *y, int64_t N, int64_t C) {
    if (!dx) return;
#pragma omp parallel for schedule(static) if (N * C >= LD_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
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

void ld_avx512_xent_fwd(float *loss, float *lse, const float *logits, const int32_t *target, int64_t N,
                        int64_t V, int32_t ignore_index) {
#pragma omp parallel for schedule(static) if (N * V >= LD_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
        const float *xr = logits + n * V;
        float l = row_logsumexp(xr, V);
        if (lse) lse[n] = l;
        loss[n] = target[n] == ignore_index ? 0.0f : (float)((double)l - (double)xr[target[n]]);
    }
}

void ld_avx512_xent_bwd(float *dlogits, const float *dloss, const float *logits, const float *lse,
                        const int32_t *target, int64_t N, int64_t V, int32_t ignore_index) {
    if (!dlogits) return;
    int overwrite = dlogits == logits;
#pragma omp parallel for schedule(static) if (N * V >= LD_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
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

void ld_avx512_distill_fwd(float *loss, float *stats, const float *s, const float *t, const int32_t *target,
                           int64_t N, int64_t V, float temp, float alpha, int32_t ignore_index) {
#pragma omp parallel for schedule(static) if (N * V >= LD_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
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

/* One pass: ds += d * (aT * (e^(s/T - lse(s/T)) - e^(t/T - lse(t/T))) + (1 - a) * e^(s - lse(s))),
 * then the target's term, (1 - a) * (p - 1), is redone without cancellation (as in xent). */
void ld_avx512_distill_bwd(float *ds, const float *dloss, const float *s, const float *t, const float *stats,
                           const int32_t *target, int64_t N, int64_t V, float temp, float alpha,
                           int32_t ignore_index) {
    if (!ds) return;
    const float aT = alpha * temp, hard = 1.0f - alpha;
    const __m512 invT = _mm512_set1_ps(1.0f / temp);
#pragma omp parallel for schedule(static) if (N * V >= LD_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
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

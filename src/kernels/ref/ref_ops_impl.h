/* kernels/ref/ref_ops_impl.h — the reference (scalar) kernels for every op except matrix
 * products and attention, written once over an element type.
 *
 * The includer defines
 *   REAL        the element type (float for the ref table, double for finite differences)
 *   REF_FN(op)  the function name for `op` (ld_ref_##op or ld_ref64_##op)
 * and includes this file once. ref_ops.c instantiates it with float (declared in ref.h,
 * wired into ld_kernels_ref), ref_ops_f64.c with double (declared in ref_f64.h).
 *
 * Semantics are exactly those documented on the ld_kernels fields in kernels/kernels.h.
 * Reductions and transcendental functions are evaluated in double whatever REAL is, so the
 * float instantiation is an accurate oracle; results are rounded to REAL on store. Clarity
 * beats speed here: one plain loop per formula. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "liandan/core.h"
#include "liandan/tensor.h"
#include "kernels/kernels.h"

#if !defined(REAL) || !defined(REF_FN)
#error "define REAL and REF_FN before including ref_ops_impl.h"
#endif

/* ---- embeddings ---- */

void REF_FN(embedding_fwd)(REAL *out, const int32_t *ids, const REAL *table, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) out[n * C + c] = table[(int64_t)ids[n] * C + c];
}

void REF_FN(embedding_bwd)(REAL *dtable, const int32_t *ids, const REAL *dout, int64_t N, int64_t C) {
    if (!dtable) return;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) dtable[(int64_t)ids[n] * C + c] += dout[n * C + c];
}

/* ---- LayerNorm / RMSNorm over rows of x[N, C] ---- */

void REF_FN(layernorm_fwd)(REAL *y, REAL *mean, REAL *rstd, const REAL *x, const REAL *w,
                           const REAL *b, int64_t N, int64_t C, float eps) {
    for (int64_t n = 0; n < N; n++) {
        const REAL *xr = x + n * C;
        double mu = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mu += xr[c];
        mu /= (double)C;
        for (int64_t c = 0; c < C; c++) var += ((double)xr[c] - mu) * ((double)xr[c] - mu);
        var /= (double)C;
        double rs = 1.0 / sqrt(var + (double)eps);
        for (int64_t c = 0; c < C; c++) {
            double v = ((double)xr[c] - mu) * rs * (double)w[c];
            y[n * C + c] = (REAL)(b ? v + (double)b[c] : v);
        }
        if (mean) mean[n] = (REAL)mu;
        if (rstd) rstd[n] = (REAL)rs;
    }
}

void REF_FN(layernorm_bwd)(REAL *dx, REAL *dw, REAL *db, const REAL *dy, const REAL *x,
                           const REAL *w, const REAL *mean, const REAL *rstd, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const REAL *xr = x + n * C, *dyr = dy + n * C;
        double mu = mean[n], rs = rstd[n];
        /* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w */
        double gsum = 0, gxsum = 0;
        for (int64_t c = 0; c < C; c++) {
            double xhat = ((double)xr[c] - mu) * rs, g = (double)dyr[c] * (double)w[c];
            gsum += g;
            gxsum += g * xhat;
        }
        gsum /= (double)C;
        gxsum /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            double xhat = ((double)xr[c] - mu) * rs, g = (double)dyr[c] * (double)w[c];
            if (dx) dx[n * C + c] += (REAL)(rs * (g - gsum - xhat * gxsum));
            if (dw) dw[c] += (REAL)((double)dyr[c] * xhat);
            if (db) db[c] += dyr[c];
        }
    }
}

void REF_FN(rmsnorm_fwd)(REAL *y, REAL *rstd, const REAL *x, const REAL *w, int64_t N, int64_t C,
                         float eps) {
    for (int64_t n = 0; n < N; n++) {
        const REAL *xr = x + n * C;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * (double)xr[c];
        double rs = 1.0 / sqrt(ss / (double)C + (double)eps);
        for (int64_t c = 0; c < C; c++) y[n * C + c] = (REAL)((double)xr[c] * rs * (double)w[c]);
        if (rstd) rstd[n] = (REAL)rs;
    }
}

void REF_FN(rmsnorm_bwd)(REAL *dx, REAL *dw, const REAL *dy, const REAL *x, const REAL *w,
                         const REAL *rstd, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const REAL *xr = x + n * C, *dyr = dy + n * C;
        double rs = rstd[n];
        /* dx = rstd * (g - xhat * mean(g * xhat)), g = dy * w */
        double gxsum = 0;
        for (int64_t c = 0; c < C; c++) gxsum += (double)dyr[c] * (double)w[c] * (double)xr[c] * rs;
        gxsum /= (double)C;
        for (int64_t c = 0; c < C; c++) {
            double xhat = (double)xr[c] * rs, g = (double)dyr[c] * (double)w[c];
            if (dx) dx[n * C + c] += (REAL)(rs * (g - xhat * gxsum));
            if (dw) dw[c] += (REAL)((double)dyr[c] * xhat);
        }
    }
}

/* ---- rotary position embedding, rotate-half layout, on x[B, T, H, D] ---- */

/* Rotates pairs (i, i + D/2) of every head by angle pos * inv_freq[i] (sign = +1) or by its
 * inverse (sign = -1), cos and sin scaled by mscale. out may equal in when accumulate is
 * false. */
static void REF_FN(rope_apply)(REAL *out, const REAL *in, int64_t B, int64_t T, int64_t H, int64_t D,
                               int64_t pos0, const double *inv_freq, double mscale, double sign, int accumulate) {
    int64_t half = D / 2;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t i = 0; i < half; i++) {
                double ang = (double)(pos0 + t) * inv_freq[i];
                double cs = mscale * cos(ang), sn = mscale * sign * sin(ang);
                for (int64_t h = 0; h < H; h++) {
                    int64_t o = ((b * T + t) * H + h) * D;
                    double x1 = in[o + i], x2 = in[o + i + half];
                    REAL y1 = (REAL)(x1 * cs - x2 * sn), y2 = (REAL)(x2 * cs + x1 * sn);
                    if (accumulate) {
                        out[o + i] += y1;
                        out[o + i + half] += y2;
                    } else {
                        out[o + i] = y1;
                        out[o + i + half] = y2;
                    }
                }
            }
}

/* theta^(-2i/D) for i < D/2, in double (as the rotation always was computed here). */
static void REF_FN(rope_theta_freqs)(double *f, int64_t D, float theta) {
    for (int64_t i = 0; i < D / 2; i++) f[i] = pow((double)theta, -2.0 * (double)i / (double)D);
}

void REF_FN(rope_fwd)(REAL *y, const REAL *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                      float theta) {
    double f[D / 2 > 0 ? D / 2 : 1];
    REF_FN(rope_theta_freqs)(f, D, theta);
    REF_FN(rope_apply)(y, x, B, T, H, D, pos0, f, 1.0, 1.0, 0);
}

void REF_FN(rope_bwd)(REAL *dx, const REAL *dy, int64_t B, int64_t T, int64_t H, int64_t D,
                      int64_t pos0, float theta) {
    if (!dx) return;
    double f[D / 2 > 0 ? D / 2 : 1];
    REF_FN(rope_theta_freqs)(f, D, theta);
    REF_FN(rope_apply)(dx, dy, B, T, H, D, pos0, f, 1.0, -1.0, 1);
}

void REF_FN(rope_freq_fwd)(REAL *y, const REAL *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                           const float *inv_freq, float mscale) {
    double f[D / 2 > 0 ? D / 2 : 1];
    for (int64_t i = 0; i < D / 2; i++) f[i] = inv_freq[i];
    REF_FN(rope_apply)(y, x, B, T, H, D, pos0, f, mscale, 1.0, 0);
}

/* The backward of a rotation scaled by m is the inverse rotation scaled by m. */
void REF_FN(rope_freq_bwd)(REAL *dx, const REAL *dy, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                           const float *inv_freq, float mscale) {
    if (!dx) return;
    double f[D / 2 > 0 ? D / 2 : 1];
    for (int64_t i = 0; i < D / 2; i++) f[i] = inv_freq[i];
    REF_FN(rope_apply)(dx, dy, B, T, H, D, pos0, f, mscale, -1.0, 1);
}

/* ---- softmax over rows of x[N, C] ---- */

void REF_FN(softmax_fwd)(REAL *y, const REAL *x, int64_t N, int64_t C) {
    for (int64_t n = 0; n < N; n++) {
        const REAL *xr = x + n * C;
        double mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < C; c++) mx = xr[c] > mx ? xr[c] : mx;
        for (int64_t c = 0; c < C; c++) sum += exp((double)xr[c] - mx);
        for (int64_t c = 0; c < C; c++) y[n * C + c] = (REAL)(exp((double)xr[c] - mx) / sum);
    }
}

void REF_FN(softmax_bwd)(REAL *dx, const REAL *dy, const REAL *y, int64_t N, int64_t C) {
    if (!dx) return;
    for (int64_t n = 0; n < N; n++) {
        const REAL *yr = y + n * C, *dyr = dy + n * C;
        double dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)dyr[c] * (double)yr[c];
        for (int64_t c = 0; c < C; c++) dx[n * C + c] += (REAL)((double)yr[c] * ((double)dyr[c] - dot));
    }
}

/* ---- fused softmax + cross-entropy on logits[N, V] ---- */

void REF_FN(xent_fwd)(REAL *loss, REAL *lse, const REAL *logits, const int32_t *target, int64_t N,
                      int64_t V, int32_t ignore_index) {
    for (int64_t n = 0; n < N; n++) {
        const REAL *xr = logits + n * V;
        double mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < V; c++) mx = xr[c] > mx ? xr[c] : mx;
        for (int64_t c = 0; c < V; c++) sum += exp((double)xr[c] - mx);
        double l = mx + log(sum);
        if (lse) lse[n] = (REAL)l;
        loss[n] = target[n] == ignore_index ? (REAL)0 : (REAL)(l - (double)xr[target[n]]);
    }
}

void REF_FN(xent_bwd)(REAL *dlogits, const REAL *dloss, const REAL *logits, const REAL *lse,
                      const int32_t *target, int64_t N, int64_t V, int32_t ignore_index) {
    if (!dlogits) return;
    int overwrite = dlogits == logits; /* the documented in-place path */
    for (int64_t n = 0; n < N; n++) {
        REAL *dr = dlogits + n * V;
        const REAL *xr = logits + n * V;
        if (target[n] == ignore_index) { /* no gradient: zero row in place, else untouched */
            if (overwrite) memset(dr, 0, (size_t)V * sizeof(REAL));
            continue;
        }
        double d = dloss[n], l = lse[n];
        for (int64_t c = 0; c < V; c++) {
            double g = d * (exp((double)xr[c] - l) - (c == target[n] ? 1.0 : 0.0));
            dr[c] = overwrite ? (REAL)g : dr[c] + (REAL)g;
        }
    }
}

/* ---- knowledge distillation: soft (KL at temperature T) + hard (cross-entropy) loss ----
 * Written from the definition, several passes per row in double: the oracle for the fused
 * one-pass CPU kernel. */

static double REF_FN(row_lse)(const REAL *x, int64_t V, double scale) {
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < V; c++) mx = scale * (double)x[c] > mx ? scale * (double)x[c] : mx;
    for (int64_t c = 0; c < V; c++) sum += exp(scale * (double)x[c] - mx);
    return mx + log(sum);
}

void REF_FN(distill_fwd)(REAL *loss, REAL *stats, const REAL *s, const REAL *t, const int32_t *target,
                         int64_t N, int64_t V, float temp, float alpha, int32_t ignore_index) {
    double T = temp, a = alpha;
    for (int64_t n = 0; n < N; n++) {
        const REAL *sr = s + n * V, *tr = t + n * V;
        if (target[n] == ignore_index) {
            loss[n] = 0;
            continue;
        }
        double ls_T = REF_FN(row_lse)(sr, V, 1.0 / T), lt_T = REF_FN(row_lse)(tr, V, 1.0 / T);
        double ls = REF_FN(row_lse)(sr, V, 1.0);
        double kl = 0; /* sum_c p_t (log p_t - log p_s) */
        for (int64_t c = 0; c < V; c++) {
            double log_pt = (double)tr[c] / T - lt_T, log_ps = (double)sr[c] / T - ls_T;
            kl += exp(log_pt) * (log_pt - log_ps);
        }
        double ce = ls - (double)sr[target[n]];
        loss[n] = (REAL)(a * T * T * kl + (1 - a) * ce);
        stats[3 * n] = (REAL)ls_T, stats[3 * n + 1] = (REAL)lt_T, stats[3 * n + 2] = (REAL)ls;
    }
}

void REF_FN(distill_bwd)(REAL *ds, const REAL *dloss, const REAL *s, const REAL *t, const REAL *stats,
                         const int32_t *target, int64_t N, int64_t V, float temp, float alpha,
                         int32_t ignore_index) {
    if (!ds) return;
    double T = temp, a = alpha;
    for (int64_t n = 0; n < N; n++) {
        if (target[n] == ignore_index) continue;
        const REAL *sr = s + n * V, *tr = t + n * V;
        double d = dloss[n], ls_T = stats[3 * n], lt_T = stats[3 * n + 1], ls = stats[3 * n + 2];
        for (int64_t c = 0; c < V; c++) {
            double ps_T = exp((double)sr[c] / T - ls_T), pt_T = exp((double)tr[c] / T - lt_T);
            double ps = exp((double)sr[c] - ls) - (c == target[n] ? 1.0 : 0.0);
            ds[n * V + c] += (REAL)(d * (a * T * (ps_T - pt_T) + (1 - a) * ps));
        }
    }
}

/* ---- pointwise ---- */

#define REF_GELU_K 0.7978845608028654 /* sqrt(2 / pi) */
#define REF_GELU_A 0.044715

void REF_FN(gelu_fwd)(REAL *y, const REAL *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], u = REF_GELU_K * (v + REF_GELU_A * v * v * v);
        y[i] = (REAL)(0.5 * v * (1.0 + tanh(u)));
    }
}

void REF_FN(gelu_bwd)(REAL *dx, const REAL *dy, const REAL *x, int64_t n) {
    if (!dx) return;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], u = REF_GELU_K * (v + REF_GELU_A * v * v * v), th = tanh(u);
        double du = REF_GELU_K * (1.0 + 3.0 * REF_GELU_A * v * v);
        double d = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * du;
        dx[i] += (REAL)((double)dy[i] * d);
    }
}

#define REF_SQRT1_2 0.7071067811865476      /* 1 / sqrt(2) */
#define REF_INV_SQRT_2PI 0.3989422804014327 /* 1 / sqrt(2 pi): the normal density at 0 */

void REF_FN(gelu_erf_fwd)(REAL *y, const REAL *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (REAL)(0.5 * v * (1.0 + erf(v * REF_SQRT1_2)));
    }
}

void REF_FN(gelu_erf_bwd)(REAL *dx, const REAL *dy, const REAL *x, int64_t n) {
    if (!dx) return;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], cdf = 0.5 * (1.0 + erf(v * REF_SQRT1_2)), pdf = REF_INV_SQRT_2PI * exp(-0.5 * v * v);
        dx[i] += (REAL)((double)dy[i] * (cdf + v * pdf));
    }
}

static double REF_FN(sigmoid)(double v) { return 1.0 / (1.0 + exp(-v)); }

void REF_FN(silu_fwd)(REAL *y, const REAL *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (REAL)((double)x[i] * REF_FN(sigmoid)(x[i]));
}

void REF_FN(silu_bwd)(REAL *dx, const REAL *dy, const REAL *x, int64_t n) {
    if (!dx) return;
    for (int64_t i = 0; i < n; i++) {
        double s = REF_FN(sigmoid)(x[i]);
        dx[i] += (REAL)((double)dy[i] * s * (1.0 + (double)x[i] * (1.0 - s)));
    }
}

/* CLIP's quick_gelu: x sigmoid(1.702 x); d/dx = s (1 + 1.702 x (1 - s)). */
#define REF_QUICK_GELU_A 1.702

void REF_FN(quick_gelu_fwd)(REAL *y, const REAL *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (REAL)((double)x[i] * REF_FN(sigmoid)(REF_QUICK_GELU_A * (double)x[i]));
}

void REF_FN(quick_gelu_bwd)(REAL *dx, const REAL *dy, const REAL *x, int64_t n) {
    if (!dx) return;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i], s = REF_FN(sigmoid)(REF_QUICK_GELU_A * v);
        dx[i] += (REAL)((double)dy[i] * s * (1.0 + REF_QUICK_GELU_A * v * (1.0 - s)));
    }
}

void REF_FN(swiglu_fwd)(REAL *y, const REAL *gate, const REAL *up, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        y[i] = (REAL)((double)gate[i] * REF_FN(sigmoid)(gate[i]) * (double)up[i]);
}

void REF_FN(swiglu_bwd)(REAL *dgate, REAL *dup, const REAL *dy, const REAL *gate, const REAL *up,
                        int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double g = gate[i], s = REF_FN(sigmoid)(g);
        if (dgate) dgate[i] += (REAL)((double)dy[i] * (double)up[i] * s * (1.0 + g * (1.0 - s)));
        if (dup) dup[i] += (REAL)((double)dy[i] * g * s);
    }
}

void REF_FN(geglu_fwd)(REAL *y, const REAL *gate, const REAL *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = gate[i], u = REF_GELU_K * (v + REF_GELU_A * v * v * v);
        y[i] = (REAL)(0.5 * v * (1.0 + tanh(u)) * (double)up[i]);
    }
}

void REF_FN(geglu_bwd)(REAL *dgate, REAL *dup, const REAL *dy, const REAL *gate, const REAL *up, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        double v = gate[i], u = REF_GELU_K * (v + REF_GELU_A * v * v * v), th = tanh(u);
        double du = REF_GELU_K * (1.0 + 3.0 * REF_GELU_A * v * v);
        double g = 0.5 * v * (1.0 + th), dg = 0.5 * (1.0 + th) + 0.5 * v * (1.0 - th * th) * du;
        if (dgate) dgate[i] += (REAL)((double)dy[i] * (double)up[i] * dg);
        if (dup) dup[i] += (REAL)((double)dy[i] * g);
    }
}

void REF_FN(softcap_fwd)(REAL *y, const REAL *x, float cap, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (REAL)((double)cap * tanh((double)x[i] / (double)cap));
}

void REF_FN(softcap_bwd)(REAL *dx, const REAL *dy, const REAL *x, float cap, int64_t n) {
    if (!dx) return;
    for (int64_t i = 0; i < n; i++) {
        double th = tanh((double)x[i] / (double)cap);
        dx[i] += (REAL)((double)dy[i] * (1.0 - th * th));
    }
}

void REF_FN(add_fwd)(REAL *y, const REAL *a, const REAL *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void REF_FN(add_inplace)(REAL *y, const REAL *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
}

void REF_FN(scale_fwd)(REAL *y, const REAL *x, float alpha, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = (REAL)alpha * x[i];
}

void REF_FN(axpy)(REAL *y, float alpha, const REAL *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += (REAL)alpha * x[i];
}

/* Whether dropout keeps element i: the 24-bit uniform at (seed, offset + i) is >= p. */
static int REF_FN(dropout_keep)(float p, uint64_t seed, uint64_t offset, int64_t i) {
    float u = (float)(ld_rng_at(seed, offset + (uint64_t)i) >> 40) * (1.0f / 16777216.0f);
    return u >= p;
}

void REF_FN(dropout_fwd)(REAL *y, const REAL *x, float p, uint64_t seed, uint64_t offset, int64_t n) {
    REAL scale = (REAL)(1.0 / (1.0 - (double)p));
    for (int64_t i = 0; i < n; i++)
        y[i] = REF_FN(dropout_keep)(p, seed, offset, i) ? x[i] * scale : (REAL)0;
}

void REF_FN(dropout_bwd)(REAL *dx, const REAL *dy, float p, uint64_t seed, uint64_t offset, int64_t n) {
    if (!dx) return;
    REAL scale = (REAL)(1.0 / (1.0 - (double)p));
    for (int64_t i = 0; i < n; i++)
        if (REF_FN(dropout_keep)(p, seed, offset, i)) dx[i] += dy[i] * scale;
}

/* ---- optimiser ---- */

double REF_FN(sumsq)(const REAL *x, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)x[i];
    return s;
}

void REF_FN(adamw)(REAL *param, const REAL *grad, REAL *m, REAL *v, uint16_t *param_bf16, int64_t n,
                   const ld_adamw_params *p) {
    double b1 = p->beta1, b2 = p->beta2, t = (double)p->step;
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    for (int64_t i = 0; i < n; i++) {
        double g = (double)grad[i] * (double)p->grad_scale;
        double mi = b1 * (double)m[i] + (1.0 - b1) * g;
        double vi = b2 * (double)v[i] + (1.0 - b2) * g * g;
        m[i] = (REAL)mi;
        v[i] = (REAL)vi;
        double mhat = mi / bc1, vhat = vi / bc2, w = param[i];
        w -= (double)p->lr * (mhat / (sqrt(vhat) + (double)p->eps) + (double)p->weight_decay * w);
        param[i] = (REAL)w;
        if (param_bf16) param_bf16[i] = ld_fp32_to_bf16((float)param[i]);
    }
}

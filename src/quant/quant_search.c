/* quant/quant_search.c — the scale searches shared by the block quantizers: for a small
 * group of values (a block or sub-block) find the scale (and min) and the integer levels
 * that minimise the (importance-)weighted squared error.
 *
 * Both searches try a fan of candidate inverse scales around the naive one (max maps to
 * the end of the range), round, solve the weighted least-squares problem for the scale
 * (and offset) given those levels, keep the best, then alternate "round with the fitted
 * scale" / "refit" until the error stops falling. Deterministic, pure functions. */
#include <math.h>

#include "quant/quant_blocks.h"

static const float *usable_weights(int n, const float *w) {
    if (!w) return NULL;
    double sw = 0;
    for (int i = 0; i < n; i++) {
        if (!(w[i] >= 0) || !isfinite(w[i])) return NULL; /* negative/NaN weights: ignore them */
        sw += w[i];
    }
    return sw > 0 ? w : NULL;
}

static inline int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* sum w x l and sum w l^2 for levels q = L - nmax. */
static void sym_sums(int n, int nmax, const float *x, const float *w, const uint8_t *L, double *sxl,
                     double *sll) {
    double a = 0, b = 0;
    for (int i = 0; i < n; i++) {
        double wi = w ? w[i] : 1.0, q = (double)L[i] - nmax;
        a += wi * x[i] * q;
        b += wi * q * q;
    }
    *sxl = a;
    *sll = b;
}

float ld_quant_search_sym(int n, int nmax, const float *x, const float *w, uint8_t *L) {
    w = usable_weights(n, w);
    float amax = 0, vmax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            vmax = x[i];
        }
    }
    if (!(amax > 1e-30f)) {
        for (int i = 0; i < n; i++) L[i] = (uint8_t)nmax;
        return 0.0f;
    }
    uint8_t Lt[256];
    double best_score = -1, best_scale = 0;
    for (int is = -9; is <= 9; is++) {
        float iscale = -((float)nmax + 0.1f * (float)is) / vmax;
        for (int i = 0; i < n; i++) Lt[i] = (uint8_t)(clampi(ld_quant_nearest(iscale * x[i]), -nmax, nmax - 1) + nmax);
        double sxl, sll;
        sym_sums(n, nmax, x, w, Lt, &sxl, &sll);
        if (sll <= 0) continue;
        double score = sxl * sxl / sll; /* error = sum w x^2 - score */
        if (score > best_score) {
            best_score = score;
            best_scale = sxl / sll;
            for (int i = 0; i < n; i++) L[i] = Lt[i];
        }
    }
    if (best_score < 0) { /* every candidate had zero weighted levels: fall back to max */
        float s = vmax / (float)-nmax;
        for (int i = 0; i < n; i++) L[i] = (uint8_t)(clampi(ld_quant_nearest(x[i] / s), -nmax, nmax - 1) + nmax);
        return s;
    }
    for (int iter = 0; iter < 4 && best_scale != 0; iter++) {
        float is = (float)(1.0 / best_scale);
        for (int i = 0; i < n; i++) Lt[i] = (uint8_t)(clampi(ld_quant_nearest(is * x[i]), -nmax, nmax - 1) + nmax);
        double sxl, sll;
        sym_sums(n, nmax, x, w, Lt, &sxl, &sll);
        if (sll <= 0 || sxl * sxl / sll <= best_score) break;
        best_score = sxl * sxl / sll;
        best_scale = sxl / sll;
        for (int i = 0; i < n; i++) L[i] = Lt[i];
    }
    return (float)best_scale;
}

/* Weighted least squares x ~ a*L + b with b <= 0; returns the weighted squared error, or
 * a negative value when the levels do not determine a positive slope. */
static double asym_fit(int n, const float *x, const float *w, double sx2, const uint8_t *L, double *a, double *b) {
    double sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0;
    for (int i = 0; i < n; i++) {
        const double wi = w ? w[i] : 1.0, l = L[i];
        sw += wi;
        sl += wi * l;
        sl2 += wi * l * l;
        sx += wi * x[i];
        slx += wi * l * x[i];
    }
    double D = sw * sl2 - sl * sl, A, B;
    if (D > 0) {
        A = (sw * slx - sx * sl) / D;
        B = (sl2 * sx - sl * slx) / D;
        if (B > 0) {
            B = 0;
            A = slx / sl2;
        }
    } else if (sl2 > 0) {
        B = 0;
        A = slx / sl2;
    } else {
        return -1;
    }
    if (!(A > 0)) return -1;
    /* sum w (A l + B - x)^2 expanded; sx2 = sum w x^2 completes it */
    double err = A * A * sl2 + 2 * A * B * sl + B * B * sw - 2 * A * slx - 2 * B * sx + sx2;
    if (err < 0) err = 0;
    *a = A;
    *b = B;
    return err;
}

float ld_quant_search_asym(int n, int nmax, const float *x, const float *w, uint8_t *L, float *m) {
    w = usable_weights(n, w);
    float mn = x[0], mx = x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
    }
    if (mn > 0) mn = 0;
    if (!(mx > mn)) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *m = -mn;
        return 0.0f;
    }
    double sx2 = 0;
    for (int i = 0; i < n; i++) sx2 += (w ? w[i] : 1.0) * (double)x[i] * x[i];
    uint8_t Lt[256];
    double best_err = -1, best_a = (mx - mn) / nmax, best_b = mn;
    for (int is = 0; is <= 20; is++) {
        float iscale = ((float)nmax - 1.0f + 0.1f * (float)is) / (mx - mn);
        for (int i = 0; i < n; i++) Lt[i] = (uint8_t)clampi(ld_quant_nearest(iscale * (x[i] - mn)), 0, nmax);
        double a, b, err = asym_fit(n, x, w, sx2, Lt, &a, &b);
        if (err < 0) continue;
        if (best_err < 0 || err < best_err) {
            best_err = err;
            best_a = a;
            best_b = b;
            for (int i = 0; i < n; i++) L[i] = Lt[i];
        }
    }
    if (best_err < 0) { /* degenerate weights: plain min/max levels */
        for (int i = 0; i < n; i++) L[i] = (uint8_t)clampi(ld_quant_nearest((x[i] - mn) / (float)best_a), 0, nmax);
        *m = -mn;
        return (float)best_a;
    }
    for (int iter = 0; iter < 4; iter++) {
        float ia = (float)(1.0 / best_a), b = (float)best_b;
        for (int i = 0; i < n; i++) Lt[i] = (uint8_t)clampi(ld_quant_nearest(ia * (x[i] - b)), 0, nmax);
        double a, bb, err = asym_fit(n, x, w, sx2, Lt, &a, &bb);
        if (err < 0 || err >= best_err) break;
        best_err = err;
        best_a = a;
        best_b = bb;
        for (int i = 0; i < n; i++) L[i] = Lt[i];
    }
    *m = (float)-best_b;
    return (float)best_a;
}

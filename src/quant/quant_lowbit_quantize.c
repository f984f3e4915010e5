/* quant/quant_lowbit_quantize.c — quantizers for Q2_K, Q3_K, IQ4_NL and IQ4_XS (liandan's
 * own; the decoding they target is GGML's, quant_k23.c / quant_iq4.c).
 *
 * Each minimises the importance-weighted squared error sum w_e (x_e - y_e)^2 in two stages:
 * per group (16 or 32 weights) a scale (and min) and levels, then the group scales are
 * themselves quantized against one fp16 super-block scale, and the levels are re-rounded
 * with the scales as decoded. The per-element weight w_e is
 *   with an importance matrix:  imatrix_e * sqrt(sigma2 + x_e^2)   (sigma2: mean x^2 of the
 *                               super-block, so small weights still count)
 *   without one:                x_e^2 + sigma2 / 8 (large weights matter most in a product;
 *                               the floor keeps small ones from being ignored)
 * The scale of group scales is chosen by the same weighted search (weights: the group's
 * total element weight), so groups that matter keep their scale best. */
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

static inline int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Element weights of one super-block (n elements): quant_lowbit.h. */
void ld_quant_element_weights(const float *x, const float *imat, int n, float sigma_scale, float *w) {
    double s2 = 0;
    for (int i = 0; i < n; i++) s2 += (double)x[i] * x[i];
    const float sigma2 = (float)(sigma_scale * s2 / n);
    for (int i = 0; i < n; i++)
        w[i] = imat ? imat[i] * sqrtf(sigma2 + x[i] * x[i]) : x[i] * x[i] + sigma2 / 8;
}

/* Non-negative values v[n] ~ d * l, l in 0..nmax, minimising sum sw (v - d l)^2: a fan of
 * candidate d around max/nmax, each refit by least squares. Returns d (0 when v is all 0). */
static float search_pos_scale(int n, int nmax, const float *v, const float *sw, uint8_t *l) {
    float vmax = 0;
    for (int i = 0; i < n; i++) vmax = fmaxf(vmax, v[i]);
    memset(l, 0, (size_t)n);
    if (!(vmax > 0)) return 0.0f;
    double best_score = -1, best_d = vmax / nmax;
    for (int is = -6; is <= 6; is++) {
        const float id = ((float)nmax + 0.1f * (float)is) / vmax;
        double sxl = 0, sll = 0;
        for (int i = 0; i < n; i++) {
            const int q = clampi(ld_quant_nearest(id * v[i]), 0, nmax);
            sxl += (double)sw[i] * v[i] * q;
            sll += (double)sw[i] * q * q;
        }
        if (sll > 0 && sxl * sxl / sll > best_score) best_score = sxl * sxl / sll, best_d = sxl / sll;
    }
    const float id = best_d > 0 ? (float)(1.0 / best_d) : 0.0f;
    for (int i = 0; i < n; i++) l[i] = (uint8_t)clampi(ld_quant_nearest(id * v[i]), 0, nmax);
    return (float)best_d;
}

/* ---- Q2_K ------------------------------------------------------------------------------- */
static void pack_2bit(const uint8_t *L, uint8_t *qs) { /* element e -> qs[32(e/128) + e%32] bits 2((e%128)/32) */
    memset(qs, 0, 64);
    for (int e = 0; e < LD_QK_K; e++) qs[32 * (e / 128) + e % 32] |= (uint8_t)(L[e] << (2 * ((e % 128) / 32)));
}

void ld_quantize_row_q2_K_ref(const float *x, void *y, int64_t n, const float *imat) {
    ld_block_q2_K *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++, x += LD_QK_K) {
        float w[LD_QK_K], sc[16], mn[16], sw[16];
        uint8_t L[LD_QK_K], ls[16], lm[16];
        ld_quant_element_weights(x, imat ? imat + i * LD_QK_K : NULL, LD_QK_K, 1.0f, w);
        for (int g = 0; g < 16; g++) {
            sc[g] = ld_quant_search_asym(16, 3, x + 16 * g, w + 16 * g, L + 16 * g, &mn[g]);
            sw[g] = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) sw[g] += w[e];
        }
        b->d = ld_fp32_to_fp16(search_pos_scale(16, 15, sc, sw, ls));
        b->dmin = ld_fp32_to_fp16(search_pos_scale(16, 15, mn, sw, lm));
        const float d = ld_fp16_to_fp32(b->d), dmin = ld_fp16_to_fp32(b->dmin);
        for (int g = 0; g < 16; g++) {
            b->scales[g] = (uint8_t)(ls[g] | lm[g] << 4);
            const float dl = d * (float)ls[g], ml = dmin * (float)lm[g];
            for (int e = 16 * g; e < 16 * g + 16; e++)
                L[e] = dl > 0 ? (uint8_t)clampi(ld_quant_nearest((x[e] + ml) / dl), 0, 3) : 0;
        }
        pack_2bit(L, b->qs);
    }
}

/* ---- Q3_K ------------------------------------------------------------------------------- */
void ld_quantize_row_q3_K_ref(const float *x, void *y, int64_t n, const float *imat) {
    ld_block_q3_K *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++, x += LD_QK_K) {
        float w[LD_QK_K], sc[16], sw[16];
        uint8_t L[LD_QK_K], ls[16];
        ld_quant_element_weights(x, imat ? imat + i * LD_QK_K : NULL, LD_QK_K, 2.0f, w);
        for (int g = 0; g < 16; g++) {
            sc[g] = ld_quant_search_sym(16, 4, x + 16 * g, w + 16 * g, L + 16 * g); /* levels 0..7 = q + 4 */
            sw[g] = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) sw[g] += w[e];
        }
        /* signed 6-bit scales sc - 32 in -32 .. 31: ls = level + 32 - 32 */
        const float d = ld_quant_search_sym(16, 32, sc, sw, ls);
        b->d = ld_fp32_to_fp16(d);
        const float dd = ld_fp16_to_fp32(b->d);
        memset(b->scales, 0, 12);
        memset(b->hmask, 0, 32);
        for (int g = 0; g < 16; g++) {
            const int l = ls[g]; /* 0..63, the stored 6-bit value */
            if (g < 8) b->scales[g] |= (uint8_t)(l & 0xF);
            else b->scales[g - 8] |= (uint8_t)((l & 0xF) << 4);
            b->scales[8 + g % 4] |= (uint8_t)((l >> 4) << (2 * (g / 4)));
            const float dl = dd * (float)(l - 32);
            for (int e = 16 * g; e < 16 * g + 16; e++)
                L[e] = dl != 0 ? (uint8_t)(clampi(ld_quant_nearest(x[e] / dl), -4, 3) + 4) : 4;
        }
        for (int e = 0; e < LD_QK_K; e++) {
            if (L[e] > 3) b->hmask[e % 32] |= (uint8_t)(1 << (4 * (e / 128) + (e % 128) / 32));
            L[e] &= 3;
        }
        pack_2bit(L, b->qs);
    }
}

/* ---- IQ4_NL, IQ4_XS ------------------------------------------------------------------------ */
/* below[i] = the last level index l with level l <= i - 128 (the levels are integers, so
 * that is also the last level <= any v in [i - 128, i - 127)). Filled once; racing first
 * callers write the same bytes. */
static uint8_t below[256];
static int below_done;
static void fill_below(void) {
    for (int i = 0; i < 256; i++) {
        int l = 0;
        while (l < 15 && ld_kvalues_iq4nl[l + 1] <= i - 128) l++;
        below[i] = (uint8_t)l;
    }
    __atomic_store_n(&below_done, 1, __ATOMIC_RELEASE);
}

/* Index of the level nearest to v (ties to the lower level). */
static inline int nearest_level(float v) {
    const int8_t *k = ld_kvalues_iq4nl;
    if (!(v > k[0])) return 0;
    if (v >= k[15]) return 15;
    const int lo = below[(int)floorf(v) + 128];
    return v - k[lo] <= k[lo + 1] - v ? lo : lo + 1;
}

/* The scale of 32 weights against the 16 levels: candidates map the largest |x| to either
 * end of the (asymmetric) level set, d = xmax / (k + t) for k = -127 and 113, t in -7..7;
 * levels by nearest value, each candidate refit by weighted least squares. Returns d. */
static float search_iq4(const float *x, const float *w, uint8_t *L) {
    float amax = 0, vmax = 0;
    for (int j = 0; j < 32; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), vmax = x[j];
    if (!(amax > 1e-30f)) {
        memset(L, 8, 32); /* level 1, the one nearest 0; scale 0 makes it 0 */
        return 0.0f;
    }
    double best_score = -1, best_d = 0;
    for (int c = 0; c < 30; c++) {
        const float id = ((float)(c < 15 ? ld_kvalues_iq4nl[0] : ld_kvalues_iq4nl[15]) + (float)(c % 15 - 7)) / vmax;
        double sqx = 0, sqq = 0;
        for (int j = 0; j < 32; j++) {
            const float q = ld_kvalues_iq4nl[nearest_level(id * x[j])];
            sqx += (double)w[j] * q * x[j];
            sqq += (double)w[j] * q * q;
        }
        if (sqq > 0 && sqx * sqx / sqq > best_score) best_score = sqx * sqx / sqq, best_d = sqx / sqq;
    }
    const float id = best_d != 0 ? (float)(1.0 / best_d) : 0.0f;
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)nearest_level(id * x[j]);
    return (float)best_d;
}

static void pack_nibbles(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
}

/* Levels of 32 weights for the decoded scale dl. */
static void round_iq4(const float *x, float dl, uint8_t *L) {
    const float id = dl != 0 ? 1.0f / dl : 0.0f;
    for (int j = 0; j < 32; j++) L[j] = (uint8_t)(dl != 0 ? nearest_level(id * x[j]) : 8);
}

void ld_quantize_row_iq4_nl_ref(const float *x, void *y, int64_t n, const float *imat) {
    if (!__atomic_load_n(&below_done, __ATOMIC_ACQUIRE)) fill_below();
    ld_block_iq4_nl *b = y;
    for (int64_t i = 0; i < n / 32; i++, b++, x += 32) {
        float w[32];
        uint8_t L[32];
        ld_quant_element_weights(x, imat ? imat + i * 32 : NULL, 32, 2.0f, w);
        b->d = ld_fp32_to_fp16(search_iq4(x, w, L));
        round_iq4(x, ld_fp16_to_fp32(b->d), L);
        pack_nibbles(L, b->qs);
    }
}

void ld_quantize_row_iq4_xs_ref(const float *x, void *y, int64_t n, const float *imat) {
    if (!__atomic_load_n(&below_done, __ATOMIC_ACQUIRE)) fill_below();
    ld_block_iq4_xs *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++, x += LD_QK_K) {
        float w[LD_QK_K], sc[8], sw[8];
        uint8_t L[LD_QK_K], ls[8];
        ld_quant_element_weights(x, imat ? imat + i * LD_QK_K : NULL, LD_QK_K, 2.0f, w);
        for (int ib = 0; ib < 8; ib++) {
            sc[ib] = search_iq4(x + 32 * ib, w + 32 * ib, L + 32 * ib);
            sw[ib] = 0;
            for (int j = 32 * ib; j < 32 * ib + 32; j++) sw[ib] += w[j];
        }
        /* signed 6-bit block scales ls - 32 in -32 .. 31 */
        b->d = ld_fp32_to_fp16(ld_quant_search_sym(8, 32, sc, sw, ls));
        const float d = ld_fp16_to_fp32(b->d);
        b->scales_h = 0;
        memset(b->scales_l, 0, 4);
        for (int ib = 0; ib < 8; ib++) {
            b->scales_l[ib / 2] |= (uint8_t)((ls[ib] & 0xF) << (4 * (ib % 2)));
            b->scales_h |= (uint16_t)((ls[ib] >> 4) << (2 * ib));
            round_iq4(x + 32 * ib, d * (float)(ls[ib] - 32), L + 32 * ib);
            pack_nibbles(L + 32 * ib, b->qs + 16 * ib);
        }
    }
}

/* quant/quant_tq.c — the ternary formats TQ1_0 and TQ2_0 (weights d * {-1, 0, +1}):
 * reference dequantization (bit-exact GGML semantics), reference dots with Q8_K
 * activations, and the levels form (L = t in 0..2, zero point 1).
 *
 * Element order (docs/formats/quant-blocks.md):
 *   TQ2_0: element 128*c + 32*l + m is bits 2l..2l+1 of qs[32c + m] (c < 2, l < 4, m < 32).
 *   TQ1_0: each byte holds 5 (qs) or 4 (qh) base-3 digits as a fixed-point fraction: digit k
 *   of byte b is ((uint8_t)(b * 3^k) * 3) >> 8. Elements 32k + m (k < 5, m < 32) are digit k
 *   of qs[m]; elements 160 + 16k + m (m < 16) digit k of qs[32 + m]; elements 240 + 4k + j
 *   (k < 4, j < 4) digit k of qh[j]. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant_blocks.h"

static inline int trit(uint8_t b, int k) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    return (int)(((unsigned)(uint8_t)(b * pow3[k]) * 3) >> 8);
}

/* The 256 ternary digits (0..2) of a TQ1_0 block, in element order. */
static void tq1_trits(const ld_block_tq1_0 *b, uint8_t *t) {
    for (int k = 0; k < 5; k++)
        for (int m = 0; m < 32; m++) t[32 * k + m] = (uint8_t)trit(b->qs[m], k);
    for (int k = 0; k < 5; k++)
        for (int m = 0; m < 16; m++) t[160 + 16 * k + m] = (uint8_t)trit(b->qs[32 + m], k);
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) t[240 + 4 * k + j] = (uint8_t)trit(b->qh[j], k);
}

static void tq2_trits(const ld_block_tq2_0 *b, uint8_t *t) {
    for (int c = 0; c < 2; c++)
        for (int l = 0; l < 4; l++)
            for (int m = 0; m < 32; m++) t[128 * c + 32 * l + m] = (b->qs[32 * c + m] >> (2 * l)) & 3;
}

/* One function per job over both formats: trits of block i, and its fp16 scale. */
typedef struct tq_format {
    size_t block_bytes;
    void (*trits)(const void *blk, uint8_t *t);
    uint16_t (*scale)(const void *blk);
} tq_format;
static void trits1(const void *b, uint8_t *t) {
    tq1_trits(b, t);
}
static void trits2(const void *b, uint8_t *t) {
    tq2_trits(b, t);
}
static uint16_t scale1(const void *b) {
    return ((const ld_block_tq1_0 *)b)->d;
}
static uint16_t scale2(const void *b) {
    return ((const ld_block_tq2_0 *)b)->d;
}
static const tq_format TQ1 = {sizeof(ld_block_tq1_0), trits1, scale1}, TQ2 = {sizeof(ld_block_tq2_0), trits2, scale2};

static void dequantize(const tq_format *f, const void *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const uint8_t *b = (const uint8_t *)x + i * f->block_bytes;
        uint8_t t[LD_QK_K];
        f->trits(b, t);
        const float d = ld_fp16_to_fp32(f->scale(b));
        for (int e = 0; e < LD_QK_K; e++) *y++ = (float)(t[e] - 1) * d;
    }
}

static float dot(const tq_format *f, int64_t n, const void *w, const void *a_) {
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, a++) {
        const uint8_t *b = (const uint8_t *)w + i * f->block_bytes;
        uint8_t t[LD_QK_K];
        f->trits(b, t);
        int32_t isum = 0;
        for (int e = 0; e < LD_QK_K; e++) isum += (t[e] - 1) * a->qs[e];
        sum = fmaf(ld_fp16_to_fp32(f->scale(b)) * a->d, (float)isum, sum);
    }
    return sum;
}

static void levels(const tq_format *f, const void *w, int64_t n, uint8_t *L, float *s) {
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const uint8_t *b = (const uint8_t *)w + i * f->block_bytes;
        f->trits(b, L + i * LD_QK_K);
        const float d = ld_fp16_to_fp32(f->scale(b));
        for (int g = 0; g < LD_QK_K / 32; g++) s[i * (LD_QK_K / 32) + g] = d;
    }
}

void ld_dequantize_row_tq1_0(const void *x, float *y, int64_t n) {
    dequantize(&TQ1, x, y, n);
}
void ld_dequantize_row_tq2_0(const void *x, float *y, int64_t n) {
    dequantize(&TQ2, x, y, n);
}
float ld_vec_dot_tq1_0_q8_K_ref(int64_t n, const void *w, const void *a) {
    return dot(&TQ1, n, w, a);
}
float ld_vec_dot_tq2_0_q8_K_ref(int64_t n, const void *w, const void *a) {
    return dot(&TQ2, n, w, a);
}
void ld_levels_row_tq1_0(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    levels(&TQ1, w, n, L, s);
}
void ld_levels_row_tq2_0(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    levels(&TQ2, w, n, L, s);
}

/* ---- quantizers ------------------------------------------------------------------------
 * Per super-block one scale d and trits t in {-1, 0, +1} minimising sum w (x - d t)^2 (w:
 * the importance weights, or 1). For a threshold on |x| the best trits are sign(x) above it
 * and 0 below, and the best d is sum w|x| / sum w over the elements above; the search tries
 * every threshold (the elements in descending |x|, so k largest are non-zero) and keeps the
 * k with the largest (sum w|x|)^2 / sum w (the error's decrease). The trits are then
 * re-rounded against the scale as stored (fp16). */
static int desc_abs(const void *a, const void *b) {
    const float x = fabsf(*(const float *)a), y = fabsf(*(const float *)b);
    return x < y ? 1 : x > y ? -1 : 0;
}

static float ternary_scale(const float *x, const float *imat) {
    struct {
        float v, w;
    } e[LD_QK_K];
    for (int j = 0; j < LD_QK_K; j++) e[j].v = x[j], e[j].w = imat ? imat[j] : 1.0f;
    qsort(e, LD_QK_K, sizeof e[0], desc_abs);
    double sx = 0, sw = 0, best = 0, d = 0;
    for (int k = 0; k < LD_QK_K && fabsf(e[k].v) > 0; k++) {
        sx += (double)e[k].w * fabsf(e[k].v);
        sw += e[k].w;
        if (sw > 0 && sx * sx / sw > best) best = sx * sx / sw, d = sx / sw;
    }
    return (float)d;
}

/* The trits (0..2 = -1..+1) of x for the stored scale d. */
static void ternary_round(const float *x, float d, uint8_t *t) {
    const float id = d > 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < LD_QK_K; j++) {
        const int q = (int)lrintf(x[j] * id);
        t[j] = (uint8_t)((q < -1 ? -1 : q > 1 ? 1 : q) + 1);
    }
}

/* n trits (first most significant) as the byte whose digit k the decoder reads as trit k:
 * the base-3 fraction v / 3^5, rounded up to 1/256 steps. */
static uint8_t trit_byte(const uint8_t *t, int n, int stride) {
    unsigned v = 0;
    for (int k = 0; k < 5; k++) v = 3 * v + (k < n ? t[k * stride] : 0);
    return (uint8_t)((v * 256 + 242) / 243);
}

void ld_quantize_row_tq1_0_ref(const float *x, void *y, int64_t n, const float *imat) {
    ld_block_tq1_0 *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++, x += LD_QK_K) {
        uint8_t t[LD_QK_K];
        b->d = ld_fp32_to_fp16(ternary_scale(x, imat ? imat + i * LD_QK_K : NULL));
        ternary_round(x, ld_fp16_to_fp32(b->d), t);
        for (int m = 0; m < 32; m++) b->qs[m] = trit_byte(t + m, 5, 32);
        for (int m = 0; m < 16; m++) b->qs[32 + m] = trit_byte(t + 160 + m, 5, 16);
        for (int j = 0; j < 4; j++) b->qh[j] = trit_byte(t + 240 + j, 4, 4);
    }
}

void ld_quantize_row_tq2_0_ref(const float *x, void *y, int64_t n, const float *imat) {
    ld_block_tq2_0 *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++, x += LD_QK_K) {
        uint8_t t[LD_QK_K];
        b->d = ld_fp32_to_fp16(ternary_scale(x, imat ? imat + i * LD_QK_K : NULL));
        ternary_round(x, ld_fp16_to_fp32(b->d), t);
        memset(b->qs, 0, sizeof b->qs);
        for (int e = 0; e < LD_QK_K; e++) b->qs[32 * (e / 128) + e % 32] |= (uint8_t)(t[e] << (2 * ((e % 128) / 32)));
    }
}

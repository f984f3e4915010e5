/* quant/quant_k23.c — the 2- and 3-bit K-quants Q2_K and Q3_K: reference dequantization
 * (bit-exact GGML semantics), reference dots with Q8_K activations, and the levels form for
 * the int8 GEMM. The quantizers are in quant_k23_quantize.c.
 *
 * Both formats cut a super-block of 256 weights into 16 groups of 16 (group g = elements
 * 16g .. 16g+15) and store 2-bit fields the same way: element e lives in byte
 * qs[32*(e/128) + e%32] at bit 2*((e%128)/32). Q3_K adds a third bit, hmask[e%32] bit
 * 4*(e/128) + (e%128)/32; a clear bit subtracts 4. See docs/formats/quant-blocks.md. */
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

static inline int q2_field(const uint8_t *qs, int e) {
    return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

/* The signed 3-bit value of element e of a Q3_K block: -4 .. 3. */
static inline int q3_value(const ld_block_q3_K *b, int e) {
    const int hbit = (b->hmask[e % 32] >> (4 * (e / 128) + (e % 128) / 32)) & 1;
    return q2_field(b->qs, e) - (hbit ? 0 : 4);
}

/* The 6-bit scale of group g (0..15) of a Q3_K block, minus 32. Low 4 bits: byte g (g < 8)
 * low nibble or byte g-8 high nibble; high 2 bits: byte 8 + g%4, bits 2*(g/4). */
int ld_q3_K_scale(const uint8_t *scales, int g) {
    const int lo = g < 8 ? scales[g] & 0xF : scales[g - 8] >> 4;
    const int hi = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* ---- dequantization ---------------------------------------------------------------------- */
void ld_dequantize_row_q2_K(const void *x, float *y, int64_t n) {
    const ld_block_q2_K *b = x;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++) {
        const float d = ld_fp16_to_fp32(b->d), min = ld_fp16_to_fp32(b->dmin);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)(b->scales[g] & 0xF), ml = min * (float)(b->scales[g] >> 4);
            for (int e = 16 * g; e < 16 * g + 16; e++) *y++ = dl * (float)q2_field(b->qs, e) - ml;
        }
    }
}

void ld_dequantize_row_q3_K(const void *x, float *y, int64_t n) {
    const ld_block_q3_K *b = x;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++) {
        const float d = ld_fp16_to_fp32(b->d);
        for (int g = 0; g < 16; g++) {
            const float dl = d * (float)ld_q3_K_scale(b->scales, g);
            for (int e = 16 * g; e < 16 * g + 16; e++) *y++ = dl * (float)q3_value(b, e);
        }
    }
}

/* ---- reference dots ---------------------------------------------------------------------- */
float ld_vec_dot_q2_K_q8_K_ref(int64_t n, const void *w_, const void *a_) {
    const ld_block_q2_K *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        int32_t isum = 0, msum = 0;
        for (int g = 0; g < 16; g++) {
            int32_t s = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) s += a->qs[e] * q2_field(w->qs, e);
            isum += (w->scales[g] & 0xF) * s;
            msum += (w->scales[g] >> 4) * a->bsums[g];
        }
        const float dall = ld_fp16_to_fp32(w->d) * a->d, dmin = ld_fp16_to_fp32(w->dmin) * a->d;
        sum = fmaf(dall, (float)isum, sum);
        sum = fmaf(-dmin, (float)msum, sum);
    }
    return sum;
}

float ld_vec_dot_q3_K_q8_K_ref(int64_t n, const void *w_, const void *a_) {
    const ld_block_q3_K *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) {
            int32_t s = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) s += a->qs[e] * q3_value(w, e);
            isum += ld_q3_K_scale(w->scales, g) * s;
        }
        sum = fmaf(ld_fp16_to_fp32(w->d) * a->d, (float)isum, sum);
    }
    return sum;
}

/* ---- levels form (groups of 16) ---------------------------------------------------------- */
/* Q2_K: L = q, s = d*sc, o = -(dmin*m). */
void ld_levels_row_q2_K(const void *w_, int64_t n, uint8_t *L, float *s, float *o) {
    const ld_block_q2_K *b = w_;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++) {
        const float d = ld_fp16_to_fp32(b->d), min = ld_fp16_to_fp32(b->dmin);
        for (int e = 0; e < LD_QK_K; e++) L[i * LD_QK_K + e] = (uint8_t)q2_field(b->qs, e);
        for (int g = 0; g < 16; g++) {
            s[i * 16 + g] = d * (float)(b->scales[g] & 0xF);
            o[i * 16 + g] = -(min * (float)(b->scales[g] >> 4));
        }
    }
}

/* Q3_K: L = value + 4 (0..7, zero point 4), s = d*(sc - 32). */
void ld_levels_row_q3_K(const void *w_, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const ld_block_q3_K *b = w_;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++) {
        const float d = ld_fp16_to_fp32(b->d);
        for (int e = 0; e < LD_QK_K; e++) L[i * LD_QK_K + e] = (uint8_t)(q3_value(b, e) + 4);
        for (int g = 0; g < 16; g++) s[i * 16 + g] = d * (float)ld_q3_K_scale(b->scales, g);
    }
}

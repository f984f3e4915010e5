/* quant/quant_iq4.c — the non-linear 4-bit formats IQ4_NL (blocks of 32, fp16 scale) and
 * IQ4_XS (super-blocks of 256 with a 6-bit scale per 32): reference dequantization
 * (bit-exact GGML semantics), reference dots, the levels form, and the quantizers.
 *
 * A 4-bit index selects one of 16 levels (ld_kvalues_iq4nl, -127 .. 113, denser near 0).
 * Within 32 weights, byte j of the 16 holds element j (low nibble) and element j + 16
 * (high nibble). IQ4_XS scale of 32-block b: low 4 bits = nibble b%2 of scales_l[b/2], high
 * 2 bits = bits 2b..2b+1 of scales_h; the block's scale is d * (ls - 32). */
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

static inline int iq4xs_scale(const ld_block_iq4_xs *b, int ib) {
    return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

/* The 32 signed levels of one 32-block of nibbles. */
static inline void iq4_values(const uint8_t *qs, int8_t *v) {
    for (int j = 0; j < 16; j++) {
        v[j] = ld_kvalues_iq4nl[qs[j] & 0xF];
        v[j + 16] = ld_kvalues_iq4nl[qs[j] >> 4];
    }
}

/* ---- dequantization ---------------------------------------------------------------------- */
void ld_dequantize_row_iq4_nl(const void *x, float *y, int64_t n) {
    const ld_block_iq4_nl *b = x;
    for (int64_t i = 0; i < n / 32; i++, b++) {
        const float d = ld_fp16_to_fp32(b->d);
        int8_t v[32];
        iq4_values(b->qs, v);
        for (int j = 0; j < 32; j++) *y++ = d * (float)v[j];
    }
}

void ld_dequantize_row_iq4_xs(const void *x, float *y, int64_t n) {
    const ld_block_iq4_xs *b = x;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++) {
        const float d = ld_fp16_to_fp32(b->d);
        for (int ib = 0; ib < 8; ib++) {
            const float dl = d * (float)iq4xs_scale(b, ib);
            int8_t v[32];
            iq4_values(b->qs + 16 * ib, v);
            for (int j = 0; j < 32; j++) *y++ = dl * (float)v[j];
        }
    }
}

/* ---- reference dots ---------------------------------------------------------------------- */
/* Blocks of 32 are added into four float sums in turn (block i into sum i % 4), which are
 * added at the end as (s0 + s1) + (s2 + s3): four independent chains of fmaf, not one. */
float ld_vec_dot_iq4_nl_q8_0_ref(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq4_nl *w = w_;
    const ld_block_q8_0 *a = a_;
    float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < n / 32; i++, w++, a++) {
        int8_t v[32];
        iq4_values(w->qs, v);
        int32_t isum = 0;
        for (int j = 0; j < 32; j++) isum += v[j] * a->qs[j];
        sum[i % 4] = fmaf(ld_fp16_to_fp32(w->d) * ld_fp16_to_fp32(a->d), (float)isum, sum[i % 4]);
    }
    return (sum[0] + sum[1]) + (sum[2] + sum[3]);
}

float ld_vec_dot_iq4_xs_q8_K_ref(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq4_xs *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        int32_t isum = 0;
        for (int ib = 0; ib < 8; ib++) {
            int8_t v[32];
            iq4_values(w->qs + 16 * ib, v);
            int32_t s = 0;
            for (int j = 0; j < 32; j++) s += v[j] * a->qs[32 * ib + j];
            isum += iq4xs_scale(w, ib) * s;
        }
        sum = fmaf(ld_fp16_to_fp32(w->d) * a->d, (float)isum, sum);
    }
    return sum;
}

/* ---- levels form: L = level + 128 (zero point 128), one scale per 32 ---------------------- */
void ld_levels_row_iq4_nl(const void *w_, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const ld_block_iq4_nl *b = w_;
    for (int64_t i = 0; i < n / 32; i++, b++) {
        int8_t v[32];
        iq4_values(b->qs, v);
        for (int j = 0; j < 32; j++) L[32 * i + j] = (uint8_t)(v[j] + 128);
        s[i] = ld_fp16_to_fp32(b->d);
    }
}

void ld_levels_row_iq4_xs(const void *w_, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const ld_block_iq4_xs *b = w_;
    for (int64_t i = 0; i < n / LD_QK_K; i++, b++) {
        const float d = ld_fp16_to_fp32(b->d);
        for (int ib = 0; ib < 8; ib++) {
            int8_t v[32];
            iq4_values(b->qs + 16 * ib, v);
            for (int j = 0; j < 32; j++) L[LD_QK_K * i + 32 * ib + j] = (uint8_t)(v[j] + 128);
            s[8 * i + ib] = d * (float)iq4xs_scale(b, ib);
        }
    }
}

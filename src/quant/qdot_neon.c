/* quant/qdot_neon.c — the quantized dots of the decode path at the NEON level (aarch64): F32
 * and F16 weights against f32 activations, Q8_0 and Q4_0 against Q8_0 activations, Q4_K and
 * Q6_K against Q8_K, and the two activation quantizers.
 *
 * Baseline ARMv8.0 Advanced SIMD (every AArch64 CPU): int8 products by vmull_s8 and pairwise
 * widening adds (no SDOT, which only ARMv8.2+ CPUs with the dotprod extension have). The
 * integer part of every block is exact and the blocks' floats are summed in the reference's
 * order with the reference's expressions, so on unit scales each quantized dot equals its
 * reference bit for bit; the activation quantizers are bit-identical to the reference's
 * (round to nearest even: vcvtnq). F32/F16 sum in 16 lanes: equal within rounding.
 * Checked by test_quant's optimized_dot_equals_reference under qemu (make test-arm). */
#include <arm_neon.h>
#include <math.h>

#include "quant/quant_blocks.h"

/* acc + the 16 products a[i] * b[i] (int8 x int8 -> int16, pairs added into int32 lanes). */
static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
    return vpadalq_s16(acc, vmull_high_s8(a, b));
}

/* sum of a[i] * b[i] over 32 int8 pairs */
static inline int32_t dot32(int8x16_t a0, int8x16_t a1, const int8_t *b) {
    return vaddvq_s32(dot16(dot16(vdupq_n_s32(0), a0, vld1q_s8(b)), a1, vld1q_s8(b + 16)));
}

/* ---- F32 / F16 weights ---------------------------------------------------------------------- */
static float dot_f32(int64_t n, const void *w, const void *a) {
    const float *x = w, *y = a;
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
        s1 = vfmaq_f32(s1, vld1q_f32(x + i + 4), vld1q_f32(y + i + 4));
        s2 = vfmaq_f32(s2, vld1q_f32(x + i + 8), vld1q_f32(y + i + 8));
        s3 = vfmaq_f32(s3, vld1q_f32(x + i + 12), vld1q_f32(y + i + 12));
    }
    for (; i + 4 <= n; i += 4) s0 = vfmaq_f32(s0, vld1q_f32(x + i), vld1q_f32(y + i));
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s = fmaf(x[i], y[i], s);
    return s;
}

/* fp16 -> fp32 of 8 weights (FCVTL: exact, every fp16 value including subnormals) */
static inline void f16x8(const uint16_t *h, float32x4_t *lo, float32x4_t *hi) {
    const float16x8_t v = vreinterpretq_f16_u16(vld1q_u16(h));
    *lo = vcvt_f32_f16(vget_low_f16(v));
    *hi = vcvt_high_f32_f16(v);
}

static float dot_f16(int64_t n, const void *w, const void *a) {
    const uint16_t *x = w;
    const float *y = a;
    float32x4_t s0 = vdupq_n_f32(0), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        float32x4_t w0, w1, w2, w3;
        f16x8(x + i, &w0, &w1);
        f16x8(x + i + 8, &w2, &w3);
        s0 = vfmaq_f32(s0, w0, vld1q_f32(y + i));
        s1 = vfmaq_f32(s1, w1, vld1q_f32(y + i + 4));
        s2 = vfmaq_f32(s2, w2, vld1q_f32(y + i + 8));
        s3 = vfmaq_f32(s3, w3, vld1q_f32(y + i + 12));
    }
    float s = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) s = fmaf(ld_fp16_to_fp32(x[i]), y[i], s);
    return s;
}

/* ---- Q8_0 / Q4_0 weights, Q8_0 activations -------------------------------------------------- */
static float dot_q8_0(int64_t n, const void *w, const void *a) {
    const ld_block_q8_0 *x = w, *q = a;
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK8_0; i++) {
        const int32_t sumi = dot32(vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16), q[i].qs);
        sum += (float)sumi * (ld_fp16_to_fp32(x[i].d) * ld_fp16_to_fp32(q[i].d));
    }
    return sum;
}

static float dot_q4_0(int64_t n, const void *w, const void *a) {
    const ld_block_q4_0 *x = w;
    const ld_block_q8_0 *q = a;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t eight = vdupq_n_s8(8);
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK4_0; i++) {
        const uint8x16_t v = vld1q_u8(x[i].qs);
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(v, m4)), eight); /* elements 0..15 */
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), eight); /* elements 16..31 */
        const int32_t sumi = dot32(lo, hi, q[i].qs);
        sum += (float)sumi * (ld_fp16_to_fp32(x[i].d) * ld_fp16_to_fp32(q[i].d));
    }
    return sum;
}

/* ---- Q4_K / Q6_K weights, Q8_K activations -------------------------------------------------- */
/* The 6-bit scale and min of sub-block j of a Q4_K block (the GGML packing; quant_k.c). */
static inline void scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Per super-block d_w*d_a*sum_j sc_j*sum(q*a) - dmin_w*d_a*sum_j m_j*bsum_j, as the reference. */
static float dot_q4_K(int64_t n, const void *w, const void *act) {
    const ld_block_q4_K *x = w;
    const ld_block_q8_K *a = act;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        int32_t isum = 0, summs = 0;
        for (int c = 0; c < 4; c++) { /* 32 bytes of qs: sub-blocks 2c (low nibbles) and 2c+1 (high) */
            const uint8x16_t b0 = vld1q_u8(x[i].qs + 32 * c), b1 = vld1q_u8(x[i].qs + 32 * c + 16);
            const int32_t slo = dot32(vreinterpretq_s8_u8(vandq_u8(b0, m4)), vreinterpretq_s8_u8(vandq_u8(b1, m4)),
                                      a[i].qs + 64 * c);
            const int32_t shi = dot32(vreinterpretq_s8_u8(vshrq_n_u8(b0, 4)), vreinterpretq_s8_u8(vshrq_n_u8(b1, 4)),
                                      a[i].qs + 64 * c + 32);
            int sc0, m0, sc1, m1;
            scale_min_k4(2 * c, x[i].scales, &sc0, &m0);
            scale_min_k4(2 * c + 1, x[i].scales, &sc1, &m1);
            isum += sc0 * slo;
            isum += sc1 * shi;
            summs += m0 * (a[i].bsums[4 * c] + a[i].bsums[4 * c + 1]);
            summs += m1 * (a[i].bsums[4 * c + 2] + a[i].bsums[4 * c + 3]);
        }
        const float d = ld_fp16_to_fp32(x[i].d) * a[i].d, dmin = ld_fp16_to_fp32(x[i].dmin) * a[i].d;
        sum += d * (float)isum - dmin * (float)summs;
    }
    return sum;
}

/* Q6_K: 6-bit levels L = (4 low bits from ql) | (2 high bits from qh) << 4, value
 * d*sc_g*(L - 32) over 16 groups of 16 (the layout of quant_k.c's unpack_q6). */
static float dot_q6_K(int64_t n, const void *w, const void *act) {
    const ld_block_q6_K *x = w;
    const ld_block_q8_K *a = act;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        int32_t isum = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = x[i].ql + 64 * h, *qh = x[i].qh + 32 * h;
            const int8_t *q8 = a[i].qs + 128 * h;
            const int8_t *sc = x[i].scales + 8 * h;
            for (int l0 = 0; l0 < 32; l0 += 16) {
                const uint8x16_t la = vld1q_u8(ql + l0), lb = vld1q_u8(ql + 32 + l0), hv = vld1q_u8(qh + l0);
                const uint8x16_t e0 = vorrq_u8(vandq_u8(la, m4), vshlq_n_u8(vandq_u8(hv, m3), 4));
                const uint8x16_t e1 = vorrq_u8(vandq_u8(lb, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hv, 2), m3), 4));
                const uint8x16_t e2 = vorrq_u8(vshrq_n_u8(la, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hv, 4), m3), 4));
                const uint8x16_t e3 = vorrq_u8(vshrq_n_u8(lb, 4), vshlq_n_u8(vshrq_n_u8(hv, 6), 4));
                const int g = l0 / 16; /* element 32*p + l0 of this half is in group 8h + 2p + g */
                const uint8x16_t e[4] = {e0, e1, e2, e3};
                for (int p = 0; p < 4; p++) {
                    const int8x16_t v = vsubq_s8(vreinterpretq_s8_u8(e[p]), off);
                    const int32_t s = vaddvq_s32(dot16(vdupq_n_s32(0), v, vld1q_s8(q8 + 32 * p + l0)));
                    isum += sc[2 * p + g] * s;
                }
            }
        }
        sum += (ld_fp16_to_fp32(x[i].d) * a[i].d) * (float)isum;
    }
    return sum;
}

/* ---- activation quantizers (bit-identical to quant_q8_0.c / quant_k.c) ---------------------- */
/* amax of n (a multiple of 4) floats; NaN lanes ignored as fmaxf does */
static inline float absmax(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0);
    for (int i = 0; i < n; i += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    return vmaxnmvq_f32(m);
}

/* 16 values: nearest(x * id) (ties to even) clamped to [-127, 127] */
static inline int8x16_t quant16(const float *x, float32x4_t id) {
    const int32x4_t lo = vdupq_n_s32(-127), hi = vdupq_n_s32(127);
    int32x4_t q[4];
    for (int j = 0; j < 4; j++) q[j] = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + 4 * j), id)), hi), lo);
    const int16x8_t a = vcombine_s16(vmovn_s32(q[0]), vmovn_s32(q[1])), b = vcombine_s16(vmovn_s32(q[2]), vmovn_s32(q[3]));
    return vcombine_s8(vmovn_s16(a), vmovn_s16(b));
}

static void quantize_act_q8_0(const float *x, void *y, int64_t n) {
    ld_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / LD_QK8_0; i++) {
        const float *xb = x + i * LD_QK8_0;
        const float amax = absmax(xb, LD_QK8_0);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = ld_fp32_to_fp16(d);
        vst1q_s8(b[i].qs, quant16(xb, vdupq_n_f32(id)));
        vst1q_s8(b[i].qs + 16, quant16(xb + 16, vdupq_n_f32(id)));
    }
}

static void quantize_act_q8_K(const float *x, void *y, int64_t n) {
    ld_block_q8_K *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const float *xb = x + i * LD_QK_K;
        const float amax = absmax(xb, LD_QK_K);
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = d;
        for (int g = 0; g < 16; g++) {
            const int8x16_t q = quant16(xb + 16 * g, vdupq_n_f32(id));
            vst1q_s8(b[i].qs + 16 * g, q);
            b[i].bsums[g] = (int16_t)vaddlvq_s8(q);
        }
    }
}

const ld_quant_isa_row ld_quant_rows_neon[LD_DTYPE_COUNT] = {
    [LD_F32] = {NULL, dot_f32, NULL},
    [LD_F16] = {NULL, dot_f16, NULL},
    [LD_Q8_0] = {quantize_act_q8_0, dot_q8_0, NULL},
    [LD_Q4_0] = {quantize_act_q8_0, dot_q4_0, NULL},
    [LD_Q4_K] = {quantize_act_q8_K, dot_q4_K, NULL},
    [LD_Q6_K] = {quantize_act_q8_K, dot_q6_K, NULL},
};

/* quant/simd_i8_avx2.h — the 256-bit int8 dot-product steps shared by the AVX2 quantized
 * kernels (qdot_avx2.c, qgemm_avx2.c), in two instruction forms chosen when the file is
 * compiled: plain AVX2 (vpmaddubsw, then vpmaddwd) by default, AVX-VNNI (vpdpbusd on ymm)
 * when the includer defines LD_I8_VNNI (the *_avxvnni.c files, used only on CPUs that have
 * it). Both give the same integers, so every kernel built on them gives the same bits in
 * either form.
 *
 * The unsigned operand u holds weight levels, the signed one s int8 activations in
 * [-127, 127]. vpmaddubsw adds adjacent products in saturating int16, so the AVX2 form is
 * exact only while |u0 s0 + u1 s1| < 2^15, that is for u <= 128: callers keep levels below
 * that (4-6 bit levels as they are; Q8_0's signed weights as |w| with the sign moved onto
 * the activation, vpsignb). Include only from files compiled with -mavx2 -mfma -mf16c
 * (and -mavxvnni for LD_I8_VNNI). */
#ifndef LD_QUANT_SIMD_I8_AVX2_H
#define LD_QUANT_SIMD_I8_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#define LD_I8_INLINE static inline __attribute__((always_inline))

/* acc + per int32 lane the sum of its 4 byte products u * s. */
LD_I8_INLINE __m256i ld_i8_dot4(__m256i acc, __m256i u, __m256i s) {
#ifdef LD_I8_VNNI
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* A running sum of byte products in the cheapest exact form: int16 pair sums for AVX2
 * (one vpmaddubsw and one vpaddw a step: the vpmaddwd that widens to int32 is paid once per
 * LD_I8_SPAN steps, in ld_i8_flush), int32 lane sums for VNNI. Start it at zero. */
LD_I8_INLINE __m256i ld_i8_acc(__m256i acc, __m256i u, __m256i s) {
#ifdef LD_I8_VNNI
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
    return _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, s));
#endif
}
/* sum32 + the running sum acc, per int32 lane (the sum of its 4 byte products per step). */
LD_I8_INLINE __m256i ld_i8_flush(__m256i sum32, __m256i acc) {
#ifdef LD_I8_VNNI
    return _mm256_add_epi32(sum32, acc);
#else
    return _mm256_add_epi32(sum32, _mm256_madd_epi16(acc, _mm256_set1_epi16(1)));
#endif
}
/* Steps ld_i8_acc may take between flushes for levels up to maxl with |s| <= 127: an int16
 * lane holds two products of at most maxl * 127 per step (4-bit levels: 8 steps, 5-bit 4,
 * 6-bit 2, |Q8_0 weight| <= 128: 1). */
#ifdef LD_I8_VNNI
#define LD_I8_SPAN(maxl) 64
#else
#define LD_I8_SPAN(maxl) (32767 / (2 * 127 * (maxl)))
#endif

/* acc + per int32 lane sc * (the sum of its 4 byte products), where sc16 holds the lane's
 * int16 scale in both of its halves (as _mm256_set1_epi16 gives): vpmaddwd scales each
 * pair; the VNNI form scales the lane's int32 sum through its low half, so that sum must
 * stay below 2^15 in magnitude. */
LD_I8_INLINE __m256i ld_i8_dot4_scaled(__m256i acc, __m256i u, __m256i s, __m256i sc16) {
#ifdef LD_I8_VNNI
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u, s),
                                                   _mm256_and_si256(sc16, _mm256_set1_epi32(0xffff))));
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc16));
#endif
}

/* Keeps a running sum as one serial chain in a register: without it GCC 12 reassociates the
 * unrolled chains of a microkernel into trees of partial sums that outnumber the 16 ymm
 * registers and spill to the stack (the AVX2 byte-panel GEMM kernel: 1454 of its 7226
 * instructions touched the stack before, 548 of 6699 with it). Emits no instruction. */
#define LD_I8_KEEP(v) __asm__("" : "+x"(v))

/* Horizontal sums in a fixed order. */
LD_I8_INLINE float ld_hsum256_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

LD_I8_INLINE int32_t ld_hsum256_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

LD_I8_INLINE float ld_hmax256_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}

/* Rounds 32 floats (x[0..31] * id) to int8 in [-127, 127], as the scalar quantizers do
 * (round to nearest even under the default rounding mode, then clamp): returns the 32
 * bytes in order; q32[0..3] receive them as int32 (elements 8k .. 8k+7 in q32[k]). */
LD_I8_INLINE __m256i ld_i8_quantize32(const float *x, __m256 id, __m256i *q32) {
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (int k = 0; k < 4; k++) {
        const __m256i q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * k), id));
        q32[k] = _mm256_min_epi32(_mm256_max_epi32(q, lo), hi);
    }
    const __m256i p01 = _mm256_packs_epi32(q32[0], q32[1]), p23 = _mm256_packs_epi32(q32[2], q32[3]);
    return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* max |x| over n floats (n a multiple of 8). */
LD_I8_INLINE float ld_absmax_ps(const float *x, int n) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(x + i), absmask));
    return ld_hmax256_ps(m);
}

#endif

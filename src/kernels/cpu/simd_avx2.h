/* kernels/cpu/simd_avx2.h — small AVX2 + FMA building blocks shared by the *_avx2.c kernel
 * files: lane masks for tails (AVX2 has masked loads and stores of 32-bit lanes only), a
 * vector exp accurate to about 1 ulp (no -ffast-math), horizontal sums and maxima, and the
 * static split of work over OpenMP threads (kernels/cpu/simd_avx512.h has the same for
 * AVX-512; the split itself is shared through kernels/cpu/par.h). Include only from files
 * compiled with -mavx2 -mfma -mf16c (named *_avx2.c). */
#ifndef LD_KERNELS_CPU_SIMD_AVX2_H
#define LD_KERNELS_CPU_SIMD_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/cpu/par.h"

#define LD_AVX2_INLINE static inline __attribute__((always_inline))

/* Mask of the first min(max(r, 0), 8) lanes, for _mm256_maskload/maskstore. */
LD_AVX2_INLINE __m256i ld_tail8(int64_t r) {
    const int n = r >= 8 ? 8 : r < 0 ? 0 : (int)r;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Loads/stores the lanes of mask k (all 8 when k is all ones, the usual case, as plain
 * unaligned accesses). Masked-off lanes load as 0. */
LD_AVX2_INLINE __m256 ld_load8(const float *p, __m256i k, int full) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, k);
}
LD_AVX2_INLINE void ld_store8(float *p, __m256i k, int full, __m256 v) {
    if (full) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, k, v);
}

/* Sum / maximum of the 8 lanes in a fixed order. */
LD_AVX2_INLINE float ld_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
LD_AVX2_INLINE float ld_hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
LD_AVX2_INLINE double ld_hsum4d(__m256d v) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

/* 2^n for integer-valued n in [-126, 127] (normal floats only: ld_exp8 splits its
 * exponents to stay in that range). */
LD_AVX2_INLINE __m256 ld_pow2i8(__m256 n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
}

/* e^x, max error about 1 ulp over the float range; exp(-inf) = 0, exp(+inf) = inf, NaN
 * stays NaN, results below the smallest subnormal flush to 0. As ld_exp512: x = n ln2 + r,
 * |r| <= ln2/2 (ln2 split in two for an exact first reduction step), e^r by its degree-7
 * Taylor polynomial, then scaled by 2^n as 2^(n/2) 2^(n - n/2) (both factors normal, so
 * the only rounding is the last product's, as with vscalefps). */
LD_AVX2_INLINE __m256 ld_exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-104.0f), x); /* max/min return x (the second operand) when x is NaN */
    x = _mm256_min_ps(_mm256_set1_ps(89.0f), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256 n1 = _mm256_round_ps(_mm256_mul_ps(n, _mm256_set1_ps(0.5f)), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    return _mm256_mul_ps(_mm256_mul_ps(p, ld_pow2i8(n1)), ld_pow2i8(_mm256_sub_ps(n, n1))); /* NaN: p is NaN */
}

/* e^-x for the logistic function, x clamped to [-88, 88] so e^-x stays finite. */
LD_AVX2_INLINE __m256 ld_exp_neg_clamped8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(_mm256_set1_ps(-88.0f), x));
    return ld_exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
}

/* tanh(z) and 1 - tanh(z)^2 to a few ulps: below |z| = 0.5 the Taylor series to z^15 (the
 * next term is < 1e-8 relative there), above it (1 - e) / (1 + e) with e = e^(-2|z|) <= 1/e
 * (no cancellation) and sech^2 = 4e / (1 + e)^2; the sign put back. */
LD_AVX2_INLINE __m256 ld_tanh8(__m256 z, __m256 *sech2) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 a = _mm256_andnot_ps(sign, z), z2 = _mm256_mul_ps(z, z);
    static const float C[] = {(float)(-929569.0 / 638512875.0), (float)(21844.0 / 6081075.0), (float)(-1382.0 / 155925.0),
                              (float)(62.0 / 2835.0), (float)(-17.0 / 315.0), (float)(2.0 / 15.0), (float)(-1.0 / 3.0)};
    __m256 p = _mm256_set1_ps((float)(6404582.0 / 10854718875.0));
    for (int j = 0; j < 7; j++) p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(C[j]));
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z2), z, z);
    __m256 e = ld_exp_neg_clamped8(_mm256_add_ps(a, a)), d = _mm256_add_ps(_mm256_set1_ps(1.0f), e);
    __m256 big = _mm256_or_ps(_mm256_div_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), e), d), _mm256_and_ps(sign, z));
    __m256 is_small = _mm256_cmp_ps(a, _mm256_set1_ps(0.5f), _CMP_LT_OQ);
    __m256 t = _mm256_blendv_ps(big, small, is_small);
    if (sech2) {
        __m256 sb = _mm256_div_ps(_mm256_mul_ps(_mm256_set1_ps(4.0f), e), _mm256_mul_ps(d, d));
        *sech2 = _mm256_blendv_ps(sb, _mm256_fnmadd_ps(small, small, _mm256_set1_ps(1.0f)), is_small);
    }
    return t;
}

#endif

/* kernels/cpu/simd_avx512.h — small AVX-512 building blocks shared by the *_avx512.c kernel
 * files: vector exp / sigmoid / tanh accurate to a few ulp (no -ffast-math), tail masks, horizontal
 * sums (the static split of work over OpenMP threads is in kernels/cpu/par.h). Include
 * only from files compiled with the AVX-512 flags (named *_avx512.c). */
#ifndef LD_KERNELS_CPU_SIMD_AVX512_H
#define LD_KERNELS_CPU_SIMD_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/cpu/par.h"

/* Stores the lanes of k; full vectors go out as non-temporal stores when `stream` (the
 * address is then 64-byte aligned). Threads that streamed must _mm_sfence() before
 * another thread reads the data. */
static inline void ld_store_out(float *p, __mmask16 k, __m512 v, int stream) {
    if (stream && k == (__mmask16)0xffff)
        _mm512_stream_ps(p, v);
    else
        _mm512_mask_storeu_ps(p, k, v);
}

/* Mask of the first min(r, 16) lanes. */
static inline __mmask16 ld_tail16(int64_t r) {
    return r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << r) - 1u);
}

/* e^x, max error about 1 ulp over the float range; exp(-inf) = 0, exp(+inf) = inf,
 * NaN stays NaN, results below the smallest subnormal flush to 0.
 * x = n ln2 + r, |r| <= ln2/2 (ln2 split in two for an exact first reduction step),
 * e^r by its degree-7 Taylor polynomial (truncation < 0.1 ulp), scaled by 2^n. */
static inline __m512 ld_exp512(__m512 x) {
    x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x); /* max/min return x when x is NaN */
    x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

/* e^-x for the logistic function, with x clamped to [-88, 88] so that e^-x stays finite
 * and 1 - sigmoid = e * sigmoid never becomes inf * 0. */
static inline __m512 ld_exp_neg_clamped512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.0f), _mm512_max_ps(_mm512_set1_ps(-88.0f), x));
    return ld_exp512(_mm512_sub_ps(_mm512_setzero_ps(), x));
}

/* tanh(z) and 1 - tanh(z)^2 to a few ulps, as ld_tanh8 (simd_avx2.h): below |z| = 0.5 the
 * Taylor series to z^15, above it (1 - e) / (1 + e) with e = e^(-2|z|) and sech^2 = 4e / (1 + e)^2;
 * the sign put back. */
static inline __m512 ld_tanh512(__m512 z, __m512 *sech2) {
    const __m512 sign = _mm512_set1_ps(-0.0f), one = _mm512_set1_ps(1.0f);
    const __m512 a = _mm512_andnot_ps(sign, z), z2 = _mm512_mul_ps(z, z);
    static const float C[] = {(float)(-929569.0 / 638512875.0), (float)(21844.0 / 6081075.0),
                              (float)(-1382.0 / 155925.0),        (float)(62.0 / 2835.0),
                              (float)(-17.0 / 315.0),             (float)(2.0 / 15.0),
                              (float)(-1.0 / 3.0)};
    __m512 p = _mm512_set1_ps((float)(6404582.0 / 10854718875.0));
    for (int j = 0; j < 7; j++) p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(C[j]));
    const __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(p, z2), z, z);
    const __m512 e = ld_exp_neg_clamped512(_mm512_add_ps(a, a)), d = _mm512_add_ps(one, e);
    const __m512 big = _mm512_or_ps(_mm512_div_ps(_mm512_sub_ps(one, e), d), _mm512_and_ps(sign, z));
    const __mmask16 is_small = _mm512_cmp_ps_mask(a, _mm512_set1_ps(0.5f), _CMP_LT_OQ);
    if (sech2) {
        const __m512 sb = _mm512_div_ps(_mm512_mul_ps(_mm512_set1_ps(4.0f), e), _mm512_mul_ps(d, d));
        *sech2 = _mm512_mask_blend_ps(is_small, sb, _mm512_fnmadd_ps(small, small, one));
    }
    return _mm512_mask_blend_ps(is_small, big, small);
}

/* 1 / d to about 1 ulp: the 14-bit estimate refined by one Newton step (a vdivps costs
 * as much as the whole exp). */
static inline __m512 ld_recip512(__m512 d) {
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(1.0f)), r);
}

/* Sum of the 16 lanes in a fixed order. */
static inline float ld_hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

#endif

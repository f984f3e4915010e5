/* kernels/cpu/attention_avx2.c — blocked (FlashAttention-2 style) attention at the AVX2 level:
 * attention_blocked.h over 8-float ymm vectors, a 6 x 16 micro-kernel (the f32 GEMM's shape:
 * 12 ymm accumulators, 2 vector loads and 6 broadcasts per step) and the online softmax with
 * 8 queries per vector. Lane masks are vectors (AVX2 has no mask registers). */
#include "kernels/cpu/simd_avx2.h"

#define VW 8
#define MR 6
#define VL static inline __attribute__((always_inline))

typedef __m256 vf;
typedef __m256 vmask;
typedef __m256i vtail;
typedef __m256i vint;

VL vf v_zero(void) { return _mm256_setzero_ps(); }
VL vf v_set1(float x) { return _mm256_set1_ps(x); }
VL vf v_loadu(const float *p) { return _mm256_loadu_ps(p); }
VL void v_storeu(float *p, vf x) { _mm256_storeu_ps(p, x); }
VL vf v_bcast(const float *p) { return _mm256_broadcast_ss(p); }
VL vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
VL vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
VL vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
VL vf v_max(vf a, vf b) { return _mm256_max_ps(a, b); }
VL vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
VL vf v_exp(vf x) { return ld_exp8(x); }
VL vf v_tanh(vf x, vf *sech2) { return ld_tanh8(x, sech2); }
VL float v_hsum(vf x) { return ld_hsum8(x); }
VL float v_hmax(vf x) { return ld_hmax8(x); }
VL vtail v_tail(int64_t n) { return ld_tail8(n); }
VL vf v_loadt(const float *p, vtail t, int full) { return ld_load8(p, t, full); }
VL void v_storet(float *p, vtail t, int full, vf x) { ld_store8(p, t, full, x); }
VL vint v_loadi(const int32_t *p) { return _mm256_loadu_si256((const __m256i *)p); }
/* lanes with cs <= j < ce */
VL vmask v_in(vint cs, vint ce, int j) {
    const __m256i vj = _mm256_set1_epi32(j);
    return _mm256_castsi256_ps(_mm256_andnot_si256(_mm256_cmpgt_epi32(cs, vj), _mm256_cmpgt_epi32(ce, vj)));
}
VL vmask v_lanes(int64_t j, int64_t cs, int64_t ce) {
    const __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)j), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32((int)cs - 1)),
                                                _mm256_cmpgt_epi32(_mm256_set1_epi32((int)ce), idx)));
}
VL vf v_and(vf x, vmask m) { return _mm256_and_ps(x, m); }
VL vf v_sel(vmask m, vf a, vf b) { return _mm256_blendv_ps(b, a, m); }
VL vmask v_neq(vf a, vf b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_OQ); }
VL unsigned v_eq_bits(vf a, vf b) { return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_EQ_OQ)); }

#include "kernels/cpu/attention_blocked.h"

const ld_kernels ld_kernels_cpu_avx2_attn = {
    .name = "cpu-avx2",
    .attention_fwd = attention_fwd,
    .attention_fwd_kv = attention_fwd_kv,
    .attention_bwd_scratch = attention_bwd_scratch,
    .attention_bwd = attention_bwd,
};

/* kernels/cpu/attention_avx512.c — blocked (FlashAttention-2 style) attention at the AVX-512
 * level: attention_blocked.h over 16-float zmm vectors, an 8 x 32 micro-kernel (16 zmm
 * accumulators, 2 vector loads and 8 broadcasts per step) and the online softmax with 16
 * queries per vector; lane masks are mask registers. Forward (prefill and decode, f32 and
 * F16/Q8_0 KV rows) and backward, causal and bidirectional, padding, windows, soft-caps. */
#include "kernels/cpu/simd_avx512.h"

#define VW 16
#define MR 8
#define VL static inline __attribute__((always_inline))

typedef __m512 vf;
typedef __mmask16 vmask;
typedef __mmask16 vtail;
typedef __m512i vint;

VL vf v_zero(void) { return _mm512_setzero_ps(); }
VL vf v_set1(float x) { return _mm512_set1_ps(x); }
VL vf v_loadu(const float *p) { return _mm512_loadu_ps(p); }
VL void v_storeu(float *p, vf x) { _mm512_storeu_ps(p, x); }
VL vf v_bcast(const float *p) { return _mm512_set1_ps(*p); }
VL vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
VL vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
VL vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
VL vf v_max(vf a, vf b) { return _mm512_max_ps(a, b); }
VL vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
VL vf v_exp(vf x) { return ld_exp512(x); }
VL vf v_tanh(vf x, vf *sech2) { return ld_tanh512(x, sech2); }
VL float v_hsum(vf x) { return ld_hsum512(x); }
VL float v_hmax(vf x) { return _mm512_reduce_max_ps(x); }
VL vtail v_tail(int64_t n) { return n <= 0 ? (vtail)0 : ld_tail16(n); }
VL vf v_loadt(const float *p, vtail t, int full) { return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(t, p); }
VL void v_storet(float *p, vtail t, int full, vf x) {
    if (full) _mm512_storeu_ps(p, x);
    else _mm512_mask_storeu_ps(p, t, x);
}
VL vint v_loadi(const int32_t *p) { return _mm512_loadu_si512(p); }
/* lanes with cs <= j < ce */
VL vmask v_in(vint cs, vint ce, int j) {
    const __m512i vj = _mm512_set1_epi32(j);
    return _mm512_cmple_epi32_mask(cs, vj) & _mm512_cmpgt_epi32_mask(ce, vj);
}
VL vmask v_lanes(int64_t j, int64_t cs, int64_t ce) { return (vmask)(v_tail(ce - j) & ~v_tail(cs - j)); }
VL vf v_and(vf x, vmask m) { return _mm512_maskz_mov_ps(m, x); }
VL vf v_sel(vmask m, vf a, vf b) { return _mm512_mask_blend_ps(m, b, a); }
VL vmask v_neq(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_OQ); }
VL unsigned v_eq_bits(vf a, vf b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }

#include "kernels/cpu/attention_blocked.h"

const ld_kernels ld_kernels_cpu_avx512_attn = {
    .name = "cpu-avx512",
    .attention_fwd = attention_fwd,
    .attention_fwd_kv = attention_fwd_kv,
    .attention_bwd_scratch = attention_bwd_scratch,
    .attention_bwd = attention_bwd,
};

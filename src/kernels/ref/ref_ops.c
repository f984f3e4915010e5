/* kernels/ref/ref_ops.c — the float instantiation of the reference kernels in
 * ref_ops_impl.h (entries of ld_kernels_ref), plus the f32 <-> bf16 conversions. */
#include "kernels/ref/ref.h"

#define REAL float
#define REF_FN(op) ld_ref_##op
#include "kernels/ref/ref_ops_impl.h"

void ld_ref_f32_to_bf16(uint16_t *dst, const float *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ld_fp32_to_bf16(src[i]);
}

void ld_ref_bf16_to_f32(float *dst, const uint16_t *src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = ld_bf16_to_fp32(src[i]);
}

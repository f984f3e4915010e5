/* kernels/ref/ref.h — the scalar reference kernels (the oracle every optimized kernel is
 * checked against). Each op group lives in its own file (ref_gemm.c, ref_norm.c, ...).
 * Semantics are those documented on the ld_kernels fields in kernels/kernels.h. */
#ifndef LD_KERNELS_REF_H
#define LD_KERNELS_REF_H

#include "kernels/kernels.h"

/* ref_gemm.c: double accumulation, one rounding per output element. */
void ld_ref_gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc);
void ld_ref_gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);

#endif

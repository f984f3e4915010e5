/* kernels/ref/ref.h — the scalar reference kernels (the oracle every optimized kernel is
 * checked against). Each op group lives in its own file (ref_gemm.c, ref_ops.c, ...).
 * Semantics are those documented on the ld_kernels fields in kernels/kernels.h. */
#ifndef LD_KERNELS_REF_H
#define LD_KERNELS_REF_H

#include "kernels/kernels.h"

/* Everything but matrix products and attention: ld_ref_<op>, float (ref_ops.c, written once
 * in ref_ops_impl.h; the double instantiation is declared in ref_f64.h). */
#define REAL float
#define REF_FN(op) ld_ref_##op
#include "kernels/ref/ref_ops_decl.h"
#undef REF_FN
#undef REAL
void ld_ref_f32_to_bf16(uint16_t *dst, const float *src, int64_t n);
void ld_ref_bf16_to_f32(float *dst, const uint16_t *src, int64_t n);
/* ref_gemm.c: double accumulation, one rounding per output element. */
void ld_ref_gemv_f32(bool transW, int64_t M, int64_t N, int64_t K, const float *x, const float *W, float *y);
void ld_ref_gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc);
void ld_ref_gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);
/* 1: the reference multiplies bf16 by widening it to f32. */
double ld_ref_gemm_bf16_speedup(void);
void ld_ref_gemm_f32_f16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                         float *C, int64_t ldc);

/* ref_attention.c (written once in ref_attention_impl.h, double version in ref_f64.h) */
void ld_ref_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                          const ld_attn_shape *s);
size_t ld_ref_attention_bwd_scratch(const ld_attn_shape *s);
void ld_ref_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                          const float *q, const float *k, const float *v, const ld_attn_shape *s, void *scratch);
/* ref_attention_kv.c: attention_fwd_kv, and its readers of a KV row format (LD_KV_*):
 * bytes of a row of n values, value e of row j of rows row_bytes apart. */
void ld_ref_attention_fwd_kv(float *out, float *lse, const float *q, const void *k, int k_type, const void *v,
                             int v_type, const ld_attn_shape *s);
size_t ld_ref_kv_row_bytes(int type, int64_t n);
float ld_ref_kv_value(const void *rows, int type, size_t row_bytes, int64_t j, int64_t e);

#endif

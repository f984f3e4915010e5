/* kernels/cpu/ops_avx2.h — internal: the AVX2 kernels of the non-matmul, non-attention
 * ops, spread over rows_avx2.c (row-wise ops: norms, softmax, cross-entropy, embedding,
 * RoPE) and ops_avx2.c (pointwise ops, dropout, optimiser, conversions, and the partial
 * table ld_kernels_cpu_avx2_ops). Semantics: kernels/kernels.h. */
#ifndef LD_KERNELS_CPU_OPS_AVX2_H
#define LD_KERNELS_CPU_OPS_AVX2_H

#include "kernels/kernels.h"

void ld_avx2_embedding_fwd(float *out, const int32_t *ids, const float *table, int64_t N, int64_t C);
void ld_avx2_embedding_bwd(float *dtable, const int32_t *ids, const float *dout, int64_t N, int64_t C);
void ld_avx2_layernorm_fwd(float *y, float *mean, float *rstd, const float *x, const float *w,
                             const float *b, int64_t N, int64_t C, float eps);
void ld_avx2_layernorm_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                             const float *w, const float *mean, const float *rstd, int64_t N, int64_t C);
void ld_avx2_rmsnorm_fwd(float *y, float *rstd, const float *x, const float *w, int64_t N, int64_t C,
                           float eps);
void ld_avx2_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w,
                           const float *rstd, int64_t N, int64_t C);
void ld_avx2_rope_fwd(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D,
                        int64_t pos0, float theta);
void ld_avx2_rope_bwd(float *dx, const float *dy, int64_t B, int64_t T, int64_t H, int64_t D,
                        int64_t pos0, float theta);
void ld_avx2_rope_freq_fwd(float *y, const float *x, int64_t B, int64_t T, int64_t H, int64_t D,
                           int64_t pos0, const float *inv_freq, float mscale);
void ld_avx2_rope_freq_bwd(float *dx, const float *dy, int64_t B, int64_t T, int64_t H, int64_t D,
                           int64_t pos0, const float *inv_freq, float mscale);
void ld_avx2_softmax_fwd(float *y, const float *x, int64_t N, int64_t C);
void ld_avx2_softmax_bwd(float *dx, const float *dy, const float *y, int64_t N, int64_t C);
void ld_avx2_xent_fwd(float *loss, float *lse, const float *logits, const int32_t *target, int64_t N,
                        int64_t V, int32_t ignore_index);
void ld_avx2_xent_bwd(float *dlogits, const float *dloss, const float *logits, const float *lse,
                        const int32_t *target, int64_t N, int64_t V, int32_t ignore_index);
void ld_avx2_distill_fwd(float *loss, float *stats, const float *s, const float *t, const int32_t *target,
                           int64_t N, int64_t V, float temp, float alpha, int32_t ignore_index);
void ld_avx2_distill_bwd(float *ds, const float *dloss, const float *s, const float *t, const float *stats,
                           const int32_t *target, int64_t N, int64_t V, float temp, float alpha,
                           int32_t ignore_index);

#endif

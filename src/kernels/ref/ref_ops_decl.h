/* kernels/ref/ref_ops_decl.h — declarations of the reference kernels written in
 * ref_ops_impl.h, for one element type. The includer defines REAL and REF_FN(op) (see
 * ref.h for float, ref_f64.h for double); this file may be included once per type. */
#include <stdint.h>

#include "kernels/kernels.h"

void REF_FN(embedding_fwd)(REAL *out, const int32_t *ids, const REAL *table, int64_t N, int64_t C);
void REF_FN(embedding_bwd)(REAL *dtable, const int32_t *ids, const REAL *dout, int64_t N, int64_t C);
void REF_FN(layernorm_fwd)(REAL *y, REAL *mean, REAL *rstd, const REAL *x, const REAL *w,
                           const REAL *b, int64_t N, int64_t C, float eps);
void REF_FN(layernorm_bwd)(REAL *dx, REAL *dw, REAL *db, const REAL *dy, const REAL *x,
                           const REAL *w, const REAL *mean, const REAL *rstd, int64_t N, int64_t C);
void REF_FN(rmsnorm_fwd)(REAL *y, REAL *rstd, const REAL *x, const REAL *w, int64_t N, int64_t C,
                         float eps);
void REF_FN(rmsnorm_bwd)(REAL *dx, REAL *dw, const REAL *dy, const REAL *x, const REAL *w,
                         const REAL *rstd, int64_t N, int64_t C);
void REF_FN(rope_fwd)(REAL *y, const REAL *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                      float theta);
void REF_FN(rope_bwd)(REAL *dx, const REAL *dy, int64_t B, int64_t T, int64_t H, int64_t D,
                      int64_t pos0, float theta);
void REF_FN(rope_freq_fwd)(REAL *y, const REAL *x, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                           const float *inv_freq, float mscale);
void REF_FN(rope_freq_bwd)(REAL *dx, const REAL *dy, int64_t B, int64_t T, int64_t H, int64_t D, int64_t pos0,
                           const float *inv_freq, float mscale);
void REF_FN(softmax_fwd)(REAL *y, const REAL *x, int64_t N, int64_t C);
void REF_FN(softmax_bwd)(REAL *dx, const REAL *dy, const REAL *y, int64_t N, int64_t C);
void REF_FN(xent_fwd)(REAL *loss, REAL *lse, const REAL *logits, const int32_t *target, int64_t N,
                      int64_t V, int32_t ignore_index);
void REF_FN(xent_bwd)(REAL *dlogits, const REAL *dloss, const REAL *logits, const REAL *lse,
                      const int32_t *target, int64_t N, int64_t V, int32_t ignore_index);
void REF_FN(distill_fwd)(REAL *loss, REAL *stats, const REAL *s, const REAL *t, const int32_t *target,
                         int64_t N, int64_t V, float temp, float alpha, int32_t ignore_index);
void REF_FN(distill_bwd)(REAL *ds, const REAL *dloss, const REAL *s, const REAL *t, const REAL *stats,
                         const int32_t *target, int64_t N, int64_t V, float temp, float alpha,
                         int32_t ignore_index);
void REF_FN(gelu_fwd)(REAL *y, const REAL *x, int64_t n);
void REF_FN(gelu_bwd)(REAL *dx, const REAL *dy, const REAL *x, int64_t n);
void REF_FN(gelu_erf_fwd)(REAL *y, const REAL *x, int64_t n);
void REF_FN(gelu_erf_bwd)(REAL *dx, const REAL *dy, const REAL *x, int64_t n);
void REF_FN(silu_fwd)(REAL *y, const REAL *x, int64_t n);
void REF_FN(silu_bwd)(REAL *dx, const REAL *dy, const REAL *x, int64_t n);
void REF_FN(quick_gelu_fwd)(REAL *y, const REAL *x, int64_t n);
void REF_FN(quick_gelu_bwd)(REAL *dx, const REAL *dy, const REAL *x, int64_t n);
void REF_FN(swiglu_fwd)(REAL *y, const REAL *gate, const REAL *up, int64_t n);
void REF_FN(swiglu_bwd)(REAL *dgate, REAL *dup, const REAL *dy, const REAL *gate, const REAL *up,
                        int64_t n);
void REF_FN(geglu_fwd)(REAL *y, const REAL *gate, const REAL *up, int64_t n);
void REF_FN(geglu_bwd)(REAL *dgate, REAL *dup, const REAL *dy, const REAL *gate, const REAL *up, int64_t n);
void REF_FN(softcap_fwd)(REAL *y, const REAL *x, float cap, int64_t n);
void REF_FN(softcap_bwd)(REAL *dx, const REAL *dy, const REAL *x, float cap, int64_t n);
void REF_FN(add_fwd)(REAL *y, const REAL *a, const REAL *b, int64_t n);
void REF_FN(add_inplace)(REAL *y, const REAL *x, int64_t n);
void REF_FN(scale_fwd)(REAL *y, const REAL *x, float alpha, int64_t n);
void REF_FN(axpy)(REAL *y, float alpha, const REAL *x, int64_t n);
void REF_FN(dropout_fwd)(REAL *y, const REAL *x, float p, uint64_t seed, uint64_t offset, int64_t n);
void REF_FN(dropout_bwd)(REAL *dx, const REAL *dy, float p, uint64_t seed, uint64_t offset, int64_t n);
double REF_FN(sumsq)(const REAL *x, int64_t n);
void REF_FN(adamw)(REAL *param, const REAL *grad, REAL *m, REAL *v, uint16_t *param_bf16, int64_t n,
                   const ld_adamw_params *p);

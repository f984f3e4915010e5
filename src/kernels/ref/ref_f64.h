/* kernels/ref/ref_f64.h — the reference kernels of ref_ops_impl.h instantiated in double
 * precision (ld_ref64_<op>), used by the finite-difference tests of every backward kernel.
 * Same arguments and semantics as the float kernels of kernels/kernels.h with float
 * tensors replaced by double ones (scalar parameters such as eps stay float). */
#ifndef LD_KERNELS_REF_F64_H
#define LD_KERNELS_REF_F64_H

#include "kernels/kernels.h"

#define REAL double
#define REF_FN(op) ld_ref64_##op
#include "kernels/ref/ref_ops_decl.h"
#undef REF_FN
#undef REAL

void ld_ref64_attention_fwd(double *out, double *lse, const double *q, const double *k, const double *v,
                            const ld_attn_shape *s);
size_t ld_ref64_attention_bwd_scratch(const ld_attn_shape *s);
void ld_ref64_attention_bwd(double *dq, double *dk, double *dv, const double *dout, const double *out,
                            const double *lse, const double *q, const double *k, const double *v,
                            const ld_attn_shape *s, void *scratch);

#endif

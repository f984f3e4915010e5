/* kernels/ref/ref_ops_f64.c — the double instantiation of the reference kernels in
 * ref_ops_impl.h (ld_ref64_<op>), for finite-difference checks of backward kernels. */
#include "kernels/ref/ref_f64.h"

#define REAL double
#define REF_FN(op) ld_ref64_##op
#include "kernels/ref/ref_ops_impl.h"

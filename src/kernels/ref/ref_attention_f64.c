/* kernels/ref/ref_attention_f64.c — the double instantiation (finite-difference tests). */
#include "kernels/ref/ref_f64.h"

#define REAL double
#define REF_FN(op) ld_ref64_##op
#include "kernels/ref/ref_attention_impl.h"

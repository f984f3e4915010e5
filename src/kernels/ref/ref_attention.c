/* kernels/ref/ref_attention.c — the float instantiation of the reference attention. */
#include "kernels/ref/ref.h"

#define REAL float
#define REF_FN(op) ld_ref_##op
#include "kernels/ref/ref_attention_impl.h"

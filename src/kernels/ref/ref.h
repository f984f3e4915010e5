/* kernels/ref/ref.h — the scalar reference kernels (the oracle every optimized kernel is
 * checked against). Each op group lives in its own file (ref_gemm.c, ref_norm.c, ...).
 * Semantics are those documented on the ld_kernels fields in kernels/kernels.h. */
#ifndef LD_KERNELS_REF_H
#define LD_KERNELS_REF_H

#include "kernels/kernels.h"

#endif

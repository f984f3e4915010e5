/* kernels/ref/ref_table.c — the reference backend's kernel table. */
#include "kernels/ref/ref.h"

const ld_kernels ld_kernels_ref = {
    .name = "ref",
    .gemm_f32 = ld_ref_gemm_f32,
    .gemm_bf16 = ld_ref_gemm_bf16,
};

/* kernels/ref/ref_table.c — the reference backend's kernel table. */
#include "kernels/ref/ref.h"

const ld_kernels ld_kernels_ref = {
    .name = "ref",
};

/* kernels/dispatch.c — picks the kernel table for a backend. */
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

const ld_kernels *ld_kernels_get(ld_backend b) {
    if (b == LD_BACKEND_REF) return &ld_kernels_ref;
    return ld_kernels_cpu_at(ld_isa_active());
}

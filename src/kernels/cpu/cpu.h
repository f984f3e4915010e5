/* kernels/cpu/cpu.h — the optimized CPU backend: SIMD kernels (files named *_avx512.c /
 * *_avx2.c are compiled for that ISA and built on x86-64 only; *_neon.c on aarch64 only) chosen
 * at run time by CPUID and LD_ISA (kernels.h, ld_isa), the context's thread team across cores. */
#ifndef LD_KERNELS_CPU_H
#define LD_KERNELS_CPU_H

#include "kernels/kernels.h"

/* The table of each level is ld_kernels_cpu_at (kernels/kernels.h), built once, on first
 * use. Entries an ISA lacks fall back to the next ISA down, finally to the reference kernel. */

/* Partial tables (NULL entries = not provided), overlaid by cpu_table.c after a CPUID check. */
extern const ld_kernels ld_kernels_cpu_avx2_ops; /* norms, pointwise, xent, AdamW, ... (ops_avx2.c, rows_avx2.c) */
extern const ld_kernels ld_kernels_cpu_avx2_gemv; /* matrix-vector products (gemv_avx2.c) */
extern const ld_kernels ld_kernels_cpu_avx2_attn; /* attention (attention_avx2.c) */
extern const ld_kernels ld_kernels_cpu_avx512_ops; /* norms, pointwise, xent, AdamW, ... (ops_avx512.c) */
extern const ld_kernels ld_kernels_cpu_avx512_attn; /* attention (attention_avx512.c) */

extern const ld_kernels ld_kernels_cpu_avx512_gemv; /* matrix-vector products (gemv_avx512.c) */
extern const ld_kernels ld_kernels_cpu_neon_gemv; /* aarch64: matrix-vector products (gemv_neon.c) */
extern const ld_kernels ld_kernels_cpu_neon_rows; /* aarch64: RMSNorm forward (rows_neon.c) */

#endif

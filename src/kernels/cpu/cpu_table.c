/* kernels/cpu/cpu_table.c — assembles the CPU backend's table of each instruction-set level
 * (ld_isa): the reference table with the partial table of every level up to it overlaid,
 * lowest first. A new ISA, or a new op group of one, is one more row below. */
#include <stddef.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm.h"

/* Copies every non-NULL entry of src over dst (function pointers only). */
static void overlay(ld_kernels *dst, const ld_kernels *src) {
    void (**d)(void) = (void (**)(void))((char *)dst + offsetof(ld_kernels, gemm_f32));
    void (*const *s)(void) = (void (*const *)(void))((const char *)src + offsetof(ld_kernels, gemm_f32));
    size_t n = (sizeof(ld_kernels) - offsetof(ld_kernels, gemm_f32)) / sizeof(void (*)(void));
    for (size_t i = 0; i < n; i++)
        if (s[i]) d[i] = s[i];
}

/* The partial tables of each level, one per op group (each file owns its entries). */
static const struct {
    ld_isa level;
    const ld_kernels *part;
} PARTS[] = {
#if LD_ARCH_X86
    {LD_ISA_AVX2, &ld_kernels_cpu_avx2_ops},
    {LD_ISA_AVX2, &ld_kernels_cpu_avx2_gemm},
    {LD_ISA_AVX2, &ld_kernels_cpu_avx2_gemv},
    {LD_ISA_AVX2, &ld_kernels_cpu_avx2_attn},
    {LD_ISA_AVX512, &ld_kernels_cpu_avx512_ops},
    {LD_ISA_AVX512, &ld_kernels_cpu_avx512_gemm},
    {LD_ISA_AVX512, &ld_kernels_cpu_avx512_attn},
    {LD_ISA_AVX512, &ld_kernels_cpu_avx512_gemv},
#endif
#if LD_ARCH_ARM64
    {LD_ISA_NEON, &ld_kernels_cpu_neon_gemv},
    {LD_ISA_NEON, &ld_kernels_cpu_neon_rows},
#endif
    {LD_ISA_SCALAR, NULL}, /* (the end; keeps the table non-empty on every processor) */
};

static const char *const NAMES[LD_ISA_COUNT] = {"cpu-scalar", "cpu-avx2", "cpu-avx512", "cpu-neon"};

static ld_kernels build(ld_isa isa) {
    ld_kernels k = ld_kernels_ref;
    for (size_t i = 0; i < sizeof PARTS / sizeof PARTS[0]; i++)
        if (PARTS[i].part && ld_isa_includes(isa, PARTS[i].level)) overlay(&k, PARTS[i].part);
    k.name = NAMES[isa];
    return k;
}

const ld_kernels *ld_kernels_cpu_at(ld_isa isa) {
    static ld_kernels tables[LD_ISA_COUNT];
    static int done[LD_ISA_COUNT];
    const ld_isa top = ld_isa_detected();
    if (!ld_isa_includes(top, isa)) isa = top;
    if (!__atomic_load_n(&done[isa], __ATOMIC_ACQUIRE)) {
        tables[isa] = build(isa); /* racing first callers write the same bytes */
        __atomic_store_n(&done[isa], 1, __ATOMIC_RELEASE);
    }
    return &tables[isa];
}

/* kernels/cpu/cpu_table.c — assembles the CPU backend's table for the running machine. */
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

static ld_kernels build(void) {
    const ld_cpu_features *f = ld_cpu_features_get();
    ld_kernels k = ld_kernels_ref;
    k.name = "cpu-scalar";
    /* Per-ISA partial tables are overlaid here as they are written, lowest ISA first:
     *   if (f->avx2 && f->fma) { overlay(&k, &ld_kernels_cpu_avx2); k.name = "cpu-avx2"; }
     *   if (f->avx512f && f->avx512bw) { overlay(&k, &ld_kernels_cpu_avx512); k.name = "cpu-avx512"; } */
    if (f->avx2 && f->fma) {
        overlay(&k, &ld_kernels_cpu_avx2_gemm);
        k.name = "cpu-avx2";
    }
    /* AVX-512 partial tables, one per op group (each file owns its entries). */
    if (f->avx512f && f->avx512bw && f->avx512vl) {
        overlay(&k, &ld_kernels_cpu_avx512_ops);
        overlay(&k, &ld_kernels_cpu_avx512_gemm);
        overlay(&k, &ld_kernels_cpu_avx512_attn);
        overlay(&k, &ld_kernels_cpu_avx512_gemv);
        k.name = "cpu-avx512";
    }
    return k;
}

const ld_kernels *ld_kernels_cpu(void) {
    static ld_kernels table;
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        table = build();
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
    return &table;
}

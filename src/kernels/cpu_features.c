/* kernels/cpu_features.c — run-time CPU feature detection (CPUID + XGETBV on x86; NEON is
 * always there on aarch64) and the instruction-set level the kernels use (ld_isa: the
 * detected one, or lower by LD_ISA). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

#if LD_ARCH_X86
#include <cpuid.h>
#include <setjmp.h>
#include <signal.h>

/* Some hypervisors hide AVX512_BF16 from CPUID although the instruction runs. When CPUID
 * says AVX-512 but not BF16, execute one vdpbf16ps with SIGILL caught, once, at first use. */
static sigjmp_buf probe_jmp;
static void probe_sigill(int sig) {
    (void)sig;
    siglongjmp(probe_jmp, 1);
}
__attribute__((target("avx512f,avx512bf16"), noinline)) static void probe_bf16_insn(void) {
    __asm__ volatile("vdpbf16ps %%zmm0, %%zmm0, %%zmm0" ::: "xmm0");
}
static bool probe_bf16(void) {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = probe_sigill;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGILL, &sa, &old) != 0) return false;
    volatile bool ok = false;
    if (!sigsetjmp(probe_jmp, 1)) {
        probe_bf16_insn();
        ok = true;
    }
    sigaction(SIGILL, &old, NULL);
    return ok;
}

static ld_cpu_features detect(void) {
    ld_cpu_features f = {0};
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    bool osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave) return f;
    uint32_t xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    bool ymm_ok = (xlo & 0x6) == 0x6, zmm_ok = (xlo & 0xe6) == 0xe6;
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = ymm_ok && ((b >> 5) & 1);
    f.fma = ymm_ok && fma;
    f.f16c = ymm_ok && f16c;
    f.avx512f = zmm_ok && ((b >> 16) & 1);
    f.avx512dq = zmm_ok && ((b >> 17) & 1);
    f.avx512bw = zmm_ok && ((b >> 30) & 1);
    f.avx512vl = zmm_ok && ((b >> 31) & 1);
    f.avx512_vnni = zmm_ok && ((c >> 11) & 1);
    __cpuid_count(7, 1, a, b, c, d);
    f.avx512_bf16 = zmm_ok && ((a >> 5) & 1);
    f.avx_vnni = ymm_ok && ((a >> 4) & 1);
    if (f.avx512f && !f.avx512_bf16 && !getenv("LD_NO_BF16_PROBE")) f.avx512_bf16 = probe_bf16();
    return f;
}
#else
static ld_cpu_features detect(void) {
    return (ld_cpu_features){0};
}
#endif

const ld_cpu_features *ld_cpu_features_get(void) {
    static ld_cpu_features f;
    static int done;
    if (!__atomic_load_n(&done, __ATOMIC_ACQUIRE)) {
        f = detect();
        __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    }
    return &f;
}

/* ---- levels ---- */
static const char *const ISA_NAMES[LD_ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};
/* The level each one builds on (kernels.h: the chains). */
static const ld_isa BELOW[LD_ISA_COUNT] = {LD_ISA_SCALAR, LD_ISA_SCALAR, LD_ISA_AVX2, LD_ISA_SCALAR};

bool ld_isa_includes(ld_isa isa, ld_isa part) {
    if ((int)isa < 0 || isa >= LD_ISA_COUNT || (int)part < 0 || part >= LD_ISA_COUNT) return false;
    for (;;) {
        if (isa == part) return true;
        if (isa == LD_ISA_SCALAR) return false;
        isa = BELOW[isa];
    }
}

const char *ld_isa_name(ld_isa isa) {
    return (int)isa >= 0 && isa < LD_ISA_COUNT ? ISA_NAMES[isa] : NULL;
}

bool ld_isa_parse(const char *s, ld_isa *out) {
    for (int i = 0; s && i < LD_ISA_COUNT; i++)
        if (!strcmp(s, ISA_NAMES[i])) return *out = (ld_isa)i, true;
    return false;
}

ld_isa ld_isa_detected(void) {
#if LD_ARCH_ARM64
    return LD_ISA_NEON; /* Advanced SIMD is part of AArch64 */
#else
    const ld_cpu_features *f = ld_cpu_features_get();
    if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq && f->avx2 && f->fma && f->f16c) return LD_ISA_AVX512;
    if (f->avx2 && f->fma && f->f16c) return LD_ISA_AVX2;
    return LD_ISA_SCALAR;
#endif
}

int ld_isa_env(ld_isa *asked) {
    const char *s = getenv("LD_ISA");
    if (!s || !*s) return 0;
    return ld_isa_parse(s, asked) ? 1 : -1;
}

ld_isa ld_isa_active(void) {
    static int level = -1;
    int l = __atomic_load_n(&level, __ATOMIC_ACQUIRE);
    if (l < 0) {
        ld_isa isa = ld_isa_detected(), asked;
        if (ld_isa_env(&asked) == 1 && ld_isa_includes(isa, asked)) isa = asked;
        l = (int)isa;
        __atomic_store_n(&level, l, __ATOMIC_RELEASE);
    }
    return (ld_isa)l;
}

/* the public names (liandan/core.h) */
const char *ld_cpu_level(void) {
    return ld_isa_name(ld_isa_active());
}

int ld_cpu_level_env(const char **widest) {
    ld_isa asked;
    if (widest) *widest = ld_isa_name(ld_isa_detected());
    return ld_isa_env(&asked);
}

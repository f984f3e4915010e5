/* quant/qgemm_avx512.c — AVX-512 VNNI parts of the int8 GEMM (qgemm.c): the activation
 * quantizer and the register-blocked microkernel. Called only after a CPUID check. Byte
 * panels are packed by the AVX2 level's packer (qgemm_avx2_impl.h: the same panel layout;
 * vectorized levels of more types and 8 columns per transpose: 1.1-7x faster per panel than
 * the AVX-512 packer it replaced, which copied 4 bytes per column and k-step).
 *
 * Microkernel: an MR x 48 tile of C. Per group of K it keeps MR x 3 int32 accumulators,
 * started at -zp * (the activation group's sum); each step of 4 k multiplies three 64-byte
 * level vectors (16 columns x 4 bytes) by one broadcast 4-byte activation word per row
 * (vpdpbusd: unsigned levels x signed activations). After the group, the sums become float
 * and are scaled into MR x 3 float accumulators; those stay in registers across groups.
 * Every lane does the reference's operations in the reference's order. */
#include <immintrin.h>
#include <string.h>

#include "quant/qgemm.h"

#define NV (LD_QGEMM_NR / 16)

void ld_qgemm_quantize_act_avx512(const ld_qgemm_format *f, const float *x, int64_t n, int8_t *q, ld_qgemm_agroup *g) {
    const int G = f->group; /* 16 or 32: one or two vectors */
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int64_t b = 0; b < n / G; b++) {
        const float *xb = x + b * G;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = G == 32 ? _mm512_loadu_ps(xb + 16) : _mm512_setzero_ps();
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(v0, absmask), _mm512_and_ps(v1, absmask)));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v0, vid)), lo), hi);
        __m512i q1 = _mm512_min_epi32(_mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v1, vid)), lo), hi);
        _mm_storeu_si128((__m128i *)(q + b * G), _mm512_cvtepi32_epi8(q0));
        if (G == 32) _mm_storeu_si128((__m128i *)(q + b * G + 16), _mm512_cvtepi32_epi8(q1));
        const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        g[b] = (ld_qgemm_agroup){d, -f->zp * sum, d * (float)sum, 0.0f};
    }
}

static inline __attribute__((always_inline)) void kernel(const int MR, const int G, const bool MIN, int64_t ngroups,
                                                         const uint8_t *panel, const int8_t *q, size_t qs,
                                                         const ld_qgemm_agroup *ag, size_t gs, float *C, int64_t ldc,
                                                         uint64_t cmask, const uint8_t *pf, int pf_lines) {
    const size_t gb = (size_t)G * LD_QGEMM_NR + (MIN ? 2 : 1) * LD_QGEMM_NR * sizeof(float);
    __mmask16 mk[NV];
    __m512 f[4][NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) mk[v] = (__mmask16)(cmask >> (16 * v));
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            f[r][v] = _mm512_setzero_ps();
    for (int64_t b = 0; b < ngroups; b++) {
        const uint8_t *pb = panel + (size_t)b * gb;
        for (int i = 0; i < pf_lines; i++) _mm_prefetch((const char *)pf + ((size_t)b * (size_t)pf_lines + (size_t)i) * 64, _MM_HINT_T1);
        __m512i acc[4][NV];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const __m512i z = _mm512_set1_epi32(ag[r * gs + b].zsum);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = z;
        }
#pragma GCC unroll 8
        for (int k = 0; k < G / 4; k++) {
            __m512i w[NV];
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) w[v] = _mm512_load_si512((const void *)(pb + (size_t)(k * NV + v) * 64));
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                int32_t a4;
                memcpy(&a4, q + r * qs + (size_t)b * G + 4 * k, 4);
                const __m512i a = _mm512_set1_epi32(a4);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], w[v], a);
            }
        }
        const float *sv = (const float *)(pb + (size_t)G * LD_QGEMM_NR);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            const __m512 s = _mm512_load_ps(sv + 16 * v);
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++)
                f[r][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][v]), _mm512_mul_ps(s, _mm512_set1_ps(ag[r * gs + b].d)),
                                          f[r][v]);
        }
    }
    if (MIN) { /* the offsets' term, summed apart (fewer live registers in the loop above) */
        __m512 mo[4][NV];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) mo[r][v] = _mm512_setzero_ps();
        for (int64_t b = 0; b < ngroups; b++) {
            const float *ov = (const float *)(panel + (size_t)b * gb + (size_t)G * LD_QGEMM_NR) + LD_QGEMM_NR;
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                const __m512 o = _mm512_load_ps(ov + 16 * v);
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++) mo[r][v] = _mm512_fmadd_ps(o, _mm512_set1_ps(ag[r * gs + b].dsum), mo[r][v]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) f[r][v] = _mm512_add_ps(f[r][v], mo[r][v]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_mask_storeu_ps(C + r * ldc + 16 * v, mk[v], f[r][v]);
}

#define KERNEL_MR(G, MIN)                                                                                   \
    switch (mr) {                                                                                           \
    case 1: kernel(1, G, MIN, ngroups, panel, q, qs, g, gs, C, ldc, cmask, pf, pf_lines); break;            \
    case 2: kernel(2, G, MIN, ngroups, panel, q, qs, g, gs, C, ldc, cmask, pf, pf_lines); break;            \
    case 3: kernel(3, G, MIN, ngroups, panel, q, qs, g, gs, C, ldc, cmask, pf, pf_lines); break;            \
    default: kernel(4, G, MIN, ngroups, panel, q, qs, g, gs, C, ldc, cmask, pf, pf_lines); break;           \
    }

_Static_assert(LD_QGEMM_MR == 4 && LD_QGEMM_NR % 16 == 0, "the kernel is written for 4-row tiles of 16-column vectors");

/* ld_qgemm_kernel_avx512, prefetching as ld_qgemm_kernel_pf_fn says (pf_lines 0: nothing). */
static void kernel_groups_pf(const ld_qgemm_format *f, int mr, int64_t ngroups, const uint8_t *panel, const int8_t *q,
                             size_t qs, const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask,
                             const uint8_t *pf, int pf_lines) {
    if (f->group == 16 && f->has_min) KERNEL_MR(16, true) /* Q2_K */
    else if (f->group == 16) KERNEL_MR(16, false)
    else if (f->has_min) KERNEL_MR(32, true)
    else KERNEL_MR(32, false)
}

void ld_qgemm_kernel_avx512(const ld_qgemm_format *f, int mr, int64_t ngroups, const uint8_t *panel, const int8_t *q,
                            size_t qs, const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask) {
    const uint8_t *pf = NULL;
    const int pf_lines = 0;
    if (f->group == 16 && f->has_min) KERNEL_MR(16, true) /* Q2_K */
    else if (f->group == 16) KERNEL_MR(16, false)
    else if (f->has_min) KERNEL_MR(32, true)
    else KERNEL_MR(32, false)
}

/* ---- this ISA's int8 GEMM (ld_qgemm_isa: the kernels take K; quant/qgemm.c overlays it on
 * CPUs with AVX-512 VNNI) ---- */
static void kernel_bytes(const ld_qgemm_format *f, int mr, int64_t K, const uint8_t *panel, const int8_t *q, size_t qs,
                         const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask) {
    ld_qgemm_kernel_avx512(f, mr, K / f->group, panel, q, qs, g, gs, C, ldc, cmask);
}
static void kernel_bytes_pf(const ld_qgemm_format *f, int mr, int64_t K, const uint8_t *panel, const int8_t *q, size_t qs,
                            const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask, const uint8_t *pf,
                            int pf_lines) {
    kernel_groups_pf(f, mr, K / f->group, panel, q, qs, g, gs, C, ldc, cmask, pf, pf_lines);
}
static void kernel_q4_K(const ld_qgemm_format *f, int mr, int64_t K, const uint8_t *panel, const int8_t *q, size_t qs,
                        const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask) {
    (void)f;
    ld_qgemm_k4_kernel_avx512(mr, K / LD_QK_K, panel, q, qs, g, gs, C, ldc, cmask);
}
const ld_qgemm_isa ld_qgemm_isa_avx512 = {
    .quantize_act = ld_qgemm_quantize_act_avx512,
    .pack = NULL, /* the AVX2 level's (see the top of this file) */
    .kernel = {[LD_QPANEL_BYTES] = kernel_bytes, [LD_QPANEL_Q4_K] = kernel_q4_K},
    .kernel_pf = {[LD_QPANEL_BYTES] = kernel_bytes_pf},
};

/* quant/qgemm_k4_avx512.c — the AVX-512 VNNI microkernel of prepacked Q4_K panels (4 bits a
 * level; packed by quant/qgemm_pack.c), the int8 GEMM of qgemm.c for weights kept as
 * ld_qpack panels.
 *
 * The byte-per-level panels of the other types would double what a decode step reads for
 * a 4.5-bit type, so Q4_K keeps its nibbles: per super-block (256 of K) and 48 columns,
 *     d[48], dmin[48]        fp16, the blocks' own scales          192 bytes
 *     sc[8][48], m[8][48]    6-bit sub-block scales and mins         768 bytes
 *     8 groups x [4 pairs of k-steps][3 x 16 columns][4 bytes]     6144 bytes
 * where a pair's byte holds k-step 2p in its low nibble and 2p+1 in its high one: one
 * 64-byte load and three instructions give two vpdpbusd operands. 4.625 bits a weight
 * (Q4_K: 4.5). Per group, the kernel rebuilds s = d*sc and o = -(dmin*m) exactly as the
 * scalar levels form does, so results equal the reference (qgemm.c) bit for bit. */
#include <immintrin.h>
#include <string.h>

#include "quant/qgemm.h"

#define NV (LD_QGEMM_NR / 16)
enum { HDR = 4 * LD_QGEMM_NR + 16 * LD_QGEMM_NR, GROUP_LV = 32 * LD_QGEMM_NR / 2 };
_Static_assert(HDR + 8 * GROUP_LV == LD_QGEMM_K4_SB_BYTES && HDR % 64 == 0, "Q4_K panel layout");

/* 16 fp16 at p as floats; 16 bytes at p as floats. */
static inline __m512 half16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline __m512 byte16(const uint8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

static inline __attribute__((always_inline)) void kernel(const int MR, int64_t nsb, const uint8_t *panel, const int8_t *q,
                                                         size_t qs, const ld_qgemm_agroup *ag, size_t gs, float *C,
                                                         int64_t ldc, uint64_t cmask) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512 f[4][NV];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) f[r][v] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = panel + (size_t)i * LD_QGEMM_K4_SB_BYTES;
        for (int o = 0; o < HDR; o += 64) _mm_prefetch((const char *)sb + LD_QGEMM_K4_SB_BYTES + o, _MM_HINT_T0);
        for (int g = 0; g < 8; g++) {
            const int64_t b = i * 8 + g; /* the activation group */
            const uint8_t *lv = sb + HDR + (size_t)g * GROUP_LV;
            for (int o = 0; o < GROUP_LV; o += 64) _mm_prefetch((const char *)lv + 4096 + o, _MM_HINT_T0);
            __m512i acc[4][NV];
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int p = 0; p < 4; p++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) {
                    const __m512i raw = _mm512_load_si512((const void *)(lv + (size_t)(p * NV + v) * 64));
                    const __m512i lo = _mm512_and_si512(raw, m4), hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
#pragma GCC unroll 4
                    for (int r = 0; r < MR; r++) {
                        int32_t a0, a1;
                        memcpy(&a0, q + r * qs + (size_t)b * 32 + 8 * p, 4);
                        memcpy(&a1, q + r * qs + (size_t)b * 32 + 8 * p + 4, 4);
                        acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], lo, _mm512_set1_epi32(a0));
                        acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], hi, _mm512_set1_epi32(a1));
                    }
                }
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                const __m512 s = _mm512_mul_ps(half16(sb + 32 * v), byte16(sb + 4 * LD_QGEMM_NR + g * LD_QGEMM_NR + 16 * v));
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++)
                    f[r][v] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][v]), _mm512_mul_ps(s, _mm512_set1_ps(ag[r * gs + b].d)),
                                              f[r][v]);
            }
        }
    }
    /* the mins' term, summed apart as in the reference */
    __m512 mo[4][NV];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) mo[r][v] = _mm512_setzero_ps();
    const __m512 sign = _mm512_set1_ps(-0.0f);
    for (int64_t i = 0; i < nsb; i++) {
        const uint8_t *sb = panel + (size_t)i * LD_QGEMM_K4_SB_BYTES;
        for (int g = 0; g < 8; g++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                const __m512 o = _mm512_xor_ps(
                    _mm512_mul_ps(half16(sb + 2 * LD_QGEMM_NR + 32 * v), byte16(sb + 12 * LD_QGEMM_NR + g * LD_QGEMM_NR + 16 * v)),
                    sign);
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++)
                    mo[r][v] = _mm512_fmadd_ps(o, _mm512_set1_ps(ag[r * gs + i * 8 + g].dsum), mo[r][v]);
            }
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm512_mask_storeu_ps(C + r * ldc + 16 * v, (__mmask16)(cmask >> (16 * v)), _mm512_add_ps(f[r][v], mo[r][v]));
}

void ld_qgemm_k4_kernel_avx512(int mr, int64_t nsb, const uint8_t *panel, const int8_t *q, size_t qs,
                               const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask) {
    switch (mr) {
    case 1: kernel(1, nsb, panel, q, qs, g, gs, C, ldc, cmask); break;
    case 2: kernel(2, nsb, panel, q, qs, g, gs, C, ldc, cmask); break;
    case 3: kernel(3, nsb, panel, q, qs, g, gs, C, ldc, cmask); break;
    default: kernel(4, nsb, panel, q, qs, g, gs, C, ldc, cmask); break;
    }
}

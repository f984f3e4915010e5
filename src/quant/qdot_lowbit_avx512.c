/* quant/qdot_lowbit_avx512.c — AVX-512 dot kernels of the low-bit K-quants Q2_K and Q3_K with
 * Q8_K activations (decode). Called only after a CPUID check (AVX-512 BW).
 *
 * The AVX2 kernels (qdot_lowbit_avx2.c) widened to 64 weights a step: the 2-bit fields of
 * elements 128h + 32j + m live in bits 2j..2j+1 of qs[32h + m], so one 32-byte load of
 * qs[32h ..] broadcast to both halves and shifted right by 2j in the lower half and 2j + 2 in
 * the upper gives the fields of elements 128h + 32j .. + 63 (j = 0, 2), masked to 2 bits per
 * byte. Products with the int8 activations are summed in pairs (vpmaddubsw: levels <= 7, so
 * |pair| <= 1778, exact in int16) and multiplied by the group scale of their 16 elements
 * (vpmaddwd with each scale repeated over its group's 8 pair lanes), into int32 lanes; the
 * super-block's integer sums are the reference's exactly, and its float steps (one fmaf per
 * sum, in the reference's order) are the same, so results equal the scalar reference bit for
 * bit. 2x the AVX2 kernels' weights per instruction: on Zen 5 the AVX2 ones ran at ~11 GB/s of
 * weights per core in cache, a third of a core's read bandwidth. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

static inline float fp16(uint16_t h) {
    return _cvtsh_ss(h);
}

static inline int32_t hsum512(__m512i v) {
    return _mm512_reduce_add_epi32(v);
}

/* 32 bytes at p in both 256-bit halves. */
static inline __m512i bcast32(const uint8_t *p) {
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* The group scales of elements 64s .. 64s + 63 (groups 4s .. 4s + 3) for vpmaddwd: int16
 * lane l (pair 2l, 2l + 1) gets scale 4s + l / 8, from the 16 scales in S's low 256 bits. */
static inline __m512i scales64(__m512i S, int s) {
    const __m512i idx = _mm512_add_epi16(_mm512_set_epi16(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1,
                                                          1, 0, 0, 0, 0, 0, 0, 0, 0),
                                         _mm512_set1_epi16((short)(4 * s)));
    return _mm512_permutexvar_epi16(idx, S);
}

/* Shift counts of the two halves: bits 2j (lower) and 2j + 2 (upper), j = 0 or 2. */
static inline __m512i half_shifts(int lo, int hi) {
    return _mm512_set_epi64(hi, hi, hi, hi, lo, lo, lo, lo);
}

static float ld_vec_dot_q2_K_q8_K_avx512(int64_t n, const void *w_, const void *a_) {
    const ld_block_q2_K *w = w_;
    const ld_block_q8_K *a = a_;
    const __m512i m3 = _mm512_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0xF);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        const __m128i sc = _mm_loadu_si128((const __m128i *)w->scales);
        const __m512i S = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sc, m4)));
        const __m256i M = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
        const __m256i mprod = _mm256_madd_epi16(M, _mm256_loadu_si256((const __m256i *)a->bsums));
        __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int h = 0; h < 2; h++) {
            const __m512i v = bcast32(w->qs + 32 * h);
#pragma GCC unroll 2
            for (int j = 0; j < 4; j += 2) {
                const __m512i q = _mm512_and_si512(_mm512_srlv_epi64(v, half_shifts(2 * j, 2 * j + 2)), m3);
                const __m512i p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(a->qs + 128 * h + 32 * j));
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(p, scales64(S, 2 * h + j / 2)));
            }
        }
        const int32_t isum = hsum512(acc);
        __m128i ms = _mm_add_epi32(_mm256_castsi256_si128(mprod), _mm256_extracti128_si256(mprod, 1));
        ms = _mm_add_epi32(ms, _mm_shuffle_epi32(ms, 0x4E));
        ms = _mm_add_epi32(ms, _mm_shuffle_epi32(ms, 0xB1));
        const int32_t msum = _mm_cvtsi128_si32(ms);
        const float dall = fp16(w->d) * a->d, dmin = fp16(w->dmin) * a->d;
        sum = fmaf(dall, (float)isum, sum);
        sum = fmaf(-dmin, (float)msum, sum);
    }
    return sum;
}

static float ld_vec_dot_q3_K_q8_K_avx512(int64_t n, const void *w_, const void *a_) {
    const ld_block_q3_K *w = w_;
    const ld_block_q8_K *a = a_;
    const __m512i m3 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        /* the 16 6-bit scales (ld_q3_K_scale) as bytes, minus 32 */
        uint32_t lo0, lo1, hi;
        memcpy(&lo0, w->scales, 4), memcpy(&lo1, w->scales + 4, 4), memcpy(&hi, w->scales + 8, 4);
        const uint32_t k2 = 0x0F0F0F0F, k1 = 0x03030303;
        const __m128i sc = _mm_sub_epi8(_mm_set_epi32((int)(((lo1 >> 4) & k2) | (((hi >> 6) & k1) << 4)),
                                                      (int)(((lo0 >> 4) & k2) | (((hi >> 4) & k1) << 4)),
                                                      (int)((lo1 & k2) | (((hi >> 2) & k1) << 4)), (int)((lo0 & k2) | ((hi & k1) << 4))),
                                        _mm_set1_epi8(32));
        const __m256i S16 = _mm256_cvtepi8_epi16(sc);
        const __m512i S = _mm512_castsi256_si512(S16);
        const __m512i H = bcast32(w->hmask);
        /* level L = q + 4 * hbit in 0..7, value L - 4: sum s_g (L . a) - 4 sum s_g bsum_g */
        const __m256i sb = _mm256_slli_epi32(_mm256_madd_epi16(S16, _mm256_loadu_si256((const __m256i *)a->bsums)), 2);
        __m512i acc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_castsi256_si512(sb));
#pragma GCC unroll 4
        for (int h = 0; h < 2; h++) {
            const __m512i v = bcast32(w->qs + 32 * h);
#pragma GCC unroll 2
            for (int j = 0; j < 4; j += 2) {
                const __m512i hb = _mm512_and_si512(_mm512_srlv_epi64(H, half_shifts(4 * h + j, 4 * h + j + 1)), one);
                const __m512i L = _mm512_or_si512(_mm512_and_si512(_mm512_srlv_epi64(v, half_shifts(2 * j, 2 * j + 2)), m3),
                                                  _mm512_slli_epi16(hb, 2));
                const __m512i p = _mm512_maddubs_epi16(L, _mm512_loadu_si512(a->qs + 128 * h + 32 * j));
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(p, scales64(S, 2 * h + j / 2)));
            }
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum512(acc), sum);
    }
    return sum;
}

/* ---- the AVX-512 level's rows of these types (quant.c overlays them on CPUs with AVX-512
 * VNNI, whose level the AVX-512 BW these need comes with) ---- */
const ld_quant_isa_row ld_quant_rows_lowbit_avx512[LD_DTYPE_COUNT] = {
    [LD_Q2_K] = {ld_quantize_act_q8_K_avx512, ld_vec_dot_q2_K_q8_K_avx512, NULL},
    [LD_Q3_K] = {ld_quantize_act_q8_K_avx512, ld_vec_dot_q3_K_q8_K_avx512, NULL},
};

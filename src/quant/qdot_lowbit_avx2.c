/* quant/qdot_lowbit_avx2.c — AVX2 dot kernels of the low-bit weight formats (quant_lowbit.h)
 * with Q8_K activations (Q8_0 for IQ4_NL). Called only after a CPUID check (AVX2 + FMA).
 *
 * Each kernel computes, per super-block, the same exact int32 sum as its scalar reference
 * and adds it into the float result with the reference's single fmaf, so results are
 * bit-identical to the reference. Weights become bytes per 32 elements (bit fields, grid
 * points or level tables), and are multiplied with the int8 activations by vpmaddubsw
 * (unsigned x signed bytes; signed weights go through vpsignb: |w| x sign(w)*a); products
 * stay below 2^15 in every format. Group scales (integers) are applied with vpmaddwd. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

static inline __m256i load(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

static inline int32_t hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* The sums of the 8 lanes of a and of b. */
static inline void hsum2(__m256i a, __m256i b, int32_t *ra, int32_t *rb) {
    const __m256i h = _mm256_hadd_epi32(a, b); /* a01 a23 b01 b23 | a45 a67 b45 b67 */
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_hadd_epi32(s, s); /* a b a b */
    *ra = _mm_cvtsi128_si32(s);
    *rb = _mm_extract_epi32(s, 1);
}

static inline float fp16(uint16_t h) {
    return _cvtsh_ss(h);
}

static inline uint32_t u32_at(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 32 sign bits (bit j of byte k = weight 8k + j) -> bytes 0xFF where set. */
static inline __m256i bits_to_mask(uint32_t bits) {
    const __m256i spread = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* a with the sign of each byte flipped where mask is 0xFF. */
static inline __m256i negate_where(__m256i a, __m256i mask) {
    return _mm256_sign_epi8(a, _mm256_or_si256(mask, _mm256_set1_epi8(1)));
}

/* int16 sums of adjacent products of signed bytes w and a (|w|, |a| <= 127). */
static inline __m256i mul_signed(__m256i w, __m256i a) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

/* int16 scales: the lower 8 lanes lo, the upper 8 hi (the two 16-weight halves of 32). */
static inline __m256i scale_pair(int lo, int hi) {
    return _mm256_set_m128i(_mm_set1_epi16((short)hi), _mm_set1_epi16((short)lo));
}

/* ---- Q2_K, Q3_K: 2-bit fields, 16 groups of 16 ------------------------------------------- */
/* Selects int16 word 2j in the lower 128 bits and word 2j + 1 in the upper (of a vector
 * holding 8 group scales in both halves): the scales of the 32 weights 32j .. 32j+31. */
static inline __m256i group_scales(__m256i s8x2, int j) {
    const __m256i ctl0 = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                                          2, 3, 2, 3);
    return _mm256_shuffle_epi8(s8x2, _mm256_add_epi8(ctl0, _mm256_set1_epi8((char)(4 * j))));
}

float ld_vec_dot_q2_K_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_q2_K *w = w_;
    const ld_block_q8_K *a = a_;
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m4 = _mm_set1_epi8(0xF);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        const __m128i sc = _mm_loadu_si128((const __m128i *)w->scales);
        const __m256i S = _mm256_cvtepu8_epi16(_mm_and_si128(sc, m4));
        const __m256i M = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
        const __m256i mprod = _mm256_madd_epi16(M, load(a->bsums));
        const __m256i S0 = _mm256_permute2x128_si256(S, S, 0x00), S1 = _mm256_permute2x128_si256(S, S, 0x11);
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i v = load(w->qs + 32 * h);
            const __m256i Sh = h ? S1 : S0;
            #pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                const __m256i q = _mm256_and_si256(_mm256_srli_epi16(v, 2 * j), m3);
                const __m256i p = _mm256_maddubs_epi16(q, load(a->qs + 128 * h + 32 * j));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, group_scales(Sh, j)));
            }
        }
        int32_t isum, msum;
        hsum2(acc, mprod, &isum, &msum);
        const float dall = fp16(w->d) * a->d, dmin = fp16(w->dmin) * a->d;
        sum = fmaf(dall, (float)isum, sum);
        sum = fmaf(-dmin, (float)msum, sum);
    }
    return sum;
}

float ld_vec_dot_q3_K_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_q3_K *w = w_;
    const ld_block_q8_K *a = a_;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        /* the 16 6-bit scales (ld_q3_K_scale) as bytes, four at a time */
        const uint32_t lo0 = u32_at(w->scales), lo1 = u32_at(w->scales + 4), hi = u32_at(w->scales + 8);
        const uint32_t k2 = 0x0F0F0F0F, k1 = 0x03030303;
        /* built in registers: storing four words and loading them as one vector stalls */
        const __m128i sc = _mm_sub_epi8(_mm_set_epi32((int)(((lo1 >> 4) & k2) | (((hi >> 6) & k1) << 4)),
                                                      (int)(((lo0 >> 4) & k2) | (((hi >> 4) & k1) << 4)),
                                                      (int)((lo1 & k2) | (((hi >> 2) & k1) << 4)), (int)((lo0 & k2) | ((hi & k1) << 4))),
                                        _mm_set1_epi8(32));
        const __m256i S = _mm256_cvtepi8_epi16(sc);
        const __m256i S0 = _mm256_permute2x128_si256(S, S, 0x00), S1 = _mm256_permute2x128_si256(S, S, 0x11);
        const __m256i H = load(w->hmask);
        /* level L = q + 4 * hbit in 0..7, value L - 4: sum s_g (L . a) - 4 sum s_g bsum_g */
        __m256i acc = _mm256_slli_epi32(_mm256_madd_epi16(S, load(a->bsums)), 2);
        acc = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
#pragma GCC unroll 8
        for (int h = 0; h < 2; h++) {
            const __m256i v = load(w->qs + 32 * h);
            const __m256i Sh = h ? S1 : S0;
#pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(H, 4 * h + j), one);
                const __m256i L = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 2 * j), m3), _mm256_slli_epi16(hb, 2));
                const __m256i p = _mm256_maddubs_epi16(L, load(a->qs + 128 * h + 32 * j));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, group_scales(Sh, j)));
            }
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum;
}

/* ---- TQ1_0, TQ2_0: ternary digits t in 0..2, sum t*a - sum a ------------------------------ */
/* Each block's maddubs products (|t*a| pairs <= 508) are summed in int16 (<= 8 vectors:
 * <= 4064), widened once, and start from minus the activation sum (the block sums). */
static inline __m256i minus_bsums(const ld_block_q8_K *a) {
    return _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_madd_epi16(load(a->bsums), _mm256_set1_epi16(1)));
}

float ld_vec_dot_tq2_0_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_tq2_0 *w = w_;
    const ld_block_q8_K *a = a_;
    const __m256i m3 = _mm256_set1_epi8(3);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i s16 = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int c = 0; c < 2; c++) {
            const __m256i v = load(w->qs + 32 * c);
#pragma GCC unroll 8
            for (int l = 0; l < 4; l++) {
                const __m256i t = _mm256_and_si256(_mm256_srli_epi16(v, 2 * l), m3);
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(t, load(a->qs + 128 * c + 32 * l)));
            }
        }
        const __m256i acc = _mm256_add_epi32(minus_bsums(a), _mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum;
}

/* Base-3 digits of the bytes of v: ((uint8_t)(b * P) * 3) >> 8 with P the 16-bit lane's
 * multiplier (a power of 3), for both bytes of each lane: the product mod 256 lands in the
 * lane's high byte (the low byte shifted up, the high byte multiplied in place), and
 * mulhi(q << 8, 3) = (q * 3) >> 8. vhi = v & 0xFF00. */
static inline __m256i trits(__m256i v, __m256i vhi, __m256i P) {
    const __m256i three = _mm256_set1_epi16(3);
    const __m256i lo = _mm256_mulhi_epu16(_mm256_slli_epi16(_mm256_mullo_epi16(v, P), 8), three);
    const __m256i hi = _mm256_mulhi_epu16(_mm256_mullo_epi16(vhi, P), three);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 8));
}

float ld_vec_dot_tq1_0_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_tq1_0 *w = w_;
    const ld_block_q8_K *a = a_;
    const __m256i himask = _mm256_set1_epi16((short)0xFF00);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i s16 = _mm256_setzero_si256();
        /* elements 32k + m (k < 5): digit k of qs[m] */
        const __m256i v = load(w->qs), vhi = _mm256_and_si256(v, himask);
        static const short pow3[5] = {1, 3, 9, 27, 81};
#pragma GCC unroll 8
        for (int k = 0; k < 5; k++)
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(trits(v, vhi, _mm256_set1_epi16(pow3[k])), load(a->qs + 32 * k)));
        /* elements 160 + 16k + m: digit k of qs[32 + m], two digits per vector (one per 128-bit
         * half); elements 240 + 4k + j: digit k of qh[j], in the upper half of the third */
        const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(w->qs + 32)));
        const __m256i h = _mm256_set_m128i(_mm_set1_epi32((int)u32_at(w->qh)), _mm_loadu_si128((const __m128i *)(w->qs + 32)));
        const __m256i tails[3][2] = {
            {t, _mm256_set_m128i(_mm_set1_epi16(3), _mm_set1_epi16(1))},
            {t, _mm256_set_m128i(_mm_set1_epi16(27), _mm_set1_epi16(9))},
            {h, _mm256_set_m128i(_mm_setr_epi16(1, 1, 3, 3, 9, 9, 27, 27), _mm_set1_epi16(81))},
        };
#pragma GCC unroll 8
        for (int p = 0; p < 3; p++) {
            const __m256i x = tails[p][0];
            s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(trits(x, _mm256_and_si256(x, himask), tails[p][1]),
                                                             load(a->qs + 160 + 32 * p)));
        }
        const __m256i acc = _mm256_add_epi32(minus_bsums(a), _mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum;
}

/* ---- IQ4_NL, IQ4_XS: 16 non-linear levels ----------------------------------------------- */
/* The 32 signed levels of 16 bytes of nibbles: low nibbles first, then high nibbles. */
static inline __m256i iq4_levels(const uint8_t *qs) {
    const __m128i kv = _mm_loadu_si128((const __m128i *)ld_kvalues_iq4nl), m4 = _mm_set1_epi8(0xF);
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_set_m128i(_mm_shuffle_epi8(kv, _mm_and_si128(_mm_srli_epi16(q, 4), m4)), _mm_shuffle_epi8(kv, _mm_and_si128(q, m4)));
}

static inline __m256i iq4_block(const ld_block_iq4_nl *w, const ld_block_q8_0 *a) {
    return _mm256_madd_epi16(mul_signed(iq4_levels(w->qs), load(a->qs)), _mm256_set1_epi16(1));
}

/* The int32 sums of four vectors as the four lanes of one (v_k in lane k). */
static inline __m128i hsum4(__m256i v0, __m256i v1, __m256i v2, __m256i v3) {
    const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v0, v1), _mm256_hadd_epi32(v2, v3));
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

float ld_vec_dot_iq4_nl_q8_0_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq4_nl *w = w_;
    const ld_block_q8_0 *a = a_;
    const int64_t nb = n / 32;
    /* block i goes into sum i % 4, as in the reference: lane k of s holds sum k, and each
     * lane's fmadd is the reference's fmaf (the fp16 scales convert exactly, one rounded
     * product each) */
    __m128 s = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        const __m128i isum = hsum4(iq4_block(w + i, a + i), iq4_block(w + i + 1, a + i + 1), iq4_block(w + i + 2, a + i + 2),
                                   iq4_block(w + i + 3, a + i + 3));
        const __m256 h = _mm256_cvtph_ps(_mm_setr_epi16((short)w[i].d, (short)w[i + 1].d, (short)w[i + 2].d, (short)w[i + 3].d,
                                                        (short)a[i].d, (short)a[i + 1].d, (short)a[i + 2].d, (short)a[i + 3].d));
        const __m128 d = _mm_mul_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
        s = _mm_fmadd_ps(d, _mm_cvtepi32_ps(isum), s);
    }
    float sk[4];
    _mm_storeu_ps(sk, s);
    for (int k = 0; i < nb; i++, k++)
        sk[k] = fmaf(fp16(w[i].d) * fp16(a[i].d), (float)hsum(iq4_block(w + i, a + i)), sk[k]);
    return (sk[0] + sk[1]) + (sk[2] + sk[3]);
}

float ld_vec_dot_iq4_xs_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq4_xs *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const int ls = (((w->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((w->scales_h >> (2 * ib)) & 3) << 4)) - 32;
            const __m256i p = mul_signed(iq4_levels(w->qs + 16 * ib), load(a->qs + 32 * ib));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16((short)ls)));
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum;
}

/* ---- IQ2_*, IQ3_*: grid magnitudes x signed activations ----------------------------------- */
/* Adds (grid * sign) . a, scaled per 16 by `scales`, for 32 weights into acc; `neg` has
 * bytes 0xFF where the weight is negative. */
static inline __m256i grid_step(__m256i acc, __m256i grid, __m256i neg, const int8_t *q8, __m256i scales) {
    const __m256i p = _mm256_maddubs_epi16(grid, negate_where(load(q8), neg));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, scales));
}

/* Four 7-bit sign codes (bits 7l..7l+6 of `codes`) as byte masks. */
static inline __m256i ksigns4(uint32_t codes) {
    return _mm256_set_epi64x((long long)ld_ksigns64[(codes >> 21) & 127], (long long)ld_ksigns64[(codes >> 14) & 127],
                             (long long)ld_ksigns64[(codes >> 7) & 127], (long long)ld_ksigns64[codes & 127]);
}

float ld_vec_dot_iq2_xxs_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq2_xxs *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const uint32_t idx = u32_at(w->qs + 4 * ib), sg = u32_at(w->qs + 4 * ib + 2);
            const __m256i grid = _mm256_set_epi64x((long long)ld_iq2xxs_grid[idx >> 24], (long long)ld_iq2xxs_grid[(idx >> 16) & 255],
                                                   (long long)ld_iq2xxs_grid[(idx >> 8) & 255], (long long)ld_iq2xxs_grid[idx & 255]);
            acc = grid_step(acc, grid, ksigns4(sg), a->qs + 32 * ib, _mm256_set1_epi16((short)(2 * (sg >> 28) + 1)));
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum * 0.125f;
}

float ld_vec_dot_iq2_xs_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq2_xs *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t *q = w->qs + 4 * ib;
            const __m256i grid = _mm256_set_epi64x((long long)ld_iq2xs_grid[q[3] & 511], (long long)ld_iq2xs_grid[q[2] & 511],
                                                   (long long)ld_iq2xs_grid[q[1] & 511], (long long)ld_iq2xs_grid[q[0] & 511]);
            const __m256i signs = _mm256_set_epi64x((long long)ld_ksigns64[q[3] >> 9], (long long)ld_ksigns64[q[2] >> 9],
                                                    (long long)ld_ksigns64[q[1] >> 9], (long long)ld_ksigns64[q[0] >> 9]);
            const int sc = w->scales[ib];
            acc = grid_step(acc, grid, signs, a->qs + 32 * ib, scale_pair(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1));
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum * 0.125f;
}

float ld_vec_dot_iq2_s_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq2_s *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w->qs + 4 * ib;
            const int h = w->qh[ib];
            const __m256i grid = _mm256_set_epi64x(
                (long long)ld_iq2s_grid[q[3] | (h >> 6 & 3) << 8], (long long)ld_iq2s_grid[q[2] | (h >> 4 & 3) << 8],
                (long long)ld_iq2s_grid[q[1] | (h >> 2 & 3) << 8], (long long)ld_iq2s_grid[q[0] | (h & 3) << 8]);
            const int sc = w->scales[ib];
            acc = grid_step(acc, grid, bits_to_mask(u32_at(w->qs + 32 + 4 * ib)), a->qs + 32 * ib,
                            scale_pair(2 * (sc & 15) + 1, 2 * (sc >> 4) + 1));
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum * 0.125f;
}

float ld_vec_dot_iq3_xxs_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq3_xxs *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w->qs + 8 * ib;
            const uint32_t sg = u32_at(w->qs + 64 + 4 * ib);
            const __m256i grid = _mm256_set_epi32((int)ld_iq3xxs_grid[q[7]], (int)ld_iq3xxs_grid[q[6]], (int)ld_iq3xxs_grid[q[5]],
                                                  (int)ld_iq3xxs_grid[q[4]], (int)ld_iq3xxs_grid[q[3]], (int)ld_iq3xxs_grid[q[2]],
                                                  (int)ld_iq3xxs_grid[q[1]], (int)ld_iq3xxs_grid[q[0]]);
            acc = grid_step(acc, grid, ksigns4(sg), a->qs + 32 * ib, _mm256_set1_epi16((short)(2 * (sg >> 28) + 1)));
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum * 0.25f;
}

float ld_vec_dot_iq3_s_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq3_s *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w->qs + 8 * ib;
            const int h = w->qh[ib];
#define G3(t) (int)ld_iq3s_grid[q[t] | (h >> (t) & 1) << 8]
            const __m256i grid = _mm256_set_epi32(G3(7), G3(6), G3(5), G3(4), G3(3), G3(2), G3(1), G3(0));
#undef G3
            const int ls = (w->scales[ib / 2] >> (4 * (ib % 2))) & 0xF;
            acc = grid_step(acc, grid, bits_to_mask(u32_at(w->signs + 4 * ib)), a->qs + 32 * ib,
                            _mm256_set1_epi16((short)(2 * ls + 1)));
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum;
}

/* ---- IQ1_S, IQ1_M: weights 8 * grid + delta sign in -9 .. 9 -------------------------------- */
/* 8 * (four ternary grid points) + the per-8 delta signs (bytes +-1). */
static inline __m256i iq1_weights(int i0, int i1, int i2, int i3, __m256i delta) {
    __m256i g = _mm256_set_epi64x((long long)ld_iq1s_grid[i3], (long long)ld_iq1s_grid[i2], (long long)ld_iq1s_grid[i1],
                                  (long long)ld_iq1s_grid[i0]);
    g = _mm256_add_epi8(g, g);
    g = _mm256_add_epi8(g, g);
    g = _mm256_add_epi8(g, g);
    return _mm256_add_epi8(g, delta);
}

static inline long long delta8(int negative) {
    return negative ? -1LL : 0x0101010101010101LL;
}

float ld_vec_dot_iq1_s_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq1_s *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const int h = w->qh[ib];
            const uint8_t *q = w->qs + 4 * ib;
            const __m256i x = iq1_weights(q[0] | (h & 7) << 8, q[1] | (h >> 3 & 7) << 8, q[2] | (h >> 6 & 7) << 8,
                                          q[3] | (h >> 9 & 7) << 8, _mm256_set1_epi64x(delta8(h & 0x8000)));
            const __m256i p = mul_signed(x, load(a->qs + 32 * ib));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16((short)(2 * ((h >> 12) & 7) + 1))));
        }
        sum = fmaf(fp16(w->d) * a->d, (float)hsum(acc), sum);
    }
    return sum * 0.125f;
}

/* Per 8 weights (a 64-bit lane), the bit of h0 | h1 << 8 that holds its delta sign. */
static inline __m256i iq1m_delta_bits(void) {
    return _mm256_set_epi64x(0x8000800080008000LL, 0x0800080008000800LL, 0x0080008000800080LL, 0x0008000800080008LL);
}

float ld_vec_dot_iq1_m_q8_K_avx2(int64_t n, const void *w_, const void *a_) {
    const ld_block_iq1_m *w = w_;
    const ld_block_q8_K *a = a_;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, w++, a++) {
        uint16_t sc[4];
        memcpy(sc, w->scales, 8);
        const uint16_t d16 = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
        __m256i acc = _mm256_setzero_si256();
        #pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *q = w->qs + 4 * ib;
            const int h0 = w->qh[2 * ib], h1 = w->qh[2 * ib + 1];
            /* the delta signs: bits 3 and 7 of h0, then of h1 (bits 11, 15 of h0 | h1 << 8) */
            const __m256i hv = _mm256_set1_epi16((short)(h0 | h1 << 8)), sel = iq1m_delta_bits();
            const __m256i delta = _mm256_or_si256(_mm256_cmpeq_epi16(_mm256_and_si256(hv, sel), sel), _mm256_set1_epi8(1));
            const __m256i x = iq1_weights(q[0] | (h0 & 7) << 8, q[1] | (h0 >> 4 & 7) << 8, q[2] | (h1 & 7) << 8,
                                          q[3] | (h1 >> 4 & 7) << 8, delta);
            const int s = sc[ib / 2] >> (6 * (ib % 2));
            const __m256i p = mul_signed(x, load(a->qs + 32 * ib));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scale_pair(2 * (s & 7) + 1, 2 * ((s >> 3) & 7) + 1)));
        }
        sum = fmaf(fp16(d16) * a->d, (float)hsum(acc), sum);
    }
    return sum * 0.125f;
}

/* ---- the AVX2 level's rows of these types (quant.c overlays them; activations are quantized
 * by the level's quantizer of their activation format) ---- */
#define LOWBIT_ROW(T, w, a) [T] = {NULL, ld_vec_dot_##w##_##a##_avx2, NULL}
const ld_quant_isa_row ld_quant_rows_lowbit_avx2[LD_DTYPE_COUNT] = {
    LOWBIT_ROW(LD_Q2_K, q2_K, q8_K),       LOWBIT_ROW(LD_Q3_K, q3_K, q8_K),       LOWBIT_ROW(LD_TQ1_0, tq1_0, q8_K),
    LOWBIT_ROW(LD_TQ2_0, tq2_0, q8_K),     LOWBIT_ROW(LD_IQ2_XXS, iq2_xxs, q8_K), LOWBIT_ROW(LD_IQ2_XS, iq2_xs, q8_K),
    LOWBIT_ROW(LD_IQ2_S, iq2_s, q8_K),     LOWBIT_ROW(LD_IQ3_XXS, iq3_xxs, q8_K), LOWBIT_ROW(LD_IQ3_S, iq3_s, q8_K),
    LOWBIT_ROW(LD_IQ1_S, iq1_s, q8_K),     LOWBIT_ROW(LD_IQ1_M, iq1_m, q8_K),     LOWBIT_ROW(LD_IQ4_NL, iq4_nl, q8_0),
    LOWBIT_ROW(LD_IQ4_XS, iq4_xs, q8_K),
};

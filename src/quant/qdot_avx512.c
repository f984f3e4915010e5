/* quant/qdot_avx512.c — AVX-512 (F/BW/VL + VNNI) dot products of one quantized weight row
 * with one quantized activation row, the activation quantizers, and F32/F16 dots.
 * Called only through the traits table (quant.c) after a CPUID check.
 *
 * Integer parts: vpdpbusd multiplies unsigned bytes by signed bytes. Weight levels are
 * stored unsigned (Q4_0 0..15, Q4_K 0..15, Q5_K 0..31, Q6_K 0..63), so they are the
 * unsigned operand and the signed int8 activations the signed one; the zero-point offsets
 * (Q4_0's 8, Q6_K's 32) are removed with the activation block sums. Q8_0 weights are
 * signed: vpdpbusd(|w|, sign(w)*a). The per-lane int32 sums (|lane| < 2^15 for the K
 * types) are scaled by the sub-block scales with vpmaddwd (scale in the low int16, zero in
 * the high one), converted to float per super-block and accumulated with FMA; the lanes
 * are reduced once per row. So the integer parts equal the reference exactly and only the
 * order of the float sums differs. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

static inline __attribute__((always_inline)) float fp16(uint16_t h) {
    return _cvtsh_ss(h);
}

/* ---- activation quantizers (bit-identical to the _ref ones) ------------------------------ */
void ld_quantize_act_q8_0_avx512(const float *x, void *y, int64_t n) {
    ld_block_q8_0 *b = y;
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int64_t i = 0; i < n / LD_QK8_0; i++) {
        __m512 v0 = _mm512_loadu_ps(x + 32 * i), v1 = _mm512_loadu_ps(x + 32 * i + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(v0, absmask), _mm512_and_ps(v1, absmask)));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        q0 = _mm512_min_epi32(_mm512_max_epi32(q0, lo), hi);
        q1 = _mm512_min_epi32(_mm512_max_epi32(q1, lo), hi);
        _mm_storeu_si128((__m128i *)b[i].qs, _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(b[i].qs + 16), _mm512_cvtepi32_epi8(q1));
    }
}

void ld_quantize_act_q8_K_avx512(const float *x, void *y, int64_t n) {
    ld_block_q8_K *b = y;
    const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const float *xb = x + i * LD_QK_K;
        __m512 m = _mm512_setzero_ps();
        for (int l = 0; l < LD_QK_K; l += 16) m = _mm512_max_ps(m, _mm512_and_ps(_mm512_loadu_ps(xb + l), absmask));
        float amax = _mm512_reduce_max_ps(m);
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = d;
        __m512 vid = _mm512_set1_ps(id);
        for (int g = 0; g < 16; g++) {
            __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 16 * g), vid));
            q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            _mm_storeu_si128((__m128i *)(b[i].qs + 16 * g), _mm512_cvtepi32_epi8(q));
            b[i].bsums[g] = (int16_t)_mm512_reduce_add_epi32(q);
        }
    }
}
/* ---- multi-row kernels ------------------------------------------------------------------
 * Each kernel computes out[r] = dot(w, activation row r) for r < na (na <= 4; rows are
 * `as` bytes apart), unpacking the weight row once for all of them. Every row's float
 * operations are the same whatever na is, so results never depend on how rows are grouped.
 * ROWS_ENTRY makes the na-specialised entry point and the single-row vec_dot. */
#define ROWS_ENTRY(name, kern)                                                                     \
    void ld_dot_rows_##name##_avx512(int64_t n, const void *w, const void *a, size_t as, int na, float *out) { \
        switch (na) {                                                                              \
        case 1: kern(n, w, a, as, 1, out); break;                                                  \
        case 2: kern(n, w, a, as, 2, out); break;                                                  \
        case 3: kern(n, w, a, as, 3, out); break;                                                  \
        default: kern(n, w, a, as, 4, out); break;                                                 \
        }                                                                                          \
    }                                                                                              \
    float ld_vec_dot_##name##_avx512(int64_t n, const void *w, const void *a) {                    \
        float o;                                                                                   \
        kern(n, w, a, 0, 1, &o);                                                                   \
        return o;                                                                                  \
    }

/* Software prefetch of the weight stream, QDOT_PF bytes ahead: the dots are compute-heavy
 * enough that the hardware prefetcher alone leaves DRAM idle between blocks. Prefetches
 * past the end of the weights are harmless (they never fault). */
#define QDOT_PF 4096
static inline __attribute__((always_inline)) void prefetch_bytes(const void *p, int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + QDOT_PF + o, _MM_HINT_T0);
}

#define ROW(T, base, r) ((const T *)((const uint8_t *)(base) + (size_t)(r) * as))

static inline __attribute__((always_inline)) __m512 two_scales(float s0, float s1) {
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

static inline __attribute__((always_inline)) int32_t hsum_epi32_256(__m256i v) {
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    return _mm_cvtsi128_si32(s4);
}

static inline __attribute__((always_inline)) __m512i pair256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

static inline __attribute__((always_inline)) __m256i load256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

/* The fp16 scales (first field) of 4 consecutive blocks `stride` bytes apart, as floats. */
static inline __attribute__((always_inline)) __m128 scales4(const void *p, size_t stride) {
    const uint8_t *b = p;
    uint16_t h[4];
    for (int k = 0; k < 4; k++) memcpy(&h[k], b + k * stride, 2);
    uint64_t u;
    memcpy(&u, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)u));
}

/* ---- Q8_0 x Q8_0: vpdpbusd(|w|, sign(w)*a), two 32-blocks per 512-bit step ---------------- */
static inline __attribute__((always_inline)) void q8_0_rows(int64_t n, const void *w, const void *act, size_t as, const int na, float *out) {
    const ld_block_q8_0 *x = w;
    const int64_t nb = n / LD_QK8_0;
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) acc[r] = _mm512_setzero_ps();
    const __m512i idx01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i idx23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    int64_t i = 0;
    for (; i + 3 < nb; i += 4) { /* four blocks: scales converted and multiplied 4 at a time */
        prefetch_bytes(&x[i], 4 * (int)sizeof x[i]);
        const __m512i w0 = pair256(load256(x[i].qs), load256(x[i + 1].qs)), aw0 = _mm512_abs_epi8(w0);
        const __m512i w1 = pair256(load256(x[i + 2].qs), load256(x[i + 3].qs)), aw1 = _mm512_abs_epi8(w1);
        const __mmask64 n0 = _mm512_movepi8_mask(w0), n1 = _mm512_movepi8_mask(w1);
        const __m128 dw = scales4(&x[i], sizeof x[i]);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_0 *a = ROW(ld_block_q8_0, act, r);
            const __m512 s4 = _mm512_castps128_ps512(_mm_mul_ps(dw, scales4(&a[i], sizeof a[i])));
            __m512i a0 = pair256(load256(a[i].qs), load256(a[i + 1].qs));
            __m512i a1 = pair256(load256(a[i + 2].qs), load256(a[i + 3].qs));
            __m512i p0 = _mm512_dpbusd_epi32(zero, aw0, _mm512_mask_sub_epi8(a0, n0, zero, a0));
            __m512i p1 = _mm512_dpbusd_epi32(zero, aw1, _mm512_mask_sub_epi8(a1, n1, zero, a1));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(idx01, s4), acc[r]);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_permutexvar_ps(idx23, s4), acc[r]);
        }
    }
    for (; i + 1 < nb; i += 2) {
        prefetch_bytes(&x[i], 2 * (int)sizeof x[i]);
        const __m512i wv = pair256(load256(x[i].qs), load256(x[i + 1].qs)), aw = _mm512_abs_epi8(wv);
        const __mmask64 neg = _mm512_movepi8_mask(wv);
        const float d0 = fp16(x[i].d), d1 = fp16(x[i + 1].d);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_0 *a = ROW(ld_block_q8_0, act, r);
            __m512i av = pair256(load256(a[i].qs), load256(a[i + 1].qs));
            __m512i dp = _mm512_dpbusd_epi32(zero, aw, _mm512_mask_sub_epi8(av, neg, zero, av));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), two_scales(d0 * fp16(a[i].d), d1 * fp16(a[i + 1].d)), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
    for (; i < nb; i++) {
        const __m256i wv = load256(x[i].qs), aw = _mm256_abs_epi8(wv);
        const __mmask32 neg = _mm256_movepi8_mask(wv);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_0 *a = ROW(ld_block_q8_0, act, r);
            __m256i av = load256(a[i].qs);
            __m256i dp = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw,
                                             _mm256_mask_sub_epi8(av, neg, _mm256_setzero_si256(), av));
            out[r] += (float)hsum_epi32_256(dp) * (fp16(x[i].d) * fp16(a[i].d));
        }
    }
}
ROWS_ENTRY(q8_0_q8_0, q8_0_rows)

/* ---- Q4_0 x Q8_0: levels 0..15 unsigned, minus 8 * sum(a) ---------------------------------- */
/* 16 packed nibble bytes -> 32 levels [low nibbles, high nibbles]. */
static inline __attribute__((always_inline)) __m256i q4_0_levels(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

static inline __attribute__((always_inline)) void q4_0_rows(int64_t n, const void *w, const void *act, size_t as, const int na, float *out) {
    const ld_block_q4_0 *x = w;
    const int64_t nb = n / LD_QK4_0;
    const __m512i zero = _mm512_setzero_si512(), eights = _mm512_set1_epi8(8);
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) acc[r] = _mm512_setzero_ps();
    const __m512i idx01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i idx23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    int64_t i = 0;
    for (; i + 3 < nb; i += 4) {
        prefetch_bytes(&x[i], 4 * (int)sizeof x[i]);
        const __m512i w0 = pair256(q4_0_levels(x[i].qs), q4_0_levels(x[i + 1].qs));
        const __m512i w1 = pair256(q4_0_levels(x[i + 2].qs), q4_0_levels(x[i + 3].qs));
        const __m128 dw = scales4(&x[i], sizeof x[i]);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_0 *a = ROW(ld_block_q8_0, act, r);
            const __m512 s4 = _mm512_castps128_ps512(_mm_mul_ps(dw, scales4(&a[i], sizeof a[i])));
            __m512i a0 = pair256(load256(a[i].qs), load256(a[i + 1].qs));
            __m512i a1 = pair256(load256(a[i + 2].qs), load256(a[i + 3].qs));
            __m512i p0 = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, w0, a0), _mm512_dpbusd_epi32(zero, eights, a0));
            __m512i p1 = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, w1, a1), _mm512_dpbusd_epi32(zero, eights, a1));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_permutexvar_ps(idx01, s4), acc[r]);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_permutexvar_ps(idx23, s4), acc[r]);
        }
    }
    for (; i + 1 < nb; i += 2) {
        prefetch_bytes(&x[i], 2 * (int)sizeof x[i]);
        const __m512i wv = pair256(q4_0_levels(x[i].qs), q4_0_levels(x[i + 1].qs));
        const float d0 = fp16(x[i].d), d1 = fp16(x[i + 1].d);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_0 *a = ROW(ld_block_q8_0, act, r);
            __m512i av = pair256(load256(a[i].qs), load256(a[i + 1].qs));
            __m512i dp = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, wv, av), _mm512_dpbusd_epi32(zero, eights, av));
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dp), two_scales(d0 * fp16(a[i].d), d1 * fp16(a[i + 1].d)), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
    for (; i < nb; i++) {
        const __m256i wv = q4_0_levels(x[i].qs);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_0 *a = ROW(ld_block_q8_0, act, r);
            __m256i av = load256(a[i].qs);
            __m256i dp = _mm256_sub_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, av),
                                          _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), av));
            out[r] += (float)hsum_epi32_256(dp) * (fp16(x[i].d) * fp16(a[i].d));
        }
    }
}
ROWS_ENTRY(q4_0_q8_0, q4_0_rows)

/* ---- Q4_K / Q5_K x Q8_K -------------------------------------------------------------------- */
static inline __attribute__((always_inline)) void k4_scales(const uint8_t *s, uint64_t *sc, uint64_t *mn) {
    uint32_t u[3];
    memcpy(u, s, 12);
    const uint32_t sc_lo = u[0] & 0x3f3f3f3fu, m_lo = u[1] & 0x3f3f3f3fu;
    const uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
    const uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
    *sc = (uint64_t)sc_lo | (uint64_t)sc_hi << 32;
    *mn = (uint64_t)m_lo | (uint64_t)m_hi << 32;
}


/* Shared body: levels of 64-element chunk c come from lv(c); hbits adds Q5_K's fifth bit. */

static inline __attribute__((always_inline)) void k4k5_rows(int64_t n, const void *w, const void *act, size_t as,
                                                           const int na, float *out, const int five) {
    const int64_t nb = n / LD_QK_K;
    const size_t stride = five ? sizeof(ld_block_q5_K) : sizeof(ld_block_q4_K);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m10 = _mm512_set1_epi8(0x10), zero = _mm512_setzero_si512();
    /* 32 packed bytes broadcast to both halves; shifting the upper half's qwords by 4 puts
     * the high nibbles there: [low nibbles = sub-block 2c, high nibbles = sub-block 2c+1]. */
    const __m512i nib_shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    /* Q5_K: move bit 2c (lower half) / 2c+1 (upper half) of each qh byte to bit 4. */
    const __m512i hl_shift[4] = {
        _mm512_setr_epi64(4, 4, 4, 4, 3, 3, 3, 3), _mm512_setr_epi64(2, 2, 2, 2, 1, 1, 1, 1),
        _mm512_setr_epi64(0, 0, 0, 0, 1, 1, 1, 1), _mm512_setr_epi64(2, 2, 2, 2, 3, 3, 3, 3)};
    /* After vpackssdw of the dots of chunks c and c+1 (c even), int16 position 8j+u of
     * 128-bit lane j holds chunk c's lane 4j+u (u < 4) or chunk c+1's lane 4j+u-4: its
     * sub-block is 2c + (u < 4 ? 0 : 2) + (j >= 2). These pick those scales (vpermw). */
#define PI(j, u) (short)(((u) < 4 ? 0 : 2) + ((j) >= 2))
#define PL(j) PI(j, 7), PI(j, 6), PI(j, 5), PI(j, 4), PI(j, 3), PI(j, 2), PI(j, 1), PI(j, 0)
    const __m512i pidx0 = _mm512_set_epi16(PL(3), PL(2), PL(1), PL(0));
#undef PL
#undef PI
    const __m512i pidx[2] = {pidx0, _mm512_add_epi16(pidx0, _mm512_set1_epi16(4))};
    __m512 acc[4];
    __m256 accm[4];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) acc[r] = _mm512_setzero_ps(), accm[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *blk = (const uint8_t *)w + (size_t)i * stride;
        prefetch_bytes(blk, (int)stride);
        uint16_t d16, dmin16;
        memcpy(&d16, blk, 2);
        memcpy(&dmin16, blk + 2, 2);
        const uint8_t *qh = blk + 16, *qs = blk + (five ? 48 : 16);
        uint64_t sc, mn;
        k4_scales(blk + 4, &sc, &mn);
        const __m512i sc16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
        const __m128i mb = _mm_cvtsi64_si128((long long)mn);
        const __m256i mdup = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mb, mb)); /* m0 m0 m1 m1 ... */
        const __m512i hz = five ? _mm512_broadcast_i64x4(load256(qh)) : zero;
        __m512i isum[4];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) isum[r] = zero;
#pragma GCC unroll 2
        for (int c = 0; c < 4; c += 2) {
            __m512i lv[2];
#pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                lv[k] = _mm512_and_si512(_mm512_srlv_epi64(_mm512_broadcast_i64x4(load256(qs + 32 * (c + k))), nib_shift), m4);
                if (five) {
                    const __m512i hb = c + k < 2 ? _mm512_sllv_epi64(hz, hl_shift[c + k]) : _mm512_srlv_epi64(hz, hl_shift[c + k]);
                    lv[k] = _mm512_ternarylogic_epi32(lv[k], hb, m10, 0xF8); /* lv | (hb & 0x10) */
                }
            }
            const __m512i sv = _mm512_permutexvar_epi16(pidx[c / 2], sc16);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) {
                const ld_block_q8_K *a = ROW(ld_block_q8_K, act, r) + i;
                __m512i d0 = _mm512_dpbusd_epi32(zero, lv[0], _mm512_loadu_si512(a->qs + 64 * c));
                __m512i d1 = _mm512_dpbusd_epi32(zero, lv[1], _mm512_loadu_si512(a->qs + 64 * c + 64));
                /* |lane| < 2^15, so the pack is exact; one vpdpwssd scales both chunks */
                isum[r] = _mm512_dpwssd_epi32(isum[r], _mm512_packs_epi32(d0, d1), sv);
            }
        }
        const float dw = fp16(d16), dmw = fp16(dmin16);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_K *a = ROW(ld_block_q8_K, act, r) + i;
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_set1_ps(dw * a->d), acc[r]);
            __m256i mins = _mm256_madd_epi16(load256(a->bsums), mdup); /* m_j * (bsum_2j + bsum_2j+1) */
            accm[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(dmw * a->d), accm[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) {
        __m128 m4s = _mm_add_ps(_mm256_castps256_ps128(accm[r]), _mm256_extractf128_ps(accm[r], 1));
        m4s = _mm_add_ps(m4s, _mm_movehl_ps(m4s, m4s));
        m4s = _mm_add_ss(m4s, _mm_movehdup_ps(m4s));
        out[r] = _mm512_reduce_add_ps(acc[r]) - _mm_cvtss_f32(m4s);
    }
}

static inline __attribute__((always_inline)) void q4_K_rows(int64_t n, const void *w, const void *a, size_t as, const int na, float *out) {
    k4k5_rows(n, w, a, as, na, out, 0);
}
static inline __attribute__((always_inline)) void q5_K_rows(int64_t n, const void *w, const void *a, size_t as, const int na, float *out) {
    k4k5_rows(n, w, a, as, na, out, 1);
}
ROWS_ENTRY(q4_K_q8_K, q4_K_rows)
ROWS_ENTRY(q5_K_q8_K, q5_K_rows)

/* ---- Q6_K x Q8_K ---------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) void q6_K_rows(int64_t n, const void *w, const void *act, size_t as,
                                                           const int na, float *out) {
    const ld_block_q6_K *x = w;
    const int64_t nb = n / LD_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x03), zero = _mm512_setzero_si512();
    /* qh broadcast to both halves; qword shifts 0 / 2 give the bits of elements l / l+32 */
    const __m512i h_shift = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    /* lane k of the dot over elements 64p .. 64p+63 of the block belongs to group 4p + k/4 */
    const __m512i gidx[4] = {
        _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
        _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7),
        _mm512_setr_epi32(8, 8, 8, 8, 9, 9, 9, 9, 10, 10, 10, 10, 11, 11, 11, 11),
        _mm512_setr_epi32(12, 12, 12, 12, 13, 13, 13, 13, 14, 14, 14, 14, 15, 15, 15, 15),
    };
    __m512 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_bytes(&x[i], (int)sizeof x[i]);
        /* int16 scales with a zero high half, one per int32 lane, for vpdpwssd / vpmaddwd */
        const __m512i sc32 = _mm512_cvtepu16_epi32(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales)));
        __m512i isum[4];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) { /* -32 zero point: isum starts at -32 * sum_g sc_g * bsum_g */
            const ld_block_q8_K *a = ROW(ld_block_q8_K, act, r) + i;
            isum[r] = _mm512_sub_epi32(zero, _mm512_slli_epi32(_mm512_madd_epi16(sc32,
                _mm512_cvtepu16_epi32(load256(a->bsums))), 5));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512(x[i].ql + 64 * h);
            const __m512i hA = _mm512_srlv_epi64(_mm512_broadcast_i64x4(load256(x[i].qh + 32 * h)), h_shift);
            const __m512i hB = _mm512_srli_epi16(hA, 4);
            const __m512i qA = _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_slli_epi16(_mm512_and_si512(hA, m2), 4));
            const __m512i qB = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                               _mm512_slli_epi16(_mm512_and_si512(hB, m2), 4));
            const __m512i sA = _mm512_permutexvar_epi32(gidx[2 * h], sc32);
            const __m512i sB = _mm512_permutexvar_epi32(gidx[2 * h + 1], sc32);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) {
                const ld_block_q8_K *a = ROW(ld_block_q8_K, act, r) + i;
                const __m512i dA = _mm512_dpbusd_epi32(zero, qA, _mm512_loadu_si512(a->qs + 128 * h));
                const __m512i dB = _mm512_dpbusd_epi32(zero, qB, _mm512_loadu_si512(a->qs + 128 * h + 64));
                isum[r] = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(isum[r], dA, sA), dB, sB);
            }
        }
        const float dw = fp16(x[i].d);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++)
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r]), _mm512_set1_ps(dw * (ROW(ld_block_q8_K, act, r) + i)->d), acc[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) out[r] = _mm512_reduce_add_ps(acc[r]);
}
ROWS_ENTRY(q6_K_q8_K, q6_K_rows)

/* ---- F32 / F16 weights with f32 activations: four accumulators per row --------------------- */
static inline __attribute__((always_inline)) __m512 wload_f32(const void *w, int64_t i, __mmask16 k) {
    return _mm512_maskz_loadu_ps(k, (const float *)w + i);
}
static inline __attribute__((always_inline)) __m512 wload_f16(const void *w, int64_t i, __mmask16 k) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t *)w + i));
}

static inline __attribute__((always_inline)) void float_rows(int64_t n, const void *w, const void *act, size_t as, const int na, float *out,
                              const int half) {
    __m512 s[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) s[r][k] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 wv[4];
        prefetch_bytes((const uint8_t *)w + (half ? 2 : 4) * i, half ? 128 : 256);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            wv[k] = half ? _mm512_cvtph_ps(load256((const uint16_t *)w + i + 16 * k)) : _mm512_loadu_ps((const float *)w + i + 16 * k);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const float *a = ROW(float, act, r);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) s[r][k] = _mm512_fmadd_ps(wv[k], _mm512_loadu_ps(a + i + 16 * k), s[r][k]);
        }
    }
    for (; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 wv = half ? wload_f16(w, i, k) : wload_f32(w, i, k);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) s[r][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(k, ROW(float, act, r) + i), s[r][0]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
        out[r] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s[r][0], s[r][1]), _mm512_add_ps(s[r][2], s[r][3])));
}

static inline __attribute__((always_inline)) void f32_rows(int64_t n, const void *w, const void *a, size_t as, const int na, float *out) {
    float_rows(n, w, a, as, na, out, 0);
}
static inline __attribute__((always_inline)) void f16_rows(int64_t n, const void *w, const void *a, size_t as, const int na, float *out) {
    float_rows(n, w, a, as, na, out, 1);
}
ROWS_ENTRY(f32, f32_rows)
ROWS_ENTRY(f16_f32, f16_rows)

/* ---- this ISA's row of each type (quant.c overlays it on CPUs with AVX-512 VNNI) ---------- */
#define QROW(act, name) {act, ld_vec_dot_##name##_avx512, ld_dot_rows_##name##_avx512}
const ld_quant_isa_row ld_quant_rows_avx512[LD_DTYPE_COUNT] = {
    [LD_F32] = QROW(NULL, f32),
    [LD_F16] = QROW(NULL, f16_f32),
    [LD_Q8_0] = QROW(ld_quantize_act_q8_0_avx512, q8_0_q8_0),
    [LD_Q4_0] = QROW(ld_quantize_act_q8_0_avx512, q4_0_q8_0),
    [LD_Q4_K] = QROW(ld_quantize_act_q8_K_avx512, q4_K_q8_K),
    [LD_Q5_K] = QROW(ld_quantize_act_q8_K_avx512, q5_K_q8_K),
    [LD_Q6_K] = QROW(ld_quantize_act_q8_K_avx512, q6_K_q8_K),
};

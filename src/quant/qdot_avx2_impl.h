/* quant/qdot_avx2_impl.h — AVX2 + FMA + F16C dot products of quantized weight rows with
 * quantized activation rows, the activation quantizers, and F32/F16 dots: the kernels of
 * the AVX2 level (kernels/kernels.h, ld_isa), for CPUs without AVX-512 VNNI. Called only
 * through the traits table (quant.c) after a CPU check.
 *
 * Written once, built twice: qdot_avx2.c includes it as is (integer steps of
 * quant/simd_i8_avx2.h as vpmaddubsw + vpmaddwd), qdot_avxvnni.c with LD_I8_VNNI for CPUs
 * with AVX-VNNI (one vpdpbusd per step); each defines its row table ld_quant_rows_<isa>. Weight levels are the unsigned operand
 * (Q4_0/Q4_K 0..15, Q5_K 0..31, Q6_K 0..63); Q8_0's signed weights go in as |w| with their
 * sign moved onto the activations (vpsignb), which keeps vpmaddubsw's int16 pair sums
 * exact. Zero points (Q4_0's 8, Q6_K's 32) are removed with the activation sums. So the
 * integer parts equal the reference's exactly and only the order of the float sums
 * differs (the same structure as qdot_avx512.c with 8-lane vectors).
 *
 * Each multi-row kernel computes out[r] = dot(w, activation row r) for r < na (na <= 4,
 * rows `as` bytes apart), unpacking the weight once for all rows; every row's float
 * operations are the same whatever na is, so results never depend on how rows are
 * grouped. */
#include <immintrin.h>
#include <string.h>

#include "quant/quant_blocks.h"
#include "quant/simd_i8_avx2.h"

#ifdef LD_I8_VNNI
#define ISA(name) name##_avxvnni
#else
#define ISA(name) name##_avx2
#endif

#define INLINE LD_I8_INLINE

INLINE float fp16(uint16_t h) {
    return _cvtsh_ss(h);
}

INLINE __m256i load256(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}

/* Software prefetch of the weight stream QDOT_PF bytes ahead (the dots leave DRAM idle
 * between blocks otherwise); prefetches past the end never fault. */
#define QDOT_PF 4096
INLINE void prefetch_bytes(const void *p, int bytes) {
    for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + QDOT_PF + o, _MM_HINT_T0);
}

#define ROW(T, base, r) ((const T *)((const uint8_t *)(base) + (size_t)(r) * as))

/* ---- activation quantizers (bit-identical to the _ref ones) ------------------------------ */
static void ISA(ld_quantize_act_q8_0)(const float *x, void *y, int64_t n) {
    ld_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / LD_QK8_0; i++) {
        const float *xb = x + LD_QK8_0 * i;
        const float d = ld_absmax_ps(xb, LD_QK8_0) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = (uint16_t)_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256i q32[4];
        _mm256_storeu_si256((__m256i *)b[i].qs, ld_i8_quantize32(xb, _mm256_set1_ps(id), q32));
    }
}

static void ISA(ld_quantize_act_q8_K)(const float *x, void *y, int64_t n) {
    ld_block_q8_K *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const float *xb = x + i * LD_QK_K;
        const float d = ld_absmax_ps(xb, LD_QK_K) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = d;
        const __m256 vid = _mm256_set1_ps(id);
        for (int c = 0; c < LD_QK_K / 32; c++) {
            __m256i q32[4];
            _mm256_storeu_si256((__m256i *)(b[i].qs + 32 * c), ld_i8_quantize32(xb + 32 * c, vid, q32));
            b[i].bsums[2 * c] = (int16_t)ld_hsum256_epi32(_mm256_add_epi32(q32[0], q32[1]));
            b[i].bsums[2 * c + 1] = (int16_t)ld_hsum256_epi32(_mm256_add_epi32(q32[2], q32[3]));
        }
    }
}

#define ROWS_ENTRY(name, kern)                                                                     \
    static void ISA(ld_dot_rows_##name)(int64_t n, const void *w, const void *a, size_t as, int na, float *out) { \
        switch (na) {                                                                              \
        case 1: kern(n, w, a, as, 1, out); break;                                                  \
        case 2: kern(n, w, a, as, 2, out); break;                                                  \
        case 3: kern(n, w, a, as, 3, out); break;                                                  \
        default: kern(n, w, a, as, 4, out); break;                                                 \
        }                                                                                          \
    }                                                                                              \
    static float ISA(ld_vec_dot_##name)(int64_t n, const void *w, const void *a) {                        \
        float o;                                                                                   \
        kern(n, w, a, 0, 1, &o);                                                                   \
        return o;                                                                                  \
    }

/* ---- Q8_0 x Q8_0: dot(|w|, sign(a, w)), blocks in pairs (two accumulators per row) ------- */
INLINE void q8_0_rows(int64_t n, const void *w, const void *act, size_t as, const int na, float *out) {
    const ld_block_q8_0 *x = w;
    const int64_t nb = n / LD_QK8_0;
    const __m256i zero = _mm256_setzero_si256();
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i < nb; i += 2) {
        const int two = i + 1 < nb;
        prefetch_bytes(&x[i], 2 * (int)sizeof x[i]);
        __m256i wv[2], aw[2];
        float dw[2];
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            const int64_t b = k && two ? i + 1 : i; /* an odd last block repeats, and is not added */
            wv[k] = load256(x[b].qs);
            aw[k] = _mm256_abs_epi8(wv[k]); /* -128 -> 128 as unsigned */
            dw[k] = fp16(x[b].d);
        }
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_0 *a = ROW(ld_block_q8_0, act, r);
#pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                if (k && !two) break;
                const __m256i p = ld_i8_dot4(zero, aw[k], _mm256_sign_epi8(load256(a[i + k].qs), wv[k]));
                acc[r][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[k] * fp16(a[i + k].d)), acc[r][k]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) out[r] = ld_hsum256_ps(_mm256_add_ps(acc[r][0], acc[r][1]));
}
ROWS_ENTRY(q8_0_q8_0, q8_0_rows)

/* ---- Q4_0 x Q8_0: levels 0..15 unsigned, minus 8 * sum(a) ---------------------------------- */
/* 16 packed nibble bytes -> 32 levels [low nibbles, high nibbles]. */
INLINE __m256i q4_0_levels(const uint8_t *qs) {
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

INLINE void q4_0_rows(int64_t n, const void *w, const void *act, size_t as, const int na, float *out) {
    const ld_block_q4_0 *x = w;
    const int64_t nb = n / LD_QK4_0;
    const __m256i zero = _mm256_setzero_si256(), eights = _mm256_set1_epi8(8);
    __m256 acc[4][2];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i += 2) {
        const int two = i + 1 < nb;
        prefetch_bytes(&x[i], 2 * (int)sizeof x[i]);
        __m256i lv[2];
        float dw[2];
#pragma GCC unroll 2
        for (int k = 0; k < 2; k++) {
            const int64_t b = k && two ? i + 1 : i;
            lv[k] = q4_0_levels(x[b].qs);
            dw[k] = fp16(x[b].d);
        }
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_0 *a = ROW(ld_block_q8_0, act, r);
#pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                if (k && !two) break;
                const __m256i av = load256(a[i + k].qs);
                const __m256i p = _mm256_sub_epi32(ld_i8_dot4(zero, lv[k], av), ld_i8_dot4(zero, eights, av));
                acc[r][k] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[k] * fp16(a[i + k].d)), acc[r][k]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) out[r] = ld_hsum256_ps(_mm256_add_ps(acc[r][0], acc[r][1]));
}
ROWS_ENTRY(q4_0_q8_0, q4_0_rows)

/* ---- Q4_K / Q5_K x Q8_K -------------------------------------------------------------------- */
/* The 8 6-bit scales and mins of a block's scales[12], one byte each. */
INLINE void k4_scales(const uint8_t *s, uint8_t sc[8], uint8_t mn[8]) {
    uint32_t u[3];
    memcpy(u, s, 12);
    const uint32_t sc_lo = u[0] & 0x3f3f3f3fu, m_lo = u[1] & 0x3f3f3f3fu;
    const uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 2) & 0x30303030u);
    const uint32_t m_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 2) & 0x30303030u);
    memcpy(sc, &sc_lo, 4), memcpy(sc + 4, &sc_hi, 4);
    memcpy(mn, &m_lo, 4), memcpy(mn + 4, &m_hi, 4);
}

/* Element 64c + l (l < 32) is the low nibble of qs[32c + l], 64c + 32 + l its high nibble;
 * Q5_K's fifth bit of them is bit 2c / 2c + 1 of qh[l]. Sub-block j = elements 32j.. */
INLINE void k4k5_rows(int64_t n, const void *w, const void *act, size_t as, const int na, float *out,
                             const int five) {
    const int64_t nb = n / LD_QK_K;
    const size_t stride = five ? sizeof(ld_block_q5_K) : sizeof(ld_block_q4_K);
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    __m256 acc[4], accm[4];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) acc[r] = accm[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *blk = (const uint8_t *)w + (size_t)i * stride;
        prefetch_bytes(blk, (int)stride);
        uint16_t d16, dmin16;
        memcpy(&d16, blk, 2);
        memcpy(&dmin16, blk + 2, 2);
        const uint8_t *qh = blk + 16, *qs = blk + (five ? 48 : 16);
        uint8_t sc[8], mn[8];
        k4_scales(blk + 4, sc, mn);
        const __m256i hbits = five ? load256(qh) : _mm256_setzero_si256();
        __m256i isum[4];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            const __m256i q = load256(qs + 32 * c);
            __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), m1), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), m1), 4));
            }
            const __m256i s0 = _mm256_set1_epi16(sc[2 * c]), s1 = _mm256_set1_epi16(sc[2 * c + 1]);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) {
                const ld_block_q8_K *a = ROW(ld_block_q8_K, act, r) + i;
                isum[r] = ld_i8_dot4_scaled(isum[r], lo, load256(a->qs + 64 * c), s0);
                isum[r] = ld_i8_dot4_scaled(isum[r], hi, load256(a->qs + 64 * c + 32), s1);
            }
        }
        uint8_t md[16]; /* m0 m0 m1 m1 ...: the min of each pair of 16-sums */
        for (int j = 0; j < 8; j++) md[2 * j] = md[2 * j + 1] = mn[j];
        const __m256i mdup = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)md));
        const float dw = fp16(d16), dmw = fp16(dmin16);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const ld_block_q8_K *a = ROW(ld_block_q8_K, act, r) + i;
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(dw * a->d), acc[r]);
            const __m256i mins = _mm256_madd_epi16(load256(a->bsums), mdup); /* m_j (bsum_2j + bsum_2j+1) */
            accm[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mins), _mm256_set1_ps(dmw * a->d), accm[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) out[r] = ld_hsum256_ps(acc[r]) - ld_hsum256_ps(accm[r]);
}

INLINE void q4_K_rows(int64_t n, const void *w, const void *a, size_t as, const int na, float *out) {
    k4k5_rows(n, w, a, as, na, out, 0);
}
INLINE void q5_K_rows(int64_t n, const void *w, const void *a, size_t as, const int na, float *out) {
    k4k5_rows(n, w, a, as, na, out, 1);
}
ROWS_ENTRY(q4_K_q8_K, q4_K_rows)
ROWS_ENTRY(q5_K_q8_K, q5_K_rows)

/* ---- Q6_K x Q8_K ---------------------------------------------------------------------------- */
/* Half h (128 elements) of a block: ql[64h..64h+63], qh[32h..32h+31]; element 128h + 32k + l
 * (k < 4, l < 32) is nibble (k >= 2) of ql[64h + 32(k & 1) + l] with bits 2k, 2k+1 of
 * qh[32h + l] on top. Each 32 elements are 2 groups of 16 with their own int8 scale. */
INLINE void q6_K_rows(int64_t n, const void *w, const void *act, size_t as, const int na, float *out) {
    const ld_block_q6_K *x = w;
    const int64_t nb = n / LD_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
    __m256 acc[4];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        prefetch_bytes(&x[i], (int)sizeof x[i]);
        /* the 16 scales as int16 */
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        __m256i isum[4];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) { /* -32 zero point: isum starts at -32 * sum_g sc_g * bsum_g */
            const ld_block_q8_K *a = ROW(ld_block_q8_K, act, r) + i;
            isum[r] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(_mm256_madd_epi16(sc16, load256(a->bsums)), 5));
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i ql0 = load256(x[i].ql + 64 * h), ql1 = load256(x[i].ql + 64 * h + 32);
            const __m256i qh = load256(x[i].qh + 32 * h);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                /* groups 8h + 2k (low 128-bit lane) and 8h + 2k + 1 (high lane) */
                const int g = 8 * h + 2 * k;
                const __m256i sv = _mm256_setr_m128i(_mm_set1_epi16((short)x[i].scales[g]), _mm_set1_epi16((short)x[i].scales[g + 1]));
#pragma GCC unroll 4
                for (int r = 0; r < na; r++) {
                    const ld_block_q8_K *a = ROW(ld_block_q8_K, act, r) + i;
                    isum[r] = ld_i8_dot4_scaled(isum[r], q[k], load256(a->qs + 128 * h + 32 * k), sv);
                }
            }
        }
        const float dw = fp16(x[i].d);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++)
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r]), _mm256_set1_ps(dw * (ROW(ld_block_q8_K, act, r) + i)->d), acc[r]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++) out[r] = ld_hsum256_ps(acc[r]);
}
ROWS_ENTRY(q6_K_q8_K, q6_K_rows)

/* ---- F32 / F16 weights with f32 activations: four accumulators per row --------------------- */
/* 8 weights from element i on (the first `valid` of them; the rest read as 0). */
INLINE __m256 wload(const void *w, int64_t i, int64_t valid, const int half) {
    if (valid >= 8)
        return half ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)w + i)))
                    : _mm256_loadu_ps((const float *)w + i);
    if (half) {
        uint16_t h[8] = {0};
        memcpy(h, (const uint16_t *)w + i, (size_t)valid * 2);
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    }
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps((const float *)w + i, m);
}

INLINE __m256 aload(const float *a, int64_t i, int64_t valid) {
    if (valid >= 8) return _mm256_loadu_ps(a + i);
    const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)valid), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    return _mm256_maskload_ps(a + i, m);
}

INLINE void float_rows(int64_t n, const void *w, const void *act, size_t as, const int na, float *out,
                              const int half) {
    __m256 s[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) s[r][k] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 wv[4];
        prefetch_bytes((const uint8_t *)w + (half ? 2 : 4) * i, half ? 64 : 128);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) wv[k] = wload(w, i + 8 * k, 8, half);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            const float *a = ROW(float, act, r);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) s[r][k] = _mm256_fmadd_ps(wv[k], _mm256_loadu_ps(a + i + 8 * k), s[r][k]);
        }
    }
    for (; i < n; i += 8) {
        const __m256 wv = wload(w, i, n - i, half);
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) s[r][0] = _mm256_fmadd_ps(wv, aload(ROW(float, act, r), i, n - i), s[r][0]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
        out[r] = ld_hsum256_ps(_mm256_add_ps(_mm256_add_ps(s[r][0], s[r][1]), _mm256_add_ps(s[r][2], s[r][3])));
}

INLINE void f32_rows(int64_t n, const void *w, const void *a, size_t as, const int na, float *out) {
    float_rows(n, w, a, as, na, out, 0);
}
INLINE void f16_rows(int64_t n, const void *w, const void *a, size_t as, const int na, float *out) {
    float_rows(n, w, a, as, na, out, 1);
}
ROWS_ENTRY(f32, f32_rows)
ROWS_ENTRY(f16_f32, f16_rows)

/* ---- this ISA's row of each type (quant.c overlays it at the AVX2 level) ------------------- */
#define QROW(act, name) {act, ISA(ld_vec_dot_##name), ISA(ld_dot_rows_##name)}
const ld_quant_isa_row ISA(ld_quant_rows)[LD_DTYPE_COUNT] = {
    [LD_F32] = QROW(NULL, f32),
    [LD_F16] = QROW(NULL, f16_f32),
    [LD_Q8_0] = QROW(ISA(ld_quantize_act_q8_0), q8_0_q8_0),
    [LD_Q4_0] = QROW(ISA(ld_quantize_act_q8_0), q4_0_q8_0),
    [LD_Q4_K] = QROW(ISA(ld_quantize_act_q8_K), q4_K_q8_K),
    [LD_Q5_K] = QROW(ISA(ld_quantize_act_q8_K), q5_K_q8_K),
    [LD_Q6_K] = QROW(ISA(ld_quantize_act_q8_K), q6_K_q8_K),
};

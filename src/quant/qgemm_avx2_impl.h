/* quant/qgemm_avx2_impl.h — the int8 GEMM (quant/qgemm.c) at the AVX2 level: activation
 * quantizer, byte-panel packer, and microkernels for byte panels and prepacked Q4_K panels,
 * on the same panel layouts as the AVX-512 kernels (a panel's 64-byte chunk of 16 columns
 * is two ymm vectors of 8), so prepacked weights mean the same bytes at every level.
 *
 * Written once, built twice like qdot_avx2_impl.h: qgemm_avx2.c (integer steps as
 * vpmaddubsw + vpmaddwd) and qgemm_avxvnni.c (vpdpbusd on ymm, LD_I8_VNNI); each defines
 * its ld_qgemm_isa_<isa>.
 *
 * Microkernel: an mr x 48 tile of C in strips of NVS vectors (8 columns each): a strip's
 * float sums stay in registers from the first group of K to the last. One row (decode) takes
 * the whole 48 columns as one strip, walking the panel once in order; 2 rows take strips of
 * 16 columns, 3-4 rows strips of 8 (what fits in 16 ymm registers). Per group, each lane
 * starts its int32 sum at -zp * (the activation group's sum), adds the 4-byte products of
 * every k step, and is scaled into the float sum with one FMA: the reference's integers and
 * float operations in the reference's order, so results equal it bit for bit whatever the
 * strip shape. Q8_0's levels (its int8 weights + 128) would overflow vpmaddubsw's int16 pair
 * sums, so without VNNI they go back to signed weights (xor 0x80) multiplied as
 * |w| x sign(a, w) with the sum starting at 0: the same integer. */
#include <immintrin.h>
#include <string.h>

#include "quant/qgemm.h"
#include "quant/simd_i8_avx2.h"

#ifdef LD_I8_VNNI
#define ISA(name) name##_avxvnni
#else
#define ISA(name) name##_avx2
#endif

#define INLINE LD_I8_INLINE
#define NR LD_QGEMM_NR
#define NY (NR / 8) /* ymm vectors of columns in a panel */

INLINE __m256i load32(const void *p) {
    return _mm256_loadu_si256((const __m256i *)p);
}
INLINE void store32(void *p, __m256i v) {
    _mm256_storeu_si256((__m256i *)p, v);
}
INLINE float fp16(uint16_t h) {
    return _cvtsh_ss(h);
}

/* ---- activations (bit-identical to ld_qgemm_quantize_act_ref) ------------------------------ */
static void ISA(quantize_act)(const ld_qgemm_format *f, const float *x, int64_t n, int8_t *q, ld_qgemm_agroup *g) {
    const int G = f->group; /* 16 or 32 */
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (int64_t b = 0; b < n / G; b++) {
        const float *xb = x + b * G;
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < G; i += 8) m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xb + i), absmask));
        const float d = ld_hmax256_ps(m) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i sum = _mm256_setzero_si256(), v[4] = {sum, sum, sum, sum};
        for (int k = 0; k < G / 8; k++) {
            v[k] = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * k), vid)), lo), hi);
            sum = _mm256_add_epi32(sum, v[k]);
        }
        const __m256i bytes = _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3])), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        if (G == 32) store32(q + b * G, bytes);
        else _mm_storeu_si128((__m128i *)(q + b * G), _mm256_castsi256_si128(bytes));
        const int32_t s = ld_hsum256_epi32(sum);
        g[b] = (ld_qgemm_agroup){d, -f->zp * s, d * (float)s, 0.0f};
    }
}

/* ---- weight levels (the same bits as the scalar ld_levels_row_* of each type) ------------ */
static void levels_q8_0(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    for (int64_t i = 0; i < n / LD_QK8_0; i++) {
        const ld_block_q8_0 *b = (const ld_block_q8_0 *)w + i;
        s[i] = fp16(b->d);
        store32(L + 32 * i, _mm256_xor_si256(load32(b->qs), _mm256_set1_epi8((char)0x80)));
    }
}

static void levels_q4_0(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const __m128i m = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / LD_QK4_0; i++) {
        const ld_block_q4_0 *b = (const ld_block_q4_0 *)w + i;
        s[i] = fp16(b->d);
        const __m128i q = _mm_loadu_si128((const __m128i *)b->qs);
        _mm_storeu_si128((__m128i *)(L + 32 * i), _mm_and_si128(q, m));
        _mm_storeu_si128((__m128i *)(L + 32 * i + 16), _mm_and_si128(_mm_srli_epi16(q, 4), m));
    }
}

INLINE void levels_k4k5(const void *w, int64_t n, uint8_t *L, float *s, float *o, const int five) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m1 = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const ld_block_q4_K *b4 = (const ld_block_q4_K *)w + i;
        const ld_block_q5_K *b5 = (const ld_block_q5_K *)w + i;
        const uint8_t *qs = five ? b5->qs : b4->qs, *scales = five ? b5->scales : b4->scales;
        const uint16_t d16 = five ? b5->d : b4->d, m16 = five ? b5->dmin : b4->dmin;
        uint8_t *e = L + i * LD_QK_K;
        const __m256i qh = five ? load32(b5->qh) : _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i v = load32(qs + 32 * c);
            __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            if (five) {
                lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), m1), 4));
                hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), m1), 4));
            }
            store32(e + 64 * c, lo);
            store32(e + 64 * c + 32, hi);
        }
        const float d = fp16(d16), min = fp16(m16);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            ld_q4_K_scale_min(scales, j, &sc, &m);
            s[i * 8 + j] = d * (float)sc;
            o[i * 8 + j] = -(min * (float)m);
        }
    }
}
static void levels_q4_K(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    levels_k4k5(w, n, L, s, o, 0);
}
static void levels_q5_K(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    levels_k4k5(w, n, L, s, o, 1);
}

static void levels_q6_K(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const ld_block_q6_K *b = (const ld_block_q6_K *)w + i;
        for (int h = 0; h < 2; h++) {
            const __m256i A = load32(b->ql + 64 * h), B = load32(b->ql + 64 * h + 32), H = load32(b->qh + 32 * h);
            uint8_t *e = L + i * LD_QK_K + 128 * h;
#define HI2(sh) _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, sh), m2), 4)
            store32(e, _mm256_or_si256(_mm256_and_si256(A, m4), HI2(0)));
            store32(e + 32, _mm256_or_si256(_mm256_and_si256(B, m4), HI2(2)));
            store32(e + 64, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), HI2(4)));
            store32(e + 96, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4), HI2(6)));
#undef HI2
        }
        const float d = fp16(b->d);
        for (int g = 0; g < 16; g++) s[i * 16 + g] = d * (float)b->scales[g];
    }
}

/* The 2-bit fields of 128 elements of Q2_K / TQ2_0 as bytes (element 32j + m: bits 2j..2j+1
 * of qs[m]). */
INLINE void levels_2bit128(const uint8_t *qs, uint8_t *e) {
    const __m256i v = load32(qs), m3 = _mm256_set1_epi8(3);
    for (int j = 0; j < 4; j++) store32(e + 32 * j, _mm256_and_si256(_mm256_srli_epi16(v, 2 * j), m3));
}

static void levels_q2_K(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const ld_block_q2_K *b = (const ld_block_q2_K *)w + i;
        for (int h = 0; h < 2; h++) levels_2bit128(b->qs + 32 * h, L + i * LD_QK_K + 128 * h);
        const float d = fp16(b->d), min = fp16(b->dmin);
        for (int g = 0; g < 16; g++) {
            s[i * 16 + g] = d * (float)(b->scales[g] & 0xF);
            o[i * 16 + g] = -(min * (float)(b->scales[g] >> 4));
        }
    }
}

/* Q3_K: L = the 2-bit field + 4 * the hmask bit (bit 4h + j of hmask[m] for element 128h + 32j + m). */
static void levels_q3_K(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const ld_block_q3_K *b = (const ld_block_q3_K *)w + i;
        const __m256i H = load32(b->hmask);
        for (int h = 0; h < 2; h++) {
            const __m256i v = load32(b->qs + 32 * h);
            for (int j = 0; j < 4; j++) {
                const __m256i hb = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(H, 4 * h + j), one), 2);
                store32(L + i * LD_QK_K + 128 * h + 32 * j, _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 2 * j), m3), hb));
            }
        }
        const float d = fp16(b->d);
        for (int g = 0; g < 16; g++) s[i * 16 + g] = d * (float)ld_q3_K_scale(b->scales, g);
    }
}

static void levels_tq2_0(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const ld_block_tq2_0 *b = (const ld_block_tq2_0 *)w + i;
        for (int h = 0; h < 2; h++) levels_2bit128(b->qs + 32 * h, L + i * LD_QK_K + 128 * h);
        const float d = fp16(b->d);
        for (int g = 0; g < 8; g++) s[i * 8 + g] = d;
    }
}

/* IQ4_NL / IQ4_XS: L = level + 128 = the int8 level with its top bit flipped, looked up by
 * nibble (byte j of 16: element j low nibble, element j + 16 high). */
INLINE void levels_iq4_32(const uint8_t *qs, uint8_t *e) {
    const __m128i T = _mm_xor_si128(_mm_loadu_si128((const __m128i *)ld_kvalues_iq4nl), _mm_set1_epi8((char)0x80));
    const __m128i m4 = _mm_set1_epi8(0x0F), q = _mm_loadu_si128((const __m128i *)qs);
    _mm_storeu_si128((__m128i *)e, _mm_shuffle_epi8(T, _mm_and_si128(q, m4)));
    _mm_storeu_si128((__m128i *)(e + 16), _mm_shuffle_epi8(T, _mm_and_si128(_mm_srli_epi16(q, 4), m4)));
}

static void levels_iq4_nl(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    for (int64_t i = 0; i < n / 32; i++) {
        const ld_block_iq4_nl *b = (const ld_block_iq4_nl *)w + i;
        levels_iq4_32(b->qs, L + 32 * i);
        s[i] = fp16(b->d);
    }
}

static void levels_iq4_xs(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const ld_block_iq4_xs *b = (const ld_block_iq4_xs *)w + i;
        const float d = fp16(b->d);
        for (int ib = 0; ib < 8; ib++) {
            levels_iq4_32(b->qs + 16 * ib, L + i * LD_QK_K + 32 * ib);
            const int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4);
            s[i * 8 + ib] = d * (float)(ls - 32);
        }
    }
}

/* The vectorized levels of each type with a GEMM form (qgemm.c's FORMATS; the others use the
 * scalar f->levels). */
static const ld_levels_fn LEVELS[LD_DTYPE_COUNT] = {
    [LD_Q8_0] = levels_q8_0,     [LD_Q4_0] = levels_q4_0,     [LD_Q4_K] = levels_q4_K,   [LD_Q5_K] = levels_q5_K,
    [LD_Q6_K] = levels_q6_K,     [LD_Q2_K] = levels_q2_K,     [LD_Q3_K] = levels_q3_K,   [LD_TQ2_0] = levels_tq2_0,
    [LD_IQ4_NL] = levels_iq4_nl, [LD_IQ4_XS] = levels_iq4_xs,
};

/* out[k] = (r[0][k], ..., r[7][k]) for 8 rows r of 8 int32 (in place). */
INLINE void transpose8x8_epi32(__m256i r[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 4; i++) { /* t[2i]: words 0,1 | 4,5 of rows 2i, 2i+1 interleaved; t[2i+1]: 2,3 | 6,7 */
        t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) { /* u[4h + k]: word k | word k + 4 of rows 4h .. 4h + 3 */
        u[4 * h] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    for (int k = 0; k < 4; k++) {
        r[k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
        r[k + 4] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
    }
}

/* 8 columns at a time (LD_QGEMM_PACK_ROWS rows of levels in tmp): each 32 levels of the 8
 * rows become, by one 8 x 8 transpose of 4-byte steps, the 8 steps' 32-byte runs of those
 * columns in the panel (8 adjacent columns of a 16-column chunk are 32 adjacent bytes). */
static void ISA(pack)(const ld_qgemm_format *f, const uint8_t *W, size_t wrow, int64_t n0, int nc, int64_t K,
                      uint8_t *panel, uint8_t *tmp) {
    _Static_assert(LD_QGEMM_PACK_ROWS == 8 && NR % 16 == 0, "the packer transposes 8 columns of a 16-column chunk");
    const int G = f->group;
    const int64_t ng = K / G;
    const size_t gb = ld_qgemm_group_bytes(f), rb = ld_qgemm_levels_row_bytes(f, K);
    const ld_levels_fn levels = LEVELS[f->type] ? LEVELS[f->type] : f->levels;
    if (nc < NR) memset(panel, 0, (size_t)ng * gb);
    for (int c0 = 0; c0 < nc; c0 += 8) {
        const int nr = nc - c0 < 8 ? nc - c0 : 8;
        for (int i = 0; i < 8; i++) {
            uint8_t *L = tmp + (size_t)i * rb;
            if (i < nr) levels(W + (size_t)(n0 + c0 + i) * wrow, K, L, (float *)(L + K), (float *)(L + K) + ng);
            else memset(L, 0, (size_t)K); /* padding columns: zero levels (their scales stay zero) */
        }
        const size_t col = (size_t)(c0 / 16) * 64 + (size_t)(c0 % 16) * 4;
        for (int64_t e0 = 0; e0 < K; e0 += 32) { /* K is a multiple of 32 for every format */
            __m256i r[8];
            for (int i = 0; i < 8; i++) r[i] = load32(tmp + (size_t)i * rb + e0);
            transpose8x8_epi32(r);
            for (int k = 0; k < 8; k++) { /* levels e .. e + 3: group e / G, step (e % G) / 4 */
                const int64_t e = e0 + 4 * k;
                store32(panel + (size_t)(e / G) * gb + (size_t)(e % G / 4) * NR * 4 + col, r[k]);
            }
        }
        for (int i = 0; i < nr; i++) {
            const float *s = (const float *)(tmp + (size_t)i * rb + K), *o = s + ng;
            for (int64_t b = 0; b < ng; b++) {
                float *sc = (float *)(panel + (size_t)b * gb + (size_t)G * NR);
                sc[c0 + i] = s[b];
                if (f->has_min) sc[NR + c0 + i] = o[b];
            }
        }
    }
}

/* ---- microkernels ------------------------------------------------------------------------- */
/* The 8 columns of ymm vector y (0..5) of a 48-column row of 4-byte steps: chunk y / 2, half
 * y % 2 — the same offset as 8 y floats or 8 y * 4 bytes. */
INLINE __m256i act4(const int8_t *q, size_t at) {
    int32_t a4;
    memcpy(&a4, q + at, 4);
    return _mm256_set1_epi32(a4);
}

/* Stores vector y of a tile row (columns 8y..8y+7) where cmask has them. */
INLINE void store_cols(float *c, int y, __m256 v, uint64_t cmask) {
    const uint32_t bits = (uint32_t)(cmask >> (8 * y)) & 0xff;
    if (bits == 0xff) {
        _mm256_storeu_ps(c + 8 * y, v);
        return;
    }
    const __m256i sel = _mm256_and_si256(_mm256_set1_epi32((int)bits), _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128));
    _mm256_maskstore_ps(c + 8 * y, _mm256_cmpeq_epi32(sel, _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128)), v);
}

/* Byte panels: strip of vectors y0 .. y0 + NVS - 1, MR rows. */
INLINE void bytes_strip(const int MR, const int NVS, const int G, const bool MIN, const bool SIGNED, const int MAXL, int y0,
                               int64_t ngroups, const uint8_t *panel, const int8_t *q, size_t qs,
                               const ld_qgemm_agroup *ag, size_t gs, float *C, int64_t ldc, uint64_t cmask) {
    const size_t gb = (size_t)G * NR + (MIN ? 2 : 1) * NR * sizeof(float);
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    __m256 f[4][6];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
        for (int v = 0; v < NVS; v++) f[r][v] = _mm256_setzero_ps();
    for (int64_t b = 0; b < ngroups; b++) {
        const uint8_t *pb = panel + (size_t)b * gb;
        __m256i acc[4][6];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++) {
            const __m256i z = SIGNED ? _mm256_setzero_si256() : _mm256_set1_epi32(ag[r * gs + b].zsum);
#pragma GCC unroll 6
            for (int v = 0; v < NVS; v++) acc[r][v] = z;
        }
        const int span = LD_I8_SPAN(MAXL);
        __m256i part[4][6];
#pragma GCC unroll 8
        for (int k = 0; k < G / 4; k++) {
            __m256i w[6], aw[6];
            if (k % span == 0)
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
                    for (int v = 0; v < NVS; v++) part[r][v] = _mm256_setzero_si256();
#pragma GCC unroll 6
            for (int v = 0; v < NVS; v++) {
                w[v] = load32(pb + (size_t)k * NR * 4 + 32 * (y0 + v));
                if (SIGNED) {
                    w[v] = _mm256_xor_si256(w[v], flip);
                    aw[v] = _mm256_abs_epi8(w[v]);
                }
            }
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const __m256i a = act4(q, r * qs + (size_t)b * G + 4 * k);
#pragma GCC unroll 6
                for (int v = 0; v < NVS; v++) {
                    part[r][v] = SIGNED ? ld_i8_acc(part[r][v], aw[v], _mm256_sign_epi8(a, w[v])) : ld_i8_acc(part[r][v], w[v], a);
                    LD_I8_KEEP(part[r][v]);
                }
            }
            if ((k + 1) % span == 0 || k == G / 4 - 1)
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
                    for (int v = 0; v < NVS; v++) {
                        acc[r][v] = ld_i8_flush(acc[r][v], part[r][v]);
                        LD_I8_KEEP(acc[r][v]);
                    }
        }
        const float *sv = (const float *)(pb + (size_t)G * NR);
#pragma GCC unroll 6
        for (int v = 0; v < NVS; v++) {
            const __m256 s = _mm256_loadu_ps(sv + 8 * (y0 + v));
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++)
                f[r][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][v]), _mm256_mul_ps(s, _mm256_set1_ps(ag[r * gs + b].d)), f[r][v]);
        }
    }
    if (MIN) { /* the offsets' term, summed apart as in the reference */
        __m256 mo[4][6];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
            for (int v = 0; v < NVS; v++) mo[r][v] = _mm256_setzero_ps();
        for (int64_t b = 0; b < ngroups; b++) {
            const float *ov = (const float *)(panel + (size_t)b * gb + (size_t)G * NR) + NR;
#pragma GCC unroll 6
            for (int v = 0; v < NVS; v++) {
                const __m256 o = _mm256_loadu_ps(ov + 8 * (y0 + v));
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++) mo[r][v] = _mm256_fmadd_ps(o, _mm256_set1_ps(ag[r * gs + b].dsum), mo[r][v]);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
            for (int v = 0; v < NVS; v++) f[r][v] = _mm256_add_ps(f[r][v], mo[r][v]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
        for (int v = 0; v < NVS; v++) store_cols(C + r * ldc, y0 + v, f[r][v], cmask);
}

/* The strips of a tile: NVS vectors each, skipping strips with no stored column. */
#define STRIPS(MR_, NVS_, call)                                                            \
    for (int y0 = 0; y0 < NY; y0 += (NVS_)) {                                              \
        if ((cmask >> (8 * y0)) & ((1ull << (8 * (NVS_))) - 1)) call;                      \
    }

INLINE void bytes_tile(const int MR, const int G, const bool MIN, const bool SIGNED, const int MAXL, int64_t ngroups,
                       const uint8_t *panel, const int8_t *q, size_t qs, const ld_qgemm_agroup *ag, size_t gs, float *C,
                       int64_t ldc, uint64_t cmask) {
    if (MR == 1) bytes_strip(1, NY, G, MIN, SIGNED, MAXL, 0, ngroups, panel, q, qs, ag, gs, C, ldc, cmask);
    else if (MR == 2) STRIPS(2, 2, bytes_strip(2, 2, G, MIN, SIGNED, MAXL, y0, ngroups, panel, q, qs, ag, gs, C, ldc, cmask))
    else STRIPS(MR, 1, bytes_strip(MR, 1, G, MIN, SIGNED, MAXL, y0, ngroups, panel, q, qs, ag, gs, C, ldc, cmask))
}

#ifdef LD_I8_VNNI
#define Q8_SIGNED false /* vpdpbusd takes Q8_0's 0..255 levels as they are */
#else
#define Q8_SIGNED true
#endif

#define BYTES_MR(G, MIN, SIGNED, MAXL)                                                                     \
    switch (mr) {                                                                                          \
    case 1: bytes_tile(1, G, MIN, SIGNED, MAXL, ngroups, panel, q, qs, g, gs, C, ldc, cmask); break;       \
    case 2: bytes_tile(2, G, MIN, SIGNED, MAXL, ngroups, panel, q, qs, g, gs, C, ldc, cmask); break;       \
    case 3: bytes_tile(3, G, MIN, SIGNED, MAXL, ngroups, panel, q, qs, g, gs, C, ldc, cmask); break;       \
    default: bytes_tile(4, G, MIN, SIGNED, MAXL, ngroups, panel, q, qs, g, gs, C, ldc, cmask); break;      \
    }

_Static_assert(LD_QGEMM_MR == 4 && NR == 48, "the kernels are written for 4-row tiles of 48 columns");

static void ISA(kernel_bytes)(const ld_qgemm_format *f, int mr, int64_t K, const uint8_t *panel, const int8_t *q,
                              size_t qs, const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask) {
    const int64_t ngroups = K / f->group;
    /* the largest level of each type's byte panels bounds the int16 sums (LD_I8_SPAN) */
    /* (levels above 128 only with the zero point 128: signed |w| <= 128 without VNNI) */
    if (f->group == 16 && f->has_min) BYTES_MR(16, true, false, 15)         /* Q2_K */
    else if (f->group == 16 && f->maxl <= 63) BYTES_MR(16, false, false, 63) /* Q6_K, Q3_K, IQ1_M */
    else if (f->group == 16) BYTES_MR(16, false, false, 128)                 /* IQ2_XS, IQ2_S */
    else if (f->has_min) BYTES_MR(32, true, false, 31)                       /* Q4_K, Q5_K */
    else if (f->zp == 128) BYTES_MR(32, false, Q8_SIGNED, 128)               /* Q8_0, IQ4_*: |w| <= 128 */
    else if (f->maxl <= 15) BYTES_MR(32, false, false, 15)                   /* Q4_0, TQ* */
    else BYTES_MR(32, false, false, 128)                                     /* IQ1_S, IQ2_XXS, IQ3_* */
}

/* ---- compact prepacked panels (forms and layouts: quant/qgemm_pack.c) ---------------------- */
/* 8 fp16 / 8 unsigned / 8 signed bytes of column vector y as floats. */
INLINE __m256 half8(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
INLINE __m256 byte8(const uint8_t *p, const int sgn) {
    int64_t u;
    memcpy(&u, p, 8);
    const __m128i v = _mm_cvtsi64_si128(u);
    return _mm256_cvtepi32_ps(sgn ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v));
}

/* Per form: K of a unit, groups in a unit, k of a group, bytes of one group's levels (lo
 * then hi), top bits per level, offset of the first group in a unit, and whether the form has
 * mins (offsets). */
#define CF_UNIT_K(F) ((F) == LD_QPANEL_Q4_0 ? 32 : 256)
#define CF_GROUPS(F) ((F) == LD_QPANEL_Q4_0 ? 1 : (F) == LD_QPANEL_Q6_K ? 16 : 8)
#define CF_G(F) ((F) == LD_QPANEL_Q6_K ? 16 : 32)
#define CF_HBITS(F) ((F) == LD_QPANEL_Q5_K ? 1 : (F) == LD_QPANEL_Q6_K ? 2 : 0)
#define CF_LO(F) (CF_G(F) / 8 * NR * 4)
#define CF_GROUP_BYTES(F) (CF_LO(F) + (CF_HBITS(F) ? 4 * NR : 0))
#define CF_FIRST(F) ((F) == LD_QPANEL_Q4_0 ? 0 : (F) == LD_QPANEL_Q6_K ? 18 * NR : 20 * NR)
#define CF_MIN(F) ((F) == LD_QPANEL_Q4_K || (F) == LD_QPANEL_Q5_K)

/* The scale of group g of unit u for column vector y (exactly the scalar levels form's s). */
INLINE __m256 cf_scale(const int F, const uint8_t *u, int g, int y) {
    if (F == LD_QPANEL_Q4_0) return half8(u + CF_LO(F) + 16 * y);
    if (F == LD_QPANEL_Q6_K) return _mm256_mul_ps(half8(u + 16 * y), byte8(u + 2 * NR + g * NR + 8 * y, 1));
    return _mm256_mul_ps(half8(u + 16 * y), byte8(u + 4 * NR + g * NR + 8 * y, 0));
}
/* The offset of group g (Q4_K, Q5_K): -(dmin * m). */
INLINE __m256 cf_offset(const uint8_t *u, int g, int y) {
    return _mm256_xor_ps(_mm256_mul_ps(half8(u + 2 * NR + 16 * y), byte8(u + 12 * NR + g * NR + 8 * y, 0)), _mm256_set1_ps(-0.0f));
}

INLINE void cf_strip(const int F, const int MR, const int NVS, int y0, int64_t units, const uint8_t *panel,
                     const int8_t *q, size_t qs, const ld_qgemm_agroup *ag, size_t gs, float *C, int64_t ldc,
                     uint64_t cmask) {
    const int G = CF_G(F), NG = CF_GROUPS(F), HB = CF_HBITS(F);
    const size_t unit_bytes = (size_t)LD_QPANEL_UNITS[F].bytes;
    const __m256i m4 = _mm256_set1_epi8(0x0F), mh = _mm256_set1_epi8(HB == 2 ? 3 : 1);
    __m256 f[4][6];
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
        for (int v = 0; v < NVS; v++) f[r][v] = _mm256_setzero_ps();
    for (int64_t i = 0; i < units; i++) {
        const uint8_t *u = panel + (size_t)i * unit_bytes;
        if (MR == 1)
            for (int o = 0; o < CF_FIRST(F); o += 64) _mm_prefetch((const char *)u + unit_bytes + o, _MM_HINT_T0);
        for (int g = 0; g < NG; g++) {
            const int64_t b = i * NG + g; /* the activation group */
            const uint8_t *lv = u + CF_FIRST(F) + (size_t)g * CF_GROUP_BYTES(F), *hv = lv + CF_LO(F);
            if (MR == 1)
                for (int o = 0; o < CF_GROUP_BYTES(F); o += 64) _mm_prefetch((const char *)lv + 4096 + o, _MM_HINT_T0);
            __m256i acc[4][6], hb[6];
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) {
                const __m256i z = _mm256_set1_epi32(ag[r * gs + b].zsum);
#pragma GCC unroll 6
                for (int v = 0; v < NVS; v++) acc[r][v] = z;
            }
            if (HB)
#pragma GCC unroll 6
                for (int v = 0; v < NVS; v++) hb[v] = load32(hv + 32 * (y0 + v));
            /* the levels' width bounds the steps an int16 running sum can take (LD_I8_SPAN) */
            const int span = LD_I8_SPAN(HB == 2 ? 63 : HB == 1 ? 31 : 15);
            __m256i part[4][6];
#pragma GCC unroll 4
            for (int p = 0; p < G / 8; p++) {
                __m256i lo[6], hi[6];
                if ((2 * p) % span == 0)
#pragma GCC unroll 4
                    for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
                        for (int v = 0; v < NVS; v++) part[r][v] = _mm256_setzero_si256();
#pragma GCC unroll 6
                for (int v = 0; v < NVS; v++) {
                    const __m256i raw = load32(lv + (size_t)p * NR * 4 + 32 * (y0 + v));
                    lo[v] = _mm256_and_si256(raw, m4);
                    hi[v] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                    if (HB) { /* top bits of k-steps 2p and 2p + 1 */
                        lo[v] = _mm256_or_si256(lo[v], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb[v], HB * 2 * p), mh), 4));
                        hi[v] = _mm256_or_si256(hi[v], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb[v], HB * (2 * p + 1)), mh), 4));
                    }
                }
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++) {
                    const __m256i a0 = act4(q, r * qs + (size_t)b * G + 8 * p), a1 = act4(q, r * qs + (size_t)b * G + 8 * p + 4);
#pragma GCC unroll 6
                    for (int v = 0; v < NVS; v++) {
                        part[r][v] = ld_i8_acc(ld_i8_acc(part[r][v], lo[v], a0), hi[v], a1);
                        LD_I8_KEEP(part[r][v]);
                    }
                }
                if ((2 * p + 2) % span == 0 || p == G / 8 - 1)
#pragma GCC unroll 4
                    for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
                        for (int v = 0; v < NVS; v++) {
                            acc[r][v] = ld_i8_flush(acc[r][v], part[r][v]);
                            LD_I8_KEEP(acc[r][v]);
                        }
            }
#pragma GCC unroll 6
            for (int v = 0; v < NVS; v++) {
                const __m256 sc = cf_scale(F, u, g, y0 + v);
#pragma GCC unroll 4
                for (int r = 0; r < MR; r++)
                    f[r][v] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[r][v]), _mm256_mul_ps(sc, _mm256_set1_ps(ag[r * gs + b].d)), f[r][v]);
            }
        }
    }
    if (CF_MIN(F)) { /* the mins' term, summed apart as in the reference */
        __m256 mo[4][6];
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
            for (int v = 0; v < NVS; v++) mo[r][v] = _mm256_setzero_ps();
        for (int64_t i = 0; i < units; i++) {
            const uint8_t *u = panel + (size_t)i * unit_bytes;
            for (int g = 0; g < NG; g++)
#pragma GCC unroll 6
                for (int v = 0; v < NVS; v++) {
                    const __m256 o = cf_offset(u, g, y0 + v);
#pragma GCC unroll 4
                    for (int r = 0; r < MR; r++) mo[r][v] = _mm256_fmadd_ps(o, _mm256_set1_ps(ag[r * gs + i * NG + g].dsum), mo[r][v]);
                }
        }
#pragma GCC unroll 4
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
            for (int v = 0; v < NVS; v++) f[r][v] = _mm256_add_ps(f[r][v], mo[r][v]);
    }
#pragma GCC unroll 4
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 6
        for (int v = 0; v < NVS; v++) store_cols(C + r * ldc, y0 + v, f[r][v], cmask);
}

INLINE void cf_tile(const int F, const int MR, int64_t units, const uint8_t *panel, const int8_t *q, size_t qs,
                    const ld_qgemm_agroup *ag, size_t gs, float *C, int64_t ldc, uint64_t cmask) {
    if (MR == 1) cf_strip(F, 1, NY, 0, units, panel, q, qs, ag, gs, C, ldc, cmask);
    else if (MR == 2) STRIPS(2, 2, cf_strip(F, 2, 2, y0, units, panel, q, qs, ag, gs, C, ldc, cmask))
    else STRIPS(MR, 1, cf_strip(F, MR, 1, y0, units, panel, q, qs, ag, gs, C, ldc, cmask))
}

/* The kernel of compact form F (ld_qgemm_kernel_fn). */
#define CF_KERNEL(name, F)                                                                                       \
    static void ISA(name)(const ld_qgemm_format *f, int mr, int64_t K, const uint8_t *panel, const int8_t *q,   \
                          size_t qs, const ld_qgemm_agroup *g, size_t gs, float *C, int64_t ldc, uint64_t cmask) { \
        (void)f;                                                                                                 \
        const int64_t units = K / CF_UNIT_K(F);                                                                  \
        switch (mr) {                                                                                            \
        case 1: cf_tile(F, 1, units, panel, q, qs, g, gs, C, ldc, cmask); break;                                 \
        case 2: cf_tile(F, 2, units, panel, q, qs, g, gs, C, ldc, cmask); break;                                 \
        case 3: cf_tile(F, 3, units, panel, q, qs, g, gs, C, ldc, cmask); break;                                 \
        default: cf_tile(F, 4, units, panel, q, qs, g, gs, C, ldc, cmask); break;                                \
        }                                                                                                        \
    }
CF_KERNEL(kernel_q4_K, LD_QPANEL_Q4_K)
CF_KERNEL(kernel_q5_K, LD_QPANEL_Q5_K)
CF_KERNEL(kernel_q6_K, LD_QPANEL_Q6_K)
CF_KERNEL(kernel_q4_0, LD_QPANEL_Q4_0)

const ld_qgemm_isa ISA(ld_qgemm_isa) = {
    .quantize_act = ISA(quantize_act),
    .pack = ISA(pack),
    .kernel = {[LD_QPANEL_BYTES] = ISA(kernel_bytes), [LD_QPANEL_Q4_K] = ISA(kernel_q4_K), [LD_QPANEL_Q5_K] = ISA(kernel_q5_K),
               [LD_QPANEL_Q6_K] = ISA(kernel_q6_K), [LD_QPANEL_Q4_0] = ISA(kernel_q4_0)},
};

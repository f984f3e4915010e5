/* kernels/cpu/gemm_avx2.c — AVX2 + FMA matrix products for CPUs without AVX-512: packers
 * and a 6 x 16 register-blocked micro-kernel (12 ymm accumulators, 2 vector loads of B and
 * 6 broadcasts of A per k step) plugged into the blocked driver (kernels/cpu/gemm.h), for
 * gemm_f32, gemm_bf16 (bf16 widened exactly to f32 while packing; AVX2 has no bf16 dot
 * product) and gemm_f32_f16 (f16 weights widened by F16C while B is packed). Same structure as gemm_avx512.c with 8-lane vectors: edges go through a small
 * zeroed buffer instead of masked loads (AVX2 has no 16-bit masked load). */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/gemm.h"
#include "kernels/ref/ref.h"

#define MR 6
#define NR 16

enum { K_F32 = 0, K_CVT = 1, K_F16 = 2 };

#define INLINE static inline __attribute__((always_inline))

/* Lane mask for _mm256_maskload/maskstore: the first n lanes. */
INLINE __m256i lanes(int64_t n) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 0 ? 0 : n > 8 ? 8 : n)), idx);
}

/* 8 consecutive source elements from p (first n valid, the rest zero) as f32 bits. */
INLINE __m256i load8(int kind, const void *p, int64_t n) {
    if (kind == K_F32) {
        if (n >= 8) return _mm256_castps_si256(_mm256_loadu_ps(p));
        return _mm256_castps_si256(_mm256_maskload_ps(p, lanes(n)));
    }
    __m128i h;
    if (n >= 8) h = _mm_loadu_si128(p);
    else {
        uint16_t tmp[8] = {0};
        if (n > 0) memcpy(tmp, p, (size_t)n * 2);
        h = _mm_loadu_si128((const __m128i *)tmp);
    }
    if (kind == K_F16) return _mm256_castps_si256(_mm256_cvtph_ps(h));
    return _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
}

/* In-register transpose of an 8 x 8 block of 32-bit elements. */
INLINE void transpose8(__m256i r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(_mm256_castsi256_ps(r[2 * i]), _mm256_castsi256_ps(r[2 * i + 1]));
        t[2 * i + 1] = _mm256_unpackhi_ps(_mm256_castsi256_ps(r[2 * i]), _mm256_castsi256_ps(r[2 * i + 1]));
    }
    for (int q = 0; q < 2; q++) {
        u[4 * q + 0] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
        u[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
        u[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        u[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
    }
    /* u[4q + c] lane L (128-bit half) holds column 4L + c of rows 4q..4q+3 */
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_castps_si256(_mm256_permute2f128_ps(u[c], u[4 + c], 0x20));
        r[4 + c] = _mm256_castps_si256(_mm256_permute2f128_ps(u[c], u[4 + c], 0x31));
    }
}

/* Rows are packed in chunks of min(w, 8): a whole A panel (w = 6) or a half B panel. */
INLINE void store_chunk(uint32_t *dst, int64_t steps, int w, int64_t rb, int64_t u, __m256i v) {
    uint32_t *d = dst + (rb / w) * steps * w + u * w + rb % w;
    if (w >= 8) _mm256_storeu_si256((__m256i *)d, v);
    else _mm256_maskstore_epi32((int *)d, lanes(w), v);
}

/* The packer (ld_gemm_pack_fn, layout in gemm.h) for one source kind and panel width w. */
INLINE void pack_kind(int kind, int w, void *dstv, const void *X, int64_t ld, bool kcontig, int64_t r0, int64_t nr,
                      int64_t k0, int64_t nk) {
    uint32_t *dst = dstv;
    const int ch = w < 8 ? w : 8;
    const size_t esize = kind == K_F32 ? 4 : 2;
    const int64_t rpad = (nr + w - 1) / w * w;
    if (kcontig) {
        for (int64_t rb = 0; rb < rpad; rb += ch)
            for (int64_t ub = 0; ub < nk; ub += 8) {
                __m256i v[8];
                for (int i = 0; i < 8; i++)
                    v[i] = i < ch && rb + i < nr
                               ? load8(kind, (const char *)X + (size_t)((r0 + rb + i) * ld + k0 + ub) * esize, nk - ub)
                               : _mm256_setzero_si256();
                transpose8(v);
                int64_t un = nk - ub < 8 ? nk - ub : 8;
                for (int64_t u = 0; u < un; u++) store_chunk(dst, nk, w, rb, ub + u, v[u]);
            }
    } else {
        for (int64_t u = 0; u < nk; u++)
            for (int64_t rb = 0; rb < rpad; rb += ch)
                store_chunk(dst, nk, w, rb, u,
                            load8(kind, (const char *)X + (size_t)((k0 + u) * ld + r0 + rb) * esize,
                                  nr - rb < ch ? nr - rb : ch));
    }
}

#define PACKERS(name, kind)                                                                                     \
    static void name##_a(void *d, const void *X, int64_t ld, bool kc, int64_t r0, int64_t nr, int64_t k0,      \
                         int64_t nk, int w) {                                                                   \
        (void)w;                                                                                                \
        pack_kind(kind, MR, d, X, ld, kc, r0, nr, k0, nk);                                                     \
    }                                                                                                           \
    static void name##_b(void *d, const void *X, int64_t ld, bool kc, int64_t r0, int64_t nr, int64_t k0,      \
                         int64_t nk, int w) {                                                                   \
        (void)w;                                                                                                \
        pack_kind(kind, NR, d, X, ld, kc, r0, nr, k0, nk);                                                     \
    }
PACKERS(pack_f32, K_F32)
PACKERS(pack_cvt, K_CVT)
static void pack_f16_b(void *d, const void *X, int64_t ld, bool kc, int64_t r0, int64_t nr, int64_t k0, int64_t nk, int w) {
    (void)w;
    pack_kind(K_F16, NR, d, X, ld, kc, r0, nr, k0, nk);
}

/* The micro-kernel for R <= MR rows and NR = 16 columns (the N edge via lane masks). */
INLINE void micro_rows(const int R, int64_t steps, const float *a, const float *b, float *C, int64_t ldc, int nr,
                       float alpha, float beta) {
    __m256 acc[MR][2];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0);
    }
    for (int64_t s = 0; s < steps; s++) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            __m256 av = _mm256_broadcast_ss(a + r);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
        a += MR;
        b += NR;
    }
    const __m256i m0 = lanes(nr), m1 = lanes(nr - 8);
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
        float *c = C + r * ldc;
        __m256 x0, x1;
        if (beta == 0.0f) {
            x0 = _mm256_mul_ps(va, acc[r][0]);
            x1 = _mm256_mul_ps(va, acc[r][1]);
        } else if (beta == 1.0f) {
            x0 = _mm256_fmadd_ps(va, acc[r][0], _mm256_maskload_ps(c, m0));
            x1 = _mm256_fmadd_ps(va, acc[r][1], _mm256_maskload_ps(c + 8, m1));
        } else {
            x0 = _mm256_fmadd_ps(va, acc[r][0], _mm256_mul_ps(vb, _mm256_maskload_ps(c, m0)));
            x1 = _mm256_fmadd_ps(va, acc[r][1], _mm256_mul_ps(vb, _mm256_maskload_ps(c + 8, m1)));
        }
        _mm256_maskstore_ps(c, m0, x0);
        _mm256_maskstore_ps(c + 8, m1, x1);
    }
}

static void micro_f32(int64_t steps, const void *pa, const void *pb, float *C, int64_t ldc, int mr, int nr,
                      float alpha, float beta) {
    const float *a = pa, *b = pb;
    switch (mr) {
#define ROWS(R) case R: micro_rows(R, steps, a, b, C, ldc, nr, alpha, beta); break;
        ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6)
#undef ROWS
    default: break;
    }
}

static void fallback_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A, int64_t lda,
                         const void *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_ref_gemm_f32(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void fallback_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                          int64_t lda, const void *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_ref_gemm_bf16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void fallback_f16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                         int64_t lda, const void *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_ref_gemm_f32_f16(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* KC = 256; chunks of at most 240 rows / 512 columns (see gemm_avx512.c for the reasoning;
 * a 6 x 256 A panel is 6 KB of L1). */
const ld_gemm_impl ld_gemm_impl_f32_avx2 = {MR, NR, 240, 256, 512, 1, pack_f32_a, pack_f32_b, micro_f32, 0, 4, fallback_f32};
const ld_gemm_impl ld_gemm_impl_cvt_avx2 = {MR, NR, 240, 256, 512, 1, pack_cvt_a, pack_cvt_b, micro_f32, 0, 2, fallback_bf16};
/* f32 A, f16 B */
const ld_gemm_impl ld_gemm_impl_f16_avx2 = {MR, NR, 240, 256, 512, 1, pack_f32_a, pack_f16_b, micro_f32, 0, 2, fallback_f16};

void ld_gemm_f32_avx2(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                      int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_gemm_run(&ld_gemm_impl_f32_avx2, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ld_gemm_bf16_avx2(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t *A,
                       int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_gemm_run(&ld_gemm_impl_cvt_avx2, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ld_gemm_f32_f16_avx2(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                          int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_gemm_run(&ld_gemm_impl_f16_avx2, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* gemm_bf16 at this level widens bf16 to f32 in the packing and runs the f32 micro-kernel:
 * the same arithmetic rate as gemm_f32. */
static double gemm_bf16_speedup(void) {
    return 1.0;
}

const ld_kernels ld_kernels_cpu_avx2_gemm = {
    .name = "cpu-avx2",
    .gemm_f32 = ld_gemm_f32_avx2,
    .gemm_bf16 = ld_gemm_bf16_avx2,
    .gemm_f32_f16 = ld_gemm_f32_f16_avx2,
    .gemm_bf16_speedup = gemm_bf16_speedup,
};

/* kernels/cpu/gemm_avx512.c — AVX-512 matrix products: the packers and the 14 x 32
 * register-blocked micro-kernels plugged into the blocked driver (kernels/cpu/gemm.h), for
 *   gemm_f32        f32 packed panels, FMA micro-kernel;
 *   gemm_bf16 "cvt" bf16 widened to f32 while packing (exact), then the same FMA kernel;
 *   gemm_bf16 "dot" bf16 packed as k pairs, vdpbf16ps micro-kernel (fp32 accumulation).
 *
 * Micro-kernel: C[14, 32] lives in 28 zmm accumulators (14 rows x 2 vectors of 16
 * columns); each k step loads 2 vectors of the B panel (streamed from L2) and broadcasts 14
 * values of the A panel (from L1) for 28 FMAs: 4.6 bytes of B per FMA (an 8 x 48 tile
 * needs 8). The M edge (256 = 18 x 14 + 4) runs an instantiation for the exact row count,
 * the N edge uses masked loads and stores; the training N (768, 2304, 3072, 50304) are
 * multiples of 32. Both bf16 paths produce fp32 sums of exact products, but in different
 * orders (vdpbf16ps adds a pair at a time, odd element first, and flushes denormals), so
 * the bits differ between paths — which is why the path is chosen once per process and
 * never per call.
 *
 * bf16 path choice: the dot path does twice the work per instruction, but on some CPUs
 * (this project's Emerald Rapids VM: ~180 GFLOP/s vdpbf16ps vs ~365 fp32 FMA on 2 cores)
 * vdpbf16ps issues at a quarter of the FMA rate, and then widening to f32 during packing
 * (half the memory traffic of f32 inputs, full FMA rate) is faster. No CPUID bit tells
 * which, so on first use both micro-kernels run on a small L1-resident problem (~1 ms) and
 * "dot" is chosen only when it is at least 1.3x faster — a margin so that near-ties always
 * resolve to "cvt" and the choice (hence the bits) is stable run to run for a given binary
 * on a given machine (an unoptimized -O0 build, where the loop overhead dominates, can
 * choose differently). LD_GEMM_BF16=dot or =cvt in the environment forces a path. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/gemm.h"
#include "kernels/ref/ref.h"
#include "liandan/core.h"

#define MR 14
#define NR 32

/* Source element kinds the packers read. */
enum { K_F32 = 0, K_CVT = 1, K_PAIR = 2, K_F16 = 3 };

#define INLINE static inline __attribute__((always_inline))

INLINE __mmask16 mask16(int64_t n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }
INLINE __mmask32 mask32(int64_t n) { return n >= 32 ? (__mmask32)0xffffffffu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

/* 16 bf16 at p (first n valid) widened exactly to f32 bit patterns. */
INLINE __m512i load_bf16_as_f32(const uint16_t *p, int64_t n) {
    return _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask16(n), p)), 16);
}

/* 16 f16 at p (first n valid) widened exactly to f32. */
INLINE __m512i load_f16_as_f32(const uint16_t *p, int64_t n) {
    return _mm512_castps_si512(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask16(n), p)));
}

/* 16 packed units along k from row pointer `row` starting at element k (n elements valid
 * from there): f32 lanes, widened bf16 or f16, or bf16 pairs (32 elements). */
INLINE __m512i load_along_k(int kind, const void *row, int64_t k, int64_t n) {
    if (kind == K_F32) return _mm512_castps_si512(_mm512_maskz_loadu_ps(mask16(n), (const float *)row + k));
    if (kind == K_CVT) return load_bf16_as_f32((const uint16_t *)row + k, n);
    if (kind == K_F16) return load_f16_as_f32((const uint16_t *)row + k, n);
    return _mm512_maskz_loadu_epi16(mask32(n), (const uint16_t *)row + k);
}

/* 16 packed units across rows r..r+15 (n valid) at k-step element k, where the source
 * holds element (r, k) at X[k * ld + r]; `kn` elements of k remain from k. Pairs combine
 * rows k and k+1 (zero when k+1 is past the end). */
INLINE __m512i load_across(int kind, const void *X, int64_t ld, int64_t k, int64_t kn, int64_t r, int64_t n) {
    if (kind == K_F32) return _mm512_castps_si512(_mm512_maskz_loadu_ps(mask16(n), (const float *)X + k * ld + r));
    const uint16_t *x = (const uint16_t *)X + k * ld + r;
    if (kind == K_CVT) return load_bf16_as_f32(x, n);
    if (kind == K_F16) return load_f16_as_f32(x, n);
    __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask16(n), x));
    if (kn < 2) return lo;
    __m512i hi = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask16(n), x + ld));
    return _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16));
}

/* In-register transpose of a 16 x 16 block of 32-bit elements: r[i] lane j -> r[j] lane i. */
INLINE void transpose16(__m512i r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(_mm512_castsi512_ps(r[2 * i]), _mm512_castsi512_ps(r[2 * i + 1]));
        t[2 * i + 1] = _mm512_unpackhi_ps(_mm512_castsi512_ps(r[2 * i]), _mm512_castsi512_ps(r[2 * i + 1]));
    }
    for (int q = 0; q < 4; q++) {
        u[4 * q + 0] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0x44);
        u[4 * q + 1] = _mm512_shuffle_ps(t[4 * q], t[4 * q + 2], 0xee);
        u[4 * q + 2] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0x44);
        u[4 * q + 3] = _mm512_shuffle_ps(t[4 * q + 1], t[4 * q + 3], 0xee);
    }
    /* u[4q + c] lane L holds column 4L + c of rows 4q..4q+3. */
    for (int c = 0; c < 4; c++) {
        __m512 x = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), y = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        __m512 x2 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xee), y2 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xee);
        r[c] = _mm512_castps_si512(_mm512_shuffle_f32x4(x, y, 0x88));
        r[4 + c] = _mm512_castps_si512(_mm512_shuffle_f32x4(x, y, 0xdd));
        r[8 + c] = _mm512_castps_si512(_mm512_shuffle_f32x4(x2, y2, 0x88));
        r[12 + c] = _mm512_castps_si512(_mm512_shuffle_f32x4(x2, y2, 0xdd));
    }
}

/* Rows are packed in chunks of CH = min(w, 16) rows: a chunk is one whole panel (w <= 16,
 * the A panels) or one half of a panel (w = 32, the B panels). Stores lanes 0..CH-1 of v,
 * the values of rows rb..rb+CH-1 at packed step u. */
INLINE void store_chunk(uint32_t *dst, int64_t steps, int w, int64_t rb, int64_t u, __m512i v) {
    const int ch = w < 16 ? w : 16;
    uint32_t *d = dst + (rb / w) * steps * w + u * w + rb % w;
    if (ch == 16) _mm512_storeu_si512(d, v);
    else _mm512_mask_storeu_epi32(d, mask16(ch), v);
}

/* The packer (ld_gemm_pack_fn) for one source kind and panel width w (a constant after
 * inlining: w <= 16 or a multiple of 16). */
INLINE void pack_kind(int kind, int w, void *dstv, const void *X, int64_t ld, bool kcontig, int64_t r0, int64_t nr,
                      int64_t k0, int64_t nk) {
    uint32_t *dst = dstv;
    const int kg = kind == K_PAIR ? 2 : 1, ch = w < 16 ? w : 16;
    const size_t esize = kind == K_F32 ? 4 : 2;
    const int64_t steps = (nk + kg - 1) / kg, rpad = (nr + w - 1) / w * w;
    if (kcontig) {
        /* element (r, k) at X[r * ld + k]: 16 x 16 blocks, transposed in registers */
        for (int64_t rb = 0; rb < rpad; rb += ch)
            for (int64_t ub = 0; ub < steps; ub += 16) {
                __m512i v[16];
                for (int i = 0; i < 16; i++)
                    v[i] = i < ch && rb + i < nr
                               ? load_along_k(kind, (const char *)X + (size_t)((r0 + rb + i) * ld) * esize,
                                              k0 + ub * kg, nk - ub * kg)
                               : _mm512_setzero_si512();
                transpose16(v);
                int64_t un = steps - ub < 16 ? steps - ub : 16;
                for (int64_t u = 0; u < un; u++) store_chunk(dst, steps, w, rb, ub + u, v[u]);
            }
    } else {
        /* element (r, k) at X[k * ld + r]: rows are contiguous, copy a chunk at a time */
        for (int64_t u = 0; u < steps; u++)
            for (int64_t rb = 0; rb < rpad; rb += ch)
                store_chunk(dst, steps, w, rb, u,
                            load_across(kind, X, ld, k0 + u * kg, nk - u * kg, r0 + rb, (nr - rb < ch ? nr - rb : ch)));
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
PACKERS(pack_pair, K_PAIR)
static void pack_f16_b(void *d, const void *X, int64_t ld, bool kc, int64_t r0, int64_t nr, int64_t k0, int64_t nk, int w) {
    (void)w;
    pack_kind(K_F16, NR, d, X, ld, kc, r0, nr, k0, nk);
}

/* The micro-kernel for R <= MR rows (a constant after inlining) and NR = 32 columns (two
 * vectors, the second masked at the N edge); dot selects vdpbf16ps on bf16 pairs. The
 * packed A panel always has MR values per step, of which the first R are used. */
INLINE void micro_rows(bool dot, const int R, int64_t steps, const float *a, const float *b, float *C, int64_t ldc,
                       int nr, float alpha, float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 14
    for (int r = 0; r < R; r++) {
        acc[r][0] = acc[r][1] = _mm512_setzero_ps();
        _mm_prefetch((const char *)(C + r * ldc), _MM_HINT_T0); /* C is needed at the end */
        _mm_prefetch((const char *)(C + r * ldc + 16), _MM_HINT_T0);
    }
    for (int64_t s = 0; s < steps; s++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 14
        for (int r = 0; r < R; r++) {
            if (dot) {
                __m512bh av = (__m512bh)_mm512_set1_ps(a[r]);
                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], (__m512bh)b0, av);
                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], (__m512bh)b1, av);
            } else {
                __m512 av = _mm512_set1_ps(a[r]);
                acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
            }
        }
        a += MR;
        b += NR;
    }
    const __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 14
    for (int r = 0; r < R; r++) {
        float *c = C + r * ldc;
        __m512 x0, x1;
        if (beta == 0.0f) {
            x0 = _mm512_mul_ps(va, acc[r][0]);
            x1 = _mm512_mul_ps(va, acc[r][1]);
        } else if (beta == 1.0f) {
            x0 = _mm512_fmadd_ps(va, acc[r][0], _mm512_maskz_loadu_ps(m0, c));
            x1 = _mm512_fmadd_ps(va, acc[r][1], _mm512_maskz_loadu_ps(m1, c + 16));
        } else {
            x0 = _mm512_fmadd_ps(va, acc[r][0], _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m0, c)));
            x1 = _mm512_fmadd_ps(va, acc[r][1], _mm512_mul_ps(vb, _mm512_maskz_loadu_ps(m1, c + 16)));
        }
        _mm512_mask_storeu_ps(c, m0, x0);
        _mm512_mask_storeu_ps(c + 16, m1, x1);
    }
}

/* ld_gemm_micro_fn: one instantiation per row count, chosen by mr. */
INLINE void micro_kind(bool dot, int64_t steps, const void *pa, const void *pb, float *C, int64_t ldc, int mr,
                       int nr, float alpha, float beta) {
    const float *a = pa, *b = pb;
    switch (mr) {
#define ROWS(R) case R: micro_rows(dot, R, steps, a, b, C, ldc, nr, alpha, beta); break;
        ROWS(1) ROWS(2) ROWS(3) ROWS(4) ROWS(5) ROWS(6) ROWS(7) ROWS(8) ROWS(9) ROWS(10) ROWS(11) ROWS(12)
        ROWS(13) ROWS(14)
#undef ROWS
    default: break;
    }
}

static void micro_f32(int64_t steps, const void *a, const void *b, float *C, int64_t ldc, int mr, int nr,
                      float alpha, float beta) {
    micro_kind(false, steps, a, b, C, ldc, mr, nr, alpha, beta);
}
static void micro_dot(int64_t steps, const void *a, const void *b, float *C, int64_t ldc, int mr, int nr,
                      float alpha, float beta) {
    micro_kind(true, steps, a, b, C, ldc, mr, nr, alpha, beta);
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

/* Blocks: KC = 256 k steps (512 bf16 in pairs); a thread's chunk of C is at most 420 rows
 * (split along M) or 512 columns (split along N), so its KC slice of packed operand
 * (<= 512 KB) and the team's shared slice (<= 512 KB at M = 256) stay in the 2 MB L2 while
 * an MR x KC A panel (14 KB) is reused from the 48 KB L1 across the B panels. */
const ld_gemm_impl ld_gemm_impl_f32_avx512 = {MR, NR, 420, 256, 512, 1, pack_f32_a, pack_f32_b, micro_f32, 0, 4, fallback_f32};
const ld_gemm_impl ld_gemm_impl_cvt_avx512 = {MR, NR, 420, 256, 512, 1, pack_cvt_a, pack_cvt_b, micro_f32, 0, 2, fallback_bf16};
const ld_gemm_impl ld_gemm_impl_dot_avx512 = {MR, NR, 420, 512, 512, 2, pack_pair_a, pack_pair_b, micro_dot, 0, 2, fallback_bf16};
const ld_gemm_impl ld_gemm_impl_f16_avx512 = {MR, NR, 420, 256, 512, 1, pack_f32_a, pack_f16_b, micro_f32, 0, 2, fallback_f16};
void ld_gemm_f32_f16_avx512(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                            int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_gemm_run(&ld_gemm_impl_f16_avx512, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
void ld_gemm_f32_avx512(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                        int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_gemm_run(&ld_gemm_impl_f32_avx512, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ld_gemm_bf16_cvt_avx512(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                             const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C,
                             int64_t ldc) {
    ld_gemm_run(&ld_gemm_impl_cvt_avx512, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ld_gemm_bf16_dot_avx512(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                             const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C,
                             int64_t ldc) {
    ld_gemm_run(&ld_gemm_impl_dot_avx512, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* ---- bf16 path choice ---------------------------------------------------------------- */

/* GFLOP/s of one micro-kernel on zero panels that fit in L1 (best of 3 short runs). */
static double micro_rate(ld_gemm_micro_fn fn, int kgran) {
    enum { STEPS = 96, CALLS = 400 };
    static float a[STEPS * MR] __attribute__((aligned(64))), b[STEPS * NR] __attribute__((aligned(64)));
    float c[MR * NR] __attribute__((aligned(64)));
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = ld_time_now();
        for (int i = 0; i < CALLS; i++) fn(STEPS, a, b, c, NR, MR, NR, 1.0f, 1.0f);
        double t = ld_time_now() - t0, r = t > 0 ? 2.0 * MR * NR * STEPS * kgran * CALLS / t * 1e-9 : 0;
        if (r > best) best = r;
    }
    return best;
}

static int bf16_choice;            /* 0 undecided, 1 cvt, 2 dot */
static double bf16_rate_cvt, bf16_rate_dot;

static int bf16_decide(void) {
    int c = __atomic_load_n(&bf16_choice, __ATOMIC_ACQUIRE);
    if (c) return c;
    const char *env = getenv("LD_GEMM_BF16");
    if (!ld_cpu_features_get()->avx512_bf16) c = 1;
    else if (env && !strcmp(env, "dot")) c = 2;
    else if (env && !strcmp(env, "cvt")) c = 1;
    else {
        double cvt = 0, dot = 0;
        for (int i = 0; i < 2; i++) { /* interleaved, so a burst of load hits both alike */
            double x = micro_rate(micro_f32, 1), y = micro_rate(micro_dot, 2);
            if (x > cvt) cvt = x;
            if (y > dot) dot = y;
        }
        bf16_rate_cvt = cvt;
        bf16_rate_dot = dot;
        c = dot >= 1.3 * cvt ? 2 : 1;
    }
    __atomic_store_n(&bf16_choice, c, __ATOMIC_RELEASE);
    return c;
}

const char *ld_gemm_bf16_avx512_choice(double *cvt_gflops, double *dot_gflops) {
    int c = bf16_decide();
    if (cvt_gflops) *cvt_gflops = bf16_rate_cvt;
    if (dot_gflops) *dot_gflops = bf16_rate_dot;
    return c == 2 ? "dot" : "cvt";
}

static void gemm_bf16_auto(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                           const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C,
                           int64_t ldc) {
    ld_gemm_run(bf16_decide() == 2 ? &ld_gemm_impl_dot_avx512 : &ld_gemm_impl_cvt_avx512, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                C, ldc);
}

static double gemm_bf16_speedup(void) {
    double cvt = 0, dot = 0;
    if (strcmp(ld_gemm_bf16_avx512_choice(&cvt, &dot), "dot")) return 1.0;
    return cvt > 0 && dot > 0 ? dot / cvt : 2.0; /* forced by LD_GEMM_BF16=dot: nominal */
}

const ld_kernels ld_kernels_cpu_avx512_gemm = {
    .name = "cpu-avx512",
    .gemm_f32 = ld_gemm_f32_avx512,
    .gemm_bf16 = gemm_bf16_auto,
    .gemm_f32_f16 = ld_gemm_f32_f16_avx512,
    .gemm_bf16_speedup = gemm_bf16_speedup,
};

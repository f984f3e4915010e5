/* tests/unit/test_gemm.c — matrix products: the reference against hand-computed values, the
 * optimized CPU GEMMs (f32, both bf16 paths) against the reference on random and odd shapes,
 * all four transpose combinations, alpha/beta, padded leading dimensions, determinism. */
#include <stdint.h>

#include "core/team.h"
#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "ld_test.h"

/* ---- helpers ---------------------------------------------------------------------- */

static float *rand_f32(ld_rng *r, int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = 2.0f * ld_rng_uniform(r) - 1.0f;
    return p;
}

/* Stores the row-major [rows, cols] matrix src (dense) into dst with leading dimension ld,
 * transposed when trans (then dst is [cols, rows]); the padding gets garbage. */
static float *layout(const float *src, int64_t rows, int64_t cols, bool trans, int64_t ld) {
    int64_t outer = trans ? cols : rows;
    float *d = malloc((size_t)(outer * ld > 0 ? outer * ld : 1) * sizeof *d);
    for (int64_t i = 0; i < outer * ld; i++) d[i] = 1e30f;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) d[trans ? j * ld + i : i * ld + j] = src[i * cols + j];
    return d;
}

/* ---- reference against hand-computed values ---------------------------------------- */

TEST(ref_gemm_small_known_all_layouts) {
    /* op(A) = [[1,2,3],[4,5,6]] (2x3), op(B) = [[1,0],[0,1],[2,-1]] (3x2)
     * op(A) op(B) = [[7,-1],[16,-1]] */
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 2, -1};
    const float want[4] = {7, -1, 16, -1};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t lda = ta ? 2 + 1 : 3 + 2, ldb = tb ? 3 + 3 : 2 + 1;
            float *A = layout(a, 2, 3, ta, lda), *B = layout(b, 3, 2, tb, ldb);
            float C[2 * 4];
            for (int i = 0; i < 8; i++) C[i] = NAN; /* beta = 0 must ignore NaN */
            ld_kernels_ref.gemm_f32(ta, tb, 2, 2, 3, 1.0f, A, lda, B, ldb, 0.0f, C, 4);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) CHECK_NEAR(C[i * 4 + j], want[i * 2 + j], 0);
            CHECK(isnan(C[2]) && isnan(C[3])); /* columns beyond N untouched */
            /* C = 2 * AB + 1 * C */
            ld_kernels_ref.gemm_f32(ta, tb, 2, 2, 3, 2.0f, A, lda, B, ldb, 1.0f, C, 4);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) CHECK_NEAR(C[i * 4 + j], 3 * want[i * 2 + j], 0);
            /* bf16: these values are exact in bf16 */
            uint16_t Ah[16], Bh[16];
            for (int i = 0; i < (ta ? 3 : 2) * lda; i++) Ah[i] = ld_fp32_to_bf16(A[i]);
            for (int i = 0; i < (tb ? 2 : 3) * ldb; i++) Bh[i] = ld_fp32_to_bf16(B[i]);
            for (int i = 0; i < 8; i++) C[i] = NAN;
            ld_kernels_ref.gemm_bf16(ta, tb, 2, 2, 3, 1.0f, Ah, lda, Bh, ldb, 0.0f, C, 4);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) CHECK_NEAR(C[i * 4 + j], want[i * 2 + j], 0);
            free(A);
            free(B);
        }
}

TEST(ref_gemm_k0_scales_c) {
    float C[2] = {3, NAN};
    ld_kernels_ref.gemm_f32(false, false, 1, 1, 0, 1.0f, NULL, 1, NULL, 1, 1.0f, C, 1);
    CHECK_NEAR(C[0], 3, 0);
    ld_kernels_ref.gemm_f32(false, false, 1, 1, 0, 1.0f, NULL, 1, NULL, 1, 0.0f, C + 1, 1);
    CHECK_NEAR(C[1], 0, 0);
}

/* ---- optimized against reference ----------------------------------------------------- */

typedef void (*gemm_f32_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                            const float *, int64_t, float, float *, int64_t);
typedef void (*gemm_bf16_fn)(bool, bool, int64_t, int64_t, int64_t, float, const uint16_t *,
                             int64_t, const uint16_t *, int64_t, float, float *, int64_t);
typedef void (*gemm_f16_fn)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t,
                            const uint16_t *, int64_t, float, float *, int64_t);
/* When set (and check_case gets neither f nor h): the f32 x f16 kernel under test. */
static gemm_f16_fn f16_kernel;

/* Tolerance: |C - C_ref| <= TOL * (|alpha| sum_k |a_ik||b_kj| + |beta| |C0_ij|). fp32
 * accumulation of K terms in blocks errs by at most ~K * 2^-24 relative to that sum in the
 * worst case and ~sqrt(K) * 2^-24 typically; 1e-5 passes every correct summation order at
 * these K (<= 769) while any wrong element (a missed, doubled or misplaced product) is off
 * by O(1) of it. bf16 products are exact in fp32, so the same bound holds there. */
#define TOL 1e-5

typedef struct gemm_case {
    int64_t M, N, K;
    bool ta, tb;
    float alpha, beta;
} gemm_case;

/* Runs one case through the f32 kernel `f` or the bf16 kernel `h` (inputs rounded to bf16)
 * and compares with the reference on the same inputs. Leading dimensions are padded (lda >
 * row length) and C's padding columns must come back untouched. */
static void check_case(const char *what, gemm_f32_fn f, gemm_bf16_fn h, gemm_case c, uint64_t seed) {
    ld_rng r = ld_rng_init(seed);
    const int64_t M = c.M, N = c.N, K = c.K, pad = 3;
    float *a = rand_f32(&r, M * K), *b = rand_f32(&r, K * N), *c0 = rand_f32(&r, M * N);
    if (h) { /* make the values exactly representable in bf16, so ref sees the same inputs */
        for (int64_t i = 0; i < M * K; i++) a[i] = ld_bf16_to_fp32(ld_fp32_to_bf16(a[i]));
        for (int64_t i = 0; i < K * N; i++) b[i] = ld_bf16_to_fp32(ld_fp32_to_bf16(b[i]));
    }
    const bool f16 = !f && !h;
    if (f16) /* B exactly representable in f16 */
        for (int64_t i = 0; i < K * N; i++) b[i] = ld_fp16_to_fp32(ld_fp32_to_fp16(b[i]));
    int64_t lda = (c.ta ? M : K) + pad, ldb = (c.tb ? K : N) + pad, ldc = N + pad;
    float *A = layout(a, M, K, c.ta, lda), *B = layout(b, K, N, c.tb, ldb);
    float *C = layout(c0, M, N, false, ldc), *Cref = layout(c0, M, N, false, ldc);
    if (c.beta == 0.0f)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = NAN;
    /* bound: |alpha| |A||B| + |beta| |C0| (by the reference on absolute values) */
    float *absA = malloc((size_t)(M * K) * sizeof(float)), *absB = malloc((size_t)(K * N) * sizeof(float));
    float *bound = layout(c0, M, N, false, N);
    for (int64_t i = 0; i < M * K; i++) absA[i] = fabsf(a[i]);
    for (int64_t i = 0; i < K * N; i++) absB[i] = fabsf(b[i]);
    for (int64_t i = 0; i < M * N; i++) bound[i] = fabsf(c.beta * bound[i]);
    ld_ref_gemm_f32(false, false, M, N, K, fabsf(c.alpha), absA, K, absB, N, 1.0f, bound, N);
    if (h) {
        int64_t na = (c.ta ? K : M) * lda, nb = (c.tb ? N : K) * ldb;
        uint16_t *Ah = malloc((size_t)na * 2), *Bh = malloc((size_t)nb * 2);
        for (int64_t i = 0; i < na; i++) Ah[i] = ld_fp32_to_bf16(A[i]);
        for (int64_t i = 0; i < nb; i++) Bh[i] = ld_fp32_to_bf16(B[i]);
        h(c.ta, c.tb, M, N, K, c.alpha, Ah, lda, Bh, ldb, c.beta, C, ldc);
        ld_ref_gemm_bf16(c.ta, c.tb, M, N, K, c.alpha, Ah, lda, Bh, ldb, c.beta, Cref, ldc);
        free(Ah);
        free(Bh);
    } else if (f16) {
        int64_t nb = (c.tb ? N : K) * ldb;
        uint16_t *Bh = malloc((size_t)nb * 2);
        for (int64_t i = 0; i < nb; i++) Bh[i] = ld_fp32_to_fp16(B[i]);
        f16_kernel(c.ta, c.tb, M, N, K, c.alpha, A, lda, Bh, ldb, c.beta, C, ldc);
        ld_ref_gemm_f32_f16(c.ta, c.tb, M, N, K, c.alpha, A, lda, Bh, ldb, c.beta, Cref, ldc);
        free(Bh);
    } else {
        f(c.ta, c.tb, M, N, K, c.alpha, A, lda, B, ldb, c.beta, C, ldc);
        ld_ref_gemm_f32(c.ta, c.tb, M, N, K, c.alpha, A, lda, B, ldb, c.beta, Cref, ldc);
    }
    double worst = 0;
    int64_t wi = 0, wj = 0, bad_pad = 0;
    for (int64_t i = 0; i < M; i++) {
        for (int64_t j = 0; j < N; j++) {
            double e = fabs((double)C[i * ldc + j] - Cref[i * ldc + j]) / (bound[i * N + j] + 1e-30);
            if (!(e <= worst)) worst = e, wi = i, wj = j;
        }
        for (int64_t j = N; j < ldc; j++) bad_pad += C[i * ldc + j] != 1e30f;
    }
    CHECK_MSG(worst <= TOL && bad_pad == 0,
              "%s M=%lld N=%lld K=%lld tA=%d tB=%d alpha=%g beta=%g: worst relative error %.3g at "
              "(%lld,%lld) got %.9g want %.9g; %lld padding elements written",
              what, (long long)M, (long long)N, (long long)K, c.ta, c.tb, c.alpha, c.beta, worst,
              (long long)wi, (long long)wj, C[wi * ldc + wj], Cref[wi * ldc + wj], (long long)bad_pad);
    free(a), free(b), free(c0), free(A), free(B), free(C), free(Cref), free(absA), free(absB), free(bound);
}

#if LD_ARCH_X86 /* the x86 GEMMs by name */
/* Odd and edge shapes: single elements, one row/column, sizes just off the 14 x 32 tile
 * and the blocks (K > 256 and 512 for several KC slices, N > 512 and M > 420 for several
 * chunks of at most that size). */
static const int64_t shapes[][3] = {
    {1, 1, 1}, {1, 100, 77}, {1, 3, 600}, {37, 1, 19}, {17, 33, 65}, {19, 29, 41}, {8, 48, 256}, {9, 49, 257},
    {64, 96, 600}, {7, 1601, 5}, {801, 50, 30}, {255, 769, 129},
};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

/* Every shape in all 4 layouts; small ones with all of beta in {0, 1} x alpha in {1, -0.75},
 * large ones with one (alpha, beta) per layout so that all appear. */
static void check_all(const char *what, gemm_f32_fn f, gemm_bf16_fn h, const int64_t (*list)[3], size_t n) {
    uint64_t seed = 1;
    for (size_t s = 0; s < n; s++) {
        int64_t M = list[s][0], N = list[s][1], K = list[s][2];
        bool big = M * N * K > 200000;
        for (int combo = 0; combo < 16; combo++) {
            bool ta = combo & 1, tb = (combo >> 1) & 1;
            float beta = (combo >> 2) & 1 ? 1.0f : 0.0f, alpha = (combo >> 3) & 1 ? -0.75f : 1.0f;
            if (big && ((combo >> 2) & 3) != (combo & 3)) continue;
            check_case(what, f, h, (gemm_case){M, N, K, ta, tb, alpha, beta}, seed++);
        }
    }
}

TEST(gemm_f32_avx512_matches_ref) {
    if (!ld_isa_includes(ld_isa_active(), LD_ISA_AVX512)) SKIP("ISA level %s", ld_isa_name(ld_isa_active()));
    check_all("f32", ld_gemm_f32_avx512, NULL, shapes, NSHAPES);
}

/* The implementations (AVX-512 and AVX2) with tiny blocks (KC = 16 or 18, chunks of 2 tiles, a shared
 * block of one panel), so that small shapes cross every block, chunk and slice boundary. */
static ld_gemm_impl tiny;
static void tiny_f32(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_gemm_run(&tiny, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void tiny_bf16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const uint16_t *A,
                      int64_t lda, const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_gemm_run(&tiny, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void tiny_f16(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                     const uint16_t *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    ld_gemm_run(&tiny, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static const int64_t tiny_shapes[][3] = {{1, 1, 1}, {130, 150, 40}, {17, 33, 65}, {37, 1, 19}, {9, 49, 257}, {45, 40, 70}, {100, 30, 33}};

TEST(gemm_tiny_blocks_match_ref) {
    const ld_cpu_features *f = ld_cpu_features_get();
    const ld_gemm_impl *impls[7] = {&ld_gemm_impl_f32_avx512, &ld_gemm_impl_cvt_avx512, &ld_gemm_impl_f32_avx2,
                                    &ld_gemm_impl_cvt_avx2, &ld_gemm_impl_dot_avx512, &ld_gemm_impl_f16_avx2,
                                    &ld_gemm_impl_f16_avx512};
    const char *names[7] = {"tiny f32", "tiny bf16-cvt", "tiny avx2 f32", "tiny avx2 bf16", "tiny bf16-dot",
                            "tiny avx2 f32 x f16", "tiny avx512 f32 x f16"};
    const ld_isa level = ld_isa_active();
    int ran = 0;
    for (int i = 0; i < 7; i++) {
        bool have = i == 4   ? f->avx512_bf16 && ld_isa_includes(level, LD_ISA_AVX512)
                    : i == 6 ? ld_isa_includes(level, LD_ISA_AVX512)
                    : i >= 2 ? ld_isa_includes(level, LD_ISA_AVX2)
                             : ld_isa_includes(level, LD_ISA_AVX512);
        if (!have) {
            printf("  %s: not at ISA level %s\n", names[i], ld_isa_name(level));
            continue;
        }
        ran++;
        bool f32 = i == 0 || i == 2;
        tiny = *impls[i];
        tiny.kc = i == 4 ? 18 : 16;
        tiny.mc = 2 * tiny.mr;
        tiny.nc = 2 * tiny.nr;
        tiny.shared_max = 64;
        f16_kernel = tiny_f16;
        check_all(names[i], f32 ? tiny_f32 : NULL, f32 || i >= 5 ? NULL : tiny_bf16, tiny_shapes,
                  sizeof tiny_shapes / sizeof tiny_shapes[0]);
    }
    if (!ran) SKIP("no optimized GEMM at ISA level %s", ld_isa_name(level));
}

TEST(gemm_avx2_matches_ref) {
    if (!ld_isa_includes(ld_isa_active(), LD_ISA_AVX2)) SKIP("ISA level %s", ld_isa_name(ld_isa_active()));
    check_all("avx2 f32", ld_gemm_f32_avx2, NULL, shapes, NSHAPES);
    check_all("avx2 bf16", NULL, ld_gemm_bf16_avx2, shapes, NSHAPES);
    f16_kernel = ld_gemm_f32_f16_avx2;
    check_all("avx2 f32 x f16", NULL, NULL, shapes, NSHAPES);
}

TEST(gemm_f32_f16_avx512_matches_ref) {
    if (!ld_isa_includes(ld_isa_active(), LD_ISA_AVX512)) SKIP("ISA level %s", ld_isa_name(ld_isa_active()));
    f16_kernel = ld_gemm_f32_f16_avx512;
    check_all("avx512 f32 x f16", NULL, NULL, shapes, NSHAPES);
}

TEST(gemm_bf16_cvt_avx512_matches_ref) {
    if (!ld_isa_includes(ld_isa_active(), LD_ISA_AVX512)) SKIP("ISA level %s", ld_isa_name(ld_isa_active()));
    check_all("bf16-cvt", NULL, ld_gemm_bf16_cvt_avx512, shapes, NSHAPES);
}

TEST(gemm_bf16_dot_avx512_matches_ref) {
    if (!ld_isa_includes(ld_isa_active(), LD_ISA_AVX512) || !ld_cpu_features_get()->avx512_bf16) SKIP("no AVX-512 BF16 at this level");
    check_all("bf16-dot", NULL, ld_gemm_bf16_dot_avx512, shapes, NSHAPES);
}
#endif

TEST_ISA(gemm_cpu_table_matches_ref) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->gemm_f32, ld_kernels_ref.gemm_f32, "gemm_f32");
    const ld_kernels *k = ld_kernels_cpu_at(ld_test_isa_);
    check_case("table f32", k->gemm_f32, NULL, (gemm_case){33, 97, 71, false, true, 1.0f, 0.0f}, 99);
    check_case("table bf16", NULL, k->gemm_bf16, (gemm_case){33, 97, 71, true, false, 0.5f, 1.0f}, 98);
    ISA_OWN(k->gemm_f32_f16, ld_kernels_ref.gemm_f32_f16, "gemm_f32_f16");
    f16_kernel = k->gemm_f32_f16;
    check_case("table f32 x f16", NULL, NULL, (gemm_case){33, 97, 71, false, true, 1.0f, 0.0f}, 97);
}

TEST(gemm_cpu_table_is_the_active_level) {
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    const ld_isa level = ld_isa_active();
    char want[32];
    snprintf(want, sizeof want, "cpu-%s", ld_isa_name(level));
    CHECK_MSG(!strcmp(k->name, want), "table %s at level %s", k->name, ld_isa_name(level));
    /* the x86 levels have their own GEMM; NEON has none yet (its decode path is gemv) */
    CHECK((k->gemm_f32 != ld_kernels_ref.gemm_f32) == ld_isa_includes(level, LD_ISA_AVX2));
    double cvt = 0, dot = 0;
    const char *path = "none";
#if LD_ARCH_X86
    if (level == LD_ISA_AVX512) path = ld_gemm_bf16_avx512_choice(&cvt, &dot);
#endif
    printf("  table %s, bf16 path %s (micro-kernel cvt %.0f GFLOP/s, dot %.0f GFLOP/s)\n", k->name, path, cvt, dot);
    /* the bf16 speedup precision "auto" reads: the measured ratio on the dot path (chosen at
     * >= 1.3x; 2 when forced by LD_GEMM_BF16), else 1 */
    const double sp = k->gemm_bf16_speedup(), want_sp = strcmp(path, "dot") ? 1.0 : cvt > 0 && dot > 0 ? dot / cvt : 2.0;
    CHECK_MSG(sp == want_sp && sp == ld_bf16_gemm_speedup() && (sp == 1.0 || sp >= 1.3), "speedup %g, want %g", sp, want_sp);
    CHECK(ld_kernels_ref.gemm_bf16_speedup() == 1.0);
}

/* A context of `threads` threads (its team runs the loops of the scopes below). */
static ld_ctx *ctx_with_threads(int threads) {
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = threads;
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(&p, &ctx) == LD_OK);
    return ctx;
}

/* Same inputs, same bits: twice on 2 threads, and on 1 and 3 threads (the partition never
 * changes an element's sequence of operations). Shapes split along N and along M. */
TEST_ISA(gemm_deterministic_across_runs_and_threads) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->gemm_f32, ld_kernels_ref.gemm_f32, "gemm_f32");
    const ld_kernels *k = ld_kernels_cpu_at(ld_test_isa_);
    const int64_t dims[2][3] = {{64, 1000, 300}, {1000, 40, 300}};
    ld_ctx *teams[4] = {ctx_with_threads(2), ctx_with_threads(2), ctx_with_threads(1), ctx_with_threads(3)};
    for (int d = 0; d < 2; d++) {
        int64_t M = dims[d][0], N = dims[d][1], K = dims[d][2];
        ld_rng r = ld_rng_init(7 + d);
        float *A = rand_f32(&r, M * K), *B = rand_f32(&r, K * N);
        uint16_t *Ah = malloc((size_t)(M * K) * 2), *Bh = malloc((size_t)(K * N) * 2);
        for (int64_t i = 0; i < M * K; i++) Ah[i] = ld_fp32_to_bf16(A[i]);
        for (int64_t i = 0; i < K * N; i++) Bh[i] = ld_fp32_to_bf16(B[i]);
        float *C[4], *H[4];
        for (int run = 0; run < 4; run++) {
            LD_TEAM_SCOPE(teams[run]);
            C[run] = malloc((size_t)(M * N) * sizeof(float));
            H[run] = malloc((size_t)(M * N) * sizeof(float));
            k->gemm_f32(false, true, M, N, K, 1.0f, A, K, B, K, 0.0f, C[run], N);
            k->gemm_bf16(false, true, M, N, K, 1.0f, Ah, K, Bh, K, 0.0f, H[run], N);
        }
        size_t bytes = (size_t)(M * N) * sizeof(float);
        for (int run = 1; run < 4; run++) {
            CHECK_MSG(!memcmp(C[0], C[run], bytes), "f32 M=%lld N=%lld: run %d differs", (long long)M, (long long)N, run);
            CHECK_MSG(!memcmp(H[0], H[run], bytes), "bf16 M=%lld N=%lld: run %d differs", (long long)M, (long long)N, run);
        }
        for (int run = 0; run < 4; run++) free(C[run]), free(H[run]);
        free(A), free(B), free(Ah), free(Bh);
    }
    for (int run = 0; run < 4; run++) ld_ctx_free(teams[run]);
}

/* gemv_f32 (the decode path) against the reference gemv, both weight layouts: M = 1..6
 * (past LD_GEMV_MAX_M, so rows are taken in groups), N and K off every vector and tile size
 * (16 floats, 64 floats, tiles of 4/8/16 vectors), sizes big enough to run threaded, and
 * 1 and 2 threads giving the same bits. Tolerance as for the GEMMs. */
TEST_ISA(gemv_f32_matches_ref) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->gemv_f32, ld_kernels_ref.gemv_f32, "gemv_f32");
    const ld_kernels *k = ld_kernels_cpu_at(ld_test_isa_);
    const int64_t nk[][2] = {{1, 1}, {3, 17}, {17, 3}, {33, 65}, {255, 129}, {769, 768}, {2305, 768}, {768, 3073}};
    ld_ctx *two = ctx_with_threads(2), *one = ctx_with_threads(1);
    uint64_t seed = 11;
    for (size_t s = 0; s < sizeof nk / sizeof nk[0]; s++)
        for (int64_t M = 1; M <= 6; M += (nk[s][0] * nk[s][1] > 100000 ? 4 : 1))
            for (int t = 0; t < 2; t++) {
                const int64_t N = nk[s][0], K = nk[s][1];
                ld_rng r = ld_rng_init(seed++);
                float *x = rand_f32(&r, M * K), *w = rand_f32(&r, K * N), *y = malloc((size_t)(M * N) * sizeof(float));
                float *y1 = malloc((size_t)(M * N) * sizeof(float)), *ref = malloc((size_t)(M * N) * sizeof(float));
                float *ax = malloc((size_t)(M * K) * sizeof(float)), *aw = malloc((size_t)(K * N) * sizeof(float));
                float *bound = malloc((size_t)(M * N) * sizeof(float));
                for (int64_t i = 0; i < M * K; i++) ax[i] = fabsf(x[i]);
                for (int64_t i = 0; i < K * N; i++) aw[i] = fabsf(w[i]);
                {
                    LD_TEAM_SCOPE(two);
                    k->gemv_f32(t, M, N, K, x, w, y);
                }
                {
                    LD_TEAM_SCOPE(one);
                    k->gemv_f32(t, M, N, K, x, w, y1);
                }
                ld_ref_gemv_f32(t, M, N, K, x, w, ref);
                ld_ref_gemv_f32(t, M, N, K, ax, aw, bound);
                double worst = 0;
                for (int64_t i = 0; i < M * N; i++) {
                    double e = fabs((double)y[i] - ref[i]) / (bound[i] + 1e-30);
                    if (!(e <= worst)) worst = e;
                }
                CHECK_MSG(worst <= TOL, "gemv transW=%d M=%lld N=%lld K=%lld: relative error %.3g", t, (long long)M,
                          (long long)N, (long long)K, worst);
                CHECK_MSG(!memcmp(y, y1, (size_t)(M * N) * sizeof(float)), "gemv transW=%d M=%lld N=%lld K=%lld: "
                          "1 and 2 threads differ", t, (long long)M, (long long)N, (long long)K);
                free(x), free(w), free(y), free(y1), free(ref), free(ax), free(aw), free(bound);
            }
    ld_ctx_free(two), ld_ctx_free(one);
}

LD_TEST_MAIN()

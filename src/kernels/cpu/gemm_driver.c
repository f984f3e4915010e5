/* kernels/cpu/gemm_driver.c — the ISA-independent part of the CPU GEMM: cache blocking,
 * packing scratch, the static thread partition (see kernels/cpu/gemm.h for the design). */
#include <omp.h>
#include <stdlib.h>

#include "kernels/cpu/gemm.h"

/* Below this many multiply-adds a second thread costs more than it saves. */
#define GEMM_MIN_MACS_PER_THREAD (1 << 17)

typedef struct scratch {
    void *p;
    size_t cap;
} scratch;
static _Thread_local scratch tls_scratch;

/* This thread's scratch of at least `bytes`, or NULL when it cannot be grown. */
static void *scratch_get(size_t bytes) {
    scratch *s = &tls_scratch;
    if (s->cap >= bytes) return s->p;
    size_t cap = (bytes + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(64, cap);
    if (!p) return NULL;
    free(s->p);
    s->p = p;
    s->cap = cap;
    return p;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

typedef struct gemm_args {
    const ld_gemm_impl *impl;
    bool transA, transB;
    int64_t M, N, K;
    float alpha, beta;
    const void *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
} gemm_args;

/* Packed panel bytes for `rows` rows (rounded up to whole panels of w) by kc deep, rounded
 * up to a cache line. */
static size_t panel_bytes(const ld_gemm_impl *im, int64_t rows, int w, int64_t kc) {
    size_t b = (size_t)ceil_div(rows, w) * (size_t)w * (size_t)ceil_div(kc, im->kgran) * 4;
    return (b + 63) & ~(size_t)63; /* keeps the B panels that follow the A panels aligned */
}

/* Scratch bytes gemm_block needs for C[m0:m1, n0:n1]. */
static size_t block_bytes(const gemm_args *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
    const ld_gemm_impl *im = g->impl;
    int64_t kcap = min64(im->kc, g->K);
    return panel_bytes(im, min64(im->mc, m1 - m0), im->mr, kcap) +
           panel_bytes(im, min64(im->nc, n1 - n0), im->nr, kcap);
}

/* The sequential blocked algorithm on C[m0:m1, n0:n1], with block_bytes() of scratch. */
static void gemm_block(const gemm_args *g, int64_t m0, int64_t m1, int64_t n0, int64_t n1, char *buf) {
    const ld_gemm_impl *im = g->impl;
    const int64_t MC = im->mc, KC = im->kc, NC = im->nc;
    char *ap = buf, *bp = buf + panel_bytes(im, min64(MC, m1 - m0), im->mr, min64(KC, g->K));
    for (int64_t jc = n0; jc < n1; jc += NC) {
        int64_t nc = min64(NC, n1 - jc);
        for (int64_t pc = 0; pc < g->K; pc += KC) {
            int64_t kc = min64(KC, g->K - pc), steps = ceil_div(kc, im->kgran);
            float beta = pc == 0 ? g->beta : 1.0f;
            im->pack_b(bp, g->B, g->ldb, g->transB, jc, nc, pc, kc, im->nr);
            for (int64_t ic = m0; ic < m1; ic += MC) {
                int64_t mc = min64(MC, m1 - ic);
                im->pack_a(ap, g->A, g->lda, !g->transA, ic, mc, pc, kc, im->mr);
                for (int64_t ir = 0; ir < mc; ir += im->mr) {
                    const char *a = ap + (size_t)(ir / im->mr) * (size_t)(steps * im->mr) * 4;
                    int mr = (int)min64(im->mr, mc - ir);
                    float *crow = g->C + (ic + ir) * g->ldc + jc;
                    for (int64_t jr = 0; jr < nc; jr += im->nr) {
                        const char *b = bp + (size_t)(jr / im->nr) * (size_t)(steps * im->nr) * 4;
                        im->micro(steps, a, b, crow + jr, g->ldc, mr, (int)min64(im->nr, nc - jr),
                                  g->alpha, beta);
                    }
                }
            }
        }
    }
}

/* K == 0: C = alpha * 0 + beta * C exactly as the reference computes it (beta == 0 does
 * not read C). */
static void scale_c(int64_t M, int64_t N, float alpha, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double r = (double)alpha * 0.0;
            if (beta != 0.0f) r += (double)beta * (double)C[i * ldc + j];
            C[i * ldc + j] = (float)r;
        }
}

void ld_gemm_run(const ld_gemm_impl *impl, bool transA, bool transB, int64_t M, int64_t N,
                 int64_t K, float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                 float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(M, N, alpha, beta, C, ldc);
        return;
    }
#ifdef LD_GEMM_TUNE_ENV /* blocking experiments only: build with -DLD_GEMM_TUNE_ENV */
    ld_gemm_impl tune = *impl;
    if (getenv("LD_GEMM_KC")) tune.kc = atoi(getenv("LD_GEMM_KC"));
    if (getenv("LD_GEMM_MC")) tune.mc = atoi(getenv("LD_GEMM_MC"));
    if (getenv("LD_GEMM_NC")) tune.nc = atoi(getenv("LD_GEMM_NC"));
    impl = &tune;
#endif
    gemm_args g = {impl, transA, transB, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C};
    int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
    double macs = (double)M * (double)N * (double)K;
    if (macs < (double)GEMM_MIN_MACS_PER_THREAD * nt) nt = (int)(macs / GEMM_MIN_MACS_PER_THREAD);
    if (nt < 1) nt = 1;
    /* Split along N (every thread packs all of A) or along M (every thread packs all of B),
     * whichever duplicates less, provided that dimension has a panel for every thread. */
    int64_t nunits = ceil_div(N, impl->nr), munits = ceil_div(M, impl->mr);
    bool split_n = (M <= N && nunits >= nt) || munits < nt;
    int64_t units = split_n ? nunits : munits, unit = split_n ? impl->nr : impl->mr;
    if (units < nt) nt = (int)units;
    int failed = 0;
    if (nt == 1) {
        char *buf = scratch_get(block_bytes(&g, 0, M, 0, N));
        if (buf) gemm_block(&g, 0, M, 0, N, buf);
        else failed = 1;
    } else {
#pragma omp parallel num_threads(nt)
        {
            int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
            int64_t per = units / n, extra = units % n;
            int64_t u0 = t * per + min64(t, extra), u1 = u0 + per + (t < extra);
            int64_t lo = u0 * unit, hi = min64(u1 * unit, split_n ? N : M);
            int64_t m0 = split_n ? 0 : lo, m1 = split_n ? M : hi;
            int64_t n0 = split_n ? lo : 0, n1 = split_n ? hi : N;
            char *buf = lo < hi ? scratch_get(block_bytes(&g, m0, m1, n0, n1)) : NULL;
            if (lo < hi && !buf) __atomic_store_n(&failed, 1, __ATOMIC_RELAXED);
            /* All threads have scratch before any touches C, or none computes. */
#pragma omp barrier
            if (lo < hi && !__atomic_load_n(&failed, __ATOMIC_RELAXED)) gemm_block(&g, m0, m1, n0, n1, buf);
        }
    }
    if (failed) impl->fallback(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* kernels/cpu/gemm_driver.c — the ISA-independent part of the CPU GEMM: cache blocking,
 * packing scratch, the thread team's work split (see kernels/cpu/gemm.h for the design). */
#include <stdlib.h>

#include "core/team.h"
#include "kernels/cpu/gemm.h"

/* Below this many multiply-adds a second thread costs more than it saves. */
#define GEMM_MIN_MACS_PER_THREAD (1 << 17)
/* Default most bytes of the shared packed operand; larger ones are processed in blocks. */
#define GEMM_SHARED_MAX ((size_t)4 << 20)
/* Chunks of the other dimension per thread, for balance when a core is slowed down. */
#define GEMM_CHUNKS_PER_THREAD 4
/* Panels of the shared operand packed per work item. */
#define GEMM_PACK_GROUP 4

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* One call, and how it is divided. "Shared" is the operand packed once by the whole team
 * (A when splitting N, B when splitting M); "own" is the one each thread packs per chunk.
 * The shared operand is packed a block at a time: blk rows (all of them, unless one KC
 * slice of them exceeds shared_max) by kb of K (a multiple of KC). */
typedef struct plan {
    const ld_gemm_impl *im;
    bool transA, transB;
    int64_t M, N, K;
    float alpha, beta;
    const void *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    bool split_n;     /* chunks along N (shared A) or along M (shared B) */
    int64_t blk, kb;  /* shared block: rows (split_n) or columns, and K elements */
    int64_t chunk;    /* columns (split_n) or rows of C per chunk */
    size_t own_bytes; /* one thread's packing of one chunk's KC slice */
    int nt;
} plan;

/* Team-wide state of one call: work counters taken with atomic fetch-add. */
typedef struct team {
    char *shared;
    int64_t next_item, packed, next_chunk;
} team;

/* Packed steps for a K slice of kc elements, and before the slice starting at pc. */
static int64_t steps_of(const ld_gemm_impl *im, int64_t kc) { return ceil_div(kc, im->kgran); }
static int64_t steps_before(const ld_gemm_impl *im, int64_t pc) { return pc / im->kgran; }

static size_t packed_bytes(const ld_gemm_impl *im, int64_t rows, int w, int64_t k) {
    return (size_t)round_up(rows, w) * (size_t)steps_of(im, k) * 4;
}

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* A region of a source matrix to pull into L2 while computing: n lines of `bytes` bytes,
 * `stride` apart; `per_call` cache lines are requested after each micro-kernel call. */
typedef struct prefetch {
    const char *base;
    int64_t n, bytes, stride, line, per_call;
} prefetch;

static void prefetch_some(prefetch *f) {
    for (int64_t i = 0; i < f->per_call && f->n > 0; i++) {
        __builtin_prefetch(f->base + f->line, 0, 2);
        f->line += 64;
        if (f->line >= f->bytes) f->line = 0, f->base += f->stride, f->n--;
    }
}

/* C[r0:r0+rows, c0:c0+cols] over the KC slice at pc: A panels at ap (rows), B panels at bp;
 * meanwhile prefetches the source of the next slice (f). */
static void compute(const plan *p, const char *ap, const char *bp, int64_t r0, int64_t rows, int64_t c0,
                    int64_t cols, int64_t pc, int64_t steps, prefetch *f) {
    const ld_gemm_impl *im = p->im;
    float beta = pc == 0 ? p->beta : 1.0f;
    int64_t lines = f->n * ceil_div(f->bytes, 64), calls = ceil_div(rows, im->mr) * ceil_div(cols, im->nr);
    f->per_call = ceil_div(lines, calls);
    for (int64_t ir = 0; ir < rows; ir += im->mr) {
        const char *a = ap + (size_t)(ir / im->mr) * (size_t)(steps * im->mr) * 4;
        int mr = (int)min64(im->mr, rows - ir);
        float *crow = p->C + (r0 + ir) * p->ldc + c0;
        for (int64_t jr = 0; jr < cols; jr += im->nr) {
            const char *b = bp + (size_t)(jr / im->nr) * (size_t)(steps * im->nr) * 4;
            im->micro(steps, a, b, crow + jr, p->ldc, mr, (int)min64(im->nr, cols - jr), p->alpha, beta);
            prefetch_some(f);
        }
    }
}

/* One shared block: rows [b0, b0+bn) of the shared operand, K range [k0, k0+kn). The team
 * packs it (items: KC slice x panel group), then threads with scratch take chunks of the
 * other dimension. With several blocks, barriers separate them; with one, the only wait
 * is for the last packing item, so a thread the OS has descheduled holds up nobody unless
 * it holds an item. */
static void run_block(const plan *p, team *t, char *own, int64_t b0, int64_t bn, int64_t k0, int64_t kn) {
    const ld_gemm_impl *im = p->im;
    const int sw = p->split_n ? im->mr : im->nr, ow = p->split_n ? im->nr : im->mr;
    const void *SX = p->split_n ? p->A : p->B, *OX = p->split_n ? p->B : p->A;
    const int64_t sld = p->split_n ? p->lda : p->ldb, old = p->split_n ? p->ldb : p->lda;
    const bool skc = p->split_n ? !p->transA : p->transB, okc = p->split_n ? p->transB : !p->transA;
    ld_gemm_pack_fn spack = p->split_n ? im->pack_a : im->pack_b, opack = p->split_n ? im->pack_b : im->pack_a;
    const int64_t inner = p->split_n ? p->N : p->M, bpad = round_up(bn, sw);
    const int64_t groups = ceil_div(bn, (int64_t)sw * GEMM_PACK_GROUP), items = ceil_div(kn, im->kc) * groups;
    for (int64_t it; (it = __atomic_fetch_add(&t->next_item, 1, __ATOMIC_RELAXED)) < items;) {
        int64_t pc = k0 + (it / groups) * im->kc, kc = min64(im->kc, k0 + kn - pc);
        int64_t r = (it % groups) * sw * GEMM_PACK_GROUP;
        char *dst = t->shared + (size_t)(bpad * steps_before(im, pc - k0) + r * steps_of(im, kc)) * 4;
        spack(dst, SX, sld, skc, b0 + r, min64((int64_t)sw * GEMM_PACK_GROUP, bn - r), pc, kc, sw);
        __atomic_fetch_add(&t->packed, 1, __ATOMIC_RELEASE);
    }
    while (__atomic_load_n(&t->packed, __ATOMIC_ACQUIRE) < items) cpu_relax();
    if (!own) return;
    /* A thread claims its next chunk when it starts the last slice of the current one, so
     * that slice's prefetch can bring in the next chunk's first slice. */
    const int64_t nchunks = ceil_div(inner, p->chunk);
    for (int64_t c = __atomic_fetch_add(&t->next_chunk, 1, __ATOMIC_RELAXED), next; c < nchunks; c = next) {
        const int64_t c0 = c * p->chunk, cn = min64(p->chunk, inner - c0);
        next = nchunks;
        for (int64_t pc = k0; pc < k0 + kn; pc += im->kc) {
            const int64_t kc = min64(im->kc, k0 + kn - pc), steps = steps_of(im, kc);
            opack(own, OX, old, okc, c0, cn, pc, kc, ow);
            const char *sh = t->shared + (size_t)(bpad * steps_before(im, pc - k0)) * 4;
            /* the own operand's source for the next slice (rows c0.. along k, or k rows) */
            int64_t f0 = c0, fn = cn, fk = pc + im->kc;
            if (fk >= k0 + kn) {
                next = __atomic_fetch_add(&t->next_chunk, 1, __ATOMIC_RELAXED);
                f0 = next * p->chunk, fn = next < nchunks ? min64(p->chunk, inner - f0) : 0, fk = k0;
            }
            const int64_t fkn = min64(im->kc, k0 + kn - fk);
            const char *x = OX;
            prefetch f = okc ? (prefetch){x + (f0 * old + fk) * im->esize, fn, fkn * im->esize, old * im->esize, 0, 0}
                             : (prefetch){x + (fk * old + f0) * im->esize, fn ? fkn : 0, fn * im->esize,
                                          old * im->esize, 0, 0};
            if (p->split_n) compute(p, sh, own, b0, bn, c0, cn, pc, steps, &f);
            else compute(p, own, sh, c0, cn, b0, bn, pc, steps, &f);
        }
    }
}

/* One shared block as a parallel loop of nt pieces, each a thread's share of run_block:
 * a piece packs and computes whatever is left when it starts (often nothing: a thread that
 * comes late finds the work done). A thread whose scratch cannot be grown only helps pack. */
typedef struct block_job {
    const plan *p;
    team *t;
    int64_t b0, bn, k0, kn;
} block_job;

static void block_piece(void *arg, int64_t lo, int64_t hi, int piece) {
    const block_job *j = arg;
    char *own = ld_thread_scratch(LD_SCRATCH_GEMM_OWN, j->p->own_bytes);
    run_block(j->p, j->t, own, j->b0, j->bn, j->k0, j->kn);
    (void)lo, (void)hi, (void)piece;
}

/* The blocks one after another (each loop ends when its block is done, so the next may
 * reuse the shared buffer). After each, the calling thread, whose scratch was checked
 * beforehand, runs a piece of its own: it computes any chunk that only threads without
 * scratch could have taken (normally none is left). */
static void run_blocks(const plan *p, team *t) {
    const int64_t outer = p->split_n ? p->M : p->N;
    for (int64_t b0 = 0; b0 < outer; b0 += p->blk)
        for (int64_t k0 = 0; k0 < p->K; k0 += p->kb) {
            t->next_item = t->packed = t->next_chunk = 0;
            block_job j = {p, t, b0, min64(p->blk, outer - b0), k0, min64(p->kb, p->K - k0)};
            ld_par_for(p->nt, 1, block_piece, &j);
            block_piece(&j, 0, 1, 0);
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
    if (getenv("LD_GEMM_SHARED")) tune.shared_max = (size_t)atol(getenv("LD_GEMM_SHARED"));
    impl = &tune;
#endif
    plan p = {impl, transA, transB, M, N, K, alpha, beta, A, B, lda, ldb, ldc, C, false, 0, 0, 0, 0, 1};
    int nt = ld_par_threads(); /* 1 inside a parallel loop */
    double macs = (double)M * (double)N * (double)K;
    if (macs < (double)GEMM_MIN_MACS_PER_THREAD * nt) nt = (int)(macs / GEMM_MIN_MACS_PER_THREAD);
    p.nt = nt < 1 ? 1 : nt;
    /* Share the smaller operand; chunk the other dimension into >= 4 pieces per thread (at
     * most mc rows / nc columns each), so a thread that a busy core slows down takes fewer.
     * The shared block depends on the sizes only, never on the thread count. */
    p.split_n = M <= N;
    const int sw = p.split_n ? impl->mr : impl->nr, ow = p.split_n ? impl->nr : impl->mr;
    const int64_t outer = p.split_n ? M : N, inner = p.split_n ? N : M;
    const int64_t cmax = p.split_n ? impl->nc : impl->mc, kc1 = min64(impl->kc, K);
    p.chunk = min64(cmax, max64(ow, round_up(ceil_div(inner, (int64_t)GEMM_CHUNKS_PER_THREAD * p.nt), ow)));
    const size_t shared_max = impl->shared_max ? impl->shared_max : GEMM_SHARED_MAX;
    const size_t slice_row = packed_bytes(impl, 1, 1, kc1); /* one row of one KC slice */
    p.blk = min64(outer, max64(sw, (int64_t)(shared_max / slice_row) / sw * sw));
    p.kb = min64(K, max64(1, (int64_t)(shared_max / ((size_t)round_up(p.blk, sw) * slice_row))) * impl->kc);
    p.own_bytes = packed_bytes(impl, p.chunk, ow, kc1);
    if (ceil_div(inner, p.chunk) < p.nt) p.nt = (int)ceil_div(inner, p.chunk);
    team t = {0};
    t.shared = ld_thread_scratch(LD_SCRATCH_GEMM_SHARED, packed_bytes(impl, p.blk, sw, p.kb));
    if (!t.shared || !ld_thread_scratch(LD_SCRATCH_GEMM_OWN, p.own_bytes)) {
        impl->fallback(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    run_blocks(&p, &t);
}

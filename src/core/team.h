/* core/team.h — the thread team of a context, and the one way to write a parallel loop.
 *
 * Writing a parallel loop (copy this):
 *
 *     typedef struct { float *y; const float *x; int64_t C; } scale_args;
 *
 *     // rows [lo, hi) of the work; `piece` numbers the range (see below)
 *     static void scale_part(void *arg, int64_t lo, int64_t hi, int piece) {
 *         const scale_args *a = arg;
 *         for (int64_t r = lo; r < hi; r++)
 *             for (int64_t c = 0; c < a->C; c++) a->y[r * a->C + c] *= a->x[r];
 *     }
 *
 *     scale_args a = {y, x, C};
 *     ld_par_for(N, ld_par_grain(C), scale_part, &a);   // N rows of C elements each
 *
 * ld_par_for cuts [0, n) into contiguous pieces of `grain` items (the last one shorter) and
 * the team's threads take pieces one at a time until none are left; the calling thread
 * works too. It returns when every piece is done. Rules:
 *   - grain: the fewest items worth a piece of their own. ld_par_grain(cost) gives enough
 *     items of `cost` elements each to make LD_PAR_MIN elements; use a multiple of 16 for
 *     element ranges, so that every piece starts on a cache line of floats. Work of one
 *     piece (n <= grain) runs on the calling thread without touching the team.
 *   - Pieces depend only on n and grain, never on the thread count, and every piece is
 *     one fixed sequence of operations: a kernel whose pieces write disjoint outputs gives
 *     the same bits on any number of threads. A reduction keeps one partial per piece
 *     (ld_par_pieces(n, grain) of them, at most LD_PAR_MAX_PIECES) and adds them in piece
 *     order afterwards, so it too is the same for any thread count.
 *   - Pieces must not wait for each other (no barriers): a piece may run before, after or
 *     beside any other, possibly on the same thread. Something that needs two phases
 *     (pack, then compute) is two ld_par_for calls.
 *   - Per-thread scratch: ld_par_thread() is the running thread's index in [0,
 *     ld_par_threads()) (0 = the caller); size buffers with ld_par_threads() before the
 *     loop, or use ld_thread_scratch().
 *   - A parallel loop inside a piece runs serially on the thread running that piece.
 *
 * Which team: the calling thread's current one, set for the duration of a library call by
 * LD_TEAM_SCOPE(ctx) at its top (the public functions that compute much have one: forward,
 * backward, optimizer steps, decode; nested scopes are cheap). Outside any scope, loops use
 * a process-wide default team of ld_cpu_count() threads, made once and never resized.
 *
 * The team (src/core/team.c): ctx->n_threads - 1 worker threads started at the context's
 * first parallel loop and joined by ld_ctx_free or a thread-count change. Idle workers
 * spin for LD_TEAM_SPIN_US, then sleep on a futex until the next loop; a caller waiting
 * for a piece that another thread still runs does the same. So a loop costs a few hundred
 * nanoseconds while the team is busy, and a quiet team costs nothing; since threads take
 * pieces as they come, a thread slowed by another process on its core takes fewer of
 * them and a descheduled thread delays only the piece it holds. Nothing here touches
 * process-wide state: contexts in different threads have their own teams. */
#ifndef LD_CORE_TEAM_H
#define LD_CORE_TEAM_H

#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"

/* Elements of streaming work (about 10 microseconds on one core) below which a separate
 * piece costs more than it saves. */
#define LD_PAR_MIN ((int64_t)1 << 15)
/* Most pieces of one loop (a larger n gets proportionally larger pieces). */
#define LD_PAR_MAX_PIECES 1024
/* How long an idle thread spins before sleeping. */
#define LD_TEAM_SPIN_US 100

typedef void (*ld_par_fn)(void *arg, int64_t lo, int64_t hi, int piece);

/* Runs fn over [0, n) in pieces of `grain` items (>= 1) on the current team; see above. */
void ld_par_for(int64_t n, int64_t grain, ld_par_fn fn, void *arg);
/* The number of pieces ld_par_for(n, grain, ...) runs (0 when n <= 0), and the grain it
 * really uses (grain, or a multiple of it when n / grain exceeds LD_PAR_MAX_PIECES). */
int ld_par_pieces(int64_t n, int64_t grain);
int64_t ld_par_piece_grain(int64_t n, int64_t grain);

/* Items of `cost` elements each that make one worthwhile piece (>= 1). */
static inline int64_t ld_par_grain(int64_t cost) {
    return cost >= LD_PAR_MIN ? 1 : cost <= 0 ? LD_PAR_MIN : (LD_PAR_MIN + cost - 1) / cost;
}

/* Grain of a loop over columns whose pieces each walk `rows` rows: a worthwhile piece, in
 * whole cache lines of floats (a multiple of 16 columns). */
static inline int64_t ld_par_cols_grain(int64_t rows) {
    return (ld_par_grain(rows) + 15) & ~(int64_t)15;
}

/* Threads of the current team (1 with none), and the calling thread's index in it. */
int ld_par_threads(void);
int ld_par_thread(void);

/* A 64-byte-aligned buffer of at least `bytes` for the calling thread, one per `slot`
 * (0 .. LD_SCRATCH_SLOTS - 1, named below), grown when asked for more (contents are then
 * lost), kept until the thread ends. NULL when it cannot be grown. */
enum { LD_SCRATCH_GEMM_OWN, LD_SCRATCH_GEMM_SHARED, LD_SCRATCH_QGEMM, LD_SCRATCH_ROWS, LD_SCRATCH_SLOTS };
void *ld_thread_scratch(int slot, size_t bytes);

/* ---- scopes: which team the calling thread's loops use ------------------------------ */
typedef struct ld_team ld_team;
typedef struct ld_team_scope {
    ld_team *prev, *owned;
} ld_team_scope;
ld_team_scope ld_team_scope_begin(ld_ctx *ctx, int n_threads);
void ld_team_scope_end(ld_team_scope *s);
/* Makes ctx's team current until the enclosing block ends (any return path). */
#define LD_TEAM_SCOPE(ctx)                                                                    \
    __attribute__((cleanup(ld_team_scope_end), unused)) ld_team_scope ld_team_scope_ = ld_team_scope_begin(ctx, 0)
/* The same for a call that takes its own thread count (n_threads > 0 and not the ctx's: a
 * team of that size for the duration of the block, started at its first loop). */
#define LD_TEAM_SCOPE_THREADS(ctx, n_threads)                                                 \
    __attribute__((cleanup(ld_team_scope_end), unused)) ld_team_scope ld_team_scope_ =                \
        ld_team_scope_begin(ctx, n_threads)

/* ---- the team itself (core/ctx.c owns one per context) ------------------------------ */
/* Statistics for tests and benchmarks: loops run on the team (not the serial ones), and
 * pieces taken by the workers (not the caller), since the team was created. */
typedef struct ld_team_stats {
    int64_t loops, worker_pieces;
    int threads, sleeping;
} ld_team_stats;

ld_team *ld_team_new(int n_threads); /* NULL when out of memory; no thread started yet */
void ld_team_free(ld_team *t);       /* joins the workers */
/* Changes the size (the workers are joined; new ones start at the next loop). Not while a
 * loop runs on the team. */
void ld_team_set_threads(ld_team *t, int n_threads);
ld_team_stats ld_team_get_stats(const ld_team *t);
ld_team *ld_ctx_team(ld_ctx *ctx);

#endif

/* tests/unit/test_team.c — the per-context thread team (core/team.h): every piece runs
 * exactly once, pieces do not depend on the thread count, contexts keep their own sizes
 * and run side by side from different threads, nested loops run serially, idle workers
 * sleep instead of spinning, per-thread scratch. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/team.h"
#include "ld_test.h"

static ld_ctx *ctx_with(int threads) {
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = threads;
    ld_ctx *ctx = NULL;
    ld_ctx_new(&p, &ctx);
    return ctx;
}

/* Each piece records itself and checks its range. */
typedef struct count_args {
    int64_t n, grain;
    int *runs;      /* per item */
    int *piece_of;  /* per item: the piece that covered it */
    int bad;
} count_args;

static void count_part(void *arg, int64_t lo, int64_t hi, int piece) {
    count_args *a = arg;
    if (lo != (int64_t)piece * a->grain || hi <= lo || hi > a->n || (hi - lo > a->grain)) __atomic_store_n(&a->bad, 1, __ATOMIC_RELAXED);
    for (int64_t i = lo; i < hi; i++) {
        __atomic_fetch_add(&a->runs[i], 1, __ATOMIC_RELAXED);
        a->piece_of[i] = piece;
    }
}

TEST(every_item_runs_once_in_its_piece) {
    static const int64_t sizes[][2] = {{1, 1}, {5, 1}, {7, 3}, {100, 7}, {4096, 16}, {100000, 1}, {3, 100}};
    for (int threads = 1; threads <= 4; threads++) {
        ld_ctx *ctx = ctx_with(threads);
        LD_TEAM_SCOPE(ctx);
        CHECK(ld_par_threads() == threads);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
            for (int rep = 0; rep < 20; rep++) {
                count_args a = {sizes[s][0], ld_par_piece_grain(sizes[s][0], sizes[s][1]), NULL, NULL, 0};
                a.runs = calloc((size_t)a.n, sizeof *a.runs);
                a.piece_of = calloc((size_t)a.n, sizeof *a.piece_of);
                ld_par_for(a.n, sizes[s][1], count_part, &a);
                int ok = !a.bad;
                for (int64_t i = 0; i < a.n; i++) ok &= a.runs[i] == 1 && a.piece_of[i] == (int)(i / a.grain);
                CHECK_MSG(ok, "threads %d n %lld grain %lld", threads, (long long)a.n, (long long)sizes[s][1]);
                free(a.runs);
                free(a.piece_of);
            }
        }
        ld_ctx_free(ctx);
    }
}

TEST(pieces_depend_only_on_n_and_grain) {
    CHECK(ld_par_pieces(0, 4) == 0);
    CHECK(ld_par_pieces(1, 4) == 1);
    CHECK(ld_par_pieces(8, 4) == 2);
    CHECK(ld_par_pieces(9, 4) == 3);
    CHECK(ld_par_pieces(9, 0) == 9); /* a grain below 1 is 1 */
    /* many items: at most LD_PAR_MAX_PIECES pieces, the grain a multiple of the asked one */
    int64_t n = (int64_t)LD_PAR_MAX_PIECES * 100 + 5;
    CHECK(ld_par_pieces(n, 16) <= LD_PAR_MAX_PIECES);
    CHECK(ld_par_piece_grain(n, 16) % 16 == 0);
    CHECK(ld_par_grain(LD_PAR_MIN) == 1);
    CHECK(ld_par_grain(1) == LD_PAR_MIN);
    CHECK(ld_par_grain(1000) * 1000 >= LD_PAR_MIN);
}

/* A sum kept per piece and added in piece order: the same bits on any team. */
typedef struct sum_args {
    const float *x;
    double *part;
} sum_args;

static void sum_part(void *arg, int64_t lo, int64_t hi, int piece) {
    sum_args *a = arg;
    float s = 0; /* float on purpose: the order of additions matters */
    for (int64_t i = lo; i < hi; i++) s += a->x[i];
    a->part[piece] = s;
}

static double sum_on(int threads, const float *x, int64_t n) {
    ld_ctx *ctx = ctx_with(threads);
    LD_TEAM_SCOPE(ctx);
    double part[LD_PAR_MAX_PIECES];
    sum_args a = {x, part};
    ld_par_for(n, 1000, sum_part, &a);
    double s = 0;
    for (int p = 0; p < ld_par_pieces(n, 1000); p++) s += part[p];
    ld_ctx_free(ctx);
    return s;
}

TEST(reductions_by_piece_match_on_any_thread_count) {
    int64_t n = 123457;
    float *x = malloc((size_t)n * sizeof *x);
    uint32_t r = 12345;
    for (int64_t i = 0; i < n; i++) r = r * 1664525u + 1013904223u, x[i] = (float)(r >> 8) / (float)(1 << 24) - 0.3f;
    double s1 = sum_on(1, x, n);
    for (int t = 2; t <= 4; t++) CHECK(sum_on(t, x, n) == s1);
    free(x);
}

/* The old ld_ctx_set_threads set OpenMP's process-wide count: the last context created
 * decided for all. */
TEST(contexts_keep_their_own_thread_counts) {
    ld_ctx *a = ctx_with(3), *b = ctx_with(1);
    int outside = ld_par_threads(); /* the test main's team */
    {
        LD_TEAM_SCOPE(a);
        CHECK(ld_par_threads() == 3);
        {
            LD_TEAM_SCOPE(b);
            CHECK(ld_par_threads() == 1);
        }
        CHECK(ld_par_threads() == 3);
    }
    CHECK(ld_par_threads() == outside); /* scopes end where they began */
    {
        ld_team_scope none = ld_team_scope_begin(NULL, 0); /* no ctx: the current team stays */
        CHECK(ld_par_threads() == outside);
        ld_team_scope_end(&none);
    }
    ld_ctx_set_threads(b, 2);
    CHECK(ld_ctx_threads(a) == 3);
    {
        LD_TEAM_SCOPE(b);
        CHECK(ld_par_threads() == 2);
    }
    ld_ctx_free(a);
    ld_ctx_free(b);
}

/* A loop inside a piece runs on the thread that runs the piece, as thread 0. */
typedef struct nest_args {
    int outer_pieces;
    int inner_bad;
    int inner_runs;
} nest_args;

static void inner_part(void *arg, int64_t lo, int64_t hi, int piece) {
    nest_args *a = arg;
    if (ld_par_thread() != 0 || ld_par_threads() != 1) __atomic_store_n(&a->inner_bad, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&a->inner_runs, (int)(hi - lo), __ATOMIC_RELAXED);
    (void)piece;
}
static void outer_part(void *arg, int64_t lo, int64_t hi, int piece) {
    nest_args *a = arg;
    int tid = ld_par_thread();
    ld_par_for(10, 1, inner_part, a);
    if (ld_par_thread() != tid) __atomic_store_n(&a->inner_bad, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&a->outer_pieces, 1, __ATOMIC_RELAXED);
    (void)lo, (void)hi, (void)piece;
}

TEST(nested_loops_run_serially) {
    ld_ctx *ctx = ctx_with(3);
    LD_TEAM_SCOPE(ctx);
    nest_args a = {0, 0, 0};
    ld_par_for(12, 1, outer_part, &a);
    CHECK(a.outer_pieces == 12);
    CHECK(a.inner_runs == 120);
    CHECK(!a.inner_bad);
    ld_ctx_free(ctx);
}

/* Threads of a team have distinct indices below the team size. */
typedef struct tid_args {
    int nt;
    int seen[8];
    int bad;
} tid_args;
static void tid_part(void *arg, int64_t lo, int64_t hi, int piece) {
    tid_args *a = arg;
    int t = ld_par_thread();
    if (t < 0 || t >= a->nt) __atomic_store_n(&a->bad, 1, __ATOMIC_RELAXED);
    else __atomic_store_n(&a->seen[t], 1, __ATOMIC_RELAXED);
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL); /* long enough that the workers join in */
    (void)lo, (void)hi, (void)piece;
}

TEST(workers_take_pieces_with_their_own_indices) {
    ld_ctx *ctx = ctx_with(3);
    LD_TEAM_SCOPE(ctx);
    tid_args a = {3, {0}, 0};
    for (int rep = 0; rep < 20 && !(a.seen[1] && a.seen[2]); rep++) ld_par_for(30, 1, tid_part, &a);
    CHECK(!a.bad);
    CHECK(a.seen[0]);
    CHECK(a.seen[1] || a.seen[2]); /* on a loaded machine a worker may come late, not never */
    ld_team_stats st = ld_team_get_stats(ld_ctx_team(ctx));
    CHECK(st.threads == 3);
    CHECK(st.loops >= 1);
    CHECK(st.worker_pieces > 0);
    ld_ctx_free(ctx);
}

/* Two contexts driven from two threads at once: each loop sees its own team, results are
 * right, and neither team ran the other's loops. */
typedef struct side_args {
    int threads;
    int64_t loops, ok;
    int64_t team_loops;
} side_args;

typedef struct fill_args {
    int *v;
    int value;
} fill_args;
static void fill_part(void *arg, int64_t lo, int64_t hi, int piece) {
    fill_args *a = arg;
    for (int64_t i = lo; i < hi; i++) a->v[i] = a->value + (int)i;
    (void)piece;
}

static void *side_main(void *arg) {
    side_args *s = arg;
    ld_ctx *ctx = ctx_with(s->threads);
    LD_TEAM_SCOPE(ctx);
    int *v = malloc(5000 * sizeof *v);
    for (int64_t l = 0; l < s->loops; l++) {
        fill_args a = {v, (int)l * 7};
        ld_par_for(5000, 100, fill_part, &a);
        int good = ld_par_threads() == s->threads;
        for (int i = 0; i < 5000; i++) good &= v[i] == a.value + i;
        s->ok += good;
    }
    s->team_loops = ld_team_get_stats(ld_ctx_team(ctx)).loops;
    free(v);
    ld_ctx_free(ctx);
    return NULL;
}

TEST(contexts_in_different_threads_run_side_by_side) {
    side_args a = {2, 300, 0, 0}, b = {3, 300, 0, 0};
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, side_main, &a) == 0);
    CHECK(pthread_create(&tb, NULL, side_main, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.ok == a.loops && b.ok == b.loops);
    CHECK(a.team_loops == a.loops && b.team_loops == b.loops);
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

/* After a loop, idle workers spin for LD_TEAM_SPIN_US and then sleep: a quiet team uses no
 * CPU (an OpenMP team with the default wait policy spins for much longer). */
TEST(idle_workers_sleep) {
    ld_ctx *ctx = ctx_with(4);
    LD_TEAM_SCOPE(ctx);
    tid_args a = {4, {0}, 0};
    ld_par_for(8, 1, tid_part, &a);
    ld_team *t = ld_ctx_team(ctx);
    /* wait (up to 2 s on a loaded machine) until all three workers sleep */
    for (int i = 0; i < 2000 && ld_team_get_stats(t).sleeping < 3; i++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    CHECK(ld_team_get_stats(t).sleeping == 3);
    double c0 = cpu_seconds();
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    double used = cpu_seconds() - c0;
    CHECK_MSG(used < 0.02, "%.3f s of CPU in 0.2 s idle", used);
    /* a loop still wakes them */
    memset(a.seen, 0, sizeof a.seen);
    for (int rep = 0; rep < 50 && !(a.seen[1] || a.seen[2] || a.seen[3]); rep++) ld_par_for(16, 1, tid_part, &a);
    CHECK(a.seen[1] || a.seen[2] || a.seen[3]);
    ld_ctx_free(ctx);
}

/* Many short loops back to back (the decode pattern): all correct, and freeing the context
 * right after ends its workers. */
TEST(many_short_loops) {
    ld_ctx *ctx = ctx_with(2);
    LD_TEAM_SCOPE(ctx);
    int v[64];
    int64_t ok = 0;
    for (int l = 0; l < 20000; l++) {
        fill_args a = {v, l};
        ld_par_for(64, 8, fill_part, &a);
        ok += v[0] == l && v[63] == l + 63;
    }
    CHECK(ok == 20000);
    ld_ctx_free(ctx);
}

TEST(thread_scratch_grows_and_keeps_alignment) {
    char *p = ld_thread_scratch(LD_SCRATCH_QGEMM, 100);
    CHECK(p && ((uintptr_t)p & 63) == 0);
    p[99] = 7;
    CHECK(ld_thread_scratch(LD_SCRATCH_QGEMM, 50) == p); /* smaller: the same buffer */
    char *q = ld_thread_scratch(LD_SCRATCH_QGEMM, 1 << 20);
    CHECK(q && ((uintptr_t)q & 63) == 0);
    q[(1 << 20) - 1] = 1;
    CHECK(ld_thread_scratch(LD_SCRATCH_SLOTS, 10) == NULL);
    CHECK(ld_thread_scratch(-1, 10) == NULL);
}

LD_TEST_MAIN()

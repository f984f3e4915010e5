/* core/team.c — a context's thread team: persistent workers that take the pieces of
 * parallel loops, spinning briefly and then sleeping when there is nothing to do (the
 * rules and the reasons are in core/team.h).
 *
 * One loop at a time runs on a team. Its description (fn, arg, n, grain, pieces) sits in
 * the team, and threads take pieces by advancing `claim`, a 64-bit word holding the
 * loop's generation (high bits) and the next piece (low bits). The caller closes the word
 * before rewriting the description, so a thread that read an old description fails its
 * compare-and-swap instead of running a piece of the wrong loop; a thread therefore never
 * has to be waited for unless it holds a piece. Every atomic here is sequentially
 * consistent: the operations are few per loop, and the sleep/wake handshakes below need
 * that order. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "core/team.h"

#define PIECE_BITS 24
#define PIECE_MASK ((UINT64_C(1) << PIECE_BITS) - 1)
#define CLOSED PIECE_MASK /* no piece may be taken: the description is being rewritten */

struct ld_team {
    int n;                /* threads wanted, the caller included */
    int started;          /* workers running (n - 1 unless thread creation failed) */
    bool failed;          /* a start failed: run serially rather than retry every loop */
    pthread_t *workers;
    _Alignas(64) _Atomic uint64_t claim;
    _Alignas(64) _Atomic uint32_t done; /* pieces finished in the current loop (futex word) */
    _Atomic int caller_sleeping;
    _Alignas(64) _Atomic uint32_t wake; /* bumped for every loop and at shutdown (futex word) */
    _Atomic int sleepers;
    _Atomic int stop;
    /* the current loop */
    _Atomic(ld_par_fn) fn;
    _Atomic(void *) arg;
    _Atomic int64_t n_items, grain;
    _Atomic uint32_t pieces;
    _Atomic int busy; /* a loop is running: a second one (nested, or misuse from another thread) runs serially */
    uint64_t gen;
    _Atomic int64_t loops, worker_pieces;
};

/* ---- waiting: spin with pause, then sleep on a futex ---------------------------------- */

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Sleeps while *w == v (or not at all if it already differs); may return spuriously. */
static void futex_wait(_Atomic uint32_t *w, uint32_t v) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, v, NULL, NULL, 0);
#else
    if (atomic_load(w) == v) {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
#endif
}
static void futex_wake(_Atomic uint32_t *w, int n) {
#ifdef __linux__
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
#else
    (void)w, (void)n;
#endif
}

/* Spins until *w != v for at most LD_TEAM_SPIN_US; true if it changed. */
static bool spin_until_changed(_Atomic uint32_t *w, uint32_t v) {
    int64_t t0 = 0;
    for (int i = 1;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != v) return true;
        cpu_relax();
        if ((i & 63) == 0) {
            int64_t t = now_ns();
            if (!t0) t0 = t;
            else if (t - t0 > (int64_t)LD_TEAM_SPIN_US * 1000) return false;
        }
    }
}

/* ---- pieces ------------------------------------------------------------------------ */

int64_t ld_par_piece_grain(int64_t n, int64_t grain) {
    if (grain < 1) grain = 1;
    if (n <= 0) return grain;
    int64_t pieces = (n - 1) / grain + 1;
    if (pieces > LD_PAR_MAX_PIECES) {
        int64_t per = (n - 1) / LD_PAR_MAX_PIECES + 1;
        grain = (per + grain - 1) / grain * grain;
    }
    return grain;
}

int ld_par_pieces(int64_t n, int64_t grain) {
    if (n <= 0) return 0;
    return (int)((n - 1) / ld_par_piece_grain(n, grain) + 1);
}

static _Thread_local ld_team *tls_team; /* the current team of this thread (a scope's) */
static _Thread_local int tls_tid;       /* this thread's index in the loop it runs a piece of */
static _Thread_local bool tls_in_piece; /* running a piece (workers always): loops inside run serially */

static void run_piece(ld_par_fn fn, void *arg, int64_t n, int64_t grain, uint32_t p) {
    int64_t lo = (int64_t)p * grain, hi = lo + grain < n ? lo + grain : n;
    fn(arg, lo, hi, (int)p);
}

/* Takes and runs pieces of the current loop until none is left; returns how many. */
static int64_t take_pieces(ld_team *t) {
    int64_t ran = 0;
    for (;;) {
        uint64_t c = atomic_load(&t->claim);
        uint32_t p = (uint32_t)(c & PIECE_MASK);
        if (p == CLOSED) return ran;
        ld_par_fn fn = atomic_load(&t->fn);
        void *arg = atomic_load(&t->arg);
        int64_t n = atomic_load(&t->n_items), grain = atomic_load(&t->grain);
        uint32_t pieces = atomic_load(&t->pieces);
        if (p >= pieces) {
            /* the loop is fully taken — unless what we read was a newer loop's description */
            if (atomic_load(&t->claim) == c) return ran;
            continue;
        }
        if (!atomic_compare_exchange_weak(&t->claim, &c, c + 1)) continue;
        run_piece(fn, arg, n, grain, p);
        ran++;
        if (atomic_fetch_add(&t->done, 1) + 1 == pieces && atomic_load(&t->caller_sleeping))
            futex_wake(&t->done, 1);
    }
}

static void *worker_main(void *arg) {
    ld_team *t = arg;
    uint32_t seen = 0;
    for (;;) {
        if (!spin_until_changed(&t->wake, seen)) {
            atomic_fetch_add(&t->sleepers, 1);
            while (atomic_load(&t->wake) == seen) futex_wait(&t->wake, seen);
            atomic_fetch_sub(&t->sleepers, 1);
        }
        seen = atomic_load(&t->wake);
        if (atomic_load(&t->stop)) return NULL;
        int64_t ran = take_pieces(t);
        if (ran) atomic_fetch_add_explicit(&t->worker_pieces, ran, memory_order_relaxed);
    }
}

typedef struct worker_start {
    ld_team *t;
    int tid;
} worker_start;

static void *worker_entry(void *arg) {
    worker_start s = *(worker_start *)arg;
    free(arg);
    tls_tid = s.tid;
    tls_in_piece = true;
    return worker_main(s.t);
}

/* Starts the workers (signals blocked in them, so handlers run on the caller's threads). */
static bool team_start(ld_team *t) {
    if (t->started == t->n - 1 || t->failed) return t->started > 0;
    t->workers = calloc((size_t)t->n, sizeof *t->workers);
    if (!t->workers) {
        t->failed = true;
        return false;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 1; i < t->n; i++) {
        worker_start *s = malloc(sizeof *s);
        if (!s) break;
        *s = (worker_start){t, i};
        if (pthread_create(&t->workers[i - 1], NULL, worker_entry, s) != 0) {
            free(s);
            break;
        }
        t->started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (t->started < t->n - 1) {
        /* pieces are taken dynamically, so fewer threads are still correct */
        t->failed = true;
    }
    return t->started > 0;
}

ld_team *ld_team_new(int n_threads) {
    ld_team *t = aligned_alloc(64, (sizeof(ld_team) + 63) / 64 * 64);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->n = n_threads < 1 ? 1 : n_threads;
    atomic_store(&t->claim, CLOSED);
    return t;
}

static void team_stop(ld_team *t) {
    if (t->started) {
        atomic_store(&t->stop, 1);
        atomic_fetch_add(&t->wake, 1);
        futex_wake(&t->wake, t->started);
        for (int i = 0; i < t->started; i++) pthread_join(t->workers[i], NULL);
        atomic_store(&t->stop, 0);
    }
    free(t->workers);
    t->workers = NULL;
    t->started = 0;
    t->failed = false;
}

void ld_team_set_threads(ld_team *t, int n_threads) {
    if (!t || n_threads == t->n) return;
    team_stop(t);
    t->n = n_threads < 1 ? 1 : n_threads;
}

void ld_team_free(ld_team *t) {
    if (!t) return;
    team_stop(t);
    free(t);
}

ld_team_stats ld_team_get_stats(const ld_team *t) {
    ld_team_stats s = {0, 0, 1, 0};
    if (!t) return s;
    ld_team *m = (ld_team *)t;
    s.loops = atomic_load(&m->loops);
    s.worker_pieces = atomic_load(&m->worker_pieces);
    s.threads = t->started + 1;
    s.sleeping = atomic_load(&m->sleepers);
    return s;
}

/* The pieces in order on this thread, which is thread 0 of this (serial) loop. */
static void run_serial(int64_t n, int64_t grain, uint32_t pieces, ld_par_fn fn, void *arg) {
    int saved_tid = tls_tid;
    bool saved_in = tls_in_piece;
    tls_tid = 0, tls_in_piece = true;
    for (uint32_t p = 0; p < pieces; p++) run_piece(fn, arg, n, grain, p);
    tls_tid = saved_tid, tls_in_piece = saved_in;
}

/* The team of calls made outside any scope: one per process, of ld_cpu_count() threads,
 * made at the first such loop and never resized (a scope's team takes over inside it). Its
 * workers sleep when idle like any team's; a second thread looping on it meanwhile runs
 * its loop serially (the busy flag). */
static ld_team *default_team;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static void default_team_make(void) {
    default_team = ld_team_new(ld_cpu_count());
}
static ld_team *current_team(void) {
    if (tls_in_piece) return NULL; /* loops inside a piece run serially */
    if (tls_team) return tls_team;
    pthread_once(&default_once, default_team_make);
    return default_team;
}

void ld_par_for(int64_t n, int64_t grain, ld_par_fn fn, void *arg) {
    if (n <= 0) return;
    grain = ld_par_piece_grain(n, grain);
    uint32_t pieces = (uint32_t)((n - 1) / grain + 1);
    ld_team *t = current_team();
    if (pieces == 1 || !t || t->n < 2 || atomic_exchange(&t->busy, 1)) {
        run_serial(n, grain, pieces, fn, arg);
        return;
    }
    if (!team_start(t)) {
        atomic_store(&t->busy, 0);
        run_serial(n, grain, pieces, fn, arg);
        return;
    }
    /* publish: close the claim word, write the description, open it at piece 0 */
    uint64_t gen = ++t->gen;
    atomic_store(&t->claim, (gen << PIECE_BITS) | CLOSED);
    atomic_store(&t->fn, fn);
    atomic_store(&t->arg, arg);
    atomic_store(&t->n_items, n);
    atomic_store(&t->grain, grain);
    atomic_store(&t->pieces, pieces);
    atomic_store(&t->done, 0);
    atomic_store(&t->claim, gen << PIECE_BITS);
    atomic_fetch_add(&t->wake, 1);
    int sleeping = atomic_load(&t->sleepers);
    if (sleeping) futex_wake(&t->wake, sleeping < (int)pieces - 1 ? sleeping : (int)pieces - 1);
    int saved_tid = tls_tid;
    tls_tid = 0, tls_in_piece = true; /* loops inside our pieces run serially */
    take_pieces(t);
    tls_in_piece = false, tls_tid = saved_tid;
    /* wait for the pieces other threads still run */
    uint32_t d = atomic_load(&t->done);
    if (d != pieces && !spin_until_changed(&t->done, d)) {
        atomic_store(&t->caller_sleeping, 1);
        while ((d = atomic_load(&t->done)) != pieces) futex_wait(&t->done, d);
        atomic_store(&t->caller_sleeping, 0);
    }
    while (atomic_load(&t->done) != pieces) cpu_relax();
    atomic_fetch_add_explicit(&t->loops, 1, memory_order_relaxed);
    atomic_store(&t->busy, 0);
}

int ld_par_threads(void) {
    ld_team *t = current_team();
    return t ? t->n : 1;
}
int ld_par_thread(void) {
    return tls_tid;
}

ld_team_scope ld_team_scope_begin(ld_ctx *ctx, int n_threads) {
    ld_team_scope s = {tls_team, NULL};
    if (!ctx) return s;
    tls_team = ld_ctx_team(ctx);
    if (n_threads > 0 && n_threads != ld_ctx_threads(ctx) && (s.owned = ld_team_new(n_threads))) tls_team = s.owned;
    return s;
}
void ld_team_scope_end(ld_team_scope *s) {
    tls_team = s->prev;
    ld_team_free(s->owned);
}

/* ---- per-thread scratch, freed when the thread ends ---------------------------------- */

typedef struct scratch_set {
    void *p[LD_SCRATCH_SLOTS];
    size_t cap[LD_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static _Thread_local scratch_set *tls_scratch;

static void scratch_free(void *p) {
    scratch_set *s = p;
    for (int i = 0; i < LD_SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}
static void scratch_key_make(void) {
    pthread_key_create(&scratch_key, scratch_free);
}

void *ld_thread_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= LD_SCRATCH_SLOTS) return NULL;
    if (!tls_scratch) {
        pthread_once(&scratch_once, scratch_key_make);
        scratch_set *s = calloc(1, sizeof *s);
        if (!s) return NULL;
        if (pthread_setspecific(scratch_key, s) != 0) {
            free(s);
            return NULL;
        }
        tls_scratch = s;
    }
    scratch_set *s = tls_scratch;
    if (s->cap[slot] >= bytes) return s->p[slot];
    size_t cap = (bytes + 4095) & ~(size_t)4095;
    if (cap < bytes) return NULL;
    void *p = aligned_alloc(64, cap ? cap : 4096);
    if (!p) return NULL;
    free(s->p[slot]);
    s->p[slot] = p;
    s->cap[slot] = cap;
    return p;
}

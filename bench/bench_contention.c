/* bench/bench_contention.c — `liandan bench contention`: training and decode throughput alone
 * and beside a CPU-bound process pinned to one of the cores this process may use, with their
 * ratio. A library whose threads wait for each other at every op (fork/join with spinning)
 * collapses there: the thread sharing its core with the busy process holds every op up. The
 * thread team (core/team.h) lets the other threads take its pieces.
 *
 * The busy process is a child forked here that pins itself to the last CPU of this process's
 * affinity set and spins until it is killed at the end of the row. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* Forks the busy child (-1 when this process may use only one CPU or fork fails). */
static pid_t start_busy(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) || CPU_COUNT(&set) < 2) return -1;
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) last = c;
    pid_t pid = fork();
    if (pid == 0) { /* only async-signal-safe calls from here on: the parent has threads */
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(last, &one);
        sched_setaffinity(0, sizeof one, &one);
        for (volatile unsigned long spin = 0;; spin++) {
        }
    }
    if (pid > 0) usleep(20000); /* let it reach its core */
    return pid;
}

static void stop_busy(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* Medians of fn alone and beside the busy process; rows in tokens/s (tokens per call). */
static void quiet_and_busy(const char *what, void (*fn)(void *), void *arg, const ld_status *st, double tokens,
                           const ld_bench_opts *o, ld_bench_report *rep) {
    double quiet = ld_bench_median(fn, arg, o->reps);
    pid_t busy = start_busy();
    if (busy < 0) {
        fprintf(stderr, "liandan bench contention: needs two CPUs and fork (%s)\n", strerror(errno));
        rep->failures++;
        return;
    }
    double loaded = ld_bench_median(fn, arg, o->reps);
    stop_busy(busy);
    if (*st) return;
    char name[128];
    snprintf(name, sizeof name, "%s alone", what);
    ld_bench_report_row(rep, "contention", name, tokens / quiet, "tok/s", -1, NULL);
    snprintf(name, sizeof name, "%s beside a busy process on one core", what);
    ld_bench_report_row(rep, "contention", name, tokens / loaded, "tok/s", quiet / loaded, "alone");
}

void ld_bench_contention(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    (void)lim;
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&cp, &ctx)) return;
    ld_lm_config c = ld_bench_gpt2_124m();
    if (!o->filter || strstr("train", o->filter)) {
        ld_bench_train_run r;
        if (!ld_bench_train_setup(ctx, &c, false, 4, 64, &r))
            quiet_and_busy("gpt2-124M train step fp32 B=4 T=64", ld_bench_train_step, &r, &r.st, 4 * 64, o, rep);
        if (r.st) fprintf(stderr, "liandan bench contention: %s\n", ld_ctx_error(ctx)), rep->failures++;
        ld_bench_train_teardown(&r);
    }
    if (!o->filter || strstr("decode", o->filter)) {
        ld_lm *m = NULL;
        ld_bench_gen_run g = {.tok = 1};
        if (!(g.st = ld_lm_new(ctx, &c, 1, &m)) && !(g.st = ld_lm_session_new(m, 1, 64, 64, &g.s)) &&
            !(g.st = ld_lm_session_quantize(g.s, LD_Q8_0))) {
            ld_bench_decode_steps(&g); /* warm-up */
            quiet_and_busy("gpt2-124M decode batch 1 Q8_0", ld_bench_decode_steps, &g, &g.st, 32, o, rep);
        }
        if (g.st) fprintf(stderr, "liandan bench contention: %s\n", ld_ctx_error(ctx)), rep->failures++;
        ld_lm_session_free(g.s);
        ld_lm_free(m);
    }
    ld_ctx_free(ctx);
}

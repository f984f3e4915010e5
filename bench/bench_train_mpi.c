/* bench/bench_train_mpi.c — `liandan bench train --mpi` under mpirun: data-parallel training
 * steps of the GPT-2-124M shape (fp32, B=4, T=64 per rank), with in the same run:
 *   - the 1-rank step (rank 0 alone while the others wait): the scaling baseline;
 *   - the N-rank step with the bucketed all-reduce overlapped with backward, and without
 *     overlap (reduced after backward): tokens/s per rank, scaling efficiency (1-rank step time
 *     over the N-rank one), communication seconds per step, the share of them hidden behind
 *     backward;
 *   - the N-rank step with the gradients summed as bfloat16 after backward (dp_reduce bf16);
 *   - one blocking all-reduce of the whole gradient (the limit the buckets are held to), and
 *     the bytes per step against the ring all-reduce bound 2 (N-1)/N x gradient bytes per rank.
 * The four steps run interleaved (one of each per round, --reps rounds, medians), so a load
 * that drifts during the run weighs on them alike. Every rank runs the same calls; rank 0
 * prints. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "core/comm.h"
#include "liandan/liandan.h"
#include "train/grad_sync.h"

typedef struct dp_run {
    ld_bench_train_run *r;
    ld_grad_sync *gs;
    ld_comm *comm;
    ld_status st;
} dp_run;

/* One data-parallel step: forward, backward with the reduction armed, AdamW on the sum. */
static void dp_step(void *arg) {
    dp_run *d = arg;
    ld_bench_train_run *r = d->r;
    if (d->st) return;
    ld_params_zero_grad(ld_lm_params(r->m));
    ld_tape_reset(r->tape);
    ld_tensor *loss = NULL;
    d->st = ld_lm_forward(r->m, r->tape, r->ids, r->targets, r->B, r->T, NULL, &loss);
    if (!d->st) d->st = ld_grad_sync_arm(d->gs, r->tape);
    if (!d->st) d->st = ld_tape_backward(r->tape, loss);
    if (!d->st) d->st = ld_grad_sync_finish(d->gs, r->tape);
    if (!d->st) d->st = ld_adamw_step(r->opt, 1e-4f, 1.0f / (float)ld_comm_size(d->comm), NULL);
}

/* Rank 0 trains alone; the others wait for it at a barrier. */
typedef struct solo_run {
    ld_bench_train_run *r;
    ld_comm *comm;
} solo_run;
static void solo_step(void *arg) {
    solo_run *s = arg;
    if (ld_comm_rank(s->comm) == 0) ld_bench_train_step(s->r);
}

typedef struct ar_run {
    ld_comm *comm;
    float *buf;
    int64_t n;
    ld_status st;
} ar_run;
static void ar_once(void *arg) {
    ar_run *a = arg;
    if (!a->st) a->st = ld_comm_allreduce(a->comm, a->buf, a->n, LD_COMM_F32, LD_COMM_SUM);
}

/* A barrier that sleeps while it waits (MPI's own spins, and would take the core of a rank
 * that is being timed alone). */
static void polite_barrier(ld_comm *comm) {
    double x = 0;
    int req = -1;
    bool done = false;
    if (ld_comm_iallreduce(comm, &x, 1, LD_COMM_F64, &req)) return;
    while (!ld_comm_test(comm, req, &done) && !done) usleep(1000);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_of(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* One timed call between barriers; rank 0's time (the one reported). */
static double time_synced(void (*fn)(void *), void *arg, ld_comm *comm) {
    polite_barrier(comm);
    double t0 = ld_time_now();
    fn(arg);
    double t = ld_time_now() - t0;
    polite_barrier(comm);
    ld_comm_bcast(comm, &t, 1, LD_COMM_F64, 0);
    return t;
}

static double median_synced(void (*fn)(void *), void *arg, int reps, ld_comm *comm) {
    double t[64];
    if (reps > 64) reps = 64;
    time_synced(fn, arg, comm); /* warm-up */
    for (int i = 0; i < reps; i++) t[i] = time_synced(fn, arg, comm);
    return median_of(t, reps);
}

int ld_bench_mpi_rank(ld_ctx *ctx) {
    ld_comm *c = NULL;
    if (ld_comm_world(ctx, &c)) return -1;
    int r = ld_comm_rank(c);
    ld_comm_free(c);
    return r;
}

void ld_bench_train_mpi(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    ld_comm *comm = NULL;
    if (ld_ctx_new(&cp, &ctx) || ld_comm_world(ctx, &comm)) {
        fprintf(stderr, "bench train --mpi: %s\n", ctx ? ld_ctx_error(ctx) : "out of memory");
        rep->failures++;
        ld_ctx_free(ctx);
        return;
    }
    int W = ld_comm_size(comm);
    const int64_t B = 4, T = 64;
    ld_lm_config cfg = ld_bench_gpt2_124m();
    ld_bench_train_run r;
    ld_grad_sync *gs = NULL, *gs_flat = NULL, *gs_bf = NULL;
    ld_params *set = NULL;
    ld_status st = ld_bench_train_setup(ctx, &cfg, false, B, T, &r);
    if (!st) set = ld_lm_params(r.m);
    if (!st) st = ld_grad_sync_new(ctx, comm, &set, 1, (size_t)25 << 20, true, &gs);
    if (!st) st = ld_grad_sync_new(ctx, comm, &set, 1, (size_t)25 << 20, false, &gs_flat);
    if (!st) st = ld_grad_sync_new(ctx, comm, &set, 1, (size_t)25 << 20, false, &gs_bf);
    if (!st) st = ld_grad_sync_set_bf16(gs_bf, true);
    if (st) {
        fprintf(stderr, "bench train --mpi: %s\n", ld_ctx_error(ctx));
        rep->failures++;
        goto out;
    }
    int64_t N = ld_grad_sync_stats_get(gs).n_trainable;
    double tok = (double)(B * T), flops = ld_lm_train_flops_per_token(&cfg, T) * tok;
    double peak = lim->fma_f32_gflops * 1e9;
    char name[96];

    /* The four steps interleaved, one of each per round, so a load that changes during the
     * run (a shared machine) weighs on all four alike; medians over the rounds. */
    solo_run solo = {&r, comm};
    dp_run d = {&r, gs, comm, LD_OK}, df = {&r, gs_flat, comm, LD_OK}, db = {&r, gs_bf, comm, LD_OK};
    int reps = o->reps < 1 ? 1 : o->reps > 64 ? 64 : o->reps;
    double ts[4][64];
    time_synced(solo_step, &solo, comm); /* warm-up */
    time_synced(dp_step, &d, comm);
    time_synced(dp_step, &df, comm);
    time_synced(dp_step, &db, comm);
    ld_grad_sync_stats_reset(gs);
    ld_grad_sync_stats_reset(gs_flat);
    ld_grad_sync_stats_reset(gs_bf);
    for (int i = 0; i < reps; i++) {
        ts[0][i] = time_synced(solo_step, &solo, comm);
        ts[1][i] = time_synced(dp_step, &d, comm);
        ts[2][i] = time_synced(dp_step, &df, comm);
        ts[3][i] = time_synced(dp_step, &db, comm);
    }
    double t1 = median_of(ts[0], reps), t2 = median_of(ts[1], reps), t3 = median_of(ts[2], reps);
    double t4 = median_of(ts[3], reps);
    ld_grad_sync_stats so = ld_grad_sync_stats_get(gs), sf = ld_grad_sync_stats_get(gs_flat);
    ld_grad_sync_stats sb = ld_grad_sync_stats_get(gs_bf);
    snprintf(name, sizeof name, "1 rank x %d thread step (B=%lld, T=%lld)", ld_ctx_threads(ctx), (long long)B, (long long)T);
    ld_bench_report_row(rep, "train mpi", name, tok / t1, "tok/s", peak > 0 ? flops / t1 / peak : -1, "FMA peak");
    if (d.st || df.st || db.st) {
        fprintf(stderr, "bench train --mpi: %s\n", ld_ctx_error(ctx));
        rep->failures++;
        goto out;
    }
    /* the stats cover the timed steps on this rank; per step, averaged over ranks */
    double v[5] = {so.exposed_s / (double)so.steps, so.reduce_s / (double)so.steps, sf.exposed_s / (double)sf.steps,
                   sf.reduce_s / (double)sf.steps, sb.exposed_s / (double)sb.steps};
    ld_comm_allreduce(comm, v, 5, LD_COMM_F64, LD_COMM_SUM);
    for (int k = 0; k < 5; k++) v[k] /= W;

    snprintf(name, sizeof name, "%d ranks, overlapped: tokens/s per rank (vs 1 rank alone)", W);
    ld_bench_report_row(rep, "train mpi", name, tok / t2, "tok/s", t1 / t2, "scaling efficiency");
    snprintf(name, sizeof name, "%d ranks, reduced after backward: tokens/s per rank", W);
    ld_bench_report_row(rep, "train mpi", name, tok / t3, "tok/s", t1 / t3, "scaling efficiency");
    ld_bench_report_row(rep, "train mpi", "all-reduce after backward: seconds per step", v[2], "s", v[2] / t3,
                        "share of the step");
    snprintf(name, sizeof name, "%d ranks, bf16 sums after backward: tokens/s per rank", W);
    ld_bench_report_row(rep, "train mpi", name, tok / t4, "tok/s", t1 / t4, "scaling efficiency");
    ld_bench_report_row(rep, "train mpi", "bf16 all-reduce after backward: seconds per step", v[4], "s",
                        v[2] > 0 ? v[4] / v[2] : -1, "of the f32 all-reduce's");
    ld_bench_report_row(rep, "train mpi", "overlapped: seconds per step not hidden by backward", v[0], "s",
                        v[2] > 0 ? 1 - v[0] / v[2] : -1, "overlap achieved");
    ld_bench_report_row(rep, "train mpi", "overlapped: first bucket start to last bucket end", v[1], "s", -1, "");

    /* the limit: one blocking all-reduce of the whole gradient */
    ar_run a = {comm, NULL, N, LD_OK};
    if (!(a.buf = calloc((size_t)N, sizeof(float)))) {
        rep->failures++;
        goto out;
    }
    double tar = median_synced(ar_once, &a, o->reps, comm);
    free(a.buf);
    double bytes = (double)N * sizeof(float), ring = 2.0 * (W - 1) / W * bytes;
    ld_bench_report_row(rep, "train mpi", "gradient bytes all-reduced per step (per rank)", bytes / 1e6, "MB",
                        ring > 0 ? ring / bytes : -1, "ring bound / payload");
    ld_bench_report_row(rep, "train mpi", "ring bound: bytes each rank sends per step, f32 (bf16: half)", ring / 1e6,
                        "MB", -1, "");
    ld_bench_report_row(rep, "train mpi", "one blocking all-reduce of the gradient", tar, "s", tar / v[2],
                        "of the bucketed all-reduce time");
    ld_bench_report_row(rep, "train mpi", "ring bound bytes / one all-reduce's seconds", ring / tar / 1e9, "GB/s",
                        lim->bw_read_gbs > 0 ? ring / tar / 1e9 / lim->bw_read_gbs : -1, "read bandwidth");
out:
    ld_grad_sync_free(gs);
    ld_grad_sync_free(gs_flat);
    ld_grad_sync_free(gs_bf);
    ld_bench_train_teardown(&r);
    ld_comm_free(comm);
    ld_ctx_free(ctx);
}

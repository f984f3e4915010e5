/* bench/bench_attention.c — attention throughput at training and decoding shapes, on the
 * context's threads in wall time against the fp32 FMA peak of the run, and again on one
 * thread in that thread's CPU time against the FMA peak loop timed the same way. The second
 * ratio is what load barely moves: time a thread spends descheduled by other processes
 * counts in neither (a neighbour on the same physical core and shared caches still do).
 * FLOPs: forward 4·B·H·D·(visible query-key pairs: causal and sliding-window masks counted)
 * (QK^T and PV, 2 flops per multiply-add);
 * backward 2.5x the forward (recomputed QK^T, dP, dS·K, dS^T·Q, P^T·dO). */
#include <stdlib.h>
#include <time.h>

#include "bench.h"
#include "core/team.h"
#include "kernels/kernels.h"

typedef struct attn_run {
    const ld_kernels *k;
    ld_attn_shape s;
    float *q, *kk, *v, *out, *lse, *dout, *dq, *dk, *dv;
    void *scratch;
    bool backward;
} attn_run;

static void run_once(void *arg) {
    attn_run *a = arg;
    if (a->backward)
        a->k->attention_bwd(a->dq, a->dk, a->dv, a->dout, a->out, a->lse, a->q, a->kk, a->v, &a->s, a->scratch);
    else
        a->k->attention_fwd(a->out, a->lse, a->q, a->kk, a->v, &a->s);
}

static double thread_cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Least thread CPU time of `reps` runs (after one warm-up). */
static double best_cpu(void (*fn)(void *), void *arg, int reps) {
    double best = 1e30;
    fn(arg);
    for (int i = 0; i < (reps < 1 ? 1 : reps); i++) {
        double t0 = thread_cpu_now();
        fn(arg);
        double t = thread_cpu_now() - t0;
        if (t < best) best = t;
    }
    return best;
}

/* The fp32 FMA peak loop of the kernels' level on this thread, GFLOP/s of thread CPU time
 * (best of LD_BENCH_TRIALS trials); 0 when the level has no peak loop. */
static double fma_peak_cpu(void) {
    const ld_bench_loops *L = ld_bench_loops_get();
    double best = 0;
    for (int i = 0; L->fma && i < LD_BENCH_TRIALS; i++) {
        const long iters = 2000000;
        double t0 = thread_cpu_now();
        L->fma(iters);
        double t = thread_cpu_now() - t0, g = t > 0 ? (double)iters * L->fma_per_iter / t * 1e-9 : 0;
        if (g > best) best = g;
    }
    return best;
}

static float *randn(int64_t n, ld_rng *r) {
    float *x = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; x && i < n; i++) x[i] = ld_rng_normal(r);
    return x;
}

/* peak1 > 0: one thread, thread CPU time, against peak1 (the caller's team is one thread). */
static void bench_shape(const char *label, ld_attn_shape s, const ld_bench_opts *o, const ld_machine_limits *lim,
                        double peak1, ld_bench_report *rep) {
    attn_run a = {.k = ld_kernels_get(LD_BACKEND_CPU), .s = s};
    ld_rng r = ld_rng_init(1);
    int64_t nq = s.B * s.Tq * s.Hq * s.D, nk = s.B * s.Tk * s.Hkv * s.D;
    a.q = randn(nq, &r), a.kk = randn(nk, &r), a.v = randn(nk, &r), a.dout = randn(nq, &r);
    a.out = calloc((size_t)nq, 4), a.lse = calloc((size_t)(s.B * s.Hq * s.Tq), 4);
    a.dq = calloc((size_t)nq, 4), a.dk = calloc((size_t)nk, 4), a.dv = calloc((size_t)nk, 4);
    a.scratch = aligned_alloc(64, (a.k->attention_bwd_scratch(&s) + 127) / 64 * 64);
    double pairs = 0; /* visible (query, key) pairs */
    for (int64_t i = 0; i < s.Tq; i++) {
        int64_t end = s.causal && s.q_offset + i + 1 < s.Tk ? s.q_offset + i + 1 : s.Tk;
        int64_t start = s.window > 0 && end - s.window > 0 ? end - s.window : 0;
        pairs += (double)(end - start);
    }
    double fwd_flops = 4.0 * (double)(s.B * s.Hq * s.D) * pairs;
    for (int bw = 0; bw < 2; bw++) {
        if (bw && s.Tq == 1) break; /* decoding has no backward */
        a.backward = bw;
        run_once(&a); /* forward output and lse feed the backward */
        double t = peak1 > 0 ? best_cpu(run_once, &a, o->reps) : ld_bench_median(run_once, &a, o->reps);
        double gf = (bw ? 2.5 : 1.0) * fwd_flops / t * 1e-9;
        char name[112];
        snprintf(name, sizeof name, "%s %s%s", label, bw ? "bwd" : "fwd", peak1 > 0 ? " (1 thread, CPU time)" : "");
        if (peak1 > 0) ld_bench_report_row(rep, "attention", name, gf, "GFLOP/s", gf / peak1, "FMA 1 thread");
        else ld_bench_report_row(rep, "attention", name, gf, "GFLOP/s", gf / lim->fma_f32_gflops, "fp32 FMA");
    }
    free(a.q), free(a.kk), free(a.v), free(a.dout), free(a.out), free(a.lse), free(a.dq), free(a.dk), free(a.dv);
    free(a.scratch);
}

void ld_bench_suite_attention(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_attn_shape train_long = {.B = 4, .Tq = 1024, .Tk = 1024, .Hq = 12, .Hkv = 12, .D = 64, .causal = true,
                                .scale = 0.125f};
    ld_attn_shape train_short = train_long;
    train_short.Tq = train_short.Tk = 64;
    ld_attn_shape decode = {.B = 1, .Tq = 1, .Tk = 1024, .Hq = 12, .Hkv = 12, .D = 64, .q_offset = 1023,
                            .causal = true, .scale = 0.125f};
    /* the encoder's and the image-text towers' bidirectional attention */
    ld_attn_shape bidir = train_long;
    bidir.Tq = bidir.Tk = 512, bidir.causal = false;
    /* Gemma 2's local layers: GQA, head size 128, sliding window, soft-capped scores */
    ld_attn_shape local = {.B = 1, .Tq = 1024, .Tk = 1024, .Hq = 8, .Hkv = 4, .D = 128, .causal = true,
                           .scale = 0.0883883f, .window = 512, .softcap = 50.0f};
    bench_shape("causal B4 T1024 H12 D64", train_long, o, lim, 0, rep);
    bench_shape("causal B4 T64 H12 D64", train_short, o, lim, 0, rep);
    bench_shape("bidirectional B4 T512 H12 D64", bidir, o, lim, 0, rep);
    bench_shape("window512 softcap50 B1 T1024 H8/4 D128", local, o, lim, 0, rep);
    bench_shape("decode Tk1024 H12 D64", decode, o, lim, 0, rep);
    /* the same kernels on one thread (B = 1 for the long shapes: the same work per unit) */
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = 1;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&cp, &ctx) != LD_OK) return;
    {
        LD_TEAM_SCOPE(ctx);
        const double peak1 = fma_peak_cpu();
        train_long.B = bidir.B = 1;
        if (peak1 > 0) {
            bench_shape("causal B1 T1024 H12 D64", train_long, o, lim, peak1, rep);
            bench_shape("causal B4 T64 H12 D64", train_short, o, lim, peak1, rep);
            bench_shape("bidirectional B1 T512 H12 D64", bidir, o, lim, peak1, rep);
            bench_shape("window512 softcap50 B1 T1024 H8/4 D128", local, o, lim, peak1, rep);
        }
    }
    ld_ctx_free(ctx);
}

/* bench/bench_mlm.c — `liandan bench mlm`: a masked-LM training step (forward, backward,
 * AdamW) of the encoder at the BERT-base shape (12 layers, 768 wide, 12 heads, 3072 MLP,
 * vocab 30522, T=128, 15 % of the tokens predicted) in fp32 and bf16, as tokens/s and MFU
 * against the fp32 FMA peak measured in the same run. FLOPs per token are
 * ld_encoder_train_flops_per_token: 6 x the layers' matrix parameters, 6 x the head's at the
 * predicted share, and 12 L C T for bidirectional attention. Beside the wall-time MFU, an MFU
 * from the process's CPU time per step against the per-thread share of the peak: on a shared
 * machine the wall time counts the time other processes hold the cores, the CPU time does not. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "kernels/cpu/gemm.h"
#include "liandan/liandan.h"

typedef struct mlm_run {
    ld_encoder *m;
    ld_tape *tape;
    ld_adamw *opt;
    int32_t *ids, *targets, *lengths;
    int64_t B, T;
    ld_status st;
} mlm_run;

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double thread_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One thread's fp32 FMA peak in FLOP per CPU second: the best of 5 runs of the limits' loop. */
static double cpu_fma_peak(void) {
    const ld_bench_loops *L = ld_bench_loops_get();
    double best = 0;
    for (int rep = 0; L->fma && rep < 5; rep++) {
        const long iters = 2000000;
        double c0 = thread_cpu_seconds();
        L->fma(iters);
        double c = thread_cpu_seconds() - c0, r = c > 0 ? (double)iters * L->fma_per_iter / c : 0;
        best = r > best ? r : best;
    }
    return best;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

static void one_step(void *arg) {
    mlm_run *r = arg;
    if (r->st) return;
    ld_params_zero_grad(ld_encoder_params(r->m));
    ld_tape_reset(r->tape);
    ld_tensor *loss = NULL;
    r->st = ld_encoder_mlm_loss(r->m, r->tape, r->ids, r->lengths, r->targets, r->B, r->T, &loss, NULL, NULL);
    if (!r->st) r->st = ld_tape_backward(r->tape, loss);
    if (!r->st) r->st = ld_adamw_step(r->opt, 1e-4f, 1.0f, NULL);
}

ld_encoder_config ld_bench_bert_base(void) {
    ld_encoder_config c = ld_encoder_default_config(LD_ENCODER_BERT);
    c.vocab_size = 30522, c.hidden_size = 768, c.n_layers = 12, c.n_heads = 12, c.intermediate_size = 3072;
    c.max_position = 512, c.mask_token_id = 103;
    return c;
}

static void bench_precision(ld_ctx *ctx, const ld_encoder_config *cfg, bool bf16, int64_t B, int64_t T,
                            const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep, double *tok_s_out) {
    mlm_run r = {.B = B, .T = T};
    *tok_s_out = 0;
    if ((r.st = ld_encoder_new(ctx, cfg, 1, &r.m)) || (r.st = ld_tape_new(ctx, &r.tape)) ||
        (r.st = ld_adamw_new(ld_encoder_params(r.m), NULL, &r.opt)))
        goto out;
    if (bf16) {
        if ((r.st = ld_params_enable_bf16(ld_encoder_params(r.m)))) goto out;
        ld_tape_set_bf16(r.tape, ld_encoder_params(r.m));
    }
    r.ids = malloc((size_t)(B * T) * sizeof(int32_t));
    r.targets = malloc((size_t)(B * T) * sizeof(int32_t));
    r.lengths = malloc((size_t)B * sizeof(int32_t));
    if (!r.ids || !r.targets || !r.lengths) goto out;
    ld_rng rng = ld_rng_init(7);
    int64_t predicted = 0;
    for (int64_t i = 0; i < B * T; i++) {
        r.ids[i] = (int32_t)ld_rng_below(&rng, (uint64_t)cfg->vocab_size);
        bool pick = ld_rng_uniform(&rng) < 0.15f;
        r.targets[i] = pick ? (int32_t)ld_rng_below(&rng, (uint64_t)cfg->vocab_size) : -100;
        predicted += pick;
    }
    for (int64_t b = 0; b < B; b++) r.lengths[b] = (int32_t)T;
    one_step(&r); /* warm-up: arenas settle */
    one_step(&r);
    int reps = o->reps < 5 ? 5 : o->reps > 64 ? 64 : o->reps;
    double wall[64], cpu[64];
    for (int i = 0; i < reps && !r.st; i++) {
        double w0 = ld_time_now(), c0 = cpu_seconds();
        one_step(&r);
        wall[i] = ld_time_now() - w0, cpu[i] = cpu_seconds() - c0;
    }
    if (r.st) goto out;
    double s = median(wall, reps), cs = median(cpu, reps);
    double share = (double)predicted / (double)(B * T);
    double tok_s = (double)(B * T) / s, flops = ld_encoder_train_flops_per_token(cfg, T, share) * tok_s;
    char name[96];
    snprintf(name, sizeof name, "bert-base MLM B=%lld T=%lld %s tokens/s", (long long)B, (long long)T, bf16 ? "bf16" : "fp32");
    ld_bench_report_row(rep, "mlm", name, tok_s, "tok/s", -1, NULL);
    snprintf(name, sizeof name, "bert-base MLM B=%lld T=%lld %s MFU", (long long)B, (long long)T, bf16 ? "bf16" : "fp32");
    ld_bench_report_row(rep, "mlm", name, flops * 1e-9, "GFLOP/s", flops * 1e-9 / lim->fma_f32_gflops, "fp32 FMA peak");
    /* CPU time: FLOPs per CPU second of the step (all threads summed) against one thread's FMA
     * peak timed in CPU time too (both immune to the time other processes hold the core) */
    double cflops = ld_encoder_train_flops_per_token(cfg, T, share) * (double)(B * T) / cs, cpeak = cpu_fma_peak();
    snprintf(name, sizeof name, "bert-base MLM B=%lld T=%lld %s MFU per CPU second (%.2f s/step)", (long long)B,
             (long long)T, bf16 ? "bf16" : "fp32", cs);
    if (cpeak > 0)
        ld_bench_report_row(rep, "mlm", name, cflops * 1e-9, "GFLOP/s", cflops / cpeak, "1-thread FMA peak (CPU time)");
    *tok_s_out = tok_s;
out:
    if (r.st) fprintf(stderr, "liandan bench mlm: %s\n", ld_ctx_error(ctx));
    free(r.ids), free(r.targets), free(r.lengths);
    ld_adamw_free(r.opt);
    ld_tape_free(r.tape);
    ld_encoder_free(r.m);
}

void ld_bench_mlm(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&cp, &ctx)) return;
    ld_encoder_config c = ld_bench_bert_base();
    double fp32 = 0, bf16 = 0;
    bench_precision(ctx, &c, false, 8, 128, o, lim, rep, &fp32);
    if (!o->filter || strstr("bf16", o->filter)) bench_precision(ctx, &c, true, 8, 128, o, lim, rep, &bf16);
    if (fp32 > 0 && bf16 > 0) ld_bench_report_row(rep, "mlm", "bf16 / fp32 tokens/s", bf16 / fp32, "x", -1, NULL);
#if LD_ARCH_X86
    if (bf16 > 0 && ld_isa_active() == LD_ISA_AVX512) { /* which bf16 GEMM the step ran, and why */
        double cvt = 0, dot = 0;
        char name[96];
        snprintf(name, sizeof name, "bf16 GEMM path %s: vdpbf16ps / FMA micro-kernel", ld_gemm_bf16_avx512_choice(&cvt, &dot));
        ld_bench_report_row(rep, "mlm", name, cvt > 0 ? dot / cvt : 0, "x", -1, NULL);
    }
#endif
    ld_ctx_free(ctx);
}

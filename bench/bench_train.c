/* bench/bench_train.c — `liandan bench train`: training-step throughput and MFU of the causal
 * LM at the GPT-2-124M shape (12 layers, 768 wide, vocab 50304, B=4, T=64) in fp32 and bf16
 * mixed precision (their steps interleaved), and batch-1 generation tokens/s next to the bandwidth limit. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kernels/cpu/gemm.h"
#include "liandan/liandan.h"

void ld_bench_train_step(void *arg) {
    ld_bench_train_run *r = arg;
    if (r->st) return;
    ld_params_zero_grad(ld_lm_params(r->m));
    ld_tape_reset(r->tape);
    ld_tensor *loss = NULL;
    r->st = ld_lm_forward(r->m, r->tape, r->ids, r->targets, r->B, r->T, NULL, &loss);
    if (!r->st) r->st = ld_tape_backward(r->tape, loss);
    if (!r->st) r->st = ld_adamw_step(r->opt, 1e-4f, 1.0f, NULL);
}

/* The GPT-2-124M shape the train and infer suites measure. */
ld_lm_config ld_bench_gpt2_124m(void) {
    ld_lm_config c = ld_lm_default_config(LD_ARCH_GPT2);
    c.vocab_size = 50304, c.hidden_size = 768, c.n_layers = 12, c.n_heads = 12, c.n_kv_heads = 12;
    c.intermediate_size = 3072, c.max_position = 1024;
    return c;
}

ld_status ld_bench_train_setup(ld_ctx *ctx, const ld_lm_config *cfg, bool bf16, int64_t B, int64_t T,
                               ld_bench_train_run *r) {
    *r = (ld_bench_train_run){.B = B, .T = T};
    if ((r->st = ld_lm_new(ctx, cfg, 1, &r->m)) || (r->st = ld_tape_new(ctx, &r->tape)) ||
        (r->st = ld_adamw_new(ld_lm_params(r->m), NULL, &r->opt)))
        return r->st;
    if (bf16) {
        if ((r->st = ld_params_enable_bf16(ld_lm_params(r->m)))) return r->st;
        ld_tape_set_bf16(r->tape, ld_lm_params(r->m));
    }
    r->ids = malloc((size_t)(B * T) * sizeof(int32_t));
    r->targets = malloc((size_t)(B * T) * sizeof(int32_t));
    if (!r->ids || !r->targets) return r->st = ld_error(ctx, LD_ERR_NOMEM, "out of memory");
    ld_rng rng = ld_rng_init(7);
    for (int64_t i = 0; i < B * T; i++) {
        r->ids[i] = (int32_t)ld_rng_below(&rng, (uint64_t)cfg->vocab_size);
        r->targets[i] = (int32_t)ld_rng_below(&rng, (uint64_t)cfg->vocab_size);
    }
    ld_bench_train_step(r); /* warm-up beyond the one ld_bench_median does: arenas settle */
    return r->st;
}

void ld_bench_train_teardown(ld_bench_train_run *r) {
    free(r->ids);
    free(r->targets);
    ld_adamw_free(r->opt);
    ld_tape_free(r->tape);
    ld_lm_free(r->m);
    *r = (ld_bench_train_run){0};
}

static int cmp_seconds(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The rows of one precision from its median step time s. */
static void report_precision(const ld_lm_config *cfg, bool bf16, int64_t B, int64_t T, double s,
                             const ld_machine_limits *lim, ld_bench_report *rep) {
    double tok_s = (double)(B * T) / s, flops = ld_lm_train_flops_per_token(cfg, T) * tok_s;
    char name[96];
    snprintf(name, sizeof name, "gpt2-124M B=%lld T=%lld %s tokens/s", (long long)B, (long long)T, bf16 ? "bf16" : "fp32");
    ld_bench_report_row(rep, "train", name, tok_s, "tok/s", -1, NULL);
    /* bf16 is held to the bf16 dot peak when its GEMMs use bf16 dot products ("dot"), else
     * (bf16 widened to fp32) to the fp32 peak */
#if LD_ARCH_X86
    const bool vs_bf16 = bf16 && lim->dot_bf16_gflops > 0 && ld_isa_active() == LD_ISA_AVX512 &&
                         !strcmp(ld_gemm_bf16_avx512_choice(NULL, NULL), "dot");
#else
    const bool vs_bf16 = false; /* no bf16 dot-product GEMM on this processor */
#endif
    const double peak = vs_bf16 ? lim->dot_bf16_gflops : lim->fma_f32_gflops;
    snprintf(name, sizeof name, "gpt2-124M B=%lld T=%lld %s MFU", (long long)B, (long long)T, bf16 ? "bf16" : "fp32");
    ld_bench_report_row(rep, "train", name, flops * 1e-9, "GFLOP/s", peak > 0 ? flops * 1e-9 / peak : -1,
                        vs_bf16 ? "bf16 dot peak" : "fp32 FMA peak");
}

/* fp32 and bf16 steps interleaved (one of each, reps times), so that both see the same
 * machine and their ratio holds on a busy one; medians of each. */
static void bench_train_precisions(ld_ctx *ctx, const ld_lm_config *cfg, int64_t B, int64_t T, const ld_bench_opts *o,
                                   const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_bench_train_run r[2];
    memset(r, 0, sizeof r);
    double t[2][64];
    const int reps = o->reps < 1 ? 1 : o->reps > 64 ? 64 : o->reps;
    if (ld_bench_train_setup(ctx, cfg, false, B, T, &r[0]) || ld_bench_train_setup(ctx, cfg, true, B, T, &r[1])) goto out;
    ld_bench_train_step(&r[0]), ld_bench_train_step(&r[1]); /* warm-up */
    for (int i = 0; i < reps && !r[0].st && !r[1].st; i++)
        for (int k = 0; k < 2; k++) {
            double t0 = ld_time_now();
            ld_bench_train_step(&r[k]);
            t[k][i] = ld_time_now() - t0;
        }
    if (r[0].st || r[1].st) goto out;
    double med[2];
    for (int k = 0; k < 2; k++) {
        qsort(t[k], (size_t)reps, sizeof t[k][0], cmp_seconds);
        med[k] = reps % 2 ? t[k][reps / 2] : 0.5 * (t[k][reps / 2 - 1] + t[k][reps / 2]);
        report_precision(cfg, k == 1, B, T, med[k], lim, rep);
    }
    ld_bench_report_row(rep, "train", "bf16 / fp32 tokens/s (interleaved steps)", med[0] / med[1], "x", -1, NULL);
out:
    if (r[0].st || r[1].st) fprintf(stderr, "liandan bench train: %s\n", ld_ctx_error(ctx));
    ld_bench_train_teardown(&r[0]);
    ld_bench_train_teardown(&r[1]);
}

void ld_bench_decode_steps(void *arg) {
    ld_bench_gen_run *g = arg;
    ld_lm_session_clear(g->s, 0);
    for (int i = 0; i < 32 && !g->st; i++) {
        const float *lg;
        ld_lm_segment seg = {0, &g->tok, 1};
        g->st = ld_lm_session_eval(g->s, &seg, 1, false, &lg);
    }
    g->n = 32;
}

/* Decode at batch 1 with the matrices in `type` (F32 = as trained). Bytes per token: every
 * matrix once in its type, plus one embedding row. */
static void bench_generate(ld_ctx *ctx, ld_lm *m, ld_dtype type, const char *label, const ld_bench_opts *o,
                           const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_bench_gen_run g = {.tok = 1};
    if ((g.st = ld_lm_session_new(m, 1, 64, 64, &g.s))) goto out;
    if (type != LD_F32 && (g.st = ld_lm_session_quantize(g.s, type))) goto out;
    double s = ld_bench_median(ld_bench_decode_steps, &g, o->reps);
    if (g.st) goto out;
    double tok_s = (double)g.n / s, bytes = 0;
    const ld_lm_config *c = ld_lm_config_of(m);
    ld_params *ps = ld_lm_params(m);
    for (int i = 0; i < ld_params_count(ps); i++) {
        const ld_tensor *t = ld_params_at(ps, i);
        size_t b = 0;
        bool embedding = strstr(t->name, "wte") || strstr(t->name, "wpe") || strstr(t->name, "embed_tokens");
        if (embedding) b = (size_t)t->shape[1] * 4; /* one row looked up */
        else if (t->ndim == 2 && !ld_dtype_row_bytes(type, ld_tensor_numel(t), &b)) {
        } else b = ld_tensor_nbytes(t);
        bytes += (double)b;
    }
    if (c->tie_embeddings) bytes += (double)(c->vocab_size * c->hidden_size) * 4; /* the tied head reads it all */
    double limit = lim->bw_read_gbs * 1e9 / bytes;
    char name[96];
    snprintf(name, sizeof name, "%s decode batch 1, %s matrices", label, ld_dtype_traits(type)->name);
    ld_bench_report_row(rep, "generate", name, tok_s, "tok/s", tok_s / limit, "read-bandwidth limit");
out:
    if (g.st) fprintf(stderr, "liandan bench train: %s\n", ld_ctx_error(ctx));
    ld_lm_session_free(g.s);
}

void ld_bench_train(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&cp, &ctx)) return;
    ld_lm_config c = ld_bench_gpt2_124m();
    if (!o->filter || strstr("train", o->filter)) bench_train_precisions(ctx, &c, 4, 64, o, lim, rep);
    ld_lm *m = NULL;
    if ((!o->filter || strstr("generate", o->filter)) && !ld_lm_new(ctx, &c, 1, &m)) {
        const ld_dtype types[] = {LD_F32, LD_Q8_0, LD_Q4_K};
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) bench_generate(ctx, m, types[i], "gpt2-124M", o, lim, rep);
    }
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

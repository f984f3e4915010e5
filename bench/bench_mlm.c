/* bench/bench_mlm.c — `liandan bench mlm`: a masked-LM training step (forward, backward,
 * AdamW) of the encoder at the BERT-base shape (12 layers, 768 wide, 12 heads, 3072 MLP,
 * vocab 30522, T=128, 15 % of the tokens predicted) in fp32 and bf16, as tokens/s and MFU
 * against the fp32 FMA peak measured in the same run. FLOPs per token are
 * ld_encoder_train_flops_per_token: 6 x the layers' matrix parameters, 6 x the head's at the
 * predicted share, and 12 L C T for bidirectional attention. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "liandan/liandan.h"

typedef struct mlm_run {
    ld_encoder *m;
    ld_tape *tape;
    ld_adamw *opt;
    int32_t *ids, *targets, *lengths;
    int64_t B, T;
    ld_status st;
} mlm_run;

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
    one_step(&r); /* warm-up beyond the one ld_bench_median does: arenas settle */
    double s = ld_bench_median(one_step, &r, o->reps < 5 ? 5 : o->reps);
    if (r.st) goto out;
    double share = (double)predicted / (double)(B * T);
    double tok_s = (double)(B * T) / s, flops = ld_encoder_train_flops_per_token(cfg, T, share) * tok_s;
    char name[96];
    snprintf(name, sizeof name, "bert-base MLM B=%lld T=%lld %s tokens/s", (long long)B, (long long)T, bf16 ? "bf16" : "fp32");
    ld_bench_report_row(rep, "mlm", name, tok_s, "tok/s", -1, NULL);
    snprintf(name, sizeof name, "bert-base MLM B=%lld T=%lld %s MFU", (long long)B, (long long)T, bf16 ? "bf16" : "fp32");
    ld_bench_report_row(rep, "mlm", name, flops * 1e-9, "GFLOP/s", flops * 1e-9 / lim->fma_f32_gflops, "fp32 FMA peak");
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
    ld_ctx_free(ctx);
}

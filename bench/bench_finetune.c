/* bench/bench_finetune.c — `liandan bench finetune`: the cost of adapting the GPT-2-124M
 * shape (B=4, T=64, fp32). Step time of full fine-tuning against LoRA (rank 8 on c_attn and
 * both c_proj, the base frozen: no weight gradients, no optimizer state for it), measured
 * interleaved (one full step, one LoRA step, ...) so both see the same machine — LoRA with its
 * frozen base multiplied in bf16 (what `finetune` does by default where bf16 products are fast:
 * ld_train_config_bf16) and in fp32 — ; and the peak
 * resident memory of a child process running two steps of each: full, LoRA on the F32 base,
 * QLoRA on a Q4_K GGUF of the same base (measured first, from a parent that holds no model). */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "train/train_config.h"
#include "liandan/liandan.h"

enum { B = 4, T = 64 };

typedef struct ft_run {
    ld_ctx *ctx;
    ld_lm *m;
    ld_adapter *a;
    ld_tape *tape;
    ld_adamw *opt;
    int32_t ids[B * T], targets[B * T];
    ld_status st;
} ft_run;

/* bf16_base: the base's matrices multiply in bf16 (their bf16 copies; the adapter stays fp32). */
static ld_status setup(ft_run *r, ld_ctx *ctx, const char *gguf, bool lora, bool bf16_base) {
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    ld_lm_config c = ld_bench_gpt2_124m();
    ld_lm_load_params lp = ld_lm_load_default_params(); /* the Q4_K base read in place: it stays quantized */
    ld_status st = gguf ? ld_lm_load_gguf_ex(ctx, gguf, &lp, &r->m, NULL) : ld_lm_new(ctx, &c, 1, &r->m);
    if (!st && lora) {
        ld_adapter_config ac = ld_adapter_default_config();
        ac.method = LD_ADAPTER_LORA, ac.rank = 8, ac.alpha = 16;
        snprintf(ac.targets, sizeof ac.targets, "c_attn,c_proj");
        st = ld_adapter_new(r->m, &ac, 1, &r->a); /* on a quantized base, the frozen matrices stay quantized */
    }
    if (!st) st = ld_tape_new(ctx, &r->tape);
    if (!st && bf16_base && !(st = ld_params_enable_bf16(ld_lm_params(r->m)))) ld_tape_set_bf16(r->tape, ld_lm_params(r->m));
    if (!st) st = ld_adamw_new(lora ? ld_adapter_params(r->a) : ld_lm_params(r->m), NULL, &r->opt);
    ld_rng rng = ld_rng_init(7);
    for (int i = 0; i < B * T; i++) {
        r->ids[i] = (int32_t)ld_rng_below(&rng, (uint64_t)c.vocab_size);
        r->targets[i] = (int32_t)ld_rng_below(&rng, (uint64_t)c.vocab_size);
    }
    return r->st = st;
}

static void teardown(ft_run *r) {
    ld_adamw_free(r->opt);
    ld_tape_free(r->tape);
    ld_adapter_free(r->a);
    ld_lm_free(r->m);
}

/* One optimizer step: zero the trainable gradients, forward, backward, AdamW. */
static void one_step(void *arg) {
    ft_run *r = arg;
    if (r->st) return;
    ld_params_zero_grad(r->a ? ld_adapter_params(r->a) : ld_lm_params(r->m));
    ld_tape_reset(r->tape);
    ld_tensor *loss = NULL;
    r->st = ld_lm_forward(r->m, r->tape, r->ids, r->targets, B, T, NULL, &loss);
    if (!r->st) r->st = ld_tape_backward(r->tape, loss);
    if (!r->st) r->st = ld_adamw_step(r->opt, 1e-4f, 1.0f, NULL);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Full steps and LoRA steps (fp32 base; bf16 base where bf16 products are faster than fp32),
 * interleaved; medians of reps each. */
static void step_times(ld_ctx *ctx, const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    const double speedup = ld_bf16_gemm_speedup();
    const bool with_bf16 = speedup > 1.0, bf16_default = speedup >= LD_TRAIN_BF16_BASE_MIN_SPEEDUP;
    ft_run *full = calloc(1, sizeof *full), *lora = calloc(1, sizeof *lora), *lbf = calloc(1, sizeof *lbf);
    int reps = o->reps < 5 ? 5 : o->reps > 64 ? 64 : o->reps;
    double tf[64], tl[64], tb[64];
    if (!full || !lora || !lbf || setup(full, ctx, NULL, false, false) || setup(lora, ctx, NULL, true, false) ||
        (with_bf16 && setup(lbf, ctx, NULL, true, true)))
        goto out;
    one_step(full), one_step(lora); /* warm-up: arenas settle */
    if (with_bf16) one_step(lbf);
    for (int i = 0; i < reps && !full->st && !lora->st && !lbf->st; i++) {
        double t0 = ld_time_now();
        one_step(full);
        double t1 = ld_time_now();
        one_step(lora);
        double t2 = ld_time_now();
        if (with_bf16) one_step(lbf);
        tf[i] = t1 - t0, tl[i] = t2 - t1, tb[i] = ld_time_now() - t2;
    }
    if (full->st || lora->st || lbf->st) goto out;
    qsort(tf, (size_t)reps, sizeof tf[0], cmp_double);
    qsort(tl, (size_t)reps, sizeof tl[0], cmp_double);
    qsort(tb, (size_t)reps, sizeof tb[0], cmp_double);
    double f = tf[reps / 2], l = tl[reps / 2], b = tb[reps / 2],
           flops = ld_lm_train_flops_per_token(ld_lm_config_of(full->m), T) * B * T;
    ld_bench_report_row(rep, "finetune", "gpt2-124M B=4 T=64 full fine-tuning step", f * 1e3, "ms",
                        flops / f * 1e-9 / lim->fma_f32_gflops, "fp32 FMA peak");
    char name[160];
    snprintf(name, sizeof name, "LoRA r=8 on c_attn,c_proj step, fp32 base (%.2f%% of the parameters train)",
             100.0 * (double)ld_params_numel(ld_adapter_params(lora->a), true) /
                 (double)ld_lm_config_num_params(ld_lm_config_of(lora->m)));
    ld_bench_report_row(rep, "finetune", name, l * 1e3, "ms", -1, NULL);
    if (with_bf16) {
        snprintf(name, sizeof name, "LoRA step, bf16 base (bf16 products %.2fx fp32 here)", speedup);
        ld_bench_report_row(rep, "finetune", name, b * 1e3, "ms", -1, NULL);
    }
    ld_bench_report_row(rep, "finetune", "LoRA step / full step, fp32 base", l / f, "x", -1, NULL);
    if (with_bf16) ld_bench_report_row(rep, "finetune", "LoRA step / full step, bf16 base", b / f, "x", -1, NULL);
    snprintf(name, sizeof name, "LoRA step / full step as finetune runs it here (%s base; target <= 0.55)",
             bf16_default ? "bf16" : "fp32");
    ld_bench_report_row(rep, "finetune", name, (bf16_default ? b : l) / f, "x", -1, NULL);
out:
    if ((full && full->st) || (lora && lora->st) || (lbf && lbf->st))
        fprintf(stderr, "liandan bench finetune: %s\n", ld_ctx_error(ctx));
    if (full) teardown(full);
    if (lora) teardown(lora);
    if (lbf) teardown(lbf);
    free(full);
    free(lora);
    free(lbf);
}

/* Peak RSS (bytes) of a child that sets up `kind` (0 full, 1 LoRA, 2 QLoRA on gguf) and runs
 * two steps, the adapters' base in bf16 where finetune would use it; 0 on failure. */
static double child_peak(int threads, int kind, const char *gguf) {
    const bool bf16_base = ld_bf16_gemm_speedup() >= LD_TRAIN_BF16_BASE_MIN_SPEEDUP;
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
        ld_ctx_params cp = ld_ctx_default_params();
        cp.n_threads = threads;
        ld_ctx *ctx = NULL;
        ft_run *r = calloc(1, sizeof *r);
        if (!r || ld_ctx_new(&cp, &ctx) || setup(r, ctx, kind == 2 ? gguf : NULL, kind > 0, kind > 0 && bf16_base)) _exit(1);
        one_step(r), one_step(r);
        _exit(r->st ? 1 : 0);
    }
    int status = 0;
    struct rusage ru;
    if (wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) return 0;
    return (double)ru.ru_maxrss * 1024.0;
}

static const char *const tok_text[] = {"the quick brown fox", "床前明月光"};
static int tok_at;
static ld_status tok_next(void *u, const char **d, size_t *len) {
    (void)u;
    if (tok_at == 2) return LD_ERR_NOT_FOUND;
    *d = tok_text[tok_at++];
    *len = strlen(*d);
    return LD_OK;
}

/* The 124M model written as a Q4_K GGUF (a small byte-level BPE stands in: the file needs a
 * tokenizer, the benchmark reads only ids). */
static ld_status write_q4k(ld_ctx *ctx, const char *path) {
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_lm_config c = ld_bench_gpt2_124m();
    ld_status st = ld_lm_new(ctx, &c, 1, &m);
    ld_bpe_train_params bp = ld_bpe_train_default_params();
    bp.vocab_size = 280, bp.min_frequency = 1, bp.n_threads = 1;
    ld_text_source src = {tok_next, NULL};
    tok_at = 0;
    if (!st) st = ld_bpe_train(ctx, &bp, &src, &tok);
    ld_lm_gguf_params gp = ld_lm_gguf_default_params();
    gp.type = LD_Q4_K;
    if (!st) st = ld_lm_save_gguf(m, tok, path, &gp);
    ld_lm_free(m);
    ld_tokenizer_free(tok);
    return st;
}

/* Peak RSS of full fine-tuning, LoRA and QLoRA, each in a child of a parent that never held a
 * model: a child starts as a copy of the parent, and the parent's resident pages (a freed
 * 124M model left in its heap) would count in every child's peak. So this runs before the
 * step times, and the Q4_K file is written by a child of its own too. */
static void memory(ld_ctx *ctx, const ld_bench_opts *o, ld_bench_report *rep) {
    char gguf[] = "/tmp/liandan-bench-q4k-XXXXXX";
    int fd = mkstemp(gguf);
    if (fd < 0) return;
    close(fd);
    pid_t pid = fork();
    if (pid == 0) {
        ld_status st = write_q4k(ctx, gguf);
        if (st) fprintf(stderr, "liandan bench finetune: %s\n", ld_ctx_error(ctx));
        _exit(st ? 1 : 0);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
        fprintf(stderr, "liandan bench finetune: could not write the Q4_K base %s\n", gguf);
        unlink(gguf);
        return;
    }
    double full = child_peak(o->threads, 0, gguf), lora = child_peak(o->threads, 1, gguf),
           qlora = child_peak(o->threads, 2, gguf);
    unlink(gguf);
    ld_bench_report_row(rep, "finetune", "peak RSS, full fine-tuning (2 steps)", full / 1e6, "MB", -1, NULL);
    ld_bench_report_row(rep, "finetune", "peak RSS, LoRA on the F32 base", lora / 1e6, "MB", -1, NULL);
    ld_bench_report_row(rep, "finetune", "peak RSS, QLoRA on the Q4_K base", qlora / 1e6, "MB", -1, NULL);
    if (full > 0 && qlora > 0)
        ld_bench_report_row(rep, "finetune", "QLoRA peak / full peak (target <= 0.35)", qlora / full, "x", -1, NULL);
}

void ld_bench_finetune(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&cp, &ctx)) return;
    if (!o->filter || strstr("memory", o->filter)) memory(ctx, o, rep); /* first: see memory() */
    if (!o->filter || strstr("step", o->filter)) step_times(ctx, o, lim, rep);
    ld_ctx_free(ctx);
}

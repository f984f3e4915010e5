/* cli/train_run.c — what `liandan pretrain`, `distill` and `finetune` share: their common
 * options, and running a training job (the library's ld_train_job does the work) with a
 * progress line, validation lines and sample generations. Ctrl-C checkpoints and stops;
 * --resume continues. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"
#include "train_run.h"

void ld_train_run_opts(ld_train_run_args *a, ld_cli_opt t[LD_TRAIN_RUN_OPTS]) {
    const ld_cli_opt rows[LD_TRAIN_RUN_OPTS] = {
        LD_CLI_LIST("set", 0, &a->sets, "KEY=VALUE",
                    "override a config key (repeatable; dotted keys reach into \"model\")"),
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &a->out, .arg = "DIR",
         .def = "the config's out_dir", .help = "run directory (checkpoints, metrics.jsonl, model/)"},
        {.name = "out", .type = LD_CLI_T_STRING, .dest.s = &a->out}, /* the old spelling */
        {.name = "max-steps", .type = LD_CLI_T_INT64, .dest.i64 = &a->max_steps, .min = 1, .max = 1LL << 40,
         .arg = "N", .def = "the config's", .help = "override max_steps"},
        LD_CLI_FLAG("resume", 0, &a->resume, "continue from the newest complete checkpoint in the run directory"),
        LD_CLI_THREADS(&a->threads),
        LD_CLI_FLAG("quiet", 'q', &a->quiet, "no progress line, only validation and the summary"),
        LD_CLI_END,
    };
    memcpy(t, rows, sizeof rows);
}

int ld_train_run_add_override(ld_train_run_args *a, const char *key, const char *value, bool quote) {
    size_t cap = strlen(key) + 2 * strlen(value) + 4, n = (size_t)snprintf(NULL, 0, "%s=", key);
    char *s = malloc(cap);
    if (!s) return 1;
    snprintf(s, cap, "%s=%s", key, quote ? "\"" : "");
    n += quote;
    for (const char *p = value; *p; p++) { /* a JSON string: escape " and \ */
        if (quote && (*p == '"' || *p == '\\')) s[n++] = '\\';
        s[n++] = *p;
    }
    if (quote) s[n++] = '"';
    s[n] = 0;
    if (!ld_cli_list_push(&a->extra, s)) return free(s), 1;
    return 0;
}

/* The overrides in the order they apply: --set values, then what the options make. */
static const char **overrides_of(ld_train_run_args *a, int *n) {
    char num[32];
    snprintf(num, sizeof num, "%lld", (long long)a->max_steps);
    if ((a->out && ld_train_run_add_override(a, "out_dir", a->out, true)) ||
        (a->max_steps && ld_train_run_add_override(a, "max_steps", num, false)))
        return NULL;
    const char **v = malloc((size_t)(a->sets.n + a->extra.n + 1) * sizeof *v);
    if (!v) return NULL;
    for (int i = 0; i < a->sets.n; i++) v[i] = a->sets.v[i];
    for (int i = 0; i < a->extra.n; i++) v[a->sets.n + i] = a->extra.v[i];
    *n = a->sets.n + a->extra.n;
    return v;
}

typedef struct run {
    ld_ctx *ctx;
    ld_train_job *job;
    const ld_train_job_info *info;
    const ld_tokenizer *tok;
    bool tty, quiet, announced, resume;
    double last_print;
} run;

static void fmt_time(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e7) snprintf(buf, cap, "--");
    else if (s >= 3600) snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)(s / 60) % 60);
    else snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)s % 60);
}

static bool collect_token(void *user, int seq, int32_t tok) {
    (void)seq;
    return ld_cli_text_add(user, tok, NULL, 0);
}

/* A few sample generations, printed between progress lines (models without an adapter:
 * inference sessions run the plain model). */
static void sample_text(run *r, int64_t step) {
    ld_lm *m = ld_train_job_model(r->job);
    ld_lm_session *s = NULL;
    int64_t ctx_len = ld_lm_config_of(m)->max_position;
    if (!r->info->n_sample_prompts || ld_lm_adapter(m) || ld_lm_session_new(m, 1, ctx_len, ctx_len, &s)) return;
    ld_generate_params gp = ld_generate_default_params();
    gp.max_tokens = r->info->sample_tokens, gp.eos_id = ld_tokenizer_eos_id(r->tok), gp.seed = (uint64_t)step;
    ld_cli_text *t = calloc(1, sizeof *t);
    for (int i = 0; t && i < r->info->n_sample_prompts; i++) {
        int32_t *ids;
        int64_t n;
        if (ld_cli_encode(r->ctx, r->tok, r->info->sample_prompts[i], &ids, &n)) continue;
        if (n > 0 && n < ctx_len) {
            ld_cli_text_init(t, r->tok, NULL);
            const int32_t *p = ids;
            if (!ld_lm_generate(s, 1, &p, &n, &gp, collect_token, t, NULL))
                fprintf(stderr, "%s  sample: %s%s\n", r->tty ? "\r\033[K" : "", r->info->sample_prompts[i],
                        ld_cli_text_str(t));
        }
        free(ids);
    }
    if (t) ld_cli_text_free(t);
    free(t);
    ld_lm_session_free(s);
}

static void progress(void *user, const ld_train_progress *p) {
    run *r = user;
    char eta[32];
    fmt_time(p->eta_s, eta, sizeof eta);
    const char *cr = r->tty ? "\r\033[K" : "";
    if (!r->announced && r->info->start_step > 0)
        fprintf(stderr, "liandan: resumed at step %lld\n", (long long)r->info->start_step);
    else if (!r->announced && r->resume)
        fprintf(stderr, "liandan: no checkpoint in %s/checkpoints: starting from step 0\n", r->info->out_dir);
    r->announced = true;
    if (p->skipped) fprintf(stderr, "%sliandan: step %lld: %s\n", cr, (long long)p->step, p->note);
    if (p->val_loss == p->val_loss) {
        if (p->n_stages > 1) fprintf(stderr, "%sstage %d/%d | ", cr, p->stage, p->n_stages);
        fprintf(stderr, "%sstep %6lld | val loss %.4f", p->n_stages > 1 ? "" : cr, (long long)p->step, p->val_loss);
        if (p->val_accuracy == p->val_accuracy) fprintf(stderr, " | val accuracy %.2f%%", 100 * p->val_accuracy);
        fprintf(stderr, " | train loss %.4f%s\n", p->loss, p->best ? " | best so far" : "");
    }
    if (p->stopping) fprintf(stderr, "%sliandan: early stopping at step %lld: no better validation for a while\n", cr,
                             (long long)p->step);
    double now = ld_time_now();
    bool last = p->step == p->max_steps || p->stopping;
    if (!r->quiet && (r->tty ? now - r->last_print > 0.2 || last : now - r->last_print > 10 || last)) {
        if (p->n_stages > 1) fprintf(stderr, "%sstage %d/%d | ", cr, p->stage, p->n_stages), cr = "";
        fprintf(stderr, "%sstep %6lld/%lld | loss %.4f | lr %.2e | %6.0f tok/s | %.1f GFLOP/s", cr, (long long)p->step,
                (long long)p->max_steps, p->loss, p->lr, p->tokens_per_s, p->flops_per_s * 1e-9);
        if (p->mfu > 0) fprintf(stderr, " | MFU %4.1f%%", 100 * p->mfu);
        fprintf(stderr, " | %s left%s", eta, r->tty && !last ? "" : "\n");
        r->last_print = now;
    }
    if (!r->info->mlm && r->info->sample_every > 0 && p->step % r->info->sample_every == 0) sample_text(r, p->step);
}

static ld_train_job *volatile g_job;
static void on_sigint(int sig) {
    (void)sig;
    if (g_job) ld_train_job_cancel(g_job);
}

static const char *arch_name(const ld_lm_config *c) {
    return c->arch == LD_ARCH_LLAMA ? "llama" : "gpt2";
}

static void print_info(const ld_train_job_info *in) {
    const ld_lm_config *mc = &in->model;
    if (in->mlm) {
        const ld_encoder_config *ec = &in->encoder;
        fprintf(stderr,
                "liandan: %s encoder, %.2fM parameters, %lld layers x %lld wide, vocab %lld | masked LM on %lld sequences "
                "(%lld tokens) | %lld x %lld tokens/micro-batch (bucketed by length) | %s | %d threads\n",
                ec->arch == LD_ENCODER_ESM ? "esm" : "bert", (double)in->params / 1e6, (long long)ec->n_layers,
                (long long)ec->hidden_size, (long long)ec->vocab_size, (long long)in->train_examples,
                (long long)in->train_tokens, (long long)in->batch_size, (long long)in->seq_len, in->bf16 ? "bf16" : "fp32",
                in->threads);
        return;
    }
    char experts[64] = "";
    if (mc->n_experts)
        snprintf(experts, sizeof experts, " (%lld experts, %lld per token)", (long long)mc->n_experts,
                 (long long)mc->n_experts_used);
    fprintf(stderr,
            "liandan: %s model%s, %.2fM parameters, %lld layers x %lld wide, vocab %lld | %lld tokens/step (%lld x %lld x %lld) "
            "| %s | %d threads\n",
            arch_name(mc), experts, (double)in->params / 1e6, (long long)mc->n_layers, (long long)mc->hidden_size,
            (long long)mc->vocab_size, (long long)(in->batch_size * in->seq_len * in->grad_accum),
            (long long)in->batch_size, (long long)in->seq_len, (long long)in->grad_accum, in->bf16 ? "bf16" : "fp32",
            in->threads);
    if (in->kind == LD_JOB_DISTILL) {
        const ld_lm_config *tc = &in->teacher_model;
        fprintf(stderr, "liandan: distilling from %s (%.2fM parameters, %lld layers x %lld wide) | temperature %g | "
                        "alpha %g (soft share of the loss)\n",
                in->teacher, (double)ld_lm_config_num_params(tc) / 1e6, (long long)tc->n_layers,
                (long long)tc->hidden_size, (double)in->temperature, (double)in->alpha);
    }
    if (in->kind == LD_JOB_FINETUNE) {
        fprintf(stderr, "liandan: fine-tuning %s (%s) | %s | %lld trainable parameters (%.3f%%) | %lld train, %lld val "
                        "examples%s",
                in->base, in->quantized_base ? "quantized base, kept quantized" : "base", in->method,
                (long long)in->trainable, 100.0 * (double)in->trainable / (double)in->params,
                (long long)in->train_examples, (long long)in->val_examples, in->truncated ? "" : "\n");
        if (in->truncated) fprintf(stderr, " (%lld cut to %lld tokens)\n", (long long)in->truncated, (long long)in->seq_len);
        if (in->n_labels) fprintf(stderr, "liandan: classification over %lld labels | %lld steps", (long long)in->n_labels,
                                  (long long)in->max_steps);
        else fprintf(stderr, "liandan: %s | %lld steps", in->task, (long long)in->max_steps);
        if (in->n_stages > 1) fprintf(stderr, " in %d stages (continual)", in->n_stages);
        fprintf(stderr, "\n");
    }
}

static const ld_job_kind kinds[] = {LD_JOB_PRETRAIN, LD_JOB_DISTILL, LD_JOB_FINETUNE};

int ld_train_run(ld_train_run_args *a) {
    run r = {.tty = ld_cli_isatty(), .quiet = a->quiet, .resume = a->resume};
    r.ctx = ld_cli_ctx(a->threads);
    char *text = NULL, threads[32];
    size_t len = 0;
    int rc = 0, n_over = 0;
    snprintf(threads, sizeof threads, "%d", a->threads);
    /* --threads wins over the config's key */
    const char **overrides = a->threads && ld_train_run_add_override(a, "threads", threads, false) ? NULL
                                                                                                   : overrides_of(a, &n_over);
    if (!overrides) {
        rc = (fprintf(stderr, "liandan %s: out of memory\n", a->cmd), 1);
        goto out;
    }
    if (ld_file_read(r.ctx, a->config, 1 << 20, &text, &len)) {
        rc = ld_cli_fail(r.ctx, "reading the training config");
        goto out;
    }
    if (ld_train_job_new(r.ctx, kinds[a->kind], text, len, a->config, overrides, n_over, &r.job)) {
        rc = ld_cli_fail(r.ctx, a->kind == LD_TRAIN_RUN_FINETUNE ? "setting up fine-tuning" : "setting up training");
        goto out;
    }
    r.info = ld_train_job_info_of(r.job);
    r.tok = ld_train_job_tokenizer(r.job);
    if (r.info->rank == 0) print_info(r.info); /* data parallel: rank 0 speaks */
    if (r.info->rank == 0 && r.info->ranks > 1)
        fprintf(stderr, "liandan: data parallel over %d ranks (%lld tokens/step in all)\n", r.info->ranks,
                (long long)(r.info->batch_size * r.info->seq_len * r.info->grad_accum * r.info->ranks));
    if (r.info->rank == 0 && r.info->expert_parallel > 1)
        fprintf(stderr, "liandan: expert parallel: each group of %d ranks splits the experts (%d group%s); rank 0 "
                "holds %lld of the %lld parameter values\n", r.info->expert_parallel,
                r.info->ranks / r.info->expert_parallel, r.info->ranks / r.info->expert_parallel == 1 ? "" : "s",
                (long long)r.info->held, (long long)r.info->params);
    g_job = r.job;
    signal(SIGINT, on_sigint);
    ld_status st = ld_train_job_run(r.job, a->resume, progress, &r);
    signal(SIGINT, SIG_DFL);
    g_job = NULL;
    if (st == LD_ERR_INTERRUPTED) {
        if (r.info->rank == 0) fprintf(stderr, "\nliandan: stopped with a checkpoint; continue with --resume\n");
        rc = 130;
        goto out;
    }
    if (st) {
        rc = ld_cli_fail(r.ctx, "training");
        goto out;
    }
    const char *outdir = ld_train_job_output(r.job);
    if (r.info->rank != 0)
        ;
    else if (r.info->mlm)
        fprintf(stderr, "liandan: done. The encoder is in %s. Next:\n"
                        "  liandan fill-mask %s \"...<mask>...\"   the likeliest tokens at masks\n"
                        "  liandan eval mlm %s --data HELD_OUT   masked-token accuracy vs unigram\n",
                outdir, outdir, outdir);
    else if (r.info->kind == LD_JOB_FINETUNE && strstr(outdir, "/adapter"))
        fprintf(stderr, "liandan: done. The adapter is in %s. Next:\n"
                        "  liandan eval tasks %s --adapter %s --tasks ...   evaluate it\n"
                        "  liandan export hf %s --adapter %s -o DIR          the base with a LoRA merged in\n",
                outdir, r.info->base, outdir, r.info->base, outdir);
    else
        fprintf(stderr, "liandan: done. The model is in %s. Next:\n"
                        "  liandan generate %s \"...\"      continue a prompt\n"
                        "  liandan plot %s                      loss curves as SVG\n",
                outdir, outdir, r.info->out_dir);
out:
    ld_train_job_free(r.job);
    ld_free(r.ctx, text);
    ld_ctx_free(r.ctx);
    free(overrides);
    for (int i = 0; i < a->extra.n; i++) free((char *)a->extra.v[i]);
    ld_cli_list_free(&a->extra);
    ld_cli_list_free(&a->sets);
    return rc;
}

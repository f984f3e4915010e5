/* cli/cmd_pretrain.c — `liandan pretrain CONFIG.json`: builds (or loads) a causal LM, streams
 * batches from token shards, trains with checkpoints, validation and sample generations, and
 * exports the final model directory. Ctrl-C checkpoints and stops; --resume continues. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "cli_model.h"
#include "train/train_config.h"

#define MAX_OVERRIDES 64

static volatile int g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: liandan pretrain CONFIG.json [options]\n\n"
            "Trains a causal LM as the config says (docs/training.md lists every key).\n\n"
            "options:\n"
            "  --set KEY=VALUE   override a config key (repeatable; dotted keys reach into \"model\")\n"
            "  --out DIR         run directory (checkpoints, metrics.jsonl, model/)\n"
            "  --max-steps N     override max_steps\n"
            "  --resume          continue from the newest complete checkpoint in the run directory\n"
            "  --threads N       threads (default: all cores)\n"
            "  --quiet           no progress line, only validation and the summary\n");
}

/* ---- batches from the data layer ---- */
static ld_status src_next(void *u, int32_t *tokens, int64_t B, int64_t T) {
    return ld_batch_sampler_next(u, tokens, B, T);
}
static ld_status src_save(void *u, char **out) {
    return ld_batch_sampler_save(u, out);
}
static ld_status src_restore(void *u, const char *json) {
    return ld_batch_sampler_restore(u, json);
}

typedef struct run {
    ld_ctx *ctx;
    ld_train_config cfg;
    ld_lm *m;
    ld_tokenizer *tok;
    bool tty, quiet;
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

/* A few sample generations, printed between progress lines. */
static void sample_text(run *r, int64_t step) {
    ld_lm_session *s = NULL;
    int64_t ctx_len = ld_lm_config_of(r->m)->max_position;
    if (!r->cfg.n_sample_prompts || ld_lm_session_new(r->m, 1, ctx_len, ctx_len, &s)) return;
    ld_generate_params gp = ld_generate_default_params();
    gp.max_tokens = r->cfg.sample_tokens, gp.eos_id = ld_tokenizer_eos_id(r->tok), gp.seed = (uint64_t)step;
    ld_cli_text *t = malloc(sizeof *t);
    for (int i = 0; t && i < r->cfg.n_sample_prompts; i++) {
        int32_t *ids;
        int64_t n;
        if (ld_cli_encode(r->ctx, r->tok, r->cfg.sample_prompts[i], &ids, &n)) continue;
        if (n > 0 && n < ctx_len) {
            ld_cli_text_init(t, r->tok, NULL);
            const int32_t *p = ids;
            if (!ld_lm_generate(s, 1, &p, &n, &gp, collect_token, t, NULL))
                fprintf(stderr, "%s  sample: %s%s\n", r->tty ? "\r\033[K" : "", r->cfg.sample_prompts[i], t->buf);
        }
        free(ids);
    }
    free(t);
    ld_lm_session_free(s);
}

static void progress(void *user, const ld_train_progress *p) {
    run *r = user;
    char eta[32];
    fmt_time(p->eta_s, eta, sizeof eta);
    if (p->skipped) fprintf(stderr, "%sliandan: step %lld: %s\n", r->tty ? "\r\033[K" : "", (long long)p->step, p->note);
    if (p->val_loss == p->val_loss)
        fprintf(stderr, "%sstep %6lld | val loss %.4f | train loss %.4f\n", r->tty ? "\r\033[K" : "", (long long)p->step,
                p->val_loss, p->loss);
    double now = ld_time_now();
    bool last = p->step == p->max_steps;
    if (!r->quiet && (r->tty ? now - r->last_print > 0.2 || last : now - r->last_print > 10 || last)) {
        fprintf(stderr, "%sstep %6lld/%lld | loss %.4f | lr %.2e | %6.0f tok/s | MFU %4.1f%% | %s left%s",
                r->tty ? "\r\033[K" : "", (long long)p->step, (long long)p->max_steps, p->loss, p->lr,
                p->tokens_per_s, 100 * p->mfu, eta, r->tty && !last ? "" : "\n");
        r->last_print = now;
    }
    if (r->cfg.sample_every > 0 && p->step % r->cfg.sample_every == 0) sample_text(r, p->step);
}

static int cmd_pretrain(int argc, char **argv) {
    const char *config = NULL, *overrides[MAX_OVERRIDES], *out = NULL;
    char maxsteps[64], outset[1100];
    int n_over = 0;
    long threads = 0, max_steps = 0;
    bool resume = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
        if (!strcmp(argv[i], "--set") && i + 1 < argc && n_over < MAX_OVERRIDES - 2) overrides[n_over++] = argv[++i];
        else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--resume")) resume = true;
        else if (!strcmp(argv[i], "--quiet")) quiet = true;
        else if (!strcmp(argv[i], "--threads")) {
            if (!ld_cli_parse_int("--threads", i + 1 < argc ? argv[++i] : NULL, 1, 4096, &threads)) return 2;
        } else if (!strcmp(argv[i], "--max-steps")) {
            if (!ld_cli_parse_int("--max-steps", i + 1 < argc ? argv[++i] : NULL, 1, 1L << 40, &max_steps)) return 2;
        } else if (argv[i][0] != '-' && !config) config = argv[i];
        else return fprintf(stderr, "liandan pretrain: unexpected argument '%s' (see --help)\n", argv[i]), 2;
    }
    if (!config) return usage(stderr), 2;
    if (max_steps) snprintf(maxsteps, sizeof maxsteps, "max_steps=%ld", max_steps), overrides[n_over++] = maxsteps;
    if (out) snprintf(outset, sizeof outset, "out_dir=\"%s\"", out), overrides[n_over++] = outset;

    run r = {.tty = ld_cli_isatty(), .quiet = quiet};
    r.ctx = ld_cli_ctx((int)threads);
    char *text = NULL;
    size_t len = 0;
    int rc = 0;
    ld_batch_sampler *train = NULL, *val = NULL;
    ld_trainer *t = NULL;
    if (ld_file_read(r.ctx, config, 1 << 20, &text, &len) ||
        ld_train_config_parse(r.ctx, text, len, config, overrides, n_over, &r.cfg)) {
        rc = ld_cli_fail(r.ctx, "reading the training config");
        goto out;
    }
    if (r.cfg.threads && !threads) ld_ctx_set_threads(r.ctx, r.cfg.threads);
    if (!r.cfg.tokenizer[0] || !r.cfg.train_data[0]) {
        rc = (fprintf(stderr, "liandan pretrain: %s: 'tokenizer' and 'train_data' are required\n", config), 1);
        goto out;
    }
    if (ld_tokenizer_load(r.ctx, r.cfg.tokenizer, &r.tok)) {
        rc = ld_cli_fail(r.ctx, "loading the tokenizer");
        goto out;
    }
    if (r.cfg.init_from[0] ? ld_lm_load(r.ctx, r.cfg.init_from, &r.m)
                           : (!r.cfg.has_model ? (ld_error(r.ctx, LD_ERR_INVALID_ARG, "%s: give 'model' or 'init_from'",
                                                           config), 1)
                                               : ld_lm_new(r.ctx, &r.cfg.model, r.cfg.train.seed, &r.m))) {
        rc = ld_cli_fail(r.ctx, "building the model");
        goto out;
    }
    const ld_lm_config *mc = ld_lm_config_of(r.m);
    if (ld_tokenizer_vocab_size(r.tok) > mc->vocab_size) {
        rc = (fprintf(stderr, "liandan pretrain: the tokenizer has %lld tokens but the model's vocab_size is %lld\n",
                     (long long)ld_tokenizer_vocab_size(r.tok), (long long)mc->vocab_size), 1);
        goto out;
    }
    ld_sampler_params sp = ld_sampler_default_params();
    sp.seed = r.cfg.train.seed;
    ld_sampler_params vp = sp;
    vp.mode = LD_SAMPLE_SEQUENTIAL; /* validation reads the same windows every time */
    if (ld_batch_sampler_open(r.ctx, r.cfg.train_data, r.tok, &sp, &train) ||
        (r.cfg.val_data[0] && ld_batch_sampler_open(r.ctx, r.cfg.val_data, r.tok, &vp, &val))) {
        rc = ld_cli_fail(r.ctx, "opening the training data");
        goto out;
    }
    ld_batch_source tsrc = {src_next, src_save, src_restore, train}, vsrc = {src_next, src_save, src_restore, val};
    r.cfg.train.out_dir = r.cfg.out_dir;
    r.cfg.train.bf16 = !strcmp(r.cfg.precision, "bf16");
    double peak = ld_bench_quick_fma_peak(ld_ctx_threads(r.ctx)) * 1e9;
    if (ld_trainer_new(r.m, &r.cfg.train, &tsrc, val ? &vsrc : NULL, peak, &t)) {
        rc = ld_cli_fail(r.ctx, "setting up training");
        goto out;
    }
    bool found = false;
    if (resume && ld_trainer_resume(t, &found)) {
        rc = ld_cli_fail(r.ctx, "resuming");
        goto out;
    }
    fprintf(stderr,
            "liandan: %s model, %.2fM parameters, %lld layers x %lld wide, vocab %lld | %lld tokens/step (%lld x %lld x %lld) "
            "| %s | %d threads\n",
            mc->arch == LD_ARCH_LLAMA ? "llama" : "gpt2", (double)ld_lm_config_num_params(mc) / 1e6,
            (long long)mc->n_layers, (long long)mc->hidden_size, (long long)mc->vocab_size,
            (long long)(r.cfg.train.batch_size * r.cfg.train.seq_len * r.cfg.train.grad_accum),
            (long long)r.cfg.train.batch_size, (long long)r.cfg.train.seq_len, (long long)r.cfg.train.grad_accum,
            r.cfg.precision, ld_ctx_threads(r.ctx));
    if (found) fprintf(stderr, "liandan: resumed at step %lld\n", (long long)ld_trainer_step(t));
    signal(SIGINT, on_sigint);
    ld_status st = ld_trainer_run(t, progress, &r, &g_stop);
    signal(SIGINT, SIG_DFL);
    if (st == LD_ERR_INTERRUPTED) {
        fprintf(stderr, "\nliandan: stopped at step %lld with a checkpoint; continue with --resume\n",
                (long long)ld_trainer_step(t));
        rc = 130;
        goto out;
    }
    if (st) {
        rc = ld_cli_fail(r.ctx, "training");
        goto out;
    }
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/model", r.cfg.out_dir);
    if (ld_lm_save(r.m, dir)) {
        rc = ld_cli_fail(r.ctx, "saving the model");
        goto out;
    }
    snprintf(dir, sizeof dir, "%s/model/tokenizer.json", r.cfg.out_dir);
    if (ld_tokenizer_save(r.tok, dir)) {
        rc = ld_cli_fail(r.ctx, "saving the tokenizer");
        goto out;
    }
    fprintf(stderr, "liandan: done. The model is in %s/model. Next:\n"
                    "  liandan generate %s/model \"...\"      continue a prompt\n"
                    "  liandan plot %s                      loss curves as SVG\n",
            r.cfg.out_dir, r.cfg.out_dir, r.cfg.out_dir);
out:
    ld_trainer_free(t);
    ld_batch_sampler_free(train);
    ld_batch_sampler_free(val);
    ld_lm_free(r.m);
    ld_tokenizer_free(r.tok);
    ld_free(r.ctx, text);
    ld_ctx_free(r.ctx);
    return rc;
}

const ld_cli_command ld_cmd_pretrain = {"pretrain", "train a causal LM from token shards (config file)", cmd_pretrain};

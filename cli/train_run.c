/* cli/train_run.c — the training driver of `liandan pretrain` and `liandan distill`: builds
 * (or loads) the causal LM the config describes, streams batches from token shards, trains
 * with checkpoints, validation and sample generations — against a frozen teacher's soft
 * targets when distilling — and exports the final model directory. Ctrl-C checkpoints and
 * stops; --resume continues. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "cli_model.h"
#include "train/train_config.h"
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
    ld_encoder *enc;          /* objective "mlm" */
    ld_mlm_source *mlm_train, *mlm_val;
    ld_tokenizer *tok;
    ld_teacher *teacher;
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
    ld_cli_text *t = calloc(1, sizeof *t);
    for (int i = 0; t && i < r->cfg.n_sample_prompts; i++) {
        int32_t *ids;
        int64_t n;
        if (ld_cli_encode(r->ctx, r->tok, r->cfg.sample_prompts[i], &ids, &n)) continue;
        if (n > 0 && n < ctx_len) {
            ld_cli_text_init(t, r->tok, NULL);
            const int32_t *p = ids;
            if (!ld_lm_generate(s, 1, &p, &n, &gp, collect_token, t, NULL))
                fprintf(stderr, "%s  sample: %s%s\n", r->tty ? "\r\033[K" : "", r->cfg.sample_prompts[i],
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
    if (r->m && r->cfg.sample_every > 0 && p->step % r->cfg.sample_every == 0) sample_text(r, p->step);
}

/* The teacher named by the config: loaded frozen, and checked to share the student's
 * tokenizer (the same vocabulary, merges and specials: the logits must mean the same tokens).
 * A config without a tokenizer takes the teacher's. 0 on success, else the exit code. */
static int load_teacher(run *r, const ld_train_run_args *a) {
    ld_lm *tm = NULL;
    ld_tokenizer *ttok = NULL;
    if (ld_cli_load_model_ex(r->ctx, r->cfg.teacher, true, &tm, &ttok)) {
        fprintf(stderr, "liandan %s: could not load the teacher '%s'\n", a->cmd, r->cfg.teacher);
        return 1;
    }
    int rc = 0;
    if (!r->tok) {
        r->tok = ttok, ttok = NULL;
    } else if (ld_tokenizer_hash(r->tok) != ld_tokenizer_hash(ttok)) {
        fprintf(stderr,
                "liandan %s: the teacher '%s' uses another tokenizer than the student's '%s' (%lld vs %lld tokens): "
                "distillation needs teacher and student to share one tokenizer\n",
                a->cmd, r->cfg.teacher, r->cfg.tokenizer, (long long)ld_tokenizer_vocab_size(ttok),
                (long long)ld_tokenizer_vocab_size(r->tok));
        rc = 1;
    }
    ld_tokenizer_free(ttok);
    if (!rc && ld_teacher_new(tm, &r->teacher)) rc = ld_cli_fail(r->ctx, "setting up the teacher");
    else tm = NULL; /* owned by the teacher */
    ld_lm_free(tm);
    return rc;
}

/* Masked-LM training of an encoder: the tokenizer ("esm", "amino", a vocab.txt or a
 * tokenizer.json), the encoder from "model" (BertConfig / EsmConfig keys) or "init_from", the
 * masked-LM batch sources over "train_data" / "val_data" (corpus files; FASTA read as
 * proteins), the trainer. 0 on success, else the exit code. */
static bool is_fasta(const char *p) {
    size_t l = strlen(p);
    return (l > 3 && !strcmp(p + l - 3, ".fa")) || (l > 6 && !strcmp(p + l - 6, ".fasta")) ||
           (l > 4 && !strcmp(p + l - 4, ".faa"));
}

static int setup_mlm(run *r, const ld_train_run_args *a, double peak, ld_trainer **t) {
    ld_train_config *c = &r->cfg;
    ld_status st = LD_OK;
    size_t tl = strlen(c->tokenizer);
    if (!strcmp(c->tokenizer, "esm")) st = ld_tokenizer_new_esm(r->ctx, &r->tok);
    else if (!strcmp(c->tokenizer, "amino")) st = ld_tokenizer_new_amino(r->ctx, &r->tok);
    else if (tl > 4 && !strcmp(c->tokenizer + tl - 4, ".txt")) st = ld_tokenizer_load_vocab_txt(r->ctx, c->tokenizer, &r->tok);
    else if (tl) st = ld_tokenizer_load(r->ctx, c->tokenizer, &r->tok);
    if (st) return ld_cli_fail(r->ctx, "loading the tokenizer");
    if (!r->tok || !c->train_data[0])
        return fprintf(stderr, "liandan %s: %s: 'tokenizer' and 'train_data' are required\n", a->cmd, a->config), 1;
    if (c->init_from[0] ? ld_encoder_load(r->ctx, c->init_from, &r->enc)
                        : !c->has_model ? ld_error(r->ctx, LD_ERR_INVALID_ARG, "%s: give 'model' or 'init_from'", a->config)
                                        : ld_encoder_new(r->ctx, &c->encoder, c->train.seed, &r->enc))
        return ld_cli_fail(r->ctx, "building the model");
    const ld_encoder_config *ec = ld_encoder_config_of(r->enc);
    if (ld_tokenizer_vocab_size(r->tok) > ec->vocab_size)
        return fprintf(stderr, "liandan %s: the tokenizer has %lld tokens but the model's vocab_size is %lld\n", a->cmd,
                       (long long)ld_tokenizer_vocab_size(r->tok), (long long)ec->vocab_size), 1;
    ld_mlm_params mp = c->mlm_params;
    mp.seed = c->train.seed;
    mp.corpus.protein = is_fasta(c->train_data);
    ld_mlm_params vp = mp;
    vp.eval = true, vp.corpus.protein = c->val_data[0] && is_fasta(c->val_data);
    const char *tp = c->train_data, *vpath = c->val_data;
    if (ld_mlm_source_open(r->ctx, &tp, 1, r->tok, c->train.seq_len, &mp, &r->mlm_train) ||
        (vpath[0] && ld_mlm_source_open(r->ctx, &vpath, 1, r->tok, c->train.seq_len, &vp, &r->mlm_val)))
        return ld_cli_fail(r->ctx, "opening the training data");
    if (ld_trainer_new_mlm(r->enc, &c->train, r->mlm_train, r->mlm_val, peak, t))
        return ld_cli_fail(r->ctx, "setting up training");
    fprintf(stderr,
            "liandan: %s encoder, %.2fM parameters, %lld layers x %lld wide, vocab %lld | masked LM on %lld sequences "
            "(%lld tokens) | %lld x %lld tokens/micro-batch (bucketed by length) | %s | %d threads\n",
            ec->arch == LD_ENCODER_ESM ? "esm" : "bert", (double)ld_encoder_config_num_params(ec) / 1e6,
            (long long)ec->n_layers, (long long)ec->hidden_size, (long long)ec->vocab_size,
            (long long)ld_mlm_source_docs(r->mlm_train), (long long)ld_mlm_source_tokens(r->mlm_train),
            (long long)c->train.batch_size, (long long)c->train.seq_len, c->precision, ld_ctx_threads(r->ctx));
    return 0;
}

static volatile int g_stop;
static void on_sigint(int sig) {
    (void)sig;
    g_stop = 1;
}

int ld_train_run(ld_train_run_args *a) {
    run r = {.tty = ld_cli_isatty(), .quiet = a->quiet};
    r.ctx = ld_cli_ctx(a->threads);
    char *text = NULL;
    size_t len = 0;
    int rc = 0, n_over = 0;
    ld_batch_sampler *train = NULL, *val = NULL;
    ld_trainer *t = NULL;
    const char **overrides = overrides_of(a, &n_over);
    if (!overrides) {
        rc = (fprintf(stderr, "liandan %s: out of memory\n", a->cmd), 1);
        goto out;
    }
    if (ld_file_read(r.ctx, a->config, 1 << 20, &text, &len) ||
        ld_train_config_parse(r.ctx, text, len, a->config, overrides, n_over, &r.cfg)) {
        rc = ld_cli_fail(r.ctx, "reading the training config");
        goto out;
    }
    if (r.cfg.threads && !a->threads) ld_ctx_set_threads(r.ctx, r.cfg.threads);
    r.cfg.train.out_dir = r.cfg.out_dir;
    r.cfg.train.bf16 = !strcmp(r.cfg.precision, "bf16");
    if (r.cfg.mlm) {
        if (a->distill || r.cfg.teacher[0]) {
            rc = (fprintf(stderr, "liandan %s: distillation of masked LMs is not supported\n", a->cmd), 2);
            goto out;
        }
        if ((rc = setup_mlm(&r, a, ld_bench_quick_fma_peak(ld_ctx_threads(r.ctx)) * 1e9, &t))) goto out;
        goto train;
    }
    if (a->distill && !r.cfg.teacher[0]) {
        rc = (fprintf(stderr, "liandan %s: no teacher: give --teacher DIR (or 'teacher' in %s)\n", a->cmd, a->config), 2);
        goto out;
    }
    if (!a->distill && r.cfg.teacher[0]) {
        rc = (fprintf(stderr, "liandan %s: %s names a teacher: distil with `liandan distill`\n", a->cmd, a->config), 2);
        goto out;
    }
    if (r.cfg.tokenizer[0] && ld_tokenizer_load(r.ctx, r.cfg.tokenizer, &r.tok)) {
        rc = ld_cli_fail(r.ctx, "loading the tokenizer");
        goto out;
    }
    if (a->distill && (rc = load_teacher(&r, a))) goto out;
    if (!r.tok || !r.cfg.train_data[0]) {
        rc = (fprintf(stderr, "liandan %s: %s: 'tokenizer' and 'train_data' are required\n", a->cmd, a->config), 1);
        goto out;
    }
    /* special ids the model config leaves out are the tokenizer's (the data was encoded with it) */
    int32_t tok_bos = ld_tokenizer_bos_id(r.tok), tok_eos = ld_tokenizer_eos_id(r.tok);
    if (!r.cfg.model_eos && tok_eos >= 0) r.cfg.model.eos_token_id = tok_eos;
    if (!r.cfg.model_bos && (tok_bos >= 0 || tok_eos >= 0)) r.cfg.model.bos_token_id = tok_bos >= 0 ? tok_bos : tok_eos;
    if (r.cfg.init_from[0] ? ld_lm_load(r.ctx, r.cfg.init_from, &r.m)
                           : (!r.cfg.has_model ? (ld_error(r.ctx, LD_ERR_INVALID_ARG, "%s: give 'model' or 'init_from'",
                                                           a->config), 1)
                                               : ld_lm_new(r.ctx, &r.cfg.model, r.cfg.train.seed, &r.m))) {
        rc = ld_cli_fail(r.ctx, "building the model");
        goto out;
    }
    const ld_lm_config *mc = ld_lm_config_of(r.m);
    if (ld_tokenizer_vocab_size(r.tok) > mc->vocab_size) {
        rc = (fprintf(stderr, "liandan %s: the tokenizer has %lld tokens but the model's vocab_size is %lld\n", a->cmd,
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
    if (ld_trainer_new(r.m, &r.cfg.train, &tsrc, val ? &vsrc : NULL, peak, &t) ||
        (r.teacher && ld_trainer_set_teacher(t, r.teacher, r.cfg.temperature, r.cfg.alpha))) {
        rc = ld_cli_fail(r.ctx, "setting up training");
        goto out;
    }
train:;
    bool found = false;
    if (a->resume && ld_trainer_resume(t, &found)) {
        rc = ld_cli_fail(r.ctx, "resuming");
        goto out;
    }
    if (r.m) {
        const ld_lm_config *pc = ld_lm_config_of(r.m);
        fprintf(stderr,
            "liandan: %s model, %.2fM parameters, %lld layers x %lld wide, vocab %lld | %lld tokens/step (%lld x %lld x %lld) "
            "| %s | %d threads\n",
            pc->arch == LD_ARCH_LLAMA ? "llama" : "gpt2", (double)ld_lm_config_num_params(pc) / 1e6,
            (long long)pc->n_layers, (long long)pc->hidden_size, (long long)pc->vocab_size,
            (long long)(r.cfg.train.batch_size * r.cfg.train.seq_len * r.cfg.train.grad_accum),
            (long long)r.cfg.train.batch_size, (long long)r.cfg.train.seq_len, (long long)r.cfg.train.grad_accum,
            r.cfg.precision, ld_ctx_threads(r.ctx));
    }
    if (r.teacher) {
        const ld_lm_config *tc = ld_lm_config_of(ld_teacher_model(r.teacher));
        fprintf(stderr, "liandan: distilling from %s (%.2fM parameters, %lld layers x %lld wide) | temperature %g | "
                        "alpha %g (soft share of the loss)\n",
                r.cfg.teacher, (double)ld_lm_config_num_params(tc) / 1e6, (long long)tc->n_layers,
                (long long)tc->hidden_size, (double)r.cfg.temperature, (double)r.cfg.alpha);
    }
    if (found) fprintf(stderr, "liandan: resumed at step %lld\n", (long long)ld_trainer_step(t));
    else if (a->resume) fprintf(stderr, "liandan: no checkpoint in %s/checkpoints: starting from step 0\n", r.cfg.out_dir);
    g_stop = 0;
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
    if (r.enc) {
        if (ld_encoder_save(r.enc, dir) || ld_encoder_save_tokenizer(r.enc, r.tok, dir)) {
            rc = ld_cli_fail(r.ctx, "saving the model");
            goto out;
        }
        fprintf(stderr, "liandan: done. The encoder is in %s/model. Next:\n"
                        "  liandan fill-mask %s/model \"...<mask>...\"   the likeliest tokens at masks\n"
                        "  liandan eval mlm %s/model --data HELD_OUT   masked-token accuracy vs unigram\n",
                r.cfg.out_dir, r.cfg.out_dir, r.cfg.out_dir);
        goto out;
    }
    if ((rc = ld_cli_save_model_dir(r.ctx, r.m, r.tok, dir))) goto out;
    fprintf(stderr, "liandan: done. The model is in %s/model. Next:\n"
                    "  liandan generate %s/model \"...\"      continue a prompt\n"
                    "  liandan plot %s                      loss curves as SVG\n",
            r.cfg.out_dir, r.cfg.out_dir, r.cfg.out_dir);
out:
    ld_trainer_free(t);
    ld_teacher_free(r.teacher);
    ld_batch_sampler_free(train);
    ld_batch_sampler_free(val);
    ld_lm_free(r.m);
    ld_encoder_free(r.enc);
    ld_mlm_source_free(r.mlm_train);
    ld_mlm_source_free(r.mlm_val);
    ld_tokenizer_free(r.tok);
    ld_free(r.ctx, text);
    ld_ctx_free(r.ctx);
    free(overrides);
    for (int i = 0; i < a->extra.n; i++) free((char *)a->extra.v[i]);
    ld_cli_list_free(&a->extra);
    ld_cli_list_free(&a->sets);
    return rc;
}

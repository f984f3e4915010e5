/* train/trainer.c — the training loop (pretraining, or distillation when a teacher is set):
 * gradient accumulation, the one place gradients would be all-reduced across data-parallel
 * ranks, global-norm clipping, the NaN / loss-spike guard, AdamW, learning-rate schedule,
 * validation, metrics.jsonl and checkpoints. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/trainer_internal.h"

ld_train_params ld_train_default_params(void) {
    ld_train_params p = {.batch_size = 8, .seq_len = 128, .grad_accum = 1, .max_steps = 1000,
                         .schedule = {.kind = LD_LR_COSINE, .lr = 1e-3f, .min_lr = 1e-4f, .warmup_steps = 100,
                                      .max_steps = 1000, .decay_steps = 0},
                         .optim = ld_adamw_default_config(), .eval_every = 100, .eval_batches = 8,
                         .checkpoint_every = 200, .keep_last = 2, .log_every = 1, .spike_factor = 0.0f, .seed = 1,
                         .out_dir = "run"};
    return p;
}

static ld_status make_dir(ld_ctx *ctx, const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return ld_error(ctx, LD_ERR_IO, "cannot create directory %s: %s", path, strerror(errno));
    return LD_OK;
}

static ld_status check_params(ld_ctx *ctx, const ld_train_params *p, int64_t max_position) {
    if (p->batch_size <= 0 || p->seq_len <= 0 || p->seq_len > max_position || p->grad_accum <= 0 || p->max_steps <= 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "training: need batch_size > 0, 0 < seq_len <= max_position (%lld), grad_accum > 0, "
                        "max_steps > 0 (got %lld, %lld, %lld, %lld)",
                        (long long)max_position, (long long)p->batch_size, (long long)p->seq_len,
                        (long long)p->grad_accum, (long long)p->max_steps);
    if (!(p->schedule.lr > 0) || p->schedule.min_lr < 0 || p->schedule.warmup_steps < 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "training: learning rate must be positive, min_lr and warmup >= 0");
    if (!p->out_dir || !*p->out_dir) return ld_error(ctx, LD_ERR_INVALID_ARG, "training: no output directory");
    return LD_OK;
}

/* What every trainer has: tape, optimizer over params, batch buffers, run directory. */
static ld_status trainer_init(ld_trainer *t, const ld_train_params *p) {
    ld_ctx *ctx = t->ctx;
    t->p = *p;
    snprintf(t->out_dir, sizeof t->out_dir, "%s", p->out_dir);
    t->p.out_dir = t->out_dir;
    t->running_loss = NAN;
    ld_status st;
    size_t n_tok = (size_t)(p->batch_size * (p->seq_len + 1));
    if ((st = ld_tape_new(ctx, &t->tape)) || (st = ld_adamw_new(t->params, &p->optim, &t->opt)) ||
        !(t->tokens = ld_alloc(ctx, n_tok * sizeof(int32_t))) || !(t->inputs = ld_alloc(ctx, n_tok * sizeof(int32_t))) ||
        !(t->targets = ld_alloc(ctx, n_tok * sizeof(int32_t))) ||
        !(t->lengths = ld_alloc(ctx, (size_t)p->batch_size * sizeof(int32_t))))
        return st ? st : ld_ctx_status(ctx);
    if (p->bf16) {
        if ((st = ld_params_enable_bf16(t->params))) return st;
        ld_tape_set_bf16(t->tape, t->params);
    }
    char path[LD_TRAIN_PATH_MAX];
    snprintf(path, sizeof path, "%s/checkpoints", t->out_dir);
    if ((st = make_dir(ctx, t->out_dir)) || (st = make_dir(ctx, path))) return st;
    return LD_OK;
}

ld_status ld_trainer_new(ld_lm *m, const ld_train_params *p, const ld_batch_source *train,
                         const ld_batch_source *val, double peak_flops, ld_trainer **out) {
    if (!m || !p || !train || !out) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    *out = NULL;
    ld_status st = check_params(ctx, p, m->cfg.max_position);
    if (st) return st;
    ld_trainer *t = ld_calloc(ctx, 1, sizeof *t);
    if (!t) return ld_ctx_status(ctx);
    t->ctx = ctx, t->m = m, t->params = m->params, t->train = *train, t->peak_flops = peak_flops;
    if (val) {
        t->val = *val, t->has_val = true;
        if (val->save && val->save(val->user, &t->val_start)) t->val_start = NULL;
    }
    if ((st = trainer_init(t, p))) {
        ld_trainer_free(t);
        return st;
    }
    *out = t;
    return LD_OK;
}

static ld_status mlm_save(void *user, char **out) {
    return ld_mlm_source_save(user, out);
}
static ld_status mlm_restore(void *user, const char *json) {
    return ld_mlm_source_restore(user, json);
}

ld_status ld_trainer_new_mlm(ld_encoder *e, const ld_train_params *p, ld_mlm_source *train, ld_mlm_source *val,
                             double peak_flops, ld_trainer **out) {
    if (!e || !p || !train || !out) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = ld_encoder_ctx(e);
    *out = NULL;
    ld_status st = check_params(ctx, p, ld_encoder_config_of(e)->max_position);
    if (!st && (ld_mlm_source_row_length(train) > p->seq_len || (val && ld_mlm_source_row_length(val) > p->seq_len)))
        st = ld_error(ctx, LD_ERR_INVALID_ARG, "masked-LM training: the batch sources' rows are longer than seq_len %lld",
                      (long long)p->seq_len);
    if (st) return st;
    ld_trainer *t = ld_calloc(ctx, 1, sizeof *t);
    if (!t) return ld_ctx_status(ctx);
    t->ctx = ctx, t->enc = e, t->params = ld_encoder_params(e), t->peak_flops = peak_flops;
    t->mlm_train = train, t->mlm_val = val;
    t->train = (ld_batch_source){.save = mlm_save, .restore = mlm_restore, .user = train};
    if (val) {
        t->val = (ld_batch_source){.save = mlm_save, .restore = mlm_restore, .user = val}, t->has_val = true;
        if (ld_mlm_source_save(val, &t->val_start)) t->val_start = NULL;
    }
    if ((st = trainer_init(t, p))) {
        ld_trainer_free(t);
        return st;
    }
    *out = t;
    return LD_OK;
}

void ld_trainer_free(ld_trainer *t) {
    if (!t) return;
    ld_tape_free(t->tape);
    ld_adamw_free(t->opt);
    ld_free(t->ctx, t->tokens);
    ld_free(t->ctx, t->inputs);
    ld_free(t->ctx, t->targets);
    ld_free(t->ctx, t->lengths);
    if (t->metrics) fclose(t->metrics);
    free(t->val_start);
    ld_free(t->ctx, t);
}

int64_t ld_trainer_step(const ld_trainer *t) {
    return t ? t->step : 0;
}

/* Splits rows of T+1 tokens into inputs (first T) and targets (last T); masked LM: the next
 * masked batch (rows of T_used <= T tokens). */
static ld_status load_batch(ld_trainer *t, const ld_batch_source *src) {
    int64_t B = t->p.batch_size, T = t->p.seq_len;
    if (t->enc) {
        ld_mlm_source *m = src == &t->val ? t->mlm_val : t->mlm_train;
        ld_status st = ld_mlm_source_next(m, B, t->inputs, t->targets, t->lengths, &t->T_used);
        return st ? ld_error_wrap(t->ctx, st, "reading a training batch: ") : LD_OK;
    }
    ld_status st = src->next(src->user, t->tokens, B, T);
    if (st) return ld_error_wrap(t->ctx, st, "reading a training batch: ");
    for (int64_t b = 0; b < B; b++) {
        memcpy(t->inputs + b * T, t->tokens + b * (T + 1), (size_t)T * sizeof(int32_t));
        memcpy(t->targets + b * T, t->tokens + b * (T + 1) + 1, (size_t)T * sizeof(int32_t));
    }
    return LD_OK;
}

/* Data-parallel training sums gradients across ranks here, and only here (one bucketed
 * all-reduce per step). A single process has nothing to do. */
static ld_status allreduce_gradients(ld_trainer *t) {
    (void)t;
    return LD_OK;
}

ld_status ld_trainer_validate(ld_trainer *t, double *loss) {
    if (!t->has_val || t->p.eval_batches <= 0) return ld_error(t->ctx, LD_ERR_STATE, "no validation data");
    ld_status st = LD_OK;
    if (t->val_start && t->val.restore && (st = t->val.restore(t->val.user, t->val_start)))
        return ld_error_wrap(t->ctx, st, "validation data: ");
    ld_tape_set_grad_enabled(t->tape, false);
    double sum = 0;
    for (int64_t i = 0; i < t->p.eval_batches && !st; i++) {
        ld_tape_reset(t->tape);
        ld_tensor *l = NULL;
        if (!(st = load_batch(t, &t->val)))
            st = t->enc ? ld_encoder_mlm_loss(t->enc, t->tape, t->inputs, t->lengths, t->targets, t->p.batch_size,
                                              t->T_used, &l, NULL, NULL)
                        : ld_lm_forward(t->m, t->tape, t->inputs, t->targets, t->p.batch_size, t->p.seq_len, NULL, &l);
        if (!st) sum += ((float *)l->data)[0];
    }
    ld_tape_set_grad_enabled(t->tape, true);
    ld_tape_reset(t->tape);
    if (!st) *loss = sum / (double)t->p.eval_batches;
    return st;
}

static void write_metrics(ld_trainer *t, const ld_train_progress *pr) {
    if (!t->metrics) {
        char path[LD_TRAIN_PATH_MAX];
        snprintf(path, sizeof path, "%s/metrics.jsonl", t->out_dir);
        t->metrics = fopen(path, "a");
        if (!t->metrics) return;
    }
    fprintf(t->metrics, "{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.4f,\"tokens_per_s\":%.1f,\"mfu\":%.4f",
            (long long)pr->step, pr->loss, pr->lr, pr->grad_norm, pr->tokens_per_s, pr->mfu);
    if (!isnan(pr->val_loss)) fprintf(t->metrics, ",\"val_loss\":%.6f", pr->val_loss);
    if (pr->skipped) fprintf(t->metrics, ",\"skipped\":true,\"note\":\"%s\"", pr->note ? pr->note : "");
    fprintf(t->metrics, "}\n");
    fflush(t->metrics);
}

ld_status ld_trainer_set_teacher(ld_trainer *t, ld_teacher *teacher, float temperature, float alpha) {
    if (!t || !teacher) return LD_ERR_INVALID_ARG;
    if (!t->m) return ld_error(t->ctx, LD_ERR_INVALID_ARG, "distillation: the student must be a causal LM");
    const ld_lm_config *tc = ld_lm_config_of(ld_teacher_model(teacher)), *sc = &t->m->cfg;
    if (tc->vocab_size != sc->vocab_size)
        return ld_error(t->ctx, LD_ERR_INVALID_ARG,
                        "distillation: the teacher's vocab_size is %lld but the student's is %lld (teacher and "
                        "student must share one tokenizer)",
                        (long long)tc->vocab_size, (long long)sc->vocab_size);
    if (t->p.seq_len > tc->max_position)
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "distillation: seq_len %lld exceeds the teacher's max_position %lld",
                        (long long)t->p.seq_len, (long long)tc->max_position);
    if (!(temperature > 0) || !isfinite(temperature))
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "distillation: temperature %g must be a positive number",
                        (double)temperature);
    if (!(alpha >= 0 && alpha <= 1))
        return ld_error(t->ctx, LD_ERR_INVALID_ARG, "distillation: alpha %g must be in [0, 1]", (double)alpha);
    t->teacher = teacher, t->temperature = temperature, t->alpha = alpha;
    return LD_OK;
}

/* The loss of the micro-batch in t->inputs / t->targets: next-token cross-entropy, or with
 * a teacher the distillation loss against the teacher's logits for the same inputs. */
static ld_status training_loss(ld_trainer *t, ld_tensor **loss) {
    int64_t B = t->p.batch_size, T = t->p.seq_len;
    if (t->enc) return ld_encoder_mlm_loss(t->enc, t->tape, t->inputs, t->lengths, t->targets, B, t->T_used, loss, NULL, NULL);
    if (!t->teacher) return ld_lm_forward(t->m, t->tape, t->inputs, t->targets, B, T, NULL, loss);
    const ld_tensor *soft;
    ld_tensor *logits;
    ld_status st = ld_teacher_logits(t->teacher, t->inputs, B, T, &soft);
    if (st) return ld_error_wrap(t->ctx, st, "teacher forward: ");
    if ((st = ld_lm_forward(t->m, t->tape, t->inputs, NULL, B, T, &logits, NULL))) return st;
    return ld_op_distill_xent(t->tape, logits, soft, t->targets, -100, t->temperature, t->alpha, loss, NULL);
}

/* One optimizer step over grad_accum micro-batches. */
static ld_status train_step(ld_trainer *t, ld_train_progress *pr) {
    int64_t A = t->p.grad_accum;
    ld_params_zero_grad(t->params);
    double loss_sum = 0;
    t->step_tokens = 0;
    for (int64_t a = 0; a < A; a++) {
        ld_tape_reset(t->tape);
        ld_tape_set_seed(t->tape, ld_rng_at(t->p.seed, (uint64_t)(t->step * A + a)));
        ld_tensor *loss = NULL;
        ld_status st = load_batch(t, &t->train);
        if (!st) st = training_loss(t, &loss);
        if (!st) st = ld_tape_backward(t->tape, loss);
        if (st) return st;
        t->step_tokens += t->p.batch_size * (t->enc ? t->T_used : t->p.seq_len);
        loss_sum += ((float *)loss->data)[0];
    }
    ld_status st = allreduce_gradients(t);
    if (st) return st;
    double loss = loss_sum / (double)A;
    float lr = ld_lr_at(&t->p.schedule, t->step);
    pr->loss = loss, pr->lr = lr, pr->skipped = false, pr->note = NULL;
    if (!isfinite(loss)) {
        pr->skipped = true, pr->note = "loss is not finite: update skipped";
        pr->grad_norm = NAN;
    } else if (t->p.spike_factor > 0 && !isnan(t->running_loss) && t->step > t->p.schedule.warmup_steps &&
               loss > t->p.spike_factor * t->running_loss) {
        pr->skipped = true, pr->note = "loss spike: update skipped";
        pr->grad_norm = ld_params_grad_norm(t->params, 1.0f / (float)A);
    } else {
        st = ld_adamw_step(t->opt, lr, 1.0f / (float)A, &pr->grad_norm);
        if (st == LD_ERR_NUMERIC) {
            ld_ctx_clear_error(t->ctx);
            pr->skipped = true, pr->note = "gradient norm is not finite: update skipped";
        } else if (st) {
            return st;
        } else {
            t->running_loss = isnan(t->running_loss) ? loss : 0.95 * t->running_loss + 0.05 * loss;
        }
    }
    t->step++;
    return LD_OK;
}

ld_status ld_trainer_run(ld_trainer *t, ld_train_progress_fn cb, void *user, volatile int *stop) {
    if (!t) return LD_ERR_INVALID_ARG;
    double flops_per_token = t->enc ? ld_encoder_train_flops_per_token(ld_encoder_config_of(t->enc), t->p.seq_len, 0.15)
                                    : ld_lm_train_flops_per_token(&t->m->cfg, t->p.seq_len);
    double t_start = ld_time_now(), t_prev = t_start;
    int64_t first_step = t->step;
    if (!t->start_checked && ld_trainer_dir_has_run(t))
        return ld_error(t->ctx, LD_ERR_STATE,
                        "%s already holds a training run (metrics.jsonl, checkpoints): resume it (--resume) or "
                        "choose another out_dir", t->out_dir);
    t->start_checked = true;
    while (t->step < t->p.max_steps) {
        ld_train_progress pr = {.max_steps = t->p.max_steps, .val_loss = NAN};
        ld_status st = train_step(t, &pr);
        if (st) return st;
        double now = ld_time_now(), dt = now - t_prev;
        t_prev = now;
        pr.step = t->step;
        pr.tokens_per_s = (double)t->step_tokens / dt; /* bucketed masked-LM batches compute fewer slots */
        pr.mfu = t->peak_flops > 0 ? pr.tokens_per_s * flops_per_token / t->peak_flops : 0;
        pr.elapsed_s = now - t_start;
        pr.eta_s = (double)(t->p.max_steps - t->step) * (now - t_start) / (double)(t->step - first_step);
        if (t->has_val && t->p.eval_every > 0 && (t->step % t->p.eval_every == 0 || t->step == t->p.max_steps)) {
            if ((st = ld_trainer_validate(t, &pr.val_loss))) return st;
            t_prev = ld_time_now(); /* validation time is not training throughput */
        }
        bool ckpt = (t->p.checkpoint_every > 0 && t->step % t->p.checkpoint_every == 0) || t->step == t->p.max_steps;
        bool stopping = stop && *stop;
        /* the step's metrics line goes out before its checkpoint: a checkpoint never exists
         * without the metrics of the steps it contains (resume trims lines after it) */
        if ((ckpt || stopping) && !pr.note) pr.note = "checkpoint";
        write_metrics(t, &pr);
        if (ckpt || stopping) {
            if ((st = ld_trainer_checkpoint(t))) return st;
            t_prev = ld_time_now();
        }
        if (cb) cb(user, &pr);
        if (stopping) return ld_error(t->ctx, LD_ERR_INTERRUPTED, "training stopped at step %lld (checkpoint written)",
                                      (long long)t->step);
    }
    return LD_OK;
}

/* train/trainer.c — the training loop (pretraining and fine-tuning of a model and/or its
 * adapter, or distillation when a teacher is set): gradient accumulation, the one place
 * gradients would be all-reduced across data-parallel ranks, global-norm clipping, the NaN /
 * loss-spike guard, AdamW, learning-rate schedule, validation (loss, accuracy of a
 * classification head), early stopping, metrics.jsonl and checkpoints. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/team.h"
#include "train/grad_sync.h"
#include "train/trainer_internal.h"

ld_train_params ld_train_default_params(void) {
    ld_train_params p = {.batch_size = 8, .seq_len = 128, .grad_accum = 1, .max_steps = 1000,
                         .schedule = {.kind = LD_LR_COSINE, .lr = 1e-3f, .min_lr = 1e-4f, .warmup_steps = 100,
                                      .max_steps = 1000, .decay_steps = 0},
                         .optim = ld_adamw_default_config(), .eval_every = 100, .eval_batches = 8, .early_stopping = 0,
                         .checkpoint_every = 200, .keep_last = 2, .log_every = 1, .spike_factor = 0.0f, .seed = 1,
                         .out_dir = "run", .dp_bucket_mb = 25.0f};
    return p;
}

/* mkdir -p: the directory and any missing parents. */
static ld_status make_dir(ld_ctx *ctx, const char *path) {
    char p[LD_TRAIN_PATH_MAX];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return ld_error(ctx, LD_ERR_IO, "cannot create directory %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return ld_error(ctx, LD_ERR_IO, "cannot create directory %s: %s", p, strerror(errno));
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

/* What every trainer has: the sets it optimizes (the model's parameters when any of them
 * trains, an attached adapter's), tape, optimizer, batch buffers, run directory. */
static ld_status trainer_init(ld_trainer *t, const ld_train_params *p) {
    ld_ctx *ctx = t->ctx;
    t->p = *p;
    snprintf(t->out_dir, sizeof t->out_dir, "%s", p->out_dir);
    t->p.out_dir = t->out_dir;
    t->running_loss = NAN;
    t->best_metric = NAN;
    t->rank = 0, t->world = 1;
    t->base_trainable = ld_params_numel(t->params, true) > 0;
    if (t->base_trainable) t->sets[t->n_sets++] = t->params;
    if (t->adapter) t->sets[t->n_sets++] = ld_adapter_params(t->adapter);
    for (int i = 0; i < t->n_sets; i++) t->n_trainable += ld_params_numel(t->sets[i], true);
    if (t->n_trainable == 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "training: nothing is trainable (every parameter is frozen)");
    ld_status st;
    size_t BT = (size_t)(p->batch_size * p->seq_len), B = (size_t)p->batch_size;
    ld_batch *b = &t->batch;
    b->B = p->batch_size, b->T = p->seq_len;
    if ((st = ld_tape_new(ctx, &t->tape)) || (st = ld_adamw_new(t->sets[0], &p->optim, &t->opt)) ||
        (t->n_sets > 1 && (st = ld_adamw_add_params(t->opt, t->sets[1]))))
        return st;
    if (!(b->inputs = ld_alloc(ctx, BT * sizeof(int32_t))) || !(b->targets = ld_alloc(ctx, BT * sizeof(int32_t))) ||
        !(b->labels = ld_alloc(ctx, B * sizeof(int32_t))) || !(b->lengths = ld_alloc(ctx, B * sizeof(int32_t))))
        return ld_ctx_status(ctx);
    if (p->early_stopping > 0 && !(t->best_weights = ld_alloc(ctx, (size_t)t->n_trainable * sizeof(float))))
        return ld_ctx_status(ctx);
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
    t->adapter = ld_lm_adapter(m);
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
    ld_dist_ep_free(t);
    ld_grad_sync_free(t->gs);
    ld_tape_free(t->tape);
    ld_adamw_free(t->opt);
    ld_free(t->ctx, t->batch.inputs);
    ld_free(t->ctx, t->batch.targets);
    ld_free(t->ctx, t->batch.labels);
    ld_free(t->ctx, t->batch.lengths);
    ld_free(t->ctx, t->best_weights);
    ld_free(t->ctx, t->anchor);
    ld_free(t->ctx, t->fisher);
    if (t->metrics) fclose(t->metrics);
    free(t->val_start);
    ld_free(t->ctx, t);
}

int64_t ld_trainer_step(const ld_trainer *t) {
    return t ? t->step : 0;
}

ld_status ld_batch_from_windows(ld_batch *b, int32_t *scratch,
                                ld_status (*window)(void *user, int32_t *tokens, int64_t B, int64_t T), void *user) {
    int64_t B = b->B, T = b->T;
    ld_status st = window(user, scratch, B, T);
    if (st) return st;
    for (int64_t r = 0; r < B; r++) {
        memcpy(b->inputs + r * T, scratch + r * (T + 1), (size_t)T * sizeof(int32_t));
        memcpy(b->targets + r * T, scratch + r * (T + 1) + 1, (size_t)T * sizeof(int32_t));
        b->labels[r] = -100, b->lengths[r] = (int32_t)T;
    }
    return LD_OK;
}

/* The next micro-batch from src into t->batch. */
static ld_status load_batch(ld_trainer *t, const ld_batch_source *src) {
    ld_batch *b = &t->batch;
    b->B = t->p.batch_size, b->T = t->p.seq_len;
    if (t->enc) { /* masked LM: rows of T <= seq_len tokens (length bucketing) */
        ld_mlm_source *m = src == &t->val ? t->mlm_val : t->mlm_train;
        ld_status st = ld_mlm_source_next(m, b->B, b->inputs, b->targets, b->lengths, &b->T);
        if (st) return ld_error_wrap(t->ctx, st, "reading a training batch: ");
        t->step_tokens += b->B * b->T;
        return LD_OK;
    }
    for (int64_t r = 0; r < b->B; r++) b->labels[r] = -100, b->lengths[r] = (int32_t)b->T;
    ld_status st = src->next(src->user, b);
    if (st) return ld_error_wrap(t->ctx, st, "reading a training batch: ");
    if (b->T < 1 || b->T > t->p.seq_len || b->B != t->p.batch_size)
        return ld_error(t->ctx, LD_ERR_STATE, "a batch source made a %lld x %lld batch (at most %lld x %lld)",
                        (long long)b->B, (long long)b->T, (long long)t->p.batch_size, (long long)t->p.seq_len);
    t->step_tokens += b->B * b->T;
    for (int64_t r = 0; r < b->B; r++) /* padding rows of a classification batch pool something harmless */
        if (b->lengths[r] < 1 || b->lengths[r] > b->T) b->lengths[r] = b->labels[r] == -100 ? 1 : b->lengths[r];
    return LD_OK;
}

static bool classifies(const ld_trainer *t) {
    return t->adapter && t->adapter->score;
}

/* The loss of the micro-batch in t->batch: next-token cross-entropy over its targets, the
 * cross-entropy of its labels with a classification head, or with a teacher the
 * distillation loss against the teacher's logits for the same inputs. *logits (may be NULL)
 * receives the classification logits [B, n_labels]; *counted the targets or labels that
 * counted. */
static ld_status batch_loss(ld_trainer *t, ld_tensor **loss, ld_tensor **logits, int64_t *counted) {
    ld_batch *b = &t->batch;
    int64_t B = b->B, T = b->T;
    ld_tensor *lg;
    if (t->enc) return ld_encoder_mlm_loss(t->enc, t->tape, b->inputs, b->lengths, b->targets, B, T, loss, counted, NULL);
    if (classifies(t)) {
        ld_status st = ld_lm_classify(t->m, t->tape, b->inputs, b->lengths, B, T, &lg);
        if (!st && logits) *logits = lg;
        return st ? st : ld_op_cross_entropy(t->tape, lg, b->labels, -100, loss, counted);
    }
    if (counted) {
        *counted = 0;
        for (int64_t i = 0; i < B * T; i++) *counted += b->targets[i] != -100;
    }
    if (!t->teacher) return ld_lm_forward(t->m, t->tape, b->inputs, b->targets, B, T, NULL, loss);
    const ld_tensor *soft;
    ld_status st = ld_teacher_logits(t->teacher, b->inputs, B, T, &soft);
    if (st) return ld_error_wrap(t->ctx, st, "teacher forward: ");
    if ((st = ld_lm_forward(t->m, t->tape, b->inputs, NULL, B, T, &lg, NULL))) return st;
    return ld_op_distill_xent(t->tape, lg, soft, b->targets, -100, t->temperature, t->alpha, loss, NULL);
}

ld_status ld_trainer_evaluate(ld_trainer *t, const ld_batch_source *src, const char *start, int64_t n, double *loss,
                              double *accuracy) {
    LD_TEAM_SCOPE(t ? t->ctx : NULL);
    if (!t || !src || n <= 0 || !loss) return LD_ERR_INVALID_ARG;
    ld_status st = LD_OK;
    if (start && src->restore && (st = src->restore(src->user, start))) return ld_error_wrap(t->ctx, st, "validation data: ");
    ld_tape_set_grad_enabled(t->tape, false);
    /* validation is the student's own next-token loss, comparable with pretraining */
    ld_teacher *teacher = t->teacher;
    t->teacher = NULL;
    double sum = 0, right = 0;
    int64_t counted_all = 0;
    int64_t tokens = t->step_tokens;
    int64_t ran = 0;
    for (int64_t i = 0; i < n && !st; i++) {
        ld_tape_reset(t->tape);
        ld_tensor *l = NULL, *lg = NULL;
        int64_t counted = 0;
        /* data parallel: rank r evaluates batches r, r + ranks, ... (every rank reads them all) */
        if (!(st = load_batch(t, src)) && i % t->world == t->rank) st = batch_loss(t, &l, &lg, &counted), ran++;
        else if (!st) continue;
        if (st) break;
        sum += (double)((float *)l->data)[0] * (double)counted;
        counted_all += counted;
        for (int64_t r = 0; lg && r < t->batch.B; r++) {
            if (t->batch.labels[r] == -100) continue;
            const float *row = (const float *)lg->data + r * lg->shape[1];
            int64_t best = 0;
            for (int64_t c = 1; c < lg->shape[1]; c++)
                if (row[c] > row[best]) best = c;
            right += best == t->batch.labels[r];
        }
    }
    /* expert parallelism: each forward is a collective of the group, so a rank dealt fewer
     * batches runs its last one again and drops the result */
    for (int64_t most = (n + t->world - 1) / t->world; !st && t->ep_comm && ran < most; ran++) {
        ld_tensor *l = NULL;
        ld_tape_reset(t->tape);
        st = batch_loss(t, &l, NULL, NULL);
    }
    t->teacher = teacher;
    t->step_tokens = tokens;
    ld_tape_set_grad_enabled(t->tape, true);
    ld_tape_reset(t->tape);
    if ((st = ld_dist_agree(t, st, "validation"))) return st;
    if (t->world > 1) {
        double r[3] = {sum, right, (double)counted_all};
        if ((st = ld_comm_allreduce(t->comm, r, 3, LD_COMM_F64, LD_COMM_SUM))) return st;
        sum = r[0], right = r[1], counted_all = (int64_t)r[2];
    }
    if (counted_all == 0) return ld_error(t->ctx, LD_ERR_STATE, "validation: the batches hold nothing to predict");
    *loss = sum / (double)counted_all;
    if (accuracy) *accuracy = classifies(t) ? right / (double)counted_all : NAN;
    return LD_OK;
}

ld_status ld_trainer_validate(ld_trainer *t, double *loss, double *accuracy) {
    if (!t->has_val || t->p.eval_batches <= 0) return ld_error(t->ctx, LD_ERR_STATE, "no validation data");
    return ld_trainer_evaluate(t, &t->val, t->val_start, t->p.eval_batches, loss, accuracy);
}

void ld_trainer_copy_trainable(ld_trainer *t, float *buf, bool restore) {
    int64_t off = 0;
    for (int s = 0; s < t->n_sets; s++)
        for (int i = 0; i < ld_params_count(t->sets[s]); i++) {
            ld_tensor *x = ld_params_at(t->sets[s], i);
            if (!(x->flags & LD_TENSOR_TRAINABLE)) continue;
            size_t n = (size_t)ld_tensor_numel(x);
            if (restore) memcpy(x->data, buf + off, n * sizeof(float));
            else memcpy(buf + off, x->data, n * sizeof(float));
            off += (int64_t)n;
        }
    if (restore)
        for (int s = 0; s < t->n_sets; s++) ld_params_refresh_bf16(t->sets[s]);
}

bool ld_trainer_restore_best(ld_trainer *t) {
    if (!t || !t->best_weights || isnan(t->best_metric)) return false;
    ld_trainer_copy_trainable(t, t->best_weights, true);
    return true;
}

ld_status ld_trainer_set_anchor(ld_trainer *t, float lambda, const float *anchor, const float *fisher) {
    if (!t || (lambda > 0 && !anchor) || !(lambda >= 0)) return LD_ERR_INVALID_ARG;
    ld_free(t->ctx, t->anchor), ld_free(t->ctx, t->fisher);
    t->anchor = t->fisher = NULL, t->reg_lambda = 0;
    if (lambda == 0) return LD_OK;
    size_t bytes = (size_t)t->n_trainable * sizeof(float);
    if (!(t->anchor = ld_alloc(t->ctx, bytes)) || (fisher && !(t->fisher = ld_alloc(t->ctx, bytes))))
        return ld_ctx_status(t->ctx);
    memcpy(t->anchor, anchor, bytes);
    if (fisher) memcpy(t->fisher, fisher, bytes);
    t->reg_lambda = lambda;
    return LD_OK;
}

/* The anchor penalty: adds scale * lambda * w (theta - anchor) to the gradients (scale
 * undoes the optimizer's 1/grad_accum) and returns lambda/2 sum w (theta - anchor)^2. */
static double apply_anchor(ld_trainer *t, float scale) {
    if (!t->anchor) return 0;
    double pen = 0;
    int64_t off = 0;
    for (int s = 0; s < t->n_sets; s++)
        for (int i = 0; i < ld_params_count(t->sets[s]); i++) {
            ld_tensor *x = ld_params_at(t->sets[s], i);
            if (!(x->flags & LD_TENSOR_TRAINABLE)) continue;
            int64_t n = ld_tensor_numel(x);
            float *v = x->data, *g = x->grad->data;
            const float *a = t->anchor + off, *f = t->fisher ? t->fisher + off : NULL;
            for (int64_t j = 0; j < n; j++) {
                float d = v[j] - a[j], w = f ? f[j] : 1.0f;
                g[j] += scale * t->reg_lambda * w * d;
                pen += (double)w * (double)d * (double)d;
            }
            off += n;
        }
    return 0.5 * (double)t->reg_lambda * pen;
}

ld_status ld_trainer_fisher(ld_trainer *t, const ld_batch_source *src, int64_t n, float *out) {
    if (!t || !src || n < 1 || !out) return LD_ERR_INVALID_ARG;
    memset(out, 0, (size_t)t->n_trainable * sizeof(float));
    ld_status st = LD_OK;
    for (int64_t b = 0; b < n && !st; b++) {
        for (int i = 0; i < t->n_sets; i++) ld_params_zero_grad(t->sets[i]);
        ld_tape_reset(t->tape);
        ld_tensor *loss = NULL;
        if (!(st = load_batch(t, src)) && !(st = batch_loss(t, &loss, NULL, NULL))) st = ld_tape_backward(t->tape, loss);
        int64_t off = 0;
        for (int s = 0; !st && s < t->n_sets; s++)
            for (int i = 0; i < ld_params_count(t->sets[s]); i++) {
                ld_tensor *x = ld_params_at(t->sets[s], i);
                if (!(x->flags & LD_TENSOR_TRAINABLE)) continue;
                const float *g = x->grad->data;
                for (int64_t j = 0; j < ld_tensor_numel(x); j++) out[off + j] += g[j] * g[j] / (float)n;
                off += ld_tensor_numel(x);
            }
    }
    for (int i = 0; i < t->n_sets; i++) ld_params_zero_grad(t->sets[i]);
    ld_tape_reset(t->tape);
    return st;
}

/* Early stopping's bookkeeping after an evaluation: is it the best, and is it time to stop? */
static void track_best(ld_trainer *t, ld_train_progress *pr) {
    if (t->p.early_stopping <= 0) return;
    double metric = classifies(t) ? -pr->val_accuracy : pr->val_loss; /* lower is better */
    if (isnan(t->best_metric) || metric < t->best_metric) {
        t->best_metric = metric, t->bad_evals = 0, pr->best = true;
        ld_trainer_copy_trainable(t, t->best_weights, false);
    } else if (++t->bad_evals >= t->p.early_stopping) {
        pr->stopping = true;
    }
}

static void write_metrics(ld_trainer *t, const ld_train_progress *pr) {
    if (t->rank != 0) return; /* data parallel: rank 0 logs */
    if (!t->metrics) {
        char path[LD_TRAIN_PATH_MAX];
        snprintf(path, sizeof path, "%s/metrics.jsonl", t->out_dir);
        t->metrics = fopen(path, "a");
        if (!t->metrics) return;
    }
    fprintf(t->metrics, "{\"step\":%lld,\"loss\":%.6f,\"lr\":%.6g,\"grad_norm\":%.4f,\"tokens_per_s\":%.1f,\"mfu\":%.4f",
            (long long)pr->step, pr->loss, pr->lr, pr->grad_norm, pr->tokens_per_s, pr->mfu);
    if (!isnan(pr->val_loss)) fprintf(t->metrics, ",\"val_loss\":%.6f", pr->val_loss);
    const ld_lm_moe_stats ms = ld_lm_moe_stats_of(t->m); /* a mixture of experts' routers in the last micro-batch */
    if (ms.choices)
        fprintf(t->metrics, ",\"moe_aux_loss\":%.5f,\"moe_z_loss\":%.4f,\"moe_dropped\":%.5f", ms.aux_loss, ms.z_loss,
                (double)ms.dropped / (double)ms.choices);
    if (!isnan(pr->val_accuracy)) fprintf(t->metrics, ",\"val_accuracy\":%.6f", pr->val_accuracy);
    if (pr->stopping) fprintf(t->metrics, ",\"early_stop\":true");
    if (pr->skipped) fprintf(t->metrics, ",\"skipped\":true,\"note\":\"%s\"", pr->note ? pr->note : "");
    if (pr->ranks > 1)
        fprintf(t->metrics, ",\"ranks\":%d,\"comm_s\":%.6f,\"comm_exposed_s\":%.6f,\"comm_bytes\":%lld", pr->ranks,
                pr->comm_s, pr->comm_exposed_s, (long long)pr->comm_bytes);
    if (t->ep_comm)
        fprintf(t->metrics, ",\"ep_s\":%.6f,\"ep_bytes\":%lld", pr->ep_s, (long long)pr->ep_bytes);
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

/* Expert parallelism: the global gradient norm (times scale). Every rank holds the same dense
 * gradients and its own experts' sums, so the experts' squares are summed over the group. */
static ld_status ep_grad_norm(ld_trainer *t, float scale, double *norm) {
    double ss[2] = {0, 0}; /* dense, experts */
    for (int i = 0; i < ld_params_count(t->params); i++) {
        ld_tensor *x = ld_params_at(t->params, i);
        if (!(x->flags & LD_TENSOR_TRAINABLE) || !x->grad) continue;
        const float *g = x->grad->data;
        double s = 0;
        for (int64_t j = 0, n = ld_tensor_numel(x); j < n; j++) s += (double)g[j] * g[j];
        ss[t->ep_is_expert[i]] += s;
    }
    ld_status st = ld_comm_allreduce(t->ep_comm, ss + 1, 1, LD_COMM_F64, LD_COMM_SUM);
    *norm = sqrt(ss[0] + ss[1]) * fabs((double)scale);
    return st;
}

/* One optimizer step over grad_accum x ranks micro-batches of the sample stream: every rank
 * reads all of them in order (so the stream, and the run, do not depend on the rank count) and
 * computes its own grad_accum of them, rank r the ones at [r * grad_accum, (r + 1) * grad_accum);
 * the gradient sum is all-reduced in buckets during the last backward. One rank is the plain
 * single-process loop. */
static ld_status train_step(ld_trainer *t, ld_train_progress *pr) {
    int64_t A = t->p.grad_accum, M = A * t->world, mine = t->rank * A;
    for (int i = 0; i < t->n_sets; i++) ld_params_zero_grad(t->sets[i]);
    double loss_sum = 0;
    ld_grad_sync_stats s0 = ld_grad_sync_stats_get(t->gs);
    ld_comm_stats e0 = t->ep_comm ? ld_comm_stats_get(t->ep_comm) : (ld_comm_stats){0};
    ld_comm_stats w0 = t->comm ? ld_comm_stats_get(t->comm) : (ld_comm_stats){0};
    for (int64_t a = 0; a < M; a++) {
        ld_status st;
        if (a < mine || a >= mine + A) { /* another rank's micro-batch: read past it */
            int64_t tokens = t->step_tokens;
            st = load_batch(t, &t->train);
            t->step_tokens = tokens;
            if (st) return st;
            continue;
        }
        ld_tape_reset(t->tape);
        ld_tape_set_seed(t->tape, ld_rng_at(t->p.seed, (uint64_t)(t->step * M + a)));
        ld_tensor *loss = NULL;
        st = load_batch(t, &t->train);
        if (!st) st = batch_loss(t, &loss, NULL, NULL);
        if (!st && t->gs && a == mine + A - 1) st = ld_grad_sync_arm(t->gs, t->tape);
        if (!st && t->gs_exp && a == mine + A - 1) st = ld_grad_sync_arm(t->gs_exp, t->tape);
        if (!st) st = ld_tape_backward(t->tape, loss);
        if (st) return st;
        loss_sum += ((float *)loss->data)[0];
    }
    if (t->gs) { /* the gradient sum and the loss over every rank's micro-batches */
        ld_status st = ld_grad_sync_finish(t->gs, t->tape);
        if (!st && t->gs_exp) st = ld_grad_sync_finish(t->gs_exp, NULL);
        double r[2] = {loss_sum, (double)t->step_tokens};
        if (!st) st = ld_comm_allreduce(t->comm, r, 2, LD_COMM_F64, LD_COMM_SUM);
        if (st) return st;
        loss_sum = r[0], t->step_tokens = (int64_t)r[1];
    }
    double loss = loss_sum / (double)M + apply_anchor(t, (float)M);
    float lr = ld_lr_at(&t->p.schedule, t->step);
    pr->loss = loss, pr->lr = lr, pr->skipped = false, pr->note = NULL;
    double ep_norm = 0;
    if (t->ep_comm) {
        ld_status st = ep_grad_norm(t, 1.0f / (float)M, &ep_norm);
        if (st) return st;
    }
    if (!isfinite(loss)) {
        pr->skipped = true, pr->note = "loss is not finite: update skipped";
        pr->grad_norm = NAN;
    } else if (t->p.spike_factor > 0 && !isnan(t->running_loss) && t->step > t->p.schedule.warmup_steps &&
               loss > t->p.spike_factor * t->running_loss) {
        pr->skipped = true, pr->note = "loss spike: update skipped";
        double ss = 0;
        for (int i = 0; i < t->n_sets; i++) ss += pow(ld_params_grad_norm(t->sets[i], 1.0f / (float)M), 2);
        pr->grad_norm = t->ep_comm ? ep_norm : sqrt(ss);
    } else if (t->ep_comm && !isfinite(ep_norm)) { /* the norm every rank computed alike */
        pr->skipped = true, pr->note = "gradient norm is not finite: update skipped";
        pr->grad_norm = ep_norm;
    } else {
        /* expert parallelism: the clipping factor of the norm over every rank's experts */
        float scale = 1.0f / (float)M, max = t->p.optim.max_grad_norm;
        if (t->ep_comm && max > 0 && ep_norm > max) scale *= (float)(max / ep_norm);
        ld_status st = ld_adamw_step(t->opt, lr, scale, &pr->grad_norm);
        if (t->ep_comm) pr->grad_norm = ep_norm;
        if (st == LD_ERR_NUMERIC) { /* every rank holds the same gradients: all skip alike */
            ld_ctx_clear_error(t->ctx);
            pr->skipped = true, pr->note = "gradient norm is not finite: update skipped";
        } else if (st) {
            return st;
        } else {
            /* ZeRO-1: each rank updated its range; everyone gets every range */
            if (t->zero && (st = ld_grad_sync_gather_params(t->gs))) return st;
            t->running_loss = isnan(t->running_loss) ? loss : 0.95 * t->running_loss + 0.05 * loss;
        }
    }
    ld_grad_sync_stats s1 = ld_grad_sync_stats_get(t->gs);
    pr->ranks = t->world;
    pr->comm_s = s1.reduce_s - s0.reduce_s + s1.gather_s - s0.gather_s;
    pr->comm_exposed_s = s1.exposed_s - s0.exposed_s + s1.gather_s - s0.gather_s;
    pr->comm_bytes = t->comm ? ld_comm_stats_get(t->comm).bytes - w0.bytes : 0;
    if (t->ep_comm) {
        ld_comm_stats e1 = ld_comm_stats_get(t->ep_comm);
        pr->ep_s = e1.wait_s - e0.wait_s, pr->ep_bytes = e1.bytes - e0.bytes;
    }
    t->step++;
    return LD_OK;
}

ld_status ld_trainer_run(ld_trainer *t, ld_train_progress_fn cb, void *user, volatile int *stop) {
    LD_TEAM_SCOPE(t ? t->ctx : NULL);
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
        ld_train_progress pr = {.max_steps = t->p.max_steps, .val_loss = NAN, .val_accuracy = NAN};
        t->step_tokens = 0;
        ld_dist_fault(t);
        ld_status st = train_step(t, &pr);
        double tokens_per_step = (double)t->step_tokens; /* padded batches compute fewer slots */
        if (st) return st;
        double now = ld_time_now(), dt = now - t_prev;
        t_prev = now;
        pr.step = t->step;
        pr.tokens_per_s = tokens_per_step / dt;
        pr.flops_per_s = pr.tokens_per_s * flops_per_token;
        pr.mfu = t->peak_flops > 0 ? pr.flops_per_s / (t->peak_flops * t->world) : 0; /* peak_flops is one process's */
        pr.elapsed_s = now - t_start;
        pr.eta_s = (double)(t->p.max_steps - t->step) * (now - t_start) / (double)(t->step - first_step);
        if (t->has_val && t->p.eval_every > 0 && (t->step % t->p.eval_every == 0 || t->step == t->p.max_steps)) {
            if ((st = ld_trainer_validate(t, &pr.val_loss, &pr.val_accuracy))) return st;
            track_best(t, &pr);
            t_prev = ld_time_now(); /* validation time is not training throughput */
        }
        bool ckpt = (t->p.checkpoint_every > 0 && t->step % t->p.checkpoint_every == 0) || t->step == t->p.max_steps ||
                    pr.stopping;
        bool stopping = stop && *stop;
        if (t->world > 1) { /* a signal may reach the ranks at different steps: stop together */
            int64_t any = stopping;
            if ((st = ld_comm_allreduce(t->comm, &any, 1, LD_COMM_I64, LD_COMM_MAX))) return st;
            stopping = any != 0;
        }
        /* the step's metrics line goes out before its checkpoint: a checkpoint never exists
         * without the metrics of the steps it contains (resume trims lines after it) */
        if ((ckpt || stopping) && !pr.note) pr.note = "checkpoint";
        write_metrics(t, &pr);
        if (ckpt || stopping) {
            if ((st = ld_trainer_checkpoint(t))) return st;
            t_prev = ld_time_now();
        }
        if (cb && t->rank == 0) cb(user, &pr); /* data parallel: rank 0 reports */
        if (stopping) return ld_error(t->ctx, LD_ERR_INTERRUPTED, "training stopped at step %lld (checkpoint written)",
                                      (long long)t->step);
        if (pr.stopping) break;
    }
    return LD_OK;
}

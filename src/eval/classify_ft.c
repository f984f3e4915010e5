/* eval/classify_ft.c — fine-tuning an encoder for sequence classification (liandan/probe.h):
 * [CLS] text [SEP] rows from fine-tuning classification files, the pooled state through a
 * linear head, cross-entropy, AdamW on every weight with linear warmup and decay, then the
 * test file's accuracy and macro-F1 beside the majority class. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/team.h"
#include "liandan/probe.h"
#include "train/ft_data.h"

ld_classify_ft_params ld_classify_ft_default_params(void) {
    return (ld_classify_ft_params){.text_field = "text_a", .label_field = "label", .seq_len = 128, .batch_size = 16,
                                   .epochs = 1, .lr = 1e-4f, .weight_decay = 0.01f, .warmup_share = 0.1f,
                                   .pooling = LD_POOL_CLS, .seed = 1};
}

static ld_status load(ld_ctx *ctx, const ld_tokenizer *tok, const ld_classify_ft_params *p, const char *path,
                      int64_t max, ld_ft_labels *labels, ld_ft_data **d) {
    ld_ft_data_config c = ld_ft_data_default_config();
    c.format = LD_FT_CLASSIFY;
    snprintf(c.text_fields[0], sizeof c.text_fields[0], "%s", p->text_field);
    c.n_text_fields = 1;
    snprintf(c.label_field, sizeof c.label_field, "%s", p->label_field);
    c.max_examples = max;
    /* the text and its EOS in seq_len - 1 tokens: [CLS] text [SEP] fits seq_len */
    return ld_ft_data_load(ctx, tok, &c, path, labels, p->seq_len - 1, d);
}

/* Example i of d as [CLS] text [SEP] into row (the tokenizer's EOS, which ft_data appends,
 * is dropped first); returns the row's length. */
static int64_t make_row(const ld_ft_data *d, int64_t i, const ld_mlm_specials *sp, int32_t eos, int64_t T, int32_t *row,
                        int32_t *label) {
    const int32_t *ids;
    int64_t n;
    ld_ft_data_example(d, i, &ids, NULL, &n, label, NULL);
    if (n > 0 && ids[n - 1] == eos) n--;
    if (n > T - 2) n = T - 2; /* a tokenizer without EOS: ft_data cut the text to T - 1 */
    row[0] = sp->cls;
    memcpy(row + 1, ids, (size_t)n * sizeof *row);
    row[n + 1] = sp->sep;
    return n + 2;
}

static float lr_at(const ld_classify_ft_params *p, int64_t step, int64_t steps, int64_t warm) {
    if (step < warm) return p->lr * (float)(step + 1) / (float)warm;
    return p->lr * (float)(steps - step) / (float)(steps - warm);
}

typedef struct ft_state {
    ld_ctx *ctx;
    ld_ft_labels labels;
    ld_ft_data *train, *test;
    ld_params *head;
    ld_tensor *W, *b;
    ld_tape *tape;
    ld_adamw *opt;
    int64_t *order;
    int32_t *ids, *lengths, *y;
    int32_t **rows;
    int64_t *lens;
    float *feat;
} ft_state;

static void state_free(ft_state *s) {
    ld_ctx *ctx = s->ctx;
    ld_ft_labels_clear(&s->labels);
    ld_ft_data_free(s->train), ld_ft_data_free(s->test);
    ld_adamw_free(s->opt), ld_tape_free(s->tape), ld_params_free(s->head);
    ld_free(ctx, s->order), ld_free(ctx, s->ids), ld_free(ctx, s->lengths), ld_free(ctx, s->y);
    if (s->rows) ld_free(ctx, s->rows[0]);
    ld_free(ctx, s->rows), ld_free(ctx, s->lens), ld_free(ctx, s->feat);
}

/* Training: epochs of shuffled batches, one AdamW step each. */
static ld_status train(ld_encoder *m, ft_state *s, const ld_classify_ft_params *p, const ld_mlm_specials *sp, int32_t eos,
                       ld_classify_ft_report *out) {
    ld_ctx *ctx = s->ctx;
    int64_t n = ld_ft_data_count(s->train), B = p->batch_size, T = p->seq_len;
    int64_t steps = (n + B - 1) / B * p->epochs, warm = (int64_t)((double)p->warmup_share * (double)steps);
    if (warm >= steps) warm = steps - 1;
    ld_rng rng = ld_rng_init(p->seed ^ 0x5eed);
    double tail = 0;
    int64_t tail_n = 0, step = 0;
    ld_status st = LD_OK;
    for (int e = 0; e < p->epochs && !st; e++) {
        for (int64_t i = 0; i < n; i++) s->order[i] = i;
        for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates */
            int64_t j = (int64_t)ld_rng_below(&rng, (uint64_t)(i + 1)), t = s->order[i];
            s->order[i] = s->order[j], s->order[j] = t;
        }
        for (int64_t b0 = 0; b0 < n && !st; b0 += B, step++) {
            int64_t nb = n - b0 < B ? n - b0 : B, Tb = 1;
            for (int64_t r = 0; r < nb; r++) { /* rows of T first, then packed to the batch's longest */
                s->lengths[r] = (int32_t)make_row(s->train, s->order[b0 + r], sp, eos, T, s->ids + r * T, &s->y[r]);
                Tb = s->lengths[r] > Tb ? s->lengths[r] : Tb;
            }
            for (int64_t r = 0; r < nb; r++) {
                memmove(s->ids + r * Tb, s->ids + r * T, (size_t)s->lengths[r] * sizeof *s->ids);
                for (int64_t j = s->lengths[r]; j < Tb; j++) s->ids[r * Tb + j] = sp->pad;
            }
            ld_tape_reset(s->tape);
            ld_params_zero_grad(ld_encoder_params(m)), ld_params_zero_grad(s->head);
            ld_tensor *hidden, *pooled, *logits, *loss;
            if ((st = ld_encoder_forward(m, s->tape, s->ids, NULL, s->lengths, nb, Tb, &hidden)) ||
                (st = ld_encoder_pool(m, s->tape, hidden, s->lengths, p->pooling, &pooled)) ||
                (st = ld_op_linear(s->tape, pooled, s->W, s->b, false, &logits)) ||
                (st = ld_op_cross_entropy(s->tape, logits, s->y, -100, &loss, NULL)) ||
                (st = ld_tape_backward(s->tape, loss)) ||
                (st = ld_adamw_step(s->opt, lr_at(p, step, steps, warm), 1.0f, NULL)))
                break;
            double l = ((const float *)loss->data)[0];
            if (!isfinite(l)) {
                st = ld_error(ctx, LD_ERR_NUMERIC, "classification fine-tuning: the loss is %g at step %lld", l,
                              (long long)step + 1);
                break;
            }
            if (step >= steps - (steps + 9) / 10) tail += l, tail_n++;
            if (p->on_step) p->on_step(p->user, step + 1, steps, l);
        }
    }
    out->steps = step, out->final_loss = tail_n ? tail / (double)tail_n : NAN;
    return st;
}

/* Scores the test file: pooled features, the head, accuracy and macro-F1 over the labels
 * that occur in the test file or the predictions. */
static ld_status score(ld_encoder *m, ft_state *s, const ld_classify_ft_params *p, const ld_mlm_specials *sp,
                       int32_t eos, ld_classify_ft_report *out) {
    ld_ctx *ctx = s->ctx;
    int64_t n = ld_ft_data_count(s->test), T = p->seq_len, C = ld_encoder_config_of(m)->hidden_size, K = s->labels.n;
    int32_t *y = ld_alloc(ctx, (size_t)n * sizeof *y);
    if (!y) return ld_ctx_status(ctx);
    for (int64_t i = 0; i < n; i++) {
        s->rows[i] = s->rows[0] + i * T;
        s->lens[i] = make_row(s->test, i, sp, eos, T, s->rows[i], &y[i]);
    }
    ld_status st = ld_encoder_embed(m, (const int32_t *const *)s->rows, s->lens, n, p->pooling, false, s->feat);
    int64_t count[LD_ADAPTER_MAX_LABELS] = {0}, tp[LD_ADAPTER_MAX_LABELS] = {0}, fp[LD_ADAPTER_MAX_LABELS] = {0},
            fn[LD_ADAPTER_MAX_LABELS] = {0}, right = 0, major = 0;
    for (int64_t i = 0; i < ld_ft_data_count(s->train); i++) {
        int32_t lab;
        ld_ft_data_example(s->train, i, NULL, NULL, NULL, &lab, NULL);
        if (lab >= 0 && lab < K) count[lab]++;
    }
    for (int64_t k = 1; k < K; k++) major = count[k] > count[major] ? k : major;
    const float *W = s->W->data, *b = s->b->data;
    int64_t maj_right = 0;
    for (int64_t i = 0; i < n && !st; i++) {
        int64_t best = 0;
        double best_z = -INFINITY;
        for (int64_t k = 0; k < K; k++) {
            double z = b[k];
            for (int64_t c = 0; c < C; c++) z += (double)W[k * C + c] * s->feat[i * C + c];
            if (z > best_z) best_z = z, best = k;
        }
        right += best == y[i], maj_right += major == y[i];
        if (best == y[i]) tp[best]++;
        else fp[best]++, fn[y[i]]++;
    }
    double f1 = 0;
    int used = 0;
    for (int64_t k = 0; k < K; k++)
        if (tp[k] + fp[k] + fn[k] > 0) f1 += 2.0 * (double)tp[k] / (double)(2 * tp[k] + fp[k] + fn[k]), used++;
    if (!st) {
        out->accuracy = (double)right / (double)n, out->majority = (double)maj_right / (double)n;
        out->macro_f1 = used ? f1 / used : 0;
    }
    ld_free(ctx, y);
    return st;
}

ld_status ld_encoder_classify_finetune(ld_encoder *m, const ld_tokenizer *tok, const ld_classify_ft_params *p,
                                       ld_classify_ft_report *out) {
    ld_ctx *ctx = ld_encoder_ctx(m);
    LD_TEAM_SCOPE(ctx);
    if (!m || !tok || !p || !out || !p->train_path || !p->test_path || !p->text_field || !p->label_field)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_encoder_classify_finetune: bad arguments");
    const ld_encoder_config *c = ld_encoder_config_of(m);
    if (p->seq_len < 3 || p->seq_len > c->max_position)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "classification fine-tuning: seq_len %lld outside 3..%lld (max_position)",
                        (long long)p->seq_len, (long long)c->max_position);
    if (p->batch_size < 1 || p->epochs < 1 || !(p->lr > 0) || !(p->weight_decay >= 0) || !(p->warmup_share >= 0) ||
        !(p->warmup_share < 1))
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "classification fine-tuning: batch_size, epochs and lr must be positive, warmup_share in [0, 1)");
    double t0 = ld_time_now();
    memset(out, 0, sizeof *out);
    ld_mlm_specials sp;
    ld_status st = ld_mlm_specials_of(ctx, tok, &sp);
    if (st) return st;
    int32_t eos = ld_tokenizer_eos_id(tok);
    ft_state s = {.ctx = ctx};
    /* the training file's labels, sorted (ids must not depend on the file's order), then the
     * files read with those labels fixed: the test file may not bring labels of its own */
    if ((st = load(ctx, tok, p, p->train_path, p->max_train, &s.labels, &s.train))) goto done;
    ld_ft_data_free(s.train), s.train = NULL;
    if (s.labels.n < 2) {
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: %d label(s): classification needs at least 2", p->train_path, s.labels.n);
        goto done;
    }
    ld_ft_labels_sort(&s.labels);
    s.labels.fixed = true;
    if ((st = load(ctx, tok, p, p->train_path, p->max_train, &s.labels, &s.train)) ||
        (st = load(ctx, tok, p, p->test_path, p->max_test, &s.labels, &s.test)))
        goto done;
    int64_t K = s.labels.n, C = c->hidden_size, n = ld_ft_data_count(s.train), nt = ld_ft_data_count(s.test);
    out->n_train = n, out->n_test = nt, out->n_labels = K;
    out->truncated = ld_ft_data_truncated(s.train) + ld_ft_data_truncated(s.test);
    if ((st = ld_params_new(ctx, &s.head)) ||
        (st = ld_params_add(s.head, "classifier.weight", 2, (int64_t[]){K, C}, true, &s.W)) ||
        (st = ld_params_add(s.head, "classifier.bias", 1, (int64_t[]){K}, true, &s.b)))
        goto done;
    ld_rng rng = ld_rng_init(p->seed);
    for (int64_t i = 0; i < K * C; i++) ((float *)s.W->data)[i] = c->init_std * ld_rng_normal(&rng);
    memset(s.b->data, 0, (size_t)K * sizeof(float));
    ld_adamw_config ac = ld_adamw_default_config();
    ac.lr = p->lr, ac.beta1 = 0.9f, ac.beta2 = 0.999f, ac.eps = 1e-8f, ac.weight_decay = p->weight_decay;
    ac.max_grad_norm = 1.0f;
    if ((st = ld_tape_new(ctx, &s.tape)) || (st = ld_adamw_new(ld_encoder_params(m), &ac, &s.opt)) ||
        (st = ld_adamw_add_params(s.opt, s.head)))
        goto done;
    int64_t B = p->batch_size, T = p->seq_len;
    s.order = ld_alloc(ctx, (size_t)n * sizeof *s.order);
    s.ids = ld_alloc(ctx, (size_t)(B * T) * sizeof *s.ids);
    s.lengths = ld_alloc(ctx, (size_t)B * sizeof *s.lengths), s.y = ld_alloc(ctx, (size_t)B * sizeof *s.y);
    s.rows = ld_calloc(ctx, (size_t)nt, sizeof *s.rows), s.lens = ld_alloc(ctx, (size_t)nt * sizeof *s.lens);
    s.feat = ld_alloc(ctx, (size_t)(nt * C) * sizeof *s.feat);
    if (!s.order || !s.ids || !s.lengths || !s.y || !s.rows || !s.lens || !s.feat ||
        !(s.rows[0] = ld_alloc(ctx, (size_t)(nt * T) * sizeof(int32_t)))) {
        st = ld_ctx_status(ctx);
        goto done;
    }
    if (!(st = train(m, &s, p, &sp, eos, out))) st = score(m, &s, p, &sp, eos, out);
done:
    state_free(&s);
    out->seconds = ld_time_now() - t0;
    return st;
}

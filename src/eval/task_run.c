/* eval/task_run.c — running a task on a model: choice tasks by the likelihood of each
 * candidate (zero/few-shot, calibrated or not; the CPM/GPT-3 method) or with a fine-tuned
 * classification head; generate tasks by greedy decoding; then the metrics and the report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/task_internal.h"
#include "liandan/adapter.h"
#include "liandan/infer.h"

ld_task_params ld_task_default_params(void) {
    return (ld_task_params){.shots = 0, .calibrate = false, .limit = 0, .seed = 1, .max_len = 0, .batch = 16};
}

/* ---- small helpers ---------------------------------------------------------------------- */

typedef struct ids {
    int32_t *p;
    int64_t n;
} ids;

static ld_status encode(ld_ctx *ctx, const ld_tokenizer *tok, const char *text, ids *out) {
    size_t len = strlen(text), need = 0, cap = len + 8;
    out->p = NULL, out->n = 0;
    for (int tries = 0; tries < 2; tries++) {
        free(out->p);
        if (!(out->p = malloc((cap + 1) * sizeof(int32_t)))) return ld_error(ctx, LD_ERR_NOMEM, "out of memory");
        ld_status st = ld_tokenizer_encode(tok, text, len, LD_ENCODE_SPECIAL_AS_TEXT, out->p, cap, &need);
        if (st == LD_ERR_LIMIT) {
            ld_ctx_clear_error(ctx);
            cap = need;
            continue;
        }
        if (st) {
            free(out->p), out->p = NULL;
            return st;
        }
        out->n = (int64_t)need;
        return LD_OK;
    }
    return ld_error(ctx, LD_ERR_LIMIT, "encoding a prompt");
}

/* The value of field f of ex as text (numbers as %.17g), or NULL. */
static const char *field_text(const cJSON *ex, const char *f, char *num, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ex, f);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsNumber(v)) return snprintf(num, cap, "%.17g", v->valuedouble), num;
    return NULL;
}

/* The candidates of example i and the index of the right one. */
static ld_status candidates_of(const ld_task *t, int64_t i, const cJSON *ex, const char **cand, int *n, int *gold) {
    char num[64];
    const char *ans = field_text(ex, t->answer_field, num, sizeof num);
    *gold = -1;
    if (t->n_labels) {
        for (int k = 0; k < t->n_labels; k++) cand[k] = t->label_words[k];
        *n = t->n_labels;
        for (int k = 0; ans && k < t->n_labels; k++)
            if (!strcmp(ans, t->label_values[k])) *gold = k;
    } else {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(ex, t->candidates_field), *it;
        *n = 0;
        cJSON_ArrayForEach(it, list) {
            if (!cJSON_IsString(it) || *n == LD_TASK_MAX_LABELS) {
                *n = 0;
                break;
            }
            cand[(*n)++] = it->valuestring;
        }
        if (*n < 2)
            return ld_error(t->ctx, LD_ERR_FORMAT, "%s:%lld: '%s' must be a list of 2..%d strings (task %s)", t->eval.path,
                            (long long)t->eval.line[i], t->candidates_field, LD_TASK_MAX_LABELS, t->name);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(ex, t->answer_field);
        if (cJSON_IsNumber(a) && a->valuedouble >= 0 && a->valuedouble < *n && a->valuedouble == floor(a->valuedouble))
            *gold = (int)a->valuedouble;
        for (int k = 0; cJSON_IsString(a) && k < *n; k++)
            if (!strcmp(a->valuestring, cand[k])) *gold = k;
    }
    if (*gold < 0)
        return ld_error(t->ctx, LD_ERR_FORMAT, "%s:%lld: the answer '%s' is not one of the task's %s (task %s)",
                        t->eval.path, (long long)t->eval.line[i], ans ? ans : "(missing)",
                        t->n_labels ? "labels" : "candidates", t->name);
    return LD_OK;
}

/* The text of k shots (training examples with their answers filled in) for query q. */
static ld_status shots_text(const ld_task *t, int k, uint64_t seed, int64_t q, char **out) {
    size_t cap = 1, len = 0;
    char *s = calloc(1, 1);
    ld_status st = s ? LD_OK : ld_error(t->ctx, LD_ERR_NOMEM, "out of memory");
    if (k > 0 && t->train.n == 0)
        st = ld_error(t->ctx, LD_ERR_INVALID_ARG, "task %s has no train split for few-shot examples", t->name);
    ld_rng rng = ld_rng_init(ld_rng_at(seed, (uint64_t)q));
    for (int j = 0; !st && j < k; j++) {
        int64_t e = (int64_t)ld_rng_below(&rng, (uint64_t)t->train.n);
        const cJSON *ex = t->train.ex[e];
        char *txt = NULL, num[64];
        int64_t split;
        if ((st = ld_task_render(t, t->template_, ex, t->train.line[e], false, &txt, &split))) break;
        const char *fill = "";
        const char *cand[LD_TASK_MAX_LABELS];
        int n, gold;
        if (t->kind == TASK_CHOICE) {
            if ((st = candidates_of(t, e, ex, cand, &n, &gold))) {
                free(txt);
                break;
            }
            fill = cand[gold];
        } else {
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(ex, t->answers_field[0] ? t->answers_field : t->references_field);
            fill = cJSON_IsArray(a) && cJSON_IsString(cJSON_GetArrayItem(a, 0)) ? cJSON_GetArrayItem(a, 0)->valuestring
                   : field_text(ex, t->answers_field[0] ? t->answers_field : t->references_field, num, sizeof num);
            if (!fill) fill = "";
        }
        size_t need = len + strlen(txt) + strlen(fill) + strlen(t->shot_separator) + 1;
        if (need > cap) {
            char *ns = realloc(s, need * 2);
            if (!ns) {
                free(txt);
                st = ld_error(t->ctx, LD_ERR_NOMEM, "out of memory");
                break;
            }
            s = ns, cap = need * 2;
        }
        int64_t at = split >= 0 ? split : (int64_t)strlen(txt);
        len += (size_t)snprintf(s + len, cap - len, "%.*s%s%s%s", (int)at, txt, fill, txt + at, t->shot_separator);
        free(txt);
    }
    if (st) {
        free(s);
        return st;
    }
    *out = s;
    return LD_OK;
}

/* Keeps the last `keep` tokens of x (a context cut from the left to fit the window). */
static void keep_tail(ids *x, int64_t keep) {
    if (x->n <= keep) return;
    memmove(x->p, x->p + (x->n - keep), (size_t)keep * sizeof(int32_t));
    x->n = keep;
}

/* ---- choice tasks by likelihood -------------------------------------------------------------- */

typedef struct scorer {
    ld_ctx *ctx;
    ld_lm_session *s;
    const ld_tokenizer *tok;
    int32_t start;      /* EOS (documents are EOS-separated), put before every context */
    int64_t window;     /* tokens per scored sequence */
    int batch;
} scorer;

/* score[k] = log P(cont[k] | ctx[k]) (per token when norm), in batches of the session's slots. */
static ld_status score_all(scorer *sc, ids *ctxs, ids *conts, int n, bool norm, double *score) {
    ld_status st = LD_OK;
    for (int k0 = 0; k0 < n && !st; k0 += sc->batch) {
        int m = n - k0 < sc->batch ? n - k0 : sc->batch;
        const int32_t *cp[LD_TASK_MAX_LABELS], *xp[LD_TASK_MAX_LABELS];
        int64_t cl[LD_TASK_MAX_LABELS], xl[LD_TASK_MAX_LABELS];
        for (int k = 0; k < m; k++) {
            ids *c = &ctxs[k0 + k], *x = &conts[k0 + k];
            if (x->n > sc->window - 1) x->n = sc->window - 1;
            keep_tail(c, sc->window - x->n);
            cp[k] = c->p, cl[k] = c->n, xp[k] = x->p, xl[k] = x->n;
        }
        st = ld_lm_score(sc->s, m, cp, cl, xp, xl, score + k0);
        for (int k = 0; !st && norm && k < m; k++) score[k0 + k] /= (double)xl[k];
    }
    return st;
}

/* The start token, then the tokens of text[0, len). */
static ld_status encode_context(scorer *sc, const char *text, size_t len, ids *out) {
    char *c = malloc(len + 1);
    if (!c) return ld_error(sc->ctx, LD_ERR_NOMEM, "out of memory");
    memcpy(c, text, len), c[len] = 0;
    ld_status st = encode(sc->ctx, sc->tok, c, out);
    free(c);
    if (st) return st;
    memmove(out->p + 1, out->p, (size_t)out->n * sizeof(int32_t)); /* encode leaves room for one more */
    out->p[0] = sc->start, out->n++;
    return LD_OK;
}

/* Context = start token + prefix + text[0, split); continuation = candidate + text[split, end). */
static ld_status make_pair(scorer *sc, const char *prefix, const char *text, int64_t split, const char *cand, ids *ctx,
                           ids *cont) {
    size_t pl = strlen(prefix), sl = split >= 0 ? (size_t)split : strlen(text);
    char *c = malloc(pl + sl + 1), *x = malloc(strlen(cand) + strlen(text + sl) + 1);
    ld_status st = c && x ? LD_OK : ld_error(sc->ctx, LD_ERR_NOMEM, "out of memory");
    if (!st) {
        memcpy(c, prefix, pl), memcpy(c + pl, text, sl), c[pl + sl] = 0;
        sprintf(x, "%s%s", cand, text + sl);
        st = encode_context(sc, c, pl + sl, ctx);
    }
    if (!st && (st = encode(sc->ctx, sc->tok, x, cont))) free(ctx->p), ctx->p = NULL;
    if (!st && cont->n == 0) st = ld_error(sc->ctx, LD_ERR_FORMAT, "a candidate renders to no tokens ('%s')", cand);
    free(c);
    free(x);
    return st;
}

/* The predicted candidate of example i (scores of the n candidates, calibrated if asked). */
static ld_status predict_choice(const ld_task *t, scorer *sc, const ld_task_params *p, int64_t i, const char **cand, int n,
                                double *cf_cache, bool *cf_cached, int *pred) {
    const cJSON *ex = t->eval.ex[i];
    char *shots = NULL, *text = NULL;
    int64_t split;
    ids ctxs[LD_TASK_MAX_LABELS] = {{0}}, conts[LD_TASK_MAX_LABELS] = {{0}};
    double score[LD_TASK_MAX_LABELS], cf[LD_TASK_MAX_LABELS];
    ld_status st = shots_text(t, p->shots, p->seed, i, &shots);
    if (!st) st = ld_task_render(t, t->template_, ex, t->eval.line[i], false, &text, &split);
    if (!st && split < 0)
        st = ld_error(t->ctx, LD_ERR_FORMAT, "%s:%lld: the %s marker '%s' is not in the rendered text (task %s)",
                      t->eval.path, (long long)t->eval.line[i], t->blank[0] ? "blank" : "candidate",
                      t->blank[0] ? t->blank : "{candidate}", t->name);
    for (int k = 0; !st && k < n; k++) st = make_pair(sc, shots, text, split, cand[k], &ctxs[k], &conts[k]);
    if (!st) st = score_all(sc, ctxs, conts, n, t->length_norm, score);
    for (int k = 0; k < n; k++) free(ctxs[k].p), free(conts[k].p), ctxs[k].p = conts[k].p = NULL;
    free(text);
    text = NULL;
    /* calibration: the same candidates after a content-free query (for label tasks without
     * shots it is the same for every example: computed once) */
    if (!st && p->calibrate) {
        bool shared = t->n_labels && p->shots == 0;
        if (shared && *cf_cached) {
            memcpy(cf, cf_cache, (size_t)n * sizeof *cf);
        } else {
            st = ld_task_render(t, t->template_, ex, t->eval.line[i], true, &text, &split);
            if (!st && split < 0) split = (int64_t)strlen(text); /* a content-free blank: the candidate at the end */
            for (int k = 0; !st && k < n; k++) st = make_pair(sc, shots, text, split, cand[k], &ctxs[k], &conts[k]);
            if (!st) st = score_all(sc, ctxs, conts, n, t->length_norm, cf);
            for (int k = 0; k < n; k++) free(ctxs[k].p), free(conts[k].p);
            if (!st && shared) memcpy(cf_cache, cf, (size_t)n * sizeof *cf), *cf_cached = true;
        }
        for (int k = 0; !st && k < n; k++) score[k] -= cf[k];
    }
    free(text);
    free(shots);
    if (st) return st;
    *pred = 0;
    for (int k = 1; k < n; k++)
        if (score[k] > score[*pred]) *pred = k;
    return LD_OK;
}

/* ---- choice tasks with a classification head -------------------------------------------------- */

static ld_status predict_head(const ld_task *t, ld_lm *m, const ld_tokenizer *tok, int64_t i0, int64_t n, int64_t window,
                              const int *task_of_label, int *pred) {
    ld_ctx *ctx = t->ctx;
    ld_adapter *a = ld_lm_adapter(m);
    int64_t T = 1, L = ld_adapter_config_of(a)->n_labels;
    ids *x = calloc((size_t)n, sizeof *x);
    int32_t *rows = NULL, *lengths = calloc((size_t)n, sizeof *lengths), eos = ld_tokenizer_eos_id(tok);
    ld_status st = x && lengths ? LD_OK : ld_error(ctx, LD_ERR_NOMEM, "out of memory");
    for (int64_t r = 0; !st && r < n; r++) { /* as fine-tuning read it: the text, then EOS */
        char *text = NULL;
        int64_t split;
        if ((st = ld_task_render(t, t->head_input, t->eval.ex[i0 + r], t->eval.line[i0 + r], false, &text, &split))) break;
        st = encode(ctx, tok, text, &x[r]);
        free(text);
        if (st) break;
        if (eos >= 0) x[r].p[x[r].n++] = eos; /* encode leaves room for it */
        if (x[r].n > window) {
            x[r].n = window;
            if (eos >= 0) x[r].p[window - 1] = eos;
        }
        if (x[r].n < 1) x[r].p[0] = eos >= 0 ? eos : 0, x[r].n = 1;
        if (x[r].n > T) T = x[r].n;
        lengths[r] = (int32_t)x[r].n;
    }
    if (!st && !(rows = calloc((size_t)(n * T), sizeof *rows))) st = ld_error(ctx, LD_ERR_NOMEM, "out of memory");
    int32_t pad = eos >= 0 ? eos : 0;
    for (int64_t r = 0; !st && r < n; r++)
        for (int64_t k = 0; k < T; k++) rows[r * T + k] = k < x[r].n ? x[r].p[k] : pad;
    ld_tape *tape = NULL;
    ld_tensor *logits = NULL;
    if (!st) st = ld_tape_new(ctx, &tape);
    if (!st) {
        ld_tape_set_grad_enabled(tape, false);
        st = ld_lm_classify(m, tape, rows, lengths, n, T, &logits);
    }
    for (int64_t r = 0; !st && r < n; r++) {
        const float *row = (const float *)logits->data + r * L;
        int64_t best = 0;
        for (int64_t c = 1; c < L; c++)
            if (row[c] > row[best]) best = c;
        pred[r] = task_of_label[best];
    }
    ld_tape_free(tape);
    for (int64_t r = 0; x && r < n; r++) free(x[r].p);
    free(x);
    free(rows);
    free(lengths);
    return st;
}

/* ---- generate tasks ------------------------------------------------------------------------------ */

typedef struct gen_seq {
    const ld_task *t;
    const ld_tokenizer *tok;
    int32_t out[4096];
    int64_t n;
    char text[16384];
} gen_seq;

static bool on_token(void *user, int seq, int32_t token) {
    gen_seq *g = (gen_seq *)user + seq;
    if (g->n >= 4096) return false;
    g->out[g->n++] = token;
    size_t len = 0;
    if (ld_tokenizer_decode(g->tok, g->out, (size_t)g->n, true, g->text, sizeof g->text - 1, &len)) len = 0;
    g->text[len < sizeof g->text ? len : sizeof g->text - 1] = 0;
    for (int k = 0; k < g->t->n_stops; k++) {
        char *s = strstr(g->text, g->t->stops[k]);
        if (s) {
            *s = 0;
            return false;
        }
    }
    return true;
}

/* The list (or string) field f of ex as up to max strings. */
static int strings_of(const cJSON *ex, const char *f, const char **out, int max) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ex, f), *it;
    int n = 0;
    if (cJSON_IsString(v)) out[n++] = v->valuestring;
    cJSON_ArrayForEach(it, v) {
        const cJSON *s = cJSON_IsObject(it) ? cJSON_GetObjectItemCaseSensitive(it, "text") : it;
        if (cJSON_IsString(s) && n < max) out[n++] = s->valuestring;
    }
    return n;
}

/* ---- the run ------------------------------------------------------------------------------------- */

static void add_metric(ld_task_result *r, const char *name, double v) {
    if (r->n_metrics == LD_TASK_MAX_METRICS) return;
    snprintf(r->metric[r->n_metrics], sizeof r->metric[0], "%s", name);
    r->value[r->n_metrics++] = v;
}

static bool wants(const ld_task *t, const char *metric) {
    for (int i = 0; i < t->n_metrics; i++)
        if (!strcmp(t->metrics[i], metric)) return true;
    return false;
}

/* With a limit n below the split's size N, the examples run are n spread evenly over it
 * (k * N / n: files are often sorted by label); `spread` moves them to the front (the indices
 * increase, so each swap takes an untouched one) and back, in reverse order, after the run. */
static void spread(task_split *e, int64_t n, bool to_front) {
    for (int64_t i = 0; i < n; i++) {
        int64_t k = to_front ? i : n - 1 - i, j = k * e->n / n;
        const cJSON *x = e->ex[k];
        int64_t l = e->line[k];
        e->ex[k] = e->ex[j], e->line[k] = e->line[j];
        e->ex[j] = (cJSON *)x, e->line[j] = l;
    }
}

static ld_status run_task(ld_task *t, ld_lm *m, const ld_tokenizer *tok, const ld_task_params *params,
                          void (*progress)(void *user, int64_t done, int64_t total), void *user, ld_task_result *out);

ld_status ld_task_run(ld_task *t, ld_lm *m, const ld_tokenizer *tok, const ld_task_params *params,
                      void (*progress)(void *user, int64_t done, int64_t total), void *user, ld_task_result *out) {
    if (!t || !m || !tok || !out) return LD_ERR_INVALID_ARG;
    int64_t n = params && params->limit > 0 && params->limit < t->eval.n ? params->limit : 0;
    if (n) spread(&t->eval, n, true);
    ld_status st = run_task(t, m, tok, params, progress, user, out);
    if (n) spread(&t->eval, n, false);
    return st;
}

static ld_status run_task(ld_task *t, ld_lm *m, const ld_tokenizer *tok, const ld_task_params *params,
                          void (*progress)(void *user, int64_t done, int64_t total), void *user, ld_task_result *out) {
    ld_ctx *ctx = t->ctx;
    ld_task_params p = params ? *params : ld_task_default_params();
    if (p.batch < 1) p.batch = 1;
    if (p.batch > 64) p.batch = 64;
    memset(out, 0, sizeof *out);
    snprintf(out->task, sizeof out->task, "%s", t->name);
    snprintf(out->split, sizeof out->split, "%s", t->eval_split);
    snprintf(out->data, sizeof out->data, "%s", t->eval.path);
    out->data_hash = t->eval.hash;
    out->chance = NAN;
    int64_t n = p.limit > 0 && p.limit < t->eval.n ? p.limit : t->eval.n;
    out->n = n;
    ld_adapter *a = ld_lm_adapter(m);
    int64_t maxpos = ld_lm_config_of(m)->max_position;
    if (a && ld_adapter_config_of(a)->method == LD_ADAPTER_PROMPT) /* the virtual tokens come first */
        maxpos -= ld_adapter_config_of(a)->virtual_tokens;
    int64_t window = p.max_len > 0 && p.max_len < maxpos ? p.max_len : maxpos;
    if (window > 1024) window = 1024;
    bool head = a && ld_adapter_config_of(a)->n_labels > 0 && t->kind == TASK_CHOICE;
    if (a && !head && (ld_adapter_config_of(a)->method != LD_ADAPTER_LORA || !ld_adapter_is_merged(a)))
        return ld_error(ctx, LD_ERR_UNSUPPORTED,
                        "task %s: scoring and generation run the plain model: merge a LoRA adapter first (a prompt-tuning "
                        "adapter evaluates through a classification head)", t->name);
    int *pred = calloc((size_t)n + 1, sizeof *pred), *gold = calloc((size_t)n + 1, sizeof *gold);
    int *task_of_label = NULL;
    ld_status st = pred && gold ? LD_OK : ld_error(ctx, LD_ERR_NOMEM, "out of memory");
    double t0 = ld_time_now(), chance = 0;
    ld_lm_session *s = NULL;
    if (!st && !head) st = ld_lm_session_new(m, p.batch, window, window * p.batch, &s);
    int32_t start = ld_tokenizer_eos_id(tok) >= 0 ? ld_tokenizer_eos_id(tok) : ld_tokenizer_bos_id(tok);
    scorer sc = {ctx, s, tok, start >= 0 ? start : 0, window, p.batch};
    if (!st && t->kind == TASK_CHOICE) {
        const char *cand[LD_TASK_MAX_LABELS];
        int nc = 0;
        double cf_cache[LD_TASK_MAX_LABELS];
        bool cf_cached = false;
        if (head) { /* the head's labels as the task's */
            int64_t L = ld_adapter_config_of(a)->n_labels;
            if (!t->head_input[0])
                st = ld_error(ctx, LD_ERR_UNSUPPORTED, "task %s has no 'head_input': it cannot be run with a classification head", t->name);
            if (!st && !(task_of_label = calloc((size_t)L, sizeof *task_of_label))) st = ld_error(ctx, LD_ERR_NOMEM, "out of memory");
            for (int64_t l = 0; !st && l < L; l++) {
                task_of_label[l] = -1;
                for (int k = 0; k < t->n_labels; k++)
                    if (!strcmp(ld_adapter_label(a, l), t->label_values[k])) task_of_label[l] = k;
                if (task_of_label[l] < 0)
                    st = ld_error(ctx, LD_ERR_MISMATCH, "task %s: the head's label '%s' is not one of the task's labels",
                                  t->name, ld_adapter_label(a, l));
            }
        }
        for (int64_t i = 0; !st && i < n; i++) {
            if ((st = candidates_of(t, i, t->eval.ex[i], cand, &nc, &gold[i]))) break;
            chance += 1.0 / nc;
            if (!head) st = predict_choice(t, &sc, &p, i, cand, nc, cf_cache, &cf_cached, &pred[i]);
            if (progress && !head && (i + 1) % 16 == 0) progress(user, i + 1, n);
        }
        for (int64_t i0 = 0; !st && head && i0 < n; i0 += p.batch) {
            int64_t b = n - i0 < p.batch ? n - i0 : p.batch;
            st = predict_head(t, m, tok, i0, b, window, task_of_label, pred + i0);
            if (progress) progress(user, i0 + b, n);
        }
        if (!st) {
            int64_t right = 0;
            for (int64_t i = 0; i < n; i++) right += pred[i] == gold[i];
            add_metric(out, "accuracy", n ? (double)right / (double)n : 0);
            if (wants(t, "macro_f1") && t->n_labels) add_metric(out, "macro_f1", ld_metric_macro_f1(pred, gold, n, t->n_labels));
            out->chance = n ? chance / (double)n : NAN;
        }
        snprintf(out->mode, sizeof out->mode, "%s", head ? "fine-tuned head" : "");
        if (!head)
            snprintf(out->mode, sizeof out->mode, "%d-shot%s", p.shots, p.calibrate ? ", calibrated" : "");
    } else if (!st) {
        gen_seq *g = calloc((size_t)p.batch, sizeof *g);
        double em = 0, f1 = 0;
        int64_t tp = 0, fp = 0, fn = 0, c[6] = {0};
        if (!g) st = ld_error(ctx, LD_ERR_NOMEM, "out of memory");
        ld_generate_params gp = ld_generate_default_params();
        gp.sample.temperature = 0, gp.max_tokens = t->max_new_tokens, gp.eos_id = ld_tokenizer_eos_id(tok);
        for (int64_t i0 = 0; !st && i0 < n; i0 += p.batch) {
            int b = (int)(n - i0 < p.batch ? n - i0 : p.batch);
            ids x[64] = {{0}};
            const int32_t *pp[64];
            int64_t pl[64];
            for (int k = 0; !st && k < b; k++) {
                char *shots = NULL, *text = NULL;
                int64_t split;
                st = shots_text(t, p.shots, p.seed, i0 + k, &shots);
                if (!st) st = ld_task_render(t, t->template_, t->eval.ex[i0 + k], t->eval.line[i0 + k], false, &text, &split);
                if (!st) {
                    char *all = malloc(strlen(shots) + strlen(text) + 1);
                    if (!all) st = ld_error(ctx, LD_ERR_NOMEM, "out of memory");
                    else sprintf(all, "%s%s", shots, text), st = encode_context(&sc, all, strlen(all), &x[k]);
                    free(all);
                }
                free(shots);
                free(text);
                if (!st) keep_tail(&x[k], window - t->max_new_tokens > 1 ? window - t->max_new_tokens : 1);
                pp[k] = x[k].p, pl[k] = x[k].n;
                g[k].t = t, g[k].tok = tok, g[k].n = 0, g[k].text[0] = 0;
            }
            if (!st) st = ld_lm_generate(s, b, pp, pl, &gp, on_token, g, NULL);
            for (int k = 0; !st && k < b; k++) {
                const cJSON *ex = t->eval.ex[i0 + k];
                const char *refs[16];
                if (t->answers_field[0]) {
                    int nr = strings_of(ex, t->answers_field, refs, 16);
                    double e, f;
                    ld_metric_qa(g[k].text, refs, nr, &e, &f);
                    em += e, f1 += f;
                } else {
                    char num[64];
                    const char *src = field_text(ex, t->source_field, num, sizeof num);
                    int nr = strings_of(ex, t->references_field, refs, 16);
                    if (!src || !nr) {
                        st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: no '%s' or '%s' (task %s)", t->eval.path,
                                      (long long)t->eval.line[i0 + k], t->source_field, t->references_field, t->name);
                        break;
                    }
                    if (wants(t, "csc")) ld_metric_csc(src, g[k].text, refs[0], &c[0], &c[1], &c[2], &c[3], &c[4], &c[5]);
                    else ld_metric_gec(src, g[k].text, refs, nr, &tp, &fp, &fn);
                }
            }
            for (int k = 0; k < b; k++) free(x[k].p);
            if (progress) progress(user, i0 + b, n);
        }
        free(g);
        if (!st && t->answers_field[0]) add_metric(out, "em", n ? em / (double)n : 0), add_metric(out, "f1", n ? f1 / (double)n : 0);
        if (!st && !t->answers_field[0] && wants(t, "csc")) {
            for (int k = 0; k < 2; k++) {
                double P = c[3 * k] + c[3 * k + 1] ? (double)c[3 * k] / (double)(c[3 * k] + c[3 * k + 1]) : 0;
                double R = c[3 * k] + c[3 * k + 2] ? (double)c[3 * k] / (double)(c[3 * k] + c[3 * k + 2]) : 0;
                add_metric(out, k ? "correction_p" : "detection_p", P);
                add_metric(out, k ? "correction_r" : "detection_r", R);
                add_metric(out, k ? "correction_f1" : "detection_f1", P + R > 0 ? 2 * P * R / (P + R) : 0);
            }
        } else if (!st && !t->answers_field[0]) {
            double P = tp + fp ? (double)tp / (double)(tp + fp) : 0, R = tp + fn ? (double)tp / (double)(tp + fn) : 0;
            add_metric(out, "precision", P), add_metric(out, "recall", R);
            add_metric(out, "f0.5", P + R > 0 ? 1.25 * P * R / (0.25 * P + R) : 0);
        }
        snprintf(out->mode, sizeof out->mode, "%d-shot, greedy", p.shots);
    }
    out->seconds = ld_time_now() - t0;
    ld_lm_session_free(s);
    free(pred);
    free(gold);
    free(task_of_label);
    return st;
}

/* ---- the report ------------------------------------------------------------------------------------ */

uint64_t ld_lm_weights_hash(const ld_lm *m) {
    uint64_t h = 0xcbf29ce484222325ull;
    ld_params *ps = ld_lm_params((ld_lm *)m);
    for (int i = 0; ps && i < ld_params_count(ps); i++) {
        const ld_tensor *t = ld_params_at(ps, i);
        for (const char *c = t->name; *c; c++) h = (h ^ (uint8_t)*c) * 0x100000001b3ull;
        const uint32_t *w = t->data;
        int64_t n = t->data && t->dtype == LD_F32 ? ld_tensor_numel(t) : 0;
        for (int64_t j = 0; j < n; j++) h = (h ^ w[j]) * 0x100000001b3ull;
    }
    return h;
}

ld_status ld_task_report(ld_ctx *ctx, const char *model_name, const ld_lm *m, const ld_tokenizer *tok,
                         const ld_task_result *r, int n, char **json, char **markdown) {
    if (!json || !markdown) return LD_ERR_INVALID_ARG;
    *json = *markdown = NULL;
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)ld_lm_weights_hash(m));
    cJSON *o = cJSON_CreateObject(), *mo = cJSON_AddObjectToObject(o, "model");
    cJSON_AddStringToObject(mo, "name", model_name ? model_name : "");
    cJSON_AddStringToObject(mo, "weights_hash", hash);
    cJSON_AddNumberToObject(mo, "parameters", (double)ld_lm_config_num_params(ld_lm_config_of(m)));
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)ld_tokenizer_hash(tok));
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "tokenizer"), "hash", hash);
    cJSON *tasks = cJSON_AddArrayToObject(o, "tasks");
    size_t cap = 4096 + (size_t)n * 512, len = 0;
    char *md = malloc(cap);
    if (!o || !md) {
        cJSON_Delete(o);
        free(md);
        return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing the report");
    }
    len += (size_t)snprintf(md + len, cap - len, "| task | split | n | mode | metrics | chance | seconds |\n|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        cJSON *t = cJSON_CreateObject();
        cJSON_AddStringToObject(t, "task", r[i].task);
        cJSON_AddStringToObject(t, "split", r[i].split);
        cJSON_AddNumberToObject(t, "n", (double)r[i].n);
        cJSON_AddStringToObject(t, "mode", r[i].mode);
        cJSON *mt = cJSON_AddObjectToObject(t, "metrics");
        char ms[256] = "";
        for (int k = 0; k < r[i].n_metrics; k++) {
            cJSON_AddNumberToObject(mt, r[i].metric[k], r[i].value[k]);
            snprintf(ms + strlen(ms), sizeof ms - strlen(ms), "%s%s %.2f%%", k ? ", " : "", r[i].metric[k], 100 * r[i].value[k]);
        }
        if (!isnan(r[i].chance)) cJSON_AddNumberToObject(t, "chance", r[i].chance);
        cJSON *d = cJSON_AddObjectToObject(t, "data");
        cJSON_AddStringToObject(d, "file", r[i].data);
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)r[i].data_hash);
        cJSON_AddStringToObject(d, "hash", hash);
        cJSON_AddNumberToObject(t, "seconds", r[i].seconds);
        cJSON_AddItemToArray(tasks, t);
        char chance[32] = "—";
        if (!isnan(r[i].chance)) snprintf(chance, sizeof chance, "%.2f%%", 100 * r[i].chance);
        len += (size_t)snprintf(md + len, cap - len, "| %s | %s | %lld | %s | %s | %s | %.0f |\n", r[i].task, r[i].split,
                                (long long)r[i].n, r[i].mode, ms, chance, r[i].seconds);
        if (len >= cap) len = cap - 1;
    }
    char *js = cJSON_Print(o);
    cJSON_Delete(o);
    if (!js) {
        free(md);
        return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing the report");
    }
    *json = js, *markdown = md;
    return LD_OK;
}

/* serve/engine.c — one model's compute thread around its continuous-batching scheduler
 * (engine.h): an inbox of jobs under a mutex, one forward pass per loop turn, results
 * published to each job under its own lock. */
#include "serve/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "liandan/adapter.h"
#include "liandan/tokenizer.h"

struct ld_engine {
    ld_lm *m;
    const ld_tokenizer *tok;
    ld_lm_batch *batch;
    ld_lm_session *embed; /* created on the first embedding job */
    int64_t embed_len;
    pthread_t thread;
    pthread_mutex_t mu;   /* inbox, live, stop, stats */
    pthread_cond_t cv;
    ld_srv_job **inbox;
    int n_inbox, cap_inbox, max_queue;
    ld_srv_job **live;        /* jobs with sequences in the scheduler (engine thread only) */
    int n_live, cap_live;
    bool stop, wake;
    ld_engine_stats stats;
    char *lora_dirs[LD_SESSION_MAX_LORA]; /* the adapters in the scheduler's session: number i + 1 */
    int n_lora;
};

/* ---- jobs --------------------------------------------------------------------------- */

ld_srv_job *ld_srv_job_new(ld_srv_job_kind kind, int n) {
    ld_srv_job *j = calloc(1, sizeof *j);
    if (!j) return NULL;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->refs = 1, j->kind = kind;
    if (kind == LD_SRV_GENERATE) {
        j->n_choices = n;
        j->req = calloc((size_t)n, sizeof *j->req);
        j->out = calloc((size_t)n, sizeof *j->out);
        j->prompt = calloc((size_t)n, sizeof *j->prompt);
        j->stop_ids_store = calloc((size_t)n, sizeof *j->stop_ids_store);
        if (!j->req || !j->out || !j->prompt || !j->stop_ids_store) return ld_srv_job_release(j), NULL;
        for (int i = 0; i < n; i++) j->out[i].job = j, j->out[i].index = i;
    } else {
        j->n_inputs = n;
        j->in_ids = calloc((size_t)n, sizeof *j->in_ids);
        j->in_len = calloc((size_t)n, sizeof *j->in_len);
        if (!j->in_ids || !j->in_len) return ld_srv_job_release(j), NULL;
    }
    return j;
}

void ld_srv_job_release(ld_srv_job *j) {
    if (!j) return;
    pthread_mutex_lock(&j->mu);
    int left = --j->refs;
    pthread_mutex_unlock(&j->mu);
    if (left > 0) return;
    for (int i = 0; j->out && i < j->n_choices; i++) {
        ld_choice *c = &j->out[i];
        ld_text_stream_free(&c->text);
        free(c->tok), free(c->lp), free(c->off), free(c->top_tok), free(c->top_lp);
    }
    for (int i = 0; j->prompt && i < j->n_choices; i++) free(j->prompt[i]);
    for (int i = 0; j->in_ids && i < j->n_inputs; i++) free(j->in_ids[i]);
    if (j->free_extra) j->free_extra(j->extra);
    free(j->req), free(j->out), free(j->prompt), free(j->stop_ids_store), free(j->in_ids), free(j->in_len), free(j->embedding);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static struct timespec deadline(double timeout_s);

bool ld_srv_job_wait(ld_srv_job *j, double timeout_s) {
    struct timespec ts = deadline(timeout_s);
    pthread_mutex_lock(&j->mu);
    int total = j->kind == LD_SRV_GENERATE ? j->n_choices : 1;
    while (j->n_done < total && !j->failed)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts)) break;
    bool done = j->n_done >= total || j->failed;
    pthread_mutex_unlock(&j->mu);
    return done;
}

static struct timespec deadline(double timeout_s) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long ns = ts.tv_nsec + (long)((timeout_s - floor(timeout_s)) * 1e9);
    ts.tv_sec += (time_t)timeout_s + ns / 1000000000L, ts.tv_nsec = ns % 1000000000L;
    return ts;
}

void ld_srv_job_wait_progress(ld_srv_job *j, double timeout_s) {
    struct timespec ts = deadline(timeout_s);
    pthread_mutex_lock(&j->mu);
    pthread_cond_timedwait(&j->cv, &j->mu, &ts);
    pthread_mutex_unlock(&j->mu);
}

void ld_srv_job_cancel(ld_engine *e, ld_srv_job *j) {
    pthread_mutex_lock(&j->mu);
    j->cancel = true;
    pthread_mutex_unlock(&j->mu);
    pthread_mutex_lock(&e->mu);
    e->wake = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

/* ---- scheduler callbacks (engine thread) --------------------------------------------- */

static bool grow_tokens(ld_choice *c, int top_k) {
    if (c->n_tok < c->cap) return true;
    int64_t cap = c->cap ? 2 * c->cap : 64;
    int32_t *t = realloc(c->tok, (size_t)cap * sizeof *t);
    if (t) c->tok = t;
    float *lp = realloc(c->lp, (size_t)cap * sizeof *lp);
    if (lp) c->lp = lp;
    size_t *off = realloc(c->off, (size_t)cap * sizeof *off);
    if (off) c->off = off;
    if (!t || !lp || !off) return false;
    if (top_k) {
        int32_t *tt = realloc(c->top_tok, (size_t)(cap * top_k) * sizeof *tt);
        if (tt) c->top_tok = tt;
        float *tl = realloc(c->top_lp, (size_t)(cap * top_k) * sizeof *tl);
        if (tl) c->top_lp = tl;
        if (!tt || !tl) return false;
    }
    c->cap = cap;
    return true;
}

static bool on_token(void *user, const ld_lm_token_info *t) {
    ld_choice *c = user;
    ld_srv_job *j = c->job;
    const char *bytes = "";
    size_t n = 0;
    ld_tokenizer_token_bytes(j->tok, t->token, &bytes, &n);
    pthread_mutex_lock(&j->mu);
    bool go = !j->cancel && grow_tokens(c, j->top_k);
    if (go) {
        int64_t k = c->n_tok++;
        c->tok[k] = t->token, c->lp[k] = t->logprob, c->off[k] = c->text.len;
        for (int i = 0; i < j->top_k; i++) {
            c->top_tok[k * j->top_k + i] = i < t->n_top ? t->top[i] : -1;
            c->top_lp[k * j->top_k + i] = i < t->n_top ? t->top_logprob[i] : -INFINITY;
        }
        go = ld_text_stream_add(&c->text, bytes, n);
        if (!j->t_first) j->t_first = now_s();
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return go;
}

static void on_done(void *user, ld_finish why, int64_t computed, int64_t generated) {
    ld_choice *c = user;
    ld_srv_job *j = c->job;
    pthread_mutex_lock(&j->mu);
    ld_text_stream_finish(&c->text);
    c->done = true, c->why = why, c->prompt_computed = computed, c->generated = generated;
    j->n_done++;
    if (j->n_done == j->n_choices) j->t_done = now_s();
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* ---- the thread ---------------------------------------------------------------------- */

static void fail_job(ld_srv_job *j, int http, const char *msg) {
    pthread_mutex_lock(&j->mu);
    j->failed = true, j->err_http = http;
    snprintf(j->err_msg, sizeof j->err_msg, "%s", msg);
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Embeddings: the mean of the final hidden states over each input's tokens, L2-normalised. */
static void run_embed(ld_engine *e, ld_srv_job *j) {
    const ld_lm_config *c = ld_lm_config_of(e->m);
    const int64_t C = c->hidden_size, chunk = 256;
    if (!e->embed) {
        e->embed_len = c->max_position < 8192 ? c->max_position : 8192;
        if (ld_lm_session_new(e->m, 1, e->embed_len, chunk < e->embed_len ? chunk : e->embed_len, &e->embed)) {
            fail_job(j, 500, "cannot create the embedding session (out of memory)");
            return;
        }
    }
    float *out = calloc((size_t)(j->n_inputs * C), sizeof *out);
    double *acc = calloc((size_t)C, sizeof *acc);
    if (!out || !acc) {
        free(out), free(acc);
        fail_job(j, 500, "out of memory");
        return;
    }
    for (int i = 0; i < j->n_inputs; i++) {
        if (j->in_len[i] > e->embed_len) {
            char msg[160];
            snprintf(msg, sizeof msg, "input %d has %lld tokens; this model embeds at most %lld", i,
                     (long long)j->in_len[i], (long long)e->embed_len);
            free(out), free(acc);
            fail_job(j, 400, msg);
            return;
        }
        memset(acc, 0, (size_t)C * sizeof *acc);
        ld_lm_session_clear(e->embed, 0);
        for (int64_t at = 0; at < j->in_len[i]; at += chunk) {
            int64_t n = j->in_len[i] - at < chunk ? j->in_len[i] - at : chunk;
            ld_lm_segment g = {0, j->in_ids[i] + at, n};
            const float *h;
            if (ld_lm_session_eval_hidden(e->embed, &g, 1, &h)) {
                free(out), free(acc);
                fail_job(j, 400, ld_ctx_error(ld_lm_session_ctx(e->embed)));
                return;
            }
            for (int64_t r = 0; r < n; r++)
                for (int64_t k = 0; k < C; k++) acc[k] += h[r * C + k];
        }
        double norm = 0;
        for (int64_t k = 0; k < C; k++) norm += acc[k] * acc[k];
        norm = norm > 0 ? 1.0 / sqrt(norm) : 0;
        for (int64_t k = 0; k < C; k++) out[i * C + k] = (float)(acc[k] * norm);
        pthread_mutex_lock(&e->mu);
        e->stats.embed_tokens += j->in_len[i];
        pthread_mutex_unlock(&e->mu);
    }
    free(acc);
    pthread_mutex_lock(&j->mu);
    j->embedding = out, j->dim = C, j->n_done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

/* Hands a generation job's choices to the scheduler. */
/* The session's number of the LoRA adapter in j->lora_dir, loaded on first use (engine thread:
 * nothing else computes with the model meanwhile); 0 after failing the job. */
static int job_lora(ld_engine *e, ld_srv_job *j) {
    for (int i = 0; i < e->n_lora; i++)
        if (!strcmp(e->lora_dirs[i], j->lora_dir)) return i + 1;
    ld_lm_session *s = ld_lm_batch_session(e->batch);
    ld_ctx *ctx = ld_lm_session_ctx(s);
    ld_adapter *a = NULL;
    int id = 0, http = 400;
    char *dir = strdup(j->lora_dir);
    if (!dir) http = 500, ld_error(ctx, LD_ERR_NOMEM, "out of memory");
    else if (e->n_lora >= LD_SESSION_MAX_LORA) http = 503, ld_error(ctx, LD_ERR_LIMIT, "%d adapters are loaded on this model, the most it takes", e->n_lora);
    else if (!ld_adapter_load(e->m, dir, &a)) {
        if (ld_lm_session_add_lora(s, a, &id)) id = 0;
        ld_adapter_free(a); /* the session keeps a copy of its matrices */
    }
    if (!id) {
        char msg[256];
        snprintf(msg, sizeof msg, "the adapter cannot run on this model: %s", ld_ctx_error(ctx));
        free(dir);
        fail_job(j, http, msg);
        return 0;
    }
    e->lora_dirs[e->n_lora++] = dir;
    return id;
}

static void start_job(ld_engine *e, ld_srv_job *j) {
    j->tok = e->tok;
    int lora = 0;
    if (j->lora_dir[0] && !(lora = job_lora(e, j))) {
        ld_srv_job_release(j);
        return;
    }
    int k;
    for (k = 0; k < j->n_choices; k++) {
        ld_lm_request *r = &j->req[k];
        r->lora = lora;
        r->on_token = on_token, r->on_done = on_done, r->user = &j->out[k];
        ld_text_stream_init(&j->out[k].text, j->stops, j->n_stops);
        if (ld_lm_batch_submit(e->batch, r, &j->out[k].batch_id)) break;
    }
    if (k < j->n_choices) { /* refused: end what was started */
        const char *why = ld_ctx_error(ld_lm_session_ctx(ld_lm_batch_session(e->batch)));
        int http = strstr(why, "queue is full") ? 429 : 400;
        for (int i = 0; i < k; i++) ld_lm_batch_cancel(e->batch, j->out[i].batch_id);
        fail_job(j, http, why);
        ld_srv_job_release(j);
        return;
    }
    if (e->n_live == e->cap_live) {
        int cap = e->cap_live ? 2 * e->cap_live : 16;
        ld_srv_job **l = realloc(e->live, (size_t)cap * sizeof *l);
        if (!l) {
            for (int i = 0; i < j->n_choices; i++) ld_lm_batch_cancel(e->batch, j->out[i].batch_id);
            fail_job(j, 500, "out of memory");
            ld_srv_job_release(j);
            return;
        }
        e->live = l, e->cap_live = cap;
    }
    e->live[e->n_live++] = j;
}

/* Cancels the sequences of jobs whose client left; forgets finished jobs. */
static void sweep_live(ld_engine *e) {
    for (int i = 0; i < e->n_live;) {
        ld_srv_job *j = e->live[i];
        pthread_mutex_lock(&j->mu);
        bool cancel = j->cancel, done = j->n_done == j->n_choices;
        pthread_mutex_unlock(&j->mu);
        if (cancel && !done)
            for (int k = 0; k < j->n_choices; k++) ld_lm_batch_cancel(e->batch, j->out[k].batch_id);
        if (cancel || done) {
            e->live[i] = e->live[--e->n_live];
            ld_srv_job_release(j);
        } else {
            i++;
        }
    }
}

static void *engine_main(void *arg) {
    ld_engine *e = arg;
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (!e->stop && !e->n_inbox && !e->wake && !e->n_live) pthread_cond_wait(&e->cv, &e->mu);
        if (e->stop) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        e->wake = false;
        ld_srv_job *in[64];
        int n = e->n_inbox < 64 ? e->n_inbox : 64;
        memcpy(in, e->inbox, (size_t)n * sizeof *in);
        memmove(e->inbox, e->inbox + n, (size_t)(e->n_inbox - n) * sizeof *in);
        e->n_inbox -= n;
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < n; i++) {
            if (in[i]->kind == LD_SRV_EMBED) {
                if (!in[i]->cancel) run_embed(e, in[i]);
                ld_srv_job_release(in[i]);
            } else {
                start_job(e, in[i]);
            }
        }
        sweep_live(e);
        bool worked = false;
        ld_lm_batch_step(e->batch, &worked); /* an error ends the requests it concerned */
        sweep_live(e);
        pthread_mutex_lock(&e->mu);
        ld_lm_batch_stats_get(e->batch, &e->stats.batch);
        pthread_mutex_unlock(&e->mu);
        if (!worked && e->n_live) { /* sequences wait for pages held by nobody: cannot happen; don't spin */
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
    }
    /* stopping: end everything */
    for (int i = 0; i < e->n_live; i++) {
        ld_srv_job *j = e->live[i];
        for (int k = 0; k < j->n_choices; k++) ld_lm_batch_cancel(e->batch, j->out[k].batch_id);
        ld_srv_job_release(j);
    }
    e->n_live = 0;
    return NULL;
}

ld_status ld_engine_start(ld_lm *m, const ld_tokenizer *tok, const ld_lm_batch_params *bp, ld_dtype quantize,
                          ld_engine **out, char *err, size_t err_cap) {
    *out = NULL;
    ld_engine *e = calloc(1, sizeof *e);
    if (!e) return snprintf(err, err_cap, "out of memory"), LD_ERR_NOMEM;
    e->m = m, e->tok = tok, e->max_queue = bp->max_queue;
    ld_status st = ld_lm_batch_new(m, bp, &e->batch);
    ld_ctx *ctx = NULL;
    if (st) {
        snprintf(err, err_cap, "%s", "cannot create the scheduler (see the log)");
        free(e);
        return st;
    }
    ctx = ld_lm_session_ctx(ld_lm_batch_session(e->batch));
    if (quantize != LD_DTYPE_COUNT && !ld_lm_is_quantized(m) &&
        (st = ld_lm_session_quantize_ex(ld_lm_batch_session(e->batch), quantize, ld_lm_mix_edge_type(quantize)))) {
        snprintf(err, err_cap, "quantizing: %s", ld_ctx_error(ctx));
        ld_lm_batch_free(e->batch);
        free(e);
        return st;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->thread, NULL, engine_main, e)) {
        snprintf(err, err_cap, "cannot start the engine thread");
        ld_lm_batch_free(e->batch);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
        free(e);
        return LD_ERR_INTERNAL;
    }
    *out = e;
    return LD_OK;
}

bool ld_engine_submit(ld_engine *e, ld_srv_job *j) {
    pthread_mutex_lock(&e->mu);
    const char *why = NULL;
    int http = 0;
    if (e->stop) why = "the server is shutting down", http = 503;
    else if (e->n_inbox + e->stats.batch.queued >= e->max_queue && j->kind == LD_SRV_GENERATE)
        why = "too many requests are waiting for this model; retry later", http = 429;
    else if (e->n_inbox == e->cap_inbox) {
        int cap = e->cap_inbox ? 2 * e->cap_inbox : 16;
        ld_srv_job **q = realloc(e->inbox, (size_t)cap * sizeof *q);
        if (!q) why = "out of memory", http = 503;
        else e->inbox = q, e->cap_inbox = cap;
    }
    if (why) {
        pthread_mutex_unlock(&e->mu);
        fail_job(j, http, why);
        return false;
    }
    pthread_mutex_lock(&j->mu);
    j->refs++;
    j->t_submit = now_s();
    pthread_mutex_unlock(&j->mu);
    e->inbox[e->n_inbox++] = j;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    return true;
}

void ld_engine_stats_get(ld_engine *e, ld_engine_stats *out) {
    pthread_mutex_lock(&e->mu);
    *out = e->stats;
    pthread_mutex_unlock(&e->mu);
}

int ld_engine_load(ld_engine *e) {
    pthread_mutex_lock(&e->mu);
    int n = e->n_inbox + e->stats.batch.active + e->stats.batch.queued;
    pthread_mutex_unlock(&e->mu);
    return n;
}

size_t ld_engine_kv_bytes(ld_engine *e) {
    return ld_lm_session_kv_bytes(ld_lm_batch_session(e->batch));
}

void ld_engine_halt(ld_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    bool was = e->stop;
    e->stop = true;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (was) return;
    pthread_join(e->thread, NULL);
    pthread_mutex_lock(&e->mu);
    for (int i = 0; i < e->n_inbox; i++) {
        fail_job(e->inbox[i], 503, "the server is shutting down");
        ld_srv_job_release(e->inbox[i]);
    }
    e->n_inbox = 0;
    pthread_mutex_unlock(&e->mu);
}

void ld_engine_stop(ld_engine *e) {
    if (!e) return;
    ld_engine_halt(e);
    ld_lm_batch_free(e->batch);
    ld_lm_session_free(e->embed);
    free(e->inbox), free(e->live);
    for (int i = 0; i < e->n_lora; i++) free(e->lora_dirs[i]);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

/* serve/routes_openai.c — OpenAI's inference routes: /v1/models, /v1/completions,
 * /v1/chat/completions (whole answers or server-sent events), /v1/embeddings, and llama.cpp's
 * /tokenize and /detokenize, /health and /metrics. Each handler parses the body
 * (api_request.c), takes the model from the pool, hands the work to its engine and shapes
 * the answer; the engine does the computing. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "liandan/grammar.h"
#include "liandan/registry.h"
#include "serve/engine.h"
#include "serve/serve_internal.h"

static ld_api_limits limits_of(const ld_server *s) {
    ld_api_limits l = ld_api_default_limits();
    l.max_choices = s->p.limits.max_choices > 0 ? s->p.limits.max_choices : 8;
    l.max_prompts = s->p.limits.max_prompts > 0 ? s->p.limits.max_prompts : 32;
    l.max_new_tokens = s->p.limits.max_new_tokens > 0 ? s->p.limits.max_new_tokens : 4096;
    return l;
}

/* A JSON string from bytes that may not be valid UTF-8. */
static cJSON *json_text(const char *s, size_t n) {
    char *v = ld_utf8_valid_copy(s, n);
    cJSON *j = cJSON_CreateString(v ? v : "");
    free(v);
    return j;
}

static void add_text(cJSON *obj, const char *key, const char *s, size_t n) {
    cJSON_AddItemToObject(obj, key, json_text(s, n));
}

/* ---- models, health, metrics ---------------------------------------------------------------- */

static void model_entry(void *user, const char *name, bool loaded, double created) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", name);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", floor(created));
    cJSON_AddStringToObject(m, "owned_by", "liandan");
    cJSON_AddBoolToObject(m, "loaded", loaded);
    cJSON_AddItemToArray(user, m);
}

/* A model the registry knows (made by a fine-tuning job): its lineage on the directory's entry
 * of that name, or, for an adapter ("base:adapter", not a directory model), an entry of its own
 * when its base is in the list and its directory is still there. */
typedef struct model_listing {
    cJSON *data;
    const ld_server *srv;
} model_listing;

static void registry_model(void *user, const ld_model_row *r) {
    const model_listing *ml = user;
    cJSON *data = ml->data, *entry = NULL, *base = NULL;
    for (cJSON *m = data->child; m; m = m->next) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
        if (id && !strcmp(id, r->id)) entry = m;
        if (id && r->base && !strcmp(id, r->base)) base = m;
    }
    if (!entry && strchr(r->id, ':')) {
        char dir[4400];
        snprintf(dir, sizeof dir, "%s/%s", ml->srv->models_dir, r->path);
        if (!base || access(dir, F_OK)) return;
        entry = cJSON_CreateObject();
        cJSON_AddStringToObject(entry, "id", r->id);
        cJSON_AddStringToObject(entry, "object", "model");
        cJSON_AddNumberToObject(entry, "created", floor(r->created));
        cJSON_AddStringToObject(entry, "owned_by", "liandan");
        cJSON_AddBoolToObject(entry, "loaded", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(base, "loaded")));
        cJSON_AddItemToArray(data, entry);
    }
    if (!entry || cJSON_GetObjectItemCaseSensitive(entry, "lineage")) return;
    cJSON *l = cJSON_AddObjectToObject(entry, "lineage");
    if (r->base) cJSON_AddStringToObject(l, "base", r->base);
    cJSON_AddStringToObject(l, "method", r->kind);
    if (r->training_file) cJSON_AddStringToObject(l, "training_file", r->training_file);
    if (r->training_sha256) cJSON_AddStringToObject(l, "training_sha256", r->training_sha256);
    if (r->job) cJSON_AddStringToObject(l, "job", r->job);
    cJSON *hp = r->hyperparameters ? cJSON_Parse(r->hyperparameters) : NULL;
    if (hp) cJSON_AddItemToObject(l, "hyperparameters", hp);
    cJSON *ev = r->eval ? cJSON_Parse(r->eval) : NULL;
    if (ev) cJSON_AddItemToObject(entry, "eval", ev);
}

/* The directory's models and those the registry adds (fine-tuned adapters, lineage). */
static cJSON *model_list(ld_http *h) {
    cJSON *data = cJSON_CreateArray();
    ld_pool_list(h->srv->pool, model_entry, data);
    model_listing ml = {data, h->srv};
    if (h->srv->reg) ld_registry_model_list(h->srv->reg, registry_model, &ml);
    return data;
}

int ld_route_models(ld_http *h) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON_AddItemToObject(root, "data", model_list(h));
    return ld_http_json(h, 200, root);
}

int ld_route_model(ld_http *h) {
    const char *name = h->url + strlen("/v1/models/");
    cJSON *data = model_list(h), *found = NULL;
    for (cJSON *m = data->child; m && !found; m = m->next) {
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
        if (id && !strcmp(id, name)) found = m;
    }
    if (found) {
        cJSON *one = cJSON_DetachItemViaPointer(data, found);
        cJSON_Delete(data);
        return ld_http_json(h, 200, one);
    }
    cJSON_Delete(data);
    ld_api_error e;
    memset(&e, 0, sizeof e);
    snprintf(e.code, sizeof e.code, "model_not_found");
    ld_api_fail(&e, 404, "model", "The model '%.160s' does not exist", name);
    return ld_http_error(h, &e);
}

int ld_route_health(ld_http *h) {
    static const char ok[] = "{\"status\":\"ok\"}";
    return ld_http_text(h, 200, "application/json", ok, sizeof ok - 1);
}

int ld_route_metrics(ld_http *h) {
    char *text = ld_metrics_render(h->srv);
    int r = ld_http_text(h, 200, "text/plain; version=0.0.4; charset=utf-8", text ? text : "", text ? strlen(text) : 0);
    free(text);
    return r;
}

/* ---- generation --------------------------------------------------------------------------------- */

/* What a generation request needs besides the job (its view of the answer). */
typedef struct gen_view {
    ld_api_kind kind;
    char id[64], model[260];
    double created;
    bool include_usage, echo, logprobs;
    int n_prompts, n;             /* choices = n_prompts * n, index = prompt * n + k */
    char **prompt_text;           /* echo: each prompt's text */
    size_t *prompt_len;
    int64_t *prompt_tokens;
    bool *role_sent, *finish_sent;
    bool tail_sent;
    ld_server *srv;
    int32_t *bias_ids;            /* logit_bias (a copy) */
    float *bias;
    int n_bias;
    struct logit_ctl *ctl;        /* per choice: what shapes its logits */
    ld_grammar *grammar;          /* grammar / response_format (NULL = none) */
    ld_ctx *gctx;                 /* the grammar states' context (used on the engine thread) */
    int n_choices;
} gen_view;

/* Per choice: the logit bias, then the grammar, applied before each token is sampled. */
typedef struct logit_ctl {
    const gen_view *v;
    ld_grammar_state *gs;
} logit_ctl;

static ld_status ctl_mask(void *user, float *lg, int64_t V) {
    const logit_ctl *c = user;
    for (int i = 0; i < c->v->n_bias; i++)
        if (c->v->bias_ids[i] < V) lg[c->v->bias_ids[i]] += c->v->bias[i];
    return c->gs ? ld_grammar_state_mask(c->gs, lg, V) : LD_OK;
}
static ld_status ctl_accept(void *user, int32_t token) {
    const logit_ctl *c = user;
    return c->gs ? ld_grammar_state_accept(c->gs, token) : LD_OK;
}
static bool ctl_complete(void *user) {
    const logit_ctl *c = user;
    return !c->gs || ld_grammar_state_complete(c->gs);
}

static void gen_view_free(void *p) {
    gen_view *v = p;
    if (!v) return;
    for (int i = 0; v->ctl && i < v->n_choices; i++) ld_grammar_state_free(v->ctl[i].gs);
    ld_grammar_free(v->grammar);
    ld_ctx_free(v->gctx);
    free(v->bias_ids), free(v->bias), free(v->ctl);
    for (int i = 0; v->prompt_text && i < v->n_prompts; i++) free(v->prompt_text[i]);
    free(v->prompt_text), free(v->prompt_len), free(v->prompt_tokens), free(v->role_sent), free(v->finish_sent);
    free(v);
}

static const char *finish_reason(ld_finish f) {
    return f == LD_FINISH_LENGTH ? "length" : "stop";
}

/* One token's text (raw bytes) for logprobs. */
static void token_text(const ld_tokenizer *tok, int32_t id, const char **s, size_t *n) {
    *s = "", *n = 0;
    if (id >= 0) ld_tokenizer_token_bytes(tok, id, s, n);
}

/* Logprobs of tokens [from, to) of choice c, in the route's shape. */
static cJSON *logprobs_json(const gen_view *v, const ld_srv_job *j, const ld_choice *c, int64_t from, int64_t to,
                            size_t text_base) {
    const int k = j->top_k;
    if (v->kind == LD_API_CHAT) {
        cJSON *lp = cJSON_CreateObject(), *content = cJSON_AddArrayToObject(lp, "content");
        for (int64_t t = from; t < to; t++) {
            const char *s;
            size_t n;
            cJSON *e = cJSON_CreateObject(), *bytes = cJSON_CreateArray(), *tops = cJSON_CreateArray();
            token_text(j->tok, c->tok[t], &s, &n);
            add_text(e, "token", s, n);
            cJSON_AddNumberToObject(e, "logprob", c->lp[t]);
            for (size_t b = 0; b < n; b++) cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)s[b]));
            cJSON_AddItemToObject(e, "bytes", bytes);
            for (int i = 0; i < k && c->top_tok[t * k + i] >= 0; i++) {
                cJSON *o = cJSON_CreateObject(), *ob = cJSON_CreateArray();
                token_text(j->tok, c->top_tok[t * k + i], &s, &n);
                add_text(o, "token", s, n);
                cJSON_AddNumberToObject(o, "logprob", c->top_lp[t * k + i]);
                for (size_t b = 0; b < n; b++) cJSON_AddItemToArray(ob, cJSON_CreateNumber((unsigned char)s[b]));
                cJSON_AddItemToObject(o, "bytes", ob);
                cJSON_AddItemToArray(tops, o);
            }
            cJSON_AddItemToObject(e, "top_logprobs", tops);
            cJSON_AddItemToArray(content, e);
        }
        cJSON_AddNullToObject(lp, "refusal");
        return lp;
    }
    cJSON *lp = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(lp, "tokens"),
          *tlp = cJSON_AddArrayToObject(lp, "token_logprobs"), *top = cJSON_AddArrayToObject(lp, "top_logprobs"),
          *off = cJSON_AddArrayToObject(lp, "text_offset");
    for (int64_t t = from; t < to; t++) {
        const char *s;
        size_t n;
        token_text(j->tok, c->tok[t], &s, &n);
        cJSON_AddItemToArray(toks, json_text(s, n));
        cJSON_AddItemToArray(tlp, cJSON_CreateNumber(c->lp[t]));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(text_base + c->off[t])));
        cJSON *alts = cJSON_CreateObject();
        for (int i = 0; i < k && c->top_tok[t * k + i] >= 0; i++) {
            token_text(j->tok, c->top_tok[t * k + i], &s, &n);
            char *key = ld_utf8_valid_copy(s, n);
            if (key && !cJSON_GetObjectItemCaseSensitive(alts, key))
                cJSON_AddNumberToObject(alts, key, c->top_lp[t * k + i]);
            free(key);
        }
        cJSON_AddItemToArray(top, alts);
    }
    return lp;
}

static cJSON *usage_json(const gen_view *v, const ld_srv_job *j) {
    int64_t prompt = 0, gen = 0;
    for (int p = 0; p < v->n_prompts; p++) prompt += v->prompt_tokens[p];
    for (int i = 0; i < j->n_choices; i++) gen += j->out[i].generated;
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", (double)gen);
    cJSON_AddNumberToObject(u, "total_tokens", (double)(prompt + gen));
    return u;
}

static cJSON *envelope(const gen_view *v, bool chunk) {
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "id", v->id);
    cJSON_AddStringToObject(root, "object", v->kind == LD_API_CHAT ? (chunk ? "chat.completion.chunk" : "chat.completion")
                                                                   : "text_completion");
    cJSON_AddNumberToObject(root, "created", floor(v->created));
    cJSON_AddStringToObject(root, "model", v->model);
    cJSON_AddStringToObject(root, "system_fingerprint", "liandan");
    return root;
}

/* The whole answer (job done, lock held by the caller or no longer needed). */
static cJSON *answer(const gen_view *v, const ld_srv_job *j) {
    cJSON *root = envelope(v, false), *choices = cJSON_AddArrayToObject(root, "choices");
    for (int i = 0; i < j->n_choices; i++) {
        const ld_choice *c = &j->out[i];
        cJSON *ch = cJSON_CreateObject();
        cJSON_AddNumberToObject(ch, "index", i);
        size_t base = 0;
        if (v->kind == LD_API_CHAT) {
            cJSON *msg = cJSON_AddObjectToObject(ch, "message");
            cJSON_AddStringToObject(msg, "role", "assistant");
            add_text(msg, "content", c->text.buf ? c->text.buf : "", c->text.len);
            cJSON_AddNullToObject(msg, "refusal");
        } else {
            int p = i / v->n;
            size_t pl = v->echo ? v->prompt_len[p] : 0;
            char *t = malloc(pl + c->text.len + 1);
            if (t) {
                if (pl) memcpy(t, v->prompt_text[p], pl);
                if (c->text.len) memcpy(t + pl, c->text.buf, c->text.len);
                add_text(ch, "text", t, pl + c->text.len);
            }
            free(t);
            base = pl;
        }
        /* logprobs of the tokens that made the returned text (not of a cut stop string) */
        int64_t n = 0;
        while (n < c->n_tok && c->off[n] < c->text.len) n++;
        if (v->logprobs)
            cJSON_AddItemToObject(ch, "logprobs", logprobs_json(v, j, c, 0, n, base));
        else
            cJSON_AddNullToObject(ch, "logprobs");
        cJSON_AddStringToObject(ch, "finish_reason", finish_reason(c->why));
        cJSON_AddItemToArray(choices, ch);
    }
    cJSON_AddItemToObject(root, "usage", usage_json(v, j));
    return root;
}

/* ---- streaming ------------------------------------------------------------------------------------ */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sse_event(sbuf *b, cJSON *obj) {
    char *t = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    size_t n = t ? strlen(t) : 0;
    if (!t || b->len + n + 9 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 9) cap *= 2;
        char *p = t ? realloc(b->p, cap) : NULL;
        if (!p) {
            b->oom = true;
            free(t);
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, "data: ", 6);
    memcpy(b->p + b->len + 6, t, n);
    memcpy(b->p + b->len + 6 + n, "\n\n", 2);
    b->len += n + 8;
    free(t);
}

static void sse_raw(sbuf *b, const char *s) {
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* One chunk for choice i: text delta (may be empty), logprobs of tokens [t0, t1), finish. */
static cJSON *chunk(const gen_view *v, const ld_srv_job *j, int i, const char *text, size_t n, int64_t t0, int64_t t1,
                    const char *finish, bool role) {
    cJSON *root = envelope(v, true), *choices = cJSON_AddArrayToObject(root, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", i);
    if (v->kind == LD_API_CHAT) {
        cJSON *d = cJSON_AddObjectToObject(ch, "delta");
        if (role) cJSON_AddStringToObject(d, "role", "assistant");
        if (n || role) add_text(d, "content", text, n);
    } else {
        add_text(ch, "text", text, n);
    }
    if (v->logprobs && t1 > t0) cJSON_AddItemToObject(ch, "logprobs", logprobs_json(v, j, &j->out[i], t0, t1, 0));
    else cJSON_AddNullToObject(ch, "logprobs");
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    return root;
}

static bool render(ld_sse *s, ld_srv_job *j, char **out, size_t *len, bool *end) {
    gen_view *v = ld_sse_user(s);
    sbuf b = {0};
    pthread_mutex_lock(&j->mu);
    if (j->failed) {
        cJSON *root = cJSON_CreateObject(), *err = cJSON_AddObjectToObject(root, "error");
        cJSON_AddStringToObject(err, "message", j->err_msg);
        cJSON_AddStringToObject(err, "type", j->err_http >= 500 ? "server_error" : "invalid_request_error");
        sse_event(&b, root);
        sse_raw(&b, "data: [DONE]\n\n");
        *end = true;
    } else {
        bool all = true;
        for (int i = 0; i < j->n_choices; i++) {
            ld_choice *c = &j->out[i];
            if (v->kind == LD_API_CHAT && !v->role_sent[i]) {
                sse_event(&b, chunk(v, j, i, "", 0, 0, 0, NULL, true));
                v->role_sent[i] = true;
            }
            size_t ready = c->text.ready;
            if (ready > c->sent) {
                int64_t t1 = c->sent_tok;
                while (t1 < c->n_tok && c->off[t1] < ready) t1++;
                sse_event(&b, chunk(v, j, i, c->text.buf + c->sent, ready - c->sent, c->sent_tok, t1, NULL, false));
                c->sent = ready, c->sent_tok = t1;
            }
            if (c->done && c->sent == c->text.len && !v->finish_sent[i]) {
                sse_event(&b, chunk(v, j, i, "", 0, 0, 0, finish_reason(c->why), false));
                v->finish_sent[i] = true;
            }
            all &= v->finish_sent[i];
        }
        if (all && !v->tail_sent) {
            if (v->include_usage) {
                cJSON *root = envelope(v, true);
                cJSON_AddArrayToObject(root, "choices");
                cJSON_AddItemToObject(root, "usage", usage_json(v, j));
                sse_event(&b, root);
            }
            sse_raw(&b, "data: [DONE]\n\n");
            v->tail_sent = true;
            *end = true;
            if (j->t_first) {
                pthread_mutex_lock(&v->srv->metrics.mu);
                ld_histogram_add(&v->srv->metrics.ttft, j->t_first - j->t_submit);
                pthread_mutex_unlock(&v->srv->metrics.mu);
            }
        }
    }
    pthread_mutex_unlock(&j->mu);
    if (b.oom) {
        free(b.p);
        return false;
    }
    *out = b.p, *len = b.len;
    return true;
}

/* ---- /v1/completions and /v1/chat/completions -------------------------------------------------- */

static uint64_t random_seed(ld_http *h) {
    uint64_t x = (uint64_t)time(NULL) ^ ((uint64_t)(ld_time_now() * 1e9) << 1) ^ __atomic_add_fetch(&h->srv->next_id, 1, __ATOMIC_RELAXED);
    return ld_rng_at(x, 0x5eed);
}

/* The request's grammar (GBNF, a JSON Schema, or any JSON object) compiled into v->grammar,
 * with a context for its states; *gv gets the model's vocabulary trie. */
static ld_status compile_grammar(ld_http *h, const ld_api_request *r, ld_pool_model *m, gen_view *v,
                                 const ld_grammar_vocab **gv, ld_api_error *e) {
    char *gbnf = NULL;
    const char *param = r->grammar ? "grammar" : "response_format";
    ld_status st = LD_OK;
    if (!r->grammar) {
        char *schema = r->json_schema ? cJSON_PrintUnformatted(r->json_schema) : NULL;
        if (r->json_schema && !schema) return ld_api_fail(e, 500, NULL, "out of memory");
        st = ld_grammar_from_json_schema(h->ctx, schema, schema ? strlen(schema) : 0, &gbnf);
        free(schema);
    }
    const char *text = r->grammar ? r->grammar : gbnf;
    if (!st) st = ld_grammar_parse(h->ctx, text, strlen(text), NULL, &v->grammar);
    free(gbnf);
    if (st) return ld_api_fail(e, 400, param, "%s", ld_ctx_error(h->ctx));
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = 1;
    if (ld_ctx_new(&cp, &v->gctx)) return ld_api_fail(e, 500, NULL, "out of memory");
    return (*gv = ld_pool_grammar_vocab(m, e)) ? LD_OK : LD_ERR_INTERNAL;
}

static int respond_generate(ld_http *h, ld_api_request *r, ld_pool_model *m, const char *lora_dir) {
    ld_api_error e;
    memset(&e, 0, sizeof e);
    const bool chat = r->kind == LD_API_CHAT;
    const int n_prompts = chat ? 1 : r->n_inputs, total = n_prompts * r->n;
    gen_view *v = calloc(1, sizeof *v);
    ld_srv_job *j = ld_srv_job_new(LD_SRV_GENERATE, total);
    ld_chat_prompt cp;
    memset(&cp, 0, sizeof cp);
    int32_t **ids = calloc((size_t)n_prompts, sizeof *ids);
    int64_t *lens = calloc((size_t)n_prompts, sizeof *lens);
    if (!v || !j || !ids || !lens) {
        free(v), ld_srv_job_release(j), free(ids), free(lens);
        ld_pool_release(h->srv->pool, m);
        return ld_api_fail(&e, 500, NULL, "out of memory"), ld_http_error(h, &e);
    }
    j->extra = v, j->free_extra = gen_view_free;
    v->kind = r->kind, v->srv = h->srv, v->n = r->n, v->n_prompts = n_prompts, v->echo = r->echo;
    v->include_usage = r->include_usage, v->logprobs = r->top_logprobs >= 0;
    snprintf(v->model, sizeof v->model, "%s", r->model);
    snprintf(j->lora_dir, sizeof j->lora_dir, "%s", lora_dir);
    v->created = (double)time(NULL);
    ld_http_new_id(h, chat ? "chatcmpl" : "cmpl", v->id, sizeof v->id);
    v->prompt_text = calloc((size_t)n_prompts, sizeof *v->prompt_text);
    v->prompt_len = calloc((size_t)n_prompts, sizeof *v->prompt_len);
    v->prompt_tokens = calloc((size_t)n_prompts, sizeof *v->prompt_tokens);
    v->role_sent = calloc((size_t)total, sizeof *v->role_sent);
    v->finish_sent = calloc((size_t)total, sizeof *v->finish_sent);
    v->ctl = calloc((size_t)total, sizeof *v->ctl);
    v->n_choices = v->ctl ? total : 0;
    if (r->n_bias) {
        v->bias_ids = malloc((size_t)r->n_bias * sizeof *v->bias_ids), v->bias = malloc((size_t)r->n_bias * sizeof *v->bias);
        if (v->bias_ids && v->bias) {
            memcpy(v->bias_ids, r->bias_ids, (size_t)r->n_bias * sizeof *v->bias_ids);
            memcpy(v->bias, r->bias, (size_t)r->n_bias * sizeof *v->bias);
            v->n_bias = r->n_bias;
        }
    }
    ld_status st = !v->prompt_text || !v->prompt_len || !v->prompt_tokens || !v->role_sent || !v->finish_sent || !v->ctl ||
                           (r->n_bias && !v->n_bias)
                       ? ld_api_fail(&e, 500, NULL, "out of memory")
                       : LD_OK;
    /* prompts as token ids */
    if (!st && chat) {
        if (!(st = ld_srv_chat_prompt(m, r, &cp, &e))) ids[0] = cp.ids, lens[0] = cp.n, cp.ids = NULL;
    }
    for (int p = 0; !chat && !st && p < n_prompts; p++) {
        const ld_api_input *in = &r->inputs[p];
        if (in->ids) {
            if (!(ids[p] = malloc((size_t)in->n_ids * sizeof(int32_t)))) st = ld_api_fail(&e, 500, NULL, "out of memory");
            else memcpy(ids[p], in->ids, (size_t)in->n_ids * sizeof(int32_t)), lens[p] = in->n_ids;
        } else {
            st = ld_pool_encode(m, in->text, in->text_len, false, false, &ids[p], &lens[p], &e);
            if (!st && r->echo && !(v->prompt_text[p] = malloc(in->text_len + 1))) st = ld_api_fail(&e, 500, NULL, "out of memory");
            if (!st && r->echo) memcpy(v->prompt_text[p], in->text, in->text_len), v->prompt_len[p] = in->text_len;
        }
        if (!st && lens[p] == 0) { /* an empty prompt starts from BOS (or EOS, the document separator) */
            int32_t start = ld_tokenizer_bos_id(m->tok) >= 0 ? ld_tokenizer_bos_id(m->tok) : ld_tokenizer_eos_id(m->tok);
            int32_t *one = realloc(ids[p], sizeof(int32_t));
            if (start < 0) st = ld_api_fail(&e, 400, "prompt", "the prompt is empty and the model has no BOS token");
            else if (!one) st = ld_api_fail(&e, 500, NULL, "out of memory");
            else ids[p] = one, ids[p][0] = start, lens[p] = 1;
        }
    }
    /* the context: prompt + completion must fit */
    const int64_t ctx_len = m->context, vocab = ld_lm_config_of(m->m)->vocab_size;
    int64_t max_prompt = h->srv->p.limits.max_prompt_tokens;
    for (int p = 0; !st && p < n_prompts; p++) {
        v->prompt_tokens[p] = lens[p];
        for (int64_t t = 0; t < lens[p] && !st; t++)
            if (ids[p][t] < 0 || ids[p][t] >= vocab)
                st = ld_api_fail(&e, 400, chat ? "messages" : "prompt", "token id %d is outside the vocabulary of %lld",
                                 ids[p][t], (long long)vocab);
        int64_t want = r->max_tokens > 0 ? r->max_tokens : chat ? ctx_len - lens[p] : 16;
        if (st) break;
        if (max_prompt > 0 && lens[p] > max_prompt)
            st = ld_api_fail(&e, 400, chat ? "messages" : "prompt", "the prompt has %lld tokens; this server accepts at most %lld",
                             (long long)lens[p], (long long)max_prompt);
        else if (lens[p] + want > ctx_len || lens[p] >= ctx_len) {
            snprintf(e.code, sizeof e.code, "context_length_exceeded");
            st = ld_api_fail(&e, 400, chat ? "messages" : "prompt",
                             "This model's maximum context length is %lld tokens. However, you requested %lld tokens "
                             "(%lld in the %s, %lld in the completion). Please reduce the length of the %s or completion.",
                             (long long)ctx_len, (long long)(lens[p] + want), (long long)lens[p], chat ? "messages" : "prompt",
                             (long long)want, chat ? "messages" : "prompt");
        }
    }
    if (!st) {
        for (int i = 0; i < cp.n_stops; i++) j->stops[j->n_stops++] = cp.stops[i];
        for (int i = 0; i < r->n_stop && j->n_stops < 8; i++) j->stops[j->n_stops++] = r->stop[i];
        j->top_k = r->top_logprobs > 0 ? r->top_logprobs : 0;
        j->n_prompt = lens[0];
        int32_t stop_ids[6];
        int n_stop_ids = 0;
        for (int i = 0; i < cp.n_stop_ids; i++) stop_ids[n_stop_ids++] = cp.stop_ids[i];
        if (ld_tokenizer_eos_id(m->tok) >= 0) stop_ids[n_stop_ids++] = ld_tokenizer_eos_id(m->tok);
        uint64_t seed = r->has_seed ? r->seed : random_seed(h);
        const ld_grammar_vocab *gv = NULL;
        if (r->grammar || r->response_format) st = compile_grammar(h, r, m, v, &gv, &e);
        for (int p = 0; p < n_prompts && !st; p++)
            for (int k = 0; k < r->n && !st; k++) {
                int i = p * r->n + k;
                ld_lm_request *q = &j->req[i];
                if (!(j->prompt[i] = malloc((size_t)lens[p] * sizeof(int32_t)))) {
                    st = ld_api_fail(&e, 500, NULL, "out of memory");
                    break;
                }
                memcpy(j->prompt[i], ids[p], (size_t)lens[p] * sizeof(int32_t));
                q->prompt = j->prompt[i], q->n_prompt = lens[p];
                q->max_tokens = r->max_tokens > 0 ? r->max_tokens : chat ? ctx_len - lens[p] : 16;
                q->sample = ld_sample_default_params();
                q->sample.temperature = r->temperature, q->sample.top_p = r->top_p, q->sample.top_k = r->top_k;
                q->sample.min_p = r->min_p, q->sample.repetition_penalty = r->repetition_penalty;
                q->seed = seed, q->stream = (uint64_t)k;
                memcpy(j->stop_ids_store[i], stop_ids, sizeof stop_ids);
                q->stop_ids = j->stop_ids_store[i], q->n_stop_ids = n_stop_ids;
                q->top_logprobs = j->top_k;
                v->ctl[i].v = v;
                if (v->grammar && ld_grammar_state_new(v->gctx, v->grammar, gv, stop_ids, n_stop_ids, &v->ctl[i].gs)) {
                    st = ld_api_fail(&e, 500, NULL, "%s", ld_ctx_error(v->gctx));
                    break;
                }
                if (v->n_bias || v->grammar)
                    q->constraint = (ld_lm_constraint){.mask = ctl_mask, .accept = ctl_accept, .complete = ctl_complete,
                                                       .user = &v->ctl[i]};
            }
    }
    for (int p = 0; p < n_prompts; p++) free(ids[p]);
    free(ids), free(lens), free(cp.ids);
    if (!st && !ld_engine_submit(m->eng, j)) {
        pthread_mutex_lock(&j->mu);
        ld_api_fail(&e, j->err_http, NULL, "%s", j->err_msg);
        pthread_mutex_unlock(&j->mu);
        st = LD_ERR_LIMIT;
    }
    if (st) {
        ld_srv_job_release(j);
        ld_pool_release(h->srv->pool, m);
        return ld_http_error(h, &e);
    }
    if (r->stream) return ld_http_sse(h, j, m, render, v); /* takes j and m */
    /* a whole answer: wait, watching for the client leaving */
    while (!ld_srv_job_wait(j, 0.25))
        if (ld_http_client_gone(h)) {
            pthread_mutex_lock(&h->srv->metrics.mu);
            h->srv->metrics.disconnects++;
            pthread_mutex_unlock(&h->srv->metrics.mu);
            ld_srv_job_cancel(m->eng, j);
            ld_srv_job_release(j);
            ld_pool_release(h->srv->pool, m);
            return 0; /* MHD_NO: close */
        }
    int ret;
    pthread_mutex_lock(&j->mu);
    if (j->failed) {
        ld_api_fail(&e, j->err_http, NULL, "%s", j->err_msg);
        pthread_mutex_unlock(&j->mu);
        ret = ld_http_error(h, &e);
    } else {
        bool broken = false;
        for (int i = 0; i < j->n_choices; i++) broken |= j->out[i].why == LD_FINISH_ERROR;
        cJSON *body = broken ? NULL : answer(v, j);
        if (j->t_first) {
            pthread_mutex_lock(&h->srv->metrics.mu);
            ld_histogram_add(&h->srv->metrics.ttft, j->t_first - j->t_submit);
            pthread_mutex_unlock(&h->srv->metrics.mu);
        }
        pthread_mutex_unlock(&j->mu);
        if (broken) {
            ld_api_fail(&e, 500, NULL, "generation failed (a constraint left no token, or the forward pass failed)");
            ret = ld_http_error(h, &e);
        } else {
            ret = ld_http_json(h, 200, body);
        }
    }
    ld_srv_job_release(j);
    ld_pool_release(h->srv->pool, m);
    return ret;
}

int ld_route_generate(ld_http *h) {
    ld_api_kind kind = strstr(h->url, "/chat/") ? LD_API_CHAT : LD_API_COMPLETION;
    ld_api_limits lim = limits_of(h->srv);
    ld_api_request r;
    ld_api_error e;
    if (ld_api_request_parse(h->ctx, kind, h->body, h->body_len, &lim, &r, &e)) return ld_http_error(h, &e);
    ld_pool_model *m;
    char lora_dir[4096];
    if (ld_pool_acquire_lora(h->srv->pool, r.model, &m, lora_dir, sizeof lora_dir, &e)) {
        ld_api_request_free(&r);
        return ld_http_error(h, &e);
    }
    int ret = respond_generate(h, &r, m, lora_dir);
    ld_api_request_free(&r);
    return ret;
}

/* ---- /v1/embeddings ------------------------------------------------------------------------------------ */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static cJSON *base64_floats(const float *x, int64_t n) {
    const unsigned char *p = (const unsigned char *)x; /* little-endian float32, as OpenAI sends */
    size_t bytes = (size_t)n * 4, o = 0;
    char *s = malloc(4 * ((bytes + 2) / 3) + 1);
    if (!s) return cJSON_CreateNull();
    for (size_t i = 0; i < bytes; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < bytes ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < bytes ? p[i + 2] : 0);
        s[o++] = b64[v >> 18 & 63], s[o++] = b64[v >> 12 & 63];
        s[o++] = i + 1 < bytes ? b64[v >> 6 & 63] : '=';
        s[o++] = i + 2 < bytes ? b64[v & 63] : '=';
    }
    s[o] = 0;
    cJSON *j = cJSON_CreateString(s);
    free(s);
    return j;
}

static int respond_embeddings(ld_http *h, const ld_api_request *r, const float *emb, int64_t dim, int n, int64_t tokens) {
    cJSON *root = cJSON_CreateObject(), *data = cJSON_AddArrayToObject(root, "data");
    cJSON_AddStringToObject(root, "object", "list");
    for (int i = 0; i < n; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "object", "embedding");
        cJSON_AddNumberToObject(d, "index", i);
        if (r->base64) cJSON_AddItemToObject(d, "embedding", base64_floats(emb + (size_t)i * (size_t)dim, dim));
        else cJSON_AddItemToObject(d, "embedding", cJSON_CreateFloatArray(emb + (size_t)i * (size_t)dim, (int)dim));
        cJSON_AddItemToArray(data, d);
    }
    cJSON_AddStringToObject(root, "model", r->model);
    cJSON *u = cJSON_AddObjectToObject(root, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", (double)tokens);
    cJSON_AddNumberToObject(u, "total_tokens", (double)tokens);
    return ld_http_json(h, 200, root);
}

int ld_route_embeddings(ld_http *h) {
    ld_api_limits lim = limits_of(h->srv);
    ld_api_request r;
    ld_api_error e;
    if (ld_api_request_parse(h->ctx, LD_API_EMBEDDING, h->body, h->body_len, &lim, &r, &e)) return ld_http_error(h, &e);
    ld_pool_model *m;
    if (ld_pool_acquire_embed(h->srv->pool, r.model, &m, &e)) {
        ld_api_request_free(&r);
        return ld_http_error(h, &e);
    }
    if (m->clip) { /* an image-text model: images and texts, computed here (serve/clip_embed.c) */
        float *emb = NULL;
        int64_t dim = 0, tokens = 0;
        int ret = ld_clip_embed_request(m, &r, &emb, &dim, &tokens, &e) ? ld_http_error(h, &e)
                                                                         : respond_embeddings(h, &r, emb, dim, r.n_inputs, tokens);
        free(emb);
        ld_pool_release(h->srv->pool, m);
        ld_api_request_free(&r);
        return ret;
    }
    ld_srv_job *j = ld_srv_job_new(LD_SRV_EMBED, r.n_inputs);
    ld_status st = j ? LD_OK : ld_api_fail(&e, 500, NULL, "out of memory");
    int64_t tokens = 0, vocab = ld_lm_config_of(m->m)->vocab_size;
    for (int i = 0; !st && i < r.n_inputs; i++) {
        const ld_api_input *in = &r.inputs[i];
        if (in->image) {
            st = ld_api_fail(&e, 400, "input", "input %d is an image, but model '%s' is not an image-text (clip) model", i,
                             r.model);
        } else if (in->ids) {
            if (!(j->in_ids[i] = malloc((size_t)in->n_ids * sizeof(int32_t)))) st = ld_api_fail(&e, 500, NULL, "out of memory");
            else memcpy(j->in_ids[i], in->ids, (size_t)in->n_ids * sizeof(int32_t)), j->in_len[i] = in->n_ids;
            for (int64_t t = 0; !st && t < in->n_ids; t++)
                if (in->ids[t] >= vocab) st = ld_api_fail(&e, 400, "input", "token id %d is outside the vocabulary", in->ids[t]);
        } else {
            st = ld_pool_encode(m, in->text, in->text_len, false, false, &j->in_ids[i], &j->in_len[i], &e);
        }
        if (!st && j->in_len[i] == 0) st = ld_api_fail(&e, 400, "input", "input %d is empty", i);
        tokens += st ? 0 : j->in_len[i];
    }
    if (!st && !ld_engine_submit(m->eng, j)) {
        pthread_mutex_lock(&j->mu);
        st = ld_api_fail(&e, j->err_http, NULL, "%s", j->err_msg);
        pthread_mutex_unlock(&j->mu);
    }
    while (!st && !ld_srv_job_wait(j, 0.25))
        if (ld_http_client_gone(h)) {
            ld_srv_job_cancel(m->eng, j);
            ld_srv_job_release(j);
            ld_pool_release(h->srv->pool, m);
            ld_api_request_free(&r);
            return 0;
        }
    int ret;
    if (!st && j->failed) st = ld_api_fail(&e, j->err_http, "input", "%s", j->err_msg);
    if (st) ret = ld_http_error(h, &e);
    else ret = respond_embeddings(h, &r, j->embedding, j->dim, j->n_inputs, tokens);
    ld_srv_job_release(j);
    ld_pool_release(h->srv->pool, m);
    ld_api_request_free(&r);
    return ret;
}

/* ---- /tokenize and /detokenize ----------------------------------------------------------------------- */

int ld_route_tokenize(ld_http *h) {
    ld_api_limits lim = limits_of(h->srv);
    ld_api_request r;
    ld_api_error e;
    if (ld_api_request_parse(h->ctx, LD_API_TOKENIZE, h->body, h->body_len, &lim, &r, &e)) return ld_http_error(h, &e);
    ld_pool_model *m;
    if (ld_pool_acquire(h->srv->pool, r.model, &m, &e)) {
        ld_api_request_free(&r);
        return ld_http_error(h, &e);
    }
    int32_t *ids = NULL;
    int64_t n = 0;
    int ret;
    if (ld_pool_encode(m, r.inputs[0].text, r.inputs[0].text_len, false, r.add_special, &ids, &n, &e)) {
        ret = ld_http_error(h, &e);
    } else {
        cJSON *root = cJSON_CreateObject(), *toks = cJSON_AddArrayToObject(root, "tokens");
        for (int64_t i = 0; i < n; i++) {
            if (!r.with_pieces) {
                cJSON_AddItemToArray(toks, cJSON_CreateNumber(ids[i]));
                continue;
            }
            const char *s;
            size_t len;
            cJSON *t = cJSON_CreateObject();
            cJSON_AddNumberToObject(t, "id", ids[i]);
            token_text(m->tok, ids[i], &s, &len);
            add_text(t, "piece", s, len);
            cJSON_AddItemToArray(toks, t);
        }
        ret = ld_http_json(h, 200, root);
    }
    free(ids);
    ld_pool_release(h->srv->pool, m);
    ld_api_request_free(&r);
    return ret;
}

int ld_route_detokenize(ld_http *h) {
    ld_api_limits lim = limits_of(h->srv);
    ld_api_request r;
    ld_api_error e;
    if (ld_api_request_parse(h->ctx, LD_API_DETOKENIZE, h->body, h->body_len, &lim, &r, &e)) return ld_http_error(h, &e);
    ld_pool_model *m;
    if (ld_pool_acquire(h->srv->pool, r.model, &m, &e)) {
        ld_api_request_free(&r);
        return ld_http_error(h, &e);
    }
    int64_t V = ld_tokenizer_vocab_size(m->tok);
    ld_status st = LD_OK;
    for (int64_t i = 0; i < r.n_tokens && !st; i++)
        if (r.tokens[i] >= V) st = ld_api_fail(&e, 400, "tokens", "token id %d is outside the vocabulary of %lld", r.tokens[i], (long long)V);
    size_t need = 0, cap = (size_t)r.n_tokens * 8 + 16;
    char *text = st ? NULL : malloc(cap);
    if (!st && !text) st = ld_api_fail(&e, 500, NULL, "out of memory");
    if (!st) {
        pthread_mutex_lock(&m->tok_mu);
        ld_status ds = ld_tokenizer_decode(m->tok, r.tokens, (size_t)r.n_tokens, false, text, cap, &need);
        if (ds == LD_ERR_LIMIT) {
            char *more = realloc(text, need + 1);
            if (more) text = more, cap = need + 1, ds = ld_tokenizer_decode(m->tok, r.tokens, (size_t)r.n_tokens, false, text, cap, &need);
        }
        pthread_mutex_unlock(&m->tok_mu);
        if (ds) st = ld_api_fail(&e, 400, "tokens", "cannot decode these tokens");
    }
    int ret;
    if (st) {
        ret = ld_http_error(h, &e);
    } else {
        cJSON *root = cJSON_CreateObject();
        add_text(root, "content", text, need);
        ret = ld_http_json(h, 200, root);
    }
    free(text);
    ld_pool_release(h->srv->pool, m);
    ld_api_request_free(&r);
    return ret;
}

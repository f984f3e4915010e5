/* serve/model_pool.c — models of a directory loaded on first use, evicted least recently
 * used under a memory budget (model_pool.h). */
#include "serve/model_pool.h"

#include "liandan/adapter.h"

#include "liandan/grammar.h"
#include "liandan/io.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { POOL_UNLOADED, POOL_LOADING, POOL_READY, POOL_FAILED };

struct ld_pool {
    ld_ctx *ctx;          /* errors of name checks (under mu) */
    char root[4096];
    ld_pool_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ld_pool_model **models;
    int n, cap;
    bool closing;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

ld_status ld_pool_new(ld_ctx *ctx, const ld_pool_params *p, ld_pool **out) {
    *out = NULL;
    struct stat sb;
    if (!p->root || stat(p->root, &sb) || !S_ISDIR(sb.st_mode))
        return ld_error(ctx, LD_ERR_NOT_FOUND, "models directory %s: not a readable directory", p->root ? p->root : "(none)");
    ld_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return ld_error(ctx, LD_ERR_NOMEM, "out of memory");
    ld_ctx_params cp = ld_ctx_default_params();
    if (ld_ctx_new(&cp, &pool->ctx)) return free(pool), ld_error(ctx, LD_ERR_NOMEM, "out of memory");
    snprintf(pool->root, sizeof pool->root, "%s", p->root);
    pool->p = *p;
    pool->p.root = pool->root;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->cv, NULL);
    *out = pool;
    return LD_OK;
}

static void unload(ld_pool_model *m) {
    ld_engine_stop(m->eng);
    ld_grammar_vocab_free(m->gvocab);
    m->gvocab = NULL;
    ld_tokenizer_free(m->tok);
    ld_lm_free(m->m);
    ld_clip_free(m->clip);
    m->clip = NULL;
    ld_ctx_free(m->ctx);
    ld_ctx_free(m->tok_ctx);
    m->eng = NULL, m->tok = NULL, m->m = NULL, m->ctx = m->tok_ctx = NULL;
    m->state = POOL_UNLOADED, m->bytes = 0;
}

void ld_pool_halt(ld_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->closing = true;
    while (true) { /* wait for loads in progress */
        bool loading = false;
        for (int i = 0; i < p->n; i++) loading |= p->models[i]->state == POOL_LOADING;
        if (!loading) break;
        pthread_cond_wait(&p->cv, &p->mu);
    }
    for (int i = 0; i < p->n; i++) ld_engine_halt(p->models[i]->eng);
    pthread_mutex_unlock(&p->mu);
}

void ld_pool_free(ld_pool *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        unload(p->models[i]);
        pthread_mutex_destroy(&p->models[i]->tok_mu);
        free(p->models[i]);
    }
    free(p->models);
    ld_ctx_free(p->ctx);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

/* Is path a model: a directory with config.json, or a GGUF file. */
static bool is_model(const char *path, bool *gguf, double *mtime) {
    struct stat sb;
    if (stat(path, &sb)) return false;
    *mtime = (double)sb.st_mtime;
    if (S_ISREG(sb.st_mode)) return *gguf = true, ld_lm_gguf_sniff(path);
    if (!S_ISDIR(sb.st_mode)) return false;
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", path);
    *gguf = false;
    return stat(cfg, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The path of model `name` (checked, inside root), or an error in e. */
static bool resolve(ld_pool *p, const char *name, char *path, size_t cap, bool *gguf, double *mtime, ld_api_error *e) {
    bool exists = false;
    char file[200];
    if (ld_name_check(p->ctx, "model", name))
        return ld_api_fail(e, 404, "model", "The model '%.160s' does not exist: %s", name, ld_ctx_error(p->ctx)), false;
    if (!ld_path_inside(p->ctx, p->root, name, path, cap, &exists) && exists && is_model(path, gguf, mtime)) return true;
    snprintf(file, sizeof file, "%s.gguf", name);
    if (!ld_path_inside(p->ctx, p->root, file, path, cap, &exists) && exists && is_model(path, gguf, mtime) && *gguf)
        return true;
    snprintf(e->code, sizeof e->code, "model_not_found");
    ld_api_fail(e, 404, "model", "The model '%.160s' does not exist", name);
    return false;
}

/* Loads m (pool lock not held). */
static bool load(ld_pool *p, ld_pool_model *m) {
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = p->p.threads, cp.log = p->p.log, cp.log_user = p->p.log_user, cp.log_level = LD_LOG_INFO;
    if (ld_ctx_new(&cp, &m->ctx) || ld_ctx_new(&cp, &m->tok_ctx)) {
        snprintf(m->err, sizeof m->err, "out of memory");
        return false;
    }
    if (!m->gguf && ld_clip_dir_sniff(m->path)) { /* an image-text model: computed on the request's thread */
        if (ld_clip_load(m->ctx, m->path, &m->clip, &m->tok)) {
            snprintf(m->err, sizeof m->err, "loading: %s", ld_ctx_error(m->ctx));
            return false;
        }
        m->bytes = (size_t)ld_params_numel(ld_clip_params(m->clip), false) * sizeof(float);
        return true;
    }
    /* the tokenizer gets its own context: HTTP threads use it while the engine computes */
    ld_status st = m->gguf ? ld_lm_load_gguf(m->ctx, m->path, &m->m, NULL) : ld_lm_load(m->ctx, m->path, &m->m);
    if (!st && ld_tokenizer_open(m->tok_ctx, m->path, &m->tok)) {
        snprintf(m->err, sizeof m->err, "loading the tokenizer: %s", ld_ctx_error(m->tok_ctx));
        return false;
    }
    if (st) {
        snprintf(m->err, sizeof m->err, "loading: %s", ld_ctx_error(m->ctx));
        return false;
    }
    const ld_lm_config *c = ld_lm_config_of(m->m);
    if (ld_tokenizer_vocab_size(m->tok) > c->vocab_size) {
        snprintf(m->err, sizeof m->err, "the tokenizer has %lld tokens but the model's vocab_size is %lld",
                 (long long)ld_tokenizer_vocab_size(m->tok), (long long)c->vocab_size);
        return false;
    }
    ld_lm_batch_params bp = p->p.batch;
    if (bp.max_len <= 0 || bp.max_len > c->max_position) bp.max_len = c->max_position < 2048 ? c->max_position : 2048;
    m->context = bp.max_len;
    char err[512];
    if (ld_engine_start(m->m, m->tok, &bp, p->p.quantize, &m->eng, err, sizeof err)) {
        snprintf(m->err, sizeof m->err, "starting: %s: %s", err, ld_ctx_error(m->ctx));
        return false;
    }
    struct stat sb;
    size_t file = m->gguf && !stat(m->path, &sb) ? (size_t)sb.st_size : 0;
    m->bytes = (size_t)ld_lm_config_num_params(c) * sizeof(float) + file + ld_engine_kv_bytes(m->eng);
    return true;
}

/* Frees room for `need` bytes by unloading idle models, least recently used first (pool lock
 * held). False when the budget cannot be met now. */
static bool make_room(ld_pool *p, size_t need, const ld_pool_model *keep) {
    if (!p->p.memory_budget) return true;
    for (;;) {
        size_t used = 0;
        ld_pool_model *lru = NULL;
        for (int i = 0; i < p->n; i++) {
            ld_pool_model *m = p->models[i];
            used += m->bytes;
            if (m != keep && m->state == POOL_READY && m->users == 0 && (!lru || m->last_used < lru->last_used)) lru = m;
        }
        if (used + need <= p->p.memory_budget) return true;
        if (!lru) return false;
        if (p->p.log) {
            char line[256];
            snprintf(line, sizeof line, "serve: unloading model %s (least recently used) to stay in the memory budget",
                     lru->name);
            p->p.log(p->p.log_user, LD_LOG_INFO, line);
        }
        unload(lru);
    }
}

static ld_status acquire(ld_pool *p, const char *name, bool allow_clip, ld_pool_model **out, ld_api_error *e) {
    *out = NULL;
    char path[4096];
    bool gguf = false;
    double mtime = 0;
    pthread_mutex_lock(&p->mu);
    if (p->closing) {
        pthread_mutex_unlock(&p->mu);
        return ld_api_fail(e, 503, NULL, "the server is shutting down");
    }
    if (!resolve(p, name, path, sizeof path, &gguf, &mtime, e)) {
        pthread_mutex_unlock(&p->mu);
        return LD_ERR_NOT_FOUND;
    }
    ld_pool_model *m = NULL;
    for (int i = 0; i < p->n && !m; i++)
        if (!strcmp(p->models[i]->name, name)) m = p->models[i];
    if (!m) {
        if (p->n == p->cap) {
            int cap = p->cap ? 2 * p->cap : 8;
            ld_pool_model **ms = realloc(p->models, (size_t)cap * sizeof *ms);
            if (!ms) {
                pthread_mutex_unlock(&p->mu);
                return ld_api_fail(e, 503, NULL, "out of memory");
            }
            p->models = ms, p->cap = cap;
        }
        if (!(m = calloc(1, sizeof *m))) {
            pthread_mutex_unlock(&p->mu);
            return ld_api_fail(e, 503, NULL, "out of memory");
        }
        snprintf(m->name, sizeof m->name, "%s", name);
        pthread_mutex_init(&m->tok_mu, NULL);
        p->models[p->n++] = m;
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    m->gguf = gguf, m->created = mtime;
    while (m->state == POOL_LOADING) pthread_cond_wait(&p->cv, &p->mu);
    if (p->closing) {
        pthread_mutex_unlock(&p->mu);
        return ld_api_fail(e, 503, NULL, "the server is shutting down");
    }
    if (m->state == POOL_UNLOADED || m->state == POOL_FAILED) {
        /* a first estimate (the file's size) so two loads do not overrun the budget together */
        struct stat sb;
        size_t guess = stat(path, &sb) ? 0 : (size_t)sb.st_size;
        if (!make_room(p, guess, m)) {
            pthread_mutex_unlock(&p->mu);
            return ld_api_fail(e, 503, "model", "model '%s' does not fit in the memory budget while other models are busy; retry later",
                               name);
        }
        m->state = POOL_LOADING, m->err[0] = 0;
        pthread_mutex_unlock(&p->mu);
        bool ok = load(p, m);
        pthread_mutex_lock(&p->mu);
        if (!ok) {
            if (p->p.log) {
                char line[700];
                snprintf(line, sizeof line, "serve: model %s: %s", m->name, m->err);
                p->p.log(p->p.log_user, LD_LOG_ERROR, line);
            }
            unload(m);
            m->state = POOL_FAILED;
        } else {
            m->state = POOL_READY;
            make_room(p, 0, m); /* the real size may be larger than the guess */
        }
        pthread_cond_broadcast(&p->cv);
    }
    if (m->state != POOL_READY) {
        pthread_mutex_unlock(&p->mu);
        return ld_api_fail(e, 500, "model", "model '%s' could not be loaded: %s", name, m->err);
    }
    if (m->clip && !allow_clip) {
        pthread_mutex_unlock(&p->mu);
        return ld_api_fail(e, 400, "model", "model '%s' is an image-text (clip) model: only /v1/embeddings serves it", name);
    }
    m->users++;
    m->last_used = now_s();
    *out = m;
    pthread_mutex_unlock(&p->mu);
    return LD_OK;
}

ld_status ld_pool_acquire(ld_pool *p, const char *name, ld_pool_model **out, ld_api_error *e) {
    return acquire(p, name, false, out, e);
}

ld_status ld_pool_acquire_embed(ld_pool *p, const char *name, ld_pool_model **out, ld_api_error *e) {
    return acquire(p, name, true, out, e);
}

void ld_pool_release(ld_pool *p, ld_pool_model *m) {
    if (!m) return;
    pthread_mutex_lock(&p->mu);
    m->users--;
    m->last_used = now_s();
    pthread_mutex_unlock(&p->mu);
}

static int by_name(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void ld_pool_list(ld_pool *p, void (*fn)(void *user, const char *name, bool loaded, double created), void *user) {
    DIR *d = opendir(p->root);
    if (!d) return;
    char **names = NULL;
    int n = 0, cap = 0;
    for (struct dirent *de; (de = readdir(d));) {
        char name[200];
        snprintf(name, sizeof name, "%s", de->d_name);
        size_t l = strlen(name);
        if (l > 5 && !strcmp(name + l - 5, ".gguf")) name[l - 5] = 0;
        char path[4096];
        bool gguf, exists;
        double mtime;
        if (ld_name_check(NULL, "model", name) || ld_path_inside(NULL, p->root, de->d_name, path, sizeof path, &exists) ||
            !exists || !is_model(path, &gguf, &mtime))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(name))) break;
        n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    for (int i = 0; i < n; i++) {
        if (i && !strcmp(names[i], names[i - 1])) continue; /* x and x.gguf: the directory wins */
        bool loaded = false;
        double created = 0;
        pthread_mutex_lock(&p->mu);
        for (int k = 0; k < p->n; k++)
            if (!strcmp(p->models[k]->name, names[i])) loaded = p->models[k]->state == POOL_READY;
        pthread_mutex_unlock(&p->mu);
        char path[4096];
        bool gguf;
        ld_api_error e;
        memset(&e, 0, sizeof e);
        pthread_mutex_lock(&p->mu);
        resolve(p, names[i], path, sizeof path, &gguf, &created, &e);
        pthread_mutex_unlock(&p->mu);
        fn(user, names[i], loaded, created);
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

void ld_pool_each_loaded(ld_pool *p, void (*fn)(void *user, ld_pool_model *m), void *user) {
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n; i++)
        if (p->models[i]->state == POOL_READY) fn(user, p->models[i]);
    pthread_mutex_unlock(&p->mu);
}

ld_status ld_pool_encode(ld_pool_model *m, const char *text, size_t len, bool special, bool add_bos, int32_t **ids,
                         int64_t *n, ld_api_error *e) {
    unsigned flags = (special ? 0 : LD_ENCODE_SPECIAL_AS_TEXT) | (add_bos ? LD_ENCODE_ADD_BOS : 0);
    size_t cap = len + 16, need = 0;
    *ids = malloc(cap * sizeof **ids);
    if (!*ids) return ld_api_fail(e, 500, NULL, "out of memory");
    pthread_mutex_lock(&m->tok_mu);
    ld_status st = ld_tokenizer_encode(m->tok, text, len, flags, *ids, cap, &need);
    if (st == LD_ERR_LIMIT) {
        int32_t *more = realloc(*ids, need * sizeof **ids);
        if (more) *ids = more, st = ld_tokenizer_encode(m->tok, text, len, flags, *ids, need, &need);
    }
    char msg[256];
    if (st) snprintf(msg, sizeof msg, "%s", ld_ctx_error(m->tok_ctx));
    pthread_mutex_unlock(&m->tok_mu);
    if (st) {
        free(*ids), *ids = NULL;
        return ld_api_fail(e, 400, NULL, "cannot tokenize the text: %s", msg);
    }
    *n = (int64_t)need;
    return LD_OK;
}

const ld_grammar_vocab *ld_pool_grammar_vocab(ld_pool_model *m, ld_api_error *e) {
    pthread_mutex_lock(&m->tok_mu);
    if (!m->gvocab && ld_grammar_vocab_new(m->tok_ctx, m->tok, &m->gvocab)) ld_api_fail(e, 500, NULL, "%s", ld_ctx_error(m->tok_ctx));
    const ld_grammar_vocab *v = m->gvocab;
    pthread_mutex_unlock(&m->tok_mu);
    return v;
}

ld_status ld_pool_acquire_lora(ld_pool *p, const char *name, ld_pool_model **out, char *lora_dir, size_t cap,
                               ld_api_error *e) {
    lora_dir[0] = 0;
    const char *colon = strchr(name, ':');
    if (!colon) return ld_pool_acquire(p, name, out, e);
    *out = NULL;
    char base[200];
    bool exists = false;
    if ((size_t)(colon - name) >= sizeof base) return ld_api_fail(e, 404, "model", "The model '%.160s' does not exist", name);
    memcpy(base, name, (size_t)(colon - name)), base[colon - name] = 0;
    pthread_mutex_lock(&p->mu);
    bool ok = !ld_name_check(p->ctx, "adapter", colon + 1) &&
              !ld_path_inside(p->ctx, p->root, colon + 1, lora_dir, cap, &exists) && exists && ld_adapter_sniff(lora_dir);
    pthread_mutex_unlock(&p->mu);
    if (!ok) {
        lora_dir[0] = 0;
        snprintf(e->code, sizeof e->code, "model_not_found");
        return ld_api_fail(e, 404, "model", "The model '%.160s' does not exist (no adapter '%.100s' in the models directory)",
                           name, colon + 1);
    }
    return ld_pool_acquire(p, base, out, e);
}

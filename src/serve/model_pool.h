/* serve/model_pool.h — the models a server offers: every model directory (config.json) and
 * *.gguf file directly inside the models directory, by name (the directory's name, the file's
 * name without ".gguf"). A model is loaded on first use with its tokenizer and an engine
 * thread; when the loaded models and their KV caches would pass the memory budget, the least
 * recently used model with no request in flight is unloaded. Names are checked
 * (ld_name_check) and resolved inside the directory only (ld_path_inside). */
#ifndef LD_SERVE_MODEL_POOL_H
#define LD_SERVE_MODEL_POOL_H

#include <pthread.h>

#include "liandan/batch.h"
#include "liandan/causal_lm.h"
#include "liandan/clip.h"
#include "liandan/tokenizer.h"
#include "serve/api_request.h"
#include "serve/engine.h"

typedef struct ld_pool ld_pool;

typedef struct ld_pool_model {
    char name[160];
    char path[4096];
    bool gguf;
    int state;               /* POOL_* in model_pool.c */
    ld_ctx *ctx;             /* the engine thread's */
    ld_ctx *tok_ctx;         /* the tokenizer's (used under tok_mu) */
    pthread_mutex_t tok_mu;
    ld_lm *m;                /* NULL for an image-text model */
    ld_clip *clip;           /* an image-text (clip) model: no engine; used under tok_mu */
    ld_tokenizer *tok;
    ld_engine *eng;
    int users;               /* requests holding it */
    double last_used;
    size_t bytes;            /* weights + KV cache, as counted against the budget */
    int64_t context;         /* tokens a sequence may hold */
    double created;          /* file time, for /v1/models */
    struct ld_grammar_vocab *gvocab; /* the vocabulary trie for grammars (built on first use, under tok_mu) */
    char err[512];
} ld_pool_model;

typedef struct ld_pool_params {
    const char *root;
    int threads;
    size_t memory_budget;    /* 0 = none */
    ld_lm_batch_params batch;
    ld_dtype quantize;       /* LD_DTYPE_COUNT = as stored */
    ld_log_fn log;
    void *log_user;
} ld_pool_params;

ld_status ld_pool_new(ld_ctx *ctx, const ld_pool_params *p, ld_pool **out);
/* Ends every request (engines halt) and refuses new ones (503): the first step of a stop. */
void ld_pool_halt(ld_pool *p);
/* Stops every engine and frees every model. */
void ld_pool_free(ld_pool *p);
/* The model called name, loaded if it was not (this call waits); released with
 * ld_pool_release. Errors (in e): 404 model_not_found (unknown or bad name), 503 when it
 * cannot be loaded in the budget now (others are busy), 500 when loading failed. */
ld_status ld_pool_acquire(ld_pool *p, const char *name, ld_pool_model **out, ld_api_error *e);
/* The same, also for an image-text (clip) model (m->clip; ld_pool_acquire answers 400 for
 * one): for /v1/embeddings. */
ld_status ld_pool_acquire_embed(ld_pool *p, const char *name, ld_pool_model **out, ld_api_error *e);
/* The same for a name "BASE:ADAPTER" too: the base model, and in lora_dir the adapter's
 * directory (ADAPTER, checked like a model name, inside the models directory, holding an
 * adapter_config.json); lora_dir is "" for a plain name. 404 model_not_found for a missing
 * adapter. */
ld_status ld_pool_acquire_lora(ld_pool *p, const char *name, ld_pool_model **out, char *lora_dir, size_t cap,
                               ld_api_error *e);
void ld_pool_release(ld_pool *p, ld_pool_model *m);
/* Calls fn for every model name in the directory, in name order, with whether it is loaded
 * and its file time. */
void ld_pool_list(ld_pool *p, void (*fn)(void *user, const char *name, bool loaded, double created), void *user);
/* Calls fn for every loaded model (for metrics), under the pool's lock. */
void ld_pool_each_loaded(ld_pool *p, void (*fn)(void *user, ld_pool_model *m), void *user);
/* Tokenizes text with the model's tokenizer (specials as text unless `special`), into a
 * malloc'd array. */
ld_status ld_pool_encode(ld_pool_model *m, const char *text, size_t len, bool special, bool add_bos, int32_t **ids,
                         int64_t *n, ld_api_error *e);

/* The model's vocabulary trie for grammar-constrained requests (built once). */
const struct ld_grammar_vocab *ld_pool_grammar_vocab(ld_pool_model *m, ld_api_error *e);

#endif

/* serve/engine.h — one model's compute thread. HTTP threads hand it jobs (a generation
 * request with n choices, or an embedding request); the thread feeds them to the model's
 * continuous-batching scheduler (liandan/batch.h) — a generation may name a LoRA adapter
 * of the model, loaded by the thread on first use and run per sequence beside the base's and
 * other adapters' requests — runs one forward pass per step, and
 * publishes each choice's text, logprobs and end under the job's lock. A job is shared by the
 * HTTP thread and the engine (reference counted); cancelling one (client gone) ends its
 * sequences at the next loop turn, freeing their slots and KV pages. */
#ifndef LD_SERVE_ENGINE_H
#define LD_SERVE_ENGINE_H

#include <pthread.h>

#include "liandan/batch.h"
#include "serve/text_stream.h"

typedef struct ld_engine ld_engine;

/* What one choice produced so far (read under job->mu). */
typedef struct ld_choice {
    ld_text_stream text;
    size_t sent;          /* bytes of text the HTTP side has sent (streaming) */
    int32_t *tok;         /* generated tokens, their logprobs, text offsets, and the top
                             alternatives (top_k of them per token) when asked */
    float *lp;
    size_t *off;
    int32_t *top_tok;
    float *top_lp;
    int64_t n_tok, cap, sent_tok;
    bool done;
    ld_finish why;
    int64_t prompt_computed, generated;
    int64_t batch_id;
    struct ld_srv_job *job;   /* back pointers for the scheduler's callbacks */
    int index;
} ld_choice;

typedef enum { LD_SRV_GENERATE, LD_SRV_EMBED } ld_srv_job_kind;

typedef struct ld_srv_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    ld_srv_job_kind kind;
    /* generation: one request per choice (prompt ids owned by the job) */
    int n_choices;
    ld_lm_request *req;
    ld_choice *out;
    int32_t **prompt;
    int64_t n_prompt;     /* prompt tokens (all choices share the prompt) */
    int top_k;            /* top logprobs per token (0 = none) */
    const char *stops[8];
    int n_stops;
    int32_t (*stop_ids_store)[6]; /* per choice: the tokens that end it (req[i].stop_ids) */
    int n_done;
    bool cancel;          /* set by the HTTP side: the client is gone */
    bool failed;          /* the engine refused or lost it: err_http/err_msg say why */
    int err_http;
    char err_msg[256];
    char lora_dir[4096];  /* generation with a LoRA adapter: its directory ("" = the base) */
    double t_submit, t_first, t_done;
    /* embedding: inputs (owned), results [n_inputs][C] */
    int n_inputs;
    int32_t **in_ids;
    int64_t *in_len;
    float *embedding;
    int64_t dim;
    const ld_tokenizer *tok; /* set by the engine at submit */
    void *extra;          /* the creator's (grammar states...), freed by free_extra */
    void (*free_extra)(void *extra);
} ld_srv_job;

/* A new job with refs = 1 (the creator's). */
ld_srv_job *ld_srv_job_new(ld_srv_job_kind kind, int n);
void ld_srv_job_release(ld_srv_job *j); /* frees at refs == 0 */
/* Asks the engine to end the job (client gone); safe from any thread. */
void ld_srv_job_cancel(ld_engine *e, ld_srv_job *j);
/* Waits until every choice is done or `timeout_s` passes; true when done. */
bool ld_srv_job_wait(ld_srv_job *j, double timeout_s);
/* Waits for any news from the engine (a token, an end) or `timeout_s`. */
void ld_srv_job_wait_progress(ld_srv_job *j, double timeout_s);

typedef struct ld_engine_stats {
    ld_lm_batch_stats batch;
    int64_t embed_tokens;
} ld_engine_stats;

/* Starts the engine thread for model m (borrowed) with tokenizer tok (read only here). The
 * model's ld_ctx is used only by this thread from now on. */
ld_status ld_engine_start(ld_lm *m, const ld_tokenizer *tok, const ld_lm_batch_params *bp, ld_dtype quantize,
                          ld_engine **out, char *err, size_t err_cap);
/* Queues a job (takes a reference). Fails with 429 (queue full) or 503 (stopping) in
 * j->err_http. */
bool ld_engine_submit(ld_engine *e, ld_srv_job *j);
void ld_engine_stats_get(ld_engine *e, ld_engine_stats *out);
/* Jobs queued or running. */
int ld_engine_load(ld_engine *e);
size_t ld_engine_kv_bytes(ld_engine *e);
/* Ends every job (cancelled) and joins the thread; the engine refuses new jobs (503) but
 * stays valid for ld_srv_job_cancel until ld_engine_free. */
void ld_engine_halt(ld_engine *e);
/* Halts (if needed) and frees. */
void ld_engine_stop(ld_engine *e);

#endif

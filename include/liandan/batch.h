/* liandan/batch.h — continuous batching for the causal LM: a scheduler that keeps many
 * independent generation requests in flight on one session.
 *
 * Each ld_lm_batch_step() runs ONE forward pass (ld_lm_session_eval) for every active
 * sequence: one token for each sequence that is decoding, plus chunks of the prompts still
 * being read (prefill), up to step_tokens tokens in all. Requests join and leave between
 * steps. The KV cache is paged with a byte budget: a request is admitted when the pages for
 * its prompt and max_tokens are free (so a running request never runs out), and waits in a
 * bounded queue otherwise. Finished sequences stay cached while room allows, and a new
 * request whose prompt starts with tokens some cached or running sequence already holds
 * shares those pages instead of recomputing them (prefix reuse).
 *
 * Not thread-safe: one thread submits, cancels and steps (the server runs one such thread
 * per model and hands requests to it). Callbacks run inside ld_lm_batch_step/cancel. */
#ifndef LIANDAN_BATCH_H
#define LIANDAN_BATCH_H

#include "liandan/infer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ld_lm_batch ld_lm_batch;

typedef struct ld_lm_batch_params {
    int max_seqs;          /* sequences in flight at once (default 16) */
    int max_queue;         /* requests waiting for a slot or KV pages; more are refused (default 64) */
    int64_t max_len;       /* tokens one sequence may hold, prompt included (0 = the model's context, at most 2048) */
    int64_t step_tokens;   /* tokens per forward pass: decodes + prefill chunks (default 256) */
    int64_t page_tokens;   /* tokens per KV page (default 16) */
    size_t kv_bytes;       /* KV cache budget (0 = enough for max_seqs sequences of max_len) */
    int cache_seqs;        /* finished sequences kept for prefix reuse (default max_seqs; 0 = none) */
    int64_t min_prefix;    /* the shortest shared prefix worth reusing, in tokens (default 8) */
    ld_dtype kv_type_k;    /* KV cache types (ld_lm_session_params): LD_F32 (default), LD_F16, LD_Q8_0 */
    ld_dtype kv_type_v;
} ld_lm_batch_params;
ld_lm_batch_params ld_lm_batch_default_params(void);

/* Why a request ended. */
#define LD_FINISH_TABLE(X)                                                  \
    X(LD_FINISH_STOP, "stop")           /* EOS, a stop token, or on_token returned false */ \
    X(LD_FINISH_LENGTH, "length")       /* max_tokens, or the sequence reached max_len */ \
    X(LD_FINISH_CANCELLED, "cancelled") /* ld_lm_batch_cancel */                          \
    X(LD_FINISH_ERROR, "error")         /* a constraint failed, or the forward pass did */
typedef enum ld_finish {
#define LD_FINISH_ENUM_(e, s) e,
    LD_FINISH_TABLE(LD_FINISH_ENUM_)
#undef LD_FINISH_ENUM_
} ld_finish;
const char *ld_finish_name(ld_finish f); /* "stop", "length", ... */

/* One generated token: its id, log-probability under the model (log softmax of the raw
 * logits) and, when the request asked for top_logprobs = k > 0, the k most likely tokens
 * and their log-probabilities (top[0] is the most likely). Valid during the callback. */
typedef struct ld_lm_token_info {
    int32_t token;
    float logprob;
    int n_top;
    const int32_t *top;
    const float *top_logprob;
} ld_lm_token_info;

typedef struct ld_lm_request {
    const int32_t *prompt;   /* copied at submit */
    int64_t n_prompt;        /* >= 1 */
    ld_sample_params sample;
    int64_t max_tokens;      /* new tokens, >= 1 */
    uint64_t seed, stream;   /* samples from ld_rng_at(seed, stream): ld_lm_generate's sequence `stream` */
    const int32_t *stop_ids; /* tokens that end the request (not reported), e.g. EOS; copied */
    int n_stop_ids;
    int top_logprobs;        /* 0..20 */
    int lora;                /* 0 = the base model; else the LoRA adapter ld_lm_session_add_lora gave
                                this number on the scheduler's session: requests of different
                                adapters share steps, prefixes only with their own adapter's */
    ld_lm_constraint constraint;
    /* Called for each generated token; return false to end the request (LD_FINISH_STOP),
     * e.g. when a stop string appeared. May be NULL. */
    bool (*on_token)(void *user, const ld_lm_token_info *t);
    /* Called exactly once when the request ends (after a successful submit), with the prompt
     * tokens that were computed (not reused from a shared prefix) and the generated count. */
    void (*on_done)(void *user, ld_finish why, int64_t prompt_computed, int64_t generated);
    void *user;
} ld_lm_request;

/* Creates a scheduler for model m (borrowed; must outlive it), with its own session. */
ld_status ld_lm_batch_new(ld_lm *m, const ld_lm_batch_params *p, ld_lm_batch **out);
void ld_lm_batch_free(ld_lm_batch *b); /* ends every request (on_done: cancelled) first */
/* The session the scheduler computes with (e.g. to quantize it before the first request). */
ld_lm_session *ld_lm_batch_session(ld_lm_batch *b);

/* Queues a request; *id (may be NULL) receives its handle (> 0). Errors: LD_ERR_LIMIT when
 * the queue is full (try later) or when the request could never fit (prompt + max_tokens past
 * max_len or the KV budget: the message says which); LD_ERR_INVALID_ARG for bad fields (token
 * ids outside the vocabulary, n_prompt < 1, ...). On error on_done is not called. */
ld_status ld_lm_batch_submit(ld_lm_batch *b, const ld_lm_request *r, int64_t *id);
/* Ends a request now (on_done: LD_FINISH_CANCELLED): its slot and KV pages are free when
 * this returns. Unknown or finished ids are ignored (false). */
bool ld_lm_batch_cancel(ld_lm_batch *b, int64_t id);
/* Runs one forward pass for every active sequence (admitting queued requests first) and
 * delivers the tokens it produced. *worked (may be NULL) is false when there was nothing to
 * do. An error of the forward pass ends the requests in it (LD_FINISH_ERROR) and is
 * returned; the scheduler stays usable. */
ld_status ld_lm_batch_step(ld_lm_batch *b, bool *worked);

typedef struct ld_lm_batch_stats {
    int active, queued;          /* sequences in flight; requests waiting */
    int cached;                  /* finished sequences kept for prefix reuse */
    int64_t kv_pages_used, kv_pages_total, kv_pages_reserved; /* reserved: promised to active requests */
    int64_t kv_pages_cached;     /* of the used pages, those only finished (cached) sequences hold */
    int64_t steps;               /* forward passes so far */
    int64_t prompt_tokens;       /* prompt tokens computed */
    int64_t prompt_tokens_reused;/* prompt tokens taken from a shared prefix instead */
    int64_t generated_tokens;
} ld_lm_batch_stats;
void ld_lm_batch_stats_get(const ld_lm_batch *b, ld_lm_batch_stats *out);
/* Drops every cached (finished) sequence and gives its pages back. */
void ld_lm_batch_drop_cache(ld_lm_batch *b);

#ifdef __cplusplus
}
#endif
#endif

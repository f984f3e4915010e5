/* liandan/infer.h — inference for the causal LM: a session holds the KV cache of up to
 * n_slots sequences; eval appends tokens to any set of sequences in one batched forward
 * pass (prefill, batched decoding and likelihood scoring are all calls to it); sampling
 * turns logits into tokens.
 *
 * A session allocates everything when created: eval allocates nothing afterwards. */
#ifndef LIANDAN_INFER_H
#define LIANDAN_INFER_H

#include "liandan/causal_lm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ld_lm_session ld_lm_session;

/* max_tokens: the most tokens one eval call may process across all segments (prefill chunk).
 * Every slot can grow to max_len tokens (ld_lm_session_new_ex with default paging). */
ld_status ld_lm_session_new(ld_lm *m, int n_slots, int64_t max_len, int64_t max_tokens, ld_lm_session **out);

/* The KV cache is paged: a sequence's keys and values live in pages of page_tokens tokens
 * taken from one pool as it grows and given back when it is cleared or cut; whole pages can be
 * shared between sequences (ld_lm_session_share). */
typedef struct ld_lm_session_params {
    int n_slots;          /* sequences (1..4096) */
    int64_t max_len;      /* the most tokens one sequence may hold (<= the model's context) */
    int64_t max_tokens;   /* the most tokens one eval call may process */
    int64_t page_tokens;  /* tokens per KV page; 0 = max_len (one page per sequence) */
    int64_t n_pages;      /* pages in the pool; 0 = from kv_bytes, else enough for every slot at max_len */
    size_t kv_bytes;      /* when n_pages is 0: as many pages as fit in this many bytes (0 = see n_pages) */
    ld_dtype kv_type_k;   /* the cached keys' type: LD_F32 (default, 0), LD_F16 or LD_Q8_0 (llama.cpp's -ctk) */
    ld_dtype kv_type_v;   /* the cached values' type, the same choices (llama.cpp's -ctv) */
} ld_lm_session_params;
ld_lm_session_params ld_lm_session_default_params(void);
ld_status ld_lm_session_new_ex(ld_lm *m, const ld_lm_session_params *p, ld_lm_session **out);
/* Bytes of K and V one page of page_tokens tokens holds for a model of config c. */
size_t ld_lm_kv_page_bytes(const ld_lm_config *c, int64_t page_tokens);
/* The same for K and V caches of types k_type and v_type (0 for a type a cache cannot hold). */
size_t ld_lm_kv_page_bytes_as(const ld_lm_config *c, int64_t page_tokens, ld_dtype k_type, ld_dtype v_type);
/* Whether a KV cache can hold type t: F32, F16 or Q8_0 (Q8_0 rows must also be whole blocks:
 * n_kv_heads * head_dim a multiple of 32, checked by ld_lm_session_new_ex). */
bool ld_lm_kv_type_ok(ld_dtype t);
void ld_lm_session_free(ld_lm_session *s);
/* Replaces the model's matrices (not the embeddings) by quantized copies of type `type`
 * (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K) for this session's evals; matrices whose rows are not
 * whole blocks stay F32. The model itself is unchanged. */
ld_status ld_lm_session_quantize(ld_lm_session *s, ld_dtype type);
/* The same with the LM head (the token embedding, when tied) in head_type too — it is a
 * third of a 124M model's weights and read every token. type may also be F32 or F16
 * (matrices converted, not quantized: e.g. an F32 session of a model read in place from a
 * quantized file); head_type is F32, F16 or a quantizable type, usually
 * ld_lm_mix_edge_type(type), or LD_DTYPE_COUNT for ld_lm_session_quantize's choice (a tied
 * head stays F32, an untied one is in `type`). Errors as ld_lm_session_quantize. */
ld_status ld_lm_session_quantize_ex(ld_lm_session *s, ld_dtype type, ld_dtype head_type);
/* ld_lm_session_quantize_ex with importance weights for the quantizer, which the i-quants
 * below 4 bits need (ld_quant_needs_imatrix): imatrix(user, name, K) gives K non-negative
 * weights for the columns of the matrix parameter `name` (the names the session's observer
 * sees: ld_imatrix_lookup over an ld_lm_imatrix_collect of this model fits), or NULL (that
 * matrix then has none: LD_ERR_INVALID_ARG for such a type). NULL imatrix = none. */
ld_status ld_lm_session_quantize_im(ld_lm_session *s, ld_dtype type, ld_dtype head_type,
                                    const float *(*imatrix)(void *user, const char *name, int64_t K), void *user);
/* Bytes of matrix weights one decode step reads: every matrix (LM head included) in the
 * form this session computes with, of a mixture of experts' only the k experts one token
 * uses (k / E of them); embeddings, norms and biases are not counted. */
size_t ld_lm_session_weight_bytes(const ld_lm_session *s);
/* Called during eval with the input of every matrix product: x[M, K] is about to be
 * multiplied by the parameter named `param` (its HF name). For calibration statistics
 * (ld_lm_imatrix_collect); NULL fn removes the observer. */
typedef void (*ld_lm_observer)(void *user, const char *param, const float *x, int64_t M, int64_t K);
void ld_lm_session_set_observer(ld_lm_session *s, ld_lm_observer fn, void *user);

/* Empties one sequence slot (its cached tokens are forgotten, its pages given back, its LoRA
 * set to none). */
void ld_lm_session_clear(ld_lm_session *s, int slot);
/* Keeps the first len tokens of a slot (len <= its length) and gives back the pages after
 * them. LD_ERR_LIMIT when len ends inside a page shared with another slot and no page is
 * free to copy it into (the slot is then unchanged). */
ld_status ld_lm_session_truncate(ld_lm_session *s, int slot, int64_t len);
/* Tokens run through the model by this session's evals so far (all slots). */
int64_t ld_lm_session_tokens_evaluated(const ld_lm_session *s);
/* Slot dst (emptied first) takes the first n tokens of slot src (n <= its length) without
 * recomputing them: whole pages are shared, the rest of a partly filled page is copied.
 * LD_ERR_LIMIT when that copy needs a page and none is free (dst is then empty). */
ld_status ld_lm_session_share(ld_lm_session *s, int dst, int src, int64_t n);
/* Tokens per KV page; pages in use (*used) and in the pool (*total); the pages slot would
 * newly need to take n more tokens (-1 for a bad slot). */
int64_t ld_lm_session_page_tokens(const ld_lm_session *s);
void ld_lm_session_kv_pages(const ld_lm_session *s, int64_t *used, int64_t *total);
int64_t ld_lm_session_pages_needed(const ld_lm_session *s, int slot, int64_t n);
/* Pages that only the slots flagged in slots[n_slots] hold (what emptying them would give
 * back). scratch: room for one int32 per page of the pool. */
int64_t ld_lm_session_pages_freed_by(const ld_lm_session *s, const bool *slots, int32_t *scratch);
int64_t ld_lm_session_len(const ld_lm_session *s, int slot);
int ld_lm_session_slots(const ld_lm_session *s);
int64_t ld_lm_session_max_len(const ld_lm_session *s);
int64_t ld_lm_session_max_tokens(const ld_lm_session *s);
ld_lm *ld_lm_session_model(const ld_lm_session *s);
ld_ctx *ld_lm_session_ctx(const ld_lm_session *s);
/* Bytes held by the KV cache's page pool. */
size_t ld_lm_session_kv_bytes(const ld_lm_session *s);

typedef struct ld_lm_segment {
    int slot;           /* which sequence */
    const int32_t *ids; /* tokens to append */
    int64_t n;
} ld_lm_segment;

/* Several LoRA adapters on one base in the same forward pass: registers a copy of adapter
 * a's matrices (an unmerged LoRA attached to this session's model, which may be freed
 * afterwards) and gives its number (1, 2, ...) in *id. ld_lm_session_set_lora gives a slot
 * one of them (0 = none, the base; a cleared slot has none): its tokens run with it while
 * the other slots of the same eval run with theirs. Each row adds (alpha / r) x A^T B^T to the
 * products the LoRA targets, as the training forward does. A slot's cached keys and values
 * are those of the adapter its tokens ran with: share prefixes only between slots of the
 * same adapter. Errors: another method, a merged LoRA, prompt vectors or a head, an adapter
 * of another model object, more than LD_SESSION_MAX_LORA; set_lora: a bad slot or number. */
#define LD_SESSION_MAX_LORA 64
typedef struct ld_adapter ld_adapter;
ld_status ld_lm_session_add_lora(ld_lm_session *s, const ld_adapter *a, int *id);
ld_status ld_lm_session_set_lora(ld_lm_session *s, int slot, int id);
int ld_lm_session_loras(const ld_lm_session *s);

/* Appends each segment's tokens to its slot's sequence and runs the model on them (one
 * forward pass for all segments). *logits receives a pointer (owned by the session, valid
 * until the next eval) to: if all_logits, [sum of n, V] rows in segment order; otherwise
 * [n_segs, V], the logits after each segment's last token. A slot may appear once per call.
 * Errors: a slot out of range or repeated, a sequence growing past max_len, more than
 * max_tokens tokens, token ids outside the vocabulary, not enough free KV pages
 * (LD_ERR_LIMIT, "KV cache full"). On error no slot changes. */
ld_status ld_lm_session_eval(ld_lm_session *s, const ld_lm_segment *segs, int n_segs, bool all_logits,
                             const float **logits);

/* The same forward pass, returning instead of logits the final-norm hidden states of every
 * token: *hidden is [sum of n, C] in segment order (owned by the session, valid until the next
 * eval). For embeddings (pooled by the caller). */
ld_status ld_lm_session_eval_hidden(ld_lm_session *s, const ld_lm_segment *segs, int n_segs, const float **hidden);

/* ---- sampling ---------------------------------------------------------------------- */
typedef struct ld_sample_params {
    float temperature;        /* 0 = greedy */
    int top_k;                /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off: drop tokens with p < min_p * p_max */
    float repetition_penalty; /* 1 = off (CTRL-style: divide positive logits, multiply negative) */
    int64_t repetition_window;/* how many recent tokens the penalty looks at (0 = all given) */
} ld_sample_params;
ld_sample_params ld_sample_default_params(void);

/* Picks a token from logits[V] (not modified). history: the tokens so far (for the
 * repetition penalty), may be NULL. scratch: at least 2 * V floats + V ints worth of bytes:
 * ld_sample_scratch_bytes(V). Uses one draw from rng unless greedy. */
size_t ld_sample_scratch_bytes(int64_t V);
int32_t ld_sample_token(const float *logits, int64_t V, const ld_sample_params *p, const int32_t *history,
                        int64_t n_history, ld_rng *rng, void *scratch);

/* log softmax(logits[0..V))[target], computed in double. */
double ld_logprob(const float *logits, int64_t V, int32_t target);

/* ---- generation -------------------------------------------------------------------- */
/* A constraint on what may come next (a grammar, liandan/grammar.h): mask sets the logits of
 * every token that may not follow to -INFINITY; accept is told the token chosen. When mask
 * leaves no token, the sequence ends (complete says whether the text is whole: the scheduler
 * reports LD_FINISH_STOP or LD_FINISH_ERROR). Any of them may be NULL. */
typedef struct ld_lm_constraint {
    ld_status (*mask)(void *user, float *logits, int64_t V);
    ld_status (*accept)(void *user, int32_t token);
    bool (*complete)(void *user);
    void *user;
} ld_lm_constraint;

/* Called for every generated token of sequence `seq`; return false to stop that sequence
 * (e.g. a stop string was produced). */
typedef bool (*ld_token_fn)(void *user, int seq, int32_t token);

typedef struct ld_generate_params {
    ld_sample_params sample;
    int64_t max_tokens;   /* new tokens per sequence */
    int32_t eos_id;       /* stops a sequence (not passed to on_token); -1 = none */
    const int32_t *stop_ids; /* more tokens that stop a sequence like eos_id (end of turn, a */
    int n_stop_ids;          /* config's list of EOS ids); borrowed, may be NULL when 0 */
    uint64_t seed;        /* sequence i samples from stream (seed, i): results do not depend on batching */
    const ld_lm_constraint *constraints; /* one per sequence (e.g. grammars), or NULL */
} ld_generate_params;
ld_generate_params ld_generate_default_params(void);

/* Generates continuations of n prompts at once (batched decoding: one eval per step for all
 * live sequences) using slots 0..n-1 of the session (cleared first). Prompts longer than the
 * session's context are refused. *n_generated (may be NULL) receives each sequence's count. */
ld_status ld_lm_generate(ld_lm_session *s, int n, const int32_t *const *prompts, const int64_t *prompt_len,
                         const ld_generate_params *p, ld_token_fn on_token, void *user, int64_t *n_generated);

/* Continues the sequence in `slot` as the cache holds it: appends ids[0..n) (n >= 1) and
 * generates as ld_lm_generate (on_token gets seq 0). held[0..n_held) are the tokens the slot
 * holds (n_held must equal its length; they feed the repetition penalty). Afterwards the
 * slot holds held, ids and the generated tokens but the last one (never evaluated). */
ld_status ld_lm_generate_continue(ld_lm_session *s, int slot, const int32_t *held, int64_t n_held, const int32_t *ids,
                                  int64_t n, const ld_generate_params *p, ld_token_fn on_token, void *user,
                                  int64_t *n_generated);

/* Log-probability of each continuation given its context: for i in 0..n-1,
 * logp[i] = sum_j log P(cont[i][j] | ctx[i], cont[i][<j]). Items go through the session's
 * slots in groups (cleared first; n may exceed the slots) and are fed in batched pieces of at
 * most the session's max_tokens rows, keeping only the targets' log-probabilities: memory is
 * the session's, whatever the number and length of the items. Each item's context plus
 * continuation, less one token, must fit the session's max_len. */
ld_status ld_lm_score(ld_lm_session *s, int n, const int32_t *const *ctx_ids, const int64_t *ctx_len,
                      const int32_t *const *cont_ids, const int64_t *cont_len, double *logp);

/* Inverse-prompting rerank (文匯): score[i] = log P(prompt | cand[i] + sep) per prompt token,
 * the likelihood of the prompt given each candidate; *best (may be NULL) = the argmax. Uses the
 * session's slots like ld_lm_score (cleared first). */
ld_status ld_lm_rerank_inverse(ld_lm_session *s, int n, const int32_t *const *cand, const int64_t *cand_len,
                               const int32_t *sep, int64_t sep_len, const int32_t *prompt, int64_t prompt_len,
                               double *score, int *best);

/* ---- calibration ------------------------------------------------------------------- */
typedef struct ld_imatrix ld_imatrix;
/* Runs the model over ids[0..n) in chunks of `chunk` tokens (each chunk a fresh sequence in
 * slot 0; chunk <= the session's max_len and max_tokens) and adds every matrix input to im
 * under the matrix's GGUF name. *nll (may be NULL) receives the mean negative log-likelihood
 * per predicted token (the calibration text's perplexity is exp of it). progress (may be
 * NULL) is called after each chunk. */
ld_status ld_lm_imatrix_collect(ld_lm_session *s, const int32_t *ids, int64_t n, int64_t chunk, ld_imatrix *im,
                                double *nll, void (*progress)(void *user, int64_t done, int64_t total),
                                void *progress_user);

#ifdef __cplusplus
}
#endif
#endif

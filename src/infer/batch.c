/* infer/batch.c — continuous batching (liandan/batch.h): admission under a paged KV budget,
 * prefix reuse, one forward pass per step for every active sequence (decodes and prefill
 * chunks together), per-request sampling, cancellation. */
#include <math.h>
#include <string.h>

#include "liandan/batch.h"
#include "models/causal_lm_internal.h"

enum { SEQ_FREE, SEQ_ACTIVE, SEQ_CACHED };
enum { MAX_TOP_LOGPROBS = 20 };

typedef struct req {
    int64_t id;
    ld_lm_request r;      /* r.prompt and r.stop_ids point at the copies below */
    int32_t *prompt, *stops;
    int slot;             /* -1 while queued */
    int64_t fed;          /* prompt tokens in the KV cache (shared or computed) */
    int64_t reused;       /* of which taken from a shared prefix */
    int64_t generated;
    int32_t pending;      /* the last sampled token, to be fed next step */
    bool has_pending;
    ld_rng rng;
} req;

typedef struct seq {
    int state;
    req *r;               /* SEQ_ACTIVE */
    int32_t *tokens;      /* [max_len]: prompt then generated tokens */
    int64_t n_tokens;
    int64_t last_used;    /* step it finished (SEQ_CACHED eviction order) */
    int lora;             /* the LoRA adapter its tokens ran with (0 = none) */
} seq;

struct ld_lm_batch {
    ld_ctx *ctx;
    ld_lm *m;
    ld_lm_session *s;
    ld_lm_batch_params p;
    int64_t V, P;
    int n_slots;
    seq *seqs;
    int32_t *token_mem;
    req **queue;          /* FIFO, n_queued of them */
    int n_queued, n_active, n_cached;
    int64_t next_id, admit_counter;
    ld_lm_segment *segs;
    int *seg_prefill;     /* per segment: tokens of prompt it carries (0 = a decode) */
    float *z;             /* one row of logits, maskable */
    bool *cached_flags;   /* stats: which slots hold cached sequences */
    int32_t *page_count;  /* stats: scratch per KV page */
    void *scratch;        /* ld_sample_scratch_bytes(V) */
    ld_lm_batch_stats st;
};

static const char *const finish_names[] = {
#define LD_FINISH_NAME_(e, s) s,
    LD_FINISH_TABLE(LD_FINISH_NAME_)
#undef LD_FINISH_NAME_
};

const char *ld_finish_name(ld_finish f) {
    return (unsigned)f < sizeof finish_names / sizeof finish_names[0] ? finish_names[f] : "?";
}

ld_lm_batch_params ld_lm_batch_default_params(void) {
    ld_lm_batch_params p = {.max_seqs = 16, .max_queue = 64, .max_len = 0, .step_tokens = 256, .page_tokens = 16,
                            .kv_bytes = 0, .cache_seqs = -1, .min_prefix = 8};
    return p;
}

static int64_t pages_for(const ld_lm_batch *b, int64_t len) {
    return (len + b->P - 1) / b->P;
}

/* Pages a request will hold when it is done: its KV never holds more than
 * min(n_prompt + max_tokens, max_len) - 1 tokens (the last token is not fed back). */
static int64_t pages_final(const ld_lm_batch *b, const ld_lm_request *r) {
    int64_t len = r->n_prompt + (r->max_tokens < b->p.max_len ? r->max_tokens : b->p.max_len);
    if (len > b->p.max_len) len = b->p.max_len;
    return pages_for(b, len - 1);
}

/* Pages active requests may still take from the free pool. */
static int64_t reserved(const ld_lm_batch *b) {
    int64_t n = 0;
    for (int i = 0; i < b->n_slots; i++)
        if (b->seqs[i].state == SEQ_ACTIVE) {
            int64_t more = pages_final(b, &b->seqs[i].r->r) - pages_for(b, ld_lm_session_len(b->s, i));
            n += more > 0 ? more : 0;
        }
    return n;
}

static int64_t free_pages(const ld_lm_batch *b) {
    int64_t used, total;
    ld_lm_session_kv_pages(b->s, &used, &total);
    return total - used;
}

static void req_free(ld_lm_batch *b, req *q) {
    if (!q) return;
    ld_free(b->ctx, q->prompt), ld_free(b->ctx, q->stops), ld_free(b->ctx, q);
}

void ld_lm_batch_free(ld_lm_batch *b) {
    if (!b) return;
    while (b->n_queued) ld_lm_batch_cancel(b, b->queue[0]->id);
    for (int i = 0; b->seqs && i < b->n_slots; i++)
        if (b->seqs[i].state == SEQ_ACTIVE) ld_lm_batch_cancel(b, b->seqs[i].r->id);
    ld_lm_session_free(b->s);
    ld_ctx *ctx = b->ctx;
    ld_free(ctx, b->seqs), ld_free(ctx, b->token_mem), ld_free(ctx, b->queue), ld_free(ctx, b->segs);
    ld_free(ctx, b->seg_prefill), ld_free(ctx, b->z), ld_free(ctx, b->scratch), ld_free(ctx, b->cached_flags);
    ld_free(ctx, b->page_count), ld_free(ctx, b);
}

ld_status ld_lm_batch_new(ld_lm *m, const ld_lm_batch_params *params, ld_lm_batch **out) {
    if (!m || !out) return LD_ERR_INVALID_ARG;
    *out = NULL;
    const ld_lm_config *c = ld_lm_config_of(m);
    ld_ctx *ctx = m->ctx;
    ld_lm_batch_params p = params ? *params : ld_lm_batch_default_params();
    if (p.max_len <= 0) p.max_len = c->max_position < 2048 ? c->max_position : 2048;
    if (p.cache_seqs < 0) p.cache_seqs = p.max_seqs;
    if (p.page_tokens <= 0) p.page_tokens = 16;
    ld_status st;
    if (p.max_seqs < 1 || p.max_seqs > 1024 || p.max_queue < 0 || p.cache_seqs > 1024 || p.max_len < 2 ||
        p.max_len > c->max_position || p.step_tokens < p.max_seqs || p.min_prefix < 1)
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "batch: need 1..1024 sequences (got %d), a queue >= 0 (got %d), 0..1024 cached (got %d), "
                        "max_len 2..%lld (got %lld), step_tokens >= max_seqs (got %lld), min_prefix >= 1",
                        p.max_seqs, p.max_queue, p.cache_seqs, (long long)c->max_position, (long long)p.max_len,
                        (long long)p.step_tokens);
    ld_lm_batch *b = ld_calloc(ctx, 1, sizeof *b);
    if (!b) return ld_ctx_status(ctx);
    b->ctx = ctx, b->m = m, b->p = p, b->V = c->vocab_size, b->n_slots = p.max_seqs + p.cache_seqs;
    b->next_id = 1;
    ld_lm_session_params sp = ld_lm_session_default_params();
    sp.n_slots = b->n_slots, sp.max_len = p.max_len, sp.max_tokens = p.step_tokens, sp.page_tokens = p.page_tokens;
    sp.kv_bytes = p.kv_bytes;
    sp.kv_type_k = p.kv_type_k, sp.kv_type_v = p.kv_type_v;
    if (!p.kv_bytes) sp.n_pages = (int64_t)p.max_seqs * ((p.max_len + p.page_tokens - 1) / p.page_tokens);
    if ((st = ld_lm_session_new_ex(m, &sp, &b->s))) return ld_lm_batch_free(b), st;
    b->P = ld_lm_session_page_tokens(b->s);
    size_t tok_bytes;
    if (ld_mul_size((size_t)b->n_slots * (size_t)p.max_len, sizeof(int32_t), &tok_bytes))
        return ld_lm_batch_free(b), ld_error(ctx, LD_ERR_OVERFLOW, "batch: token buffers overflow");
    b->seqs = ld_calloc(ctx, (size_t)b->n_slots, sizeof *b->seqs);
    b->token_mem = ld_alloc(ctx, tok_bytes);
    b->queue = ld_calloc(ctx, (size_t)p.max_queue + 1, sizeof *b->queue);
    b->segs = ld_calloc(ctx, (size_t)b->n_slots, sizeof *b->segs);
    b->seg_prefill = ld_calloc(ctx, (size_t)b->n_slots, sizeof *b->seg_prefill);
    b->z = ld_alloc(ctx, (size_t)b->V * sizeof(float));
    b->scratch = ld_alloc(ctx, ld_sample_scratch_bytes(b->V));
    int64_t n_pages;
    ld_lm_session_kv_pages(b->s, NULL, &n_pages);
    b->cached_flags = ld_calloc(ctx, (size_t)b->n_slots, sizeof *b->cached_flags);
    b->page_count = ld_alloc(ctx, (size_t)n_pages * sizeof *b->page_count);
    if (!b->seqs || !b->token_mem || !b->queue || !b->segs || !b->seg_prefill || !b->z || !b->scratch ||
        !b->cached_flags || !b->page_count) {
        ld_lm_batch_free(b);
        return ld_ctx_status(ctx);
    }
    for (int i = 0; i < b->n_slots; i++) b->seqs[i].tokens = b->token_mem + (size_t)i * (size_t)p.max_len;
    *out = b;
    return LD_OK;
}

ld_lm_session *ld_lm_batch_session(ld_lm_batch *b) {
    return b ? b->s : NULL;
}

ld_status ld_lm_batch_submit(ld_lm_batch *b, const ld_lm_request *r, int64_t *id) {
    if (!b || !r) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = b->ctx;
    if (!r->prompt || r->n_prompt < 1 || r->max_tokens < 1 || r->n_stop_ids < 0 || (r->n_stop_ids && !r->stop_ids) ||
        r->top_logprobs < 0 || r->top_logprobs > MAX_TOP_LOGPROBS)
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "request: needs a prompt of >= 1 tokens (got %lld), max_tokens >= 1 (got %lld), "
                        "top_logprobs 0..%d (got %d)",
                        (long long)r->n_prompt, (long long)r->max_tokens, MAX_TOP_LOGPROBS, r->top_logprobs);
    for (int64_t i = 0; i < r->n_prompt; i++)
        if (r->prompt[i] < 0 || r->prompt[i] >= b->V)
            return ld_error(ctx, LD_ERR_INVALID_ARG, "request: prompt token %lld is %d, outside the vocabulary of %lld",
                            (long long)i, r->prompt[i], (long long)b->V);
    if (r->lora < 0 || r->lora > ld_lm_session_loras(b->s))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "request: LoRA %d, the session has %d", r->lora, ld_lm_session_loras(b->s));
    if (r->n_prompt >= b->p.max_len)
        return ld_error(ctx, LD_ERR_LIMIT, "request: the prompt has %lld tokens; this model serves at most %lld",
                        (long long)r->n_prompt, (long long)(b->p.max_len - 1));
    int64_t total;
    ld_lm_session_kv_pages(b->s, NULL, &total);
    if (pages_final(b, r) > total)
        return ld_error(ctx, LD_ERR_LIMIT,
                        "request: %lld prompt tokens + %lld new need %lld KV pages of %lld tokens; the cache has %lld",
                        (long long)r->n_prompt, (long long)r->max_tokens, (long long)pages_final(b, r), (long long)b->P,
                        (long long)total);
    if (b->n_queued >= b->p.max_queue)
        return ld_error(ctx, LD_ERR_LIMIT, "request: the queue is full (%d waiting)", b->n_queued);
    req *q = ld_calloc(ctx, 1, sizeof *q);
    if (!q) return ld_ctx_status(ctx);
    q->prompt = ld_alloc(ctx, (size_t)r->n_prompt * sizeof(int32_t));
    q->stops = ld_alloc(ctx, (size_t)r->n_stop_ids * sizeof(int32_t));
    if (!q->prompt || !q->stops) {
        req_free(b, q);
        return ld_ctx_status(ctx);
    }
    memcpy(q->prompt, r->prompt, (size_t)r->n_prompt * sizeof(int32_t));
    if (r->n_stop_ids) memcpy(q->stops, r->stop_ids, (size_t)r->n_stop_ids * sizeof(int32_t));
    q->r = *r;
    q->r.prompt = q->prompt, q->r.stop_ids = q->stops;
    q->id = b->next_id++, q->slot = -1;
    q->rng = ld_rng_init(ld_rng_at(r->seed, r->stream));
    b->queue[b->n_queued++] = q;
    if (id) *id = q->id;
    return LD_OK;
}

/* Ends active request q: on_done, then its slot is cached (finished normally, room kept) or
 * emptied. */
static void finish(ld_lm_batch *b, req *q, ld_finish why) {
    seq *sq = &b->seqs[q->slot];
    if (q->r.on_done) q->r.on_done(q->r.user, why, q->fed - q->reused, q->generated);
    if (why != LD_FINISH_CANCELLED && why != LD_FINISH_ERROR && b->p.cache_seqs > 0) {
        sq->state = SEQ_CACHED, b->n_cached++;
        sq->last_used = b->st.steps;
        /* the cached tokens are those whose KV was computed */
        sq->n_tokens = ld_lm_session_len(b->s, q->slot);
    } else {
        ld_lm_session_clear(b->s, q->slot);
        sq->state = SEQ_FREE, sq->n_tokens = 0;
    }
    sq->r = NULL;
    b->n_active--;
    req_free(b, q);
}

static void evict(ld_lm_batch *b, int slot) {
    ld_lm_session_clear(b->s, slot);
    b->seqs[slot].state = SEQ_FREE, b->seqs[slot].n_tokens = 0;
    b->n_cached--;
}

/* The least recently finished cached sequence other than `keep`, or -1. */
static int lru_cached(const ld_lm_batch *b, int keep) {
    int best = -1;
    for (int i = 0; i < b->n_slots; i++)
        if (i != keep && b->seqs[i].state == SEQ_CACHED && (best < 0 || b->seqs[i].last_used < b->seqs[best].last_used))
            best = i;
    return best;
}

bool ld_lm_batch_cancel(ld_lm_batch *b, int64_t id) {
    if (!b) return false;
    for (int i = 0; i < b->n_queued; i++)
        if (b->queue[i]->id == id) {
            req *q = b->queue[i];
            memmove(b->queue + i, b->queue + i + 1, (size_t)(b->n_queued - i - 1) * sizeof *b->queue);
            b->n_queued--;
            if (q->r.on_done) q->r.on_done(q->r.user, LD_FINISH_CANCELLED, 0, 0);
            req_free(b, q);
            return true;
        }
    for (int i = 0; i < b->n_slots; i++)
        if (b->seqs[i].state == SEQ_ACTIVE && b->seqs[i].r->id == id) {
            finish(b, b->seqs[i].r, LD_FINISH_CANCELLED);
            return true;
        }
    return false;
}

/* The slot holding the longest computed prefix of prompt (active or cached), and its length
 * (at most n_prompt - 1: the last prompt token is always computed, for its logits). */
static int best_prefix(const ld_lm_batch *b, const int32_t *prompt, int64_t n_prompt, int lora, int64_t *len) {
    int best = -1;
    *len = 0;
    for (int i = 0; i < b->n_slots; i++) {
        const seq *sq = &b->seqs[i];
        if (sq->state == SEQ_FREE || sq->lora != lora) continue; /* another adapter's keys and values */
        int64_t have = ld_lm_session_len(b->s, i), n = 0, lim = have < n_prompt - 1 ? have : n_prompt - 1;
        while (n < lim && sq->tokens[n] == prompt[n]) n++;
        if (n > *len) *len = n, best = i;
    }
    if (*len < b->p.min_prefix) *len = 0, best = -1;
    return best;
}

/* Moves queued requests into slots while slots and KV pages allow (first come, first
 * served: a request that does not fit blocks the ones behind it). */
static void admit(ld_lm_batch *b) {
    while (b->n_queued && b->n_active < b->p.max_seqs) {
        req *q = b->queue[0];
        int64_t reuse;
        int src = best_prefix(b, q->prompt, q->r.n_prompt, q->r.lora, &reuse);
        /* pages it will take: all it ends with, less the whole pages shared; +1 for a copy */
        int64_t need = pages_final(b, &q->r) - reuse / b->P + (reuse % b->P ? 1 : 0);
        int64_t avail = free_pages(b) - reserved(b);
        while (avail < need) { /* make room: drop cached sequences, the prefix source last */
            int v = lru_cached(b, src);
            if (v < 0 && src >= 0 && b->seqs[src].state == SEQ_CACHED) {
                v = src, src = -1, reuse = 0;
                need = pages_final(b, &q->r);
            }
            if (v < 0) break;
            evict(b, v);
            avail = free_pages(b) - reserved(b);
        }
        if (avail < need) return; /* wait for running requests to finish */
        int slot = -1;
        if (src >= 0 && b->seqs[src].state == SEQ_CACHED) {
            /* take the cached sequence over: cut it to the shared prefix */
            slot = src;
            if (ld_lm_session_truncate(b->s, slot, reuse)) return; /* cannot happen: a page was counted */
            b->n_cached--;
        } else {
            for (int i = 0; i < b->n_slots && slot < 0; i++)
                if (b->seqs[i].state == SEQ_FREE) slot = i;
            if (slot < 0) {
                int v = lru_cached(b, src);
                if (v < 0) return;
                evict(b, v);
                slot = v;
            }
            if (src >= 0 && ld_lm_session_share(b->s, slot, src, reuse)) return;
        }
        memmove(b->queue, b->queue + 1, (size_t)(b->n_queued - 1) * sizeof *b->queue);
        b->n_queued--;
        seq *sq = &b->seqs[slot];
        sq->state = SEQ_ACTIVE, sq->r = q, sq->lora = q->r.lora;
        ld_lm_session_set_lora(b->s, slot, q->r.lora); /* checked at submit */
        memcpy(sq->tokens, q->prompt, (size_t)q->r.n_prompt * sizeof(int32_t));
        sq->n_tokens = q->r.n_prompt;
        q->slot = slot, q->fed = q->reused = src >= 0 ? reuse : 0;
        b->st.prompt_tokens_reused += q->reused;
        b->n_active++;
    }
}

/* Log-probability of every token is logits - lse; fills info with the chosen token's and
 * the top k. */
static void token_info(const float *lg, int64_t V, int32_t tok, int k, int32_t *top, float *top_lp,
                       ld_lm_token_info *info) {
    float mx = lg[0];
    for (int64_t v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
    double se = 0;
    for (int64_t v = 0; v < V; v++) se += exp((double)(lg[v] - mx));
    float lse = mx + (float)log(se);
    int n = 0;
    for (int64_t v = 0; v < V && k > 0; v++) { /* insertion into the sorted top k */
        if (n == k && lg[v] <= lg[top[n - 1]]) continue;
        int j = n < k ? n++ : k - 1;
        while (j > 0 && lg[top[j - 1]] < lg[v]) top[j] = top[j - 1], j--;
        top[j] = (int32_t)v;
    }
    for (int i = 0; i < n; i++) top_lp[i] = lg[top[i]] - lse;
    *info = (ld_lm_token_info){.token = tok, .logprob = lg[tok] - lse, .n_top = n, .top = top, .top_logprob = top_lp};
}

/* Samples the next token of active request q from its logits row; ends it when done. */
static void next_token(ld_lm_batch *b, req *q, const float *lg) {
    seq *sq = &b->seqs[q->slot];
    const float *z = lg; /* the row sampled: lg itself, or its masked copy */
    if (q->r.constraint.mask) {
        memcpy(b->z, lg, (size_t)b->V * sizeof(float));
        z = b->z;
        bool any = false;
        if (q->r.constraint.mask(q->r.constraint.user, b->z, b->V) == LD_OK)
            for (int64_t v = 0; v < b->V && !any; v++) any = b->z[v] > -INFINITY;
        if (!any) { /* nothing may follow: the end of a complete text, or a dead end */
            const ld_lm_constraint *c = &q->r.constraint;
            finish(b, q, c->complete && c->complete(c->user) ? LD_FINISH_STOP : LD_FINISH_ERROR);
            return;
        }
    }
    int32_t tok = ld_sample_token(z, b->V, &q->r.sample, sq->tokens, sq->n_tokens, &q->rng, b->scratch);
    for (int i = 0; i < q->r.n_stop_ids; i++)
        if (tok == q->stops[i]) {
            finish(b, q, LD_FINISH_STOP);
            return;
        }
    q->generated++;
    b->st.generated_tokens++;
    sq->tokens[sq->n_tokens++] = tok;
    if (q->r.constraint.accept && q->r.constraint.accept(q->r.constraint.user, tok) != LD_OK) {
        finish(b, q, LD_FINISH_ERROR);
        return;
    }
    if (q->r.on_token) {
        int32_t top[MAX_TOP_LOGPROBS];
        float top_lp[MAX_TOP_LOGPROBS];
        ld_lm_token_info info;
        token_info(lg, b->V, tok, q->r.top_logprobs, top, top_lp, &info);
        if (!q->r.on_token(q->r.user, &info)) {
            finish(b, q, LD_FINISH_STOP);
            return;
        }
    }
    if (q->generated >= q->r.max_tokens || sq->n_tokens >= b->p.max_len) {
        finish(b, q, LD_FINISH_LENGTH);
        return;
    }
    q->pending = tok, q->has_pending = true;
}

ld_status ld_lm_batch_step(ld_lm_batch *b, bool *worked) {
    if (worked) *worked = false;
    if (!b) return LD_ERR_INVALID_ARG;
    admit(b);
    /* decodes first (one token each), then prefill chunks in admission order */
    int n = 0;
    int64_t budget = b->p.step_tokens;
    for (int i = 0; i < b->n_slots; i++) {
        req *q = b->seqs[i].state == SEQ_ACTIVE ? b->seqs[i].r : NULL;
        if (!q || !q->has_pending) continue;
        b->segs[n] = (ld_lm_segment){i, &q->pending, 1}, b->seg_prefill[n++] = 0;
        budget--;
    }
    for (;;) { /* the oldest unfinished prompt next */
        req *best = NULL;
        for (int i = 0; i < b->n_slots; i++) {
            req *q = b->seqs[i].state == SEQ_ACTIVE ? b->seqs[i].r : NULL;
            if (!q || q->fed >= q->r.n_prompt || (best && best->id < q->id)) continue;
            bool listed = false;
            for (int j = 0; j < n; j++) listed |= b->segs[j].slot == i;
            if (!listed) best = q;
        }
        if (!best || budget <= 0) break;
        int64_t take = best->r.n_prompt - best->fed < budget ? best->r.n_prompt - best->fed : budget;
        b->segs[n] = (ld_lm_segment){best->slot, best->prompt + best->fed, take}, b->seg_prefill[n++] = (int)take;
        budget -= take;
    }
    if (!n) return LD_OK;
    if (worked) *worked = true;
    const float *logits;
    ld_status st = ld_lm_session_eval(b->s, b->segs, n, false, &logits);
    b->st.steps++;
    if (st) {
        for (int j = 0; j < n; j++) finish(b, b->seqs[b->segs[j].slot].r, LD_FINISH_ERROR);
        return st;
    }
    for (int j = 0; j < n; j++) {
        req *q = b->seqs[b->segs[j].slot].r;
        if (b->seg_prefill[j]) {
            q->fed += b->seg_prefill[j];
            b->st.prompt_tokens += b->seg_prefill[j];
            if (q->fed < q->r.n_prompt) continue;
        } else {
            q->has_pending = false;
        }
        next_token(b, q, logits + (size_t)j * (size_t)b->V);
    }
    /* keep at most cache_seqs finished sequences */
    while (b->n_cached > b->p.cache_seqs) evict(b, lru_cached(b, -1));
    return LD_OK;
}

void ld_lm_batch_stats_get(const ld_lm_batch *b, ld_lm_batch_stats *out) {
    *out = b->st;
    out->active = b->n_active, out->queued = b->n_queued, out->cached = b->n_cached;
    ld_lm_session_kv_pages(b->s, &out->kv_pages_used, &out->kv_pages_total);
    out->kv_pages_reserved = reserved(b);
    for (int i = 0; i < b->n_slots; i++) b->cached_flags[i] = b->seqs[i].state == SEQ_CACHED;
    out->kv_pages_cached = b->n_cached ? ld_lm_session_pages_freed_by(b->s, b->cached_flags, b->page_count) : 0;
}

void ld_lm_batch_drop_cache(ld_lm_batch *b) {
    for (int i = 0; b && i < b->n_slots; i++)
        if (b->seqs[i].state == SEQ_CACHED) evict(b, i);
}

/* tests/unit/test_batch.c — continuous batching (liandan/batch.h) on a tiny model:
 * requests that arrive at different steps, share a step with others, wait in the queue or
 * reuse a cached prefix produce exactly the tokens ld_lm_generate produces for each alone;
 * cancellation frees slot and pages at once; limits are clean errors; constraints, stop
 * tokens and logprobs behave; nothing leaks and every page comes back. LoRA adapters run per
 * sequence: a session's LoRA rows give the training forward's logits, and two adapters and
 * the base in one batch give each the tokens it gives alone. */
#include <math.h>

#include "ld_test.h"
#include "liandan/adapter.h"
#include "liandan/batch.h"

enum { MAXGEN = 40 };

typedef struct result {
    int32_t tok[MAXGEN];
    float lp[MAXGEN];
    int n, done;
    ld_finish why;
    int64_t computed, generated;
    int stop_after; /* on_token returns false after this many (0 = never) */
    bool logprobs_ok;
} result;

static bool on_token(void *user, const ld_lm_token_info *t) {
    result *r = user;
    if (r->n < MAXGEN) r->tok[r->n] = t->token, r->lp[r->n] = t->logprob;
    r->n++;
    if (t->n_top) { /* sorted, the best first, and the chosen token's logprob <= the best */
        bool ok = t->logprob <= t->top_logprob[0] + 1e-6f;
        for (int i = 1; i < t->n_top; i++) ok &= t->top_logprob[i] <= t->top_logprob[i - 1];
        r->logprobs_ok &= ok;
    }
    return !(r->stop_after && r->n >= r->stop_after);
}

static void on_done(void *user, ld_finish why, int64_t computed, int64_t generated) {
    result *r = user;
    r->done++, r->why = why, r->computed = computed, r->generated = generated;
}

static ld_lm *tiny(ld_ctx *ctx) {
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = 31, c.hidden_size = 16, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 2, c.max_position = 96;
    c.intermediate_size = 24, c.init_std = 0.4f;
    ld_lm *m = NULL;
    CHECK(ld_lm_new(ctx, &c, 11, &m) == LD_OK);
    return m;
}

typedef struct one {
    int32_t tok[MAXGEN];
    int n;
} one;
static bool collect(void *user, int seq, int32_t t) {
    one *o = user;
    (void)seq;
    if (o->n < MAXGEN) o->tok[o->n++] = t;
    return true;
}

/* What ld_lm_generate gives for the request alone. */
static one alone(ld_lm *m, const int32_t *prompt, int64_t n, const ld_sample_params *sp, int64_t max_tokens,
                 uint64_t seed, int32_t eos) {
    ld_lm_session *s = NULL;
    one o = {0};
    CHECK(ld_lm_session_new(m, 1, 96, 96, &s) == LD_OK);
    ld_generate_params g = ld_generate_default_params();
    g.sample = *sp, g.max_tokens = max_tokens, g.seed = seed, g.eos_id = eos;
    CHECK(ld_lm_generate(s, 1, &prompt, &n, &g, collect, &o, NULL) == LD_OK);
    ld_lm_session_free(s);
    return o;
}

static ld_lm_request request(const int32_t *prompt, int64_t n, int64_t max_tokens, uint64_t seed, result *r) {
    ld_lm_request q = {0};
    q.prompt = prompt, q.n_prompt = n, q.max_tokens = max_tokens, q.seed = seed;
    q.sample = ld_sample_default_params();
    q.on_token = on_token, q.on_done = on_done, q.user = r;
    r->logprobs_ok = true;
    return q;
}

static void run_until_idle(ld_lm_batch *b, int max_steps) {
    bool worked = true;
    for (int i = 0; i < max_steps && worked; i++) CHECK(ld_lm_batch_step(b, &worked) == LD_OK);
}

static void check_clean(ld_lm_batch *b) {
    ld_lm_batch_stats st;
    ld_lm_batch_stats_get(b, &st); /* idle: every page left is a finished sequence's */
    CHECK_MSG(st.active == 0 && st.kv_pages_used == st.kv_pages_cached && (st.cached > 0) == (st.kv_pages_cached > 0),
              "idle: %lld pages used, %lld cached, %d cached sequences", (long long)st.kv_pages_used,
              (long long)st.kv_pages_cached, st.cached);
    ld_lm_batch_drop_cache(b);
    ld_lm_batch_stats_get(b, &st);
    CHECK(st.active == 0 && st.queued == 0 && st.cached == 0 && st.kv_pages_used == 0 && st.kv_pages_reserved == 0);
}

static int32_t prompts[6][24];
static const int64_t plen[6] = {3, 1, 17, 9, 20, 5};

static void make_prompts(void) {
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 24; j++) prompts[i][j] = (int32_t)((i * 7 + j * 3 + j * j) % 31);
}

TEST(staggered_requests_equal_generation_alone) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx);
    make_prompts();
    ld_lm_batch_params bp = ld_lm_batch_default_params();
    bp.max_seqs = 3, bp.step_tokens = 8, bp.page_tokens = 4, bp.cache_seqs = 0; /* prompts take several steps */
    ld_lm_batch *b = NULL;
    CHECK(ld_lm_batch_new(m, &bp, &b) == LD_OK);
    result res[6];
    memset(res, 0, sizeof res);
    ld_sample_params sp[6];
    for (int i = 0; i < 6; i++) {
        sp[i] = ld_sample_default_params();
        if (i % 2) sp[i].temperature = 0;
        else sp[i].top_k = 6, sp[i].repetition_penalty = 1.2f;
    }
    /* two now, three after two steps (one waits: 3 slots), one more later */
    int order[6] = {0, 1, 2, 3, 4, 5}, at_step[6] = {0, 0, 2, 2, 2, 5};
    bool worked = true;
    for (int step = 0, k = 0; step < 200 && (worked || k < 6); step++) {
        for (; k < 6 && at_step[k] <= step; k++) {
            int i = order[k];
            ld_lm_request q = request(prompts[i], plen[i], 12 + i, 100 + (uint64_t)i, &res[i]);
            q.sample = sp[i];
            CHECK(ld_lm_batch_submit(b, &q, NULL) == LD_OK);
        }
        CHECK(ld_lm_batch_step(b, &worked) == LD_OK);
    }
    for (int i = 0; i < 6; i++) {
        one o = alone(m, prompts[i], plen[i], &sp[i], 12 + i, 100 + (uint64_t)i, -1);
        CHECK_MSG(res[i].done == 1 && res[i].why == LD_FINISH_LENGTH, "request %d: done %d why %s", i, res[i].done,
                  ld_finish_name(res[i].why));
        CHECK(res[i].n == 12 + i && o.n == 12 + i && res[i].generated == 12 + i && res[i].computed == plen[i]);
        CHECK_MSG(memcmp(res[i].tok, o.tok, (size_t)o.n * sizeof(int32_t)) == 0, "request %d differs from alone", i);
    }
    ld_lm_batch_stats st;
    ld_lm_batch_stats_get(b, &st);
    CHECK(st.generated_tokens == 12 * 6 + 15 && st.prompt_tokens == 3 + 1 + 17 + 9 + 20 + 5);
    CHECK(st.steps < 12 * 6 + 15); /* batched: fewer forward passes than tokens */
    check_clean(b);
    ld_lm_batch_free(b);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(prefix_reuse_skips_shared_tokens) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx);
    make_prompts();
    ld_lm_batch_params bp = ld_lm_batch_default_params();
    bp.max_seqs = 2, bp.page_tokens = 4, bp.min_prefix = 4;
    ld_lm_batch *b = NULL;
    CHECK(ld_lm_batch_new(m, &bp, &b) == LD_OK);
    ld_sample_params greedy = ld_sample_default_params();
    greedy.temperature = 0;
    /* A runs to the end (cached); B shares A's first 18 tokens */
    int32_t pa[20], pb[22];
    memcpy(pa, prompts[4], sizeof pa);
    memcpy(pb, prompts[4], 18 * sizeof(int32_t));
    for (int j = 18; j < 22; j++) pb[j] = (pa[j < 20 ? j : 19] + 1) % 31; /* differs from A at 18 */
    result ra = {0}, rb = {0}, rc = {0};
    ld_lm_request qa = request(pa, 20, 6, 1, &ra);
    qa.sample = greedy;
    CHECK(ld_lm_batch_submit(b, &qa, NULL) == LD_OK);
    run_until_idle(b, 100);
    ld_lm_request qb = request(pb, 22, 6, 1, &rb);
    qb.sample = greedy;
    CHECK(ld_lm_batch_submit(b, &qb, NULL) == LD_OK);
    /* C is B again while B runs: it shares B's pages (an active sequence) */
    ld_lm_batch_step(b, NULL);
    ld_lm_request qc = request(pb, 22, 6, 1, &rc);
    qc.sample = greedy;
    CHECK(ld_lm_batch_submit(b, &qc, NULL) == LD_OK);
    run_until_idle(b, 100);
    CHECK(ra.done == 1 && rb.done == 1 && rc.done == 1);
    CHECK_MSG(rb.computed == 4, "B computed %lld prompt tokens, expected 4 (18 shared)", (long long)rb.computed);
    CHECK_MSG(rc.computed == 1, "C computed %lld prompt tokens, expected 1 (21 shared)", (long long)rc.computed);
    one ob = alone(m, pb, 22, &greedy, 6, 1, -1);
    CHECK(rb.n == 6 && memcmp(rb.tok, ob.tok, 6 * sizeof(int32_t)) == 0);
    CHECK(rc.n == 6 && memcmp(rc.tok, ob.tok, 6 * sizeof(int32_t)) == 0);
    ld_lm_batch_stats st;
    ld_lm_batch_stats_get(b, &st);
    CHECK(st.prompt_tokens_reused == 18 + 21 && st.prompt_tokens == 20 + 4 + 1);
    check_clean(b);
    ld_lm_batch_free(b);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(cancel_frees_slot_and_pages_at_once) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx);
    make_prompts();
    ld_lm_batch_params bp = ld_lm_batch_default_params();
    bp.max_seqs = 1, bp.page_tokens = 4, bp.cache_seqs = 0;
    ld_lm_batch *b = NULL;
    CHECK(ld_lm_batch_new(m, &bp, &b) == LD_OK);
    result r1 = {0}, r2 = {0};
    int64_t id1, id2;
    ld_lm_request q1 = request(prompts[2], 17, 30, 1, &r1), q2 = request(prompts[3], 9, 30, 1, &r2);
    CHECK(ld_lm_batch_submit(b, &q1, &id1) == LD_OK && ld_lm_batch_submit(b, &q2, &id2) == LD_OK && id1 != id2);
    for (int i = 0; i < 3; i++) ld_lm_batch_step(b, NULL);
    ld_lm_batch_stats st;
    ld_lm_batch_stats_get(b, &st);
    CHECK(st.active == 1 && st.queued == 1 && st.kv_pages_used == 5);
    CHECK(ld_lm_batch_cancel(b, id2)); /* queued */
    CHECK(r2.done == 1 && r2.why == LD_FINISH_CANCELLED && r2.n == 0);
    CHECK(ld_lm_batch_cancel(b, id1)); /* running */
    CHECK(r1.done == 1 && r1.why == LD_FINISH_CANCELLED && r1.n == 3); /* one token a step */
    ld_lm_batch_stats_get(b, &st);
    CHECK(st.active == 0 && st.queued == 0 && st.kv_pages_used == 0);
    CHECK(!ld_lm_batch_cancel(b, id1) && !ld_lm_batch_cancel(b, 999));
    /* freeing the scheduler with requests in flight ends them */
    result r3 = {0};
    ld_lm_request q3 = request(prompts[0], 3, 5, 1, &r3);
    CHECK(ld_lm_batch_submit(b, &q3, NULL) == LD_OK);
    ld_lm_batch_free(b);
    CHECK(r3.done == 1 && r3.why == LD_FINISH_CANCELLED);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(limits_are_clean_errors) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx);
    make_prompts();
    ld_lm_batch_params bp = ld_lm_batch_default_params();
    bp.max_seqs = 2, bp.max_queue = 1, bp.max_len = 32, bp.page_tokens = 4;
    bp.kv_bytes = 10 * ld_lm_kv_page_bytes(ld_lm_config_of(m), 4); /* 40 tokens */
    ld_lm_batch *b = NULL;
    CHECK(ld_lm_batch_new(m, &bp, &b) == LD_OK);
    result r = {0};
    ld_lm_request q = request(prompts[2], 17, 10, 1, &r);
    int32_t bad[2] = {3, 31};
    q.prompt = bad, q.n_prompt = 2;
    CHECK_STATUS(ctx, ld_lm_batch_submit(b, &q, NULL), LD_ERR_INVALID_ARG, "outside the vocabulary");
    q.prompt = prompts[2], q.n_prompt = 0;
    CHECK_STATUS(ctx, ld_lm_batch_submit(b, &q, NULL), LD_ERR_INVALID_ARG, "prompt");
    int32_t longp[40] = {0};
    q.prompt = longp, q.n_prompt = 32;
    CHECK_STATUS(ctx, ld_lm_batch_submit(b, &q, NULL), LD_ERR_LIMIT, "at most 31");
    q.n_prompt = 17, q.top_logprobs = 21;
    CHECK_STATUS(ctx, ld_lm_batch_submit(b, &q, NULL), LD_ERR_INVALID_ARG, "top_logprobs");
    q.top_logprobs = 0;
    /* 17 + 10 tokens need 7 pages: two of them cannot run together in 10 pages, so the second
     * waits for the first */
    result rs[4];
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < 4; i++) {
        ld_lm_request qi = request(prompts[i], plen[i] < 17 ? plen[i] : 17, 10, 1, &rs[i]);
        qi.prompt = prompts[2], qi.n_prompt = 17, qi.seed = (uint64_t)i;
        ld_status st = ld_lm_batch_submit(b, &qi, NULL);
        if (i < 2) CHECK(st == LD_OK);
        else CHECK_STATUS(ctx, st, LD_ERR_LIMIT, "queue is full");
        if (i == 0) ld_lm_batch_step(b, NULL);
    }
    ld_lm_batch_stats st;
    ld_lm_batch_stats_get(b, &st);
    CHECK(st.active == 1 && st.queued == 1 && st.kv_pages_reserved + st.kv_pages_used <= st.kv_pages_total);
    run_until_idle(b, 200);
    CHECK(rs[0].done == 1 && rs[1].done == 1 && rs[0].n == 10 && rs[1].n == 10);
    check_clean(b);
    ld_lm_batch_free(b);
    /* bad parameters */
    bp = ld_lm_batch_default_params();
    bp.max_seqs = 8, bp.step_tokens = 4;
    CHECK_STATUS(ctx, ld_lm_batch_new(m, &bp, &b), LD_ERR_INVALID_ARG, "step_tokens");
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* Allows only even token ids; fails after `fail_at` accepted tokens (0 = never). */
typedef struct even {
    int accepted, fail_at;
    bool nothing; /* mask everything */
} even;
static ld_status even_mask(void *user, float *lg, int64_t V) {
    even *e = user;
    for (int64_t v = 0; v < V; v++)
        if (v % 2 || e->nothing) lg[v] = -INFINITY;
    return LD_OK;
}
static ld_status even_accept(void *user, int32_t tok) {
    even *e = user;
    e->accepted++;
    return tok % 2 || (e->fail_at && e->accepted >= e->fail_at) ? LD_ERR_FORMAT : LD_OK;
}

TEST(constraints_stops_and_logprobs) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx);
    make_prompts();
    ld_lm_batch *b = NULL;
    CHECK(ld_lm_batch_new(m, NULL, &b) == LD_OK);
    result r[5];
    memset(r, 0, sizeof r);
    even e[3] = {{.accepted = 0}, {.nothing = true}, {.fail_at = 3}};
    for (int i = 0; i < 3; i++) {
        ld_lm_request q = request(prompts[i], plen[i], 20, 7, &r[i]);
        q.constraint = (ld_lm_constraint){.mask = even_mask, .accept = even_accept, .user = &e[i]};
        q.top_logprobs = 5;
        CHECK(ld_lm_batch_submit(b, &q, NULL) == LD_OK);
    }
    /* stop token: the greedy continuation's 4th token ends it (not reported) */
    ld_sample_params greedy = ld_sample_default_params();
    greedy.temperature = 0;
    one o = alone(m, prompts[3], plen[3], &greedy, 10, 1, -1);
    int32_t stop = o.tok[3];
    int first = 0;
    while (o.tok[first] != stop) first++;
    ld_lm_request q3 = request(prompts[3], plen[3], 10, 1, &r[3]);
    q3.sample = greedy, q3.stop_ids = &stop, q3.n_stop_ids = 1, q3.top_logprobs = 3;
    ld_lm_request q4 = request(prompts[4], plen[4], 10, 1, &r[4]);
    r[4].stop_after = 2;
    CHECK(ld_lm_batch_submit(b, &q3, NULL) == LD_OK && ld_lm_batch_submit(b, &q4, NULL) == LD_OK);
    run_until_idle(b, 100);
    CHECK(r[0].done == 1 && r[0].why == LD_FINISH_LENGTH && r[0].n == 20);
    for (int j = 0; j < r[0].n; j++) CHECK(r[0].tok[j] % 2 == 0);
    CHECK(r[0].logprobs_ok);
    CHECK(r[1].done == 1 && r[1].why == LD_FINISH_ERROR && r[1].n == 0);
    CHECK(r[2].done == 1 && r[2].why == LD_FINISH_ERROR && r[2].n == 2);
    CHECK(r[3].done == 1 && r[3].why == LD_FINISH_STOP && r[3].n == first && r[3].logprobs_ok);
    for (int j = 0; j < r[3].n; j++) CHECK(r[3].lp[j] <= 0 && r[3].lp[j] > -10);
    CHECK(r[4].done == 1 && r[4].why == LD_FINISH_STOP && r[4].n == 2);
    CHECK(strcmp(ld_finish_name(LD_FINISH_LENGTH), "length") == 0);
    check_clean(b);
    ld_lm_batch_free(b);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* A LoRA adapter with random A and B (B starts at zero: no effect) attached to m. */
static ld_adapter *random_lora(ld_lm *m, const char *targets, int64_t rank, uint64_t seed) {
    ld_adapter_config c = ld_adapter_default_config();
    c.method = LD_ADAPTER_LORA, c.rank = rank, c.alpha = 2.0f * (float)rank;
    snprintf(c.targets, sizeof c.targets, "%s", targets);
    ld_adapter *a = NULL;
    CHECK(ld_adapter_new(m, &c, seed, &a) == LD_OK);
    ld_params *set = ld_adapter_params(a);
    ld_rng r = ld_rng_init(seed);
    for (int i = 0; i < ld_params_count(set); i++) {
        ld_tensor *p = ld_params_at(set, i);
        for (int64_t j = 0; j < ld_tensor_numel(p); j++) ((float *)p->data)[j] = 0.4f * ld_rng_normal(&r);
    }
    return a;
}

/* The session's LoRA rows give the logits of the training forward with the adapter attached
 * (every position), for llama and gpt2 (fused c_attn) models. */
TEST(session_lora_equals_training_forward) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (int arch = 0; arch < 2; arch++) {
        ld_lm_config c = ld_lm_default_config(arch ? LD_ARCH_GPT2 : LD_ARCH_LLAMA);
        c.vocab_size = 31, c.hidden_size = 16, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = arch ? 4 : 2;
        c.max_position = 96, c.intermediate_size = 24, c.init_std = 0.4f;
        ld_lm *m = NULL;
        CHECK(ld_lm_new(ctx, &c, 11, &m) == LD_OK);
        ld_adapter *a = random_lora(m, arch ? "c_attn,c_proj" : "q_proj,v_proj,down_proj", 3, 5);
        const int32_t ids[7] = {1, 5, 9, 2, 30, 7, 7};
        ld_tape *t = NULL;
        ld_tensor *logits = NULL;
        CHECK(ld_tape_new(ctx, &t) == LD_OK);
        CHECK(ld_lm_forward(m, t, ids, NULL, 1, 7, &logits, NULL) == LD_OK);
        ld_lm_session *s = NULL;
        CHECK(ld_lm_session_new(m, 2, 96, 16, &s) == LD_OK);
        int id = 0;
        CHECK(ld_lm_session_add_lora(s, a, &id) == LD_OK && id == 1 && ld_lm_session_loras(s) == 1);
        ld_adapter_free(a); /* the session keeps its copy */
        CHECK(ld_lm_session_set_lora(s, 1, 2) == LD_ERR_INVALID_ARG && ld_lm_session_set_lora(s, 2, 1) == LD_ERR_INVALID_ARG);
        CHECK(ld_lm_session_set_lora(s, 1, id) == LD_OK);
        ld_lm_segment segs[2] = {{0, ids, 7}, {1, ids, 7}}; /* the base and the LoRA in one eval */
        const float *z = NULL;
        CHECK(ld_lm_session_eval(s, segs, 2, true, &z) == LD_OK);
        double worst = 0, moved = 0;
        const float *ref = logits->data;
        for (int64_t i = 0; i < 7 * 31; i++) {
            worst = fmax(worst, fabs((double)z[7 * 31 + i] - ref[i]));
            moved = fmax(moved, fabs((double)z[i] - ref[i]));
        }
        CHECK_MSG(worst < 1e-4, "arch %d: LoRA rows differ from the training forward by %.3g", arch, worst);
        CHECK_MSG(moved > 1e-2, "arch %d: the LoRA changes the logits by only %.3g", arch, moved);
        ld_lm_session_clear(s, 1); /* a cleared slot runs the base again */
        CHECK(ld_lm_session_eval(s, &segs[1], 1, true, &z) == LD_OK);
        worst = 0;
        for (int64_t i = 0; i < 7 * 31; i++) worst = fmax(worst, fabs((double)z[i] - ref[i]));
        CHECK(worst > 1e-2);
        ld_lm_session_free(s);
        ld_tape_free(t);
        ld_lm_free(m);
    }
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* Two adapters and the base share the batch's steps; each request gets the tokens it gets
 * alone, and prefixes are reused only within one adapter (all prompts are the same). */
TEST(two_loras_and_the_base_in_one_batch_equal_each_alone) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx);
    make_prompts();
    ld_lm_batch_params bp = ld_lm_batch_default_params();
    bp.max_seqs = 3, bp.step_tokens = 64, bp.page_tokens = 4, bp.min_prefix = 2;
    ld_lm_batch *b = NULL;
    CHECK(ld_lm_batch_new(m, &bp, &b) == LD_OK);
    int ids[3] = {0, 0, 0};
    ld_adapter *a = random_lora(m, "q_proj,v_proj", 4, 21);
    CHECK(ld_lm_session_add_lora(ld_lm_batch_session(b), a, &ids[1]) == LD_OK);
    ld_adapter_free(a);
    a = random_lora(m, "k_proj,o_proj,up_proj", 2, 22);
    CHECK(ld_lm_session_add_lora(ld_lm_batch_session(b), a, &ids[2]) == LD_OK);
    ld_adapter_free(a);
    CHECK(ids[1] == 1 && ids[2] == 2);
    ld_sample_params greedy = ld_sample_default_params();
    greedy.temperature = 0;
    result solo[3], r[3];
    memset(solo, 0, sizeof solo);
    for (int k = 0; k < 3; k++) { /* each alone, its cache dropped after */
        ld_lm_request q = request(prompts[2], plen[2], 12, 1, &solo[k]);
        q.sample = greedy, q.lora = ids[k];
        CHECK(ld_lm_batch_submit(b, &q, NULL) == LD_OK);
        run_until_idle(b, 100);
        CHECK(solo[k].done == 1 && solo[k].n == 12);
        ld_lm_batch_drop_cache(b);
    }
    CHECK(memcmp(solo[0].tok, solo[1].tok, sizeof solo[0].tok) && memcmp(solo[0].tok, solo[2].tok, sizeof solo[0].tok) &&
          memcmp(solo[1].tok, solo[2].tok, sizeof solo[0].tok)); /* the adapters matter */
    for (int round = 0; round < 2; round++) { /* together: prefills in one pass, then with cached prefixes */
        memset(r, 0, sizeof r);
        for (int k = 0; k < 3; k++) {
            ld_lm_request q = request(prompts[2], plen[2], 12, 1, &r[k]);
            q.sample = greedy, q.lora = ids[2 - k];
            CHECK(ld_lm_batch_submit(b, &q, NULL) == LD_OK);
        }
        run_until_idle(b, 100);
        for (int k = 0; k < 3; k++)
            CHECK_MSG(r[k].done == 1 && r[k].n == 12 && !memcmp(r[k].tok, solo[2 - k].tok, sizeof r[k].tok),
                      "round %d, LoRA %d: tokens differ from its run alone", round, ids[2 - k]);
        ld_lm_batch_stats st;
        ld_lm_batch_stats_get(b, &st);
        CHECK(round == 0 || st.prompt_tokens_reused > 0);
    }
    ld_lm_request bad = request(prompts[2], plen[2], 12, 1, &r[0]);
    bad.lora = 3;
    CHECK(ld_lm_batch_submit(b, &bad, NULL) == LD_ERR_INVALID_ARG);
    check_clean(b);
    ld_lm_batch_free(b);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

/* tests/unit/test_kv_pages.c — the paged KV cache: a session with small pages gives the
 * logits of an unpaged one; shared prefixes give the logits of recomputing them and are never
 * written through; cutting a slot copies a shared page first; a full pool is a clean error
 * that changes nothing; every page comes back. Both variants (llama with GQA, gpt2). */
#include "ld_test.h"
#include "liandan/infer.h"

static ld_lm *tiny(ld_ctx *ctx, ld_lm_arch arch) {
    ld_lm_config c = ld_lm_default_config(arch);
    c.vocab_size = 29, c.hidden_size = 16, c.n_layers = 2, c.n_heads = 4, c.max_position = 40;
    c.n_kv_heads = arch == LD_ARCH_LLAMA ? 2 : 4;
    c.intermediate_size = 24;
    c.tie_embeddings = arch == LD_ARCH_GPT2;
    c.init_std = 0.3f;
    ld_lm *m = NULL;
    CHECK(ld_lm_new(ctx, &c, 5, &m) == LD_OK);
    return m;
}

static ld_lm_session *paged(ld_lm *m, int slots, int64_t page, int64_t n_pages) {
    ld_lm_session_params p = ld_lm_session_default_params();
    p.n_slots = slots, p.max_len = 40, p.max_tokens = 40, p.page_tokens = page, p.n_pages = n_pages;
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new_ex(m, &p, &s) == LD_OK);
    return s;
}

static float max_diff(const float *a, const float *b, int64_t n) {
    float d = 0;
    for (int64_t i = 0; i < n; i++) d = fabsf(a[i] - b[i]) > d ? fabsf(a[i] - b[i]) : d;
    return d;
}

static const int32_t seq[30] = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4,
                                6, 2, 6, 4, 3, 3, 8, 3, 2, 7};

/* Runs seq through slot 0 in chunks (prefill 7, then 3, then single tokens) and returns
 * every step's last logits concatenated into out[steps, V]. */
static int run_chunks(ld_lm_session *s, float *out, int64_t V) {
    int64_t at = 0, steps = 0, sizes[] = {7, 3, 1, 1, 1, 1, 1, 5, 1, 1};
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        ld_lm_segment g = {0, seq + at, sizes[c]};
        const float *lg;
        if (ld_lm_session_eval(s, &g, 1, false, &lg) != LD_OK) return -1;
        memcpy(out + steps++ * V, lg, (size_t)V * sizeof(float));
        at += sizes[c];
    }
    return (int)steps;
}

TEST(paged_logits_equal_unpaged) {
    for (int arch = 0; arch < 2; arch++) {
        ld_ctx *ctx = NULL;
        ld_ctx_new(NULL, &ctx);
        ld_lm *m = tiny(ctx, (ld_lm_arch)arch);
        int64_t V = ld_lm_config_of(m)->vocab_size;
        float ref[16 * 29], got[16 * 29];
        ld_lm_session *one = paged(m, 1, 0, 0);
        CHECK(ld_lm_session_page_tokens(one) == 40);
        int n = run_chunks(one, ref, V);
        CHECK(n == 10);
        int64_t pages[] = {1, 3, 4, 16};
        for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
            ld_lm_session *s = paged(m, 2, pages[i], 0);
            CHECK(run_chunks(s, got, V) == n);
            float d = max_diff(ref, got, n * V);
            CHECK_MSG(d < 2e-5f, "arch %d, pages of %lld: logits differ by %g", arch, (long long)pages[i], d);
            int64_t used, total;
            ld_lm_session_kv_pages(s, &used, &total);
            CHECK(used == (22 + pages[i] - 1) / pages[i] && total == 2 * ((40 + pages[i] - 1) / pages[i]));
            ld_lm_session_clear(s, 0);
            ld_lm_session_kv_pages(s, &used, NULL);
            CHECK(used == 0);
            ld_lm_session_free(s);
        }
        ld_lm_session_free(one);
        ld_lm_free(m);
        CHECK(ld_ctx_bytes_in_use(ctx) == 0);
        ld_ctx_free(ctx);
    }
}

TEST(shared_prefix_gives_recomputed_logits) {
    for (int arch = 0; arch < 2; arch++) {
        ld_ctx *ctx = NULL;
        ld_ctx_new(NULL, &ctx);
        ld_lm *m = tiny(ctx, (ld_lm_arch)arch);
        int64_t V = ld_lm_config_of(m)->vocab_size;
        ld_lm_session *s = paged(m, 4, 4, 0), *ref = paged(m, 1, 0, 0); /* ref: unpaged */
        const float *lg;
        ld_lm_segment g0 = {0, seq, 10};
        CHECK(ld_lm_session_eval(s, &g0, 1, false, &lg) == LD_OK);
        /* slot 1 takes 8 tokens (two whole pages), slot 2 takes 6 (one page + a copied half) */
        CHECK(ld_lm_session_share(s, 1, 0, 8) == LD_OK && ld_lm_session_len(s, 1) == 8);
        CHECK(ld_lm_session_share(s, 2, 0, 6) == LD_OK && ld_lm_session_len(s, 2) == 6);
        int64_t used;
        ld_lm_session_kv_pages(s, &used, NULL);
        CHECK(used == 3 + 1); /* slot 0's three pages and slot 2's copy */
        /* every slot continues differently in one call; slot 0 too (its own partial page) */
        int32_t a[] = {11, 12}, b[] = {13, 14, 15}, c[] = {16};
        ld_lm_segment gs[3] = {{0, a, 2}, {1, b, 3}, {2, c, 1}};
        float got[3 * 29];
        CHECK(ld_lm_session_eval(s, gs, 3, false, &lg) == LD_OK);
        memcpy(got, lg, sizeof got);
        const int64_t keep[3] = {10, 8, 6};
        for (int k = 0; k < 3; k++) {
            int32_t full[16];
            memcpy(full, seq, (size_t)keep[k] * sizeof(int32_t));
            memcpy(full + keep[k], gs[k].ids, (size_t)gs[k].n * sizeof(int32_t));
            ld_lm_session_clear(ref, 0);
            ld_lm_segment gr = {0, full, keep[k] + gs[k].n};
            CHECK(ld_lm_session_eval(ref, &gr, 1, false, &lg) == LD_OK);
            float d = max_diff(lg, got + k * V, V);
            CHECK_MSG(d < 2e-5f, "arch %d slot %d: shared-prefix logits differ by %g", arch, k, d);
        }
        /* cutting slot 1 inside its second (shared) page copies it: slot 0 is unaffected */
        CHECK(ld_lm_session_truncate(s, 1, 6) == LD_OK && ld_lm_session_len(s, 1) == 6);
        int32_t d1[] = {20, 21, 22};
        ld_lm_segment g1 = {1, d1, 3};
        CHECK(ld_lm_session_eval(s, &g1, 1, false, &lg) == LD_OK);
        int32_t e[] = {9};
        ld_lm_segment g2 = {0, e, 1};
        float after[29];
        CHECK(ld_lm_session_eval(s, &g2, 1, false, &lg) == LD_OK);
        memcpy(after, lg, sizeof after);
        int32_t full0[13];
        memcpy(full0, seq, 10 * sizeof(int32_t));
        full0[10] = 11, full0[11] = 12, full0[12] = 9;
        ld_lm_session_clear(ref, 0);
        ld_lm_segment gr = {0, full0, 13};
        CHECK(ld_lm_session_eval(ref, &gr, 1, false, &lg) == LD_OK);
        CHECK(max_diff(lg, after, V) < 2e-5f);
        for (int k = 0; k < 4; k++) ld_lm_session_clear(s, k);
        ld_lm_session_kv_pages(s, &used, NULL);
        CHECK(used == 0);
        /* bad arguments */
        CHECK_STATUS(ctx, ld_lm_session_share(s, 1, 1, 0), LD_ERR_INVALID_ARG, "share");
        CHECK_STATUS(ctx, ld_lm_session_share(s, 1, 0, 1), LD_ERR_INVALID_ARG, "share");
        CHECK_STATUS(ctx, ld_lm_session_truncate(s, 0, 1), LD_ERR_INVALID_ARG, "truncate");
        ld_lm_session_free(s), ld_lm_session_free(ref);
        ld_lm_free(m);
        CHECK(ld_ctx_bytes_in_use(ctx) == 0);
        ld_ctx_free(ctx);
    }
}

TEST(full_pool_is_a_clean_error) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx, LD_ARCH_LLAMA);
    ld_lm_session *s = paged(m, 3, 4, 3); /* 12 tokens in all */
    const float *lg;
    ld_lm_segment g = {0, seq, 9};
    CHECK(ld_lm_session_pages_needed(s, 0, 9) == 3);
    CHECK(ld_lm_session_eval(s, &g, 1, false, &lg) == LD_OK);
    ld_lm_segment h[2] = {{0, seq, 3}, {1, seq, 1}}; /* slot 0 fits its page, slot 1 needs one */
    CHECK_STATUS(ctx, ld_lm_session_eval(s, h, 2, false, &lg), LD_ERR_LIMIT, "KV cache full");
    CHECK(ld_lm_session_len(s, 0) == 9 && ld_lm_session_len(s, 1) == 0);
    CHECK_STATUS(ctx, ld_lm_session_share(s, 1, 0, 5), LD_ERR_LIMIT, "KV cache full");
    CHECK(ld_lm_session_len(s, 1) == 0);
    CHECK(ld_lm_session_share(s, 1, 0, 8) == LD_OK); /* whole pages: no copy needed */
    CHECK_STATUS(ctx, ld_lm_session_truncate(s, 1, 7), LD_ERR_LIMIT, "KV cache full");
    CHECK(ld_lm_session_len(s, 1) == 8);
    CHECK(ld_lm_session_truncate(s, 1, 4) == LD_OK); /* a page boundary: nothing to copy */
    ld_lm_session_free(s);
    /* a byte budget: pages of 4 tokens for this model are 2 * 2 layers * 4 * 8 floats */
    CHECK(ld_lm_kv_page_bytes(ld_lm_config_of(m), 4) == 2 * 2 * 4 * 8 * sizeof(float));
    ld_lm_session_params p = ld_lm_session_default_params();
    p.n_slots = 2, p.max_len = 40, p.max_tokens = 8, p.page_tokens = 4, p.kv_bytes = 5 * 512 + 100;
    CHECK(ld_lm_session_new_ex(m, &p, &s) == LD_OK);
    int64_t total;
    ld_lm_session_kv_pages(s, NULL, &total);
    CHECK(total == 5 && ld_lm_session_kv_bytes(s) == 5 * 512);
    ld_lm_session_free(s);
    p.kv_bytes = 100;
    s = NULL;
    CHECK_STATUS(ctx, ld_lm_session_new_ex(m, &p, &s), LD_ERR_LIMIT, "KV budget");
    CHECK(s == NULL);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(hidden_states_give_the_logits) {
    /* gpt2 ties the head to the token embedding: logits = hidden · wte^T */
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx, LD_ARCH_GPT2);
    const ld_lm_config *c = ld_lm_config_of(m);
    ld_lm_session *s = paged(m, 2, 4, 0);
    ld_lm_segment g0 = {0, seq, 9}, g1 = {1, seq, 9};
    const float *lg, *h;
    float logits[9 * 29];
    CHECK(ld_lm_session_eval(s, &g0, 1, true, &lg) == LD_OK);
    memcpy(logits, lg, sizeof logits);
    CHECK(ld_lm_session_eval_hidden(s, &g1, 1, &h) == LD_OK && ld_lm_session_len(s, 1) == 9);
    const ld_tensor *wte = NULL;
    for (int i = 0; i < ld_params_count(ld_lm_params(m)); i++)
        if (!strcmp(ld_params_at(ld_lm_params(m), i)->name, "transformer.wte.weight")) wte = ld_params_at(ld_lm_params(m), i);
    CHECK(wte != NULL);
    float d = 0;
    for (int r = 0; wte && r < 9; r++)
        for (int v = 0; v < c->vocab_size; v++) {
            double z = 0;
            for (int k = 0; k < c->hidden_size; k++) z += (double)h[r * c->hidden_size + k] * ((const float *)wte->data)[v * c->hidden_size + k];
            d = fabsf((float)z - logits[r * c->vocab_size + v]) > d ? fabsf((float)z - logits[r * c->vocab_size + v]) : d;
        }
    CHECK_MSG(d < 1e-4f, "hidden · wte differs from the logits by %g", d);
    ld_lm_session_free(s);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

/* tests/unit/test_kv_pages.c — the paged KV cache: a session with small pages gives the
 * logits of an unpaged one; shared prefixes give the logits of recomputing them and are never
 * written through; cutting a slot copies a shared page first; a full pool is a clean error
 * that changes nothing; every page comes back. Both variants (llama with GQA, gpt2). KV cache
 * types: F16 and Q8_0 caches change a demo-sized model's perplexity by < 0.1 % and < 1 %,
 * and a type the cache cannot hold, or a key it cannot store, is a clean error. */
#include "ld_test.h"
#include "liandan/infer.h"
#include "kernels/kernels.h"

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

/* One eval of many segments (decode tokens, a short chunk, and one longer than the segments
 * attention runs in parallel) over caches of several pages, some in one run and some split:
 * every segment's logits are those of its sequence recomputed alone, and 2 threads give the
 * bits of 1 (F32 and F16 caches). */
TEST(many_segments_equal_each_alone_on_any_thread_count) {
    for (int arch = 0; arch < 2; arch++)
        for (int kt = 0; kt < 2; kt++) {
            ld_ctx *ctx = NULL;
            ld_ctx_new(NULL, &ctx);
            ld_lm *m = tiny(ctx, (ld_lm_arch)arch);
            const int64_t V = ld_lm_config_of(m)->vocab_size;
            ld_lm_session_params p = ld_lm_session_default_params();
            /* 15 pages of 4 tokens: exactly what the segments end with, so some sequences'
             * pages cannot all follow each other (runs of pages, merged) */
            p.n_slots = 5, p.max_len = 40, p.max_tokens = 40, p.page_tokens = 4, p.n_pages = 15;
            p.kv_type_k = p.kv_type_v = kt ? LD_F16 : LD_F32;
            enum { NS = 5 };
            const int64_t hist[NS] = {1, 5, 9, 13, 2}, more[NS] = {1, 1, 18, 3, 1};
            int32_t ids[NS][40];
            for (int i = 0; i < NS; i++)
                for (int64_t j = 0; j < hist[i] + more[i]; j++) ids[i][j] = (int32_t)((7 * i + 3 * j + j * j) % V);
            float got[2][NS * 29];
            for (int threads = 1; threads <= 2; threads++) {
                ld_ctx_set_threads(ctx, threads);
                ld_lm_session *s = NULL;
                CHECK(ld_lm_session_new_ex(m, &p, &s) == LD_OK);
                const float *lg;
                ld_lm_segment g[NS];
                for (int i = 0; i < NS; i++) g[i] = (ld_lm_segment){i, ids[i], hist[i]};
                CHECK(ld_lm_session_eval(s, g, NS, false, &lg) == LD_OK);
                for (int i = 0; i < NS; i++) g[i] = (ld_lm_segment){i, ids[i] + hist[i], more[i]};
                CHECK(ld_lm_session_eval(s, g, NS, false, &lg) == LD_OK);
                memcpy(got[threads - 1], lg, sizeof got[0]);
                ld_lm_session_free(s);
            }
            CHECK_MSG(!memcmp(got[0], got[1], sizeof got[0]), "arch %d, cache %d: 2 threads changed the logits", arch, kt);
            p.n_slots = 1;
            ld_lm_session *ref = NULL;
            CHECK(ld_lm_session_new_ex(m, &p, &ref) == LD_OK);
            for (int i = 0; i < NS; i++) {
                const float *lg;
                ld_lm_segment g = {0, ids[i], hist[i] + more[i]};
                ld_lm_session_clear(ref, 0);
                CHECK(ld_lm_session_eval(ref, &g, 1, false, &lg) == LD_OK);
                float d = max_diff(lg, got[1] + i * V, V);
                CHECK_MSG(d < 2e-5f, "arch %d, cache %d, segment %d: logits differ by %g from the sequence alone", arch, kt,
                          i, d);
            }
            ld_lm_session_free(ref);
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

/* The demo model's shape (configs/poetry.json: 4.7M parameters), a longer context so that a
 * sequence spans several read-back chunks of a non-F32 cache; weights drawn wider than the
 * default so the predictions are far from uniform (F32 perplexity well under the vocabulary). */
static ld_lm *demo_shape(ld_ctx *ctx) {
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = 6000, c.hidden_size = 256, c.intermediate_size = 688, c.n_layers = 4, c.n_heads = 4;
    c.n_kv_heads = 2, c.max_position = 640, c.tie_embeddings = true, c.init_std = 0.08f;
    ld_lm *m = NULL;
    CHECK(ld_lm_new(ctx, &c, 11, &m) == LD_OK);
    return m;
}

#define PPL_T 600
/* Perplexity of ids[PPL_T] under a session with K/V cache types kt/vt and pages of `page`
 * tokens: a 400-token prefill (logits of every row), then one token per eval. *last gets the
 * final step's logits. */
static double ppl_with(ld_lm *m, const int32_t *ids, ld_dtype kt, ld_dtype vt, int64_t page, float *last) {
    ld_lm_session_params p = ld_lm_session_default_params();
    p.max_len = PPL_T, p.max_tokens = 400, p.page_tokens = page, p.kv_type_k = kt, p.kv_type_v = vt;
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new_ex(m, &p, &s) == LD_OK);
    const int64_t V = ld_lm_config_of(m)->vocab_size;
    double nll = 0;
    const float *lg;
    ld_lm_segment g = {0, ids, 400};
    CHECK(ld_lm_session_eval(s, &g, 1, true, &lg) == LD_OK);
    for (int64_t i = 0; i < 400; i++) nll -= ld_logprob(lg + i * V, V, ids[i + 1]);
    for (int64_t i = 400; i < PPL_T - 1; i++) {
        g = (ld_lm_segment){0, ids + i, 1};
        CHECK(ld_lm_session_eval(s, &g, 1, false, &lg) == LD_OK);
        nll -= ld_logprob(lg, V, ids[i + 1]);
    }
    memcpy(last, lg, (size_t)V * sizeof(float));
    ld_lm_session_free(s);
    return exp(nll / (PPL_T - 1));
}

TEST(kv_cache_types_keep_perplexity) {
    if (ld_isa_active() == LD_ISA_SCALAR) /* the cache code is the same at every level */
        SKIP("the scalar reference kernels take minutes on the demo model's shape");
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = demo_shape(ctx);
    const int64_t V = ld_lm_config_of(m)->vocab_size;
    /* text the model itself would write: 8 random tokens, then samples of its own
     * predictions (temperature 1, an LCG's uniforms) */
    int32_t ids[PPL_T];
    uint64_t x = 12345;
    float *base = malloc((size_t)V * sizeof(float)), *got = malloc((size_t)V * sizeof(float));
    ld_lm_session *gen = NULL;
    CHECK(ld_lm_session_new(m, 1, PPL_T, 8, &gen) == LD_OK);
    for (int i = 0; i < PPL_T; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        if (i < 8) {
            ids[i] = (int32_t)((x >> 33) % (uint64_t)V);
            continue;
        }
        const float *lg;
        ld_lm_segment g = {0, ids + (i == 8 ? 0 : i - 1), i == 8 ? 8 : 1};
        CHECK(ld_lm_session_eval(gen, &g, 1, false, &lg) == LD_OK);
        double mx = lg[0], sum = 0, acc = 0;
        for (int64_t v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
        for (int64_t v = 0; v < V; v++) sum += exp(lg[v] - mx);
        double u = (double)(x >> 11) / 9007199254740992.0 * sum;
        int32_t v = 0;
        for (; v < V - 1; v++)
            if ((acc += exp(lg[v] - mx)) > u) break;
        ids[i] = v;
    }
    ld_lm_session_free(gen);
    double p32 = ppl_with(m, ids, LD_F32, LD_F32, 0, base);
    CHECK(p32 > 1 && p32 < V / 2); /* not a flat model */
    /* per type: one page (read back in chunks), and pages of 16 tokens */
    const struct { ld_dtype k, v; double bound; } types[] = {
        {LD_F16, LD_F16, 1e-3}, {LD_Q8_0, LD_Q8_0, 1e-2}, {LD_F16, LD_Q8_0, 1e-2}, {LD_Q8_0, LD_F32, 1e-2}};
    float d_f16 = 0, d_q8 = 0;
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
        for (int paging = 0; paging < 2; paging++) {
            double p = ppl_with(m, ids, types[t].k, types[t].v, paging ? 16 : 0, got);
            double rel = fabs(p - p32) / p32;
            float d = max_diff(got, base, V);
            printf("  K %s V %s pages %d: ppl %.3f (F32 %.3f, %.2e relative), last logits max diff %.2e\n",
                   ld_dtype_traits(types[t].k)->name, ld_dtype_traits(types[t].v)->name, paging ? 16 : PPL_T, p, p32,
                   rel, (double)d);
            CHECK(rel < types[t].bound);
            CHECK(d > 0); /* the cache really holds the type */
            if (t == 0) d_f16 = d > d_f16 ? d : d_f16;
            if (t == 1) d_q8 = d > d_q8 ? d : d_q8;
        }
    CHECK(d_f16 < d_q8); /* F16 keeps more than Q8_0 */
    free(base), free(got);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(kv_cache_types_bad_input) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm *m = tiny(ctx, LD_ARCH_LLAMA); /* K/V rows of 8 values: not a Q8_0 block */
    ld_lm_session_params p = ld_lm_session_default_params();
    p.max_len = 40, p.max_tokens = 40;
    ld_lm_session *s = NULL;
    p.kv_type_v = LD_Q8_0;
    CHECK_STATUS(ctx, ld_lm_session_new_ex(m, &p, &s), LD_ERR_SHAPE, "Q8_0 V cache needs rows of whole 32-value blocks");
    p.kv_type_v = LD_F32, p.kv_type_k = LD_Q4_K;
    CHECK_STATUS(ctx, ld_lm_session_new_ex(m, &p, &s), LD_ERR_DTYPE, "K cache cannot hold type Q4_K");
    p.kv_type_k = LD_DTYPE_COUNT;
    CHECK_STATUS(ctx, ld_lm_session_new_ex(m, &p, &s), LD_ERR_DTYPE, "K cache cannot hold type ?");
    p.kv_type_k = (ld_dtype)-3;
    CHECK_STATUS(ctx, ld_lm_session_new_ex(m, &p, &s), LD_ERR_DTYPE, "K cache cannot hold");
    CHECK(s == NULL);
    /* an F16 cache holds half the bytes per page: the same budget gives twice the pages */
    CHECK(ld_lm_kv_page_bytes_as(ld_lm_config_of(m), 4, LD_F16, LD_F16) * 2 == ld_lm_kv_page_bytes(ld_lm_config_of(m), 4));
    CHECK(ld_lm_kv_page_bytes_as(ld_lm_config_of(m), 4, LD_Q8_0, LD_F32) == 0);
    p.kv_type_k = p.kv_type_v = LD_F16, p.page_tokens = 4, p.kv_bytes = 5 * 512;
    CHECK(ld_lm_session_new_ex(m, &p, &s) == LD_OK);
    int64_t total;
    ld_lm_session_kv_pages(s, NULL, &total);
    CHECK(total == 10 && ld_lm_session_kv_bytes(s) == 5 * 512);
    ld_lm_session_free(s);
    ld_lm_free(m);
    /* a key an F16 / Q8_0 cache cannot hold (not finite; beyond F16's range) is an error that
     * names the layer and the position, not a silently wrong cache; an F32 cache stores it */
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = 29, c.hidden_size = 64, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 2, c.max_position = 40;
    c.intermediate_size = 24, c.init_std = 0.3f;
    CHECK(ld_lm_new(ctx, &c, 5, &m) == LD_OK);
    ld_tensor *wk = ld_params_find(ld_lm_params(m), "model.layers.1.self_attn.k_proj.weight");
    CHECK(wk != NULL);
    static const int32_t ids[5] = {1, 2, 3, 4, 5};
    const ld_lm_segment g = {0, ids, 5};
    const float *lg;
    static const struct {
        float w;
        ld_dtype kt;
        ld_status want;
        const char *msg;
    } cases[] = {
        {NAN, LD_Q8_0, LD_ERR_NUMERIC, "layer 1: the key value NaN at position 0 (column 0) cannot be stored in a KV cache of type Q8_0"},
        {NAN, LD_F16, LD_ERR_NUMERIC, "layer 1: the key value NaN at position 0 (column 0) cannot be stored in a KV cache of type F16"},
        {1e9f, LD_F16, LD_ERR_NUMERIC, "at position 0 (column 0) cannot be stored in a KV cache of type F16"},
        {1e9f, LD_Q8_0, LD_OK, NULL},
        {NAN, LD_F32, LD_OK, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ((float *)wk->data)[3] = cases[i].w; /* k[0] = sum_j W[0, j] h[j]: row 0, column 3 */
        p = ld_lm_session_default_params();
        p.max_len = 40, p.max_tokens = 40, p.kv_type_k = cases[i].kt;
        CHECK(ld_lm_session_new_ex(m, &p, &s) == LD_OK);
        if (cases[i].want) CHECK_STATUS(ctx, ld_lm_session_eval(s, &g, 1, false, &lg), cases[i].want, cases[i].msg);
        else CHECK(ld_lm_session_eval(s, &g, 1, false, &lg) == LD_OK);
        ld_lm_session_free(s);
    }
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

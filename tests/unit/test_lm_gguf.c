/* tests/unit/test_lm_gguf.c — causal LMs as GGUF files: export -> import gives back every
 * parameter bit for bit (llama with GQA and its RoPE row interleave, qwen2 biases, gpt2's
 * transposed Conv1D) and the same logits; a quantized file computes exactly what a session
 * quantized in memory computes; the tokenizer survives tokenizer.ggml.* (also padded);
 * llama.cpp's decode-only fallback types decode to known values; importance matrices round
 * trip and steer the quantizer; a table of broken model files, each with its error. */
#include <unistd.h>

#include "ld_test.h"
#include "models/causal_lm_internal.h"

typedef struct mem_src {
    const char *const *docs;
    int n, at;
} mem_src;
static ld_status mem_next(void *u, const char **doc, size_t *len) {
    mem_src *m = u;
    if (m->at == m->n) return LD_ERR_NOT_FOUND;
    *doc = m->docs[m->at++];
    *len = strlen(*doc);
    return LD_OK;
}

static const char *const corpus[] = {
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。", "The quick brown fox jumps over the lazy dog's back 12345 times.",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "It's what they've said: we'll see, I'd think.",
};

static ld_tokenizer *train_tok(ld_ctx *ctx, ld_pretokenizer pre) {
    mem_src m = {corpus, (int)(sizeof corpus / sizeof corpus[0]), 0};
    ld_text_source src = {mem_next, &m};
    ld_bpe_train_params p = ld_bpe_train_default_params();
    const char *sp[] = {"<|endoftext|>"};
    p.vocab_size = 300, p.min_frequency = 1, p.special_tokens = sp, p.n_special_tokens = 1, p.pretokenizer = pre;
    ld_tokenizer *t = NULL;
    CHECK(ld_bpe_train(ctx, &p, &src, &t) == LD_OK);
    return t;
}

static ld_lm_config small_config(ld_lm_family fam) {
    ld_lm_config c = ld_lm_default_config(fam == LD_FAMILY_GPT2 ? LD_ARCH_GPT2 : LD_ARCH_LLAMA);
    c.family = fam;
    c.vocab_size = 320, c.hidden_size = 64, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = fam == LD_FAMILY_GPT2 ? 4 : 2;
    c.intermediate_size = fam == LD_FAMILY_GPT2 ? 256 : 96, c.max_position = 32;
    c.qkv_bias = fam == LD_FAMILY_QWEN2;
    c.tie_embeddings = fam != LD_FAMILY_QWEN2;
    return c;
}

/* Logits of all positions of a fixed 12-token sequence. */
static float *logits_of(ld_lm *m, ld_lm_session *given) {
    ld_lm_session *s = given;
    if (!s) CHECK(ld_lm_session_new(m, 1, 16, 16, &s) == LD_OK);
    int32_t ids[12] = {1, 5, 9, 300, 17, 2, 2, 250, 64, 3, 0, 99};
    ld_lm_segment seg = {0, ids, 12};
    const float *lg = NULL;
    ld_lm_session_clear(s, 0);
    CHECK(ld_lm_session_eval(s, &seg, 1, true, &lg) == LD_OK);
    int64_t n = 12 * ld_lm_config_of(m)->vocab_size;
    float *out = malloc((size_t)n * sizeof(float));
    memcpy(out, lg, (size_t)n * sizeof(float));
    if (!given) ld_lm_session_free(s);
    return out;
}

static char *tmp_path(const char *name) {
    static char buf[8][256];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 256, "/tmp/ld_test_lm_gguf_%d_%s", (int)getpid(), name);
    return p;
}

static void round_trip_family(ld_lm_family fam, ld_pretokenizer pre) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = train_tok(ctx, pre);
    ld_lm_config c = small_config(fam);
    ld_lm *m = NULL, *back = NULL;
    ld_tokenizer *tok2 = NULL;
    CHECK(ld_lm_new(ctx, &c, 7, &m) == LD_OK);
    /* non-trivial norms and biases so a lost or misplaced one shows */
    for (int i = 0; i < ld_params_count(ld_lm_params(m)); i++) {
        ld_tensor *t = ld_params_at(ld_lm_params(m), i);
        if (t->ndim == 1)
            for (int64_t j = 0; j < t->shape[0]; j++) ((float *)t->data)[j] += 0.01f * (float)(j % 7) - 0.02f;
    }
    const char *path = tmp_path("f32.gguf");
    CHECK_STATUS(ctx, ld_lm_save_gguf(m, tok, path, NULL), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_lm_load_gguf(ctx, path, &back, &tok2), LD_OK, NULL);
    if (back) {
        const ld_lm_config *b = ld_lm_config_of(back);
        CHECK(b->family == fam && b->hidden_size == c.hidden_size && b->n_kv_heads == c.n_kv_heads &&
              b->vocab_size == c.vocab_size && b->tie_embeddings == c.tie_embeddings && b->qkv_bias == c.qkv_bias &&
              b->intermediate_size == c.intermediate_size && b->max_position == c.max_position);
        CHECK(ld_params_count(ld_lm_params(back)) == ld_params_count(ld_lm_params(m)));
        for (int i = 0; i < ld_params_count(ld_lm_params(m)); i++) {
            ld_tensor *a = ld_params_at(ld_lm_params(m), i);
            ld_tensor *t = ld_params_find(ld_lm_params(back), a->name);
            CHECK_MSG(t && ld_tensor_same_shape(a, t) && !memcmp(a->data, t->data, ld_tensor_nbytes(a)), "%s", a->name);
        }
        CHECK(!ld_lm_is_quantized(back) && !ld_lm_in_place(back));
        float *l1 = logits_of(m, NULL), *l2 = logits_of(back, NULL);
        CHECK(!memcmp(l1, l2, 12 * (size_t)c.vocab_size * sizeof(float)));
        /* read in place, the file's F32 matrices (llama.cpp's row order and layout) compute
         * the same logits up to summation order, and give back the same values */
        ld_lm *ip = NULL;
        CHECK_STATUS(ctx, ld_lm_load_gguf_ex(ctx, path, NULL, &ip, NULL), LD_OK, NULL);
        if (ip) {
            CHECK(ld_lm_in_place(ip));
            float *l3 = logits_of(ip, NULL);
            double worst = 0;
            for (int64_t i = 0; i < 12 * c.vocab_size; i++) worst = fmax(worst, fabs((double)l3[i] - l1[i]));
            CHECK_MSG(worst < 1e-4, "in-place logits differ by %g", worst);
            free(l3);
            for (int i = 0; i < ld_params_count(ld_lm_params(m)); i++) {
                ld_tensor *a = ld_params_at(ld_lm_params(m), i);
                ld_tensor *t = ld_params_find(ld_lm_params(ip), a->name);
                float *v = malloc(ld_tensor_nbytes(a));
                CHECK(t && lm_values(ip, t, false, v) == LD_OK);
                CHECK_MSG(!memcmp(a->data, v, ld_tensor_nbytes(a)), "in place: %s", a->name);
                free(v);
            }
            /* the values are the file's: only norms, biases and positions are copied */
            size_t mapped = 0, copied = 0;
            ld_lm_weight_memory(ip, &mapped, &copied);
            CHECK_MSG(copied * 10 < mapped, "copied %zu, mapped %zu", copied, mapped);
            /* and training refuses it */
            ld_tape *tape = NULL;
            CHECK(ld_tape_new(ctx, &tape) == LD_OK);
            int32_t ids[2] = {1, 2};
            CHECK_STATUS(ctx, ld_lm_forward(ip, tape, ids, NULL, 1, 2, NULL, NULL), LD_ERR_STATE, "load it for training");
            CHECK(ld_params_set_trainable(ld_lm_params(ip), NULL, true) < 0);
            ld_tape_free(tape);
        }
        ld_lm_free(ip);
        free(l1), free(l2);
    }
    /* the tokenizer came back with the model (padded to the model's 320 ids) */
    CHECK(tok2 && ld_tokenizer_vocab_size(tok2) == c.vocab_size);
    for (size_t d = 0; tok2 && d < sizeof corpus / sizeof corpus[0]; d++) {
        int32_t a[256], b[256];
        size_t na = 0, nb = 0;
        CHECK(ld_tokenizer_encode(tok, corpus[d], strlen(corpus[d]), 0, a, 256, &na) == LD_OK);
        CHECK(ld_tokenizer_encode(tok2, corpus[d], strlen(corpus[d]), 0, b, 256, &nb) == LD_OK);
        CHECK(na == nb && !memcmp(a, b, na * sizeof(int32_t)));
    }
    CHECK(tok2 && ld_tokenizer_eos_id(tok2) == ld_tokenizer_eos_id(tok) && ld_tokenizer_hash(tok2) != 0);
    unlink(path);
    ld_tokenizer_free(tok2), ld_tokenizer_free(tok);
    ld_lm_free(back), ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(llama_round_trip_is_bit_exact) { round_trip_family(LD_FAMILY_LLAMA, LD_PRETOK_LLAMA3); }
TEST(qwen2_round_trip_is_bit_exact) { round_trip_family(LD_FAMILY_QWEN2, LD_PRETOK_QWEN2); }
TEST(gpt2_round_trip_is_bit_exact) { round_trip_family(LD_FAMILY_GPT2, LD_PRETOK_GPT2); }

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return *n = 0, NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*n ? *n : 1);
    CHECK(fread(p, 1, *n, f) == *n);
    fclose(f);
    return p;
}

/* ld_lm_new_lazy (what `liandan init` writes with) gives the file ld_lm_new gives for the same
 * seed, F32 and quantized, every family; it holds about one tensor while writing (not the
 * model); its values read out of order are still ld_lm_new's; and it refuses to compute. */
TEST(lazy_model_writes_what_ld_lm_new_writes) {
    const ld_lm_family fams[] = {LD_FAMILY_LLAMA, LD_FAMILY_GPT2, LD_FAMILY_PHI3, LD_FAMILY_QWEN3};
    const ld_dtype types[] = {LD_F32, LD_Q8_0};
    for (size_t fi = 0; fi < sizeof fams / sizeof fams[0]; fi++) {
        ld_test_mem mem = {0};
        ld_allocator al = ld_test_mem_allocator(&mem);
        ld_ctx_params cp = ld_ctx_default_params();
        cp.allocator = &al;
        ld_ctx *ctx = NULL;
        CHECK(ld_ctx_new(&cp, &ctx) == LD_OK);
        ld_tokenizer *tok = train_tok(ctx, fams[fi] == LD_FAMILY_GPT2 ? LD_PRETOK_GPT2 : LD_PRETOK_LLAMA3);
        ld_lm_config c = small_config(fams[fi]);
        c.n_layers = 6, c.max_position = 64; /* more layers, so one tensor is a small part of the model */
        ld_lm *m = NULL, *z = NULL;
        CHECK(ld_lm_new(ctx, &c, 11, &m) == LD_OK);
        CHECK_STATUS(ctx, ld_lm_new_lazy(ctx, &c, 11, &z), LD_OK, NULL);
        if (!m || !z) continue;
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
            ld_lm_gguf_params gp = ld_lm_gguf_default_params();
            gp.type = types[ti];
            const char *a = tmp_path("eager.gguf"), *b = tmp_path("lazy.gguf");
            CHECK_STATUS(ctx, ld_lm_save_gguf(m, tok, a, &gp), LD_OK, NULL);
            mem.peak = mem.held;
            CHECK_STATUS(ctx, ld_lm_save_gguf(z, tok, b, &gp), LD_OK, NULL);
            size_t na = 0, nb = 0, model = (size_t)ld_lm_config_num_params(&c) * sizeof(float);
            void *fa = slurp(a, &na), *fb = slurp(b, &nb);
            CHECK_MSG(na && na == nb && !memcmp(fa, fb, na), "family %d type %s: lazy and eager files differ",
                      (int)fams[fi], ld_dtype_traits(types[ti])->name);
            CHECK_MSG(mem.peak - mem.held < model / 3, "writing held %zu bytes for a model of %zu", mem.peak - mem.held,
                      model);
            free(fa), free(fb);
            unlink(a), unlink(b);
        }
        /* out of order: the last matrix, then the first (the stream restarts) */
        const ld_params *pz = ld_lm_params(z), *pm = ld_lm_params(m);
        for (int k = 0; k < 2; k++) {
            int i = k ? 0 : ld_params_count(pz) - 1;
            while (ld_params_at(pz, i)->ndim != 2) i += k ? 1 : -1;
            const ld_tensor *t = ld_params_at(pz, i);
            float *v = malloc(ld_tensor_nbytes(t));
            CHECK(lm_values(z, t, false, v) == LD_OK);
            CHECK_MSG(!memcmp(v, ld_params_at(pm, i)->data, ld_tensor_nbytes(t)), "%s", t->name);
            free(v);
        }
        ld_lm_session *s = NULL;
        CHECK_STATUS(ctx, ld_lm_session_new(z, 1, 8, 8, &s), LD_ERR_STATE, "cannot compute");
        ld_adapter_config ac = ld_adapter_default_config();
        ld_adapter *ad = NULL;
        CHECK_STATUS(ctx, ld_adapter_new(z, &ac, 1, &ad), LD_ERR_STATE, "cannot compute");
        ld_lm_free(z), ld_lm_free(m);
        ld_tokenizer_free(tok);
        CHECK(ld_ctx_bytes_in_use(ctx) == 0);
        ld_ctx_free(ctx);
    }
}

/* A Q8_0 file runs exactly what an in-memory Q8_0 session runs: the blocks are the same bytes
 * (after the q/k rows go back to HF order) and the kernels are the same. */
TEST(quantized_file_equals_quantized_session) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = train_tok(ctx, LD_PRETOK_GPT2);
    ld_lm_config c = small_config(LD_FAMILY_LLAMA);
    c.intermediate_size = 128; /* every matrix width a multiple of 32 */
    ld_lm *m = NULL, *back = NULL;
    CHECK(ld_lm_new(ctx, &c, 3, &m) == LD_OK);
    ld_lm_gguf_params p = ld_lm_gguf_default_params();
    p.type = LD_Q8_0, p.output_type = LD_F32; /* the session keeps the tied head F32 too */
    const char *path = tmp_path("q8.gguf");
    CHECK_STATUS(ctx, ld_lm_save_gguf(m, tok, path, &p), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_lm_load_gguf_ex(ctx, path, NULL, &back, NULL), LD_OK, NULL);
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new(m, 1, 16, 16, &s) == LD_OK && ld_lm_session_quantize(s, LD_Q8_0) == LD_OK);
    if (back && s) {
        CHECK(ld_lm_is_quantized(back));
        /* read in place: the Q8_0 blocks are not copied */
        size_t mapped = 0, copied = 0;
        ld_lm_weight_memory(back, &mapped, &copied);
        CHECK_MSG(copied * 10 < mapped, "copied %zu, mapped %zu", copied, mapped);
        float *l1 = logits_of(m, s), *l2 = logits_of(back, NULL);
        CHECK(!memcmp(l1, l2, 12 * (size_t)c.vocab_size * sizeof(float)));
        free(l1), free(l2);
    }
    /* the default mix keeps the output at Q8_0 for Q8_0, Q6_K for the 4-bit types */
    ld_lm_free(back);
    back = NULL;
    p = ld_lm_gguf_default_params();
    p.type = LD_Q4_0;
    CHECK_STATUS(ctx, ld_lm_save_gguf(m, tok, path, &p), LD_OK, NULL);
    ld_gguf *g = NULL;
    CHECK(ld_gguf_open(ctx, path, &g) == LD_OK);
    const ld_tensor_info *te = g ? ld_gguf_find_tensor(g, "token_embd.weight") : NULL;
    const ld_tensor_info *tq = g ? ld_gguf_find_tensor(g, "blk.1.attn_q.weight") : NULL;
    const ld_tensor_info *tn = g ? ld_gguf_find_tensor(g, "blk.1.attn_norm.weight") : NULL;
    CHECK(te && te->dtype == LD_Q8_0); /* Q6_K needs rows of 256: falls back to Q8_0 at width 64 */
    CHECK(tq && tq->dtype == LD_Q4_0 && tn && tn->dtype == LD_F32);
    uint32_t ft = 0;
    CHECK(g && ld_gguf_get_u32(ctx, g, "general.file_type", &ft) == LD_OK && ft == 2);
    ld_gguf_close(g);
    unlink(path);
    ld_lm_session_free(s);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* Q4_1 / Q5_0 / Q5_1 blocks built by hand decode to the values GGML defines. */
TEST(decode_only_fallback_types) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    uint16_t d = ld_fp32_to_fp16(0.5f), mn = ld_fp32_to_fp16(-1.0f);
    uint8_t b41[20], b50[22], b51[24], qs[16], qh[4] = {0x01, 0x00, 0x01, 0x80}; /* bits 0, 16, 31 */
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(j | (15 - j) << 4);
    memcpy(b41, &d, 2), memcpy(b41 + 2, &mn, 2), memcpy(b41 + 4, qs, 16);
    memcpy(b50, &d, 2), memcpy(b50 + 2, qh, 4), memcpy(b50 + 6, qs, 16);
    memcpy(b51, &d, 2), memcpy(b51 + 2, &mn, 2), memcpy(b51 + 4, qh, 4), memcpy(b51 + 8, qs, 16);
    float y[32];
    CHECK(ld_dequantize(ctx, LD_Q4_1, b41, y, 32) == LD_OK);
    CHECK(y[0] == -1.0f && y[3] == 0.5f && y[16] == 6.5f && y[31] == -1.0f); /* q*0.5 - 1 */
    CHECK(ld_dequantize(ctx, LD_Q5_0, b50, y, 32) == LD_OK);
    /* element 0: code 0 + 16 = 16 -> 0; 1: 1 -> -7.5; 16: 15 + 16 -> 7.5; 31: 0 + 16 -> 0 */
    CHECK(y[0] == 0.0f && y[1] == -7.5f && y[16] == 7.5f && y[31] == 0.0f && y[17] == -1.0f);
    CHECK(ld_dequantize(ctx, LD_Q5_1, b51, y, 32) == LD_OK);
    CHECK(y[0] == 7.0f && y[1] == -0.5f && y[16] == 14.5f && y[31] == 7.0f);
    CHECK(!ld_quant_type_supported(LD_Q5_0)); /* read, never written */
    size_t sz;
    CHECK(ld_qmatmul_scratch_size(ctx, LD_Q5_0, 1, 32, &sz) == LD_ERR_DTYPE);
    ld_ctx_free(ctx);
}

TEST(imatrix_collects_saves_loads_and_steers_quantization) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config c = small_config(LD_FAMILY_LLAMA);
    c.hidden_size = 256, c.n_heads = 4, c.n_kv_heads = 4, c.intermediate_size = 256, c.n_layers = 1;
    ld_lm *m = NULL;
    CHECK(ld_lm_new(ctx, &c, 11, &m) == LD_OK);
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new(m, 1, 16, 16, &s) == LD_OK);
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (i * 37) % 320;
    ld_imatrix *im = NULL, *back = NULL;
    double nll = 0;
    CHECK(ld_imatrix_new(ctx, &im) == LD_OK);
    CHECK_STATUS(ctx, ld_lm_imatrix_collect(s, ids, 64, 16, im, &nll, NULL, NULL), LD_OK, NULL);
    CHECK(nll > 5.0 && nll < 6.5); /* random init: about log(320) = 5.77 */
    /* q, k, v, o, gate, up, down and the head (tied: its GGUF name is token_embd.weight) */
    CHECK(ld_imatrix_count(im) == 8);
    const float *q = ld_imatrix_get(im, "blk.0.attn_q.weight", 256), *o = ld_imatrix_get(im, "token_embd.weight", 256);
    CHECK(q && o && q[0] > 0 && ld_imatrix_get(im, "blk.0.attn_q.weight", 128) == NULL);
    CHECK_STATUS(ctx, ld_lm_imatrix_collect(s, ids, 64, 17, im, NULL, NULL, NULL), LD_ERR_INVALID_ARG, "chunk of 17");
    const char *path = tmp_path("imatrix.gguf");
    ld_imatrix_set_info(im, "test", 4, 16);
    CHECK(ld_imatrix_save(im, path) == LD_OK);
    CHECK_STATUS(ctx, ld_imatrix_load(ctx, path, &back), LD_OK, NULL);
    const float *q2 = back ? ld_imatrix_get(back, "blk.0.attn_q.weight", 256) : NULL;
    CHECK(q2 && ld_imatrix_count(back) == 8);
    for (int k = 0; q && q2 && k < 256; k++) CHECK_NEAR(q[k], q2[k], 1e-6 * q[k]);
    /* the quantizer uses it: Q4_K blocks differ with and without */
    ld_tokenizer *tok = train_tok(ctx, LD_PRETOK_GPT2);
    ld_lm_gguf_params p = ld_lm_gguf_default_params();
    p.type = LD_Q4_K;
    const char *a = tmp_path("plain.gguf"), *b = tmp_path("imat.gguf");
    CHECK(ld_lm_save_gguf(m, tok, a, &p) == LD_OK);
    p.imatrix = ld_imatrix_lookup, p.imatrix_user = back;
    CHECK(ld_lm_save_gguf(m, tok, b, &p) == LD_OK);
    ld_gguf *ga = NULL, *gb = NULL;
    CHECK(ld_gguf_open(ctx, a, &ga) == LD_OK && ld_gguf_open(ctx, b, &gb) == LD_OK);
    if (ga && gb) {
        const ld_tensor_info *x = ld_gguf_find_tensor(ga, "blk.0.ffn_up.weight"), *y = ld_gguf_find_tensor(gb, "blk.0.ffn_up.weight");
        CHECK(x && y && x->dtype == LD_Q4_K && x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes));
    }
    ld_gguf_close(ga), ld_gguf_close(gb);
    unlink(a), unlink(b), unlink(path);
    ld_tokenizer_free(tok);
    ld_imatrix_free(im), ld_imatrix_free(back);
    ld_lm_session_free(s);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* ---- broken files ------------------------------------------------------------------------ */

typedef struct edit {
    const char *drop_key, *drop_tensor; /* left out */
    const char *str_key, *str_value;    /* set (or replaced) */
    const char *u32_key;
    uint32_t u32_value;
    const char *reshape_tensor;         /* written with its dims swapped */
    const char *f32s_key;               /* an F32 array of n_f32 values */
    const char *i32s_key;               /* an I32 array of the first n_f32 values (as ints) */
    float f32s[8];
    int n_f32;
    const char *add_tensor;             /* an extra F32 tensor of n_f32 values */
} edit;

/* Copies GGUF `src` through the writer with one edit. */
static ld_status rewrite(ld_ctx *ctx, const ld_gguf *g, const edit *e, void **out, size_t *size) {
    ld_gguf_writer *w = NULL;
    ld_status s = ld_gguf_writer_new(ctx, &w);
    for (size_t i = 0; !s && i < ld_gguf_kv_count(g); i++)
        if (!e->drop_key || strcmp(e->drop_key, ld_gguf_kv_key(g, i)))
            s = ld_gguf_writer_set_value(w, ld_gguf_kv_key(g, i), ld_gguf_kv_value(g, i));
    if (!s && e->str_key) s = ld_gguf_writer_set_str(w, e->str_key, e->str_value);
    if (!s && e->u32_key) s = ld_gguf_writer_set_u32(w, e->u32_key, e->u32_value);
    if (!s && e->f32s_key) s = ld_gguf_writer_set_array(w, e->f32s_key, LD_GGUF_FLOAT32, e->f32s, (size_t)e->n_f32);
    int32_t ints[8];
    for (int i = 0; i < e->n_f32; i++) ints[i] = (int32_t)e->f32s[i];
    if (!s && e->i32s_key) s = ld_gguf_writer_set_array(w, e->i32s_key, LD_GGUF_INT32, ints, (size_t)e->n_f32);
    int64_t n_add = e->n_f32;
    if (!s && e->add_tensor) s = ld_gguf_writer_add_tensor(w, e->add_tensor, 0, 1, &n_add, e->f32s, (size_t)n_add * 4);
    for (size_t i = 0; !s && i < ld_gguf_tensor_count(g); i++) {
        const ld_tensor_info *t = ld_gguf_tensor_at(g, i);
        if (e->drop_tensor && !strcmp(e->drop_tensor, t->name)) continue;
        int64_t shape[4] = {t->shape[0], t->ndim > 1 ? t->shape[1] : 0};
        if (e->reshape_tensor && !strcmp(e->reshape_tensor, t->name)) shape[0] = t->shape[1], shape[1] = t->shape[0];
        s = ld_gguf_writer_add_tensor(w, t->name, t->file_type, t->ndim, shape, t->data, t->nbytes);
    }
    if (!s) s = ld_gguf_writer_write_memory(w, out, size);
    ld_gguf_writer_free(w);
    return s;
}

/* Llama 3 RoPE scaling travels as rope_freqs.weight: without liandan's own keys (a file from
 * llama.cpp's converter) the releases' scalings are recognised as config, any other factors
 * are used as they are; both compute what the original model computes. */
TEST(llama3_rope_freqs_from_llama_cpp_files) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = train_tok(ctx, LD_PRETOK_GPT2);
    for (int k = 0; k < 2; k++) {
        ld_lm_config c = small_config(LD_FAMILY_LLAMA);
        c.rope_theta = 500000.0f, c.hidden_size = 128, c.n_heads = 4; /* head size 32: frequencies in all bands */
        c.rope_scaling = (ld_rope_scaling){LD_ROPE_SCALING_LLAMA3, k ? 5.0f : 8.0f, 8192, 1, 4, 0, 0, 0};
        ld_lm *m = NULL, *back = NULL;
        CHECK(ld_lm_new(ctx, &c, 11, &m) == LD_OK);
        const char *path = tmp_path("rope.gguf");
        CHECK_STATUS(ctx, ld_lm_save_gguf(m, tok, path, NULL), LD_OK, NULL);
        ld_gguf *g = NULL;
        CHECK(ld_gguf_open(ctx, path, &g) == LD_OK);
        CHECK(g && ld_gguf_find_tensor(g, "rope_freqs.weight"));
        edit e = {.drop_key = "liandan.rope_scaling.type"};
        void *buf = NULL;
        size_t size = 0;
        CHECK(g && rewrite(ctx, g, &e, &buf, &size) == LD_OK);
        CHECK_STATUS(ctx, ld_lm_load_gguf_memory(ctx, "llama.cpp.gguf", buf, size, NULL, &back, NULL), LD_OK, NULL);
        if (back) {
            const ld_rope_scaling *rs = &ld_lm_config_of(back)->rope_scaling;
            if (!k) CHECK(rs->type == LD_ROPE_SCALING_LLAMA3 && rs->factor == 8 && rs->original_max_position == 8192);
            else CHECK(rs->type == LD_ROPE_SCALING_NONE); /* factors of no release: kept as factors */
            float *l1 = logits_of(m, NULL), *l2 = logits_of(back, NULL);
            double worst = 0;
            for (int64_t i = 0; i < 12 * c.vocab_size; i++) worst = fmax(worst, fabs((double)l1[i] - l2[i]));
            CHECK_MSG(worst < 1e-4, "factor %g: logits differ by %g", rs->factor, worst);
            free(l1), free(l2);
            char dir[256];
            snprintf(dir, sizeof dir, "%s.dir", path);
            if (k) CHECK_STATUS(ctx, ld_lm_save(back, dir), LD_ERR_UNSUPPORTED, "not a rope_scaling config.json can state");
        }
        ld_lm_free(back), ld_lm_free(m);
        ld_free(ctx, buf);
        ld_gguf_close(g);
        unlink(path);
    }
    ld_tokenizer_free(tok);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(broken_model_files_name_the_problem) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = train_tok(ctx, LD_PRETOK_GPT2);
    ld_lm_config c = small_config(LD_FAMILY_LLAMA);
    ld_lm *m = NULL;
    CHECK(ld_lm_new(ctx, &c, 5, &m) == LD_OK);
    const char *path = tmp_path("good.gguf");
    CHECK(ld_lm_save_gguf(m, tok, path, NULL) == LD_OK);
    ld_gguf *g = NULL;
    CHECK(ld_gguf_open(ctx, path, &g) == LD_OK);
    static const struct {
        edit e;
        ld_status st;
        const char *msg;
    } bad[] = {
        {{.str_key = "general.architecture", .str_value = "mamba"}, LD_ERR_UNSUPPORTED, "architecture 'mamba' is not supported"},
        {{.drop_key = "general.architecture"}, LD_ERR_NOT_FOUND, "general.architecture"},
        {{.drop_key = "llama.block_count"}, LD_ERR_NOT_FOUND, "llama.block_count"},
        {{.u32_key = "llama.block_count", .u32_value = 3}, LD_ERR_FORMAT, "needs"},
        {{.u32_key = "llama.attention.head_count", .u32_value = 5}, LD_ERR_INVALID_ARG, "not divisible"},
        {{.u32_key = "llama.rope.dimension_count", .u32_value = 8}, LD_ERR_UNSUPPORTED, "partial rotary"},
        {{.str_key = "llama.rope.scaling.type", .str_value = "longrope"}, LD_ERR_UNSUPPORTED, "RoPE scaling 'longrope'"},
        {{.drop_tensor = "blk.1.ffn_down.weight"}, LD_ERR_FORMAT, "needs"},
        {{.drop_tensor = "token_embd.weight"}, LD_ERR_FORMAT, "token_embd.weight is missing"},
        {{.reshape_tensor = "blk.0.ffn_up.weight"}, LD_ERR_SHAPE, "blk.0.ffn_up.weight has 2 dims [64, 96], expected [96, 64]"},
        {{.str_key = "tokenizer.ggml.model", .str_value = "llama"}, LD_ERR_FORMAT, "a 'llama' tokenizer needs tokenizer.ggml.scores"},
        {{.str_key = "tokenizer.ggml.model", .str_value = "t5"}, LD_ERR_UNSUPPORTED, "tokenizer.ggml.model 't5'"},
        {{.str_key = "tokenizer.ggml.pre", .str_value = "no-such-regex"}, LD_ERR_UNSUPPORTED, "tokenizer.ggml.pre 'no-such-regex'"},
        {{.drop_key = "tokenizer.ggml.model"}, LD_ERR_NOT_FOUND, "no tokenizer"},
        {{.drop_key = "tokenizer.ggml.tokens"}, LD_ERR_NOT_FOUND, "tokenizer.ggml.tokens"},
        {{.u32_key = "tokenizer.ggml.eos_token_id", .u32_value = 999}, LD_ERR_FORMAT, "tokenizer.ggml.eos_token_id"},
        /* the newer fields: head size, RoPE scaling, EOS lists */
        {{.u32_key = "llama.attention.value_length", .u32_value = 24}, LD_ERR_UNSUPPORTED, "key length 16 != value length 24"},
        {{.u32_key = "llama.attention.key_length", .u32_value = 0}, LD_ERR_FORMAT, "llama.attention.key_length"},
        {{.str_key = "liandan.rope_scaling.type", .str_value = "linear", .f32s_key = "liandan.rope_scaling.params",
          .f32s = {2, 0, 0}, .n_f32 = 3}, LD_ERR_FORMAT, "params has 3 values, not 7"},
        {{.str_key = "liandan.rope_scaling.type", .str_value = "llama3", .f32s_key = "liandan.rope_scaling.params",
          .f32s = {8, 64, 4, 1, 0, 0, 0}, .n_f32 = 7}, LD_ERR_INVALID_ARG, "low_freq_factor (4) < high_freq_factor (1)"},
        {{.str_key = "liandan.rope_scaling.type", .str_value = "linear", .f32s_key = "liandan.rope_scaling.params",
          .f32s = {-2, 0, 0, 0, 0, 0, 0}, .n_f32 = 7}, LD_ERR_INVALID_ARG, "rope_scaling factor -2"},
        {{.str_key = "llama.rope.scaling.type", .str_value = "linear", .u32_key = "llama.rope.scaling.factor",
          .u32_value = 2}, LD_ERR_FORMAT, "llama.rope.scaling.factor"},
        {{.add_tensor = "rope_freqs.weight", .f32s = {1, 2, 3}, .n_f32 = 3}, LD_ERR_FORMAT, "rope_freqs.weight must be F32 [8]"},
        {{.add_tensor = "rope_freqs.weight", .f32s = {1, 2, 3, 4, 0, 1, 1, 1}, .n_f32 = 8}, LD_ERR_FORMAT,
         "rope_freqs.weight[4] = 0 is not a positive number"},
        {{.i32s_key = "liandan.eos_token_ids", .f32s = {0, 400}, .n_f32 = 2}, LD_ERR_FORMAT, "id 400 (vocabulary 320)"},
        {{.u32_key = "llama.attention.sliding_window", .u32_value = 0}, LD_ERR_FORMAT, "llama.attention.sliding_window"},
    };
    for (size_t i = 0; g && i < 2 * (sizeof bad / sizeof bad[0]); i++) {
        size_t k = i / 2; /* each case in place and as a trainable copy */
        ld_lm_load_params lp = {.trainable = i % 2};
        void *buf = NULL;
        size_t size = 0;
        CHECK(rewrite(ctx, g, &bad[k].e, &buf, &size) == LD_OK);
        ld_lm *x = NULL;
        ld_tokenizer *t = NULL;
        ld_status st = ld_lm_load_gguf_memory(ctx, "bad.gguf", buf, size, &lp, &x, &t);
        CHECK_MSG(st == bad[k].st && strstr(ld_ctx_error(ctx), bad[k].msg), "case %zu (%s): %s: %s", k,
                  lp.trainable ? "trainable" : "in place", ld_status_name(st), ld_ctx_error(ctx));
        CHECK(!x && !t);
        ld_lm_free(x), ld_tokenizer_free(t);
        ld_free(ctx, buf);
    }
    ld_gguf_close(g);
    unlink(path);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

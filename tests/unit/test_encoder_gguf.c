/* tests/unit/test_encoder_gguf.c — a bert encoder written as GGUF runs in llama.cpp's
 * embedding path (node-llama-cpp, tests/oracle/llama_embed.mjs) and gives our embeddings
 * (mean and cls pooling) within float tolerance; the file has llama.cpp's names and keys and
 * reads back into the same embeddings bit for bit; esm is refused. Skipped (and said so) only when the npm oracle is not installed. */
#include <cjson/cJSON.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ld_test.h"

static const char *const docs[] = {"the cat sat on the mat", "a dog ran in the park", "cats and dogs are friends",
                                   "the quick brown fox jumps over the lazy dog", "embeddings from an encoder"};
typedef struct src_state {
    int i;
} src_state;
static ld_status next_doc(void *user, const char **doc, size_t *len) {
    src_state *s = user;
    if (s->i >= 40) return LD_ERR_NOT_FOUND;
    *doc = docs[s->i % 5], *len = strlen(*doc), s->i++;
    return LD_OK;
}

static ld_tokenizer *small_bpe(ld_ctx *ctx) {
    ld_bpe_train_params p = ld_bpe_train_default_params();
    static const char *const specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    p.vocab_size = 300, p.special_tokens = specials, p.n_special_tokens = 5, p.min_frequency = 1;
    src_state s = {0};
    ld_text_source src = {next_doc, &s};
    ld_tokenizer *tok = NULL;
    CHECK(ld_bpe_train(ctx, &p, &src, &tok) == LD_OK);
    return tok;
}

static bool have_oracle(void) {
    struct stat sb;
    return stat("tests/oracle/node_modules/node-llama-cpp/package.json", &sb) == 0;
}

static void compare(ld_pooling pool) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = small_bpe(ctx);
    if (!tok) return;
    ld_encoder_config c = ld_encoder_default_config(LD_ENCODER_BERT);
    c.vocab_size = ld_tokenizer_vocab_size(tok), c.hidden_size = 32, c.n_layers = 2, c.n_heads = 4;
    c.intermediate_size = 64, c.max_position = 64, c.gelu_tanh = true, c.init_std = 0.2f, c.norm_eps = 1e-5f;
    ld_encoder *m = NULL;
    CHECK(ld_encoder_new(ctx, &c, 5, &m) == LD_OK);
    ld_rng r = ld_rng_init(3); /* norms and biases away from 1 / 0 */
    ld_params *ps = ld_encoder_params(m);
    for (int i = 0; i < ld_params_count(ps); i++) {
        ld_tensor *t = ld_params_at(ps, i);
        for (int64_t j = 0; t->ndim == 1 && j < ld_tensor_numel(t); j++) ((float *)t->data)[j] += 0.1f * ld_rng_normal(&r);
    }
    char dir[64], gguf[96], ids_path[96], cmd[512];
    snprintf(dir, sizeof dir, "/tmp/ld_test_encgguf_%d_%d", (int)getpid(), (int)pool);
    mkdir(dir, 0755);
    snprintf(gguf, sizeof gguf, "%s/bert.gguf", dir);
    snprintf(ids_path, sizeof ids_path, "%s/ids.txt", dir);
    ld_encoder_gguf_params gp = ld_encoder_gguf_default_params();
    gp.pooling = pool;
    CHECK(ld_encoder_save_gguf(m, tok, gguf, &gp) == LD_OK);
    /* llama.cpp's names and keys */
    ld_gguf *g = NULL;
    CHECK(ld_gguf_open(ctx, gguf, &g) == LD_OK);
    if (g) {
        const char *arch = NULL;
        uint32_t pt = 0, ntt = 0;
        CHECK(ld_gguf_get_str(ctx, g, "general.architecture", &arch) == LD_OK && !strcmp(arch, "bert"));
        CHECK(ld_gguf_get_u32(ctx, g, "bert.pooling_type", &pt) == LD_OK && pt == (pool == LD_POOL_CLS ? 2u : 1u));
        CHECK(ld_gguf_get_u32(ctx, g, "tokenizer.ggml.token_type_count", &ntt) == LD_OK && ntt == 2);
        CHECK(ld_gguf_find_tensor(g, "blk.1.layer_output_norm.bias") && ld_gguf_find_tensor(g, "token_types.weight"));
        CHECK(!ld_gguf_find_tensor(g, "cls.predictions.bias"));
        ld_gguf_close(g);
    }
    /* inputs: [CLS] text [SEP] */
    const char *texts[] = {"the cat sat", "a lazy dog jumps over the mat", "friends"};
    int32_t *seqs[3];
    int64_t lens[3];
    FILE *f = fopen(ids_path, "w");
    for (int i = 0; i < 3; i++) {
        CHECK(ld_encoder_encode_text(m, tok, texts[i], strlen(texts[i]), &seqs[i], &lens[i]) == LD_OK);
        for (int64_t j = 0; j < lens[i]; j++) fprintf(f, j ? " %d" : "%d", seqs[i][j]);
        fputc('\n', f);
    }
    fclose(f);
    float ours[3 * 32];
    CHECK(ld_encoder_embed(m, (const int32_t *const *)seqs, lens, 3, pool, false, ours) == LD_OK);
    /* re-import: the same encoder, the same embeddings bit for bit */
    ld_encoder *back = NULL;
    ld_tokenizer *back_tok = NULL;
    CHECK(ld_encoder_load_gguf(ctx, gguf, &back, &back_tok) == LD_OK);
    if (back) {
        const ld_encoder_config *bc = ld_encoder_config_of(back);
        CHECK(bc->vocab_size == c.vocab_size && bc->hidden_size == c.hidden_size && bc->n_layers == c.n_layers &&
              bc->max_position == c.max_position && bc->type_vocab_size == 2 && bc->norm_eps == c.norm_eps);
        float again[3 * 32];
        CHECK(ld_encoder_embed(back, (const int32_t *const *)seqs, lens, 3, pool, false, again) == LD_OK);
        CHECK(memcmp(again, ours, sizeof ours) == 0);
        CHECK(back_tok && ld_tokenizer_hash(back_tok) == ld_tokenizer_hash(tok));
    }
    ld_tokenizer_free(back_tok);
    ld_encoder_free(back);
    if (!have_oracle()) {
        printf("  SKIPPED: tests/oracle/node_modules (npm oracles) not installed\n");
    } else {
        snprintf(cmd, sizeof cmd, "node tests/oracle/llama_embed.mjs %s %s", gguf, ids_path);
        FILE *pipe = popen(cmd, "r");
        char *line = malloc(1 << 16);
        int got = 0;
        while (pipe && fgets(line, 1 << 16, pipe) && got < 3) {
            cJSON *o = cJSON_Parse(line);
            const cJSON *toks = cJSON_GetObjectItem(o, "tokens"), *emb = cJSON_GetObjectItem(o, "embedding");
            CHECK_MSG(cJSON_GetArraySize(toks) == lens[got], "input %d: llama.cpp evaluated %d tokens, we %lld", got,
                      cJSON_GetArraySize(toks), (long long)lens[got]);
            CHECK(cJSON_GetArraySize(emb) == 32);
            double dot = 0, na = 0, nb = 0, maxd = 0, maxv = 0;
            for (int j = 0; j < 32 && cJSON_GetArraySize(emb) == 32; j++) {
                double a = cJSON_GetArrayItem(emb, j)->valuedouble, b = ours[got * 32 + j];
                dot += a * b, na += a * a, nb += b * b;
                maxd = fmax(maxd, fabs(a - b)), maxv = fmax(maxv, fabs(b));
            }
            double cosv = dot / sqrt(na * nb);
            printf("  %s pooling, input %d: cosine %.7f, max |diff| %.2g (max |value| %.2g)\n",
                   pool == LD_POOL_CLS ? "cls" : "mean", got, cosv, maxd, maxv);
            CHECK(cosv > 0.9999);
            CHECK(maxd < 2e-3 * maxv);
            cJSON_Delete(o);
            got++;
        }
        CHECK_MSG(got == 3, "the oracle printed %d embeddings (command: %s)", got, cmd);
        free(line);
        if (pipe) pclose(pipe);
    }
    for (int i = 0; i < 3; i++) ld_free(ctx, seqs[i]);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    ld_encoder_free(m);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

TEST(llama_cpp_mean_pooled_embeddings_match) {
    compare(LD_POOL_MEAN);
}

TEST(llama_cpp_cls_pooled_embeddings_match) {
    compare(LD_POOL_CLS);
}

TEST(esm_has_no_gguf_form) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_encoder_config c = ld_encoder_default_config(LD_ENCODER_ESM);
    c.hidden_size = 8, c.n_layers = 1, c.n_heads = 2, c.intermediate_size = 8;
    ld_encoder *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_encoder_new(ctx, &c, 1, &m);
    ld_tokenizer_new_esm(ctx, &tok);
    CHECK_STATUS(ctx, ld_encoder_save_gguf(m, tok, "/tmp/never.gguf", NULL), LD_ERR_UNSUPPORTED, "esm");
    ld_tokenizer_free(tok);
    ld_encoder_free(m);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

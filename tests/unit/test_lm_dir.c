/* tests/unit/test_lm_dir.c — model directories read in place: F32 weights are used from the
 * mapped safetensors without a copy and F16 ones as F16, with the same logits as a
 * trainable load; a config asking for more weights than the files hold fails before
 * anything is allocated for them (peak memory measured through the allocator hooks); the
 * chat template is read from chat_template.jinja or tokenizer_config.json and written back. */
#include <unistd.h>

#include "ld_test.h"
#include "models/causal_lm_internal.h"

/* An allocator that records the peak of bytes in use. */
typedef struct track {
    size_t cur, peak;
} track;
static void *track_alloc(void *user, size_t size, size_t align) {
    track *t = user;
    unsigned char *p = aligned_alloc(64, (size + 64 + 63) / 64 * 64);
    if (!p) return NULL;
    memcpy(p, &size, sizeof size);
    t->cur += size;
    if (t->cur > t->peak) t->peak = t->cur;
    return p + 64;
}
static void track_free(void *user, void *ptr) {
    track *t = user;
    unsigned char *p = (unsigned char *)ptr - 64;
    size_t size;
    memcpy(&size, p, sizeof size);
    t->cur -= size;
    free(p);
}

static char *tmpdir(const char *name) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 256, "/tmp/ld_test_lm_dir_%d_%s", (int)getpid(), name);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", b);
    if (system(cmd)) {}
    return b;
}

static void rmdir_all(const char *dir) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
}

static ld_lm_config tiny(ld_lm_arch arch) {
    ld_lm_config c = ld_lm_default_config(arch);
    c.vocab_size = 64, c.hidden_size = 32, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = arch == LD_ARCH_GPT2 ? 4 : 2;
    c.intermediate_size = arch == LD_ARCH_GPT2 ? 128 : 48, c.max_position = 32;
    c.tie_embeddings = arch == LD_ARCH_GPT2;
    return c;
}

static float *logits_of(ld_lm *m) {
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new(m, 1, 16, 16, &s) == LD_OK);
    int32_t ids[10] = {1, 5, 9, 60, 17, 2, 2, 33, 63, 0};
    ld_lm_segment seg = {0, ids, 10};
    const float *lg = NULL;
    CHECK(s && ld_lm_session_eval(s, &seg, 1, true, &lg) == LD_OK);
    int64_t n = 10 * ld_lm_config_of(m)->vocab_size;
    float *out = calloc((size_t)n, sizeof(float));
    if (lg) memcpy(out, lg, (size_t)n * sizeof(float));
    ld_lm_session_free(s);
    return out;
}

/* Rewrites dir/model.safetensors with every tensor in F16. */
static void to_f16(ld_ctx *ctx, const char *dir) {
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ld_safetensors *sf = NULL;
    CHECK(ld_safetensors_open(ctx, path, &sf) == LD_OK);
    size_t n = sf ? ld_safetensors_count(sf) : 0;
    ld_st_write_tensor *w = calloc(n + 1, sizeof *w);
    void **bufs = calloc(n + 1, sizeof *bufs);
    for (size_t i = 0; i < n; i++) {
        const ld_tensor_info *t = ld_safetensors_at(sf, i);
        size_t cnt = t->nbytes / 4;
        bufs[i] = malloc(cnt * 2);
        CHECK(ld_convert(ctx, LD_F16, bufs[i], LD_F32, t->data, (int64_t)cnt) == LD_OK);
        w[i] = (ld_st_write_tensor){.name = t->name, .dtype = LD_F16, .ndim = t->ndim, .shape = t->shape, .data = bufs[i]};
    }
    char out[512];
    snprintf(out, sizeof out, "%s/model16.safetensors", dir);
    CHECK(ld_safetensors_write(ctx, out, w, n, NULL, 0) == LD_OK);
    ld_safetensors_close(sf);
    for (size_t i = 0; i < n; i++) free(bufs[i]);
    free(bufs), free(w);
    CHECK(rename(out, path) == 0);
}

TEST(directories_are_read_in_place) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (int a = 0; a < 2; a++) {
        ld_lm_config c = tiny(a ? LD_ARCH_GPT2 : LD_ARCH_LLAMA);
        ld_lm *m = NULL;
        CHECK(ld_lm_new(ctx, &c, 9, &m) == LD_OK);
        char *dir = tmpdir(a ? "gpt2" : "llama");
        CHECK(ld_lm_save(m, dir) == LD_OK);
        float *want = logits_of(m);
        for (int f16 = 0; f16 < 2; f16++) {
            if (f16) to_f16(ctx, dir);
            ld_lm *ip = NULL, *tr = NULL;
            CHECK_STATUS(ctx, ld_lm_load_ex(ctx, dir, NULL, &ip), LD_OK, NULL);
            ld_lm_load_params lp = {.trainable = true};
            CHECK_STATUS(ctx, ld_lm_load_ex(ctx, dir, &lp, &tr), LD_OK, NULL);
            if (!ip || !tr) continue;
            CHECK(ld_lm_in_place(ip) && !ld_lm_in_place(tr));
            size_t mapped = 0, copied = 0;
            ld_lm_weight_memory(ip, &mapped, &copied);
            /* GPT-2's Conv1D matrices are [in, out]: as F16 they are copied once into rows */
            if (a && f16) CHECK(mapped + copied < (size_t)ld_lm_config_num_params(&c) * 3);
            else CHECK_MSG(copied * 8 < mapped, "%s f16=%d: copied %zu, mapped %zu", a ? "gpt2" : "llama", f16, copied, mapped);
            float *got = logits_of(ip), *got_tr = logits_of(tr);
            double worst = 0, worst_tr = 0;
            for (int64_t i = 0; i < 10 * c.vocab_size; i++) {
                worst = fmax(worst, fabs((double)got[i] - want[i]));
                worst_tr = fmax(worst_tr, fabs((double)got_tr[i] - want[i]));
            }
            /* F32 in place: the same bytes through the same kernels */
            if (!f16) CHECK_MSG(worst == 0 && worst_tr == 0, "F32 logits differ by %g / %g", worst, worst_tr);
            else CHECK_MSG(worst < 2e-2 && worst_tr < 2e-2, "F16 logits differ by %g / %g", worst, worst_tr);
            /* values read back through the forms equal the trainable copy's */
            for (int i = 0; i < ld_params_count(ld_lm_params(tr)); i++) {
                ld_tensor *t = ld_params_at(ld_lm_params(tr), i), *u = ld_params_find(ld_lm_params(ip), t->name);
                float *v = malloc(ld_tensor_nbytes(t));
                CHECK(u && lm_values(ip, u, false, v) == LD_OK && !memcmp(v, t->data, ld_tensor_nbytes(t)));
                free(v);
            }
            free(got), free(got_tr);
            ld_lm_free(ip), ld_lm_free(tr);
        }
        free(want);
        ld_lm_free(m);
        rmdir_all(dir);
    }
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(a_config_larger_than_its_weights_fails_before_allocating) {
    track tr = {0};
    ld_allocator al = {track_alloc, track_free, &tr};
    ld_ctx_params cp = ld_ctx_default_params();
    cp.allocator = &al;
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(&cp, &ctx) == LD_OK);
    ld_lm_config c = tiny(LD_ARCH_LLAMA);
    ld_lm *m = NULL, *out = NULL;
    CHECK(ld_lm_new(ctx, &c, 1, &m) == LD_OK);
    char *dir = tmpdir("bomb");
    CHECK(ld_lm_save(m, dir) == LD_OK);
    ld_lm_free(m);
    /* 64 layers of 4096: 11 G parameters (45 GB in F32) that the file does not hold */
    ld_lm_config big = c;
    big.hidden_size = 4096, big.n_heads = 32, big.n_kv_heads = 8, big.intermediate_size = 11008, big.n_layers = 64;
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *cfg = ld_lm_config_to_json(&big);
    CHECK(ld_file_write_atomic(ctx, path, cfg, strlen(cfg)) == LD_OK);
    free(cfg);
    for (int trainable = 0; trainable < 2; trainable++) {
        size_t base = tr.cur;
        tr.peak = base;
        ld_lm_load_params lp = {.trainable = trainable};
        CHECK_STATUS(ctx, ld_lm_load_ex(ctx, dir, &lp, &out), LD_ERR_SHAPE, "model.embed_tokens.weight' has shape [64, 32], the config needs [64, 4096]");
        CHECK(out == NULL);
        /* names and shapes only (the parameter arenas' first chunks), never the 45 GB */
        CHECK_MSG(tr.peak - base < (40u << 20), "peak %zu bytes while refusing the config", tr.peak - base);
    }

    rmdir_all(dir);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(generation_config_defaults_and_bad_values) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config c = tiny(LD_ARCH_LLAMA);
    ld_lm *m = NULL, *out = NULL;
    CHECK(ld_lm_new(ctx, &c, 1, &m) == LD_OK);
    char *dir = tmpdir("gen"), path[512];
    CHECK(ld_lm_save(m, dir) == LD_OK);
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    static const char *good = "{\"temperature\": 0.6, \"top_p\": 0.9, \"top_k\": 40, \"repetition_penalty\": 1.1, "
                              "\"eos_token_id\": [2, 7, 9], \"bos_token_id\": 1}";
    CHECK(ld_file_write_atomic(ctx, path, good, strlen(good)) == LD_OK);
    CHECK_STATUS(ctx, ld_lm_load_ex(ctx, dir, NULL, &out), LD_OK, NULL);
    if (out) {
        const ld_lm_generation_config *g = ld_lm_generation_config_of(out);
        CHECK(fabsf(g->temperature - 0.6f) < 1e-6f && fabsf(g->top_p - 0.9f) < 1e-6f && g->top_k == 40 &&
              fabsf(g->repetition_penalty - 1.1f) < 1e-6f);
        const ld_lm_config *oc = ld_lm_config_of(out);
        CHECK(oc->n_eos_token_ids == 3 && oc->eos_token_ids[1] == 7 && oc->eos_token_ids[2] == 9);
        /* and they are written back */
        char *dir2 = tmpdir("gen2");
        ld_lm *back = NULL;
        CHECK(ld_lm_save(out, dir2) == LD_OK && ld_lm_load_ex(ctx, dir2, NULL, &back) == LD_OK);
        CHECK(back && ld_lm_config_of(back)->n_eos_token_ids == 3 && ld_lm_generation_config_of(back)->top_k == 40);
        ld_lm_free(back);
        rmdir_all(dir2);
    }
    ld_lm_free(out), out = NULL;
    static const struct { const char *json, *err; } bad[] = {
        {"[1]", "expected a JSON object"},
        {"{\"temperature\": \"hot\"}", "temperature"},
        {"{\"top_p\": 2}", "top_p"},
        {"{\"top_k\": -1}", "top_k"},
        {"{\"do_sample\": 3}", "do_sample"},
        {"{\"eos_token_id\": 64}", "eos_token_id item 0 is not a token id below 64"},
        {"{\"eos_token_id\": [1, \"x\"]}", "eos_token_id item 1"},
        {"{\"eos_token_id\": [3, 4, 5, 6, 7, 8, 9, 10, 11]}", "more than 8 EOS ids"},
        {"{\"temperature\": ", "generation_config.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(ld_file_write_atomic(ctx, path, bad[i].json, strlen(bad[i].json)) == LD_OK);
        ld_status st = ld_lm_load_ex(ctx, dir, NULL, &out);
        CHECK_MSG(st != LD_OK && strstr(ld_ctx_error(ctx), bad[i].err), "row %zu: %s: %s", i, ld_status_name(st),
                  ld_ctx_error(ctx));
        CHECK(out == NULL);
        ld_lm_free(out), out = NULL;
    }
    ld_lm_free(m);
    rmdir_all(dir);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(chat_templates_travel_with_the_model) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config c = tiny(LD_ARCH_LLAMA);
    ld_lm *m = NULL, *out = NULL;
    CHECK(ld_lm_new(ctx, &c, 1, &m) == LD_OK);
    char *dir = tmpdir("tmpl"), path[512];
    CHECK(ld_lm_save(m, dir) == LD_OK);
    CHECK(ld_lm_load_ex(ctx, dir, NULL, &out) == LD_OK && out && !ld_lm_chat_template(out));
    ld_lm_free(out), out = NULL;
    /* tokenizer_config.json: a string, or a list with a "default" entry */
    static const struct { const char *json; ld_status st; const char *want; } rows[] = {
        {"{\"chat_template\": \"{{ '<|im_start|>' }}\"}", LD_OK, "{{ '<|im_start|>' }}"},
        {"{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}, {\"name\": \"default\", \"template\": \"y\"}]}",
         LD_OK, "y"},
        {"{\"chat_template\": null}", LD_OK, NULL},
        {"{\"chat_template\": 7}", LD_ERR_FORMAT, "chat_template must be a string"},
        {"{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}", LD_ERR_FORMAT, "without a \"default\""},
        {"{\"chat_template\": ", LD_ERR_FORMAT, "tokenizer_config.json"},
    };
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK(ld_file_write_atomic(ctx, path, rows[i].json, strlen(rows[i].json)) == LD_OK);
        ld_status st = ld_lm_load_ex(ctx, dir, NULL, &out);
        CHECK_MSG(st == rows[i].st, "row %zu: %s (%s)", i, ld_status_name(st), ld_ctx_error(ctx));
        if (st == LD_OK) {
            const char *t = ld_lm_chat_template(out);
            CHECK_MSG(rows[i].want ? t && !strcmp(t, rows[i].want) : !t, "row %zu: %s", i, t ? t : "(none)");
        } else {
            CHECK_MSG(strstr(ld_ctx_error(ctx), rows[i].want), "row %zu: %s", i, ld_ctx_error(ctx));
            CHECK(out == NULL);
        }
        ld_lm_free(out), out = NULL;
    }
    unlink(path);
    /* chat_template.jinja wins, and saving writes it back */
    snprintf(path, sizeof path, "%s/chat_template.jinja", dir);
    CHECK(ld_file_write_atomic(ctx, path, "{{ '<start_of_turn>' }}", 23) == LD_OK);
    CHECK(ld_lm_load_ex(ctx, dir, NULL, &out) == LD_OK && out && !strcmp(ld_lm_chat_template(out), "{{ '<start_of_turn>' }}"));
    char *dir2 = tmpdir("tmpl2");
    ld_lm *back = NULL;
    CHECK(out && ld_lm_save(out, dir2) == LD_OK);
    CHECK(ld_lm_load_ex(ctx, dir2, NULL, &back) == LD_OK && back &&
          !strcmp(ld_lm_chat_template(back), "{{ '<start_of_turn>' }}"));
    ld_lm_free(back), ld_lm_free(out), ld_lm_free(m);
    rmdir_all(dir), rmdir_all(dir2);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

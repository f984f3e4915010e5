/* test_restore_bad_input.c — tables of bad inputs, and the error each must give, for the parsers
 * of what a run reads back: importance matrices (imatrix GGUF), checkpoints (trainer_state.json
 * and the parameter / optimizer tensors) and batch-sampler cursors. Each parser also has a
 * libFuzzer harness (fuzz_imatrix, fuzz_checkpoint, fuzz_sampler_cursor). */
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ld_test.h"

static ld_ctx *new_ctx(void) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    return ctx;
}

static char *tmpdir(const char *tag) {
    static char buf[4][256];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 256, "/tmp/liandan-bad-%s-%d-XXXXXX", tag, (int)getpid());
    return mkdtemp(p);
}

/* ---- importance matrices ------------------------------------------------------------- */

enum { GGML_F32 = 0, GGML_F16 = 1 };

/* An imatrix GGUF with one matrix "m" of K = 4 columns, bent by `bad`. */
static void *imatrix_file(ld_ctx *ctx, int bad, size_t *size) {
    ld_gguf_writer *w = NULL;
    ld_gguf_writer_new(ctx, &w);
    ld_gguf_writer_set_str(w, "general.type", "imatrix");
    float sums[8] = {1, 2, 3, 4, 5, 6, 7, 8}, count = 3;
    int64_t shape[2] = {1, 4}, cshape[1] = {1}, shape2[2] = {2, 4}, cshape2[1] = {2};
    if (bad == 1) sums[2] = NAN;
    if (bad == 2) sums[1] = -1;
    if (bad == 3) count = -1;
    if (bad == 4) count = 0.5f;
    if (bad != 5) {
        if (bad == 6) ld_gguf_writer_add_tensor(w, "m.in_sum2", GGML_F16, 2, shape, sums, 8);
        else if (bad == 7) ld_gguf_writer_add_tensor(w, "m.in_sum2", GGML_F32, 2, shape2, sums, 32);
        else ld_gguf_writer_add_tensor(w, "m.in_sum2", GGML_F32, 2, shape, sums, 16);
    }
    if (bad == 8) ld_gguf_writer_add_tensor(w, "m.counts", GGML_F32, 1, cshape2, sums, 8);
    else if (bad != 9) ld_gguf_writer_add_tensor(w, "m.counts", GGML_F32, 1, cshape, &count, 4);
    void *data = NULL;
    ld_gguf_writer_write_memory(w, &data, size);
    ld_gguf_writer_free(w);
    return data;
}

TEST(imatrix_bad_input_table) {
    static const struct {
        int bad;
        ld_status st;
        const char *says;
    } cases[] = {
        {0, LD_OK, ""},
        {1, LD_ERR_FORMAT, "m.in_sum2[2] is negative or not finite"},
        {2, LD_ERR_FORMAT, "m.in_sum2[1] is negative or not finite"},
        {3, LD_ERR_FORMAT, "m.counts is not a count of rows"},
        {4, LD_ERR_FORMAT, "m.counts is not a count of rows"},
        {5, LD_ERR_FORMAT, "no *.in_sum2 tensors: not an importance matrix"},
        {6, LD_ERR_UNSUPPORTED, "m.in_sum2 must be F32 of shape [1, K]"},
        {7, LD_ERR_UNSUPPORTED, "m.in_sum2 must be F32 of shape [1, K]"},
        {8, LD_ERR_FORMAT, "m.counts is missing or not one F32 value"},
        {9, LD_ERR_FORMAT, "m.counts is missing or not one F32 value"},
    };
    ld_ctx *ctx = new_ctx();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t size = 0;
        void *data = imatrix_file(ctx, cases[k].bad, &size);
        ld_imatrix *im = NULL;
        CHECK_STATUS(ctx, ld_imatrix_load_memory(ctx, "x.imatrix", data, size, &im), cases[k].st, cases[k].says);
        if (cases[k].st == LD_OK) {
            const float *w = ld_imatrix_get(im, "m", 4);
            CHECK(w && w[0] == 1.0f / 3 && w[3] == 4.0f / 3); /* sums / counts */
        } else {
            CHECK(im == NULL);
        }
        /* every truncation of a good file that cuts into its data is refused cleanly (the last
         * 32 bytes may be padding after the last tensor) */
        for (size_t cut = 0; cases[k].bad == 0 && cut + 32 <= size; cut += 7) {
            ld_imatrix *t = NULL;
            CHECK(ld_imatrix_load_memory(ctx, "x.imatrix", data, cut, &t) != LD_OK && !t);
        }
        ld_imatrix_free(im);
        ld_free(ctx, data);
    }
    ld_imatrix *im = NULL;
    CHECK_STATUS(ctx, ld_imatrix_load_memory(ctx, "x.imatrix", "hello", 5, &im), LD_ERR_FORMAT, "x.imatrix");
    ld_ctx_free(ctx);
}

/* ---- checkpoints ------------------------------------------------------------------------ */

static ld_status const_next(void *u, ld_batch *b) {
    (void)u;
    for (int64_t i = 0; i < b->B * b->T; i++) b->inputs[i] = (int32_t)(i % 7), b->targets[i] = (int32_t)((i + 1) % 7);
    return LD_OK;
}

typedef struct run {
    ld_ctx *ctx;
    ld_lm *m;
    ld_trainer *t;
    char *dir;
} run;

static run tiny_run(const char *tag, int64_t hidden) {
    run r = {.ctx = new_ctx(), .dir = tmpdir(tag)};
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = 11, c.hidden_size = hidden, c.intermediate_size = 16, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 2;
    c.max_position = 8;
    ld_train_params p = ld_train_default_params();
    p.batch_size = 1, p.seq_len = 4, p.max_steps = 3, p.out_dir = r.dir;
    static ld_batch_source src = {const_next, NULL, NULL, NULL};
    CHECK(ld_lm_new(r.ctx, &c, 1, &r.m) == LD_OK && ld_trainer_new(r.m, &p, &src, NULL, 0, &r.t) == LD_OK);
    return r;
}

static void free_run(run *r) {
    ld_remove_tree(r->ctx, r->dir);
    ld_trainer_free(r->t);
    ld_lm_free(r->m);
    ld_ctx_free(r->ctx);
}

static void put(const char *dir, const char *name, const char *text) {
    char path[600];
    snprintf(path, sizeof path, "%s/checkpoints/step-0000000/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

TEST(checkpoint_bad_input_table) {
    static const char *const good = "{\"format_version\":1,\"step\":2,\"optimizer_steps\":2,\"seed\":\"1\","
                                    "\"running_loss\":\"0x1.8p+1\"}";
    static const struct {
        const char *file, *text; /* the file replaced and its text (NULL: removed) */
        const char *says;
    } cases[] = {
        {"trainer_state.json", "not json", "missing or invalid step"},
        {"trainer_state.json", "{\"step\":-1,\"optimizer_steps\":0,\"running_loss\":\"0x0p+0\"}", "missing or invalid step"},
        {"trainer_state.json", "{\"step\":1.5,\"optimizer_steps\":0,\"running_loss\":\"0x0p+0\"}", "missing or invalid step"},
        {"trainer_state.json", "{\"step\":\"3\",\"optimizer_steps\":0,\"running_loss\":\"0x0p+0\"}", "missing or invalid step"},
        {"trainer_state.json", "{\"step\":1e300,\"optimizer_steps\":0,\"running_loss\":\"0x0p+0\"}", "missing or invalid step"},
        {"trainer_state.json", "{\"step\":2,\"optimizer_steps\":-4,\"running_loss\":\"0x0p+0\"}", "optimizer_steps"},
        {"trainer_state.json", "{\"step\":2,\"optimizer_steps\":2}", "running_loss"},
        {"trainer_state.json", "{\"step\":2,\"optimizer_steps\":2,\"running_loss\":\"fast\"}", "running_loss"},
        {"trainer_state.json", "{\"step\":2,\"optimizer_steps\":2,\"running_loss\":\"0x1p+0\",\"data_cursor\":5}",
         "data_cursor"},
        {"trainer_state.json", NULL, "trainer_state.json: cannot open"},
        {"model.safetensors", "truncated", "model.safetensors"},
        {"model.safetensors", NULL, "model.safetensors"},
        {"optimizer.safetensors", "{}", "optimizer.safetensors"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0] + 2; k++) {
        run r = tiny_run("ckpt", 8);
        CHECK(ld_trainer_checkpoint(r.t) == LD_OK); /* step-0000000, the model's own */
        put(r.dir, "trainer_state.json", good);
        char path[600];
        bool found = false;
        if (k < sizeof cases / sizeof cases[0]) {
            if (cases[k].text) put(r.dir, cases[k].file, cases[k].text);
            else snprintf(path, sizeof path, "%s/checkpoints/step-0000000/%s", r.dir, cases[k].file), unlink(path);
            ld_status st = ld_trainer_resume(r.t, &found);
            CHECK_MSG(st != LD_OK && strstr(ld_ctx_error(r.ctx), "no checkpoint loads") &&
                          strstr(ld_ctx_error(r.ctx), cases[k].says),
                      "case %zu: %s '%s' lacks '%s'", k, ld_status_name(st), ld_ctx_error(r.ctx), cases[k].says);
            CHECK(!found && ld_trainer_step(r.t) == 0);
        } else if (k == sizeof cases / sizeof cases[0]) { /* the good state loads */
            CHECK_STATUS(r.ctx, ld_trainer_resume(r.t, &found), LD_OK, "");
            CHECK(found && ld_trainer_step(r.t) == 2);
        } else { /* tensors of another model (hidden 12, not 8) */
            run other = tiny_run("other", 12);
            CHECK(ld_trainer_checkpoint(other.t) == LD_OK);
            char cmd[1400];
            snprintf(cmd, sizeof cmd, "cp %s/checkpoints/step-0000000/model.safetensors %s/checkpoints/step-0000000/",
                     other.dir, r.dir);
            CHECK(system(cmd) == 0);
            ld_status st = ld_trainer_resume(r.t, &found);
            CHECK(st != LD_OK && strstr(ld_ctx_error(r.ctx), "expected F32"));
            free_run(&other);
        }
        free_run(&r);
    }
}

/* A checkpoint that fails midway (the disk fills) leaves nothing behind: no temporary directory,
 * and the earlier checkpoint of the same step whole (the write replaces it only when complete). */
TEST(failed_checkpoint_leaves_nothing) {
    run r = tiny_run("ckfull", 8);
    CHECK(ld_trainer_checkpoint(r.t) == LD_OK);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "cp -r %s/checkpoints/step-0000000 %s/good", r.dir, r.dir);
    CHECK(system(cmd) == 0);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old, lim.rlim_cur = 1024;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    ld_status st = ld_trainer_checkpoint(r.t);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(st != LD_OK && strstr(ld_ctx_error(r.ctx), "write failed"));
    snprintf(cmd, sizeof cmd, "test $(ls -A %s/checkpoints | wc -l) -eq 2 && diff -r %s/good %s/checkpoints/step-0000000",
             r.dir, r.dir, r.dir);
    CHECK(system(cmd) == 0); /* step-0000000 and latest, nothing else */
    bool found = false;
    CHECK(ld_trainer_resume(r.t, &found) == LD_OK && found);
    free_run(&r);
}

/* ---- sampler cursors ------------------------------------------------------------------------ */

TEST(sampler_cursor_bad_input_table) {
    ld_ctx *ctx = new_ctx();
    char *dir = tmpdir("cursor"), path[600];
    int32_t ids[40];
    snprintf(path, sizeof path, "%s/train-00000.bin", dir);
    ld_shard_writer *w = NULL;
    CHECK(ld_shard_writer_open_raw(ctx, path, 50, 7, &w) == LD_OK);
    for (int d = 0; d < 6; d++) {
        for (int i = 0; i < 40; i++) ids[i] = (d + i) % 50;
        ld_shard_writer_add_doc(w, ids, (size_t)(10 + d));
    }
    CHECK(ld_shard_writer_close(w) == LD_OK); /* 75 tokens in 6 documents */
    snprintf(path, sizeof path, "%s/train", dir);
    ld_batch_sampler *s[3] = {0};
    for (int m = 0; m < 3; m++) {
        ld_sampler_params p = ld_sampler_default_params();
        p.mode = (ld_sample_mode)m, p.seed = 11;
        CHECK(ld_batch_sampler_open(ctx, path, NULL, &p, &s[m]) == LD_OK);
    }
    static const struct {
        int mode;
        const char *json;
        ld_status st;
        const char *says;
    } cases[] = {
        {0, "", LD_ERR_FORMAT, "not a JSON object"},
        {0, "[1]", LD_ERR_FORMAT, "not a JSON object"},
        {0, "{\"mode\":\"random_windows\",\"rank\":0,\"world\":1,\"tokens\":\"75\"}", LD_ERR_FORMAT, "malformed"},
        {0, "{\"mode\":\"random_windows\",\"seed\":\"11\",\"rank\":1e20,\"world\":1,\"tokens\":\"75\",\"counter\":\"1\"}",
         LD_ERR_FORMAT, "malformed"},
        {0, "{\"mode\":\"random_windows\",\"seed\":\"11\",\"rank\":-1,\"world\":1,\"tokens\":\"75\",\"counter\":\"1\"}",
         LD_ERR_FORMAT, "malformed"},
        {0, "{\"mode\":\"random_windows\",\"seed\":\"11\",\"rank\":0,\"world\":1,\"tokens\":\"99999999999999999999999\"}",
         LD_ERR_FORMAT, "malformed"},
        {0, "{\"mode\":\"sequential\",\"seed\":\"11\",\"rank\":0,\"world\":1,\"tokens\":\"75\"}", LD_ERR_MISMATCH,
         "mode sequential, but the sampler uses random_windows"},
        {0, "{\"mode\":\"random_windows\",\"seed\":\"12\",\"rank\":0,\"world\":1,\"tokens\":\"75\"}", LD_ERR_MISMATCH, "seed 12"},
        {0, "{\"mode\":\"random_windows\",\"seed\":\"11\",\"rank\":0,\"world\":1,\"tokens\":\"74\"}", LD_ERR_MISMATCH,
         "saved over 74 tokens, the shards now hold 75"},
        {0, "{\"mode\":\"random_windows\",\"seed\":\"11\",\"rank\":0,\"world\":1,\"tokens\":\"75\"}", LD_ERR_FORMAT,
         "missing \"counter\""},
        {2, "{\"mode\":\"sequential\",\"seed\":\"11\",\"rank\":0,\"world\":1,\"tokens\":\"75\",\"position\":\"76\"}",
         LD_ERR_FORMAT, "out-of-range \"position\""},
        {1, "{\"mode\":\"packed_docs\",\"seed\":\"11\",\"rank\":0,\"world\":1,\"tokens\":\"75\",\"epoch\":\"0\",\"doc\":\"6\","
            "\"offset\":\"0\"}", LD_ERR_FORMAT, "document 6 out of range"},
        {1, "{\"mode\":\"packed_docs\",\"seed\":\"11\",\"rank\":0,\"world\":1,\"tokens\":\"75\",\"epoch\":\"0\",\"doc\":\"0\","
            "\"offset\":\"99\"}", LD_ERR_FORMAT, "offset 99 beyond the document"},
        {1, "{\"mode\":\"packed_docs\",\"seed\":\"11\",\"rank\":0,\"world\":1,\"tokens\":\"75\",\"epoch\":\"3\",\"doc\":\"5\","
            "\"offset\":\"1\"}", LD_OK, ""},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ld_status st = ld_batch_sampler_restore(s[cases[k].mode], cases[k].json);
        CHECK_MSG(st == cases[k].st && strstr(ld_ctx_error(ctx), cases[k].says), "case %zu: %s (%s)", k,
                  ld_status_name(st), ld_ctx_error(ctx));
        ld_ctx_clear_error(ctx);
    }
    /* a saved cursor restores to the same stream: the next batches are equal */
    for (int m = 0; m < 3; m++) {
        int32_t a[2 * 9], b[2 * 9];
        char *json = NULL;
        CHECK(ld_batch_sampler_next(s[m], a, 2, 8) == LD_OK && ld_batch_sampler_save(s[m], &json) == LD_OK);
        CHECK(ld_batch_sampler_next(s[m], a, 2, 8) == LD_OK);
        CHECK(ld_batch_sampler_restore(s[m], json) == LD_OK && ld_batch_sampler_next(s[m], b, 2, 8) == LD_OK);
        CHECK_MSG(!memcmp(a, b, sizeof a), "mode %d", m);
        free(json);
        ld_batch_sampler_free(s[m]);
    }
    ld_remove_tree(ctx, dir);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

/* fuzz/fuzz_checkpoint.c — libFuzzer harness for resuming from a training checkpoint: the input
 * is trainer_state.json, model.safetensors and optimizer.safetensors (each but the last after a
 * 4-byte little-endian length), written as the checkpoint of a tiny model's run directory and
 * resumed. Any input is rejected cleanly or resumes at a sane step. LD_FUZZ_SEED=DIR writes the
 * model's own first checkpoint there (the seed corpus). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "liandan/liandan.h"

static ld_ctx *ctx;
static ld_lm *model;
static ld_trainer *trainer;
static char dir[64] = "/tmp/liandan-fuzz-ckpt-XXXXXX";

static ld_status next(void *u, ld_batch *b) {
    (void)u;
    for (int64_t i = 0; i < b->B * b->T; i++) b->inputs[i] = (int32_t)(i % 7), b->targets[i] = (int32_t)((i + 1) % 7);
    return LD_OK;
}
static ld_status save(void *u, char **out) {
    (void)u;
    *out = strdup("{\"position\":\"0\"}");
    return *out ? LD_OK : LD_ERR_NOMEM;
}
static ld_status restore(void *u, const char *json) {
    (void)u, (void)json; /* the cursor itself has its own harness (fuzz_sampler_cursor) */
    return LD_OK;
}

static void cleanup(void) {
    ld_trainer_free(trainer);
    ld_lm_free(model);
    ld_remove_tree(ctx, dir);
    ld_ctx_free(ctx);
}

static char *slurp(const char *path, size_t *n) {
    char *text = NULL;
    if (ld_file_read(ctx, path, 1 << 24, &text, n)) abort();
    return text;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (ld_ctx_new(NULL, &ctx) || !mkdtemp(dir)) abort();
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = 11, c.hidden_size = 8, c.intermediate_size = 16, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 2;
    c.max_position = 8;
    ld_train_params p = ld_train_default_params();
    p.batch_size = 1, p.seq_len = 4, p.max_steps = 3, p.out_dir = dir;
    static ld_batch_source src = {next, save, restore, NULL};
    if (ld_lm_new(ctx, &c, 1, &model) || ld_trainer_new(model, &p, &src, NULL, 0, &trainer)) abort();
    atexit(cleanup);
    const char *seed = getenv("LD_FUZZ_SEED");
    if (!seed) return 0;
    if (ld_trainer_checkpoint(trainer)) abort(); /* step 0 */
    const char *names[3] = {"trainer_state.json", "model.safetensors", "optimizer.safetensors"};
    char path[512];
    snprintf(path, sizeof path, "%s/valid.ckpt", seed);
    FILE *f = fopen(path, "wb");
    for (int i = 0; f && i < 3; i++) {
        char file[256];
        size_t n = 0;
        snprintf(file, sizeof file, "%s/checkpoints/step-0000000/%s", dir, names[i]);
        char *text = slurp(file, &n);
        uint8_t len[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
        if (i < 2) fwrite(len, 1, 4, f);
        fwrite(text, 1, n, f);
        ld_free(ctx, text);
    }
    if (f) fclose(f);
    exit(0);
}

/* The next part of the input: 4-byte length then bytes (the last part: the rest). */
static const uint8_t *part(const uint8_t **data, size_t *size, bool last, size_t *n) {
    if (last) {
        *n = *size;
    } else {
        uint32_t len = *size >= 4 ? (uint32_t)(*data)[0] | (uint32_t)(*data)[1] << 8 | (uint32_t)(*data)[2] << 16 |
                                        (uint32_t)(*data)[3] << 24
                                  : 0;
        size_t skip = *size >= 4 ? 4 : *size;
        *data += skip, *size -= skip;
        *n = len < *size ? len : *size;
    }
    const uint8_t *p = *data;
    *data += *n, *size -= *n;
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *names[3] = {"trainer_state.json", "model.safetensors", "optimizer.safetensors"};
    char path[256];
    snprintf(path, sizeof path, "%s/checkpoints/step-0000001", dir);
    ld_remove_tree(ctx, path);
    if (mkdir(path, 0755) != 0) return 0;
    for (int i = 0; i < 3; i++) {
        size_t n;
        const uint8_t *p = part(&data, &size, i == 2, &n);
        char file[320];
        snprintf(file, sizeof file, "%s/%s", path, names[i]);
        FILE *f = fopen(file, "wb"); /* plain writes: no fsync per input */
        if (!f || fwrite(p, 1, n, f) != n) abort();
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/checkpoints/latest", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fputs("step-0000001\n", f) < 0) abort();
    fclose(f);
    bool found = false;
    if (ld_trainer_resume(trainer, &found) == LD_OK && found && ld_trainer_step(trainer) < 0) abort();
    ld_ctx_clear_error(ctx);
    return 0;
}

/* fuzz/fuzz_sampler_cursor.c — libFuzzer harness for restoring a batch sampler's cursor (the
 * data_cursor of a checkpoint's trainer_state.json): the first byte picks the sampler mode, the
 * rest is the cursor JSON. Any input is rejected cleanly, or the sampler goes on to give batches
 * whose tokens are all in the vocabulary. The shards (two files, documents of 1 to 40 tokens) are
 * written once into a temporary directory. LD_FUZZ_SEED=DIR writes a saved cursor of each mode
 * there (the seed corpus). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "liandan/liandan.h"

#define VOCAB 50
static ld_ctx *ctx;
static ld_batch_sampler *samplers[3];
static char dir[64] = "/tmp/liandan-fuzz-cursor-XXXXXX";

static void cleanup(void) {
    for (int m = 0; m < 3; m++) ld_batch_sampler_free(samplers[m]);
    ld_remove_tree(ctx, dir);
    ld_ctx_free(ctx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    if (ld_ctx_new(NULL, &ctx) || !mkdtemp(dir)) abort();
    int32_t ids[40];
    for (int f = 0; f < 2; f++) {
        char path[128];
        snprintf(path, sizeof path, "%s/train-%05d.bin", dir, f);
        ld_shard_writer *w = NULL;
        if (ld_shard_writer_open_raw(ctx, path, VOCAB, 7, &w)) abort();
        for (int d = 0; d < 9; d++) {
            int n = 1 + (d * 13 + f * 7) % 40;
            for (int i = 0; i < n; i++) ids[i] = (d + i) % VOCAB;
            ld_shard_writer_add_doc(w, ids, (size_t)n);
        }
        if (ld_shard_writer_close(w)) abort();
    }
    char pattern[128];
    snprintf(pattern, sizeof pattern, "%s/train", dir);
    for (int m = 0; m < 3; m++) {
        ld_sampler_params p = ld_sampler_default_params();
        p.mode = (ld_sample_mode)m, p.seed = 11;
        if (ld_batch_sampler_open(ctx, pattern, NULL, &p, &samplers[m])) abort();
    }
    atexit(cleanup);
    const char *seed = getenv("LD_FUZZ_SEED");
    if (!seed) return 0;
    for (int m = 0; m < 3; m++) {
        int32_t tokens[2 * 9];
        for (int k = 0; k < 3; k++) ld_batch_sampler_next(samplers[m], tokens, 2, 8);
        char *json = NULL, path[512];
        if (ld_batch_sampler_save(samplers[m], &json)) abort();
        snprintf(path, sizeof path, "%s/mode%d.json", seed, m);
        FILE *f = fopen(path, "wb");
        if (f) fputc(m, f), fputs(json, f), fclose(f);
        free(json);
    }
    exit(0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    ld_batch_sampler *s = samplers[data[0] % 3];
    char *json = malloc(size);
    if (!json) return 0;
    memcpy(json, data + 1, size - 1);
    json[size - 1] = 0;
    if (ld_batch_sampler_restore(s, json) == LD_OK) {
        int32_t tokens[3 * 17];
        for (int k = 0; k < 4; k++) {
            if (ld_batch_sampler_next(s, tokens, 3, 16)) abort();
            for (int i = 0; i < 3 * 17; i++)
                if (tokens[i] < 0 || tokens[i] >= VOCAB) abort();
        }
    }
    ld_ctx_clear_error(ctx);
    free(json);
    return 0;
}

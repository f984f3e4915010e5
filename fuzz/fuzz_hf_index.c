/* fuzz_hf_index.c — libFuzzer harness for model.safetensors.index.json parsing. */
#include <string.h>

#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_hf_index *idx = NULL;
    if (ld_hf_index_parse(ctx, "fuzz.index.json", (const char *)data, size, &idx) == LD_OK) {
        const char *prev = NULL;
        for (size_t i = 0; i < ld_hf_index_count(idx); i++) {
            const char *t, *f;
            ld_hf_index_at(idx, i, &t, &f);
            if (!t || !f || f[0] == '/' || (prev && strcmp(prev, t) >= 0)) __builtin_trap();
            prev = t;
        }
        for (size_t i = 0; i < ld_hf_index_file_count(idx); i++)
            if (!ld_hf_index_file(idx, i)) __builtin_trap();
        ld_hf_index_free(idx);
    }
    if (ld_ctx_bytes_in_use(ctx) != 0) __builtin_trap();
    ld_ctx_free(ctx);
    return 0;
}

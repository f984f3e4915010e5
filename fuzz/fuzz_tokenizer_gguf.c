/* fuzz/fuzz_tokenizer_gguf.c — a tokenizer from arbitrary GGUF bytes (tokenizer.ggml.* of the
 * gpt2, llama and bert models: tokens, types, scores, merges, pre names, special ids, flags):
 * errors, never crashes or leaks; a tokenizer that loads encodes, decodes and writes itself
 * back, and the written form loads again. Seeds: vocab-only GGUFs of each model. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_gguf *g = NULL;
    ld_tokenizer *t = NULL, *t2 = NULL;
    if (ld_gguf_open_memory(ctx, "fuzz.gguf", data, size, &g) == LD_OK &&
        ld_tokenizer_from_gguf(ctx, g, "fuzz.gguf", &t) == LD_OK) {
        int32_t ids[512];
        size_t n = 0, nb = 0;
        const char *probe = "hello 世界 123 <s> [CLS]  x\xff";
        if (ld_tokenizer_encode(t, probe, strlen(probe), LD_ENCODE_ADD_SPECIAL, ids, 512, &n) == LD_OK) {
            char back[4096];
            ld_tokenizer_decode(t, ids, n, false, back, sizeof back, &nb);
        }
        ld_gguf_writer *w = NULL;
        void *mem = NULL;
        size_t msize = 0;
        ld_gguf *g2 = NULL;
        if (ld_gguf_writer_new(ctx, &w) == LD_OK && ld_tokenizer_to_gguf(t, w, 0) == LD_OK &&
            ld_gguf_writer_write_memory(w, &mem, &msize) == LD_OK) {
            if (ld_gguf_open_memory(ctx, "again.gguf", mem, msize, &g2) != LD_OK) abort();
            if (ld_tokenizer_from_gguf(ctx, g2, "again.gguf", &t2) != LD_OK) abort();
        }
        ld_tokenizer_free(t2);
        ld_gguf_close(g2);
        ld_free(ctx, mem);
        ld_gguf_writer_free(w);
        ld_tokenizer_free(t);
    }
    ld_gguf_close(g);
    ld_ctx_free(ctx);
    return 0;
}

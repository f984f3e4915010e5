/* fuzz_gguf_model.c — libFuzzer harness for reading a causal LM and its tokenizer out of a
 * GGUF file (architecture keys, tensor names and shapes, tokenizer.ggml.* metadata): any
 * input is rejected cleanly or gives a model that runs one token, both loaded in place and as a
 * trainable copy. */
#include <stdlib.h>

#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    /* odd sizes load a trainable copy, even ones read the weights in place */
    ld_lm_load_params p = {.trainable = size & 1};
    if (ld_lm_load_gguf_memory(ctx, "fuzz.gguf", data, size, &p, &m, &tok) == LD_OK) {
        ld_lm_session *s = NULL;
        if (ld_lm_session_new(m, 1, 2, 2, &s) == LD_OK) {
            int32_t id = 0;
            ld_lm_segment seg = {0, &id, 1};
            const float *logits;
            ld_lm_session_eval(s, &seg, 1, false, &logits);
            ld_lm_session_free(s);
        }
        int32_t ids[16];
        size_t n;
        ld_tokenizer_encode(tok, "床前明月 hello", 17, 0, ids, 16, &n);
        ld_tokenizer_free(tok);
        ld_lm_free(m);
    }
    ld_ctx_free(ctx);
    return 0;
}

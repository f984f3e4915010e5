/* fuzz/fuzz_tokenizer_encode.c — encoding arbitrary bytes (invalid UTF-8, specials, huge
 * runs) with a trained byte-level BPE: never crashes, and decode(encode(x)) == x. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/liandan.h"

static const char *const docs[] = {"the cat's 12 hats", "床前明月光，疑是地上霜。", "  spaces\tand\ttabs\n", "😀 émoji"};
static int at;
static ld_status next(void *u, const char **d, size_t *len) {
    (void)u;
    if (at == 4 * 50) return LD_ERR_NOT_FOUND;
    *d = docs[at++ % 4];
    *len = strlen(*d);
    return LD_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ld_ctx *ctx;
    static ld_tokenizer *t;
    if (!t) {
        ld_ctx_new(NULL, &ctx);
        ld_bpe_train_params p = ld_bpe_train_default_params();
        const char *sp[] = {"<|endoftext|>"};
        p.vocab_size = 400, p.min_frequency = 1, p.special_tokens = sp, p.n_special_tokens = 1, p.n_threads = 1;
        ld_text_source src = {next, NULL};
        if (ld_bpe_train(ctx, &p, &src, &t)) abort();
    }
    size_t cap = size + 8, n = 0, nb = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *back = malloc(size + 64);
    if (ld_tokenizer_encode(t, (const char *)data, size, (size & 1) ? LD_ENCODE_SPECIAL_AS_TEXT : 0, ids, cap, &n))
        abort();
    if (ld_tokenizer_decode(t, ids, n, false, back, size + 64, &nb) || nb != size || memcmp(back, data, size)) abort();
    free(ids);
    free(back);
    return 0;
}

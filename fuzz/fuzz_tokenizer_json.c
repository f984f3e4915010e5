/* fuzz/fuzz_tokenizer_json.c — tokenizer.json parsing from arbitrary bytes: errors, never
 * crashes or leaks; a tokenizer that loads must encode and decode its own vocabulary. */
#include <stdint.h>
#include <string.h>

#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_tokenizer *t = NULL;
    if (ld_tokenizer_load_memory(ctx, "fuzz.json", (const char *)data, size, &t) == LD_OK) {
        int32_t ids[256];
        size_t n = 0, nb = 0;
        const char *probe = "hello 世界 123 <s>";
        if (ld_tokenizer_encode(t, probe, strlen(probe), 0, ids, 256, &n) == LD_OK) {
            char back[512];
            ld_tokenizer_decode(t, ids, n, false, back, sizeof back, &nb);
        }
        ld_tokenizer_free(t);
    }
    ld_ctx_free(ctx);
    return 0;
}

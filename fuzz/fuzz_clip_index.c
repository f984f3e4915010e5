/* fuzz/fuzz_clip_index.c — libFuzzer harness: the image-text index reader over arbitrary bytes;
 * an index that parses must answer a search with in-range ids, best first. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/clip_eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx) != LD_OK) return 0;
    ld_clip_index *ix = NULL;
    if (ld_clip_index_parse(ctx, data, size, "fuzz", &ix) == LD_OK) {
        int64_t E = ld_clip_index_dim(ix), ids[4], found = 0;
        float *q = calloc((size_t)E, sizeof *q), sc[4];
        if (q) {
            q[0] = 1;
            if (ld_clip_index_search(ix, q, 4, ids, sc, &found) == LD_OK)
                for (int64_t i = 0; i < found; i++)
                    if (ids[i] < 0 || ids[i] >= ld_clip_index_count(ix) || !ld_clip_index_name(ix, ids[i])) abort();
            free(q);
        }
        ld_clip_index_free(ix);
    }
    ld_ctx_free(ctx);
    return 0;
}

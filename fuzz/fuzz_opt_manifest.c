/* fuzz/fuzz_opt_manifest.c — libFuzzer harness: a ZeRO-1 checkpoint's optimizer_shards.json
 * (train/dist.c) over arbitrary bytes; an accepted manifest must tile [0, n_trainable) with
 * plain file names and parameters summing to n_trainable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/trainer_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ld_ctx *ctx;
    if (!ctx && ld_ctx_new(NULL, &ctx)) abort();
    ld_opt_manifest m;
    if (ld_opt_manifest_parse(ctx, (const char *)data, size, "optimizer_shards.json", &m) == LD_OK) {
        int64_t at = 0, total = 0;
        for (int i = 0; i < m.n_shards; i++) {
            if (m.lo[i] != at || m.hi[i] < m.lo[i] || strchr(m.files[i], '/')) abort();
            at = m.hi[i];
        }
        for (int i = 0; i < m.n_params; i++) total += m.numel[i];
        if (at != m.n_trainable || total != m.n_trainable) abort();
        ld_opt_manifest_free(ctx, &m);
    }
    ld_ctx_clear_error(ctx);
    return 0;
}

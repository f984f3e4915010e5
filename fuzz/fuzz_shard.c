/* fuzz/fuzz_shard.c — libFuzzer harness: token shard parsing from memory. Any input must give
 * LD_OK or an error status, never a crash; an accepted shard must be readable throughout.
 * The first byte chooses whether the header checksums are repaired first, so the fuzzer
 * also reaches the checks behind them. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    int repair = data[0] & 1;
    data++, size--;
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return 0;
    memcpy(b, data, size);
    if (repair && size >= 64) {
        uint64_t d = ld_hash64(b + 64, size - 64);
        for (int i = 0; i < 8; i++) b[48 + i] = (uint8_t)(d >> (8 * i));
        uint64_t h = ld_hash64(b, 56);
        for (int i = 0; i < 8; i++) b[56 + i] = (uint8_t)(h >> (8 * i));
    }
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx) != LD_OK) {
        free(b);
        return 0;
    }
    ld_shard *s = NULL;
    if (ld_shard_open_memory(ctx, "fuzz.bin", b, size, NULL, &s) == LD_OK) {
        int64_t n = ld_shard_tokens(s), docs = ld_shard_docs(s), v = ld_shard_vocab_size(s);
        int64_t sum = 0;
        for (int64_t d = 0; d < docs; d++) {
            int64_t a = ld_shard_doc_start(s, d), e = ld_shard_doc_start(s, d + 1);
            if (a > e || e > n) abort();
        }
        for (int64_t i = 0; i < n; i++) {
            int32_t t = ld_shard_token(s, i);
            if (t < 0 || t >= v) abort();
            sum += t;
        }
        (void)sum;
        ld_shard_close(s);
    }
    ld_ctx_free(ctx);
    free(b);
    return 0;
}

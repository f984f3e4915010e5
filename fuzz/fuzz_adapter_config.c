/* fuzz/fuzz_adapter_config.c — libFuzzer harness: adapter_config.json (PEFT) over arbitrary
 * bytes, parsed and, when accepted, turned into an adapter on a tiny model (targets that
 * match nothing and bad sizes must be clean errors). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "models/adapter_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ld_ctx *ctx;
    static ld_lm *m;
    if (!m) {
        ld_ctx_new(NULL, &ctx);
        ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
        c.vocab_size = 32, c.hidden_size = 16, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 2, c.intermediate_size = 16;
        c.max_position = 16;
        if (ld_lm_new(ctx, &c, 1, &m)) abort();
    }
    ld_adapter_config c;
    char **labels = NULL;
    int64_t n = 0;
    if (lm_adapter_parse_config(ctx, "adapter_config.json", (const char *)data, size, &c, &labels, &n) == LD_OK) {
        ld_adapter *a = NULL;
        if (lm_adapter_create(m, &c, &a) == LD_OK) {
            if (labels && ld_adapter_set_labels(a, (const char *const *)labels, n)) abort();
            ld_adapter_free(a);
        }
        if (ld_lm_adapter(m)) abort(); /* nothing stays attached */
    }
    for (int64_t i = 0; labels && i < n; i++) free(labels[i]);
    free(labels);
    ld_ctx_clear_error(ctx);
    return 0;
}

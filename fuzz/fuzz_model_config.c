/* fuzz/fuzz_model_config.c — config.json (causal LM) and training-config parsing from
 * arbitrary bytes: errors, never crashes or leaks. */
#include <stdint.h>

#include "liandan/liandan.h"
#include "train/train_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_lm_config c;
    ld_lm_config_from_json(ctx, (const char *)data, size, "config.json", &c);
    ld_train_config tc;
    const char *over[] = {"model.hidden_size=64", "lr=0.01"};
    ld_train_config_parse(ctx, (const char *)data, size, "train.json", over, (int)(size % 3), &tc);
    ld_ctx_free(ctx);
    return 0;
}

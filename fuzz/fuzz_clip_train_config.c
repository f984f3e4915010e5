/* fuzz/fuzz_clip_train_config.c — the image-text training config (liandan pretrain with a
 * "model" of model_type "clip": CLIPConfig, data, optimisation, MoCo queue, checkpoints) from
 * arbitrary bytes: errors, never crashes or leaks; what parses is in range. */
#include <stdint.h>
#include <stdlib.h>

#include "liandan/clip_train.h"
#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_clip_train_config c;
    if (ld_clip_train_config_parse(ctx, (const char *)data, size, "clip.json", &c) == LD_OK) {
        if (c.queue_size < 0 || !(c.momentum >= 0 && c.momentum < 1) || c.batch_size < 2 || c.checkpoint_every < 0)
            __builtin_trap();
        if (ld_clip_config_validate(ctx, &c.model) != LD_OK) __builtin_trap();
    }
    (void)ld_clip_train_config_is_clip((const char *)data, size);
    ld_ctx_free(ctx);
    return 0;
}

/* fuzz/fuzz_clip_config.c — an image-text model's config.json (transformers' CLIPConfig in
 * liandan's BERT-text layout or in the CLIPModel layout with its defaults) from arbitrary bytes:
 * errors, never crashes or leaks; what parses validates and writes back to the same config. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/clip.h"
#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_clip_config c, back;
    if (ld_clip_config_from_json(ctx, (const char *)data, size, "config.json", &c) == LD_OK) {
        if (ld_clip_config_validate(ctx, &c) != LD_OK) __builtin_trap();
        char *text = ld_clip_config_to_json(&c);
        if (text) {
            if (ld_clip_config_from_json(ctx, text, strlen(text), "again.json", &back) != LD_OK) __builtin_trap();
            if (back.layout != c.layout || back.embed_dim != c.embed_dim || back.vision_width != c.vision_width ||
                back.text.hidden_size != c.text.hidden_size || back.eos_token_id != c.eos_token_id)
                __builtin_trap();
            free(text);
        }
    }
    (void)ld_clip_config_sniff((const char *)data, size);
    ld_ctx_free(ctx);
    return 0;
}

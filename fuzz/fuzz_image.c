/* fuzz/fuzz_image.c — libFuzzer harness: the image decoders (PNG, JPEG) and the image-text
 * list parser over arbitrary bytes. The first byte picks the target: decode the rest as an
 * image, or parse it as a TSV or JSONL list (image paths point nowhere, so every listed image
 * is a bad image under the skip or the reject policy). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++, size--;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx) != LD_OK) return 0;
    if ((sel & 3) == 0) {
        ld_image im;
        if (ld_image_decode(ctx, data, size, "fuzz", &im) == LD_OK) {
            if (im.width <= 0 || im.height <= 0 || !im.px) abort();
            uint8_t sq[8 * 8 * 3];
            ld_image_resize_center_crop(im.px, im.width, im.height, sq, 8);
            ld_image_free(ctx, &im);
        }
    } else {
        ld_image_set_params p = ld_image_set_default_params();
        p.size = 8;
        p.bad = (sel >> 2) & 1 ? LD_BAD_IMAGE_SKIP : LD_BAD_IMAGE_REJECT;
        ld_image_set *s = NULL;
        if (ld_image_set_parse_list(ctx, (const char *)data, size, "fuzz", (sel & 3) == 2, "/nonexistent-fuzz-dir", &p,
                                    &s) == LD_OK) {
            if (ld_image_set_count(s) < 1) abort();
            ld_image_set_free(s);
        }
    }
    ld_ctx_free(ctx);
    return 0;
}

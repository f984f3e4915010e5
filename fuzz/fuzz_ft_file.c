/* fuzz/fuzz_ft_file.c — the check of uploaded fine-tuning JSONL (serve/ft_file.h) from
 * arbitrary bytes: an error naming a line, never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>

#include "liandan/liandan.h"
#include "serve/ft_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_ft_file_info info;
    ld_ft_file_check(ctx, (const char *)data, size, 64, &info);
    ld_ctx_free(ctx);
    return 0;
}

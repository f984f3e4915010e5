/* fuzz/fuzz_api_request.c — the server's JSON request parser (every route kind, chosen by the
 * first byte) and the streamed-text helper from arbitrary bytes: errors, never crashes or
 * leaks. */
#include <stdint.h>
#include <stdlib.h>

#include "liandan/liandan.h"
#include "serve/api_request.h"
#include "serve/text_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_api_request r;
    ld_api_error e;
    ld_api_kind kind = (ld_api_kind)(data[0] % LD_API_KIND_COUNT);
    if (ld_api_request_parse(ctx, kind, (const char *)data + 1, size - 1, NULL, &r, &e) == LD_OK) ld_api_request_free(&r);
    /* the text stream with two stop strings taken from the input */
    const char *stops[2] = {"\n\n", size > 4 ? "ab" : "x"};
    ld_text_stream t;
    ld_text_stream_init(&t, stops, 2);
    for (size_t i = 1; i < size; i += 3) ld_text_stream_add(&t, (const char *)data + i, size - i < 3 ? size - i : 3);
    free(ld_utf8_valid_copy((const char *)data, size));
    ld_text_stream_free(&t);
    ld_ctx_free(ctx);
    return 0;
}

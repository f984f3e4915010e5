/* fuzz/fuzz_chat_template.c — chat template recognition and rendering from arbitrary bytes:
 * the input is a template text, then NUL-separated role/content pairs. Any template is
 * recognised or refused with a message; any conversation renders or is refused; the
 * rendering of a recognised family holds every message's (untrimmed families) content. The
 * whole input is also parsed as OpenAI-style messages JSON and, when it parses, rendered. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    char *buf = malloc(size + 1);
    if (!buf) return ld_ctx_free(ctx), 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    /* pieces separated by NUL: template, role, content, role, content... */
    const char *piece[33];
    int n = 0;
    for (size_t i = 0; i <= size && n < 33; n++) {
        piece[n] = buf + i;
        i += strlen(buf + i) + 1;
    }
    const ld_chat_template *t = NULL;
    if (ld_chat_template_detect(ctx, piece[0], &t) != LD_OK) {
        if (!*ld_ctx_error(ctx)) __builtin_trap();
        t = ld_chat_template_at((size_t)size % ld_chat_template_count());
    }
    ld_chat_message msgs[16];
    size_t nm = 0;
    for (int i = 1; i + 1 < n && nm < 16; i += 2) msgs[nm++] = (ld_chat_message){piece[i], piece[i + 1]};
    char *out = NULL;
    size_t len = 0;
    if (ld_chat_render(ctx, t, msgs, nm, size & 1, "<s>", "</s>", &out, &len) == LD_OK) {
        if (strlen(out) > len) __builtin_trap();
        for (size_t i = 0; !ld_chat_template_trims(t) && i < nm; i++)
            if (!strstr(out, msgs[i].content)) __builtin_trap();
        ld_free(ctx, out);
    } else if (!*ld_ctx_error(ctx)) {
        __builtin_trap();
    }
    /* the whole input as OpenAI-style messages JSON, rendered when it parses */
    ld_chat_message *parsed = NULL;
    size_t np = 0;
    if (ld_chat_parse_messages(ctx, "fuzz.json", (const char *)data, size, &parsed, &np) == LD_OK) {
        if (np && ld_chat_render(ctx, t, parsed, np, true, NULL, NULL, &out, &len) == LD_OK) ld_free(ctx, out);
        ld_free(ctx, parsed);
    } else if (!*ld_ctx_error(ctx)) {
        __builtin_trap();
    }
    free(buf);
    if (ld_ctx_bytes_in_use(ctx)) __builtin_trap();
    ld_ctx_free(ctx);
    return 0;
}

/* serve/ft_file.h — checking an uploaded fine-tuning file before it is stored: JSONL, one
 * example per line, each a chat ({"messages": [{"role", "content"}, ...]}, what `finetune`'s
 * "chat" format reads) or a text ({"text": "..."}, the "text" format), all of one kind. */
#ifndef LD_SERVE_FT_FILE_H
#define LD_SERVE_FT_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"

typedef struct ld_ft_file_info {
    int64_t examples;   /* non-empty lines */
    char format[8];     /* "chat" or "text" */
} ld_ft_file_info;

/* Checks data[n] line by line (LF or CRLF; blank lines are skipped). Errors (LD_ERR_FORMAT,
 * message "line N: what"): invalid UTF-8, not a JSON object, neither "messages" nor "text",
 * a message without string role and content, an unknown role (system, user, assistant,
 * tool), a chat without an assistant turn, an empty text, a line of the other kind than the
 * first, no example at all; LD_ERR_LIMIT past max_examples (0 = no limit). */
ld_status ld_ft_file_check(ld_ctx *ctx, const char *data, size_t n, int64_t max_examples, ld_ft_file_info *out);

#endif

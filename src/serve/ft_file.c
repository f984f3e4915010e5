/* serve/ft_file.c — line-by-line checks of uploaded fine-tuning JSONL (ft_file.h). */
#include "serve/ft_file.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/text_stream.h"

static const char *const roles[] = {"system", "user", "assistant", "tool"};

/* One example; its kind in *kind (1 chat, 2 text). A message in err (no line prefix). */
static bool check_example(const cJSON *o, int *kind, char *err, size_t cap) {
    if (!cJSON_IsObject(o)) return snprintf(err, cap, "an example is a JSON object"), false;
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
    if (msgs && text) return snprintf(err, cap, "both \"messages\" and \"text\": give one"), false;
    if (text) {
        if (!cJSON_IsString(text) || !text->valuestring[0]) return snprintf(err, cap, "\"text\" must be a non-empty string"), false;
        *kind = 2;
        return true;
    }
    if (!msgs)
        return snprintf(err, cap, "no \"messages\" (a chat: [{\"role\", \"content\"}, ...]) or \"text\" (a string)"), false;
    if (!cJSON_IsArray(msgs) || !cJSON_GetArraySize(msgs)) return snprintf(err, cap, "\"messages\" must be a non-empty list"), false;
    bool assistant = false;
    int i = 0;
    for (const cJSON *m = msgs->child; m; m = m->next, i++) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content))
            return snprintf(err, cap, "messages[%d] needs string \"role\" and \"content\"", i), false;
        bool known = false;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++) known |= !strcmp(role->valuestring, roles[k]);
        if (!known)
            return snprintf(err, cap, "messages[%d]: unknown role '%.40s' (system, user, assistant, tool)", i, role->valuestring),
                   false;
        assistant |= !strcmp(role->valuestring, "assistant") && content->valuestring[0];
    }
    if (!assistant) return snprintf(err, cap, "the chat has no assistant message to learn from"), false;
    *kind = 1;
    return true;
}

ld_status ld_ft_file_check(ld_ctx *ctx, const char *data, size_t n, int64_t max_examples, ld_ft_file_info *out) {
    memset(out, 0, sizeof *out);
    int first = 0;
    int64_t line = 0;
    for (size_t at = 0; at < n;) {
        const char *s = data + at, *nl = memchr(s, '\n', n - at);
        size_t len = nl ? (size_t)(nl - s) : n - at;
        at += len + (nl ? 1 : 0);
        line++;
        if (len && s[len - 1] == '\r') len--;
        size_t k = 0;
        while (k < len && (s[k] == ' ' || s[k] == '\t')) k++;
        if (k == len) continue; /* blank */
        char *valid = ld_utf8_valid_copy(s, len);
        bool utf8 = valid && strlen(valid) == len && !memcmp(valid, s, len);
        free(valid);
        if (!utf8 || memchr(s, 0, len)) return ld_error(ctx, LD_ERR_FORMAT, "line %lld: not valid UTF-8 text", (long long)line);
        const char *end = NULL;
        cJSON *o = cJSON_ParseWithLengthOpts(s, len, &end, false);
        if (!o) {
            size_t col = end && end >= s ? (size_t)(end - s) + 1 : 1;
            return ld_error(ctx, LD_ERR_FORMAT, "line %lld, column %zu: not valid JSON", (long long)line, col);
        }
        const char *rest = end;
        while (rest && rest < s + len && (*rest == ' ' || *rest == '\t')) rest++;
        char err[200];
        int kind = 0;
        bool ok = rest == s + len && check_example(o, &kind, err, sizeof err);
        cJSON_Delete(o);
        if (rest != s + len) return ld_error(ctx, LD_ERR_FORMAT, "line %lld: one JSON object per line, found more", (long long)line);
        if (!ok) return ld_error(ctx, LD_ERR_FORMAT, "line %lld: %s", (long long)line, err);
        if (!first) first = kind;
        else if (kind != first)
            return ld_error(ctx, LD_ERR_FORMAT, "line %lld: a %s example in a file of %s examples (the first line's kind)",
                            (long long)line, kind == 1 ? "chat" : "text", first == 1 ? "chat" : "text");
        if (max_examples > 0 && out->examples >= max_examples)
            return ld_error(ctx, LD_ERR_LIMIT, "line %lld: more than %lld examples", (long long)line, (long long)max_examples);
        out->examples++;
    }
    if (!out->examples) return ld_error(ctx, LD_ERR_FORMAT, "the file has no examples (JSONL: one JSON object per line)");
    snprintf(out->format, sizeof out->format, "%s", first == 1 ? "chat" : "text");
    return LD_OK;
}

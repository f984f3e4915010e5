/* infer/chat_template.c — chat template families: one table row per family says how to
 * recognise its Jinja template and how it formats a conversation (see liandan/chat.h).
 *
 * A row's strings may hold "{bos}" and "{eos}", replaced by the tokenizer's BOS and EOS
 * texts. Rendering: begin, then per message pre[role] + content + post[role], then gen (or
 * tail without a generation prompt). Families without a system role (merge_system) put
 * the system text into the first user message as sys_pre + system + sys_post + content. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "io/io_internal.h"
#include "io/json.h"
#include "liandan/chat.h"

enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, N_ROLES };
static const char *const role_names[N_ROLES] = {"system", "user", "assistant"};

struct ld_chat_template {
    const char *name, *description;
    const char *markers[3]; /* the template text contains all of these */
    const char *absent;     /* ... and not this (NULL = no condition) */
    const char *begin;
    const char *pre[N_ROLES], *post[N_ROLES];
    const char *gen, *tail;
    bool merge_system; /* no system role: the system text goes into the first user message */
    const char *sys_pre, *sys_post;
    bool trim; /* the template strips each message's content (Jinja trim / strip()) */
    const char *end_of_turn;
};

/* First match wins: more specific markers come first. */
static const ld_chat_template families[] = {
    {"chatml", "ChatML: <|im_start|>role\\n...<|im_end|> (Qwen, Yi, SmolLM, OpenHermes...)",
     {"<|im_start|>"}, NULL, "",
     {"<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n"},
     {"<|im_end|>\n", "<|im_end|>\n", "<|im_end|>\n"},
     "<|im_start|>assistant\n", "", false, NULL, NULL, false, "<|im_end|>"},
    {"llama3", "Llama 3: <|start_header_id|>role<|end_header_id|>\\n\\n...<|eot_id|>",
     {"<|start_header_id|>", "<|end_header_id|>"}, NULL, "{bos}",
     {"<|start_header_id|>system<|end_header_id|>\n\n", "<|start_header_id|>user<|end_header_id|>\n\n",
      "<|start_header_id|>assistant<|end_header_id|>\n\n"},
     {"<|eot_id|>", "<|eot_id|>", "<|eot_id|>"},
     "<|start_header_id|>assistant<|end_header_id|>\n\n", "", false, NULL, NULL, true, "<|eot_id|>"},
    {"llama2", "Llama 2: <s>[INST] <<SYS>>\\n...\\n<</SYS>>\\n\\n... [/INST] ... </s>",
     {"[INST]", "<<SYS>>"}, NULL, "",
     {"", "{bos}[INST] ", " "},
     {"", " [/INST]", " {eos}"},
     "", "", true, "<<SYS>>\n", "\n<</SYS>>\n\n", true, "{eos}"},
    {"mistral", "Mistral: <s>[INST] ... [/INST]...</s>",
     {"[INST]"}, NULL, "{bos}",
     {"", "[INST] ", ""},
     {"", " [/INST]", "{eos}"},
     "", "", true, "", "\n\n", false, "{eos}"},
    {"phi3", "Phi-3: <|user|>\\n...<|end|>\\n<|assistant|>\\n",
     {"<|assistant|>", "<|end|>"}, NULL, "",
     {"<|system|>\n", "<|user|>\n", "<|assistant|>\n"},
     {"<|end|>\n", "<|end|>\n", "<|end|>\n"},
     "<|assistant|>\n", "{eos}", false, NULL, NULL, false, "<|end|>"},
    {"gemma", "Gemma: <start_of_turn>user\\n...<end_of_turn>\\n<start_of_turn>model\\n",
     {"<start_of_turn>"}, NULL, "{bos}",
     {"", "<start_of_turn>user\n", "<start_of_turn>model\n"},
     {"", "<end_of_turn>\n", "<end_of_turn>\n"},
     "<start_of_turn>model\n", "", true, "", "\n\n", true, "<end_of_turn>"},
    {"deepseek3", "DeepSeek V3 / R1: <｜User｜>...<｜Assistant｜>...<｜end▁of▁sentence｜>",
     {"<｜User｜>", "<｜Assistant｜>"}, NULL, "{bos}",
     {"", "<｜User｜>", "<｜Assistant｜>"},
     {"", "", "<｜end▁of▁sentence｜>"},
     "<｜Assistant｜>", "", false, NULL, NULL, false, "<｜end▁of▁sentence｜>"},
    {"deepseek", "DeepSeek LLM / V2: User: ...\\n\\nAssistant: ...</s>",
     {"User: ", "Assistant:"}, NULL, "{bos}",
     {"", "User: ", "Assistant: "},
     {"\n\n", "\n\n", "{eos}"},
     "Assistant:", "", false, NULL, NULL, false, "{eos}"},
    /* no template: the text goes on from what you type and a turn ends at a newline (base
     * models, liandan's own poetry models); never recognised, only chosen */
    {"plain", "plain text: your line, then the model's continuation up to a newline",
     {NULL}, NULL, "",
     {"", "", ""},
     {"\n", "", "\n"},
     "", "", false, NULL, NULL, false, "\n"},
};
#define N_FAMILIES (sizeof families / sizeof families[0])

size_t ld_chat_template_count(void) {
    return N_FAMILIES;
}
const ld_chat_template *ld_chat_template_at(size_t i) {
    return i < N_FAMILIES ? &families[i] : NULL;
}
const ld_chat_template *ld_chat_template_find(const char *name) {
    for (size_t i = 0; name && i < N_FAMILIES; i++)
        if (!strcmp(families[i].name, name)) return &families[i];
    return NULL;
}
const char *ld_chat_template_name(const ld_chat_template *t) {
    return t ? t->name : NULL;
}
const char *ld_chat_template_description(const ld_chat_template *t) {
    return t ? t->description : NULL;
}
bool ld_chat_template_trims(const ld_chat_template *t) {
    return t && t->trim;
}
const char *ld_chat_template_end_of_turn(const ld_chat_template *t, const char *eos_text) {
    if (!t) return NULL;
    return strcmp(t->end_of_turn, "{eos}") ? t->end_of_turn : eos_text;
}

/* "chatml, llama3, ..." into buf. */
static const char *family_list(char *buf, size_t cap) { /* every name, "plain" included */
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < N_FAMILIES && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", i ? ", " : "", families[i].name);
    return buf;
}

ld_status ld_chat_template_detect(ld_ctx *ctx, const char *jinja, const ld_chat_template **out) {
    if (!jinja || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_chat_template_detect: NULL argument");
    *out = NULL;
    for (size_t i = 0; i < N_FAMILIES; i++) {
        const ld_chat_template *t = &families[i];
        bool all = t->markers[0] != NULL; /* a row without markers is only chosen by name */
        for (int k = 0; k < 3 && all && t->markers[k]; k++) all = strstr(jinja, t->markers[k]) != NULL;
        if (all && (!t->absent || !strstr(jinja, t->absent))) return *out = t, LD_OK;
    }
    /* quote the template's start on one line */
    char quote[64], names[160];
    size_t q = 0;
    for (const char *p = jinja; *p && q + 1 < sizeof quote; p++) quote[q++] = *p == '\n' || *p == '\r' ? ' ' : *p;
    quote[q] = 0;
    return ld_error(ctx, LD_ERR_UNSUPPORTED,
                    "unknown chat template \"%s%s\" (%zu bytes): give one of %s with --chat-template NAME", quote,
                    strlen(jinja) > q ? "..." : "", strlen(jinja), family_list(names, sizeof names));
}

/* ---- rendering --------------------------------------------------------------------------- */

/* Appends s with {bos} / {eos} replaced. */
static void put_expanded(ld_buf *b, const char *s, const char *bos, const char *eos) {
    while (*s) {
        const char *brace = strchr(s, '{');
        if (!brace) {
            ld_buf_puts(b, s);
            return;
        }
        ld_buf_put(b, s, (size_t)(brace - s));
        if (!strncmp(brace, "{bos}", 5)) ld_buf_puts(b, bos), s = brace + 5;
        else if (!strncmp(brace, "{eos}", 5)) ld_buf_puts(b, eos), s = brace + 5;
        else ld_buf_put(b, brace, 1), s = brace + 1;
    }
}

/* Length of the UTF-8 whitespace character at p (Python's str.strip() set), else 0. */
static size_t space_len(const unsigned char *p, const unsigned char *end) {
    if (p >= end) return 0;
    if (*p == ' ' || (*p >= 0x09 && *p <= 0x0d) || (*p >= 0x1c && *p <= 0x1f)) return 1;
    if (end - p >= 2 && p[0] == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2;
    if (end - p >= 3) {
        unsigned c = (unsigned)p[0] << 16 | (unsigned)p[1] << 8 | p[2];
        if (c == 0xe19a80 || (c >= 0xe28080 && c <= 0xe2808a) || c == 0xe280a8 || c == 0xe280a9 || c == 0xe280af ||
            c == 0xe2819f || c == 0xe38080)
            return 3;
    }
    return 0;
}

/* Appends s[0..n), stripped of leading and trailing whitespace when trim. */
static void put_content(ld_buf *b, const char *s, size_t n, bool trim) {
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    if (trim) {
        for (size_t k; (k = space_len(p, end));) p += k;
        /* trailing: step back over whole characters */
        for (bool again = true; again && end > p;) {
            again = false;
            for (size_t k = 1; k <= 3 && end - k >= p; k++)
                if (space_len(end - k, end) == k) {
                    end -= k, again = true;
                    break;
                }
        }
    }
    ld_buf_put(b, p, (size_t)(end - p));
}

/* Appends sys_pre + system + sys_post + content, trimmed as a whole when the family trims
 * (its templates strip the combined text). */
static void put_merged(ld_buf *b, const ld_chat_template *t, const char *system, const char *content, const char *bos,
                       const char *eos) {
    ld_buf m;
    ld_buf_init(&m, b->ctx);
    put_expanded(&m, t->sys_pre, bos, eos);
    ld_buf_puts(&m, system);
    put_expanded(&m, t->sys_post, bos, eos);
    ld_buf_puts(&m, content);
    if (m.failed) b->failed = true;
    else put_content(b, (const char *)m.data, m.len, t->trim);
    ld_buf_free(&m);
}

static int role_of(const char *role) {
    for (int r = 0; role && r < N_ROLES; r++)
        if (!strcmp(role, role_names[r])) return r;
    return -1;
}

ld_status ld_chat_render(ld_ctx *ctx, const ld_chat_template *t, const ld_chat_message *msgs, size_t n,
                         bool add_generation_prompt, const char *bos, const char *eos, char **out, size_t *len) {
    if (!t || !msgs || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_chat_render: NULL argument");
    *out = NULL;
    if (len) *len = 0;
    if (n == 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "chat: no messages to render");
    if (!bos) bos = "";
    if (!eos) eos = "";
    for (size_t i = 0; i < n; i++) {
        int r = role_of(msgs[i].role);
        if (r < 0)
            return ld_error(ctx, LD_ERR_INVALID_ARG, "chat: message %zu has role '%.40s' (system, user or assistant)", i,
                            msgs[i].role ? msgs[i].role : "(null)");
        if (!msgs[i].content) return ld_error(ctx, LD_ERR_INVALID_ARG, "chat: message %zu has no content", i);
        if (r == ROLE_SYSTEM && i > 0)
            return ld_error(ctx, LD_ERR_INVALID_ARG, "chat: message %zu: a system message may only come first", i);
    }
    ld_buf b;
    ld_buf_init(&b, ctx);
    put_expanded(&b, t->begin, bos, eos);
    size_t first = 0;
    const char *system = NULL;
    if (t->merge_system && role_of(msgs[0].role) == ROLE_SYSTEM) system = msgs[0].content, first = 1;
    for (size_t i = first; i < n; i++) {
        int r = role_of(msgs[i].role);
        put_expanded(&b, t->pre[r], bos, eos);
        if (system && r == ROLE_USER) {
            put_merged(&b, t, system, msgs[i].content, bos, eos);
            system = NULL;
        } else {
            put_content(&b, msgs[i].content, strlen(msgs[i].content), t->trim);
        }
        put_expanded(&b, t->post[r], bos, eos);
    }
    if (system) { /* a system message and no user message: it stands as the user's turn */
        put_expanded(&b, t->pre[ROLE_USER], bos, eos);
        put_merged(&b, t, system, "", bos, eos);
        put_expanded(&b, t->post[ROLE_USER], bos, eos);
    }
    put_expanded(&b, add_generation_prompt ? t->gen : t->tail, bos, eos);
    ld_buf_put(&b, "", 1); /* NUL */
    if (b.failed) {
        ld_buf_free(&b);
        return ld_error(ctx, LD_ERR_NOMEM, "chat: out of memory rendering %zu messages", n);
    }
    *out = (char *)b.data;
    if (len) *len = b.len - 1;
    return LD_OK;
}

/* ---- messages as JSON -------------------------------------------------------------------- */

/* The text of a message's "content": a string, or OpenAI's list of {"type": "text",
 * "text": ...} parts joined. Appends to b; false (error set) otherwise. */
static bool content_text(ld_ctx *ctx, const char *doc, size_t i, const cJSON *c, ld_buf *b) {
    if (cJSON_IsString(c)) return ld_buf_puts(b, c->valuestring), true;
    if (!cJSON_IsArray(c)) {
        ld_error(ctx, LD_ERR_FORMAT, "%s: messages[%zu].content: expected a string or a list of text parts", doc, i);
        return false;
    }
    int k = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") || !cJSON_IsString(text)) {
            ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: messages[%zu].content[%d]: only {\"type\": \"text\", \"text\": ...} "
                     "parts are supported", doc, i, k);
            return false;
        }
        ld_buf_puts(b, text->valuestring);
        k++;
    }
    return true;
}

ld_status ld_chat_parse_messages(ld_ctx *ctx, const char *doc, const char *json, size_t len, ld_chat_message **msgs,
                                 size_t *n) {
    if (!json || !msgs || !n) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_chat_parse_messages: NULL argument");
    *msgs = NULL, *n = 0;
    if (!doc) doc = "messages";
    struct cJSON *root = NULL;
    ld_status st = ld_json_parse(ctx, doc, json, len, &root);
    if (st) return st;
    const cJSON *arr = root;
    if (cJSON_IsObject(root)) arr = cJSON_GetObjectItemCaseSensitive(root, "messages"); /* a request body */
    if (!cJSON_IsArray(arr)) {
        ld_json_free(root);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: expected a list of messages (or an object with \"messages\")", doc);
    }
    /* one block: the array, then the strings */
    size_t count = (size_t)cJSON_GetArraySize(arr), i = 0;
    ld_buf text;
    ld_buf_init(&text, ctx);
    size_t *role_at = ld_calloc(ctx, count + 1, 2 * sizeof(size_t));
    if (!role_at) st = ld_ctx_status(ctx);
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        if (st) break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: messages[%zu]: expected an object with a string \"role\"", doc, i);
            break;
        }
        if (strcmp(role->valuestring, "system") && strcmp(role->valuestring, "user") &&
            strcmp(role->valuestring, "assistant")) {
            st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: messages[%zu]: role '%.40s' (system, user or assistant)", doc, i,
                          role->valuestring);
            break;
        }
        role_at[2 * i] = text.len;
        ld_buf_put(&text, role->valuestring, strlen(role->valuestring) + 1);
        role_at[2 * i + 1] = text.len;
        if (content && !cJSON_IsNull(content) && !content_text(ctx, doc, i, content, &text)) {
            st = ld_ctx_status(ctx);
            break;
        }
        ld_buf_put(&text, "", 1);
        i++;
    }
    if (!st && text.failed) st = ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", doc);
    ld_chat_message *out = NULL;
    size_t head = (count * sizeof *out + 63) / 64 * 64;
    if (!st && !(out = ld_alloc(ctx, head + text.len))) st = ld_ctx_status(ctx);
    if (!st) {
        char *strs = (char *)out + head;
        if (text.len) memcpy(strs, text.data, text.len); /* an empty list has no text (data NULL) */
        for (size_t k = 0; k < count; k++) out[k] = (ld_chat_message){strs + role_at[2 * k], strs + role_at[2 * k + 1]};
        *msgs = out, *n = count;
    }
    ld_free(ctx, role_at);
    ld_buf_free(&text);
    ld_json_free(root);
    return st;
}

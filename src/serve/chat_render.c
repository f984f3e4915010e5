/* serve/chat_render.c — chat messages to prompt tokens: the one place the server applies a
 * chat template. The format is the library's (liandan/chat.h): the family of the model's own
 * Jinja template, or ChatML / Llama-3 when the tokenizer has their special tokens; models with
 * neither get plain "User: ... / Assistant:" lines (stopping at the next "\nUser:").
 * The template's text is encoded with its special tokens, each message's text as plain text,
 * so a user cannot forge a turn by typing "<|im_end|>": messages are rendered as numbered
 * placeholders, and the rendered text is cut at them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/causal_lm.h"
#include "liandan/chat.h"
#include "serve/serve_internal.h"

typedef struct ids_buf {
    int32_t *p;
    int64_t n, cap;
} ids_buf;

static bool push(ids_buf *b, const int32_t *ids, int64_t n) {
    if (b->n + n > b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        int32_t *p = realloc(b->p, (size_t)cap * sizeof *p);
        if (!p) return false;
        b->p = p, b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, ids, (size_t)n * sizeof *ids);
    b->n += n;
    return true;
}

/* Appends the tokens of s[0..len): special tokens recognised (template text) or not (a message). */
static ld_status text(ld_pool_model *m, ids_buf *b, const char *s, size_t len, bool special, ld_api_error *e) {
    if (!len) return LD_OK;
    int32_t *ids;
    int64_t n;
    ld_status st = ld_pool_encode(m, s, len, special, false, &ids, &n, e);
    if (st) return st;
    bool ok = push(b, ids, n);
    free(ids);
    return ok ? LD_OK : ld_api_fail(e, 500, NULL, "out of memory");
}

/* A copy of token id's text ("" when none). */
static char *token_text(const ld_tokenizer *tok, int32_t id) {
    const char *p = "";
    size_t n = 0;
    if (id >= 0 && ld_tokenizer_token_bytes(tok, id, &p, &n)) p = "", n = 0;
    char *s = malloc(n + 1);
    if (s) memcpy(s, p, n), s[n] = 0;
    return s;
}

/* The family for this model: its template's, else one its tokenizer's specials imply; NULL: none. */
static const ld_chat_template *family(ld_pool_model *m) {
    const char *jinja = ld_lm_chat_template(m->m);
    const ld_chat_template *t = NULL;
    if (jinja && ld_chat_template_detect(m->tok_ctx, jinja, &t) == LD_OK) return t;
    if (ld_tokenizer_token_id(m->tok, "<|im_start|>") >= 0 && ld_tokenizer_token_id(m->tok, "<|im_end|>") >= 0)
        return ld_chat_template_find("chatml");
    if (ld_tokenizer_token_id(m->tok, "<|start_header_id|>") >= 0 && ld_tokenizer_token_id(m->tok, "<|eot_id|>") >= 0)
        return ld_chat_template_find("llama3");
    return NULL;
}

/* "User: ...\nAssistant: ...\n" lines ending in "Assistant:". */
static ld_status plain(ld_pool_model *m, const ld_api_request *r, ids_buf *b, ld_chat_prompt *out, ld_api_error *e) {
    static const struct { const char *role, *label; } labels[] = {
        {"system", "System: "}, {"developer", "System: "}, {"user", "User: "}, {"assistant", "Assistant: "}, {"tool", "Tool: "}};
    ld_status st = LD_OK;
    for (int i = 0; i < r->n_messages && !st; i++) {
        const char *label = "User: ";
        for (size_t k = 0; k < sizeof labels / sizeof labels[0]; k++)
            if (!strcmp(labels[k].role, r->messages[i].role)) label = labels[k].label;
        const char *c = r->messages[i].content;
        if (!(st = text(m, b, label, strlen(label), false, e)) && !(st = text(m, b, c, strlen(c), false, e)))
            st = text(m, b, "\n", 1, false, e);
    }
    if (!st) st = text(m, b, "Assistant:", 10, false, e);
    out->stops[out->n_stops++] = "\nUser:";
    out->stops[out->n_stops++] = "\nSystem:";
    return st;
}

/* Renders through the family with placeholders "\x01<i>\x02" for the messages, under tok_mu
 * (the tokenizer's context); *rendered is malloc'd. */
static ld_status render(ld_pool_model *m, const ld_api_request *r, const ld_chat_template *t, char **rendered,
                        const char **eot, ld_api_error *e) {
    ld_chat_message *msgs = calloc((size_t)r->n_messages, sizeof *msgs);
    char (*marks)[16] = calloc((size_t)r->n_messages, sizeof *marks);
    char *bos = token_text(m->tok, ld_tokenizer_bos_id(m->tok)), *eos = token_text(m->tok, ld_tokenizer_eos_id(m->tok));
    ld_status st = msgs && marks && bos && eos ? LD_OK : ld_api_fail(e, 500, NULL, "out of memory");
    for (int i = 0; !st && i < r->n_messages; i++) {
        if (strchr(r->messages[i].content, '\x01'))
            st = ld_api_fail(e, 400, "messages", "messages[%d].content holds the control character U+0001", i);
        snprintf(marks[i], sizeof marks[i], "\x01%d\x02", i);
        msgs[i].role = !strcmp(r->messages[i].role, "developer") ? "system" : r->messages[i].role;
        msgs[i].content = marks[i];
    }
    char *text = NULL;
    if (!st && ld_chat_render(m->tok_ctx, t, msgs, (size_t)r->n_messages, true, *bos ? bos : NULL, *eos ? eos : NULL,
                              &text, NULL))
        st = ld_api_fail(e, 400, "messages", "%s", ld_ctx_error(m->tok_ctx));
    if (!st && !(*rendered = strdup(text))) st = ld_api_fail(e, 500, NULL, "out of memory");
    if (!st) { /* the end of a turn: a stop token, or EOS (a stop already) */
        const char *end = ld_chat_template_end_of_turn(t, eos);
        *eot = end == eos ? NULL : end;
    }
    ld_free(m->tok_ctx, text);
    free(msgs), free(marks), free(bos), free(eos);
    return st;
}

ld_status ld_srv_chat_prompt(ld_pool_model *m, const ld_api_request *r, ld_chat_prompt *out, ld_api_error *e) {
    memset(out, 0, sizeof *out);
    ids_buf b = {0};
    pthread_mutex_lock(&m->tok_mu);
    const ld_chat_template *t = family(m);
    char *rendered = NULL;
    const char *eot = NULL;
    ld_status st = t ? render(m, r, t, &rendered, &eot, e) : LD_OK;
    pthread_mutex_unlock(&m->tok_mu);
    if (!st && !t) st = plain(m, r, &b, out, e);
    /* cut the rendered text at the placeholders: template text, then message i, ... */
    for (const char *p = rendered; !st && p && *p;) {
        const char *mark = strchr(p, '\x01');
        size_t n = mark ? (size_t)(mark - p) : strlen(p);
        if ((st = text(m, &b, p, n, true, e)) || !mark) break;
        char *after;
        long i = strtol(mark + 1, &after, 10);
        if (*after != '\x02' || i < 0 || i >= r->n_messages) {
            st = ld_api_fail(e, 500, NULL, "chat template: a message placeholder was changed");
            break;
        }
        const char *c = r->messages[i].content;
        size_t len = strlen(c);
        if (ld_chat_template_trims(t)) { /* the family strips each message's content */
            while (len && strchr(" \t\r\n", c[len - 1])) len--;
            while (len && strchr(" \t\r\n", *c)) c++, len--;
        }
        st = text(m, &b, c, len, false, e);
        p = after + 1;
    }
    if (!st && eot) {
        int32_t id = ld_tokenizer_token_id(m->tok, eot);
        if (id >= 0) out->stop_ids[out->n_stop_ids++] = id;
        else if (*eot) out->stops[out->n_stops++] = eot; /* the family's static text */
    }
    free(rendered);
    if (st) {
        free(b.p);
        return st;
    }
    out->ids = b.p, out->n = b.n;
    return LD_OK;
}

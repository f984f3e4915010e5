/* serve/chat_render.c — chat messages to prompt tokens: the one place the server applies a
 * chat template. Special tokens of the template are inserted by id and message text is
 * encoded as plain text (a user cannot forge a turn by typing "<|im_end|>").
 *   ChatML (the tokenizer has <|im_start|> and <|im_end|>), Llama-3 (<|start_header_id|>), or
 *   plain "User: ... / Assistant:" lines for models without a chat format (stops at the next
 *   "\nUser:"). */
#include <stdlib.h>
#include <string.h>

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
    memcpy(b->p + b->n, ids, (size_t)n * sizeof *ids);
    b->n += n;
    return true;
}

static ld_status text(ld_pool_model *m, ids_buf *b, const char *s, ld_api_error *e) {
    int32_t *ids;
    int64_t n;
    ld_status st = ld_pool_encode(m, s, strlen(s), false, false, &ids, &n, e);
    if (st) return st;
    bool ok = push(b, ids, n);
    free(ids);
    return ok ? LD_OK : ld_api_fail(e, 500, NULL, "out of memory");
}

static ld_status special(ids_buf *b, int32_t id, ld_api_error *e) {
    return push(b, &id, 1) ? LD_OK : ld_api_fail(e, 500, NULL, "out of memory");
}

ld_status ld_srv_chat_prompt(ld_pool_model *m, const ld_api_request *r, ld_chat_prompt *out, ld_api_error *e) {
    memset(out, 0, sizeof *out);
    ids_buf b = {0};
    const ld_tokenizer *tok = m->tok;
    int32_t im_start = ld_tokenizer_token_id(tok, "<|im_start|>"), im_end = ld_tokenizer_token_id(tok, "<|im_end|>");
    int32_t hdr_start = ld_tokenizer_token_id(tok, "<|start_header_id|>"), hdr_end = ld_tokenizer_token_id(tok, "<|end_header_id|>");
    int32_t eot = ld_tokenizer_token_id(tok, "<|eot_id|>"), bos = ld_tokenizer_bos_id(tok);
    ld_status st = LD_OK;
    if (im_start >= 0 && im_end >= 0) {
        for (int i = 0; i < r->n_messages && !st; i++) {
            const ld_api_message *msg = &r->messages[i];
            const char *role = !strcmp(msg->role, "developer") ? "system" : msg->role;
            if (!(st = special(&b, im_start, e)) && !(st = text(m, &b, role, e)) && !(st = text(m, &b, "\n", e)) &&
                !(st = text(m, &b, msg->content, e)) && !(st = special(&b, im_end, e)))
                st = text(m, &b, "\n", e);
        }
        if (!st && !(st = special(&b, im_start, e))) st = text(m, &b, "assistant\n", e);
        out->stop_ids[out->n_stop_ids++] = im_end;
    } else if (hdr_start >= 0 && hdr_end >= 0 && eot >= 0) {
        if (bos >= 0) st = special(&b, bos, e);
        for (int i = 0; i < r->n_messages && !st; i++) {
            const ld_api_message *msg = &r->messages[i];
            const char *role = !strcmp(msg->role, "developer") ? "system" : msg->role;
            if (!(st = special(&b, hdr_start, e)) && !(st = text(m, &b, role, e)) && !(st = special(&b, hdr_end, e)) &&
                !(st = text(m, &b, "\n\n", e)) && !(st = text(m, &b, msg->content, e)))
                st = special(&b, eot, e);
        }
        if (!st && !(st = special(&b, hdr_start, e)) && !(st = text(m, &b, "assistant", e)) && !(st = special(&b, hdr_end, e)))
            st = text(m, &b, "\n\n", e);
        out->stop_ids[out->n_stop_ids++] = eot;
    } else {
        static const struct { const char *role, *label; } labels[] = {
            {"system", "System"}, {"developer", "System"}, {"user", "User"}, {"assistant", "Assistant"}, {"tool", "Tool"}};
        for (int i = 0; i < r->n_messages && !st; i++) {
            const char *label = "User";
            for (size_t k = 0; k < sizeof labels / sizeof labels[0]; k++)
                if (!strcmp(labels[k].role, r->messages[i].role)) label = labels[k].label;
            if (!(st = text(m, &b, label, e)) && !(st = text(m, &b, ": ", e)) && !(st = text(m, &b, r->messages[i].content, e)))
                st = text(m, &b, "\n", e);
        }
        if (!st) st = text(m, &b, "Assistant:", e);
        out->stops[out->n_stops++] = "\nUser:";
        out->stops[out->n_stops++] = "\nSystem:";
    }
    if (st) {
        free(b.p);
        return st;
    }
    out->ids = b.p, out->n = b.n;
    return LD_OK;
}

/* infer/chat.c — a multi-turn conversation in one slot of an inference session, reusing the
 * KV cache across turns.
 *
 * The slot holds `held` tokens, and held_text is the text they stand for (the rendered
 * prompt of the last turn plus the reply tokens the cache kept). A new turn renders the
 * whole conversation; when held_text is a prefix of it, only the rest is tokenized and
 * evaluated. Otherwise (a template that trims the reply, messages dropped for room) the
 * whole text is tokenized and the longest common token prefix with the slot is kept. */
#define _GNU_SOURCE /* memmem */
#include <string.h>

#include "io/io_internal.h"
#include "liandan/chat.h"

typedef struct chat_msg {
    char *role, *content;
} chat_msg;

typedef struct ids_vec {
    int32_t *v;
    int64_t n, cap;
} ids_vec;

struct ld_chat {
    ld_ctx *ctx;
    ld_lm_session *s;
    const ld_tokenizer *tok;
    const ld_chat_template *t;
    int slot;
    char *bos, *eos;     /* the tokenizer's BOS / EOS texts ("" when absent) */
    chat_msg *msgs;
    size_t n, cap;
    ids_vec held;        /* the tokens the slot holds */
    ld_buf held_text;    /* the text they stand for */
    ids_vec gen;         /* the reply being generated */
    ld_token_fn on_token; /* the caller's callback during respond */
    void *user;
};

static ld_status ids_reserve(ld_ctx *ctx, ids_vec *v, int64_t n) {
    if (n <= v->cap) return LD_OK;
    int64_t cap = v->cap ? v->cap : 256;
    while (cap < n) cap *= 2;
    int32_t *p = ld_alloc(ctx, (size_t)cap * sizeof(int32_t));
    if (!p) return ld_ctx_status(ctx);
    if (v->n) memcpy(p, v->v, (size_t)v->n * sizeof(int32_t));
    ld_free(ctx, v->v);
    v->v = p, v->cap = cap;
    return LD_OK;
}

/* The text of token id, or "" (copied). */
static char *token_text(ld_ctx *ctx, const ld_tokenizer *tok, int32_t id) {
    const char *b = NULL;
    size_t len = 0;
    if (id < 0 || ld_tokenizer_token_bytes(tok, id, &b, &len)) b = "", len = 0;
    char *s = ld_alloc(ctx, len + 1);
    if (s) memcpy(s, b, len), s[len] = 0;
    return s;
}

ld_status ld_chat_new(ld_lm_session *s, const ld_tokenizer *tok, const ld_chat_template *t, int slot, ld_chat **out) {
    ld_ctx *ctx = ld_lm_session_ctx(s);
    if (!s || !tok || !t || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_chat_new: NULL argument");
    *out = NULL;
    if (slot < 0 || slot >= ld_lm_session_slots(s))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "chat: slot %d of %d", slot, ld_lm_session_slots(s));
    ld_chat *c = ld_calloc(ctx, 1, sizeof *c);
    if (!c) return ld_ctx_status(ctx);
    c->ctx = ctx, c->s = s, c->tok = tok, c->t = t, c->slot = slot;
    ld_buf_init(&c->held_text, ctx);
    c->bos = token_text(ctx, tok, ld_tokenizer_bos_id(tok));
    c->eos = token_text(ctx, tok, ld_tokenizer_eos_id(tok));
    if (!c->bos || !c->eos) {
        ld_chat_free(c);
        return ld_ctx_status(ctx);
    }
    ld_lm_session_clear(s, slot);
    *out = c;
    return LD_OK;
}

static void forget_messages(ld_chat *c) {
    for (size_t i = 0; i < c->n; i++) ld_free(c->ctx, c->msgs[i].role), ld_free(c->ctx, c->msgs[i].content);
    c->n = 0;
}

void ld_chat_free(ld_chat *c) {
    if (!c) return;
    forget_messages(c);
    ld_free(c->ctx, c->msgs);
    ld_free(c->ctx, c->held.v), ld_free(c->ctx, c->gen.v);
    ld_buf_free(&c->held_text);
    ld_free(c->ctx, c->bos), ld_free(c->ctx, c->eos);
    ld_free(c->ctx, c);
}

void ld_chat_reset(ld_chat *c) {
    if (!c) return;
    forget_messages(c);
    c->held.n = 0, c->held_text.len = 0;
    ld_lm_session_clear(c->s, c->slot);
}

size_t ld_chat_count(const ld_chat *c) {
    return c ? c->n : 0;
}

ld_chat_message ld_chat_at(const ld_chat *c, size_t i) {
    if (!c || i >= c->n) return (ld_chat_message){NULL, NULL};
    return (ld_chat_message){c->msgs[i].role, c->msgs[i].content};
}

/* Appends a message of len bytes of content. */
static ld_status add_message(ld_chat *c, const char *role, const char *content, size_t len) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 16;
        chat_msg *m = ld_calloc(c->ctx, cap, sizeof *m);
        if (!m) return ld_ctx_status(c->ctx);
        if (c->n) memcpy(m, c->msgs, c->n * sizeof *m);
        ld_free(c->ctx, c->msgs);
        c->msgs = m, c->cap = cap;
    }
    char *r = ld_strdup(c->ctx, role), *t = ld_alloc(c->ctx, len + 1);
    if (!r || !t) {
        ld_free(c->ctx, r), ld_free(c->ctx, t);
        return ld_ctx_status(c->ctx);
    }
    memcpy(t, content, len), t[len] = 0;
    c->msgs[c->n++] = (chat_msg){r, t};
    return LD_OK;
}

ld_status ld_chat_add(ld_chat *c, const char *role, const char *content) {
    if (!c || !role || !content) return LD_ERR_INVALID_ARG;
    if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant"))
        return ld_error(c->ctx, LD_ERR_INVALID_ARG, "chat: role '%.40s' (system, user or assistant)", role);
    if (!strcmp(role, "system") && c->n)
        return ld_error(c->ctx, LD_ERR_INVALID_ARG, "chat: a system message may only come first");
    return add_message(c, role, content, strlen(content));
}

/* ids <- text (special tokens recognised: the template's markers are special tokens). */
static ld_status encode(ld_chat *c, const char *text, size_t len, ids_vec *ids) {
    size_t need = 0;
    ld_status st = ids_reserve(c->ctx, ids, ids->n + (int64_t)len / 2 + 16);
    if (!st) st = ld_tokenizer_encode(c->tok, text, len, 0, ids->v + ids->n, (size_t)(ids->cap - ids->n), &need);
    if (st == LD_ERR_LIMIT && !(st = ids_reserve(c->ctx, ids, ids->n + (int64_t)need)))
        st = ld_tokenizer_encode(c->tok, text, len, 0, ids->v + ids->n, (size_t)(ids->cap - ids->n), &need);
    if (st) return ld_error_wrap(c->ctx, st, "chat: encoding the conversation: ");
    ids->n += (int64_t)need;
    return LD_OK;
}

/* The conversation from message `from` on (message 0 kept when it is the system's). */
static ld_status render_from(ld_chat *c, size_t from, char **text, size_t *len) {
    ld_chat_message *m = ld_alloc(c->ctx, (c->n + 1) * sizeof *m);
    if (!m) return ld_ctx_status(c->ctx);
    size_t k = 0;
    if (from > 0 && !strcmp(c->msgs[0].role, "system")) m[k++] = (ld_chat_message){c->msgs[0].role, c->msgs[0].content};
    for (size_t i = from; i < c->n; i++) m[k++] = (ld_chat_message){c->msgs[i].role, c->msgs[i].content};
    ld_status st = ld_chat_render(c->ctx, c->t, m, k, true, c->bos, c->eos, text, len);
    ld_free(c->ctx, m);
    return st;
}

/* *out (ld_alloc'd, NUL-terminated) <- the text of ids[0..n). */
static ld_status decode(ld_chat *c, const int32_t *ids, int64_t n, char **out, size_t *len) {
    size_t need = 0;
    *out = NULL;
    ld_status st = ld_tokenizer_decode(c->tok, ids, (size_t)n, false, NULL, 0, &need);
    if (st && st != LD_ERR_LIMIT) return st;
    if (!(*out = ld_alloc(c->ctx, need + 1))) return ld_ctx_status(c->ctx);
    if ((st = ld_tokenizer_decode(c->tok, ids, (size_t)n, false, *out, need + 1, &need))) {
        ld_free(c->ctx, *out), *out = NULL;
        return st;
    }
    (*out)[need] = 0;
    *len = need;
    return LD_OK;
}

/* Whether token id decodes to nothing but ASCII whitespace. */
static bool all_space(const ld_tokenizer *tok, int32_t id) {
    const char *b;
    size_t n;
    if (ld_tokenizer_token_bytes(tok, id, &b, &n) || !n) return false;
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\n\r\f\v", b[i])) return false;
    return true;
}

static bool collect(void *user, int seq, int32_t tok) {
    ld_chat *c = user;
    if (ids_reserve(c->ctx, &c->gen, c->gen.n + 1)) return false;
    c->gen.v[c->gen.n++] = tok;
    return c->on_token ? c->on_token(c->user, seq, tok) : true;
}

ld_status ld_chat_respond(ld_chat *c, const ld_generate_params *p, ld_token_fn on_token, void *user,
                          ld_chat_stats *stats) {
    if (!c || !p) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = c->ctx;
    if (!c->n || strcmp(c->msgs[c->n - 1].role, "user"))
        return ld_error(ctx, LD_ERR_STATE, "chat: the conversation must end with a user message to reply to");
    ld_chat_stats stat = {0};
    const int64_t max_len = ld_lm_session_max_len(c->s);
    char *text = NULL, *reply = NULL;
    size_t len = 0, from = 0;
    ids_vec ids = {0}, stops = {0};
    ld_status st;
    /* the whole conversation, or its newest messages that leave room for the reply */
    for (;;) {
        ids.n = 0;
        ld_free(ctx, text), text = NULL;
        if ((st = render_from(c, from, &text, &len)) || (st = encode(c, text, len, &ids))) goto out;
        if (ids.n + p->max_tokens < max_len) break;
        size_t next = from;
        if (next == 0 && !strcmp(c->msgs[0].role, "system")) next = 1;
        next++; /* drop one message, then up to the next user message */
        while (next < c->n && strcmp(c->msgs[next].role, "user")) next++;
        if (next < c->n) {
            from = next;
            continue;
        }
        /* the last message alone passes the context: keep its newest tokens (as many as the
         * template and the system message leave room for), cut at a character; when the
         * re-rendered conversation still passes (tokens merge differently at the cut), the
         * next try cuts more */
        char *last = c->msgs[c->n - 1].content;
        size_t clen = strlen(last), drop = 0;
        if (clen == 0) {
            st = ld_error(ctx, LD_ERR_LIMIT,
                          "chat: the template and the system message need %lld tokens; with %lld for the reply that "
                          "passes the context of %lld",
                          (long long)ids.n, (long long)p->max_tokens, (long long)max_len);
            goto out;
        }
        ids_vec cids = {0};
        if ((st = encode(c, last, clen, &cids))) goto out;
        int64_t room = max_len - p->max_tokens - 1 - (ids.n - cids.n), cut = cids.n - (room > 0 ? room : 0);
        for (int64_t i = 0; i < cut; i++) {
            const char *b;
            size_t bl = 0;
            if (ld_tokenizer_token_bytes(c->tok, cids.v[i], &b, &bl) == LD_OK) drop += bl;
        }
        ld_free(ctx, cids.v);
        if (drop < 1) drop = 1;
        if (drop > clen) drop = clen;
        while (drop < clen && ((unsigned char)last[drop] & 0xc0) == 0x80) drop++;
        memmove(last, last + drop, clen - drop + 1);
        stat.truncated_bytes += (int64_t)drop;
    }
    stat.prompt_tokens = ids.n;
    stat.dropped_messages = (int64_t)from - (from > 0 && !strcmp(c->msgs[0].role, "system"));
    /* what the slot already holds */
    int64_t keep = 0;
    const int32_t *fresh;
    int64_t n_fresh;
    if (c->held.n && c->held_text.len < len && !memcmp(c->held_text.data, text, c->held_text.len)) {
        /* the conversation continues the held text: tokenize only what follows it */
        ids_vec rest = {0};
        st = encode(c, text + c->held_text.len, len - c->held_text.len, &rest);
        if (!st) st = ids_reserve(ctx, &c->held, c->held.n + rest.n);
        if (st) {
            ld_free(ctx, rest.v);
            goto out;
        }
        keep = c->held.n;
        memcpy(c->held.v + keep, rest.v, (size_t)rest.n * sizeof(int32_t));
        ld_free(ctx, rest.v);
        fresh = c->held.v + keep, n_fresh = rest.n;
        stat.prompt_tokens = keep + n_fresh;
    } else {
        if (ids.n == 0) { /* nothing to go on (an empty message, no template): the start token */
            int32_t start = ld_tokenizer_bos_id(c->tok) >= 0 ? ld_tokenizer_bos_id(c->tok) : ld_tokenizer_eos_id(c->tok);
            if ((st = ids_reserve(ctx, &ids, 1))) goto out;
            ids.v[ids.n++] = start >= 0 ? start : 0;
        }
        while (keep < c->held.n && keep < ids.n && c->held.v[keep] == ids.v[keep]) keep++;
        if (keep == ids.n) keep--; /* at least one token is evaluated: its logits start the reply */
        if ((st = ld_lm_session_truncate(c->s, c->slot, keep)) || (st = ids_reserve(ctx, &c->held, ids.n))) goto out;
        memcpy(c->held.v, ids.v, (size_t)ids.n * sizeof(int32_t));
        fresh = c->held.v + keep, n_fresh = ids.n - keep;
    }
    c->held.n = keep; /* what the slot holds now */
    stat.reused_tokens = keep, stat.evaluated_tokens = n_fresh;
    /* stop at EOS, the caller's stop ids and the template's end of turn */
    const char *eot = ld_chat_template_end_of_turn(c->t, c->eos);
    int32_t eot_id = eot && *eot ? ld_tokenizer_token_id(c->tok, eot) : -1;
    if ((st = ids_reserve(ctx, &stops, p->n_stop_ids + 2))) goto out;
    for (int i = 0; i < p->n_stop_ids; i++) stops.v[stops.n++] = p->stop_ids[i];
    if (eot_id >= 0) stops.v[stops.n++] = eot_id;
    if (ld_tokenizer_eos_id(c->tok) >= 0) stops.v[stops.n++] = ld_tokenizer_eos_id(c->tok);
    ld_generate_params gp = *p;
    gp.stop_ids = stops.v, gp.n_stop_ids = (int)stops.n;
    c->gen.n = 0, c->on_token = on_token, c->user = user;
    int64_t n_gen = 0;
    /* the held text is invalid until the slot is known again */
    c->held_text.len = 0;
    st = ld_lm_generate_continue(c->s, c->slot, c->held.v, keep, fresh, n_fresh, &gp, collect, c, &n_gen);
    c->on_token = NULL;
    if (st) {
        ld_lm_session_clear(c->s, c->slot);
        c->held.n = 0;
        goto out;
    }
    stat.generated_tokens = c->gen.n;
    /* the slot holds the prompt and the reply but (maybe) its last token */
    int64_t prompt_n = keep + n_fresh, held_n = ld_lm_session_len(c->s, c->slot);
    /* a template that trims the reply will not show its trailing whitespace next turn: the
     * slot forgets those tokens so that the held text stays a prefix */
    while (ld_chat_template_trims(c->t) && held_n > prompt_n && all_space(c->tok, c->gen.v[held_n - prompt_n - 1])) held_n--;
    if ((st = ld_lm_session_truncate(c->s, c->slot, held_n))) goto out;
    if ((st = ids_reserve(ctx, &c->held, held_n))) goto out;
    memcpy(c->held.v + prompt_n, c->gen.v, (size_t)(held_n - prompt_n) * sizeof(int32_t));
    c->held.n = held_n;
    /* held_text: the prompt and the text of the held reply tokens */
    size_t rlen = 0;
    if ((st = decode(c, c->gen.v, held_n - prompt_n, &reply, &rlen))) goto out;
    ld_buf_put(&c->held_text, text, len);
    ld_buf_put(&c->held_text, reply, rlen);
    ld_free(ctx, reply), reply = NULL;
    if (c->held_text.failed) {
        st = ld_error(ctx, LD_ERR_NOMEM, "chat: out of memory");
        goto out;
    }
    /* the reply's text, cut at an end of turn produced as text */
    if ((st = decode(c, c->gen.v, c->gen.n, &reply, &rlen))) goto out;
    if (eot && *eot) {
        char *cut = memmem(reply, rlen, eot, strlen(eot));
        if (cut) rlen = (size_t)(cut - reply);
    }
    st = add_message(c, "assistant", reply, rlen);
out:
    ld_free(ctx, text), ld_free(ctx, reply), ld_free(ctx, ids.v), ld_free(ctx, stops.v);
    if (stats) *stats = stat;
    return st;
}

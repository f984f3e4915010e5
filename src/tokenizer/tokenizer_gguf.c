/* tokenizer/tokenizer_gguf.c — a byte-level BPE tokenizer as GGUF metadata (the
 * tokenizer.ggml.* keys llama.cpp reads), in both directions.
 *
 * llama.cpp's "gpt2" tokenizer model is byte-level BPE: tokenizer.ggml.tokens holds every
 * token in its byte-level spelling (as in tokenizer.json's vocab), token_type marks special
 * tokens (CONTROL) and padding (UNUSED), merges are "a b" strings in rank order, and
 * tokenizer.ggml.pre names the pre-tokenization regex. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/io.h"
#include "tokenizer/tok_internal.h"

/* llama.cpp's token types (llama_token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

/* tokenizer.ggml.pre names of our regexes; the extra spellings are what llama.cpp's
 * converter writes for models that use the same regex. */
static const struct {
    const char *name;
    ld_pretokenizer kind;
} pre_names[] = {
    {"gpt-2", LD_PRETOK_GPT2},      {"default", LD_PRETOK_GPT2}, {"llama-bpe", LD_PRETOK_LLAMA3},
    {"llama3", LD_PRETOK_LLAMA3},   {"smaug-bpe", LD_PRETOK_LLAMA3}, {"qwen2", LD_PRETOK_QWEN2},
};

static const char *pre_name_of(ld_pretokenizer kind) {
    for (size_t i = 0; i < sizeof pre_names / sizeof pre_names[0]; i++)
        if (pre_names[i].kind == kind) return pre_names[i].name;
    return "gpt-2";
}

/* The byte-level spelling of token id (specials: their text), NUL-terminated, ld_alloc'd. */
static char *spell(const ld_tokenizer *t, int64_t id) {
    size_t n = t->tok_len[id];
    char *s = ld_alloc(t->ctx, 2 * n + 1);
    if (!s) return NULL;
    if (t->is_special[id]) memcpy(s, t->tok_bytes[id], n);
    else n = ld_bytes_to_bytelevel((const unsigned char *)t->tok_bytes[id], n, s);
    s[n] = 0;
    return s;
}

ld_status ld_tokenizer_to_gguf(const ld_tokenizer *t, ld_gguf_writer *w, int64_t n_vocab) {
    if (!t || !w) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    if (t->kind != LD_TOK_BPE)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "GGUF export: only byte-level BPE tokenizers have a GGUF form");
    if (n_vocab <= 0) n_vocab = t->n_vocab;
    if (n_vocab < t->n_vocab)
        return ld_error(ctx, LD_ERR_SHAPE, "GGUF export: the tokenizer has %lld tokens but the model's vocabulary only %lld",
                        (long long)t->n_vocab, (long long)n_vocab);
    ld_status st = LD_OK;
    char **tokens = ld_calloc(ctx, (size_t)n_vocab, sizeof *tokens);
    int32_t *types = ld_alloc(ctx, (size_t)n_vocab * sizeof *types);
    char **merges = ld_calloc(ctx, (size_t)t->n_merges + 1, sizeof *merges);
    if (!tokens || !types || !merges) goto oom;
    /* the model's vocabulary may be padded past the tokenizer's (e.g. 50257 -> 50304) */
    for (int64_t id = 0; id < n_vocab; id++) {
        if (id < t->n_vocab) {
            if (!(tokens[id] = spell(t, id))) goto oom;
            types[id] = t->is_special[id] ? TT_CONTROL : TT_NORMAL;
        } else {
            if (!(tokens[id] = ld_alloc(ctx, 32))) goto oom;
            snprintf(tokens[id], 32, "[PAD%lld]", (long long)id);
            types[id] = TT_UNUSED;
        }
    }
    for (int64_t r = 0; r < t->n_merges; r++) {
        int32_t a = t->merge_list[r][0], b = t->merge_list[r][1];
        size_t la = strlen(tokens[a]), lb = strlen(tokens[b]);
        if (!(merges[r] = ld_alloc(ctx, la + lb + 2))) goto oom;
        memcpy(merges[r], tokens[a], la);
        merges[r][la] = ' ';
        memcpy(merges[r] + la + 1, tokens[b], lb + 1);
    }
    int32_t eos = t->eos >= 0 ? t->eos : t->bos, bos = t->bos >= 0 ? t->bos : eos;
    if ((st = ld_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2")) ||
        (st = ld_gguf_writer_set_str(w, "tokenizer.ggml.pre", pre_name_of(t->pretok.kind))) ||
        (st = ld_gguf_writer_set_strs(w, "tokenizer.ggml.tokens", (const char *const *)tokens, (size_t)n_vocab)) ||
        (st = ld_gguf_writer_set_array(w, "tokenizer.ggml.token_type", LD_GGUF_INT32, types, (size_t)n_vocab)) ||
        (st = ld_gguf_writer_set_strs(w, "tokenizer.ggml.merges", (const char *const *)merges, (size_t)t->n_merges)))
        goto done;
    /* liandan's models do not prepend BOS to prompts (generation starts from the text) */
    if ((bos >= 0 && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos))) ||
        (eos >= 0 && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos))) ||
        (t->pad >= 0 && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad))) ||
        (st = ld_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false)) ||
        (st = ld_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false)))
        goto done;
    goto done;
oom:
    st = ld_ctx_status(ctx);
    if (!st) st = LD_ERR_NOMEM;
done:
    for (int64_t i = 0; tokens && i < n_vocab; i++) ld_free(ctx, tokens[i]);
    for (int64_t i = 0; merges && i < t->n_merges; i++) ld_free(ctx, merges[i]);
    ld_free(ctx, tokens), ld_free(ctx, types), ld_free(ctx, merges);
    return st;
}

/* ---- reading ------------------------------------------------------------------------ */

ld_status ld_tokenizer_from_gguf(ld_ctx *ctx, const ld_gguf *g, const char *name, ld_tokenizer **out) {
    if (!g || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tokenizer_from_gguf: NULL argument");
    *out = NULL;
    if (!name) name = "GGUF";
    const char *model, *pre = NULL;
    ld_status st = ld_gguf_get_str(ctx, g, "tokenizer.ggml.model", &model);
    if (st) return ld_error_wrap(ctx, st, "%s: no tokenizer: ", name);
    if (strcmp(model, "gpt2"))
        return ld_error(ctx, LD_ERR_UNSUPPORTED,
                        "%s: tokenizer.ggml.model '%s' is not supported (only 'gpt2', byte-level BPE)", name, model);
    ld_pretokenizer kind = LD_PRETOK_GPT2;
    if (ld_gguf_find(g, "tokenizer.ggml.pre")) {
        if ((st = ld_gguf_get_str(ctx, g, "tokenizer.ggml.pre", &pre))) return st;
        size_t i = 0, n = sizeof pre_names / sizeof pre_names[0];
        while (i < n && strcmp(pre_names[i].name, pre)) i++;
        if (i == n)
            return ld_error(ctx, LD_ERR_UNSUPPORTED,
                            "%s: tokenizer.ggml.pre '%s' is not supported (gpt-2, llama-bpe, qwen2)", name, pre);
        kind = pre_names[i].kind;
    }
    const ld_gguf_str *tokens, *merges = NULL;
    size_t n, n_merges = 0, n_types = 0;
    int32_t *types = NULL;
    if ((st = ld_gguf_get_strs(ctx, g, "tokenizer.ggml.tokens", &tokens, &n))) return st;
    if (n == 0 || n > (1u << 24))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %zu entries (1..16777216)", name, n);
    if (ld_gguf_find(g, "tokenizer.ggml.merges") &&
        (st = ld_gguf_get_strs(ctx, g, "tokenizer.ggml.merges", &merges, &n_merges)))
        return st;
    if (ld_gguf_find(g, "tokenizer.ggml.token_type")) {
        if ((st = ld_gguf_get_i32s(ctx, g, "tokenizer.ggml.token_type", &types, &n_types))) return st;
        if (n_types != n) {
            ld_free(ctx, types);
            return ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %zu entries for %zu tokens", name,
                            n_types, n);
        }
    }
    ld_tokenizer *t = ld_tokenizer_alloc(ctx, (int64_t)n);
    ld_strmap spell_ids = {0};
    if (!t) goto oom;
    t->kind = LD_TOK_BPE;
    int n_special = 0;
    for (size_t i = 0; i < n; i++) n_special += types && types[i] != TT_NORMAL;
    if (!(t->specials = ld_calloc(ctx, (size_t)n_special + 1, sizeof *t->specials)) ||
        !(t->merge_list = ld_calloc(ctx, n_merges + 1, sizeof *t->merge_list)))
        goto oom;
    if ((st = ld_strmap_init(ctx, &spell_ids, n))) goto fail;
    for (size_t id = 0; id < n; id++) {
        const ld_gguf_str *s = &tokens[id];
        if (s->len == 0 || s->len > 4096 || memchr(s->s, 0, s->len)) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%zu] is empty, too long or holds a NUL byte", name, id);
            goto fail;
        }
        if (types && types[id] != TT_NORMAL) { /* control, user-defined, unused: matched as text */
            if (!(t->tok_bytes[id] = ld_strdup(ctx, s->s))) goto oom;
            t->tok_len[id] = (uint32_t)s->len;
            t->is_special[id] = true;
            ld_special *sp = &t->specials[t->n_specials++];
            if (!(sp->text = ld_strdup(ctx, s->s))) goto oom;
            sp->len = s->len, sp->id = (int32_t)id;
        } else {
            unsigned char *raw = ld_alloc(ctx, s->len + 1);
            if (!raw) goto oom;
            long rl = ld_bytelevel_to_bytes(s->s, s->len, raw);
            if (rl <= 0) {
                ld_free(ctx, raw);
                st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%zu] '%.40s' is not a byte-level token", name,
                              id, s->s);
                goto fail;
            }
            t->tok_bytes[id] = (char *)raw, t->tok_len[id] = (uint32_t)rl;
        }
        int64_t *v;
        if ((st = ld_strmap_put(&spell_ids, s->s, s->len, (int64_t)id, &v))) goto fail;
    }
    for (size_t r = 0; r < n_merges; r++) {
        const char *m = merges[r].s, *sp = memchr(m, ' ', merges[r].len);
        int64_t *ia = sp ? ld_strmap_get(&spell_ids, m, (size_t)(sp - m)) : NULL;
        int64_t *ib = sp ? ld_strmap_get(&spell_ids, sp + 1, merges[r].len - (size_t)(sp - m) - 1) : NULL;
        if (!ia || !ib) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.merges[%zu] '%.60s' is not two known tokens", name, r, m);
            goto fail;
        }
        t->merge_list[r][0] = (int32_t)*ia, t->merge_list[r][1] = (int32_t)*ib;
    }
    t->n_merges = (int64_t)n_merges;
    if ((st = ld_pretok_init(ctx, &t->pretok, kind)) || (st = ld_tokenizer_finish(t))) {
        ld_error_wrap(ctx, st, "%s: ", name);
        goto fail;
    }
    /* the file's special ids win over the names ld_tokenizer_finish guessed */
    const char *keys[] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id"};
    int32_t *slots[] = {&t->bos, &t->eos, &t->pad};
    for (int k = 0; k < 3; k++) {
        int64_t v;
        if (!ld_gguf_find(g, keys[k])) continue;
        if ((st = ld_gguf_get_int(ctx, g, keys[k], 0, (int64_t)n - 1, &v))) goto fail;
        *slots[k] = (int32_t)v;
    }
    ld_strmap_free(&spell_ids);
    ld_free(ctx, types);
    *out = t;
    return LD_OK;
oom:
    st = ld_ctx_status(ctx);
    if (!st) st = LD_ERR_NOMEM;
fail:
    ld_strmap_free(&spell_ids);
    ld_free(ctx, types);
    ld_tokenizer_free(t);
    return st;
}

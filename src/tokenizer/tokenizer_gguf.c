/* tokenizer/tokenizer_gguf.c — a tokenizer as GGUF metadata (the tokenizer.ggml.* keys
 * llama.cpp reads), in both directions, for llama.cpp's three tokenizer models:
 *   "gpt2"  byte-level BPE: tokens in their byte-level spelling, merges "a b" in rank order,
 *           tokenizer.ggml.pre naming the pre-tokenizer regexes (a row of pretokenize.c);
 *   "llama" SentencePiece BPE: tokens with ▁ for spaces, scores (the higher, the earlier a
 *           token is merged), <0xXX> byte tokens (type BYTE), a space prefix;
 *   "bert"  WordPiece: a word's first piece written "▁piece", continuations without "##".
 * token_type marks control/user-defined/unknown tokens (matched as text: specials), unused
 * padding and bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "liandan/io.h"
#include "tokenizer/tok_internal.h"

#define META "\xe2\x96\x81" /* ▁ */

/* llama.cpp's token types (llama_token_type). */
enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

typedef enum gguf_model { GM_GPT2, GM_LLAMA, GM_BERT } gguf_model;

/* The row of the pre-tokenizer table the tokenizer's split steps are, or NULL. */
static const ld_pre_row *pre_row_of(const ld_tokenizer *t) {
    if (t->pre_row) return t->pre_row;
    size_t n;
    const ld_pre_row *rows = ld_pre_rows(&n);
    for (size_t i = 0; i < n; i++) {
        int k = 0;
        while (rows[i].regexes[k] && k < t->n_split && t->split[k].kind == LD_SPLIT_REGEX &&
               !strcmp(rows[i].regexes[k], t->split[k].pattern))
            k++;
        if (!rows[i].regexes[k] && k == t->n_split && rows[i].ignore_merges == t->ignore_merges) return &rows[i];
    }
    return NULL;
}

/* The name llama.cpp's converter writes for a row: its first. */
static const char *first_name(const ld_pre_row *row, char out[64]) {
    size_t l = strcspn(row->names, "|");
    if (l > 63) l = 63;
    memcpy(out, row->names, l);
    out[l] = 0;
    return out;
}

/* The token as written in the file, NUL-terminated, ld_alloc'd. */
static char *spell(const ld_tokenizer *t, gguf_model m, int64_t id) {
    const char *p = t->tok_bytes[id];
    size_t n = t->tok_len[id], pl = t->wp_prefix ? strlen(t->wp_prefix) : 0;
    char *s = ld_alloc(t->ctx, 2 * n + 4);
    if (!s) return NULL;
    if (t->is_special[id]) memcpy(s, p, n);
    else if (m == GM_GPT2) n = ld_bytes_to_bytelevel((const unsigned char *)p, n, s);
    else if (m == GM_BERT && pl && n >= pl && !memcmp(p, t->wp_prefix, pl)) memcpy(s, p + pl, n - pl), n -= pl;
    else if (m == GM_BERT) memcpy(s, META, 3), memcpy(s + 3, p, n), n += 3;
    else memcpy(s, p, n);
    s[n] = 0;
    return s;
}

ld_status ld_tokenizer_to_gguf(const ld_tokenizer *t, ld_gguf_writer *w, int64_t n_vocab) {
    if (!t || !w) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    gguf_model m = t->kind == LD_TOK_WORDPIECE ? GM_BERT : t->byte_level ? GM_GPT2 : GM_LLAMA;
    if (t->kind == LD_TOK_CHAR) return ld_error(ctx, LD_ERR_UNSUPPORTED, "GGUF export: character vocabularies have no GGUF form");
    const ld_pre_row *row = m == GM_GPT2 ? pre_row_of(t) : NULL;
    if (m == GM_GPT2 && !row)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "GGUF export: the pre-tokenizer regexes ('%.60s'...) have no tokenizer.ggml.pre "
                        "name llama.cpp knows", t->n_split ? t->split[0].pattern : "none");
    if (m == GM_LLAMA && (!t->metaspace || t->n_split))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "GGUF export: a character-level BPE needs the SentencePiece form (▁ for spaces, "
                        "no pre-tokenizer splits) to be written as tokenizer.ggml.model 'llama'");
    if (n_vocab <= 0) n_vocab = t->n_vocab;
    if (n_vocab < t->n_vocab)
        return ld_error(ctx, LD_ERR_SHAPE, "GGUF export: the tokenizer has %lld tokens but the model's vocabulary only %lld",
                        (long long)t->n_vocab, (long long)n_vocab);
    ld_status st = LD_OK;
    char **tokens = ld_calloc(ctx, (size_t)n_vocab, sizeof *tokens);
    int32_t *types = ld_alloc(ctx, (size_t)n_vocab * sizeof *types);
    float *scores = m == GM_LLAMA ? ld_alloc(ctx, (size_t)n_vocab * sizeof *scores) : NULL;
    char **merges = ld_calloc(ctx, (size_t)t->n_merges + 1, sizeof *merges);
    if (!tokens || !types || !merges || (m == GM_LLAMA && !scores)) goto oom;
    /* the model's vocabulary may be padded past the tokenizer's (e.g. 50257 -> 50304) */
    for (int64_t id = 0; id < n_vocab; id++) {
        if (id < t->n_vocab) {
            if (!(tokens[id] = spell(t, m, id))) goto oom;
            bool byte = t->byte_fallback && t->tok_len[id] == 6 && !memcmp(t->tok_bytes[id], "<0x", 3) && t->tok_bytes[id][5] == '>';
            types[id] = id == t->unk && m != GM_GPT2 ? TT_UNKNOWN : t->is_special[id] ? TT_CONTROL : byte ? TT_BYTE : TT_NORMAL;
            if (scores) scores[id] = t->scores ? t->scores[id] : 0;
        } else {
            if (!(tokens[id] = ld_alloc(ctx, 32))) goto oom;
            snprintf(tokens[id], 32, "[PAD%lld]", (long long)id);
            types[id] = TT_UNUSED;
            if (scores) scores[id] = -1e9f;
        }
    }
    if (scores && !t->scores) {
        /* scores that reproduce the merge order: a merged token scores minus its first rank,
         * other multi-character tokens come last */
        for (int64_t id = 0; id < t->n_vocab; id++)
            if (types[id] == TT_NORMAL && t->tok_len[id] > 1) scores[id] = -1e8f;
        for (int64_t r = t->n_merges - 1; r >= 0; r--) {
            int64_t rank = t->merge_rank ? t->merge_rank[r] : r;
            int64_t v = ld_pairmap_get(&t->merges, t->merge_list[r][0], t->merge_list[r][1]);
            if (v >= 0) scores[v & 0xffffffff] = -(float)rank;
        }
    }
    if (m == GM_GPT2)
        for (int64_t r = 0; r < t->n_merges; r++) {
            int32_t a = t->merge_list[r][0], b = t->merge_list[r][1];
            size_t la = strlen(tokens[a]), lb = strlen(tokens[b]);
            if (!(merges[r] = ld_alloc(ctx, la + lb + 2))) goto oom;
            memcpy(merges[r], tokens[a], la);
            merges[r][la] = ' ';
            memcpy(merges[r] + la + 1, tokens[b], lb + 1);
        }
    static const char *const model_names[] = {"gpt2", "llama", "bert"};
    char pre_name[64];
    if ((st = ld_gguf_writer_set_str(w, "tokenizer.ggml.model", model_names[m])) ||
        (row && (st = ld_gguf_writer_set_str(w, "tokenizer.ggml.pre", first_name(row, pre_name)))) ||
        (m == GM_BERT && (st = ld_gguf_writer_set_str(w, "tokenizer.ggml.pre", "default"))) ||
        (st = ld_gguf_writer_set_strs(w, "tokenizer.ggml.tokens", (const char *const *)tokens, (size_t)n_vocab)) ||
        (st = ld_gguf_writer_set_array(w, "tokenizer.ggml.token_type", LD_GGUF_INT32, types, (size_t)n_vocab)) ||
        (scores && (st = ld_gguf_writer_set_array(w, "tokenizer.ggml.scores", LD_GGUF_FLOAT32, scores, (size_t)n_vocab))) ||
        (m == GM_GPT2 && (st = ld_gguf_writer_set_strs(w, "tokenizer.ggml.merges", (const char *const *)merges, (size_t)t->n_merges))))
        goto done;
    /* special ids; add_bos/add_eos say what the post-processing adds around a text */
    int32_t bos = t->bos, eos = t->eos;
    bool add_bos = false, add_eos = false;
    if (m == GM_BERT) bos = t->cls >= 0 ? t->cls : t->bos, eos = t->sep >= 0 ? t->sep : t->eos;
    for (int k = 0; k < t->n_post_pre; k++)
        if (t->post_pre[k] >= 0) bos = t->post_pre[k], add_bos = true;
    for (int k = 0; k < t->n_post_suf; k++)
        if (t->post_suf[k] >= 0) eos = t->post_suf[k], add_eos = true;
    if (m == GM_GPT2 && eos < 0) eos = bos;
    if (m == GM_GPT2 && bos < 0) bos = eos;
    if ((bos >= 0 && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos))) ||
        (eos >= 0 && m != GM_BERT && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos))) ||
        (eos >= 0 && m == GM_BERT && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.seperator_token_id", (uint32_t)eos))) ||
        (t->unk >= 0 && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)t->unk))) ||
        (t->pad >= 0 && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad))) ||
        (t->mask >= 0 && m == GM_BERT && (st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.mask_token_id", (uint32_t)t->mask))) ||
        (st = ld_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos)) ||
        (m == GM_BERT && (st = ld_gguf_writer_set_bool(w, "tokenizer.ggml.add_sep_token", add_eos))) ||
        (st = ld_gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", m == GM_BERT ? false : add_eos)) ||
        (m == GM_LLAMA && (st = ld_gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", t->prepend_scheme >= 0))))
        goto done;
    goto done;
oom:
    st = ld_ctx_status(ctx);
    if (!st) st = LD_ERR_NOMEM;
done:
    for (int64_t i = 0; tokens && i < n_vocab; i++) ld_free(ctx, tokens[i]);
    for (int64_t i = 0; merges && i < t->n_merges; i++) ld_free(ctx, merges[i]);
    ld_free(ctx, tokens), ld_free(ctx, types), ld_free(ctx, merges), ld_free(ctx, scores);
    return st;
}

/* ---- reading ------------------------------------------------------------------------ */
static ld_status get_flag(ld_ctx *ctx, const ld_gguf *g, const char *key, bool *v) {
    return ld_gguf_find(g, key) ? ld_gguf_get_bool(ctx, g, key, v) : LD_OK;
}

ld_status ld_tokenizer_from_gguf(ld_ctx *ctx, const ld_gguf *g, const char *name, ld_tokenizer **out) {
    if (!g || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tokenizer_from_gguf: NULL argument");
    *out = NULL;
    if (!name) name = "GGUF";
    const char *model, *pre = NULL;
    ld_status st = ld_gguf_get_str(ctx, g, "tokenizer.ggml.model", &model);
    if (st) return ld_error_wrap(ctx, st, "%s: no tokenizer: ", name);
    gguf_model m = !strcmp(model, "gpt2") ? GM_GPT2 : !strcmp(model, "llama") ? GM_LLAMA : !strcmp(model, "bert") ? GM_BERT : 3;
    if (m == 3)
        return ld_error(ctx, LD_ERR_UNSUPPORTED,
                        "%s: tokenizer.ggml.model '%s' is not supported (gpt2: byte-level BPE, llama: SentencePiece BPE, "
                        "bert: WordPiece)", name, model);
    const ld_pre_row *row = NULL;
    if (m == GM_GPT2) {
        row = ld_pre_row_by_name("gpt-2");
        if (ld_gguf_find(g, "tokenizer.ggml.pre")) {
            if ((st = ld_gguf_get_str(ctx, g, "tokenizer.ggml.pre", &pre))) return st;
            if (!(row = ld_pre_row_by_name(pre)))
                return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%s' is not supported (see docs/formats/tokenizer-json.md "
                                "for the list)", name, pre);
        }
    }
    const ld_gguf_str *tokens, *merges = NULL;
    size_t n, n_merges = 0, n_types = 0, n_scores = 0;
    int32_t *types = NULL;
    float *scores = NULL;
    if ((st = ld_gguf_get_strs(ctx, g, "tokenizer.ggml.tokens", &tokens, &n))) return st;
    if (n == 0 || n > (1u << 24))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.tokens has %zu entries (1..16777216)", name, n);
    if (m == GM_GPT2 && ld_gguf_find(g, "tokenizer.ggml.merges") &&
        (st = ld_gguf_get_strs(ctx, g, "tokenizer.ggml.merges", &merges, &n_merges)))
        return st;
    ld_tokenizer *t = NULL;
    ld_strmap spell_ids = {0};
    if (ld_gguf_find(g, "tokenizer.ggml.token_type")) {
        if ((st = ld_gguf_get_i32s(ctx, g, "tokenizer.ggml.token_type", &types, &n_types))) goto fail;
        if (n_types != n) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.token_type has %zu entries for %zu tokens", name, n_types, n);
            goto fail;
        }
    }
    if (m == GM_LLAMA) {
        if (!ld_gguf_find(g, "tokenizer.ggml.scores")) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: a 'llama' tokenizer needs tokenizer.ggml.scores", name);
            goto fail;
        }
        if ((st = ld_gguf_get_f32s(ctx, g, "tokenizer.ggml.scores", &scores, &n_scores))) goto fail;
        if (n_scores != n) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.scores has %zu entries for %zu tokens", name, n_scores, n);
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            if (scores[i] != scores[i]) {
                st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.scores[%zu] is NaN", name, i);
                goto fail;
            }
    }
    if (!(t = ld_tokenizer_alloc(ctx, (int64_t)n))) goto oom;
    t->kind = m == GM_BERT ? LD_TOK_WORDPIECE : LD_TOK_BPE;
    t->byte_level = m == GM_GPT2;
    t->pre_row = row;
    t->ignore_merges = row && row->ignore_merges;
    t->scores = scores, scores = NULL;
    t->tok_type = types, types = NULL;
    bool add_bos = m != GM_GPT2, add_eos = false, add_sep = m == GM_BERT, prefix = m == GM_LLAMA;
    if ((st = get_flag(ctx, g, "tokenizer.ggml.add_bos_token", &add_bos)) ||
        (st = get_flag(ctx, g, "tokenizer.ggml.add_eos_token", &add_eos)) ||
        (st = get_flag(ctx, g, "tokenizer.ggml.add_sep_token", &add_sep)) ||
        (st = get_flag(ctx, g, "tokenizer.ggml.add_space_prefix", &prefix)))
        goto fail;
    if (m == GM_BERT && !(t->wp_prefix = ld_strdup(ctx, "##"))) goto oom;
    if ((st = ld_strmap_init(ctx, &spell_ids, n))) goto fail;
    char buf[4200];
    for (size_t id = 0; id < n; id++) {
        const ld_gguf_str *s = &tokens[id];
        int32_t ty = t->tok_type ? t->tok_type[id] : TT_NORMAL;
        if (s->len == 0 || s->len > 4096 || memchr(s->s, 0, s->len)) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%zu] is empty, too long or holds a NUL byte", name, id);
            goto fail;
        }
        if (ty < TT_NORMAL || ty > TT_BYTE) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.token_type[%zu] = %d is not a llama.cpp token type", name, id, ty);
            goto fail;
        }
        bool special = ty == TT_CONTROL || ty == TT_USER_DEFINED || ty == TT_UNKNOWN || (m == GM_GPT2 && ty == TT_UNUSED);
        if (ty == TT_UNKNOWN && t->unk < 0) t->unk = (int32_t)id;
        if (special) {
            st = ld_tokenizer_set_token(t, (int64_t)id, s->s, s->len, true);
        } else if (m == GM_GPT2) {
            unsigned char *raw = ld_alloc(ctx, s->len + 1);
            if (!raw) goto oom;
            long rl = ld_bytelevel_to_bytes(s->s, s->len, raw);
            if (rl <= 0) {
                ld_free(ctx, raw);
                st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.tokens[%zu] '%.40s' is not a byte-level token", name, id, s->s);
                goto fail;
            }
            st = ld_tokenizer_set_token(t, (int64_t)id, (const char *)raw, (size_t)rl, false);
            ld_free(ctx, raw);
        } else if (m == GM_BERT) { /* "▁word" starts a word, "ing" continues one: "##ing" */
            bool start = s->len > 3 && !memcmp(s->s, META, 3);
            size_t l = start ? s->len - 3 : s->len + 2;
            if (start) memcpy(buf, s->s + 3, l);
            else memcpy(buf, "##", 2), memcpy(buf + 2, s->s, s->len);
            st = ld_tokenizer_set_token(t, (int64_t)id, buf, l, false);
        } else {
            if (ty == TT_BYTE) t->byte_fallback = true;
            st = ld_tokenizer_set_token(t, (int64_t)id, s->s, s->len, false);
        }
        if (st) {
            ld_error_wrap(ctx, st, "%s: tokenizer.ggml.tokens[%zu]: ", name, id);
            goto fail;
        }
        int64_t *v;
        if (m == GM_GPT2 && (st = ld_strmap_put(&spell_ids, s->s, s->len, (int64_t)id, &v))) goto fail;
    }
    if (n_merges && !(t->merge_list = ld_calloc(ctx, n_merges + 1, sizeof *t->merge_list))) goto oom;
    for (size_t r = 0; r < n_merges; r++) {
        const char *mm = merges[r].s, *sp = memchr(mm, ' ', merges[r].len);
        int64_t *ia = sp ? ld_strmap_get(&spell_ids, mm, (size_t)(sp - mm)) : NULL;
        int64_t *ib = sp ? ld_strmap_get(&spell_ids, sp + 1, merges[r].len - (size_t)(sp - mm) - 1) : NULL;
        if (!ia || !ib) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: tokenizer.ggml.merges[%zu] '%.60s' is not two known tokens", name, r, mm);
            goto fail;
        }
        t->merge_list[r][0] = (int32_t)*ia, t->merge_list[r][1] = (int32_t)*ib;
    }
    t->n_merges = (int64_t)n_merges;
    /* the pipeline */
    if (m == GM_GPT2)
        for (int k = 0; !st && row->regexes[k]; k++) st = ld_tokenizer_add_split(t, LD_SPLIT_REGEX, row->regexes[k], 0);
    if (m == GM_LLAMA) {
        t->metaspace = true, t->legacy_prepend = true;
        if (prefix) {
            t->prepend_scheme = LD_PREPEND_ALWAYS, t->strip_first_space = true;
            st = ld_tokenizer_add_norm(t, LD_NORM_PREPEND, LD_PREPEND_ALWAYS, META, NULL);
        }
        if (!st) st = ld_tokenizer_add_norm(t, LD_NORM_REPLACE, 0, " ", META);
    }
    if (m == GM_BERT) {
        bool lower = true, strip;
        if (!(st = get_flag(ctx, g, "tokenizer.ggml.normalizer.lowercase", &lower))) {
            strip = lower;
            st = get_flag(ctx, g, "tokenizer.ggml.normalizer.strip_accents", &strip);
            unsigned f = LD_BERT_CLEAN | LD_BERT_CHINESE | (strip ? LD_BERT_STRIP_ACCENTS : 0) | (lower ? LD_BERT_LOWERCASE : 0);
            if (!st) st = ld_tokenizer_add_norm(t, LD_NORM_BERT, f, NULL, NULL);
        }
        if (!st) st = ld_tokenizer_add_split(t, LD_SPLIT_BERT, NULL, 0);
        t->strip_first_space = true;
    }
    if (st || (st = ld_tokenizer_finish(t))) {
        ld_error_wrap(ctx, st, "%s: ", name);
        goto fail;
    }
    /* the file's special ids win over the names ld_tokenizer_finish guessed */
    static const struct {
        const char *key;
        size_t slot;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(ld_tokenizer, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(ld_tokenizer, eos)},
        {"tokenizer.ggml.padding_token_id", offsetof(ld_tokenizer, pad)},
        {"tokenizer.ggml.unknown_token_id", offsetof(ld_tokenizer, unk)},
        {"tokenizer.ggml.seperator_token_id", offsetof(ld_tokenizer, sep)},
        {"tokenizer.ggml.cls_token_id", offsetof(ld_tokenizer, cls)},
        {"tokenizer.ggml.mask_token_id", offsetof(ld_tokenizer, mask)},
    };
    for (size_t k = 0; k < sizeof ids / sizeof ids[0]; k++) {
        int64_t v;
        if (!ld_gguf_find(g, ids[k].key)) continue;
        if ((st = ld_gguf_get_int(ctx, g, ids[k].key, 0, (int64_t)n - 1, &v))) goto fail;
        *(int32_t *)((char *)t + ids[k].slot) = (int32_t)v;
    }
    if (m == GM_BERT && t->bos >= 0) t->cls = t->bos;
    int32_t first = m == GM_BERT ? t->cls : t->bos, last = m == GM_BERT ? t->sep : t->eos;
    if (add_bos && first >= 0) t->post_pre[t->n_post_pre++] = first;
    if ((m == GM_BERT ? add_sep : add_eos) && last >= 0) t->post_suf[t->n_post_suf++] = last;
    ld_strmap_free(&spell_ids);
    *out = t;
    return LD_OK;
oom:
    st = ld_ctx_status(ctx);
    if (!st) st = LD_ERR_NOMEM;
fail:
    ld_strmap_free(&spell_ids);
    ld_free(ctx, types), ld_free(ctx, scores);
    ld_tokenizer_free(t);
    return st;
}

ld_status ld_tokenizer_open(ld_ctx *ctx, const char *path, ld_tokenizer **out) {
    if (!path || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tokenizer_open: NULL argument");
    *out = NULL;
    char buf[4200];
    struct stat sb;
    if (!stat(path, &sb) && S_ISDIR(sb.st_mode)) { /* a model directory: its tokenizer.json */
        snprintf(buf, sizeof buf, "%s/tokenizer.json", path);
        return ld_tokenizer_load(ctx, buf, out);
    }
    FILE *f = fopen(path, "rb");
    if (!f) return ld_tokenizer_load(ctx, path, out); /* its error names the file */
    char magic[4] = {0};
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && !memcmp(magic, "GGUF", 4)) {
        ld_gguf *g = NULL;
        ld_status st = ld_gguf_open(ctx, path, &g);
        if (st) return st;
        st = ld_tokenizer_from_gguf(ctx, g, path, out);
        ld_gguf_close(g);
        return st;
    }
    return ld_tokenizer_load(ctx, path, out);
}

ld_status ld_tokenizer_save_gguf(const ld_tokenizer *t, const char *path) {
    if (!t || !path) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    ld_gguf_writer *w = NULL;
    ld_status st = ld_gguf_writer_new(ctx, &w);
    if (st) return st;
    /* a vocab-only file still names an architecture and its sizes, as llama.cpp's own
     * ggml-vocab-*.gguf files do; tiny placeholder sizes (there are no tensors) */
    const char *arch = t->kind == LD_TOK_WORDPIECE ? "bert" : "llama";
    char key[64];
#define ARCH_U32(k, v) (snprintf(key, sizeof key, "%s." k, arch), ld_gguf_writer_set_u32(w, key, (v)))
#define ARCH_F32(k, v) (snprintf(key, sizeof key, "%s." k, arch), ld_gguf_writer_set_f32(w, key, (v)))
    if (!(st = ld_gguf_writer_set_str(w, "general.architecture", arch)) &&
        !(st = ld_gguf_writer_set_str(w, "general.name", "liandan tokenizer (vocab only)")) &&
        !(st = ARCH_U32("context_length", 512)) && !(st = ARCH_U32("embedding_length", 64)) &&
        !(st = ARCH_U32("block_count", 1)) && !(st = ARCH_U32("feed_forward_length", 128)) &&
        !(st = ARCH_U32("attention.head_count", 1)) && !(st = ARCH_U32("vocab_size", (uint32_t)t->n_vocab))) {
        if (t->kind == LD_TOK_WORDPIECE && !(st = ARCH_F32("attention.layer_norm_epsilon", 1e-12f)))
            st = ld_gguf_writer_set_u32(w, "tokenizer.ggml.token_type_count", 2);
        else if (!(st = ARCH_U32("attention.head_count_kv", 1)) && !(st = ARCH_U32("rope.dimension_count", 64)))
            st = ARCH_F32("attention.layer_norm_rms_epsilon", 1e-5f);
    }
#undef ARCH_U32
#undef ARCH_F32
    if (!st) st = ld_tokenizer_to_gguf(t, w, 0);
    if (!st) st = ld_gguf_writer_write(w, path);
    ld_gguf_writer_free(w);
    return st;
}

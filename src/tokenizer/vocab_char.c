/* tokenizer/vocab_char.c — character vocabularies: one token per Unicode character, "[UNK]"
 * for the rest. The amino-acid vocabulary of the protein model, and the single-character
 * entries of a WordPiece vocab.txt (Chinese BERT-style models are character-level). */
#include <stdio.h>
#include <string.h>

#include "liandan/io.h"
#include "tokenizer/tok_internal.h"

static const char *const amino_specials[] = {"[PAD]", "[MASK]", "[CLS]", "[SEP]", "[UNK]"};
/* the 20 standard amino acids, then B (D/N), Z (E/Q), X (any), U (selenocysteine), O (pyrrolysine) */
static const char amino_letters[] = "ACDEFGHIKLMNPQRSTVWYBZXUO";

/* Sets token id to text; special when it looks like [NAME] or <name>. */
static ld_status set_token(ld_tokenizer *t, int64_t id, const char *text, size_t len, bool special) {
    if (!(t->tok_bytes[id] = ld_alloc(t->ctx, len + 1))) return ld_ctx_status(t->ctx);
    memcpy(t->tok_bytes[id], text, len);
    t->tok_bytes[id][len] = 0;
    t->tok_len[id] = (uint32_t)len;
    if (special) {
        t->is_special[id] = true;
        ld_special *s = &t->specials[t->n_specials++];
        if (!(s->text = ld_strdup(t->ctx, t->tok_bytes[id]))) return ld_ctx_status(t->ctx);
        s->len = len, s->id = (int32_t)id;
    }
    return LD_OK;
}

/* ESM-2's 33-token alphabet (fair-esm / transformers EsmTokenizer), in id order. */
static const char *const esm_tokens[] = {"<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R",
                                         "T",     "I",     "D",     "P",     "K", "Q", "N", "F", "Y", "M", "H",
                                         "W",     "C",     "X",     "B",     "U", "Z", "O", ".", "-", "<null_1>",
                                         "<mask>"};

/* A character vocabulary from an id-ordered token list (special: "[NAME]" / "<name>"). */
static ld_status new_from_list(ld_ctx *ctx, const char *const *tokens, int64_t n, const char *bos, const char *eos,
                               ld_tokenizer **out) {
    *out = NULL;
    ld_tokenizer *t = ld_tokenizer_alloc(ctx, n);
    if (!t || !(t->specials = ld_calloc(ctx, (size_t)n, sizeof *t->specials))) {
        ld_tokenizer_free(t);
        return ld_ctx_status(ctx);
    }
    t->kind = LD_TOK_CHAR;
    ld_status st = LD_OK;
    for (int64_t i = 0; i < n && !st; i++) {
        size_t len = strlen(tokens[i]);
        st = set_token(t, i, tokens[i], len, len > 1);
    }
    if (!st) st = ld_tokenizer_finish(t);
    if (!st) t->bos = ld_tokenizer_token_id(t, bos), t->eos = ld_tokenizer_token_id(t, eos);
    if (st) {
        ld_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LD_OK;
}

ld_status ld_tokenizer_new_amino(ld_ctx *ctx, ld_tokenizer **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tokenizer_new_amino: NULL out");
    const char *tokens[5 + sizeof amino_letters];
    char letters[sizeof amino_letters][2];
    int64_t n = 0;
    for (int i = 0; i < 5; i++) tokens[n++] = amino_specials[i];
    for (size_t i = 0; amino_letters[i]; i++) letters[i][0] = amino_letters[i], letters[i][1] = 0, tokens[n++] = letters[i];
    return new_from_list(ctx, tokens, n, "[CLS]", "[SEP]", out);
}

ld_status ld_tokenizer_new_esm(ld_ctx *ctx, ld_tokenizer **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tokenizer_new_esm: NULL out");
    return new_from_list(ctx, esm_tokens, (int64_t)(sizeof esm_tokens / sizeof esm_tokens[0]), "<cls>", "<eos>", out);
}

static bool looks_special(const char *s, size_t len) {
    return len >= 3 && ((s[0] == '[' && s[len - 1] == ']') || (s[0] == '<' && s[len - 1] == '>'));
}

ld_status ld_tokenizer_load_vocab_txt(ld_ctx *ctx, const char *path, ld_tokenizer **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tokenizer_load_vocab_txt: NULL out");
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    ld_status st = ld_file_read(ctx, path, (size_t)64 << 20, &text, &len);
    if (st) return st;
    int64_t n = 0;
    for (size_t i = 0; i < len; i++) n += text[i] == '\n';
    if (len && text[len - 1] != '\n') n++;
    if (n == 0) {
        ld_free(ctx, text);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: the vocabulary is empty", path);
    }
    ld_tokenizer *t = ld_tokenizer_alloc(ctx, n);
    if (!t || !(t->specials = ld_calloc(ctx, (size_t)n, sizeof *t->specials))) {
        ld_free(ctx, text);
        ld_tokenizer_free(t);
        return ld_ctx_status(ctx);
    }
    t->kind = LD_TOK_CHAR;
    size_t pos = 0;
    for (int64_t id = 0; id < n && !st; id++) {
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        size_t l = end - pos;
        if (l && text[pos + l - 1] == '\r') l--;
        if (!l) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: empty token", path, (long long)id + 1);
            break;
        }
        /* a later duplicate would make decoding ambiguous */
        for (int64_t k = 0; k < id && !st; k++)
            if (t->tok_len[k] == l && !memcmp(t->tok_bytes[k], text + pos, l))
                st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: token '%.*s' already on line %lld", path, (long long)id + 1,
                              (int)l, text + pos, (long long)k + 1);
        if (!st) st = set_token(t, id, text + pos, l, looks_special(text + pos, l));
        pos = end + 1;
    }
    ld_free(ctx, text);
    if (!st) st = ld_tokenizer_finish(t);
    if (!st) {
        if (t->bos < 0) t->bos = ld_tokenizer_token_id(t, "[CLS]");
        if (t->bos < 0) t->bos = ld_tokenizer_token_id(t, "<cls>"); /* ESM's vocab.txt */
        if (t->eos < 0) t->eos = ld_tokenizer_token_id(t, "[SEP]");
    }
    if (st) {
        ld_tokenizer_free(t);
        return st;
    }
    *out = t;
    return LD_OK;
}

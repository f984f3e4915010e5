/* tokenizer/pretokenize.c — the pre-tokenization regexes of GPT-2, Llama-3 and Qwen2, run
 * with PCRE2 (JIT, UTF + Unicode properties) so letter / number / whitespace classes are the
 * Unicode ones the reference implementations use. Invalid UTF-8 bytes (which a Rust string
 * cannot hold) each become a pre-token of their own, so every byte string round-trips. */
#include <string.h>

#include "tokenizer/tok_internal.h"

static const char *const patterns[LD_PRETOK_COUNT] = {
    [LD_PRETOK_GPT2] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+",
    [LD_PRETOK_LLAMA3] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                         "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    [LD_PRETOK_QWEN2] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
                        "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
};

const char *ld_pretokenizer_regex(ld_pretokenizer p) {
    return (unsigned)p < LD_PRETOK_COUNT ? patterns[p] : NULL;
}

ld_status ld_pretok_init(ld_ctx *ctx, ld_pretok *p, ld_pretokenizer kind) {
    memset(p, 0, sizeof *p);
    if ((unsigned)kind >= LD_PRETOK_COUNT) return ld_error(ctx, LD_ERR_INVALID_ARG, "unknown pre-tokenizer %d", (int)kind);
    int err;
    PCRE2_SIZE off;
    p->code = pcre2_compile((PCRE2_SPTR)patterns[kind], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK,
                            &err, &off, NULL);
    if (!p->code) return ld_error(ctx, LD_ERR_INTERNAL, "pre-tokenizer regex does not compile (PCRE2 error %d)", err);
    pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    p->kind = kind;
    return LD_OK;
}

void ld_pretok_free(ld_pretok *p) {
    if (p->code) pcre2_code_free(p->code);
    p->code = NULL;
}

pcre2_match_data *ld_pretok_match_data(const ld_pretok *p) {
    return pcre2_match_data_create_from_pattern(p->code, NULL);
}

/* Length of the valid UTF-8 prefix of s[0..n). */
static size_t valid_utf8_prefix(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (!len || i + len > n) return i;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xc0) != 0x80) return i;
        uint32_t cp = len == 2 ? ((c & 0x1fu) << 6) | (s[i + 1] & 0x3fu)
                      : len == 3 ? ((c & 0x0fu) << 12) | ((s[i + 1] & 0x3fu) << 6) | (s[i + 2] & 0x3fu)
                                 : ((c & 0x07u) << 18) | ((s[i + 1] & 0x3fu) << 12) | ((s[i + 2] & 0x3fu) << 6) | (s[i + 3] & 0x3fu);
        if ((len == 2 && cp < 0x80) || (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            return i;
        i += len;
    }
    return n;
}

static void split_valid(const ld_pretok *p, pcre2_match_data *md, const char *text, size_t len, ld_pretok_fn fn,
                        void *user) {
    size_t pos = 0;
    while (pos < len) {
        int rc = pcre2_match(p->code, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) { /* no match: the rest is one piece (the patterns match everything, so rare) */
            fn(user, text + pos, len - pos);
            return;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[0] > pos) fn(user, text + pos, ov[0] - pos);
        if (ov[1] == ov[0]) { /* empty match: step one character */
            size_t step = 1;
            while (ov[0] + step < len && ((unsigned char)text[ov[0] + step] & 0xc0) == 0x80) step++;
            fn(user, text + ov[0], step);
            pos = ov[0] + step;
            continue;
        }
        fn(user, text + ov[0], ov[1] - ov[0]);
        pos = ov[1];
    }
}

void ld_pretok_split(const ld_pretok *p, pcre2_match_data *md, const char *text, size_t len, ld_pretok_fn fn,
                     void *user) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t ok = valid_utf8_prefix(s + i, len - i);
        if (ok) split_valid(p, md, text + i, ok, fn, user);
        i += ok;
        if (i < len) { /* one invalid byte */
            fn(user, text + i, 1);
            i++;
        }
    }
}

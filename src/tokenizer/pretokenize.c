/* tokenizer/pretokenize.c — pre-tokenization: the table of named regex rows llama.cpp knows
 * (tokenizer.ggml.pre), spelled as the models' tokenizer.json files spell them, and the
 * splitting steps (regex Split, Metaspace, BertPreTokenizer) that cut text into pieces. Regexes
 * run with PCRE2 (JIT, UTF + Unicode properties) so letter / number / whitespace classes are
 * the Unicode ones the reference implementations use. Invalid UTF-8 bytes (which a Rust string
 * cannot hold) each become a piece of their own, so every byte string round-trips. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

#define GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define LLAMA3                                                                                                       \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
    "\\s+(?!\\S)|\\s+"
#define QWEN2                                                                                                    \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|" \
    "\\s+(?!\\S)|\\s+"
#define GPT4O                                                                                                      \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|" \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|" \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TEKKEN                                                                                                   \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|[^\\r\\n\\p{L}\\p{N}]?" \
    "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|"  \
    "\\s+(?!\\S)|\\s+"
#define DS3_MAIN                                                                                                     \
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|" \
    "\\s*[\r\n]+|\\s+(?!\\S)|\\s+"
#define LATIN "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+"
#define BLOOM " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{964}\\x{6D4}\\x{60C})]+"

#define R(...) ((const char *const[]){__VA_ARGS__, NULL})
static const ld_pre_row rows[] = {
    {"gpt-2|mpt|olmo|jais|phi-2|jina-es|jina-de|jina-v2-es|jina-v2-de|gigachat|mellum|modern-bert|roberta-bpe|exaone4|"
     "trillion|granite-docling|jina-v1-en|jina-v2-code|a.x-4.0",
     R(GPT2), false, LD_PRETOK_GPT2},
    {"llama-bpe|llama3|llama-v3|falcon3|falcon-h1|pixtral|midm-2.0|lfm2|jina-v5-nano", R(LLAMA3), true, LD_PRETOK_LLAMA3},
    {"dbrx|smaug-bpe|chatglm-bpe|glm4", R(LLAMA3), false, LD_PRETOK_COUNT},
    {"qwen2|deepseek-r1-qwen|kormo|f2llmv2|megrez|stablelm2|hunyuan|solar-open|grok-2", R(QWEN2), false, LD_PRETOK_QWEN2},
    {"qwen35",
     R("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|"
       "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"),
     false, LD_PRETOK_COUNT},
    {"default",
     R("[\\p{P}\\$\\+<=>\\^~\\|]+", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
       "\\p{N}+", "[0-9][0-9][0-9]"),
     false, LD_PRETOK_COUNT},
    {"deepseek-llm", R("[\r\n]", LATIN, "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}+"), false,
     LD_PRETOK_COUNT},
    {"deepseek-coder", R("[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+", "\\p{N}"), false, LD_PRETOK_COUNT},
    {"deepseek-v3|hunyuan-dense|joyai-llm|hy_v4", R("\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+", DS3_MAIN), false, LD_PRETOK_COUNT},
    {"falcon",
     R("[\\p{P}\\$\\+<=>\\^~\\|`]+", "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
       "[0-9][0-9][0-9]"),
     false, LD_PRETOK_COUNT},
    {"starcoder|refact|command-r|smollm|codeshell|exaone|minerva-7b|mellum2", R("\\p{N}", GPT2), false, LD_PRETOK_COUNT},
    {"poro-chat|bloom|gpt3-finnish", R(BLOOM), false, LD_PRETOK_COUNT},
    {"viking", R(BLOOM, "\\p{N}"), false, LD_PRETOK_COUNT},
    {"tekken", R(TEKKEN), true, LD_PRETOK_COUNT},
    {"gpt-4o|llama4|kanana2|talkie|minimax-m2", R(GPT4O), false, LD_PRETOK_COUNT},
    {"seed-coder",
     R("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\r\n]+|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"),
     false, LD_PRETOK_COUNT},
    {"bailingmoe|bailingmoe2|llada-moe",
     R("'(?i:[sdmt]|ll|ve|re)|[^\\r\\n\\p{L}\\p{N}]?+\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]++[\\r\\n]*|\\s*[\\r\\n]|\\s+(?!\\S)|\\s+"),
     false, LD_PRETOK_COUNT},
    {"superbpe", R("\\p{N}+", "(?=(\\d{3})+(?!\\d))"), false, LD_PRETOK_COUNT},
    {"chameleon",
     R("<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )", "\\p{N}", "[\\p{P}!-/:-@\\[-`{-~]",
       "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"),
     false, LD_PRETOK_COUNT},
};

const ld_pre_row *ld_pre_rows(size_t *n) {
    *n = sizeof rows / sizeof rows[0];
    return rows;
}

const ld_pre_row *ld_pre_row_by_name(const char *name) {
    size_t ln = strlen(name);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        for (const char *p = rows[i].names; p;) {
            const char *bar = strchr(p, '|');
            size_t l = bar ? (size_t)(bar - p) : strlen(p);
            if (l == ln && !memcmp(p, name, l)) return &rows[i];
            p = bar ? bar + 1 : NULL;
        }
    return NULL;
}

const ld_pre_row *ld_pre_row_by_kind(ld_pretokenizer kind) {
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].kind == kind) return &rows[i];
    return NULL;
}

const char *ld_pretokenizer_regex(ld_pretokenizer p) {
    const ld_pre_row *r = ld_pre_row_by_kind(p);
    return r ? r->regexes[0] : NULL;
}

ld_status ld_split_op_init(ld_ctx *ctx, ld_split_op *op, ld_split_kind kind, const char *pattern, unsigned flags) {
    memset(op, 0, sizeof *op);
    op->kind = kind, op->flags = flags;
    if (kind > LD_SPLIT_REGEX_MATCHES) return LD_OK;
    if (!(op->pattern = ld_strdup(ctx, pattern))) return ld_ctx_status(ctx);
    int err;
    PCRE2_SIZE off;
    op->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                             PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK | ((flags & 1) ? PCRE2_LITERAL : 0), &err, &off, NULL);
    if (!op->code) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        ld_status st = ld_error(ctx, LD_ERR_FORMAT, "regex '%.80s' does not compile at offset %zu: %s", pattern, (size_t)off,
                                (const char *)msg);
        ld_free(ctx, op->pattern), op->pattern = NULL;
        return st;
    }
    pcre2_jit_compile(op->code, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    return LD_OK;
}

void ld_split_op_free(ld_ctx *ctx, ld_split_op *op) {
    if (op->code) pcre2_code_free(op->code);
    ld_free(ctx, op->pattern);
    memset(op, 0, sizeof *op);
}

/* Length of the valid UTF-8 prefix of s[0..n). */
static size_t valid_utf8_prefix(const unsigned char *s, size_t n) {
    size_t i = 0, l;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        if (ld_utf8_decode(s + i, n - i, &l) < 0) return i;
        i += l;
    }
    return n;
}

static void regex_valid(const ld_split_op *op, pcre2_match_data *md, const char *text, size_t len, ld_piece_fn fn,
                        void *user) {
    bool keep_gaps = op->kind != LD_SPLIT_REGEX_MATCHES, keep_matches = op->kind != LD_SPLIT_REGEX_REMOVED;
    size_t pos = 0, from = 0; /* from: start of the text not yet given out */
    while (pos < len) {
        int rc = pcre2_match(op->code, (PCRE2_SPTR)text, len, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* an empty match splits nothing: try from the next character */
            size_t step = 1;
            while (ov[0] + step < len && ((unsigned char)text[ov[0] + step] & 0xc0) == 0x80) step++;
            if (ov[0] > from && ov[0] < len) { /* a zero-width boundary (lookahead rows) */
                if (keep_gaps) fn(user, text + from, ov[0] - from);
                from = ov[0];
            }
            pos = ov[0] + step;
            continue;
        }
        if (ov[0] > from && keep_gaps) fn(user, text + from, ov[0] - from);
        if (keep_matches) fn(user, text + ov[0], ov[1] - ov[0]);
        from = pos = ov[1];
    }
    if (from < len && keep_gaps) fn(user, text + from, len - from);
}

static bool is_punct(int32_t c) {
    if (c < 0x80) return (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);
    utf8proc_category_t k = utf8proc_category(c);
    return k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO;
}

static bool is_space(int32_t c) {
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* BertPreTokenizer: whitespace separates pieces and is dropped; punctuation stands alone. */
static void bert_split(const char *text, size_t len, ld_piece_fn fn, void *user) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0, start = 0;
    while (i < len) {
        size_t l;
        int32_t c = ld_utf8_decode(s + i, len - i, &l);
        if (c >= 0 && (is_space(c) || is_punct(c))) {
            if (i > start) fn(user, text + start, i - start);
            if (!is_space(c)) fn(user, text + i, l);
            start = i + l;
        }
        i += l;
    }
    if (len > start) fn(user, text + start, len - start);
}

/* Metaspace with split: a new piece begins at every ▁ (U+2581). */
static void metaspace_split(const char *text, size_t len, ld_piece_fn fn, void *user) {
    size_t start = 0;
    for (size_t i = 1; i + 3 <= len; i++)
        if (!memcmp(text + i, "\xe2\x96\x81", 3)) {
            fn(user, text + start, i - start);
            start = i;
        }
    if (len > start) fn(user, text + start, len - start);
}

void ld_split_run(const ld_split_op *op, pcre2_match_data *md, const char *text, size_t len, ld_piece_fn fn, void *user) {
    if (op->kind == LD_SPLIT_BERT) return bert_split(text, len, fn, user);
    if (op->kind == LD_SPLIT_METASPACE) return metaspace_split(text, len, fn, user);
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        size_t ok = valid_utf8_prefix(s + i, len - i);
        if (ok) regex_valid(op, md, text + i, ok, fn, user);
        i += ok;
        if (i < len) { /* one invalid byte */
            fn(user, text + i, 1);
            i++;
        }
    }
}

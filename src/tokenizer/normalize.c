/* tokenizer/normalize.c — UTF-8 helpers and the normalizer steps of tokenizer.json
 * (NFC/NFD/NFKC/NFKD, Lowercase, StripAccents, BertNormalizer, Prepend, Replace) as Hugging
 * Face's tokenizers define them, with utf8proc for the Unicode tables. Bytes that are not
 * valid UTF-8 pass through every step unchanged. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"

int32_t ld_utf8_decode(const unsigned char *s, size_t n, size_t *len) {
    unsigned c = s[0];
    *len = 1;
    if (c < 0x80) return (int32_t)c;
    size_t l = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (!l || l > n) return -1;
    for (size_t k = 1; k < l; k++)
        if ((s[k] & 0xc0) != 0x80) return -1;
    uint32_t cp = l == 2 ? ((c & 0x1fu) << 6) | (s[1] & 0x3fu)
                  : l == 3 ? ((c & 0x0fu) << 12) | ((s[1] & 0x3fu) << 6) | (s[2] & 0x3fu)
                           : ((c & 0x07u) << 18) | ((s[1] & 0x3fu) << 12) | ((s[2] & 0x3fu) << 6) | (s[3] & 0x3fu);
    if ((l == 2 && cp < 0x80) || (l == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (l == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return -1;
    *len = l;
    return (int32_t)cp;
}

size_t ld_utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) return out[0] = (char)cp, 1;
    if (cp < 0x800) return out[0] = (char)(0xc0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3f)), 2;
    if (cp < 0x10000)
        return out[0] = (char)(0xe0 | (cp >> 12)), out[1] = (char)(0x80 | ((cp >> 6) & 0x3f)),
               out[2] = (char)(0x80 | (cp & 0x3f)), 3;
    out[0] = (char)(0xf0 | (cp >> 18)), out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f)), out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

bool ld_buf_reserve(ld_buf *b, size_t n) {
    if (b->len + n <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p, b->cap = cap;
    return true;
}

static bool put(ld_buf *b, const char *s, size_t n) {
    if (!ld_buf_reserve(b, n)) return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

static bool put_cp(ld_buf *b, uint32_t cp) {
    if (!ld_buf_reserve(b, 4)) return false;
    b->len += ld_utf8_encode(cp, b->p + b->len);
    return true;
}

/* Rust's char::is_whitespace (the White_Space property). */
static bool is_white(int32_t c) {
    return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Hugging Face's BertNormalizer notion of a control character: categories C* but tab, LF, CR. */
static bool is_control(int32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    utf8proc_category_t k = utf8proc_category(c);
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CN ||
           k == UTF8PROC_CATEGORY_CO || k == UTF8PROC_CATEGORY_CS;
}

/* The CJK ideograph blocks BERT surrounds with spaces (Hugging Face's ranges). */
static bool is_cjk(int32_t c) {
    return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x20000 && c <= 0x2a6df) ||
           (c >= 0x2a700 && c <= 0x2b73f) || (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
           (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

/* Rust's char::to_lowercase: the simple mapping, except U+0130 (İ -> i + combining dot). */
static bool put_lower(ld_buf *b, int32_t c) {
    if (c == 0x130) return put(b, "i\xcc\x87", 3);
    return put_cp(b, (uint32_t)utf8proc_tolower(c));
}

/* The canonical decomposition of c without its nonspacing marks, lowercased if asked. */
static bool put_stripped(ld_buf *b, int32_t c, bool lower) {
    utf8proc_int32_t d[32];
    int last = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char(c, d, 32, UTF8PROC_DECOMPOSE, &last);
    if (n < 0 || n > 32) d[0] = c, n = 1;
    for (utf8proc_ssize_t k = 0; k < n; k++) {
        if (utf8proc_category(d[k]) == UTF8PROC_CATEGORY_MN) continue;
        if (!(lower ? put_lower(b, d[k]) : put_cp(b, (uint32_t)d[k]))) return false;
    }
    return true;
}

static bool bert(unsigned flags, const char *in, size_t n, ld_buf *out) {
    const unsigned char *s = (const unsigned char *)in;
    bool lower = flags & LD_BERT_LOWERCASE, strip = flags & LD_BERT_STRIP_ACCENTS;
    for (size_t i = 0; i < n;) {
        size_t l;
        int32_t c = ld_utf8_decode(s + i, n - i, &l);
        bool ok = true;
        if (c < 0) ok = put(out, in + i, 1);
        else if ((flags & LD_BERT_CLEAN) && (c == 0 || c == 0xfffd || is_control(c))) ok = true;
        else if ((flags & LD_BERT_CLEAN) && is_white(c)) ok = put(out, " ", 1);
        else if ((flags & LD_BERT_CHINESE) && is_cjk(c)) ok = put(out, " ", 1) && put(out, in + i, l) && put(out, " ", 1);
        else if (c < 0x80) ok = put_cp(out, (uint32_t)(lower && c >= 'A' && c <= 'Z' ? c + 32 : c));
        else if (strip) ok = put_stripped(out, c, lower);
        else if (lower) ok = put_lower(out, c);
        else ok = put(out, in + i, l);
        if (!ok) return false;
        i += l;
    }
    return true;
}

/* Unicode normalization form of the valid stretches of in (utf8proc options). */
static bool unicode_form(int options, const char *in, size_t n, ld_buf *out) {
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0;
    while (i < n) {
        size_t start = i, l;
        bool ascii = true;
        while (i < n) {
            if (s[i] < 0x80) {
                i++;
                continue;
            }
            if (ld_utf8_decode(s + i, n - i, &l) < 0) break;
            ascii = false;
            i += l;
        }
        if (ascii) {
            if (!put(out, in + start, i - start)) return false;
        } else if (i > start) {
            utf8proc_uint8_t *res = NULL;
            utf8proc_ssize_t m = utf8proc_map(s + start, (utf8proc_ssize_t)(i - start), &res, (utf8proc_option_t)options);
            bool ok = m >= 0 && put(out, (const char *)res, (size_t)m);
            free(res);
            if (!ok) return false;
        }
        if (i < n) { /* an invalid byte */
            if (!put(out, in + i, 1)) return false;
            i++;
        }
    }
    return true;
}

static bool map_chars(const char *in, size_t n, ld_buf *out, bool strip, bool lower) {
    const unsigned char *s = (const unsigned char *)in;
    for (size_t i = 0; i < n;) {
        size_t l;
        int32_t c = ld_utf8_decode(s + i, n - i, &l);
        bool ok;
        if (c < 0) ok = put(out, in + i, 1);
        else if (c < 0x80) ok = put_cp(out, (uint32_t)(lower && c >= 'A' && c <= 'Z' ? c + 32 : c));
        else if (strip) ok = utf8proc_category(c) == UTF8PROC_CATEGORY_MN || (lower ? put_lower(out, c) : put(out, in + i, l));
        else ok = put_lower(out, c);
        if (!ok) return false;
        i += l;
    }
    return true;
}

ld_status ld_norm_run(const ld_norm_op *op, const char *in, size_t n, bool first, ld_buf *out) {
    out->len = 0;
    bool ok = true;
    switch (op->kind) {
    case LD_NORM_NFC: ok = unicode_form(UTF8PROC_STABLE | UTF8PROC_COMPOSE, in, n, out); break;
    case LD_NORM_NFD: ok = unicode_form(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, in, n, out); break;
    case LD_NORM_NFKC: ok = unicode_form(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, in, n, out); break;
    case LD_NORM_NFKD: ok = unicode_form(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, in, n, out); break;
    case LD_NORM_LOWERCASE: ok = map_chars(in, n, out, false, true); break;
    case LD_NORM_STRIP_ACCENTS: ok = map_chars(in, n, out, true, false); break;
    case LD_NORM_BERT: ok = bert(op->flags, in, n, out); break;
    case LD_NORM_PREPEND: {
        bool has = n >= op->la && !memcmp(in, op->a, op->la);
        bool add = n > 0 && (op->flags == LD_PREPEND_ALWAYS || (op->flags == LD_PREPEND_IF_ABSENT && !has) ||
                             (op->flags == LD_PREPEND_FIRST && first && !has));
        ok = (!add || put(out, op->a, op->la)) && put(out, in, n);
        break;
    }
    case LD_NORM_REPLACE:
        for (size_t i = 0; ok && i < n;) {
            if (op->la && i + op->la <= n && !memcmp(in + i, op->a, op->la)) {
                ok = put(out, op->b, op->lb);
                i += op->la;
            } else {
                size_t j = i + 1; /* copy up to the next possible match */
                while (j < n && (unsigned char)in[j] != (unsigned char)op->a[0]) j++;
                ok = put(out, in + i, j - i);
                i = j;
            }
        }
        break;
    default: return LD_ERR_INTERNAL;
    }
    return ok ? LD_OK : LD_ERR_NOMEM;
}

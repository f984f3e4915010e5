/* data/normalize.c — text normalisation for corpora: UTF-8 validation, Unicode NFKC (via
 * utf8proc), Traditional -> Simplified Chinese (via OpenCC, when found at build time) and
 * the whitespace policy (runs of Unicode whitespace -> one ASCII space, trimmed). */
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>
#if defined(LD_HAVE_OPENCC)
#include <opencc.h>
#endif

#include "data/data_internal.h"

struct ld_normalizer {
    ld_ctx *ctx;
    bool nfkc, simplified, collapse;
#if defined(LD_HAVE_OPENCC)
    opencc_t cc;
#endif
    char *buf[2]; /* ping-pong buffers for the stages */
    size_t cap[2];
};

bool ld_normalizer_has_opencc(void) {
#if defined(LD_HAVE_OPENCC)
    return true;
#else
    return false;
#endif
}

size_t ld_utf8_invalid_at(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s;
    size_t i = 0;
    while (i < len) {
        /* ASCII fast path, 8 bytes at a time */
        while (i + 8 <= len) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= len) break;
        uint8_t c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
        else return i;
        if (len - i < n) return i;
        for (size_t k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) return i;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += n;
    }
    return len;
}

ld_status ld_normalizer_new(ld_ctx *ctx, const ld_corpus_params *p, ld_normalizer **out) {
    *out = NULL;
#if !defined(LD_HAVE_OPENCC)
    if (p->to_simplified)
        return ld_error(ctx, LD_ERR_UNSUPPORTED,
                        "Traditional->Simplified conversion needs OpenCC, which was not found when liandan was built "
                        "(install libopencc-dev and rebuild)");
#endif
    ld_normalizer *n = ld_calloc(ctx, 1, sizeof *n);
    if (!n) return LD_ERR_NOMEM;
    n->ctx = ctx;
    n->nfkc = p->nfkc;
    n->simplified = p->to_simplified;
    n->collapse = p->collapse_whitespace;
#if defined(LD_HAVE_OPENCC)
    if (n->simplified) {
        n->cc = opencc_open("t2s.json");
        if (n->cc == (opencc_t)-1) {
            const char *e = opencc_error();
            ld_free(ctx, n);
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "OpenCC: cannot open t2s.json: %s", e ? e : "unknown error");
        }
    }
#endif
    *out = n;
    return LD_OK;
}

void ld_normalizer_free(ld_normalizer *n) {
    if (!n) return;
#if defined(LD_HAVE_OPENCC)
    if (n->simplified && n->cc != (opencc_t)-1 && n->cc) opencc_close(n->cc);
#endif
    ld_free(n->ctx, n->buf[0]);
    ld_free(n->ctx, n->buf[1]);
    ld_free(n->ctx, n);
}

/* Makes buf[k] hold at least `need` bytes. */
static bool reserve(ld_normalizer *n, int k, size_t need) {
    if (n->cap[k] >= need) return true;
    size_t cap = n->cap[k] ? n->cap[k] : 4096;
    while (cap < need) {
        if (ld_mul_size(cap, 2, &cap)) return false;
    }
    char *p = ld_alloc(n->ctx, cap);
    if (!p) return false;
    ld_free(n->ctx, n->buf[k]);
    n->buf[k] = p;
    n->cap[k] = cap;
    return true;
}

/* Is the code point at s (valid UTF-8) whitespace? Sets *n to its byte length. */
static bool is_space_at(const uint8_t *s, size_t avail, size_t *n) {
    uint8_t c = s[0];
    if (c < 0x80) {
        *n = 1;
        return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
    }
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate(s, (utf8proc_ssize_t)avail, &cp);
    if (k <= 0) {
        *n = 1;
        return false;
    }
    *n = (size_t)k;
    if (cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000)
        return true;
    return false;
}

static size_t collapse_ws(char *dst, const char *src, size_t len) {
    const uint8_t *s = (const uint8_t *)src;
    size_t o = 0, i = 0;
    bool pending = false;
    while (i < len) {
        size_t k;
        if (is_space_at(s + i, len - i, &k)) {
            pending = o > 0;
            i += k;
            continue;
        }
        if (pending) dst[o++] = ' ';
        pending = false;
        memcpy(dst + o, src + i, k);
        o += k;
        i += k;
    }
    return o;
}

ld_status ld_normalizer_apply(ld_normalizer *n, const char *name, size_t line, const char *text, size_t len,
                              const char **out, size_t *out_len) {
    const char *cur = text;
    size_t cur_len = len;
    int next = 0;
    if (n->nfkc) {
        utf8proc_uint8_t *res = NULL;
        if (len > (size_t)INT32_MAX)
            return ld_error(n->ctx, LD_ERR_LIMIT, "%s:%zu: document of %zu bytes is too long to normalise", name, line, len);
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)cur, (utf8proc_ssize_t)cur_len, &res,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
        if (r < 0) {
            free(res);
            return ld_error(n->ctx, r == UTF8PROC_ERROR_NOMEM ? LD_ERR_NOMEM : LD_ERR_FORMAT, "%s:%zu: NFKC: %s", name, line,
                            utf8proc_errmsg(r));
        }
        if (!reserve(n, next, (size_t)r + 1)) {
            free(res);
            return ld_error(n->ctx, LD_ERR_NOMEM, "%s:%zu: out of memory normalising", name, line);
        }
        memcpy(n->buf[next], res, (size_t)r);
        free(res);
        cur = n->buf[next];
        cur_len = (size_t)r;
        next ^= 1;
    }
#if defined(LD_HAVE_OPENCC)
    if (n->simplified && cur_len) {
        /* OpenCC wants NUL-terminated input */
        if (!reserve(n, next, cur_len + 1)) return ld_error(n->ctx, LD_ERR_NOMEM, "%s:%zu: out of memory", name, line);
        memcpy(n->buf[next], cur, cur_len);
        n->buf[next][cur_len] = 0;
        char *conv = opencc_convert_utf8(n->cc, n->buf[next], cur_len);
        if (!conv) {
            const char *e = opencc_error();
            return ld_error(n->ctx, LD_ERR_FORMAT, "%s:%zu: OpenCC: %s", name, line, e ? e : "conversion failed");
        }
        size_t cl = strlen(conv);
        int k = next ^ 1;
        if (!reserve(n, k, cl + 1)) {
            opencc_convert_utf8_free(conv);
            return ld_error(n->ctx, LD_ERR_NOMEM, "%s:%zu: out of memory", name, line);
        }
        memcpy(n->buf[k], conv, cl);
        opencc_convert_utf8_free(conv);
        cur = n->buf[k];
        cur_len = cl;
        next = k ^ 1;
    }
#endif
    if (n->collapse) {
        if (!reserve(n, next, cur_len + 1)) return ld_error(n->ctx, LD_ERR_NOMEM, "%s:%zu: out of memory", name, line);
        cur_len = collapse_ws(n->buf[next], cur, cur_len);
        cur = n->buf[next];
    }
    *out = cur;
    *out_len = cur_len;
    return LD_OK;
}

/* eval/poetry.c — is a generated poem regular verse? And the unigram entropy of a corpus. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/eval.h"

/* Decodes one UTF-8 code point; returns its length, or 0 for invalid/truncated input. */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    if (!n) return 0;
    unsigned c = s[0];
    if (c < 0x80) return *cp = c, 1;
    int len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (!len || (size_t)len > n || c >= 0xf8) return 0;
    uint32_t v = c & (0x3f >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

static bool is_cjk(uint32_t c) {
    return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) || (c >= 0x20000 && c <= 0x2ebef) ||
           (c >= 0xf900 && c <= 0xfaff);
}
static bool is_space(uint32_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0x3000;
}

bool ld_poem_is_regular(const char *text, size_t len, int *chars_per_line) {
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    int clause_len = 0, want = 0, clauses = 0;
    bool expect_comma = true, ended = false;
    if (chars_per_line) *chars_per_line = 0;
    while (i < len) {
        uint32_t c;
        int n = utf8_next(s + i, len - i, &c);
        if (!n) return false;
        i += (size_t)n;
        if (is_space(c)) {
            if (clause_len) return false; /* whitespace inside a clause */
            continue;
        }
        if (is_cjk(c)) {
            clause_len++;
            ended = false;
            continue;
        }
        bool comma = c == 0xff0c, stop = c == 0x3002 || c == 0xff01 || c == 0xff1f;
        if (!comma && !stop) return false;
        if (comma != expect_comma) return false;
        if (!want) want = clause_len;
        if (clause_len != want || (want != 5 && want != 7)) return false;
        clause_len = 0;
        clauses++;
        expect_comma = !expect_comma;
        ended = stop;
    }
    if (clause_len || !ended || clauses < 4 || clauses % 2) return false;
    if (chars_per_line) *chars_per_line = want;
    return true;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

ld_status ld_unigram_entropy(ld_ctx *ctx, const char *text, size_t len, ld_unigram_stats *out) {
    if (!text || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "unigram entropy: NULL argument");
    memset(out, 0, sizeof *out);
    uint32_t *cps = ld_alloc(ctx, (len + 1) * sizeof(uint32_t));
    if (!cps) return ld_ctx_status(ctx);
    size_t n = 0, i = 0;
    while (i < len) {
        uint32_t c;
        int k = utf8_next((const unsigned char *)text + i, len - i, &c);
        if (!k) {
            ld_free(ctx, cps);
            return ld_error(ctx, LD_ERR_FORMAT, "unigram entropy: invalid UTF-8 at byte %zu", i);
        }
        i += (size_t)k;
        if (c != '\n' && c != '\r') cps[n++] = c;
    }
    qsort(cps, n, sizeof *cps, cmp_u32);
    double h = 0;
    size_t distinct = 0;
    for (size_t a = 0; a < n;) {
        size_t b = a;
        while (b < n && cps[b] == cps[a]) b++;
        double p = (double)(b - a) / (double)n;
        h -= p * log(p);
        distinct++;
        a = b;
    }
    ld_free(ctx, cps);
    out->nats_per_char = h;
    out->bits_per_char = h / log(2.0);
    out->chars = n;
    out->distinct = distinct;
    return LD_OK;
}

/* infer/grammar_verse.c — regular verse (近體詩) as a grammar (liandan/grammar.h): lines of 5 or
 * 7 CJK characters, the odd ones ending in "，" and the even ones in "。", so a constrained poem
 * is regular by construction (the test ld_poem_is_regular applies). An optional tone pattern
 * fixes, per line, which positions must be level (平) or oblique (仄) characters from a table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/grammar.h"

/* The CJK ranges ld_poem_is_regular counts as characters. */
static const char han[] = "[\\u4e00-\\u9fff\\u3400-\\u4dbf\\uf900-\\ufaff\\U00020000-\\U0002ebef]";

/* Decodes one UTF-8 character of s; 0 when invalid. */
static int utf8_one(const unsigned char *s, size_t n, uint32_t *cp) {
    if (!n) return 0;
    int len = s[0] < 0x80 ? 1 : s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!len || (size_t)len > n) return 0;
    uint32_t v = len == 1 ? s[0] : s[0] & (0x3f >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3f);
    }
    *cp = v;
    return len;
}

static int by_cp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Appends fmt to *out (growing it); false when out of memory. */
static bool append(char **out, size_t *len, size_t *cap, const char *text) {
    size_t n = strlen(text);
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 1024;
        while (c < *len + n + 1) c *= 2;
        char *o = realloc(*out, c);
        if (!o) return false;
        *out = o, *cap = c;
    }
    memcpy(*out + *len, text, n + 1);
    *len += n;
    return true;
}

/* A character class of the sorted code points cps[0..n), as ranges. */
static bool class_of(char **out, size_t *len, size_t *cap, const uint32_t *cps, size_t n) {
    bool ok = append(out, len, cap, "[");
    for (size_t i = 0; i < n && ok;) {
        size_t j = i;
        while (j + 1 < n && cps[j + 1] == cps[j] + 1) j++;
        char item[40];
        if (j > i) snprintf(item, sizeof item, "\\U%08X-\\U%08X", cps[i], cps[j]);
        else snprintf(item, sizeof item, "\\U%08X", cps[i]);
        ok = append(out, len, cap, item);
        i = j + 1;
    }
    return ok && append(out, len, cap, "]");
}

ld_status ld_grammar_verse(ld_ctx *ctx, int chars, int lines, const char *tones, size_t tones_len, const char *pattern,
                           char **gbnf) {
    *gbnf = NULL;
    if ((chars != 5 && chars != 7) || lines < 2 || lines > 64 || lines % 2)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "verse: lines of 5 or 7 characters, an even number of 2..64 lines "
                                                 "(got %d characters, %d lines)", chars, lines);
    if (!tones != !pattern) return ld_error(ctx, LD_ERR_INVALID_ARG, "verse: a tone table and a pattern go together");
    char *out = NULL;
    size_t len = 0, cap = 0;
    bool ok = true;
    char line[256];
    if (!tones) {
        snprintf(line, sizeof line, "root ::= ( line \"\xef\xbc\x8c\" line \"\xe3\x80\x82\" ){%d}\nline ::= c{%d}\nc ::= %s\n",
                 lines / 2, chars, han);
        ok = append(&out, &len, &cap, line);
    } else {
        /* the table: lines "字<TAB>平" (or p / level) and "字<TAB>仄" (z / oblique); a character in
         * both (polyphonic) may stand for either */
        uint32_t *level = malloc(tones_len * sizeof *level), *obl = malloc(tones_len * sizeof *obl);
        size_t nl = 0, no = 0;
        int lineno = 0;
        ld_status st = level && obl ? LD_OK : ld_error(ctx, LD_ERR_NOMEM, "verse: out of memory");
        for (const char *p = tones, *end = tones + tones_len; !st && p < end;) {
            const char *nl_at = memchr(p, '\n', (size_t)(end - p));
            const char *e = nl_at ? nl_at : end;
            lineno++;
            uint32_t ch, t = 0;
            int a = utf8_one((const unsigned char *)p, (size_t)(e - p), &ch);
            if (e > p && *p != '#') {
                const char *q = p + a;
                if (a && q < e && *q == '\t') q++;
                int b = a ? utf8_one((const unsigned char *)q, (size_t)(e - q), &t) : 0;
                bool lvl = b && (t == 0x5e73 || t == 'p' || t == 'l'), ob = b && (t == 0x4ec4 || t == 'z' || t == 'o');
                if (!a || !(lvl || ob))
                    st = ld_error(ctx, LD_ERR_FORMAT, "verse: tone table line %d: expected a character, a tab and 平 or 仄",
                                  lineno);
                else if (lvl) level[nl++] = ch;
                else obl[no++] = ch;
            }
            p = nl_at ? nl_at + 1 : end;
        }
        if (!st && (!nl || !no)) st = ld_error(ctx, LD_ERR_FORMAT, "verse: the tone table needs level and oblique characters");
        /* the pattern: one group per line, ',' between, of 'p' (平), 'z' (仄) or '*' (either) */
        const char *p = pattern;
        for (int l = 0; !st && l < lines; l++) {
            for (int k = 0; !st && k < chars; k++, p++)
                if (*p != 'p' && *p != 'z' && *p != '*')
                    st = ld_error(ctx, LD_ERR_FORMAT, "verse: pattern: line %d position %d: expected p, z or * (%d lines of %d)",
                                  l + 1, k + 1, lines, chars);
            if (!st && l + 1 < lines && *p++ != ',')
                st = ld_error(ctx, LD_ERR_FORMAT, "verse: pattern: line %d does not end with ','", l + 1);
        }
        if (!st && *p) st = ld_error(ctx, LD_ERR_FORMAT, "verse: pattern: text after %d lines", lines);
        if (st) {
            free(level), free(obl);
            return st;
        }
        qsort(level, nl, sizeof *level, by_cp);
        qsort(obl, no, sizeof *obl, by_cp);
        ok = append(&out, &len, &cap, "root ::=");
        for (int l = 0; ok && l < lines; l++) {
            snprintf(line, sizeof line, " l%d \"%s\"", l, l % 2 ? "\xe3\x80\x82" : "\xef\xbc\x8c");
            ok = append(&out, &len, &cap, line);
        }
        ok = ok && append(&out, &len, &cap, "\n");
        p = pattern;
        for (int l = 0; ok && l < lines; l++, p++) {
            snprintf(line, sizeof line, "l%d ::=", l);
            ok = append(&out, &len, &cap, line);
            for (int k = 0; ok && k < chars; k++, p++) ok = append(&out, &len, &cap, *p == 'p' ? " lv" : *p == 'z' ? " ob" : " c");
            ok = ok && append(&out, &len, &cap, "\n");
        }
        snprintf(line, sizeof line, "c ::= %s\nlv ::= ", han);
        ok = ok && append(&out, &len, &cap, line) && class_of(&out, &len, &cap, level, nl) &&
             append(&out, &len, &cap, "\nob ::= ") && class_of(&out, &len, &cap, obl, no) && append(&out, &len, &cap, "\n");
        free(level), free(obl);
    }
    if (!ok) {
        free(out);
        return ld_error(ctx, LD_ERR_NOMEM, "verse: out of memory");
    }
    *gbnf = out;
    return LD_OK;
}

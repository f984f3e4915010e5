/* infer/grammar.c — GBNF grammars (liandan/grammar.h): the parser compiles the text into
 * flat rules of elements (llama.cpp's representation: characters, ranges, alternatives, rule
 * references; repetitions become helper rules), and the runtime keeps, per sequence, the set of
 * pushdown stacks the text so far can be in. Masking walks the vocabulary as a byte trie and
 * advances the stacks character by character, pruning every subtree the grammar refuses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/grammar.h"

enum { E_END, E_ALT, E_REF, E_CHAR, E_CHAR_NOT, E_RNG_UPPER, E_CHAR_ALT, E_ANY };
enum { MAX_STACKS = 4096, MAX_DEPTH = 512, MAX_RULES = 1 << 16, MAX_REPEAT = 10000 };

typedef struct gelem {
    uint32_t type, value;
} gelem;

typedef struct gvec {
    gelem *e;
    int32_t n, cap;
} gvec;

struct ld_grammar {
    gelem *el;          /* every rule's elements, rule after rule */
    int32_t n_el;
    int32_t *alt0;      /* per rule: index into alts of its first alternative's start */
    int32_t *n_alts;
    int32_t *alts;      /* start positions of alternatives (into el) */
    int n_rules, root;
};

/* ---- parsing ---------------------------------------------------------------------------- */

typedef struct parser {
    ld_ctx *ctx;
    const char *src, *end;
    gvec *rules;
    char **names;
    bool *defined;
    int32_t *first_use; /* offset of a reference, for "undefined rule" messages */
    int n_rules, cap_rules;
    ld_status st;
} parser;

static void line_col(const parser *ps, const char *at, int *line, int *col) {
    *line = 1, *col = 1;
    for (const char *p = ps->src; p < at && p < ps->end; p++) {
        if (*p == '\n') (*line)++, *col = 1;
        else (*col)++;
    }
}

static ld_status perr(parser *ps, const char *at, const char *what) {
    if (ps->st) return ps->st;
    int line, col;
    line_col(ps, at, &line, &col);
    return ps->st = ld_error(ps->ctx, LD_ERR_FORMAT, "grammar: line %d, column %d: %s", line, col, what);
}

static bool push(parser *ps, gvec *v, uint32_t type, uint32_t value) {
    if (v->n == v->cap) {
        int32_t cap = v->cap ? 2 * v->cap : 16;
        gelem *e = realloc(v->e, (size_t)cap * sizeof *e);
        if (!e) {
            ps->st = ld_error(ps->ctx, LD_ERR_NOMEM, "grammar: out of memory");
            return false;
        }
        v->e = e, v->cap = cap;
    }
    v->e[v->n++] = (gelem){type, value};
    return true;
}

/* The rule called name (created, undefined, if new). */
static int symbol(parser *ps, const char *name, size_t len) {
    for (int i = 0; i < ps->n_rules; i++)
        if (strlen(ps->names[i]) == len && !memcmp(ps->names[i], name, len)) return i;
    if (ps->n_rules >= MAX_RULES) return ps->st = ld_error(ps->ctx, LD_ERR_LIMIT, "grammar: more than %d rules", MAX_RULES), -1;
    if (ps->n_rules == ps->cap_rules) {
        int cap = ps->cap_rules ? 2 * ps->cap_rules : 32;
        gvec *r = realloc(ps->rules, (size_t)cap * sizeof *r);
        if (r) ps->rules = r;
        char **nm = realloc(ps->names, (size_t)cap * sizeof *nm);
        if (nm) ps->names = nm;
        bool *d = realloc(ps->defined, (size_t)cap * sizeof *d);
        if (d) ps->defined = d;
        int32_t *fu = realloc(ps->first_use, (size_t)cap * sizeof *fu);
        if (fu) ps->first_use = fu;
        if (!r || !nm || !d || !fu) return ps->st = ld_error(ps->ctx, LD_ERR_NOMEM, "grammar: out of memory"), -1;
        ps->cap_rules = cap;
    }
    int id = ps->n_rules;
    char *copy = malloc(len + 1);
    if (!copy) return ps->st = ld_error(ps->ctx, LD_ERR_NOMEM, "grammar: out of memory"), -1;
    memcpy(copy, name, len), copy[len] = 0;
    ps->rules[id] = (gvec){0};
    ps->names[id] = copy, ps->defined[id] = false, ps->first_use[id] = -1;
    ps->n_rules++;
    return id;
}

/* A fresh helper rule named after `base`. */
static int helper(parser *ps, int base) {
    char name[96];
    for (int k = ps->n_rules;; k++) {
        snprintf(name, sizeof name, "%.60s_%d", ps->names[base], k);
        bool taken = false;
        for (int i = 0; i < ps->n_rules && !taken; i++) taken = !strcmp(ps->names[i], name);
        if (!taken) break;
    }
    int id = symbol(ps, name, strlen(name));
    if (id >= 0) ps->defined[id] = true;
    return id;
}

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static const char *skip_space(parser *ps, const char *p, bool newline_ok) {
    while (p < ps->end) {
        if (*p == ' ' || *p == '\t' || *p == '\r') p++;
        else if (*p == '#') {
            while (p < ps->end && *p != '\n') p++;
        } else if (*p == '\n' && newline_ok) p++;
        else break;
    }
    return p;
}

static int hex(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One character of a literal or class: an escape or a UTF-8 code point. */
static const char *parse_char(parser *ps, const char *p, uint32_t *c) {
    if (p >= ps->end) return perr(ps, p, "unexpected end of the grammar"), NULL;
    if (*p == '\\') {
        if (p + 1 >= ps->end) return perr(ps, p, "an escape at the end of the grammar"), NULL;
        char k = p[1];
        int digits = k == 'x' ? 2 : k == 'u' ? 4 : k == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            for (int i = 0; i < digits; i++) {
                int h = p + 2 + i < ps->end ? hex(p[2 + i]) : -1;
                if (h < 0) return perr(ps, p, "a \\x, \\u or \\U escape needs hex digits"), NULL;
                v = v << 4 | (uint32_t)h;
            }
            if (v > 0x10ffff) return perr(ps, p, "code point past U+10FFFF"), NULL;
            *c = v;
            return p + 2 + digits;
        }
        static const char from[] = "ntr\\\"[]-^/", to[] = "\n\t\r\\\"[]-^/";
        const char *f = memchr(from, k, sizeof from - 1);
        if (!f) return perr(ps, p, "unknown escape"), NULL;
        *c = (unsigned char)to[f - from];
        return p + 2;
    }
    const unsigned char *s = (const unsigned char *)p;
    int n = s[0] < 0x80 ? 1 : s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (!n || p + n > ps->end) return perr(ps, p, "invalid UTF-8"), NULL;
    uint32_t v = n == 1 ? s[0] : s[0] & (0x3f >> (n - 1));
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return perr(ps, p, "invalid UTF-8"), NULL;
        v = v << 6 | (s[i] & 0x3f);
    }
    *c = v;
    return p + n;
}

static const char *parse_alternates(parser *ps, const char *p, int rule, bool nested);

/* Applies a repetition {lo, hi} (hi < 0: unbounded) to out[start..n). */
static bool repeat(parser *ps, gvec *out, int32_t start, int rule, int lo, int hi) {
    int32_t len = out->n - start;
    gelem *sym = malloc((size_t)(len ? len : 1) * sizeof *sym);
    if (!sym) return ps->st = ld_error(ps->ctx, LD_ERR_NOMEM, "grammar: out of memory"), false;
    memcpy(sym, out->e + start, (size_t)len * sizeof *sym);
    out->n = start;
    bool ok = true;
    for (int k = 0; k < lo && ok; k++)
        for (int32_t i = 0; i < len && ok; i++) ok = push(ps, out, sym[i].type, sym[i].value);
    if (ok && hi < 0) { /* R ::= sym R | (empty) */
        int r = helper(ps, rule);
        ok = r >= 0;
        for (int32_t i = 0; i < len && ok; i++) ok = push(ps, &ps->rules[r], sym[i].type, sym[i].value);
        ok = ok && push(ps, &ps->rules[r], E_REF, (uint32_t)r) && push(ps, &ps->rules[r], E_ALT, 0) &&
             push(ps, &ps->rules[r], E_END, 0) && push(ps, out, E_REF, (uint32_t)r);
    } else if (ok && hi > lo) { /* R_k ::= sym R_{k+1} | (empty), nested hi - lo deep */
        int prev = -1;
        for (int k = hi - lo; k > 0 && ok; k--) {
            int r = helper(ps, rule);
            ok = r >= 0;
            for (int32_t i = 0; i < len && ok; i++) ok = push(ps, &ps->rules[r], sym[i].type, sym[i].value);
            if (ok && prev >= 0) ok = push(ps, &ps->rules[r], E_REF, (uint32_t)prev);
            ok = ok && push(ps, &ps->rules[r], E_ALT, 0) && push(ps, &ps->rules[r], E_END, 0);
            prev = r;
        }
        ok = ok && push(ps, out, E_REF, (uint32_t)prev);
    }
    free(sym);
    return ok;
}

static const char *parse_int(parser *ps, const char *p, int *v) {
    const char *q = p;
    long x = 0;
    while (q < ps->end && *q >= '0' && *q <= '9' && x <= MAX_REPEAT) x = x * 10 + (*q++ - '0');
    if (q == p) return perr(ps, p, "expected a number"), NULL;
    if (x > MAX_REPEAT) return perr(ps, p, "repetition count too large"), NULL;
    *v = (int)x;
    return q;
}

static const char *parse_sequence(parser *ps, const char *p, int rule, gvec *out, bool nested) {
    int32_t last = -1; /* start of the last symbol, for repetitions */
    while (p < ps->end && !ps->st) {
        const char *at = p;
        if (*p == '"') {
            last = out->n;
            p++;
            while (p < ps->end && *p != '"' && p) {
                uint32_t c;
                if (!(p = parse_char(ps, p, &c)) || !push(ps, out, E_CHAR, c)) return NULL;
            }
            if (p >= ps->end) return perr(ps, at, "a literal without its closing quote"), NULL;
            p++;
            if (out->n == last) last = -1; /* "" matches nothing: no symbol to repeat */
        } else if (*p == '[') {
            last = out->n;
            p++;
            uint32_t first = E_CHAR;
            if (p < ps->end && *p == '^') first = E_CHAR_NOT, p++;
            bool any = false;
            while (p < ps->end && *p != ']') {
                uint32_t c, c2;
                if (!(p = parse_char(ps, p, &c)) || !push(ps, out, any ? E_CHAR_ALT : first, c)) return NULL;
                any = true;
                if (p + 1 < ps->end && *p == '-' && p[1] != ']') {
                    if (!(p = parse_char(ps, p + 1, &c2))) return NULL;
                    if (c2 < c) return perr(ps, at, "a range that ends before it starts"), NULL;
                    if (!push(ps, out, E_RNG_UPPER, c2)) return NULL;
                }
            }
            if (p >= ps->end) return perr(ps, at, "a character class without its closing ]"), NULL;
            if (!any) return perr(ps, at, "an empty character class"), NULL;
            p++;
        } else if (is_name_char(*p)) {
            const char *q = p;
            while (q < ps->end && is_name_char(*q)) q++;
            const char *after = skip_space(ps, q, false);
            if (after + 2 < ps->end && !strncmp(after, "::=", 3))
                return perr(ps, at, "a rule definition inside a rule (missing newline?)"), NULL;
            int r = symbol(ps, p, (size_t)(q - p));
            if (r < 0) return NULL;
            if (ps->first_use[r] < 0) ps->first_use[r] = (int32_t)(p - ps->src);
            last = out->n;
            if (!push(ps, out, E_REF, (uint32_t)r)) return NULL;
            p = q;
        } else if (*p == '(') {
            int r = helper(ps, rule);
            if (r < 0) return NULL;
            p = skip_space(ps, p + 1, true);
            if (!(p = parse_alternates(ps, p, r, true))) return NULL;
            if (p >= ps->end || *p != ')') return perr(ps, at, "a group without its closing )"), NULL;
            p++;
            last = out->n;
            if (!push(ps, out, E_REF, (uint32_t)r)) return NULL;
        } else if (*p == '.') {
            last = out->n;
            if (!push(ps, out, E_ANY, 0)) return NULL;
            p++;
        } else if (*p == '*' || *p == '+' || *p == '?' || *p == '{') {
            if (last < 0) return perr(ps, at, "a repetition with nothing before it"), NULL;
            int lo = 0, hi = -1;
            if (*p == '+') lo = 1;
            else if (*p == '?') hi = 1;
            else if (*p == '{') {
                if (!(p = parse_int(ps, skip_space(ps, p + 1, false), &lo))) return NULL;
                p = skip_space(ps, p, false);
                hi = lo;
                if (p < ps->end && *p == ',') {
                    p = skip_space(ps, p + 1, false);
                    hi = -1;
                    if (p < ps->end && *p != '}' && !(p = parse_int(ps, p, &hi))) return NULL;
                    p = skip_space(ps, p, false);
                }
                if (p >= ps->end || *p != '}') return perr(ps, at, "a {m,n} repetition without its closing }"), NULL;
                if (hi >= 0 && hi < lo) return perr(ps, at, "a {m,n} repetition with n < m"), NULL;
            }
            p++;
            if (!repeat(ps, out, last, rule, lo, hi)) return NULL;
            last = -1;
        } else {
            break;
        }
        p = skip_space(ps, p, nested);
    }
    return ps->st ? NULL : p;
}

static const char *parse_alternates(parser *ps, const char *p, int rule, bool nested) {
    gvec seq = {0};
    for (;;) {
        if (!(p = parse_sequence(ps, p, rule, &seq, nested))) break;
        if (!nested) { /* a top-level rule may continue on the next line with | */
            const char *q = skip_space(ps, p, true);
            if (q < ps->end && *q == '|') p = q;
        }
        if (p >= ps->end || *p != '|') break;
        if (!push(ps, &seq, E_ALT, 0)) break;
        p = skip_space(ps, p + 1, true);
    }
    if (p && !push(ps, &seq, E_END, 0)) p = NULL;
    if (!p) {
        free(seq.e);
        return NULL;
    }
    free(ps->rules[rule].e);
    ps->rules[rule] = seq;
    return p;
}

/* ---- checks ------------------------------------------------------------------------------ */

/* Can rule r match the empty string? (fixpoint over all rules) */
static void nullable_rules(const ld_grammar *g, bool *nul) {
    memset(nul, 0, (size_t)g->n_rules);
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < g->n_rules; r++) {
            if (nul[r]) continue;
            for (int a = 0; a < g->n_alts[r] && !nul[r]; a++) {
                bool all = true;
                for (int32_t i = g->alts[g->alt0[r] + a]; g->el[i].type != E_END && g->el[i].type != E_ALT && all; i++)
                    all = g->el[i].type == E_REF && nul[g->el[i].value];
                if (all) nul[r] = changed = true;
            }
        }
    }
}

/* A rule that can reach itself without consuming a character loops forever. */
static int left_recursive(const ld_grammar *g, const bool *nul, int r, uint8_t *mark) {
    if (mark[r] == 1) return r;
    if (mark[r] == 2) return -1;
    mark[r] = 1;
    for (int a = 0; a < g->n_alts[r]; a++)
        for (int32_t i = g->alts[g->alt0[r] + a]; g->el[i].type == E_REF; i++) {
            int hit = left_recursive(g, nul, (int)g->el[i].value, mark);
            if (hit >= 0) return hit;
            if (!nul[g->el[i].value]) break;
        }
    mark[r] = 2;
    return -1;
}

void ld_grammar_free(ld_grammar *g) {
    if (!g) return;
    free(g->el), free(g->alt0), free(g->n_alts), free(g->alts), free(g);
}

ld_status ld_grammar_parse(ld_ctx *ctx, const char *text, size_t len, const char *root, ld_grammar **out) {
    *out = NULL;
    if (!text) return ld_error(ctx, LD_ERR_INVALID_ARG, "grammar: no text");
    if (memchr(text, 0, len)) return ld_error(ctx, LD_ERR_FORMAT, "grammar: a NUL byte in the text");
    parser ps = {.ctx = ctx, .src = text, .end = text + len};
    const char *p = skip_space(&ps, text, true);
    while (p < ps.end && !ps.st) {
        const char *q = p;
        while (q < ps.end && is_name_char(*q)) q++;
        if (q == p) {
            perr(&ps, p, "expected a rule name");
            break;
        }
        int r = symbol(&ps, p, (size_t)(q - p));
        if (r < 0) break;
        if (ps.defined[r]) {
            perr(&ps, p, "a rule defined twice");
            break;
        }
        ps.defined[r] = true;
        q = skip_space(&ps, q, false);
        if (q + 3 > ps.end || strncmp(q, "::=", 3)) {
            perr(&ps, q, "expected ::=");
            break;
        }
        if (!(p = parse_alternates(&ps, skip_space(&ps, q + 3, true), r, false))) break;
        if (p < ps.end && *p != '\n') {
            perr(&ps, p, "unexpected character");
            break;
        }
        p = skip_space(&ps, p, true);
    }
    const char *rootname = root ? root : "root";
    int root_id = -1;
    for (int i = 0; !ps.st && i < ps.n_rules; i++) {
        if (!ps.defined[i]) {
            char msg[160];
            snprintf(msg, sizeof msg, "rule '%.60s' is used but not defined", ps.names[i]);
            perr(&ps, ps.src + (ps.first_use[i] >= 0 ? ps.first_use[i] : 0), msg);
        }
        if (!strcmp(ps.names[i], rootname)) root_id = i;
    }
    if (!ps.st && root_id < 0) ps.st = ld_error(ctx, LD_ERR_FORMAT, "grammar: no rule named '%s' to start from", rootname);
    ld_grammar *g = NULL;
    if (!ps.st) { /* flatten */
        g = calloc(1, sizeof *g);
        int32_t n_el = 0, n_alts = 0;
        for (int i = 0; i < ps.n_rules; i++) {
            n_el += ps.rules[i].n;
            for (int32_t k = 0; k < ps.rules[i].n; k++) n_alts += ps.rules[i].e[k].type == E_ALT || ps.rules[i].e[k].type == E_END;
        }
        if (g) {
            g->el = malloc((size_t)n_el * sizeof *g->el), g->alt0 = malloc((size_t)ps.n_rules * sizeof *g->alt0);
            g->n_alts = malloc((size_t)ps.n_rules * sizeof *g->n_alts), g->alts = malloc((size_t)n_alts * sizeof *g->alts);
        }
        if (!g || !g->el || !g->alt0 || !g->n_alts || !g->alts) {
            ps.st = ld_error(ctx, LD_ERR_NOMEM, "grammar: out of memory");
        } else {
            g->n_rules = ps.n_rules, g->root = root_id;
            int32_t at = 0, na = 0;
            for (int i = 0; i < ps.n_rules; i++) {
                g->alt0[i] = na, g->n_alts[i] = 0;
                for (int32_t k = 0; k < ps.rules[i].n; k++) {
                    if (k == 0 || ps.rules[i].e[k - 1].type == E_ALT) g->alts[na++] = at + k, g->n_alts[i]++;
                    g->el[at + k] = ps.rules[i].e[k];
                }
                at += ps.rules[i].n;
            }
            g->n_el = at;
            bool *nul = malloc((size_t)g->n_rules);
            uint8_t *mark = calloc((size_t)g->n_rules, 1);
            if (!nul || !mark) ps.st = ld_error(ctx, LD_ERR_NOMEM, "grammar: out of memory");
            else {
                nullable_rules(g, nul);
                for (int r = 0; r < g->n_rules && !ps.st; r++) {
                    int hit = left_recursive(g, nul, r, mark);
                    if (hit >= 0)
                        ps.st = ld_error(ctx, LD_ERR_FORMAT, "grammar: rule '%s' is left-recursive (it can reach itself "
                                                             "before matching a character)", ps.names[hit]);
                }
            }
            free(nul), free(mark);
        }
    }
    for (int i = 0; i < ps.n_rules; i++) free(ps.rules[i].e), free(ps.names[i]);
    free(ps.rules), free(ps.names), free(ps.defined), free(ps.first_use);
    if (ps.st) {
        ld_grammar_free(g);
        return ps.st;
    }
    *out = g;
    return LD_OK;
}

/* ---- the vocabulary as a byte trie ---------------------------------------------------------- */

typedef struct tnode {
    int32_t edge0, n_edges, tok0, n_toks;
} tnode;

struct ld_grammar_vocab {
    int64_t V;
    tnode *nodes;
    int32_t n_nodes;
    uint8_t *edge_byte;
    int32_t *edge_child;
    int32_t *toks;       /* token ids by trie node */
    const char **bytes;  /* per token (borrowed from the tokenizer) */
    size_t *len;
    bool *special;
};

static const ld_grammar_vocab *sort_vocab;
static int by_bytes(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    size_t lx = sort_vocab->len[x], ly = sort_vocab->len[y], n = lx < ly ? lx : ly;
    int c = memcmp(sort_vocab->bytes[x], sort_vocab->bytes[y], n);
    if (c) return c;
    return lx < ly ? -1 : lx > ly ? 1 : (x > y) - (x < y);
}

/* Builds the node for sorted tokens ids[lo, hi) sharing their first d bytes; returns its index. */
static int32_t build(ld_grammar_vocab *v, const int32_t *ids, int32_t lo, int32_t hi, size_t d, int32_t *n_edges) {
    int32_t me = v->n_nodes++;
    int32_t k = lo;
    v->nodes[me].tok0 = lo, v->nodes[me].n_toks = 0;
    while (k < hi && v->len[ids[k]] == d) v->nodes[me].n_toks++, k++;
    /* children: runs of the same byte at position d */
    int32_t first = *n_edges, count = 0;
    for (int32_t a = k; a < hi;) {
        int32_t b = a;
        uint8_t byte = (uint8_t)v->bytes[ids[a]][d];
        while (b < hi && (uint8_t)v->bytes[ids[b]][d] == byte) b++;
        count++, a = b;
    }
    *n_edges += count;
    v->nodes[me].edge0 = first, v->nodes[me].n_edges = count;
    int32_t e = first;
    for (int32_t a = k; a < hi; e++) {
        int32_t b = a;
        uint8_t byte = (uint8_t)v->bytes[ids[a]][d];
        while (b < hi && (uint8_t)v->bytes[ids[b]][d] == byte) b++;
        v->edge_byte[e] = byte;
        v->edge_child[e] = build(v, ids, a, b, d + 1, n_edges);
        a = b;
    }
    return me;
}

void ld_grammar_vocab_free(ld_grammar_vocab *v) {
    if (!v) return;
    free(v->nodes), free(v->edge_byte), free(v->edge_child), free(v->toks), free(v->bytes), free(v->len), free(v->special);
    free(v);
}

ld_status ld_grammar_vocab_new(ld_ctx *ctx, const ld_tokenizer *tok, ld_grammar_vocab **out) {
    *out = NULL;
    ld_grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) return ld_error(ctx, LD_ERR_NOMEM, "grammar: out of memory");
    int64_t V = v->V = ld_tokenizer_vocab_size(tok);
    v->bytes = calloc((size_t)V, sizeof *v->bytes), v->len = calloc((size_t)V, sizeof *v->len);
    v->special = calloc((size_t)V, sizeof *v->special), v->toks = malloc((size_t)V * sizeof *v->toks);
    size_t total = 1;
    if (v->bytes && v->len && v->special && v->toks)
        for (int64_t t = 0; t < V; t++) {
            v->special[t] = ld_tokenizer_is_special(tok, (int32_t)t);
            if (ld_tokenizer_token_bytes(tok, (int32_t)t, &v->bytes[t], &v->len[t]) || !v->len[t]) v->special[t] = true;
            if (!v->special[t]) total += v->len[t];
        }
    /* nodes: at most one per byte of every token, plus the root */
    v->nodes = malloc(total * sizeof *v->nodes);
    v->edge_byte = malloc(total), v->edge_child = malloc(total * sizeof *v->edge_child);
    if (!v->bytes || !v->len || !v->special || !v->toks || !v->nodes || !v->edge_byte || !v->edge_child) {
        ld_grammar_vocab_free(v);
        return ld_error(ctx, LD_ERR_NOMEM, "grammar: out of memory for the vocabulary trie");
    }
    int32_t n = 0;
    for (int64_t t = 0; t < V; t++)
        if (!v->special[t]) v->toks[n++] = (int32_t)t;
    sort_vocab = v; /* qsort has no user pointer; vocab building is not re-entrant */
    qsort(v->toks, (size_t)n, sizeof *v->toks, by_bytes);
    int32_t n_edges = 0;
    build(v, v->toks, 0, n, 0, &n_edges);
    *out = v;
    return LD_OK;
}

/* ---- stacks ----------------------------------------------------------------------------------- */

typedef struct gnode {
    int32_t pos;
    const struct gnode *parent;
} gnode;

typedef struct gset {
    const gnode **s;
    int n, cap;
    bool done; /* one stack is empty: the text is complete */
} gset;

typedef struct utf8p { /* a character cut by a token boundary */
    uint32_t value;
    int need;          /* continuation bytes still to come */
    int len;           /* bytes of the whole character */
    uint8_t lo, hi;    /* the range the next continuation byte must be in (no overlong forms or surrogates) */
} utf8p;

struct ld_grammar_state {
    ld_ctx *ctx;
    const ld_grammar *g;
    const ld_grammar_vocab *v;
    ld_arena *mem, *tmp;
    gset cur;
    utf8p part;
    int32_t stops[8];
    int n_stops;
    bool *allowed;
    ld_status err;
};

static const gnode *node(ld_grammar_state *s, ld_arena *a, int32_t pos, const gnode *parent) {
    gnode *n = ld_arena_alloc(a, sizeof *n);
    if (!n) s->err = LD_ERR_NOMEM;
    else n->pos = pos, n->parent = parent;
    return n;
}

static void set_add(ld_grammar_state *s, ld_arena *a, gset *set, const gnode *n) {
    for (int i = 0; i < set->n; i++)
        if (set->s[i]->pos == n->pos && set->s[i]->parent == n->parent) return;
    if (set->n >= MAX_STACKS) {
        s->err = ld_error(s->ctx, LD_ERR_LIMIT, "grammar: more than %d ways to read the text (an ambiguous grammar)", MAX_STACKS);
        return;
    }
    if (set->n == set->cap) {
        int cap = set->cap ? 2 * set->cap : 8;
        const gnode **ns = ld_arena_alloc(a, (size_t)cap * sizeof *ns);
        if (!ns) {
            s->err = LD_ERR_NOMEM;
            return;
        }
        if (set->n) memcpy(ns, set->s, (size_t)set->n * sizeof *ns);
        set->s = ns, set->cap = cap;
    }
    set->s[set->n++] = n;
}

/* Adds to set every stack reachable from n whose top is a character element (or the empty
 * stack: set->done). */
static void expand(ld_grammar_state *s, ld_arena *a, gset *set, const gnode *n, int depth) {
    const ld_grammar *g = s->g;
    while (n && (g->el[n->pos].type == E_END || g->el[n->pos].type == E_ALT)) n = n->parent;
    if (!n) {
        set->done = true;
        return;
    }
    if (depth > MAX_DEPTH) {
        s->err = ld_error(s->ctx, LD_ERR_LIMIT, "grammar: rules nest deeper than %d", MAX_DEPTH);
        return;
    }
    const gelem *e = &g->el[n->pos];
    if (e->type != E_REF) {
        set_add(s, a, set, n);
        return;
    }
    int32_t next = n->pos + 1;
    const gnode *ret = g->el[next].type == E_END || g->el[next].type == E_ALT ? n->parent : node(s, a, next, n->parent);
    int r = (int)e->value;
    for (int k = 0; k < g->n_alts[r] && !s->err; k++) {
        const gnode *c = node(s, a, g->alts[g->alt0[r] + k], ret);
        if (c) expand(s, a, set, c, depth + 1);
    }
}

/* Does the character element at pos accept code point c? *next: the element after it. */
static bool match_char(const gelem *el, int32_t pos, uint32_t c, int32_t *next) {
    const gelem *e = &el[pos];
    if (e->type == E_ANY) {
        *next = pos + 1;
        return true;
    }
    bool neg = e->type == E_CHAR_NOT, found = false;
    do {
        if (e[1].type == E_RNG_UPPER) found |= e->value <= c && c <= e[1].value, e += 2;
        else found |= e->value == c, e++;
    } while (e->type == E_CHAR_ALT);
    *next = (int32_t)(e - el);
    return found != neg;
}

/* Could the element at pos accept some code point in [lo, hi]? (a partial character) */
static bool match_range(const gelem *el, int32_t pos, uint32_t lo, uint32_t hi) {
    const gelem *e = &el[pos];
    if (e->type == E_ANY || e->type == E_CHAR_NOT) return true;
    do {
        uint32_t a = e->value, b = e[1].type == E_RNG_UPPER ? e[1].value : a;
        if (a <= hi && b >= lo) return true;
        e += e[1].type == E_RNG_UPPER ? 2 : 1;
    } while (e->type == E_CHAR_ALT);
    return false;
}

static gset advance(ld_grammar_state *s, ld_arena *a, const gset *from, uint32_t c) {
    gset to = {0};
    for (int i = 0; i < from->n && !s->err; i++) {
        int32_t next;
        if (!match_char(s->g->el, from->s[i]->pos, c, &next)) continue;
        const gnode *n = node(s, a, next, from->s[i]->parent);
        if (n) expand(s, a, &to, n, 0);
    }
    return to;
}

/* Feeds one byte to a partial character: 1 with *c complete, 0 when more bytes are needed,
 * -1 for invalid UTF-8 (overlong forms and surrogates included). */
static int utf8_push(utf8p *p, uint8_t b, uint32_t *c) {
    if (p->need) {
        if (b < p->lo || b > p->hi) return -1;
        p->value = p->value << 6 | (b & 0x3f);
        p->lo = 0x80, p->hi = 0xbf;
        if (--p->need) return 0;
        *c = p->value;
        return 1;
    }
    if (b < 0x80) return *c = b, 1;
    p->lo = 0x80, p->hi = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) p->value = b & 0x1f, p->need = 1, p->len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        p->value = b & 0x0f, p->need = 2, p->len = 3;
        if (b == 0xe0) p->lo = 0xa0;
        if (b == 0xed) p->hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        p->value = b & 0x07, p->need = 3, p->len = 4;
        if (b == 0xf0) p->lo = 0x90;
        if (b == 0xf4) p->hi = 0x8f;
    } else {
        return -1;
    }
    return 0;
}

/* The stacks of set that could take the partial character p. */
static bool viable_partial(const ld_grammar_state *s, const gset *set, const utf8p *p) {
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    uint32_t lo = p->value << (6 * p->need), hi = lo | ((1u << (6 * p->need)) - 1);
    if (lo < min_cp[p->len]) lo = min_cp[p->len];
    if (hi > 0x10ffff) hi = 0x10ffff;
    for (int i = 0; i < set->n; i++)
        if (match_range(s->g->el, set->s[i]->pos, lo, hi)) return true;
    return false;
}

/* ---- state -------------------------------------------------------------------------------------- */

void ld_grammar_state_free(ld_grammar_state *s) {
    if (!s) return;
    ld_arena_free(s->mem);
    ld_arena_free(s->tmp);
    ld_free(s->ctx, s->allowed);
    ld_free(s->ctx, s);
}

ld_status ld_grammar_state_new(ld_ctx *ctx, const ld_grammar *g, const ld_grammar_vocab *v, const int32_t *stop_ids,
                               int n_stop_ids, ld_grammar_state **out) {
    *out = NULL;
    ld_grammar_state *s = ld_calloc(ctx, 1, sizeof *s);
    if (!s) return ld_ctx_status(ctx);
    s->ctx = ctx, s->g = g, s->v = v;
    for (int i = 0; i < n_stop_ids && s->n_stops < 8; i++) s->stops[s->n_stops++] = stop_ids[i];
    ld_status st = ld_arena_new(ctx, 1 << 16, &s->mem);
    if (!st) st = ld_arena_new(ctx, 1 << 20, &s->tmp);
    if (!st && !(s->allowed = ld_alloc(ctx, (size_t)v->V * sizeof *s->allowed))) st = ld_ctx_status(ctx);
    if (!st) {
        for (int k = 0; k < g->n_alts[g->root] && !s->err; k++) {
            const gnode *n = node(s, s->mem, g->alts[g->alt0[g->root] + k], NULL);
            if (n) expand(s, s->mem, &s->cur, n, 0);
        }
        st = s->err;
    }
    if (st) {
        ld_grammar_state_free(s);
        return st == LD_ERR_NOMEM ? ld_error(ctx, st, "grammar: out of memory") : st;
    }
    *out = s;
    return LD_OK;
}

bool ld_grammar_state_complete(const ld_grammar_state *s) {
    return s->cur.done && !s->part.need;
}

/* Copies the live stacks into a fresh arena when the old one has grown (every accepted
 * character allocates nodes; most become garbage). */
static void compact(ld_grammar_state *s) {
    if (ld_arena_used(s->mem) < (8u << 20)) return;
    ld_arena *fresh;
    if (ld_arena_new(s->ctx, 1 << 16, &fresh)) return;
    gset to = {.done = s->cur.done};
    for (int i = 0; i < s->cur.n; i++) {
        const gnode *chain[MAX_DEPTH * 4];
        int depth = 0;
        for (const gnode *n = s->cur.s[i]; n && depth < MAX_DEPTH * 4; n = n->parent) chain[depth++] = n;
        const gnode *copy = NULL;
        for (int k = depth - 1; k >= 0; k--) copy = node(s, fresh, chain[k]->pos, copy);
        if (copy) set_add(s, fresh, &to, copy);
    }
    if (s->err) {
        s->err = LD_OK;
        ld_arena_free(fresh);
        return;
    }
    ld_arena_free(s->mem);
    s->mem = fresh, s->cur = to;
}

/* Advances the state over bytes (all or nothing). */
static ld_status accept_bytes(ld_grammar_state *s, const char *bytes, size_t n, const char *what) {
    gset cur = s->cur;
    utf8p part = s->part;
    for (size_t i = 0; i < n; i++) {
        uint32_t c;
        int r = utf8_push(&part, (uint8_t)bytes[i], &c);
        if (r < 0) return ld_error(s->ctx, LD_ERR_FORMAT, "grammar: %s: invalid UTF-8 at byte %zu", what, i);
        if (r == 0) continue;
        cur = advance(s, s->mem, &cur, c);
        if (s->err) return s->err == LD_ERR_NOMEM ? ld_error(s->ctx, LD_ERR_NOMEM, "grammar: out of memory") : s->err;
        if (!cur.n && !cur.done) return ld_error(s->ctx, LD_ERR_FORMAT, "grammar: %s: not allowed at byte %zu", what, i);
    }
    if (part.need && !viable_partial(s, &cur, &part))
        return ld_error(s->ctx, LD_ERR_FORMAT, "grammar: %s: its last character cannot continue", what);
    s->cur = cur, s->part = part;
    compact(s);
    return LD_OK;
}

ld_status ld_grammar_state_accept_text(ld_grammar_state *s, const char *text, size_t len) {
    return accept_bytes(s, text, len, "the text");
}

ld_status ld_grammar_state_accept(ld_grammar_state *s, int32_t token) {
    for (int i = 0; i < s->n_stops; i++)
        if (token == s->stops[i])
            return ld_grammar_state_complete(s) ? LD_OK
                                                : ld_error(s->ctx, LD_ERR_FORMAT, "grammar: the text ended before the grammar did");
    if (token < 0 || token >= s->v->V || s->v->special[token])
        return ld_error(s->ctx, LD_ERR_FORMAT, "grammar: token %d is not text the grammar can take", token);
    return accept_bytes(s, s->v->bytes[token], s->v->len[token], "a token");
}

/* Marks the tokens below trie node t that the stacks `set` (with partial character p) allow. */
static void walk(ld_grammar_state *s, int32_t t, const gset *set, utf8p p, int depth) {
    const ld_grammar_vocab *v = s->v;
    const tnode *nd = &v->nodes[t];
    if (depth > 0)
        for (int32_t k = 0; k < nd->n_toks; k++) s->allowed[v->toks[nd->tok0 + k]] = true;
    for (int32_t e = nd->edge0; e < nd->edge0 + nd->n_edges && !s->err; e++) {
        utf8p q = p;
        uint32_t c;
        int r = utf8_push(&q, v->edge_byte[e], &c);
        if (r < 0) continue;
        if (r == 0) {
            if (viable_partial(s, set, &q)) walk(s, v->edge_child[e], set, q, depth + 1);
            continue;
        }
        gset next = advance(s, s->tmp, set, c);
        if (next.n || next.done) walk(s, v->edge_child[e], &next, q, depth + 1);
    }
}

ld_status ld_grammar_state_mask(ld_grammar_state *s, float *logits, int64_t V) {
    memset(s->allowed, 0, (size_t)s->v->V * sizeof *s->allowed);
    ld_arena_reset(s->tmp);
    walk(s, 0, &s->cur, s->part, 0);
    ld_status st = s->err;
    s->err = LD_OK;
    if (st) return st;
    bool complete = ld_grammar_state_complete(s);
    for (int i = 0; i < s->n_stops; i++)
        if (s->stops[i] >= 0 && s->stops[i] < s->v->V) s->allowed[s->stops[i]] = complete;
    for (int64_t t = 0; t < V; t++)
        if (t >= s->v->V || !s->allowed[t]) logits[t] = -INFINITY;
    return LD_OK;
}

static ld_status constraint_mask(void *user, float *logits, int64_t V) {
    return ld_grammar_state_mask(user, logits, V);
}
static ld_status constraint_accept(void *user, int32_t token) {
    return ld_grammar_state_accept(user, token);
}

static bool constraint_complete(void *user) {
    return ld_grammar_state_complete(user);
}

ld_lm_constraint ld_grammar_constraint(ld_grammar_state *s) {
    return (ld_lm_constraint){.mask = constraint_mask, .accept = constraint_accept, .complete = constraint_complete, .user = s};
}

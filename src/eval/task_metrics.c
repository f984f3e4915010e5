/* eval/task_metrics.c — the metrics of evaluation tasks: macro-F1; CMRC2018's exact match
 * and longest-common-substring F1 over characters; F0.5 of character-level edits for
 * grammatical error correction (edits from a minimal alignment, best of several
 * references, as the M2 scorer picks); SIGHAN's sentence-level detection and correction
 * counts for spelling check. */
#include <stdlib.h>
#include <string.h>

#include "eval/task_internal.h"

double ld_metric_macro_f1(const int *pred, const int *gold, int64_t n, int n_classes) {
    double sum = 0;
    int classes = 0;
    for (int c = 0; c < n_classes; c++) {
        int64_t tp = 0, fp = 0, fn = 0;
        for (int64_t i = 0; i < n; i++) {
            tp += pred[i] == c && gold[i] == c;
            fp += pred[i] == c && gold[i] != c;
            fn += pred[i] != c && gold[i] == c;
        }
        if (tp + fp + fn == 0) continue; /* a class nobody predicted or needed */
        sum += 2.0 * (double)tp / (double)(2 * tp + fp + fn);
        classes++;
    }
    return classes ? sum / classes : 0;
}

/* Decodes UTF-8 into code points (invalid bytes become U+FFFD); returns the count. */
static int64_t codepoints(const char *s, uint32_t **out) {
    size_t n = strlen(s);
    uint32_t *cp = malloc((n + 1) * sizeof *cp);
    int64_t k = 0;
    if (!cp) {
        *out = NULL;
        return 0;
    }
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        uint32_t v = len == 1 ? c : len == 2 ? c & 31u : len == 3 ? c & 15u : c & 7u;
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int j = 1; ok && j < len; j++) {
            unsigned char d = (unsigned char)s[i + (size_t)j];
            ok = (d & 0xC0) == 0x80;
            v = (v << 6) | (d & 63u);
        }
        cp[k++] = ok ? v : 0xFFFD;
        i += ok ? (size_t)len : 1;
    }
    *out = cp;
    return k;
}

/* Punctuation and spaces CMRC2018's evaluation drops (ASCII punctuation, CJK symbols and
 * punctuation, full-width forms' punctuation, quotes, middle dot, ellipsis). */
static bool dropped(uint32_t c) {
    if (c <= ' ' || c == 0x3000) return true;
    if (c < 0x80) return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
    return (c >= 0x3001 && c <= 0x303F) || (c >= 0xFF01 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) ||
           (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65) || (c >= 0x2010 && c <= 0x2027) || c == 0x00B7;
}

static int64_t normalized(const char *s, uint32_t **out) {
    int64_t n = codepoints(s, out), k = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t c = (*out)[i];
        if (dropped(c)) continue;
        (*out)[k++] = c >= 'A' && c <= 'Z' ? c + 32 : c;
    }
    return k;
}

/* The length of the longest common substring of a and b. */
static int64_t lcs_substring(const uint32_t *a, int64_t n, const uint32_t *b, int64_t m) {
    int64_t best = 0, *prev = calloc((size_t)m + 1, sizeof *prev), *cur = calloc((size_t)m + 1, sizeof *cur);
    for (int64_t i = 1; prev && cur && i <= n; i++) {
        for (int64_t j = 1; j <= m; j++) {
            cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : 0;
            if (cur[j] > best) best = cur[j];
        }
        int64_t *t = prev;
        prev = cur, cur = t;
    }
    free(prev);
    free(cur);
    return best;
}

void ld_metric_qa(const char *pred, const char *const *refs, int n_refs, double *em, double *f1) {
    uint32_t *p;
    int64_t np = normalized(pred, &p);
    *em = 0, *f1 = 0;
    for (int r = 0; r < n_refs; r++) {
        uint32_t *g;
        int64_t ng = normalized(refs[r], &g);
        if (np == ng && (np == 0 || (p && g && !memcmp(p, g, (size_t)np * sizeof *p)))) *em = 1;
        int64_t lcs = p && g ? lcs_substring(p, np, g, ng) : 0;
        if (lcs > 0) {
            double prec = (double)lcs / (double)np, rec = (double)lcs / (double)ng, f = 2 * prec * rec / (prec + rec);
            if (f > *f1) *f1 = f;
        }
        free(g);
    }
    free(p);
}

/* ---- grammatical error correction ---- */

typedef struct edit {
    int64_t start, end;  /* source span [start, end) */
    uint64_t repl;       /* hash of the replacement text (its code points) */
} edit;

/* The edits of a minimal Levenshtein alignment of a -> b, adjacent changes merged. */
static int64_t edits_of(const uint32_t *a, int64_t n, const uint32_t *b, int64_t m, edit **out) {
    int64_t W = m + 1;
    int32_t *d = malloc((size_t)((n + 1) * W) * sizeof *d);
    edit *e = malloc((size_t)(n + m + 1) * sizeof *e);
    *out = e;
    if (!d || !e) {
        free(d);
        return 0;
    }
    for (int64_t i = 0; i <= n; i++)
        for (int64_t j = 0; j <= m; j++) {
            int32_t v;
            if (!i || !j) v = (int32_t)(i + j);
            else {
                v = d[(i - 1) * W + j - 1] + (a[i - 1] != b[j - 1]);
                if (d[(i - 1) * W + j] + 1 < v) v = d[(i - 1) * W + j] + 1;
                if (d[i * W + j - 1] + 1 < v) v = d[i * W + j - 1] + 1;
            }
            d[i * W + j] = v;
        }
    /* walk back from the end; ops are collected in reverse */
    int64_t k = 0, i = n, j = m, span_end = -1, ins_end = -1;
    uint64_t h = 1469598103934665603ull;
    while (i > 0 || j > 0) {
        bool match = i > 0 && j > 0 && a[i - 1] == b[j - 1] && d[i * W + j] == d[(i - 1) * W + j - 1];
        if (match) {
            if (span_end >= 0) e[k++] = (edit){i, span_end, h}, span_end = -1, h = 1469598103934665603ull;
            i--, j--;
            continue;
        }
        if (span_end < 0) span_end = i, ins_end = j;
        if (i > 0 && j > 0 && d[i * W + j] == d[(i - 1) * W + j - 1] + 1) i--, j--;
        else if (i > 0 && d[i * W + j] == d[(i - 1) * W + j] + 1) i--;
        else j--;
        (void)ins_end;
        /* the replacement is b[j .. current insertion end): hash it when the span closes */
        h = 1469598103934665603ull;
        for (int64_t q = j; q < ins_end; q++) h = (h ^ b[q]) * 1099511628211ull;
    }
    if (span_end >= 0) e[k++] = (edit){i, span_end, h};
    free(d);
    return k;
}

static int64_t common(const edit *x, int64_t nx, const edit *y, int64_t ny) {
    int64_t c = 0;
    for (int64_t i = 0; i < nx; i++)
        for (int64_t j = 0; j < ny; j++)
            if (x[i].start == y[j].start && x[i].end == y[j].end && x[i].repl == y[j].repl) {
                c++;
                break;
            }
    return c;
}

static double f05(int64_t tp, int64_t fp, int64_t fn) {
    double p = tp + fp ? (double)tp / (double)(tp + fp) : 1.0, r = tp + fn ? (double)tp / (double)(tp + fn) : 1.0;
    return p + r > 0 ? 1.25 * p * r / (0.25 * p + r) : 0;
}

void ld_metric_gec(const char *src, const char *hyp, const char *const *refs, int n_refs, int64_t *tp, int64_t *fp,
                   int64_t *fn) {
    uint32_t *s, *hy;
    int64_t ns = codepoints(src, &s), nh = codepoints(hyp, &hy);
    edit *he = NULL;
    int64_t nhe = s && hy ? edits_of(s, ns, hy, nh, &he) : 0;
    int64_t best_tp = 0, best_fp = nhe, best_fn = 0;
    double best = -1;
    for (int r = 0; r < n_refs; r++) {
        uint32_t *g;
        int64_t ng = codepoints(refs[r], &g);
        edit *ge = NULL;
        int64_t nge = s && g ? edits_of(s, ns, g, ng, &ge) : 0, c = common(he, nhe, ge, nge);
        double f = f05(*tp + c, *fp + nhe - c, *fn + nge - c);
        if (f > best || (f == best && c > best_tp)) best = f, best_tp = c, best_fp = nhe - c, best_fn = nge - c;
        free(ge);
        free(g);
    }
    *tp += best_tp, *fp += best_fp, *fn += best_fn;
    free(he);
    free(s);
    free(hy);
}

void ld_metric_csc(const char *src, const char *hyp, const char *ref, int64_t *det_tp, int64_t *det_fp,
                   int64_t *det_fn, int64_t *cor_tp, int64_t *cor_fp, int64_t *cor_fn) {
    uint32_t *s, *h, *g;
    int64_t ns = codepoints(src, &s), nh = codepoints(hyp, &h), ng = codepoints(ref, &g);
    bool gold_err = false, hyp_err = nh != ns, same_pos = nh == ns;
    for (int64_t i = 0; s && g && i < ns && i < ng; i++) gold_err |= s[i] != g[i];
    gold_err |= ng != ns;
    for (int64_t i = 0; s && h && g && i < ns && i < nh; i++) {
        bool hc = s[i] != h[i], gc = i < ng && s[i] != g[i];
        hyp_err |= hc;
        same_pos &= hc == gc;
    }
    bool detected = hyp_err && same_pos && gold_err, corrected = hyp_err && nh == ng && h && g && !memcmp(h, g, (size_t)nh * sizeof *h);
    *det_tp += detected, *det_fp += hyp_err && !detected, *det_fn += gold_err && !detected;
    *cor_tp += corrected && gold_err, *cor_fp += hyp_err && !(corrected && gold_err), *cor_fn += gold_err && !corrected;
    free(s);
    free(h);
    free(g);
}

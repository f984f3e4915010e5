/* eval/clip_eval.c — image-text retrieval recall (text->image and image->text R@k, with the
 * exact chance level), the bag-of-characters baseline (ridge regression from downsampled
 * pixels to a caption's character counts) and zero-shot classification. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/clip_eval.h"

/* Rank (1-based) of the best relevant candidate: 1 + the candidates scored above it. */
static int64_t best_rank(const double *score, const bool *relevant, int64_t n) {
    double best = -INFINITY;
    for (int64_t j = 0; j < n; j++)
        if (relevant[j] && score[j] > best) best = score[j];
    int64_t above = 0;
    for (int64_t j = 0; j < n; j++) above += !relevant[j] && score[j] > best;
    return above + 1;
}

/* P(at least one of r relevant among n lands in a random top k) = 1 - C(n - r, k) / C(n, k). */
static double chance_hit(int64_t n, int64_t r, int64_t k) {
    if (k >= n) return 1.0;
    double miss = 1.0;
    for (int64_t i = 0; i < k; i++) miss *= (double)(n - r - i) / (double)(n - i);
    return miss < 0 ? 1.0 : 1.0 - miss;
}

ld_status ld_retrieval_eval(ld_ctx *ctx, const float *img, const float *txt, const int64_t *group, int64_t n, int64_t E,
                            ld_retrieval_result *out) {
    if (!img || !txt || !group || !out || n <= 0 || E <= 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_retrieval_eval: bad argument");
    memset(out, 0, sizeof *out);
    static const int64_t ks[LD_RETRIEVAL_KS] = {1, 5, 10};
    /* the distinct captions: the first pair of each group stands for it */
    int64_t G = 0;
    int64_t *first = malloc((size_t)n * sizeof *first);
    double *score = malloc((size_t)n * sizeof *score);
    bool *rel = malloc((size_t)n * sizeof *rel);
    if (!first || !score || !rel) {
        free(first), free(score), free(rel);
        return ld_error(ctx, LD_ERR_NOMEM, "retrieval: out of memory");
    }
    for (int64_t i = 0; i < n; i++) {
        bool seen = false;
        for (int64_t j = 0; j < i && !seen; j++) seen = group[j] == group[i];
        if (!seen) first[G++] = i;
    }
    /* text -> image: each distinct caption against every image */
    for (int64_t g = 0; g < G; g++) {
        const float *q = txt + first[g] * E;
        int64_t r = 0;
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t e = 0; e < E; e++) s += (double)q[e] * img[j * E + e];
            score[j] = s, rel[j] = group[j] == group[first[g]], r += rel[j];
        }
        int64_t rank = best_rank(score, rel, n);
        for (int k = 0; k < LD_RETRIEVAL_KS; k++) {
            out->t2i[k] += rank <= ks[k];
            out->t2i_chance[k] += chance_hit(n, r, ks[k]);
        }
    }
    /* image -> text: each image against the distinct captions */
    for (int64_t i = 0; i < n; i++) {
        for (int64_t g = 0; g < G; g++) {
            double s = 0;
            for (int64_t e = 0; e < E; e++) s += (double)img[i * E + e] * txt[first[g] * E + e];
            score[g] = s, rel[g] = group[first[g]] == group[i];
        }
        int64_t rank = best_rank(score, rel, G);
        for (int k = 0; k < LD_RETRIEVAL_KS; k++) {
            out->i2t[k] += rank <= ks[k];
            out->i2t_chance[k] += chance_hit(G, 1, ks[k]);
        }
    }
    for (int k = 0; k < LD_RETRIEVAL_KS; k++) {
        out->t2i[k] /= (double)G, out->t2i_chance[k] /= (double)G;
        out->i2t[k] /= (double)n, out->i2t_chance[k] /= (double)n;
    }
    out->n_images = n, out->n_texts = G;
    free(first), free(score), free(rel);
    return LD_OK;
}

/* ---- the bag-of-characters baseline ----------------------------------------------------- */

#define BOC_SIDE 8
#define BOC_FEAT (BOC_SIDE * BOC_SIDE * 3 + 1)

static uint32_t next_cp(const unsigned char **p) {
    const unsigned char *s = *p;
    uint32_t c = s[0];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (n > 1) {
        c &= 0x7fu >> n;
        for (int k = 1; k < n; k++) {
            if (!s[k]) return *p += k, 0xfffd;
            c = (c << 6) | (s[k] & 0x3f);
        }
    }
    *p += n;
    return c;
}

/* Character -> column, from the training captions (open addressing over code points). */
typedef struct cmap {
    uint32_t *key;
    int64_t *val, cap, n;
} cmap;

static int64_t cmap_get(const cmap *m, uint32_t c) {
    for (int64_t h = (int64_t)((c * 2654435761u) & (uint32_t)(m->cap - 1));; h = (h + 1) & (m->cap - 1)) {
        if (m->key[h] == c) return m->val[h];
        if (m->key[h] == 0) return -1;
    }
}

static void cmap_add(cmap *m, uint32_t c) {
    int64_t h = (int64_t)((c * 2654435761u) & (uint32_t)(m->cap - 1));
    while (m->key[h] && m->key[h] != c) h = (h + 1) & (m->cap - 1);
    if (!m->key[h]) m->key[h] = c, m->val[h] = m->n++;
}

static void boc_vector(const cmap *m, const char *text, float *v) {
    memset(v, 0, (size_t)m->n * sizeof(float));
    for (const unsigned char *p = (const unsigned char *)text; *p;) {
        uint32_t c = next_cp(&p);
        int64_t j = c > 0x20 ? cmap_get(m, c) : -1;
        if (j >= 0) v[j] += 1;
    }
    double s = 0;
    for (int64_t j = 0; j < m->n; j++) s += (double)v[j] * v[j];
    for (int64_t j = 0; s > 0 && j < m->n; j++) v[j] = (float)(v[j] / sqrt(s));
}

static void pixel_features(const uint8_t *px, int S, double *f) {
    uint8_t small[BOC_SIDE * BOC_SIDE * 3];
    ld_image_resize(px, S, S, small, BOC_SIDE, BOC_SIDE);
    for (int i = 0; i < BOC_SIDE * BOC_SIDE * 3; i++) f[i] = small[i] / 255.0 - 0.5;
    f[BOC_FEAT - 1] = 1.0;
}

/* Solves A x = b for symmetric positive definite A [n, n] (Cholesky, in place), m right-hand
 * sides b [n, m]. */
static bool cholesky_solve(double *A, int64_t n, double *b, int64_t m) {
    for (int64_t j = 0; j < n; j++) {
        double d = A[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
        if (!(d > 0)) return false;
        A[j * n + j] = sqrt(d);
        for (int64_t i = j + 1; i < n; i++) {
            double s = A[i * n + j];
            for (int64_t k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
            A[i * n + j] = s / A[j * n + j];
        }
    }
    for (int64_t c = 0; c < m; c++) {
        for (int64_t i = 0; i < n; i++) {
            double s = b[i * m + c];
            for (int64_t k = 0; k < i; k++) s -= A[i * n + k] * b[k * m + c];
            b[i * m + c] = s / A[i * n + i];
        }
        for (int64_t i = n - 1; i >= 0; i--) {
            double s = b[i * m + c];
            for (int64_t k = i + 1; k < n; k++) s -= A[k * n + i] * b[k * m + c];
            b[i * m + c] = s / A[i * n + i];
        }
    }
    return true;
}

ld_status ld_retrieval_boc_baseline(ld_ctx *ctx, const ld_clip_pairs *train, const ld_clip_pairs *test, double ridge,
                                    float **img_out, float **txt_out, int64_t *dim) {
    if (!train || !test || !img_out || !txt_out || !dim) return ld_error(ctx, LD_ERR_INVALID_ARG, "boc baseline: NULL argument");
    *img_out = *txt_out = NULL;
    const ld_clip_pairs *sets[2] = {train, test};
    cmap m = {.cap = 1 << 16};
    m.key = calloc((size_t)m.cap, sizeof *m.key), m.val = calloc((size_t)m.cap, sizeof *m.val);
    for (int k = 0; m.key && k < train->n_sets; k++)
        for (int64_t i = 0; i < ld_image_set_count(train->sets[k]); i++)
            for (const unsigned char *p = (const unsigned char *)ld_image_set_caption(train->sets[k], i); *p;) {
                uint32_t c = next_cp(&p);
                if (c > 0x20 && m.n < m.cap / 2) cmap_add(&m, c);
            }
    int64_t D = m.n, F = BOC_FEAT, n = train->n;
    double *A = calloc((size_t)(F * F), sizeof *A), *B = calloc((size_t)(F * D), sizeof *B), f[BOC_FEAT];
    float *y = malloc((size_t)(D ? D : 1) * sizeof *y);
    float *img = malloc((size_t)(test->n * D + 1) * sizeof *img), *txt = malloc((size_t)(test->n * D + 1) * sizeof *txt);
    ld_status st = LD_OK;
    if (!m.key || !m.val || !A || !B || !y || !img || !txt) st = ld_error(ctx, LD_ERR_NOMEM, "boc baseline: out of memory");
    /* normal equations (X^T X + ridge I) W = X^T Y over the training pairs */
    for (int k = 0; !st && k < train->n_sets; k++)
        for (int64_t i = 0; i < ld_image_set_count(train->sets[k]); i++) {
            pixel_features(ld_image_set_pixels(train->sets[k], i), ld_image_set_size(train->sets[k]), f);
            boc_vector(&m, ld_image_set_caption(train->sets[k], i), y);
            for (int64_t a = 0; a < F; a++) {
                for (int64_t b = 0; b < F; b++) A[a * F + b] += f[a] * f[b];
                for (int64_t d = 0; d < D; d++) B[a * D + d] += f[a] * y[d];
            }
        }
    for (int64_t a = 0; !st && a < F; a++) A[a * F + a] += ridge;
    if (!st && !cholesky_solve(A, F, B, D)) st = ld_error(ctx, LD_ERR_NUMERIC, "boc baseline: singular system");
    for (int k = 0, row = 0; !st && k < sets[1]->n_sets; k++)
        for (int64_t i = 0; i < ld_image_set_count(test->sets[k]); i++, row++) {
            pixel_features(ld_image_set_pixels(test->sets[k], i), ld_image_set_size(test->sets[k]), f);
            double s = 0;
            for (int64_t d = 0; d < D; d++) {
                double v = 0;
                for (int64_t a = 0; a < F; a++) v += f[a] * B[a * D + d];
                img[row * D + d] = (float)v, s += v * v;
            }
            for (int64_t d = 0; s > 0 && d < D; d++) img[row * D + d] = (float)(img[row * D + d] / sqrt(s));
            boc_vector(&m, ld_image_set_caption(test->sets[k], i), txt + row * D);
        }
    (void)n;
    free(m.key), free(m.val), free(A), free(B), free(y);
    if (st) {
        free(img), free(txt);
        return st;
    }
    *img_out = img, *txt_out = txt, *dim = D;
    return LD_OK;
}

/* ---- zero-shot classification ------------------------------------------------------------ */

ld_status ld_clip_zero_shot(ld_clip *m, const ld_tokenizer *tok, const char *const *prompts, int64_t n_labels,
                            const uint8_t *const *images, int64_t n, int64_t *pred, float *score) {
    if (!m || !tok || !prompts || n_labels <= 0 || (!images && n) || (!pred && n))
        return ld_error(ld_clip_ctx(m), LD_ERR_INVALID_ARG, "zero-shot: bad argument");
    int64_t E = ld_clip_config_of(m)->embed_dim;
    float *te = malloc((size_t)(n_labels * E) * sizeof *te), *ie = malloc((size_t)((n ? n : 1) * E) * sizeof *ie);
    ld_status st = te && ie ? LD_OK : ld_error(ld_clip_ctx(m), LD_ERR_NOMEM, "zero-shot: out of memory");
    if (!st) st = ld_clip_embed_texts(m, tok, prompts, n_labels, te);
    if (!st) st = ld_clip_embed_images(m, images, n, ie);
    for (int64_t i = 0; !st && i < n; i++) {
        double best = -INFINITY;
        for (int64_t l = 0; l < n_labels; l++) {
            double s = 0;
            for (int64_t e = 0; e < E; e++) s += (double)ie[i * E + e] * te[l * E + e];
            if (s > best) best = s, pred[i] = l;
        }
        if (score) score[i] = (float)best;
    }
    free(te), free(ie);
    return st;
}

/* quant/quant_iq_quantize.c — quantizers for the grid i-quants IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS and IQ3_S (liandan's own search; the decoding they target is GGML's,
 * quant_iq23.c, and the grids are quant_grids.c's).
 *
 * Each format codes a super-block of 256 weights as: signs per 8 weights (IQ2_XXS, IQ2_XS,
 * IQ3_XXS: 7 bits, the 8th makes the number of minus signs even; IQ2_S, IQ3_S: 8 bits),
 * magnitudes as points of a grid of 8- or 4-vectors of small levels, a scale per 16 or 32
 * weights db = d * (2 ls + 1) * f with a 4-bit ls, and one fp16 d. The quantizer minimises
 * the importance-weighted squared error sum w_e (x_e - y_e)^2 (w_e = imatrix_e *
 * sqrt(sigma2 + x_e^2), as for the other low-bit types) in three steps:
 *   1. signs: sign(x) per weight; where the format needs an even number of minus signs and
 *      a group of 8 has an odd one, the weight with the smallest w x^2 takes the wrong
 *      sign (its target magnitude becomes -|x|, so the search gives it the smallest level);
 *   2. per 16 / 32 weights a scale s and grid points: a fan of candidate scales around
 *      max|x| / (largest level); for each, every group's best point, then s refit by
 *      weighted least squares; the best candidate is refined twice (points, refit);
 *   3. d and the ls: the scale of scales chosen by the same kind of search, each sub-block
 *      scale weighted by its curvature sum w v^2; then every group's point is searched again
 *      for its scale as decoded.
 * The best point of a group for a scale s: each coordinate rounded to its nearest level
 * gives the weighted optimum over all level vectors (the error is separable); when that
 * vector is a grid point it is the answer, else the answer is taken among the NB grid
 * points nearest to it (a table per grid, built once on first use: for every level vector,
 * its NB nearest points by plain squared distance), compared by weighted error. */
#include <math.h>
#include <pthread.h>
#include <string.h>

#include "quant/quant_blocks.h"

#define NB 24         /* candidate points per off-grid level vector */
#define MAX_KEYS 6561 /* 3^8 (IQ2: 8 coordinates of 3 levels); IQ3: 8^4 = 4096 */
#define MAX_PTS 2048

/* ---- grids and their neighbour tables ------------------------------------------------------ */
typedef struct grid {
    int dim, nlev, npts, nkeys;
    uint8_t lev[8];                   /* the level values, ascending */
    uint8_t pt[MAX_PTS][8];           /* point p, coordinate j: level value */
    int16_t exact[MAX_KEYS];          /* the point whose level vector is key, else -1 */
    uint16_t near[MAX_KEYS][NB];      /* the NB nearest points to key's level vector */
    pthread_once_t once;
    void (*fill)(struct grid *g);     /* pt[] and lev[] from quant_grids.c */
} grid;

static int level_index(const grid *g, uint8_t v) {
    for (int l = 0; l < g->nlev; l++)
        if (g->lev[l] == v) return l;
    return -1;
}

static void fill_u64(grid *g, const uint64_t *src) {
    for (int p = 0; p < g->npts; p++)
        for (int j = 0; j < 8; j++) g->pt[p][j] = (uint8_t)(src[p] >> (8 * j));
}
static void fill_u32(grid *g, const uint32_t *src) {
    for (int p = 0; p < g->npts; p++)
        for (int j = 0; j < 4; j++) g->pt[p][j] = (uint8_t)(src[p] >> (8 * j));
}
static void fill_iq2xxs(grid *g) {
    fill_u64(g, ld_iq2xxs_grid);
}
static void fill_iq2xs(grid *g) {
    fill_u64(g, ld_iq2xs_grid);
}
static void fill_iq2s(grid *g) {
    fill_u64(g, ld_iq2s_grid);
}
static void fill_iq3xxs(grid *g) {
    fill_u32(g, ld_iq3xxs_grid);
}
static void fill_iq3s(grid *g) {
    fill_u32(g, ld_iq3s_grid);
}

static void fill_iq1s(grid *g) { /* coordinates -1, 0, 1 stored as levels 0, 1, 2 */
    for (int p = 0; p < g->npts; p++)
        for (int j = 0; j < 8; j++) g->pt[p][j] = (uint8_t)((int8_t)(uint8_t)(ld_iq1s_grid[p] >> (8 * j)) + 1);
}

static void grid_build(grid *g) {
    g->fill(g);
    g->nkeys = 1;
    for (int j = 0; j < g->dim; j++) g->nkeys *= g->nlev;
    for (int k = 0; k < g->nkeys; k++) g->exact[k] = -1;
    for (int p = 0; p < g->npts; p++) {
        int key = 0;
        for (int j = g->dim - 1; j >= 0; j--) key = key * g->nlev + level_index(g, g->pt[p][j]);
        g->exact[key] = (int16_t)p;
    }
    for (int k = 0; k < g->nkeys; k++) {
        if (g->exact[k] >= 0) continue;
        int v[8], dist[NB], n = 0;
        for (int j = 0, r = k; j < g->dim; j++, r /= g->nlev) v[j] = g->lev[r % g->nlev];
        for (int p = 0; p < g->npts; p++) { /* insertion into the NB nearest, ties to the lower index */
            int d2 = 0;
            for (int j = 0; j < g->dim; j++) d2 += (v[j] - g->pt[p][j]) * (v[j] - g->pt[p][j]);
            if (n == NB && d2 >= dist[NB - 1]) continue;
            int i = n < NB ? n++ : NB - 1;
            while (i > 0 && dist[i - 1] > d2) dist[i] = dist[i - 1], g->near[k][i] = g->near[k][i - 1], i--;
            dist[i] = d2, g->near[k][i] = (uint16_t)p;
        }
    }
}

#define GRID(name, dim_, nlev_, npts_, ...) \
    static grid name = {.dim = dim_, .nlev = nlev_, .npts = npts_, .lev = {__VA_ARGS__}, .once = PTHREAD_ONCE_INIT, .fill = fill_##name}
GRID(iq2xxs, 8, 3, 256, 8, 25, 43);
GRID(iq2xs, 8, 3, 512, 8, 25, 43);
GRID(iq2s, 8, 3, 1024, 8, 25, 43);
GRID(iq3xxs, 4, 8, 256, 4, 12, 20, 28, 36, 44, 52, 62);
GRID(iq3s, 4, 8, 512, 1, 3, 5, 7, 9, 11, 13, 15);
GRID(iq1s, 8, 3, 2048, 0, 1, 2);
#undef GRID

static void build_iq2xxs(void) {
    grid_build(&iq2xxs);
}
static void build_iq2xs(void) {
    grid_build(&iq2xs);
}
static void build_iq2s(void) {
    grid_build(&iq2s);
}
static void build_iq3xxs(void) {
    grid_build(&iq3xxs);
}
static void build_iq3s(void) {
    grid_build(&iq3s);
}
static void build_iq1s(void) {
    grid_build(&iq1s);
}

/* The point of grid g nearest (by weighted error) to s * point ~ a (dim values, weights w);
 * stores the error sum w (a - s v)^2. */
static int best_point(const grid *g, float s, const float *a, const float *w, float *err) {
    int key = 0;
    const float is = s > 0 ? 1.0f / s : 0.0f;
    for (int j = g->dim - 1; j >= 0; j--) {
        const float t = a[j] * is;
        int l = 0;
        while (l + 1 < g->nlev && t > 0.5f * (float)(g->lev[l] + g->lev[l + 1])) l++;
        key = key * g->nlev + l;
    }
    const int ex = g->exact[key];
    const uint16_t *cand = ex >= 0 ? NULL : g->near[key];
    int best = ex >= 0 ? ex : cand[0];
    float best_e = INFINITY;
    for (int c = 0; c < (ex >= 0 ? 1 : NB); c++) {
        const int p = ex >= 0 ? ex : cand[c];
        float e = 0;
        for (int j = 0; j < g->dim; j++) {
            const float d = a[j] - s * (float)g->pt[p][j];
            e += w[j] * d * d;
        }
        if (e < best_e) best_e = e, best = p;
    }
    *err = best_e;
    return best;
}

/* Points for n weights (n / dim groups) at scale s; returns the least-squares scale for
 * those points and stores its score (sum w a v)^2 / sum w v^2 (larger = smaller error). */
static float assign(const grid *g, int n, float s, const float *a, const float *w, uint16_t *idx, double *score) {
    double sav = 0, svv = 0;
    for (int k = 0; k < n / g->dim; k++) {
        float e;
        const int p = best_point(g, s, a + k * g->dim, w + k * g->dim, &e);
        idx[k] = (uint16_t)p;
        for (int j = 0; j < g->dim; j++) {
            const double v = g->pt[p][j];
            sav += (double)w[k * g->dim + j] * a[k * g->dim + j] * v;
            svv += (double)w[k * g->dim + j] * v * v;
        }
    }
    *score = svv > 0 && sav > 0 ? sav * sav / svv : 0;
    return svv > 0 && sav > 0 ? (float)(sav / svv) : 0.0f;
}

/* Step 2 for one sub-block of n weights: returns s (0 for an all-zero sub-block), the
 * points in idx and the curvature sum w v^2 in *curv. */
static float search_subblock(const grid *g, int n, const float *a, const float *w, uint16_t *idx, float *curv) {
    float amax = 0;
    for (int e = 0; e < n; e++) amax = fmaxf(amax, a[e]);
    uint16_t t[32];
    const int np = n / g->dim;
    double best = 0, score;
    float best_s = 0;
    assign(g, n, 0.0f, a, w, idx, &score); /* the smallest points: the answer when all is 0 */
    if (amax > 1e-30f) {
        const float s0 = amax / (float)g->lev[g->nlev - 1];
        for (int c = -8; c <= 8; c++) {
            const float s = assign(g, n, s0 * (1.0f + 0.05f * (float)c), a, w, t, &score);
            if (score > best) best = score, best_s = s, memcpy(idx, t, (size_t)np * sizeof *t);
        }
        for (int it = 0; it < 2 && best_s > 0; it++) {
            const float s = assign(g, n, best_s, a, w, t, &score);
            if (score <= best) break;
            best = score, best_s = s, memcpy(idx, t, (size_t)np * sizeof *t);
        }
    }
    double c = 0;
    for (int k = 0; k < n / g->dim; k++)
        for (int j = 0; j < g->dim; j++) c += (double)w[k * g->dim + j] * g->pt[idx[k]][j] * g->pt[idx[k]][j];
    *curv = (float)c;
    return best_s;
}

/* ---- the formats --------------------------------------------------------------------------- */
/* One super-block as coded: a point per group of dim weights, signs per 8 (bit j = weight
 * 8k + j negative), ls per 16 weights, d. */
typedef struct iq_code {
    uint16_t idx[64];
    uint8_t signs[32];
    uint8_t ls[16];
    uint16_t d;
} iq_code;

static void pack_iq2_xxs(const iq_code *c, void *blk) {
    ld_block_iq2_xxs *b = blk;
    b->d = c->d;
    for (int ib = 0; ib < 8; ib++) {
        uint32_t idx = 0, sg = (uint32_t)c->ls[2 * ib] << 28;
        for (int l = 0; l < 4; l++) {
            idx |= (uint32_t)c->idx[4 * ib + l] << (8 * l);
            sg |= (uint32_t)(c->signs[4 * ib + l] & 127) << (7 * l);
        }
        b->qs[4 * ib] = (uint16_t)idx, b->qs[4 * ib + 1] = (uint16_t)(idx >> 16);
        b->qs[4 * ib + 2] = (uint16_t)sg, b->qs[4 * ib + 3] = (uint16_t)(sg >> 16);
    }
}

static void pack_iq2_xs(const iq_code *c, void *blk) {
    ld_block_iq2_xs *b = blk;
    b->d = c->d;
    for (int k = 0; k < 32; k++) b->qs[k] = (uint16_t)(c->idx[k] | (c->signs[k] & 127) << 9);
    for (int g = 0; g < 8; g++) b->scales[g] = (uint8_t)(c->ls[2 * g] | c->ls[2 * g + 1] << 4);
}

static void pack_iq2_s(const iq_code *c, void *blk) {
    ld_block_iq2_s *b = blk;
    b->d = c->d;
    memset(b->qh, 0, sizeof b->qh);
    for (int k = 0; k < 32; k++) {
        b->qs[k] = (uint8_t)c->idx[k];
        b->qh[k / 4] |= (uint8_t)((c->idx[k] >> 8) << (2 * (k % 4)));
        b->qs[32 + k] = c->signs[k];
    }
    for (int g = 0; g < 8; g++) b->scales[g] = (uint8_t)(c->ls[2 * g] | c->ls[2 * g + 1] << 4);
}

static void pack_iq3_xxs(const iq_code *c, void *blk) {
    ld_block_iq3_xxs *b = blk;
    b->d = c->d;
    for (int h = 0; h < 64; h++) b->qs[h] = (uint8_t)c->idx[h];
    for (int ib = 0; ib < 8; ib++) {
        uint32_t sg = (uint32_t)c->ls[2 * ib] << 28;
        for (int l = 0; l < 4; l++) sg |= (uint32_t)(c->signs[4 * ib + l] & 127) << (7 * l);
        memcpy(b->qs + 64 + 4 * ib, &sg, 4);
    }
}

static void pack_iq3_s(const iq_code *c, void *blk) {
    ld_block_iq3_s *b = blk;
    b->d = c->d;
    memset(b->qh, 0, sizeof b->qh);
    memset(b->scales, 0, sizeof b->scales);
    for (int h = 0; h < 64; h++) {
        b->qs[h] = (uint8_t)c->idx[h];
        b->qh[h / 8] |= (uint8_t)((c->idx[h] >> 8) << (h % 8));
    }
    memcpy(b->signs, c->signs, 32);
    for (int ib = 0; ib < 8; ib++) b->scales[ib / 2] |= (uint8_t)(c->ls[2 * ib] << (4 * (ib % 2)));
}

typedef struct iq_qformat {
    grid *g;
    void (*build)(void);
    int sub;     /* weights per scale: 16 or 32 */
    bool parity; /* 7 sign bits per 8 weights, an even number of minus signs */
    float f;     /* db = d * (2 ls + 1) * f */
    size_t block_bytes;
    void (*pack)(const iq_code *c, void *blk);
} iq_qformat;

static const iq_qformat IQ2_XXS = {&iq2xxs, build_iq2xxs, 32, true, 0.125f, sizeof(ld_block_iq2_xxs), pack_iq2_xxs};
static const iq_qformat IQ2_XS = {&iq2xs, build_iq2xs, 16, true, 0.125f, sizeof(ld_block_iq2_xs), pack_iq2_xs};
static const iq_qformat IQ2_S = {&iq2s, build_iq2s, 16, false, 0.125f, sizeof(ld_block_iq2_s), pack_iq2_s};
static const iq_qformat IQ3_XXS = {&iq3xxs, build_iq3xxs, 32, true, 0.25f, sizeof(ld_block_iq3_xxs), pack_iq3_xxs};
static const iq_qformat IQ3_S = {&iq3s, build_iq3s, 32, false, 1.0f, sizeof(ld_block_iq3_s), pack_iq3_s};

/* Step 3: d and the ls (0..lsmax) for sub-block scales s[nsub] ~ d * (2 ls + 1) * f with
 * curvatures cv[nsub]; returns the decoded d, stores it as fp16 in *dh and fills ls. */
static float scale_of_scales(int lsmax, float f, int nsub, const float *s, const float *cv, uint8_t *ls, uint16_t *dh) {
    float smax = 0;
    for (int b = 0; b < nsub; b++) smax = fmaxf(smax, s[b]);
    memset(ls, 0, 16);
    *dh = 0;
    if (!(smax > 0)) return 0.0f;
    double best_err = INFINITY;
    float best_d = 0;
    uint8_t t[16];
    for (int c = -6; c <= 6; c++) {
        float d = smax / ((float)(2 * lsmax + 1) * f) * (1.0f + 0.03f * (float)c);
        for (int it = 0; it < 2; it++) { /* round, then refit d to the rounded ls */
            double num = 0, den = 0, err = 0;
            for (int b = 0; b < nsub; b++) {
                const int l = ld_quant_nearest((s[b] / (d * f) - 1.0f) * 0.5f);
                t[b] = (uint8_t)(l < 0 ? 0 : l > lsmax ? lsmax : l);
                const double u = (2.0 * t[b] + 1) * f;
                num += (double)cv[b] * s[b] * u, den += (double)cv[b] * u * u;
            }
            const float dh_f = ld_fp16_to_fp32(ld_fp32_to_fp16(d));
            for (int b = 0; b < nsub; b++) {
                const double e = s[b] - dh_f * (2.0 * t[b] + 1) * f;
                err += cv[b] * e * e;
            }
            if (err < best_err) best_err = err, best_d = d, memcpy(ls, t, (size_t)nsub);
            if (!(den > 0) || !(num > 0)) break;
            d = (float)(num / den);
        }
    }
    *dh = ld_fp32_to_fp16(best_d);
    return ld_fp16_to_fp32(*dh);
}

static void quantize_row(const iq_qformat *F, const float *x, void *y, int64_t n, const float *imat) {
    pthread_once(&F->g->once, F->build);
    const grid *g = F->g;
    const int nsub = LD_QK_K / F->sub;
    for (int64_t i = 0; i < n / LD_QK_K; i++, x += LD_QK_K) {
        float w[LD_QK_K], a[LD_QK_K], s[16], cv[16];
        iq_code c;
        ld_quant_element_weights(x, imat ? imat + i * LD_QK_K : NULL, LD_QK_K, 2.0f, w);
        for (int k = 0; k < 32; k++) { /* step 1: signs */
            uint8_t sg = 0;
            for (int j = 0; j < 8; j++) {
                a[8 * k + j] = fabsf(x[8 * k + j]);
                if (x[8 * k + j] < 0) sg |= (uint8_t)(1 << j);
            }
            if (F->parity && __builtin_popcount(sg) % 2) {
                int jmin = 0;
                for (int j = 1; j < 8; j++)
                    if (w[8 * k + j] * a[8 * k + j] * a[8 * k + j] < w[8 * k + jmin] * a[8 * k + jmin] * a[8 * k + jmin]) jmin = j;
                sg ^= (uint8_t)(1 << jmin);
                a[8 * k + jmin] = -a[8 * k + jmin];
            }
            c.signs[k] = sg;
        }
        float ones[32];
        for (int e = 0; e < 32; e++) ones[e] = 1.0f;
        const float *wb[16];
        for (int b = 0; b < nsub; b++) { /* step 2 (a sub-block whose weights are all 0 counts every weight once) */
            float sw = 0;
            for (int e = 0; e < F->sub; e++) sw += w[b * F->sub + e];
            wb[b] = sw > 0 ? w + b * F->sub : ones;
            s[b] = search_subblock(g, F->sub, a + b * F->sub, wb[b], c.idx + b * F->sub / g->dim, &cv[b]);
        }
        uint8_t ls[16];
        const float d = scale_of_scales(15, F->f, nsub, s, cv, ls, &c.d);
        for (int b = 0; b < nsub; b++) { /* the points again, for the scales as decoded */
            for (int q = 0; q < F->sub / 16; q++) c.ls[b * (F->sub / 16) + q] = ls[b];
            const float sd = d * (float)(2 * ls[b] + 1) * F->f;
            double score;
            if (sd > 0) assign(g, F->sub, sd, a + b * F->sub, wb[b], c.idx + b * F->sub / g->dim, &score);
        }
        F->pack(&c, (uint8_t *)y + i * F->block_bytes);
    }
}

#define IQ_QUANTIZER(name, F)                                                          \
    void ld_quantize_row_##name##_ref(const float *x, void *y, int64_t n, const float *imat) { \
        quantize_row(&F, x, y, n, imat);                                                 \
    }
IQ_QUANTIZER(iq2_xxs, IQ2_XXS)
IQ_QUANTIZER(iq2_xs, IQ2_XS)
IQ_QUANTIZER(iq2_s, IQ2_S)
IQ_QUANTIZER(iq3_xxs, IQ3_XXS)
IQ_QUANTIZER(iq3_s, IQ3_S)
#undef IQ_QUANTIZER

/* ---- IQ1_S, IQ1_M ---------------------------------------------------------------------------
 * value = s * (grid + delta), grid in {-1, 0, 1}^8, delta = +-1/8 per 32 weights (IQ1_S) or
 * per 8 (IQ1_M), s = d * (2 ls + 1) with a 3-bit ls per 32 (IQ1_S) or 16 (IQ1_M) weights.
 * No signs: the grid is signed. With the grid stored as levels 0..2 (grid + 1), s * (grid +
 * delta) = s * level - s * (1 - delta), so the best point for s and delta is best_point's
 * for the target x + s * (1 - delta). Per sub-block: a fan of scales from 0.15 to 1 times
 * max|x| (ternary levels fit best well below the largest weight); for each, each delta
 * group's better delta and points, then s refit by least squares; the best refined twice. */
typedef struct iq1_qformat {
    int sub;    /* weights per ls: 32 or 16 */
    int dgroup; /* weights per delta sign: 32 or 8 */
    size_t block_bytes;
    void (*pack)(const iq_code *c, const uint8_t *dneg, void *blk);
} iq1_qformat;

/* Points and delta signs for n weights at scale s; returns the least-squares scale for them
 * and stores its score (sum w x v)^2 / sum w v^2, v = grid + delta, and sum w v^2. */
static float assign_iq1(const iq1_qformat *F, int n, float s, const float *x, const float *w, uint16_t *idx, uint8_t *dneg,
                        double *score, double *curv) {
    const grid *g = &iq1s;
    double sxv = 0, svv = 0;
    for (int q = 0; q < n / F->dgroup; q++) {
        float best_e = INFINITY;
        for (int neg = 0; neg < 2; neg++) {
            const float delta = neg ? -LD_IQ1_DELTA : LD_IQ1_DELTA;
            float e = 0, t[8];
            uint16_t id[4];
            for (int k = 0; k < F->dgroup / 8; k++) {
                const float *xk = x + q * F->dgroup + 8 * k;
                for (int j = 0; j < 8; j++) t[j] = xk[j] + s * (1.0f - delta);
                float ek;
                id[k] = (uint16_t)best_point(g, s, t, w + q * F->dgroup + 8 * k, &ek);
                e += ek;
            }
            if (e < best_e) {
                best_e = e;
                dneg[q] = (uint8_t)neg;
                memcpy(idx + q * F->dgroup / 8, id, (size_t)(F->dgroup / 8) * sizeof id[0]);
            }
        }
        const float delta = dneg[q] ? -LD_IQ1_DELTA : LD_IQ1_DELTA;
        for (int e = q * F->dgroup; e < (q + 1) * F->dgroup; e++) {
            const double v = (double)g->pt[idx[e / 8]][e % 8] - 1 + delta;
            sxv += (double)w[e] * x[e] * v, svv += (double)w[e] * v * v;
        }
    }
    *curv = svv;
    *score = svv > 0 && sxv > 0 ? sxv * sxv / svv : 0;
    return svv > 0 && sxv > 0 ? (float)(sxv / svv) : 0.0f;
}

static float search_iq1(const iq1_qformat *F, const float *x, const float *w, uint16_t *idx, uint8_t *dneg, float *curv) {
    const int n = F->sub;
    float amax = 0;
    for (int e = 0; e < n; e++) amax = fmaxf(amax, fabsf(x[e]));
    uint16_t t[4];
    uint8_t tn[4];
    const size_t ni = (size_t)(n / 8) * sizeof t[0], nd = (size_t)(n / F->dgroup); /* bytes of points, delta signs */
    double best = 0, score, cv, best_cv = 0;
    float best_s = 0;
    assign_iq1(F, n, 0.0f, x, w, idx, dneg, &score, &cv);
    if (amax > 1e-30f) {
        for (int c = 0; c <= 17; c++) {
            const float s = assign_iq1(F, n, amax * (0.15f + 0.05f * (float)c), x, w, t, tn, &score, &cv);
            if (score > best) best = score, best_s = s, best_cv = cv, memcpy(idx, t, ni), memcpy(dneg, tn, nd);
        }
        for (int it = 0; it < 2 && best_s > 0; it++) {
            const float s = assign_iq1(F, n, best_s, x, w, t, tn, &score, &cv);
            if (score <= best) break;
            best = score, best_s = s, best_cv = cv, memcpy(idx, t, ni), memcpy(dneg, tn, nd);
        }
    }
    *curv = (float)best_cv;
    return best_s;
}

static void pack_iq1_s(const iq_code *c, const uint8_t *dneg, void *blk) {
    ld_block_iq1_s *b = blk;
    b->d = c->d;
    for (int ib = 0; ib < 8; ib++) b->qh[ib] = (uint16_t)(c->ls[2 * ib] << 12 | dneg[ib] << 15);
    for (int k = 0; k < 32; k++) {
        b->qs[k] = (uint8_t)c->idx[k];
        b->qh[k / 4] |= (uint16_t)(((c->idx[k] >> 8) & 7) << (3 * (k % 4)));
    }
}

static void pack_iq1_m(const iq_code *c, const uint8_t *dneg, void *blk) {
    ld_block_iq1_m *b = blk;
    memset(b->qh, 0, sizeof b->qh);
    for (int k = 0; k < 32; k++) {
        b->qs[k] = (uint8_t)c->idx[k];
        b->qh[k / 2] |= (uint8_t)((((c->idx[k] >> 8) & 7) | dneg[k] << 3) << (4 * (k % 2)));
    }
    uint16_t sc[4] = {0, 0, 0, 0};
    for (int g = 0; g < 16; g++) sc[g / 4] |= (uint16_t)(c->ls[g] << (3 * (g % 4)));
    for (int w = 0; w < 4; w++) sc[w] |= (uint16_t)(((c->d >> (4 * w)) & 0xF) << 12);
    memcpy(b->scales, sc, sizeof sc);
}

static const iq1_qformat IQ1_S = {32, 32, sizeof(ld_block_iq1_s), pack_iq1_s};
static const iq1_qformat IQ1_M = {16, 8, sizeof(ld_block_iq1_m), pack_iq1_m};

static void quantize_row_iq1(const iq1_qformat *F, const float *x, void *y, int64_t n, const float *imat) {
    pthread_once(&iq1s.once, build_iq1s);
    const int nsub = LD_QK_K / F->sub, nd = F->sub / F->dgroup; /* delta signs per sub-block */
    for (int64_t i = 0; i < n / LD_QK_K; i++, x += LD_QK_K) {
        float w[LD_QK_K], s[16], cv[16], ones[32];
        uint8_t dneg[32], ls[16];
        iq_code c;
        ld_quant_element_weights(x, imat ? imat + i * LD_QK_K : NULL, LD_QK_K, 2.0f, w);
        for (int e = 0; e < 32; e++) ones[e] = 1.0f;
        const float *wb[16];
        for (int b = 0; b < nsub; b++) {
            float sw = 0;
            for (int e = 0; e < F->sub; e++) sw += w[b * F->sub + e];
            wb[b] = sw > 0 ? w + b * F->sub : ones;
            s[b] = search_iq1(F, x + b * F->sub, wb[b], c.idx + b * F->sub / 8, dneg + b * nd, &cv[b]);
        }
        const float d = scale_of_scales(7, 1.0f, nsub, s, cv, ls, &c.d);
        for (int b = 0; b < nsub; b++) { /* points and deltas again, for the scales as decoded */
            for (int q = 0; q < F->sub / 16; q++) c.ls[b * (F->sub / 16) + q] = ls[b];
            const float sd = d * (float)(2 * ls[b] + 1);
            double score, curv;
            if (sd > 0) assign_iq1(F, F->sub, sd, x + b * F->sub, wb[b], c.idx + b * F->sub / 8, dneg + b * nd, &score, &curv);
        }
        F->pack(&c, dneg, (uint8_t *)y + i * F->block_bytes);
    }
}

void ld_quantize_row_iq1_s_ref(const float *x, void *y, int64_t n, const float *imat) {
    quantize_row_iq1(&IQ1_S, x, y, n, imat);
}
void ld_quantize_row_iq1_m_ref(const float *x, void *y, int64_t n, const float *imat) {
    quantize_row_iq1(&IQ1_M, x, y, n, imat);
}

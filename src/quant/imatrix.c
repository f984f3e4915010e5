/* quant/imatrix.c — importance matrices: per matrix, the mean squared activation of each
 * input column over a calibration text. Quantizers weight their error by it, so the columns
 * that carry large activations are kept more precisely.
 *
 * The file is llama.cpp's imatrix GGUF: for a matrix named N (its GGUF tensor name), an F32
 * tensor "N.in_sum2" of shape [1, K] (sums of squares) and "N.counts" of shape [1] (rows
 * seen); keys general.type = "imatrix", imatrix.datasets, imatrix.chunk_count,
 * imatrix.chunk_size. Importance = in_sum2 / counts. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/io.h"
#include "liandan/quant.h"

typedef struct im_entry {
    char *name;
    int64_t K;
    double *sum2;   /* K sums of squares (double: long calibration runs) */
    double count;   /* rows accumulated */
    float *mean;    /* K importances, filled by ld_imatrix_get */
} im_entry;

struct ld_imatrix {
    ld_ctx *ctx;
    im_entry *e;
    int n, cap;
    int64_t chunks, chunk_size;
    char *dataset;
};

ld_status ld_imatrix_new(ld_ctx *ctx, ld_imatrix **out) {
    if (!out) return LD_ERR_INVALID_ARG;
    if (!(*out = ld_calloc(ctx, 1, sizeof **out))) return ld_ctx_status(ctx);
    (*out)->ctx = ctx;
    return LD_OK;
}

void ld_imatrix_free(ld_imatrix *im) {
    if (!im) return;
    for (int i = 0; i < im->n; i++) {
        ld_free(im->ctx, im->e[i].name), ld_free(im->ctx, im->e[i].sum2), ld_free(im->ctx, im->e[i].mean);
    }
    ld_free(im->ctx, im->e);
    ld_free(im->ctx, im->dataset);
    ld_free(im->ctx, im);
}

int ld_imatrix_count(const ld_imatrix *im) {
    return im ? im->n : 0;
}

static im_entry *find(const ld_imatrix *im, const char *name) {
    for (int i = 0; i < im->n; i++)
        if (!strcmp(im->e[i].name, name)) return &im->e[i];
    return NULL;
}

/* The entry for name with K columns, created when new. */
static ld_status entry(ld_imatrix *im, const char *name, int64_t K, im_entry **out) {
    ld_ctx *ctx = im->ctx;
    im_entry *e = find(im, name);
    if (e) {
        if (e->K != K)
            return ld_error(ctx, LD_ERR_SHAPE, "imatrix: %s has %lld columns, given %lld", name, (long long)e->K, (long long)K);
        return *out = e, LD_OK;
    }
    if (im->n == im->cap) {
        int cap = im->cap ? 2 * im->cap : 32;
        im_entry *ne = ld_calloc(ctx, (size_t)cap, sizeof *ne);
        if (!ne) return ld_ctx_status(ctx);
        if (im->n) memcpy(ne, im->e, (size_t)im->n * sizeof *ne);
        ld_free(ctx, im->e);
        im->e = ne, im->cap = cap;
    }
    e = &im->e[im->n];
    *e = (im_entry){.name = ld_strdup(ctx, name), .K = K, .sum2 = ld_calloc(ctx, (size_t)K, sizeof(double))};
    if (!e->name || !e->sum2) {
        ld_free(ctx, e->name), ld_free(ctx, e->sum2);
        return ld_ctx_status(ctx);
    }
    im->n++;
    return *out = e, LD_OK;
}

ld_status ld_imatrix_add(ld_imatrix *im, const char *name, const float *x, int64_t M, int64_t K) {
    if (!im || !name || !x || M <= 0 || K <= 0) return LD_ERR_INVALID_ARG;
    im_entry *e;
    ld_status st = entry(im, name, K, &e);
    if (st) return st;
    for (int64_t r = 0; r < M; r++)
        for (int64_t k = 0; k < K; k++) e->sum2[k] += (double)x[r * K + k] * x[r * K + k];
    e->count += (double)M;
    ld_free(im->ctx, e->mean); /* stale */
    e->mean = NULL;
    return LD_OK;
}

const float *ld_imatrix_get(ld_imatrix *im, const char *name, int64_t K) {
    im_entry *e = im ? find(im, name) : NULL;
    if (!e || e->K != K || e->count <= 0) return NULL;
    if (!e->mean) {
        if (!(e->mean = ld_alloc(im->ctx, (size_t)K * sizeof(float)))) return NULL;
        for (int64_t k = 0; k < K; k++) { /* finite even for extreme sums (the quantizers divide by it) */
            double m = e->sum2[k] / e->count;
            e->mean[k] = m < FLT_MAX ? (float)m : FLT_MAX;
        }
    }
    return e->mean;
}

const float *ld_imatrix_lookup(void *user, const char *tensor, int64_t K) {
    return ld_imatrix_get(user, tensor, K);
}

void ld_imatrix_set_info(ld_imatrix *im, const char *dataset, int64_t chunks, int64_t chunk_size) {
    if (!im) return;
    ld_free(im->ctx, im->dataset);
    im->dataset = dataset ? ld_strdup(im->ctx, dataset) : NULL;
    im->chunks = chunks, im->chunk_size = chunk_size;
}

ld_status ld_imatrix_save(const ld_imatrix *im, const char *path) {
    if (!im || !path) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = im->ctx;
    ld_gguf_writer *w;
    ld_status st = ld_gguf_writer_new(ctx, &w);
    if (st) return st;
    float *data = ld_alloc(ctx, sizeof(float) * 2 * (size_t)(im->n + 1));
    float **sums = ld_calloc(ctx, (size_t)im->n + 1, sizeof *sums);
    if (!data || !sums) st = ld_ctx_status(ctx);
    const char *datasets[1] = {im->dataset ? im->dataset : ""};
    if (!st) st = ld_gguf_writer_set_str(w, "general.type", "imatrix");
    if (!st) st = ld_gguf_writer_set_strs(w, "imatrix.datasets", datasets, im->dataset ? 1 : 0);
    if (!st) st = ld_gguf_writer_set_u32(w, "imatrix.chunk_count", (uint32_t)im->chunks);
    if (!st) st = ld_gguf_writer_set_u32(w, "imatrix.chunk_size", (uint32_t)im->chunk_size);
    for (int i = 0; i < im->n && !st; i++) {
        const im_entry *e = &im->e[i];
        char name[256];
        if (!(sums[i] = ld_alloc(ctx, (size_t)e->K * sizeof(float)))) {
            st = ld_ctx_status(ctx);
            break;
        }
        for (int64_t k = 0; k < e->K; k++) sums[i][k] = (float)e->sum2[k];
        data[i] = (float)e->count;
        int64_t shape[2] = {1, e->K}, one = 1;
        snprintf(name, sizeof name, "%s.in_sum2", e->name);
        st = ld_gguf_writer_add_tensor(w, name, 0, 2, shape, sums[i], (size_t)e->K * sizeof(float));
        snprintf(name, sizeof name, "%s.counts", e->name);
        if (!st) st = ld_gguf_writer_add_tensor(w, name, 0, 1, &one, &data[i], sizeof(float));
    }
    if (!st) st = ld_gguf_writer_write(w, path);
    ld_gguf_writer_free(w);
    for (int i = 0; sums && i < im->n; i++) ld_free(ctx, sums[i]);
    ld_free(ctx, sums), ld_free(ctx, data);
    return st;
}

/* Copies an F32 tensor's values (possibly unaligned in the mapping). */
static void read_f32(float *dst, const ld_tensor_info *t, int64_t n) {
    memcpy(dst, t->data, (size_t)n * sizeof(float));
}

/* Reads the importance matrix of an open GGUF file (named `path` in messages); closes g. */
static ld_status load_gguf(ld_ctx *ctx, const char *path, ld_gguf *g, ld_imatrix **out) {
    ld_status st;
    ld_imatrix *im = NULL;
    if ((st = ld_imatrix_new(ctx, &im))) goto done;
    for (size_t i = 0; i < ld_gguf_tensor_count(g) && !st; i++) {
        const ld_tensor_info *t = ld_gguf_tensor_at(g, i);
        size_t len = strlen(t->name);
        if (len <= 8 || strcmp(t->name + len - 8, ".in_sum2")) continue;
        char base[256], cname[272];
        if (len - 8 >= sizeof base) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: tensor name %.60s... is too long", path, t->name);
            break;
        }
        memcpy(base, t->name, len - 8);
        base[len - 8] = 0;
        snprintf(cname, sizeof cname, "%s.counts", base);
        const ld_tensor_info *c = ld_gguf_find_tensor(g, cname);
        int64_t K = t->ndim >= 1 ? t->shape[t->ndim - 1] : 0;
        if (t->dtype != LD_F32 || t->ndim != 2 || t->shape[0] != 1 || K <= 0) {
            st = ld_error(ctx, LD_ERR_UNSUPPORTED,
                          "%s: %s must be F32 of shape [1, K] (per-expert matrices are not supported)", path, t->name);
            break;
        }
        if (!c || c->dtype != LD_F32 || c->ndim != 1 || c->shape[0] != 1) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: %s is missing or not one F32 value", path, cname);
            break;
        }
        float count;
        read_f32(&count, c, 1);
        if (!(count >= 0) || count != floorf(count) || count > 1e15f) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: %s is not a count of rows (a whole number >= 0)", path, cname);
            break;
        }
        im_entry *e;
        float *sums = ld_alloc(ctx, (size_t)K * sizeof(float));
        if (!sums) st = ld_ctx_status(ctx);
        if (!st) read_f32(sums, t, K);
        for (int64_t k = 0; !st && k < K; k++)
            if (!(sums[k] >= 0) || sums[k] > 3e38f)
                st = ld_error(ctx, LD_ERR_FORMAT, "%s: %s[%lld] is negative or not finite", path, t->name, (long long)k);
        if (!st && !(st = entry(im, base, K, &e))) {
            for (int64_t k = 0; k < K; k++) e->sum2[k] += sums[k];
            e->count += count;
        }
        ld_free(ctx, sums);
    }
    if (!st && im->n == 0) st = ld_error(ctx, LD_ERR_FORMAT, "%s: no *.in_sum2 tensors: not an importance matrix", path);
done:
    ld_gguf_close(g);
    if (st) ld_imatrix_free(im);
    else *out = im;
    return st;
}

ld_status ld_imatrix_load(ld_ctx *ctx, const char *path, ld_imatrix **out) {
    if (!path || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_imatrix_load: NULL argument");
    *out = NULL;
    ld_gguf *g;
    ld_status st = ld_gguf_open(ctx, path, &g);
    return st ? st : load_gguf(ctx, path, g, out);
}

ld_status ld_imatrix_load_memory(ld_ctx *ctx, const char *name, const void *data, size_t size, ld_imatrix **out) {
    if (!name || !out || (!data && size)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_imatrix_load_memory: NULL argument");
    *out = NULL;
    ld_gguf *g;
    ld_status st = ld_gguf_open_memory(ctx, name, data, size, &g);
    return st ? st : load_gguf(ctx, name, g, out);
}

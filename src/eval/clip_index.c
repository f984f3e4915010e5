/* infer/clip_index.c — an embedding index for image-text search: a file of n L2-normalised
 * embeddings with a name each (the image's path or caption) and the model directory that made
 * them; brute-force cosine top-k with the CPU's matrix-vector kernel (SIMD).
 *
 * File layout (little-endian): "LDCLIPIX" | u32 version (1) | u32 E | u64 n | u64 names_bytes
 * | u64 model_bytes | model path (model_bytes, no NUL) | names (names_bytes: n NUL-terminated
 * strings) | zero padding to a multiple of 4 | f32 embeddings [n, E]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "liandan/clip_eval.h"
#include "liandan/io.h"

#define IX_MAGIC "LDCLIPIX"
#define IX_HEADER 40

struct ld_clip_index {
    ld_ctx *ctx;
    int64_t n, E;
    char *model;         /* NUL-terminated copy */
    const char **names;  /* into blob */
    char *blob;
    float *emb;          /* [n, E] */
};

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint64_t get_u(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

ld_status ld_clip_index_write(ld_ctx *ctx, const char *path, const char *model_dir, const float *emb, int64_t n,
                              int64_t E, const char *const *names) {
    if (!path || !model_dir || (!emb && n) || (!names && n) || n < 0 || E <= 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_clip_index_write: bad argument");
    size_t nb = 0, mb = strlen(model_dir);
    for (int64_t i = 0; i < n; i++) nb += strlen(names[i]) + 1;
    size_t pad = (4 - (IX_HEADER + mb + nb) % 4) % 4, total = IX_HEADER + mb + nb + pad + (size_t)(n * E) * 4;
    uint8_t *buf = calloc(1, total);
    if (!buf) return ld_error(ctx, LD_ERR_NOMEM, "writing index %s: out of memory", path);
    memcpy(buf, IX_MAGIC, 8);
    put_u32(buf + 8, 1), put_u32(buf + 12, (uint32_t)E), put_u64(buf + 16, (uint64_t)n), put_u64(buf + 24, nb),
        put_u64(buf + 32, mb);
    size_t o = IX_HEADER;
    memcpy(buf + o, model_dir, mb), o += mb;
    for (int64_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]) + 1;
        memcpy(buf + o, names[i], l), o += l;
    }
    o += pad;
    memcpy(buf + o, emb, (size_t)(n * E) * 4); /* little-endian hosts only (x86-64, aarch64) */
    ld_status st = ld_file_write_atomic(ctx, path, buf, total);
    free(buf);
    return st;
}

ld_status ld_clip_index_parse(ld_ctx *ctx, const void *data, size_t size, const char *name, ld_clip_index **out) {
    if (!out || (!data && size)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_clip_index_parse: NULL argument");
    *out = NULL;
    if (!name) name = "index";
    const uint8_t *p = data;
    if (size < IX_HEADER || memcmp(p, IX_MAGIC, 8))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: not a liandan image-text index (bad magic or shorter than %d bytes)", name,
                        IX_HEADER);
    uint64_t ver = get_u(p + 8, 4), E = get_u(p + 12, 4), n = get_u(p + 16, 8), nb = get_u(p + 24, 8), mb = get_u(p + 32, 8);
    if (ver != 1) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: index version %llu (this build reads 1)", name, (unsigned long long)ver);
    if (E == 0 || E > 65536 || n > ((uint64_t)1 << 32) || nb > size || mb > 4096)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: implausible header (dim %llu, %llu items, %llu name bytes, %llu path bytes)",
                        name, (unsigned long long)E, (unsigned long long)n, (unsigned long long)nb, (unsigned long long)mb);
    uint64_t pad = (4 - (IX_HEADER + mb + nb) % 4) % 4, need = IX_HEADER + mb + nb + pad + n * E * 4;
    if (need != size)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: %zu bytes, the header describes %llu", name, size, (unsigned long long)need);
    const char *blob = (const char *)p + IX_HEADER + mb;
    if (nb && blob[nb - 1]) return ld_error(ctx, LD_ERR_FORMAT, "%s: the names do not end in a NUL byte", name);
    uint64_t count = 0;
    for (uint64_t i = 0; i < nb; i++) count += blob[i] == 0;
    if (count != n) return ld_error(ctx, LD_ERR_FORMAT, "%s: %llu names for %llu items", name, (unsigned long long)count,
                                    (unsigned long long)n);
    ld_clip_index *ix = ld_calloc(ctx, 1, sizeof *ix);
    if (!ix) return ld_ctx_status(ctx);
    ix->ctx = ctx, ix->n = (int64_t)n, ix->E = (int64_t)E;
    ix->model = malloc(mb + 1), ix->blob = malloc(nb + 1), ix->names = malloc((size_t)(n ? n : 1) * sizeof *ix->names);
    ix->emb = malloc((size_t)(n * E + 1) * 4);
    if (!ix->model || !ix->blob || !ix->names || !ix->emb) {
        ld_clip_index_free(ix);
        return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", name);
    }
    memcpy(ix->model, p + IX_HEADER, mb), ix->model[mb] = 0;
    memcpy(ix->blob, blob, nb);
    for (uint64_t i = 0, k = 0; k < n; k++) {
        ix->names[k] = ix->blob + i;
        i += strlen(ix->blob + i) + 1;
    }
    memcpy(ix->emb, p + IX_HEADER + mb + nb + pad, n * E * 4);
    *out = ix;
    return LD_OK;
}

ld_status ld_clip_index_open(ld_ctx *ctx, const char *path, ld_clip_index **out) {
    ld_mapping m;
    ld_status st = ld_file_map(ctx, path, &m);
    if (st) return st;
    st = ld_clip_index_parse(ctx, m.data, m.size, path, out);
    ld_file_unmap(&m);
    return st;
}

void ld_clip_index_free(ld_clip_index *ix) {
    if (!ix) return;
    free(ix->model), free(ix->blob), free(ix->names), free(ix->emb);
    ld_free(ix->ctx, ix);
}

int64_t ld_clip_index_count(const ld_clip_index *ix) {
    return ix ? ix->n : 0;
}
int64_t ld_clip_index_dim(const ld_clip_index *ix) {
    return ix ? ix->E : 0;
}
const char *ld_clip_index_model(const ld_clip_index *ix) {
    return ix ? ix->model : NULL;
}
const char *ld_clip_index_name(const ld_clip_index *ix, int64_t i) {
    return ix && i >= 0 && i < ix->n ? ix->names[i] : NULL;
}

ld_status ld_clip_index_search(const ld_clip_index *ix, const float *q, int64_t k, int64_t *ids, float *scores,
                               int64_t *found) {
    if (!ix || !q || k <= 0 || !ids || !scores || !found) return LD_ERR_INVALID_ARG;
    float *s = malloc((size_t)(ix->n ? ix->n : 1) * sizeof *s);
    if (!s) return ld_error(ix->ctx, LD_ERR_NOMEM, "search: out of memory");
    /* every cosine at once: s[n] = emb[n, E] . q (both L2-normalised) */
    if (ix->n) ld_kernels_get(LD_BACKEND_AUTO)->gemv_f32(true, 1, ix->n, ix->E, q, ix->emb, s);
    int64_t m = 0;
    for (int64_t i = 0; i < ix->n; i++) { /* insertion into the sorted top k */
        if (m == k && s[i] <= scores[k - 1]) continue;
        int64_t j = m < k ? m++ : k - 1;
        while (j > 0 && scores[j - 1] < s[i]) scores[j] = scores[j - 1], ids[j] = ids[j - 1], j--;
        scores[j] = s[i], ids[j] = i;
    }
    free(s);
    *found = m;
    return LD_OK;
}

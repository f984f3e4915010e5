/* io/gguf.c — the GGUF reader: parses and validates a GGUF v2/v3 file (mmapped or in memory)
 * with every length, count, dimension and offset checked against the bytes that remain
 * before anything is allocated from it, so a huge count in a tiny file fails fast and the
 * memory used is bounded by the file size. Layout and rules: docs/formats/gguf.md. The
 * writer is in gguf_write.c. */
#include <stdlib.h>
#include <string.h>

#include "io/gguf_internal.h"

/* Every GGML type id: name and block geometry (sizes of the GGML block structs). */
static const struct {
    const char *name;
    int blk, bytes;
} ggml_types[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},       [2] = {"Q4_0", 32, 18},    [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},    [8] = {"Q8_0", 32, 34},    [9] = {"Q8_1", 32, 36},
    [10] = {"Q2_K", 256, 84},   [11] = {"Q3_K", 256, 110}, [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292}, [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50}, [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82},  [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},     [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},      [28] = {"F64", 1, 8},      [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54}, [35] = {"TQ2_0", 256, 66}, [39] = {"MXFP4", 32, 17},
};
#define N_GGML_TYPES ((int32_t)(sizeof ggml_types / sizeof ggml_types[0]))

bool ld_ggml_type_info(int32_t t, const char **name, int *block_size, int *block_bytes) {
    if (t < 0 || t >= N_GGML_TYPES || !ggml_types[t].name) return false;
    if (name) *name = ggml_types[t].name;
    if (block_size) *block_size = ggml_types[t].blk;
    if (block_bytes) *block_bytes = ggml_types[t].bytes;
    return true;
}

static const char *const type_names[LD_GGUF_TYPE_COUNT] = {"UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                                           "BOOL", "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};
static const uint8_t type_sizes[LD_GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *ld_gguf_type_name(ld_gguf_type t) {
    return (int)t >= 0 && t < LD_GGUF_TYPE_COUNT ? type_names[t] : "?";
}
size_t ld_gguf_scalar_size(ld_gguf_type t) {
    return (int)t >= 0 && t < LD_GGUF_TYPE_COUNT ? type_sizes[t] : 0;
}

/* ---- the cursor ---------------------------------------------------------------------- */
typedef struct cursor {
    ld_ctx *ctx;
    const char *file;
    const uint8_t *p;
    size_t size, off;
    ld_arena *arena;
} cursor;

static ld_status need(cursor *c, size_t n, const char *what) {
    if (c->size - c->off < n)
        return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: file ends inside %s (%zu bytes needed, %zu left)", c->file, c->off,
                        what, n, c->size - c->off);
    return LD_OK;
}
static ld_status rd_u32(cursor *c, uint32_t *v, const char *what) {
    ld_status s = need(c, 4, what);
    if (s) return s;
    *v = ld_le32(c->p + c->off);
    c->off += 4;
    return LD_OK;
}
static ld_status rd_u64(cursor *c, uint64_t *v, const char *what) {
    ld_status s = need(c, 8, what);
    if (s) return s;
    *v = ld_le64(c->p + c->off);
    c->off += 8;
    return LD_OK;
}
/* A GGUF string copied (NUL-terminated) into the arena. */
static ld_status rd_str(cursor *c, ld_gguf_str *out, const char *what) {
    uint64_t len;
    size_t at = c->off;
    ld_status s = rd_u64(c, &len, what);
    if (s) return s;
    if (len > c->size - c->off)
        return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: %s has length %llu, past the end of the file (%zu bytes left)",
                        c->file, at, what, (unsigned long long)len, c->size - c->off);
    char *d = ld_io_arena_strndup(c->arena, (const char *)c->p + c->off, (size_t)len);
    if (!d) return ld_error(c->ctx, LD_ERR_NOMEM, "%s: out of memory", c->file);
    out->s = d;
    out->len = (size_t)len;
    c->off += (size_t)len;
    return LD_OK;
}

/* ---- values -------------------------------------------------------------------------- */
static ld_status rd_value(cursor *c, ld_gguf_type type, int depth, const char *key, ld_gguf_value *v) {
    memset(v, 0, sizeof *v);
    v->type = type;
    size_t start = c->off;
    v->encoded = c->p + start;
    ld_status s;
    if ((int)type < 0 || type >= LD_GGUF_TYPE_COUNT)
        return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: key '%s': unknown value type %d", c->file, c->off, key, (int)type);
    if (type == LD_GGUF_STRING) {
        s = rd_str(c, &v->str, "a string value");
        if (s) return ld_error_wrap(c->ctx, s, "key '%s': ", key);
    } else if (type == LD_GGUF_ARRAY) {
        uint32_t et;
        uint64_t count;
        if ((s = rd_u32(c, &et, "an array type")) || (s = rd_u64(c, &count, "an array count"))) return ld_error_wrap(c->ctx, s, "key '%s': ", key);
        if (et >= LD_GGUF_TYPE_COUNT)
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: key '%s': unknown array element type %u", c->file, c->off - 12, key, et);
        if (et == LD_GGUF_ARRAY && depth + 1 >= LD_GGUF_MAX_ARRAY_DEPTH)
            return ld_error(c->ctx, LD_ERR_LIMIT, "%s: byte %zu: key '%s': arrays nested more than %d deep", c->file, c->off, key, LD_GGUF_MAX_ARRAY_DEPTH);
        v->elem_type = (ld_gguf_type)et;
        v->count = count;
        /* Each item needs at least min_item bytes: reject impossible counts before allocating. */
        size_t min_item = et == LD_GGUF_STRING ? 8 : et == LD_GGUF_ARRAY ? 12 : type_sizes[et];
        if (count > (c->size - c->off) / min_item)
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: key '%s': array of %llu %s items cannot fit in the %zu bytes left", c->file,
                            c->off - 8, key, (unsigned long long)count, type_names[et], c->size - c->off);
        if (et == LD_GGUF_STRING) {
            ld_gguf_str *strs = ld_arena_alloc(c->arena, (size_t)count * sizeof *strs + 1);
            if (!strs) return ld_error(c->ctx, LD_ERR_NOMEM, "%s: out of memory", c->file);
            for (uint64_t i = 0; i < count; i++)
                if ((s = rd_str(c, &strs[i], "an array string"))) return ld_error_wrap(c->ctx, s, "key '%s': item %llu: ", key, (unsigned long long)i);
            v->strs = strs;
        } else if (et == LD_GGUF_ARRAY) {
            ld_gguf_value *items = ld_arena_alloc(c->arena, (size_t)count * sizeof *items + 1);
            if (!items) return ld_error(c->ctx, LD_ERR_NOMEM, "%s: out of memory", c->file);
            for (uint64_t i = 0; i < count; i++)
                if ((s = rd_value(c, LD_GGUF_ARRAY, depth + 1, key, &items[i]))) return s;
            v->items = items;
        } else {
            v->raw = c->p + c->off;
            size_t n = (size_t)count * type_sizes[et];
            if (et == LD_GGUF_BOOL)
                for (size_t i = 0; i < n; i++)
                    if (v->raw[i] > 1)
                        return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: key '%s': item %zu: bool value %u is not 0 or 1", c->file, c->off + i, key, i, v->raw[i]);
            c->off += n;
        }
    } else {
        if ((s = need(c, type_sizes[type], "a value"))) return ld_error_wrap(c->ctx, s, "key '%s': ", key);
        v->raw = c->p + c->off;
        if (type == LD_GGUF_BOOL && v->raw[0] > 1)
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: key '%s': bool value %u is not 0 or 1", c->file, c->off, key, v->raw[0]);
        c->off += type_sizes[type];
    }
    v->encoded_size = c->off - start;
    return LD_OK;
}

/* ---- the file -------------------------------------------------------------------------- */
static int cmp_kv_key(const void *a, const void *b) {
    return strcmp(((const ld_gguf_kv *)a)->key, ((const ld_gguf_kv *)b)->key);
}
static int cmp_info_name(const void *a, const void *b) {
    return strcmp((*(const ld_tensor_info *const *)a)->name, (*(const ld_tensor_info *const *)b)->name);
}
static int cmp_info_offset(const void *a, const void *b) {
    const ld_tensor_info *x = *(const ld_tensor_info *const *)a, *y = *(const ld_tensor_info *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return 0;
}

void ld_gguf_close(ld_gguf *g) {
    if (!g) return;
    ld_ctx *ctx = g->ctx;
    ld_file_unmap(&g->map);
    ld_arena_free(g->arena);
    ld_free(ctx, g->name);
    ld_free(ctx, g);
}

static ld_status parse_tensor(cursor *c, ld_tensor_info *t, uint64_t index) {
    ld_gguf_str name;
    uint32_t nd, type;
    ld_status s = rd_str(c, &name, "a tensor name");
    if (s) return ld_error_wrap(c->ctx, s, "tensor %llu: ", (unsigned long long)index);
    t->name = name.s;
    if ((s = rd_u32(c, &nd, "a tensor's n_dims"))) return ld_error_wrap(c->ctx, s, "tensor '%s': ", t->name);
    if (nd > LD_MAX_DIMS)
        return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: tensor '%s': n_dims %u is more than %d", c->file, c->off - 4, t->name, nd, LD_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t ne[LD_MAX_DIMS];
    int64_t numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
        if ((s = rd_u64(c, &ne[d], "a tensor dimension"))) return ld_error_wrap(c->ctx, s, "tensor '%s': ", t->name);
        if (ne[d] > (uint64_t)INT64_MAX || __builtin_mul_overflow(numel, (int64_t)ne[d], &numel))
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: tensor '%s': dimensions overflow (ne[%u] = %llu)", c->file, c->off - 8, t->name, d,
                            (unsigned long long)ne[d]);
        t->shape[nd - 1 - d] = (int64_t)ne[d];
    }
    if ((s = rd_u32(c, &type, "a tensor type"))) return ld_error_wrap(c->ctx, s, "tensor '%s': ", t->name);
    int blk, bytes;
    if (!ld_ggml_type_info((int32_t)type, &t->dtype_name, &blk, &bytes) || type > INT32_MAX)
        return ld_error(c->ctx, LD_ERR_FORMAT, "%s: byte %zu: tensor '%s': unknown GGML type %u", c->file, c->off - 4, t->name, type);
    t->file_type = (int32_t)type;
    t->dtype = LD_DTYPE_COUNT;
    for (int k = 0; k < LD_DTYPE_COUNT; k++)
        if (ld_dtype_traits((ld_dtype)k)->ggml_type == (int)type) t->dtype = (ld_dtype)k;
    uint64_t row = nd ? ne[0] : 1;
    if (row % (uint64_t)blk)
        return ld_error(c->ctx, LD_ERR_FORMAT, "%s: tensor '%s': row length %llu is not a multiple of the %s block size %d", c->file, t->name,
                        (unsigned long long)row, t->dtype_name, blk);
    size_t nbytes;
    if (ld_mul_size((size_t)numel / (size_t)blk, (size_t)bytes, &nbytes))
        return ld_error(c->ctx, LD_ERR_FORMAT, "%s: tensor '%s': byte size overflows", c->file, t->name);
    t->nbytes = nbytes;
    if ((s = rd_u64(c, &t->offset, "a tensor offset"))) return ld_error_wrap(c->ctx, s, "tensor '%s': ", t->name);
    return LD_OK;
}

static ld_status parse(ld_gguf *g, const uint8_t *p, size_t size) {
    cursor c = {g->ctx, g->name, p, size, 0, g->arena};
    ld_ctx *ctx = g->ctx;
    const char *f = g->name;
    ld_status s;
    if (size < 4 || memcmp(p, "GGUF", 4))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: byte 0: bad magic (not a GGUF file)", f);
    c.off = 4;
    uint64_t n_tensors, n_kv;
    if ((s = rd_u32(&c, &g->version, "the version"))) return s;
    if (g->version != 2 && g->version != 3)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: byte 4: GGUF version %u is not supported (2 and 3 are)", f, g->version);
    if ((s = rd_u64(&c, &n_tensors, "the tensor count")) || (s = rd_u64(&c, &n_kv, "the metadata count"))) return s;
    /* Smallest encodings: a KV is 8 (key length) + 4 (type) + 1; a tensor info 8 + 4 + 4 + 8. */
    if (n_kv > (size - c.off) / 13)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: byte 16: metadata count %llu cannot fit in a file of %zu bytes", f, (unsigned long long)n_kv, size);
    if (n_tensors > (size - c.off) / 24)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: byte 8: tensor count %llu cannot fit in a file of %zu bytes", f, (unsigned long long)n_tensors, size);
    g->kvs = ld_arena_alloc(g->arena, (size_t)n_kv * sizeof *g->kvs + 1);
    g->tensors = ld_arena_alloc(g->arena, (size_t)n_tensors * sizeof *g->tensors + 1);
    if (!g->kvs || !g->tensors) return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", f);
    for (uint64_t i = 0; i < n_kv; i++) {
        ld_gguf_kv *kv = &g->kvs[i];
        ld_gguf_str key;
        uint32_t type;
        if ((s = rd_str(&c, &key, "a metadata key"))) return ld_error_wrap(ctx, s, "metadata %llu: ", (unsigned long long)i);
        kv->key = key.s;
        if ((s = rd_u32(&c, &type, "a value type"))) return ld_error_wrap(ctx, s, "key '%s': ", kv->key);
        if ((s = rd_value(&c, (ld_gguf_type)type, 0, kv->key, &kv->value))) return s;
        g->n_kv++;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        memset(&g->tensors[i], 0, sizeof g->tensors[i]);
        if ((s = parse_tensor(&c, &g->tensors[i], i))) return s;
        g->n_tensors++;
    }
    /* Sorted copies for lookups; duplicates are errors. */
    g->kv_sorted = ld_arena_alloc(g->arena, g->n_kv * sizeof *g->kv_sorted + 1);
    g->by_name = ld_arena_alloc(g->arena, g->n_tensors * sizeof *g->by_name + 1);
    const ld_tensor_info **by_off = ld_arena_alloc(g->arena, g->n_tensors * sizeof *by_off + 1);
    if (!g->kv_sorted || !g->by_name || !by_off) return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", f);
    if (g->n_kv) memcpy(g->kv_sorted, g->kvs, g->n_kv * sizeof *g->kvs);
    qsort(g->kv_sorted, g->n_kv, sizeof *g->kv_sorted, cmp_kv_key);
    for (size_t i = 1; i < g->n_kv; i++)
        if (!strcmp(g->kv_sorted[i].key, g->kv_sorted[i - 1].key)) return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s' appears more than once", f, g->kv_sorted[i].key);
    for (size_t i = 0; i < g->n_tensors; i++) g->by_name[i] = by_off[i] = &g->tensors[i];
    qsort(g->by_name, g->n_tensors, sizeof *g->by_name, cmp_info_name);
    for (size_t i = 1; i < g->n_tensors; i++)
        if (!strcmp(g->by_name[i]->name, g->by_name[i - 1]->name)) return ld_error(ctx, LD_ERR_FORMAT, "%s: tensor '%s' appears more than once", f, g->by_name[i]->name);
    /* Alignment. */
    g->alignment = LD_GGUF_DEFAULT_ALIGNMENT;
    const ld_gguf_value *al = ld_gguf_find(g, "general.alignment");
    if (al) {
        uint32_t a = al->type == LD_GGUF_UINT32 ? ld_le32(al->raw) : 0;
        if (al->type != LD_GGUF_UINT32 || a == 0 || (a & (a - 1)))
            return ld_error(ctx, LD_ERR_FORMAT, "%s: key 'general.alignment': must be a UINT32 power of two", f);
        if (a > LD_GGUF_MAX_ALIGNMENT)
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: key 'general.alignment': %u is above the supported maximum of %u", f, a, LD_GGUF_MAX_ALIGNMENT);
        g->alignment = a;
    }
    size_t data_start = c.off, pad = (g->alignment - c.off % g->alignment) % g->alignment;
    if (ld_add_size(data_start, pad, &data_start)) return ld_error(ctx, LD_ERR_OVERFLOW, "%s: data offset overflows", f);
    g->data_offset = data_start;
    size_t data_size = data_start <= size ? size - data_start : 0;
    qsort(by_off, g->n_tensors, sizeof *by_off, cmp_info_offset);
    uint64_t end = 0;
    const ld_tensor_info *prev = NULL;
    for (size_t i = 0; i < g->n_tensors; i++) {
        ld_tensor_info *t = (ld_tensor_info *)by_off[i];
        if (t->offset % g->alignment)
            return ld_error(ctx, LD_ERR_FORMAT, "%s: tensor '%s': offset %llu is not a multiple of the alignment %u", f, t->name,
                            (unsigned long long)t->offset, g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return ld_error(ctx, LD_ERR_FORMAT, "%s: tensor '%s': data (bytes %llu..%llu of the data section at byte %zu) runs past the end of the file (%zu bytes)",
                            f, t->name, (unsigned long long)t->offset, (unsigned long long)t->offset + t->nbytes, data_start, size);
        if (prev && t->offset < end && t->nbytes)
            return ld_error(ctx, LD_ERR_FORMAT, "%s: tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap", f, prev->name,
                            (unsigned long long)prev->offset, (unsigned long long)end, t->name, (unsigned long long)t->offset,
                            (unsigned long long)(t->offset + t->nbytes));
        t->data = p + data_start + t->offset;
        if (t->nbytes && t->offset + t->nbytes > end) {
            end = t->offset + t->nbytes;
            prev = t;
        }
    }
    return LD_OK;
}

static ld_status new_reader(ld_ctx *ctx, const char *name, ld_gguf **out) {
    ld_gguf *g = ld_calloc(ctx, 1, sizeof *g);
    if (!g) return ld_ctx_status(ctx);
    g->ctx = ctx;
    g->name = ld_strdup(ctx, name ? name : "gguf");
    ld_status s = g->name ? ld_arena_new(ctx, 64 << 10, &g->arena) : ld_ctx_status(ctx);
    if (s) {
        ld_gguf_close(g);
        return s;
    }
    *out = g;
    return LD_OK;
}

ld_status ld_gguf_open_memory(ld_ctx *ctx, const char *name, const void *data, size_t size, ld_gguf **out) {
    if (!out || (!data && size)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_gguf_open_memory: NULL argument");
    *out = NULL;
    ld_gguf *g;
    ld_status s = new_reader(ctx, name, &g);
    if (!s) s = parse(g, data, size);
    if (s) {
        ld_gguf_close(g);
        return s;
    }
    *out = g;
    return LD_OK;
}

ld_status ld_gguf_open(ld_ctx *ctx, const char *path, ld_gguf **out) {
    if (!out || !path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_gguf_open: NULL argument");
    *out = NULL;
    ld_gguf *g;
    ld_status s = new_reader(ctx, path, &g);
    if (!s) s = ld_file_map(ctx, path, &g->map);
    if (!s) s = parse(g, g->map.data, g->map.size);
    if (s) {
        ld_gguf_close(g);
        return s;
    }
    *out = g;
    return LD_OK;
}

/* ---- accessors -------------------------------------------------------------------------- */
uint32_t ld_gguf_version(const ld_gguf *g) { return g ? g->version : 0; }
uint32_t ld_gguf_alignment(const ld_gguf *g) { return g ? g->alignment : 0; }
uint64_t ld_gguf_data_offset(const ld_gguf *g) { return g ? g->data_offset : 0; }
size_t ld_gguf_kv_count(const ld_gguf *g) { return g ? g->n_kv : 0; }
const char *ld_gguf_kv_key(const ld_gguf *g, size_t i) { return g && i < g->n_kv ? g->kvs[i].key : NULL; }
const ld_gguf_value *ld_gguf_kv_value(const ld_gguf *g, size_t i) { return g && i < g->n_kv ? &g->kvs[i].value : NULL; }
const ld_gguf_value *ld_gguf_find(const ld_gguf *g, const char *key) {
    if (!g || !key || !g->n_kv) return NULL;
    ld_gguf_kv k;
    k.key = key;
    const ld_gguf_kv *p = bsearch(&k, g->kv_sorted, g->n_kv, sizeof k, cmp_kv_key);
    return p ? &p->value : NULL;
}
size_t ld_gguf_tensor_count(const ld_gguf *g) { return g ? g->n_tensors : 0; }
const ld_tensor_info *ld_gguf_tensor_at(const ld_gguf *g, size_t i) { return g && i < g->n_tensors ? &g->tensors[i] : NULL; }
const ld_tensor_info *ld_gguf_find_tensor(const ld_gguf *g, const char *name) {
    if (!g || !name || !g->n_tensors) return NULL;
    ld_tensor_info k;
    k.name = name;
    const ld_tensor_info *kp = &k;
    const ld_tensor_info *const *p = bsearch(&kp, g->by_name, g->n_tensors, sizeof *g->by_name, cmp_info_name);
    return p ? *p : NULL;
}
ld_status ld_gguf_get_tensor(ld_ctx *ctx, const ld_gguf *g, const char *name, const ld_tensor_info **out) {
    *out = ld_gguf_find_tensor(g, name);
    if (!*out) return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: no tensor named '%s'", g ? g->name : "?", name ? name : "(null)");
    return LD_OK;
}

/* Integer value of a scalar at raw of an integer type; false for non-integers. */
static bool int_of(ld_gguf_type t, const uint8_t *raw, int64_t *v, bool *neg_or_big) {
    *neg_or_big = false;
    switch (t) {
    case LD_GGUF_UINT8: *v = raw[0]; return true;
    case LD_GGUF_INT8: *v = (int8_t)raw[0]; return true;
    case LD_GGUF_UINT16: *v = ld_le16(raw); return true;
    case LD_GGUF_INT16: *v = (int16_t)ld_le16(raw); return true;
    case LD_GGUF_UINT32: *v = ld_le32(raw); return true;
    case LD_GGUF_INT32: *v = (int32_t)ld_le32(raw); return true;
    case LD_GGUF_INT64: *v = (int64_t)ld_le64(raw); return true;
    case LD_GGUF_UINT64: {
        uint64_t u = ld_le64(raw);
        if (u > (uint64_t)INT64_MAX) *neg_or_big = true;
        *v = (int64_t)(u & (uint64_t)INT64_MAX);
        return true;
    }
    default: return false;
    }
}

static ld_status find_kv(ld_ctx *ctx, const ld_gguf *g, const char *key, const ld_gguf_value **v) {
    *v = ld_gguf_find(g, key);
    if (!*v) return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: metadata key '%s' is missing", g ? g->name : "?", key ? key : "(null)");
    return LD_OK;
}

static ld_status wrong_type(ld_ctx *ctx, const ld_gguf *g, const char *key, const char *expected, const ld_gguf_value *v) {
    if (v->type == LD_GGUF_ARRAY)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': expected %s, got ARRAY of %s", g->name, key, expected, type_names[v->elem_type]);
    return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': expected %s, got %s", g->name, key, expected, type_names[v->type]);
}

ld_status ld_gguf_get_int(ld_ctx *ctx, const ld_gguf *g, const char *key, int64_t min, int64_t max, int64_t *out) {
    const ld_gguf_value *v;
    ld_status s = find_kv(ctx, g, key, &v);
    if (s) return s;
    int64_t x;
    bool big;
    if (!int_of(v->type, v->raw, &x, &big)) return wrong_type(ctx, g, key, "an integer", v);
    if (big || x < min || x > max)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': value %s%lld is outside %lld..%lld", g->name, key, big ? "(above 2^63) " : "", (long long)x,
                        (long long)min, (long long)max);
    *out = x;
    return LD_OK;
}

ld_status ld_gguf_get_u32(ld_ctx *ctx, const ld_gguf *g, const char *key, uint32_t *out) {
    int64_t v;
    ld_status s = ld_gguf_get_int(ctx, g, key, 0, UINT32_MAX, &v);
    if (!s) *out = (uint32_t)v;
    return s;
}

static double float_of(ld_gguf_type t, const uint8_t *raw) {
    if (t == LD_GGUF_FLOAT32) {
        uint32_t u = ld_le32(raw);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    uint64_t u = ld_le64(raw);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

bool ld_gguf_value_item(const ld_gguf_value *v, uint64_t i, ld_gguf_item *out) {
    if (!v || !out) return false;
    bool array = v->type == LD_GGUF_ARRAY;
    ld_gguf_type t = array ? v->elem_type : v->type;
    size_t size = ld_gguf_scalar_size(t);
    if (!size || (array ? i >= v->count : i != 0)) return false;
    const uint8_t *raw = v->raw + i * size;
    memset(out, 0, sizeof *out);
    out->type = t;
    bool big;
    if (t == LD_GGUF_FLOAT32 || t == LD_GGUF_FLOAT64) out->f64 = float_of(t, raw);
    else if (t == LD_GGUF_BOOL) out->u64 = raw[0] != 0;
    else if (t == LD_GGUF_UINT64) out->u64 = ld_le64(raw);
    else if (t == LD_GGUF_UINT8 || t == LD_GGUF_UINT16 || t == LD_GGUF_UINT32) int_of(t, raw, &out->i64, &big), out->u64 = (uint64_t)out->i64;
    else int_of(t, raw, &out->i64, &big);
    return true;
}

ld_status ld_gguf_get_f32(ld_ctx *ctx, const ld_gguf *g, const char *key, float *out) {
    const ld_gguf_value *v;
    ld_status s = find_kv(ctx, g, key, &v);
    if (s) return s;
    if (v->type != LD_GGUF_FLOAT32 && v->type != LD_GGUF_FLOAT64) return wrong_type(ctx, g, key, "FLOAT32", v);
    *out = (float)float_of(v->type, v->raw);
    return LD_OK;
}

ld_status ld_gguf_get_bool(ld_ctx *ctx, const ld_gguf *g, const char *key, bool *out) {
    const ld_gguf_value *v;
    ld_status s = find_kv(ctx, g, key, &v);
    if (s) return s;
    if (v->type != LD_GGUF_BOOL) return wrong_type(ctx, g, key, "BOOL", v);
    *out = v->raw[0] != 0;
    return LD_OK;
}

ld_status ld_gguf_get_str(ld_ctx *ctx, const ld_gguf *g, const char *key, const char **out) {
    const ld_gguf_value *v;
    ld_status s = find_kv(ctx, g, key, &v);
    if (s) return s;
    if (v->type != LD_GGUF_STRING) return wrong_type(ctx, g, key, "STRING", v);
    *out = v->str.s;
    return LD_OK;
}

ld_status ld_gguf_get_strs(ld_ctx *ctx, const ld_gguf *g, const char *key, const ld_gguf_str **out, size_t *n) {
    const ld_gguf_value *v;
    ld_status s = find_kv(ctx, g, key, &v);
    if (s) return s;
    if (v->type != LD_GGUF_ARRAY || v->elem_type != LD_GGUF_STRING) return wrong_type(ctx, g, key, "ARRAY of STRING", v);
    *out = v->strs;
    *n = (size_t)v->count;
    return LD_OK;
}

ld_status ld_gguf_get_i32s(ld_ctx *ctx, const ld_gguf *g, const char *key, int32_t **out, size_t *n) {
    const ld_gguf_value *v;
    *out = NULL;
    *n = 0;
    ld_status s = find_kv(ctx, g, key, &v);
    if (s) return s;
    int64_t x;
    bool big;
    if (v->type != LD_GGUF_ARRAY || !ld_gguf_is_int(v->elem_type))
        return wrong_type(ctx, g, key, "ARRAY of integers", v);
    int32_t *d = ld_calloc(ctx, (size_t)v->count + 1, sizeof *d);
    if (!d) return ld_ctx_status(ctx);
    size_t es = type_sizes[v->elem_type];
    for (size_t i = 0; i < v->count; i++) {
        int_of(v->elem_type, v->raw + i * es, &x, &big);
        if (big || x < INT32_MIN || x > INT32_MAX) {
            ld_free(ctx, d);
            return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': item %zu does not fit in 32 bits", g->name, key, i);
        }
        d[i] = (int32_t)x;
    }
    *out = d;
    *n = (size_t)v->count;
    return LD_OK;
}

ld_status ld_gguf_get_f32s(ld_ctx *ctx, const ld_gguf *g, const char *key, float **out, size_t *n) {
    const ld_gguf_value *v;
    *out = NULL;
    *n = 0;
    ld_status s = find_kv(ctx, g, key, &v);
    if (s) return s;
    if (v->type != LD_GGUF_ARRAY || (v->elem_type != LD_GGUF_FLOAT32 && v->elem_type != LD_GGUF_FLOAT64))
        return wrong_type(ctx, g, key, "ARRAY of FLOAT32", v);
    float *d = ld_calloc(ctx, (size_t)v->count + 1, sizeof *d);
    if (!d) return ld_ctx_status(ctx);
    size_t es = type_sizes[v->elem_type];
    for (size_t i = 0; i < v->count; i++) d[i] = (float)float_of(v->elem_type, v->raw + i * es);
    *out = d;
    *n = (size_t)v->count;
    return LD_OK;
}

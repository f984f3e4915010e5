/* io/safetensors.c — the safetensors format: a validating reader over an mmapped file (or a
 * caller's buffer) and a deterministic, atomic writer. Layout and rules: docs/formats/safetensors.md. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "io/io_internal.h"

/* Every dtype of the safetensors spec with its element size; ld_dtype where liandan has one. */
static const struct {
    const char *name;
    int size;
    ld_dtype dtype;
} st_dtypes[] = {
    {"F32", 4, LD_F32}, {"F16", 2, LD_F16}, {"BF16", 2, LD_BF16}, {"I32", 4, LD_I32},
    {"F64", 8, LD_DTYPE_COUNT}, {"I64", 8, LD_DTYPE_COUNT}, {"U64", 8, LD_DTYPE_COUNT},
    {"U32", 4, LD_DTYPE_COUNT}, {"I16", 2, LD_DTYPE_COUNT}, {"U16", 2, LD_DTYPE_COUNT},
    {"I8", 1, LD_DTYPE_COUNT}, {"U8", 1, LD_DTYPE_COUNT}, {"BOOL", 1, LD_DTYPE_COUNT},
    {"F8_E4M3", 1, LD_DTYPE_COUNT}, {"F8_E5M2", 1, LD_DTYPE_COUNT},
};
#define N_ST_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

static int st_dtype_find(const char *name) {
    for (size_t i = 0; i < N_ST_DTYPES; i++)
        if (!strcmp(st_dtypes[i].name, name)) return (int)i;
    return -1;
}

struct ld_safetensors {
    ld_ctx *ctx;
    ld_mapping map;
    char *name;
    ld_arena *arena;
    ld_tensor_info *tensors; /* by name */
    size_t n;
    ld_str_pair *meta; /* by key */
    size_t n_meta;
};

void ld_safetensors_close(ld_safetensors *st) {
    if (!st) return;
    ld_ctx *ctx = st->ctx;
    ld_file_unmap(&st->map);
    ld_arena_free(st->arena);
    ld_free(ctx, st->name);
    ld_free(ctx, st);
}

static int cmp_info_name(const void *a, const void *b) {
    return strcmp(((const ld_tensor_info *)a)->name, ((const ld_tensor_info *)b)->name);
}
static int cmp_info_offset(const void *a, const void *b) {
    const ld_tensor_info *x = *(const ld_tensor_info *const *)a, *y = *(const ld_tensor_info *const *)b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}
static int cmp_pair_key(const void *a, const void *b) {
    return strcmp(((const ld_str_pair *)a)->key, ((const ld_str_pair *)b)->key);
}

/* A JSON number that is an exact integer in 0..2^53. */
static bool json_u53(const cJSON *c, uint64_t *out) {
    if (!cJSON_IsNumber(c)) return false;
    double d = c->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return false;
    *out = (uint64_t)d;
    return true;
}

static ld_status parse_entry(ld_safetensors *st, const cJSON *e, size_t data_size, ld_tensor_info *t) {
    ld_ctx *ctx = st->ctx;
    const char *f = st->name, *name = t->name;
    char d[80];
    if (!cJSON_IsObject(e))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': expected an object, got %s", f, name,
                        ld_json_describe(e, d, sizeof d));
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *of = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(dt)) return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': 'dtype' must be a string, got %s", f, name, ld_json_describe(dt, d, sizeof d));
    int k = st_dtype_find(dt->valuestring);
    if (k < 0) return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': unknown dtype \"%.32s\"", f, name, dt->valuestring);
    t->dtype = st_dtypes[k].dtype;
    t->dtype_name = st_dtypes[k].name;
    t->file_type = -1;
    if (!cJSON_IsArray(sh)) return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': 'shape' must be an array, got %s", f, name, ld_json_describe(sh, d, sizeof d));
    int nd = cJSON_GetArraySize(sh);
    if (nd > LD_IO_MAX_DIMS) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: header: tensor '%s': %d dimensions (at most %d are supported)", f, name, nd, LD_IO_MAX_DIMS);
    t->ndim = nd;
    size_t numel = 1;
    int i = 0;
    for (const cJSON *c = sh->child; c; c = c->next, i++) {
        uint64_t v;
        if (!json_u53(c, &v)) return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': shape[%d] must be a non-negative integer, got %s", f, name, i, ld_json_describe(c, d, sizeof d));
        t->shape[i] = (int64_t)v;
        if (ld_mul_size(numel, (size_t)v, &numel)) return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': element count overflows", f, name);
    }
    size_t nbytes;
    if (ld_mul_size(numel, (size_t)st_dtypes[k].size, &nbytes)) return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': byte size overflows", f, name);
    uint64_t b, en;
    if (!cJSON_IsArray(of) || cJSON_GetArraySize(of) != 2 || !json_u53(of->child, &b) || !json_u53(of->child->next, &en))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': 'data_offsets' must be [begin, end] with non-negative integers, got %s", f, name, ld_json_describe(of, d, sizeof d));
    if (en < b) return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': data_offsets [%llu, %llu] end before they begin", f, name, (unsigned long long)b, (unsigned long long)en);
    if (en - b != nbytes)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': shape and dtype %s need %zu bytes but data_offsets [%llu, %llu] hold %llu", f, name, t->dtype_name, nbytes, (unsigned long long)b, (unsigned long long)en, (unsigned long long)(en - b));
    if (en > data_size)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensor '%s': data_offsets [%llu, %llu] run past the end of the data section (%zu bytes)", f, name, (unsigned long long)b, (unsigned long long)en, data_size);
    t->offset = b;
    t->nbytes = nbytes;
    return LD_OK;
}

static ld_status parse(ld_safetensors *st, const uint8_t *p, size_t size) {
    ld_ctx *ctx = st->ctx;
    const char *f = st->name;
    if (size < 8) return ld_error(ctx, LD_ERR_FORMAT, "%s: file is %zu bytes, too short for the 8-byte header length", f, size);
    uint64_t hlen = ld_le64(p);
    if (hlen > LD_SAFETENSORS_MAX_HEADER)
        return ld_error(ctx, LD_ERR_LIMIT, "%s: header length %llu exceeds the limit of %llu bytes", f, (unsigned long long)hlen, (unsigned long long)LD_SAFETENSORS_MAX_HEADER);
    if (hlen > size - 8)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)", f, (unsigned long long)hlen, size);
    if (hlen < 2 || p[8] != '{') return ld_error(ctx, LD_ERR_FORMAT, "%s: byte 8: header does not start with '{'", f);
    size_t data_off = 8 + (size_t)hlen, data_size = size - data_off;
    cJSON *root = NULL;
    ld_status s = ld_json_parse(ctx, f, (const char *)p + 8, (size_t)hlen, &root);
    if (s) return ld_error_wrap(ctx, s, "safetensors header: ");
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: header is not a JSON object", f);
    }
    size_t n = 0;
    for (const cJSON *c = root->child; c; c = c->next)
        if (strcmp(c->string, "__metadata__")) n++;
    st->tensors = ld_arena_alloc(st->arena, n * sizeof *st->tensors + 1);
    const ld_tensor_info **by_off = ld_calloc(ctx, n + 1, sizeof *by_off);
    if (!st->tensors || !by_off) goto nomem;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (!strcmp(c->string, "__metadata__")) {
            if (!cJSON_IsObject(c)) {
                char d[80];
                s = ld_error(ctx, LD_ERR_FORMAT, "%s: header: '__metadata__' must be an object, got %s", f, ld_json_describe(c, d, sizeof d));
                goto fail;
            }
            size_t m = 0;
            for (const cJSON *e = c->child; e; e = e->next) m++;
            st->meta = ld_arena_alloc(st->arena, m * sizeof *st->meta + 1);
            if (!st->meta) goto nomem;
            for (const cJSON *e = c->child; e; e = e->next) {
                if (!cJSON_IsString(e)) {
                    char d[80];
                    s = ld_error(ctx, LD_ERR_FORMAT, "%s: header: __metadata__ key '%s': values must be strings, got %s", f, e->string, ld_json_describe(e, d, sizeof d));
                    goto fail;
                }
                ld_str_pair *kv = &st->meta[st->n_meta++];
                kv->key = ld_io_arena_strdup(st->arena, e->string);
                kv->value = ld_io_arena_strdup(st->arena, e->valuestring);
                if (!kv->key || !kv->value) goto nomem;
            }
            continue;
        }
        ld_tensor_info *t = &st->tensors[st->n];
        memset(t, 0, sizeof *t);
        t->name = ld_io_arena_strdup(st->arena, c->string);
        if (!t->name) goto nomem;
        s = parse_entry(st, c, data_size, t);
        if (s) goto fail;
        t->data = p + data_off + t->offset;
        by_off[st->n++] = t;
    }
    /* The tensors must tile the data section: sorted by offset, each starts where the last ended. */
    qsort(by_off, st->n, sizeof *by_off, cmp_info_offset);
    uint64_t end = 0;
    for (size_t i = 0; i < st->n; i++) {
        const ld_tensor_info *t = by_off[i];
        if (t->offset < end) {
            const ld_tensor_info *prev = by_off[i - 1];
            s = ld_error(ctx, LD_ERR_FORMAT, "%s: header: tensors '%s' (bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap", f,
                         prev->name, (unsigned long long)prev->offset, (unsigned long long)(prev->offset + prev->nbytes), t->name,
                         (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes));
            goto fail;
        }
        if (t->offset > end) {
            s = ld_error(ctx, LD_ERR_FORMAT, "%s: header: bytes %llu..%llu of the data section belong to no tensor (before '%s')", f,
                         (unsigned long long)end, (unsigned long long)t->offset, t->name);
            goto fail;
        }
        end = t->offset + t->nbytes;
    }
    if (end != data_size) {
        s = ld_error(ctx, LD_ERR_FORMAT, "%s: header: bytes %llu..%zu of the data section belong to no tensor (the tensors end at %llu)", f,
                     (unsigned long long)end, data_size, (unsigned long long)end);
        goto fail;
    }
    ld_free(ctx, by_off);
    cJSON_Delete(root);
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_info_name);
    if (st->n_meta) qsort(st->meta, st->n_meta, sizeof *st->meta, cmp_pair_key);
    return LD_OK;
nomem:
    s = ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory reading the header", f);
fail:
    ld_free(ctx, by_off);
    cJSON_Delete(root);
    return s;
}

static ld_status open_common(ld_ctx *ctx, const char *name, ld_safetensors **out, ld_safetensors **st_out) {
    ld_safetensors *st = ld_calloc(ctx, 1, sizeof *st);
    if (!st) return ld_ctx_status(ctx);
    st->ctx = ctx;
    st->name = ld_strdup(ctx, name ? name : "safetensors");
    ld_status s = st->name ? ld_arena_new(ctx, 64 << 10, &st->arena) : ld_ctx_status(ctx);
    if (s) {
        ld_safetensors_close(st);
        return s;
    }
    (void)out;
    *st_out = st;
    return LD_OK;
}

ld_status ld_safetensors_open_memory(ld_ctx *ctx, const char *name, const void *data, size_t size, ld_safetensors **out) {
    if (!out || (!data && size)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_safetensors_open_memory: NULL argument");
    *out = NULL;
    ld_safetensors *st;
    ld_status s = open_common(ctx, name, out, &st);
    if (s) return s;
    s = parse(st, data, size);
    if (s) {
        ld_safetensors_close(st);
        return s;
    }
    *out = st;
    return LD_OK;
}

ld_status ld_safetensors_open(ld_ctx *ctx, const char *path, ld_safetensors **out) {
    if (!out || !path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_safetensors_open: NULL argument");
    *out = NULL;
    ld_safetensors *st;
    ld_status s = open_common(ctx, path, out, &st);
    if (s) return s;
    s = ld_file_map(ctx, path, &st->map);
    if (!s) s = parse(st, st->map.data, st->map.size);
    if (s) {
        ld_safetensors_close(st);
        return s;
    }
    *out = st;
    return LD_OK;
}

size_t ld_safetensors_count(const ld_safetensors *st) {
    return st ? st->n : 0;
}
const ld_tensor_info *ld_safetensors_at(const ld_safetensors *st, size_t i) {
    return st && i < st->n ? &st->tensors[i] : NULL;
}
const ld_tensor_info *ld_safetensors_find(const ld_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    ld_tensor_info key;
    key.name = name;
    return bsearch(&key, st->tensors, st->n, sizeof key, cmp_info_name);
}
ld_status ld_safetensors_get(ld_ctx *ctx, const ld_safetensors *st, const char *name, const ld_tensor_info **out) {
    *out = ld_safetensors_find(st, name);
    if (!*out) return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: no tensor named '%s'", st ? st->name : "?", name ? name : "(null)");
    return LD_OK;
}
size_t ld_safetensors_metadata_count(const ld_safetensors *st) {
    return st ? st->n_meta : 0;
}
void ld_safetensors_metadata_at(const ld_safetensors *st, size_t i, const char **key, const char **value) {
    *key = *value = NULL;
    if (st && i < st->n_meta) {
        *key = st->meta[i].key;
        *value = st->meta[i].value;
    }
}
const char *ld_safetensors_metadata_get(const ld_safetensors *st, const char *key) {
    if (!st || !key || !st->n_meta) return NULL;
    ld_str_pair k = {key, NULL};
    const ld_str_pair *p = bsearch(&k, st->meta, st->n_meta, sizeof k, cmp_pair_key);
    return p ? p->value : NULL;
}
const char *ld_io_safetensors_name(const ld_safetensors *st) {
    return st->name;
}

/* ---- writer --------------------------------------------------------------------------- */

static int cmp_write_ptr(const void *a, const void *b) {
    return strcmp((*(const ld_st_write_tensor *const *)a)->name, (*(const ld_st_write_tensor *const *)b)->name);
}
static int cmp_pair_ptr(const void *a, const void *b) {
    return strcmp((*(const ld_str_pair *const *)a)->key, (*(const ld_str_pair *const *)b)->key);
}

/* Builds the padded header and the tensor order; *sizes[i] is each sorted tensor's byte size. */
static ld_status build_header(ld_ctx *ctx, const ld_st_write_tensor *tensors, size_t n, const ld_str_pair *metadata,
                              size_t n_meta, ld_buf *hdr, const ld_st_write_tensor ***order_out, size_t **sizes_out) {
    const ld_st_write_tensor **order = ld_calloc(ctx, n + 1, sizeof *order);
    size_t *sizes = ld_calloc(ctx, n + 1, sizeof *sizes);
    const ld_str_pair **meta = ld_calloc(ctx, n_meta + 1, sizeof *meta);
    ld_status s = LD_OK;
    if (!order || !sizes || !meta) {
        s = ld_ctx_status(ctx);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if (!tensors[i].name) {
            s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: tensor %zu has no name", i);
            goto done;
        }
        order[i] = &tensors[i];
    }
    qsort(order, n, sizeof *order, cmp_write_ptr);
    for (size_t i = 0; i < n_meta; i++) {
        if (!metadata[i].key || !metadata[i].value) {
            s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: metadata entry %zu is NULL", i);
            goto done;
        }
        meta[i] = &metadata[i];
    }
    qsort(meta, n_meta, sizeof *meta, cmp_pair_ptr);
    for (size_t i = 1; i < n_meta; i++)
        if (!strcmp(meta[i]->key, meta[i - 1]->key)) {
            s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: metadata key '%s' given twice", meta[i]->key);
            goto done;
        }
    ld_buf_puts(hdr, "{");
    if (n_meta) {
        ld_buf_puts(hdr, "\"__metadata__\":{");
        for (size_t i = 0; i < n_meta; i++) {
            if (i) ld_buf_puts(hdr, ",");
            ld_buf_json_str(hdr, meta[i]->key);
            ld_buf_puts(hdr, ":");
            ld_buf_json_str(hdr, meta[i]->value);
        }
        ld_buf_puts(hdr, "}");
    }
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const ld_st_write_tensor *t = order[i];
        if (i && !strcmp(t->name, order[i - 1]->name)) {
            s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: tensor '%s' given twice", t->name);
            goto done;
        }
        if (!strcmp(t->name, "__metadata__")) {
            s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: '__metadata__' cannot be a tensor name");
            goto done;
        }
        const char *dn;
        int esize;
        if (t->st_dtype) {
            int k = st_dtype_find(t->st_dtype);
            if (k < 0) {
                s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: tensor '%s': unknown dtype '%s'", t->name, t->st_dtype);
                goto done;
            }
            dn = st_dtypes[k].name;
            esize = st_dtypes[k].size;
        } else {
            const ld_dtype_info *di = ld_dtype_traits(t->dtype);
            int k = di ? st_dtype_find(di->name) : -1;
            if (k < 0) {
                s = ld_error(ctx, LD_ERR_DTYPE, "safetensors write: tensor '%s': dtype %s cannot be stored in safetensors", t->name, di ? di->name : "?");
                goto done;
            }
            dn = st_dtypes[k].name;
            esize = st_dtypes[k].size;
        }
        if (t->ndim < 0 || t->ndim > LD_IO_MAX_DIMS || (t->ndim && !t->shape)) {
            s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: tensor '%s': bad ndim %d", t->name, t->ndim);
            goto done;
        }
        size_t bytes = (size_t)esize;
        for (int d = 0; d < t->ndim; d++) {
            if (t->shape[d] < 0 || ld_mul_size(bytes, (size_t)t->shape[d], &bytes)) {
                s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: tensor '%s': bad or overflowing shape", t->name);
                goto done;
            }
        }
        if (bytes && !t->data) {
            s = ld_error(ctx, LD_ERR_INVALID_ARG, "safetensors write: tensor '%s': no data", t->name);
            goto done;
        }
        sizes[i] = bytes;
        if (i || n_meta) ld_buf_puts(hdr, ",");
        ld_buf_json_str(hdr, t->name);
        ld_buf_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", dn);
        for (int d = 0; d < t->ndim; d++) ld_buf_printf(hdr, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        ld_buf_printf(hdr, "],\"data_offsets\":[%zu,", off);
        if (ld_add_size(off, bytes, &off)) {
            s = ld_error(ctx, LD_ERR_OVERFLOW, "safetensors write: total size overflows");
            goto done;
        }
        ld_buf_printf(hdr, "%zu]}", off);
    }
    ld_buf_puts(hdr, "}");
    while (hdr->len % 8) ld_buf_puts(hdr, " ");
    if (hdr->failed) s = ld_error(ctx, LD_ERR_NOMEM, "safetensors write: out of memory building the header");
done:
    ld_free(ctx, meta);
    if (s) {
        ld_free(ctx, order);
        ld_free(ctx, sizes);
        return s;
    }
    *order_out = order;
    *sizes_out = sizes;
    return LD_OK;
}

static ld_status write_to(ld_ctx *ctx, const ld_st_write_tensor *tensors, size_t n, const ld_str_pair *metadata, size_t n_meta,
                          ld_io_sink *sink) {
    ld_buf hdr;
    ld_buf_init(&hdr, ctx);
    const ld_st_write_tensor **order = NULL;
    size_t *sizes = NULL;
    ld_status s = build_header(ctx, tensors, n, metadata, n_meta, &hdr, &order, &sizes);
    if (s) {
        ld_buf_free(&hdr);
        return s;
    }
    uint8_t len8[8];
    ld_put_le64(len8, hdr.len);
    s = ld_io_sink_write(sink, len8, 8);
    if (!s) s = ld_io_sink_write(sink, hdr.data, hdr.len);
    for (size_t i = 0; i < n && !s; i++) s = ld_io_sink_write(sink, order[i]->data, sizes[i]);
    ld_buf_free(&hdr);
    ld_free(ctx, order);
    ld_free(ctx, sizes);
    return s;
}

ld_status ld_safetensors_write(ld_ctx *ctx, const char *path, const ld_st_write_tensor *tensors, size_t n,
                               const ld_str_pair *metadata, size_t n_meta) {
    if (!path || (n && !tensors) || (n_meta && !metadata)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_safetensors_write: NULL argument");
    ld_io_sink sink;
    ld_status s = ld_io_sink_file(ctx, path, &sink);
    if (s) return s;
    s = write_to(ctx, tensors, n, metadata, n_meta, &sink);
    return ld_io_sink_finish(&sink, s, NULL, NULL);
}

ld_status ld_safetensors_write_memory(ld_ctx *ctx, const ld_st_write_tensor *tensors, size_t n, const ld_str_pair *metadata,
                                      size_t n_meta, void **out, size_t *size) {
    if (!out || !size || (n && !tensors) || (n_meta && !metadata)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_safetensors_write_memory: NULL argument");
    ld_io_sink sink;
    ld_io_sink_memory(ctx, &sink);
    ld_status s = write_to(ctx, tensors, n, metadata, n_meta, &sink);
    return ld_io_sink_finish(&sink, s, out, size);
}

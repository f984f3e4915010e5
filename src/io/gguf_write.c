/* io/gguf_write.c — the GGUF writer: metadata and tensors collected in memory, written as
 * GGUF version 3 with aligned, zero-padded tensor data (atomically, or into a buffer). A
 * tensor's bytes are either borrowed or produced at write time, one tensor at a time (so a
 * model of any size is written holding one tensor). A file read with ld_gguf and copied
 * through the writer comes out byte-identical when it was laid out the same way (tensors in
 * info order, each at the next aligned offset). */
#include <stdlib.h>
#include <string.h>

#include "io/gguf_internal.h"

typedef struct wkv {
    char *key;
    ld_buf val; /* u32 type + encoded value */
} wkv;

typedef struct wtensor {
    char *name;
    int32_t type;
    uint32_t ndim;
    uint64_t ne[LD_MAX_DIMS]; /* innermost first, as stored */
    const void *data;
    size_t nbytes;
    ld_gguf_fill_fn fill; /* or the bytes come from fill(user, ...) at write time */
    void *user;
} wtensor;

struct ld_gguf_writer {
    ld_ctx *ctx;
    wkv *kvs;
    size_t n_kv, cap_kv;
    wtensor *ts;
    size_t n_t, cap_t;
};

ld_status ld_gguf_writer_new(ld_ctx *ctx, ld_gguf_writer **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_gguf_writer_new: NULL argument");
    *out = ld_calloc(ctx, 1, sizeof **out);
    if (!*out) return ld_ctx_status(ctx);
    (*out)->ctx = ctx;
    return LD_OK;
}

void ld_gguf_writer_free(ld_gguf_writer *w) {
    if (!w) return;
    ld_ctx *ctx = w->ctx;
    for (size_t i = 0; i < w->n_kv; i++) {
        ld_free(ctx, w->kvs[i].key);
        ld_buf_free(&w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) ld_free(ctx, w->ts[i].name);
    ld_free(ctx, w->kvs);
    ld_free(ctx, w->ts);
    ld_free(ctx, w);
}

/* Grows an array of elem bytes to hold one more item. */
static bool grow(ld_ctx *ctx, void **arr, size_t n, size_t *cap, size_t elem) {
    if (n < *cap) return true;
    size_t nc = *cap ? *cap * 2 : 16, bytes;
    if (ld_mul_size(nc, elem, &bytes)) return false;
    void *p = ld_alloc(ctx, bytes);
    if (!p) return false;
    if (n) memcpy(p, *arr, n * elem);
    ld_free(ctx, *arr);
    *arr = p;
    *cap = nc;
    return true;
}

/* The buffer to fill for key: an existing entry (emptied) or a new one. */
static ld_buf *kv_slot(ld_gguf_writer *w, const char *key) {
    if (!w || !key) return NULL;
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kvs[i].key, key)) {
            w->kvs[i].val.len = 0;
            w->kvs[i].val.failed = false;
            return &w->kvs[i].val;
        }
    if (!grow(w->ctx, (void **)&w->kvs, w->n_kv, &w->cap_kv, sizeof *w->kvs)) return NULL;
    wkv *kv = &w->kvs[w->n_kv];
    kv->key = ld_strdup(w->ctx, key);
    if (!kv->key) return NULL;
    ld_buf_init(&kv->val, w->ctx);
    w->n_kv++;
    return &kv->val;
}

static ld_status kv_done(ld_gguf_writer *w, ld_buf *b, const char *key) {
    if (!b || b->failed) return ld_error(w ? w->ctx : NULL, LD_ERR_NOMEM, "gguf writer: out of memory setting '%s'", key ? key : "(null)");
    return LD_OK;
}

static void put_str(ld_buf *b, const char *s, size_t n) {
    ld_buf_u64(b, n);
    ld_buf_put(b, s, n);
}

static ld_status set_scalar(ld_gguf_writer *w, const char *key, ld_gguf_type t, const void *le_bytes) {
    ld_buf *b = kv_slot(w, key);
    if (b) {
        ld_buf_u32(b, (uint32_t)t);
        ld_buf_put(b, le_bytes, ld_gguf_scalar_size(t));
    }
    return kv_done(w, b, key);
}

ld_status ld_gguf_writer_set_scalar(ld_gguf_writer *w, const char *key, ld_gguf_type type, const void *le_bytes) {
    if (!ld_gguf_scalar_size(type) || !le_bytes)
        return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "gguf writer: '%s': not a scalar type", key ? key : "(null)");
    if (type == LD_GGUF_BOOL && *(const uint8_t *)le_bytes > 1)
        return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "gguf writer: '%s': bool must be 0 or 1", key ? key : "(null)");
    return set_scalar(w, key, type, le_bytes);
}

ld_status ld_gguf_writer_set_u32(ld_gguf_writer *w, const char *key, uint32_t v) {
    uint8_t t[4];
    ld_put_le32(t, v);
    return set_scalar(w, key, LD_GGUF_UINT32, t);
}
ld_status ld_gguf_writer_set_i32(ld_gguf_writer *w, const char *key, int32_t v) {
    uint8_t t[4];
    ld_put_le32(t, (uint32_t)v);
    return set_scalar(w, key, LD_GGUF_INT32, t);
}
ld_status ld_gguf_writer_set_u64(ld_gguf_writer *w, const char *key, uint64_t v) {
    uint8_t t[8];
    ld_put_le64(t, v);
    return set_scalar(w, key, LD_GGUF_UINT64, t);
}
ld_status ld_gguf_writer_set_f32(ld_gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    uint8_t t[4];
    ld_put_le32(t, u);
    return set_scalar(w, key, LD_GGUF_FLOAT32, t);
}
ld_status ld_gguf_writer_set_bool(ld_gguf_writer *w, const char *key, bool v) {
    uint8_t t = v ? 1 : 0;
    return set_scalar(w, key, LD_GGUF_BOOL, &t);
}
ld_status ld_gguf_writer_set_str(ld_gguf_writer *w, const char *key, const char *v) {
    if (!v) return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "gguf writer: NULL string for '%s'", key ? key : "(null)");
    ld_buf *b = kv_slot(w, key);
    if (b) {
        ld_buf_u32(b, LD_GGUF_STRING);
        put_str(b, v, strlen(v));
    }
    return kv_done(w, b, key);
}

ld_status ld_gguf_writer_set_array(ld_gguf_writer *w, const char *key, ld_gguf_type et, const void *items, size_t n) {
    size_t es = ld_gguf_scalar_size(et), bytes;
    if (!w || !es || (n && !items) || ld_mul_size(es, n, &bytes))
        return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "gguf writer: '%s': bad numeric array", key ? key : "(null)");
    ld_buf *b = kv_slot(w, key);
    if (b) {
        ld_buf_u32(b, LD_GGUF_ARRAY);
        ld_buf_u32(b, (uint32_t)et);
        ld_buf_u64(b, n);
        ld_buf_put(b, items, bytes);
    }
    return kv_done(w, b, key);
}

ld_status ld_gguf_writer_set_strs(ld_gguf_writer *w, const char *key, const char *const *items, size_t n) {
    if (!w || (n && !items)) return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "gguf writer: bad string array");
    for (size_t i = 0; i < n; i++)
        if (!items[i]) return ld_error(w->ctx, LD_ERR_INVALID_ARG, "gguf writer: '%s': item %zu is NULL", key ? key : "(null)", i);
    ld_buf *b = kv_slot(w, key);
    if (b) {
        ld_buf_u32(b, LD_GGUF_ARRAY);
        ld_buf_u32(b, LD_GGUF_STRING);
        ld_buf_u64(b, n);
        for (size_t i = 0; i < n; i++) put_str(b, items[i], strlen(items[i]));
    }
    return kv_done(w, b, key);
}

ld_status ld_gguf_writer_set_value(ld_gguf_writer *w, const char *key, const ld_gguf_value *v) {
    if (!w || !v || (v->encoded_size && !v->encoded) || (int)v->type < 0 || v->type >= LD_GGUF_TYPE_COUNT)
        return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "gguf writer: bad value for '%s'", key ? key : "(null)");
    ld_buf *b = kv_slot(w, key);
    if (b) {
        ld_buf_u32(b, (uint32_t)v->type);
        ld_buf_put(b, v->encoded, v->encoded_size);
    }
    return kv_done(w, b, key);
}

static ld_status add_tensor(ld_gguf_writer *w, const char *name, int32_t type, int ndim, const int64_t *shape,
                            const void *data, size_t nbytes, ld_gguf_fill_fn fill, void *user) {
    if (!w || !name) return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "gguf writer: NULL tensor name");
    ld_ctx *ctx = w->ctx;
    int blk, bb;
    const char *tn;
    if (!ld_ggml_type_info(type, &tn, &blk, &bb)) return ld_error(ctx, LD_ERR_INVALID_ARG, "gguf writer: tensor '%s': unknown GGML type %d", name, type);
    if (ndim < 0 || ndim > LD_MAX_DIMS || (ndim && !shape)) return ld_error(ctx, LD_ERR_INVALID_ARG, "gguf writer: tensor '%s': bad ndim %d", name, ndim);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->ts[i].name, name)) return ld_error(ctx, LD_ERR_INVALID_ARG, "gguf writer: tensor '%s' added twice", name);
    wtensor t = {.type = type, .ndim = (uint32_t)ndim, .data = data, .fill = fill, .user = user};
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || ld_mul_size(numel, (size_t)shape[d], &numel))
            return ld_error(ctx, LD_ERR_INVALID_ARG, "gguf writer: tensor '%s': bad or overflowing shape", name);
        t.ne[ndim - 1 - d] = (uint64_t)shape[d];
    }
    uint64_t row = ndim ? t.ne[0] : 1;
    size_t need;
    if (row % (uint64_t)blk || ld_mul_size(numel / (size_t)blk, (size_t)bb, &need))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "gguf writer: tensor '%s': row length %llu is not a whole number of %s blocks", name,
                        (unsigned long long)row, tn);
    if (need != nbytes || (nbytes && !data && !fill))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "gguf writer: tensor '%s': %zu bytes given, %s of this shape needs %zu", name, nbytes, tn, need);
    t.nbytes = nbytes;
    if (!grow(ctx, (void **)&w->ts, w->n_t, &w->cap_t, sizeof *w->ts)) return ld_ctx_status(ctx);
    t.name = ld_strdup(ctx, name);
    if (!t.name) return ld_ctx_status(ctx);
    w->ts[w->n_t++] = t;
    return LD_OK;
}

ld_status ld_gguf_writer_add_tensor(ld_gguf_writer *w, const char *name, int32_t type, int ndim, const int64_t *shape,
                                    const void *data, size_t nbytes) {
    return add_tensor(w, name, type, ndim, shape, data, nbytes, NULL, NULL);
}

ld_status ld_gguf_writer_add_tensor_fn(ld_gguf_writer *w, const char *name, int32_t type, int ndim,
                                       const int64_t *shape, size_t nbytes, ld_gguf_fill_fn fill, void *user) {
    if (!fill) return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "gguf writer: tensor '%s': NULL fill function", name ? name : "?");
    return add_tensor(w, name, type, ndim, shape, NULL, nbytes, fill, user);
}

/* One tensor's bytes into the sink: borrowed, or filled into a buffer held for this call. */
static ld_status write_tensor(ld_gguf_writer *w, const wtensor *t, ld_io_sink *sink) {
    if (!t->fill) return ld_io_sink_write(sink, t->data, t->nbytes);
    void *buf = ld_alloc(w->ctx, t->nbytes ? t->nbytes : 1);
    if (!buf) return ld_ctx_status(w->ctx);
    ld_status s = t->fill(t->user, buf, t->nbytes);
    if (s) s = ld_error_wrap(w->ctx, s, "gguf writer: tensor '%s': ", t->name);
    else s = ld_io_sink_write(sink, buf, t->nbytes);
    ld_free(w->ctx, buf);
    return s;
}

static const uint8_t zeros[256];

static ld_status pad_to(ld_io_sink *s, size_t alignment) {
    size_t pad = (alignment - s->written % alignment) % alignment;
    ld_status st = LD_OK;
    while (pad && !st) {
        size_t n = pad < sizeof zeros ? pad : sizeof zeros;
        st = ld_io_sink_write(s, zeros, n);
        pad -= n;
    }
    return st;
}

static ld_status write_to(ld_gguf_writer *w, ld_io_sink *sink) {
    ld_ctx *ctx = w->ctx;
    size_t alignment = LD_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment")) continue;
        const ld_buf *b = &w->kvs[i].val;
        uint32_t a = b->len == 8 && ld_le32(b->data) == LD_GGUF_UINT32 ? ld_le32(b->data + 4) : 0;
        if (!a || (a & (a - 1)) || a > LD_GGUF_MAX_ALIGNMENT)
            return ld_error(ctx, LD_ERR_INVALID_ARG, "gguf writer: general.alignment must be a UINT32 power of two up to %u", LD_GGUF_MAX_ALIGNMENT);
        alignment = a;
    }
    ld_buf h;
    ld_buf_init(&h, ctx);
    ld_buf_put(&h, "GGUF", 4);
    ld_buf_u32(&h, 3);
    ld_buf_u64(&h, w->n_t);
    ld_buf_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&h, w->kvs[i].key, strlen(w->kvs[i].key));
        ld_buf_put(&h, w->kvs[i].val.data, w->kvs[i].val.len);
    }
    size_t off = 0;
    ld_status s = LD_OK;
    for (size_t i = 0; i < w->n_t && !s; i++) {
        const wtensor *t = &w->ts[i];
        put_str(&h, t->name, strlen(t->name));
        ld_buf_u32(&h, t->ndim);
        for (uint32_t d = 0; d < t->ndim; d++) ld_buf_u64(&h, t->ne[d]);
        ld_buf_u32(&h, (uint32_t)t->type);
        ld_buf_u64(&h, off);
        if (ld_add_size(off, t->nbytes, &off) || ld_add_size(off, (alignment - off % alignment) % alignment, &off))
            s = ld_error(ctx, LD_ERR_OVERFLOW, "gguf writer: total size overflows");
    }
    if (!s && h.failed) s = ld_error(ctx, LD_ERR_NOMEM, "gguf writer: out of memory building the header");
    if (!s) s = ld_io_sink_write(sink, h.data, h.len);
    ld_buf_free(&h);
    if (!s) s = pad_to(sink, alignment);
    /* The data section starts aligned, so padding the file offset pads the data offset. */
    for (size_t i = 0; i < w->n_t && !s; i++) {
        s = write_tensor(w, &w->ts[i], sink);
        if (!s) s = pad_to(sink, alignment);
    }
    return s;
}

ld_status ld_gguf_writer_write(ld_gguf_writer *w, const char *path) {
    if (!w || !path) return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "ld_gguf_writer_write: NULL argument");
    ld_io_sink sink;
    ld_status s = ld_io_sink_file(w->ctx, path, &sink);
    if (s) return s;
    s = write_to(w, &sink);
    return ld_io_sink_finish(&sink, s, NULL, NULL);
}

ld_status ld_gguf_writer_write_memory(ld_gguf_writer *w, void **out, size_t *size) {
    if (!w || !out || !size) return ld_error(w ? w->ctx : NULL, LD_ERR_INVALID_ARG, "ld_gguf_writer_write_memory: NULL argument");
    ld_io_sink sink;
    ld_io_sink_memory(w->ctx, &sink);
    ld_status s = write_to(w, &sink);
    return ld_io_sink_finish(&sink, s, out, size);
}

/* io/buf.c — the io layer's growable byte buffer and output sinks (see io_internal.h). */
#include <stdarg.h>
#include <stdio.h>

#include "io/io_internal.h"

void ld_buf_init(ld_buf *b, ld_ctx *ctx) {
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
}

void ld_buf_free(ld_buf *b) {
    ld_free(b->ctx, b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static bool buf_reserve(ld_buf *b, size_t extra) {
    size_t need;
    if (b->failed || ld_add_size(b->len, extra, &need)) {
        b->failed = true;
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (ld_mul_size(cap, 2, &cap)) {
            b->failed = true;
            return false;
        }
    }
    uint8_t *p = ld_alloc(b->ctx, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    if (b->len) memcpy(p, b->data, b->len);
    ld_free(b->ctx, b->data);
    b->data = p;
    b->cap = cap;
    return true;
}

void ld_buf_put(ld_buf *b, const void *p, size_t n) {
    if (!n || !buf_reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void ld_buf_puts(ld_buf *b, const char *s) {
    ld_buf_put(b, s, strlen(s));
}

void ld_buf_printf(ld_buf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        b->failed = true;
        return;
    }
    ld_buf_put(b, tmp, (size_t)n);
}

void ld_buf_u32(ld_buf *b, uint32_t v) {
    uint8_t t[4];
    ld_put_le32(t, v);
    ld_buf_put(b, t, 4);
}

void ld_buf_u64(ld_buf *b, uint64_t v) {
    uint8_t t[8];
    ld_put_le64(t, v);
    ld_buf_put(b, t, 8);
}

void ld_buf_json_str(ld_buf *b, const char *s) {
    ld_buf_puts(b, "\"");
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        ld_buf_put(b, run, (size_t)(s - run));
        if (c == '"') ld_buf_puts(b, "\\\"");
        else if (c == '\\') ld_buf_puts(b, "\\\\");
        else if (c == '\n') ld_buf_puts(b, "\\n");
        else if (c == '\t') ld_buf_puts(b, "\\t");
        else ld_buf_printf(b, "\\u%04x", c);
        run = s + 1;
    }
    ld_buf_put(b, run, (size_t)(s - run));
    ld_buf_puts(b, "\"");
}

ld_status ld_io_sink_file(ld_ctx *ctx, const char *path, ld_io_sink *s) {
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    return ld_atomic_file_open(ctx, path, &s->file);
}

void ld_io_sink_memory(ld_ctx *ctx, ld_io_sink *s) {
    memset(s, 0, sizeof *s);
    s->ctx = ctx;
    ld_buf_init(&s->mem, ctx);
}

ld_status ld_io_sink_write(ld_io_sink *s, const void *p, size_t n) {
    if (!n) return LD_OK;
    s->written += n;
    if (s->file) return ld_atomic_file_write(s->file, p, n);
    ld_buf_put(&s->mem, p, n);
    if (s->mem.failed) return ld_error(s->ctx, LD_ERR_NOMEM, "out of memory writing %zu bytes to memory", s->written);
    return LD_OK;
}

ld_status ld_io_sink_finish(ld_io_sink *s, ld_status status, void **out, size_t *size) {
    if (s->file) {
        if (status) ld_atomic_file_abort(s->file);
        else status = ld_atomic_file_commit(s->file);
        s->file = NULL;
        return status;
    }
    if (status || !out || !size) {
        ld_buf_free(&s->mem);
        return status;
    }
    if (!s->mem.data) {
        s->mem.data = ld_alloc(s->ctx, 0);
        if (!s->mem.data) return ld_ctx_status(s->ctx);
    }
    *out = s->mem.data;
    *size = s->mem.len;
    s->mem.data = NULL;
    return LD_OK;
}

char *ld_io_arena_strndup(ld_arena *a, const char *s, size_t n) {
    size_t total;
    if (ld_add_size(n, 1, &total)) return NULL;
    char *d = ld_arena_alloc(a, total);
    if (!d) return NULL;
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *ld_io_arena_strdup(ld_arena *a, const char *s) {
    return ld_io_arena_strndup(a, s, strlen(s));
}

/* core/alloc.c — allocation through the context's hooks, and arenas (one per lifetime). */
#include <string.h>

#include "core/ctx_internal.h"

/* Each block carries a 64-byte header recording its size, so bytes_in_use is exact. */
#define LD_ALIGN 64

void *ld_alloc(ld_ctx *ctx, size_t size) {
    if (!ctx) return NULL;
    size_t total;
    if (ld_add_size(size, LD_ALIGN, &total)) {
        ld_error(ctx, LD_ERR_OVERFLOW, "allocation of %zu bytes overflows", size);
        return NULL;
    }
    unsigned char *p = ctx->allocator.alloc(ctx->allocator.user, total, LD_ALIGN);
    if (!p) {
        ld_error(ctx, LD_ERR_NOMEM, "out of memory allocating %zu bytes", size);
        return NULL;
    }
    memcpy(p, &size, sizeof size);
    __atomic_fetch_add(&ctx->bytes_in_use, size, __ATOMIC_RELAXED); /* threads may allocate */
    return p + LD_ALIGN;
}

void *ld_calloc(ld_ctx *ctx, size_t n, size_t size) {
    size_t total;
    if (ld_mul_size(n, size, &total)) {
        ld_error(ctx, LD_ERR_OVERFLOW, "allocation of %zu x %zu bytes overflows", n, size);
        return NULL;
    }
    void *p = ld_alloc(ctx, total);
    if (p) memset(p, 0, total);
    return p;
}

void ld_free(ld_ctx *ctx, void *ptr) {
    if (!ctx || !ptr) return;
    unsigned char *base = (unsigned char *)ptr - LD_ALIGN;
    size_t size;
    memcpy(&size, base, sizeof size);
    __atomic_fetch_sub(&ctx->bytes_in_use, size, __ATOMIC_RELAXED);
    ctx->allocator.free(ctx->allocator.user, base);
}

char *ld_strdup(ld_ctx *ctx, const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = ld_alloc(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

size_t ld_ctx_bytes_in_use(const ld_ctx *ctx) {
    return ctx ? ctx->bytes_in_use : 0;
}

/* ---- arenas ----------------------------------------------------------------------- */
typedef struct ld_chunk {
    struct ld_chunk *next;
    size_t cap;  /* usable bytes after the header */
    size_t used;
} ld_chunk;

#define CHUNK_HEADER (((sizeof(ld_chunk) + LD_ALIGN - 1) / LD_ALIGN) * LD_ALIGN)

struct ld_arena {
    ld_ctx *ctx;
    size_t chunk_size;
    ld_chunk *head;    /* all chunks, in allocation order */
    ld_chunk *current; /* the chunk allocations come from now */
};

ld_status ld_arena_new(ld_ctx *ctx, size_t chunk_size, ld_arena **out) {
    if (!ctx || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_arena_new: NULL argument");
    *out = NULL;
    ld_arena *a = ld_calloc(ctx, 1, sizeof *a);
    if (!a) return ld_ctx_status(ctx);
    a->ctx = ctx;
    a->chunk_size = chunk_size ? chunk_size : (size_t)1 << 20;
    *out = a;
    return LD_OK;
}

void ld_arena_free(ld_arena *a) {
    if (!a) return;
    ld_chunk *c = a->head;
    while (c) {
        ld_chunk *n = c->next;
        ld_free(a->ctx, c);
        c = n;
    }
    ld_free(a->ctx, a);
}

static ld_chunk *chunk_new(ld_arena *a, size_t need) {
    size_t cap = need > a->chunk_size ? need : a->chunk_size, total;
    if (ld_add_size(cap, CHUNK_HEADER, &total)) {
        ld_error(a->ctx, LD_ERR_OVERFLOW, "arena allocation of %zu bytes overflows", need);
        return NULL;
    }
    ld_chunk *c = ld_alloc(a->ctx, total);
    if (!c) return NULL;
    c->next = NULL;
    c->cap = cap;
    c->used = 0;
    return c;
}

void *ld_arena_alloc(ld_arena *a, size_t size) {
    if (!a) return NULL;
    size_t rounded;
    if (ld_add_size(size, LD_ALIGN - 1, &rounded)) {
        ld_error(a->ctx, LD_ERR_OVERFLOW, "arena allocation of %zu bytes overflows", size);
        return NULL;
    }
    rounded &= ~(size_t)(LD_ALIGN - 1);
    if (rounded == 0) rounded = LD_ALIGN;
    /* Try the current chunk, then later chunks kept from before a reset. */
    ld_chunk *c = a->current ? a->current : a->head;
    while (c && c->cap - c->used < rounded) {
        c = c->next;
        if (c) c->used = 0; /* chunks after current are free since the last reset */
    }
    if (!c) {
        c = chunk_new(a, rounded);
        if (!c) return NULL;
        if (!a->head) a->head = c;
        else {
            ld_chunk *last = a->current ? a->current : a->head;
            while (last->next) last = last->next;
            last->next = c;
        }
    }
    a->current = c;
    void *p = (unsigned char *)c + CHUNK_HEADER + c->used;
    c->used += rounded;
    return p;
}

void ld_arena_reset(ld_arena *a) {
    if (!a) return;
    if (a->head) a->head->used = 0;
    a->current = a->head;
}

size_t ld_arena_used(const ld_arena *a) {
    size_t n = 0;
    if (!a) return 0;
    for (ld_chunk *c = a->head; c; c = c->next) {
        n += c->used;
        if (c == a->current) break;
    }
    return n;
}

size_t ld_arena_capacity(const ld_arena *a) {
    size_t n = 0;
    if (!a) return 0;
    for (ld_chunk *c = a->head; c; c = c->next) n += c->cap;
    return n;
}

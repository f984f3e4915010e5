/* io/io_internal.h — helpers shared by the io layer's readers and writers: little-endian
 * loads/stores, a growable byte buffer, and an output sink (atomic file or memory). */
#ifndef LD_IO_INTERNAL_H
#define LD_IO_INTERNAL_H

#include <string.h>

#include "core/endian.h"
#include "io/json.h"
#include "liandan/io.h"

/* A growable buffer; after an allocation failure `failed` is set and appends are ignored. */
typedef struct ld_buf {
    ld_ctx *ctx;
    uint8_t *data;
    size_t len, cap;
    bool failed;
} ld_buf;
void ld_buf_init(ld_buf *b, ld_ctx *ctx);
void ld_buf_free(ld_buf *b);
void ld_buf_put(ld_buf *b, const void *p, size_t n);
void ld_buf_puts(ld_buf *b, const char *s);
void ld_buf_printf(ld_buf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void ld_buf_u32(ld_buf *b, uint32_t v);
void ld_buf_u64(ld_buf *b, uint64_t v);
/* Appends s as a JSON string literal (quotes, escapes for '"', '\\' and control bytes). */
void ld_buf_json_str(ld_buf *b, const char *s);

/* Where a writer's bytes go: an atomic file or an ld_buf. */
typedef struct ld_io_sink {
    ld_ctx *ctx;
    ld_atomic_file *file;
    ld_buf mem;
    size_t written;
} ld_io_sink;
ld_status ld_io_sink_file(ld_ctx *ctx, const char *path, ld_io_sink *s);
void ld_io_sink_memory(ld_ctx *ctx, ld_io_sink *s);
ld_status ld_io_sink_write(ld_io_sink *s, const void *p, size_t n);
/* Commits (status == LD_OK) or discards the output; for memory sinks hands the buffer to
 * *out / *size (ld_alloc'd). Returns the final status. */
ld_status ld_io_sink_finish(ld_io_sink *s, ld_status status, void **out, size_t *size);

/* A NUL-terminated copy of s (or of n bytes) in the arena; NULL on failure. */
char *ld_io_arena_strdup(ld_arena *a, const char *s);
char *ld_io_arena_strndup(ld_arena *a, const char *s, size_t n);

/* The name a safetensors reader was opened with (path or the memory name). */
const char *ld_io_safetensors_name(const ld_safetensors *st);

#endif

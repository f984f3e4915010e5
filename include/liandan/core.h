/* liandan/core.h — the context, errors, logging, memory, random numbers, threads, timers.
 *
 * An ld_ctx carries what every library call may need: the last error message, the log
 * callback, the allocator hooks and the thread count. A context is not thread-safe; use
 * one per thread that calls the library (the library's own worker threads never touch it).
 *
 * Ownership: objects created with a context must be freed before the context. */
#ifndef LIANDAN_CORE_H
#define LIANDAN_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LD_VERSION_MAJOR 0
#define LD_VERSION_MINOR 1
#define LD_VERSION_PATCH 0
const char *ld_version(void);

/* ---- logging ---------------------------------------------------------------------- */
typedef enum ld_log_level { LD_LOG_DEBUG = 0, LD_LOG_INFO, LD_LOG_WARN, LD_LOG_ERROR } ld_log_level;
/* Receives every log line (no trailing newline). The library never prints by itself. */
typedef void (*ld_log_fn)(void *user, ld_log_level level, const char *msg);

/* ---- allocator hooks -------------------------------------------------------------- */
/* alloc returns memory aligned to `align` (a power of two, >= sizeof(void*)) or NULL.
 * Tests install hooks that fail on the n-th allocation to prove every failure path. */
typedef struct ld_allocator {
    void *(*alloc)(void *user, size_t size, size_t align);
    void (*free)(void *user, void *ptr);
    void *user;
} ld_allocator;

/* ---- context ---------------------------------------------------------------------- */
typedef struct ld_ctx ld_ctx;

typedef struct ld_ctx_params {
    int n_threads;            /* 0 = all available cores */
    ld_log_fn log;            /* NULL = drop log lines */
    void *log_user;
    ld_log_level log_level;   /* lines below this level are not formatted at all */
    const ld_allocator *allocator; /* NULL = aligned malloc/free; copied into the ctx */
} ld_ctx_params;

ld_ctx_params ld_ctx_default_params(void);
/* Creates a context. *out is NULL on failure (only LD_ERR_NOMEM / LD_ERR_INVALID_ARG). */
ld_status ld_ctx_new(const ld_ctx_params *params, ld_ctx **out);
void ld_ctx_free(ld_ctx *ctx);

/* The detailed message of the last error set on this context ("" if none). Valid until
 * the next call that sets an error. */
const char *ld_ctx_error(const ld_ctx *ctx);
ld_status ld_ctx_status(const ld_ctx *ctx);
void ld_ctx_clear_error(ld_ctx *ctx);

/* Sets the context's error and returns `status`, so callers can write
 * `return ld_error(ctx, LD_ERR_FORMAT, "%s: byte %zu: bad magic", path, off);`. */
ld_status ld_error(ld_ctx *ctx, ld_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Prefixes the existing error message with more context ("loading model x: " + old). */
ld_status ld_error_wrap(ld_ctx *ctx, ld_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

void ld_log(ld_ctx *ctx, ld_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- threads ---------------------------------------------------------------------- */
/* Each context computes on its own team of n_threads threads (the calling thread and
 * n_threads - 1 workers, started at its first parallel work, ended by ld_ctx_free). Idle
 * workers sleep after a short spin; contexts used from different threads never share or
 * resize each other's teams. Changing the count joins the workers (not during a call). */
void ld_ctx_set_threads(ld_ctx *ctx, int n_threads);
int ld_ctx_threads(const ld_ctx *ctx);
/* Number of cores the process may use. */
int ld_cpu_count(void);

/* ---- CPU instruction-set level ---------------------------------------------------- */
/* The level the CPU kernels run at: "avx512", "avx2" or "scalar" — the widest this CPU has,
 * or a lower one that the environment variable LD_ISA names (read once, at first use). */
const char *ld_cpu_level(void);
/* LD_ISA as given: 0 when unset, -1 when it names no level, else 1; *widest (may be NULL)
 * is set to the widest level this CPU has (the level used is the lower of the two). */
int ld_cpu_level_env(const char **widest);

/* ---- memory ----------------------------------------------------------------------- */
/* Allocation through the context's hooks. On failure: NULL and LD_ERR_NOMEM set on ctx.
 * size 0 returns a valid unique pointer. ld_free(ctx, NULL) is a no-op. */
void *ld_alloc(ld_ctx *ctx, size_t size);           /* 64-byte aligned */
void *ld_calloc(ld_ctx *ctx, size_t n, size_t size); /* overflow-checked, zeroed */
void ld_free(ld_ctx *ctx, void *ptr);
char *ld_strdup(ld_ctx *ctx, const char *s);
/* Bytes currently allocated through this context (for leak tests and reports). */
size_t ld_ctx_bytes_in_use(const ld_ctx *ctx);

/* Overflow-checked size arithmetic: return 0 on success, nonzero on overflow. */
static inline int ld_mul_size(size_t a, size_t b, size_t *out) {
    return __builtin_mul_overflow(a, b, out);
}
static inline int ld_add_size(size_t a, size_t b, size_t *out) {
    return __builtin_add_overflow(a, b, out);
}

/* An arena hands out 64-byte-aligned blocks from large chunks and frees them all at once.
 * One arena per lifetime class (parameters, gradients, optimizer state, activations, KV
 * cache). ld_arena_reset() keeps the chunks, so a loop that allocates the same sequence
 * every iteration allocates from the system only during the first one. */
typedef struct ld_arena ld_arena;
/* chunk_size: minimum bytes per system allocation (0 = 1 MiB). */
ld_status ld_arena_new(ld_ctx *ctx, size_t chunk_size, ld_arena **out);
void ld_arena_free(ld_arena *arena);
void *ld_arena_alloc(ld_arena *arena, size_t size); /* NULL + LD_ERR_NOMEM on ctx on failure */
void ld_arena_reset(ld_arena *arena);
size_t ld_arena_used(const ld_arena *arena);     /* bytes handed out since the last reset */
size_t ld_arena_capacity(const ld_arena *arena); /* bytes held from the system */

/* ---- random numbers --------------------------------------------------------------- */
/* Counter-based generator: the value at position i depends only on (seed, i), so the
 * state is two integers that can be saved and restored exactly, and parallel code can
 * draw the i-th number without sharing state. */
typedef struct ld_rng {
    uint64_t seed;
    uint64_t counter;
} ld_rng;

ld_rng ld_rng_init(uint64_t seed);
/* The i-th raw 64-bit value of stream `seed` (pure function). */
uint64_t ld_rng_at(uint64_t seed, uint64_t i);
uint64_t ld_rng_u64(ld_rng *rng);
/* Uniform in [0, 1) with 24 random bits. */
float ld_rng_uniform(ld_rng *rng);
/* Uniform integer in [0, n), unbiased. n must be > 0. */
uint64_t ld_rng_below(ld_rng *rng, uint64_t n);
/* Standard normal (Box–Muller; consumes two draws). */
float ld_rng_normal(ld_rng *rng);

/* ---- timers ----------------------------------------------------------------------- */
/* Monotonic seconds since an arbitrary point. */
double ld_time_now(void);

#ifdef __cplusplus
}
#endif
#endif

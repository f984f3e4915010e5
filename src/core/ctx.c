/* core/ctx.c — the library context: error messages, logging, its thread team. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/ctx_internal.h"
#include "core/team.h"

const char *ld_version(void) {
    return "0.1.0";
}

static void *default_alloc(void *user, size_t size, size_t align) {
    (void)user;
    void *p = NULL;
    if (posix_memalign(&p, align, size ? size : 1) != 0) return NULL;
    return p;
}
static void default_free(void *user, void *ptr) {
    (void)user;
    free(ptr);
}

ld_ctx_params ld_ctx_default_params(void) {
    ld_ctx_params p;
    memset(&p, 0, sizeof p);
    p.log_level = LD_LOG_INFO;
    return p;
}

int ld_cpu_count(void) {
#ifdef __linux__
    cpu_set_t set; /* the cores this process may run on (taskset, cgroups' cpusets) */
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

ld_status ld_ctx_new(const ld_ctx_params *params, ld_ctx **out) {
    if (!out) return LD_ERR_INVALID_ARG;
    *out = NULL;
    ld_ctx_params p = params ? *params : ld_ctx_default_params();
    if (p.n_threads < 0) return LD_ERR_INVALID_ARG;
    ld_allocator a = {default_alloc, default_free, NULL};
    if (p.allocator) {
        if (!p.allocator->alloc || !p.allocator->free) return LD_ERR_INVALID_ARG;
        a = *p.allocator;
    }
    ld_ctx *ctx = a.alloc(a.user, sizeof *ctx, 64);
    if (!ctx) return LD_ERR_NOMEM;
    memset(ctx, 0, sizeof *ctx);
    ctx->allocator = a;
    ctx->log = p.log;
    ctx->log_user = p.log_user;
    ctx->log_level = p.log_level;
    ctx->n_threads = p.n_threads > 0 ? p.n_threads : ld_cpu_count();
    ctx->team = ld_team_new(ctx->n_threads);
    *out = ctx;
    return LD_OK;
}

void ld_ctx_free(ld_ctx *ctx) {
    if (!ctx) return;
    ld_team_free(ctx->team);
    ld_allocator a = ctx->allocator;
    a.free(a.user, ctx);
}

const char *ld_ctx_error(const ld_ctx *ctx) {
    return ctx ? ctx->error : "no context";
}
ld_status ld_ctx_status(const ld_ctx *ctx) {
    return ctx ? ctx->status : LD_ERR_INVALID_ARG;
}
void ld_ctx_clear_error(ld_ctx *ctx) {
    if (!ctx) return;
    ctx->status = LD_OK;
    ctx->error[0] = 0;
}

ld_status ld_error(ld_ctx *ctx, ld_status status, const char *fmt, ...) {
    if (!ctx) return status;
    ctx->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
    return status;
}

ld_status ld_error_wrap(ld_ctx *ctx, ld_status status, const char *fmt, ...) {
    if (!ctx) return status;
    char old[LD_ERROR_MAX];
    memcpy(old, ctx->error, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof ctx->error && old[0])
        snprintf(ctx->error + n, sizeof ctx->error - (size_t)n, "%s", old);
    ctx->status = status;
    return status;
}

void ld_log(ld_ctx *ctx, ld_log_level level, const char *fmt, ...) {
    if (!ctx || !ctx->log || level < ctx->log_level) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ctx->log(ctx->log_user, level, line);
}

void ld_ctx_set_threads(ld_ctx *ctx, int n_threads) {
    if (!ctx) return;
    ctx->n_threads = n_threads > 0 ? n_threads : ld_cpu_count();
    ld_team_set_threads(ctx->team, ctx->n_threads);
}

ld_team *ld_ctx_team(ld_ctx *ctx) {
    return ctx ? ctx->team : NULL;
}

int ld_ctx_threads(const ld_ctx *ctx) {
    return ctx ? ctx->n_threads : 1;
}

/* core/ctx_internal.h — the layout of ld_ctx, for library code only. */
#ifndef LD_CTX_INTERNAL_H
#define LD_CTX_INTERNAL_H

#include "liandan/core.h"

#define LD_ERROR_MAX 1024

struct ld_ctx {
    ld_status status;
    char error[LD_ERROR_MAX];
    ld_log_fn log;
    void *log_user;
    ld_log_level log_level;
    ld_allocator allocator;
    int n_threads;
    struct ld_team *team; /* core/team.h: NULL (out of memory) runs loops serially */
    size_t bytes_in_use;
};

#endif

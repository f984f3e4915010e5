/* bench/bench_team.c — running benchmark rows that call kernels directly on a context's
 * thread team (the library's own calls make their context's team current themselves). */
#include "bench.h"
#include "core/team.h"

void ld_bench_on_team(ld_bench_suite_fn fn, const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&p, &ctx) != LD_OK) return;
    {
        LD_TEAM_SCOPE(ctx);
        fn(o, lim, r);
    }
    ld_ctx_free(ctx);
}

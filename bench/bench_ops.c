/* bench/bench_ops.c — `liandan bench kernels --filter ops`: the memory-bound kernels
 * (LayerNorm, RMSNorm, AdamW, cross-entropy, the distillation loss, GELU) of the CPU backend at training shapes,
 * each in GB/s of the bytes it must move and as a ratio to the triad bandwidth measured in
 * the same run. Arrays are sized well beyond the last-level cache except where the shape
 * itself is small (xent at N=256, V=50304: 51 MB). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kernels/kernels.h"

/* 64-byte aligned floats filled in parallel (first touch by the threads that use them)
 * with values in [-1, 1); NULL if out of memory. */
static float *bench_floats(size_t n, uint32_t salt) {
    float *p = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!p) return NULL;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) p[i] = (float)(((uint32_t)i * 2654435761u + salt) >> 8) * (2.0f / 16777216.0f) - 1.0f;
    return p;
}

typedef struct {
    const ld_kernels *k;
    int64_t N, C;
    float *x, *y, *dy, *dx, *w, *b, *mean, *rstd, *m, *v;
    uint16_t *p16;
    int32_t *target;
    ld_adamw_params ap;
} ops_bench;

static void run_ln_fwd(void *a) {
    ops_bench *s = a;
    s->k->layernorm_fwd(s->y, s->mean, s->rstd, s->x, s->w, s->b, s->N, s->C, 1e-5f);
}
static void run_ln_bwd(void *a) {
    ops_bench *s = a;
    s->k->layernorm_bwd(s->dx, s->m, s->v, s->dy, s->x, s->w, s->mean, s->rstd, s->N, s->C);
}
static void run_rms_fwd(void *a) {
    ops_bench *s = a;
    s->k->rmsnorm_fwd(s->y, s->rstd, s->x, s->w, s->N, s->C, 1e-5f);
}
static void run_rms_bwd(void *a) {
    ops_bench *s = a;
    s->k->rmsnorm_bwd(s->dx, s->m, s->dy, s->x, s->w, s->rstd, s->N, s->C);
}
static void run_adamw(void *a) {
    ops_bench *s = a;
    s->ap.step++;
    s->k->adamw(s->x, s->dy, s->m, s->v, s->p16, s->N, &s->ap);
}
static void run_xent(void *a) {
    ops_bench *s = a;
    s->k->xent_fwd(s->y, s->rstd, s->x, s->target, s->N, s->C, -100);
    s->k->xent_bwd(s->x, s->mean, s->x, s->rstd, s->target, s->N, s->C, -100); /* in place */
}
static void run_distill(void *a) {
    ops_bench *s = a;
    s->k->distill_fwd(s->y, s->v, s->x, s->dy, s->target, s->N, s->C, 2.0f, 0.5f, -100);
    s->k->distill_bwd(s->dx, s->mean, s->x, s->dy, s->v, s->target, s->N, s->C, 2.0f, 0.5f, -100);
}
static void run_gelu_fwd(void *a) {
    ops_bench *s = a;
    s->k->gelu_fwd(s->y, s->x, s->N);
}
static void run_gelu_bwd(void *a) {
    ops_bench *s = a;
    s->k->gelu_bwd(s->dx, s->dy, s->x, s->N);
}

static void row(ld_bench_report *r, const ld_machine_limits *lim, const char *name, double bytes, double sec) {
    double gbs = bytes / sec * 1e-9;
    ld_bench_report_row(r, "ops", name, gbs, "GB/s", lim->bw_triad_gbs > 0 ? gbs / lim->bw_triad_gbs : -1,
                        "triad");
}

static void bench_norms(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    ops_bench s = {.k = ld_kernels_get(LD_BACKEND_CPU), .N = 65536, .C = 1024};
    size_t nc = (size_t)(s.N * s.C);
    s.x = bench_floats(nc, 1), s.y = bench_floats(nc, 2), s.dy = bench_floats(nc, 3), s.dx = bench_floats(nc, 4);
    s.w = bench_floats((size_t)s.C, 5), s.b = bench_floats((size_t)s.C, 6), s.m = bench_floats((size_t)s.C, 7);
    s.v = bench_floats((size_t)s.C, 8), s.mean = bench_floats((size_t)s.N, 9), s.rstd = bench_floats((size_t)s.N, 10);
    if (s.x && s.y && s.dy && s.dx && s.w && s.b && s.m && s.v && s.mean && s.rstd) {
        double act = 4.0 * (double)nc; /* bytes of one [N, C] f32 tensor */
        /* fwd: read x, write y; bwd: read dy, x, dx, write dx (the small vectors are ignored) */
        row(r, lim, "layernorm fwd N=65536 C=1024", 2 * act, ld_bench_median(run_ln_fwd, &s, o->reps));
        row(r, lim, "layernorm bwd N=65536 C=1024", 4 * act, ld_bench_median(run_ln_bwd, &s, o->reps));
        row(r, lim, "rmsnorm fwd N=65536 C=1024", 2 * act, ld_bench_median(run_rms_fwd, &s, o->reps));
        row(r, lim, "rmsnorm bwd N=65536 C=1024", 4 * act, ld_bench_median(run_rms_bwd, &s, o->reps));
    }
    free(s.x), free(s.y), free(s.dy), free(s.dx), free(s.w), free(s.b), free(s.m), free(s.v), free(s.mean), free(s.rstd);
}

static void bench_adamw(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    /* GPT-2 small: 124M parameters; param + grad + m + v = 2 GB */
    ops_bench s = {.k = ld_kernels_get(LD_BACKEND_CPU), .N = 124475904};
    s.ap = (ld_adamw_params){.lr = 3e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                             .step = 0, .grad_scale = 1.0f};
    size_t n = (size_t)s.N;
    s.x = bench_floats(n, 1), s.dy = bench_floats(n, 2), s.m = bench_floats(n, 3), s.v = bench_floats(n, 4);
    if (s.x && s.dy && s.m && s.v) {
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) s.v[i] *= s.v[i];
        /* reads param, grad, m, v; writes param, m, v */
        row(r, lim, "adamw 124M params", 28.0 * (double)n, ld_bench_median(run_adamw, &s, o->reps));
        s.p16 = aligned_alloc(64, (n * 2 + 63) / 64 * 64);
        if (s.p16) {
            memset(s.p16, 0, n * 2);
            row(r, lim, "adamw 124M params + bf16 copy", 30.0 * (double)n, ld_bench_median(run_adamw, &s, o->reps));
        }
    }
    free(s.x), free(s.dy), free(s.m), free(s.v), free(s.p16);
}

static void bench_xent(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    ops_bench s = {.k = ld_kernels_get(LD_BACKEND_CPU), .N = 256, .C = 50304};
    size_t nv = (size_t)(s.N * s.C);
    s.x = bench_floats(nv, 1), s.y = bench_floats((size_t)s.N, 2), s.rstd = bench_floats((size_t)s.N, 3);
    s.mean = bench_floats((size_t)s.N, 4);
    s.target = malloc((size_t)s.N * sizeof(int32_t));
    if (s.x && s.y && s.rstd && s.mean && s.target) {
        for (int64_t i = 0; i < s.N; i++) s.target[i] = (int32_t)((i * 7919) % s.C), s.mean[i] = 1.0f / (float)s.N;
        /* fwd reads the logits; bwd (in place) reads and writes them */
        row(r, lim, "xent fwd+bwd N=256 V=50304 (in place)", 12.0 * (double)nv, ld_bench_median(run_xent, &s, o->reps));
    }
    free(s.x), free(s.y), free(s.rstd), free(s.mean), free(s.target);
}

static void bench_distill(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    ops_bench s = {.k = ld_kernels_get(LD_BACKEND_CPU), .N = 256, .C = 50304};
    size_t nv = (size_t)(s.N * s.C);
    s.x = bench_floats(nv, 1), s.dy = bench_floats(nv, 2), s.dx = bench_floats(nv, 3);
    s.y = bench_floats((size_t)s.N, 4), s.v = bench_floats(3 * (size_t)s.N, 5), s.mean = bench_floats((size_t)s.N, 6);
    s.target = malloc((size_t)s.N * sizeof(int32_t));
    if (s.x && s.dy && s.dx && s.y && s.v && s.mean && s.target) {
        for (int64_t i = 0; i < s.N; i++) s.target[i] = (int32_t)((i * 7919) % s.C), s.mean[i] = 1.0f / (float)s.N;
        /* fwd reads student and teacher logits; bwd reads both and the gradient, writes the gradient */
        row(r, lim, "distill fwd+bwd N=256 V=50304 T=2", 24.0 * (double)nv, ld_bench_median(run_distill, &s, o->reps));
    }
    free(s.x), free(s.dy), free(s.dx), free(s.y), free(s.v), free(s.mean), free(s.target);
}

static void bench_gelu(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    ops_bench s = {.k = ld_kernels_get(LD_BACKEND_CPU), .N = (int64_t)64 << 20};
    size_t n = (size_t)s.N;
    s.x = bench_floats(n, 1), s.y = bench_floats(n, 2), s.dy = bench_floats(n, 3), s.dx = bench_floats(n, 4);
    if (s.x && s.y && s.dy && s.dx) {
        row(r, lim, "gelu fwd n=64M", 8.0 * (double)n, ld_bench_median(run_gelu_fwd, &s, o->reps));
        row(r, lim, "gelu bwd n=64M", 16.0 * (double)n, ld_bench_median(run_gelu_bwd, &s, o->reps));
    }
    free(s.x), free(s.y), free(s.dy), free(s.dx);
}

void ld_bench_suite_ops(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    bench_norms(o, lim, r);
    bench_adamw(o, lim, r);
    bench_xent(o, lim, r);
    bench_distill(o, lim, r);
    bench_gelu(o, lim, r);
}

/* bench/bench_matmul.c — `liandan bench kernels --filter matmul`: the engine's GEMMs at the
 * shapes of a GPT-2-small training step (256 tokens; d = 768, 4d = 3072, 3d = 2304 for QKV,
 * V = 50304 for the LM head), in the three layouts a linear layer uses:
 *   fwd  NT  Y[M,N]   = X[M,K] . W[N,K]^T
 *   bwdX NN  dX[M,K] += dY[M,N] . W[N,K]
 *   bwdW TN  dW[N,K] += dY[M,N]^T . X[M,K]
 * for our f32 and bf16 kernels (both bf16 paths: the one the dispatch picked and the other),
 * next to OpenBLAS (cblas_sgemm) and oneDNN (matmul primitive, f32 and bf16) when the build
 * found them, all on the same thread count. OpenBLAS picks its kernels from the CPU it
 * detects (under KVM it may fall back to old SSE kernels; the project runs it with
 * OPENBLAS_CORETYPE=Haswell): the row names the core it used, and oneDNN's rows name the
 * implementation it chose. Each row: median GFLOP/s of --reps runs and its
 * ratio to the fp32 FMA peak measured in the same run (bf16 rows also name their ratio to
 * the vdpbf16ps peak), then the bf16/f32 speed-up of our kernels per shape. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kernels/cpu/gemm.h"
#include "kernels/kernels.h"

#ifdef LD_HAVE_BLAS
#include <cblas.h>
#endif
#ifdef LD_HAVE_DNNL
#include <dnnl.h>
#endif

typedef struct mm_shape {
    int64_t M, K, N; /* tokens, in features, out features */
} mm_shape;

static const mm_shape shapes[] = {{256, 768, 3072}, {256, 768, 2304}, {256, 3072, 768}, {256, 768, 50304}};

enum { L_FWD, L_BWDX, L_BWDW, L_COUNT };
static const char *layout_name[L_COUNT] = {"fwd NT", "bwdX NN", "bwdW TN"};

/* One GEMM call in kernels.h terms, pointing into the shape's buffers. */
typedef struct mm_call {
    bool ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    float beta;
    const void *A, *B; /* f32 or bf16 per the runner */
    float *C;
} mm_call;

typedef struct mm_bufs {
    float *X, *W, *dY, *dX, *dW, *Y;
    uint16_t *Xh, *Wh, *dYh;
} mm_bufs;

static mm_call make_call(int layout, const mm_shape *s, const mm_bufs *b, bool bf16) {
    const int64_t M = s->M, K = s->K, N = s->N;
    mm_call c;
    switch (layout) {
    case L_FWD:
        c = (mm_call){false, true, M, N, K, K, K, N, 0.0f, bf16 ? (void *)b->Xh : b->X, bf16 ? (void *)b->Wh : b->W, b->Y};
        break;
    case L_BWDX:
        c = (mm_call){false, false, M, K, N, N, K, K, 1.0f, bf16 ? (void *)b->dYh : b->dY, bf16 ? (void *)b->Wh : b->W, b->dX};
        break;
    default:
        c = (mm_call){true, false, N, K, M, N, K, K, 1.0f, bf16 ? (void *)b->dYh : b->dY, bf16 ? (void *)b->Xh : b->X, b->dW};
        break;
    }
    return c;
}

/* ---- runners: one timed call each ---------------------------------------------------- */

typedef struct runner {
    const mm_call *c;
    void (*f32)(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t, float,
                float *, int64_t);
    void (*bf16)(bool, bool, int64_t, int64_t, int64_t, float, const uint16_t *, int64_t, const uint16_t *,
                 int64_t, float, float *, int64_t);
#ifdef LD_HAVE_DNNL
    dnnl_primitive_t prim;
    dnnl_stream_t stream;
    dnnl_memory_t mem[3];
#endif
} runner;

static void run_ours(void *p) {
    const runner *r = p;
    const mm_call *c = r->c;
    if (r->f32)
        r->f32(c->ta, c->tb, c->m, c->n, c->k, 1.0f, c->A, c->lda, c->B, c->ldb, c->beta, c->C, c->ldc);
    else
        r->bf16(c->ta, c->tb, c->m, c->n, c->k, 1.0f, c->A, c->lda, c->B, c->ldb, c->beta, c->C, c->ldc);
}

#ifdef LD_HAVE_BLAS
static void run_openblas(void *p) {
    const mm_call *c = ((const runner *)p)->c;
    cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans, c->tb ? CblasTrans : CblasNoTrans, (blasint)c->m,
                (blasint)c->n, (blasint)c->k, 1.0f, c->A, (blasint)c->lda, c->B, (blasint)c->ldb, c->beta, c->C,
                (blasint)c->ldc);
}
#endif

#ifdef LD_HAVE_DNNL
static void run_dnnl(void *p) {
    const runner *r = p;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, r->mem[0]}, {DNNL_ARG_WEIGHTS, r->mem[1]}, {DNNL_ARG_DST, r->mem[2]}};
    dnnl_primitive_execute(r->prim, r->stream, 3, args);
    dnnl_stream_wait(r->stream);
}

/* Creates the matmul primitive for c (created once, outside the timed loop); false if
 * oneDNN refuses. impl[cap] receives its implementation name. */
static bool dnnl_setup(runner *r, dnnl_engine_t eng, const mm_call *c, bool bf16, char *impl, size_t cap) {
    dnnl_memory_desc_t md[3];
    dnnl_data_type_t in = bf16 ? dnnl_bf16 : dnnl_f32;
    dnnl_dims_t sd = {c->m, c->k}, wd = {c->k, c->n}, dd = {c->m, c->n};
    dnnl_dims_t ss = {c->ta ? 1 : c->lda, c->ta ? c->lda : 1}, ws = {c->tb ? 1 : c->ldb, c->tb ? c->ldb : 1};
    dnnl_dims_t ds = {c->ldc, 1};
    dnnl_memory_desc_init_by_strides(&md[0], 2, sd, in, ss);
    dnnl_memory_desc_init_by_strides(&md[1], 2, wd, in, ws);
    dnnl_memory_desc_init_by_strides(&md[2], 2, dd, dnnl_f32, ds);
    dnnl_matmul_desc_t desc;
    if (dnnl_matmul_desc_init(&desc, &md[0], &md[1], NULL, &md[2]) != dnnl_success) return false;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_attr_create(&attr);
    if (c->beta != 0.0f) {
        dnnl_post_ops_create(&ops);
        dnnl_post_ops_append_sum(ops, c->beta);
        dnnl_primitive_attr_set_post_ops(attr, ops);
    }
    dnnl_primitive_desc_t pd = NULL;
    bool ok = dnnl_primitive_desc_create(&pd, &desc, attr, eng, NULL) == dnnl_success &&
              dnnl_primitive_create(&r->prim, pd) == dnnl_success;
    if (ok) {
        const char *name = "?";
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, (void *)&name);
        snprintf(impl, cap, "%s", name);
        ok = dnnl_memory_create(&r->mem[0], &md[0], eng, (void *)c->A) == dnnl_success &&
             dnnl_memory_create(&r->mem[1], &md[1], eng, (void *)c->B) == dnnl_success &&
             dnnl_memory_create(&r->mem[2], &md[2], eng, c->C) == dnnl_success;
    }
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    dnnl_primitive_attr_destroy(attr);
    return ok;
}

static void dnnl_teardown(runner *r) {
    for (int i = 0; i < 3; i++)
        if (r->mem[i]) dnnl_memory_destroy(r->mem[i]);
    if (r->prim) dnnl_primitive_destroy(r->prim);
}
#endif

/* ---- the suite ------------------------------------------------------------------------ */

static void *bench_alloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    return p;
}

static void fill(float *x, uint16_t *h, int64_t n, uint64_t seed) {
    ld_rng r = ld_rng_init(seed);
    for (int64_t i = 0; i < n; i++) {
        x[i] = ld_rng_uniform(&r) - 0.5f;
        if (h) h[i] = ld_fp32_to_bf16(x[i]);
    }
}

static void row(ld_bench_report *rep, const ld_machine_limits *lim, const char *what, int layout, const mm_shape *s,
                bool bf16, double sec, const char *note) {
    char name[96], limit[96];
    double gf = 2.0 * (double)s->M * (double)s->K * (double)s->N / sec * 1e-9;
    snprintf(name, sizeof name, "%s %lldx%lldx%lld %s %s", layout_name[layout], (long long)s->M, (long long)s->K,
             (long long)s->N, bf16 ? "bf16" : "f32", what);
    /* bf16 products are held to the bf16 dot peak where the CPU has one, except the path that
     * widens to fp32 ("cvt"), which runs at the fp32 FMA rate by construction */
    const bool vs_bf16 = bf16 && lim->dot_bf16_gflops > 0 && !strstr(what, "cvt");
    const double peak = vs_bf16 ? lim->dot_bf16_gflops : lim->fma_f32_gflops;
    snprintf(limit, sizeof limit, "%s%s%s", vs_bf16 ? "bf16 dot peak" : "fp32 FMA", note ? " " : "", note ? note : "");
    ld_bench_report_row(rep, "matmul", name, gf, "GFLOP/s", peak > 0 ? gf / peak : -1, limit);
}

void ld_bench_suite_matmul(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    const ld_cpu_features *f = ld_cpu_features_get();
    const char *path = "cvt"; /* below AVX-512: bf16 widened to fp32 while packing */
#if LD_ARCH_X86
    if (f->avx512f && !strcmp(k->name, "cpu-avx512")) path = ld_gemm_bf16_avx512_choice(NULL, NULL);
    bool have_dot = f->avx512_bf16 && !strcmp(k->name, "cpu-avx512");
#else
    (void)f;
#endif
#ifdef LD_HAVE_BLAS
    openblas_set_num_threads(o->threads);
#endif
#ifdef LD_HAVE_DNNL
    dnnl_engine_t eng = NULL;
    dnnl_stream_t stream = NULL;
    if (dnnl_engine_create(&eng, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success)
        eng = NULL;
#endif
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const mm_shape *s = &shapes[si];
        const int64_t M = s->M, K = s->K, N = s->N;
        mm_bufs b = {bench_alloc((size_t)(M * K) * 4), bench_alloc((size_t)(N * K) * 4), bench_alloc((size_t)(M * N) * 4),
                     bench_alloc((size_t)(M * K) * 4), bench_alloc((size_t)(N * K) * 4), bench_alloc((size_t)(M * N) * 4),
                     bench_alloc((size_t)(M * K) * 2), bench_alloc((size_t)(N * K) * 2), bench_alloc((size_t)(M * N) * 2)};
        if (!b.X || !b.W || !b.dY || !b.dX || !b.dW || !b.Y || !b.Xh || !b.Wh || !b.dYh) {
            ld_bench_report_row(rep, "matmul", "out of memory for this shape", 0, "-", -1, NULL);
            goto next;
        }
        fill(b.X, b.Xh, M * K, 1);
        fill(b.W, b.Wh, N * K, 2);
        fill(b.dY, b.dYh, M * N, 3);
        memset(b.dX, 0, (size_t)(M * K) * 4);
        memset(b.dW, 0, (size_t)(N * K) * 4);
        for (int L = 0; L < L_COUNT; L++) {
            mm_call c32 = make_call(L, s, &b, false), c16 = make_call(L, s, &b, true);
            runner r = {.c = &c32, .f32 = k->gemm_f32};
            double t32 = ld_bench_median(run_ours, &r, o->reps);
            row(rep, lim, "ours", L, s, false, t32, NULL);
            r = (runner){.c = &c16, .bf16 = k->gemm_bf16};
            double t16 = ld_bench_median(run_ours, &r, o->reps);
            char what[32];
            snprintf(what, sizeof what, "ours (%s)", path);
            row(rep, lim, what, L, s, true, t16, NULL);
#if LD_ARCH_X86
            if (have_dot) { /* the path the dispatch did not pick, for the record */
                bool dot = !strcmp(path, "dot");
                r = (runner){.c = &c16, .bf16 = dot ? ld_gemm_bf16_cvt_avx512 : ld_gemm_bf16_dot_avx512};
                snprintf(what, sizeof what, "alt (%s)", dot ? "cvt" : "dot");
                row(rep, lim, what, L, s, true, ld_bench_median(run_ours, &r, o->reps), NULL);
            }
#endif
#ifdef LD_HAVE_BLAS
            r = (runner){.c = &c32};
            snprintf(what, sizeof what, "[%.20s]", openblas_get_corename());
            row(rep, lim, "openblas", L, s, false, ld_bench_median(run_openblas, &r, o->reps), what);
#endif
#ifdef LD_HAVE_DNNL
            for (int h = 0; eng && h < 2; h++) {
                runner d = {.c = h ? &c16 : &c32, .stream = stream};
                char impl[64] = "?";
                if (dnnl_setup(&d, eng, d.c, h, impl, sizeof impl) && !strstr(impl, "ref")) {
                    snprintf(what, sizeof what, "[%.24s]", impl);
                    row(rep, lim, "onednn", L, s, h, ld_bench_median(run_dnnl, &d, o->reps), what);
                } else {
                    char name[96];
                    snprintf(name, sizeof name, "%s %lldx%lldx%lld %s onednn: %.16s (skipped)", layout_name[L],
                             (long long)M, (long long)K, (long long)N, h ? "bf16" : "f32", impl);
                    ld_bench_report_row(rep, "matmul", name, 0, "-", -1, NULL);
                }
                dnnl_teardown(&d);
            }
#endif
            char name[96];
            snprintf(name, sizeof name, "%s %lldx%lldx%lld bf16/f32 ours", layout_name[L], (long long)M, (long long)K,
                     (long long)N);
            ld_bench_report_row(rep, "matmul", name, t32 / t16, "x", -1, NULL);
        }
    next:
        free(b.X), free(b.W), free(b.dY), free(b.dX), free(b.dW), free(b.Y), free(b.Xh), free(b.Wh), free(b.dYh);
    }
#ifdef LD_HAVE_DNNL
    if (stream) dnnl_stream_destroy(stream);
    if (eng) dnnl_engine_destroy(eng);
#endif
}

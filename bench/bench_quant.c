/* bench/bench_quant.c — `liandan bench kernels --filter quant`: ld_qmatmul on F32, F16,
 * Q8_0, Q4_K and Q6_K weights (or the --type ones, any type liandan computes) at GPT-2-small
 * shapes.
 *  - decode (M = 1): GB/s of weight bytes read, against the read bandwidth measured in the
 *    same run. The weight set is copied until it spans LD_BENCH_LLC_FACTOR x the last-level
 *    cache, and every repetition walks all copies, like a decode step walking all layers,
 *    so the number is DRAM-bound, not cache-bound.
 *  - prefill (M = 512): GFLOP/s (2*M*N*K) against the int8 dot peak (quantized weights) or
 *    the fp32 FMA peak (F32/F16 weights).
 * Types that can be prepacked at the kernels' ISA level (ld_qpack) get both rows again as "T packed":
 * the same weights as kept panels, through ld_qmatmul_packed, and a batched decode row: M = 16
 * over all copies (GOP/s against the int8 dot peak, and its time against M = 1's: a step of
 * 16 sequences that reads each weight once costs well under 16 single steps). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "quant/quant_blocks.h"

typedef struct {
    ld_ctx *ctx;
    ld_dtype t;
    const uint8_t *w; /* copies * wbytes */
    size_t wbytes;
    int copies;
    int64_t N, K, M;
    const float *x;
    float *y;
    void *scratch;
    bool packed; /* w holds ld_qpack panels */
} qmm_arg;

static void run_qmm(void *p) {
    qmm_arg *a = p;
    for (int c = 0; c < a->copies; c++) {
        const uint8_t *w = a->w + (size_t)c * a->wbytes;
        if (a->packed) ld_qmatmul_packed(a->ctx, a->t, w, a->N, a->K, a->x, a->M, a->y, a->scratch);
        else ld_qmatmul(a->ctx, a->t, w, a->N, a->K, a->x, a->M, a->y, a->scratch);
    }
}

/* A plain read (the CPU's widest) of the same weight bytes on the same threads: the bandwidth the
 * decode row is compared with, measured next to it (the machine is shared, and limits
 * measured seconds earlier drift). */
static void run_read(void *p) {
    qmm_arg *a = p;
    const float *f = (const float *)a->w;
    const size_t n = a->wbytes * (size_t)a->copies / sizeof(float);
    float sum = 0;
#pragma omp parallel num_threads(ld_ctx_threads(a->ctx)) reduction(+ : sum)
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        size_t lo = n / nt * t / 64 * 64, hi = t == nt - 1 ? n : n / nt * (t + 1) / 64 * 64;
        sum += ld_bench_stream_loops()->read(f + lo, hi - lo);
    }
    a->y[0] = sum;
}

static void *make_weights(ld_ctx *ctx, ld_dtype t, int64_t N, int64_t K, size_t *bytes) {
    size_t rb = 0;
    if (ld_dtype_row_bytes(t, K, &rb)) return NULL;
    *bytes = rb * (size_t)N;
    uint8_t *w = malloc(*bytes);
    float *f = malloc((size_t)(N * K) * sizeof(float));
    if (!w || !f) {
        free(w);
        free(f);
        return NULL;
    }
    ld_rng r = ld_rng_init(42);
    for (int64_t i = 0; i < N * K; i++) f[i] = 0.02f * ld_rng_normal(&r);
    if (t == LD_F32) memcpy(w, f, *bytes);
    else if (t == LD_F16) for (int64_t i = 0; i < N * K; i++) ((uint16_t *)w)[i] = ld_fp32_to_fp16(f[i]);
    else if (ld_quant_type_supported(t) && !ld_quant_needs_imatrix(t)) ld_quantize(ctx, t, w, f, N, K, NULL);
    else /* types liandan only reads, or whose quantizer needs an importance matrix: random blocks */
        ld_quant_random_blocks(t, w, N * K / ld_dtype_traits(t)->block_size, 42);
    free(f);
    return w;
}

/* The decode rows (all copies of a->w at M = 1, and a plain read of them) and, for the
 * body shapes, the prefill row (one copy at M = 512) of one weight form named tn. */
static void measure(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r, qmm_arg *a,
                    const char *tn) {
    enum { MP = 512 };
    char name[96];
    a->M = 1;
    double s = ld_bench_median(run_qmm, a, o->reps), sr = ld_bench_median(run_read, a, o->reps);
    double gbs = (double)a->wbytes * a->copies / s * 1e-9, rgbs = (double)a->wbytes * a->copies / sr * 1e-9;
    snprintf(name, sizeof name, "decode %s %lldx%lld (x%d)", tn, (long long)a->N, (long long)a->K, a->copies);
    ld_bench_report_row(r, "quant", name, gbs, "GB/s", lim->bw_read_gbs > 0 ? gbs / lim->bw_read_gbs : -1,
                        "read bandwidth");
    snprintf(name, sizeof name, "  same-buffer read %.1f GB/s", rgbs);
    ld_bench_report_row(r, "quant", name, gbs / rgbs, "x", gbs / rgbs, "read of the same weights");
    if (a->packed) { /* a batched decode step's product: 16 rows, the weights from memory */
        qmm_arg c = *a;
        c.M = 16;
        double s16 = ld_bench_median(run_qmm, &c, o->reps);
        double gop = 2.0 * c.M * a->N * a->K * a->copies / s16 * 1e-9;
        snprintf(name, sizeof name, "batch M=16 %s %lldx%lld (x%d)", tn, (long long)a->N, (long long)a->K, a->copies);
        ld_bench_report_row(r, "quant", name, gop, "GOP/s", lim->dot_i8_gops > 0 ? gop / lim->dot_i8_gops : -1,
                            "int8 dot peak");
        snprintf(name, sizeof name, "  M=16 time / M=1 time");
        ld_bench_report_row(r, "quant", name, s16 / s, "x", s16 / s / 16, "16 x M=1");
    }
    if (a->N > 4096) return; /* prefill on the LM head shape: minutes on F32 */
    qmm_arg b = *a;
    b.M = MP, b.copies = 1;
    s = ld_bench_median(run_qmm, &b, o->reps);
    double gf = 2.0 * MP * a->N * a->K / s * 1e-9;
    bool isq = a->t != LD_F32 && a->t != LD_F16;
    double peak = isq ? lim->dot_i8_gops : lim->fma_f32_gflops;
    snprintf(name, sizeof name, "prefill M=%d %s %lldx%lld", MP, tn, (long long)a->N, (long long)a->K);
    ld_bench_report_row(r, "quant", name, gf, "GFLOP/s", peak > 0 ? gf / peak : -1, isq ? "int8 dot peak" : "fp32 FMA peak");
}

void ld_bench_suite_quant(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    static const ld_dtype defaults[] = {LD_F32, LD_F16, LD_Q8_0, LD_Q4_K, LD_Q6_K};
    const ld_dtype *types = o->n_types ? o->types : defaults; /* --type T picks others */
    const size_t ntypes = o->n_types ? (size_t)o->n_types : sizeof defaults / sizeof defaults[0];
    static const int64_t shapes[][2] = {{3072, 768}, {768, 3072}, {50304, 768}}; /* {N, K} */
    ld_ctx *ctx = NULL;
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = o->threads;
    if (ld_ctx_new(&p, &ctx)) return;
    const int64_t MP = 512;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t ti = 0; ti < ntypes; ti++) {
            const ld_dtype t = types[ti];
            const int64_t N = shapes[si][0], K = shapes[si][1];
            const char *tn = ld_dtype_traits(t)->name;
            size_t wbytes = 0;
            uint8_t *w1 = make_weights(ctx, t, N, K, &wbytes);
            if (!w1) continue;
            /* decode walks copies of the weights totalling LD_BENCH_LLC_FACTOR x the LLC */
            int copies = (int)(LD_BENCH_LLC_FACTOR * lim->llc_bytes / (double)wbytes) + 1;
            uint8_t *w = malloc(wbytes * (size_t)copies);
            size_t ss = 0;
            ld_qmatmul_scratch_size(ctx, t, MP, K, &ss);
            float *x = malloc((size_t)(MP * K) * sizeof(float)), *y = malloc((size_t)(MP * N) * sizeof(float));
            void *scratch = malloc(ss ? ss : 64);
            if (!w || !x || !y || !scratch) goto next;
            for (int c = 0; c < copies; c++) memcpy(w + (size_t)c * wbytes, w1, wbytes);
            ld_rng rng = ld_rng_init(7);
            for (int64_t i = 0; i < MP * K; i++) x[i] = ld_rng_normal(&rng);
            qmm_arg a = {ctx, t, w, wbytes, copies, N, K, 1, x, y, scratch, false};
            measure(o, lim, r, &a, tn);
            if (ld_qpack_supported(t)) { /* the same weights prepacked (ld_qpack) */
                size_t pb = 0, ps = 0;
                ld_qpack_size(ctx, t, N, K, &pb);
                ld_qmatmul_packed_scratch_size(ctx, t, MP, K, &ps);
                const int pc = (int)(((size_t)512 << 20) / pb) + 1;
                uint8_t *pw = aligned_alloc(64, (pb * (size_t)pc + 63) / 64 * 64);
                void *psc = malloc(ps);
                bool ok = pw && psc && !ld_qpack(ctx, t, w1, N, K, pw);
                for (int c = 1; ok && c < pc; c++) memcpy(pw + (size_t)c * pb, pw, pb);
                char pn[32];
                snprintf(pn, sizeof pn, "%s packed", tn);
                qmm_arg ap = {ctx, t, pw, pb, pc, N, K, 1, x, y, psc, true};
                if (ok) measure(o, lim, r, &ap, pn);
                free(pw), free(psc);
            }
        next:
            free(w1), free(w), free(x), free(y), free(scratch);
        }
    ld_ctx_free(ctx);
}

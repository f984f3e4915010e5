/* bench/limits.c — the machine's limits (FMA peak, bf16/int8 dot peak, memory bandwidth),
 * measured on the same threads the engine uses, in the same run as the engine's numbers. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "kernels/kernels.h"

static double peak_on_threads(int threads, double (*loop)(long), double per_iter) {
    const long iters = 4000000;
    double best = 0;
    /* warm-up: the first wide-vector loop after idle runs at a lower clock for a while */
#pragma omp parallel num_threads(threads)
    loop(4 * iters);
    for (int rep = 0; rep < 5; rep++) {
        double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            double s = loop(iters);
            total += (double)iters * per_iter / s;
        }
        if (total > best) best = total;
    }
    return best * 1e-9;
}

static void triad_scalar(float *a, const float *b, const float *c, float s, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
}
static float read_scalar(const float *a, size_t n) {
    float r = 0;
    for (size_t i = 0; i < n; i++) r += a[i];
    return r;
}
/* Without AVX2+FMA there is no peak loop (limits read 0) but the streams still run. */
static const ld_bench_loops loops_scalar = {.isa = "scalar", .triad = triad_scalar, .read = read_scalar};

const ld_bench_loops *ld_bench_loops_at(ld_isa isa) {
    static const ld_bench_loops *const BY_LEVEL[LD_ISA_COUNT] = {&loops_scalar, &ld_bench_loops_avx2, &ld_bench_loops_avx512};
    if ((int)isa < 0 || isa > ld_isa_detected()) isa = ld_isa_detected();
    return BY_LEVEL[isa];
}

const ld_bench_loops *ld_bench_loops_get(void) {
    return ld_bench_loops_at(ld_isa_active());
}

const ld_bench_loops *ld_bench_stream_loops(void) {
    return ld_bench_loops_at(ld_isa_detected());
}

double ld_bench_quick_fma_peak(int threads) {
    const ld_bench_loops *L = ld_bench_loops_get();
    if (!L->fma) return 0;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            const long iters = 1000000;
            double s = L->fma(iters);
            total += (double)iters * L->fma_per_iter / s;
        }
        if (total > best) best = total;
    }
    return best * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double ld_bench_median(void (*fn)(void *), void *arg, int reps) {
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    double t[64];
    fn(arg);
    for (int i = 0; i < reps; i++) {
        double t0 = ld_time_now();
        fn(arg);
        t[i] = ld_time_now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

/* This thread's share of n, in whole 64-float (cache-line aligned) blocks. */
static void thread_range(size_t n, size_t *lo, size_t *hi) {
    size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
    size_t blocks = n / 64, per = blocks / nt, extra = blocks % nt;
    *lo = 64 * (t * per + (t < extra ? t : extra));
    *hi = *lo + 64 * (per + (t < extra));
    if (t == nt - 1) *hi = n;
}

/* Bandwidth on arrays far larger than the last-level cache (3 x 256 MiB). */
static void bandwidth(int threads, double *triad_gbs, double *read_gbs) {
    const size_t n = (size_t)64 << 20; /* floats per array */
    float *a = aligned_alloc(64, n * 4), *b = aligned_alloc(64, n * 4), *c = aligned_alloc(64, n * 4);
    *triad_gbs = *read_gbs = 0;
    if (!a || !b || !c) goto out;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = 0, b[i] = 1, c[i] = 2;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = ld_time_now();
#pragma omp parallel num_threads(threads)
        {
            size_t lo, hi;
            thread_range(n, &lo, &hi);
            ld_bench_stream_loops()->triad(a + lo, b + lo, c + lo, 0.5f, hi - lo);
        }
        double t = ld_time_now() - t0, gbs = 3.0 * 4.0 * (double)n / t * 1e-9;
        if (gbs > *triad_gbs) *triad_gbs = gbs;
        float sum = 0;
        t0 = ld_time_now();
#pragma omp parallel num_threads(threads) reduction(+ : sum)
        {
            size_t lo, hi;
            thread_range(n, &lo, &hi);
            sum += ld_bench_stream_loops()->read(a + lo, hi - lo);
        }
        t = ld_time_now() - t0;
        gbs = 4.0 * (double)n / t * 1e-9;
        if (gbs > *read_gbs && sum != -1.0f) *read_gbs = gbs;
    }
out:
    free(a);
    free(b);
    free(c);
}

void ld_bench_measure_limits(int threads, ld_machine_limits *out) {
    memset(out, 0, sizeof *out);
    out->threads = threads;
    const ld_cpu_features *f = ld_cpu_features_get();
    const ld_bench_loops *L = ld_bench_loops_get();
    if (L->fma) out->fma_f32_gflops = peak_on_threads(threads, L->fma, L->fma_per_iter);
    /* the AVX-512 bf16 and VNNI loops need their extensions, not just AVX-512F */
    bool avx512 = L == &ld_bench_loops_avx512;
    if (L->dot_bf16 && (!avx512 || f->avx512_bf16))
        out->dot_bf16_gflops = peak_on_threads(threads, L->dot_bf16, L->bf16_per_iter);
    if (L->dot_i8 && (!avx512 || f->avx512_vnni))
        out->dot_i8_gops = peak_on_threads(threads, L->dot_i8, L->i8_per_iter);
    bandwidth(threads, &out->bw_triad_gbs, &out->bw_read_gbs);
}

void ld_bench_report_begin(ld_bench_report *r, const ld_machine_limits *lim) {
    if (!r->out) r->out = stdout;
    r->rows = 0;
    /* the kernels' instruction-set level (LD_ISA lowers it) and the CPU's own */
    const char *isa = ld_isa_name(ld_isa_active()), *cpu_isa = ld_isa_name(ld_isa_detected());
    if (r->json) {
        fprintf(r->out,
                "{\"isa\":\"%s\",\"cpu_isa\":\"%s\",\"limits\":{\"threads\":%d,\"fma_f32_gflops\":%.1f,\"dot_bf16_gflops\":%.1f,"
                "\"dot_i8_gops\":%.1f,\"bw_triad_gbs\":%.1f,\"bw_read_gbs\":%.1f},\n \"results\":[",
                isa, cpu_isa, lim->threads, lim->fma_f32_gflops, lim->dot_bf16_gflops, lim->dot_i8_gops,
                lim->bw_triad_gbs, lim->bw_read_gbs);
    } else {
        fprintf(r->out, "kernels: ISA level %s (this CPU: %s; LD_ISA=avx512|avx2|scalar lowers it)\n", isa, cpu_isa);
        fprintf(r->out,
                "machine limits (%d threads): fp32 FMA %.0f GFLOP/s | bf16 dot %.0f GFLOP/s | "
                "int8 dot %.0f GOP/s | triad %.1f GB/s | read %.1f GB/s\n\n",
                lim->threads, lim->fma_f32_gflops, lim->dot_bf16_gflops, lim->dot_i8_gops,
                lim->bw_triad_gbs, lim->bw_read_gbs);
        fprintf(r->out, "%-12s %-40s %12s %-8s %8s  %s\n", "group", "benchmark", "value", "unit", "ratio", "of limit");
    }
}

void ld_bench_report_row(ld_bench_report *r, const char *group, const char *name, double value,
                         const char *unit, double ratio, const char *limit_name) {
    if (r->json) {
        fprintf(r->out, "%s\n  {\"group\":\"%s\",\"name\":\"%s\",\"value\":%.4g,\"unit\":\"%s\",\"ratio\":%.4f,\"limit\":\"%s\"}",
                r->rows ? "," : "", group, name, value, unit, ratio, limit_name ? limit_name : "");
    } else if (ratio >= 0) {
        fprintf(r->out, "%-12s %-40s %12.2f %-8s %7.1f%%  %s\n", group, name, value, unit, 100 * ratio,
                limit_name ? limit_name : "");
    } else {
        fprintf(r->out, "%-12s %-40s %12.2f %-8s %8s\n", group, name, value, unit, "-");
    }
    fflush(r->out);
    r->rows++;
}

void ld_bench_report_end(ld_bench_report *r) {
    if (r->json) fprintf(r->out, "\n]}\n");
}

/* bench/limits.c — the machine's limits (FMA peak, bf16/int8 dot peak, memory bandwidth),
 * measured on the same threads the engine uses, in the same run as the engine's numbers. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "kernels/kernels.h"

/* Best and worst of LD_BENCH_TRIALS timed trials of a peak loop on `threads` threads, after a
 * warm-up (the first wide-vector loop after idle runs at a lower clock for a while). */
static double peak_on_threads(int threads, double (*loop)(long), double per_iter, double *spread) {
    const long iters = 4000000;
    double best = 0, worst = 0;
#pragma omp parallel num_threads(threads)
    loop(4 * iters);
    for (int rep = 0; rep < LD_BENCH_TRIALS; rep++) {
        double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
        {
            double s = loop(iters);
            total += (double)iters * per_iter / s;
        }
        if (total > best) best = total;
        if (rep == 0 || total < worst) worst = total;
    }
    *spread = best > 0 ? (best - worst) / best : 0;
    return best * 1e-9;
}

static void triad_scalar(float *a, const float *b, const float *c, float s, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i]; /* (plain stores: only without AVX2) */
}
static float read_scalar(const float *a, size_t n) {
    float r = 0;
    for (size_t i = 0; i < n; i++) r += a[i];
    return r;
}
/* Without AVX2+FMA there is no peak loop (limits read 0) but the streams still run. */
static const ld_bench_loops loops_scalar = {.isa = "scalar", .triad = triad_scalar, .read = read_scalar};
#if LD_ARCH_ARM64
/* NEON: the FMA peak; the streams are the plain loops (ordinary stores) */
static const ld_bench_loops loops_neon = {.isa = "neon", .fma = ld_bench_fma_loop_neon,
                                          .fma_per_iter = LD_BENCH_FMA_NEON_PER_ITER, .triad = triad_scalar, .read = read_scalar};
#endif

const ld_bench_loops *ld_bench_loops_at(ld_isa isa) {
    static const ld_bench_loops *const BY_LEVEL[LD_ISA_COUNT] = {
        [LD_ISA_SCALAR] = &loops_scalar,
#if LD_ARCH_X86
        [LD_ISA_AVX2] = &ld_bench_loops_avx2,
        [LD_ISA_AVX512] = &ld_bench_loops_avx512,
#endif
#if LD_ARCH_ARM64
        [LD_ISA_NEON] = &loops_neon,
#endif
    };
    if (!ld_isa_includes(ld_isa_detected(), isa)) isa = ld_isa_detected();
    return BY_LEVEL[isa] ? BY_LEVEL[isa] : &loops_scalar;
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

double ld_bench_median_of(const double *v, int n) {
    double t[64];
    if (n < 1) return 0;
    if (n > 64) n = 64;
    memcpy(t, v, (size_t)n * sizeof t[0]);
    qsort(t, (size_t)n, sizeof t[0], cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
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

double ld_bench_llc_bytes(void) {
    double best = 0;
    long sc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (sc > 0) best = (double)sc;
    /* sysfs: every distinct index3 cache of the CPUs this process may run on */
    char seen[64][128];
    int nseen = 0;
    double total = 0;
    for (int cpu = 0; cpu < 1024; cpu++) {
        char path[128], list[128], size[32];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cache/index3/shared_cpu_list", cpu);
        FILE *f = fopen(path, "r");
        if (!f) {
            if (cpu > 0) break;
            continue;
        }
        bool ok = fgets(list, sizeof list, f) != NULL;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/cache/index3/size", cpu);
        if (!ok || !(f = fopen(path, "r"))) continue;
        ok = fgets(size, sizeof size, f) != NULL;
        fclose(f);
        bool dup = false;
        for (int i = 0; i < nseen; i++) dup |= !strcmp(seen[i], list);
        if (!ok || dup || nseen == 64) continue;
        snprintf(seen[nseen++], sizeof seen[0], "%s", list);
        char *end;
        double v = strtod(size, &end);
        total += v * (*end == 'K' ? 1024.0 : *end == 'M' ? 1048576.0 : 1.0);
    }
    if (total > best) best = total;
    return best > 0 ? best : 32.0 * 1048576.0;
}

/* Bandwidth on a working set of at least LD_BENCH_LLC_FACTOR times the last-level cache
 * (and 768 MiB): triad over three equal arrays with non-temporal stores, counting its three
 * streams; a read-only sum over all three. Best of LD_BENCH_TRIALS warmed trials each. */
static void bandwidth(int threads, ld_machine_limits *out) {
    const double want = LD_BENCH_LLC_FACTOR * out->llc_bytes;
    size_t n = (size_t)64 << 20; /* floats per array */
    while (3.0 * 4.0 * (double)n < want) n += (size_t)16 << 20;
    float *a = aligned_alloc(64, 3 * n * 4), *b = a + n, *c = b + n;
    out->bw_triad_gbs = out->bw_read_gbs = 0;
    out->bw_bytes = 3.0 * 4.0 * (double)n;
    if (!a) return;
    const ld_bench_loops *L = ld_bench_stream_loops();
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = 0, b[i] = 1, c[i] = 2;
    double tworst = 0, rworst = 0;
    for (int rep = 0; rep <= LD_BENCH_TRIALS; rep++) { /* trial 0 warms up */
        double t0 = ld_time_now();
#pragma omp parallel num_threads(threads)
        {
            size_t lo, hi;
            thread_range(n, &lo, &hi);
            L->triad(a + lo, b + lo, c + lo, 0.5f, hi - lo);
        }
        double t = ld_time_now() - t0, gbs = 3.0 * 4.0 * (double)n / t * 1e-9;
        if (rep > 0) {
            if (gbs > out->bw_triad_gbs) out->bw_triad_gbs = gbs;
            if (rep == 1 || gbs < tworst) tworst = gbs;
        }
        float sum = 0;
        t0 = ld_time_now();
#pragma omp parallel num_threads(threads) reduction(+ : sum)
        {
            size_t lo, hi;
            thread_range(3 * n, &lo, &hi);
            sum += L->read(a + lo, hi - lo);
        }
        t = ld_time_now() - t0;
        gbs = 3.0 * 4.0 * (double)n / t * 1e-9;
        if (rep > 0 && sum != -1.0f) {
            if (gbs > out->bw_read_gbs) out->bw_read_gbs = gbs;
            if (rep == 1 || gbs < rworst) rworst = gbs;
        }
    }
    out->triad_spread = out->bw_triad_gbs > 0 ? (out->bw_triad_gbs - tworst) / out->bw_triad_gbs : 0;
    out->read_spread = out->bw_read_gbs > 0 ? (out->bw_read_gbs - rworst) / out->bw_read_gbs : 0;
    free(a);
}

/* The int8 loop of the instructions the active level's int8 kernels use (quant/quant.c):
 * vpdpbusd zmm with AVX-512 VNNI, else vpdpbusd ymm with AVX-VNNI, else AVX2's sequence. */
static double (*i8_loop(const ld_bench_loops *L, double *per_iter))(long) {
#if LD_ARCH_X86
    const ld_cpu_features *f = ld_cpu_features_get();
    const ld_isa isa = ld_isa_active();
    if (ld_isa_includes(isa, LD_ISA_AVX512) && f->avx512_vnni) return *per_iter = ld_bench_loops_avx512.i8_per_iter, ld_bench_loops_avx512.dot_i8;
    if (ld_isa_includes(isa, LD_ISA_AVX2) && f->avx_vnni) return *per_iter = LD_BENCH_I8_AVXVNNI_PER_ITER, ld_bench_i8_loop_avxvnni;
    if (ld_isa_includes(isa, LD_ISA_AVX2)) return *per_iter = ld_bench_loops_avx2.i8_per_iter, ld_bench_loops_avx2.dot_i8;
#endif
    (void)L;
    return *per_iter = 0, NULL;
}

void ld_bench_measure_limits(int threads, ld_machine_limits *out) {
    memset(out, 0, sizeof *out);
    out->threads = threads;
    const ld_cpu_features *f = ld_cpu_features_get();
    const ld_bench_loops *L = ld_bench_loops_get();
    if (L->fma) out->fma_f32_gflops = peak_on_threads(threads, L->fma, L->fma_per_iter, &out->fma_spread);
    if (L->dot_bf16 && f->avx512_bf16)
        out->dot_bf16_gflops = peak_on_threads(threads, L->dot_bf16, L->bf16_per_iter, &out->bf16_spread);
    double i8_per_iter;
    double (*i8)(long) = i8_loop(L, &i8_per_iter);
    if (i8) out->dot_i8_gops = peak_on_threads(threads, i8, i8_per_iter, &out->i8_spread);
    out->llc_bytes = ld_bench_llc_bytes();
    bandwidth(threads, out);
    const double spreads[] = {out->fma_spread, out->bf16_spread, out->i8_spread, out->triad_spread, out->read_spread};
    for (size_t i = 0; i < sizeof spreads / sizeof spreads[0]; i++) out->noisy |= spreads[i] > LD_BENCH_NOISY;
}

void ld_bench_report_begin(ld_bench_report *r, const ld_machine_limits *lim) {
    if (!r->out) r->out = stdout;
    r->rows = 0;
    /* the kernels' instruction-set level (LD_ISA lowers it) and the CPU's own */
    const char *isa = ld_isa_name(ld_isa_active()), *cpu_isa = ld_isa_name(ld_isa_detected());
    if (r->json) {
        fprintf(r->out,
                "{\"isa\":\"%s\",\"cpu_isa\":\"%s\",\"limits\":{\"threads\":%d,\"fma_f32_gflops\":%.1f,\"dot_bf16_gflops\":%.1f,"
                "\"dot_i8_gops\":%.1f,\"bw_triad_gbs\":%.1f,\"bw_read_gbs\":%.1f,\"llc_mb\":%.0f,\"bw_working_set_mb\":%.0f,"
                "\"spread\":{\"fma_f32\":%.3f,\"dot_bf16\":%.3f,\"dot_i8\":%.3f,\"triad\":%.3f,\"read\":%.3f},"
                "\"trials\":%d,\"noisy\":%s},\n \"results\":[",
                isa, cpu_isa, lim->threads, lim->fma_f32_gflops, lim->dot_bf16_gflops, lim->dot_i8_gops, lim->bw_triad_gbs,
                lim->bw_read_gbs, lim->llc_bytes / 1048576.0, lim->bw_bytes / 1048576.0, lim->fma_spread, lim->bf16_spread,
                lim->i8_spread, lim->triad_spread, lim->read_spread, LD_BENCH_TRIALS, lim->noisy ? "true" : "false");
    } else {
        fprintf(r->out, "kernels: ISA level %s (this CPU: %s; LD_ISA=%s lowers it)\n", isa, cpu_isa,
                ld_isa_detected() == LD_ISA_NEON ? "neon|scalar" : "avx512|avx2|scalar");
        fprintf(r->out,
                "machine limits (%d threads; best of %d warmed trials, spread best-to-worst in brackets):\n"
                "  fp32 FMA %.0f GFLOP/s [%.0f%%] | bf16 dot %.0f GFLOP/s [%.0f%%] | int8 dot %.0f GOP/s [%.0f%%]\n"
                "  triad %.1f GB/s [%.0f%%] | read %.1f GB/s [%.0f%%] (on %.0f MiB, %d x the %.0f MiB last-level cache)\n",
                lim->threads, LD_BENCH_TRIALS, lim->fma_f32_gflops, 100 * lim->fma_spread, lim->dot_bf16_gflops,
                100 * lim->bf16_spread, lim->dot_i8_gops, 100 * lim->i8_spread, lim->bw_triad_gbs, 100 * lim->triad_spread,
                lim->bw_read_gbs, 100 * lim->read_spread, lim->bw_bytes / 1048576.0, LD_BENCH_LLC_FACTOR,
                lim->llc_bytes / 1048576.0);
        if (lim->noisy)
            fprintf(r->out, "  NOISY: a limit varied by more than %.0f%% between trials (the machine is busy): every "
                            "ratio below is uncertain by as much\n",
                    100 * LD_BENCH_NOISY);
        fputc('\n', r->out);
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

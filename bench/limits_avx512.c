/* bench/limits_avx512.c — AVX-512 peak-throughput loops: 12 independent accumulators so the FMA
 * pipes, not latency, bound the loop (2 FMA units x 4-cycle latency needs >= 8). */
#include <immintrin.h>

#include "bench.h"

#define PEAK_LOOP(init, step, combine)                                                   \
    double t0 = ld_time_now();                                                           \
    init;                                                                                \
    for (long i = 0; i < iters; i++) {                                                   \
        step(0) step(1) step(2) step(3) step(4) step(5) step(6) step(7) step(8) step(9)  \
            step(10) step(11)                                                            \
    }                                                                                    \
    combine;                                                                             \
    return ld_time_now() - t0;

static volatile float sink_f;
static volatile int sink_i;

static double fma_loop(long iters) {
    __m512 acc[12], x = _mm512_set1_ps(1.0000001f), y = _mm512_set1_ps(0.9999999f);
#define FSTEP(j) acc[j] = _mm512_fmadd_ps(acc[j], x, y);
    PEAK_LOOP(for (int j = 0; j < 12; j++) acc[j] = _mm512_set1_ps((float)j), FSTEP,
              { __m512 s = acc[0]; for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, acc[j]); sink_f = _mm512_reduce_add_ps(s); })
#undef FSTEP
}

static double bf16_loop(long iters) {
    __m512 acc[12];
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3f00);
#define BSTEP(j) acc[j] = _mm512_dpbf16_ps(acc[j], a, b);
    PEAK_LOOP(for (int j = 0; j < 12; j++) acc[j] = _mm512_setzero_ps(), BSTEP,
              { __m512 s = acc[0]; for (int j = 1; j < 12; j++) s = _mm512_add_ps(s, acc[j]); sink_f = _mm512_reduce_add_ps(s); })
#undef BSTEP
}

static double i8_loop(long iters) {
    __m512i acc[12], a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(2);
#define ISTEP(j) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
    PEAK_LOOP(for (int j = 0; j < 12; j++) acc[j] = _mm512_setzero_si512(), ISTEP,
              { __m512i s = acc[0]; for (int j = 1; j < 12; j++) s = _mm512_add_epi32(s, acc[j]); sink_i = _mm512_reduce_add_epi32(s); })
#undef ISTEP
}

/* Streaming loops over arrays far larger than the cache: four independent vectors in flight;
 * the triad's stores are non-temporal (no read for ownership: its 3 streams are all it moves). */
static void triad(float *a, const float *b, const float *c, float s, size_t n) {
    __m512 vs = _mm512_set1_ps(s);
    size_t i = 0;
    for (; i + 64 <= n; i += 64)
        for (int j = 0; j < 64; j += 16)
            _mm512_stream_ps(a + i + j, _mm512_fmadd_ps(vs, _mm512_load_ps(c + i + j), _mm512_load_ps(b + i + j)));
    for (; i < n; i++) a[i] = b[i] + s * c[i];
    _mm_sfence();
}

static float read_sum(const float *a, size_t n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(a + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(a + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(a + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(a + i + 48));
    }
    float r = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
    for (; i < n; i++) r += a[i];
    return r;
}

const ld_bench_loops ld_bench_loops_avx512 = {
    .isa = "avx512",
    .fma = fma_loop,
    .dot_bf16 = bf16_loop,
    .dot_i8 = i8_loop,
    .fma_per_iter = 12 * 16 * 2,  /* 12 FMAs on 16 lanes */
    .bf16_per_iter = 12 * 32 * 2, /* 12 vdpbf16ps, 32 products each */
    .i8_per_iter = 12 * 64 * 2,   /* 12 vpdpbusd, 64 products each */
    .triad = triad,
    .read = read_sum,
};

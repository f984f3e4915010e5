/* bench/limits_avx2.c — AVX2 + FMA peak-throughput loops: 12 independent accumulators so the
 * FMA pipes, not latency, bound the loop (2 FMA units x 4-cycle latency needs >= 8). */
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

static float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

static double fma_loop(long iters) {
    __m256 acc[12], x = _mm256_set1_ps(1.0000001f), y = _mm256_set1_ps(0.9999999f);
#define FSTEP(j) acc[j] = _mm256_fmadd_ps(acc[j], x, y);
    PEAK_LOOP(for (int j = 0; j < 12; j++) acc[j] = _mm256_set1_ps((float)j), FSTEP,
              { __m256 s = acc[0]; for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, acc[j]); sink_f = hsum_ps(s); })
#undef FSTEP
}

/* The int8 dot as AVX2 computes it (no VNNI): vpmaddubsw (u8 x s8 -> pairs summed in s16),
 * vpmaddwd by ones (-> s32), vpaddd: 32 products per three instructions. */
static double i8_loop(long iters) {
    __m256i acc[12], a = _mm256_set1_epi8(1), b = _mm256_set1_epi8(2), ones = _mm256_set1_epi16(1);
#define ISTEP(j) acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
    PEAK_LOOP(for (int j = 0; j < 12; j++) acc[j] = _mm256_setzero_si256(), ISTEP, {
        __m256i s = acc[0];
        for (int j = 1; j < 12; j++) s = _mm256_add_epi32(s, acc[j]);
        int out[8];
        _mm256_storeu_si256((__m256i *)out, s);
        sink_i = out[0] + out[7];
    })
#undef ISTEP
}

/* Streaming loops over arrays far larger than the cache: four independent vectors in flight;
 * the triad's stores are non-temporal (no read for ownership: its 3 streams are all it moves). */
static void triad(float *a, const float *b, const float *c, float s, size_t n) {
    __m256 vs = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 32; j += 8)
            _mm256_stream_ps(a + i + j, _mm256_fmadd_ps(vs, _mm256_load_ps(c + i + j), _mm256_load_ps(b + i + j)));
    for (; i < n; i++) a[i] = b[i] + s * c[i];
    _mm_sfence();
}

static float read_sum(const float *a, size_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(a + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(a + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(a + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(a + i + 24));
    }
    float r = hsum_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++) r += a[i];
    return r;
}

const ld_bench_loops ld_bench_loops_avx2 = {
    .isa = "avx2",
    .fma = fma_loop,
    .dot_bf16 = NULL,
    .dot_i8 = i8_loop,
    .fma_per_iter = 12 * 8 * 2, /* 12 FMAs on 8 lanes */
    .i8_per_iter = 12 * 32 * 2, /* 12 maddubs/madd/add sequences, 32 products each */
    .triad = triad,
    .read = read_sum,
};

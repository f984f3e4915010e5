/* bench/limits_avxvnni.c — the int8 peak loop of AVX-VNNI CPUs (vpdpbusd on ymm, what the AVX2
 * level's int8 kernels use there): 12 independent accumulators, as bench/limits_avx2.c. */
#include <immintrin.h>

#include "bench.h"

static volatile int sink_i;

double ld_bench_i8_loop_avxvnni(long iters) {
    __m256i acc[12], a = _mm256_set1_epi8(1), b = _mm256_set1_epi8(2);
    for (int j = 0; j < 12; j++) acc[j] = _mm256_setzero_si256();
    double t0 = ld_time_now();
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 12; j++) acc[j] = _mm256_dpbusd_avx_epi32(acc[j], a, b);
    __m256i s = acc[0];
    for (int j = 1; j < 12; j++) s = _mm256_add_epi32(s, acc[j]);
    sink_i = _mm256_extract_epi32(s, 0) + _mm256_extract_epi32(s, 7);
    return ld_time_now() - t0;
}

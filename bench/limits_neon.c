/* bench/limits_neon.c — the NEON (aarch64) fp32 FMA peak loop: 16 independent accumulators
 * of 4 lanes, so the FMA pipes, not latency, bound the loop (4 pipes x 4-cycle latency on
 * the widest cores needs 16). */
#include <arm_neon.h>

#include "bench.h"

static volatile float sink_f;

double ld_bench_fma_loop_neon(long iters) {
    float32x4_t acc[16];
    const float32x4_t x = vdupq_n_f32(1.0000001f), y = vdupq_n_f32(0.9999999f);
    double t0 = ld_time_now();
    for (int j = 0; j < 16; j++) acc[j] = vdupq_n_f32((float)j);
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) acc[j] = vfmaq_f32(y, acc[j], x);
    float32x4_t s = acc[0];
    for (int j = 1; j < 16; j++) s = vaddq_f32(s, acc[j]);
    sink_f = vaddvq_f32(s);
    return ld_time_now() - t0;
}

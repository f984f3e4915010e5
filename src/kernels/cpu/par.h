/* kernels/cpu/par.h — how the CPU kernels of every ISA split work over OpenMP threads and
 * when they stream their outputs past the caches: plain C, shared by the *_avx512.c and
 * *_avx2.c files (through simd_avx512.h / simd_avx2.h). Splits are static: the same sizes
 * and thread count always give the same ranges, so results are deterministic. */
#ifndef LD_KERNELS_CPU_PAR_H
#define LD_KERNELS_CPU_PAR_H

#include <omp.h>
#include <stdint.h>

/* Work below this many elements runs on the calling thread (a parallel region costs a
 * few microseconds). Deterministic: the choice depends only on the sizes. */
#define LD_PAR_MIN ((int64_t)1 << 15)

/* Outputs at least this large that are only written (not read) by a kernel are written
 * with non-temporal stores: they cannot stay in the caches anyway (the last-level cache
 * is 260 MB on the reference machine), and streaming them saves the read-for-ownership,
 * a third of the traffic of a read-one-write-one kernel. */
#define LD_STREAM_MIN_BYTES ((int64_t)128 << 20)

/* Whether a write-only output of `bytes` bytes at p should be streamed (p 64-byte aligned). */
static inline int ld_use_stream(const void *p, int64_t bytes) {
    return bytes >= LD_STREAM_MIN_BYTES && ((uintptr_t)p & 63) == 0;
}

/* Part t of nt of [0, n) split into nearly equal contiguous ranges of whole `block`s (the
 * last range ends at n). Static: the same n, block and nt always give the same ranges. */
static inline void ld_split(int64_t n, int64_t block, int64_t t, int64_t nt, int64_t *lo, int64_t *hi) {
    int64_t blocks = (n + block - 1) / block, per = blocks / nt, extra = blocks % nt;
    int64_t b0 = t * per + (t < extra ? t : extra), b1 = b0 + per + (t < extra ? 1 : 0);
    *lo = b0 * block < n ? b0 * block : n;
    *hi = b1 * block < n ? b1 * block : n;
}

/* This OpenMP thread's share of [0, n) in 16-element (one cache line of floats) blocks. */
static inline void ld_thread_range(int64_t n, int64_t *lo, int64_t *hi) {
    ld_split(n, 16, omp_get_thread_num(), omp_get_num_threads(), lo, hi);
}

#endif

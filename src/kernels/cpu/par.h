/* kernels/cpu/par.h — how the CPU kernels of every ISA cut work into pieces for the thread
 * team (core/team.h) and when they stream their outputs past the caches: plain C, shared by
 * the *_avx512.c and *_avx2.c files (through simd_avx512.h / simd_avx2.h). Pieces depend
 * only on the sizes, so results are the same on any number of threads. */
#ifndef LD_KERNELS_CPU_PAR_H
#define LD_KERNELS_CPU_PAR_H

#include <stdint.h>

#include "core/team.h" /* LD_PAR_MIN, ld_par_for: the one way to write a parallel loop */

/* Elements of a matrix-vector product's matrix per piece (bandwidth-bound work: a piece
 * streams 512 KB of f32). */
#define LD_GEMV_PIECE (4 * LD_PAR_MIN)

/* Outputs at least this large that are only written (not read) by a kernel are written
 * with non-temporal stores: they cannot stay in the caches anyway (the last-level cache
 * is 260 MB on the reference machine), and streaming them saves the read-for-ownership,
 * a third of the traffic of a read-one-write-one kernel. */
#define LD_STREAM_MIN_BYTES ((int64_t)128 << 20)

/* Whether a write-only output of `bytes` bytes at p should be streamed (p 64-byte aligned). */
static inline int ld_use_stream(const void *p, int64_t bytes) {
    return bytes >= LD_STREAM_MIN_BYTES && ((uintptr_t)p & 63) == 0;
}

#endif

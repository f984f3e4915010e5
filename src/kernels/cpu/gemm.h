/* kernels/cpu/gemm.h — the blocked GEMM driver shared by every ISA's matrix-multiply
 * kernels, and the ISA entry points (internal to the kernels layer; tests may include it).
 *
 * The driver is BLIS-style: operands are packed into panels (A: MR rows x k steps, B: k
 * steps x NR columns, zero-padded) and an MR x NR register-blocked micro-kernel runs over
 * every (A panel, B panel) pair of a KC-deep slice of K, one A panel (in L1) against a run
 * of B panels (in L2). An ISA supplies the packers and the micro-kernel through
 * ld_gemm_impl; transposes and the element type (f32, bf16 widened to f32, bf16 pairs for
 * dot-product instructions) are handled entirely by the packers, edges by zero padding in
 * the packed panels and masked stores in the micro-kernel.
 *
 * Threads: the smaller operand (A when M <= N, else B) is packed once by the whole team
 * (all of it, or in blocks of at most 4 MB); the other dimension of C is cut into chunks
 * (>= 4 per thread) that threads take one at a time, packing their own slice of the other
 * operand. The team is the calling thread's current one (core/team.h): one parallel loop
 * per shared block whose pieces are the threads' shares, serial inside a parallel loop or
 * for small products. Taking chunks dynamically keeps both cores busy when the OS or a noisy
 * neighbour slows one down, and it does not cost determinism: every C element is one fixed
 * sequence of operations (k in order within a KC slice, slices in order, alpha/beta at the
 * first), whichever thread computes it, so results are bit-identical run to run and for
 * any thread count.
 *
 * Scratch: each thread keeps 64-byte-aligned buffers (ld_thread_scratch: its own packing,
 * and on the calling thread the team's shared packing), grown (never shrunk) to the largest
 * size needed and freed when the thread ends; after the first call of a given size no call
 * allocates. If the calling thread's buffers cannot be grown the call falls back to
 * impl->fallback (the reference kernel), so a kernel still cannot fail; another thread
 * that cannot grow its buffer only helps pack. */
#ifndef LD_KERNELS_CPU_GEMM_H
#define LD_KERNELS_CPU_GEMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Packs op(X)[r0 : r0 + nr, k0 : k0 + nk] — rows are M for A or N for B, k is K — into
 * ceil(nr / w) panels of ceil(nk / kgran) steps x w 4-byte elements each, where w is MR
 * for A and NR for B; rows nr..(panels*w - 1) and the missing half of an odd last pair are
 * zero. `kcontig` says the source is contiguous along k (A not transposed, B transposed),
 * elements (r, k) at X[r * ld + k]; otherwise at X[k * ld + r]. */
typedef void (*ld_gemm_pack_fn)(void *dst, const void *X, int64_t ld, bool kcontig, int64_t r0,
                                int64_t nr, int64_t k0, int64_t nk, int w);

/* C[0:mr, 0:nr] (row stride ldc) = alpha * a_panel . b_panel + beta * C over `steps` packed
 * k steps; beta == 0 does not read C, beta == 1 is C += alpha * (...). mr <= MR, nr <= NR. */
typedef void (*ld_gemm_micro_fn)(int64_t steps, const void *a, const void *b, float *C,
                                 int64_t ldc, int mr, int nr, float alpha, float beta);

typedef struct ld_gemm_impl {
    int mr, nr;         /* micro-tile */
    int mc, kc, nc;     /* cache blocks: mc multiple of mr, nc of nr, kc of kgran */
    int kgran;          /* k elements per packed step (1: f32 lanes, 2: bf16 pairs) */
    ld_gemm_pack_fn pack_a, pack_b; /* w = mr and w = nr; element type conversion here */
    ld_gemm_micro_fn micro;
    size_t shared_max;  /* bytes of the team-packed operand per block; 0 = 4 MB */
    int esize;          /* bytes per source element (for prefetching the next slice) */
    /* Called when scratch cannot be allocated (A, B are the caller's pointers). */
    void (*fallback)(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const void *A, int64_t lda, const void *B, int64_t ldb, float beta,
                     float *C, int64_t ldc);
} ld_gemm_impl;

/* C = alpha op(A) op(B) + beta C with the implementation `impl` (semantics of
 * ld_kernels.gemm_f32; A and B are of the element type impl's packer reads). */
void ld_gemm_run(const ld_gemm_impl *impl, bool transA, bool transB, int64_t M, int64_t N,
                 int64_t K, float alpha, const void *A, int64_t lda, const void *B, int64_t ldb,
                 float beta, float *C, int64_t ldc);

/* ---- AVX2 + FMA (gemm_avx2.c): f32, and bf16 widened while packing --------------------- */
extern const ld_gemm_impl ld_gemm_impl_f32_avx2, ld_gemm_impl_cvt_avx2, ld_gemm_impl_f16_avx2;
extern const ld_kernels ld_kernels_cpu_avx2_gemm;
void ld_gemm_f32_avx2(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc);
void ld_gemm_bf16_avx2(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                       const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                       float *C, int64_t ldc);
/* f32 A, f16 B widened by F16C while packed. */
void ld_gemm_f32_f16_avx2(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                          float *C, int64_t ldc);

/* ---- AVX-512 (gemm_avx512.c) --------------------------------------------------------- */
/* The three implementations (tests run them with tiny blocks to exercise every edge). */
extern const ld_gemm_impl ld_gemm_impl_f32_avx512, ld_gemm_impl_cvt_avx512, ld_gemm_impl_dot_avx512,
    ld_gemm_impl_f16_avx512;
/* f32 A, f16 B widened while packed. */
void ld_gemm_f32_f16_avx512(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                            const float *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                            float *C, int64_t ldc);
/* The partial table with only gemm_f32 and gemm_bf16 set, overlaid by cpu_table.c. */
extern const ld_kernels ld_kernels_cpu_avx512_gemm;
void ld_gemm_f32_avx512(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc);
/* bf16 by widening to f32 while packing, then the f32 FMA micro-kernel. */
void ld_gemm_bf16_cvt_avx512(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                             float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                             int64_t ldb, float beta, float *C, int64_t ldc);
/* bf16 with vdpbf16ps on packed k pairs (needs avx512_bf16). */
void ld_gemm_bf16_dot_avx512(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                             float alpha, const uint16_t *A, int64_t lda, const uint16_t *B,
                             int64_t ldb, float beta, float *C, int64_t ldc);
/* Which path gemm_bf16 of the AVX-512 table takes on this machine: "dot" or "cvt" (decided
 * once, at first use; see gemm_avx512.c), and the measured micro-kernel rates behind the
 * choice in GFLOP/s on one thread (0 when not measured: no avx512_bf16, or forced by the
 * environment variable LD_GEMM_BF16=dot|cvt). */
const char *ld_gemm_bf16_avx512_choice(double *cvt_gflops, double *dot_gflops);

#endif

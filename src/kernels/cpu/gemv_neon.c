/* kernels/cpu/gemv_neon.c — gemv_f32 at the NEON level (aarch64): y[M, N] = x[M, K] · W for
 * decoding (M <= a few rows), W read from memory exactly once per call. Semantics:
 * kernels/kernels.h. The structure of gemv_avx2.c with 4-lane vectors and the tile sizes
 * that fit 32 NEON registers:
 *   - transW (W is [N, K], nn.Linear): threads split the N rows; each row is a dot with
 *     every x row (4 partial sums of 4 lanes per x row, reduced once per output).
 *   - !transW (W is [K, N], GPT-2's Conv1D): threads split the N columns in 16-float
 *     blocks; each thread walks its columns down all K rows a tile at a time (the tile's
 *     outputs in registers: 16 vectors for one x row, 8 for two, 5 for three, 4 for four).
 * Tails (K or N not a multiple of 4) are scalar fused multiply-adds, the same operation as
 * the vector lanes'. Each output is one fixed sequence of operations whatever the thread
 * count. */
#include <arm_neon.h>
#include <math.h>
#include <stdbool.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/par.h"

#define MAX_ROWS LD_GEMV_MAX_M
#define INLINE static inline __attribute__((always_inline))

/* ---- W [N, K]: dots ------------------------------------------------------------------- */
INLINE void nk_rows(int64_t n0, int64_t n1, int64_t K, int64_t N, const float *x, const float *W, float *y,
                    const int na) {
    for (int64_t n = n0; n < n1; n++) {
        const float *w = W + n * K;
        float32x4_t s[MAX_ROWS][4];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) s[r][0] = s[r][1] = s[r][2] = s[r][3] = vdupq_n_f32(0);
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const float32x4_t w0 = vld1q_f32(w + k), w1 = vld1q_f32(w + k + 4), w2 = vld1q_f32(w + k + 8),
                              w3 = vld1q_f32(w + k + 12);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) {
                const float *xr = x + r * K + k;
                s[r][0] = vfmaq_f32(s[r][0], w0, vld1q_f32(xr));
                s[r][1] = vfmaq_f32(s[r][1], w1, vld1q_f32(xr + 4));
                s[r][2] = vfmaq_f32(s[r][2], w2, vld1q_f32(xr + 8));
                s[r][3] = vfmaq_f32(s[r][3], w3, vld1q_f32(xr + 12));
            }
        }
        for (; k + 4 <= K; k += 4) {
            const float32x4_t wv = vld1q_f32(w + k);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) s[r][0] = vfmaq_f32(s[r][0], wv, vld1q_f32(x + r * K + k));
        }
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) {
            float t = vaddvq_f32(vaddq_f32(vaddq_f32(s[r][0], s[r][1]), vaddq_f32(s[r][2], s[r][3])));
            for (int64_t kk = k; kk < K; kk++) t = fmaf(w[kk], x[r * K + kk], t);
            y[r * N + n] = t;
        }
    }
}

/* ---- W [K, N]: columns ------------------------------------------------------------------ */
/* One tile: nv vectors of 4 columns from t0, all K rows, na rows of x. */
INLINE void kn_tile(int64_t t0, int64_t K, int64_t N, const float *x, const float *W, float *y, const int na,
                    const int nv) {
    float32x4_t acc[MAX_ROWS][16];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
#pragma GCC unroll 16
        for (int j = 0; j < nv; j++) acc[r][j] = vdupq_n_f32(0);
    for (int64_t k = 0; k < K; k++) {
        const float *w = W + k * N + t0;
        float32x4_t xv[MAX_ROWS];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) xv[r] = vdupq_n_f32(x[r * K + k]);
#pragma GCC unroll 16
        for (int j = 0; j < nv; j++) {
            const float32x4_t wv = vld1q_f32(w + 4 * j);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) acc[r][j] = vfmaq_f32(acc[r][j], xv[r], wv);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
#pragma GCC unroll 16
        for (int j = 0; j < nv; j++) vst1q_f32(y + r * N + t0 + 4 * j, acc[r][j]);
}

/* Columns [c0, c1): full tiles of nv vectors, the rest one vector at a time, the last
 * (fewer than 4) columns one by one. */
INLINE void kn_cols(int64_t c0, int64_t c1, int64_t K, int64_t N, const float *x, const float *W, float *y,
                    const int na, const int nv) {
    int64_t t0 = c0;
    for (; t0 + 4 * nv <= c1; t0 += 4 * nv) kn_tile(t0, K, N, x, W, y, na, nv);
    for (; t0 + 4 <= c1; t0 += 4) kn_tile(t0, K, N, x, W, y, na, 1);
    for (; t0 < c1; t0++)
        for (int r = 0; r < na; r++) {
            float t = 0;
            for (int64_t k = 0; k < K; k++) t = fmaf(x[r * K + k], W[k * N + t0], t);
            y[r * N + t0] = t;
        }
}

/* One thread's share for `na` rows of x, each kernel instantiated with constant sizes. */
static void share(bool transW, int64_t lo, int64_t hi, int64_t K, int64_t N, const float *x, const float *W,
                  float *y, int na) {
#define NK(R) nk_rows(lo, hi, K, N, x, W, y, R)
#define KN(R, V) kn_cols(lo, hi, K, N, x, W, y, R, V)
    if (transW) switch (na) {
        case 1: NK(1); break;
        case 2: NK(2); break;
        case 3: NK(3); break;
        default: NK(4); break;
        }
    else switch (na) {
        case 1: KN(1, 16); break;
        case 2: KN(2, 8); break;
        case 3: KN(3, 5); break;
        default: KN(4, 4); break;
        }
#undef NK
#undef KN
}

typedef struct gemv_job {
    bool transW;
    int64_t M, N, K;
    const float *x, *W;
    float *y;
} gemv_job;

/* Items [lo, hi) of the work: rows of W, or 16-column blocks (one cache line) of it. */
static void gemv_piece(void *arg, int64_t lo, int64_t hi, int piece) {
    const gemv_job *j = arg;
    (void)piece;
    if (!j->transW) lo *= 16, hi = hi * 16 < j->N ? hi * 16 : j->N;
    for (int64_t m = 0; m < j->M; m += MAX_ROWS) {
        const int na = j->M - m < MAX_ROWS ? (int)(j->M - m) : MAX_ROWS;
        share(j->transW, lo, hi, j->K, j->N, j->x + m * j->K, j->W, j->y + m * j->N, na);
    }
}

static void gemv_f32_neon(bool transW, int64_t M, int64_t N, int64_t K, const float *x, const float *W, float *y) {
    gemv_job j = {transW, M, N, K, x, W, y};
    const int64_t unit = transW ? 1 : 16, items = (N + unit - 1) / unit;
    ld_par_for(items, ld_par_grain(K * unit) * (LD_GEMV_PIECE / LD_PAR_MIN), gemv_piece, &j);
}

const ld_kernels ld_kernels_cpu_neon_gemv = {
    .name = "cpu-neon",
    .gemv_f32 = gemv_f32_neon,
};

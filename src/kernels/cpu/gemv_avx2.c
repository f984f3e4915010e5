/* kernels/cpu/gemv_avx2.c — gemv_f32 at the AVX2 level: y[M, N] = x[M, K] · W for
 * decoding (M <= a few rows), W read from memory exactly once per call. Semantics:
 * kernels/kernels.h. The same structure as gemv_avx512.c with 8-lane vectors and the tile
 * sizes that fit 16 ymm registers:
 *   - transW (W is [N, K], nn.Linear): threads split the N rows; each row is a dot with
 *     every x row (2 partial sums of 8 lanes per x row, reduced once per output).
 *   - !transW (W is [K, N], GPT-2's Conv1D): threads split the N columns in 16-float
 *     blocks; each thread walks its columns down all K rows a tile at a time (the tile's
 *     outputs in registers: 12 vectors for one x row, 6 for two, 4 for three or four) and
 *     prefetches the tile a few rows ahead.
 * Each output is one fixed sequence of operations whatever the thread count. */
#include <stdbool.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx2.h"

#define MAX_ROWS LD_GEMV_MAX_M
/* Rows of W prefetched ahead in the [K, N] walk. */
#define KN_PF_ROWS 8
#define INLINE static inline __attribute__((always_inline))

/* ---- W [N, K]: dots ------------------------------------------------------------------- */
INLINE void nk_rows(int64_t n0, int64_t n1, int64_t K, int64_t N, const float *x, const float *W, float *y,
                    const int na) {
    for (int64_t n = n0; n < n1; n++) {
        const float *w = W + n * K;
        __m256 s[MAX_ROWS][2];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) s[r][0] = s[r][1] = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 16 <= K; k += 16) {
            const __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) {
                s[r][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + r * K + k), s[r][0]);
                s[r][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + r * K + k + 8), s[r][1]);
            }
        }
        for (; k < K; k += 8) {
            const __m256i m = ld_tail8(K - k);
            const __m256 wv = _mm256_maskload_ps(w + k, m);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) s[r][0] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + r * K + k, m), s[r][0]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) y[r * N + n] = ld_hsum8(_mm256_add_ps(s[r][0], s[r][1]));
    }
}

/* ---- W [K, N]: columns ------------------------------------------------------------------ */
/* One tile: nv vectors of columns from t0 (the last one masked by `last`, `lfull` when it
 * is whole), all K rows, na rows of x (nv * na <= 12 accumulators). */
INLINE void kn_tile(int64_t t0, __m256i last, int lfull, int64_t K, int64_t N, const float *x, const float *W,
                    float *y, const int na, const int nv) {
    __m256 acc[MAX_ROWS][12];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
#pragma GCC unroll 12
        for (int j = 0; j < nv; j++) acc[r][j] = _mm256_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const float *w = W + k * N + t0;
        if (k + KN_PF_ROWS < K)
#pragma GCC unroll 12
            for (int j = 0; j < nv; j += 2) _mm_prefetch((const char *)(w + KN_PF_ROWS * N + 8 * j), _MM_HINT_T0);
        __m256 xv[MAX_ROWS];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) xv[r] = _mm256_broadcast_ss(x + r * K + k);
#pragma GCC unroll 12
        for (int j = 0; j < nv; j++) {
            const __m256 wv = j == nv - 1 ? ld_load8(w + 8 * j, last, lfull) : _mm256_loadu_ps(w + 8 * j);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) acc[r][j] = _mm256_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
#pragma GCC unroll 12
        for (int j = 0; j < nv; j++)
            ld_store8(y + r * N + t0 + 8 * j, j == nv - 1 ? last : ld_tail8(8), j == nv - 1 ? lfull : 1, acc[r][j]);
}

/* Columns [c0, c1): full tiles of nv vectors, the rest in one tile each of 4 and 2 vectors
 * where they fit, then one vector at a time (the last one masked). */
INLINE void kn_cols(int64_t c0, int64_t c1, int64_t K, int64_t N, const float *x, const float *W, float *y,
                    const int na, const int nv) {
    const __m256i all = ld_tail8(8);
    int64_t t0 = c0;
    for (; t0 + 8 * nv <= c1; t0 += 8 * nv) kn_tile(t0, all, 1, K, N, x, W, y, na, nv);
#define KN_REST(V) \
    if ((V) < nv && t0 + 8 * (V) <= c1) kn_tile(t0, all, 1, K, N, x, W, y, na, (V)), t0 += 8 * (V);
    KN_REST(4)
    KN_REST(2)
#undef KN_REST
    for (; t0 < c1; t0 += 8) kn_tile(t0, ld_tail8(c1 - t0), c1 - t0 >= 8, K, N, x, W, y, na, 1);
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
        case 1: KN(1, 12); break;
        case 2: KN(2, 6); break;
        case 3: KN(3, 4); break;
        default: KN(4, 3); break;
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

static void gemv_f32_avx2(bool transW, int64_t M, int64_t N, int64_t K, const float *x, const float *W, float *y) {
    gemv_job j = {transW, M, N, K, x, W, y};
    const int64_t unit = transW ? 1 : 16, items = (N + unit - 1) / unit;
    /* pieces of at least LD_GEMV_PIECE elements of W: enough to pay for a piece, and many
     * of them on large matrices, so a core slowed by another process takes fewer */
    ld_par_for(items, ld_par_grain(K * unit) * (LD_GEMV_PIECE / LD_PAR_MIN), gemv_piece, &j);
}

const ld_kernels ld_kernels_cpu_avx2_gemv = {
    .name = "cpu-avx2",
    .gemv_f32 = gemv_f32_avx2,
};

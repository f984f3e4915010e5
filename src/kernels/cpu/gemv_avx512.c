/* kernels/cpu/gemv_avx512.c — gemv_f32: y[M, N] = x[M, K] · W for decoding (M <= a few
 * rows), W read from memory exactly once per call. Semantics: kernels/kernels.h.
 *
 * Decode time is the weight's bytes over the memory bandwidth, so the kernels are built
 * around streaming W: every thread reads one contiguous share of it, the x rows (a few KB)
 * stay in L1, and nothing is packed (gemm_f32 would copy the whole weight into panels
 * first, for a product that uses each weight once).
 *   - transW (W is [N, K], nn.Linear): threads split the N rows; each row is a dot with
 *     every x row (4 partial sums per x row, reduced once per output).
 *   - !transW (W is [K, N], GPT-2's Conv1D): threads split the N columns in 16-float
 *     vectors; each thread walks its columns down all K rows a tile at a time, the tile's
 *     outputs held in registers, and prefetches the tile a few rows ahead (the rows of one
 *     tile are N floats apart, too far for the hardware prefetcher to follow).
 * Each output is one fixed sequence of operations whatever the thread count. */
#include <stdbool.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx512.h"

#define MAX_ROWS LD_GEMV_MAX_M
/* Rows of W prefetched ahead in the [K, N] walk. */
#define KN_PF_ROWS 8

/* ---- W [N, K]: dots ------------------------------------------------------------------- */
static inline __attribute__((always_inline)) void nk_rows(int64_t n0, int64_t n1, int64_t K, int64_t N,
                                                           const float *x, const float *W, float *y, const int na) {
    for (int64_t n = n0; n < n1; n++) {
        const float *w = W + n * K;
        __m512 s[MAX_ROWS][4];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++)
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) s[r][j] = _mm512_setzero_ps();
        int64_t k = 0;
        for (; k + 64 <= K; k += 64) {
            __m512 wv[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) wv[j] = _mm512_loadu_ps(w + k + 16 * j);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++)
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) s[r][j] = _mm512_fmadd_ps(wv[j], _mm512_loadu_ps(x + r * K + k + 16 * j), s[r][j]);
        }
        for (; k < K; k += 16) {
            const __mmask16 m = ld_tail16(K - k);
            const __m512 wv = _mm512_maskz_loadu_ps(m, w + k);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) s[r][0] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + r * K + k), s[r][0]);
        }
#pragma GCC unroll 4
        for (int r = 0; r < na; r++)
            y[r * N + n] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s[r][0], s[r][1]), _mm512_add_ps(s[r][2], s[r][3])));
    }
}

/* ---- W [K, N]: columns ------------------------------------------------------------------ */
/* One tile: nv vectors of columns from t0 (the last one masked by `last`), all K rows,
 * na rows of x (nv * na <= 16 accumulators). */
static inline __attribute__((always_inline)) void kn_tile(int64_t t0, __mmask16 last, int64_t K, int64_t N,
                                                           const float *x, const float *W, float *y, const int na,
                                                           const int nv) {
    __m512 acc[MAX_ROWS][16];
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
#pragma GCC unroll 16
        for (int j = 0; j < nv; j++) acc[r][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++) {
        const float *w = W + k * N + t0;
        if (k + KN_PF_ROWS < K)
#pragma GCC unroll 16
            for (int j = 0; j < nv; j++) _mm_prefetch((const char *)(w + KN_PF_ROWS * N + 16 * j), _MM_HINT_T0);
        __m512 xv[MAX_ROWS];
#pragma GCC unroll 4
        for (int r = 0; r < na; r++) xv[r] = _mm512_set1_ps(x[r * K + k]);
#pragma GCC unroll 16
        for (int j = 0; j < nv; j++) {
            const __m512 wv = j == nv - 1 ? _mm512_maskz_loadu_ps(last, w + 16 * j) : _mm512_loadu_ps(w + 16 * j);
#pragma GCC unroll 4
            for (int r = 0; r < na; r++) acc[r][j] = _mm512_fmadd_ps(xv[r], wv, acc[r][j]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < na; r++)
#pragma GCC unroll 16
        for (int j = 0; j < nv; j++)
            _mm512_mask_storeu_ps(y + r * N + t0 + 16 * j, j == nv - 1 ? last : (__mmask16)0xffff, acc[r][j]);
}

/* Columns [c0, c1) (c0 a multiple of 16): full tiles of nv vectors, the rest in one tile
 * each of 8, 4 and 2 vectors where they fit (narrow tiles walk all K rows for few bytes
 * per row), then one vector at a time (the last one masked). */
static inline __attribute__((always_inline)) void kn_cols(int64_t c0, int64_t c1, int64_t K, int64_t N,
                                                           const float *x, const float *W, float *y, const int na,
                                                           const int nv) {
    int64_t t0 = c0;
    for (; t0 + 16 * nv <= c1; t0 += 16 * nv) kn_tile(t0, 0xffff, K, N, x, W, y, na, nv);
#define KN_REST(V)                                                                                      \
    if ((V) < nv && t0 + 16 * (V) <= c1) kn_tile(t0, 0xffff, K, N, x, W, y, na, (V)), t0 += 16 * (V);
    KN_REST(8)
    KN_REST(4)
    KN_REST(2)
#undef KN_REST
    for (; t0 < c1; t0 += 16) kn_tile(t0, ld_tail16(c1 - t0), K, N, x, W, y, na, 1);
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
        case 3: KN(3, 4); break;
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

static void gemv_f32_avx512(bool transW, int64_t M, int64_t N, int64_t K, const float *x, const float *W, float *y) {
    gemv_job j = {transW, M, N, K, x, W, y};
    const int64_t unit = transW ? 1 : 16, items = (N + unit - 1) / unit;
    /* pieces of at least LD_GEMV_PIECE elements of W: enough to pay for a piece, and many
     * of them on large matrices, so a core slowed by another process takes fewer */
    ld_par_for(items, ld_par_grain(K * unit) * (LD_GEMV_PIECE / LD_PAR_MIN), gemv_piece, &j);
}

const ld_kernels ld_kernels_cpu_avx512_gemv = {
    .name = "cpu-avx512",
    .gemv_f32 = gemv_f32_avx512,
};

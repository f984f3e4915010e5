/* kernels/ref/ref_gemm.c — reference matrix products (gemm_f32, gemm_bf16): the oracle the
 * optimized GEMMs are tested against.
 *
 * Plain scalar triple loop. Each C element is one dot product over k = 0..K-1 accumulated in
 * DOUBLE (so the reference is more accurate than any fp32 kernel and its own rounding does
 * not matter at the test tolerances), then C = alpha * acc + beta * C computed in double and
 * rounded once to float. beta == 0 never reads C (NaN/Inf in C are ignored). bf16 inputs are
 * widened exactly to fp32 (then double) before the product. Semantics: kernels/kernels.h. */
#include <string.h>

#include "kernels/ref/ref.h"

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* op(A)[i, k] and op(B)[k, j] for both element types, one generic loop below. */
static inline double a_at(const void *A, bool bf16, bool transA, int64_t lda, int64_t i, int64_t k) {
    int64_t idx = transA ? k * lda + i : i * lda + k;
    return bf16 ? (double)bf16_to_f32(((const uint16_t *)A)[idx]) : (double)((const float *)A)[idx];
}

static inline double b_at(const void *B, bool bf16, bool transB, int64_t ldb, int64_t k, int64_t j) {
    int64_t idx = transB ? j * ldb + k : k * ldb + j;
    return bf16 ? (double)bf16_to_f32(((const uint16_t *)B)[idx]) : (double)((const float *)B)[idx];
}

static void ref_gemm(bool bf16, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const void *A, int64_t lda, const void *B, int64_t ldb, float beta, float *C,
                     int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += a_at(A, bf16, transA, lda, i, k) * b_at(B, bf16, transB, ldb, k, j);
            double r = (double)alpha * acc;
            if (beta != 0.0f) r += (double)beta * (double)C[i * ldc + j];
            C[i * ldc + j] = (float)r;
        }
}

void ld_ref_gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc) {
    ref_gemm(false, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ld_ref_gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                      float *C, int64_t ldc) {
    ref_gemm(true, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* gemv: the same double-accumulated dot products (op(B) = W). */
void ld_ref_gemv_f32(bool transW, int64_t M, int64_t N, int64_t K, const float *x, const float *W, float *y) {
    ref_gemm(false, false, transW, M, N, K, 1.0f, x, K, W, transW ? K : N, 0.0f, y, N);
}

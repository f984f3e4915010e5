/* kernels/ref/ref_gemm.c — reference matrix products (gemm_f32, gemm_bf16, gemm_f32_f16): the oracle the
 * optimized GEMMs are tested against.
 *
 * Plain scalar triple loop. Each C element is one dot product over k = 0..K-1 accumulated in
 * DOUBLE (so the reference is more accurate than any fp32 kernel and its own rounding does
 * not matter at the test tolerances), then C = alpha * acc + beta * C computed in double and
 * rounded once to float. beta == 0 never reads C (NaN/Inf in C are ignored). bf16 and f16 inputs
 * are widened exactly to fp32 (then double) before the product. Semantics: kernels/kernels.h. */
#include <string.h>

#include "kernels/ref/ref.h"
#include "liandan/tensor.h"

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Element types of the operands: EL_BF16 for both (gemm_bf16), EL_F16 for B only (gemm_f32_f16). */
enum { EL_F32 = 0, EL_BF16 = 1, EL_F16 = 2 };

/* op(A)[i, k] and op(B)[k, j] for every element type, one generic loop below. */
static inline double a_at(const void *A, int el, bool transA, int64_t lda, int64_t i, int64_t k) {
    int64_t idx = transA ? k * lda + i : i * lda + k;
    return el == EL_BF16 ? (double)bf16_to_f32(((const uint16_t *)A)[idx]) : (double)((const float *)A)[idx];
}

static inline double b_at(const void *B, int el, bool transB, int64_t ldb, int64_t k, int64_t j) {
    int64_t idx = transB ? j * ldb + k : k * ldb + j;
    if (el == EL_BF16) return (double)bf16_to_f32(((const uint16_t *)B)[idx]);
    if (el == EL_F16) return (double)ld_fp16_to_fp32(((const uint16_t *)B)[idx]);
    return (double)((const float *)B)[idx];
}

static void ref_gemm(int el, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const void *A, int64_t lda, const void *B, int64_t ldb, float beta, float *C,
                     int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double acc = 0.0;
            for (int64_t k = 0; k < K; k++)
                acc += a_at(A, el, transA, lda, i, k) * b_at(B, el, transB, ldb, k, j);
            double r = (double)alpha * acc;
            if (beta != 0.0f) r += (double)beta * (double)C[i * ldc + j];
            C[i * ldc + j] = (float)r;
        }
}

void ld_ref_gemm_f32(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                     int64_t ldc) {
    ref_gemm(EL_F32, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void ld_ref_gemm_bf16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                      const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                      float *C, int64_t ldc) {
    ref_gemm(EL_BF16, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

double ld_ref_gemm_bf16_speedup(void) {
    return 1.0;
}

void ld_ref_gemm_f32_f16(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const uint16_t *B, int64_t ldb, float beta,
                         float *C, int64_t ldc) {
    ref_gemm(EL_F16, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* gemv: the same double-accumulated dot products (op(B) = W). */
void ld_ref_gemv_f32(bool transW, int64_t M, int64_t N, int64_t K, const float *x, const float *W, float *y) {
    ref_gemm(EL_F32, false, transW, M, N, K, 1.0f, x, K, W, transW ? K : N, 0.0f, y, N);
}

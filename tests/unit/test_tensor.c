/* tests/unit/test_tensor.c — dtype table, shapes, views, overflow checks, conversions. */
#include "ld_test.h"
#if LD_ARCH_X86
#include <immintrin.h>
#endif

TEST(dtype_table) {
    CHECK(ld_dtype_traits(LD_Q4_K)->block_size == 256);
    CHECK(ld_dtype_traits(LD_Q8_0)->block_bytes == 34);
    CHECK(ld_dtype_from_name("BF16") == LD_BF16);
    CHECK(ld_dtype_from_name("nope") == LD_DTYPE_COUNT);
    CHECK(ld_dtype_traits((ld_dtype)99) == NULL);
    size_t b;
    CHECK(ld_dtype_row_bytes(LD_Q4_0, 64, &b) == 0 && b == 36);
    CHECK(ld_dtype_row_bytes(LD_Q4_0, 33, &b) != 0);
}

TEST(tensor_new_views_and_errors) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_arena *a = NULL;
    ld_arena_new(ctx, 0, &a);
    ld_tensor *t = NULL;
    CHECK(ld_tensor_new(ctx, a, LD_F32, 3, (int64_t[]){2, 3, 4}, &t) == LD_OK);
    CHECK(ld_tensor_numel(t) == 24 && ld_tensor_nbytes(t) == 96);
    CHECK(t->stride[0] == 12 && t->stride[2] == 1 && ld_tensor_is_contiguous(t));
    char buf[64];
    CHECK(!strcmp(ld_tensor_shape_str(t, buf, sizeof buf), "[2, 3, 4]"));
    ld_tensor v;
    CHECK(ld_tensor_reshape(ctx, t, 2, (int64_t[]){6, 4}, &v) == LD_OK);
    CHECK(v.data == t->data && (v.flags & LD_TENSOR_VIEW));
    CHECK_STATUS(ctx, ld_tensor_reshape(ctx, t, 2, (int64_t[]){5, 4}, &v), LD_ERR_SHAPE, "cannot reshape");
    CHECK(ld_tensor_slice0(ctx, t, 1, 1, &v) == LD_OK && (float *)v.data == (float *)t->data + 12);
    CHECK_STATUS(ctx, ld_tensor_slice0(ctx, t, 1, 2, &v), LD_ERR_SHAPE, "outside");
    ld_tensor *bad = NULL;
    CHECK_STATUS(ctx, ld_tensor_new(ctx, a, LD_F32, 0, (int64_t[]){1}, &bad), LD_ERR_SHAPE, "rank");
    CHECK_STATUS(ctx, ld_tensor_new(ctx, a, LD_F32, 2, (int64_t[]){3, -1}, &bad), LD_ERR_SHAPE, "dimension 1");
    CHECK_STATUS(ctx, ld_tensor_new(ctx, a, LD_F32, 3, (int64_t[]){1LL << 40, 1LL << 40, 16}, &bad),
                 LD_ERR_OVERFLOW, "overflow");
    CHECK_STATUS(ctx, ld_tensor_new(ctx, a, LD_Q8_0, 1, (int64_t[]){33}, &bad), LD_ERR_SHAPE, "block size");
    CHECK_STATUS(ctx, ld_tensor_new(ctx, NULL, LD_F32, 1, (int64_t[]){3}, &bad), LD_ERR_INVALID_ARG, "NULL");
    ld_arena_free(a);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* The hardware's conversions as the oracle for the software ones: the F16C instructions on
 * x86-64, FCVT (the __fp16 type) on aarch64. */
#if LD_ARCH_X86
__attribute__((target("f16c"))) static uint16_t hw_to_fp16(float f) {
    return (uint16_t)_cvtss_sh(f, 0);
}
__attribute__((target("f16c"))) static float hw_from_fp16(uint16_t h) {
    return _cvtsh_ss(h);
}
#define HW_FP16 1
#elif LD_ARCH_ARM64
static uint16_t hw_to_fp16(float f) {
    __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, 2);
    return u;
}
static float hw_from_fp16(uint16_t u) {
    __fp16 h;
    memcpy(&h, &u, 2);
    return (float)h;
}
#define HW_FP16 1
#endif

TEST(float_conversions_match_hardware) {
#ifndef HW_FP16
    SKIP("no hardware fp16 conversion known on this processor");
#else
    ld_rng r = ld_rng_init(7);
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)ld_rng_u64(&r);
        float f;
        memcpy(&f, &u, 4);
        if (f != f) continue;
        uint16_t h_hw = hw_to_fp16(f);
        CHECK_MSG(ld_fp32_to_fp16(f) == h_hw, "f=%a: %04x vs %04x", f, ld_fp32_to_fp16(f), h_hw);
        uint16_t h = (uint16_t)u;
        float g = hw_from_fp16(h), g2 = ld_fp16_to_fp32(h);
        CHECK(memcmp(&g, &g2, 4) == 0 || (g != g && g2 != g2));
        /* bf16: round to nearest even of the top 16 bits */
        uint16_t b = ld_fp32_to_bf16(f);
        float back = ld_bf16_to_fp32(b);
        CHECK(fabsf(back - f) <= fabsf(f) * (1.0f / 256) + 1e-38f || isinf(back));
    }
    CHECK(ld_fp32_to_bf16(1.0f) == 0x3f80);
    CHECK(ld_fp32_to_bf16(1.00390625f) == 0x3f80); /* tie -> even */
    CHECK(ld_fp32_to_bf16(1.01171875f) == 0x3f82); /* tie -> even (up) */
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    float src[3] = {1.5f, -2.25f, 65504.0f}, dst[3];
    uint16_t mid[3];
    CHECK(ld_convert(ctx, LD_F16, mid, LD_F32, src, 3) == LD_OK);
    CHECK(ld_convert(ctx, LD_F32, dst, LD_F16, mid, 3) == LD_OK);
    CHECK(!memcmp(src, dst, sizeof src));
    CHECK_STATUS(ctx, ld_convert(ctx, LD_Q8_0, mid, LD_F32, src, 3), LD_ERR_DTYPE, "Q8_0");
    ld_ctx_free(ctx);
#endif
}

LD_TEST_MAIN()

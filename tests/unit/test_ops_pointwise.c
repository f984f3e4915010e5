/* tests/unit/test_ops_pointwise.c — the CPU backend's pointwise kernels (GELU, SiLU, SwiGLU,
 * add, scale, axpy, dropout), optimiser kernels (sumsq, AdamW) and bf16 conversions against
 * the float reference on odd sizes (1, 15, 17, 4097, and sizes that run on several threads);
 * backward accumulation and NULL gradients; dropout's keep rate and mask; AdamW against a
 * step computed by hand; bit-identical reruns. */
#include "ops_check.h"

static const int64_t sizes[] = {1, 3, 15, 16, 17, 1000, 4097, 100003};
#define NSIZES ((int)(sizeof sizes / sizeof sizes[0]))

/* the table of the level under test (TEST_ISA runs each optimized level) */
static const ld_kernels *cpu(void) { return ld_kernels_cpu_at(ld_test_isa_); }
static const ld_kernels *ref(void) { return ld_kernels_get(LD_BACKEND_REF); }

/* Relative error of pointwise results, per element, within a few ulps; forward values
 * below PW_FLOOR are compared absolutely. Accumulated results (dx + dy * f'(x), y + a x) can
 * cancel to near 0 and the kernels use FMA where the scalar ref rounds twice, so they are
 * compared relative to the O(1) scale of their terms (PW_FLOOR_ACC). */
#define PW_FLOOR 1e-3
#define PW_FLOOR_ACC 1.0
#define PW_TOL 1e-6

/* Unary op with a backward of the form dx += dy * f'(x). */
static void check_unary(const char *name, void (*fc)(float *, const float *, int64_t),
                        void (*fr)(float *, const float *, int64_t),
                        void (*bc)(float *, const float *, const float *, int64_t),
                        void (*br)(float *, const float *, const float *, int64_t)) {
    ISA_OWN(fc, fr, name);
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        float *x = ops_randn(n, 100 + (uint64_t)s, 3.0f), *dy = ops_randn(n, 200, 1.0f);
        if (n > 4) x[0] = 30.0f, x[1] = -30.0f, x[2] = 0.0f, x[3] = -100.0f; /* saturated tails */
        float *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
        fc(y1, x, n);
        fr(y2, x, n);
        OPS_CHECK_REL(name, y1, y2, n, PW_FLOOR, PW_TOL, "fwd n=%lld", (long long)n);
        float *d1 = ops_randn(n, 300, 1.0f), *d2 = ops_copy(d1, n);
        bc(d1, dy, x, n);
        br(d2, dy, x, n);
        OPS_CHECK_REL(name, d1, d2, n, PW_FLOOR_ACC, PW_TOL, "bwd n=%lld", (long long)n);
        float *y3 = malloc((size_t)n * 4);
        fc(y3, x, n);
        OPS_CHECK_SAME(name, y3, y1, (size_t)n * 4, "rerun n=%lld", (long long)n);
        bc(NULL, dy, x, n);
        free(x), free(dy), free(y1), free(y2), free(d1), free(d2), free(y3);
    }
}

TEST_ISA(gelu_matches_ref) { check_unary("gelu", cpu()->gelu_fwd, ref()->gelu_fwd, cpu()->gelu_bwd, ref()->gelu_bwd); }
TEST_ISA(gelu_erf_matches_ref) {
    check_unary("gelu_erf", cpu()->gelu_erf_fwd, ref()->gelu_erf_fwd, cpu()->gelu_erf_bwd, ref()->gelu_erf_bwd);
}
TEST_ISA(silu_matches_ref) { check_unary("silu", cpu()->silu_fwd, ref()->silu_fwd, cpu()->silu_bwd, ref()->silu_bwd); }
TEST_ISA(quick_gelu_matches_ref) {
    check_unary("quick_gelu", cpu()->quick_gelu_fwd, ref()->quick_gelu_fwd, cpu()->quick_gelu_bwd, ref()->quick_gelu_bwd);
}

typedef void (*glu_fwd)(float *y, const float *gate, const float *up, int64_t n);
typedef void (*glu_bwd)(float *dgate, float *dup, const float *dy, const float *gate, const float *up, int64_t n);

/* A gated unit (SwiGLU, GeGLU): optimized against reference, forward and backward. */
static void check_glu(const char *name, glu_fwd cf, glu_fwd rf, glu_bwd cb, glu_bwd rb) {
    ISA_OWN(cf, rf, name);
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        float *g = ops_randn(n, 1, 3.0f), *u = ops_randn(n, 2, 1.0f), *dy = ops_randn(n, 3, 1.0f);
        float *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
        cf(y1, g, u, n);
        rf(y2, g, u, n);
        OPS_CHECK_REL(name, y1, y2, n, PW_FLOOR, PW_TOL, "fwd n=%lld", (long long)n);
        float *dg1 = ops_randn(n, 4, 1.0f), *dg2 = ops_copy(dg1, n), *du1 = ops_randn(n, 5, 1.0f), *du2 = ops_copy(du1, n);
        float *dg0 = ops_copy(dg1, n), *du0 = ops_copy(du1, n);
        cb(dg1, du1, dy, g, u, n);
        rb(dg2, du2, dy, g, u, n);
        OPS_CHECK_REL(name, dg1, dg2, n, PW_FLOOR_ACC, PW_TOL, "bwd dgate n=%lld", (long long)n);
        OPS_CHECK_REL(name, du1, du2, n, PW_FLOOR_ACC, PW_TOL, "bwd dup n=%lld", (long long)n);
        /* one gradient at a time gives the same bits as both together */
        cb(dg0, NULL, dy, g, u, n);
        cb(NULL, du0, dy, g, u, n);
        OPS_CHECK_SAME(name, dg0, dg1, (size_t)n * 4, "bwd dgate alone n=%lld", (long long)n);
        OPS_CHECK_SAME(name, du0, du1, (size_t)n * 4, "bwd dup alone n=%lld", (long long)n);
        cb(NULL, NULL, dy, g, u, n);
        free(g), free(u), free(dy), free(y1), free(y2), free(dg1), free(dg2), free(du1), free(du2), free(dg0), free(du0);
    }
}

TEST_ISA(swiglu_matches_ref) {
    ISA_OWN(cpu()->swiglu_fwd, ref()->swiglu_fwd, "swiglu_fwd");
    check_glu("swiglu", cpu()->swiglu_fwd, ref()->swiglu_fwd, cpu()->swiglu_bwd, ref()->swiglu_bwd);
}

TEST_ISA(geglu_matches_ref) {
    ISA_OWN(cpu()->geglu_fwd, ref()->geglu_fwd, "geglu_fwd");
    check_glu("geglu", cpu()->geglu_fwd, ref()->geglu_fwd, cpu()->geglu_bwd, ref()->geglu_bwd);
}

TEST_ISA(softcap_matches_ref) {
    ISA_OWN(cpu()->softcap_fwd, ref()->softcap_fwd, "softcap_fwd");
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        float *x = ops_randn(n, 6, 40.0f), *dy = ops_randn(n, 7, 1.0f), *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
        cpu()->softcap_fwd(y1, x, 30.0f, n);
        ref()->softcap_fwd(y2, x, 30.0f, n);
        OPS_CHECK_REL("softcap", y1, y2, n, PW_FLOOR, PW_TOL, "fwd n=%lld", (long long)n);
        for (int64_t i = 0; i < n; i++) CHECK(fabsf(y2[i]) <= 30.0f);
        float *d1 = ops_randn(n, 8, 1.0f), *d2 = ops_copy(d1, n);
        cpu()->softcap_bwd(d1, dy, x, 30.0f, n);
        ref()->softcap_bwd(d2, dy, x, 30.0f, n);
        OPS_CHECK_REL("softcap", d1, d2, n, PW_FLOOR_ACC, PW_TOL, "bwd n=%lld", (long long)n);
        free(x), free(dy), free(y1), free(y2), free(d1), free(d2);
    }
}

TEST_ISA(linear_pointwise_matches_ref) {
    ISA_OWN(cpu()->add_fwd, ref()->add_fwd, "add_fwd");
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s], bytes = n * 4;
        float *a = ops_randn(n, 1, 1.0f), *b = ops_randn(n, 2, 1.0f);
        float *y1 = malloc((size_t)bytes), *y2 = malloc((size_t)bytes);
        /* these are exact in float: the same bits as the reference */
        cpu()->add_fwd(y1, a, b, n);
        ref()->add_fwd(y2, a, b, n);
        OPS_CHECK_SAME("add_fwd", y1, y2, (size_t)bytes, "n=%lld", (long long)n);
        float *ya = ops_copy(a, n);
        cpu()->add_fwd(ya, ya, b, n); /* y aliases a */
        OPS_CHECK_SAME("add_fwd aliased", ya, y2, (size_t)bytes, "n=%lld", (long long)n);
        cpu()->add_inplace(y1, b, n);
        ref()->add_inplace(y2, b, n);
        OPS_CHECK_SAME("add_inplace", y1, y2, (size_t)bytes, "n=%lld", (long long)n);
        cpu()->scale_fwd(y1, a, -0.37f, n);
        ref()->scale_fwd(y2, a, -0.37f, n);
        OPS_CHECK_SAME("scale_fwd", y1, y2, (size_t)bytes, "n=%lld", (long long)n);
        cpu()->scale_fwd(ya, ya, -0.37f, n);
        ref()->scale_fwd(y2, y2, -0.37f, n);
        cpu()->scale_fwd(y1, y1, -0.37f, n);
        OPS_CHECK_SAME("scale_fwd in place", y1, y2, (size_t)bytes, "n=%lld", (long long)n);
        cpu()->axpy(y1, 1.5f, b, n);
        ref()->axpy(y2, 1.5f, b, n);
        OPS_CHECK_REL("axpy", y1, y2, n, PW_FLOOR_ACC, PW_TOL, "n=%lld", (long long)n);
        free(a), free(b), free(y1), free(y2), free(ya);
    }
}

/* Outputs of 128 MB and more are written with non-temporal stores (simd_avx512.h): the
 * same results, on 64-byte aligned buffers, with a tail that is not a whole vector. */
TEST_ISA(streamed_outputs_match_ref) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->add_fwd, ld_kernels_ref.add_fwd, "add_fwd");
    const int64_t n = ((int64_t)32 << 20) + 21;
    const size_t bytes = (size_t)(n + 16) / 16 * 64; /* aligned_alloc wants a multiple of 64 */
    float *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes), *y1 = aligned_alloc(64, bytes);
    float *y2 = aligned_alloc(64, bytes);
    for (int64_t i = 0; i < n; i++) a[i] = (float)(i % 1000) * 0.001f, b[i] = (float)(i % 777) * -0.002f;
    cpu()->add_fwd(y1, a, b, n);
    ref()->add_fwd(y2, a, b, n);
    OPS_CHECK_SAME("add_fwd streamed", y1, y2, (size_t)n * 4, "n=%lld", (long long)n);
    /* LayerNorm forward over 32768 x 1024 (rows aligned) */
    int64_t N = 32768, C = 1024;
    float *w = ops_randn(C, 1, 1.0f);
    float *mean1 = malloc((size_t)N * 4), *rstd1 = malloc((size_t)N * 4), *mean2 = malloc((size_t)N * 4), *rstd2 = malloc((size_t)N * 4);
    cpu()->layernorm_fwd(y1, mean1, rstd1, a, w, NULL, N, C, 1e-5f);
    ref()->layernorm_fwd(y2, mean2, rstd2, a, w, NULL, N, C, 1e-5f);
    OPS_CHECK_CLOSE("layernorm_fwd streamed", y1, y2, N * C, 2e-6, "N=%lld C=%lld", (long long)N, (long long)C);
    free(a), free(b), free(y1), free(y2), free(w), free(mean1), free(rstd1), free(mean2), free(rstd2);
}

/* ---- dropout ---- */

TEST_ISA(dropout_matches_ref_and_mask) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->dropout_fwd, ld_kernels_ref.dropout_fwd, "dropout_fwd");
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        float *x = ops_randn(n, 7, 1.0f), *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
        cpu()->dropout_fwd(y1, x, 0.25f, 1234, 99, n);
        ref()->dropout_fwd(y2, x, 0.25f, 1234, 99, n);
        OPS_CHECK_SAME("dropout_fwd", y1, y2, (size_t)n * 4, "n=%lld", (long long)n);
        float *d1 = ops_randn(n, 8, 1.0f), *d2 = ops_copy(d1, n);
        cpu()->dropout_bwd(d1, x, 0.25f, 1234, 99, n);
        ref()->dropout_bwd(d2, x, 0.25f, 1234, 99, n);
        OPS_CHECK_REL("dropout_bwd", d1, d2, n, PW_FLOOR_ACC, PW_TOL, "n=%lld", (long long)n);
        cpu()->dropout_bwd(NULL, x, 0.25f, 1234, 99, n);
        free(x), free(y1), free(y2), free(d1), free(d2);
    }
}

TEST_ISA(dropout_rate_and_masks) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->dropout_fwd, ld_kernels_ref.dropout_fwd, "dropout_fwd");
    const int64_t n = 200000;
    const float p = 0.1f;
    float *ones = malloc(n * 4), *y = malloc(n * 4), *dx = calloc(n, 4), *y5 = malloc(n * 4), *yb = malloc(n * 4);
    for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
    cpu()->dropout_fwd(y, ones, p, 77, 0, n);
    cpu()->dropout_bwd(dx, ones, p, 77, 0, n);
    int64_t kept = 0, same_mask = 1;
    const float scale = (float)(1.0 / (1.0 - p));
    for (int64_t i = 0; i < n; i++) {
        kept += y[i] != 0.0f;
        if (y[i] != 0.0f && y[i] != scale) same_mask = 0;
        if ((y[i] != 0.0f) != (dx[i] != 0.0f) || y[i] != dx[i]) same_mask = 0; /* bwd: same mask */
    }
    double rate = (double)kept / (double)n; /* sd of the rate: sqrt(0.09 / 2e5) = 0.0007 */
    CHECK_MSG(fabs(rate - 0.9) < 0.004, "keep rate %.4f, expected 0.9", rate);
    CHECK(same_mask);
    /* the mask depends on offset + i only: shifting the offset shifts the mask */
    cpu()->dropout_fwd(y5, ones, p, 77, 5, n);
    int64_t shifted_same = 1, differ = 0;
    for (int64_t i = 0; i + 5 < n; i++) shifted_same &= (y5[i] != 0.0f) == (y[i + 5] != 0.0f);
    for (int64_t i = 0; i < n; i++) differ += (y5[i] != 0.0f) != (y[i] != 0.0f);
    CHECK(shifted_same);
    CHECK_MSG(differ > n / 10, "offsets 0 and 5 differ in only %lld places", (long long)differ);
    /* another seed gives another mask; p = 0 keeps all, p = 1 drops all */
    cpu()->dropout_fwd(yb, ones, p, 78, 0, n);
    differ = 0;
    for (int64_t i = 0; i < n; i++) differ += (yb[i] != 0.0f) != (y[i] != 0.0f);
    CHECK(differ > n / 10);
    cpu()->dropout_fwd(yb, ones, 0.0f, 78, 0, n);
    CHECK(!memcmp(yb, ones, n * 4));
    cpu()->dropout_fwd(yb, ones, 1.0f, 78, 0, n);
    int64_t nz = 0;
    for (int64_t i = 0; i < n; i++) nz += yb[i] != 0.0f;
    CHECK(nz == 0);
    free(ones), free(y), free(dx), free(y5), free(yb);
}

/* ---- optimiser ---- */

TEST_ISA(sumsq_matches_ref_and_is_deterministic) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->sumsq, ld_kernels_ref.sumsq, "sumsq");
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        float *x = ops_randn(n, 9, 2.0f);
        double a = cpu()->sumsq(x, n), b = ref()->sumsq(x, n), c = cpu()->sumsq(x, n);
        CHECK_MSG(fabs(a - b) <= 1e-12 * b, "sumsq n=%lld: %.17g vs %.17g", (long long)n, a, b);
        CHECK(memcmp(&a, &c, sizeof a) == 0);
        free(x);
    }
    CHECK(cpu()->sumsq(NULL, 0) == 0.0);
}

/* Two AdamW steps on one element, written out by hand (c2 = 1 - beta2 with beta2 = 0.999f
 * as stored, 0.00099998713):
 * g = 0.5 * 2 = 1 both steps; step 1: m = 0.1, v = c2, mhat = vhat = 1,
 * p = 1 - 0.1 * (1 / (1 + 1e-8) + 0.01 * 1) = 0.899;
 * step 2: m = 0.19, v = c2 (2 - c2), mhat = vhat = 1, p = 0.899 - 0.1 * (1/(1+1e-8) + 0.00899). */
TEST_ISA(adamw_hand_computed_step) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->adamw, ld_kernels_ref.adamw, "adamw");
    ld_adamw_params hp = {.lr = 0.1f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.01f,
                          .step = 1, .grad_scale = 2.0f};
    const ld_kernels *ks[2] = {cpu(), ref()};
    for (int b = 0; b < 2; b++) {
        enum { n = 37 }; /* a tail after two full vectors */
        float p[n], g[n], m[n], v[n];
        uint16_t p16[n];
        for (int i = 0; i < n; i++) p[i] = 1.0f, g[i] = 0.5f, m[i] = 0.0f, v[i] = 0.0f;
        hp.step = 1;
        ks[b]->adamw(p, g, m, v, p16, n, &hp);
        double c2 = 1.0 - (double)0.999f;
        double p1 = 1.0 - 0.1 * (1.0 / (1.0 + 1e-8) + 0.01);
        double p2 = p1 - 0.1 * (1.0 / (1.0 + 1e-8) + 0.01 * p1);
        for (int i = 0; i < n; i++) {
            CHECK_NEAR(m[i], 0.1, 1e-7);
            CHECK_NEAR(v[i], c2, 1e-10);
            CHECK_NEAR(p[i], p1, 2e-7);
            CHECK(p16[i] == ld_fp32_to_bf16(p[i]));
        }
        hp.step = 2;
        ks[b]->adamw(p, g, m, v, NULL, n, &hp);
        for (int i = 0; i < n; i++) {
            CHECK_NEAR(m[i], 0.19, 1e-7);
            CHECK_NEAR(v[i], c2 * (2 - c2), 1e-10);
            CHECK_NEAR(p[i], p2, 3e-7);
        }
    }
}

TEST_ISA(adamw_matches_ref) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->adamw, ld_kernels_ref.adamw, "adamw");
    ld_adamw_params hp = {.lr = 3e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                          .step = 17, .grad_scale = 0.5f};
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        float *p1 = ops_randn(n, 1, 0.05f), *g = ops_randn(n, 2, 1.0f), *m1 = ops_randn(n, 3, 0.1f);
        float *v1 = ops_randn(n, 4, 0.1f);
        for (int64_t i = 0; i < n; i++) v1[i] *= v1[i];
        float *p2 = ops_copy(p1, n), *m2 = ops_copy(m1, n), *v2 = ops_copy(v1, n), *p3 = ops_copy(p1, n);
        float *m3 = ops_copy(m1, n), *v3 = ops_copy(v1, n);
        uint16_t *b1 = malloc((size_t)n * 2), *b2 = malloc((size_t)n * 2);
        cpu()->adamw(p1, g, m1, v1, b1, n, &hp);
        ref()->adamw(p2, g, m2, v2, b2, n, &hp);
        OPS_CHECK_REL("adamw param", p1, p2, n, 1e-2, 1e-6, "n=%lld", (long long)n);
        OPS_CHECK_REL("adamw m", m1, m2, n, 0.1, 1e-6, "n=%lld", (long long)n);
        OPS_CHECK_REL("adamw v", v1, v2, n, 1e-9, 1e-6, "n=%lld", (long long)n);
        int64_t bad = 0;
        for (int64_t i = 0; i < n; i++) bad += b1[i] != ld_fp32_to_bf16(p1[i]);
        CHECK_MSG(bad == 0, "adamw bf16 copy: %lld elements differ from bf16(param)", (long long)bad);
        cpu()->adamw(p3, g, m3, v3, NULL, n, &hp);
        OPS_CHECK_SAME("adamw", p3, p1, (size_t)n * 4, "rerun n=%lld", (long long)n);
        free(p1), free(g), free(m1), free(v1), free(p2), free(m2), free(v2), free(p3), free(m3), free(v3), free(b1), free(b2);
    }
}

/* ---- conversions ---- */

TEST_ISA(bf16_conversions_match_ref_bitwise) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->f32_to_bf16, ld_kernels_ref.f32_to_bf16, "f32_to_bf16");
    for (int s = 0; s < NSIZES; s++) {
        int64_t n = sizes[s];
        float *x = ops_randn(n, 11, 100.0f);
        /* special values: NaN, infinities, a subnormal, ties to even, the largest float */
        const uint32_t special[] = {0x7fc00000u, 0x7f800001u, 0xff800000u, 0x7f800000u, 0x00000001u,
                                    0x3f808000u, 0x3f818000u, 0x7f7fffffu, 0x80000000u, 0x3f80ffffu};
        for (int64_t i = 0; i < n && i < 10; i++) memcpy(&x[i], &special[i], 4);
        uint16_t *h1 = malloc((size_t)n * 2), *h2 = malloc((size_t)n * 2);
        cpu()->f32_to_bf16(h1, x, n);
        ref()->f32_to_bf16(h2, x, n);
        OPS_CHECK_SAME("f32_to_bf16", h1, h2, (size_t)n * 2, "n=%lld", (long long)n);
        float *f1 = malloc((size_t)n * 4), *f2 = malloc((size_t)n * 4);
        cpu()->bf16_to_f32(f1, h2, n);
        ref()->bf16_to_f32(f2, h2, n);
        OPS_CHECK_SAME("bf16_to_f32", f1, f2, (size_t)n * 4, "n=%lld", (long long)n);
        free(x), free(h1), free(h2), free(f1), free(f2);
    }
}

LD_TEST_MAIN()

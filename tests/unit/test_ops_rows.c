/* tests/unit/test_ops_rows.c — the CPU backend's row-wise kernels (embedding, LayerNorm,
 * RMSNorm, RoPE, softmax, cross-entropy) against the float reference, on random and odd
 * shapes (C = 1, 3, 4, 17, 4097, N = 1, T = 1, sizes that are not multiples of 16, shapes
 * big enough to run on several threads, rows wider than the norms' per-piece partials),
 * forward and backward: accumulation into non-zero gradients, NULL gradient pointers,
 * bit-identical reruns. Tolerances are errors scaled by the reference's largest value. */
#include "core/team.h"
#include "ops_check.h"

#define TOL_FWD 2e-6 /* a few float ulps of the output scale */
#define TOL_BWD 1e-5 /* reductions over a row or over rows in float vs double */

static const int64_t row_shapes[][2] = {{1, 1}, {1, 3}, {2, 4}, {7, 17}, {5, 768}, {2, 4097},
                                        {33, 100}, {300, 129}, {1, 40000}, {3, 33000}};
#define NSHAPES ((int)(sizeof row_shapes / sizeof row_shapes[0]))

/* the table of the level under test (TEST_ISA runs each optimized level) */
static const ld_kernels *cpu(void) { return ld_kernels_cpu_at(ld_test_isa_); }
static const ld_kernels *ref(void) { return ld_kernels_get(LD_BACKEND_REF); }

/* Every level's table: named after its level, and at the x86 levels an optimized kernel for
 * every entry (no known gaps left: GeGLU, the soft-cap, RoPE by frequencies and the erf GELU
 * have theirs), so the *_matches_ref tests never compare the reference with itself. NEON
 * has the decode path's kernels (gemv, RMSNorm; kernels/cpu/kernels_neon.c), the rest is
 * the reference's. */
TEST(cpu_tables_per_level) {
    const ld_kernels *r = ref();
    for (int l = LD_ISA_SCALAR; l < LD_ISA_COUNT; l++) {
        if (!ld_isa_includes(ld_isa_active(), (ld_isa)l)) continue;
        const ld_kernels *k = ld_kernels_cpu_at((ld_isa)l);
        char want[32];
        snprintf(want, sizeof want, "cpu-%s", ld_isa_name((ld_isa)l));
        CHECK_MSG(!strcmp(k->name, want), "level %s: table named %s", ld_isa_name((ld_isa)l), k->name);
        printf("  %s:", k->name);
        const size_t first = offsetof(ld_kernels, gemm_f32), n = (sizeof(ld_kernels) - first) / sizeof(void (*)(void));
        int same = 0;
        for (size_t i = 0; i < n; i++) {
            void (*a)(void), (*b)(void);
            memcpy(&a, (const char *)k + first + i * sizeof a, sizeof a);
            memcpy(&b, (const char *)r + first + i * sizeof b, sizeof b);
            same += a == b;
        }
        printf(" %d of %zu entries are the reference's\n", same, n);
        if (l == LD_ISA_SCALAR) CHECK(same == (int)n);
        if (ld_isa_includes((ld_isa)l, LD_ISA_AVX2)) CHECK_MSG(same == 0, "%d reference entries in the %s table", same, k->name);
        if (l == LD_ISA_NEON) CHECK(k->gemv_f32 != r->gemv_f32 && k->rmsnorm_fwd != r->rmsnorm_fwd);
    }
    CHECK(ld_kernels_get(LD_BACKEND_CPU) == ld_kernels_cpu_at(ld_isa_active()));
}

TEST_ISA(embedding_matches_ref) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->embedding_fwd, ld_kernels_ref.embedding_fwd, "embedding_fwd");
    for (int s = 0; s < NSHAPES; s++) {
        int64_t N = row_shapes[s][0] * 3, C = row_shapes[s][1], V = 11;
        float *table = ops_randn(V * C, 1, 1.0f), *dout = ops_randn(N * C, 2, 1.0f);
        int32_t *ids = malloc((size_t)N * sizeof(int32_t));
        for (int64_t n = 0; n < N; n++) ids[n] = (int32_t)((n * 7 + 3) % V);
        float *o1 = ops_randn(N * C, 3, 1.0f), *o2 = ops_copy(o1, N * C);
        cpu()->embedding_fwd(o1, ids, table, N, C);
        ref()->embedding_fwd(o2, ids, table, N, C);
        OPS_CHECK_SAME("embedding_fwd", o1, o2, (size_t)(N * C) * 4, "N=%lld C=%lld", (long long)N, (long long)C);
        float *d1 = ops_randn(V * C, 4, 1.0f), *d2 = ops_copy(d1, V * C);
        cpu()->embedding_bwd(d1, ids, dout, N, C);
        ref()->embedding_bwd(d2, ids, dout, N, C);
        /* same order of additions per element (rows in order): bit-identical */
        OPS_CHECK_SAME("embedding_bwd", d1, d2, (size_t)(V * C) * 4, "N=%lld C=%lld", (long long)N, (long long)C);
        cpu()->embedding_bwd(NULL, ids, dout, N, C);
        free(table), free(dout), free(ids), free(o1), free(o2), free(d1), free(d2);
    }
}

/* LayerNorm (center) or RMSNorm on one shape: forward, backward with every combination of
 * NULL gradients, and a rerun that must be bit-identical. */
static void check_norm(int center, int64_t N, int64_t C, int with_bias) {
    const char *name = center ? "layernorm" : "rmsnorm";
    float *x = ops_randn(N * C, 10 + (uint64_t)C, 1.0f), *w = ops_randn(C, 11, 1.0f), *b = ops_randn(C, 12, 1.0f);
    for (int64_t i = 0; i < N * C; i++) x[i] += 0.5f; /* non-zero mean */
    float *dy = ops_randn(N * C, 13, 1.0f);
    float *y1 = malloc((size_t)(N * C) * 4), *y2 = malloc((size_t)(N * C) * 4);
    float *m1 = malloc((size_t)N * 4), *m2 = malloc((size_t)N * 4), *r1 = malloc((size_t)N * 4), *r2 = malloc((size_t)N * 4);
    const float *bb = with_bias ? b : NULL;
    if (center) {
        cpu()->layernorm_fwd(y1, m1, r1, x, w, bb, N, C, 1e-5f);
        ref()->layernorm_fwd(y2, m2, r2, x, w, bb, N, C, 1e-5f);
        OPS_CHECK_CLOSE("layernorm_fwd mean", m1, m2, N, TOL_FWD, "N=%lld C=%lld", (long long)N, (long long)C);
    } else {
        cpu()->rmsnorm_fwd(y1, r1, x, w, N, C, 1e-5f);
        ref()->rmsnorm_fwd(y2, r2, x, w, N, C, 1e-5f);
    }
    OPS_CHECK_CLOSE(name, y1, y2, N * C, TOL_FWD, "fwd N=%lld C=%lld", (long long)N, (long long)C);
    OPS_CHECK_REL(name, r1, r2, N, 0.0, TOL_FWD, "fwd rstd N=%lld C=%lld", (long long)N, (long long)C);

    /* backward from the reference's saved statistics, into non-zero gradients */
    float *dx1 = ops_randn(N * C, 14, 1.0f), *dx2 = ops_copy(dx1, N * C);
    float *dw1 = ops_randn(C, 15, 1.0f), *dw2 = ops_copy(dw1, C);
    float *db1 = ops_randn(C, 16, 1.0f), *db2 = ops_copy(db1, C);
    float *dx0 = ops_copy(dx1, N * C), *dw0 = ops_copy(dw1, C);
    const float *mean = center ? m2 : NULL;
    if (center) {
        cpu()->layernorm_bwd(dx1, dw1, db1, dy, x, w, mean, r2, N, C);
        ref()->layernorm_bwd(dx2, dw2, db2, dy, x, w, mean, r2, N, C);
        OPS_CHECK_CLOSE(name, db1, db2, C, TOL_BWD, "bwd db N=%lld C=%lld", (long long)N, (long long)C);
    } else {
        cpu()->rmsnorm_bwd(dx1, dw1, dy, x, w, r2, N, C);
        ref()->rmsnorm_bwd(dx2, dw2, dy, x, w, r2, N, C);
    }
    OPS_CHECK_CLOSE(name, dx1, dx2, N * C, TOL_BWD, "bwd dx N=%lld C=%lld", (long long)N, (long long)C);
    OPS_CHECK_CLOSE(name, dw1, dw2, C, TOL_BWD, "bwd dw N=%lld C=%lld", (long long)N, (long long)C);

    /* NULL gradients: the others come out exactly as in the full call */
    float *dx3 = ops_copy(dx0, N * C), *dw3 = ops_copy(dw0, C);
    if (center) {
        cpu()->layernorm_bwd(dx3, NULL, NULL, dy, x, w, mean, r2, N, C);
        cpu()->layernorm_bwd(NULL, dw3, NULL, dy, x, w, mean, r2, N, C);
        cpu()->layernorm_bwd(NULL, NULL, NULL, dy, x, w, mean, r2, N, C);
    } else {
        cpu()->rmsnorm_bwd(dx3, NULL, dy, x, w, r2, N, C);
        cpu()->rmsnorm_bwd(NULL, dw3, dy, x, w, r2, N, C);
    }
    OPS_CHECK_SAME(name, dx3, dx1, (size_t)(N * C) * 4, "bwd dx alone N=%lld C=%lld", (long long)N, (long long)C);
    OPS_CHECK_SAME(name, dw3, dw1, (size_t)C * 4, "bwd dw alone N=%lld C=%lld", (long long)N, (long long)C);

    /* determinism: a second run gives the same bits */
    float *y3 = malloc((size_t)(N * C) * 4), *dx4 = ops_copy(dx0, N * C), *dw4 = ops_copy(dw0, C);
    if (center) {
        cpu()->layernorm_fwd(y3, m1, r1, x, w, bb, N, C, 1e-5f);
        cpu()->layernorm_bwd(dx4, dw4, NULL, dy, x, w, mean, r2, N, C);
    } else {
        cpu()->rmsnorm_fwd(y3, r1, x, w, N, C, 1e-5f);
        cpu()->rmsnorm_bwd(dx4, dw4, dy, x, w, r2, N, C);
    }
    OPS_CHECK_SAME(name, y3, y1, (size_t)(N * C) * 4, "rerun fwd N=%lld C=%lld", (long long)N, (long long)C);
    OPS_CHECK_SAME(name, dx4, dx1, (size_t)(N * C) * 4, "rerun dx N=%lld C=%lld", (long long)N, (long long)C);
    OPS_CHECK_SAME(name, dw4, dw1, (size_t)C * 4, "rerun dw N=%lld C=%lld", (long long)N, (long long)C);

    free(x), free(w), free(b), free(dy), free(y1), free(y2), free(m1), free(m2), free(r1), free(r2);
    free(dx1), free(dx2), free(dw1), free(dw2), free(db1), free(db2), free(dx0), free(dw0), free(dx3), free(dw3);
    free(y3), free(dx4), free(dw4);
}

TEST_ISA(layernorm_matches_ref) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->layernorm_fwd, ld_kernels_ref.layernorm_fwd, "layernorm_fwd");
    for (int s = 0; s < NSHAPES; s++) check_norm(1, row_shapes[s][0], row_shapes[s][1], s % 2);
}

TEST_ISA(rmsnorm_matches_ref) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->rmsnorm_fwd, ld_kernels_ref.rmsnorm_fwd, "rmsnorm_fwd");
    for (int s = 0; s < NSHAPES; s++) check_norm(0, row_shapes[s][0], row_shapes[s][1], 0);
}

static ld_ctx *ctx_with_threads(int n) {
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = n;
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(&p, &ctx) == LD_OK);
    return ctx;
}

/* A team of 3 threads (more than the cores here) over pieces of rows and columns, and the
 * per-piece dw/db partials added in piece order. */
TEST_ISA(norms_on_odd_thread_count) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->layernorm_fwd, ld_kernels_ref.layernorm_fwd, "layernorm_fwd");
    ld_ctx *ctx = ctx_with_threads(3);
    {
        LD_TEAM_SCOPE(ctx);
        check_norm(1, 300, 129, 1);
        check_norm(0, 61, 1000, 0);
        check_norm(1, 2, 40000, 0);
    }
    ld_ctx_free(ctx);
}

TEST_ISA(rope_matches_ref) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->rope_fwd, ld_kernels_ref.rope_fwd, "rope_fwd");
    /* B, T, H, D, pos0 */
    static const int64_t shapes[][5] = {{1, 1, 1, 2, 0}, {2, 3, 2, 6, 5}, {1, 7, 3, 34, 100},
                                        {2, 64, 4, 64, 4000}, {1, 5, 2, 128, 0}};
    for (int s = 0; s < 5; s++) {
        int64_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], D = shapes[s][3], p0 = shapes[s][4];
        int64_t n = B * T * H * D;
        float *x = ops_randn(n, 20, 1.0f), *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
        cpu()->rope_fwd(y1, x, B, T, H, D, p0, 10000.0f);
        ref()->rope_fwd(y2, x, B, T, H, D, p0, 10000.0f);
        OPS_CHECK_CLOSE("rope_fwd", y1, y2, n, TOL_FWD, "shape %d", s);
        float *xi = ops_copy(x, n); /* in place */
        cpu()->rope_fwd(xi, xi, B, T, H, D, p0, 10000.0f);
        OPS_CHECK_SAME("rope_fwd in place", xi, y1, (size_t)n * 4, "shape %d", s);
        float *dx1 = ops_randn(n, 21, 1.0f), *dx2 = ops_copy(dx1, n);
        cpu()->rope_bwd(dx1, x, B, T, H, D, p0, 10000.0f);
        ref()->rope_bwd(dx2, x, B, T, H, D, p0, 10000.0f);
        OPS_CHECK_CLOSE("rope_bwd", dx1, dx2, n, TOL_FWD, "shape %d", s);
        cpu()->rope_bwd(NULL, x, B, T, H, D, p0, 10000.0f);
        free(x), free(y1), free(y2), free(xi), free(dx1), free(dx2);
    }
}

/* RoPE with explicit frequencies equals the theta form when given theta's frequencies, and
 * the optimized table's version equals the reference's. */
TEST_ISA(rope_freqs_matches_ref_and_theta_form) {
    static const int64_t shapes[][5] = {{1, 1, 1, 2, 0}, {2, 3, 2, 6, 5}, {1, 7, 3, 34, 100}, {2, 64, 4, 64, 4000}};
    for (int s = 0; s < 4; s++) {
        int64_t B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], D = shapes[s][3], p0 = shapes[s][4];
        int64_t n = B * T * H * D;
        float *f = malloc((size_t)(D / 2) * sizeof(float));
        for (int64_t i = 0; i < D / 2; i++) f[i] = (float)pow(10000.0, -2.0 * (double)i / (double)D);
        float *x = ops_randn(n, 30, 1.0f), *y1 = malloc((size_t)n * 4), *y2 = malloc((size_t)n * 4);
        float *y3 = malloc((size_t)n * 4);
        cpu()->rope_freq_fwd(y1, x, B, T, H, D, p0, f, 1.0f);
        ref()->rope_freq_fwd(y2, x, B, T, H, D, p0, f, 1.0f);
        ref()->rope_fwd(y3, x, B, T, H, D, p0, 10000.0f);
        OPS_CHECK_CLOSE("rope_freq_fwd", y1, y2, n, TOL_FWD, "shape %d", s);
        /* float frequencies vs double ones: positions up to 4000 move angles by ~1e-4 */
        OPS_CHECK_CLOSE("rope_freq_fwd vs rope_fwd", y2, y3, n, 2e-3, "shape %d", s);
        float *dx1 = ops_randn(n, 31, 1.0f), *dx2 = ops_copy(dx1, n);
        cpu()->rope_freq_bwd(dx1, x, B, T, H, D, p0, f, 1.5f);
        ref()->rope_freq_bwd(dx2, x, B, T, H, D, p0, f, 1.5f);
        OPS_CHECK_CLOSE("rope_freq_bwd", dx1, dx2, n, TOL_FWD, "shape %d", s);
        free(f), free(x), free(y1), free(y2), free(y3), free(dx1), free(dx2);
    }
}

TEST_ISA(softmax_matches_ref) {
    ISA_OWN(cpu()->softmax_fwd, ref()->softmax_fwd, "softmax_fwd");
    for (int s = 0; s < NSHAPES; s++) {
        int64_t N = row_shapes[s][0], C = row_shapes[s][1];
        float *x = ops_randn(N * C, 30, 3.0f), *dy = ops_randn(N * C, 31, 1.0f);
        float *y1 = malloc((size_t)(N * C) * 4), *y2 = malloc((size_t)(N * C) * 4);
        cpu()->softmax_fwd(y1, x, N, C);
        ref()->softmax_fwd(y2, x, N, C);
        OPS_CHECK_REL("softmax_fwd", y1, y2, N * C, 1e-30, 4e-6, "N=%lld C=%lld", (long long)N, (long long)C);
        float *dx1 = ops_randn(N * C, 32, 1.0f), *dx2 = ops_copy(dx1, N * C);
        cpu()->softmax_bwd(dx1, dy, y2, N, C);
        ref()->softmax_bwd(dx2, dy, y2, N, C);
        OPS_CHECK_CLOSE("softmax_bwd", dx1, dx2, N * C, TOL_BWD, "N=%lld C=%lld", (long long)N, (long long)C);
        cpu()->softmax_bwd(NULL, dy, y2, N, C);
        free(x), free(dy), free(y1), free(y2), free(dx1), free(dx2);
    }
}

#define IGN (-100)

TEST_ISA(xent_matches_ref_and_ignores) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->xent_fwd, ld_kernels_ref.xent_fwd, "xent_fwd");
    static const int64_t shapes[][2] = {{1, 1}, {1, 3}, {4, 17}, {5, 4097}, {37, 1000}, {3, 50304}};
    for (int s = 0; s < 6; s++) {
        int64_t N = shapes[s][0], V = shapes[s][1];
        float *x = ops_randn(N * V, 40, 4.0f), *dloss = ops_randn(N, 41, 1.0f);
        int32_t *tg = malloc((size_t)N * sizeof(int32_t));
        for (int64_t n = 0; n < N; n++) tg[n] = (n % 3 == 1) ? IGN : (int32_t)((n * 131 + 7) % V);
        float l1[64], l2[64], e1[64], e2[64];
        cpu()->xent_fwd(l1, e1, x, tg, N, V, IGN);
        ref()->xent_fwd(l2, e2, x, tg, N, V, IGN);
        OPS_CHECK_CLOSE("xent_fwd lse", e1, e2, N, TOL_FWD, "N=%lld V=%lld", (long long)N, (long long)V);
        for (int64_t n = 0; n < N; n++) {
            CHECK_NEAR(l1[n], l2[n], 2e-6 * (fabs(e2[n]) + 1));
            if (tg[n] == IGN) CHECK(l1[n] == 0.0f && l2[n] == 0.0f);
        }
        /* accumulate into a non-zero gradient */
        float *d1 = ops_randn(N * V, 42, 1.0f), *d2 = ops_copy(d1, N * V), *d0 = ops_copy(d1, N * V);
        cpu()->xent_bwd(d1, dloss, x, e2, tg, N, V, IGN);
        ref()->xent_bwd(d2, dloss, x, e2, tg, N, V, IGN);
        OPS_CHECK_CLOSE("xent_bwd", d1, d2, N * V, TOL_FWD, "N=%lld V=%lld", (long long)N, (long long)V);
        for (int64_t n = 0; n < N; n++)
            if (tg[n] == IGN) OPS_CHECK_SAME("xent_bwd ignored row", d1 + n * V, d0 + n * V, (size_t)V * 4, "n=%lld", (long long)n);
        /* in place: dlogits == logits overwrites; ignored rows become 0 */
        float *xi = ops_copy(x, N * V), *z = calloc((size_t)(N * V), 4);
        ref()->xent_bwd(z, dloss, x, e2, tg, N, V, IGN); /* = the gradient alone */
        cpu()->xent_bwd(xi, dloss, xi, e2, tg, N, V, IGN);
        OPS_CHECK_CLOSE("xent_bwd in place", xi, z, N * V, TOL_FWD, "N=%lld V=%lld", (long long)N, (long long)V);
        float *xr = ops_copy(x, N * V);
        ref()->xent_bwd(xr, dloss, xr, e2, tg, N, V, IGN);
        OPS_CHECK_CLOSE("ref xent_bwd in place", xr, z, N * V, 1e-7, "N=%lld V=%lld", (long long)N, (long long)V);
        for (int64_t n = 0; n < N; n++)
            if (tg[n] == IGN)
                for (int64_t c = 0; c < V; c++) CHECK(xi[n * V + c] == 0.0f && xr[n * V + c] == 0.0f);
        /* determinism */
        float l3[64], e3[64];
        cpu()->xent_fwd(l3, e3, x, tg, N, V, IGN);
        OPS_CHECK_SAME("xent_fwd rerun", l3, l1, (size_t)N * 4, "N=%lld V=%lld", (long long)N, (long long)V);
        cpu()->xent_bwd(NULL, dloss, x, e2, tg, N, V, IGN);
        free(x), free(dloss), free(tg), free(d1), free(d2), free(d0), free(xi), free(z), free(xr);
    }
}

TEST_ISA(xent_extreme_logits) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->xent_fwd, ld_kernels_ref.xent_fwd, "xent_fwd");
    /* large logits must not overflow: the online max keeps exponents <= 0 */
    int64_t V = 100;
    float x[100];
    for (int c = 0; c < V; c++) x[c] = 80.0f + 0.5f * (float)c;
    int32_t tg = 99;
    float l1, l2, e1, e2;
    cpu()->xent_fwd(&l1, &e1, x, &tg, 1, V, IGN);
    ref()->xent_fwd(&l2, &e2, x, &tg, 1, V, IGN);
    CHECK(isfinite(l1) && isfinite(e1));
    CHECK_NEAR(l1, l2, 1e-5);
    CHECK_NEAR(e1, e2, 1e-5);
}

/* ---- distillation loss ---- */

TEST_ISA(distill_matches_ref_and_ignores) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->distill_fwd, ld_kernels_ref.distill_fwd, "distill_fwd");
    static const int64_t shapes[][2] = {{1, 1}, {1, 3}, {4, 17}, {5, 4097}, {37, 1000}, {3, 50304}};
    static const float settings[][2] = {{2.0f, 0.5f}, {1.0f, 0.7f}, {0.5f, 1.0f}, {4.0f, 0.0f}};
    for (int s = 0; s < 6; s++)
        for (int k = 0; k < 4; k++) {
            int64_t N = shapes[s][0], V = shapes[s][1];
            float T = settings[k][0], a = settings[k][1];
            float *x = ops_randn(N * V, 50, 4.0f), *y = ops_randn(N * V, 51, 4.0f), *dloss = ops_randn(N, 52, 1.0f);
            int32_t *tg = malloc((size_t)N * sizeof(int32_t));
            for (int64_t n = 0; n < N; n++) tg[n] = (n % 3 == 1) ? IGN : (int32_t)((n * 131 + 7) % V);
            float l1[64], l2[64], st1[192], st2[192];
            cpu()->distill_fwd(l1, st1, x, y, tg, N, V, T, a, IGN);
            ref()->distill_fwd(l2, st2, x, y, tg, N, V, T, a, IGN);
            for (int64_t n = 0; n < N; n++) {
                if (tg[n] == IGN) {
                    CHECK(l1[n] == 0.0f && l2[n] == 0.0f);
                    continue;
                }
                /* the loss is a difference of log-sum-exps: error relative to their size */
                double scale = fabs(st2[3 * n]) * T * T + fabs(st2[3 * n + 2]) + 1;
                CHECK_NEAR(l1[n], l2[n], 4e-6 * scale);
                for (int j = 0; j < 3; j++) CHECK_NEAR(st1[3 * n + j], st2[3 * n + j], 2e-6 * (fabs(st2[3 * n + j]) + 1));
            }
            /* backward accumulates into a non-zero gradient and leaves ignored rows alone */
            float *d1 = ops_randn(N * V, 53, 1.0f), *d2 = ops_copy(d1, N * V), *d0 = ops_copy(d1, N * V);
            cpu()->distill_bwd(d1, dloss, x, y, st2, tg, N, V, T, a, IGN);
            ref()->distill_bwd(d2, dloss, x, y, st2, tg, N, V, T, a, IGN);
            OPS_CHECK_CLOSE("distill_bwd", d1, d2, N * V, TOL_BWD, "N=%lld V=%lld T=%g alpha=%g", (long long)N,
                            (long long)V, (double)T, (double)a);
            for (int64_t n = 0; n < N; n++)
                if (tg[n] == IGN)
                    OPS_CHECK_SAME("distill_bwd ignored row", d1 + n * V, d0 + n * V, (size_t)V * 4, "n=%lld", (long long)n);
            /* determinism */
            float l3[64], st3[192];
            cpu()->distill_fwd(l3, st3, x, y, tg, N, V, T, a, IGN);
            OPS_CHECK_SAME("distill_fwd rerun", l3, l1, (size_t)N * 4, "N=%lld V=%lld", (long long)N, (long long)V);
            cpu()->distill_bwd(NULL, dloss, x, y, st2, tg, N, V, T, a, IGN);
            free(x), free(y), free(dloss), free(tg), free(d1), free(d2), free(d0);
        }
}

/* alpha = 0 is the cross-entropy (loss and gradient); alpha = 1, T = 1 is KL(p_t || p_s). */
TEST_ISA(distill_limits) {
    int64_t N = 6, V = 333;
    float *x = ops_randn(N * V, 60, 3.0f), *y = ops_randn(N * V, 61, 3.0f), *dloss = ops_randn(N, 62, 1.0f);
    int32_t tg[6] = {5, IGN, 0, 332, 17, 100};
    const ld_kernels *ks[2] = {cpu(), ref()};
    for (int b = 0; b < 2; b++) {
        const ld_kernels *K = ks[b];
        float l[6], st[18], lx[6], lse[6];
        K->distill_fwd(l, st, x, y, tg, N, V, 3.0f, 0.0f, IGN);
        K->xent_fwd(lx, lse, x, tg, N, V, IGN);
        for (int64_t n = 0; n < N; n++) CHECK_NEAR(l[n], lx[n], 2e-6 * (fabs(lse[n]) + 1));
        float *d1 = calloc((size_t)(N * V), 4), *d2 = calloc((size_t)(N * V), 4);
        K->distill_bwd(d1, dloss, x, y, st, tg, N, V, 3.0f, 0.0f, IGN);
        K->xent_bwd(d2, dloss, x, lse, tg, N, V, IGN);
        OPS_CHECK_CLOSE("distill alpha=0 vs xent", d1, d2, N * V, TOL_FWD, "backend %s", K->name);
        K->distill_fwd(l, st, x, y, tg, N, V, 1.0f, 1.0f, IGN);
        for (int64_t n = 0; n < N; n++) {
            if (tg[n] == IGN) continue;
            double ms = -INFINITY, mt = -INFINITY, ss = 0, stt = 0, kl = 0;
            for (int64_t c = 0; c < V; c++) ms = fmax(ms, x[n * V + c]), mt = fmax(mt, y[n * V + c]);
            for (int64_t c = 0; c < V; c++) ss += exp(x[n * V + c] - ms), stt += exp(y[n * V + c] - mt);
            for (int64_t c = 0; c < V; c++) {
                double pt = exp(y[n * V + c] - mt) / stt, ps = exp(x[n * V + c] - ms) / ss;
                kl += pt * log(pt / ps);
            }
            CHECK_NEAR(l[n], kl, 1e-5 * (fabs(ms) + fabs(mt) + 1));
        }
        free(d1), free(d2);
    }
    free(x), free(y), free(dloss);
}

/* The reductions over rows (the norms' dw/db, the embedding's table gradient with repeated
 * ids) and the row kernels give the same bits on 1, 2 and 3 threads: their pieces depend
 * only on the shapes (core/team.h). */
TEST_ISA(same_bits_on_any_thread_count) {
    const int64_t N = 700, C = 300, V = 1000, E = 50;
    const ld_kernels *K = cpu();
    float *x = ops_randn(N * C, 41, 1.0f), *dy = ops_randn(N * C, 42, 1.0f), *w = ops_randn(C, 43, 1.0f);
    float *mean = malloc(N * 4), *rstd = malloc(N * 4), *y = malloc(N * C * 4);
    K->layernorm_fwd(y, mean, rstd, x, w, NULL, N, C, 1e-5f);
    float *logits = ops_randn(N * V, 44, 3.0f);
    int32_t *ids = malloc(N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) ids[n] = (int32_t)((n * 7) % E); /* every id repeated */
    float *out[3][5];
    for (int k = 0; k < 3; k++) {
        ld_ctx *ctx = ctx_with_threads(k + 1);
        {
            LD_TEAM_SCOPE(ctx);
            out[k][0] = ops_randn(N * C, 45, 1.0f), out[k][1] = ops_randn(C, 46, 1.0f);
            out[k][2] = ops_randn(C, 47, 1.0f), out[k][3] = ops_randn(E * C, 48, 1.0f);
            out[k][4] = malloc(N * 4);
            K->layernorm_bwd(out[k][0], out[k][1], out[k][2], dy, x, w, mean, rstd, N, C);
            K->embedding_bwd(out[k][3], ids, dy, N, C);
            float *lse = malloc(N * 4);
            K->xent_fwd(out[k][4], lse, logits, ids, N, V, -100);
            free(lse);
        }
        ld_ctx_free(ctx);
    }
    const int64_t sizes[5] = {N * C, C, C, E * C, N};
    const char *what[5] = {"layernorm dx", "layernorm dw", "layernorm db", "embedding dtable", "xent loss"};
    for (int k = 1; k < 3; k++)
        for (int i = 0; i < 5; i++)
            OPS_CHECK_SAME(what[i], out[k][i], out[0][i], (size_t)sizes[i] * 4, "%d threads vs 1", k + 1);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 5; i++) free(out[k][i]);
    free(x), free(dy), free(w), free(mean), free(rstd), free(y), free(logits), free(ids);
}

LD_TEST_MAIN()

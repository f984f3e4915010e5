/* tests/unit/test_ops_grad.c — every backward kernel of the reference, instantiated in
 * double (kernels/ref/ref_f64.h), against central finite differences of its forward.
 *
 * The scalar loss is a random projection of the output, L = sum_i r_i out_i, so the
 * backward is called with dy = r. Gradient buffers start from random non-zero values: the
 * check is that backward ADDS exactly dL/dinput (accumulation semantics). eps = 1e-6;
 * |analytic - numeric| <= 1e-6 (|numeric| + 0.1) for every element. */
#include "kernels/ref/ref_f64.h"
#include "ld_test.h"

#define FD_EPS 1e-6
#define FD_TOL 1e-6
#define FD_MAXIN 3

typedef struct fd_case fd_case;
struct fd_case {
    const char *name;
    int nin;
    double *in[FD_MAXIN], *grad[FD_MAXIN];
    int64_t len[FD_MAXIN];
    double *out, *r; /* forward output and the projection */
    int64_t nout;
    int64_t N, C, B, T, H, D;  /* shapes, per op */
    int32_t *ids;              /* embedding ids / xent targets */
    double *save1, *save2;     /* what forward saves for backward */
    void (*fwd)(fd_case *);    /* writes out (and save*) from in[] */
    void (*bwd)(fd_case *);    /* accumulates dL/din into grad[] with dy = r */
};

static uint64_t fd_seed = 1;

static double *fd_randn(int64_t n, double scale) {
    double *p = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    ld_rng r = ld_rng_init(fd_seed++);
    for (int64_t i = 0; i < n; i++) p[i] = scale * ld_rng_normal(&r);
    return p;
}

static double fd_loss(fd_case *c) {
    c->fwd(c);
    double s = 0;
    for (int64_t i = 0; i < c->nout; i++) s += c->r[i] * c->out[i];
    return s;
}

/* Runs the check for every input of c, frees c's buffers, and returns the worst error
 * |analytic - numeric| / (|numeric| + 0.1) over all inputs (reported on stderr by FD_CHECK). */
static double fd_run(fd_case *c) {
    double worst_all = 0;
    c->out = calloc((size_t)c->nout, sizeof(double));
    c->r = fd_randn(c->nout, 1.0);
    double *g0[FD_MAXIN];
    for (int k = 0; k < c->nin; k++) {
        c->grad[k] = fd_randn(c->len[k], 1.0);
        g0[k] = malloc((size_t)c->len[k] * sizeof(double));
        memcpy(g0[k], c->grad[k], (size_t)c->len[k] * sizeof(double));
    }
    c->fwd(c);
    c->bwd(c);
    for (int k = 0; k < c->nin; k++) {
        double worst = 0;
        int64_t where = -1;
        for (int64_t j = 0; j < c->len[k]; j++) {
            double keep = c->in[k][j];
            c->in[k][j] = keep + FD_EPS;
            double lp = fd_loss(c);
            c->in[k][j] = keep - FD_EPS;
            double lm = fd_loss(c);
            c->in[k][j] = keep;
            double num = (lp - lm) / (2 * FD_EPS), ana = c->grad[k][j] - g0[k][j];
            double err = fabs(ana - num) / (fabs(num) + 0.1);
            if (!(err <= worst)) worst = err, where = j;
        }
        if (!(worst <= FD_TOL))
            fprintf(stderr, "  %s: input %d element %lld: gradient error %.3g\n", c->name, k, (long long)where, worst);
        if (!(worst <= worst_all)) worst_all = worst;
    }
    for (int k = 0; k < c->nin; k++) free(c->grad[k]), free(g0[k]), free(c->in[k]);
    free(c->out);
    free(c->r);
    free(c->ids);
    free(c->save1);
    free(c->save2);
    return worst_all;
}

#define FD_CHECK(c) CHECK(fd_run(c) <= FD_TOL)

/* ---- embedding ---- */
static void emb_fwd(fd_case *c) { ld_ref64_embedding_fwd(c->out, c->ids, c->in[0], c->N, c->C); }
static void emb_bwd(fd_case *c) { ld_ref64_embedding_bwd(c->grad[0], c->ids, c->r, c->N, c->C); }

TEST(fd_embedding) {
    int64_t V = 5, N = 7, C = 3;
    fd_case c = {.name = "embedding", .nin = 1, .N = N, .C = C, .nout = N * C, .fwd = emb_fwd, .bwd = emb_bwd};
    c.in[0] = fd_randn(V * C, 1.0), c.len[0] = V * C;
    c.ids = malloc(N * sizeof(int32_t));
    for (int64_t n = 0; n < N; n++) c.ids[n] = (int32_t)((n * 3) % V); /* repeats ids */
    FD_CHECK(&c);
}

/* ---- norms ---- */
static void ln_fwd(fd_case *c) {
    ld_ref64_layernorm_fwd(c->out, c->save1, c->save2, c->in[0], c->in[1], c->in[2], c->N, c->C, 1e-5f);
}
static void ln_bwd(fd_case *c) {
    ld_ref64_layernorm_bwd(c->grad[0], c->grad[1], c->grad[2], c->r, c->in[0], c->in[1], c->save1,
                           c->save2, c->N, c->C);
}

TEST(fd_layernorm) {
    int64_t shapes[][2] = {{3, 5}, {1, 8}, {4, 3}};
    for (int s = 0; s < 3; s++) {
        int64_t N = shapes[s][0], C = shapes[s][1];
        fd_case c = {.name = "layernorm", .nin = 3, .N = N, .C = C, .nout = N * C, .fwd = ln_fwd, .bwd = ln_bwd};
        c.in[0] = fd_randn(N * C, 2.0), c.len[0] = N * C;
        c.in[1] = fd_randn(C, 1.0), c.len[1] = C;
        c.in[2] = fd_randn(C, 1.0), c.len[2] = C;
        c.save1 = calloc(N, sizeof(double)), c.save2 = calloc(N, sizeof(double));
        FD_CHECK(&c);
    }
}

static void rms_fwd(fd_case *c) { ld_ref64_rmsnorm_fwd(c->out, c->save2, c->in[0], c->in[1], c->N, c->C, 1e-5f); }
static void rms_bwd(fd_case *c) {
    ld_ref64_rmsnorm_bwd(c->grad[0], c->grad[1], c->r, c->in[0], c->in[1], c->save2, c->N, c->C);
}

TEST(fd_rmsnorm) {
    int64_t N = 3, C = 6;
    fd_case c = {.name = "rmsnorm", .nin = 2, .N = N, .C = C, .nout = N * C, .fwd = rms_fwd, .bwd = rms_bwd};
    c.in[0] = fd_randn(N * C, 1.5), c.len[0] = N * C;
    c.in[1] = fd_randn(C, 1.0), c.len[1] = C;
    c.save2 = calloc(N, sizeof(double));
    FD_CHECK(&c);
}

/* ---- rope ---- */
static void rope_fwd(fd_case *c) { ld_ref64_rope_fwd(c->out, c->in[0], c->B, c->T, c->H, c->D, 5, 10000.0f); }
static void rope_bwd(fd_case *c) { ld_ref64_rope_bwd(c->grad[0], c->r, c->B, c->T, c->H, c->D, 5, 10000.0f); }

TEST(fd_rope) {
    int64_t B = 2, T = 3, H = 2, D = 6, n = B * T * H * D;
    fd_case c = {.name = "rope", .nin = 1, .B = B, .T = T, .H = H, .D = D, .nout = n, .fwd = rope_fwd, .bwd = rope_bwd};
    c.in[0] = fd_randn(n, 1.0), c.len[0] = n;
    FD_CHECK(&c);
}

/* scaled RoPE: explicit frequencies and a cos/sin scale (YaRN) */
static const float rope_freqs_tab[3] = {1.0f, 0.21f, 0.013f};
static void rope_freq_fwd(fd_case *c) {
    ld_ref64_rope_freq_fwd(c->out, c->in[0], c->B, c->T, c->H, c->D, 5, rope_freqs_tab, 1.3f);
}
static void rope_freq_bwd(fd_case *c) {
    ld_ref64_rope_freq_bwd(c->grad[0], c->r, c->B, c->T, c->H, c->D, 5, rope_freqs_tab, 1.3f);
}

TEST(fd_rope_freqs) {
    int64_t B = 2, T = 3, H = 2, D = 6, n = B * T * H * D;
    fd_case c = {.name = "rope_freq", .nin = 1, .B = B, .T = T, .H = H, .D = D, .nout = n, .fwd = rope_freq_fwd,
                 .bwd = rope_freq_bwd};
    c.in[0] = fd_randn(n, 1.0), c.len[0] = n;
    FD_CHECK(&c);
}

/* ---- softmax and cross-entropy ---- */
static void sm_fwd(fd_case *c) { ld_ref64_softmax_fwd(c->out, c->in[0], c->N, c->C); }
static void sm_bwd(fd_case *c) { ld_ref64_softmax_bwd(c->grad[0], c->r, c->out, c->N, c->C); }

TEST(fd_softmax) {
    int64_t N = 3, C = 7;
    fd_case c = {.name = "softmax", .nin = 1, .N = N, .C = C, .nout = N * C, .fwd = sm_fwd, .bwd = sm_bwd};
    c.in[0] = fd_randn(N * C, 2.0), c.len[0] = N * C;
    FD_CHECK(&c);
}

#define XENT_IGNORE (-100)
static void xent_fwd(fd_case *c) {
    ld_ref64_xent_fwd(c->out, c->save1, c->in[0], c->ids, c->N, c->C, XENT_IGNORE);
}
static void xent_bwd(fd_case *c) {
    ld_ref64_xent_bwd(c->grad[0], c->r, c->in[0], c->save1, c->ids, c->N, c->C, XENT_IGNORE);
}

TEST(fd_xent) {
    int64_t N = 4, V = 9;
    fd_case c = {.name = "xent", .nin = 1, .N = N, .C = V, .nout = N, .fwd = xent_fwd, .bwd = xent_bwd};
    c.in[0] = fd_randn(N * V, 2.0), c.len[0] = N * V;
    c.ids = malloc(N * sizeof(int32_t));
    int32_t t[4] = {3, XENT_IGNORE, 0, 8};
    memcpy(c.ids, t, sizeof t);
    c.save1 = calloc(N, sizeof(double));
    FD_CHECK(&c);
}

/* distillation: the student logits are the input; the teacher's (save2) are a constant */
static float fd_temp, fd_alpha;
static void distill_fwd(fd_case *c) {
    ld_ref64_distill_fwd(c->out, c->save1, c->in[0], c->save2, c->ids, c->N, c->C, fd_temp, fd_alpha, XENT_IGNORE);
}
static void distill_bwd(fd_case *c) {
    ld_ref64_distill_bwd(c->grad[0], c->r, c->in[0], c->save2, c->save1, c->ids, c->N, c->C, fd_temp, fd_alpha,
                         XENT_IGNORE);
}

TEST(fd_distill) {
    static const float settings[][2] = {{2.0f, 0.5f}, {1.0f, 1.0f}, {0.5f, 0.3f}, {4.0f, 0.0f}, {3.0f, 0.9f}};
    for (int k = 0; k < 5; k++) {
        int64_t N = 4, V = 9;
        fd_temp = settings[k][0], fd_alpha = settings[k][1];
        fd_case c = {.name = "distill", .nin = 1, .N = N, .C = V, .nout = N, .fwd = distill_fwd, .bwd = distill_bwd};
        c.in[0] = fd_randn(N * V, 2.0), c.len[0] = N * V;
        c.save2 = fd_randn(N * V, 2.0);
        c.ids = malloc(N * sizeof(int32_t));
        int32_t t[4] = {3, XENT_IGNORE, 0, 8};
        memcpy(c.ids, t, sizeof t);
        c.save1 = calloc(3 * N, sizeof(double));
        FD_CHECK(&c);
    }
}

/* ---- pointwise ---- */
static void gelu_fwd(fd_case *c) { ld_ref64_gelu_fwd(c->out, c->in[0], c->nout); }
static void gelu_bwd(fd_case *c) { ld_ref64_gelu_bwd(c->grad[0], c->r, c->in[0], c->nout); }
static void gelu_erf_fwd(fd_case *c) { ld_ref64_gelu_erf_fwd(c->out, c->in[0], c->nout); }
static void gelu_erf_bwd(fd_case *c) { ld_ref64_gelu_erf_bwd(c->grad[0], c->r, c->in[0], c->nout); }
static void silu_fwd(fd_case *c) { ld_ref64_silu_fwd(c->out, c->in[0], c->nout); }
static void silu_bwd(fd_case *c) { ld_ref64_silu_bwd(c->grad[0], c->r, c->in[0], c->nout); }
static void quick_gelu_fwd(fd_case *c) { ld_ref64_quick_gelu_fwd(c->out, c->in[0], c->nout); }
static void quick_gelu_bwd(fd_case *c) { ld_ref64_quick_gelu_bwd(c->grad[0], c->r, c->in[0], c->nout); }
static void swiglu_fwd(fd_case *c) { ld_ref64_swiglu_fwd(c->out, c->in[0], c->in[1], c->nout); }
static void swiglu_bwd(fd_case *c) { ld_ref64_swiglu_bwd(c->grad[0], c->grad[1], c->r, c->in[0], c->in[1], c->nout); }
static void geglu_fwd(fd_case *c) { ld_ref64_geglu_fwd(c->out, c->in[0], c->in[1], c->nout); }
static void geglu_bwd(fd_case *c) { ld_ref64_geglu_bwd(c->grad[0], c->grad[1], c->r, c->in[0], c->in[1], c->nout); }
static void softcap_fwd(fd_case *c) { ld_ref64_softcap_fwd(c->out, c->in[0], 1.7f, c->nout); }
static void softcap_bwd(fd_case *c) { ld_ref64_softcap_bwd(c->grad[0], c->r, c->in[0], 1.7f, c->nout); }
static void add_fwd(fd_case *c) { ld_ref64_add_fwd(c->out, c->in[0], c->in[1], c->nout); }
static void add_bwd(fd_case *c) {
    ld_ref64_add_inplace(c->grad[0], c->r, c->nout);
    ld_ref64_add_inplace(c->grad[1], c->r, c->nout);
}
#define SCALE_ALPHA (-1.75f)
static void scale_fwd(fd_case *c) { ld_ref64_scale_fwd(c->out, c->in[0], SCALE_ALPHA, c->nout); }
static void scale_bwd(fd_case *c) { ld_ref64_axpy(c->grad[0], SCALE_ALPHA, c->r, c->nout); }
static void drop_fwd(fd_case *c) { ld_ref64_dropout_fwd(c->out, c->in[0], 0.3f, 42, 7, c->nout); }
static void drop_bwd(fd_case *c) { ld_ref64_dropout_bwd(c->grad[0], c->r, 0.3f, 42, 7, c->nout); }

static double fd_pointwise(const char *name, int nin, void (*fwd)(fd_case *), void (*bwd)(fd_case *)) {
    int64_t n = 23;
    fd_case c = {.name = name, .nin = nin, .nout = n, .fwd = fwd, .bwd = bwd};
    for (int k = 0; k < nin; k++) c.in[k] = fd_randn(n, 2.0), c.len[k] = n;
    return fd_run(&c);
}

TEST(fd_pointwise) {
    CHECK(fd_pointwise("gelu", 1, gelu_fwd, gelu_bwd) <= FD_TOL);
    CHECK(fd_pointwise("gelu_erf", 1, gelu_erf_fwd, gelu_erf_bwd) <= FD_TOL);
    CHECK(fd_pointwise("silu", 1, silu_fwd, silu_bwd) <= FD_TOL);
    CHECK(fd_pointwise("quick_gelu", 1, quick_gelu_fwd, quick_gelu_bwd) <= FD_TOL);
    CHECK(fd_pointwise("swiglu", 2, swiglu_fwd, swiglu_bwd) <= FD_TOL);
    CHECK(fd_pointwise("geglu", 2, geglu_fwd, geglu_bwd) <= FD_TOL);
    CHECK(fd_pointwise("softcap", 1, softcap_fwd, softcap_bwd) <= FD_TOL);
    CHECK(fd_pointwise("add", 2, add_fwd, add_bwd) <= FD_TOL);
    CHECK(fd_pointwise("scale", 1, scale_fwd, scale_bwd) <= FD_TOL);
    CHECK(fd_pointwise("dropout", 1, drop_fwd, drop_bwd) <= FD_TOL);
}

/* The check itself must be able to fail: a backward that misses a term is caught. */
static void bad_silu_bwd(fd_case *c) { ld_ref64_gelu_bwd(c->grad[0], c->r, c->in[0], c->nout); }
TEST(fd_detects_wrong_gradient) {
    fprintf(stderr, "  (gradient error reports for silu-with-gelu-bwd and quick_gelu-with-silu-bwd are expected here)\n");
    CHECK(fd_pointwise("silu-with-gelu-bwd", 1, silu_fwd, bad_silu_bwd) > 1e-3);
    CHECK(fd_pointwise("quick_gelu-with-silu-bwd", 1, quick_gelu_fwd, silu_bwd) > 1e-3);
}

LD_TEST_MAIN()

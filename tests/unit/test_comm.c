/* tests/unit/test_comm.c — the communicator (core/comm.h) on however many ranks run it: one
 * (plain ctest) or two (test_comm_mpi2: mpirun -np 2). Every expected value is computed from
 * rank and size, so the same checks hold for any world. */
#include "core/comm.h"
#include "ld_test.h"

static ld_ctx *ctx_;
static ld_comm *world_;

static ld_comm *world(void) {
    if (!world_) {
        ld_ctx_params p = ld_ctx_default_params();
        p.n_threads = 1;
        if (ld_ctx_new(&p, &ctx_)) return NULL;
        if (ld_comm_world(ctx_, &world_)) return NULL;
    }
    return world_;
}

TEST(world_matches_launcher) {
    ld_comm *c = world();
    CHECK(c != NULL);
    if (!c) return;
    int size = ld_comm_size(c), rank = ld_comm_rank(c);
    CHECK(rank >= 0 && rank < size);
    const char *want = getenv("LD_TEST_WORLD"); /* set by the mpirun test */
    if (want) CHECK(size == atoi(want));
    else if (!ld_comm_launched()) CHECK(size == 1);
    if (!ld_comm_mpi_built()) CHECK(size == 1);
}

TEST(allreduce_sum_max_min) {
    ld_comm *c = world();
    int R = ld_comm_size(c), r = ld_comm_rank(c);
    float f[5];
    double d[3];
    int64_t i[2];
    for (int k = 0; k < 5; k++) f[k] = (float)(r + 1) * (float)(k + 1);
    for (int k = 0; k < 3; k++) d[k] = r == 0 ? -1.5 * k : 0.25 * r;
    i[0] = r, i[1] = (int64_t)1 << 40;
    CHECK(ld_comm_allreduce(c, f, 5, LD_COMM_F32, LD_COMM_SUM) == LD_OK);
    CHECK(ld_comm_allreduce(c, d, 3, LD_COMM_F64, LD_COMM_MAX) == LD_OK);
    CHECK(ld_comm_allreduce(c, i, 2, LD_COMM_I64, LD_COMM_MIN) == LD_OK);
    float tri = (float)(R * (R + 1) / 2);
    for (int k = 0; k < 5; k++) CHECK(f[k] == tri * (float)(k + 1));
    for (int k = 0; k < 3; k++) CHECK(d[k] == (R == 1 ? -1.5 * k : (k == 0 ? 0.25 * (R - 1) : 0.25 * (R - 1))));
    CHECK(i[0] == 0 && i[1] == (int64_t)1 << 40);
    CHECK(ld_comm_allreduce(c, f, 1, LD_COMM_BYTE, LD_COMM_SUM) == LD_ERR_INVALID_ARG);
    CHECK(ld_comm_allreduce(c, f, -1, LD_COMM_F32, LD_COMM_SUM) == LD_ERR_INVALID_ARG);
}

/* bfloat16 sums (the gradient reduction's "dp_reduce": "bf16"): the conversions round to
 * nearest, ties to even, by hand; the sum on every rank is the rounded sum of the rounded
 * values, blocking and not; only SUM is allowed. */
TEST(bf16_conversions_and_sums) {
    static const struct {
        float f;
        uint16_t h;
    } table[] = {
        {1.0f, 0x3f80},           {-2.0f, 0xc000},          {0.0f, 0x0000},
        {1.00390625f, 0x3f80},    /* 1 + 2^-8: a tie, to the even 1.0 */
        {1.01171875f, 0x3f82},    /* 1 + 3 x 2^-8: a tie, to the even 1 + 2^-6 */
        {1.0078125f, 0x3f81},     /* 1 + 2^-7: exact */
        {1.005859375f, 0x3f81},   /* 1 + 1.5 x 2^-8: above the tie, up */
        {3.4028235e38f, 0x7f80},  /* FLT_MAX rounds to infinity */
        {INFINITY, 0x7f80},       {-INFINITY, 0xff80},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        uint16_t h = 0;
        ld_comm_to_bf16(&h, &table[i].f, 1);
        CHECK_MSG(h == table[i].h, "bf16(%.9g) = 0x%04x, expected 0x%04x", (double)table[i].f, h, table[i].h);
    }
    float nan = NAN, back = 0;
    uint16_t h = 0;
    ld_comm_to_bf16(&h, &nan, 1);
    ld_comm_from_bf16(&back, &h, 1);
    CHECK(back != back);
    uint16_t acc[2] = {0x3f80, 0x3f80}, x[2] = {0x3b80, 0x3c00}; /* 1 + 2^-8 rounds to 1; 1 + 2^-7 is exact */
    ld_comm_bf16_add(acc, x, 2);
    CHECK(acc[0] == 0x3f80 && acc[1] == 0x3f81);

    ld_comm *c = world();
    int R = ld_comm_size(c), r = ld_comm_rank(c);
    enum { N = 300 };
    float f[N];
    uint16_t b[N], bi[N];
    for (int k = 0; k < N; k++) f[k] = (float)(r + 1) * 0.37f * (float)(k - 150);
    ld_comm_to_bf16(b, f, N);
    memcpy(bi, b, sizeof b);
    CHECK(ld_comm_allreduce(c, b, N, LD_COMM_BF16, LD_COMM_SUM) == LD_OK);
    int req = -1;
    CHECK(ld_comm_iallreduce(c, bi, N, LD_COMM_BF16, &req) == LD_OK && ld_comm_wait(c, req) == LD_OK);
    int bad = 0;
    for (int k = 0; k < N; k++) { /* every rank's value rounded, added in rank order (exact for R <= 2) */
        uint16_t want = 0, v;
        for (int q = 0; q < R; q++) {
            float fq = (float)(q + 1) * 0.37f * (float)(k - 150);
            ld_comm_to_bf16(&v, &fq, 1);
            if (q == 0) want = v;
            else ld_comm_bf16_add(&want, &v, 1);
        }
        bad += R <= 2 && (b[k] != want || bi[k] != want);
        bad += b[k] != bi[k];
    }
    CHECK_MSG(bad == 0, "%d bfloat16 sums differ", bad);
    CHECK(ld_comm_allreduce(c, b, N, LD_COMM_BF16, LD_COMM_MAX) == LD_ERR_INVALID_ARG);
}

TEST(iallreduce_overlaps_and_completes) {
    ld_comm *c = world();
    int R = ld_comm_size(c), r = ld_comm_rank(c);
    enum { NB = 4, N = 1000 };
    static float b[NB][N];
    int req[NB];
    for (int k = 0; k < NB; k++) {
        for (int j = 0; j < N; j++) b[k][j] = (float)(r * N + j + k);
        CHECK(ld_comm_iallreduce(c, b[k], N, LD_COMM_F32, &req[k]) == LD_OK);
    }
    bool done = false;
    CHECK(ld_comm_test(c, req[0], &done) == LD_OK);
    if (!done) CHECK(ld_comm_wait(c, req[0]) == LD_OK);
    for (int k = 1; k < NB; k++) CHECK(ld_comm_wait(c, req[k]) == LD_OK);
    int bad = 0;
    for (int k = 0; k < NB; k++)
        for (int j = 0; j < N; j++) {
            double want = (double)N * R * (R - 1) / 2 + (double)R * (j + k);
            bad += b[k][j] != (float)want;
        }
    CHECK(bad == 0);
    CHECK(ld_comm_wait(c, req[0]) == LD_ERR_INVALID_ARG); /* released */
    CHECK(ld_comm_test(c, 9999, &done) == LD_ERR_INVALID_ARG);
}

TEST(allgatherv_uneven_and_in_place) {
    ld_comm *c = world();
    int R = ld_comm_size(c), r = ld_comm_rank(c);
    int64_t counts[64], displs[64], total = 0;
    CHECK(R <= 64);
    for (int q = 0; q < R; q++) counts[q] = q + 2, displs[q] = total, total += counts[q];
    float *all = calloc((size_t)total, sizeof(float)), mine[66];
    for (int k = 0; k < counts[r]; k++) mine[k] = (float)(100 * r + k);
    CHECK(ld_comm_allgatherv(c, mine, all, counts, displs, LD_COMM_F32) == LD_OK);
    int bad = 0;
    for (int q = 0; q < R; q++)
        for (int k = 0; k < counts[q]; k++) bad += all[displs[q] + k] != (float)(100 * q + k);
    CHECK(bad == 0);
    /* in place: the own block already sits in recv */
    memset(all, 0, (size_t)total * sizeof(float));
    for (int k = 0; k < counts[r]; k++) all[displs[r] + k] = (float)(7 * r + k);
    CHECK(ld_comm_allgatherv(c, all + displs[r], all, counts, displs, LD_COMM_F32) == LD_OK);
    bad = 0;
    for (int q = 0; q < R; q++)
        for (int k = 0; k < counts[q]; k++) bad += all[displs[q] + k] != (float)(7 * q + k);
    CHECK(bad == 0);
    counts[0] = -1;
    CHECK(ld_comm_allgatherv(c, mine, all, counts, displs, LD_COMM_F32) == LD_ERR_INVALID_ARG);
    CHECK(strstr(ld_ctx_error(ctx_), "negative") != NULL);
    free(all);
}

TEST(alltoallv_routes_blocks) {
    ld_comm *c = world();
    int R = ld_comm_size(c), r = ld_comm_rank(c);
    /* rank r sends (q + 1) values r*1000 + q*10 + k to rank q */
    int64_t sc[64], sd[64], rc[64], rd[64], so = 0, ro = 0;
    for (int q = 0; q < R; q++) {
        sc[q] = q + 1, sd[q] = so, so += sc[q];
        rc[q] = r + 1, rd[q] = ro, ro += rc[q];
    }
    float *send = malloc((size_t)so * sizeof(float)), *recv = calloc((size_t)ro, sizeof(float));
    for (int q = 0; q < R; q++)
        for (int k = 0; k < sc[q]; k++) send[sd[q] + k] = (float)(r * 1000 + q * 10 + k);
    CHECK(ld_comm_alltoallv(c, send, sc, sd, recv, rc, rd, LD_COMM_F32) == LD_OK);
    int bad = 0;
    for (int q = 0; q < R; q++)
        for (int k = 0; k < rc[q]; k++) bad += recv[rd[q] + k] != (float)(q * 1000 + r * 10 + k);
    CHECK(bad == 0);
    free(send), free(recv);
}

TEST(bcast_split_barrier) {
    ld_comm *c = world();
    int R = ld_comm_size(c), r = ld_comm_rank(c);
    int64_t v[2] = {r == R - 1 ? 42 : -1, r};
    CHECK(ld_comm_bcast(c, v, 2, LD_COMM_I64, R - 1) == LD_OK);
    CHECK(v[0] == 42 && v[1] == R - 1);
    CHECK(ld_comm_bcast(c, v, 2, LD_COMM_I64, R) == LD_ERR_INVALID_ARG);
    /* groups of one rank each (color = rank), and one group of all in reverse order */
    ld_comm *solo = NULL, *rev = NULL;
    CHECK(ld_comm_split(c, r, 0, &solo) == LD_OK);
    CHECK(ld_comm_size(solo) == 1 && ld_comm_rank(solo) == 0);
    CHECK(ld_comm_split(c, 0, R - 1 - r, &rev) == LD_OK);
    CHECK(ld_comm_size(rev) == R && ld_comm_rank(rev) == R - 1 - r);
    double x = 1;
    CHECK(ld_comm_allreduce(solo, &x, 1, LD_COMM_F64, LD_COMM_SUM) == LD_OK && x == 1);
    CHECK(ld_comm_allreduce(rev, &x, 1, LD_COMM_F64, LD_COMM_SUM) == LD_OK && x == R);
    ld_comm_free(solo), ld_comm_free(rev);
    CHECK(ld_comm_barrier(c) == LD_OK);
    ld_comm_stats s = ld_comm_stats_get(c);
    CHECK(s.calls >= (R > 1 ? 5 : 0));
    ld_comm_stats_reset(c);
    CHECK(ld_comm_stats_get(c).calls == 0);
}

TEST(no_mpi_build_refuses_a_launcher) {
    if (ld_comm_mpi_built()) SKIP("this build has MPI: a launcher's ranks are real");
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(NULL, &ctx) == LD_OK);
    ld_comm *c = NULL;
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    CHECK(ld_comm_world(ctx, &c) == LD_ERR_UNSUPPORTED && c == NULL);
    CHECK(strstr(ld_ctx_error(ctx), "built without MPI") != NULL);
    setenv("OMPI_COMM_WORLD_SIZE", "1", 1); /* one rank is a plain run */
    CHECK(ld_comm_world(ctx, &c) == LD_OK && ld_comm_size(c) == 1);
    unsetenv("OMPI_COMM_WORLD_SIZE");
    ld_comm_free(c);
    ld_ctx_free(ctx);
}

TEST(zz_free) { /* runs last (tests run in registration order) */
    ld_comm_free(world_);
    world_ = NULL;
    ld_ctx_free(ctx_);
}

LD_TEST_MAIN()

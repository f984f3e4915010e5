/* tests/unit/test_core.c — status table, context errors, allocator hooks, arenas, RNG. */
#include "ld_test.h"

TEST(status_table_names_and_messages) {
    CHECK(!strcmp(ld_status_name(LD_ERR_SHAPE), "LD_ERR_SHAPE"));
    CHECK(!strcmp(ld_status_message(LD_ERR_NOMEM), "out of memory"));
    CHECK(!strcmp(ld_status_name((ld_status)12345), "LD_UNKNOWN_STATUS"));
    CHECK(ld_status_message((ld_status)-999) != NULL);
}

TEST(context_error_and_wrap) {
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(NULL, &ctx) == LD_OK);
    CHECK(ld_error(ctx, LD_ERR_FORMAT, "byte %d: bad magic", 4) == LD_ERR_FORMAT);
    CHECK(!strcmp(ld_ctx_error(ctx), "byte 4: bad magic"));
    ld_error_wrap(ctx, LD_ERR_FORMAT, "model.gguf: ");
    CHECK(!strcmp(ld_ctx_error(ctx), "model.gguf: byte 4: bad magic"));
    CHECK(ld_ctx_status(ctx) == LD_ERR_FORMAT);
    ld_ctx_clear_error(ctx);
    CHECK(ld_ctx_error(ctx)[0] == 0);
    ld_ctx_free(ctx);
}

/* An allocator that fails on the n-th call, to prove failure paths clean up. */
typedef struct { int calls, fail_at; } failing_alloc;
static void *fa_alloc(void *user, size_t size, size_t align) {
    failing_alloc *f = user;
    if (++f->calls == f->fail_at) return NULL;
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) ? NULL : p;
}
static void fa_free(void *user, void *p) { (void)user; free(p); }

TEST(allocation_failure_is_reported_not_fatal) {
    failing_alloc fa = {0, 3};
    ld_allocator a = {fa_alloc, fa_free, &fa};
    ld_ctx_params p = ld_ctx_default_params();
    p.allocator = &a;
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(&p, &ctx) == LD_OK); /* call 1 */
    void *x = ld_alloc(ctx, 100);         /* call 2 */
    CHECK(x != NULL);
    void *y = ld_alloc(ctx, 100);         /* call 3 fails */
    CHECK(y == NULL);
    CHECK(ld_ctx_status(ctx) == LD_ERR_NOMEM);
    CHECK(strstr(ld_ctx_error(ctx), "100 bytes") != NULL);
    ld_free(ctx, x);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    CHECK(ld_calloc(ctx, SIZE_MAX / 2, 4) == NULL);
    CHECK(ld_ctx_status(ctx) == LD_ERR_OVERFLOW);
    ld_ctx_free(ctx);
}

TEST(arena_reuses_chunks_after_reset) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_arena *a = NULL;
    CHECK(ld_arena_new(ctx, 4096, &a) == LD_OK);
    for (int iter = 0; iter < 3; iter++) {
        ld_arena_reset(a);
        size_t before = ld_ctx_bytes_in_use(ctx);
        for (int i = 0; i < 10; i++) {
            char *p = ld_arena_alloc(a, 1000 + (size_t)i * 700);
            CHECK(p && ((uintptr_t)p % 64) == 0);
            if (p) memset(p, i, 1000);
        }
        if (iter > 0) CHECK(ld_ctx_bytes_in_use(ctx) == before); /* no new system allocations */
    }
    CHECK(ld_arena_used(a) > 10000);
    CHECK(ld_arena_alloc(a, SIZE_MAX - 10) == NULL);
    CHECK(ld_ctx_status(ctx) == LD_ERR_OVERFLOW);
    ld_arena_free(a);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(rng_is_counter_based_and_restorable) {
    ld_rng r = ld_rng_init(42);
    uint64_t first[8];
    for (int i = 0; i < 8; i++) first[i] = ld_rng_u64(&r);
    ld_rng saved = r;
    uint64_t next = ld_rng_u64(&r);
    CHECK(ld_rng_u64(&saved) == next);
    CHECK(ld_rng_at(42, 3) == first[3]);
    CHECK(ld_rng_at(43, 3) != first[3]);
    /* uniform in [0,1), mean ~ 0.5; normal mean ~ 0, var ~ 1 */
    double s = 0, s1 = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) {
        float u = ld_rng_uniform(&r);
        CHECK(u >= 0 && u < 1);
        s += u;
        float z = ld_rng_normal(&r);
        s1 += z, s2 += (double)z * z;
    }
    CHECK_NEAR(s / 100000, 0.5, 0.01);
    CHECK_NEAR(s1 / 100000, 0.0, 0.02);
    CHECK_NEAR(s2 / 100000, 1.0, 0.02);
    int counts[3] = {0};
    for (int i = 0; i < 30000; i++) counts[ld_rng_below(&r, 3)]++;
    for (int i = 0; i < 3; i++) CHECK(counts[i] > 9500 && counts[i] < 10500);
}

LD_TEST_MAIN()

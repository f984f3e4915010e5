/* tests/ld_test.h — a tiny test harness: TEST(name) functions, CHECK macros, a main().
 *
 *   #include "ld_test.h"
 *   TEST(arena_reuses_chunks) { CHECK(x == 1); CHECK_NEAR(a, b, 1e-6); }
 *   LD_TEST_MAIN()
 *
 * Each failed CHECK prints file:line and the expression and marks the test failed; the
 * test goes on so one run shows every failure. SKIP("why") ends a test that cannot run here
 * (a CPU without the ISA of the kernel it checks): it is reported as SKIP, never as ok, and
 * counted. main() prints "N passed, N failed, N skipped" and exits nonzero if anything
 * failed (also when a NAME runs no test, or tests past LD_TEST_MAX were registered). Run one
 * test with: ./test_x NAME.
 *
 * Instruction-set levels (kernels/kernels.h, ld_isa): TEST_ISA(name) runs its body once per
 * optimized level this process may use (every level above scalar that ld_isa_active()
 * includes: AVX2 and AVX512 on x86-64, NEON on aarch64) with ld_test_isa_ set,
 * and skips when there is none, so an optimized kernel is never compared with itself.
 * LD_TEST_ISA=LEVEL (set by the build's per-level test variants) runs the whole binary at
 * that level (as LD_ISA=LEVEL would) and exits 77, "skipped" to ctest, when the CPU lacks
 * it or it is already the CPU's own level (the plain run covers that). */
#ifndef LD_TEST_H
#define LD_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "liandan/liandan.h"

typedef void (*ld_test_fn)(void);
typedef struct { const char *name; ld_test_fn fn; } ld_test_case;

#define LD_TEST_MAX 512
static ld_test_case ld_tests_[LD_TEST_MAX];
static int ld_ntests_;
static int ld_test_failed_;
static int ld_test_skipped_;
static int ld_test_dropped_; /* tests past LD_TEST_MAX: a failure, never silently not run */
static char ld_test_skip_why_[256];
static ld_isa ld_test_isa_; /* the level TEST_ISA bodies test; ld_isa_active() elsewhere */

#define TEST(name)                                                            \
    static void test_##name(void);                                            \
    __attribute__((constructor)) static void register_##name(void) {          \
        if (ld_ntests_ < LD_TEST_MAX) ld_tests_[ld_ntests_++] = (ld_test_case){#name, test_##name}; \
        else ld_test_dropped_++;                                              \
    }                                                                         \
    static void test_##name(void)

/* In a TEST_ISA body: skip the level when its kernel for `what` is the reference's own
 * (there is nothing to compare there yet). */
#define ISA_OWN(kernel, reference, what)                                      \
    do {                                                                      \
        if ((void (*)(void))(kernel) == (void (*)(void))(reference))          \
            SKIP("%s: %s is the reference kernel at this level", ld_isa_name(ld_test_isa_), what); \
    } while (0)

/* A test whose body runs once per optimized ISA level ld_isa_active() includes. A level whose
 * body skips is reported on its own line; the test is a SKIP only when no level ran. */
#define TEST_ISA(name)                                                        \
    static void test_isa_##name(void);                                        \
    TEST(name) {                                                              \
        int ran_ = 0;                                                         \
        for (int l_ = LD_ISA_SCALAR + 1; l_ < LD_ISA_COUNT; l_++) {           \
            if (!ld_isa_includes(ld_isa_active(), (ld_isa)l_)) continue;      \
            ld_test_isa_ = (ld_isa)l_;                                        \
            ld_test_skipped_ = 0;                                             \
            printf("  [%s]\n", ld_isa_name(ld_test_isa_));                   \
            test_isa_##name();                                                \
            if (ld_test_skipped_) printf("  [%s] skipped: %s\n", ld_isa_name(ld_test_isa_), ld_test_skip_why_); \
            else ran_++;                                                      \
        }                                                                     \
        ld_test_isa_ = ld_isa_active();                                       \
        ld_test_skipped_ = 0;                                                 \
        if (!ran_) {                                                          \
            if (ld_isa_active() == LD_ISA_SCALAR) SKIP("no optimized kernels at ISA level %s", ld_isa_name(ld_isa_active())); \
            SKIP("%s", "every level's kernel is the reference");              \
        }                                                                     \
    }                                                                         \
    static void test_isa_##name(void)

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            ld_test_failed_ = 1;                                              \
        }                                                                     \
    } while (0)

#define CHECK_MSG(cond, ...)                                                  \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            ld_test_failed_ = 1;                                              \
        }                                                                     \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                 \
    do {                                                                      \
        double a_ = (double)(a), b_ = (double)(b);                            \
        if (!(fabs(a_ - b_) <= (tol))) {                                      \
            fprintf(stderr, "  %s:%d: %s = %.9g, %s = %.9g, differ by more than %g\n", \
                    __FILE__, __LINE__, #a, a_, #b, b_, (double)(tol));       \
            ld_test_failed_ = 1;                                              \
        }                                                                     \
    } while (0)

/* Ends the test as skipped, with the reason (printf format). */
#define SKIP(...)                                                             \
    do {                                                                      \
        snprintf(ld_test_skip_why_, sizeof ld_test_skip_why_, __VA_ARGS__);   \
        ld_test_skipped_ = 1;                                                 \
        return;                                                               \
    } while (0)

/* True when needle is NULL or occurs in hay. */
static inline int ld_test_contains(const char *hay, const char *needle) {
    return !needle || strstr(hay, needle) != NULL;
}

/* CHECK that a call returns `expect` and, when it is an error, that the context's message
 * contains `substr`. */
#define CHECK_STATUS(ctx, call, expect, substr)                               \
    do {                                                                      \
        ld_status st_ = (call);                                               \
        if (st_ != (expect)) {                                                \
            fprintf(stderr, "  %s:%d: %s returned %s, expected %s (%s)\n", __FILE__, __LINE__, \
                    #call, ld_status_name(st_), ld_status_name(expect), ld_ctx_error(ctx)); \
            ld_test_failed_ = 1;                                              \
        } else if (!ld_test_contains(ld_ctx_error(ctx), (substr))) {        \
            fprintf(stderr, "  %s:%d: error message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, \
                    ld_ctx_error(ctx), (const char *)(substr) ? (const char *)(substr) : ""); \
            ld_test_failed_ = 1;                                              \
        }                                                                     \
    } while (0)

/* Max |a-b| / (|b| + floor) over n floats. */
static inline double ld_test_max_rel_err(const float *a, const float *b, long n, double floor_) {
    double m = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (fabs((double)b[i]) + floor_);
        if (d > m || d != d) m = d != d ? INFINITY : d;
    }
    return m;
}

/* An allocator that counts what a context holds: the bytes held now, their peak and the
 * largest single request. For tests that bound the memory a call takes:
 *   ld_test_mem mem = {0};
 *   ld_allocator al = ld_test_mem_allocator(&mem);   // ld_ctx_params.allocator = &al
 *   mem.peak = mem.held; call(...); CHECK(mem.peak - mem.held < bound); */
typedef struct ld_test_mem {
    size_t held, peak, max_request;
} ld_test_mem;
static inline void *ld_test_mem_alloc(void *user, size_t size, size_t align) {
    ld_test_mem *m = user;
    size_t off = align < 64 ? 64 : align; /* the size and this offset sit in front of the block */
    char *p = NULL;
    if (posix_memalign((void **)&p, off, size + off)) return NULL;
    memcpy(p + off - 16, &size, sizeof size), memcpy(p + off - 8, &off, sizeof off);
    m->held += size;
    if (m->held > m->peak) m->peak = m->held;
    if (size > m->max_request) m->max_request = size;
    return p + off;
}
static inline void ld_test_mem_free(void *user, void *ptr) {
    if (!ptr) return;
    char *p = ptr;
    size_t size, off;
    memcpy(&size, p - 16, sizeof size), memcpy(&off, p - 8, sizeof off);
    ((ld_test_mem *)user)->held -= size;
    free(p - off);
}
static inline ld_allocator ld_test_mem_allocator(ld_test_mem *m) {
    return (ld_allocator){ld_test_mem_alloc, ld_test_mem_free, m};
}

/* Path to a shared data file, or NULL (and a skip note) when the data is absent. */
static inline const char *ld_test_data(const char *rel, char *buf, size_t cap) {
    const char *dir = getenv("LD_DATA_DIR");
    snprintf(buf, cap, "%s/%s", dir ? dir : "../shared/data", rel);
    FILE *f = fopen(buf, "rb");
    if (!f) return NULL;
    fclose(f);
    return buf;
}

/* LD_TEST_ISA: run at that level (see the top of this file); returns 77 to skip the run. */
static inline int ld_test_isa_setup(void) {
    const char *want = getenv("LD_TEST_ISA");
    ld_isa isa;
    if (!want) return 0;
    if (!ld_isa_parse(want, &isa)) {
        printf("LD_TEST_ISA=%s: not an ISA level (scalar, avx2, avx512, neon)\n", want);
        return 1;
    }
    if (isa == ld_isa_detected() || !ld_isa_includes(ld_isa_detected(), isa)) {
        printf("skipped: LD_TEST_ISA=%s on a CPU whose level is %s (%s)\n", want, ld_isa_name(ld_isa_detected()),
               isa == ld_isa_detected() ? "the plain run tests it" : "it cannot run here");
        return 77;
    }
    setenv("LD_ISA", want, 1);
    return 0;
}

#define LD_TEST_MAIN()                                                        \
    int main(int argc, char **argv) {                                         \
        int passed = 0, failed = 0, skipped = 0, rc = ld_test_isa_setup();    \
        if (rc) return rc;                                                    \
        ld_test_isa_ = ld_isa_active();                                       \
        printf("ISA level %s\n", ld_isa_name(ld_test_isa_));                 \
        for (int i = 0; i < ld_ntests_; i++) {                                \
            if (argc > 1 && strcmp(argv[1], ld_tests_[i].name) != 0) continue; \
            ld_test_failed_ = ld_test_skipped_ = 0;                           \
            ld_tests_[i].fn();                                                \
            if (ld_test_failed_) failed++, printf("FAIL %s\n", ld_tests_[i].name); \
            else if (ld_test_skipped_)                                        \
                skipped++, printf("SKIP %s (%s)\n", ld_tests_[i].name, ld_test_skip_why_); \
            else passed++, printf("ok   %s\n", ld_tests_[i].name);           \
        }                                                                     \
        if (argc > 1 && passed + failed + skipped == 0)                       \
            failed++, printf("FAIL no test named %s\n", argv[1]);            \
        if (ld_test_dropped_)                                                 \
            failed++, printf("FAIL %d tests past LD_TEST_MAX (%d) were not run\n", ld_test_dropped_, LD_TEST_MAX); \
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped); \
        return failed ? 1 : 0;                                                \
    }

#endif

/* tests/unit/ops_check.h — helpers shared by the op kernel tests (test_ops_*.c): random
 * buffers and the comparisons of an optimized kernel's output with the reference's. */
#ifndef LD_TESTS_OPS_CHECK_H
#define LD_TESTS_OPS_CHECK_H

#include <stdint.h>

#include "kernels/kernels.h"
#include "ld_test.h"

/* n floats from N(0, scale^2) drawn from stream `seed`; caller frees. */
static inline float *ops_randn(int64_t n, uint64_t seed, float scale) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    ld_rng r = ld_rng_init(seed);
    for (int64_t i = 0; i < n; i++) p[i] = scale * ld_rng_normal(&r);
    return p;
}

static inline float *ops_copy(const float *src, int64_t n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    memcpy(p, src, (size_t)n * sizeof(float));
    return p;
}

/* max |a - b| / max |b|: the error relative to the scale of the reference output. */
static inline double ops_scaled_err(const float *a, const float *b, int64_t n) {
    double md = 0, mb = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        if (d > md) md = d;
        if (fabs((double)b[i]) > mb) mb = fabs((double)b[i]);
    }
    return md / (mb > 0 ? mb : 1.0);
}

/* CHECKs that a (the kernel under test) matches b (the reference) within tol, measured by
 * ops_scaled_err, and names the case on failure (every case with OPS_VERBOSE=1). */
#define OPS_CHECK_CLOSE(what, a, b, n, tol, ...)                                            \
    do {                                                                                  \
        double e_ = ops_scaled_err((a), (b), (n));                                        \
        if (getenv("OPS_VERBOSE")) {                                                      \
            fprintf(stderr, "  %s ", (what));                                             \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, ": scaled error %.3g (tol %.3g)\n", e_, (double)(tol));        \
        }                                                                                 \
        if (!(e_ <= (tol))) {                                                             \
            fprintf(stderr, "  %s:%d: %s ", __FILE__, __LINE__, (what));                   \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, ": scaled error %.3g > %.3g\n", e_, (double)(tol));            \
            ld_test_failed_ = 1;                                                          \
        }                                                                                 \
    } while (0)

/* Per-element relative error with a floor, for pointwise ops. */
#define OPS_CHECK_REL(what, a, b, n, floor_, tol, ...)                                      \
    do {                                                                                  \
        double e_ = ld_test_max_rel_err((a), (b), (long)(n), (floor_));                   \
        if (getenv("OPS_VERBOSE")) {                                                      \
            fprintf(stderr, "  %s ", (what));                                             \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, ": relative error %.3g (tol %.3g)\n", e_, (double)(tol));      \
        }                                                                                 \
        if (!(e_ <= (tol))) {                                                             \
            fprintf(stderr, "  %s:%d: %s ", __FILE__, __LINE__, (what));                   \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, ": relative error %.3g > %.3g\n", e_, (double)(tol));          \
            ld_test_failed_ = 1;                                                          \
        }                                                                                 \
    } while (0)

#define OPS_CHECK_SAME(what, a, b, bytes, ...)                                              \
    do {                                                                                  \
        if (memcmp((a), (b), (bytes)) != 0) {                                             \
            fprintf(stderr, "  %s:%d: %s ", __FILE__, __LINE__, (what));                   \
            fprintf(stderr, __VA_ARGS__);                                                 \
            fprintf(stderr, ": not bit-identical\n");                                     \
            ld_test_failed_ = 1;                                                          \
        }                                                                                 \
    } while (0)

#endif

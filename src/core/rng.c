/* core/rng.c — counter-based random numbers: value i of stream `seed` is a hash of both. */
#include <math.h>

#include "liandan/core.h"

/* splitmix64's output function applied to a Weyl sequence keyed by the seed. */
uint64_t ld_rng_at(uint64_t seed, uint64_t i) {
    uint64_t z = (seed ^ 0x2545F4914F6CDD1DULL) * 0xD1B54A32D192ED03ULL + (i + 1) * 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

ld_rng ld_rng_init(uint64_t seed) {
    ld_rng r = {seed, 0};
    return r;
}

uint64_t ld_rng_u64(ld_rng *r) {
    return ld_rng_at(r->seed, r->counter++);
}

float ld_rng_uniform(ld_rng *r) {
    return (float)(ld_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t ld_rng_below(ld_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    for (;;) {
        uint64_t x = ld_rng_u64(r);
        if (x < limit) return x % n;
    }
}

float ld_rng_normal(ld_rng *r) {
    double u1 = ((double)(ld_rng_u64(r) >> 11) + 1.0) * (1.0 / 9007199254740993.0);
    double u2 = (double)(ld_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

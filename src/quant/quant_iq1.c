/* quant/quant_iq1.c — the 1.5- and 1.75-bit i-quants IQ1_S and IQ1_M: reference
 * dequantization (bit-exact GGML semantics), reference dots with Q8_K activations and the
 * levels form for the int8 GEMM.
 *
 * Both code 8 weights as a point of the ternary grid ld_iq1s_grid (11-bit index) shifted by
 * delta = +-1/8, and scale 16 or 32 weights by d * (2 ls + 1) with a 3-bit ls:
 *   value = d * (2 ls + 1) * (grid + delta)                       (GGML's order of operations)
 * IQ1_S: index k (of 32) = qs[k] | bits 3(k%4).. of qh[k/4] << 8; per 32 weights qh[b] bits
 *   12..14 are ls and bit 15 the sign of delta.
 * IQ1_M: index k = qs[k] | 3 bits of qh[k/2] (bits 0..2 for even k, 4..6 for odd) << 8, and
 *   the next bit (3 or 7) the sign of that 8's delta; ls of 16 weights g = bits 3(g%4)..
 *   of the 16-bit scale word g/4; the fp16 d is the top nibbles of the four scale words
 *   (word w's bits 12..15 are bits 4w..4w+3 of d). */
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

/* A super-block unpacked: the grid point of each 8 weights k (its bytes, int8 -1..1, weight
 * 8k + j in byte j), delta sign (+1/-1) per 8 weights, ls per 16 weights, and d. */
typedef struct iq1_unpacked {
    uint64_t g8[32];
    int8_t dsign[32];
    uint8_t ls[16];
    float d;
} iq1_unpacked;

static inline void put_grid(iq1_unpacked *u, int k, int idx) {
    u->g8[k] = ld_iq1s_grid[idx];
}
/* The grid value (-1..1) of weight e. */
static inline int grid_at(const iq1_unpacked *u, int e) {
    return (int8_t)(uint8_t)(u->g8[e / 8] >> (8 * (e % 8)));
}

static void unpack_iq1_s(const void *blk, iq1_unpacked *u) {
    const ld_block_iq1_s *b = blk;
    u->d = ld_fp16_to_fp32(b->d);
    for (int k = 0; k < 32; k++) {
        const uint16_t h = b->qh[k / 4];
        put_grid(u, k, b->qs[k] | ((h >> (3 * (k % 4))) & 7) << 8);
        u->dsign[k] = h & 0x8000 ? -1 : 1;
    }
    for (int g = 0; g < 16; g++) u->ls[g] = (b->qh[g / 2] >> 12) & 7;
}

static void unpack_iq1_m(const void *blk, iq1_unpacked *u) {
    const ld_block_iq1_m *b = blk;
    uint16_t sc[4];
    memcpy(sc, b->scales, 8);
    const uint16_t d16 = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
    u->d = ld_fp16_to_fp32(d16);
    for (int k = 0; k < 32; k++) {
        const int h = (b->qh[k / 2] >> (4 * (k % 2))) & 0xF;
        put_grid(u, k, b->qs[k] | (h & 7) << 8);
        u->dsign[k] = h & 8 ? -1 : 1;
    }
    for (int g = 0; g < 16; g++) u->ls[g] = (sc[g / 4] >> (3 * (g % 4))) & 7;
}

typedef struct iq1_format {
    size_t block_bytes;
    void (*unpack)(const void *blk, iq1_unpacked *u);
    int group; /* weights per scale in the levels form */
} iq1_format;
static const iq1_format IQ1_S = {sizeof(ld_block_iq1_s), unpack_iq1_s, 32};
static const iq1_format IQ1_M = {sizeof(ld_block_iq1_m), unpack_iq1_m, 16};

static void dequantize(const iq1_format *f, const void *x, float *y, int64_t n) {
    iq1_unpacked u;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        f->unpack((const uint8_t *)x + i * f->block_bytes, &u);
        for (int e = 0; e < LD_QK_K; e++) {
            const float dl = u.d * (float)(2 * u.ls[e / 16] + 1);
            const float delta = u.dsign[e / 8] < 0 ? -LD_IQ1_DELTA : LD_IQ1_DELTA;
            *y++ = dl * ((float)grid_at(&u, e) + delta);
        }
    }
}

/* Per 16 weights: (2 ls + 1) * (8 * sum(grid * q) + sum over its two 8s of dsign * sum(q)),
 * exact in int32; the float sum is scaled by 1/8 at the end. */
static float dot(const iq1_format *f, int64_t n, const void *w, const void *a_) {
    const ld_block_q8_K *a = a_;
    iq1_unpacked u;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, a++) {
        f->unpack((const uint8_t *)w + i * f->block_bytes, &u);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) {
            int32_t s = 0;
            for (int k = 2 * g; k < 2 * g + 2; k++) {
                int32_t sg = 0, sq = 0;
                for (int e = 8 * k; e < 8 * k + 8; e++) sg += grid_at(&u, e) * a->qs[e], sq += a->qs[e];
                s += 8 * sg + u.dsign[k] * sq;
            }
            isum += (2 * u.ls[g] + 1) * s;
        }
        sum = fmaf(u.d * a->d, (float)isum, sum);
    }
    return sum * 0.125f;
}

/* Levels form: L = 8 * grid + 8 * delta + 9 (0..18, zero point 9), s = d * (2 ls + 1) / 8.
 * 8 weights at a time: grid + 1 (bytes 0..2, added without carries between bytes), times 8,
 * plus dsign + 1 (0 or 2): every byte stays below 19. */
static void levels(const iq1_format *f, const void *w, int64_t n, uint8_t *L, float *s) {
    iq1_unpacked u;
    const uint64_t ones = 0x0101010101010101ull, low7 = 0x7F7F7F7F7F7F7F7Full;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        f->unpack((const uint8_t *)w + i * f->block_bytes, &u);
        for (int k = 0; k < 32; k++) {
            const uint64_t p = u.g8[k];
            const uint64_t g1 = ((p & low7) + ones) ^ (p & ~low7); /* bytewise grid + 1: -1, 0, 1 -> 0, 1, 2 */
            const uint64_t v = (g1 << 3) + (uint64_t)(u.dsign[k] + 1) * ones;
            for (int j = 0; j < 8; j++) L[i * LD_QK_K + 8 * k + j] = (uint8_t)(v >> (8 * j));
        }
        for (int g = 0; g < LD_QK_K / f->group; g++)
            s[i * (LD_QK_K / f->group) + g] = u.d * (float)(2 * u.ls[g * f->group / 16] + 1) * 0.125f;
    }
}

void ld_dequantize_row_iq1_s(const void *x, float *y, int64_t n) {
    dequantize(&IQ1_S, x, y, n);
}
void ld_dequantize_row_iq1_m(const void *x, float *y, int64_t n) {
    dequantize(&IQ1_M, x, y, n);
}
float ld_vec_dot_iq1_s_q8_K_ref(int64_t n, const void *w, const void *a) {
    return dot(&IQ1_S, n, w, a);
}
float ld_vec_dot_iq1_m_q8_K_ref(int64_t n, const void *w, const void *a) {
    return dot(&IQ1_M, n, w, a);
}
void ld_levels_row_iq1_s(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    levels(&IQ1_S, w, n, L, s);
}
void ld_levels_row_iq1_m(const void *w, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    levels(&IQ1_M, w, n, L, s);
}

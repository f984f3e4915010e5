/* quant/quant_iq23.c — the 2- and 3-bit i-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS and IQ3_S:
 * reference dequantization (bit-exact GGML semantics), reference dots with Q8_K activations
 * and the levels form for the int8 GEMM.
 *
 * Each format codes 8 weights (IQ2) or 2 x 4 weights (IQ3) as a point of its grid
 * (quant_grids.c) with 8 sign bits, and scales 32 (or 16) weights by an odd multiple of the
 * super-block scale. One table row per format says where those fields live (an unpack
 * function to magnitudes, signs and 4-bit scale indices ls) and how ls becomes a float:
 *   IQ2_*:   db = d * (0.5 + ls) * 0.25     (= d * (2 ls + 1) / 8)
 *   IQ3_XXS: db = d * (0.5 + ls) * 0.5      (= d * (2 ls + 1) / 4)
 *   IQ3_S:   db = d * (1 + 2 ls)
 * and value = db * grid * sign, evaluated in that order as GGML does. The bit fields are in
 * docs/formats/quant-blocks.md. */
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

/* A super-block unpacked, per 8 weights k: their magnitudes as the bytes of mag8[k] (weight
 * 8k + j in byte j) and their signs as the bits of neg8[k] (bit j set = weight 8k + j is
 * negative); ls per 16 weights. */
typedef struct iq_unpacked {
    uint64_t mag8[LD_QK_K / 8];
    uint8_t neg8[LD_QK_K / 8], ls[16];
} iq_unpacked;

static inline void put8(iq_unpacked *u, int e0, uint64_t grid8, uint8_t signs) {
    u->mag8[e0 / 8] = grid8, u->neg8[e0 / 8] = signs;
}
static inline int mag_at(const iq_unpacked *u, int e) {
    return (int)(u->mag8[e / 8] >> (8 * (e % 8))) & 0xFF;
}
static inline int neg_at(const iq_unpacked *u, int e) {
    return (u->neg8[e / 8] >> (e % 8)) & 1;
}

static inline uint32_t u32_at(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* IQ2_XXS, per 32 weights: words qs[4b], qs[4b+1] = four 8-bit grid indices; qs[4b+2],
 * qs[4b+3] = four 7-bit sign codes (bits 7l..7l+6) and ls (bits 28..31). */
static void unpack_iq2_xxs(const void *blk, iq_unpacked *u) {
    const ld_block_iq2_xxs *b = blk;
    for (int ib = 0; ib < 8; ib++) {
        const uint32_t idx = b->qs[4 * ib] | (uint32_t)b->qs[4 * ib + 1] << 16;
        const uint32_t sg = b->qs[4 * ib + 2] | (uint32_t)b->qs[4 * ib + 3] << 16;
        for (int l = 0; l < 4; l++)
            put8(u, 32 * ib + 8 * l, ld_iq2xxs_grid[(idx >> (8 * l)) & 255], ld_ksigns_iq2xs[(sg >> (7 * l)) & 127]);
        u->ls[2 * ib] = u->ls[2 * ib + 1] = (uint8_t)(sg >> 28);
    }
}

/* IQ2_XS: per 8 weights a 16-bit word, 9-bit grid index and 7-bit sign code; ls per 16 in
 * the nibbles of scales[]. */
static void unpack_iq2_xs(const void *blk, iq_unpacked *u) {
    const ld_block_iq2_xs *b = blk;
    for (int k = 0; k < 32; k++) put8(u, 8 * k, ld_iq2xs_grid[b->qs[k] & 511], ld_ksigns_iq2xs[b->qs[k] >> 9]);
    for (int g = 0; g < 16; g++) u->ls[g] = (b->scales[g / 2] >> (4 * (g % 2))) & 0xF;
}

/* IQ2_S: index of 8 weights k = qs[k] | 2 bits of qh[k/4] (bits 2(k%4)..), explicit signs in
 * qs[32 + k]; ls as IQ2_XS. */
static void unpack_iq2_s(const void *blk, iq_unpacked *u) {
    const ld_block_iq2_s *b = blk;
    for (int k = 0; k < 32; k++) {
        const int idx = b->qs[k] | ((b->qh[k / 4] >> (2 * (k % 4))) & 3) << 8;
        put8(u, 8 * k, ld_iq2s_grid[idx], b->qs[32 + k]);
    }
    for (int g = 0; g < 16; g++) u->ls[g] = (b->scales[g / 2] >> (4 * (g % 2))) & 0xF;
}

/* IQ3_XXS: qs[0..63] = 8-bit indices of 4-vectors (2 per 8 weights); per 32 weights the
 * word at qs[64 + 4b] has four 7-bit sign codes and ls (bits 28..31). */
static void unpack_iq3_xxs(const void *blk, iq_unpacked *u) {
    const ld_block_iq3_xxs *b = blk;
    for (int ib = 0; ib < 8; ib++) {
        const uint32_t sg = u32_at(b->qs + 64 + 4 * ib);
        for (int l = 0; l < 4; l++) {
            const int k = 4 * ib + l;
            const uint64_t g8 = ld_iq3xxs_grid[b->qs[2 * k]] | (uint64_t)ld_iq3xxs_grid[b->qs[2 * k + 1]] << 32;
            put8(u, 8 * k, g8, ld_ksigns_iq2xs[(sg >> (7 * l)) & 127]);
        }
        u->ls[2 * ib] = u->ls[2 * ib + 1] = (uint8_t)(sg >> 28);
    }
}

/* IQ3_S: 4-vector index h (0..63) = qs[h] | bit h%8 of qh[h/8] << 8; explicit signs, one byte
 * per 8 weights; ls per 32 in the nibbles of scales[]. */
static void unpack_iq3_s(const void *blk, iq_unpacked *u) {
    const ld_block_iq3_s *b = blk;
    for (int k = 0; k < 32; k++) {
        uint64_t g8 = 0;
        for (int h = 2 * k; h < 2 * k + 2; h++)
            g8 |= (uint64_t)ld_iq3s_grid[b->qs[h] | ((b->qh[h / 8] >> (h % 8)) & 1) << 8] << (32 * (h - 2 * k));
        put8(u, 8 * k, g8, b->signs[k]);
    }
    for (int g = 0; g < 16; g++) u->ls[g] = (b->scales[g / 4] >> (4 * ((g / 2) % 2))) & 0xF;
}

typedef enum { SCALE_HALF_QUARTER, SCALE_HALF_HALF, SCALE_ODD } iq_scale_kind;

typedef struct iq_format {
    size_t block_bytes;
    void (*unpack)(const void *blk, iq_unpacked *u);
    iq_scale_kind scale;
    float dot_factor; /* db = d * (2 ls + 1) * dot_factor */
    int zp;           /* levels form: L = zp + signed grid value */
} iq_format;

static const iq_format IQ2_XXS = {sizeof(ld_block_iq2_xxs), unpack_iq2_xxs, SCALE_HALF_QUARTER, 0.125f, 43};
static const iq_format IQ2_XS = {sizeof(ld_block_iq2_xs), unpack_iq2_xs, SCALE_HALF_QUARTER, 0.125f, 43};
static const iq_format IQ2_S = {sizeof(ld_block_iq2_s), unpack_iq2_s, SCALE_HALF_QUARTER, 0.125f, 43};
static const iq_format IQ3_XXS = {sizeof(ld_block_iq3_xxs), unpack_iq3_xxs, SCALE_HALF_HALF, 0.25f, 62};
static const iq_format IQ3_S = {sizeof(ld_block_iq3_s), unpack_iq3_s, SCALE_ODD, 1.0f, 15};

static inline float block_scale(const iq_format *f, float d, int ls) {
    switch (f->scale) {
    case SCALE_HALF_QUARTER: return d * (0.5f + (float)ls) * 0.25f;
    case SCALE_HALF_HALF: return d * (0.5f + (float)ls) * 0.5f;
    default: return d * (float)(1 + 2 * ls);
    }
}

/* Every format starts with its fp16 d. */
static inline float block_d(const uint8_t *blk) {
    uint16_t h;
    memcpy(&h, blk, 2);
    return ld_fp16_to_fp32(h);
}

static void dequantize(const iq_format *f, const void *x, float *y, int64_t n) {
    iq_unpacked u;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const uint8_t *b = (const uint8_t *)x + i * f->block_bytes;
        f->unpack(b, &u);
        const float d = block_d(b);
        for (int g = 0; g < 16; g++) {
            const float db = block_scale(f, d, u.ls[g]);
            for (int e = 16 * g; e < 16 * g + 16; e++) *y++ = db * (float)mag_at(&u, e) * (neg_at(&u, e) ? -1.0f : 1.0f);
        }
    }
}

static float dot(const iq_format *f, int64_t n, const void *w, const void *a_) {
    const ld_block_q8_K *a = a_;
    iq_unpacked u;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / LD_QK_K; i++, a++) {
        const uint8_t *b = (const uint8_t *)w + i * f->block_bytes;
        f->unpack(b, &u);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) {
            int32_t s = 0;
            for (int e = 16 * g; e < 16 * g + 16; e++) s += (neg_at(&u, e) ? -mag_at(&u, e) : mag_at(&u, e)) * a->qs[e];
            isum += (2 * u.ls[g] + 1) * s;
        }
        sum = fmaf(block_d(b) * a->d, (float)isum, sum);
    }
    return sum * f->dot_factor;
}

/* Bit j of `bits` set -> byte j of the result 0xFF, else 0. */
static inline uint64_t byte_mask8(uint8_t bits) {
    const uint64_t x = (bits * 0x0101010101010101ull) & 0x8040201008040201ull; /* byte j: bit j alone */
    return ((((x + 0x7F7F7F7F7F7F7F7Full) | x) & 0x8080808080808080ull) >> 7) * 0xFF; /* 0 or 1 per byte, times 0xFF */
}

/* Levels form, one scale per `group` (16 or 32) weights. L = zp + signed magnitude, 8 bytes
 * at a time: every magnitude is <= zp and zp + magnitude < 256, so the bytewise sums
 * zp + mag and differences zp - mag neither carry nor borrow into the next byte. */
static void levels(const iq_format *f, int group, const void *w, int64_t n, uint8_t *L, float *s) {
    iq_unpacked u;
    const uint64_t Z = (uint64_t)f->zp * 0x0101010101010101ull;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const uint8_t *b = (const uint8_t *)w + i * f->block_bytes;
        f->unpack(b, &u);
        for (int k = 0; k < LD_QK_K / 8; k++) {
            const uint64_t m = byte_mask8(u.neg8[k]), v = ((Z + u.mag8[k]) & ~m) | ((Z - u.mag8[k]) & m);
            for (int j = 0; j < 8; j++) L[i * LD_QK_K + 8 * k + j] = (uint8_t)(v >> (8 * j)); /* one store (GCC merges) */
        }
        const float d = block_d(b);
        for (int g = 0; g < LD_QK_K / group; g++)
            s[i * (LD_QK_K / group) + g] = block_scale(f, d, u.ls[g * group / 16]);
    }
}

#define IQ_ENTRY_POINTS(name, F, group)                                                   \
    void ld_dequantize_row_##name(const void *x, float *y, int64_t n) {                  \
        dequantize(&F, x, y, n);                                                           \
    }                                                                                      \
    float ld_vec_dot_##name##_q8_K_ref(int64_t n, const void *w, const void *a) {        \
        return dot(&F, n, w, a);                                                           \
    }                                                                                      \
    void ld_levels_row_##name(const void *w, int64_t n, uint8_t *L, float *s, float *o) { \
        (void)o;                                                                           \
        levels(&F, group, w, n, L, s);                                                     \
    }
IQ_ENTRY_POINTS(iq2_xxs, IQ2_XXS, 32)
IQ_ENTRY_POINTS(iq2_xs, IQ2_XS, 16)
IQ_ENTRY_POINTS(iq2_s, IQ2_S, 16)
IQ_ENTRY_POINTS(iq3_xxs, IQ3_XXS, 32)
IQ_ENTRY_POINTS(iq3_s, IQ3_S, 32)

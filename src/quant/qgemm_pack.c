/* quant/qgemm_pack.c — the compact prepacked panel forms of the int8 GEMM (quant/qgemm.h,
 * ld_qpanel_form) and their packers: plain C, run once when weights are prepacked
 * (ld_qpack), the same bytes for every ISA's kernels.
 *
 * Byte-per-level panels would double what a decode step reads for the 4-6 bit types, so
 * these forms keep the levels at their own width in the panel's interleaved order: every
 * form is a run of units along K, each unit holding, for the panel's 48 columns, the
 * block's scales and then per activation group
 *   lo[G/8 pairs][3 chunks][16 columns][4 bytes]   a pair's byte holds the low 4 bits of
 *                                                   k-step 2p (low nibble) and 2p+1 (high)
 *   hi[3 chunks][16 columns][4 bytes]              (Q5_K, Q6_K) byte t of a column holds
 *                                                   the top bits of element t of every
 *                                                   k-step: bit s (Q5_K) or bits 2s, 2s+1
 *                                                   (Q6_K) for k-step s
 * where a k-step is 4 consecutive k of one column (one vpdpbusd / vpmaddubsw word), so a
 * kernel rebuilds two k-steps' levels from one load with a mask and a shift (and ors in the
 * top bits). Units (all offsets in bytes, NR = 48 columns):
 *   Q4_K  256 of K, 7104 bytes (4.625 bits a weight; Q4_K 4.5):
 *         d[48] dmin[48] fp16, sc[8][48] m[8][48] (6-bit, a byte each), 8 groups x lo (768)
 *   Q5_K  256 of K, 8640 bytes (5.625; Q5_K 5.5): Q4_K's header, 8 groups x (lo 768, hi 192)
 *   Q6_K  256 of K, 10080 bytes (6.5625, as Q6_K): d[48] fp16, sc[16][48] int8,
 *         16 groups of 16 x (lo 384, hi 192)
 *   Q4_0  32 of K, 864 bytes (4.5, as Q4_0): lo (768), d[48] fp16
 * Kernels rebuild each group's scale (d * sc, or d) and offset (-(dmin * m)) exactly as the
 * scalar levels form does, so they give the reference's bits. */
#include <string.h>

#include "quant/qgemm.h"

#define NR LD_QGEMM_NR

const ld_qpanel_unit LD_QPANEL_UNITS[LD_QPANEL_COUNT] = {
    [LD_QPANEL_BYTES] = {0, 0}, /* per group: ld_qgemm_group_bytes */
    [LD_QPANEL_Q4_K] = {LD_QK_K, LD_QGEMM_K4_SB_BYTES},
    [LD_QPANEL_Q5_K] = {LD_QK_K, LD_QGEMM_K5_SB_BYTES},
    [LD_QPANEL_Q6_K] = {LD_QK_K, LD_QGEMM_K6_SB_BYTES},
    [LD_QPANEL_Q4_0] = {LD_QK4_0, LD_QGEMM_Q40_BYTES},
};

/* The byte of column c, element t (0..3) of a k-step, in a [3 chunks][16 columns][4 bytes]
 * row of k-steps. */
static size_t col_byte(int c, int t) {
    return (size_t)(c / 16) * 64 + (size_t)(c % 16) * 4 + (size_t)t;
}

/* One group of G levels (G = 32 or 16) of column c: the low 4 bits into lo, two k-steps a
 * byte (k-step 2p in the low nibble, 2p + 1 in the high), and, when hbits is 1 or 2, the top
 * bits into hi: byte t of the column holds element t of every k-step s at bit hbits * s. A
 * k-step's 4 levels are one little-endian word, handled at once (a load runs through here
 * once per weight). */
static uint32_t word(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void put_group(uint8_t *lo, uint8_t *hi, int hbits, int c, int G, const uint8_t *L) {
    for (int p = 0; p < G / 8; p++) {
        const uint32_t v = (word(L + 8 * p) & 0x0F0F0F0Fu) | (word(L + 8 * p + 4) & 0x0F0F0F0Fu) << 4;
        memcpy(lo + (size_t)p * NR * 4 + col_byte(c, 0), &v, 4);
    }
    if (!hbits) return;
    const uint32_t top = hbits == 1 ? 0x01010101u : 0x03030303u;
    uint32_t v = 0;
    for (int s = 0; s < G / 4; s++) v |= (word(L + 4 * s) >> 4 & top) << (hbits * s);
    memcpy(hi + col_byte(c, 0), &v, 4);
}

/* Q4_K / Q5_K share the header: fp16 d and dmin, then the 6-bit scales and mins. */
static void k_header(uint8_t *u, int c, uint16_t d, uint16_t dmin, const uint8_t *scales) {
    memcpy(u + 2 * c, &d, 2);
    memcpy(u + 2 * NR + 2 * c, &dmin, 2);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        ld_q4_K_scale_min(scales, j, &sc, &m);
        u[4 * NR + j * NR + c] = (uint8_t)sc;
        u[12 * NR + j * NR + c] = (uint8_t)m;
    }
}

static void pack_q4_K(const uint8_t *w, int c, int64_t unit, uint8_t *u) {
    const ld_block_q4_K *b = (const ld_block_q4_K *)w + unit;
    k_header(u, c, b->d, b->dmin, b->scales);
    uint8_t L[LD_QK_K];
    ld_block_levels_q4_K(b, L);
    for (int g = 0; g < 8; g++) put_group(u + 960 + (size_t)g * 768, NULL, 0, c, 32, L + 32 * g);
}

static void pack_q5_K(const uint8_t *w, int c, int64_t unit, uint8_t *u) {
    const ld_block_q5_K *b = (const ld_block_q5_K *)w + unit;
    k_header(u, c, b->d, b->dmin, b->scales);
    uint8_t L[LD_QK_K];
    ld_block_levels_q5_K(b, L);
    for (int g = 0; g < 8; g++) put_group(u + 960 + (size_t)g * 960, u + 960 + (size_t)g * 960 + 768, 1, c, 32, L + 32 * g);
}

static void pack_q6_K(const uint8_t *w, int c, int64_t unit, uint8_t *u) {
    const ld_block_q6_K *b = (const ld_block_q6_K *)w + unit;
    memcpy(u + 2 * c, &b->d, 2);
    for (int g = 0; g < 16; g++) u[2 * NR + g * NR + c] = (uint8_t)b->scales[g];
    uint8_t L[LD_QK_K];
    ld_block_levels_q6_K(b, L);
    for (int g = 0; g < 16; g++) put_group(u + 864 + (size_t)g * 576, u + 864 + (size_t)g * 576 + 384, 2, c, 16, L + 16 * g);
}

static void pack_q4_0(const uint8_t *w, int c, int64_t unit, uint8_t *u) {
    const ld_block_q4_0 *b = (const ld_block_q4_0 *)w + unit;
    uint8_t L[LD_QK4_0];
    for (int j = 0; j < LD_QK4_0 / 2; j++) L[j] = b->qs[j] & 0xF, L[j + 16] = b->qs[j] >> 4;
    put_group(u, NULL, 0, c, LD_QK4_0, L);
    memcpy(u + 768 + 2 * c, &b->d, 2);
}

static void (*const PACK[LD_QPANEL_COUNT])(const uint8_t *, int, int64_t, uint8_t *) = {
    [LD_QPANEL_Q4_K] = pack_q4_K, [LD_QPANEL_Q5_K] = pack_q5_K,
    [LD_QPANEL_Q6_K] = pack_q6_K, [LD_QPANEL_Q4_0] = pack_q4_0,
};

void ld_qgemm_pack_compact(ld_qpanel_form form, const uint8_t *W, size_t wrow, int64_t n0, int nc, int64_t K,
                           uint8_t *panel) {
    const ld_qpanel_unit *un = &LD_QPANEL_UNITS[form];
    const int64_t units = K / un->k;
    memset(panel, 0, (size_t)units * un->bytes); /* padding columns stay zero */
    for (int c = 0; c < nc; c++)
        for (int64_t i = 0; i < units; i++) PACK[form](W + (size_t)(n0 + c) * wrow, c, i, panel + (size_t)i * un->bytes);
}

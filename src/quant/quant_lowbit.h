/* quant/quant_lowbit.h — GGML's 1-3 bit and non-linear 4-bit weight formats (library-internal):
 * the K-quants Q2_K and Q3_K, the ternary TQ1_0 and TQ2_0, the i-quants IQ1_S, IQ1_M,
 * IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, and the non-linear IQ4_NL and IQ4_XS.
 *
 * Every struct is byte-for-byte the GGML block of the same name (docs/formats/quant-blocks.md
 * describes each layout), so rows read from a GGUF file are used in place. Included by
 * quant_blocks.h; the traits table (quant.c) has one row per type. */
#ifndef LD_QUANT_LOWBIT_H
#define LD_QUANT_LOWBIT_H

#include <stddef.h>
#include <stdint.h>

#include "liandan/tensor.h"

/* Q2_K: 16 groups of 16; scales[g] = 4-bit scale | 4-bit min << 4; 2-bit q;
 * value = d*sc*q - dmin*m. */
typedef struct {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
} ld_block_q2_K;

/* Q3_K: 16 groups of 16 with 6-bit scales (sc - 32); 3-bit q = 2 low bits in qs and a high
 * bit in hmask; value = d*(sc - 32)*(q - 4). */
typedef struct {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
} ld_block_q3_K;

/* TQ1_0: ternary, 5 weights per byte of qs (base 3) and 4 per byte of qh; value = d*(t - 1). */
typedef struct {
    uint8_t qs[48];
    uint8_t qh[4];
    uint16_t d;
} ld_block_tq1_0;

/* TQ2_0: ternary in 2 bits; value = d*(t - 1). */
typedef struct {
    uint8_t qs[64];
    uint16_t d;
} ld_block_tq2_0;

/* IQ2_XXS: per 32 weights two 32-bit words: 4 grid indices (8 bits), 4 x 7 sign bits and a
 * 4-bit scale; value = d*(0.5 + s)*0.25 * grid * sign. */
typedef struct {
    uint16_t d;
    uint16_t qs[32];
} ld_block_iq2_xxs;

/* IQ2_XS: per 8 weights a 16-bit word (9-bit grid index, 7 sign bits); a 4-bit scale per 16. */
typedef struct {
    uint16_t d;
    uint16_t qs[32];
    uint8_t scales[8];
} ld_block_iq2_xs;

/* IQ2_S: 10-bit grid indices (qs + 2 bits in qh), 8 explicit sign bits per 8 weights (the
 * second half of qs), a 4-bit scale per 16. */
typedef struct {
    uint16_t d;
    uint8_t qs[64];
    uint8_t qh[8];
    uint8_t scales[8];
} ld_block_iq2_s;

/* IQ3_XXS: 8-bit indices into a grid of 4-vectors (qs[0..63]), then per 32 weights a 32-bit
 * word of 4 x 7 sign bits and a 4-bit scale; value = d*(0.5 + s)*0.5 * grid * sign. */
typedef struct {
    uint16_t d;
    uint8_t qs[96];
} ld_block_iq3_xxs;

/* IQ3_S: 9-bit indices (qs + a bit in qh), explicit sign bits, a 4-bit scale per 32;
 * value = d*(1 + 2s) * grid * sign. */
typedef struct {
    uint16_t d;
    uint8_t qs[64];
    uint8_t qh[8];
    uint8_t signs[32];
    uint8_t scales[4];
} ld_block_iq3_s;

/* IQ1_S: 11-bit indices into a grid of ternary 8-vectors (qs + 3 bits per index in qh);
 * per 32 weights qh also holds a 3-bit scale (bits 12-14) and the sign of delta (bit 15);
 * value = d*(2s + 1) * (grid + delta), |delta| = 1/8. */
typedef struct {
    uint16_t d;
    uint8_t qs[32];
    uint16_t qh[8];
} ld_block_iq1_s;

/* IQ1_M: as IQ1_S with a delta sign per 8 weights, 3-bit scales per 16 weights, and the
 * fp16 super-block scale spread over the top 4 bits of the four 16-bit scale words. */
typedef struct {
    uint8_t qs[32];
    uint8_t qh[16];
    uint8_t scales[8];
} ld_block_iq1_m;

/* IQ4_NL: 32 weights, 4-bit indices into 16 non-linear levels; value = d * level. */
typedef struct {
    uint16_t d;
    uint8_t qs[16];
} ld_block_iq4_nl;

/* IQ4_XS: IQ4_NL's levels in super-blocks of 256 with a 6-bit scale per 32 (ls - 32):
 * 4 low bits in scales_l, 2 high bits in scales_h. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
} ld_block_iq4_xs;

/* ---- grids and level tables (quant_grids.c) -------------------------------------------- */
extern const uint64_t ld_iq2xxs_grid[256], ld_iq2xs_grid[512], ld_iq2s_grid[1024], ld_iq1s_grid[2048];
extern const uint32_t ld_iq3xxs_grid[256], ld_iq3s_grid[512];
extern const uint8_t ld_ksigns_iq2xs[128]; /* 7 sign bits -> 8 (even number of minus signs) */
extern const uint64_t ld_ksigns64[128];    /* the same as 8 bytes, 0xFF where minus */
extern const int8_t ld_kvalues_iq4nl[16];
#define LD_IQ1_DELTA 0.125f

/* ---- scalar reference codecs and dots -------------------------------------------------
 * Same contracts as quant_blocks.h: n is a multiple of the block size; dots take one
 * weight row and one activation row (Q8_K blocks; Q8_0 for IQ4_NL). Every dot sums the
 * products of each super-block (block for IQ4_NL) exactly in int32 and adds that sum into
 * the float result with one fmaf per super-block, in order, so an optimized kernel that
 * computes the same integer sums is bit-identical to the reference. */
#define LD_LOWBIT_TYPES(X)                                                                          \
    X(q2_K, q8_K) X(q3_K, q8_K) X(tq1_0, q8_K) X(tq2_0, q8_K) X(iq2_xxs, q8_K) X(iq2_xs, q8_K)        \
    X(iq2_s, q8_K) X(iq3_xxs, q8_K) X(iq3_s, q8_K) X(iq1_s, q8_K) X(iq1_m, q8_K) X(iq4_nl, q8_0)       \
    X(iq4_xs, q8_K)
#define LD_LOWBIT_DECL_(w, a)                                                                       \
    void ld_dequantize_row_##w(const void *x, float *y, int64_t n);                                 \
    float ld_vec_dot_##w##_##a##_ref(int64_t n, const void *w_, const void *a_);                    \
    float ld_vec_dot_##w##_##a##_avx2(int64_t n, const void *w_, const void *a_);                   \
    void ld_levels_row_##w(const void *w_, int64_t n, uint8_t *L, float *s, float *o);
LD_LOWBIT_TYPES(LD_LOWBIT_DECL_)
#undef LD_LOWBIT_DECL_

/* The scale of group g (0..15) of a Q3_K block's scales[12], minus 32 (-32 .. 31). */
int ld_q3_K_scale(const uint8_t *scales, int g);

/* Quantizers (x: n floats, w: NULL or n importance weights). */
void ld_quantize_row_q2_K_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_q3_K_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_iq4_nl_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_iq4_xs_ref(const float *x, void *y, int64_t n, const float *w);
/* The grid i-quants (quant_iq_quantize.c): w is meant to be an importance matrix (ld_quantize
 * refuses these types without one); NULL weighs by x^2 as the K-quants do. */
void ld_quantize_row_iq2_xxs_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_iq2_xs_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_iq2_s_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_iq3_xxs_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_iq3_s_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_iq1_s_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_iq1_m_ref(const float *x, void *y, int64_t n, const float *w);
/* The weight of each of n elements in a quantizer's squared error: with an importance
 * matrix imat_e * sqrt(sigma2 + x_e^2) (sigma2 = sigma_scale * mean x^2), else
 * x_e^2 + sigma2 / 8 (quant_lowbit_quantize.c). */
void ld_quant_element_weights(const float *x, const float *imat, int n, float sigma_scale, float *w);
void ld_quantize_row_tq1_0_ref(const float *x, void *y, int64_t n, const float *w);
void ld_quantize_row_tq2_0_ref(const float *x, void *y, int64_t n, const float *w);

#endif

/* quant/quant_legacy.c — GGML's older 32-element block types that liandan reads but does not
 * write: Q4_1, Q5_0 and Q5_1. llama.cpp's quantizer falls back to them for matrices whose
 * rows are not whole 256-element super-blocks (e.g. Q4_K_M on narrow models), so GGUF files
 * made by llama.cpp contain them; they are decoded to F32 when a model is loaded.
 *
 * Layouts (byte-for-byte GGML's block_q4_1 / block_q5_0 / block_q5_1):
 *   Q4_1: d, m (fp16), qs[16]: element j = qs[j] & 15, element j+16 = qs[j] >> 4; x = q d + m
 *   Q5_0: d (fp16), qh[4], qs[16]: as Q4_1's nibbles plus bit j of the little-endian 32-bit qh
 *         as the fifth bit of element j; x = (q - 16) d
 *   Q5_1: d, m (fp16), qh[4], qs[16]: as Q5_0 with x = q d + m */
#include <string.h>

#include "quant/quant_blocks.h"

typedef struct {
    uint16_t d, m;
    uint8_t qs[16];
} block_q4_1;
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_0;
typedef struct {
    uint16_t d, m;
    uint8_t qh[4];
    uint8_t qs[16];
} block_q5_1;

_Static_assert(sizeof(block_q4_1) == ld_qb_bytes_LD_Q4_1 && ld_qb_bytes_LD_Q4_1 == 20, "Q4_1 block: 20 bytes");
_Static_assert(sizeof(block_q5_0) == ld_qb_bytes_LD_Q5_0 && ld_qb_bytes_LD_Q5_0 == 22, "Q5_0 block: 22 bytes");
_Static_assert(sizeof(block_q5_1) == ld_qb_bytes_LD_Q5_1 && ld_qb_bytes_LD_Q5_1 == 24, "Q5_1 block: 24 bytes");
_Static_assert(ld_qb_block_LD_Q4_1 == 32 && ld_qb_block_LD_Q5_0 == 32 && ld_qb_block_LD_Q5_1 == 32, "32 per block");

/* The 32 unsigned codes of one block: 4 bits from qs, the fifth from qh when given. */
static void codes(const uint8_t qs[16], const uint8_t *qh, int q[32]) {
    uint32_t h = 0;
    if (qh) h = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 15) | (int)((h >> j) & 1) << 4;
        q[j + 16] = (qs[j] >> 4) | (int)((h >> (j + 16)) & 1) << 4;
    }
}

void ld_dequantize_row_q4_1(const void *x, float *y, int64_t n) {
    const block_q4_1 *b = x;
    int q[32];
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = ld_fp16_to_fp32(b[i].d), m = ld_fp16_to_fp32(b[i].m);
        codes(b[i].qs, NULL, q);
        for (int j = 0; j < 32; j++) y[j] = (float)q[j] * d + m;
    }
}

void ld_dequantize_row_q5_0(const void *x, float *y, int64_t n) {
    const block_q5_0 *b = x;
    int q[32];
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = ld_fp16_to_fp32(b[i].d);
        codes(b[i].qs, b[i].qh, q);
        for (int j = 0; j < 32; j++) y[j] = (float)(q[j] - 16) * d;
    }
}

void ld_dequantize_row_q5_1(const void *x, float *y, int64_t n) {
    const block_q5_1 *b = x;
    int q[32];
    for (int64_t i = 0; i < n / 32; i++, y += 32) {
        float d = ld_fp16_to_fp32(b[i].d), m = ld_fp16_to_fp32(b[i].m);
        codes(b[i].qs, b[i].qh, q);
        for (int j = 0; j < 32; j++) y[j] = (float)q[j] * d + m;
    }
}

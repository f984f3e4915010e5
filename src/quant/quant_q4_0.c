/* quant/quant_q4_0.c — Q4_0 (32 4-bit weights + fp16 scale, value (q-8)*d): reference
 * quantize (weighted scale search), dequantize, and the Q4_0 x Q8_0 dot. */
#include <math.h>

#include "quant/quant_blocks.h"

void ld_quantize_row_q4_0_ref(const float *x, void *y, int64_t n, const float *w) {
    ld_block_q4_0 *b = y;
    for (int64_t i = 0; i < n / LD_QK4_0; i++) {
        const float *xb = x + i * LD_QK4_0, *wb = w ? w + i * LD_QK4_0 : NULL;
        uint8_t L[LD_QK4_0];
        float s = ld_quant_search_sym(LD_QK4_0, 8, xb, wb, L);
        b[i].d = ld_fp32_to_fp16(s);
        /* Re-round with the scale as stored (fp16), so levels match what is decoded. */
        float d = ld_fp16_to_fp32(b[i].d), id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < LD_QK4_0; j++) {
            int q = ld_quant_nearest(xb[j] * id) + 8;
            L[j] = (uint8_t)(q < 0 ? 0 : q > 15 ? 15 : q);
        }
        for (int j = 0; j < LD_QK4_0 / 2; j++) b[i].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

void ld_dequantize_row_q4_0(const void *x, float *y, int64_t n) {
    const ld_block_q4_0 *b = x;
    for (int64_t i = 0; i < n / LD_QK4_0; i++) {
        const float d = ld_fp16_to_fp32(b[i].d);
        float *yb = y + i * LD_QK4_0;
        for (int j = 0; j < LD_QK4_0 / 2; j++) {
            const int x0 = (b[i].qs[j] & 0x0F) - 8, x1 = (b[i].qs[j] >> 4) - 8;
            yb[j] = (float)x0 * d;
            yb[j + 16] = (float)x1 * d;
        }
    }
}

/* Levels form (qgemm.c): L = the 4-bit q (zero point 8), s = d. */
void ld_levels_row_q4_0(const void *x, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const ld_block_q4_0 *b = x;
    for (int64_t i = 0; i < n / LD_QK4_0; i++) {
        s[i] = ld_fp16_to_fp32(b[i].d);
        for (int j = 0; j < LD_QK4_0 / 2; j++) {
            L[i * LD_QK4_0 + j] = b[i].qs[j] & 0x0F;
            L[i * LD_QK4_0 + j + 16] = b[i].qs[j] >> 4;
        }
    }
}

float ld_vec_dot_q4_0_q8_0_ref(int64_t n, const void *w, const void *a) {
    const ld_block_q4_0 *x = w;
    const ld_block_q8_0 *q = a;
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK4_0; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < LD_QK4_0 / 2; j++) {
            sumi += ((x[i].qs[j] & 0x0F) - 8) * q[i].qs[j];
            sumi += ((x[i].qs[j] >> 4) - 8) * q[i].qs[j + 16];
        }
        sum += (float)sumi * (ld_fp16_to_fp32(x[i].d) * ld_fp16_to_fp32(q[i].d));
    }
    return sum;
}

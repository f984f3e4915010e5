/* quant/quant_q8_0.c — Q8_0 (32 int8 weights + fp16 scale): reference quantize, dequantize
 * and the Q8_0 x Q8_0 dot; the same block is the activation format of the Q4_0 and Q8_0
 * dots, quantized here by ld_quantize_act_q8_0_ref. */
#include <math.h>

#include "quant/quant_blocks.h"

/* Symmetric absmax quantization of one 32-block: d = amax/127, q = round(x/d). The
 * activation quantizer and the weight quantizer are the same function (Q8_0 has no room
 * for a better search: every level is already used). */
static void q8_0_block(const float *x, ld_block_q8_0 *b) {
    float amax = 0;
    for (int i = 0; i < LD_QK8_0; i++) amax = fmaxf(amax, fabsf(x[i]));
    float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    b->d = ld_fp32_to_fp16(d);
    for (int i = 0; i < LD_QK8_0; i++) {
        int q = ld_quant_nearest(x[i] * id);
        b->qs[i] = (int8_t)(q > 127 ? 127 : q < -127 ? -127 : q);
    }
}

void ld_quantize_act_q8_0_ref(const float *x, void *y, int64_t n) {
    ld_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / LD_QK8_0; i++) q8_0_block(x + i * LD_QK8_0, b + i);
}

void ld_quantize_row_q8_0_ref(const float *x, void *y, int64_t n, const float *w) {
    (void)w;
    ld_quantize_act_q8_0_ref(x, y, n);
}

void ld_dequantize_row_q8_0(const void *x, float *y, int64_t n) {
    const ld_block_q8_0 *b = x;
    for (int64_t i = 0; i < n / LD_QK8_0; i++) {
        const float d = ld_fp16_to_fp32(b[i].d);
        for (int j = 0; j < LD_QK8_0; j++) y[i * LD_QK8_0 + j] = (float)b[i].qs[j] * d;
    }
}

float ld_vec_dot_q8_0_q8_0_ref(int64_t n, const void *w, const void *a) {
    const ld_block_q8_0 *x = w, *q = a;
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK8_0; i++) {
        int32_t sumi = 0;
        for (int j = 0; j < LD_QK8_0; j++) sumi += (int32_t)x[i].qs[j] * q[i].qs[j];
        sum += (float)sumi * (ld_fp16_to_fp32(x[i].d) * ld_fp16_to_fp32(q[i].d));
    }
    return sum;
}

/* Levels form (qgemm.c): L = q + 128 (zero point 128), s = d. */
void ld_levels_row_q8_0(const void *x, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const ld_block_q8_0 *b = x;
    for (int64_t i = 0; i < n / LD_QK8_0; i++) {
        s[i] = ld_fp16_to_fp32(b[i].d);
        for (int j = 0; j < LD_QK8_0; j++) L[i * LD_QK8_0 + j] = (uint8_t)(b[i].qs[j] + 128);
    }
}

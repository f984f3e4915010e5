/* kernels/ref/ref_attention_kv.c — reference attention over keys and values stored in a KV
 * cache's row formats (f32, f16, Q8_0: kernels.h, attention_fwd_kv): the loops of
 * ld_ref_attention_fwd with every key and value read through ld_ref_kv_value, so its result
 * is ld_ref_attention_fwd's on the widened rows, bit for bit. */
#include <math.h>
#include <string.h>

#include "kernels/ref/ref.h"
#include "liandan/tensor.h"

size_t ld_ref_kv_row_bytes(int type, int64_t n) {
    if (type == LD_KV_F16) return (size_t)n * 2;
    if (type == LD_KV_Q8_0) return (size_t)(n / 32) * LD_KV_Q8_0_BLOCK;
    return (size_t)n * 4;
}

float ld_ref_kv_value(const void *rows, int type, size_t row_bytes, int64_t j, int64_t e) {
    const uint8_t *r = (const uint8_t *)rows + (size_t)j * row_bytes;
    if (type == LD_KV_F32) {
        float f;
        memcpy(&f, r + e * 4, 4);
        return f;
    }
    uint16_t h;
    if (type == LD_KV_F16) {
        memcpy(&h, r + e * 2, 2);
        return ld_fp16_to_fp32(h);
    }
    const uint8_t *blk = r + (e / 32) * LD_KV_Q8_0_BLOCK;
    memcpy(&h, blk, 2);
    return (float)(int8_t)blk[2 + e % 32] * ld_fp16_to_fp32(h);
}

/* Keys [*start, end) are visible to query i (kernels.h). */
static int64_t visible(const ld_attn_shape *s, int64_t b, int64_t i, int64_t *start) {
    int64_t end = s->Tk;
    if (s->key_len && s->key_len[b] < end) end = s->key_len[b] < 0 ? 0 : s->key_len[b];
    if (s->causal && s->q_offset + i + 1 < end) end = s->q_offset + i + 1;
    *start = s->window > 0 && s->q_offset + i + 1 - s->window > 0 ? s->q_offset + i + 1 - s->window : 0;
    if (end < *start) end = *start;
    return end;
}

static float score(const ld_attn_shape *s, const float *q, const void *k, int kt, size_t kr, int64_t b, int64_t h,
                   int64_t i, int64_t j) {
    const int64_t D = s->D, hk = h / (s->Hq / s->Hkv);
    const float *qi = q + ((b * s->Tq + i) * s->Hq + h) * D;
    float dot = 0;
    for (int64_t d = 0; d < D; d++) dot += qi[d] * ld_ref_kv_value(k, kt, kr, b * s->Tk + j, hk * D + d);
    dot *= s->scale;
    return s->softcap > 0 ? (float)((double)s->softcap * tanh((double)dot / (double)s->softcap)) : dot;
}

void ld_ref_attention_fwd_kv(float *out, float *lse, const float *q, const void *k, int k_type, const void *v,
                             int v_type, const ld_attn_shape *s) {
    const int64_t D = s->D, W = s->Hkv * D;
    const size_t kr = ld_ref_kv_row_bytes(k_type, W), vr = ld_ref_kv_row_bytes(v_type, W);
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->Hq; h++) {
            const int64_t hk = h / (s->Hq / s->Hkv);
            for (int64_t i = 0; i < s->Tq; i++) {
                int64_t start, end = visible(s, b, i, &start);
                float *o = out + ((b * s->Tq + i) * s->Hq + h) * D, *l = lse + (b * s->Hq + h) * s->Tq + i;
                for (int64_t d = 0; d < D; d++) o[d] = 0;
                if (end == start) {
                    *l = -INFINITY;
                    continue;
                }
                float mx = -INFINITY, sum = 0;
                for (int64_t j = start; j < end; j++) {
                    const float sc = score(s, q, k, k_type, kr, b, h, i, j);
                    if (sc > mx) mx = sc;
                }
                for (int64_t j = start; j < end; j++) {
                    const float p = (float)exp((double)(score(s, q, k, k_type, kr, b, h, i, j) - mx));
                    sum += p;
                    for (int64_t d = 0; d < D; d++) o[d] += p * ld_ref_kv_value(v, v_type, vr, b * s->Tk + j, hk * D + d);
                }
                for (int64_t d = 0; d < D; d++) o[d] /= sum;
                *l = (float)((double)mx + log((double)sum)); /* as ld_ref_attention_fwd rounds */
            }
        }
}

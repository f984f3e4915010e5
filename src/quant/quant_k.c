/* quant/quant_k.c — the K-quant super-block formats (256 weights): Q4_K, Q5_K, Q6_K, and
 * the Q8_K activation block of their dots. Reference quantize (weighted scale + min
 * searches per sub-block, then 6-bit/8-bit quantization of the sub-block scales),
 * dequantize (bit-exact GGML semantics), and the reference dots.
 *
 * Bit packing (see docs/formats/quant-blocks.md):
 *  - Q4_K/Q5_K scales[12]: sub-block j < 4: scale = scales[j] & 63, min = scales[j+4] & 63;
 *    j >= 4: scale = (scales[j+4] & 15) | (scales[j-4] >> 6) << 4,
 *            min   = (scales[j+4] >> 4) | (scales[j] >> 6) << 4.
 *  - qs: 64-element chunk c uses qs[32c .. 32c+31]: low nibbles = elements 64c .. 64c+31,
 *    high nibbles = elements 64c+32 .. 64c+63. Q5_K: bit 2c of qh[l] is the fifth bit of
 *    element 64c+l, bit 2c+1 that of element 64c+32+l.
 *  - Q6_K: 128-element half h, l < 32: ql[64h+l] = low4(e[l]) | low4(e[l+64]) << 4,
 *    ql[64h+32+l] = low4(e[l+32]) | low4(e[l+96]) << 4,
 *    qh[32h+l] = hi2(e[l]) | hi2(e[l+32]) << 2 | hi2(e[l+64]) << 4 | hi2(e[l+96]) << 6,
 *    where e = elements 128h .. 128h+127; scales[g] belongs to elements 16g .. 16g+15. */
#include <math.h>
#include <string.h>

#include "quant/quant_blocks.h"

static inline int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* ---- Q4_K / Q5_K scales ---------------------------------------------------------------- */
static inline void get_scale_min_k4(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

void ld_q4_K_scale_min(const uint8_t *scales, int j, int *sc, int *m) {
    get_scale_min_k4(j, scales, sc, m);
}

static void pack_scale_min_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *q) {
    memset(q, 0, LD_K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] |= ls[j];
            q[j + 4] |= lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Quantizes one 256-block to levels L[256] in [0, nmax] with 6-bit sub-block scales/mins. */
static void quantize_qk_asym(const float *x, const float *w, int nmax, uint8_t *L, uint16_t *d_out,
                             uint16_t *dmin_out, uint8_t *scales) {
    float sc[8], mn[8], max_sc = 0, max_mn = 0;
    for (int j = 0; j < 8; j++) {
        sc[j] = ld_quant_search_asym(32, nmax, x + 32 * j, w ? w + 32 * j : NULL, L + 32 * j, &mn[j]);
        if (sc[j] > max_sc) max_sc = sc[j];
        if (mn[j] > max_mn) max_mn = mn[j];
    }
    float inv_sc = max_sc > 0 ? 63.0f / max_sc : 0.0f, inv_mn = max_mn > 0 ? 63.0f / max_mn : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)clampi(ld_quant_nearest(inv_sc * sc[j]), 0, 63);
        lm[j] = (uint8_t)clampi(ld_quant_nearest(inv_mn * mn[j]), 0, 63);
    }
    *d_out = ld_fp32_to_fp16(max_sc / 63.0f);
    *dmin_out = ld_fp32_to_fp16(max_mn / 63.0f);
    pack_scale_min_k4(ls, lm, scales);
    /* Final levels from the scales as decoded: rounding is optimal per element once the
     * (quantized) scale and min of its sub-block are fixed. */
    const float d = ld_fp16_to_fp32(*d_out), dmin = ld_fp16_to_fp32(*dmin_out);
    for (int j = 0; j < 8; j++) {
        const float dl = d * (float)ls[j], dm = dmin * (float)lm[j];
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = dl > 0 ? (uint8_t)clampi(ld_quant_nearest((x[32 * j + i] + dm) / dl), 0, nmax) : 0;
    }
}

/* Levels of a Q4_K (nbits 4) or Q5_K (nbits 5) block's 256 weights. */
static void unpack_qk(const uint8_t *restrict qs, const uint8_t *restrict qh, uint8_t *restrict L) {
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            L[64 * c + l] = qs[32 * c + l] & 0xF;
            L[64 * c + 32 + l] = qs[32 * c + l] >> 4;
        }
    if (qh)
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                L[64 * c + l] |= (uint8_t)(((qh[l] >> (2 * c)) & 1) << 4);
                L[64 * c + 32 + l] |= (uint8_t)(((qh[l] >> (2 * c + 1)) & 1) << 4);
            }
}

static void pack_qk(const uint8_t *L, uint8_t *qs, uint8_t *qh) {
    if (qh) memset(qh, 0, LD_QK_K / 8);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            uint8_t a = L[64 * c + l], b = L[64 * c + 32 + l];
            qs[32 * c + l] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
            if (qh) qh[l] |= (uint8_t)(((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
        }
}

void ld_quantize_row_q4_K_ref(const float *x, void *y, int64_t n, const float *w) {
    ld_block_q4_K *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        uint8_t L[LD_QK_K];
        quantize_qk_asym(x + i * LD_QK_K, w ? w + i * LD_QK_K : NULL, 15, L, &b[i].d, &b[i].dmin, b[i].scales);
        pack_qk(L, b[i].qs, NULL);
    }
}

void ld_quantize_row_q5_K_ref(const float *x, void *y, int64_t n, const float *w) {
    ld_block_q5_K *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        uint8_t L[LD_QK_K];
        quantize_qk_asym(x + i * LD_QK_K, w ? w + i * LD_QK_K : NULL, 31, L, &b[i].d, &b[i].dmin, b[i].scales);
        pack_qk(L, b[i].qs, b[i].qh);
    }
}

/* y = d*sc*q - dmin*m, in GGML's order of float operations. */
static void dequant_qk(uint16_t d16, uint16_t dmin16, const uint8_t *scales, const uint8_t *L, float *y) {
    const float d = ld_fp16_to_fp32(d16), min = ld_fp16_to_fp32(dmin16);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = min * (float)m;
        for (int l = 0; l < 32; l++) y[32 * j + l] = d1 * (float)L[32 * j + l] - m1;
    }
}

void ld_dequantize_row_q4_K(const void *x, float *y, int64_t n) {
    const ld_block_q4_K *b = x;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        uint8_t L[LD_QK_K];
        unpack_qk(b[i].qs, NULL, L);
        dequant_qk(b[i].d, b[i].dmin, b[i].scales, L, y + i * LD_QK_K);
    }
}

void ld_dequantize_row_q5_K(const void *x, float *y, int64_t n) {
    const ld_block_q5_K *b = x;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        uint8_t L[LD_QK_K];
        unpack_qk(b[i].qs, b[i].qh, L);
        dequant_qk(b[i].d, b[i].dmin, b[i].scales, L, y + i * LD_QK_K);
    }
}

/* Levels form (qgemm.c) of Q4_K / Q5_K: L = q, per 32-element sub-block s = d*sc and
 * o = -dmin*m (zero point 0), so s*L + o is the dequantized value. */
static void levels_qk(const void *x, size_t bytes, bool q5, int64_t n, uint8_t *L, float *s, float *o) {
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const uint8_t *blk = (const uint8_t *)x + (size_t)i * bytes;
        const ld_block_q4_K *b4 = (const void *)blk;
        const ld_block_q5_K *b5 = (const void *)blk;
        unpack_qk(q5 ? b5->qs : b4->qs, q5 ? b5->qh : NULL, L + i * LD_QK_K);
        const float d = ld_fp16_to_fp32(b4->d), min = ld_fp16_to_fp32(b4->dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            get_scale_min_k4(j, q5 ? b5->scales : b4->scales, &sc, &m);
            s[i * 8 + j] = d * (float)sc;
            o[i * 8 + j] = -(min * (float)m);
        }
    }
}

void ld_levels_row_q4_K(const void *x, int64_t n, uint8_t *L, float *s, float *o) {
    levels_qk(x, sizeof(ld_block_q4_K), false, n, L, s, o);
}

void ld_levels_row_q5_K(const void *x, int64_t n, uint8_t *L, float *s, float *o) {
    levels_qk(x, sizeof(ld_block_q5_K), true, n, L, s, o);
}

/* ---- Q6_K -------------------------------------------------------------------------------- */
static void unpack_q6(const ld_block_q6_K *restrict b, uint8_t *restrict L) {
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        uint8_t *e = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            e[l] = (uint8_t)((ql[l] & 0xF) | ((qh[l] & 3) << 4));
            e[l + 32] = (uint8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4));
            e[l + 64] = (uint8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4));
            e[l + 96] = (uint8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4));
        }
    }
}

/* The 256 levels of one block (the prepacked panel forms, quant/qgemm_pack.c). */
void ld_block_levels_q4_K(const ld_block_q4_K *b, uint8_t *L) {
    unpack_qk(b->qs, NULL, L);
}
void ld_block_levels_q5_K(const ld_block_q5_K *b, uint8_t *L) {
    unpack_qk(b->qs, b->qh, L);
}
void ld_block_levels_q6_K(const ld_block_q6_K *b, uint8_t *L) {
    unpack_q6(b, L);
}

static void pack_q6(const uint8_t *L, ld_block_q6_K *b) {
    for (int h = 0; h < 2; h++) {
        uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
        const uint8_t *e = L + 128 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((e[l] & 0xF) | ((e[l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((e[l + 32] & 0xF) | ((e[l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((e[l] >> 4) | ((e[l + 32] >> 4) << 2) | ((e[l + 64] >> 4) << 4) | ((e[l + 96] >> 4) << 6));
        }
    }
}

void ld_quantize_row_q6_K_ref(const float *x, void *y, int64_t n, const float *w) {
    ld_block_q6_K *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const float *xb = x + i * LD_QK_K, *wb = w ? w + i * LD_QK_K : NULL;
        uint8_t L[LD_QK_K];
        float sc[16], amax = 0, vmax = 0;
        for (int g = 0; g < 16; g++) {
            sc[g] = ld_quant_search_sym(16, 32, xb + 16 * g, wb ? wb + 16 * g : NULL, L + 16 * g);
            if (fabsf(sc[g]) > amax) {
                amax = fabsf(sc[g]);
                vmax = sc[g];
            }
        }
        if (!(amax > 0)) {
            memset(&b[i], 0, sizeof b[i]);
            memset(L, 32, sizeof L);
            pack_q6(L, &b[i]);
            continue;
        }
        /* The largest-magnitude scale maps to -128, the full int8 range. */
        const float iscale = -128.0f / vmax;
        b[i].d = ld_fp32_to_fp16(1.0f / iscale);
        const float d = ld_fp16_to_fp32(b[i].d);
        for (int g = 0; g < 16; g++) {
            int s = clampi(ld_quant_nearest(iscale * sc[g]), -128, 127);
            b[i].scales[g] = (int8_t)s;
            const float dl = d * (float)s;
            for (int l = 0; l < 16; l++)
                L[16 * g + l] = dl != 0.0f ? (uint8_t)(clampi(ld_quant_nearest(xb[16 * g + l] / dl), -32, 31) + 32) : 32;
        }
        pack_q6(L, &b[i]);
    }
}

void ld_dequantize_row_q6_K(const void *x, float *y, int64_t n) {
    const ld_block_q6_K *b = x;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        uint8_t L[LD_QK_K];
        unpack_q6(&b[i], L);
        const float d = ld_fp16_to_fp32(b[i].d);
        for (int e = 0; e < LD_QK_K; e++) y[i * LD_QK_K + e] = d * (float)b[i].scales[e / 16] * (float)((int)L[e] - 32);
    }
}

/* Levels form (qgemm.c): L = the 6-bit q (zero point 32), per 16-element group s = d*sc. */
void ld_levels_row_q6_K(const void *x, int64_t n, uint8_t *L, float *s, float *o) {
    (void)o;
    const ld_block_q6_K *b = x;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        unpack_q6(&b[i], L + i * LD_QK_K);
        const float d = ld_fp16_to_fp32(b[i].d);
        for (int g = 0; g < 16; g++) s[i * 16 + g] = d * (float)b[i].scales[g];
    }
}

/* ---- Q8_K activations ---------------------------------------------------------------------- */
void ld_quantize_act_q8_K_ref(const float *x, void *y, int64_t n) {
    ld_block_q8_K *b = y;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        const float *xb = x + i * LD_QK_K;
        float amax = 0;
        for (int l = 0; l < LD_QK_K; l++) amax = fmaxf(amax, fabsf(xb[l]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = d;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 16 * g; l < 16 * g + 16; l++) {
                int q = clampi(ld_quant_nearest(xb[l] * id), -127, 127);
                b[i].qs[l] = (int8_t)q;
                sum += q;
            }
            b[i].bsums[g] = (int16_t)sum;
        }
    }
}

void ld_dequantize_row_q8_K(const void *x, float *y, int64_t n) {
    const ld_block_q8_K *b = x;
    for (int64_t i = 0; i < n / LD_QK_K; i++)
        for (int l = 0; l < LD_QK_K; l++) y[i * LD_QK_K + l] = b[i].d * (float)b[i].qs[l];
}

/* ---- reference dots -------------------------------------------------------------------- */
/* Sum over a super-block of d_w*d_a*sc_j*sum(q*a) - dmin_w*d_a*m_j*sum(a), with the integer
 * parts exact: isum = sum_j sc_j * sum_{l in j} L_l*a_l, summs = sum_j m_j * bsum_j. */
static float dot_qk(const uint8_t *L, uint16_t d16, uint16_t dmin16, const uint8_t *scales, const ld_block_q8_K *a) {
    int32_t isum = 0, summs = 0;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        get_scale_min_k4(j, scales, &sc, &m);
        int32_t s = 0;
        for (int l = 32 * j; l < 32 * j + 32; l++) s += (int32_t)L[l] * a->qs[l];
        isum += sc * s;
        summs += m * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
    }
    const float d = ld_fp16_to_fp32(d16) * a->d, dmin = ld_fp16_to_fp32(dmin16) * a->d;
    return d * (float)isum - dmin * (float)summs;
}

float ld_vec_dot_q4_K_q8_K_ref(int64_t n, const void *w, const void *act) {
    const ld_block_q4_K *x = w;
    const ld_block_q8_K *a = act;
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        uint8_t L[LD_QK_K];
        unpack_qk(x[i].qs, NULL, L);
        sum += dot_qk(L, x[i].d, x[i].dmin, x[i].scales, &a[i]);
    }
    return sum;
}

float ld_vec_dot_q5_K_q8_K_ref(int64_t n, const void *w, const void *act) {
    const ld_block_q5_K *x = w;
    const ld_block_q8_K *a = act;
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        uint8_t L[LD_QK_K];
        unpack_qk(x[i].qs, x[i].qh, L);
        sum += dot_qk(L, x[i].d, x[i].dmin, x[i].scales, &a[i]);
    }
    return sum;
}

float ld_vec_dot_q6_K_q8_K_ref(int64_t n, const void *w, const void *act) {
    const ld_block_q6_K *x = w;
    const ld_block_q8_K *a = act;
    float sum = 0;
    for (int64_t i = 0; i < n / LD_QK_K; i++) {
        uint8_t L[LD_QK_K];
        unpack_q6(&x[i], L);
        int32_t isum = 0;
        for (int g = 0; g < 16; g++) {
            int32_t s = 0;
            for (int l = 16 * g; l < 16 * g + 16; l++) s += ((int32_t)L[l] - 32) * a[i].qs[l];
            isum += x[i].scales[g] * s;
        }
        sum += (ld_fp16_to_fp32(x[i].d) * a[i].d) * (float)isum;
    }
    return sum;
}

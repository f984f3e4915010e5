/* kernels/cpu/attention_avx512.c — attention at the AVX-512 level: decoding (fewer than four
 * queries, no sliding window or soft-cap) as dot products with the key rows in place and P·V
 * accumulated in zmm registers, where a step is bound by reading the cache and this file was
 * measured faster than the AVX2 level's kernel (Zen 5: 34 vs 21 GFLOP/s at Tk = 1024, D = 64).
 * Everything else — prefill, the backward, windows and soft-caps — runs the AVX2 level's blocked
 * FlashAttention-2 kernel (attention_avx2.c), which measured 2.4x (forward) and 3.2x (backward)
 * this file's former row-at-a-time AVX-512 kernel there; head sizes above LD_ATTN_MAX_D run
 * the reference.
 * Forward: parallel over (batch, query head). Semantics: kernels/kernels.h. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/simd_avx512.h"
#include "kernels/cpu/cpu.h"
#include "kernels/ref/ref.h"

#define KB 64
#define LD_ATTN_MAX_D 256

static inline int64_t visible_end(const ld_attn_shape *s, int64_t b, int64_t i) {
    int64_t end = s->Tk;
    if (s->key_len && s->key_len[b] < end) end = s->key_len[b] < 0 ? 0 : s->key_len[b];
    if (s->causal && s->q_offset + i + 1 < end) end = s->q_offset + i + 1;
    return end < 0 ? 0 : end;
}

/* y[0..D) += a * x[0..D) */
static inline void axpy_d(float *y, float a, const float *x, int64_t D) {
    __m512 va = _mm512_set1_ps(a);
    int64_t d = 0;
    for (; d + 16 <= D; d += 16)
        _mm512_storeu_ps(y + d, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + d), _mm512_loadu_ps(y + d)));
    if (d < D) {
        __mmask16 m = ld_tail16(D - d);
        _mm512_mask_storeu_ps(y + d, m, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + d), _mm512_maskz_loadu_ps(m, y + d)));
    }
}

static inline void scale_d(float *y, float a, int64_t D) {
    __m512 va = _mm512_set1_ps(a);
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) _mm512_storeu_ps(y + d, _mm512_mul_ps(va, _mm512_loadu_ps(y + d)));
    if (d < D) {
        __mmask16 m = ld_tail16(D - d);
        _mm512_mask_storeu_ps(y + d, m, _mm512_mul_ps(va, _mm512_maskz_loadu_ps(m, y + d)));
    }
}

static inline float dot_d(const float *x, const float *y, int64_t D) {
    __m512 acc = _mm512_setzero_ps();
    int64_t d = 0;
    for (; d + 16 <= D; d += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(x + d), _mm512_loadu_ps(y + d), acc);
    if (d < D) {
        __mmask16 m = ld_tail16(D - d);
        acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + d), _mm512_maskz_loadu_ps(m, y + d), acc);
    }
    return ld_hsum512(acc);
}

/* o[0..D) = corr * o + sum_j p[j] * rows[j * stride + 0..D), with o kept in registers when
 * D is a multiple of 16 up to 128 (the common head sizes), else row by row. */
static inline void pv_accumulate(float *o, float corr, const float *p, const float *rows, int64_t stride, int64_t n,
                                 int64_t D) {
    if (D % 16 == 0 && D <= 128) {
        __m512 acc[8];
        const int nd = (int)(D / 16);
        __m512 vc = _mm512_set1_ps(corr);
        for (int v = 0; v < nd; v++) acc[v] = _mm512_mul_ps(vc, _mm512_loadu_ps(o + 16 * v));
        for (int64_t j = 0; j < n; j++) {
            __m512 pj = _mm512_set1_ps(p[j]);
            const float *r = rows + j * stride;
            for (int v = 0; v < nd; v++) acc[v] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(r + 16 * v), acc[v]);
        }
        for (int v = 0; v < nd; v++) _mm512_storeu_ps(o + 16 * v, acc[v]);
        return;
    }
    if (corr != 1.0f) scale_d(o, corr, D);
    for (int64_t j = 0; j < n; j++) axpy_d(o, p[j], rows + j * stride, D);
}

/* sc[j] = scale * q . k_j for n keys given as rows (no transpose: for one or few queries). */
static inline void scores_direct(float *sc, const float *qi, const float *k, int64_t stride, int64_t n, int64_t D,
                                 float scale) {
    for (int64_t j = 0; j < n; j++) sc[j] = scale * dot_d(qi, k + j * stride, D);
    for (int64_t j = n; j < KB; j++) sc[j] = 0.0f;
}

/* exp(x - shift) for the 64 entries, in place. */
static inline void exp_shift64(float *p, float shift) {
    __m512 vs = _mm512_set1_ps(shift);
    for (int j = 0; j < KB; j += 16) _mm512_storeu_ps(p + j, ld_exp512(_mm512_sub_ps(_mm512_loadu_ps(p + j), vs)));
}

/* Queries 0 .. Tq - 1 (Tq < 4) of head h of batch b: per block of KB keys the scores as dot
 * products with the key rows, the online softmax step of each row, and P·V. */
static void fwd_unit(float *out, float *lse, const float *q, const float *k, const float *v, const ld_attn_shape *s,
                     int64_t b, int64_t h) {
    const int64_t D = s->D, Hq = s->Hq, Hkv = s->Hkv, hk = h / (Hq / Hkv), ni = s->Tq;
    const int64_t kstride = Hkv * D;
    float sc[KB], mrow[4], lrow[4];
    int64_t end_max = 0, ends[4];
    for (int64_t r = 0; r < ni; r++) {
        ends[r] = visible_end(s, b, r);
        if (ends[r] > end_max) end_max = ends[r];
        mrow[r] = -INFINITY, lrow[r] = 0.0f;
        memset(out + ((b * s->Tq + r) * Hq + h) * D, 0, (size_t)D * sizeof(float));
    }
    const float *kb = k + (b * s->Tk) * kstride + hk * D, *vb = v + (b * s->Tk) * kstride + hk * D;
    for (int64_t j0 = 0; j0 < end_max; j0 += KB) {
        const int64_t nk = end_max - j0 < KB ? end_max - j0 : KB;
        for (int64_t r = 0; r < ni; r++) {
            int64_t vis = ends[r] - j0; /* keys of this block visible to the row */
            if (vis <= 0) continue;
            if (vis > nk) vis = nk;
            const float *qi = q + ((b * s->Tq + r) * Hq + h) * D;
            float *oi = out + ((b * s->Tq + r) * Hq + h) * D;
            scores_direct(sc, qi, kb + j0 * kstride, kstride, vis, D, s->scale);
            float mx = mrow[r];
            for (int64_t j = 0; j < vis; j++) mx = sc[j] > mx ? sc[j] : mx;
            for (int64_t j = vis; j < KB; j++) sc[j] = -INFINITY;
            const float corr = expf(mrow[r] - mx); /* 0 on the first block (-inf) */
            exp_shift64(sc, mx);
            float sum = 0.0f;
            for (int64_t j = 0; j < vis; j++) sum += sc[j];
            pv_accumulate(oi, corr, sc, vb + j0 * kstride, kstride, vis, D);
            lrow[r] = lrow[r] * corr + sum;
            mrow[r] = mx;
        }
    }
    for (int64_t r = 0; r < ni; r++) {
        float *l = lse + (b * Hq + h) * s->Tq + r;
        if (ends[r] == 0) {
            *l = -INFINITY;
            continue;
        }
        scale_d(out + ((b * s->Tq + r) * Hq + h) * D, 1.0f / lrow[r], D);
        *l = mrow[r] + logf(lrow[r]);
    }
}

typedef struct {
    float *out, *lse;
    const float *q, *k, *v;
    const ld_attn_shape *s;
} attn_fwd_args;

/* Units [u0, u1): a unit is one head of one batch. */
static void fwd_units(void *arg, int64_t u0, int64_t u1, int piece) {
    (void)piece;
    const attn_fwd_args *a = arg;
    for (int64_t u = u0; u < u1; u++) fwd_unit(a->out, a->lse, a->q, a->k, a->v, a->s, u / a->s->Hq, u % a->s->Hq);
}

static void attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const ld_attn_shape *s) {
    /* prefill, sliding windows, soft-caps: the AVX2 level's blocked kernel is faster there */
    if (s->Tq >= 4 || s->window > 0 || s->softcap > 0) {
        ld_kernels_cpu_avx2_attn.attention_fwd(out, lse, q, k, v, s);
        return;
    }
    if (s->D > LD_ATTN_MAX_D) {
        ld_ref_attention_fwd(out, lse, q, k, v, s);
        return;
    }
    const int64_t units = s->B * s->Hq;
    /* a decode step over a short cache is a few microseconds: less than waking a team */
    const bool par = units > 1 && s->B * s->Hq * s->Tq * s->Tk * s->D >= 16 * LD_PAR_MIN;
    attn_fwd_args a = {out, lse, q, k, v, s};
    ld_par_for(units, par ? 1 : units, fwd_units, &a);
}

/* The backward and attention_fwd_kv are the AVX2 level's (cpu_table.c overlays this table). */
const ld_kernels ld_kernels_cpu_avx512_attn = {
    .name = "cpu-avx512",
    .attention_fwd = attention_fwd,
};

/* kernels/cpu/attention_avx2.c — memory-efficient attention (FlashAttention-2 style) at the
 * AVX2 level: the algorithm of attention_avx512.c with 8-lane vectors. Queries in blocks of
 * QB rows, keys in blocks of KB; scores of one block pair live in a QB x KB tile on the
 * stack, softmax is online (running max and sum per row), and nothing of size Tq x Tk is
 * ever stored. Key and value blocks are transposed once per block pair so every product is
 * a broadcast FMA over 8 keys or 8 head dimensions (no horizontal sums); a few queries
 * (decoding) take dot products with the key rows directly instead.
 *
 * Forward: parallel over (batch, query head, query block). Backward: parallel over
 * (batch, kv head): that unit owns its dk/dv rows and the dq rows of its query heads, so no
 * two threads write the same memory and the result is deterministic for a thread count.
 * Semantics: kernels/kernels.h. Head sizes above LD_ATTN_MAX_D, sliding windows and soft-caps fall back to the reference. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx2.h"
#include "kernels/ref/ref.h"

#define QB 32
#define KB 64
#define LD_ATTN_MAX_D 256
#define INLINE static inline __attribute__((always_inline))

static inline int64_t visible_end(const ld_attn_shape *s, int64_t b, int64_t i) {
    int64_t end = s->Tk;
    if (s->key_len && s->key_len[b] < end) end = s->key_len[b] < 0 ? 0 : s->key_len[b];
    if (s->causal && s->q_offset + i + 1 < end) end = s->q_offset + i + 1;
    return end < 0 ? 0 : end;
}

/* t[d * KB + j] = src row (j0 + j), dims d, for j < nk (zero beyond). */
static void transpose_block(float *t, const float *src, int64_t row_stride, int64_t j0, int64_t nk, int64_t D) {
    for (int64_t d = 0; d < D; d++) {
        float *td = t + d * KB;
        for (int64_t j = 0; j < nk; j++) td[j] = src[(j0 + j) * row_stride + d];
        for (int64_t j = nk; j < KB; j++) td[j] = 0.0f;
    }
}

/* sc[j] = scale * q . key_j for the KB keys of a transposed block (8 vectors of 8). */
static inline void scores_row(float *sc, const float *qi, const float *kt, int64_t D, float scale) {
    __m256 a[KB / 8];
#pragma GCC unroll 8
    for (int c = 0; c < KB / 8; c++) a[c] = _mm256_setzero_ps();
    for (int64_t d = 0; d < D; d++) {
        const __m256 qd = _mm256_broadcast_ss(qi + d);
        const float *k = kt + d * KB;
#pragma GCC unroll 8
        for (int c = 0; c < KB / 8; c++) a[c] = _mm256_fmadd_ps(qd, _mm256_loadu_ps(k + 8 * c), a[c]);
    }
    const __m256 vs = _mm256_set1_ps(scale);
#pragma GCC unroll 8
    for (int c = 0; c < KB / 8; c++) _mm256_storeu_ps(sc + 8 * c, _mm256_mul_ps(a[c], vs));
}

/* y[0..D) += a * x[0..D) */
static inline void axpy_d(float *y, float a, const float *x, int64_t D) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) _mm256_storeu_ps(y + d, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + d), _mm256_loadu_ps(y + d)));
    if (d < D) {
        const __m256i m = ld_tail8(D - d);
        _mm256_maskstore_ps(y + d, m, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + d, m), _mm256_maskload_ps(y + d, m)));
    }
}

static inline void scale_d(float *y, float a, int64_t D) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) _mm256_storeu_ps(y + d, _mm256_mul_ps(va, _mm256_loadu_ps(y + d)));
    if (d < D) {
        const __m256i m = ld_tail8(D - d);
        _mm256_maskstore_ps(y + d, m, _mm256_mul_ps(va, _mm256_maskload_ps(y + d, m)));
    }
}

static inline float dot_d(const float *x, const float *y, int64_t D) {
    __m256 acc = _mm256_setzero_ps();
    int64_t d = 0;
    for (; d + 8 <= D; d += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(x + d), _mm256_loadu_ps(y + d), acc);
    if (d < D) {
        const __m256i m = ld_tail8(D - d);
        acc = _mm256_fmadd_ps(_mm256_maskload_ps(x + d, m), _mm256_maskload_ps(y + d, m), acc);
    }
    return ld_hsum8(acc);
}

/* o[0..8 ND) = corr * o + sum_j p[j pstride] * rows[j * stride + 0..8 ND), o in registers. */
INLINE void pv_regs(float *o, float corr, const float *p, int64_t pstride, const float *rows, int64_t stride, int64_t n,
                    const int ND) {
    __m256 acc[8];
    const __m256 vc = _mm256_set1_ps(corr);
#pragma GCC unroll 8
    for (int v = 0; v < ND; v++) acc[v] = _mm256_mul_ps(vc, _mm256_loadu_ps(o + 8 * v));
    for (int64_t j = 0; j < n; j++) {
        const __m256 pj = _mm256_broadcast_ss(p + j * pstride);
        const float *r = rows + j * stride;
#pragma GCC unroll 8
        for (int v = 0; v < ND; v++) acc[v] = _mm256_fmadd_ps(pj, _mm256_loadu_ps(r + 8 * v), acc[v]);
    }
#pragma GCC unroll 8
    for (int v = 0; v < ND; v++) _mm256_storeu_ps(o + 8 * v, acc[v]);
}

/* o[0..D) = corr * o + sum_j p[j] * rows[j * stride + 0..D), with o kept in registers when
 * D is a multiple of 8 up to 64, else row by row. */
static inline void pv_accumulate_strided(float *o, float corr, const float *p, int64_t pstride, const float *rows,
                                         int64_t stride, int64_t n, int64_t D) {
    switch (D % 8 == 0 && D <= 64 ? D / 8 : 0) {
    case 1: pv_regs(o, corr, p, pstride, rows, stride, n, 1); return;
    case 2: pv_regs(o, corr, p, pstride, rows, stride, n, 2); return;
    case 4: pv_regs(o, corr, p, pstride, rows, stride, n, 4); return;
    case 8: pv_regs(o, corr, p, pstride, rows, stride, n, 8); return;
    default: break;
    }
    if (corr != 1.0f) scale_d(o, corr, D);
    for (int64_t j = 0; j < n; j++) axpy_d(o, p[j * pstride], rows + j * stride, D);
}

static inline void pv_accumulate(float *o, float corr, const float *p, const float *rows, int64_t stride, int64_t n,
                                 int64_t D) {
    pv_accumulate_strided(o, corr, p, 1, rows, stride, n, D);
}

/* sc[j] = scale * q . k_j for n keys given as rows (no transpose: for one or few queries). */
static inline void scores_direct(float *sc, const float *qi, const float *k, int64_t stride, int64_t n, int64_t D,
                                 float scale) {
    for (int64_t j = 0; j < n; j++) sc[j] = scale * dot_d(qi, k + j * stride, D);
    for (int64_t j = n; j < KB; j++) sc[j] = 0.0f;
}

/* exp(x - shift) for the 64 entries, in place. */
static inline void exp_shift64(float *p, float shift) {
    const __m256 vs = _mm256_set1_ps(shift);
    for (int j = 0; j < KB; j += 8) _mm256_storeu_ps(p + j, ld_exp8(_mm256_sub_ps(_mm256_loadu_ps(p + j), vs)));
}

static void fwd_unit(float *out, float *lse, const float *q, const float *k, const float *v, const ld_attn_shape *s,
                     int64_t b, int64_t h, int64_t i0, int64_t ni) {
    const int64_t D = s->D, Hq = s->Hq, Hkv = s->Hkv, hk = h / (Hq / Hkv);
    const int64_t kstride = Hkv * D;
    float kt[LD_ATTN_MAX_D * KB], sc[KB], mrow[QB], lrow[QB];
    int64_t end_max = 0, ends[QB];
    for (int64_t r = 0; r < ni; r++) {
        ends[r] = visible_end(s, b, i0 + r);
        if (ends[r] > end_max) end_max = ends[r];
        mrow[r] = -INFINITY, lrow[r] = 0.0f;
        memset(out + ((b * s->Tq + i0 + r) * Hq + h) * D, 0, (size_t)D * sizeof(float));
    }
    const float *kb = k + (b * s->Tk) * kstride + hk * D, *vb = v + (b * s->Tk) * kstride + hk * D;
    const bool direct = ni < 4; /* decoding: a transpose costs more than it saves */
    for (int64_t j0 = 0; j0 < end_max; j0 += KB) {
        int64_t nk = end_max - j0 < KB ? end_max - j0 : KB;
        if (!direct) transpose_block(kt, kb, kstride, j0, nk, D);
        for (int64_t r = 0; r < ni; r++) {
            int64_t vis = ends[r] - j0; /* keys of this block visible to the row */
            if (vis <= 0) continue;
            if (vis > nk) vis = nk;
            const float *qi = q + ((b * s->Tq + i0 + r) * Hq + h) * D;
            float *oi = out + ((b * s->Tq + i0 + r) * Hq + h) * D;
            if (direct) scores_direct(sc, qi, kb + j0 * kstride, kstride, vis, D, s->scale);
            else scores_row(sc, qi, kt, D, s->scale);
            float mx = mrow[r];
            for (int64_t j = 0; j < vis; j++) mx = sc[j] > mx ? sc[j] : mx;
            for (int64_t j = vis; j < KB; j++) sc[j] = -INFINITY;
            float corr = expf(mrow[r] - mx); /* 0 on the first block (-inf) */
            exp_shift64(sc, mx);
            float sum = 0.0f;
            for (int64_t j = 0; j < vis; j++) sum += sc[j];
            pv_accumulate(oi, corr, sc, vb + j0 * kstride, kstride, vis, D);
            lrow[r] = lrow[r] * corr + sum;
            mrow[r] = mx;
        }
    }
    for (int64_t r = 0; r < ni; r++) {
        float *l = lse + (b * Hq + h) * s->Tq + i0 + r;
        if (ends[r] == 0) {
            *l = -INFINITY;
            continue;
        }
        scale_d(out + ((b * s->Tq + i0 + r) * Hq + h) * D, 1.0f / lrow[r], D);
        *l = mrow[r] + logf(lrow[r]);
    }
}

typedef struct {
    float *out, *lse;
    const float *q, *k, *v;
    const ld_attn_shape *s;
    int64_t nqb;
} attn_fwd_args;

/* Units [u0, u1): a unit is one block of QB queries of one head of one batch. */
static void fwd_units(void *arg, int64_t u0, int64_t u1, int piece) {
    (void)piece;
    const attn_fwd_args *a = arg;
    const ld_attn_shape *s = a->s;
    for (int64_t u = u0; u < u1; u++) {
        int64_t qb = u % a->nqb, h = (u / a->nqb) % s->Hq, b = u / (a->nqb * s->Hq);
        int64_t i0 = qb * QB, ni = s->Tq - i0 < QB ? s->Tq - i0 : QB;
        fwd_unit(a->out, a->lse, a->q, a->k, a->v, s, b, h, i0, ni);
    }
}

static void attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                          const ld_attn_shape *s) {
    if (s->D > LD_ATTN_MAX_D || s->window > 0 || s->softcap > 0) { /* sliding window / soft-cap: the reference */
        ld_ref_attention_fwd(out, lse, q, k, v, s);
        return;
    }
    int64_t nqb = (s->Tq + QB - 1) / QB, units = s->B * s->Hq * nqb;
    /* a decode step over a short cache is a few microseconds: less than waking a team */
    const bool par = units > 1 && s->B * s->Hq * s->Tq * s->Tk * s->D >= 16 * LD_PAR_MIN;
    attn_fwd_args a = {out, lse, q, k, v, s, nqb};
    ld_par_for(units, par ? 1 : units, fwd_units, &a);
}

static size_t attention_bwd_scratch(const ld_attn_shape *s) {
    (void)s;
    return 0; /* all tiles live on the stack */
}

/* One (batch, kv head): every query head of its group, every query block, every key block.
 * Per block pair: the probability tile P and the score-gradient tile dS (QB x KB, on the
 * stack), then dq rows += dS · K, and dk/dv rows += dS^T · Q and P^T · dO, each output row
 * accumulated in registers over the block's queries. */
static void bwd_unit(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                     const float *q, const float *k, const float *v, const ld_attn_shape *s, int64_t b, int64_t hk) {
    const int64_t D = s->D, Hq = s->Hq, Hkv = s->Hkv, group = Hq / Hkv;
    const int64_t qstride = Hq * D, kstride = Hkv * D;
    float kt[LD_ATTN_MAX_D * KB], vt[LD_ATTN_MAX_D * KB], P[QB * KB], dS[QB * KB], di[QB];
    int64_t ends[QB];
    const float *kb = k + (b * s->Tk) * kstride + hk * D, *vb = v + (b * s->Tk) * kstride + hk * D;
    float *dkb = dk ? dk + (b * s->Tk) * kstride + hk * D : NULL, *dvb = dv ? dv + (b * s->Tk) * kstride + hk * D : NULL;
    for (int64_t h = hk * group; h < (hk + 1) * group; h++)
        for (int64_t i0 = 0; i0 < s->Tq; i0 += QB) {
            int64_t ni = s->Tq - i0 < QB ? s->Tq - i0 : QB, end_max = 0;
            const float *qblk = q + ((b * s->Tq + i0) * Hq + h) * D, *doblk = dout + ((b * s->Tq + i0) * Hq + h) * D;
            for (int64_t r = 0; r < ni; r++) {
                int64_t row = (b * s->Tq + i0 + r) * Hq + h;
                ends[r] = visible_end(s, b, i0 + r);
                if (ends[r] > end_max) end_max = ends[r];
                di[r] = dot_d(dout + row * D, out + row * D, D);
            }
            for (int64_t j0 = 0; j0 < end_max; j0 += KB) {
                int64_t nk = end_max - j0 < KB ? end_max - j0 : KB;
                transpose_block(kt, kb, kstride, j0, nk, D);
                transpose_block(vt, vb, kstride, j0, nk, D);
                for (int64_t r = 0; r < ni; r++) {
                    float *pr = P + r * KB, *dsr = dS + r * KB;
                    int64_t vis = ends[r] - j0;
                    if (vis > nk) vis = nk;
                    if (vis <= 0) {
                        memset(pr, 0, KB * sizeof(float));
                        memset(dsr, 0, KB * sizeof(float));
                        continue;
                    }
                    int64_t row = (b * s->Tq + i0 + r) * Hq + h;
                    scores_row(pr, q + row * D, kt, D, s->scale);
                    for (int64_t j = vis; j < KB; j++) pr[j] = -INFINITY;
                    exp_shift64(pr, lse[(b * Hq + h) * s->Tq + i0 + r]);
                    scores_row(dsr, dout + row * D, vt, D, 1.0f); /* dP[j] = dout_i . v_j */
                    for (int64_t j = 0; j < KB; j++) dsr[j] = pr[j] * (dsr[j] - di[r]) * s->scale;
                    if (dq) pv_accumulate(dq + row * D, 1.0f, dsr, kb + j0 * kstride, kstride, vis, D);
                }
                for (int64_t j = 0; j < nk; j++) {
                    if (dvb) pv_accumulate_strided(dvb + (j0 + j) * kstride, 1.0f, P + j, KB, doblk, qstride, ni, D);
                    if (dkb) pv_accumulate_strided(dkb + (j0 + j) * kstride, 1.0f, dS + j, KB, qblk, qstride, ni, D);
                }
            }
        }
}

typedef struct {
    float *dq, *dk, *dv;
    const float *dout, *out, *lse, *q, *k, *v;
    const ld_attn_shape *s;
} attn_bwd_args;

/* Units [u0, u1): a unit is one key/value head of one batch (with its query heads). */
static void bwd_units(void *arg, int64_t u0, int64_t u1, int piece) {
    (void)piece;
    const attn_bwd_args *a = arg;
    for (int64_t u = u0; u < u1; u++)
        bwd_unit(a->dq, a->dk, a->dv, a->dout, a->out, a->lse, a->q, a->k, a->v, a->s, u / a->s->Hkv, u % a->s->Hkv);
}

static void attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                          const float *q, const float *k, const float *v, const ld_attn_shape *s, void *scratch) {
    if (s->D > LD_ATTN_MAX_D || s->window > 0 || s->softcap > 0) { /* sliding window / soft-cap: the reference */
        ld_ref_attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, s, scratch);
        return;
    }
    attn_bwd_args a = {dq, dk, dv, dout, out, lse, q, k, v, s};
    ld_par_for(s->B * s->Hkv, 1, bwd_units, &a);
}

const ld_kernels ld_kernels_cpu_avx2_attn = {
    .name = "cpu-avx2",
    .attention_fwd = attention_fwd,
    .attention_bwd_scratch = attention_bwd_scratch,
    .attention_bwd = attention_bwd,
};

/* kernels/cpu/attention_avx512.c — memory-efficient attention (FlashAttention-2 style):
 * queries in blocks of QB rows, keys in blocks of KB; scores of one block pair live in a
 * QB x KB tile on the stack, softmax is online (running max and sum per row), and nothing of
 * size Tq x Tk is ever stored. Key and value blocks are transposed once per block pair so
 * every product is a broadcast FMA over 16 keys or 16 head dimensions (no horizontal sums).
 *
 * Forward: parallel over (batch, query head, query block). Backward: parallel over
 * (batch, kv head): that unit owns its dk/dv rows and the dq rows of its query heads, so no
 * two threads write the same memory and the result is deterministic for a thread count.
 * Semantics: kernels/kernels.h. Sliding windows and soft-caps run the AVX2 level's blocked kernel
 * (attention_avx2.c), head sizes above LD_ATTN_MAX_D the reference. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/simd_avx512.h"
#include "kernels/cpu/cpu.h"
#include "kernels/ref/ref.h"

#define QB 32
#define KB 64
#define LD_ATTN_MAX_D 256

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

/* sc[j] = scale * q . key_j for the KB keys of a transposed block (4 vectors of 16). */
static inline void scores_row(float *sc, const float *qi, const float *kt, int64_t D, float scale) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t d = 0; d < D; d++) {
        __m512 qd = _mm512_set1_ps(qi[d]);
        const float *k = kt + d * KB;
        a0 = _mm512_fmadd_ps(qd, _mm512_loadu_ps(k), a0);
        a1 = _mm512_fmadd_ps(qd, _mm512_loadu_ps(k + 16), a1);
        a2 = _mm512_fmadd_ps(qd, _mm512_loadu_ps(k + 32), a2);
        a3 = _mm512_fmadd_ps(qd, _mm512_loadu_ps(k + 48), a3);
    }
    __m512 vs = _mm512_set1_ps(scale);
    _mm512_storeu_ps(sc, _mm512_mul_ps(a0, vs));
    _mm512_storeu_ps(sc + 16, _mm512_mul_ps(a1, vs));
    _mm512_storeu_ps(sc + 32, _mm512_mul_ps(a2, vs));
    _mm512_storeu_ps(sc + 48, _mm512_mul_ps(a3, vs));
}

/* scores_row for R query rows (qs floats apart) at once: each key vector loaded once for
 * all R rows. Every row's operations are scores_row's, in its order. */
static inline __attribute__((always_inline)) void scores_rows(float (*sc)[KB], const float *q0, int64_t qs, const int R,
                                                              const float *kt, int64_t D, float scale) {
    __m512 a[4][4];
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) a[r][c] = _mm512_setzero_ps();
    for (int64_t d = 0; d < D; d++) {
        const float *k = kt + d * KB;
        const __m512 k0 = _mm512_loadu_ps(k), k1 = _mm512_loadu_ps(k + 16), k2 = _mm512_loadu_ps(k + 32),
                     k3 = _mm512_loadu_ps(k + 48);
        for (int r = 0; r < R; r++) {
            const __m512 qd = _mm512_set1_ps(q0[r * qs + d]);
            a[r][0] = _mm512_fmadd_ps(qd, k0, a[r][0]);
            a[r][1] = _mm512_fmadd_ps(qd, k1, a[r][1]);
            a[r][2] = _mm512_fmadd_ps(qd, k2, a[r][2]);
            a[r][3] = _mm512_fmadd_ps(qd, k3, a[r][3]);
        }
    }
    const __m512 vs = _mm512_set1_ps(scale);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < 4; c++) _mm512_storeu_ps(sc[r] + 16 * c, _mm512_mul_ps(a[r][c], vs));
}

/* pv_accumulate for R rows of output (os floats apart), D = 16 * ND: each value row loaded
 * once for all R. Keys a row cannot see have p = 0 and add exact zeros. */
static inline __attribute__((always_inline)) void pv_rows(float *o0, int64_t os, const float *corr, const float (*p)[KB],
                                                          const int R, const int ND, const float *rows, int64_t stride,
                                                          int64_t n) {
    __m512 acc[4][8];
    for (int r = 0; r < R; r++) {
        const __m512 vc = _mm512_set1_ps(corr[r]);
        for (int v = 0; v < ND; v++) acc[r][v] = _mm512_mul_ps(vc, _mm512_loadu_ps(o0 + r * os + 16 * v));
    }
    for (int64_t j = 0; j < n; j++) {
        const float *row = rows + j * stride;
        __m512 x[8];
        for (int v = 0; v < ND; v++) x[v] = _mm512_loadu_ps(row + 16 * v);
        for (int r = 0; r < R; r++) {
            const __m512 pj = _mm512_set1_ps(p[r][j]);
            for (int v = 0; v < ND; v++) acc[r][v] = _mm512_fmadd_ps(pj, x[v], acc[r][v]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int v = 0; v < ND; v++) _mm512_storeu_ps(o0 + r * os + 16 * v, acc[r][v]);
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
static inline void pv_accumulate_strided(float *o, float corr, const float *p, int64_t pstride, const float *rows,
                                         int64_t stride, int64_t n, int64_t D) {
    if (D % 16 == 0 && D <= 128) {
        __m512 acc[8];
        const int nd = (int)(D / 16);
        __m512 vc = _mm512_set1_ps(corr);
        for (int v = 0; v < nd; v++) acc[v] = _mm512_mul_ps(vc, _mm512_loadu_ps(o + 16 * v));
        for (int64_t j = 0; j < n; j++) {
            __m512 pj = _mm512_set1_ps(p[j * pstride]);
            const float *r = rows + j * stride;
            for (int v = 0; v < nd; v++) acc[v] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(r + 16 * v), acc[v]);
        }
        for (int v = 0; v < nd; v++) _mm512_storeu_ps(o + 16 * v, acc[v]);
        return;
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
    __m512 vs = _mm512_set1_ps(shift);
    for (int j = 0; j < KB; j += 16) _mm512_storeu_ps(p + j, ld_exp512(_mm512_sub_ps(_mm512_loadu_ps(p + j), vs)));
}

/* One key block for R query rows at once (rows `rs` floats apart in q and out): the online
 * softmax step of fwd_unit's per-row loop, with the score and P.V products shared. A row
 * that sees no key of the block keeps its state (corr 1, p 0). */
static inline __attribute__((always_inline)) void block_rows(const int R, const int ND, float *o0, const float *q0,
                                                             int64_t rs, const float *kt, const float *vrows,
                                                             int64_t kstride, const int64_t *vis, float *mrow,
                                                             float *lrow, float scale) {
    float sc[4][KB], corr[4];
    int64_t nmax = 0;
    scores_rows(sc, q0, rs, R, kt, 16 * ND, scale);
    for (int r = 0; r < R; r++) {
        if (vis[r] <= 0) {
            corr[r] = 1.0f;
            memset(sc[r], 0, sizeof sc[r]);
            continue;
        }
        float mx = mrow[r];
        for (int64_t j = 0; j < vis[r]; j++) mx = sc[r][j] > mx ? sc[r][j] : mx;
        for (int64_t j = vis[r]; j < KB; j++) sc[r][j] = -INFINITY;
        corr[r] = expf(mrow[r] - mx);
        exp_shift64(sc[r], mx);
        float sum = 0.0f;
        for (int64_t j = 0; j < vis[r]; j++) sum += sc[r][j];
        lrow[r] = lrow[r] * corr[r] + sum;
        mrow[r] = mx;
        nmax = vis[r] > nmax ? vis[r] : nmax;
    }
    pv_rows(o0, rs, corr, (const float(*)[KB])sc, R, ND, vrows, kstride, nmax);
}

/* block_rows for n (1..4) rows of head size D = 16 nd (nd 2, 4 or 8; n <= 2 when nd = 8). */
static void block_rows_n(int n, int nd, float *o0, const float *q0, int64_t rs, const float *kt, const float *vrows,
                         int64_t kstride, const int64_t *vis, float *mrow, float *lrow, float scale) {
#define BR(R, ND) block_rows(R, ND, o0, q0, rs, kt, vrows, kstride, vis, mrow, lrow, scale)
    if (nd == 8) {
        if (n == 1) BR(1, 8);
        else BR(2, 8);
    } else if (nd == 4) {
        switch (n) {
        case 1: BR(1, 4); break;
        case 2: BR(2, 4); break;
        case 3: BR(3, 4); break;
        default: BR(4, 4); break;
        }
    } else {
        switch (n) {
        case 1: BR(1, 2); break;
        case 2: BR(2, 2); break;
        case 3: BR(3, 2); break;
        default: BR(4, 2); break;
        }
    }
#undef BR
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
    /* prefill: rows in groups sharing each loaded key and value vector (head sizes 32, 64, 128) */
    const int nd = (int)(D / 16), group = D == 128 ? 2 : 4;
    const bool grouped = !direct && D % 16 == 0 && (nd == 2 || nd == 4 || nd == 8);
    const int64_t rs = Hq * D;
    for (int64_t j0 = 0; j0 < end_max; j0 += KB) {
        int64_t nk = end_max - j0 < KB ? end_max - j0 : KB;
        if (!direct) transpose_block(kt, kb, kstride, j0, nk, D);
        if (grouped) {
            for (int64_t r0 = 0; r0 < ni; r0 += group) {
                const int n = ni - r0 < group ? (int)(ni - r0) : group;
                int64_t vis[4];
                for (int r = 0; r < n; r++) vis[r] = ends[r0 + r] - j0 < nk ? ends[r0 + r] - j0 : nk;
                const int64_t row = (b * s->Tq + i0 + r0) * Hq + h;
                block_rows_n(n, nd, out + row * D, q + row * D, rs, kt, vb + j0 * kstride, kstride, vis, mrow + r0,
                             lrow + r0, s->scale);
            }
            continue;
        }
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

static void attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v, const ld_attn_shape *s) {
    if (s->window > 0 || s->softcap > 0) { /* sliding window / soft-cap: the AVX2 blocked kernel has them */
        ld_kernels_cpu_avx2_attn.attention_fwd(out, lse, q, k, v, s);
        return;
    }
    if (s->D > LD_ATTN_MAX_D) {
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
    /* all tiles live on the stack; sliding windows and soft-caps run the AVX2 kernel */
    return ld_kernels_cpu_avx2_attn.attention_bwd_scratch(s);
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
    if (s->window > 0 || s->softcap > 0) {
        ld_kernels_cpu_avx2_attn.attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, s, scratch);
        return;
    }
    if (s->D > LD_ATTN_MAX_D) {
        ld_ref_attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, s, scratch);
        return;
    }
    attn_bwd_args a = {dq, dk, dv, dout, out, lse, q, k, v, s};
    ld_par_for(s->B * s->Hkv, 1, bwd_units, &a);
}

const ld_kernels ld_kernels_cpu_avx512_attn = {
    .name = "cpu-avx512",
    .attention_fwd = attention_fwd,
    .attention_bwd_scratch = attention_bwd_scratch,
    .attention_bwd = attention_bwd,
};

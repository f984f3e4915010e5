/* kernels/cpu/attention_blocked.h — internal: blocked (FlashAttention-2 style) attention,
 * forward and backward, written once over a vector width of VW floats and included by
 * attention_avx2.c (VW = 8) and attention_avx512.c (VW = 16), which first define the vector layer
 * this file uses (below). Built on an MR x NR register-blocked micro-kernel (NR = 2 VW columns:
 * 2 vector loads and MR broadcasts per step, 2 MR accumulators) that reads both operands in
 * place through strides, so query, key, value and gradient rows are used where they lie and
 * only key and value blocks are transposed (8 x 8 in registers).
 *
 * Queries in blocks of QB rows, keys in blocks of KB; one block pair's score tile S
 * (QB x KB), probability tile P and score-gradient tile dS live on the stack, softmax is
 * online (running max and sum per row), and nothing of size Tq x Tk is ever stored. Every
 * product of a block pair skips what the mask hides: a row panel's score tiles cover only
 * the key columns its rows see, and P·V, dS·K, dS^T·Q, P^T·dO run only over the steps whose
 * probabilities can be nonzero, so a causal diagonal block costs about half a full one.
 * Sliding windows and soft-capped scores (Gemma 2, Mistral) are part of the mask and the
 * score transform; they do not leave the kernel. A few queries (decoding) take dot products
 * with the key rows directly instead of transposing the block.
 *
 * Forward: parallel over (batch, query head, query block). Backward: parallel over
 * (batch, kv head): that unit owns its dk/dv rows and the dq rows of its query heads, so no
 * two threads write the same memory and the result is deterministic for a thread count. It
 * walks key blocks outermost (each transposed once) and, within one, every query head of the
 * group and every query block that sees it.
 *
 * The visible keys of a query, [start, end), never move left as the query moves right
 * (causal ends, window starts and padding lengths all grow or stay), so the queries that
 * see a key form a contiguous run: the backward's dK and dV products use that.
 * Semantics: kernels/kernels.h. Head sizes above LD_ATTN_MAX_D fall back to the reference.
 *
 * The vector layer the includer defines (static inline, always inlined):
 *   VW, MR         lanes per vector; rows of the micro-kernel (at most 8)
 *   vf, vmask, vtail, vint: a vector of VW floats; a lane mask; a tail mask; VW int32 lanes
 *   v_zero() v_set1(x) v_loadu(p) v_storeu(p, x) v_bcast(p) v_add v_sub v_mul v_max
 *   v_fma(a, b, c) = a b + c; v_exp(x); v_tanh(x, &sech2); v_hsum(x), v_hmax(x) (fixed order)
 *   v_tail(n): the first clamp(n, 0, VW) lanes; v_loadt(p, t, full), v_storet(p, t, full, x):
 *     those lanes only (all VW when full), masked-off lanes load as 0
 *   v_lanes(j, cs, ce): lanes j .. j + VW - 1 that lie in [cs, ce)
 *   v_loadi(p): VW int32; v_in(cs, ce, j): lanes with cs <= j < ce
 *   v_and(x, m): x in the lanes of m, else 0; v_sel(m, a, b): a in the lanes of m, else b
 *   v_neq(a, b): lanes where a != b (ordered); v_eq_bits(a, b): bit i set where a_i == b_i */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx2.h" /* the 8 x 8 transposes and f16 widening, at both widths */
#include "kernels/ref/ref.h"

#define QB 64
#define KB 64
#define NR (2 * VW)
#define LD_ATTN_MAX_D 256
#define INLINE static inline __attribute__((always_inline))

/* Keys [*start, end) are visible to query i (kernels.h: padding, causal, sliding window). */
static inline int64_t visible(const ld_attn_shape *s, int64_t b, int64_t i, int64_t *start) {
    int64_t end = s->Tk;
    if (s->key_len && s->key_len[b] < end) end = s->key_len[b] < 0 ? 0 : s->key_len[b];
    if (s->causal && s->q_offset + i + 1 < end) end = s->q_offset + i + 1;
    if (end < 0) end = 0;
    *start = s->window > 0 && s->q_offset + i + 1 - s->window > 0 ? s->q_offset + i + 1 - s->window : 0;
    if (end < *start) end = *start;
    return end;
}

/* ---- the micro-kernel and the strided product built on it -------------------------- */

/* C[r, 0:nc) (=, or += when acc) alpha * sum_{t < steps} A(r, t) B(t, 0:nc) for r < R, with
 * A(r, t) = a[r * ars + t * ats] and B(t, c) = b[t * ldb + c]; full: nc == NR (else lanes
 * beyond nc are neither loaded from B nor stored to C). */
INLINE void tile(const int R, const int full, int64_t steps, const float *a, int64_t ars, int64_t ats, const float *b,
                 int64_t ldb, float *c, int64_t ldc, int nc, float alpha, int acc) {
    vf s[MR][2];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) s[r][0] = s[r][1] = v_zero();
    const vtail m0 = v_tail(nc), m1 = v_tail(nc - VW);
    const float *ar[MR];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) ar[r] = a + r * ars;
    for (int64_t t = 0; t < steps; t++) {
        const vf b0 = v_loadt(b, m0, full), b1 = v_loadt(b + VW, m1, full);
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const vf av = v_bcast(ar[r] + t * ats);
            s[r][0] = v_fma(av, b0, s[r][0]);
            s[r][1] = v_fma(av, b1, s[r][1]);
        }
        b += ldb;
    }
    const vf va = v_set1(alpha);
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        float *cr = c + r * ldc;
        vf x0 = v_mul(va, s[r][0]), x1 = v_mul(va, s[r][1]);
        if (acc) x0 = v_add(x0, v_loadt(cr, m0, full)), x1 = v_add(x1, v_loadt(cr + VW, m1, full));
        v_storet(cr, m0, full, x0);
        v_storet(cr + VW, m1, full, x1);
    }
}

static void tile_any(int R, int64_t steps, const float *a, int64_t ars, int64_t ats, const float *b, int64_t ldb,
                     float *c, int64_t ldc, int nc, float alpha, int acc) {
#define T(RR)                                                                                                    \
    case RR:                                                                                                     \
        if (nc == NR) tile(RR, 1, steps, a, ars, ats, b, ldb, c, ldc, nc, alpha, acc);                          \
        else tile(RR, 0, steps, a, ars, ats, b, ldb, c, ldc, nc, alpha, acc);                                   \
        break;
    switch (R) {
        T(1) T(2) T(3) T(4) T(5) T(6)
#if MR > 6
        T(7) T(8)
#endif
    default: break;
    }
#undef T
}

/* What the optional per-row ranges [lo[r], hi[r]) of mm restrict. */
enum { RANGE_COLS, RANGE_STEPS };

/* C[M, N] (=, or += when acc) alpha A[M, steps] B[steps, N] (A(r, t) = a[r ars + t ats],
 * B(t, c) = b[t ldb + c], C(r, c) = c[r ldc + c]), by panels of MR rows. With lo/hi, row r
 * needs only columns [lo[r], hi[r]) of C (RANGE_COLS: the rest of its row may be left
 * unwritten) or has A(r, t) = 0 outside steps [lo[r], hi[r]) (RANGE_STEPS); a panel works on
 * the union of its rows' ranges. */
static void mm(int64_t M, int64_t N, int64_t steps, const float *a, int64_t ars, int64_t ats, const float *b,
               int64_t ldb, float *c, int64_t ldc, float alpha, int acc, const int64_t *lo, const int64_t *hi,
               int kind) {
    for (int64_t r0 = 0; r0 < M; r0 += MR) {
        const int R = M - r0 < MR ? (int)(M - r0) : MR;
        int64_t t0 = 0, t1 = steps, c0 = 0, c1 = N;
        if (lo) {
            int64_t mn = INT64_MAX, mx = INT64_MIN;
            for (int r = 0; r < R; r++)
                if (hi[r0 + r] > lo[r0 + r]) {
                    mn = lo[r0 + r] < mn ? lo[r0 + r] : mn;
                    mx = hi[r0 + r] > mx ? hi[r0 + r] : mx;
                }
            if (mx <= mn) {
                if (kind == RANGE_STEPS && !acc) t0 = t1 = 0; /* the product is zero, still written */
                else continue;
            } else if (kind == RANGE_STEPS) t0 = mn, t1 = mx;
            else { /* whole NR-column tiles where N allows (the extra columns are don't-cares) */
                c0 = mn & ~(int64_t)(NR - 1);
                c1 = (mx + NR - 1) & ~(int64_t)(NR - 1);
                if (c1 > N) c1 = N;
            }
        }
        for (int64_t cc = c0; cc < c1; cc += NR)
            tile_any(R, t1 - t0, a + r0 * ars + t0 * ats, ars, ats, b + t0 * ldb + cc, ldb, c + r0 * ldc + cc, ldc,
                     c1 - cc < NR ? (int)(c1 - cc) : NR, alpha, acc);
    }
}

/* ---- block helpers ------------------------------------------------------------------ */

/* dst[i * KB + c] = src[c * stride + i] for i, c < 8: the unpack / shuffle / permute
 * transpose written out, so that the block stays in registers (at -O2 a loop over r[8]
 * kept it on the stack). */
INLINE void transpose8(float *dst, const float *src, int64_t stride) {
    const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + stride), r2 = _mm256_loadu_ps(src + 2 * stride),
                 r3 = _mm256_loadu_ps(src + 3 * stride), r4 = _mm256_loadu_ps(src + 4 * stride),
                 r5 = _mm256_loadu_ps(src + 5 * stride), r6 = _mm256_loadu_ps(src + 6 * stride),
                 r7 = _mm256_loadu_ps(src + 7 * stride);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                 t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee),
                 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee),
                 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee),
                 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + KB, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * KB, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * KB, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * KB, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * KB, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * KB, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * KB, _mm256_permute2f128_ps(u3, u7, 0x31));
}

/* t[d * KB + j] = src[j * stride + d] for j < nk, d < D, and zero for nk <= j < KB (so
 * score tiles may always be NR keys wide). */
static void transpose_block(float *t, const float *src, int64_t stride, int64_t nk, int64_t D) {
    int64_t j = 0;
    for (; j + 8 <= nk; j += 8) {
        int64_t d = 0;
        for (; d + 8 <= D; d += 8) transpose8(t + d * KB + j, src + j * stride + d, stride);
        for (; d < D; d++)
            for (int i = 0; i < 8; i++) t[d * KB + j + i] = src[(j + i) * stride + d];
    }
    for (int64_t d = 0; d < D; d++) {
        for (int64_t jj = j; jj < nk; jj++) t[d * KB + jj] = src[jj * stride + d];
        for (int64_t jj = nk; jj < KB; jj++) t[d * KB + jj] = 0.0f;
    }
}

/* Asks for rows [0, n) (D floats each, `stride` apart) to be brought into the cache: a
 * unit's first touch of its rows is otherwise a chain of cache misses, 8 rows at a time. */
static void prefetch_rows(const float *p, int64_t stride, int64_t n, int64_t D) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t d = 0; d < D; d += 16) _mm_prefetch((const char *)(p + r * stride + d), _MM_HINT_T0);
}

/* The same into the level-2 cache (for the next unit, while this one computes). */
static void prefetch_rows_l2(const float *p, int64_t stride, int64_t n, int64_t D) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t d = 0; d < D; d += 16) _mm_prefetch((const char *)(p + r * stride + d), _MM_HINT_T1);
}

/* Soft-capped scores: x = cap tanh(x / cap) for the VW-lane chunks of x that meet [cs, ce);
 * with slope, slope[j] = 1 - tanh^2 (d capped / d raw) there. */
static void softcap_row(float *x, float *slope, int64_t cs, int64_t ce, float cap) {
    const vf c = v_set1(cap), ic = v_set1(1.0f / cap);
    for (int64_t j = cs & ~(int64_t)(VW - 1); j < ce; j += VW) {
        vf s2;
        v_storeu(x + j, v_mul(c, v_tanh(v_mul(v_loadu(x + j), ic), &s2)));
        if (slope) v_storeu(slope + j, s2);
    }
}

/* y[0..D) *= a */
static inline void scale_d(float *y, float a, int64_t D) {
    const vf va = v_set1(a);
    int64_t d = 0;
    for (; d + VW <= D; d += VW) v_storeu(y + d, v_mul(va, v_loadu(y + d)));
    if (d < D) {
        const vtail m = v_tail(D - d);
        v_storet(y + d, m, 0, v_mul(va, v_loadt(y + d, m, 0)));
    }
}

static inline float dot_d(const float *x, const float *y, int64_t D) {
    vf acc = v_zero();
    int64_t d = 0;
    for (; d + VW <= D; d += VW) acc = v_fma(v_loadu(x + d), v_loadu(y + d), acc);
    if (d < D) {
        const vtail m = v_tail(D - d);
        acc = v_fma(v_loadt(x + d, m, 0), v_loadt(y + d, m, 0), acc);
    }
    return v_hsum(acc);
}

/* ---- forward ------------------------------------------------------------------------ */

/* One online-softmax step of a row: sc[0 .. nw) (nw a multiple of VW) holds the block's
 * scores, [cs, ce) the visible ones. Turns sc into probabilities relative to the new running max (0 outside
 * [cs, ce)), updates *m and *l, and returns the factor the row's output must be scaled by
 * (1 when the row sees nothing here). */
static float softmax_step(float *sc, int64_t nw, int64_t cs, int64_t ce, float *m, float *l) {
    if (ce <= cs) {
        memset(sc, 0, (size_t)nw * sizeof(float));
        return 1.0f;
    }
    const vf ninf = v_set1(-INFINITY);
    vf vm = ninf;
    for (int64_t j = cs & ~(int64_t)(VW - 1); j < ce; j += VW)
        vm = v_max(vm, v_sel(v_lanes(j, cs, ce), v_loadu(sc + j), ninf));
    float mx = v_hmax(vm);
    if (*m > mx) mx = *m;
    const float corr = expf(*m - mx); /* 0 on the row's first visible block (*m = -inf) */
    const vf vmx = v_set1(mx);
    vf vs = v_zero();
    for (int64_t j = 0; j < nw; j += VW) {
        if (j + VW <= cs || j >= ce) {
            v_storeu(sc + j, v_zero());
            continue;
        }
        const vf p = v_and(v_exp(v_sub(v_loadu(sc + j), vmx)), v_lanes(j, cs, ce));
        vs = v_add(vs, p);
        v_storeu(sc + j, p);
    }
    *l = *l * corr + v_hsum(vs);
    *m = mx;
    return corr;
}

/* The queries (rows of a block) that see key j of the block: [qlo[j], qhi[j]), a contiguous
 * run (see the top of the file), for j < nk. */
static void key_runs(const int64_t *cs, const int64_t *ce, int64_t ni, int64_t nk, int64_t *qlo, int64_t *qhi) {
    for (int64_t j = 0, a = 0, e = 0; j < nk; j++) {
        while (a < ni && ce[a] <= j) a++;
        if (e < a) e = a;
        while (e < ni && cs[e] <= j && ce[e] > j) e++;
        qlo[j] = a, qhi[j] = e;
    }
}

/* Decoding (ni < 4 queries): scores as dot products with the key rows in place (key and
 * value rows kstride and vstride floats apart). */
static void fwd_direct(float *ob, const float *qb, const float *kb, const float *vb, int64_t kstride, int64_t vstride,
                       const ld_attn_shape *s, int64_t ni, const int64_t *st, const int64_t *en, int64_t lo, int64_t hi,
                       float *mrow, float *lrow) {
    const int64_t D = s->D, qstride = s->Hq * D;
    float S[4 * KB];
    int64_t cs[4], ce[4];
    for (int64_t j0 = lo; j0 < hi; j0 += KB) {
        const int64_t nk = hi - j0 < KB ? hi - j0 : KB, nw = (nk + VW - 1) & ~(int64_t)(VW - 1);
        for (int64_t r = 0; r < ni; r++) {
            cs[r] = st[r] - j0 < 0 ? 0 : st[r] - j0 > nk ? nk : st[r] - j0;
            ce[r] = en[r] - j0 < cs[r] ? cs[r] : en[r] - j0 > nk ? nk : en[r] - j0;
            for (int64_t j = cs[r]; j < ce[r]; j++)
                S[r * KB + j] = s->scale * dot_d(qb + r * qstride, kb + (j0 + j) * kstride, D);
            if (s->softcap > 0 && ce[r] > cs[r]) softcap_row(S + r * KB, NULL, cs[r], ce[r], s->softcap);
            const bool empty = mrow[r] == -INFINITY; /* the output row is still all zero */
            const float corr = softmax_step(S + r * KB, nw, cs[r], ce[r], &mrow[r], &lrow[r]);
            if (corr != 1.0f && !empty) scale_d(ob + r * qstride, corr, D);
        }
        mm(ni, D, nk, S, KB, 1, vb + j0 * vstride, vstride, ob, qstride, 1.0f, 1, cs, ce, RANGE_STEPS);
    }
}

/* Prefill: per key block the transposed scores S^T = K Q^T (key rows read in place, the
 * query block transposed once into qt), the online softmax over each key column of S^T
 * with VW queries per vector (no horizontal max or sum), then O += P V from P^T. */
static void fwd_blocked(float *ob, const float *qb, const float *kb, const float *vb, int64_t kstride, int64_t vstride,
                        const ld_attn_shape *s, int64_t ni, const int64_t *st, const int64_t *en, int64_t lo,
                        int64_t hi, float *mrow, float *lrow, float *qt) {
    const int64_t D = s->D, qstride = s->Hq * D;
    float ST[KB * QB], corr[QB];
    int64_t cs[QB], ce[QB], qlo[KB], qhi[KB];
    int32_t cs32[QB], ce32[QB];
    const vf ninf = v_set1(-INFINITY), one = v_set1(1.0f);
    if (hi > lo) {
        const int64_t n = hi - lo < KB ? hi - lo : KB;
        prefetch_rows(qb, qstride, ni, D);
        prefetch_rows(kb + lo * kstride, kstride, n, D);
        prefetch_rows(vb + lo * vstride, vstride, n, D);
    }
    transpose_block(qt, qb, qstride, ni, D); /* qt[d * QB + i] (QB == KB) */
    for (int64_t j0 = lo; j0 < hi; j0 += KB) {
        const int64_t nk = hi - j0 < KB ? hi - j0 : KB;
        for (int64_t r = 0; r < QB; r++) {
            if (r < ni) {
                cs[r] = st[r] - j0 < 0 ? 0 : st[r] - j0 > nk ? nk : st[r] - j0;
                ce[r] = en[r] - j0 < cs[r] ? cs[r] : en[r] - j0 > nk ? nk : en[r] - j0;
            } else cs[r] = ce[r] = 0; /* padding lanes see nothing */
            cs32[r] = (int32_t)cs[r], ce32[r] = (int32_t)ce[r];
        }
        key_runs(cs, ce, ni, nk, qlo, qhi);
        mm(nk, QB, D, kb + j0 * kstride, kstride, 1, qt, QB, ST, QB, s->scale, 0, qlo, qhi, RANGE_COLS);
        if (s->softcap > 0)
            for (int64_t j = 0; j < nk; j++)
                if (qhi[j] > qlo[j]) softcap_row(ST + j * QB, NULL, qlo[j], qhi[j], s->softcap);
        for (int64_t c = 0; c < ni; c += VW) {
            int64_t jmin = INT64_MAX, jmax = 0;
            for (int64_t r = c; r < c + VW && r < ni; r++)
                if (ce[r] > cs[r]) jmin = cs[r] < jmin ? cs[r] : jmin, jmax = ce[r] > jmax ? ce[r] : jmax;
            if (jmax <= jmin) {
                for (int64_t j = 0; j < nk; j++) v_storeu(ST + j * QB + c, v_zero());
                v_storeu(corr + c, one);
                continue;
            }
            const vint vcs = v_loadi(cs32 + c), vce = v_loadi(ce32 + c);
            const vf mold = v_loadu(mrow + c);
            vf vm = mold;
            for (int64_t j = jmin; j < jmax; j++)
                vm = v_max(vm, v_sel(v_in(vcs, vce, (int)j), v_loadu(ST + j * QB + c), ninf));
            /* lanes that have seen no key yet keep m = -inf and scale by 1 */
            v_storeu(corr + c, v_sel(v_neq(vm, ninf), v_exp(v_sub(mold, vm)), one));
            vf vs = v_zero();
            for (int64_t j = 0; j < nk; j++) {
                float *p = ST + j * QB + c;
                if (j < jmin || j >= jmax) {
                    v_storeu(p, v_zero());
                    continue;
                }
                const vf e = v_and(v_exp(v_sub(v_loadu(p), vm)), v_in(vcs, vce, (int)j));
                vs = v_add(vs, e);
                v_storeu(p, e);
            }
            v_storeu(lrow + c, v_fma(v_loadu(lrow + c), v_loadu(corr + c), vs));
            v_storeu(mrow + c, vm);
            const unsigned empty = v_eq_bits(mold, ninf); /* rows still all zero */
            for (int64_t r = c; r < c + VW && r < ni; r++)
                if (corr[r] != 1.0f && !((empty >> (r - c)) & 1)) scale_d(ob + r * qstride, corr[r], D);
        }
        mm(ni, D, nk, ST, 1, QB, vb + j0 * vstride, vstride, ob, qstride, 1.0f, 1, cs, ce, RANGE_STEPS);
    }
}

/* Queries i0 .. i0 + ni - 1 of head h of batch b. qt: a QB x LD_ATTN_MAX_D transpose buffer. */
static void fwd_unit(float *out, float *lse, const float *q, const float *k, const float *v, const ld_attn_shape *s,
                     int64_t b, int64_t h, int64_t i0, int64_t ni, float *qt) {
    const int64_t D = s->D, Hq = s->Hq, Hkv = s->Hkv, hk = h / (Hq / Hkv);
    const int64_t kstride = Hkv * D, qstride = Hq * D;
    float mrow[QB], lrow[QB];
    int64_t st[QB], en[QB], lo = INT64_MAX, hi = 0;
    float *ob = out + ((b * s->Tq + i0) * Hq + h) * D;
    const float *qb = q + ((b * s->Tq + i0) * Hq + h) * D;
    for (int64_t r = 0; r < QB; r++) mrow[r] = -INFINITY, lrow[r] = 0.0f;
    for (int64_t r = 0; r < ni; r++) {
        en[r] = visible(s, b, i0 + r, &st[r]);
        if (en[r] > st[r]) {
            lo = st[r] < lo ? st[r] : lo;
            hi = en[r] > hi ? en[r] : hi;
        }
        memset(ob + r * qstride, 0, (size_t)D * sizeof(float));
    }
    const float *kb = k + (b * s->Tk) * kstride + hk * D, *vb = v + (b * s->Tk) * kstride + hk * D;
    /* a few queries: a transpose costs more than it saves */
    if (ni < 4) fwd_direct(ob, qb, kb, vb, kstride, kstride, s, ni, st, en, lo, hi, mrow, lrow);
    else fwd_blocked(ob, qb, kb, vb, kstride, kstride, s, ni, st, en, lo, hi, mrow, lrow, qt);
    for (int64_t r = 0; r < ni; r++) {
        float *l = lse + (b * Hq + h) * s->Tq + i0 + r;
        if (en[r] <= st[r]) {
            *l = -INFINITY;
            continue;
        }
        scale_d(ob + r * qstride, 1.0f / lrow[r], D);
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
    float qt[LD_ATTN_MAX_D * QB];
    for (int64_t u = u0; u < u1; u++) {
        int64_t qb = u % a->nqb, h = (u / a->nqb) % s->Hq, b = u / (a->nqb * s->Hq);
        int64_t i0 = qb * QB, ni = s->Tq - i0 < QB ? s->Tq - i0 : QB;
        if (u + 1 < u1) { /* the next unit's query rows and first key and value block */
            const int64_t nqb = (u + 1) % a->nqb, nh = ((u + 1) / a->nqb) % s->Hq, nb = (u + 1) / (a->nqb * s->Hq);
            const int64_t n0 = nqb * QB, nn = s->Tq - n0 < QB ? s->Tq - n0 : QB, kstride = s->Hkv * s->D;
            int64_t st, en = visible(s, nb, n0 + nn - 1, &st);
            (void)visible(s, nb, n0, &st); /* the first row's start is the block's least */
            const int64_t nk = en - st < KB ? en - st : KB, hk = nh / (s->Hq / s->Hkv);
            prefetch_rows_l2(a->q + ((nb * s->Tq + n0) * s->Hq + nh) * s->D, s->Hq * s->D, nn, s->D);
            if (nk > 0) {
                prefetch_rows_l2(a->k + (nb * s->Tk + st) * kstride + hk * s->D, kstride, nk, s->D);
                prefetch_rows_l2(a->v + (nb * s->Tk + st) * kstride + hk * s->D, kstride, nk, s->D);
            }
        }
        fwd_unit(a->out, a->lse, a->q, a->k, a->v, s, b, h, i0, ni, qt);
    }
}

static void attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                          const ld_attn_shape *s) {
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

/* ---- forward over a KV cache's f16 / Q8_0 rows (attention_fwd_kv) -------------------- */

/* Heads of one KV group a unit of attention_fwd_kv takes together (each widened key block
 * serves all of them). */
#define KV_HEADS 8

/* dst[0 .. D) = values e0 .. e0 + D of the row at r in format t: f16 by vcvtph2ps (exact),
 * Q8_0 as the float product q * d (the reference's, so the same bits). */
static void widen_row(float *dst, const uint8_t *r, int t, int64_t e0, int64_t D) {
    int64_t d = 0;
    if (t == LD_KV_F16) {
        const uint16_t *h = (const uint16_t *)r + e0;
        for (; d + 8 <= D; d += 8) _mm256_storeu_ps(dst + d, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + d))));
        for (; d < D; d++) dst[d] = _cvtsh_ss(h[d]);
        return;
    }
    /* Q8_0: eight values at e0 + d never straddle a block of 32 when e0 and d are multiples of 8 */
    uint16_t hd;
    if (e0 % 8 == 0)
        for (; d + 8 <= D; d += 8) {
            const int64_t e = e0 + d;
            const uint8_t *blk = r + (e / 32) * LD_KV_Q8_0_BLOCK;
            memcpy(&hd, blk, 2);
            const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + e % 32))));
            _mm256_storeu_ps(dst + d, _mm256_mul_ps(q, _mm256_set1_ps(_cvtsh_ss(hd))));
        }
    for (; d < D; d++) {
        const int64_t e = e0 + d;
        const uint8_t *blk = r + (e / 32) * LD_KV_Q8_0_BLOCK;
        memcpy(&hd, blk, 2);
        dst[d] = (float)(int8_t)blk[2 + e % 32] * _cvtsh_ss(hd);
    }
}

/* Rows row0 .. row0 + nk (values e0 .. e0 + D of each) of rows in format t as f32 rows:
 * f32 rows in place (*stride = the row's floats), the others widened into tile (D apart). */
static const float *kv_block(int64_t *stride, float *tile, const void *rows, int t, int64_t rw, int64_t row0,
                             int64_t nk, int64_t e0, int64_t D) {
    if (t == LD_KV_F32) {
        *stride = rw;
        return (const float *)rows + row0 * rw + e0;
    }
    const size_t rb = ld_ref_kv_row_bytes(t, rw);
    for (int64_t j = 0; j < nk; j++) widen_row(tile + j * D, (const uint8_t *)rows + (size_t)(row0 + j) * rb, t, e0, D);
    *stride = D;
    return tile;
}

typedef struct {
    float *out, *lse;
    const float *q;
    const void *k, *v;
    int kt, vt;
    const ld_attn_shape *s;
    int64_t nqb, nhc; /* query blocks; chunks of KV_HEADS heads per KV head */
} attn_kv_args;

/* Queries i0 .. i0 + ni - 1 of heads h0 .. h0 + nh - 1 (all of KV head hk) of batch b: per
 * block of KB keys, the block's keys and values are widened once, then each head runs
 * fwd_unit's arithmetic on it (fwd_direct / fwd_blocked over that one block, the running
 * max and sum per head and row carried from block to block: the blocks are fwd_unit's, so
 * the result is attention_fwd's on the widened rows, bit for bit). */
static void fwd_unit_kv(const attn_kv_args *a, int64_t b, int64_t hk, int64_t h0, int64_t nh, int64_t i0, int64_t ni,
                        float *qt, float *kt, float *vt) {
    const ld_attn_shape *s = a->s;
    const int64_t D = s->D, Hq = s->Hq, Wkv = s->Hkv * D;
    float mrow[KV_HEADS][QB], lrow[KV_HEADS][QB];
    int64_t st[QB], en[QB], bst[QB], ben[QB], lo = INT64_MAX, hi = 0;
    for (int64_t r = 0; r < ni; r++) {
        en[r] = visible(s, b, i0 + r, &st[r]);
        if (en[r] > st[r]) {
            lo = st[r] < lo ? st[r] : lo;
            hi = en[r] > hi ? en[r] : hi;
        }
    }
    for (int64_t g = 0; g < nh; g++) {
        for (int64_t r = 0; r < QB; r++) mrow[g][r] = -INFINITY, lrow[g][r] = 0.0f;
        for (int64_t r = 0; r < ni; r++) memset(a->out + ((b * s->Tq + i0 + r) * Hq + h0 + g) * D, 0, (size_t)D * sizeof(float));
    }
    for (int64_t j0 = lo; j0 < hi; j0 += KB) {
        const int64_t nk = hi - j0 < KB ? hi - j0 : KB;
        int64_t ks, vs;
        const float *kb = kv_block(&ks, kt, a->k, a->kt, Wkv, b * s->Tk + j0, nk, hk * D, D);
        const float *vb = kv_block(&vs, vt, a->v, a->vt, Wkv, b * s->Tk + j0, nk, hk * D, D);
        for (int64_t r = 0; r < ni; r++) bst[r] = st[r] - j0, ben[r] = en[r] - j0; /* the block's key 0 is j0 */
        for (int64_t g = 0; g < nh; g++) {
            float *ob = a->out + ((b * s->Tq + i0) * Hq + h0 + g) * D;
            const float *qb = a->q + ((b * s->Tq + i0) * Hq + h0 + g) * D;
            if (ni < 4) fwd_direct(ob, qb, kb, vb, ks, vs, s, ni, bst, ben, 0, nk, mrow[g], lrow[g]);
            else fwd_blocked(ob, qb, kb, vb, ks, vs, s, ni, bst, ben, 0, nk, mrow[g], lrow[g], qt);
        }
    }
    for (int64_t g = 0; g < nh; g++)
        for (int64_t r = 0; r < ni; r++) {
            float *l = a->lse + (b * Hq + h0 + g) * s->Tq + i0 + r;
            if (en[r] <= st[r]) {
                *l = -INFINITY;
                continue;
            }
            scale_d(a->out + ((b * s->Tq + i0 + r) * Hq + h0 + g) * D, 1.0f / lrow[g][r], D);
            *l = mrow[g][r] + logf(lrow[g][r]);
        }
}

/* Units [u0, u1): a unit is one block of QB queries of up to KV_HEADS heads of one KV head. */
static void fwd_units_kv(void *arg, int64_t u0, int64_t u1, int piece) {
    (void)piece;
    const attn_kv_args *a = arg;
    const ld_attn_shape *s = a->s;
    const int64_t group = s->Hq / s->Hkv;
    float qt[LD_ATTN_MAX_D * QB], kt[KB * LD_ATTN_MAX_D], vt[KB * LD_ATTN_MAX_D];
    for (int64_t u = u0; u < u1; u++) {
        const int64_t qb = u % a->nqb, hc = (u / a->nqb) % a->nhc, hk = (u / (a->nqb * a->nhc)) % s->Hkv,
                      b = u / (a->nqb * a->nhc * s->Hkv);
        const int64_t i0 = qb * QB, ni = s->Tq - i0 < QB ? s->Tq - i0 : QB;
        const int64_t h0 = hk * group + hc * KV_HEADS, nh = group - hc * KV_HEADS < KV_HEADS ? group - hc * KV_HEADS : KV_HEADS;
        fwd_unit_kv(a, b, hk, h0, nh, i0, ni, qt, kt, vt);
    }
}

static void attention_fwd_kv(float *out, float *lse, const float *q, const void *k, int k_type, const void *v, int v_type,
                             const ld_attn_shape *s) {
    if (s->D > LD_ATTN_MAX_D) {
        ld_ref_attention_fwd_kv(out, lse, q, k, k_type, v, v_type, s);
        return;
    }
    const int64_t nqb = (s->Tq + QB - 1) / QB, group = s->Hq / s->Hkv, nhc = (group + KV_HEADS - 1) / KV_HEADS;
    const int64_t units = s->B * s->Hkv * nhc * nqb;
    const bool par = units > 1 && s->B * s->Hq * s->Tq * s->Tk * s->D >= 16 * LD_PAR_MIN;
    attn_kv_args a = {out, lse, q, k, v, k_type, v_type, s, nqb, nhc};
    ld_par_for(units, par ? 1 : units, fwd_units_kv, &a);
}

/* ---- backward ----------------------------------------------------------------------- */

/* Scratch: D_i = dout_i . out_i of every query row ([B, Hq, Tq], each computed once instead of
 * once per key block); the tiles live on the stack. */
static size_t attention_bwd_scratch(const ld_attn_shape *s) {
    return (size_t)(s->B * s->Hq * s->Tq) * sizeof(float);
}

/* Per block pair (queries i0.., keys j0..; kt, vt the transposed key and value blocks):
 * S = scale Q K^T (capped), P = exp(S - lse), dP = dO V^T, dS = P (dP - D_i) scale cap',
 * then dQ += dS K, dK += dS^T Q, dV += P^T dO. */
static void bwd_pair(float *dq, float *dkb, float *dvb, const float *qb, const float *dob, const float *dib,
                     const float *lseb, const float *kb, const float *kt, const float *vt, const ld_attn_shape *s,
                     int64_t ni, int64_t nk, const int64_t *cs, const int64_t *ce) {
    const int64_t D = s->D, qstride = s->Hq * D, kstride = s->Hkv * D, nw = (nk + VW - 1) & ~(int64_t)(VW - 1);
    float S[QB * KB], P[QB * KB], dS[QB * KB], slope[KB];
    int64_t qlo[KB], qhi[KB];
    mm(ni, KB, D, qb, qstride, 1, kt, KB, S, KB, s->scale, 0, cs, ce, RANGE_COLS);
    mm(ni, KB, D, dob, qstride, 1, vt, KB, dS, KB, 1.0f, 0, cs, ce, RANGE_COLS); /* dP */
    for (int64_t r = 0; r < ni; r++) {
        float *sr = S + r * KB, *pr = P + r * KB, *dr = dS + r * KB;
        if (ce[r] <= cs[r]) {
            memset(pr, 0, (size_t)nw * sizeof(float));
            memset(dr, 0, (size_t)nw * sizeof(float));
            continue;
        }
        const bool cap = s->softcap > 0;
        if (cap) softcap_row(sr, slope, cs[r], ce[r], s->softcap);
        const vf vl = v_set1(lseb[r]), vd = v_set1(dib[r]), vs = v_set1(s->scale);
        for (int64_t j = 0; j < nw; j += VW) {
            if (j + VW <= cs[r] || j >= ce[r]) {
                v_storeu(pr + j, v_zero());
                v_storeu(dr + j, v_zero());
                continue;
            }
            /* lanes outside [cs, ce) may hold anything (tiles cover only the visible columns) */
            const vmask m = v_lanes(j, cs[r], ce[r]);
            const vf p = v_and(v_exp(v_sub(v_loadu(sr + j), vl)), m);
            vf ds = v_mul(v_mul(p, v_sub(v_loadu(dr + j), vd)), vs);
            if (cap) ds = v_mul(ds, v_loadu(slope + j));
            v_storeu(pr + j, p);
            v_storeu(dr + j, v_and(ds, m));
        }
    }
    if (dq) mm(ni, D, nk, dS, KB, 1, kb, kstride, dq, qstride, 1.0f, 1, cs, ce, RANGE_STEPS);
    if (!dkb && !dvb) return;
    key_runs(cs, ce, ni, nk, qlo, qhi);
    if (dkb) mm(nk, D, ni, dS, 1, KB, qb, qstride, dkb, kstride, 1.0f, 1, qlo, qhi, RANGE_STEPS);
    if (dvb) mm(nk, D, ni, P, 1, KB, dob, qstride, dvb, kstride, 1.0f, 1, qlo, qhi, RANGE_STEPS);
}

/* One (batch, kv head): key blocks outermost, then every query head of the group and every
 * query block that sees the key block. */
static void bwd_unit(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                     const float *q, const float *k, const float *v, const ld_attn_shape *s, int64_t b, int64_t hk,
                     float *kt, float *vt, float *di) {
    const int64_t D = s->D, Hq = s->Hq, Hkv = s->Hkv, group = Hq / Hkv, kstride = Hkv * D;
    for (int64_t h = hk * group; h < (hk + 1) * group; h++)
        for (int64_t i = 0; i < s->Tq; i++) {
            const int64_t row = (b * s->Tq + i) * Hq + h;
            di[(b * Hq + h) * s->Tq + i] = dot_d(dout + row * D, out + row * D, D);
        }
    int64_t Tk = s->Tk;
    if (s->key_len && s->key_len[b] < Tk) Tk = s->key_len[b] < 0 ? 0 : s->key_len[b];
    const float *kb = k + (b * s->Tk) * kstride + hk * D, *vb = v + (b * s->Tk) * kstride + hk * D;
    float *dkb = dk ? dk + (b * s->Tk) * kstride + hk * D : NULL, *dvb = dv ? dv + (b * s->Tk) * kstride + hk * D : NULL;
    int64_t cs[QB], ce[QB];
    for (int64_t j0 = 0; j0 < Tk; j0 += KB) {
        const int64_t nk = Tk - j0 < KB ? Tk - j0 : KB;
        bool transposed = false;
        for (int64_t i0 = 0; i0 < s->Tq; i0 += QB) {
            const int64_t ni = s->Tq - i0 < QB ? s->Tq - i0 : QB;
            bool any = false;
            for (int64_t r = 0; r < ni; r++) {
                int64_t st, en = visible(s, b, i0 + r, &st);
                cs[r] = st - j0 < 0 ? 0 : st - j0 > nk ? nk : st - j0;
                ce[r] = en - j0 < cs[r] ? cs[r] : en - j0 > nk ? nk : en - j0;
                any = any || ce[r] > cs[r];
            }
            if (!any) continue;
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                const int64_t row = (b * s->Tq + i0) * Hq + h;
                prefetch_rows(q + row * D, Hq * D, ni, D);
                prefetch_rows(dout + row * D, Hq * D, ni, D);
                if (dq) prefetch_rows(dq + row * D, Hq * D, ni, D);
            }
            if (!transposed) {
                prefetch_rows(kb + j0 * kstride, kstride, nk, D);
                prefetch_rows(vb + j0 * kstride, kstride, nk, D);
                transpose_block(kt, kb + j0 * kstride, kstride, nk, D);
                transpose_block(vt, vb + j0 * kstride, kstride, nk, D);
                transposed = true;
            }
            for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
                const int64_t row = (b * s->Tq + i0) * Hq + h;
                bwd_pair(dq ? dq + row * D : NULL, dkb ? dkb + j0 * kstride : NULL, dvb ? dvb + j0 * kstride : NULL,
                         q + row * D, dout + row * D, di + (b * Hq + h) * s->Tq + i0, lse + (b * Hq + h) * s->Tq + i0, kb + j0 * kstride,
                         kt, vt, s, ni, nk, cs, ce);
            }
        }
    }
}

typedef struct {
    float *dq, *dk, *dv;
    const float *dout, *out, *lse, *q, *k, *v;
    const ld_attn_shape *s;
    float *di;
} attn_bwd_args;

/* Units [u0, u1): a unit is one key/value head of one batch (with its query heads). */
static void bwd_units(void *arg, int64_t u0, int64_t u1, int piece) {
    (void)piece;
    const attn_bwd_args *a = arg;
    float kt[LD_ATTN_MAX_D * KB], vt[LD_ATTN_MAX_D * KB];
    for (int64_t u = u0; u < u1; u++)
        bwd_unit(a->dq, a->dk, a->dv, a->dout, a->out, a->lse, a->q, a->k, a->v, a->s, u / a->s->Hkv, u % a->s->Hkv,
                 kt, vt, a->di);
}

static void attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out, const float *lse,
                          const float *q, const float *k, const float *v, const ld_attn_shape *s, void *scratch) {
    if (s->D > LD_ATTN_MAX_D) {
        ld_ref_attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, s, scratch);
        return;
    }
    attn_bwd_args a = {dq, dk, dv, dout, out, lse, q, k, v, s, scratch};
    ld_par_for(s->B * s->Hkv, 1, bwd_units, &a);
}

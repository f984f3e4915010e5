/* quant/qgemm.c — the int8 GEMM behind ld_qmatmul for many rows (prefill, perplexity):
 * y[M, N] = x[M, K] . W^T on block-quantized W, at the int8 dot rate instead of through an
 * F32 copy of W.
 *
 * Both operands become int8 per group of K (32 elements; 16 for Q6_K, whose scales are per
 * 16): x is quantized per group (scale d, sum of its values), W is unpacked to its levels
 * form (ld_qgemm_format: unsigned levels, scale s, offset o, zero point zp). Per group
 *     I    = sum_k q[k] * (L[k] - zp)           (exact, int32)
 *     acc  = fma(I, s * d, acc)                  (one rounding per group)
 *     macc = fma(o, d * sum q, macc)             (types with mins only)
 * and y = acc + macc after the last group.
 * The reference below computes exactly that; each ISA's kernels (ld_qgemm_isa: AVX-512 in
 * qgemm_avx512.c) compute the same integers and the same float operations in the same order
 * per output element, so they agree with it bit for bit.
 *
 * The optimized driver packs LD_QGEMM_NR columns of W at a time into a panel (levels
 * interleaved for vpdpbusd; the ISA's ld_qgemm_isa.pack), then runs every LD_QGEMM_MR-row tile of
 * x over the whole panel, its float sums in registers from the first group to the last
 * (splitting K into L1-sized chunks and re-loading the sums was 1.4x slower: measured).
 * Prepacked weights (ld_qgemm_prepack) keep all panels and skip the packing. Panels are
 * pieces of the thread team's loops (core/team.h); every output element is computed by one
 * panel's kernel, so the result does not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "core/team.h"
#include "quant/qgemm.h"

/* Prepacked forms: Q8_0 keeps byte panels (9 bits per weight against 8.5), the 4-6 bit
 * types compact panels at about their own width (quant/qgemm_pack.c). */
static const ld_qgemm_format FORMATS[LD_DTYPE_COUNT] = {
    [LD_Q8_0] = {LD_Q8_0, 32, 128, false, ld_levels_row_q8_0, LD_QPANEL_BYTES, true, 255},
    [LD_Q4_0] = {LD_Q4_0, 32, 8, false, ld_levels_row_q4_0, LD_QPANEL_Q4_0, true, 15},
    [LD_Q4_K] = {LD_Q4_K, 32, 0, true, ld_levels_row_q4_K, LD_QPANEL_Q4_K, true, 15},
    [LD_Q5_K] = {LD_Q5_K, 32, 0, true, ld_levels_row_q5_K, LD_QPANEL_Q5_K, true, 31},
    [LD_Q6_K] = {LD_Q6_K, 16, 32, false, ld_levels_row_q6_K, LD_QPANEL_Q6_K, true, 63},
    /* the low-bit types (quant_lowbit.h), byte panels per call: zero points and largest
     * levels as documented with each ld_levels_row_* */
    [LD_Q2_K] = {LD_Q2_K, 16, 0, true, ld_levels_row_q2_K, LD_QPANEL_BYTES, false, 3},
    [LD_Q3_K] = {LD_Q3_K, 16, 4, false, ld_levels_row_q3_K, LD_QPANEL_BYTES, false, 7},
    [LD_TQ1_0] = {LD_TQ1_0, 32, 1, false, ld_levels_row_tq1_0, LD_QPANEL_BYTES, false, 2},
    [LD_TQ2_0] = {LD_TQ2_0, 32, 1, false, ld_levels_row_tq2_0, LD_QPANEL_BYTES, false, 3},
    [LD_IQ1_S] = {LD_IQ1_S, 32, 9, false, ld_levels_row_iq1_s, LD_QPANEL_BYTES, false, 18},
    [LD_IQ1_M] = {LD_IQ1_M, 16, 9, false, ld_levels_row_iq1_m, LD_QPANEL_BYTES, false, 18},
    [LD_IQ2_XXS] = {LD_IQ2_XXS, 32, 43, false, ld_levels_row_iq2_xxs, LD_QPANEL_BYTES, false, 86},
    [LD_IQ2_XS] = {LD_IQ2_XS, 16, 43, false, ld_levels_row_iq2_xs, LD_QPANEL_BYTES, false, 86},
    [LD_IQ2_S] = {LD_IQ2_S, 16, 43, false, ld_levels_row_iq2_s, LD_QPANEL_BYTES, false, 86},
    [LD_IQ3_XXS] = {LD_IQ3_XXS, 32, 62, false, ld_levels_row_iq3_xxs, LD_QPANEL_BYTES, false, 124},
    [LD_IQ3_S] = {LD_IQ3_S, 32, 15, false, ld_levels_row_iq3_s, LD_QPANEL_BYTES, false, 30},
    [LD_IQ4_NL] = {LD_IQ4_NL, 32, 128, false, ld_levels_row_iq4_nl, LD_QPANEL_BYTES, false, 241},
    [LD_IQ4_XS] = {LD_IQ4_XS, 32, 128, false, ld_levels_row_iq4_xs, LD_QPANEL_BYTES, false, 241},
};

const ld_qgemm_format *ld_qgemm_format_get(ld_dtype t) {
    return (int)t >= 0 && t < LD_DTYPE_COUNT && FORMATS[t].levels ? &FORMATS[t] : NULL;
}

/* ---- the int8 GEMM of each ISA level: parts overlaid lowest first (quant.c does the same
 * for the row-dot kernels) ---- */
#if LD_ARCH_X86
static bool cpu_has_vnni512(const ld_cpu_features *c) {
    return c->avx512_vnni;
}
static bool cpu_has_avx_vnni(const ld_cpu_features *c) {
    return c->avx_vnni;
}
#endif
static const struct {
    ld_isa level;
    bool (*usable)(const ld_cpu_features *); /* NULL: the level's own check suffices */
    const ld_qgemm_isa *part;
} QGEMM_PARTS[] = {
#if LD_ARCH_X86
    {LD_ISA_AVX2, NULL, &ld_qgemm_isa_avx2},
    {LD_ISA_AVX2, cpu_has_avx_vnni, &ld_qgemm_isa_avxvnni},
    {LD_ISA_AVX512, cpu_has_vnni512, &ld_qgemm_isa_avx512},
#endif
    {LD_ISA_SCALAR, NULL, NULL}, /* (the end; keeps the table non-empty on every processor) */
};

static ld_qgemm_isa build_isa(ld_isa isa) {
    ld_qgemm_isa r = {0};
    const ld_cpu_features *c = ld_cpu_features_get();
    for (size_t i = 0; i < sizeof QGEMM_PARTS / sizeof QGEMM_PARTS[0]; i++) {
        const ld_qgemm_isa *p = QGEMM_PARTS[i].part;
        if (!p || !ld_isa_includes(isa, QGEMM_PARTS[i].level) || (QGEMM_PARTS[i].usable && !QGEMM_PARTS[i].usable(c))) continue;
        if (p->quantize_act) r.quantize_act = p->quantize_act;
        if (p->pack) r.pack = p->pack;
        /* a part with its own byte-panel kernel replaces the whole kernel set: a panel form
         * it lacks is not computed at its level (no lower level's kernel mixed in) */
        for (int k = 0; k < LD_QPANEL_COUNT; k++)
            if (p->kernel[k] || p->kernel[LD_QPANEL_BYTES]) r.kernel[k] = p->kernel[k], r.kernel_pf[k] = p->kernel_pf[k];
    }
    return r;
}

const ld_qgemm_isa *ld_qgemm_isa_at(ld_isa isa) {
    static ld_qgemm_isa tables[LD_ISA_COUNT];
    static int done[LD_ISA_COUNT];
    const ld_isa top = ld_isa_detected();
    if (!ld_isa_includes(top, isa)) isa = top;
    if (!__atomic_load_n(&done[isa], __ATOMIC_ACQUIRE)) {
        tables[isa] = build_isa(isa);
        __atomic_store_n(&done[isa], 1, __ATOMIC_RELEASE);
    }
    const ld_qgemm_isa *t = &tables[isa];
    return t->quantize_act && t->pack && t->kernel[LD_QPANEL_BYTES] ? t : NULL;
}

const ld_qgemm_isa *ld_qgemm_isa_for(ld_isa isa, const ld_qgemm_format *f) {
    return f ? ld_qgemm_isa_at(isa) : NULL;
}

void ld_qgemm_quantize_act_ref(const ld_qgemm_format *f, const float *x, int64_t n, int8_t *q, ld_qgemm_agroup *g) {
    const int G = f->group;
    for (int64_t b = 0; b < n / G; b++) {
        const float *xb = x + b * G;
        float amax = 0;
        for (int i = 0; i < G; i++) amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < G; i++) {
            int v = ld_quant_nearest(xb[i] * id);
            v = v > 127 ? 127 : v < -127 ? -127 : v;
            q[b * G + i] = (int8_t)v;
            sum += v;
        }
        g[b] = (ld_qgemm_agroup){d, -f->zp * sum, d * (float)sum, 0.0f};
    }
}

size_t ld_qgemm_group_bytes(const ld_qgemm_format *f) {
    return (size_t)f->group * LD_QGEMM_NR + (f->has_min ? 2 : 1) * LD_QGEMM_NR * sizeof(float);
}

/* Scratch layout: int8 activations [M][K], their groups [M][K/G], then per thread one
 * panel (K/G groups) and one row of levels. Every part starts on a 64-byte boundary. */
static size_t up64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

static size_t thread_bytes(const ld_qgemm_format *f, int64_t K) {
    return up64((size_t)(K / f->group) * ld_qgemm_group_bytes(f)) + ld_qgemm_prepack_tmp_bytes(f, K);
}

size_t ld_qgemm_scratch_bytes(const ld_qgemm_format *f, int64_t M, int64_t K, int threads) {
    return 64 + up64((size_t)(M * K)) + up64((size_t)(M * (K / f->group)) * sizeof(ld_qgemm_agroup)) +
           (size_t)threads * thread_bytes(f, K);
}

/* The scalar reference: levels of one weight row at a time, every activation row against it. */
static void qgemm_ref(const ld_qgemm_format *f, const uint8_t *W, size_t wrow, int64_t N, int64_t K, const int8_t *q,
                      const ld_qgemm_agroup *ag, int64_t M, float *y, uint8_t *tmp) {
    const int G = f->group;
    const int64_t ng = K / G;
    uint8_t *L = tmp;
    float *s = (float *)(tmp + K), *o = s + ng;
    for (int64_t n = 0; n < N; n++) {
        f->levels(W + (size_t)n * wrow, K, L, s, o);
        for (int64_t m = 0; m < M; m++) {
            float acc = 0.0f, macc = 0.0f;
            for (int64_t b = 0; b < ng; b++) {
                const ld_qgemm_agroup *g = &ag[m * ng + b];
                int32_t I = 0;
                for (int i = 0; i < G; i++) I += (int32_t)q[m * K + b * G + i] * ((int32_t)L[b * G + i] - f->zp);
                acc = fmaf((float)I, s[b] * g->d, acc);
            }
            if (f->has_min) {
                for (int64_t b = 0; b < ng; b++) macc = fmaf(o[b], ag[m * ng + b].dsum, macc);
                acc += macc;
            }
            y[m * N + n] = acc;
        }
    }
}

typedef struct {
    const ld_qgemm_format *f;
    void (*quantize)(const ld_qgemm_format *f, const float *x, int64_t K, int8_t *q, ld_qgemm_agroup *ag);
    const float *x;
    int64_t K;
    int8_t *q;
    ld_qgemm_agroup *ag;
} qact_args;

static void qact_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const qact_args *a = arg;
    const int64_t ng = a->K / a->f->group;
    for (int64_t m = lo; m < hi; m++) a->quantize(a->f, a->x + m * a->K, a->K, a->q + m * a->K, a->ag + m * ng);
}

/* Quantizes the M rows of x into the scratch (int8 values, then their groups) and returns
 * the part after them (the per-thread panels of ld_qgemm_run). */
static uint8_t *quantize_rows(const ld_qgemm_format *f, const float *x, int64_t M, int64_t K, void *scratch,
                              int threads, const ld_qgemm_isa *isa, int8_t **q, ld_qgemm_agroup **ag) {
    const int64_t ng = K / f->group;
    uint8_t *base = (uint8_t *)up64((size_t)scratch);
    *q = (int8_t *)base;
    *ag = (ld_qgemm_agroup *)(base + up64((size_t)(M * K)));
    qact_args a = {f, isa ? isa->quantize_act : ld_qgemm_quantize_act_ref, x, K, *q, *ag};
    ld_par_for(M, threads > 1 && M * K >= LD_QACT_PAR_MIN ? ld_par_grain(K) : M, qact_part, &a);
    return (uint8_t *)*ag + up64((size_t)(M * ng) * sizeof **ag);
}

/* y[:, n0 .. n0+nc) for all M rows from one panel, LD_QGEMM_MR rows at a time, with the
 * kernel of the panel's form. */
static void panel_rows(const ld_qgemm_format *f, ld_qgemm_kernel_fn kernel, const uint8_t *panel, int64_t n0, int nc,
                       const int8_t *q, const ld_qgemm_agroup *ag, int64_t M, int64_t K, float *y, int64_t N) {
    const int64_t ng = K / f->group;
    const uint64_t cmask = (1ull << nc) - 1; /* nc <= 48 */
    for (int64_t m = 0; m < M; m += LD_QGEMM_MR) {
        const int mr = M - m < LD_QGEMM_MR ? (int)(M - m) : LD_QGEMM_MR;
        kernel(f, mr, K, panel, q + m * K, (size_t)K, ag + m * ng, (size_t)ng, y + m * N + n0, N, cmask);
    }
}

typedef struct {
    const ld_qgemm_format *f;
    const ld_qgemm_isa *isa;
    const uint8_t *W; /* unpacked weights (ld_qgemm_run), or NULL */
    size_t wrow;
    const uint8_t *P; /* prepacked panels (ld_qgemm_run_packed, ld_qgemm_prepack) */
    size_t pb;        /* bytes of one prepacked panel */
    int64_t N, K, M;
    const int8_t *q;
    const ld_qgemm_agroup *ag;
    float *y;
    uint8_t *per_thread; /* `threads` regions of tb bytes (a panel and its levels) */
    size_t tb;
    int threads;
    int failed; /* a piece found no scratch (set atomically) */
} qgemm_args;

/* The calling thread's region of a->per_thread, or its own scratch when the team is larger
 * than the caller sized the regions for (a loop outside the caller's context's scope). */
static uint8_t *thread_region(qgemm_args *a) {
    const int t = ld_par_thread();
    if (t < a->threads) return a->per_thread + (size_t)t * a->tb;
    uint8_t *r = ld_thread_scratch(LD_SCRATCH_QGEMM, a->tb);
    if (!r) __atomic_store_n(&a->failed, 1, __ATOMIC_RELAXED);
    return r;
}

static void n_range(const qgemm_args *a, int64_t p, int64_t *n0, int *nc) {
    *n0 = p * LD_QGEMM_NR;
    *nc = a->N - *n0 < LD_QGEMM_NR ? (int)(a->N - *n0) : LD_QGEMM_NR;
}

/* Panels [p0, p1) of unpacked W: packed into this thread's region, then every row of x. */
static void pack_and_run_part(void *arg, int64_t p0, int64_t p1, int piece) {
    (void)piece;
    qgemm_args *a = arg;
    uint8_t *panel = thread_region(a);
    if (!panel) return;
    uint8_t *tmp = panel + up64((size_t)(a->K / a->f->group) * ld_qgemm_group_bytes(a->f));
    for (int64_t p = p0; p < p1; p++) {
        int64_t n0;
        int nc;
        n_range(a, p, &n0, &nc);
        a->isa->pack(a->f, a->W, a->wrow, n0, nc, a->K, panel, tmp);
        panel_rows(a->f, a->isa->kernel[LD_QPANEL_BYTES], panel, n0, nc, a->q, a->ag, a->M, a->K, a->y, a->N);
    }
}

void ld_qgemm_run(const ld_qgemm_format *f, const uint8_t *W, size_t wrow, int64_t N, int64_t K, const float *x,
                  int64_t M, float *y, void *scratch, int threads, const ld_qgemm_isa *isa) {
    const int64_t ng = K / f->group;
    int8_t *q;
    ld_qgemm_agroup *ag;
    uint8_t *per_thread = quantize_rows(f, x, M, K, scratch, threads, isa, &q, &ag);
    const size_t tb = thread_bytes(f, K), gb = ld_qgemm_group_bytes(f);
    if (!isa) {
        qgemm_ref(f, W, wrow, N, K, q, ag, M, y, per_thread + up64((size_t)ng * gb));
        return;
    }
    const int64_t npanels = (N + LD_QGEMM_NR - 1) / LD_QGEMM_NR;
    qgemm_args a = {f, isa, W, wrow, NULL, 0, N, K, M, q, ag, y, per_thread, tb, threads, 0};
    const bool par = threads > 1 && M * N * K >= LD_QMM_PAR_MIN;
    ld_par_for(npanels, par ? 1 : npanels, pack_and_run_part, &a);
    if (a.failed) pack_and_run_part(&a, 0, npanels, 0); /* a thread without scratch: redo it all here */
}

/* ---- prepacked weights: every panel packed once, kept, used for any number of rows ---- */
static size_t panel_bytes(const ld_qgemm_format *f, int64_t K) {
    const ld_qpanel_unit *u = &LD_QPANEL_UNITS[f->packed];
    return f->packed == LD_QPANEL_BYTES ? (size_t)(K / f->group) * ld_qgemm_group_bytes(f) : (size_t)(K / u->k) * (size_t)u->bytes;
}

size_t ld_qgemm_packed_bytes(const ld_qgemm_format *f, int64_t N, int64_t K) {
    return (size_t)((N + LD_QGEMM_NR - 1) / LD_QGEMM_NR) * panel_bytes(f, K);
}

size_t ld_qgemm_prepack_tmp_bytes(const ld_qgemm_format *f, int64_t K) {
    return LD_QGEMM_PACK_ROWS * ld_qgemm_levels_row_bytes(f, K);
}

/* Panels [p0, p1) packed into their places in a->P. */
static void prepack_part(void *arg, int64_t p0, int64_t p1, int piece) {
    (void)piece;
    qgemm_args *a = arg;
    const ld_qgemm_format *f = a->f;
    uint8_t *tmp = f->packed == LD_QPANEL_BYTES ? thread_region(a) : NULL;
    if (f->packed == LD_QPANEL_BYTES && !tmp) return;
    uint8_t *P = (uint8_t *)a->P;
    for (int64_t p = p0; p < p1; p++) {
        int64_t n0;
        int nc;
        n_range(a, p, &n0, &nc);
        if (f->packed != LD_QPANEL_BYTES) ld_qgemm_pack_compact(f->packed, a->W, a->wrow, n0, nc, a->K, P + (size_t)p * a->pb);
        else a->isa->pack(f, a->W, a->wrow, n0, nc, a->K, P + (size_t)p * a->pb, tmp);
    }
}

void ld_qgemm_prepack(const ld_qgemm_format *f, const uint8_t *W, size_t wrow, int64_t N, int64_t K, uint8_t *P,
                      uint8_t *tmp, int threads, const ld_qgemm_isa *isa) {
    const size_t pb = panel_bytes(f, K), tb = ld_qgemm_prepack_tmp_bytes(f, K);
    const int64_t npanels = (N + LD_QGEMM_NR - 1) / LD_QGEMM_NR;
    qgemm_args a = {f, isa, W, wrow, P, pb, N, K, 0, NULL, NULL, NULL, tmp, tb, threads, 0};
    ld_par_for(npanels, threads > 1 ? 1 : npanels, prepack_part, &a);
    if (a.failed) prepack_part(&a, 0, npanels, 0);
}

/* Prepacked panels [p0, p1), every row of x. With several row tiles and a kernel_pf, each
 * tile's kernel prefetches its share of the next panel of the range (spread over its groups),
 * so that panel arrives from memory while this one's tiles compute: without it the first
 * tile of every panel waited for memory (16 rows of the 124M shape's products took 1.6x their
 * in-cache time; bursts of prefetches between the tiles were slower still: measured). */
static void packed_part(void *arg, int64_t p0, int64_t p1, int piece) {
    (void)piece;
    const qgemm_args *a = arg;
    const ld_qgemm_kernel_fn kernel = a->isa->kernel[a->f->packed];
    const ld_qgemm_kernel_pf_fn kernel_pf = a->isa->kernel_pf[a->f->packed];
    const int64_t ng = a->K / a->f->group, tiles = (a->M + LD_QGEMM_MR - 1) / LD_QGEMM_MR;
    /* lines of the next panel each tile prefetches per group (the tiles split the panel) */
    const int lines = (int)(((int64_t)a->pb / 64 / tiles + ng) / ng);
    for (int64_t p = p0; p < p1; p++) {
        int64_t n0;
        int nc;
        n_range(a, p, &n0, &nc);
        const uint8_t *panel = a->P + (size_t)p * a->pb;
        if (!kernel_pf || tiles < 2 || p + 1 == p1) {
            panel_rows(a->f, kernel, panel, n0, nc, a->q, a->ag, a->M, a->K, a->y, a->N);
            continue;
        }
        const uint64_t cmask = (1ull << nc) - 1;
        for (int64_t t = 0; t < tiles; t++) {
            const int64_t m = t * LD_QGEMM_MR;
            const int mr = a->M - m < LD_QGEMM_MR ? (int)(a->M - m) : LD_QGEMM_MR;
            kernel_pf(a->f, mr, a->K, panel, a->q + m * a->K, (size_t)a->K, a->ag + m * ng, (size_t)ng, a->y + m * a->N + n0,
                      a->N, cmask, panel + a->pb + (size_t)(t * ng * lines) * 64, lines);
        }
    }
}

void ld_qgemm_run_packed(const ld_qgemm_format *f, const uint8_t *P, int64_t N, int64_t K, const float *x, int64_t M,
                         float *y, void *scratch, int threads, const ld_qgemm_isa *isa) {
    int8_t *q;
    ld_qgemm_agroup *ag;
    quantize_rows(f, x, M, K, scratch, threads, isa, &q, &ag);
    const int64_t npanels = (N + LD_QGEMM_NR - 1) / LD_QGEMM_NR;
    qgemm_args a = {f, isa, NULL, 0, P, panel_bytes(f, K), N, K, M, q, ag, y, NULL, 0, threads, 0};
    const bool par = threads > 1 && M * N * K >= LD_QMM_PAR_MIN;
    /* with a prefetching kernel and several row tiles: runs of consecutive panels, about 4
     * per thread (a run's next panel is prefetched); else pieces of a panel, which a thread
     * slowed by another process holds back least (decode at 1-4 rows streams the weights) */
    int64_t grain = ld_par_grain(M * LD_QGEMM_NR * K), run = npanels / (4 * (int64_t)threads);
    if (M > LD_QGEMM_MR && isa->kernel_pf[f->packed] && run > grain) grain = run;
    ld_par_for(npanels, par ? grain : npanels, packed_part, &a);
}

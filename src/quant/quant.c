/* quant/quant.c — the quantized-type traits table (codec, activation format, dot kernels
 * per ld_dtype, per ISA level) and the public entry points: ld_quantize,
 * ld_dequantize and ld_qmatmul (y = x . W^T on F32, F16 or block-quantized weights). */
#include <math.h>
#include <string.h>

#include "core/team.h"
#include "kernels/kernels.h"
#include "quant/qgemm.h"
#include "quant/quant_blocks.h"

/* ---- plain-float dots (reference) --------------------------------------------------------- */
float ld_vec_dot_f32_ref(int64_t n, const void *w, const void *a) {
    const float *x = w, *y = a;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i] * y[i];
    return s;
}

float ld_vec_dot_f16_f32_ref(int64_t n, const void *w, const void *a) {
    const uint16_t *x = w;
    const float *y = a;
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += ld_fp16_to_fp32(x[i]) * y[i];
    return s;
}

static void dequantize_f32(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void dequantize_f16(const void *x, float *y, int64_t n) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = ld_fp16_to_fp32(h[i]);
}

/* ---- the table ------------------------------------------------------------------------------ */
/* The reference row of every type (codec, activation format, scalar kernels); the ISA
 * levels overlay their kernels on it (LEVELS below). */
#define QT_ROW(T, blk, qrow, deq, ablk, abytes, qact, dot) [T] = {T, blk, qrow, deq, ablk, abytes, qact, qact, dot, dot, NULL}
#define LD_ACT_BLOCK_q8_K LD_QK_K
#define LD_ACT_BLOCK_q8_0 LD_QK8_0
#define QT_LOWBIT(T, w, a, quantize)                                                                         \
    QT_ROW(T, LD_QK_K == LD_ACT_BLOCK_##a ? LD_QK_K : LD_QK8_0, quantize, ld_dequantize_row_##w, LD_ACT_BLOCK_##a, \
           sizeof(ld_block_##a), ld_quantize_act_##a##_ref, ld_vec_dot_##w##_##a##_ref)
static const ld_quant_traits BASE[LD_DTYPE_COUNT] = {
    QT_ROW(LD_F32, 1, NULL, dequantize_f32, 1, 4, NULL, ld_vec_dot_f32_ref),
    QT_ROW(LD_F16, 1, NULL, dequantize_f16, 1, 4, NULL, ld_vec_dot_f16_f32_ref),
    QT_ROW(LD_Q8_0, LD_QK8_0, ld_quantize_row_q8_0_ref, ld_dequantize_row_q8_0, LD_QK8_0, sizeof(ld_block_q8_0),
           ld_quantize_act_q8_0_ref, ld_vec_dot_q8_0_q8_0_ref),
    QT_ROW(LD_Q4_0, LD_QK4_0, ld_quantize_row_q4_0_ref, ld_dequantize_row_q4_0, LD_QK8_0, sizeof(ld_block_q8_0),
           ld_quantize_act_q8_0_ref, ld_vec_dot_q4_0_q8_0_ref),
    QT_ROW(LD_Q4_K, LD_QK_K, ld_quantize_row_q4_K_ref, ld_dequantize_row_q4_K, LD_QK_K, sizeof(ld_block_q8_K),
           ld_quantize_act_q8_K_ref, ld_vec_dot_q4_K_q8_K_ref),
    QT_ROW(LD_Q5_K, LD_QK_K, ld_quantize_row_q5_K_ref, ld_dequantize_row_q5_K, LD_QK_K, sizeof(ld_block_q8_K),
           ld_quantize_act_q8_K_ref, ld_vec_dot_q5_K_q8_K_ref),
    QT_ROW(LD_Q6_K, LD_QK_K, ld_quantize_row_q6_K_ref, ld_dequantize_row_q6_K, LD_QK_K, sizeof(ld_block_q8_K),
           ld_quantize_act_q8_K_ref, ld_vec_dot_q6_K_q8_K_ref),
    /* decode only: read from llama.cpp's files, computed in F32 */
    QT_ROW(LD_Q4_1, 32, NULL, ld_dequantize_row_q4_1, 0, 0, NULL, NULL),
    QT_ROW(LD_Q5_0, 32, NULL, ld_dequantize_row_q5_0, 0, 0, NULL, NULL),
    QT_ROW(LD_Q5_1, 32, NULL, ld_dequantize_row_q5_1, 0, 0, NULL, NULL),
    /* the low-bit formats (quant_lowbit.h) */
    QT_LOWBIT(LD_Q2_K, q2_K, q8_K, ld_quantize_row_q2_K_ref),
    QT_LOWBIT(LD_Q3_K, q3_K, q8_K, ld_quantize_row_q3_K_ref),
    QT_LOWBIT(LD_TQ1_0, tq1_0, q8_K, ld_quantize_row_tq1_0_ref),
    QT_LOWBIT(LD_TQ2_0, tq2_0, q8_K, ld_quantize_row_tq2_0_ref),
    QT_LOWBIT(LD_IQ2_XXS, iq2_xxs, q8_K, ld_quantize_row_iq2_xxs_ref),
    QT_LOWBIT(LD_IQ2_XS, iq2_xs, q8_K, ld_quantize_row_iq2_xs_ref),
    QT_LOWBIT(LD_IQ2_S, iq2_s, q8_K, ld_quantize_row_iq2_s_ref),
    QT_LOWBIT(LD_IQ3_XXS, iq3_xxs, q8_K, ld_quantize_row_iq3_xxs_ref),
    QT_LOWBIT(LD_IQ3_S, iq3_s, q8_K, ld_quantize_row_iq3_s_ref),
    QT_LOWBIT(LD_IQ1_S, iq1_s, q8_K, ld_quantize_row_iq1_s_ref),
    QT_LOWBIT(LD_IQ1_M, iq1_m, q8_K, ld_quantize_row_iq1_m_ref),
    QT_LOWBIT(LD_IQ4_NL, iq4_nl, q8_0, ld_quantize_row_iq4_nl_ref),
    QT_LOWBIT(LD_IQ4_XS, iq4_xs, q8_K, ld_quantize_row_iq4_xs_ref),
};
#undef QT_ROW
#undef QT_LOWBIT

#if LD_ARCH_X86
static bool cpu_has_vnni512(const ld_cpu_features *c) {
    return c->avx512_vnni;
}
static bool cpu_has_avx_vnni(const ld_cpu_features *c) {
    return c->avx_vnni;
}
#endif

/* Each level's row tables, lowest first; a row table applies at its level and above when
 * the CPU passes its check. */
static const struct {
    ld_isa level;
    bool (*usable)(const ld_cpu_features *); /* NULL: the level's own check suffices */
    const ld_quant_isa_row *rows;
} LEVELS[] = {
#if LD_ARCH_X86
    {LD_ISA_AVX2, NULL, ld_quant_rows_avx2},
    {LD_ISA_AVX2, NULL, ld_quant_rows_lowbit_avx2},
    {LD_ISA_AVX2, cpu_has_avx_vnni, ld_quant_rows_avxvnni},
    {LD_ISA_AVX512, cpu_has_vnni512, ld_quant_rows_avx512},
    {LD_ISA_AVX512, cpu_has_vnni512, ld_quant_rows_lowbit_avx512},
#endif
#if LD_ARCH_ARM64
    {LD_ISA_NEON, NULL, ld_quant_rows_neon},
#endif
    {LD_ISA_SCALAR, NULL, NULL}, /* (the end; keeps the table non-empty on every processor) */
};

static void build_level(ld_isa isa, ld_quant_traits *tab) {
    memcpy(tab, BASE, sizeof BASE);
    const ld_cpu_features *c = ld_cpu_features_get();
    for (size_t l = 0; l < sizeof LEVELS / sizeof LEVELS[0]; l++) {
        if (!LEVELS[l].rows || !ld_isa_includes(isa, LEVELS[l].level) || (LEVELS[l].usable && !LEVELS[l].usable(c))) continue;
        for (int t = 0; t < LD_DTYPE_COUNT; t++) {
            const ld_quant_isa_row *r = &LEVELS[l].rows[t];
            if (!tab[t].vec_dot_ref) continue; /* no kernels for this type at all */
            if (r->quantize_act) tab[t].quantize_act = r->quantize_act;
            if (r->vec_dot) tab[t].vec_dot = r->vec_dot;
            if (r->dot_rows) tab[t].dot_rows = r->dot_rows;
        }
    }
    /* a type whose rows bring no activation quantizer takes the level's one for its
     * activation format (the same bits: every quantizer equals its reference) */
    for (int t = 0; t < LD_DTYPE_COUNT; t++)
        for (int u = 0; u < LD_DTYPE_COUNT && tab[t].quantize_act == tab[t].quantize_act_ref; u++)
            if (tab[t].quantize_act_ref && tab[u].quantize_act_ref == tab[t].quantize_act_ref) tab[t].quantize_act = tab[u].quantize_act;
}

const ld_quant_traits *ld_quant_traits_at(ld_dtype t, ld_isa isa) {
    static ld_quant_traits tables[LD_ISA_COUNT][LD_DTYPE_COUNT];
    static int done[LD_ISA_COUNT];
    if ((int)t < 0 || t >= LD_DTYPE_COUNT) return NULL;
    const ld_isa top = ld_isa_detected();
    if (!ld_isa_includes(top, isa)) isa = top;
    if (!__atomic_load_n(&done[isa], __ATOMIC_ACQUIRE)) {
        build_level(isa, tables[isa]); /* racing first callers write the same bytes */
        __atomic_store_n(&done[isa], 1, __ATOMIC_RELEASE);
    }
    return tables[isa][t].dequantize_row ? &tables[isa][t] : NULL;
}

const ld_quant_traits *ld_quant_traits_get(ld_dtype t) {
    return ld_quant_traits_at(t, ld_isa_active());
}

/* The blocked int8 GEMM (qgemm.c) for products of at least LD_QGEMM_MIN_M rows; NULL when
 * the type has no GEMM form or the active level has no int8 GEMM. */
static const ld_qgemm_format *gemm_format(ld_dtype t, int64_t M) {
    const ld_qgemm_format *f = ld_qgemm_format_get(t);
    return M >= LD_QGEMM_MIN_M && ld_qgemm_isa_for(ld_isa_active(), f) ? f : NULL;
}

bool ld_qmatmul_has_gemm(ld_dtype wtype, int64_t M) {
    return gemm_format(wtype, M) != NULL;
}

bool ld_quant_type_supported(ld_dtype t) {
    const ld_quant_traits *q = ld_quant_traits_get(t);
    return q && q->quantize_row;
}

bool ld_quant_needs_imatrix(ld_dtype t) {
    static const ld_dtype NEED[] = {LD_IQ3_XXS, LD_IQ2_S, LD_IQ2_XS, LD_IQ2_XXS, LD_IQ1_M, LD_IQ1_S};
    for (size_t i = 0; i < sizeof NEED / sizeof NEED[0]; i++)
        if (NEED[i] == t) return true;
    return false;
}

/* ---- random blocks (tests, benchmarks) ------------------------------------------------------ */
/* Byte offsets of the high byte of each block's fp16 scale(s) (0 = none after the first). */
static const struct {
    ld_dtype t;
    int16_t hi[2];
} SCALE_HI[] = {
    {LD_Q8_0, {1, 0}},   {LD_Q4_0, {1, 0}},    {LD_Q4_1, {1, 3}},     {LD_Q5_0, {1, 0}},    {LD_Q5_1, {1, 3}},
    {LD_Q4_K, {1, 3}},   {LD_Q5_K, {1, 3}},    {LD_Q6_K, {209, 0}},   {LD_Q2_K, {81, 83}},  {LD_Q3_K, {109, 0}},
    {LD_TQ1_0, {53, 0}}, {LD_TQ2_0, {65, 0}},  {LD_IQ1_M, {55, 0}},   {LD_IQ1_S, {1, 0}},   {LD_IQ2_XXS, {1, 0}},
    {LD_IQ2_XS, {1, 0}}, {LD_IQ2_S, {1, 0}},   {LD_IQ3_XXS, {1, 0}},  {LD_IQ3_S, {1, 0}},   {LD_IQ4_NL, {1, 0}},
    {LD_IQ4_XS, {1, 0}},
};

void ld_quant_random_blocks(ld_dtype t, void *blocks, int64_t nblk, uint64_t seed) {
    const ld_dtype_info *di = ld_dtype_traits(t);
    uint8_t *w = blocks;
    ld_rng r = ld_rng_init(seed);
    for (int64_t i = 0; i < nblk * di->block_bytes; i += 8) {
        const uint64_t v = ld_rng_u64(&r);
        for (int k = 0; k < 8 && i + k < nblk * di->block_bytes; k++) w[i + k] = (uint8_t)(v >> (8 * k));
    }
    for (size_t k = 0; k < sizeof SCALE_HI / sizeof SCALE_HI[0]; k++)
        if (SCALE_HI[k].t == t)
            for (int64_t i = 0; i < nblk; i++)
                for (int j = 0; j < 2 && SCALE_HI[k].hi[j]; j++) w[i * di->block_bytes + SCALE_HI[k].hi[j]] &= 0xBF;
}

/* ---- public entry points ------------------------------------------------------------------- */
typedef struct {
    const ld_quant_traits *q;
    const float *src;
    uint8_t *dst;
    size_t row_bytes;
    int64_t ncols;
    const float *imatrix;
} quantize_rows_args;

static void quantize_rows_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const quantize_rows_args *a = arg;
    for (int64_t r = lo; r < hi; r++)
        a->q->quantize_row(a->src + r * a->ncols, a->dst + (size_t)r * a->row_bytes, a->ncols, a->imatrix);
}

ld_status ld_quantize(ld_ctx *ctx, ld_dtype dst_type, void *dst, const float *src, int64_t nrows,
                      int64_t ncols, const float *imatrix) {
    const ld_quant_traits *q = ld_quant_traits_get(dst_type);
    if (!q || !q->quantize_row) {
        const ld_dtype_info *di = ld_dtype_traits(dst_type);
        return ld_error(ctx, LD_ERR_DTYPE, "ld_quantize: cannot quantize to type %s", di ? di->name : "(unknown)");
    }
    if (!dst || !src || nrows < 0 || ncols <= 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_quantize: NULL buffer or bad size (%lld rows, %lld cols)",
                        (long long)nrows, (long long)ncols);
    const ld_dtype_info *di = ld_dtype_traits(dst_type);
    if (!imatrix && ld_quant_needs_imatrix(dst_type))
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "ld_quantize: %s needs an importance matrix (`liandan imatrix` makes one)", di->name);
    if (ncols % q->block_size)
        return ld_error(ctx, LD_ERR_SHAPE, "ld_quantize: %s: ncols %lld is not a multiple of the block size %d",
                        di->name, (long long)ncols, q->block_size);
    size_t row_bytes, total;
    if (ld_dtype_row_bytes(dst_type, ncols, &row_bytes) || ld_mul_size(row_bytes, (size_t)nrows, &total) ||
        ld_mul_size((size_t)nrows, (size_t)ncols, &total))
        return ld_error(ctx, LD_ERR_OVERFLOW, "ld_quantize: %lld x %lld %s overflows", (long long)nrows,
                        (long long)ncols, di->name);
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t c = 0; c < ncols; c++)
            if (!isfinite(src[r * ncols + c]))
                return ld_error(ctx, LD_ERR_NUMERIC, "ld_quantize: %s: non-finite value at row %lld, column %lld",
                                di->name, (long long)r, (long long)c);
    if (imatrix)
        for (int64_t c = 0; c < ncols; c++)
            if (!(imatrix[c] >= 0) || !isfinite(imatrix[c]))
                return ld_error(ctx, LD_ERR_NUMERIC, "ld_quantize: importance weight %lld is %g (must be finite, >= 0)",
                                (long long)c, (double)imatrix[c]);
    LD_TEAM_SCOPE(ctx);
    quantize_rows_args a = {q, src, dst, row_bytes, ncols, imatrix};
    ld_par_for(nrows, ld_par_grain(ncols), quantize_rows_part, &a);
    return LD_OK;
}

ld_status ld_dequantize(ld_ctx *ctx, ld_dtype src_type, const void *src, float *dst, int64_t n) {
    if (src_type == LD_BF16 || src_type == LD_F16 || src_type == LD_F32) return ld_convert(ctx, LD_F32, dst, src_type, src, n);
    const ld_quant_traits *q = ld_quant_traits_get(src_type);
    const ld_dtype_info *di = ld_dtype_traits(src_type);
    if (!q) return ld_error(ctx, LD_ERR_DTYPE, "ld_dequantize: cannot decode type %s", di ? di->name : "(unknown)");
    if (!src || !dst || n < 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_dequantize: NULL buffer or negative size");
    if (n % q->block_size)
        return ld_error(ctx, LD_ERR_SHAPE, "ld_dequantize: %s: %lld elements is not a multiple of the block size %d",
                        di->name, (long long)n, q->block_size);
    q->dequantize_row(src, dst, n);
    return LD_OK;
}

static ld_status check_mm(ld_ctx *ctx, ld_dtype wtype, int64_t M, int64_t K, const ld_quant_traits **out,
                          size_t *act_row) {
    const ld_quant_traits *q = ld_quant_traits_get(wtype);
    const ld_dtype_info *di = ld_dtype_traits(wtype);
    if (!q || !q->vec_dot)
        return ld_error(ctx, LD_ERR_DTYPE, "ld_qmatmul: no kernel for weight type %s", di ? di->name : "(unknown)");
    if (M <= 0 || K <= 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_qmatmul: M %lld and K %lld must be positive", (long long)M, (long long)K);
    if (K % q->block_size || K % q->act_block_size)
        return ld_error(ctx, LD_ERR_SHAPE, "ld_qmatmul: %s: K %lld is not a multiple of the block size %d", di->name,
                        (long long)K, q->block_size);
    *out = q;
    *act_row = q->quantize_act ? (size_t)(K / q->act_block_size) * (size_t)q->act_block_bytes : 0;
    return LD_OK;
}

ld_status ld_qmatmul_scratch_size(ld_ctx *ctx, ld_dtype wtype, int64_t M, int64_t K, size_t *out) {
    const ld_quant_traits *q;
    size_t row;
    ld_status st = check_mm(ctx, wtype, M, K, &q, &row);
    if (st) return st;
    if (ld_mul_size(row, (size_t)M, out) || ld_mul_size((size_t)M, (size_t)K, &row))
        return ld_error(ctx, LD_ERR_OVERFLOW, "ld_qmatmul: scratch size overflows");
    const ld_qgemm_format *g = gemm_format(wtype, M);
    if (g) {
        const size_t gemm = ld_qgemm_scratch_bytes(g, M, K, ld_ctx_threads(ctx));
        if (gemm > *out) *out = gemm;
    }
    return LD_OK;
}

/* Columns per tile: a tile's weight rows stay in cache while every row of x passes. */
#define QMM_TILE_N 8

typedef struct {
    ld_quantize_act_fn qa;
    const float *x;
    uint8_t *act;
    size_t arow;
    int64_t K;
} qact_args;

static void qact_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const qact_args *a = arg;
    for (int64_t m = lo; m < hi; m++) a->qa(a->x + m * a->K, a->act + (size_t)m * a->arow, a->K);
}

typedef struct {
    ld_vec_dot_fn dot;
    ld_dot_rows_fn rows; /* or NULL: one dot at a time */
    const uint8_t *w;
    size_t wrow;
    const uint8_t *act;
    size_t arow;
    float *y;
    int64_t N, K, M;
} qmm_args;

/* Tiles [t0, t1) of QMM_TILE_N output columns, for every row of x. */
static void qmm_tiles(void *arg, int64_t t0, int64_t t1, int piece) {
    (void)piece;
    const qmm_args *a = arg;
    const int64_t N = a->N, K = a->K, M = a->M;
    for (int64_t t = t0; t < t1; t++) {
        const int64_t n0 = t * QMM_TILE_N, n1 = n0 + QMM_TILE_N < N ? n0 + QMM_TILE_N : N;
        if (!a->rows) {
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = n0; n < n1; n++)
                    a->y[m * N + n] = a->dot(K, a->w + (size_t)n * a->wrow, a->act + (size_t)m * a->arow);
            continue;
        }
        for (int64_t m = 0; m < M; m += LD_QDOT_MAX_ROWS) {
            const int na = M - m < LD_QDOT_MAX_ROWS ? (int)(M - m) : LD_QDOT_MAX_ROWS;
            float out[LD_QDOT_MAX_ROWS];
            for (int64_t n = n0; n < n1; n++) {
                a->rows(K, a->w + (size_t)n * a->wrow, a->act + (size_t)m * a->arow, a->arow, na, out);
                for (int r = 0; r < na; r++) a->y[(m + r) * N + n] = out[r];
            }
        }
    }
}

int ld_qmatmul_impl(ld_dtype wtype, const void *W, int64_t N, int64_t K, const float *x, int64_t M, float *y,
                    void *scratch, int threads, ld_isa isa) {
    const ld_quant_traits *q = ld_quant_traits_at(wtype, isa);
    size_t wrow;
    if (!q || !q->vec_dot || ld_dtype_row_bytes(wtype, K, &wrow)) return -1;
    const ld_vec_dot_fn dot = q->vec_dot;
    const ld_dot_rows_fn rows = q->dot_rows;
    const ld_quantize_act_fn qa = q->quantize_act;
    const ld_qgemm_format *g = M >= LD_QGEMM_MIN_M ? ld_qgemm_format_get(wtype) : NULL;
    const ld_qgemm_isa *gi = ld_qgemm_isa_for(isa, g);
    if (!gi) g = NULL;
    if (g) {
        ld_qgemm_run(g, W, wrow, N, K, x, M, y, scratch, threads, gi);
        return 0;
    }
    const uint8_t *act = (const uint8_t *)x;
    size_t arow = (size_t)K * sizeof(float);
    if (qa) {
        arow = (size_t)(K / q->act_block_size) * (size_t)q->act_block_bytes;
        qact_args a = {qa, x, scratch, arow, K};
        ld_par_for(M, threads > 1 && M * K >= LD_QACT_PAR_MIN ? ld_par_grain(K) : M, qact_part, &a);
        act = scratch;
    }
    const int64_t ntiles = (N + QMM_TILE_N - 1) / QMM_TILE_N;
    qmm_args a = {dot, rows, W, wrow, act, arow, y, N, K, M};
    ld_par_for(ntiles, threads > 1 && M * N * K >= LD_QMM_PAR_MIN ? ld_par_grain(M * QMM_TILE_N * K) : ntiles, qmm_tiles,
               &a);
    return 0;
}

ld_status ld_qmatmul(ld_ctx *ctx, ld_dtype wtype, const void *W, int64_t N, int64_t K, const float *x, int64_t M,
                     float *y, void *scratch) {
    const ld_quant_traits *q;
    size_t arow, wrow, tmp;
    ld_status st = check_mm(ctx, wtype, M, K, &q, &arow);
    if (st) return st;
    if (N <= 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_qmatmul: N %lld must be positive", (long long)N);
    if (!W || !x || !y || (arow && !scratch))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_qmatmul: NULL %s", !W ? "W" : !x ? "x" : !y ? "y" : "scratch");
    if (ld_dtype_row_bytes(wtype, K, &wrow) || ld_mul_size(wrow, (size_t)N, &tmp) ||
        ld_mul_size((size_t)M, (size_t)N, &tmp))
        return ld_error(ctx, LD_ERR_OVERFLOW, "ld_qmatmul: sizes overflow");
    LD_TEAM_SCOPE(ctx);
    ld_qmatmul_impl(wtype, W, N, K, x, M, y, scratch, ld_ctx_threads(ctx), ld_isa_active());
    return LD_OK;
}

/* ---- prepacked weights (the int8 GEMM's panels, kept) -------------------------------------- */
/* Types whose packed form costs few extra bytes (qgemm.c's FORMATS) and that the active
 * level's int8 GEMM multiplies. */
static const ld_qgemm_isa *pack_isa(ld_dtype wtype) {
    const ld_qgemm_format *f = ld_qgemm_format_get(wtype);
    const ld_qgemm_isa *gi = ld_qgemm_isa_for(ld_isa_active(), f);
    return f && f->packable && gi && gi->kernel[f->packed] ? gi : NULL;
}

bool ld_qpack_supported(ld_dtype wtype) {
    return pack_isa(wtype) != NULL;
}

static ld_status check_pack(ld_ctx *ctx, ld_dtype wtype, int64_t N, int64_t K, const ld_qgemm_format **f) {
    const ld_dtype_info *di = ld_dtype_traits(wtype);
    if (!ld_qpack_supported(wtype))
        return ld_error(ctx, LD_ERR_DTYPE, "ld_qpack: weights of type %s cannot be prepacked at ISA level %s",
                        di ? di->name : "(unknown)", ld_isa_name(ld_isa_active()));
    *f = ld_qgemm_format_get(wtype);
    if (N <= 0 || K <= 0)
        return ld_error(ctx, LD_ERR_SHAPE, "ld_qpack: N %lld and K %lld must be positive", (long long)N, (long long)K);
    if (K % (*f)->group || K % di->block_size)
        return ld_error(ctx, LD_ERR_SHAPE, "ld_qpack: %s: %lld x %lld is not whole blocks of %d", di->name, (long long)N,
                        (long long)K, di->block_size);
    size_t tmp;
    if (ld_mul_size((size_t)N, (size_t)K, &tmp) || ld_mul_size(tmp, 2, &tmp))
        return ld_error(ctx, LD_ERR_OVERFLOW, "ld_qpack: %lld x %lld overflows", (long long)N, (long long)K);
    return LD_OK;
}

ld_status ld_qpack_size(ld_ctx *ctx, ld_dtype wtype, int64_t N, int64_t K, size_t *out) {
    const ld_qgemm_format *f;
    ld_status st = check_pack(ctx, wtype, N, K, &f);
    if (!st) *out = ld_qgemm_packed_bytes(f, N, K);
    return st;
}

ld_status ld_qpack(ld_ctx *ctx, ld_dtype wtype, const void *W, int64_t N, int64_t K, void *dst) {
    const ld_qgemm_format *f;
    ld_status st = check_pack(ctx, wtype, N, K, &f);
    if (st) return st;
    if (!W || !dst || ((uintptr_t)dst & 63))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_qpack: NULL %s or destination not 64-byte aligned", W ? "dst" : "W");
    const int threads = ld_ctx_threads(ctx);
    uint8_t *tmp = ld_alloc(ctx, (size_t)threads * ld_qgemm_prepack_tmp_bytes(f, K));
    if (!tmp) return ld_ctx_status(ctx);
    size_t wrow;
    ld_dtype_row_bytes(wtype, K, &wrow);
    LD_TEAM_SCOPE(ctx);
    ld_qgemm_prepack(f, W, wrow, N, K, dst, tmp, threads, pack_isa(wtype));
    ld_free(ctx, tmp);
    return LD_OK;
}

ld_status ld_qmatmul_packed_scratch_size(ld_ctx *ctx, ld_dtype wtype, int64_t M, int64_t K, size_t *out) {
    const ld_qgemm_format *f;
    ld_status st = check_pack(ctx, wtype, 1, K, &f);
    if (st) return st;
    if (M <= 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_qmatmul_packed: M %lld must be positive", (long long)M);
    size_t tmp;
    if (ld_mul_size((size_t)M, (size_t)K, &tmp) || ld_mul_size(tmp, 2, &tmp))
        return ld_error(ctx, LD_ERR_OVERFLOW, "ld_qmatmul_packed: scratch size overflows");
    *out = ld_qgemm_scratch_bytes(f, M, K, 0);
    return LD_OK;
}

ld_status ld_qmatmul_packed(ld_ctx *ctx, ld_dtype wtype, const void *P, int64_t N, int64_t K, const float *x,
                            int64_t M, float *y, void *scratch) {
    const ld_qgemm_format *f;
    ld_status st = check_pack(ctx, wtype, N, K, &f);
    if (st) return st;
    if (M <= 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_qmatmul_packed: M %lld must be positive", (long long)M);
    if (!P || !x || !y || !scratch)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_qmatmul_packed: NULL %s", !P ? "P" : !x ? "x" : !y ? "y" : "scratch");
    if ((uintptr_t)P & 63) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_qmatmul_packed: weights not 64-byte aligned");
    LD_TEAM_SCOPE(ctx);
    ld_qgemm_run_packed(f, P, N, K, x, M, y, scratch, ld_ctx_threads(ctx), pack_isa(wtype));
    return LD_OK;
}

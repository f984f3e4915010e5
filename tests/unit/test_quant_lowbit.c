/* tests/unit/test_quant_lowbit.c — the low-bit weight formats (Q2_K, Q3_K, TQ1_0, TQ2_0,
 * IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_NL, IQ4_XS): optimized dot
 * kernels bit-identical to the scalar reference, the levels form equal to the decoded
 * weights, ld_qmatmul on them against a dequantize + f32 product, and hand-built golden
 * blocks that pin the bit layout of each format independently of GGML (test_quant_ggml
 * compares with GGML itself). */
#include "ld_test.h"
#include "kernels/kernels.h"
#include "quant/qgemm.h"
#include "quant/quant_blocks.h"
#include "quant/quant_mix.h"

static const ld_dtype LOWBIT[] = {LD_Q2_K,   LD_Q3_K,    LD_TQ1_0,  LD_TQ2_0, LD_IQ1_S,   LD_IQ1_M,  LD_IQ2_XXS,
                                  LD_IQ2_XS, LD_IQ2_S, LD_IQ3_XXS, LD_IQ3_S, LD_IQ4_NL, LD_IQ4_XS};
#define NLOW (int)(sizeof LOWBIT / sizeof LOWBIT[0])

static float *gaussian(uint64_t seed, int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    ld_rng r = ld_rng_init(seed);
    for (int64_t i = 0; i < n; i++) x[i] = ld_rng_normal(&r);
    return x;
}

static size_t row_bytes(ld_dtype t, int64_t n) {
    size_t b = 0;
    ld_dtype_row_bytes(t, n, &b);
    return b;
}

/* ---- optimized dots against the reference ------------------------------------------------ */
/* each optimized level's dots (TEST_ISA), and its activation quantizer, against the reference */
TEST_ISA(optimized_dots_equal_reference) {
    if (ld_test_isa_ == LD_ISA_NEON) SKIP("NEON has the decode path's types only (quant/qdot_neon.c), none of these");
    for (int t = 0; t < NLOW; t++) {
        const ld_quant_traits *q = ld_quant_traits_at(LOWBIT[t], ld_test_isa_);
        const char *name = ld_dtype_traits(LOWBIT[t])->name;
        CHECK_MSG(q && q->vec_dot != q->vec_dot_ref, "%s: no optimized dot", name);
        if (!q || q->vec_dot == q->vec_dot_ref) continue;
        /* 1, 3, 5 ... super-blocks, then 9, 11, 13 blocks of 32 (IQ4_NL: the blocks after
         * the last group of 4 take the tail path) */
        static const int64_t sizes[] = {256, 768, 1280, 1792, 2304, 2816, 288, 352, 416};
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            const int64_t n = sizes[si];
            if (n % q->block_size || n % q->act_block_size) continue;
            const int64_t nblk = n / q->block_size;
            uint8_t *w = malloc(row_bytes(LOWBIT[t], n));
            uint8_t *a = malloc((size_t)(n / q->act_block_size) * q->act_block_bytes);
            float *xa = gaussian(50 + (uint64_t)n, n);
            for (int rep = 0; rep < 6; rep++) {
                ld_quant_random_blocks(LOWBIT[t], w, nblk, 100 * (uint64_t)t + (uint64_t)rep);
                /* extreme activations too: every int8 product at its bound */
                if (rep == 5)
                    for (int64_t i = 0; i < n; i++) xa[i] = i % 3 ? -1.0f : 1.0f;
                q->quantize_act_ref(xa, a, n);
                if (rep == 0) {
                    uint8_t *a2 = malloc((size_t)(n / q->act_block_size) * q->act_block_bytes);
                    q->quantize_act(xa, a2, n);
                    CHECK_MSG(!memcmp(a, a2, (size_t)(n / q->act_block_size) * q->act_block_bytes),
                              "%s: activation quantizers differ", name);
                    free(a2);
                }
                const float r = q->vec_dot_ref(n, w, a), o = q->vec_dot(n, w, a);
                CHECK_MSG(!memcmp(&r, &o, sizeof r), "%s n=%lld rep %d: reference %.9g, optimized %.9g", name, (long long)n,
                          rep, r, o);
            }
            free(w), free(a), free(xa);
        }
    }
}

/* ---- levels form -------------------------------------------------------------------------- */
/* s * (L - zp) + o reproduces every decoded weight exactly (every format of the int8 GEMM),
 * and no level exceeds the format's maxl (the AVX2 byte kernels' int16 sums rely on it). */
TEST(levels_form_reproduces_weights) {
    const int64_t n = 1024;
    uint8_t *w = malloc(row_bytes(LD_Q8_0, n)), *L = malloc(n);
    float *y = malloc(n * sizeof(float)), *s = malloc(n / 16 * sizeof(float)), *o = malloc(n / 16 * sizeof(float));
    int checked = 0;
    for (int t = 0; t < LD_DTYPE_COUNT; t++) {
        const ld_qgemm_format *f = ld_qgemm_format_get((ld_dtype)t);
        if (!f) continue;
        const ld_dtype_info *di = ld_dtype_traits((ld_dtype)t);
        int bad = 0, top = 0;
        for (int rep = 0; rep < 4 && !bad; rep++) {
            ld_quant_random_blocks((ld_dtype)t, w, n / di->block_size, 7 + 10 * (uint64_t)t + (uint64_t)rep);
            ld_quant_traits_get((ld_dtype)t)->dequantize_row(w, y, n);
            for (int64_t g = 0; g < n / f->group; g++) o[g] = 0.0f;
            f->levels(w, n, L, s, o);
            for (int64_t i = 0; i < n && !bad; i++) {
                const float v = s[i / f->group] * (float)(L[i] - f->zp) + o[i / f->group];
                if (L[i] > top) top = L[i];
                if (v != y[i] && !(v == 0 && y[i] == 0)) {
                    CHECK_MSG(0, "%s element %lld: levels form %.9g, decoded %.9g", di->name, (long long)i, v, y[i]);
                    bad = 1;
                }
            }
        }
        CHECK_MSG(top <= f->maxl, "%s: level %d above the format's maxl %d", di->name, top, f->maxl);
        checked++;
    }
    CHECK(checked >= NLOW + 5);
    free(w), free(L), free(y), free(s), free(o);
}

/* ---- ld_qmatmul ------------------------------------------------------------------------------ */
/* xa = the M x K activations as ld_qmatmul's kernels round them: per group of the int8 GEMM
 * when it runs (many rows, a CPU that has it), else per activation block of the row dots. */
static void seen_activations(ld_dtype t, const float *x, int64_t M, int64_t K, float *xa) {
    const ld_quant_traits *q = ld_quant_traits_get(t);
    const ld_qgemm_format *f = ld_qgemm_format_get(t);
    if (f && ld_qmatmul_has_gemm(t, M)) {
        int8_t *qa = malloc(K);
        ld_qgemm_agroup *g = malloc((size_t)(K / f->group) * sizeof *g);
        for (int64_t m = 0; m < M; m++) {
            ld_qgemm_quantize_act_ref(f, x + m * K, K, qa, g);
            for (int64_t k = 0; k < K; k++) xa[m * K + k] = g[k / f->group].d * (float)qa[k];
        }
        free(qa), free(g);
        return;
    }
    uint8_t *act = malloc((size_t)(K / q->act_block_size) * q->act_block_bytes);
    for (int64_t m = 0; m < M; m++) {
        q->quantize_act_ref(x + m * K, act, K);
        if (q->act_block_size == 32) ld_dequantize_row_q8_0(act, xa + m * K, K);
        else ld_dequantize_row_q8_K(act, xa + m * K, K);
    }
    free(act);
}

/* y = x . W^T on low-bit W equals the f32 product with the decoded W and the activations as
 * the kernels round them, to float rounding: a few rows (the row dots) and 32 rows (the int8
 * GEMM where the CPU has one, which must not saturate on any type's levels). */
TEST(qmatmul_matches_dequantized_product) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    const int64_t N = 24, K = 512;
    for (int64_t M = 3; M <= 32; M += 29) {
        float *x = gaussian(31, M * K), *wf = malloc(N * K * sizeof(float)), *xa = malloc(M * K * sizeof(float));
        float *y = malloc(M * N * sizeof(float));
        for (int t = 0; t < NLOW; t++) {
            const ld_dtype_info *di = ld_dtype_traits(LOWBIT[t]);
            uint8_t *W = malloc(row_bytes(LOWBIT[t], N * K));
            ld_quant_random_blocks(LOWBIT[t], W, N * K / di->block_size, 40 + (uint64_t)t);
            CHECK(ld_dequantize(ctx, LOWBIT[t], W, wf, N * K) == LD_OK);
            size_t sz = 0;
            CHECK_STATUS(ctx, ld_qmatmul_scratch_size(ctx, LOWBIT[t], M, K, &sz), LD_OK, "");
            void *scratch = malloc(sz ? sz : 1);
            CHECK_STATUS(ctx, ld_qmatmul(ctx, LOWBIT[t], W, N, K, x, M, y, scratch), LD_OK, "");
            seen_activations(LOWBIT[t], x, M, K, xa);
            for (int64_t m = 0; m < M; m++)
                for (int64_t c = 0; c < N; c++) {
                    double ref = 0, mag = 0;
                    for (int64_t k = 0; k < K; k++)
                        ref += (double)xa[m * K + k] * wf[c * K + k], mag += fabs((double)xa[m * K + k] * wf[c * K + k]);
                    CHECK_MSG(fabs(y[m * N + c] - ref) <= 1e-5 * mag + 1e-30, "%s M=%lld y[%lld,%lld] = %.9g, reference %.9g",
                              di->name, (long long)M, (long long)m, (long long)c, y[m * N + c], ref);
                }
            free(W), free(scratch);
        }
        free(x), free(wf), free(xa), free(y);
    }
    ld_ctx_free(ctx);
}

/* ---- quantizers ------------------------------------------------------------------------------ */
/* RMS relative round-trip error on N(0,1) rows (measured: Q2_K 0.293, Q3_K 0.152, IQ4_NL 0.076,
 * IQ4_XS 0.076, TQ1_0/TQ2_0 0.436, IQ3_S 0.150, IQ3_XXS 0.177, IQ2_S 0.240, IQ2_XS 0.290,
 * IQ2_XXS 0.332, IQ1_M 0.419, IQ1_S 0.452; bounds ~10 % above), an importance matrix lowering
 * the weighted error, and results independent of the thread count. The types that need an
 * importance matrix (ld_quant_needs_imatrix) are refused without one; their "plain" error
 * is taken with an importance matrix of ones. */
TEST(quantizers_round_trip) {
    static const struct {
        ld_dtype t;
        double bound;
    } Q[] = {{LD_Q2_K, 0.32},     {LD_Q3_K, 0.167},   {LD_IQ4_NL, 0.084}, {LD_IQ4_XS, 0.084},
             {LD_TQ1_0, 0.48},    {LD_TQ2_0, 0.48},   {LD_IQ3_S, 0.165}, {LD_IQ3_XXS, 0.195},
             {LD_IQ2_S, 0.265},  {LD_IQ2_XS, 0.32}, {LD_IQ2_XXS, 0.365}, {LD_IQ1_M, 0.46}, {LD_IQ1_S, 0.50}};
    const int64_t R = 16, C = 1024;
    float *x = gaussian(61, R * C), *y = malloc(R * C * sizeof(float)), *im = gaussian(62, C), *ones = malloc(C * sizeof(float));
    for (int64_t c = 0; c < C; c++) im[c] = im[c] * im[c] * 4 + 0.01f, ones[c] = 1.0f;
    for (size_t k = 0; k < sizeof Q / sizeof Q[0]; k++) {
        const char *name = ld_dtype_traits(Q[k].t)->name;
        uint8_t *w1 = malloc(row_bytes(Q[k].t, R * C)), *w2 = malloc(row_bytes(Q[k].t, R * C));
        const float *plain = ld_quant_needs_imatrix(Q[k].t) ? ones : NULL;
        if (plain) {
            ld_ctx *c0 = NULL;
            ld_ctx_new(NULL, &c0);
            CHECK_STATUS(c0, ld_quantize(c0, Q[k].t, w1, x, R, C, NULL), LD_ERR_INVALID_ARG, "importance matrix");
            ld_ctx_free(c0);
        }
        double e[2][2]; /* [imatrix used][error weighted by it] */
        for (int use = 0; use < 2; use++) {
            ld_ctx_params p = ld_ctx_default_params();
            p.n_threads = use ? 1 : 2;
            ld_ctx *ctx = NULL;
            ld_ctx_new(&p, &ctx);
            CHECK_STATUS(ctx, ld_quantize(ctx, Q[k].t, use ? w2 : w1, x, R, C, use ? im : plain), LD_OK, "");
            CHECK_STATUS(ctx, ld_dequantize(ctx, Q[k].t, use ? w2 : w1, y, R * C), LD_OK, "");
            for (int wt = 0; wt < 2; wt++) {
                double num = 0, den = 0;
                for (int64_t i = 0; i < R * C; i++) {
                    const double wi = wt ? im[i % C] : 1.0, d = (double)x[i] - y[i];
                    num += wi * d * d, den += wi * (double)x[i] * x[i];
                }
                e[use][wt] = sqrt(num / den);
            }
            ld_ctx_free(ctx);
        }
        printf("  %-6s rms relative error %.4f (bound %.3f); weighted: plain %.4f, with imatrix %.4f\n", name, e[0][0],
               Q[k].bound, e[0][1], e[1][1]);
        CHECK_MSG(e[0][0] <= Q[k].bound, "%s: error %.4f", name, e[0][0]);
        CHECK_MSG(e[1][1] < e[0][1], "%s: the importance matrix did not lower the weighted error", name);
        /* two threads (plain) and one thread give the same bytes for the same input */
        ld_ctx *c1 = NULL;
        ld_ctx_new(NULL, &c1);
        ld_quantize(c1, Q[k].t, w2, x, R, C, plain);
        CHECK_MSG(!memcmp(w1, w2, row_bytes(Q[k].t, R * C)), "%s: result depends on the thread count", name);
        ld_ctx_free(c1);
        free(w1), free(w2);
    }
    free(x), free(y), free(im), free(ones);
}

/* ---- mixes ------------------------------------------------------------------------------------ */
static ld_dtype mix_type(const char *mix, ld_tensor_role role, int layer, int n_layers, int gqa, bool imat) {
    const ld_mix_tensor t = {role, layer, n_layers, 4096, gqa, imat, false};
    return ld_quant_mix_type(ld_quant_mix_get(mix), &t);
}

/* llama.cpp's rules on a 32-layer model (llama_tensor_get_type). */
TEST(mixes_follow_llama_cpp_rules) {
    CHECK(ld_quant_mix_get("q3_k_m") && ld_quant_mix_get("Q3_K_M") == ld_quant_mix_get("q3_k_m"));
    CHECK(!ld_quant_mix_get("q3_k") && !ld_quant_mix_get("q3_k_mm") && !ld_quant_mix_get(""));
    CHECK(ld_quant_mix_ftype(ld_quant_mix_get("Q3_K_M")) == 12 && ld_quant_mix_body(ld_quant_mix_get("Q3_K_M")) == LD_Q3_K);
    /* Q3_K_M: attn_v Q5_K for layers 0-1, Q4_K after; ffn_down Q5_K below 32/16, Q4_K after */
    CHECK(mix_type("Q3_K_M", LD_ROLE_ATTN_V, 1, 32, 1, false) == LD_Q5_K);
    CHECK(mix_type("Q3_K_M", LD_ROLE_ATTN_V, 2, 32, 1, false) == LD_Q4_K);
    CHECK(mix_type("Q3_K_M", LD_ROLE_FFN_DOWN, 1, 32, 1, false) == LD_Q5_K);
    CHECK(mix_type("Q3_K_M", LD_ROLE_FFN_DOWN, 2, 32, 1, false) == LD_Q4_K);
    CHECK(mix_type("Q3_K_M", LD_ROLE_ATTN_OUTPUT, 5, 32, 1, false) == LD_Q4_K);
    CHECK(mix_type("Q3_K_M", LD_ROLE_FFN_UP, 5, 32, 1, false) == LD_Q3_K);
    CHECK(mix_type("Q3_K_M", LD_ROLE_ATTN_QKV, 5, 32, 1, false) == LD_Q4_K); /* attn_qkv follows attn_v */
    /* Q4_K_M: Q6_K where use_more_bits: layers < 4, >= 28, and (i - 4) % 3 == 2 */
    for (int i = 0; i < 32; i++) {
        const bool more = i < 4 || i >= 28 || (i - 4) % 3 == 2;
        CHECK_MSG(mix_type("Q4_K_M", LD_ROLE_FFN_DOWN, i, 32, 1, false) == (more ? LD_Q6_K : LD_Q4_K), "layer %d", i);
    }
    /* Q2_K: attn_v Q4_K with 4+ query heads per KV head, else Q3_K */
    CHECK(mix_type("Q2_K", LD_ROLE_ATTN_V, 9, 32, 4, false) == LD_Q4_K);
    CHECK(mix_type("Q2_K", LD_ROLE_ATTN_V, 9, 32, 2, false) == LD_Q3_K);
    CHECK(mix_type("Q2_K", LD_ROLE_ATTN_Q, 9, 32, 2, false) == LD_Q2_K);
    /* IQ4_XS: ffn_down of the first eighth Q5_K unless an importance matrix is given */
    CHECK(mix_type("IQ4_XS", LD_ROLE_FFN_DOWN, 3, 32, 1, false) == LD_Q5_K);
    CHECK(mix_type("IQ4_XS", LD_ROLE_FFN_DOWN, 3, 32, 1, true) == LD_IQ4_XS);
    /* the i-quant mixes */
    CHECK(ld_quant_mix_body(ld_quant_mix_get("iq2_s")) == LD_IQ2_XS && ld_quant_mix_body(ld_quant_mix_get("iq2_m")) == LD_IQ2_S);
    CHECK(mix_type("IQ2_XXS", LD_ROLE_ATTN_V, 9, 32, 2, true) == LD_Q2_K && mix_type("IQ2_XXS", LD_ROLE_ATTN_V, 9, 32, 4, true) == LD_Q4_K);
    CHECK(mix_type("IQ2_XXS", LD_ROLE_FFN_DOWN, 3, 32, 1, true) == LD_Q2_K && mix_type("IQ2_XXS", LD_ROLE_FFN_DOWN, 4, 32, 1, true) == LD_IQ2_XXS);
    CHECK(mix_type("IQ2_M", LD_ROLE_ATTN_OUTPUT, 9, 32, 1, true) == LD_IQ3_S && mix_type("IQ1_S", LD_ROLE_ATTN_OUTPUT, 9, 32, 1, true) == LD_IQ2_XXS);
    CHECK(mix_type("IQ1_M", LD_ROLE_TOKEN_EMBD, 0, 32, 1, true) == LD_Q2_K && mix_type("TQ1_0", LD_ROLE_TOKEN_EMBD, 0, 32, 1, true) == LD_Q4_K);
    CHECK(mix_type("IQ3_XXS", LD_ROLE_ATTN_Q, 9, 32, 1, true) == LD_IQ2_S && mix_type("IQ3_XXS", LD_ROLE_ATTN_V, 9, 32, 1, true) == LD_IQ3_XXS);
    CHECK(mix_type("IQ3_XXS", LD_ROLE_ATTN_V, 9, 32, 1, false) == LD_IQ3_S && mix_type("IQ3_XXS", LD_ROLE_FFN_DOWN, 9, 32, 1, false) == LD_Q3_K);
    CHECK(mix_type("IQ3_XS", LD_ROLE_FFN_UP, 3, 32, 1, true) == LD_IQ3_S && mix_type("IQ3_XS", LD_ROLE_FFN_UP, 4, 32, 1, true) == LD_IQ3_XXS);
    CHECK(mix_type("IQ3_XS", LD_ROLE_FFN_UP, 28, 32, 1, true) == LD_IQ3_S && mix_type("IQ3_M", LD_ROLE_ATTN_V, 9, 32, 1, true) == LD_Q4_K);
    const ld_mix_tensor iq_out = {LD_ROLE_OUTPUT, 0, 32, 4096, 1, true, false};
    CHECK(ld_quant_mix_type(ld_quant_mix_get("IQ2_XXS"), &iq_out) == LD_Q5_K && ld_quant_mix_type(ld_quant_mix_get("IQ3_S"), &iq_out) == LD_Q6_K);
    /* output Q6_K, or Q8_0 when its rows are not whole blocks; a tied embedding too */
    const ld_mix_tensor out = {LD_ROLE_OUTPUT, 0, 32, 4096, 1, false, false}, odd = {LD_ROLE_OUTPUT, 0, 32, 4000, 1, false, false};
    const ld_mix_tensor tied = {LD_ROLE_TOKEN_EMBD, 0, 32, 4096, 1, false, true}, untied = {LD_ROLE_TOKEN_EMBD, 0, 32, 4096, 1, false, false};
    CHECK(ld_quant_mix_type(ld_quant_mix_get("Q2_K"), &out) == LD_Q6_K);
    CHECK(ld_quant_mix_type(ld_quant_mix_get("Q2_K"), &odd) == LD_Q8_0);
    CHECK(ld_quant_mix_type(ld_quant_mix_get("Q2_K"), &tied) == LD_Q6_K);
    CHECK(ld_quant_mix_type(ld_quant_mix_get("Q2_K"), &untied) == LD_Q2_K);
    /* roles from GGUF names; fallbacks for rows that are not whole blocks */
    CHECK(ld_tensor_role_of("blk.3.attn_v.weight") == LD_ROLE_ATTN_V && ld_tensor_role_of("output.weight") == LD_ROLE_OUTPUT);
    CHECK(ld_tensor_role_of("blk.0.ffn_down.weight") == LD_ROLE_FFN_DOWN && ld_tensor_role_of("blk.0.attn_norm.weight") == LD_ROLE_OTHER);
    CHECK(ld_quant_mix_fallback(LD_Q3_K, 4096) == LD_Q3_K && ld_quant_mix_fallback(LD_Q3_K, 96) == LD_Q4_0);
    CHECK(ld_quant_mix_fallback(LD_IQ4_XS, 96) == LD_IQ4_NL && ld_quant_mix_fallback(LD_Q6_K, 96) == LD_Q8_0);
    CHECK(ld_quant_mix_fallback(LD_Q4_K, 100) == LD_F16);
    CHECK(ld_quant_mix_fallback(LD_IQ2_XXS, 96) == LD_IQ4_NL && ld_quant_mix_fallback(LD_TQ1_0, 96) == LD_Q4_0);
    for (int i = 0; i < ld_quant_mix_count(); i++) /* every mix names only types liandan writes */
        CHECK_MSG(ld_quant_type_supported(ld_quant_mix_body(ld_quant_mix_at(i))), "%s", ld_quant_mix_name(ld_quant_mix_at(i)));
}

/* ---- the int8 GEMM's scalar reference on the levels forms ------------------------------------ */
/* ld_qgemm_run (reference path: any CPU) on low-bit weights equals the f32 product of the
 * decoded weights with the activations as the GEMM rounds them (per group, qgemm.h). */
TEST(qgemm_reference_matches_dequantized_product) {
    const int64_t N = 8, K = 512, M = 3;
    float *x = gaussian(71, M * K), *wf = malloc(N * K * sizeof(float)), *xa = malloc(M * K * sizeof(float));
    float *y = malloc(M * N * sizeof(float));
    for (int t = 0; t < NLOW; t++) {
        const ld_qgemm_format *f = ld_qgemm_format_get(LOWBIT[t]);
        const ld_dtype_info *di = ld_dtype_traits(LOWBIT[t]);
        CHECK_MSG(f != NULL, "%s has no GEMM form", di->name);
        if (!f) continue;
        uint8_t *W = malloc(row_bytes(LOWBIT[t], N * K));
        ld_quant_random_blocks(LOWBIT[t], W, N * K / di->block_size, 80 + (uint64_t)t);
        ld_quant_traits_get(LOWBIT[t])->dequantize_row(W, wf, N * K);
        int8_t *q = malloc(K);
        ld_qgemm_agroup *g = malloc((size_t)(K / f->group) * sizeof *g);
        for (int64_t m = 0; m < M; m++) {
            ld_qgemm_quantize_act_ref(f, x + m * K, K, q, g);
            for (int64_t k = 0; k < K; k++) xa[m * K + k] = g[k / f->group].d * (float)q[k];
        }
        void *scratch = malloc(ld_qgemm_scratch_bytes(f, M, K, 1));
        ld_qgemm_run(f, W, row_bytes(LOWBIT[t], K), N, K, x, M, y, scratch, 1, NULL);
        for (int64_t m = 0; m < M; m++)
            for (int64_t c = 0; c < N; c++) {
                double ref = 0, mag = 0;
                for (int64_t k = 0; k < K; k++)
                    ref += (double)xa[m * K + k] * wf[c * K + k], mag += fabs((double)xa[m * K + k] * wf[c * K + k]);
                CHECK_MSG(fabs(y[m * N + c] - ref) <= 1e-5 * mag + 1e-30, "%s y[%lld,%lld] = %.9g, reference %.9g",
                          di->name, (long long)m, (long long)c, y[m * N + c], ref);
            }
        free(W), free(q), free(g), free(scratch);
    }
    free(x), free(wf), free(xa), free(y);
}

/* The int8 GEMM of each ISA level on the low-bit byte panels gives the reference's bits:
 * random blocks of every bit pattern (the largest levels included), Gaussian activations
 * with outliers, and activations at +-1 (every int8 product at its bound). */
TEST_ISA(qgemm_equals_reference) {
    const ld_qgemm_isa *isa = ld_qgemm_isa_at(ld_test_isa_);
    if (!isa) SKIP("no int8 GEMM at level %s", ld_isa_name(ld_test_isa_));
    static const int64_t Ms[] = {1, 3, 4, 17}, Ns[] = {47, 49};
    const int64_t K = 512;
    for (int t = 0; t < NLOW; t++) {
        const ld_qgemm_format *f = ld_qgemm_format_get(LOWBIT[t]);
        const ld_dtype_info *di = ld_dtype_traits(LOWBIT[t]);
        CHECK_MSG(ld_qgemm_isa_for(ld_test_isa_, f) == isa, "%s: not computed by the int8 GEMM at this level", di->name);
        const size_t wrow = row_bytes(LOWBIT[t], K);
        for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
            for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
                for (int extreme = 0; extreme < 2; extreme++) {
                    const int64_t M = Ms[mi], N = Ns[ni];
                    uint8_t *W = malloc(wrow * N);
                    ld_quant_random_blocks(LOWBIT[t], W, N * K / di->block_size, 90 + (uint64_t)t + ni);
                    float *x = gaussian(23 + mi, M * K);
                    for (int64_t i = 0; i < M * K; i++)
                        x[i] = extreme ? ((i / K) % 2 ? -1.0f : 1.0f) : i % 97 ? x[i] : 40.0f * x[i];
                    void *scratch = malloc(ld_qgemm_scratch_bytes(f, M, K, 2));
                    float *y = malloc(M * N * sizeof(float)), *yr = malloc(M * N * sizeof(float));
                    ld_qgemm_run(f, W, wrow, N, K, x, M, y, scratch, 2, isa);
                    ld_qgemm_run(f, W, wrow, N, K, x, M, yr, scratch, 1, NULL);
                    int64_t bad = -1;
                    for (int64_t i = 0; i < M * N && bad < 0; i++)
                        if (memcmp(&y[i], &yr[i], sizeof(float))) bad = i;
                    CHECK_MSG(bad < 0, "%s M=%lld N=%lld%s: y[%lld] = %.9g, reference %.9g", di->name, (long long)M,
                              (long long)N, extreme ? " (+-1 activations)" : "", (long long)bad, bad < 0 ? 0.0 : y[bad],
                              bad < 0 ? 0.0 : yr[bad]);
                    free(W), free(x), free(scratch), free(y), free(yr);
                }
    }
}

LD_TEST_MAIN()

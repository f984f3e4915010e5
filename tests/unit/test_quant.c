/* tests/unit/test_quant.c — quantized block formats and kernels: round-trip error bounds,
 * hand-built golden blocks proving the GGML bit layout, importance weighting, optimized
 * dots against the scalar reference (exact on integer-valued cases), the int8 GEMM against
 * its scalar reference (bit for bit), ld_qmatmul against a dequantize + f32 reference,
 * thread-count invariance, and error paths. */
#include "ld_test.h"
#include "kernels/kernels.h"
#include "quant/qgemm.h"
#include "quant/quant_blocks.h"

static const ld_dtype QTYPES[] = {LD_Q8_0, LD_Q4_0, LD_Q4_K, LD_Q5_K, LD_Q6_K};
#define NQ (int)(sizeof QTYPES / sizeof QTYPES[0])

static ld_ctx *new_ctx(int threads) {
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = threads;
    ld_ctx *ctx = NULL;
    ld_ctx_new(&p, &ctx);
    return ctx;
}

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


/* sqrt(sum w (x - y)^2 / sum w x^2) over nrows x ncols (w per column, NULL = 1). */
static double rel_err(const float *x, const float *y, int64_t nrows, int64_t ncols, const float *w) {
    double num = 0, den = 0;
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t c = 0; c < ncols; c++) {
            double wi = w ? w[c] : 1.0, d = (double)x[r * ncols + c] - y[r * ncols + c];
            num += wi * d * d;
            den += wi * (double)x[r * ncols + c] * x[r * ncols + c];
        }
    return sqrt(num / den);
}

/* ---- round trip ------------------------------------------------------------------------- */
TEST(roundtrip_error_bounds) {
    /* RMS relative error on N(0,1) rows; measured (this code): Q8_0 0.0053 (= step/sqrt(12)
     * for amax/127 steps), Q4_0 0.081, Q4_K 0.071, Q5_K 0.036, Q6_K 0.017 — bounds leave
     * ~15 % headroom. */
    static const double bound[] = {0.006, 0.093, 0.082, 0.041, 0.020};
    ld_ctx *ctx = new_ctx(2);
    const int64_t R = 32, C = 1024;
    float *x = gaussian(1, R * C), *y = malloc(R * C * sizeof(float));
    for (int t = 0; t < NQ; t++) {
        void *q = malloc(row_bytes(QTYPES[t], C) * R);
        CHECK_STATUS(ctx, ld_quantize(ctx, QTYPES[t], q, x, R, C, NULL), LD_OK, "");
        CHECK_STATUS(ctx, ld_dequantize(ctx, QTYPES[t], q, y, R * C), LD_OK, "");
        double e = rel_err(x, y, R, C, NULL);
        printf("  %-5s rms relative error %.4f (bound %.3f)\n", ld_dtype_traits(QTYPES[t])->name, e, bound[t]);
        CHECK_MSG(e < bound[t], "%s: %.4f >= %.4f", ld_dtype_traits(QTYPES[t])->name, e, bound[t]);
        free(q);
    }
    /* All-zero and constant rows stay exact (no NaN from zero scales). */
    for (int64_t i = 0; i < C; i++) x[i] = 0.0f, x[C + i] = -0.75f;
    for (int t = 0; t < NQ; t++) {
        void *q = malloc(row_bytes(QTYPES[t], C) * 2);
        CHECK(ld_quantize(ctx, QTYPES[t], q, x, 2, C, NULL) == LD_OK);
        CHECK(ld_dequantize(ctx, QTYPES[t], q, y, 2 * C) == LD_OK);
        CHECK_MSG(y[5] == 0.0f && fabsf(y[C + 5] + 0.75f) < 0.01f, "%s: %g %g", ld_dtype_traits(QTYPES[t])->name,
                  y[5], y[C + 5]);
        free(q);
    }
    free(x);
    free(y);
    ld_ctx_free(ctx);
}

/* ---- golden blocks: the bit layout, spelled out independently of the codec ---------------- */
TEST(golden_q8_0_q4_0) {
    ld_block_q8_0 b8 = {.d = 0x3800}; /* 0.5 */
    for (int i = 0; i < 32; i++) b8.qs[i] = (int8_t)(i - 16);
    float y[32];
    ld_dequantize_row_q8_0(&b8, y, 32);
    for (int i = 0; i < 32; i++) CHECK(y[i] == (float)(i - 16) * 0.5f);

    ld_block_q4_0 b4 = {.d = 0x4000}; /* 2.0 */
    for (int j = 0; j < 16; j++) b4.qs[j] = (uint8_t)(j | (15 - j) << 4);
    ld_dequantize_row_q4_0(&b4, y, 32);
    CHECK(y[0] == -16.0f && y[15] == 14.0f && y[16] == 14.0f && y[31] == -16.0f);
    for (int j = 0; j < 16; j++) CHECK(y[j] == (float)(j - 8) * 2 && y[j + 16] == (float)(7 - j) * 2);
}

/* Scales {1,2,3,4,33,34,35,36}, mins {5,6,7,8,17,18,19,20}, packed by GGML's rule. */
static const uint8_t K4_SCALES[12] = {0x81, 0x82, 0x83, 0x84, 0x45, 0x46, 0x47, 0x48, 0x11, 0x22, 0x33, 0x44};
static const int K4_SC[8] = {1, 2, 3, 4, 33, 34, 35, 36}, K4_M[8] = {5, 6, 7, 8, 17, 18, 19, 20};

TEST(golden_q4_K_q5_K) {
    ld_block_q4_K b = {.d = 0x3C00, .dmin = 0x3800}; /* 1.0, 0.5 */
    memcpy(b.scales, K4_SCALES, 12);
    for (int k = 0; k < 128; k++) b.qs[k] = (uint8_t)((k % 16) | (15 - k % 16) << 4);
    float y[256];
    ld_dequantize_row_q4_K(&b, y, 256);
    CHECK(y[0] == -2.5f);    /* sub 0: 1*0 - 0.5*5 */
    CHECK(y[33] == 25.0f);   /* sub 1 (high nibble of qs[1] = 14): 2*14 - 3 */
    CHECK(y[200] == 270.5f); /* sub 6 (low nibble of qs[104] = 8): 35*8 - 9.5 */
    CHECK(y[255] == -10.0f); /* sub 7 (high nibble of qs[127] = 0): -0.5*20 */
    for (int e = 0; e < 256; e++) {
        int c = e / 64, r = e % 64, j = 2 * c + (r >= 32);
        int q = r < 32 ? b.qs[32 * c + r] & 15 : b.qs[32 * c + r - 32] >> 4;
        CHECK(y[e] == (float)K4_SC[j] * q - 0.5f * (float)K4_M[j]);
    }
    ld_block_q5_K b5 = {.d = 0x3C00, .dmin = 0x3800};
    memcpy(b5.scales, K4_SCALES, 12);
    memcpy(b5.qs, b.qs, 128);
    for (int l = 0; l < 32; l++) b5.qh[l] = (uint8_t)(0xA5 ^ (l * 7));
    ld_dequantize_row_q5_K(&b5, y, 256);
    CHECK(y[0] == 13.5f); /* qh[0] = 0xA5, bit 0 set: 1*(0+16) - 2.5 */
    for (int e = 0; e < 256; e++) {
        int c = e / 64, r = e % 64, j = 2 * c + (r >= 32);
        int q = r < 32 ? b5.qs[32 * c + r] & 15 : b5.qs[32 * c + r - 32] >> 4;
        q |= ((b5.qh[r % 32] >> (2 * c + (r >= 32))) & 1) << 4;
        CHECK(y[e] == (float)K4_SC[j] * q - 0.5f * (float)K4_M[j]);
    }
}

TEST(golden_q6_K) {
    ld_block_q6_K b = {.d = 0x3400}; /* 0.25 */
    for (int k = 0; k < 128; k++) b.ql[k] = (uint8_t)(k * 37 + 11);
    for (int k = 0; k < 64; k++) b.qh[k] = (uint8_t)(k * 91 + 5);
    for (int g = 0; g < 16; g++) b.scales[g] = (int8_t)((g & 1) ? -(g + 1) : g + 1);
    float y[256];
    ld_dequantize_row_q6_K(&b, y, 256);
    /* element 0: ql[0] = 11 -> low 4 = 11, qh[0] = 5 -> bits 0-1 = 1: q = 27; 0.25*1*(27-32) */
    CHECK(y[0] == -1.25f);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, r = e % 128, l = r % 32, part = r / 32; /* part 0..3 */
        int ql = b.ql[64 * h + l + (part & 1) * 32];
        int lo = part < 2 ? ql & 15 : ql >> 4;
        int hi = (b.qh[32 * h + l] >> (2 * part)) & 3;
        CHECK(y[e] == 0.25f * (float)b.scales[e / 16] * (float)((lo | hi << 4) - 32));
    }
}

/* ---- importance weights ------------------------------------------------------------------ */
TEST(imatrix_reduces_weighted_error) {
    ld_ctx *ctx = new_ctx(2);
    const int64_t R = 16, C = 512;
    float *x = gaussian(2, R * C), *y = malloc(R * C * sizeof(float)), *w = malloc(C * sizeof(float));
    ld_rng r = ld_rng_init(3);
    for (int64_t c = 0; c < C; c++) w[c] = expf(2.0f * ld_rng_normal(&r)); /* heavy-tailed importances */
    for (int t = 1; t < NQ; t++) { /* Q8_0 ignores weights */
        void *q = malloc(row_bytes(QTYPES[t], C) * R);
        CHECK(ld_quantize(ctx, QTYPES[t], q, x, R, C, NULL) == LD_OK);
        ld_dequantize(ctx, QTYPES[t], q, y, R * C);
        double plain = rel_err(x, y, R, C, w);
        CHECK(ld_quantize(ctx, QTYPES[t], q, x, R, C, w) == LD_OK);
        ld_dequantize(ctx, QTYPES[t], q, y, R * C);
        double weighted = rel_err(x, y, R, C, w);
        printf("  %-5s weighted error: plain %.4f, with imatrix %.4f\n", ld_dtype_traits(QTYPES[t])->name, plain, weighted);
        CHECK_MSG(weighted < 0.9 * plain, "%s: %.4f vs %.4f", ld_dtype_traits(QTYPES[t])->name, weighted, plain);
        free(q);
    }
    free(x);
    free(y);
    free(w);
    ld_ctx_free(ctx);
}

/* ---- optimized dots against the reference ------------------------------------------------ */
/* Random bytes with unit scales: every float operation is then exact, so the optimized
 * kernel must equal the reference bit for bit (this tests the integer parts). */
static void unit_scale_blocks(ld_dtype t, uint8_t *w, int64_t nblk, uint64_t seed) {
    ld_rng r = ld_rng_init(seed);
    const ld_dtype_info *di = ld_dtype_traits(t);
    for (int64_t i = 0; i < nblk * di->block_bytes; i++) w[i] = (uint8_t)ld_rng_u64(&r);
    for (int64_t i = 0; i < nblk; i++) {
        uint8_t *b = w + i * di->block_bytes;
        const uint16_t one = 0x3C00;
        if (t == LD_Q6_K) memcpy(b + 208, &one, 2);
        else memcpy(b, &one, 2);
        if (t == LD_Q4_K || t == LD_Q5_K) memcpy(b + 2, &one, 2);
    }
}

/* The largest levels every weight type has (all bits set; Q8_0 at -128) with unit scales:
 * with activations all at 127 these are the kernels' worst case for their int16 partial sums
 * (simd_i8_avx2.h's LD_I8_SPAN), which Gaussian data never approaches. */
static void extreme_blocks(ld_dtype t, uint8_t *w, int64_t nblk) {
    memset(w, t == LD_Q8_0 ? 0x80 : 0xFF, (size_t)nblk * ld_dtype_traits(t)->block_bytes);
    for (int64_t i = 0; i < nblk; i++) {
        uint8_t *b = w + i * ld_dtype_traits(t)->block_bytes;
        const uint16_t one = 0x3C00;
        if (t == LD_Q6_K) memcpy(b + 208, &one, 2);
        else memcpy(b, &one, 2);
        if (t == LD_Q4_K || t == LD_Q5_K) memcpy(b + 2, &one, 2);
    }
}

static void unit_scale_act(ld_dtype wt, uint8_t *a, int64_t n, uint64_t seed) {
    ld_rng r = ld_rng_init(seed);
    if (wt == LD_Q8_0 || wt == LD_Q4_0) {
        ld_block_q8_0 *b = (ld_block_q8_0 *)a;
        for (int64_t i = 0; i < n / 32; i++) {
            b[i].d = 0x3C00;
            for (int l = 0; l < 32; l++) b[i].qs[l] = (int8_t)((int)ld_rng_below(&r, 255) - 127);
        }
    } else {
        ld_block_q8_K *b = (ld_block_q8_K *)a;
        for (int64_t i = 0; i < n / 256; i++) {
            b[i].d = 1.0f;
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int l = 16 * g; l < 16 * g + 16; l++) s += b[i].qs[l] = (int8_t)((int)ld_rng_below(&r, 255) - 127);
                b[i].bsums[g] = (int16_t)s;
            }
        }
    }
}

/* The types a level has no dot kernel for (the x86 levels have every one; NEON has the decode
 * path's, quant/qdot_neon.c): they stay the reference, and a new kernel updates this list. */
static bool level_lacks(ld_isa isa, ld_dtype t) {
    return isa == LD_ISA_NEON && t == LD_Q5_K;
}

TEST_ISA(optimized_dot_equals_reference) {
    ISA_OWN(ld_quant_traits_at(LD_Q8_0, ld_test_isa_)->vec_dot, ld_vec_dot_q8_0_q8_0_ref, "the Q8_0 dot");
    ld_ctx *ctx = new_ctx(1);
    for (int t = 0; t < NQ; t++) {
        const ld_quant_traits *q = ld_quant_traits_at(QTYPES[t], ld_test_isa_);
        const char *name = ld_dtype_traits(QTYPES[t])->name;
        if (level_lacks(ld_test_isa_, QTYPES[t])) {
            CHECK_MSG(q->vec_dot == q->vec_dot_ref, "%s: a %s kernel; take it off level_lacks", name, ld_isa_name(ld_test_isa_));
            printf("  %s: the reference at level %s\n", name, ld_isa_name(ld_test_isa_));
            continue;
        }
        CHECK(q->vec_dot != q->vec_dot_ref && q->quantize_act != q->quantize_act_ref);
        const int64_t step = q->block_size == 32 ? 352 : 512; /* 32-blocks: 1, 12, 23, ...; K: 1, 3, 5, ... */
        for (int64_t n = q->block_size; n <= 2816; n += step) { /* odd and even block counts */
            int64_t nblk = n / q->block_size;
            uint8_t *w = malloc((size_t)nblk * ld_dtype_traits(QTYPES[t])->block_bytes);
            uint8_t *a = malloc((size_t)(n / q->act_block_size) * q->act_block_bytes);
            uint8_t *a2 = malloc((size_t)(n / q->act_block_size) * q->act_block_bytes);
            for (int rep = 0; rep < 4; rep++) {
                unit_scale_blocks(QTYPES[t], w, nblk, 100 + rep);
                unit_scale_act(QTYPES[t], a, n, 200 + rep);
                float r = q->vec_dot_ref(n, w, a), o = q->vec_dot(n, w, a);
                CHECK_MSG(r == o, "%s n=%lld: ref %.9g, %s %.9g", name, (long long)n, r, ld_isa_name(ld_test_isa_), o);
            }
            /* Realistic: Gaussian weights and activations through the real quantizers. */
            float *xw = gaussian(7, n), *xa = gaussian(8, n), *dw = malloc(n * sizeof(float)), *da = malloc(n * sizeof(float));
            CHECK(ld_quantize(ctx, QTYPES[t], w, xw, 1, n, NULL) == LD_OK);
            q->quantize_act_ref(xa, a, n);
            q->quantize_act(xa, a2, n);
            CHECK_MSG(!memcmp(a, a2, (size_t)(n / q->act_block_size) * q->act_block_bytes),
                      "%s: activation quantizers differ", name);
            q->dequantize_row(w, dw, n);
            if (q->act_block_size == 32) ld_dequantize_row_q8_0(a, da, n);
            else ld_dequantize_row_q8_K(a, da, n);
            double mag = 0;
            for (int64_t i = 0; i < n; i++) mag += fabs((double)dw[i] * da[i]);
            float r = q->vec_dot_ref(n, w, a), o = q->vec_dot(n, w, a);
            CHECK_MSG(fabs((double)r - o) <= 1e-6 * mag, "%s n=%lld: ref %.9g %s %.9g (scale %g)", name,
                      (long long)n, r, ld_isa_name(ld_test_isa_), o, mag);
            free(xw), free(xa), free(dw), free(da), free(w), free(a), free(a2);
        }
    }
    /* Multi-row kernels: each row equals the single-row dot bit for bit, for any row count. */
    static const ld_dtype all[] = {LD_F32, LD_F16, LD_Q8_0, LD_Q4_0, LD_Q4_K, LD_Q5_K, LD_Q6_K};
    for (size_t t = 0; t < sizeof all / sizeof all[0]; t++) {
        const ld_quant_traits *q = ld_quant_traits_at(all[t], ld_test_isa_);
        const int64_t n = 768;
        float *xw = gaussian(20, n), *xa = gaussian(21, 4 * n);
        uint8_t *w = malloc(row_bytes(all[t], n) + 64);
        size_t as = q->quantize_act ? (size_t)(n / q->act_block_size) * q->act_block_bytes : n * sizeof(float);
        uint8_t *a = malloc(4 * as);
        if (all[t] == LD_F32) memcpy(w, xw, n * 4);
        else if (all[t] == LD_F16) for (int64_t i = 0; i < n; i++) ((uint16_t *)w)[i] = ld_fp32_to_fp16(xw[i]);
        else ld_quantize(ctx, all[t], w, xw, 1, n, NULL);
        for (int r = 0; r < 4; r++) {
            if (q->quantize_act) q->quantize_act(xa + r * n, a + r * as, n);
            else memcpy(a + r * as, xa + r * n, as);
        }
        /* every x86 level has multi-row kernels; NEON has none (ld_qmatmul loops over vec_dot) */
        CHECK(!q->dot_rows == (ld_test_isa_ == LD_ISA_NEON));
        for (int na = 1; na <= 4 && q->dot_rows; na++) {
            float out[4];
            q->dot_rows(n, w, a + (4 - na) * as, as, na, out);
            for (int r = 0; r < na; r++)
                CHECK_MSG(out[r] == q->vec_dot(n, w, a + (4 - na + r) * as), "%s: dot_rows na=%d row %d",
                          ld_dtype_traits(all[t])->name, na, r);
        }
        free(xw), free(xa), free(w), free(a);
    }
    /* F32 and F16 with tails that are not a multiple of 16. */
    for (int64_t n = 1; n <= 300; n += 37) {
        float *xw = gaussian(9, n), *xa = gaussian(10, n);
        uint16_t *h = malloc(n * 2);
        for (int64_t i = 0; i < n; i++) h[i] = ld_fp32_to_fp16(xw[i]);
        const ld_quant_traits *f = ld_quant_traits_at(LD_F32, ld_test_isa_), *g = ld_quant_traits_at(LD_F16, ld_test_isa_);
        CHECK_NEAR(f->vec_dot(n, xw, xa), f->vec_dot_ref(n, xw, xa), 1e-5 * (double)n);
        CHECK_NEAR(g->vec_dot(n, h, xa), g->vec_dot_ref(n, h, xa), 1e-5 * (double)n);
        free(xw), free(xa), free(h);
    }
    ld_ctx_free(ctx);
}

/* ---- qmatmul ------------------------------------------------------------------------------- */
/* xa = the M x K activations x as ld_qmatmul's kernels round them: per group for the int8
 * GEMM (many rows), per activation block for the row dots, unchanged for F32/F16. */
static void seen_activations(ld_dtype t, const float *x, int64_t M, int64_t K, float *xa) {
    const ld_quant_traits *q = ld_quant_traits_get(t);
    const ld_qgemm_format *g = ld_qgemm_format_get(t);
    if (g && ld_qmatmul_has_gemm(t, M)) {
        int8_t *qa = malloc(K);
        ld_qgemm_agroup *ag = malloc((size_t)(K / g->group) * sizeof *ag);
        for (int64_t m = 0; m < M; m++) {
            ld_qgemm_quantize_act_ref(g, x + m * K, K, qa, ag);
            for (int64_t k = 0; k < K; k++) xa[m * K + k] = (float)qa[k] * ag[k / g->group].d;
        }
        free(qa), free(ag);
    } else if (!q->quantize_act_ref) memcpy(xa, x, M * K * sizeof(float));
    else {
        void *tmp = malloc((size_t)(K / q->act_block_size) * q->act_block_bytes);
        for (int64_t m = 0; m < M; m++) {
            q->quantize_act_ref(x + m * K, tmp, K);
            if (q->act_block_size == 32) ld_dequantize_row_q8_0(tmp, xa + m * K, K);
            else ld_dequantize_row_q8_K(tmp, xa + m * K, K);
        }
        free(tmp);
    }
}

/* Each level's int8 GEMM (activation quantizer, panel packing, the microkernel at every row
 * count and with partial column masks) against the scalar reference: identical bits. */
TEST_ISA(qgemm_equals_reference) {
    const ld_qgemm_isa *isa = ld_qgemm_isa_at(ld_test_isa_);
    if (!isa) SKIP("no int8 GEMM at level %s", ld_isa_name(ld_test_isa_));
    static const int64_t Ms[] = {1, 3, 4, 6, 17}, Ns[] = {1, 16, 47, 48, 49, 113}, Ks[] = {256, 768};
    for (int ti = 0; ti < NQ; ti++) {
        const ld_dtype t = QTYPES[ti];
        const ld_qgemm_format *g = ld_qgemm_format_get(t);
        CHECK(g != NULL);
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ki++)
            for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++)
                for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                    const int64_t M = Ms[mi], N = Ns[ni], K = Ks[ki];
                    float *wf = gaussian(21 + ni, N * K), *x = gaussian(22 + mi, M * K);
                    for (int64_t i = 0; i < M * K; i += 97) x[i] *= 40.0f; /* outliers set the group scales */
                    const size_t wrow = row_bytes(t, K);
                    uint8_t *W = malloc(wrow * N);
                    ld_ctx *ctx = new_ctx(1);
                    CHECK(ld_quantize(ctx, t, W, wf, N, K, NULL) == LD_OK);
                    ld_ctx_free(ctx);
                    const size_t ss = ld_qgemm_scratch_bytes(g, M, K, 2);
                    void *scratch = malloc(ss);
                    float *y = malloc(M * N * sizeof(float)), *yr = malloc(M * N * sizeof(float));
                    /* the two activation quantizers agree bit for bit */
                    int8_t *q0 = malloc(K), *q1 = malloc(K);
                    ld_qgemm_agroup *g0 = malloc((size_t)(K / g->group) * sizeof *g0), *g1 = malloc((size_t)(K / g->group) * sizeof *g1);
                    ld_qgemm_quantize_act_ref(g, x, K, q0, g0);
                    isa->quantize_act(g, x, K, q1, g1);
                    CHECK(!memcmp(q0, q1, K) && !memcmp(g0, g1, (size_t)(K / g->group) * sizeof *g0));
                    ld_qgemm_run(g, W, wrow, N, K, x, M, y, scratch, 2, isa);
                    ld_qgemm_run(g, W, wrow, N, K, x, M, yr, scratch, 1, NULL);
                    int64_t bad = -1;
                    for (int64_t i = 0; i < M * N && bad < 0; i++)
                        if (memcmp(&y[i], &yr[i], sizeof(float))) bad = i;
                    CHECK_MSG(bad < 0, "%s M=%lld N=%lld K=%lld: y[%lld] = %.9g, reference %.9g", ld_dtype_traits(t)->name,
                              (long long)M, (long long)N, (long long)K, (long long)bad, bad < 0 ? 0.0 : y[bad],
                              bad < 0 ? 0.0 : yr[bad]);
                    free(wf), free(x), free(W), free(scratch), free(y), free(yr), free(q0), free(q1), free(g0), free(g1);
                }
        /* the largest levels against activations at +-127: the int16 partial sums' worst case */
        for (int64_t M = 1; M <= 4; M += 3) {
            const int64_t N = 48, K = 768;
            const size_t wrow = row_bytes(t, K);
            uint8_t *W = malloc(wrow * N);
            extreme_blocks(t, W, N * K / ld_dtype_traits(t)->block_size);
            float *x = malloc(M * K * sizeof(float)), *y = malloc(M * N * sizeof(float)), *yr = malloc(M * N * sizeof(float));
            for (int64_t i = 0; i < M * K; i++) x[i] = (i / K) % 2 ? -1.0f : 1.0f;
            void *scratch = malloc(ld_qgemm_scratch_bytes(g, M, K, 2));
            ld_qgemm_run(g, W, wrow, N, K, x, M, y, scratch, 2, isa);
            ld_qgemm_run(g, W, wrow, N, K, x, M, yr, scratch, 1, NULL);
            CHECK_MSG(!memcmp(y, yr, M * N * sizeof(float)), "%s largest levels M=%lld: %.9g, reference %.9g",
                      ld_dtype_traits(t)->name, (long long)M, y[0], yr[0]);
            free(W), free(x), free(y), free(yr), free(scratch);
        }
    }
}

TEST(qmatmul_matches_dequantized_reference) {
    static const ld_dtype types[] = {LD_F32, LD_F16, LD_Q8_0, LD_Q4_0, LD_Q4_K, LD_Q5_K, LD_Q6_K};
    static const int64_t dims[] = {1, 3, 17}; /* 17 rows: the int8 GEMM for the quantized types */
    ld_ctx *ctx = new_ctx(2), *ctx1 = new_ctx(1);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        ld_dtype t = types[ti];
        for (int64_t K = 256; K <= 512; K += 256)
            for (int mi = 0; mi < 3; mi++)
                for (int ni = 0; ni < 3; ni++) {
                    int64_t M = dims[mi], N = dims[ni];
                    float *wf = gaussian(11, N * K), *x = gaussian(12, M * K), *dw = malloc(N * K * sizeof(float));
                    size_t wb = row_bytes(t, K) * N;
                    void *W = malloc(wb);
                    if (t == LD_F32) memcpy(W, wf, wb);
                    else if (t == LD_F16) for (int64_t i = 0; i < N * K; i++) ((uint16_t *)W)[i] = ld_fp32_to_fp16(wf[i]);
                    else CHECK(ld_quantize(ctx, t, W, wf, N, K, NULL) == LD_OK);
                    CHECK(ld_dequantize(ctx, t, W, dw, N * K) == LD_OK);
                    size_t ss = 0;
                    CHECK(ld_qmatmul_scratch_size(ctx, t, M, K, &ss) == LD_OK);
                    void *scratch = ss ? malloc(ss) : NULL;
                    float *y = malloc(M * N * sizeof(float)), *y1 = malloc(M * N * sizeof(float));
                    CHECK_STATUS(ctx, ld_qmatmul(ctx, t, W, N, K, x, M, y, scratch), LD_OK, "");
                    /* the activations exactly as the kernel saw them */
                    float *xa = malloc(M * K * sizeof(float));
                    seen_activations(t, x, M, K, xa);
                    double num = 0, den = 0, worst = 0;
                    for (int64_t m = 0; m < M; m++)
                        for (int64_t n = 0; n < N; n++) {
                            double exact = 0, mag = 0, truth = 0;
                            for (int64_t k = 0; k < K; k++) {
                                exact += (double)dw[n * K + k] * xa[m * K + k];
                                mag += fabs((double)dw[n * K + k] * xa[m * K + k]);
                                truth += (double)dw[n * K + k] * x[m * K + k];
                            }
                            double e = fabs(y[m * N + n] - exact) / mag;
                            if (e > worst) worst = e;
                            num += (y[m * N + n] - truth) * (y[m * N + n] - truth);
                            den += truth * truth;
                        }
                    CHECK_MSG(worst <= 1e-6, "%s M=%lld N=%lld K=%lld: rel err %.3g vs quantized-activation reference",
                              ld_dtype_traits(t)->name, (long long)M, (long long)N, (long long)K, worst);
                    /* 8-bit activation rounding alone: well under 2 % of the output norm */
                    CHECK_MSG(sqrt(num / den) < 0.02, "%s: %.4f vs f32 activations", ld_dtype_traits(t)->name,
                              sqrt(num / den));
                    /* same bits on 1 thread */
                    CHECK(ld_qmatmul(ctx1, t, W, N, K, x, M, y1, scratch) == LD_OK);
                    CHECK_MSG(!memcmp(y, y1, M * N * sizeof(float)), "%s: result depends on thread count",
                              ld_dtype_traits(t)->name);
                    free(wf), free(x), free(dw), free(W), free(scratch), free(y), free(y1), free(xa);
                }
    }
    ld_ctx_free(ctx);
    ld_ctx_free(ctx1);
}

/* Prepacked weights (ld_qpack + ld_qmatmul_packed) give the int8 GEMM's reference bits for
 * any number of rows, and reject what they cannot take. */
TEST(qpack_matches_reference) {
    ld_ctx *ctx = new_ctx(2);
    if (!ld_qpack_supported(LD_Q8_0)) {
        size_t sz;
        CHECK_STATUS(ctx, ld_qpack_size(ctx, LD_Q8_0, 4, 64, &sz), LD_ERR_DTYPE, "cannot be prepacked at ISA level");
        ld_ctx_free(ctx);
        SKIP("no int8 GEMM at ISA level %s: nothing is prepacked", ld_isa_name(ld_isa_active()));
    }
    static const ld_dtype types[] = {LD_Q8_0, LD_Q4_0, LD_Q4_K, LD_Q5_K, LD_Q6_K};
    static const int64_t Ms[] = {1, 2, 4, 5, 17}, Ns[] = {1, 47, 48, 49, 113}, Ks[] = {256, 768};
    for (int ti = 0; ti < NQ; ti++)
        for (size_t ki = 0; ki < 2; ki++)
            for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
                const ld_dtype t = types[ti];
                if (!ld_qpack_supported(t)) {
                    if (ki == 0 && ni == 0)
                        printf("  %s: not prepacked at ISA level %s\n", ld_dtype_traits(t)->name, ld_isa_name(ld_isa_active()));
                    continue;
                }
                const ld_qgemm_format *g = ld_qgemm_format_get(t);
                const int64_t N = Ns[ni], K = Ks[ki];
                float *wf = gaussian(31 + ni, N * K);
                const size_t wrow = row_bytes(t, K);
                uint8_t *W = malloc(wrow * N);
                CHECK(ld_quantize(ctx, t, W, wf, N, K, NULL) == LD_OK);
                size_t pbytes = 0;
                CHECK(ld_qpack_size(ctx, t, N, K, &pbytes) == LD_OK);
                /* whole 48-column panels, at most 6 % above the blocks' bits */
                CHECK(pbytes <= (size_t)(wrow * ((N + 47) / 48 * 48) * 1.06));
                void *P = aligned_alloc(64, (pbytes + 63) / 64 * 64);
                CHECK(ld_qpack(ctx, t, W, N, K, P) == LD_OK);
                for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
                    const int64_t M = Ms[mi];
                    float *x = gaussian(32 + mi, M * K), *y = malloc(M * N * sizeof(float)), *yr = malloc(M * N * sizeof(float));
                    size_t ss = 0;
                    CHECK(ld_qmatmul_packed_scratch_size(ctx, t, M, K, &ss) == LD_OK);
                    void *scratch = malloc(ss), *rs = malloc(ld_qgemm_scratch_bytes(g, M, K, 1));
                    CHECK(ld_qmatmul_packed(ctx, t, P, N, K, x, M, y, scratch) == LD_OK);
                    ld_qgemm_run(g, W, wrow, N, K, x, M, yr, rs, 1, NULL);
                    CHECK_MSG(!memcmp(y, yr, M * N * sizeof(float)), "%s packed M=%lld N=%lld K=%lld differs from the reference",
                              ld_dtype_traits(t)->name, (long long)M, (long long)N, (long long)K);
                    free(x), free(y), free(yr), free(scratch), free(rs);
                }
                if (ni == 2) { /* the largest levels against activations at +-127 (extreme_blocks) */
                    extreme_blocks(t, W, N * K / ld_dtype_traits(t)->block_size);
                    CHECK(ld_qpack(ctx, t, W, N, K, P) == LD_OK);
                    for (int64_t M = 1; M <= 4; M += 3) {
                        float *x = malloc(M * K * sizeof(float)), *y = malloc(M * N * sizeof(float)), *yr = malloc(M * N * sizeof(float));
                        for (int64_t i = 0; i < M * K; i++) x[i] = (i / K) % 2 ? -1.0f : 1.0f;
                        size_t ss = 0;
                        CHECK(ld_qmatmul_packed_scratch_size(ctx, t, M, K, &ss) == LD_OK);
                        void *scratch = malloc(ss), *rs = malloc(ld_qgemm_scratch_bytes(g, M, K, 1));
                        CHECK(ld_qmatmul_packed(ctx, t, P, N, K, x, M, y, scratch) == LD_OK);
                        ld_qgemm_run(g, W, wrow, N, K, x, M, yr, rs, 1, NULL);
                        CHECK_MSG(!memcmp(y, yr, M * N * sizeof(float)), "%s packed, largest levels, M=%lld: %.9g, reference %.9g",
                                  ld_dtype_traits(t)->name, (long long)M, y[0], yr[0]);
                        free(x), free(y), free(yr), free(scratch), free(rs);
                    }
                }
                free(wf), free(W), free(P);
            }
    size_t sz;
    uint8_t *buf = aligned_alloc(64, 4096);
    memset(buf, 0, 4096);
    float x[64] = {0}, y[4];
    CHECK_STATUS(ctx, ld_qpack_size(ctx, LD_Q5_1, 4, 256, &sz), LD_ERR_DTYPE, "Q5_1");
    CHECK_STATUS(ctx, ld_qpack_size(ctx, LD_Q4_K, 4, 64, &sz), LD_ERR_SHAPE, "whole blocks");
    CHECK_STATUS(ctx, ld_qpack_size(ctx, LD_Q8_0, 4, 40, &sz), LD_ERR_SHAPE, "whole blocks");
    CHECK_STATUS(ctx, ld_qpack_size(ctx, LD_Q8_0, 0, 64, &sz), LD_ERR_SHAPE, "N 0");
    CHECK_STATUS(ctx, ld_qpack_size(ctx, LD_Q8_0, INT64_MAX / 2, 64, &sz), LD_ERR_OVERFLOW, "overflows");
    CHECK_STATUS(ctx, ld_qpack(ctx, LD_Q8_0, buf, 1, 64, buf + 1), LD_ERR_INVALID_ARG, "aligned");
    CHECK_STATUS(ctx, ld_qmatmul_packed(ctx, LD_Q8_0, buf, 1, 64, x, 0, y, buf), LD_ERR_INVALID_ARG, "M 0");
    CHECK_STATUS(ctx, ld_qmatmul_packed(ctx, LD_Q8_0, buf, 1, 64, x, 1, y, NULL), LD_ERR_INVALID_ARG, "scratch");
    free(buf);
    ld_ctx_free(ctx);
}

/* ---- errors ---------------------------------------------------------------------------------- */
TEST(errors) {
    ld_ctx *ctx = new_ctx(1);
    float x[512] = {0}, y[4];
    uint8_t buf[1024];
    CHECK_STATUS(ctx, ld_quantize(ctx, LD_Q4_K, buf, x, 1, 100, NULL), LD_ERR_SHAPE, "not a multiple of the block size 256");
    CHECK_STATUS(ctx, ld_quantize(ctx, LD_Q8_0, buf, x, 1, 48, NULL), LD_ERR_SHAPE, "ncols 48");
    CHECK_STATUS(ctx, ld_quantize(ctx, LD_BF16, buf, x, 1, 64, NULL), LD_ERR_DTYPE, "BF16");
    CHECK_STATUS(ctx, ld_quantize(ctx, (ld_dtype)99, buf, x, 1, 64, NULL), LD_ERR_DTYPE, "");
    CHECK_STATUS(ctx, ld_quantize(ctx, LD_Q8_0, NULL, x, 1, 64, NULL), LD_ERR_INVALID_ARG, "");
    x[37] = NAN;
    CHECK_STATUS(ctx, ld_quantize(ctx, LD_Q8_0, buf, x, 2, 32, NULL), LD_ERR_NUMERIC, "row 1, column 5");
    x[37] = 0;
    float im[32];
    for (int i = 0; i < 32; i++) im[i] = 1;
    im[3] = -1;
    CHECK_STATUS(ctx, ld_quantize(ctx, LD_Q4_0, buf, x, 1, 32, im), LD_ERR_NUMERIC, "importance weight 3");
    CHECK_STATUS(ctx, ld_dequantize(ctx, LD_Q6_K, buf, x, 100), LD_ERR_SHAPE, "Q6_K");
    CHECK_STATUS(ctx, ld_dequantize(ctx, LD_I32, buf, x, 32), LD_ERR_DTYPE, "I32");
    size_t ss;
    CHECK_STATUS(ctx, ld_qmatmul_scratch_size(ctx, LD_Q4_K, 1, 300, &ss), LD_ERR_SHAPE, "K 300");
    CHECK_STATUS(ctx, ld_qmatmul(ctx, LD_Q4_K, buf, 1, 300, x, 1, y, buf), LD_ERR_SHAPE, "K 300");
    CHECK_STATUS(ctx, ld_qmatmul(ctx, LD_BF16, buf, 1, 32, x, 1, y, buf), LD_ERR_DTYPE, "BF16");
    CHECK_STATUS(ctx, ld_qmatmul(ctx, LD_Q8_0, buf, 1, 32, x, 1, y, NULL), LD_ERR_INVALID_ARG, "scratch");
    CHECK_STATUS(ctx, ld_qmatmul(ctx, LD_Q8_0, buf, 0, 32, x, 1, y, buf), LD_ERR_INVALID_ARG, "N 0");
    CHECK(ld_quant_type_supported(LD_Q5_K) && ld_quant_type_supported(LD_Q4_0) && !ld_quant_type_supported(LD_F16));
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

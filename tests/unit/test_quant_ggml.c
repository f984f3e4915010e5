/* tests/unit/test_quant_ggml.c — liandan's decoding of every GGML weight type against GGML
 * itself: libggml-base from the node-llama-cpp oracle package (tests/oracle, installed by
 * scripts/setup.sh) is loaded with dlopen, and for each type
 *   - blocks of random bytes (every grid index, sign code and scale) and blocks written by
 *     GGML's own quantizer (ggml_quantize_chunk, with an importance matrix) decode to
 *     bit-identical floats with liandan's reference and with GGML's dequantize_row_*, block
 *     by block (GGML's IQ1 and IQ2 quantizers first build neighbour tables for 5-60 s,
 *     so those five are checked on random blocks here and on llama.cpp-quantized model files
 *     by tests/e2e/llama_cpp_oracle.sh);
 *   - blocks written by liandan's quantizers (every type it writes) decode in GGML to the
 *     same floats as here, and their error is held next to GGML's quantizer's;
 *   - liandan's reference dot equals the sum of the decoded products (to float rounding).
 * On machines where the package has no build (not x86-64 Linux) the test is skipped with a
 * message; on x86-64 a missing library fails (run scripts/setup.sh). */
#include <dlfcn.h>
#include <stdint.h>

#include "ld_test.h"
#include "quant/quant_blocks.h"

#define GGML_LIB "tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so"

typedef void (*ggml_dequant_fn)(const void *x, float *y, int64_t k);
typedef size_t (*ggml_quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                         int64_t n_per_row, const float *imatrix);

static void *ggml_lib(void) {
    static void *lib;
    static int tried;
    if (!tried) {
        tried = 1;
        const char *path = getenv("LD_GGML_BASE") ? getenv("LD_GGML_BASE") : GGML_LIB;
        lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!lib) {
#if defined(__x86_64__) && defined(__linux__)
            fprintf(stderr, "  cannot load %s (%s): run scripts/setup.sh\n", path, dlerror());
            ld_test_failed_ = 1;
#else
            printf("  skipped: no libggml-base for this machine (%s)\n", dlerror());
#endif
        }
    }
    return lib;
}

/* Every block type liandan decodes, with GGML's function name suffix. */
static const struct {
    ld_dtype t;
    const char *ggml;
    bool slow_ggml_init; /* GGML's quantizer takes >= 5 s to initialise */
} TYPES[] = {
    {LD_Q4_0, "q4_0", 0},       {LD_Q4_1, "q4_1", 0},      {LD_Q5_0, "q5_0", 0},    {LD_Q5_1, "q5_1", 0},
    {LD_Q8_0, "q8_0", 0},       {LD_Q2_K, "q2_K", 0},      {LD_Q3_K, "q3_K", 0},    {LD_Q4_K, "q4_K", 0},
    {LD_Q5_K, "q5_K", 0},       {LD_Q6_K, "q6_K", 0},      {LD_TQ1_0, "tq1_0", 0},  {LD_TQ2_0, "tq2_0", 0},
    {LD_IQ2_XXS, "iq2_xxs", 1}, {LD_IQ2_XS, "iq2_xs", 1},  {LD_IQ2_S, "iq2_s", 1},  {LD_IQ3_XXS, "iq3_xxs", 0},
    {LD_IQ3_S, "iq3_s", 0},     {LD_IQ1_S, "iq1_s", 1},    {LD_IQ1_M, "iq1_m", 1},  {LD_IQ4_NL, "iq4_nl", 0},
    {LD_IQ4_XS, "iq4_xs", 0},
};
#define NTYPES (int)(sizeof TYPES / sizeof TYPES[0])

static float *gaussian(uint64_t seed, int64_t n) {
    float *x = malloc((size_t)n * sizeof *x);
    ld_rng r = ld_rng_init(seed);
    for (int64_t i = 0; i < n; i++) x[i] = ld_rng_normal(&r);
    return x;
}

/* Bit-identical, counting any two NaNs as equal. Returns the first differing index or -1. */
static int64_t first_difference(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) && !(isnan(a[i]) && isnan(b[i]))) return i;
    return -1;
}

static ggml_dequant_fn ggml_dequant(const char *name) {
    char sym[64];
    snprintf(sym, sizeof sym, "dequantize_row_%s", name);
    return (ggml_dequant_fn)dlsym(ggml_lib(), sym);
}

static void check_decode(ld_dtype t, const char *gname, const uint8_t *w, int64_t n, const char *what) {
    const ld_dtype_info *di = ld_dtype_traits(t);
    float *ours = malloc((size_t)n * sizeof(float)), *theirs = malloc((size_t)n * sizeof(float));
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    CHECK_MSG(ld_dequantize(ctx, t, w, ours, n) == LD_OK, "%s: %s", di->name, ld_ctx_error(ctx));
    ggml_dequant(gname)(w, theirs, n);
    const int64_t i = first_difference(ours, theirs, n);
    CHECK_MSG(i < 0, "%s (%s): element %lld (block %lld) is %.9g here, %.9g in GGML", di->name, what, (long long)i,
              (long long)(i / di->block_size), i >= 0 ? ours[i] : 0.0, i >= 0 ? theirs[i] : 0.0);
    ld_ctx_free(ctx);
    free(ours);
    free(theirs);
}

TEST(decode_random_blocks_like_ggml) {
    if (!ggml_lib()) return;
    for (int k = 0; k < NTYPES; k++) {
        const ld_dtype_info *di = ld_dtype_traits(TYPES[k].t);
        CHECK_MSG(ggml_dequant(TYPES[k].ggml) != NULL, "libggml-base lacks dequantize_row_%s", TYPES[k].ggml);
        if (!ggml_dequant(TYPES[k].ggml)) continue;
        /* 1024 blocks of 256: every 8- to 11-bit grid index about 16 times or more */
        const int64_t nblk = di->block_size == 256 ? 1024 : 4096, n = nblk * di->block_size;
        uint8_t *w = malloc((size_t)(nblk * di->block_bytes));
        ld_quant_random_blocks(TYPES[k].t, w, nblk, 1000 + (uint64_t)k);
        check_decode(TYPES[k].t, TYPES[k].ggml, w, n, "random blocks");
        free(w);
    }
}

TEST(decode_ggml_quantizer_output_like_ggml) {
    if (!ggml_lib()) return;
    ggml_quantize_chunk_fn quantize = (ggml_quantize_chunk_fn)dlsym(ggml_lib(), "ggml_quantize_chunk");
    CHECK(quantize != NULL);
    if (!quantize) return;
    const int64_t rows = 8, K = 1024;
    float *x = gaussian(11, rows * K), *imat = gaussian(12, K);
    for (int64_t c = 0; c < K; c++) imat[c] = imat[c] * imat[c] + 0.1f;
    for (int k = 0; k < NTYPES; k++) {
        const ld_dtype_info *di = ld_dtype_traits(TYPES[k].t);
        if (TYPES[k].slow_ggml_init) continue;
        uint8_t *w = calloc((size_t)(rows * K / di->block_size), (size_t)di->block_bytes);
        const size_t bytes = quantize(di->ggml_type, x, w, 0, rows, K, imat);
        CHECK_MSG(bytes == (size_t)(rows * K / di->block_size * di->block_bytes), "%s: GGML wrote %zu bytes", di->name,
                  bytes);
        check_decode(TYPES[k].t, TYPES[k].ggml, w, rows * K, "GGML's quantizer");
        free(w);
    }
    free(x);
    free(imat);
}

/* Blocks written by liandan's quantizers decode in GGML to the values they decode to here
 * (every type liandan writes; rows with zero runs and columns of zero importance too), and
 * to within the type's error of the input. */
TEST(decode_liandan_quantizer_output_like_ggml) {
    if (!ggml_lib()) return;
    const int64_t rows = 8, K = 1024;
    float *x = gaussian(13, rows * K), *imat = gaussian(14, K);
    for (int64_t c = 0; c < K; c++) imat[c] = c % 97 == 0 ? 0.0f : imat[c] * imat[c] + 0.1f;
    for (int64_t i = 0; i < 40; i++) x[300 + i] = 0.0f;
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    int written = 0;
    for (int k = 0; k < NTYPES; k++) {
        const ld_dtype_info *di = ld_dtype_traits(TYPES[k].t);
        if (!ld_quant_type_supported(TYPES[k].t)) continue;
        uint8_t *w = calloc((size_t)(rows * K / di->block_size), (size_t)di->block_bytes);
        CHECK_STATUS(ctx, ld_quantize(ctx, TYPES[k].t, w, x, rows, K, imat), LD_OK, "");
        check_decode(TYPES[k].t, TYPES[k].ggml, w, rows * K, "liandan's quantizer");
        written++;
        free(w);
    }
    CHECK_MSG(written >= 18, "only %d types written", written); /* every type but Q4_1, Q5_0, Q5_1 */
    ld_ctx_free(ctx);
    free(x);
    free(imat);
}

/* The reference dot of every type equals the sum of decoded weight x decoded activation
 * products, on random blocks and liandan-quantized activations. */
TEST(reference_dots_match_decoded_products) {
    const int64_t K = 4096;
    float *xa = gaussian(22, K), *dw = malloc(K * sizeof(float)), *da = malloc(K * sizeof(float));
    for (int k = 0; k < NTYPES; k++) {
        const ld_quant_traits *q = ld_quant_traits_get(TYPES[k].t);
        if (!q || !q->vec_dot_ref) continue; /* decode-only types */
        const ld_dtype_info *di = ld_dtype_traits(TYPES[k].t);
        uint8_t *w = malloc((size_t)(K / di->block_size * di->block_bytes));
        uint8_t *a = malloc((size_t)(K / q->act_block_size * q->act_block_bytes));
        for (int rep = 0; rep < 8; rep++) {
            ld_quant_random_blocks(TYPES[k].t, w, K / di->block_size, 3000 + 16 * (uint64_t)k + (uint64_t)rep);
            q->quantize_act_ref(xa, a, K);
            q->dequantize_row(w, dw, K);
            if (q->act_block_size == 32) ld_dequantize_row_q8_0(a, da, K);
            else ld_dequantize_row_q8_K(a, da, K);
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < K; i++) exact += (double)dw[i] * da[i], mag += fabs((double)dw[i] * da[i]);
            const float r = q->vec_dot_ref(K, w, a);
            CHECK_MSG(fabs(r - exact) <= 1e-5 * mag, "%s: reference dot %.9g, decoded products %.9g (scale %g)",
                      di->name, r, exact, mag);
        }
        free(w);
        free(a);
    }
    free(xa), free(dw), free(da);
}

/* liandan's quantizers against GGML's on the same rows: the (importance-)weighted squared
 * error of the decoded weights of Q2_K, Q3_K, IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, IQ3_S and IQ3_XXS
 * may exceed GGML's by at most 3 %, with and without an importance matrix (IQ3_XXS: with one
 * only, liandan refuses it without), on Gaussian rows and on heavy-tailed rows (Student-t-like,
 * where a few large weights dominate); measured: Q2_K..IQ4_XS -4.4 .. +2.5 %, TQ1_0/TQ2_0
 * -46 .. -71 % (GGML takes d = max|x|), IQ3_S -16 .. -23 %, IQ3_XXS -15 .. -16 %.
 * Q4_K, Q5_K and Q6_K are printed alongside. (The IQ2 and IQ1 types are left out: GGML's
 * quantizer builds its neighbour tables for 5-60 s first; docs/benchmarks.md has them.) */
TEST(quantizers_error_next_to_ggml) {
    if (!ggml_lib()) return;
    ggml_quantize_chunk_fn quantize = (ggml_quantize_chunk_fn)dlsym(ggml_lib(), "ggml_quantize_chunk");
    if (!quantize) return;
    static const ld_dtype QT[] = {LD_Q2_K, LD_Q3_K, LD_IQ4_NL, LD_IQ4_XS, LD_TQ1_0, LD_TQ2_0, LD_IQ3_S, LD_IQ3_XXS,
                                  LD_Q4_K, LD_Q5_K, LD_Q6_K};
    const size_t NCHECKED = 8; /* the first 8 are held to GGML's error */
    const int64_t rows = 64, K = 1024;
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    float *imat = gaussian(41, K), *y = malloc(rows * K * sizeof(float));
    for (int64_t c = 0; c < K; c++) imat[c] = imat[c] * imat[c] + 0.05f;
    for (int dist = 0; dist < 2; dist++) {
        float *x = gaussian(40 + (uint64_t)dist, rows * K);
        if (dist == 1) { /* x / sqrt(chi2_3 / 3): heavy tails */
            float *c = gaussian(45, 3 * rows * K);
            for (int64_t i = 0; i < rows * K; i++)
                x[i] /= sqrtf((c[3 * i] * c[3 * i] + c[3 * i + 1] * c[3 * i + 1] + c[3 * i + 2] * c[3 * i + 2]) / 3 + 1e-3f);
            free(c);
        }
        for (size_t k = 0; k < sizeof QT / sizeof QT[0]; k++)
            for (int with_imat = 0; with_imat < 2; with_imat++) {
                const ld_dtype_info *di = ld_dtype_traits(QT[k]);
                const float *im = with_imat ? imat : NULL;
                if (!im && ld_quant_needs_imatrix(QT[k])) continue;
                uint8_t *w = malloc((size_t)(rows * K / di->block_size * di->block_bytes));
                double err[2];
                for (int who = 0; who < 2; who++) {
                    if (who == 0) CHECK(ld_quantize(ctx, QT[k], w, x, rows, K, im) == LD_OK);
                    else quantize(di->ggml_type, x, w, 0, rows, K, im);
                    ld_dequantize(ctx, QT[k], w, y, rows * K);
                    double e = 0;
                    for (int64_t i = 0; i < rows * K; i++)
                        e += (im ? im[i % K] : 1.0) * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
                    err[who] = e;
                }
                printf("  %-6s %s %s: error %.4g here, %.4g GGML (%+.1f %%)\n", di->name, dist ? "heavy   " : "gaussian",
                       with_imat ? "imatrix" : "plain  ", err[0], err[1], 100 * (err[0] / err[1] - 1));
                if (k < NCHECKED) /* the low-bit quantizers; the 4-6 bit ones are reported */
                    CHECK_MSG(err[0] <= 1.03 * err[1], "%s: weighted error %.5g, GGML's %.5g", di->name, err[0], err[1]);
                free(w);
            }
        free(x);
    }
    free(imat), free(y);
    ld_ctx_free(ctx);
}

/* GGUF files named in LD_GGUF_FILES (colon-separated; tests/e2e/llama_cpp_oracle.sh passes
 * files written by llama.cpp's quantizer): every block-quantized tensor decodes to the same
 * floats here and in GGML. Without the variable there is nothing to check. */
TEST(gguf_files_decode_like_ggml) {
    const char *files = getenv("LD_GGUF_FILES");
    if (!files || !*files) {
        printf("  (no LD_GGUF_FILES: nothing to check)\n");
        return;
    }
    if (!ggml_lib()) return;
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    char *list = strdup(files);
    for (char *save = NULL, *path = strtok_r(list, ":", &save); path; path = strtok_r(NULL, ":", &save)) {
        ld_gguf *g = NULL;
        CHECK_MSG(ld_gguf_open(ctx, path, &g) == LD_OK, "%s", ld_ctx_error(ctx));
        if (!g) continue;
        int checked = 0;
        char types[256] = "";
        for (size_t i = 0; i < ld_gguf_tensor_count(g); i++) {
            const ld_tensor_info *t = ld_gguf_tensor_at(g, i);
            const ld_dtype_info *di = t->dtype < LD_DTYPE_COUNT ? ld_dtype_traits(t->dtype) : NULL;
            CHECK_MSG(di != NULL, "%s: tensor %s has type %s, which liandan cannot decode", path, t->name, t->dtype_name);
            if (!di || di->block_size == 1) continue;
            const char *gname = NULL;
            for (int k = 0; k < NTYPES; k++)
                if (TYPES[k].t == t->dtype) gname = TYPES[k].ggml;
            CHECK(gname != NULL);
            if (!gname) continue;
            int64_t n = 1;
            for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
            check_decode(t->dtype, gname, t->data, n, t->name);
            checked++;
            if (!strstr(types, di->name) && strlen(types) + strlen(di->name) + 2 < sizeof types)
                strcat(strcat(types, " "), di->name);
        }
        printf("  %s: %d quantized tensors decode like GGML (%s )\n", path, checked, types);
        ld_gguf_close(g);
    }
    free(list);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

/* tests/oracle/dot_speed_vs_ggml.c — the quantized dot kernels next to llama.cpp's own, on the
 * same blocks: liandan's optimized vec_dot for each type and GGML's AVX2 one (libggml-cpu-
 * haswell from the node-llama-cpp oracle package; the block layouts are the same, so both
 * read the same weight rows and the same Q8_K / Q8_0 activation blocks). Reports weight
 * bytes per second of thread CPU time on in-cache rows (one thread; thread CPU time rather
 * than wall time so that other jobs on a shared machine matter less), the ratio, and both
 * results (they agree to float rounding).
 *
 *   build/dot_speed_vs_ggml [TYPE ...]      (default: every type with an AVX2 kernel here)
 *
 * Run from the repository root (the library path is relative to it). Not a test: numbers
 * for docs/benchmarks.md. */
#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "liandan/liandan.h"
#include "quant/quant_blocks.h"

#define GGML_CPU "tests/oracle/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-cpu-haswell.so"

typedef void (*ggml_dot)(int n, float *s, size_t bs, const void *x, size_t bx, const void *y, size_t by, int nrc);

static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    static const char *defaults[] = {"Q2_K", "Q3_K", "IQ4_NL", "IQ4_XS", "IQ3_S", "IQ3_XXS", "IQ2_S",
                                     "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S", "TQ2_0", "TQ1_0"};
    void *lib = dlopen(GGML_CPU, RTLD_NOW | RTLD_LOCAL);
    if (!lib) return fprintf(stderr, "dot_speed_vs_ggml: %s (run from the repository root after scripts/setup.sh)\n", dlerror()), 1;
    void (*init)(void) = (void (*)(void))dlsym(lib, "ggml_cpu_init"); /* GGML's fp16 tables */
    if (init) init();
    const int nt = argc > 1 ? argc - 1 : (int)(sizeof defaults / sizeof defaults[0]);
    const int64_t K = 4096, N = 64, ITER = 20;
    printf("%-8s %12s %12s %7s %8s\n", "type", "liandan", "llama.cpp", "ratio", "bits/w");
    for (int a = 0; a < nt; a++) {
        const char *name = argc > 1 ? argv[a + 1] : defaults[a];
        const ld_dtype t = ld_dtype_from_name(name);
        const ld_quant_traits *q = t < LD_DTYPE_COUNT ? ld_quant_traits_get(t) : NULL;
        if (!q || !q->vec_dot) {
            fprintf(stderr, "dot_speed_vs_ggml: no kernel for type '%s'\n", name);
            continue;
        }
        const ld_dtype_info *di = ld_dtype_traits(t);
        char sym[64], low[16];
        size_t i = 0;
        for (; name[i] && i + 1 < sizeof low; i++) low[i] = name[i] == 'K' ? 'K' : (char)tolower((unsigned char)name[i]);
        low[i] = 0;
        snprintf(sym, sizeof sym, "ggml_vec_dot_%s_%s", low, q->act_block_size == 32 ? "q8_0" : "q8_K");
        ggml_dot g = (ggml_dot)dlsym(lib, sym);
        const size_t rb = (size_t)(K / di->block_size) * (size_t)di->block_bytes;
        uint8_t *w = malloc(rb * N), *act = malloc((size_t)(K / q->act_block_size) * q->act_block_bytes);
        float *x = malloc(K * sizeof(float));
        ld_quant_random_blocks(t, w, N * K / di->block_size, 1);
        ld_rng r = ld_rng_init(2);
        for (int64_t j = 0; j < K; j++) x[j] = ld_rng_normal(&r);
        q->quantize_act_ref(x, act, K);
        double best[2] = {1e30, 1e30};
        volatile float sink = 0;
        for (int rep = 0; rep < 9; rep++) /* interleaved, best of 9 */
            for (int who = 0; who < 2; who++) {
                if (who && !g) continue;
                const double t0 = cpu_seconds();
                for (int64_t it = 0; it < ITER; it++)
                    for (int64_t n = 0; n < N; n++) {
                        float s = 0;
                        if (who) g((int)K, &s, 0, w + rb * n, 0, act, 0, 1);
                        else s = q->vec_dot(K, w + rb * n, act);
                        sink += s;
                    }
                const double dt = cpu_seconds() - t0;
                if (dt < best[who]) best[who] = dt;
            }
        (void)sink; /* the sums are kept only so the calls are not optimised away */
        float ours = q->vec_dot(K, w, act), theirs = 0;
        if (g) g((int)K, &theirs, 0, w, 0, act, 0, 1);
        const double bytes = (double)ITER * N * rb;
        printf("%-8s %7.2f GB/s %7.2f GB/s %7.2f %8.4f   (dot %.7g vs %.7g)\n", name, bytes / best[0] * 1e-9,
               g ? bytes / best[1] * 1e-9 : 0.0, g ? best[1] / best[0] : 0.0, 8.0 * di->block_bytes / di->block_size, ours,
               theirs);
        free(w), free(act), free(x);
    }
    return 0;
}

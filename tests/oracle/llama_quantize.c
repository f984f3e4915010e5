/* tests/oracle/llama_quantize.c — quantizes a GGUF file with llama.cpp's own quantizer
 * (llama_model_quantize from the libllama that the npm package node-llama-cpp ships), so the
 * tests can check that liandan runs GGUF files made by llama.cpp's tools, and the
 * compression report can put liandan's quantizers next to llama.cpp's.
 *
 * usage: llama_quantize LIBLLAMA.so IN.gguf OUT.gguf FTYPE [--imatrix FILE] [NAME:K ...]
 *   FTYPE: llama_ftype number, e.g. 7 = Q8_0, 15 = Q4_K_M, 2 = Q4_0, 19 = IQ2_XXS
 *   --imatrix FILE: the importance matrix of an imatrix GGUF (llama.cpp's format, which
 *     `liandan imatrix` writes: N.in_sum2 / N.counts), read with libggml-base's gguf API
 *     (the library beside LIBLLAMA.so)
 *   NAME:K: give the quantizer an importance matrix of K ones for tensor NAME (the i-quants
 *     below 2.5 bits refuse to run without one)
 *
 * llama.h is not shipped with the binary, so the parameter struct is declared by its prefix
 * up to the imatrix pointer (the layout of the pinned v0.5.0 libllama) inside a buffer
 * larger than the real struct: the defaults function fills it and we change ftype and
 * imatrix only. */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct imatrix_entry {
    const char *name;
    const float *data;
    size_t size;
} imatrix_entry;

typedef struct quant_params {
    int32_t nthread;
    int32_t ftype;
    int32_t output_tensor_type, token_embedding_type;
    bool allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run;
    const imatrix_entry *imatrix;
    unsigned char rest[1024];
} quant_params;

/* libggml-base's gguf reader, by the prefix of its API that the pinned version has */
typedef struct gguf_init_params {
    bool no_alloc;
    void **ctx;
} gguf_init_params;

/* Appends the entries of imatrix GGUF `path` (importance = in_sum2 / counts) to im[*n]. */
static int read_imatrix(const char *libllama, const char *path, imatrix_entry *im, int *n, int cap) {
    char lib[4096];
    snprintf(lib, sizeof lib, "%s", libllama);
    char *slash = strrchr(lib, '/');
    snprintf(slash ? slash + 1 : lib, sizeof lib - (size_t)(slash ? slash + 1 - lib : 0), "libggml-base.so");
    void *g = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!g) return fprintf(stderr, "llama_quantize: %s\n", dlerror()), 1;
    void *(*init)(const char *, gguf_init_params) = (void *(*)(const char *, gguf_init_params))dlsym(g, "gguf_init_from_file");
    int64_t (*count)(const void *) = (int64_t(*)(const void *))dlsym(g, "gguf_get_n_tensors");
    const char *(*name)(const void *, int64_t) = (const char *(*)(const void *, int64_t))dlsym(g, "gguf_get_tensor_name");
    size_t (*offset)(const void *, int64_t) = (size_t(*)(const void *, int64_t))dlsym(g, "gguf_get_tensor_offset");
    size_t (*size)(const void *, int64_t) = (size_t(*)(const void *, int64_t))dlsym(g, "gguf_get_tensor_size");
    size_t (*data)(const void *) = (size_t(*)(const void *))dlsym(g, "gguf_get_data_offset");
    if (!init || !count || !name || !offset || !size || !data) return fprintf(stderr, "llama_quantize: %s lacks the gguf API\n", lib), 1;
    void *ctx = init(path, (gguf_init_params){true, NULL});
    FILE *f = fopen(path, "rb");
    if (!ctx || !f) return fprintf(stderr, "llama_quantize: cannot read %s\n", path), 1;
    for (int64_t t = 0; t < count(ctx); t++) {
        const char *nm = name(ctx, t), *suffix = strstr(nm, ".in_sum2");
        if (!suffix || suffix[8] || *n >= cap) continue;
        char cname[512];
        snprintf(cname, sizeof cname, "%.*s.counts", (int)(suffix - nm), nm);
        int64_t c = -1;
        for (int64_t u = 0; u < count(ctx); u++)
            if (!strcmp(name(ctx, u), cname)) c = u;
        const size_t k = size(ctx, t) / sizeof(float);
        float *v = malloc(k * sizeof *v), cnt = 1.0f;
        if (!v || fseek(f, (long)(data(ctx) + offset(ctx, t)), SEEK_SET) || fread(v, sizeof *v, k, f) != k ||
            (c >= 0 && (fseek(f, (long)(data(ctx) + offset(ctx, c)), SEEK_SET) || fread(&cnt, sizeof cnt, 1, f) != 1)))
            return fprintf(stderr, "llama_quantize: %s: cannot read %s\n", path, nm), 1;
        for (size_t j = 0; j < k; j++) v[j] = cnt > 0 ? v[j] / cnt : 0.0f;
        im[(*n)++] = (imatrix_entry){strndup(nm, (size_t)(suffix - nm)), v, k};
    }
    fclose(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s LIBLLAMA.so IN.gguf OUT.gguf FTYPE [--imatrix FILE] [NAME:K ...]\n", argv[0]);
        return 2;
    }
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "llama_quantize: %s\n", dlerror());
        return 1;
    }
    void (*backend_init)(void) = (void (*)(void))dlsym(lib, "llama_backend_init");
    quant_params (*defaults)(void) = (quant_params(*)(void))dlsym(lib, "llama_model_quantize_default_params");
    uint32_t (*quantize)(const char *, const char *, const quant_params *) =
        (uint32_t(*)(const char *, const char *, const quant_params *))dlsym(lib, "llama_model_quantize");
    if (!backend_init || !defaults || !quantize) {
        fprintf(stderr, "llama_quantize: %s lacks the llama_model_quantize API\n", argv[1]);
        return 1;
    }
    backend_init();
    quant_params p = defaults();
    p.ftype = atoi(argv[4]);
    p.nthread = 1;
    const int cap = argc + 4096;
    imatrix_entry *im = calloc((size_t)cap + 1, sizeof *im);
    int n = 0;
    for (int i = 5; i < argc; i++) {
        if (!strcmp(argv[i], "--imatrix") && i + 1 < argc) {
            if (read_imatrix(argv[1], argv[++i], im, &n, cap)) return 1;
            continue;
        }
        char *colon = strrchr(argv[i], ':');
        long k = colon ? atol(colon + 1) : 0;
        if (!colon || k <= 0) {
            fprintf(stderr, "llama_quantize: bad imatrix entry '%s' (NAME:K)\n", argv[i]);
            return 2;
        }
        *colon = 0;
        float *ones = malloc((size_t)k * sizeof *ones);
        for (long j = 0; j < k; j++) ones[j] = 1.0f;
        im[n++] = (imatrix_entry){argv[i], ones, (size_t)k};
    }
    if (n) p.imatrix = im;
    uint32_t rc = quantize(argv[2], argv[3], &p);
    if (rc) fprintf(stderr, "llama_quantize: llama_model_quantize failed (%u)\n", rc);
    return rc ? 1 : 0;
}

/* tests/oracle/llama_quantize.c — quantizes a GGUF file with llama.cpp's own quantizer
 * (llama_model_quantize from the libllama that the npm package node-llama-cpp ships), so the
 * tests can check that liandan runs GGUF files made by llama.cpp's tools.
 *
 * usage: llama_quantize LIBLLAMA.so IN.gguf OUT.gguf FTYPE [NAME:K ...]
 *   FTYPE: llama_ftype number, e.g. 7 = Q8_0, 15 = Q4_K_M, 2 = Q4_0, 19 = IQ2_XXS
 *   NAME:K: give the quantizer an importance matrix of K ones for tensor NAME (the i-quants
 *   below 2.5 bits refuse to run without one)
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

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s LIBLLAMA.so IN.gguf OUT.gguf FTYPE [NAME:K ...]\n", argv[0]);
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
    imatrix_entry *im = NULL;
    if (argc > 5) {
        im = calloc((size_t)(argc - 5 + 1), sizeof *im);
        for (int i = 5; i < argc; i++) {
            char *colon = strrchr(argv[i], ':');
            long k = colon ? atol(colon + 1) : 0;
            if (!colon || k <= 0) {
                fprintf(stderr, "llama_quantize: bad imatrix entry '%s' (NAME:K)\n", argv[i]);
                return 2;
            }
            *colon = 0;
            float *ones = malloc((size_t)k * sizeof *ones);
            for (long j = 0; j < k; j++) ones[j] = 1.0f;
            im[i - 5] = (imatrix_entry){argv[i], ones, (size_t)k};
        }
        p.imatrix = im;
    }
    uint32_t rc = quantize(argv[2], argv[3], &p);
    if (rc) fprintf(stderr, "llama_quantize: llama_model_quantize failed (%u)\n", rc);
    return rc ? 1 : 0;
}

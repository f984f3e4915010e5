/* tests/oracle/llama_quantize.c — quantizes a GGUF file with llama.cpp's own quantizer
 * (llama_model_quantize from the libllama that the npm package node-llama-cpp ships), so the
 * tests can check that liandan runs GGUF files made by llama.cpp's tools.
 *
 * usage: llama_quantize LIBLLAMA.so IN.gguf OUT.gguf FTYPE   (FTYPE: llama_ftype number,
 * e.g. 7 = Q8_0, 15 = Q4_K_M, 2 = Q4_0)
 *
 * llama.h is not shipped with the binary, so the parameter struct is declared by its stable
 * prefix (nthread, ftype) inside a buffer larger than the real struct: the defaults function
 * fills it and we change ftype only. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct quant_params {
    int32_t nthread;
    int32_t ftype;
    unsigned char rest[1024];
} quant_params;

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s LIBLLAMA.so IN.gguf OUT.gguf FTYPE\n", argv[0]);
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
    uint32_t rc = quantize(argv[2], argv[3], &p);
    if (rc) fprintf(stderr, "llama_quantize: llama_model_quantize failed (%u)\n", rc);
    return rc ? 1 : 0;
}

/* fuzz_safetensors.c — libFuzzer harness for the safetensors reader. Any input must be
 * rejected cleanly or parsed; a parsed file, written back out, must parse again with the
 * same tensors (names, dtypes, shapes and bytes). */
#include <string.h>

#include "liandan/liandan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_safetensors *st = NULL;
    if (ld_safetensors_open_memory(ctx, "fuzz.safetensors", data, size, &st) == LD_OK) {
        size_t n = ld_safetensors_count(st), nm = ld_safetensors_metadata_count(st);
        ld_st_write_tensor *w = ld_calloc(ctx, n + 1, sizeof *w);
        ld_str_pair *meta = ld_calloc(ctx, nm + 1, sizeof *meta);
        for (size_t i = 0; w && i < n; i++) {
            const ld_tensor_info *t = ld_safetensors_at(st, i);
            if (ld_safetensors_find(st, t->name) != t) __builtin_trap();
            if ((const uint8_t *)t->data < data || (const uint8_t *)t->data + t->nbytes > data + size) __builtin_trap();
            w[i] = (ld_st_write_tensor){.name = t->name, .st_dtype = t->dtype_name, .ndim = t->ndim, .shape = t->shape, .data = t->data};
        }
        for (size_t i = 0; meta && i < nm; i++) ld_safetensors_metadata_at(st, i, &meta[i].key, &meta[i].value);
        void *out = NULL;
        size_t osize = 0;
        if (w && meta && ld_safetensors_write_memory(ctx, w, n, meta, nm, &out, &osize) == LD_OK) {
            ld_safetensors *st2 = NULL;
            if (ld_safetensors_open_memory(ctx, "copy", out, osize, &st2) != LD_OK) __builtin_trap();
            if (ld_safetensors_count(st2) != n) __builtin_trap();
            for (size_t i = 0; i < n; i++) {
                const ld_tensor_info *a = ld_safetensors_at(st, i), *b = ld_safetensors_at(st2, i);
                if (strcmp(a->name, b->name) || strcmp(a->dtype_name, b->dtype_name) || a->ndim != b->ndim || a->nbytes != b->nbytes ||
                    memcmp(a->shape, b->shape, sizeof a->shape) || (a->nbytes && memcmp(a->data, b->data, a->nbytes)))
                    __builtin_trap();
            }
            ld_safetensors_close(st2);
            ld_free(ctx, out);
        }
        ld_free(ctx, w);
        ld_free(ctx, meta);
        ld_safetensors_close(st);
    }
    if (ld_ctx_bytes_in_use(ctx) != 0) __builtin_trap();
    ld_ctx_free(ctx);
    return 0;
}

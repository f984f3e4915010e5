/* fuzz_gguf.c — libFuzzer harness for the GGUF reader. Any input must be rejected cleanly or
 * parsed; a parsed file must survive every getter, and copying it through the writer must give
 * a file that parses again and copies to identical bytes (the writer's layout is canonical). */
#include <stdlib.h>
#include <string.h>

#include "liandan/liandan.h"

static ld_status copy(ld_ctx *ctx, const ld_gguf *g, void **out, size_t *size) {
    ld_gguf_writer *w = NULL;
    ld_status s = ld_gguf_writer_new(ctx, &w);
    for (size_t i = 0; !s && i < ld_gguf_kv_count(g); i++) s = ld_gguf_writer_set_value(w, ld_gguf_kv_key(g, i), ld_gguf_kv_value(g, i));
    for (size_t i = 0; !s && i < ld_gguf_tensor_count(g); i++) {
        const ld_tensor_info *t = ld_gguf_tensor_at(g, i);
        s = ld_gguf_writer_add_tensor(w, t->name, t->file_type, t->ndim, t->shape, t->data, t->nbytes);
    }
    if (!s) s = ld_gguf_writer_write_memory(w, out, size);
    ld_gguf_writer_free(w);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    ld_gguf *g = NULL;
    if (ld_gguf_open_memory(ctx, "fuzz.gguf", data, size, &g) == LD_OK) {
        for (size_t i = 0; i < ld_gguf_kv_count(g); i++) {
            const char *k = ld_gguf_kv_key(g, i), *s;
            int64_t v;
            float f;
            bool b;
            const ld_gguf_str *strs;
            size_t n;
            int32_t *i32 = NULL;
            float *f32 = NULL;
            if (ld_gguf_find(g, k) == NULL) __builtin_trap();
            ld_gguf_get_int(ctx, g, k, INT64_MIN, INT64_MAX, &v);
            ld_gguf_get_f32(ctx, g, k, &f);
            ld_gguf_get_bool(ctx, g, k, &b);
            ld_gguf_get_str(ctx, g, k, &s);
            ld_gguf_get_strs(ctx, g, k, &strs, &n);
            if (!ld_gguf_get_i32s(ctx, g, k, &i32, &n)) ld_free(ctx, i32);
            if (!ld_gguf_get_f32s(ctx, g, k, &f32, &n)) ld_free(ctx, f32);
        }
        for (size_t i = 0; i < ld_gguf_tensor_count(g); i++) {
            const ld_tensor_info *t = ld_gguf_tensor_at(g, i);
            if (ld_gguf_find_tensor(g, t->name) != t) __builtin_trap();
            /* touch the first and last byte: must be inside the input */
            if (t->nbytes) {
                volatile uint8_t x = ((const uint8_t *)t->data)[0];
                x = ((const uint8_t *)t->data)[t->nbytes - 1];
                (void)x;
            }
            ld_tensor view;
            ld_tensor_info_view(ctx, t, &view);
        }
        void *c1 = NULL, *c2 = NULL;
        size_t n1 = 0, n2 = 0;
        if (copy(ctx, g, &c1, &n1) == LD_OK) {
            ld_gguf *g2 = NULL;
            if (ld_gguf_open_memory(ctx, "copy.gguf", c1, n1, &g2) != LD_OK) __builtin_trap();
            if (copy(ctx, g2, &c2, &n2) != LD_OK || n1 != n2 || memcmp(c1, c2, n1)) __builtin_trap();
            ld_gguf_close(g2);
            ld_free(ctx, c1);
            ld_free(ctx, c2);
        }
        ld_gguf_close(g);
    }
    if (ld_ctx_bytes_in_use(ctx) != 0) __builtin_trap();
    ld_ctx_free(ctx);
    return 0;
}

/* test_gguf.c — GGUF reader/writer: round trips (write -> read -> write gives identical bytes),
 * typed getters, the table of malformed files with status and message for each rule,
 * truncation at every byte of a small valid file, and bounded memory on absurd counts. */
#include <unistd.h>

#include "ld_test.h"

static ld_ctx *new_ctx(void) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    return ctx;
}

/* ---- a byte builder for hand-made files ---- */
typedef struct { unsigned char d[4096]; size_t n; } bb;
static void b_raw(bb *b, const void *p, size_t n) { memcpy(b->d + b->n, p, n); b->n += n; }
static void b_u8(bb *b, unsigned v) { b->d[b->n++] = (unsigned char)v; }
static void b_u32(bb *b, uint32_t v) { for (int i = 0; i < 4; i++) b_u8(b, (v >> (8 * i)) & 0xff); }
static void b_u64(bb *b, uint64_t v) { for (int i = 0; i < 8; i++) b_u8(b, (unsigned)(v >> (8 * i)) & 0xff); }
static void b_str(bb *b, const char *s) { b_u64(b, strlen(s)); b_raw(b, s, strlen(s)); }
static void b_head(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    b_raw(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}
static void b_kv_u32(bb *b, const char *k, uint32_t v) { b_str(b, k); b_u32(b, 4); b_u32(b, v); }
/* tensor info with n dims given innermost first */
static void b_tensor(bb *b, const char *name, uint32_t nd, const uint64_t *ne, uint32_t type, uint64_t off) {
    b_str(b, name);
    b_u32(b, nd);
    for (uint32_t i = 0; i < nd; i++) b_u64(b, ne[i]);
    b_u32(b, type);
    b_u64(b, off);
}
static void b_pad(bb *b, size_t a) { while (b->n % a) b_u8(b, 0); }
static void b_zeros(bb *b, size_t n) { memset(b->d + b->n, 0, n); b->n += n; }

/* A valid file: one kv, tensors a (F32 [8]) at 0 and b (F32 [2,4]) at 32. */
static void b_valid(bb *b) {
    uint64_t ne1[1] = {8}, ne2[2] = {4, 2};
    b_head(b, 3, 2, 1);
    b_kv_u32(b, "x.n", 7);
    b_tensor(b, "a", 1, ne1, 0, 0);
    b_tensor(b, "b", 2, ne2, 0, 32);
    b_pad(b, 32);
    for (int i = 0; i < 16; i++) b_u32(b, 0x3f800000u); /* 1.0f */
}

TEST(gguf_valid_handmade) {
    ld_ctx *ctx = new_ctx();
    bb b;
    b_valid(&b);
    ld_gguf *g = NULL;
    CHECK_STATUS(ctx, ld_gguf_open_memory(ctx, "m.gguf", b.d, b.n, &g), LD_OK, "");
    CHECK(ld_gguf_version(g) == 3 && ld_gguf_alignment(g) == 32 && ld_gguf_data_offset(g) % 32 == 0);
    CHECK(ld_gguf_tensor_count(g) == 2 && ld_gguf_kv_count(g) == 1);
    const ld_tensor_info *t = ld_gguf_find_tensor(g, "b");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 4 && t->dtype == LD_F32 && t->nbytes == 32 && t->offset == 32);
    CHECK(t && t->data == b.d + ld_gguf_data_offset(g) + 32);
    ld_tensor view;
    CHECK_STATUS(ctx, ld_tensor_info_view(ctx, t, &view), LD_OK, "");
    CHECK(view.shape[0] == 2 && view.shape[1] == 4 && ((float *)view.data)[7] == 1.0f);
    uint32_t u;
    CHECK_STATUS(ctx, ld_gguf_get_u32(ctx, g, "x.n", &u), LD_OK, "");
    CHECK(u == 7);
    ld_gguf_close(g);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

enum { M_NONE, M_TRUNC };
TEST(gguf_bad_inputs) {
    ld_ctx *ctx = new_ctx();
    static const struct { const char *what; ld_status status; const char *msg; } cases[] = {
        {"bad magic", LD_ERR_FORMAT, "byte 0: bad magic"},
        {"version 1", LD_ERR_UNSUPPORTED, "GGUF version 1 is not supported"},
        {"version 4", LD_ERR_UNSUPPORTED, "GGUF version 4 is not supported"},
        {"huge tensor count", LD_ERR_FORMAT, "tensor count 1152921504606846976 cannot fit"},
        {"huge kv count", LD_ERR_FORMAT, "metadata count 18446744073709551615 cannot fit"},
        {"key length past end", LD_ERR_FORMAT, "a metadata key has length 1000000, past the end of the file"},
        {"string value past end", LD_ERR_FORMAT, "key 's': m.gguf: byte 37: a string value has length 4294967296, past the end"},
        {"unknown value type", LD_ERR_FORMAT, "key 'k': unknown value type 13"},
        {"unknown array type", LD_ERR_FORMAT, "key 'k': unknown array element type 77"},
        {"huge array count", LD_ERR_FORMAT, "key 'k': array of 2305843009213693952 UINT32 items cannot fit"},
        {"huge string array", LD_ERR_FORMAT, "array of 1000000 STRING items cannot fit"},
        {"bad bool", LD_ERR_FORMAT, "key 'k': bool value 2 is not 0 or 1"},
        {"arrays too deep", LD_ERR_LIMIT, "nested more than 8 deep"},
        {"duplicate key", LD_ERR_FORMAT, "key 'x.n' appears more than once"},
        {"bad alignment", LD_ERR_FORMAT, "general.alignment': must be a UINT32 power of two"},
        {"huge alignment", LD_ERR_UNSUPPORTED, "general.alignment': 1073741824 is above the supported maximum of 65536"},
        {"n_dims 5", LD_ERR_FORMAT, "tensor 'a': n_dims 5 is more than 4"},
        {"dim product overflow", LD_ERR_FORMAT, "tensor 'a': dimensions overflow"},
        {"dim above int64", LD_ERR_FORMAT, "tensor 'a': dimensions overflow (ne[0] = 9223372036854775808)"},
        {"unknown ggml type", LD_ERR_FORMAT, "tensor 'a': unknown GGML type 99"},
        {"removed ggml type 4", LD_ERR_FORMAT, "tensor 'a': unknown GGML type 4"},
        {"partial block", LD_ERR_FORMAT, "tensor 'a': row length 8 is not a multiple of the Q4_0 block size 32"},
        {"misaligned offset", LD_ERR_FORMAT, "tensor 'b': offset 16 is not a multiple of the alignment 32"},
        {"overlapping", LD_ERR_FORMAT, "tensors 'a' (bytes 0..64) and 'b' (bytes 32..64) overlap"},
        {"data past EOF", LD_ERR_FORMAT, "tensor 'b': data (bytes 64..96 of the data section"},
        {"offset far past EOF", LD_ERR_FORMAT, "tensor 'b': data (bytes 18446744073709551584.."},
        {"duplicate tensor", LD_ERR_FORMAT, "tensor 'a' appears more than once"},
        {"tensor name past end", LD_ERR_FORMAT, "tensor 1: m.gguf: byte"},
    };
    uint64_t ne1[1] = {8}, ne2[2] = {4, 2};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bb b;
        const char *w = cases[i].what;
        if (!strcmp(w, "bad magic")) { b_valid(&b); b.d[3] = 'X'; }
        else if (!strcmp(w, "version 1")) { b_valid(&b); b.d[4] = 1; }
        else if (!strcmp(w, "version 4")) { b_valid(&b); b.d[4] = 4; }
        else if (!strcmp(w, "huge tensor count")) { b_head(&b, 3, 1ull << 60, 0); b_zeros(&b, 64); }
        else if (!strcmp(w, "huge kv count")) { b_head(&b, 3, 0, ~0ull); b_zeros(&b, 64); }
        else if (!strcmp(w, "key length past end")) { b_head(&b, 3, 0, 1); b_u64(&b, 1000000); b_zeros(&b, 20); }
        else if (!strcmp(w, "string value past end")) { b_head(&b, 3, 0, 1); b_str(&b, "s"); b_u32(&b, 8); b_u64(&b, 1ull << 32); b_zeros(&b, 8); }
        else if (!strcmp(w, "unknown value type")) { b_head(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 13); b_zeros(&b, 8); }
        else if (!strcmp(w, "unknown array type")) { b_head(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, 77); b_u64(&b, 1); b_zeros(&b, 8); }
        else if (!strcmp(w, "huge array count")) { b_head(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, 4); b_u64(&b, 1ull << 61); b_zeros(&b, 8); }
        else if (!strcmp(w, "huge string array")) { b_head(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, 8); b_u64(&b, 1000000); b_zeros(&b, 80); }
        else if (!strcmp(w, "bad bool")) { b_head(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 7); b_u8(&b, 2); }
        else if (!strcmp(w, "arrays too deep")) {
            b_head(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9);
            for (int d = 0; d < 9; d++) { b_u32(&b, 9); b_u64(&b, 1); }
            b_zeros(&b, 64);
        }
        else if (!strcmp(w, "duplicate key")) { b_head(&b, 3, 0, 2); b_kv_u32(&b, "x.n", 1); b_kv_u32(&b, "x.n", 2); }
        else if (!strcmp(w, "bad alignment")) { b_head(&b, 3, 0, 1); b_kv_u32(&b, "general.alignment", 3); }
        else if (!strcmp(w, "huge alignment")) { b_head(&b, 3, 0, 1); b_kv_u32(&b, "general.alignment", 1u << 30); }
        else if (!strcmp(w, "n_dims 5")) { uint64_t ne[5] = {1, 1, 1, 1, 1}; b_head(&b, 3, 1, 0); b_tensor(&b, "a", 5, ne, 0, 0); b_zeros(&b, 64); }
        else if (!strcmp(w, "dim product overflow")) { uint64_t ne[3] = {1ull << 32, 1ull << 32, 2}; b_head(&b, 3, 1, 0); b_tensor(&b, "a", 3, ne, 0, 0); b_zeros(&b, 64); }
        else if (!strcmp(w, "dim above int64")) { uint64_t ne[1] = {1ull << 63}; b_head(&b, 3, 1, 0); b_tensor(&b, "a", 1, ne, 0, 0); b_zeros(&b, 64); }
        else if (!strcmp(w, "unknown ggml type")) { b_head(&b, 3, 1, 0); b_tensor(&b, "a", 1, ne1, 99, 0); b_zeros(&b, 64); }
        else if (!strcmp(w, "removed ggml type 4")) { b_head(&b, 3, 1, 0); b_tensor(&b, "a", 1, ne1, 4, 0); b_zeros(&b, 64); }
        else if (!strcmp(w, "partial block")) { b_head(&b, 3, 1, 0); b_tensor(&b, "a", 1, ne1, 2, 0); b_zeros(&b, 64); }
        else if (!strcmp(w, "misaligned offset")) { b_head(&b, 3, 2, 0); b_tensor(&b, "a", 1, ne1, 0, 0); b_tensor(&b, "b", 2, ne2, 0, 16); b_pad(&b, 32); b_zeros(&b, 96); }
        else if (!strcmp(w, "overlapping")) { uint64_t ne16[1] = {16}; b_head(&b, 3, 2, 0); b_tensor(&b, "a", 1, ne16, 0, 0); b_tensor(&b, "b", 2, ne2, 0, 32); b_pad(&b, 32); b_zeros(&b, 96); }
        else if (!strcmp(w, "data past EOF")) { b_head(&b, 3, 2, 0); b_tensor(&b, "a", 1, ne1, 0, 0); b_tensor(&b, "b", 2, ne2, 0, 64); b_pad(&b, 32); b_zeros(&b, 80); }
        else if (!strcmp(w, "offset far past EOF")) { b_head(&b, 3, 2, 0); b_tensor(&b, "a", 1, ne1, 0, 0); b_tensor(&b, "b", 2, ne2, 0, ~31ull); b_pad(&b, 32); b_zeros(&b, 80); }
        else if (!strcmp(w, "duplicate tensor")) { b_head(&b, 3, 2, 0); b_tensor(&b, "a", 1, ne1, 0, 0); b_tensor(&b, "a", 1, ne1, 0, 32); b_pad(&b, 32); b_zeros(&b, 64); }
        else if (!strcmp(w, "tensor name past end")) { b_head(&b, 3, 2, 0); b_tensor(&b, "a", 1, ne1, 0, 0); b_u64(&b, 500); b_zeros(&b, 60); }
        ld_gguf *g = (ld_gguf *)1;
        ld_status s = ld_gguf_open_memory(ctx, "m.gguf", b.d, b.n, &g);
        CHECK_MSG(s == cases[i].status && strstr(ld_ctx_error(ctx), cases[i].msg), "case '%s': got %s \"%s\", expected %s \"%s\"", w,
                  ld_status_name(s), ld_ctx_error(ctx), ld_status_name(cases[i].status), cases[i].msg);
        CHECK(g == NULL);
        CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    }
    ld_ctx_free(ctx);
}

TEST(gguf_truncated_at_every_byte) {
    ld_ctx *ctx = new_ctx();
    bb b;
    b_valid(&b);
    for (size_t n = 0; n < b.n; n++) {
        ld_gguf *g = (ld_gguf *)1;
        ld_status s = ld_gguf_open_memory(ctx, "t.gguf", b.d, n, &g);
        CHECK_MSG(s == LD_ERR_FORMAT && g == NULL, "prefix of %zu bytes: %s %s", n, ld_status_name(s), ld_ctx_error(ctx));
    }
    ld_gguf *g = NULL;
    CHECK_STATUS(ctx, ld_gguf_open_memory(ctx, "t.gguf", b.d, b.n, &g), LD_OK, "");
    ld_gguf_close(g);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(gguf_absurd_counts_use_bounded_memory) {
    ld_test_mem mem = {0};
    ld_allocator a = ld_test_mem_allocator(&mem);
    ld_ctx_params p = ld_ctx_default_params();
    p.allocator = &a;
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(&p, &ctx) == LD_OK);
    bb b;
    /* 150 tiny strings are fine; a claimed 2^40 strings in a 200-byte file fails before allocating. */
    b_head(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9); b_u32(&b, 8); b_u64(&b, 1ull << 40); b_zeros(&b, 160);
    mem.peak = 0;
    ld_gguf *g = NULL;
    CHECK_STATUS(ctx, ld_gguf_open_memory(ctx, "m.gguf", b.d, b.n, &g), LD_ERR_FORMAT, "cannot fit");
    CHECK_MSG(mem.peak < (256u << 10), "peak %zu bytes", mem.peak);
    b_head(&b, 3, 1ull << 40, 1ull << 40); b_zeros(&b, 100);
    mem.peak = 0;
    CHECK_STATUS(ctx, ld_gguf_open_memory(ctx, "m.gguf", b.d, b.n, &g), LD_ERR_FORMAT, "cannot fit");
    CHECK_MSG(mem.peak < (256u << 10), "peak %zu bytes", mem.peak);
    /* nested arrays claiming 2^30 items per level */
    b_head(&b, 3, 0, 1); b_str(&b, "k"); b_u32(&b, 9);
    for (int d = 0; d < 4; d++) { b_u32(&b, 9); b_u64(&b, 1ull << 30); }
    b_zeros(&b, 100);
    mem.peak = 0;
    CHECK_STATUS(ctx, ld_gguf_open_memory(ctx, "m.gguf", b.d, b.n, &g), LD_ERR_FORMAT, "cannot fit");
    CHECK_MSG(mem.peak < (256u << 10), "peak %zu bytes", mem.peak);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* Builds a file with every value type, nested arrays and several tensor types. */
static void build_rich(ld_ctx *ctx, ld_gguf_writer *w, uint32_t alignment, float *f32, uint8_t *q4) {
    ld_gguf_writer_set_str(w, "general.architecture", "llama");
    if (alignment) ld_gguf_writer_set_u32(w, "general.alignment", alignment);
    ld_gguf_writer_set_u32(w, "llama.context_length", 2048);
    ld_gguf_writer_set_i32(w, "x.i32", -5);
    ld_gguf_writer_set_u64(w, "x.u64", 1ull << 40);
    ld_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    ld_gguf_writer_set_bool(w, "x.bool", true);
    uint8_t u8 = 200; int8_t i8 = -100; uint16_t u16 = 60000; int16_t i16 = -30000; int64_t i64 = -(1ll << 50); double f64 = 0.1;
    ld_gguf_writer_set_scalar(w, "x.u8", LD_GGUF_UINT8, &u8);
    ld_gguf_writer_set_scalar(w, "x.i8", LD_GGUF_INT8, &i8);
    ld_gguf_writer_set_scalar(w, "x.u16", LD_GGUF_UINT16, &u16);
    ld_gguf_writer_set_scalar(w, "x.i16", LD_GGUF_INT16, &i16);
    ld_gguf_writer_set_scalar(w, "x.i64", LD_GGUF_INT64, &i64);
    ld_gguf_writer_set_scalar(w, "x.f64", LD_GGUF_FLOAT64, &f64);
    const char *toks[] = {"<s>", "</s>", "h\xc3\xa9llo", "", "a b"};
    ld_gguf_writer_set_strs(w, "tokenizer.ggml.tokens", toks, 5);
    float scores[5] = {0, -1.5f, 2.25f, 3, -0.125f};
    ld_gguf_writer_set_array(w, "tokenizer.ggml.scores", LD_GGUF_FLOAT32, scores, 5);
    int32_t tt[5] = {3, 3, 1, 1, 6};
    ld_gguf_writer_set_array(w, "tokenizer.ggml.token_type", LD_GGUF_INT32, tt, 5);
    const char *merges[] = {"h e", "he llo"};
    ld_gguf_writer_set_strs(w, "tokenizer.ggml.merges", merges, 2);
    ld_gguf_writer_set_array(w, "x.empty", LD_GGUF_UINT8, NULL, 0);
    for (int i = 0; i < 64; i++) f32[i] = (float)i * 0.5f - 3;
    for (int i = 0; i < 36; i++) q4[i] = (uint8_t)(i * 37);
    int64_t s2[2] = {4, 16}, s1[1] = {64}, sq[2] = {2, 32}, s0[1] = {3};
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", 0, 2, s2, f32, 256), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "blk.0.ffn.weight", 2, 2, sq, q4, 36), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "output_norm.weight", 1, 1, s1, f32, 128), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "odd.mxfp4", 39, 1, (int64_t[]){32}, q4, 17), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "empty", 0, 1, (int64_t[]){0}, NULL, 0), LD_OK, "");
    (void)s0;
}

/* Copies every kv and tensor of g into a new writer and writes it to memory. */
static ld_status copy_gguf(ld_ctx *ctx, const ld_gguf *g, void **out, size_t *size) {
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

TEST(gguf_round_trip) {
    ld_ctx *ctx = new_ctx();
    static const uint32_t aligns[] = {0, 64, 8};
    for (size_t ai = 0; ai < 3; ai++) {
        ld_gguf_writer *w = NULL;
        CHECK_STATUS(ctx, ld_gguf_writer_new(ctx, &w), LD_OK, "");
        float f32[64];
        uint8_t q4[36];
        build_rich(ctx, w, aligns[ai], f32, q4);
        void *m1 = NULL, *m2 = NULL;
        size_t n1 = 0, n2 = 0;
        CHECK_STATUS(ctx, ld_gguf_writer_write_memory(w, &m1, &n1), LD_OK, "");
        ld_gguf_writer_free(w);
        ld_gguf *g = NULL;
        CHECK_STATUS(ctx, ld_gguf_open_memory(ctx, "rich.gguf", m1, n1, &g), LD_OK, "");
        if (!g) continue;
        uint32_t al = aligns[ai] ? aligns[ai] : 32;
        CHECK(ld_gguf_alignment(g) == al && ld_gguf_data_offset(g) % al == 0 && n1 % al == 0);
        CHECK(ld_gguf_kv_count(g) == (aligns[ai] ? 18 : 17) && ld_gguf_tensor_count(g) == 5);
        const char *arch;
        CHECK_STATUS(ctx, ld_gguf_get_str(ctx, g, "general.architecture", &arch), LD_OK, "");
        CHECK(!strcmp(arch, "llama"));
        uint32_t u;
        CHECK_STATUS(ctx, ld_gguf_get_u32(ctx, g, "llama.context_length", &u), LD_OK, "");
        CHECK(u == 2048);
        CHECK_STATUS(ctx, ld_gguf_get_u32(ctx, g, "x.i32", &u), LD_ERR_FORMAT, "key 'x.i32': value -5 is outside 0..4294967295");
        CHECK_STATUS(ctx, ld_gguf_get_u32(ctx, g, "general.architecture", &u), LD_ERR_FORMAT, "key 'general.architecture': expected an integer, got STRING");
        CHECK_STATUS(ctx, ld_gguf_get_u32(ctx, g, "tokenizer.ggml.tokens", &u), LD_ERR_FORMAT, "expected an integer, got ARRAY of STRING");
        CHECK_STATUS(ctx, ld_gguf_get_u32(ctx, g, "nope", &u), LD_ERR_NOT_FOUND, "rich.gguf: metadata key 'nope' is missing");
        int64_t v;
        CHECK_STATUS(ctx, ld_gguf_get_int(ctx, g, "x.i64", INT64_MIN, INT64_MAX, &v), LD_OK, "");
        CHECK(v == -(1ll << 50));
        CHECK_STATUS(ctx, ld_gguf_get_int(ctx, g, "x.u16", 0, 100000, &v), LD_OK, "");
        CHECK(v == 60000);
        CHECK_STATUS(ctx, ld_gguf_get_int(ctx, g, "x.i8", -128, 127, &v), LD_OK, "");
        CHECK(v == -100);
        float f;
        CHECK_STATUS(ctx, ld_gguf_get_f32(ctx, g, "llama.attention.layer_norm_rms_epsilon", &f), LD_OK, "");
        CHECK(f == 1e-5f);
        CHECK_STATUS(ctx, ld_gguf_get_f32(ctx, g, "x.f64", &f), LD_OK, "");
        CHECK(f == 0.1f);
        bool bo = false;
        CHECK_STATUS(ctx, ld_gguf_get_bool(ctx, g, "x.bool", &bo), LD_OK, "");
        CHECK(bo);
        const ld_gguf_str *strs;
        size_t n;
        CHECK_STATUS(ctx, ld_gguf_get_strs(ctx, g, "tokenizer.ggml.tokens", &strs, &n), LD_OK, "");
        CHECK(n == 5 && !strcmp(strs[2].s, "h\xc3\xa9llo") && strs[3].len == 0 && !strcmp(strs[4].s, "a b"));
        float *sc = NULL;
        CHECK_STATUS(ctx, ld_gguf_get_f32s(ctx, g, "tokenizer.ggml.scores", &sc, &n), LD_OK, "");
        CHECK(n == 5 && sc && sc[1] == -1.5f && sc[4] == -0.125f);
        ld_free(ctx, sc);
        int32_t *tt = NULL;
        CHECK_STATUS(ctx, ld_gguf_get_i32s(ctx, g, "tokenizer.ggml.token_type", &tt, &n), LD_OK, "");
        CHECK(n == 5 && tt && tt[4] == 6);
        ld_free(ctx, tt);
        CHECK_STATUS(ctx, ld_gguf_get_i32s(ctx, g, "tokenizer.ggml.scores", &tt, &n), LD_ERR_FORMAT, "expected ARRAY of integers, got ARRAY of FLOAT32");
        CHECK_STATUS(ctx, ld_gguf_get_strs(ctx, g, "x.empty", &strs, &n), LD_ERR_FORMAT, "expected ARRAY of STRING, got ARRAY of UINT8");
        const ld_tensor_info *t = ld_gguf_find_tensor(g, "blk.0.attn_q.weight");
        CHECK(t && t->ndim == 2 && t->shape[0] == 4 && t->shape[1] == 16 && t->dtype == LD_F32 && !memcmp(t->data, f32, 256));
        t = ld_gguf_find_tensor(g, "blk.0.ffn.weight");
        CHECK(t && t->dtype == LD_Q4_0 && t->nbytes == 36 && !memcmp(t->data, q4, 36) && t->offset % al == 0);
        t = ld_gguf_find_tensor(g, "odd.mxfp4");
        CHECK(t && t->dtype == LD_DTYPE_COUNT && !strcmp(t->dtype_name, "MXFP4") && t->file_type == 39 && t->nbytes == 17);
        ld_tensor view;
        CHECK_STATUS(ctx, ld_tensor_info_view(ctx, t, &view), LD_ERR_DTYPE, "tensor 'odd.mxfp4': dtype MXFP4 is not supported");
        const ld_tensor_info *tp;
        CHECK_STATUS(ctx, ld_gguf_get_tensor(ctx, g, "missing", &tp), LD_ERR_NOT_FOUND, "no tensor named 'missing'");
        /* read -> write gives identical bytes */
        CHECK_STATUS(ctx, copy_gguf(ctx, g, &m2, &n2), LD_OK, "");
        CHECK_MSG(n1 == n2 && m2 && !memcmp(m1, m2, n1), "alignment %u: %zu vs %zu bytes", al, n1, n2);
        ld_gguf_close(g);
        ld_free(ctx, m1);
        ld_free(ctx, m2);
    }
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(gguf_nested_arrays_copy_exactly) {
    ld_ctx *ctx = new_ctx();
    bb b;
    b_head(&b, 3, 0, 2);
    b_str(&b, "n"); b_u32(&b, 9); b_u32(&b, 9); b_u64(&b, 2);
    b_u32(&b, 4); b_u64(&b, 2); b_u32(&b, 1); b_u32(&b, 2);     /* [1, 2] */
    b_u32(&b, 8); b_u64(&b, 1); b_str(&b, "x");                 /* ["x"] */
    b_str(&b, "general.alignment"); b_u32(&b, 4); b_u32(&b, 32);
    b_pad(&b, 32);
    ld_gguf *g = NULL;
    CHECK_STATUS(ctx, ld_gguf_open_memory(ctx, "n.gguf", b.d, b.n, &g), LD_OK, "");
    const ld_gguf_value *v = ld_gguf_find(g, "n");
    CHECK(v && v->type == LD_GGUF_ARRAY && v->elem_type == LD_GGUF_ARRAY && v->count == 2);
    CHECK(v && v->items[0].elem_type == LD_GGUF_UINT32 && v->items[0].count == 2 && v->items[1].strs[0].len == 1);
    void *m = NULL;
    size_t n = 0;
    CHECK_STATUS(ctx, copy_gguf(ctx, g, &m, &n), LD_OK, "");
    CHECK(n == b.n && !memcmp(m, b.d, n));
    ld_free(ctx, m);
    ld_gguf_close(g);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(gguf_write_file_and_writer_errors) {
    ld_ctx *ctx = new_ctx();
    char path[] = "/tmp/ld_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    ld_gguf_writer *w = NULL;
    CHECK_STATUS(ctx, ld_gguf_writer_new(ctx, &w), LD_OK, "");
    float f32[64];
    uint8_t q4[36];
    build_rich(ctx, w, 0, f32, q4);
    CHECK_STATUS(ctx, ld_gguf_writer_set_u32(w, "llama.context_length", 4096), LD_OK, ""); /* replaces */
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "empty", 0, 1, (int64_t[]){0}, NULL, 0), LD_ERR_INVALID_ARG, "tensor 'empty' added twice");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "q", 2, 1, (int64_t[]){33}, q4, 18), LD_ERR_INVALID_ARG, "row length 33 is not a whole number of Q4_0 blocks");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "q", 2, 1, (int64_t[]){32}, q4, 17), LD_ERR_INVALID_ARG, "17 bytes given, Q4_0 of this shape needs 18");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "q", 5, 1, (int64_t[]){32}, q4, 18), LD_ERR_INVALID_ARG, "unknown GGML type 5");
    CHECK_STATUS(ctx, ld_gguf_writer_write(w, path), LD_OK, "");
    ld_gguf *g = NULL;
    CHECK_STATUS(ctx, ld_gguf_open(ctx, path, &g), LD_OK, "");
    uint32_t u = 0;
    CHECK_STATUS(ctx, ld_gguf_get_u32(ctx, g, "llama.context_length", &u), LD_OK, "");
    CHECK(u == 4096 && !strcmp(ld_gguf_kv_key(g, 1), "llama.context_length"));
    ld_gguf_close(g);
    CHECK_STATUS(ctx, ld_gguf_writer_set_u32(w, "general.alignment", 48), LD_OK, "");
    void *m;
    size_t n;
    CHECK_STATUS(ctx, ld_gguf_writer_write_memory(w, &m, &n), LD_ERR_INVALID_ARG, "general.alignment must be a UINT32 power of two");
    ld_gguf_writer_free(w);
    CHECK_STATUS(ctx, ld_gguf_open(ctx, "/nonexistent.gguf", &g), LD_ERR_NOT_FOUND, "/nonexistent.gguf");
    unlink(path);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* Tensors whose bytes come from a fill function at write time give the bytes the borrowed
 * data gives; a fill error fails the write with the tensor named and leaves no file. */
static ld_status fill_copy(void *user, void *dst, size_t n) {
    memcpy(dst, user, n);
    return LD_OK;
}
static ld_status fill_fails(void *user, void *dst, size_t n) {
    (void)dst, (void)n;
    return ld_error(user, LD_ERR_IO, "no values today");
}

TEST(gguf_writer_fill_functions) {
    ld_ctx *ctx = new_ctx();
    float f32[64];
    for (int i = 0; i < 64; i++) f32[i] = (float)i * 0.5f;
    const int64_t s2[2] = {8, 8};
    void *m1 = NULL, *m2 = NULL;
    size_t n1 = 0, n2 = 0;
    ld_gguf_writer *w = NULL;
    CHECK_STATUS(ctx, ld_gguf_writer_new(ctx, &w), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "a", 0, 2, s2, f32, 256), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "b", 0, 1, (int64_t[]){64}, f32, 256), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_write_memory(w, &m1, &n1), LD_OK, "");
    ld_gguf_writer_free(w);
    CHECK_STATUS(ctx, ld_gguf_writer_new(ctx, &w), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor_fn(w, "a", 0, 2, s2, 256, fill_copy, f32), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor(w, "b", 0, 1, (int64_t[]){64}, f32, 256), LD_OK, "");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor_fn(w, "c", 0, 1, (int64_t[]){4}, 16, NULL, NULL), LD_ERR_INVALID_ARG,
                 "tensor 'c': NULL fill function");
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor_fn(w, "c", 0, 1, (int64_t[]){4}, 12, fill_copy, f32), LD_ERR_INVALID_ARG,
                 "12 bytes given");
    CHECK_STATUS(ctx, ld_gguf_writer_write_memory(w, &m2, &n2), LD_OK, "");
    CHECK(n1 && n1 == n2 && m1 && m2 && !memcmp(m1, m2, n1));
    ld_free(ctx, m1), ld_free(ctx, m2);
    CHECK_STATUS(ctx, ld_gguf_writer_add_tensor_fn(w, "bad", 0, 1, (int64_t[]){4}, 16, fill_fails, ctx), LD_OK, "");
    char path[] = "/tmp/ld_test_gguf_fill_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    CHECK_STATUS(ctx, ld_gguf_writer_write(w, path), LD_ERR_IO, "tensor 'bad': no values today");
    CHECK(access(path, F_OK) != 0);
    ld_gguf_writer_free(w);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

/* test_safetensors.c — safetensors reader/writer round trips, the table of malformed files
 * (each with its status and message), and sharded sets with model.safetensors.index.json. */
#include <unistd.h>

#include "ld_test.h"

static ld_ctx *new_ctx(void) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    return ctx;
}

/* 8-byte length + header + data_len bytes of data (0x5a); hlen_override replaces the length. */
static size_t make_file(unsigned char *buf, size_t cap, const char *header, size_t data_len, long long hlen_override) {
    size_t h = strlen(header);
    unsigned long long n = hlen_override >= 0 ? (unsigned long long)hlen_override : h;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(n >> (8 * i));
    if (8 + h + data_len > cap) return 0;
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, 0x5a, data_len);
    return 8 + h + data_len;
}

TEST(safetensors_bad_inputs) {
    ld_ctx *ctx = new_ctx();
    static const struct {
        const char *what, *header;
        size_t data_len;
        long long hlen; /* -1 = the header's length */
        long long size; /* -1 = whole; else truncate the file here */
        ld_status status;
        const char *msg;
    } cases[] = {
        {"truncated length", "{}", 0, -1, 5, LD_ERR_FORMAT, "5 bytes, too short for the 8-byte header length"},
        {"header past EOF", "{}", 0, 1000, -1, LD_ERR_FORMAT, "header length 1000 runs past the end of the file (10 bytes)"},
        {"header too large", "{}", 0, 200ll << 20, -1, LD_ERR_LIMIT, "exceeds the limit of 104857600 bytes"},
        {"not an object", "[1, 2]", 0, -1, -1, LD_ERR_FORMAT, "header does not start with '{'"},
        {"bad JSON", "{\"a\": {\"dtype\": }", 0, -1, -1, LD_ERR_FORMAT, "t.safetensors: line 1, column 17"},
        {"JSON cut short", "{\"a\": {", 0, -1, -1, LD_ERR_FORMAT, "ends unexpectedly"},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, -1, LD_ERR_FORMAT, "tensor 'a': unknown dtype \"F33\""},
        {"dtype not a string", "{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, -1, -1, LD_ERR_FORMAT, "'dtype' must be a string, got 5"},
        {"shape/offset mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", 20, -1, -1, LD_ERR_FORMAT, "need 24 bytes but data_offsets [0, 20] hold 20"},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, -1, -1, LD_ERR_FORMAT, "shape[0] must be a non-negative integer, got -1"},
        {"fractional dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, -1, -1, LD_ERR_FORMAT, "shape[0] must be a non-negative integer, got 1.5"},
        {"shape not array", "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, -1, -1, LD_ERR_FORMAT, "'shape' must be an array"},
        {"too many dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, -1, -1, LD_ERR_UNSUPPORTED, "9 dimensions"},
        {"element count overflow", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,4]}}", 4, -1, -1, LD_ERR_FORMAT, "element count overflows"},
        {"byte size overflow", "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,4]}}", 4, -1, -1, LD_ERR_FORMAT, "byte size overflows"},
        {"offsets out of bounds", "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}", 16, -1, -1, LD_ERR_FORMAT, "run past the end of the data section (16 bytes)"},
        {"offsets reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, -1, -1, LD_ERR_FORMAT, "end before they begin"},
        {"offsets not a pair", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, -1, -1, LD_ERR_FORMAT, "'data_offsets' must be [begin, end]"},
        {"offsets huge", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1e300,4]}}", 4, -1, -1, LD_ERR_FORMAT, "'data_offsets' must be [begin, end]"},
        {"overlapping", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", 24, -1, -1, LD_ERR_FORMAT, "tensors 'a' (bytes 0..16) and 'b' (bytes 8..24) overlap"},
        {"identical ranges", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -1, -1, LD_ERR_FORMAT, "overlap"},
        {"gap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", 24, -1, -1, LD_ERR_FORMAT, "bytes 8..16 of the data section belong to no tensor (before 'b')"},
        {"trailing bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, -1, -1, LD_ERR_FORMAT, "bytes 8..12 of the data section belong to no tensor"},
        {"duplicate names", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, -1, -1, LD_ERR_FORMAT, "key 'a': appears more than once"},
        {"non-object entry", "{\"a\": 5}", 0, -1, -1, LD_ERR_FORMAT, "tensor 'a': expected an object, got 5"},
        {"array entry", "{\"a\": [1]}", 0, -1, -1, LD_ERR_FORMAT, "tensor 'a': expected an object, got an array"},
        {"metadata not object", "{\"__metadata__\": \"x\"}", 0, -1, -1, LD_ERR_FORMAT, "'__metadata__' must be an object"},
        {"metadata value not string", "{\"__metadata__\": {\"format\": 1}}", 0, -1, -1, LD_ERR_FORMAT, "__metadata__ key 'format': values must be strings, got 1"},
        {"NUL in header", "{\"a\"\x01}", 0, -1, -1, LD_ERR_FORMAT, "invalid JSON"},
    };
    unsigned char buf[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = make_file(buf, sizeof buf, cases[i].header, cases[i].data_len, cases[i].hlen);
        if (cases[i].size >= 0) n = (size_t)cases[i].size;
        ld_safetensors *st = (ld_safetensors *)1;
        ld_status s = ld_safetensors_open_memory(ctx, "t.safetensors", buf, n, &st);
        CHECK_MSG(s == cases[i].status && strstr(ld_ctx_error(ctx), cases[i].msg), "case '%s': got %s \"%s\", expected %s \"%s\"",
                  cases[i].what, ld_status_name(s), ld_ctx_error(ctx), ld_status_name(cases[i].status), cases[i].msg);
        CHECK(st == NULL);
    }
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(safetensors_valid_edge_cases) {
    ld_ctx *ctx = new_ctx();
    unsigned char buf[512];
    /* empty file set, scalar, zero-sized tensor sharing an offset, I64 kept with dtype LD_DTYPE_COUNT */
    const char *h = "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
                    "\"z\":{\"dtype\":\"BF16\",\"shape\":[0,3],\"data_offsets\":[4,4]},"
                    "\"i\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[4,12]}}   ";
    size_t n = make_file(buf, sizeof buf, h, 12, -1);
    ld_safetensors *st = NULL;
    CHECK_STATUS(ctx, ld_safetensors_open_memory(ctx, "e", buf, n, &st), LD_OK, "");
    CHECK(ld_safetensors_count(st) == 3);
    CHECK(!strcmp(ld_safetensors_at(st, 0)->name, "i")); /* name order */
    const ld_tensor_info *t = ld_safetensors_find(st, "i");
    CHECK(t && t->dtype == LD_DTYPE_COUNT && !strcmp(t->dtype_name, "I64") && t->nbytes == 8 && t->offset == 4);
    CHECK(t && t->data == buf + 8 + strlen(h) + 4);
    ld_tensor view;
    CHECK_STATUS(ctx, ld_tensor_info_view(ctx, t, &view), LD_ERR_DTYPE, "tensor 'i': dtype I64 is not supported");
    t = ld_safetensors_find(st, "s");
    CHECK(t && t->ndim == 0 && t->nbytes == 4);
    CHECK_STATUS(ctx, ld_tensor_info_view(ctx, t, &view), LD_OK, "");
    CHECK(view.ndim == 1 && view.shape[0] == 1 && view.dtype == LD_F32);
    t = ld_safetensors_find(st, "z");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->shape[1] == 3 && t->nbytes == 0);
    CHECK(ld_safetensors_find(st, "nope") == NULL);
    const ld_tensor_info *out;
    CHECK_STATUS(ctx, ld_safetensors_get(ctx, st, "nope", &out), LD_ERR_NOT_FOUND, "e: no tensor named 'nope'");
    ld_safetensors_close(st);
    n = make_file(buf, sizeof buf, "{}", 0, -1);
    CHECK_STATUS(ctx, ld_safetensors_open_memory(ctx, "empty", buf, n, &st), LD_OK, "");
    CHECK(ld_safetensors_count(st) == 0);
    ld_safetensors_close(st);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(safetensors_write_golden_bytes) {
    ld_ctx *ctx = new_ctx();
    float a[2] = {1.0f, -2.0f};
    int64_t shape[1] = {2};
    ld_st_write_tensor t = {.name = "a", .dtype = LD_F32, .ndim = 1, .shape = shape, .data = a};
    ld_str_pair meta = {"format", "pt"};
    void *out = NULL;
    size_t size = 0;
    CHECK_STATUS(ctx, ld_safetensors_write_memory(ctx, &t, 1, &meta, 1, &out, &size), LD_OK, "");
    /* Written by hand from the spec: 80-byte header padded with spaces to 88. */
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t hl = strlen(hdr), padded = (hl + 7) / 8 * 8;
    CHECK(size == 8 + padded + 8);
    const unsigned char *p = out;
    CHECK(p[0] == padded && p[1] == 0 && p[7] == 0);
    CHECK(!memcmp(p + 8, hdr, hl));
    for (size_t i = hl; i < padded; i++) CHECK(p[8 + i] == ' ');
    CHECK(!memcmp(p + 8 + padded, a, 8));
    ld_free(ctx, out);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(safetensors_round_trip_file) {
    ld_ctx *ctx = new_ctx();
    char dir[] = "/tmp/ld_test_st_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint16_t h[4] = {0x3c00, 0x4000, 0xbc00, 0};
    int64_t ids[3] = {7, -1, 1ll << 40};
    int64_t s23[2] = {2, 3}, s4[1] = {4}, s3[1] = {3};
    ld_st_write_tensor ts[] = {
        {.name = "z.weight", .dtype = LD_F32, .ndim = 2, .shape = s23, .data = w},
        {.name = "b\"quoted\\\n", .dtype = LD_BF16, .ndim = 1, .shape = s4, .data = h},
        {.name = "pos_ids", .st_dtype = "I64", .ndim = 1, .shape = s3, .data = ids},
        {.name = "scalar", .dtype = LD_F32, .ndim = 0, .shape = NULL, .data = w},
    };
    ld_str_pair meta[] = {{"format", "pt"}, {"note", "caf\xc3\xa9 \"x\""}};
    CHECK_STATUS(ctx, ld_safetensors_write(ctx, path, ts, 4, meta, 2), LD_OK, "");
    ld_safetensors *st = NULL;
    CHECK_STATUS(ctx, ld_safetensors_open(ctx, path, &st), LD_OK, "");
    CHECK(ld_safetensors_count(st) == 4);
    const ld_tensor_info *t = ld_safetensors_find(st, "z.weight");
    CHECK(t && t->dtype == LD_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && !memcmp(t->data, w, 24));
    t = ld_safetensors_find(st, "b\"quoted\\\n");
    CHECK(t && t->dtype == LD_BF16 && !memcmp(t->data, h, 8));
    t = ld_safetensors_find(st, "pos_ids");
    CHECK(t && !strcmp(t->dtype_name, "I64") && !memcmp(t->data, ids, 24));
    t = ld_safetensors_find(st, "scalar");
    CHECK(t && t->ndim == 0 && !memcmp(t->data, w, 4));
    CHECK(ld_safetensors_metadata_count(st) == 2);
    const char *v = ld_safetensors_metadata_get(st, "note");
    CHECK(v && !strcmp(v, "caf\xc3\xa9 \"x\""));
    CHECK(ld_safetensors_metadata_get(st, "absent") == NULL);
    /* the output depends only on the set of tensors: reversed input order, same bytes */
    ld_st_write_tensor rev[4] = {ts[3], ts[2], ts[1], ts[0]};
    ld_str_pair rmeta[2] = {meta[1], meta[0]};
    void *m1 = NULL, *m2 = NULL;
    size_t n1 = 0, n2 = 0;
    CHECK_STATUS(ctx, ld_safetensors_write_memory(ctx, ts, 4, meta, 2, &m1, &n1), LD_OK, "");
    CHECK_STATUS(ctx, ld_safetensors_write_memory(ctx, rev, 4, rmeta, 2, &m2, &n2), LD_OK, "");
    ld_mapping map;
    CHECK_STATUS(ctx, ld_file_map(ctx, path, &map), LD_OK, "");
    CHECK(n1 == n2 && n1 == map.size && !memcmp(m1, m2, n1) && !memcmp(m1, map.data, n1));
    CHECK(((const unsigned char *)m1)[0] % 8 == 0);
    ld_file_unmap(&map);
    ld_free(ctx, m1);
    ld_free(ctx, m2);
    ld_safetensors_close(st);
    /* writer argument errors */
    ld_st_write_tensor dup[2] = {ts[0], ts[0]};
    CHECK_STATUS(ctx, ld_safetensors_write_memory(ctx, dup, 2, NULL, 0, &m1, &n1), LD_ERR_INVALID_ARG, "tensor 'z.weight' given twice");
    ld_st_write_tensor q = {.name = "q", .dtype = LD_Q4_0, .ndim = 1, .shape = s4, .data = w};
    CHECK_STATUS(ctx, ld_safetensors_write_memory(ctx, &q, 1, NULL, 0, &m1, &n1), LD_ERR_DTYPE, "dtype Q4_0 cannot be stored");
    unlink(path);
    rmdir(dir);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* ---- sharded sets ---- */
static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

TEST(safetensors_sharded_sets) {
    ld_ctx *ctx = new_ctx();
    char dir[] = "/tmp/ld_test_shard_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char p1[256], p2[256], idx[256];
    snprintf(p1, sizeof p1, "%s/model-00001-of-00002.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/model-00002-of-00002.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    float w[4] = {1, 2, 3, 4};
    int64_t s2[1] = {2};
    ld_st_write_tensor a[2] = {{.name = "a", .dtype = LD_F32, .ndim = 1, .shape = s2, .data = w},
                               {.name = "b", .dtype = LD_F32, .ndim = 1, .shape = s2, .data = w + 2}};
    ld_st_write_tensor c = {.name = "c", .dtype = LD_F32, .ndim = 1, .shape = s2, .data = w};
    CHECK_STATUS(ctx, ld_safetensors_write(ctx, p1, a, 2, NULL, 0), LD_OK, "");
    CHECK_STATUS(ctx, ld_safetensors_write(ctx, p2, &c, 1, NULL, 0), LD_OK, "");
    write_text(idx, "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\","
                    " \"c\": \"model-00002-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\"}}");
    ld_st_set *set = NULL;
    CHECK_STATUS(ctx, ld_st_set_open(ctx, dir, &set), LD_OK, "");
    CHECK(ld_st_set_count(set) == 3 && ld_st_set_file_count(set) == 2);
    const ld_tensor_info *t = ld_st_set_find(set, "b");
    CHECK(t && !memcmp(t->data, w + 2, 8));
    t = ld_st_set_find(set, "c");
    CHECK(t && !memcmp(t->data, w, 8));
    CHECK(!strcmp(ld_st_set_at(set, 0)->name, "a"));
    CHECK_STATUS(ctx, ld_st_set_get(ctx, set, "d", &t), LD_ERR_NOT_FOUND, "no tensor named 'd'");
    ld_st_set_close(set);
    /* a single file opens as a set too */
    CHECK_STATUS(ctx, ld_st_set_open(ctx, p2, &set), LD_OK, "");
    CHECK(ld_st_set_count(set) == 1);
    ld_st_set_close(set);

    static const struct { const char *index; ld_status status; const char *msg; } bad[] = {
        {"{\"metadata\": {}}", LD_ERR_FORMAT, "key 'weight_map': missing"},
        {"{\"weight_map\": []}", LD_ERR_FORMAT, "key 'weight_map': expected an object, got an array"},
        {"{\"weight_map\": {\"a\": 3}}", LD_ERR_FORMAT, "key 'weight_map.a': expected a string, got 3"},
        {"{\"weight_map\": {\"a\": \"../x.safetensors\"}}", LD_ERR_FORMAT, "must be a relative path inside the model directory"},
        {"{\"weight_map\": {\"a\": \"/etc/passwd\"}}", LD_ERR_FORMAT, "must be a relative path"},
        {"{\"weight_map\": {\"a\": \"missing.safetensors\"}}", LD_ERR_NOT_FOUND, "shard 'missing.safetensors' listed in the weight_map does not exist"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"a\": \"model-00002-of-00002.safetensors\"}}", LD_ERR_FORMAT, "key 'weight_map.a': appears more than once"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00001-of-00002.safetensors\", \"c\": \"model-00001-of-00002.safetensors\"}}", LD_ERR_FORMAT, "tensor 'c' is listed in shard 'model-00001-of-00002.safetensors' but that file has no such tensor"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"c\": \"model-00002-of-00002.safetensors\"}}", LD_ERR_FORMAT, "holds tensor 'b', which the weight_map does not list"},
        {"{\"weight_map\": {\"a\": \"model-00001-of-00002.safetensors\", \"b\": \"model-00002-of-00002.safetensors\", \"c\": \"model-00002-of-00002.safetensors\"}}", LD_ERR_FORMAT, "tensor 'b' is listed in shard 'model-00002-of-00002.safetensors' but"},
        {"{\"weight_map\": ", LD_ERR_FORMAT, "ends unexpectedly"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(idx, bad[i].index);
        set = (ld_st_set *)1;
        ld_status s = ld_st_set_open(ctx, idx, &set);
        CHECK_MSG(s == bad[i].status && strstr(ld_ctx_error(ctx), bad[i].msg), "index case %zu: got %s \"%s\"", i, ld_status_name(s), ld_ctx_error(ctx));
        CHECK(set == NULL);
    }
    /* from memory: the parsed index */
    const char *txt = "{\"weight_map\": {\"y\": \"s2\", \"x\": \"s1\", \"z\": \"s1\"}}";
    ld_hf_index *hi = NULL;
    CHECK_STATUS(ctx, ld_hf_index_parse(ctx, "i.json", txt, strlen(txt), &hi), LD_OK, "");
    CHECK(ld_hf_index_count(hi) == 3 && ld_hf_index_file_count(hi) == 2);
    const char *tn, *fn;
    ld_hf_index_at(hi, 0, &tn, &fn);
    CHECK(!strcmp(tn, "x") && !strcmp(fn, "s1"));
    CHECK(!strcmp(ld_hf_index_file(hi, 0), "s2"));
    ld_hf_index_free(hi);
    unlink(p1);
    unlink(p2);
    unlink(idx);
    rmdir(dir);
    CHECK_STATUS(ctx, ld_st_set_open(ctx, dir, &set), LD_ERR_NOT_FOUND, "");
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

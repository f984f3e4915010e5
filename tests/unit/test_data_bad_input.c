/* tests/unit/test_data_bad_input.c — bad corpora and bad shards: each case must fail with a
 * status and a message naming the file and the position, never crash. */
#include "data_test_util.h"

typedef struct corpus_case {
    const char *name;      /* file name (its extension picks the format) */
    const char *content;
    size_t len;            /* 0 = strlen(content) */
    int tsv_column;
    const char *field;
    ld_status expect;
    const char *msg;       /* substring of the error */
} corpus_case;

static const corpus_case corpus_cases[] = {
    {"empty.txt", "", 0, -1, NULL, LD_ERR_FORMAT, "empty.txt: empty file"},
    {"blank.txt", "\n\n  \n", 0, -1, NULL, LD_ERR_FORMAT, "blank.txt: no documents"},
    {"bad_utf8.txt", "fine\nok \xff here\n", 0, -1, NULL, LD_ERR_FORMAT, "bad_utf8.txt:2: byte 4 of the line: invalid UTF-8"},
    {"overlong.txt", "a\xc0\xafz\n", 0, -1, NULL, LD_ERR_FORMAT, "overlong.txt:1: byte 2"},
    {"surrogate.tsv", "x\t\xed\xa0\x80\n", 0, -1, NULL, LD_ERR_FORMAT, "surrogate.tsv:1: byte 3"},
    {"truncated_seq.txt", "abc\xe4\xbd", 0, -1, NULL, LD_ERR_FORMAT, "truncated_seq.txt:1: byte 4"},
    {"short_row.tsv", "a\tb\tc\nd\te\n", 0, 2, NULL, LD_ERR_FORMAT, "short_row.tsv:2: the row has 2 column(s); column 2"},
    {"no_column.tsv", "a\tb\n", 0, 5, NULL, LD_ERR_FORMAT, "no_column.tsv:1:"},
    {"not_json.jsonl", "{\"text\":\"a\"}\n{oops}\n", 0, -1, NULL, LD_ERR_FORMAT, "not_json.jsonl:2: byte"},
    {"trailing.jsonl", "{\"text\":\"a\"} x\n", 0, -1, NULL, LD_ERR_FORMAT, "trailing.jsonl:1: byte 14 of the line: text after"},
    {"array.jsonl", "[1,2]\n", 0, -1, NULL, LD_ERR_FORMAT, "array.jsonl:1: not a JSON object"},
    {"no_field.jsonl", "{\"body\":\"a\"}\n", 0, -1, NULL, LD_ERR_FORMAT, "no_field.jsonl:1: no string field \"text\""},
    {"number_field.jsonl", "{\"text\":5}\n", 0, -1, NULL, LD_ERR_FORMAT, "number_field.jsonl:1: no string field"},
    {"lone_surrogate.jsonl", "{\"text\":\"a\\ud800b\"}\n", 0, -1, NULL, LD_ERR_FORMAT, "lone_surrogate.jsonl:1:"},
    {"seq_first.fasta", "MKV\n>h\nAA\n", 0, -1, NULL, LD_ERR_FORMAT, "seq_first.fasta:1: sequence data before"},
    {"no_seq.fasta", ">h1\n>h2\nAA\n", 0, -1, NULL, LD_ERR_FORMAT, "no_seq.fasta:1: FASTA record without a sequence"},
    {"bad_utf8.fasta", ">h\nMK\xfe\n", 0, -1, NULL, LD_ERR_FORMAT, "bad_utf8.fasta:2: byte 3"},
    {"noext.xyz", "abc\n", 0, -1, NULL, LD_ERR_INVALID_ARG, "noext.xyz: cannot tell the corpus format"},
    {"nul.txt", "a\0b\n", 4, -1, NULL, LD_OK, NULL}, /* NUL is valid UTF-8: passed through */
};

TEST(bad_corpora) {
    ld_ctx *ctx = dt_ctx();
    for (size_t i = 0; i < sizeof corpus_cases / sizeof corpus_cases[0]; i++) {
        const corpus_case *k = &corpus_cases[i];
        const char *path = dt_write(k->name, k->content, k->len ? k->len : strlen(k->content));
        ld_corpus_params p = ld_corpus_default_params();
        p.tsv_column = k->tsv_column;
        if (k->field) p.jsonl_field = k->field;
        char out[256];
        int n;
        ld_status st = dt_read_all(ctx, path, &p, out, sizeof out, &n);
        CHECK_MSG(st == k->expect, "%s: got %s (%s), expected %s", k->name, ld_status_name(st), ld_ctx_error(ctx),
                  ld_status_name(k->expect));
        if (k->msg) CHECK_MSG(strstr(ld_ctx_error(ctx), k->msg) != NULL, "%s: message \"%s\" lacks \"%s\"", k->name,
                              ld_ctx_error(ctx), k->msg);
    }
    ld_corpus *c;
    CHECK_STATUS(ctx, ld_corpus_open(ctx, dt_path("missing.txt"), NULL, &c), LD_ERR_NOT_FOUND, "missing.txt");
    ld_ctx_free(ctx);
}

/* Protein FASTA: each record mapped (lowercase, J, a final stop) or rejected with
 * file:line:column. */
TEST(protein_fasta_maps_or_rejects_with_line_and_column) {
    ld_ctx *ctx = dt_ctx();
    static const struct {
        const char *name, *content;
        ld_status expect;
        const char *out_or_msg; /* the documents joined by '|', or a substring of the error */
    } cases[] = {
        {"lower.fasta", ">a\nmkv\nLLj\n>b\nAC*\n", LD_OK, "MKVLLX|AC"},
        {"stop_own_line.fasta", ">a\nMKV\n*\n", LD_OK, "MKV"},
        {"crlf.fasta", ">a\r\nMK V\r\n", LD_OK, "MKV"},
        {"long_line.fasta", NULL, LD_OK, NULL}, /* one 200,000-residue line: no line limit */
        {"inner_stop.fasta", ">a\nMK*\nVV\n", LD_ERR_FORMAT, "inner_stop.fasta:2:3: a stop '*' inside the sequence"},
        {"gap.fasta", ">a\nMK\nA-C\n", LD_ERR_FORMAT, "gap.fasta:3:2: '-' is not an amino-acid letter (an alignment gap"},
        {"digit.fasta", ">a\nMK1\n", LD_ERR_FORMAT, "digit.fasta:2:3: '1' is not an amino-acid letter"},
        {"utf8.fasta", ">a\nM\xc3\xa9\n", LD_ERR_FORMAT, "utf8.fasta:2:2: byte 0xc3"},
        {"only_stop.fasta", ">a\n*\n>b\nM\n", LD_ERR_FORMAT, "only_stop.fasta:1: FASTA record without a sequence"},
        {"empty_record.fasta", ">a\n>b\nM\n", LD_ERR_FORMAT, "empty_record.fasta:1: FASTA record without"},
    };
    static char big[200016];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *content = cases[i].content;
        if (!content) {
            memcpy(big, ">x\n", 3);
            for (int j = 0; j < 200000; j++) big[3 + j] = "acdefghiklmnpqrstvwy"[j % 20];
            memcpy(big + 200003, "\n", 2);
            content = big;
        }
        const char *path = dt_write(cases[i].name, content, strlen(content));
        ld_corpus_params p = ld_corpus_default_params();
        p.protein = true;
        static char out[200100];
        int n;
        ld_status st = dt_read_all(ctx, path, &p, out, sizeof out, &n);
        CHECK_MSG(st == cases[i].expect, "%s: got %s (%s)", cases[i].name, ld_status_name(st), ld_ctx_error(ctx));
        if (st == LD_OK && cases[i].out_or_msg)
            CHECK_MSG(!strcmp(out, cases[i].out_or_msg), "%s: read \"%s\", expected \"%s\"", cases[i].name, out,
                      cases[i].out_or_msg);
        if (st == LD_OK && !cases[i].content) CHECK(strlen(out) == 200000 && out[0] == 'A' && out[19] == 'Y');
        if (st != LD_OK)
            CHECK_MSG(strstr(ld_ctx_error(ctx), cases[i].out_or_msg) != NULL, "%s: message \"%s\" lacks \"%s\"",
                      cases[i].name, ld_ctx_error(ctx), cases[i].out_or_msg);
    }
    ld_ctx_free(ctx);
}

/* A valid shard in memory, to corrupt. */
static uint8_t *good_shard(ld_ctx *ctx, size_t *n, uint64_t hash) {
    const char *path = dt_path("good.bin");
    dt_make_shard(ctx, path, 0, 10, 20, 1000, hash);
    FILE *f = fopen(path, "rb");
    uint8_t *b = malloc(1 << 16);
    *n = fread(b, 1, 1 << 16, f);
    fclose(f);
    return b;
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void fix_header_checksum(uint8_t *b) {
    put64(b + 56, ld_hash64(b, 56));
}

TEST(bad_shards) {
    ld_ctx *ctx = dt_ctx();
    size_t n;
    uint8_t *good = good_shard(ctx, &n, 42);
    uint8_t *b = malloc(n);
    ld_shard *s = NULL;
#define SHARD_CASE(mutate, len, expect, msg)                                                   \
    do {                                                                                       \
        memcpy(b, good, n);                                                                    \
        mutate;                                                                                \
        CHECK_STATUS(ctx, ld_shard_open_memory(ctx, "x.bin", b, (len), NULL, &s), expect, msg); \
        ld_shard_close(s);                                                                     \
        s = NULL;                                                                              \
    } while (0)
    SHARD_CASE((void)0, n, LD_OK, "");
    SHARD_CASE((void)0, 10, LD_ERR_FORMAT, "x.bin: 10 bytes is shorter");
    SHARD_CASE(b[0] = 'X', n, LD_ERR_FORMAT, "x.bin: byte 0: bad magic");
    SHARD_CASE(b[20] ^= 1, n, LD_ERR_CHECKSUM, "x.bin: byte 56: header checksum");
    SHARD_CASE(b[100] ^= 1, n, LD_ERR_CHECKSUM, "x.bin: byte 48: token data checksum");
    SHARD_CASE(b[n - 3] ^= 1, n, LD_ERR_CHECKSUM, "token data checksum");
    SHARD_CASE((void)0, n - 8, LD_ERR_FORMAT, "(truncated?)");
    SHARD_CASE((b[8] = 9, fix_header_checksum(b)), n, LD_ERR_UNSUPPORTED, "byte 8: shard version 9");
    SHARD_CASE((b[12] = 3, fix_header_checksum(b)), n, LD_ERR_FORMAT, "byte 12: token width 3");
    SHARD_CASE((put64(b + 40, 70000), fix_header_checksum(b)), n, LD_ERR_FORMAT, "byte 40: vocabulary size 70000");
    SHARD_CASE((put64(b + 16, UINT64_MAX / 2), fix_header_checksum(b)), n, LD_ERR_FORMAT, "overflow");
    SHARD_CASE((put64(b + 24, UINT64_MAX), fix_header_checksum(b)), n, LD_ERR_FORMAT, "overflow");
    /* a forged checksum over out-of-vocabulary tokens: still refused */
    SHARD_CASE((put64(b + 40, 5), fix_header_checksum(b)), n, LD_ERR_FORMAT, ">= vocabulary size 5");
    /* offsets out of order with a valid checksum */
    {
        memcpy(b, good, n);
        size_t off0 = n - 8 * 11; /* 10 docs -> 11 offsets at the end */
        put64(b + off0 + 8 * 3, 1);
        put64(b + 48, ld_hash64(b + 64, n - 64));
        fix_header_checksum(b);
        CHECK_STATUS(ctx, ld_shard_open_memory(ctx, "x.bin", b, n, NULL, &s), LD_ERR_FORMAT, "document offset 3");
        ld_shard_close(s);
        s = NULL;
    }
    free(b);
    free(good);

    /* 4-byte ids with the top bit set are not negative ids (a fuzzer find) */
    {
        dt_make_shard(ctx, dt_path("wide.bin"), 0, 3, 5, 70000, 1);
        FILE *f = fopen(dt_path("wide.bin"), "rb");
        uint8_t w[4096];
        size_t wn = fread(w, 1, sizeof w, f);
        fclose(f);
        w[64] = 0xf0, w[65] = 0xff, w[66] = 0xff, w[67] = 0xff;
        put64(w + 48, ld_hash64(w + 64, wn - 64));
        fix_header_checksum(w);
        CHECK_STATUS(ctx, ld_shard_open_memory(ctx, "wide.bin", w, wn, NULL, &s), LD_ERR_FORMAT,
                     "token 0 = 4294967280 >= vocabulary size 70000");
        ld_shard_close(s);
        s = NULL;
    }

    /* a foreign tokenizer hash across a sampler's shards */
    dt_make_shard(ctx, dt_path("mix-00000.bin"), 0, 10, 20, 1000, 1);
    dt_make_shard(ctx, dt_path("mix-00001.bin"), 0, 10, 20, 1000, 2);
    ld_batch_sampler *sm;
    CHECK_STATUS(ctx, ld_batch_sampler_open(ctx, dt_path("mix"), NULL, NULL, &sm), LD_ERR_MISMATCH,
                 "mix-00001.bin: tokenizer hash 0000000000000002 differs");
    CHECK_STATUS(ctx, ld_batch_sampler_open(ctx, dt_path("nothing"), NULL, NULL, &sm), LD_ERR_NOT_FOUND, "no shard files");
    CHECK_STATUS(ctx, ld_shard_open(ctx, dt_path("nope.bin"), NULL, &s), LD_ERR_NOT_FOUND, "nope.bin");
    /* a shard that is too short for a row */
    dt_make_shard(ctx, dt_path("tiny-00000.bin"), 0, 1, 20, 1000, 1);
    CHECK_STATUS(ctx, ld_batch_sampler_open(ctx, dt_path("tiny"), NULL, NULL, &sm), LD_OK, "");
    if (sm) {
        int32_t buf[2 * 101];
        CHECK_STATUS(ctx, ld_batch_sampler_next(sm, buf, 2, 100), LD_ERR_LIMIT, "fewer than a row");
        ld_batch_sampler_free(sm);
    }
    ld_sampler_params sp = ld_sampler_default_params();
    sp.rank = 3, sp.world = 2;
    CHECK_STATUS(ctx, ld_batch_sampler_open(ctx, dt_path("tiny"), NULL, &sp, &sm), LD_ERR_INVALID_ARG, "rank 3");
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

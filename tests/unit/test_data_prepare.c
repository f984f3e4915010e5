/* tests/unit/test_data_prepare.c — ld_data_prepare over a synthetic byte encoder (id = byte,
 * EOS = 256): dedup, the content-hash split, shard rotation, thread-count independence, and
 * a corpus round trip (the shards decode back to the unique documents). */
#include "data_test_util.h"

static ld_status byte_encode(void *user, const char *text, size_t len, int32_t *ids, size_t cap, size_t *n_ids) {
    (void)user;
    *n_ids = len;
    if (len > cap) return LD_ERR_LIMIT;
    for (size_t i = 0; i < len; i++) ids[i] = (uint8_t)text[i];
    return LD_OK;
}
/* needs more ids than bytes (tests the LD_ERR_LIMIT retry) */
static ld_status double_encode(void *user, const char *text, size_t len, int32_t *ids, size_t cap, size_t *n_ids) {
    (void)user;
    *n_ids = 2 * len + 20;
    if (*n_ids > cap) return LD_ERR_LIMIT;
    for (size_t i = 0; i < *n_ids; i++) ids[i] = i < 2 * len ? (uint8_t)text[i / 2] : 7;
    return LD_OK;
}

static const ld_data_encoder byte_enc = {byte_encode, NULL, 257, 0x1234, 256};

static char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

TEST(prepare_dedup_split_round_trip) {
    ld_ctx *ctx = dt_ctx();
    /* 300 documents, every 3rd duplicated later, over two files */
    char a[20000] = "", b[20000] = "";
    for (int i = 0; i < 200; i++) {
        char line[64];
        snprintf(line, sizeof line, "id%d\tdocument number %d with text\n", i, i);
        strcat(a, line);
    }
    for (int i = 200; i < 300; i++) {
        char line[64];
        snprintf(line, sizeof line, "id%d\tdocument number %d with text\n", i, i);
        strcat(b, line);
        if (i % 2 == 0) { /* repeat an earlier one */
            snprintf(line, sizeof line, "dup\tdocument number %d with text\n", i - 200);
            strcat(b, line);
        }
    }
    char pa[512], pb[512];
    snprintf(pa, sizeof pa, "%s", DT_WRITE_STR("pa.tsv", a));
    snprintf(pb, sizeof pb, "%s", DT_WRITE_STR("pb.tsv", b));
    const char *in[2] = {pa, pb};
    ld_prepare_params p = ld_prepare_default_params();
    p.val_fraction = 0.2;
    p.shard_tokens = 2000; /* several shards */
    ld_prepare_stats st;
    CHECK_STATUS(ctx, ld_data_prepare_encoder(ctx, &byte_enc, in, 2, dt_path("out1"), &p, &st), LD_OK, "");
    CHECK(st.docs == 350 && st.duplicates == 50);
    CHECK(st.train_docs + st.val_docs == 300);
    CHECK(st.val_docs > 30 && st.val_docs < 90);
    CHECK(st.n_train_shards > 2);
    CHECK(st.train_tokens + st.val_tokens == st.bytes + 300); /* + EOS per document */
    /* read every document back: each unique text exactly once, each in the split its hash says */
    int found[300] = {0};
    for (int split = 0; split < 2; split++) {
        int n_sh = split ? st.n_val_shards : st.n_train_shards;
        for (int k = 0; k < n_sh; k++) {
            char name[64];
            snprintf(name, sizeof name, "out1/%s-%05d.bin", split ? "val" : "train", k);
            ld_shard *s;
            CHECK_STATUS(ctx, ld_shard_open(ctx, dt_path(name), NULL, &s), LD_OK, "");
            if (!s) continue;
            CHECK(ld_shard_tokenizer_hash(s) == 0x1234);
            for (int64_t d = 0; d < ld_shard_docs(s); d++) {
                int64_t b0 = ld_shard_doc_start(s, d), e0 = ld_shard_doc_start(s, d + 1);
                char text[128];
                int n = 0;
                for (int64_t i = b0; i < e0 - 1 && n < 127; i++) text[n++] = (char)ld_shard_token(s, i);
                text[n] = 0;
                CHECK(ld_shard_token(s, e0 - 1) == 256);
                int num = -1;
                if (sscanf(text, "document number %d", &num) == 1 && num >= 0 && num < 300) found[num]++;
                ld_hash128 h = ld_hash128_of(text, (size_t)n);
                CHECK(((double)(h.lo >> 11) * 0x1.0p-53 < 0.2) == (split == 1));
            }
            ld_shard_close(s);
        }
    }
    bool once = true;
    for (int i = 0; i < 300; i++) once &= found[i] == 1;
    CHECK(once);

    /* same output with one thread and with dedup off the duplicates stay */
    p.n_threads = 1;
    CHECK_STATUS(ctx, ld_data_prepare_encoder(ctx, &byte_enc, in, 2, dt_path("out2"), &p, &st), LD_OK, "");
    for (int k = 0; k < st.n_train_shards; k++) {
        char n1[64], n2[64];
        snprintf(n1, sizeof n1, "out1/train-%05d.bin", k);
        snprintf(n2, sizeof n2, "out2/train-%05d.bin", k);
        size_t l1 = 0, l2 = 0;
        char *x = slurp(dt_path(n1), &l1), *y = slurp(dt_path(n2), &l2);
        CHECK_MSG(x && y && l1 == l2 && !memcmp(x, y, l1), "shard %d differs between 2 threads and 1", k);
        free(x);
        free(y);
    }
    p.dedup = false;
    CHECK_STATUS(ctx, ld_data_prepare_encoder(ctx, &byte_enc, in, 2, dt_path("out3"), &p, &st), LD_OK, "");
    /* rerun into out1 with one big shard: the earlier run's extra shards are removed */
    p.shard_tokens = 1000000;
    CHECK_STATUS(ctx, ld_data_prepare_encoder(ctx, &byte_enc, in, 2, dt_path("out1"), &p, &st), LD_OK, "");
    CHECK(st.n_train_shards == 1);
    CHECK(access(dt_path("out1/train-00000.bin"), F_OK) == 0 && access(dt_path("out1/train-00001.bin"), F_OK) != 0);
    CHECK(st.duplicates == 0 && st.train_docs + st.val_docs == 350);
    ld_ctx_free(ctx);
}

TEST(prepare_encoder_needing_more_room) {
    ld_ctx *ctx = dt_ctx();
    const char *in[1] = {DT_WRITE_STR("m.txt", "ab\ncde\n")};
    ld_data_encoder enc = {double_encode, NULL, 300, 1, -1};
    ld_prepare_params p = ld_prepare_default_params();
    ld_prepare_stats st;
    CHECK_STATUS(ctx, ld_data_prepare_encoder(ctx, &enc, in, 1, dt_path("outm"), &p, &st), LD_OK, "");
    CHECK(st.train_tokens == (4 + 20) + (6 + 20)); /* no EOS: the encoder has none */
    ld_ctx_free(ctx);
}

TEST(prepare_shared_zh_corpus) {
    const char *dir = getenv("LD_DATA_DIR");
    CHECK_MSG(dir != NULL, "LD_DATA_DIR is not set (ctest sets it to ../shared/data)");
    if (!dir) return;
    ld_ctx *ctx = dt_ctx();
    char path[1024];
    snprintf(path, sizeof path, "%s/zh_pretrain/fortunes_zh.tsv", dir);
    const char *in[1] = {path};
    ld_prepare_params p = ld_prepare_default_params();
    p.val_fraction = 0.05;
    p.corpus.nfkc = true;
    ld_prepare_stats st;
    double t0 = ld_time_now();
    CHECK_STATUS(ctx, ld_data_prepare_encoder(ctx, &byte_enc, in, 1, dt_path("zh"), &p, &st), LD_OK, "");
    double dt = ld_time_now() - t0;
    fprintf(stderr, "  fortunes_zh.tsv: %lld docs, %lld dups, %.1f MB/s with the byte encoder\n", (long long)st.docs,
            (long long)st.duplicates, (double)st.bytes / dt / 1e6);
    CHECK(st.docs > 1000 && st.val_docs > 0);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

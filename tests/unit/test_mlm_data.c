/* tests/unit/test_mlm_data.c — masked-LM batches from FASTA: row layout, masking shares
 * (15 %, of which 80 / 10 / 10), length bucketing, crops, determinism, exact resume from a
 * saved cursor, eval passes that repeat, and bad input naming file:line:column. Also the ESM
 * vocabulary the protein model uses. */
#include <unistd.h>

#include "ld_test.h"

static char dir[64];

static const char *write_file(const char *name, const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
    return path;
}

/* n records of lengths 5 + (7 i) % 40 of pseudo-random residues */
static const char *make_fasta(int n) {
    static char text[1 << 16];
    size_t o = 0;
    ld_rng r = ld_rng_init(3);
    for (int i = 0; i < n; i++) {
        o += (size_t)snprintf(text + o, sizeof text - o, ">sp|P%05d|X test\n", i);
        int len = 5 + (7 * i) % 40;
        for (int j = 0; j < len; j++) {
            text[o++] = "ACDEFGHIKLMNPQRSTVWY"[ld_rng_below(&r, 20)];
            if (j % 60 == 59) text[o++] = '\n';
        }
        text[o++] = '\n';
    }
    text[o] = 0;
    return write_file("p.fasta", text);
}

TEST(esm_vocabulary) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = NULL;
    CHECK(ld_tokenizer_new_esm(ctx, &tok) == LD_OK);
    CHECK(ld_tokenizer_vocab_size(tok) == 33);
    int32_t ids[8];
    size_t n = 0;
    CHECK(ld_tokenizer_encode(tok, "MKLAGX*", 7, 0, ids, 8, &n) == LD_OK && n == 7);
    int32_t want[] = {20, 15, 4, 5, 6, 24, 3}; /* '*' is unknown */
    CHECK(memcmp(ids, want, sizeof want) == 0);
    ld_mlm_specials sp;
    CHECK(ld_mlm_specials_of(ctx, tok, &sp) == LD_OK);
    CHECK(sp.cls == 0 && sp.pad == 1 && sp.sep == 2 && sp.unk == 3 && sp.mask == 32);
    CHECK(ld_tokenizer_bos_id(tok) == 0 && ld_tokenizer_eos_id(tok) == 2);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

TEST(rows_masks_buckets_and_resume) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = NULL;
    ld_tokenizer_new_esm(ctx, &tok);
    const char *path = make_fasta(200);
    ld_mlm_params p = ld_mlm_default_params();
    p.corpus.protein = true, p.bucket = 4, p.seed = 11;
    enum { B = 4, T = 32 };
    ld_mlm_source *s = NULL;
    CHECK(ld_mlm_source_open(ctx, &path, 1, tok, T, &p, &s) == LD_OK);
    if (!s) return;
    CHECK(ld_mlm_source_docs(s) == 200);
    int32_t ids[B * T], tg[B * T], len[B];
    int64_t Tu, predicted = 0, maskid = 0, same = 0, real = 0, padded = 0, slots = 0;
    for (int it = 0; it < 100; it++) {
        CHECK(ld_mlm_source_next(s, B, ids, tg, len, &Tu) == LD_OK);
        CHECK(Tu >= 3 && Tu <= T);
        int maxlen = 0;
        for (int r = 0; r < B; r++) {
            const int32_t *row = ids + r * Tu, *t = tg + r * Tu;
            if (len[r] > maxlen) maxlen = len[r];
            CHECK(row[0] == 0 && t[0] == -100);        /* <cls>, never predicted */
            CHECK(row[len[r] - 1] == 2 && t[len[r] - 1] == -100); /* <eos> */
            int rowpred = 0;
            for (int i = 1; i < len[r] - 1; i++) {
                real++;
                if (t[i] == -100) continue;
                rowpred++, predicted++;
                CHECK(t[i] >= 4 && t[i] <= 23);        /* a standard residue */
                maskid += row[i] == 32, same += row[i] == t[i];
            }
            CHECK(rowpred >= 1);
            for (int i = len[r]; i < Tu; i++) CHECK(row[i] == 1 && t[i] == -100);
            padded += Tu - len[r], slots += Tu;
        }
        CHECK(Tu == maxlen); /* padded to the longest row only */
    }
    double share = (double)predicted / (double)real, m = (double)maskid / (double)predicted;
    printf("  predicted %.3f of residues, %.3f of those shown as <mask>, %.3f unchanged; padding %.3f of slots\n",
           share, m, (double)same / (double)predicted, (double)padded / (double)slots);
    CHECK(share > 0.13 && share < 0.19);
    CHECK(m > 0.74 && m < 0.86);
    CHECK((double)padded / (double)slots < 0.2); /* bucketing: lengths 7..46 would pad ~40 % unsorted */

    /* resume: a restored source continues with the same batches */
    char *cur = NULL;
    CHECK(ld_mlm_source_save(s, &cur) == LD_OK);
    int32_t a[3][B * T], at[3][B * T], al[3][B];
    int64_t au[3];
    for (int i = 0; i < 3; i++) ld_mlm_source_next(s, B, a[i], at[i], al[i], &au[i]);
    ld_mlm_source *s2 = NULL;
    CHECK(ld_mlm_source_open(ctx, &path, 1, tok, T, &p, &s2) == LD_OK);
    CHECK(s2 && ld_mlm_source_restore(s2, cur) == LD_OK);
    for (int i = 0; s2 && i < 3; i++) {
        CHECK(ld_mlm_source_next(s2, B, ids, tg, len, &Tu) == LD_OK);
        CHECK(Tu == au[i] && !memcmp(ids, a[i], (size_t)(B * Tu) * 4) && !memcmp(tg, at[i], (size_t)(B * Tu) * 4) &&
              !memcmp(len, al[i], sizeof len));
    }
    free(cur);
    CHECK_STATUS(ctx, ld_mlm_source_restore(s, "{\"epoch\":1}"), LD_ERR_FORMAT, "group");
    ld_mlm_source_free(s2);
    ld_mlm_source_free(s);

    /* eval: every pass over the data gives the same batches; crops start at the beginning */
    p.eval = true;
    CHECK(ld_mlm_source_open(ctx, &path, 1, tok, 16, &p, &s) == LD_OK);
    int nb = (200 + B - 1) / B;
    static int32_t first[64][B * 16];
    for (int pass = 0; s && pass < 2; pass++)
        for (int i = 0; i < nb; i++) {
            CHECK(ld_mlm_source_next(s, B, ids, tg, len, &Tu) == LD_OK);
            if (pass == 0) memcpy(first[i], ids, (size_t)(B * Tu) * 4);
            else CHECK(!memcmp(first[i], ids, (size_t)(B * Tu) * 4));
        }
    ld_mlm_source_free(s);
    ld_tokenizer_free(tok);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(bad_input_names_file_line_and_column) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = NULL;
    ld_tokenizer_new_esm(ctx, &tok);
    ld_mlm_params p = ld_mlm_default_params();
    p.corpus.protein = true;
    ld_mlm_source *s = NULL;
    const char *gap = write_file("gap.fasta", ">a\nMKV\nMK-V\n");
    CHECK_STATUS(ctx, ld_mlm_source_open(ctx, &gap, 1, tok, 16, &p, &s), LD_ERR_FORMAT, "gap.fasta:3:3: '-'");
    const char *empty = write_file("empty.fasta", ">a\n\n>b\nMK\n");
    CHECK_STATUS(ctx, ld_mlm_source_open(ctx, &empty, 1, tok, 16, &p, &s), LD_ERR_FORMAT, "empty.fasta:1: FASTA record");
    const char *ok = write_file("ok.fasta", ">a\nMKV\n");
    CHECK_STATUS(ctx, ld_mlm_source_open(ctx, &ok, 1, tok, 2, &p, &s), LD_ERR_INVALID_ARG, "rows of 2 tokens");
    p.mask_prob = 0;
    CHECK_STATUS(ctx, ld_mlm_source_open(ctx, &ok, 1, tok, 16, &p, &s), LD_ERR_INVALID_ARG, "mask_prob");
    p.mask_prob = 0.15f;
    ld_tokenizer *amino = NULL;
    ld_tokenizer_new_amino(ctx, &amino); /* has [MASK]: fine */
    CHECK(ld_mlm_source_open(ctx, &ok, 1, amino, 16, &p, &s) == LD_OK);
    ld_mlm_source_free(s);
    ld_tokenizer_free(amino);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

static void setup(void) __attribute__((constructor));
static void setup(void) {
    snprintf(dir, sizeof dir, "/tmp/ld_test_mlm_%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd)) abort();
}
static void cleanup(void) __attribute__((destructor));
static void cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return;
}

LD_TEST_MAIN()

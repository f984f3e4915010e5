/* tests/unit/test_data_pipeline.c — the data layer with the real tokenizer: train a small
 * byte-level BPE on a corpus (through ld_corpus_text_source), prepare shards with it, check
 * that the shards decode back to the documents, that a foreign tokenizer is refused, and
 * that the sampler serves batches from them. Uses $LD_DATA_DIR/zh_pretrain. */
#include <sys/wait.h>

#include "data_test_util.h"

static ld_tokenizer *train_tok(ld_ctx *ctx, const char *path, int64_t vocab) {
    ld_corpus *c;
    ld_corpus_params cp = ld_corpus_default_params();
    if (ld_corpus_open(ctx, path, &cp, &c) != LD_OK) return NULL;
    ld_text_source src = ld_corpus_text_source(c);
    ld_bpe_train_params bp = ld_bpe_train_default_params();
    const char *specials[] = {"<|endoftext|>"};
    bp.vocab_size = vocab;
    bp.special_tokens = specials;
    bp.n_special_tokens = 1;
    ld_tokenizer *tok = NULL;
    ld_status st = ld_bpe_train(ctx, &bp, &src, &tok);
    if (st != LD_OK) fprintf(stderr, "  bpe train: %s\n", ld_ctx_error(ctx));
    ld_corpus_close(c);
    return tok;
}

TEST(pipeline_bpe_prepare_sample) {
    const char *dir = getenv("LD_DATA_DIR");
    CHECK_MSG(dir != NULL, "LD_DATA_DIR is not set (ctest sets it to ../shared/data)");
    if (!dir) return;
    ld_ctx *ctx = dt_ctx();
    char path[1024];
    snprintf(path, sizeof path, "%s/zh_pretrain/fortunes_zh.tsv", dir);
    ld_tokenizer *tok = train_tok(ctx, path, 600);
    CHECK(tok != NULL);
    if (!tok) return;
    /* the one special token is the EOS the shards put after each document */
    const char *eos_text = NULL;
    size_t eos_len = 0;
    CHECK(ld_tokenizer_eos_id(tok) >= 0 && ld_tokenizer_token_bytes(tok, ld_tokenizer_eos_id(tok), &eos_text, &eos_len) == LD_OK &&
          eos_len == 13 && !memcmp(eos_text, "<|endoftext|>", 13));
    const char *in[1] = {path};
    ld_prepare_params p = ld_prepare_default_params();
    p.val_fraction = 0.05;
    p.shard_tokens = 200000;
    ld_prepare_stats st;
    char out[512];
    snprintf(out, sizeof out, "%s", dt_path("zhbpe"));
    double t0 = ld_time_now();
    CHECK_STATUS(ctx, ld_data_prepare(ctx, tok, in, 1, out, &p, &st), LD_OK, "");
    double el = ld_time_now() - t0;
    fprintf(stderr, "  fortunes_zh.tsv, BPE 600: %lld docs (%lld dups), %lld tokens, %.2f bytes/token, %.1f MB/s\n",
            (long long)st.docs, (long long)st.duplicates, (long long)(st.train_tokens + st.val_tokens),
            (double)st.bytes / (double)(st.train_tokens + st.val_tokens), (double)st.bytes / el / 1e6);
    CHECK(st.n_train_shards >= 2 && st.n_val_shards >= 1);
    /* the first train document decodes to the first unique val-or-train document of the file */
    char shard0[600];
    snprintf(shard0, sizeof shard0, "%s/train-00000.bin", out);
    ld_shard *s;
    CHECK_STATUS(ctx, ld_shard_open(ctx, shard0, tok, &s), LD_OK, "");
    if (s) {
        int64_t e = ld_shard_doc_start(s, 1);
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)e);
        ld_shard_read(s, 0, e, ids);
        int32_t eos = ld_tokenizer_eos_id(tok) >= 0 ? ld_tokenizer_eos_id(tok) : ld_tokenizer_bos_id(tok);
        size_t nd = (size_t)e - (eos >= 0 ? 1 : 0);
        if (eos >= 0) CHECK(ids[e - 1] == eos);
        char text[65536];
        size_t nb = 0;
        CHECK_STATUS(ctx, ld_tokenizer_decode(tok, ids, nd, false, text, sizeof text - 1, &nb), LD_OK, "");
        /* find it in the corpus */
        ld_corpus *c;
        ld_corpus_params cp = ld_corpus_default_params();
        CHECK_STATUS(ctx, ld_corpus_open(ctx, path, &cp, &c), LD_OK, "");
        const char *d;
        size_t n;
        bool found = false;
        while (c && ld_corpus_next(c, &d, &n) == LD_OK)
            if (n == nb && !memcmp(d, text, n)) {
                found = true;
                break;
            }
        CHECK_MSG(found, "decoded document not in the corpus");
        ld_corpus_close(c);
        free(ids);
        ld_shard_close(s);
    }
    /* another tokenizer is refused */
    snprintf(path, sizeof path, "%s/zh_pretrain/modern_debian_docs.tsv", dir);
    ld_tokenizer *other = train_tok(ctx, path, 300);
    if (other) {
        CHECK_STATUS(ctx, ld_shard_open(ctx, shard0, other, &s), LD_ERR_MISMATCH, "tokenized with tokenizer");
        ld_batch_sampler *bs;
        char pat[600];
        snprintf(pat, sizeof pat, "%s/train", out);
        CHECK_STATUS(ctx, ld_batch_sampler_open(ctx, pat, other, NULL, &bs), LD_ERR_MISMATCH, "train-00000.bin");
        ld_tokenizer_free(other);
    }
    /* the sampler over the train shards */
    ld_batch_sampler *bs;
    char pat[600];
    snprintf(pat, sizeof pat, "%s/train", out);
    CHECK_STATUS(ctx, ld_batch_sampler_open(ctx, pat, tok, NULL, &bs), LD_OK, "");
    if (bs) {
        CHECK(ld_batch_sampler_tokens(bs) == st.train_tokens);
        int32_t batch[4 * 65];
        CHECK_STATUS(ctx, ld_batch_sampler_next(bs, batch, 4, 64), LD_OK, "");
        bool in_vocab = true;
        for (int i = 0; i < 4 * 65; i++) in_vocab &= batch[i] >= 0 && batch[i] < ld_tokenizer_vocab_size(tok);
        CHECK(in_vocab);
        ld_batch_sampler_free(bs);
    }
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

/* The CLI ($LD_BIN): prepare + inspect, and a bad TSV column reported with file:line. */
static int run_cmd(const char *cmd, char *out, size_t cap) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int rc = pclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(pipeline_cli) {
    const char *bin = getenv("LD_BIN"), *dir = getenv("LD_DATA_DIR");
    CHECK_MSG(bin && dir, "LD_BIN / LD_DATA_DIR not set (ctest sets them)");
    if (!bin || !dir) return;
    ld_ctx *ctx = dt_ctx();
    char path[1024];
    snprintf(path, sizeof path, "%s/zh_pretrain/fortunes_zh.tsv", dir);
    ld_tokenizer *tok = train_tok(ctx, path, 400);
    if (!tok) return;
    char tj[512], out[512];
    snprintf(tj, sizeof tj, "%s", dt_path("tok.json"));
    snprintf(out, sizeof out, "%s", dt_path("cli_out"));
    CHECK_STATUS(ctx, ld_tokenizer_save(tok, tj), LD_OK, "");
    char cmd[4096], res[8192];
    snprintf(cmd, sizeof cmd, "'%s' data prepare '%s' --tokenizer '%s' -o '%s' --val-fraction 0.1 --threads 2 --nfkc 2>&1",
             bin, path, tj, out);
    int rc = run_cmd(cmd, res, sizeof res);
    CHECK_MSG(rc == 0 && strstr(res, "duplicates dropped") && strstr(res, "bytes/token") && strstr(res, "shards"),
              "rc %d: %s", rc, res);
    snprintf(cmd, sizeof cmd, "'%s' data inspect '%s/val-00000.bin' 2>&1", bin, out);
    rc = run_cmd(cmd, res, sizeof res);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)ld_tokenizer_hash(tok));
    CHECK_MSG(rc == 0 && strstr(res, "checksums ok") && strstr(res, hash), "rc %d: %s", rc, res);
    /* a TSV without the column: an error naming file:line, exit status 1 */
    const char *bad = DT_WRITE_STR("cli_bad.tsv", "a\tb\tc\nd\te\n");
    snprintf(cmd, sizeof cmd, "'%s' data prepare '%s' --tokenizer '%s' -o '%s' --column 2 2>&1", bin, bad, tj,
             dt_path("cli_bad_out"));
    rc = run_cmd(cmd, res, sizeof res);
    CHECK_MSG(rc == 1 && strstr(res, "cli_bad.tsv:2: the row has 2 column(s)"), "rc %d: %s", rc, res);
    char partial[600];
    snprintf(partial, sizeof partial, "%s/train-00000.bin", dt_path("cli_bad_out"));
    CHECK(access(partial, F_OK) != 0);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

/* tests/unit/test_tokenizer.c — byte-level BPE: decode(encode(x)) == x for random byte
 * strings (invalid UTF-8 included); special tokens never split (and plain text on request);
 * training is deterministic across thread counts; save/load round trip; a table of broken
 * tokenizer.json files, each with the error it must give. */
#include <fcntl.h>
#include <unistd.h>

#include "ld_test.h"

typedef struct mem_src {
    const char *const *docs;
    int n, at;
} mem_src;
static ld_status mem_next(void *u, const char **doc, size_t *len) {
    mem_src *m = u;
    if (m->at == m->n) return LD_ERR_NOT_FOUND;
    *doc = m->docs[m->at++];
    *len = strlen(*doc);
    return LD_OK;
}

static const char *const corpus[] = {
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。", "The quick brown fox jumps over the lazy dog's back 12345 times.",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "It's what they've said: we'll see, I'd think.",
    "深度学习 deep learning 模型 model 2026 年", "  indented\tand\ttabbed\r\nlines\n\n\n", "emoji 😀👍 café naïve",
};

static ld_tokenizer *train(ld_ctx *ctx, int threads, int64_t vocab) {
    mem_src m = {corpus, (int)(sizeof corpus / sizeof corpus[0]), 0};
    ld_text_source src = {mem_next, &m};
    ld_bpe_train_params p = ld_bpe_train_default_params();
    const char *sp[] = {"<|endoftext|>", "<pad>"};
    p.vocab_size = vocab, p.min_frequency = 1, p.special_tokens = sp, p.n_special_tokens = 2, p.n_threads = threads;
    ld_tokenizer *t = NULL;
    CHECK(ld_bpe_train(ctx, &p, &src, &t) == LD_OK);
    return t;
}

TEST(round_trip_random_bytes) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *t = train(ctx, 2, 400);
    ld_rng r = ld_rng_init(4);
    unsigned char text[600];
    int32_t ids[700];
    char back[700];
    for (int trial = 0; t && trial < 3000; trial++) {
        size_t len = (size_t)ld_rng_below(&r, 600);
        for (size_t i = 0; i < len; i++) {
            uint64_t k = ld_rng_below(&r, 4);
            /* mix random bytes, ASCII and pieces of the corpus */
            text[i] = k == 0 ? (unsigned char)ld_rng_below(&r, 256) : k == 1 ? (unsigned char)(32 + ld_rng_below(&r, 95))
                                                                             : (unsigned char)corpus[0][ld_rng_below(&r, 60)];
        }
        size_t n = 0, nb = 0;
        CHECK(ld_tokenizer_encode(t, (const char *)text, len, LD_ENCODE_SPECIAL_AS_TEXT, ids, 700, &n) == LD_OK);
        CHECK(ld_tokenizer_decode(t, ids, n, false, back, sizeof back, &nb) == LD_OK);
        CHECK_MSG(nb == len && !memcmp(back, text, len), "trial %d: %zu bytes came back as %zu", trial, len, nb);
    }
    ld_tokenizer_free(t);
    ld_ctx_free(ctx);
}

TEST(special_tokens_are_never_split) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *t = train(ctx, 1, 350);
    if (!t) return;
    const char *s = "月光<|endoftext|><pad>x<|endoftext";
    int32_t ids[64];
    size_t n;
    CHECK(ld_tokenizer_encode(t, s, strlen(s), 0, ids, 64, &n) == LD_OK);
    int specials = 0;
    for (size_t i = 0; i < n; i++) specials += ids[i] == 0 || ids[i] == 1;
    CHECK(specials == 2);
    CHECK(ld_tokenizer_eos_id(t) == 0 && ld_tokenizer_pad_id(t) == 1);
    CHECK(ld_tokenizer_token_id(t, "<pad>") == 1);
    CHECK(ld_tokenizer_encode(t, s, strlen(s), LD_ENCODE_SPECIAL_AS_TEXT, ids, 64, &n) == LD_OK);
    for (size_t i = 0; i < n; i++) CHECK(ids[i] > 1);
    size_t need;
    CHECK(ld_tokenizer_encode(t, s, strlen(s), 0, ids, 2, &need) == LD_ERR_LIMIT && need > 2);
    ld_tokenizer_free(t);
    ld_ctx_free(ctx);
}

TEST(training_is_deterministic_and_round_trips_through_json) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *a = train(ctx, 1, 380), *b = train(ctx, 2, 380), *c = NULL;
    CHECK(a && b && ld_tokenizer_hash(a) == ld_tokenizer_hash(b));
    char path[] = "/tmp/liandan-tok-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    CHECK(a && ld_tokenizer_save(a, path) == LD_OK);
    CHECK(ld_tokenizer_load(ctx, path, &c) == LD_OK);
    CHECK(c && ld_tokenizer_hash(c) == ld_tokenizer_hash(a) && ld_tokenizer_vocab_size(c) == 380);
    unlink(path);
    ld_tokenizer_free(a), ld_tokenizer_free(b), ld_tokenizer_free(c);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* A minimal valid tokenizer.json: the 256 byte tokens, one merge, one special. */
static char *minimal_json(const char *merges, const char *extra_vocab, const char *added, const char *pre) {
    static char buf[80000];
    char vocab[32768] = "";
    size_t o = 0;
    /* byte-level spellings of bytes 0..255 */
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        int cp = keep ? b : 256 + n++;
        char sp[8];
        if (cp == '"' || cp == '\\') snprintf(sp, sizeof sp, "\\%c", cp);
        else if (cp < 0x80) snprintf(sp, sizeof sp, "%c", cp);
        else snprintf(sp, sizeof sp, "%c%c", 0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
        o += (size_t)snprintf(vocab + o, sizeof vocab - o, "%s\"%s\":%d", b ? "," : "", sp, b + 1);
    }
    snprintf(buf, sizeof buf,
             "{\"added_tokens\":[%s],\"normalizer\":null,\"pre_tokenizer\":%s,"
             "\"model\":{\"type\":\"BPE\",\"vocab\":{\"<s>\":0,%s%s},\"merges\":[%s]}}",
             added, pre, vocab, extra_vocab, merges);
    return buf;
}

TEST(bad_tokenizer_json_table) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    const char *bl = "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}";
    const char *sp = "{\"id\":0,\"content\":\"<s>\",\"special\":true}";
    ld_tokenizer *t = NULL;
    char *ok = minimal_json("[\"a\",\"b\"]", ",\"ab\":257", sp, bl);
    CHECK_STATUS(ctx, ld_tokenizer_load_memory(ctx, "ok.json", ok, strlen(ok), &t), LD_OK, NULL);
    ld_tokenizer_free(t);
    t = NULL;
    struct { const char *merges, *extra, *added, *pre; ld_status st; const char *msg; } bad[] = {
        {"[\"a\",\"zz\"]", ",\"ab\":257", sp, bl, LD_ERR_FORMAT, "merges[0]: token 'zz' is not in the vocabulary"},
        {"\"a b\",7", ",\"ab\":257", sp, bl, LD_ERR_FORMAT, "merges[1]"},
        {"[\"a\",\"b\"]", ",\"ab\":256", sp, bl, LD_ERR_FORMAT, "id 256 is used twice"},
        {"[\"a\",\"b\"]", ",\"ab\":258", sp, bl, LD_ERR_FORMAT, "no token has id 257"},
        {"[\"a\",\"b\"]", ",\"ab\":300", sp, bl, LD_ERR_FORMAT, "token id 300 is beyond the 259 entries"},
        {"", "", "{\"id\":0.5,\"content\":\"<s>\"}", bl, LD_ERR_FORMAT, "added_tokens: each needs an integer 'id'"},
        {"[\"a\",\"b\"]", ",\"ab\":-1", sp, bl, LD_ERR_FORMAT, "model.vocab['ab']"},
        {"[\"a\",\"c\"]", ",\"ab\":257", sp, bl, LD_ERR_FORMAT, "not in the vocabulary"},
        {"", ",\"ab\":257", "{\"id\":0}", bl, LD_ERR_FORMAT, "added_tokens"},
        {"", "", sp, "{\"type\":\"Whitespace\"}", LD_ERR_UNSUPPORTED, "pre_tokenizer"},
        {"", "", sp, "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"x+\"}},{\"type\":\"ByteLevel\"}]}",
         LD_ERR_UNSUPPORTED, "not one of GPT-2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *js = minimal_json(bad[i].merges, bad[i].extra, bad[i].added, bad[i].pre);
        CHECK_STATUS(ctx, ld_tokenizer_load_memory(ctx, "t.json", js, strlen(js), &t), bad[i].st, bad[i].msg);
        CHECK(t == NULL);
    }
    /* truncated at many points: always an error, never a crash */
    size_t len = strlen(ok);
    char *copy = malloc(len);
    for (size_t cut = 0; cut < len; cut += 97) {
        memcpy(copy, ok, cut);
        CHECK(ld_tokenizer_load_memory(ctx, "cut.json", copy, cut, &t) != LD_OK && t == NULL);
        CHECK(strstr(ld_ctx_error(ctx), "cut.json") != NULL);
    }
    free(copy);
    CHECK_STATUS(ctx, ld_tokenizer_load(ctx, "/nonexistent/tokenizer.json", &t), LD_ERR_NOT_FOUND, "/nonexistent/tokenizer.json");
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(character_vocabularies) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *a = NULL;
    CHECK(ld_tokenizer_new_amino(ctx, &a) == LD_OK);
    if (a) {
        const char *seq = "[CLS]MKTAYIAJ[SEP]";
        int32_t ids[32];
        size_t n;
        CHECK(ld_tokenizer_encode(a, seq, strlen(seq), 0, ids, 32, &n) == LD_OK);
        CHECK(n == 10 && ids[0] == 2 && ids[9] == 3);
        CHECK(ids[8] == 4);                          /* 'J' is not an amino acid: [UNK] */
        CHECK(ids[1] == ld_tokenizer_token_id(a, "M"));
        CHECK(ld_tokenizer_vocab_size(a) == 30 && ld_tokenizer_pad_id(a) == 0);
    }
    char path[] = "/tmp/liandan-vocab-XXXXXX";
    int fd = mkstemp(path);
    const char *vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n的\n月\n光\n##光\nab\n";
    if (fd >= 0) {
        if (write(fd, vocab, strlen(vocab)) < 0) {}
        close(fd);
    }
    ld_tokenizer *v = NULL;
    CHECK(ld_tokenizer_load_vocab_txt(ctx, path, &v) == LD_OK);
    if (v) {
        const char *text = "月光[SEP]星";
        int32_t ids[16];
        size_t n, nb;
        CHECK(ld_tokenizer_encode(v, text, strlen(text), 0, ids, 16, &n) == LD_OK);
        CHECK(n == 4 && ids[0] == 6 && ids[1] == 7 && ids[2] == 3 && ids[3] == 1);
        char back[64];
        CHECK(ld_tokenizer_decode(v, ids, 3, false, back, sizeof back, &nb) == LD_OK && nb == strlen("月光[SEP]"));
    }
    const char *dup = "a\nb\na\n";
    fd = open(path, O_WRONLY | O_TRUNC);
    if (fd >= 0) {
        if (write(fd, dup, strlen(dup)) < 0) {}
        close(fd);
    }
    ld_tokenizer *d = NULL;
    CHECK_STATUS(ctx, ld_tokenizer_load_vocab_txt(ctx, path, &d), LD_ERR_FORMAT, ":3: token 'a' already on line 1");
    unlink(path);
    ld_tokenizer_free(a), ld_tokenizer_free(v);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* An allocator that remembers the most bytes it ever had out. */
typedef struct peak_alloc {
    size_t in_use, peak;
} peak_alloc;
static void *peak_malloc(void *user, size_t size, size_t align) {
    peak_alloc *p = user;
    size_t *b = aligned_alloc(align < 16 ? 16 : align, (size + 64 + align - 1) / align * align);
    if (!b) return NULL;
    b[0] = size;
    p->in_use += size;
    if (p->in_use > p->peak) p->peak = p->in_use;
    return (char *)b + 64;
}
static void peak_free(void *user, void *ptr) {
    if (!ptr) return;
    size_t *b = (size_t *)((char *)ptr - 64);
    ((peak_alloc *)user)->in_use -= b[0];
    free(b);
}

/* Issue 10: a 35 KB tokenizer.json with one id of 16,000,000 allocated 213 MB before its
 * error. The ids are checked against the entries present first. */
TEST(huge_id_is_refused_before_allocating) {
    peak_alloc pa = {0};
    ld_allocator al = {peak_malloc, peak_free, &pa};
    ld_ctx_params cp = ld_ctx_default_params();
    cp.allocator = &al;
    ld_ctx *ctx = NULL;
    ld_ctx_new(&cp, &ctx);
    char extra[40000];
    size_t o = 0;
    for (int i = 0; i < 2600; i++) o += (size_t)snprintf(extra + o, sizeof extra - o, ",\"w%d\":%d", i, 257 + i);
    snprintf(extra + o, sizeof extra - o, ",\"big\":16000000");
    char *js = minimal_json("", extra, "{\"id\":0,\"content\":\"<s>\",\"special\":true}",
                            "{\"type\":\"ByteLevel\",\"use_regex\":true}");
    CHECK(strlen(js) > 30000);
    ld_tokenizer *t = NULL;
    size_t before = pa.peak;
    CHECK_STATUS(ctx, ld_tokenizer_load_memory(ctx, "bomb.json", js, strlen(js), &t), LD_ERR_FORMAT,
                 "token id 16000000 is beyond");
    CHECK_MSG(pa.peak - before < ((size_t)4 << 20), "peak %zu bytes", pa.peak - before);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* Issue 10: merging was quadratic in the length of a pre-token (40,000 x 月 took 41.6 s).
 * 1 MB of one repeated character (one pre-token for letters, a million for invalid bytes)
 * must encode in well under a second, and round-trip. */
TEST(one_megabyte_of_one_character_is_fast) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const char *const runs[] = {"月月月月月月月月月月月月月月月月 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "          ....",
                                       "1111111111111111 !!!!!!!!!!!!!!!!!! 月月月月 aaaa"};
    mem_src m = {runs, 3, 0};
    ld_text_source src = {mem_next, &m};
    ld_bpe_train_params p = ld_bpe_train_default_params();
    p.vocab_size = 300, p.min_frequency = 1, p.n_threads = 1;
    ld_tokenizer *t = NULL;
    CHECK(ld_bpe_train(ctx, &p, &src, &t) == LD_OK);
    const char *chars[] = {"月", "a", " ", "1", "!", "\xff"};
    size_t len = (size_t)1 << 20;
    char *text = malloc(len + 4), *back = malloc(len);
    int32_t *ids = malloc(len * sizeof *ids);
    for (size_t c = 0; t && c < sizeof chars / sizeof chars[0]; c++) {
        size_t cl = strlen(chars[c]), n = 0, nb = 0;
        for (size_t i = 0; i + cl <= len; i += cl) memcpy(text + i, chars[c], cl);
        size_t tl = len / cl * cl;
        double t0 = ld_time_now();
        CHECK(ld_tokenizer_encode(t, text, tl, 0, ids, len, &n) == LD_OK);
        double sec = ld_time_now() - t0;
        CHECK_MSG(sec < 1.0, "1 MB of '%s' took %.2f s", chars[c], sec);
        CHECK(c == 5 || n < tl / 2); /* merged */
        CHECK(ld_tokenizer_decode(t, ids, n, false, back, len, &nb) == LD_OK && nb == tl && !memcmp(back, text, tl));
    }
    free(text), free(back), free(ids);
    ld_tokenizer_free(t);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

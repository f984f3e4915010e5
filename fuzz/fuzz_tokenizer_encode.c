/* fuzz/fuzz_tokenizer_encode.c — encoding arbitrary bytes (invalid UTF-8, specials, huge
 * runs) with each model: a trained byte-level BPE and a SentencePiece BPE with byte fallback
 * (decode(encode(x)) == x for both, batch encoding gives the same ids), and a WordPiece with
 * the BERT normalizer (never crashes). */
#define _GNU_SOURCE /* memmem */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/liandan.h"

static const char *const docs[] = {"the cat's 12 hats", "床前明月光，疑是地上霜。", "  spaces\tand\ttabs\n", "😀 émoji"};
static int at;
static ld_status next(void *u, const char **d, size_t *len) {
    (void)u;
    if (at == 4 * 50) return LD_ERR_NOT_FOUND;
    *d = docs[at++ % 4];
    *len = strlen(*d);
    return LD_OK;
}

static const char spm_json[] =
    "{\"added_tokens\":[{\"id\":0,\"content\":\"<unk>\"},{\"id\":1,\"content\":\"<s>\"},{\"id\":2,\"content\":\"</s>\"}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]},"
    "\"model\":{\"type\":\"BPE\",\"byte_fallback\":true,\"unk_token\":\"<unk>\",\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,"
    "\"\xe2\x96\x81\":3,\"a\":4,\"b\":5,\"\xe2\x96\x81" "a\":6,\"ab\":7,\"\xe6\x9c\x88\":8,\"\xe5\x85\x89\":9,\"\xe6\x9c\x88\xe5\x85\x89\":10%s},"
    "\"merges\":[\"\xe2\x96\x81 a\",\"a b\",\"\xe6\x9c\x88 \xe5\x85\x89\"]}}";
static const char wp_json[] =
    "{\"normalizer\":{\"type\":\"BertNormalizer\"},\"pre_tokenizer\":{\"type\":\"BertPreTokenizer\"},"
    "\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"[UNK]\":0,\"the\":1,\"cat\":2,\"##s\":3,\"\xe6\x9c\x88\":4,\"a\":5,\"##b\":6}}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ld_ctx *ctx;
    static ld_tokenizer *t[3];
    if (!t[0]) {
        ld_ctx_new(NULL, &ctx);
        ld_bpe_train_params p = ld_bpe_train_default_params();
        const char *sp[] = {"<|endoftext|>"};
        p.vocab_size = 400, p.min_frequency = 1, p.special_tokens = sp, p.n_special_tokens = 1, p.n_threads = 1;
        ld_text_source src = {next, NULL};
        if (ld_bpe_train(ctx, &p, &src, &t[0])) abort();
        static char js[16384];
        char bytes[8192];
        size_t o = 0;
        for (int b = 0; b < 256; b++) o += (size_t)snprintf(bytes + o, sizeof bytes - o, ",\"<0x%02X>\":%d", b, 11 + b);
        snprintf(js, sizeof js, spm_json, bytes);
        if (ld_tokenizer_load_memory(ctx, "spm.json", js, strlen(js), &t[1])) abort();
        if (ld_tokenizer_load_memory(ctx, "wp.json", wp_json, strlen(wp_json), &t[2])) abort();
    }
    const ld_tokenizer *tok = t[size % 3];
    unsigned flags = (size & 4) ? LD_ENCODE_SPECIAL_AS_TEXT : 0;
    size_t cap = 4 * size + 8, n = 0, nb = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *back = malloc(4 * size + 64);
    if (ld_tokenizer_encode(tok, (const char *)data, size, flags, ids, cap, &n)) abort();
    /* lossy: WordPiece; SentencePiece on a ▁ (decodes as a space) or after a special (a space is prepended) */
    bool lossless = tok == t[0] || (tok == t[1] && flags && !memmem(data, size, "\xe2\x96\x81", 3));
    if (lossless && (ld_tokenizer_decode(tok, ids, n, false, back, 4 * size + 64, &nb) || nb != size || memcmp(back, data, size)))
        abort();
    const char *texts[1] = {(const char *)data};
    int32_t *bids = NULL;
    size_t *off = NULL;
    if (ld_tokenizer_encode_batch(tok, texts, &size, 1, flags, 1, &bids, &off) || off[1] != n ||
        memcmp(bids, ids, n * sizeof *ids))
        abort();
    ld_free(ctx, bids), ld_free(ctx, off);
    free(ids);
    free(back);
    return 0;
}

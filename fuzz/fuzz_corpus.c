/* fuzz/fuzz_corpus.c — libFuzzer harness: the corpus readers over arbitrary bytes. The first
 * byte picks the format (txt, txt paragraphs, tsv column, jsonl, fasta) and the
 * normalisation options; every document returned must be valid UTF-8. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++, size--;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx) != LD_OK) return 0;
    ld_corpus_params p = ld_corpus_default_params();
    static const ld_corpus_format formats[4] = {LD_CORPUS_TXT, LD_CORPUS_TSV, LD_CORPUS_JSONL, LD_CORPUS_FASTA};
    p.format = formats[sel & 3];
    p.txt_paragraphs = (sel >> 2) & 1;
    p.tsv_column = (int)((sel >> 3) & 3) - 1;
    p.nfkc = (sel >> 5) & 1;
    p.collapse_whitespace = (sel >> 6) & 1;
    ld_corpus *c = NULL;
    if (ld_corpus_open_memory(ctx, "fuzz", (const char *)data, size, &p, &c) == LD_OK) {
        const char *d;
        size_t n;
        int guard = 0;
        while (ld_corpus_next(c, &d, &n) == LD_OK && guard++ < 100000) {
            if (ld_utf8_invalid_at(d, n) != n) abort();
        }
        ld_corpus_close(c);
    }
    ld_ctx_free(ctx);
    return 0;
}

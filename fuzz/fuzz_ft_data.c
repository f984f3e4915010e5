/* fuzz/fuzz_ft_data.c — libFuzzer harness: fine-tuning example files (text, chat and
 * classification; JSONL, TSV and text) over arbitrary bytes. The first byte picks the format
 * and the file kind; every accepted example must be non-empty, its label a known id, and a
 * batch source over it must fill batches. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/ft_data.h"

static const char *const docs[] = {"床前明月光", "{\"text\": \"a\", \"label\": 1}", "label\ttext", "hello world"};
static int at;
static ld_status next(void *u, const char **d, size_t *len) {
    (void)u;
    if (at == 4 * 20) return LD_ERR_NOT_FOUND;
    *d = docs[at++ % 4];
    *len = strlen(*d);
    return LD_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static ld_ctx *ctx;
    static ld_tokenizer *tok;
    if (!tok) {
        ld_ctx_new(NULL, &ctx);
        ld_bpe_train_params p = ld_bpe_train_default_params();
        const char *sp[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
        p.vocab_size = 300, p.min_frequency = 1, p.special_tokens = sp, p.n_special_tokens = 3, p.n_threads = 1;
        ld_text_source src = {next, NULL};
        if (ld_bpe_train(ctx, &p, &src, &tok)) abort();
    }
    if (size < 1) return 0;
    uint8_t sel = data[0];
    data++, size--;
    static const char *const names[] = {"f.jsonl", "f.tsv", "f.txt", "f.json"};
    ld_ft_data_config c = ld_ft_data_default_config();
    c.format = (ld_ft_format)(sel % 3);
    if (sel & 4) snprintf(c.text_fields[0], sizeof c.text_fields[0], "a"), snprintf(c.text_fields[1], sizeof c.text_fields[1], "b"), c.n_text_fields = 2;
    ld_ft_labels labels = {0};
    if (sel & 8) labels.names[0] = strdup("0"), labels.names[1] = strdup("1"), labels.n = 2, labels.fixed = true;
    ld_ft_data *d = NULL;
    int64_t max_len = (sel & 16) ? 8 : 0;
    if (ld_ft_data_load_memory(ctx, tok, &c, names[(sel >> 5) & 3], (const char *)data, size, &labels, max_len, &d) == LD_OK) {
        for (int64_t i = 0; i < ld_ft_data_count(d); i++) {
            int64_t n;
            int32_t label;
            ld_ft_data_example(d, i, NULL, NULL, &n, &label, NULL);
            if (n < 1 || (max_len && n > max_len)) abort();
            if (c.format == LD_FT_CLASSIFY && (label < 0 || label >= labels.n)) abort();
        }
        ld_ft_source *s = NULL;
        if (ld_ft_source_new(ctx, d, c.format != LD_FT_CLASSIFY && (sel & 128), true, 1, 0, &s) == LD_OK) {
            int32_t in[3 * 5], tg[3 * 5], lab[3], len[3];
            ld_batch b = {3, 5, in, tg, lab, len};
            ld_batch_source src = ld_ft_source_batches(s);
            for (int k = 0; k < 4; k++)
                if (src.next(src.user, &b)) abort();
            char *cur = NULL;
            if (src.save(src.user, &cur) || src.restore(src.user, cur)) abort();
            free(cur);
            ld_ft_source_free(s);
        }
        ld_ft_data_free(d);
    }
    ld_ft_labels_clear(&labels);
    ld_ctx_clear_error(ctx);
    return 0;
}

/* models/lm_open.c — opening a model wherever it is: a model directory with its
 * tokenizer.json, or a GGUF file (which holds both). */
#include <stdio.h>

#include "models/causal_lm_internal.h"

ld_status ld_lm_open(ld_ctx *ctx, const char *path, ld_lm **m, ld_tokenizer **tok) {
    ld_lm_load_params p = ld_lm_load_default_params();
    p.trainable = true;
    return ld_lm_open_ex(ctx, path, &p, m, tok);
}

ld_status ld_lm_open_ex(ld_ctx *ctx, const char *path, const ld_lm_load_params *p, ld_lm **m, ld_tokenizer **tok) {
    if (!path || !m || !tok) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_open: NULL argument");
    *m = NULL, *tok = NULL;
    if (ld_lm_gguf_sniff(path)) return ld_lm_load_gguf_ex(ctx, path, p, m, tok);
    ld_status st = ld_lm_load_ex(ctx, path, p, m);
    if (st) return st;
    char tpath[4096];
    snprintf(tpath, sizeof tpath, "%s/tokenizer.json", path);
    if ((st = ld_tokenizer_load(ctx, tpath, tok))) {
        ld_lm_free(*m);
        *m = NULL;
        return st;
    }
    int64_t tv = ld_tokenizer_vocab_size(*tok), mv = (*m)->cfg.vocab_size;
    if (tv > mv) {
        st = ld_error(ctx, LD_ERR_MISMATCH, "%s: the tokenizer has %lld tokens but the model's vocab_size is %lld", path,
                      (long long)tv, (long long)mv);
        ld_tokenizer_free(*tok), ld_lm_free(*m);
        *m = NULL, *tok = NULL;
    }
    return st;
}

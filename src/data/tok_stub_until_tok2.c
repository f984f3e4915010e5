/* data/tok_stub_until_tok2.c — TEMPORARY: stand-ins for the ld_tokenizer_* functions the data
 * layer calls, so the data2 branch links before the tokenizer (branch tok2) is merged.
 * Delete this file when merging tok2 (its real definitions replace these). */
#include "liandan/tokenizer.h"

ld_status ld_tokenizer_encode(const ld_tokenizer *tok, const char *text, size_t len, unsigned flags, int32_t *ids,
                              size_t cap, size_t *n_ids) {
    (void)tok, (void)text, (void)len, (void)flags, (void)ids, (void)cap;
    if (n_ids) *n_ids = 0;
    return LD_ERR_UNSUPPORTED;
}
int64_t ld_tokenizer_vocab_size(const ld_tokenizer *tok) {
    (void)tok;
    return 0;
}
int32_t ld_tokenizer_bos_id(const ld_tokenizer *tok) {
    (void)tok;
    return -1;
}
int32_t ld_tokenizer_eos_id(const ld_tokenizer *tok) {
    (void)tok;
    return -1;
}
uint64_t ld_tokenizer_hash(const ld_tokenizer *tok) {
    (void)tok;
    return 0;
}
ld_status ld_tokenizer_load(ld_ctx *ctx, const char *path, ld_tokenizer **out) {
    *out = NULL;
    return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: the tokenizer is not built into this branch yet", path);
}
void ld_tokenizer_free(ld_tokenizer *tok) {
    (void)tok;
}

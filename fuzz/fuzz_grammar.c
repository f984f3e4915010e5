/* fuzz/fuzz_grammar.c — the grammar engine's three text inputs from arbitrary bytes, chosen by
 * the first byte: GBNF (compiled, then a state advanced over the text after the first NUL and a
 * mask taken), a JSON Schema (converted to GBNF and compiled), and the verse tone table and
 * pattern (split at the first NUL). Errors, never crashes, leaks or overreads. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/liandan.h"

static const char *docs[] = {"床前明月光，疑是地上霜。", "{\"a\": [1, true, null, \"x\"]}"};
static size_t doc_at;
static ld_status next_doc(void *user, const char **doc, size_t *len) {
    (void)user;
    if (doc_at >= sizeof docs / sizeof docs[0]) return LD_ERR_NOT_FOUND;
    *doc = docs[doc_at], *len = strlen(docs[doc_at]);
    doc_at++;
    return LD_OK;
}

/* One small byte-level BPE and its trie for every input (kept for the process). */
static ld_tokenizer *tok;
static ld_grammar_vocab *vocab;
static float logits[512];

static void setup(ld_ctx *ctx) {
    if (tok) return;
    ld_bpe_train_params p = ld_bpe_train_default_params();
    const char *specials[] = {"<|endoftext|>"};
    p.vocab_size = 300, p.min_frequency = 1, p.special_tokens = specials, p.n_special_tokens = 1;
    ld_text_source src = {next_doc, NULL};
    if (ld_bpe_train(ctx, &p, &src, &tok) || ld_grammar_vocab_new(ctx, tok, &vocab)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return 0;
    setup(ctx);
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(text, 0, n);
    size_t first = nul ? (size_t)(nul - text) : n;
    const char *rest = nul ? nul + 1 : text + n;
    size_t rest_len = (size_t)(text + n - rest);
    ld_grammar *g = NULL;
    char *gbnf = NULL;
    switch (data[0] % 3) {
    case 0:
        if (ld_grammar_parse(ctx, text, first, NULL, &g) == LD_OK) {
            int32_t eos = ld_tokenizer_eos_id(tok);
            ld_grammar_state *s = NULL;
            if (ld_grammar_state_new(ctx, g, vocab, &eos, 1, &s) == LD_OK) {
                (void)ld_grammar_state_accept_text(s, rest, rest_len < 64 ? rest_len : 64);
                int64_t V = ld_tokenizer_vocab_size(tok);
                if (V <= (int64_t)(sizeof logits / sizeof logits[0])) {
                    memset(logits, 0, sizeof logits);
                    (void)ld_grammar_state_mask(s, logits, V);
                }
                (void)ld_grammar_state_complete(s);
                ld_grammar_state_free(s);
            }
        }
        break;
    case 1:
        if (ld_grammar_from_json_schema(ctx, text, n, &gbnf) == LD_OK) (void)ld_grammar_parse(ctx, gbnf, strlen(gbnf), NULL, &g);
        break;
    default: {
        char *pattern = malloc(rest_len + 1); /* the pattern is a C string */
        if (!pattern) break;
        memcpy(pattern, rest, rest_len), pattern[rest_len] = 0;
        int chars = size > 1 && data[1] % 2 ? 7 : 5, lines = 2 + 2 * (int)(data[0] / 3 % 4);
        if (ld_grammar_verse(ctx, chars, lines, first ? text : NULL, first, first ? pattern : NULL, &gbnf) == LD_OK)
            (void)ld_grammar_parse(ctx, gbnf, strlen(gbnf), NULL, &g);
        free(pattern);
    }
    }
    ld_grammar_free(g);
    free(gbnf);
    ld_ctx_free(ctx);
    return 0;
}

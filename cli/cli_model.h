/* cli/cli_model.h — helpers shared by the commands that run a causal LM. */
#ifndef LD_CLI_MODEL_H
#define LD_CLI_MODEL_H

#include <stdio.h>

#include "liandan/liandan.h"

/* Loads a model directory and its tokenizer.json, or a GGUF file (model and tokenizer);
 * prints an error and returns 1 on failure. */
int ld_cli_load_model(ld_ctx *ctx, const char *dir, ld_lm **m, ld_tokenizer **tok);
/* The token an empty prompt starts from: BOS, else EOS (the separator the training data puts
 * between documents), else the config's bos_token_id. */
int32_t ld_cli_start_token(const ld_tokenizer *tok, const ld_lm *m);
/* The context a command's session gets: the model's, at most `cap` tokens (models imported
 * from GGUF may declare 128k positions; the KV cache is allocated up front). */
int64_t ld_cli_context(const ld_lm *m, int64_t cap);
/* Encodes text (specials treated as text) into a malloc'd array; 1 on failure (printed). */
int ld_cli_encode(ld_ctx *ctx, const ld_tokenizer *tok, const char *text, int32_t **ids, int64_t *n);

/* Reads the documents of a corpus file (txt, tsv, jsonl, fasta) and encodes them joined with
 * EOS into a malloc'd array; *bytes (may be NULL) gets the text's size. 1 on failure (printed). */
int ld_cli_encode_corpus(ld_ctx *ctx, const ld_tokenizer *tok, const char *path, const ld_corpus_params *cp,
                         int32_t **ids, size_t *n, double *bytes);

/* Streams generated tokens as text: holds back incomplete UTF-8 and possible stop-string
 * prefixes, cuts at the first stop string. */
typedef struct ld_cli_text {
    const ld_tokenizer *tok;
    FILE *out; /* NULL: collect only */
    char buf[65536];
    size_t len, printed;
} ld_cli_text;
void ld_cli_text_init(ld_cli_text *t, const ld_tokenizer *tok, FILE *out);
/* Appends a token; false when a stop string appeared (the text ends before it). */
bool ld_cli_text_add(ld_cli_text *t, int32_t id, const char *const *stops, int n_stops);
void ld_cli_text_flush(ld_cli_text *t);

/* Parses one sampling option at argv[*i] into g: 1 = consumed (and *i advanced past its
 * value), 0 = not a sampling option, -1 = bad value (printed). */
int ld_cli_sample_option(int argc, char **argv, int *i, ld_generate_params *g);
const char *ld_cli_sample_help(void);

#endif

/* cli/cli_model.h — helpers shared by the commands that run a causal LM. */
#ifndef LD_CLI_MODEL_H
#define LD_CLI_MODEL_H

#include <stdio.h>

#include "liandan/liandan.h"
#include "opt.h"

/* Loads a model directory and its tokenizer.json, or a GGUF file (model and tokenizer), for
 * inference (weights read in place); prints an error and returns 1 on failure. */
int ld_cli_load_model(ld_ctx *ctx, const char *dir, ld_lm **m, ld_tokenizer **tok);
/* The same; trainable: with an F32 copy of every parameter (training, a distillation
 * teacher). */
int ld_cli_load_model_ex(ld_ctx *ctx, const char *dir, bool trainable, ld_lm **m, ld_tokenizer **tok);
/* Writes a model directory (config.json, model.safetensors, generation_config.json,
 * tokenizer.json) as a whole: into a temporary sibling swapped into place at the end, so a
 * failure never leaves a mix of old and new files. An existing `dir` is replaced only when it
 * is empty or a model directory (holds config.json). Returns 0 or 1 (printed). */
int ld_cli_save_model_dir(ld_ctx *ctx, ld_lm *m, const ld_tokenizer *tok, const char *dir);
/* Loads the LoRA adapter in dir for m and merges it into m's weights (the model then runs
 * as base + adapter in inference sessions); prints an error and returns 1 on failure, e.g.
 * for a prompt-tuning adapter, which inference sessions cannot run. */
int ld_cli_merge_adapter(ld_ctx *ctx, ld_lm *m, const char *dir);
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
 * prefixes, cuts at the first stop string. The text grows as needed (buf is NUL-terminated
 * once a token was added). */
typedef struct ld_cli_text {
    const ld_tokenizer *tok;
    FILE *out; /* NULL: collect only */
    char *buf;
    size_t len, cap, printed;
    bool oom; /* a token could not be stored (out of memory): generation was stopped */
} ld_cli_text;
/* Starts a new text. t must be zeroed or a text initialised before (its buffer is reused). */
void ld_cli_text_init(ld_cli_text *t, const ld_tokenizer *tok, FILE *out);
/* Appends a token; false when a stop string appeared (the text ends before it) or on t->oom. */
bool ld_cli_text_add(ld_cli_text *t, int32_t id, const char *const *stops, int n_stops);
void ld_cli_text_flush(ld_cli_text *t);
/* The text so far ("" before any token). */
const char *ld_cli_text_str(const ld_cli_text *t);
void ld_cli_text_free(ld_cli_text *t);

/* The sampling options (--max-tokens, --temperature, --top-k, --top-p, --min-p,
 * --repetition-penalty, --seed) as a table over g, to join a command's table with
 * LD_CLI_GROUP("sampling", t). t needs LD_CLI_SAMPLE_OPTS rows. */
#define LD_CLI_SAMPLE_OPTS 8

/* A weight type option (LD_CLI_FUNC with user = ld_dtype *): "q4_k", "Q4_K_M", "f16" (any case;
 * llama.cpp's _M/_S mix suffixes name the same matrix type). Accepts F32, F16, BF16 and the
 * types the quant layer can write; the error lists them. */
bool ld_cli_type_opt(void *user, const char *opt, const char *value);
/* A KV cache type option (user = ld_dtype *): f32, f16 or q8_0 (any case), llama.cpp's
 * -ctk / -ctv. LD_CLI_KV_TYPES(K, V) adds --cache-type-k and --cache-type-v to a table. */
bool ld_cli_kv_type_opt(void *user, const char *opt, const char *value);
#define LD_CLI_KV_TYPES(K, V)                                                                                       \
    {.name = "cache-type-k", .type = LD_CLI_T_FUNC, .fn = ld_cli_kv_type_opt, .dest.user = K, .arg = "T",          \
     .def = "f32", .help = "the KV cache's key type: f32, f16 or q8_0 (llama.cpp's -ctk)"},                         \
    {.name = "cache-type-v", .type = LD_CLI_T_FUNC, .fn = ld_cli_kv_type_opt, .dest.user = V, .arg = "T",          \
     .def = "f32", .help = "the KV cache's value type: f32, f16 or q8_0 (llama.cpp's -ctv)"}
/* The accepted names for the help ("f32, f16, bf16, q8_0, ..."), from the dtype table. */
const char *ld_cli_type_names(void);
void ld_cli_sample_opts(ld_generate_params *g, ld_cli_opt t[LD_CLI_SAMPLE_OPTS]);
/* What the model says about generation, applied to g after the options were parsed: EOS (the
 * tokenizer's) and every id of the config's EOS list stop a sequence; sampling settings still
 * at the CLI's defaults take generation_config.json's values. */
void ld_cli_model_defaults(const ld_lm *m, const ld_tokenizer *tok, ld_generate_params *g);
/* The chat template for a model: `name` (--chat-template) when given, else the one the model
 * file carries, recognised by its text, else "plain" (a model without a template). Prints an
 * error naming the template and returns NULL when it is unknown. */
const ld_chat_template *ld_cli_chat_template(ld_ctx *ctx, const ld_lm *m, const char *name, const char *cmd);

/* `liandan eval tasks` (cli/cmd_eval_tasks.c) and `eval forgetting` (cli/cmd_eval_forgetting.c);
 * argv[0] is the subcommand. */
int ld_cli_eval_tasks(int argc, char **argv);
int ld_cli_eval_forgetting(int argc, char **argv);

#endif

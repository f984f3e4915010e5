/* cli/cli_grammar.h — constrained generation (--grammar, --json-schema, --verse) and the inverse
 * prompting rerank (--rerank inverse) for `liandan generate`. */
#ifndef LD_CLI_GRAMMAR_H
#define LD_CLI_GRAMMAR_H

#include "cli.h"
#include "cli_model.h"

typedef struct ld_cli_grammar_opts {
    const char *grammar;     /* GBNF file */
    const char *json_schema; /* JSON Schema file */
    int verse;               /* 5 or 7: regular verse (0 = off) */
    int lines;               /* verse lines (default 4) */
    const char *tones;       /* verse: tone table file (NULL = none) */
    const char *pattern;     /* verse: tone pattern (with tones) */
} ld_cli_grammar_opts;

typedef struct ld_cli_grammar ld_cli_grammar;
/* *out = NULL (and 0) when no grammar was asked for; 1/2 on errors (printed). */
int ld_cli_grammar_new(ld_ctx *ctx, const ld_cli_grammar_opts *o, const ld_tokenizer *tok, ld_cli_grammar **out);
void ld_cli_grammar_free(ld_cli_grammar *g);
/* Fresh grammar states for n sequences continuing prompts[i] (verse: the prompt opens the
 * poem), as constraints for gp (whose eos_id and stop_ids may end a finished sentence); NULL
 * on errors (printed) or when g is NULL. */
const ld_lm_constraint *ld_cli_grammar_begin(ld_cli_grammar *g, int n, const char *const *prompts,
                                             const ld_generate_params *gp);
/* Whether sequence i's text is a whole sentence of the grammar (true without a grammar). */
bool ld_cli_grammar_complete(const ld_cli_grammar *g, int i);
/* Inverse prompting: score[i] = log P(prompt | cands[i] + sep) per prompt token; *best the
 * highest. 0, or 1/2 on errors (printed). The session needs n slots. */
int ld_cli_rerank_inverse(ld_ctx *ctx, ld_lm_session *s, const ld_tokenizer *tok, const char *prompt,
                          const char *const *cands, int n, const char *sep, double *score, int *best);

#endif

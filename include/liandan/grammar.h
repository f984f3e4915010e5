/* liandan/grammar.h — constrained generation: a grammar in llama.cpp's GBNF format (or one
 * made from a JSON Schema) decides which tokens may come next, so every output parses.
 *
 *   ld_grammar *g;        ld_grammar_parse(ctx, text, len, "root", &g);        // compiled, immutable
 *   ld_grammar_vocab *v;  ld_grammar_vocab_new(ctx, tok, &v);                  // the tokenizer as a byte trie
 *   ld_grammar_state *s;  ld_grammar_state_new(ctx, g, v, stop_ids, n, &s);   // one per sequence
 *   request.constraint = ld_grammar_constraint(s);                            // liandan/batch.h
 *
 * GBNF: rules `name ::= alternatives`; sequences of "literals" (escapes \n \t \r \\ \" \xHH
 * \uHHHH \UHHHHHHHH), [character classes] with ranges and [^negation], `.` (any character),
 * rule names, ( groups ), repetition * + ? {m} {m,} {m,n}, `|` alternation and `#` comments.
 * Characters are Unicode code points; tokens may split a character's UTF-8 bytes. The stop
 * tokens (EOS, end of turn) are allowed exactly when the grammar is complete, and only they
 * are then. Other special tokens are never allowed. */
#ifndef LIANDAN_GRAMMAR_H
#define LIANDAN_GRAMMAR_H

#include "liandan/batch.h"
#include "liandan/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ld_grammar ld_grammar;
/* Compiles GBNF text; `root` names the start rule (NULL = "root"). Errors name the line and
 * column: syntax, undefined rules, left recursion, empty grammars. */
ld_status ld_grammar_parse(ld_ctx *ctx, const char *text, size_t len, const char *root, ld_grammar **out);
void ld_grammar_free(ld_grammar *g);

/* GBNF text (malloc'd, caller frees) accepting exactly the JSON documents that satisfy the JSON
 * Schema `schema` (JSON text): type (string, number, integer, boolean, null, object, array,
 * or a list of them), properties / required / additionalProperties, items / prefixItems /
 * minItems / maxItems, enum, const, anyOf / oneOf, $ref into $defs / definitions,
 * minLength / maxLength; other keywords are ignored where that only widens the language
 * (format, pattern, minimum...). Object properties come in the schema's order. With schema
 * NULL: any JSON object (OpenAI's json_object mode). */
ld_status ld_grammar_from_json_schema(ld_ctx *ctx, const char *schema, size_t len, char **gbnf);

/* GBNF text (malloc'd) for regular verse: `lines` (even, 2..64) lines of `chars` (5 or 7) CJK
 * characters, ending alternately in "，" and "。" — what ld_poem_is_regular accepts. With a tone
 * table (text: lines "字<TAB>平" or "字<TAB>仄", also p/z; '#' comments) and a pattern (per line
 * `chars` letters p = level, z = oblique, * = either, lines separated by ','), each position
 * takes only characters of its tone. Errors name the table line or pattern position. */
ld_status ld_grammar_verse(ld_ctx *ctx, int chars, int lines, const char *tones, size_t tones_len, const char *pattern,
                           char **gbnf);

/* The tokenizer's vocabulary as a byte trie (immutable; share it between states). */
typedef struct ld_grammar_vocab ld_grammar_vocab;
ld_status ld_grammar_vocab_new(ld_ctx *ctx, const ld_tokenizer *tok, ld_grammar_vocab **out);
void ld_grammar_vocab_free(ld_grammar_vocab *v);

/* Where one sequence stands in a grammar. g and v must outlive it; ctx is used from the thread
 * that masks and accepts (the engine's). stop ids: tokens that end the sequence (allowed when
 * the grammar is complete). */
typedef struct ld_grammar_state ld_grammar_state;
ld_status ld_grammar_state_new(ld_ctx *ctx, const ld_grammar *g, const ld_grammar_vocab *v, const int32_t *stop_ids,
                               int n_stop_ids, ld_grammar_state **out);
void ld_grammar_state_free(ld_grammar_state *s);
/* Advances over text the grammar must accept (e.g. a prompt's opening); LD_ERR_FORMAT naming
 * the byte where the grammar refuses it (the state is then unchanged). */
ld_status ld_grammar_state_accept_text(ld_grammar_state *s, const char *text, size_t len);
/* Advances over a generated token (LD_ERR_FORMAT when the grammar does not allow it). */
ld_status ld_grammar_state_accept(ld_grammar_state *s, int32_t token);
/* Sets logits[t] = -INFINITY for every token t that may not come next (V logits). */
ld_status ld_grammar_state_mask(ld_grammar_state *s, float *logits, int64_t V);
/* true when the text so far is a complete sentence of the grammar. */
bool ld_grammar_state_complete(const ld_grammar_state *s);
/* The state as a scheduler constraint (mask + accept). */
ld_lm_constraint ld_grammar_constraint(ld_grammar_state *s);

#ifdef __cplusplus
}
#endif
#endif

/* liandan/eval.h — evaluation helpers: poem-format checking for the poetry demo and the
 * character unigram entropy of a corpus (a floor-free reference point for loss numbers). */
#ifndef LIANDAN_EVAL_H
#define LIANDAN_EVAL_H

#include <stdbool.h>
#include <stddef.h>

#include "liandan/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* True when text (UTF-8) is regular 5- or 7-character verse: clauses of CJK characters all
 * of the same length (5 or 7), separated alternately by '，' and a sentence end ('。', '！'
 * or '？'), an even number of clauses, at least 4, ending with a sentence end. Leading and
 * trailing whitespace is ignored. *chars_per_line (may be NULL) gets 5 or 7, else 0. */
bool ld_poem_is_regular(const char *text, size_t len, int *chars_per_line);

/* Entropy in bits per character (Unicode code point) of the unigram distribution of the
 * text, and the same in nats per character (for comparison with a char-level loss). */
typedef struct ld_unigram_stats {
    double bits_per_char, nats_per_char;
    size_t chars, distinct;
} ld_unigram_stats;
ld_status ld_unigram_entropy(ld_ctx *ctx, const char *text, size_t len, ld_unigram_stats *out);

#ifdef __cplusplus
}
#endif
#endif

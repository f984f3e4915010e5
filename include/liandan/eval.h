/* liandan/eval.h — evaluation: tasks defined by task files (zero/few-shot by likelihood,
 * fine-tuned heads, generation with EM/F1, GEC F0.5 and spelling P/R/F1), poem-format
 * checking for the poetry demo, and the character unigram entropy of a corpus (a floor-free
 * reference point for loss numbers). */
#ifndef LIANDAN_EVAL_H
#define LIANDAN_EVAL_H

#include <stdbool.h>
#include <stddef.h>

#include "liandan/core.h"
#include "liandan/causal_lm.h"

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

/* ---- tasks --------------------------------------------------------------------------
 * A task is a JSON file (docs/eval-tasks.md; the project's are in tasks/): which data files
 * (relative to a data directory), how to read them (tsv, jsonl, squad, m2, columns, pairs),
 * a prompt template, the candidates (label words or a list field), the answer, the metric.
 * No task needs C code of its own. Two kinds:
 *   choice:   each candidate is scored by log P(candidate and the text after it | the text
 *             before it); the best is the prediction (calibrated: minus the same score with
 *             every field replaced by a content-free string). With an adapter that has a
 *             classification head, the head predicts instead. Metrics: accuracy, macro_f1.
 *   generate: greedy continuation of the prompt until a stop string; metrics: em / f1
 *             (extractive QA), gec (F0.5 of character edits), csc (spelling P/R/F1). */
typedef struct ld_task ld_task;

/* Reads the task file and the examples of its evaluation split (and its train split, for
 * few-shot prompts). split: "test", "dev", ... (NULL = the file's "split"). Errors name the
 * task file and key, or the data file and line. */
ld_status ld_task_load(ld_ctx *ctx, const char *path, const char *data_dir, const char *split, ld_task **out);
void ld_task_free(ld_task *t);
const char *ld_task_name(const ld_task *t);
int64_t ld_task_size(const ld_task *t);

typedef struct ld_task_params {
    int shots;            /* few-shot examples before each query (0 = zero-shot) */
    bool calibrate;       /* choice tasks: subtract the content-free score */
    int64_t limit;        /* evaluate at most this many examples, spread evenly over the split (0 = all) */
    uint64_t seed;        /* which training examples the shots are */
    int64_t max_len;      /* tokens per scored sequence (0 = the model's context, at most 1024) */
    int batch;            /* sequences per forward pass (default 16) */
} ld_task_params;
ld_task_params ld_task_default_params(void);

#define LD_TASK_MAX_METRICS 8
typedef struct ld_task_result {
    char task[64], split[16], mode[48];
    int64_t n;
    int n_metrics;
    char metric[LD_TASK_MAX_METRICS][24];
    double value[LD_TASK_MAX_METRICS];
    double chance;        /* expected accuracy of a uniform guess (choice tasks), else NAN */
    char data[1024];
    uint64_t data_hash;
    double seconds;
} ld_task_result;

/* Evaluates m (with its attached adapter, if any: a head classifies, LoRA must be merged or
 * runs through the training forward) on t. progress (may be NULL) gets done/total examples. */
ld_status ld_task_run(ld_task *t, ld_lm *m, const ld_tokenizer *tok, const ld_task_params *p,
                      void (*progress)(void *user, int64_t done, int64_t total), void *user, ld_task_result *out);

/* A 64-bit hash of the model's parameter values (with its config), for reports. */
uint64_t ld_lm_weights_hash(const ld_lm *m);
/* The report of n results as JSON and as Markdown (malloc'd strings, caller frees): the model
 * (name, hash, parameters), tokenizer hash, and per task its metrics, data file and hash. */
ld_status ld_task_report(ld_ctx *ctx, const char *model_name, const ld_lm *m, const ld_tokenizer *tok,
                         const ld_task_result *results, int n, char **json, char **markdown);

#ifdef __cplusplus
}
#endif
#endif

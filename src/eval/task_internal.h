/* eval/task_internal.h — evaluation tasks: the task file, its examples (each a JSON object
 * whatever the data format), and the metrics (task_metrics.c). */
#ifndef LD_TASK_INTERNAL_H
#define LD_TASK_INTERNAL_H

#include <cjson/cJSON.h>

#include "liandan/eval.h"

#define LD_TASK_MAX_LABELS 256
#define LD_TASK_MAX_STOPS 4

typedef enum task_kind { TASK_CHOICE = 0, TASK_GENERATE } task_kind;

/* One split's examples: JSON objects (fields as strings, numbers or arrays), with the line
 * (or item number) each came from. */
typedef struct task_split {
    cJSON **ex;
    int64_t *line;
    int64_t n;
    char path[1024];
    uint64_t hash; /* of the file's bytes */
} task_split;

struct ld_task {
    ld_ctx *ctx;
    char name[64], about[256], file[1024];
    task_kind kind;
    char format[16];
    char template_[1024];      /* "{field}" placeholders; choice tasks hold one "{candidate}" */
    char head_input[256];      /* what a classification head reads ("{text}") */
    char blank[32];            /* ChID: this marker in the rendered text becomes the candidate */
    char calibration[64];      /* the content-free value of every field for calibrated scoring */
    /* choice: the candidates are label words, or a list field of each example */
    char label_values[LD_TASK_MAX_LABELS][64];
    char label_words[LD_TASK_MAX_LABELS][64];
    int n_labels;
    char candidates_field[64];
    char answer_field[64];     /* choice: a label value or (with candidates_field) an index */
    bool length_norm;          /* score = mean log-prob per token instead of the sum */
    /* generate */
    char answers_field[64];    /* extractive QA: a list of answer texts (or objects with "text") */
    char source_field[64], references_field[64]; /* GEC / spelling: source and reference(s) */
    int64_t max_new_tokens;
    char stops[LD_TASK_MAX_STOPS][16];
    int n_stops;
    char metrics[4][24];
    int n_metrics;
    char shot_separator[16];
    task_split train, eval;    /* train: few-shot examples (may be empty) */
    char eval_split[16];
};

/* "{name}" placeholders of tmpl filled from ex (strings as they are, numbers as %g); the
 * rendered text is cut before "{candidate}" (*split receives its offset, or -1 when absent).
 * Errors name the task file and the example's line for a missing field. */
ld_status ld_task_render(const ld_task *t, const char *tmpl, const cJSON *ex, int64_t line, bool calibration,
                         char **out, int64_t *split);

/* ---- metrics (task_metrics.c) ---- */
/* Strings for metrics are UTF-8; "characters" are code points. */
/* Macro-F1 over n_classes for predictions and golds (n items, ids in 0..n_classes-1). */
double ld_metric_macro_f1(const int *pred, const int *gold, int64_t n, int n_classes);
/* CMRC2018-style: texts normalised (punctuation and spaces dropped, ASCII lower-cased), EM =
 * equal to some reference, F1 = the best character-overlap F1 over the references. */
void ld_metric_qa(const char *pred, const char *const *refs, int n_refs, double *em, double *f1);
/* Character-level edits turning src into dst (a minimal Levenshtein alignment, adjacent
 * changes merged): counts of hypothesis edits, reference edits and those in both, for the
 * reference (of n_refs) that gives the best F0.5 with the running totals tp/fp/fn. */
void ld_metric_gec(const char *src, const char *hyp, const char *const *refs, int n_refs, int64_t *tp, int64_t *fp,
                   int64_t *fn);
/* Spelling correction (same-length strings): per sentence, detection is right when the set
 * of changed positions equals the reference's, correction when the output equals the
 * reference; counts for sentence-level P/R/F1 (SIGHAN's). */
void ld_metric_csc(const char *src, const char *hyp, const char *ref, int64_t *det_tp, int64_t *det_fp,
                   int64_t *det_fn, int64_t *cor_tp, int64_t *cor_fp, int64_t *cor_fn);

#endif

/* eval/probe_internal.h — the protein probe's task files read from memory (probe.c): for the
 * probe itself, its bad-input test and its fuzz harness. */
#ifndef LD_EVAL_PROBE_INTERNAL_H
#define LD_EVAL_PROBE_INTERNAL_H

#include "liandan/probe.h"

/* One example: a sequence (cut to the probe's length) and its label(s); the strings point
 * into the parsed text. */
typedef struct probe_example {
    const char *seq, *ss3, *mask; /* ss3 / mask: the SS3 task's per-residue columns */
    int64_t len;                  /* residues kept (1..max_len - 2) */
    int32_t label;                /* sequence tasks: the class; -1 for ss3 */
    bool test;                    /* a test row, else a training row */
} probe_example;

typedef struct probe_data {
    probe_example *ex; /* [n] (ld_alloc'd) */
    int64_t n, n_train, n_test;
    char *text;        /* the file's text when probe_data_read read it (ld_alloc'd), else NULL */
} probe_data;

/* Parses a task TSV of p->task from text[len] (a NUL at text[len]; the text is changed in place
 * and must outlive *d). A header names the columns (any order, extra columns ignored); then
 * one example per line, blank lines skipped. Sequences are letters (lowercase mapped to
 * uppercase); SS3 labels H/E/C with a 0/1 resolved mask of the same length; membrane labels
 * M/S/U; locations DeepLoc's ten or Cytoplasm-Nucleus. Rows of other splits, unlabelled rows
 * (U, Cytoplasm-Nucleus) and rows past max_train / max_test are skipped. Errors (LD_ERR_FORMAT)
 * name `name`:line (and the column for a bad character). On error *d holds nothing to free
 * but d->ex, which probe_data_free releases either way. */
ld_status probe_data_parse(ld_ctx *ctx, const char *name, char *text, size_t len, const ld_probe_task_params *p,
                           probe_data *d);
/* Reads the file at path and parses it as above. */
ld_status probe_data_read(ld_ctx *ctx, const char *path, const ld_probe_task_params *p, probe_data *d);
void probe_data_free(ld_ctx *ctx, probe_data *d);

#endif

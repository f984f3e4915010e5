/* cli/train_run.h — the training driver `liandan pretrain` and `liandan distill` share:
 * their common options, and the run itself (config, tokenizer, model, data, trainer with
 * checkpoints and resume, progress line, sample generations, the final model directory). */
#ifndef LD_CLI_TRAIN_RUN_H
#define LD_CLI_TRAIN_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "opt.h"

typedef struct ld_train_run_args {
    const char *cmd;    /* "pretrain" or "distill": names the command in messages */
    const char *config; /* the config file */
    ld_cli_list sets;   /* --set key=value, applied over the config in order */
    ld_cli_list extra;  /* key=value the options make (owned: malloc'd), applied after `sets` */
    const char *out;    /* -o/--output: out_dir */
    int64_t max_steps;  /* --max-steps (0: the config's) */
    int threads;
    bool resume, quiet;
    bool distill;       /* a teacher is required (and only then allowed) */
} ld_train_run_args;

/* The options both commands take, as a table over a (join with LD_CLI_GROUP). */
#define LD_TRAIN_RUN_OPTS 8
void ld_train_run_opts(ld_train_run_args *a, ld_cli_opt t[LD_TRAIN_RUN_OPTS]);
/* Adds the override key=value (value quoted as a JSON string when `quote`); 1 when out of memory. */
int ld_train_run_add_override(ld_train_run_args *a, const char *key, const char *value, bool quote);
/* Runs the training; returns the process exit code. Frees a's lists. */
int ld_train_run(ld_train_run_args *a);

#endif

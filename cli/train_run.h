/* cli/train_run.h — what `liandan pretrain`, `distill` and `finetune` share: their common
 * options, and running the library's training job (ld_train_job) with a progress line. */
#ifndef LD_CLI_TRAIN_RUN_H
#define LD_CLI_TRAIN_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "opt.h"

typedef enum ld_train_run_kind { LD_TRAIN_RUN_PRETRAIN = 0, LD_TRAIN_RUN_DISTILL, LD_TRAIN_RUN_FINETUNE } ld_train_run_kind;

typedef struct ld_train_run_args {
    const char *cmd;    /* "pretrain", "distill" or "finetune": names the command in messages */
    ld_train_run_kind kind;
    const char *config; /* the config file */
    ld_cli_list sets;   /* --set key=value, applied over the config in order */
    ld_cli_list extra;  /* key=value the options make (owned: malloc'd), applied after `sets` */
    const char *out;    /* -o/--output: out_dir */
    int64_t max_steps;  /* --max-steps (0: the config's) */
    int threads;
    bool resume, quiet;
} ld_train_run_args;

/* The options the commands share, as a table over a (join with LD_CLI_GROUP). */
#define LD_TRAIN_RUN_OPTS 8
void ld_train_run_opts(ld_train_run_args *a, ld_cli_opt t[LD_TRAIN_RUN_OPTS]);
/* Adds the override key=value (value quoted as a JSON string when `quote`); 1 when out of memory. */
int ld_train_run_add_override(ld_train_run_args *a, const char *key, const char *value, bool quote);
/* Runs the training; returns the process exit code. Frees a's lists. */
int ld_train_run(ld_train_run_args *a);

#endif

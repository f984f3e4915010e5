/* cli/train_run.h — the training driver `liandan pretrain` and `liandan distill` share:
 * their common options, and the run itself (config, tokenizer, model, data, trainer with
 * checkpoints and resume, progress line, sample generations, the final model directory). */
#ifndef LD_CLI_TRAIN_RUN_H
#define LD_CLI_TRAIN_RUN_H

#include <stdbool.h>
#include <stdio.h>

#define LD_TRAIN_RUN_MAX_OVERRIDES 64

typedef struct ld_train_run_args {
    const char *cmd;    /* "pretrain" or "distill": names the command in messages */
    const char *config; /* the config file */
    const char *overrides[LD_TRAIN_RUN_MAX_OVERRIDES]; /* key=value, applied over the config */
    int n_over;
    long threads;
    bool resume, quiet;
    bool distill;       /* a teacher is required (and only then allowed) */
    char storage[8][1100]; /* text of the overrides the options make */
    int n_storage;
} ld_train_run_args;

/* The options both commands take, for their --help. */
extern const char ld_train_run_options_help[];
/* Consumes the common option at argv[*i] (advancing *i past its value). Returns 1 if it was
 * one, 0 if not, -1 after printing an error. */
int ld_train_run_parse_option(ld_train_run_args *a, int argc, char **argv, int *i);
/* Adds the override key=value (value quoted as a JSON string when `quote`); 1 on overflow. */
int ld_train_run_add_override(ld_train_run_args *a, const char *key, const char *value, bool quote);
/* Runs the training; returns the process exit code. */
int ld_train_run(ld_train_run_args *a);

#endif

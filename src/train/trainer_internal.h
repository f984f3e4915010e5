/* train/trainer_internal.h — the trainer's state, shared by the loop and checkpoints. */
#ifndef LD_TRAINER_INTERNAL_H
#define LD_TRAINER_INTERNAL_H

#include <stdio.h>

#include "liandan/train.h"
#include "models/causal_lm_internal.h"
#include "liandan/encoder.h"

#define LD_TRAIN_PATH_MAX 4096

struct ld_trainer {
    ld_ctx *ctx;
    ld_lm *m;                           /* the causal LM, or NULL when training an encoder */
    ld_encoder *enc;                    /* masked-LM training: the encoder and its batch sources */
    ld_mlm_source *mlm_train, *mlm_val;
    int32_t *lengths;                   /* masked LM: real tokens per row */
    int64_t T_used;                     /* masked LM: this micro-batch's padded length (length bucketing) */
    int64_t step_tokens;                /* token slots the last optimizer step computed (B x T per micro-batch) */
    ld_params *params;                  /* what is trained: m's or enc's parameters */
    ld_train_params p;
    char out_dir[LD_TRAIN_PATH_MAX];
    ld_batch_source train, val;
    bool has_val;
    char *val_start;                    /* the val source's initial cursor: every validation reads the same batches */
    double peak_flops;
    ld_tape *tape;
    ld_adamw *opt;
    int32_t *tokens, *inputs, *targets; /* one micro-batch */
    int64_t step;                       /* optimizer steps done */
    double running_loss;                /* for the spike guard */
    ld_teacher *teacher;                /* distillation (NULL = plain next-token loss) */
    float temperature, alpha;
    FILE *metrics;
    bool start_checked;                 /* resume ran, or the run directory was checked to hold no run */
};

/* Whether out_dir holds an earlier run (metrics or a checkpoint pointer): starting afresh there
 * would mix two runs (checkpoint.c). */
bool ld_trainer_dir_has_run(ld_trainer *t);

#endif

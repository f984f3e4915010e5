/* train/trainer_internal.h — the trainer's state, shared by the loop and checkpoints. */
#ifndef LD_TRAINER_INTERNAL_H
#define LD_TRAINER_INTERNAL_H

#include <stdio.h>

#include "liandan/encoder.h"
#include "liandan/train.h"
#include "models/adapter_internal.h"

#define LD_TRAIN_PATH_MAX 4096

struct ld_trainer {
    ld_ctx *ctx;
    ld_lm *m;                           /* the causal LM, or NULL when training an encoder */
    ld_encoder *enc;                    /* masked-LM training: the encoder and its batch sources */
    ld_mlm_source *mlm_train, *mlm_val;
    ld_adapter *adapter;                /* attached to m when the trainer was made, or NULL */
    ld_params *params;                  /* the model's parameters: m's or enc's */
    ld_params *sets[2];                 /* what is optimized: the model's parameters (when any trains), the adapter's */
    int n_sets;
    bool base_trainable;                /* some parameter of the model trains (else checkpoints skip it) */
    int64_t step_tokens;                /* token slots the last optimizer step computed (B x T per micro-batch) */
    ld_train_params p;
    char out_dir[LD_TRAIN_PATH_MAX];
    ld_batch_source train, val;
    bool has_val;
    char *val_start;                    /* the val source's initial cursor: every validation reads the same batches */
    double peak_flops;
    ld_tape *tape;
    ld_adamw *opt;
    ld_batch batch;                     /* one micro-batch (buffers owned here; T may shrink per batch) */
    int64_t step;                       /* optimizer steps done */
    double running_loss;                /* for the spike guard */
    ld_teacher *teacher;                /* distillation (NULL = plain next-token loss) */
    float temperature, alpha;
    /* early stopping: the best evaluation so far and the trainable weights it had */
    double best_metric;                 /* NAN before the first evaluation */
    int64_t bad_evals;                  /* evaluations since the best */
    float *best_weights;                /* trainable values of every set, concatenated, or NULL */
    int64_t n_trainable;
    /* continual learning: loss += lambda/2 sum_i w_i (theta_i - anchor_i)^2 over the trainable
     * values (w = 1: L2-SP; w = the diagonal Fisher: EWC) */
    float reg_lambda;
    float *anchor, *fisher;             /* n_trainable each (fisher NULL for L2-SP), owned */
    FILE *metrics;
    bool start_checked;                 /* resume ran, or the run directory was checked to hold no run */
};

/* Whether out_dir holds an earlier run (metrics or a checkpoint pointer): starting afresh there
 * would mix two runs (checkpoint.c). */
bool ld_trainer_dir_has_run(ld_trainer *t);

/* Copies the trainable values of every set into buf (n_trainable floats) or back. */
void ld_trainer_copy_trainable(ld_trainer *t, float *buf, bool restore);
/* Continual learning: from now on the loss gets lambda/2 sum_i w_i (theta_i - anchor_i)^2
 * over the trainable values (in ld_trainer_copy_trainable's order), w = fisher[i] (EWC) or
 * 1 when fisher is NULL (L2-SP). anchor and fisher are copied. lambda 0 removes it. */
ld_status ld_trainer_set_anchor(ld_trainer *t, float lambda, const float *anchor, const float *fisher);
/* The diagonal empirical Fisher information of the trainable values: the mean over n
 * batches of src of the squared gradient of the batch loss, into out (n_trainable floats). */
ld_status ld_trainer_fisher(ld_trainer *t, const ld_batch_source *src, int64_t n, float *out);

#endif

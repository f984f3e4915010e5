/* train/trainer_internal.h — the trainer's state, shared by the loop and checkpoints. */
#ifndef LD_TRAINER_INTERNAL_H
#define LD_TRAINER_INTERNAL_H

#include <stdio.h>

#include "core/comm.h"
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
    /* data parallel (train/dist.c): every rank runs a trainer; rank 0 writes logs and files */
    ld_comm *comm;                      /* not owned; NULL = one process */
    int rank, world;
    struct ld_grad_sync *gs;            /* world > 1 */
    bool zero;                          /* ZeRO-1: the optimizer holds state for this rank's range only */
    /* expert parallelism (t->p.expert_parallel > 1, dist.c): each group of that many consecutive
     * ranks splits every MoE layer's experts; a rank trains only its own (the others' are frozen
     * here: no gradient, no optimizer state), its dense parameters are data parallel */
    ld_comm *ep_comm;                   /* owned: this rank's expert-parallel group, or NULL */
    ld_comm *ep_dp;                     /* owned: the ranks holding the same experts (NULL: just this one) */
    struct ld_grad_sync *gs_exp;        /* the experts' gradient sums over ep_dp */
    ld_tensor **ep_frozen;              /* the other ranks' experts, frozen here (thawed by ld_trainer_free) */
    int n_ep_frozen;
    uint8_t *ep_is_expert;              /* per parameter of t->params: 1 = an expert's matrix */
};

/* Expert parallelism: this rank's part of the model as a sharded model directory in dir
 * (lm_save_ep_part: the ranks of the first expert-parallel group each write their experts'
 * file, rank 0 also the other parameters and model.safetensors.index.json, and with meta
 * config.json and generation_config.json). Nothing on other ranks or without expert
 * parallelism. Not collective; every rank of the first group must call it. */
ld_status ld_dist_write_model(ld_trainer *t, const char *dir, bool meta);
/* Undoes the expert-parallel set-up (the frozen experts train again, the model computes all). */
void ld_dist_ep_free(ld_trainer *t);

/* Data parallel over comm (not owned, outlives t; size 1 changes nothing): rank 0's trainable
 * values go to every rank, gradients are reduced in buckets (t->p.dp_bucket_mb, overlapped with
 * backward unless dp_no_overlap), and with t->p.zero the optimizer state is sharded. Call before
 * resuming and training; every rank of comm calls it. */
ld_status ld_trainer_set_comm(ld_trainer *t, ld_comm *comm);
/* Checkpoint parts of a data-parallel run (dist.c): the ZeRO-1 optimizer shard of this rank
 * ("optimizer-RRRRR-of-WWWWW.safetensors") and, on rank 0, the manifest
 * "optimizer_shards.json", under dir. */
ld_status ld_dist_write_optimizer(ld_trainer *t, const char *dir);
/* This rank's optimizer state from checkpoint dir, written by any number of ranks: the shards
 * named by its manifest, or a single-process optimizer.safetensors (re-sharding either way). */
ld_status ld_dist_read_optimizer(ld_trainer *t, const char *dir);
/* Combines a per-rank status: LD_OK on every rank when every rank had LD_OK, else an error on
 * every rank (the rank's own, or one saying which rank failed). */
ld_status ld_dist_agree(ld_trainer *t, ld_status st, const char *what);
/* optimizer_shards.json, parsed and checked on its own (dist.c): shards tile [0, n_trainable)
 * in order, each a plain file name; parameters are (name, numel) pairs. */
typedef struct ld_opt_manifest {
    int64_t n_trainable;
    int n_shards, n_params;
    char **files;          /* n_shards file names */
    int64_t *lo, *hi;      /* n_shards ranges */
    char **names;          /* n_params */
    int64_t *numel;        /* n_params */
} ld_opt_manifest;
/* Parses text (len bytes) read from path (for messages) into *out (ld_opt_manifest_free). */
ld_status ld_opt_manifest_parse(ld_ctx *ctx, const char *text, size_t len, const char *path, ld_opt_manifest *out);
void ld_opt_manifest_free(ld_ctx *ctx, ld_opt_manifest *m);
/* Fault injection for the tests of a lost rank: with LD_FAULT_KILL=RANK:STEP in the environment,
 * that rank SIGKILLs itself when it is about to train step STEP + 1 (docs/scale-out.md). */
void ld_dist_fault(const ld_trainer *t);

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

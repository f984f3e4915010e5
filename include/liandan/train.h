/* liandan/train.h — training: learning-rate schedules, the pretraining loop, distillation. */
#ifndef LIANDAN_TRAIN_H
#define LIANDAN_TRAIN_H

#include "liandan/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- learning-rate schedules ------------------------------------------------------ */
typedef enum ld_lr_kind {
    LD_LR_CONSTANT = 0, /* warmup, then lr */
    LD_LR_COSINE,       /* warmup, then cosine from lr to min_lr at max_steps */
    LD_LR_WSD,          /* warmup, stable at lr, then linear decay to min_lr over the last decay_steps */
} ld_lr_kind;

typedef struct ld_lr_schedule {
    ld_lr_kind kind;
    float lr, min_lr;
    int64_t warmup_steps, max_steps, decay_steps;
} ld_lr_schedule;

/* Learning rate for 0-based step `step`. */
float ld_lr_at(const ld_lr_schedule *s, int64_t step);
/* "constant", "cosine", "wsd" -> kind; returns false for other names. */
bool ld_lr_kind_from_name(const char *name, ld_lr_kind *out);
const char *ld_lr_kind_name(ld_lr_kind k);

/* ---- where training batches come from --------------------------------------------- */
/* A batch source fills tokens[B * (T + 1)] (rows of T+1 consecutive tokens: inputs are the
 * first T, targets the last T). Its position is a cursor the trainer saves in checkpoints
 * (as a JSON object text) and restores on resume, so training continues on exactly the next
 * batch. */
typedef struct ld_batch_source {
    ld_status (*next)(void *user, int32_t *tokens, int64_t B, int64_t T);
    /* Writes the cursor as a JSON object into a malloc'd string (*out; caller frees). */
    ld_status (*save)(void *user, char **out);
    ld_status (*restore)(void *user, const char *json);
    void *user;
} ld_batch_source;

/* ---- the pretraining loop ---------------------------------------------------------- */
typedef struct ld_train_params {
    int64_t batch_size;      /* B: sequences per micro-batch */
    int64_t seq_len;         /* T */
    int64_t grad_accum;      /* micro-batches per optimizer step */
    int64_t max_steps;
    ld_lr_schedule schedule;
    ld_adamw_config optim;
    int64_t eval_every, eval_batches; /* 0 = no validation */
    int64_t checkpoint_every, keep_last;
    int64_t log_every;
    float spike_factor;      /* skip an update whose loss exceeds this x the running mean (0 = off) */
    bool bf16;               /* mixed precision: matrix products in bf16, fp32 master weights */
    uint64_t seed;
    const char *out_dir;     /* run directory: metrics.jsonl, checkpoints/ */
} ld_train_params;
ld_train_params ld_train_default_params(void);

/* What the trainer reports after every optimizer step (the CLI draws its progress line). */
typedef struct ld_train_progress {
    int64_t step, max_steps;
    double loss, val_loss;   /* val_loss is NAN when not evaluated this step */
    double lr, grad_norm;
    double tokens_per_s, mfu, elapsed_s, eta_s;
    bool skipped;            /* the update was skipped (NaN or loss spike) */
    const char *note;        /* why it was skipped, or "checkpoint", or NULL */
} ld_train_progress;
typedef void (*ld_train_progress_fn)(void *user, const ld_train_progress *p);

typedef struct ld_lm ld_lm;
typedef struct ld_trainer ld_trainer;

/* A trainer for model m (not owned) reading batches from train (and val, may be NULL).
 * peak_flops: the machine's measured FMA peak in FLOP/s, for MFU (0 = don't report MFU). */
ld_status ld_trainer_new(ld_lm *m, const ld_train_params *p, const ld_batch_source *train,
                         const ld_batch_source *val, double peak_flops, ld_trainer **out);
/* A trainer for masked-LM training of encoder e (not owned) on batches from train (and val,
 * may be NULL; use an eval-mode source), both borrowed for the trainer's life and with rows of
 * at most p->seq_len tokens. The loss is ld_encoder_mlm_loss; checkpoints hold the encoder's
 * parameters, the optimizer state and the sources' cursors. Distillation is not available. */
typedef struct ld_encoder ld_encoder;
typedef struct ld_mlm_source ld_mlm_source;
ld_status ld_trainer_new_mlm(ld_encoder *e, const ld_train_params *p, ld_mlm_source *train, ld_mlm_source *val,
                             double peak_flops, ld_trainer **out);
void ld_trainer_free(ld_trainer *t);
/* Runs until max_steps (or until *stop becomes nonzero: then it checkpoints and returns
 * LD_ERR_INTERRUPTED). Calls cb after every step. */
ld_status ld_trainer_run(ld_trainer *t, ld_train_progress_fn cb, void *user, volatile int *stop);
int64_t ld_trainer_step(const ld_trainer *t);
/* Writes a checkpoint of the current state to out_dir/checkpoints/step-NNNNNNN atomically
 * and points out_dir/checkpoints/latest at it; removes checkpoints beyond keep_last. */
ld_status ld_trainer_checkpoint(ld_trainer *t);
/* Restores model, optimizer, step and data cursor from the checkpoint out_dir/checkpoints/latest
 * names, or, when latest is missing or damaged or its checkpoint does not load, from the newest
 * checkpoint that loads (each failure is logged as a warning); trims out_dir/metrics.jsonl to
 * the steps at or before it. *found is false when there is no checkpoint: then the run starts
 * from step 0 and metrics.jsonl loses every line (the steps will be redone). An error when
 * checkpoints exist but none loads. Without a resume, ld_trainer_run refuses an out_dir that
 * holds an earlier run. */
ld_status ld_trainer_resume(ld_trainer *t, bool *found);
/* Mean validation loss over eval_batches batches of val. */
ld_status ld_trainer_validate(ld_trainer *t, double *loss);

/* ---- distillation: a frozen teacher's logits as soft targets ------------------------ */
typedef struct ld_teacher ld_teacher;

/* Makes model m (owned from now on, freed with the teacher) a teacher: its parameters are
 * frozen and its forward runs on a tape of its own that records nothing, so it costs one
 * inference forward per micro-batch and no gradient memory. */
ld_status ld_teacher_new(ld_lm *m, ld_teacher **out);
void ld_teacher_free(ld_teacher *t);
const ld_lm *ld_teacher_model(const ld_teacher *t);
/* The teacher's logits [B, T, V] for ids[B * T]; valid until the next call. */
ld_status ld_teacher_logits(ld_teacher *t, const int32_t *ids, int64_t B, int64_t T, const ld_tensor **logits);

/* From now on the trainer's loss is ld_op_distill_xent against teacher (not owned) at this
 * temperature and alpha (see ld_op_distill_xent); validation stays the student's hard-label
 * cross-entropy, comparable with pretraining. Errors: teacher and student vocabularies
 * differ in size, seq_len beyond the teacher's max_position, temperature <= 0, alpha
 * outside [0, 1]. */
ld_status ld_trainer_set_teacher(ld_trainer *t, ld_teacher *teacher, float temperature, float alpha);

#ifdef __cplusplus
}
#endif
#endif

/* liandan/train.h — training: learning-rate schedules, the training loop, distillation, training jobs. */
#ifndef LIANDAN_TRAIN_H
#define LIANDAN_TRAIN_H

#include "liandan/causal_lm.h"
#include "liandan/encoder.h"
#include "liandan/nn.h"
#include "liandan/tokenizer.h"

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
/* One micro-batch of B rows of T tokens. inputs and targets are [B * T] (row-major [B, T]);
 * targets[i] is the token to predict after inputs[i], or -100 where nothing is predicted
 * (padding, prompt tokens of a chat example, the text of a classification example).
 * labels[B]: the class of each row for a classification head (-100 = none: a padding row);
 * lengths[B]: how many tokens of each row are real (pooling reads only those; the rest is
 * padding after them). The trainer owns the buffers (B x T as configured) and sets B and T
 * before each fill; a source may lower T for one batch (rows are then T apart: dynamic
 * padding to the batch's longest example). */
typedef struct ld_batch {
    int64_t B, T;
    int32_t *inputs, *targets;
    int32_t *labels, *lengths;
} ld_batch;

/* A batch source fills a batch. Its position is a cursor the trainer saves in checkpoints
 * (as a JSON object text) and restores on resume, so training continues on exactly the next
 * batch. ld_batch_source_windows() reads windows of a token stream (pretraining). */
typedef struct ld_batch_source {
    ld_status (*next)(void *user, ld_batch *b);
    /* Writes the cursor as a JSON object into a malloc'd string (*out; caller frees). */
    ld_status (*save)(void *user, char **out);
    ld_status (*restore)(void *user, const char *json);
    void *user;
} ld_batch_source;

/* Fills b from rows of T+1 consecutive tokens produced by window(user, tokens[B * (T+1)],
 * B, T): inputs are each row's first T tokens, targets its last T; every row has length T
 * and no label. For sources of plain token windows such as the shard sampler. */
ld_status ld_batch_from_windows(ld_batch *b, int32_t *scratch,
                                ld_status (*window)(void *user, int32_t *tokens, int64_t B, int64_t T), void *user);

/* ---- the training loop ----------------------------------------------------------- */
typedef struct ld_train_params {
    int64_t batch_size;      /* B: sequences per micro-batch */
    int64_t seq_len;         /* T */
    int64_t grad_accum;      /* micro-batches per optimizer step */
    int64_t max_steps;
    ld_lr_schedule schedule;
    ld_adamw_config optim;
    int64_t eval_every, eval_batches; /* 0 = no validation */
    int64_t early_stopping;  /* stop after this many evaluations without improvement (0 = never) */
    int64_t checkpoint_every, keep_last;
    int64_t log_every;
    float spike_factor;      /* skip an update whose loss exceeds this x the running mean (0 = off) */
    bool bf16;               /* mixed precision: matrix products in bf16, fp32 master weights */
    uint64_t seed;
    const char *out_dir;     /* run directory: metrics.jsonl, checkpoints/ */
    /* data parallel (a job started under mpirun/srun with more than one rank; docs/scale-out.md):
     * every rank reads the same sample stream and takes its share of each step's
     * grad_accum x ranks micro-batches, so the run does not depend on the rank count */
    int64_t zero;            /* 1: ZeRO-1, each rank keeps the optimizer state of 1/ranks of the values */
    float dp_bucket_mb;      /* gradient all-reduce bucket size (MiB) */
    bool dp_no_overlap;      /* reduce after backward instead of during it (to measure what overlap gains) */
    bool dp_bf16;            /* sum the gradients as bfloat16 (half the bytes; each addition rounded) */
    int64_t expert_parallel; /* > 1: a mixture of experts' experts split over groups of this many ranks
                                (docs/moe.md); 0 or 1: every rank computes every expert */
} ld_train_params;
ld_train_params ld_train_default_params(void);

/* What the trainer reports after every optimizer step (the CLI draws its progress line). */
typedef struct ld_train_progress {
    int64_t step, max_steps;
    double loss, val_loss;   /* val_loss is NAN when not evaluated this step */
    double val_accuracy;     /* with a classification head: share of validation rows right, else NAN */
    double lr, grad_norm;
    double tokens_per_s;
    double flops_per_s;      /* model FLOP/s (ld_lm_train_flops_per_token x tokens/s) */
    double mfu;              /* flops_per_s / the peak given to the trainer (0 when none was) */
    double elapsed_s, eta_s;
    bool skipped;            /* the update was skipped (NaN or loss spike) */
    bool best;               /* this step's evaluation is the best so far (its weights are kept) */
    bool stopping;           /* early stopping: no improvement for `early_stopping` evaluations */
    const char *note;        /* why it was skipped, or "checkpoint", or NULL */
    int stage, n_stages;     /* training jobs with stages (continual learning): 1-based; else 1 of 1 */
    int ranks;               /* data-parallel ranks (1 without MPI); tokens_per_s counts all of them */
    double comm_s;           /* this step: seconds from the first gradient bucket's reduction to the last's end */
    double comm_exposed_s;   /* of which backward was over (not overlapped), plus ZeRO-1's parameter gather */
    int64_t comm_bytes;      /* this step: bytes this rank handed to collectives of all ranks (gradients, ZeRO-1's
                                gather, the loss and stop flags; each all-reduce's payload counted once) */
    double ep_s;             /* expert parallelism, this step: seconds this rank spent in the expert group's
                                collectives (the token exchanges and the norm), and the bytes it handed to them */
    int64_t ep_bytes;
} ld_train_progress;
typedef void (*ld_train_progress_fn)(void *user, const ld_train_progress *p);

typedef struct ld_lm ld_lm;
typedef struct ld_trainer ld_trainer;

/* A trainer for model m (not owned) reading batches from train (and val, may be NULL).
 * What it trains is what is trainable: m's parameters and those of an adapter attached to
 * m (liandan/adapter.h); the loss is next-token cross-entropy over the batch's targets, or
 * with a classification head the cross-entropy of the rows' labels. peak_flops: the
 * machine's FMA peak in FLOP/s, for MFU (0 = don't report MFU). */
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
/* Runs until max_steps, or early stopping, or until *stop becomes nonzero: then it
 * checkpoints and returns LD_ERR_INTERRUPTED. Calls cb after every step. */
ld_status ld_trainer_run(ld_trainer *t, ld_train_progress_fn cb, void *user, volatile int *stop);
int64_t ld_trainer_step(const ld_trainer *t);
/* Writes a checkpoint of the current state to out_dir/checkpoints/step-NNNNNNN atomically
 * and points out_dir/checkpoints/latest at it; removes checkpoints beyond keep_last. A
 * frozen base is not written (it is the run's input); an adapter is. */
ld_status ld_trainer_checkpoint(ld_trainer *t);
/* Restores model, adapter, optimizer, step, early-stopping state and data cursor from the
 * checkpoint out_dir/checkpoints/latest names, or, when latest is missing or damaged or its
 * checkpoint does not load, from the newest checkpoint that loads (each failure is logged as a
 * warning); trims out_dir/metrics.jsonl to the steps at or before it. *found is false when
 * there is no checkpoint: then the run starts from step 0 and metrics.jsonl loses every line
 * (the steps will be redone). An error when checkpoints exist but none loads. Without a
 * resume, ld_trainer_run refuses an out_dir that holds an earlier run. */
ld_status ld_trainer_resume(ld_trainer *t, bool *found);
/* Validation over eval_batches batches of val: mean loss per counted target (or label) and,
 * with a classification head, accuracy (NAN otherwise; accuracy may be NULL). */
ld_status ld_trainer_validate(ld_trainer *t, double *loss, double *accuracy);
/* The same evaluation over n batches of any source (rewound to `start`, a cursor from its
 * save, unless NULL) with the trainer's model as it is. */
ld_status ld_trainer_evaluate(ld_trainer *t, const ld_batch_source *src, const char *start, int64_t n, double *loss,
                              double *accuracy);
/* With early stopping: puts the trainable weights of the best evaluation back (no-op when
 * there was none). Returns whether there was one. */
bool ld_trainer_restore_best(ld_trainer *t);

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

/* ---- training jobs ------------------------------------------------------------------
 * A job is one training run described by a config (JSON; docs/training.md lists the keys):
 * it loads or builds the model and tokenizer, opens the data, trains with checkpoints,
 * validation and early stopping, and writes the result under the config's out_dir:
 *   pretrain, distill        OUT/model (model directory with tokenizer.json)
 *   finetune "full"          OUT/model, and OUT/adapter when it trained a classification head
 *   finetune "lora"/"prompt" OUT/adapter (PEFT layout, liandan/adapter.h)
 * plus OUT/metrics.jsonl and OUT/checkpoints/. The CLI commands and the server are thin
 * callers: build the job, print its info, run it with a progress callback, cancel it from
 * another thread or a signal handler.
 *
 *   ld_train_job *j;
 *   if (ld_train_job_new(ctx, LD_JOB_FINETUNE, text, len, "ft.json", NULL, 0, &j)) ...error...
 *   const ld_train_job_info *info = ld_train_job_info_of(j);
 *   ld_status st = ld_train_job_run(j, resume, on_progress, user);   // LD_ERR_INTERRUPTED if cancelled
 *   ld_train_job_free(j);
 */
typedef enum ld_job_kind { LD_JOB_PRETRAIN = 0, LD_JOB_DISTILL, LD_JOB_FINETUNE } ld_job_kind;

typedef struct ld_train_job ld_train_job;

typedef struct ld_train_job_info {
    ld_job_kind kind;
    const char *method;           /* "pretrain", "distill", "full", "lora", "prompt" */
    const char *task;             /* "lm" (text), "chat", "classification" */
    ld_lm_config model;           /* the causal LM */
    bool mlm;                     /* masked-LM pretraining of an encoder ("objective": "mlm") */
    ld_encoder_config encoder;    /* ... that encoder */
    int64_t params, trainable;    /* parameters of the model; trainable ones (adapter included) */
    int64_t batch_size, seq_len, grad_accum, max_steps;
    double flops_per_token;       /* of a training step, for MFU */
    int threads;                  /* per rank */
    int rank, ranks;              /* data parallel under mpirun/srun (docs/scale-out.md); else 0 of 1 */
    int expert_parallel;          /* > 1: the experts split over groups of this many ranks (docs/moe.md) */
    int64_t held;                 /* parameter values this rank holds (expert parallelism: its own experts'
                                     and the dense ones; else params) */
    bool bf16;
    bool quantized_base;          /* the frozen base computes from its quantized matrices (QLoRA) */
    int64_t train_examples, val_examples, truncated; /* fine-tuning data, all stages; masked LM: sequences */
    int64_t train_tokens;         /* masked LM: tokens of the training sequences */
    int n_stages;                 /* fine-tuning stages (continual learning); 1 without "stages" */
    int64_t n_labels;             /* classification */
    const char *out_dir;
    const char *base;             /* fine-tuning: the pretrained model; pretraining: init_from or "" */
    const char *teacher;          /* distillation: the teacher, else "" */
    ld_lm_config teacher_model;
    float temperature, alpha;
    int64_t start_step;           /* where ld_train_job_run started (after a resume) */
    /* sample generations the config asks for (the caller makes them: training does not
     * depend on inference) every sample_every steps (0 = never), sample_tokens long */
    int64_t sample_every, sample_tokens;
    const char *const *sample_prompts;
    int n_sample_prompts;
} ld_train_job_info;

/* Builds the job from config text (JSON; `name` is used in messages, e.g. the file's path)
 * with `overrides` ("key=value", dotted keys reach into objects: "lora.rank=16") applied
 * first. Everything that can fail before training does here: config errors name the key,
 * data errors name file:line, a teacher with another tokenizer, targets that match nothing.
 * The job uses ctx's threads (the config's "threads" when nonzero). */
ld_status ld_train_job_new(ld_ctx *ctx, ld_job_kind kind, const char *text, size_t len, const char *name,
                           const char *const *overrides, int n_overrides, ld_train_job **out);
void ld_train_job_free(ld_train_job *j);
const ld_train_job_info *ld_train_job_info_of(const ld_train_job *j);
/* Trains (continuing from the newest checkpoint of out_dir when resume is set), calling cb
 * after every optimizer step, then writes the outputs (with early stopping, the best
 * evaluation's weights). Returns LD_ERR_INTERRUPTED after a checkpoint when cancelled. */
ld_status ld_train_job_run(ld_train_job *j, bool resume, ld_train_progress_fn cb, void *user);
/* Asks a running job to stop at the end of its current step (checkpointing first). Safe
 * from another thread or a signal handler. */
void ld_train_job_cancel(ld_train_job *j);
/* Continual learning: how each stage's model does on every stage's validation data. Row 0
 * is the model before training, row i the model after stage i (its outputs, read from
 * OUT/stage-i: the job must have run); column j is stage j's validation split. Scores are
 * the accuracy with a classification head, else minus the validation loss; from them
 * backward transfer (mean over j < S of R[S][j] - R[j][j]), forward transfer (mean over
 * j > 1 of R[j-1][j] - R[0][j]) and each stage's forgetting (the best earlier score minus the
 * final one), as in Lopez-Paz & Ranzato (2017) and Chaudhry et al. (2018). */
#define LD_MAX_STAGES 16
typedef struct ld_stage_matrix {
    int n_stages;
    char name[LD_MAX_STAGES][64];
    bool classify;
    double loss[LD_MAX_STAGES + 1][LD_MAX_STAGES];     /* mean validation loss (nats per target) */
    double accuracy[LD_MAX_STAGES + 1][LD_MAX_STAGES]; /* with a head, else NAN */
    double bwt, fwt, forgetting[LD_MAX_STAGES];
} ld_stage_matrix;
ld_status ld_train_job_eval_stages(ld_train_job *j, ld_stage_matrix *out);
/* The main output directory (OUT/model or OUT/adapter), valid after a successful run. */
const char *ld_train_job_output(const ld_train_job *j);
/* The trained model and its tokenizer (owned by the job), e.g. to evaluate it after the run. */
ld_lm *ld_train_job_model(ld_train_job *j);
const ld_tokenizer *ld_train_job_tokenizer(const ld_train_job *j);

#ifdef __cplusplus
}
#endif
#endif

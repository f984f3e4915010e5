/* liandan/clip_train.h — contrastive pretraining of the image-text model (liandan pretrain with a "model"
 * whose model_type is "clip"): the config, and the training loop. */
#ifndef LIANDAN_CLIP_TRAIN_H
#define LIANDAN_CLIP_TRAIN_H

#include "liandan/clip.h"
#include "liandan/train.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- training (liandan pretrain with "model": {"model_type": "clip", ...}) ------------ */
typedef struct ld_clip_train_config {
    ld_clip_config model;
    char train_data[1024], val_data[1024]; /* emoji_clip directory or a TSV / JSONL list ("" val: none) */
    char split[16], val_split[16];         /* emoji_clip splits ("train", "dev"); ignored for lists */
    char lang[8];                          /* captions: "zh", "en" or "both" (each image twice) */
    char out_dir[1024];
    int64_t batch_size, max_steps, eval_every;
    ld_lr_schedule schedule;
    ld_adamw_config optim;
    ld_image_transform transform;          /* "pad", "flip" */
    bool augment;
    uint64_t seed;
    int threads;
    /* MoCo / BriVL: queue_size > 0 keeps a momentum copy of both towers (an EMA of the weights,
     * `momentum` per step) and queues of its last queue_size image and text embeddings, used
     * as extra negatives (ld_clip_loss_queued). 0: in-batch negatives only. */
    int64_t queue_size;
    float momentum;
    /* Checkpoints (out_dir/checkpoints/step-N: weights, AdamW state, momentum weights, queues,
     * data cursor) every checkpoint_every steps (0: none); the last 2 are kept. resume (not a
     * config key; `liandan pretrain --resume`) continues from out_dir/checkpoints/latest, and
     * gives bit-identical weights to a run that was never stopped. */
    int64_t checkpoint_every;
    bool resume;
} ld_clip_train_config;
ld_clip_train_config ld_clip_train_config_default(void);
/* Parses a training config (docs/clip.md lists the keys); errors name the key. */
ld_status ld_clip_train_config_parse(ld_ctx *ctx, const char *text, size_t len, const char *path,
                                     ld_clip_train_config *out);
/* true when the config's "model" has model_type "clip" (the pretrain command dispatches on it). */
bool ld_clip_train_config_is_clip(const char *text, size_t len);

typedef struct ld_clip_train_progress {
    int64_t step, max_steps;
    double loss, val_loss;     /* val_loss NAN when not evaluated this step */
    double lr, grad_norm, temperature;
    double pairs_per_s, mfu, elapsed_s;
    double data_s;             /* seconds the step spent preparing its batch (decode, augment, tokenize) */
    bool skipped;
} ld_clip_train_progress;
typedef void (*ld_clip_train_progress_fn)(void *user, const ld_clip_train_progress *p);

/* Trains m on train (val may be NULL) as c says, writing out_dir/metrics.jsonl; calls cb after
 * every step. peak_flops (FLOP/s, 0 = unknown) gives MFU. Stops with LD_ERR_INTERRUPTED when
 * *stop becomes nonzero. The caller saves the model. */
ld_status ld_clip_train(ld_clip *m, const ld_tokenizer *tok, const ld_clip_train_config *c, const ld_clip_pairs *train,
                        const ld_clip_pairs *val, double peak_flops, ld_clip_train_progress_fn cb, void *user,
                        volatile int *stop);

#ifdef __cplusplus
}
#endif
#endif

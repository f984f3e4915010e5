/* liandan/train.h — training: learning-rate schedules and the pretraining loop. */
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

#ifdef __cplusplus
}
#endif
#endif

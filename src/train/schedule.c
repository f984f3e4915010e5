/* train/schedule.c — learning-rate schedules: linear warmup, then constant, cosine or
 * warmup-stable-decay (WSD). */
#include <math.h>
#include <string.h>

#include "liandan/train.h"

float ld_lr_at(const ld_lr_schedule *s, int64_t step) {
    if (step < s->warmup_steps) return s->lr * (float)(step + 1) / (float)s->warmup_steps;
    switch (s->kind) {
    case LD_LR_COSINE: {
        int64_t span = s->max_steps - s->warmup_steps;
        if (span <= 0 || step >= s->max_steps) return s->min_lr;
        double frac = (double)(step - s->warmup_steps) / (double)span;
        return s->min_lr + (float)(0.5 * (1.0 + cos(M_PI * frac))) * (s->lr - s->min_lr);
    }
    case LD_LR_WSD: {
        int64_t decay_start = s->max_steps - s->decay_steps;
        if (step < decay_start || s->decay_steps <= 0) return s->lr;
        if (step >= s->max_steps) return s->min_lr;
        double frac = (double)(step - decay_start + 1) / (double)s->decay_steps;
        return s->lr + (float)frac * (s->min_lr - s->lr);
    }
    default:
        return s->lr;
    }
}

static const char *const kind_names[] = {"constant", "cosine", "wsd"};

bool ld_lr_kind_from_name(const char *name, ld_lr_kind *out) {
    for (int i = 0; i < 3; i++)
        if (name && !strcmp(name, kind_names[i])) {
            *out = (ld_lr_kind)i;
            return true;
        }
    return false;
}

const char *ld_lr_kind_name(ld_lr_kind k) {
    return (unsigned)k < 3 ? kind_names[k] : "unknown";
}

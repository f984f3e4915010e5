/* train/teacher.c — the teacher of knowledge distillation: a frozen causal LM whose logits on
 * each training batch are the student's soft targets. It keeps a tape of its own with
 * recording off, so its forward saves nothing for backward and its parameters (frozen) never
 * get gradient buffers or optimizer state; the logits live in that tape's arena until the
 * next batch, which is exactly as long as the student's backward needs them. */
#include "core/team.h"
#include "liandan/causal_lm.h"
#include "liandan/train.h"
#include "models/causal_lm_internal.h"

struct ld_teacher {
    ld_ctx *ctx;
    ld_lm *m;
    ld_tape *tape;
};

ld_status ld_teacher_new(ld_lm *m, ld_teacher **out) {
    if (!m || !out) return LD_ERR_INVALID_ARG;
    *out = NULL;
    ld_teacher *t = ld_calloc(m->ctx, 1, sizeof *t);
    if (!t) return ld_ctx_status(m->ctx);
    t->ctx = m->ctx, t->m = m;
    ld_status st = ld_tape_new(m->ctx, &t->tape);
    if (st) {
        ld_free(m->ctx, t);
        return st;
    }
    ld_tape_set_grad_enabled(t->tape, false);
    ld_params_set_trainable(ld_lm_params(m), NULL, false);
    *out = t;
    return LD_OK;
}

void ld_teacher_free(ld_teacher *t) {
    if (!t) return;
    ld_tape_free(t->tape);
    ld_lm_free(t->m);
    ld_free(t->ctx, t);
}

const ld_lm *ld_teacher_model(const ld_teacher *t) {
    return t ? t->m : NULL;
}

ld_status ld_teacher_logits(ld_teacher *t, const int32_t *ids, int64_t B, int64_t T, const ld_tensor **logits) {
    LD_TEAM_SCOPE(t ? t->ctx : NULL);
    if (!t || !ids || !logits) return LD_ERR_INVALID_ARG;
    ld_tape_reset(t->tape);
    ld_tensor *lg = NULL;
    ld_status st = ld_lm_forward(t->m, t->tape, ids, NULL, B, T, &lg, NULL);
    if (!st) *logits = lg;
    return st;
}

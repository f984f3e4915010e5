/* infer/imatrix_collect.c — gathering an importance matrix: the model reads a calibration
 * text and every matrix product's input is accumulated under the matrix's GGUF name. */
#include "liandan/infer.h"
#include "liandan/quant.h"

typedef struct collect_state {
    ld_lm *m;
    ld_imatrix *im;
    ld_status st;
} collect_state;

static void observe(void *user, const char *param, const float *x, int64_t M, int64_t K) {
    collect_state *c = user;
    char name[LD_TENSOR_NAME_MAX];
    if (c->st || !ld_lm_gguf_tensor_name(c->m, param, name, sizeof name)) return;
    c->st = ld_imatrix_add(c->im, name, x, M, K);
}

ld_status ld_lm_imatrix_collect(ld_lm_session *s, const int32_t *ids, int64_t n, int64_t chunk, ld_imatrix *im,
                                double *nll, void (*progress)(void *user, int64_t done, int64_t total),
                                void *progress_user) {
    if (!s || !ids || !im) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = ld_lm_session_ctx(s);
    if (chunk < 2 || chunk > ld_lm_session_max_len(s) || chunk > ld_lm_session_max_tokens(s))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "imatrix: chunk of %lld tokens: need 2..%lld (the session's context)",
                        (long long)chunk, (long long)ld_lm_session_max_len(s));
    if (n < chunk)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "imatrix: the calibration text has %lld tokens, less than one chunk of %lld",
                        (long long)n, (long long)chunk);
    ld_lm *m = ld_lm_session_model(s);
    int64_t V = ld_lm_config_of(m)->vocab_size, chunks = n / chunk;
    collect_state c = {m, im, LD_OK};
    double sum = 0;
    ld_lm_session_set_observer(s, observe, &c);
    ld_status st = LD_OK;
    for (int64_t i = 0; i < chunks && !st; i++) {
        const int32_t *p = ids + i * chunk;
        const float *logits;
        ld_lm_session_clear(s, 0);
        ld_lm_segment seg = {0, p, chunk};
        if ((st = ld_lm_session_eval(s, &seg, 1, true, &logits)) || (st = c.st)) break;
        for (int64_t j = 0; j + 1 < chunk; j++) sum -= ld_logprob(logits + j * V, V, p[j + 1]);
        if (progress) progress(progress_user, i + 1, chunks);
    }
    ld_lm_session_set_observer(s, NULL, NULL);
    ld_lm_session_clear(s, 0);
    if (!st && nll) *nll = sum / (double)(chunks * (chunk - 1));
    return st;
}

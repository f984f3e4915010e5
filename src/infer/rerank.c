/* infer/rerank.c — inverse-prompting rerank (文匯 / Zou et al. 2021): among candidates generated
 * for a prompt, prefer the one under which the prompt itself is most likely — the likelihood of
 * the prompt given "candidate + separator", per prompt token. */
#include "liandan/infer.h"

ld_status ld_lm_rerank_inverse(ld_lm_session *s, int n, const int32_t *const *cand, const int64_t *cand_len,
                               const int32_t *sep, int64_t sep_len, const int32_t *prompt, int64_t prompt_len,
                               double *score, int *best) {
    ld_ctx *ctx = ld_lm_session_ctx(s);
    if (!s || n < 1 || !cand || !cand_len || !prompt || prompt_len < 1 || sep_len < 0 || (sep_len && !sep) || !score)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "rerank: needs candidates, a prompt and room for the scores");
    int32_t **ctx_ids = ld_calloc(ctx, (size_t)n, sizeof *ctx_ids);
    int64_t *ctx_len = ld_calloc(ctx, (size_t)n, sizeof *ctx_len), *plen = ld_calloc(ctx, (size_t)n, sizeof *plen);
    const int32_t **conts = ld_calloc(ctx, (size_t)n, sizeof *conts);
    ld_status st = ctx_ids && ctx_len && plen && conts ? LD_OK : ld_ctx_status(ctx);
    for (int i = 0; !st && i < n; i++) {
        if (cand_len[i] + sep_len < 1) {
            st = ld_error(ctx, LD_ERR_INVALID_ARG, "rerank: candidate %d is empty and there is no separator", i);
            break;
        }
        if (!(ctx_ids[i] = ld_alloc(ctx, (size_t)(cand_len[i] + sep_len) * sizeof(int32_t)))) {
            st = ld_ctx_status(ctx);
            break;
        }
        for (int64_t k = 0; k < cand_len[i]; k++) ctx_ids[i][k] = cand[i][k];
        for (int64_t k = 0; k < sep_len; k++) ctx_ids[i][cand_len[i] + k] = sep[k];
        ctx_len[i] = cand_len[i] + sep_len, conts[i] = prompt, plen[i] = prompt_len;
    }
    if (!st) st = ld_lm_score(s, n, (const int32_t *const *)ctx_ids, ctx_len, conts, plen, score);
    if (!st) {
        int b = 0;
        for (int i = 0; i < n; i++) {
            score[i] /= (double)prompt_len;
            if (score[i] > score[b]) b = i;
        }
        if (best) *best = b;
    }
    for (int i = 0; ctx_ids && i < n; i++) ld_free(ctx, ctx_ids[i]);
    ld_free(ctx, ctx_ids), ld_free(ctx, ctx_len), ld_free(ctx, plen), ld_free(ctx, conts);
    return st;
}

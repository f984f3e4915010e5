/* infer/generate.c — batched generation: prefill every prompt (chunked to the session's
 * per-call token budget), then one eval per step for all live sequences. */
#include <math.h>
#include <string.h>

#include "liandan/infer.h"

ld_generate_params ld_generate_default_params(void) {
    ld_generate_params p = {.sample = ld_sample_default_params(), .max_tokens = 128, .eos_id = -1, .seed = 1};
    return p;
}

/* Whether tok ends a sequence: EOS or one of the stop ids. */
static bool is_stop(const ld_generate_params *p, int32_t tok) {
    if (tok == p->eos_id) return true;
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == tok) return true;
    return false;
}

/* Sequence i lives in slot `keep_slot` when that is >= 0 (then n == 1 and the slot keeps
 * what it holds: its tokens old[0..n_old) come first in the history), else in slot i
 * (cleared). Prefill in chunks of the session's per-call token budget. */
static ld_status generate(ld_lm_session *s, int n, const int32_t *const *prompts, const int64_t *prompt_len,
                          int keep_slot, const int32_t *old, int64_t n_old, const ld_generate_params *p,
                          ld_token_fn on_token, void *user, int64_t *n_generated) {
    ld_ctx *ctx = ld_lm_session_ctx(s);
    if (!s || n <= 0 || !prompts || !prompt_len || !p || (p->n_stop_ids && !p->stop_ids) || p->n_stop_ids < 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "generate: NULL argument or no prompts");
    int64_t V = ld_lm_config_of(ld_lm_session_model(s))->vocab_size;
    int64_t budget = ld_lm_session_max_tokens(s);
    if (n > ld_lm_session_slots(s) || n > budget)
        return ld_error(ctx, LD_ERR_LIMIT, "generate: %d prompts, but the session has %d slots and %lld tokens per step",
                        n, ld_lm_session_slots(s), (long long)budget);
    /* per-sequence state: history (prompt + generated) for the repetition penalty */
    int64_t max_len = ld_lm_session_max_len(s);
    size_t hist_bytes, scratch_bytes = ld_sample_scratch_bytes(V);
    if (ld_mul_size((size_t)n * (size_t)max_len, sizeof(int32_t), &hist_bytes))
        return ld_error(ctx, LD_ERR_OVERFLOW, "generate: history size overflows");
    int32_t *hist = ld_alloc(ctx, hist_bytes);
    int64_t *len = ld_calloc(ctx, (size_t)n, sizeof *len), *gen = ld_calloc(ctx, (size_t)n, sizeof *gen);
    bool *live = ld_calloc(ctx, (size_t)n, sizeof *live);
    float *last = ld_alloc(ctx, (size_t)n * (size_t)V * sizeof(float));
    void *scratch = ld_alloc(ctx, scratch_bytes);
    ld_lm_segment *segs = ld_calloc(ctx, (size_t)n, sizeof *segs);
    ld_rng *rng = ld_calloc(ctx, (size_t)n, sizeof *rng);
    int32_t *next = ld_calloc(ctx, (size_t)n, sizeof *next);
    float *z = p->constraints ? ld_alloc(ctx, (size_t)V * sizeof(float)) : NULL; /* a row to mask */
    ld_status st = LD_OK;
    if (!hist || !len || !gen || !live || !last || !scratch || !segs || !rng || !next || (p->constraints && !z)) {
        st = ld_ctx_status(ctx);
        goto out;
    }
    const int64_t held = keep_slot >= 0 ? ld_lm_session_len(s, keep_slot) : 0;
    if (keep_slot >= 0 && (held < 0 || n_old != held || (n_old && !old))) {
        st = ld_error(ctx, LD_ERR_INVALID_ARG, "generate: slot %d holds %lld tokens, %lld given as its history", keep_slot,
                      (long long)held, (long long)n_old);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (prompt_len[i] < 1 || held + prompt_len[i] >= max_len) {
            st = ld_error(ctx, LD_ERR_LIMIT, "generate: prompt %d has %lld tokens (1..%lld allowed)", i,
                          (long long)prompt_len[i], (long long)(max_len - 1 - held));
            goto out;
        }
        int32_t *h = hist + (size_t)i * (size_t)max_len;
        if (keep_slot < 0) ld_lm_session_clear(s, i);
        else if (n_old) memcpy(h, old, (size_t)n_old * sizeof(int32_t));
        memcpy(h + held, prompts[i], (size_t)prompt_len[i] * sizeof(int32_t));
        len[i] = held + prompt_len[i];
        rng[i] = ld_rng_init(ld_rng_at(p->seed, (uint64_t)i));
        live[i] = true;
    }
    /* prefill: each prompt in chunks; the last chunk's logits are the first step's */
    for (int i = 0; i < n; i++) {
        for (int64_t off = 0; off < prompt_len[i];) {
            int64_t take = prompt_len[i] - off < budget ? prompt_len[i] - off : budget;
            ld_lm_segment seg = {keep_slot >= 0 ? keep_slot : i, prompts[i] + off, take};
            const float *lg;
            if ((st = ld_lm_session_eval(s, &seg, 1, false, &lg))) goto out;
            off += take;
            if (off == prompt_len[i]) memcpy(last + (size_t)i * (size_t)V, lg, (size_t)V * sizeof(float));
        }
    }
    for (;;) {
        int n_live = 0;
        for (int i = 0; i < n; i++) {
            if (!live[i]) continue;
            int32_t *h = hist + (size_t)i * (size_t)max_len;
            const float *row = last + (size_t)i * (size_t)V;
            const ld_lm_constraint *c = p->constraints ? &p->constraints[i] : NULL;
            if (c && c->mask) { /* the constraint's mask; nothing allowed ends the sequence */
                memcpy(z, row, (size_t)V * sizeof(float));
                bool any = false;
                if (c->mask(c->user, z, V) == LD_OK)
                    for (int64_t v = 0; v < V && !any; v++) any = z[v] > -INFINITY;
                if (!any) {
                    live[i] = false;
                    continue;
                }
                row = z;
            }
            int32_t tok = ld_sample_token(row, V, &p->sample, h, len[i], &rng[i], scratch);
            if (is_stop(p, tok) || gen[i] >= p->max_tokens || (c && c->accept && c->accept(c->user, tok) != LD_OK)) {
                live[i] = false;
                continue;
            }
            gen[i]++;
            h[len[i]++] = tok;
            if ((on_token && !on_token(user, i, tok)) || gen[i] >= p->max_tokens || len[i] >= max_len) {
                live[i] = false;
                continue;
            }
            next[i] = tok;
            segs[n_live++] = (ld_lm_segment){keep_slot >= 0 ? keep_slot : i, &next[i], 1};
        }
        if (!n_live) break;
        const float *lg;
        if ((st = ld_lm_session_eval(s, segs, n_live, false, &lg))) goto out;
        for (int j = 0, i = 0; j < n_live; j++, i++) {
            while (!live[i]) i++; /* segments are in order of the live sequences */
            memcpy(last + (size_t)i * (size_t)V, lg + (size_t)j * (size_t)V, (size_t)V * sizeof(float));
        }
    }
    if (n_generated) memcpy(n_generated, gen, (size_t)n * sizeof *gen);
out:
    ld_free(ctx, hist), ld_free(ctx, len), ld_free(ctx, gen), ld_free(ctx, live), ld_free(ctx, last);
    ld_free(ctx, scratch), ld_free(ctx, segs), ld_free(ctx, rng), ld_free(ctx, next), ld_free(ctx, z);
    return st;
}

ld_status ld_lm_generate(ld_lm_session *s, int n, const int32_t *const *prompts, const int64_t *prompt_len,
                         const ld_generate_params *p, ld_token_fn on_token, void *user, int64_t *n_generated) {
    return generate(s, n, prompts, prompt_len, -1, NULL, 0, p, on_token, user, n_generated);
}

ld_status ld_lm_generate_continue(ld_lm_session *s, int slot, const int32_t *held, int64_t n_held, const int32_t *ids,
                                  int64_t n, const ld_generate_params *p, ld_token_fn on_token, void *user,
                                  int64_t *n_generated) {
    if (s && (slot < 0 || slot >= ld_lm_session_slots(s)))
        return ld_error(ld_lm_session_ctx(s), LD_ERR_INVALID_ARG, "generate: slot %d of %d", slot, ld_lm_session_slots(s));
    return generate(s, 1, &ids, &n, slot, held, n_held, p, on_token, user, n_generated);
}

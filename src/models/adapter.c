/* models/adapter.c — adapters on a causal LM: LoRA branches on chosen matrices, prompt
 * tuning's virtual tokens (and per-layer prompts), a classification head; the hooks the
 * model's forward calls, merging LoRA into the weights, and the classification forward. */
#include <fnmatch.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/adapter_internal.h"

#define TRY(call)                                                                        \
    do {                                                                                 \
        ld_status st_ = (call);                                                          \
        if (st_) return st_;                                                             \
    } while (0)

ld_adapter_config ld_adapter_default_config(void) {
    ld_adapter_config c = {.method = LD_ADAPTER_NONE, .rank = 8, .alpha = 16.0f, .dropout = 0.0f,
                           .virtual_tokens = 20, .per_layer = false, .n_labels = 0, .pooling = LD_POOL_LAST};
    return c;
}

static const char *const method_names[] = {[LD_ADAPTER_NONE] = "none", [LD_ADAPTER_LORA] = "lora",
                                           [LD_ADAPTER_PROMPT] = "prompt"};

bool ld_adapter_method_from_name(const char *name, ld_adapter_method *out) {
    for (int i = 0; name && i < (int)(sizeof method_names / sizeof method_names[0]); i++)
        if (!strcmp(name, method_names[i])) return *out = (ld_adapter_method)i, true;
    return false;
}

const char *ld_adapter_method_name(ld_adapter_method m) {
    return (unsigned)m < sizeof method_names / sizeof method_names[0] ? method_names[m] : "?";
}

/* ---- which matrices get a LoRA --------------------------------------------------------- */

/* One pattern against a parameter name without ".weight": "all-linear" (PEFT's word for every
 * layer matrix), equal to its last component, or a glob over the whole name. */
static bool pattern_matches(const char *pat, size_t plen, const char *name) {
    char p[128];
    if (plen == 0 || plen >= sizeof p) return false;
    memcpy(p, pat, plen);
    p[plen] = 0;
    if (!strcmp(p, "all-linear")) return true; /* the caller passes layer matrices only */
    const char *last = strrchr(name, '.');
    if (!strcmp(last ? last + 1 : name, p)) return true;
    return fnmatch(p, name, 0) == 0;
}

static bool matches_any(const char *patterns, const char *name) {
    for (const char *s = patterns; *s;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        while (len && s[0] == ' ') s++, len--;
        while (len && s[len - 1] == ' ') len--;
        if (pattern_matches(s, len, name)) return true;
        if (!e) break;
        s = e + 1;
    }
    return false;
}

/* The layers' 2-D matrices (never embeddings, positions or the head). */
static bool is_layer_matrix(const ld_lm *m, const ld_tensor *w) {
    return w->ndim == 2 && w != m->wte && w != m->wpe && w != m->lm_head;
}

int lm_adapter_targets(ld_lm *m, const char *patterns, void (*fn)(void *user, ld_tensor *w), void *user) {
    int n = 0;
    for (int i = 0; i < ld_params_count(m->params); i++) {
        ld_tensor *w = ld_params_at(m->params, i);
        if (!is_layer_matrix(m, w)) continue;
        char name[LD_TENSOR_NAME_MAX];
        snprintf(name, sizeof name, "%s", w->name);
        size_t len = strlen(name);
        if (len > 7 && !strcmp(name + len - 7, ".weight")) name[len - 7] = 0;
        if (!matches_any(patterns, name)) continue;
        if (fn) fn(user, w);
        n++;
    }
    if (n == 0) {
        /* name the model's matrices so the user can write a pattern that matches */
        char list[512] = "";
        for (int i = 0, shown = 0; i < ld_params_count(m->params) && shown < 9; i++) {
            const ld_tensor *w = ld_params_at(m->params, i);
            if (!is_layer_matrix(m, w) || strstr(w->name, "layers.1.") || strstr(w->name, "h.1.")) continue;
            const char *nm = w->name;
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", shown++ ? ", " : "", nm);
            if (strstr(nm, ".0.") == NULL) break;
        }
        ld_error(m->ctx, LD_ERR_INVALID_ARG, "LoRA targets '%s' match no matrix of the model (its matrices: %s, ...)",
                 patterns, list);
        return -1;
    }
    return n;
}

/* ---- construction ------------------------------------------------------------------------ */

typedef struct add_state {
    ld_adapter *a;
    ld_status st;
} add_state;

static ld_status add_param(ld_adapter *a, const char *name, int64_t d0, int64_t d1, ld_tensor **out) {
    int ndim = d1 ? 2 : 1;
    return ld_params_add(a->params, name, ndim, (int64_t[]){d0, d1}, true, out);
}

static void add_lora(void *user, ld_tensor *w) {
    add_state *s = user;
    ld_adapter *a = s->a;
    if (s->st) return;
    lora_pair *p = &a->lora[a->n_lora];
    p->w = w;
    p->w_kn = a->m->cfg.arch == LD_ARCH_GPT2; /* Conv1D: stored [K, N] */
    p->N = p->w_kn ? w->shape[1] : w->shape[0];
    p->K = p->w_kn ? w->shape[0] : w->shape[1];
    char base[LD_TENSOR_NAME_MAX], name[LD_TENSOR_NAME_MAX + 16];
    snprintf(base, sizeof base, "%s", w->name);
    size_t len = strlen(base);
    if (len > 7 && !strcmp(base + len - 7, ".weight")) base[len - 7] = 0;
    snprintf(name, sizeof name, "%s.lora_A.weight", base);
    if ((s->st = add_param(a, name, a->cfg.rank, p->K, &p->a))) return;
    snprintf(name, sizeof name, "%s.lora_B.weight", base);
    if ((s->st = add_param(a, name, p->N, a->cfg.rank, &p->b))) return;
    a->n_lora++;
}

static ld_status check_config(ld_lm *m, const ld_adapter_config *c) {
    ld_ctx *ctx = m->ctx;
    if ((unsigned)c->method > LD_ADAPTER_PROMPT) return ld_error(ctx, LD_ERR_INVALID_ARG, "adapter: unknown method %d", c->method);
    if (c->method == LD_ADAPTER_LORA) {
        if (c->rank < 1 || c->rank > 4096)
            return ld_error(ctx, LD_ERR_INVALID_ARG, "LoRA rank %lld outside 1..4096", (long long)c->rank);
        if (!(c->alpha > 0) || !isfinite(c->alpha))
            return ld_error(ctx, LD_ERR_INVALID_ARG, "LoRA alpha %g must be a positive number", (double)c->alpha);
        if (!(c->dropout >= 0 && c->dropout < 1))
            return ld_error(ctx, LD_ERR_INVALID_ARG, "LoRA dropout %g outside [0, 1)", (double)c->dropout);
    }
    if (c->method == LD_ADAPTER_PROMPT && (c->virtual_tokens < 1 || c->virtual_tokens >= m->cfg.max_position))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "prompt tuning: %lld virtual tokens outside 1..%lld (max_position - 1)",
                        (long long)c->virtual_tokens, (long long)m->cfg.max_position - 1);
    if (c->n_labels < 0 || c->n_labels == 1 || c->n_labels > LD_ADAPTER_MAX_LABELS)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "classification head: %lld labels (need 2..%d, or 0 for none)",
                        (long long)c->n_labels, LD_ADAPTER_MAX_LABELS);
    if (c->pooling != LD_POOL_LAST && c->pooling != LD_POOL_MEAN)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "classification head: pooling must be last or mean (%d)", (int)c->pooling);
    if (c->method == LD_ADAPTER_NONE && c->n_labels == 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "an adapter needs a method (lora, prompt) or a classification head");
    return LD_OK;
}

ld_status lm_adapter_create(ld_lm *m, const ld_adapter_config *c, ld_adapter **out) {
    if (!m || !c || !out) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    *out = NULL;
    if (m->adapter) return ld_error(ctx, LD_ERR_STATE, "the model already has an adapter attached");
    if (!lm_can_compute(m, "adapter")) return ld_ctx_status(ctx);
    ld_adapter_config cfg = *c;
    if (cfg.method == LD_ADAPTER_LORA && !cfg.targets[0]) /* q and v: in one matrix when it is fused */
        snprintf(cfg.targets, sizeof cfg.targets, "%s", m->cfg.arch == LD_ARCH_GPT2 ? "c_attn"
                                                        : lm_family(m->cfg.family)->fused_qkv ? "qkv_proj"
                                                                                               : "q_proj,v_proj");
    TRY(check_config(m, &cfg));
    TRY(lm_forms_hf_order(m)); /* a base read in place: q/k rows in HF's order for the training forward */
    for (int i = 0; m->in_place && i < ld_params_count(m->params); i++) {
        ld_tensor *w = ld_params_at(m->params, i);
        ld_frozen_matrix fm;
        if (!w->data && !lm_frozen_form(m, w, &fm))
            return ld_error(ctx, LD_ERR_UNSUPPORTED,
                            "the base is read in place and its '%s' is in a form the training forward cannot read "
                            "(GPT-2 [in, out] F32): load the base for training (an F32 copy) instead",
                            w->name);
    }
    ld_adapter *a = ld_calloc(ctx, 1, sizeof *a);
    if (!a) return ld_ctx_status(ctx);
    a->ctx = ctx, a->m = m, a->cfg = cfg;
    a->scale = cfg.method == LD_ADAPTER_LORA ? cfg.alpha / (float)cfg.rank : 0.0f;
    ld_status st = ld_params_new(ctx, &a->params);
    int64_t C = m->cfg.hidden_size, P = cfg.virtual_tokens;
    if (!st && cfg.method == LD_ADAPTER_LORA) {
        int n = lm_adapter_targets(m, cfg.targets, NULL, NULL);
        if (n < 0) st = ld_ctx_status(ctx);
        else if (!(a->lora = ld_calloc(ctx, (size_t)n, sizeof *a->lora))) st = ld_ctx_status(ctx);
        add_state s = {a, LD_OK};
        if (!st) lm_adapter_targets(m, cfg.targets, add_lora, &s), st = s.st;
    }
    if (!st && cfg.method == LD_ADAPTER_PROMPT) {
        st = add_param(a, "prompt_embeddings", P, C, &a->prompt);
        if (!st && cfg.per_layer && !(a->layer_prompt = ld_calloc(ctx, (size_t)m->cfg.n_layers, sizeof *a->layer_prompt)))
            st = ld_ctx_status(ctx);
        for (int l = 1; !st && cfg.per_layer && l < m->cfg.n_layers; l++) {
            char name[64];
            snprintf(name, sizeof name, "prompt_layers.%d", l);
            st = add_param(a, name, P, C, &a->layer_prompt[l]);
        }
    }
    if (!st && cfg.n_labels) st = add_param(a, "score.weight", cfg.n_labels, C, &a->score);
    if (st) {
        ld_adapter_free(a);
        return st;
    }
    m->adapter = a;
    *out = a;
    return LD_OK;
}

/* Row `id` of the token embedding as floats (from its F32 values or its block form). */
static ld_status embedding_row(ld_lm *m, int32_t id, float *out) {
    ld_frozen_matrix fm;
    int64_t C = m->cfg.hidden_size;
    if (!lm_frozen_form(m, m->wte, &fm)) {
        memcpy(out, (const float *)m->wte->data + (int64_t)id * C, (size_t)C * sizeof(float));
        return LD_OK;
    }
    return fm.decode(m->ctx, fm.dtype, (const char *)fm.data + (size_t)id * fm.row_bytes, out, C);
}

ld_status ld_adapter_new(ld_lm *m, const ld_adapter_config *c, uint64_t seed, ld_adapter **out) {
    ld_adapter *a = NULL;
    TRY(lm_adapter_create(m, c, &a));
    ld_rng rng = ld_rng_init(seed);
    for (int i = 0; i < a->n_lora; i++) { /* A ~ U(+-1/sqrt(K)) (PEFT's kaiming-uniform), B = 0 */
        const lora_pair *p = &a->lora[i];
        float *x = p->a->data, bound = 1.0f / sqrtf((float)p->K);
        for (int64_t j = 0; j < ld_tensor_numel(p->a); j++) x[j] = bound * (2.0f * ld_rng_uniform(&rng) - 1.0f);
    }
    ld_status st = LD_OK;
    if (a->prompt) /* embeddings of random tokens */
        for (int64_t r = 0; r < a->prompt->shape[0] && !st; r++)
            st = embedding_row(m, (int32_t)ld_rng_below(&rng, (uint64_t)m->cfg.vocab_size),
                               (float *)a->prompt->data + r * m->cfg.hidden_size);
    if (a->score) {
        float *x = a->score->data;
        for (int64_t j = 0; j < ld_tensor_numel(a->score); j++) x[j] = m->cfg.init_std * ld_rng_normal(&rng);
    }
    if (st) {
        ld_adapter_free(a);
        return st;
    }
    lm_adapter_freeze_base(a);
    *out = a;
    return LD_OK;
}

void lm_adapter_freeze_base(ld_adapter *a) {
    if (a->cfg.method == LD_ADAPTER_NONE) return;
    ld_params_set_trainable(a->m->params, NULL, false); /* a base read in place (QLoRA) computes from its forms */
}

void ld_adapter_free(ld_adapter *a) {
    if (!a) return;
    if (a->m && a->m->adapter == a) a->m->adapter = NULL;
    for (int64_t i = 0; a->labels && i < a->cfg.n_labels; i++) free(a->labels[i]);
    free(a->labels);
    ld_free(a->ctx, a->lora);
    ld_free(a->ctx, a->layer_prompt);
    ld_params_free(a->params);
    ld_free(a->ctx, a);
}

void lm_adapter_detach(ld_adapter *a) {
    a->m = NULL;
}

const ld_adapter_config *ld_adapter_config_of(const ld_adapter *a) {
    return a ? &a->cfg : NULL;
}
ld_params *ld_adapter_params(ld_adapter *a) {
    return a ? a->params : NULL;
}
ld_lm *ld_adapter_model(const ld_adapter *a) {
    return a ? a->m : NULL;
}
ld_adapter *ld_lm_adapter(const ld_lm *m) {
    return m ? m->adapter : NULL;
}
bool ld_adapter_is_merged(const ld_adapter *a) {
    return a && a->merged;
}

ld_status ld_adapter_set_labels(ld_adapter *a, const char *const *names, int64_t n) {
    if (!a || !names) return LD_ERR_INVALID_ARG;
    if (n != a->cfg.n_labels)
        return ld_error(a->ctx, LD_ERR_INVALID_ARG, "%lld label names for a head of %lld labels", (long long)n,
                        (long long)a->cfg.n_labels);
    char **l = calloc((size_t)n + 1, sizeof *l);
    for (int64_t i = 0; l && i < n; i++)
        if (!(l[i] = strdup(names[i] ? names[i] : ""))) {
            for (int64_t j = 0; j < i; j++) free(l[j]);
            free(l), l = NULL;
        }
    if (!l) return ld_error(a->ctx, LD_ERR_NOMEM, "out of memory for label names");
    for (int64_t i = 0; a->labels && i < n; i++) free(a->labels[i]);
    free(a->labels);
    a->labels = l;
    return LD_OK;
}

const char *ld_adapter_label(const ld_adapter *a, int64_t i) {
    static _Thread_local char buf[32];
    if (!a || i < 0 || i >= a->cfg.n_labels) return "";
    if (a->labels) return a->labels[i];
    snprintf(buf, sizeof buf, "LABEL_%lld", (long long)i);
    return buf;
}

/* ---- merging ------------------------------------------------------------------------------ */

static ld_status merge(ld_adapter *a, float sign) {
    if (!a) return LD_ERR_INVALID_ARG;
    if (a->cfg.method != LD_ADAPTER_LORA)
        return ld_error(a->ctx, LD_ERR_UNSUPPORTED, "only a LoRA adapter merges into the weights (this one is %s)",
                        ld_adapter_method_name(a->cfg.method));
    if (a->merged == (sign > 0))
        return ld_error(a->ctx, LD_ERR_STATE, "the LoRA adapter is %s merged", sign > 0 ? "already" : "not");
    ld_lm *m = a->m;
    for (int i = 0; i < a->n_lora; i++) {
        const lm_form *f = lm_form_of(m, a->lora[i].w);
        if (!a->lora[i].w->data)
            return ld_error(a->ctx, LD_ERR_UNSUPPORTED,
                            "cannot merge into '%s': the base is read in place from its file (%s); load it for "
                            "training (an F32 copy) to merge",
                            a->lora[i].w->name, f ? ld_dtype_traits(f->dtype)->name : "no values");
    }
    const ld_kernels *k = ld_kernels_get(LD_BACKEND_AUTO);
    int64_t r = a->cfg.rank;
    for (int i = 0; i < a->n_lora; i++) {
        const lora_pair *p = &a->lora[i];
        float s = sign * a->scale;
        if (p->w_kn) /* W [K, N] += s A^T B^T */
            k->gemm_f32(true, true, p->K, p->N, r, s, p->a->data, p->K, p->b->data, r, 1.0f, p->w->data, p->N);
        else /* W [N, K] += s B A */
            k->gemm_f32(false, false, p->N, p->K, r, s, p->b->data, r, p->a->data, p->K, 1.0f, p->w->data, p->K);
    }
    ld_params_refresh_bf16(m->params);
    a->merged = sign > 0;
    return LD_OK;
}

ld_status ld_adapter_merge(ld_adapter *a) {
    return merge(a, 1.0f);
}
ld_status ld_adapter_unmerge(ld_adapter *a) {
    return merge(a, -1.0f);
}

/* ---- forward hooks --------------------------------------------------------------------------- */

ld_status lm_adapter_lora(ld_adapter *a, ld_tape *t, const ld_tensor *x, const ld_tensor *w, ld_tensor **y) {
    if (a->merged || !a->n_lora) return LD_OK;
    const lora_pair *p = NULL;
    for (int i = 0; i < a->n_lora && !p; i++)
        if (a->lora[i].w == w) p = &a->lora[i];
    if (!p) return LD_OK;
    ld_tensor *xin = (ld_tensor *)x;
    if (a->cfg.dropout > 0 && t->grad_enabled) TRY(ld_op_dropout(t, x, a->cfg.dropout, &xin));
    return ld_op_lora(t, xin, *y, p->a, p->b, a->scale, y); /* y + scale (x A^T) B^T */
}

int64_t lm_adapter_prompt_len(const ld_adapter *a) {
    return a && a->prompt ? a->prompt->shape[0] : 0;
}

ld_status lm_adapter_prompt(ld_adapter *a, ld_tape *t, ld_tensor *x, int layer, ld_tensor **y) {
    if (layer < 0) return ld_op_rows_insert(t, x, a->prompt, false, y);
    if (a->layer_prompt && a->layer_prompt[layer]) return ld_op_rows_insert(t, x, a->layer_prompt[layer], true, y);
    *y = x;
    return LD_OK;
}

ld_status ld_lm_classify(ld_lm *m, ld_tape *t, const int32_t *ids, const int32_t *lengths, int64_t B, int64_t T,
                         ld_tensor **logits) {
    if (!m || !t || !ids || !lengths || !logits) return LD_ERR_INVALID_ARG;
    ld_adapter *a = m->adapter;
    if (!a || !a->score)
        return ld_error(m->ctx, LD_ERR_STATE, "classification needs an adapter with a head (n_labels > 0)");
    ld_tensor *h, *pooled;
    TRY(lm_forward_hidden(m, t, ids, B, T, &h));
    TRY(ld_op_pool(t, h, lengths, a->cfg.pooling == LD_POOL_MEAN, &pooled));
    return ld_op_linear(t, pooled, a->score, NULL, false, logits);
}

/* models/causal_lm.c — the decoder-only transformer: parameters with Hugging Face names,
 * initialisation, and the forward pass recorded on the tape (backward comes from the tape),
 * with an attached adapter's LoRA branches and prompt rows (models/adapter.c). */
#define _DEFAULT_SOURCE /* madvise */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/comm.h"
#include "core/team.h"
#include "liandan/io.h"
#include "liandan/quant.h"
#include "models/causal_lm_internal.h"

ld_lm_config ld_lm_default_config(ld_lm_arch arch) {
    ld_lm_config c = {.arch = arch, .vocab_size = 8192, .hidden_size = 256, .n_layers = 4, .n_heads = 4,
                      .n_kv_heads = 4, .intermediate_size = 688, .max_position = 256, .norm_eps = 1e-5f,
                      .rope_theta = 10000.0f, .init_std = 0.02f, .tie_embeddings = true, .bos_token_id = 1,
                      .eos_token_id = 2};
    if (arch == LD_ARCH_GPT2) c.intermediate_size = 4 * c.hidden_size, c.family = LD_FAMILY_GPT2;
    return c;
}

int64_t ld_lm_head_dim(const ld_lm_config *c) {
    return c->head_dim > 0 ? c->head_dim : c->n_heads > 0 ? c->hidden_size / c->n_heads : 0;
}

bool ld_lm_layer_sliding(const ld_lm_config *c, int64_t layer) {
    if (c->sliding_window <= 0) return false;
    return c->sliding_window_pattern <= 1 || layer % c->sliding_window_pattern < c->sliding_window_pattern - 1;
}

void lm_rope_freqs(const ld_lm *m, int64_t seq_len, float *inv_freq, float *mscale) {
    ld_lm_rope_freqs(&m->cfg, seq_len, inv_freq, mscale);
    for (int64_t i = 0; m->rope_factors && i < ld_lm_head_dim(&m->cfg) / 2; i++) inv_freq[i] /= m->rope_factors[i];
}

ld_status ld_lm_config_validate(ld_ctx *ctx, const ld_lm_config *c) {
    if (!c) return ld_error(ctx, LD_ERR_INVALID_ARG, "model config is NULL");
    if (c->arch != LD_ARCH_LLAMA && c->arch != LD_ARCH_GPT2)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "model config: unknown architecture %d", (int)c->arch);
    const lm_family_info *fam = lm_family(c->family);
#define NEED(cond, ...) \
    if (!(cond)) return ld_error(ctx, LD_ERR_INVALID_ARG, "model config: " __VA_ARGS__)
    NEED(fam && fam->arch == c->arch, "model family %d does not match the architecture", (int)c->family);
    NEED(c->vocab_size > 0 && c->vocab_size <= (1 << 24), "vocab_size %lld outside 1..16777216", (long long)c->vocab_size);
    NEED(c->hidden_size > 0 && c->hidden_size <= 65536, "hidden_size %lld outside 1..65536", (long long)c->hidden_size);
    NEED(c->n_layers > 0 && c->n_layers <= 1024, "num_hidden_layers %lld outside 1..1024", (long long)c->n_layers);
    NEED(c->n_heads > 0 && c->n_heads <= 4096, "num_attention_heads %lld outside 1..4096", (long long)c->n_heads);
    NEED(c->head_dim >= 0 && c->head_dim <= 4096, "head_dim %lld outside 1..4096", (long long)c->head_dim);
    NEED(c->head_dim > 0 || c->hidden_size % c->n_heads == 0,
         "hidden_size %lld is not divisible by num_attention_heads %lld", (long long)c->hidden_size, (long long)c->n_heads);
    NEED(c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0,
         "num_attention_heads %lld is not a multiple of num_key_value_heads %lld", (long long)c->n_heads,
         (long long)c->n_kv_heads);
    const int64_t D = ld_lm_head_dim(c);
    NEED(c->n_heads * D <= 1 << 20, "num_attention_heads x head_dim = %lld is too large", (long long)(c->n_heads * D));
    NEED(c->arch != LD_ARCH_GPT2 || c->n_kv_heads == c->n_heads, "gpt2 has no grouped-query attention (n_kv_heads %lld != n_heads %lld)",
         (long long)c->n_kv_heads, (long long)c->n_heads);
    NEED(c->arch != LD_ARCH_GPT2 || (c->head_dim == 0 || c->head_dim * c->n_heads == c->hidden_size),
         "gpt2's head size is hidden_size / heads");
    NEED(c->arch != LD_ARCH_LLAMA || D % 2 == 0, "head size %lld must be even for RoPE", (long long)D);
    NEED(c->intermediate_size > 0 && c->intermediate_size <= 1 << 20, "intermediate_size %lld outside 1..1048576",
         (long long)c->intermediate_size);
    NEED(c->max_position > 0 && c->max_position <= 1 << 20, "max_position_embeddings %lld outside 1..1048576",
         (long long)c->max_position);
    NEED(c->norm_eps > 0 && c->norm_eps < 1, "norm epsilon %g outside (0, 1)", c->norm_eps);
    NEED(c->arch != LD_ARCH_LLAMA || c->rope_theta > 0, "rope_theta %g must be positive", c->rope_theta);
    NEED(c->init_std > 0, "initializer_range %g must be positive", c->init_std);
    NEED(!fam->always_tied || c->tie_embeddings, "%s always ties its embeddings", fam->model_type);
    NEED(c->arch != LD_ARCH_GPT2 || !c->qkv_bias, "gpt2 has no separate q/k/v biases");
    NEED(c->n_eos_token_ids >= 0 && c->n_eos_token_ids <= LD_LM_MAX_EOS, "%d EOS ids (at most %d)", c->n_eos_token_ids,
         LD_LM_MAX_EOS);
    const ld_rope_scaling *rs = &c->rope_scaling;
    NEED(rs->type >= LD_ROPE_SCALING_NONE && rs->type <= LD_ROPE_SCALING_YARN, "unknown rope_scaling type %d", (int)rs->type);
    NEED(rs->type == LD_ROPE_SCALING_NONE || c->arch == LD_ARCH_LLAMA, "gpt2 has no RoPE to scale");
    NEED(rs->type == LD_ROPE_SCALING_NONE || (rs->factor > 0 && rs->factor <= 1024),
         "rope_scaling factor %g outside (0, 1024]", rs->factor);
    NEED(rs->type <= LD_ROPE_SCALING_LINEAR || rs->factor >= 1, "rope_scaling factor %g must be at least 1", rs->factor);
    NEED(rs->original_max_position >= 0 && rs->original_max_position <= 1 << 24,
         "original_max_position_embeddings %lld out of range", (long long)rs->original_max_position);
    NEED(rs->type != LD_ROPE_SCALING_LLAMA3 || (rs->low_freq_factor > 0 && rs->high_freq_factor > rs->low_freq_factor),
         "rope_scaling llama3 needs 0 < low_freq_factor (%g) < high_freq_factor (%g)", rs->low_freq_factor,
         rs->high_freq_factor);
    NEED(rs->type != LD_ROPE_SCALING_YARN || (rs->beta_fast > 0 && rs->beta_slow > 0 && rs->attention_factor >= 0),
         "rope_scaling yarn needs positive beta_fast (%g) and beta_slow (%g)", rs->beta_fast, rs->beta_slow);
    NEED(c->sliding_window >= 0 && c->sliding_window <= 1 << 24, "sliding_window %lld out of range",
         (long long)c->sliding_window);
    NEED(c->sliding_window_pattern >= 0 && c->sliding_window_pattern <= 64, "sliding window pattern %d outside 0..64",
         c->sliding_window_pattern);
    NEED(c->sliding_window == 0 || c->arch == LD_ARCH_LLAMA, "gpt2 has no sliding window");
    NEED(c->attn_softcap >= 0 && c->final_softcap >= 0 && c->query_scale >= 0 && isfinite(c->attn_softcap) &&
             isfinite(c->final_softcap) && isfinite(c->query_scale),
         "soft-caps (%g, %g) and query scale (%g) must be finite and not negative", c->attn_softcap, c->final_softcap,
         c->query_scale);
    NEED((c->n_experts > 0) == (fam->experts != NULL), "%s %s (num_local_experts %lld)", fam->model_type,
         fam->experts ? "needs experts" : "has no experts", (long long)c->n_experts);
    NEED(c->shared_expert_size == 0 || fam->shared[0], "%s has no shared expert (shared_expert_intermediate_size %lld)",
         fam->model_type, (long long)c->shared_expert_size);
    NEED(c->moe_intermediate_size >= 0 && c->moe_intermediate_size <= 1 << 20 && c->shared_expert_size >= 0 &&
             c->shared_expert_size <= 1 << 20,
         "moe_intermediate_size %lld / shared_expert_intermediate_size %lld outside 0..1048576",
         (long long)c->moe_intermediate_size, (long long)c->shared_expert_size);
    NEED(c->n_experts >= 0 && c->n_experts <= 1024, "num_local_experts %lld outside 0..1024", (long long)c->n_experts);
    NEED(!c->n_experts || (c->n_experts_used >= 1 && c->n_experts_used <= c->n_experts && c->n_experts_used <= LD_MOE_MAX_K),
         "num_experts_per_tok %lld outside 1..min(num_local_experts %lld, %d)", (long long)c->n_experts_used,
         (long long)c->n_experts, LD_MOE_MAX_K);
    NEED(c->router_aux_loss_coef >= 0 && c->router_z_loss_coef >= 0 && c->moe_capacity_factor >= 0 &&
             isfinite(c->router_aux_loss_coef) && isfinite(c->router_z_loss_coef) && isfinite(c->moe_capacity_factor),
         "router_aux_loss_coef (%g), router_z_loss_coef (%g) and moe_capacity_factor (%g) must be finite and not negative",
         c->router_aux_loss_coef, c->router_z_loss_coef, c->moe_capacity_factor);
#undef NEED
    return LD_OK;
}

/* The MLP's matrix parameters per layer: 3 C I dense, E experts of 3 C I and the router's E C
 * with experts; *active = those one token multiplies (k experts). */
static int64_t mlp_params(const ld_lm_config *c, int64_t *active) {
    const int64_t C = c->hidden_size, I = lm_expert_width(c), S = c->shared_expert_size;
    if (!c->n_experts) return *active = 3 * C * c->intermediate_size;
    const int64_t shared = S ? 3 * C * S + C : 0, router = c->n_experts * C;
    *active = c->n_experts_used * 3 * C * I + router + shared;
    return c->n_experts * 3 * C * I + router + shared;
}

int64_t ld_lm_config_num_params(const ld_lm_config *c) {
    const lm_family_info *fam = lm_family(c->family);
    int64_t C = c->hidden_size, D = ld_lm_head_dim(c), I = c->intermediate_size, V = c->vocab_size;
    int64_t q = c->n_heads * D, kv = c->n_kv_heads * D, per_layer, n;
    if (c->arch == LD_ARCH_LLAMA) {
        int64_t act;
        per_layer = 2 * C + C * q + 2 * C * kv + q * C + mlp_params(c, &act) + (c->qkv_bias ? q + 2 * kv : 0);
        if (fam && fam->qk_norm) per_layer += 2 * D;
        if (fam && fam->sandwich_norms) per_layer += 2 * C;
        n = V * C + c->n_layers * per_layer + C + (c->tie_embeddings ? 0 : V * C);
    } else {
        per_layer = 4 * C + C * 3 * C + 3 * C + C * C + C + C * I + I + I * C + C;
        n = V * C + c->max_position * C + c->n_layers * per_layer + 2 * C;
    }
    return n;
}

void ld_lm_rope_freqs(const ld_lm_config *c, int64_t seq_len, float *inv_freq, float *mscale) {
    const int64_t D = ld_lm_head_dim(c), half = D / 2;
    const ld_rope_scaling *rs = &c->rope_scaling;
    const double orig = (double)(rs->original_max_position > 0 ? rs->original_max_position : c->max_position);
    double base = c->rope_theta;
    *mscale = 1.0f;
    if (rs->type == LD_ROPE_SCALING_DYNAMIC && (double)seq_len > orig) /* NTK: a larger base for longer sequences */
        base *= pow(rs->factor * (double)seq_len / orig - (rs->factor - 1), (double)D / (double)(D - 2));
    /* YaRN's correction range: the dimensions whose wavelength fits beta_fast / beta_slow
     * turns in the original context */
    double lo = 0, hi = 0;
    if (rs->type == LD_ROPE_SCALING_YARN) {
        lo = floor((double)D * log(orig / (rs->beta_fast * 2 * M_PI)) / (2 * log(base)));
        hi = ceil((double)D * log(orig / (rs->beta_slow * 2 * M_PI)) / (2 * log(base)));
        lo = lo > 0 ? lo : 0, hi = hi < (double)(D - 1) ? hi : (double)(D - 1);
        if (hi == lo) hi += 0.001;
        *mscale = rs->attention_factor > 0 ? rs->attention_factor
                  : rs->factor <= 1           ? 1.0f
                                              : (float)(0.1 * log(rs->factor) + 1.0);
    }
    for (int64_t i = 0; i < half; i++) {
        double f = pow(base, -2.0 * (double)i / (double)D);
        switch (rs->type) {
        case LD_ROPE_SCALING_LINEAR: f /= rs->factor; break;
        case LD_ROPE_SCALING_LLAMA3: {
            double wavelen = 2 * M_PI / f, low_wl = orig / rs->low_freq_factor, high_wl = orig / rs->high_freq_factor;
            if (wavelen > low_wl) f /= rs->factor; /* low frequencies: interpolated */
            else if (wavelen >= high_wl) {         /* the band between: a smooth mix */
                double smooth = (orig / wavelen - rs->low_freq_factor) / (rs->high_freq_factor - rs->low_freq_factor);
                f = (1 - smooth) * f / rs->factor + smooth * f;
            }
            break;
        }
        case LD_ROPE_SCALING_YARN: {
            double ramp = ((double)i - lo) / (hi - lo), extrap = 1 - (ramp < 0 ? 0 : ramp > 1 ? 1 : ramp);
            f = f / rs->factor * (1 - extrap) + f * extrap;
            break;
        }
        default: break;
        }
        inv_freq[i] = (float)f;
    }
}

double ld_lm_train_flops_per_token(const ld_lm_config *c, int64_t T) {
    int64_t act, all = mlp_params(c, &act); /* experts: only the k a token goes through */
    return 6.0 * (double)(ld_lm_config_num_params(c) - c->n_layers * (all - act)) +
           6.0 * (double)c->n_layers * (double)(c->n_heads * ld_lm_head_dim(c)) * (double)T;
}

/* ---- construction ----------------------------------------------------------------- */

typedef struct init_state {
    ld_lm *m;
    ld_rng rng;
    lm_init init;
    ld_status st;
    bool absent; /* the parameter being added is an expert's this model does not hold (lm_build_part) */
} init_state;

enum { INIT_NORMAL, INIT_RESID, INIT_ZERO, INIT_ONE, INIT_POS };

/* A lazily initialised model's generator (LM_INIT_LAZY): the matrices' random values are drawn
 * from the one stream ld_lm_new draws them from, in parameter order, when lm_values reads
 * them. Reading in parameter order (as the exporters do) draws each value once; reading an
 * earlier parameter restarts the stream. */
typedef struct lm_lazy {
    uint64_t seed;
    ld_rng rng;
    int next;        /* the parameter the stream stands at */
    uint8_t *kinds;  /* INIT_* of each parameter, by index */
    int cap;
} lm_lazy;

/* The values of a parameter of this kind: the residual projections' std scaled by
 * 1/sqrt(2 layers), learned positions' halved. */
static void init_values(const ld_lm *m, int kind, float *x, int64_t n, ld_rng *rng) {
    float std = m->cfg.init_std;
    if (kind == INIT_RESID) std /= sqrtf(2.0f * (float)m->cfg.n_layers);
    if (kind == INIT_POS) std *= 0.5f;
    for (int64_t i = 0; i < n; i++) x[i] = kind == INIT_ZERO ? 0.0f : kind == INIT_ONE ? 1.0f : std * ld_rng_normal(rng);
}

static bool kind_draws(int kind) {
    return kind == INIT_NORMAL || kind == INIT_RESID || kind == INIT_POS;
}

static ld_status lazy_note(init_state *s, int kind) {
    lm_lazy *z = s->m->lazy;
    int i = ld_params_count(s->m->params) - 1;
    if (i >= z->cap) {
        int cap = z->cap ? 2 * z->cap : 64;
        uint8_t *k = ld_alloc(s->m->ctx, (size_t)cap);
        if (!k) return ld_ctx_status(s->m->ctx);
        if (z->cap) memcpy(k, z->kinds, (size_t)z->cap);
        ld_free(s->m->ctx, z->kinds);
        z->kinds = k, z->cap = cap;
    }
    z->kinds[i] = (uint8_t)kind;
    return LD_OK;
}

/* The values of parameter t of a lazily initialised model, into dst (its numel floats). */
static ld_status lazy_values(const ld_lm *m, const ld_tensor *t, float *dst) {
    lm_lazy *z = m->lazy;
    int i = 0, n = ld_params_count(m->params);
    while (i < n && ld_params_at(m->params, i) != t) i++;
    if (i == n) return ld_error(m->ctx, LD_ERR_STATE, "model: %s is not one of its parameters", t->name);
    if (i < z->next) z->rng = ld_rng_init(z->seed), z->next = 0;
    for (; z->next < i; z->next++) { /* skip the draws of the parameters before it */
        const ld_tensor *p = ld_params_at(m->params, z->next);
        if (p->data || !kind_draws(z->kinds[z->next])) continue;
        for (int64_t j = 0; j < 2 * ld_tensor_numel(p); j++) (void)ld_rng_u64(&z->rng); /* ld_rng_normal: 2 draws */
    }
    init_values(m, z->kinds[i], dst, ld_tensor_numel(t), &z->rng);
    z->next = i + 1;
    return LD_OK;
}

static ld_tensor *param(init_state *s, int kind, int ndim, int64_t d0, int64_t d1, const char *fmt, int layer) {
    if (s->st) return NULL;
    char name[LD_TENSOR_NAME_MAX];
    snprintf(name, sizeof name, fmt, layer);
    ld_tensor *t = NULL;
    int64_t shape[2] = {d0, d1};
    if (s->absent && s->init != LM_INIT_SHAPES) { /* another rank's expert: no values, no gradient */
        s->st = ld_params_add_view(s->m->params, name, ndim, shape, NULL, &t);
        if (!s->st && s->init == LM_INIT_LAZY) s->st = lazy_note(s, kind);
        /* the values it would have had are skipped in the stream, so the ones after it are
         * those of the whole model (ld_rng_normal: 2 draws a value) */
        for (int64_t j = 0; !s->st && s->init == LM_INIT_RANDOM && kind_draws(kind) && j < 2 * d0 * (ndim > 1 ? d1 : 1); j++)
            (void)ld_rng_u64(&s->rng);
        return t;
    }
    /* in place, matrices get their values from the file's bytes (forms) */
    if (s->init == LM_INIT_SHAPES || (s->init == LM_INIT_IN_PLACE && ndim == 2 && kind != INIT_POS) ||
        (s->init == LM_INIT_LAZY && kind_draws(kind))) {
        s->st = ld_params_add_view(s->m->params, name, ndim, shape, NULL, &t);
        if (!s->st && s->init == LM_INIT_LAZY) s->st = lazy_note(s, kind);
        return t;
    }
    s->st = ld_params_add(s->m->params, name, ndim, shape, s->init == LM_INIT_RANDOM, &t);
    if (!s->st && s->init == LM_INIT_LAZY) s->st = lazy_note(s, kind);
    if (!s->st && (s->init == LM_INIT_RANDOM || s->init == LM_INIT_LAZY)) /* ZERO: ld_params_add zeroed it */
        init_values(s->m, kind, t->data, ld_tensor_numel(t), &s->rng);
    return t;
}

bool lm_is_matrix(const ld_lm *m, const ld_tensor *t) {
    return t && t->ndim == 2 && t != m->wpe;
}

/* GPT-2's Conv1D weights are stored [in, out]; its embedding (also the head) is not. */
static bool param_kn(const ld_lm *m, const ld_tensor *t) {
    return m->cfg.arch == LD_ARCH_GPT2 && lm_is_matrix(m, t) && t != m->wte;
}

ld_status lm_set_form(ld_lm *m, const ld_tensor *w, ld_dtype dtype, const void *data, bool kn, bool rope_perm,
                      bool owned) {
    for (int i = 0; i < m->n_forms; i++)
        if (m->forms[i].w == w) {
            if (m->forms[i].owned) ld_free(m->ctx, (void *)m->forms[i].data);
            m->forms[i] = (lm_form){w, dtype, data, kn, rope_perm, owned};
            return LD_OK;
        }
    if (m->n_forms >= ld_params_count(m->params))
        return ld_error(m->ctx, LD_ERR_STATE, "model: more weight forms than parameters");
    m->forms[m->n_forms++] = (lm_form){w, dtype, data, kn, rope_perm, owned};
    return LD_OK;
}

const lm_form *lm_form_of(const ld_lm *m, const ld_tensor *w) {
    for (int i = 0; i < m->n_forms; i++)
        if (m->forms[i].w == w) return &m->forms[i];
    return NULL;
}

ld_status lm_build(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, lm_init init, ld_lm **out) {
    return lm_build_part(ctx, cfg, seed, init, 0, 0, out);
}

ld_status lm_build_part(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, lm_init init, int part, int parts,
                        ld_lm **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_new: NULL out");
    *out = NULL;
    ld_status st = ld_lm_config_validate(ctx, cfg);
    if (st) return st;
    ld_lm *m = ld_calloc(ctx, 1, sizeof *m);
    if (!m) return ld_ctx_status(ctx);
    m->ctx = ctx;
    m->cfg = *cfg;
    m->in_place = init == LM_INIT_IN_PLACE || init == LM_INIT_SHAPES || init == LM_INIT_LAZY;
    if (init == LM_INIT_LAZY) {
        if (!(m->lazy = ld_calloc(ctx, 1, sizeof *m->lazy))) return ld_free(ctx, m), ld_ctx_status(ctx);
        m->lazy->seed = seed, m->lazy->rng = ld_rng_init(seed);
    }
    m->gen = (ld_lm_generation_config){-1, -1, -1, -1};
    m->held_lo = 0, m->held_hi = cfg->n_experts;
    if (parts > 1 && part >= 0 && part < parts && cfg->n_experts > 0 && cfg->n_experts % parts == 0 &&
        lm_family(cfg->family)->experts)
        m->held_lo = cfg->n_experts / parts * part, m->held_hi = cfg->n_experts / parts * (part + 1);
    if ((st = ld_params_new(ctx, &m->params)) ||
        !(m->layers = ld_calloc(ctx, (size_t)cfg->n_layers, sizeof *m->layers))) {
        ld_lm_free(m);
        return st ? st : ld_ctx_status(ctx);
    }
    init_state s = {m, ld_rng_init(seed), init, LD_OK, false};
    const lm_family_info *fam = lm_family(cfg->family);
    int64_t C = cfg->hidden_size, D = ld_lm_head_dim(cfg), I = cfg->intermediate_size, V = cfg->vocab_size;
    int64_t q = cfg->n_heads * D, kv = cfg->n_kv_heads * D;
    if (cfg->arch == LD_ARCH_LLAMA) {
        m->wte = param(&s, INIT_NORMAL, 2, V, C, "model.embed_tokens.weight", 0);
        for (int l = 0; l < cfg->n_layers; l++) {
            lm_layer *L = &m->layers[l];
            L->ln1_w = param(&s, INIT_ONE, 1, C, 0, "model.layers.%d.input_layernorm.weight", l);
            if (fam->fused_qkv) {
                L->qkv = param(&s, INIT_NORMAL, 2, q + 2 * kv, C, "model.layers.%d.self_attn.qkv_proj.weight", l);
            } else {
                L->q = param(&s, INIT_NORMAL, 2, q, C, "model.layers.%d.self_attn.q_proj.weight", l);
                L->k = param(&s, INIT_NORMAL, 2, kv, C, "model.layers.%d.self_attn.k_proj.weight", l);
                L->v = param(&s, INIT_NORMAL, 2, kv, C, "model.layers.%d.self_attn.v_proj.weight", l);
            }
            if (cfg->qkv_bias) {
                L->q_b = param(&s, INIT_ZERO, 1, q, 0, "model.layers.%d.self_attn.q_proj.bias", l);
                L->k_b = param(&s, INIT_ZERO, 1, kv, 0, "model.layers.%d.self_attn.k_proj.bias", l);
                L->v_b = param(&s, INIT_ZERO, 1, kv, 0, "model.layers.%d.self_attn.v_proj.bias", l);
            }
            if (fam->qk_norm) {
                L->q_norm = param(&s, INIT_ONE, 1, D, 0, "model.layers.%d.self_attn.q_norm.weight", l);
                L->k_norm = param(&s, INIT_ONE, 1, D, 0, "model.layers.%d.self_attn.k_norm.weight", l);
            }
            L->o = param(&s, INIT_RESID, 2, C, q, "model.layers.%d.self_attn.o_proj.weight", l);
            if (fam->sandwich_norms) {
                L->post_attn_norm = param(&s, INIT_ONE, 1, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
                L->ln2_w = param(&s, INIT_ONE, 1, C, 0, "model.layers.%d.pre_feedforward_layernorm.weight", l);
            } else {
                L->ln2_w = param(&s, INIT_ONE, 1, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
            }
            if (fam->experts) { /* the router, then each expert's gate, down, up (names from the family) */
                const int64_t E = cfg->n_experts, Ie = lm_expert_width(cfg), S = cfg->shared_expert_size;
                L->router = param(&s, INIT_NORMAL, 2, E, C, fam->router, l);
                if (!s.st && !(L->exp_gate = ld_calloc(ctx, 3 * (size_t)E, sizeof *L->exp_gate))) s.st = ld_ctx_status(ctx);
                for (int64_t e = 0; !s.st && e < E; e++) {
                    char nm[3][LD_TENSOR_NAME_MAX];
                    for (int w = 0; w < 3; w++) snprintf(nm[w], sizeof nm[w], fam->experts[w].hf, l, (int)e);
                    s.absent = e < m->held_lo || e >= m->held_hi;
                    L->exp_gate[e] = param(&s, INIT_NORMAL, 2, Ie, C, nm[0], l);
                    L->exp_gate[E + e] = param(&s, INIT_RESID, 2, C, Ie, nm[2], l);
                    L->exp_gate[2 * E + e] = param(&s, INIT_NORMAL, 2, Ie, C, nm[1], l);
                    s.absent = false;
                }
                if (L->exp_gate) L->exp_down = L->exp_gate + E, L->exp_up = L->exp_gate + 2 * E;
                if (S) {
                    L->sh_gate = param(&s, INIT_NORMAL, 2, S, C, fam->shared[0], l);
                    L->sh_up = param(&s, INIT_NORMAL, 2, S, C, fam->shared[1], l);
                    L->sh_down = param(&s, INIT_RESID, 2, C, S, fam->shared[2], l);
                    L->sh_inp = param(&s, INIT_NORMAL, 2, 1, C, fam->shared[3], l);
                }
            } else if (fam->fused_gate_up) {
                L->gate_up = param(&s, INIT_NORMAL, 2, 2 * I, C, "model.layers.%d.mlp.gate_up_proj.weight", l);
            } else {
                L->gate = param(&s, INIT_NORMAL, 2, I, C, "model.layers.%d.mlp.gate_proj.weight", l);
                L->up = param(&s, INIT_NORMAL, 2, I, C, "model.layers.%d.mlp.up_proj.weight", l);
            }
            if (!fam->experts) L->down = param(&s, INIT_RESID, 2, C, I, "model.layers.%d.mlp.down_proj.weight", l);
            if (fam->sandwich_norms)
                L->post_mlp_norm = param(&s, INIT_ONE, 1, C, 0, "model.layers.%d.post_feedforward_layernorm.weight", l);
        }
        m->lnf_w = param(&s, INIT_ONE, 1, C, 0, "model.norm.weight", 0);
        m->lm_head = cfg->tie_embeddings ? m->wte : param(&s, INIT_NORMAL, 2, V, C, "lm_head.weight", 0);
    } else {
        m->wte = param(&s, INIT_NORMAL, 2, V, C, "transformer.wte.weight", 0);
        m->wpe = param(&s, INIT_POS, 2, cfg->max_position, C, "transformer.wpe.weight", 0);
        for (int l = 0; l < cfg->n_layers; l++) {
            lm_layer *L = &m->layers[l];
            L->ln1_w = param(&s, INIT_ONE, 1, C, 0, "transformer.h.%d.ln_1.weight", l);
            L->ln1_b = param(&s, INIT_ZERO, 1, C, 0, "transformer.h.%d.ln_1.bias", l);
            L->qkv = param(&s, INIT_NORMAL, 2, C, 3 * C, "transformer.h.%d.attn.c_attn.weight", l);
            L->qkv_b = param(&s, INIT_ZERO, 1, 3 * C, 0, "transformer.h.%d.attn.c_attn.bias", l);
            L->o = param(&s, INIT_RESID, 2, C, C, "transformer.h.%d.attn.c_proj.weight", l);
            L->o_b = param(&s, INIT_ZERO, 1, C, 0, "transformer.h.%d.attn.c_proj.bias", l);
            L->ln2_w = param(&s, INIT_ONE, 1, C, 0, "transformer.h.%d.ln_2.weight", l);
            L->ln2_b = param(&s, INIT_ZERO, 1, C, 0, "transformer.h.%d.ln_2.bias", l);
            L->up = param(&s, INIT_NORMAL, 2, C, I, "transformer.h.%d.mlp.c_fc.weight", l);
            L->up_b = param(&s, INIT_ZERO, 1, I, 0, "transformer.h.%d.mlp.c_fc.bias", l);
            L->down = param(&s, INIT_RESID, 2, I, C, "transformer.h.%d.mlp.c_proj.weight", l);
            L->down_b = param(&s, INIT_ZERO, 1, C, 0, "transformer.h.%d.mlp.c_proj.bias", l);
        }
        m->lnf_w = param(&s, INIT_ONE, 1, C, 0, "transformer.ln_f.weight", 0);
        m->lnf_b = param(&s, INIT_ZERO, 1, C, 0, "transformer.ln_f.bias", 0);
        m->lm_head = m->wte;
    }
    if (!s.st && !(m->forms = ld_calloc(ctx, (size_t)ld_params_count(m->params), sizeof *m->forms)))
        s.st = ld_ctx_status(ctx);
    /* a model with F32 values computes with them */
    for (int i = 0; !s.st && !m->in_place && i < ld_params_count(m->params); i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        if (lm_is_matrix(m, t) && t->data) s.st = lm_set_form(m, t, LD_F32, t->data, param_kn(m, t), false, false);
    }
    if (s.st) {
        ld_lm_free(m);
        return s.st;
    }
    *out = m;
    return LD_OK;
}

ld_status ld_lm_new(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, ld_lm **out) {
    return lm_build(ctx, cfg, seed, LM_INIT_RANDOM, out);
}

ld_status ld_lm_new_lazy(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, ld_lm **out) {
    return lm_build(ctx, cfg, seed, LM_INIT_LAZY, out);
}

bool lm_can_compute(const ld_lm *m, const char *what) {
    if (!m->lazy) return true;
    ld_error(m->ctx, LD_ERR_STATE, "%s: the model's weights are generated only when it is written (ld_lm_new_lazy): "
                                   "it cannot compute", what);
    return false;
}

void ld_lm_free(ld_lm *m) {
    if (!m) return;
    if (m->adapter) lm_adapter_detach(m->adapter);
    for (int i = 0; i < m->n_forms; i++)
        if (m->forms[i].owned) ld_free(m->ctx, (void *)m->forms[i].data);
    ld_free(m->ctx, m->forms);
    ld_gguf_close(m->gguf);
    ld_st_set_close(m->st_set);
    ld_free(m->ctx, m->chat_template);
    ld_free(m->ctx, m->rope_factors);
    if (m->lazy) ld_free(m->ctx, m->lazy->kinds);
    ld_free(m->ctx, m->lazy);
    ld_params_free(m->params);
    for (int64_t l = 0; m->layers && l < m->cfg.n_layers; l++) ld_free(m->ctx, m->layers[l].exp_gate);
    ld_free(m->ctx, m->layers);
    ld_free(m->ctx, m);
}

/* ---- values and layouts ------------------------------------------------------------ */

void lm_rope_permute(void *dst, const void *src, int64_t groups, int64_t D, size_t elem, bool to_gguf) {
    for (int64_t h = 0; h < groups; h++)
        for (int64_t i = 0; i < D / 2; i++)
            for (int64_t j = 0; j < 2; j++) {
                int64_t g = h * D + 2 * i + j, f = h * D + j * (D / 2) + i;
                int64_t d = to_gguf ? g : f, s = to_gguf ? f : g;
                memcpy((char *)dst + d * elem, (const char *)src + s * elem, elem);
            }
}

void lm_rope_unpermute(float *x, int64_t M, int64_t n_heads, int64_t D, float *tmp) {
    for (int64_t r = 0; r < M * n_heads; r++) {
        memcpy(tmp, x + r * D, (size_t)D * sizeof(float));
        lm_rope_permute(x + r * D, tmp, 1, D, sizeof(float), false);
    }
}

ld_status lm_values(const ld_lm *m, const ld_tensor *t, bool nk, float *dst) {
    ld_ctx *ctx = m->ctx;
    const bool kn = param_kn(m, t);
    int64_t N = kn ? t->shape[1] : t->shape[0], K = t->ndim == 2 ? (kn ? t->shape[0] : t->shape[1]) : 1;
    if (t->ndim != 2) nk = false;
    const float *data = t->data;
    float *gen = NULL;
    if (!data && m->lazy) { /* values of the parameter's own layout, drawn now */
        if (!kn || !nk) return lazy_values(m, t, dst);
        if (!(gen = ld_alloc(ctx, (size_t)(N * K) * sizeof(float)))) return ld_ctx_status(ctx);
        ld_status st = lazy_values(m, t, gen);
        if (st) return ld_free(ctx, gen), st;
        data = gen;
    }
    const lm_form *f = data ? NULL : lm_form_of(m, t);
    if (!data && !f) return ld_error(ctx, LD_ERR_STATE, "model: parameter %s has no values", t->name);
    if (data && (!kn || !nk)) {
        memcpy(dst, data, (size_t)ld_tensor_numel(t) * sizeof(float));
        return LD_OK;
    }
    /* rows of K values in [N, K] order, HF row order, then laid out as asked */
    float *rows = dst, *tmp = NULL;
    if (kn && !nk && !(rows = tmp = ld_alloc(ctx, (size_t)(N * K) * sizeof(float)))) return ld_ctx_status(ctx);
    ld_status st = LD_OK;
    if (data) { /* F32 [K, N] -> [N, K] */
        const float *src = data;
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++) rows[n * K + k] = src[k * N + n];
    } else if (f->kn) { /* an F32 form stored [K, N] */
        const float *src = f->data;
        for (int64_t k = 0; k < K; k++)
            for (int64_t n = 0; n < N; n++) rows[n * K + k] = src[k * N + n];
    } else {
        st = ld_dequantize(ctx, f->dtype, f->data, rows, N * K);
        if (!st && f->rope_perm) {
            float *perm = ld_alloc(ctx, (size_t)(N * K) * sizeof(float));
            if (!perm) st = ld_ctx_status(ctx);
            else {
                const int64_t D = ld_lm_head_dim(&m->cfg);
                lm_rope_permute(perm, rows, N / D, D, (size_t)K * sizeof(float), false);
                memcpy(rows, perm, (size_t)(N * K) * sizeof(float));
                ld_free(ctx, perm);
            }
        }
    }
    if (!st && kn && !nk) /* [N, K] -> the parameter's [K, N] */
        for (int64_t n = 0; n < N; n++)
            for (int64_t k = 0; k < K; k++) dst[k * N + n] = rows[n * K + k];
    ld_free(ctx, tmp);
    ld_free(ctx, gen);
    if (st) return ld_error_wrap(ctx, st, "model: parameter %s: ", t->name);
    return LD_OK;
}

void lm_release(const ld_lm *m, const void *p, size_t bytes) {
    if (!m->file_backed || !p || !bytes) return;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1), hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

const ld_lm_config *ld_lm_config_of(const ld_lm *m) {
    return m ? &m->cfg : NULL;
}
ld_params *ld_lm_params(ld_lm *m) {
    return m ? m->params : NULL;
}

/* ---- forward ---------------------------------------------------------------------- */

#define TRY(call)                                                                        \
    do {                                                                                 \
        ld_status st_ = (call);                                                          \
        if (st_) return st_;                                                             \
    } while (0)

/* x W^T + b: W from its F32 parameter, or — a frozen matrix without F32 values — from the
 * block form the model keeps (a quantized base: QLoRA); then the attached LoRA, if any. */
static ld_status linear(ld_lm *m, ld_tape *t, const ld_tensor *x, ld_tensor *w, ld_tensor *b, bool w_kn, ld_tensor **y) {
    ld_frozen_matrix fm;
    if (lm_frozen_form(m, w, &fm)) TRY(ld_op_linear_frozen(t, x, &fm, b, y));
    else TRY(ld_op_linear(t, x, w, b, w_kn, y));
    return m->adapter ? lm_adapter_lora(m->adapter, t, x, w, y) : LD_OK;
}

/* The rotation frequencies of a forward over T tokens, in the tape's arena (they must live
 * until backward); NULL with *plain set when the config needs none (rope_fwd's theta). */
static float *rope_table(ld_lm *m, ld_tape *t, int64_t T, float *mscale, bool *plain) {
    *plain = m->cfg.rope_scaling.type == LD_ROPE_SCALING_NONE && !m->rope_factors;
    if (*plain) return NULL;
    const int64_t half = ld_lm_head_dim(&m->cfg) / 2;
    float *f = ld_arena_alloc(t->act, (size_t)half * sizeof(float));
    if (f) lm_rope_freqs(m, T, f, mscale);
    return f;
}

/* [B, T, H*D] -> RMSNorm over each head's D values with weight w [D]. */
static ld_status head_norm(ld_lm *m, ld_tape *t, ld_tensor *x, int64_t H, ld_tensor *w, ld_tensor **out) {
    ld_tensor *r, *n;
    const int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2] / H;
    TRY(ld_op_reshape(t, x, 2, (int64_t[]){B * T * H, D}, &r));
    TRY(ld_op_rmsnorm(t, r, w, m->cfg.norm_eps, &n));
    return ld_op_reshape(t, n, 3, (int64_t[]){B, T, H * D}, out);
}

static ld_status attention_block(ld_lm *m, ld_tape *t, const lm_layer *L, int64_t layer, ld_tensor *h, ld_tensor **out) {
    const ld_lm_config *c = &m->cfg;
    const lm_family_info *fam = lm_family(c->family);
    const int64_t C = c->hidden_size, D = ld_lm_head_dim(c), Q = c->n_heads * D, KV = c->n_kv_heads * D;
    ld_tensor *q, *k, *v, *a;
    ld_attn_opts o = ld_attn_default_opts(c->n_heads, c->n_kv_heads);
    if (c->arch == LD_ARCH_LLAMA) {
        ld_tensor *q2, *k2, *v2;
        if (fam->fused_qkv) { /* one projection, then the q | k | v columns */
            ld_tensor *qkv;
            TRY(linear(m, t, h, L->qkv, NULL, false, &qkv));
            TRY(ld_op_slice_cols(t, qkv, 0, Q, &q2));
            TRY(ld_op_slice_cols(t, qkv, Q, KV, &k2));
            TRY(ld_op_slice_cols(t, qkv, Q + KV, KV, &v2));
        } else {
            TRY(linear(m, t, h, L->q, L->q_b, false, &q2));
            TRY(linear(m, t, h, L->k, L->k_b, false, &k2));
            TRY(linear(m, t, h, L->v, L->v_b, false, &v2));
        }
        if (fam->qk_norm) {
            TRY(head_norm(m, t, q2, c->n_heads, L->q_norm, &q2));
            TRY(head_norm(m, t, k2, c->n_kv_heads, L->k_norm, &k2));
        }
        float mscale = 1.0f;
        bool plain;
        const float *freqs = rope_table(m, t, h->shape[1], &mscale, &plain);
        if (!plain && !freqs) return ld_ctx_status(m->ctx);
        if (plain) {
            TRY(ld_op_rope(t, q2, c->n_heads, 0, c->rope_theta, &q));
            TRY(ld_op_rope(t, k2, c->n_kv_heads, 0, c->rope_theta, &k));
        } else {
            TRY(ld_op_rope_freqs(t, q2, c->n_heads, 0, freqs, mscale, &q));
            TRY(ld_op_rope_freqs(t, k2, c->n_kv_heads, 0, freqs, mscale, &k));
        }
        v = v2;
        /* a window at least as long as the sequence changes nothing */
        if (ld_lm_layer_sliding(c, layer) && c->sliding_window < h->shape[1]) o.window = c->sliding_window;
        o.softcap = c->attn_softcap, o.scale = c->query_scale;
    } else {
        ld_tensor *qkv;
        TRY(linear(m, t, h, L->qkv, L->qkv_b, true, &qkv));
        TRY(ld_op_slice_cols(t, qkv, 0, C, &q));
        TRY(ld_op_slice_cols(t, qkv, C, C, &k));
        TRY(ld_op_slice_cols(t, qkv, 2 * C, C, &v));
    }
    TRY(ld_op_attention_ex(t, q, k, v, &o, &a));
    TRY(linear(m, t, a, L->o, L->o_b, c->arch == LD_ARCH_GPT2, out));
    if (fam->sandwich_norms) TRY(ld_op_rmsnorm(t, *out, L->post_attn_norm, c->norm_eps, out));
    return LD_OK;
}

/* The router's weighted losses of one layer, added to m->moe_loss (training only). */
static ld_status moe_losses(ld_lm *m, ld_tape *t, ld_tensor *logits, const ld_moe_route *r) {
    const ld_lm_config *c = &m->cfg;
    const float per_layer = 1.0f / (float)c->n_layers;
    ld_tensor *aux, *z, *sum = NULL;
    TRY(ld_op_moe_aux_loss(t, logits, r, &aux));
    TRY(ld_op_moe_z_loss(t, logits, &z));
    m->moe_stats.aux_loss += *(const float *)aux->data * per_layer;
    m->moe_stats.z_loss += *(const float *)z->data * per_layer;
    if (c->router_aux_loss_coef > 0) TRY(ld_op_scale(t, aux, c->router_aux_loss_coef * per_layer, &sum));
    if (c->router_z_loss_coef > 0) {
        TRY(ld_op_scale(t, z, c->router_z_loss_coef * per_layer, &z));
        if (sum) TRY(ld_op_add(t, sum, z, &sum));
        else sum = z;
    }
    if (sum && m->moe_loss) TRY(ld_op_add(t, m->moe_loss, sum, &sum));
    if (sum) m->moe_loss = sum;
    return LD_OK;
}

/* The experts' part of the block under expert parallelism: xs [A, C] (this rank's kept
 * choices, grouped by expert, so by the rank that holds the expert) go to those ranks; each
 * rank runs its experts over what it received (one product per source rank and expert: the
 * rows arrive grouped by source, each source's grouped by expert) and the outputs go back,
 * so ys [A, C] is what the single-process block computes. */
static ld_status moe_experts_ep(ld_lm *m, ld_tape *t, const lm_layer *L, ld_tensor *xs, const ld_moe_route *r,
                                ld_tensor **ys) {
    const int P = ld_comm_size(m->ep);
    const int64_t E = m->cfg.n_experts, El = E / P, lo = m->ep_lo;
    int64_t *cnt = ld_arena_alloc(t->act, (size_t)(2 * E + 4 * P + E + 1) * sizeof(int64_t));
    ld_tensor **w = ld_arena_alloc(t->act, 3 * (size_t)E * sizeof *w);
    int32_t *none = ld_arena_alloc(t->act, sizeof(int32_t));
    if (!cnt || !w || !none) return ld_ctx_status(m->ctx);
    int64_t *sent = cnt, *got = cnt + E, *send_rows = cnt + 2 * E, *recv_rows = send_rows + P;
    int64_t *c4 = recv_rows + P, *off = c4 + 2 * P;
    for (int64_t e = 0; e < E; e++) sent[e] = r->offset[e + 1] - r->offset[e];
    /* how many rows each rank sends each of this rank's experts: El counts per rank */
    for (int q = 0; q < P; q++) c4[q] = El, c4[P + q] = q * El;
    TRY(ld_comm_alltoallv(m->ep, sent, c4, c4 + P, got, c4, c4 + P, LD_COMM_I64));
    off[0] = 0;
    for (int q = 0; q < P; q++) {
        send_rows[q] = r->offset[(q + 1) * El] - r->offset[q * El], recv_rows[q] = 0;
        for (int64_t j = 0; j < El; j++) {
            recv_rows[q] += got[q * El + j];
            off[q * El + j + 1] = off[q * El + j] + got[q * El + j];
            w[q * El + j] = L->exp_gate[lo + j], w[E + q * El + j] = L->exp_up[lo + j];
            w[2 * E + q * El + j] = L->exp_down[lo + j];
        }
    }
    /* the received rows' segments: source q's rows for local expert j are segment q El + j */
    *none = 0;
    const ld_moe_route seg = {.M = 1, .E = E, .k = 1, .expert = none, .row = none, .token = none, .offset = off,
                              .chosen = got};
    ld_tensor *xr, *g, *u, *a, *yr;
    TRY(ld_op_moe_exchange(t, xs, m->ep, send_rows, recv_rows, &xr));
    TRY(ld_op_moe_linear(t, xr, &seg, w, &g));
    TRY(ld_op_moe_linear(t, xr, &seg, w + E, &u));
    TRY(ld_op_swiglu(t, g, u, &a));
    TRY(ld_op_moe_linear(t, a, &seg, w + 2 * E, &yr));
    return ld_op_moe_exchange(t, yr, m->ep, recv_rows, send_rows, ys);
}

/* The mixture-of-experts MLP (Mixtral's block_sparse_moe) on h [B, T, C]:
 *   logits = h Wr^T [M, E]; gates [M, k] + route = top-k (capacity when training);
 *   xs [A, C] = h's rows grouped by expert; per expert: silu(xs W1^T) * (xs W3^T) W2^T;
 *   out [B, T, C] = the gated sum of each token's experts. */
static ld_status moe_block(ld_lm *m, ld_tape *t, const lm_layer *L, ld_tensor *h, ld_tensor **out) {
    const ld_lm_config *c = &m->cfg;
    for (int64_t e = 0; e < c->n_experts; e++) {
        ld_frozen_matrix fm;
        if (lm_frozen_form(m, L->exp_gate[e], &fm) || lm_frozen_form(m, L->exp_up[e], &fm) ||
            lm_frozen_form(m, L->exp_down[e], &fm))
            return ld_error(m->ctx, LD_ERR_UNSUPPORTED, "training forward: expert matrix %s is read from a quantized "
                            "file; load the model for training (F32 experts)", fm.name ? fm.name : L->exp_gate[e]->name);
    }
    ld_tensor *logits, *gates, *xs, *g, *u, *a, *ys, *y;
    const ld_moe_route_opts o = {c->n_experts_used, c->moe_norm_topk, t->grad_enabled ? c->moe_capacity_factor : 0.0f};
    ld_moe_route r;
    TRY(linear(m, t, h, L->router, NULL, false, &logits));
    TRY(ld_op_moe_route(t, logits, &o, &gates, &r));
    if (t->grad_enabled) { /* the stats are the last training forward's */
        m->moe_stats.choices += r.M * r.k, m->moe_stats.dropped += r.dropped;
        TRY(moe_losses(m, t, logits, &r));
    }
    TRY(ld_op_moe_dispatch(t, h, &r, &xs));
    if (m->ep) TRY(moe_experts_ep(m, t, L, xs, &r, &ys));
    else {
        TRY(ld_op_moe_linear(t, xs, &r, L->exp_gate, &g));
        TRY(ld_op_moe_linear(t, xs, &r, L->exp_up, &u));
        TRY(ld_op_swiglu(t, g, u, &a));
        TRY(ld_op_moe_linear(t, a, &r, L->exp_down, &ys));
    }
    TRY(ld_op_moe_combine(t, ys, gates, &r, &y));
    TRY(ld_op_reshape(t, y, 3, h->shape, out));
    if (!L->sh_gate) return LD_OK;
    /* Qwen2-MoE's shared expert, every token: sigmoid(h . w_inp) * down(silu(gate h) * up h) */
    ld_tensor *sg, *su, *sa, *sd, *gl;
    TRY(linear(m, t, h, L->sh_gate, NULL, false, &sg));
    TRY(linear(m, t, h, L->sh_up, NULL, false, &su));
    TRY(ld_op_swiglu(t, sg, su, &sa));
    TRY(linear(m, t, sa, L->sh_down, NULL, false, &sd));
    TRY(linear(m, t, h, L->sh_inp, NULL, false, &gl)); /* [B, T, 1] */
    TRY(ld_op_sigmoid_gate(t, sd, gl, &sd));
    return ld_op_add(t, *out, sd, out);
}

static ld_status mlp_block(ld_lm *m, ld_tape *t, const lm_layer *L, ld_tensor *h, ld_tensor **out) {
    const lm_family_info *fam = lm_family(m->cfg.family);
    ld_tensor *g, *u, *a;
    if (fam->experts) return moe_block(m, t, L, h, out);
    if (m->cfg.arch == LD_ARCH_LLAMA) {
        if (fam->fused_gate_up) { /* gate | up columns of one projection */
            ld_tensor *gu;
            const int64_t I = m->cfg.intermediate_size;
            TRY(linear(m, t, h, L->gate_up, NULL, false, &gu));
            TRY(ld_op_slice_cols(t, gu, 0, I, &g));
            TRY(ld_op_slice_cols(t, gu, I, I, &u));
        } else {
            TRY(linear(m, t, h, L->gate, NULL, false, &g));
            TRY(linear(m, t, h, L->up, NULL, false, &u));
        }
        if (fam->geglu) TRY(ld_op_geglu(t, g, u, &a));
        else TRY(ld_op_swiglu(t, g, u, &a));
        TRY(linear(m, t, a, L->down, NULL, false, out));
        if (fam->sandwich_norms) TRY(ld_op_rmsnorm(t, *out, L->post_mlp_norm, m->cfg.norm_eps, out));
        return LD_OK;
    }
    TRY(linear(m, t, h, L->up, L->up_b, true, &u));
    TRY(ld_op_gelu(t, u, &a));
    return linear(m, t, a, L->down, L->down_b, true, out);
}

static ld_status norm(ld_lm *m, ld_tape *t, ld_tensor *x, ld_tensor *w, ld_tensor *b, ld_tensor **out) {
    if (m->cfg.arch == LD_ARCH_LLAMA) return ld_op_rmsnorm(t, x, w, m->cfg.norm_eps, out);
    return ld_op_layernorm(t, x, w, b, m->cfg.norm_eps, out);
}

ld_status lm_forward_hidden(ld_lm *m, ld_tape *t, const int32_t *ids, int64_t B, int64_t T, ld_tensor **hidden) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !t || !ids) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_lm_forward: NULL argument");
    if (m->in_place && !m->adapter) /* with an adapter the frozen base is read from its forms (QLoRA) */
        return ld_error(m->ctx, LD_ERR_STATE, "the model was loaded for inference (weights read in place from the "
                                              "file): load it for training to run a training forward");
    const ld_lm_config *c = &m->cfg;
    const lm_family_info *fam = lm_family(c->family);
    int64_t P = m->adapter ? lm_adapter_prompt_len(m->adapter) : 0, Tp = P + T;
    if (B <= 0 || T <= 0 || Tp > c->max_position)
        return ld_error(m->ctx, LD_ERR_SHAPE, "batch %lld x %lld tokens%s: length must be in 1..%lld (max_position%s)",
                        (long long)B, (long long)T, P ? " after the prompt" : "", (long long)(c->max_position - P),
                        P ? " minus the virtual tokens" : "");
    ld_tensor *x, *h, *e;
    if (t->grad_enabled) m->moe_stats = (ld_lm_moe_stats){0};
    m->moe_loss = NULL;
    ld_frozen_matrix fm;
    if (lm_frozen_form(m, m->wte, &fm)) TRY(ld_op_embedding_frozen(t, ids, B * T, &fm, &e));
    else TRY(ld_op_embedding(t, ids, B * T, m->wte, &e));
    if (fam->embed_scale) TRY(ld_op_scale(t, e, sqrtf((float)c->hidden_size), &e));
    TRY(ld_op_reshape(t, e, 3, (int64_t[]){B, T, c->hidden_size}, &x));
    if (P) TRY(lm_adapter_prompt(m->adapter, t, x, -1, &x)); /* [B, P + T, C] */
    if (c->arch == LD_ARCH_GPT2) {
        /* learned positions: position ids t for every row of every batch element */
        int32_t *pos = ld_arena_alloc(t->act, (size_t)(B * Tp) * sizeof(int32_t));
        if (!pos) return ld_ctx_status(m->ctx);
        for (int64_t i = 0; i < B * Tp; i++) pos[i] = (int32_t)(i % Tp);
        ld_tensor *p, *p3;
        TRY(ld_op_embedding(t, pos, B * Tp, m->wpe, &p));
        TRY(ld_op_reshape(t, p, 3, (int64_t[]){B, Tp, c->hidden_size}, &p3));
        TRY(ld_op_add(t, x, p3, &x));
    }
    for (int l = 0; l < c->n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        ld_tensor *o;
        if (P && l > 0) TRY(lm_adapter_prompt(m->adapter, t, x, l, &x)); /* per-layer prompts, when there are */
        TRY(norm(m, t, x, L->ln1_w, L->ln1_b, &h));
        TRY(attention_block(m, t, L, l, h, &o));
        TRY(ld_op_add(t, x, o, &x));
        TRY(norm(m, t, x, L->ln2_w, L->ln2_b, &h));
        TRY(mlp_block(m, t, L, h, &o));
        TRY(ld_op_add(t, x, o, &x));
    }
    TRY(norm(m, t, x, m->lnf_w, m->lnf_b, &h));
    if (P) TRY(ld_op_rows_drop(t, h, P, &h));
    *hidden = h;
    return LD_OK;
}

ld_status ld_lm_forward(ld_lm *m, ld_tape *t, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T,
                        ld_tensor **logits, ld_tensor **loss) {
    ld_tensor *h, *lg;
    TRY(lm_forward_hidden(m, t, ids, B, T, &h));
    ld_frozen_matrix fm;
    if (lm_frozen_form(m, m->lm_head, &fm)) TRY(ld_op_linear_frozen(t, h, &fm, NULL, &lg));
    else TRY(ld_op_linear(t, h, m->lm_head, NULL, false, &lg));
    if (m->cfg.final_softcap > 0) TRY(ld_op_softcap(t, lg, m->cfg.final_softcap, &lg));
    if (logits) *logits = lg;
    if (targets && loss) {
        TRY(ld_op_cross_entropy(t, lg, targets, -100, loss, NULL));
        /* training a mixture of experts: the routers' losses join the objective */
        if (m->moe_loss && t->grad_enabled) TRY(ld_op_add(t, *loss, m->moe_loss, loss));
    }
    m->moe_loss = NULL;
    return LD_OK;
}

ld_lm_moe_stats ld_lm_moe_stats_of(const ld_lm *m) {
    return m ? m->moe_stats : (ld_lm_moe_stats){0};
}

/* ---- accessors --------------------------------------------------------------------- */

ld_status lm_set_expert_parallel(ld_lm *m, ld_comm *c) {
    if (!m) return LD_ERR_INVALID_ARG;
    m->ep = NULL, m->ep_lo = 0, m->ep_hi = m->cfg.n_experts;
    if (!c) return LD_OK;
    const int P = ld_comm_size(c), p = ld_comm_rank(c);
    const int64_t E = m->cfg.n_experts;
    if (E < 1 || !lm_family(m->cfg.family)->experts)
        return ld_error(m->ctx, LD_ERR_INVALID_ARG, "expert parallelism: the model has no mixture-of-experts layers");
    if (E % P)
        return ld_error(m->ctx, LD_ERR_INVALID_ARG,
                        "expert parallelism: %lld experts do not split evenly over %d ranks (need a divisor of the "
                        "expert count)", (long long)E, P);
    const int64_t lo = E / P * p, hi = E / P * (p + 1);
    if ((m->held_lo || m->held_hi != E) && (m->held_lo != lo || m->held_hi != hi))
        return ld_error(m->ctx, LD_ERR_INVALID_ARG,
                        "expert parallelism: the model holds experts [%lld, %lld) but rank %d of %d computes [%lld, %lld)",
                        (long long)m->held_lo, (long long)m->held_hi, p, P, (long long)lo, (long long)hi);
    m->ep = c, m->ep_lo = lo, m->ep_hi = hi;
    return LD_OK;
}

bool lm_holds_all(const ld_lm *m) {
    return m && m->held_lo == 0 && m->held_hi == m->cfg.n_experts;
}

int64_t lm_expert_index(const ld_lm *m, const ld_tensor *x) {
    for (int64_t l = 0; m->cfg.n_experts && l < m->cfg.n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        for (int64_t e = 0; L->exp_gate && e < m->cfg.n_experts; e++)
            if (L->exp_gate[e] == x || L->exp_up[e] == x || L->exp_down[e] == x) return e;
    }
    return -1;
}

ld_tensor *const *lm_expert_list(const ld_lm *m, const ld_tensor *t) {
    for (int64_t l = 0; m->cfg.n_experts && l < m->cfg.n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        if (!L->exp_gate) continue;
        if (L->exp_gate[0] == t) return L->exp_gate;
        if (L->exp_up[0] == t) return L->exp_up;
        if (L->exp_down[0] == t) return L->exp_down;
    }
    return NULL;
}

bool lm_is_norm_weight(const ld_lm *m, const ld_tensor *t) {
    if (!t || t->ndim != 1) return false;
    if (t == m->lnf_w) return true;
    for (int64_t l = 0; l < m->cfg.n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        if (t == L->ln1_w || t == L->ln2_w || t == L->post_attn_norm || t == L->post_mlp_norm || t == L->q_norm ||
            t == L->k_norm)
            return true;
    }
    return false;
}

const ld_lm_generation_config *ld_lm_generation_config_of(const ld_lm *m) {
    return m ? &m->gen : NULL;
}

bool ld_lm_in_place(const ld_lm *m) {
    return m && m->in_place;
}

const char *ld_lm_chat_template(const ld_lm *m) {
    return m ? m->chat_template : NULL;
}

void ld_lm_weight_memory(const ld_lm *m, size_t *mapped, size_t *copied) {
    size_t mp = 0, cp = 0, b;
    for (int i = 0; m && i < ld_params_count(m->params); i++) {
        const ld_tensor *t = ld_params_at(m->params, i);
        if (!(t->flags & LD_TENSOR_VIEW)) cp += ld_tensor_nbytes(t);
    }
    for (int i = 0; m && m->in_place && i < m->n_forms; i++)
        if (!ld_dtype_row_bytes(m->forms[i].dtype, ld_tensor_numel(m->forms[i].w), &b)) *(m->forms[i].owned ? &cp : &mp) += b;
    if (mapped) *mapped = mp;
    if (copied) *copied = cp;
}

/* models/causal_lm.c — the decoder-only transformer: parameters with Hugging Face names,
 * initialisation, and the forward pass recorded on the tape (backward comes from the tape). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "liandan/io.h"
#include "models/causal_lm_internal.h"

ld_lm_config ld_lm_default_config(ld_lm_arch arch) {
    ld_lm_config c = {.arch = arch, .vocab_size = 8192, .hidden_size = 256, .n_layers = 4, .n_heads = 4,
                      .n_kv_heads = 4, .intermediate_size = 688, .max_position = 256, .norm_eps = 1e-5f,
                      .rope_theta = 10000.0f, .init_std = 0.02f, .tie_embeddings = true, .bos_token_id = 1,
                      .eos_token_id = 2};
    if (arch == LD_ARCH_GPT2) c.intermediate_size = 4 * c.hidden_size, c.family = LD_FAMILY_GPT2;
    return c;
}

ld_status ld_lm_config_validate(ld_ctx *ctx, const ld_lm_config *c) {
    if (!c) return ld_error(ctx, LD_ERR_INVALID_ARG, "model config is NULL");
    if (c->arch != LD_ARCH_LLAMA && c->arch != LD_ARCH_GPT2)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "model config: unknown architecture %d", (int)c->arch);
#define NEED(cond, ...) \
    if (!(cond)) return ld_error(ctx, LD_ERR_INVALID_ARG, "model config: " __VA_ARGS__)
    NEED(c->vocab_size > 0 && c->vocab_size <= (1 << 24), "vocab_size %lld outside 1..16777216", (long long)c->vocab_size);
    NEED(c->hidden_size > 0 && c->hidden_size <= 65536, "hidden_size %lld outside 1..65536", (long long)c->hidden_size);
    NEED(c->n_layers > 0 && c->n_layers <= 1024, "num_hidden_layers %lld outside 1..1024", (long long)c->n_layers);
    NEED(c->n_heads > 0 && c->hidden_size % c->n_heads == 0,
         "hidden_size %lld is not divisible by num_attention_heads %lld", (long long)c->hidden_size, (long long)c->n_heads);
    NEED(c->n_kv_heads > 0 && c->n_heads % c->n_kv_heads == 0,
         "num_attention_heads %lld is not a multiple of num_key_value_heads %lld", (long long)c->n_heads,
         (long long)c->n_kv_heads);
    NEED(c->arch != LD_ARCH_GPT2 || c->n_kv_heads == c->n_heads, "gpt2 has no grouped-query attention (n_kv_heads %lld != n_heads %lld)",
         (long long)c->n_kv_heads, (long long)c->n_heads);
    NEED(c->arch != LD_ARCH_LLAMA || (c->hidden_size / c->n_heads) % 2 == 0, "head size %lld must be even for RoPE",
         (long long)(c->hidden_size / c->n_heads));
    NEED(c->intermediate_size > 0 && c->intermediate_size <= 1 << 20, "intermediate_size %lld outside 1..1048576",
         (long long)c->intermediate_size);
    NEED(c->max_position > 0 && c->max_position <= 1 << 20, "max_position_embeddings %lld outside 1..1048576",
         (long long)c->max_position);
    NEED(c->norm_eps > 0 && c->norm_eps < 1, "norm epsilon %g outside (0, 1)", c->norm_eps);
    NEED(c->arch != LD_ARCH_LLAMA || c->rope_theta > 0, "rope_theta %g must be positive", c->rope_theta);
    NEED(c->init_std > 0, "initializer_range %g must be positive", c->init_std);
    NEED(c->arch != LD_ARCH_GPT2 || c->tie_embeddings, "gpt2 always ties its embeddings");
    NEED(c->arch != LD_ARCH_GPT2 || !c->qkv_bias, "gpt2 has no separate q/k/v biases");
    NEED((c->arch == LD_ARCH_GPT2) == (c->family == LD_FAMILY_GPT2), "model family does not match the architecture");
#undef NEED
    return LD_OK;
}

int64_t ld_lm_config_num_params(const ld_lm_config *c) {
    int64_t C = c->hidden_size, D = C / c->n_heads, I = c->intermediate_size, V = c->vocab_size;
    int64_t kv = c->n_kv_heads * D, per_layer, n;
    if (c->arch == LD_ARCH_LLAMA) {
        per_layer = 2 * C + C * C + 2 * C * kv + C * C + 3 * C * I + (c->qkv_bias ? C + 2 * kv : 0);
        n = V * C + c->n_layers * per_layer + C + (c->tie_embeddings ? 0 : V * C);
    } else {
        per_layer = 4 * C + C * 3 * C + 3 * C + C * C + C + C * I + I + I * C + C;
        n = V * C + c->max_position * C + c->n_layers * per_layer + 2 * C;
    }
    return n;
}

double ld_lm_train_flops_per_token(const ld_lm_config *c, int64_t T) {
    return 6.0 * (double)ld_lm_config_num_params(c) + 6.0 * (double)c->n_layers * (double)c->hidden_size * (double)T;
}

/* ---- construction ----------------------------------------------------------------- */

typedef struct init_state {
    ld_lm *m;
    ld_rng rng;
    ld_status st;
} init_state;

enum { INIT_NORMAL, INIT_RESID, INIT_ZERO, INIT_ONE, INIT_POS };

static ld_tensor *param(init_state *s, int kind, int ndim, int64_t d0, int64_t d1, const char *fmt, int layer) {
    if (s->st) return NULL;
    char name[LD_TENSOR_NAME_MAX];
    snprintf(name, sizeof name, fmt, layer);
    ld_tensor *t = NULL;
    s->st = ld_params_add(s->m->params, name, ndim, (int64_t[]){d0, d1}, true, &t);
    if (s->st) return NULL;
    float *x = t->data, std = s->m->cfg.init_std;
    if (kind == INIT_RESID) std /= sqrtf(2.0f * (float)s->m->cfg.n_layers);
    if (kind == INIT_POS) std *= 0.5f;
    int64_t n = ld_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        x[i] = kind == INIT_ZERO ? 0.0f : kind == INIT_ONE ? 1.0f : std * ld_rng_normal(&s->rng);
    return t;
}

ld_status ld_lm_new(ld_ctx *ctx, const ld_lm_config *cfg, uint64_t seed, ld_lm **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_lm_new: NULL out");
    *out = NULL;
    ld_status st = ld_lm_config_validate(ctx, cfg);
    if (st) return st;
    ld_lm *m = ld_calloc(ctx, 1, sizeof *m);
    if (!m) return ld_ctx_status(ctx);
    m->ctx = ctx;
    m->cfg = *cfg;
    if ((st = ld_params_new(ctx, &m->params)) ||
        !(m->layers = ld_calloc(ctx, (size_t)cfg->n_layers, sizeof *m->layers))) {
        ld_lm_free(m);
        return st ? st : ld_ctx_status(ctx);
    }
    init_state s = {m, ld_rng_init(seed), LD_OK};
    int64_t C = cfg->hidden_size, D = C / cfg->n_heads, I = cfg->intermediate_size, V = cfg->vocab_size;
    int64_t kv = cfg->n_kv_heads * D;
    if (cfg->arch == LD_ARCH_LLAMA) {
        m->wte = param(&s, INIT_NORMAL, 2, V, C, "model.embed_tokens.weight", 0);
        for (int l = 0; l < cfg->n_layers; l++) {
            lm_layer *L = &m->layers[l];
            L->ln1_w = param(&s, INIT_ONE, 1, C, 0, "model.layers.%d.input_layernorm.weight", l);
            L->q = param(&s, INIT_NORMAL, 2, C, C, "model.layers.%d.self_attn.q_proj.weight", l);
            L->k = param(&s, INIT_NORMAL, 2, kv, C, "model.layers.%d.self_attn.k_proj.weight", l);
            L->v = param(&s, INIT_NORMAL, 2, kv, C, "model.layers.%d.self_attn.v_proj.weight", l);
            if (cfg->qkv_bias) {
                L->q_b = param(&s, INIT_ZERO, 1, C, 0, "model.layers.%d.self_attn.q_proj.bias", l);
                L->k_b = param(&s, INIT_ZERO, 1, kv, 0, "model.layers.%d.self_attn.k_proj.bias", l);
                L->v_b = param(&s, INIT_ZERO, 1, kv, 0, "model.layers.%d.self_attn.v_proj.bias", l);
            }
            L->o = param(&s, INIT_RESID, 2, C, C, "model.layers.%d.self_attn.o_proj.weight", l);
            L->ln2_w = param(&s, INIT_ONE, 1, C, 0, "model.layers.%d.post_attention_layernorm.weight", l);
            L->gate = param(&s, INIT_NORMAL, 2, I, C, "model.layers.%d.mlp.gate_proj.weight", l);
            L->up = param(&s, INIT_NORMAL, 2, I, C, "model.layers.%d.mlp.up_proj.weight", l);
            L->down = param(&s, INIT_RESID, 2, C, I, "model.layers.%d.mlp.down_proj.weight", l);
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
    if (s.st) {
        ld_lm_free(m);
        return s.st;
    }
    *out = m;
    return LD_OK;
}

void ld_lm_free(ld_lm *m) {
    if (!m) return;
    for (int i = 0; i < m->n_packed; i++)
        if (m->packed[i].owned) ld_free(m->ctx, (void *)m->packed[i].data);
    ld_free(m->ctx, m->packed);
    ld_gguf_close(m->gguf);
    ld_params_free(m->params);
    ld_free(m->ctx, m->layers);
    ld_free(m->ctx, m);
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

static ld_status attention_block(ld_lm *m, ld_tape *t, const lm_layer *L, ld_tensor *h, ld_tensor **out) {
    const ld_lm_config *c = &m->cfg;
    int64_t C = c->hidden_size;
    ld_tensor *q, *k, *v, *a;
    if (c->arch == LD_ARCH_LLAMA) {
        ld_tensor *q2, *k2, *v2;
        TRY(ld_op_linear(t, h, L->q, L->q_b, false, &q2));
        TRY(ld_op_linear(t, h, L->k, L->k_b, false, &k2));
        TRY(ld_op_linear(t, h, L->v, L->v_b, false, &v2));
        TRY(ld_op_rope(t, q2, c->n_heads, 0, c->rope_theta, &q));
        TRY(ld_op_rope(t, k2, c->n_kv_heads, 0, c->rope_theta, &k));
        v = v2;
    } else {
        ld_tensor *qkv;
        TRY(ld_op_linear(t, h, L->qkv, L->qkv_b, true, &qkv));
        TRY(ld_op_slice_cols(t, qkv, 0, C, &q));
        TRY(ld_op_slice_cols(t, qkv, C, C, &k));
        TRY(ld_op_slice_cols(t, qkv, 2 * C, C, &v));
    }
    TRY(ld_op_attention(t, q, k, v, c->n_heads, c->n_kv_heads, true, NULL, &a));
    return ld_op_linear(t, a, L->o, L->o_b, c->arch == LD_ARCH_GPT2, out);
}

static ld_status mlp_block(ld_lm *m, ld_tape *t, const lm_layer *L, ld_tensor *h, ld_tensor **out) {
    ld_tensor *g, *u, *a;
    if (m->cfg.arch == LD_ARCH_LLAMA) {
        TRY(ld_op_linear(t, h, L->gate, NULL, false, &g));
        TRY(ld_op_linear(t, h, L->up, NULL, false, &u));
        TRY(ld_op_swiglu(t, g, u, &a));
        return ld_op_linear(t, a, L->down, NULL, false, out);
    }
    TRY(ld_op_linear(t, h, L->up, L->up_b, true, &u));
    TRY(ld_op_gelu(t, u, &a));
    return ld_op_linear(t, a, L->down, L->down_b, true, out);
}

static ld_status norm(ld_lm *m, ld_tape *t, ld_tensor *x, ld_tensor *w, ld_tensor *b, ld_tensor **out) {
    if (m->cfg.arch == LD_ARCH_LLAMA) return ld_op_rmsnorm(t, x, w, m->cfg.norm_eps, out);
    return ld_op_layernorm(t, x, w, b, m->cfg.norm_eps, out);
}

ld_status ld_lm_forward(ld_lm *m, ld_tape *t, const int32_t *ids, const int32_t *targets, int64_t B, int64_t T,
                        ld_tensor **logits, ld_tensor **loss) {
    if (!m || !t || !ids) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_lm_forward: NULL argument");
    const ld_lm_config *c = &m->cfg;
    if (B <= 0 || T <= 0 || T > c->max_position)
        return ld_error(m->ctx, LD_ERR_SHAPE, "batch %lld x %lld tokens: length must be in 1..%lld (max_position)",
                        (long long)B, (long long)T, (long long)c->max_position);
    ld_tensor *x, *h, *e;
    TRY(ld_op_embedding(t, ids, B * T, m->wte, &e));
    if (c->arch == LD_ARCH_GPT2) {
        /* learned positions: position ids t for every row of every batch element */
        int32_t *pos = ld_arena_alloc(t->act, (size_t)(B * T) * sizeof(int32_t));
        if (!pos) return ld_ctx_status(m->ctx);
        for (int64_t i = 0; i < B * T; i++) pos[i] = (int32_t)(i % T);
        ld_tensor *p;
        TRY(ld_op_embedding(t, pos, B * T, m->wpe, &p));
        TRY(ld_op_add(t, e, p, &e));
    }
    TRY(ld_op_reshape(t, e, 3, (int64_t[]){B, T, c->hidden_size}, &x));
    for (int l = 0; l < c->n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        ld_tensor *o;
        TRY(norm(m, t, x, L->ln1_w, L->ln1_b, &h));
        TRY(attention_block(m, t, L, h, &o));
        TRY(ld_op_add(t, x, o, &x));
        TRY(norm(m, t, x, L->ln2_w, L->ln2_b, &h));
        TRY(mlp_block(m, t, L, h, &o));
        TRY(ld_op_add(t, x, o, &x));
    }
    TRY(norm(m, t, x, m->lnf_w, m->lnf_b, &h));
    ld_tensor *lg;
    TRY(ld_op_linear(t, h, m->lm_head, NULL, false, &lg));
    if (logits) *logits = lg;
    if (targets && loss) TRY(ld_op_cross_entropy(t, lg, targets, -100, loss, NULL));
    return LD_OK;
}

/* models/encoder.c — the bidirectional encoder (bert and esm variants): parameters with
 * Hugging Face names (one table per level, shared with the loaders and exporters), the
 * forward pass recorded on the tape, the MLM head and loss, pooling. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/team.h"
#include "models/encoder_internal.h"

/* ---- configuration ------------------------------------------------------------------- */

ld_encoder_config ld_encoder_default_config(ld_encoder_arch arch) {
    ld_encoder_config c = {.arch = arch, .vocab_size = 8192, .hidden_size = 256, .n_layers = 4, .n_heads = 4,
                           .intermediate_size = 1024, .max_position = 512, .type_vocab_size = 2,
                           .norm_eps = 1e-12f, .rope_theta = 10000.0f, .init_std = 0.02f, .dropout = 0.1f,
                           .pad_token_id = 0, .mask_token_id = -1};
    if (arch == LD_ENCODER_ESM) {
        c.vocab_size = 33, c.max_position = 1026, c.type_vocab_size = 0, c.norm_eps = 1e-5f, c.dropout = 0.0f;
        c.token_dropout = true, c.pad_token_id = 1, c.mask_token_id = 32;
    }
    return c;
}

ld_status ld_encoder_config_validate(ld_ctx *ctx, const ld_encoder_config *c) {
    if (!c) return ld_error(ctx, LD_ERR_INVALID_ARG, "encoder config is NULL");
    if (c->arch != LD_ENCODER_BERT && c->arch != LD_ENCODER_ESM)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "encoder config: unknown architecture %d", (int)c->arch);
#define NEED(cond, ...) \
    if (!(cond)) return ld_error(ctx, LD_ERR_INVALID_ARG, "encoder config: " __VA_ARGS__)
    NEED(c->vocab_size > 0 && c->vocab_size <= (1 << 24), "vocab_size %lld outside 1..16777216", (long long)c->vocab_size);
    NEED(c->hidden_size > 0 && c->hidden_size <= 65536, "hidden_size %lld outside 1..65536", (long long)c->hidden_size);
    NEED(c->n_layers > 0 && c->n_layers <= 1024, "num_hidden_layers %lld outside 1..1024", (long long)c->n_layers);
    NEED(c->n_heads > 0 && c->hidden_size % c->n_heads == 0,
         "hidden_size %lld is not divisible by num_attention_heads %lld", (long long)c->hidden_size, (long long)c->n_heads);
    NEED(c->arch != LD_ENCODER_ESM || (c->hidden_size / c->n_heads) % 2 == 0, "head size %lld must be even for rotary",
         (long long)(c->hidden_size / c->n_heads));
    NEED(c->intermediate_size > 0 && c->intermediate_size <= 1 << 20, "intermediate_size %lld outside 1..1048576",
         (long long)c->intermediate_size);
    NEED(c->max_position > 0 && c->max_position <= 1 << 20, "max_position_embeddings %lld outside 1..1048576",
         (long long)c->max_position);
    NEED(c->arch != LD_ENCODER_BERT || (c->type_vocab_size > 0 && c->type_vocab_size <= 1024),
         "type_vocab_size %lld outside 1..1024", (long long)c->type_vocab_size);
    NEED(c->arch != LD_ENCODER_ESM || c->type_vocab_size == 0, "esm has no token types (type_vocab_size %lld)",
         (long long)c->type_vocab_size);
    NEED(c->norm_eps > 0 && c->norm_eps < 1, "layer_norm_eps %g outside (0, 1)", c->norm_eps);
    NEED(c->arch != LD_ENCODER_ESM || c->rope_theta > 0, "rope_theta %g must be positive", c->rope_theta);
    NEED(c->init_std > 0, "initializer_range %g must be positive", c->init_std);
    NEED(c->dropout >= 0 && c->dropout < 1, "hidden_dropout_prob %g outside [0, 1)", c->dropout);
    NEED(c->pad_token_id >= 0 && c->pad_token_id < c->vocab_size, "pad_token_id %d outside 0..%lld", c->pad_token_id,
         (long long)c->vocab_size - 1);
    NEED(c->mask_token_id >= -1 && c->mask_token_id < c->vocab_size, "mask_token_id %d outside -1..%lld",
         c->mask_token_id, (long long)c->vocab_size - 1);
    NEED(!c->token_dropout || (c->arch == LD_ENCODER_ESM && c->mask_token_id >= 0),
         "token_dropout needs the esm architecture and a mask_token_id");
    NEED(!(c->quick_gelu && c->gelu_tanh), "hidden_act: quick_gelu and gelu_new both set");
#undef NEED
    return LD_OK;
}

/* ---- the parameter tables ------------------------------------------------------------ */

#define LP(f) offsetof(enc_layer, f)
const enc_layer_param enc_layer_params[] = {
    {LP(q), {"attention.self.query.weight", "attention.self.query.weight",
     "self_attn.q_proj.weight"}, "attn_q.weight", ENC_INIT_NORMAL, ENC_SHAPE_CC},
    {LP(q_b), {"attention.self.query.bias", "attention.self.query.bias",
     "self_attn.q_proj.bias"}, "attn_q.bias", ENC_INIT_ZERO, ENC_SHAPE_C},
    {LP(k), {"attention.self.key.weight", "attention.self.key.weight",
     "self_attn.k_proj.weight"}, "attn_k.weight", ENC_INIT_NORMAL, ENC_SHAPE_CC},
    {LP(k_b), {"attention.self.key.bias", "attention.self.key.bias",
     "self_attn.k_proj.bias"}, "attn_k.bias", ENC_INIT_ZERO, ENC_SHAPE_C},
    {LP(v), {"attention.self.value.weight", "attention.self.value.weight",
     "self_attn.v_proj.weight"}, "attn_v.weight", ENC_INIT_NORMAL, ENC_SHAPE_CC},
    {LP(v_b), {"attention.self.value.bias", "attention.self.value.bias",
     "self_attn.v_proj.bias"}, "attn_v.bias", ENC_INIT_ZERO, ENC_SHAPE_C},
    {LP(o), {"attention.output.dense.weight", "attention.output.dense.weight",
     "self_attn.out_proj.weight"}, "attn_output.weight", ENC_INIT_NORMAL,
     ENC_SHAPE_CC},
    {LP(o_b), {"attention.output.dense.bias", "attention.output.dense.bias",
     "self_attn.out_proj.bias"}, "attn_output.bias", ENC_INIT_ZERO, ENC_SHAPE_C},
    {LP(ln1_w), {"attention.output.LayerNorm.weight", "attention.LayerNorm.weight",
     "layer_norm1.weight"}, "attn_output_norm.weight",
     ENC_INIT_ONE, ENC_SHAPE_C},
    {LP(ln1_b), {"attention.output.LayerNorm.bias", "attention.LayerNorm.bias",
     "layer_norm1.bias"}, "attn_output_norm.bias", ENC_INIT_ZERO,
     ENC_SHAPE_C},
    {LP(up), {"intermediate.dense.weight", "intermediate.dense.weight",
     "mlp.fc1.weight"}, "ffn_up.weight", ENC_INIT_NORMAL, ENC_SHAPE_IC},
    {LP(up_b), {"intermediate.dense.bias", "intermediate.dense.bias",
     "mlp.fc1.bias"}, "ffn_up.bias", ENC_INIT_ZERO, ENC_SHAPE_I},
    {LP(down), {"output.dense.weight", "output.dense.weight",
     "mlp.fc2.weight"}, "ffn_down.weight", ENC_INIT_NORMAL, ENC_SHAPE_CI},
    {LP(down_b), {"output.dense.bias", "output.dense.bias",
     "mlp.fc2.bias"}, "ffn_down.bias", ENC_INIT_ZERO, ENC_SHAPE_C},
    {LP(ln2_w), {"output.LayerNorm.weight", "LayerNorm.weight",
     "layer_norm2.weight"}, "layer_output_norm.weight", ENC_INIT_ONE, ENC_SHAPE_C},
    {LP(ln2_b), {"output.LayerNorm.bias", "LayerNorm.bias",
     "layer_norm2.bias"}, "layer_output_norm.bias", ENC_INIT_ZERO, ENC_SHAPE_C},
};
const int enc_n_layer_params = (int)(sizeof enc_layer_params / sizeof enc_layer_params[0]);
#undef LP

#define TP(f) offsetof(struct ld_encoder, f)
static const enc_top_param bert_top[] = {
    {TP(wte), "bert.embeddings.word_embeddings.weight", "token_embd.weight", ENC_INIT_NORMAL, 'V', 'C', false},
    {TP(wpe), "bert.embeddings.position_embeddings.weight", "position_embd.weight", ENC_INIT_NORMAL, 'P', 'C', false},
    {TP(wtt), "bert.embeddings.token_type_embeddings.weight", "token_types.weight", ENC_INIT_NORMAL, 'T', 'C', false},
    {TP(emb_ln_w), "bert.embeddings.LayerNorm.weight", "token_embd_norm.weight", ENC_INIT_ONE, 'C', 0, false},
    {TP(emb_ln_b), "bert.embeddings.LayerNorm.bias", "token_embd_norm.bias", ENC_INIT_ZERO, 'C', 0, false},
    {TP(head_w), "cls.predictions.transform.dense.weight", NULL, ENC_INIT_NORMAL, 'C', 'C', false},
    {TP(head_b), "cls.predictions.transform.dense.bias", NULL, ENC_INIT_ZERO, 'C', 0, false},
    {TP(head_ln_w), "cls.predictions.transform.LayerNorm.weight", NULL, ENC_INIT_ONE, 'C', 0, false},
    {TP(head_ln_b), "cls.predictions.transform.LayerNorm.bias", NULL, ENC_INIT_ZERO, 'C', 0, false},
    {TP(head_bias), "cls.predictions.bias", NULL, ENC_INIT_ZERO, 'V', 0, false},
    {0, NULL, NULL, 0, 0, 0, false},
};
static const enc_top_param esm_top[] = {
    {TP(wte), "esm.embeddings.word_embeddings.weight", NULL, ENC_INIT_NORMAL, 'V', 'C', false},
    {TP(final_ln_w), "esm.encoder.emb_layer_norm_after.weight", NULL, ENC_INIT_ONE, 'C', 0, false},
    {TP(final_ln_b), "esm.encoder.emb_layer_norm_after.bias", NULL, ENC_INIT_ZERO, 'C', 0, false},
    {TP(contact_w), "esm.contact_head.regression.weight", NULL, ENC_INIT_ZERO, '1', 'L', true},
    {TP(contact_b), "esm.contact_head.regression.bias", NULL, ENC_INIT_ZERO, '1', 0, true},
    {TP(head_w), "lm_head.dense.weight", NULL, ENC_INIT_NORMAL, 'C', 'C', false},
    {TP(head_b), "lm_head.dense.bias", NULL, ENC_INIT_ZERO, 'C', 0, false},
    {TP(head_ln_w), "lm_head.layer_norm.weight", NULL, ENC_INIT_ONE, 'C', 0, false},
    {TP(head_ln_b), "lm_head.layer_norm.bias", NULL, ENC_INIT_ZERO, 'C', 0, false},
    {TP(head_bias), "lm_head.bias", NULL, ENC_INIT_ZERO, 'V', 0, false},
    {0, NULL, NULL, 0, 0, 0, false},
};
/* transformers' CLIPTextTransformer / CLIPVisionTransformer (after "text_model." /
 * "vision_model."); the vision tower's embeddings belong to the two-tower model (clip.c) */
static const enc_top_param clip_text_top[] = {
    {TP(wte), "embeddings.token_embedding.weight", NULL, ENC_INIT_NORMAL, 'V', 'C', false},
    {TP(wpe), "embeddings.position_embedding.weight", NULL, ENC_INIT_NORMAL, 'P', 'C', false},
    {TP(final_ln_w), "final_layer_norm.weight", NULL, ENC_INIT_ONE, 'C', 0, false},
    {TP(final_ln_b), "final_layer_norm.bias", NULL, ENC_INIT_ZERO, 'C', 0, false},
    {0, NULL, NULL, 0, 0, 0, false},
};
static const enc_top_param clip_vision_top[] = {
    {TP(final_ln_w), "post_layernorm.weight", NULL, ENC_INIT_ONE, 'C', 0, false},
    {TP(final_ln_b), "post_layernorm.bias", NULL, ENC_INIT_ZERO, 'C', 0, false},
    {0, NULL, NULL, 0, 0, 0, false},
};
#undef TP

const enc_top_param *enc_top_params(ld_encoder_arch arch) {
    return arch == LD_ENCODER_ESM ? esm_top : bert_top;
}
const char *enc_layer_prefix(ld_encoder_arch arch) {
    return arch == LD_ENCODER_ESM ? "esm.encoder.layer." : "bert.encoder.layer.";
}
static const enc_top_param *top_params_named(ld_encoder_arch arch, int names) {
    return names == ENC_NAMES_CLIP_TEXT ? clip_text_top : names == ENC_NAMES_CLIP_VISION ? clip_vision_top : enc_top_params(arch);
}

static int64_t top_dim(const ld_encoder_config *c, int code) {
    switch (code) {
    case 'V': return c->vocab_size;
    case 'P': return c->max_position;
    case 'T': return c->type_vocab_size;
    case 'C': return c->hidden_size;
    case 'L': return c->n_layers * c->n_heads;
    case '1': return 1;
    default: return 0;
    }
}

static void layer_shape(const ld_encoder_config *c, int shape, int64_t dims[2], int *ndim) {
    int64_t C = c->hidden_size, I = c->intermediate_size;
    static const int nd[] = {2, 2, 2, 1, 1};
    *ndim = nd[shape];
    dims[0] = shape == ENC_SHAPE_IC || shape == ENC_SHAPE_I ? I : C;
    dims[1] = shape == ENC_SHAPE_CI ? I : C;
}

int64_t ld_encoder_config_num_params(const ld_encoder_config *c) {
    int64_t n = 0;
    for (const enc_top_param *p = enc_top_params(c->arch); p->hf; p++)
        n += top_dim(c, p->rows) * (p->cols ? top_dim(c, p->cols) : 1);
    for (int i = 0; i < enc_n_layer_params; i++) {
        int64_t d[2];
        int nd;
        layer_shape(c, enc_layer_params[i].shape, d, &nd);
        n += c->n_layers * d[0] * (nd == 2 ? d[1] : 1);
    }
    return n;
}

double ld_encoder_train_flops_per_token(const ld_encoder_config *c, int64_t T, double mlm_fraction) {
    double C = (double)c->hidden_size, I = (double)c->intermediate_size, V = (double)c->vocab_size;
    double layer = 4 * C * C + 2 * C * I;  /* q, k, v, o and the MLP */
    double head = C * C + C * V;           /* dense and the tied decoder, only at predicted positions */
    /* attention: q.k and p.v are 2 T C multiply-adds per token and layer, x 3 for training, over
     * every key (the causal LM's 6 L C T halves this for its mask) */
    return 6.0 * (double)c->n_layers * layer + 6.0 * mlm_fraction * head +
           12.0 * (double)c->n_layers * C * (double)T;
}

/* ---- construction -------------------------------------------------------------------- */

typedef struct init_state {
    ld_encoder *m;
    ld_rng rng;
    const char *prefix; /* before every parameter name ("" for a model of its own) */
} init_state;

ld_status enc_each_param(const ld_encoder_config *cfg, ld_encoder *m,
                         ld_status (*fn)(void *user, const enc_param_desc *p), void *user) {
    return enc_each_param_named(cfg, ENC_NAMES_ARCH, m, fn, user);
}

ld_status enc_each_param_named(const ld_encoder_config *cfg, int names, ld_encoder *m,
                               ld_status (*fn)(void *user, const enc_param_desc *p), void *user) {
    const enc_top_param *top = top_params_named(cfg->arch, names);
    bool clip = names != ENC_NAMES_ARCH;
    ld_status st = LD_OK;
    /* embeddings first, then the layers, then what follows them (HF's state-dict order) */
    for (int pass = 0; pass < 2 && !st; pass++) {
        for (const enc_top_param *p = top; p->hf && !st; p++) {
            bool emb = strstr(p->hf, "embeddings.") != NULL;
            if (emb != (pass == 0)) continue;
            enc_param_desc d = {p->hf, p->cols ? 2 : 1, {top_dim(cfg, p->rows), top_dim(cfg, p->cols)}, p->init,
                                p->frozen, m ? &ENC_FIELD(m, p->field) : NULL};
            st = fn(user, &d);
        }
        for (int l = 0; pass == 0 && l < cfg->n_layers && !st; l++)
            for (int i = 0; i < enc_n_layer_params && !st; i++) {
                const enc_layer_param *p = &enc_layer_params[i];
                char name[LD_TENSOR_NAME_MAX];
                snprintf(name, sizeof name, "%s%d.%s", clip ? "encoder.layers." : enc_layer_prefix(cfg->arch), l,
                         p->hf[clip ? 2 : cfg->arch]);
                enc_param_desc d = {name, 0, {0, 0}, p->init, false, m ? &ENC_FIELD(&m->layers[l], p->field) : NULL};
                layer_shape(cfg, p->shape, d.dims, &d.ndim);
                st = fn(user, &d);
            }
    }
    return st;
}

static ld_status add_param(void *user, const enc_param_desc *p) {
    init_state *s = user;
    ld_tensor *t = NULL;
    char full[LD_TENSOR_NAME_MAX];
    snprintf(full, sizeof full, "%s%s", s->prefix, p->name);
    ld_status st = ld_params_add(s->m->params, full, p->ndim, p->dims, !p->frozen, &t);
    if (st) return st;
    float *x = t->data, std = s->m->cfg.init_std;
    int64_t n = ld_tensor_numel(t);
    for (int64_t i = 0; i < n; i++)
        x[i] = p->init == ENC_INIT_ZERO ? 0.0f : p->init == ENC_INIT_ONE ? 1.0f : std * ld_rng_normal(&s->rng);
    *p->slot = t;
    return LD_OK;
}

ld_status ld_encoder_new(ld_ctx *ctx, const ld_encoder_config *cfg, uint64_t seed, ld_encoder **out) {
    return enc_new_in(ctx, cfg, seed, NULL, "", true, ENC_NAMES_ARCH, out);
}

ld_status enc_new_in(ld_ctx *ctx, const ld_encoder_config *cfg, uint64_t seed, ld_params *shared, const char *prefix,
                     bool rotary, enc_names names, ld_encoder **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_encoder_new: NULL out");
    *out = NULL;
    ld_status st = ld_encoder_config_validate(ctx, cfg);
    if (st) return st;
    if (names != ENC_NAMES_ARCH && (cfg->arch != LD_ENCODER_ESM || rotary))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "encoder: CLIP tensor names need the pre-LN layout without rotary");
    ld_encoder *m = ld_calloc(ctx, 1, sizeof *m);
    if (!m) return ld_ctx_status(ctx);
    m->ctx = ctx;
    m->cfg = *cfg;
    m->no_rotary = !rotary;
    m->names = names;
    m->shared_params = shared != NULL;
    if (shared) m->params = shared;
    if ((!shared && (st = ld_params_new(ctx, &m->params))) ||
        !(m->layers = ld_calloc(ctx, (size_t)cfg->n_layers, sizeof *m->layers))) {
        ld_encoder_free(m);
        return st ? st : ld_ctx_status(ctx);
    }
    init_state s = {m, ld_rng_init(seed), prefix ? prefix : ""};
    if ((st = enc_each_param_named(cfg, names, m, add_param, &s))) {
        ld_encoder_free(m);
        return st;
    }
    /* nn.Embedding(padding_idx): the padding row starts at zero (CLIP's token embedding has
     * no padding_idx; the vision tower has no token embedding) */
    if (names == ENC_NAMES_ARCH) memset((float *)m->wte->data + (int64_t)cfg->pad_token_id * cfg->hidden_size, 0,
           (size_t)cfg->hidden_size * sizeof(float));
    *out = m;
    return LD_OK;
}

void ld_encoder_free(ld_encoder *m) {
    if (!m) return;
    if (!m->shared_params) ld_params_free(m->params);
    ld_free(m->ctx, m->layers);
    ld_free(m->ctx, m);
}

const ld_encoder_config *ld_encoder_config_of(const ld_encoder *m) {
    return m ? &m->cfg : NULL;
}
ld_params *ld_encoder_params(ld_encoder *m) {
    return m ? m->params : NULL;
}
ld_ctx *ld_encoder_ctx(const ld_encoder *m) {
    return m ? m->ctx : NULL;
}

/* ---- forward ------------------------------------------------------------------------- */

#define TRY(call)               \
    do {                        \
        ld_status st_ = (call); \
        if (st_) return st_;    \
    } while (0)

static ld_status gelu(const ld_encoder *m, ld_tape *t, const ld_tensor *x, ld_tensor **y) {
    if (m->cfg.quick_gelu) return ld_op_quick_gelu(t, x, y);
    return m->cfg.gelu_tanh ? ld_op_gelu(t, x, y) : ld_op_gelu_erf(t, x, y);
}

/* Hidden dropout, only while recording for training. */
static ld_status dropout(const ld_encoder *m, ld_tape *t, ld_tensor *x, ld_tensor **y) {
    if (m->cfg.dropout <= 0 || !t->grad_enabled) {
        *y = x;
        return LD_OK;
    }
    return ld_op_dropout(t, x, m->cfg.dropout, y);
}

/* x [B, T, C] -> the attention block's output projection [B, T, C] (before the residual). */
static ld_status attention_block(ld_encoder *m, ld_tape *t, const enc_layer *L, const ld_tensor *h,
                                 const int32_t *lengths, ld_tensor **out) {
    const ld_encoder_config *c = &m->cfg;
    ld_tensor *q, *k, *v, *a;
    TRY(ld_op_linear(t, h, L->q, L->q_b, false, &q)); /* [B, T, C] = H heads of D */
    TRY(ld_op_linear(t, h, L->k, L->k_b, false, &k));
    TRY(ld_op_linear(t, h, L->v, L->v_b, false, &v));
    if (c->arch == LD_ENCODER_ESM && !m->no_rotary) { /* rotary on q and k, positions 0..T-1 */
        TRY(ld_op_rope(t, q, c->n_heads, 0, c->rope_theta, &q));
        TRY(ld_op_rope(t, k, c->n_heads, 0, c->rope_theta, &k));
    }
    /* bidirectional (causal: keys up to the query's position): never padding */
    TRY(ld_op_attention(t, q, k, v, c->n_heads, c->n_heads, c->causal, lengths, &a));
    TRY(ld_op_linear(t, a, L->o, L->o_b, false, &a));
    return dropout(m, t, a, out);
}

/* h [B, T, C] -> down(gelu(up(h))) [B, T, C] (before the residual). */
static ld_status mlp_block(ld_encoder *m, ld_tape *t, const enc_layer *L, const ld_tensor *h, ld_tensor **out) {
    ld_tensor *u, *a, *d;
    TRY(ld_op_linear(t, h, L->up, L->up_b, false, &u)); /* [B, T, I] */
    TRY(gelu(m, t, u, &a));
    TRY(ld_op_linear(t, a, L->down, L->down_b, false, &d)); /* [B, T, C] */
    return dropout(m, t, d, out);
}

static ld_status check_inputs(const ld_encoder *m, const int32_t *ids, const int32_t *types, const int32_t *lengths,
                              int64_t B, int64_t T) {
    const ld_encoder_config *c = &m->cfg;
    if (!ids) return ld_error(m->ctx, LD_ERR_INVALID_ARG, "encoder: no input ids");
    if (B <= 0 || T <= 0 || T > c->max_position)
        return ld_error(m->ctx, LD_ERR_SHAPE, "encoder: batch %lld x %lld tokens: length must be in 1..%lld (max_position)",
                        (long long)B, (long long)T, (long long)c->max_position);
    for (int64_t b = 0; lengths && b < B; b++)
        if (lengths[b] < 1 || lengths[b] > T)
            return ld_error(m->ctx, LD_ERR_INVALID_ARG, "encoder: row %lld has length %d outside 1..%lld", (long long)b,
                            lengths[b], (long long)T);
    if (types && c->arch != LD_ENCODER_BERT)
        return ld_error(m->ctx, LD_ERR_INVALID_ARG, "encoder: esm has no token types");
    for (int64_t i = 0; types && i < B * T; i++)
        if (types[i] < 0 || types[i] >= c->type_vocab_size)
            return ld_error(m->ctx, LD_ERR_INVALID_ARG, "encoder: token type %d at position %lld outside 0..%lld",
                            types[i], (long long)i, (long long)c->type_vocab_size - 1);
    return LD_OK;
}

/* bert: LayerNorm(word + position + token type), then dropout. */
static ld_status embed_bert(ld_encoder *m, ld_tape *t, const int32_t *ids, const int32_t *types, int64_t B,
                            int64_t T, ld_tensor **out) {
    ld_tensor *e, *p, *tt, *h;
    int32_t *pos = ld_arena_alloc(t->act, (size_t)(B * T) * sizeof(int32_t));
    int32_t *zero = types ? NULL : ld_arena_alloc(t->act, (size_t)(B * T) * sizeof(int32_t));
    if (!pos || (!types && !zero)) return ld_ctx_status(m->ctx);
    for (int64_t i = 0; i < B * T; i++) pos[i] = (int32_t)(i % T);
    if (zero) memset(zero, 0, (size_t)(B * T) * sizeof(int32_t));
    TRY(ld_op_embedding(t, ids, B * T, m->wte, &e)); /* [B*T, C] */
    TRY(ld_op_embedding(t, pos, B * T, m->wpe, &p));
    TRY(ld_op_embedding(t, types ? types : zero, B * T, m->wtt, &tt));
    TRY(ld_op_add(t, e, p, &e));
    TRY(ld_op_add(t, e, tt, &e));
    TRY(ld_op_layernorm(t, e, m->emb_ln_w, m->emb_ln_b, m->cfg.norm_eps, &h));
    return dropout(m, t, h, out);
}

/* esm: word embeddings; with token dropout, mask-token rows zeroed and each row scaled by
 * 0.88 / (1 - its observed mask share); padding rows zeroed (HF multiplies by the mask). */
static ld_status embed_esm(ld_encoder *m, ld_tape *t, const int32_t *ids, const int32_t *lengths, int64_t B,
                           int64_t T, ld_tensor **out) {
    const ld_encoder_config *c = &m->cfg;
    ld_tensor *e;
    TRY(ld_op_embedding(t, ids, B * T, m->wte, &e));
    if (!c->token_dropout && !lengths) {
        *out = e;
        return LD_OK;
    }
    float *s = ld_arena_alloc(t->act, (size_t)(B * T) * sizeof(float));
    if (!s) return ld_ctx_status(m->ctx);
    for (int64_t b = 0; b < B; b++) {
        int64_t len = lengths ? lengths[b] : T, masked = 0;
        for (int64_t i = 0; i < len && c->token_dropout; i++) masked += ids[b * T + i] == c->mask_token_id;
        /* 0.15 x 0.8: the mask share of ESM's training, hard-coded as in ESM and transformers */
        float scale = c->token_dropout ? (float)((1.0 - 0.15 * 0.8) / (1.0 - (double)masked / (double)len)) : 1.0f;
        for (int64_t i = 0; i < T; i++) {
            bool drop = i >= len || (c->token_dropout && ids[b * T + i] == c->mask_token_id);
            s[b * T + i] = drop ? 0.0f : scale;
        }
    }
    return ld_op_scale_rows(t, e, s, out);
}

ld_status ld_encoder_forward(ld_encoder *m, ld_tape *t, const int32_t *ids, const int32_t *types,
                             const int32_t *lengths, int64_t B, int64_t T, ld_tensor **hidden) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !t || !hidden) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_forward: NULL argument");
    TRY(check_inputs(m, ids, types, lengths, B, T));
    const ld_encoder_config *c = &m->cfg;
    bool esm = c->arch == LD_ENCODER_ESM;
    ld_tensor *e, *x;
    if (esm) TRY(embed_esm(m, t, ids, lengths, B, T, &e));
    else TRY(embed_bert(m, t, ids, types, B, T, &e));
    TRY(ld_op_reshape(t, e, 3, (int64_t[]){B, T, c->hidden_size}, &x)); /* [B, T, C] */
    return enc_blocks_forward(m, t, x, lengths, hidden);
}

ld_status enc_blocks_forward(ld_encoder *m, ld_tape *t, ld_tensor *x, const int32_t *lengths, ld_tensor **hidden) {
    const ld_encoder_config *c = &m->cfg;
    bool esm = c->arch == LD_ENCODER_ESM;
    ld_tensor *h, *o;
    if (m->taps) m->taps[0] = x;
    for (int l = 0; l < c->n_layers; l++) {
        const enc_layer *L = &m->layers[l];
        if (esm) { /* pre-LN: x += attn(LN1(x)); x += mlp(LN2(x)) */
            TRY(ld_op_layernorm(t, x, L->ln1_w, L->ln1_b, c->norm_eps, &h));
            TRY(attention_block(m, t, L, h, lengths, &o));
            TRY(ld_op_add(t, x, o, &x));
            TRY(ld_op_layernorm(t, x, L->ln2_w, L->ln2_b, c->norm_eps, &h));
            TRY(mlp_block(m, t, L, h, &o));
            TRY(ld_op_add(t, x, o, &x));
        } else { /* post-LN: x = LN1(x + attn(x)); x = LN2(x + mlp(x)) */
            TRY(attention_block(m, t, L, x, lengths, &o));
            TRY(ld_op_add(t, x, o, &h));
            TRY(ld_op_layernorm(t, h, L->ln1_w, L->ln1_b, c->norm_eps, &x));
            TRY(mlp_block(m, t, L, x, &o));
            TRY(ld_op_add(t, x, o, &h));
            TRY(ld_op_layernorm(t, h, L->ln2_w, L->ln2_b, c->norm_eps, &x));
        }
        if (m->taps) m->taps[l + 1] = x;
    }
    if (esm) TRY(ld_op_layernorm(t, x, m->final_ln_w, m->final_ln_b, c->norm_eps, &x));
    if (m->taps) m->taps[c->n_layers] = x;
    *hidden = x;
    return LD_OK;
}

/* Rows `rows` (n indices) of x viewed as [R, C]: a gather with a gradient into x. */
static ld_status gather_rows(ld_encoder *m, ld_tape *t, const ld_tensor *x, const int32_t *rows, int64_t n,
                             ld_tensor **out) {
    int64_t C = x->shape[x->ndim - 1], R = ld_tensor_numel(x) / C;
    ld_tensor *flat;
    TRY(ld_op_reshape(t, x, 2, (int64_t[]){R, C}, &flat));
    return ld_op_embedding(t, rows, n, flat, out);
}

ld_status ld_encoder_mlm_logits(ld_encoder *m, ld_tape *t, const ld_tensor *hidden, const int32_t *positions,
                                int64_t n, ld_tensor **logits) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !t || !hidden || !logits)
        return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_mlm_logits: NULL argument");
    if (hidden->ndim < 2 || hidden->shape[hidden->ndim - 1] != m->cfg.hidden_size)
        return ld_error(m->ctx, LD_ERR_SHAPE, "mlm head: hidden states '%s' must end in the hidden size %lld", hidden->name,
                        (long long)m->cfg.hidden_size);
    ld_tensor *g = (ld_tensor *)hidden, *h, *a, *z;
    if (positions) TRY(gather_rows(m, t, hidden, positions, n, &g)); /* [n, C] */
    TRY(ld_op_linear(t, g, m->head_w, m->head_b, false, &h));
    TRY(gelu(m, t, h, &a));
    TRY(ld_op_layernorm(t, a, m->head_ln_w, m->head_ln_b, m->cfg.norm_eps, &z));
    return ld_op_linear(t, z, m->wte, m->head_bias, false, logits); /* decoder tied to the embeddings: [n, V] */
}

ld_status ld_encoder_mlm_loss(ld_encoder *m, ld_tape *t, const int32_t *ids, const int32_t *lengths,
                              const int32_t *targets, int64_t B, int64_t T, ld_tensor **loss, int64_t *counted,
                              ld_tensor **logits) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !t || !targets || !loss)
        return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_mlm_loss: NULL argument");
    int64_t n = 0;
    for (int64_t i = 0; i < B * T; i++) n += targets[i] != -100;
    if (n == 0) return ld_error(m->ctx, LD_ERR_INVALID_ARG, "mlm loss: no position of the batch is masked");
    int32_t *pos = ld_arena_alloc(t->act, (size_t)n * sizeof(int32_t));
    int32_t *tgt = ld_arena_alloc(t->act, (size_t)n * sizeof(int32_t));
    if (!pos || !tgt) return ld_ctx_status(m->ctx);
    for (int64_t i = 0, j = 0; i < B * T; i++)
        if (targets[i] != -100) pos[j] = (int32_t)i, tgt[j++] = targets[i];
    ld_tensor *hidden, *lg;
    TRY(ld_encoder_forward(m, t, ids, NULL, lengths, B, T, &hidden));
    TRY(ld_encoder_mlm_logits(m, t, hidden, pos, n, &lg));
    if (logits) *logits = lg;
    return ld_op_cross_entropy(t, lg, tgt, -100, loss, counted);
}

/* ---- pooling ------------------------------------------------------------------------- */

ld_status ld_encoder_pool(ld_encoder *m, ld_tape *t, const ld_tensor *hidden, const int32_t *lengths,
                          ld_pooling mode, ld_tensor **pooled) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !t || !hidden || !pooled)
        return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_encoder_pool: NULL argument");
    if (hidden->ndim != 3)
        return ld_error(m->ctx, LD_ERR_SHAPE, "pooling: hidden states '%s' must be [B, T, C]", hidden->name);
    int64_t B = hidden->shape[0], T = hidden->shape[1], C = hidden->shape[2];
    for (int64_t b = 0; lengths && b < B; b++)
        if (lengths[b] < 1 || lengths[b] > T)
            return ld_error(m->ctx, LD_ERR_INVALID_ARG, "pooling: row %lld has length %d outside 1..%lld", (long long)b,
                            lengths[b], (long long)T);
    if (mode == LD_POOL_CLS) {
        int32_t *rows = ld_arena_alloc(t->act, (size_t)B * sizeof(int32_t));
        if (!rows) return ld_ctx_status(m->ctx);
        for (int64_t b = 0; b < B; b++) rows[b] = (int32_t)(b * T);
        return gather_rows(m, t, hidden, rows, B, pooled);
    }
    if (mode != LD_POOL_MEAN) return ld_error(m->ctx, LD_ERR_INVALID_ARG, "pooling: unknown mode %d", (int)mode);
    /* mean over real tokens as one product: pooled [B, C] = A [B, B*T] . hidden [B*T, C],
     * A[b, b*T + i] = 1 / lengths[b] for i < lengths[b] */
    ld_tensor *avg, *flat;
    TRY(ld_tape_tensor(t, 2, (int64_t[]){B, B * T}, &avg));
    float *a = avg->data;
    for (int64_t b = 0; b < B; b++) {
        int64_t len = lengths ? lengths[b] : T;
        for (int64_t i = 0; i < len; i++) a[b * B * T + b * T + i] = 1.0f / (float)len;
    }
    TRY(ld_op_reshape(t, hidden, 2, (int64_t[]){B * T, C}, &flat));
    return ld_op_linear(t, avg, flat, NULL, true, pooled);
}

bool ld_pooling_from_name(const char *name, ld_pooling *out) {
    if (!name) return false;
    if (!strcmp(name, "cls")) *out = LD_POOL_CLS;
    else if (!strcmp(name, "mean")) *out = LD_POOL_MEAN;
    else if (!strcmp(name, "last")) *out = LD_POOL_LAST;
    else return false;
    return true;
}

const char *ld_pooling_name(ld_pooling p) {
    return p == LD_POOL_MEAN ? "mean" : p == LD_POOL_LAST ? "last" : "cls";
}

/* models/clip.c — the image-text two-tower model (文瀾 / BriVL, CLIP): the ViT image tower
 * (patch embedding as one matrix product over unfolded patches, class token, learned positions,
 * the encoder's pre-LN blocks), the BERT text tower, projections, L2 normalisation, the InfoNCE
 * loss, the model directory (config.json, model.safetensors, vocab.txt), caption encoding and
 * batched inference. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/team.h"
#include "io/json.h"
#include "liandan/clip.h"
#include "liandan/io.h"
#include "models/encoder_internal.h"

struct ld_clip {
    ld_ctx *ctx;
    ld_clip_config cfg;
    ld_params *params;
    ld_encoder *text, *vision;
    ld_tensor *patch_w;     /* [W, 3 P P + 1]: the last column is the class embedding;
                             * LD_CLIP_LAYOUT_HF: [W, 3 P P] (the file's [W, 3, P, P]) */
    ld_tensor *class_emb;   /* LD_CLIP_LAYOUT_HF: [1, W] (the file's [W]); else NULL */
    ld_tensor *pos;         /* [N + 1, W] */
    ld_tensor *pre_ln_w, *pre_ln_b;
    ld_tensor *visual_proj; /* [E, W] */
    ld_tensor *text_proj;   /* [E, C] */
    ld_tensor *logit_scale; /* [1] */
};

#define TRY(call)               \
    do {                        \
        ld_status st_ = (call); \
        if (st_) return st_;    \
    } while (0)

/* ---- configuration ---------------------------------------------------------------------- */

ld_clip_config ld_clip_default_config(void) {
    ld_clip_config c = {.image_size = 32, .patch_size = 4, .vision_width = 128, .vision_layers = 4, .vision_heads = 4,
                        .vision_mlp = 512, .vision_eps = 1e-5f, .embed_dim = 128,
                        .logit_scale_init = 2.6592f, .logit_scale_max = 4.6052f};
    c.text = ld_encoder_default_config(LD_ENCODER_BERT);
    c.text.vocab_size = 4096, c.text.hidden_size = 128, c.text.n_layers = 4, c.text.n_heads = 4;
    c.text.intermediate_size = 512, c.text.max_position = 32, c.text.dropout = 0.0f, c.text.norm_eps = 1e-12f;
    return c;
}

ld_clip_config ld_clip_hf_config(void) {
    ld_clip_config c = {.layout = LD_CLIP_LAYOUT_HF, .image_size = 224, .patch_size = 32, .vision_width = 768,
                        .vision_layers = 12, .vision_heads = 12, .vision_mlp = 3072, .vision_eps = 1e-5f,
                        .embed_dim = 512, .logit_scale_init = 2.6592f, .logit_scale_max = 4.6052f,
                        .vision_quick_gelu = true, .bos_token_id = 49406, .eos_token_id = 49407};
    c.text = ld_encoder_default_config(LD_ENCODER_ESM); /* pre-LN with a final LayerNorm; no rotary (clip.c) */
    c.text.vocab_size = 49408, c.text.hidden_size = 512, c.text.n_layers = 12, c.text.n_heads = 8;
    c.text.intermediate_size = 2048, c.text.max_position = 77, c.text.norm_eps = 1e-5f, c.text.dropout = 0.0f;
    c.text.token_dropout = false, c.text.mask_token_id = -1, c.text.pad_token_id = 1;
    c.text.quick_gelu = true, c.text.causal = true;
    return c;
}

static int64_t n_patches(const ld_clip_config *c) {
    int64_t g = c->image_size / c->patch_size;
    return g * g;
}

/* The vision tower as an encoder config: esm layout (pre-LN, final LayerNorm) without rotary. */
static ld_encoder_config vision_encoder_config(const ld_clip_config *c) {
    ld_encoder_config v = ld_encoder_default_config(LD_ENCODER_ESM);
    v.vocab_size = 1, v.hidden_size = c->vision_width, v.n_layers = c->vision_layers, v.n_heads = c->vision_heads;
    v.intermediate_size = c->vision_mlp, v.max_position = n_patches(c) + 1, v.norm_eps = c->vision_eps;
    v.token_dropout = false, v.pad_token_id = 0, v.mask_token_id = -1, v.dropout = 0.0f, v.init_std = c->text.init_std;
    v.quick_gelu = c->vision_quick_gelu, v.gelu_tanh = c->vision_gelu_tanh;
    return v;
}

ld_status ld_clip_config_validate(ld_ctx *ctx, const ld_clip_config *c) {
    if (!c) return ld_error(ctx, LD_ERR_INVALID_ARG, "clip config is NULL");
    bool hf = c->layout == LD_CLIP_LAYOUT_HF;
    if (c->layout != LD_CLIP_LAYOUT_BERT && !hf)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "clip config: unknown layout %d", (int)c->layout);
    if (!hf && c->text.arch != LD_ENCODER_BERT)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "clip config: the text tower must be bert");
    if (hf && (c->text.arch != LD_ENCODER_ESM || !c->text.causal || c->text.token_dropout || c->text.type_vocab_size))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "clip config: a CLIPModel text tower is causal pre-LN (esm layout, "
                                                 "no token dropout or token types)");
    TRY(ld_encoder_config_validate(ctx, &c->text));
#define NEED(cond, ...) \
    if (!(cond)) return ld_error(ctx, LD_ERR_INVALID_ARG, "clip config: " __VA_ARGS__)
    NEED(!(c->vision_quick_gelu && c->vision_gelu_tanh), "vision hidden_act: quick_gelu and gelu_new both set");
    NEED(!hf || (c->bos_token_id >= 0 && c->eos_token_id >= 0), "text bos_token_id %d / eos_token_id %d must be >= 0",
         c->bos_token_id, c->eos_token_id);
    NEED(c->patch_size > 0 && c->image_size > 0 && c->image_size <= 4096 && c->image_size % c->patch_size == 0,
         "image_size %lld must be a positive multiple of patch_size %lld (at most 4096)", (long long)c->image_size,
         (long long)c->patch_size);
    NEED(c->vision_width > 0 && c->vision_width <= 65536 && c->vision_heads > 0 && c->vision_width % c->vision_heads == 0,
         "vision hidden_size %lld must be a multiple of num_attention_heads %lld", (long long)c->vision_width,
         (long long)c->vision_heads);
    NEED(c->vision_layers > 0 && c->vision_layers <= 1024, "vision num_hidden_layers %lld outside 1..1024",
         (long long)c->vision_layers);
    NEED(c->vision_mlp > 0 && c->vision_mlp <= 1 << 20, "vision intermediate_size %lld outside 1..1048576",
         (long long)c->vision_mlp);
    NEED(c->vision_eps > 0 && c->vision_eps < 1, "vision layer_norm_eps %g outside (0, 1)", c->vision_eps);
    NEED(c->embed_dim > 0 && c->embed_dim <= 65536, "projection_dim %lld outside 1..65536", (long long)c->embed_dim);
    NEED(isfinite(c->logit_scale_init) && isfinite(c->logit_scale_max) && c->logit_scale_init <= c->logit_scale_max,
         "logit_scale_init_value %g must be finite and at most the clamp %g", c->logit_scale_init, c->logit_scale_max);
#undef NEED
    return LD_OK;
}

double ld_clip_train_flops_per_pair(const ld_clip_config *c, int64_t T) {
    double W = (double)c->vision_width, Nt = (double)(n_patches(c) + 1);
    double K = 3.0 * (double)(c->patch_size * c->patch_size) + (c->layout == LD_CLIP_LAYOUT_HF ? 0 : 1);
    double C = (double)c->text.hidden_size, E = (double)c->embed_dim;
    double vlayer = 4 * W * W + 2 * W * (double)c->vision_mlp, tlayer = 4 * C * C + 2 * C * (double)c->text.intermediate_size;
    double vision = Nt * (6.0 * ((double)c->vision_layers * vlayer + W * K) + 12.0 * (double)c->vision_layers * W * Nt);
    /* attention: 12 L C T per token over every key; a causal tower's mask halves it */
    double attn = (c->text.causal ? 6.0 : 12.0) * (double)c->text.n_layers * C * (double)T;
    double text = (double)T * (6.0 * (double)c->text.n_layers * tlayer + attn);
    return vision + text + 6.0 * (W * E + C * E);
}

/* ---- construction ----------------------------------------------------------------------- */

static ld_tensor *add(ld_clip *m, ld_status *st, const char *name, int ndim, int64_t d0, int64_t d1) {
    if (*st) return NULL;
    ld_tensor *t = NULL;
    *st = ld_params_add(m->params, name, ndim, (int64_t[]){d0, d1}, true, &t);
    return t;
}

ld_status ld_clip_new(ld_ctx *ctx, const ld_clip_config *cfg, uint64_t seed, ld_clip **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_clip_new: NULL out");
    *out = NULL;
    TRY(ld_clip_config_validate(ctx, cfg));
    ld_clip *m = ld_calloc(ctx, 1, sizeof *m);
    if (!m) return ld_ctx_status(ctx);
    m->ctx = ctx, m->cfg = *cfg;
    ld_encoder_config vc = vision_encoder_config(cfg);
    bool hf = cfg->layout == LD_CLIP_LAYOUT_HF;
    ld_status st = ld_params_new(ctx, &m->params);
    if (!st)
        st = enc_new_in(ctx, &cfg->text, seed, m->params, "text_model.", !hf, hf ? ENC_NAMES_CLIP_TEXT : ENC_NAMES_ARCH,
                        &m->text);
    if (!st)
        st = enc_new_in(ctx, &vc, ld_rng_at(seed, 1), m->params, "vision_model.", false,
                        hf ? ENC_NAMES_CLIP_VISION : ENC_NAMES_ARCH, &m->vision);
    int64_t W = cfg->vision_width, K = 3 * cfg->patch_size * cfg->patch_size + (hf ? 0 : 1), E = cfg->embed_dim;
    if (hf) m->class_emb = add(m, &st, "vision_model.embeddings.class_embedding", 2, 1, W);
    m->patch_w = add(m, &st, "vision_model.embeddings.patch_embedding.weight", 2, W, K);
    m->pos = add(m, &st, "vision_model.embeddings.position_embedding.weight", 2, n_patches(cfg) + 1, W);
    m->pre_ln_w = add(m, &st, "vision_model.pre_layrnorm.weight", 1, W, 0);
    m->pre_ln_b = add(m, &st, "vision_model.pre_layrnorm.bias", 1, W, 0);
    m->visual_proj = add(m, &st, "visual_projection.weight", 2, E, W);
    m->text_proj = add(m, &st, "text_projection.weight", 2, E, cfg->text.hidden_size);
    m->logit_scale = add(m, &st, "logit_scale", 1, 1, 0);
    if (st) {
        ld_clip_free(m);
        return st;
    }
    /* what the towers have but a two-tower model never uses: the MLM heads, the ViT's
     * one-row word table; frozen so they cost no gradient or optimizer work */
    ld_params_set_trainable(m->params, "text_model.cls.", false);
    ld_params_set_trainable(m->params, "vision_model.lm_head.", false);
    ld_params_set_trainable(m->params, "vision_model.esm.embeddings.", false);
    /* CLIP's initialisation: patches and positions N(0, W^-1/2), projections N(0, width^-1/2) */
    ld_rng r = ld_rng_init(ld_rng_at(seed, 2));
    struct {
        ld_tensor *t;
        double std;
    } init[] = {{m->patch_w, 1 / sqrt((double)W)}, {m->pos, 0.02}, {m->visual_proj, 1 / sqrt((double)W)},
                {m->text_proj, 1 / sqrt((double)cfg->text.hidden_size)}, {m->class_emb, 1 / sqrt((double)W)}};
    for (size_t i = 0; i < sizeof init / sizeof init[0]; i++) {
        if (!init[i].t) continue;
        float *x = init[i].t->data;
        for (int64_t j = 0; j < ld_tensor_numel(init[i].t); j++) x[j] = (float)init[i].std * ld_rng_normal(&r);
    }
    for (int64_t j = 0; j < W; j++) ((float *)m->pre_ln_w->data)[j] = 1.0f;
    ((float *)m->logit_scale->data)[0] = cfg->logit_scale_init;
    *out = m;
    return LD_OK;
}

void ld_clip_free(ld_clip *m) {
    if (!m) return;
    ld_encoder_free(m->text);
    ld_encoder_free(m->vision);
    ld_params_free(m->params);
    ld_free(m->ctx, m);
}

const ld_clip_config *ld_clip_config_of(const ld_clip *m) {
    return m ? &m->cfg : NULL;
}
ld_params *ld_clip_params(ld_clip *m) {
    return m ? m->params : NULL;
}
ld_ctx *ld_clip_ctx(const ld_clip *m) {
    return m ? m->ctx : NULL;
}
ld_encoder *ld_clip_text_tower(ld_clip *m) {
    return m ? m->text : NULL;
}

/* ---- forward ---------------------------------------------------------------------------- */

ld_status ld_clip_patch_embed(ld_clip *m, ld_tape *t, const float *pixels, int64_t B, ld_tensor **tokens) {
    if (!m || !t || !pixels || !tokens || B <= 0)
        return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_clip_patch_embed: bad argument");
    const ld_clip_config *c = &m->cfg;
    /* HF: the class token is a parameter of its own, inserted before the patches */
    int64_t cls = m->class_emb ? 0 : 1;
    int64_t S = c->image_size, P = c->patch_size, G = S / P, N = G * G, K = 3 * P * P + cls, W = c->vision_width;
    /* unfolded [B * (N + 1), K]: row 0 of each image is the class token (a one in the last
     * column picks the class embedding), rows 1.. the patches in (channel, y, x) order, the
     * layout of a Conv2d weight [W, 3, P, P]; HF: [B * N, K], the patches only */
    ld_tensor *u, *e;
    TRY(ld_tape_tensor(t, 2, (int64_t[]){B * (N + cls), K}, &u));
    float *ud = u->data;
    for (int64_t b = 0; b < B; b++) {
        const float *img = pixels + b * 3 * S * S;
        if (cls) ud[(b * (N + 1)) * K + K - 1] = 1.0f;
        for (int64_t gy = 0; gy < G; gy++)
            for (int64_t gx = 0; gx < G; gx++) {
                float *row = ud + (b * (N + cls) + cls + gy * G + gx) * K;
                for (int64_t ch = 0; ch < 3; ch++)
                    for (int64_t ky = 0; ky < P; ky++)
                        memcpy(row + (ch * P + ky) * P, img + (ch * S + gy * P + ky) * S + gx * P, (size_t)P * sizeof(float));
            }
    }
    TRY(ld_op_linear(t, u, m->patch_w, NULL, false, &e)); /* [B * (N + cls), W] */
    if (cls) return ld_op_reshape(t, e, 3, (int64_t[]){B, N + 1, W}, tokens);
    TRY(ld_op_reshape(t, e, 3, (int64_t[]){B, N, W}, &e));
    return ld_op_rows_insert(t, e, m->class_emb, false, tokens); /* [B, N + 1, W] */
}

ld_status ld_clip_image_embed(ld_clip *m, ld_tape *t, const float *pixels, int64_t B, ld_tensor **emb) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    TRY(ld_clip_patch_embed(m, t, pixels, B, emb));
    const ld_clip_config *c = &m->cfg;
    int64_t T = n_patches(c) + 1, W = c->vision_width;
    ld_tensor *x = *emb, *p, *h, *pooled, *proj;
    int32_t *pos = ld_arena_alloc(t->act, (size_t)(B * T) * sizeof(int32_t));
    if (!pos) return ld_ctx_status(m->ctx);
    for (int64_t i = 0; i < B * T; i++) pos[i] = (int32_t)(i % T);
    TRY(ld_op_embedding(t, pos, B * T, m->pos, &p)); /* [B * T, W] */
    TRY(ld_op_reshape(t, p, 3, (int64_t[]){B, T, W}, &p));
    TRY(ld_op_add(t, x, p, &x));
    TRY(ld_op_layernorm(t, x, m->pre_ln_w, m->pre_ln_b, c->vision_eps, &x));
    TRY(enc_blocks_forward(m->vision, t, x, NULL, &h));                  /* [B, T, W], post-LN included */
    TRY(ld_encoder_pool(m->vision, t, h, NULL, LD_POOL_CLS, &pooled));   /* [B, W] */
    TRY(ld_op_linear(t, pooled, m->visual_proj, NULL, false, &proj));   /* [B, E] */
    return ld_op_l2_normalize(t, proj, emb);
}

/* transformers' CLIPTextTransformer: token + position embeddings, the causal pre-LN blocks and
 * final_layer_norm, the hidden state at each row's end-of-text token: pooled [B, C]. */
static ld_status hf_text_pooled(ld_clip *m, ld_tape *t, const int32_t *ids, const int32_t *lengths, int64_t B,
                                int64_t T, ld_tensor **pooled) {
    const ld_encoder_config *c = &m->cfg.text;
    if (!ids) return ld_error(m->ctx, LD_ERR_INVALID_ARG, "clip text tower: no input ids");
    if (B <= 0 || T <= 0 || T > c->max_position)
        return ld_error(m->ctx, LD_ERR_SHAPE, "clip text tower: batch %lld x %lld tokens: length must be in 1..%lld "
                                              "(max_position_embeddings)", (long long)B, (long long)T, (long long)c->max_position);
    for (int64_t b = 0; lengths && b < B; b++)
        if (lengths[b] < 1 || lengths[b] > T)
            return ld_error(m->ctx, LD_ERR_INVALID_ARG, "clip text tower: row %lld has length %d outside 1..%lld",
                            (long long)b, lengths[b], (long long)T);
    int32_t *pos = ld_arena_alloc(t->act, (size_t)(B * T) * sizeof(int32_t));
    int32_t *rows = ld_arena_alloc(t->act, (size_t)B * sizeof(int32_t));
    if (!pos || !rows) return ld_ctx_status(m->ctx);
    for (int64_t i = 0; i < B * T; i++) pos[i] = (int32_t)(i % T);
    /* the pooled position: the first eos_token_id of the row (none: 0), or with the legacy
     * eos_token_id 2 the first largest id — transformers' rule, padding included */
    int32_t eos = m->cfg.eos_token_id;
    for (int64_t b = 0; b < B; b++) {
        const int32_t *r = ids + b * T;
        int64_t at = 0;
        if (eos == 2) {
            for (int64_t i = 1; i < T; i++)
                if (r[i] > r[at]) at = i;
        } else
            for (int64_t i = T - 1; i >= 0; i--)
                if (r[i] == eos) at = i;
        rows[b] = (int32_t)(b * T + at);
    }
    ld_tensor *e, *p, *x, *h, *flat;
    TRY(ld_op_embedding(t, ids, B * T, m->text->wte, &e)); /* [B * T, C] */
    TRY(ld_op_embedding(t, pos, B * T, m->text->wpe, &p));
    TRY(ld_op_add(t, e, p, &e));
    TRY(ld_op_reshape(t, e, 3, (int64_t[]){B, T, c->hidden_size}, &x));
    TRY(enc_blocks_forward(m->text, t, x, lengths, &h)); /* [B, T, C], causal, final_layer_norm included */
    TRY(ld_op_reshape(t, h, 2, (int64_t[]){B * T, c->hidden_size}, &flat));
    return ld_op_embedding(t, rows, B, flat, pooled); /* [B, C] */
}

ld_status ld_clip_text_embed(ld_clip *m, ld_tape *t, const int32_t *ids, const int32_t *lengths, int64_t B, int64_t T,
                             ld_tensor **emb) {
    LD_TEAM_SCOPE(m ? m->ctx : NULL);
    if (!m || !t || !emb) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_clip_text_embed: NULL argument");
    ld_tensor *h, *pooled, *proj;
    if (m->cfg.layout == LD_CLIP_LAYOUT_HF) TRY(hf_text_pooled(m, t, ids, lengths, B, T, &pooled));
    else {
        TRY(ld_encoder_forward(m->text, t, ids, NULL, lengths, B, T, &h));  /* [B, T, C] */
        TRY(ld_encoder_pool(m->text, t, h, lengths, LD_POOL_CLS, &pooled)); /* [B, C] */
    }
    TRY(ld_op_linear(t, pooled, m->text_proj, NULL, false, &proj));         /* [B, E] */
    return ld_op_l2_normalize(t, proj, emb);
}

ld_status ld_clip_loss(ld_clip *m, ld_tape *t, const float *pixels, const int32_t *ids, const int32_t *lengths,
                       int64_t B, int64_t T, ld_tensor **loss) {
    ld_tensor *img, *txt;
    TRY(ld_clip_image_embed(m, t, pixels, B, &img));
    TRY(ld_clip_text_embed(m, t, ids, lengths, B, T, &txt));
    return ld_op_infonce(t, img, txt, 0, m->logit_scale, m->cfg.logit_scale_max, loss);
}

ld_status ld_clip_loss_queued(ld_clip *m, ld_tape *t, const float *pixels, const int32_t *ids, const int32_t *lengths,
                              int64_t B, int64_t T, const float *image_queue, int64_t n_image, const float *text_queue,
                              int64_t n_text, ld_tensor **loss) {
    ld_tensor *img, *txt;
    TRY(ld_clip_image_embed(m, t, pixels, B, &img));
    TRY(ld_clip_text_embed(m, t, ids, lengths, B, T, &txt));
    return ld_op_infonce_queues(t, img, txt, image_queue, n_image, text_queue, n_text, m->logit_scale,
                                m->cfg.logit_scale_max, loss);
}

/* ---- the momentum encoder --------------------------------------------------------------- */

static ld_status same_layout(ld_clip *a, const ld_clip *b, const char *what) {
    bool same = ld_params_count(a->params) == ld_params_count(b->params);
    for (int i = 0; same && i < ld_params_count(a->params); i++) {
        const ld_tensor *x = ld_params_at(a->params, i), *y = ld_params_at(b->params, i);
        same = !strcmp(x->name, y->name) && ld_tensor_numel(x) == ld_tensor_numel(y);
    }
    return same ? LD_OK : ld_error(a->ctx, LD_ERR_MISMATCH, "%s: the two models' parameters differ", what);
}

ld_status ld_clip_copy_params(ld_clip *dst, const ld_clip *src) {
    if (!dst || !src) return LD_ERR_INVALID_ARG;
    TRY(same_layout(dst, src, "ld_clip_copy_params"));
    for (int i = 0; i < ld_params_count(dst->params); i++) {
        ld_tensor *x = ld_params_at(dst->params, i);
        memcpy(x->data, ld_params_at(src->params, i)->data, ld_tensor_nbytes(x));
    }
    return LD_OK;
}

ld_status ld_clip_momentum_update(ld_clip *k, const ld_clip *q, float momentum) {
    if (!k || !q) return LD_ERR_INVALID_ARG;
    if (!(momentum >= 0 && momentum <= 1))
        return ld_error(k->ctx, LD_ERR_INVALID_ARG, "momentum %g outside [0, 1]", momentum);
    TRY(same_layout(k, q, "ld_clip_momentum_update"));
    float keep = momentum, take = 1.0f - momentum;
    for (int i = 0; i < ld_params_count(q->params); i++) {
        const ld_tensor *y = ld_params_at(q->params, i);
        if (!(y->flags & LD_TENSOR_TRAINABLE)) continue; /* frozen parameters stay equal */
        float *x = ld_params_at(k->params, i)->data;
        const float *v = y->data;
        for (int64_t j = 0; j < ld_tensor_numel(y); j++) x[j] = keep * x[j] + take * v[j];
    }
    return LD_OK;
}

/* ---- captions --------------------------------------------------------------------------- */

static int utf8_next(const unsigned char *s, size_t len, size_t *i, uint32_t *cp) {
    unsigned char c = s[*i];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (!n || *i + (size_t)n > len) {
        (*i)++;
        return 0;
    }
    uint32_t v = n == 1 ? c : c & (0x7f >> n);
    for (int k = 1; k < n; k++) v = (v << 6) | (s[*i + (size_t)k] & 0x3f);
    *i += (size_t)n;
    *cp = v;
    return n;
}

typedef struct char_count {
    uint32_t cp;
    int64_t n;
} char_count;

static int by_count(const void *a, const void *b) {
    const char_count *x = a, *y = b;
    return x->n != y->n ? (x->n < y->n ? 1 : -1) : (x->cp > y->cp) - (x->cp < y->cp);
}

ld_status ld_clip_build_vocab(ld_ctx *ctx, const char *const *texts, int64_t n, int min_count, const char *path) {
    if (!texts || !path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_clip_build_vocab: NULL argument");
    const uint32_t NCP = 0x110000;
    int64_t *cnt = calloc(NCP, sizeof *cnt);
    if (!cnt) return ld_error(ctx, LD_ERR_NOMEM, "building a vocabulary: out of memory");
    for (int64_t k = 0; k < n; k++) {
        const unsigned char *s = (const unsigned char *)texts[k];
        size_t len = strlen(texts[k]);
        for (size_t i = 0; i < len;) {
            uint32_t cp = 0;
            if (utf8_next(s, len, &i, &cp) && cp < NCP && cp > 0x20 && cp != 0x7f) cnt[cp]++;
        }
    }
    int64_t m = 0;
    for (uint32_t cp = 0; cp < NCP; cp++) m += cnt[cp] >= (min_count > 0 ? min_count : 1);
    char_count *list = malloc((size_t)(m ? m : 1) * sizeof *list);
    char *out = list ? malloc((size_t)m * 5 + 64) : NULL;
    if (!out) {
        free(cnt), free(list);
        return ld_error(ctx, LD_ERR_NOMEM, "building a vocabulary: out of memory");
    }
    m = 0;
    for (uint32_t cp = 0; cp < NCP; cp++)
        if (cnt[cp] >= (min_count > 0 ? min_count : 1)) list[m++] = (char_count){cp, cnt[cp]};
    qsort(list, (size_t)m, sizeof *list, by_count);
    size_t o = (size_t)sprintf(out, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
    for (int64_t i = 0; i < m; i++) {
        uint32_t c = list[i].cp;
        if (c < 0x80) out[o++] = (char)c;
        else if (c < 0x800) out[o++] = (char)(0xc0 | (c >> 6)), out[o++] = (char)(0x80 | (c & 0x3f));
        else if (c < 0x10000)
            out[o++] = (char)(0xe0 | (c >> 12)), out[o++] = (char)(0x80 | ((c >> 6) & 0x3f)), out[o++] = (char)(0x80 | (c & 0x3f));
        else
            out[o++] = (char)(0xf0 | (c >> 18)), out[o++] = (char)(0x80 | ((c >> 12) & 0x3f)),
            out[o++] = (char)(0x80 | ((c >> 6) & 0x3f)), out[o++] = (char)(0x80 | (c & 0x3f));
        out[o++] = '\n';
    }
    ld_status st = ld_file_write_atomic(ctx, path, out, o);
    free(cnt), free(list), free(out);
    return st;
}

/* cls, the tokens of text, sep, then pad up to T. */
static ld_status encode_ids(const ld_tokenizer *tok, const char *text, int64_t T, int32_t cls, int32_t sep, int32_t pad,
                            int32_t *ids, int32_t *len) {
    if (T < 2) return LD_ERR_INVALID_ARG;
    size_t need = 0;
    ld_status st = ld_tokenizer_encode(tok, text, strlen(text), LD_ENCODE_SPECIAL_AS_TEXT, ids + 1, (size_t)(T - 2), &need);
    if (st && st != LD_ERR_LIMIT) return st;
    int64_t k = (int64_t)need < T - 2 ? (int64_t)need : T - 2;
    ids[0] = cls, ids[k + 1] = sep;
    for (int64_t i = k + 2; i < T; i++) ids[i] = pad;
    *len = (int32_t)(k + 2);
    return LD_OK;
}

ld_status ld_clip_encode_caption(const ld_tokenizer *tok, const char *text, int64_t T, int32_t *ids, int32_t *len) {
    if (!tok || !text || !ids || !len || T < 2) return LD_ERR_INVALID_ARG;
    int32_t cls = ld_tokenizer_token_id(tok, "[CLS]"), sep = ld_tokenizer_token_id(tok, "[SEP]"),
            pad = ld_tokenizer_token_id(tok, "[PAD]");
    if (cls < 0 || sep < 0 || pad < 0) return LD_ERR_NOT_FOUND;
    return encode_ids(tok, text, T, cls, sep, pad, ids, len);
}

/* ---- inference -------------------------------------------------------------------------- */

#define EMBED_BATCH 64

ld_status ld_clip_embed_images(ld_clip *m, const uint8_t *const *images, int64_t n, float *out) {
    if (!m || (!images && n) || (!out && n)) return LD_ERR_INVALID_ARG;
    int64_t S = m->cfg.image_size, E = m->cfg.embed_dim;
    ld_tape *t = NULL;
    TRY(ld_tape_new(m->ctx, &t));
    ld_tape_set_grad_enabled(t, false);
    float *px = ld_alloc(m->ctx, (size_t)(EMBED_BATCH * 3 * S * S) * sizeof(float));
    ld_status st = px ? LD_OK : ld_ctx_status(m->ctx);
    ld_image_transform tf = ld_image_transform_default();
    for (int64_t i = 0; i < n && !st; i += EMBED_BATCH) {
        int64_t B = n - i < EMBED_BATCH ? n - i : EMBED_BATCH;
        ld_image_batch_to_input(m->ctx, images + i, B, (int)S, &tf, false, 0, px);
        ld_tape_reset(t);
        ld_tensor *e;
        if (!(st = ld_clip_image_embed(m, t, px, B, &e))) memcpy(out + i * E, e->data, (size_t)(B * E) * sizeof(float));
    }
    ld_free(m->ctx, px);
    ld_tape_free(t);
    return st;
}

ld_status ld_clip_embed_texts(ld_clip *m, const ld_tokenizer *tok, const char *const *texts, int64_t n, float *out) {
    if (!m || (!texts && n) || (!out && n)) return LD_ERR_INVALID_ARG;
    if (!tok) return ld_error(m->ctx, LD_ERR_INVALID_ARG, "embedding texts: no tokenizer (no vocab.txt in the model directory)");
    const ld_clip_config *c = &m->cfg;
    int64_t T = c->text.max_position, E = c->embed_dim;
    bool hf = c->layout == LD_CLIP_LAYOUT_HF;
    if (T < 2) return ld_error(m->ctx, LD_ERR_INVALID_ARG, "embedding texts: max_position_embeddings %lld leaves no room "
                                                          "for a token", (long long)T);
    ld_tape *t = NULL;
    TRY(ld_tape_new(m->ctx, &t));
    ld_tape_set_grad_enabled(t, false);
    int32_t *ids = ld_alloc(m->ctx, (size_t)(EMBED_BATCH * T) * sizeof(int32_t)), lens[EMBED_BATCH];
    ld_status st = ids ? LD_OK : ld_ctx_status(m->ctx);
    for (int64_t i = 0; i < n && !st; i += EMBED_BATCH) {
        int64_t B = n - i < EMBED_BATCH ? n - i : EMBED_BATCH, Tb = 2;
        for (int64_t b = 0; b < B && !st; b++) {
            if (hf) st = encode_ids(tok, texts[i + b], T, c->bos_token_id, c->eos_token_id, c->text.pad_token_id,
                                    ids + b * T, &lens[b]);
            else if ((st = ld_clip_encode_caption(tok, texts[i + b], T, ids + b * T, &lens[b])))
                st = ld_error(m->ctx, st, "encoding text %lld: the tokenizer lacks [CLS] / [SEP] / [PAD]", (long long)(i + b));
            if (!st && lens[b] > Tb) Tb = lens[b];
        }
        if (st) break;
        for (int64_t b = 0; b < B; b++) memmove(ids + b * Tb, ids + b * T, (size_t)Tb * sizeof(int32_t)); /* [B, Tb] */
        ld_tape_reset(t);
        ld_tensor *e;
        if (!(st = ld_clip_text_embed(m, t, ids, lens, B, Tb, &e))) memcpy(out + i * E, e->data, (size_t)(B * E) * sizeof(float));
    }
    ld_free(m->ctx, ids);
    ld_tape_free(t);
    return st;
}

/* ---- the model directory ---------------------------------------------------------------- */

/* The shape parameter p has in model.safetensors: its own, except that the CLIPModel layout
 * stores the patch embedding as the Conv2d weight [W, 3, P, P] (the same bytes), the class
 * embedding as [W] and logit_scale as a scalar. Returns ndim. */
static int file_shape(const ld_clip *m, const ld_tensor *p, int64_t dims[4]) {
    const ld_clip_config *c = &m->cfg;
    if (c->layout == LD_CLIP_LAYOUT_HF) {
        if (p == m->patch_w) {
            dims[0] = c->vision_width, dims[1] = 3, dims[2] = c->patch_size, dims[3] = c->patch_size;
            return 4;
        }
        if (p == m->class_emb) {
            dims[0] = c->vision_width;
            return 1;
        }
        if (p == m->logit_scale) return 0;
    }
    for (int d = 0; d < p->ndim && d < 4; d++) dims[d] = p->shape[d];
    return p->ndim;
}

ld_status ld_clip_save(ld_clip *m, const ld_tokenizer *tok, const char *dir) {
    if (!m || !dir) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = m->ctx;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return ld_error(ctx, LD_ERR_IO, "cannot create model directory %s: %s", dir, strerror(errno));
    char path[4096];
    char *cfg = ld_clip_config_to_json(&m->cfg);
    if (!cfg) return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing config.json");
    snprintf(path, sizeof path, "%s/config.json", dir);
    ld_status st = ld_file_write_atomic(ctx, path, cfg, strlen(cfg));
    free(cfg);
    if (st) return st;
    int n = ld_params_count(m->params);
    ld_st_write_tensor *w = ld_calloc(ctx, (size_t)n, sizeof *w);
    int64_t(*dims)[4] = ld_calloc(ctx, (size_t)n, sizeof *dims);
    if (!w || !dims) {
        ld_free(ctx, w), ld_free(ctx, dims);
        return ld_ctx_status(ctx);
    }
    for (int i = 0; i < n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        int nd = file_shape(m, t, dims[i]);
        w[i] = (ld_st_write_tensor){.name = t->name, .dtype = LD_F32, .ndim = nd, .shape = dims[i], .data = t->data};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ld_str_pair meta[] = {{"format", "pt"}};
    st = ld_safetensors_write(ctx, path, w, (size_t)n, meta, 1);
    ld_free(ctx, w), ld_free(ctx, dims);
    if (st || !tok) return st;
    /* the character vocabulary, one token a line in id order */
    int64_t V = ld_tokenizer_vocab_size(tok);
    size_t cap = 64, len = 0;
    char *text = malloc(cap);
    for (int64_t id = 0; id < V && text; id++) {
        const char *b;
        size_t bl;
        if ((st = ld_tokenizer_token_bytes(tok, (int32_t)id, &b, &bl))) break;
        if (len + bl + 2 > cap) {
            while (len + bl + 2 > cap) cap *= 2;
            char *nt = realloc(text, cap);
            if (!nt) free(text);
            text = nt;
            if (!text) break;
        }
        memcpy(text + len, b, bl), len += bl, text[len++] = '\n';
    }
    if (!text) return ld_error(ctx, LD_ERR_NOMEM, "writing vocab.txt: out of memory");
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (!st) st = ld_file_write_atomic(ctx, path, text, len);
    free(text);
    return st;
}

bool ld_clip_dir_sniff(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    const size_t cap = (size_t)1 << 16; /* configs of public CLIP checkpoints are ~5 KB */
    char *b = malloc(cap);
    size_t n = b ? fread(b, 1, cap, f) : 0;
    fclose(f);
    bool yes = b && ld_clip_config_sniff(b, n);
    free(b);
    return yes;
}

static const char *shape_str(int nd, const int64_t *d, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < nd && o < cap; i++) o += (size_t)snprintf(buf + o, cap - o, i ? ", %lld" : "%lld", (long long)d[i]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
    return buf;
}

/* One tensor of model.safetensors as a config asks for it: name and the file's shape. */
typedef struct file_param {
    char name[LD_TENSOR_NAME_MAX];
    int ndim;
    int64_t dims[4];
} file_param;
typedef ld_status (*file_param_fn)(void *user, const file_param *p);

typedef struct tower_walk {
    const char *prefix;
    file_param_fn fn;
    void *user;
} tower_walk;

static ld_status tower_param(void *user, const enc_param_desc *p) {
    const tower_walk *w = user;
    file_param f = {.ndim = p->ndim, .dims = {p->dims[0], p->dims[1]}};
    snprintf(f.name, sizeof f.name, "%s%s", w->prefix, p->name);
    return w->fn(w->user, &f);
}

/* Calls fn for every tensor a model of config c has in its model.safetensors (names and file
 * shapes as ld_clip_save writes them), computed from the config alone: the loader checks a
 * directory with it before it allocates anything. */
static ld_status each_file_param(const ld_clip_config *c, file_param_fn fn, void *user) {
    bool hf = c->layout == LD_CLIP_LAYOUT_HF;
    ld_encoder_config vc = vision_encoder_config(c);
    tower_walk tw = {"text_model.", fn, user}, vw = {"vision_model.", fn, user};
    TRY(enc_each_param_named(&c->text, hf ? ENC_NAMES_CLIP_TEXT : ENC_NAMES_ARCH, NULL, tower_param, &tw));
    TRY(enc_each_param_named(&vc, hf ? ENC_NAMES_CLIP_VISION : ENC_NAMES_ARCH, NULL, tower_param, &vw));
    int64_t W = c->vision_width, P = c->patch_size, E = c->embed_dim;
    const file_param top[] = {
        {"vision_model.embeddings.patch_embedding.weight", hf ? 4 : 2, {W, hf ? 3 : 3 * P * P + 1, P, P}},
        {"vision_model.embeddings.class_embedding", 1, {W}},
        {"vision_model.embeddings.position_embedding.weight", 2, {n_patches(c) + 1, W}},
        {"vision_model.pre_layrnorm.weight", 1, {W}},
        {"vision_model.pre_layrnorm.bias", 1, {W}},
        {"visual_projection.weight", 2, {E, W}},
        {"text_projection.weight", 2, {E, c->text.hidden_size}},
        {"logit_scale", hf ? 0 : 1, {1}},
    };
    for (size_t i = 0; i < sizeof top / sizeof top[0]; i++)
        if (hf || i != 1) TRY(fn(user, &top[i]));
    return LD_OK;
}

typedef struct weights_check {
    ld_ctx *ctx;
    const ld_st_set *set;
    const char *dir;
} weights_check;

/* The file's tensor for p exists, has p's shape and a float type. */
static ld_status check_param(void *user, const file_param *p) {
    const weights_check *w = user;
    const ld_tensor_info *info = ld_st_set_find(w->set, p->name);
    if (!info) return ld_error(w->ctx, LD_ERR_NOT_FOUND, "%s: tensor '%s' is missing from the weights", w->dir, p->name);
    bool same = info->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = info->shape[d] == p->dims[d];
    char a[96], b[96];
    if (!same)
        return ld_error(w->ctx, LD_ERR_SHAPE, "%s: tensor '%s' has shape %s, the config needs %s", w->dir, p->name,
                        shape_str(info->ndim, info->shape, a, sizeof a), shape_str(p->ndim, p->dims, b, sizeof b));
    if (info->dtype != LD_F32 && info->dtype != LD_F16 && info->dtype != LD_BF16)
        return ld_error(w->ctx, LD_ERR_DTYPE, "%s: tensor '%s' has dtype %s (F32, F16 or BF16 expected)", w->dir, p->name,
                        info->dtype_name);
    return LD_OK;
}

/* Every parameter of m from the checked weights; tensors the model does not use are logged
 * (position_ids buffers of older checkpoints silently). */
static ld_status load_weights(ld_clip *m, const ld_st_set *set, const char *dir) {
    ld_ctx *ctx = m->ctx;
    int n = ld_params_count(m->params);
    const ld_tensor_info **used = ld_calloc(ctx, (size_t)n, sizeof *used);
    if (!used) return ld_ctx_status(ctx);
    ld_status st = LD_OK;
    for (int i = 0; i < n && !st; i++) {
        ld_tensor *p = ld_params_at(m->params, i);
        const ld_tensor_info *info = used[i] = ld_st_set_find(set, p->name);
        int64_t k = 1;
        for (int d = 0; info && d < info->ndim; d++) k *= info->shape[d];
        if (!info || k != ld_tensor_numel(p)) /* each_file_param and ld_clip_new disagree: a bug here */
            st = ld_error(ctx, LD_ERR_INTERNAL, "%s: tensor '%s' does not fit parameter %s", dir, info ? info->name : "-",
                          p->name);
        else if ((st = ld_convert(ctx, LD_F32, p->data, info->dtype, info->data, k)))
            st = ld_error_wrap(ctx, st, "%s: tensor '%s': ", dir, p->name);
    }
    size_t extra = 0;
    for (size_t i = 0; !st && i < ld_st_set_count(set); i++) {
        const ld_tensor_info *info = ld_st_set_at(set, i);
        bool hit = strstr(info->name, "position_ids") != NULL;
        for (int j = 0; j < n && !hit; j++) hit = used[j] == info;
        if (!hit && extra++ < 5) ld_log(ctx, LD_LOG_WARN, "%s: tensor '%s' is not used by the model", dir, info->name);
    }
    ld_free(ctx, used);
    return st;
}

ld_status ld_clip_load(ld_ctx *ctx, const char *dir, ld_clip **out, ld_tokenizer **tok) {
    if (!dir || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_clip_load: NULL argument");
    *out = NULL;
    if (tok) *tok = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *text = NULL;
    size_t len = 0;
    TRY(ld_file_read(ctx, path, (size_t)1 << 20, &text, &len));
    ld_clip_config cfg;
    ld_status st = ld_clip_config_from_json(ctx, text, len, path, &cfg);
    ld_free(ctx, text);
    if (st) return st;
    ld_st_set *set = NULL;
    TRY(ld_st_set_open(ctx, dir, &set));
    /* names, shapes and types are checked before anything is allocated (a config asking for
     * more than the files hold would otherwise allocate and initialise all of it first) */
    weights_check wc = {ctx, set, dir};
    st = each_file_param(&cfg, check_param, &wc);
    ld_clip *m = NULL;
    if (!st) st = ld_clip_new(ctx, &cfg, 0, &m);
    if (!st) st = load_weights(m, set, dir);
    ld_st_set_close(set);
    struct stat sb;
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    if (!st && tok && stat(path, &sb) != 0 && errno == ENOENT) /* e.g. a public CLIPModel checkpoint (BPE) */
        ld_log(ctx, LD_LOG_WARN, "%s: no vocab.txt: the model embeds images, not texts", dir);
    else if (!st && tok) {
        if (!(st = ld_tokenizer_load_vocab_txt(ctx, path, tok)) && ld_tokenizer_vocab_size(*tok) > cfg.text.vocab_size) {
            st = ld_error(ctx, LD_ERR_MISMATCH, "%s: %lld tokens but the text tower has %lld", path,
                          (long long)ld_tokenizer_vocab_size(*tok), (long long)cfg.text.vocab_size);
            ld_tokenizer_free(*tok);
            *tok = NULL;
        }
    }
    if (st) {
        ld_clip_free(m);
        return st;
    }
    *out = m;
    return LD_OK;
}

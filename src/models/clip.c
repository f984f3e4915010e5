/* models/clip.c — the image-text two-tower model (文瀾 / BriVL, CLIP): the ViT image tower
 * (patch embedding as one matrix product over unfolded patches, class token, learned positions,
 * the encoder's pre-LN blocks), the BERT text tower, projections, L2 normalisation, the InfoNCE
 * loss, the model directory (config.json, model.safetensors, vocab.txt), caption encoding and
 * batched inference. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json.h"
#include "liandan/clip.h"
#include "liandan/io.h"
#include "models/encoder_internal.h"

struct ld_clip {
    ld_ctx *ctx;
    ld_clip_config cfg;
    ld_params *params;
    ld_encoder *text, *vision;
    ld_tensor *patch_w;     /* [W, 3 P P + 1]: the last column is the class embedding */
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
    return v;
}

ld_status ld_clip_config_validate(ld_ctx *ctx, const ld_clip_config *c) {
    if (!c) return ld_error(ctx, LD_ERR_INVALID_ARG, "clip config is NULL");
    if (c->text.arch != LD_ENCODER_BERT) return ld_error(ctx, LD_ERR_UNSUPPORTED, "clip config: the text tower must be bert");
    TRY(ld_encoder_config_validate(ctx, &c->text));
#define NEED(cond, ...) \
    if (!(cond)) return ld_error(ctx, LD_ERR_INVALID_ARG, "clip config: " __VA_ARGS__)
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
    double W = (double)c->vision_width, Nt = (double)(n_patches(c) + 1), K = 3.0 * (double)(c->patch_size * c->patch_size) + 1;
    double C = (double)c->text.hidden_size, E = (double)c->embed_dim;
    double vlayer = 4 * W * W + 2 * W * (double)c->vision_mlp, tlayer = 4 * C * C + 2 * C * (double)c->text.intermediate_size;
    double vision = Nt * (6.0 * ((double)c->vision_layers * vlayer + W * K) + 12.0 * (double)c->vision_layers * W * Nt);
    double text = (double)T * (6.0 * (double)c->text.n_layers * tlayer + 12.0 * (double)c->text.n_layers * C * (double)T);
    return vision + text + 6.0 * (W * E + C * E);
}

static const char *const top_keys[] = {"architectures", "model_type", "projection_dim", "logit_scale_init_value",
                                       "text_config", "vision_config", "torch_dtype", "transformers_version",
                                       "initializer_factor", "liandan", NULL};
static const char *const vision_keys[] = {"model_type", "hidden_size", "intermediate_size", "num_hidden_layers",
                                          "num_attention_heads", "image_size", "patch_size", "num_channels",
                                          "layer_norm_eps", "hidden_act", "projection_dim", "initializer_range",
                                          "dropout", "attention_dropout", NULL};

static size_t count_keys(const char *const *k) {
    size_t n = 0;
    while (k[n]) n++;
    return n;
}

static ld_status parse_config(ld_ctx *ctx, const char *path, cJSON *root, ld_clip_config *c) {
    ld_json_ref r = ld_json_root(path, root), tr, vr;
    const char *mt = NULL;
    TRY(ld_json_get_string(ctx, &r, "model_type", true, &mt));
    if (strcmp(mt, "clip")) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model_type '%.40s' is not clip", path, mt);
    *c = ld_clip_default_config();
    TRY(ld_json_get_int(ctx, &r, "projection_dim", true, 1, 65536, &c->embed_dim));
    double ls = c->logit_scale_init;
    TRY(ld_json_get_float(ctx, &r, "logit_scale_init_value", false, -100, 100, &ls));
    c->logit_scale_init = (float)ls;
    TRY(ld_json_get_object(ctx, &r, "text_config", true, &tr));
    TRY(ld_json_get_object(ctx, &r, "vision_config", true, &vr));
    char *ttext = cJSON_PrintUnformatted(tr.node);
    if (!ttext) return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", path);
    char tpath[300];
    snprintf(tpath, sizeof tpath, "%s: text_config", path);
    ld_status st = ld_encoder_config_from_json(ctx, ttext, strlen(ttext), tpath, &c->text);
    free(ttext);
    if (st) return st;
    TRY(ld_json_get_int(ctx, &vr, "hidden_size", true, 1, 65536, &c->vision_width));
    TRY(ld_json_get_int(ctx, &vr, "intermediate_size", true, 1, 1 << 20, &c->vision_mlp));
    TRY(ld_json_get_int(ctx, &vr, "num_hidden_layers", true, 1, 1024, &c->vision_layers));
    TRY(ld_json_get_int(ctx, &vr, "num_attention_heads", true, 1, 65536, &c->vision_heads));
    TRY(ld_json_get_int(ctx, &vr, "image_size", true, 1, 4096, &c->image_size));
    TRY(ld_json_get_int(ctx, &vr, "patch_size", true, 1, 4096, &c->patch_size));
    int64_t ch = 3;
    TRY(ld_json_get_int(ctx, &vr, "num_channels", false, 1, 16, &ch));
    if (ch != 3) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: vision_config num_channels %lld (only 3, RGB)", path, (long long)ch);
    double eps = c->vision_eps;
    TRY(ld_json_get_float(ctx, &vr, "layer_norm_eps", false, 0, 1, &eps));
    c->vision_eps = (float)eps;
    ld_json_check_keys(ctx, &r, top_keys, count_keys(top_keys), NULL, NULL);
    ld_json_check_keys(ctx, &vr, vision_keys, count_keys(vision_keys), NULL, NULL);
    return LD_OK;
}

ld_status ld_clip_config_from_json(ld_ctx *ctx, const char *text, size_t len, const char *path, ld_clip_config *out) {
    if (!text || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_clip_config_from_json: NULL argument");
    if (!path) path = "config.json";
    cJSON *root = NULL;
    TRY(ld_json_parse(ctx, path, text, len, &root));
    ld_clip_config c;
    ld_status st = cJSON_IsObject(root) ? parse_config(ctx, path, root, &c)
                                        : ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", path);
    ld_json_free(root);
    if (!st && (st = ld_clip_config_validate(ctx, &c))) st = ld_error_wrap(ctx, st, "%s: ", path);
    if (!st) *out = c;
    return st;
}

char *ld_clip_config_to_json(const ld_clip_config *c) {
    char *text = ld_encoder_config_to_json(&c->text);
    cJSON *o = cJSON_CreateObject(), *t = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!o || !t) {
        cJSON_Delete(o), cJSON_Delete(t);
        return NULL;
    }
    cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "architectures"), cJSON_CreateString("CLIPModel"));
    cJSON_AddStringToObject(o, "model_type", "clip");
    cJSON_AddNumberToObject(o, "projection_dim", (double)c->embed_dim);
    cJSON_AddNumberToObject(o, "logit_scale_init_value", c->logit_scale_init);
    cJSON_AddItemToObject(o, "text_config", t);
    cJSON *v = cJSON_AddObjectToObject(o, "vision_config");
    cJSON_AddStringToObject(v, "model_type", "clip_vision_model");
    cJSON_AddNumberToObject(v, "hidden_size", (double)c->vision_width);
    cJSON_AddNumberToObject(v, "intermediate_size", (double)c->vision_mlp);
    cJSON_AddNumberToObject(v, "num_hidden_layers", (double)c->vision_layers);
    cJSON_AddNumberToObject(v, "num_attention_heads", (double)c->vision_heads);
    cJSON_AddNumberToObject(v, "image_size", (double)c->image_size);
    cJSON_AddNumberToObject(v, "patch_size", (double)c->patch_size);
    cJSON_AddNumberToObject(v, "num_channels", 3);
    cJSON_AddNumberToObject(v, "layer_norm_eps", c->vision_eps);
    cJSON_AddStringToObject(v, "hidden_act", "gelu");
    cJSON *lk = cJSON_AddObjectToObject(o, "liandan");
    cJSON_AddStringToObject(lk, "text_tower", "bert");
    cJSON_AddStringToObject(lk, "vision_blocks", "pre-LN encoder layers (esm names, no rotary)");
    cJSON_AddNumberToObject(lk, "logit_scale_max", c->logit_scale_max);
    cJSON_AddStringToObject(o, "torch_dtype", "float32");
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
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
    ld_status st = ld_params_new(ctx, &m->params);
    if (!st) st = enc_new_in(ctx, &cfg->text, seed, m->params, "text_model.", true, &m->text);
    if (!st) st = enc_new_in(ctx, &vc, ld_rng_at(seed, 1), m->params, "vision_model.", false, &m->vision);
    int64_t W = cfg->vision_width, K = 3 * cfg->patch_size * cfg->patch_size + 1, E = cfg->embed_dim;
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
                {m->text_proj, 1 / sqrt((double)cfg->text.hidden_size)}};
    for (size_t i = 0; i < sizeof init / sizeof init[0]; i++) {
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
    int64_t S = c->image_size, P = c->patch_size, G = S / P, N = G * G, K = 3 * P * P + 1, W = c->vision_width;
    /* unfolded [B * (N + 1), K]: row 0 of each image is the class token (a one in the last
     * column picks the class embedding), rows 1.. the patches in (channel, y, x) order, the
     * layout of a Conv2d weight [W, 3, P, P] */
    ld_tensor *u, *e;
    TRY(ld_tape_tensor(t, 2, (int64_t[]){B * (N + 1), K}, &u));
    float *ud = u->data;
    for (int64_t b = 0; b < B; b++) {
        const float *img = pixels + b * 3 * S * S;
        ud[(b * (N + 1)) * K + K - 1] = 1.0f;
        for (int64_t gy = 0; gy < G; gy++)
            for (int64_t gx = 0; gx < G; gx++) {
                float *row = ud + (b * (N + 1) + 1 + gy * G + gx) * K;
                for (int64_t ch = 0; ch < 3; ch++)
                    for (int64_t ky = 0; ky < P; ky++)
                        memcpy(row + (ch * P + ky) * P, img + (ch * S + gy * P + ky) * S + gx * P, (size_t)P * sizeof(float));
            }
    }
    TRY(ld_op_linear(t, u, m->patch_w, NULL, false, &e)); /* [B * (N + 1), W] */
    return ld_op_reshape(t, e, 3, (int64_t[]){B, N + 1, W}, tokens);
}

ld_status ld_clip_image_embed(ld_clip *m, ld_tape *t, const float *pixels, int64_t B, ld_tensor **emb) {
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

ld_status ld_clip_text_embed(ld_clip *m, ld_tape *t, const int32_t *ids, const int32_t *lengths, int64_t B, int64_t T,
                             ld_tensor **emb) {
    if (!m || !t || !emb) return ld_error(m ? m->ctx : NULL, LD_ERR_INVALID_ARG, "ld_clip_text_embed: NULL argument");
    ld_tensor *h, *pooled, *proj;
    TRY(ld_encoder_forward(m->text, t, ids, NULL, lengths, B, T, &h));      /* [B, T, C] */
    TRY(ld_encoder_pool(m->text, t, h, lengths, LD_POOL_CLS, &pooled));     /* [B, C] */
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

ld_status ld_clip_encode_caption(const ld_tokenizer *tok, const char *text, int64_t T, int32_t *ids, int32_t *len) {
    if (!tok || !text || !ids || !len || T < 2) return LD_ERR_INVALID_ARG;
    int32_t cls = ld_tokenizer_token_id(tok, "[CLS]"), sep = ld_tokenizer_token_id(tok, "[SEP]"),
            pad = ld_tokenizer_token_id(tok, "[PAD]");
    if (cls < 0 || sep < 0 || pad < 0) return LD_ERR_NOT_FOUND;
    size_t need = 0;
    ld_status st = ld_tokenizer_encode(tok, text, strlen(text), LD_ENCODE_SPECIAL_AS_TEXT, ids + 1, (size_t)(T - 2), &need);
    if (st && st != LD_ERR_LIMIT) return st;
    int64_t k = (int64_t)need < T - 2 ? (int64_t)need : T - 2;
    ids[0] = cls, ids[k + 1] = sep;
    for (int64_t i = k + 2; i < T; i++) ids[i] = pad;
    *len = (int32_t)(k + 2);
    return LD_OK;
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
    if (!m || !tok || (!texts && n) || (!out && n)) return LD_ERR_INVALID_ARG;
    int64_t T = m->cfg.text.max_position, E = m->cfg.embed_dim;
    ld_tape *t = NULL;
    TRY(ld_tape_new(m->ctx, &t));
    ld_tape_set_grad_enabled(t, false);
    int32_t *ids = ld_alloc(m->ctx, (size_t)(EMBED_BATCH * T) * sizeof(int32_t)), lens[EMBED_BATCH];
    ld_status st = ids ? LD_OK : ld_ctx_status(m->ctx);
    for (int64_t i = 0; i < n && !st; i += EMBED_BATCH) {
        int64_t B = n - i < EMBED_BATCH ? n - i : EMBED_BATCH, Tb = 2;
        for (int64_t b = 0; b < B && !st; b++) {
            if ((st = ld_clip_encode_caption(tok, texts[i + b], T, ids + b * T, &lens[b])))
                st = ld_error(m->ctx, st, "encoding text %lld: the tokenizer lacks [CLS] / [SEP] / [PAD]", (long long)(i + b));
            else if (lens[b] > Tb) Tb = lens[b];
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
    if (!w) return ld_ctx_status(ctx);
    for (int i = 0; i < n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        w[i] = (ld_st_write_tensor){.name = t->name, .dtype = LD_F32, .ndim = t->ndim, .shape = t->shape, .data = t->data};
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ld_str_pair meta[] = {{"format", "pt"}};
    st = ld_safetensors_write(ctx, path, w, (size_t)n, meta, 1);
    ld_free(ctx, w);
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
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *root = cJSON_Parse(buf);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    bool yes = cJSON_IsString(mt) && !strcmp(mt->valuestring, "clip");
    cJSON_Delete(root);
    return yes;
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
    ld_clip *m = NULL;
    TRY(ld_clip_new(ctx, &cfg, 0, &m));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    ld_safetensors *sf = NULL;
    st = ld_safetensors_open(ctx, path, &sf);
    for (int i = 0; !st && i < ld_params_count(m->params); i++) {
        ld_tensor *p = ld_params_at(m->params, i);
        const ld_tensor_info *info;
        if ((st = ld_safetensors_get(ctx, sf, p->name, &info))) break;
        bool same = info->dtype == LD_F32 && info->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = info->shape[d] == p->shape[d];
        if (!same) {
            char s[80];
            st = ld_error(ctx, LD_ERR_SHAPE, "%s: tensor %s is %s %s, the config needs F32 %s", path, p->name,
                          info->dtype_name, info->ndim ? "of another shape" : "a scalar", ld_tensor_shape_str(p, s, sizeof s));
            break;
        }
        memcpy(p->data, info->data, ld_tensor_nbytes(p));
    }
    ld_safetensors_close(sf);
    if (!st && tok) {
        snprintf(path, sizeof path, "%s/vocab.txt", dir);
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

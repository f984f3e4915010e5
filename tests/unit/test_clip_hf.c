/* tests/unit/test_clip_hf.c — the image-text model in transformers' CLIPModel layout: both
 * towers' forward passes against a double-precision reference written from transformers'
 * modeling_clip (causal text tower with quick_gelu, end-of-text pooling by eos_token_id and
 * by the legacy largest-id rule, class embedding, pre / post LayerNorms), finite differences
 * for every kind of parameter, the model directory (tensor names and shapes as transformers
 * has them, written / read / written again byte for byte, identical embeddings), CLIPConfig
 * defaults, a bad-input table for the config and for the weights, and every allocation of the
 * loader failing in turn. */
#include <math.h>
#include <stdarg.h>

#include "data_test_util.h"
#include "liandan/clip.h"

static ld_ctx *test_ctx_;
static void test_ctx_free_(void) {
    ld_ctx_free(test_ctx_);
}
static ld_ctx *test_ctx(void) {
    if (!test_ctx_) test_ctx_ = dt_ctx(), atexit(test_ctx_free_);
    return test_ctx_;
}

enum { S = 8, PS = 4, W = 8, C = 8, E = 6, T = 7, V = 24, BATCH = 3 };

static ld_clip_config hf_tiny(void) {
    ld_clip_config c = ld_clip_hf_config();
    c.image_size = S, c.patch_size = PS, c.vision_width = W, c.vision_layers = 2, c.vision_heads = 2, c.vision_mlp = 16;
    c.text.vocab_size = V, c.text.hidden_size = C, c.text.n_layers = 2, c.text.n_heads = 2;
    c.text.intermediate_size = 12, c.text.max_position = 8;
    c.embed_dim = E, c.bos_token_id = 2, c.eos_token_id = 3, c.text.pad_token_id = 0;
    return c;
}

/* A model with every parameter random (LayerNorms and biases too, so the reference sees them). */
static ld_clip *hf_model(ld_clip_config c, uint64_t seed) {
    ld_clip *m = NULL;
    CHECK_STATUS(test_ctx(), ld_clip_new(test_ctx(), &c, seed, &m), LD_OK, NULL);
    if (!m) return NULL;
    ld_params *ps = ld_clip_params(m);
    ld_rng r = ld_rng_init(seed + 100);
    for (int i = 0; i < ld_params_count(ps); i++) {
        ld_tensor *p = ld_params_at(ps, i);
        float *x = p->data;
        bool ln = strstr(p->name, "norm") != NULL && strstr(p->name, ".weight") != NULL;
        for (int64_t j = 0; j < ld_tensor_numel(p); j++) x[j] = (ln ? 1.0f : 0.0f) + 0.4f * ld_rng_normal(&r);
    }
    ((float *)ld_params_find(ps, "logit_scale")->data)[0] = 2.0f;
    return m;
}

typedef struct hf_batch {
    float px[BATCH * 3 * S * S];
    int32_t ids[BATCH * T], len[BATCH];
} hf_batch;

/* bos, random tokens, eos, padding: lengths 4, 7 and 5. */
static hf_batch make_batch(uint64_t seed) {
    hf_batch b;
    ld_rng r = ld_rng_init(seed);
    for (int i = 0; i < BATCH * 3 * S * S; i++) b.px[i] = ld_rng_normal(&r);
    const int lens[BATCH] = {4, 7, 5};
    for (int i = 0; i < BATCH; i++) {
        b.len[i] = lens[i];
        for (int j = 0; j < T; j++) b.ids[i * T + j] = j < lens[i] ? (int32_t)(5 + ld_rng_below(&r, V - 5)) : 0;
        b.ids[i * T] = 2, b.ids[i * T + lens[i] - 1] = 3;
    }
    return b;
}

/* ---- the reference (double precision, transformers' modeling_clip written out) ---------- */

static const float *param(const ld_clip *m, const char *fmt, ...) {
    char name[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const ld_tensor *t = ld_params_find(ld_clip_params((ld_clip *)m), name);
    CHECK_MSG(t != NULL, "no parameter %s", name);
    static const float zero[4096];
    return t ? t->data : zero;
}

static void ref_ln(double *x, int n, int d, const float *w, const float *b, double eps) {
    for (int i = 0; i < n; i++) {
        double mu = 0, var = 0, *r = x + i * d;
        for (int j = 0; j < d; j++) mu += r[j] / d;
        for (int j = 0; j < d; j++) var += (r[j] - mu) * (r[j] - mu) / d;
        for (int j = 0; j < d; j++) r[j] = (r[j] - mu) / sqrt(var + eps) * w[j] + b[j];
    }
}

/* y[n, out] = x[n, in] W^T + b (nn.Linear), b may be NULL */
static void ref_linear(const double *x, int n, int in, const float *w, const float *b, int out, double *y) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0;
            for (int k = 0; k < in; k++) s += x[i * in + k] * w[o * in + k];
            y[i * out + o] = s;
        }
}

/* CLIPEncoder: pre-LN blocks with quick_gelu MLPs over x [n, d]; causal masks later keys,
 * keys at or after len are padding. */
static void ref_layers(const ld_clip *m, const char *tower, int layers, int n, int d, int heads, int mlp, bool causal,
                       int len, double eps, double *x) {
    double h[64 * 16], q[64 * 16], k[64 * 16], v[64 * 16], a[64 * 16], o[64 * 16], u[64 * 32];
    int hd = d / heads;
#define LP(name) param(m, "%s.encoder.layers.%d.%s", tower, l, name)
    for (int l = 0; l < layers; l++) {
        memcpy(h, x, sizeof(double) * (size_t)(n * d));
        ref_ln(h, n, d, LP("layer_norm1.weight"), LP("layer_norm1.bias"), eps);
        ref_linear(h, n, d, LP("self_attn.q_proj.weight"), LP("self_attn.q_proj.bias"), d, q);
        ref_linear(h, n, d, LP("self_attn.k_proj.weight"), LP("self_attn.k_proj.bias"), d, k);
        ref_linear(h, n, d, LP("self_attn.v_proj.weight"), LP("self_attn.v_proj.bias"), d, v);
        for (int hh = 0; hh < heads; hh++)
            for (int i = 0; i < n; i++) {
                double s[64], mx = -1e300, z = 0;
                int last = causal ? i : n - 1;
                if (last >= len) last = len - 1;
                for (int j = 0; j <= last; j++) {
                    s[j] = 0;
                    for (int e = 0; e < hd; e++) s[j] += q[i * d + hh * hd + e] * k[j * d + hh * hd + e];
                    s[j] /= sqrt((double)hd);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j <= last; j++) z += s[j] = exp(s[j] - mx);
                for (int e = 0; e < hd; e++) {
                    double acc = 0;
                    for (int j = 0; j <= last; j++) acc += s[j] / z * v[j * d + hh * hd + e];
                    a[i * d + hh * hd + e] = acc;
                }
            }
        ref_linear(a, n, d, LP("self_attn.out_proj.weight"), LP("self_attn.out_proj.bias"), d, o);
        for (int i = 0; i < n * d; i++) x[i] += o[i];
        memcpy(h, x, sizeof(double) * (size_t)(n * d));
        ref_ln(h, n, d, LP("layer_norm2.weight"), LP("layer_norm2.bias"), eps);
        ref_linear(h, n, d, LP("mlp.fc1.weight"), LP("mlp.fc1.bias"), mlp, u);
        for (int i = 0; i < n * mlp; i++) u[i] = u[i] / (1.0 + exp(-1.702 * u[i])); /* quick_gelu */
        ref_linear(u, n, mlp, LP("mlp.fc2.weight"), LP("mlp.fc2.bias"), d, o);
        for (int i = 0; i < n * d; i++) x[i] += o[i];
    }
#undef LP
}

static void ref_normalize(double *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i] * x[i];
    for (int i = 0; i < n; i++) x[i] /= sqrt(s);
}

/* CLIPVisionTransformer + visual_projection of one normalised image [3, S, S]. */
static void ref_image(const ld_clip *m, const float *px, double *emb) {
    const ld_clip_config *c = ld_clip_config_of(m);
    int G = S / PS, N = G * G + 1;
    double x[64 * 16], pooled[16];
    const float *cls = param(m, "vision_model.embeddings.class_embedding");
    const float *pw = param(m, "vision_model.embeddings.patch_embedding.weight"); /* [W, 3, P, P] */
    const float *pos = param(m, "vision_model.embeddings.position_embedding.weight");
    for (int w = 0; w < W; w++) x[w] = cls[w] + pos[w];
    for (int p = 1; p < N; p++)
        for (int w = 0; w < W; w++) {
            int gy = (p - 1) / G, gx = (p - 1) % G;
            double s = 0;
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < PS; y++)
                    for (int xx = 0; xx < PS; xx++)
                        s += (double)pw[((w * 3 + ch) * PS + y) * PS + xx] * px[(ch * S + gy * PS + y) * S + gx * PS + xx];
            x[p * W + w] = s + pos[p * W + w];
        }
    ref_ln(x, N, W, param(m, "vision_model.pre_layrnorm.weight"), param(m, "vision_model.pre_layrnorm.bias"),
           c->vision_eps);
    ref_layers(m, "vision_model", (int)c->vision_layers, N, W, (int)c->vision_heads, (int)c->vision_mlp, false, N,
               c->vision_eps, x);
    memcpy(pooled, x, sizeof(double) * W); /* the class token, then post_layernorm */
    ref_ln(pooled, 1, W, param(m, "vision_model.post_layernorm.weight"), param(m, "vision_model.post_layernorm.bias"),
           c->vision_eps);
    ref_linear(pooled, 1, W, param(m, "visual_projection.weight"), NULL, E, emb);
    ref_normalize(emb, E);
}

/* CLIPTextTransformer + text_projection of one row of ids [T] with len real tokens. */
static void ref_text(const ld_clip *m, const int32_t *ids, int len, double *emb) {
    const ld_clip_config *c = ld_clip_config_of(m);
    double x[64 * 16], pooled[16];
    const float *te = param(m, "text_model.embeddings.token_embedding.weight");
    const float *pe = param(m, "text_model.embeddings.position_embedding.weight");
    for (int i = 0; i < T; i++)
        for (int j = 0; j < C; j++) x[i * C + j] = (double)te[ids[i] * C + j] + pe[i * C + j];
    ref_layers(m, "text_model", (int)c->text.n_layers, T, C, (int)c->text.n_heads, (int)c->text.intermediate_size, true,
               len, c->text.norm_eps, x);
    ref_ln(x, T, C, param(m, "text_model.final_layer_norm.weight"), param(m, "text_model.final_layer_norm.bias"),
           c->text.norm_eps);
    int at = 0; /* transformers: argmax of the ids when eos_token_id == 2, else the first eos */
    if (c->eos_token_id == 2) {
        for (int i = 1; i < T; i++)
            if (ids[i] > ids[at]) at = i;
    } else
        for (int i = T - 1; i >= 0; i--)
            if (ids[i] == c->eos_token_id) at = i;
    memcpy(pooled, x + at * C, sizeof(double) * C);
    ref_linear(pooled, 1, C, param(m, "text_projection.weight"), NULL, E, emb);
    ref_normalize(emb, E);
}

/* Worst |model - reference| over both towers' embeddings of batch b. */
static double forward_error(ld_clip *m, const hf_batch *b) {
    ld_ctx *ctx = test_ctx();
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    ld_tape_set_grad_enabled(t, false);
    ld_tensor *img = NULL, *txt = NULL;
    CHECK_STATUS(ctx, ld_clip_image_embed(m, t, b->px, BATCH, &img), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_clip_text_embed(m, t, b->ids, b->len, BATCH, T, &txt), LD_OK, NULL);
    double worst = img && txt ? 0 : INFINITY;
    for (int i = 0; img && txt && i < BATCH; i++) {
        double ri[E], rt[E];
        ref_image(m, b->px + i * 3 * S * S, ri);
        ref_text(m, b->ids + i * T, b->len[i], rt);
        for (int e = 0; e < E; e++) {
            double d1 = fabs(((float *)img->data)[i * E + e] - ri[e]), d2 = fabs(((float *)txt->data)[i * E + e] - rt[e]);
            if (!(d1 <= worst)) worst = d1;
            if (!(d2 <= worst)) worst = d2;
        }
    }
    ld_tape_free(t);
    return worst;
}

TEST(forward_matches_reference) {
    hf_batch b = make_batch(1);
    ld_clip *m = hf_model(hf_tiny(), 5);
    double e = forward_error(m, &b);
    CHECK_MSG(e < 2e-5, "CLIPModel layout differs from the reference by %.3g", e);
    /* the legacy rule (eos_token_id 2): pooled at each row's largest id, here mid-sentence */
    ld_clip_config c = hf_tiny();
    c.eos_token_id = 2;
    ld_clip *legacy = hf_model(c, 5);
    b.ids[0 * T + 1] = V - 1, b.ids[1 * T + 4] = V - 1;
    e = forward_error(legacy, &b);
    CHECK_MSG(e < 2e-5, "legacy end-of-text pooling differs from the reference by %.3g", e);
    /* and the rule matters: the same weights pool elsewhere with eos_token_id 3 */
    ld_tape *t;
    CHECK(ld_tape_new(test_ctx(), &t) == LD_OK);
    ld_tensor *a, *z;
    CHECK(ld_clip_text_embed(m, t, b.ids, b.len, BATCH, T, &a) == LD_OK);
    CHECK(ld_clip_text_embed(legacy, t, b.ids, b.len, BATCH, T, &z) == LD_OK);
    CHECK(memcmp(a->data, z->data, (size_t)E * sizeof(float)) != 0);
    ld_tape_free(t);
    ld_clip_free(m), ld_clip_free(legacy);
}

/* Worst |analytic - numeric| / (|numeric| + 0.05) over up to 16 elements of p. */
static double fd_param(ld_clip *m, const hf_batch *b, ld_tensor *p) {
    ld_ctx *ctx = test_ctx();
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    ld_params_zero_grad(ld_clip_params(m));
    ld_tensor *loss = NULL;
    if (ld_clip_loss(m, t, b->px, b->ids, b->len, BATCH, T, &loss) || ld_tape_backward(t, loss)) {
        ld_tape_free(t);
        return INFINITY;
    }
    int64_t n = ld_tensor_numel(p);
    double worst = 0, eps = 2e-3;
    float *x = p->data, *g = p->grad->data;
    for (int s = 0; s < 16 && s < n; s++) {
        int64_t j = n <= 16 ? s : (int64_t)((uint64_t)s * 2654435761u % (uint64_t)n);
        float keep = x[j], gj = g[j];
        double l[2];
        for (int k = 0; k < 2; k++) {
            x[j] = keep + (float)(k ? -eps : eps);
            ld_tape_reset(t);
            l[k] = ld_clip_loss(m, t, b->px, b->ids, b->len, BATCH, T, &loss) ? NAN : ((float *)loss->data)[0];
        }
        x[j] = keep;
        double num = (l[0] - l[1]) / (2 * eps), err = fabs(gj - num) / (fabs(num) + 0.05);
        if (!(err <= worst)) worst = err;
    }
    ld_tape_free(t);
    return worst;
}

TEST(gradients) {
    hf_batch b = make_batch(2);
    ld_clip *m = hf_model(hf_tiny(), 6);
    const char *names[] = {"vision_model.embeddings.class_embedding",
                           "vision_model.embeddings.patch_embedding.weight",
                           "vision_model.embeddings.position_embedding.weight",
                           "vision_model.pre_layrnorm.bias",
                           "vision_model.encoder.layers.0.self_attn.k_proj.weight",
                           "vision_model.encoder.layers.1.mlp.fc1.weight",
                           "vision_model.post_layernorm.weight",
                           "text_model.embeddings.token_embedding.weight",
                           "text_model.embeddings.position_embedding.weight",
                           "text_model.encoder.layers.0.self_attn.q_proj.bias",
                           "text_model.encoder.layers.1.mlp.fc2.weight",
                           "text_model.encoder.layers.0.layer_norm1.weight",
                           "text_model.final_layer_norm.bias",
                           "visual_projection.weight",
                           "text_projection.weight",
                           "logit_scale"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ld_tensor *p = ld_params_find(ld_clip_params(m), names[i]);
        CHECK_MSG(p != NULL, "no parameter %s", names[i]);
        if (!p) continue;
        double e = fd_param(m, &b, p);
        CHECK_MSG(e < 3e-2, "%s: finite-difference error %.3g", names[i], e);
    }
    ld_clip_free(m);
}

static bool same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    bool ok = !ld_file_read(test_ctx(), a, 1 << 24, &x, &nx) && !ld_file_read(test_ctx(), b, 1 << 24, &y, &ny) &&
              nx == ny && !memcmp(x, y, nx);
    ld_free(test_ctx(), x), ld_free(test_ctx(), y);
    return ok;
}

TEST(directory_round_trip) {
    ld_ctx *ctx = test_ctx();
    ld_clip *m = hf_model(hf_tiny(), 7), *m2 = NULL;
    const char *texts[] = {"猫猫狗", "cat", "a dog"};
    const char *vpath = dt_path("hf_vocab.txt");
    CHECK_STATUS(ctx, ld_clip_build_vocab(ctx, texts, 3, 1, vpath), LD_OK, NULL);
    ld_tokenizer *tok, *tok2 = NULL;
    CHECK_STATUS(ctx, ld_tokenizer_load_vocab_txt(ctx, vpath, &tok), LD_OK, NULL);
    const char *dir = dt_path("hfclip"), *dir2 = dt_path("hfclip2");
    CHECK_STATUS(ctx, ld_clip_save(m, tok, dir), LD_OK, NULL);
    CHECK(ld_clip_dir_sniff(dir));
    /* transformers' names and shapes */
    ld_safetensors *sf;
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_STATUS(ctx, ld_safetensors_open(ctx, path, &sf), LD_OK, NULL);
    struct {
        const char *name;
        int ndim;
        int64_t d[4];
    } want[] = {
        {"vision_model.embeddings.patch_embedding.weight", 4, {W, 3, PS, PS}},
        {"vision_model.embeddings.class_embedding", 1, {W}},
        {"vision_model.embeddings.position_embedding.weight", 2, {(S / PS) * (S / PS) + 1, W}},
        {"vision_model.pre_layrnorm.weight", 1, {W}},
        {"vision_model.encoder.layers.1.self_attn.out_proj.weight", 2, {W, W}},
        {"vision_model.encoder.layers.0.mlp.fc1.weight", 2, {16, W}},
        {"vision_model.encoder.layers.0.layer_norm2.bias", 1, {W}},
        {"vision_model.post_layernorm.weight", 1, {W}},
        {"text_model.embeddings.token_embedding.weight", 2, {V, C}},
        {"text_model.embeddings.position_embedding.weight", 2, {8, C}},
        {"text_model.encoder.layers.1.self_attn.v_proj.bias", 1, {C}},
        {"text_model.encoder.layers.1.mlp.fc2.weight", 2, {C, 12}},
        {"text_model.final_layer_norm.bias", 1, {C}},
        {"visual_projection.weight", 2, {E, W}},
        {"text_projection.weight", 2, {E, C}},
        {"logit_scale", 0, {0}},
    };
    for (size_t i = 0; sf && i < sizeof want / sizeof want[0]; i++) {
        const ld_tensor_info *info = NULL;
        CHECK_STATUS(ctx, ld_safetensors_get(ctx, sf, want[i].name, &info), LD_OK, NULL);
        bool same = info && info->ndim == want[i].ndim && info->dtype == LD_F32;
        for (int d = 0; same && d < want[i].ndim; d++) same = info->shape[d] == want[i].d[d];
        CHECK_MSG(same, "%s: wrong shape or type", want[i].name);
    }
    /* 2 + 16 per layer + 2 in the text tower, 5 + 16 per layer + 2 in the vision tower, 3 more */
    CHECK(sf && ld_safetensors_count(sf) == 2 + 32 + 2 + 5 + 32 + 2 + 3);
    for (size_t i = 0; sf && i < ld_safetensors_count(sf); i++) {
        const char *n = ld_safetensors_at(sf, i)->name;
        CHECK_MSG(!strstr(n, "esm.") && !strstr(n, "bert.") && !strstr(n, "lm_head"), "not a CLIPModel name: %s", n);
    }
    ld_safetensors_close(sf);
    /* config.json: a CLIPConfig that reads back as the same model */
    char *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(ld_file_read(ctx, path, 1 << 20, &text, &len) == LD_OK);
    CHECK(text && strstr(text, "\"clip_text_model\"") && strstr(text, "\"quick_gelu\"") && !strstr(text, "\"bert\""));
    ld_free(ctx, text);
    CHECK_STATUS(ctx, ld_clip_load(ctx, dir, &m2, &tok2), LD_OK, NULL);
    if (!m2) return;
    const ld_clip_config *c2 = ld_clip_config_of(m2);
    CHECK(c2->layout == LD_CLIP_LAYOUT_HF && c2->text.causal && c2->text.quick_gelu && c2->vision_quick_gelu &&
          c2->eos_token_id == 3 && c2->bos_token_id == 2 && c2->text.max_position == 8 && c2->vision_layers == 2);
    /* identical embeddings of images and texts */
    uint8_t img[2][S * S * 3];
    for (int i = 0; i < 2 * S * S * 3; i++) img[i / (S * S * 3)][i % (S * S * 3)] = (uint8_t)(i * 37);
    const uint8_t *imgs[2] = {img[0], img[1]};
    float e1[2 * E], e2[2 * E], t1[3 * E], t2[3 * E];
    CHECK_STATUS(ctx, ld_clip_embed_images(m, imgs, 2, e1), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_clip_embed_images(m2, imgs, 2, e2), LD_OK, NULL);
    CHECK(!memcmp(e1, e2, sizeof e1));
    CHECK_STATUS(ctx, ld_clip_embed_texts(m, tok, texts, 3, t1), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_clip_embed_texts(m2, tok2, texts, 3, t2), LD_OK, NULL);
    CHECK(!memcmp(t1, t2, sizeof t1));
    /* a text embedded alone equals the same text in a padded batch (causal + end-of-text) */
    float one[E];
    CHECK_STATUS(ctx, ld_clip_embed_texts(m2, tok2, texts + 1, 1, one), LD_OK, NULL);
    for (int e = 0; e < E; e++) CHECK_NEAR(one[e], t2[E + e], 1e-5);
    /* exported again: the same bytes */
    CHECK_STATUS(ctx, ld_clip_save(m2, tok2, dir2), LD_OK, NULL);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/model.safetensors", dir), snprintf(b, sizeof b, "%s/model.safetensors", dir2);
    CHECK(same_file(a, b));
    snprintf(a, sizeof a, "%s/config.json", dir), snprintf(b, sizeof b, "%s/config.json", dir2);
    CHECK(same_file(a, b));
    ld_tokenizer_free(tok), ld_tokenizer_free(tok2);
    ld_clip_free(m), ld_clip_free(m2);
}

typedef struct cfg_case {
    const char *json;
    ld_status expect;
    const char *msg;
} cfg_case;

TEST(config_defaults_and_bad_inputs) {
    ld_ctx *ctx = test_ctx();
    /* what save_pretrained leaves out takes CLIPConfig's defaults: ViT-B/32 */
    const char *bare = "{\"model_type\":\"clip\"}";
    ld_clip_config c;
    CHECK_STATUS(ctx, ld_clip_config_from_json(ctx, bare, strlen(bare), "c.json", &c), LD_OK, NULL);
    CHECK(c.layout == LD_CLIP_LAYOUT_HF && c.embed_dim == 512 && c.text.vocab_size == 49408 && c.text.hidden_size == 512 &&
          c.text.n_layers == 12 && c.text.n_heads == 8 && c.text.max_position == 77 && c.text.quick_gelu &&
          c.text.causal && c.vision_width == 768 && c.vision_layers == 12 && c.image_size == 224 && c.patch_size == 32 &&
          c.vision_quick_gelu && c.eos_token_id == 49407 && c.bos_token_id == 49406 && c.text.pad_token_id == 1);
    /* the keys of OpenAI's clip-vit-base-patch32 config (legacy eos 2, generic keys known) */
    const char *openai =
        "{\"architectures\":[\"CLIPModel\"],\"initializer_factor\":1.0,\"logit_scale_init_value\":2.6592,"
        "\"model_type\":\"clip\",\"projection_dim\":512,\"text_config\":{\"_name_or_path\":\"\",\"bos_token_id\":0,"
        "\"eos_token_id\":2,\"pad_token_id\":1,\"hidden_act\":\"quick_gelu\",\"num_beams\":1,\"model_type\":"
        "\"clip_text_model\",\"vocab_size\":49408,\"max_position_embeddings\":77},\"text_config_dict\":null,"
        "\"vision_config\":{\"hidden_size\":768,\"patch_size\":32,\"image_size\":224,\"do_sample\":false},"
        "\"vision_config_dict\":null,\"torch_dtype\":\"float32\",\"transformers_version\":null}";
    CHECK_STATUS(ctx, ld_clip_config_from_json(ctx, openai, strlen(openai), "c.json", &c), LD_OK, NULL);
    CHECK(c.eos_token_id == 2 && c.bos_token_id == 0 && c.layout == LD_CLIP_LAYOUT_HF);
    /* write -> read -> the same config */
    ld_clip_config t = hf_tiny(), back;
    t.vision_quick_gelu = false, t.text.quick_gelu = false, t.text.gelu_tanh = true, t.logit_scale_max = 4.0f;
    char *js = ld_clip_config_to_json(&t);
    CHECK_STATUS(ctx, ld_clip_config_from_json(ctx, js, strlen(js), "t.json", &back), LD_OK, NULL);
    free(js);
    CHECK(back.layout == LD_CLIP_LAYOUT_HF && !back.vision_quick_gelu && !back.vision_gelu_tanh && back.text.gelu_tanh &&
          !back.text.quick_gelu && back.text.intermediate_size == 12 && back.embed_dim == E && back.image_size == S &&
          fabsf(back.logit_scale_max - 4.0f) < 1e-6f && back.text.pad_token_id == 0);
#define HF(x) "{\"model_type\":\"clip\"," x "}"
    const cfg_case cases[] = {
        {HF("\"text_config\":{\"model_type\":\"chinese_clip_text_model\"}"), LD_ERR_UNSUPPORTED,
         "text_config model_type 'chinese_clip_text_model' is not clip_text_model"},
        {HF("\"vision_config\":{\"model_type\":\"siglip_vision_model\"}"), LD_ERR_UNSUPPORTED,
         "vision_config model_type 'siglip_vision_model'"},
        {HF("\"text_config\":{\"hidden_act\":\"relu\"}"), LD_ERR_UNSUPPORTED, "text_config hidden_act 'relu'"},
        {HF("\"vision_config\":{\"hidden_act\":\"silu\"}"), LD_ERR_UNSUPPORTED, "vision_config hidden_act 'silu'"},
        {HF("\"vision_config\":{\"num_channels\":1}"), LD_ERR_UNSUPPORTED, "num_channels 1"},
        {HF("\"vision_config\":{\"image_size\":100}"), LD_ERR_INVALID_ARG,
         "image_size 100 must be a positive multiple of patch_size 32"},
        {HF("\"text_config\":{\"hidden_size\":100}"), LD_ERR_INVALID_ARG, "not divisible by num_attention_heads"},
        {HF("\"text_config\":{\"vocab_size\":0}"), LD_ERR_FORMAT, "vocab_size"},
        {HF("\"text_config\":{\"eos_token_id\":-1}"), LD_ERR_FORMAT, "eos_token_id"},
        {HF("\"text_config\":{\"pad_token_id\":49408}"), LD_ERR_INVALID_ARG, "pad_token_id 49408"},
        {HF("\"text_config\":{\"max_position_embeddings\":\"77\"}"), LD_ERR_FORMAT, "max_position_embeddings"},
        {HF("\"text_config\":[]"), LD_ERR_FORMAT, "text_config"},
        {HF("\"projection_dim\":0"), LD_ERR_FORMAT, "projection_dim"},
        {HF("\"logit_scale_init_value\":9"), LD_ERR_INVALID_ARG, "logit_scale_init_value 9"},
        {HF("\"vision_config\":{\"layer_norm_eps\":2}"), LD_ERR_FORMAT, "layer_norm_eps"},
        {HF("\"liandan\":{\"logit_scale_max\":\"x\"}"), LD_ERR_FORMAT, "logit_scale_max"},
        {"{\"model_type\":\"clip_text_model\"}", LD_ERR_UNSUPPORTED, "is not clip"},
        {"{\"model_type\":\"clip\"", LD_ERR_FORMAT, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_STATUS(ctx, ld_clip_config_from_json(ctx, cases[i].json, strlen(cases[i].json), "c.json", &back),
                     cases[i].expect, cases[i].msg);
#undef HF
    CHECK(ld_clip_config_sniff(bare, strlen(bare)) && !ld_clip_config_sniff("{\"model_type\":\"bert\"}", 21) &&
          !ld_clip_config_sniff("{", 1));
}

/* Directories whose weights do not fit their config: each error names the tensor. */
TEST(load_bad_weights) {
    ld_ctx *ctx = test_ctx();
    ld_clip *m = hf_model(hf_tiny(), 8), *out = NULL;
    const char *dir = dt_path("hfbad");
    CHECK_STATUS(ctx, ld_clip_save(m, NULL, dir), LD_OK, NULL);
    ld_params *ps = ld_clip_params(m);
    int n = ld_params_count(ps);
    char path[600];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    int64_t flat[2] = {W, 3 * PS * PS}, one = 1;
    static int32_t ints[W * 3 * PS * PS];
    struct {
        const char *name; /* the tensor changed */
        int mode;         /* 0 left out, 1 2-D patch weight, 2 logit_scale [1], 3 I32 data */
        ld_status expect;
        const char *msg;
    } cases[] = {
        {"text_model.final_layer_norm.bias", 0, LD_ERR_NOT_FOUND, "tensor 'text_model.final_layer_norm.bias' is missing"},
        {"vision_model.embeddings.class_embedding", 0, LD_ERR_NOT_FOUND, "class_embedding' is missing"},
        {"vision_model.embeddings.patch_embedding.weight", 1, LD_ERR_SHAPE,
         "patch_embedding.weight' has shape [8, 48], the config needs [8, 3, 4, 4]"},
        {"logit_scale", 2, LD_ERR_SHAPE, "'logit_scale' has shape [1], the config needs []"},
        {"vision_model.embeddings.patch_embedding.weight", 3, LD_ERR_DTYPE, "has dtype I32"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ld_st_write_tensor *w = calloc((size_t)n, sizeof *w);
        int64_t(*dims)[4] = calloc((size_t)n, sizeof *dims);
        size_t j = 0;
        for (int i = 0; i < n; i++) {
            ld_tensor *p = ld_params_at(ps, i);
            w[j] = (ld_st_write_tensor){.name = p->name, .dtype = LD_F32, .ndim = p->ndim, .shape = p->shape, .data = p->data};
            if (!strcmp(p->name, "vision_model.embeddings.patch_embedding.weight"))
                w[j].ndim = 4, w[j].shape = dims[i], dims[i][0] = W, dims[i][1] = 3, dims[i][2] = PS, dims[i][3] = PS;
            if (!strcmp(p->name, "vision_model.embeddings.class_embedding")) w[j].ndim = 1, w[j].shape = &flat[0];
            if (!strcmp(p->name, "logit_scale")) w[j].ndim = 0;
            if (!strcmp(p->name, cases[k].name)) {
                if (cases[k].mode == 0) continue;
                if (cases[k].mode == 1) w[j].ndim = 2, w[j].shape = flat;
                if (cases[k].mode == 2) w[j].ndim = 1, w[j].shape = &one;
                if (cases[k].mode == 3) w[j].dtype = LD_I32, w[j].data = ints;
            }
            j++;
        }
        CHECK_STATUS(ctx, ld_safetensors_write(ctx, path, w, j, NULL, 0), LD_OK, NULL);
        CHECK_STATUS(ctx, ld_clip_load(ctx, dir, &out, NULL), cases[k].expect, cases[k].msg);
        CHECK(out == NULL);
        free(w), free(dims);
    }
    /* a config asking for a bigger model than the weights: refused by name before allocating */
    snprintf(path, sizeof path, "%s/config.json", dir);
    const char *big = "{\"model_type\":\"clip\"}";
    CHECK(ld_file_write_atomic(ctx, path, big, strlen(big)) == LD_OK);
    CHECK_STATUS(ctx, ld_clip_load(ctx, dir, &out, NULL), LD_ERR_SHAPE, "the config needs [49408, 512]");
    ld_clip_free(m);
}

/* Every allocation of ld_clip_load failing in turn (SQLite-style): each is a clean
 * LD_ERR_NOMEM with nothing returned and nothing left allocated; then the load succeeds. */
typedef struct fail_mem {
    ld_test_mem mem;
    long n, fail_at; /* allocations so far; the one that fails (0: none) */
} fail_mem;
static void *fail_alloc(void *user, size_t size, size_t align) {
    fail_mem *f = user;
    if (++f->n == f->fail_at) return NULL;
    return ld_test_mem_alloc(&f->mem, size, align);
}
static void fail_free(void *user, void *ptr) {
    ld_test_mem_free(&((fail_mem *)user)->mem, ptr);
}

TEST(load_allocation_failures) {
    ld_ctx *ctx = test_ctx();
    ld_clip *m = hf_model(hf_tiny(), 9);
    const char *texts[] = {"猫狗"};
    const char *vpath = dt_path("torture_vocab.txt"), *dir = dt_path("hftorture");
    ld_tokenizer *tok = NULL;
    CHECK(ld_clip_build_vocab(ctx, texts, 1, 1, vpath) == LD_OK && ld_tokenizer_load_vocab_txt(ctx, vpath, &tok) == LD_OK);
    CHECK_STATUS(ctx, ld_clip_save(m, tok, dir), LD_OK, NULL);
    fail_mem f = {0};
    ld_allocator al = {fail_alloc, fail_free, &f};
    ld_ctx_params cp = ld_ctx_default_params();
    cp.allocator = &al, cp.n_threads = 1;
    ld_ctx *fc = NULL;
    CHECK(ld_ctx_new(&cp, &fc) == LD_OK);
    bool loaded = false;
    long tries = 0;
    for (long k = 1; fc && k < 5000 && !loaded; k++, tries++) {
        size_t held = f.mem.held;
        f.n = 0, f.fail_at = k;
        ld_clip *out = NULL;
        ld_tokenizer *t2 = NULL;
        ld_status st = ld_clip_load(fc, dir, &out, &t2);
        if (st == LD_OK) {
            loaded = true;
            CHECK(out && t2);
            ld_clip_free(out), ld_tokenizer_free(t2);
        } else {
            CHECK_MSG(st == LD_ERR_NOMEM && !out && !t2, "allocation %ld: status %d", k, (int)st);
        }
        CHECK_MSG(f.mem.held == held, "allocation %ld failing leaked %zu bytes", k, f.mem.held - held);
    }
    CHECK_MSG(loaded && tries > 50, "the load never succeeded (%ld tries)", tries);
    ld_ctx_free(fc);
    ld_tokenizer_free(tok);
    ld_clip_free(m);
}

LD_TEST_MAIN()

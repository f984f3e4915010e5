/* tests/unit/test_clip.c — the image-text two-tower model: the InfoNCE loss against a
 * double-precision reference (with queue negatives and the temperature clamp), finite
 * differences for L2 normalisation, InfoNCE, the patch embedding and every kind of parameter of
 * the whole model, model-directory round trip, config.json bad inputs, captions, and that a
 * few steps of training separate matching pairs; MoCo queues (the two-queue InfoNCE against a
 * reference and by finite differences, the momentum update) and that training with a queue
 * stopped and resumed from its checkpoint ends bit-identical to a run never stopped. */
#include <math.h>

#include "data_test_util.h"
#include "liandan/clip.h"
#include "liandan/clip_eval.h"
#include "liandan/clip_train.h"

/* One context for the whole binary (freed at exit, so the leak checker sees none). */
static ld_ctx *test_ctx_;
static void test_ctx_free_(void) {
    ld_ctx_free(test_ctx_);
}
static ld_ctx *test_ctx(void) {
    if (!test_ctx_) test_ctx_ = dt_ctx(), atexit(test_ctx_free_);
    return test_ctx_;
}
#include "nn/nn_internal.h"

static ld_clip_config tiny_config(void) {
    ld_clip_config c = ld_clip_default_config();
    c.image_size = 8, c.patch_size = 4, c.vision_width = 8, c.vision_layers = 1, c.vision_heads = 2, c.vision_mlp = 16;
    c.text.vocab_size = 24, c.text.hidden_size = 8, c.text.n_layers = 1, c.text.n_heads = 2;
    c.text.intermediate_size = 16, c.text.max_position = 8;
    c.embed_dim = 6;
    return c;
}

/* A batch of B random images and captions for the tiny model. */
typedef struct batch {
    int64_t B, T;
    float px[4 * 3 * 8 * 8];
    int32_t ids[4 * 6], len[4];
} batch;

static batch tiny_batch(uint64_t seed) {
    batch b = {.B = 3, .T = 6};
    ld_rng r = ld_rng_init(seed);
    for (int i = 0; i < 3 * 3 * 64; i++) b.px[i] = ld_rng_normal(&r);
    for (int i = 0; i < 3; i++) {
        b.len[i] = 3 + i;
        for (int j = 0; j < 6; j++) b.ids[i * 6 + j] = j < b.len[i] ? (int32_t)(5 + ld_rng_below(&r, 19)) : 0;
        b.ids[i * 6] = 2;
    }
    return b;
}

static double model_loss(ld_clip *m, ld_tape *t, const batch *b) {
    ld_tape_reset(t);
    ld_tensor *loss = NULL;
    if (ld_clip_loss(m, t, b->px, b->ids, b->len, b->B, b->T, &loss)) return NAN;
    return ((float *)loss->data)[0];
}

/* Worst |analytic - numeric| / (|numeric| + 0.05) over up to `samples` elements of p, central
 * differences with step eps on the float model. */
static double fd_param(ld_clip *m, ld_tape *t, const batch *b, ld_tensor *p, int samples, double eps) {
    ld_params_zero_grad(ld_clip_params(m));
    ld_tape_reset(t);
    ld_tensor *loss = NULL;
    if (ld_clip_loss(m, t, b->px, b->ids, b->len, b->B, b->T, &loss) || ld_tape_backward(t, loss)) return INFINITY;
    int64_t n = ld_tensor_numel(p);
    float *g = malloc((size_t)n * sizeof(float));
    memcpy(g, p->grad->data, (size_t)n * sizeof(float));
    double worst = 0;
    float *x = p->data;
    for (int s = 0; s < samples && s < n; s++) {
        int64_t j = n <= samples ? s : (int64_t)((uint64_t)s * 2654435761u % (uint64_t)n);
        float keep = x[j];
        x[j] = keep + (float)eps;
        double lp = model_loss(m, t, b);
        x[j] = keep - (float)eps;
        double lm = model_loss(m, t, b);
        x[j] = keep;
        double num = (lp - lm) / (2 * eps), err = fabs(g[j] - num) / (fabs(num) + 0.05);
        if (!(err <= worst)) worst = err;
    }
    free(g);
    return worst;
}

TEST(infonce_matches_reference) {
    ld_ctx *ctx = test_ctx();
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    int64_t B = 3, Q = 2, E = 4;
    ld_params *ps;
    ld_tensor *a, *b, *ls, *loss;
    CHECK(ld_params_new(ctx, &ps) == LD_OK);
    CHECK(ld_params_add(ps, "a", 2, (int64_t[]){B, E}, true, &a) == LD_OK);
    CHECK(ld_params_add(ps, "b", 2, (int64_t[]){B + Q, E}, true, &b) == LD_OK);
    CHECK(ld_params_add(ps, "s", 1, (int64_t[]){1}, true, &ls) == LD_OK);
    ld_rng r = ld_rng_init(5);
    for (int i = 0; i < B * E; i++) ((float *)a->data)[i] = ld_rng_normal(&r) * 0.5f;
    for (int i = 0; i < (B + Q) * E; i++) ((float *)b->data)[i] = ld_rng_normal(&r) * 0.5f;
    ((float *)ls->data)[0] = 1.5f;
    CHECK_STATUS(ctx, ld_op_infonce(t, a, b, Q, ls, 4.6f, &loss), LD_OK, NULL);
    /* the reference in double: rows over all B + Q, columns over the B in-batch rows */
    const float *ad = a->data, *bd = b->data;
    double s = exp(1.5), L[3][5], ref = 0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B + Q; j++) {
            double d = 0;
            for (int e = 0; e < E; e++) d += (double)ad[i * E + e] * bd[j * E + e];
            L[i][j] = s * d;
        }
    for (int i = 0; i < B; i++) {
        double z = 0, zc = 0;
        for (int j = 0; j < B + Q; j++) z += exp(L[i][j]);
        for (int j = 0; j < B; j++) zc += exp(L[j][i]);
        ref += (log(z) - L[i][i]) + (log(zc) - L[i][i]);
    }
    ref /= 2 * B;
    CHECK_NEAR(((float *)loss->data)[0], ref, 1e-5);
    /* bad shapes */
    CHECK_STATUS(ctx, ld_op_infonce(t, a, b, 1, ls, 4.6f, &loss), LD_ERR_SHAPE, "infonce");
    CHECK_STATUS(ctx, ld_op_infonce(t, a, a, 0, b, 4.6f, &loss), LD_ERR_SHAPE, "one element");
    ld_params_free(ps);
    ld_tape_free(t);
}

/* Finite differences of ops composed on a tape: loss = infonce(l2norm(x1), l2norm(x2)). */
TEST(l2norm_infonce_gradients) {
    ld_ctx *ctx = test_ctx();
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    int64_t B = 4, Q = 3, E = 5;
    ld_params *ps;
    ld_tensor *x1, *x2, *ls;
    CHECK(ld_params_new(ctx, &ps) == LD_OK);
    CHECK(ld_params_add(ps, "x1", 2, (int64_t[]){B, E}, true, &x1) == LD_OK);
    CHECK(ld_params_add(ps, "x2", 2, (int64_t[]){B + Q, E}, true, &x2) == LD_OK);
    CHECK(ld_params_add(ps, "s", 1, (int64_t[]){1}, true, &ls) == LD_OK);
    ld_rng r = ld_rng_init(9);
    for (int i = 0; i < B * E; i++) ((float *)x1->data)[i] = ld_rng_normal(&r);
    for (int i = 0; i < (B + Q) * E; i++) ((float *)x2->data)[i] = ld_rng_normal(&r);
    for (int clamp = 0; clamp < 2; clamp++) {
        ((float *)ls->data)[0] = clamp ? 5.0f : 1.2f; /* above the clamp of 4: no gradient, scale fixed */
        ld_tensor *all[3] = {x1, x2, ls};
        for (int k = 0; k < 3; k++) {
            ld_params_zero_grad(ps);
            ld_tape_reset(t);
            ld_tensor *y1, *y2, *loss;
            CHECK(ld_op_l2_normalize(t, x1, &y1) == LD_OK && ld_op_l2_normalize(t, x2, &y2) == LD_OK);
            CHECK(ld_op_infonce(t, y1, y2, Q, ls, 4.0f, &loss) == LD_OK);
            CHECK(ld_tape_backward(t, loss) == LD_OK);
            double worst = 0;
            float *x = all[k]->data, *g = all[k]->grad->data;
            for (int64_t j = 0; j < ld_tensor_numel(all[k]); j++) {
                float keep = x[j];
                double lv[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    x[j] = keep + (sgn ? -1e-3f : 1e-3f);
                    ld_tape_reset(t);
                    ld_op_l2_normalize(t, x1, &y1), ld_op_l2_normalize(t, x2, &y2);
                    ld_op_infonce(t, y1, y2, Q, ls, 4.0f, &loss);
                    lv[sgn] = ((float *)loss->data)[0];
                }
                x[j] = keep;
                double num = (lv[0] - lv[1]) / 2e-3, err = fabs(g[j] - num) / (fabs(num) + 0.05);
                if (k == 1 && j >= B * E) CHECK(g[j] == 0); /* queue rows get no gradient */
                else if (err > worst) worst = err;
            }
            if (k == 2 && clamp) CHECK(g[0] == 0);
            CHECK_MSG(worst < 2e-2, "input %d (clamp %d): finite-difference error %.3g", k, clamp, worst);
        }
    }
    ld_params_free(ps);
    ld_tape_free(t);
}

TEST(model_gradients) {
    ld_ctx *ctx = test_ctx();
    ld_clip_config c = tiny_config();
    ld_clip *m;
    CHECK_STATUS(ctx, ld_clip_new(ctx, &c, 3, &m), LD_OK, NULL);
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    batch b = tiny_batch(1);
    ld_params *ps = ld_clip_params(m);
    /* sharper logits than at initialisation, so every parameter's gradient is sizeable */
    ((float *)ld_params_find(ps, "logit_scale")->data)[0] = 3.0f;
    const char *names[] = {"vision_model.embeddings.patch_embedding.weight",
                           "vision_model.embeddings.position_embedding.weight",
                           "vision_model.pre_layrnorm.weight",
                           "vision_model.esm.encoder.layer.0.attention.self.query.weight",
                           "vision_model.esm.encoder.layer.0.intermediate.dense.weight",
                           "vision_model.esm.encoder.emb_layer_norm_after.bias",
                           "visual_projection.weight",
                           "text_projection.weight",
                           "text_model.bert.embeddings.word_embeddings.weight",
                           "text_model.bert.encoder.layer.0.output.dense.weight",
                           "logit_scale"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        ld_tensor *p = ld_params_find(ps, names[i]);
        CHECK_MSG(p != NULL, "no parameter %s", names[i]);
        if (!p) continue;
        double e = fd_param(m, t, &b, p, 24, 2e-3);
        CHECK_MSG(e < 3e-2, "%s: finite-difference error %.3g", names[i], e);
    }
    /* the unused heads are frozen */
    CHECK(!(ld_params_find(ps, "text_model.cls.predictions.bias")->flags & LD_TENSOR_TRAINABLE));
    ld_tape_free(t);
    ld_clip_free(m);
}

TEST(patch_embedding_layout) {
    /* token 1 + gy G + gx of image b is W . (the patch's pixels in (c, y, x) order); token 0 the
     * class embedding (the weight's last column) */
    ld_ctx *ctx = test_ctx();
    ld_clip_config c = tiny_config();
    ld_clip *m;
    CHECK(ld_clip_new(ctx, &c, 4, &m) == LD_OK);
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    batch b = tiny_batch(2);
    ld_tensor *tok;
    CHECK_STATUS(ctx, ld_clip_patch_embed(m, t, b.px, 2, &tok), LD_OK, NULL);
    CHECK(tok->ndim == 3 && tok->shape[0] == 2 && tok->shape[1] == 5 && tok->shape[2] == 8);
    const float *w = ld_params_find(ld_clip_params(m), "vision_model.embeddings.patch_embedding.weight")->data;
    int K = 3 * 16 + 1;
    double worst = 0;
    for (int img = 0; img < 2; img++)
        for (int p = 0; p < 5; p++)
            for (int o = 0; o < 8; o++) {
                double ref = 0;
                if (p == 0) ref = w[o * K + K - 1];
                else
                    for (int ch = 0; ch < 3; ch++)
                        for (int y = 0; y < 4; y++)
                            for (int x = 0; x < 4; x++) {
                                int gy = (p - 1) / 2, gx = (p - 1) % 2;
                                ref += (double)w[o * K + (ch * 4 + y) * 4 + x] *
                                       b.px[img * 192 + (ch * 8 + gy * 4 + y) * 8 + gx * 4 + x];
                            }
                double e = fabs(((float *)tok->data)[(img * 5 + p) * 8 + o] - ref);
                if (e > worst) worst = e;
            }
    CHECK_MSG(worst < 1e-4, "patch embedding differs from the convolution by %.3g", worst);
    ld_tape_free(t);
    ld_clip_free(m);
}

TEST(directory_round_trip) {
    ld_ctx *ctx = test_ctx();
    ld_clip_config c = tiny_config();
    c.text.vocab_size = 12;
    ld_clip *m, *m2;
    CHECK(ld_clip_new(ctx, &c, 7, &m) == LD_OK);
    const char *texts[] = {"猫猫狗", "cat"};
    const char *vpath = dt_path("vocab.txt");
    CHECK_STATUS(ctx, ld_clip_build_vocab(ctx, texts, 2, 1, vpath), LD_OK, NULL);
    ld_tokenizer *tok, *tok2;
    CHECK_STATUS(ctx, ld_tokenizer_load_vocab_txt(ctx, vpath, &tok), LD_OK, NULL);
    CHECK(ld_tokenizer_vocab_size(tok) == 5 + 5);
    CHECK(ld_tokenizer_token_id(tok, "猫") == 5); /* the most frequent first */
    const char *dir = dt_path("clipdir");
    CHECK_STATUS(ctx, ld_clip_save(m, tok, dir), LD_OK, NULL);
    CHECK(ld_clip_dir_sniff(dir));
    CHECK_STATUS(ctx, ld_clip_load(ctx, dir, &m2, &tok2), LD_OK, NULL);
    uint8_t img[2][8 * 8 * 3];
    for (int i = 0; i < 2 * 192; i++) img[i / 192][i % 192] = (uint8_t)(i * 37);
    const uint8_t *imgs[2] = {img[0], img[1]};
    float e1[2 * 6], e2[2 * 6], t1[2 * 6], t2[2 * 6];
    CHECK_STATUS(ctx, ld_clip_embed_images(m, imgs, 2, e1), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_clip_embed_images(m2, imgs, 2, e2), LD_OK, NULL);
    CHECK(!memcmp(e1, e2, sizeof e1));
    CHECK_STATUS(ctx, ld_clip_embed_texts(m, tok, texts, 2, t1), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_clip_embed_texts(m2, tok2, texts, 2, t2), LD_OK, NULL);
    CHECK(!memcmp(t1, t2, sizeof t1));
    double norm = 0;
    for (int i = 0; i < 6; i++) norm += (double)t1[i] * t1[i];
    CHECK_NEAR(norm, 1.0, 1e-5);
    /* captions: [CLS] chars [SEP] [PAD]..., cut to T */
    int32_t ids[6], len;
    CHECK(ld_clip_encode_caption(tok, "猫狗", 6, ids, &len) == LD_OK);
    CHECK(len == 4 && ids[0] == 2 && ids[1] == 5 && ids[3] == 3 && ids[4] == 0 && ids[5] == 0);
    CHECK(ld_clip_encode_caption(tok, "猫狗猫狗猫狗猫狗", 6, ids, &len) == LD_OK);
    CHECK(len == 6 && ids[5] == 3);
    ld_tokenizer_free(tok), ld_tokenizer_free(tok2);
    ld_clip_free(m), ld_clip_free(m2);
}

typedef struct cfg_case {
    const char *json;
    ld_status expect;
    const char *msg;
} cfg_case;

TEST(config_bad_inputs) {
    ld_ctx *ctx = test_ctx();
    ld_clip_config c = tiny_config();
    char *good = ld_clip_config_to_json(&c);
    ld_clip_config back;
    CHECK_STATUS(ctx, ld_clip_config_from_json(ctx, good, strlen(good), "good.json", &back), LD_OK, NULL);
    CHECK(back.image_size == 8 && back.patch_size == 4 && back.embed_dim == 6 && back.text.hidden_size == 8);
    free(good);
#define TXT "\"text_config\":{\"model_type\":\"bert\",\"vocab_size\":10,\"hidden_size\":8,\"num_hidden_layers\":1," \
            "\"num_attention_heads\":2,\"intermediate_size\":16,\"max_position_embeddings\":8}"
#define VIS(extra) "\"vision_config\":{\"hidden_size\":8,\"intermediate_size\":16,\"num_hidden_layers\":1," \
                   "\"num_attention_heads\":2,\"image_size\":8,\"patch_size\":4" extra "}"
    const cfg_case cases[] = {
        {"{\"model_type\":\"clip\",\"projection_dim\":4," TXT "," VIS("") "}", LD_OK, NULL},
        {"[]", LD_ERR_FORMAT, "c.json: expected a JSON object"},
        {"{\"model_type\":\"bert\"}", LD_ERR_UNSUPPORTED, "model_type 'bert' is not clip"},
        {"{\"model_type\":\"clip\",\"projection_dim\":4," TXT "}", LD_ERR_FORMAT, "vision_config"},
        {"{\"model_type\":\"clip\"," TXT "," VIS("") "}", LD_ERR_FORMAT, "projection_dim"},
        {"{\"model_type\":\"clip\",\"projection_dim\":4," TXT "," VIS(",\"num_channels\":4") "}", LD_ERR_UNSUPPORTED,
         "num_channels 4"},
        {"{\"model_type\":\"clip\",\"projection_dim\":4," TXT ",\"vision_config\":{\"hidden_size\":8,\"intermediate_size\":16,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"image_size\":10,\"patch_size\":4}}", LD_ERR_INVALID_ARG,
         "image_size 10 must be a positive multiple of patch_size 4"},
        {"{\"model_type\":\"clip\",\"projection_dim\":4,\"text_config\":{\"model_type\":\"esm\"}," VIS("") "}",
         LD_ERR_FORMAT, "text_config"},
        {"{\"model_type\":\"clip\",\"projection_dim\":4," TXT "," VIS(",\"hidden_size\":\"x\"") "}", LD_ERR_FORMAT, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK_STATUS(ctx, ld_clip_config_from_json(ctx, cases[i].json, strlen(cases[i].json), "c.json", &back),
                     cases[i].expect, cases[i].msg);
}

/* Training separates matching pairs: 60 AdamW steps on 4 fixed pairs take the loss from about
 * log 4 to below half of it. */
TEST(training_learns_pairs) {
    ld_ctx *ctx = test_ctx();
    ld_clip_config c = tiny_config();
    ld_clip *m;
    CHECK(ld_clip_new(ctx, &c, 11, &m) == LD_OK);
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    ld_adamw_config oc = ld_adamw_default_config();
    ld_adamw *opt;
    CHECK(ld_adamw_new(ld_clip_params(m), &oc, &opt) == LD_OK);
    batch b = tiny_batch(3);
    b.B = 4, b.len[3] = 4;
    for (int j = 0; j < 6; j++) b.ids[18 + j] = j < 4 ? 7 + j : 0;
    ld_rng r = ld_rng_init(4);
    for (int i = 3 * 192; i < 4 * 192; i++) b.px[i] = ld_rng_normal(&r);
    double first = 0, last = 0;
    for (int step = 0; step < 60; step++) {
        ld_params_zero_grad(ld_clip_params(m));
        ld_tape_reset(t);
        ld_tensor *loss;
        CHECK(ld_clip_loss(m, t, b.px, b.ids, b.len, b.B, b.T, &loss) == LD_OK);
        CHECK(ld_tape_backward(t, loss) == LD_OK);
        CHECK(ld_adamw_step(opt, 1e-2f, 1.0f, NULL) == LD_OK);
        if (step == 0) first = ((float *)loss->data)[0];
        last = ((float *)loss->data)[0];
    }
    CHECK_MSG(first > 1.2 && last < 0.6, "loss %.3f -> %.3f", first, last);
    ld_adamw_free(opt);
    ld_tape_free(t);
    ld_clip_free(m);
}

/* InfoNCE with a queue on each side against a double-precision reference, and with empty
 * queues against ld_op_infonce. */
TEST(infonce_queues_match_reference) {
    ld_ctx *ctx = test_ctx();
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    enum { B = 3, QA = 2, QB = 4, E = 4 };
    ld_params *ps;
    ld_tensor *a, *b, *ls, *loss, *loss0;
    CHECK(ld_params_new(ctx, &ps) == LD_OK);
    CHECK(ld_params_add(ps, "a", 2, (int64_t[]){B, E}, true, &a) == LD_OK);
    CHECK(ld_params_add(ps, "b", 2, (int64_t[]){B, E}, true, &b) == LD_OK);
    CHECK(ld_params_add(ps, "s", 1, (int64_t[]){1}, true, &ls) == LD_OK);
    float qa[QA * E], qb[QB * E];
    ld_rng r = ld_rng_init(21);
    for (int i = 0; i < B * E; i++) ((float *)a->data)[i] = ld_rng_normal(&r) * 0.5f;
    for (int i = 0; i < B * E; i++) ((float *)b->data)[i] = ld_rng_normal(&r) * 0.5f;
    for (int i = 0; i < QA * E; i++) qa[i] = ld_rng_normal(&r) * 0.5f;
    for (int i = 0; i < QB * E; i++) qb[i] = ld_rng_normal(&r) * 0.5f;
    ((float *)ls->data)[0] = 1.3f;
    CHECK_STATUS(ctx, ld_op_infonce_queues(t, a, b, qa, QA, qb, QB, ls, 4.6f, &loss), LD_OK, NULL);
    const float *ad = a->data, *bd = b->data;
    double s = exp(1.3), ref = 0;
    for (int i = 0; i < B; i++) { /* image i against the captions and the text queue */
        double z = 0, pos = 0;
        for (int j = 0; j < B + QB; j++) {
            const float *y = j < B ? bd + j * E : qb + (j - B) * E;
            double d = 0;
            for (int e = 0; e < E; e++) d += (double)ad[i * E + e] * y[e];
            z += exp(s * d);
            if (j == i) pos = s * d;
        }
        ref += log(z) - pos;
    }
    for (int i = 0; i < B; i++) { /* caption i against the images and the image queue */
        double z = 0, pos = 0;
        for (int j = 0; j < B + QA; j++) {
            const float *y = j < B ? ad + j * E : qa + (j - B) * E;
            double d = 0;
            for (int e = 0; e < E; e++) d += (double)bd[i * E + e] * y[e];
            z += exp(s * d);
            if (j == i) pos = s * d;
        }
        ref += log(z) - pos;
    }
    ref /= 2 * B;
    CHECK_NEAR(((float *)loss->data)[0], ref, 1e-5);
    /* no queues: the plain loss */
    CHECK(ld_op_infonce_queues(t, a, b, NULL, 0, NULL, 0, ls, 4.6f, &loss) == LD_OK);
    CHECK(ld_op_infonce(t, a, b, 0, ls, 4.6f, &loss0) == LD_OK);
    CHECK(((float *)loss->data)[0] == ((float *)loss0->data)[0]);
    /* bad inputs */
    CHECK_STATUS(ctx, ld_op_infonce_queues(t, a, b, NULL, 2, qb, QB, ls, 4.6f, &loss), LD_ERR_INVALID_ARG, "without its data");
    CHECK_STATUS(ctx, ld_op_infonce_queues(t, a, b, qa, -1, qb, QB, ls, 4.6f, &loss), LD_ERR_INVALID_ARG, "queue");
    CHECK_STATUS(ctx, ld_op_infonce_queues(t, a, ls, qa, QA, qb, QB, ls, 4.6f, &loss), LD_ERR_SHAPE, "two [B, E]");
    CHECK_STATUS(ctx, ld_op_infonce_queues(t, a, b, qa, QA, qb, QB, a, 4.6f, &loss), LD_ERR_SHAPE, "one element");
    ld_params_free(ps);
    ld_tape_free(t);
}

/* Finite differences of infonce_queues(l2norm(x1), l2norm(x2)) with both queues, the
 * temperature below and above its clamp; the queues are constants. */
TEST(infonce_queues_gradients) {
    ld_ctx *ctx = test_ctx();
    ld_tape *t;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    enum { B = 4, QA = 5, QB = 3, E = 5 };
    ld_params *ps;
    ld_tensor *x1, *x2, *ls;
    CHECK(ld_params_new(ctx, &ps) == LD_OK);
    CHECK(ld_params_add(ps, "x1", 2, (int64_t[]){B, E}, true, &x1) == LD_OK);
    CHECK(ld_params_add(ps, "x2", 2, (int64_t[]){B, E}, true, &x2) == LD_OK);
    CHECK(ld_params_add(ps, "s", 1, (int64_t[]){1}, true, &ls) == LD_OK);
    float qa[QA * E], qb[QB * E];
    ld_rng r = ld_rng_init(23);
    for (int i = 0; i < B * E; i++) ((float *)x1->data)[i] = ld_rng_normal(&r);
    for (int i = 0; i < B * E; i++) ((float *)x2->data)[i] = ld_rng_normal(&r);
    for (int q = 0; q < 2; q++) { /* unit rows, as a momentum encoder's embeddings are */
        float *x = q ? qb : qa;
        int n = q ? QB : QA;
        for (int i = 0; i < n; i++) {
            double nn = 0;
            for (int e = 0; e < E; e++) x[i * E + e] = ld_rng_normal(&r), nn += (double)x[i * E + e] * x[i * E + e];
            for (int e = 0; e < E; e++) x[i * E + e] = (float)(x[i * E + e] / sqrt(nn));
        }
    }
    for (int clamp = 0; clamp < 2; clamp++) {
        ((float *)ls->data)[0] = clamp ? 5.0f : 1.4f;
        ld_tensor *all[3] = {x1, x2, ls};
        for (int k = 0; k < 3; k++) {
            ld_params_zero_grad(ps);
            ld_tape_reset(t);
            ld_tensor *y1, *y2, *loss;
            CHECK(ld_op_l2_normalize(t, x1, &y1) == LD_OK && ld_op_l2_normalize(t, x2, &y2) == LD_OK);
            CHECK(ld_op_infonce_queues(t, y1, y2, qa, QA, qb, QB, ls, 4.0f, &loss) == LD_OK);
            CHECK(ld_tape_backward(t, loss) == LD_OK);
            double worst = 0;
            float *x = all[k]->data, *g = all[k]->grad->data;
            for (int64_t j = 0; j < ld_tensor_numel(all[k]); j++) {
                float keep = x[j];
                double lv[2];
                for (int sgn = 0; sgn < 2; sgn++) {
                    x[j] = keep + (sgn ? -1e-3f : 1e-3f);
                    ld_tape_reset(t);
                    ld_op_l2_normalize(t, x1, &y1), ld_op_l2_normalize(t, x2, &y2);
                    ld_op_infonce_queues(t, y1, y2, qa, QA, qb, QB, ls, 4.0f, &loss);
                    lv[sgn] = ((float *)loss->data)[0];
                }
                x[j] = keep;
                double num = (lv[0] - lv[1]) / 2e-3, err = fabs(g[j] - num) / (fabs(num) + 0.05);
                if (err > worst) worst = err;
            }
            if (k == 2 && clamp) CHECK(g[0] == 0);
            if (k == 2 && !clamp) CHECK(g[0] != 0);
            CHECK_MSG(worst < 2e-2, "input %d (clamp %d): finite-difference error %.3g", k, clamp, worst);
        }
    }
    ld_params_free(ps);
    ld_tape_free(t);
}

/* The momentum update is k <- m k + (1 - m) q element by element on the trainable
 * parameters (frozen ones untouched); the copy makes two models equal; bad inputs. */
TEST(momentum_update) {
    ld_ctx *ctx = test_ctx();
    ld_clip_config c = tiny_config();
    ld_clip *q, *k, *k0, *other;
    CHECK(ld_clip_new(ctx, &c, 5, &q) == LD_OK);
    CHECK(ld_clip_new(ctx, &c, 6, &k) == LD_OK);
    CHECK(ld_clip_new(ctx, &c, 6, &k0) == LD_OK);
    ld_params *pq = ld_clip_params(q), *pk = ld_clip_params(k), *p0 = ld_clip_params(k0);
    CHECK(ld_clip_momentum_update(k, q, 0.9f) == LD_OK);
    int64_t checked = 0, bad = 0;
    for (int i = 0; i < ld_params_count(pq); i++) {
        const ld_tensor *x = ld_params_at(pq, i), *y = ld_params_at(pk, i), *y0 = ld_params_at(p0, i);
        const float *xv = x->data, *yv = y->data, *y0v = y0->data;
        for (int64_t j = 0; j < ld_tensor_numel(x); j++, checked++) {
            float want = (x->flags & LD_TENSOR_TRAINABLE) ? 0.9f * y0v[j] + (1.0f - 0.9f) * xv[j] : y0v[j];
            bad += yv[j] != want;
        }
    }
    CHECK_MSG(bad == 0 && checked > 1000, "%lld of %lld elements differ from the EMA", (long long)bad, (long long)checked);
    /* momentum 0 copies the trainable weights; the copy makes every weight equal */
    CHECK(ld_clip_momentum_update(k, q, 0.0f) == LD_OK);
    const ld_tensor *w = ld_params_find(pk, "visual_projection.weight"), *wq = ld_params_find(pq, "visual_projection.weight");
    CHECK(!memcmp(w->data, wq->data, ld_tensor_nbytes(w)));
    CHECK(ld_clip_copy_params(k, q) == LD_OK);
    for (int i = 0; i < ld_params_count(pq); i++)
        CHECK(!memcmp(ld_params_at(pk, i)->data, ld_params_at(pq, i)->data, ld_tensor_nbytes(ld_params_at(pq, i))));
    CHECK_STATUS(ctx, ld_clip_momentum_update(k, q, 1.5f), LD_ERR_INVALID_ARG, "momentum 1.5");
    CHECK_STATUS(ctx, ld_clip_momentum_update(k, q, NAN), LD_ERR_INVALID_ARG, "momentum");
    c.vision_layers = 2;
    CHECK(ld_clip_new(ctx, &c, 6, &other) == LD_OK);
    CHECK_STATUS(ctx, ld_clip_momentum_update(other, q, 0.9f), LD_ERR_MISMATCH, "parameters differ");
    CHECK_STATUS(ctx, ld_clip_copy_params(other, q), LD_ERR_MISMATCH, "parameters differ");
    ld_clip_free(q), ld_clip_free(k), ld_clip_free(k0), ld_clip_free(other);
}

/* The training config: the MoCo and checkpoint keys, and a bad-input table (each error names
 * the file and the key). */
TEST(train_config_bad_inputs) {
    ld_ctx *ctx = test_ctx();
    const char *model = "\"model\": {\"model_type\": \"clip\", \"projection_dim\": 8, \"text_config\": {\"model_type\": "
                        "\"bert\", \"vocab_size\": 32, \"max_position_embeddings\": 16, \"hidden_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, "
                        "\"intermediate_size\": 16}, \"vision_config\": {\"hidden_size\": 8, \"intermediate_size\": 16, "
                        "\"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"image_size\": 8, \"patch_size\": 4}}";
    char buf[2048];
    ld_clip_train_config c;
    snprintf(buf, sizeof buf, "{%s, \"queue_size\": 4096, \"momentum\": 0.99, \"checkpoint_every\": 100}", model);
    CHECK_STATUS(ctx, ld_clip_train_config_parse(ctx, buf, strlen(buf), "t.json", &c), LD_OK, NULL);
    CHECK(c.queue_size == 4096 && c.momentum == 0.99f && c.checkpoint_every == 100 && !c.resume);
    snprintf(buf, sizeof buf, "{%s}", model);
    CHECK_STATUS(ctx, ld_clip_train_config_parse(ctx, buf, strlen(buf), "t.json", &c), LD_OK, NULL);
    CHECK(c.queue_size == 0 && c.momentum == 0.995f && c.checkpoint_every == 0);
    CHECK(ld_clip_train_config_is_clip(buf, strlen(buf)));
    const struct {
        const char *extra;
        ld_status expect;
        const char *msg;
    } cases[] = {
        {"\"queue_size\": -1", LD_ERR_FORMAT, "queue_size"},
        {"\"queue_size\": 2000000", LD_ERR_FORMAT, "queue_size"},
        {"\"queue_size\": 1.5", LD_ERR_FORMAT, "queue_size"},
        {"\"queue_size\": \"8\"", LD_ERR_FORMAT, "queue_size"},
        {"\"momentum\": 1", LD_ERR_FORMAT, "momentum 1 must be below 1"},
        {"\"momentum\": -0.1", LD_ERR_FORMAT, "momentum"},
        {"\"momentum\": true", LD_ERR_FORMAT, "momentum"},
        {"\"checkpoint_every\": -5", LD_ERR_FORMAT, "checkpoint_every"},
        {"\"batch_size\": 1", LD_ERR_FORMAT, "batch_size"},
        {"\"lang\": \"fr\"", LD_ERR_FORMAT, "lang 'fr'"},
        {"\"schedule\": \"linear\"", LD_ERR_FORMAT, "schedule 'linear'"},
        {"\"lr\": 0", LD_ERR_FORMAT, "lr"},
        {"\"out_dir\": 5", LD_ERR_FORMAT, "out_dir"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(buf, sizeof buf, "{%s, %s}", model, cases[i].extra);
        CHECK_STATUS(ctx, ld_clip_train_config_parse(ctx, buf, strlen(buf), "t.json", &c), cases[i].expect, cases[i].msg);
    }
    CHECK_STATUS(ctx, ld_clip_train_config_parse(ctx, "{", 1, "t.json", &c), LD_ERR_FORMAT, "t.json");
    CHECK_STATUS(ctx, ld_clip_train_config_parse(ctx, "[]", 2, "t.json", &c), LD_ERR_FORMAT, "JSON object");
    CHECK_STATUS(ctx, ld_clip_train_config_parse(ctx, "{}", 2, "t.json", &c), LD_ERR_FORMAT, "model");
}

/* ---- training with a queue, checkpoints and resume ---------------------------------------- */

static void stop_at_5(void *user, const ld_clip_train_progress *p) {
    if (p->step == 5) *(volatile int *)user = 1;
}

static bool same_file(const char *a, const char *b) {
    FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
    bool same = f && g;
    while (same) {
        int x = fgetc(f), y = fgetc(g);
        same = x == y;
        if (x == EOF) break;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

/* One run of 7 steps with a queue of 5 (batches of 2, so it wraps) and checkpoints every 2,
 * against a run stopped after step 5 (its newest checkpoint is step 4, so step 5 is redone)
 * and resumed by a fresh model and optimizer from the files alone: the weights end
 * bit-identical, and so do the step-6 checkpoints (weights, AdamW state, momentum weights,
 * queues, data cursor). */
TEST(train_queue_resume_bit_identical) {
    ld_ctx *ctx = test_ctx();
    char line[128], list[2048] = "image\tcaption\n";
    const char *caps[8] = {"红色", "蓝色", "绿色", "黄色", "一只猫", "一只狗", "太阳", "月亮"};
    ld_rng r = ld_rng_init(31);
    for (int i = 0; i < 8; i++) {
        uint8_t px[8 * 8 * 3];
        for (int j = 0; j < 8 * 8 * 3; j++) px[j] = (uint8_t)ld_rng_below(&r, 256);
        snprintf(line, sizeof line, "im%d.png", i);
        ld_status st = ld_image_save_png(ctx, dt_path(line), px, 8, 8);
        if (st == LD_ERR_UNSUPPORTED) SKIP("built without libpng");
        CHECK(st == LD_OK);
        snprintf(line, sizeof line, "im%d.png\t%s\n", i, caps[i]);
        strcat(list, line);
    }
    DT_WRITE_STR("pairs.tsv", list);
    CHECK(ld_clip_build_vocab(ctx, caps, 8, 1, dt_path("vocab.txt")) == LD_OK);
    ld_tokenizer *tok = NULL;
    CHECK(ld_tokenizer_load_vocab_txt(ctx, dt_path("vocab.txt"), &tok) == LD_OK);
    ld_clip_pairs pairs = {0};
    CHECK_STATUS(ctx, ld_clip_pairs_open(ctx, dt_path("pairs.tsv"), "", "zh", 8, &pairs), LD_OK, NULL);
    ld_clip_train_config c = ld_clip_train_config_default();
    c.model = tiny_config();
    c.model.text.vocab_size = ld_tokenizer_vocab_size(tok);
    c.batch_size = 2, c.max_steps = c.schedule.max_steps = 7, c.schedule.warmup_steps = 1, c.schedule.lr = 1e-2f;
    c.eval_every = 0, c.queue_size = 5, c.momentum = 0.9f, c.checkpoint_every = 2, c.transform.flip = true;
    ld_clip *a = NULL, *b = NULL;
    /* A: never stopped */
    snprintf(c.out_dir, sizeof c.out_dir, "%s", dt_path("run_a"));
    CHECK(ld_clip_new(ctx, &c.model, c.seed, &a) == LD_OK);
    CHECK_STATUS(ctx, ld_clip_train(a, tok, &c, &pairs, NULL, 0, NULL, NULL, NULL), LD_OK, NULL);
    /* B: stopped after step 5, resumed by new objects */
    snprintf(c.out_dir, sizeof c.out_dir, "%s", dt_path("run_b"));
    volatile int stop = 0;
    CHECK(ld_clip_new(ctx, &c.model, c.seed, &b) == LD_OK);
    CHECK_STATUS(ctx, ld_clip_train(b, tok, &c, &pairs, NULL, 0, stop_at_5, (void *)&stop, &stop), LD_ERR_INTERRUPTED,
                 "stopped at step 5");
    ld_clip_free(b);
    CHECK(ld_clip_new(ctx, &c.model, c.seed, &b) == LD_OK);
    /* without --resume the run directory is not overwritten */
    CHECK_STATUS(ctx, ld_clip_train(b, tok, &c, &pairs, NULL, 0, NULL, NULL, NULL), LD_ERR_INVALID_ARG, "--resume");
    /* a resumed run must keep the queue size */
    c.resume = true, c.queue_size = 4;
    CHECK_STATUS(ctx, ld_clip_train(b, tok, &c, &pairs, NULL, 0, NULL, NULL, NULL), LD_ERR_MISMATCH, "queue_size 5");
    c.queue_size = 5;
    CHECK_STATUS(ctx, ld_clip_train(b, tok, &c, &pairs, NULL, 0, NULL, NULL, NULL), LD_OK, NULL);
    ld_params *pa = ld_clip_params(a), *pb = ld_clip_params(b);
    int differ = 0;
    for (int i = 0; i < ld_params_count(pa); i++)
        differ += memcmp(ld_params_at(pa, i)->data, ld_params_at(pb, i)->data, ld_tensor_nbytes(ld_params_at(pa, i))) != 0;
    CHECK_MSG(differ == 0, "%d parameters differ after resuming", differ);
    const char *files[] = {"model.safetensors", "optimizer.safetensors", "momentum.safetensors", "queue.safetensors",
                           "trainer_state.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char fa[600], fb[600];
        snprintf(fa, sizeof fa, "%s/checkpoints/step-0000006/%s", dt_path("run_a"), files[i]);
        snprintf(fb, sizeof fb, "%s/checkpoints/step-0000006/%s", dt_path("run_b"), files[i]);
        CHECK_MSG(same_file(fa, fb), "%s differs between the runs", files[i]);
    }
    /* the last two checkpoints are kept; metrics hold each step once */
    char p[600];
    snprintf(p, sizeof p, "%s/checkpoints/step-0000002", dt_path("run_b"));
    CHECK(access(p, F_OK) != 0);
    snprintf(p, sizeof p, "%s/checkpoints/step-0000004", dt_path("run_b"));
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/metrics.jsonl", dt_path("run_b"));
    FILE *f = fopen(p, "r");
    int lines = 0, in_order = 1;
    char row[1024];
    while (f && fgets(row, sizeof row, f)) {
        long long s = 0;
        lines++;
        in_order &= sscanf(row, "{\"step\":%lld", &s) == 1 && s == lines;
    }
    if (f) fclose(f);
    CHECK_MSG(lines == 7 && in_order, "metrics.jsonl of the resumed run: %d lines (in order: %d)", lines, in_order);
    /* a damaged checkpoint is an error naming its file */
    snprintf(p, sizeof p, "%s/checkpoints/step-0000006/trainer_state.json", dt_path("run_b"));
    f = fopen(p, "w");
    if (f) fputs("{\"format_version\": 1, \"step\": 6}", f), fclose(f);
    c.max_steps = c.schedule.max_steps = 8;
    CHECK_STATUS(ctx, ld_clip_train(b, tok, &c, &pairs, NULL, 0, NULL, NULL, NULL), LD_ERR_FORMAT, "optimizer_steps");
    ld_clip_free(a), ld_clip_free(b);
    ld_clip_pairs_free(&pairs);
    ld_tokenizer_free(tok);
}

/* The index: write, read back, search (best first, exact cosines), and its bad inputs. */
TEST(index_and_search) {
    ld_ctx *ctx = test_ctx();
    float emb[4 * 3] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0.6f, 0.8f, 0};
    const char *names[4] = {"x.png", "y.png", "z.png", "xy.png"};
    const char *path = dt_path("t.index");
    CHECK_STATUS(ctx, ld_clip_index_write(ctx, path, "/models/m", emb, 4, 3, names), LD_OK, NULL);
    ld_clip_index *ix = NULL;
    CHECK_STATUS(ctx, ld_clip_index_open(ctx, path, &ix), LD_OK, NULL);
    CHECK(ld_clip_index_count(ix) == 4 && ld_clip_index_dim(ix) == 3 && !strcmp(ld_clip_index_model(ix), "/models/m"));
    CHECK(!strcmp(ld_clip_index_name(ix, 3), "xy.png"));
    float q[3] = {0, 1, 0}, sc[10];
    int64_t ids[10], found;
    CHECK(ld_clip_index_search(ix, q, 3, ids, sc, &found) == LD_OK);
    CHECK(found == 3 && ids[0] == 1 && ids[1] == 3 && fabsf(sc[1] - 0.8f) < 1e-6f && fabsf(sc[2]) < 1e-6f);
    CHECK(ld_clip_index_search(ix, q, 10, ids, sc, &found) == LD_OK && found == 4 && ids[3] == 2); /* k > n: all n */
    ld_clip_index_free(ix);
    /* bad files: each a variation of the good one */
    FILE *f = fopen(path, "rb");
    uint8_t good[256];
    size_t len = fread(good, 1, sizeof good, f);
    fclose(f);
    uint8_t bad[256];
    struct {
        int at, val;  /* byte to change (-1: none) */
        size_t len;   /* bytes given */
        ld_status expect;
        const char *msg;
    } cases[] = {
        {-1, 0, 10, LD_ERR_FORMAT, "not a liandan image-text index"},
        {0, 'X', 0, LD_ERR_FORMAT, "bad magic"},
        {8, 2, 0, LD_ERR_UNSUPPORTED, "index version 2"},
        {12, 0, 0, LD_ERR_FORMAT, "implausible header"},
        {-1, 0, 1, LD_ERR_FORMAT, "bytes, the header describes"},
        {16, 5, 0, LD_ERR_FORMAT, "the header describes"},
        {40 + 9 + 5, 'a', 0, LD_ERR_FORMAT, "names"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(bad, good, len);
        size_t n = cases[i].len == 1 ? len - 4 : cases[i].len ? cases[i].len : len;
        if (cases[i].at >= 0) bad[cases[i].at] = (uint8_t)cases[i].val;
        CHECK_STATUS(ctx, ld_clip_index_parse(ctx, bad, n, "bad.index", &ix), cases[i].expect, cases[i].msg);
    }
}

LD_TEST_MAIN()

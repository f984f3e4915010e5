/* tests/unit/test_encoder.c — the encoder (bert and esm variants) against an independent
 * double-precision forward pass written here from the kernels' double reference
 * instantiations:
 *   - the tape's MLM loss and logits equal the double forward's, with padded rows, token
 *     types (bert) and ESM-2's token dropout (esm);
 *   - the tape's gradients equal central finite differences of the double forward for every
 *     trainable parameter;
 *   - the CPU backend's forward equals the scalar reference backend's;
 *   - padding never leaks: a row's hidden states do not depend on its padding tokens;
 *   - pooling (cls, mean) equals the rows / averages it names;
 *   - a saved model directory loads back with identical logits, and config.json errors name
 *     the key. */
#include <unistd.h>

#include "kernels/ref/ref_f64.h"
#include "ld_test.h"
#include "models/encoder_internal.h"

enum { B = 2, T = 5, V = 23, C = 8, H = 2, I = 16 };
static const int32_t lengths[B] = {5, 3};

static ld_encoder_config tiny(ld_encoder_arch arch) {
    ld_encoder_config c = ld_encoder_default_config(arch);
    c.vocab_size = V, c.hidden_size = C, c.n_layers = 2, c.n_heads = H, c.intermediate_size = I;
    c.max_position = 16, c.dropout = 0.0f, c.init_std = 0.3f; /* large weights: every path matters */
    if (arch == LD_ENCODER_ESM) c.pad_token_id = 1, c.mask_token_id = 22;
    else c.type_vocab_size = 3, c.norm_eps = 1e-5f;
    return c;
}

static bool same_config(const ld_encoder_config *a, const ld_encoder_config *b) {
    return a->arch == b->arch && a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->n_layers == b->n_layers && a->n_heads == b->n_heads && a->intermediate_size == b->intermediate_size &&
           a->max_position == b->max_position && a->type_vocab_size == b->type_vocab_size &&
           a->norm_eps == b->norm_eps && a->rope_theta == b->rope_theta && a->init_std == b->init_std &&
           a->dropout == b->dropout && a->gelu_tanh == b->gelu_tanh && a->token_dropout == b->token_dropout &&
           a->pad_token_id == b->pad_token_id && a->mask_token_id == b->mask_token_id;
}

/* ---- the double-precision reference model ------------------------------------------- */

typedef struct dmodel {
    const ld_encoder *m;
    double *p[128]; /* double copies of the parameters, same order as ld_params_at */
    int n;
} dmodel;

static double *dp(dmodel *d, const ld_tensor *t) {
    for (int i = 0; i < d->n; i++)
        if (ld_params_at(d->m->params, i) == t) return d->p[i];
    return NULL;
}

/* y[M,N] = x[M,K] W^T + b, W [N,K] */
static void dlinear(double *y, const double *x, const double *w, const double *b, int64_t M, int64_t K, int64_t N) {
    for (int64_t r = 0; r < M; r++)
        for (int64_t j = 0; j < N; j++) {
            double s = b ? b[j] : 0;
            for (int64_t i = 0; i < K; i++) s += x[r * K + i] * w[j * K + i];
            y[r * N + j] = s;
        }
}

/* naive bidirectional attention over each row's real keys, q/k/v [B,T,H,D] */
static void dattention(double *out, const double *q, const double *k, const double *v, int64_t D) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < T; i++) {
                double s[T], mx = -1e300, sum = 0;
                for (int64_t j = 0; j < lengths[b]; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++) dot += q[((b * T + i) * H + h) * D + d] * k[((b * T + j) * H + h) * D + d];
                    s[j] = dot / sqrt((double)D);
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = 0; j < lengths[b]; j++) sum += (s[j] = exp(s[j] - mx));
                for (int64_t d = 0; d < D; d++) {
                    double o = 0;
                    for (int64_t j = 0; j < lengths[b]; j++) o += s[j] / sum * v[((b * T + j) * H + h) * D + d];
                    out[((b * T + i) * H + h) * D + d] = o;
                }
            }
}

static void dlayernorm(double *y, const double *x, dmodel *d, const ld_tensor *w, const ld_tensor *b, int64_t N) {
    double mean[B * T], rstd[B * T];
    ld_ref64_layernorm_fwd(y, mean, rstd, x, dp(d, w), dp(d, b), N, C, d->m->cfg.norm_eps);
}

/* The MLM loss (mean over targets != -100); logits_out [n_masked, V] in position order. */
static double dforward(dmodel *d, const int32_t *ids, const int32_t *types, const int32_t *targets,
                       double *logits_out, double *hidden_out) {
    const ld_encoder *m = d->m;
    const ld_encoder_config *c = &m->cfg;
    const int64_t N = B * T, D = C / H;
    bool esm = c->arch == LD_ENCODER_ESM;
    double x[B * T * C], h[B * T * C], q[B * T * C], k[B * T * C], v[B * T * C], a[B * T * C], o[B * T * C];
    double f1[B * T * I];
    ld_ref64_embedding_fwd(x, ids, dp(d, m->wte), N, C);
    if (esm) {
        for (int64_t b = 0; b < B; b++) {
            int masked = 0;
            for (int i = 0; i < lengths[b]; i++) masked += ids[b * T + i] == c->mask_token_id;
            double scale = c->token_dropout ? 0.88 / (1.0 - (double)masked / lengths[b]) : 1.0;
            for (int i = 0; i < T; i++) {
                bool drop = i >= lengths[b] || (c->token_dropout && ids[b * T + i] == c->mask_token_id);
                for (int j = 0; j < C; j++) x[(b * T + i) * C + j] *= drop ? 0.0 : scale;
            }
        }
    } else {
        for (int64_t r = 0; r < N; r++)
            for (int j = 0; j < C; j++)
                h[r * C + j] = x[r * C + j] + dp(d, m->wpe)[(r % T) * C + j] + dp(d, m->wtt)[(types ? types[r] : 0) * C + j];
        dlayernorm(x, h, d, m->emb_ln_w, m->emb_ln_b, N);
    }
    for (int l = 0; l < c->n_layers; l++) {
        const enc_layer *L = &m->layers[l];
        const double *in = x;
        if (esm) dlayernorm(h, x, d, L->ln1_w, L->ln1_b, N), in = h;
        dlinear(a, in, dp(d, L->q), dp(d, L->q_b), N, C, C);
        if (esm) ld_ref64_rope_fwd(q, a, B, T, H, D, 0, c->rope_theta);
        else memcpy(q, a, sizeof q);
        dlinear(a, in, dp(d, L->k), dp(d, L->k_b), N, C, C);
        if (esm) ld_ref64_rope_fwd(k, a, B, T, H, D, 0, c->rope_theta);
        else memcpy(k, a, sizeof k);
        dlinear(v, in, dp(d, L->v), dp(d, L->v_b), N, C, C);
        dattention(a, q, k, v, D);
        dlinear(o, a, dp(d, L->o), dp(d, L->o_b), N, C, C);
        for (int64_t i = 0; i < N * C; i++) o[i] += x[i];
        if (esm) memcpy(x, o, sizeof x), dlayernorm(h, x, d, L->ln2_w, L->ln2_b, N);
        else dlayernorm(x, o, d, L->ln1_w, L->ln1_b, N), memcpy(h, x, sizeof h);
        dlinear(f1, h, dp(d, L->up), dp(d, L->up_b), N, C, I);
        if (c->gelu_tanh) ld_ref64_gelu_fwd(f1, f1, N * I);
        else ld_ref64_gelu_erf_fwd(f1, f1, N * I);
        dlinear(o, f1, dp(d, L->down), dp(d, L->down_b), N, I, C);
        for (int64_t i = 0; i < N * C; i++) o[i] += x[i];
        if (esm) memcpy(x, o, sizeof x);
        else dlayernorm(x, o, d, L->ln2_w, L->ln2_b, N);
    }
    if (esm) dlayernorm(h, x, d, m->final_ln_w, m->final_ln_b, N), memcpy(x, h, sizeof x);
    if (hidden_out) memcpy(hidden_out, x, sizeof x);
    /* the head at the predicted positions */
    double g[B * T * C], z[B * T * C], lg[B * T * V], loss[B * T], lse[B * T], sum = 0;
    int32_t tg[B * T];
    int64_t n = 0;
    for (int64_t r = 0; r < N; r++)
        if (targets[r] != -100) memcpy(g + n * C, x + r * C, C * sizeof(double)), tg[n++] = targets[r];
    dlinear(h, g, dp(d, m->head_w), dp(d, m->head_b), n, C, C);
    if (c->gelu_tanh) ld_ref64_gelu_fwd(h, h, n * C);
    else ld_ref64_gelu_erf_fwd(h, h, n * C);
    double mean[B * T], rstd[B * T];
    ld_ref64_layernorm_fwd(z, mean, rstd, h, dp(d, m->head_ln_w), dp(d, m->head_ln_b), n, C, c->norm_eps);
    dlinear(lg, z, dp(d, m->wte), dp(d, m->head_bias), n, C, V);
    ld_ref64_xent_fwd(loss, lse, lg, tg, n, V, -100);
    for (int64_t r = 0; r < n; r++) sum += loss[r];
    if (logits_out) memcpy(logits_out, lg, (size_t)(n * V) * sizeof(double));
    return sum / (double)n;
}

/* Norms and biases away from their 1 / 0 init so every parameter shapes the output. */
static void perturb_vectors(ld_encoder *m) {
    ld_rng pr = ld_rng_init(77);
    for (int i = 0; i < ld_params_count(m->params); i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        if (t->ndim != 1) continue;
        for (int64_t j = 0; j < ld_tensor_numel(t); j++) ((float *)t->data)[j] += 0.2f * ld_rng_normal(&pr);
    }
}

static void make_batch(const ld_encoder_config *c, int32_t *ids, int32_t *types, int32_t *targets) {
    ld_rng r = ld_rng_init(5);
    for (int i = 0; i < B * T; i++) {
        ids[i] = 2 + (int32_t)ld_rng_below(&r, V - 3);
        types[i] = (int32_t)ld_rng_below(&r, 3);
        targets[i] = -100;
    }
    for (int b = 0; b < B; b++)
        for (int i = lengths[b]; i < T; i++) ids[b * T + i] = c->pad_token_id;
    /* predicted positions, some of them shown as the mask token (esm's token dropout) */
    int at[] = {1, 3, 4, T + 0, T + 2};
    for (int j = 0; j < 5; j++) {
        targets[at[j]] = (int32_t)ld_rng_below(&r, V);
        if (j % 2 == 0 && c->mask_token_id >= 0) ids[at[j]] = c->mask_token_id;
    }
}

static void check_model(ld_encoder_arch arch, bool gelu_tanh) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_encoder_config cfg = tiny(arch);
    cfg.gelu_tanh = gelu_tanh;
    ld_encoder *m = NULL;
    CHECK(ld_encoder_new(ctx, &cfg, 1234, &m) == LD_OK);
    if (!m) return;
    perturb_vectors(m);
    CHECK(ld_params_numel(m->params, false) == ld_encoder_config_num_params(&cfg));
    int32_t ids[B * T], types[B * T], targets[B * T];
    make_batch(&cfg, ids, types, targets);
    const int32_t *ty = arch == LD_ENCODER_BERT ? types : NULL;

    ld_tape *tape = NULL;
    CHECK(ld_tape_new(ctx, &tape) == LD_OK);
    ld_tensor *hidden = NULL, *logits = NULL, *loss = NULL;
    int64_t counted = 0;
    /* bert with token types goes through forward + head; the loss helper covers type-less input.
     * pos and tg must outlive the backward pass. */
    int32_t pos[B * T], tg[B * T];
    if (ty) {
        int64_t n = 0;
        for (int i = 0; i < B * T; i++)
            if (targets[i] != -100) pos[n] = i, tg[n++] = targets[i];
        CHECK(ld_encoder_forward(m, tape, ids, ty, lengths, B, T, &hidden) == LD_OK);
        CHECK(ld_encoder_mlm_logits(m, tape, hidden, pos, n, &logits) == LD_OK);
        CHECK(ld_op_cross_entropy(tape, logits, tg, -100, &loss, &counted) == LD_OK);
    } else {
        CHECK(ld_encoder_mlm_loss(m, tape, ids, lengths, targets, B, T, &loss, &counted, &logits) == LD_OK);
    }
    CHECK(counted == 5);
    CHECK(loss && ld_tape_backward(tape, loss) == LD_OK);
    if (!loss) return;

    dmodel d = {.m = m, .n = ld_params_count(m->params)};
    for (int i = 0; i < d.n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        int64_t n = ld_tensor_numel(t);
        d.p[i] = malloc((size_t)n * sizeof(double));
        for (int64_t j = 0; j < n; j++) d.p[i][j] = ((float *)t->data)[j];
    }
    double dlogits[B * T * V];
    double ref_loss = dforward(&d, ids, ty, targets, dlogits, NULL);
    CHECK_NEAR(((float *)loss->data)[0], ref_loss, 1e-5 * fabs(ref_loss));
    double max_logit_err = 0;
    for (int i = 0; i < 5 * V; i++) {
        double e = fabs(((float *)logits->data)[i] - dlogits[i]);
        if (e > max_logit_err) max_logit_err = e;
    }
    CHECK_MSG(max_logit_err < 1e-4, "max logit error %g", max_logit_err);

    /* finite differences in double on every trainable parameter, a few elements each */
    ld_rng r = ld_rng_init(9);
    double worst = 0;
    for (int i = 0; i < d.n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        if (!(t->flags & LD_TENSOR_TRAINABLE)) continue;
        int64_t n = ld_tensor_numel(t);
        for (int s = 0; s < 4; s++) {
            int64_t j = (int64_t)ld_rng_below(&r, (uint64_t)n);
            double keep = d.p[i][j], eps = 1e-5;
            d.p[i][j] = keep + eps;
            double lp = dforward(&d, ids, ty, targets, dlogits, NULL);
            d.p[i][j] = keep - eps;
            double lm = dforward(&d, ids, ty, targets, dlogits, NULL);
            d.p[i][j] = keep;
            double fd = (lp - lm) / (2 * eps), g = ((float *)t->grad->data)[j];
            double err = fabs(fd - g) / (fabs(fd) + 1e-3);
            if (err > worst) worst = err;
            CHECK_MSG(err < 2e-3, "%s[%lld]: tape %.8g vs finite difference %.8g", t->name, (long long)j, g, fd);
        }
    }
    printf("  %s%s: loss %.6f, max logit err %.2g, worst grad rel err %.2g\n", arch == LD_ENCODER_ESM ? "esm" : "bert",
           gelu_tanh ? " (gelu_new)" : "", ref_loss, max_logit_err, worst);

    /* the CPU backend's forward equals the scalar reference backend's */
    ld_tape *rt = NULL;
    CHECK(ld_tape_new(ctx, &rt) == LD_OK);
    ld_tape_set_kernels(rt, ld_kernels_get(LD_BACKEND_REF));
    ld_tape_set_grad_enabled(rt, false);
    ld_tape_set_grad_enabled(tape, false);
    ld_tape_reset(tape);
    ld_tensor *h_cpu = NULL, *h_ref = NULL;
    CHECK(ld_encoder_forward(m, tape, ids, ty, lengths, B, T, &h_cpu) == LD_OK);
    CHECK(ld_encoder_forward(m, rt, ids, ty, lengths, B, T, &h_ref) == LD_OK);
    double href[B * T * C];
    dforward(&d, ids, ty, targets, dlogits, href);
    double e_cpu = 0, e_ref = 0;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < lengths[b] * C; i++) {
            int k = b * T * C + i;
            e_cpu = fmax(e_cpu, fabs(((float *)h_cpu->data)[k] - ((float *)h_ref->data)[k]));
            e_ref = fmax(e_ref, fabs(((float *)h_ref->data)[k] - href[k]));
        }
    CHECK_MSG(e_cpu < 1e-4, "cpu vs ref backend hidden states differ by %g", e_cpu);
    CHECK_MSG(e_ref < 1e-4, "ref backend vs double model hidden states differ by %g", e_ref);

    /* padding never leaks into real positions */
    int32_t ids2[B * T];
    memcpy(ids2, ids, sizeof ids2);
    ids2[T + 3] = 7, ids2[T + 4] = 9;
    ld_tensor *h2 = NULL;
    CHECK(ld_encoder_forward(m, tape, ids2, ty, lengths, B, T, &h2) == LD_OK);
    CHECK(h2 && memcmp(h2->data, h_cpu->data, (size_t)(T * C) * sizeof(float)) == 0 &&
          memcmp((float *)h2->data + T * C, (float *)h_cpu->data + T * C, (size_t)(3 * C) * sizeof(float)) == 0);

    /* pooling: cls = position 0, mean = the average of the real positions */
    ld_tensor *pc = NULL, *pm = NULL;
    CHECK(ld_encoder_pool(m, tape, h_cpu, lengths, LD_POOL_CLS, &pc) == LD_OK);
    CHECK(ld_encoder_pool(m, tape, h_cpu, lengths, LD_POOL_MEAN, &pm) == LD_OK);
    for (int b = 0; pc && pm && b < B; b++)
        for (int j = 0; j < C; j++) {
            double mean = 0;
            for (int i = 0; i < lengths[b]; i++) mean += ((float *)h_cpu->data)[(b * T + i) * C + j];
            CHECK_NEAR(((float *)pc->data)[b * C + j], ((float *)h_cpu->data)[b * T * C + j], 0);
            CHECK_NEAR(((float *)pm->data)[b * C + j], mean / lengths[b], 1e-5);
        }

    for (int i = 0; i < d.n; i++) free(d.p[i]);
    ld_tape_free(rt);
    ld_tape_free(tape);
    ld_encoder_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(bert_matches_double_reference_and_finite_differences) {
    check_model(LD_ENCODER_BERT, false);
}

TEST(bert_gelu_new_matches_double_reference) {
    check_model(LD_ENCODER_BERT, true);
}

TEST(esm_matches_double_reference_and_finite_differences) {
    check_model(LD_ENCODER_ESM, false);
}

/* a model directory round trip: same config, same logits bit for bit */
static void round_trip(ld_encoder_arch arch) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_encoder_config cfg = tiny(arch);
    ld_encoder *m = NULL, *m2 = NULL;
    CHECK(ld_encoder_new(ctx, &cfg, 7, &m) == LD_OK);
    perturb_vectors(m);
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/ld_test_encoder_%d_%d", (int)arch, (int)getpid());
    CHECK(ld_encoder_save(m, dir) == LD_OK);
    CHECK(ld_encoder_dir_sniff(dir));
    CHECK(ld_encoder_load(ctx, dir, &m2) == LD_OK);
    if (m2) {
        CHECK(same_config(&m->cfg, &m2->cfg));
        int32_t ids[B * T], types[B * T], targets[B * T];
        make_batch(&cfg, ids, types, targets);
        ld_tape *t = NULL;
        ld_tape_new(ctx, &t);
        ld_tape_set_grad_enabled(t, false);
        ld_tensor *l1 = NULL, *l2 = NULL, *loss = NULL;
        CHECK(ld_encoder_mlm_loss(m, t, ids, lengths, targets, B, T, &loss, NULL, &l1) == LD_OK);
        CHECK(ld_encoder_mlm_loss(m2, t, ids, lengths, targets, B, T, &loss, NULL, &l2) == LD_OK);
        CHECK(l1 && l2 && memcmp(l1->data, l2->data, ld_tensor_nbytes(l1)) == 0);
        ld_tape_free(t);
    }
    /* the names HF expects */
    ld_safetensors *st = NULL;
    char path[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK(ld_safetensors_open(ctx, path, &st) == LD_OK);
    if (st) {
        if (arch == LD_ENCODER_ESM) {
            CHECK(ld_safetensors_find(st, "esm.encoder.layer.1.attention.self.rotary_embeddings.inv_freq"));
            CHECK(ld_safetensors_find(st, "esm.encoder.layer.0.attention.LayerNorm.weight"));
            CHECK(ld_safetensors_find(st, "lm_head.dense.weight"));
            CHECK(ld_safetensors_find(st, "esm.contact_head.regression.weight"));
        } else {
            CHECK(ld_safetensors_find(st, "bert.encoder.layer.1.output.LayerNorm.bias"));
            CHECK(ld_safetensors_find(st, "bert.embeddings.token_type_embeddings.weight"));
            CHECK(ld_safetensors_find(st, "cls.predictions.transform.LayerNorm.weight"));
            CHECK(ld_safetensors_find(st, "cls.predictions.bias"));
        }
        CHECK(!ld_safetensors_find(st, "lm_head.decoder.weight") && !ld_safetensors_find(st, "cls.predictions.decoder.weight"));
        ld_safetensors_close(st);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    ld_encoder_free(m);
    ld_encoder_free(m2);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(bert_directory_round_trip_gives_identical_logits) {
    round_trip(LD_ENCODER_BERT);
}

TEST(esm_directory_round_trip_gives_identical_logits) {
    round_trip(LD_ENCODER_ESM);
}

/* Issue 10.2 for encoders: a config.json asking for more than the safetensors hold allocated
 * and randomly initialised the whole model before the first missing or misshapen tensor (case
 * 0 peaked at 1.4 GB and took 2 minutes here); names and shapes are checked first now. */
static void larger_config_fails_before_allocating(ld_encoder_arch arch) {
    ld_test_mem mem = {0};
    ld_allocator a = ld_test_mem_allocator(&mem);
    ld_ctx_params cp = ld_ctx_default_params();
    cp.allocator = &a;
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(&cp, &ctx) == LD_OK);
    ld_encoder_config cfg = tiny(arch);
    ld_encoder *m = NULL, *m2 = NULL;
    CHECK(ld_encoder_new(ctx, &cfg, 7, &m) == LD_OK);
    char dir[128], path[160];
    snprintf(dir, sizeof dir, "/tmp/ld_test_encoder_big_%d_%d", (int)arch, (int)getpid());
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(ld_encoder_save(m, dir) == LD_OK);
    ld_encoder_free(m);
    static const struct {
        int64_t hidden, inter, layers, heads;
        ld_status st;
        const char *msg;
    } cases[] = {
        {1024, 4096, 8, 16, LD_ERR_SHAPE, "the config needs [" /* V, 1024] */},
        {C, I, 400, H, LD_ERR_NOT_FOUND, "encoder.layer.2." /* ... is missing */},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ld_encoder_config big = cfg;
        big.hidden_size = cases[k].hidden, big.intermediate_size = cases[k].inter;
        big.n_layers = cases[k].layers, big.n_heads = cases[k].heads;
        char *js = ld_encoder_config_to_json(&big);
        CHECK(js && ld_file_write_atomic(ctx, path, js, strlen(js)) == LD_OK);
        free(js);
        size_t before = mem.peak = mem.held;
        CHECK_STATUS(ctx, ld_encoder_load(ctx, dir, &m2), cases[k].st, cases[k].msg);
        CHECK(m2 == NULL);
        CHECK_MSG(mem.peak - before < ((size_t)1 << 20), "case %zu: peak %zu bytes before the error", k, mem.peak - before);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(a_config_larger_than_its_weights_fails_before_allocating) {
    larger_config_fails_before_allocating(LD_ENCODER_BERT);
    larger_config_fails_before_allocating(LD_ENCODER_ESM);
}

TEST(config_json_bad_inputs_name_the_key) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const struct {
        const char *json;
        ld_status st;
        const char *msg;
    } cases[] = {
        {"{\"model_type\":\"gpt2\"}", LD_ERR_UNSUPPORTED, "not an encoder"},
        {"{\"vocab_size\":5}", LD_ERR_FORMAT, "model_type"},
        {"{\"model_type\":\"bert\",\"hidden_size\":8}", LD_ERR_FORMAT, "vocab_size"},
        {"{\"model_type\":\"bert\",\"vocab_size\":9,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":3,"
         "\"intermediate_size\":4,\"max_position_embeddings\":8}",
         LD_ERR_INVALID_ARG, "not divisible"},
        {"{\"model_type\":\"bert\",\"vocab_size\":9,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":4,\"max_position_embeddings\":8,\"hidden_act\":\"relu\"}",
         LD_ERR_UNSUPPORTED, "hidden_act 'relu'"},
        {"{\"model_type\":\"bert\",\"vocab_size\":9,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":4,\"max_position_embeddings\":8,\"position_embedding_type\":\"relative_key\"}",
         LD_ERR_UNSUPPORTED, "position_embedding_type"},
        {"{\"model_type\":\"esm\",\"vocab_size\":33,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":4,\"max_position_embeddings\":8,\"position_embedding_type\":\"absolute\"}",
         LD_ERR_UNSUPPORTED, "rotary"},
        {"{\"model_type\":\"esm\",\"vocab_size\":33,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":4,\"max_position_embeddings\":8,\"position_embedding_type\":\"rotary\","
         "\"emb_layer_norm_before\":true}",
         LD_ERR_UNSUPPORTED, "ESM-1b"},
        {"{\"model_type\":\"esm\",\"vocab_size\":33,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
         "\"intermediate_size\":4,\"max_position_embeddings\":8,\"position_embedding_type\":\"rotary\","
         "\"token_dropout\":true,\"mask_token_id\":40}",
         LD_ERR_INVALID_ARG, "mask_token_id"},
        {"{\"model_type\":\"bert\",\"vocab_size\":\"x\"}", LD_ERR_FORMAT, "vocab_size"},
        {"{\"model_type\":\"bert\",", LD_ERR_FORMAT, NULL},
        {"[1]", LD_ERR_FORMAT, "object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ld_encoder_config c;
        CHECK_STATUS(ctx, ld_encoder_config_from_json(ctx, cases[i].json, strlen(cases[i].json), "config.json", &c),
                     cases[i].st, cases[i].msg);
    }
    /* what we write parses back to the same config */
    for (int a = 0; a < 2; a++) {
        ld_encoder_config c = tiny((ld_encoder_arch)a), back;
        c.mask_token_id = 20;
        char *s = ld_encoder_config_to_json(&c);
        CHECK(s && ld_encoder_config_from_json(ctx, s, strlen(s), "config.json", &back) == LD_OK);
        CHECK(same_config(&c, &back));
        free(s);
    }
    ld_ctx_free(ctx);
}

TEST(forward_rejects_bad_inputs) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_encoder_config cfg = tiny(LD_ENCODER_BERT);
    ld_encoder *m = NULL;
    ld_encoder_new(ctx, &cfg, 1, &m);
    ld_tape *t = NULL;
    ld_tape_new(ctx, &t);
    int32_t ids[B * T] = {0}, types[B * T] = {0}, bad_len[B] = {0, 3}, targets[B * T];
    for (int i = 0; i < B * T; i++) targets[i] = -100;
    ld_tensor *h = NULL, *loss = NULL;
    CHECK_STATUS(ctx, ld_encoder_forward(m, t, ids, NULL, bad_len, B, T, &h), LD_ERR_INVALID_ARG, "length 0");
    CHECK_STATUS(ctx, ld_encoder_forward(m, t, ids, NULL, NULL, B, 17, &h), LD_ERR_SHAPE, "max_position");
    types[3] = 3;
    CHECK_STATUS(ctx, ld_encoder_forward(m, t, ids, types, NULL, B, T, &h), LD_ERR_INVALID_ARG, "token type 3");
    ids[4] = V;
    CHECK_STATUS(ctx, ld_encoder_forward(m, t, ids, NULL, NULL, B, T, &h), LD_ERR_INVALID_ARG, "id 23");
    ids[4] = 0;
    CHECK_STATUS(ctx, ld_encoder_mlm_loss(m, t, ids, NULL, targets, B, T, &loss, NULL, NULL), LD_ERR_INVALID_ARG,
                 "no position");
    ld_tape_free(t);
    ld_encoder_free(m);
    ld_ctx_free(ctx);
}

/* ld_encoder_embed_layers / _hidden_layers: the last layer is exactly what ld_encoder_embed /
 * ld_encoder_hidden give; layer 0 is the embeddings (recomputed here: esm's scaled word
 * vectors, bert's LayerNorm of word + position + type 0); every layer's per-token states
 * average (mean pooling) and pick (cls) to the pooled rows; the selection's columns are in
 * layer order; nothing stays tapped afterwards; bad selections are refused. */
/* m = max(m, d), skipping NaN as fmax does: written as a comparison because gcc 12's aarch64
 * vectorizer crashes on fmax reductions (ICE in vect_transform_reduction; make test-arm). */
#define KEEP_MAX(m, d)                                                                                 \
    do {                                                                                               \
        const double d_ = (d);                                                                         \
        if (d_ > (m)) (m) = d_;                                                                        \
    } while (0)

static void check_layers(ld_encoder_arch arch) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_encoder_config cfg = tiny(arch);
    ld_encoder *m = NULL;
    CHECK(ld_encoder_new(ctx, &cfg, 99, &m) == LD_OK);
    if (!m) return;
    perturb_vectors(m);
    enum { L = 2, K = L + 1 };
    const int32_t r0[T] = {2, 5, 9, 14, 3}, r1[3] = {2, 7, 20};
    const int32_t *seqs[B] = {r0, r1};
    const int64_t lens[B] = {T, 3};
    uint64_t all = (1u << K) - 1;
    float last[B * C], pooled[B * K * C], cls[B * K * C], tok[T * K * C], hid[T * C];
    for (int mode = 0; mode < 2; mode++) {
        ld_pooling pm = mode ? LD_POOL_MEAN : LD_POOL_CLS;
        CHECK(ld_encoder_embed(m, seqs, lens, B, pm, false, last) == LD_OK);
        CHECK(ld_encoder_embed_layers(m, seqs, lens, B, pm, 1u << L, pooled) == LD_OK);
        CHECK(memcmp(last, pooled, sizeof last) == 0);
        CHECK(ld_encoder_embed_layers(m, seqs, lens, B, pm, all, mode ? pooled : cls) == LD_OK);
    }
    for (int b = 0; b < B; b++) {
        CHECK(ld_encoder_hidden_layers(m, seqs[b], lens[b], all, tok) == LD_OK);
        CHECK(ld_encoder_hidden(m, seqs[b], lens[b], hid) == LD_OK);
        double err = 0, err0 = 0, diff01 = 0;
        for (int64_t i = 0; i < lens[b]; i++)
            for (int j = 0; j < C; j++) KEEP_MAX(err, fabs(tok[(i * K + L) * C + j] - hid[i * C + j]));
        for (int l = 0; l < K; l++)
            for (int j = 0; j < C; j++) {
                double mean = 0;
                for (int64_t i = 0; i < lens[b]; i++) mean += tok[(i * K + l) * C + j] / (double)lens[b];
                KEEP_MAX(err, fabs(mean - pooled[(b * K + l) * C + j]));
                KEEP_MAX(err, fabs(tok[l * C + j] - cls[(b * K + l) * C + j]));
                if (l == 1) KEEP_MAX(diff01, fabs(pooled[(b * K + 1) * C + j] - pooled[(b * K) * C + j]));
            }
        /* layer 0 by hand */
        const float *wte = m->wte->data;
        for (int64_t i = 0; i < lens[b]; i++) {
            double e[C], mu = 0, var = 0;
            for (int j = 0; j < C; j++) {
                e[j] = wte[seqs[b][i] * C + j];
                if (arch == LD_ENCODER_BERT)
                    e[j] += ((const float *)m->wpe->data)[i * C + j] + ((const float *)m->wtt->data)[j];
                else if (cfg.token_dropout) e[j] *= 1.0 - 0.15 * 0.8;
                mu += e[j] / C;
            }
            for (int j = 0; arch == LD_ENCODER_BERT && j < C; j++) var += (e[j] - mu) * (e[j] - mu) / C;
            for (int j = 0; j < C; j++) {
                double want = e[j];
                if (arch == LD_ENCODER_BERT)
                    want = (e[j] - mu) / sqrt(var + cfg.norm_eps) * ((const float *)m->emb_ln_w->data)[j] +
                           ((const float *)m->emb_ln_b->data)[j];
                KEEP_MAX(err0, fabs(tok[(i * K) * C + j] - want));
            }
        }
        CHECK_MSG(err < 1e-5, "row %d: layer states and pooled rows differ by %g", b, err);
        CHECK_MSG(err0 < 1e-5, "row %d: layer 0 differs from the embeddings by %g", b, err0);
        CHECK_MSG(diff01 > 1e-3, "row %d: layers 0 and 1 are the same vector", b);
    }
    /* a selection is its layers' columns of the full one, in layer order */
    float two[B * 2 * C];
    CHECK(ld_encoder_embed_layers(m, seqs, lens, B, LD_POOL_MEAN, 1u | 1u << L, two) == LD_OK);
    for (int b = 0; b < B; b++) {
        CHECK(memcmp(two + b * 2 * C, pooled + b * K * C, C * sizeof(float)) == 0);
        CHECK(memcmp(two + (b * 2 + 1) * C, pooled + (b * K + L) * C, C * sizeof(float)) == 0);
    }
    CHECK(m->taps == NULL);
    CHECK_STATUS(ctx, ld_encoder_embed_layers(m, seqs, lens, B, LD_POOL_MEAN, 0, pooled), LD_ERR_INVALID_ARG, "no layer");
    CHECK_STATUS(ctx, ld_encoder_embed_layers(m, seqs, lens, B, LD_POOL_MEAN, 1u << K, pooled), LD_ERR_INVALID_ARG,
                 "layer 3 chosen, the model has layers 0..2");
    CHECK_STATUS(ctx, ld_encoder_hidden_layers(m, r0, T, 1u << 5, tok), LD_ERR_INVALID_ARG, "layer 5");
    ld_encoder_free(m);
    ld_ctx_free(ctx);
}

TEST(bert_layers_are_the_embeddings_the_blocks_and_the_final_states) { check_layers(LD_ENCODER_BERT); }
TEST(esm_layers_are_the_embeddings_the_blocks_and_the_final_states) { check_layers(LD_ENCODER_ESM); }

LD_TEST_MAIN()

/* tests/unit/test_moe.c — the mixture-of-experts block (nn/ops_moe.c) and the Mixtral family:
 *   - the router's gates (renormalised or not, k = 1, 2), the dispatch, the per-expert
 *     products, the combine and both router losses against central finite differences;
 *   - the block equals a per-token double-precision computation of the same experts;
 *   - choices over an expert's capacity are dropped, counted, and add nothing;
 *   - a Mixtral model: the KV-cached session equals the training forward, a decode step reads
 *     the weights of only the chosen experts, config.json / model directory / GGUF round trips
 *     give the same logits, the routers' losses join the training loss, and broken configs
 *     and files get errors naming what is wrong. */
#include <sys/stat.h>
#include <unistd.h>

#include "core/comm.h"
#include "ld_test.h"
#include "liandan/infer.h"
#include "models/causal_lm_internal.h"
#include "train/ckpt_tensors.h"

/* ---- the block on its own ----------------------------------------------------------- */

enum { M_ = 7, C_ = 4, E_ = 4, I_ = 3 };

typedef struct block {
    ld_params *p;
    ld_tensor *x, *wr, *wg[E_], *wu[E_], *wd[E_];
    float r[M_ * C_]; /* the projection the loss takes of the output */
} block;

static void block_new(ld_ctx *ctx, block *b, uint64_t seed) {
    memset(b, 0, sizeof *b);
    CHECK(ld_params_new(ctx, &b->p) == LD_OK);
    char name[32];
    ld_params_add(b->p, "x", 2, (int64_t[]){M_, C_}, true, &b->x);
    ld_params_add(b->p, "router", 2, (int64_t[]){E_, C_}, true, &b->wr);
    for (int e = 0; e < E_; e++) {
        snprintf(name, sizeof name, "g%d", e), ld_params_add(b->p, name, 2, (int64_t[]){I_, C_}, true, &b->wg[e]);
        snprintf(name, sizeof name, "u%d", e), ld_params_add(b->p, name, 2, (int64_t[]){I_, C_}, true, &b->wu[e]);
        snprintf(name, sizeof name, "d%d", e), ld_params_add(b->p, name, 2, (int64_t[]){C_, I_}, true, &b->wd[e]);
    }
    ld_rng rng = ld_rng_init(seed);
    for (int i = 0; i < ld_params_count(b->p); i++) {
        ld_tensor *t = ld_params_at(b->p, i);
        float *v = t->data;
        for (int64_t j = 0; j < ld_tensor_numel(t); j++) v[j] = (t == b->wr ? 1.5f : 0.8f) * ld_rng_normal(&rng);
    }
    for (int i = 0; i < M_ * C_; i++) b->r[i] = ld_rng_normal(&rng);
}

/* L = r . moe(x) + wa aux + wz z; *route receives the route (its arrays on t). */
static double block_loss(ld_tape *t, block *b, const ld_moe_route_opts *o, float wa, float wz, bool backward,
                         ld_moe_route *route, ld_tensor **y_out) {
    ld_tape_reset(t);
    ld_tensor *logits, *gates, *xs, *g, *u, *a, *ys, *y, *aux, *z;
    ld_moe_route r;
    CHECK(ld_op_linear(t, b->x, b->wr, NULL, false, &logits) == LD_OK);
    CHECK(ld_op_moe_route(t, logits, o, &gates, &r) == LD_OK);
    CHECK(ld_op_moe_dispatch(t, b->x, &r, &xs) == LD_OK);
    CHECK(ld_op_moe_linear(t, xs, &r, b->wg, &g) == LD_OK);
    CHECK(ld_op_moe_linear(t, xs, &r, b->wu, &u) == LD_OK);
    CHECK(ld_op_swiglu(t, g, u, &a) == LD_OK);
    CHECK(ld_op_moe_linear(t, a, &r, b->wd, &ys) == LD_OK);
    CHECK(ld_op_moe_combine(t, ys, gates, &r, &y) == LD_OK);
    CHECK(ld_op_moe_aux_loss(t, logits, &r, &aux) == LD_OK);
    CHECK(ld_op_moe_z_loss(t, logits, &z) == LD_OK);
    /* the projection as ops, so backward runs through it: sum(r * y) via a [1, MC] x [MC] product */
    ld_tensor *rt, *flat, *proj, *sa, *sz, *loss;
    ld_tape_tensor(t, 2, (int64_t[]){1, M_ * C_}, &rt);
    memcpy(rt->data, b->r, sizeof b->r);
    CHECK(ld_op_reshape(t, y, 2, (int64_t[]){1, M_ * C_}, &flat) == LD_OK);
    CHECK(ld_op_linear(t, flat, rt, NULL, false, &proj) == LD_OK); /* [1, 1] */
    CHECK(ld_op_reshape(t, proj, 1, (int64_t[]){1}, &proj) == LD_OK);
    CHECK(ld_op_scale(t, aux, wa, &sa) == LD_OK && ld_op_scale(t, z, wz, &sz) == LD_OK);
    CHECK(ld_op_add(t, proj, sa, &loss) == LD_OK && ld_op_add(t, loss, sz, &loss) == LD_OK);
    if (backward) CHECK(ld_tape_backward(t, loss) == LD_OK);
    if (route) *route = r;
    if (y_out) *y_out = y;
    return ((float *)loss->data)[0];
}

static bool same_choices(const ld_moe_route *a, const int32_t *expert, const int32_t *row) {
    return !memcmp(a->expert, expert, sizeof(int32_t) * (size_t)(a->M * a->k)) &&
           !memcmp(a->row, row, sizeof(int32_t) * (size_t)(a->M * a->k));
}

TEST(moe_gradients_match_finite_differences) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    const struct {
        int64_t k;
        bool norm;
        float cap;
    } cases[] = {{1, false, 0}, {2, true, 0}, {2, false, 0}, {1, false, 1.0f}, {2, true, 0.75f}};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        block b;
        block_new(ctx, &b, 100 + ci);
        ld_tape *t = NULL;
        CHECK(ld_tape_new(ctx, &t) == LD_OK);
        const ld_moe_route_opts o = {cases[ci].k, cases[ci].norm, cases[ci].cap};
        ld_moe_route r;
        ld_params_zero_grad(b.p);
        block_loss(t, &b, &o, 0.7f, 0.3f, true, &r, NULL);
        int32_t expert[M_ * 2], row[M_ * 2];
        memcpy(expert, r.expert, sizeof(int32_t) * (size_t)(M_ * o.k));
        memcpy(row, r.row, sizeof(int32_t) * (size_t)(M_ * o.k));
        if (cases[ci].cap > 0) CHECK_MSG(r.dropped > 0, "case %zu: the capacity should drop some choices", ci);
        double worst = 0;
        int checked = 0, skipped = 0;
        for (int i = 0; i < ld_params_count(b.p); i++) {
            ld_tensor *q = ld_params_at(b.p, i);
            float *v = q->data, *g = q->grad->data;
            for (int64_t j = 0; j < ld_tensor_numel(q); j++) {
                float keep = v[j], eps = 1e-2f;
                ld_moe_route rp, rm;
                v[j] = keep + eps;
                double lp = block_loss(t, &b, &o, 0.7f, 0.3f, false, &rp, NULL);
                bool same = same_choices(&rp, expert, row);
                v[j] = keep - eps;
                double lm = block_loss(t, &b, &o, 0.7f, 0.3f, false, &rm, NULL);
                same &= same_choices(&rm, expert, row);
                v[j] = keep;
                if (!same) { /* the step changed a routing decision: no derivative there */
                    skipped++;
                    continue;
                }
                double num = (lp - lm) / (2 * eps);
                worst = fmax(worst, fabs(g[j] - num) - 2e-2 * fabs(num));
                checked++;
            }
        }
        CHECK_MSG(worst <= 3e-3, "case %zu (k %lld, %s, capacity %g): gradient error %.3g", ci, (long long)o.k,
                  o.norm_topk ? "renormalised" : "softmax gates", o.capacity_factor, worst);
        CHECK_MSG(skipped * 10 < checked, "case %zu: %d of %d elements changed the routing", ci, skipped, checked + skipped);
        ld_tape_free(t);
        ld_params_free(b.p);
    }
    ld_ctx_free(ctx);
}

TEST(sigmoid_gate_gradients_match_finite_differences) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_params *p = NULL;
    ld_tensor *x, *sg;
    CHECK(ld_params_new(ctx, &p) == LD_OK);
    ld_params_add(p, "x", 2, (int64_t[]){5, 3}, true, &x);
    ld_params_add(p, "s", 2, (int64_t[]){5, 1}, true, &sg);
    ld_rng rng = ld_rng_init(4);
    for (int i = 0; i < 2; i++) {
        ld_tensor *q = ld_params_at(p, i);
        for (int64_t j = 0; j < ld_tensor_numel(q); j++) ((float *)q->data)[j] = 1.5f * ld_rng_normal(&rng);
    }
    float r[15];
    for (int i = 0; i < 15; i++) r[i] = ld_rng_normal(&rng);
    ld_tape *t = NULL;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    double worst = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 2; i++) {
            ld_tensor *q = ld_params_at(p, i);
            for (int64_t j = 0; j < ld_tensor_numel(q) && (pass == 1 || (i == 0 && j == 0)); j++) {
                float *v = q->data, keep = v[j];
                double l[2];
                for (int sgn = 0; sgn < (pass ? 2 : 1); sgn++) {
                    if (pass) v[j] = keep + (sgn ? -1e-2f : 1e-2f);
                    ld_tape_reset(t);
                    ld_tensor *y;
                    CHECK(ld_op_sigmoid_gate(t, x, sg, &y) == LD_OK);
                    l[sgn] = 0;
                    for (int k = 0; k < 15; k++) l[sgn] += r[k] * ((float *)y->data)[k];
                    if (!pass) { /* backward of sum r y: seed y's gradient with r through a linear */
                        ld_tensor *rt, *flat, *loss;
                        ld_tape_tensor(t, 2, (int64_t[]){1, 15}, &rt);
                        memcpy(rt->data, r, sizeof r);
                        CHECK(ld_op_reshape(t, y, 2, (int64_t[]){1, 15}, &flat) == LD_OK);
                        CHECK(ld_op_linear(t, flat, rt, NULL, false, &loss) == LD_OK);
                        CHECK(ld_op_reshape(t, loss, 1, (int64_t[]){1}, &loss) == LD_OK);
                        ld_params_zero_grad(p);
                        CHECK(ld_tape_backward(t, loss) == LD_OK);
                    }
                }
                if (pass) {
                    v[j] = keep;
                    double num = (l[0] - l[1]) / 2e-2;
                    worst = fmax(worst, fabs(((float *)q->grad->data)[j] - num) - 1e-2 * fabs(num));
                }
            }
        }
    CHECK_MSG(worst <= 2e-3, "sigmoid gate: gradient error %.3g", worst);
    ld_tensor *bad;
    ld_params_add(p, "bad", 2, (int64_t[]){5, 2}, true, &bad);
    CHECK_STATUS(ctx, ld_op_sigmoid_gate(t, x, bad, &bad), LD_ERR_SHAPE, "one value per row");
    ld_tape_free(t);
    ld_params_free(p);
    ld_ctx_free(ctx);
}

static double silu(double v) {
    return v / (1 + exp(-v));
}

TEST(moe_block_equals_per_token_experts) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (int64_t k = 1; k <= 2; k++)
        for (int norm = 0; norm < 2; norm++) {
            block b;
            block_new(ctx, &b, 7 + (uint64_t)k);
            ld_tape *t = NULL;
            CHECK(ld_tape_new(ctx, &t) == LD_OK);
            ld_tape_set_grad_enabled(t, false);
            const ld_moe_route_opts o = {k, norm, 0};
            ld_tensor *y;
            ld_moe_route r;
            block_loss(t, &b, &o, 0, 0, false, &r, &y);
            double worst = 0;
            const float *x = b.x->data;
            for (int m = 0; m < M_; m++) {
                double p[E_], mx = -1e30, s = 0;
                for (int e = 0; e < E_; e++) {
                    p[e] = 0;
                    for (int c = 0; c < C_; c++) p[e] += (double)x[m * C_ + c] * ((float *)b.wr->data)[e * C_ + c];
                    mx = fmax(mx, p[e]);
                }
                for (int e = 0; e < E_; e++) s += (p[e] = exp(p[e] - mx));
                for (int e = 0; e < E_; e++) p[e] /= s;
                int pick[2] = {-1, -1};
                double wsum = 0;
                for (int j = 0; j < k; j++) {
                    for (int e = 0; e < E_; e++)
                        if (e != pick[0] && (pick[j] < 0 || p[e] > p[pick[j]])) pick[j] = e;
                    wsum += p[pick[j]];
                }
                double out[C_] = {0};
                for (int j = 0; j < k; j++) {
                    const int e = pick[j];
                    CHECK(r.expert[m * k + j] == e);
                    const float *G = b.wg[e]->data, *U = b.wu[e]->data, *D = b.wd[e]->data;
                    double h[I_];
                    for (int i = 0; i < I_; i++) {
                        double gi = 0, ui = 0;
                        for (int c = 0; c < C_; c++) gi += (double)G[i * C_ + c] * x[m * C_ + c], ui += (double)U[i * C_ + c] * x[m * C_ + c];
                        h[i] = silu(gi) * ui;
                    }
                    const double w = norm ? p[e] / wsum : p[e];
                    for (int c = 0; c < C_; c++)
                        for (int i = 0; i < I_; i++) out[c] += w * D[c * I_ + i] * h[i];
                }
                for (int c = 0; c < C_; c++) { /* (not fmax: gcc 12's aarch64 vectorizer crashes on an fmax reduction) */
                    const double e = fabs(out[c] - ((float *)y->data)[m * C_ + c]);
                    if (e > worst) worst = e;
                }
            }
            CHECK_MSG(worst < 1e-5, "k %lld norm %d: block vs per-token experts: %.3g", (long long)k, norm, worst);
            ld_tape_free(t);
            ld_params_free(b.p);
        }
    ld_ctx_free(ctx);
}

TEST(moe_capacity_drops_and_counts) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tape *t = NULL;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    /* 8 tokens all preferring expert 0 of 2, then expert 1 */
    ld_tensor *logits, *gates, *ys, *y;
    ld_tape_tensor(t, 2, (int64_t[]){8, 2}, &logits);
    for (int m = 0; m < 8; m++) ((float *)logits->data)[m * 2] = 2.0f, ((float *)logits->data)[m * 2 + 1] = (float)m * 0.1f;
    ld_moe_route r;
    /* k = 1, capacity ceil(0.5 * 8 / 2) = 2: tokens 0 and 1 go, six are dropped */
    ld_moe_route_opts o = {1, false, 0.5f};
    CHECK(ld_op_moe_route(t, logits, &o, &gates, &r) == LD_OK);
    CHECK(r.capacity == 2 && r.dropped == 6 && r.offset[1] == 2 && r.offset[2] == 2 && r.chosen[0] == 8);
    CHECK(r.row[0] == 0 && r.row[1] == 1 && r.row[2] == -1 && r.row[7] == -1);
    ld_tape_tensor(t, 2, (int64_t[]){2, 3}, &ys);
    for (int i = 0; i < 6; i++) ((float *)ys->data)[i] = 1.0f;
    CHECK(ld_op_moe_combine(t, ys, gates, &r, &y) == LD_OK);
    CHECK(((float *)y->data)[0] == ((float *)gates->data)[0] && ((float *)y->data)[3 * 2] == 0.0f && ((float *)y->data)[3 * 7 + 2] == 0.0f);
    /* k = 2 at capacity 1: 8 choices per expert fit; second choices are all expert 1 */
    o = (ld_moe_route_opts){2, true, 1.0f};
    CHECK(ld_op_moe_route(t, logits, &o, &gates, &r) == LD_OK);
    CHECK(r.capacity == 8 && r.dropped == 0 && r.offset[1] == 8 && r.offset[2] == 16);
    /* capacity 0.5 with k = 2: 4 per expert; first choices fill expert 0 first */
    o.capacity_factor = 0.5f;
    CHECK(ld_op_moe_route(t, logits, &o, &gates, &r) == LD_OK);
    CHECK(r.capacity == 4 && r.dropped == 8 && r.row[0] == 0 && r.row[1] == 4 && r.row[2 * 4] == -1);
    /* bad options */
    o = (ld_moe_route_opts){3, true, 0};
    CHECK_STATUS(ctx, ld_op_moe_route(t, logits, &o, &gates, &r), LD_ERR_INVALID_ARG, "experts per token 3");
    o = (ld_moe_route_opts){1, true, -1};
    CHECK_STATUS(ctx, ld_op_moe_route(t, logits, &o, &gates, &r), LD_ERR_INVALID_ARG, "capacity factor");
    ld_tape_free(t);
    ld_ctx_free(ctx);
}

/* ---- Mixtral ------------------------------------------------------------------------ */

/* qwen: Qwen2-MoE (q/k/v biases, experts of their own width, softmax gates, a shared expert) */
static ld_lm_config moe_config(bool qwen) {
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.family = qwen ? LD_FAMILY_QWEN2MOE : LD_FAMILY_MIXTRAL;
    c.vocab_size = 300, c.hidden_size = 16, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.max_position = 32;
    c.intermediate_size = 12, c.n_experts = 4, c.n_experts_used = 2, c.moe_norm_topk = !qwen;
    if (qwen) c.qkv_bias = true, c.moe_intermediate_size = 10, c.shared_expert_size = 14, c.intermediate_size = 40;
    c.router_aux_loss_coef = 0.02f, c.router_z_loss_coef = 0.001f, c.moe_capacity_factor = 1.25f;
    c.tie_embeddings = false, c.init_std = 0.3f;
    return c;
}
static ld_lm_config mixtral_config(void) {
    return moe_config(false);
}

static const int32_t ids_[] = {3, 17, 5, 39, 0, 22, 8, 8, 31, 12};
enum { NT = 10 };

/* Logits of ids_ from the training forward without gradients ([NT, V] into out). */
static void forward_logits(ld_ctx *ctx, ld_lm *m, float *out) {
    ld_tape *t = NULL;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    ld_tape_set_grad_enabled(t, false);
    ld_tensor *lg = NULL;
    CHECK_STATUS(ctx, ld_lm_forward(m, t, ids_, NULL, 1, NT, &lg, NULL), LD_OK, NULL);
    if (lg) memcpy(out, lg->data, sizeof(float) * (size_t)(NT * m->cfg.vocab_size));
    ld_tape_free(t);
}

typedef struct seen {
    int experts, others;
} seen;
static void observe(void *user, const char *param, const float *x, int64_t M, int64_t K) {
    (void)x, (void)M, (void)K;
    seen *s = user;
    if (strstr(param, ".experts.")) s->experts++;
    else s->others++;
}

/* Session logits of ids_ fed in two pieces (prefill 6, then one token at a time), and how
 * many expert matrices the last single-token step read. */
static void session_logits(ld_ctx *ctx, ld_lm *m, float *out, int *experts_read) {
    ld_lm_session *s = NULL;
    CHECK_STATUS(ctx, ld_lm_session_new(m, 1, 32, 16, &s), LD_OK, NULL);
    if (!s) return;
    const int64_t V = m->cfg.vocab_size;
    const float *lg;
    ld_lm_segment seg = {0, ids_, 6};
    CHECK(ld_lm_session_eval(s, &seg, 1, true, &lg) == LD_OK);
    memcpy(out, lg, sizeof(float) * (size_t)(6 * V));
    seen sn = {0, 0};
    for (int i = 6; i < NT; i++) {
        if (i == NT - 1) ld_lm_session_set_observer(s, observe, &sn);
        seg = (ld_lm_segment){0, ids_ + i, 1};
        CHECK(ld_lm_session_eval(s, &seg, 1, false, &lg) == LD_OK);
        memcpy(out + i * V, lg, sizeof(float) * (size_t)V);
    }
    *experts_read = sn.experts;
    ld_lm_session_free(s);
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) { /* (not fmax: gcc 12's aarch64 vectorizer crashes on an fmax reduction) */
        const double e = fabs((double)a[i] - b[i]);
        if (e > w) w = e;
    }
    return w;
}

TEST(moe_session_equals_forward_and_reads_only_chosen_experts) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (int qwen = 0; qwen < 2; qwen++) {
    ld_lm_config c = moe_config(qwen);
    ld_lm *m = NULL;
    CHECK_STATUS(ctx, ld_lm_new(ctx, &c, 3, &m), LD_OK, NULL);
    const int64_t V = c.vocab_size;
    float *a = calloc((size_t)(NT * V), sizeof(float)), *b = calloc((size_t)(NT * V), sizeof(float));
    forward_logits(ctx, m, a);
    int read = 0;
    session_logits(ctx, m, b, &read);
    CHECK_MSG(max_diff(a, b, NT * V) < 1e-4, "session vs forward: %.3g", max_diff(a, b, NT * V));
    /* one token: k experts x 3 matrices per layer, never the other experts */
    CHECK_MSG(read == (int)(c.n_layers * c.n_experts_used * 3), "a decode step read %d expert matrices, expected %lld", read,
              (long long)(c.n_layers * c.n_experts_used * 3));
    CHECK(ld_lm_config_num_params(&c) == ld_params_numel(ld_lm_params(m), false));
    { /* the bytes a decode step reads: k of E experts (F32 here), every other matrix but the embedding */
        double want = 0;
        for (int i = 0; i < ld_params_count(ld_lm_params(m)); i++) {
            const ld_tensor *w = ld_params_at(ld_lm_params(m), i);
            if (w->ndim != 2 || w == m->wte) continue;
            want += 4.0 * (double)ld_tensor_numel(w) * (strstr(w->name, ".experts.") ? 0.5 : 1.0);
        }
        ld_lm_session *s = NULL;
        CHECK(ld_lm_session_new(m, 1, 8, 8, &s) == LD_OK);
        CHECK_MSG(s && fabs((double)ld_lm_session_weight_bytes(s) - want) < 1, "weight bytes %zu, want %.0f",
                  s ? ld_lm_session_weight_bytes(s) : 0, want);
        ld_lm_session_free(s);
    }
    /* active compute: the flops count k experts, not E */
    ld_lm_config dense = c;
    dense.family = qwen ? LD_FAMILY_QWEN2 : LD_FAMILY_MISTRAL, dense.n_experts = 0, dense.shared_expert_size = 0;
    dense.intermediate_size = lm_expert_width(&c) * 2 + c.shared_expert_size;
    CHECK(fabs(ld_lm_train_flops_per_token(&c, 8) - ld_lm_train_flops_per_token(&dense, 8) -
               6.0 * (double)(c.n_layers * (c.n_experts + (qwen ? 1 : 0)) * c.hidden_size)) < 1);
    free(a), free(b);
    ld_lm_free(m);
    }
    ld_ctx_free(ctx);
}

TEST(mixtral_training_loss_adds_router_losses) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config c = mixtral_config();
    ld_lm *m = NULL;
    CHECK_STATUS(ctx, ld_lm_new(ctx, &c, 5, &m), LD_OK, NULL);
    ld_tape *t = NULL;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    int32_t tg[NT];
    for (int i = 0; i < NT; i++) tg[i] = ids_[(i + 1) % NT];
    ld_tensor *loss = NULL;
    /* without capacity, the objective is the cross-entropy plus the weighted router losses */
    m->cfg.moe_capacity_factor = 0;
    ld_tape_set_grad_enabled(t, false);
    CHECK(ld_lm_forward(m, t, ids_, tg, 1, NT, NULL, &loss) == LD_OK);
    const double ce = ((float *)loss->data)[0];
    ld_tape_reset(t);
    ld_tape_set_grad_enabled(t, true);
    CHECK(ld_lm_forward(m, t, ids_, tg, 1, NT, NULL, &loss) == LD_OK);
    ld_lm_moe_stats st = ld_lm_moe_stats_of(m);
    CHECK(st.choices == c.n_layers * NT * c.n_experts_used && st.dropped == 0);
    CHECK(st.aux_loss >= 1.0 - 1e-5 && st.z_loss > 0); /* E sum f P >= k ... at least 1 for k = 2 of 4 */
    const double want = ce + c.router_aux_loss_coef * st.aux_loss + c.router_z_loss_coef * st.z_loss;
    CHECK_MSG(fabs(((float *)loss->data)[0] - want) < 1e-5, "loss %.7f, cross-entropy + router losses %.7f", ((float *)loss->data)[0], want);
    CHECK(ld_tape_backward(t, loss) == LD_OK);
    const ld_tensor *router = ld_params_find(ld_lm_params(m), "model.layers.0.block_sparse_moe.gate.weight");
    double gn = 0;
    for (int64_t i = 0; router && i < ld_tensor_numel(router); i++) gn += fabs(((float *)router->grad->data)[i]);
    CHECK_MSG(gn > 0, "the router got no gradient");
    /* a tight capacity drops choices, and they are counted */
    m->cfg.moe_capacity_factor = 0.5f;
    ld_tape_reset(t);
    CHECK(ld_lm_forward(m, t, ids_, tg, 1, NT, NULL, &loss) == LD_OK);
    st = ld_lm_moe_stats_of(m);
    CHECK_MSG(st.dropped > 0 && st.dropped <= st.choices / 2 + c.n_layers * c.n_experts, "dropped %lld of %lld",
              (long long)st.dropped, (long long)st.choices);
    ld_tape_free(t);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

static char dir_[256];
static const char *tmpdir(void) {
    snprintf(dir_, sizeof dir_, "/tmp/liandan-test-moe-%d", (int)getpid());
    mkdir(dir_, 0755);
    return dir_;
}

typedef struct mem_src {
    const char *const *docs;
    int n, at;
} mem_src;
static ld_status mem_next(void *u, const char **doc, size_t *len) {
    mem_src *m = u;
    if (m->at == m->n) return LD_ERR_NOT_FOUND;
    *doc = m->docs[m->at++];
    *len = strlen(*doc);
    return LD_OK;
}

static ld_tokenizer *small_tok(ld_ctx *ctx) {
    static const char *const corpus[] = {"床前明月光，疑是地上霜。", "hello world, hello moe"};
    mem_src ms = {corpus, 2, 0};
    ld_text_source src = {mem_next, &ms};
    ld_bpe_train_params p = ld_bpe_train_default_params();
    p.vocab_size = 260, p.min_frequency = 1, p.pretokenizer = LD_PRETOK_GPT2;
    ld_tokenizer *t = NULL;
    CHECK(ld_bpe_train(ctx, &p, &src, &t) == LD_OK);
    return t;
}

TEST(moe_round_trips_config_directory_and_gguf) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (int qwen = 0; qwen < 2; qwen++) {
    ld_lm_config c = moe_config(qwen);
    ld_lm *m = NULL, *back = NULL;
    CHECK_STATUS(ctx, ld_lm_new(ctx, &c, 9, &m), LD_OK, NULL);
    const int64_t V = c.vocab_size;
    float *a = calloc((size_t)(NT * V), sizeof(float)), *b = calloc((size_t)(NT * V), sizeof(float));
    forward_logits(ctx, m, a);
    /* config.json */
    char *js = ld_lm_config_to_json(&c);
    ld_lm_config c2;
    CHECK_STATUS(ctx, ld_lm_config_from_json(ctx, js, strlen(js), "config.json", &c2), LD_OK, NULL);
    CHECK(c2.family == c.family && c2.n_experts == 4 && c2.n_experts_used == 2 && c2.moe_norm_topk == c.moe_norm_topk &&
          c2.router_aux_loss_coef == c.router_aux_loss_coef && c2.router_z_loss_coef == c.router_z_loss_coef &&
          c2.moe_capacity_factor == c.moe_capacity_factor && lm_expert_width(&c2) == lm_expert_width(&c) &&
          c2.shared_expert_size == c.shared_expert_size && c2.qkv_bias == c.qkv_bias);
    CHECK(qwen ? strstr(js, "\"Qwen2MoeForCausalLM\"") && strstr(js, "\"num_experts\"")
               : strstr(js, "\"MixtralForCausalLM\"") && strstr(js, "\"num_local_experts\""));
    free(js);
    /* the model directory (HF tensor names) */
    const char *dir = tmpdir();
    char path[400];
    snprintf(path, sizeof path, "%s/model", dir);
    CHECK_STATUS(ctx, ld_lm_save(m, path), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_lm_load(ctx, path, &back), LD_OK, NULL);
    if (back) {
        CHECK(ld_params_find(ld_lm_params(back), qwen ? "model.layers.1.mlp.experts.3.down_proj.weight"
                                                      : "model.layers.1.block_sparse_moe.experts.3.w2.weight") != NULL);
        forward_logits(ctx, back, b);
        CHECK_MSG(max_diff(a, b, NT * V) == 0, "directory round trip: %.3g", max_diff(a, b, NT * V));
        ld_lm_free(back), back = NULL;
    }
    /* GGUF: in place (session) and for training (forward), F32 exactly and Q8_0 closely */
    ld_tokenizer *tok = small_tok(ctx);
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    CHECK_STATUS(ctx, ld_lm_save_gguf(m, tok, path, NULL), LD_OK, NULL);
    ld_gguf *g = NULL;
    CHECK(ld_gguf_open(ctx, path, &g) == LD_OK);
    const ld_tensor_info *ti = g ? ld_gguf_find_tensor(g, "blk.1.ffn_down_exps.weight") : NULL;
    CHECK(ti && ti->ndim == 3 && ti->shape[0] == 4 && ti->shape[1] == 16 && ti->shape[2] == lm_expert_width(&c));
    ti = g ? ld_gguf_find_tensor(g, "blk.0.ffn_gate_inp.weight") : NULL;
    CHECK(ti && ti->ndim == 2 && ti->shape[0] == 4 && ti->dtype == LD_F32);
    ti = g ? ld_gguf_find_tensor(g, "blk.1.ffn_gate_inp_shexp.weight") : NULL;
    CHECK(qwen ? ti && ti->ndim == 1 && ti->shape[0] == 16 && ti->dtype == LD_F32 : !ti);
    int64_t n = 0;
    const char *arch = qwen ? "qwen2moe" : "llama";
    char key[64];
    snprintf(key, sizeof key, "%s.expert_count", arch);
    CHECK(g && ld_gguf_get_int(ctx, g, key, 0, 99, &n) == LD_OK && n == 4);
    snprintf(key, sizeof key, "%s.expert_used_count", arch);
    CHECK(g && ld_gguf_get_int(ctx, g, key, 0, 99, &n) == LD_OK && n == 2);
    ld_gguf_close(g);
    CHECK_STATUS(ctx, ld_lm_load_gguf(ctx, path, &back, NULL), LD_OK, NULL);
    if (back) {
        CHECK(back->cfg.family == c.family && back->cfg.n_experts == 4 && back->cfg.shared_expert_size == c.shared_expert_size);
        forward_logits(ctx, back, b);
        CHECK_MSG(max_diff(a, b, NT * V) < 1e-5, "GGUF round trip (training load): %.3g", max_diff(a, b, NT * V));
        ld_lm_free(back), back = NULL;
    }
    int read = 0;
    CHECK_STATUS(ctx, ld_lm_load_gguf_ex(ctx, path, NULL, &back, NULL), LD_OK, NULL);
    if (back) {
        session_logits(ctx, back, b, &read);
        CHECK_MSG(max_diff(a, b, NT * V) < 1e-4, "GGUF in place, session: %.3g", max_diff(a, b, NT * V));
        ld_lm_free(back), back = NULL;
    }
    ld_lm_gguf_params gp = ld_lm_gguf_default_params();
    gp.type = LD_Q8_0;
    CHECK_STATUS(ctx, ld_lm_save_gguf(m, tok, path, &gp), LD_OK, NULL);
    CHECK_STATUS(ctx, ld_lm_load_gguf_ex(ctx, path, NULL, &back, NULL), LD_OK, NULL);
    if (back) {
        session_logits(ctx, back, b, &read);
        CHECK_MSG(max_diff(a, b, NT * V) < 0.1, "GGUF Q8_0 in place: %.3g", max_diff(a, b, NT * V));
        CHECK(read == (int)(c.n_layers * c.n_experts_used * 3));
        ld_lm_free(back), back = NULL;
    }
    unlink(path);
    ld_tokenizer_free(tok);
    free(a), free(b);
    ld_lm_free(m);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir_);
    CHECK(system(cmd) == 0);
    ld_ctx_free(ctx);
}

/* The expert-parallel block (rows exchanged with the ranks holding the experts, one product
 * per source rank and expert) over one rank equals the plain block: loss and every gradient.
 * (2 ranks against 1 process: e2e_mpi_ep.) */
TEST(moe_expert_parallel_one_rank_equals_plain) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_comm *world = NULL;
    CHECK(ld_comm_world(ctx, &world) == LD_OK);
    if (world && ld_comm_size(world) != 1) {
        ld_comm_free(world);
        ld_ctx_free(ctx);
        SKIP("one rank only");
    }
    for (int qwen = 0; qwen < 2; qwen++) {
        ld_lm_config c = moe_config(qwen);
        ld_lm *m = NULL;
        CHECK_STATUS(ctx, ld_lm_new(ctx, &c, 7, &m), LD_OK, NULL);
        ld_params *p = ld_lm_params(m);
        const int64_t n = ld_params_numel(p, true);
        float *g0 = calloc((size_t)n, sizeof(float));
        double loss[2] = {0, 0};
        int32_t tg[NT];
        for (int i = 0; i < NT; i++) tg[i] = ids_[(i + 3) % NT];
        for (int ep = 0; ep < 2; ep++) {
            CHECK(lm_set_expert_parallel(m, ep ? world : NULL) == LD_OK);
            ld_tape *t = NULL;
            CHECK(ld_tape_new(ctx, &t) == LD_OK);
            ld_params_zero_grad(p);
            ld_tensor *l = NULL;
            CHECK_STATUS(ctx, ld_lm_forward(m, t, ids_, tg, 1, NT, NULL, &l), LD_OK, NULL);
            CHECK(l && ld_tape_backward(t, l) == LD_OK);
            loss[ep] = l ? ((float *)l->data)[0] : NAN;
            double worst = 0;
            for (int i = 0, off = 0; i < ld_params_count(p); i++) {
                const ld_tensor *x = ld_params_at(p, i);
                const float *g = x->grad->data;
                for (int64_t j = 0; j < ld_tensor_numel(x); j++, off++)
                    if (!ep) g0[off] = g[j];
                    else worst = fmax(worst, fabs((double)g[j] - g0[off]));
            }
            CHECK_MSG(worst < 1e-6, "%s: expert-parallel gradients differ by %.3g", qwen ? "qwen2_moe" : "mixtral", worst);
            ld_tape_free(t);
        }
        CHECK_MSG(fabs(loss[0] - loss[1]) < 1e-6, "loss %.7f plain, %.7f expert parallel", loss[0], loss[1]);
        CHECK(lm_set_expert_parallel(m, NULL) == LD_OK);
        CHECK(lm_expert_index(m, m->layers[1].exp_up[3]) == 3 && lm_expert_index(m, m->wte) == -1);
        free(g0);
        ld_lm_free(m);
    }
    /* a dense model has no experts to split */
    ld_lm_config d = moe_config(false);
    d.family = LD_FAMILY_MISTRAL, d.n_experts = d.n_experts_used = 0;
    ld_lm *m = NULL;
    CHECK_STATUS(ctx, ld_lm_new(ctx, &d, 7, &m), LD_OK, NULL);
    CHECK(lm_set_expert_parallel(m, world) == LD_ERR_INVALID_ARG);
    CHECK(strstr(ld_ctx_error(ctx), "no mixture-of-experts layers") != NULL);
    ld_lm_free(m);
    ld_comm_free(world);
    ld_ctx_free(ctx);
}

/* An expert-parallel rank's model (lm_build_part / lm_load_part): the experts of its part
 * have the whole model's values for the same seed (file) bit for bit, and so has every other
 * parameter; the other experts have no values, gradient or trainable flag; a part count that
 * does not divide E holds everything; a rank computing other experts than it holds is named;
 * the model files read into a partial model skip what it does not hold. */
TEST(moe_model_part_holds_only_its_experts) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (int qwen = 0; qwen < 2; qwen++) {
        ld_lm_config c = moe_config(qwen);
        ld_lm *full = NULL;
        CHECK_STATUS(ctx, ld_lm_new(ctx, &c, 7, &full), LD_OK, NULL);
        const int64_t Ie = qwen ? c.moe_intermediate_size : c.intermediate_size;
        const int64_t per_expert = 3 * c.hidden_size * Ie * c.n_layers, total = ld_params_numel(ld_lm_params(full), false);
        char dir[300];
        snprintf(dir, sizeof dir, "%s/part-%d", tmpdir(), qwen);
        CHECK_STATUS(ctx, ld_lm_save(full, dir), LD_OK, NULL);
        for (int load = 0; load < 2; load++)
            for (int part = 0; part < 2; part++) {
                ld_lm *m = NULL;
                if (load) CHECK_STATUS(ctx, lm_load_part(ctx, dir, part, 2, &m), LD_OK, NULL);
                else CHECK_STATUS(ctx, lm_build_part(ctx, &c, 7, LM_INIT_RANDOM, part, 2, &m), LD_OK, NULL);
                if (!m) continue;
                ld_params *p = ld_lm_params(m);
                int64_t held = 0;
                for (int i = 0; i < ld_params_count(p); i++) {
                    const ld_tensor *x = ld_params_at(p, i), *y = ld_params_find(ld_lm_params(full), x->name);
                    int64_t e = lm_expert_index(m, x);
                    bool mine = e < 0 || e / 2 == part;
                    CHECK(y != NULL);
                    if (!mine) {
                        CHECK_MSG(!x->data && !x->grad && !(x->flags & LD_TENSOR_TRAINABLE), "%s: part %d holds %s",
                                  qwen ? "qwen2_moe" : "mixtral", part, x->name);
                        continue;
                    }
                    held += ld_tensor_numel(x);
                    CHECK_MSG(x->data && x->grad && (x->flags & LD_TENSOR_TRAINABLE), "%s: part %d lacks %s",
                              qwen ? "qwen2_moe" : "mixtral", part, x->name);
                    CHECK_MSG(x->data && y && !memcmp(x->data, y->data, ld_tensor_nbytes(x)),
                              "%s (%s, part %d): not the whole model's values", x->name, load ? "loaded" : "random", part);
                }
                CHECK_MSG(held == total - 2 * per_expert, "part %d holds %lld of %lld values", part, (long long)held,
                          (long long)total);
                CHECK(lm_expert_index(m, m->layers[1].exp_up[3]) == 3 && !lm_holds_all(m));
                /* the model files (every expert) read into the part: only what it holds is written to */
                CHECK_STATUS(ctx, ld_ckpt_read_model(ctx, dir, p), LD_OK, NULL);
                if (part == 1 && !load) { /* one rank of 1 computes every expert: not what this model holds */
                    ld_comm *world = NULL;
                    CHECK(ld_comm_world(ctx, &world) == LD_OK);
                    if (world && ld_comm_size(world) == 1)
                        CHECK_STATUS(ctx, lm_set_expert_parallel(m, world), LD_ERR_INVALID_ARG,
                                     "holds experts [2, 4) but rank 0 of 1 computes [0, 4)");
                    ld_comm_free(world);
                }
                ld_lm_free(m);
            }
        /* 3 parts of 4 experts: the whole model */
        ld_lm *m = NULL;
        CHECK_STATUS(ctx, lm_build_part(ctx, &c, 7, LM_INIT_RANDOM, 1, 3, &m), LD_OK, NULL);
        CHECK(m && lm_holds_all(m) && ld_params_numel(ld_lm_params(m), true) == total);
        ld_lm_free(m);
        /* files of another shape: the tensor is named */
        ld_lm_config o = c;
        o.hidden_size = 24;
        CHECK_STATUS(ctx, lm_build_part(ctx, &o, 7, LM_INIT_RANDOM, 0, 2, &m), LD_OK, NULL);
        CHECK_STATUS(ctx, ld_ckpt_read_model(ctx, dir, ld_lm_params(m)), LD_ERR_SHAPE, "model.embed_tokens.weight");
        ld_lm_free(m);
        ld_lm_free(full);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir_);
    CHECK(system(cmd) == 0);
    ld_ctx_free(ctx);
}

/* The exchange on one rank: the rows it sends come back as its output, the gradient of each
 * sent row is its output row's (central differences), unsent rows get none; bad counts are
 * errors naming the op. */
TEST(moe_exchange_gradient_and_bad_counts) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_comm *world = NULL;
    CHECK(ld_comm_world(ctx, &world) == LD_OK);
    if (world && ld_comm_size(world) != 1) {
        ld_comm_free(world);
        ld_ctx_free(ctx);
        SKIP("one rank only");
    }
    ld_params *p = NULL;
    ld_tensor *x = NULL;
    CHECK(ld_params_new(ctx, &p) == LD_OK);
    ld_params_add(p, "x", 2, (int64_t[]){3, 2}, true, &x);
    const float r[4] = {0.5f, -1.5f, 2.0f, 0.25f};
    for (int i = 0; i < 6; i++) ((float *)x->data)[i] = 0.1f * (float)(i + 1);
    ld_tape *t = NULL;
    CHECK(ld_tape_new(ctx, &t) == LD_OK);
    const int64_t two[1] = {2};
    double loss_at[2];
    for (int pass = 0; pass < 3; pass++) { /* 0: backward; 1, 2: x[1][0] -/+ eps */
        ld_tape_reset(t);
        if (pass) ((float *)x->data)[2] = 0.3f + (pass == 1 ? -1e-2f : 1e-2f);
        ld_tensor *y = NULL, *w = NULL, *flat = NULL, *l = NULL;
        CHECK(ld_op_moe_exchange(t, x, world, two, two, &y) == LD_OK);
        CHECK(y && y->shape[0] == 2 && !memcmp(y->data, x->data, 4 * sizeof(float)));
        ld_tape_tensor(t, 2, (int64_t[]){1, 4}, &w);
        memcpy(w->data, r, sizeof r);
        CHECK(ld_op_reshape(t, y, 2, (int64_t[]){1, 4}, &flat) == LD_OK);
        CHECK(ld_op_linear(t, flat, w, NULL, false, &l) == LD_OK);
        CHECK(ld_op_reshape(t, l, 1, (int64_t[]){1}, &l) == LD_OK);
        if (!pass) {
            ld_params_zero_grad(p);
            CHECK(ld_tape_backward(t, l) == LD_OK);
            const float *g = x->grad->data;
            for (int i = 0; i < 4; i++) CHECK_MSG(fabsf(g[i] - r[i]) < 1e-6f, "dx[%d] %g, want %g", i, g[i], r[i]);
            CHECK(g[4] == 0 && g[5] == 0); /* the row not sent */
        } else {
            loss_at[pass - 1] = ((float *)l->data)[0];
        }
    }
    const double num = (loss_at[1] - loss_at[0]) / 2e-2;
    CHECK_MSG(fabs(num - r[2]) < 1e-3, "central difference %.5f, analytic %.5f", num, (double)r[2]);
    ld_tensor *y = NULL;
    CHECK(ld_op_moe_exchange(t, x, world, (int64_t[]){4}, (int64_t[]){4}, &y) == LD_ERR_SHAPE);
    CHECK(strstr(ld_ctx_error(ctx), "moe_exchange: the input has fewer rows than it sends") != NULL);
    CHECK(ld_op_moe_exchange(t, x, world, (int64_t[]){-1}, two, &y) == LD_ERR_SHAPE);
    CHECK(strstr(ld_ctx_error(ctx), "moe_exchange: a negative row count") != NULL);
    CHECK(ld_op_moe_exchange(t, x, world, two, (int64_t[]){1}, &y) != LD_OK); /* one rank: sends 2 to itself, expects 1 */
    ld_tape_free(t);
    ld_params_free(p);
    ld_comm_free(world);
    ld_ctx_free(ctx);
}

TEST(mixtral_bad_configs_are_named) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const struct {
        const char *json, *err;
    } cases[] = {
        {"{\"model_type\":\"mixtral\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":4,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8}",
         "num_local_experts"},
        {"{\"model_type\":\"mixtral\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":4,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"num_local_experts\":2,\"num_experts_per_tok\":3}",
         "num_experts_per_tok 3"},
        {"{\"model_type\":\"mixtral\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":4,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"num_local_experts\":2,\"router_jitter_noise\":0.1}",
         "router_jitter_noise"},
        {"{\"model_type\":\"mixtral\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":4,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"num_local_experts\":2,\"liandan\":{\"moe_capacity_factor\":-1}}",
         "moe_capacity_factor"},
        {"{\"model_type\":\"mixtral\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":4,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"num_local_experts\":\"8\"}",
         "num_local_experts"},
        {"{\"model_type\":\"qwen2_moe\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":4,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"num_experts\":2,\"decoder_sparse_step\":2}",
         "decoder_sparse_step 2"},
        {"{\"model_type\":\"qwen2_moe\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":4,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"num_experts\":2,\"mlp_only_layers\":[1]}",
         "mlp_only_layers"},
        {"{\"model_type\":\"qwen2_moe\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":4,\"num_hidden_layers\":2,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"num_experts\":2,\"moe_intermediate_size\":0}",
         "moe_intermediate_size 0"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ld_lm_config c;
        ld_status st = ld_lm_config_from_json(ctx, cases[i].json, strlen(cases[i].json), "config.json", &c);
        CHECK_MSG(st != LD_OK && strstr(ld_ctx_error(ctx), cases[i].err), "case %zu: %s (wanted '%s')", i,
                  st ? ld_ctx_error(ctx) : "accepted", cases[i].err);
    }
    /* a dense family given experts */
    ld_lm_config c = mixtral_config();
    c.family = LD_FAMILY_LLAMA;
    CHECK_STATUS(ctx, ld_lm_config_validate(ctx, &c), LD_ERR_INVALID_ARG, "has no experts");
    ld_ctx_free(ctx);
}
LD_TEST_MAIN()

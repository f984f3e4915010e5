/* tests/unit/test_causal_lm.c — the causal LM against an independent double-precision
 * forward pass written here from the kernels' double reference instantiations:
 *   - the tape's loss equals the double forward's loss;
 *   - the tape's gradients equal central finite differences of the double forward;
 *   - KV-cached inference logits equal the full forward's logits;
 * for both variants (llama with GQA and untied head, gpt2) on a 2-layer model. */
#include "kernels/ref/ref_f64.h"
#include "ld_test.h"
#include "liandan/infer.h"
#include "models/causal_lm_internal.h"

enum { B = 2, T = 5 };

/* The variants checked: each family, and llama with each RoPE scaling. */
typedef enum variant {
    V_LLAMA, V_GPT2, V_QWEN2, V_QWEN3, V_GEMMA2, V_PHI3, V_LINEAR, V_DYNAMIC, V_LLAMA3, V_YARN, V_COUNT
} variant;
static const char *const variant_names[V_COUNT] = {"llama",  "gpt2",   "qwen2",          "qwen3",         "gemma2",
                                                   "phi3",   "llama + linear RoPE", "llama + dynamic NTK", "llama + llama3 RoPE", "llama + YaRN"};

static ld_lm_config tiny_variant(variant v) {
    ld_lm_arch arch = v == V_GPT2 ? LD_ARCH_GPT2 : LD_ARCH_LLAMA;
    ld_lm_config c = ld_lm_default_config(arch);
    c.vocab_size = 23, c.hidden_size = 8, c.n_layers = 2, c.n_heads = 2, c.max_position = 16;
    c.n_kv_heads = arch == LD_ARCH_LLAMA ? 1 : 2;
    c.intermediate_size = arch == LD_ARCH_LLAMA ? 12 : 32;
    c.tie_embeddings = arch == LD_ARCH_GPT2;
    c.init_std = 0.3f; /* large weights: every path matters */
    ld_rope_scaling *rs = &c.rope_scaling;
    switch (v) {
    case V_QWEN2: c.family = LD_FAMILY_QWEN2, c.qkv_bias = true; break;
    case V_QWEN3: c.family = LD_FAMILY_QWEN3, c.head_dim = 6, c.n_heads = 2; break; /* heads wider than C / H */
    case V_GEMMA2:
        c.family = LD_FAMILY_GEMMA2, c.tie_embeddings = true, c.head_dim = 6, c.sliding_window = 2;
        c.sliding_window_pattern = 2, c.attn_softcap = 3.0f, c.final_softcap = 4.0f, c.query_scale = 0.3f;
        break;
    case V_PHI3: c.family = LD_FAMILY_PHI3, c.sliding_window = 3, c.sliding_window_pattern = 1; break;
    case V_LINEAR: *rs = (ld_rope_scaling){.type = LD_ROPE_SCALING_LINEAR, .factor = 2.5f}; break;
    case V_DYNAMIC: *rs = (ld_rope_scaling){.type = LD_ROPE_SCALING_DYNAMIC, .factor = 2, .original_max_position = 3}; break;
    case V_LLAMA3:
        *rs = (ld_rope_scaling){.type = LD_ROPE_SCALING_LLAMA3, .factor = 8, .original_max_position = 64,
                                .low_freq_factor = 1, .high_freq_factor = 4};
        c.hidden_size = 16, c.rope_theta = 500000.0f; /* D = 8: frequencies in all three bands */
        break;
    case V_YARN:
        *rs = (ld_rope_scaling){.type = LD_ROPE_SCALING_YARN, .factor = 4, .original_max_position = 8, .beta_fast = 32,
                                .beta_slow = 1};
        c.hidden_size = 16, c.rope_theta = 100.0f;
        break;
    default: break;
    }
    return c;
}

/* llama / gpt2 / (2) qwen2 */
static ld_lm_config tiny(ld_lm_arch arch) {
    return tiny_variant(arch == LD_ARCH_GPT2 ? V_GPT2 : (int)arch == 2 ? V_QWEN2 : V_LLAMA);
}

/* ---- the double-precision reference model ---------------------------------------- */

typedef struct dmodel {
    const ld_lm *m;
    double *p[512]; /* double copies of the parameters, same order as ld_params_at */
    int n;
} dmodel;

static double *dparam(dmodel *d, const ld_tensor *t) {
    for (int i = 0; i < d->n; i++)
        if (ld_params_at(d->m->params, i) == t) return d->p[i];
    return NULL;
}

/* y[M,N] = x[M,K] W^T (W [N,K]) or x W (W [K,N] if kn) + b */
static void dlinear(double *y, const double *x, const double *w, const double *b, int64_t M, int64_t K, int64_t N,
                    bool kn) {
    for (int64_t r = 0; r < M; r++)
        for (int64_t j = 0; j < N; j++) {
            double s = b ? b[j] : 0;
            for (int64_t i = 0; i < K; i++) s += x[r * K + i] * (kn ? w[i * N + j] : w[j * K + i]);
            y[r * N + j] = s;
        }
}

/* naive causal attention, q [B,T,Hq,D], k/v [B,T,Hkv,D]: keys i - window + 1 .. i when
 * window > 0, scores soft-capped when cap > 0 */
static void dattention(double *out, const double *q, const double *k, const double *v, int64_t Hq, int64_t Hkv,
                       int64_t D, double scale, int64_t window, double cap) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < T; i++) {
                int64_t hk = h / (Hq / Hkv), j0 = window > 0 && i - window + 1 > 0 ? i - window + 1 : 0;
                double s[T], mx = -1e300, sum = 0;
                for (int64_t j = j0; j <= i; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += q[((b * T + i) * Hq + h) * D + d] * k[((b * T + j) * Hkv + hk) * D + d];
                    s[j] = dot * scale;
                    if (cap > 0) s[j] = cap * tanh(s[j] / cap);
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = j0; j <= i; j++) sum += (s[j] = exp(s[j] - mx));
                for (int64_t d = 0; d < D; d++) {
                    double o = 0;
                    for (int64_t j = j0; j <= i; j++) o += s[j] / sum * v[((b * T + j) * Hkv + hk) * D + d];
                    out[((b * T + i) * Hq + h) * D + d] = o;
                }
            }
}

/* RoPE of x [B*T, H*D] with the config's frequencies, written here from the formulas */
static void drope(double *y, const double *x, const ld_lm_config *c, int64_t H) {
    const int64_t D = ld_lm_head_dim(c), half = D / 2;
    const ld_rope_scaling *rs = &c->rope_scaling;
    double inv[64], mscale = 1, base = c->rope_theta;
    double orig = rs->original_max_position ? (double)rs->original_max_position : (double)c->max_position;
    if (rs->type == LD_ROPE_SCALING_DYNAMIC && T > orig) base *= pow(rs->factor * T / orig - (rs->factor - 1), D / (D - 2.0));
    for (int64_t i = 0; i < half; i++) {
        double f = pow(base, -2.0 * (double)i / (double)D);
        if (rs->type == LD_ROPE_SCALING_LINEAR) f /= rs->factor;
        if (rs->type == LD_ROPE_SCALING_LLAMA3) {
            double wl = 2 * M_PI / f, lo = orig / rs->low_freq_factor, hi = orig / rs->high_freq_factor;
            double sm = (orig / wl - rs->low_freq_factor) / (rs->high_freq_factor - rs->low_freq_factor);
            f = wl > lo ? f / rs->factor : wl < hi ? f : (1 - sm) * f / rs->factor + sm * f;
        }
        if (rs->type == LD_ROPE_SCALING_YARN) {
            double l = floor(D * log(orig / (rs->beta_fast * 2 * M_PI)) / (2 * log(base)));
            double h = ceil(D * log(orig / (rs->beta_slow * 2 * M_PI)) / (2 * log(base)));
            l = l < 0 ? 0 : l, h = h > D - 1 ? D - 1 : h;
            double ramp = (i - l) / (h - l), ex = 1 - (ramp < 0 ? 0 : ramp > 1 ? 1 : ramp);
            f = f / rs->factor * (1 - ex) + f * ex;
            mscale = 0.1 * log(rs->factor) + 1;
        }
        inv[i] = (float)f; /* the model keeps its frequencies in float, as HF and llama.cpp do */
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < half; i++) {
                    const double *xr = x + ((b * T + t) * H + h) * D;
                    double *yr = y + ((b * T + t) * H + h) * D, ang = (double)t * inv[i];
                    double cs = mscale * cos(ang), sn = mscale * sin(ang), x1 = xr[i], x2 = xr[i + half];
                    yr[i] = x1 * cs - x2 * sn, yr[i + half] = x2 * cs + x1 * sn;
                }
}

enum { WMAX = 64 }; /* widths up to 64 per token */

static double dforward(dmodel *d, const int32_t *ids, const int32_t *targets, double *logits_out) {
    const ld_lm *m = d->m;
    const ld_lm_config *c = &m->cfg;
    const lm_family_info *fam = lm_family(c->family);
    int64_t C = c->hidden_size, Hq = c->n_heads, Hkv = c->n_kv_heads, D = ld_lm_head_dim(c), I = c->intermediate_size;
    int64_t V = c->vocab_size, N = B * T, Q = Hq * D, kvw = Hkv * D;
    static double x[B * T * WMAX], h[B * T * WMAX], q[B * T * WMAX], k[B * T * WMAX], v[B * T * WMAX];
    static double a[B * T * WMAX], o[B * T * WMAX], qkv[B * T * 3 * WMAX], f1[B * T * 2 * WMAX], f2[B * T * WMAX];
    static double mean[B * T * WMAX], rstd[B * T * WMAX];
    double *logits = logits_out;
    bool gpt2 = c->arch == LD_ARCH_GPT2;
    ld_ref64_embedding_fwd(x, ids, dparam(d, m->wte), N, C);
    if (fam->embed_scale)
        for (int64_t i = 0; i < N * C; i++) x[i] *= sqrt((double)(float)C);
    if (gpt2)
        for (int64_t r = 0; r < N; r++)
            for (int64_t i = 0; i < C; i++) x[r * C + i] += dparam(d, m->wpe)[(r % T) * C + i];
    for (int l = 0; l < c->n_layers; l++) {
        const lm_layer *L = &m->layers[l];
        if (gpt2) ld_ref64_layernorm_fwd(h, mean, rstd, x, dparam(d, L->ln1_w), dparam(d, L->ln1_b), N, C, c->norm_eps);
        else ld_ref64_rmsnorm_fwd(h, rstd, x, dparam(d, L->ln1_w), N, C, c->norm_eps);
        if (gpt2) {
            dlinear(qkv, h, dparam(d, L->qkv), dparam(d, L->qkv_b), N, C, 3 * C, true);
            for (int64_t r = 0; r < N; r++)
                for (int64_t i = 0; i < C; i++)
                    q[r * C + i] = qkv[r * 3 * C + i], k[r * C + i] = qkv[r * 3 * C + C + i],
                    v[r * C + i] = qkv[r * 3 * C + 2 * C + i];
        } else {
            if (fam->fused_qkv) {
                dlinear(qkv, h, dparam(d, L->qkv), NULL, N, C, Q + 2 * kvw, false);
                for (int64_t r = 0; r < N; r++) {
                    for (int64_t i = 0; i < Q; i++) a[r * Q + i] = qkv[r * (Q + 2 * kvw) + i];
                    for (int64_t i = 0; i < kvw; i++)
                        o[r * kvw + i] = qkv[r * (Q + 2 * kvw) + Q + i], v[r * kvw + i] = qkv[r * (Q + 2 * kvw) + Q + kvw + i];
                }
            } else {
                dlinear(a, h, dparam(d, L->q), L->q_b ? dparam(d, L->q_b) : NULL, N, C, Q, false);
                dlinear(o, h, dparam(d, L->k), L->k_b ? dparam(d, L->k_b) : NULL, N, C, kvw, false);
                dlinear(v, h, dparam(d, L->v), L->v_b ? dparam(d, L->v_b) : NULL, N, C, kvw, false);
            }
            if (fam->qk_norm) {
                ld_ref64_rmsnorm_fwd(a, rstd, a, dparam(d, L->q_norm), N * Hq, D, c->norm_eps);
                ld_ref64_rmsnorm_fwd(o, rstd, o, dparam(d, L->k_norm), N * Hkv, D, c->norm_eps);
            }
            drope(q, a, c, Hq);
            drope(k, o, c, Hkv);
        }
        double scale = c->query_scale > 0 ? c->query_scale : 1.0 / sqrt((double)(float)D);
        dattention(a, q, k, v, Hq, Hkv, D, (double)(float)scale, ld_lm_layer_sliding(c, l) ? c->sliding_window : 0,
                   c->attn_softcap);
        dlinear(o, a, dparam(d, L->o), L->o_b ? dparam(d, L->o_b) : NULL, N, Q, C, gpt2);
        if (fam->sandwich_norms) ld_ref64_rmsnorm_fwd(o, rstd, o, dparam(d, L->post_attn_norm), N, C, c->norm_eps);
        for (int64_t i = 0; i < N * C; i++) x[i] += o[i];
        if (gpt2) ld_ref64_layernorm_fwd(h, mean, rstd, x, dparam(d, L->ln2_w), dparam(d, L->ln2_b), N, C, c->norm_eps);
        else ld_ref64_rmsnorm_fwd(h, rstd, x, dparam(d, L->ln2_w), N, C, c->norm_eps);
        if (gpt2) {
            dlinear(f1, h, dparam(d, L->up), dparam(d, L->up_b), N, C, I, true);
            ld_ref64_gelu_fwd(f2, f1, N * I);
            dlinear(o, f2, dparam(d, L->down), dparam(d, L->down_b), N, I, C, true);
        } else {
            if (fam->fused_gate_up) {
                dlinear(qkv, h, dparam(d, L->gate_up), NULL, N, C, 2 * I, false);
                for (int64_t r = 0; r < N; r++)
                    for (int64_t i = 0; i < I; i++) f1[r * I + i] = qkv[r * 2 * I + i], f2[r * I + i] = qkv[r * 2 * I + I + i];
            } else {
                dlinear(f1, h, dparam(d, L->gate), NULL, N, C, I, false);
                dlinear(f2, h, dparam(d, L->up), NULL, N, C, I, false);
            }
            if (fam->geglu) ld_ref64_geglu_fwd(f1, f1, f2, N * I);
            else ld_ref64_swiglu_fwd(f1, f1, f2, N * I);
            dlinear(o, f1, dparam(d, L->down), NULL, N, I, C, false);
            if (fam->sandwich_norms) ld_ref64_rmsnorm_fwd(o, rstd, o, dparam(d, L->post_mlp_norm), N, C, c->norm_eps);
        }
        for (int64_t i = 0; i < N * C; i++) x[i] += o[i];
    }
    if (gpt2) ld_ref64_layernorm_fwd(h, mean, rstd, x, dparam(d, m->lnf_w), dparam(d, m->lnf_b), N, C, c->norm_eps);
    else ld_ref64_rmsnorm_fwd(h, rstd, x, dparam(d, m->lnf_w), N, C, c->norm_eps);
    dlinear(logits, h, dparam(d, m->lm_head), NULL, N, C, V, false);
    if (c->final_softcap > 0)
        for (int64_t i = 0; i < N * V; i++) logits[i] = c->final_softcap * tanh(logits[i] / c->final_softcap);
    double loss[B * T], lse[B * T], sum = 0;
    int counted = 0;
    ld_ref64_xent_fwd(loss, lse, logits, targets, N, V, -100);
    for (int64_t r = 0; r < N; r++)
        if (targets[r] != -100) sum += loss[r], counted++;
    return sum / counted;
}

static void check_model(variant var) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config cfg = tiny_variant(var);
    ld_lm *m = NULL;
    CHECK(ld_lm_new(ctx, &cfg, 1234, &m) == LD_OK);
    if (!m) return;
    /* norms and biases away from their 1 / 0 init so every parameter shapes the output */
    ld_rng pr = ld_rng_init(77);
    for (int i = 0; i < ld_params_count(m->params); i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        if (t->ndim != 1) continue;
        for (int64_t j = 0; j < ld_tensor_numel(t); j++) ((float *)t->data)[j] += 0.2f * ld_rng_normal(&pr);
    }
    CHECK(ld_params_numel(m->params, false) == ld_lm_config_num_params(&cfg));
    int32_t ids[B * T], targets[B * T];
    ld_rng r = ld_rng_init(5);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)ld_rng_below(&r, 23), targets[i] = (int32_t)ld_rng_below(&r, 23);
    targets[3] = -100; /* an ignored position */

    ld_tape *tape = NULL;
    CHECK(ld_tape_new(ctx, &tape) == LD_OK);
    ld_tensor *logits = NULL, *loss = NULL;
    CHECK(ld_lm_forward(m, tape, ids, targets, B, T, &logits, &loss) == LD_OK);
    CHECK(ld_tape_backward(tape, loss) == LD_OK);

    dmodel d = {.m = m, .n = ld_params_count(m->params)};
    for (int i = 0; i < d.n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        int64_t n = ld_tensor_numel(t);
        d.p[i] = malloc((size_t)n * sizeof(double));
        for (int64_t j = 0; j < n; j++) d.p[i][j] = ((float *)t->data)[j];
    }
    double dlogits[B * T * 23];
    double ref_loss = dforward(&d, ids, targets, dlogits);
    CHECK_NEAR(((float *)loss->data)[0], ref_loss, 1e-5 * fabs(ref_loss));
    double max_logit_err = 0;
    for (int i = 0; i < B * T * 23; i++) {
        double e = fabs(((float *)logits->data)[i] - dlogits[i]);
        if (e > max_logit_err) max_logit_err = e;
    }
    CHECK_MSG(max_logit_err < 1e-4, "%s: max logit error %g", variant_names[var], max_logit_err);

    /* finite differences in double on every parameter tensor, a few elements each */
    double worst = 0;
    for (int i = 0; i < d.n; i++) {
        ld_tensor *t = ld_params_at(m->params, i);
        int64_t n = ld_tensor_numel(t);
        for (int s = 0; s < 4; s++) {
            int64_t j = (int64_t)ld_rng_below(&r, (uint64_t)n);
            double keep = d.p[i][j], eps = 1e-5;
            d.p[i][j] = keep + eps;
            double lp = dforward(&d, ids, targets, dlogits);
            d.p[i][j] = keep - eps;
            double lm = dforward(&d, ids, targets, dlogits);
            d.p[i][j] = keep;
            double fd = (lp - lm) / (2 * eps), g = ((float *)t->grad->data)[j];
            double err = fabs(fd - g) / (fabs(fd) + 1e-3);
            if (err > worst) worst = err;
            CHECK_MSG(err < 2e-3, "%s: %s[%lld]: tape %.8g vs finite difference %.8g", variant_names[var], t->name,
                      (long long)j, g, fd);
        }
    }
    printf("  %s: loss %.6f, max logit err %.2g, worst grad rel err %.2g\n", variant_names[var], ref_loss,
           max_logit_err, worst);

    /* KV cache: prefill 3 tokens, then 2 single-token steps, per batch row; compare with the
     * full forward's logits (dynamic NTK depends on the context: the session gets T) */
    ld_lm_session *s = NULL;
    const int64_t ctx_len = var == V_DYNAMIC ? T : 16;
    CHECK(ld_lm_session_new(m, B, ctx_len, 16, &s) == LD_OK);
    for (int b = 0; s && b < B; b++) {
        const float *lg;
        ld_lm_segment seg = {b, ids + b * T, 3};
        CHECK(ld_lm_session_eval(s, &seg, 1, true, &lg) == LD_OK);
        double rel = ld_test_max_rel_err(lg, (const float *)logits->data + b * T * 23, 3 * 23, 1.0);
        CHECK_MSG(rel < 1e-5, "%s: prefill logits differ by %g", variant_names[var], rel);
        for (int t = 3; t < T; t++) {
            ld_lm_segment one = {b, ids + b * T + t, 1};
            CHECK(ld_lm_session_eval(s, &one, 1, false, &lg) == LD_OK);
            rel = ld_test_max_rel_err(lg, (const float *)logits->data + (b * T + t) * 23, 23, 1.0);
            CHECK_MSG(rel < 1e-5, "%s: decode step %d logits differ by %g", variant_names[var], t, rel);
        }
    }
    /* the same in a paged cache of 2- and 3-token pages: attention per page, merged; the
     * sliding window (gemma2: 2, phi3: 3) and the soft-cap at page-relative positions, pages
     * wholly before the window skipped */
    for (int64_t pt = 2; pt <= 3; pt++) {
        ld_lm_session_params sp = ld_lm_session_default_params();
        sp.n_slots = B, sp.max_len = ctx_len, sp.max_tokens = 16, sp.page_tokens = pt;
        ld_lm_session *ps = NULL;
        CHECK(ld_lm_session_new_ex(m, &sp, &ps) == LD_OK);
        for (int b = 0; ps && b < B; b++) {
            const float *lg;
            ld_lm_segment seg = {b, ids + b * T, 3};
            CHECK(ld_lm_session_eval(ps, &seg, 1, true, &lg) == LD_OK);
            double rel = ld_test_max_rel_err(lg, (const float *)logits->data + b * T * 23, 3 * 23, 1.0);
            CHECK_MSG(rel < 1e-5, "%s: %lld-token pages: prefill logits differ by %g", variant_names[var], (long long)pt, rel);
            for (int t = 3; t < T; t++) {
                ld_lm_segment one = {b, ids + b * T + t, 1};
                CHECK(ld_lm_session_eval(ps, &one, 1, false, &lg) == LD_OK);
                rel = ld_test_max_rel_err(lg, (const float *)logits->data + (b * T + t) * 23, 23, 1.0);
                CHECK_MSG(rel < 1e-5, "%s: %lld-token pages: decode step %d logits differ by %g", variant_names[var],
                          (long long)pt, t, rel);
            }
        }
        ld_lm_session_free(ps);
    }
    /* batched: both rows' last tokens in one call after clearing and re-prefilling 4 */
    for (int b = 0; s && b < B; b++) ld_lm_session_clear(s, b);
    if (s) {
        ld_lm_segment segs[2] = {{0, ids, 4}, {1, ids + T, 4}};
        const float *lg;
        CHECK(ld_lm_session_eval(s, segs, 2, false, &lg) == LD_OK);
        ld_lm_segment steps[2] = {{0, ids + 4, 1}, {1, ids + T + 4, 1}};
        CHECK(ld_lm_session_eval(s, steps, 2, false, &lg) == LD_OK);
        for (int b = 0; b < B; b++)
            CHECK(ld_test_max_rel_err(lg + b * 23, (const float *)logits->data + (b * T + 4) * 23, 23, 1.0) < 1e-5);
        ld_lm_segment too_long = {0, ids, 16};
        CHECK_STATUS(ctx, ld_lm_session_eval(s, &too_long, 1, false, &lg), LD_ERR_LIMIT, var == V_DYNAMIC ? NULL : "past the context");
        int32_t bad_id = 99;
        ld_lm_segment bad = {1, &bad_id, 1};
        ld_lm_session_clear(s, 1);
        CHECK_STATUS(ctx, ld_lm_session_eval(s, &bad, 1, false, &lg), LD_ERR_INVALID_ARG, "outside the vocabulary");
    }
    ld_lm_session_free(s);
    for (int i = 0; i < d.n; i++) free(d.p[i]);
    ld_tape_free(tape);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* field by field: the struct has padding (memcmp of it failed under clang -O0 + ASan) */
static bool rope_scaling_equal(const ld_rope_scaling *a, const ld_rope_scaling *b) {
    return a->type == b->type && a->factor == b->factor && a->original_max_position == b->original_max_position &&
           a->low_freq_factor == b->low_freq_factor && a->high_freq_factor == b->high_freq_factor &&
           a->beta_fast == b->beta_fast && a->beta_slow == b->beta_slow && a->attention_factor == b->attention_factor;
}

TEST(llama_matches_double_reference_and_finite_differences) {
    check_model(V_LLAMA);
}

TEST(gpt2_matches_double_reference_and_finite_differences) {
    check_model(V_GPT2);
}

TEST(qwen2_qkv_biases_match_double_reference_and_finite_differences) {
    check_model(V_QWEN2);
}

TEST(qwen3_qk_norm_and_head_dim_match_double_reference_and_finite_differences) {
    check_model(V_QWEN3);
}

TEST(gemma2_softcaps_sandwich_geglu_window_match_double_reference_and_finite_differences) {
    check_model(V_GEMMA2);
}

TEST(phi3_fused_projections_and_window_match_double_reference_and_finite_differences) {
    check_model(V_PHI3);
}

TEST(rope_scalings_match_double_reference_and_finite_differences) {
    for (variant v = V_LINEAR; v <= V_YARN; v++) check_model(v);
}

typedef struct collected {
    int32_t tok[4][32];
    int n[4];
} collected;
static bool collect(void *user, int seq, int32_t t) {
    collected *c = user;
    if (c->n[seq] < 32) c->tok[seq][c->n[seq]++] = t;
    return true;
}

TEST(batched_generation_equals_one_at_a_time) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config cfg = tiny(LD_ARCH_LLAMA);
    cfg.max_position = 64;
    ld_lm *m = NULL;
    ld_lm_new(ctx, &cfg, 3, &m);
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new(m, 3, 64, 32, &s) == LD_OK);
    int32_t p0[] = {1, 2, 3}, p1[] = {4}, p2[] = {5, 6, 7, 8, 9};
    const int32_t *prompts[3] = {p0, p1, p2};
    int64_t lens[3] = {3, 1, 5}, ngen[3];
    for (int greedy = 0; greedy < 2; greedy++) {
        ld_generate_params gp = ld_generate_default_params();
        gp.max_tokens = 12, gp.seed = 99;
        if (greedy) gp.sample.temperature = 0;
        else gp.sample.top_k = 5, gp.sample.repetition_penalty = 1.3f;
        collected all = {0};
        CHECK(ld_lm_generate(s, 3, prompts, lens, &gp, collect, &all, ngen) == LD_OK);
        for (int i = 0; i < 3; i++) {
            CHECK(ngen[i] == 12 && all.n[i] == 12);
            /* sequence i alone, with the stream it gets in the batch */
            collected one = {0};
            ld_generate_params g1 = gp;
            g1.seed = gp.seed; /* sequence index 0 uses ld_rng_at(seed, 0): shift the seed stream */
            const int32_t *pi[1] = {prompts[i]};
            if (i == 0) {
                CHECK(ld_lm_generate(s, 1, pi, &lens[i], &g1, collect, &one, NULL) == LD_OK);
                CHECK(one.n[0] == 12 && memcmp(one.tok[0], all.tok[0], sizeof one.tok[0]) == 0);
            } else if (greedy) {
                CHECK(ld_lm_generate(s, 1, pi, &lens[i], &g1, collect, &one, NULL) == LD_OK);
                CHECK(one.n[0] == 12 && memcmp(one.tok[0], all.tok[i], sizeof one.tok[0]) == 0);
            }
        }
    }
    int32_t longp[70] = {0};
    const int32_t *lp[1] = {longp};
    int64_t ll = 70;
    ld_generate_params gp = ld_generate_default_params();
    CHECK_STATUS(ctx, ld_lm_generate(s, 1, lp, &ll, &gp, NULL, NULL, NULL), LD_ERR_LIMIT, "prompt 0");
    ld_lm_session_free(s);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

/* ld_lm_generate under constraints: one sequence may take only even tokens, one nothing at all
 * (it ends at once), one refuses its third token (it ends there). */
static ld_status even_only(void *user, float *lg, int64_t V) {
    for (int64_t v = 0; v < V; v++)
        if (v % 2 || *(int *)user == -1) lg[v] = -INFINITY;
    return LD_OK;
}
static ld_status count_accept(void *user, int32_t tok) {
    (void)tok;
    int *n = user;
    return *n >= 0 && ++*n == 3 ? LD_ERR_FORMAT : LD_OK;
}

TEST(generate_under_constraints_and_inverse_rerank) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config cfg = tiny(LD_ARCH_LLAMA);
    cfg.max_position = 64;
    ld_lm *m = NULL;
    ld_lm_new(ctx, &cfg, 3, &m);
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new(m, 3, 64, 32, &s) == LD_OK);
    int32_t p0[] = {1, 2, 3}, p1[] = {4}, p2[] = {5, 6, 7, 8, 9};
    const int32_t *prompts[3] = {p0, p1, p2};
    int64_t lens[3] = {3, 1, 5}, ngen[3];
    int state[3] = {-2, -1, 0}; /* -2: no count, -1: mask everything, 0..: count accepted tokens */
    ld_lm_constraint cons[3] = {{.mask = even_only, .user = &state[0]},
                                {.mask = even_only, .user = &state[1]},
                                {.accept = count_accept, .user = &state[2]}};
    ld_generate_params gp = ld_generate_default_params();
    gp.max_tokens = 10, gp.seed = 3, gp.constraints = cons;
    collected got = {0};
    CHECK(ld_lm_generate(s, 3, prompts, lens, &gp, collect, &got, ngen) == LD_OK);
    CHECK_MSG(ngen[0] == 10 && got.n[0] == 10 && ngen[1] == 0 && got.n[1] == 0 && ngen[2] == 2 && got.n[2] == 2,
              "generated %lld, %lld, %lld", (long long)ngen[0], (long long)ngen[1], (long long)ngen[2]);
    for (int j = 0; j < got.n[0]; j++) CHECK(got.tok[0][j] % 2 == 0);

    /* inverse rerank: each candidate's score is log P(prompt | candidate + sep) per prompt token,
     * as ld_lm_score gives it for that candidate alone; best is the argmax */
    int32_t c0[] = {7, 7, 7}, c1[] = {1, 2}, c2[] = {11}, sep[] = {0}, prompt[] = {4, 5, 6, 8};
    const int32_t *cands[3] = {c0, c1, c2};
    int64_t clen[3] = {3, 2, 1};
    double score[3];
    int best = -1;
    CHECK(ld_lm_rerank_inverse(s, 3, cands, clen, sep, 1, prompt, 4, score, &best) == LD_OK);
    for (int i = 0; i < 3; i++) {
        int32_t ctx_ids[8];
        memcpy(ctx_ids, cands[i], (size_t)clen[i] * sizeof *ctx_ids);
        ctx_ids[clen[i]] = sep[0];
        const int32_t *ci[1] = {ctx_ids}, *pi[1] = {prompt};
        int64_t cl = clen[i] + 1, pl = 4;
        double lp = 0;
        CHECK(ld_lm_score(s, 1, ci, &cl, pi, &pl, &lp) == LD_OK);
        CHECK_MSG(fabs(score[i] - lp / 4) < 1e-5 && score[i] < 0, "candidate %d: %g vs %g", i, score[i], lp / 4);
        CHECK(score[i] <= score[best]);
    }
    int64_t zero = 0;
    const int32_t *empty[1] = {c0};
    CHECK_STATUS(ctx, ld_lm_rerank_inverse(s, 1, empty, &zero, NULL, 0, prompt, 4, score, NULL), LD_ERR_INVALID_ARG,
                 "candidate 0 is empty");
    CHECK_STATUS(ctx, ld_lm_rerank_inverse(s, 1, cands, clen, sep, 1, prompt, 0, score, NULL), LD_ERR_INVALID_ARG, "prompt");
    ld_lm_session_free(s);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

/* Every session weight form (F32, F16, Q8_0 and Q4_K with the usual mix's head, an untied
 * Q8_0 head): decoding one token at a time through the KV cache (M = 1: the gemv and the
 * single-row dot kernels, or prepacked Q8_0 panels) gives the logits of one batched pass
 * over the whole sequence (M = 40: the F32 GEMM, the int8 GEMM, the same Q8_0 panels), and
 * each form stays close to F32. */
TEST(session_types_decode_matches_batched_pass) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    const ld_dtype body[] = {LD_F32, LD_F16, LD_Q8_0, LD_Q4_K, LD_Q8_0};
    const double close_to_f32[] = {0, 1e-3, 0.03, 0.2, 0.03};
    /* float forms: only the summation order differs; quantized ones: decoding quantizes the
     * activations per block of the row-dot kernels (Q8_K for Q4_K), the batched pass per
     * group of 32 of the int8 GEMM. Prepacked Q8_0 runs one kernel for both: only attention
     * differs, by float rounding (decode takes dot products with the key rows, the batched
     * pass transposed key blocks), which can still move an activation across a level: one
     * level is 1/127 of its group's largest value, so the bound is a little above 1/127
     * (gpt2 at the AVX2 level: 0.0072). */
    const double q8 = ld_qpack_supported(LD_Q8_0) ? 1e-2 : 3e-2;
    const double same_bound[] = {1e-4, 1e-4, q8, 3e-2, q8};
    for (int a = 0; a < 2; a++) {
        ld_lm_config cfg = ld_lm_default_config(a ? LD_ARCH_GPT2 : LD_ARCH_LLAMA);
        cfg.vocab_size = 300, cfg.hidden_size = 256, cfg.n_layers = 2, cfg.n_heads = 4, cfg.n_kv_heads = a ? 4 : 2;
        cfg.intermediate_size = 512, cfg.max_position = 48;
        for (int t = 0; t < (int)(sizeof body / sizeof body[0]); t++) {
            if (t == 4 && a) continue; /* GPT-2 always ties its head */
            cfg.tie_embeddings = t != 4;
            ld_lm *m = NULL;
            CHECK(ld_lm_new(ctx, &cfg, 5, &m) == LD_OK);
            enum { T = 40 }; /* the batched pass runs the quantized products in the int8 GEMM */
            int32_t ids[T];
            for (int i = 0; i < T; i++) ids[i] = (int32_t)((i * 37 + 11) % 300);
            ld_lm_session *full = NULL, *step = NULL, *ref = NULL;
            CHECK(ld_lm_session_new(m, 1, T, T, &full) == LD_OK && ld_lm_session_new(m, 1, T, T, &step) == LD_OK &&
                  ld_lm_session_new(m, 1, T, T, &ref) == LD_OK);
            if (body[t] != LD_F32) {
                ld_dtype head = ld_lm_mix_edge_type(body[t]);
                CHECK(ld_lm_session_quantize_ex(full, body[t], head) == LD_OK);
                CHECK(ld_lm_session_quantize_ex(step, body[t], head) == LD_OK);
            }
            const float *lf, *ls, *lr;
            ld_lm_segment seg = {0, ids, T};
            CHECK(ld_lm_session_eval(full, &seg, 1, true, &lf) == LD_OK);
            CHECK(ld_lm_session_eval(ref, &seg, 1, true, &lr) == LD_OK);
            double worst = 0, num = 0, den = 0;
            for (int i = 0; i < T; i++) {
                ld_lm_segment one = {0, ids + i, 1};
                CHECK(ld_lm_session_eval(step, &one, 1, false, &ls) == LD_OK);
                for (int v = 0; v < 300; v++) {
                    double d = fabs((double)ls[v] - lf[i * 300 + v]) / (1.0 + fabs((double)lf[i * 300 + v]));
                    worst = d > worst ? d : worst;
                    num += (lf[i * 300 + v] - lr[i * 300 + v]) * (double)(lf[i * 300 + v] - lr[i * 300 + v]);
                    den += (double)lr[i * 300 + v] * lr[i * 300 + v];
                }
            }
            const char *name = ld_dtype_traits(body[t])->name;
            CHECK_MSG(worst < same_bound[t], "%s %s: decode vs batched pass differ by %g", a ? "gpt2" : "llama", name, worst);
            CHECK_MSG(sqrt(num / den) <= close_to_f32[t], "%s %s: relative logit error %g vs F32", a ? "gpt2" : "llama",
                      name, sqrt(num / den));
            if (body[t] != LD_F32) CHECK(ld_lm_session_weight_bytes(full) < ld_lm_session_weight_bytes(ref));
            ld_lm_session_free(full), ld_lm_session_free(step), ld_lm_session_free(ref);
            ld_lm_free(m);
        }
    }
    /* bad types are errors, not crashes */
    ld_lm_config cfg = ld_lm_default_config(LD_ARCH_LLAMA);
    cfg.vocab_size = 64, cfg.hidden_size = 64, cfg.n_layers = 1, cfg.n_heads = 2, cfg.n_kv_heads = 2;
    cfg.intermediate_size = 64, cfg.max_position = 8;
    ld_lm *m = NULL;
    ld_lm_session *s = NULL;
    CHECK(ld_lm_new(ctx, &cfg, 1, &m) == LD_OK && ld_lm_session_new(m, 1, 8, 8, &s) == LD_OK);
    CHECK_STATUS(ctx, ld_lm_session_quantize_ex(s, LD_Q8_0, LD_BF16), LD_ERR_DTYPE, "head type");
    CHECK_STATUS(ctx, ld_lm_session_quantize_ex(s, LD_I32, LD_DTYPE_COUNT), LD_ERR_DTYPE, "matrix type");
    CHECK_STATUS(ctx, ld_lm_session_quantize(s, LD_F16), LD_ERR_DTYPE, "not a block type");
    CHECK(ld_lm_session_quantize_ex(NULL, LD_Q8_0, LD_Q8_0) == LD_ERR_INVALID_ARG);
    CHECK(ld_lm_session_weight_bytes(NULL) == 0);
    ld_lm_session_free(s);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

TEST(quantized_session_stays_close_to_f32) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (int a = 0; a < 2; a++) {
        ld_lm_config cfg = ld_lm_default_config(a ? LD_ARCH_GPT2 : LD_ARCH_LLAMA);
        cfg.vocab_size = 300, cfg.hidden_size = 64, cfg.n_layers = 2, cfg.n_heads = 4, cfg.n_kv_heads = a ? 4 : 2;
        cfg.intermediate_size = a ? 256 : 96, cfg.max_position = 32;
        ld_lm *m = NULL;
        ld_lm_new(ctx, &cfg, 11, &m);
        int32_t ids[12] = {1, 5, 9, 200, 7, 3, 3, 8, 250, 0, 17, 4};
        ld_dtype types[2] = {LD_Q8_0, LD_Q4_0};
        double bound[2] = {0.02, 0.15};
        ld_lm_session *f = NULL;
        CHECK(ld_lm_session_new(m, 1, 32, 32, &f) == LD_OK);
        const float *lf;
        ld_lm_segment seg = {0, ids, 12};
        CHECK(ld_lm_session_eval(f, &seg, 1, true, &lf) == LD_OK);
        for (int t = 0; t < 2; t++) {
            ld_lm_session *q = NULL;
            CHECK(ld_lm_session_new(m, 1, 32, 32, &q) == LD_OK);
            CHECK(ld_lm_session_quantize(q, types[t]) == LD_OK);
            const float *lq;
            CHECK(ld_lm_session_eval(q, &seg, 1, true, &lq) == LD_OK);
            double num = 0, den = 0;
            for (int i = 0; i < 12 * 300; i++) num += (lq[i] - lf[i]) * (double)(lq[i] - lf[i]), den += (double)lf[i] * lf[i];
            double rel = sqrt(num / den);
            CHECK_MSG(rel < bound[t] && rel > 0, "%s %s: relative logit error %g", a ? "gpt2" : "llama",
                      ld_dtype_traits(types[t])->name, rel);
            CHECK_STATUS(ctx, ld_lm_session_quantize(q, LD_Q8_0), LD_ERR_STATE, "already quantized");
            ld_lm_session_free(q);
        }
        ld_lm_session_free(f);
        ld_lm_free(m);
    }
    ld_ctx_free(ctx);
}

/* ld_lm_session_quantize_im: importance weights reach the quantizer per matrix (by the
 * parameter's name and K), the i-quants that need them refuse to run without, and a session
 * quantized with them runs close to F32. */
typedef struct im_calls {
    int calls, bad_k;
    float *w;     /* 256 weights: flat (1) or skewed */
    bool refuse;  /* return NULL */
} im_calls;
static const float *im_lookup(void *user, const char *name, int64_t K) {
    im_calls *c = user;
    c->calls++;
    if (K != 256 || !name || !strstr(name, "weight")) c->bad_k++;
    return c->refuse ? NULL : c->w;
}

TEST(session_quantize_with_importance) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config cfg = ld_lm_default_config(LD_ARCH_LLAMA);
    cfg.vocab_size = 300, cfg.hidden_size = 256, cfg.n_layers = 1, cfg.n_heads = 4, cfg.n_kv_heads = 2;
    cfg.intermediate_size = 256, cfg.max_position = 16;
    ld_lm *m = NULL;
    CHECK(ld_lm_new(ctx, &cfg, 5, &m) == LD_OK);
    int32_t ids[8] = {1, 5, 9, 200, 7, 3, 250, 17};
    ld_lm_segment seg = {0, ids, 8};
    ld_lm_session *f = NULL, *q = NULL;
    const float *lf, *lq;
    CHECK(ld_lm_session_new(m, 1, 16, 16, &f) == LD_OK && ld_lm_session_eval(f, &seg, 1, true, &lf) == LD_OK);
    float flat[256], skew[256];
    for (int i = 0; i < 256; i++) flat[i] = 1.0f, skew[i] = i % 7 == 0 ? 50.0f : 0.01f;
    /* no importance: refused by name of what is missing */
    CHECK(ld_lm_session_new(m, 1, 16, 16, &q) == LD_OK);
    CHECK_STATUS(ctx, ld_lm_session_quantize_ex(q, LD_IQ2_XXS, LD_Q6_K), LD_ERR_INVALID_ARG, "importance matrix");
    ld_lm_session_free(q), q = NULL;
    im_calls none = {0, 0, flat, true};
    CHECK(ld_lm_session_new(m, 1, 16, 16, &q) == LD_OK);
    CHECK_STATUS(ctx, ld_lm_session_quantize_im(q, LD_IQ2_XXS, LD_Q6_K, im_lookup, &none), LD_ERR_INVALID_ARG,
                 "importance matrix");
    CHECK(none.calls >= 1); /* up to the first matrix in IQ2_XXS (the head, Q6_K, may come first) */
    ld_lm_session_free(q), q = NULL;
    /* with them: every matrix asked for once (7 in the layer + the untied head), K right */
    im_calls c = {0, 0, flat, false};
    CHECK(ld_lm_session_new(m, 1, 16, 16, &q) == LD_OK);
    CHECK(ld_lm_session_quantize_im(q, LD_IQ2_XXS, LD_Q6_K, im_lookup, &c) == LD_OK);
    CHECK_MSG(c.calls == 8 && c.bad_k == 0, "%d calls, %d with a wrong K or name", c.calls, c.bad_k);
    CHECK(ld_lm_session_eval(q, &seg, 1, true, &lq) == LD_OK);
    double num = 0, den = 0;
    for (int i = 0; i < 8 * 300; i++) num += (lq[i] - lf[i]) * (double)(lq[i] - lf[i]), den += (double)lf[i] * lf[i];
    CHECK_MSG(sqrt(num / den) < 0.7 && num > 0, "IQ2_XXS: relative logit error %g", sqrt(num / den));
    CHECK(ld_lm_session_weight_bytes(q) < ld_lm_session_weight_bytes(f) / 4);
    ld_lm_session_free(q), q = NULL;
    /* the weights change the blocks (IQ4_XS takes them optionally): flat and skewed differ */
    float last[2][300];
    for (int k = 0; k < 2; k++) {
        im_calls w = {0, 0, k ? skew : flat, false};
        CHECK(ld_lm_session_new(m, 1, 16, 16, &q) == LD_OK);
        CHECK(ld_lm_session_quantize_im(q, LD_IQ4_XS, LD_Q6_K, im_lookup, &w) == LD_OK);
        CHECK(ld_lm_session_eval(q, &seg, 1, false, &lq) == LD_OK);
        memcpy(last[k], lq, sizeof last[k]);
        ld_lm_session_free(q), q = NULL;
    }
    CHECK(memcmp(last[0], last[1], sizeof last[0]) != 0);
    ld_lm_session_free(f);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

TEST(sampling_filters) {
    float logits[6] = {3.0f, 2.9f, 1.0f, 0.5f, -1.0f, -5.0f};
    void *scr = malloc(ld_sample_scratch_bytes(6));
    ld_rng r = ld_rng_init(1);
    ld_sample_params p = ld_sample_default_params();
    p.temperature = 0;
    CHECK(ld_sample_token(logits, 6, &p, NULL, 0, &r, scr) == 0);
    int32_t hist[1] = {0};
    p.repetition_penalty = 2.0f; /* token 0's logit 3.0 -> 1.5: token 1 wins */
    CHECK(ld_sample_token(logits, 6, &p, hist, 1, &r, scr) == 1);
    p = ld_sample_default_params();
    p.temperature = 1.0f, p.top_k = 2, p.top_p = 1.0f;
    int counts[6] = {0};
    for (int i = 0; i < 2000; i++) counts[ld_sample_token(logits, 6, &p, NULL, 0, &r, scr)]++;
    CHECK(counts[0] > 800 && counts[1] > 700 && counts[0] + counts[1] == 2000);
    p.top_k = 0, p.top_p = 0.4f; /* p(0) = 0.467 already reaches 0.4 */
    for (int i = 0; i < 200; i++) CHECK(ld_sample_token(logits, 6, &p, NULL, 0, &r, scr) == 0);
    p.top_p = 1.0f, p.min_p = 0.5f; /* p(2)/p(0) = e^-2 < 0.5: only tokens 0 and 1 */
    for (int i = 0; i < 200; i++) CHECK(ld_sample_token(logits, 6, &p, NULL, 0, &r, scr) <= 1);
    free(scr);
}

/* Greedy sampling (blocks reduced 16 lanes at a time) picks what the one-at-a-time loop
 * `if (z[v] > z[best]) best = v` picks: the first of equal maxima (across and within blocks,
 * +0 after -0), NaNs never (a NaN first logit gives 0), maxima in the tail, -inf everywhere. */
TEST(greedy_is_the_first_largest_logit) {
    enum { V = 1000 };
    float *z = malloc(V * sizeof(float));
    void *scr = malloc(ld_sample_scratch_bytes(V));
    ld_rng r = ld_rng_init(3);
    ld_sample_params p = ld_sample_default_params();
    p.temperature = 0;
    for (int trial = 0; trial < 400; trial++) {
        const int64_t n = 1 + (int64_t)ld_rng_below(&r, V);
        for (int64_t v = 0; v < n; v++) z[v] = (float)ld_rng_below(&r, 50) - 25.0f; /* many ties */
        switch (trial % 8) {
        case 1: z[ld_rng_below(&r, (uint64_t)n)] = NAN, z[ld_rng_below(&r, (uint64_t)n)] = NAN; break;
        case 2: z[0] = NAN; break;
        case 3: for (int64_t v = 0; v < n; v++) z[v] = -INFINITY; break;
        case 4: z[n - 1] = 100.0f; break;                           /* in the tail */
        case 5: z[0] = -0.0f, z[n / 2] = 0.0f, z[n - 1] = -0.0f;    /* all others below 0 */
                for (int64_t v = 1; v < n; v++) if (v != n / 2 && v != n - 1) z[v] = -1.0f;
                break;
        case 6: z[ld_rng_below(&r, (uint64_t)n)] = INFINITY; break;
        default: break;
        }
        int32_t want = 0;
        for (int64_t v = 1; v < n; v++)
            if (z[v] > z[want]) want = (int32_t)v;
        int32_t got = ld_sample_token(z, n, &p, NULL, 0, &r, scr);
        CHECK_MSG(got == want, "trial %d (V %lld): greedy picked %d, the first largest is %d", trial, (long long)n, got, want);
    }
    free(z), free(scr);
}

/* A quantized matrix too large to expand to F32 at once (the prefill's dequantized GEMM runs
 * it in bands of rows) computes what the row-dot decode computes. */
TEST(prefill_of_a_large_quantized_matrix_in_bands) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config cfg = ld_lm_default_config(LD_ARCH_LLAMA);
    cfg.vocab_size = 64, cfg.hidden_size = 256, cfg.n_layers = 1, cfg.n_heads = 4, cfg.n_kv_heads = 2;
    cfg.intermediate_size = 9216, cfg.max_position = 48; /* gate/up: 9216 x 256 = 2.4 M weights */
    ld_lm *m = NULL;
    ld_lm_session *full = NULL, *step = NULL;
    CHECK(ld_lm_new(ctx, &cfg, 3, &m) == LD_OK);
    CHECK(ld_lm_session_new(m, 1, 40, 40, &full) == LD_OK && ld_lm_session_new(m, 1, 40, 40, &step) == LD_OK);
    CHECK(ld_lm_session_quantize(full, LD_Q4_0) == LD_OK && ld_lm_session_quantize(step, LD_Q4_0) == LD_OK);
    int32_t ids[40];
    for (int i = 0; i < 40; i++) ids[i] = (int32_t)((i * 7 + 3) % 64);
    const float *lf, *ls;
    ld_lm_segment seg = {0, ids, 40};
    CHECK(full && ld_lm_session_eval(full, &seg, 1, true, &lf) == LD_OK);
    double worst = 0;
    for (int i = 0; step && i < 40; i++) {
        ld_lm_segment one = {0, ids + i, 1};
        CHECK(ld_lm_session_eval(step, &one, 1, false, &ls) == LD_OK);
        for (int v = 0; v < 64; v++) { /* (not fmax: gcc 12's aarch64 vectorizer crashes on an fmax reduction) */
            double e = fabs((double)ls[v] - lf[i * 64 + v]) / (1.0 + fabs((double)lf[i * 64 + v]));
            if (e > worst) worst = e;
        }
    }
    CHECK_MSG(worst < 3e-2, "banded prefill vs decode differ by %g", worst);
    ld_lm_session_free(full), ld_lm_session_free(step);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

TEST(config_validation_names_the_problem) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config c = tiny(LD_ARCH_LLAMA);
    c.hidden_size = 10, c.n_heads = 3;
    CHECK_STATUS(ctx, ld_lm_config_validate(ctx, &c), LD_ERR_INVALID_ARG, "not divisible by num_attention_heads");
    c = tiny(LD_ARCH_LLAMA);
    c.n_kv_heads = 3;
    CHECK_STATUS(ctx, ld_lm_config_validate(ctx, &c), LD_ERR_INVALID_ARG, "num_key_value_heads");
    static const struct { const char *json, *msg; ld_status st; } bad[] = {
        {"{", "invalid JSON", LD_ERR_FORMAT},
        {"[]", "expected a JSON object", LD_ERR_FORMAT},
        {"{\"model_type\":\"bert\"}", "not supported", LD_ERR_UNSUPPORTED},
        {"{\"model_type\":\"llama\",\"vocab_size\":10}", "required key 'hidden_size'", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":\"abc\"}", "expected an integer", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":3,\"max_position_embeddings\":8}", "not divisible", LD_ERR_INVALID_ARG},
        {"{\"model_type\":\"gpt2\",\"vocab_size\":10,\"n_embd\":8,\"n_layer\":1,\"n_head\":2,\"n_positions\":8,"
         "\"activation_function\":\"relu\"}", "not supported", LD_ERR_UNSUPPORTED},
        {"{\"model_type\":\"llama\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"rope_scaling\":{\"type\":\"longrope\"}}",
         "rope_scaling type 'longrope' is not supported", LD_ERR_UNSUPPORTED},
        {"{\"model_type\":\"qwen2\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":64,\"sliding_window\":16,\"use_sliding_window\":true}",
         "use_sliding_window", LD_ERR_UNSUPPORTED},
#define LLAMA_BASE "\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1," \
                   "\"num_attention_heads\":2,\"max_position_embeddings\":64"
        /* the newer fields */
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"eos_token_id\":[]}", "a list of 0 ids", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"eos_token_id\":[1,\"x\"]}", "item 1 is not a token id", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"eos_token_id\":[1,2,3,4,5,6,7,8,9]}", "a list of 9 ids", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"head_dim\":1}", "head_dim 1 outside", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"head_dim\":5}", "head size 5 must be even", LD_ERR_INVALID_ARG},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"rope_scaling\":5}", "expected an object or null", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"rope_scaling\":{\"factor\":2}}", "no \"rope_type\"", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":-1}}",
         "rope_scaling factor -1 outside", LD_ERR_INVALID_ARG},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"linear\",\"factor\":\"x\"}}",
         "'rope_scaling.factor': expected a number", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8}}",
         "needs original_max_position_embeddings", LD_ERR_FORMAT},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,"
         "\"original_max_position_embeddings\":8,\"low_freq_factor\":4,\"high_freq_factor\":4}}",
         "low_freq_factor (4) < high_freq_factor (4)", LD_ERR_INVALID_ARG},
        {"{\"model_type\":\"llama\"," LLAMA_BASE ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":0.5}}",
         "must be at least 1", LD_ERR_INVALID_ARG},
        {"{\"model_type\":\"mistral\"," LLAMA_BASE ",\"sliding_window\":-5}", "sliding_window -5 out of range",
         LD_ERR_FORMAT},
        {"{\"model_type\":\"gemma2\"," LLAMA_BASE ",\"tie_word_embeddings\":false}", "always ties", LD_ERR_UNSUPPORTED},
        {"{\"model_type\":\"gemma2\"," LLAMA_BASE ",\"hidden_activation\":\"silu\"}", "hidden_activation 'silu'",
         LD_ERR_UNSUPPORTED},
        {"{\"model_type\":\"gemma2\"," LLAMA_BASE ",\"query_pre_attn_scalar\":-4}", "query_pre_attn_scalar -4",
         LD_ERR_FORMAT},
        {"{\"model_type\":\"gemma2\"," LLAMA_BASE ",\"final_logit_softcapping\":-1}", "soft-caps", LD_ERR_INVALID_ARG},
        {"{\"model_type\":\"qwen3\"," LLAMA_BASE ",\"attention_bias\":true}", "attention_bias = true", LD_ERR_UNSUPPORTED},
        {"{\"model_type\":\"phi3\"," LLAMA_BASE ",\"rope_scaling\":{\"type\":\"longrope\"}}", "'longrope'",
         LD_ERR_UNSUPPORTED},
#undef LLAMA_BASE
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ld_lm_config out;
        CHECK_STATUS(ctx, ld_lm_config_from_json(ctx, bad[i].json, strlen(bad[i].json), "config.json", &out), bad[i].st,
                     bad[i].msg);
    }
    /* round trip through config.json: every variant, every field */
    for (variant v = 0; v < V_COUNT; v++) {
        ld_lm_config c0 = tiny_variant(v), c1;
        if (v == V_LLAMA) c0.n_eos_token_ids = 3, c0.eos_token_ids[0] = c0.eos_token_id, c0.eos_token_ids[1] = 7,
                          c0.eos_token_ids[2] = 9;
        char *js = ld_lm_config_to_json(&c0);
        CHECK_STATUS(ctx, js ? ld_lm_config_from_json(ctx, js, strlen(js), "x", &c1) : LD_ERR_NOMEM, LD_OK, NULL);
        CHECK_MSG(c1.hidden_size == c0.hidden_size && c1.n_kv_heads == c0.n_kv_heads &&
                      c1.tie_embeddings == c0.tie_embeddings && c1.intermediate_size == c0.intermediate_size &&
                      c1.arch == c0.arch && c1.family == c0.family && c1.qkv_bias == c0.qkv_bias &&
                      ld_lm_head_dim(&c1) == ld_lm_head_dim(&c0) && c1.sliding_window == c0.sliding_window &&
                      (c1.sliding_window == 0 || c1.sliding_window_pattern == c0.sliding_window_pattern) &&
                      c1.attn_softcap == c0.attn_softcap && c1.final_softcap == c0.final_softcap &&
                      fabsf(c1.query_scale - c0.query_scale) < 1e-6f && c1.rope_theta == c0.rope_theta &&
                      rope_scaling_equal(&c1.rope_scaling, &c0.rope_scaling) &&
                      c1.n_eos_token_ids == c0.n_eos_token_ids &&
                      !memcmp(c1.eos_token_ids, c0.eos_token_ids, sizeof c0.eos_token_ids),
                  "%s: config.json round trip", variant_names[v]);
        free(js);
    }
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

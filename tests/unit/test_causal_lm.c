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

static ld_lm_config tiny(ld_lm_arch arch) {
    ld_lm_config c = ld_lm_default_config(arch);
    if (arch == LD_ARCH_LLAMA + 2) { /* qwen2: llama with q/k/v biases */
        c = ld_lm_default_config(LD_ARCH_LLAMA);
        c.family = LD_FAMILY_QWEN2, c.qkv_bias = true;
        arch = LD_ARCH_LLAMA;
    }
    c.vocab_size = 23, c.hidden_size = 8, c.n_layers = 2, c.n_heads = 2, c.max_position = 16;
    c.n_kv_heads = arch == LD_ARCH_LLAMA ? 1 : 2;
    c.intermediate_size = arch == LD_ARCH_LLAMA ? 12 : 32;
    c.tie_embeddings = arch == LD_ARCH_GPT2;
    c.init_std = 0.3f; /* large weights: every path matters */
    return c;
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

/* naive causal attention, q [B,T,Hq,D], k/v [B,T,Hkv,D] */
static void dattention(double *out, const double *q, const double *k, const double *v, int64_t Hq, int64_t Hkv,
                       int64_t D) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++)
            for (int64_t i = 0; i < T; i++) {
                int64_t hk = h / (Hq / Hkv);
                double s[T], mx = -1e300, sum = 0;
                for (int64_t j = 0; j <= i; j++) {
                    double dot = 0;
                    for (int64_t d = 0; d < D; d++)
                        dot += q[((b * T + i) * Hq + h) * D + d] * k[((b * T + j) * Hkv + hk) * D + d];
                    s[j] = dot / sqrt((double)D);
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = 0; j <= i; j++) sum += (s[j] = exp(s[j] - mx));
                for (int64_t d = 0; d < D; d++) {
                    double o = 0;
                    for (int64_t j = 0; j <= i; j++) o += s[j] / sum * v[((b * T + j) * Hkv + hk) * D + d];
                    out[((b * T + i) * Hq + h) * D + d] = o;
                }
            }
}

static double dforward(dmodel *d, const int32_t *ids, const int32_t *targets, double *logits_out) {
    const ld_lm *m = d->m;
    const ld_lm_config *c = &m->cfg;
    int64_t C = c->hidden_size, Hq = c->n_heads, Hkv = c->n_kv_heads, D = C / Hq, I = c->intermediate_size;
    int64_t V = c->vocab_size, N = B * T, kvw = Hkv * D;
    double x[B * T * 8], h[B * T * 8], q[B * T * 8], k[B * T * 8], v[B * T * 8], a[B * T * 8], o[B * T * 8];
    double qkv[B * T * 24], f1[B * T * 32], f2[B * T * 32], mean[B * T], rstd[B * T];
    double *logits = logits_out;
    bool gpt2 = c->arch == LD_ARCH_GPT2;
    ld_ref64_embedding_fwd(x, ids, dparam(d, m->wte), N, C);
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
            dlinear(a, h, dparam(d, L->q), L->q_b ? dparam(d, L->q_b) : NULL, N, C, C, false);
            ld_ref64_rope_fwd(q, a, B, T, Hq, D, 0, c->rope_theta);
            dlinear(a, h, dparam(d, L->k), L->k_b ? dparam(d, L->k_b) : NULL, N, C, kvw, false);
            ld_ref64_rope_fwd(k, a, B, T, Hkv, D, 0, c->rope_theta);
            dlinear(v, h, dparam(d, L->v), L->v_b ? dparam(d, L->v_b) : NULL, N, C, kvw, false);
        }
        dattention(a, q, k, v, Hq, Hkv, D);
        dlinear(o, a, dparam(d, L->o), L->o_b ? dparam(d, L->o_b) : NULL, N, C, C, gpt2);
        for (int64_t i = 0; i < N * C; i++) x[i] += o[i];
        if (gpt2) ld_ref64_layernorm_fwd(h, mean, rstd, x, dparam(d, L->ln2_w), dparam(d, L->ln2_b), N, C, c->norm_eps);
        else ld_ref64_rmsnorm_fwd(h, rstd, x, dparam(d, L->ln2_w), N, C, c->norm_eps);
        if (gpt2) {
            dlinear(f1, h, dparam(d, L->up), dparam(d, L->up_b), N, C, I, true);
            ld_ref64_gelu_fwd(f2, f1, N * I);
            dlinear(o, f2, dparam(d, L->down), dparam(d, L->down_b), N, I, C, true);
        } else {
            dlinear(f1, h, dparam(d, L->gate), NULL, N, C, I, false);
            dlinear(f2, h, dparam(d, L->up), NULL, N, C, I, false);
            ld_ref64_swiglu_fwd(f1, f1, f2, N * I);
            dlinear(o, f1, dparam(d, L->down), NULL, N, I, C, false);
        }
        for (int64_t i = 0; i < N * C; i++) x[i] += o[i];
    }
    if (gpt2) ld_ref64_layernorm_fwd(h, mean, rstd, x, dparam(d, m->lnf_w), dparam(d, m->lnf_b), N, C, c->norm_eps);
    else ld_ref64_rmsnorm_fwd(h, rstd, x, dparam(d, m->lnf_w), N, C, c->norm_eps);
    dlinear(logits, h, dparam(d, m->lm_head), NULL, N, C, V, false);
    double loss[B * T], lse[B * T], sum = 0;
    int counted = 0;
    ld_ref64_xent_fwd(loss, lse, logits, targets, N, V, -100);
    for (int64_t r = 0; r < N; r++)
        if (targets[r] != -100) sum += loss[r], counted++;
    return sum / counted;
}

static void check_model(ld_lm_arch arch) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_lm_config cfg = tiny(arch);
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
    CHECK_MSG(max_logit_err < 1e-4, "max logit error %g", max_logit_err);

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
            CHECK_MSG(err < 2e-3, "%s[%lld]: tape %.8g vs finite difference %.8g", t->name, (long long)j, g, fd);
        }
    }
    static const char *const fam[] = {"llama", "mistral", "qwen2", "gpt2"};
    printf("  %s: loss %.6f, max logit err %.2g, worst grad rel err %.2g\n", fam[cfg.family],
           ref_loss, max_logit_err, worst);

    /* KV cache: prefill 3 tokens, then 2 single-token steps, per batch row; compare with the
     * full forward's logits */
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new(m, B, 16, 16, &s) == LD_OK);
    for (int b = 0; s && b < B; b++) {
        const float *lg;
        ld_lm_segment seg = {b, ids + b * T, 3};
        CHECK(ld_lm_session_eval(s, &seg, 1, true, &lg) == LD_OK);
        double rel = ld_test_max_rel_err(lg, (const float *)logits->data + b * T * 23, 3 * 23, 1.0);
        CHECK_MSG(rel < 1e-5, "prefill logits differ by %g", rel);
        for (int t = 3; t < T; t++) {
            ld_lm_segment one = {b, ids + b * T + t, 1};
            CHECK(ld_lm_session_eval(s, &one, 1, false, &lg) == LD_OK);
            rel = ld_test_max_rel_err(lg, (const float *)logits->data + (b * T + t) * 23, 23, 1.0);
            CHECK_MSG(rel < 1e-5, "decode step %d logits differ by %g", t, rel);
        }
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
        CHECK_STATUS(ctx, ld_lm_session_eval(s, &too_long, 1, false, &lg), LD_ERR_LIMIT, "past the context");
        int32_t bad_id = 99;
        ld_lm_segment bad = {1, &bad_id, 1};
        CHECK_STATUS(ctx, ld_lm_session_eval(s, &bad, 1, false, &lg), LD_ERR_INVALID_ARG, "outside the vocabulary");
    }
    ld_lm_session_free(s);
    for (int i = 0; i < d.n; i++) free(d.p[i]);
    ld_tape_free(tape);
    ld_lm_free(m);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(llama_matches_double_reference_and_finite_differences) {
    check_model(LD_ARCH_LLAMA);
}

TEST(gpt2_matches_double_reference_and_finite_differences) {
    check_model(LD_ARCH_GPT2);
}

TEST(qwen2_qkv_biases_match_double_reference_and_finite_differences) {
    check_model((ld_lm_arch)(LD_ARCH_LLAMA + 2));
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
         "\"num_attention_heads\":2,\"max_position_embeddings\":8,\"rope_scaling\":{\"type\":\"linear\"}}",
         "rope_scaling", LD_ERR_UNSUPPORTED},
        {"{\"model_type\":\"mistral\",\"vocab_size\":10,\"hidden_size\":8,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":2,\"max_position_embeddings\":64,\"sliding_window\":16}", "sliding_window", LD_ERR_UNSUPPORTED},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ld_lm_config out;
        CHECK_STATUS(ctx, ld_lm_config_from_json(ctx, bad[i].json, strlen(bad[i].json), "config.json", &out), bad[i].st,
                     bad[i].msg);
    }
    /* round trip through config.json */
    for (int a = 0; a < 3; a++) {
        ld_lm_config c0 = tiny((ld_lm_arch)a), c1;
        char *js = ld_lm_config_to_json(&c0);
        CHECK(js && ld_lm_config_from_json(ctx, js, strlen(js), "x", &c1) == LD_OK);
        CHECK(c1.hidden_size == c0.hidden_size && c1.n_kv_heads == c0.n_kv_heads && c1.tie_embeddings == c0.tie_embeddings &&
              c1.intermediate_size == c0.intermediate_size && c1.arch == c0.arch && c1.family == c0.family &&
              c1.qkv_bias == c0.qkv_bias);
        free(js);
    }
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

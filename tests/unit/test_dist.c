/* tests/unit/test_dist.c — the single-process parts of data-parallel training: the ZeRO-1
 * optimizer (a sharded AdamW updates exactly its range as the full one does; state copies in and
 * out by flat range), the tape's node-done hook the gradient buckets hang on, and the
 * optimizer-shard manifest's bad inputs (train/dist.c). The multi-rank behaviour is
 * tests/e2e/mpi_train.sh. */
#include "ld_test.h"
#include "nn/nn_internal.h"
#include "train/trainer_internal.h"

/* Three parameters (a matrix, a vector, a frozen one between them, another matrix), random
 * values and gradients from one seed, so two sets made alike are equal. */
static ld_params *make_set(ld_ctx *ctx) {
    ld_params *p = NULL;
    if (ld_params_new(ctx, &p)) return NULL;
    int64_t s1[2] = {7, 9}, s2[1] = {13}, s3[2] = {5, 3}, s4[2] = {11, 6};
    ld_tensor *t[4];
    if (ld_params_add(p, "a.weight", 2, s1, true, &t[0]) || ld_params_add(p, "a.bias", 1, s2, true, &t[1]) ||
        ld_params_add(p, "frozen.weight", 2, s3, false, &t[2]) || ld_params_add(p, "b.weight", 2, s4, true, &t[3]))
        return NULL;
    ld_rng r = ld_rng_init(11);
    for (int i = 0; i < 4; i++) {
        float *v = t[i]->data, *g = t[i]->grad ? t[i]->grad->data : NULL;
        for (int64_t k = 0; k < ld_tensor_numel(t[i]); k++) {
            v[k] = (float)ld_rng_uniform(&r) - 0.5f;
            if (g) g[k] = 3.0f * ((float)ld_rng_uniform(&r) - 0.5f);
        }
    }
    return p;
}

TEST(adamw_shards_update_their_range_like_the_full_step) {
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(NULL, &ctx) == LD_OK);
    ld_params *full = make_set(ctx), *split = make_set(ctx);
    CHECK(full && split);
    ld_adamw_config c = ld_adamw_default_config();
    c.max_grad_norm = 0.5f; /* clipping active: the norm must be the global one in every shard */
    ld_adamw *of = NULL, *o1 = NULL, *o2 = NULL;
    CHECK(ld_adamw_new(full, &c, &of) == LD_OK && ld_adamw_new(split, &c, &o1) == LD_OK &&
          ld_adamw_new(split, &c, &o2) == LD_OK);
    int64_t N = ld_adamw_numel(of);
    CHECK(N == 63 + 13 + 66);
    int64_t cut = 70; /* inside a.bias / b.weight boundary region, not a multiple of 16 */
    CHECK(ld_adamw_shard(o1, 0, cut) == LD_OK && ld_adamw_shard(o2, cut, N) == LD_OK);
    CHECK(ld_adamw_shard(o1, 5, N + 1) == LD_ERR_INVALID_ARG);
    int64_t lo, hi;
    ld_adamw_range(o2, &lo, &hi);
    CHECK(lo == cut && hi == N);
    CHECK(ld_adamw_state(o1, ld_params_find(split, "b.weight"), 0) == NULL); /* outside o1's range */
    for (int step = 0; step < 3; step++) {
        double nf = 0, n1 = 0, n2 = 0;
        CHECK(ld_adamw_step(of, 1e-2f, 0.5f, &nf) == LD_OK);
        CHECK(ld_adamw_step(o1, 1e-2f, 0.5f, &n1) == LD_OK);
        CHECK(ld_adamw_step(o2, 1e-2f, 0.5f, &n2) == LD_OK);
        CHECK(nf == n1 && nf == n2);
    }
    int bad = 0;
    for (int i = 0; i < ld_params_count(full); i++) {
        const float *a = ld_params_at(full, i)->data, *b = ld_params_at(split, i)->data;
        for (int64_t k = 0; k < ld_tensor_numel(ld_params_at(full, i)); k++) bad += fabsf(a[k] - b[k]) > 1e-6f;
    }
    CHECK(bad == 0);
    /* state by flat range: o1 + o2 hold what the full optimizer holds */
    float mf[142], vf[142], ms[142], vs[142];
    CHECK(ld_adamw_state_io(of, 0, N, mf, vf, false) == LD_OK);
    CHECK(ld_adamw_state_io(o1, 0, cut, ms, vs, false) == LD_OK);
    CHECK(ld_adamw_state_io(o2, cut, N - cut, ms + cut, vs + cut, false) == LD_OK);
    bad = 0;
    for (int64_t k = 0; k < N; k++) bad += fabsf(mf[k] - ms[k]) > 1e-6f || fabsf(vf[k] - vs[k]) > 1e-9f;
    CHECK(bad == 0);
    CHECK(ld_adamw_state_io(o1, cut - 1, 2, ms, vs, false) == LD_ERR_INVALID_ARG); /* crosses its range */
    CHECK(strstr(ld_ctx_error(ctx), "not in this optimizer's state") != NULL);
    /* into the state and back */
    for (int64_t k = 0; k < N - cut; k++) ms[k] = (float)k, vs[k] = (float)(2 * k);
    CHECK(ld_adamw_state_io(o2, cut, N - cut, ms, vs, true) == LD_OK);
    float m2[142], v2[142];
    CHECK(ld_adamw_state_io(o2, cut, N - cut, m2, v2, false) == LD_OK);
    CHECK(m2[5] == 5.0f && v2[N - cut - 1] == (float)(2 * (N - cut - 1)));
    ld_adamw_free(of), ld_adamw_free(o1), ld_adamw_free(o2);
    ld_params_free(full), ld_params_free(split);
    ld_ctx_free(ctx);
}

typedef struct hook_log {
    int seen[64];
    int n;
} hook_log;
static ld_status log_node(void *user, int node) {
    hook_log *h = user;
    if (h->n < 64) h->seen[h->n] = node;
    h->n++;
    return LD_OK;
}
static ld_status fail_node(void *user, int node) {
    (void)user;
    return node == 1 ? LD_ERR_IO : LD_OK;
}

TEST(tape_reports_every_node_last_first) {
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(NULL, &ctx) == LD_OK);
    ld_params *p = make_set(ctx);
    ld_tape *t = NULL;
    CHECK(p && ld_tape_new(ctx, &t) == LD_OK);
    ld_tensor *w = ld_params_find(p, "a.weight"), *b = ld_params_find(p, "a.bias"), *x = NULL, *y = NULL, *z = NULL, *l = NULL;
    int64_t xs[2] = {2, 9};
    CHECK(ld_tape_tensor(t, 2, xs, &x) == LD_OK);
    for (int k = 0; k < 18; k++) ((float *)x->data)[k] = 0.1f * (float)k;
    /* y = x W^T (nodes: linear, gelu, a reduction to a scalar) */
    CHECK(ld_op_linear(t, x, w, NULL, false, &y) == LD_OK);
    CHECK(ld_op_gelu(t, y, &z) == LD_OK);
    int64_t n = ld_tape_node_count(t);
    CHECK(n >= 2);
    CHECK(ld_tape_node_input(t, 0, 1) == w);
    CHECK(ld_tape_node_input(t, 0, 5) == NULL && ld_tape_node_input(t, (int)n, 0) == NULL);
    /* a loss: two logits per row, cross-entropy */
    int64_t ws[2] = {2, 7};
    ld_tensor *proj = NULL;
    CHECK(ld_tape_tensor(t, 2, ws, &proj) == LD_OK);
    for (int k = 0; k < 14; k++) ((float *)proj->data)[k] = 0.05f * (float)(k % 5);
    ld_tensor *s = NULL;
    CHECK(ld_op_linear(t, z, proj, NULL, false, &s) == LD_OK);
    (void)b;
    int32_t tgt[2] = {0, 1};
    CHECK(ld_op_cross_entropy(t, s, tgt, -100, &l, NULL) == LD_OK);
    hook_log h = {.n = 0};
    ld_tape_set_node_done(t, log_node, &h);
    CHECK(ld_tape_backward(t, l) == LD_OK);
    int total = ld_tape_node_count(t);
    CHECK(h.n == total);
    for (int k = 0; k < h.n && k < 64; k++) CHECK(h.seen[k] == total - 1 - k);
    /* a failing hook ends backward with its status; without a hook nothing is reported */
    ld_tape_set_node_done(t, fail_node, NULL);
    CHECK(ld_tape_backward(t, l) == LD_ERR_IO);
    ld_tape_set_node_done(t, NULL, NULL);
    h.n = 0;
    CHECK(ld_tape_backward(t, l) == LD_OK && h.n == 0);
    ld_tape_free(t);
    ld_params_free(p);
    ld_ctx_free(ctx);
}

TEST(opt_manifest_bad_inputs) {
    ld_ctx *ctx = NULL;
    CHECK(ld_ctx_new(NULL, &ctx) == LD_OK);
#define SH(f, lo, hi) "{\"file\": \"" f "\", \"lo\": " #lo ", \"hi\": " #hi "}"
#define PRM "\"parameters\": [{\"name\": \"w\", \"numel\": 40}, {\"name\": \"b\", \"numel\": 8}]"
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"", "not a version-1 optimizer shard manifest"},
        {"[1, 2]", "not a version-1"},
        {"{\"format_version\": 2, \"n_trainable\": 48, \"shards\": [], " PRM "}", "not a version-1"},
        {"{\"format_version\": 1, \"n_trainable\": -1, \"shards\": [" SH("a", 0, 48) "], " PRM "}", "not a version-1"},
        {"{\"format_version\": 1, \"n_trainable\": 4.5, \"shards\": [" SH("a", 0, 48) "], " PRM "}", "not a version-1"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": {}, " PRM "}", "not a version-1"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [], " PRM "}", "need 1 to 2^20 shards"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("../x", 0, 48) "], " PRM "}", "plain file name"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("..", 0, 48) "], " PRM "}", "plain file name"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("", 0, 48) "], " PRM "}", "plain file name"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [{\"lo\": 0, \"hi\": 48}], " PRM "}", "plain file name"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("a", 1, 48) "], " PRM "}", "shard 0: need lo = 0"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("a", 0, 16) "," SH("b", 17, 48) "], " PRM "}",
         "shard 1: need lo = 16"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("a", 0, 16) "," SH("b", 16, 8) "], " PRM "}",
         "shard 1: need lo = 16 and lo <= hi"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("a", 0, 49) "], " PRM "}", "hi <= n_trainable 48"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("a", 0, 40) "], " PRM "}",
         "the shards end at 40, not at n_trainable 48"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("a", 0, 48) "], \"parameters\": "
         "[{\"name\": \"w\", \"numel\": 0}]}",
         "parameter 0: need a string 'name' and a 'numel' >= 1"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("a", 0, 48) "], \"parameters\": "
         "[{\"name\": 7, \"numel\": 48}]}",
         "parameter 0: need a string"},
        {"{\"format_version\": 1, \"n_trainable\": 48, \"shards\": [" SH("a", 0, 48) "], \"parameters\": "
         "[{\"name\": \"w\", \"numel\": 40}]}",
         "the parameters hold 40 values, not n_trainable 48"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ld_opt_manifest m;
        ld_status st = ld_opt_manifest_parse(ctx, bad[i].text, strlen(bad[i].text), "ck/optimizer_shards.json", &m);
        CHECK(st != LD_OK);
        if (st == LD_OK) {
            fprintf(stderr, "  case %zu accepted: %s\n", i, bad[i].text);
            ld_opt_manifest_free(ctx, &m);
            continue;
        }
        bool named = strstr(ld_ctx_error(ctx), "ck/optimizer_shards.json") != NULL;
        bool says = strstr(ld_ctx_error(ctx), bad[i].want) != NULL;
        CHECK(named && says);
        if (!named || !says) fprintf(stderr, "  case %zu: got '%s', want '%s'\n", i, ld_ctx_error(ctx), bad[i].want);
    }
    const char *good = "{\"format_version\": 1, \"ranks\": 2, \"n_trainable\": 48, \"shards\": [" SH("o-0", 0, 16) ","
                       SH("o-1", 16, 48) "], " PRM "}";
    ld_opt_manifest m;
    CHECK(ld_opt_manifest_parse(ctx, good, strlen(good), "x.json", &m) == LD_OK);
    CHECK(m.n_shards == 2 && m.n_params == 2 && m.n_trainable == 48 && m.hi[1] == 48 && !strcmp(m.files[1], "o-1") &&
          !strcmp(m.names[0], "w") && m.numel[1] == 8);
    ld_opt_manifest_free(ctx, &m);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

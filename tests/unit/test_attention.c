/* tests/unit/test_attention.c — attention kernels: the double reference against central
 * finite differences; the optimized CPU kernels against the float reference on random and
 * odd shapes (causal and not, GQA, padding, KV-cache offsets, T = 1, odd head sizes);
 * decoding one query at a time equals the full causal forward; determinism; attention_fwd_kv on
 * F16 / Q8_0 rows equals attention on the widened rows. */
#include "kernels/kernels.h"
#include "kernels/ref/ref_f64.h"
#include "ld_test.h"

static void fill(float *x, int64_t n, ld_rng *r) {
    for (int64_t i = 0; i < n; i++) x[i] = ld_rng_normal(r);
}

typedef struct bufs {
    float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
} bufs;

static bufs alloc_bufs(const ld_attn_shape *s, ld_rng *r) {
    int64_t nq = s->B * s->Tq * s->Hq * s->D, nk = s->B * s->Tk * s->Hkv * s->D;
    bufs b = {malloc(4 * nq), malloc(4 * nk), malloc(4 * nk), malloc(4 * nq), malloc(4 * s->B * s->Hq * s->Tq),
              malloc(4 * nq), calloc(nq, 4), calloc(nk, 4), calloc(nk, 4)};
    fill(b.q, nq, r), fill(b.k, nk, r), fill(b.v, nk, r), fill(b.dout, nq, r);
    for (int64_t i = 0; i < nk; i++) b.dk[i] = 0.5f, b.dv[i] = -0.25f; /* backward accumulates */
    return b;
}
static void free_bufs(bufs *b) {
    free(b->q), free(b->k), free(b->v), free(b->out), free(b->lse), free(b->dout), free(b->dq), free(b->dk), free(b->dv);
}

static double max_err(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isinf(a[i]) && isinf(b[i]) && (a[i] > 0) == (b[i] > 0)) continue;
        double e = fabs((double)a[i] - b[i]) / (1.0 + fabs((double)b[i]));
        if (!(e <= m)) m = e;
    }
    return m;
}

static void compare_cpu_ref(ld_attn_shape s, uint64_t seed) {
    const ld_kernels *ref = ld_kernels_get(LD_BACKEND_REF), *cpu = ld_kernels_cpu_at(ld_test_isa_);
    ld_rng r = ld_rng_init(seed);
    bufs a = alloc_bufs(&s, &r);
    r = ld_rng_init(seed);
    bufs c = alloc_bufs(&s, &r);
    int64_t nq = s.B * s.Tq * s.Hq * s.D, nk = s.B * s.Tk * s.Hkv * s.D;
    ref->attention_fwd(a.out, a.lse, a.q, a.k, a.v, &s);
    cpu->attention_fwd(c.out, c.lse, c.q, c.k, c.v, &s);
    double eo = max_err(c.out, a.out, nq), el = max_err(c.lse, a.lse, s.B * s.Hq * s.Tq);
    void *scr_a = malloc(ref->attention_bwd_scratch(&s) + 64), *scr_c = malloc(cpu->attention_bwd_scratch(&s) + 64);
    ref->attention_bwd(a.dq, a.dk, a.dv, a.dout, a.out, a.lse, a.q, a.k, a.v, &s, scr_a);
    cpu->attention_bwd(c.dq, c.dk, c.dv, c.dout, c.out, c.lse, c.q, c.k, c.v, &s, scr_c);
    double eq = max_err(c.dq, a.dq, nq), ek = max_err(c.dk, a.dk, nk), ev = max_err(c.dv, a.dv, nk);
    CHECK_MSG(eo < 2e-5 && el < 2e-5 && eq < 2e-4 && ek < 2e-4 && ev < 2e-4,
              "B%lld Tq%lld Tk%lld Hq%lld Hkv%lld D%lld off%lld causal%d pad%d: out %g lse %g dq %g dk %g dv %g",
              (long long)s.B, (long long)s.Tq, (long long)s.Tk, (long long)s.Hq, (long long)s.Hkv, (long long)s.D,
              (long long)s.q_offset, s.causal, s.key_len != NULL, eo, el, eq, ek, ev);
    /* determinism: a second run gives the same bits */
    float *out2 = malloc(4 * nq), *lse2 = malloc(4 * s.B * s.Hq * s.Tq);
    cpu->attention_fwd(out2, lse2, c.q, c.k, c.v, &s);
    CHECK(memcmp(out2, c.out, 4 * nq) == 0);
    free(out2), free(lse2), free(scr_a), free(scr_c);
    free_bufs(&a), free_bufs(&c);
}

TEST_ISA(cpu_matches_ref_on_odd_shapes) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->attention_fwd, ld_kernels_ref.attention_fwd, "attention_fwd");
    static const int32_t lens[3] = {5, 1, 0};
    static const int32_t lens2[2] = {100, 37};
    ld_attn_shape shapes[] = {
        {.B = 1, .Tq = 1, .Tk = 1, .Hq = 1, .Hkv = 1, .D = 1, .causal = true},
        {.B = 2, .Tq = 17, .Tk = 17, .Hq = 4, .Hkv = 2, .D = 40, .causal = true},
        {.B = 2, .Tq = 17, .Tk = 17, .Hq = 4, .Hkv = 4, .D = 40, .causal = false},
        {.B = 1, .Tq = 130, .Tk = 130, .Hq = 4, .Hkv = 1, .D = 64, .causal = true},
        {.B = 1, .Tq = 70, .Tk = 70, .Hq = 2, .Hkv = 2, .D = 128, .causal = true},
        {.B = 3, .Tq = 9, .Tk = 9, .Hq = 2, .Hkv = 1, .D = 3, .causal = false, .key_len = lens},
        {.B = 2, .Tq = 100, .Tk = 100, .Hq = 3, .Hkv = 3, .D = 16, .causal = true, .key_len = lens2},
        {.B = 1, .Tq = 1, .Tk = 200, .Hq = 8, .Hkv = 2, .D = 64, .q_offset = 199, .causal = true}, /* decode */
        {.B = 2, .Tq = 5, .Tk = 77, .Hq = 2, .Hkv = 2, .D = 33, .q_offset = 72, .causal = true},  /* chunked prefill */
        /* grouped rows whose visible ends straddle a key block (some rows see none of it) */
        {.B = 1, .Tq = 10, .Tk = 71, .Hq = 2, .Hkv = 1, .D = 32, .q_offset = 61, .causal = true},
        {.B = 1, .Tq = 7, .Tk = 68, .Hq = 2, .Hkv = 2, .D = 128, .q_offset = 61, .causal = true},
        /* several query and key blocks, bidirectional (encoder), with padding, GQA of 4, head
         * sizes that are not a multiple of 8 or 16 */
        {.B = 2, .Tq = 150, .Tk = 150, .Hq = 4, .Hkv = 1, .D = 64, .causal = false, .key_len = lens2},
        {.B = 1, .Tq = 131, .Tk = 131, .Hq = 2, .Hkv = 2, .D = 37, .causal = true},
        {.B = 1, .Tq = 70, .Tk = 200, .Hq = 2, .Hkv = 1, .D = 24, .causal = false},
        {.B = 1, .Tq = 66, .Tk = 66, .Hq = 1, .Hkv = 1, .D = 256, .causal = true},
        /* sliding windows and soft-capped scores */
        {.B = 2, .Tq = 40, .Tk = 40, .Hq = 4, .Hkv = 2, .D = 32, .causal = true, .window = 7},
        {.B = 1, .Tq = 3, .Tk = 90, .Hq = 2, .Hkv = 1, .D = 64, .q_offset = 87, .causal = true, .window = 16},
        {.B = 1, .Tq = 33, .Tk = 33, .Hq = 2, .Hkv = 2, .D = 16, .causal = true, .softcap = 0.5f},
        {.B = 1, .Tq = 9, .Tk = 70, .Hq = 4, .Hkv = 2, .D = 32, .q_offset = 61, .causal = true, .window = 5,
         .softcap = 2.0f},
        /* windows over several key blocks (whole blocks before a window skipped), Gemma 2's
         * local-layer shape in small */
        {.B = 2, .Tq = 200, .Tk = 200, .Hq = 4, .Hkv = 2, .D = 64, .causal = true, .window = 70, .softcap = 1.5f},
        {.B = 1, .Tq = 100, .Tk = 230, .Hq = 2, .Hkv = 1, .D = 40, .q_offset = 130, .causal = true, .window = 97},
        {.B = 1, .Tq = 2, .Tk = 300, .Hq = 4, .Hkv = 1, .D = 128, .q_offset = 298, .causal = true, .window = 129,
         .softcap = 3.0f},
        {.B = 2, .Tq = 80, .Tk = 80, .Hq = 2, .Hkv = 2, .D = 16, .causal = false, .softcap = 0.7f, .key_len = lens2},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        shapes[i].scale = 1.0f / sqrtf((float)shapes[i].D);
        compare_cpu_ref(shapes[i], 100 + i);
    }
}

TEST_ISA(rows_without_visible_keys) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->attention_fwd, ld_kernels_ref.attention_fwd, "attention_fwd");
    static const int32_t lens[2] = {0, 3};
    ld_attn_shape s = {.B = 2, .Tq = 4, .Tk = 4, .Hq = 1, .Hkv = 1, .D = 8, .causal = false, .scale = 0.3f,
                       .key_len = lens};
    for (int be = 0; be < 2; be++) {
        const ld_kernels *k = be ? ld_kernels_cpu_at(ld_test_isa_) : ld_kernels_get(LD_BACKEND_REF);
        ld_rng r = ld_rng_init(3);
        bufs a = alloc_bufs(&s, &r);
        k->attention_fwd(a.out, a.lse, a.q, a.k, a.v, &s);
        for (int i = 0; i < 4; i++) CHECK(isinf(a.lse[i]) && a.lse[i] < 0);
        for (int i = 0; i < 4 * 8; i++) CHECK(a.out[i] == 0.0f);
        CHECK(isfinite(a.lse[4]));
        free_bufs(&a);
    }
}

TEST_ISA(decode_one_query_at_a_time_equals_full_forward) {
    ISA_OWN(ld_kernels_cpu_at(ld_test_isa_)->attention_fwd, ld_kernels_ref.attention_fwd, "attention_fwd");
    const ld_kernels *cpu = ld_kernels_cpu_at(ld_test_isa_);
    ld_attn_shape full = {.B = 1, .Tq = 50, .Tk = 50, .Hq = 4, .Hkv = 2, .D = 32, .causal = true,
                          .scale = 1.0f / sqrtf(32.0f)};
    ld_rng r = ld_rng_init(9);
    bufs a = alloc_bufs(&full, &r);
    cpu->attention_fwd(a.out, a.lse, a.q, a.k, a.v, &full);
    float out1[4 * 32], lse1[4];
    double worst = 0;
    for (int t = 0; t < 50; t++) {
        ld_attn_shape one = full;
        one.Tq = 1, one.Tk = t + 1, one.q_offset = t;
        /* the KV cache holds keys 0..t with the same row layout */
        cpu->attention_fwd(out1, lse1, a.q + t * 4 * 32, a.k, a.v, &one);
        double e = max_err(out1, a.out + t * 4 * 32, 4 * 32);
        if (e > worst) worst = e;
    }
    CHECK_MSG(worst < 1e-5, "decode differs from full forward by %g", worst);
    free_bufs(&a);
}

/* Rows [n, W] of f32 x stored in KV row format t (f16, or Q8_0 by hand: d = max|x| / 127 as
 * fp16, q = round(x / d)), and wide = the values those rows hold, widened by this test's own
 * code (not the kernels' readers). */
static void *kv_rows(int t, const float *x, int64_t n, int64_t W, float *wide) {
    if (t == LD_KV_F32) {
        memcpy(wide, x, (size_t)(n * W) * 4);
        void *r = malloc((size_t)(n * W) * 4);
        memcpy(r, x, (size_t)(n * W) * 4);
        return r;
    }
    if (t == LD_KV_F16) {
        uint16_t *h = malloc((size_t)(n * W) * 2);
        for (int64_t i = 0; i < n * W; i++) h[i] = ld_fp32_to_fp16(x[i]), wide[i] = ld_fp16_to_fp32(h[i]);
        return h;
    }
    uint8_t *r = malloc((size_t)(n * W / 32) * LD_KV_Q8_0_BLOCK);
    for (int64_t b = 0; b < n * W / 32; b++) {
        const float *v = x + b * 32;
        float mx = 0;
        for (int i = 0; i < 32; i++) mx = fabsf(v[i]) > mx ? fabsf(v[i]) : mx;
        const uint16_t dh = ld_fp32_to_fp16(mx / 127.0f);
        const float d = ld_fp16_to_fp32(dh);
        uint8_t *blk = r + b * LD_KV_Q8_0_BLOCK;
        memcpy(blk, &dh, 2);
        for (int i = 0; i < 32; i++) {
            float qf = d > 0 ? roundf(v[i] / d) : 0;
            const int8_t q = (int8_t)(qf > 127 ? 127 : qf < -127 ? -127 : qf);
            blk[2 + i] = (uint8_t)q;
            wide[b * 32 + i] = (float)q * d;
        }
    }
    return r;
}

/* attention_fwd_kv reads F16 and Q8_0 rows in place: the reference's result is the reference
 * attention's on the widened rows bit for bit, the level's its own attention_fwd's (whose
 * blocks and arithmetic it shares) bit for bit, and the two agree to float rounding. Shapes: decoding
 * with query groups of 4 and of 16 (two chunks of heads), a few queries with a window and a
 * soft-cap, prefill (blocked path), chunked prefill with padding, head sizes that are not
 * multiples of 8 (Q8_0 values read one by one), D = 256, windows over several key blocks. */
TEST_ISA(kv_formats_read_in_place_equal_widened_rows) {
    const ld_kernels *ref = ld_kernels_get(LD_BACKEND_REF), *cpu = ld_kernels_cpu_at(ld_test_isa_);
    ISA_OWN(cpu->attention_fwd_kv, ref->attention_fwd_kv, "attention_fwd_kv");
    static const int32_t lens[2] = {5, 1}, lens2[2] = {77, 40};
    ld_attn_shape shapes[] = {
        {.B = 1, .Tq = 1, .Tk = 200, .Hq = 8, .Hkv = 2, .D = 64, .q_offset = 199, .causal = true},
        {.B = 1, .Tq = 1, .Tk = 130, .Hq = 16, .Hkv = 1, .D = 64, .q_offset = 129, .causal = true},
        {.B = 1, .Tq = 3, .Tk = 90, .Hq = 2, .Hkv = 1, .D = 64, .q_offset = 87, .causal = true, .window = 16,
         .softcap = 3.0f},
        {.B = 1, .Tq = 70, .Tk = 70, .Hq = 4, .Hkv = 2, .D = 32, .causal = true},
        {.B = 2, .Tq = 5, .Tk = 77, .Hq = 2, .Hkv = 2, .D = 48, .q_offset = 72, .causal = true, .key_len = lens2},
        {.B = 1, .Tq = 2, .Tk = 40, .Hq = 8, .Hkv = 8, .D = 36, .q_offset = 38, .causal = true},
        {.B = 1, .Tq = 66, .Tk = 66, .Hq = 1, .Hkv = 1, .D = 256, .causal = true},
        {.B = 1, .Tq = 100, .Tk = 230, .Hq = 2, .Hkv = 1, .D = 64, .q_offset = 130, .causal = true, .window = 97},
        {.B = 2, .Tq = 9, .Tk = 9, .Hq = 2, .Hkv = 1, .D = 32, .causal = false, .key_len = lens},
    };
    static const int types[][2] = {{LD_KV_F16, LD_KV_F16}, {LD_KV_Q8_0, LD_KV_Q8_0}, {LD_KV_F16, LD_KV_Q8_0},
                                   {LD_KV_F32, LD_KV_F16}};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        ld_attn_shape s = shapes[i];
        s.scale = 1.0f / sqrtf((float)s.D);
        ld_rng r = ld_rng_init(700 + i);
        bufs a = alloc_bufs(&s, &r);
        const int64_t nq = s.B * s.Tq * s.Hq * s.D, nr = s.B * s.Tk, W = s.Hkv * s.D, nl = s.B * s.Hq * s.Tq;
        float *kw = malloc((size_t)(nr * W) * 4), *vw = malloc((size_t)(nr * W) * 4);
        float *o[4], *l[4];
        for (int j = 0; j < 4; j++) o[j] = malloc((size_t)nq * 4), l[j] = malloc((size_t)nl * 4);
        for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
            void *kr = kv_rows(types[t][0], a.k, nr, W, kw), *vr = kv_rows(types[t][1], a.v, nr, W, vw);
            ref->attention_fwd_kv(o[0], l[0], a.q, kr, types[t][0], vr, types[t][1], &s);
            ref->attention_fwd(o[1], l[1], a.q, kw, vw, &s);
            cpu->attention_fwd_kv(o[2], l[2], a.q, kr, types[t][0], vr, types[t][1], &s);
            cpu->attention_fwd(o[3], l[3], a.q, kw, vw, &s);
            double e = max_err(o[2], o[0], nq), el = max_err(l[2], l[0], nl);
            CHECK_MSG(!memcmp(o[0], o[1], (size_t)nq * 4) && !memcmp(l[0], l[1], (size_t)nl * 4),
                      "shape %zu types %d/%d: the reference differs from its attention on the widened rows", i,
                      types[t][0], types[t][1]);
            CHECK_MSG(!memcmp(o[2], o[3], (size_t)nq * 4) && !memcmp(l[2], l[3], (size_t)nl * 4),
                      "shape %zu types %d/%d: %s differs from its attention_fwd on the widened rows", i, types[t][0],
                      types[t][1], cpu->name);
            CHECK_MSG(e < 2e-5 && el < 2e-5, "shape %zu types %d/%d: %s vs reference: out %g lse %g", i, types[t][0],
                      types[t][1], cpu->name, e, el);
            free(kr), free(vr);
        }
        for (int j = 0; j < 4; j++) free(o[j]), free(l[j]);
        free(kw), free(vw), free_bufs(&a);
    }
}

/* Double reference backward vs central finite differences of a random projection of out. */
TEST(double_reference_backward_matches_finite_differences) {
    static const int32_t lens[2] = {5, 3};
    ld_attn_shape shapes[] = {
        {.B = 2, .Tq = 5, .Tk = 5, .Hq = 4, .Hkv = 2, .D = 3, .causal = true},
        {.B = 2, .Tq = 5, .Tk = 5, .Hq = 2, .Hkv = 2, .D = 3, .causal = false, .key_len = lens},
        {.B = 1, .Tq = 3, .Tk = 6, .Hq = 2, .Hkv = 1, .D = 4, .q_offset = 3, .causal = true},
        {.B = 2, .Tq = 6, .Tk = 6, .Hq = 2, .Hkv = 1, .D = 3, .causal = true, .window = 2},
        {.B = 1, .Tq = 5, .Tk = 5, .Hq = 2, .Hkv = 2, .D = 4, .causal = true, .softcap = 0.8f},
        {.B = 1, .Tq = 3, .Tk = 7, .Hq = 2, .Hkv = 1, .D = 3, .q_offset = 4, .causal = true, .window = 3, .softcap = 1.5f},
    };
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        ld_attn_shape s = shapes[si];
        s.scale = 0.7f;
        int64_t nq = s.B * s.Tq * s.Hq * s.D, nk = s.B * s.Tk * s.Hkv * s.D;
        double *q = malloc(8 * nq), *k = malloc(8 * nk), *v = malloc(8 * nk), *w = malloc(8 * nq), *out = malloc(8 * nq);
        double *lse = malloc(8 * s.B * s.Hq * s.Tq), *dq = calloc(nq, 8), *dk = calloc(nk, 8), *dv = calloc(nk, 8);
        ld_rng r = ld_rng_init(11 + si);
        for (int64_t i = 0; i < nq; i++) q[i] = ld_rng_normal(&r), w[i] = ld_rng_normal(&r);
        for (int64_t i = 0; i < nk; i++) k[i] = ld_rng_normal(&r), v[i] = ld_rng_normal(&r);
        ld_ref64_attention_fwd(out, lse, q, k, v, &s);
        ld_ref64_attention_bwd(dq, dk, dv, w, out, lse, q, k, v, &s, NULL);
        double *params[3] = {q, k, v}, *grads[3] = {dq, dk, dv};
        int64_t sizes[3] = {nq, nk, nk};
        double worst = 0;
        for (int p = 0; p < 3; p++)
            for (int64_t i = 0; i < sizes[p]; i++) {
                double keep = params[p][i], eps = 1e-6, lp = 0, lm = 0;
                params[p][i] = keep + eps;
                ld_ref64_attention_fwd(out, lse, q, k, v, &s);
                for (int64_t j = 0; j < nq; j++) lp += w[j] * out[j];
                params[p][i] = keep - eps;
                ld_ref64_attention_fwd(out, lse, q, k, v, &s);
                for (int64_t j = 0; j < nq; j++) lm += w[j] * out[j];
                params[p][i] = keep;
                double fd = (lp - lm) / (2 * eps), e = fabs(fd - grads[p][i]) / (1e-6 + fabs(fd));
                if (fabs(fd - grads[p][i]) < 1e-8) e = 0;
                if (e > worst) worst = e;
            }
        CHECK_MSG(worst < 1e-6, "shape %zu: worst relative error %g", si, worst);
        free(q), free(k), free(v), free(w), free(out), free(lse), free(dq), free(dk), free(dv);
    }
}

LD_TEST_MAIN()

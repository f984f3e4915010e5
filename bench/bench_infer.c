/* bench/bench_infer.c — `liandan bench infer`: KV-cached inference of a whole model in each
 * weight form, against the machine limits measured in the same run.
 *
 * Model: --model DIR|FILE.gguf, or a GPT-2-124M-shape model with random weights (12 layers,
 * 768 wide, 12 heads, vocab 50304, tied head, context 1024). Weight forms: --type T (any
 * number), by default F32 F16 Q8_0 Q4_K as session copies (ld_lm_session_quantize_ex with
 * the usual mix: the LM head in Q6_K for 4/5-bit bodies, else in the body's type); a GGUF
 * file also runs as loaded ("file"). F32, when asked for, runs first: each later form's prefill
 * is also given as a ratio to F32's. --type all: F32, F16 and every type liandan quantizes
 * (the i-quants that need an importance matrix get a flat one: the kernels read any blocks
 * at the same speed), then a summary row per type against issue 18's points: decode at
 * >= 80 % of the bandwidth limit (the cold row's share where the weights are
 * cache-resident), prefill >= F32's.
 *
 * (Shorter for a model whose context is under 512 tokens.)
 *  - decode at batch 1: 64 steps after an 8-token prompt (--depth N: after N tokens of context,
 *    prefilled 512 at a time, with that context in the row's name), tokens/s (median of --reps). Its
 *    limit is the read bandwidth over the bytes of weights one step reads
 *    (ld_lm_session_weight_bytes: every matrix in its stored type, the LM head included;
 *    the embedding row, norms and KV cache are negligible). The bandwidth is a plain read of
 *    at least LD_BENCH_LLC_FACTOR x the last-level cache on the same threads, measured right
 *    after each decode row (median of --reps): the machine is shared, and a number taken
 *    minutes earlier drifts. Weights smaller than that working set may be served partly from
 *    the cache, so their row is marked "cache-resident" and followed by a "cold" row: 16
 *    steps, each timed alone after a read of 2 x the last-level cache has evicted the
 *    weights, against the same bandwidth limit.
 *  - prefill of 512 tokens into an empty cache (logits of the last token only): tokens/s,
 *    and model FLOP/s = (2 P_body T + 2 P_head + 2 L C T (T + 1)) / time — every matrix
 *    product of the body, the head for the one row whose logits are wanted, and causal
 *    attention (Q·Kᵀ and P·V over the T(T+1)/2 visible pairs) — as a share of the fp32 FMA
 *    peak of the kernels' ISA level, or for weight types whose products run the int8 GEMM,
 *    of the int8 dot peak (with the fp32 share on the next row).
 * The KV cache holds --cache-type-k / --cache-type-v (F32 by default; F16, Q8_0). */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PROMPT 8
#define DECODE_STEPS 64
#define COLD_STEPS 16
#define PREFILL 512

typedef struct infer_run {
    ld_lm_session *s;
    int32_t *ids;           /* prompt + steps (at least PREFILL) token ids */
    int64_t steps, prefill; /* DECODE_STEPS and PREFILL, less for a model with a short context */
    int64_t prompt;         /* the context decode starts from: PROMPT, or --depth */
    ld_status st;
} infer_run;

/* The first n ids into an empty cache (PREFILL at a time), logits of the last one only. */
static void eval_from_empty(infer_run *r, int64_t n) {
    const float *lg;
    ld_lm_session_clear(r->s, 0);
    for (int64_t i = 0; i < n && !r->st; i += PREFILL) {
        ld_lm_segment seg = {0, r->ids + i, n - i < PREFILL ? n - i : PREFILL};
        r->st = ld_lm_session_eval(r->s, &seg, 1, false, &lg);
    }
}

/* The prompt alone: its median is subtracted from decode's to time the steps only. */
static void prompt_only(void *p) {
    infer_run *r = p;
    eval_from_empty(r, r->prompt);
}

static void decode(void *p) {
    infer_run *r = p;
    const float *lg;
    eval_from_empty(r, r->prompt);
    for (int64_t i = 0; i < r->steps && !r->st; i++) {
        ld_lm_segment seg = {0, r->ids + r->prompt + i, 1};
        r->st = ld_lm_session_eval(r->s, &seg, 1, false, &lg);
    }
}

static void prefill(void *p) {
    infer_run *r = p;
    eval_from_empty(r, r->prefill);
}

typedef struct read_run {
    const float *buf;
    size_t n;
    int threads;
    float sink;
} read_run;

/* Reads buf[0 .. n) on the team (the bandwidth row, and the cache flush of the cold rows). */
static void read_n(read_run *r, size_t n) {
    float sum = 0;
#pragma omp parallel num_threads(r->threads) reduction(+ : sum)
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        size_t lo = n / nt * t / 64 * 64, hi = t == nt - 1 ? n : n / nt * (t + 1) / 64 * 64;
        sum += ld_bench_stream_loops()->read(r->buf + lo, hi - lo);
    }
    r->sink = sum;
}

static void read_all(void *p) {
    read_run *r = p;
    read_n(r, r->n);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median over reps of the seconds per decode step with the last-level cache flushed
 * (reading `flush` floats) before each step; only the steps are timed. */
static double cold_step_seconds(infer_run *r, read_run *rd, size_t flush, int reps) {
    double t[64];
    if (reps > 64) reps = 64;
    const float *lg;
    for (int rep = 0; rep < reps && !r->st; rep++) {
        eval_from_empty(r, r->prompt);
        double sum = 0;
        for (int64_t i = 0; i < COLD_STEPS && i < r->steps && !r->st; i++) {
            read_n(rd, flush);
            ld_lm_segment seg = {0, r->ids + r->prompt + i, 1};
            const double t0 = ld_time_now();
            r->st = ld_lm_session_eval(r->s, &seg, 1, false, &lg);
            sum += ld_time_now() - t0;
        }
        t[rep] = sum / (double)(r->steps < COLD_STEPS ? r->steps : COLD_STEPS);
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_double);
    return reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
}

/* Parameters of the matrix products: the body's and the LM head's. */
static void matmul_params(ld_lm *m, double *body, double *head) {
    const ld_lm_config *c = ld_lm_config_of(m);
    ld_params *ps = ld_lm_params(m);
    *body = 0, *head = (double)(c->vocab_size * c->hidden_size);
    for (int i = 0; i < ld_params_count(ps); i++) {
        const ld_tensor *t = ld_params_at(ps, i);
        bool edge = strstr(t->name, "wte") || strstr(t->name, "wpe") || strstr(t->name, "embed_tokens") ||
                    strstr(t->name, "lm_head");
        if (t->ndim == 2 && !edge) *body += (double)ld_tensor_numel(t);
    }
}

/* A flat importance matrix (every column weighted 1) for the types whose quantizer needs
 * one: grown to the widest K asked for. */
typedef struct flat_imatrix {
    float *v;
    int64_t n;
} flat_imatrix;
static const float *flat_imatrix_get(void *user, const char *name, int64_t K) {
    (void)name;
    flat_imatrix *f = user;
    if (K > f->n) {
        float *v = realloc(f->v, (size_t)K * sizeof(float));
        if (!v) return NULL;
        for (int64_t i = 0; i < K; i++) v[i] = 1.0f;
        f->v = v, f->n = K;
    }
    return f->v;
}

/* What one form measured, for the F32 comparison and the summary (0: not measured). */
typedef struct type_result {
    double prefill_tok_s;
    double decode_share; /* of the bandwidth limit; the cold row's where cache-resident */
} type_result;

/* One weight form: `type` LD_DTYPE_COUNT = the model as loaded. */
static void bench_type(ld_ctx *ctx, ld_lm *m, ld_dtype type, const ld_bench_opts *o, const ld_machine_limits *lim,
                       read_run *rd, ld_bench_report *rep, type_result *res) {
    const ld_lm_config *c = ld_lm_config_of(m);
    infer_run r = {0};
    flat_imatrix flat = {0};
    *res = (type_result){0};
    const char *tn = type == LD_DTYPE_COUNT ? "file" : ld_dtype_traits(type)->name;
    const int64_t plen = c->max_position < PREFILL ? c->max_position : PREFILL;
    r.prompt = o->depth > 0 ? o->depth : PROMPT;
    r.prefill = plen, r.steps = plen - PROMPT < DECODE_STEPS ? plen - PROMPT : DECODE_STEPS;
    const int64_t len = r.prompt + r.steps > plen ? r.prompt + r.steps : plen;
    if (r.steps < 1 || len > c->max_position) {
        fprintf(stderr, "liandan bench infer: the model's context (%lld) is too short%s\n", (long long)c->max_position,
                o->depth > 0 ? " for --depth and 64 decode steps" : "");
        rep->failures++;
        return;
    }
    ld_lm_session_params sp = ld_lm_session_default_params();
    sp.max_len = len, sp.max_tokens = plen, sp.kv_type_k = o->kv_type_k, sp.kv_type_v = o->kv_type_v;
    if ((r.st = ld_lm_session_new_ex(m, &sp, &r.s))) goto out;
    if (type != LD_DTYPE_COUNT && (type != LD_F32 || ld_lm_in_place(m)) &&
        (r.st = ld_lm_session_quantize_im(r.s, type, ld_lm_mix_edge_type(type),
                                          ld_quant_needs_imatrix(type) ? flat_imatrix_get : NULL, &flat)))
        goto out;
    if (!(r.ids = malloc((size_t)len * sizeof(int32_t)))) goto out;
    ld_rng rng = ld_rng_init(3);
    for (int64_t i = 0; i < len; i++) r.ids[i] = (int32_t)ld_rng_below(&rng, (uint64_t)c->vocab_size);
    const int reps = o->reps;
    double t_all = ld_bench_median(decode, &r, reps), t_prompt = ld_bench_median(prompt_only, &r, reps);
    double t_read = ld_bench_median(read_all, rd, reps);
    if (r.st) goto out;
    double tok_s = (double)r.steps / (t_all - t_prompt), bytes = (double)ld_lm_session_weight_bytes(r.s);
    double bw = (double)rd->n * sizeof(float) / t_read, limit = bw / bytes;
    const double resident_below = LD_BENCH_LLC_FACTOR * lim->llc_bytes;
    const bool resident = bytes < resident_below;
    char name[128];
    if (o->depth > 0) snprintf(name, sizeof name, "%s decode batch 1 at context %lld (%.0f MB/token)", tn, (long long)o->depth, bytes * 1e-6);
    else snprintf(name, sizeof name, "%s decode batch 1 (%.0f MB/token)", tn, bytes * 1e-6);
    ld_bench_report_row(rep, "infer", name, tok_s, "tok/s", tok_s / limit,
                        resident ? "bandwidth limit, cache-resident" : "bandwidth limit");
    snprintf(name, sizeof name, "  limit: read %.1f GB/s / %.0f MB", bw * 1e-9, bytes * 1e-6);
    ld_bench_report_row(rep, "infer", name, limit, "tok/s", -1, NULL);
    if (resident) { /* weights under LD_BENCH_LLC_FACTOR x LLC: the same steps from a cold cache */
        const size_t flush = (size_t)(2 * lim->llc_bytes / sizeof(float));
        double cold = 1.0 / cold_step_seconds(&r, rd, flush < rd->n ? flush : rd->n, reps);
        if (r.st) goto out;
        snprintf(name, sizeof name, "%s decode cold (cache flushed each step)", tn);
        ld_bench_report_row(rep, "infer", name, cold, "tok/s", cold / limit, "bandwidth limit");
        res->decode_share = cold / limit;
    } else {
        res->decode_share = tok_s / limit;
    }
    double t_pre = ld_bench_median(prefill, &r, reps);
    if (r.st) goto out;
    double body, head;
    matmul_params(m, &body, &head);
    const double T = (double)r.prefill;
    double flops = 2 * body * T + 2 * head + 2.0 * (double)(c->n_layers * c->hidden_size) * T * (T + 1);
    res->prefill_tok_s = T / t_pre;
    snprintf(name, sizeof name, "%s prefill %lld tokens", tn, (long long)r.prefill);
    ld_bench_report_row(rep, "infer", name, res->prefill_tok_s, "tok/s", -1, NULL);
    /* the products of quantized types run the int8 GEMM where the level has one: int8 peak */
    const ld_dtype wt = type == LD_DTYPE_COUNT ? LD_F32 : type;
    const bool int8 = wt != LD_F32 && wt != LD_F16 && ld_qmatmul_has_gemm(wt, r.prefill) && lim->dot_i8_gops > 0;
    const double gf = flops / t_pre * 1e-9;
    snprintf(name, sizeof name, "%s prefill model FLOP/s", tn);
    if (int8) {
        ld_bench_report_row(rep, "infer", name, gf, "GFLOP/s", gf / lim->dot_i8_gops, "int8 dot peak");
        snprintf(name, sizeof name, "  %s prefill vs the fp32 FMA peak", tn);
        ld_bench_report_row(rep, "infer", name, gf, "GFLOP/s", lim->fma_f32_gflops > 0 ? gf / lim->fma_f32_gflops : -1,
                            "fp32 FMA peak");
    } else {
        ld_bench_report_row(rep, "infer", name, gf, "GFLOP/s", lim->fma_f32_gflops > 0 ? gf / lim->fma_f32_gflops : -1,
                            "fp32 FMA peak");
    }
out:
    if (r.st) fprintf(stderr, "liandan bench infer: %s: %s\n", tn, ld_ctx_error(ctx)), rep->failures++;
    if (r.st) *res = (type_result){0};
    free(flat.v);
    free(r.ids);
    ld_lm_session_free(r.s);
}

void ld_bench_infer(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&cp, &ctx)) return;
    ld_lm *m = NULL;
    ld_status st;
    bool gguf = o->model && ld_lm_gguf_sniff(o->model);
    if (!o->model) {
        ld_lm_config c = ld_bench_gpt2_124m();
        st = ld_lm_new(ctx, &c, 1, &m);
    } else if (gguf) {
        st = ld_lm_load_gguf_ex(ctx, o->model, NULL, &m, NULL);
    } else {
        st = ld_lm_load_ex(ctx, o->model, NULL, &m);
    }
    /* the bandwidth read: at least LD_BENCH_LLC_FACTOR x the last-level cache */
    size_t rn = (size_t)128 << 20;
    while ((double)rn * sizeof(float) < LD_BENCH_LLC_FACTOR * lim->llc_bytes) rn += (size_t)16 << 20;
    read_run rd = {.n = rn, .threads = o->threads};
    float *buf = st ? NULL : aligned_alloc(64, rd.n * sizeof(float));
    if (st || !buf) {
        fprintf(stderr, "liandan bench infer: %s\n", st ? ld_ctx_error(ctx) : "out of memory");
        rep->failures++;
        goto out;
    }
#pragma omp parallel for num_threads(o->threads) schedule(static)
    for (size_t i = 0; i < rd.n; i++) buf[i] = 1.0f;
    rd.buf = buf;
    static const ld_dtype defaults[] = {LD_F32, LD_F16, LD_Q8_0, LD_Q4_K};
    ld_dtype list[LD_DTYPE_COUNT + 1];
    type_result res[LD_DTYPE_COUNT + 1];
    int n = 0;
    if (gguf) list[n++] = LD_DTYPE_COUNT; /* as loaded */
    if (o->all_types) {
        list[n++] = LD_F32, list[n++] = LD_F16;
        for (int t = 0; t < LD_DTYPE_COUNT; t++)
            if (t != LD_F32 && t != LD_F16 && ld_quant_type_supported((ld_dtype)t)) list[n++] = (ld_dtype)t;
    } else if (o->n_types)
        for (int i = 0; i < o->n_types; i++) list[n++] = o->types[i];
    else if (!gguf)
        for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) list[n++] = defaults[i];
    /* F32 first (the file's own form after it): every other form's prefill is compared with it */
    for (int i = 1; i < n; i++)
        if (list[i] == LD_F32) {
            memmove(list + 1, list, (size_t)i * sizeof list[0]), list[0] = LD_F32;
            break;
        }
    double f32_prefill = 0;
    for (int i = 0; i < n; i++) {
        bench_type(ctx, m, list[i], o, lim, &rd, rep, &res[i]);
        const double tok_s = res[i].prefill_tok_s;
        if (list[i] == LD_F32) f32_prefill = tok_s;
        else if (f32_prefill > 0 && tok_s > 0) {
            char name[96];
            snprintf(name, sizeof name, "  %s / F32 prefill tokens/s", list[i] == LD_DTYPE_COUNT ? "file" : ld_dtype_traits(list[i])->name);
            ld_bench_report_row(rep, "infer", name, tok_s / f32_prefill, "x", -1, NULL);
        }
    }
    /* issue 18's points per type: decode >= 80 % of the bandwidth limit (cold where the
     * weights are cache-resident), prefill >= F32's (value: prefill / F32 prefill) */
    for (int i = 0; o->all_types && f32_prefill > 0 && i < n; i++) {
        if (!(res[i].prefill_tok_s > 0)) continue;
        const double x = res[i].prefill_tok_s / f32_prefill;
        const bool ok = res[i].decode_share >= 0.8 && (list[i] == LD_F32 || x >= 1.0);
        char name[96];
        snprintf(name, sizeof name, "summary %-8s %s", list[i] == LD_DTYPE_COUNT ? "file" : ld_dtype_traits(list[i])->name,
                 ok ? "meets" : res[i].decode_share < 0.8 && x < 1.0 && list[i] != LD_F32 ? "SHORT both"
                              : res[i].decode_share < 0.8 ? "SHORT decode" : "SHORT prefill");
        ld_bench_report_row(rep, "infer", name, x, "x F32 pf", res[i].decode_share, "decode of bandwidth limit");
    }
out:
    free(buf);
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

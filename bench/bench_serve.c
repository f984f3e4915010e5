/* bench/bench_serve.c — `liandan bench serve`: what continuous batching buys. The server's
 * scheduler (liandan/batch.h, the same code `liandan serve` runs per model) decodes N
 * independent greedy requests (16-token prompts, 64 new tokens each) at once, one forward pass
 * per step for all of them, for N = 1, 4, 16; rows give the aggregate generated tokens/s after
 * every prompt is read, the speed-up over one stream, and one stream's rate against the
 * bandwidth limit (bytes of weights a step reads / read bandwidth, measured in the same run).
 *
 * Model: --model DIR|FILE.gguf, or the GPT-2-124M shape with random weights; weights as
 * --type (default Q8_0: the 124M-shape Q8_0 of the serving acceptance; a GGUF file runs as
 * stored). p50/p99 request latencies over HTTP come from scripts/serve_load.sh. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

#define PROMPT 16
#define NEW_TOKENS 64

static void count(void *user, ld_finish why, int64_t computed, int64_t generated) {
    (void)why, (void)computed, (void)generated;
    ++*(int *)user;
}

/* Runs `streams` requests to the end; returns the generated tokens/s after the prompts. */
static double run(ld_lm *m, ld_dtype type, int streams, ld_status *st, size_t *weight_bytes, double *step_ms) {
    const ld_lm_config *c = ld_lm_config_of(m);
    ld_lm_batch_params bp = ld_lm_batch_default_params();
    bp.max_seqs = streams, bp.max_len = PROMPT + NEW_TOKENS + 1, bp.cache_seqs = 0;
    bp.step_tokens = streams * PROMPT > 256 ? streams * PROMPT : 256;
    ld_lm_batch *b = NULL;
    int32_t *ids = malloc((size_t)streams * PROMPT * sizeof *ids);
    double tok_s = 0;
    if (!ids || (*st = ld_lm_batch_new(m, &bp, &b))) goto out;
    ld_lm_session *s = ld_lm_batch_session(b);
    if (type != LD_DTYPE_COUNT && type != LD_F32 && (*st = ld_lm_session_quantize_ex(s, type, ld_lm_mix_edge_type(type))))
        goto out;
    *weight_bytes = ld_lm_session_weight_bytes(s);
    ld_rng rng = ld_rng_init(11);
    int done = 0;
    for (int i = 0; i < streams * PROMPT; i++) ids[i] = (int32_t)ld_rng_below(&rng, (uint64_t)c->vocab_size);
    for (int i = 0; i < streams && !*st; i++) {
        ld_lm_request r = {.prompt = ids + i * PROMPT, .n_prompt = PROMPT, .max_tokens = NEW_TOKENS,
                           .sample = ld_sample_default_params(), .on_done = count, .user = &done};
        r.sample.temperature = 0;
        *st = ld_lm_batch_submit(b, &r, NULL);
    }
    ld_lm_batch_stats bs;
    do { /* the prompts (every request is admitted and prefilled in the first steps) */
        if ((*st = ld_lm_batch_step(b, NULL))) goto out;
        ld_lm_batch_stats_get(b, &bs);
    } while (bs.prompt_tokens < (int64_t)streams * PROMPT);
    int64_t g0 = bs.generated_tokens, steps0 = bs.steps;
    double t0 = ld_time_now();
    while (done < streams && !*st) *st = ld_lm_batch_step(b, NULL);
    double dt = ld_time_now() - t0;
    ld_lm_batch_stats_get(b, &bs);
    tok_s = (double)(bs.generated_tokens - g0) / dt;
    *step_ms = 1e3 * dt / (double)(bs.steps - steps0);
out:
    ld_lm_batch_free(b);
    free(ids);
    return tok_s;
}

void ld_bench_serve(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
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
    } else {
        st = gguf ? ld_lm_load_gguf(ctx, o->model, &m, NULL) : ld_lm_load(ctx, o->model, &m);
    }
    ld_dtype type = o->n_types ? o->types[0] : gguf ? LD_DTYPE_COUNT : LD_Q8_0;
    const char *tn = type == LD_DTYPE_COUNT ? "file" : ld_dtype_traits(type)->name;
    static const int streams[] = {1, 4, 16};
    double single = 0;
    for (size_t i = 0; i < sizeof streams / sizeof streams[0] && !st; i++) {
        size_t bytes = 0;
        double step_ms = 0, tok_s = run(m, type, streams[i], &st, &bytes, &step_ms);
        if (st) break;
        char name[128];
        if (streams[i] == 1) {
            single = tok_s;
            double limit = lim->bw_read_gbs * 1e9 / (double)bytes;
            snprintf(name, sizeof name, "%s 1 stream (%.0f MB/token, %.1f ms/step)", tn, (double)bytes * 1e-6, step_ms);
            ld_bench_report_row(rep, "serve", name, tok_s, "tok/s", tok_s / limit, "bandwidth limit");
            continue;
        }
        snprintf(name, sizeof name, "%s %d streams aggregate (%.1f ms/step)", tn, streams[i], step_ms);
        ld_bench_report_row(rep, "serve", name, tok_s, "tok/s", -1, NULL);
        snprintf(name, sizeof name, "%s %d streams speed-up over 1", tn, streams[i]);
        ld_bench_report_row(rep, "serve", name, tok_s / single, "x", tok_s / single / streams[i], "linear scaling");
    }
    if (st) fprintf(stderr, "liandan bench serve: %s\n", ld_ctx_error(ctx));
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

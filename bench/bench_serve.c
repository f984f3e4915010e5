/* bench/bench_serve.c — `liandan bench serve`: what continuous batching buys. The server's
 * scheduler (liandan/batch.h, the same code `liandan serve` runs per model) decodes N
 * independent greedy requests (16-token prompts, 64 new tokens each) at once, one forward pass
 * per step for all of them, for N = 1, 4, 16; rows give the aggregate generated tokens/s after
 * every prompt is read, the speed-up over one stream, and one stream's rate against the
 * bandwidth limit (bytes of weights a step reads / read bandwidth, measured in the same run).
 * Each count runs --reps times (the counts interleaved) and rows give medians, with the wall
 * and process CPU milliseconds of a step; the speed-up row also gives the speed-up by CPU
 * time, the one to read with --threads 1 on a machine other processes share.
 *
 * Model: --model DIR|FILE.gguf, or the GPT-2-124M shape with random weights; weights as
 * --type (default Q8_0: the 124M-shape Q8_0 of the serving acceptance; a GGUF file runs as
 * stored). With --model (a tokenizer), 1 and 16 streams also run under a grammar (any JSON
 * object: json_object mode), each request with its own grammar state masking every step, and
 * the rows give their rate against the unconstrained one (the grammar's decode cost).
 * p50/p99 request latencies over HTTP come from scripts/serve_load.sh. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define PROMPT 16
#define NEW_TOKENS 64

/* The KV cache types of every run (--cache-type-k / --cache-type-v). */
static ld_dtype kv_k = LD_F32, kv_v = LD_F32;

static void count(void *user, ld_finish why, int64_t computed, int64_t generated) {
    (void)why, (void)computed, (void)generated;
    ++*(int *)user;
}

/* A grammar for the constrained rows: compiled once, one state per request; the time spent
 * in its mask and accept calls is summed in `seconds`. */
typedef struct bench_grammar {
    const ld_grammar *g;
    const ld_grammar_vocab *v;
    double seconds;        /* in the grammar */
    double decode_seconds; /* the whole decode */
} bench_grammar;
typedef struct timed_state {
    ld_grammar_state *s;
    bench_grammar *gr;
} timed_state;
static ld_status timed_mask(void *user, float *logits, int64_t V) {
    timed_state *t = user;
    double t0 = ld_time_now();
    ld_status st = ld_grammar_state_mask(t->s, logits, V);
    t->gr->seconds += ld_time_now() - t0;
    return st;
}
static ld_status timed_accept(void *user, int32_t token) {
    timed_state *t = user;
    double t0 = ld_time_now();
    ld_status st = ld_grammar_state_accept(t->s, token);
    t->gr->seconds += ld_time_now() - t0;
    return st;
}
static bool timed_complete(void *user) {
    return ld_grammar_state_complete(((timed_state *)user)->s);
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Runs `streams` requests to the end (under gr's grammar when given); returns the generated
 * tokens/s after the prompts, and the wall and process CPU milliseconds of a step. */
static double run(ld_lm *m, ld_dtype type, int streams, bench_grammar *gr, ld_status *st, size_t *weight_bytes,
                  double *step_ms, double *cpu_ms) {
    const ld_lm_config *c = ld_lm_config_of(m);
    ld_lm_batch_params bp = ld_lm_batch_default_params();
    bp.max_seqs = streams, bp.max_len = PROMPT + NEW_TOKENS + 1, bp.cache_seqs = 0;
    bp.kv_type_k = kv_k, bp.kv_type_v = kv_v;
    bp.step_tokens = streams * PROMPT > 256 ? streams * PROMPT : 256;
    ld_lm_batch *b = NULL;
    int32_t *ids = malloc((size_t)streams * PROMPT * sizeof *ids);
    timed_state *gs = calloc((size_t)streams, sizeof *gs);
    double tok_s = 0;
    if (!ids || !gs || (*st = ld_lm_batch_new(m, &bp, &b))) goto out;
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
        /* no stop token: the grammar (a list without end) keeps every request going */
        if (gr && !(*st = ld_grammar_state_new(ld_lm_session_ctx(s), gr->g, gr->v, NULL, 0, &gs[i].s))) {
            gs[i].gr = gr;
            r.constraint = (ld_lm_constraint){.mask = timed_mask, .accept = timed_accept, .complete = timed_complete, .user = &gs[i]};
        }
        if (!*st) *st = ld_lm_batch_submit(b, &r, NULL);
    }
    ld_lm_batch_stats bs;
    do { /* the prompts (every request is admitted and prefilled in the first steps) */
        if ((*st = ld_lm_batch_step(b, NULL))) goto out;
        ld_lm_batch_stats_get(b, &bs);
    } while (bs.prompt_tokens < (int64_t)streams * PROMPT);
    int64_t g0 = bs.generated_tokens, steps0 = bs.steps;
    if (gr) gr->seconds = 0;
    double t0 = ld_time_now(), c0 = cpu_now();
    while (done < streams && !*st) *st = ld_lm_batch_step(b, NULL);
    double dt = ld_time_now() - t0, dc = cpu_now() - c0;
    if (gr) gr->decode_seconds = dt;
    ld_lm_batch_stats_get(b, &bs);
    tok_s = (double)(bs.generated_tokens - g0) / dt;
    *step_ms = 1e3 * dt / (double)(bs.steps - steps0);
    *cpu_ms = 1e3 * dc / (double)(bs.steps - steps0);
out:
    ld_lm_batch_free(b);
    for (int i = 0; gs && i < streams; i++) ld_grammar_state_free(gs[i].s);
    free(ids), free(gs);
    return tok_s;
}

void ld_bench_serve(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    kv_k = o->kv_type_k, kv_v = o->kv_type_v;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&cp, &ctx)) return;
    ld_lm *m = NULL;
    ld_status st;
    bool gguf = o->model && ld_lm_gguf_sniff(o->model);
    if (!o->model) {
        ld_lm_config c = ld_bench_gpt2_124m();
        st = ld_lm_new(ctx, &c, 1, &m);
    } else {
        /* in place from the mapped file, as `liandan serve` loads it (the training loaders
         * would turn every matrix into an F32 copy) */
        st = gguf ? ld_lm_load_gguf_ex(ctx, o->model, NULL, &m, NULL) : ld_lm_load_ex(ctx, o->model, NULL, &m);
    }
    ld_dtype type = o->n_types ? o->types[0] : gguf ? LD_DTYPE_COUNT : LD_Q8_0;
    const char *tn = type == LD_DTYPE_COUNT ? "file" : ld_dtype_traits(type)->name;
    /* each stream count `reps` times, the runs of the counts interleaved (a shared machine's
     * load drifts); medians of tokens/s, and of the process CPU time per step (with one
     * thread, a rate that time given to other processes does not change) */
    enum { NS = 3, MAX_REPS = 64 };
    static const int streams[NS] = {1, 4, 16};
    const int reps = o->reps < 1 ? 1 : o->reps > MAX_REPS ? MAX_REPS : o->reps;
    double rate[NS][MAX_REPS], wall[NS][MAX_REPS], cpu[NS][MAX_REPS];
    size_t bytes = 0;
    for (int r = 0; r < reps && !st; r++)
        for (int i = 0; i < NS && !st; i++) rate[i][r] = run(m, type, streams[i], NULL, &st, &bytes, &wall[i][r], &cpu[i][r]);
    double single = 0, single_cpu = 0;
    for (int i = 0; i < NS && !st; i++) {
        const double tok_s = ld_bench_median_of(rate[i], reps), step_ms = ld_bench_median_of(wall[i], reps),
                     cpu_ms = ld_bench_median_of(cpu[i], reps);
        char name[160];
        if (streams[i] == 1) {
            single = tok_s, single_cpu = cpu_ms;
            double limit = lim->bw_read_gbs * 1e9 / (double)bytes;
            snprintf(name, sizeof name, "%s 1 stream (%.0f MB/token, %.1f ms/step, %.1f CPU ms/step)", tn,
                     (double)bytes * 1e-6, step_ms, cpu_ms);
            ld_bench_report_row(rep, "serve", name, tok_s, "tok/s", tok_s / limit, "bandwidth limit");
            continue;
        }
        snprintf(name, sizeof name, "%s %d streams aggregate (%.1f ms/step, %.1f CPU ms/step)", tn, streams[i], step_ms,
                 cpu_ms);
        ld_bench_report_row(rep, "serve", name, tok_s, "tok/s", -1, NULL);
        snprintf(name, sizeof name, "%s %d streams speed-up over 1 (by CPU time: %.2fx)", tn, streams[i],
                 streams[i] * single_cpu / cpu_ms);
        ld_bench_report_row(rep, "serve", name, tok_s / single, "x", tok_s / single / streams[i], "linear scaling");
    }
    /* the same under a grammar (needs the model's tokenizer): a JSON list of numbers and
     * strings that never closes, so every request runs its 64 tokens; the rows give the
     * share of the decode time spent masking and advancing the grammar */
    static const char list[] = "root ::= \"[\" ws item ( \",\" ws item )*\n"
                               "item ::= [0-9]+ | \"\\\"\" [a-zA-Z0-9 ]* \"\\\"\"\nws ::= \" \"?\n";
    ld_tokenizer *tok = NULL;
    ld_grammar *g = NULL;
    ld_grammar_vocab *gv = NULL;
    char *gbnf = NULL;
    if (!st && o->model && !(st = ld_tokenizer_open(ctx, o->model, &tok)) && !(st = ld_grammar_parse(ctx, list, strlen(list), NULL, &g)))
        st = ld_grammar_vocab_new(ctx, tok, &gv);
    bench_grammar gr = {g, gv, 0, 0};
    static const int gstreams[] = {1, 16};
    for (size_t i = 0; gv && !st && i < sizeof gstreams / sizeof gstreams[0]; i++) {
        double step_ms = 0, cpu_ms = 0, tok_s = run(m, type, gstreams[i], &gr, &st, &bytes, &step_ms, &cpu_ms);
        if (st) break;
        double share = gr.seconds / gr.decode_seconds;
        char name[160];
        snprintf(name, sizeof name, "%s %d stream%s under a grammar: %.0f tok/s, %.1f ms/step, grammar share", tn,
                 gstreams[i], gstreams[i] > 1 ? "s" : "", tok_s, step_ms);
        ld_bench_report_row(rep, "serve", name, 100 * share, "%", share / 0.10, "10 % budget");
    }
    free(gbnf);
    ld_grammar_vocab_free(gv);
    ld_grammar_free(g);
    ld_tokenizer_free(tok);
    if (st) fprintf(stderr, "liandan bench serve: %s\n", ld_ctx_error(ctx));
    ld_lm_free(m);
    ld_ctx_free(ctx);
}

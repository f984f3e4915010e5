/* cli/cmd_eval.c — `liandan eval poetry` (share of sampled poems that are regular 5/7-character
 * verse, next to validation loss and the corpus's unigram entropy) and `liandan eval ppl`
 * (perplexity and bits per byte of a text file). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

static bool collect(void *user, int seq, int32_t tok) {
    ld_cli_text *t = user;
    return ld_cli_text_add(&t[seq], tok, NULL, 0);
}

/* Mean next-token loss (nats) over non-overlapping windows of the model's context in the
 * validation shards (at most max_windows of them). */
static int val_loss(ld_ctx *ctx, ld_lm *m, const ld_tokenizer *tok, const char *shards, int max_windows, double *out) {
    ld_batch_sampler *bs = NULL;
    ld_sampler_params sp = ld_sampler_default_params();
    sp.mode = LD_SAMPLE_SEQUENTIAL;
    if (ld_batch_sampler_open(ctx, shards, tok, &sp, &bs)) return ld_cli_fail(ctx, "opening the validation data");
    int64_t T = ld_lm_config_of(m)->max_position, V = ld_lm_config_of(m)->vocab_size;
    int32_t *w = malloc((size_t)(T + 1) * sizeof(int32_t));
    ld_lm_session *s = NULL;
    int rc = 0;
    double sum = 0;
    int64_t count = 0;
    if (!w || ld_lm_session_new(m, 1, T, T, &s)) rc = ld_cli_fail(ctx, "creating the session");
    for (int k = 0; k < max_windows && !rc; k++) {
        if (ld_batch_sampler_next(bs, w, 1, T)) {
            rc = ld_cli_fail(ctx, "reading validation data");
            break;
        }
        ld_lm_session_clear(s, 0);
        ld_lm_segment seg = {0, w, T};
        const float *lg;
        if (ld_lm_session_eval(s, &seg, 1, true, &lg)) {
            rc = ld_cli_fail(ctx, "evaluating");
            break;
        }
        for (int64_t t = 0; t < T; t++) {
            sum -= ld_logprob(lg + t * V, V, w[t + 1]);
            count++;
        }
    }
    if (!rc) *out = sum / (double)count;
    ld_lm_session_free(s);
    ld_batch_sampler_free(bs);
    free(w);
    return rc;
}

/* The text of a corpus file (TSV: the last column of each line) for the unigram entropy. */
static char *corpus_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap), *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while (buf && (got = getline(&line, &lcap, f)) > 0) {
        char *tab = strrchr(line, '\t'), *s = tab ? tab + 1 : line;
        size_t l = strlen(s);
        if (n + l + 1 > cap) {
            char *nb = realloc(buf, cap = 2 * (n + l + 1));
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        memcpy(buf + n, s, l);
        n += l;
    }
    free(line);
    fclose(f);
    *len = n;
    return buf;
}

static int eval_poetry(int argc, char **argv) {
    const char *dir = NULL, *val = NULL, *corpus = NULL, *prompt = "";
    long n = 100, threads = 0;
    bool show = false;
    ld_generate_params gp = ld_generate_default_params();
    gp.max_tokens = 100;
    for (int i = 1; i < argc; i++) {
        int r = ld_cli_sample_option(argc, argv, &i, &gp);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: liandan eval poetry MODEL_DIR [--n N] [--val-data SHARDS] [--corpus FILE] [--show]\n\n"
                   "Samples N poems (default 100; from BOS, or --prompt TEXT) and reports the share that are\n"
                   "regular 5- or 7-character verse with correct punctuation, next to the validation loss\n"
                   "(--val-data) and the unigram entropy of the corpus (--corpus, last TSV column).\n\n%s",
                   ld_cli_sample_help());
            return 0;
        }
        if (!strcmp(argv[i], "--n")) {
            if (!ld_cli_parse_int("--n", i + 1 < argc ? argv[++i] : NULL, 1, 100000, &n)) return 2;
        } else if (!strcmp(argv[i], "--threads")) {
            if (!ld_cli_parse_int("--threads", i + 1 < argc ? argv[++i] : NULL, 1, 4096, &threads)) return 2;
        } else if (!strcmp(argv[i], "--val-data") && i + 1 < argc) val = argv[++i];
        else if (!strcmp(argv[i], "--corpus") && i + 1 < argc) corpus = argv[++i];
        else if (!strcmp(argv[i], "--prompt") && i + 1 < argc) prompt = argv[++i];
        else if (!strcmp(argv[i], "--show")) show = true;
        else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else return fprintf(stderr, "liandan eval poetry: unexpected argument '%s'\n", argv[i]), 2;
    }
    if (!dir) return fprintf(stderr, "usage: liandan eval poetry MODEL_DIR (see --help)\n"), 2;
    ld_ctx *ctx = ld_cli_ctx((int)threads);
    ld_lm *m;
    ld_tokenizer *tok;
    int rc = ld_cli_load_model(ctx, dir, &m, &tok);
    if (rc) return rc;
    gp.eos_id = ld_tokenizer_eos_id(tok);
    enum { BATCH = 16 };
    int32_t *pids = NULL;
    int64_t plen = 0;
    rc = ld_cli_encode(ctx, tok, prompt, &pids, &plen);
    if (!rc && plen == 0) {
        free(pids);
        pids = malloc(sizeof(int32_t));
        pids[0] = ld_cli_start_token(tok, m);
        plen = 1;
    }
    int64_t ctx_len = ld_lm_config_of(m)->max_position;
    ld_lm_session *s = NULL;
    if (!rc && ld_lm_session_new(m, BATCH, ctx_len, ctx_len > 256 ? 256 : ctx_len, &s)) rc = ld_cli_fail(ctx, "session");
    ld_cli_text *texts = calloc(BATCH, sizeof *texts);
    long regular = 0, five = 0, seven = 0, done = 0;
    while (!rc && done < n) {
        int b = n - done < BATCH ? (int)(n - done) : BATCH;
        const int32_t *prompts[BATCH];
        int64_t lens[BATCH];
        for (int i = 0; i < b; i++) prompts[i] = pids, lens[i] = plen, ld_cli_text_init(&texts[i], tok, NULL);
        gp.seed = (uint64_t)(1000 + done);
        if (ld_lm_generate(s, b, prompts, lens, &gp, collect, texts, NULL)) {
            rc = ld_cli_fail(ctx, "generating");
            break;
        }
        for (int i = 0; i < b; i++) {
            int cpl = 0;
            bool ok = ld_poem_is_regular(texts[i].buf, texts[i].len, &cpl);
            regular += ok, five += cpl == 5, seven += cpl == 7;
            if (show) printf("%s %s%s\n", ok ? "✓" : "✗", prompt, texts[i].buf);
        }
        done += b;
    }
    if (!rc) {
        printf("poems: %ld of %ld regular (%.1f%%): %ld five-character, %ld seven-character\n", regular, n,
               100.0 * (double)regular / (double)n, five, seven);
        double vl = 0;
        if (val && !val_loss(ctx, m, tok, val, 32, &vl))
            printf("validation loss: %.4f nats/token (perplexity %.2f)\n", vl, exp(vl));
        size_t len = 0;
        char *text = corpus ? corpus_text(corpus, &len) : NULL;
        ld_unigram_stats us;
        if (text && !ld_unigram_entropy(ctx, text, len, &us))
            printf("corpus unigram entropy: %.3f bits/char (%.3f nats/char) over %zu characters, %zu distinct\n",
                   us.bits_per_char, us.nats_per_char, us.chars, us.distinct);
        else if (corpus) fprintf(stderr, "liandan: cannot read corpus %s\n", corpus);
        free(text);
    }
    free(texts);
    free(pids);
    ld_lm_session_free(s);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

/* Perplexity and bits per byte of a corpus file: documents joined with EOS, cut into windows
 * of the model's context; every token but each window's first is predicted. */
static int eval_ppl(int argc, char **argv) {
    const char *dir = NULL, *data = NULL;
    long threads = 0, max_windows = 0;
    ld_corpus_params cp = ld_corpus_default_params();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: liandan eval ppl MODEL_DIR --data FILE [--column N] [--max-windows N]\n\n"
                   "Perplexity (per token) and bits per byte of the documents of FILE (txt, tsv, jsonl,\n"
                   "fasta; TSV: the last column unless --column), joined with EOS and cut into windows\n"
                   "of the model's context.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--column")) {
            long c;
            if (!ld_cli_parse_int("--column", i + 1 < argc ? argv[++i] : NULL, 0, 100000, &c)) return 2;
            cp.tsv_column = (int)c;
        } else if (!strcmp(argv[i], "--max-windows")) {
            if (!ld_cli_parse_int("--max-windows", i + 1 < argc ? argv[++i] : NULL, 1, 1L << 30, &max_windows)) return 2;
        } else if (!strcmp(argv[i], "--threads")) {
            if (!ld_cli_parse_int("--threads", i + 1 < argc ? argv[++i] : NULL, 1, 4096, &threads)) return 2;
        } else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else return fprintf(stderr, "liandan eval ppl: unexpected argument '%s'\n", argv[i]), 2;
    }
    if (!dir || !data) return fprintf(stderr, "usage: liandan eval ppl MODEL_DIR --data FILE (see --help)\n"), 2;
    ld_ctx *ctx = ld_cli_ctx((int)threads);
    ld_lm *m;
    ld_tokenizer *tok;
    int rc = ld_cli_load_model(ctx, dir, &m, &tok);
    if (rc) return rc;
    int32_t *ids = NULL;
    size_t n = 0;
    double bytes = 0;
    rc = ld_cli_encode_corpus(ctx, tok, data, &cp, &ids, &n, &bytes);
    int64_t T = ld_cli_context(m, 1024), V = ld_lm_config_of(m)->vocab_size;
    ld_lm_session *s = NULL;
    double nll = 0;
    int64_t counted = 0, windows = 0;
    if (!rc && ld_lm_session_new(m, 1, T, T, &s)) rc = ld_cli_fail(ctx, "creating the session");
    ld_cli_bar bar = {0};
    for (size_t off = 0; !rc && off + 1 < n && (!max_windows || windows < max_windows); off += (size_t)T, windows++) {
        int64_t w = (int64_t)(n - off) < T ? (int64_t)(n - off) : T;
        ld_lm_session_clear(s, 0);
        ld_lm_segment seg = {0, ids + off, w};
        const float *lg;
        if (ld_lm_session_eval(s, &seg, 1, true, &lg)) {
            rc = ld_cli_fail(ctx, "evaluating");
            break;
        }
        for (int64_t t = 0; t + 1 < w; t++) {
            nll -= ld_logprob(lg + t * V, V, ids[off + (size_t)t + 1]);
            counted++;
        }
        ld_cli_progress(&bar, "evaluating", (double)(off + (size_t)w), (double)n, "tokens", 1);
    }
    if (!rc && counted) {
        /* bits per byte: the predicted tokens' share of the text's bytes */
        double frac = (double)counted / (double)n;
        printf("tokens %lld in %lld windows of %lld | loss %.4f nats/token | perplexity %.3f | %.4f bits/byte\n",
               (long long)counted, (long long)windows, (long long)T, nll / (double)counted, exp(nll / (double)counted),
               nll / log(2.0) / (bytes * frac));
    }
    free(ids);
    ld_lm_session_free(s);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "poetry")) return eval_poetry(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "ppl")) return eval_ppl(argc - 1, argv + 1);
    fprintf(stderr, "usage: liandan eval poetry|ppl MODEL_DIR [options]   (see liandan eval poetry --help)\n");
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
}

const ld_cli_command ld_cmd_eval = {"eval", "evaluate a model (poetry format, perplexity)", cmd_eval};

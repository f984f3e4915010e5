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

/* The documents of a corpus file (TSV: the last column) joined with newlines, for the unigram
 * entropy; NULL after printing the error. */
static char *corpus_text(ld_ctx *ctx, const char *path, size_t *len) {
    ld_corpus_params cp = ld_corpus_default_params();
    ld_corpus *c = NULL;
    if (ld_corpus_open(ctx, path, &cp, &c)) return ld_cli_fail(ctx, "reading the corpus"), NULL;
    size_t cap = 0, n = 0;
    char *buf = NULL;
    const char *doc;
    size_t dl;
    ld_status st;
    while ((st = ld_corpus_next(c, &doc, &dl)) == LD_OK) {
        if (n + dl + 2 > cap) {
            cap = 2 * (n + dl + 2) + 4096;
            char *nb = realloc(buf, cap);
            if (!nb) {
                st = ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            buf = nb;
        }
        memcpy(buf + n, doc, dl);
        n += dl;
        buf[n++] = '\n';
    }
    ld_corpus_close(c);
    if (st != LD_ERR_NOT_FOUND) return free(buf), ld_cli_fail(ctx, "reading the corpus"), NULL;
    *len = n;
    return buf ? buf : calloc(1, 1);
}

static int eval_poetry(int argc, char **argv) {
    const char *val = NULL, *corpus = NULL, *prompt = "";
    int64_t n = 100;
    int threads = 0;
    bool show = false;
    ld_cli_list pos = {0};
    ld_generate_params gp = ld_generate_default_params();
    gp.max_tokens = 100;
    ld_cli_opt sample[LD_CLI_SAMPLE_OPTS];
    ld_cli_sample_opts(&gp, sample);
    const ld_cli_opt opts[] = {
        LD_CLI_INT64("n", 'n', &n, 1, 1000000, "N", "poems to sample"),
        LD_CLI_STRING("prompt", 0, &prompt, "TEXT", "the poems' opening (default: none, from BOS)"),
        LD_CLI_STRING("val-data", 0, &val, "SHARDS", "validation shards: also report the validation loss"),
        LD_CLI_STRING("corpus", 0, &corpus, "FILE", "the training corpus: also report its unigram entropy"),
        LD_CLI_FLAG("show", 0, &show, "print every poem with its verdict"),
        LD_CLI_THREADS(&threads),
        LD_CLI_GROUP("sampling", sample),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "eval poetry", .args = "MODEL", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Samples N poems (seeds 1000, 1001, ...) and reports the share that are regular 5- or 7-character\n"
                 "verse with correct punctuation, next to the validation loss (--val-data) and the unigram entropy\n"
                 "of the corpus (--corpus; TSV: the last column)."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_lm *m;
    ld_tokenizer *tok;
    if ((rc = ld_cli_load_model(ctx, pos.v[0], &m, &tok))) return ld_cli_parse_free(&spec), ld_ctx_free(ctx), rc;
    gp.eos_id = ld_tokenizer_eos_id(tok);
    /* the inputs first: a bad --val-data or --corpus fails before minutes of sampling */
    double vl = 0;
    ld_unigram_stats us = {0};
    if (val) rc = val_loss(ctx, m, tok, val, 32, &vl);
    if (!rc && corpus) {
        size_t len = 0;
        char *text = corpus_text(ctx, corpus, &len);
        if (!text) rc = 1;
        else if (ld_unigram_entropy(ctx, text, len, &us)) rc = ld_cli_fail(ctx, "unigram entropy");
        free(text);
    }
    enum { BATCH = 16 };
    int32_t *pids = NULL;
    int64_t plen = 0;
    if (!rc) rc = ld_cli_encode(ctx, tok, prompt, &pids, &plen);
    if (!rc && plen == 0) pids[0] = ld_cli_start_token(tok, m), plen = 1; /* room for 16 ids */
    int64_t ctx_len = ld_lm_config_of(m)->max_position;
    ld_lm_session *s = NULL;
    if (!rc && ld_lm_session_new(m, BATCH, ctx_len, ctx_len > 256 ? 256 : ctx_len, &s)) rc = ld_cli_fail(ctx, "session");
    ld_cli_text *texts = calloc(BATCH, sizeof *texts);
    if (!texts) rc = (fprintf(stderr, "liandan eval poetry: out of memory\n"), 1);
    int64_t regular = 0, five = 0, seven = 0, done = 0;
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
            bool ok = ld_poem_is_regular(ld_cli_text_str(&texts[i]), texts[i].len, &cpl);
            regular += ok, five += cpl == 5, seven += cpl == 7;
            if (show) printf("%s %s%s\n", ok ? "✓" : "✗", prompt, ld_cli_text_str(&texts[i]));
        }
        done += b;
    }
    if (!rc)
        printf("poems: %lld of %lld regular (%.1f%%): %lld five-character, %lld seven-character\n", (long long)regular,
               (long long)n, 100.0 * (double)regular / (double)n, (long long)five, (long long)seven);
    if (!rc && val) printf("validation loss: %.4f nats/token (perplexity %.2f)\n", vl, exp(vl));
    if (!rc && corpus)
        printf("corpus unigram entropy: %.3f bits/char (%.3f nats/char) over %zu characters, %zu distinct\n",
               us.bits_per_char, us.nats_per_char, us.chars, us.distinct);
    for (int i = 0; texts && i < BATCH; i++) ld_cli_text_free(&texts[i]);
    free(texts);
    free(pids);
    ld_lm_session_free(s);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

/* Perplexity and bits per byte of a corpus file: documents joined with EOS, cut into windows
 * of the model's context; every token but each window's first is predicted. */
static int eval_ppl(int argc, char **argv) {
    const char *data = NULL;
    int threads = 0;
    int64_t max_windows = 0;
    ld_cli_list pos = {0};
    ld_corpus_params cp = ld_corpus_default_params();
    const ld_cli_opt opts[] = {
        {.name = "data", .type = LD_CLI_T_STRING, .dest.s = &data, .arg = "FILE", .required = true,
         .help = "the text: txt, tsv, jsonl or fasta"},
        LD_CLI_INT("column", 0, &cp.tsv_column, -1, 1 << 20, "N", "TSV column, 0-based (-1: the last)"),
        LD_CLI_INT64("max-windows", 0, &max_windows, 0, 1LL << 40, "N", "evaluate at most N windows (0 = all)"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "eval ppl", .args = "MODEL", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Perplexity (per token) and bits per byte of the documents of --data, joined with EOS and cut\n"
                 "into windows of the model's context (at most 1024 tokens)."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *dir = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_lm *m;
    ld_tokenizer *tok;
    if ((rc = ld_cli_load_model(ctx, dir, &m, &tok))) return ld_cli_parse_free(&spec), ld_ctx_free(ctx), rc;
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
    ld_cli_parse_free(&spec);
    return rc;
}

static const ld_cli_command eval_poetry_cmd = {"poetry", "share of sampled poems that are regular verse", eval_poetry};
static const ld_cli_command eval_ppl_cmd = {"ppl", "perplexity and bits per byte of a text", eval_ppl};

static const ld_cli_command eval_mlm_cmd = {"mlm", "masked-LM loss and accuracy of an encoder vs the unigram baseline",
                                            ld_cli_eval_mlm};
static const ld_cli_command eval_probe_cmd = {"probe", "linear probes of a protein encoder (DeepLoc, SS3) vs baselines",
                                              ld_cli_eval_probe};
static const ld_cli_command eval_classify_cmd = {"classify", "fine-tunes an encoder for classification, scores it on a test file",
                                                 ld_cli_eval_classify};

static const ld_cli_command eval_retrieval_cmd = {
    "retrieval", "image-text retrieval recall of a clip model vs chance and bag of characters", ld_cli_eval_retrieval};
static const ld_cli_command eval_zeroshot_cmd = {"zeroshot", "zero-shot category accuracy of a clip model on emoji_clip",
                                                 ld_cli_eval_zeroshot};
static const ld_cli_command eval_tasks_cmd = {"tasks", "task files: zero/few-shot by likelihood, fine-tuned heads, EM/F1, GEC",
                                              ld_cli_eval_tasks};
static const ld_cli_command eval_forgetting_cmd = {"forgetting", "continual learning: each stage's model on every stage's data",
                                                   ld_cli_eval_forgetting};

static int cmd_eval(int argc, char **argv) {
    static const ld_cli_command *const subs[] = {&eval_poetry_cmd,    &eval_ppl_cmd,      &eval_mlm_cmd,
                                                 &eval_probe_cmd,     &eval_classify_cmd, &eval_tasks_cmd,
                                                 &eval_forgetting_cmd, &eval_retrieval_cmd, &eval_zeroshot_cmd};
    return ld_cli_dispatch("eval", "Evaluates a model (a model directory or GGUF file).", subs, 9, argc, argv);
}

const ld_cli_command ld_cmd_eval = {"eval", "evaluate a model (poetry, perplexity, tasks, forgetting, masked LM, probes, retrieval)",
                                    cmd_eval};

/* cli/cmd_data.c — `liandan data prepare` (corpora -> token shards, with a progress bar and a
 * summary) and `liandan data inspect` (a shard's header and first tokens). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The shared progress bar (cli/progress.c) over input megabytes. */
static void on_progress(void *user, double done, double total, int64_t docs, int64_t tokens) {
    (void)docs, (void)tokens; /* reported in the summary */
    ld_cli_progress(user, "prepare", done, total, "MB", 1e6);
}

static int cmd_prepare(int argc, char **argv) {
    const char *tok_path = NULL, *out = NULL;
    int threads = 0;
    bool no_dedup = false, no_eos = false;
    ld_cli_list inputs = {0};
    ld_prepare_params p = ld_prepare_default_params();
    p.val_fraction = 0.01;
    ld_cli_opt corpus[LD_CLI_CORPUS_OPTS];
    ld_cli_corpus_opts(&p.corpus, corpus);
    const ld_cli_opt opts[] = {
        {.name = "tokenizer", .short_name = 't', .type = LD_CLI_T_STRING, .dest.s = &tok_path, .arg = "T", .required = true,
         .help = "tokenizer.json, a WordPiece vocab.txt (characters), or amino (proteins)"},
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &out, .arg = "DIR", .required = true,
         .help = "writes DIR/train-NNNNN.bin and DIR/val-NNNNN.bin"},
        {.name = "out", .type = LD_CLI_T_STRING, .dest.s = &out}, /* the old spelling */
        LD_CLI_DOUBLE("val-fraction", 0, &p.val_fraction, 0, 1, 0, "X", "share of documents for validation, by content hash"),
        LD_CLI_FLAG("no-dedup", 0, &no_dedup, "keep exact duplicate documents"),
        LD_CLI_FLAG("no-eos", 0, &no_eos, "do not append EOS after each document"),
        LD_CLI_INT64("shard-tokens", 0, &p.shard_tokens, 1, 1LL << 40, "N", "tokens per shard file"),
        LD_CLI_THREADS(&threads),
        LD_CLI_GROUP("corpus", corpus),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "data prepare", .args = "INPUTS...", .opts = opts, .pos = &inputs, .min_pos = 1, .max_pos = -1,
        .about = "Reads corpus files (.txt: a document per line, .tsv, .jsonl, .fa/.fasta), normalises, removes\n"
                 "exact duplicates, splits train/validation by content hash and writes token shards."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    p.dedup = !no_dedup, p.add_eos = !no_eos;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_tokenizer *tok = NULL;
    if (ld_cli_load_tokenizer(ctx, tok_path, &tok) != LD_OK) {
        rc = ld_cli_fail(ctx, "loading the tokenizer");
        ld_cli_parse_free(&spec);
        ld_ctx_free(ctx);
        return rc;
    }
    ld_cli_bar bar = {0};
    double t0 = ld_time_now();
    p.n_threads = threads;
    p.progress = on_progress;
    p.progress_user = &bar;
    ld_prepare_stats st;
    ld_status s = ld_data_prepare(ctx, tok, inputs.v, inputs.n, out, &p, &st);
    if (s != LD_OK) {
        rc = ld_cli_fail(ctx, "data prepare");
    } else {
        double el = ld_time_now() - t0;
        int64_t tokens = st.train_tokens + st.val_tokens;
        printf("documents   %" PRId64 " read, %" PRId64 " duplicates dropped, %" PRId64 " train, %" PRId64 " val\n",
               st.docs, st.duplicates, st.train_docs, st.val_docs);
        printf("tokens      %" PRId64 " train, %" PRId64 " val; %.2f bytes/token\n", st.train_tokens, st.val_tokens,
               tokens ? (double)st.bytes / (double)tokens : 0.0);
        printf("shards      %d train, %d val in %s\n", st.n_train_shards, st.n_val_shards, out);
        printf("time        %.2f s, %.1f MB/s\n", el, el > 0 ? (double)st.bytes / el / 1e6 : 0.0);
    }
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

static int cmd_inspect(int argc, char **argv) {
    const char *tok_path = NULL;
    int64_t n_show = 32;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_INT64("tokens", 0, &n_show, 0, 1 << 20, "N", "how many tokens to print"),
        LD_CLI_STRING("tokenizer", 't', &tok_path, "T", "check the shard's tokenizer hash and decode the first tokens"),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {.cmd = "data inspect", .args = "SHARD", .opts = opts, .pos = &pos, .min_pos = 1,
                              .max_pos = 1, .about = "Prints a token shard's header (checked) and its first tokens."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *path = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_tokenizer *tok = NULL;
    ld_shard *s = NULL;
    if (tok_path && ld_cli_load_tokenizer(ctx, tok_path, &tok) != LD_OK) rc = ld_cli_fail(ctx, "loading the tokenizer");
    else if (ld_shard_open(ctx, path, tok, &s) != LD_OK) rc = ld_cli_fail(ctx, "data inspect");
    if (rc) {
        ld_tokenizer_free(tok);
        ld_ctx_free(ctx);
        ld_cli_parse_free(&spec);
        return rc;
    }
    int64_t n = ld_shard_tokens(s), d = ld_shard_docs(s);
    printf("shard           %s (checksums ok)\n", path);
    printf("tokens          %" PRId64 " (%d bytes each)\n", n, ld_shard_token_bytes(s));
    printf("documents       %" PRId64 " (mean %.1f tokens)\n", d, d ? (double)n / (double)d : 0.0);
    printf("vocab_size      %" PRId64 "\n", ld_shard_vocab_size(s));
    printf("tokenizer_hash  %016" PRIx64 "\n", ld_shard_tokenizer_hash(s));
    printf("first tokens   ");
    for (int64_t i = 0; i < n && i < n_show; i++) printf(" %d", ld_shard_token(s, i));
    printf("\n");
    if (d) printf("first document  tokens [0, %" PRId64 ")\n", ld_shard_doc_start(s, 1));
    if (tok) {
        int64_t m = n < n_show ? n : n_show;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)(m ? m : 1));
        size_t need = 0;
        char *text = NULL;
        if (ids) {
            ld_shard_read(s, 0, m, ids);
            ld_tokenizer_decode(tok, ids, (size_t)m, false, NULL, 0, &need);
            text = malloc(need + 1);
        }
        if (text && ld_tokenizer_decode(tok, ids, (size_t)m, false, text, need, &need) == LD_OK)
            printf("decoded         %.*s\n", (int)need, text);
        free(text);
        free(ids);
    }
    ld_shard_close(s);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return 0;
}

static const ld_cli_command prepare_cmd = {"prepare", "corpus files -> deduplicated token shards", cmd_prepare};
static const ld_cli_command inspect_cmd = {"inspect", "a token shard's header and first tokens", cmd_inspect};

static int cmd_data(int argc, char **argv) {
    static const ld_cli_command *const subs[] = {&prepare_cmd, &inspect_cmd};
    return ld_cli_dispatch("data", "Training data: corpora to token shards and back.", subs, 2, argc, argv);
}

const ld_cli_command ld_cmd_data = {"data", "corpora -> token shards (prepare), shard headers (inspect)", cmd_data};

/* cli/cmd_data.c — `liandan data prepare` (corpora -> token shards, with a progress bar and a
 * summary) and `liandan data inspect` (a shard's header and first tokens). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void prepare_usage(FILE *f) {
    fprintf(f,
            "usage: liandan data prepare INPUTS... --tokenizer TOKENIZER -o OUT_DIR [options]\n\n"
            "  INPUTS              .txt (a document per line), .tsv, .jsonl, .fa/.fasta files\n"
            "  --tokenizer T       tokenizer.json, a WordPiece vocab.txt (characters), or amino (proteins)\n"
            "  -o, --out DIR       writes DIR/train-NNNNN.bin and DIR/val-NNNNN.bin\n"
            "  --format F          txt | tsv | jsonl | fasta (default: from each file's extension)\n"
            "  --column N          TSV column, 0-based (default: the last)\n"
            "  --field NAME        JSONL string field (default: text)\n"
            "  --paragraphs        txt: a document per blank-line-separated paragraph\n"
            "  --nfkc              Unicode NFKC normalisation\n"
            "  --simplified        Traditional -> Simplified Chinese (OpenCC)\n"
            "  --collapse-whitespace  runs of whitespace -> one space, trimmed\n"
            "  --val-fraction X    share of documents for validation, by content hash (default 0.01)\n"
            "  --no-dedup          keep exact duplicate documents\n"
            "  --no-eos            do not append EOS after each document\n"
            "  --shard-tokens N    tokens per shard file (default 100000000)\n"
            "  --threads N         tokenizer threads (default: all cores)\n");
}

/* The shared progress bar (cli/progress.c) over input megabytes. */
static void on_progress(void *user, double done, double total, int64_t docs, int64_t tokens) {
    (void)docs, (void)tokens; /* reported in the summary */
    ld_cli_progress(user, "prepare", done, total, "MB", 1e6);
}

/* A tokenizer.json (character vocabularies — 'amino', vocab.txt — once the tokenizer layer
 * provides them). */
/* "amino" (the protein vocabulary), a WordPiece vocab.txt (character-level), or tokenizer.json. */
static ld_status load_tokenizer(ld_ctx *ctx, const char *spec, ld_tokenizer **tok) {
    size_t n = strlen(spec);
    if (!strcmp(spec, "amino")) return ld_tokenizer_new_amino(ctx, tok);
    if (n >= 4 && !strcmp(spec + n - 4, ".txt")) return ld_tokenizer_load_vocab_txt(ctx, spec, tok);
    return ld_tokenizer_load(ctx, spec, tok);
}

static int cmd_prepare(int argc, char **argv) {
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    int n_inputs = 0;
    const char *tok_path = NULL, *out = NULL;
    long threads = 0, column = -1;
    bool have_column = false;
    ld_prepare_params p = ld_prepare_default_params();
    p.val_fraction = 0.01;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            prepare_usage(stdout);
            free(inputs);
            return 0;
        } else if (!strcmp(a, "--tokenizer") && v) tok_path = v, i++;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && v) out = v, i++;
        else if (!strcmp(a, "--format") && v) {
            i++;
            if (!strcmp(v, "txt")) p.corpus.format = LD_CORPUS_TXT;
            else if (!strcmp(v, "tsv")) p.corpus.format = LD_CORPUS_TSV;
            else if (!strcmp(v, "jsonl")) p.corpus.format = LD_CORPUS_JSONL;
            else if (!strcmp(v, "fasta")) p.corpus.format = LD_CORPUS_FASTA;
            else {
                fprintf(stderr, "liandan: --format: '%s' is not txt, tsv, jsonl or fasta\n", v);
                free(inputs);
                return 2;
            }
        } else if (!strcmp(a, "--column")) {
            if (!ld_cli_parse_int(a, v, 0, 1 << 20, &column)) return free(inputs), 2;
            have_column = true;
            i++;
        } else if (!strcmp(a, "--field") && v) p.corpus.jsonl_field = v, i++;
        else if (!strcmp(a, "--paragraphs")) p.corpus.txt_paragraphs = true;
        else if (!strcmp(a, "--nfkc")) p.corpus.nfkc = true;
        else if (!strcmp(a, "--simplified")) p.corpus.to_simplified = true;
        else if (!strcmp(a, "--collapse-whitespace")) p.corpus.collapse_whitespace = true;
        else if (!strcmp(a, "--no-dedup")) p.dedup = false;
        else if (!strcmp(a, "--no-eos")) p.add_eos = false;
        else if (!strcmp(a, "--val-fraction") && v) {
            char *end;
            p.val_fraction = strtod(v, &end);
            if (*end || !(p.val_fraction >= 0 && p.val_fraction <= 1)) {
                fprintf(stderr, "liandan: --val-fraction: '%s' is not a number in [0, 1]\n", v);
                free(inputs);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--shard-tokens")) {
            long st;
            if (!ld_cli_parse_int(a, v, 1, 1L << 40, &st)) return free(inputs), 2;
            p.shard_tokens = st;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (!ld_cli_parse_int(a, v, 1, 4096, &threads)) return free(inputs), 2;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "liandan: data prepare: unknown option or missing value: %s\n\n", a);
            prepare_usage(stderr);
            free(inputs);
            return 2;
        } else inputs[n_inputs++] = a;
    }
    if (have_column) p.corpus.tsv_column = (int)column;
    if (!n_inputs || !tok_path || !out) {
        fprintf(stderr, "liandan: data prepare needs INPUTS, --tokenizer and -o\n\n");
        prepare_usage(stderr);
        free(inputs);
        return 2;
    }
    ld_ctx *ctx = ld_cli_ctx((int)threads);
    ld_tokenizer *tok = NULL;
    if (load_tokenizer(ctx, tok_path, &tok) != LD_OK) {
        int rc = ld_cli_fail(ctx, "loading the tokenizer");
        free(inputs);
        ld_ctx_free(ctx);
        return rc;
    }
    ld_cli_bar bar = {0};
    double t0 = ld_time_now();
    p.n_threads = (int)threads;
    p.progress = on_progress;
    p.progress_user = &bar;
    ld_prepare_stats st;
    ld_status s = ld_data_prepare(ctx, tok, inputs, n_inputs, out, &p, &st);
    int rc = 0;
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
    free(inputs);
    return rc;
}

static int cmd_inspect(int argc, char **argv) {
    const char *path = NULL, *tok_path = NULL;
    long n_show = 32;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: liandan data inspect SHARD [--tokens N] [--tokenizer T]\n"
                   "  --tokens N       how many tokens to print (default 32)\n"
                   "  --tokenizer T    check the shard's tokenizer hash and decode the first tokens\n");
            return 0;
        } else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) {
            tok_path = argv[++i];
        } else if (!strcmp(argv[i], "--tokens")) {
            if (!ld_cli_parse_int(argv[i], i + 1 < argc ? argv[i + 1] : NULL, 0, 1 << 20, &n_show)) return 2;
            i++;
        } else if (!path) path = argv[i];
        else {
            fprintf(stderr, "liandan: data inspect: unexpected argument %s\n", argv[i]);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: liandan data inspect SHARD [--tokens N]\n");
        return 2;
    }
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_tokenizer *tok = NULL;
    if (tok_path && load_tokenizer(ctx, tok_path, &tok) != LD_OK) {
        int rc = ld_cli_fail(ctx, "loading the tokenizer");
        ld_ctx_free(ctx);
        return rc;
    }
    ld_shard *s;
    if (ld_shard_open(ctx, path, tok, &s) != LD_OK) {
        int rc = ld_cli_fail(ctx, "data inspect");
        ld_tokenizer_free(tok);
        ld_ctx_free(ctx);
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
    return 0;
}

static int cmd_data(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "prepare")) return cmd_prepare(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "inspect")) return cmd_inspect(argc - 1, argv + 1);
    FILE *f = argc >= 2 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) ? stdout : stderr;
    fprintf(f, "usage: liandan data prepare INPUTS... --tokenizer T -o OUT_DIR [options]\n"
               "       liandan data inspect SHARD [--tokens N]\n");
    return f == stdout ? 0 : 2;
}

const ld_cli_command ld_cmd_data = {"data", "corpora -> token shards (prepare), shard headers (inspect)", cmd_data};

/* cli/cmd_tokenizer.c — `liandan tokenizer train` (learn a byte-level BPE from corpus files)
 * and `liandan tokenize` (text -> ids and ids -> text, for checking a tokenizer by hand). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_SPECIALS 64
#define MAX_FILES 256

/* Documents from several corpus files, one after the other. */
typedef struct files_source {
    ld_ctx *ctx;
    const char *const *paths;
    int n, at;
    ld_corpus_params cp;
    ld_corpus *cur;
} files_source;

static ld_status files_next(void *user, const char **doc, size_t *len) {
    files_source *f = user;
    for (;;) {
        if (!f->cur) {
            if (f->at == f->n) return LD_ERR_NOT_FOUND;
            ld_status st = ld_corpus_open(f->ctx, f->paths[f->at++], &f->cp, &f->cur);
            if (st) return st;
        }
        ld_status st = ld_corpus_next(f->cur, doc, len);
        if (st != LD_ERR_NOT_FOUND) return st;
        ld_corpus_close(f->cur);
        f->cur = NULL;
    }
}

static void train_progress(void *user, const char *phase, double done, double total) {
    ld_cli_bar *b = user;
    if (!strcmp(phase, "reading")) ld_cli_progress(b, phase, done, 0, "MB", 1e6);
    else if (!strcmp(phase, "merging")) ld_cli_progress(b, phase, done, total, "merges", 1);
    else if (strcmp(phase, "done")) ld_cli_progress(b, phase, done, total, "docs", 1);
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: liandan tokenizer train FILES... --vocab-size N -o tokenizer.json [options]\n\n"
            "Learns a byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen2 family) from corpus files and\n"
            "writes a Hugging Face tokenizer.json.\n\n"
            "options:\n"
            "  --vocab-size N       target vocabulary size, specials and the 256 bytes included\n"
            "  --min-frequency N    do not learn merges of pairs seen fewer times (default 2)\n"
            "  --special TOKEN      a special token (repeatable; default <|endoftext|>)\n"
            "  --pretokenizer P     gpt2 (default), llama3 or qwen2\n"
            "  --format F           txt, tsv, jsonl or fasta (default: from the file extension)\n"
            "  --column N           TSV column, 0-based (default: the last one)\n"
            "  --field NAME         JSONL string field (default \"text\")\n"
            "  --threads N          threads (default: all cores)\n");
}

static int tokenizer_train(int argc, char **argv) {
    const char *files[MAX_FILES], *out = NULL, *specials[MAX_SPECIALS];
    int n_files = 0, n_specials = 0;
    long vocab = 0, minf = 2, threads = 0, column = -1;
    ld_corpus_params cp = ld_corpus_default_params();
    ld_bpe_train_params p = ld_bpe_train_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return train_usage(stdout), 0;
        if (!strcmp(a, "--vocab-size")) {
            if (!ld_cli_parse_int(a, v, 257, 1 << 24, &vocab)) return 2;
            i++;
        } else if (!strcmp(a, "--min-frequency")) {
            if (!ld_cli_parse_int(a, v, 1, 1L << 40, &minf)) return 2;
            i++;
        } else if (!strcmp(a, "--threads")) {
            if (!ld_cli_parse_int(a, v, 1, 4096, &threads)) return 2;
            i++;
        } else if (!strcmp(a, "--column")) {
            if (!ld_cli_parse_int(a, v, 0, 100000, &column)) return 2;
            i++;
        } else if (!strcmp(a, "--special") && v && n_specials < MAX_SPECIALS) specials[n_specials++] = v, i++;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) out = v, i++;
        else if (!strcmp(a, "--field") && v) cp.jsonl_field = v, i++;
        else if (!strcmp(a, "--pretokenizer") && v) {
            i++;
            if (!strcmp(v, "gpt2")) p.pretokenizer = LD_PRETOK_GPT2;
            else if (!strcmp(v, "llama3")) p.pretokenizer = LD_PRETOK_LLAMA3;
            else if (!strcmp(v, "qwen2")) p.pretokenizer = LD_PRETOK_QWEN2;
            else return fprintf(stderr, "liandan: --pretokenizer: '%s' is not gpt2, llama3 or qwen2\n", v), 2;
        } else if (!strcmp(a, "--format") && v) {
            i++;
            if (!strcmp(v, "txt")) cp.format = LD_CORPUS_TXT;
            else if (!strcmp(v, "tsv")) cp.format = LD_CORPUS_TSV;
            else if (!strcmp(v, "jsonl")) cp.format = LD_CORPUS_JSONL;
            else if (!strcmp(v, "fasta")) cp.format = LD_CORPUS_FASTA;
            else return fprintf(stderr, "liandan: --format: '%s' is not txt, tsv, jsonl or fasta\n", v), 2;
        } else if (a[0] == '-') {
            return fprintf(stderr, "liandan tokenizer train: unknown option '%s' (see --help)\n", a), 2;
        } else if (n_files < MAX_FILES) {
            files[n_files++] = a;
        }
    }
    if (!n_files || !out || !vocab) return train_usage(stderr), 2;
    if (!n_specials) specials[n_specials++] = "<|endoftext|>";
    cp.tsv_column = (int)column;
    ld_ctx *ctx = ld_cli_ctx((int)threads);
    files_source fs = {ctx, files, n_files, 0, cp, NULL};
    ld_text_source src = {files_next, &fs};
    ld_cli_bar bar = {0};
    p.vocab_size = vocab, p.min_frequency = minf, p.special_tokens = specials, p.n_special_tokens = n_specials;
    p.progress = train_progress, p.progress_user = &bar;
    ld_tokenizer *tok = NULL;
    double t0 = ld_time_now();
    int rc = 0;
    if (ld_bpe_train(ctx, &p, &src, &tok)) rc = ld_cli_fail(ctx, "training the tokenizer");
    else if (ld_tokenizer_save(tok, out)) rc = ld_cli_fail(ctx, "writing the tokenizer");
    else
        fprintf(stderr, "liandan: %lld tokens (%d special) learned in %.1f s -> %s\n",
                (long long)ld_tokenizer_vocab_size(tok), n_specials, ld_time_now() - t0, out);
    if (fs.cur) ld_corpus_close(fs.cur);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
    return rc;
}

static int cmd_tokenizer(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "train")) return tokenizer_train(argc - 1, argv + 1);
    fprintf(stderr, "usage: liandan tokenizer train FILES... --vocab-size N -o tokenizer.json (see --help)\n");
    return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
}

/* ---- tokenize ---- */
static int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *text = NULL, *lines = NULL;
    bool decode = false, plain = false, show = false;
    int first_id = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: liandan tokenize --tokenizer tokenizer.json [--tokens] [--special-as-text] [TEXT | -]\n"
                   "       liandan tokenize --tokenizer tokenizer.json --lines FILE\n"
                   "       liandan tokenize --tokenizer tokenizer.json --decode ID...\n\n"
                   "Prints the ids of TEXT (or of standard input), space-separated; --tokens also shows\n"
                   "each token's text. --lines encodes each line of FILE on its own and prints one line of\n"
                   "ids per input line (what the tests compare with other implementations). --decode turns\n"
                   "ids back into text.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--decode")) decode = true, first_id = i + 1;
        else if (!strcmp(argv[i], "--lines") && i + 1 < argc) lines = argv[++i];
        else if (!strcmp(argv[i], "--special-as-text")) plain = true;
        else if (!strcmp(argv[i], "--tokens")) show = true;
        else if (decode) continue;
        else if (!text) text = argv[i];
        else return fprintf(stderr, "liandan tokenize: unexpected argument '%s'\n", argv[i]), 2;
    }
    if (!path) return fprintf(stderr, "liandan tokenize: --tokenizer is required (see --help)\n"), 2;
    ld_ctx *ctx = ld_cli_ctx(0);
    ld_tokenizer *tok = NULL;
    int rc = 0;
    char *buf = NULL;
    int32_t *ids = NULL;
    if (ld_tokenizer_load(ctx, path, &tok)) {
        rc = ld_cli_fail(ctx, "loading the tokenizer");
        goto out;
    }
    if (lines) {
        FILE *f = fopen(lines, "r");
        if (!f) {
            rc = fprintf(stderr, "liandan tokenize: cannot open %s\n", lines) > 0;
            goto out;
        }
        size_t lcap = 0, icap = 0, n;
        ssize_t got;
        long lineno = 0;
        while ((got = getline(&buf, &lcap, f)) > 0) {
            lineno++;
            size_t len = (size_t)got - (buf[got - 1] == '\n');
            if (icap < len + 16) {
                icap = 2 * (len + 16);
                free(ids);
                ids = malloc(icap * sizeof *ids);
            }
            if (ld_tokenizer_encode(tok, buf, len, plain ? LD_ENCODE_SPECIAL_AS_TEXT : 0, ids, icap, &n)) {
                rc = ld_cli_fail(ctx, "encoding");
                break;
            }
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
        }
        fclose(f);
        goto out;
    }
    if (decode) {
        int n = argc - first_id;
        ids = malloc(((size_t)n + 1) * sizeof *ids);
        for (int i = 0; i < n; i++) {
            long v;
            if (!ld_cli_parse_int("--decode", argv[first_id + i], 0, INT32_MAX, &v)) {
                rc = 2;
                goto out;
            }
            ids[i] = (int32_t)v;
        }
        size_t need = 0;
        ld_tokenizer_decode(tok, ids, (size_t)n, false, NULL, 0, &need);
        buf = malloc(need + 1);
        if (ld_tokenizer_decode(tok, ids, (size_t)n, false, buf, need, &need)) {
            rc = ld_cli_fail(ctx, "decoding");
            goto out;
        }
        fwrite(buf, 1, need, stdout);
        printf("\n");
        goto out;
    }
    size_t len = 0;
    if (!text || !strcmp(text, "-")) {
        size_t cap = 0;
        ssize_t n = getdelim(&buf, &cap, 0, stdin);
        len = n > 0 ? (size_t)n : 0;
        text = buf ? buf : "";
    } else {
        len = strlen(text);
    }
    size_t n = 0, cap = len + 16;
    ids = malloc(cap * sizeof *ids);
    ld_status st = ld_tokenizer_encode(tok, text, len, plain ? LD_ENCODE_SPECIAL_AS_TEXT : 0, ids, cap, &n);
    if (st) {
        rc = ld_cli_fail(ctx, "encoding");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (show) {
            const char *b;
            size_t bl;
            ld_tokenizer_token_bytes(tok, ids[i], &b, &bl);
            printf("%d\t%.*s\n", ids[i], (int)bl, b);
        } else {
            printf(i ? " %d" : "%d", ids[i]);
        }
    }
    if (!show) printf("\n");
    fprintf(stderr, "liandan: %zu bytes -> %zu tokens\n", len, n);
out:
    free(ids), free(buf);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
    return rc;
}

const ld_cli_command ld_cmd_tokenizer = {"tokenizer", "train a byte-level BPE tokenizer", cmd_tokenizer};
const ld_cli_command ld_cmd_tokenize = {"tokenize", "text to token ids and back", cmd_tokenize};

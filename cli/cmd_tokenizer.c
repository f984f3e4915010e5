/* cli/cmd_tokenizer.c — `liandan tokenizer train` (learn a byte-level BPE from corpus files),
 * `liandan tokenizer convert` (tokenizer.json <-> vocab-only GGUF) and `liandan tokenize`
 * (text -> ids and ids -> text, for checking a tokenizer by hand). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

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

static int tokenizer_train(int argc, char **argv) {
    const char *out = NULL;
    int64_t vocab = 0, minf = 2;
    int threads = 0, pretok = 0;
    ld_cli_list files = {0}, specials = {0};
    ld_corpus_params cp = ld_corpus_default_params();
    ld_bpe_train_params p = ld_bpe_train_default_params();
    static const char *const pretoks[] = {"gpt2", "llama3", "qwen2", NULL};
    static const ld_pretokenizer pretok_ids[] = {LD_PRETOK_GPT2, LD_PRETOK_LLAMA3, LD_PRETOK_QWEN2};
    ld_cli_opt corpus[LD_CLI_CORPUS_OPTS];
    ld_cli_corpus_opts(&cp, corpus);
    const ld_cli_opt opts[] = {
        {.name = "vocab-size", .type = LD_CLI_T_INT64, .dest.i64 = &vocab, .min = 257, .max = 1 << 24, .arg = "N",
         .def = "", .help = "target vocabulary size, specials and the 256 bytes included (required)"},
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &out, .arg = "FILE", .required = true,
         .help = "the tokenizer.json to write"},
        LD_CLI_INT64("min-frequency", 0, &minf, 1, 1LL << 40, "N", "do not learn merges of pairs seen fewer times"),
        {.name = "special", .type = LD_CLI_T_LIST, .dest.list = &specials, .arg = "TOKEN", .def = "<|endoftext|>",
         .help = "a special token (repeatable)"},
        LD_CLI_ENUM("pretokenizer", 0, &pretok, pretoks, "the pre-tokenizer regex family"),
        LD_CLI_THREADS(&threads),
        LD_CLI_GROUP("corpus", corpus),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "tokenizer train", .args = "FILES...", .opts = opts, .pos = &files, .min_pos = 1, .max_pos = -1,
        .about = "Learns a byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen2 family) from corpus files and writes\n"
                 "a Hugging Face tokenizer.json."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    if (!vocab) return fprintf(stderr, "liandan tokenizer train: --vocab-size is required\n"), ld_cli_parse_free(&spec), 2;
    p.pretokenizer = pretok_ids[pretok];
    static const char *const default_special[] = {"<|endoftext|>"};
    const char *const *spv = specials.n ? specials.v : default_special;
    int n_specials = specials.n ? specials.n : 1;
    ld_ctx *ctx = ld_cli_ctx(threads);
    files_source fs = {ctx, files.v, files.n, 0, cp, NULL};
    ld_text_source src = {files_next, &fs};
    ld_cli_bar bar = {0};
    p.vocab_size = vocab, p.min_frequency = minf, p.special_tokens = spv, p.n_special_tokens = n_specials;
    p.progress = train_progress, p.progress_user = &bar;
    ld_tokenizer *tok = NULL;
    double t0 = ld_time_now();
    rc = 0;
    if (ld_bpe_train(ctx, &p, &src, &tok)) rc = ld_cli_fail(ctx, "training the tokenizer");
    else if (ld_tokenizer_save(tok, out)) rc = ld_cli_fail(ctx, "writing the tokenizer");
    else
        fprintf(stderr, "liandan: %lld tokens (%d special) learned in %.1f s -> %s\n",
                (long long)ld_tokenizer_vocab_size(tok), n_specials, ld_time_now() - t0, out);
    if (fs.cur) ld_corpus_close(fs.cur);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

static int tokenizer_convert(int argc, char **argv) {
    const char *out = NULL;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &out, .arg = "FILE", .required = true,
         .help = "where to write: a vocab-only GGUF when FILE ends in .gguf, else a tokenizer.json"},
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "tokenizer convert", .args = "IN", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Reads a tokenizer (tokenizer.json, a model directory or any GGUF) and writes it as a tokenizer.json\n"
                 "or a vocab-only GGUF (which llama.cpp loads with vocab_only)."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    ld_ctx *ctx = ld_cli_ctx(0);
    ld_tokenizer *tok = NULL;
    size_t lo = strlen(out);
    rc = 0;
    if (ld_tokenizer_open(ctx, pos.v[0], &tok)) rc = ld_cli_fail(ctx, "loading the tokenizer");
    else if (lo > 5 && !strcmp(out + lo - 5, ".gguf") ? ld_tokenizer_save_gguf(tok, out) : ld_tokenizer_save(tok, out))
        rc = ld_cli_fail(ctx, "writing the tokenizer");
    else fprintf(stderr, "liandan: %lld tokens -> %s\n", (long long)ld_tokenizer_vocab_size(tok), out);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

static int cmd_tokenizer(int argc, char **argv) {
    static const ld_cli_command train = {"train", "learn a byte-level BPE tokenizer from corpus files", tokenizer_train};
    static const ld_cli_command convert = {"convert", "tokenizer.json <-> vocab-only GGUF", tokenizer_convert};
    static const ld_cli_command *const subs[] = {&train, &convert};
    return ld_cli_dispatch("tokenizer", "Tokenizers (see also `liandan tokenize`).", subs, 2, argc, argv);
}

/* ---- tokenize ---- */
static int cmd_tokenize(int argc, char **argv) {
    const char *path = NULL, *lines = NULL;
    bool decode = false, plain = false, show = false, add_special = false;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        {.name = "tokenizer", .short_name = 't', .type = LD_CLI_T_STRING, .dest.s = &path, .arg = "FILE",
         .required = true, .help = "tokenizer.json, a model directory, a GGUF file (vocab-only ones too),\n"
                                   "a WordPiece vocab.txt, or amino"},
        LD_CLI_FLAG("tokens", 0, &show, "one token a line: its id and its text"),
        LD_CLI_FLAG("special-as-text", 0, &plain, "special tokens' text is ordinary text"),
        LD_CLI_FLAG("add-special", 0, &add_special, "add what the tokenizer adds around a text (BOS, [CLS] ... [SEP])"),
        LD_CLI_STRING("lines", 0, &lines, "FILE",
                      "encode each line of FILE on its own: one line of ids per input line\n"
                      "(what the tests compare with other implementations)"),
        LD_CLI_FLAG("decode", 'd', &decode, "the arguments are ids: print their text"),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "tokenize", .args = "[TEXT | - | ID...]", .opts = opts, .pos = &pos, .min_pos = 0, .max_pos = -1,
        .about = "Prints the ids of TEXT (or of standard input), space-separated. --decode turns ids back into\n"
                 "text."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *text = pos.n ? pos.v[0] : NULL;
    if (!decode && pos.n > 1) {
        fprintf(stderr, "liandan tokenize: give one TEXT (quote it), or ids with --decode\n");
        return ld_cli_parse_free(&spec), 2;
    }
    unsigned flags = (plain ? LD_ENCODE_SPECIAL_AS_TEXT : 0) | (add_special ? LD_ENCODE_ADD_SPECIAL : 0);
    ld_ctx *ctx = ld_cli_ctx(0);
    ld_tokenizer *tok = NULL;
    char *buf = NULL;
    int32_t *ids = NULL;
    if (ld_cli_load_tokenizer(ctx, path, &tok)) {
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
            if (icap < 2 * len + 16) {
                icap = 2 * (2 * len + 16);
                free(ids);
                if (!(ids = malloc(icap * sizeof *ids))) {
                    rc = fprintf(stderr, "liandan tokenize: out of memory\n") > 0;
                    break;
                }
            }
            if (ld_tokenizer_encode(tok, buf, len, flags, ids, icap, &n)) {
                rc = ld_cli_fail(ctx, "encoding");
                break;
            }
            for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
        }
        if (!rc && ferror(f)) /* a directory, an I/O error: not the end of the input */
            rc = fprintf(stderr, "liandan tokenize: cannot read %s: %s\n", lines, strerror(errno)) > 0;
        fclose(f);
        goto out;
    }
    if (decode) {
        int n = pos.n;
        if (!(ids = malloc(((size_t)n + 1) * sizeof *ids))) {
            rc = fprintf(stderr, "liandan tokenize: out of memory\n") > 0;
            goto out;
        }
        for (int i = 0; i < n; i++) {
            int64_t v;
            if (!ld_cli_parse_int64("tokenize", "--decode", pos.v[i], 0, INT32_MAX, &v)) {
                rc = 2;
                goto out;
            }
            ids[i] = (int32_t)v;
        }
        size_t need = 0;
        ld_tokenizer_decode(tok, ids, (size_t)n, false, NULL, 0, &need);
        if (!(buf = malloc(need + 1))) {
            rc = fprintf(stderr, "liandan tokenize: out of memory\n") > 0;
            goto out;
        }
        if (ld_tokenizer_decode(tok, ids, (size_t)n, false, buf, need, &need)) {
            rc = ld_cli_fail(ctx, "decoding");
            goto out;
        }
        fwrite(buf, 1, need, stdout);
        printf("\n");
        goto out;
    }
    size_t len = 0;
    if (!text || !strcmp(text, "-")) { /* all of standard input, NUL bytes included */
        if ((rc = ld_cli_read_all(stdin, "tokenize", "standard input", &buf, &len))) goto out;
        text = buf;
    } else {
        len = strlen(text);
    }
    size_t n = 0, cap = 2 * len + 16; /* byte fallback: up to a token a byte */
    if (!(ids = malloc(cap * sizeof *ids))) {
        rc = fprintf(stderr, "liandan tokenize: out of memory\n") > 0;
        goto out;
    }
    ld_status st = ld_tokenizer_encode(tok, text, len, flags, ids, cap, &n);
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
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_tokenizer = {"tokenizer", "train a byte-level BPE tokenizer, convert tokenizer.json <-> GGUF", cmd_tokenizer};
const ld_cli_command ld_cmd_tokenize = {"tokenize", "text to token ids and back", cmd_tokenize};

/* cli/cli_corpus.c — what the commands that read corpora and texts share: the corpus options
 * (format, column, field, normalisation), loading a tokenizer by name (tokenizer.json, a
 * WordPiece vocab.txt, or the amino-acid vocabulary), and reading a whole stream. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static bool format_opt(void *user, const char *opt, const char *v) {
    static const char *const names[] = {"auto", "txt", "tsv", "jsonl", "fasta", NULL};
    static const ld_corpus_format formats[] = {LD_CORPUS_AUTO, LD_CORPUS_TXT, LD_CORPUS_TSV, LD_CORPUS_JSONL,
                                               LD_CORPUS_FASTA};
    for (int k = 0; names[k]; k++)
        if (!strcmp(v, names[k])) return ((ld_corpus_params *)user)->format = formats[k], true;
    fprintf(stderr, "liandan: %s: '%s' is not auto, txt, tsv, jsonl or fasta\n", opt, v);
    return false;
}

void ld_cli_corpus_opts(ld_corpus_params *cp, ld_cli_opt t[LD_CLI_CORPUS_OPTS]) {
    const ld_cli_opt rows[LD_CLI_CORPUS_OPTS] = {
        {.name = "format", .type = LD_CLI_T_FUNC, .fn = format_opt, .dest.user = cp, .arg = "txt|tsv|jsonl|fasta",
         .def = "from each file's extension", .help = "the files' format"},
        LD_CLI_INT("column", 0, &cp->tsv_column, -1, 1 << 20, "N", "TSV column, 0-based (-1: the last)"),
        {.name = "field", .type = LD_CLI_T_STRING, .dest.s = &cp->jsonl_field, .arg = "NAME", .def = "text",
         .help = "JSONL string field"},
        LD_CLI_FLAG("paragraphs", 0, &cp->txt_paragraphs, "txt: a document per blank-line-separated paragraph"),
        LD_CLI_FLAG("nfkc", 0, &cp->nfkc, "Unicode NFKC normalisation"),
        LD_CLI_FLAG("simplified", 0, &cp->to_simplified, "Traditional -> Simplified Chinese (OpenCC)"),
        LD_CLI_FLAG("collapse-whitespace", 0, &cp->collapse_whitespace, "runs of whitespace -> one space, trimmed"),
        LD_CLI_END,
    };
    memcpy(t, rows, sizeof rows);
}

ld_status ld_cli_load_tokenizer(ld_ctx *ctx, const char *spec, ld_tokenizer **tok) {
    size_t n = strlen(spec);
    if (!strcmp(spec, "amino")) return ld_tokenizer_new_amino(ctx, tok);
    if (n >= 4 && !strcmp(spec + n - 4, ".txt")) return ld_tokenizer_load_vocab_txt(ctx, spec, tok);
    return ld_tokenizer_open(ctx, spec, tok); /* tokenizer.json, model directory or GGUF */
}

int ld_cli_read_all(FILE *f, const char *cmd, const char *name, char **text, size_t *len) {
    size_t n = 0, cap = 0;
    char *buf = NULL;
    for (;;) {
        if (cap - n < 4096) {
            size_t ncap = cap ? 2 * cap : 65536;
            char *nb = ncap > cap ? realloc(buf, ncap) : NULL;
            if (!nb) {
                free(buf);
                return fprintf(stderr, "liandan %s: cannot read %s: out of memory\n", cmd, name), 1;
            }
            buf = nb, cap = ncap;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        return fprintf(stderr, "liandan %s: cannot read %s: %s\n", cmd, name, strerror(errno ? errno : EIO)), 1;
    }
    buf[n] = 0;
    *text = buf, *len = n;
    return 0;
}

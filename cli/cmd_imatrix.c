/* cli/cmd_imatrix.c — `liandan imatrix MODEL --data FILE -o imatrix.gguf`: runs the model
 * over a calibration text and writes the mean squared activation of every matrix input
 * column (llama.cpp's imatrix GGUF), for `liandan quantize --imatrix`. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

static void usage(FILE *f) {
    fprintf(f, "usage: liandan imatrix MODEL --data FILE -o OUT.gguf [options]\n\n"
               "Runs MODEL (a model directory or GGUF file) over the documents of FILE (txt, tsv, jsonl,\n"
               "fasta) in chunks and writes, for every matrix, the mean squared activation of each input\n"
               "column: an importance matrix for `liandan quantize --imatrix` (the same file format as\n"
               "llama.cpp's llama-imatrix, so either tool can read the other's). Use text like what the\n"
               "model will see; a few hundred thousand tokens are plenty.\n\n"
               "  --chunk N       tokens per chunk (default: the model's context, at most 512)\n"
               "  --chunks N      use at most N chunks (default: all of FILE)\n"
               "  --column N      TSV column (default: the last)\n"
               "  --threads N     threads (default: all cores)\n");
}

typedef struct bar_state {
    ld_cli_bar bar;
    int64_t chunk;
} bar_state;

static void on_progress(void *user, int64_t done, int64_t total) {
    bar_state *b = user;
    ld_cli_progress(&b->bar, "calibrating", (double)(done * b->chunk), (double)(total * b->chunk), "tokens", 1);
}

static int cmd_imatrix(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *out = NULL;
    long threads = 0, chunk = 0, max_chunks = 0;
    ld_corpus_params cp = ld_corpus_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), 0;
        if (!strcmp(a, "--data") && v) data = v, i++;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) out = v, i++;
        else if (!strcmp(a, "--chunk")) {
            if (!ld_cli_parse_int(a, v, 2, 1 << 20, &chunk)) return 2;
            i++;
        } else if (!strcmp(a, "--chunks")) {
            if (!ld_cli_parse_int(a, v, 1, 1L << 30, &max_chunks)) return 2;
            i++;
        } else if (!strcmp(a, "--column")) {
            long c;
            if (!ld_cli_parse_int(a, v, 0, 100000, &c)) return 2;
            cp.tsv_column = (int)c, i++;
        } else if (!strcmp(a, "--threads")) {
            if (!ld_cli_parse_int(a, v, 1, 4096, &threads)) return 2;
            i++;
        } else if (a[0] != '-' && !model) model = a;
        else return fprintf(stderr, "liandan imatrix: unexpected argument '%s' (try --help)\n", a), 2;
    }
    if (!model || !data || !out) return usage(stderr), 2;
    ld_ctx *ctx = ld_cli_ctx((int)threads);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_imatrix *im = NULL;
    ld_lm_session *s = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = ld_cli_load_model(ctx, model, &m, &tok);
    if (!rc) rc = ld_cli_encode_corpus(ctx, tok, data, &cp, &ids, &n, NULL);
    int64_t ctx_len = rc ? 0 : ld_lm_config_of(m)->max_position;
    if (!chunk) chunk = ctx_len < 512 ? ctx_len : 512;
    if (!rc && chunk > ctx_len)
        rc = (fprintf(stderr, "liandan imatrix: --chunk %ld is longer than the model's context (%lld)\n", chunk,
                      (long long)ctx_len), 2);
    if (!rc && (int64_t)n < chunk)
        rc = (fprintf(stderr, "liandan imatrix: %s has %zu tokens, less than one chunk of %ld\n", data, n, chunk), 1);
    if (!rc && max_chunks && (int64_t)n > max_chunks * chunk) n = (size_t)(max_chunks * chunk);
    if (!rc && (ld_imatrix_new(ctx, &im) || ld_lm_session_new(m, 1, chunk, chunk, &s)))
        rc = ld_cli_fail(ctx, "creating the session");
    double nll = 0;
    bar_state b = {.chunk = chunk};
    if (!rc && ld_lm_imatrix_collect(s, ids, (int64_t)n, chunk, im, &nll, on_progress, &b))
        rc = ld_cli_fail(ctx, "collecting activations");
    if (!rc) {
        ld_imatrix_set_info(im, data, (int64_t)n / chunk, chunk);
        if (ld_imatrix_save(im, out)) rc = ld_cli_fail(ctx, "writing the importance matrix");
        else
            fprintf(stderr, "liandan imatrix: %d matrices, %lld chunks of %ld tokens (perplexity %.3f) -> %s\n",
                    ld_imatrix_count(im), (long long)n / chunk, chunk, exp(nll), out);
    }
    free(ids);
    ld_lm_session_free(s);
    ld_imatrix_free(im);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

const ld_cli_command ld_cmd_imatrix = {"imatrix", "importance matrix from a calibration text (for quantize)", cmd_imatrix};

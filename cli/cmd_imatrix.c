/* cli/cmd_imatrix.c — `liandan imatrix MODEL --data FILE -o imatrix.gguf`: runs the model
 * over a calibration text and writes the mean squared activation of every matrix input
 * column (llama.cpp's imatrix GGUF), for `liandan quantize --imatrix`. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

typedef struct bar_state {
    ld_cli_bar bar;
    int64_t chunk;
} bar_state;

static void on_progress(void *user, int64_t done, int64_t total) {
    bar_state *b = user;
    ld_cli_progress(&b->bar, "calibrating", (double)(done * b->chunk), (double)(total * b->chunk), "tokens", 1);
}

static int cmd_imatrix(int argc, char **argv) {
    const char *data = NULL, *out = NULL;
    int threads = 0;
    int64_t chunk = 0, max_chunks = 0;
    ld_cli_list pos = {0};
    ld_corpus_params cp = ld_corpus_default_params();
    ld_cli_opt corpus[LD_CLI_CORPUS_OPTS];
    ld_cli_corpus_opts(&cp, corpus);
    const ld_cli_opt opts[] = {
        {.name = "data", .type = LD_CLI_T_STRING, .dest.s = &data, .arg = "FILE", .required = true,
         .help = "calibration text: txt, tsv, jsonl or fasta"},
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &out, .arg = "OUT.gguf", .required = true,
         .help = "where to write the importance matrix"},
        {.name = "chunk", .type = LD_CLI_T_INT64, .dest.i64 = &chunk, .min = 2, .max = 1 << 20, .arg = "N",
         .def = "the model's context, at most 512", .help = "tokens per chunk"},
        {.name = "chunks", .type = LD_CLI_T_INT64, .dest.i64 = &max_chunks, .min = 1, .max = 1LL << 40, .arg = "N",
         .def = "all of --data", .help = "use at most N chunks"},
        LD_CLI_THREADS(&threads),
        LD_CLI_GROUP("corpus", corpus),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "imatrix", .args = "MODEL", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Runs MODEL (a model directory or GGUF file) over the documents of --data in chunks and writes,\n"
                 "for every matrix, the mean squared activation of each input column: an importance matrix for\n"
                 "`liandan quantize --imatrix` (the same file format as llama.cpp's llama-imatrix, so either tool\n"
                 "can read the other's). Use text like what the model will see; a few hundred thousand tokens\n"
                 "are plenty."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *model = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_imatrix *im = NULL;
    ld_lm_session *s = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    rc = ld_cli_load_model(ctx, model, &m, &tok);
    if (!rc) rc = ld_cli_encode_corpus(ctx, tok, data, &cp, &ids, &n, NULL);
    int64_t ctx_len = rc ? 0 : ld_lm_config_of(m)->max_position;
    if (!chunk) chunk = ctx_len < 512 ? ctx_len : 512;
    if (!rc && chunk > ctx_len)
        rc = (fprintf(stderr, "liandan imatrix: --chunk %lld is longer than the model's context (%lld)\n", (long long)chunk,
                      (long long)ctx_len), 2);
    if (!rc && (int64_t)n < chunk)
        rc = (fprintf(stderr, "liandan imatrix: %s has %zu tokens, less than one chunk of %lld\n", data, n, (long long)chunk), 1);
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
            fprintf(stderr, "liandan imatrix: %d matrices, %lld chunks of %lld tokens (perplexity %.3f) -> %s\n",
                    ld_imatrix_count(im), (long long)((int64_t)n / chunk), (long long)chunk, exp(nll), out);
    }
    free(ids);
    ld_lm_session_free(s);
    ld_imatrix_free(im);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_imatrix = {"imatrix", "importance matrix from a calibration text (for quantize)", cmd_imatrix};

/* cli/cmd_init.c — `liandan init`: a freshly initialised causal LM (the random weights
 * training starts from) written as a model directory or a GGUF file, or an image-text (clip)
 * model directory: a model of any shape to run, benchmark or test without training one. */
#include <string.h>

#include "liandan/clip.h"

#include "cli.h"
#include "cli_model.h"

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* model_type "clip": a CLIPConfig (either layout) written as a model directory, with the
 * character vocabulary `vocab` (vocab.txt, may be NULL) beside it. */
static int init_clip(ld_ctx *ctx, const char *text, size_t len, const char *path, const char *vocab, uint64_t seed,
                     const char *out) {
    ld_clip_config cfg;
    ld_clip *m = NULL;
    ld_tokenizer *tok = NULL;
    int rc = 0;
    if (ld_clip_config_from_json(ctx, text, len, path, &cfg)) return ld_cli_fail(ctx, "reading the model config");
    if (vocab && ld_tokenizer_load_vocab_txt(ctx, vocab, &tok)) return ld_cli_fail(ctx, "loading the vocabulary");
    if (tok && ld_tokenizer_vocab_size(tok) > cfg.text.vocab_size)
        rc = (fprintf(stderr, "liandan init: the vocabulary has %lld tokens, more than the model's vocab_size %lld\n",
                      (long long)ld_tokenizer_vocab_size(tok), (long long)cfg.text.vocab_size), 2);
    if (!rc && ld_clip_new(ctx, &cfg, seed, &m)) rc = ld_cli_fail(ctx, "initialising the model");
    if (!rc) fprintf(stderr, "liandan init: clip, %.3g M parameters...\n", (double)ld_params_numel(ld_clip_params(m), false) / 1e6);
    if (!rc && ld_clip_save(m, tok, out)) rc = ld_cli_fail(ctx, "writing the model directory");
    if (!rc) fprintf(stderr, "liandan init: wrote %s\n", out);
    ld_tokenizer_free(tok);
    ld_clip_free(m);
    return rc;
}

static int cmd_init(int argc, char **argv) {
    const char *out = NULL, *tokenizer = NULL;
    uint64_t seed = 1;
    int threads = 0;
    ld_dtype type = LD_F32;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &out, .arg = "DIR|FILE.gguf",
         .required = true, .help = "a model directory, or a GGUF file when it ends in .gguf"},
        LD_CLI_STRING("tokenizer", 0, &tokenizer, "FILE",
                      "tokenizer.json to go with the model (required for GGUF; copied into a\n"
                      "directory); its vocabulary may be smaller than the model's. A clip model:\n"
                      "the vocab.txt of its character vocabulary ([PAD] [UNK] [CLS] [SEP] [MASK] first)"),
        {.name = "type", .type = LD_CLI_T_FUNC, .fn = ld_cli_type_opt, .dest.user = &type, .arg = "T", .def = "f32",
         .help = "GGUF: the matrices' type (the embedding and head follow llama.cpp's mix)"},
        LD_CLI_UINT64("seed", 0, &seed, "S", "random seed of the initialisation"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "init", .args = "CONFIG.json", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Writes a causal LM with freshly initialised weights (N(0, initializer_range), the residual\n"
                 "projections scaled by 1/sqrt(2 layers)) for the model config CONFIG.json (the keys of\n"
                 "config.json: any family liandan runs). The weights are random: for benchmarks and tests.\n"
                 "A config with model_type \"clip\" (transformers' CLIPConfig, or liandan's with a BERT text\n"
                 "tower) gives an image-text model directory instead."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    ld_ctx *ctx = ld_cli_ctx(threads);
    char *text = NULL;
    size_t len = 0;
    ld_lm_config cfg;
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    bool gguf = ends_with(out, ".gguf"), clip = false;
    if (ld_file_read(ctx, pos.v[0], 1 << 20, &text, &len)) rc = ld_cli_fail(ctx, "reading the model config");
    if (!rc && (clip = ld_clip_config_sniff(text, len))) {
        if (gguf) rc = (fprintf(stderr, "liandan init: a clip model is written as a directory, not GGUF\n"), 2);
        else rc = init_clip(ctx, text, len, pos.v[0], tokenizer, seed, out);
    }
    if (!rc && !clip && ld_lm_config_from_json(ctx, text, len, pos.v[0], &cfg))
        rc = ld_cli_fail(ctx, "reading the model config");
    if (clip) goto done;
    if (!rc && gguf && !tokenizer) rc = (fprintf(stderr, "liandan init: a GGUF file needs --tokenizer\n"), 2);
    if (!rc && tokenizer && ld_tokenizer_load(ctx, tokenizer, &tok)) rc = ld_cli_fail(ctx, "loading the tokenizer");
    if (!rc && tok && ld_tokenizer_vocab_size(tok) > cfg.vocab_size)
        rc = (fprintf(stderr, "liandan init: the tokenizer has %lld tokens, more than the model's vocab_size %lld\n",
                      (long long)ld_tokenizer_vocab_size(tok), (long long)cfg.vocab_size), 2);
    if (!rc) {
        fprintf(stderr, "liandan init: %.3g M parameters...\n", (double)ld_lm_config_num_params(&cfg) / 1e6);
        if (ld_lm_new_lazy(ctx, &cfg, seed, &m)) rc = ld_cli_fail(ctx, "initialising the model");
    }
    if (!rc && gguf) {
        ld_lm_gguf_params gp = ld_lm_gguf_default_params();
        gp.type = type, gp.name = "liandan init";
        if (ld_lm_save_gguf(m, tok, out, &gp)) rc = ld_cli_fail(ctx, "writing the GGUF file");
    } else if (!rc) {
        if (type != LD_F32) fprintf(stderr, "liandan init: --type applies to GGUF files; the directory is F32\n");
        rc = tok ? ld_cli_save_model_dir(ctx, m, tok, out) : (ld_lm_save(m, out) ? ld_cli_fail(ctx, "writing") : 0);
    }
    if (!rc) fprintf(stderr, "liandan init: wrote %s\n", out);
done:
    ld_free(ctx, text);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_init = {"init", "write a causal LM with freshly initialised (random) weights", cmd_init};

/* cli/cmd_export.c — writing a model in another format or precision:
 *   liandan export gguf MODEL -o OUT.gguf [--type T]   (llama.cpp's format)
 *   liandan export hf MODEL.gguf -o DIR                 (a Hugging Face model directory)
 *   liandan quantize MODEL --type T -o OUT.gguf         (a quantized GGUF)
 * MODEL is a model directory or a GGUF file. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

static const char *type_help =
    "types: f32, f16, bf16, q8_0, q4_0, q4_k, q5_k, q6_k (llama.cpp's q4_k_m / q5_k_m are q4_k / q5_k with\n"
    "the default q6_k output)";

/* "q4_k", "Q4_K_M", "f16" -> ld_dtype; LD_DTYPE_COUNT when unknown. */
static ld_dtype parse_type(const char *s) {
    char up[16];
    size_t n = strlen(s);
    if (n == 0 || n >= sizeof up) return LD_DTYPE_COUNT;
    for (size_t i = 0; i <= n; i++) up[i] = (char)toupper((unsigned char)s[i]);
    if (n > 2 && (!strcmp(up + n - 2, "_M") || !strcmp(up + n - 2, "_S"))) up[n - 2] = 0; /* mix names */
    ld_dtype t = ld_dtype_from_name(up);
    return t == LD_I32 ? LD_DTYPE_COUNT : t;
}

typedef struct export_opts {
    const char *in, *out, *name, *imatrix;
    ld_lm_gguf_params gp;
    bool type_given, allow_requantize;
    long threads;
} export_opts;

static int parse_type_opt(const char *opt, const char *val, ld_dtype *out) {
    if (!val) return fprintf(stderr, "liandan: %s needs a value (%s)\n", opt, type_help), 2;
    if ((*out = parse_type(val)) == LD_DTYPE_COUNT)
        return fprintf(stderr, "liandan: %s: unknown type '%s' (%s)\n", opt, val, type_help), 2;
    return 0;
}

/* Common options; returns 0, or the exit code after printing the problem. */
static int parse_opts(const char *cmd, int argc, char **argv, export_opts *o, void (*usage)(FILE *)) {
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout), -1;
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) o->out = v, i++;
        else if (!strcmp(a, "--type")) rc = parse_type_opt(a, v, &o->gp.type), o->type_given = true, i++;
        else if (!strcmp(a, "--embd-type")) rc = parse_type_opt(a, v, &o->gp.embd_type), i++;
        else if (!strcmp(a, "--output-type")) rc = parse_type_opt(a, v, &o->gp.output_type), i++;
        else if (!strcmp(a, "--name")) o->name = v, i++;
        else if (!strcmp(a, "--imatrix")) o->imatrix = v, i++;
        else if (!strcmp(a, "--allow-requantize")) o->allow_requantize = true;
        else if (!strcmp(a, "--threads")) {
            if (!ld_cli_parse_int("--threads", v, 1, 4096, &o->threads)) return 2;
            i++;
        } else if (a[0] == '-' && a[1]) return fprintf(stderr, "liandan %s: unknown option '%s' (try --help)\n", cmd, a), 2;
        else if (!o->in) o->in = a;
        else return fprintf(stderr, "liandan %s: unexpected argument '%s'\n", cmd, a), 2;
        if (rc) return rc;
        if (i >= argc) return fprintf(stderr, "liandan %s: %s needs a value\n", cmd, a), 2;
    }
    if (!o->in || !o->out) return usage(stderr), 2;
    return 0;
}

/* Loads o->in, checks the requantize rule, writes the GGUF. */
static int write_gguf(const char *cmd, export_opts *o) {
    ld_ctx *ctx = ld_cli_ctx((int)o->threads);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_imatrix *im = NULL;
    int rc = ld_cli_load_model(ctx, o->in, &m, &tok);
    bool quantized_out = ld_dtype_traits(o->gp.type)->block_size > 1;
    if (!rc && quantized_out && ld_lm_is_quantized(m) && !o->allow_requantize)
        rc = (fprintf(stderr, "liandan %s: %s is already quantized; quantizing its dequantized weights again loses "
                              "accuracy (pass --allow-requantize to do it anyway)\n", cmd, o->in), 1);
    if (!rc && o->imatrix) {
        if (!quantized_out)
            fprintf(stderr, "liandan %s: warning: --imatrix only matters for quantized types\n", cmd);
        if (ld_imatrix_load(ctx, o->imatrix, &im)) rc = ld_cli_fail(ctx, "reading the importance matrix");
        else o->gp.imatrix = ld_imatrix_lookup, o->gp.imatrix_user = im;
    }
    o->gp.name = o->name;
    if (!rc) {
        fprintf(stderr, "liandan %s: writing %s (%s)...\n", cmd, o->out, ld_dtype_traits(o->gp.type)->name);
        double t0 = ld_time_now();
        if (ld_lm_save_gguf(m, tok, o->out, &o->gp)) rc = ld_cli_fail(ctx, "writing the GGUF file");
        else {
            FILE *f = fopen(o->out, "rb");
            long size = f && !fseek(f, 0, SEEK_END) ? ftell(f) : -1;
            if (f) fclose(f);
            fprintf(stderr, "liandan %s: wrote %s: %.1f MB, %.1f bits per parameter, in %.1f s\n", cmd, o->out,
                    (double)size / 1e6, 8.0 * (double)size / (double)ld_lm_config_num_params(ld_lm_config_of(m)),
                    ld_time_now() - t0);
        }
    }
    ld_imatrix_free(im);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

/* ---- liandan quantize -------------------------------------------------------------- */

static void quantize_usage(FILE *f) {
    fprintf(f,
            "usage: liandan quantize MODEL --type T -o OUT.gguf [options]\n\n"
            "Writes MODEL (a model directory or a GGUF file) as a GGUF file whose matrices are quantized\n"
            "to T; llama.cpp runs it, and so do `liandan generate/chat/score/eval` (give them the .gguf).\n"
            "Norms and biases stay F32; the token embedding and the output matrix stay at a higher precision\n"
            "(Q6_K for the 4- and 5-bit types) unless told otherwise.\n\n"
            "  --type T             matrix type (required); %s\n"
            "  --embd-type T        token embedding type\n"
            "  --output-type T      output (LM head) type; for tied embeddings this is the embedding's type\n"
            "  --imatrix FILE       importance matrix from `liandan imatrix` (or llama.cpp's imatrix GGUF):\n"
            "                       the 4/5/6-bit quantizers weight each input column by its mean squared\n"
            "                       activation\n"
            "  --allow-requantize   accept an already quantized input\n"
            "  --name NAME          general.name\n"
            "  --threads N          threads (default: all cores)\n",
            type_help);
}

static int cmd_quantize(int argc, char **argv) {
    export_opts o = {.gp = ld_lm_gguf_default_params()};
    int rc = parse_opts("quantize", argc - 1, argv + 1, &o, quantize_usage);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.type_given) return fprintf(stderr, "liandan quantize: --type is required (%s)\n", type_help), 2;
    return write_gguf("quantize", &o);
}

const ld_cli_command ld_cmd_quantize = {"quantize", "write a model as a quantized GGUF file", cmd_quantize};

/* ---- liandan export ------------------------------------------------------------------ */

static void export_usage(FILE *f) {
    fprintf(f,
            "usage: liandan export gguf MODEL -o OUT.gguf [--type T] [options]\n"
            "       liandan export hf MODEL -o DIR\n\n"
            "gguf: writes MODEL (a model directory or GGUF file) in llama.cpp's GGUF format: architecture\n"
            "      llama (also for Mistral), qwen2 or gpt2 with llama.cpp's tensor names, and the tokenizer as\n"
            "      tokenizer.ggml.* metadata. --type defaults to f32; other options as in `liandan quantize`.\n"
            "hf:   writes MODEL as a Hugging Face model directory (config.json, model.safetensors in F32,\n"
            "      tokenizer.json, generation_config.json), e.g. to fine-tune a GGUF model.\n");
}

static int export_hf(export_opts *o) {
    ld_ctx *ctx = ld_cli_ctx((int)o->threads);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    int rc = ld_cli_load_model(ctx, o->in, &m, &tok);
    if (!rc && ld_lm_save(m, o->out)) rc = ld_cli_fail(ctx, "writing the model directory");
    if (!rc) {
        char path[4096];
        snprintf(path, sizeof path, "%s/tokenizer.json", o->out);
        if (ld_tokenizer_save(tok, path)) rc = ld_cli_fail(ctx, "writing tokenizer.json");
        else fprintf(stderr, "liandan export: wrote %s\n", o->out);
    }
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

static int cmd_export(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        export_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *format = argv[1];
    if (strcmp(format, "gguf") && strcmp(format, "hf"))
        return fprintf(stderr, "liandan export: unknown format '%s' (gguf, hf)\n", format), 2;
    export_opts o = {.gp = ld_lm_gguf_default_params()};
    int rc = parse_opts("export", argc - 2, argv + 2, &o, export_usage);
    if (rc) return rc < 0 ? 0 : rc;
    return !strcmp(format, "gguf") ? write_gguf("export", &o) : export_hf(&o);
}

const ld_cli_command ld_cmd_export = {"export", "write a model as GGUF or as a Hugging Face directory", cmd_export};

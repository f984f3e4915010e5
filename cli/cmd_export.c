/* cli/cmd_export.c — writing a model in another format or precision:
 *   liandan export gguf MODEL -o OUT.gguf [--type T]   (llama.cpp's format)
 *   liandan export hf MODEL.gguf -o DIR                 (a Hugging Face model directory)
 *   liandan export lora-gguf ADAPTER --base MODEL -o F  (a LoRA adapter as llama.cpp's GGUF LoRA)
 *   (--adapter DIR merges a LoRA adapter into the model first)
 *   liandan quantize MODEL --type T -o OUT.gguf         (a quantized GGUF)
 * MODEL is a model directory or a GGUF file. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

typedef struct export_opts {
    const char *in, *out, *name, *imatrix, *adapter, *base;
    ld_lm_gguf_params gp;
    bool allow_requantize;
    int threads;
    ld_cli_list pos;
    int pooling; /* encoders: what llama.cpp pools to (ld_pooling) */
} export_opts;

static const char *const pooling_names[] = {"cls", "mean", NULL}; /* ld_pooling order */

/* llama.cpp's mix names (quant/quant_mix.c). */
#define MIX_NAMES                                                                                           \
    "q2_k, q2_k_s, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, q5_k_s, q5_k_m, iq4_nl, iq4_xs, iq3_m, iq3_s, iq3_xs, " \
    "iq3_xxs, iq2_m, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s, tq1_0, tq2_0"

/* --type of quantize / export gguf (user = the ld_lm_gguf_params): one of llama.cpp's mixes
 * ("q3_k_m": ld_quant_mix_get), or a type name. Types liandan reads but cannot write are
 * taken here and refused with the reason by check_writable, once --imatrix is known. */
static bool gguf_type_opt(void *user, const char *opt, const char *value) {
    ld_lm_gguf_params *gp = user;
    if ((gp->mix = ld_quant_mix_get(value))) {
        gp->type = ld_quant_mix_body(gp->mix);
        return true;
    }
    char up[16];
    const size_t n = strlen(value);
    ld_dtype t = LD_DTYPE_COUNT;
    if (n > 0 && n < sizeof up) {
        for (size_t i = 0; i <= n; i++) up[i] = (char)toupper((unsigned char)value[i]);
        t = ld_dtype_from_name(up);
    }
    if (t != LD_DTYPE_COUNT && ld_dtype_traits(t)->block_size > 1) {
        gp->type = t;
        return true;
    }
    return ld_cli_type_opt(&gp->type, opt, value); /* the float types, or the error with the list */
}

/* 0 when liandan can write tensors of type t, else the exit code after saying why not. */
static int check_writable(const char *cmd, const char *opt, ld_dtype t, bool have_imatrix) {
    const ld_dtype_info *di = ld_dtype_traits(t);
    if (ld_quant_needs_imatrix(t) && !have_imatrix)
        return fprintf(stderr,
                       "liandan %s: %s %s needs an importance matrix (as in llama.cpp); make one with "
                       "`liandan imatrix MODEL --data calib.txt -o imatrix.gguf` and pass --imatrix imatrix.gguf\n",
                       cmd, opt, di->name),
               2;
    if (di->is_float || ld_quant_type_supported(t)) return 0;
    return fprintf(stderr, "liandan %s: %s %s: liandan reads and runs %s files but cannot write them yet (types: %s; mixes: %s)\n",
                   cmd, opt, di->name, di->name, ld_cli_type_names(), MIX_NAMES),
           2;
}

/* The options of quantize and export gguf (and, of them, -o and --threads for export hf). */
#define EXPORT_OPTS 11
static void export_opts_table(export_opts *o, bool gguf, ld_cli_opt t[EXPORT_OPTS]) {
    const ld_cli_opt rows[EXPORT_OPTS] = {
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &o->out, .arg = gguf ? "OUT.gguf" : "DIR",
         .required = true, .help = "where to write"},
        LD_CLI_THREADS(&o->threads),
        LD_CLI_STRING("adapter", 0, &o->adapter, "DIR", "a LoRA adapter (PEFT directory) merged into the weights first"),
        {.name = "type", .type = LD_CLI_T_FUNC, .fn = gguf_type_opt, .dest.user = &o->gp, .arg = "T", .def = "",
         .help = "matrix type: f32, f16, bf16, q8_0, q6_k, q5_k, q4_k, q4_0, q3_k (every matrix;\n"
                 "the embedding and output at q6_k below 6 bits), or one of llama.cpp's mixes (types\n"
                 "by role and layer as its quantizer gives them):\n" MIX_NAMES},
        {.name = "embd-type", .type = LD_CLI_T_FUNC, .fn = ld_cli_type_opt, .dest.user = &o->gp.embd_type, .arg = "T",
         .def = "q6_k for 3-5 bit types, else --type", .help = "token embedding type"},
        {.name = "output-type", .type = LD_CLI_T_FUNC, .fn = ld_cli_type_opt, .dest.user = &o->gp.output_type,
         .arg = "T", .def = "as --embd-type", .help = "output (LM head) type; for tied embeddings the embedding's"},
        LD_CLI_STRING("imatrix", 0, &o->imatrix, "FILE",
                      "importance matrix from `liandan imatrix` (or llama.cpp's imatrix GGUF):\n"
                      "the quantizers weight each input column by its mean squared activation"),
        LD_CLI_FLAG("allow-requantize", 0, &o->allow_requantize, "accept an already quantized input"),
        {.name = "name", .type = LD_CLI_T_STRING, .dest.s = &o->name, .arg = "NAME", .def = "liandan model",
         .help = "general.name"},
        LD_CLI_ENUM("pooling", 0, &o->pooling, pooling_names,
                    "bert encoders: what llama.cpp's embedding path pools to (cls, mean)"),
        LD_CLI_END,
    };
    memcpy(t, rows, sizeof rows);
    if (!gguf) t[3] = (ld_cli_opt)LD_CLI_END; /* hf: only -o, --threads and --adapter */
}

/* An encoder model directory (bert) as llama.cpp's "bert" GGUF. */
static int write_encoder_gguf(const char *cmd, export_opts *o) {
    ld_ctx *ctx = ld_cli_ctx(o->threads);
    ld_encoder *m = NULL;
    ld_tokenizer *tok = NULL;
    int rc = 0;
    if (ld_encoder_open(ctx, o->in, &m, &tok)) rc = ld_cli_fail(ctx, "loading the model");
    ld_encoder_gguf_params gp = ld_encoder_gguf_default_params();
    gp.type = o->gp.type, gp.pooling = (ld_pooling)o->pooling, gp.name = o->name;
    if (!rc) {
        fprintf(stderr, "liandan %s: writing %s (bert encoder, %s, %s pooling)...\n", cmd, o->out,
                ld_dtype_traits(gp.type)->name, ld_pooling_name(gp.pooling));
        if (ld_encoder_save_gguf(m, tok, o->out, &gp)) rc = ld_cli_fail(ctx, "writing the GGUF file");
    }
    ld_tokenizer_free(tok);
    ld_encoder_free(m);
    ld_ctx_free(ctx);
    return rc;
}

/* Loads o->in, checks the requantize rule, writes the GGUF. */
static int write_gguf(const char *cmd, export_opts *o) {
    const int rc0 = check_writable(cmd, "--type", o->gp.type, o->imatrix != NULL);
    if (rc0) return rc0;
    if (ld_encoder_dir_sniff(o->in)) return write_encoder_gguf(cmd, o);
    ld_ctx *ctx = ld_cli_ctx(o->threads);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_imatrix *im = NULL;
    int rc = ld_cli_load_model_ex(ctx, o->in, o->adapter != NULL, &m, &tok); /* merging needs F32 weights */
    if (rc) {
        ld_ctx_free(ctx);
        return rc;
    }
    if (o->adapter) rc = ld_cli_merge_adapter(ctx, m, o->adapter);
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
        fprintf(stderr, "liandan %s: writing %s (%s)...\n", cmd, o->out,
                o->gp.mix ? ld_quant_mix_name(o->gp.mix) : ld_dtype_traits(o->gp.type)->name);
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

static int export_hf(export_opts *o) {
    ld_ctx *ctx = ld_cli_ctx(o->threads);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    int rc = ld_cli_load_model_ex(ctx, o->in, o->adapter != NULL, &m, &tok); /* merging needs F32 weights */
    if (!rc && o->adapter) rc = ld_cli_merge_adapter(ctx, m, o->adapter);
    if (!rc && !(rc = ld_cli_save_model_dir(ctx, m, tok, o->out))) fprintf(stderr, "liandan export: wrote %s\n", o->out);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

/* quantize, export gguf and export hf: one option table, three destinations */
typedef enum { TO_QUANTIZED, TO_GGUF, TO_HF } export_kind;

static int export_cmd(int argc, char **argv, export_kind kind, const char *cmd, const char *about) {
    export_opts o = {.gp = ld_lm_gguf_default_params(), .pooling = LD_POOL_MEAN};
    if (kind == TO_QUANTIZED) o.gp.type = LD_DTYPE_COUNT; /* required */
    ld_cli_opt opts[EXPORT_OPTS];
    export_opts_table(&o, kind != TO_HF, opts);
    const ld_cli_spec spec = {.cmd = cmd, .args = "MODEL", .about = about, .opts = opts, .pos = &o.pos, .min_pos = 1,
                              .max_pos = 1};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    o.in = o.pos.v[0];
    if (kind == TO_QUANTIZED && o.gp.type == LD_DTYPE_COUNT)
        rc = (fprintf(stderr, "liandan quantize: --type is required (types: %s; mixes: " MIX_NAMES ")\n",
                      ld_cli_type_names()),
              2);
    else rc = kind == TO_HF ? export_hf(&o) : write_gguf(kind == TO_QUANTIZED ? "quantize" : "export", &o);
    ld_cli_parse_free(&spec);
    return rc;
}

static int cmd_quantize(int argc, char **argv) {
    return export_cmd(argc, argv, TO_QUANTIZED, "quantize",
                      "Writes MODEL (a model directory or a GGUF file) as a GGUF file whose matrices are quantized\n"
                      "to --type; llama.cpp runs it, and so do `liandan generate/chat/score/eval` (give them the .gguf).\n"
                      "Norms and biases stay F32; the token embedding and the output matrix stay at a higher precision\n"
                      "(Q6_K for the 3- to 5-bit types) unless told otherwise. IQ3_XXS, IQ2_* and IQ1_* (and the mixes that\n"
                      "use them) need an importance matrix, as in llama.cpp: --imatrix, from `liandan imatrix`.");
}

const ld_cli_command ld_cmd_quantize = {"quantize", "write a model as a quantized GGUF file", cmd_quantize};

static int export_gguf_cmd(int argc, char **argv) {
    return export_cmd(argc, argv, TO_GGUF, "export gguf",
                      "Writes MODEL (a model directory or GGUF file) in llama.cpp's GGUF format: architecture llama\n"
                      "(also for Mistral), qwen2 or gpt2 with llama.cpp's tensor names, and the tokenizer as\n"
                      "tokenizer.ggml.* metadata. --type defaults to f32; see also `liandan quantize`. A bert encoder\n"
                      "directory becomes llama.cpp's \"bert\" (its embedding path; the MLM head is not written).");
}

static int export_hf_cmd(int argc, char **argv) {
    return export_cmd(argc, argv, TO_HF, "export hf",
                      "Writes MODEL as a Hugging Face model directory (config.json, model.safetensors in F32,\n"
                      "tokenizer.json, generation_config.json), e.g. to fine-tune a GGUF model.");
}

/* A LoRA adapter as llama.cpp's GGUF LoRA. */
static int export_lora_cmd(int argc, char **argv) {
    export_opts o = {0};
    const ld_cli_opt opts[] = {
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &o.out, .arg = "OUT.gguf",
         .required = true, .help = "where to write"},
        {.name = "base", .type = LD_CLI_T_STRING, .dest.s = &o.base, .arg = "MODEL", .required = true,
         .help = "the adapter's base model (a model directory or GGUF file)"},
        LD_CLI_THREADS(&o.threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "export lora-gguf", .args = "ADAPTER_DIR", .opts = opts, .pos = &o.pos, .min_pos = 1, .max_pos = 1,
        .about = "Writes a LoRA adapter (PEFT directory) as llama.cpp's GGUF LoRA: `llama-cli -m BASE.gguf --lora\n"
                 "OUT.gguf`, where BASE.gguf is `liandan export gguf MODEL` of the same base."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    ld_ctx *ctx = ld_cli_ctx(o.threads);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_adapter *a = NULL;
    rc = ld_cli_load_model(ctx, o.base, &m, &tok);
    if (!rc && ld_adapter_load(m, o.pos.v[0], &a)) rc = ld_cli_fail(ctx, "loading the adapter");
    if (!rc && ld_adapter_save_gguf(a, o.out)) rc = ld_cli_fail(ctx, "writing the GGUF LoRA");
    if (!rc) fprintf(stderr, "liandan export: wrote %s\n", o.out);
    ld_adapter_free(a);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

static int cmd_export(int argc, char **argv) {
    static const ld_cli_command gguf = {"gguf", "llama.cpp's GGUF file (any weight type)", export_gguf_cmd};
    static const ld_cli_command hf = {"hf", "a Hugging Face model directory (F32 safetensors)", export_hf_cmd};
    static const ld_cli_command lora = {"lora-gguf", "a LoRA adapter as llama.cpp's GGUF LoRA (--lora)", export_lora_cmd};
    static const ld_cli_command *const subs[] = {&gguf, &hf, &lora};
    return ld_cli_dispatch("export", "Writes a model in another format.", subs, 3, argc, argv);
}

const ld_cli_command ld_cmd_export = {"export", "write a model as GGUF or as a Hugging Face directory", cmd_export};

/* cli/cmd_bench.c — `liandan bench SUITE`: measures the machine's limits and the engine's
 * throughput in the same run and prints both with their ratio. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "cli.h"
#include "cli_model.h"

typedef struct {
    const char *name;
    ld_bench_suite_fn fn;
} kernel_suite;

/* The groups of `liandan bench kernels`, in the order they run. */
static const kernel_suite kernel_suites[] = {
    {"limits", NULL},
    {"matmul", ld_bench_suite_matmul},
    {"ops", ld_bench_suite_ops},
    {"attention", ld_bench_suite_attention},
    {"quant", ld_bench_suite_quant},
};

static void bench_kernels(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *r) {
    for (size_t i = 0; i < sizeof kernel_suites / sizeof kernel_suites[0]; i++) {
        if (!kernel_suites[i].fn) continue;
        if (o->filter && !strstr(kernel_suites[i].name, o->filter)) continue;
        ld_bench_on_team(kernel_suites[i].fn, o, lim, r);
    }
}

typedef struct {
    const char *name;
    ld_bench_suite_fn fn; /* NULL: only the machine limits */
} top_suite;

/* `liandan bench SUITE`: every suite prints the machine limits first. */
static const top_suite top_suites[] = {
    {"limits", NULL},
    {"kernels", bench_kernels},
    {"train", ld_bench_train},
    {"mlm", ld_bench_mlm},
    {"clip", ld_bench_clip},
    {"infer", ld_bench_infer},
    {"serve", ld_bench_serve},
    {"tokenizer", ld_bench_tokenizer},
    {"finetune", ld_bench_finetune},
    {"contention", ld_bench_contention},
};

static int cmd_bench(int argc, char **argv) {
    ld_bench_opts o = {.threads = 0, .reps = 7, .json = false, .filter = NULL, .model = NULL, .n_types = 0};
    ld_cli_list pos = {0}, types = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_THREADS(&o.threads),
        LD_CLI_INT("reps", 0, &o.reps, 1, 64, "N", "timed repetitions per row; the median is reported"),
        LD_CLI_STRING("filter", 0, &o.filter, "S", "only groups whose name contains S"),
        LD_CLI_FLAG("json", 0, &o.json, "machine-readable output"),
        LD_CLI_FLAG("mpi", 0, &o.mpi,
                    "train: data parallel under mpirun (1 thread per rank unless --threads): tokens/s per\n"
                    "rank against 1 rank alone, communication seconds, overlap achieved, all-reduce limit"),
        LD_CLI_STRING("model", 0, &o.model, "M",
                      "infer: a model directory or GGUF file (default: GPT-2-124M shape, random)"),
        {.name = "type", .type = LD_CLI_T_LIST, .dest.list = &types, .arg = "T",
         .def = "F32 F16 Q8_0 Q4_K, or only the file's own weights",
         .help = "infer: weight type of the session (F32 F16 Q8_0 Q6_K Q5_K Q4_K Q4_0 Q3_K Q2_K\n"
                 "IQ4_XS IQ4_NL ...; 'all': every type liandan quantizes, with a summary row per type\n"
                 "against decode >= 80 % of the bandwidth limit and prefill >= F32's); kernels --filter\n"
                 "quant: the weight types, also the ones liandan only reads (random blocks); repeat for several"},
        LD_CLI_INT64("depth", 0, &o.depth, 0, 1 << 20, "N", "infer: decode after N tokens of context (0: an 8-token prompt)"),
        LD_CLI_KV_TYPES(&o.kv_type_k, &o.kv_type_v),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "bench", .args = "SUITE", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Measures the machine's limits and the engine's throughput in the same run and prints both with\n"
                 "their ratio.\n\n"
                 "suites:\n"
                 "  limits     only the machine limits (FMA peak, bf16/int8 dot peak, memory bandwidth)\n"
                 "  kernels    matmul at training-step shapes, attention, norms, AdamW — each as a ratio\n"
                 "             to the machine limit measured in the same run\n"
                 "  train      causal-LM training step (GPT-2-124M shape, B=4, T=64) in fp32 and bf16: tokens/s\n"
                 "             and MFU; batch-1 generation tokens/s against the bandwidth limit\n"
                 "  mlm        masked-LM training step of the encoder (BERT-base shape, B=8, T=128, 15 % predicted)\n"
                 "             in fp32 and bf16: tokens/s and MFU against the fp32 FMA peak (--filter fp32: fp32 only)\n"
                 "  clip       image-text training step (emoji_clip shape B=64, ViT-B/32 shape B=8): pairs/s and MFU;\n"
                 "             image pipeline (PNG decode + augment) images/s against the step's; text -> image\n"
                 "             search over 376 images, ms/query (--filter emoji|b32|pipeline|search)\n"
                 "  infer      KV-cached inference (GPT-2-124M shape, or --model): decode at batch 1 against\n"
                 "             the bandwidth limit, prefill of 512 tokens against the FMA peak, per weight type\n"
                 "  serve      continuous batching (GPT-2-124M shape in Q8_0, or --model / --type): aggregate\n"
                 "             decode tokens/s of 1, 4 and 16 concurrent requests, speed-up over one stream\n"
                 "  tokenizer  BPE training time (32k, zh_pretrain + en_text) and encoding MB/s next to\n"
                 "             @huggingface/tokenizers on the same text (data: $LD_DATA_DIR)\n"
                 "  finetune   GPT-2-124M shape: LoRA step time against a full fine-tuning step (interleaved;\n"
                 "             --filter step), peak memory of full, LoRA and QLoRA on a Q4_K base (--filter memory)\n"
                 "  contention GPT-2-124M shape: training step (fp32, B=4, T=64) and Q8_0 decode at batch 1 alone\n"
                 "             and beside a busy process pinned to one core, and their ratio (--filter train|decode)"};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *suite = pos.v[0];
    for (int i = 0; i < types.n; i++) {
        if (!strcmp(types.v[i], "all")) {
            o.all_types = true;
            continue;
        }
        ld_dtype t = ld_dtype_from_name(types.v[i]);
        if (t == LD_DTYPE_COUNT || (t != LD_F32 && t != LD_F16 && ld_dtype_traits(t)->block_size == 1))
            return fprintf(stderr, "liandan bench: --type: '%s' is not a weight type\n", types.v[i]),
                   ld_cli_parse_free(&spec), 2;
        bool seen = false;
        for (int k = 0; k < o.n_types; k++) seen |= o.types[k] == t;
        if (seen) continue;
        if (o.n_types == LD_BENCH_MAX_TYPES)
            return fprintf(stderr, "liandan bench: at most %d different --type values\n", LD_BENCH_MAX_TYPES),
                   ld_cli_parse_free(&spec), 2;
        o.types[o.n_types++] = t;
    }
    if (o.mpi && strcmp(suite, "train"))
        return fprintf(stderr, "liandan bench: --mpi is for the train suite\n"), ld_cli_parse_free(&spec), 2;
    if (o.mpi && !o.threads) o.threads = 1; /* ranks share the node's cores */
    ld_ctx *ctx = ld_cli_ctx(o.threads);
    o.threads = ld_ctx_threads(ctx);
    int rank = o.mpi ? ld_bench_mpi_rank(ctx) : 0; /* --mpi: only rank 0 prints */
    if (rank < 0) {
        rc = ld_cli_fail(ctx, "bench train --mpi");
        ld_ctx_free(ctx);
        ld_cli_parse_free(&spec);
        return rc;
    }
    FILE *quiet = rank > 0 ? fopen("/dev/null", "w") : NULL;
    rc = 0;
    const top_suite *ts = NULL;
    for (size_t i = 0; i < sizeof top_suites / sizeof top_suites[0]; i++)
        if (!strcmp(suite, top_suites[i].name)) ts = &top_suites[i];
    if (ts) {
        ld_machine_limits lim;
        ld_bench_measure_limits(o.threads, &lim);
        ld_bench_report r = {.json = o.json, .out = quiet ? quiet : stdout};
        ld_bench_report_begin(&r, &lim);
        if (o.mpi) ld_bench_train_mpi(&o, &lim, &r);
        else if (ts->fn) ts->fn(&o, &lim, &r);
        ld_bench_report_end(&r);
        if (r.failures) rc = 1;
    } else {
        fprintf(stderr, "liandan bench: unknown suite '%s' (try --help)\n", suite);
        rc = 2;
    }
    if (quiet) fclose(quiet);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_bench = {"bench", "measure machine limits and engine throughput", cmd_bench};

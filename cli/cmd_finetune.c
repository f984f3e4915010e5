/* cli/cmd_finetune.c — `liandan finetune CONFIG.json`: adapts a pretrained model to a task
 * (full fine-tuning, LoRA/QLoRA, prompt tuning; a classification head for label data;
 * continual-learning stages) as the config says. The library's training job does the work. */
#include "cli.h"
#include "train_run.h"

static const char *const methods[] = {"full", "lora", "prompt", NULL};

static int cmd_finetune(int argc, char **argv) {
    ld_train_run_args a = {.cmd = "finetune", .kind = LD_TRAIN_RUN_FINETUNE};
    ld_cli_list pos = {0};
    const char *base = NULL;
    int method = -1;
    ld_cli_opt common[LD_TRAIN_RUN_OPTS];
    ld_train_run_opts(&a, common);
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("base", 0, &base, "MODEL", "the pretrained model: a model directory or GGUF file (config key \"base\")"),
        {.name = "method", .type = LD_CLI_T_ENUM, .dest.i = &method, .choices = methods, .def = "the config's, else full",
         .help = "what trains (config key \"method\")"},
        LD_CLI_GROUP("training", common),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "finetune", .args = "CONFIG.json", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Fine-tunes a pretrained model (\"base\": a model directory or GGUF file) on the config's data:\n"
                 "  \"method\": \"full\" | \"lora\" | \"prompt\"   (LoRA on a quantized GGUF base keeps it quantized: QLoRA)\n"
                 "  \"precision\": \"auto\" (default): with lora or prompt the frozen base multiplies in bf16\n"
                 "  where bf16 products are >= 1.8x fp32 (measured at start: AVX512_BF16 on AMD Zen 5); the\n"
                 "  adapter, its optimizer and full fine-tuning stay fp32, as does everything on other CPUs;\n"
                 "  \"fp32\" or \"bf16\" forces one\n"
                 "  \"data\": {\"format\": \"text\" | \"chat\" | \"classification\", \"train\": FILE, \"val\": FILE, ...}\n"
                 "Classification data trains a head on the last token (or the mean: \"head\": {\"pooling\": \"mean\"}).\n"
                 "\"stages\" trains several in order (continual learning: replay, L2-SP / EWC; `liandan eval\n"
                 "forgetting`). Writes OUT/model (full) or OUT/adapter (PEFT layout), metrics.jsonl and checkpoints;\n"
                 "docs/training.md lists every key."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    a.config = pos.v[0];
    if ((base && ld_train_run_add_override(&a, "base", base, true)) ||
        (method >= 0 && ld_train_run_add_override(&a, "method", methods[method], true))) {
        ld_cli_list_free(&pos);
        return fprintf(stderr, "liandan finetune: out of memory\n"), 1;
    }
    rc = ld_train_run(&a);
    ld_cli_list_free(&pos);
    return rc;
}

const ld_cli_command ld_cmd_finetune = {"finetune", "adapt a pretrained model: full, LoRA/QLoRA, prompt tuning, heads",
                                        cmd_finetune};

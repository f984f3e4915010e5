/* cli/cmd_pretrain.c — `liandan pretrain CONFIG.json`: trains a causal LM as the config says
 * (the driver is cli/train_run.c, shared with `liandan distill`). */
#include "cli.h"
#include "train_run.h"

static int cmd_pretrain(int argc, char **argv) {
    ld_train_run_args a = {.cmd = "pretrain"};
    ld_cli_list pos = {0};
    ld_cli_opt common[LD_TRAIN_RUN_OPTS];
    ld_train_run_opts(&a, common);
    const ld_cli_opt opts[] = {LD_CLI_GROUP("training", common), LD_CLI_END};
    const ld_cli_spec spec = {.cmd = "pretrain", .args = "CONFIG.json", .opts = opts, .pos = &pos, .min_pos = 1,
                              .max_pos = 1,
                              .about = "Trains a causal LM as the config says (docs/training.md lists every key); with\n"
                                       "\"objective\": \"mlm\" a masked-LM encoder (BERT, ESM-2) on FASTA or text files."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    a.config = pos.v[0];
    rc = ld_train_run(&a);
    ld_cli_list_free(&pos);
    return rc;
}

const ld_cli_command ld_cmd_pretrain = {"pretrain", "train a causal LM, or a masked-LM encoder (config file)", cmd_pretrain};

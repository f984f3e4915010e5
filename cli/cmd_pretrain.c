/* cli/cmd_pretrain.c — `liandan pretrain CONFIG.json`: trains a causal LM as the config says
 * (the library's training job does the work; cli/train_run.c prints its progress). */
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
                                       "\"objective\": \"mlm\" a masked-LM encoder (BERT, ESM-2) on FASTA or text files; with\n"
                                       "\"model\": {\"model_type\": \"clip\", ...} an image-text model (docs/clip.md)."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    a.config = pos.v[0];
    if (ld_cli_is_clip_config(a.config)) { /* the image-text model has a driver of its own (cli/cmd_clip.c) */
        if (a.sets.n) {
            fprintf(stderr, "liandan pretrain: --set is not available for clip models yet\n");
            rc = 2;
        } else {
            rc = ld_cli_clip_pretrain(a.config, a.out, a.max_steps, a.threads, a.quiet, a.resume);
        }
        ld_cli_list_free(&a.sets), ld_cli_list_free(&a.extra);
    } else {
        rc = ld_train_run(&a);
    }
    ld_cli_list_free(&pos);
    return rc;
}

const ld_cli_command ld_cmd_pretrain = {"pretrain", "train a causal LM, or a masked-LM encoder (config file)", cmd_pretrain};

/* cli/cmd_pretrain.c — `liandan pretrain CONFIG.json`: trains a causal LM as the config says
 * (the driver is cli/train_run.c, shared with `liandan distill`). */
#include <string.h>

#include "cli.h"
#include "train_run.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: liandan pretrain CONFIG.json [options]\n\n"
            "Trains a causal LM as the config says (docs/training.md lists every key).\n\n"
            "options:\n%s",
            ld_train_run_options_help);
}

static int cmd_pretrain(int argc, char **argv) {
    ld_train_run_args a = {.cmd = "pretrain"};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
        int used = ld_train_run_parse_option(&a, argc, argv, &i);
        if (used < 0) return 2;
        if (used) continue;
        if (argv[i][0] != '-' && !a.config) a.config = argv[i];
        else return fprintf(stderr, "liandan pretrain: unexpected argument '%s' (see --help)\n", argv[i]), 2;
    }
    if (!a.config) return usage(stderr), 2;
    return ld_train_run(&a);
}

const ld_cli_command ld_cmd_pretrain = {"pretrain", "train a causal LM from token shards (config file)", cmd_pretrain};

/* cli/main.c — the `liandan` entry point: dispatches to the subcommand table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const ld_cli_command *const commands[] = {
    &ld_cmd_pretrain,
    &ld_cmd_distill,
    &ld_cmd_generate,
    &ld_cmd_chat,
    &ld_cmd_score,
    &ld_cmd_eval,
    &ld_cmd_export,
    &ld_cmd_quantize,
    &ld_cmd_imatrix,
    &ld_cmd_bench,
    &ld_cmd_plot,
    &ld_cmd_data,
    &ld_cmd_inspect,
    &ld_cmd_gguf,
    &ld_cmd_tokenizer,
    &ld_cmd_tokenize,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f) {
    fprintf(f,
            "liandan %s — pretrain, adapt, compress and serve large pretrained models\n\n"
            "usage: liandan <command> [options]   (liandan <command> --help for its options)\n\n"
            "commands:\n",
            ld_version());
    for (size_t i = 0; i < N_COMMANDS; i++) fprintf(f, "  %-12s %s\n", commands[i]->name, commands[i]->summary);
}

static void log_to_stderr(void *user, ld_log_level level, const char *msg) {
    (void)user;
    static const char *const prefix[] = {"debug: ", "", "warning: ", "error: "};
    fprintf(stderr, "liandan: %s%s\n", prefix[level], msg);
}

ld_ctx *ld_cli_ctx(int threads) {
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = threads;
    p.log = log_to_stderr;
    p.log_level = getenv("LD_DEBUG") ? LD_LOG_DEBUG : LD_LOG_INFO;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&p, &ctx) != LD_OK) {
        fprintf(stderr, "liandan: cannot create a context (out of memory)\n");
        exit(1);
    }
    return ctx;
}

int ld_cli_fail(ld_ctx *ctx, const char *what) {
    fprintf(stderr, "liandan: %s: %s\n", what, ctx ? ld_ctx_error(ctx) : "error");
    return 1;
}

bool ld_cli_parse_int(const char *opt, const char *val, long min, long max, long *out) {
    char *end = NULL;
    if (!val) {
        fprintf(stderr, "liandan: %s needs a value\n", opt);
        return false;
    }
    long v = strtol(val, &end, 10);
    if (!*val || *end || v < min || v > max) {
        fprintf(stderr, "liandan: %s: '%s' is not an integer in %ld..%ld\n", opt, val, min, max);
        return false;
    }
    *out = v;
    return true;
}

bool ld_cli_isatty(void) {
    return isatty(2);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("liandan %s\n", ld_version());
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (!strcmp(argv[1], commands[i]->name)) return commands[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "liandan: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

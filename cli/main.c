/* cli/main.c — the `liandan` entry point: dispatches to the subcommand table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const ld_cli_command *const commands[] = {
    &ld_cmd_init,
    &ld_cmd_pretrain,
    &ld_cmd_distill,
    &ld_cmd_finetune,
    &ld_cmd_generate,
    &ld_cmd_chat,
    &ld_cmd_chat_template,
    &ld_cmd_score,
    &ld_cmd_embed,
    &ld_cmd_fill_mask,
    &ld_cmd_classify,
    &ld_cmd_index,
    &ld_cmd_search,
    &ld_cmd_eval,
    &ld_cmd_export,
    &ld_cmd_quantize,
    &ld_cmd_imatrix,
    &ld_cmd_serve,
    &ld_cmd_keys,
    &ld_cmd_job_worker,
    &ld_cmd_bench,
    &ld_cmd_plot,
    &ld_cmd_data,
    &ld_cmd_inspect,
    &ld_cmd_gguf,
    &ld_cmd_tokenizer,
    &ld_cmd_tokenize,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

/* The list of (sub)commands: `liandan --help` and `liandan CMD --help` for commands with
 * subcommands. The help test (tests/e2e/cli_help.sh) reads the lines under "commands:". */
static void list_commands(FILE *f, const char *cmd, const char *about, const ld_cli_command *const *subs, size_t n) {
    fprintf(f, "usage: liandan %s%s<command> [options]   (liandan %s%s<command> --help for its options)\n\n%s%s",
            cmd ? cmd : "", cmd ? " " : "", cmd ? cmd : "", cmd ? " " : "", about, *about ? "\n\n" : "");
    fputs("commands:\n", f);
    for (size_t i = 0; i < n; i++) fprintf(f, "  %-12s %s\n", subs[i]->name, subs[i]->summary);
}

int ld_cli_dispatch(const char *cmd, const char *about, const ld_cli_command *const *subs, size_t n, int argc,
                    char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        list_commands(argc < 2 ? stderr : stdout, cmd, about, subs, n);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < n; i++)
        if (!strcmp(argv[1], subs[i]->name)) return subs[i]->run(argc - 1, argv + 1);
    fprintf(stderr, "liandan%s%s: unknown command '%s'\n\n", cmd ? " " : "", cmd ? cmd : "", argv[1]);
    list_commands(stderr, cmd, about, subs, n);
    return 2;
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

bool ld_cli_isatty(void) {
    return isatty(2);
}

/* LD_ISA (liandan/core.h): an unknown level is an error; one above this CPU's is noted. */
static bool check_isa_env(void) {
    const char *widest = NULL;
    int e = ld_cpu_level_env(&widest);
    if (e < 0) {
        fprintf(stderr, "liandan: LD_ISA=%s: not an instruction-set level (avx512, avx2, neon or scalar)\n", getenv("LD_ISA"));
        return false;
    }
    if (e > 0 && strcmp(getenv("LD_ISA"), ld_cpu_level()))
        fprintf(stderr, "liandan: warning: LD_ISA=%s, but this CPU runs at most %s: using %s\n", getenv("LD_ISA"), widest,
                ld_cpu_level());
    return true;
}

int main(int argc, char **argv) {
    if (!check_isa_env()) return 2;
    if (argc >= 2 && !strcmp(argv[1], "--version")) {
        printf("liandan %s\n", ld_version());
        return 0;
    }
    char about[160];
    snprintf(about, sizeof about, "liandan %s — pretrain, adapt, compress and serve large pretrained models", ld_version());
    return ld_cli_dispatch(NULL, about, commands, N_COMMANDS, argc, argv);
}

/* cli/cli.h — what every `liandan` subcommand shares: the command table entry, the option
 * parser (opt.h), subcommand dispatch, and printing of library errors. The CLI is the only code that prints to
 * the terminal or exits. */
#ifndef LD_CLI_H
#define LD_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "liandan/liandan.h"
#include "opt.h"

typedef struct ld_cli_command {
    const char *name;    /* "bench", "tokenizer", ... */
    const char *summary; /* one line for `liandan --help` */
    /* argv[0] is the command name. Returns the process exit code. */
    int (*run)(int argc, char **argv);
} ld_cli_command;

/* Every subcommand, defined in its cli/cmd_<name>.c file. */
extern const ld_cli_command ld_cmd_bench;
extern const ld_cli_command ld_cmd_plot;
extern const ld_cli_command ld_cmd_data;
extern const ld_cli_command ld_cmd_inspect;
extern const ld_cli_command ld_cmd_gguf;
extern const ld_cli_command ld_cmd_tokenizer;
extern const ld_cli_command ld_cmd_tokenize;
extern const ld_cli_command ld_cmd_pretrain;
extern const ld_cli_command ld_cmd_distill;
extern const ld_cli_command ld_cmd_finetune;
extern const ld_cli_command ld_cmd_generate;
extern const ld_cli_command ld_cmd_chat;
extern const ld_cli_command ld_cmd_chat_template;
extern const ld_cli_command ld_cmd_init;
extern const ld_cli_command ld_cmd_score;
extern const ld_cli_command ld_cmd_eval;
extern const ld_cli_command ld_cmd_export;
extern const ld_cli_command ld_cmd_quantize;
extern const ld_cli_command ld_cmd_imatrix;
extern const ld_cli_command ld_cmd_embed;
extern const ld_cli_command ld_cmd_fill_mask;

/* `liandan eval mlm` (cli/cmd_encode.c): argv[0] is "mlm". */
int ld_cli_eval_mlm(int argc, char **argv);
/* `liandan eval probe` (cli/cmd_encode.c). */
int ld_cli_eval_probe(int argc, char **argv);
int ld_cli_eval_classify(int argc, char **argv);
extern const ld_cli_command ld_cmd_serve;
extern const ld_cli_command ld_cmd_keys;
extern const ld_cli_command ld_cmd_job_worker;

/* Writes data [n, c] as a float32 NumPy .npy file; 1 (after a message) on failure. */
int ld_cli_write_npy(ld_ctx *ctx, const char *path, const float *data, int64_t n, int64_t c);
/* The image-text model's side of `liandan embed` and `liandan pretrain` (cli/cmd_clip.c). */
int ld_cli_clip_embed(const char *dir, const ld_cli_list *images, const ld_cli_list *texts, const char *npy, int threads);
bool ld_cli_is_clip_config(const char *path); /* its "model" has model_type "clip" */
int ld_cli_clip_pretrain(const char *config, const char *out, int64_t max_steps, int threads, bool quiet, bool resume);
/* `liandan eval retrieval` and `liandan eval zeroshot` (cli/cmd_clip.c). */
int ld_cli_eval_retrieval(int argc, char **argv);
int ld_cli_eval_zeroshot(int argc, char **argv);
extern const ld_cli_command ld_cmd_classify;
extern const ld_cli_command ld_cmd_index;
extern const ld_cli_command ld_cmd_search;

/* A context with the CLI's log sink (stderr, "liandan: warning: ...") and `threads`
 * (0 = all cores). Exits with a message on failure (the CLI may exit; the library may not). */
ld_ctx *ld_cli_ctx(int threads);
/* Prints "liandan: <what>: <ctx error>" to stderr and returns 1. */
int ld_cli_fail(ld_ctx *ctx, const char *what);
/* Runs the subcommand named by argv[1] from `subs` (argv[0] is `cmd`, e.g. "data"); prints the
 * list of subcommands for --help (exit 0) and for a missing or unknown one (exit 2). */
int ld_cli_dispatch(const char *cmd, const char *about, const ld_cli_command *const *subs, size_t n, int argc,
                    char **argv);
/* The corpus options (--format, --column, --field, --paragraphs, --nfkc, --simplified,
 * --collapse-whitespace) as a table over cp, to join with LD_CLI_GROUP("corpus", t). */
#define LD_CLI_CORPUS_OPTS 8
void ld_cli_corpus_opts(ld_corpus_params *cp, ld_cli_opt t[LD_CLI_CORPUS_OPTS]);
/* Reads all of f (every byte, NUL bytes included) into a malloc'd, NUL-terminated *text of *len
 * bytes. 1 on a read error or out of memory, printed as "liandan <cmd>: cannot read <name>". */
int ld_cli_read_all(FILE *f, const char *cmd, const char *name, char **text, size_t *len);
/* "amino" (the protein vocabulary), a WordPiece vocab.txt (character-level), or tokenizer.json. */
ld_status ld_cli_load_tokenizer(ld_ctx *ctx, const char *spec, ld_tokenizer **tok);
/* true when stderr is a terminal (progress bars are drawn only then). */
bool ld_cli_isatty(void);

/* A progress bar on stderr (in place on a terminal, periodic lines otherwise). Zero-init. */
typedef struct ld_cli_bar {
    const char *phase;
    double start, phase_start, last;
} ld_cli_bar;
/* done/total in raw units (total <= 0: unknown); the rate is shown as done/scale per second in
 * `unit` (e.g. scale 1e6 and "MB"). */
void ld_cli_progress(ld_cli_bar *b, const char *phase, double done, double total, const char *unit, double scale);

#endif

/* cli/opt.h — the one option parser of every `liandan` command. A command describes its options
 * once, in a table (long and short name, type, where the value goes, range, value name, help),
 * and ld_cli_parse() parses argv with it and generates `--help` from the same table.
 *
 *     int64_t n = 100;              // the default is the variable's value before parsing
 *     const char *out = NULL;
 *     int threads = 0;
 *     ld_cli_list specials = {0}, files = {0};
 *     const ld_cli_opt opts[] = {
 *         LD_CLI_INT64("n", 0, &n, 1, 100000, "N", "how many poems"),
 *         LD_CLI_STRING("output", 'o', &out, "FILE", "where to write (required)"),
 *         LD_CLI_LIST("special", 0, &specials, "TOKEN", "a special token (repeatable)"),
 *         LD_CLI_THREADS(&threads),
 *         LD_CLI_END,
 *     };
 *     const ld_cli_spec spec = {.cmd = "tokenizer train", .args = "FILES...", .about = "Learns ...",
 *                               .opts = opts, .pos = &files, .min_pos = 1, .max_pos = -1};
 *     int rc;
 *     if (!ld_cli_parse(&spec, argc, argv, &rc)) return rc; // 0 after --help, 2 after a bad option
 *     ...
 *     ld_cli_parse_free(&spec);                              // frees the lists
 *
 * argv[0] is the command's own name (skipped). Accepted: `--name VALUE`, `--name=VALUE`, `-o VALUE`,
 * `-oVALUE`, flags anywhere, `--` ends the options, `-` alone is a positional argument. Options may
 * come before, between or after positional arguments. A repeated scalar option keeps its last value;
 * a list keeps every value (no fixed cap). `-h`/`--help` anywhere prints the help on stdout.
 *
 * Numbers are checked completely: no trailing text, no overflow, no NaN/inf, within [min, max]
 * (min == max == 0: the type's whole range). Errors name the command, the option and the range, on
 * stderr (spec->err when set). The help shows each option's default (the variable's value when the
 * table's `def` is NULL; `def` text instead when set; nothing for "").
 *
 * With LD_CLI_PARSE_ONLY set in the environment a command parses its options and stops (exit 0,
 * "options parsed"): tests/e2e/cli_help.sh checks every option the help lists that way.
 *
 * Options shared by several commands are tables of their own, joined in with LD_CLI_GROUP (drawn
 * under their own heading in the help): see ld_cli_sample_opts() in cli_model.h. */
#ifndef LD_CLI_OPT_H
#define LD_CLI_OPT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* A growable list of strings (positional arguments, repeatable options). Zero-init; the strings
 * point into argv. */
typedef struct ld_cli_list {
    const char **v;
    int n, cap;
} ld_cli_list;
/* Appends s (not copied); false when out of memory. */
bool ld_cli_list_push(ld_cli_list *l, const char *s);
void ld_cli_list_free(ld_cli_list *l);

typedef enum ld_cli_opt_type {
    LD_CLI_T_END = 0, /* ends a table */
    LD_CLI_T_FLAG,    /* bool: set to true; takes no value */
    LD_CLI_T_INT,     /* int */
    LD_CLI_T_INT64,   /* int64_t */
    LD_CLI_T_UINT64,  /* uint64_t (seeds) */
    LD_CLI_T_FLOAT,   /* float */
    LD_CLI_T_DOUBLE,  /* double */
    LD_CLI_T_STRING,  /* const char * (points into argv) */
    LD_CLI_T_ENUM,    /* int: index of the value in `choices` */
    LD_CLI_T_LIST,    /* ld_cli_list: every value, in order (repeatable) */
    LD_CLI_T_FUNC,    /* fn(user, "--name", value): false after printing an error */
    LD_CLI_T_GROUP,   /* another table, drawn under the heading `help` */
} ld_cli_opt_type;

/* Range ends that are excluded (temperature > 0, min_p < 1). */
enum { LD_CLI_OPEN_MIN = 1, LD_CLI_OPEN_MAX = 2 };

typedef struct ld_cli_opt ld_cli_opt;
struct ld_cli_opt {
    const char *name; /* long name without the dashes ("max-tokens") */
    char short_name;  /* 'o', or 0 */
    ld_cli_opt_type type;
    union { /* where the value goes: the member the type names (the macros check the pointer type) */
        bool *flag;
        int *i;
        int64_t *i64;
        uint64_t *u64;
        float *f;
        double *d;
        const char **s;
        ld_cli_list *list;
        void *user;
        const ld_cli_opt *group;
    } dest;
    double min, max;            /* numbers: the accepted range (both 0: the type's range) */
    int open;                   /* LD_CLI_OPEN_MIN | LD_CLI_OPEN_MAX */
    const char *const *choices; /* ENUM: NULL-terminated names */
    bool (*fn)(void *user, const char *opt, const char *value); /* FUNC */
    const char *arg;  /* the value's name in the help ("N", "FILE"); ENUM: choices when NULL */
    const char *help; /* one or more lines ('\n'); NULL: accepted but not shown (an old spelling) */
    const char *def;  /* the default as shown; NULL: the variable's value; "": none */
    bool required;    /* the option must be given */
};

/* Table rows. ARG is the value's name in the help, HELP its text. */
#define LD_CLI_FLAG(N, S, P, HELP) {.name = N, .short_name = S, .type = LD_CLI_T_FLAG, .dest.flag = P, .help = HELP}
#define LD_CLI_INT(N, S, P, LO, HI, ARG, HELP) \
    {.name = N, .short_name = S, .type = LD_CLI_T_INT, .dest.i = P, .min = LO, .max = HI, .arg = ARG, .help = HELP}
#define LD_CLI_INT64(N, S, P, LO, HI, ARG, HELP) \
    {.name = N, .short_name = S, .type = LD_CLI_T_INT64, .dest.i64 = P, .min = LO, .max = HI, .arg = ARG, .help = HELP}
#define LD_CLI_UINT64(N, S, P, ARG, HELP) \
    {.name = N, .short_name = S, .type = LD_CLI_T_UINT64, .dest.u64 = P, .arg = ARG, .help = HELP}
#define LD_CLI_FLOAT(N, S, P, LO, HI, OPEN, ARG, HELP)                                                              \
    {.name = N, .short_name = S, .type = LD_CLI_T_FLOAT, .dest.f = P, .min = LO, .max = HI, .open = OPEN, .arg = ARG, \
     .help = HELP}
#define LD_CLI_DOUBLE(N, S, P, LO, HI, OPEN, ARG, HELP)                                                              \
    {.name = N, .short_name = S, .type = LD_CLI_T_DOUBLE, .dest.d = P, .min = LO, .max = HI, .open = OPEN, .arg = ARG, \
     .help = HELP}
#define LD_CLI_STRING(N, S, P, ARG, HELP) \
    {.name = N, .short_name = S, .type = LD_CLI_T_STRING, .dest.s = P, .arg = ARG, .help = HELP}
#define LD_CLI_ENUM(N, S, P, CHOICES, HELP) \
    {.name = N, .short_name = S, .type = LD_CLI_T_ENUM, .dest.i = P, .choices = CHOICES, .help = HELP}
#define LD_CLI_LIST(N, S, P, ARG, HELP) \
    {.name = N, .short_name = S, .type = LD_CLI_T_LIST, .dest.list = P, .arg = ARG, .help = HELP}
#define LD_CLI_FUNC(N, S, FN, USER, ARG, HELP) \
    {.name = N, .short_name = S, .type = LD_CLI_T_FUNC, .fn = FN, .dest.user = USER, .arg = ARG, .help = HELP}
#define LD_CLI_GROUP(HEADING, TABLE) {.name = "", .type = LD_CLI_T_GROUP, .dest.group = TABLE, .help = HEADING}
/* --threads N (0 = all cores), the same in every command. */
#define LD_CLI_THREADS(P)                                                                                     \
    {.name = "threads", .type = LD_CLI_T_INT, .dest.i = P, .min = 0, .max = 4096, .arg = "N",                 \
     .help = "threads", .def = "all cores"}
#define LD_CLI_END {.type = LD_CLI_T_END}

typedef struct ld_cli_spec {
    const char *cmd;   /* "generate", "data prepare": names the command in messages and the help */
    const char *args;  /* the positional arguments in the usage line ("MODEL [PROMPT...]") */
    const char *about; /* what the command does (paragraphs; printed after the usage line) */
    const ld_cli_opt *opts;
    ld_cli_list *pos;  /* receives the positional arguments (may be NULL when none are allowed) */
    int min_pos, max_pos; /* how many positional arguments (max_pos -1: no limit) */
    const char *more;  /* text printed after the options (examples, notes); may be NULL */
    FILE *out, *err;   /* NULL: stdout / stderr (tests capture them) */
} ld_cli_spec;

/* Parses argv[1..argc) with the spec. true: go on. false: return *exit_code from the command (0
 * after printing the help, 2 after printing what was wrong). */
bool ld_cli_parse(const ld_cli_spec *spec, int argc, char **argv, int *exit_code);
/* Frees the lists the parse filled (the spec's table and positional list). */
void ld_cli_parse_free(const ld_cli_spec *spec);
/* Prints the help generated from the spec. */
void ld_cli_help(const ld_cli_spec *spec, FILE *f);
/* Parses a whole decimal integer within [min, max]; false (printed, naming `what`) otherwise. For
 * numbers that are not options (positional ids, suite parameters). */
bool ld_cli_parse_int64(const char *cmd, const char *what, const char *s, int64_t min, int64_t max, int64_t *out);

#endif

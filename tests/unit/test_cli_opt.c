/* test_cli_opt.c — the CLI's option parser (cli/opt.c): every value type with its range
 * checks (a table of bad values and the message each gives), the argument forms, repeatable
 * lists without a cap, required options, positional counts, and the help generated from the
 * table. */
#include <limits.h>

#include "ld_test.h"
#include "opt.h"

/* A parse of a space-separated command line against one table; the messages land in err/out. */
typedef struct probe {
    int64_t i64;
    int i;
    uint64_t u64;
    float f;
    double d;
    const char *s;
    bool flag;
    int choice;
    ld_cli_list list, pos;
    int func_calls;
    char *out, *err;
    size_t out_len, err_len;
} probe;

static const char *const colours[] = {"red", "green", "blue", NULL};

static bool func_even(void *user, const char *opt, const char *v) {
    probe *p = user;
    p->func_calls++;
    return strlen(v) % 2 == 0 && strcmp(opt, "--even") == 0;
}

/* Parses `line` (words split at spaces; "_" stands for an empty word); returns the exit code
 * or -1 when parsing says go on. */
static int run(probe *p, const char *line) {
    static char buf[4096]; /* the parsed strings point into it after the call */
    char *argv[1200];
    int argc = 0;
    argv[argc++] = "cmd";
    snprintf(buf, sizeof buf, "%s", line);
    for (char *w = strtok(buf, " "); w && argc < 1199; w = strtok(NULL, " ")) argv[argc++] = strcmp(w, "_") ? w : "";
    FILE *out = open_memstream(&p->out, &p->out_len), *err = open_memstream(&p->err, &p->err_len);
    const ld_cli_opt group[] = {
        LD_CLI_DOUBLE("ratio", 0, &p->d, 0, 1, LD_CLI_OPEN_MIN, "X", "a share"),
        LD_CLI_END,
    };
    const ld_cli_opt opts[] = {
        LD_CLI_INT64("count", 'n', &p->i64, 1, 1000, "N", "how many"),
        LD_CLI_INT("level", 0, &p->i, 0, 0, "L", "any int"),
        LD_CLI_UINT64("seed", 0, &p->u64, "S", "a seed"),
        LD_CLI_FLOAT("temp", 0, &p->f, 0, 2, 0, "T", "a float in [0, 2]"),
        LD_CLI_STRING("output", 'o', &p->s, "FILE", "where"),
        LD_CLI_FLAG("verbose", 'v', &p->flag, "say more"),
        LD_CLI_ENUM("colour", 0, &p->choice, colours, "a colour"),
        LD_CLI_LIST("item", 'I', &p->list, "X", "repeatable"),
        LD_CLI_FUNC("even", 0, func_even, p, "S", "a string of even length"),
        {.name = "old-name", .type = LD_CLI_T_STRING, .dest.s = &p->s}, /* hidden */
        LD_CLI_GROUP("more", group),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {.cmd = "probe", .args = "A [B]", .about = "Probes the parser.", .opts = opts,
                              .pos = &p->pos, .min_pos = 1, .max_pos = 2, .out = out, .err = err};
    int rc;
    bool go = ld_cli_parse(&spec, argc, argv, &rc);
    fclose(out), fclose(err);
    return go ? -1 : rc;
}

static void reset(probe *p) {
    ld_cli_list_free(&p->list);
    ld_cli_list_free(&p->pos);
    free(p->out), free(p->err);
    memset(p, 0, sizeof *p);
    p->i64 = 7, p->f = 0.5f, p->d = 0.25, p->choice = 1;
}

TEST(cli_opt_values_and_forms) {
    probe p = {0};
    reset(&p);
    CHECK(run(&p, "a --count 12 --level=-5 --seed 18446744073709551615 --temp 1.5 -o x.bin -v --colour blue b") == -1);
    CHECK(p.i64 == 12 && p.i == -5 && p.u64 == UINT64_MAX && p.f == 1.5f && !strcmp(p.s, "x.bin") && p.flag);
    CHECK(p.choice == 2 && p.pos.n == 2 && !strcmp(p.pos.v[0], "a") && !strcmp(p.pos.v[1], "b"));
    reset(&p);
    CHECK(run(&p, "-n5 -ofile --output=last --ratio 1 a") == -1); /* the last value wins */
    CHECK(p.i64 == 5 && !strcmp(p.s, "last") && p.d == 1.0);
    reset(&p);
    CHECK(run(&p, "--old-name hidden -- -v --count") == -1); /* after --, everything is positional */
    CHECK(!strcmp(p.s, "hidden") && !p.flag && p.pos.n == 2 && !strcmp(p.pos.v[0], "-v"));
    reset(&p);
    CHECK(run(&p, "- --level -2147483648") == -1); /* "-" is a positional argument */
    CHECK(p.pos.n == 1 && !strcmp(p.pos.v[0], "-") && p.i == INT_MIN);
    reset(&p);
    CHECK(run(&p, "a --even abcd") == -1 && p.func_calls == 1);
    reset(&p);
}

TEST(cli_opt_lists_have_no_cap) {
    probe p = {0};
    reset(&p);
    char line[4096] = "a";
    for (int i = 0; i < 500; i++) snprintf(line + strlen(line), sizeof line - strlen(line), " -I %d", i % 10);
    CHECK(run(&p, line) == -1);
    CHECK(p.list.n == 500);
    for (int i = 0; i < p.list.n; i++) CHECK(p.list.v[i][0] == '0' + i % 10);
    reset(&p);
}

/* Each bad command line: the exit code and a piece of the message. */
static const struct {
    const char *line;
    int rc;
    const char *says;
} bad[] = {
    {"a --count 9999999999999999999", 2, "--count: '9999999999999999999' is not an integer in 1..1000"},
    {"a --count 0", 2, "not an integer in 1..1000"},
    {"a --count 1001", 2, "not an integer in 1..1000"},
    {"a --count 12abc", 2, "'12abc' is not an integer"},
    {"a --count 1e3", 2, "'1e3' is not an integer"},
    {"a --count 0x10", 2, "'0x10' is not an integer"},
    {"a --count +5", 2, "'+5' is not an integer"},
    {"a --count _", 2, "'' is not an integer"},
    {"a -n -", 2, "'-' is not an integer"},
    {"a --level 2147483648", 2, "not an integer in -2147483648..2147483647"},
    {"a --seed -1", 2, "not an integer in 0..18446744073709551615"},
    {"a --seed 18446744073709551616", 2, "not an integer in 0..18446744073709551615"},
    {"a --temp nan", 2, "--temp: 'nan' is not a number in [0, 2]"},
    {"a --temp inf", 2, "'inf' is not a number"},
    {"a --temp 1e999", 2, "'1e999' is not a number"},
    {"a --temp 2.5", 2, "not a number in [0, 2]"},
    {"a --temp -0.1", 2, "not a number in [0, 2]"},
    {"a --temp 1x", 2, "'1x' is not a number"},
    {"a --ratio 0", 2, "--ratio: '0' is not a number in (0, 1]"},
    {"a --colour mauve", 2, "--colour: 'mauve' is not one of red, green, blue"},
    {"a --count", 2, "--count needs a value (N)"},
    {"a -o", 2, "-o needs a value (FILE)"},
    {"a --verbose=yes", 2, "--verbose takes no value"},
    {"a --cuont 3", 2, "unknown option '--cuont' (did you mean --count?)"},
    {"a --zzzzzz", 2, "unknown option '--zzzzzz'"},
    {"a -x", 2, "unknown option '-x'"},
    {"a b c", 2, "unexpected argument 'c'"},
    {"--verbose", 2, "missing A [B]"},
    {"a --even abc", 2, ""},
    {"a --count 3 --help", 0, NULL},
    {"--help --count nonsense", 0, NULL},
};

TEST(cli_opt_bad_input_table) {
    probe p = {0};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        reset(&p);
        int rc = run(&p, bad[k].line);
        CHECK_MSG(rc == bad[k].rc, "'%s' gave %d, expected %d (%s)", bad[k].line, rc, bad[k].rc, p.err ? p.err : "");
        if (bad[k].says) CHECK_MSG(strstr(p.err, bad[k].says), "'%s' said '%s', not '%s'", bad[k].line, p.err, bad[k].says);
        if (bad[k].rc == 2 && bad[k].says && *bad[k].says) CHECK_MSG(strstr(p.err, "liandan probe: "), "%s", p.err);
        if (bad[k].rc == 2) CHECK(p.out_len == 0);
    }
    reset(&p);
}

TEST(cli_opt_help_comes_from_the_table) {
    probe p = {0};
    reset(&p);
    CHECK(run(&p, "--count 3 -h") == 0);
    CHECK(p.err_len == 0);
    const char *want[] = {"usage: liandan probe A [B] [options]", "Probes the parser.", "-n, --count N", "how many (default: 7)",
                          "--seed S", "--temp T", "(default: 0.5)", "-o, --output FILE", "-v, --verbose",
                          "--colour red|green|blue", "(default: green)", "-I, --item X", "--even S",
                          "-h, --help", "\nmore:\n", "--ratio X", "(default: 0.25)"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++)
        CHECK_MSG(strstr(p.out, want[k]), "help lacks '%s':\n%s", want[k], p.out);
    CHECK(!strstr(p.out, "old-name"));  /* hidden rows are not shown */
    CHECK(!strstr(p.out, "default: 3")); /* defaults are the values before parsing */
    reset(&p);
}

TEST(cli_opt_parse_int64_helper) {
    int64_t v = 0;
    CHECK(ld_cli_parse_int64("t", "id", "42", 0, 100, &v) && v == 42);
    CHECK(!ld_cli_parse_int64("t", "id", "101", 0, 100, &v));
    CHECK(!ld_cli_parse_int64("t", "id", "99999999999999999999", 0, INT64_MAX, &v));
    CHECK(!ld_cli_parse_int64("t", "id", "4 ", 0, 100, &v));
}

LD_TEST_MAIN()

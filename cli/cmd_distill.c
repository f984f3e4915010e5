/* cli/cmd_distill.c — `liandan distill --teacher DIR --student-config CFG`: trains the
 * (smaller) student the config describes on a frozen teacher's soft targets — KL divergence
 * at a temperature, mixed with the next-token loss — through the training driver shared with
 * `liandan pretrain` (cli/train_run.c): same data keys, checkpoints, resume and output. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "train_run.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: liandan distill --teacher MODEL --student-config CONFIG.json [options]\n\n"
            "Knowledge distillation: trains the student the config describes (a pretrain config: \"model\",\n"
            "\"train_data\", \"val_data\", schedule, ...; docs/training.md) on the teacher's softened output\n"
            "distribution. Per token the loss is\n"
            "  alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * cross-entropy\n"
            "Teacher and student must share the tokenizer (a config without \"tokenizer\" takes the teacher's).\n"
            "Validation loss is the student's plain next-token loss, comparable with `liandan pretrain`.\n\n"
            "options:\n"
            "  --teacher MODEL         the teacher: a model directory or GGUF file (config key \"teacher\")\n"
            "  --student-config FILE   the student's training config\n"
            "  --temperature T         softmax temperature, > 0 (default 1; key \"temperature\")\n"
            "  --alpha A               weight of the soft loss in [0, 1] (default 0.9; key \"alpha\")\n"
            "%s",
            ld_train_run_options_help);
}

/* A number option checked here, so the error names the option. */
static bool parse_number(const char *opt, const char *val, double min, bool min_open, double max, double *out) {
    char *end = NULL;
    double v = val ? strtod(val, &end) : NAN;
    if (!val || end == val || *end || !(min_open ? v > min : v >= min) || !(v <= max)) {
        fprintf(stderr, "liandan distill: %s must be a number %s %g and <= %g (got '%s')\n", opt,
                min_open ? ">" : ">=", min, max, val ? val : "");
        return false;
    }
    *out = v;
    return true;
}

static int cmd_distill(int argc, char **argv) {
    ld_train_run_args a = {.cmd = "distill", .distill = true};
    double x;
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h")) return usage(stdout), 0;
        int used = ld_train_run_parse_option(&a, argc, argv, &i);
        if (used < 0) return 2;
        if (used) continue;
        bool ok = true;
        if ((!strcmp(o, "--student-config") || !strcmp(o, "--teacher")) && !val)
            return fprintf(stderr, "liandan distill: %s needs a value\n", o), 2;
        if (!strcmp(o, "--student-config")) {
            a.config = argv[++i];
        } else if (!strcmp(o, "--teacher")) {
            ok = !ld_train_run_add_override(&a, "teacher", argv[++i], true);
        } else if (!strcmp(o, "--temperature")) {
            if (!parse_number("--temperature", val, 0, true, 1e4, &x)) return 2;
            ok = !ld_train_run_add_override(&a, "temperature", argv[++i], false);
        } else if (!strcmp(o, "--alpha")) {
            if (!parse_number("--alpha", val, 0, false, 1, &x)) return 2;
            ok = !ld_train_run_add_override(&a, "alpha", argv[++i], false);
        } else {
            return fprintf(stderr, "liandan distill: unexpected argument '%s' (see --help)\n", o), 2;
        }
        if (!ok) return fprintf(stderr, "liandan distill: %s: value too long or option repeated too often\n", o), 2;
    }
    if (!a.config) return usage(stderr), 2;
    return ld_train_run(&a);
}

const ld_cli_command ld_cmd_distill = {"distill", "train a smaller model on a teacher's soft targets", cmd_distill};

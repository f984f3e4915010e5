/* cli/cmd_distill.c — `liandan distill --teacher DIR --student-config CFG`: trains the
 * (smaller) student the config describes on a frozen teacher's soft targets — KL divergence
 * at a temperature, mixed with the next-token loss — through the training driver shared with
 * `liandan pretrain` (the library's training job): same data keys, checkpoints, resume and output. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "train_run.h"

static int cmd_distill(int argc, char **argv) {
    ld_train_run_args a = {.cmd = "distill", .kind = LD_TRAIN_RUN_DISTILL};
    const char *teacher = NULL;
    double temperature = NAN, alpha = NAN; /* NAN: not given, the config's value holds */
    ld_cli_opt common[LD_TRAIN_RUN_OPTS];
    ld_train_run_opts(&a, common);
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("teacher", 0, &teacher, "MODEL",
                      "the teacher: a model directory or GGUF file (config key \"teacher\")"),
        {.name = "student-config", .type = LD_CLI_T_STRING, .dest.s = &a.config, .arg = "FILE", .required = true,
         .help = "the student's training config"},
        {.name = "temperature", .type = LD_CLI_T_DOUBLE, .dest.d = &temperature, .min = 0, .max = 1e4,
         .open = LD_CLI_OPEN_MIN, .arg = "T", .def = "the config's, else 1",
         .help = "softmax temperature (config key \"temperature\")"},
        {.name = "alpha", .type = LD_CLI_T_DOUBLE, .dest.d = &alpha, .min = 0, .max = 1, .arg = "A",
         .def = "the config's, else 0.9", .help = "weight of the soft loss (config key \"alpha\")"},
        LD_CLI_GROUP("training", common),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "distill", .opts = opts,
        .about = "Knowledge distillation: trains the student the config describes (a pretrain config: \"model\",\n"
                 "\"train_data\", \"val_data\", schedule, ...; docs/training.md) on the teacher's softened output\n"
                 "distribution. Per token the loss is\n"
                 "  alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)) + (1 - alpha) * cross-entropy\n"
                 "Teacher and student must share the tokenizer (a config without \"tokenizer\" takes the teacher's).\n"
                 "Validation loss is the student's plain next-token loss, comparable with `liandan pretrain`."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    char num[64];
    bool oom = teacher && ld_train_run_add_override(&a, "teacher", teacher, true);
    snprintf(num, sizeof num, "%.17g", temperature);
    oom |= !isnan(temperature) && ld_train_run_add_override(&a, "temperature", num, false);
    snprintf(num, sizeof num, "%.17g", alpha);
    oom |= !isnan(alpha) && ld_train_run_add_override(&a, "alpha", num, false);
    if (oom) return fprintf(stderr, "liandan distill: out of memory\n"), 1;
    return ld_train_run(&a);
}

const ld_cli_command ld_cmd_distill = {"distill", "train a smaller model on a teacher's soft targets", cmd_distill};

/* cli/cmd_eval_tasks.c — `liandan eval tasks MODEL --tasks A,B`: runs task files
 * (tasks/NAME.json, docs/eval-tasks.md) on a model, with an optional adapter, and writes
 * the JSON and Markdown report. The library's ld_task_* do the work. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_model.h"
#include "opt.h"

#define MAX_TASKS 32

typedef struct bar_state {
    ld_cli_bar bar;
    const char *name;
} bar_state;

static void on_progress(void *user, int64_t done, int64_t total) {
    bar_state *b = user;
    ld_cli_progress(&b->bar, b->name, (double)done, (double)total, "examples", 1);
}

int ld_cli_eval_tasks(int argc, char **argv) {
    const char *list = NULL, *adapter = NULL, *split = NULL, *out = NULL;
    const char *tasks_dir = "tasks", *data_dir = getenv("LD_DATA_DIR") ? getenv("LD_DATA_DIR") : "../shared/data";
    ld_task_params p = ld_task_default_params();
    int threads = 0;
    int64_t limit = 0, max_len = 0;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        {.name = "tasks", .type = LD_CLI_T_STRING, .dest.s = &list, .arg = "LIST", .required = true,
         .help = "comma-separated task names (tasks/NAME.json) or task files"},
        LD_CLI_STRING("adapter", 0, &adapter, "DIR", "an adapter: LoRA is merged, a classification head classifies"),
        LD_CLI_INT("shots", 0, &p.shots, 0, 64, "K", "few-shot examples from the task's train split"),
        LD_CLI_FLAG("calibrate", 0, &p.calibrate, "choice tasks: subtract each candidate's score after a content-free query"),
        {.name = "split", .type = LD_CLI_T_STRING, .dest.s = &split, .arg = "S", .def = "the task's", .help = "evaluation split"},
        {.name = "limit", .type = LD_CLI_T_INT64, .dest.i64 = &limit, .min = 0, .max = 1LL << 40, .arg = "N", .def = "all",
         .help = "at most N examples per task, spread evenly over the split (files may be sorted by label)"},
        LD_CLI_UINT64("seed", 0, &p.seed, "S", "which training examples are the shots"),
        {.name = "max-len", .type = LD_CLI_T_INT64, .dest.i64 = &max_len, .min = 0, .max = 1 << 20, .arg = "N",
         .def = "the model's context", .help = "tokens per scored sequence"},
        LD_CLI_INT("batch", 0, &p.batch, 1, 64, "N", "sequences per forward pass"),
        LD_CLI_STRING("tasks-dir", 0, &tasks_dir, "DIR", "where task names are looked up"),
        {.name = "data-dir", .type = LD_CLI_T_STRING, .dest.s = &data_dir, .arg = "DIR",
         .def = "$LD_DATA_DIR or ../shared/data", .help = "where the task files' data paths start"},
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &out, .arg = "FILE", .def = "none",
         .help = "the JSON report (the Markdown table goes to stdout)"},
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "eval tasks", .args = "MODEL", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Evaluates MODEL (a model directory or GGUF file) on tasks described by task files: choice tasks\n"
                 "by the likelihood of each candidate (zero/few-shot; with a classification head, by the head),\n"
                 "generation tasks by greedy decoding (EM/F1, GEC F0.5, spelling P/R/F1). docs/eval-tasks.md\n"
                 "describes the task files."};
    int rc0;
    if (!ld_cli_parse(&spec, argc, argv, &rc0)) return ld_cli_parse_free(&spec), rc0;
    const char *model = pos.v[0];
    p.limit = limit, p.max_len = max_len;
    char names[MAX_TASKS][512];
    int n = 0;
    for (const char *s = list; *s && n < MAX_TASKS;) {
        size_t len = strcspn(s, ",");
        if (len && len < 256) {
            char name[256];
            memcpy(name, s, len), name[len] = 0;
            if (access(name, R_OK) == 0) snprintf(names[n++], sizeof names[0], "%s", name);
            else snprintf(names[n++], sizeof names[0], "%s/%s.json", tasks_dir, name);
        }
        s += len + (s[len] == ',');
    }
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_adapter *a = NULL;
    ld_task_result *res = calloc(MAX_TASKS, sizeof *res);
    /* an adapter merges into (or runs the training forward over) F32 weights: the model is loaded for that */
    int rc = res ? ld_cli_load_model_ex(ctx, model, adapter != NULL, &m, &tok) : 1, done = 0;
    if (!rc && adapter) {
        if (ld_adapter_load(m, adapter, &a)) rc = ld_cli_fail(ctx, "loading the adapter");
        else if (ld_adapter_config_of(a)->method == LD_ADAPTER_LORA && ld_adapter_merge(a))
            rc = ld_cli_fail(ctx, "merging the adapter");
    }
    for (int i = 0; !rc && i < n; i++) {
        ld_task *t = NULL;
        if (ld_task_load(ctx, names[i], data_dir, split, &t)) {
            rc = ld_cli_fail(ctx, "reading the task");
            break;
        }
        bar_state b = {{0}, ld_task_name(t)};
        fprintf(stderr, "liandan: task %s: %lld examples%s\n", ld_task_name(t),
                (long long)(p.limit && p.limit < ld_task_size(t) ? p.limit : ld_task_size(t)),
                p.limit && p.limit < ld_task_size(t) ? " (limited)" : "");
        if (ld_task_run(t, m, tok, &p, on_progress, &b, &res[done])) rc = ld_cli_fail(ctx, "evaluating");
        else done++;
        ld_task_free(t);
        if (!rc) {
            const ld_task_result *r = &res[done - 1];
            fprintf(stderr, "%sliandan: %s (%s):", ld_cli_isatty() ? "\r\033[K" : "", r->task, r->mode);
            for (int k = 0; k < r->n_metrics; k++) fprintf(stderr, " %s %.2f%%", r->metric[k], 100 * r->value[k]);
            if (r->chance == r->chance) fprintf(stderr, " (chance %.2f%%)", 100 * r->chance);
            fprintf(stderr, " in %.0f s\n", r->seconds);
        }
    }
    char *json = NULL, *md = NULL;
    if (!rc && done && ld_task_report(ctx, model, m, tok, res, done, &json, &md)) rc = ld_cli_fail(ctx, "writing the report");
    if (!rc && md) printf("%s", md);
    if (!rc && json && out && ld_file_write_atomic(ctx, out, json, strlen(json))) rc = ld_cli_fail(ctx, "writing the report");
    free(json);
    free(md);
    free(res);
    ld_adapter_free(a);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

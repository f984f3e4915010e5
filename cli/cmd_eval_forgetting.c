/* cli/cmd_eval_forgetting.c — `liandan eval forgetting CONFIG.json`: after a continual
 * fine-tuning run (a config with "stages"), how the model before and after each stage does on
 * every stage's validation data (accuracy with a classification head, else loss and
 * perplexity), with backward/forward transfer and each stage's forgetting. The library's
 * ld_train_job_eval_stages does the work. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"
#include "opt.h"

int ld_cli_eval_forgetting(int argc, char **argv) {
    const char *out = NULL;
    int threads = 0;
    ld_cli_list pos = {0}, sets = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_LIST("set", 0, &sets, "KEY=VALUE", "override a config key, as for finetune (repeatable)"),
        {.name = "output", .short_name = 'o', .type = LD_CLI_T_STRING, .dest.s = &out, .arg = "FILE", .def = "none",
         .help = "the JSON report"},
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "eval forgetting", .args = "CONFIG.json", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "CONFIG is the fine-tuning config with \"stages\" that `liandan finetune` ran (its out_dir holds\n"
                 "stage-1, stage-2, ...). Rows: the model before training and after each stage; columns: each\n"
                 "stage's validation split. Prints the matrix, backward transfer (BWT), forward transfer (FWT)\n"
                 "and per-stage forgetting (docs/training.md, \"Continual learning\")."};
    int rc0;
    if (!ld_cli_parse(&spec, argc, argv, &rc0)) return ld_cli_parse_free(&spec), rc0;
    const char *config = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(threads);
    char *text = NULL;
    size_t len = 0;
    ld_train_job *j = NULL;
    ld_stage_matrix *mx = calloc(1, sizeof *mx);
    int rc = 0;
    if (!mx || ld_file_read(ctx, config, 1 << 20, &text, &len)) rc = ld_cli_fail(ctx, "reading the config");
    else if (ld_train_job_new(ctx, LD_JOB_FINETUNE, text, len, config, sets.v, sets.n, &j))
        rc = ld_cli_fail(ctx, "setting up the stages");
    else if (ld_train_job_eval_stages(j, mx)) rc = ld_cli_fail(ctx, "evaluating the stages");
    if (!rc) {
        int S = mx->n_stages;
        printf("| model |");
        for (int k = 0; k < S; k++) printf(" %s |", mx->name[k]);
        printf("\n|---|");
        for (int k = 0; k < S; k++) printf("---|");
        printf("\n");
        for (int i = 0; i <= S; i++) {
            if (i) printf("| after %s |", mx->name[i - 1]);
            else printf("| before training |");
            for (int k = 0; k < S; k++) {
                if (mx->classify) printf(" %.2f%% |", 100 * mx->accuracy[i][k]);
                else printf(" loss %.4f (ppl %.1f) |", mx->loss[i][k], exp(mx->loss[i][k]));
            }
            printf("\n");
        }
        const char *unit = mx->classify ? "accuracy points" : "nats of validation loss (score = -loss)";
        printf("\nBWT %+.4f, FWT %+.4f (%s); forgetting:", mx->bwt * (mx->classify ? 100 : 1),
               mx->fwt * (mx->classify ? 100 : 1), unit);
        for (int k = 0; k < S; k++) printf(" %s %.4f", mx->name[k], mx->forgetting[k] * (mx->classify ? 100 : 1));
        printf("\n");
        if (out) {
            FILE *f = fopen(out, "w");
            if (!f) rc = (fprintf(stderr, "liandan eval forgetting: cannot write %s\n", out), 1);
            else {
                fprintf(f, "{\n  \"config\": \"%s\",\n  \"metric\": \"%s\",\n  \"stages\": [", config,
                        mx->classify ? "accuracy" : "loss");
                for (int k = 0; k < S; k++) fprintf(f, "%s\"%s\"", k ? ", " : "", mx->name[k]);
                fprintf(f, "],\n  \"matrix\": [");
                for (int i = 0; i <= S; i++) {
                    fprintf(f, "%s[", i ? ", " : "");
                    for (int k = 0; k < S; k++)
                        fprintf(f, "%s%.6f", k ? ", " : "", mx->classify ? mx->accuracy[i][k] : mx->loss[i][k]);
                    fprintf(f, "]");
                }
                fprintf(f, "],\n  \"bwt\": %.6f,\n  \"fwt\": %.6f,\n  \"forgetting\": [", mx->bwt, mx->fwt);
                for (int k = 0; k < S; k++) fprintf(f, "%s%.6f", k ? ", " : "", mx->forgetting[k]);
                fprintf(f, "]\n}\n");
                fclose(f);
            }
        }
    }
    ld_train_job_free(j);
    ld_free(ctx, text); /* ld_file_read's buffer comes from ld_alloc (free() aborted here) */
    free(mx);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

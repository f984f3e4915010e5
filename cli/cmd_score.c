/* cli/cmd_score.c — `liandan score`: log-likelihood of continuations given a context (the
 * zero-shot evaluation CPM used: the most likely continuation is the model's answer). All
 * continuations of one context are scored in one batched forward pass. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

#define MAX_CONT 64

static void usage(FILE *f) {
    fprintf(f, "usage: liandan score MODEL_DIR --context TEXT --continuation A [--continuation B ...]\n"
               "       liandan score MODEL_DIR --file FILE.tsv\n\n"
               "Prints, for each continuation, its total log-probability given the context, its token\n"
               "count and the per-token average; marks the most likely one. In a TSV file each line is\n"
               "context<TAB>continuation1<TAB>continuation2..., and each line is scored in one pass.\n"
               "  --threads N   threads (default: all cores)\n");
}

/* Scores one context against n continuations; prints a block. Returns 0 or 1. */
static int score_one(ld_ctx *ctx, ld_lm *m, const ld_tokenizer *tok, const char *context, char **conts, int n,
                     int line) {
    int32_t *cids = NULL, *ids[MAX_CONT] = {0};
    int64_t clen = 0, lens[MAX_CONT], ctx_lens[MAX_CONT];
    const int32_t *ctxs[MAX_CONT];
    double logp[MAX_CONT];
    int rc = ld_cli_encode(ctx, tok, context, &cids, &clen);
    if (!rc && clen == 0) {
        free(cids);
        cids = malloc(sizeof(int32_t));
        cids[0] = ld_cli_start_token(tok, m);
        clen = 1;
    }
    int64_t total = 0;
    for (int i = 0; i < n && !rc; i++) {
        rc = ld_cli_encode(ctx, tok, conts[i], &ids[i], &lens[i]);
        if (!rc && lens[i] == 0) rc = (fprintf(stderr, "liandan score: line %d: continuation %d is empty\n", line, i + 1), 1);
        ctxs[i] = cids, ctx_lens[i] = clen;
        total += clen + lens[i];
    }
    int64_t max_pos = ld_lm_config_of(m)->max_position;
    ld_lm_session *s = NULL;
    for (int i = 0; i < n && !rc; i++)
        if (clen + lens[i] > max_pos)
            rc = (fprintf(stderr, "liandan score: line %d: context + continuation %d is %lld tokens, the model's context "
                         "is %lld\n", line, i + 1, (long long)(clen + lens[i]), (long long)max_pos), 1);
    int64_t longest = 0; /* the session needs room for the longest item only */
    for (int i = 0; i < n && !rc; i++) longest = clen + lens[i] > longest ? clen + lens[i] : longest;
    if (!rc && ld_lm_session_new(m, n, longest, total, &s)) rc = ld_cli_fail(ctx, "creating the session");
    if (!rc && ld_lm_score(s, n, ctxs, ctx_lens, (const int32_t *const *)ids, lens, logp)) rc = ld_cli_fail(ctx, "scoring");
    if (!rc) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (logp[i] > logp[best]) best = i;
        for (int i = 0; i < n; i++)
            printf("%s%.4f\t%lld\t%.4f\t%s\n", i == best ? "* " : "  ", logp[i], (long long)lens[i],
                   logp[i] / (double)lens[i], conts[i]);
    }
    ld_lm_session_free(s);
    free(cids);
    for (int i = 0; i < n; i++) free(ids[i]);
    return rc;
}

static int cmd_score(int argc, char **argv) {
    const char *dir = NULL, *context = NULL, *file = NULL;
    char *conts[MAX_CONT];
    int n = 0;
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(stdout), 0;
        if (!strcmp(argv[i], "--context") && i + 1 < argc) context = argv[++i];
        else if (!strcmp(argv[i], "--continuation") && i + 1 < argc && n < MAX_CONT) conts[n++] = argv[++i];
        else if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--threads")) {
            if (!ld_cli_parse_int("--threads", i + 1 < argc ? argv[++i] : NULL, 1, 4096, &threads)) return 2;
        } else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else return fprintf(stderr, "liandan score: unexpected argument '%s' (see --help)\n", argv[i]), 2;
    }
    if (!dir || (!file && (!context || !n))) return usage(stderr), 2;
    ld_ctx *ctx = ld_cli_ctx((int)threads);
    ld_lm *m;
    ld_tokenizer *tok;
    int rc = ld_cli_load_model(ctx, dir, &m, &tok);
    if (rc) return rc;
    if (!file) {
        rc = score_one(ctx, m, tok, context, conts, n, 0);
    } else {
        FILE *f = fopen(file, "r");
        if (!f) rc = (fprintf(stderr, "liandan score: cannot open %s\n", file), 1);
        char *line = NULL;
        size_t cap = 0;
        int lineno = 0;
        while (!rc && getline(&line, &cap, f) > 0) {
            lineno++;
            line[strcspn(line, "\r\n")] = 0;
            char *fields[MAX_CONT + 1];
            int nf = 0;
            for (char *p = line, *tab; nf <= MAX_CONT; p = tab + 1) {
                fields[nf++] = p;
                if (!(tab = strchr(p, '\t'))) break;
                *tab = 0;
            }
            if (nf < 2) {
                rc = (fprintf(stderr, "liandan score: %s:%d: need context<TAB>continuation...\n", file, lineno), 1);
                break;
            }
            printf("# %s:%d\n", file, lineno);
            rc = score_one(ctx, m, tok, fields[0], fields + 1, nf - 1, lineno);
        }
        free(line);
        if (f) fclose(f);
    }
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

const ld_cli_command ld_cmd_score = {"score", "log-likelihood of continuations (zero-shot scoring)", cmd_score};

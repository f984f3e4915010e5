/* cli/cmd_score.c — `liandan score`: log-likelihood of continuations given a context (the
 * zero-shot evaluation CPM used: the most likely continuation is the model's answer). The
 * continuations of one context are scored together in batches (ld_lm_score). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

/* Slots and rows per forward pass: bound the memory whatever the number of continuations. The
 * rows' logits take at most SCORE_LOGITS floats (128 MiB), between 16 and 512 rows. */
#define SCORE_SLOTS 16
#define SCORE_LOGITS ((int64_t)1 << 25)

/* Scores one context against n continuations; prints a block. Returns 0 or 1. */
static int score_one(ld_ctx *ctx, ld_lm *m, const ld_tokenizer *tok, const char *context, const char *const *conts,
                     int n, int line) {
    int32_t *cids = NULL, **ids = calloc((size_t)n, sizeof *ids);
    int64_t clen = 0, *lens = calloc((size_t)n, sizeof *lens), *ctx_lens = calloc((size_t)n, sizeof *ctx_lens);
    const int32_t **ctxs = calloc((size_t)n, sizeof *ctxs);
    double *logp = calloc((size_t)n, sizeof *logp);
    int rc = ids && lens && ctx_lens && ctxs && logp ? 0 : (fprintf(stderr, "liandan score: out of memory\n"), 1);
    if (!rc) rc = ld_cli_encode(ctx, tok, context, &cids, &clen);
    if (!rc && clen == 0) cids[0] = ld_cli_start_token(tok, m), clen = 1; /* room for 16 ids */
    int64_t max_pos = ld_lm_config_of(m)->max_position, longest = 0, total = 0;
    for (int i = 0; i < n && !rc; i++) {
        rc = ld_cli_encode(ctx, tok, conts[i], &ids[i], &lens[i]);
        if (!rc && lens[i] == 0) rc = (fprintf(stderr, "liandan score: line %d: continuation %d is empty\n", line, i + 1), 1);
        if (!rc && clen + lens[i] > max_pos)
            rc = (fprintf(stderr, "liandan score: line %d: context + continuation %d is %lld tokens, the model's context "
                                  "is %lld\n", line, i + 1, (long long)(clen + lens[i]), (long long)max_pos), 1);
        ctxs[i] = cids, ctx_lens[i] = clen;
        if (!rc && clen + lens[i] > longest) longest = clen + lens[i];
        total += clen + lens[i];
    }
    ld_lm_session *s = NULL;
    int slots = n < SCORE_SLOTS ? n : SCORE_SLOTS;
    int64_t rows = SCORE_LOGITS / ld_lm_config_of(m)->vocab_size;
    rows = rows < 16 ? 16 : rows > 512 ? 512 : rows;
    if (!rc && ld_lm_session_new(m, slots, longest, total < rows ? total : rows, &s))
        rc = ld_cli_fail(ctx, "creating the session");
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
    for (int i = 0; ids && i < n; i++) free(ids[i]);
    free(ids), free(lens), free(ctx_lens), free(ctxs), free(logp);
    return rc;
}

/* Each line context<TAB>continuation<TAB>...: every field of every line is scored. */
static int score_file(ld_ctx *ctx, ld_lm *m, const ld_tokenizer *tok, const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) return fprintf(stderr, "liandan score: cannot open %s\n", file), 1;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, rc = 0;
    ld_cli_list fields = {0};
    ssize_t got;
    while (!rc && (got = getline(&line, &cap, f)) > 0) {
        lineno++;
        if (strlen(line) != (size_t)got) { /* the fields after it would be lost */
            rc = (fprintf(stderr, "liandan score: %s:%d: a NUL byte (the file must be text)\n", file, lineno), 1);
            break;
        }
        line[strcspn(line, "\r\n")] = 0;
        fields.n = 0;
        for (char *p = line, *tab;; p = tab + 1) {
            if (!ld_cli_list_push(&fields, p)) {
                rc = (fprintf(stderr, "liandan score: out of memory\n"), 1);
                break;
            }
            if (!(tab = strchr(p, '\t'))) break;
            *tab = 0;
        }
        if (rc) break;
        if (fields.n < 2) {
            rc = (fprintf(stderr, "liandan score: %s:%d: need context<TAB>continuation...\n", file, lineno), 1);
            break;
        }
        printf("# %s:%d\n", file, lineno);
        rc = score_one(ctx, m, tok, fields.v[0], fields.v + 1, fields.n - 1, lineno);
    }
    if (!rc && ferror(f)) rc = (fprintf(stderr, "liandan score: cannot read %s\n", file), 1);
    ld_cli_list_free(&fields);
    free(line);
    fclose(f);
    return rc;
}

static int cmd_score(int argc, char **argv) {
    const char *context = NULL, *file = NULL;
    int threads = 0;
    ld_cli_list pos = {0}, conts = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("context", 'c', &context, "TEXT", "the context"),
        LD_CLI_LIST("continuation", 0, &conts, "TEXT", "a continuation to score (repeatable, any number)"),
        LD_CLI_STRING("file", 'f', &file, "FILE.tsv", "lines of context<TAB>continuation1<TAB>continuation2..."),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "score", .args = "MODEL", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Prints, for each continuation, its total log-probability given the context, its token count and\n"
                 "the per-token average, and marks the most likely one with '*'. Give --context with\n"
                 "--continuation options, or --file. MODEL is a model directory or a GGUF file."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    if (file ? context || conts.n : !context || !conts.n) {
        fprintf(stderr, "liandan score: give --context with at least one --continuation, or --file\n");
        return ld_cli_parse_free(&spec), 2;
    }
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_lm *m;
    ld_tokenizer *tok;
    if (!(rc = ld_cli_load_model(ctx, pos.v[0], &m, &tok))) {
        rc = file ? score_file(ctx, m, tok, file) : score_one(ctx, m, tok, context, conts.v, conts.n, 0);
        ld_tokenizer_free(tok);
        ld_lm_free(m);
    }
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_score = {"score", "log-likelihood of continuations (zero-shot scoring)", cmd_score};

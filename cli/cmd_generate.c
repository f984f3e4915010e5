/* cli/cmd_generate.c — `liandan generate` (one-shot, batched prompts, streaming) and
 * `liandan chat` (interactive: every line you type continues the same context). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

#define MAX_PROMPTS 64
#define MAX_STOPS 8

typedef struct gen_state {
    ld_cli_text text[MAX_PROMPTS];
    const char *stops[MAX_STOPS];
    int n_stops;
    FILE *ids_out; /* --ids: "seq: id id ..." lines instead of text */
} gen_state;

static bool on_token(void *user, int seq, int32_t tok) {
    gen_state *g = user;
    if (g->ids_out) fprintf(g->ids_out, " %d", tok);
    return ld_cli_text_add(&g->text[seq], tok, g->stops, g->n_stops);
}

/* "1,2,3" -> ids (malloc'd); 1 on a malformed list (printed). */
static int parse_ids(const char *s, int32_t **ids, int64_t *n) {
    size_t cap = strlen(s) / 2 + 2;
    *ids = malloc(cap * sizeof(int32_t));
    *n = 0;
    for (const char *p = s; *ids && *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            fprintf(stderr, "liandan generate: bad token id list '%s' (expected ids:1,2,3)\n", s);
            return free(*ids), *ids = NULL, 1;
        }
        (*ids)[(*n)++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (!*ids || *n == 0) return fprintf(stderr, "liandan generate: empty token id list\n"), free(*ids), *ids = NULL, 1;
    return 0;
}

static void generate_usage(FILE *f) {
    fprintf(f,
            "usage: liandan generate MODEL_DIR [options] [PROMPT...]\n\n"
            "Continues each PROMPT (or each line of --file, or standard input) with the model.\n"
            "One prompt streams token by token; several are decoded together in one batch.\n\n"
            "options:\n"
            "  --file F                  one prompt per line\n"
            "  --stop S                  stop a sequence when it produces S (repeatable)\n"
            "  --no-stream               print only when done\n"
            "  --ids                     print token ids (\"prompt: ids\" then the new ids, one line per\n"
            "                            prompt) instead of text; a prompt may then be ids: \"ids:1,2,3\"\n"
            "  --quantize T              run the matrices as F16, Q8_0, Q4_0, Q4_K, Q5_K or Q6_K (the LM\n"
            "                            head as Q6_K for the 4/5-bit types, else as T: the usual mix)\n"
            "  --threads N               threads (default: all cores)\n%s",
            ld_cli_sample_help());
}

static int cmd_generate(int argc, char **argv) {
    const char *dir = NULL, *file = NULL, *prompts[MAX_PROMPTS], *quant = NULL;
    int n_prompts = 0;
    long threads = 0;
    bool stream = true, print_ids = false;
    ld_generate_params gp = ld_generate_default_params();
    gen_state *g = calloc(1, sizeof *g);
    if (!g) return 1;
    for (int i = 1; i < argc; i++) {
        int r = ld_cli_sample_option(argc, argv, &i, &gp);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return generate_usage(stdout), 0;
        if (!strcmp(argv[i], "--file") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "--stop") && i + 1 < argc && g->n_stops < MAX_STOPS) g->stops[g->n_stops++] = argv[++i];
        else if (!strcmp(argv[i], "--no-stream")) stream = false;
        else if (!strcmp(argv[i], "--ids")) print_ids = true;
        else if (!strcmp(argv[i], "--quantize") && i + 1 < argc) quant = argv[++i];
        else if (!strcmp(argv[i], "--threads")) {
            if (!ld_cli_parse_int("--threads", i + 1 < argc ? argv[++i] : NULL, 1, 4096, &threads)) return 2;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "liandan generate: unknown option '%s' (see --help)\n", argv[i]);
            return 2;
        } else if (!dir) dir = argv[i];
        else if (n_prompts < MAX_PROMPTS) prompts[n_prompts++] = argv[i];
        else return fprintf(stderr, "liandan generate: at most %d prompts\n", MAX_PROMPTS), 2;
    }
    if (!dir) return generate_usage(stderr), 2;
    /* prompts from a file or stdin, one per line */
    char *lines = NULL;
    if (!n_prompts) {
        FILE *f = file ? fopen(file, "r") : stdin;
        if (!f) return fprintf(stderr, "liandan generate: cannot open %s\n", file), 1;
        size_t cap = 0;
        ssize_t n = getdelim(&lines, &cap, 0, f);
        if (f != stdin) fclose(f);
        for (char *p = n > 0 ? strtok(lines, "\n") : NULL; p && n_prompts < MAX_PROMPTS; p = strtok(NULL, "\n"))
            if (*p) prompts[n_prompts++] = p;
        if (!n_prompts) return fprintf(stderr, "liandan generate: no prompts given\n"), 2;
    }
    ld_ctx *ctx = ld_cli_ctx((int)threads);
    ld_lm *m;
    ld_tokenizer *tok;
    int rc = ld_cli_load_model(ctx, dir, &m, &tok);
    if (rc) return rc;
    gp.eos_id = ld_tokenizer_eos_id(tok);
    int32_t *ids[MAX_PROMPTS] = {0};
    int64_t lens[MAX_PROMPTS];
    int64_t max_prompt = 0;
    for (int i = 0; i < n_prompts && !rc; i++) {
        if (print_ids && !strncmp(prompts[i], "ids:", 4)) rc = parse_ids(prompts[i] + 4, &ids[i], &lens[i]);
        else rc = ld_cli_encode(ctx, tok, prompts[i], &ids[i], &lens[i]);
        if (!rc && lens[i] == 0) { /* an empty prompt starts from BOS */
            ids[i][0] = ld_cli_start_token(tok, m), lens[i] = 1;
        }
        if (lens[i] > max_prompt) max_prompt = lens[i];
    }
    /* room for the longest prompt and its continuation */
    int64_t ctx_len = ld_cli_context(m, max_prompt + gp.max_tokens);
    ld_lm_session *s = NULL;
    if (!rc && ld_lm_session_new(m, n_prompts, ctx_len, ctx_len > 512 ? 512 : ctx_len, &s))
        rc = ld_cli_fail(ctx, "creating the session");
    if (!rc && quant) {
        ld_dtype qt = ld_dtype_from_name(quant);
        if (qt == LD_DTYPE_COUNT) {
            fprintf(stderr, "liandan generate: --quantize: unknown type '%s'\n", quant);
            rc = 2;
        } else if (ld_lm_session_quantize_ex(s, qt, ld_lm_mix_edge_type(qt))) rc = ld_cli_fail(ctx, "quantizing");
    }
    bool streaming = stream && n_prompts == 1 && !print_ids;
    for (int i = 0; i < n_prompts; i++) ld_cli_text_init(&g->text[i], tok, streaming ? stdout : NULL);
    if (!rc && streaming) printf("%s", prompts[0]), fflush(stdout);
    double t0 = ld_time_now();
    int64_t ngen[MAX_PROMPTS] = {0};
    /* --ids decodes one prompt at a time so each line holds one sequence's ids */
    for (int i = 0; print_ids && !rc && i < n_prompts; i++) {
        printf("prompt:");
        for (int64_t j = 0; j < lens[i]; j++) printf(" %d", ids[i][j]);
        printf("\ngenerated:");
        g->ids_out = stdout;
        if (ld_lm_generate(s, 1, (const int32_t *const *)&ids[i], &lens[i], &gp, on_token, g, &ngen[i]))
            rc = ld_cli_fail(ctx, "generating");
        printf("\n");
    }
    if (!rc && !print_ids && ld_lm_generate(s, n_prompts, (const int32_t *const *)ids, lens, &gp, on_token, g, ngen))
        rc = ld_cli_fail(ctx, "generating");
    double dt = ld_time_now() - t0;
    if (!rc) {
        int64_t total = 0;
        for (int i = 0; i < n_prompts; i++) {
            ld_cli_text_flush(&g->text[i]);
            if (!streaming && !print_ids) printf("%s%s\n", prompts[i], g->text[i].buf);
            total += ngen[i];
        }
        if (streaming) printf("\n");
        fprintf(stderr, "liandan: %lld tokens in %.2f s (%.1f tokens/s)\n", (long long)total, dt, (double)total / dt);
    }
    for (int i = 0; i < n_prompts; i++) free(ids[i]);
    free(lines);
    free(g);
    ld_lm_session_free(s);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

static int cmd_chat(int argc, char **argv) {
    const char *dir = NULL;
    long threads = 0;
    ld_generate_params gp = ld_generate_default_params();
    gp.max_tokens = 256;
    for (int i = 1; i < argc; i++) {
        int r = ld_cli_sample_option(argc, argv, &i, &gp);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: liandan chat MODEL_DIR [options]\n\n"
                   "Interactive: each line you type is appended to the conversation and the model\n"
                   "continues it until it ends the turn (EOS or a newline). /reset starts over,\n"
                   "/quit (or end of input) leaves.\n\n%s", ld_cli_sample_help());
            return 0;
        } else if (!strcmp(argv[i], "--threads")) {
            if (!ld_cli_parse_int("--threads", i + 1 < argc ? argv[++i] : NULL, 1, 4096, &threads)) return 2;
        } else if (argv[i][0] != '-' && !dir) dir = argv[i];
        else return fprintf(stderr, "liandan chat: unexpected argument '%s'\n", argv[i]), 2;
    }
    if (!dir) return fprintf(stderr, "usage: liandan chat MODEL_DIR (see --help)\n"), 2;
    ld_ctx *ctx = ld_cli_ctx((int)threads);
    ld_lm *m;
    ld_tokenizer *tok;
    int rc = ld_cli_load_model(ctx, dir, &m, &tok);
    if (rc) return rc;
    gp.eos_id = ld_tokenizer_eos_id(tok);
    int64_t ctx_len = ld_cli_context(m, 4096);
    ld_lm_session *s = NULL;
    if (ld_lm_session_new(m, 1, ctx_len, ctx_len > 512 ? 512 : ctx_len, &s)) return ld_cli_fail(ctx, "creating the session");
    /* the conversation so far, re-encoded each turn (the model's context is the whole text) */
    char *history = calloc(1, 1 << 20);
    size_t hlen = 0;
    char *line = NULL;
    size_t cap = 0;
    gen_state *g = calloc(1, sizeof *g);
    g->stops[0] = "\n", g->n_stops = 1;
    fprintf(stderr, "liandan chat: %s (context %lld tokens). /reset, /quit.\n", dir, (long long)ctx_len);
    for (;;) {
        fprintf(stderr, "> ");
        if (getline(&line, &cap, stdin) <= 0) break;
        line[strcspn(line, "\r\n")] = 0;
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            hlen = 0, history[0] = 0;
            continue;
        }
        size_t ll = strlen(line);
        if (hlen + ll + 2 >= (1 << 20)) hlen = 0; /* too long: start over */
        memcpy(history + hlen, line, ll + 1);
        hlen += ll;
        int32_t *ids;
        int64_t n;
        if (ld_cli_encode(ctx, tok, history, &ids, &n)) break;
        int64_t keep = ctx_len - gp.max_tokens - 1; /* the newest tokens that fit */
        const int32_t *start = n > keep ? ids + (n - keep) : ids;
        int64_t len = n > keep ? keep : n;
        ld_cli_text_init(&g->text[0], tok, stdout);
        printf("%s", line);
        fflush(stdout);
        if (len <= 0 || ld_lm_generate(s, 1, &start, &len, &gp, on_token, g, NULL)) {
            free(ids);
            rc = ld_cli_fail(ctx, "generating");
            break;
        }
        ld_cli_text_flush(&g->text[0]);
        printf("\n");
        size_t gl = g->text[0].len;
        if (hlen + gl + 2 < (1 << 20)) memcpy(history + hlen, g->text[0].buf, gl), hlen += gl;
        history[hlen++] = '\n', history[hlen] = 0;
        free(ids);
    }
    free(line), free(history), free(g);
    ld_lm_session_free(s);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    return rc;
}

const ld_cli_command ld_cmd_generate = {"generate", "continue prompts with a causal LM (streaming, batched)", cmd_generate};
const ld_cli_command ld_cmd_chat = {"chat", "talk to a causal LM interactively", cmd_chat};

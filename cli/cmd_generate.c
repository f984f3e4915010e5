/* cli/cmd_generate.c — `liandan generate` (one-shot, batched prompts, streaming) and
 * `liandan chat` (interactive: every line you type continues the same context). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_grammar.h"
#include "cli_model.h"

typedef struct gen_state {
    ld_cli_text *text; /* one per sequence of the batch */
    const char *const *stops;
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

/* The non-empty lines of a file ("-": standard input) as prompts, appended to `prompts`;
 * *text owns them. 1 on failure (printed). */
static int read_prompts(const char *file, ld_cli_list *prompts, char **text) {
    bool in = !strcmp(file, "-");
    FILE *f = in ? stdin : fopen(file, "r");
    if (!f) return fprintf(stderr, "liandan generate: cannot open %s\n", file), 1;
    size_t n = 0;
    int rc = ld_cli_read_all(f, "generate", file, text, &n);
    if (!in) fclose(f);
    if (rc) return rc;
    const char *nul = memchr(*text, 0, n); /* the prompts are C strings: a NUL would cut the rest off */
    if (nul) return fprintf(stderr, "liandan generate: %s: byte %zu is NUL (prompts are text)\n", file, (size_t)(nul - *text)), 1;
    for (char *p = n > 0 ? strtok(*text, "\n") : NULL; p; p = strtok(NULL, "\n")) {
        p[strcspn(p, "\r")] = 0;
        if (*p && !ld_cli_list_push(prompts, p)) return fprintf(stderr, "liandan generate: out of memory\n"), 1;
    }
    return 0;
}

static int cmd_generate(int argc, char **argv) {
    const char *file = NULL, *adapter = NULL;
    ld_dtype quant = LD_DTYPE_COUNT;
    int threads = 0, batch = 64;
    bool no_stream = false, print_ids = false;
    ld_cli_list pos = {0}, stops = {0};
    ld_generate_params gp = ld_generate_default_params();
    ld_cli_opt sample[LD_CLI_SAMPLE_OPTS];
    ld_cli_sample_opts(&gp, sample);
    ld_cli_grammar_opts go = {.lines = 4};
    const char *rerank = NULL, *sep = "\n";
    int candidates = 4;
    const ld_cli_opt constrain[] = {
        LD_CLI_STRING("grammar", 0, &go.grammar, "FILE", "the output follows this GBNF grammar (llama.cpp's format)"),
        LD_CLI_STRING("json-schema", 0, &go.json_schema, "FILE", "the output is JSON that satisfies this JSON Schema"),
        LD_CLI_INT("verse", 0, &go.verse, 0, 7, "N",
                   "regular verse: the prompt opens a poem of lines of N (5 or 7)\ncharacters, ending in \"，\" and \"。\" in turn"),
        LD_CLI_INT("lines", 0, &go.lines, 2, 64, "N", "--verse: lines of the poem"),
        LD_CLI_STRING("tones", 0, &go.tones, "FILE", "--verse: a tone table (lines \"字<TAB>平\" or \"字<TAB>仄\")"),
        LD_CLI_STRING("pattern", 0, &go.pattern, "P",
                      "--verse --tones: p (平), z (仄) or * per character, lines\nseparated by ','"),
        LD_CLI_STRING("rerank", 0, &rerank, "inverse",
                      "sample --candidates continuations and keep the one under which\nthe prompt is most likely (inverse prompting)"),
        LD_CLI_INT("candidates", 0, &candidates, 2, 256, "N", "--rerank: candidates per prompt"),
        LD_CLI_STRING("inverse-sep", 0, &sep, "S", "--rerank: text between a candidate and the prompt"),
        LD_CLI_END,
    };
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("file", 'f', &file, "FILE", "one prompt per line (\"-\": standard input; empty lines skipped)"),
        LD_CLI_LIST("stop", 0, &stops, "S", "stop a sequence when it produces S (repeatable)"),
        LD_CLI_FLAG("no-stream", 0, &no_stream, "print only when done"),
        LD_CLI_FLAG("ids", 0, &print_ids,
                    "print token ids (\"prompt: ids\" then the new ids, one line per prompt)\n"
                    "instead of text; a prompt may then be ids: \"ids:1,2,3\""),
        {.name = "quantize", .type = LD_CLI_T_FUNC, .fn = ld_cli_type_opt, .dest.user = &quant, .arg = "T", .def = "",
         .help = "run the matrices as T (F16, Q8_0, Q4_K, ...; the LM head as Q6_K for\n"
                 "the 4/5-bit types, else as T: the usual mix)"},
        LD_CLI_INT("batch", 0, &batch, 1, 4096, "N", "prompts decoded together; more are done in turns"),
        LD_CLI_STRING("adapter", 0, &adapter, "DIR", "a LoRA adapter (PEFT directory) merged into the weights first"),
        LD_CLI_THREADS(&threads),
        LD_CLI_GROUP("sampling", sample),
        LD_CLI_GROUP("constrained and reranked generation", constrain),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "generate", .args = "MODEL [PROMPT...]", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = -1,
        .about = "Continues each PROMPT (or each line of --file, or of standard input) with the model (a model\n"
                 "directory or a GGUF file). One prompt streams token by token; several are decoded together\n"
                 "in batches of --batch and printed one line each, in order."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *dir = pos.v[0];
    ld_cli_list prompts = {0};
    char *lines = NULL;
    for (int i = 1; i < pos.n && !rc; i++)
        if (!ld_cli_list_push(&prompts, pos.v[i])) rc = (fprintf(stderr, "liandan generate: out of memory\n"), 1);
    if (!rc && pos.n > 1 && file) rc = (fprintf(stderr, "liandan generate: give prompts or --file, not both\n"), 2);
    if (!rc && pos.n == 1) rc = read_prompts(file ? file : "-", &prompts, &lines);
    if (!rc && !prompts.n) rc = (fprintf(stderr, "liandan generate: no prompts given\n"), 2);
    if (!rc && rerank && strcmp(rerank, "inverse"))
        rc = (fprintf(stderr, "liandan generate: --rerank: only 'inverse' is known, not '%s'\n", rerank), 2);
    if (!rc && rerank && print_ids) rc = (fprintf(stderr, "liandan generate: --rerank and --ids do not go together\n"), 2);
    if (!rc && go.verse && go.verse != 5 && go.verse != 7)
        rc = (fprintf(stderr, "liandan generate: --verse: lines of 5 or 7 characters, not %d\n", go.verse), 2);
    if (rc) goto done;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_lm *m;
    ld_tokenizer *tok;
    if ((rc = ld_cli_load_model_ex(ctx, dir, adapter != NULL, &m, &tok))) { /* merging needs F32 weights */
        ld_ctx_free(ctx);
        goto done;
    }
    if (adapter && (rc = ld_cli_merge_adapter(ctx, m, adapter))) {
        ld_tokenizer_free(tok), ld_lm_free(m), ld_ctx_free(ctx);
        goto done;
    }
    gp.eos_id = ld_tokenizer_eos_id(tok);
    ld_cli_grammar *gr = NULL;
    if ((rc = ld_cli_grammar_new(ctx, &go, tok, &gr))) {
        ld_tokenizer_free(tok);
        ld_lm_free(m);
        ld_ctx_free(ctx);
        goto done;
    }
    if (rerank) batch = candidates; /* one prompt's candidates at a time */
    int n = prompts.n;
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    int64_t *lens = calloc((size_t)n, sizeof *lens), *ngen = calloc((size_t)n, sizeof *ngen);
    int nb = rerank ? candidates : batch < n ? batch : n;
    gen_state g = {.text = calloc((size_t)nb, sizeof *g.text), .stops = stops.v, .n_stops = stops.n};
    if (!ids || !lens || !ngen || !g.text) rc = (fprintf(stderr, "liandan generate: out of memory\n"), 1);
    int64_t max_prompt = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (print_ids && !strncmp(prompts.v[i], "ids:", 4)) rc = parse_ids(prompts.v[i] + 4, &ids[i], &lens[i]);
        else rc = ld_cli_encode(ctx, tok, prompts.v[i], &ids[i], &lens[i]);
        if (!rc && lens[i] == 0) { /* an empty prompt starts from BOS */
            ids[i][0] = ld_cli_start_token(tok, m), lens[i] = 1;
        }
        if (lens[i] > max_prompt) max_prompt = lens[i];
    }
    /* room for the longest prompt and its continuation */
    /* --rerank: also a candidate (re-encoded), the separator and the prompt again */
    int64_t ctx_len = ld_cli_context(m, max_prompt + gp.max_tokens + (rerank ? max_prompt + gp.max_tokens + 16 : 0));
    ld_lm_session *s = NULL;
    int64_t step = ctx_len > 512 ? 512 : ctx_len; /* tokens per eval: prefill pieces, one decode step */
    if (!rc && ld_lm_session_new(m, print_ids ? 1 : nb, ctx_len, step > nb ? step : nb, &s))
        rc = ld_cli_fail(ctx, "creating the session");
    if (!rc && quant != LD_DTYPE_COUNT && ld_lm_session_quantize_ex(s, quant, ld_lm_mix_edge_type(quant)))
        rc = ld_cli_fail(ctx, "quantizing");
    bool streaming = !no_stream && n == 1 && !print_ids && !rerank;
    if (!rc && streaming) printf("%s", prompts.v[0]), fflush(stdout);
    double t0 = ld_time_now();
    /* --ids decodes one prompt at a time so each line holds one sequence's ids */
    for (int i = 0; print_ids && !rc && i < n; i++) {
        printf("prompt:");
        for (int64_t j = 0; j < lens[i]; j++) printf(" %d", ids[i][j]);
        printf("\ngenerated:");
        g.ids_out = stdout;
        ld_cli_text_init(&g.text[0], tok, NULL);
        if (gr && !(gp.constraints = ld_cli_grammar_begin(gr, 1, &prompts.v[i]))) rc = 1;
        else if (ld_lm_generate(s, 1, (const int32_t *const *)&ids[i], &lens[i], &gp, on_token, &g, &ngen[i]))
            rc = ld_cli_fail(ctx, "generating");
        printf("\n");
    }
    /* --rerank inverse: per prompt, `candidates` continuations; the best under inverse prompting */
    for (int i = 0; rerank && !rc && i < n; i++) {
        const int32_t **rep = calloc((size_t)nb, sizeof *rep);
        const char **texts = calloc((size_t)nb, sizeof *texts), **same = calloc((size_t)nb, sizeof *same);
        int64_t *rl = calloc((size_t)nb, sizeof *rl);
        double *score = calloc((size_t)nb, sizeof *score);
        int64_t *gk = calloc((size_t)nb, sizeof *gk);
        int best = 0;
        if (!rep || !texts || !same || !rl || !score || !gk) rc = (fprintf(stderr, "liandan generate: out of memory\n"), 1);
        for (int k = 0; !rc && k < nb; k++) rep[k] = ids[i], rl[k] = lens[i], same[k] = prompts.v[i];
        for (int k = 0; !rc && k < nb; k++) ld_cli_text_init(&g.text[k], tok, NULL);
        if (!rc && gr && !(gp.constraints = ld_cli_grammar_begin(gr, nb, same))) rc = 1;
        if (!rc && ld_lm_generate(s, nb, rep, rl, &gp, on_token, &g, gk)) rc = ld_cli_fail(ctx, "generating");
        for (int k = 0; !rc && k < nb; k++) ngen[i] += gk[k]; /* every candidate's tokens count */
        for (int k = 0; !rc && k < nb; k++) ld_cli_text_flush(&g.text[k]), texts[k] = ld_cli_text_str(&g.text[k]);
        if (!rc) rc = ld_cli_rerank_inverse(ctx, s, tok, prompts.v[i], texts, nb, sep, score, &best);
        for (int k = 0; !rc && k < nb; k++)
            fprintf(stderr, "liandan: candidate %d: %.4f per prompt token%s: %s\n", k, score[k], k == best ? " (best)" : "", texts[k]);
        if (!rc) printf("%s%s\n", prompts.v[i], texts[best]);
        free(rep), free(texts), free(same), free(rl), free(score), free(gk);
    }
    /* text: batches of nb prompts, each printed when done (or streamed when there is one) */
    for (int b0 = 0; !print_ids && !rerank && !rc && b0 < n; b0 += nb) {
        int bn = n - b0 < nb ? n - b0 : nb;
        for (int i = 0; i < bn; i++) ld_cli_text_init(&g.text[i], tok, streaming ? stdout : NULL);
        if (gr && !(gp.constraints = ld_cli_grammar_begin(gr, bn, prompts.v + b0))) {
            rc = 1;
            break;
        }
        if (ld_lm_generate(s, bn, (const int32_t *const *)ids + b0, lens + b0, &gp, on_token, &g, ngen + b0)) {
            rc = ld_cli_fail(ctx, "generating");
            break;
        }
        for (int i = 0; i < bn; i++) {
            ld_cli_text_flush(&g.text[i]);
            if (g.text[i].oom) rc = (fprintf(stderr, "liandan generate: out of memory\n"), 1);
            if (!streaming) printf("%s%s\n", prompts.v[b0 + i], ld_cli_text_str(&g.text[i]));
        }
        fflush(stdout);
    }
    double dt = ld_time_now() - t0;
    if (!rc) {
        int64_t total = 0;
        for (int i = 0; i < n; i++) total += ngen[i];
        if (streaming) printf("\n");
        fprintf(stderr, "liandan: %lld tokens in %.2f s (%.1f tokens/s)\n", (long long)total, dt, (double)total / dt);
    }
    for (int i = 0; ids && i < n; i++) free(ids[i]);
    for (int i = 0; g.text && i < nb; i++) ld_cli_text_free(&g.text[i]);
    free(ids), free(lens), free(ngen), free(g.text);
    ld_lm_session_free(s);
    ld_cli_grammar_free(gr);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
done:
    free(lines);
    ld_cli_list_free(&prompts);
    ld_cli_parse_free(&spec);
    return rc;
}

/* ---- chat ---- */

/* The conversation so far as text, re-encoded each turn (the model's context is its newest
 * tokens). It grows as needed and keeps at most `max` bytes (the oldest are dropped, at a
 * character boundary): far more than the context can hold. */
typedef struct history {
    char *s;
    size_t len, cap, max;
} history;

static bool history_add(history *h, const char *text, size_t n) {
    if (n >= h->max) text += n - h->max + 1, n = h->max - 1; /* only the tail can matter */
    if (h->len + n + 1 > h->max) { /* drop the oldest bytes */
        size_t drop = h->len + n + 1 - h->max;
        while (drop < h->len && ((unsigned char)h->s[drop] & 0xc0) == 0x80) drop++;
        memmove(h->s, h->s + drop, h->len - drop);
        h->len -= drop;
    }
    while (((unsigned char)*text & 0xc0) == 0x80 && n) text++, n--; /* a cut character */
    if (h->len + n + 1 > h->cap) {
        size_t cap = h->cap ? h->cap : 4096;
        while (cap < h->len + n + 1) cap *= 2;
        char *ns = realloc(h->s, cap);
        if (!ns) return false;
        h->s = ns, h->cap = cap;
    }
    memcpy(h->s + h->len, text, n);
    h->len += n;
    h->s[h->len] = 0;
    return true;
}

static int cmd_chat(int argc, char **argv) {
    int threads = 0;
    ld_cli_list pos = {0};
    ld_generate_params gp = ld_generate_default_params();
    gp.max_tokens = 256;
    ld_cli_opt sample[LD_CLI_SAMPLE_OPTS];
    ld_cli_sample_opts(&gp, sample);
    const ld_cli_opt opts[] = {LD_CLI_THREADS(&threads), LD_CLI_GROUP("sampling", sample), LD_CLI_END};
    const ld_cli_spec spec = {
        .cmd = "chat", .args = "MODEL", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Interactive: each line you type is appended to the conversation and the model continues it\n"
                 "until it ends the turn (EOS or a newline). An empty line lets the model go on. /reset starts\n"
                 "over, /quit (or the end of the input) leaves."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *dir = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_lm *m;
    ld_tokenizer *tok;
    if ((rc = ld_cli_load_model(ctx, dir, &m, &tok))) return ld_cli_parse_free(&spec), ld_ctx_free(ctx), rc;
    gp.eos_id = ld_tokenizer_eos_id(tok);
    int64_t ctx_len = ld_cli_context(m, 4096);
    int64_t keep = ctx_len - gp.max_tokens - 1; /* the newest tokens of the conversation that fit */
    ld_lm_session *s = NULL;
    if (keep < 1)
        rc = (fprintf(stderr, "liandan chat: --max-tokens %lld leaves no room for the conversation in the model's "
                              "context of %lld tokens\n", (long long)gp.max_tokens, (long long)ctx_len), 2);
    else if (ld_lm_session_new(m, 1, ctx_len, ctx_len > 512 ? 512 : ctx_len, &s))
        rc = ld_cli_fail(ctx, "creating the session");
    /* 64 bytes a token is more than any tokenizer's longest piece needs */
    history h = {.max = (size_t)ctx_len * 64 + 4096};
    char *line = NULL;
    size_t cap = 0;
    ld_cli_text text = {0};
    const char *stop = "\n";
    gen_state g = {.text = &text, .stops = &stop, .n_stops = 1};
    if (!rc) fprintf(stderr, "liandan chat: %s (context %lld tokens). /reset, /quit.\n", dir, (long long)ctx_len);
    while (!rc) {
        fprintf(stderr, "> ");
        ssize_t got = getline(&line, &cap, stdin);
        if (got <= 0) break;
        line[strcspn(line, "\r\n")] = 0;
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            h.len = 0;
            if (h.s) h.s[0] = 0;
            continue;
        }
        if (!history_add(&h, line, strlen(line))) {
            rc = (fprintf(stderr, "liandan chat: out of memory\n"), 1);
            break;
        }
        int32_t *ids;
        int64_t n;
        if ((rc = ld_cli_encode(ctx, tok, h.s ? h.s : "", &ids, &n))) break;
        if (n == 0) ids[0] = ld_cli_start_token(tok, m), n = 1; /* nothing said yet: start from BOS */
        const int32_t *start = n > keep ? ids + (n - keep) : ids;
        int64_t len = n > keep ? keep : n;
        ld_cli_text_init(&text, tok, stdout);
        printf("%s", line);
        fflush(stdout);
        if (ld_lm_generate(s, 1, &start, &len, &gp, on_token, &g, NULL)) rc = ld_cli_fail(ctx, "generating");
        free(ids);
        if (rc) break;
        ld_cli_text_flush(&text);
        printf("\n");
        if (text.oom || !history_add(&h, ld_cli_text_str(&text), text.len) || !history_add(&h, "\n", 1))
            rc = (fprintf(stderr, "liandan chat: out of memory\n"), 1);
    }
    free(line), free(h.s);
    ld_cli_text_free(&text);
    ld_lm_session_free(s);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_generate = {"generate", "continue prompts with a causal LM (streaming, batched)", cmd_generate};
const ld_cli_command ld_cmd_chat = {"chat", "talk to a causal LM interactively", cmd_chat};

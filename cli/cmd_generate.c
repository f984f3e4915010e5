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

/* A prompt as the one user message of a conversation in template t (after an optional
 * system message), rendered with the assistant's opening and encoded with the template's
 * special tokens. 1 on failure (printed). */
static int encode_chat(ld_ctx *ctx, const ld_tokenizer *tok, const ld_chat_template *t, const char *system,
                       const char *prompt, int32_t **ids, int64_t *n) {
    const char *bos = "", *eos = "";
    size_t bl = 0, el = 0;
    char bos_buf[256], eos_buf[256];
    if (ld_tokenizer_bos_id(tok) >= 0) ld_tokenizer_token_bytes(tok, ld_tokenizer_bos_id(tok), &bos, &bl);
    if (ld_tokenizer_eos_id(tok) >= 0) ld_tokenizer_token_bytes(tok, ld_tokenizer_eos_id(tok), &eos, &el);
    snprintf(bos_buf, sizeof bos_buf, "%.*s", (int)bl, bos);
    snprintf(eos_buf, sizeof eos_buf, "%.*s", (int)el, eos);
    ld_chat_message msgs[2] = {{"system", system}, {"user", prompt}};
    char *text = NULL;
    size_t len = 0, need = 0;
    if (ld_chat_render(ctx, t, system ? msgs : msgs + 1, system ? 2 : 1, true, bos_buf, eos_buf, &text, &len))
        return ld_cli_fail(ctx, "formatting the prompt");
    *ids = malloc((len + 16) * sizeof(int32_t));
    ld_status st = *ids ? ld_tokenizer_encode(tok, text, len, 0, *ids, len + 16, &need) : LD_ERR_NOMEM;
    ld_free(ctx, text);
    if (st) {
        free(*ids), *ids = NULL;
        return ld_cli_fail(ctx, "encoding the prompt");
    }
    *n = (int64_t)need;
    return 0;
}

static int cmd_generate(int argc, char **argv) {
    const char *file = NULL, *adapter = NULL;
    ld_dtype quant = LD_DTYPE_COUNT, kv_k = LD_F32, kv_v = LD_F32;
    int threads = 0, batch = 64;
    bool no_stream = false, print_ids = false, as_chat = false;
    const char *tmpl_name = NULL, *system = NULL;
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
        LD_CLI_KV_TYPES(&kv_k, &kv_v),
        LD_CLI_STRING("adapter", 0, &adapter, "DIR", "a LoRA adapter (PEFT directory) merged into the weights first"),
        LD_CLI_FLAG("chat", 0, &as_chat,
                    "each prompt is a user message in the model's chat template; prints the reply"),
        LD_CLI_STRING("chat-template", 0, &tmpl_name, "NAME", "with --chat: the template family to use (see chat --help)"),
        LD_CLI_STRING("system", 0, &system, "TEXT", "with --chat: a system message before each prompt"),
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
    for (int i = 0; i < stops.n && !rc; i++)
        if (!*stops.v[i]) rc = (fprintf(stderr, "liandan generate: --stop: an empty string would stop every sequence at once\n"), 2);
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
    ld_cli_model_defaults(m, tok, &gp);
    ld_cli_grammar *gr = NULL;
    if ((rc = ld_cli_grammar_new(ctx, &go, tok, &gr))) {
        ld_tokenizer_free(tok);
        ld_lm_free(m);
        ld_ctx_free(ctx);
        goto done;
    }
    if (rerank) batch = candidates; /* one prompt's candidates at a time */
    const ld_chat_template *tmpl = NULL;
    if ((as_chat || tmpl_name || system) && !(tmpl = ld_cli_chat_template(ctx, m, tmpl_name, "generate"))) rc = 2;
    if (!rc && as_chat && rerank)
        rc = (fprintf(stderr, "liandan generate: --chat and --rerank do not go together (the reranker re-reads the raw prompt)\n"), 2);
    if (!rc && (tmpl_name || system) && !as_chat) rc = (fprintf(stderr, "liandan generate: --chat-template and --system need --chat\n"), 2);
    int32_t eot_stop = -1;
    char *eot_str = NULL;
    if (!rc && as_chat) { /* the end of the assistant's turn stops generation, as a token and as text */
        const char *eos_text = "";
        size_t eos_len = 0;
        char eos_buf[256];
        if (ld_tokenizer_eos_id(tok) >= 0) ld_tokenizer_token_bytes(tok, ld_tokenizer_eos_id(tok), &eos_text, &eos_len);
        snprintf(eos_buf, sizeof eos_buf, "%.*s", (int)eos_len, eos_text);
        const char *eot = ld_chat_template_end_of_turn(tmpl, eos_buf);
        eot_str = eot && *eot ? strdup(eot) : NULL;
        if (eot_str) eot_stop = ld_tokenizer_token_id(tok, eot_str);
    }
    int32_t *stop_ids = NULL;
    if (!rc && eot_stop >= 0) { /* the config's EOS list and the end of turn */
        if (!(stop_ids = malloc((size_t)(gp.n_stop_ids + 1) * sizeof *stop_ids))) rc = 1;
        for (int i = 0; !rc && i < gp.n_stop_ids; i++) stop_ids[i] = gp.stop_ids[i];
        if (!rc) stop_ids[gp.n_stop_ids] = eot_stop, gp.stop_ids = stop_ids, gp.n_stop_ids++;
    }
    if (!rc && eot_str && !ld_cli_list_push(&stops, eot_str)) rc = (fprintf(stderr, "liandan generate: out of memory\n"), 1);
    int n = prompts.n;
    int32_t **ids = calloc((size_t)n, sizeof *ids);
    int64_t *lens = calloc((size_t)n, sizeof *lens), *ngen = calloc((size_t)n, sizeof *ngen);
    int nb = rerank ? candidates : batch < n ? batch : n;
    gen_state g = {.text = calloc((size_t)nb, sizeof *g.text), .stops = stops.v, .n_stops = stops.n};
    if (!ids || !lens || !ngen || !g.text) rc = (fprintf(stderr, "liandan generate: out of memory\n"), 1);
    int64_t max_prompt = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (print_ids && !strncmp(prompts.v[i], "ids:", 4)) rc = parse_ids(prompts.v[i] + 4, &ids[i], &lens[i]);
        else if (as_chat) rc = encode_chat(ctx, tok, tmpl, system, prompts.v[i], &ids[i], &lens[i]);
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
    ld_lm_session_params sp = ld_lm_session_default_params();
    sp.n_slots = print_ids ? 1 : nb, sp.max_len = ctx_len, sp.max_tokens = step > nb ? step : nb;
    sp.kv_type_k = kv_k, sp.kv_type_v = kv_v;
    if (!rc && ld_lm_session_new_ex(m, &sp, &s))
        rc = ld_cli_fail(ctx, "creating the session");
    if (!rc && quant != LD_DTYPE_COUNT && ld_lm_session_quantize_ex(s, quant, ld_lm_mix_edge_type(quant)))
        rc = ld_cli_fail(ctx, "quantizing");
    bool streaming = !no_stream && n == 1 && !print_ids && !rerank;
    if (!rc && streaming && !as_chat) printf("%s", prompts.v[0]), fflush(stdout);
    double t0 = ld_time_now();
    /* --ids decodes one prompt at a time so each line holds one sequence's ids */
    for (int i = 0; print_ids && !rc && i < n; i++) {
        printf("prompt:");
        for (int64_t j = 0; j < lens[i]; j++) printf(" %d", ids[i][j]);
        printf("\ngenerated:");
        g.ids_out = stdout;
        ld_cli_text_init(&g.text[0], tok, NULL);
        if (gr && !(gp.constraints = ld_cli_grammar_begin(gr, 1, &prompts.v[i], &gp))) rc = 1;
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
        if (!rc && gr && !(gp.constraints = ld_cli_grammar_begin(gr, nb, same, &gp))) rc = 1;
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
        if (gr && !(gp.constraints = ld_cli_grammar_begin(gr, bn, prompts.v + b0, &gp))) {
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
            if (!streaming) printf("%s%s\n", as_chat ? "" : prompts.v[b0 + i], ld_cli_text_str(&g.text[i]));
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
    free(ids), free(lens), free(ngen), free(g.text), free(stop_ids), free(eot_str);
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

static int cmd_chat(int argc, char **argv) {
    int threads = 0;
    bool stats = false;
    const char *tmpl_name = NULL, *system = NULL;
    ld_cli_list pos = {0};
    ld_generate_params gp = ld_generate_default_params();
    gp.max_tokens = 256;
    ld_cli_opt sample[LD_CLI_SAMPLE_OPTS];
    ld_cli_sample_opts(&gp, sample);
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("chat-template", 0, &tmpl_name, "NAME",
                      "format the conversation as NAME (chatml, llama2, llama3, mistral, gemma,\n"
                      "phi3, deepseek, deepseek3, plain) instead of the model's own template"),
        LD_CLI_STRING("system", 0, &system, "TEXT", "a system message that starts the conversation"),
        LD_CLI_FLAG("stats", 0, &stats,
                    "after each reply, print to stderr the tokens of the prompt, how many the KV cache\n"
                    "already held, how many were evaluated and how many generated"),
        LD_CLI_THREADS(&threads),
        LD_CLI_GROUP("sampling", sample),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "chat", .args = "MODEL", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Interactive: each line you type is a user message; the model replies in the format of its chat\n"
                 "template (the GGUF's tokenizer.chat_template or the directory's tokenizer_config.json, recognised\n"
                 "by its text; a model without one just continues your text up to a newline). The KV cache is kept\n"
                 "across turns, so a reply costs only the tokens the conversation gained. /reset starts over, /quit\n"
                 "(or the end of the input) leaves."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    const char *dir = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_lm *m;
    ld_tokenizer *tok;
    if ((rc = ld_cli_load_model(ctx, dir, &m, &tok))) return ld_cli_parse_free(&spec), ld_ctx_free(ctx), rc;
    ld_cli_model_defaults(m, tok, &gp);
    const ld_chat_template *t = ld_cli_chat_template(ctx, m, tmpl_name, "chat");
    int64_t ctx_len = ld_cli_context(m, 4096);
    ld_lm_session *s = NULL;
    ld_chat *chat = NULL;
    if (!t) rc = 2;
    else if (gp.max_tokens >= ctx_len - 1)
        rc = (fprintf(stderr, "liandan chat: --max-tokens %lld leaves no room for the conversation in the model's "
                              "context of %lld tokens\n", (long long)gp.max_tokens, (long long)ctx_len), 2);
    else if (ld_lm_session_new(m, 1, ctx_len, ctx_len > 512 ? 512 : ctx_len, &s) || ld_chat_new(s, tok, t, 0, &chat))
        rc = ld_cli_fail(ctx, "creating the session");
    if (!rc && system && ld_chat_add(chat, "system", system)) rc = ld_cli_fail(ctx, "the system message");
    char *line = NULL;
    size_t cap = 0;
    ld_cli_text text = {0};
    /* a turn ends at the template's end-of-turn text too, when it is not a single token */
    const char *eot_text = NULL, *eos_text = "";
    size_t eos_len = 0;
    if (!rc && ld_tokenizer_eos_id(tok) >= 0) ld_tokenizer_token_bytes(tok, ld_tokenizer_eos_id(tok), &eos_text, &eos_len);
    char eos_buf[256] = "";
    snprintf(eos_buf, sizeof eos_buf, "%.*s", (int)eos_len, eos_text);
    if (t) eot_text = ld_chat_template_end_of_turn(t, eos_buf);
    const char *stops[1] = {eot_text};
    gen_state g = {.text = &text, .stops = stops, .n_stops = eot_text && *eot_text ? 1 : 0};
    if (!rc)
        fprintf(stderr, "liandan chat: %s (context %lld tokens, template %s). /reset, /quit.\n", dir, (long long)ctx_len,
                ld_chat_template_name(t));
    for (int turn = 1; !rc; turn++) {
        fprintf(stderr, "> ");
        ssize_t got = getline(&line, &cap, stdin);
        if (got <= 0) break;
        if (memchr(line, 0, (size_t)got)) { /* the C strings below would end there: say so, never cut silently */
            fprintf(stderr, "liandan chat: the line holds a NUL byte: not sent (type it again without)\n");
            continue;
        }
        line[strcspn(line, "\r\n")] = 0;
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            ld_chat_reset(chat);
            if (system && ld_chat_add(chat, "system", system)) rc = ld_cli_fail(ctx, "the system message");
            continue;
        }
        if (ld_chat_add(chat, "user", line)) {
            rc = ld_cli_fail(ctx, "the message");
            break;
        }
        ld_cli_text_init(&text, tok, stdout);
        ld_chat_stats st;
        if (ld_chat_respond(chat, &gp, on_token, &g, &st)) {
            rc = ld_cli_fail(ctx, "replying");
            break;
        }
        ld_cli_text_flush(&text);
        printf("\n");
        fflush(stdout);
        if (st.truncated_bytes)
            fprintf(stderr, "liandan chat: your message was longer than the context: its first %lld bytes were left out\n",
                    (long long)st.truncated_bytes);
        if (text.oom) rc = (fprintf(stderr, "liandan chat: out of memory\n"), 1);
        if (stats)
            fprintf(stderr, "liandan chat: turn %d: %lld prompt tokens, %lld reused from the cache, %lld evaluated, "
                            "%lld generated%s\n", turn, (long long)st.prompt_tokens, (long long)st.reused_tokens,
                    (long long)st.evaluated_tokens, (long long)st.generated_tokens,
                    st.dropped_messages ? " (oldest messages left out)" : "");
    }
    free(line);
    ld_cli_text_free(&text);
    ld_chat_free(chat);
    ld_lm_session_free(s);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_generate = {"generate", "continue prompts with a causal LM (streaming, batched)", cmd_generate};
const ld_cli_command ld_cmd_chat = {"chat", "talk to a causal LM interactively", cmd_chat};

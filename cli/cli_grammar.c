/* cli/cli_grammar.c — constrained and reranked generation for `liandan generate`: a grammar from
 * --grammar (GBNF), --json-schema or --verse, as one constraint per sequence; and the inverse
 * prompting rerank of --rerank inverse. */
#include <stdlib.h>
#include <string.h>

#include "cli_grammar.h"

struct ld_cli_grammar {
    ld_ctx *ctx;
    ld_grammar *g;
    ld_grammar_vocab *v;
    bool verse;              /* the prompt opens the poem: the grammar must accept it first */
    ld_grammar_state **states;
    ld_lm_constraint *cons;
    int n;
};

static char *read_text(ld_ctx *ctx, const char *path, size_t *len) {
    char *text = NULL;
    if (ld_file_read(ctx, path, 16 << 20, &text, len)) return NULL;
    return text;
}

int ld_cli_grammar_new(ld_ctx *ctx, const ld_cli_grammar_opts *o, const ld_tokenizer *tok, ld_cli_grammar **out) {
    *out = NULL;
    int given = (o->grammar != NULL) + (o->json_schema != NULL) + (o->verse != 0);
    if (!given) return 0;
    if (given > 1) return fprintf(stderr, "liandan generate: give one of --grammar, --json-schema and --verse\n"), 2;
    ld_cli_grammar *g = calloc(1, sizeof *g);
    if (!g) return fprintf(stderr, "liandan generate: out of memory\n"), 1;
    g->ctx = ctx, g->verse = o->verse != 0;
    char *text = NULL, *gbnf = NULL, *tones = NULL;
    size_t len = 0, tones_len = 0;
    int rc = 0;
    if (o->grammar) {
        if (!(text = read_text(ctx, o->grammar, &len))) rc = ld_cli_fail(ctx, "reading the grammar");
    } else if (o->json_schema) {
        if (!(text = read_text(ctx, o->json_schema, &len))) rc = ld_cli_fail(ctx, "reading the JSON Schema");
        else if (ld_grammar_from_json_schema(ctx, text, len, &gbnf)) rc = ld_cli_fail(ctx, "the JSON Schema");
    } else {
        if (o->tones && !(tones = read_text(ctx, o->tones, &tones_len))) rc = ld_cli_fail(ctx, "reading the tone table");
        else if (ld_grammar_verse(ctx, o->verse, o->lines, tones, tones_len, o->pattern, &gbnf)) rc = ld_cli_fail(ctx, "--verse");
    }
    const char *src = gbnf ? gbnf : text;
    if (!rc && ld_grammar_parse(ctx, src, strlen(src), NULL, &g->g)) rc = ld_cli_fail(ctx, "the grammar");
    if (!rc && ld_grammar_vocab_new(ctx, tok, &g->v)) rc = ld_cli_fail(ctx, "the grammar");
    ld_free(ctx, text), ld_free(ctx, tones), free(gbnf);
    if (rc) return ld_cli_grammar_free(g), rc;
    *out = g;
    return 0;
}

void ld_cli_grammar_free(ld_cli_grammar *g) {
    if (!g) return;
    for (int i = 0; i < g->n; i++) ld_grammar_state_free(g->states[i]);
    free(g->states), free(g->cons);
    ld_grammar_vocab_free(g->v);
    ld_grammar_free(g->g);
    free(g);
}

const ld_lm_constraint *ld_cli_grammar_begin(ld_cli_grammar *g, int n, const char *const *prompts,
                                             const ld_generate_params *gp) {
    if (!g) return NULL;
    /* a finished sentence may end with any token that ends generation: EOS, the config's EOS
     * list, a chat template's end of turn (<|im_end|>, <|eot_id|>, <end_of_turn>) */
    int32_t stops[8];
    int n_stops = 0;
    if (gp->eos_id >= 0) stops[n_stops++] = gp->eos_id;
    for (int i = 0; i < gp->n_stop_ids && n_stops < 8; i++)
        if (gp->stop_ids[i] >= 0) stops[n_stops++] = gp->stop_ids[i];
    for (int i = 0; i < g->n; i++) ld_grammar_state_free(g->states[i]);
    g->n = 0;
    free(g->states), free(g->cons);
    g->states = calloc((size_t)n, sizeof *g->states), g->cons = calloc((size_t)n, sizeof *g->cons);
    if (!g->states || !g->cons) return fprintf(stderr, "liandan generate: out of memory\n"), NULL;
    for (int i = 0; i < n; i++, g->n++) {
        if (ld_grammar_state_new(g->ctx, g->g, g->v, stops, n_stops, &g->states[i]))
            return ld_cli_fail(g->ctx, "the grammar"), NULL;
        if (g->verse && ld_grammar_state_accept_text(g->states[i], prompts[i], strlen(prompts[i]))) {
            fprintf(stderr, "liandan generate: --verse: the prompt '%s' does not open a regular poem (%s)\n", prompts[i],
                    ld_ctx_error(g->ctx));
            return NULL;
        }
        g->cons[i] = ld_grammar_constraint(g->states[i]);
    }
    return g->cons;
}

bool ld_cli_grammar_complete(const ld_cli_grammar *g, int i) {
    return !g || i >= g->n || ld_grammar_state_complete(g->states[i]);
}

int ld_cli_rerank_inverse(ld_ctx *ctx, ld_lm_session *s, const ld_tokenizer *tok, const char *prompt,
                          const char *const *cands, int n, const char *sep, double *score, int *best) {
    int32_t **ids = calloc((size_t)n, sizeof *ids), *sep_ids = NULL, *p_ids = NULL;
    int64_t *lens = calloc((size_t)n, sizeof *lens), sep_len = 0, p_len = 0;
    int rc = ids && lens ? 0 : (fprintf(stderr, "liandan generate: out of memory\n"), 1);
    for (int i = 0; i < n && !rc; i++) rc = ld_cli_encode(ctx, tok, cands[i], &ids[i], &lens[i]);
    if (!rc) rc = ld_cli_encode(ctx, tok, sep, &sep_ids, &sep_len);
    if (!rc) rc = ld_cli_encode(ctx, tok, prompt, &p_ids, &p_len);
    if (!rc && !p_len) rc = (fprintf(stderr, "liandan generate: --rerank inverse needs a non-empty prompt\n"), 2);
    /* a candidate longer than the session's room (re-encoded text may take more tokens than were
     * generated) keeps its end, the part next to the prompt */
    int64_t room = ld_lm_session_max_len(s) - sep_len - p_len;
    if (!rc && room < 1) rc = (fprintf(stderr, "liandan generate: --rerank: the prompt leaves no room in the context\n"), 2);
    for (int i = 0; i < n && !rc; i++)
        if (lens[i] > room) memmove(ids[i], ids[i] + lens[i] - room, (size_t)room * sizeof *ids[i]), lens[i] = room;
    if (!rc && ld_lm_rerank_inverse(s, n, (const int32_t *const *)ids, lens, sep_ids, sep_len, p_ids, p_len, score, best))
        rc = ld_cli_fail(ctx, "reranking");
    for (int i = 0; ids && i < n; i++) free(ids[i]);
    free(ids), free(lens), free(sep_ids), free(p_ids);
    return rc;
}

/* tests/unit/test_grammar.c — GBNF grammars (liandan/grammar.h):
 *   - a table of bad grammars with the error each must give;
 *   - a table of grammars with texts they must accept (whole or as a prefix) and refuse;
 *   - the mask equals brute force (a token is allowed iff the grammar can take its bytes) at
 *     every step of random walks, with a byte-level BPE whose tokens split characters;
 *   - JSON Schemas: every text produced by a random walk under the mask parses as JSON and
 *     satisfies the schema (checked here by an independent walk over the parsed value). */
#include <cjson/cJSON.h>

#include "ld_test.h"
#include "liandan/eval.h"
#include "liandan/grammar.h"

static ld_grammar *compile(ld_ctx *ctx, const char *text) {
    ld_grammar *g = NULL;
    ld_status st = ld_grammar_parse(ctx, text, strlen(text), NULL, &g);
    CHECK_MSG(st == LD_OK, "%s: %s", text, ld_ctx_error(ctx));
    return g;
}

TEST(bad_grammars_table) {
    static const struct { const char *text, *msg; } bad[] = {
        {"root = \"a\"", "expected ::="},
        {"root ::= b", "'b' is used but not defined"},
        {"root ::= \"a", "closing quote"},
        {"root ::= [a-", "closing ]"},
        {"root ::= []", "empty character class"},
        {"root ::= [z-a]", "ends before it starts"},
        {"root ::= ( \"a\"", "closing )"},
        {"root ::= \"a\" )", "unexpected character"},
        {"root ::= *", "nothing before it"},
        {"root ::= \"a\"{3,2}", "n < m"},
        {"root ::= \"a\"{2", "closing }"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= \"\\x4\"", "hex digits"},
        {"root ::= \"a\"\nroot ::= \"b\"", "defined twice"},
        {"start ::= \"a\"", "no rule named 'root'"},
        {"root ::= root \"a\" | \"b\"", "left-recursive"},
        {"root ::= x \"a\"\nx ::= \"\" | root", "left-recursive"},
        {"root ::= \"a\" b ::= \"c\"", "inside a rule"},
        {"::= \"a\"", "expected a rule name"},
        {"root ::= \"a\"{99999}", "too large"},
    };
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ld_grammar *g = NULL;
        ld_status st = ld_grammar_parse(ctx, bad[i].text, strlen(bad[i].text), NULL, &g);
        /* syntax errors say where; whole-grammar errors (root, left recursion) name the rule */
        bool where = strstr(ld_ctx_error(ctx), "line") || i == 14 || i == 15 || i == 16;
        CHECK_MSG(st == LD_ERR_FORMAT && g == NULL && strstr(ld_ctx_error(ctx), bad[i].msg) && where,
                  "row %zu '%s': %s (%s)", i, bad[i].text, ld_status_name(st), ld_ctx_error(ctx));
    }
    ld_ctx_free(ctx);
}

/* Accepts text from a fresh state: 0 refused, 1 accepted as a prefix, 2 accepted and complete. */
static int run(ld_ctx *ctx, const ld_grammar *g, const ld_grammar_vocab *v, const char *text) {
    ld_grammar_state *s = NULL;
    if (ld_grammar_state_new(ctx, g, v, NULL, 0, &s)) return -1;
    int r = ld_grammar_state_accept_text(s, text, strlen(text)) ? 0 : ld_grammar_state_complete(s) ? 2 : 1;
    ld_grammar_state_free(s);
    return r;
}

/* A byte-level BPE trained on a little Chinese and ASCII, so tokens split characters. */
static const char *docs[] = {"床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。", "{\"name\": \"Li Bai\", \"age\": 61, \"poems\": [1, 2]}",
                             "春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。", "true false null 0.5 -12 3e4 \"a\\\"b\""};
static size_t doc_at;
static ld_status next_doc(void *user, const char **doc, size_t *len) {
    (void)user;
    if (doc_at >= sizeof docs / sizeof docs[0]) return LD_ERR_NOT_FOUND;
    *doc = docs[doc_at], *len = strlen(docs[doc_at]);
    doc_at++;
    return LD_OK;
}
static ld_tokenizer *small_bpe(ld_ctx *ctx) {
    ld_bpe_train_params p = ld_bpe_train_default_params();
    const char *specials[] = {"<|endoftext|>"};
    p.vocab_size = 330, p.min_frequency = 1, p.special_tokens = specials, p.n_special_tokens = 1;
    ld_text_source src = {next_doc, NULL};
    doc_at = 0;
    ld_tokenizer *tok = NULL;
    CHECK(ld_bpe_train(ctx, &p, &src, &tok) == LD_OK);
    return tok;
}

TEST(grammars_accept_and_refuse) {
    static const struct { const char *grammar, *text; int want; } rows[] = {
        {"root ::= \"ab\" | \"cd\"", "ab", 2},
        {"root ::= \"ab\" | \"cd\"", "a", 1},
        {"root ::= \"ab\" | \"cd\"", "ac", 0},
        {"root ::= [a-c]+ \"!\"", "abcab!", 2},
        {"root ::= [a-c]+ \"!\"", "!", 0},
        {"root ::= [^0-9]*", "x y-z", 2},
        {"root ::= [^0-9]*", "x1", 0},
        {"root ::= \"a\"{2,3}", "aaa", 2},
        {"root ::= \"a\"{2,3}", "aaaa", 0},
        {"root ::= \"a\"{2,}", "aaaaa", 2},
        {"root ::= \"a\"{2}", "a", 1},
        {"root ::= x? \"b\"\nx ::= \"a\"", "b", 2},
        {"root ::= ( \"a\" | \"b\" )* \"c\" # comment\n", "abbac", 2},
        {"root ::= \"x\"\n   | \"y\"", "y", 2},
        {"root ::= . .", "明月", 2},
        {"root ::= [\\u4e00-\\u9fff]{5} \"，\"", "床前明月光，", 2},
        {"root ::= [\\u4e00-\\u9fff]{5} \"，\"", "床前明月，", 0},
        {"root ::= \"\\x41\\u00e9\\n\"", "A\xc3\xa9\n", 2},
        {"root ::= \" \"", "\xe0\x80\xa0", 0}, /* an overlong space is not a space */
        {"root ::= [^a]", "\xed\xa0\x80", 0},   /* nor is a surrogate a character */
        {"root ::= (\n  \"a\"\n  \"b\"\n)", "ab", 2},
        {"root ::= list\nlist ::= \"[\" ( item ( \",\" item )* )? \"]\"\nitem ::= [0-9]+ | list", "[1,[2,[]],33]", 2},
    };
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = small_bpe(ctx);
    ld_grammar_vocab *v = NULL;
    CHECK(ld_grammar_vocab_new(ctx, tok, &v) == LD_OK);
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        ld_grammar *g = compile(ctx, rows[i].grammar);
        int got = g ? run(ctx, g, v, rows[i].text) : -1;
        CHECK_MSG(got == rows[i].want, "row %zu: '%s' on '%s': %d, want %d", i, rows[i].grammar, rows[i].text, got, rows[i].want);
        ld_grammar_free(g);
    }
    /* refusing leaves the state as it was */
    ld_grammar *g = compile(ctx, "root ::= \"abc\"");
    ld_grammar_state *s = NULL;
    CHECK(ld_grammar_state_new(ctx, g, v, NULL, 0, &s) == LD_OK);
    CHECK(ld_grammar_state_accept_text(s, "ab", 2) == LD_OK);
    CHECK_STATUS(ctx, ld_grammar_state_accept_text(s, "x", 1), LD_ERR_FORMAT, "not allowed at byte 0");
    CHECK(ld_grammar_state_accept_text(s, "c", 1) == LD_OK && ld_grammar_state_complete(s));
    ld_grammar_state_free(s);
    ld_grammar_free(g);
    ld_grammar_vocab_free(v);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

/* The bytes of the text so far + token t are accepted by a fresh state (brute force). */
static bool brute_allows(ld_ctx *ctx, const ld_grammar *g, const ld_grammar_vocab *v, const ld_tokenizer *tok,
                         const char *hist, size_t n, int32_t t) {
    const char *b;
    size_t bl;
    if (ld_tokenizer_is_special(tok, t) || ld_tokenizer_token_bytes(tok, t, &b, &bl) || !bl) return false;
    char buf[2048];
    if (n + bl > sizeof buf) return false;
    memcpy(buf, hist, n), memcpy(buf + n, b, bl);
    ld_grammar_state *s = NULL;
    if (ld_grammar_state_new(ctx, g, v, NULL, 0, &s)) return false;
    bool ok = ld_grammar_state_accept_text(s, buf, n + bl) == LD_OK;
    ld_grammar_state_free(s);
    return ok;
}

/* Random walk under the mask: at each step compare with brute force (when check), pick a
 * random allowed token, until EOS is picked or `steps` pass. Returns the text (malloc'd). */
static char *walk(ld_ctx *ctx, const ld_grammar *g, const ld_grammar_vocab *v, const ld_tokenizer *tok, ld_rng *rng,
                  int steps, bool check, bool *ended) {
    int32_t eos = ld_tokenizer_eos_id(tok);
    int64_t V = ld_tokenizer_vocab_size(tok);
    ld_grammar_state *s = NULL;
    CHECK(ld_grammar_state_new(ctx, g, v, &eos, 1, &s) == LD_OK);
    char *text = calloc(1, 4096);
    size_t n = 0;
    float *lg = malloc((size_t)V * sizeof *lg);
    *ended = false;
    for (int step = 0; s && step < steps && !*ended; step++) {
        for (int64_t t = 0; t < V; t++) lg[t] = 0;
        CHECK(ld_grammar_state_mask(s, lg, V) == LD_OK);
        int n_ok = 0;
        for (int64_t t = 0; t < V; t++) {
            bool allowed = lg[t] == 0;
            n_ok += allowed;
            if (check && t != eos) {
                bool want = brute_allows(ctx, g, v, tok, text, n, (int32_t)t);
                CHECK_MSG(allowed == want, "after '%s', token %lld: mask %d, brute force %d", text, (long long)t, allowed, want);
            }
        }
        if (lg[eos] == 0) CHECK(ld_grammar_state_complete(s));
        if (!n_ok) break;
        int pick = (int)ld_rng_below(rng, (uint64_t)n_ok);
        int32_t t = 0;
        for (int64_t k = 0; k < V; k++)
            if (lg[k] == 0 && pick-- == 0) t = (int32_t)k;
        /* prefer ending once complete, half the time, so texts stay short */
        if (lg[eos] == 0 && ld_rng_below(rng, 2)) t = eos;
        CHECK(ld_grammar_state_accept(s, t) == LD_OK);
        if (t == eos) {
            *ended = true;
            break;
        }
        const char *b;
        size_t bl;
        ld_tokenizer_token_bytes(tok, t, &b, &bl);
        if (n + bl < 4095) memcpy(text + n, b, bl), n += bl;
    }
    free(lg);
    ld_grammar_state_free(s);
    return text;
}

TEST(mask_equals_brute_force) {
    static const char *grammars[] = {
        "root ::= [\\u4e00-\\u9fff]{5} \"，\" [\\u4e00-\\u9fff]{5} \"。\"",
        "root ::= \"{\" ws \"\\\"name\\\"\" ws \":\" ws str ws \"}\"\nstr ::= \"\\\"\" [a-zA-Z ]{0,8} \"\\\"\"\nws ::= \" \"?",
        "root ::= ( \"true\" | \"false\" | [0-9]+ ) ( \" \" root )?",
    };
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = small_bpe(ctx);
    ld_grammar_vocab *v = NULL;
    CHECK(ld_grammar_vocab_new(ctx, tok, &v) == LD_OK);
    ld_rng rng = ld_rng_init(42);
    for (size_t i = 0; i < sizeof grammars / sizeof grammars[0]; i++) {
        ld_grammar *g = compile(ctx, grammars[i]);
        for (int rep = 0; g && rep < 3; rep++) {
            bool ended;
            char *text = walk(ctx, g, v, tok, &rng, 24, true, &ended);
            CHECK_MSG(run(ctx, g, v, text) >= 1, "walk produced '%s', which the grammar refuses", text);
            if (ended) CHECK(run(ctx, g, v, text) == 2);
            free(text);
        }
        ld_grammar_free(g);
    }
    ld_grammar_vocab_free(v);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

/* ---- JSON Schema: outputs parse and satisfy the schema ------------------------------------- */

static bool valid(const cJSON *schema, const cJSON *root, const cJSON *x);

static bool valid_type(const cJSON *schema, const cJSON *root, const char *t, const cJSON *x) {
    if (!strcmp(t, "null")) return cJSON_IsNull(x);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(x);
    if (!strcmp(t, "number")) return cJSON_IsNumber(x);
    if (!strcmp(t, "integer")) return cJSON_IsNumber(x) && x->valuedouble == (double)(int64_t)x->valuedouble;
    if (!strcmp(t, "string")) {
        if (!cJSON_IsString(x)) return false;
        const cJSON *lo = cJSON_GetObjectItem(schema, "minLength"), *hi = cJSON_GetObjectItem(schema, "maxLength");
        size_t chars = 0;
        for (const unsigned char *p = (const unsigned char *)x->valuestring; *p; p++) chars += (*p & 0xc0) != 0x80;
        return (!lo || chars >= (size_t)lo->valueint) && (!hi || chars <= (size_t)hi->valueint);
    }
    if (!strcmp(t, "array")) {
        if (!cJSON_IsArray(x)) return false;
        const cJSON *items = cJSON_GetObjectItem(schema, "items"), *lo = cJSON_GetObjectItem(schema, "minItems"),
                    *hi = cJSON_GetObjectItem(schema, "maxItems");
        int n = cJSON_GetArraySize(x);
        if ((lo && n < lo->valueint) || (hi && n > hi->valueint)) return false;
        for (const cJSON *e = x->child; e && items; e = e->next)
            if (!valid(items, root, e)) return false;
        return true;
    }
    if (!strcmp(t, "object")) {
        if (!cJSON_IsObject(x)) return false;
        const cJSON *props = cJSON_GetObjectItem(schema, "properties"), *req = cJSON_GetObjectItem(schema, "required");
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
            if (!cJSON_GetObjectItem(x, r->valuestring)) return false;
        for (const cJSON *m = x->child; m && props; m = m->next) {
            const cJSON *ps = cJSON_GetObjectItem(props, m->string);
            if (!ps || !valid(ps, root, m)) return false; /* no additional properties */
        }
        return true;
    }
    return false;
}

static bool valid(const cJSON *schema, const cJSON *root, const cJSON *x) {
    const cJSON *v;
    if ((v = cJSON_GetObjectItem(schema, "$ref")))
        return valid(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "$defs"), v->valuestring + 8), root, x);
    if ((v = cJSON_GetObjectItem(schema, "const"))) return cJSON_Compare(v, x, true);
    if ((v = cJSON_GetObjectItem(schema, "enum"))) {
        for (const cJSON *e = v->child; e; e = e->next)
            if (cJSON_Compare(e, x, true)) return true;
        return false;
    }
    if ((v = cJSON_GetObjectItem(schema, "anyOf"))) {
        for (const cJSON *e = v->child; e; e = e->next)
            if (valid(e, root, x)) return true;
        return false;
    }
    v = cJSON_GetObjectItem(schema, "type");
    if (cJSON_IsString(v)) return valid_type(schema, root, v->valuestring, x);
    for (const cJSON *t = v ? v->child : NULL; t; t = t->next)
        if (valid_type(schema, root, t->valuestring, x)) return true;
    return !v;
}

TEST(json_schema_outputs_validate) {
    static const char *schemas[] = {
        "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\", \"maxLength\": 6}, \"age\": {\"type\": \"integer\"}, "
        "\"poet\": {\"type\": \"boolean\"}}, \"required\": [\"name\", \"age\"]}",
        "{\"type\": \"object\", \"properties\": {\"a\": {\"type\": \"number\"}, \"b\": {\"enum\": [\"x\", 2, null]}, "
        "\"c\": {\"type\": \"array\", \"items\": {\"type\": \"integer\"}, \"minItems\": 1, \"maxItems\": 3}}}",
        "{\"type\": \"array\", \"items\": {\"anyOf\": [{\"type\": \"string\", \"minLength\": 1, \"maxLength\": 3}, {\"type\": \"null\"}]}, "
        "\"maxItems\": 4}",
        "{\"$defs\": {\"node\": {\"type\": \"object\", \"properties\": {\"v\": {\"type\": \"integer\"}, \"next\": "
        "{\"anyOf\": [{\"$ref\": \"#/$defs/node\"}, {\"type\": \"null\"}]}}, \"required\": [\"v\", \"next\"]}}, "
        "\"$ref\": \"#/$defs/node\"}",
        "{\"type\": [\"integer\", \"string\"], \"maxLength\": 2}",
        "{\"const\": {\"k\": [1, \"two\"]}}",
    };
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = small_bpe(ctx);
    ld_grammar_vocab *v = NULL;
    CHECK(ld_grammar_vocab_new(ctx, tok, &v) == LD_OK);
    ld_rng rng = ld_rng_init(7);
    int ended_total = 0;
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        char *gbnf = NULL;
        CHECK_MSG(ld_grammar_from_json_schema(ctx, schemas[i], strlen(schemas[i]), &gbnf) == LD_OK, "schema %zu: %s", i,
                  ld_ctx_error(ctx));
        ld_grammar *g = gbnf ? compile(ctx, gbnf) : NULL;
        cJSON *schema = cJSON_Parse(schemas[i]);
        for (int rep = 0; g && rep < 30; rep++) {
            bool ended;
            char *text = walk(ctx, g, v, tok, &rng, 400, false, &ended);
            if (ended) {
                ended_total++;
                cJSON *x = cJSON_Parse(text);
                CHECK_MSG(x && valid(schema, schema, x), "schema %zu: output '%s' %s", i, text, x ? "does not validate" : "is not JSON");
                cJSON_Delete(x);
            }
            free(text);
        }
        cJSON_Delete(schema);
        ld_grammar_free(g);
        free(gbnf);
    }
    CHECK(ended_total > 100); /* most walks end: the test is not vacuous */
    /* json_object mode and bad schemas */
    char *gbnf = NULL;
    CHECK(ld_grammar_from_json_schema(ctx, NULL, 0, &gbnf) == LD_OK && strstr(gbnf, "root ::= ws object"));
    free(gbnf);
    static const struct { const char *schema, *msg; } bad[] = {
        {"{\"type\": \"tuple\"}", "unknown type"},
        {"{\"$ref\": \"http://x\"}", "$ref"},
        {"{\"allOf\": [{}, {}]}", "allOf"},
        {"{\"type\": \"array\", \"minItems\": 3, \"maxItems\": 2}", "maxItems"},
        {"[1]", "object or true"},
        {"{\"enum\": []}", "enum"},
        {"{", "json schema"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gbnf = NULL;
        CHECK_MSG(ld_grammar_from_json_schema(ctx, bad[i].schema, strlen(bad[i].schema), &gbnf) != LD_OK && !gbnf &&
                      strstr(ld_ctx_error(ctx), bad[i].msg),
                  "bad schema %zu: %s", i, ld_ctx_error(ctx));
    }
    ld_grammar_vocab_free(v);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

/* ---- regular verse ------------------------------------------------------------------------- */

/* The i-th UTF-8 character of s (0-based) copied into out; false past the end. */
static bool nth_char(const char *s, int i, char out[8]) {
    for (;; i--) {
        size_t n = (*s & 0x80) == 0 ? 1 : (*s & 0xe0) == 0xc0 ? 2 : (*s & 0xf0) == 0xe0 ? 3 : 4;
        if (!*s) return false;
        if (!i) {
            memcpy(out, s, n), out[n] = 0;
            return true;
        }
        s += n;
    }
}

/* Every walk that ends under a verse grammar is a regular poem (ld_poem_is_regular, written
 * independently in src/eval); with a tone table, the level / oblique positions of the pattern
 * hold only characters of that tone; bad arguments, tables and patterns are named. */
TEST(verse_grammar_gives_regular_poems) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_tokenizer *tok = small_bpe(ctx);
    ld_grammar_vocab *v = NULL;
    CHECK(ld_grammar_vocab_new(ctx, tok, &v) == LD_OK);
    ld_rng rng = ld_rng_init(5);
    static const char tones[] = "# tone table\n明\t平\n光\t平\n春\tp\n月\t仄\n地\t仄\n處\tz\n";
    static const struct { int chars, lines; const char *pattern; } rows[] = {
        {5, 4, NULL}, {7, 4, NULL}, {5, 8, NULL}, {5, 4, "ppzzp,zz*pp,ppzzp,zzppz"}, {7, 4, "*******,ppppppp,zzzzzzz,p*z*p*z"},
    };
    int ended = 0;
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        char *gbnf = NULL;
        CHECK_MSG(ld_grammar_verse(ctx, rows[r].chars, rows[r].lines, rows[r].pattern ? tones : NULL,
                                   rows[r].pattern ? strlen(tones) : 0, rows[r].pattern, &gbnf) == LD_OK,
                  "row %zu: %s", r, ld_ctx_error(ctx));
        ld_grammar *g = gbnf ? compile(ctx, gbnf) : NULL;
        for (int rep = 0; g && rep < 6; rep++) {
            bool done;
            char *text = walk(ctx, g, v, tok, &rng, 600, false, &done);
            if (done) {
                ended++;
                int cpl = 0;
                CHECK_MSG(ld_poem_is_regular(text, strlen(text), &cpl) && cpl == rows[r].chars, "row %zu: '%s' is not regular",
                          r, text);
                /* the pattern, position by position ("，" and "。" are one character each) */
                for (int k = 0, line = 0, pos = 0; rows[r].pattern && line < rows[r].lines; k++) {
                    char ch[8];
                    CHECK(nth_char(text, k, ch));
                    if (pos == rows[r].chars) {
                        line++, pos = 0;
                        continue;
                    }
                    char want = rows[r].pattern[line * (rows[r].chars + 1) + pos++];
                    bool level = strstr("明光春", ch), oblique = strstr("月地處", ch);
                    CHECK_MSG(want == '*' || (want == 'p' ? level : oblique), "row %zu: '%s' at line %d position %d: %c",
                              r, ch, line + 1, pos, want);
                }
            }
            free(text);
        }
        ld_grammar_free(g);
        free(gbnf);
    }
    CHECK(ended >= 20); /* most walks end: the test is not vacuous */
    static const struct { int chars, lines; const char *tones, *pattern, *msg; } bad[] = {
        {6, 4, NULL, NULL, "5 or 7"},
        {5, 3, NULL, NULL, "even number"},
        {5, 66, NULL, NULL, "even number"},
        {5, 2, "明\t平\n", NULL, "go together"},
        {5, 2, "明 平\n月\t仄\n", "ppppp,zzzzz", "tone table line 1"},
        {5, 2, "明\t平\n月\t去\n", "ppppp,zzzzz", "tone table line 2"},
        {5, 2, "明\t平\n", "ppppp,ppppp", "level and oblique"},
        {5, 2, "明\t平\n月\t仄\n", "pp", "line 1 position 3"},
        {5, 2, "明\t平\n月\t仄\n", "ppppp;zzzzz", "line 1 does not end"},
        {5, 2, "明\t平\n月\t仄\n", "ppppp,zzzxz", "line 2 position 4"},
        {5, 2, "明\t平\n月\t仄\n", "ppppp,zzzzz,", "text after"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *gbnf = NULL;
        ld_status st = ld_grammar_verse(ctx, bad[i].chars, bad[i].lines, bad[i].tones, bad[i].tones ? strlen(bad[i].tones) : 0,
                                        bad[i].pattern, &gbnf);
        CHECK_MSG(st != LD_OK && !gbnf && strstr(ld_ctx_error(ctx), bad[i].msg), "bad verse %zu: %s", i, ld_ctx_error(ctx));
        free(gbnf);
    }
    ld_grammar_vocab_free(v);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

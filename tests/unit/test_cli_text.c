/* test_cli_text.c — the CLI's text helpers (cli/cli_model.c, cli/cli_corpus.c,
 * cli/cli_grammar.c): generated text has no fixed size (it stopped silently at 64 KiB when the
 * buffer was a fixed array), stop strings are found past that size and nothing of them is
 * printed, a whole input is read with its NUL bytes (getdelim stopped at the first one) and
 * read errors reported, and a grammar's finished sentence may end at any stop token. */
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "cli_grammar.h"
#include "cli_model.h"
#include "ld_test.h"

/* main.c's two helpers that cli_model.c calls, without the CLI's main(). */
ld_ctx *ld_cli_ctx(int threads) {
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = threads;
    ld_ctx *ctx = NULL;
    return ld_ctx_new(&p, &ctx) == LD_OK ? ctx : NULL;
}
int ld_cli_fail(ld_ctx *ctx, const char *what) {
    fprintf(stderr, "liandan: %s: %s\n", what, ctx ? ld_ctx_error(ctx) : "error");
    return 1;
}

/* The id of a one-byte token of the amino-acid vocabulary. */
static int32_t id_of(const ld_tokenizer *tok, char c) {
    int32_t ids[8];
    size_t n = 0;
    char s[2] = {c, 0};
    if (ld_tokenizer_encode(tok, s, 1, 0, ids, 8, &n) || n != 1) return -1;
    return ids[0];
}

/* The bytes written to f so far, as a malloc'd string. */
static char *contents(FILE *f, size_t *n) {
    fflush(f);
    long size = ftell(f);
    char *s = malloc((size_t)size + 1);
    rewind(f);
    *n = s ? fread(s, 1, (size_t)size, f) : 0;
    if (s) s[*n] = 0;
    return s;
}

static size_t count_of(const char *s, size_t n, char c) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == c;
    return k;
}

TEST(generated_text_grows_past_64_KiB_and_streams_all_of_it) {
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_tokenizer *tok = NULL;
    CHECK(ld_tokenizer_new_amino(ctx, &tok) == LD_OK);
    int32_t a = id_of(tok, 'A');
    CHECK(a >= 0);
    FILE *f = tmpfile();
    ld_cli_text t = {0};
    ld_cli_text_init(&t, tok, f);
    const int N = 200000; /* 3 x the old 64 KiB array */
    bool all = true;
    for (int i = 0; i < N; i++) all = all && ld_cli_text_add(&t, a, NULL, 0);
    ld_cli_text_flush(&t);
    CHECK(all && !t.oom);
    CHECK_MSG(t.len == (size_t)N, "kept %zu of %d bytes", t.len, N);
    CHECK(strlen(ld_cli_text_str(&t)) == (size_t)N && count_of(ld_cli_text_str(&t), t.len, 'A') == (size_t)N);
    size_t n = 0;
    char *got = contents(f, &n);
    CHECK_MSG(n == (size_t)N && count_of(got, n, 'A') == (size_t)N, "streamed %zu of %d bytes", n, N);
    free(got);
    fclose(f);
    /* a text reused for the next prompt starts empty */
    ld_cli_text_init(&t, tok, NULL);
    CHECK(ld_cli_text_add(&t, a, NULL, 0) && t.len == 1 && !strcmp(ld_cli_text_str(&t), "A"));
    ld_cli_text_free(&t);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

TEST(a_stop_string_past_64_KiB_ends_the_text_before_it) {
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_tokenizer *tok = NULL;
    CHECK(ld_tokenizer_new_amino(ctx, &tok) == LD_OK);
    int32_t a = id_of(tok, 'A'), l = id_of(tok, 'L'), g = id_of(tok, 'G');
    const char *stops[] = {"LG"};
    FILE *f = tmpfile();
    ld_cli_text t = {0};
    ld_cli_text_init(&t, tok, f);
    const int N = 70000;
    bool going = true;
    for (int i = 0; i < N; i++) going = going && ld_cli_text_add(&t, a, stops, 1);
    CHECK(going);
    CHECK(ld_cli_text_add(&t, l, stops, 1));  /* "L" may start the stop string: held back */
    CHECK(!ld_cli_text_add(&t, g, stops, 1)); /* "LG": stop */
    ld_cli_text_flush(&t);
    CHECK_MSG(t.len == (size_t)N, "text of %zu bytes, want %d", t.len, N);
    size_t n = 0;
    char *got = contents(f, &n);
    CHECK_MSG(n == (size_t)N && !memchr(got, 'L', n), "streamed %zu bytes, want %d without the stop string", n, N);
    free(got);
    fclose(f);
    ld_cli_text_free(&t);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

TEST(read_all_keeps_nul_bytes_and_reports_read_errors) {
    FILE *f = tmpfile();
    static char big[300000];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (char)(i % 7 == 3 ? 0 : 'a' + i % 26);
    fwrite("ab\0cd", 1, 5, f);
    fwrite(big, 1, sizeof big, f);
    rewind(f);
    char *text = NULL;
    size_t len = 0;
    CHECK(ld_cli_read_all(f, "test", "tmpfile", &text, &len) == 0);
    CHECK_MSG(len == 5 + sizeof big, "read %zu bytes", len);
    CHECK(text && !memcmp(text, "ab\0cd", 5) && !memcmp(text + 5, big, sizeof big) && text[len] == 0);
    free(text);
    fclose(f);
    /* an empty input is an empty text */
    f = tmpfile();
    text = NULL;
    CHECK(ld_cli_read_all(f, "test", "empty", &text, &len) == 0 && len == 0 && text && !*text);
    free(text);
    fclose(f);
    /* a directory opens but cannot be read: an error, not an empty input */
    f = fopen(".", "r");
    CHECK(f != NULL);
    if (f) {
        text = NULL;
        CHECK(ld_cli_read_all(f, "test", ".", &text, &len) == 1 && text == NULL);
        fclose(f);
    }
}

/* generate --grammar: once the grammar's sentence is complete, every token that ends
 * generation is allowed — EOS and the stop list (a chat template's end of turn, a config's EOS
 * list), not EOS alone (a --chat reply under a grammar could not end at <|im_end|>). */
TEST(a_finished_grammar_sentence_may_end_at_any_stop_token) {
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_tokenizer *tok = NULL;
    CHECK(ld_tokenizer_new_amino(ctx, &tok) == LD_OK);
    char path[64];
    snprintf(path, sizeof path, "/tmp/ld_test_cli_grammar_%d.gbnf", (int)getpid());
    FILE *f = fopen(path, "w");
    CHECK(f && fputs("root ::= \"A\"+\n", f) >= 0);
    fclose(f);
    ld_cli_grammar_opts o = {.grammar = path, .lines = 4};
    ld_cli_grammar *g = NULL;
    CHECK(ld_cli_grammar_new(ctx, &o, tok, &g) == 0 && g);
    const int32_t a = id_of(tok, 'A'), eot = id_of(tok, 'W'), other = id_of(tok, 'K');
    ld_generate_params gp = ld_generate_default_params();
    gp.eos_id = -1, gp.stop_ids = &eot, gp.n_stop_ids = 1;
    const char *prompt = "";
    const ld_lm_constraint *c = g ? ld_cli_grammar_begin(g, 1, &prompt, &gp) : NULL;
    CHECK(c != NULL);
    const int64_t V = ld_tokenizer_vocab_size(tok);
    float *z = malloc((size_t)V * sizeof(float));
    for (int step = 0; c && step < 2; step++) {
        for (int64_t v = 0; v < V; v++) z[v] = 0;
        CHECK(c->mask(c->user, z, V) == LD_OK);
        CHECK(z[a] == 0 && z[other] == -INFINITY);
        CHECK_MSG(step ? z[eot] == 0 : z[eot] == -INFINITY, "step %d: the stop token is %s", step,
                  z[eot] == 0 ? "allowed" : "masked");
        CHECK(c->accept(c->user, a) == LD_OK);
    }
    free(z);
    unlink(path);
    ld_cli_grammar_free(g);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

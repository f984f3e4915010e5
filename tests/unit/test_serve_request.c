/* tests/unit/test_serve_request.c — the server's request parser (serve/api_request.c): a
 * table of bad bodies with the status, parameter and message each must give; good bodies of
 * every route parse to the right fields; and the streamed-text helper (stop strings, UTF-8
 * hold-back, invalid UTF-8 made safe for JSON). */
#include "ld_test.h"
#include "serve/api_request.h"
#include "serve/text_stream.h"

static const struct {
    ld_api_kind kind;
    const char *body;
    int http;
    const char *param, *msg;
} bad[] = {
    {LD_API_COMPLETION, "", 400, "", "empty"},
    {LD_API_COMPLETION, "{", 400, "", "ends unexpectedly"},
    {LD_API_COMPLETION, "[1]", 400, "", "JSON object"},
    {LD_API_COMPLETION, "\"x\"", 400, "", "JSON object"},
    {LD_API_COMPLETION, "{\"prompt\": \"x\"}", 400, "model", "'model'"},
    {LD_API_COMPLETION, "{\"model\": \"m\"}", 400, "prompt", "'prompt'"},
    {LD_API_COMPLETION, "{\"model\": 3, \"prompt\": \"x\"}", 400, "model", "must be a string"},
    {LD_API_COMPLETION, "{\"model\": \"\", \"prompt\": \"x\"}", 400, "model", "1..256"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"model\": \"n\", \"prompt\": \"x\"}", 400, "", "more than once"},
    {LD_API_COMPLETION, "{\"model\": \"m\\u0000x\", \"prompt\": \"x\"}", 400, "", "NUL"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"bogus\": 1}", 400, "bogus", "Unrecognized request argument"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"messages\": []}", 400, "messages", "Unrecognized"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": []}", 400, "prompt", "not be empty"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": {}}", 400, "prompt", "string or an array"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": [1, -2]}", 400, "prompt", "token ids"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": [1, 2.5]}", 400, "prompt", "token ids"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": [\"a\", 3]}", 400, "prompt", "item 1"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": [[]]}", 400, "prompt", "item 0"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"max_tokens\": 0}", 400, "max_tokens", "1..4096"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"max_tokens\": 1e9}", 400, "max_tokens", "1..4096"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"max_tokens\": \"5\"}", 400, "max_tokens", "integer"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"temperature\": -1}", 400, "temperature", "0..2"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"top_p\": 0}", 400, "top_p", "(0..1"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"n\": 9}", 400, "n", "1..8"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"seed\": 1.5}", 400, "seed", "integer"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stop\": 5}", 400, "stop", "string or an array"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stop\": [\"a\",\"b\",\"c\",\"d\",\"e\"]}", 400, "stop", "at most 4"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stop\": [\"\"]}", 400, "stop", "non-empty"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stream\": 1}", 400, "stream", "boolean"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"echo\": true, \"stream\": true}", 400, "echo", "stream"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"stream_options\": {\"include_usage\": true}}", 400, "stream_options", "stream: true"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"logprobs\": 21}", 400, "logprobs", "0..20"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"presence_penalty\": 0.5}", 400, "presence_penalty", "not supported"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"logit_bias\": {\"a\": 1}}", 400, "logit_bias", "token ids"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"logit_bias\": {\"5\": 101}}", 400, "logit_bias", "-100..100"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"response_format\": {\"type\": \"yaml\"}}", 400, "response_format.type", "json_schema"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"response_format\": {\"type\": \"json_schema\"}}", 400, "response_format.json_schema", "schema"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": \"x\", \"grammar\": \"root ::= \\\"a\\\"\", \"response_format\": {\"type\": \"json_object\"}}", 400, "grammar", "not both"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": []}", 400, "messages", "non-empty"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": [1]}", 400, "messages[0]", "object"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"king\", \"content\": \"x\"}]}", 400, "messages[0]", "role"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": 5}]}", 400, "messages[0]", "content"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]}", 400, "messages[0]", "text only"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\", \"tool_calls\": []}]}", 400, "messages[0]", "tool_calls"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"echo\": true}", 400, "echo", "Unrecognized"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"logprobs\": 3}", 400, "logprobs", "boolean"},
    {LD_API_CHAT, "{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}], \"top_logprobs\": 50}", 400, "top_logprobs", "0..20"},
    {LD_API_EMBEDDING, "{\"model\": \"m\"}", 400, "input", "'input'"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": \"x\", \"encoding_format\": \"hex\"}", 400, "encoding_format", "float or base64"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [\"x\", {\"type\": \"image_url\", \"image_url\": {\"url\": \"https://example.com/cat.png\"}}]}", 400, "input", "only data: URLs"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [\"x\", {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:text/plain;base64,aGk=\"}}]}", 400, "input", "data:image/png;base64,"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [\"x\", {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png,rawbytes\"}}]}", 400, "input", "data:image/png;base64,"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [\"x\", {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,\"}}]}", 400, "input", "holds no image"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [\"x\", {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,abc\"}}]}", 400, "input", "multiple of 4"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [\"x\", {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,ab*d\"}}]}", 400, "input", "invalid base64 character at offset 2"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [\"x\", {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,a=bc\"}}]}", 400, "input", "invalid base64 character at offset 1"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [\"x\", {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/jpeg;base64,ab d\"}}]}", 400, "input", "invalid base64"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [{\"type\": \"image\", \"image_url\": {\"url\": \"data:image/png;base64,aGk=\"}}]}", 400, "input", "item 0: an image must be"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [{\"type\": \"image_url\", \"image_url\": \"data:image/png;base64,aGk=\"}]}", 400, "input", "an image must be"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": [{\"type\": \"image_url\"}]}", 400, "input", "an image must be"},
    {LD_API_EMBEDDING, "{\"model\": \"m\", \"input\": {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,aGk=\"}}}", 400, "input", "string or an array"},
    {LD_API_COMPLETION, "{\"model\": \"m\", \"prompt\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"data:image/png;base64,aGk=\"}}]}", 400, "prompt", "token ids, got"},
    {LD_API_TOKENIZE, "{\"model\": \"m\", \"content\": 5}", 400, "content", "string"},
    {LD_API_DETOKENIZE, "{\"model\": \"m\", \"tokens\": \"1 2\"}", 400, "tokens", "array"},
    {LD_API_DETOKENIZE, "{\"model\": \"m\", \"tokens\": [1, \"2\"]}", 400, "tokens", "token ids"},
};

TEST(bad_requests_table) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ld_api_request r;
        ld_api_error e;
        ld_status st = ld_api_request_parse(ctx, bad[i].kind, bad[i].body, strlen(bad[i].body), NULL, &r, &e);
        CHECK_MSG(st != LD_OK && e.http == bad[i].http && !strcmp(e.param, bad[i].param) && strstr(e.message, bad[i].msg),
                  "row %zu (%s): status %d param '%s' message '%s'", i, bad[i].body, e.http, e.param, e.message);
        CHECK(r.root == NULL && r.inputs == NULL); /* freed on error */
    }
    /* too many items is 413 */
    ld_api_limits lim = ld_api_default_limits();
    lim.max_prompts = 2, lim.max_ids = 3;
    const char *many[] = {"{\"model\": \"m\", \"prompt\": [\"a\", \"b\", \"c\"]}", "{\"model\": \"m\", \"prompt\": [1, 2, 3, 4]}"};
    for (int i = 0; i < 2; i++) {
        ld_api_request r;
        ld_api_error e;
        CHECK(ld_api_request_parse(ctx, LD_API_COMPLETION, many[i], strlen(many[i]), &lim, &r, &e) == LD_ERR_LIMIT &&
              e.http == 413);
    }
    ld_ctx_free(ctx);
}

TEST(good_requests_fill_every_field) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_api_request r;
    ld_api_error e;
    const char *c = "{\"model\": \"poet\", \"prompt\": [\"床前\", [5, 6, 7]], \"max_tokens\": 9, \"temperature\": 0.5, "
                    "\"top_p\": 0.9, \"top_k\": 40, \"n\": 2, \"seed\": -3, \"stop\": \"\\n\", \"logprobs\": 2, "
                    "\"user\": \"u\", \"logit_bias\": {\"7\": -100, \"8\": 2.5}, \"presence_penalty\": 0}";
    CHECK(ld_api_request_parse(ctx, LD_API_COMPLETION, c, strlen(c), NULL, &r, &e) == LD_OK);
    CHECK(!strcmp(r.model, "poet") && r.n_inputs == 2 && !strcmp(r.inputs[0].text, "床前") && r.inputs[1].n_ids == 3 &&
          r.inputs[1].ids[2] == 7);
    CHECK(r.max_tokens == 9 && r.temperature == 0.5f && r.top_p == 0.9f && r.top_k == 40 && r.n == 2 && r.has_seed &&
          (int64_t)r.seed == -3 && r.n_stop == 1 && !strcmp(r.stop[0], "\n") && r.top_logprobs == 2);
    CHECK(r.n_bias == 2 && r.bias_ids[0] == 7 && r.bias[0] == -100 && r.bias[1] == 2.5f);
    ld_api_request_free(&r);
    const char *h = "{\"model\": \"m\", \"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, "
                    "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]}], "
                    "\"stream\": true, \"stream_options\": {\"include_usage\": true}, \"logprobs\": true, \"top_logprobs\": 3, "
                    "\"max_completion_tokens\": 5, \"response_format\": {\"type\": \"json_schema\", \"json_schema\": "
                    "{\"name\": \"x\", \"schema\": {\"type\": \"object\"}}}}";
    CHECK(ld_api_request_parse(ctx, LD_API_CHAT, h, strlen(h), NULL, &r, &e) == LD_OK);
    CHECK(r.n_messages == 2 && !strcmp(r.messages[1].role, "user") && !strcmp(r.messages[1].content, "ab"));
    CHECK(r.stream && r.include_usage && r.top_logprobs == 3 && r.max_tokens == 5);
    CHECK(r.response_format && !strcmp(r.response_format, "json_schema") && r.json_schema);
    ld_api_request_free(&r);
    const char *t = "{\"model\": \"m\", \"content\": \"abc\", \"add_special\": true, \"with_pieces\": true}";
    CHECK(ld_api_request_parse(ctx, LD_API_TOKENIZE, t, strlen(t), NULL, &r, &e) == LD_OK);
    CHECK(r.n_inputs == 1 && !strcmp(r.inputs[0].text, "abc") && r.add_special && r.with_pieces);
    ld_api_request_free(&r);
    /* embedding inputs: text and images (base64 data URLs, decoded to their bytes) */
    const char *im = "{\"model\": \"m\", \"input\": [\"cat\", {\"type\": \"image_url\", \"image_url\": "
                     "{\"url\": \"data:image/png;base64,iVBORw0KGgo=\"}}, {\"type\": \"image_url\", \"image_url\": "
                     "{\"url\": \"data:image/jpeg;base64,/9j/4A==\"}}]}";
    CHECK(ld_api_request_parse(ctx, LD_API_EMBEDDING, im, strlen(im), NULL, &r, &e) == LD_OK);
    CHECK(r.n_inputs == 3 && !strcmp(r.inputs[0].text, "cat") && !r.inputs[0].image);
    CHECK(r.inputs[1].image_len == 8 && !memcmp(r.inputs[1].image, "\x89PNG\r\n\x1a\n", 8));
    CHECK(r.inputs[2].image_len == 4 && !memcmp(r.inputs[2].image, "\xff\xd8\xff\xe0", 4));
    ld_api_request_free(&r);
    /* the decoder alone: every padding length */
    const struct { const char *url, *bytes; size_t n; } dec[] = {
        {"data:image/png;base64,YQ==", "a", 1}, {"data:image/png;base64,YWI=", "ab", 2},
        {"data:image/jpg;base64,YWJj", "abc", 3}, {"data:image/png;base64,YWJjZA==", "abcd", 4}};
    for (size_t i = 0; i < sizeof dec / sizeof dec[0]; i++) {
        uint8_t *b = NULL;
        size_t n = 0;
        char err[200] = "";
        CHECK_MSG(ld_api_data_url_decode(dec[i].url, &b, &n, err, sizeof err) && n == dec[i].n && !memcmp(b, dec[i].bytes, n),
                  "%s: %s", dec[i].url, err);
        free(b);
    }
    /* an escaped backslash before u0000 is text, not a NUL */
    const char *esc = "{\"model\": \"m\", \"prompt\": \"a\\\\u0000\"}";
    CHECK(ld_api_request_parse(ctx, LD_API_COMPLETION, esc, strlen(esc), NULL, &r, &e) == LD_OK);
    CHECK(!strcmp(r.inputs[0].text, "a\\u0000"));
    ld_api_request_free(&r);
    ld_ctx_free(ctx);
}

TEST(text_stream_stops_and_utf8) {
    const char *stops[] = {"\nUser:", "END"};
    ld_text_stream t;
    ld_text_stream_init(&t, stops, 2);
    CHECK(ld_text_stream_add(&t, "Hello", 5) && t.ready == 5);
    CHECK(ld_text_stream_add(&t, "\nUs", 3) && t.ready == 5); /* could become "\nUser:" */
    CHECK(ld_text_stream_add(&t, "ed", 2) && t.ready == 10);  /* it did not */
    CHECK(ld_text_stream_add(&t, "\xe6\x98", 2) && t.ready == 10); /* half of 明 */
    CHECK(ld_text_stream_add(&t, "\x8e", 1) && t.ready == 13);
    CHECK(ld_text_stream_add(&t, "E", 1) && t.ready == 13);
    CHECK(!ld_text_stream_add(&t, "NDtail", 6) && t.stopped && t.len == 13 && !strcmp(t.buf, "Hello\nUsed\xe6\x98\x8e"));
    CHECK(!ld_text_stream_add(&t, "more", 4) && t.len == 13);
    ld_text_stream_free(&t);
    ld_text_stream_init(&t, NULL, 0);
    CHECK(ld_text_stream_add(&t, "ab\xe6", 3) && t.ready == 2);
    ld_text_stream_finish(&t);
    CHECK(t.ready == 3);
    ld_text_stream_free(&t);
    /* invalid UTF-8 becomes U+FFFD; valid text is unchanged */
    char *s = ld_utf8_valid_copy("a\xe6\x98z\x80\xc0\xaf\xed\xa0\x80\xf0\x9f\x98\x80", 14);
    CHECK(s && !strcmp(s, "a\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xf0\x9f\x98\x80"));
    free(s);
}

LD_TEST_MAIN()

/* tests/unit/test_chat.c — chat templates and chat with KV reuse: each family is recognised
 * from its template's text and renders a conversation to the exact text its Jinja template
 * gives (the strings below; tests/e2e/chat_template_oracle.sh checks the same against
 * @huggingface/jinja); unknown templates and bad conversations get errors naming them; a
 * chat's second turn evaluates only the tokens the conversation gained, and gives the same
 * tokens as running the whole conversation from an empty cache. */
#include "ld_test.h"

static const ld_chat_message conv[] = {
    {"system", "You are terse."},
    {"user", " Hi there \n"},
    {"assistant", "Hello!"},
    {"user", "床前明月光"},
};
#define N_CONV (sizeof conv / sizeof conv[0])

static char *render(const char *name, const ld_chat_message *m, size_t n, bool gen) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    char *out = NULL, *copy = NULL;
    const ld_chat_template *t = ld_chat_template_find(name);
    CHECK_MSG(t != NULL, "%s", name);
    if (t && ld_chat_render(ctx, t, m, n, gen, "<s>", "</s>", &out, NULL) == LD_OK) copy = strdup(out);
    ld_free(ctx, out);
    ld_ctx_free(ctx);
    return copy;
}

#define CHECK_RENDER(name, gen, want)                                                        \
    do {                                                                                     \
        char *got_ = render(name, conv, N_CONV, gen);                                        \
        CHECK_MSG(got_ && !strcmp(got_, want), "%s:\n got [%s]\nwant [%s]", name, got_ ? got_ : "(error)", want); \
        free(got_);                                                                          \
    } while (0)

TEST(families_render_like_their_templates) {
    CHECK_RENDER("chatml", true,
                 "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\n Hi there \n<|im_end|>\n"
                 "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n床前明月光<|im_end|>\n<|im_start|>assistant\n");
    CHECK_RENDER("llama3", true,
                 "<s><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                 "<|start_header_id|>user<|end_header_id|>\n\n床前明月光<|eot_id|>"
                 "<|start_header_id|>assistant<|end_header_id|>\n\n");
    CHECK_RENDER("llama2", true,
                 "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\n Hi there [/INST] Hello! </s><s>[INST] 床前明月光 [/INST]");
    CHECK_RENDER("mistral", true, "<s>[INST] You are terse.\n\n Hi there \n [/INST]Hello!</s>[INST] 床前明月光 [/INST]");
    CHECK_RENDER("gemma", true,
                 "<s><start_of_turn>user\nYou are terse.\n\n Hi there<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"
                 "<start_of_turn>user\n床前明月光<end_of_turn>\n<start_of_turn>model\n");
    CHECK_RENDER("phi3", false,
                 "<|system|>\nYou are terse.<|end|>\n<|user|>\n Hi there \n<|end|>\n<|assistant|>\nHello!<|end|>\n"
                 "<|user|>\n床前明月光<|end|>\n</s>");
    CHECK_RENDER("deepseek", true, "<s>You are terse.\n\nUser:  Hi there \n\n\nAssistant: Hello!</s>User: 床前明月光\n\nAssistant:");
    CHECK_RENDER("deepseek3", true,
                 "<s>You are terse.<｜User｜> Hi there \n<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>床前明月光<｜Assistant｜>");
    /* trimming strips Unicode spaces too (U+3000 ideographic space, as Python's strip()) */
    ld_chat_message wide[] = {{"user", "\xe3\x80\x80 你好\xe3\x80\x80"}};
    char *got = render("gemma", wide, 1, true);
    CHECK(got && !strcmp(got, "<s><start_of_turn>user\n你好<end_of_turn>\n<start_of_turn>model\n"));
    free(got);
}

TEST(templates_are_recognised_from_their_text) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    static const struct { const char *jinja, *family; } rows[] = {
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
         "'\\n'}}{% endfor %}", "chatml"},
        {"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' %}", "llama3"},
        {"{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% set content = '<<SYS>>\\n' %}", "llama2"},
        {"{{ bos_token }}{% for message in messages %}{{ '[INST] ' + message['content'] + ' [/INST]' }}", "mistral"},
        {"{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}", "phi3"},
        {"{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}", "gemma"},
        {"{{'<｜User｜>' + message['content']}}{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}", "deepseek3"},
        {"{{ 'User: ' + message['content'] + '\\n\\n' }}{{ 'Assistant: ' + message['content'] + eos_token }}",
         "deepseek"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const ld_chat_template *t = NULL;
        CHECK_STATUS(ctx, ld_chat_template_detect(ctx, rows[i].jinja, &t), LD_OK, NULL);
        CHECK_MSG(t && !strcmp(ld_chat_template_name(t), rows[i].family), "row %zu: %s", i,
                  t ? ld_chat_template_name(t) : "none");
    }
    const ld_chat_template *t = NULL;
    CHECK_STATUS(ctx, ld_chat_template_detect(ctx, "{{ '### Human:\n' + message }}", &t), LD_ERR_UNSUPPORTED,
                 "unknown chat template \"{{ '### Human: ' + message }}\"");
    CHECK(strstr(ld_ctx_error(ctx), "chatml, llama3") && strstr(ld_ctx_error(ctx), "--chat-template"));
    CHECK(t == NULL);
    CHECK(ld_chat_template_find("chatml") && !ld_chat_template_find("jinja"));
    CHECK(ld_chat_template_count() >= 8);
    CHECK(!strcmp(ld_chat_template_end_of_turn(ld_chat_template_find("llama2"), "</s>"), "</s>"));
    CHECK(!strcmp(ld_chat_template_end_of_turn(ld_chat_template_find("chatml"), "</s>"), "<|im_end|>"));
    ld_ctx_free(ctx);
}

TEST(bad_conversations_are_named) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    const ld_chat_template *t = ld_chat_template_find("chatml");
    char *out = NULL;
    static const struct { ld_chat_message m[2]; size_t n; const char *err; } rows[] = {
        {{{"user", "a"}, {"tool", "b"}}, 2, "message 1 has role 'tool'"},
        {{{"user", "a"}, {"system", "b"}}, 2, "message 1: a system message may only come first"},
        {{{"user", NULL}}, 1, "message 0 has no content"},
        {{{NULL, "x"}}, 1, "message 0 has role '(null)'"},
        {{{"user", "a"}}, 0, "no messages"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        CHECK_STATUS(ctx, ld_chat_render(ctx, t, rows[i].m, rows[i].n, true, NULL, NULL, &out, NULL), LD_ERR_INVALID_ARG,
                     rows[i].err);
        CHECK(out == NULL);
    }
    ld_ctx_free(ctx);
}

TEST(messages_json_parses_and_names_bad_input) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_chat_message *m = NULL;
    size_t n = 0;
    static const char *ok = "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
                            "[{\"type\": \"text\", \"text\": \"床前\"}, {\"type\": \"text\", \"text\": \"明月\"}], \"name\": \"x\"},"
                            "{\"role\": \"assistant\", \"content\": null}]";
    CHECK_STATUS(ctx, ld_chat_parse_messages(ctx, "m.json", ok, strlen(ok), &m, &n), LD_OK, NULL);
    CHECK(n == 3 && m && !strcmp(m[0].role, "system") && !strcmp(m[1].content, "床前明月") && !strcmp(m[2].content, ""));
    ld_free(ctx, m), m = NULL;
    static const char *body = "{\"model\": \"x\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}";
    CHECK(ld_chat_parse_messages(ctx, "req", body, strlen(body), &m, &n) == LD_OK && n == 1 && !strcmp(m[0].content, "hi"));
    ld_free(ctx, m), m = NULL;
    /* an empty list (also with control bytes cJSON skips as space: fuzz_chat_template's
     * "[\x12\t]") is no messages (memcpy from the empty text's NULL was UB under UBSan) */
    static const char *const empty[] = {"[]", "[\x12\t]"};
    for (int i = 0; i < 2; i++) {
        n = 99;
        CHECK_STATUS(ctx, ld_chat_parse_messages(ctx, "m.json", empty[i], strlen(empty[i]), &m, &n), LD_OK, NULL);
        CHECK(n == 0);
        ld_free(ctx, m), m = NULL;
    }
    static const struct { const char *json; ld_status st; const char *err; } bad[] = {
        {"", LD_ERR_FORMAT, "m.json"},
        {"[{\"role\": \"user\"", LD_ERR_FORMAT, "m.json"},
        {"{\"x\": 1}", LD_ERR_FORMAT, "expected a list of messages"},
        {"[1]", LD_ERR_FORMAT, "messages[0]: expected an object with a string \"role\""},
        {"[{\"content\": \"x\"}]", LD_ERR_FORMAT, "messages[0]"},
        {"[{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"tool\", \"content\": \"x\"}]", LD_ERR_UNSUPPORTED,
         "messages[1]: role 'tool'"},
        {"[{\"role\": \"user\", \"content\": 5}]", LD_ERR_FORMAT, "messages[0].content: expected a string"},
        {"[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]", LD_ERR_UNSUPPORTED,
         "messages[0].content[0]: only"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_STATUS(ctx, ld_chat_parse_messages(ctx, "m.json", bad[i].json, strlen(bad[i].json), &m, &n), bad[i].st,
                     bad[i].err);
        CHECK(m == NULL && n == 0);
    }
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

/* ---- chat with KV reuse on a tiny random model ---------------------------------------- */

typedef struct mem_src {
    const char *const *docs;
    int n, at;
} mem_src;
static ld_status mem_next(void *u, const char **doc, size_t *len) {
    mem_src *m = u;
    if (m->at == m->n) return LD_ERR_NOT_FOUND;
    *doc = m->docs[m->at++];
    *len = strlen(*doc);
    return LD_OK;
}

static const char *const corpus[] = {
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。", "The quick brown fox jumps over the lazy dog's back 12345 times.",
    "user assistant system: hello, how are you? I am fine, thanks.",
};

typedef struct gen_log {
    int32_t ids[64];
    int n;
} gen_log;
static bool log_token(void *user, int seq, int32_t tok) {
    gen_log *g = user;
    if (g->n < 64) g->ids[g->n++] = tok;
    return true;
}

/* A chat of two turns; then the second turn's prompt from an empty cache gives the same
 * reply. sp: the template's special tokens (EOS first). */
static void chat_reuses_cache(const char *family, const char *const *sp, int n_sp) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    mem_src m = {corpus, 3, 0};
    ld_text_source src = {mem_next, &m};
    ld_bpe_train_params bp = ld_bpe_train_default_params();
    bp.vocab_size = 300, bp.min_frequency = 1, bp.special_tokens = sp, bp.n_special_tokens = n_sp;
    ld_tokenizer *tok = NULL;
    CHECK(ld_bpe_train(ctx, &bp, &src, &tok) == LD_OK);
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = 320, c.hidden_size = 32, c.n_layers = 2, c.n_heads = 2, c.n_kv_heads = 1, c.intermediate_size = 48;
    c.max_position = 256;
    ld_lm *lm = NULL;
    CHECK(ld_lm_new(ctx, &c, 7, &lm) == LD_OK);
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new(lm, 2, 256, 64, &s) == LD_OK);
    const ld_chat_template *t = ld_chat_template_find(family);
    ld_chat *chat = NULL;
    CHECK(ld_chat_new(s, tok, t, 1, &chat) == LD_OK);
    ld_generate_params gp = ld_generate_default_params();
    gp.sample.temperature = 0, gp.max_tokens = 6, gp.sample.repetition_penalty = 1.5f;
    ld_chat_stats st1 = {0}, st2 = {0};
    gen_log g1 = {0}, g2 = {0}, g3 = {0};
    CHECK(ld_chat_add(chat, "system", "Be brief.") == LD_OK);
    CHECK(ld_chat_add(chat, "user", "hello, how are you?") == LD_OK);
    CHECK_STATUS(ctx, ld_chat_add(chat, "system", "late"), LD_ERR_INVALID_ARG, "only come first");
    int64_t before = ld_lm_session_tokens_evaluated(s);
    CHECK(ld_chat_respond(chat, &gp, log_token, &g1, &st1) == LD_OK);
    CHECK(st1.reused_tokens == 0 && st1.evaluated_tokens == st1.prompt_tokens && st1.prompt_tokens > 10);
    CHECK(st1.generated_tokens == g1.n && g1.n >= 1);
    CHECK(ld_chat_count(chat) == 3 && !strcmp(ld_chat_at(chat, 2).role, "assistant"));
    int64_t held = ld_lm_session_len(s, 1);
    CHECK(ld_chat_add(chat, "user", "床前明月光") == LD_OK);
    int64_t mid = ld_lm_session_tokens_evaluated(s);
    CHECK(ld_chat_respond(chat, &gp, log_token, &g2, &st2) == LD_OK);
    /* turn 2 costs only its new tokens: everything the slot held is reused (a template that
     * trims replies keeps them without trailing whitespace; one that starts with whitespace
     * is evaluated again from there) */
    const char *reply = ld_chat_at(chat, 2).content;
    size_t rl = strlen(reply);
    size_t lead = strspn(reply, " \n\t");
    bool edge_space = ld_chat_template_trims(t) && lead > 0 && lead < rl;
    CHECK_MSG(st2.reused_tokens == held || (edge_space && st2.reused_tokens >= held - g1.n), "%s: reused %lld of %lld held",
              family, (long long)st2.reused_tokens, (long long)held);
    CHECK(st2.evaluated_tokens == st2.prompt_tokens - st2.reused_tokens && st2.evaluated_tokens < st2.prompt_tokens / 2);
    if (edge_space) fprintf(stderr, "  %s: the reply starts with a space: the exact reuse was not checked\n", family);
    /* the session's own count agrees: the prompt part of turn 2 plus one per decode step */
    CHECK_MSG(ld_lm_session_tokens_evaluated(s) - mid == st2.evaluated_tokens + (st2.generated_tokens - 1),
              "%lld vs %lld + %lld", (long long)(ld_lm_session_tokens_evaluated(s) - mid),
              (long long)st2.evaluated_tokens, (long long)st2.generated_tokens);
    CHECK(mid - before == st1.evaluated_tokens + st1.generated_tokens - 1);
    /* the same conversation from an empty cache gives the same reply */
    ld_chat *fresh = NULL;
    CHECK(ld_chat_new(s, tok, t, 0, &fresh) == LD_OK);
    for (size_t i = 0; i + 1 < ld_chat_count(chat); i++)
        CHECK(ld_chat_add(fresh, ld_chat_at(chat, i).role, ld_chat_at(chat, i).content) == LD_OK);
    ld_chat_stats st3 = {0};
    CHECK(ld_chat_respond(fresh, &gp, log_token, &g3, &st3) == LD_OK);
    CHECK(st3.reused_tokens == 0);
    CHECK_MSG(g3.n == g2.n && !memcmp(g2.ids, g3.ids, (size_t)g2.n * sizeof(int32_t)), "%s: replies differ", family);
    /* a reply needs a user message to answer */
    CHECK_STATUS(ctx, ld_chat_respond(chat, &gp, NULL, NULL, NULL), LD_ERR_STATE, "must end with a user message");
    /* reset empties the slot */
    ld_chat_reset(chat);
    CHECK(ld_chat_count(chat) == 0 && ld_lm_session_len(s, 1) == 0);
    ld_chat_free(fresh), ld_chat_free(chat);
    ld_lm_session_free(s);
    ld_lm_free(lm);
    ld_tokenizer_free(tok);
    CHECK(ld_ctx_bytes_in_use(ctx) == 0);
    ld_ctx_free(ctx);
}

TEST(chat_turn_two_costs_only_new_tokens_chatml) {
    const char *sp[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    chat_reuses_cache("chatml", sp, 3);
}

TEST(chat_turn_two_costs_only_new_tokens_llama3) {
    const char *sp[] = {"<|end_of_text|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"};
    chat_reuses_cache("llama3", sp, 5);
}

TEST(chat_drops_old_messages_when_the_context_is_full) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    mem_src m = {corpus, 3, 0};
    ld_text_source src = {mem_next, &m};
    ld_bpe_train_params bp = ld_bpe_train_default_params();
    const char *sp[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    bp.vocab_size = 300, bp.min_frequency = 1, bp.special_tokens = sp, bp.n_special_tokens = 3;
    ld_tokenizer *tok = NULL;
    CHECK(ld_bpe_train(ctx, &bp, &src, &tok) == LD_OK);
    ld_lm_config c = ld_lm_default_config(LD_ARCH_LLAMA);
    c.vocab_size = 320, c.hidden_size = 32, c.n_layers = 1, c.n_heads = 2, c.n_kv_heads = 2, c.intermediate_size = 32;
    c.max_position = 96;
    ld_lm *lm = NULL;
    CHECK(ld_lm_new(ctx, &c, 7, &lm) == LD_OK);
    ld_lm_session *s = NULL;
    CHECK(ld_lm_session_new(lm, 1, 96, 96, &s) == LD_OK);
    ld_chat *chat = NULL;
    CHECK(ld_chat_new(s, tok, ld_chat_template_find("chatml"), 0, &chat) == LD_OK);
    ld_generate_params gp = ld_generate_default_params();
    gp.sample.temperature = 0, gp.max_tokens = 8;
    CHECK(ld_chat_add(chat, "system", "Be brief.") == LD_OK);
    int64_t dropped = 0;
    for (int turn = 0; turn < 6; turn++) {
        ld_chat_stats st = {0};
        CHECK(ld_chat_add(chat, "user", "hello, how are you?") == LD_OK);
        CHECK_STATUS(ctx, ld_chat_respond(chat, &gp, NULL, NULL, &st), LD_OK, NULL);
        CHECK(st.prompt_tokens + gp.max_tokens < 96);
        dropped = st.dropped_messages;
    }
    CHECK(dropped > 0);
    /* one message that cannot fit alone: its newest part is kept (ending "yz") */
    char big[2000];
    memset(big, 'x', sizeof big - 1), big[sizeof big - 1] = 0;
    big[sizeof big - 3] = 'y', big[sizeof big - 2] = 'z';
    CHECK(ld_chat_add(chat, "user", big) == LD_OK);
    ld_chat_stats st = {0};
    CHECK_STATUS(ctx, ld_chat_respond(chat, &gp, NULL, NULL, &st), LD_OK, NULL);
    CHECK(st.truncated_bytes > 0 && st.truncated_bytes < (int64_t)sizeof big - 1);
    CHECK(st.prompt_tokens + gp.max_tokens < 96);
    ld_chat_message last = ld_chat_at(chat, ld_chat_count(chat) - 2);
    CHECK(!strcmp(last.role, "user") && strlen(last.content) == sizeof big - 1 - (size_t)st.truncated_bytes);
    CHECK(!strcmp(last.content + strlen(last.content) - 2, "yz"));
    /* a system message that leaves no room cannot be cut: an error naming the context */
    ld_chat_reset(chat);
    CHECK(ld_chat_add(chat, "system", big) == LD_OK && ld_chat_add(chat, "user", "hi") == LD_OK);
    CHECK_STATUS(ctx, ld_chat_respond(chat, &gp, NULL, NULL, NULL), LD_ERR_LIMIT, "passes the context of 96");
    ld_chat_free(chat);
    ld_lm_session_free(s);
    ld_lm_free(lm);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()

/* cli/cmd_chat_template.c — `liandan chat-template`: which template family a model or a Jinja
 * template is, and the exact text a conversation becomes in it (what `chat` and
 * `generate --chat` feed the model). */
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_model.h"

/* A whole file ("-": standard input) into a malloc'd NUL-terminated buffer; NULL on failure
 * (printed). */
static char *read_all(const char *path, size_t *len) {
    bool in = !strcmp(path, "-");
    FILE *f = in ? stdin : fopen(path, "rb");
    if (!f) return fprintf(stderr, "liandan chat-template: cannot open %s\n", path), NULL;
    char *buf = NULL;
    size_t cap = 0;
    ssize_t n = getdelim(&buf, &cap, 0, f);
    bool err = ferror(f);
    if (!in) fclose(f);
    if (err || n < 0) {
        free(buf);
        if (!err && n < 0) return *len = 0, calloc(1, 1); /* empty */
        return fprintf(stderr, "liandan chat-template: cannot read %s\n", path), NULL;
    }
    *len = (size_t)n;
    return buf;
}

/* The text of token id, or "" (into buf). */
static const char *token_text(const ld_tokenizer *tok, int32_t id, char *buf, size_t cap) {
    const char *b;
    size_t n;
    buf[0] = 0;
    if (id >= 0 && !ld_tokenizer_token_bytes(tok, id, &b, &n)) snprintf(buf, cap, "%.*s", (int)n, b);
    return buf;
}

static int cmd_chat_template(int argc, char **argv) {
    const char *messages = NULL, *bos = NULL, *eos = NULL;
    bool list = false, no_gen = false;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("messages", 'm', &messages, "FILE",
                      "render these messages: a JSON list of {\"role\", \"content\"} (OpenAI's form;\n"
                      "\"-\": standard input) and print the text"),
        LD_CLI_STRING("bos", 0, &bos, "TEXT", "the BOS token's text (default: the model's, else none)"),
        LD_CLI_STRING("eos", 0, &eos, "TEXT", "the EOS token's text (default: the model's, else none)"),
        LD_CLI_FLAG("no-generation-prompt", 0, &no_gen, "end after the last message (no assistant opening)"),
        LD_CLI_FLAG("list", 0, &list, "list the template families"),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "chat-template", .args = "[TEMPLATE]", .opts = opts, .pos = &pos, .min_pos = 0, .max_pos = 1,
        .about = "TEMPLATE is a family name (see --list), a Jinja template file, or a model (directory or GGUF)\n"
                 "whose chat template is used. Prints the family it is recognised as, or with --messages the text\n"
                 "the conversation becomes (exactly what chat and generate --chat give the model)."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    if (list || !pos.n) {
        for (size_t i = 0; i < ld_chat_template_count(); i++)
            printf("%-10s %s\n", ld_chat_template_name(ld_chat_template_at(i)),
                   ld_chat_template_description(ld_chat_template_at(i)));
        return ld_cli_parse_free(&spec), 0;
    }
    const char *what = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_lm *m = NULL;
    ld_tokenizer *tok = NULL;
    const ld_chat_template *t = ld_chat_template_find(what);
    char *jinja = NULL, bos_buf[256], eos_buf[256];
    size_t len = 0;
    if (!t) {
        bool model = ld_lm_gguf_sniff(what);
        if (!model) { /* a directory holds config.json */
            char cfg[4096];
            snprintf(cfg, sizeof cfg, "%s/config.json", what);
            FILE *f = fopen(cfg, "r");
            model = f != NULL;
            if (f) fclose(f);
        }
        if (model) {
            if (!(rc = ld_cli_load_model(ctx, what, &m, &tok))) {
                t = ld_cli_chat_template(ctx, m, NULL, "chat-template");
                if (!t) rc = 1;
                if (!bos) bos = token_text(tok, ld_tokenizer_bos_id(tok), bos_buf, sizeof bos_buf);
                if (!eos) eos = token_text(tok, ld_tokenizer_eos_id(tok), eos_buf, sizeof eos_buf);
            }
        } else if (!(jinja = read_all(what, &len))) {
            rc = 1;
        } else if (ld_chat_template_detect(ctx, jinja, &t)) {
            rc = ld_cli_fail(ctx, what);
        }
    }
    if (!rc && !messages) printf("%s\n", ld_chat_template_name(t));
    char *json = NULL, *text = NULL;
    ld_chat_message *msgs = NULL;
    size_t n = 0, tlen = 0;
    if (!rc && messages && !(json = read_all(messages, &len))) rc = 1;
    if (!rc && json && ld_chat_parse_messages(ctx, messages, json, len, &msgs, &n)) rc = ld_cli_fail(ctx, "reading the messages");
    if (!rc && json && ld_chat_render(ctx, t, msgs, n, !no_gen, bos, eos, &text, &tlen)) rc = ld_cli_fail(ctx, "rendering");
    if (!rc && text) fwrite(text, 1, tlen, stdout);
    ld_free(ctx, text), ld_free(ctx, msgs);
    free(json), free(jinja);
    ld_tokenizer_free(tok);
    ld_lm_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_chat_template = {"chat-template", "show a model's chat template family and render conversations",
                                             cmd_chat_template};

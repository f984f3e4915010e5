/* liandan/chat.h — chat templates and multi-turn chat with KV-cache reuse.
 *
 * A chat model expects its conversation in the format it was tuned on: ChatML
 * ("<|im_start|>user\n...<|im_end|>"), Llama-3 headers, Llama-2 [INST] blocks, Gemma turns...
 * Hugging Face and GGUF files carry that format as a Jinja template (tokenizer_config.json
 * "chat_template", GGUF "tokenizer.chat_template"). liandan does not run Jinja: it recognises
 * the family from the template's text and renders the family's format itself, which gives
 * the same text as the template for conversations of system, user and assistant messages
 * (tests/e2e checks this against @huggingface/jinja on each family's template).
 *
 * A chat (ld_chat) keeps the conversation and its tokens in one slot of an inference
 * session: each reply costs only the tokens the conversation gained since the last one. */
#ifndef LIANDAN_CHAT_H
#define LIANDAN_CHAT_H

#include "liandan/infer.h"
#include "liandan/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One message; role is "system", "user" or "assistant". Strings are borrowed. */
typedef struct ld_chat_message {
    const char *role;
    const char *content;
} ld_chat_message;

/* A template family (static data, never freed). */
typedef struct ld_chat_template ld_chat_template;

/* The families, by name: "chatml", "llama2", "llama3", "mistral", "gemma", "phi3",
 * "deepseek" (DeepSeek-LLM/V2 "User: ... Assistant:"), "deepseek3" (DeepSeek-V3/R1), and
 * "plain" (no template: each user message, then the model's continuation up to a newline;
 * for base models; never recognised from a template, only chosen by name). */
size_t ld_chat_template_count(void);
const ld_chat_template *ld_chat_template_at(size_t i);
/* NULL when no family has that name. */
const ld_chat_template *ld_chat_template_find(const char *name);
const char *ld_chat_template_name(const ld_chat_template *t);
/* A one-line description ("ChatML: <|im_start|>role ... <|im_end|> (Qwen, Yi, ...)"). */
const char *ld_chat_template_description(const ld_chat_template *t);
/* The text that ends an assistant turn ("<|im_end|>", "<|eot_id|>"...), with eos_text
 * standing for the tokenizer's EOS where the family ends turns with it. */
const char *ld_chat_template_end_of_turn(const ld_chat_template *t, const char *eos_text);

/* Whether the family strips whitespace around each message's content. */
bool ld_chat_template_trims(const ld_chat_template *t);

/* Recognises the family of a Jinja chat template from its text. Unknown templates are
 * LD_ERR_UNSUPPORTED with a message quoting the template's start and listing the names
 * --chat-template accepts. */
ld_status ld_chat_template_detect(ld_ctx *ctx, const char *jinja, const ld_chat_template **out);

/* Renders n >= 1 messages as the family formats them, then (add_generation_prompt) the
 * opening of the assistant's reply. bos_text / eos_text are the tokenizer's BOS and EOS
 * token texts ("<s>", "<|begin_of_text|>"; NULL = none). A system message is allowed only
 * first; families without a system role put it before the first user message as their
 * newer templates do. *out (ld_alloc'd, NUL-terminated, caller ld_frees) receives the text,
 * *len (may be NULL) its length. Errors: an unknown role or a misplaced system message
 * (LD_ERR_INVALID_ARG naming the message), NULL content. */
ld_status ld_chat_render(ld_ctx *ctx, const ld_chat_template *t, const ld_chat_message *msgs, size_t n,
                         bool add_generation_prompt, const char *bos_text, const char *eos_text, char **out,
                         size_t *len);

/* Parses messages in the OpenAI form: a JSON list of {"role": ..., "content": ...} (content a
 * string or a list of {"type": "text", "text": ...} parts; other keys ignored), or an object
 * whose "messages" is that list (a request body). *msgs receives one ld_alloc'd block holding
 * the array and its strings (caller ld_frees it), *n the count. Errors name the document
 * (`doc`, e.g. a file name) and the message: not JSON, not a list, a message without a string
 * role, roles other than system/user/assistant, non-text content parts. */
ld_status ld_chat_parse_messages(ld_ctx *ctx, const char *doc, const char *json, size_t len, ld_chat_message **msgs,
                                 size_t *n);

/* ---- a conversation in a session slot ------------------------------------------------ */
typedef struct ld_chat ld_chat;

/* A chat using slot `slot` of s (cleared now; the chat owns it until freed) and tok (must
 * outlive the chat). The template's BOS/EOS texts come from tok. */
ld_status ld_chat_new(ld_lm_session *s, const ld_tokenizer *tok, const ld_chat_template *t, int slot, ld_chat **out);
void ld_chat_free(ld_chat *c);
/* Appends a message (the strings are copied). */
ld_status ld_chat_add(ld_chat *c, const char *role, const char *content);
/* Forgets the conversation (and the slot's cache). */
void ld_chat_reset(ld_chat *c);
size_t ld_chat_count(const ld_chat *c);
ld_chat_message ld_chat_at(const ld_chat *c, size_t i);

typedef struct ld_chat_stats {
    int64_t prompt_tokens;    /* the rendered conversation, in tokens */
    int64_t reused_tokens;    /* of those, already in the KV cache from earlier turns */
    int64_t evaluated_tokens; /* run through the model before the first new token */
    int64_t generated_tokens;
    int64_t dropped_messages; /* oldest messages left out because the context was full */
    int64_t truncated_bytes;  /* cut from the start of the last message, too long alone */
} ld_chat_stats;

/* Generates the assistant's reply to the conversation (which must end with a user message)
 * and appends it. Generation stops at p->max_tokens, at the tokenizer's EOS, at p's stop
 * ids, at the template's end of turn, or when on_token returns false. The prompt is the
 * rendered conversation; the tokens the slot already holds from earlier turns are kept
 * and only the rest is evaluated. When the conversation no longer fits the session's
 * context (with room for max_tokens), its oldest messages after a leading system message
 * are left out; when the last message alone is too long, its start is cut (in the kept
 * conversation too). on_token receives seq 0. *stats may be NULL. */
ld_status ld_chat_respond(ld_chat *c, const ld_generate_params *p, ld_token_fn on_token, void *user,
                          ld_chat_stats *stats);

#ifdef __cplusplus
}
#endif
#endif

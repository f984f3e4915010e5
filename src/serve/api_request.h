/* serve/api_request.h — the JSON bodies of the server's routes parsed into one checked
 * struct: types, ranges and sizes validated, unknown keys refused the way OpenAI refuses them
 * (400 "Unrecognized request argument supplied: x"), every error naming the parameter. */
#ifndef LD_SERVE_API_REQUEST_H
#define LD_SERVE_API_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"

struct cJSON;

typedef enum ld_api_kind {
    LD_API_COMPLETION,
    LD_API_CHAT,
    LD_API_EMBEDDING,
    LD_API_TOKENIZE,
    LD_API_DETOKENIZE,
    LD_API_KIND_COUNT
} ld_api_kind;

/* An error for the client: HTTP status, OpenAI's error type, the parameter at fault ("" if
 * none) and a message. */
typedef struct ld_api_error {
    int http;
    const char *type; /* "invalid_request_error", "authentication_error", "server_error", ... */
    char param[64];
    char code[48];    /* OpenAI's code ("model_not_found", "rate_limit_exceeded"), "" if none */
    char message[512];
} ld_api_error;
/* Fills e and returns LD_ERR_INVALID_ARG (LD_ERR_LIMIT for 413/429, ...). */
ld_status ld_api_fail(ld_api_error *e, int http, const char *param, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* A prompt or input: text (borrowed from the parsed JSON) or token ids (owned), or for an
 * embedding input an image: the bytes (owned) of an item {"type": "image_url", "image_url":
 * {"url": "data:image/png;base64,..."}} (PNG or JPEG; docs/serving.md), not yet decoded. */
typedef struct ld_api_input {
    const char *text;
    size_t text_len;
    int32_t *ids;
    int64_t n_ids;
    uint8_t *image;
    size_t image_len;
} ld_api_input;

/* The bytes of a base64 data URL "data:image/png;base64,..." or "data:image/jpeg;base64,..."
 * (malloc'd into *out); false with a message in err otherwise. */
bool ld_api_data_url_decode(const char *url, uint8_t **out, size_t *len, char *err, size_t cap);

typedef struct ld_api_message {
    const char *role;    /* system, developer, user, assistant, tool */
    char *content;       /* owned: text parts joined */
} ld_api_message;

typedef struct ld_api_limits {
    int max_choices, max_prompts, max_messages, max_stop;
    int64_t max_new_tokens, max_ids;
    size_t max_stop_bytes;
} ld_api_limits;
ld_api_limits ld_api_default_limits(void);

typedef struct ld_api_request {
    ld_api_kind kind;
    struct cJSON *root;        /* owns the strings below */
    const char *model;
    ld_api_input *inputs;      /* completion prompts, embedding inputs, the tokenize content */
    int n_inputs;
    ld_api_message *messages;  /* chat */
    int n_messages;
    int32_t *tokens;           /* detokenize */
    int64_t n_tokens;
    int64_t max_tokens;        /* -1: not given */
    float temperature, top_p, min_p, repetition_penalty;
    int top_k;
    int n;
    uint64_t seed;
    bool has_seed;
    const char *stop[8];
    int n_stop;
    bool stream, include_usage, echo;
    int top_logprobs;          /* -1: no logprobs; else how many alternatives per token */
    const char *response_format; /* NULL (text), "json_object" or "json_schema" */
    const struct cJSON *json_schema; /* the schema of a json_schema response format */
    const char *grammar;       /* GBNF (liandan extension) */
    int32_t *bias_ids;         /* logit_bias: token ids and the bias added to their logits */
    float *bias;
    int n_bias;
    bool add_special, with_pieces; /* tokenize */
    bool base64;               /* embeddings: encoding_format "base64" */
} ld_api_request;

/* Parses body[0..len) as a request of `kind`. On error *out is freed and e says why (400,
 * or 413 for too many items). The ctx is only used for scratch and JSON syntax messages. */
ld_status ld_api_request_parse(ld_ctx *ctx, ld_api_kind kind, const char *body, size_t len, const ld_api_limits *lim,
                               ld_api_request *out, ld_api_error *e);
void ld_api_request_free(ld_api_request *r);

#endif

/* serve/api_request.c — parsing and validating the JSON bodies of the API routes
 * (api_request.h). One table says which keys each route takes; one function per key kind
 * reads and range-checks it; nothing here trusts a length, a type or a count. */
#include "serve/api_request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

ld_status ld_api_fail(ld_api_error *e, int http, const char *param, const char *fmt, ...) {
    e->http = http;
    e->type = http == 401   ? "authentication_error"
              : http == 403 ? "permission_error"
              : http == 404 ? "not_found_error"
              : http == 429 ? "rate_limit_error"
              : http >= 500 ? "server_error"
                            : "invalid_request_error";
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    if (!e->code[0] && http == 429) snprintf(e->code, sizeof e->code, "rate_limit_exceeded");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return http == 413 || http == 429 ? LD_ERR_LIMIT : http >= 500 ? LD_ERR_INTERNAL : LD_ERR_INVALID_ARG;
}

ld_api_limits ld_api_default_limits(void) {
    ld_api_limits l = {.max_choices = 8, .max_prompts = 32, .max_messages = 256, .max_stop = 4,
                       .max_new_tokens = 4096, .max_ids = 1 << 20, .max_stop_bytes = 256};
    return l;
}

/* ---- keys per route ------------------------------------------------------------------ */

typedef enum key_id {
    K_MODEL, K_PROMPT, K_MESSAGES, K_INPUT, K_CONTENT, K_TOKENS, K_MAX_TOKENS, K_MAX_COMPLETION_TOKENS,
    K_TEMPERATURE, K_TOP_P, K_TOP_K, K_MIN_P, K_REPETITION_PENALTY, K_N, K_SEED, K_STOP, K_STREAM,
    K_STREAM_OPTIONS, K_ECHO, K_LOGPROBS, K_TOP_LOGPROBS, K_RESPONSE_FORMAT, K_GRAMMAR, K_ADD_SPECIAL,
    K_WITH_PIECES, K_ENCODING_FORMAT, K_IGNORED, K_PENALTY, K_LOGIT_BIAS,
} key_id;

/* Keys each route accepts (bit per route: C = completion, H = chat, E = embedding,
 * T = tokenize, D = detokenize). Keys OpenAI's clients send that change nothing here are
 * accepted and ignored (K_IGNORED); presence/frequency penalties must be 0. */
enum { C = 1 << LD_API_COMPLETION, H = 1 << LD_API_CHAT, E = 1 << LD_API_EMBEDDING, T = 1 << LD_API_TOKENIZE,
       D = 1 << LD_API_DETOKENIZE };
static const struct {
    const char *name;
    key_id id;
    unsigned routes;
} keys[] = {
    {"model", K_MODEL, C | H | E | T | D},
    {"prompt", K_PROMPT, C},
    {"messages", K_MESSAGES, H},
    {"input", K_INPUT, E},
    {"content", K_CONTENT, T},
    {"tokens", K_TOKENS, D},
    {"max_tokens", K_MAX_TOKENS, C | H},
    {"max_completion_tokens", K_MAX_COMPLETION_TOKENS, H},
    {"temperature", K_TEMPERATURE, C | H},
    {"top_p", K_TOP_P, C | H},
    {"top_k", K_TOP_K, C | H},
    {"min_p", K_MIN_P, C | H},
    {"repetition_penalty", K_REPETITION_PENALTY, C | H},
    {"n", K_N, C | H},
    {"seed", K_SEED, C | H},
    {"stop", K_STOP, C | H},
    {"stream", K_STREAM, C | H},
    {"stream_options", K_STREAM_OPTIONS, C | H},
    {"echo", K_ECHO, C},
    {"logprobs", K_LOGPROBS, C | H},
    {"top_logprobs", K_TOP_LOGPROBS, H},
    {"response_format", K_RESPONSE_FORMAT, C | H},
    {"grammar", K_GRAMMAR, C | H},
    {"add_special", K_ADD_SPECIAL, T},
    {"with_pieces", K_WITH_PIECES, T},
    {"encoding_format", K_ENCODING_FORMAT, E},
    {"presence_penalty", K_PENALTY, C | H},
    {"frequency_penalty", K_PENALTY, C | H},
    {"user", K_IGNORED, C | H | E},
    {"metadata", K_IGNORED, H},
    {"store", K_IGNORED, H},
    {"service_tier", K_IGNORED, C | H},
    {"logit_bias", K_LOGIT_BIAS, C | H},
    {"suffix", K_IGNORED, C},
    {"best_of", K_IGNORED, C},
};

/* ---- typed readers ------------------------------------------------------------------- */

static const char *type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

static ld_status get_int(const cJSON *v, const char *name, int64_t lo, int64_t hi, int64_t *out, ld_api_error *e) {
    double d = v->valuedouble;
    if (!cJSON_IsNumber(v) || d != floor(d) || !isfinite(d))
        return ld_api_fail(e, 400, name, "'%s' must be an integer, got %s", name, type_name(v));
    if (d < (double)lo || d > (double)hi)
        return ld_api_fail(e, 400, name, "'%s' must be in %lld..%lld, got %.17g", name, (long long)lo, (long long)hi, d);
    *out = (int64_t)d;
    return LD_OK;
}

static ld_status get_float(const cJSON *v, const char *name, double lo, double hi, bool lo_open, float *out,
                           ld_api_error *e) {
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return ld_api_fail(e, 400, name, "'%s' must be a number, got %s", name, type_name(v));
    double d = v->valuedouble;
    if (d < lo || d > hi || (lo_open && d == lo))
        return ld_api_fail(e, 400, name, "'%s' must be in %s%g..%g, got %g", name, lo_open ? "(" : "", lo, hi, d);
    *out = (float)d;
    return LD_OK;
}

static ld_status get_bool(const cJSON *v, const char *name, bool *out, ld_api_error *e) {
    if (!cJSON_IsBool(v)) return ld_api_fail(e, 400, name, "'%s' must be a boolean, got %s", name, type_name(v));
    *out = cJSON_IsTrue(v);
    return LD_OK;
}

static ld_status get_string(const cJSON *v, const char *name, const char **out, ld_api_error *e) {
    if (!cJSON_IsString(v) || !v->valuestring)
        return ld_api_fail(e, 400, name, "'%s' must be a string, got %s", name, type_name(v));
    *out = v->valuestring;
    return LD_OK;
}

static int count(const cJSON *a) {
    int n = 0;
    for (const cJSON *c = a->child; c; c = c->next) n++;
    return n;
}

/* An array of token ids (every one in 0..2^31-1; the model checks its vocabulary). */
static ld_status get_ids(const cJSON *a, const char *name, const ld_api_limits *lim, int32_t **ids, int64_t *n,
                         ld_api_error *e) {
    int k = count(a);
    if (k > lim->max_ids) return ld_api_fail(e, 413, name, "'%s' has %d token ids; at most %lld", name, k, (long long)lim->max_ids);
    *ids = malloc((size_t)(k ? k : 1) * sizeof(int32_t));
    if (!*ids) return ld_api_fail(e, 500, name, "out of memory");
    *n = 0;
    for (const cJSON *c = a->child; c; c = c->next) {
        int64_t v;
        ld_status st = get_int(c, name, 0, INT32_MAX, &v, e);
        if (st) {
            free(*ids), *ids = NULL;
            snprintf(e->message, sizeof e->message, "'%s' must hold token ids (integers 0..2147483647); item %lld is not",
                     name, (long long)*n);
            return st;
        }
        (*ids)[(*n)++] = (int32_t)v;
    }
    return LD_OK;
}

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

bool ld_api_data_url_decode(const char *url, uint8_t **out, size_t *len, char *err, size_t cap) {
    *out = NULL, *len = 0;
    static const char *const types[] = {"data:image/png;base64,", "data:image/jpeg;base64,", "data:image/jpg;base64,"};
    const char *p = NULL;
    for (size_t k = 0; k < sizeof types / sizeof types[0] && !p; k++)
        if (!strncmp(url, types[k], strlen(types[k]))) p = url + strlen(types[k]);
    if (!p) {
        if (strncmp(url, "data:", 5))
            snprintf(err, cap, "only data: URLs are accepted (data:image/png;base64,... or data:image/jpeg;base64,...), not '%.40s'", url);
        else snprintf(err, cap, "a data URL must start data:image/png;base64, or data:image/jpeg;base64, (got '%.40s')", url);
        return false;
    }
    size_t n = strlen(p);
    if (n == 0) return snprintf(err, cap, "the data URL holds no image (nothing after base64,)"), false;
    if (n % 4) return snprintf(err, cap, "base64 of %zu characters: not a multiple of 4", n), false;
    size_t pad = p[n - 1] == '=' ? (p[n - 2] == '=' ? 2 : 1) : 0;
    uint8_t *b = malloc(n / 4 * 3);
    if (!b) return snprintf(err, cap, "out of memory"), false;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++) {
            bool padding = i + 4 == n && k >= 4 - (int)pad;
            v[k] = padding ? 0 : b64_value((unsigned char)p[i + (size_t)k]);
            if (v[k] < 0) {
                free(b);
                return snprintf(err, cap, "invalid base64 character at offset %zu of the data", i + (size_t)k), false;
            }
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        b[o++] = (uint8_t)(w >> 16);
        if (!(i + 4 == n && pad == 2)) b[o++] = (uint8_t)(w >> 8);
        if (!(i + 4 == n && pad >= 1)) b[o++] = (uint8_t)w;
    }
    *out = b, *len = o;
    return true;
}

/* An embedding input's image item (ld_api_input). */
static ld_status get_image(const cJSON *c, const char *name, int i, ld_api_input *in, ld_api_error *e) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type"), *iu = cJSON_GetObjectItemCaseSensitive(c, "image_url");
    const cJSON *url = cJSON_GetObjectItemCaseSensitive(iu, "url");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "image_url") || !cJSON_IsObject(iu) || !cJSON_IsString(url))
        return ld_api_fail(e, 400, name,
                           "'%s' item %d: an image must be {\"type\": \"image_url\", \"image_url\": {\"url\": \"data:...\"}}",
                           name, i);
    char err[200];
    if (!ld_api_data_url_decode(url->valuestring, &in->image, &in->image_len, err, sizeof err))
        return ld_api_fail(e, 400, name, "'%s' item %d: %s", name, i, err);
    return LD_OK;
}

/* prompt / input: a string, an array of strings, an array of ids, or an array of arrays of
 * ids (OpenAI's four forms); for embeddings also image items in an array. */
static ld_status get_inputs(const cJSON *v, const char *name, const ld_api_limits *lim, ld_api_request *r,
                            ld_api_error *e) {
    int k = 1;
    bool ids_one = false;
    if (cJSON_IsArray(v)) {
        k = count(v);
        ids_one = k > 0 && cJSON_IsNumber(v->child);
        if (ids_one) k = 1;
        if (k == 0) return ld_api_fail(e, 400, name, "'%s' must not be empty", name);
        if (k > lim->max_prompts)
            return ld_api_fail(e, 413, name, "'%s' has %d items; at most %d in one request", name, k, lim->max_prompts);
    } else if (!cJSON_IsString(v)) {
        return ld_api_fail(e, 400, name, "'%s' must be a string or an array (of strings or token ids), got %s", name,
                           type_name(v));
    }
    r->inputs = calloc((size_t)k, sizeof *r->inputs);
    if (!r->inputs) return ld_api_fail(e, 500, name, "out of memory");
    r->n_inputs = k;
    if (cJSON_IsString(v) || ids_one) {
        if (ids_one) return get_ids(v, name, lim, &r->inputs[0].ids, &r->inputs[0].n_ids, e);
        r->inputs[0].text = v->valuestring, r->inputs[0].text_len = strlen(v->valuestring);
        return LD_OK;
    }
    int i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        if (cJSON_IsString(c)) {
            r->inputs[i].text = c->valuestring, r->inputs[i].text_len = strlen(c->valuestring);
        } else if (cJSON_IsArray(c) && count(c) > 0) {
            ld_status st = get_ids(c, name, lim, &r->inputs[i].ids, &r->inputs[i].n_ids, e);
            if (st) return st;
        } else if (cJSON_IsObject(c) && r->kind == LD_API_EMBEDDING) {
            ld_status st = get_image(c, name, i, &r->inputs[i], e);
            if (st) return st;
        } else {
            return ld_api_fail(e, 400, name, "'%s' item %d must be a string or a non-empty array of token ids%s, got %s",
                               name, i, r->kind == LD_API_EMBEDDING ? " or an image object" : "", type_name(c));
        }
    }
    return LD_OK;
}

static ld_status get_messages(const cJSON *v, const ld_api_limits *lim, ld_api_request *r, ld_api_error *e) {
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    if (!cJSON_IsArray(v) || count(v) == 0)
        return ld_api_fail(e, 400, "messages", "'messages' must be a non-empty array, got %s", type_name(v));
    int k = count(v);
    if (k > lim->max_messages)
        return ld_api_fail(e, 413, "messages", "'messages' has %d items; at most %d", k, lim->max_messages);
    r->messages = calloc((size_t)k, sizeof *r->messages);
    if (!r->messages) return ld_api_fail(e, 500, "messages", "out of memory");
    int i = 0;
    for (const cJSON *m = v->child; m; m = m->next, i++, r->n_messages = i) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m)) return ld_api_fail(e, 400, param, "'%s' must be an object, got %s", param, type_name(m));
        for (const cJSON *f = m->child; f; f = f->next)
            if (strcmp(f->string, "role") && strcmp(f->string, "content") && strcmp(f->string, "name"))
                return ld_api_fail(e, 400, param, "'%s': unrecognized field '%s'", param, f->string);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role)) return ld_api_fail(e, 400, param, "'%s.role' must be a string", param);
        size_t ri = 0;
        while (ri < sizeof roles / sizeof roles[0] && strcmp(roles[ri], role->valuestring)) ri++;
        if (ri == sizeof roles / sizeof roles[0])
            return ld_api_fail(e, 400, param, "'%s.role' must be system, developer, user, assistant or tool", param);
        r->messages[i].role = roles[ri];
        /* content: a string, or an array of {"type": "text", "text": ...} parts */
        size_t len = 0;
        if (cJSON_IsString(content)) {
            len = strlen(content->valuestring);
        } else if (cJSON_IsArray(content)) {
            for (const cJSON *p = content->child; p; p = p->next) {
                const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type"), *tx = cJSON_GetObjectItemCaseSensitive(p, "text");
                if (!cJSON_IsObject(p) || !cJSON_IsString(t) || strcmp(t->valuestring, "text") || !cJSON_IsString(tx))
                    return ld_api_fail(e, 400, param, "'%s.content' parts must be {\"type\": \"text\", \"text\": ...} "
                                                      "(this server reads text only)", param);
                len += strlen(tx->valuestring);
            }
        } else if (!cJSON_IsNull(content) && content) {
            return ld_api_fail(e, 400, param, "'%s.content' must be a string or an array of text parts", param);
        }
        if (!(r->messages[i].content = malloc(len + 1))) return ld_api_fail(e, 500, param, "out of memory");
        char *out = r->messages[i].content;
        if (cJSON_IsString(content)) memcpy(out, content->valuestring, len + 1);
        else {
            size_t at = 0;
            for (const cJSON *p = content ? content->child : NULL; p; p = p->next) {
                const char *tx = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
                size_t l = strlen(tx);
                memcpy(out + at, tx, l), at += l;
            }
            out[at] = 0;
        }
    }
    return LD_OK;
}

static ld_status get_stop(const cJSON *v, const ld_api_limits *lim, ld_api_request *r, ld_api_error *e) {
    if (cJSON_IsNull(v)) return LD_OK;
    const cJSON *one = cJSON_IsString(v) ? v : NULL;
    if (!one && !cJSON_IsArray(v))
        return ld_api_fail(e, 400, "stop", "'stop' must be a string or an array of strings, got %s", type_name(v));
    int max = lim->max_stop < 8 ? lim->max_stop : 8;
    if (!one && count(v) > max) return ld_api_fail(e, 400, "stop", "'stop' may hold at most %d strings", max);
    for (const cJSON *c = one ? one : v->child; c; c = one ? NULL : c->next) {
        if (!cJSON_IsString(c) || !c->valuestring[0] || strlen(c->valuestring) > lim->max_stop_bytes)
            return ld_api_fail(e, 400, "stop", "'stop' strings must be non-empty strings of at most %zu bytes",
                               lim->max_stop_bytes);
        r->stop[r->n_stop++] = c->valuestring;
    }
    return LD_OK;
}

static ld_status get_response_format(const cJSON *v, ld_api_request *r, ld_api_error *e) {
    const cJSON *t = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "type") : NULL;
    if (!cJSON_IsString(t))
        return ld_api_fail(e, 400, "response_format", "'response_format' must be an object with a string 'type'");
    if (!strcmp(t->valuestring, "text")) return LD_OK;
    if (!strcmp(t->valuestring, "json_object")) {
        r->response_format = "json_object";
        return LD_OK;
    }
    if (strcmp(t->valuestring, "json_schema"))
        return ld_api_fail(e, 400, "response_format.type", "'response_format.type' must be text, json_object or json_schema");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(v, "json_schema");
    const cJSON *schema = cJSON_IsObject(js) ? cJSON_GetObjectItemCaseSensitive(js, "schema") : NULL;
    if (!cJSON_IsObject(schema) && !cJSON_IsBool(schema))
        return ld_api_fail(e, 400, "response_format.json_schema",
                           "'response_format.json_schema' must be an object with a 'schema' (a JSON Schema)");
    r->response_format = "json_schema", r->json_schema = schema;
    return LD_OK;
}

/* One key of the body. */
static ld_status read_key(key_id id, const char *name, const cJSON *v, const ld_api_limits *lim, ld_api_request *r,
                          ld_api_error *e) {
    int64_t x;
    ld_status st = LD_OK;
    switch (id) {
    case K_MODEL: return get_string(v, name, &r->model, e);
    case K_PROMPT:
    case K_INPUT: return get_inputs(v, name, lim, r, e);
    case K_CONTENT: { /* the text to tokenize: one input */
        const char *text = NULL;
        if ((st = get_string(v, name, &text, e))) return st;
        if (!(r->inputs = calloc(1, sizeof *r->inputs))) return ld_api_fail(e, 500, name, "out of memory");
        r->n_inputs = 1, r->inputs[0].text = text, r->inputs[0].text_len = strlen(text);
        return LD_OK;
    }
    case K_TOKENS:
        if (!cJSON_IsArray(v)) return ld_api_fail(e, 400, name, "'tokens' must be an array of token ids");
        return get_ids(v, name, lim, &r->tokens, &r->n_tokens, e);
    case K_MESSAGES: return get_messages(v, lim, r, e);
    case K_MAX_TOKENS:
    case K_MAX_COMPLETION_TOKENS:
        if (cJSON_IsNull(v)) return LD_OK;
        if ((st = get_int(v, name, 1, lim->max_new_tokens, &x, e))) return st;
        r->max_tokens = x;
        return LD_OK;
    case K_TEMPERATURE: return get_float(v, name, 0, 2, false, &r->temperature, e);
    case K_TOP_P: return get_float(v, name, 0, 1, true, &r->top_p, e);
    case K_MIN_P: return get_float(v, name, 0, 1, false, &r->min_p, e);
    case K_REPETITION_PENALTY: return get_float(v, name, 0, 10, true, &r->repetition_penalty, e);
    case K_TOP_K:
        if ((st = get_int(v, name, 0, 1 << 20, &x, e))) return st;
        r->top_k = (int)x;
        return LD_OK;
    case K_N:
        if ((st = get_int(v, name, 1, lim->max_choices, &x, e))) return st;
        r->n = (int)x;
        return LD_OK;
    case K_SEED:
        if (cJSON_IsNull(v)) return LD_OK;
        if ((st = get_int(v, name, -(int64_t)9007199254740991LL, 9007199254740991LL, &x, e))) return st;
        r->seed = (uint64_t)x, r->has_seed = true;
        return LD_OK;
    case K_STOP: return get_stop(v, lim, r, e);
    case K_STREAM: return cJSON_IsNull(v) ? LD_OK : get_bool(v, name, &r->stream, e);
    case K_STREAM_OPTIONS: {
        if (cJSON_IsNull(v)) return LD_OK;
        const cJSON *u = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, "include_usage") : NULL;
        if (!cJSON_IsObject(v) || (u && !cJSON_IsBool(u)))
            return ld_api_fail(e, 400, name, "'stream_options' must be an object like {\"include_usage\": true}");
        r->include_usage = u && cJSON_IsTrue(u);
        return LD_OK;
    }
    case K_ECHO: return get_bool(v, name, &r->echo, e);
    case K_LOGPROBS:
        if (cJSON_IsNull(v)) return LD_OK;
        if (r->kind == LD_API_CHAT) { /* a boolean; top_logprobs says how many alternatives */
            bool on;
            if ((st = get_bool(v, name, &on, e))) return st;
            if (on && r->top_logprobs < 0) r->top_logprobs = 0;
            if (!on) r->top_logprobs = -1;
            return LD_OK;
        }
        if ((st = get_int(v, name, 0, 20, &x, e))) return st; /* completions: how many alternatives */
        r->top_logprobs = (int)x;
        return LD_OK;
    case K_TOP_LOGPROBS:
        if (cJSON_IsNull(v)) return LD_OK;
        if ((st = get_int(v, name, 0, 20, &x, e))) return st;
        r->top_logprobs = (int)x;
        return LD_OK;
    case K_RESPONSE_FORMAT: return cJSON_IsNull(v) ? LD_OK : get_response_format(v, r, e);
    case K_GRAMMAR: return cJSON_IsNull(v) ? LD_OK : get_string(v, name, &r->grammar, e);
    case K_ADD_SPECIAL: return get_bool(v, name, &r->add_special, e);
    case K_WITH_PIECES: return get_bool(v, name, &r->with_pieces, e);
    case K_ENCODING_FORMAT: {
        const char *f = NULL;
        if ((st = get_string(v, name, &f, e))) return st;
        if (strcmp(f, "float") && strcmp(f, "base64"))
            return ld_api_fail(e, 400, name, "'encoding_format' must be float or base64");
        r->base64 = !strcmp(f, "base64");
        return LD_OK;
    }
    case K_PENALTY: {
        float p;
        if (cJSON_IsNull(v)) return LD_OK;
        if ((st = get_float(v, name, -2, 2, false, &p, e))) return st;
        if (p != 0)
            return ld_api_fail(e, 400, name, "'%s' is not supported (use repetition_penalty); only 0 is accepted", name);
        return LD_OK;
    }
    case K_LOGIT_BIAS: { /* {"token id": bias in -100..100}, at most 300 entries (OpenAI's limits) */
        if (cJSON_IsNull(v)) return LD_OK;
        if (!cJSON_IsObject(v)) return ld_api_fail(e, 400, name, "'logit_bias' must be an object of token id: bias");
        int k = count(v);
        if (k > 300) return ld_api_fail(e, 400, name, "'logit_bias' may hold at most 300 entries");
        r->bias_ids = malloc((size_t)(k ? k : 1) * sizeof *r->bias_ids);
        r->bias = malloc((size_t)(k ? k : 1) * sizeof *r->bias);
        if (!r->bias_ids || !r->bias) return ld_api_fail(e, 500, name, "out of memory");
        for (const cJSON *c = v->child; c; c = c->next) {
            char *end;
            long id = strtol(c->string, &end, 10);
            if (!c->string[0] || *end || id < 0 || id > INT32_MAX)
                return ld_api_fail(e, 400, name, "'logit_bias' keys must be token ids, got '%.40s'", c->string);
            float b;
            if ((st = get_float(c, name, -100, 100, false, &b, e))) return st;
            r->bias_ids[r->n_bias] = (int32_t)id, r->bias[r->n_bias++] = b;
        }
        return LD_OK;
    }
    case K_IGNORED: return LD_OK;
    }
    return LD_OK;
}

void ld_api_request_free(ld_api_request *r) {
    if (!r) return;
    for (int i = 0; r->inputs && i < r->n_inputs; i++) free(r->inputs[i].ids), free(r->inputs[i].image);
    for (int i = 0; r->messages && i < r->n_messages; i++) free(r->messages[i].content);
    free(r->inputs), free(r->messages), free(r->tokens), free(r->bias_ids), free(r->bias);
    cJSON_Delete(r->root);
    memset(r, 0, sizeof *r);
}

ld_status ld_api_request_parse(ld_ctx *ctx, ld_api_kind kind, const char *body, size_t len, const ld_api_limits *lim,
                               ld_api_request *r, ld_api_error *e) {
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    ld_api_limits dl = ld_api_default_limits();
    if (!lim) lim = &dl;
    r->kind = kind, r->max_tokens = -1, r->temperature = 1.0f, r->top_p = 1.0f, r->repetition_penalty = 1.0f;
    r->n = 1, r->top_logprobs = -1;
    if ((unsigned)kind >= LD_API_KIND_COUNT) return ld_api_fail(e, 500, NULL, "unknown route kind");
    if (!body || !len) return ld_api_fail(e, 400, NULL, "the request body is empty; expected a JSON object");
    /* cJSON ends strings at NUL: a \u0000 escape would silently cut a prompt or a name */
    for (size_t i = 0; i + 5 < len; i++)
        if (body[i] == '\\' && body[i + 1] == 'u' && !strncmp(body + i + 2, "0000", 4)) {
            size_t k = 0;
            while (k < i && body[i - 1 - k] == '\\') k++;
            if (k % 2 == 0) return ld_api_fail(e, 400, NULL, "NUL characters (\\u0000) are not accepted in requests");
        }
    if (ld_json_parse(ctx, "request body", body, len, &r->root))
        return ld_api_fail(e, 400, NULL, "%s", ld_ctx_error(ctx));
    if (!cJSON_IsObject(r->root)) {
        ld_api_fail(e, 400, NULL, "the request body must be a JSON object, got %s", type_name(r->root));
        ld_api_request_free(r);
        return LD_ERR_INVALID_ARG;
    }
    ld_status st = LD_OK;
    for (const cJSON *f = r->root->child; f && !st; f = f->next) {
        size_t i = 0;
        while (i < sizeof keys / sizeof keys[0] && (strcmp(keys[i].name, f->string) || !(keys[i].routes & (1u << kind))))
            i++;
        if (i == sizeof keys / sizeof keys[0]) {
            char name[48];
            snprintf(name, sizeof name, "%s", f->string);
            st = ld_api_fail(e, 400, name, "Unrecognized request argument supplied: %s", name);
        } else {
            st = read_key(keys[i].id, keys[i].name, f, lim, r, e);
        }
    }
    /* required keys */
    static const struct { ld_api_kind kind; const char *key; } required[] = {
        {LD_API_COMPLETION, "model"}, {LD_API_COMPLETION, "prompt"}, {LD_API_CHAT, "model"},
        {LD_API_CHAT, "messages"},    {LD_API_EMBEDDING, "model"},   {LD_API_EMBEDDING, "input"},
        {LD_API_TOKENIZE, "model"},   {LD_API_TOKENIZE, "content"},  {LD_API_DETOKENIZE, "model"},
        {LD_API_DETOKENIZE, "tokens"},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0] && !st; i++)
        if (required[i].kind == kind && !cJSON_GetObjectItemCaseSensitive(r->root, required[i].key))
            st = ld_api_fail(e, 400, required[i].key, "you must provide '%s'", required[i].key);
    if (!st && r->model && (!r->model[0] || strlen(r->model) > 256))
        st = ld_api_fail(e, 400, "model", "'model' must be a name of 1..256 bytes");
    if (!st && r->echo && r->stream)
        st = ld_api_fail(e, 400, "echo", "'echo' cannot be combined with 'stream'");
    if (!st && r->grammar && r->response_format)
        st = ld_api_fail(e, 400, "grammar", "give 'grammar' or 'response_format', not both");
    if (!st && r->include_usage && !r->stream)
        st = ld_api_fail(e, 400, "stream_options", "'stream_options' is only allowed with stream: true");
    if (st) ld_api_request_free(r);
    return st;
}

/* io/json.h — JSON documents (cJSON) with typed accessors that put the path in every message.
 * Private to the library (the public API never exposes cJSON): config.json, tokenizer.json,
 * safetensors headers and indexes are read through it. */
#ifndef LD_IO_JSON_H
#define LD_IO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"

struct cJSON;

/* Parses `len` bytes of JSON text (need not be NUL-terminated). `doc` names the document in
 * messages ("config.json"). Syntax errors give LD_ERR_FORMAT with line and column. Free the
 * result with ld_json_free(). */
ld_status ld_json_parse(ld_ctx *ctx, const char *doc, const char *text, size_t len, struct cJSON **out);
/* Reads and parses a file of at most max_size bytes (0 = 64 MiB). */
ld_status ld_json_load(ld_ctx *ctx, const char *path, size_t max_size, struct cJSON **out);
void ld_json_free(struct cJSON *root);

/* A node plus where it is, for messages: doc "config.json", path "vision_config.layers[2]". */
#define LD_JSON_PATH_MAX 256
typedef struct ld_json_ref {
    const struct cJSON *node;
    const char *doc;
    char path[LD_JSON_PATH_MAX];
} ld_json_ref;

/* The root of a document (doc is borrowed, keep it alive while the refs are used). */
ld_json_ref ld_json_root(const char *doc, const struct cJSON *root);

/* Getters read field `key` of the object `obj`. With required=false a missing key (or a JSON
 * null) returns LD_OK and leaves *out unchanged (so set the default first); with
 * required=true it is LD_ERR_FORMAT "config.json: key 'x': missing". A value of the wrong
 * type or out of range is LD_ERR_FORMAT, e.g.
 *   config.json: key 'hidden_size': expected a positive integer, got "abc"               */
ld_status ld_json_get_int(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required,
                          int64_t min, int64_t max, int64_t *out);
ld_status ld_json_get_float(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required,
                            double min, double max, double *out);
ld_status ld_json_get_bool(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required, bool *out);
/* *out is borrowed from the document. */
ld_status ld_json_get_string(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required,
                             const char **out);
/* Child object / array as a ref (out->node stays NULL when optional and missing). */
ld_status ld_json_get_object(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required,
                             ld_json_ref *out);
ld_status ld_json_get_array(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required,
                            ld_json_ref *out, size_t *count);
/* Element i of an array ref ("layers[3]"). */
ld_status ld_json_array_item(ld_ctx *ctx, const ld_json_ref *arr, size_t i, ld_json_ref *out);
/* "a positive integer, got \"abc\"" style description of a node, into buf. */
const char *ld_json_describe(const struct cJSON *node, char *buf, size_t cap);

/* Reports every key of `obj` that is not in known[0..n_known): calls fn(user, doc, path, key)
 * for each, or, when fn is NULL, logs a warning "config.json: unknown key 'x' (ignored)".
 * Returns how many unknown keys there were. */
typedef void (*ld_json_unknown_key_fn)(void *user, const char *doc, const char *path, const char *key);
size_t ld_json_check_keys(ld_ctx *ctx, const ld_json_ref *obj, const char *const *known, size_t n_known,
                          ld_json_unknown_key_fn fn, void *user);

#endif

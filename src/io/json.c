/* io/json.c — JSON documents through cJSON, with typed accessors whose errors name the
 * document and the path of the key ("config.json: key 'vision_config.hidden_size': expected
 * a positive integer, got \"abc\""), duplicate-key rejection, and an unknown-key hook. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "liandan/io.h"

/* ---- parsing ------------------------------------------------------------------------- */

static void line_col(const char *text, size_t pos, size_t *line, size_t *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < pos; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* snprintf that may truncate (paths in messages are cut at LD_JSON_PATH_MAX). */
static void fmt_trunc(char *dst, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

static void path_join(char *dst, size_t cap, const char *parent, const char *key) {
    fmt_trunc(dst, cap, "%s%s%s", parent, parent[0] ? "." : "", key);
}

/* Rejects objects with a key given twice anywhere in the tree (cJSON would keep both and
 * lookups would see only the first, unlike most other parsers). */
static ld_status check_duplicates(ld_ctx *ctx, const char *doc, const cJSON *node, const char *path) {
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) return LD_OK;
    size_t n = 0;
    for (const cJSON *c = node->child; c; c = c->next) n++;
    if (cJSON_IsObject(node) && n > 1) {
        const char **keys = malloc(n * sizeof *keys);
        if (!keys) return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory checking keys", doc);
        size_t i = 0;
        for (const cJSON *c = node->child; c; c = c->next) keys[i++] = c->string ? c->string : "";
        qsort(keys, n, sizeof *keys, cmp_str_ptr);
        for (i = 1; i < n; i++) {
            if (strcmp(keys[i - 1], keys[i]) == 0) {
                char full[LD_JSON_PATH_MAX];
                path_join(full, sizeof full, path, keys[i]);
                free(keys);
                return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': appears more than once", doc, full);
            }
        }
        free(keys);
    }
    size_t i = 0;
    for (const cJSON *c = node->child; c; c = c->next, i++) {
        char sub[LD_JSON_PATH_MAX];
        if (cJSON_IsObject(node)) path_join(sub, sizeof sub, path, c->string ? c->string : "");
        else fmt_trunc(sub, sizeof sub, "%s[%zu]", path, i);
        ld_status st = check_duplicates(ctx, doc, c, sub);
        if (st) return st;
    }
    return LD_OK;
}

ld_status ld_json_parse(ld_ctx *ctx, const char *doc, const char *text, size_t len, cJSON **out) {
    if (!out || (!text && len)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_json_parse: NULL argument");
    *out = NULL;
    if (!doc) doc = "JSON";
    const char *nul = len ? memchr(text, 0, len) : NULL;
    if (nul) return ld_error(ctx, LD_ERR_FORMAT, "%s: byte %zu: NUL byte inside JSON text", doc, (size_t)(nul - text));
    /* cJSON wants a terminated string; parse a terminated copy. */
    char *buf = malloc(len + 1);
    if (!buf) return ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory (%zu bytes of JSON)", doc, len);
    if (len) memcpy(buf, text, len);
    buf[len] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(buf, &end, 1);
    if (!root) {
        size_t pos = end && end >= buf && end <= buf + len ? (size_t)(end - buf) : 0, line, col;
        line_col(buf, pos, &line, &col);
        free(buf);
        if (pos >= len) return ld_error(ctx, LD_ERR_FORMAT, "%s: line %zu, column %zu: JSON text ends unexpectedly", doc, line, col);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: line %zu, column %zu (byte %zu): invalid JSON", doc, line, col, pos);
    }
    free(buf);
    ld_status st = check_duplicates(ctx, doc, root, "");
    if (st) {
        cJSON_Delete(root);
        return st;
    }
    *out = root;
    return LD_OK;
}

ld_status ld_json_load(ld_ctx *ctx, const char *path, size_t max_size, cJSON **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_json_load: NULL argument");
    *out = NULL;
    char *text;
    size_t n;
    ld_status st = ld_file_read(ctx, path, max_size ? max_size : (size_t)64 << 20, &text, &n);
    if (st) return st;
    st = ld_json_parse(ctx, path, text, n, out);
    ld_free(ctx, text);
    return st;
}

void ld_json_free(cJSON *root) {
    cJSON_Delete(root);
}

/* ---- refs and descriptions ---------------------------------------------------------- */

ld_json_ref ld_json_root(const char *doc, const cJSON *root) {
    ld_json_ref r;
    memset(&r, 0, sizeof r);
    r.node = root;
    r.doc = doc ? doc : "JSON";
    return r;
}

const char *ld_json_describe(const cJSON *node, char *buf, size_t cap) {
    if (!node) snprintf(buf, cap, "nothing");
    else if (cJSON_IsString(node)) {
        const char *s = node->valuestring ? node->valuestring : "";
        size_t n = strlen(s);
        if (n > 40) snprintf(buf, cap, "\"%.40s...\"", s);
        else snprintf(buf, cap, "\"%s\"", s);
    } else if (cJSON_IsNumber(node)) snprintf(buf, cap, "%.17g", node->valuedouble);
    else if (cJSON_IsTrue(node)) snprintf(buf, cap, "true");
    else if (cJSON_IsFalse(node)) snprintf(buf, cap, "false");
    else if (cJSON_IsNull(node)) snprintf(buf, cap, "null");
    else if (cJSON_IsArray(node)) snprintf(buf, cap, "an array");
    else if (cJSON_IsObject(node)) snprintf(buf, cap, "an object");
    else snprintf(buf, cap, "an invalid value");
    return buf;
}

/* Finds obj[key]. Returns LD_OK with *node == NULL for an optional missing (or null) key. */
static ld_status lookup(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required, const cJSON **node,
                        char *path, size_t path_cap) {
    *node = NULL;
    if (!obj || !key) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_json_get: NULL argument");
    path_join(path, path_cap, obj->path, key);
    if (!cJSON_IsObject(obj->node)) {
        char d[64];
        if (obj->path[0])
            return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': expected an object, got %s", obj->doc, obj->path,
                            ld_json_describe(obj->node, d, sizeof d));
        return ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object at the top level, got %s", obj->doc,
                        ld_json_describe(obj->node, d, sizeof d));
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(obj->node, key);
    if (!c || cJSON_IsNull(c)) {
        if (required) return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': missing", obj->doc, path);
        return LD_OK;
    }
    *node = c;
    return LD_OK;
}

static ld_status wrong(ld_ctx *ctx, const ld_json_ref *obj, const char *path, const char *expected, const cJSON *got) {
    char d[80];
    return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': expected %s, got %s", obj->doc, path, expected,
                    ld_json_describe(got, d, sizeof d));
}

ld_status ld_json_get_int(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required, int64_t min,
                          int64_t max, int64_t *out) {
    const cJSON *c;
    char path[LD_JSON_PATH_MAX];
    ld_status st = lookup(ctx, obj, key, required, &c, path, sizeof path);
    if (st || !c) return st;
    char expected[96];
    if (min == 1 && max == INT64_MAX) snprintf(expected, sizeof expected, "a positive integer");
    else if (min == 0 && max == INT64_MAX) snprintf(expected, sizeof expected, "a non-negative integer");
    else if (min == INT64_MIN && max == INT64_MAX) snprintf(expected, sizeof expected, "an integer");
    else snprintf(expected, sizeof expected, "an integer in %lld..%lld", (long long)min, (long long)max);
    if (!cJSON_IsNumber(c)) return wrong(ctx, obj, path, expected, c);
    double d = c->valuedouble;
    /* Exactly representable integers only: |d| < 2^63 and no fraction. */
    if (!(d == floor(d)) || !(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
        return wrong(ctx, obj, path, expected, c);
    int64_t v = (int64_t)d;
    if (v < min || v > max) return wrong(ctx, obj, path, expected, c);
    *out = v;
    return LD_OK;
}

ld_status ld_json_get_float(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required, double min,
                            double max, double *out) {
    const cJSON *c;
    char path[LD_JSON_PATH_MAX];
    ld_status st = lookup(ctx, obj, key, required, &c, path, sizeof path);
    if (st || !c) return st;
    char expected[96];
    snprintf(expected, sizeof expected, "a number in %g..%g", min, max);
    if (!cJSON_IsNumber(c) || !(c->valuedouble >= min && c->valuedouble <= max)) return wrong(ctx, obj, path, expected, c);
    *out = c->valuedouble;
    return LD_OK;
}

ld_status ld_json_get_bool(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required, bool *out) {
    const cJSON *c;
    char path[LD_JSON_PATH_MAX];
    ld_status st = lookup(ctx, obj, key, required, &c, path, sizeof path);
    if (st || !c) return st;
    if (!cJSON_IsBool(c)) return wrong(ctx, obj, path, "true or false", c);
    *out = cJSON_IsTrue(c);
    return LD_OK;
}

ld_status ld_json_get_string(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required, const char **out) {
    const cJSON *c;
    char path[LD_JSON_PATH_MAX];
    ld_status st = lookup(ctx, obj, key, required, &c, path, sizeof path);
    if (st || !c) return st;
    if (!cJSON_IsString(c) || !c->valuestring) return wrong(ctx, obj, path, "a string", c);
    *out = c->valuestring;
    return LD_OK;
}

ld_status ld_json_get_object(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required, ld_json_ref *out) {
    const cJSON *c;
    char path[LD_JSON_PATH_MAX];
    if (out) out->node = NULL;
    ld_status st = lookup(ctx, obj, key, required, &c, path, sizeof path);
    if (st || !c) return st;
    if (!cJSON_IsObject(c)) return wrong(ctx, obj, path, "an object", c);
    out->node = c;
    out->doc = obj->doc;
    memcpy(out->path, path, sizeof out->path);
    return LD_OK;
}

ld_status ld_json_get_array(ld_ctx *ctx, const ld_json_ref *obj, const char *key, bool required, ld_json_ref *out,
                            size_t *count) {
    const cJSON *c;
    char path[LD_JSON_PATH_MAX];
    if (out) out->node = NULL;
    if (count) *count = 0;
    ld_status st = lookup(ctx, obj, key, required, &c, path, sizeof path);
    if (st || !c) return st;
    if (!cJSON_IsArray(c)) return wrong(ctx, obj, path, "an array", c);
    out->node = c;
    out->doc = obj->doc;
    memcpy(out->path, path, sizeof out->path);
    if (count) *count = (size_t)cJSON_GetArraySize(c);
    return LD_OK;
}

ld_status ld_json_array_item(ld_ctx *ctx, const ld_json_ref *arr, size_t i, ld_json_ref *out) {
    if (!arr || !out || !cJSON_IsArray(arr->node)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_json_array_item: not an array");
    const cJSON *c = arr->node->child;
    for (size_t k = 0; c && k < i; k++) c = c->next;
    if (!c) return ld_error(ctx, LD_ERR_FORMAT, "%s: key '%s': has no element %zu", arr->doc, arr->path, i);
    out->node = c;
    out->doc = arr->doc;
    fmt_trunc(out->path, sizeof out->path, "%s[%zu]", arr->path, i);
    return LD_OK;
}

size_t ld_json_check_keys(ld_ctx *ctx, const ld_json_ref *obj, const char *const *known, size_t n_known,
                          ld_json_unknown_key_fn fn, void *user) {
    if (!obj || !cJSON_IsObject(obj->node)) return 0;
    size_t unknown = 0;
    for (const cJSON *c = obj->node->child; c; c = c->next) {
        const char *k = c->string ? c->string : "";
        bool found = false;
        for (size_t i = 0; i < n_known && !found; i++) found = strcmp(known[i], k) == 0;
        if (found) continue;
        unknown++;
        if (fn) fn(user, obj->doc, obj->path, k);
        else {
            char full[LD_JSON_PATH_MAX];
            path_join(full, sizeof full, obj->path, k);
            ld_log(ctx, LD_LOG_WARN, "%s: unknown key '%s' (ignored)", obj->doc, full);
        }
    }
    return unknown;
}

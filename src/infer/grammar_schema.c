/* infer/grammar_schema.c — JSON Schema to GBNF (liandan/grammar.h): one rule per schema node,
 * written so that every sentence of the grammar is a JSON document the schema accepts. Objects
 * list their properties in the schema's order, required ones always, optional ones maybe
 * (commas placed by a pair of rule chains: "nothing written yet" / "something written"). */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/grammar.h"
#include "io/json.h"

/* The shared pieces every converted grammar ends with. */
static const char json_base[] =
    "ws ::= [ \\t\\n]{0,4}\n"
    "value ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
    "object ::= \"{\" ws ( string \":\" ws value ( \",\" ws string \":\" ws value )* )? \"}\" ws\n"
    "array ::= \"[\" ws ( value ( \",\" ws value )* )? \"]\" ws\n"
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )\n"
    "string ::= \"\\\"\" char* \"\\\"\" ws\n"
    "integer ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ws\n"
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )? ws\n"
    "boolean ::= ( \"true\" | \"false\" ) ws\n"
    "null ::= \"null\" ws\n";

typedef struct conv {
    ld_ctx *ctx;
    const cJSON *root;
    char *out;
    size_t len, cap;
    int next;
    ld_status st;
    struct { const char *ref; int rule; } refs[256];
    int n_refs;
    int depth;
} conv;

static void put(conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(conv *c, const char *fmt, ...) {
    if (c->st) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(c->out ? c->out + c->len : NULL, c->out ? c->cap - c->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (c->out && c->len + (size_t)n < c->cap) {
            c->len += (size_t)n;
            return;
        }
        size_t cap = c->cap ? 2 * c->cap : 4096;
        while (cap < c->len + (size_t)n + 1) cap *= 2;
        char *o = realloc(c->out, cap);
        if (!o) {
            c->st = ld_error(c->ctx, LD_ERR_NOMEM, "json schema: out of memory");
            return;
        }
        c->out = o, c->cap = cap;
    }
}

/* s as a GBNF literal: "..." with \ " and control characters escaped. */
static void literal(conv *c, const char *s) {
    put(c, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') put(c, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) put(c, "\\x%02X", *p);
        else put(c, "%c", *p);
    }
    put(c, "\"");
}

/* A JSON value written out (enum, const) as a literal followed by ws. */
static void json_literal(conv *c, const cJSON *v) {
    char *text = cJSON_PrintUnformatted(v);
    if (!text) {
        c->st = ld_error(c->ctx, LD_ERR_NOMEM, "json schema: out of memory");
        return;
    }
    literal(c, text);
    put(c, " ws");
    free(text);
}

static int rule(conv *s, const cJSON *schema, const char *where);

/* "s-N ::= " for a new rule; returns N. */
static int open_rule(conv *c) {
    int n = c->next++;
    put(c, "s-%d ::= ", n);
    return n;
}

static ld_status fail(conv *c, const char *where, const char *what) {
    if (!c->st) c->st = ld_error(c->ctx, LD_ERR_UNSUPPORTED, "json schema: %s: %s", where, what);
    return c->st;
}

/* The rule for an object with properties. */
static int object_rule(conv *c, const cJSON *schema, const char *where) {
    const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
    int n = 0;
    for (const cJSON *p = props ? props->child : NULL; p; p = p->next) n++;
    if (!n) {
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
        if (cJSON_IsFalse(ap)) { /* only {} */
            int r = open_rule(c);
            put(c, "\"{\" ws \"}\" ws\n");
            return r;
        }
        int r = open_rule(c);
        put(c, "object\n");
        return r;
    }
    /* a value rule and a "key": value rule per property */
    int *kv = malloc((size_t)n * sizeof *kv);
    bool *need = calloc((size_t)n, sizeof *need);
    if (!kv || !need) {
        free(kv), free(need);
        c->st = ld_error(c->ctx, LD_ERR_NOMEM, "json schema: out of memory");
        return -1;
    }
    int i = 0;
    for (const cJSON *p = props->child; p && !c->st; p = p->next, i++) {
        char w[300];
        snprintf(w, sizeof w, "%.200s.%.80s", where, p->string);
        int v = rule(c, p, w);
        for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
            if (cJSON_IsString(r) && !strcmp(r->valuestring, p->string)) need[i] = true;
        cJSON *name = cJSON_CreateString(p->string);
        char *quoted = name ? cJSON_PrintUnformatted(name) : NULL;
        cJSON_Delete(name);
        if (!quoted) {
            c->st = ld_error(c->ctx, LD_ERR_NOMEM, "json schema: out of memory");
            break;
        }
        kv[i] = open_rule(c);
        literal(c, quoted);
        free(quoted);
        put(c, " ws \":\" ws s-%d\n", v);
    }
    /* S_k: members k.. with none written yet; R_k: with one written (each starts with ",") */
    int base = c->next;
    c->next += 2 * (n + 1);
    for (int k = n; k >= 0 && !c->st; k--) {
        int S = base + 2 * k, R = base + 2 * k + 1;
        if (k == n) {
            put(c, "s-%d ::= \"\"\ns-%d ::= \"\"\n", S, R);
            continue;
        }
        if (need[k]) {
            put(c, "s-%d ::= s-%d s-%d\n", S, kv[k], R + 2);
            put(c, "s-%d ::= \",\" ws s-%d s-%d\n", R, kv[k], R + 2);
        } else {
            put(c, "s-%d ::= s-%d s-%d | s-%d\n", S, kv[k], R + 2, S + 2);
            put(c, "s-%d ::= \",\" ws s-%d s-%d | s-%d\n", R, kv[k], R + 2, R + 2);
        }
    }
    free(kv), free(need);
    int r = open_rule(c);
    put(c, "\"{\" ws s-%d \"}\" ws\n", base);
    return r;
}

static int64_t get_count(const cJSON *schema, const char *key, int64_t dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(schema, key);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e6 ? (int64_t)v->valuedouble : dflt;
}

static int array_rule(conv *c, const cJSON *schema, const char *where) {
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
    const cJSON *prefix = cJSON_GetObjectItemCaseSensitive(schema, "prefixItems");
    int64_t lo = get_count(schema, "minItems", 0), hi = get_count(schema, "maxItems", -1);
    if (hi >= 0 && hi < lo) return fail(c, where, "maxItems is below minItems"), -1;
    if (hi > 1000 || lo > 1000) return fail(c, where, "minItems/maxItems above 1000"), -1;
    char w[300];
    snprintf(w, sizeof w, "%.250s[]", where);
    if (cJSON_IsArray(prefix)) { /* a tuple: exactly these items */
        int n = 0, ids[64];
        for (const cJSON *p = prefix->child; p && n < 64 && !c->st; p = p->next) ids[n++] = rule(c, p, w);
        int r = open_rule(c);
        put(c, "\"[\" ws");
        for (int k = 0; k < n; k++) put(c, k ? " \",\" ws s-%d" : " s-%d", ids[k]);
        put(c, " \"]\" ws\n");
        return r;
    }
    int item = items && !cJSON_IsTrue(items) ? rule(c, items, w) : -1;
    char it[32];
    snprintf(it, sizeof it, item >= 0 ? "s-%d" : "value", item);
    int r = open_rule(c);
    if (hi == 0) {
        put(c, "\"[\" ws \"]\" ws\n");
        return r;
    }
    int64_t more_lo = lo > 1 ? lo - 1 : 0, more_hi = hi < 0 ? -1 : hi - 1;
    put(c, "\"[\" ws %s%s ( \",\" ws %s )", lo ? "" : "( ", it, it);
    if (more_hi < 0) put(c, "{%lld,}", (long long)more_lo);
    else put(c, "{%lld,%lld}", (long long)more_lo, (long long)more_hi);
    put(c, "%s \"]\" ws\n", lo ? "" : " )?");
    return r;
}

static int string_rule(conv *c, const cJSON *schema) {
    int64_t lo = get_count(schema, "minLength", 0), hi = get_count(schema, "maxLength", -1);
    int r = open_rule(c);
    if (!lo && hi < 0) {
        put(c, "string\n");
        return r;
    }
    if (hi >= 0 && hi < lo) hi = lo;
    if (hi >= 0) put(c, "\"\\\"\" char{%lld,%lld} \"\\\"\" ws\n", (long long)lo, (long long)hi);
    else put(c, "\"\\\"\" char{%lld,} \"\\\"\" ws\n", (long long)lo);
    return r;
}

/* The rule for one type name. */
static int type_rule(conv *c, const cJSON *schema, const char *type, const char *where) {
    if (!strcmp(type, "object")) return object_rule(c, schema, where);
    if (!strcmp(type, "array")) return array_rule(c, schema, where);
    if (!strcmp(type, "string")) return string_rule(c, schema);
    static const char *const simple[] = {"integer", "number", "boolean", "null"};
    for (size_t i = 0; i < sizeof simple / sizeof simple[0]; i++)
        if (!strcmp(type, simple[i])) {
            int r = open_rule(c);
            put(c, "%s\n", simple[i]);
            return r;
        }
    return fail(c, where, "an unknown type"), -1;
}

/* Alternatives: one rule per element of a list of schemas. */
static int alternatives(conv *c, const cJSON *list, const char *where) {
    int ids[64], n = 0;
    for (const cJSON *s = list->child; s && n < 64 && !c->st; s = s->next) ids[n++] = rule(c, s, where);
    if (!n) return fail(c, where, "an empty anyOf/oneOf"), -1;
    int r = open_rule(c);
    for (int k = 0; k < n; k++) put(c, k ? " | s-%d" : "s-%d", ids[k]);
    put(c, "\n");
    return r;
}

static int rule(conv *c, const cJSON *schema, const char *where) {
    if (c->st) return -1;
    if (++c->depth > 64) return fail(c, where, "nested deeper than 64"), -1;
    int r = -1;
    const cJSON *v;
    if (cJSON_IsTrue(schema) || (cJSON_IsObject(schema) && !schema->child)) {
        r = open_rule(c);
        put(c, "value\n");
    } else if (!cJSON_IsObject(schema)) {
        fail(c, where, "a schema must be an object or true");
    } else if ((v = cJSON_GetObjectItemCaseSensitive(schema, "$ref"))) {
        if (!cJSON_IsString(v)) fail(c, where, "$ref must be a string");
        for (int i = 0; i < c->n_refs && r < 0; i++)
            if (!strcmp(c->refs[i].ref, v->valuestring)) r = c->refs[i].rule;
        if (r < 0 && !c->st) {
            const char *ref = v->valuestring;
            const char *name = !strncmp(ref, "#/$defs/", 8) ? ref + 8 : !strncmp(ref, "#/definitions/", 14) ? ref + 14 : NULL;
            const cJSON *defs = name ? cJSON_GetObjectItemCaseSensitive(c->root, ref[2] == '$' ? "$defs" : "definitions") : NULL;
            const cJSON *target = defs ? cJSON_GetObjectItemCaseSensitive(defs, name) : NULL;
            if (!target || c->n_refs >= 256) fail(c, where, "$ref must point into #/$defs or #/definitions");
            else { /* a rule name first, so recursive schemas terminate */
                r = c->next++;
                c->refs[c->n_refs].ref = ref, c->refs[c->n_refs++].rule = r;
                int body = rule(c, target, ref);
                put(c, "s-%d ::= s-%d\n", r, body);
            }
        }
    } else if ((v = cJSON_GetObjectItemCaseSensitive(schema, "const"))) {
        r = open_rule(c);
        json_literal(c, v);
        put(c, "\n");
    } else if ((v = cJSON_GetObjectItemCaseSensitive(schema, "enum"))) {
        if (!cJSON_IsArray(v) || !v->child) fail(c, where, "enum must be a non-empty array");
        r = open_rule(c);
        for (const cJSON *e = v->child; e && !c->st; e = e->next) {
            if (e != v->child) put(c, " | ");
            json_literal(c, e);
        }
        put(c, "\n");
    } else if ((v = cJSON_GetObjectItemCaseSensitive(schema, "anyOf")) || (v = cJSON_GetObjectItemCaseSensitive(schema, "oneOf"))) {
        if (!cJSON_IsArray(v)) fail(c, where, "anyOf/oneOf must be an array");
        else r = alternatives(c, v, where);
    } else if ((v = cJSON_GetObjectItemCaseSensitive(schema, "allOf"))) {
        if (!cJSON_IsArray(v) || !v->child || v->child->next) fail(c, where, "allOf with more than one schema is not supported");
        else r = rule(c, v->child, where);
    } else {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(schema, "type");
        if (cJSON_IsString(type)) r = type_rule(c, schema, type->valuestring, where);
        else if (cJSON_IsArray(type)) {
            int ids[8], n = 0;
            for (const cJSON *t = type->child; t && n < 8 && !c->st; t = t->next)
                if (cJSON_IsString(t)) ids[n++] = type_rule(c, schema, t->valuestring, where);
            r = open_rule(c);
            for (int k = 0; k < n; k++) put(c, k ? " | s-%d" : "s-%d", ids[k]);
            put(c, n ? "\n" : "value\n");
        } else if (cJSON_GetObjectItemCaseSensitive(schema, "properties")) r = object_rule(c, schema, where);
        else if (cJSON_GetObjectItemCaseSensitive(schema, "items")) r = array_rule(c, schema, where);
        else {
            r = open_rule(c);
            put(c, "value\n");
        }
    }
    c->depth--;
    return c->st ? -1 : r;
}

ld_status ld_grammar_from_json_schema(ld_ctx *ctx, const char *schema, size_t len, char **gbnf) {
    *gbnf = NULL;
    conv c = {.ctx = ctx};
    cJSON *doc = NULL;
    if (schema) {
        ld_status st = ld_json_parse(ctx, "json schema", schema, len, &doc);
        if (st) return st;
        c.root = doc;
        int r = rule(&c, doc, "#");
        put(&c, "root ::= ws s-%d\n", r);
    } else {
        put(&c, "root ::= ws object\n");
    }
    put(&c, "%s", json_base);
    cJSON_Delete(doc);
    if (c.st) {
        free(c.out);
        return c.st;
    }
    *gbnf = c.out;
    return LD_OK;
}

/* cli/cmd_gguf.c — `liandan gguf write OUT [--from FILE]... [--set KEY=TYPE:VALUE]...`: builds
 * a GGUF file from the metadata and tensors of other GGUF files and the tensors of safetensors
 * files (or model directories), then applies metadata edits. Copying one GGUF file without
 * edits reproduces it byte for byte when it uses liandan's layout. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const struct {
    const char *name;
    ld_gguf_type type;
} set_types[] = {
    {"u8", LD_GGUF_UINT8},   {"i8", LD_GGUF_INT8},   {"u16", LD_GGUF_UINT16}, {"i16", LD_GGUF_INT16},
    {"u32", LD_GGUF_UINT32}, {"i32", LD_GGUF_INT32}, {"u64", LD_GGUF_UINT64}, {"i64", LD_GGUF_INT64},
    {"f32", LD_GGUF_FLOAT32}, {"f64", LD_GGUF_FLOAT64}, {"bool", LD_GGUF_BOOL}, {"str", LD_GGUF_STRING},
};

/* Parses one item of type t from s into 8 little-endian bytes; returns its size or 0. */
static size_t parse_item(ld_gguf_type t, const char *s, uint8_t out[8]) {
    char *end = NULL;
    errno = 0;
    memset(out, 0, 8);
    if (t == LD_GGUF_FLOAT32 || t == LD_GGUF_FLOAT64) {
        double d = strtod(s, &end);
        if (!*s || *end || errno) return 0;
        if (t == LD_GGUF_FLOAT32) {
            if (isfinite(d) && fabs(d) > FLT_MAX) return 0; /* would become inf */
            float f = (float)d;
            memcpy(out, &f, 4);
            return 4;
        }
        memcpy(out, &d, 8);
        return 8;
    }
    if (t == LD_GGUF_BOOL) {
        if (!strcmp(s, "true") || !strcmp(s, "1")) out[0] = 1;
        else if (strcmp(s, "false") && strcmp(s, "0")) return 0;
        return 1;
    }
    bool is_signed = t == LD_GGUF_INT8 || t == LD_GGUF_INT16 || t == LD_GGUF_INT32 || t == LD_GGUF_INT64;
    size_t size = t == LD_GGUF_UINT8 || t == LD_GGUF_INT8 ? 1 : t == LD_GGUF_UINT16 || t == LD_GGUF_INT16 ? 2 : t == LD_GGUF_UINT32 || t == LD_GGUF_INT32 ? 4 : 8;
    uint64_t u;
    if (is_signed) {
        long long v = strtoll(s, &end, 0);
        if (!*s || *end || errno) return 0;
        if (size < 8) {
            long long lim = 1ll << (8 * size - 1);
            if (v < -lim || v >= lim) return 0;
        }
        u = (uint64_t)v;
    } else {
        if (*s == '-') return 0;
        unsigned long long v = strtoull(s, &end, 0);
        if (!*s || *end || errno) return 0;
        if (size < 8 && v >> (8 * size)) return 0;
        u = v;
    }
    for (size_t i = 0; i < size; i++) out[i] = (uint8_t)(u >> (8 * i));
    return size;
}

/* --set KEY=TYPE:VALUE or KEY=TYPE[]:V1,V2,... */
static int apply_set(ld_gguf_writer *w, ld_ctx *ctx, const char *spec) {
    const char *eq = strchr(spec, '='), *colon = eq ? strchr(eq, ':') : NULL;
    if (!eq || !colon || eq == spec) {
        fprintf(stderr, "liandan gguf: --set '%s': expected KEY=TYPE:VALUE\n", spec);
        return 2;
    }
    char key[512], tname[16];
    size_t kl = (size_t)(eq - spec), tl = (size_t)(colon - eq - 1);
    if (kl >= sizeof key || tl >= sizeof tname) {
        fprintf(stderr, "liandan gguf: --set '%s': key or type too long\n", spec);
        return 2;
    }
    memcpy(key, spec, kl);
    key[kl] = 0;
    memcpy(tname, eq + 1, tl);
    tname[tl] = 0;
    bool array = tl > 2 && !strcmp(tname + tl - 2, "[]");
    if (array) tname[tl - 2] = 0;
    int ti = -1;
    for (size_t i = 0; i < sizeof set_types / sizeof set_types[0]; i++)
        if (!strcmp(set_types[i].name, tname)) ti = (int)i;
    if (ti < 0) {
        fprintf(stderr, "liandan gguf: --set '%s': unknown type '%s' (u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bool str, or TYPE[])\n", spec, tname);
        return 2;
    }
    ld_gguf_type t = set_types[ti].type;
    const char *val = colon + 1;
    ld_status s;
    if (!array) {
        if (t == LD_GGUF_STRING) s = ld_gguf_writer_set_str(w, key, val);
        else {
            uint8_t b[8];
            if (!parse_item(t, val, b)) {
                fprintf(stderr, "liandan gguf: --set '%s': '%s' is not a valid %s\n", spec, val, tname);
                return 2;
            }
            s = ld_gguf_writer_set_scalar(w, key, t, b);
        }
    } else {
        /* split on commas (an empty value is an empty array) */
        size_t n = *val ? 1 : 0;
        for (const char *p = val; *p; p++) n += *p == ',';
        char *copy = strdup(val);
        char **items = calloc(n + 1, sizeof *items);
        uint8_t *raw = calloc(n + 1, 8);
        if (!copy || !items || !raw) {
            fprintf(stderr, "liandan gguf: out of memory\n");
            free(copy), free(items), free(raw);
            return 1;
        }
        size_t k = 0, es = 0;
        for (char *tok = copy, *next; n && tok; tok = next) {
            next = strchr(tok, ',');
            if (next) *next++ = 0;
            items[k] = tok;
            if (t != LD_GGUF_STRING) {
                es = parse_item(t, tok, raw + 8 * k);
                if (!es) {
                    fprintf(stderr, "liandan gguf: --set '%s': item '%s' is not a valid %s\n", spec, tok, tname);
                    free(copy), free(items), free(raw);
                    return 2;
                }
                memmove(raw + es * k, raw + 8 * k, es);
            }
            k++;
        }
        if (t == LD_GGUF_STRING) s = ld_gguf_writer_set_strs(w, key, (const char *const *)items, k);
        else s = ld_gguf_writer_set_array(w, key, t, raw, k);
        free(copy), free(items), free(raw);
    }
    if (s) return ld_cli_fail(ctx, "--set");
    return 0;
}

static int32_t ggml_type_by_name(const char *name) {
    for (int32_t t = 0; t < 64; t++) {
        const char *n;
        if (ld_ggml_type_info(t, &n, NULL, NULL) && !strcmp(n, name)) return t;
    }
    return -1;
}

/* Adds the metadata and tensors of one source (GGUF, or safetensors / model directory); the
 * opened file goes to *g or *set (kept open until the output is written). */
static int add_source(ld_gguf_writer *w, ld_ctx *ctx, const char *src, ld_gguf **gout, ld_st_set **sout) {
    FILE *f = fopen(src, "rb");
    char m[4] = {0};
    bool gg = f && fread(m, 1, 4, f) == 4 && !memcmp(m, "GGUF", 4);
    if (f) fclose(f);
    int rc = 0;
    if (gg) {
        ld_gguf *g = NULL;
        if (ld_gguf_open(ctx, src, &g)) return ld_cli_fail(ctx, src);
        *gout = g;
        for (size_t k = 0; k < ld_gguf_kv_count(g) && !rc; k++)
            if (ld_gguf_writer_set_value(w, ld_gguf_kv_key(g, k), ld_gguf_kv_value(g, k))) rc = ld_cli_fail(ctx, src);
        for (size_t k = 0; k < ld_gguf_tensor_count(g) && !rc; k++) {
            const ld_tensor_info *t = ld_gguf_tensor_at(g, k);
            if (ld_gguf_writer_add_tensor(w, t->name, t->file_type, t->ndim, t->shape, t->data, t->nbytes))
                rc = ld_cli_fail(ctx, src);
        }
        return rc;
    }
    ld_st_set *set = NULL;
    if (ld_st_set_open(ctx, src, &set)) return ld_cli_fail(ctx, src);
    *sout = set;
    for (size_t k = 0; k < ld_st_set_count(set) && !rc; k++) {
        const ld_tensor_info *t = ld_st_set_at(set, k);
        int32_t gt = ggml_type_by_name(t->dtype_name);
        if (gt < 0 || t->ndim > LD_MAX_DIMS) {
            fprintf(stderr, "liandan gguf write: %s: tensor '%s': %s with %d dimensions cannot be stored in GGUF\n", src,
                    t->name, t->dtype_name, t->ndim);
            rc = 1;
        } else if (ld_gguf_writer_add_tensor(w, t->name, gt, t->ndim, t->shape, t->data, t->nbytes)) {
            rc = ld_cli_fail(ctx, src);
        }
    }
    return rc;
}

static int gguf_write(int argc, char **argv) {
    const char *out = NULL;
    ld_cli_list pos = {0}, from = {0}, sets = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("output", 'o', &out, "OUT.gguf", "the file to write (or give it as OUT)"),
        LD_CLI_LIST("from", 0, &from, "FILE",
                    "a GGUF, safetensors file or model directory to take metadata and tensors\n"
                    "from (repeatable; in order, later keys replace earlier ones)"),
        LD_CLI_LIST("set", 0, &sets, "KEY=TYPE:VALUE",
                    "set a metadata key after the sources (repeatable); TYPE: u8 i8 u16 i16\n"
                    "u32 i32 u64 i64 f32 f64 bool str; KEY=TYPE[]:A,B,C for an array\n"
                    "(str[] items cannot contain commas)"),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "gguf write", .args = "[OUT]", .opts = opts, .pos = &pos, .min_pos = 0, .max_pos = 1,
        .about = "Writes a GGUF file (atomically) from the metadata and tensors of GGUF files and the tensors of\n"
                 "safetensors files or model directories, then applies the --set edits. Copying one GGUF file\n"
                 "without edits reproduces it byte for byte when it uses liandan's layout."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    if (pos.n && out) rc = (fprintf(stderr, "liandan gguf write: give the output once (OUT or -o OUT)\n"), 2);
    if (!pos.n && !out) rc = (fprintf(stderr, "liandan gguf write: give the output file (-o OUT.gguf)\n"), 2);
    if (rc) return ld_cli_parse_free(&spec), rc;
    if (!out) out = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(1);
    ld_gguf_writer *w = NULL;
    ld_gguf **ggufs = calloc((size_t)from.n + 1, sizeof *ggufs);
    ld_st_set **st_sets = calloc((size_t)from.n + 1, sizeof *st_sets);
    if (!ggufs || !st_sets) rc = (fprintf(stderr, "liandan gguf write: out of memory\n"), 1);
    else if (ld_gguf_writer_new(ctx, &w)) rc = ld_cli_fail(ctx, "gguf write");
    for (int i = 0; i < from.n && !rc; i++) rc = add_source(w, ctx, from.v[i], &ggufs[i], &st_sets[i]);
    for (int i = 0; i < sets.n && !rc; i++) rc = apply_set(w, ctx, sets.v[i]);
    if (!rc && ld_gguf_writer_write(w, out)) rc = ld_cli_fail(ctx, out);
    ld_gguf_writer_free(w);
    for (int i = 0; i < from.n && ggufs && st_sets; i++) {
        ld_gguf_close(ggufs[i]);
        ld_st_set_close(st_sets[i]);
    }
    free(ggufs), free(st_sets);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

static int cmd_gguf(int argc, char **argv) {
    static const ld_cli_command write = {"write", "a GGUF file from GGUF/safetensors sources with metadata edits",
                                         gguf_write};
    static const ld_cli_command *const subs[] = {&write};
    return ld_cli_dispatch("gguf", "GGUF files.", subs, 1, argc, argv);
}

const ld_cli_command ld_cmd_gguf = {"gguf", "write GGUF files from GGUF/safetensors sources with metadata edits", cmd_gguf};

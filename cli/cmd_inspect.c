/* cli/cmd_inspect.c — `liandan inspect FILE [--json]`: prints a safetensors file (or a
 * sharded model directory / index) or a GGUF file: its metadata and its tensor table (name,
 * type, shape, offset, bytes). --json gives the same as JSON (64-bit integers as strings so
 * they survive JSON parsers), which the end-to-end oracle tests compare against
 * @huggingface/gguf. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static void json_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

/* One number or bool as JSON (64-bit integers as strings, so they survive JSON parsers). */
static void json_item(FILE *f, const ld_gguf_item *it) {
    switch (it->type) {
    case LD_GGUF_UINT8: case LD_GGUF_UINT16: case LD_GGUF_UINT32: fprintf(f, "%llu", (unsigned long long)it->u64); break;
    case LD_GGUF_INT8: case LD_GGUF_INT16: case LD_GGUF_INT32: fprintf(f, "%lld", (long long)it->i64); break;
    case LD_GGUF_UINT64: fprintf(f, "\"%llu\"", (unsigned long long)it->u64); break;
    case LD_GGUF_INT64: fprintf(f, "\"%lld\"", (long long)it->i64); break;
    case LD_GGUF_BOOL: fputs(it->u64 ? "true" : "false", f); break;
    case LD_GGUF_FLOAT32:
    case LD_GGUF_FLOAT64:
        if (!isfinite(it->f64)) fprintf(f, "\"%g\"", it->f64);
        else fprintf(f, it->type == LD_GGUF_FLOAT32 ? "%.9g" : "%.17g", it->f64);
        break;
    default: fputs("null", f);
    }
}

/* A value as JSON; `limit` caps array items printed (0 = all). */
static void json_value(FILE *f, const ld_gguf_value *v, size_t limit) {
    ld_gguf_item it;
    if (v->type == LD_GGUF_STRING) json_str(f, v->str.s, v->str.len);
    else if (v->type != LD_GGUF_ARRAY) ld_gguf_value_item(v, 0, &it) ? json_item(f, &it) : (void)fputs("null", f);
    else {
        size_t n = (size_t)v->count, shown = limit && n > limit ? limit : n;
        fputc('[', f);
        for (size_t i = 0; i < shown; i++) {
            if (i) fputs(", ", f);
            if (v->elem_type == LD_GGUF_STRING) json_str(f, v->strs[i].s, v->strs[i].len);
            else if (v->elem_type == LD_GGUF_ARRAY) json_value(f, &v->items[i], limit);
            else if (ld_gguf_value_item(v, i, &it)) json_item(f, &it);
            else fputs("null", f);
        }
        if (shown < n) fprintf(f, ", ... %zu more", n - shown);
        fputc(']', f);
    }
}

static void shape_str(const ld_tensor_info *t, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < t->ndim && o < cap; d++) o += (size_t)snprintf(buf + o, cap - o, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static void tensor_json(FILE *f, const ld_tensor_info *t, bool gguf, const char *file) {
    fputs("    {\"name\": ", f);
    json_str(f, t->name, strlen(t->name));
    fprintf(f, ", \"dtype\": \"%s\"", t->dtype_name);
    if (gguf) fprintf(f, ", \"type_id\": %d", t->file_type);
    fputs(", \"shape\": [", f);
    for (int d = 0; d < t->ndim; d++) fprintf(f, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    fputs("]", f);
    if (gguf) {
        fputs(", \"dims\": [", f);
        for (int d = 0; d < t->ndim; d++) fprintf(f, "%s\"%lld\"", d ? ", " : "", (long long)t->shape[t->ndim - 1 - d]);
        fputs("]", f);
    }
    fprintf(f, ", \"offset\": \"%llu\", \"nbytes\": \"%zu\"", (unsigned long long)t->offset, t->nbytes);
    if (file) {
        fputs(", \"file\": ", f);
        json_str(f, file, strlen(file));
    }
    fputs("}", f);
}

static int inspect_gguf(ld_ctx *ctx, const char *path, bool json) {
    ld_gguf *g = NULL;
    if (ld_gguf_open(ctx, path, &g)) return ld_cli_fail(ctx, "inspect");
    size_t nkv = ld_gguf_kv_count(g), nt = ld_gguf_tensor_count(g);
    if (json) {
        printf("{\n  \"format\": \"gguf\", \"version\": %u, \"alignment\": %u, \"data_offset\": \"%llu\",\n  \"metadata\": [\n",
               ld_gguf_version(g), ld_gguf_alignment(g), (unsigned long long)ld_gguf_data_offset(g));
        for (size_t i = 0; i < nkv; i++) {
            const ld_gguf_value *v = ld_gguf_kv_value(g, i);
            const char *k = ld_gguf_kv_key(g, i);
            fputs("    {\"key\": ", stdout);
            json_str(stdout, k, strlen(k));
            printf(", \"type\": %d", (int)v->type);
            if (v->type == LD_GGUF_ARRAY) printf(", \"elem_type\": %d", (int)v->elem_type);
            fputs(", \"value\": ", stdout);
            json_value(stdout, v, 0);
            printf("}%s\n", i + 1 < nkv ? "," : "");
        }
        printf("  ],\n  \"tensors\": [\n");
        for (size_t i = 0; i < nt; i++) {
            tensor_json(stdout, ld_gguf_tensor_at(g, i), true, NULL);
            printf("%s\n", i + 1 < nt ? "," : "");
        }
        printf("  ]\n}\n");
    } else {
        printf("%s: GGUF version %u, alignment %u, data at byte %llu\n", path, ld_gguf_version(g), ld_gguf_alignment(g),
               (unsigned long long)ld_gguf_data_offset(g));
        printf("metadata (%zu keys):\n", nkv);
        for (size_t i = 0; i < nkv; i++) {
            const ld_gguf_value *v = ld_gguf_kv_value(g, i);
            char type[48];
            if (v->type == LD_GGUF_ARRAY) snprintf(type, sizeof type, "%s[%llu]", ld_gguf_type_name(v->elem_type), (unsigned long long)v->count);
            else snprintf(type, sizeof type, "%s", ld_gguf_type_name(v->type));
            printf("  %-44s %-16s ", ld_gguf_kv_key(g, i), type);
            json_value(stdout, v, 8);
            putchar('\n');
        }
        printf("tensors (%zu):\n  %-44s %-8s %-24s %14s %14s\n", nt, "name", "type", "shape", "offset", "bytes");
        size_t total = 0;
        for (size_t i = 0; i < nt; i++) {
            const ld_tensor_info *t = ld_gguf_tensor_at(g, i);
            char sh[96];
            shape_str(t, sh, sizeof sh);
            printf("  %-44s %-8s %-24s %14llu %14zu\n", t->name, t->dtype_name, sh, (unsigned long long)t->offset, t->nbytes);
            total += t->nbytes;
        }
        printf("total tensor bytes: %zu\n", total);
    }
    ld_gguf_close(g);
    return 0;
}

static int inspect_safetensors(ld_ctx *ctx, const char *path, bool json) {
    ld_st_set *set = NULL;
    if (ld_st_set_open(ctx, path, &set)) return ld_cli_fail(ctx, "inspect");
    size_t nf = ld_st_set_file_count(set), n = ld_st_set_count(set);
    if (json) {
        printf("{\n  \"format\": \"safetensors\",\n  \"files\": [\n");
        for (size_t f = 0; f < nf; f++) {
            const ld_safetensors *st = ld_st_set_file(set, f);
            printf("    {\"metadata\": {");
            for (size_t i = 0; i < ld_safetensors_metadata_count(st); i++) {
                const char *k, *v;
                ld_safetensors_metadata_at(st, i, &k, &v);
                if (i) fputs(", ", stdout);
                json_str(stdout, k, strlen(k));
                fputs(": ", stdout);
                json_str(stdout, v, strlen(v));
            }
            printf("}, \"tensors\": [\n");
            size_t nt = ld_safetensors_count(st);
            for (size_t i = 0; i < nt; i++) {
                fputs("  ", stdout);
                tensor_json(stdout, ld_safetensors_at(st, i), false, NULL);
                printf("%s\n", i + 1 < nt ? "," : "");
            }
            printf("    ]}%s\n", f + 1 < nf ? "," : "");
        }
        printf("  ]\n}\n");
    } else {
        printf("%s: safetensors, %zu file%s, %zu tensors\n", path, nf, nf == 1 ? "" : "s", n);
        for (size_t f = 0; f < nf; f++) {
            const ld_safetensors *st = ld_st_set_file(set, f);
            for (size_t i = 0; i < ld_safetensors_metadata_count(st); i++) {
                const char *k, *v;
                ld_safetensors_metadata_at(st, i, &k, &v);
                printf("  metadata %s = %s\n", k, v);
            }
        }
        printf("  %-52s %-6s %-24s %14s %14s\n", "name", "dtype", "shape", "offset", "bytes");
        size_t total = 0;
        for (size_t i = 0; i < n; i++) {
            const ld_tensor_info *t = ld_st_set_at(set, i);
            char sh[96];
            shape_str(t, sh, sizeof sh);
            printf("  %-52s %-6s %-24s %14llu %14zu\n", t->name, t->dtype_name, sh, (unsigned long long)t->offset, t->nbytes);
            total += t->nbytes;
        }
        printf("total tensor bytes: %zu\n", total);
    }
    ld_st_set_close(set);
    return 0;
}

/* true when the file starts with "GGUF". */
static bool is_gguf(const char *path) {
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return false;
    FILE *f = fopen(path, "rb");
    char m[4] = {0};
    if (!f) return false;
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(m, "GGUF", 4);
}

static int cmd_inspect(int argc, char **argv) {
    bool json = false;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {LD_CLI_FLAG("json", 0, &json, "machine-readable output (64-bit integers as strings)"),
                               LD_CLI_END};
    const ld_cli_spec spec = {
        .cmd = "inspect", .args = "FILE", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Prints the metadata and tensor table (name, type, shape, offset, bytes) of a GGUF file,\n"
                 "a .safetensors file, a model.safetensors.index.json, or a model directory."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    ld_ctx *ctx = ld_cli_ctx(1);
    rc = is_gguf(pos.v[0]) ? inspect_gguf(ctx, pos.v[0], json) : inspect_safetensors(ctx, pos.v[0], json);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_inspect = {"inspect", "show the metadata and tensors of a GGUF or safetensors file", cmd_inspect};

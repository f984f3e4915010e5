/* data/corpus.c — corpus readers over a mmapped file (or bytes in memory): one document per
 * line of .txt (or per blank-line-separated paragraph), one column of .tsv, one string field
 * of .jsonl objects, one sequence of .fa/.fasta. Every document is checked for valid UTF-8
 * and normalised (normalize.c); errors name file:line. */
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "data/data_internal.h"
#include "liandan/io.h"

struct ld_corpus {
    ld_ctx *ctx;
    char *name;
    ld_mapping map; /* when opened from a file */
    const char *data;
    size_t size, pos;
    size_t line;    /* 1-based line number of the next line to read */
    ld_corpus_params p;
    char *field;    /* JSONL field (owned copy) */
    ld_normalizer *norm;
    char *scratch;  /* FASTA sequences, JSONL strings */
    size_t scratch_cap;
    int64_t docs;   /* documents returned */
    bool done;
};

ld_corpus_params ld_corpus_default_params(void) {
    return (ld_corpus_params){
        .format = LD_CORPUS_AUTO,
        .tsv_column = -1,
        .jsonl_field = "text",
        .nfkc = false,
        .to_simplified = false,
        .collapse_whitespace = false,
    };
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static ld_corpus_format format_from_name(const char *name) {
    static const struct { const char *ext; ld_corpus_format f; } table[] = {
        {".txt", LD_CORPUS_TXT},   {".tsv", LD_CORPUS_TSV},     {".jsonl", LD_CORPUS_JSONL},
        {".json", LD_CORPUS_JSONL}, {".fa", LD_CORPUS_FASTA},   {".fasta", LD_CORPUS_FASTA},
        {".faa", LD_CORPUS_FASTA},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (ends_with(name, table[i].ext)) return table[i].f;
    return LD_CORPUS_AUTO;
}

void ld_corpus_close(ld_corpus *c) {
    if (!c) return;
    ld_file_unmap(&c->map);
    ld_normalizer_free(c->norm);
    ld_free(c->ctx, c->scratch);
    ld_free(c->ctx, c->field);
    ld_free(c->ctx, c->name);
    ld_free(c->ctx, c);
}

static ld_status corpus_init(ld_ctx *ctx, const char *name, const ld_corpus_params *p, ld_corpus **out) {
    ld_corpus *c = ld_calloc(ctx, 1, sizeof *c);
    if (!c) return LD_ERR_NOMEM;
    c->ctx = ctx;
    c->p = p ? *p : ld_corpus_default_params();
    c->line = 1;
    c->name = ld_strdup(ctx, name);
    c->field = ld_strdup(ctx, c->p.jsonl_field ? c->p.jsonl_field : "text");
    if (!c->name || !c->field) {
        ld_corpus_close(c);
        return LD_ERR_NOMEM;
    }
    c->p.jsonl_field = c->field;
    if (c->p.format == LD_CORPUS_AUTO) {
        c->p.format = format_from_name(name);
        if (c->p.format == LD_CORPUS_AUTO) {
            ld_corpus_close(c);
            return ld_error(ctx, LD_ERR_INVALID_ARG,
                            "%s: cannot tell the corpus format from the name (use .txt .tsv .jsonl .fa/.fasta or give "
                            "the format)",
                            name);
        }
    }
    if ((int)c->p.format < LD_CORPUS_TXT || (int)c->p.format > LD_CORPUS_FASTA) {
        ld_corpus_close(c);
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: unknown corpus format %d", name, (int)c->p.format);
    }
    if (c->p.tsv_column < -1) {
        ld_corpus_close(c);
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: TSV column %d (0-based, or -1 for the last)", name,
                        c->p.tsv_column);
    }
    ld_status st = ld_normalizer_new(ctx, &c->p, &c->norm);
    if (st != LD_OK) {
        ld_corpus_close(c);
        return st;
    }
    *out = c;
    return LD_OK;
}

ld_status ld_corpus_open_memory(ld_ctx *ctx, const char *name, const char *data, size_t len,
                                const ld_corpus_params *p, ld_corpus **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_corpus_open_memory: NULL out");
    *out = NULL;
    if (!name || (!data && len)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_corpus_open_memory: NULL argument");
    if (len == 0) return ld_error(ctx, LD_ERR_FORMAT, "%s: empty file (no documents)", name);
    ld_corpus *c;
    ld_status st = corpus_init(ctx, name, p, &c);
    if (st != LD_OK) return st;
    c->data = data;
    c->size = len;
    *out = c;
    return LD_OK;
}

ld_status ld_corpus_open(ld_ctx *ctx, const char *path, const ld_corpus_params *p, ld_corpus **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_corpus_open: NULL out");
    *out = NULL;
    if (!path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_corpus_open: NULL path");
    ld_corpus *c;
    ld_status st = corpus_init(ctx, path, p, &c);
    if (st != LD_OK) return st;
    st = ld_file_map(ctx, path, &c->map);
    if (st != LD_OK) {
        ld_corpus_close(c);
        return st;
    }
    if (c->map.size == 0) {
        ld_corpus_close(c);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: empty file (no documents)", path);
    }
    c->data = (const char *)c->map.data;
    c->size = c->map.size;
    *out = c;
    return LD_OK;
}

size_t ld_corpus_offset(const ld_corpus *c) {
    return c->pos;
}
size_t ld_corpus_size(const ld_corpus *c) {
    return c->size;
}

/* The next raw line (without '\n' and a trailing '\r'); false at the end. */
static bool next_line(ld_corpus *c, const char **line, size_t *len, size_t *lineno) {
    if (c->pos >= c->size) return false;
    const char *s = c->data + c->pos;
    size_t avail = c->size - c->pos;
    const char *nl = memchr(s, '\n', avail);
    size_t n = nl ? (size_t)(nl - s) : avail;
    c->pos += nl ? n + 1 : n;
    *lineno = c->line++;
    if (n && s[n - 1] == '\r') n--;
    *line = s;
    *len = n;
    return true;
}

static ld_status check_utf8(ld_corpus *c, size_t lineno, const char *s, size_t len, const char *line_start) {
    size_t bad = ld_utf8_invalid_at(s, len);
    if (bad == len) return LD_OK;
    size_t col = (size_t)(s + bad - line_start) + 1;
    return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: byte %zu of the line: invalid UTF-8 (0x%02x)", c->name, lineno,
                    col, (unsigned)(uint8_t)s[bad]);
}

/* Grows the scratch buffer to `need` bytes, keeping its first `keep` bytes. */
static bool scratch_reserve(ld_corpus *c, size_t need, size_t keep) {
    if (need <= c->scratch_cap) return true;
    size_t cap = c->scratch_cap ? c->scratch_cap : 4096;
    while (cap < need)
        if (ld_mul_size(cap, 2, &cap)) return false;
    char *p = ld_alloc(c->ctx, cap);
    if (!p) return false;
    if (keep) memcpy(p, c->scratch, keep);
    ld_free(c->ctx, c->scratch);
    c->scratch = p;
    c->scratch_cap = cap;
    return true;
}

/* Raw (unnormalised, UTF-8-checked) documents per format; LD_ERR_NOT_FOUND at the end.
 * *lineno_out is the first line of the document. */
static ld_status raw_txt(ld_corpus *c, const char **doc, size_t *len, size_t *lineno_out) {
    const char *line;
    size_t n, ln;
    if (!c->p.txt_paragraphs) {
        while (next_line(c, &line, &n, &ln)) {
            size_t k = 0;
            while (k < n && (line[k] == ' ' || line[k] == '\t')) k++;
            if (k == n) continue; /* blank lines are not documents */
            ld_status st = check_utf8(c, ln, line, n, line);
            if (st != LD_OK) return st;
            *doc = line, *len = n, *lineno_out = ln;
            return LD_OK;
        }
        return LD_ERR_NOT_FOUND;
    }
    /* paragraphs: consecutive non-blank lines joined with '\n' (the bytes are contiguous in
     * the file apart from '\r's, so they are copied to drop those) */
    size_t used = 0, first = 0;
    while (next_line(c, &line, &n, &ln)) {
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == n) {
            if (used) break;
            continue;
        }
        ld_status st = check_utf8(c, ln, line, n, line);
        if (st != LD_OK) return st;
        if (!used) first = ln;
        size_t need;
        if (ld_add_size(used, n + 1, &need) || !scratch_reserve(c, need, used))
            return ld_error(c->ctx, LD_ERR_NOMEM, "%s:%zu: out of memory", c->name, ln);
        if (used) c->scratch[used++] = '\n';
        memcpy(c->scratch + used, line, n);
        used += n;
    }
    if (!used) return LD_ERR_NOT_FOUND;
    *doc = c->scratch, *len = used, *lineno_out = first;
    return LD_OK;
}

static ld_status raw_tsv(ld_corpus *c, const char **doc, size_t *len, size_t *lineno_out) {
    const char *line;
    size_t n, ln;
    while (next_line(c, &line, &n, &ln)) {
        if (n == 0) continue;
        /* find the column */
        int col = 0, want = c->p.tsv_column;
        const char *start = line, *end = line + n;
        const char *cell = NULL, *cell_end = NULL;
        for (const char *q = line;; q++) {
            if (q == end || *q == '\t') {
                if (col == want) {
                    cell = start, cell_end = q;
                    break;
                }
                if (want == -1 && q == end) {
                    cell = start, cell_end = q;
                    break;
                }
                if (q == end) break;
                col++;
                start = q + 1;
            }
        }
        if (!cell)
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: the row has %d column(s); column %d (0-based) is missing",
                            c->name, ln, col + 1, want);
        ld_status st = check_utf8(c, ln, cell, (size_t)(cell_end - cell), line);
        if (st != LD_OK) return st;
        if (cell_end == cell) continue;
        *doc = cell, *len = (size_t)(cell_end - cell), *lineno_out = ln;
        return LD_OK;
    }
    return LD_ERR_NOT_FOUND;
}

static ld_status raw_jsonl(ld_corpus *c, const char **doc, size_t *len, size_t *lineno_out) {
    const char *line;
    size_t n, ln;
    while (next_line(c, &line, &n, &ln)) {
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == n) continue;
        ld_status st = check_utf8(c, ln, line, n, line);
        if (st != LD_OK) return st;
        const char *parse_end = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(line, n, &parse_end, false);
        if (!root) {
            size_t at = parse_end && parse_end >= line && parse_end <= line + n ? (size_t)(parse_end - line) + 1 : 1;
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: byte %zu of the line: invalid JSON", c->name, ln, at);
        }
        size_t used = parse_end && parse_end >= line && parse_end <= line + n ? (size_t)(parse_end - line) : n;
        while (used < n && (line[used] == ' ' || line[used] == '\t')) used++;
        if (used < n) {
            cJSON_Delete(root);
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: byte %zu of the line: text after the JSON value", c->name, ln,
                            used + 1);
        }
        if (!cJSON_IsObject(root)) {
            cJSON_Delete(root);
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: not a JSON object", c->name, ln);
        }
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(root, c->field);
        if (!f || !cJSON_IsString(f) || !f->valuestring) {
            cJSON_Delete(root);
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: no string field \"%s\"", c->name, ln, c->field);
        }
        size_t sl = strlen(f->valuestring); /* an embedded \u0000 ends the text */
        if (!scratch_reserve(c, sl + 1, 0)) {
            cJSON_Delete(root);
            return ld_error(c->ctx, LD_ERR_NOMEM, "%s:%zu: out of memory", c->name, ln);
        }
        memcpy(c->scratch, f->valuestring, sl);
        cJSON_Delete(root);
        size_t bad = ld_utf8_invalid_at(c->scratch, sl);
        if (bad != sl)
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: field \"%s\": byte %zu: invalid UTF-8 (an unpaired \\u surrogate?)",
                            c->name, ln, c->field, bad);
        if (sl == 0) continue;
        *doc = c->scratch, *len = sl, *lineno_out = ln;
        return LD_OK;
    }
    return LD_ERR_NOT_FOUND;
}

/* A protein sequence line into out (see ld_corpus_params.protein): letters upper-cased, J to X,
 * a stop '*' only as the record's last residue. *star_line is the line of a '*' seen so far
 * (0 = none). Returns the residues written, or an error. */
static ld_status protein_line(ld_corpus *c, const char *line, size_t n, size_t ln, char *out, size_t *used,
                              size_t *star_line, size_t *star_col) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)line[i];
        if (ch == ' ' || ch == '\t' || ch == '\r') continue;
        if (ch == '*') {
            if (!*star_line) *star_line = ln, *star_col = i + 1;
            continue;
        }
        bool letter = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
        if (letter && *star_line)
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu:%zu: a stop '*' inside the sequence (more residues follow it)",
                            c->name, *star_line, *star_col);
        if (!letter) {
            const char *why = ch == '-' || ch == '.' ? " (an alignment gap: give unaligned sequences)" : "";
            if (ch >= 0x20 && ch < 0x7f)
                return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu:%zu: '%c' is not an amino-acid letter%s", c->name, ln, i + 1,
                                ch, why);
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu:%zu: byte 0x%02x is not an amino-acid letter", c->name, ln,
                            i + 1, ch);
        }
        if (ch >= 'a') ch = (unsigned char)(ch - 'a' + 'A');
        out[(*used)++] = ch == 'J' ? 'X' : (char)ch;
    }
    return LD_OK;
}

/* FASTA: a '>' header line, then sequence lines joined without newlines (whitespace
 * dropped). Text before the first header is an error. */
static ld_status raw_fasta(ld_corpus *c, const char **doc, size_t *len, size_t *lineno_out) {
    const char *line;
    size_t n, ln;
    size_t used = 0, header_line = 0, star_line = 0, star_col = 0;
    bool in_record = false;
    while (c->pos < c->size) {
        /* peek: a header ends the current record */
        if (in_record && c->data[c->pos] == '>') break;
        if (!next_line(c, &line, &n, &ln)) break;
        if (n && line[0] == '>') {
            ld_status st = check_utf8(c, ln, line, n, line);
            if (st != LD_OK) return st;
            in_record = true;
            header_line = ln;
            continue;
        }
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == n) continue;
        if (!in_record)
            return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: sequence data before the first '>' header line", c->name, ln);
        ld_status st = check_utf8(c, ln, line, n, line);
        if (st != LD_OK) return st;
        size_t need;
        if (ld_add_size(used, n, &need) || !scratch_reserve(c, need, used))
            return ld_error(c->ctx, LD_ERR_NOMEM, "%s:%zu: out of memory", c->name, ln);
        if (c->p.protein) {
            if ((st = protein_line(c, line, n, ln, c->scratch, &used, &star_line, &star_col))) return st;
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (line[i] != ' ' && line[i] != '\t') c->scratch[used++] = line[i];
    }
    if (!in_record) return LD_ERR_NOT_FOUND;
    if (!used) return ld_error(c->ctx, LD_ERR_FORMAT, "%s:%zu: FASTA record without a sequence", c->name, header_line);
    *doc = c->scratch, *len = used, *lineno_out = header_line;
    return LD_OK;
}

ld_status ld_corpus_next(ld_corpus *c, const char **doc, size_t *len) {
    if (!c || !doc || !len) return LD_ERR_INVALID_ARG;
    if (c->done) return LD_ERR_NOT_FOUND;
    for (;;) {
        const char *raw = NULL;
        size_t raw_len = 0, ln = 0;
        ld_status st;
        switch (c->p.format) {
        case LD_CORPUS_TXT: st = raw_txt(c, &raw, &raw_len, &ln); break;
        case LD_CORPUS_TSV: st = raw_tsv(c, &raw, &raw_len, &ln); break;
        case LD_CORPUS_JSONL: st = raw_jsonl(c, &raw, &raw_len, &ln); break;
        case LD_CORPUS_FASTA: st = raw_fasta(c, &raw, &raw_len, &ln); break;
        default: return ld_error(c->ctx, LD_ERR_INTERNAL, "%s: bad corpus format", c->name);
        }
        if (st == LD_ERR_NOT_FOUND) {
            c->done = true;
            if (c->docs == 0) return ld_error(c->ctx, LD_ERR_FORMAT, "%s: no documents in the file", c->name);
            return LD_ERR_NOT_FOUND;
        }
        if (st != LD_OK) {
            c->done = true; /* errors are final: the reader does not resynchronise */
            return st;
        }
        st = ld_normalizer_apply(c->norm, c->name, ln, raw, raw_len, doc, len);
        if (st != LD_OK) {
            c->done = true;
            return st;
        }
        if (*len == 0) continue; /* normalised away */
        c->docs++;
        return LD_OK;
    }
}

static ld_status text_source_next(void *user, const char **doc, size_t *len) {
    return ld_corpus_next(user, doc, len);
}

ld_text_source ld_corpus_text_source(ld_corpus *c) {
    return (ld_text_source){.next = text_source_next, .user = c};
}

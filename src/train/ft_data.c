/* train/ft_data.c — fine-tuning examples (text, chat, classification) read from JSONL, TSV
 * or text files, tokenized with a per-token "predicted" mark, and batch sources over them:
 * packed rows of T+1 tokens or one padded example per row, a seeded shuffle per epoch, a
 * cursor {epoch, pos, off} for exact resume. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/io.h"
#include "train/ft_data.h"

ld_ft_data_config ld_ft_data_default_config(void) {
    ld_ft_data_config c;
    memset(&c, 0, sizeof c);
    c.format = LD_FT_TEXT;
    snprintf(c.separator, sizeof c.separator, "\n");
    snprintf(c.label_field, sizeof c.label_field, "label");
    snprintf(c.messages_field, sizeof c.messages_field, "messages");
    return c;
}

static const char *const format_names[] = {[LD_FT_TEXT] = "text", [LD_FT_CHAT] = "chat",
                                           [LD_FT_CLASSIFY] = "classification"};

bool ld_ft_format_from_name(const char *name, ld_ft_format *out) {
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, format_names[i])) return *out = (ld_ft_format)i, true;
    return false;
}

void ld_ft_labels_clear(ld_ft_labels *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    memset(l, 0, sizeof *l);
}

static int cmp_label(const void *a, const void *b) {
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    char *ex, *ey;
    double dx = strtod(x, &ex), dy = strtod(y, &ey);
    if (*x && *y && !*ex && !*ey) return (dx > dy) - (dx < dy);
    return strcmp(x, y);
}

void ld_ft_labels_sort(ld_ft_labels *l) {
    if (!l->fixed) qsort(l->names, (size_t)l->n, sizeof l->names[0], cmp_label);
}

/* ---- the example store ------------------------------------------------------------------ */

typedef struct ft_example {
    int64_t off, n, line;
    int32_t label;
} ft_example;

struct ld_ft_data {
    ld_ctx *ctx;
    int32_t *ids;
    uint8_t *counted;
    int64_t n_tok, cap_tok;
    ft_example *ex;
    int64_t n_ex, cap_ex;
    int64_t truncated;
    int32_t eos;
};

void ld_ft_data_free(ld_ft_data *d) {
    if (!d) return;
    free(d->ids);
    free(d->counted);
    free(d->ex);
    ld_free(d->ctx, d);
}

int64_t ld_ft_data_count(const ld_ft_data *d) {
    return d ? d->n_ex : 0;
}
int64_t ld_ft_data_tokens(const ld_ft_data *d) {
    return d ? d->n_tok : 0;
}
int64_t ld_ft_data_truncated(const ld_ft_data *d) {
    return d ? d->truncated : 0;
}

void ld_ft_data_example(const ld_ft_data *d, int64_t i, const int32_t **ids, const uint8_t **counted, int64_t *n,
                        int32_t *label, int64_t *line) {
    const ft_example *e = &d->ex[i];
    if (ids) *ids = d->ids + e->off;
    if (counted) *counted = d->counted + e->off;
    if (n) *n = e->n;
    if (label) *label = e->label;
    if (line) *line = e->line;
}

static ld_status grow_tokens(ld_ft_data *d, int64_t more) {
    if (d->n_tok + more <= d->cap_tok) return LD_OK;
    int64_t cap = d->cap_tok ? d->cap_tok : 4096;
    while (cap < d->n_tok + more) cap *= 2;
    int32_t *ids = realloc(d->ids, (size_t)cap * sizeof *ids);
    if (ids) d->ids = ids;
    uint8_t *c = ids ? realloc(d->counted, (size_t)cap) : NULL;
    if (!ids || !c) return ld_error(d->ctx, LD_ERR_NOMEM, "out of memory for %lld fine-tuning tokens", (long long)cap);
    d->counted = c, d->cap_tok = cap;
    return LD_OK;
}

/* Appends the tokens of text[0..len) (specials as text unless `specials`), each marked
 * counted or not. */
static ld_status append_text(ld_ft_data *d, const ld_tokenizer *tok, const char *text, size_t len, bool specials,
                             bool counted) {
    size_t need = 0, cap = len + 8;
    unsigned flags = specials ? 0 : LD_ENCODE_SPECIAL_AS_TEXT;
    ld_status st;
    for (int tries = 0; tries < 2; tries++) {
        if ((st = grow_tokens(d, (int64_t)cap))) return st;
        st = ld_tokenizer_encode(tok, text, len, flags, d->ids + d->n_tok, cap, &need);
        if (st != LD_ERR_LIMIT) break;
        ld_ctx_clear_error(d->ctx);
        cap = need;
    }
    if (st) return st;
    memset(d->counted + d->n_tok, counted, need);
    d->n_tok += (int64_t)need;
    return LD_OK;
}

static ld_status append_token(ld_ft_data *d, int32_t id, bool counted) {
    ld_status st = grow_tokens(d, 1);
    if (st) return st;
    d->ids[d->n_tok] = id, d->counted[d->n_tok++] = counted;
    return LD_OK;
}

/* ---- one line of input ---------------------------------------------------------------------- */

typedef struct reader {
    ld_ctx *ctx;
    const ld_ft_data_config *c;
    const ld_tokenizer *tok;
    const char *path;
    int64_t line;
    bool tsv, txt;
    int col_text[LD_FT_MAX_FIELDS], col_label, n_cols; /* TSV header columns */
    ld_ft_labels *labels;
    ld_ft_data *d;
} reader;

static const char *text_field(const reader *r, int i) {
    return r->c->n_text_fields ? r->c->text_fields[i] : "text";
}
static int n_text_fields(const reader *r) {
    return r->c->n_text_fields ? r->c->n_text_fields : 1;
}

static ld_status label_id(reader *r, const char *name, int32_t *out) {
    ld_ft_labels *l = r->labels;
    for (int i = 0; i < l->n; i++)
        if (!strcmp(l->names[i], name)) return *out = i, LD_OK;
    if (l->fixed || l->n == LD_ADAPTER_MAX_LABELS) {
        char known[256] = "";
        for (int i = 0; i < l->n && strlen(known) < 200; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s'%s'", i ? ", " : "", l->names[i]);
        return ld_error(r->ctx, LD_ERR_FORMAT, "%s:%lld: unknown label '%.60s' (%s: %s)", r->path, (long long)r->line,
                        name, l->fixed ? "the labels are" : "more than 256 labels; seen", known);
    }
    if (!(l->names[l->n] = strdup(name))) return ld_error(r->ctx, LD_ERR_NOMEM, "out of memory");
    *out = l->n++;
    return LD_OK;
}

/* The role/content turns of a chat, rendered ChatML-style; only assistant text counts. */
static ld_status render_chat(reader *r, const cJSON *msgs) {
    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    ld_ft_data *d = r->d;
    bool any_assistant = false;
    int i = 0;
    const cJSON *m;
    ld_status st = LD_OK;
    cJSON_ArrayForEach(m, msgs) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content))
            return ld_error(r->ctx, LD_ERR_FORMAT, "%s:%lld: %s[%d] needs string \"role\" and \"content\"", r->path,
                            (long long)r->line, r->c->messages_field, i);
        bool known = false;
        for (int k = 0; k < 4; k++) known |= !strcmp(role->valuestring, roles[k]);
        if (!known)
            return ld_error(r->ctx, LD_ERR_FORMAT, "%s:%lld: %s[%d]: unknown role '%.40s' (system, user, assistant, tool)",
                            r->path, (long long)r->line, r->c->messages_field, i, role->valuestring);
        bool asst = !strcmp(role->valuestring, "assistant");
        any_assistant |= asst;
        char head[64];
        snprintf(head, sizeof head, "<|im_start|>%s\n", role->valuestring);
        if ((st = append_text(d, r->tok, head, strlen(head), true, false)) ||
            (st = append_text(d, r->tok, content->valuestring, strlen(content->valuestring), false, asst)) ||
            (st = append_text(d, r->tok, "<|im_end|>", 10, true, asst)) || (st = append_text(d, r->tok, "\n", 1, false, false)))
            return st;
        i++;
    }
    if (!i) return ld_error(r->ctx, LD_ERR_FORMAT, "%s:%lld: \"%s\" is empty", r->path, (long long)r->line, r->c->messages_field);
    if (!any_assistant)
        return ld_error(r->ctx, LD_ERR_FORMAT, "%s:%lld: the chat has no assistant turn to learn from", r->path,
                        (long long)r->line);
    return LD_OK;
}

/* A TSV row's columns (tabs replaced by NULs in a copy). */
static int split_tsv(char *s, char **cols, int max) {
    int n = 0;
    cols[n++] = s;
    for (char *p = s; *p && n < max; p++)
        if (*p == '\t') *p = 0, cols[n++] = p + 1;
    return n;
}

static ld_status tsv_header(reader *r, char *line) {
    char *cols[64];
    int n = split_tsv(line, cols, 64);
    r->n_cols = n;
    for (int f = 0; f < n_text_fields(r); f++) {
        r->col_text[f] = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(cols[i], text_field(r, f))) r->col_text[f] = i;
        if (r->col_text[f] < 0)
            return ld_error(r->ctx, LD_ERR_FORMAT, "%s:1: no column '%s' in the header (TSV files name their columns)",
                            r->path, text_field(r, f));
    }
    r->col_label = -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(cols[i], r->c->label_field)) r->col_label = i;
    if (r->c->format == LD_FT_CLASSIFY && r->col_label < 0)
        return ld_error(r->ctx, LD_ERR_FORMAT, "%s:1: no label column '%s' in the header", r->path, r->c->label_field);
    return LD_OK;
}

/* Adds the example on one line (line is a NUL-terminated copy the reader may modify). */
static ld_status read_line(reader *r, char *line, int64_t max_len) {
    ld_ft_data *d = r->d;
    ld_ctx *ctx = r->ctx;
    const ld_ft_data_config *c = r->c;
    int64_t start = d->n_tok;
    int32_t label = -100;
    ld_status st = LD_OK;
    if (r->txt || (r->tsv && c->format == LD_FT_TEXT)) { /* a document per line (TSV: its last column) */
        char *text = line;
        if (r->tsv && strrchr(line, '\t')) text = strrchr(line, '\t') + 1;
        st = append_text(d, r->tok, text, strlen(text), false, true);
    } else if (r->tsv) {
        char *cols[64];
        int n = split_tsv(line, cols, 64);
        if (n != r->n_cols)
            return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: %d columns, the header has %d", r->path, (long long)r->line, n,
                            r->n_cols);
        for (int f = 0; f < n_text_fields(r) && !st; f++) {
            if (f) st = append_text(d, r->tok, c->separator, strlen(c->separator), false, false);
            if (!st) st = append_text(d, r->tok, cols[r->col_text[f]], strlen(cols[r->col_text[f]]), false, false);
        }
        if (!st && c->format == LD_FT_CLASSIFY) st = label_id(r, cols[r->col_label], &label);
    } else {
        cJSON *o = cJSON_Parse(line);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: not a JSON object", r->path, (long long)r->line);
        }
        if (c->format == LD_FT_CHAT) {
            const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, c->messages_field);
            st = cJSON_IsArray(msgs) ? render_chat(r, msgs)
                                     : ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: no \"%s\" array", r->path,
                                                (long long)r->line, c->messages_field);
        }
        for (int f = 0; c->format != LD_FT_CHAT && f < n_text_fields(r) && !st; f++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, text_field(r, f));
            if (!cJSON_IsString(v)) {
                st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: no string field \"%s\"", r->path, (long long)r->line,
                              text_field(r, f));
                break;
            }
            if (f) st = append_text(d, r->tok, c->separator, strlen(c->separator), false, false);
            if (!st) st = append_text(d, r->tok, v->valuestring, strlen(v->valuestring), false, c->format == LD_FT_TEXT);
        }
        if (!st && c->format == LD_FT_CLASSIFY) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, c->label_field);
            char num[64];
            if (cJSON_IsString(v)) st = label_id(r, v->valuestring, &label);
            else if (cJSON_IsNumber(v)) snprintf(num, sizeof num, "%.17g", v->valuedouble), st = label_id(r, num, &label);
            else st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: no label field \"%s\" (a string or a number)", r->path,
                               (long long)r->line, c->label_field);
        }
        cJSON_Delete(o);
    }
    if (!st && c->format != LD_FT_CHAT && d->eos >= 0) st = append_token(d, d->eos, c->format == LD_FT_TEXT);
    if (st) return st;
    int64_t n = d->n_tok - start;
    if (n == 0 || (c->format == LD_FT_TEXT && n == 1 && d->eos >= 0)) {
        d->n_tok = start; /* an empty document */
        return LD_OK;
    }
    if (max_len > 0 && n > max_len) {
        if (c->format == LD_FT_CLASSIFY && d->eos >= 0) d->ids[start + max_len - 1] = d->eos;
        n = max_len, d->n_tok = start + n, d->truncated++;
    }
    if (d->n_ex == d->cap_ex) {
        int64_t cap = d->cap_ex ? 2 * d->cap_ex : 256;
        ft_example *ex = realloc(d->ex, (size_t)cap * sizeof *ex);
        if (!ex) return ld_error(ctx, LD_ERR_NOMEM, "out of memory for fine-tuning examples");
        d->ex = ex, d->cap_ex = cap;
    }
    d->ex[d->n_ex++] = (ft_example){.off = start, .n = n, .line = r->line, .label = label};
    return LD_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

ld_status ld_ft_data_load_memory(ld_ctx *ctx, const ld_tokenizer *tok, const ld_ft_data_config *c, const char *path,
                                 const char *data, size_t size, ld_ft_labels *labels, int64_t max_len, ld_ft_data **out) {
    if (!tok || !c || !path || !out || (!data && size) || (c->format == LD_FT_CLASSIFY && !labels))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_ft_data_load: NULL argument");
    *out = NULL;
    reader r = {.ctx = ctx, .c = c, .tok = tok, .path = path, .labels = labels};
    r.tsv = ends_with(path, ".tsv");
    r.txt = ends_with(path, ".txt");
    if (r.txt && c->format != LD_FT_TEXT)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: %s data comes in .jsonl or .tsv files", path,
                        format_names[c->format]);
    if (r.tsv && c->format == LD_FT_CHAT)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: chat data comes in .jsonl files (\"%s\": [{role, content}, ...])", path,
                        c->messages_field);
    ld_ft_data *d = ld_calloc(ctx, 1, sizeof *d);
    if (!d) return ld_ctx_status(ctx);
    d->ctx = ctx;
    d->eos = ld_tokenizer_eos_id(tok);
    r.d = d;
    const char *p = data, *end = data + size;
    char *line = NULL;
    size_t line_cap = 0;
    bool header = r.tsv && c->format != LD_FT_TEXT;
    ld_status st = LD_OK;
    while (!st && p < end && (c->max_examples <= 0 || d->n_ex < c->max_examples)) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
        r.line++;
        if (len && p[len - 1] == '\r') len--;
        if (len + 1 > line_cap) {
            char *nlb = realloc(line, len + 1);
            if (!nlb) {
                st = ld_error(ctx, LD_ERR_NOMEM, "out of memory");
                break;
            }
            line = nlb, line_cap = len + 1;
        }
        memcpy(line, p, len);
        line[len] = 0;
        p = nl ? nl + 1 : end;
        if (memchr(line, 0, len)) st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: a NUL byte in the text", path, (long long)r.line);
        else if (header) st = tsv_header(&r, line), header = false;
        else if (len) st = read_line(&r, line, max_len);
    }
    free(line);
    if (!st && d->n_ex == 0) st = ld_error(ctx, LD_ERR_FORMAT, "%s: no examples", path);
    if (st) {
        ld_ft_data_free(d);
        return st;
    }
    *out = d;
    return LD_OK;
}

ld_status ld_ft_data_load(ld_ctx *ctx, const ld_tokenizer *tok, const ld_ft_data_config *c, const char *path,
                          ld_ft_labels *labels, int64_t max_len, ld_ft_data **out) {
    if (!path || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_ft_data_load: NULL argument");
    *out = NULL;
    ld_mapping map;
    ld_status st = ld_file_map(ctx, path, &map);
    if (st) return st;
    st = ld_ft_data_load_memory(ctx, tok, c, path, (const char *)map.data, map.size, labels, max_len, out);
    ld_file_unmap(&map);
    return st;
}

static uint64_t example_hash(const ld_ft_data *d, int64_t i) {
    uint64_t h = 1469598103934665603ull;
    const ft_example *e = &d->ex[i];
    for (int64_t j = 0; j < e->n; j++) h = (h ^ (uint32_t)d->ids[e->off + j]) * 1099511628211ull;
    h ^= (uint64_t)(e->label + 1000);
    h ^= h >> 29, h *= 0xbf58476d1ce4e5b9ull, h ^= h >> 32;
    return h;
}

ld_status ld_ft_data_split(ld_ft_data *d, double fraction, ld_ft_data **val) {
    if (!d || !val || !(fraction > 0 && fraction < 1))
        return ld_error(d ? d->ctx : NULL, LD_ERR_INVALID_ARG, "validation share %g outside (0, 1)", fraction);
    ld_ft_data *v = ld_calloc(d->ctx, 1, sizeof *v);
    if (!v) return ld_ctx_status(d->ctx);
    v->ctx = d->ctx, v->eos = d->eos;
    int64_t kept = 0;
    ld_status st = LD_OK;
    for (int64_t i = 0; i < d->n_ex && !st; i++) {
        ft_example e = d->ex[i];
        if ((double)(example_hash(d, i) % 1000000) >= fraction * 1e6) {
            d->ex[kept++] = e;
            continue;
        }
        if ((st = grow_tokens(v, e.n))) break;
        memcpy(v->ids + v->n_tok, d->ids + e.off, (size_t)e.n * sizeof(int32_t));
        memcpy(v->counted + v->n_tok, d->counted + e.off, (size_t)e.n);
        if (v->n_ex == v->cap_ex) {
            int64_t cap = v->cap_ex ? 2 * v->cap_ex : 64;
            ft_example *ex = realloc(v->ex, (size_t)cap * sizeof *ex);
            if (!ex) {
                st = ld_error(d->ctx, LD_ERR_NOMEM, "out of memory");
                break;
            }
            v->ex = ex, v->cap_ex = cap;
        }
        e.off = v->n_tok;
        v->n_tok += e.n;
        v->ex[v->n_ex++] = e;
    }
    if (!st) d->n_ex = kept;
    if (!st && (v->n_ex == 0 || d->n_ex == 0))
        st = ld_error(d->ctx, LD_ERR_FORMAT, "holding out %g of %lld examples leaves %s empty: give a validation file",
                      fraction, (long long)(d->n_ex + v->n_ex), v->n_ex == 0 ? "the validation split" : "training");
    if (st) {
        ld_ft_data_free(v);
        return st;
    }
    *val = v;
    return LD_OK;
}

/* ---- batches -------------------------------------------------------------------------------- */

struct ld_ft_source {
    ld_ctx *ctx;
    const ld_ft_data *d;
    bool packed, shuffle;
    uint64_t seed;
    int32_t pad;
    int64_t *order;
    int64_t epoch, pos, off; /* the cursor: example order[pos] of epoch, token off inside it (packed) */
};

static void make_order(ld_ft_source *s) {
    int64_t n = s->d->n_ex;
    for (int64_t i = 0; i < n; i++) s->order[i] = i;
    if (!s->shuffle) return;
    ld_rng rng = ld_rng_init(ld_rng_at(s->seed, (uint64_t)s->epoch));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ld_rng_below(&rng, (uint64_t)i + 1), x = s->order[i];
        s->order[i] = s->order[j], s->order[j] = x;
    }
}

ld_status ld_ft_source_new(ld_ctx *ctx, const ld_ft_data *d, bool packed, bool shuffle, uint64_t seed, int32_t pad_id,
                           ld_ft_source **out) {
    if (!d || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_ft_source_new: NULL argument");
    ld_ft_source *s = ld_calloc(ctx, 1, sizeof *s);
    if (!s) return ld_ctx_status(ctx);
    s->ctx = ctx, s->d = d, s->packed = packed, s->shuffle = shuffle, s->seed = seed, s->pad = pad_id < 0 ? 0 : pad_id;
    if (!(s->order = ld_alloc(ctx, (size_t)d->n_ex * sizeof *s->order))) {
        ld_free(ctx, s);
        return ld_ctx_status(ctx);
    }
    make_order(s);
    *out = s;
    return LD_OK;
}

void ld_ft_source_free(ld_ft_source *s) {
    if (!s) return;
    ld_free(s->ctx, s->order);
    ld_free(s->ctx, s);
}

/* Moves to the next example; false at the end of an unshuffled pass (validation stops there). */
static bool advance(ld_ft_source *s) {
    s->off = 0;
    if (++s->pos < s->d->n_ex) return true;
    if (!s->shuffle) return false;
    s->pos = 0, s->epoch++;
    make_order(s);
    return true;
}

/* The token at the cursor (false at the end of an unshuffled pass), and stepping past it. */
static bool cursor_token(const ld_ft_source *s, int32_t *id, bool *counted) {
    if (s->pos >= s->d->n_ex) return false;
    const ft_example *e = &s->d->ex[s->order[s->pos]];
    *id = s->d->ids[e->off + s->off], *counted = s->d->counted[e->off + s->off];
    return true;
}
static void step(ld_ft_source *s) {
    if (++s->off >= s->d->ex[s->order[s->pos]].n) advance(s);
}

/* Packed rows: the examples' tokens as one stream; a row's inputs are T tokens of it and
 * its targets the T tokens after each (the last one peeked: it starts the next row). */
static ld_status fill_packed(ld_ft_source *s, ld_batch *b) {
    int64_t T = b->T;
    for (int64_t r = 0; r < b->B; r++) {
        int32_t *in = b->inputs + r * T, *tg = b->targets + r * T, id;
        bool counted;
        int64_t j = 0;
        for (; j < T && cursor_token(s, &id, &counted); j++) {
            in[j] = id;
            if (j > 0) tg[j - 1] = counted ? id : -100;
            step(s);
        }
        if (j > 0) tg[j - 1] = j == T && cursor_token(s, &id, &counted) && counted ? id : -100;
        for (int64_t k = j; k < T; k++) in[k] = s->pad, tg[k] = -100; /* only at the end of an unshuffled pass */
        b->lengths[r] = (int32_t)(j > 0 ? j : 1);
        b->labels[r] = -100;
    }
    return LD_OK;
}

/* Tokens example order[pos] fills in a padded row of at most T. */
static int64_t row_len(const ld_ft_source *s, int64_t pos, int64_t T) {
    const ft_example *e = &s->d->ex[s->order[pos]];
    int64_t n = e->label != -100 ? e->n : e->n - 1;
    return n < 1 ? 1 : n < T ? n : T;
}

static ld_status fill_padded(ld_ft_source *s, ld_batch *b) {
    const ld_ft_data *d = s->d;
    /* rows only as long as the batch's longest example needs (dynamic padding): the batch's
     * T shrinks, and rows are that far apart. A batch that crosses into a new epoch's order
     * (not drawn yet) keeps the full width. */
    int64_t T = 1;
    if (s->shuffle && s->pos + b->B > d->n_ex) T = b->T;
    for (int64_t r = 0, pos = s->pos; T < b->T && r < b->B && pos < d->n_ex; r++, pos++) {
        int64_t n = row_len(s, pos, b->T);
        if (n > T) T = n;
    }
    b->T = T;
    for (int64_t r = 0; r < b->B; r++) {
        int32_t *in = b->inputs + r * T, *tg = b->targets + r * T;
        for (int64_t k = 0; k < T; k++) in[k] = s->pad, tg[k] = -100;
        b->labels[r] = -100, b->lengths[r] = 1;
        if (s->pos >= d->n_ex) continue; /* past the end of an unshuffled pass: padding rows */
        const ft_example *e = &d->ex[s->order[s->pos]];
        const int32_t *ids = d->ids + e->off;
        const uint8_t *cnt = d->counted + e->off;
        if (e->label != -100) { /* classification: every token is input, the label is the target */
            int64_t n = e->n < T ? e->n : T;
            memcpy(in, ids, (size_t)n * sizeof(int32_t));
            b->lengths[r] = (int32_t)n, b->labels[r] = e->label;
        } else { /* language modelling: n tokens give n - 1 inputs and targets */
            int64_t n = e->n - 1 < T ? e->n - 1 : T;
            for (int64_t k = 0; k < n; k++) in[k] = ids[k], tg[k] = cnt[k + 1] ? ids[k + 1] : -100;
            b->lengths[r] = (int32_t)(n > 0 ? n : 1);
        }
        advance(s);
    }
    return LD_OK;
}

static ld_status src_next(void *user, ld_batch *b) {
    ld_ft_source *s = user;
    return s->packed ? fill_packed(s, b) : fill_padded(s, b);
}

static ld_status src_save(void *user, char **out) {
    const ld_ft_source *s = user;
    char buf[128];
    snprintf(buf, sizeof buf, "{\"epoch\":%lld,\"pos\":%lld,\"off\":%lld}", (long long)s->epoch, (long long)s->pos,
             (long long)s->off);
    if (!(*out = strdup(buf))) return ld_error(s->ctx, LD_ERR_NOMEM, "out of memory");
    return LD_OK;
}

static ld_status src_restore(void *user, const char *json) {
    ld_ft_source *s = user;
    long long epoch, pos, off;
    if (!json || sscanf(json, "{\"epoch\":%lld,\"pos\":%lld,\"off\":%lld}", &epoch, &pos, &off) != 3 || epoch < 0 ||
        pos < 0 || pos > s->d->n_ex || off < 0 || (pos < s->d->n_ex && off >= s->d->ex[s->order[0]].n + (1LL << 40)))
        return ld_error(s->ctx, LD_ERR_FORMAT, "fine-tuning data cursor '%.80s' is not {epoch, pos, off} for %lld examples",
                        json ? json : "", (long long)s->d->n_ex);
    s->epoch = epoch;
    make_order(s);
    if (pos < s->d->n_ex && off >= s->d->ex[s->order[pos]].n)
        return ld_error(s->ctx, LD_ERR_FORMAT, "fine-tuning data cursor: offset %lld past example %lld's %lld tokens", off,
                        pos, (long long)s->d->ex[s->order[pos]].n);
    s->pos = pos, s->off = off;
    return LD_OK;
}

ld_batch_source ld_ft_source_batches(ld_ft_source *s) {
    return (ld_batch_source){src_next, src_save, src_restore, s};
}

int64_t ld_ft_source_batches_per_epoch(const ld_ft_source *s, int64_t B, int64_t T) {
    if (!s->packed) return (s->d->n_ex + B - 1) / B;
    return (s->d->n_tok + B * T - 1) / (B * T);
}

/* ---- replay: rows from earlier stages' data mixed into the batches ---------------------------- */

#define MIX_MAX_OLD 16

struct ld_ft_mix {
    ld_ctx *ctx;
    ld_batch_source cur, old[MIX_MAX_OLD];
    int n_old;
    double ratio;
    uint64_t seed;
    int64_t rows; /* rows drawn so far: the cursor of the mixing decisions */
};

ld_status ld_ft_mix_new(ld_ctx *ctx, ld_batch_source cur, const ld_batch_source *old, int n_old, double ratio,
                        uint64_t seed, ld_ft_mix **out) {
    if (!out || n_old < 0 || n_old > MIX_MAX_OLD || !(ratio >= 0 && ratio < 1))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "replay: %d earlier sources (at most %d), ratio %g outside [0, 1)",
                        n_old, MIX_MAX_OLD, ratio);
    ld_ft_mix *m = ld_calloc(ctx, 1, sizeof *m);
    if (!m) return ld_ctx_status(ctx);
    m->ctx = ctx, m->cur = cur, m->n_old = n_old, m->ratio = n_old ? ratio : 0, m->seed = seed;
    for (int i = 0; i < n_old; i++) m->old[i] = old[i];
    *out = m;
    return LD_OK;
}

void ld_ft_mix_free(ld_ft_mix *m) {
    if (m) ld_free(m->ctx, m);
}

static ld_status mix_next(void *user, ld_batch *b) {
    ld_ft_mix *m = user;
    for (int64_t r = 0; r < b->B; r++) {
        ld_batch row = {1, b->T, b->inputs + r * b->T, b->targets + r * b->T, b->labels + r, b->lengths + r};
        uint64_t h = ld_rng_at(m->seed, (uint64_t)m->rows++);
        double u = (double)(h >> 11) * 0x1.0p-53;
        const ld_batch_source *src = u < m->ratio ? &m->old[(h & 0xffff) % (uint64_t)m->n_old] : &m->cur;
        ld_status st = src->next(src->user, &row);
        if (st) return st;
        for (int64_t k = row.T; k < b->T; k++) /* a row its source made shorter: padding after it */
            row.inputs[k] = 0, row.targets[k] = -100;
    }
    return LD_OK;
}

static ld_status mix_save(void *user, char **out) {
    ld_ft_mix *m = user;
    cJSON *o = cJSON_CreateObject(), *olds = cJSON_AddArrayToObject(o, "old");
    cJSON_AddNumberToObject(o, "rows", (double)m->rows);
    ld_status st = LD_OK;
    for (int i = -1; i < m->n_old && !st; i++) {
        const ld_batch_source *s = i < 0 ? &m->cur : &m->old[i];
        char *c = NULL;
        if ((st = s->save(s->user, &c))) break;
        cJSON *v = cJSON_Parse(c);
        free(c);
        if (!v) st = ld_error(m->ctx, LD_ERR_FORMAT, "replay: a source's cursor is not JSON");
        else if (i < 0) cJSON_AddItemToObject(o, "cur", v);
        else cJSON_AddItemToArray(olds, v);
    }
    *out = st ? NULL : cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!st && !*out) st = ld_error(m->ctx, LD_ERR_NOMEM, "out of memory");
    return st;
}

static ld_status mix_restore(void *user, const char *json) {
    ld_ft_mix *m = user;
    cJSON *o = cJSON_Parse(json ? json : "");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(o, "rows"), *cur = cJSON_GetObjectItemCaseSensitive(o, "cur");
    const cJSON *olds = cJSON_GetObjectItemCaseSensitive(o, "old");
    ld_status st = LD_OK;
    if (!cJSON_IsNumber(rows) || rows->valuedouble < 0 || !cur || cJSON_GetArraySize(olds) != m->n_old)
        st = ld_error(m->ctx, LD_ERR_FORMAT, "replay cursor '%.80s' is not {rows, cur, old[%d]}", json ? json : "", m->n_old);
    for (int i = -1; i < m->n_old && !st; i++) {
        const ld_batch_source *s = i < 0 ? &m->cur : &m->old[i];
        char *c = cJSON_PrintUnformatted(i < 0 ? cur : cJSON_GetArrayItem(olds, i));
        st = c ? s->restore(s->user, c) : ld_error(m->ctx, LD_ERR_NOMEM, "out of memory");
        free(c);
    }
    if (!st) m->rows = (int64_t)rows->valuedouble;
    cJSON_Delete(o);
    return st;
}

ld_batch_source ld_ft_mix_batches(ld_ft_mix *m) {
    return (ld_batch_source){mix_next, mix_save, mix_restore, m};
}

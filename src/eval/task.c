/* eval/task.c — evaluation task files (docs/eval-tasks.md) and their data: every format
 * (tsv with a header, jsonl, squad, m2, columns, pairs) becomes a list of JSON objects with
 * named fields, which the task's template renders into prompts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/task_internal.h"
#include "liandan/io.h"

#define TASK_FILE_MAX (1 << 20)

static const char *const known_keys[] = {
    "name", "about", "kind", "format", "files", "split", "template", "labels", "candidates", "answer", "blank",
    "calibration", "length_norm", "head_input", "max_new_tokens", "stop", "answers", "source", "references",
    "metrics", "shot_separator", NULL};
static const char *const formats[] = {"tsv", "jsonl", "squad", "m2", "columns", "pairs", NULL};
static const char *const metric_names[] = {"accuracy", "macro_f1", "em", "f1", "gec", "csc", NULL};

static bool in_list(const char *s, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(s, list[i])) return true;
    return false;
}

void ld_task_free(ld_task *t) {
    if (!t) return;
    task_split *sp[2] = {&t->train, &t->eval};
    for (int k = 0; k < 2; k++) {
        for (int64_t i = 0; i < sp[k]->n; i++) cJSON_Delete(sp[k]->ex[i]);
        free(sp[k]->ex);
        free(sp[k]->line);
    }
    ld_free(t->ctx, t);
}

const char *ld_task_name(const ld_task *t) {
    return t ? t->name : "";
}
int64_t ld_task_size(const ld_task *t) {
    return t ? t->eval.n : 0;
}

/* ---- reading data ----------------------------------------------------------------------- */

static ld_status add_example(ld_ctx *ctx, task_split *s, cJSON *ex, int64_t line) {
    if (!ex) return ld_error(ctx, LD_ERR_NOMEM, "out of memory reading %s", s->path);
    if (s->n % 256 == 0) {
        cJSON **e = realloc(s->ex, (size_t)(s->n + 256) * sizeof *e);
        int64_t *l = e ? realloc(s->line, (size_t)(s->n + 256) * sizeof *l) : NULL;
        if (e) s->ex = e;
        if (!l) {
            cJSON_Delete(ex);
            return ld_error(ctx, LD_ERR_NOMEM, "out of memory reading %s", s->path);
        }
        s->line = l;
    }
    s->ex[s->n] = ex, s->line[s->n++] = line;
    return LD_OK;
}

/* Splits text into lines (in place: newlines become NULs); calls fn for each with its number. */
typedef ld_status (*line_fn)(void *user, char *line, int64_t no);
static ld_status each_line(char *text, line_fn fn, void *user) {
    int64_t no = 0;
    ld_status st = LD_OK;
    for (char *p = text; p && *p && !st;) {
        char *nl = strchr(p, '\n');
        if (nl) *nl = 0;
        size_t len = strlen(p);
        if (len && p[len - 1] == '\r') p[len - 1] = 0;
        st = fn(user, p, ++no);
        p = nl ? nl + 1 : NULL;
    }
    return st;
}

typedef struct line_reader {
    ld_ctx *ctx;
    task_split *s;
    const char *format;
    char **header;
    int n_header;
    cJSON *block; /* m2: the sentence being read */
    int64_t block_line;
} line_reader;

static int split_tabs(char *s, char **cols, int max) {
    int n = 0;
    cols[n++] = s;
    for (char *p = s; *p && n < max; p++)
        if (*p == '\t') *p = 0, cols[n++] = p + 1;
    return n;
}

/* "冬 阴 功" -> "冬阴功": M2 files space the characters. */
static char *unspace(const char *s) {
    char *o = malloc(strlen(s) + 1), *q = o;
    if (!o) return NULL;
    for (; *s; s++)
        if (*s != ' ') *q++ = *s;
    *q = 0;
    return o;
}

static ld_status m2_flush(line_reader *r) {
    if (!r->block) return LD_OK;
    cJSON *refs = cJSON_GetObjectItemCaseSensitive(r->block, "references");
    if (cJSON_GetArraySize(refs) == 0) {
        const cJSON *src = cJSON_GetObjectItemCaseSensitive(r->block, "source");
        cJSON_AddItemToArray(refs, cJSON_CreateString(src->valuestring));
    }
    ld_status st = add_example(r->ctx, r->s, r->block, r->block_line);
    r->block = NULL;
    return st;
}

static ld_status read_line(void *user, char *line, int64_t no) {
    line_reader *r = user;
    ld_ctx *ctx = r->ctx;
    const char *path = r->s->path;
    if (!strcmp(r->format, "m2")) {
        if (!strncmp(line, "S ", 2)) {
            ld_status st = m2_flush(r);
            if (st) return st;
            char *src = unspace(line + 2);
            r->block = cJSON_CreateObject();
            if (!src || !r->block) return free(src), ld_error(ctx, LD_ERR_NOMEM, "out of memory");
            cJSON_AddStringToObject(r->block, "source", src);
            cJSON_AddArrayToObject(r->block, "references");
            r->block_line = no;
            free(src);
        } else if (line[0] == 'T') {
            if (!r->block) return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: a T line before any S line", path, (long long)no);
            const char *sp = strchr(line, ' ');
            cJSON *refs = cJSON_GetObjectItemCaseSensitive(r->block, "references");
            const char *src = cJSON_GetObjectItemCaseSensitive(r->block, "source")->valuestring;
            char *t = sp && strcmp(sp + 1, "没有错误") ? unspace(sp + 1) : strdup(src);
            if (!t) return ld_error(ctx, LD_ERR_NOMEM, "out of memory");
            cJSON_AddItemToArray(refs, cJSON_CreateString(t));
            free(t);
        } else if (line[0] && line[0] != 'A') {
            return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: not an M2 line (S, T or A)", path, (long long)no);
        }
        return LD_OK;
    }
    if (!line[0]) return LD_OK;
    if (!strcmp(r->format, "jsonl")) {
        cJSON *o = cJSON_Parse(line);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: not a JSON object", path, (long long)no);
        }
        return add_example(ctx, r->s, o, no);
    }
    char *cols[64];
    int n = split_tabs(line, cols, 64);
    if (!strcmp(r->format, "columns")) { /* id, source, references... */
        if (n < 3) return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: need id, source and a reference (tab-separated)", path,
                                   (long long)no);
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "id", cols[0]);
            cJSON_AddStringToObject(o, "source", cols[1]);
            cJSON *refs = cJSON_AddArrayToObject(o, "references");
            for (int i = 2; i < n; i++) cJSON_AddItemToArray(refs, cJSON_CreateString(cols[i]));
        }
        return add_example(ctx, r->s, o, no);
    }
    if (!r->header) { /* tsv: the header names the columns */
        r->header = calloc((size_t)n, sizeof *r->header);
        if (!r->header) return ld_error(ctx, LD_ERR_NOMEM, "out of memory");
        r->n_header = n;
        for (int i = 0; i < n; i++) r->header[i] = strdup(cols[i]);
        return LD_OK;
    }
    if (n != r->n_header)
        return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: %d columns, the header has %d", path, (long long)no, n, r->n_header);
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && i < n; i++) cJSON_AddStringToObject(o, r->header[i] ? r->header[i] : "", cols[i]);
    return add_example(ctx, r->s, o, no);
}

/* squad: {"data": [{"paragraphs": [{"context", "qas": [{"question", "answers": [{"text"}]}]}]}]}
 * -> {"context", "question", "answers": [texts]}, "line" = the question's number. */
static ld_status read_squad(ld_ctx *ctx, task_split *s, const char *text, size_t len) {
    cJSON *root = cJSON_ParseWithLength(text, len);
    const cJSON *data = root ? cJSON_GetObjectItemCaseSensitive(root, "data") : NULL, *a, *p, *q;
    ld_status st = LD_OK;
    if (!cJSON_IsArray(data)) st = ld_error(ctx, LD_ERR_FORMAT, "%s: not SQuAD JSON (no \"data\" list)", s->path);
    int64_t no = 0;
    cJSON_ArrayForEach(a, data) {
        const cJSON *paras = cJSON_GetObjectItemCaseSensitive(a, "paragraphs");
        cJSON_ArrayForEach(p, paras) {
            const cJSON *ctxt = cJSON_GetObjectItemCaseSensitive(p, "context"), *qas = cJSON_GetObjectItemCaseSensitive(p, "qas");
            cJSON_ArrayForEach(q, qas) {
                if (st) break;
                no++;
                const cJSON *question = cJSON_GetObjectItemCaseSensitive(q, "question");
                const cJSON *answers = cJSON_GetObjectItemCaseSensitive(q, "answers"), *ans;
                if (!cJSON_IsString(ctxt) || !cJSON_IsString(question) || !cJSON_IsArray(answers)) {
                    st = ld_error(ctx, LD_ERR_FORMAT, "%s: question %lld lacks context, question or answers", s->path,
                                  (long long)no);
                    break;
                }
                cJSON *o = cJSON_CreateObject();
                if (o) {
                    cJSON_AddStringToObject(o, "context", ctxt->valuestring);
                    cJSON_AddStringToObject(o, "question", question->valuestring);
                    cJSON *list = cJSON_AddArrayToObject(o, "answers");
                    cJSON_ArrayForEach(ans, answers) {
                        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(ans, "text");
                        if (cJSON_IsString(tx)) cJSON_AddItemToArray(list, cJSON_CreateString(tx->valuestring));
                    }
                }
                st = add_example(ctx, s, o, no);
            }
        }
    }
    cJSON_Delete(root);
    return st;
}

static uint64_t bytes_hash(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 0x100000001b3ull;
    return h;
}

/* Reads one split: `files` is a path (or for "pairs" a list of two line-aligned files). */
static ld_status read_split(ld_task *t, const cJSON *files, const char *data_dir, task_split *s) {
    ld_ctx *ctx = t->ctx;
    const char *paths[2] = {NULL, NULL};
    if (cJSON_IsString(files)) paths[0] = files->valuestring;
    else if (cJSON_IsArray(files) && cJSON_GetArraySize(files) == 2 && cJSON_IsString(cJSON_GetArrayItem(files, 0)) &&
             cJSON_IsString(cJSON_GetArrayItem(files, 1)))
        paths[0] = cJSON_GetArrayItem(files, 0)->valuestring, paths[1] = cJSON_GetArrayItem(files, 1)->valuestring;
    bool pairs = !strcmp(t->format, "pairs");
    if (!paths[0] || (pairs != (paths[1] != NULL)))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: a split's files must be %s", t->file,
                        pairs ? "a list of two line-aligned files" : "one file name");
    char *text[2] = {NULL, NULL};
    size_t len[2] = {0, 0};
    ld_status st = LD_OK;
    for (int k = 0; k < (pairs ? 2 : 1) && !st; k++) {
        char path[2048];
        snprintf(path, sizeof path, "%s%s%s", paths[k][0] == '/' ? "" : data_dir, paths[k][0] == '/' ? "" : "/", paths[k]);
        if (k == 0) snprintf(s->path, sizeof s->path, "%s", path);
        if ((st = ld_file_read(ctx, path, (size_t)1 << 30, &text[k], &len[k])))
            st = ld_error_wrap(ctx, st, "task %s: ", t->name);
        else s->hash = s->hash * 31 + bytes_hash(text[k], len[k]);
    }
    if (!st && !strcmp(t->format, "squad")) st = read_squad(ctx, s, text[0], len[0]);
    else if (!st && pairs) {
        char *a = text[0], *b = text[1];
        for (int64_t no = 1; !st && a && b && *a; no++) {
            char *na = strchr(a, '\n'), *nb = strchr(b, '\n');
            if (na) *na = 0;
            if (nb) *nb = 0;
            cJSON *o = cJSON_CreateObject();
            if (o) cJSON_AddStringToObject(o, "source", a), cJSON_AddStringToObject(o, "target", b);
            if (*a) st = add_example(ctx, s, o, no);
            else cJSON_Delete(o);
            a = na ? na + 1 : NULL, b = nb ? nb + 1 : NULL;
        }
        if (!st && ((a && *a) || (b && *b)))
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: the two files of a pair have different line counts", s->path);
    } else if (!st) {
        line_reader r = {ctx, s, t->format, NULL, 0, NULL, 0};
        st = each_line(text[0], read_line, &r);
        if (!st && r.block) st = m2_flush(&r);
        cJSON_Delete(r.block);
        for (int i = 0; r.header && i < r.n_header; i++) free(r.header[i]);
        free(r.header);
    }
    for (int k = 0; k < 2; k++) ld_free(ctx, text[k]);
    if (!st && s->n == 0) st = ld_error(ctx, LD_ERR_FORMAT, "%s: no examples", s->path);
    return st;
}

/* ---- the task file ---------------------------------------------------------------------------- */

static ld_status get_str(ld_task *t, const cJSON *o, const char *key, char *out, size_t cap, bool required) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) return required ? ld_error(t->ctx, LD_ERR_FORMAT, "%s: '%s' is required", t->file, key) : LD_OK;
    if (!cJSON_IsString(v) || strlen(v->valuestring) >= cap)
        return ld_error(t->ctx, LD_ERR_FORMAT, "%s: '%s' must be a string of at most %zu bytes", t->file, key, cap - 1);
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return LD_OK;
}

static ld_status parse(ld_task *t, const cJSON *o, const char *data_dir, const char *split) {
    ld_ctx *ctx = t->ctx;
    ld_status st;
    char kind[16] = "choice";
    snprintf(t->calibration, sizeof t->calibration, "N/A");
    snprintf(t->shot_separator, sizeof t->shot_separator, "\n\n");
    snprintf(t->eval_split, sizeof t->eval_split, "test");
    if ((st = get_str(t, o, "name", t->name, sizeof t->name, true)) || (st = get_str(t, o, "about", t->about, sizeof t->about, false)) ||
        (st = get_str(t, o, "kind", kind, sizeof kind, false)) || (st = get_str(t, o, "format", t->format, sizeof t->format, true)) ||
        (st = get_str(t, o, "template", t->template_, sizeof t->template_, true)) ||
        (st = get_str(t, o, "split", t->eval_split, sizeof t->eval_split, false)) ||
        (st = get_str(t, o, "candidates", t->candidates_field, sizeof t->candidates_field, false)) ||
        (st = get_str(t, o, "answer", t->answer_field, sizeof t->answer_field, false)) ||
        (st = get_str(t, o, "blank", t->blank, sizeof t->blank, false)) ||
        (st = get_str(t, o, "calibration", t->calibration, sizeof t->calibration, false)) ||
        (st = get_str(t, o, "head_input", t->head_input, sizeof t->head_input, false)) ||
        (st = get_str(t, o, "answers", t->answers_field, sizeof t->answers_field, false)) ||
        (st = get_str(t, o, "source", t->source_field, sizeof t->source_field, false)) ||
        (st = get_str(t, o, "references", t->references_field, sizeof t->references_field, false)) ||
        (st = get_str(t, o, "shot_separator", t->shot_separator, sizeof t->shot_separator, false)))
        return st;
    if (split) snprintf(t->eval_split, sizeof t->eval_split, "%s", split);
    if (strcmp(kind, "choice") && strcmp(kind, "generate"))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: kind '%s' is not choice or generate", t->file, kind);
    t->kind = !strcmp(kind, "choice") ? TASK_CHOICE : TASK_GENERATE;
    if (!in_list(t->format, formats))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: format '%s' is not one of tsv, jsonl, squad, m2, columns, pairs", t->file,
                        t->format);
    const cJSON *ln = cJSON_GetObjectItemCaseSensitive(o, "length_norm");
    t->length_norm = cJSON_IsTrue(ln);
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(o, "labels"), *it;
    if (labels) {
        if (!cJSON_IsObject(labels) || cJSON_GetArraySize(labels) < 2 || cJSON_GetArraySize(labels) > LD_TASK_MAX_LABELS)
            return ld_error(ctx, LD_ERR_FORMAT, "%s: 'labels' must map 2..%d label values to words", t->file,
                            LD_TASK_MAX_LABELS);
        cJSON_ArrayForEach(it, labels) {
            if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) >= 64 || strlen(it->string) >= 64)
                return ld_error(ctx, LD_ERR_FORMAT, "%s: labels['%.40s'] must be a non-empty word under 64 bytes", t->file,
                                it->string);
            snprintf(t->label_values[t->n_labels], 64, "%s", it->string);
            snprintf(t->label_words[t->n_labels++], 64, "%s", it->valuestring);
        }
    }
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(o, "stop");
    cJSON_ArrayForEach(it, stop) {
        if (!cJSON_IsString(it) || strlen(it->valuestring) >= 16 || t->n_stops == LD_TASK_MAX_STOPS)
            return ld_error(ctx, LD_ERR_FORMAT, "%s: 'stop' must be at most %d strings under 16 bytes", t->file,
                            LD_TASK_MAX_STOPS);
        snprintf(t->stops[t->n_stops++], 16, "%s", it->valuestring);
    }
    if (!stop) t->n_stops = 1, snprintf(t->stops[0], 16, "\n");
    const cJSON *mnt = cJSON_GetObjectItemCaseSensitive(o, "max_new_tokens");
    t->max_new_tokens = 32;
    if (mnt && (!cJSON_IsNumber(mnt) || mnt->valuedouble < 1 || mnt->valuedouble > 4096))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: 'max_new_tokens' must be in 1..4096", t->file);
    if (mnt) t->max_new_tokens = (int64_t)mnt->valuedouble;
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(o, "metrics");
    cJSON_ArrayForEach(it, metrics) {
        if (!cJSON_IsString(it) || !in_list(it->valuestring, metric_names) || t->n_metrics == 4)
            return ld_error(ctx, LD_ERR_FORMAT, "%s: metrics are up to 4 of accuracy, macro_f1, em, f1, gec, csc", t->file);
        snprintf(t->metrics[t->n_metrics++], 24, "%s", it->valuestring);
    }
    /* what each kind needs */
    if (t->kind == TASK_CHOICE) {
        if (!t->n_labels == !t->candidates_field[0])
            return ld_error(ctx, LD_ERR_FORMAT, "%s: a choice task gives either 'labels' or 'candidates'", t->file);
        if (!t->answer_field[0]) return ld_error(ctx, LD_ERR_FORMAT, "%s: a choice task needs 'answer'", t->file);
        if (!strstr(t->template_, "{candidate}") && !t->blank[0])
            return ld_error(ctx, LD_ERR_FORMAT, "%s: the template has no {candidate} (nor a 'blank' marker)", t->file);
        if (!t->n_metrics) snprintf(t->metrics[t->n_metrics++], 24, "accuracy");
    } else {
        bool qa = t->answers_field[0], src = t->source_field[0] && t->references_field[0];
        if (qa == src)
            return ld_error(ctx, LD_ERR_FORMAT, "%s: a generate task gives 'answers' (QA) or 'source' and 'references'", t->file);
        if (!t->n_metrics) {
            if (qa) snprintf(t->metrics[0], 24, "em"), snprintf(t->metrics[1], 24, "f1"), t->n_metrics = 2;
            else snprintf(t->metrics[0], 24, "gec"), t->n_metrics = 1;
        }
    }
    /* the data */
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(o, "files");
    if (!cJSON_IsObject(files)) return ld_error(ctx, LD_ERR_FORMAT, "%s: 'files' must map split names to files", t->file);
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(files, t->eval_split);
    if (!ev) return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: no '%s' split in 'files'", t->file, t->eval_split);
    if ((st = read_split(t, ev, data_dir, &t->eval))) return st;
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(files, "train");
    if (tr && strcmp(t->eval_split, "train") && (st = read_split(t, tr, data_dir, &t->train))) return st;
    return LD_OK;
}

ld_status ld_task_load(ld_ctx *ctx, const char *path, const char *data_dir, const char *split, ld_task **out) {
    if (!path || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_task_load: NULL argument");
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    ld_status st = ld_file_read(ctx, path, TASK_FILE_MAX, &text, &len);
    if (st) return st;
    cJSON *o = cJSON_ParseWithLength(text, len);
    ld_free(ctx, text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: not a JSON object", path);
    }
    ld_task *t = ld_calloc(ctx, 1, sizeof *t);
    if (!t) {
        cJSON_Delete(o);
        return ld_ctx_status(ctx);
    }
    t->ctx = ctx;
    snprintf(t->file, sizeof t->file, "%s", path);
    for (const cJSON *it = o->child; it; it = it->next)
        if (!in_list(it->string, known_keys)) ld_log(ctx, LD_LOG_WARN, "%s: unknown key '%s' ignored", path, it->string);
    st = parse(t, o, data_dir ? data_dir : ".", split);
    cJSON_Delete(o);
    if (st) {
        ld_task_free(t);
        return st;
    }
    *out = t;
    return LD_OK;
}

/* ---- rendering ------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

ld_status ld_task_render(const ld_task *t, const char *tmpl, const cJSON *ex, int64_t line, bool calibration,
                         char **out, int64_t *split) {
    sbuf b = {0};
    *split = -1;
    put(&b, "", 0);
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == '{') {
            put(&b, "{", 1), p += 2;
            continue;
        }
        if (p[0] == '}' && p[1] == '}') {
            put(&b, "}", 1), p += 2;
            continue;
        }
        const char *close = p[0] == '{' ? strchr(p, '}') : NULL;
        if (!close) {
            put(&b, p, 1), p++;
            continue;
        }
        char name[64];
        size_t n = (size_t)(close - p - 1);
        if (n == 0 || n >= sizeof name) {
            put(&b, p, 1), p++;
            continue;
        }
        memcpy(name, p + 1, n);
        name[n] = 0;
        p = close + 1;
        if (!strcmp(name, "candidate")) {
            if (*split < 0) *split = (int64_t)b.n;
            continue;
        }
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(ex, name);
        char num[64];
        const char *s = cJSON_IsString(v) ? v->valuestring : NULL;
        if (cJSON_IsNumber(v)) snprintf(num, sizeof num, "%.17g", v->valuedouble), s = num;
        if (!s) {
            free(b.p);
            return ld_error(t->ctx, LD_ERR_FORMAT, "%s:%lld: the template's field '%s' is missing (task %s)",
                            t->eval.path, (long long)line, name, t->name);
        }
        if (calibration) s = t->calibration;
        put(&b, s, strlen(s));
    }
    if (t->blank[0] && b.p && *split < 0) { /* the blank marker becomes the candidate's place */
        char *m = strstr(b.p, t->blank);
        if (m) {
            size_t bl = strlen(t->blank);
            memmove(m, m + bl, strlen(m + bl) + 1);
            b.n -= bl;
            *split = (int64_t)(m - b.p);
        }
    }
    if (b.oom) {
        free(b.p);
        return ld_error(t->ctx, LD_ERR_NOMEM, "out of memory rendering a prompt");
    }
    *out = b.p;
    return LD_OK;
}

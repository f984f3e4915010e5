/* data/image_set.c — image-text datasets: the emoji_clip directory (raw 32x32 RGB + index.tsv)
 * and TSV / JSONL lists of (image path, caption[, label]) with the bad-image policy; every image
 * is resized to one square size when loaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/json.h"
#include "liandan/image.h"
#include "liandan/io.h"

#include <cjson/cJSON.h>

struct ld_image_set {
    ld_ctx *ctx;
    int size;
    int64_t n, cap, skipped;
    uint8_t *px;                 /* [cap, size, size, 3] */
    int64_t *caption, *label;    /* offsets into text (label -1 = none) */
    char *text;
    size_t text_len, text_cap;
    bool has_labels;
};

ld_image_set_params ld_image_set_default_params(void) {
    return (ld_image_set_params){.size = 32, .bad = LD_BAD_IMAGE_REJECT, .split = NULL, .lang = "zh"};
}

void ld_image_set_free(ld_image_set *s) {
    if (!s) return;
    free(s->px);
    free(s->caption);
    free(s->label);
    free(s->text);
    ld_free(s->ctx, s);
}

int64_t ld_image_set_count(const ld_image_set *s) {
    return s ? s->n : 0;
}
int ld_image_set_size(const ld_image_set *s) {
    return s ? s->size : 0;
}
int64_t ld_image_set_skipped(const ld_image_set *s) {
    return s ? s->skipped : 0;
}
const uint8_t *ld_image_set_pixels(const ld_image_set *s, int64_t i) {
    return s->px + (size_t)i * (size_t)s->size * (size_t)s->size * 3;
}
const char *ld_image_set_caption(const ld_image_set *s, int64_t i) {
    return s->text + s->caption[i];
}
const char *ld_image_set_label(const ld_image_set *s, int64_t i) {
    return s->label[i] < 0 ? NULL : s->text + s->label[i];
}

static ld_status set_new(ld_ctx *ctx, const ld_image_set_params *p, ld_image_set **out) {
    if (p->size < 1 || p->size > 1024) return ld_error(ctx, LD_ERR_INVALID_ARG, "image set: size %d outside 1..1024", p->size);
    ld_image_set *s = ld_calloc(ctx, 1, sizeof *s);
    if (!s) return ld_ctx_status(ctx);
    s->ctx = ctx, s->size = p->size;
    *out = s;
    return LD_OK;
}

static int64_t add_text(ld_image_set *s, const char *t, size_t len) {
    if (s->text_len + len + 1 > s->text_cap) {
        size_t cap = s->text_cap ? s->text_cap : 4096;
        while (cap < s->text_len + len + 1) cap *= 2;
        char *nt = realloc(s->text, cap);
        if (!nt) return -1;
        s->text = nt, s->text_cap = cap;
    }
    int64_t off = (int64_t)s->text_len;
    memcpy(s->text + off, t, len);
    s->text[off + (int64_t)len] = 0;
    s->text_len += len + 1;
    return off;
}

/* Appends an item; its pixels go to the returned slot (NULL on OOM). */
static uint8_t *add_item(ld_image_set *s, const char *cap, size_t cap_len, const char *label, size_t label_len) {
    size_t img = (size_t)s->size * (size_t)s->size * 3;
    if (s->n == s->cap) {
        int64_t nc = s->cap ? 2 * s->cap : 256;
        uint8_t *px = realloc(s->px, (size_t)nc * img);
        if (px) s->px = px;
        int64_t *c = px ? realloc(s->caption, (size_t)nc * sizeof *c) : NULL;
        if (c) s->caption = c;
        int64_t *l = c ? realloc(s->label, (size_t)nc * sizeof *l) : NULL;
        if (!l) return NULL;
        s->label = l, s->cap = nc;
    }
    int64_t co = add_text(s, cap, cap_len), lo = label ? add_text(s, label, label_len) : -1;
    if (co < 0 || (label && lo < 0)) return NULL;
    s->caption[s->n] = co, s->label[s->n] = lo;
    if (label) s->has_labels = true;
    return s->px + (size_t)(s->n++) * img;
}

/* ---- emoji_clip ------------------------------------------------------------------------- */

#define EMOJI_SIDE 32

/* Splits line [p, end) at tabs into f[0..max): returns the field count. */
static int split_tabs(const char *p, const char *end, const char **f, size_t *fl, int max) {
    int n = 0;
    while (n < max) {
        const char *q = memchr(p, '\t', (size_t)(end - p));
        const char *e = q ? q : end;
        f[n] = p, fl[n] = (size_t)(e - p), n++;
        if (!q) break;
        p = q + 1;
    }
    return n;
}

static bool field_is(const char *f, size_t len, const char *s) {
    return strlen(s) == len && !memcmp(f, s, len);
}

static ld_status open_emoji(ld_ctx *ctx, const char *dir, const ld_image_set_params *p, ld_image_set *s) {
    char ipath[4096], rpath[4096];
    snprintf(ipath, sizeof ipath, "%s/index.tsv", dir);
    snprintf(rpath, sizeof rpath, "%s/images_32x32_rgb.u8", dir);
    const char *lang = p->lang ? p->lang : "zh";
    if (strcmp(lang, "zh") && strcmp(lang, "en"))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "emoji_clip: language '%s' must be zh or en", lang);
    ld_mapping raw = {0};
    char *idx = NULL;
    size_t idx_len = 0;
    ld_status st = ld_file_map(ctx, rpath, &raw);
    if (!st) st = ld_file_read(ctx, ipath, (size_t)64 << 20, &idx, &idx_len);
    if (st) goto out;
    const size_t img = EMOJI_SIDE * EMOJI_SIDE * 3;
    if (raw.size % img) {
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: %zu bytes is not a whole number of 32x32 RGB images", rpath, raw.size);
        goto out;
    }
    int64_t n_raw = (int64_t)(raw.size / img);
    enum { C_IDX, C_CAT, C_CAP, C_SPLIT, C_N };
    const char *want[C_N] = {"idx", "category", !strcmp(lang, "zh") ? "zh_name" : "en_name", "split"};
    int col[C_N] = {-1, -1, -1, -1}, need = 0;
    const char *end = idx + idx_len, *line = idx;
    uint8_t *tmp = p->size != EMOJI_SIDE ? malloc(img) : NULL;
    for (int64_t ln = 1; line < end && !st; ln++) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le = nl ? nl : end;
        if (le > line && le[-1] == '\r') le--;
        const char *f[32];
        size_t fl[32];
        int nf = split_tabs(line, le, f, fl, 32);
        line = nl ? nl + 1 : end;
        if (ln == 1) {
            for (int c = 0; c < C_N; c++) {
                for (int i = 0; i < nf; i++)
                    if (field_is(f[i], fl[i], want[c])) col[c] = i;
                if (col[c] < 0) {
                    st = ld_error(ctx, LD_ERR_FORMAT, "%s:1: header has no column '%s'", ipath, want[c]);
                    break;
                }
                if (col[c] + 1 > need) need = col[c] + 1;
            }
            continue;
        }
        if (le == f[0] && nf == 1) continue; /* blank line */
        if (nf < need) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: %d fields, the header needs %d", ipath, (long long)ln, nf, need);
            break;
        }
        char num[24];
        size_t nl_ = fl[col[C_IDX]] < sizeof num - 1 ? fl[col[C_IDX]] : sizeof num - 1;
        memcpy(num, f[col[C_IDX]], nl_), num[nl_] = 0;
        char *e;
        long long id = strtoll(num, &e, 10);
        if (!nl_ || *e || id < 0 || id >= n_raw) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: idx '%s' is not an image index in 0..%lld", ipath, (long long)ln,
                          num, (long long)n_raw - 1);
            break;
        }
        if (p->split && !field_is(f[col[C_SPLIT]], fl[col[C_SPLIT]], p->split)) continue;
        if (!fl[col[C_CAP]]) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: empty %s", ipath, (long long)ln, want[C_CAP]);
            break;
        }
        uint8_t *dst = add_item(s, f[col[C_CAP]], fl[col[C_CAP]], f[col[C_CAT]], fl[col[C_CAT]]);
        if (!dst || (p->size != EMOJI_SIDE && !tmp)) {
            st = ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", ipath);
            break;
        }
        const uint8_t *src = raw.data + (size_t)id * img;
        if (p->size == EMOJI_SIDE) memcpy(dst, src, img);
        else ld_image_resize(src, EMOJI_SIDE, EMOJI_SIDE, dst, p->size, p->size);
    }
    free(tmp);
    if (!st && col[0] < 0) st = ld_error(ctx, LD_ERR_FORMAT, "%s: empty file (no header)", ipath);
    if (!st && s->n == 0)
        st = ld_error(ctx, LD_ERR_NOT_FOUND, "%s: no image in split '%s'", ipath, p->split ? p->split : "(all)");
out:
    ld_free(ctx, idx);
    ld_file_unmap(&raw);
    return st;
}

/* ---- TSV / JSONL lists ------------------------------------------------------------------ */

/* Loads one listed image into the set, or under the skip policy counts it. */
static ld_status list_item(ld_image_set *s, const ld_image_set_params *p, const char *name, int64_t ln,
                           const char *base_dir, const char *img, size_t img_len, const char *cap, size_t cap_len,
                           const char *label, size_t label_len) {
    ld_ctx *ctx = s->ctx;
    if (!img_len) return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: empty image path", name, (long long)ln);
    if (!cap_len) return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: empty caption", name, (long long)ln);
    if (memchr(img, 0, img_len) || memchr(cap, 0, cap_len) || (label && memchr(label, 0, label_len)))
        return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: NUL byte in a field", name, (long long)ln);
    char path[4096];
    int w = img[0] == '/' || !base_dir || !*base_dir
                ? snprintf(path, sizeof path, "%.*s", (int)img_len, img)
                : snprintf(path, sizeof path, "%s/%.*s", base_dir, (int)img_len, img);
    if (w < 0 || (size_t)w >= sizeof path) return ld_error(ctx, LD_ERR_LIMIT, "%s:%lld: image path too long", name, (long long)ln);
    ld_image im;
    ld_status st = ld_image_load(ctx, path, &im);
    if (st) {
        if (p->bad == LD_BAD_IMAGE_SKIP && st != LD_ERR_NOMEM) {
            ld_log(ctx, LD_LOG_WARN, "%s:%lld: skipping bad image: %s", name, (long long)ln, ld_ctx_error(ctx));
            ld_ctx_clear_error(ctx);
            s->skipped++;
            return LD_OK;
        }
        return ld_error_wrap(ctx, st, "%s:%lld: ", name, (long long)ln);
    }
    uint8_t *dst = add_item(s, cap, cap_len, label, label_len);
    if (dst) ld_image_resize_center_crop(im.px, im.width, im.height, dst, s->size);
    ld_image_free(ctx, &im);
    return dst ? LD_OK : ld_error(ctx, LD_ERR_NOMEM, "%s:%lld: out of memory", name, (long long)ln);
}

static ld_status jsonl_line(ld_image_set *s, const ld_image_set_params *p, const char *name, int64_t ln,
                            const char *base_dir, const char *line, size_t len) {
    ld_ctx *ctx = s->ctx;
    cJSON *root = NULL;
    char doc[300];
    snprintf(doc, sizeof doc, "%s:%lld", name, (long long)ln);
    ld_status st = ld_json_parse(ctx, doc, line, len, &root);
    if (st) return st;
    ld_json_ref r = ld_json_root(doc, root);
    const char *img = NULL, *cap = NULL, *label = NULL;
    if (!cJSON_IsObject(root)) st = ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", doc);
    if (!st) st = ld_json_get_string(ctx, &r, "image", true, &img);
    if (!st) st = ld_json_get_string(ctx, &r, "caption", true, &cap);
    if (!st) st = ld_json_get_string(ctx, &r, "label", false, &label);
    if (!st)
        st = list_item(s, p, name, ln, base_dir, img, strlen(img), cap, strlen(cap), label, label ? strlen(label) : 0);
    ld_json_free(root);
    return st;
}

ld_status ld_image_set_parse_list(ld_ctx *ctx, const char *text, size_t len, const char *name, bool jsonl,
                                  const char *base_dir, const ld_image_set_params *p, ld_image_set **out) {
    if (!out || (!text && len)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_image_set_parse_list: NULL argument");
    *out = NULL;
    ld_image_set_params dp = ld_image_set_default_params();
    if (!p) p = &dp;
    if (!name) name = "list";
    ld_image_set *s;
    ld_status st = set_new(ctx, p, &s);
    if (st) return st;
    const char *line = text, *end = text + len;
    int n_label_cols = -1;
    for (int64_t ln = 1; line < end && !st; ln++) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *le = nl ? nl : end;
        const char *cur = line;
        line = nl ? nl + 1 : end;
        if (le > cur && le[-1] == '\r') le--;
        if (le == cur) continue;
        if (jsonl) {
            st = jsonl_line(s, p, name, ln, base_dir, cur, (size_t)(le - cur));
            continue;
        }
        const char *f[4];
        size_t fl[4];
        int nf = split_tabs(cur, le, f, fl, 4);
        if (nf < 2 || nf > 3) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: expected 2 or 3 tab-separated fields (image, caption[, label]), got %d",
                          name, (long long)ln, nf);
            break;
        }
        if (ln == 1 && field_is(f[0], fl[0], "image")) continue; /* header */
        if (n_label_cols >= 0 && (nf == 3) != (n_label_cols == 1)) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: %d fields where earlier lines had %d", name, (long long)ln, nf,
                          2 + n_label_cols);
            break;
        }
        n_label_cols = nf == 3;
        st = list_item(s, p, name, ln, base_dir, f[0], fl[0], f[1], fl[1], nf == 3 ? f[2] : NULL, nf == 3 ? fl[2] : 0);
    }
    if (!st && s->n == 0)
        st = ld_error(ctx, LD_ERR_NOT_FOUND, "%s: no usable image (%lld skipped)", name, (long long)s->skipped);
    if (!st && s->skipped)
        ld_log(ctx, LD_LOG_WARN, "%s: %lld bad images skipped, %lld loaded", name, (long long)s->skipped, (long long)s->n);
    if (st) {
        ld_image_set_free(s);
        return st;
    }
    *out = s;
    return LD_OK;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

ld_status ld_image_set_open(ld_ctx *ctx, const char *path, const ld_image_set_params *p, ld_image_set **out) {
    if (!path || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_image_set_open: NULL argument");
    *out = NULL;
    ld_image_set_params dp = ld_image_set_default_params();
    if (!p) p = &dp;
    struct stat sb;
    if (stat(path, &sb) != 0) return ld_error(ctx, LD_ERR_IO, "image data %s: no such file or directory", path);
    if (S_ISDIR(sb.st_mode)) {
        ld_image_set *s;
        ld_status st = set_new(ctx, p, &s);
        if (!st && (st = open_emoji(ctx, path, p, s))) ld_image_set_free(s);
        if (!st) *out = s;
        return st;
    }
    bool jsonl = ends_with(path, ".jsonl") || ends_with(path, ".json");
    if (!jsonl && !ends_with(path, ".tsv"))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "image data %s: expected a directory, a .tsv or a .jsonl list", path);
    char *text = NULL;
    size_t len = 0;
    ld_status st = ld_file_read(ctx, path, (size_t)1 << 30, &text, &len);
    if (st) return st;
    char base[4096];
    snprintf(base, sizeof base, "%s", path);
    char *slash = strrchr(base, '/');
    if (slash) *slash = 0;
    else snprintf(base, sizeof base, ".");
    st = ld_image_set_parse_list(ctx, text, len, path, jsonl, base, p, out);
    ld_free(ctx, text);
    return st;
}

/* ---- image-caption pairs ---------------------------------------------------------------- */

ld_status ld_clip_pairs_open(ld_ctx *ctx, const char *path, const char *split, const char *lang, int size,
                             ld_clip_pairs *out) {
    memset(out, 0, sizeof *out);
    const char *langs[2] = {lang, NULL};
    if (lang && !strcmp(lang, "both")) langs[0] = "zh", langs[1] = "en";
    for (int k = 0; k < 2 && langs[k]; k++) {
        ld_image_set_params p = ld_image_set_default_params();
        p.size = size, p.split = split && *split ? split : NULL, p.lang = langs[k];
        ld_status st = ld_image_set_open(ctx, path, &p, &out->sets[k]);
        if (st) {
            ld_clip_pairs_free(out);
            return st;
        }
        out->n_sets = k + 1;
        out->n += ld_image_set_count(out->sets[k]);
    }
    return LD_OK;
}

void ld_clip_pairs_free(ld_clip_pairs *p) {
    for (int k = 0; k < 2; k++) ld_image_set_free(p->sets[k]);
    memset(p, 0, sizeof *p);
}

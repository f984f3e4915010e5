/* io/safetensors_set.c — Hugging Face sharded checkpoints: parsing
 * model.safetensors.index.json ({"metadata": {...}, "weight_map": {tensor: file}}) and
 * opening the shards as one validated logical set of tensors. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/io_internal.h"

struct ld_hf_index {
    ld_ctx *ctx;
    ld_arena *arena;
    ld_str_pair *map; /* key = tensor, value = file; sorted by tensor */
    size_t n;
    const char **files; /* distinct, first-seen order */
    size_t n_files;
};

void ld_hf_index_free(ld_hf_index *idx) {
    if (!idx) return;
    ld_arena_free(idx->arena);
    ld_free(idx->ctx, idx);
}

static int cmp_pair(const void *a, const void *b) {
    return strcmp(((const ld_str_pair *)a)->key, ((const ld_str_pair *)b)->key);
}

/* A shard file name must stay inside the model directory. */
static bool safe_relative(const char *f) {
    if (!*f || f[0] == '/') return false;
    for (const char *p = f; *p;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.')) return false;
        p += n + (e ? 1 : 0);
    }
    return true;
}

ld_status ld_hf_index_parse(ld_ctx *ctx, const char *doc, const char *text, size_t len, ld_hf_index **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_hf_index_parse: NULL argument");
    *out = NULL;
    if (!doc) doc = "model.safetensors.index.json";
    cJSON *root = NULL;
    ld_status s = ld_json_parse(ctx, doc, text, len, &root);
    if (s) return s;
    ld_hf_index *idx = ld_calloc(ctx, 1, sizeof *idx);
    if (!idx) {
        cJSON_Delete(root);
        return ld_ctx_status(ctx);
    }
    idx->ctx = ctx;
    ld_json_ref r = ld_json_root(doc, root), wm, meta;
    size_t n = 0;
    s = ld_arena_new(ctx, 64 << 10, &idx->arena);
    if (!s) s = ld_json_get_object(ctx, &r, "metadata", false, &meta);
    if (!s) s = ld_json_get_object(ctx, &r, "weight_map", true, &wm);
    if (s) goto fail;
    for (const cJSON *c = wm.node->child; c; c = c->next) n++;
    idx->map = ld_arena_alloc(idx->arena, n * sizeof *idx->map + 1);
    idx->files = ld_arena_alloc(idx->arena, n * sizeof *idx->files + 1);
    if (!idx->map || !idx->files) goto nomem;
    for (const cJSON *c = wm.node->child; c; c = c->next) {
        const char *file = NULL;
        s = ld_json_get_string(ctx, &wm, c->string, true, &file);
        if (s) goto fail;
        if (!safe_relative(file)) {
            s = ld_error(ctx, LD_ERR_FORMAT, "%s: key 'weight_map.%s': file name \"%s\" must be a relative path inside the model directory", doc, c->string, file);
            goto fail;
        }
        ld_str_pair *p = &idx->map[idx->n++];
        p->key = ld_io_arena_strdup(idx->arena, c->string);
        p->value = NULL;
        for (size_t i = 0; i < idx->n_files && !p->value; i++)
            if (!strcmp(idx->files[i], file)) p->value = idx->files[i];
        if (!p->value) {
            p->value = idx->files[idx->n_files++] = ld_io_arena_strdup(idx->arena, file);
        }
        if (!p->key || !p->value) goto nomem;
    }
    /* Duplicate tensor names are already rejected by ld_json_parse ("appears more than once"). */
    qsort(idx->map, idx->n, sizeof *idx->map, cmp_pair);
    cJSON_Delete(root);
    *out = idx;
    return LD_OK;
nomem:
    s = ld_error(ctx, LD_ERR_NOMEM, "%s: out of memory", doc);
fail:
    cJSON_Delete(root);
    ld_hf_index_free(idx);
    return s;
}

size_t ld_hf_index_count(const ld_hf_index *idx) {
    return idx ? idx->n : 0;
}
void ld_hf_index_at(const ld_hf_index *idx, size_t i, const char **tensor, const char **file) {
    *tensor = *file = NULL;
    if (idx && i < idx->n) {
        *tensor = idx->map[i].key;
        *file = idx->map[i].value;
    }
}
size_t ld_hf_index_file_count(const ld_hf_index *idx) {
    return idx ? idx->n_files : 0;
}
const char *ld_hf_index_file(const ld_hf_index *idx, size_t i) {
    return idx && i < idx->n_files ? idx->files[i] : NULL;
}

/* ---- sets ----------------------------------------------------------------------------- */

struct ld_st_set {
    ld_ctx *ctx;
    ld_safetensors **files;
    size_t n_files;
    const ld_tensor_info **all; /* by name */
    size_t n;
};

void ld_st_set_close(ld_st_set *set) {
    if (!set) return;
    for (size_t i = 0; i < set->n_files; i++) ld_safetensors_close(set->files[i]);
    ld_free(set->ctx, set->files);
    ld_free(set->ctx, set->all);
    ld_free(set->ctx, set);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int cmp_info_ptr(const void *a, const void *b) {
    return strcmp((*(const ld_tensor_info *const *)a)->name, (*(const ld_tensor_info *const *)b)->name);
}

static char *join_path(ld_ctx *ctx, const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = ld_alloc(ctx, n);
    if (p) snprintf(p, n, "%s%s%s", dir, dir[0] && !ends_with(dir, "/") ? "/" : "", name);
    return p;
}

static ld_status set_from_index(ld_st_set *set, const char *index_path) {
    ld_ctx *ctx = set->ctx;
    char *text = NULL;
    size_t len;
    ld_status s = ld_file_read(ctx, index_path, (size_t)256 << 20, &text, &len);
    if (s) return s;
    ld_hf_index *idx = NULL;
    s = ld_hf_index_parse(ctx, index_path, text, len, &idx);
    ld_free(ctx, text);
    if (s) return s;
    /* directory of the index */
    char *dir = ld_strdup(ctx, index_path);
    if (!dir) {
        ld_hf_index_free(idx);
        return ld_ctx_status(ctx);
    }
    char *slash = strrchr(dir, '/');
    if (slash) slash[1] = 0;
    else dir[0] = 0;
    set->files = ld_calloc(ctx, idx->n_files + 1, sizeof *set->files);
    if (!set->files) s = ld_ctx_status(ctx);
    for (size_t i = 0; !s && i < idx->n_files; i++) {
        char *p = join_path(ctx, dir, idx->files[i]);
        if (!p) {
            s = ld_ctx_status(ctx);
            break;
        }
        s = ld_safetensors_open(ctx, p, &set->files[i]);
        if (s == LD_ERR_NOT_FOUND) s = ld_error(ctx, LD_ERR_NOT_FOUND, "%s: shard '%s' listed in the weight_map does not exist (%s)", index_path, idx->files[i], p);
        ld_free(ctx, p);
        if (!s) set->n_files++;
    }
    /* Every listed tensor is in its shard. */
    for (size_t i = 0; !s && i < idx->n; i++) {
        size_t f = 0;
        while (idx->files[f] != idx->map[i].value) f++;
        if (!ld_safetensors_find(set->files[f], idx->map[i].key))
            s = ld_error(ctx, LD_ERR_FORMAT, "%s: tensor '%s' is listed in shard '%s' but that file has no such tensor", index_path, idx->map[i].key, idx->map[i].value);
    }
    /* Every tensor of every shard is listed, for that shard. */
    for (size_t f = 0; !s && f < set->n_files; f++) {
        for (size_t i = 0; !s && i < ld_safetensors_count(set->files[f]); i++) {
            const char *name = ld_safetensors_at(set->files[f], i)->name;
            ld_str_pair key = {name, NULL};
            const ld_str_pair *p = bsearch(&key, idx->map, idx->n, sizeof key, cmp_pair);
            if (!p) s = ld_error(ctx, LD_ERR_FORMAT, "%s: shard '%s' holds tensor '%s', which the weight_map does not list", index_path, idx->files[f], name);
            else if (p->value != idx->files[f]) s = ld_error(ctx, LD_ERR_FORMAT, "%s: tensor '%s' is in shard '%s' but the weight_map puts it in '%s' (a tensor may be in only one shard)", index_path, name, idx->files[f], p->value);
        }
    }
    ld_free(ctx, dir);
    ld_hf_index_free(idx);
    return s;
}

ld_status ld_st_set_open(ld_ctx *ctx, const char *path, ld_st_set **out) {
    if (!out || !path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_st_set_open: NULL argument");
    *out = NULL;
    ld_st_set *set = ld_calloc(ctx, 1, sizeof *set);
    if (!set) return ld_ctx_status(ctx);
    set->ctx = ctx;
    ld_status s = LD_OK;
    struct stat sb;
    char *single = NULL, *index = NULL;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        index = join_path(ctx, path, "model.safetensors.index.json");
        single = join_path(ctx, path, "model.safetensors");
        if (!index || !single) s = ld_ctx_status(ctx);
        else if (stat(index, &sb) != 0) {
            ld_free(ctx, index);
            index = NULL;
            if (stat(single, &sb) != 0) s = ld_error(ctx, LD_ERR_NOT_FOUND, "%s: neither model.safetensors.index.json nor model.safetensors exists", path);
        }
    } else if (ends_with(path, ".json")) {
        index = ld_strdup(ctx, path);
        if (!index) s = ld_ctx_status(ctx);
    } else {
        single = ld_strdup(ctx, path);
        if (!single) s = ld_ctx_status(ctx);
    }
    if (!s && index) s = set_from_index(set, index);
    else if (!s) {
        set->files = ld_calloc(ctx, 1, sizeof *set->files);
        s = set->files ? ld_safetensors_open(ctx, single, &set->files[0]) : ld_ctx_status(ctx);
        if (!s) set->n_files = 1;
    }
    ld_free(ctx, index);
    ld_free(ctx, single);
    size_t total = 0;
    for (size_t f = 0; !s && f < set->n_files; f++) total += ld_safetensors_count(set->files[f]);
    if (!s) {
        set->all = ld_calloc(ctx, total + 1, sizeof *set->all);
        if (!set->all) s = ld_ctx_status(ctx);
    }
    for (size_t f = 0; !s && f < set->n_files; f++)
        for (size_t i = 0; i < ld_safetensors_count(set->files[f]); i++) set->all[set->n++] = ld_safetensors_at(set->files[f], i);
    if (!s) {
        qsort(set->all, set->n, sizeof *set->all, cmp_info_ptr);
        for (size_t i = 1; i < set->n && !s; i++)
            if (!strcmp(set->all[i]->name, set->all[i - 1]->name))
                s = ld_error(ctx, LD_ERR_FORMAT, "%s: tensor '%s' is in more than one shard", path, set->all[i]->name);
    }
    if (s) {
        ld_st_set_close(set);
        return s;
    }
    *out = set;
    return LD_OK;
}

size_t ld_st_set_count(const ld_st_set *set) {
    return set ? set->n : 0;
}
const ld_tensor_info *ld_st_set_at(const ld_st_set *set, size_t i) {
    return set && i < set->n ? set->all[i] : NULL;
}
const ld_tensor_info *ld_st_set_find(const ld_st_set *set, const char *name) {
    if (!set || !name) return NULL;
    ld_tensor_info key;
    key.name = name;
    const ld_tensor_info *kp = &key;
    const ld_tensor_info *const *p = bsearch(&kp, set->all, set->n, sizeof *set->all, cmp_info_ptr);
    return p ? *p : NULL;
}
ld_status ld_st_set_get(ld_ctx *ctx, const ld_st_set *set, const char *name, const ld_tensor_info **out) {
    *out = ld_st_set_find(set, name);
    if (!*out) return ld_error(ctx, LD_ERR_NOT_FOUND, "no tensor named '%s' in the model's safetensors files", name ? name : "(null)");
    return LD_OK;
}
size_t ld_st_set_file_count(const ld_st_set *set) {
    return set ? set->n_files : 0;
}
const ld_safetensors *ld_st_set_file(const ld_st_set *set, size_t i) {
    return set && i < set->n_files ? set->files[i] : NULL;
}

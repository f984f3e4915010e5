/* tokenizer/tokenizer_json.c — Hugging Face tokenizer.json for byte-level BPE: read (with
 * errors naming the file and JSON path) and write (loadable by transformers and
 * @huggingface/tokenizers). Supported subset: docs/formats/tokenizer-json.md. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "liandan/io.h"
#include "tokenizer/tok_internal.h"

#define TOKENIZER_JSON_MAX ((size_t)256 << 20)

static const cJSON *get(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

/* Which of our pre-tokenizers a tokenizer.json pre_tokenizer is; error if none. */
static ld_status read_pretokenizer(ld_ctx *ctx, const char *name, const cJSON *pt, ld_pretokenizer *out) {
    const cJSON *type = pt ? get(pt, "type") : NULL;
    if (!cJSON_IsString(type))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: pre_tokenizer: only ByteLevel (optionally after a Split regex) is supported", name);
    if (!strcmp(type->valuestring, "ByteLevel")) {
        const cJSON *ur = get(pt, "use_regex"), *aps = get(pt, "add_prefix_space");
        if (cJSON_IsFalse(ur)) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: pre_tokenizer: ByteLevel without a regex", name);
        if (cJSON_IsTrue(aps)) return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: pre_tokenizer: add_prefix_space = true", name);
        *out = LD_PRETOK_GPT2;
        return LD_OK;
    }
    const cJSON *seq = get(pt, "pretokenizers");
    if (!strcmp(type->valuestring, "Sequence") && cJSON_IsArray(seq) && cJSON_GetArraySize(seq) == 2) {
        const cJSON *split = cJSON_GetArrayItem(seq, 0), *bl = cJSON_GetArrayItem(seq, 1);
        const cJSON *pat = get(split, "pattern"), *re = pat ? get(pat, "Regex") : NULL, *st = get(split, "type");
        const cJSON *blt = get(bl, "type");
        if (cJSON_IsString(st) && !strcmp(st->valuestring, "Split") && cJSON_IsString(re) && cJSON_IsString(blt) &&
            !strcmp(blt->valuestring, "ByteLevel")) {
            for (int k = 0; k < LD_PRETOK_COUNT; k++)
                if (!strcmp(re->valuestring, ld_pretokenizer_regex((ld_pretokenizer)k))) {
                    *out = (ld_pretokenizer)k;
                    return LD_OK;
                }
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: pre_tokenizer.pretokenizers[0].pattern.Regex: this regex is not "
                            "one of GPT-2, Llama-3, Qwen2's", name);
        }
    }
    return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: pre_tokenizer of type '%s' is not supported", name, type->valuestring);
}

static ld_status parse(ld_ctx *ctx, const char *name, const cJSON *root, ld_tokenizer **out) {
    const cJSON *model = get(root, "model");
    const cJSON *mtype = model ? get(model, "type") : NULL;
    if (!cJSON_IsObject(model)) return ld_error(ctx, LD_ERR_FORMAT, "%s: 'model' is missing", name);
    if (mtype && (!cJSON_IsString(mtype) || strcmp(mtype->valuestring, "BPE")))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (BPE)", name,
                        cJSON_IsString(mtype) ? mtype->valuestring : "?");
    if (cJSON_IsTrue(get(model, "byte_fallback")))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model.byte_fallback = true is not supported", name);
    const cJSON *csp = get(model, "continuing_subword_prefix"), *eow = get(model, "end_of_word_suffix");
    if ((cJSON_IsString(csp) && csp->valuestring[0]) || (cJSON_IsString(eow) && eow->valuestring[0]))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: subword prefixes/suffixes are not supported", name);
    const cJSON *norm = get(root, "normalizer");
    if (norm) {
        const cJSON *nt = get(norm, "type");
        if (!cJSON_IsString(nt) || strcmp(nt->valuestring, "NFC"))
            return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: normalizer '%s' is not supported", name,
                            cJSON_IsString(nt) ? nt->valuestring : "?");
        ld_log(ctx, LD_LOG_WARN, "%s: NFC normalizer not applied (input is assumed NFC already)", name);
    }
    ld_pretokenizer kind = LD_PRETOK_GPT2;
    ld_status st = read_pretokenizer(ctx, name, get(root, "pre_tokenizer"), &kind);
    if (st) return st;
    const cJSON *vocab = get(model, "vocab"), *merges = get(model, "merges"), *added = get(root, "added_tokens");
    if (!cJSON_IsObject(vocab)) return ld_error(ctx, LD_ERR_FORMAT, "%s: model.vocab must be an object", name);
    if (merges && !cJSON_IsArray(merges)) return ld_error(ctx, LD_ERR_FORMAT, "%s: model.merges must be an array", name);
    if (added && !cJSON_IsArray(added)) return ld_error(ctx, LD_ERR_FORMAT, "%s: added_tokens must be an array", name);
    /* vocabulary size: the largest id + 1, ids dense */
    int64_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, vocab) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > (1 << 24) || it->valuedouble != (int64_t)it->valuedouble)
            return ld_error(ctx, LD_ERR_FORMAT, "%s: model.vocab['%.40s']: id must be an integer in 0..16777216", name, it->string);
        if ((int64_t)it->valuedouble + 1 > n) n = (int64_t)it->valuedouble + 1;
    }
    cJSON_ArrayForEach(it, added) {
        const cJSON *id = get(it, "id"), *content = get(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble > (1 << 24) ||
            id->valuedouble != (int64_t)id->valuedouble || !cJSON_IsString(content) || !content->valuestring[0])
            return ld_error(ctx, LD_ERR_FORMAT, "%s: added_tokens: each needs an integer 'id' and non-empty 'content'", name);
        if ((int64_t)id->valuedouble + 1 > n) n = (int64_t)id->valuedouble + 1;
    }
    if (n == 0) return ld_error(ctx, LD_ERR_FORMAT, "%s: the vocabulary is empty", name);
    /* ids are dense, so the largest one is below the number of entries: check before
     * allocating, or a tiny file with one huge id would allocate for all the ids below it */
    int64_t n_entries = (int64_t)cJSON_GetArraySize(vocab) + (added ? cJSON_GetArraySize(added) : 0);
    if (n > n_entries)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: token id %lld is beyond the %lld entries of model.vocab and added_tokens "
                        "(ids must be 0..N-1 without gaps)", name, (long long)n - 1, (long long)n_entries);
    ld_tokenizer *t = ld_tokenizer_alloc(ctx, n);
    if (!t) return ld_ctx_status(ctx);
    t->kind = LD_TOK_BPE;
    /* added tokens first: their content is their text, not a byte-level spelling */
    int n_added = added ? cJSON_GetArraySize(added) : 0;
    t->specials = ld_calloc(ctx, (size_t)n_added + 1, sizeof *t->specials);
    if (!t->specials) goto oom;
    cJSON_ArrayForEach(it, added) {
        int32_t id = (int32_t)get(it, "id")->valuedouble;
        const char *c = get(it, "content")->valuestring;
        if (t->tok_bytes[id] && strcmp(t->tok_bytes[id], c)) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: added_tokens: id %d is used twice", name, id);
            goto fail;
        }
        if (!t->tok_bytes[id] && !(t->tok_bytes[id] = ld_strdup(ctx, c))) goto oom;
        t->tok_len[id] = (uint32_t)strlen(c);
        t->is_special[id] = true;
        ld_special *sp = &t->specials[t->n_specials++];
        if (!(sp->text = ld_strdup(ctx, c))) goto oom;
        sp->len = strlen(c), sp->id = id;
    }
    cJSON_ArrayForEach(it, vocab) {
        int32_t id = (int32_t)it->valuedouble;
        if (t->is_special[id]) {
            if (strcmp(t->tok_bytes[id], it->string)) {
                st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.vocab['%.40s']: id %d is an added token with other content",
                              name, it->string, id);
                goto fail;
            }
            continue;
        }
        if (t->tok_bytes[id]) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.vocab['%.40s']: id %d is used twice", name, it->string, id);
            goto fail;
        }
        size_t len = strlen(it->string);
        unsigned char *raw = ld_alloc(ctx, len + 1);
        if (!raw) goto oom;
        long rl = ld_bytelevel_to_bytes(it->string, len, raw);
        if (rl <= 0) {
            ld_free(ctx, raw);
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.vocab['%.40s'] (id %d) is not a byte-level token", name, it->string, id);
            goto fail;
        }
        t->tok_bytes[id] = (char *)raw;
        t->tok_len[id] = (uint32_t)rl;
    }
    for (int64_t id = 0; id < n; id++)
        if (!t->tok_bytes[id]) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: no token has id %lld (ids must be 0..%lld without gaps)", name,
                          (long long)id, (long long)n - 1);
            goto fail;
        }
    /* merges: "a b" strings or [a, b] pairs, in rank order */
    int n_merges = merges ? cJSON_GetArraySize(merges) : 0;
    t->merge_list = ld_calloc(ctx, (size_t)n_merges + 1, sizeof *t->merge_list);
    if (!t->merge_list) goto oom;
    ld_strmap spell; /* byte-level spelling -> id, for the merge lookups */
    if ((st = ld_strmap_init(ctx, &spell, (size_t)n))) goto fail;
    cJSON_ArrayForEach(it, vocab) {
        int64_t *v;
        if ((st = ld_strmap_put(&spell, it->string, strlen(it->string), (int64_t)it->valuedouble, &v))) break;
    }
    int r = 0;
    cJSON_ArrayForEach(it, merges) {
        if (st) break;
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if (cJSON_IsString(it)) {
            const char *sp = strchr(it->valuestring, ' ');
            if (sp) a = it->valuestring, la = (size_t)(sp - a), b = sp + 1, lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring, b = cJSON_GetArrayItem(it, 1)->valuestring;
            la = strlen(a), lb = strlen(b);
        }
        if (!a) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", name, r);
            break;
        }
        int64_t *ia = ld_strmap_get(&spell, a, la), *ib = ld_strmap_get(&spell, b, lb);
        if (!ia || !ib) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.merges[%d]: token '%.*s' is not in the vocabulary", name, r,
                          (int)(ia ? lb : la), ia ? b : a);
            break;
        }
        t->merge_list[r][0] = (int32_t)*ia, t->merge_list[r][1] = (int32_t)*ib;
        r++;
    }
    ld_strmap_free(&spell);
    if (st) goto fail;
    t->n_merges = r;
    if ((st = ld_pretok_init(ctx, &t->pretok, kind)) || (st = ld_tokenizer_finish(t))) {
        ld_error_wrap(ctx, st, "%s: ", name);
        goto fail;
    }
    *out = t;
    return LD_OK;
oom:
    st = ld_ctx_status(ctx);
fail:
    ld_tokenizer_free(t);
    return st;
}

ld_status ld_tokenizer_load_memory(ld_ctx *ctx, const char *name, const char *json, size_t len, ld_tokenizer **out) {
    if (!json || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tokenizer_load_memory: NULL argument");
    *out = NULL;
    if (!name) name = "tokenizer.json";
    cJSON *root = NULL;
    ld_status st = ld_json_parse(ctx, name, json, len, &root);
    if (st) return st;
    if (!cJSON_IsObject(root)) st = ld_error(ctx, LD_ERR_FORMAT, "%s: expected a JSON object", name);
    else st = parse(ctx, name, root, out);
    ld_json_free(root);
    return st;
}

ld_status ld_tokenizer_load(ld_ctx *ctx, const char *path, ld_tokenizer **out) {
    char *text = NULL;
    size_t len = 0;
    if (!out) return LD_ERR_INVALID_ARG;
    *out = NULL;
    ld_status st = ld_file_read(ctx, path, TOKENIZER_JSON_MAX, &text, &len);
    if (st) return st;
    st = ld_tokenizer_load_memory(ctx, path, text, len, out);
    ld_free(ctx, text);
    return st;
}

/* The byte-level spelling of a token as a NUL-terminated string (malloc'd). */
static char *spelling(const ld_tokenizer *t, int64_t id) {
    if (t->is_special[id]) return strdup(t->tok_bytes[id]);
    char *s = malloc(2 * (size_t)t->tok_len[id] + 1);
    if (!s) return NULL;
    size_t n = t->kind == LD_TOK_BPE ? ld_bytes_to_bytelevel((const unsigned char *)t->tok_bytes[id], t->tok_len[id], s)
                                     : (memcpy(s, t->tok_bytes[id], t->tok_len[id]), t->tok_len[id]);
    s[n] = 0;
    return s;
}

ld_status ld_tokenizer_save(const ld_tokenizer *t, const char *path) {
    if (!t || !path) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    if (t->kind != LD_TOK_BPE) return ld_error(ctx, LD_ERR_UNSUPPORTED, "only byte-level BPE tokenizers are saved as tokenizer.json");
    cJSON *root = cJSON_CreateObject(), *added = NULL, *model = NULL, *vocab = NULL, *merges = NULL;
    char **sp = calloc((size_t)t->n_vocab, sizeof *sp);
    bool ok = root && sp;
    for (int64_t id = 0; ok && id < t->n_vocab; id++) ok = (sp[id] = spelling(t, id)) != NULL;
    if (ok) {
        cJSON_AddStringToObject(root, "version", "1.0");
        cJSON_AddNullToObject(root, "truncation");
        cJSON_AddNullToObject(root, "padding");
        added = cJSON_AddArrayToObject(root, "added_tokens");
        for (int i = 0; i < t->n_specials; i++) {
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", t->specials[i].id);
            cJSON_AddStringToObject(a, "content", t->specials[i].text);
            cJSON_AddBoolToObject(a, "single_word", false);
            cJSON_AddBoolToObject(a, "lstrip", false);
            cJSON_AddBoolToObject(a, "rstrip", false);
            cJSON_AddBoolToObject(a, "normalized", false);
            cJSON_AddBoolToObject(a, "special", true);
            cJSON_AddItemToArray(added, a);
        }
        cJSON_AddNullToObject(root, "normalizer");
        cJSON *bl = cJSON_CreateObject();
        cJSON_AddStringToObject(bl, "type", "ByteLevel");
        cJSON_AddBoolToObject(bl, "add_prefix_space", false);
        cJSON_AddBoolToObject(bl, "trim_offsets", true);
        if (t->pretok.kind == LD_PRETOK_GPT2) {
            cJSON_AddBoolToObject(bl, "use_regex", true);
            cJSON_AddItemToObject(root, "pre_tokenizer", bl);
        } else {
            cJSON_AddBoolToObject(bl, "use_regex", false);
            cJSON *seq = cJSON_CreateObject(), *arr, *split = cJSON_CreateObject(), *pat = cJSON_CreateObject();
            cJSON_AddStringToObject(seq, "type", "Sequence");
            arr = cJSON_AddArrayToObject(seq, "pretokenizers");
            cJSON_AddStringToObject(split, "type", "Split");
            cJSON_AddStringToObject(pat, "Regex", ld_pretokenizer_regex(t->pretok.kind));
            cJSON_AddItemToObject(split, "pattern", pat);
            cJSON_AddStringToObject(split, "behavior", "Isolated");
            cJSON_AddBoolToObject(split, "invert", false);
            cJSON_AddItemToArray(arr, split);
            cJSON_AddItemToArray(arr, bl);
            cJSON_AddItemToObject(root, "pre_tokenizer", seq);
        }
        cJSON_AddNullToObject(root, "post_processor");
        cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
        cJSON_AddStringToObject(dec, "type", "ByteLevel");
        cJSON_AddBoolToObject(dec, "add_prefix_space", true);
        cJSON_AddBoolToObject(dec, "trim_offsets", true);
        cJSON_AddBoolToObject(dec, "use_regex", true);
        model = cJSON_AddObjectToObject(root, "model");
        cJSON_AddStringToObject(model, "type", "BPE");
        cJSON_AddNullToObject(model, "dropout");
        cJSON_AddNullToObject(model, "unk_token");
        cJSON_AddNullToObject(model, "continuing_subword_prefix");
        cJSON_AddNullToObject(model, "end_of_word_suffix");
        cJSON_AddBoolToObject(model, "fuse_unk", false);
        cJSON_AddBoolToObject(model, "byte_fallback", false);
        cJSON_AddBoolToObject(model, "ignore_merges", false);
        vocab = cJSON_AddObjectToObject(model, "vocab");
        for (int64_t id = 0; id < t->n_vocab; id++) cJSON_AddNumberToObject(vocab, sp[id], (double)id);
        merges = cJSON_AddArrayToObject(model, "merges");
        for (int64_t r = 0; r < t->n_merges; r++) {
            cJSON *pair = cJSON_CreateArray();
            cJSON_AddItemToArray(pair, cJSON_CreateString(sp[t->merge_list[r][0]]));
            cJSON_AddItemToArray(pair, cJSON_CreateString(sp[t->merge_list[r][1]]));
            cJSON_AddItemToArray(merges, pair);
        }
    }
    char *text = ok ? cJSON_Print(root) : NULL;
    for (int64_t id = 0; sp && id < t->n_vocab; id++) free(sp[id]);
    free(sp);
    cJSON_Delete(root);
    if (!text) return ld_error(ctx, LD_ERR_NOMEM, "out of memory writing %s", path);
    ld_status st = ld_file_write_atomic(ctx, path, text, strlen(text));
    free(text);
    return st;
}

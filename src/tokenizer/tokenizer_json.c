/* tokenizer/tokenizer_json.c — Hugging Face tokenizer.json: read (with errors naming the file
 * and JSON path) and write (loadable by transformers and the Rust tokenizers). Models BPE
 * (byte-level, or over characters with byte fallback as SentencePiece-converted models) and
 * WordPiece; the normalizers, pre-tokenizers and post-processors in docs/formats/tokenizer-json.md. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "liandan/io.h"
#include "tokenizer/tok_internal.h"

#define TOKENIZER_JSON_MAX ((size_t)256 << 20)
#define META "\xe2\x96\x81" /* ▁ */

static const cJSON *get(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

static const char *type_of(const cJSON *o) {
    const cJSON *t = get(o, "type");
    return cJSON_IsString(t) ? t->valuestring : "";
}

static const char *str_of(const cJSON *o, const char *key, const char *dflt) {
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static bool bool_of(const cJSON *o, const char *key, bool dflt) {
    const cJSON *v = get(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* What the reader learned beyond the steps it added to the tokenizer. */
typedef struct reading {
    ld_ctx *ctx;
    const char *name;
    ld_tokenizer *t;
    bool byte_level;
} reading;

/* ---- normalizer ---- */
static ld_status read_normalizer(reading *r, const cJSON *n, const char *path) {
    ld_tokenizer *t = r->t;
    const char *ty = type_of(n);
    static const struct {
        const char *name;
        ld_norm_kind kind;
    } plain[] = {{"NFC", LD_NORM_NFC}, {"NFD", LD_NORM_NFD}, {"NFKC", LD_NORM_NFKC}, {"NFKD", LD_NORM_NFKD},
                 {"Lowercase", LD_NORM_LOWERCASE}, {"StripAccents", LD_NORM_STRIP_ACCENTS}};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (!strcmp(ty, plain[i].name)) return ld_tokenizer_add_norm(t, plain[i].kind, 0, NULL, NULL);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *seq = get(n, "normalizers"), *it;
        if (!cJSON_IsArray(seq)) return ld_error(r->ctx, LD_ERR_FORMAT, "%s: %s.normalizers must be an array", r->name, path);
        int k = 0;
        cJSON_ArrayForEach(it, seq) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.normalizers[%d]", path, k++);
            ld_status st = read_normalizer(r, it, sub);
            if (st) return st;
        }
        return LD_OK;
    }
    if (!strcmp(ty, "BertNormalizer")) {
        bool lower = bool_of(n, "lowercase", true);
        unsigned f = (bool_of(n, "clean_text", true) ? LD_BERT_CLEAN : 0) | (bool_of(n, "handle_chinese_chars", true) ? LD_BERT_CHINESE : 0) |
                     (bool_of(n, "strip_accents", lower) ? LD_BERT_STRIP_ACCENTS : 0) | (lower ? LD_BERT_LOWERCASE : 0);
        return ld_tokenizer_add_norm(t, LD_NORM_BERT, f, NULL, NULL);
    }
    if (!strcmp(ty, "Prepend")) {
        const char *p = str_of(n, "prepend", NULL);
        if (!p) return ld_error(r->ctx, LD_ERR_FORMAT, "%s: %s.prepend must be a string", r->name, path);
        t->prepend_scheme = LD_PREPEND_ALWAYS, t->legacy_prepend = true;
        return ld_tokenizer_add_norm(t, LD_NORM_PREPEND, LD_PREPEND_ALWAYS, p, NULL);
    }
    if (!strcmp(ty, "Replace")) {
        const cJSON *pat = get(n, "pattern");
        const char *s = pat ? str_of(pat, "String", NULL) : NULL, *c = str_of(n, "content", NULL);
        if (!s || !*s || !c)
            return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s: only Replace of a non-empty String pattern is supported", r->name, path);
        if (!strcmp(s, " ") && !strcmp(c, META)) t->metaspace = true;
        return ld_tokenizer_add_norm(t, LD_NORM_REPLACE, 0, s, c);
    }
    return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s: normalizer '%s' is not supported", r->name, path, ty);
}

/* ---- pre-tokenizer ---- */
static ld_status read_pre(reading *r, const cJSON *p, const char *path) {
    ld_tokenizer *t = r->t;
    const char *ty = type_of(p);
    if (!strcmp(ty, "Sequence")) {
        const cJSON *seq = get(p, "pretokenizers"), *it;
        if (!cJSON_IsArray(seq)) return ld_error(r->ctx, LD_ERR_FORMAT, "%s: %s.pretokenizers must be an array", r->name, path);
        int k = 0;
        cJSON_ArrayForEach(it, seq) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.pretokenizers[%d]", path, k++);
            ld_status st = read_pre(r, it, sub);
            if (st) return st;
        }
        return LD_OK;
    }
    ld_status st = LD_OK;
    if (!strcmp(ty, "ByteLevel")) {
        if (bool_of(p, "add_prefix_space", false))
            return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s: ByteLevel add_prefix_space = true is not supported", r->name, path);
        r->byte_level = true;
        if (bool_of(p, "use_regex", true)) st = ld_tokenizer_add_split(t, LD_SPLIT_REGEX, ld_pretokenizer_regex(LD_PRETOK_GPT2), 0);
    } else if (!strcmp(ty, "Split")) {
        const cJSON *pat = get(p, "pattern");
        const char *re = pat ? str_of(pat, "Regex", NULL) : NULL, *lit = pat ? str_of(pat, "String", NULL) : NULL;
        const char *beh = str_of(p, "behavior", "Isolated");
        bool invert = bool_of(p, "invert", false);
        ld_split_kind k = !strcmp(beh, "Isolated") && !invert ? LD_SPLIT_REGEX
                          : !strcmp(beh, "Removed") && !invert ? LD_SPLIT_REGEX_REMOVED
                          : !strcmp(beh, "Removed") && invert  ? LD_SPLIT_REGEX_MATCHES
                                                               : LD_SPLIT_COUNT;
        if ((!re && !lit) || k == LD_SPLIT_COUNT)
            return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s: Split with behavior '%s'%s is not supported (Isolated, Removed)",
                            r->name, path, beh, invert ? " inverted" : "");
        st = ld_tokenizer_add_split(t, k, re ? re : lit, re ? 0 : 1);
    } else if (!strcmp(ty, "Metaspace")) {
        const char *rep = str_of(p, "replacement", META), *scheme = str_of(p, "prepend_scheme", NULL);
        int sch = scheme ? (!strcmp(scheme, "always") ? LD_PREPEND_IF_ABSENT : !strcmp(scheme, "first") ? LD_PREPEND_FIRST : -1)
                         : bool_of(p, "add_prefix_space", true) ? LD_PREPEND_IF_ABSENT : -1;
        if (strcmp(rep, META))
            return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s: Metaspace replacement other than U+2581", r->name, path);
        t->metaspace = true, t->prepend_scheme = sch;
        if (!(st = ld_tokenizer_add_norm(t, LD_NORM_REPLACE, 0, " ", META)) && sch >= 0)
            st = ld_tokenizer_add_norm(t, LD_NORM_PREPEND, (unsigned)sch, META, NULL);
        if (!st && bool_of(p, "split", true)) st = ld_tokenizer_add_split(t, LD_SPLIT_METASPACE, NULL, 0);
    } else if (!strcmp(ty, "BertPreTokenizer")) {
        st = ld_tokenizer_add_split(t, LD_SPLIT_BERT, NULL, 0);
    } else if (!strcmp(ty, "Whitespace")) {
        st = ld_tokenizer_add_split(t, LD_SPLIT_REGEX_MATCHES, "\\w+|[^\\w\\s]+", 0);
    } else if (!strcmp(ty, "WhitespaceSplit")) {
        st = ld_tokenizer_add_split(t, LD_SPLIT_REGEX_MATCHES, "\\S+", 0);
    } else if (!strcmp(ty, "Digits")) {
        st = ld_tokenizer_add_split(t, LD_SPLIT_REGEX, bool_of(p, "individual_digits", false) ? "\\p{N}" : "\\p{N}+", 0);
    } else if (!strcmp(ty, "Punctuation")) {
        if (strcmp(str_of(p, "behavior", "Isolated"), "Isolated"))
            return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s: Punctuation behavior must be Isolated", r->name, path);
        st = ld_tokenizer_add_split(t, LD_SPLIT_REGEX, "\\p{P}|[!-/:-@\\[-`{-~]", 0);
    } else {
        return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: %s: pre_tokenizer of type '%s' is not supported", r->name, path, ty);
    }
    if (st) ld_error_wrap(r->ctx, st, "%s: %s: ", r->name, path);
    return st;
}

/* ---- post-processor: the ids around a single sequence ---- */
static ld_status post_add(reading *r, bool before, const char *tok, const cJSON *id_json) {
    ld_tokenizer *t = r->t;
    int32_t id = -1;
    if (cJSON_IsNumber(id_json)) id = (int32_t)id_json->valuedouble;
    else if (tok) id = ld_tokenizer_token_id(t, tok);
    if (id < 0 || id >= t->n_vocab)
        return ld_error(r->ctx, LD_ERR_FORMAT, "%s: post_processor: token '%.40s' is not in the vocabulary", r->name, tok ? tok : "?");
    int *n = before ? &t->n_post_pre : &t->n_post_suf;
    if (*n == 4) return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: post_processor: more than 4 special tokens on one side", r->name);
    (before ? t->post_pre : t->post_suf)[(*n)++] = id;
    return LD_OK;
}

static ld_status read_post(reading *r, const cJSON *p) {
    const char *ty = type_of(p);
    ld_status st = LD_OK;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *it;
        cJSON_ArrayForEach(it, get(p, "processors")) if ((st = read_post(r, it))) return st;
        return LD_OK;
    }
    if (!strcmp(ty, "ByteLevel")) return LD_OK; /* offsets only */
    if (!strcmp(ty, "BertProcessing") || !strcmp(ty, "RobertaProcessing")) {
        const cJSON *cls = get(p, "cls"), *sep = get(p, "sep");
        if (!cJSON_IsArray(cls) || !cJSON_IsArray(sep) || cJSON_GetArraySize(cls) != 2 || cJSON_GetArraySize(sep) != 2)
            return ld_error(r->ctx, LD_ERR_FORMAT, "%s: post_processor.cls / .sep must be [token, id]", r->name);
        if ((st = post_add(r, true, NULL, cJSON_GetArrayItem(cls, 1))) || (st = post_add(r, false, NULL, cJSON_GetArrayItem(sep, 1))))
            return st;
        return LD_OK;
    }
    if (!strcmp(ty, "TemplateProcessing")) {
        const cJSON *single = get(p, "single"), *sp = get(p, "special_tokens"), *it;
        if (!cJSON_IsArray(single)) return ld_error(r->ctx, LD_ERR_FORMAT, "%s: post_processor.single must be an array", r->name);
        bool before = true;
        cJSON_ArrayForEach(it, single) {
            const cJSON *seq = get(it, "Sequence"), *stok = get(it, "SpecialToken");
            if (seq) {
                before = false;
                continue;
            }
            const char *id = stok ? str_of(stok, "id", NULL) : NULL;
            if (!id) return ld_error(r->ctx, LD_ERR_FORMAT, "%s: post_processor.single: items are Sequence or SpecialToken", r->name);
            const cJSON *entry = sp ? get(sp, id) : NULL, *ids = entry ? get(entry, "ids") : NULL;
            if (cJSON_IsArray(ids)) {
                const cJSON *x;
                cJSON_ArrayForEach(x, ids) if ((st = post_add(r, before, id, x))) return st;
            } else if ((st = post_add(r, before, id, NULL))) {
                return st;
            }
        }
        return LD_OK;
    }
    return ld_error(r->ctx, LD_ERR_UNSUPPORTED, "%s: post_processor of type '%s' is not supported", r->name, ty);
}

/* ---- the whole file ---- */
static ld_status parse(ld_ctx *ctx, const char *name, const cJSON *root, ld_tokenizer **out) {
    const cJSON *model = get(root, "model");
    if (!cJSON_IsObject(model)) return ld_error(ctx, LD_ERR_FORMAT, "%s: 'model' is missing", name);
    const char *mtype = get(model, "type") ? type_of(model) : "BPE";
    bool wordpiece = !strcmp(mtype, "WordPiece");
    if (!wordpiece && strcmp(mtype, "BPE"))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model.type '%s' is not supported (BPE, WordPiece)", name, mtype);
    const cJSON *csp = get(model, "continuing_subword_prefix"), *eow = get(model, "end_of_word_suffix"), *dropout = get(model, "dropout");
    if (!wordpiece && ((cJSON_IsString(csp) && csp->valuestring[0]) || (cJSON_IsString(eow) && eow->valuestring[0])))
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: BPE subword prefixes/suffixes are not supported", name);
    if (cJSON_IsNumber(dropout) && dropout->valuedouble != 0)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: model.dropout is not supported", name);
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
    reading r = {ctx, name, t, false};
    ld_status st = LD_OK;
    t->kind = wordpiece ? LD_TOK_WORDPIECE : LD_TOK_BPE;
    t->byte_fallback = bool_of(model, "byte_fallback", false);
    t->ignore_merges = bool_of(model, "ignore_merges", false);
    t->fuse_unk = bool_of(model, "fuse_unk", false);
    if (wordpiece) {
        const cJSON *mx = get(model, "max_input_chars_per_word");
        if (!(t->wp_prefix = ld_strdup(ctx, cJSON_IsString(csp) ? csp->valuestring : "##"))) goto oom;
        if (cJSON_IsNumber(mx)) t->wp_max_chars = mx->valuedouble < 1 ? 1 : mx->valuedouble > 1e6 ? 1000000 : (int)mx->valuedouble;
        t->strip_first_space = true;
    }
    const cJSON *norm = get(root, "normalizer"), *pre = get(root, "pre_tokenizer"), *post = get(root, "post_processor");
    if ((norm && (st = read_normalizer(&r, norm, "normalizer"))) || (pre && (st = read_pre(&r, pre, "pre_tokenizer")))) goto fail;
    const cJSON *dec = get(root, "decoder");
    if (!r.byte_level && dec && !strcmp(type_of(dec), "ByteLevel")) r.byte_level = true;
    t->byte_level = r.byte_level && !wordpiece;
    if (t->prepend_scheme >= 0 && t->metaspace) t->strip_first_space = true;
    /* added tokens first: their content is their text, never a byte-level spelling */
    cJSON_ArrayForEach(it, added) {
        int32_t id = (int32_t)get(it, "id")->valuedouble;
        const char *c = get(it, "content")->valuestring;
        if (t->tok_bytes[id] && strcmp(t->tok_bytes[id], c)) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: added_tokens: id %d is used twice", name, id);
            goto fail;
        }
        if (!t->tok_bytes[id] && (st = ld_tokenizer_set_token(t, id, c, strlen(c), true))) goto fail;
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
        if (!t->byte_level) {
            if (!len) {
                st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.vocab: id %d is an empty token", name, id);
                goto fail;
            }
            if ((st = ld_tokenizer_set_token(t, id, it->string, len, false))) goto fail;
            continue;
        }
        unsigned char *raw = ld_alloc(ctx, len + 1);
        if (!raw) goto oom;
        long rl = ld_bytelevel_to_bytes(it->string, len, raw);
        if (rl <= 0) {
            ld_free(ctx, raw);
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.vocab['%.40s'] (id %d) is not a byte-level token", name, it->string, id);
            goto fail;
        }
        st = ld_tokenizer_set_token(t, id, (const char *)raw, (size_t)rl, false);
        ld_free(ctx, raw);
        if (st) goto fail;
    }
    for (int64_t id = 0; id < n; id++)
        if (!t->tok_bytes[id]) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: no token has id %lld (ids must be 0..%lld without gaps)", name,
                          (long long)id, (long long)n - 1);
            goto fail;
        }
    const char *unk = str_of(model, "unk_token", NULL);
    if (unk) {
        int64_t *v = NULL;
        for (int i = 0; i < t->n_specials && !v; i++)
            if (!strcmp(t->specials[i].text, unk)) t->unk = t->specials[i].id, v = (int64_t *)1;
        if (!v) {
            cJSON *u = cJSON_GetObjectItemCaseSensitive(vocab, unk);
            if (cJSON_IsNumber(u)) t->unk = (int32_t)u->valuedouble;
        }
    }
    /* merges: "a b" strings or [a, b] pairs, in rank order */
    int n_merges = merges ? cJSON_GetArraySize(merges) : 0;
    t->merge_list = ld_calloc(ctx, (size_t)n_merges + 1, sizeof *t->merge_list);
    if (!t->merge_list) goto oom;
    ld_strmap spell; /* spelling in the file -> id, for the merge lookups */
    if ((st = ld_strmap_init(ctx, &spell, (size_t)n))) goto fail;
    cJSON_ArrayForEach(it, vocab) {
        int64_t *v;
        if ((st = ld_strmap_put(&spell, it->string, strlen(it->string), (int64_t)it->valuedouble, &v))) break;
    }
    int rk = 0;
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
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.merges[%d]: expected \"a b\" or [\"a\", \"b\"]", name, rk);
            break;
        }
        int64_t *ia = ld_strmap_get(&spell, a, la), *ib = ld_strmap_get(&spell, b, lb);
        if (!ia || !ib) {
            st = ld_error(ctx, LD_ERR_FORMAT, "%s: model.merges[%d]: token '%.*s' is not in the vocabulary", name, rk,
                          (int)(ia ? lb : la), ia ? b : a);
            break;
        }
        t->merge_list[rk][0] = (int32_t)*ia, t->merge_list[rk][1] = (int32_t)*ib;
        rk++;
    }
    ld_strmap_free(&spell);
    if (st) goto fail;
    t->n_merges = rk;
    if (wordpiece && rk) {
        st = ld_error(ctx, LD_ERR_FORMAT, "%s: a WordPiece model has no merges", name);
        goto fail;
    }
    if ((st = ld_tokenizer_finish(t))) {
        ld_error_wrap(ctx, st, "%s: ", name);
        goto fail;
    }
    if (post && (st = read_post(&r, post))) goto fail;
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

/* ---- writing ---- */
/* The spelling of a token in the file, NUL-terminated (malloc'd). */
static char *spelling(const ld_tokenizer *t, int64_t id) {
    if (t->is_special[id] || !t->byte_level) return strdup(t->tok_bytes[id]);
    char *s = malloc(2 * (size_t)t->tok_len[id] + 1);
    if (!s) return NULL;
    size_t n = ld_bytes_to_bytelevel((const unsigned char *)t->tok_bytes[id], t->tok_len[id], s);
    s[n] = 0;
    return s;
}

static cJSON *typed(const char *type) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", type);
    return o;
}

static cJSON *string_pattern(const char *s) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "String", s);
    return p;
}

/* normalizer: the steps that are not part of a Metaspace pre-tokenizer */
static cJSON *write_normalizer(const ld_tokenizer *t) {
    cJSON *seq = cJSON_CreateArray();
    static const char *const names[] = {[LD_NORM_NFC] = "NFC", [LD_NORM_NFD] = "NFD", [LD_NORM_NFKC] = "NFKC",
                                        [LD_NORM_NFKD] = "NFKD", [LD_NORM_LOWERCASE] = "Lowercase",
                                        [LD_NORM_STRIP_ACCENTS] = "StripAccents"};
    for (int i = 0; i < t->n_norm; i++) {
        const ld_norm_op *op = &t->norm[i];
        cJSON *o = NULL;
        if (!t->legacy_prepend && t->metaspace && (op->kind == LD_NORM_PREPEND || (op->kind == LD_NORM_REPLACE && !strcmp(op->a, " "))))
            continue; /* written as the Metaspace pre-tokenizer */
        if (op->kind <= LD_NORM_STRIP_ACCENTS) o = typed(names[op->kind]);
        else if (op->kind == LD_NORM_BERT) {
            o = typed("BertNormalizer");
            cJSON_AddBoolToObject(o, "clean_text", op->flags & LD_BERT_CLEAN);
            cJSON_AddBoolToObject(o, "handle_chinese_chars", op->flags & LD_BERT_CHINESE);
            cJSON_AddBoolToObject(o, "strip_accents", op->flags & LD_BERT_STRIP_ACCENTS);
            cJSON_AddBoolToObject(o, "lowercase", op->flags & LD_BERT_LOWERCASE);
        } else if (op->kind == LD_NORM_PREPEND) {
            o = typed("Prepend");
            cJSON_AddStringToObject(o, "prepend", op->a);
        } else {
            o = typed("Replace");
            cJSON_AddItemToObject(o, "pattern", string_pattern(op->a));
            cJSON_AddStringToObject(o, "content", op->b);
        }
        cJSON_AddItemToArray(seq, o);
    }
    int n = cJSON_GetArraySize(seq);
    if (n == 0) return cJSON_Delete(seq), cJSON_CreateNull();
    if (n == 1) {
        cJSON *one = cJSON_DetachItemFromArray(seq, 0);
        cJSON_Delete(seq);
        return one;
    }
    cJSON *o = typed("Sequence");
    cJSON_AddItemToObject(o, "normalizers", seq);
    return o;
}

static cJSON *write_pre(const ld_tokenizer *t) {
    cJSON *seq = cJSON_CreateArray();
    if (t->metaspace && !t->legacy_prepend) {
        cJSON *m = typed("Metaspace");
        cJSON_AddStringToObject(m, "replacement", META);
        cJSON_AddStringToObject(m, "prepend_scheme", t->prepend_scheme == LD_PREPEND_FIRST ? "first" : t->prepend_scheme < 0 ? "never" : "always");
        bool split = false;
        for (int i = 0; i < t->n_split; i++) split |= t->split[i].kind == LD_SPLIT_METASPACE;
        cJSON_AddBoolToObject(m, "split", split);
        cJSON_AddItemToArray(seq, m);
    }
    bool gpt2_only = t->byte_level && t->n_split == 1 && t->split[0].kind == LD_SPLIT_REGEX &&
                     !strcmp(t->split[0].pattern, ld_pretokenizer_regex(LD_PRETOK_GPT2));
    for (int i = 0; i < t->n_split && !gpt2_only; i++) {
        const ld_split_op *op = &t->split[i];
        if (op->kind == LD_SPLIT_METASPACE) continue;
        if (op->kind == LD_SPLIT_BERT) {
            cJSON_AddItemToArray(seq, typed("BertPreTokenizer"));
            continue;
        }
        cJSON *s = typed("Split"), *pat = cJSON_CreateObject();
        cJSON_AddStringToObject(pat, (op->flags & 1) ? "String" : "Regex", op->pattern);
        cJSON_AddItemToObject(s, "pattern", pat);
        cJSON_AddStringToObject(s, "behavior", op->kind == LD_SPLIT_REGEX ? "Isolated" : "Removed");
        cJSON_AddBoolToObject(s, "invert", op->kind == LD_SPLIT_REGEX_MATCHES);
        cJSON_AddItemToArray(seq, s);
    }
    if (t->byte_level) {
        cJSON *bl = typed("ByteLevel");
        cJSON_AddBoolToObject(bl, "add_prefix_space", false);
        cJSON_AddBoolToObject(bl, "trim_offsets", true);
        cJSON_AddBoolToObject(bl, "use_regex", gpt2_only);
        cJSON_AddItemToArray(seq, bl);
    }
    int n = cJSON_GetArraySize(seq);
    if (n == 0) return cJSON_Delete(seq), cJSON_CreateNull();
    if (n == 1) {
        cJSON *one = cJSON_DetachItemFromArray(seq, 0);
        cJSON_Delete(seq);
        return one;
    }
    cJSON *o = typed("Sequence");
    cJSON_AddItemToObject(o, "pretokenizers", seq);
    return o;
}

static cJSON *write_post(const ld_tokenizer *t, char **sp) {
    if (!t->n_post_pre && !t->n_post_suf) return cJSON_CreateNull();
    cJSON *o = typed("TemplateProcessing"), *single = cJSON_AddArrayToObject(o, "single"), *pair = cJSON_AddArrayToObject(o, "pair");
    cJSON *specials = cJSON_AddObjectToObject(o, "special_tokens");
    for (int side = 0; side < 3; side++) {
        int n = side == 1 ? 1 : side == 0 ? t->n_post_pre : t->n_post_suf;
        for (int k = 0; k < n; k++) {
            cJSON *item = cJSON_CreateObject(), *in = cJSON_AddObjectToObject(item, side == 1 ? "Sequence" : "SpecialToken");
            int32_t id = side == 0 ? t->post_pre[k] : t->post_suf[k];
            cJSON_AddStringToObject(in, "id", side == 1 ? "A" : sp[id]);
            cJSON_AddNumberToObject(in, "type_id", 0);
            cJSON_AddItemToArray(single, item);
            cJSON_AddItemToArray(pair, cJSON_Duplicate(item, true));
            if (side != 1 && !cJSON_GetObjectItemCaseSensitive(specials, sp[id])) {
                cJSON *e = cJSON_AddObjectToObject(specials, sp[id]), *ids = cJSON_AddArrayToObject(e, "ids");
                cJSON_AddStringToObject(e, "id", sp[id]);
                cJSON_AddItemToArray(ids, cJSON_CreateNumber(id));
                cJSON *toks = cJSON_AddArrayToObject(e, "tokens");
                cJSON_AddItemToArray(toks, cJSON_CreateString(sp[id]));
            }
        }
    }
    /* pair: $A then $B with their specials (the single template twice, B's type 1) */
    cJSON *b = cJSON_CreateObject(), *bs = cJSON_AddObjectToObject(b, "Sequence");
    cJSON_AddStringToObject(bs, "id", "B");
    cJSON_AddNumberToObject(bs, "type_id", 1);
    cJSON_AddItemToArray(pair, b);
    return o;
}

static cJSON *write_decoder(const ld_tokenizer *t) {
    if (t->byte_level) {
        cJSON *d = typed("ByteLevel");
        cJSON_AddBoolToObject(d, "add_prefix_space", true);
        cJSON_AddBoolToObject(d, "trim_offsets", true);
        cJSON_AddBoolToObject(d, "use_regex", true);
        return d;
    }
    if (t->kind == LD_TOK_WORDPIECE) {
        cJSON *d = typed("WordPiece");
        cJSON_AddStringToObject(d, "prefix", t->wp_prefix ? t->wp_prefix : "##");
        cJSON_AddBoolToObject(d, "cleanup", false);
        return d;
    }
    cJSON *d = typed("Sequence"), *seq = cJSON_AddArrayToObject(d, "decoders");
    if (t->metaspace) {
        cJSON *r = typed("Replace");
        cJSON_AddItemToObject(r, "pattern", string_pattern(META));
        cJSON_AddStringToObject(r, "content", " ");
        cJSON_AddItemToArray(seq, r);
    }
    if (t->byte_fallback) cJSON_AddItemToArray(seq, typed("ByteFallback"));
    cJSON_AddItemToArray(seq, typed("Fuse"));
    if (t->strip_first_space) {
        cJSON *s = typed("Strip");
        cJSON_AddStringToObject(s, "content", " ");
        cJSON_AddNumberToObject(s, "start", 1);
        cJSON_AddNumberToObject(s, "stop", 0);
        cJSON_AddItemToArray(seq, s);
    }
    return d;
}

ld_status ld_tokenizer_save(const ld_tokenizer *t, const char *path) {
    if (!t || !path) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = t->ctx;
    if (t->kind == LD_TOK_CHAR)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "character vocabularies are saved as vocab.txt, not tokenizer.json");
    cJSON *root = cJSON_CreateObject();
    char **sp = calloc((size_t)t->n_vocab, sizeof *sp);
    bool ok = root && sp;
    for (int64_t id = 0; ok && id < t->n_vocab; id++) ok = (sp[id] = spelling(t, id)) != NULL;
    if (ok) {
        cJSON_AddStringToObject(root, "version", "1.0");
        cJSON_AddNullToObject(root, "truncation");
        cJSON_AddNullToObject(root, "padding");
        cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
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
        cJSON_AddItemToObject(root, "normalizer", write_normalizer(t));
        cJSON_AddItemToObject(root, "pre_tokenizer", write_pre(t));
        cJSON_AddItemToObject(root, "post_processor", write_post(t, sp));
        cJSON_AddItemToObject(root, "decoder", write_decoder(t));
        cJSON *model = cJSON_AddObjectToObject(root, "model");
        if (t->kind == LD_TOK_WORDPIECE) {
            cJSON_AddStringToObject(model, "type", "WordPiece");
            cJSON_AddStringToObject(model, "unk_token", t->unk >= 0 ? sp[t->unk] : "[UNK]");
            cJSON_AddStringToObject(model, "continuing_subword_prefix", t->wp_prefix ? t->wp_prefix : "##");
            cJSON_AddNumberToObject(model, "max_input_chars_per_word", t->wp_max_chars);
        } else {
            cJSON_AddStringToObject(model, "type", "BPE");
            cJSON_AddNullToObject(model, "dropout");
            if (t->unk >= 0) cJSON_AddStringToObject(model, "unk_token", sp[t->unk]);
            else cJSON_AddNullToObject(model, "unk_token");
            cJSON_AddNullToObject(model, "continuing_subword_prefix");
            cJSON_AddNullToObject(model, "end_of_word_suffix");
            cJSON_AddBoolToObject(model, "fuse_unk", t->fuse_unk);
            cJSON_AddBoolToObject(model, "byte_fallback", t->byte_fallback);
            cJSON_AddBoolToObject(model, "ignore_merges", t->ignore_merges);
        }
        cJSON *vocab = cJSON_AddObjectToObject(model, "vocab");
        for (int64_t id = 0; id < t->n_vocab; id++) cJSON_AddNumberToObject(vocab, sp[id], (double)id);
        if (t->kind == LD_TOK_BPE) {
            cJSON *merges = cJSON_AddArrayToObject(model, "merges");
            for (int64_t r = 0; r < t->n_merges; r++) {
                cJSON *pair = cJSON_CreateArray();
                cJSON_AddItemToArray(pair, cJSON_CreateString(sp[t->merge_list[r][0]]));
                cJSON_AddItemToArray(pair, cJSON_CreateString(sp[t->merge_list[r][1]]));
                cJSON_AddItemToArray(merges, pair);
            }
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

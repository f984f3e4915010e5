/* tokenizer/tokenizer.c — the tokenizer type: building its lookup structures, the encoding
 * pipeline (special tokens, then per stretch of text the normalizer steps, the pre-tokenizer
 * steps and the model, with a per-call word cache), post-processing, decoding, accessors. */
#include <stdlib.h>
#include <string.h>

#include "core/team.h"
#include "tokenizer/tok_internal.h"

ld_tokenizer *ld_tokenizer_alloc(ld_ctx *ctx, int64_t n_vocab) {
    ld_tokenizer *t = ld_calloc(ctx, 1, sizeof *t);
    if (!t) return NULL;
    t->ctx = ctx;
    t->n_vocab = n_vocab;
    t->bos = t->eos = t->pad = t->unk = t->sep = t->cls = t->mask = -1;
    t->prepend_scheme = -1;
    t->wp_max_chars = 100;
    t->tok_bytes = ld_calloc(ctx, (size_t)n_vocab + 1, sizeof *t->tok_bytes);
    t->tok_len = ld_calloc(ctx, (size_t)n_vocab + 1, sizeof *t->tok_len);
    t->tok_text = ld_calloc(ctx, (size_t)n_vocab + 1, sizeof *t->tok_text);
    t->text_len = ld_calloc(ctx, (size_t)n_vocab + 1, sizeof *t->text_len);
    t->is_special = ld_calloc(ctx, (size_t)n_vocab + 1, sizeof *t->is_special);
    if (!t->tok_bytes || !t->tok_len || !t->tok_text || !t->text_len || !t->is_special) {
        ld_tokenizer_free(t);
        return NULL;
    }
    return t;
}

void ld_tokenizer_free(ld_tokenizer *t) {
    if (!t) return;
    ld_ctx *ctx = t->ctx;
    for (int64_t i = 0; t->tok_bytes && i < t->n_vocab; i++) ld_free(ctx, t->tok_bytes[i]);
    for (int64_t i = 0; t->tok_text && i < t->n_vocab; i++) ld_free(ctx, t->tok_text[i]);
    ld_free(ctx, t->tok_bytes), ld_free(ctx, t->tok_len), ld_free(ctx, t->is_special);
    ld_free(ctx, t->tok_text), ld_free(ctx, t->text_len);
    ld_free(ctx, t->scores), ld_free(ctx, t->tok_type);
    for (int i = 0; i < t->n_specials; i++) ld_free(ctx, t->specials[i].text);
    ld_free(ctx, t->specials);
    ld_free(ctx, t->sp_order);
    ld_free(ctx, t->merge_list), ld_free(ctx, t->merge_rank);
    for (int i = 0; i < t->n_norm; i++) ld_free(ctx, t->norm[i].a), ld_free(ctx, t->norm[i].b);
    ld_free(ctx, t->norm);
    for (int i = 0; i < t->n_split; i++) ld_split_op_free(ctx, &t->split[i]);
    ld_free(ctx, t->split);
    ld_free(ctx, t->wp_prefix);
    ld_strmap_free(&t->by_bytes);
    ld_pairmap_free(ctx, &t->merges);
    ld_free(ctx, t);
}

ld_status ld_tokenizer_set_token(ld_tokenizer *t, int64_t id, const char *piece, size_t len, bool special) {
    ld_ctx *ctx = t->ctx;
    if (id < 0 || id >= t->n_vocab) return ld_error(ctx, LD_ERR_INTERNAL, "token id %lld out of range", (long long)id);
    if (t->tok_bytes[id]) return ld_error(ctx, LD_ERR_FORMAT, "id %lld is used twice", (long long)id);
    if (!(t->tok_bytes[id] = ld_alloc(ctx, len + 1))) return ld_ctx_status(ctx);
    memcpy(t->tok_bytes[id], piece, len);
    t->tok_bytes[id][len] = 0;
    t->tok_len[id] = (uint32_t)len;
    if (!special) return LD_OK;
    if (!len) return ld_error(ctx, LD_ERR_FORMAT, "special token %lld is empty", (long long)id);
    if (!t->specials && !(t->specials = ld_calloc(ctx, (size_t)t->n_vocab, sizeof *t->specials))) return ld_ctx_status(ctx);
    t->is_special[id] = true;
    ld_special *sp = &t->specials[t->n_specials];
    if (!(sp->text = ld_alloc(ctx, len + 1))) return ld_ctx_status(ctx);
    memcpy(sp->text, piece, len + 1);
    sp->len = len, sp->id = (int32_t)id;
    t->n_specials++;
    return LD_OK;
}

ld_status ld_tokenizer_add_norm(ld_tokenizer *t, ld_norm_kind kind, unsigned flags, const char *a, const char *b) {
    ld_ctx *ctx = t->ctx;
    ld_norm_op *n = ld_alloc(ctx, ((size_t)t->n_norm + 1) * sizeof *n);
    if (!n) return ld_ctx_status(ctx);
    if (t->n_norm) memcpy(n, t->norm, (size_t)t->n_norm * sizeof *n);
    ld_free(ctx, t->norm);
    t->norm = n;
    ld_norm_op *op = &n[t->n_norm];
    memset(op, 0, sizeof *op);
    op->kind = kind, op->flags = flags;
    if ((a && !(op->a = ld_strdup(ctx, a))) || (b && !(op->b = ld_strdup(ctx, b)))) {
        ld_free(ctx, op->a);
        return ld_ctx_status(ctx);
    }
    op->la = a ? strlen(a) : 0, op->lb = b ? strlen(b) : 0;
    t->n_norm++;
    return LD_OK;
}

ld_status ld_tokenizer_add_split(ld_tokenizer *t, ld_split_kind kind, const char *pattern, unsigned flags) {
    ld_ctx *ctx = t->ctx;
    ld_split_op *n = ld_alloc(ctx, ((size_t)t->n_split + 1) * sizeof *n);
    if (!n) return ld_ctx_status(ctx);
    if (t->n_split) memcpy(n, t->split, (size_t)t->n_split * sizeof *n);
    ld_free(ctx, t->split);
    t->split = n;
    ld_status st = ld_split_op_init(ctx, &n[t->n_split], kind, pattern, flags);
    if (!st) t->n_split++;
    return st;
}

static int32_t find_special(const ld_tokenizer *t, const char *name) {
    for (int i = 0; i < t->n_specials; i++)
        if (!strcmp(t->specials[i].text, name)) return t->specials[i].id;
    return -1;
}

/* "<0x1F>" -> 0x1f, or -1. */
static int byte_token_value(const char *s, size_t len) {
    if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>') return -1;
    int v = 0;
    for (int k = 3; k < 5; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* The decoded text of a token, when it differs from its piece. */
static ld_status set_text(ld_tokenizer *t, int64_t id) {
    const char *p = t->tok_bytes[id];
    size_t len = t->tok_len[id];
    if (t->is_special[id] || t->byte_level || t->kind == LD_TOK_CHAR) return LD_OK;
    char *s = ld_alloc(t->ctx, len + 2);
    if (!s) return ld_ctx_status(t->ctx);
    size_t o = 0;
    int b = t->byte_fallback ? byte_token_value(p, len) : -1;
    if (b >= 0) s[o++] = (char)b;
    else if (t->kind == LD_TOK_WORDPIECE) {
        size_t pl = t->wp_prefix ? strlen(t->wp_prefix) : 0;
        if (pl && len >= pl && !memcmp(p, t->wp_prefix, pl)) memcpy(s, p + pl, len - pl), o = len - pl;
        else s[0] = ' ', memcpy(s + 1, p, len), o = len + 1;
    } else if (t->metaspace) {
        for (size_t i = 0; i < len;)
            if (i + 3 <= len && !memcmp(p + i, "\xe2\x96\x81", 3)) s[o++] = ' ', i += 3;
            else s[o++] = p[i++];
    } else {
        ld_free(t->ctx, s);
        return LD_OK;
    }
    s[o] = 0;
    t->tok_text[id] = s, t->text_len[id] = (uint32_t)o;
    return LD_OK;
}

typedef struct cand {
    float score;
    int32_t merged, a, b;
} cand;

static int cmp_cand(const void *x, const void *y) {
    const cand *p = x, *q = y;
    if (p->score != q->score) return p->score > q->score ? -1 : 1;
    if (p->merged != q->merged) return p->merged < q->merged ? -1 : 1;
    if (p->a != q->a) return p->a < q->a ? -1 : 1;
    return (p->b > q->b) - (p->b < q->b);
}

ld_status ld_tokenizer_merges_from_scores(ld_tokenizer *t) {
    ld_ctx *ctx = t->ctx;
    size_t n = 0, cap = 0;
    for (int64_t id = 0; id < t->n_vocab; id++)
        if (!t->is_special[id]) cap += t->tok_len[id];
    cand *c = ld_alloc(ctx, (cap + 1) * sizeof *c);
    if (!c) return ld_ctx_status(ctx);
    for (int64_t id = 0; id < t->n_vocab; id++) {
        const char *p = t->tok_bytes[id];
        size_t len = t->tok_len[id];
        if (t->is_special[id] || (t->byte_fallback && byte_token_value(p, len) >= 0)) continue;
        for (size_t k = 1; k < len; k++) {
            if (((unsigned char)p[k] & 0xc0) == 0x80) continue; /* inside a character */
            int64_t *a = ld_strmap_get(&t->by_bytes, p, k), *b = ld_strmap_get(&t->by_bytes, p + k, len - k);
            if (a && b) c[n++] = (cand){t->scores[id], (int32_t)id, (int32_t)*a, (int32_t)*b};
        }
    }
    qsort(c, n, sizeof *c, cmp_cand);
    t->merge_list = ld_alloc(ctx, (n + 1) * sizeof *t->merge_list);
    t->merge_rank = ld_alloc(ctx, (n + 1) * sizeof *t->merge_rank);
    if (!t->merge_list || !t->merge_rank) {
        ld_free(ctx, c);
        return ld_ctx_status(ctx);
    }
    int32_t rank = -1;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || c[i].score != c[i - 1].score) rank++; /* equal scores: the leftmost pair first, as llama.cpp */
        t->merge_list[i][0] = c[i].a, t->merge_list[i][1] = c[i].b, t->merge_rank[i] = rank;
    }
    t->n_merges = (int64_t)n;
    ld_free(ctx, c);
    return LD_OK;
}

static uint64_t hash_str(const char *s, uint64_t h) {
    return s ? ld_hash_bytes(s, strlen(s), h) : ld_hash_bytes("", 0, h ^ 0x5bd1e995);
}

typedef struct {
    int first; /* the text's first byte */
    size_t len;
    int i; /* index in t->specials */
} sp_key;

static int cmp_sp_key(const void *x, const void *y) {
    const sp_key *p = x, *q = y;
    if (p->first != q->first) return p->first < q->first ? -1 : 1;
    if (p->len != q->len) return p->len > q->len ? -1 : 1; /* longest first */
    return (p->i > q->i) - (p->i < q->i);                   /* equal lengths keep their order */
}

ld_status ld_tokenizer_finish(ld_tokenizer *t) {
    ld_ctx *ctx = t->ctx;
    ld_status st;
    for (int64_t id = 0; id < t->n_vocab; id++)
        if (!t->tok_bytes[id]) return ld_error(ctx, LD_ERR_FORMAT, "no token has id %lld", (long long)id);
    if ((st = ld_strmap_init(ctx, &t->by_bytes, (size_t)t->n_vocab))) return st;
    for (int i = 0; i < 256; i++) t->byte_id[i] = t->byte_tok[i] = -1;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        if (t->is_special[id]) continue;
        if (t->tok_type && t->tok_type[id] == 5) continue; /* GGUF unused: never produced */
        int64_t *v;
        if ((st = ld_strmap_put(&t->by_bytes, t->tok_bytes[id], t->tok_len[id], id, &v))) return st;
        if (*v != id) return ld_error(ctx, LD_ERR_FORMAT, "tokens %lld and %lld have the same text", (long long)*v, (long long)id);
        if (t->tok_len[id] == 1) t->byte_id[(unsigned char)t->tok_bytes[id][0]] = (int32_t)id;
        int b = byte_token_value(t->tok_bytes[id], t->tok_len[id]);
        if (b >= 0) t->byte_tok[b] = (int32_t)id;
    }
    if (t->kind == LD_TOK_BPE && t->byte_level)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0)
                return ld_error(ctx, LD_ERR_FORMAT, "byte-level vocabulary lacks the token for byte 0x%02x", b);
    if (t->kind == LD_TOK_BPE && !t->byte_level && t->scores && !t->n_merges && (st = ld_tokenizer_merges_from_scores(t)))
        return st;
    if ((st = ld_pairmap_init(ctx, &t->merges, (size_t)t->n_merges))) return st;
    char buf[1024];
    for (int64_t r = 0; r < t->n_merges; r++) {
        int32_t a = t->merge_list[r][0], b = t->merge_list[r][1];
        size_t la = t->tok_len[a], lb = t->tok_len[b];
        if (la + lb > sizeof buf) return ld_error(ctx, LD_ERR_LIMIT, "merge %lld: token longer than %zu bytes", (long long)r, sizeof buf);
        memcpy(buf, t->tok_bytes[a], la), memcpy(buf + la, t->tok_bytes[b], lb);
        int64_t *merged = ld_strmap_get(&t->by_bytes, buf, la + lb);
        if (!merged)
            return ld_error(ctx, LD_ERR_FORMAT, "merge %lld (ids %d + %d) produces a token that is not in the vocabulary",
                            (long long)r, a, b);
        uint64_t rank = t->merge_rank ? (uint64_t)t->merge_rank[r] : (uint64_t)r;
        ld_pairmap_put(&t->merges, a, b, rank << 32 | (uint64_t)*merged); /* the first listing of a pair wins */
    }
    for (int64_t id = 0; id < t->n_vocab; id++)
        if ((st = set_text(t, id))) return st;
    /* specials grouped by first byte, longest first within a group, for find_special_at (a
     * sort: a vocabulary may have tens of thousands of <unused> specials of growing length) */
    if (!(t->sp_order = ld_calloc(ctx, (size_t)t->n_specials + 1, sizeof *t->sp_order))) return ld_ctx_status(ctx);
    sp_key *keys = ld_alloc(ctx, ((size_t)t->n_specials + 1) * sizeof *keys);
    if (!keys) return ld_ctx_status(ctx);
    for (int i = 0; i < t->n_specials; i++) keys[i] = (sp_key){(unsigned char)t->specials[i].text[0], t->specials[i].len, i};
    qsort(keys, (size_t)t->n_specials, sizeof *keys, cmp_sp_key);
    for (int i = 0; i < t->n_specials; i++) t->sp_order[i] = keys[i].i;
    for (int c = 0, i = 0; c <= 256; c++) {
        while (i < t->n_specials && keys[i].first < c) i++;
        t->sp_first[c] = i;
    }
    ld_free(ctx, keys);
    /* special ids the file did not name, guessed from the usual spellings */
    static const struct {
        size_t slot;
        const char *names[5];
    } guess[] = {
        {offsetof(ld_tokenizer, bos), {"<|begin_of_text|>", "<s>", "[CLS]", "<bos>", NULL}},
        {offsetof(ld_tokenizer, eos), {"<|endoftext|>", "<|end_of_text|>", "</s>", "[SEP]", "<eos>"}},
        {offsetof(ld_tokenizer, pad), {"<pad>", "[PAD]", NULL}},
        {offsetof(ld_tokenizer, unk), {"[UNK]", "<unk>", NULL}},
        {offsetof(ld_tokenizer, cls), {"[CLS]", "<s>", NULL}},
        {offsetof(ld_tokenizer, sep), {"[SEP]", "</s>", NULL}},
        {offsetof(ld_tokenizer, mask), {"[MASK]", "<mask>", NULL}},
    };
    for (size_t g = 0; g < sizeof guess / sizeof guess[0]; g++) {
        int32_t *slot = (int32_t *)((char *)t + guess[g].slot);
        for (int k = 0; k < 5 && *slot < 0 && guess[g].names[k]; k++) *slot = find_special(t, guess[g].names[k]);
    }
    if (t->unk < 0 && t->kind != LD_TOK_BPE) t->unk = ld_tokenizer_token_id(t, "[UNK]");
    /* the hash covers everything that decides encoding */
    unsigned flags = (unsigned)t->byte_level | (unsigned)t->byte_fallback << 1 | (unsigned)t->ignore_merges << 2 |
                     (unsigned)t->metaspace << 3 | (unsigned)t->fuse_unk << 4;
    uint64_t h = ld_hash_bytes(&t->kind, sizeof t->kind, (uint64_t)t->n_vocab);
    h = ld_hash_bytes(&flags, sizeof flags, h);
    for (int i = 0; i < t->n_norm; i++) {
        h = ld_hash_bytes(&t->norm[i].kind, sizeof t->norm[i].kind, h);
        h = ld_hash_bytes(&t->norm[i].flags, sizeof t->norm[i].flags, h);
        h = hash_str(t->norm[i].b, hash_str(t->norm[i].a, h));
    }
    for (int i = 0; i < t->n_split; i++) {
        h = ld_hash_bytes(&t->split[i].kind, sizeof t->split[i].kind, h);
        h = hash_str(t->split[i].pattern, h);
    }
    for (int64_t id = 0; id < t->n_vocab; id++)
        h = ld_hash_bytes(t->tok_bytes[id], t->tok_len[id], h ^ (uint64_t)id ^ (t->is_special[id] ? 1ULL << 63 : 0));
    if (t->n_merges) h = ld_hash_bytes(t->merge_list, (size_t)t->n_merges * sizeof t->merge_list[0], h);
    if (t->merge_rank) h = ld_hash_bytes(t->merge_rank, (size_t)t->n_merges * sizeof t->merge_rank[0], h);
    if (t->wp_prefix) h = hash_str(t->wp_prefix, h);
    t->hash = h;
    return LD_OK;
}

/* ---- encoding ---- */
typedef struct enc enc;
typedef struct level {
    enc *e;
    int k;
} level;

struct enc {
    const ld_tokenizer *t;
    int32_t *ids;
    size_t cap, n;
    ld_strmap *cache; /* piece -> offset into cache_ids << 16 | count, or NULL */
    int32_t *cache_ids;
    size_t cache_n, cache_cap;
    ld_model_scratch *ms;
    pcre2_match_data **md; /* one per split step */
    level *lv;
    ld_buf nb[2];
    ld_strmap cache_map;
    bool grow; /* ids is this encoder's own growing buffer (batches) */
    ld_status st;
};

static void emit(void *user, int32_t id) {
    enc *e = user;
    if (e->n == e->cap && e->grow) {
        size_t cap = e->cap ? 2 * e->cap : 4096;
        int32_t *p = realloc(e->ids, cap * sizeof *p);
        if (!p) {
            e->st = LD_ERR_NOMEM;
            return;
        }
        e->ids = p, e->cap = cap;
    }
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

static void model_piece(enc *e, const char *piece, size_t len) {
    if (e->st) return;
    if (e->cache) {
        int64_t *c = ld_strmap_get(e->cache, piece, len);
        if (c) {
            for (int64_t k = 0; k < (*c & 0xffff); k++) emit(e, e->cache_ids[(*c >> 16) + k]);
            return;
        }
    }
    size_t n0 = e->n;
    ld_status st = ld_model_encode(e->t, e->ms, piece, len, emit, e);
    if (st) {
        e->st = st;
        return;
    }
    size_t n = e->n - n0;
    if (e->cache && n < 0xffff && len < 256 && e->n <= e->cap && e->cache->count < (1u << 20)) {
        if (e->cache_n + n > e->cache_cap) {
            size_t cap = e->cache_cap ? 2 * e->cache_cap : 4096;
            while (cap < e->cache_n + n) cap *= 2;
            int32_t *ci = realloc(e->cache_ids, cap * sizeof *ci);
            if (ci) e->cache_ids = ci, e->cache_cap = cap;
        }
        int64_t *v;
        if (e->cache_n + n <= e->cache_cap && !ld_strmap_put(e->cache, piece, len, 0, &v)) {
            memcpy(e->cache_ids + e->cache_n, e->ids + n0, n * sizeof *e->ids);
            *v = (int64_t)(e->cache_n << 16) | (int64_t)n;
            e->cache_n += n;
        }
    }
}

static void on_piece(void *user, const char *piece, size_t len) {
    level *lv = user;
    enc *e = lv->e;
    if (e->st || !len) return;
    int k = lv->k + 1;
    if (k < e->t->n_split) ld_split_run(&e->t->split[k], e->md[k], piece, len, on_piece, &e->lv[k]);
    else model_piece(e, piece, len);
}

/* Encodes a stretch of text without special tokens; first: it starts the input. */
static void encode_plain(enc *e, const char *text, size_t len, bool first) {
    const ld_tokenizer *t = e->t;
    if (!len || e->st) return;
    for (int k = 0; k < t->n_norm; k++) {
        ld_buf *out = &e->nb[k & 1];
        ld_status st = ld_norm_run(&t->norm[k], text, len, first, out);
        if (st) {
            e->st = st;
            return;
        }
        text = out->p, len = out->len;
    }
    if (t->n_split) ld_split_run(&t->split[0], e->md[0], text, len, on_piece, &e->lv[0]);
    else model_piece(e, text, len);
}

/* The earliest special token in text[pos..len), the longest one at that position (Hugging
 * Face's leftmost-longest rule): its offset (len if none) and index in *which. One pass over
 * the text: only bytes that begin some special token are looked at. */
static size_t find_special_at(const ld_tokenizer *t, const char *text, size_t len, size_t pos, int *which) {
    for (size_t i = pos; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        for (int k = t->sp_first[c]; k < t->sp_first[c + 1]; k++) { /* longest first */
            const ld_special *sp = &t->specials[t->sp_order[k]];
            if (sp->len <= len - i && !memcmp(text + i, sp->text, sp->len)) {
                *which = t->sp_order[k];
                return i;
            }
        }
    }
    return len;
}

/* Per-encoder state; with a cache, it serves many texts (a batch on one thread). */
static ld_status enc_init(enc *e, const ld_tokenizer *t, bool cache) {
    memset(e, 0, sizeof *e);
    e->t = t;
    int ns = t->n_split ? t->n_split : 1;
    e->md = calloc((size_t)ns, sizeof *e->md);
    e->lv = calloc((size_t)ns, sizeof *e->lv);
    e->ms = ld_model_scratch_new();
    if (!e->md || !e->lv || !e->ms) return LD_ERR_NOMEM;
    for (int k = 0; k < t->n_split; k++) {
        e->lv[k] = (level){e, k};
        if (t->split[k].code && !(e->md[k] = pcre2_match_data_create_from_pattern(t->split[k].code, NULL))) return LD_ERR_NOMEM;
    }
    if (cache && t->kind == LD_TOK_BPE && t->n_split) {
        e->cache = &e->cache_map;
        if (ld_strmap_init(t->ctx, e->cache, 4096)) e->cache = NULL;
    }
    return LD_OK;
}

static void enc_free(enc *e) {
    for (int k = 0; k < e->t->n_split && e->md; k++)
        if (e->md[k]) pcre2_match_data_free(e->md[k]);
    free(e->md), free(e->lv);
    if (e->cache) ld_strmap_free(e->cache);
    free(e->cache_ids);
    free(e->nb[0].p), free(e->nb[1].p);
    ld_model_scratch_free(e->ms);
    if (e->grow) free(e->ids);
}

/* Appends the ids of one text. */
static void enc_text(enc *e, const char *text, size_t len, unsigned flags) {
    const ld_tokenizer *t = e->t;
    bool add_special = flags & LD_ENCODE_ADD_SPECIAL;
    if (add_special)
        for (int k = 0; k < t->n_post_pre; k++) emit(e, t->post_pre[k]);
    else if ((flags & LD_ENCODE_ADD_BOS) && t->bos >= 0)
        emit(e, t->bos);
    size_t pos = 0;
    while (pos < len && !e->st) {
        size_t next = len;
        int which = -1;
        if (!(flags & LD_ENCODE_SPECIAL_AS_TEXT)) next = find_special_at(t, text, len, pos, &which);
        encode_plain(e, text + pos, next - pos, pos == 0);
        if (next == len) break;
        emit(e, t->specials[which].id);
        pos = next + t->specials[which].len;
    }
    if (add_special)
        for (int k = 0; k < t->n_post_suf; k++) emit(e, t->post_suf[k]);
}

static ld_status enc_status(const ld_tokenizer *t, ld_status st) {
    if (st == LD_ERR_LIMIT) return ld_error(t->ctx, st, "encode: a pre-token of 2 GiB or more");
    return ld_error(t->ctx, st, "encode: out of memory");
}

ld_status ld_tokenizer_encode(const ld_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t *ids,
                              size_t cap, size_t *n_ids) {
    if (!t || (!text && len) || !n_ids) return LD_ERR_INVALID_ARG;
    enc e;
    ld_status st = enc_init(&e, t, len > 2048);
    e.ids = ids, e.cap = ids ? cap : 0;
    if (!st) enc_text(&e, text, len, flags);
    if (!st) st = e.st;
    size_t n = e.n;
    enc_free(&e);
    if (st) return enc_status(t, st);
    *n_ids = n;
    if (n > cap || (!ids && n)) return LD_ERR_LIMIT;
    return LD_OK;
}

typedef struct {
    const ld_tokenizer *t;
    const char *const *texts;
    const size_t *lens;
    unsigned flags;
    enc *es;       /* per thread of the team, made by the thread's first piece */
    size_t *where; /* per text: its start in its thread's buffer */
    int *owner;    /* per text: that thread */
    size_t *off;   /* per text (i + 1): its number of ids */
} batch_args;

/* Texts [lo, hi), appended to the running thread's buffer. */
static void encode_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const batch_args *a = arg;
    const int k = ld_par_thread();
    enc *e = &a->es[k];
    if (!e->t && !e->st) {
        ld_status s = enc_init(e, a->t, true);
        e->grow = true;
        if (s) e->st = s;
    }
    for (int64_t i = lo; i < hi && !e->st; i++) {
        size_t before = e->n;
        enc_text(e, a->texts[i], a->lens[i], a->flags);
        a->where[i] = before, a->owner[i] = k, a->off[i + 1] = e->n - before;
    }
}

ld_status ld_tokenizer_encode_batch(const ld_tokenizer *t, const char *const *texts, const size_t *lens, size_t n,
                                    unsigned flags, int n_threads, int32_t **ids_out, size_t **offsets_out) {
    if (!t || (!texts && n) || !lens || !ids_out || !offsets_out) return LD_ERR_INVALID_ARG;
    *ids_out = NULL, *offsets_out = NULL;
    ld_ctx *ctx = t->ctx;
    LD_TEAM_SCOPE_THREADS(ctx, n_threads);
    const int nt = ld_par_threads();
    size_t *off = ld_alloc(ctx, (n + 1) * sizeof *off);
    size_t *where = malloc((n + 1) * sizeof *where); /* start of text i in its thread's buffer */
    int *owner = malloc((n + 1) * sizeof *owner);
    enc *es = calloc((size_t)nt, sizeof *es);
    if (!off || !where || !owner || !es) {
        ld_free(ctx, off), free(where), free(owner), free(es);
        return ld_error(ctx, LD_ERR_NOMEM, "encode batch: out of memory");
    }
    ld_status st = LD_OK;
    batch_args a = {t, texts, lens, flags, es, where, owner, off};
    ld_par_for((int64_t)n, 16, encode_part, &a);
    for (int k = 0; k < nt; k++)
        if (es[k].st && !st) st = es[k].st;
    int32_t *ids = NULL;
    if (!st) {
        off[0] = 0;
        for (size_t i = 0; i < n; i++) off[i + 1] += off[i];
        if (!(ids = ld_alloc(ctx, (off[n] + 1) * sizeof *ids))) st = LD_ERR_NOMEM;
        for (size_t i = 0; !st && i < n; i++)
            if (off[i + 1] > off[i]) /* a thread that encoded nothing has no buffer (NULL) */
                memcpy(ids + off[i], es[owner[i]].ids + where[i], (off[i + 1] - off[i]) * sizeof *ids);
    }
    for (int k = 0; k < nt; k++)
        if (es[k].t) enc_free(&es[k]); /* a thread that took no piece made none */
    free(es), free(where), free(owner);
    if (st) {
        ld_free(ctx, off), ld_free(ctx, ids);
        return enc_status(t, st);
    }
    *ids_out = ids, *offsets_out = off;
    return LD_OK;
}

/* ---- decoding ---- */
static void token_text(const ld_tokenizer *t, int32_t id, const char **s, size_t *len) {
    if (t->tok_text[id]) *s = t->tok_text[id], *len = t->text_len[id];
    else *s = t->tok_bytes[id], *len = t->tok_len[id];
}

ld_status ld_tokenizer_decode(const ld_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char *out,
                              size_t cap, size_t *n_bytes) {
    if (!t || (!ids && n) || !n_bytes) return LD_ERR_INVALID_ARG;
    size_t total = 0;
    int skip = -1; /* the space encoding added before the first token, dropped */
    const char *s;
    size_t l;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return ld_error(t->ctx, LD_ERR_INVALID_ARG, "decode: id %d at position %zu is not in the vocabulary of %lld",
                            ids[i], i, (long long)t->n_vocab);
        if (skip_special && t->is_special[ids[i]]) continue;
        token_text(t, ids[i], &s, &l);
        if (skip < 0) skip = t->strip_first_space && l && s[0] == ' ';
        total += l;
    }
    size_t need = total - (skip > 0);
    *n_bytes = need;
    if (!out || need > cap) return need ? LD_ERR_LIMIT : LD_OK;
    size_t o = 0, drop = skip > 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && t->is_special[ids[i]]) continue;
        token_text(t, ids[i], &s, &l);
        memcpy(out + o, s + drop, l - drop);
        o += l - drop;
        drop = 0;
    }
    return LD_OK;
}

ld_status ld_tokenizer_token_bytes(const ld_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab) return LD_ERR_INVALID_ARG;
    token_text(t, id, bytes, len);
    return LD_OK;
}

int64_t ld_tokenizer_vocab_size(const ld_tokenizer *t) {
    return t ? t->n_vocab : 0;
}

int32_t ld_tokenizer_token_id(const ld_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    int32_t s = find_special(t, token);
    if (s >= 0) return s;
    size_t len = strlen(token);
    if (t->kind == LD_TOK_BPE && t->byte_level) { /* tokenizer.json spelling: byte-level code points */
        unsigned char raw[1024];
        long n = len < sizeof raw ? ld_bytelevel_to_bytes(token, len, raw) : -1;
        if (n < 0) return -1;
        int64_t *v = ld_strmap_get(&t->by_bytes, (const char *)raw, (size_t)n);
        return v ? (int32_t)*v : -1;
    }
    int64_t *v = ld_strmap_get(&t->by_bytes, token, len);
    return v ? (int32_t)*v : -1;
}

int32_t ld_tokenizer_bos_id(const ld_tokenizer *t) {
    return t ? t->bos : -1;
}
int32_t ld_tokenizer_eos_id(const ld_tokenizer *t) {
    return t ? t->eos : -1;
}
int32_t ld_tokenizer_pad_id(const ld_tokenizer *t) {
    return t ? t->pad : -1;
}
int32_t ld_tokenizer_unk_id(const ld_tokenizer *t) {
    return t ? t->unk : -1;
}
bool ld_tokenizer_is_special(const ld_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_vocab && t->is_special && t->is_special[id];
}
uint64_t ld_tokenizer_hash(const ld_tokenizer *t) {
    return t ? t->hash : 0;
}

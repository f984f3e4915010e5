/* tokenizer/bpe.c — byte-level BPE: lookup structures, encoding (special tokens first, then
 * pre-tokens, then merges by rank with a per-call word cache), decoding, accessors. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

ld_tokenizer *ld_tokenizer_alloc(ld_ctx *ctx, int64_t n_vocab) {
    ld_tokenizer *t = ld_calloc(ctx, 1, sizeof *t);
    if (!t) return NULL;
    t->ctx = ctx;
    t->n_vocab = n_vocab;
    t->bos = t->eos = t->pad = t->unk = -1;
    t->tok_bytes = ld_calloc(ctx, (size_t)n_vocab + 1, sizeof *t->tok_bytes);
    t->tok_len = ld_calloc(ctx, (size_t)n_vocab + 1, sizeof *t->tok_len);
    t->is_special = ld_calloc(ctx, (size_t)n_vocab + 1, sizeof *t->is_special);
    if (!t->tok_bytes || !t->tok_len || !t->is_special) {
        ld_tokenizer_free(t);
        return NULL;
    }
    return t;
}

void ld_tokenizer_free(ld_tokenizer *t) {
    if (!t) return;
    ld_ctx *ctx = t->ctx;
    for (int64_t i = 0; t->tok_bytes && i < t->n_vocab; i++) ld_free(ctx, t->tok_bytes[i]);
    ld_free(ctx, t->tok_bytes), ld_free(ctx, t->tok_len), ld_free(ctx, t->is_special);
    for (int i = 0; i < t->n_specials; i++) ld_free(ctx, t->specials[i].text);
    ld_free(ctx, t->specials);
    ld_free(ctx, t->sp_order);
    ld_free(ctx, t->merge_list);
    ld_strmap_free(&t->by_bytes);
    ld_strmap_free(&t->merges);
    ld_pretok_free(&t->pretok);
    ld_free(ctx, t);
}

static int32_t find_special(const ld_tokenizer *t, const char *name) {
    for (int i = 0; i < t->n_specials; i++)
        if (!strcmp(t->specials[i].text, name)) return t->specials[i].id;
    return -1;
}

ld_status ld_tokenizer_finish(ld_tokenizer *t) {
    ld_ctx *ctx = t->ctx;
    ld_status st;
    if ((st = ld_strmap_init(ctx, &t->by_bytes, (size_t)t->n_vocab)) ||
        (st = ld_strmap_init(ctx, &t->merges, (size_t)t->n_merges)))
        return st;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    for (int64_t id = 0; id < t->n_vocab; id++) {
        if (!t->tok_bytes[id] || t->is_special[id]) continue;
        int64_t *v;
        if ((st = ld_strmap_put(&t->by_bytes, t->tok_bytes[id], t->tok_len[id], id, &v))) return st;
        if (*v != id) return ld_error(ctx, LD_ERR_FORMAT, "tokens %lld and %lld have the same bytes", (long long)*v, (long long)id);
        if (t->tok_len[id] == 1) t->byte_id[(unsigned char)t->tok_bytes[id][0]] = (int32_t)id;
    }
    if (t->kind == LD_TOK_BPE)
        for (int b = 0; b < 256; b++)
            if (t->byte_id[b] < 0)
                return ld_error(ctx, LD_ERR_FORMAT, "byte-level vocabulary lacks the token for byte 0x%02x", b);
    for (int64_t r = 0; r < t->n_merges; r++) {
        int32_t a = t->merge_list[r][0], b = t->merge_list[r][1];
        size_t la = t->tok_len[a], lb = t->tok_len[b];
        char buf[512];
        if (la + lb > sizeof buf) return ld_error(ctx, LD_ERR_LIMIT, "merge %lld: token longer than %zu bytes", (long long)r, sizeof buf);
        memcpy(buf, t->tok_bytes[a], la), memcpy(buf + la, t->tok_bytes[b], lb);
        int64_t *merged = ld_strmap_get(&t->by_bytes, buf, la + lb);
        if (!merged)
            return ld_error(ctx, LD_ERR_FORMAT, "merge %lld (ids %d + %d) produces a token that is not in the vocabulary",
                            (long long)r, a, b);
        int32_t key[2] = {a, b};
        int64_t *v;
        if ((st = ld_strmap_put(&t->merges, (const char *)key, sizeof key, -1, &v))) return st;
        if (*v == -1) *v = (r << 32) | *merged; /* the first (lowest-rank) listing of a pair wins */
    }
    /* specials grouped by first byte, longest first within a group, for find_special_at */
    if (!(t->sp_order = ld_calloc(ctx, (size_t)t->n_specials + 1, sizeof *t->sp_order))) return ld_ctx_status(ctx);
    int at = 0;
    for (int c = 0; c < 256; c++) {
        t->sp_first[c] = at;
        int start = at;
        for (int i = 0; i < t->n_specials; i++) {
            if ((unsigned char)t->specials[i].text[0] != c || !t->specials[i].len) continue;
            int k = at++; /* insertion by length, longest first; equal lengths keep their order */
            while (k > start && t->specials[t->sp_order[k - 1]].len < t->specials[i].len) t->sp_order[k] = t->sp_order[k - 1], k--;
            t->sp_order[k] = i;
        }
    }
    t->sp_first[256] = at;
    const char *bos[] = {"<|begin_of_text|>", "<s>", "[CLS]", "<bos>"}, *eos[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", "[SEP]", "<eos>"};
    for (size_t i = 0; i < sizeof bos / sizeof bos[0] && t->bos < 0; i++) t->bos = find_special(t, bos[i]);
    for (size_t i = 0; i < sizeof eos / sizeof eos[0] && t->eos < 0; i++) t->eos = find_special(t, eos[i]);
    t->pad = find_special(t, "<pad>") >= 0 ? find_special(t, "<pad>") : find_special(t, "[PAD]");
    t->unk = find_special(t, "[UNK]") >= 0 ? find_special(t, "[UNK]") : find_special(t, "<unk>");
    /* the hash covers everything that decides encoding */
    uint64_t h = ld_hash_bytes(&t->kind, sizeof t->kind, (uint64_t)t->n_vocab);
    h = ld_hash_bytes(&t->pretok.kind, sizeof t->pretok.kind, h);
    for (int64_t id = 0; id < t->n_vocab; id++)
        if (t->tok_bytes[id]) h = ld_hash_bytes(t->tok_bytes[id], t->tok_len[id], h ^ (uint64_t)id ^ (t->is_special[id] ? 1ULL << 63 : 0));
    if (t->n_merges) h = ld_hash_bytes(t->merge_list, (size_t)t->n_merges * sizeof t->merge_list[0], h);
    t->hash = h;
    return LD_OK;
}

/* ---- encoding ---- */
/* Working memory of the merge loop, reused across pieces of one encode call. */
typedef struct merge_scratch {
    int32_t *sym, *next, *prev;
    uint64_t *heap; /* rank << 32 | position: the lowest rank, then the leftmost, first */
    size_t cap;
} merge_scratch;

typedef struct enc {
    const ld_tokenizer *t;
    int32_t *ids;
    size_t cap, n;
    ld_strmap *cache; /* word bytes -> offset into cache_ids << 16 | count, or NULL */
    int32_t *cache_ids;
    size_t cache_n, cache_cap;
    merge_scratch ms;
    ld_status st;
} enc;

static void emit(enc *e, int32_t id) {
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

static bool scratch_reserve(merge_scratch *m, size_t n) {
    if (n <= m->cap) return true;
    size_t cap = m->cap ? m->cap : 256;
    while (cap < n) cap *= 2;
    int32_t *s = realloc(m->sym, cap * sizeof *s);
    if (s) m->sym = s;
    int32_t *nx = realloc(m->next, cap * sizeof *nx);
    if (nx) m->next = nx;
    int32_t *pv = realloc(m->prev, cap * sizeof *pv);
    if (pv) m->prev = pv;
    uint64_t *h = realloc(m->heap, 3 * cap * sizeof *h); /* n - 1 pairs + 2 per merge */
    if (h) m->heap = h;
    if (!s || !nx || !pv || !h) return false;
    m->cap = cap;
    return true;
}

static void scratch_free(merge_scratch *m) {
    free(m->sym), free(m->next), free(m->prev), free(m->heap);
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) h[i] = h[(i - 1) / 2], i = (i - 1) / 2;
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (h[c] >= v) break;
        h[i] = h[c], i = c;
    }
    h[i] = v;
    return top;
}

/* The merge of (a, b): rank << 32 | merged id, or -1. */
static int64_t merge_of(const ld_tokenizer *t, int32_t a, int32_t b) {
    int32_t key[2] = {a, b};
    int64_t *v = ld_strmap_get(&t->merges, (const char *)key, sizeof key);
    return v ? *v : -1;
}

static void try_pair(const ld_tokenizer *t, merge_scratch *m, size_t *hn, int32_t i) {
    int32_t j = m->next[i];
    if (i < 0 || j < 0) return;
    int64_t v = merge_of(t, m->sym[i], m->sym[j]);
    if (v >= 0) heap_push(m->heap, hn, ((uint64_t)v & 0xffffffff00000000ULL) | (uint32_t)i);
}

/* Merges the symbols m->sym[0..n) by rank, lowest rank first and leftmost among equals (as
 * Hugging Face's BPE and llama.cpp do), in O(n log n): the symbols form a linked list and
 * candidate pairs wait in a heap, checked against the list when they come out. Compacts the
 * result into m->sym and returns its length. */
static size_t bpe_merge(const ld_tokenizer *t, merge_scratch *m, size_t n) {
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) m->next[i] = i + 1 < n ? (int32_t)i + 1 : -1, m->prev[i] = (int32_t)i - 1;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, m, &hn, (int32_t)i);
    while (hn) {
        uint64_t top = heap_pop(m->heap, &hn);
        int32_t i = (int32_t)(top & 0xffffffff), j = m->next[i];
        if (m->sym[i] < 0 || j < 0) continue; /* merged away, or nothing to its right any more */
        int64_t v = merge_of(t, m->sym[i], m->sym[j]);
        if (v < 0 || ((uint64_t)v >> 32) != (top >> 32)) continue; /* the pair changed since it was queued */
        m->sym[i] = (int32_t)(v & 0xffffffff);
        m->sym[j] = -1;
        m->next[i] = m->next[j];
        if (m->next[j] >= 0) m->prev[m->next[j]] = i;
        if (m->prev[i] >= 0) try_pair(t, m, &hn, m->prev[i]);
        try_pair(t, m, &hn, i);
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = m->next[i]) m->sym[k++] = m->sym[i];
    return n ? k : 0;
}

/* Merges a word's byte tokens by rank; leaves the ids in e->ms.sym and returns their count. */
static size_t bpe_word(enc *e, const unsigned char *w, size_t len) {
    if (!scratch_reserve(&e->ms, len)) {
        e->st = LD_ERR_NOMEM;
        return 0;
    }
    for (size_t i = 0; i < len; i++) e->ms.sym[i] = e->t->byte_id[w[i]];
    return bpe_merge(e->t, &e->ms, len);
}

static void encode_piece(void *user, const char *piece, size_t len) {
    enc *e = user;
    const ld_tokenizer *t = e->t;
    if (e->st) return;
    int64_t *whole = ld_strmap_get(&t->by_bytes, piece, len);
    if (whole && !t->n_merges) { /* char vocabularies */
        emit(e, (int32_t)*whole);
        return;
    }
    if (e->cache) {
        int64_t *c = ld_strmap_get(e->cache, piece, len);
        if (c) {
            for (int64_t k = 0; k < (*c & 0xffff); k++) emit(e, e->cache_ids[(*c >> 16) + k]);
            return;
        }
    }
    if (len >= (1u << 31)) {
        e->st = LD_ERR_LIMIT;
        return;
    }
    size_t n = bpe_word(e, (const unsigned char *)piece, len);
    if (e->st) return;
    const int32_t *sym = e->ms.sym;
    for (size_t k = 0; k < n; k++) emit(e, sym[k]);
    if (e->cache && n < 0xffff && len < 64) {
        if (e->cache_n + n > e->cache_cap) {
            size_t cap = e->cache_cap ? 2 * e->cache_cap : 4096;
            while (cap < e->cache_n + n) cap *= 2;
            int32_t *ci = realloc(e->cache_ids, cap * sizeof *ci);
            if (ci) e->cache_ids = ci, e->cache_cap = cap;
        }
        int64_t *v;
        if (e->cache_n + n <= e->cache_cap && !ld_strmap_put(e->cache, piece, len, 0, &v)) {
            memcpy(e->cache_ids + e->cache_n, sym, n * sizeof *sym);
            *v = (int64_t)(e->cache_n << 16) | (int64_t)n;
            e->cache_n += n;
        }
    }
}

/* Encodes text without special tokens: pre-tokens, then BPE. */
static void encode_plain(enc *e, pcre2_match_data *md, const char *text, size_t len) {
    const ld_tokenizer *t = e->t;
    if (t->kind == LD_TOK_CHAR) { /* one token per UTF-8 character, [UNK] for unknown ones */
        size_t i = 0;
        while (i < len) {
            size_t l = 1;
            unsigned char c = (unsigned char)text[i];
            if (c >= 0xc0) l = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            if (i + l > len) l = len - i;
            int64_t *v = ld_strmap_get(&t->by_bytes, text + i, l);
            if (v) emit(e, (int32_t)*v);
            else if (t->unk >= 0) emit(e, t->unk);
            i += l;
        }
        return;
    }
    ld_pretok_split(&t->pretok, md, text, len, encode_piece, e);
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

ld_status ld_tokenizer_encode(const ld_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t *ids,
                              size_t cap, size_t *n_ids) {
    if (!t || (!text && len) || !n_ids) return LD_ERR_INVALID_ARG;
    enc e = {.t = t, .ids = ids, .cap = ids ? cap : 0};
    ld_strmap cache = {0};
    if (len > 2048 && t->kind == LD_TOK_BPE && !ld_strmap_init(t->ctx, &cache, 1024)) e.cache = &cache;
    pcre2_match_data *md = t->kind == LD_TOK_BPE ? ld_pretok_match_data(&t->pretok) : NULL;
    if (t->kind == LD_TOK_BPE && !md) return ld_error(t->ctx, LD_ERR_NOMEM, "encode: out of memory");
    if ((flags & LD_ENCODE_ADD_BOS) && t->bos >= 0) emit(&e, t->bos);
    size_t pos = 0;
    while (pos < len && !e.st) {
        size_t next = len;
        int which = -1;
        if (!(flags & LD_ENCODE_SPECIAL_AS_TEXT)) next = find_special_at(t, text, len, pos, &which);
        encode_plain(&e, md, text + pos, next - pos);
        if (next == len) break;
        emit(&e, t->specials[which].id);
        pos = next + t->specials[which].len;
    }
    if (md) pcre2_match_data_free(md);
    if (e.cache) ld_strmap_free(&cache);
    free(e.cache_ids);
    scratch_free(&e.ms);
    if (e.st == LD_ERR_LIMIT) return ld_error(t->ctx, e.st, "encode: a pre-token of 2 GiB or more");
    if (e.st) return ld_error(t->ctx, e.st, "encode: out of memory");
    *n_ids = e.n;
    if (e.n > cap || (!ids && e.n)) return LD_ERR_LIMIT;
    return LD_OK;
}

ld_status ld_tokenizer_decode(const ld_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, char *out,
                              size_t cap, size_t *n_bytes) {
    if (!t || (!ids && n) || !n_bytes) return LD_ERR_INVALID_ARG;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab || !t->tok_bytes[ids[i]])
            return ld_error(t->ctx, LD_ERR_INVALID_ARG, "decode: id %d at position %zu is not in the vocabulary of %lld",
                            ids[i], i, (long long)t->n_vocab);
        if (skip_special && t->is_special[ids[i]]) continue;
        size_t l = t->tok_len[ids[i]];
        if (out && o + l <= cap) memcpy(out + o, t->tok_bytes[ids[i]], l);
        o += l;
    }
    *n_bytes = o;
    return o > cap || (!out && o) ? LD_ERR_LIMIT : LD_OK;
}

ld_status ld_tokenizer_token_bytes(const ld_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
    if (!t || id < 0 || id >= t->n_vocab || !t->tok_bytes[id]) return LD_ERR_INVALID_ARG;
    *bytes = t->tok_bytes[id];
    *len = t->tok_len[id];
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
    if (t->kind == LD_TOK_BPE) { /* tokenizer.json spelling: byte-level code points */
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
uint64_t ld_tokenizer_hash(const ld_tokenizer *t) {
    return t ? t->hash : 0;
}

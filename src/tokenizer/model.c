/* tokenizer/model.c — the models that turn one pre-token into ids: BPE (over bytes, or over
 * characters with byte fallback as SentencePiece does), WordPiece (greedy longest match with
 * "##" continuations), and character vocabularies. BPE merges run in O(n log n): the symbols
 * form a linked list and candidate pairs wait in a heap ordered by (rank, position). */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* ---- the pair map ---- */
ld_status ld_pairmap_init(ld_ctx *ctx, ld_pairmap *m, size_t expected) {
    size_t cap = 64;
    int bits = 6;
    while (cap < expected * 2) cap *= 2, bits++;
    m->keys = ld_alloc(ctx, cap * sizeof *m->keys);
    m->vals = ld_alloc(ctx, cap * sizeof *m->vals);
    if (!m->keys || !m->vals) {
        ld_pairmap_free(ctx, m);
        return ld_ctx_status(ctx);
    }
    memset(m->keys, 0xff, cap * sizeof *m->keys);
    m->mask = cap - 1, m->count = 0, m->shift = 64 - bits;
    return LD_OK;
}

void ld_pairmap_free(ld_ctx *ctx, ld_pairmap *m) {
    ld_free(ctx, m->keys), ld_free(ctx, m->vals);
    memset(m, 0, sizeof *m);
}

void ld_pairmap_put(ld_pairmap *m, int32_t a, int32_t b, uint64_t v) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = (size_t)(((k ^ (k >> 29)) * 0x9E3779B97F4A7C15ULL) >> m->shift);
    while (m->keys[i] != UINT64_MAX) {
        if (m->keys[i] == k) return;
        i = (i + 1) & m->mask;
    }
    m->keys[i] = k, m->vals[i] = v, m->count++;
}

/* ---- scratch ---- */
struct ld_model_scratch {
    int32_t *sym, *next, *prev;
    uint64_t *heap; /* rank << 32 | position: the lowest rank, then the leftmost, first */
    size_t cap;
    char *buf; /* WordPiece candidate with its prefix */
    size_t buf_cap;
};

ld_model_scratch *ld_model_scratch_new(void) {
    return calloc(1, sizeof(ld_model_scratch));
}

void ld_model_scratch_free(ld_model_scratch *m) {
    if (!m) return;
    free(m->sym), free(m->next), free(m->prev), free(m->heap), free(m->buf);
    free(m);
}

static bool reserve(ld_model_scratch *m, size_t n) {
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

static void try_pair(const ld_tokenizer *t, ld_model_scratch *m, size_t *hn, int32_t i) {
    int32_t j = m->next[i];
    if (j < 0) return;
    int64_t v = ld_pairmap_get(&t->merges, m->sym[i], m->sym[j]);
    if (v >= 0) heap_push(m->heap, hn, ((uint64_t)v & 0xffffffff00000000ULL) | (uint32_t)i);
}

/* Merges the symbols m->sym[0..n) by rank, lowest rank first and leftmost among equals (as
 * Hugging Face's BPE and llama.cpp do); compacts the result into m->sym, returns its length. */
static size_t bpe_merge(const ld_tokenizer *t, ld_model_scratch *m, size_t n) {
    if (n < 2 || !t->n_merges) return n;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) m->next[i] = i + 1 < n ? (int32_t)i + 1 : -1, m->prev[i] = (int32_t)i - 1;
    for (size_t i = 0; i + 1 < n; i++) try_pair(t, m, &hn, (int32_t)i);
    while (hn) {
        uint64_t top = heap_pop(m->heap, &hn);
        int32_t i = (int32_t)(top & 0xffffffff), j = m->next[i];
        if (m->sym[i] < 0 || j < 0) continue; /* merged away, or nothing to its right any more */
        int64_t v = ld_pairmap_get(&t->merges, m->sym[i], m->sym[j]);
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
    return k;
}

/* The initial symbols of a character-level BPE piece: each character's token, or its bytes'
 * <0xXX> tokens (byte fallback), or [UNK]. Returns the count. */
static size_t char_symbols(const ld_tokenizer *t, ld_model_scratch *m, const char *piece, size_t len) {
    const unsigned char *s = (const unsigned char *)piece;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t l;
        ld_utf8_decode(s + i, len - i, &l);
        int64_t *v = ld_strmap_get(&t->by_bytes, piece + i, l);
        bool bytes_ok = t->byte_fallback;
        for (size_t k = 0; bytes_ok && k < l; k++) bytes_ok = t->byte_tok[s[i + k]] >= 0;
        if (v) m->sym[n++] = (int32_t)*v;
        else if (bytes_ok)
            for (size_t k = 0; k < l; k++) m->sym[n++] = t->byte_tok[s[i + k]];
        else if (t->unk >= 0 && !(t->fuse_unk && n && m->sym[n - 1] == t->unk)) m->sym[n++] = t->unk;
        i += l;
    }
    return n;
}

static ld_status wordpiece(const ld_tokenizer *t, ld_model_scratch *m, const char *piece, size_t len, ld_emit_fn emit,
                           void *user) {
    const unsigned char *s = (const unsigned char *)piece;
    size_t chars = 0, l, pl = t->wp_prefix ? strlen(t->wp_prefix) : 0;
    for (size_t i = 0; i < len; i += l) ld_utf8_decode(s + i, len - i, &l), chars++;
    size_t n = 0;
    if ((int)chars <= t->wp_max_chars) {
        if (len + pl > m->buf_cap) {
            char *b = realloc(m->buf, len + pl);
            if (!b) return LD_ERR_NOMEM;
            m->buf = b, m->buf_cap = len + pl;
        }
        if (!reserve(m, len)) return LD_ERR_NOMEM;
        memcpy(m->buf, t->wp_prefix, pl);
        for (size_t start = 0; start < len;) {
            int64_t *v = NULL;
            size_t end = len;
            while (end > start) {
                if (start == 0) v = ld_strmap_get(&t->by_bytes, piece, end);
                else {
                    memcpy(m->buf + pl, piece + start, end - start);
                    v = ld_strmap_get(&t->by_bytes, m->buf, pl + end - start);
                }
                if (v) break;
                do end--; /* back one character */
                while (end > start && (s[end] & 0xc0) == 0x80);
            }
            if (!v) {
                n = 0;
                break;
            }
            m->sym[n++] = (int32_t)*v;
            start = end;
        }
    }
    if (!n) {
        if (t->unk >= 0) emit(user, t->unk);
        return LD_OK;
    }
    for (size_t k = 0; k < n; k++) emit(user, m->sym[k]);
    return LD_OK;
}

ld_status ld_model_encode(const ld_tokenizer *t, ld_model_scratch *m, const char *piece, size_t len, ld_emit_fn emit,
                          void *user) {
    if (!len) return LD_OK;
    if (t->kind == LD_TOK_WORDPIECE) return wordpiece(t, m, piece, len, emit, user);
    if (t->ignore_merges) {
        int64_t *whole = ld_strmap_get(&t->by_bytes, piece, len);
        if (whole) {
            emit(user, (int32_t)*whole);
            return LD_OK;
        }
    }
    if (len >= (1u << 31)) return LD_ERR_LIMIT;
    if (!reserve(m, len)) return LD_ERR_NOMEM;
    size_t n;
    if (t->byte_level) {
        for (size_t i = 0; i < len; i++) m->sym[i] = t->byte_id[(unsigned char)piece[i]];
        n = len;
    } else {
        n = char_symbols(t, m, piece, len);
    }
    n = bpe_merge(t, m, n);
    for (size_t k = 0; k < n; k++) emit(user, m->sym[k]);
    return LD_OK;
}

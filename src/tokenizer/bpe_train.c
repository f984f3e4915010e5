/* tokenizer/bpe_train.c — learning byte-level BPE merges.
 *
 * 1. Documents are pre-tokenized in parallel (one word-count map per thread; the maps sorted
 *    in parallel and merged) into distinct words with counts, in byte order.
 * 2. Every adjacent symbol pair gets a count (weighted by word count) and the list of words
 *    it occurs in, found through an open-addressing index of (a, b) -> slot; a max-heap with
 *    lazy deletion yields the most frequent pair.
 * 3. Merging a pair rewrites only the words that contain it, updating the counts of the pairs
 *    around each occurrence, so the total work is proportional to the symbols removed. The
 *    words are rewritten on the thread team and the count changes applied in word order on
 *    one thread (see merge_part).
 * Ties go to the pair seen first, which depends only on the data: training is deterministic
 * and independent of the thread count (test_tokenizer training_learns_the_pinned_merges). */
#include <stdlib.h>
#include <string.h>

#include "core/team.h"
#include "tokenizer/tok_internal.h"

ld_bpe_train_params ld_bpe_train_default_params(void) {
    ld_bpe_train_params p = {.vocab_size = 32000, .min_frequency = 2, .pretokenizer = LD_PRETOK_GPT2};
    return p;
}

/* ---- step 1: word counts ---- */
typedef struct counter {
    ld_strmap map;
    pcre2_match_data *md; /* made by the thread's first piece */
    ld_status st;
} counter;

static void count_piece(void *user, const char *piece, size_t len) {
    counter *c = user;
    int64_t *v;
    if (c->st) return;
    if ((c->st = ld_strmap_put(&c->map, piece, len, 0, &v))) return;
    (*v)++;
}

typedef struct words {
    int64_t n;
    int32_t **sym;  /* symbols of each word */
    int32_t *len;
    int64_t *count;
} words;

/* ---- step 2/3: pair statistics ---- */
typedef struct pair_rec { /* 32 bytes: two a cache line */
    int64_t count;  /* weighted occurrences now */
    int32_t *where; /* words that contain (or contained) the pair */
    int32_t a, b;
    uint32_t n_where;
    uint32_t cap_where : 31, touched : 1; /* touched: count grew since the last flush */
} pair_rec;

typedef struct pair_stats {
    /* (a, b) -> slot, open addressing; key (uint64)a << 32 | b, UINT64_MAX = empty; one cache
     * line holds four entries, so a lookup is usually one miss */
    struct pair_entry {
        uint64_t key;
        int64_t slot;
    } *index;
    size_t mask;
    int shift; /* 64 - log2(capacity) */
    pair_rec *rec;
    int64_t n, cap;
    /* max-heap of (count, slot) */
    int64_t (*heap)[2];
    /* pairs whose count grew since the last flush: pushed once each by flush_touched */
    int64_t *touched;
    int64_t n_touched, cap_touched;
    int64_t heap_n, heap_cap;
    ld_status st;
} pair_stats;

static inline size_t pair_hash(const pair_stats *ps, uint64_t k) {
    return (size_t)(((k ^ (k >> 29)) * 0x9E3779B97F4A7C15ULL) >> ps->shift);
}

/* Doubles the index (or makes it, 2^17 entries). */
static bool index_grow(pair_stats *ps) {
    size_t cap = ps->index ? 2 * (ps->mask + 1) : (size_t)1 << 17;
    struct pair_entry *ix = malloc(cap * sizeof *ix), *old = ps->index;
    if (!ix) {
        ps->st = LD_ERR_NOMEM;
        return false;
    }
    for (size_t i = 0; i < cap; i++) ix[i].key = UINT64_MAX;
    int shift = 64;
    for (size_t c = cap; c > 1; c >>= 1) shift--;
    size_t ocap = old ? ps->mask + 1 : 0;
    ps->index = ix, ps->mask = cap - 1, ps->shift = shift;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i].key == UINT64_MAX) continue;
        size_t j = pair_hash(ps, old[i].key);
        while (ix[j].key != UINT64_MAX) j = (j + 1) & ps->mask;
        ix[j] = old[i];
    }
    free(old);
    return true;
}

static bool heap_less(const int64_t *x, const int64_t *y) { /* x below y */
    return x[0] < y[0] || (x[0] == y[0] && x[1] > y[1]);
}

static void heap_push(pair_stats *ps, int64_t count, int64_t slot) {
    if (ps->heap_n == ps->heap_cap) {
        int64_t cap = ps->heap_cap ? 2 * ps->heap_cap : 1 << 16;
        int64_t(*h)[2] = realloc(ps->heap, (size_t)cap * sizeof *h);
        if (!h) {
            ps->st = LD_ERR_NOMEM;
            return;
        }
        ps->heap = h, ps->heap_cap = cap;
    }
    int64_t i = ps->heap_n++;
    ps->heap[i][0] = count, ps->heap[i][1] = slot;
    while (i > 0) {
        int64_t p = (i - 1) / 2;
        if (!heap_less(ps->heap[p], ps->heap[i])) break;
        int64_t t0 = ps->heap[p][0], t1 = ps->heap[p][1];
        ps->heap[p][0] = ps->heap[i][0], ps->heap[p][1] = ps->heap[i][1];
        ps->heap[i][0] = t0, ps->heap[i][1] = t1;
        i = p;
    }
}

static bool heap_pop(pair_stats *ps, int64_t *count, int64_t *slot) {
    if (!ps->heap_n) return false;
    *count = ps->heap[0][0], *slot = ps->heap[0][1];
    ps->heap_n--;
    ps->heap[0][0] = ps->heap[ps->heap_n][0], ps->heap[0][1] = ps->heap[ps->heap_n][1];
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < ps->heap_n && heap_less(ps->heap[m], ps->heap[l])) m = l;
        if (r < ps->heap_n && heap_less(ps->heap[m], ps->heap[r])) m = r;
        if (m == i) break;
        int64_t t0 = ps->heap[m][0], t1 = ps->heap[m][1];
        ps->heap[m][0] = ps->heap[i][0], ps->heap[m][1] = ps->heap[i][1];
        ps->heap[i][0] = t0, ps->heap[i][1] = t1;
        i = m;
    }
    return true;
}

/* The slot of (a, b), or -1. Only reads the index (the merge's parallel phase calls it). */
static inline int64_t pair_find(const pair_stats *ps, uint64_t k) {
    size_t i = pair_hash(ps, k);
    for (;;) {
        if (ps->index[i].key == k) return ps->index[i].slot;
        if (ps->index[i].key == UINT64_MAX) return -1;
        i = (i + 1) & ps->mask;
    }
}

/* Adds delta (weighted count) to the pair in slot s; word w gains it when delta > 0. */
static void pair_apply(pair_stats *ps, int64_t s, int64_t delta, int32_t w) {
    pair_rec *r = &ps->rec[s];
    r->count += delta;
    if (delta <= 0) return;
    uint32_t nw = r->n_where;
    if (!nw || r->where[nw - 1] != w) { /* words are added in bursts: skip immediate repeats */
        if (nw == (uint32_t)r->cap_where) {
            uint32_t cap = nw ? 2 * nw : 4;
            int32_t *wl = realloc(r->where, (size_t)cap * sizeof *wl);
            if (!wl) {
                ps->st = LD_ERR_NOMEM;
                return;
            }
            r->where = wl, r->cap_where = cap;
        }
        r->where[r->n_where++] = w;
    }
    if (!r->touched) {
        if (ps->n_touched == ps->cap_touched) {
            int64_t cap = ps->cap_touched ? 2 * ps->cap_touched : 1 << 12;
            int64_t *tl = realloc(ps->touched, (size_t)cap * sizeof *tl);
            if (!tl) {
                ps->st = LD_ERR_NOMEM;
                return;
            }
            ps->touched = tl, ps->cap_touched = cap;
        }
        ps->touched[ps->n_touched++] = s;
        r->touched = 1;
    }
}

/* Adds delta to pair (a, b) as pair_apply, making the pair first if it is new: a new pair gets
 * the next slot, so slots number the pairs in the order they first appear (the heap's tie
 * break). */
static void pair_add(pair_stats *ps, int32_t a, int32_t b, int64_t delta, int32_t w) {
    if (ps->st) return;
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = pair_hash(ps, k);
    while (ps->index[i].key != k && ps->index[i].key != UINT64_MAX) i = (i + 1) & ps->mask;
    if (ps->index[i].key == UINT64_MAX) {
        if ((size_t)(ps->n + 1) * 2 > ps->mask + 1) { /* keep the index at most half full */
            if (!index_grow(ps)) return;
            i = pair_hash(ps, k);
            while (ps->index[i].key != UINT64_MAX) i = (i + 1) & ps->mask;
        }
        if (ps->n == ps->cap) {
            int64_t cap = ps->cap ? 2 * ps->cap : 1 << 16;
            pair_rec *r = realloc(ps->rec, (size_t)cap * sizeof *r);
            if (!r) {
                ps->st = LD_ERR_NOMEM;
                return;
            }
            ps->rec = r, ps->cap = cap;
        }
        int64_t s = ps->n++;
        ps->rec[s] = (pair_rec){.a = a, .b = b};
        ps->index[i].key = k, ps->index[i].slot = s;
    }
    pair_apply(ps, ps->index[i].slot, delta, w);
}

/* Pushes every pair whose count grew, once, with its count now. Only pairs with the newest
 * token grow during a merge (the others only lose occurrences), so the heap holds one entry per
 * new pair instead of one per occurrence; entries whose pair lost count since are re-pushed
 * with the smaller count when they come out. */
static void flush_touched(pair_stats *ps) {
    for (int64_t k = 0; k < ps->n_touched && !ps->st; k++) {
        int64_t s = ps->touched[k];
        ps->rec[s].touched = 0;
        heap_push(ps, ps->rec[s].count, s);
    }
    ps->n_touched = 0;
}

static void stats_free(pair_stats *ps) {
    for (int64_t s = 0; s < ps->n; s++) free(ps->rec[s].where);
    free(ps->index), free(ps->rec), free(ps->heap), free(ps->touched);
}

/* ---- step 3: one merge, in two phases ----
 * 1. On the thread team, each piece of the word list rewrites its words and writes down the
 *    pair-count changes in the order a serial loop would make them, looking each pair up in
 *    the index (read only: nothing is added in this phase).
 * 2. On the calling thread, the pieces' changes are applied in piece order: those of known
 *    pairs go straight to their slot (prefetched ahead), new pairs are added then. So slots,
 *    counts and word lists come out exactly as one thread doing everything would make them. */
enum { MERGE_GRAIN = 256 }; /* words a piece of phase 1 rewrites */

typedef struct merge_event {
    int64_t ref;   /* the pair's slot when phase 1 looked, or -1 - (a << 32 | b) for a new pair */
    int64_t delta; /* weighted count */
    int32_t w;     /* the word */
} merge_event;

typedef struct merge_log { /* one piece's changes */
    merge_event *ev;
    size_t n, cap;
    int64_t ab_delta; /* occurrences of the merged pair removed */
    bool nomem;
} merge_log;

typedef struct merge_args {
    const pair_stats *ps;
    words *W;
    const int32_t *wl; /* the words to rewrite, each once */
    int32_t a, b, z;
    merge_log *logs; /* one per piece */
} merge_args;

static void log_event(merge_log *lg, const pair_stats *ps, int32_t x, int32_t y, int64_t delta, int32_t w) {
    if (lg->n == lg->cap) {
        size_t cap = lg->cap ? 2 * lg->cap : 1024;
        merge_event *ev = realloc(lg->ev, cap * sizeof *ev);
        if (!ev) {
            lg->nomem = true;
            return;
        }
        lg->ev = ev, lg->cap = cap;
    }
    uint64_t k = (uint64_t)(uint32_t)x << 32 | (uint32_t)y;
    int64_t s = pair_find(ps, k);
    lg->ev[lg->n++] = (merge_event){s >= 0 ? s : -1 - (int64_t)k, delta, w};
}

/* Phase 1 for words wl[lo, hi): each rewritten merging every (a, b) left to right into z. */
static void merge_part(void *arg, int64_t lo, int64_t hi, int piece) {
    merge_args *m = arg;
    merge_log *lg = &m->logs[piece];
    const pair_stats *ps = m->ps;
    const int32_t a = m->a, b = m->b, z = m->z;
    lg->n = 0, lg->ab_delta = 0;
    for (int64_t k = lo; k < hi; k++) {
        int32_t w = m->wl[k];
        int32_t *s = m->W->sym[w], n = m->W->len[w], j = 0;
        int64_t c = m->W->count[w];
        for (int32_t i = 0; i < n;) {
            if (i + 1 < n && s[i] == a && s[i + 1] == b) {
                lg->ab_delta -= c;
                if (j > 0) {
                    if (s[j - 1] == z) log_event(lg, ps, z, z, c, w); /* (b, a) went with the previous occurrence */
                    else log_event(lg, ps, s[j - 1], a, -c, w), log_event(lg, ps, s[j - 1], z, c, w);
                }
                if (i + 2 < n) {
                    log_event(lg, ps, b, s[i + 2], -c, w);
                    bool next_occ = i + 3 < n && s[i + 2] == a && s[i + 3] == b;
                    if (!next_occ) log_event(lg, ps, z, s[i + 2], c, w);
                }
                s[j++] = z;
                i += 2;
            } else {
                s[j++] = s[i++];
            }
        }
        m->W->len[w] = j;
    }
}

/* Phase 2: the logs of pieces [0, n_pieces) applied in order. */
static void merge_apply(pair_stats *ps, merge_log *logs, int n_pieces, int64_t sab) {
    enum { AHEAD = 8 };
    for (int p = 0; p < n_pieces && !ps->st; p++) {
        merge_log *lg = &logs[p];
        if (lg->nomem) {
            ps->st = LD_ERR_NOMEM;
            return;
        }
        ps->rec[sab].count += lg->ab_delta;
        const merge_event *ev = lg->ev;
        size_t n = lg->n;
        for (size_t i = 0; i < n && !ps->st; i++) {
            if (i + AHEAD < n && ev[i + AHEAD].ref >= 0) __builtin_prefetch(&ps->rec[ev[i + AHEAD].ref], 1);
            if (i + AHEAD / 2 < n && ev[i + AHEAD / 2].ref >= 0 && ev[i + AHEAD / 2].delta > 0) {
                const pair_rec *r = &ps->rec[ev[i + AHEAD / 2].ref];
                if (r->n_where) __builtin_prefetch(&r->where[r->n_where - 1], 1);
            }
            if (ev[i].ref >= 0) pair_apply(ps, ev[i].ref, ev[i].delta, ev[i].w);
            else {
                uint64_t k = (uint64_t)(-1 - ev[i].ref);
                pair_add(ps, (int32_t)(k >> 32), (int32_t)(uint32_t)k, ev[i].delta, ev[i].w);
            }
        }
    }
}

/* A word in a thread's map: its bytes, and how often the thread saw it. */
typedef struct word_ref {
    const unsigned char *p;
    uint32_t len;
    int64_t count;
} word_ref;

static int cmp_refs(const void *x, const void *y) {
    const word_ref *a = x, *b = y;
    int c = memcmp(a->p, b->p, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

typedef struct sort_args {
    word_ref **refs;
    const size_t *n;
} sort_args;

static void sort_part(void *arg, int64_t lo, int64_t hi, int piece) {
    sort_args *a = arg;
    for (int64_t t = lo; t < hi; t++) qsort(a->refs[t], a->n[t], sizeof *a->refs[t], cmp_refs);
    (void)piece;
}

typedef struct {
    counter *cs; /* per thread of the team */
    const ld_split_op *pt;
    const char *text;
    const size_t *doc_off;
    int64_t nd;
    const ld_bpe_train_params *p;
    int64_t done; /* documents counted (atomic) */
} count_args;

/* Documents [lo, hi) counted into the running thread's map; the calling thread reports. */
static void count_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    count_args *a = arg;
    counter *c = &a->cs[ld_par_thread()];
    if (!c->md && !c->st && !(c->md = pcre2_match_data_create_from_pattern(a->pt->code, NULL))) c->st = LD_ERR_NOMEM;
    for (int64_t d = lo; d < hi && !c->st; d++)
        ld_split_run(a->pt, c->md, a->text + a->doc_off[d], a->doc_off[d + 1] - a->doc_off[d], count_piece, c);
    int64_t done = __atomic_add_fetch(&a->done, hi - lo, __ATOMIC_RELAXED);
    if (ld_par_thread() == 0 && a->p->progress) a->p->progress(a->p->progress_user, "counting", (double)done, (double)a->nd);
}

ld_status ld_bpe_train(ld_ctx *ctx, const ld_bpe_train_params *p, ld_text_source *src, ld_tokenizer **out) {
    if (!p || !src || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "bpe train: NULL argument");
    *out = NULL;
    int64_t base = 256 + p->n_special_tokens;
    if (p->vocab_size < base || p->vocab_size > (1 << 24))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "bpe train: vocab_size %lld must be in %lld..16777216 (256 bytes + %d specials)",
                        (long long)p->vocab_size, (long long)base, p->n_special_tokens);
    const ld_pre_row *row = ld_pre_row_by_kind(p->pretokenizer);
    if (!row) return ld_error(ctx, LD_ERR_INVALID_ARG, "bpe train: unknown pre-tokenizer %d", (int)p->pretokenizer);
    ld_split_op pt;
    ld_status st = ld_split_op_init(ctx, &pt, LD_SPLIT_REGEX, row->regexes[0], 0);
    if (st) return st;
    /* read all documents (the corpus is held in memory once) */
    size_t cap = 1 << 20, used = 0, nd = 0, dcap = 1 << 16;
    char *text = malloc(cap);
    size_t *doc_off = malloc(dcap * sizeof *doc_off);
    const char *doc;
    size_t dlen;
    while (text && doc_off && (st = src->next(src->user, &doc, &dlen)) == LD_OK) {
        if (used + dlen + 1 > cap) {
            while (used + dlen + 1 > cap) cap *= 2;
            char *t2 = realloc(text, cap);
            if (!t2) break;
            text = t2;
        }
        if (nd + 2 > dcap) {
            size_t *o2 = realloc(doc_off, (dcap *= 2) * sizeof *doc_off);
            if (!o2) break;
            doc_off = o2;
        }
        doc_off[nd++] = used;
        memcpy(text + used, doc, dlen);
        used += dlen;
        if (p->progress && nd % 4096 == 0) p->progress(p->progress_user, "reading", (double)used, 0);
    }
    if (st == LD_ERR_NOT_FOUND) st = LD_OK;
    if (!st && (!text || !doc_off)) st = ld_error(ctx, LD_ERR_NOMEM, "bpe train: out of memory reading the corpus");
    if (st) {
        free(text), free(doc_off), ld_split_op_free(ctx, &pt);
        return st;
    }
    doc_off[nd] = used;
    /* pre-tokenize and count on the thread team: each thread counts into its own map */
    LD_TEAM_SCOPE_THREADS(ctx, p->n_threads);
    const int nt = ld_par_threads();
    counter *cs = calloc((size_t)nt, sizeof *cs);
    if (!cs) st = LD_ERR_NOMEM;
    for (int t = 0; !st && t < nt; t++) st = ld_strmap_init(ctx, &cs[t].map, 1 << 16);
    if (!st) {
        count_args a = {cs, &pt, text, doc_off, (int64_t)nd, p, 0};
        ld_par_for((int64_t)nd, 256, count_part, &a);
        for (int t = 0; t < nt; t++) {
            if (!st) st = cs[t].st;
            if (cs[t].md) pcre2_match_data_free(cs[t].md);
        }
    }
    free(text), free(doc_off);
    ld_split_op_free(ctx, &pt);
    /* distinct words in byte order (so everything after is independent of thread count): each
     * thread's map sorted on the team, then the sorted lists merged, counts of a word that
     * several threads saw added. (Inserting one map into another in slot order, as before,
     * filled the target's probe sequences in hash order: a quarter of all training time.) */
    words W = {0};
    word_ref **refs = cs ? calloc((size_t)nt, sizeof *refs) : NULL;
    size_t *nref = cs ? calloc((size_t)nt, sizeof *nref) : NULL, *at = cs ? calloc((size_t)nt, sizeof *at) : NULL, total = 0;
    if (!st && (!refs || !nref || !at)) st = LD_ERR_NOMEM;
    for (int t = 0; !st && t < nt; t++) {
        const ld_strmap *m = &cs[t].map;
        if (!(refs[t] = malloc((m->count + 1) * sizeof *refs[t]))) {
            st = LD_ERR_NOMEM;
            break;
        }
        for (size_t i = 0; i < m->cap; i++)
            if (m->hashes[i])
                refs[t][nref[t]++] = (word_ref){(const unsigned char *)m->keys + m->key_off[i], m->key_len[i], m->values[i]};
        total += nref[t];
    }
    if (!st) {
        sort_args sa = {refs, nref};
        ld_par_for(nt, 1, sort_part, &sa);
        W.sym = calloc(total + 1, sizeof *W.sym), W.len = malloc((total + 1) * sizeof *W.len);
        W.count = malloc((total + 1) * sizeof *W.count);
        if (!W.sym || !W.len || !W.count) st = LD_ERR_NOMEM;
    }
    while (!st) { /* merge: the smallest head next (nt is small) */
        const word_ref *best = NULL;
        for (int t = 0; t < nt; t++)
            if (at[t] < nref[t] && (!best || cmp_refs(&refs[t][at[t]], best) < 0)) best = &refs[t][at[t]];
        if (!best) break;
        word_ref wr = *best;
        int64_t count = 0;
        for (int t = 0; t < nt; t++) /* every thread's copy of this word */
            if (at[t] < nref[t] && !cmp_refs(&refs[t][at[t]], &wr)) count += refs[t][at[t]++].count;
        int64_t i = W.n++;
        if (!(W.sym[i] = malloc((wr.len + 1) * sizeof(int32_t)))) {
            st = LD_ERR_NOMEM;
            break;
        }
        for (uint32_t j = 0; j < wr.len; j++) W.sym[i][j] = (int32_t)(p->n_special_tokens + wr.p[j]);
        W.len[i] = (int32_t)wr.len, W.count[i] = count;
    }
    for (int t = 0; refs && t < nt; t++) free(refs[t]);
    free(refs), free(nref), free(at);
    for (int t = 0; cs && t < nt; t++) ld_strmap_free(&cs[t].map);
    free(cs);
    /* the tokenizer: specials, then the 256 bytes, then merges */
    ld_tokenizer *tok = st ? NULL : ld_tokenizer_alloc(ctx, p->vocab_size);
    pair_stats ps = {0};
    int32_t *stamp = NULL;
    merge_log *logs = NULL;
    if (!st && !tok) st = ld_ctx_status(ctx);
    if (!st) {
        tok->kind = LD_TOK_BPE;
        tok->byte_level = true;
        tok->specials = ld_calloc(ctx, (size_t)p->n_special_tokens + 1, sizeof *tok->specials);
        tok->merge_list = ld_calloc(ctx, (size_t)p->vocab_size, sizeof *tok->merge_list);
        stamp = calloc((size_t)W.n + 1, sizeof *stamp);
        logs = calloc(LD_PAR_MAX_PIECES, sizeof *logs);
        if (!tok->specials || !tok->merge_list || !stamp || !logs) st = LD_ERR_NOMEM;
    }
    ld_strmap seen = {0}; /* specials given so far: a vocabulary may reserve tens of thousands */
    if (!st) st = ld_strmap_init(ctx, &seen, (size_t)p->n_special_tokens + 1);
    for (int i = 0; !st && i < p->n_special_tokens; i++) {
        const char *sp = p->special_tokens[i];
        if (!sp || !*sp) {
            st = ld_error(ctx, LD_ERR_INVALID_ARG, "bpe train: special token %d is empty", i);
            break;
        }
        int64_t *first = NULL;
        if ((st = ld_strmap_put(&seen, sp, strlen(sp), i, &first))) break;
        if (*first != i) st = ld_error(ctx, LD_ERR_INVALID_ARG, "bpe train: special token '%s' given twice", sp);
        if (st || !(tok->tok_bytes[i] = ld_strdup(ctx, sp)) || !(tok->specials[i].text = ld_strdup(ctx, sp))) {
            if (!st) st = ld_ctx_status(ctx);
            break;
        }
        tok->tok_len[i] = (uint32_t)strlen(sp), tok->is_special[i] = true;
        tok->specials[i].len = strlen(sp), tok->specials[i].id = i;
        tok->n_specials++;
    }
    ld_strmap_free(&seen);
    for (int b = 0; !st && b < 256; b++) {
        int64_t id = p->n_special_tokens + b;
        if (!(tok->tok_bytes[id] = ld_alloc(ctx, 1))) st = ld_ctx_status(ctx);
        else tok->tok_bytes[id][0] = (char)b, tok->tok_len[id] = 1;
    }
    if (!st && !index_grow(&ps)) st = ps.st;
    for (int64_t w = 0; !st && w < W.n; w++) {
        for (int32_t i = 0; i + 1 < W.len[w]; i++) pair_add(&ps, W.sym[w][i], W.sym[w][i + 1], W.count[w], (int32_t)w);
        st = ps.st;
    }
    if (!st) flush_touched(&ps), st = ps.st;
    int64_t next_id = base, n_merges = 0;
    while (!st && next_id < p->vocab_size) {
        int64_t c, s;
        if (!heap_pop(&ps, &c, &s)) break;
        if (c != ps.rec[s].count) { /* the pair lost occurrences since: back in with its count now */
            if (ps.rec[s].count > 0) heap_push(&ps, ps.rec[s].count, s);
            if ((st = ps.st)) break;
            continue;
        }
        if (c < p->min_frequency || c <= 0) break;
        int32_t a = ps.rec[s].a, b = ps.rec[s].b, z = (int32_t)next_id;
        size_t la = tok->tok_len[a], lb = tok->tok_len[b];
        char *nb = ld_alloc(ctx, la + lb);
        if (!nb) {
            st = ld_ctx_status(ctx);
            break;
        }
        memcpy(nb, tok->tok_bytes[a], la), memcpy(nb + la, tok->tok_bytes[b], lb);
        tok->tok_bytes[z] = nb, tok->tok_len[z] = (uint32_t)(la + lb);
        tok->merge_list[n_merges][0] = a, tok->merge_list[n_merges][1] = b;
        n_merges++, next_id++;
        /* the words that held the pair, each once (the list is the pair's no more: the merge
         * adds no occurrence of it) */
        uint32_t nw = ps.rec[s].n_where, nu = 0;
        int32_t *wl = ps.rec[s].where;
        ps.rec[s].where = NULL, ps.rec[s].n_where = ps.rec[s].cap_where = 0;
        for (uint32_t k = 0; k < nw; k++) {
            int32_t w = wl[k];
            if (stamp[w] != z) stamp[w] = z, wl[nu++] = w;
        }
        merge_args ma = {&ps, &W, wl, a, b, z, logs};
        ld_par_for(nu, MERGE_GRAIN, merge_part, &ma);
        merge_apply(&ps, logs, ld_par_pieces(nu, MERGE_GRAIN), s);
        free(wl);
        flush_touched(&ps);
        st = ps.st;
        if (p->progress && n_merges % 256 == 0)
            p->progress(p->progress_user, "merging", (double)(next_id - base), (double)(p->vocab_size - base));
    }
    if (st == LD_ERR_NOMEM) st = ld_error(ctx, LD_ERR_NOMEM, "bpe train: out of memory");
    stats_free(&ps);
    free(stamp);
    for (int i = 0; logs && i < LD_PAR_MAX_PIECES; i++) free(logs[i].ev);
    free(logs);
    for (int64_t w = 0; w < W.n; w++) free(W.sym[w]);
    free(W.sym), free(W.len), free(W.count);
    if (!st) {
        tok->n_vocab = next_id; /* fewer tokens than asked when pairs ran out */
        tok->n_merges = n_merges;
        if (next_id < p->vocab_size)
            ld_log(ctx, LD_LOG_WARN, "bpe train: only %lld tokens (no pair occurs %lld times any more)",
                   (long long)next_id, (long long)p->min_frequency);
        if (!(st = ld_tokenizer_add_split(tok, LD_SPLIT_REGEX, row->regexes[0], 0))) st = ld_tokenizer_finish(tok);
    }
    if (st) {
        if (tok) tok->n_vocab = p->vocab_size; /* free every allocated entry */
        ld_tokenizer_free(tok);
        return st;
    }
    if (p->progress) p->progress(p->progress_user, "done", 1, 1);
    *out = tok;
    return LD_OK;
}

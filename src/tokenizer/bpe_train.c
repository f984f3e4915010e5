#define _GNU_SOURCE /* qsort_r */
/* tokenizer/bpe_train.c — learning byte-level BPE merges.
 *
 * 1. Documents are pre-tokenized in parallel (one word-count map per thread, merged in thread
 *    order) into distinct words with counts.
 * 2. Every adjacent symbol pair gets a count (weighted by word count) and the list of words
 *    it occurs in; a max-heap with lazy deletion yields the most frequent pair.
 * 3. Merging a pair rewrites only the words that contain it, updating the counts of the pairs
 *    around each occurrence, so the total work is proportional to the symbols removed.
 * Ties go to the pair seen first, which depends only on the data: training is deterministic
 * and independent of the thread count. */
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
typedef struct pair_stats {
    ld_strmap index;   /* (a, b) -> slot */
    int32_t (*pair)[2];
    int64_t *count;
    int32_t **where;   /* words that contain (or contained) the pair */
    int32_t *n_where, *cap_where;
    int64_t n, cap;
    /* max-heap of (count, slot) */
    int64_t (*heap)[2];
    /* pairs whose count grew since the last flush: pushed once each by flush_touched */
    int64_t *touched;
    int64_t n_touched, cap_touched;
    uint8_t *is_touched;
    int64_t heap_n, heap_cap;
    ld_status st;
} pair_stats;

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

/* Adds delta (weighted count) to pair (a, b); word w gains it when delta > 0. */
static void pair_add(pair_stats *ps, int32_t a, int32_t b, int64_t delta, int32_t w) {
    if (ps->st) return;
    int32_t key[2] = {a, b};
    int64_t *slotp;
    if ((ps->st = ld_strmap_put(&ps->index, (const char *)key, sizeof key, -1, &slotp))) return;
    if (*slotp < 0) {
        if (ps->n == ps->cap) {
            int64_t cap = ps->cap ? 2 * ps->cap : 1 << 16;
            void *p1 = realloc(ps->pair, (size_t)cap * sizeof *ps->pair), *p2, *p3, *p4, *p5;
            if (p1) ps->pair = p1;
            p2 = realloc(ps->count, (size_t)cap * sizeof *ps->count);
            if (p2) ps->count = p2;
            p3 = realloc(ps->where, (size_t)cap * sizeof *ps->where);
            if (p3) ps->where = p3;
            p4 = realloc(ps->n_where, (size_t)cap * sizeof *ps->n_where);
            if (p4) ps->n_where = p4;
            p5 = realloc(ps->cap_where, (size_t)cap * sizeof *ps->cap_where);
            if (p5) ps->cap_where = p5;
            uint8_t *p6 = realloc(ps->is_touched, (size_t)cap);
            if (p6) ps->is_touched = p6;
            if (!p1 || !p2 || !p3 || !p4 || !p5 || !p6) {
                ps->st = LD_ERR_NOMEM;
                return;
            }
            ps->cap = cap;
        }
        int64_t s = ps->n++;
        ps->pair[s][0] = a, ps->pair[s][1] = b, ps->count[s] = 0;
        ps->where[s] = NULL, ps->n_where[s] = 0, ps->cap_where[s] = 0, ps->is_touched[s] = 0;
        *slotp = s;
    }
    int64_t s = *slotp;
    ps->count[s] += delta;
    if (delta > 0) {
        int32_t nw = ps->n_where[s];
        if (!nw || ps->where[s][nw - 1] != w) { /* words are added in bursts: skip immediate repeats */
            if (nw == ps->cap_where[s]) {
                int32_t cap = nw ? 2 * nw : 4;
                int32_t *wl = realloc(ps->where[s], (size_t)cap * sizeof *wl);
                if (!wl) {
                    ps->st = LD_ERR_NOMEM;
                    return;
                }
                ps->where[s] = wl, ps->cap_where[s] = cap;
            }
            ps->where[s][ps->n_where[s]++] = w;
        }
        if (!ps->is_touched[s]) {
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
            ps->is_touched[s] = 1;
        }
    }
}

/* Pushes every pair whose count grew, once, with its count now. Only pairs with the newest
 * token grow during a merge (the others only lose occurrences), so the heap holds one entry per
 * new pair instead of one per occurrence; entries whose pair lost count since are re-pushed
 * with the smaller count when they come out. */
static void flush_touched(pair_stats *ps) {
    for (int64_t k = 0; k < ps->n_touched && !ps->st; k++) {
        int64_t s = ps->touched[k];
        ps->is_touched[s] = 0;
        heap_push(ps, ps->count[s], s);
    }
    ps->n_touched = 0;
}

static void stats_free(pair_stats *ps) {
    for (int64_t s = 0; s < ps->n; s++) free(ps->where[s]);
    free(ps->pair), free(ps->count), free(ps->where), free(ps->n_where), free(ps->cap_where), free(ps->heap);
    free(ps->touched), free(ps->is_touched);
    ld_strmap_free(&ps->index);
}

/* Rewrites word w, merging every (a, b) left to right into z; updates pair counts. */
static void merge_word(pair_stats *ps, words *W, int32_t w, int32_t a, int32_t b, int32_t z) {
    int32_t *s = W->sym[w], n = W->len[w], j = 0;
    int64_t c = W->count[w];
    for (int32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            pair_add(ps, a, b, -c, w);
            if (j > 0) {
                if (s[j - 1] == z) pair_add(ps, z, z, c, w); /* (b, a) went with the previous occurrence */
                else pair_add(ps, s[j - 1], a, -c, w), pair_add(ps, s[j - 1], z, c, w);
            }
            if (i + 2 < n) {
                pair_add(ps, b, s[i + 2], -c, w);
                bool next_occ = i + 3 < n && s[i + 2] == a && s[i + 3] == b;
                if (!next_occ) pair_add(ps, z, s[i + 2], c, w);
            }
            s[j++] = z;
            i += 2;
        } else {
            s[j++] = s[i++];
        }
    }
    W->len[w] = j;
}

static int cmp_words(const void *x, const void *y, void *arg) {
    const ld_strmap *m = arg;
    size_t i = *(const size_t *)x, k = *(const size_t *)y;
    size_t li = m->key_len[i], lk = m->key_len[k];
    int c = memcmp(m->keys + m->key_off[i], m->keys + m->key_off[k], li < lk ? li : lk);
    return c ? c : (li > lk) - (li < lk);
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
    /* merge the per-thread maps into thread 0's */
    for (int t = 1; cs && !st && t < nt; t++) {
        ld_strmap *m = &cs[t].map;
        for (size_t i = 0; i < m->cap && !st; i++) {
            if (!m->hashes[i]) continue;
            int64_t *v;
            if (!(st = ld_strmap_put(&cs[0].map, m->keys + m->key_off[i], m->key_len[i], 0, &v))) *v += m->values[i];
        }
    }
    for (int t = 1; cs && t < nt; t++) ld_strmap_free(&cs[t].map);
    /* distinct words in byte order (so everything after is independent of thread count) */
    words W = {0};
    ld_strmap *wm = cs ? &cs[0].map : NULL;
    size_t *order = NULL;
    if (!st) {
        order = malloc(wm->count * sizeof *order);
        W.sym = calloc(wm->count, sizeof *W.sym), W.len = malloc(wm->count * sizeof *W.len);
        W.count = malloc(wm->count * sizeof *W.count);
        if (!order || !W.sym || !W.len || !W.count) st = LD_ERR_NOMEM;
    }
    if (!st) {
        size_t k = 0;
        for (size_t i = 0; i < wm->cap; i++)
            if (wm->hashes[i]) order[k++] = i;
        qsort_r(order, k, sizeof *order, cmp_words, wm);
        for (size_t i = 0; i < k && !st; i++) {
            size_t slot = order[i], len = wm->key_len[slot];
            const unsigned char *b = (const unsigned char *)wm->keys + wm->key_off[slot];
            if (!(W.sym[i] = malloc(len * sizeof(int32_t)))) st = LD_ERR_NOMEM;
            for (size_t j = 0; j < len && !st; j++) W.sym[i][j] = (int32_t)(p->n_special_tokens + b[j]);
            W.len[i] = (int32_t)len, W.count[i] = wm->values[slot];
        }
        W.n = (int64_t)k;
    }
    free(order);
    if (cs) ld_strmap_free(&cs[0].map);
    free(cs);
    /* the tokenizer: specials, then the 256 bytes, then merges */
    ld_tokenizer *tok = st ? NULL : ld_tokenizer_alloc(ctx, p->vocab_size);
    pair_stats ps = {0};
    int32_t *stamp = NULL;
    if (!st && !tok) st = ld_ctx_status(ctx);
    if (!st) {
        tok->kind = LD_TOK_BPE;
        tok->byte_level = true;
        tok->specials = ld_calloc(ctx, (size_t)p->n_special_tokens + 1, sizeof *tok->specials);
        tok->merge_list = ld_calloc(ctx, (size_t)p->vocab_size, sizeof *tok->merge_list);
        stamp = calloc((size_t)W.n + 1, sizeof *stamp);
        if (!tok->specials || !tok->merge_list || !stamp) st = LD_ERR_NOMEM;
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
    if (!st) st = ld_strmap_init(ctx, &ps.index, 1 << 16);
    for (int64_t w = 0; !st && w < W.n; w++) {
        for (int32_t i = 0; i + 1 < W.len[w]; i++) pair_add(&ps, W.sym[w][i], W.sym[w][i + 1], W.count[w], (int32_t)w);
        st = ps.st;
    }
    if (!st) flush_touched(&ps), st = ps.st;
    int64_t next_id = base, n_merges = 0;
    while (!st && next_id < p->vocab_size) {
        int64_t c, s;
        if (!heap_pop(&ps, &c, &s)) break;
        if (c != ps.count[s]) { /* the pair lost occurrences since: back in with its count now */
            if (ps.count[s] > 0) heap_push(&ps, ps.count[s], s);
            if ((st = ps.st)) break;
            continue;
        }
        if (c < p->min_frequency || c <= 0) break;
        int32_t a = ps.pair[s][0], b = ps.pair[s][1], z = (int32_t)next_id;
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
        /* the word list may grow while we merge (new pairs in the same words): iterate a snapshot */
        int32_t nw = ps.n_where[s];
        int32_t *wl = malloc((size_t)nw * sizeof *wl);
        if (!wl) {
            st = LD_ERR_NOMEM;
            break;
        }
        memcpy(wl, ps.where[s], (size_t)nw * sizeof *wl);
        for (int32_t k = 0; k < nw && !ps.st; k++) {
            int32_t w = wl[k];
            if (stamp[w] == z) continue;
            stamp[w] = z;
            merge_word(&ps, &W, w, a, b, z);
        }
        free(wl);
        free(ps.where[s]);
        ps.where[s] = NULL, ps.n_where[s] = ps.cap_where[s] = 0;
        flush_touched(&ps);
        st = ps.st;
        if (p->progress && n_merges % 256 == 0)
            p->progress(p->progress_user, "merging", (double)(next_id - base), (double)(p->vocab_size - base));
    }
    if (st == LD_ERR_NOMEM) st = ld_error(ctx, LD_ERR_NOMEM, "bpe train: out of memory");
    stats_free(&ps);
    free(stamp);
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

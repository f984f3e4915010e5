/* data/mlm.c — masked-LM batches: sequences from corpus files (FASTA records, text lines),
 * tokenized once into memory, drawn in a shuffled order, bucketed by length, cropped to the
 * row length and masked BERT/ESM style (see liandan/data.h). Everything random derives from
 * (seed, epoch, document), so a cursor of three integers resumes exactly. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/data.h"
#include "io/json.h"
#include "liandan/io.h"

struct ld_mlm_source {
    ld_ctx *ctx;
    ld_mlm_params p;
    ld_mlm_specials sp;
    int64_t T;            /* row length, specials included */
    int32_t *tokens;      /* every document's tokens, back to back */
    int64_t *start;       /* document d is tokens[start[d] .. start[d+1]) */
    int64_t n_docs, n_tokens, cap_docs, cap_tokens;
    int32_t *normal;      /* ids a random replacement draws from (not special) */
    int64_t n_normal;
    bool *word_start;     /* per token id: begins a word (false for WordPiece "##" pieces) */
    /* the cursor */
    int64_t epoch, group, batch;
    /* the current epoch's order and group (rebuilt from the cursor when needed) */
    int64_t *order, order_epoch;
    int64_t *group_docs, group_n, group_id, group_epoch;
    int64_t *batch_order; /* batch indices of the group in drawing order */
};

ld_mlm_params ld_mlm_default_params(void) {
    ld_mlm_params p = {.mask_prob = 0.15f, .replace_mask = 0.8f, .replace_random = 0.1f, .bucket = 64, .seed = 1,
                       .split_long = false, .corpus = ld_corpus_default_params()};
    return p;
}

/* ---- special ids --------------------------------------------------------------------- */

static int32_t first_id(const ld_tokenizer *tok, const char *const *names) {
    for (int i = 0; names[i]; i++) {
        int32_t id = ld_tokenizer_token_id(tok, names[i]);
        if (id >= 0) return id;
    }
    return -1;
}

ld_status ld_mlm_specials_of(ld_ctx *ctx, const ld_tokenizer *tok, ld_mlm_specials *sp) {
    if (!tok || !sp) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_mlm_specials_of: NULL argument");
    sp->cls = first_id(tok, (const char *const[]){"[CLS]", "<cls>", NULL});
    sp->sep = first_id(tok, (const char *const[]){"[SEP]", "<eos>", "</s>", NULL});
    sp->pad = first_id(tok, (const char *const[]){"[PAD]", "<pad>", NULL});
    sp->mask = first_id(tok, (const char *const[]){"[MASK]", "<mask>", NULL});
    sp->unk = first_id(tok, (const char *const[]){"[UNK]", "<unk>", NULL});
    if (sp->cls < 0) sp->cls = ld_tokenizer_bos_id(tok);
    if (sp->sep < 0) sp->sep = ld_tokenizer_eos_id(tok);
    if (sp->pad < 0) sp->pad = ld_tokenizer_pad_id(tok);
    const char *missing = sp->cls < 0 ? "[CLS]/<cls>" : sp->sep < 0 ? "[SEP]/<eos>" : sp->pad < 0 ? "[PAD]/<pad>"
                          : sp->mask < 0 ? "[MASK]/<mask>" : NULL;
    if (missing)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "masked LM: the tokenizer has no %s token", missing);
    return LD_OK;
}

/* ---- loading ------------------------------------------------------------------------- */

static ld_status grow(ld_mlm_source *s, int64_t more_tokens) {
    ld_ctx *ctx = s->ctx;
    if (s->n_docs + 2 > s->cap_docs) {
        int64_t cap = s->cap_docs ? 2 * s->cap_docs : 4096;
        int64_t *st = ld_alloc(ctx, (size_t)cap * sizeof *st);
        if (!st) return ld_ctx_status(ctx);
        if (s->start) memcpy(st, s->start, (size_t)(s->n_docs + 1) * sizeof *st);
        ld_free(ctx, s->start);
        s->start = st, s->cap_docs = cap;
    }
    if (s->n_tokens + more_tokens > s->cap_tokens) {
        int64_t cap = s->cap_tokens ? 2 * s->cap_tokens : 1 << 20;
        while (cap < s->n_tokens + more_tokens) cap *= 2;
        int32_t *t = ld_alloc(ctx, (size_t)cap * sizeof *t);
        if (!t) return ld_ctx_status(ctx);
        if (s->tokens) memcpy(t, s->tokens, (size_t)s->n_tokens * sizeof *t);
        ld_free(ctx, s->tokens);
        s->tokens = t, s->cap_tokens = cap;
    }
    return LD_OK;
}

/* Appends ids as one document, or as consecutive pieces of at most T - 2 with split_long. */
static ld_status add_doc(ld_mlm_source *s, const int32_t *ids, int64_t n) {
    int64_t piece = s->p.split_long ? s->T - 2 : n;
    for (int64_t off = 0; off < n; off += piece) {
        int64_t len = n - off < piece ? n - off : piece;
        ld_status st = grow(s, len);
        if (st) return st;
        memcpy(s->tokens + s->n_tokens, ids + off, (size_t)len * sizeof *ids);
        s->n_tokens += len;
        s->start[++s->n_docs] = s->n_tokens;
    }
    return LD_OK;
}

static ld_status load_file(ld_mlm_source *s, const ld_tokenizer *tok, const char *path, int32_t **buf, size_t *cap) {
    ld_ctx *ctx = s->ctx;
    ld_corpus *c = NULL;
    ld_status st = ld_corpus_open(ctx, path, &s->p.corpus, &c);
    if (st) return st;
    const char *doc;
    size_t len;
    while (!(s->p.max_docs > 0 && s->n_docs >= s->p.max_docs) && (st = ld_corpus_next(c, &doc, &len)) == LD_OK) {
        size_t n = 0;
        st = ld_tokenizer_encode(tok, doc, len, LD_ENCODE_SPECIAL_AS_TEXT, *buf, *cap, &n);
        if (st == LD_ERR_LIMIT) {
            ld_ctx_clear_error(ctx);
            ld_free(ctx, *buf);
            *cap = n + n / 2 + 16;
            if (!(*buf = ld_alloc(ctx, *cap * sizeof **buf))) st = ld_ctx_status(ctx);
            else st = ld_tokenizer_encode(tok, doc, len, LD_ENCODE_SPECIAL_AS_TEXT, *buf, *cap, &n);
        }
        if (!st && n > 0) st = add_doc(s, *buf, (int64_t)n);
        if (st) break;
    }
    ld_corpus_close(c);
    if (st == LD_ERR_NOT_FOUND) st = LD_OK, ld_ctx_clear_error(ctx);
    return st ? ld_error_wrap(ctx, st, "masked-LM data %s: ", path) : LD_OK;
}

/* The ids a random replacement may take (not special) and WordPiece word starts. */
static ld_status vocab_tables(ld_mlm_source *s, const ld_tokenizer *tok) {
    ld_ctx *ctx = s->ctx;
    int64_t V = ld_tokenizer_vocab_size(tok);
    if (!(s->normal = ld_alloc(ctx, (size_t)V * sizeof *s->normal)) ||
        !(s->word_start = ld_alloc(ctx, (size_t)V * sizeof *s->word_start)))
        return ld_ctx_status(ctx);
    for (int64_t id = 0; id < V; id++) {
        int32_t i32 = (int32_t)id;
        char out[8];
        size_t nb = 0;
        ld_status st = ld_tokenizer_decode(tok, &i32, 1, true, out, sizeof out, &nb);
        if (st == LD_ERR_LIMIT) ld_ctx_clear_error(ctx), st = LD_OK;
        if (st) return st;
        if (nb > 0) s->normal[s->n_normal++] = i32; /* specials decode to nothing when skipped */
        const char *b;
        size_t bl;
        s->word_start[id] = !(ld_tokenizer_token_bytes(tok, i32, &b, &bl) == LD_OK && bl > 2 && b[0] == '#' && b[1] == '#');
    }
    if (s->n_normal == 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "masked LM: the tokenizer has no ordinary tokens");
    return LD_OK;
}

void ld_mlm_source_free(ld_mlm_source *s) {
    if (!s) return;
    ld_ctx *ctx = s->ctx;
    ld_free(ctx, s->tokens), ld_free(ctx, s->start), ld_free(ctx, s->normal), ld_free(ctx, s->word_start);
    ld_free(ctx, s->order), ld_free(ctx, s->group_docs), ld_free(ctx, s->batch_order);
    ld_free(ctx, s);
}

ld_status ld_mlm_source_open(ld_ctx *ctx, const char *const *paths, int n_paths, const ld_tokenizer *tok, int64_t T,
                             const ld_mlm_params *p, ld_mlm_source **out) {
    if (!out || !tok || !paths || n_paths <= 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_mlm_source_open: no data");
    *out = NULL;
    ld_mlm_params dp = ld_mlm_default_params();
    if (!p) p = &dp;
    if (T < 3) return ld_error(ctx, LD_ERR_INVALID_ARG, "masked LM: rows of %lld tokens (need >= 3)", (long long)T);
    if (!(p->mask_prob > 0 && p->mask_prob < 1) || p->replace_mask < 0 || p->replace_random < 0 ||
        p->replace_mask + p->replace_random > 1)
        return ld_error(ctx, LD_ERR_INVALID_ARG,
                        "masked LM: mask_prob %g must be in (0, 1) and the [MASK] / random shares (%g, %g) in [0, 1] "
                        "with a sum <= 1",
                        p->mask_prob, p->replace_mask, p->replace_random);
    if (p->bucket < 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "masked LM: bucket %lld < 0", (long long)p->bucket);
    ld_mlm_source *s = ld_calloc(ctx, 1, sizeof *s);
    if (!s) return ld_ctx_status(ctx);
    s->ctx = ctx, s->p = *p, s->T = T, s->order_epoch = s->group_epoch = -1, s->group_id = -1;
    if (s->p.bucket == 0) s->p.bucket = 1;
    ld_status st = ld_mlm_specials_of(ctx, tok, &s->sp);
    if (!st) st = vocab_tables(s, tok);
    if (!st) st = grow(s, 0);
    if (!st) s->start[0] = 0;
    int32_t *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < n_paths && !st; i++) st = load_file(s, tok, paths[i], &buf, &cap);
    ld_free(ctx, buf);
    if (!st && s->n_docs == 0) st = ld_error(ctx, LD_ERR_FORMAT, "masked LM: %s holds no sequences", paths[0]);
    if (!st && (!(s->order = ld_alloc(ctx, (size_t)s->n_docs * sizeof *s->order)) ||
                !(s->group_docs = ld_alloc(ctx, (size_t)s->n_docs * sizeof *s->group_docs)) ||
                !(s->batch_order = ld_alloc(ctx, (size_t)s->n_docs * sizeof *s->batch_order))))
        st = ld_ctx_status(ctx);
    if (st) {
        ld_mlm_source_free(s);
        return st;
    }
    *out = s;
    return LD_OK;
}

int64_t ld_mlm_source_docs(const ld_mlm_source *s) {
    return s ? s->n_docs : 0;
}
int64_t ld_mlm_source_row_length(const ld_mlm_source *s) {
    return s ? s->T : 0;
}
int64_t ld_mlm_source_tokens(const ld_mlm_source *s) {
    return s ? s->n_tokens : 0;
}
const ld_mlm_specials *ld_mlm_source_specials(const ld_mlm_source *s) {
    return s ? &s->sp : NULL;
}

ld_status ld_mlm_source_unigram(const ld_mlm_source *s, int64_t V, double *freq) {
    if (!s || !freq || V <= 0) return LD_ERR_INVALID_ARG;
    memset(freq, 0, (size_t)V * sizeof *freq);
    for (int64_t i = 0; i < s->n_tokens; i++)
        if (s->tokens[i] >= 0 && s->tokens[i] < V) freq[s->tokens[i]] += 1;
    for (int64_t v = 0; v < V; v++) freq[v] /= (double)(s->n_tokens ? s->n_tokens : 1);
    return LD_OK;
}

/* ---- drawing batches ----------------------------------------------------------------- */

static int64_t doc_len(const ld_mlm_source *s, int64_t d) {
    return s->start[d + 1] - s->start[d];
}

/* Stream ids for ld_rng_at: one per purpose, so the streams never overlap. */
enum { RNG_ORDER = 1, RNG_BATCHES, RNG_CROP, RNG_MASK };
static uint64_t stream(const ld_mlm_source *s, int purpose, int64_t epoch, int64_t item) {
    return ld_rng_at(s->p.seed ^ ((uint64_t)purpose << 56), ((uint64_t)epoch << 32) ^ (uint64_t)item);
}

static void shuffle(int64_t *a, int64_t n, uint64_t seed) {
    ld_rng r = ld_rng_init(seed);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)ld_rng_below(&r, (uint64_t)i + 1), t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

static const ld_mlm_source *sort_ctx;
static int by_length(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    int64_t lx = doc_len(sort_ctx, x), ly = doc_len(sort_ctx, y);
    return lx != ly ? (lx < ly ? -1 : 1) : (x < y ? -1 : x > y);
}

/* Makes s->group_docs / batch_order hold group g of epoch e for batches of B rows. */
static void load_group(ld_mlm_source *s, int64_t B) {
    if (s->order_epoch != s->epoch) {
        for (int64_t d = 0; d < s->n_docs; d++) s->order[d] = d;
        if (!s->p.eval) shuffle(s->order, s->n_docs, stream(s, RNG_ORDER, s->epoch, 0));
        s->order_epoch = s->epoch;
    }
    if (s->group_epoch == s->epoch && s->group_id == s->group) return;
    int64_t G = s->p.bucket * B, first = s->group * G;
    s->group_n = s->n_docs - first < G ? s->n_docs - first : G;
    memcpy(s->group_docs, s->order + first, (size_t)s->group_n * sizeof *s->group_docs);
    if (s->p.bucket > 1) {
        sort_ctx = s; /* qsort has no user pointer; loading a group is not reentrant per source anyway */
        qsort(s->group_docs, (size_t)s->group_n, sizeof *s->group_docs, by_length);
    }
    int64_t nb = (s->group_n + B - 1) / B;
    for (int64_t i = 0; i < nb; i++) s->batch_order[i] = i;
    if (!s->p.eval) shuffle(s->batch_order, nb, stream(s, RNG_BATCHES, s->epoch, s->group));
    s->group_epoch = s->epoch, s->group_id = s->group;
}

/* Masks row [1, 1 + n) of ids in place; targets get the original ids there. Whole words
 * (a start token and its "##" continuations) are selected together with whole_word. */
static void mask_row(const ld_mlm_source *s, uint64_t seed, int32_t *ids, int32_t *targets, int64_t n) {
    ld_rng r = ld_rng_init(seed);
    int64_t chosen = 0, forced = -1;
    for (int pass = 0; pass < 2 && chosen == 0; pass++) { /* at least one prediction per row */
        if (pass == 1) forced = 1 + (int64_t)ld_rng_below(&r, (uint64_t)n);
        for (int64_t i = 1; i <= n;) {
            int64_t end = i + 1;
            while (s->p.whole_word && end <= n && !s->word_start[ids[end]]) end++;
            bool pick = pass == 0 ? ld_rng_uniform(&r) < s->p.mask_prob : forced >= i && forced < end;
            for (int64_t j = i; pick && j < end; j++) {
                targets[j] = ids[j];
                float u = ld_rng_uniform(&r);
                if (u < s->p.replace_mask) ids[j] = s->sp.mask;
                else if (u < s->p.replace_mask + s->p.replace_random)
                    ids[j] = s->normal[ld_rng_below(&r, (uint64_t)s->n_normal)];
                chosen++;
            }
            i = end;
        }
    }
}

ld_status ld_mlm_source_next(ld_mlm_source *s, int64_t B, int32_t *ids, int32_t *targets, int32_t *lengths,
                             int64_t *T_used) {
    if (!s || B <= 0 || !ids || !targets || !lengths || !T_used)
        return ld_error(s ? s->ctx : NULL, LD_ERR_INVALID_ARG, "ld_mlm_source_next: bad argument");
    int64_t T = s->T, G = s->p.bucket * B;
    if (s->group * G >= s->n_docs) s->epoch++, s->group = 0, s->batch = 0;
    load_group(s, B);
    int64_t b0 = s->batch_order[s->batch] * B, rows = s->group_n - b0 < B ? s->group_n - b0 : B;
    const int64_t *docs = s->group_docs + b0;
    /* the padded length: the longest row of the batch */
    int64_t Tu = 3;
    for (int64_t r = 0; r < rows; r++) {
        int64_t l = doc_len(s, docs[r]) + 2;
        if (l > Tu) Tu = l;
    }
    if (Tu > T) Tu = T;
    for (int64_t r = 0; r < B; r++) {
        int32_t *row = ids + r * Tu, *tg = targets + r * Tu;
        for (int64_t i = 0; i < Tu; i++) row[i] = s->sp.pad, tg[i] = -100;
        row[0] = s->sp.cls;
        if (r >= rows) { /* an empty row: nothing to predict */
            lengths[r] = 1;
            continue;
        }
        int64_t d = docs[r], len = doc_len(s, d), n = len < Tu - 2 ? len : Tu - 2, off = 0;
        if (len > n && !s->p.eval) off = (int64_t)(stream(s, RNG_CROP, s->epoch, d) % (uint64_t)(len - n + 1));
        memcpy(row + 1, s->tokens + s->start[d] + off, (size_t)n * sizeof *row);
        row[n + 1] = s->sp.sep;
        lengths[r] = (int32_t)(n + 2);
        mask_row(s, stream(s, RNG_MASK, s->p.eval ? 0 : s->epoch, d), row, tg, n);
    }
    *T_used = Tu;
    if (++s->batch >= (s->group_n + B - 1) / B) s->group++, s->batch = 0;
    return LD_OK;
}

ld_status ld_mlm_source_save(const ld_mlm_source *s, char **json) {
    if (!s || !json) return LD_ERR_INVALID_ARG;
    char buf[128];
    snprintf(buf, sizeof buf, "{\"epoch\":%lld,\"group\":%lld,\"batch\":%lld}", (long long)s->epoch,
             (long long)s->group, (long long)s->batch);
    if (!(*json = strdup(buf))) return ld_error(s->ctx, LD_ERR_NOMEM, "out of memory saving the data cursor");
    return LD_OK;
}

ld_status ld_mlm_source_restore(ld_mlm_source *s, const char *json) {
    if (!s || !json) return LD_ERR_INVALID_ARG;
    cJSON *root = NULL;
    ld_status st = ld_json_parse(s->ctx, "masked-LM data cursor", json, strlen(json), &root);
    if (st) return st;
    ld_json_ref r = ld_json_root("masked-LM data cursor", root);
    int64_t e = 0, g = 0, b = 0;
    if (!(st = ld_json_get_int(s->ctx, &r, "epoch", true, 0, INT32_MAX, &e)) &&
        !(st = ld_json_get_int(s->ctx, &r, "group", true, 0, INT64_MAX / 2, &g)))
        st = ld_json_get_int(s->ctx, &r, "batch", true, 0, INT64_MAX / 2, &b);
    ld_json_free(root);
    if (st) return st;
    s->epoch = e, s->group = g, s->batch = b;
    return LD_OK;
}

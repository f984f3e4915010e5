/* data/prepare.c — ld_data_prepare: reads every input corpus, drops exact duplicate
 * documents (128-bit content hash), splits train/val by content hash, tokenizes chunks of
 * documents in parallel (OpenMP, static schedule; output order = input order, so the shards
 * do not depend on the thread count) and writes OUT_DIR/{train,val}-NNNNN.bin. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/team.h"
#include "data/data_internal.h"
#include "liandan/io.h"

#define CHUNK_BYTES (4u << 20) /* text per parallel tokenization chunk */
#define CHUNK_DOCS 8192

ld_prepare_params ld_prepare_default_params(void) {
    return (ld_prepare_params){
        .corpus = ld_corpus_default_params(),
        .val_fraction = 0.0,
        .dedup = true,
        .add_eos = true,
        .shard_tokens = 100000000,
        .n_threads = 0,
        .progress = NULL,
        .progress_user = NULL,
    };
}

/* ---- a set of 128-bit hashes (open addressing, linear probing) ---------------------- */
typedef struct hash_set {
    ld_ctx *ctx;
    ld_hash128 *slots; /* {0,0} = empty (a real {0,0} hash is stored as {0,1}) */
    size_t cap, n;
} hash_set;

static bool set_grow(hash_set *s) {
    size_t cap = s->cap ? s->cap * 2 : 1u << 16;
    ld_hash128 *slots = ld_calloc(s->ctx, cap, sizeof *slots);
    if (!slots) return false;
    for (size_t i = 0; i < s->cap; i++) {
        ld_hash128 h = s->slots[i];
        if (!h.lo && !h.hi) continue;
        size_t j = (size_t)h.hi & (cap - 1);
        while (slots[j].lo || slots[j].hi) j = (j + 1) & (cap - 1);
        slots[j] = h;
    }
    ld_free(s->ctx, s->slots);
    s->slots = slots;
    s->cap = cap;
    return true;
}

/* Inserts h; *added is false when it was already there. */
static bool set_insert(hash_set *s, ld_hash128 h, bool *added) {
    if (!h.lo && !h.hi) h.hi = 1;
    if ((s->n + 1) * 2 > s->cap && !set_grow(s)) return false;
    size_t j = (size_t)h.hi & (s->cap - 1);
    while (s->slots[j].lo || s->slots[j].hi) {
        if (s->slots[j].lo == h.lo && s->slots[j].hi == h.hi) {
            *added = false;
            return true;
        }
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = h;
    s->n++;
    *added = true;
    return true;
}

/* ---- one split's output: a sequence of shard files ---------------------------------- */
typedef struct split_out {
    const char *name; /* "train" / "val" */
    ld_shard_writer *w;
    int n_shards;
    int64_t docs, tokens;
} split_out;

typedef struct prep {
    ld_ctx *ctx;
    const ld_data_encoder *enc;
    const ld_prepare_params *p;
    const char *out_dir;
    const char *stage;   /* where shards are written until the whole set is done */
    split_out split[2];
    /* the current chunk */
    char *text;          /* documents back to back */
    size_t text_len, text_cap;
    size_t *doc_off;     /* [CHUNK_DOCS + 1] */
    uint8_t *doc_split;  /* 0 train, 1 val */
    int n_docs;
    int32_t **ids;       /* per document, grown per thread slot */
    size_t *ids_cap, *n_ids;
    ld_status *doc_status;
    const char **doc_file; /* for messages: input file and 1-based document number in it */
    int64_t *doc_num;
} prep;

static ld_status split_write(prep *P, int which, const int32_t *ids, size_t n) {
    split_out *o = &P->split[which];
    ld_status st;
    if (o->w && ld_shard_writer_tokens(o->w) >= P->p->shard_tokens) {
        st = ld_shard_writer_close(o->w);
        o->w = NULL;
        if (st != LD_OK) return st;
    }
    if (!o->w) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s-%05d.bin", P->stage, o->name, o->n_shards);
        st = ld_shard_writer_open_raw(P->ctx, path, P->enc->vocab_size, P->enc->hash, &o->w);
        if (st != LD_OK) return st;
        o->n_shards++;
    }
    st = ld_shard_writer_add_doc(o->w, ids, n);
    if (st != LD_OK) return st;
    o->docs++;
    o->tokens += (int64_t)n;
    return LD_OK;
}

/* Documents [lo, hi) of the chunk tokenized into their buffers (status per document). */
static void tokenize_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    prep *P = arg;
    const ld_data_encoder *enc = P->enc;
    const bool eos = P->p->add_eos && enc->eos_id >= 0;
    for (int64_t d = lo; d < hi; d++) {
        const char *t = P->text + P->doc_off[d];
        size_t len = P->doc_off[d + 1] - P->doc_off[d];
        size_t need = 0;
        ld_status st = LD_OK;
        for (int attempt = 0; attempt < 2; attempt++) {
            size_t want = attempt == 0 ? len + 16 : need + 1;
            if (P->ids_cap[d] < want) {
                free(P->ids[d]);
                P->ids[d] = malloc(want * sizeof(int32_t));
                P->ids_cap[d] = P->ids[d] ? want : 0;
                if (!P->ids[d]) {
                    st = LD_ERR_NOMEM;
                    break;
                }
            }
            st = enc->encode(enc->user, t, len, P->ids[d], P->ids_cap[d] - 1, &need);
            if (st != LD_ERR_LIMIT) break;
        }
        if (st == LD_OK && eos) P->ids[d][need++] = enc->eos_id;
        P->n_ids[d] = need;
        P->doc_status[d] = st;
    }
}

/* Tokenizes the chunk's documents on the thread team (a document a piece: they vary in
 * length) and writes them in order. */
static ld_status flush_chunk(prep *P) {
    int n = P->n_docs;
    if (!n) return LD_OK;
    {
        LD_TEAM_SCOPE_THREADS(P->ctx, P->p->n_threads);
        ld_par_for(n, 1, tokenize_part, P);
    }
    for (int d = 0; d < n; d++) {
        if (P->doc_status[d] != LD_OK) {
            ld_status st = P->doc_status[d];
            return ld_error(P->ctx, st, "%s: document %" PRId64 ": tokenizing failed: %s", P->doc_file[d],
                            P->doc_num[d], ld_status_message(st));
        }
        ld_status st = split_write(P, P->doc_split[d], P->ids[d], P->n_ids[d]);
        if (st != LD_OK) return st;
    }
    P->n_docs = 0;
    P->text_len = 0;
    return LD_OK;
}

static ld_status make_dir(ld_ctx *ctx, const char *dir) {
    if (mkdir(dir, 0777) == 0 || errno == EEXIST) {
        struct stat sb;
        if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode)) return LD_OK;
        return ld_error(ctx, LD_ERR_IO, "%s: exists and is not a directory", dir);
    }
    return ld_error(ctx, LD_ERR_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
}

ld_status ld_data_prepare_encoder(ld_ctx *ctx, const ld_data_encoder *enc, const char *const *inputs, int n_inputs,
                                  const char *out_dir, const ld_prepare_params *params, ld_prepare_stats *stats) {
    if (!enc || !enc->encode || !inputs || n_inputs <= 0 || !out_dir)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_data_prepare: no inputs or no output directory");
    ld_prepare_params p = params ? *params : ld_prepare_default_params();
    if (!(p.val_fraction >= 0 && p.val_fraction <= 1))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_data_prepare: val_fraction %g is not in [0, 1]", p.val_fraction);
    if (p.shard_tokens <= 0) p.shard_tokens = ld_prepare_default_params().shard_tokens;
    if (stats) memset(stats, 0, sizeof *stats);
    ld_status st = make_dir(ctx, out_dir);
    if (st != LD_OK) return st;

    /* total input size, for progress */
    double bytes_total = 0;
    for (int i = 0; i < n_inputs; i++) {
        struct stat sb;
        if (inputs[i] && stat(inputs[i], &sb) == 0) bytes_total += (double)sb.st_size;
    }

    /* shards go to a staging directory inside out_dir and move into place only when all are
     * written: a failure leaves out_dir's earlier shards as they were */
    char stage_name[4200];
    snprintf(stage_name, sizeof stage_name, "%s/.prepare", out_dir);
    ld_dir_txn *stage = NULL;
    if ((st = ld_dir_txn_begin(ctx, stage_name, &stage)) != LD_OK) return st;
    prep P = {.ctx = ctx, .enc = enc, .p = &p, .out_dir = out_dir, .stage = ld_dir_txn_path(stage)};
    P.split[0].name = "train";
    P.split[1].name = "val";
    hash_set seen = {.ctx = ctx};
    P.doc_off = ld_calloc(ctx, CHUNK_DOCS + 1, sizeof *P.doc_off);
    P.doc_split = ld_calloc(ctx, CHUNK_DOCS, 1);
    P.ids = ld_calloc(ctx, CHUNK_DOCS, sizeof *P.ids);
    P.ids_cap = ld_calloc(ctx, CHUNK_DOCS, sizeof *P.ids_cap);
    P.n_ids = ld_calloc(ctx, CHUNK_DOCS, sizeof *P.n_ids);
    P.doc_status = ld_calloc(ctx, CHUNK_DOCS, sizeof *P.doc_status);
    P.doc_file = ld_calloc(ctx, CHUNK_DOCS, sizeof *P.doc_file);
    P.doc_num = ld_calloc(ctx, CHUNK_DOCS, sizeof *P.doc_num);
    if (!P.doc_off || !P.doc_split || !P.ids || !P.ids_cap || !P.n_ids || !P.doc_status || !P.doc_file || !P.doc_num)
        st = LD_ERR_NOMEM;

    if (st == LD_OK && p.progress) p.progress(p.progress_user, 0, bytes_total, 0, 0);
    int64_t docs = 0, dups = 0, bytes = 0;
    double bytes_before = 0;
    double last_report = ld_time_now();
    for (int i = 0; st == LD_OK && i < n_inputs; i++) {
        ld_corpus *c;
        st = ld_corpus_open(ctx, inputs[i], &p.corpus, &c);
        if (st != LD_OK) break;
        int64_t doc_in_file = 0;
        for (;;) {
            const char *d;
            size_t len;
            st = ld_corpus_next(c, &d, &len);
            if (st == LD_ERR_NOT_FOUND) {
                st = LD_OK;
                break;
            }
            if (st != LD_OK) break;
            docs++;
            doc_in_file++;
            ld_hash128 h = ld_hash128_of(d, len);
            if (p.dedup) {
                bool added;
                if (!set_insert(&seen, h, &added)) {
                    st = ld_error(ctx, LD_ERR_NOMEM, "out of memory in the duplicate filter (%zu documents)", seen.n);
                    break;
                }
                if (!added) {
                    dups++;
                    continue;
                }
            }
            bytes += (int64_t)len;
            /* the split: the hash's top 53 bits as a uniform number in [0, 1) */
            double u = (double)(h.lo >> 11) * 0x1.0p-53;
            int which = u < p.val_fraction ? 1 : 0;
            size_t need;
            if (ld_add_size(P.text_len, len, &need)) {
                st = ld_error(ctx, LD_ERR_OVERFLOW, "document too large");
                break;
            }
            if (need > P.text_cap) {
                size_t cap = P.text_cap ? P.text_cap : CHUNK_BYTES + 4096;
                while (cap < need) cap *= 2;
                char *t = ld_alloc(ctx, cap);
                if (!t) {
                    st = LD_ERR_NOMEM;
                    break;
                }
                if (P.text_len) memcpy(t, P.text, P.text_len);
                ld_free(ctx, P.text);
                P.text = t;
                P.text_cap = cap;
            }
            memcpy(P.text + P.text_len, d, len);
            P.doc_off[P.n_docs] = P.text_len;
            P.text_len += len;
            P.doc_off[P.n_docs + 1] = P.text_len;
            P.doc_split[P.n_docs] = (uint8_t)which;
            P.doc_file[P.n_docs] = inputs[i];
            P.doc_num[P.n_docs] = doc_in_file;
            P.n_docs++;
            if (P.n_docs == CHUNK_DOCS || P.text_len >= CHUNK_BYTES) {
                st = flush_chunk(&P);
                if (st != LD_OK) break;
                double now = ld_time_now();
                if (p.progress && now - last_report > 0.2) {
                    p.progress(p.progress_user, bytes_before + (double)ld_corpus_offset(c), bytes_total, docs,
                               P.split[0].tokens + P.split[1].tokens);
                    last_report = now;
                }
            }
        }
        if (st == LD_OK) st = flush_chunk(&P);
        bytes_before += (double)ld_corpus_size(c);
        ld_corpus_close(c);
    }
    for (int k = 0; k < 2; k++) {
        if (!P.split[k].w) continue;
        if (st != LD_OK) {
            ld_shard_writer_abort(P.split[k].w); /* no half-written shard after an error */
        } else {
            ld_status s2 = ld_shard_writer_close(P.split[k].w);
            if (s2 != LD_OK) st = s2;
        }
        P.split[k].w = NULL;
    }
    for (int k = 0; st == LD_OK && k < 2; k++)
        for (int i = 0; st == LD_OK && i < P.split[k].n_shards; i++) {
            char from[4400], to[4400];
            snprintf(from, sizeof from, "%s/%s-%05d.bin", P.stage, P.split[k].name, i);
            snprintf(to, sizeof to, "%s/%s-%05d.bin", out_dir, P.split[k].name, i);
            if (rename(from, to) != 0)
                st = ld_error(ctx, LD_ERR_IO, "cannot move %s to %s: %s", from, to, strerror(errno));
        }
    ld_dir_txn_abort(stage); /* the staging directory, empty unless something failed */
    if (st == LD_OK) st = ld_dir_fsync(ctx, out_dir);
    /* shards left by an earlier, larger run in the same directory would be read by the
     * sampler as part of this data set: remove them */
    for (int k = 0; st == LD_OK && k < 2; k++) {
        for (int i = P.split[k].n_shards;; i++) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s-%05d.bin", out_dir, P.split[k].name, i);
            if (remove(path) != 0) break;
            ld_log(ctx, LD_LOG_INFO, "removed %s (left by an earlier run)", path);
        }
    }
    if (st == LD_OK && p.progress)
        p.progress(p.progress_user, bytes_total, bytes_total, docs, P.split[0].tokens + P.split[1].tokens);
    if (stats) {
        stats->docs = docs;
        stats->duplicates = dups;
        stats->train_docs = P.split[0].docs;
        stats->val_docs = P.split[1].docs;
        stats->train_tokens = P.split[0].tokens;
        stats->val_tokens = P.split[1].tokens;
        stats->bytes = bytes;
        stats->n_train_shards = P.split[0].n_shards;
        stats->n_val_shards = P.split[1].n_shards;
    }
    for (int d = 0; P.ids && d < CHUNK_DOCS; d++) free(P.ids[d]);
    ld_free(ctx, P.ids);
    ld_free(ctx, P.ids_cap);
    ld_free(ctx, P.n_ids);
    ld_free(ctx, P.doc_status);
    ld_free(ctx, P.doc_off);
    ld_free(ctx, P.doc_split);
    ld_free(ctx, P.text);
    ld_free(ctx, P.doc_file);
    ld_free(ctx, P.doc_num);
    ld_free(ctx, seen.slots);
    return st;
}

/* ---- through an ld_tokenizer ---------------------------------------------------------- */
static ld_status tok_encode(void *user, const char *text, size_t len, int32_t *ids, size_t cap, size_t *n_ids) {
    return ld_tokenizer_encode(user, text, len, LD_ENCODE_SPECIAL_AS_TEXT, ids, cap, n_ids);
}

ld_status ld_data_prepare(ld_ctx *ctx, const ld_tokenizer *tok, const char *const *inputs, int n_inputs,
                          const char *out_dir, const ld_prepare_params *p, ld_prepare_stats *stats) {
    if (!tok) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_data_prepare: NULL tokenizer");
    int32_t eos = ld_tokenizer_eos_id(tok);
    if (eos < 0) eos = ld_tokenizer_bos_id(tok);
    ld_data_encoder enc = {
        .encode = tok_encode,
        .user = (void *)tok,
        .vocab_size = ld_tokenizer_vocab_size(tok),
        .hash = ld_tokenizer_hash(tok),
        .eos_id = eos,
    };
    return ld_data_prepare_encoder(ctx, &enc, inputs, n_inputs, out_dir, p, stats);
}

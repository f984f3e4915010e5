/* data/sampler.c — the batch sampler: (B, T+1) rows of tokens drawn from a set of token
 * shards, deterministic for a seed, disjoint across data-parallel ranks, resumable from a
 * JSON cursor.
 *
 * The shards form one token stream (in file-name order). Two modes:
 * - random windows: rank r owns the contiguous range [r*N/world, (r+1)*N/world) of the stream;
 *   row j of the rank's stream starts at a uniform offset drawn by the counter-based RNG
 *   from (seed, rank) at counter position c_j. The cursor is the RNG counter: O(1) memory.
 * - packed documents: documents are dealt to ranks once at open (a seeded permutation, the
 *   i-th document of it to rank i % world); every epoch the rank shuffles its documents
 *   (seed, rank, epoch), concatenates them and cuts rows of T+1 consecutive tokens (rows do
 *   not overlap). The cursor is (epoch, document index in the shuffled order, offset).
 * - sequential: rows of T+1 consecutive tokens one after another from the start of the rank's
 *   range (as in random windows), wrapping when the next row would cross its end. The cursor
 *   is the position. */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "data/data_internal.h"

struct ld_batch_sampler {
    ld_ctx *ctx;
    ld_sampler_params p;
    ld_shard **shards;
    int n_shards;
    int64_t *tok_start; /* [n_shards + 1] first global token of each shard */
    int64_t *doc_start; /* [n_shards + 1] first global document of each shard */
    int64_t total_tokens, total_docs;
    /* random windows */
    int64_t lo, hi;      /* this rank's token range */
    uint64_t rng_seed, rng_counter;
    int64_t seq_pos;     /* sequential: next row's offset from lo */
    /* packed documents */
    int64_t *base;       /* this rank's documents (global indices), dealing order */
    int64_t *order;      /* the current epoch's shuffle of base */
    int64_t n_rank_docs, rank_tokens;
    int64_t epoch, doc_i, doc_off;
};

ld_sampler_params ld_sampler_default_params(void) {
    return (ld_sampler_params){.mode = LD_SAMPLE_RANDOM_WINDOWS, .seed = 0, .rank = 0, .world = 1};
}

static uint64_t mix64(uint64_t a, uint64_t b) {
    uint64_t x = a ^ (b + 0x9e3779b97f4a7c15ull + (a << 6) + (a >> 2));
    x ^= x >> 31;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 29;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 32;
    return x;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The shard paths for pattern: the file itself, every *.bin in a directory, or every
 * <dir>/<prefix>*.bin. Sorted by name. */
static ld_status list_shards(ld_ctx *ctx, const char *pattern, char ***out, int *n_out) {
    *out = NULL;
    *n_out = 0;
    struct stat sb;
    if (stat(pattern, &sb) == 0 && S_ISREG(sb.st_mode)) {
        char **v = ld_alloc(ctx, sizeof *v);
        if (!v || !(v[0] = ld_strdup(ctx, pattern))) {
            ld_free(ctx, v);
            return LD_ERR_NOMEM;
        }
        *out = v;
        *n_out = 1;
        return LD_OK;
    }
    char dir[4096];
    const char *prefix;
    if (stat(pattern, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        snprintf(dir, sizeof dir, "%s", pattern);
        prefix = "";
    } else {
        const char *slash = strrchr(pattern, '/');
        if (slash) {
            size_t dl = (size_t)(slash - pattern);
            if (dl >= sizeof dir) return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: path too long", pattern);
            memcpy(dir, pattern, dl);
            dir[dl] = 0;
            if (dl == 0) strcpy(dir, "/");
            prefix = slash + 1;
        } else {
            strcpy(dir, ".");
            prefix = pattern;
        }
    }
    DIR *d = opendir(dir);
    if (!d) return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: no such shard file or directory %s", pattern, dir);
    char **v = NULL;
    int n = 0, cap = 0;
    ld_status st = LD_OK;
    size_t pl = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t nl = strlen(e->d_name);
        if (nl < 4 || strcmp(e->d_name + nl - 4, ".bin") || strncmp(e->d_name, prefix, pl)) continue;
        if (n == cap) {
            int nc = cap ? cap * 2 : 16;
            char **nv = ld_alloc(ctx, sizeof *nv * (size_t)nc);
            if (!nv) {
                st = LD_ERR_NOMEM;
                break;
            }
            if (n) memcpy(nv, v, sizeof *v * (size_t)n);
            ld_free(ctx, v);
            v = nv;
            cap = nc;
        }
        size_t need = strlen(dir) + nl + 2;
        v[n] = ld_alloc(ctx, need);
        if (!v[n]) {
            st = LD_ERR_NOMEM;
            break;
        }
        snprintf(v[n], need, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    if (st == LD_OK && n == 0) st = ld_error(ctx, LD_ERR_NOT_FOUND, "%s: no shard files (*.bin) match", pattern);
    if (st != LD_OK) {
        for (int i = 0; i < n; i++) ld_free(ctx, v[i]);
        ld_free(ctx, v);
        return st;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v;
    *n_out = n;
    return LD_OK;
}

void ld_batch_sampler_free(ld_batch_sampler *s) {
    if (!s) return;
    for (int i = 0; i < s->n_shards; i++) ld_shard_close(s->shards[i]);
    ld_free(s->ctx, s->shards);
    ld_free(s->ctx, s->tok_start);
    ld_free(s->ctx, s->doc_start);
    ld_free(s->ctx, s->base);
    ld_free(s->ctx, s->order);
    ld_free(s->ctx, s);
}

/* Which shard holds global index x of the prefix sums `start` (binary search). */
static int find_shard(const int64_t *start, int n, int64_t x) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (start[mid] <= x) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

static void doc_range(const ld_batch_sampler *s, int64_t gd, int *shard, int64_t *b, int64_t *e) {
    int k = find_shard(s->doc_start, s->n_shards, gd);
    /* skip shards without documents that share the start index */
    while (k + 1 < s->n_shards && s->doc_start[k + 1] <= gd) k++;
    int64_t d = gd - s->doc_start[k];
    *shard = k;
    *b = ld_shard_doc_start(s->shards[k], d);
    *e = ld_shard_doc_start(s->shards[k], d + 1);
}

/* Shuffles base into order for epoch s->epoch (Fisher-Yates, seeded by seed, rank, epoch). */
static void shuffle_epoch(ld_batch_sampler *s) {
    memcpy(s->order, s->base, sizeof(int64_t) * (size_t)s->n_rank_docs);
    ld_rng r = ld_rng_init(mix64(mix64(s->p.seed, 0x5eed0000ull + (uint64_t)s->p.rank), (uint64_t)s->epoch + 1));
    for (int64_t i = s->n_rank_docs - 1; i > 0; i--) {
        int64_t j = (int64_t)ld_rng_below(&r, (uint64_t)i + 1);
        int64_t t = s->order[i];
        s->order[i] = s->order[j];
        s->order[j] = t;
    }
}

static ld_status setup_packed(ld_batch_sampler *s) {
    ld_ctx *ctx = s->ctx;
    int64_t D = s->total_docs, W = s->p.world, r = s->p.rank;
    int64_t nr = D / W + (r < D % W ? 1 : 0);
    if (nr == 0)
        return ld_error(ctx, LD_ERR_LIMIT, "packed sampling: %" PRId64 " documents cannot be dealt to %d ranks", D,
                        s->p.world);
    size_t bytes;
    if (ld_mul_size((size_t)D, sizeof(int64_t), &bytes)) return ld_error(ctx, LD_ERR_OVERFLOW, "too many documents");
    int64_t *perm = ld_alloc(ctx, bytes);
    s->base = ld_alloc(ctx, sizeof(int64_t) * (size_t)nr);
    s->order = ld_alloc(ctx, sizeof(int64_t) * (size_t)nr);
    if (!perm || !s->base || !s->order) {
        ld_free(ctx, perm);
        return LD_ERR_NOMEM;
    }
    for (int64_t i = 0; i < D; i++) perm[i] = i;
    ld_rng g = ld_rng_init(mix64(s->p.seed, 0xdea1ull));
    for (int64_t i = D - 1; i > 0; i--) {
        int64_t j = (int64_t)ld_rng_below(&g, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int64_t k = 0, tokens = 0;
    for (int64_t i = r; i < D; i += W) {
        s->base[k++] = perm[i];
        int sh;
        int64_t b, e;
        doc_range(s, perm[i], &sh, &b, &e);
        tokens += e - b;
    }
    ld_free(ctx, perm);
    s->n_rank_docs = nr;
    s->rank_tokens = tokens;
    if (tokens == 0) return ld_error(ctx, LD_ERR_LIMIT, "packed sampling: rank %d's documents are all empty", s->p.rank);
    s->epoch = 0;
    s->doc_i = 0;
    s->doc_off = 0;
    shuffle_epoch(s);
    return LD_OK;
}

ld_status ld_batch_sampler_open(ld_ctx *ctx, const char *pattern, const ld_tokenizer *tok, const ld_sampler_params *p,
                                ld_batch_sampler **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_batch_sampler_open: NULL out");
    *out = NULL;
    if (!pattern) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_batch_sampler_open: NULL pattern");
    ld_sampler_params prm = p ? *p : ld_sampler_default_params();
    if (prm.world < 1 || prm.rank < 0 || prm.rank >= prm.world)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "sampler: rank %d is not in 0..world-1 (world %d)", prm.rank, prm.world);
    if (prm.mode != LD_SAMPLE_RANDOM_WINDOWS && prm.mode != LD_SAMPLE_PACKED_DOCS && prm.mode != LD_SAMPLE_SEQUENTIAL)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "sampler: unknown mode %d", (int)prm.mode);
    char **paths;
    int n;
    ld_status st = list_shards(ctx, pattern, &paths, &n);
    if (st != LD_OK) return st;
    ld_batch_sampler *s = ld_calloc(ctx, 1, sizeof *s);
    if (s) {
        s->ctx = ctx;
        s->p = prm;
        s->shards = ld_calloc(ctx, (size_t)n, sizeof *s->shards);
        s->tok_start = ld_calloc(ctx, (size_t)n + 1, sizeof(int64_t));
        s->doc_start = ld_calloc(ctx, (size_t)n + 1, sizeof(int64_t));
    }
    if (!s || !s->shards || !s->tok_start || !s->doc_start) st = LD_ERR_NOMEM;
    for (int i = 0; st == LD_OK && i < n; i++) {
        st = ld_shard_open(ctx, paths[i], tok, &s->shards[i]);
        if (st != LD_OK) break;
        s->n_shards = i + 1;
        if (i > 0 && ld_shard_tokenizer_hash(s->shards[i]) != ld_shard_tokenizer_hash(s->shards[0])) {
            st = ld_error(ctx, LD_ERR_MISMATCH, "%s: tokenizer hash %016" PRIx64 " differs from %s's %016" PRIx64, paths[i],
                          ld_shard_tokenizer_hash(s->shards[i]), paths[0], ld_shard_tokenizer_hash(s->shards[0]));
            break;
        }
        s->tok_start[i + 1] = s->tok_start[i] + ld_shard_tokens(s->shards[i]);
        s->doc_start[i + 1] = s->doc_start[i] + ld_shard_docs(s->shards[i]);
    }
    for (int i = 0; i < n; i++) ld_free(ctx, paths[i]);
    ld_free(ctx, paths);
    if (st == LD_OK) {
        s->total_tokens = s->tok_start[n];
        s->total_docs = s->doc_start[n];
        if (s->total_tokens == 0) st = ld_error(ctx, LD_ERR_LIMIT, "%s: the shards hold no tokens", pattern);
    }
    if (st == LD_OK && prm.mode != LD_SAMPLE_PACKED_DOCS) {
        s->lo = (int64_t)((unsigned __int128)s->total_tokens * (unsigned)prm.rank / (unsigned)prm.world);
        s->hi = (int64_t)((unsigned __int128)s->total_tokens * (unsigned)(prm.rank + 1) / (unsigned)prm.world);
        s->rng_seed = mix64(prm.seed, 0x77696e64ull + (uint64_t)prm.rank);
        s->rng_counter = 0;
        s->rank_tokens = s->hi - s->lo;
    } else if (st == LD_OK) {
        st = setup_packed(s);
    }
    if (st != LD_OK) {
        ld_batch_sampler_free(s);
        return st;
    }
    *out = s;
    return LD_OK;
}

int64_t ld_batch_sampler_tokens(const ld_batch_sampler *s) {
    return s->rank_tokens;
}

/* Copies global tokens [off, off+n) (inside the stream) into out. */
static void copy_stream(const ld_batch_sampler *s, int64_t off, int64_t n, int32_t *out) {
    int k = find_shard(s->tok_start, s->n_shards, off);
    while (n > 0) {
        while (off >= s->tok_start[k + 1]) k++;
        int64_t local = off - s->tok_start[k];
        int64_t avail = s->tok_start[k + 1] - off;
        int64_t m = n < avail ? n : avail;
        ld_shard_read(s->shards[k], local, m, out);
        out += m, off += m, n -= m;
    }
}

ld_status ld_batch_sampler_next(ld_batch_sampler *s, int32_t *tokens, int64_t B, int64_t T) {
    if (!s || !tokens || B <= 0 || T <= 0) return s ? ld_error(s->ctx, LD_ERR_INVALID_ARG, "sampler: bad batch %" PRId64 " x %" PRId64, B, T) : LD_ERR_INVALID_ARG;
    int64_t row = T + 1;
    if (s->p.mode == LD_SAMPLE_RANDOM_WINDOWS) {
        int64_t span = s->hi - s->lo;
        if (span < row)
            return ld_error(s->ctx, LD_ERR_LIMIT, "sampler: rank %d holds %" PRId64 " tokens, fewer than a row of %" PRId64,
                            s->p.rank, span, row);
        ld_rng r = {s->rng_seed, s->rng_counter};
        for (int64_t b = 0; b < B; b++) {
            int64_t off = s->lo + (int64_t)ld_rng_below(&r, (uint64_t)(span - row + 1));
            copy_stream(s, off, row, tokens + b * row);
        }
        s->rng_counter = r.counter;
        return LD_OK;
    }
    if (s->p.mode == LD_SAMPLE_SEQUENTIAL) {
        int64_t span = s->hi - s->lo;
        if (span < row)
            return ld_error(s->ctx, LD_ERR_LIMIT, "sampler: rank %d holds %" PRId64 " tokens, fewer than a row of %" PRId64,
                            s->p.rank, span, row);
        for (int64_t b = 0; b < B; b++) {
            if (s->seq_pos + row > span) s->seq_pos = 0;
            copy_stream(s, s->lo + s->seq_pos, row, tokens + b * row);
            s->seq_pos += row;
        }
        return LD_OK;
    }
    for (int64_t b = 0; b < B; b++) {
        int32_t *dst = tokens + b * row;
        int64_t need = row;
        while (need > 0) {
            if (s->doc_i == s->n_rank_docs) {
                s->epoch++;
                s->doc_i = 0;
                s->doc_off = 0;
                shuffle_epoch(s);
            }
            int sh;
            int64_t db, de;
            doc_range(s, s->order[s->doc_i], &sh, &db, &de);
            int64_t avail = de - db - s->doc_off;
            int64_t m = need < avail ? need : avail;
            if (m > 0) ld_shard_read(s->shards[sh], db + s->doc_off, m, dst);
            dst += m, need -= m, s->doc_off += m;
            if (s->doc_off >= de - db) {
                s->doc_i++;
                s->doc_off = 0;
            }
        }
    }
    return LD_OK;
}

static const char *mode_name(ld_sample_mode m) {
    return m == LD_SAMPLE_PACKED_DOCS ? "packed_docs" : m == LD_SAMPLE_SEQUENTIAL ? "sequential" : "random_windows";
}

ld_status ld_batch_sampler_save(const ld_batch_sampler *s, char **json) {
    if (!s || !json) return LD_ERR_INVALID_ARG;
    *json = NULL;
    char buf[512];
    int n;
    if (s->p.mode == LD_SAMPLE_RANDOM_WINDOWS)
        n = snprintf(buf, sizeof buf,
                     "{\"mode\":\"%s\",\"seed\":\"%" PRIu64 "\",\"rank\":%d,\"world\":%d,\"tokens\":\"%" PRId64
                     "\",\"counter\":\"%" PRIu64 "\"}",
                     mode_name(s->p.mode), s->p.seed, s->p.rank, s->p.world, s->total_tokens, s->rng_counter);
    else if (s->p.mode == LD_SAMPLE_SEQUENTIAL)
        n = snprintf(buf, sizeof buf,
                     "{\"mode\":\"%s\",\"seed\":\"%" PRIu64 "\",\"rank\":%d,\"world\":%d,\"tokens\":\"%" PRId64
                     "\",\"position\":\"%" PRId64 "\"}",
                     mode_name(s->p.mode), s->p.seed, s->p.rank, s->p.world, s->total_tokens, s->seq_pos);
    else
        n = snprintf(buf, sizeof buf,
                     "{\"mode\":\"%s\",\"seed\":\"%" PRIu64 "\",\"rank\":%d,\"world\":%d,\"tokens\":\"%" PRId64
                     "\",\"epoch\":\"%" PRId64 "\",\"doc\":\"%" PRId64 "\",\"offset\":\"%" PRId64 "\"}",
                     mode_name(s->p.mode), s->p.seed, s->p.rank, s->p.world, s->total_tokens, s->epoch, s->doc_i,
                     s->doc_off);
    /* malloc'd: the trainer free()s it */
    char *out = malloc((size_t)n + 1);
    if (!out) return ld_error(s->ctx, LD_ERR_NOMEM, "sampler: out of memory saving the cursor");
    memcpy(out, buf, (size_t)n + 1);
    *json = out;
    return LD_OK;
}

/* A decimal unsigned integer stored as a JSON string. */
static bool get_u64(const cJSON *o, const char *key, uint64_t *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsString(it) || !it->valuestring || !*it->valuestring) return false;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(it->valuestring, &end, 10);
    if (*end || it->valuestring[0] == '-' || errno == ERANGE) return false;
    *v = x;
    return true;
}
static bool get_int(const cJSON *o, const char *key, int *v) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, key);
    /* range first: converting a double outside int's range is undefined */
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0 && it->valuedouble <= 1e9) ||
        it->valuedouble != (double)(int)it->valuedouble)
        return false;
    *v = (int)it->valuedouble;
    return true;
}

ld_status ld_batch_sampler_restore(ld_batch_sampler *s, const char *json) {
    if (!s || !json) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = s->ctx;
    cJSON *o = cJSON_Parse(json);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return ld_error(ctx, LD_ERR_FORMAT, "sampler cursor: not a JSON object");
    }
    ld_status st = LD_OK;
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(o, "mode");
    uint64_t seed, tokens, a = 0, b = 0, c = 0;
    int rank, world;
    if (!cJSON_IsString(mode) || !get_u64(o, "seed", &seed) || !get_int(o, "rank", &rank) ||
        !get_int(o, "world", &world) || !get_u64(o, "tokens", &tokens)) {
        st = ld_error(ctx, LD_ERR_FORMAT, "sampler cursor: missing or malformed mode/seed/rank/world/tokens");
    } else if (strcmp(mode->valuestring, mode_name(s->p.mode))) {
        st = ld_error(ctx, LD_ERR_MISMATCH, "sampler cursor: mode %s, but the sampler uses %s", mode->valuestring,
                      mode_name(s->p.mode));
    } else if (seed != s->p.seed || rank != s->p.rank || world != s->p.world) {
        st = ld_error(ctx, LD_ERR_MISMATCH,
                      "sampler cursor: seed %" PRIu64 " rank %d world %d, but the sampler has seed %" PRIu64
                      " rank %d world %d",
                      seed, rank, world, s->p.seed, s->p.rank, s->p.world);
    } else if (tokens != (uint64_t)s->total_tokens) {
        st = ld_error(ctx, LD_ERR_MISMATCH, "sampler cursor: saved over %" PRIu64 " tokens, the shards now hold %" PRId64,
                      tokens, s->total_tokens);
    } else if (s->p.mode == LD_SAMPLE_RANDOM_WINDOWS) {
        if (!get_u64(o, "counter", &a)) st = ld_error(ctx, LD_ERR_FORMAT, "sampler cursor: missing \"counter\"");
        else s->rng_counter = a;
    } else if (s->p.mode == LD_SAMPLE_SEQUENTIAL) {
        if (!get_u64(o, "position", &a) || a > (uint64_t)(s->hi - s->lo))
            st = ld_error(ctx, LD_ERR_FORMAT, "sampler cursor: missing or out-of-range \"position\"");
        else s->seq_pos = (int64_t)a;
    } else {
        if (!get_u64(o, "epoch", &a) || !get_u64(o, "doc", &b) || !get_u64(o, "offset", &c))
            st = ld_error(ctx, LD_ERR_FORMAT, "sampler cursor: missing epoch/doc/offset");
        else if (a > (uint64_t)INT64_MAX || b >= (uint64_t)s->n_rank_docs)
            st = ld_error(ctx, LD_ERR_FORMAT, "sampler cursor: document %" PRIu64 " out of range (%" PRId64 ")", b,
                          s->n_rank_docs);
        else {
            int sh;
            int64_t db, de;
            int64_t old_epoch = s->epoch;
            s->epoch = (int64_t)a;
            if (s->epoch != old_epoch) shuffle_epoch(s);
            doc_range(s, s->order[b], &sh, &db, &de);
            if (c > (uint64_t)(de - db)) {
                st = ld_error(ctx, LD_ERR_FORMAT, "sampler cursor: offset %" PRIu64 " beyond the document", c);
                s->epoch = old_epoch;
                shuffle_epoch(s);
            } else {
                s->doc_i = (int64_t)b;
                s->doc_off = (int64_t)c;
            }
        }
    }
    cJSON_Delete(o);
    return st;
}

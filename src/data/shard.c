/* data/shard.c — token shard files (layout: docs/formats/token-shards.md): the validating
 * reader (mmapped file or memory) and the streaming writer (path.tmp, renamed on close). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/endian.h"
#include "data/data_internal.h"
#include "liandan/io.h"

#define SHARD_MAGIC "LDTOKSHD"
#define SHARD_VERSION 1u
#define HEADER_SIZE 64u

struct ld_shard {
    ld_ctx *ctx;
    ld_mapping map; /* zeroed when opened from memory */
    const uint8_t *tokens;  /* n_tokens * width bytes */
    const uint8_t *offsets; /* (n_docs + 1) little-endian u64 */
    int64_t n_tokens, n_docs, vocab_size;
    uint64_t tok_hash;
    unsigned width;
};

static ld_status shard_parse(ld_ctx *ctx, const char *name, const uint8_t *d, size_t size, const ld_tokenizer *tok,
                             ld_shard *s) {
    if (size < HEADER_SIZE)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: %zu bytes is shorter than the %u-byte shard header", name, size,
                        HEADER_SIZE);
    if (memcmp(d, SHARD_MAGIC, 8) != 0)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: byte 0: bad magic (not a liandan token shard)", name);
    uint64_t hsum = ld_le64(d + 56), hcalc = ld_hash64(d, 56);
    if (hsum != hcalc)
        return ld_error(ctx, LD_ERR_CHECKSUM, "%s: byte 56: header checksum %016" PRIx64 " != computed %016" PRIx64,
                        name, hsum, hcalc);
    uint32_t version = ld_le32(d + 8), width = ld_le32(d + 12);
    if (version != SHARD_VERSION)
        return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: byte 8: shard version %u (this build reads version %u)", name,
                        version, SHARD_VERSION);
    if (width != 2 && width != 4)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: byte 12: token width %u bytes (must be 2 or 4)", name, width);
    uint64_t n_tokens = ld_le64(d + 16), n_docs = ld_le64(d + 24), tok_hash = ld_le64(d + 32), vocab = ld_le64(d + 40);
    uint64_t dsum = ld_le64(d + 48);
    if (vocab == 0 || vocab > (uint64_t)INT32_MAX + 1 || (width == 2 && vocab > 65536))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: byte 40: vocabulary size %" PRIu64 " does not fit %u-byte tokens",
                        name, vocab, width);
    size_t tok_bytes, tok_padded, off_bytes, expect;
    if (n_tokens > (uint64_t)INT64_MAX || n_docs >= (uint64_t)INT64_MAX || ld_mul_size((size_t)n_tokens, width, &tok_bytes) ||
        ld_add_size(tok_bytes, 7, &tok_padded) || ld_mul_size((size_t)n_docs + 1, 8, &off_bytes) ||
        ld_add_size(HEADER_SIZE, tok_padded & ~(size_t)7, &expect) || ld_add_size(expect, off_bytes, &expect))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: byte 16: token count %" PRIu64 " / document count %" PRIu64 " overflow",
                        name, n_tokens, n_docs);
    tok_padded &= ~(size_t)7;
    if (expect != size)
        return ld_error(ctx, LD_ERR_FORMAT,
                        "%s: file is %zu bytes but the header (%" PRIu64 " tokens, %" PRIu64 " documents) needs %zu "
                        "(truncated?)",
                        name, size, n_tokens, n_docs, expect);
    uint64_t dcalc = ld_hash64(d + HEADER_SIZE, size - HEADER_SIZE);
    if (dcalc != dsum)
        return ld_error(ctx, LD_ERR_CHECKSUM, "%s: byte 48: token data checksum %016" PRIx64 " != computed %016" PRIx64,
                        name, dsum, dcalc);
    s->tokens = d + HEADER_SIZE;
    s->offsets = d + HEADER_SIZE + tok_padded;
    s->n_tokens = (int64_t)n_tokens;
    s->n_docs = (int64_t)n_docs;
    s->vocab_size = (int64_t)vocab;
    s->tok_hash = tok_hash;
    s->width = width;
    /* document offsets: 0, nondecreasing, ending at the token count */
    uint64_t prev = 0;
    for (uint64_t i = 0; i <= n_docs; i++) {
        uint64_t o = ld_le64(s->offsets + 8 * i);
        if ((i == 0 && o != 0) || o < prev || o > n_tokens || (i == n_docs && o != n_tokens))
            return ld_error(ctx, LD_ERR_FORMAT, "%s: byte %zu: document offset %" PRIu64 " = %" PRIu64 " is out of order",
                            name, (size_t)(s->offsets - d) + 8 * (size_t)i, i, o);
        prev = o;
    }
    /* every id inside the vocabulary (the trainer indexes embeddings with them) */
    for (int64_t i = 0; i < s->n_tokens; i++) {
        const uint8_t *tp = s->tokens + (size_t)i * width;
        int64_t t = width == 2 ? (int64_t)(tp[0] | tp[1] << 8) : (int64_t)ld_le32(tp); /* unsigned: no negative ids */
        if (t >= s->vocab_size) {
            return ld_error(ctx, LD_ERR_FORMAT, "%s: byte %zu: token %" PRId64 " = %" PRId64 " >= vocabulary size %" PRId64,
                            name, (size_t)HEADER_SIZE + (size_t)i * width, i, t, s->vocab_size);
        }
    }
    if (tok) {
        uint64_t th = ld_tokenizer_hash(tok);
        if (th != tok_hash)
            return ld_error(ctx, LD_ERR_MISMATCH,
                            "%s: tokenized with tokenizer %016" PRIx64 ", but the tokenizer given is %016" PRIx64, name,
                            tok_hash, th);
        int64_t tv = ld_tokenizer_vocab_size(tok);
        if (tv < s->vocab_size)
            return ld_error(ctx, LD_ERR_MISMATCH, "%s: vocabulary size %" PRId64 " > the tokenizer's %" PRId64, name,
                            s->vocab_size, tv);
    }
    return LD_OK;
}

ld_status ld_shard_open_memory(ld_ctx *ctx, const char *name, const void *data, size_t size, const ld_tokenizer *tok,
                               ld_shard **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_shard_open_memory: NULL out");
    *out = NULL;
    if (!name || (!data && size)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_shard_open_memory: NULL argument");
    ld_shard *s = ld_calloc(ctx, 1, sizeof *s);
    if (!s) return LD_ERR_NOMEM;
    s->ctx = ctx;
    ld_status st = shard_parse(ctx, name, data, size, tok, s);
    if (st != LD_OK) {
        ld_free(ctx, s);
        return st;
    }
    *out = s;
    return LD_OK;
}

ld_status ld_shard_open(ld_ctx *ctx, const char *path, const ld_tokenizer *tok, ld_shard **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_shard_open: NULL out");
    *out = NULL;
    if (!path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_shard_open: NULL path");
    ld_shard *s = ld_calloc(ctx, 1, sizeof *s);
    if (!s) return LD_ERR_NOMEM;
    s->ctx = ctx;
    ld_status st = ld_file_map(ctx, path, &s->map);
    if (st == LD_OK) st = shard_parse(ctx, path, s->map.data, s->map.size, tok, s);
    if (st != LD_OK) {
        ld_file_unmap(&s->map);
        ld_free(ctx, s);
        return st;
    }
    *out = s;
    return LD_OK;
}

void ld_shard_close(ld_shard *s) {
    if (!s) return;
    ld_file_unmap(&s->map);
    ld_free(s->ctx, s);
}

int64_t ld_shard_tokens(const ld_shard *s) {
    return s->n_tokens;
}
int64_t ld_shard_docs(const ld_shard *s) {
    return s->n_docs;
}
int64_t ld_shard_vocab_size(const ld_shard *s) {
    return s->vocab_size;
}
uint64_t ld_shard_tokenizer_hash(const ld_shard *s) {
    return s->tok_hash;
}
int ld_shard_token_bytes(const ld_shard *s) {
    return (int)s->width;
}

int32_t ld_shard_token(const ld_shard *s, int64_t i) {
    const uint8_t *p = s->tokens + (size_t)i * s->width;
    if (s->width == 2) return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8);
    return (int32_t)ld_le32(p);
}

void ld_shard_read(const ld_shard *s, int64_t start, int64_t n, int32_t *out) {
    const uint8_t *p = s->tokens + (size_t)start * s->width;
    if (s->width == 2) {
        for (int64_t i = 0; i < n; i++) out[i] = (int32_t)((uint32_t)p[2 * i] | (uint32_t)p[2 * i + 1] << 8);
    } else {
        for (int64_t i = 0; i < n; i++) out[i] = (int32_t)ld_le32(p + 4 * i);
    }
}

int64_t ld_shard_doc_start(const ld_shard *s, int64_t d) {
    return (int64_t)ld_le64(s->offsets + 8 * (size_t)d);
}

/* ---- writer ------------------------------------------------------------------------ */
#define WBUF 65536

struct ld_shard_writer {
    ld_ctx *ctx;
    char *path, *tmp;
    FILE *f;
    unsigned width;
    int64_t vocab_size;
    uint64_t tok_hash;
    int64_t n_tokens;
    int64_t *offsets; /* document starts so far */
    size_t n_offsets, cap_offsets;
    ld_hash64_state hash;
    uint8_t buf[WBUF];
    size_t nbuf;
    ld_status err; /* first error; later calls fail with it */
};

static ld_status writer_fail(ld_shard_writer *w, ld_status st) {
    if (w->err == LD_OK) w->err = st;
    return st;
}

static ld_status flush_buf(ld_shard_writer *w) {
    if (!w->nbuf) return LD_OK;
    ld_hash64_update(&w->hash, w->buf, w->nbuf);
    if (fwrite(w->buf, 1, w->nbuf, w->f) != w->nbuf)
        return writer_fail(w, ld_error(w->ctx, LD_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno)));
    w->nbuf = 0;
    return LD_OK;
}

static ld_status put_bytes(ld_shard_writer *w, const uint8_t *p, size_t n) {
    while (n) {
        size_t k = WBUF - w->nbuf < n ? WBUF - w->nbuf : n;
        memcpy(w->buf + w->nbuf, p, k);
        w->nbuf += k, p += k, n -= k;
        if (w->nbuf == WBUF) {
            ld_status st = flush_buf(w);
            if (st != LD_OK) return st;
        }
    }
    return LD_OK;
}

static void writer_free(ld_shard_writer *w) {
    if (w->f) fclose(w->f);
    if (w->tmp) remove(w->tmp);
    ld_free(w->ctx, w->offsets);
    ld_free(w->ctx, w->path);
    ld_free(w->ctx, w->tmp);
    ld_free(w->ctx, w);
}

ld_status ld_shard_writer_open_raw(ld_ctx *ctx, const char *path, int64_t vocab_size, uint64_t tokenizer_hash,
                                   ld_shard_writer **out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_shard_writer_open: NULL out");
    *out = NULL;
    if (!path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_shard_writer_open: NULL path");
    if (vocab_size <= 0 || vocab_size > (int64_t)INT32_MAX + 1)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: vocabulary size %" PRId64 " out of range", path, vocab_size);
    ld_shard_writer *w = ld_calloc(ctx, 1, sizeof *w);
    if (!w) return LD_ERR_NOMEM;
    w->ctx = ctx;
    w->width = vocab_size <= 65536 ? 2 : 4;
    w->vocab_size = vocab_size;
    w->tok_hash = tokenizer_hash;
    ld_hash64_init(&w->hash);
    size_t pl = strlen(path);
    w->path = ld_strdup(ctx, path);
    w->tmp = ld_alloc(ctx, pl + 5);
    if (!w->path || !w->tmp) {
        writer_free(w);
        return LD_ERR_NOMEM;
    }
    memcpy(w->tmp, path, pl);
    memcpy(w->tmp + pl, ".tmp", 5);
    w->f = fopen(w->tmp, "wb");
    if (!w->f) {
        ld_status st = ld_error(ctx, LD_ERR_IO, "%s: cannot create: %s", w->tmp, strerror(errno));
        ld_free(ctx, w->tmp);
        w->tmp = NULL; /* nothing to remove */
        writer_free(w);
        return st;
    }
    uint8_t zero[HEADER_SIZE] = {0};
    if (fwrite(zero, 1, HEADER_SIZE, w->f) != HEADER_SIZE) {
        ld_status st = ld_error(ctx, LD_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
        writer_free(w);
        return st;
    }
    *out = w;
    return LD_OK;
}

ld_status ld_shard_writer_open(ld_ctx *ctx, const char *path, const ld_tokenizer *tok, ld_shard_writer **out) {
    if (!tok) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_shard_writer_open: NULL tokenizer (use ld_shard_writer_open_raw)");
    return ld_shard_writer_open_raw(ctx, path, ld_tokenizer_vocab_size(tok), ld_tokenizer_hash(tok), out);
}

ld_status ld_shard_writer_add_doc(ld_shard_writer *w, const int32_t *ids, size_t n) {
    if (!w) return LD_ERR_INVALID_ARG;
    if (w->err != LD_OK) return w->err;
    if (!ids && n) return writer_fail(w, ld_error(w->ctx, LD_ERR_INVALID_ARG, "%s: NULL ids", w->path));
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= w->vocab_size)
            return writer_fail(w, ld_error(w->ctx, LD_ERR_INVALID_ARG,
                                           "%s: document %zu: id %d at position %zu is outside the vocabulary (%" PRId64 ")",
                                           w->path, w->n_offsets, ids[i], i, w->vocab_size));
    if ((uint64_t)w->n_tokens + n > (uint64_t)INT64_MAX / 4)
        return writer_fail(w, ld_error(w->ctx, LD_ERR_OVERFLOW, "%s: too many tokens", w->path));
    if (w->n_offsets == w->cap_offsets) {
        size_t cap = w->cap_offsets ? w->cap_offsets * 2 : 1024, bytes;
        if (ld_mul_size(cap, sizeof(int64_t), &bytes))
            return writer_fail(w, ld_error(w->ctx, LD_ERR_OVERFLOW, "%s: too many documents", w->path));
        int64_t *p = ld_alloc(w->ctx, bytes);
        if (!p) return writer_fail(w, LD_ERR_NOMEM);
        if (w->n_offsets) memcpy(p, w->offsets, w->n_offsets * sizeof(int64_t));
        ld_free(w->ctx, w->offsets);
        w->offsets = p;
        w->cap_offsets = cap;
    }
    w->offsets[w->n_offsets++] = w->n_tokens;
    uint8_t tmp[4096];
    size_t i = 0;
    while (i < n) {
        size_t k = 0;
        if (w->width == 2)
            for (; i < n && k + 2 <= sizeof tmp; i++, k += 2) tmp[k] = (uint8_t)ids[i], tmp[k + 1] = (uint8_t)(ids[i] >> 8);
        else
            for (; i < n && k + 4 <= sizeof tmp; i++, k += 4) ld_put_le32(tmp + k, (uint32_t)ids[i]);
        ld_status st = put_bytes(w, tmp, k);
        if (st != LD_OK) return st;
    }
    w->n_tokens += (int64_t)n;
    return LD_OK;
}

void ld_shard_writer_abort(ld_shard_writer *w) {
    if (w) writer_free(w); /* closes and removes path.tmp */
}

int64_t ld_shard_writer_tokens(const ld_shard_writer *w) {
    return w->n_tokens;
}
int64_t ld_shard_writer_docs(const ld_shard_writer *w) {
    return (int64_t)w->n_offsets;
}

ld_status ld_shard_writer_close(ld_shard_writer *w) {
    if (!w) return LD_OK;
    ld_status st = w->err;
    if (st == LD_OK) {
        static const uint8_t zero[8] = {0};
        size_t tb = (size_t)w->n_tokens * w->width;
        if (tb % 8) st = put_bytes(w, zero, 8 - tb % 8);
        uint8_t b[8];
        for (size_t i = 0; st == LD_OK && i <= w->n_offsets; i++) {
            ld_put_le64(b, (uint64_t)(i < w->n_offsets ? w->offsets[i] : w->n_tokens));
            st = put_bytes(w, b, 8);
        }
        if (st == LD_OK) st = flush_buf(w);
    }
    if (st == LD_OK) {
        uint8_t h[HEADER_SIZE] = {0};
        memcpy(h, SHARD_MAGIC, 8);
        ld_put_le32(h + 8, SHARD_VERSION);
        ld_put_le32(h + 12, w->width);
        ld_put_le64(h + 16, (uint64_t)w->n_tokens);
        ld_put_le64(h + 24, (uint64_t)w->n_offsets);
        ld_put_le64(h + 32, w->tok_hash);
        ld_put_le64(h + 40, (uint64_t)w->vocab_size);
        ld_put_le64(h + 48, ld_hash64_final(&w->hash));
        ld_put_le64(h + 56, ld_hash64(h, 56));
        if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(h, 1, HEADER_SIZE, w->f) != HEADER_SIZE || fflush(w->f) != 0 ||
            fsync(fileno(w->f)) != 0)
            st = ld_error(w->ctx, LD_ERR_IO, "%s: write failed: %s", w->tmp, strerror(errno));
    }
    if (w->f && fclose(w->f) != 0 && st == LD_OK) st = ld_error(w->ctx, LD_ERR_IO, "%s: close failed: %s", w->tmp, strerror(errno));
    w->f = NULL;
    if (st == LD_OK && rename(w->tmp, w->path) != 0)
        st = ld_error(w->ctx, LD_ERR_IO, "%s: cannot rename to %s: %s", w->tmp, w->path, strerror(errno));
    if (st == LD_OK) {
        ld_free(w->ctx, w->tmp);
        w->tmp = NULL;
    }
    writer_free(w);
    return st;
}

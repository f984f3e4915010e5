/* data/data_internal.h — what the data layer's files share: the content hashes (64-bit
 * shard checksums, 128-bit document identity), text normalisation, corpus positions, the
 * shard writer without a tokenizer, and ld_data_prepare over an abstract encoder (so it
 * can be tested with a synthetic tokenizer). */
#ifndef LD_DATA_INTERNAL_H
#define LD_DATA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/data.h"

/* ---- hashes (hash.c) ------------------------------------------------------------------ */
/* The shard checksum (docs/formats/token-shards.md): four FNV-1a-64 lanes over 64-bit
 * little-endian words, word i into lane i % 4, the tail zero-padded into a last word, the
 * lanes folded with FNV-1a and the byte length mixed in. Streaming: init, update..., final. */
typedef struct ld_hash64_state {
    uint64_t lane[4];
    uint64_t words;   /* full words absorbed */
    uint64_t len;     /* bytes absorbed */
    uint8_t tail[8];
    unsigned ntail;
} ld_hash64_state;
void ld_hash64_init(ld_hash64_state *h);
void ld_hash64_update(ld_hash64_state *h, const void *data, size_t len);
uint64_t ld_hash64_final(const ld_hash64_state *h);
uint64_t ld_hash64(const void *data, size_t len);

/* A 128-bit content hash for exact-duplicate detection and the train/val split. */
typedef struct ld_hash128 {
    uint64_t lo, hi;
} ld_hash128;
ld_hash128 ld_hash128_of(const void *data, size_t len);

/* ---- normalisation (normalize.c) ------------------------------------------------------ */
typedef struct ld_normalizer ld_normalizer;
/* Builds the pipeline for p (NFKC, Traditional->Simplified, whitespace); LD_ERR_UNSUPPORTED
 * when to_simplified is asked for without OpenCC built in. */
ld_status ld_normalizer_new(ld_ctx *ctx, const ld_corpus_params *p, ld_normalizer **out);
void ld_normalizer_free(ld_normalizer *n);
/* Normalises text[0..len) (valid UTF-8) into a buffer owned by n (valid until the next call).
 * name:line names the document in error messages ("corpus.txt:12"). */
ld_status ld_normalizer_apply(ld_normalizer *n, const char *name, size_t line, const char *text, size_t len,
                              const char **out, size_t *out_len);
/* Offset of the first byte that is not part of valid UTF-8 (overlongs, surrogates and code
 * points above U+10FFFF are invalid), or len if all of it is valid. */
size_t ld_utf8_invalid_at(const char *s, size_t len);
/* True when OpenCC was found at build time. */
bool ld_normalizer_has_opencc(void);

/* ---- corpus positions (corpus.c) ------------------------------------------------------ */
/* A corpus over bytes in memory (not copied; kept alive by the caller); `name` is used in
 * messages. */
ld_status ld_corpus_open_memory(ld_ctx *ctx, const char *name, const char *data, size_t len,
                                const ld_corpus_params *p, ld_corpus **out);
size_t ld_corpus_offset(const ld_corpus *c); /* bytes consumed so far */
size_t ld_corpus_size(const ld_corpus *c);

/* ---- preparing over an abstract encoder (prepare.c) ----------------------------------- */
typedef struct ld_data_encoder {
    /* ld_tokenizer_encode's contract: *n_ids = ids needed; LD_ERR_LIMIT when over cap.
     * Called from several threads at once. */
    ld_status (*encode)(void *user, const char *text, size_t len, int32_t *ids, size_t cap, size_t *n_ids);
    void *user;
    int64_t vocab_size;
    uint64_t hash;
    int32_t eos_id; /* appended after each document when add_eos (-1 = none) */
} ld_data_encoder;
ld_status ld_data_prepare_encoder(ld_ctx *ctx, const ld_data_encoder *enc, const char *const *inputs,
                                  int n_inputs, const char *out_dir, const ld_prepare_params *p,
                                  ld_prepare_stats *stats);

#endif

/* tokenizer/tok_internal.h — the byte-level BPE tokenizer's layout and the small hash map
 * it uses for vocab lookups, merge ranks and the per-word cache. */
#ifndef LD_TOK_INTERNAL_H
#define LD_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdint.h>

#include "liandan/tokenizer.h"

/* ---- a byte-string -> int64 open-addressing hash map (keys copied into an arena) ---- */
typedef struct ld_strmap {
    ld_ctx *ctx;
    uint64_t *hashes;  /* 0 = empty slot */
    uint32_t *key_off; /* into keys */
    uint32_t *key_len;
    int64_t *values;
    size_t cap, count;
    char *keys;
    size_t keys_len, keys_cap;
} ld_strmap;

ld_status ld_strmap_init(ld_ctx *ctx, ld_strmap *m, size_t expected);
void ld_strmap_free(ld_strmap *m);
/* Pointer to the value of key, or NULL. */
int64_t *ld_strmap_get(const ld_strmap *m, const char *key, size_t len);
/* Inserts or finds key; *value_slot points at its value (new keys start at `init`). */
ld_status ld_strmap_put(ld_strmap *m, const char *key, size_t len, int64_t init, int64_t **value_slot);
uint64_t ld_hash_bytes(const void *data, size_t len, uint64_t seed);

/* ---- GPT-2's reversible map between bytes and printable code points ---- */
/* Converts raw bytes to the byte-level UTF-8 spelling (out needs 2 * len bytes). */
size_t ld_bytes_to_bytelevel(const unsigned char *in, size_t len, char *out);
/* Converts a byte-level spelling back to raw bytes; -1 if a code point is not in the map. */
long ld_bytelevel_to_bytes(const char *in, size_t len, unsigned char *out);

/* ---- pre-tokenization ---- */
const char *ld_pretokenizer_regex(ld_pretokenizer p);
typedef struct ld_pretok {
    pcre2_code *code;
    ld_pretokenizer kind;
} ld_pretok;
ld_status ld_pretok_init(ld_ctx *ctx, ld_pretok *p, ld_pretokenizer kind);
void ld_pretok_free(ld_pretok *p);
/* Calls fn for every pre-token of text[0..len) in order (invalid UTF-8 bytes become pre-tokens
 * of their own). md: a match-data block from ld_pretok_match_data. */
typedef void (*ld_pretok_fn)(void *user, const char *piece, size_t len);
void ld_pretok_split(const ld_pretok *p, pcre2_match_data *md, const char *text, size_t len, ld_pretok_fn fn,
                     void *user);
pcre2_match_data *ld_pretok_match_data(const ld_pretok *p);

/* ---- the tokenizer ---- */
typedef struct ld_special {
    char *text;
    size_t len;
    int32_t id;
} ld_special;

typedef enum ld_tok_kind { LD_TOK_BPE = 0, LD_TOK_CHAR } ld_tok_kind;

struct ld_tokenizer {
    ld_ctx *ctx;
    ld_tok_kind kind;
    int64_t n_vocab;
    char **tok_bytes;     /* raw bytes of each id (specials: their text) */
    uint32_t *tok_len;
    bool *is_special;
    ld_strmap by_bytes;   /* raw bytes -> id (not specials) */
    int32_t byte_id[256]; /* id of each single byte */
    /* merges: key = (id_a, id_b) as 8 bytes -> rank * 2^32 + merged id */
    ld_strmap merges;
    int64_t n_merges;
    int32_t (*merge_list)[2]; /* in rank order, for saving */
    ld_special *specials;
    int n_specials;
    int *sp_order;        /* special indices grouped by first byte, longest first */
    int sp_first[257];    /* group of byte c: sp_order[sp_first[c] .. sp_first[c + 1]) */
    ld_pretok pretok;
    int32_t bos, eos, pad, unk;
    uint64_t hash;
};

/* Builds the lookup structures of a BPE tokenizer from tok_bytes / merge_list / specials. */
ld_status ld_tokenizer_finish(ld_tokenizer *t);
ld_tokenizer *ld_tokenizer_alloc(ld_ctx *ctx, int64_t n_vocab);

#endif

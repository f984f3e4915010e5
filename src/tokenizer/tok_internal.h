/* tokenizer/tok_internal.h — the tokenizer's layout: one type whose text passes through
 * special-token matching, a normalizer (a list of steps), a pre-tokenizer (a list of
 * splitting steps) and a model (BPE over bytes or characters, WordPiece, characters), plus
 * the small hash maps used for vocab lookups and merge ranks. */
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

/* ---- merge ranks: (left id, right id) -> rank << 32 | merged id, open addressing ---- */
typedef struct ld_pairmap {
    uint64_t *keys; /* (uint64)a << 32 | b, UINT64_MAX = empty */
    uint64_t *vals;
    size_t mask, count;
    int shift; /* 64 - log2(capacity): the slot is the top bits of the hash */
} ld_pairmap;
ld_status ld_pairmap_init(ld_ctx *ctx, ld_pairmap *m, size_t expected);
void ld_pairmap_free(ld_ctx *ctx, ld_pairmap *m);
/* Sets the value of (a, b) unless the pair is present (the first listing wins). */
void ld_pairmap_put(ld_pairmap *m, int32_t a, int32_t b, uint64_t v);
static inline int64_t ld_pairmap_get(const ld_pairmap *m, int32_t a, int32_t b) {
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    size_t i = (size_t)(((k ^ (k >> 29)) * 0x9E3779B97F4A7C15ULL) >> m->shift);
    for (;;) {
        if (m->keys[i] == k) return (int64_t)m->vals[i];
        if (m->keys[i] == UINT64_MAX) return -1;
        i = (i + 1) & m->mask;
    }
}

/* ---- GPT-2's reversible map between bytes and printable code points ---- */
/* Converts raw bytes to the byte-level UTF-8 spelling (out needs 2 * len bytes). */
size_t ld_bytes_to_bytelevel(const unsigned char *in, size_t len, char *out);
/* Converts a byte-level spelling back to raw bytes; -1 if a code point is not in the map. */
long ld_bytelevel_to_bytes(const char *in, size_t len, unsigned char *out);

/* ---- UTF-8 ---- */
/* Decodes the character at s[0..n) (n >= 1): its code point, or -1 for an invalid byte
 * (then *len = 1). */
int32_t ld_utf8_decode(const unsigned char *s, size_t n, size_t *len);
size_t ld_utf8_encode(uint32_t cp, char *out);

/* ---- normalizer steps (tokenizer.json "normalizer"), applied to each stretch of text
 * between special tokens ---- */
typedef enum ld_norm_kind {
    LD_NORM_NFC = 0,
    LD_NORM_NFD,
    LD_NORM_NFKC,
    LD_NORM_NFKD,
    LD_NORM_LOWERCASE,
    LD_NORM_STRIP_ACCENTS, /* remove nonspacing marks (Mn), after NFD */
    LD_NORM_BERT,          /* flags: LD_BERT_* */
    LD_NORM_PREPEND,       /* a; flags: LD_PREPEND_* */
    LD_NORM_REPLACE,       /* every a by b (a literal string) */
    LD_NORM_COUNT
} ld_norm_kind;
enum { LD_BERT_CLEAN = 1, LD_BERT_CHINESE = 2, LD_BERT_STRIP_ACCENTS = 4, LD_BERT_LOWERCASE = 8 };
enum {
    LD_PREPEND_ALWAYS = 0,     /* every non-empty stretch (the Prepend normalizer) */
    LD_PREPEND_IF_ABSENT = 1,  /* unless it starts with a already (Metaspace "always") */
    LD_PREPEND_FIRST = 2,      /* only the stretch at the start of the input, if absent (Metaspace "first") */
};
typedef struct ld_norm_op {
    ld_norm_kind kind;
    unsigned flags;
    char *a, *b;
    size_t la, lb;
} ld_norm_op;

/* ---- pre-tokenizer steps: each splits every piece the previous step made ---- */
typedef enum ld_split_kind {
    LD_SPLIT_REGEX = 0,     /* matches and the text between them are pieces (behavior Isolated) */
    LD_SPLIT_REGEX_REMOVED, /* the text between matches (behavior Removed) */
    LD_SPLIT_REGEX_MATCHES, /* the matches only (Removed, inverted: Whitespace, WhitespaceSplit) */
    LD_SPLIT_METASPACE,     /* a piece starts at each ▁ (Metaspace with split) */
    LD_SPLIT_BERT,          /* whitespace dropped, each punctuation character alone */
    LD_SPLIT_COUNT
} ld_split_kind;
typedef struct ld_split_op {
    ld_split_kind kind;
    unsigned flags;
    char *pattern; /* the regex as written in the file (flags 1: a literal string) */
    pcre2_code *code;
} ld_split_op;

/* The pre-tokenizer regexes llama.cpp knows by name (tokenizer.ggml.pre), as Hugging Face
 * tokenizer.json files spell them: one table row each (pretokenize.c). */
typedef struct ld_pre_row {
    const char *names;          /* tokenizer.ggml.pre spellings, '|'-separated; the first is written */
    const char *const *regexes; /* NULL-terminated, applied in order */
    bool ignore_merges;
    ld_pretokenizer kind;       /* its public enum value, LD_PRETOK_COUNT when it has none */
} ld_pre_row;
const ld_pre_row *ld_pre_rows(size_t *n);
const ld_pre_row *ld_pre_row_by_name(const char *name);
const ld_pre_row *ld_pre_row_by_kind(ld_pretokenizer kind);
/* The regex of a public pre-tokenizer kind (its row's only regex). */
const char *ld_pretokenizer_regex(ld_pretokenizer p);

ld_status ld_split_op_init(ld_ctx *ctx, ld_split_op *op, ld_split_kind kind, const char *pattern, unsigned flags);
void ld_split_op_free(ld_ctx *ctx, ld_split_op *op);

/* Calls fn for every piece of a valid-or-not UTF-8 text under one step (invalid bytes are
 * pieces of their own for the regex steps). md: a match-data block large enough for the
 * step's regex. */
typedef void (*ld_piece_fn)(void *user, const char *piece, size_t len);
void ld_split_run(const ld_split_op *op, pcre2_match_data *md, const char *text, size_t len, ld_piece_fn fn, void *user);

/* ---- the tokenizer ---- */
typedef struct ld_special {
    char *text;
    size_t len;
    int32_t id;
} ld_special;

typedef enum ld_tok_kind { LD_TOK_BPE = 0, LD_TOK_CHAR, LD_TOK_WORDPIECE } ld_tok_kind;

struct ld_tokenizer {
    ld_ctx *ctx;
    ld_tok_kind kind;
    int64_t n_vocab;
    /* each token's piece as the model matches it: raw bytes for byte-level BPE, the text
     * with ▁ for SentencePiece BPE, "##ing" for WordPiece; specials: their text */
    char **tok_bytes;
    uint32_t *tok_len;
    /* each token as decoded text (NULL where it equals the piece) */
    char **tok_text;
    uint32_t *text_len;
    bool *is_special;
    float *scores;        /* SentencePiece scores (GGUF llama), or NULL */
    int32_t *tok_type;    /* GGUF token types when read from one, or NULL */
    ld_strmap by_bytes;   /* piece -> id (not specials) */
    int32_t byte_id[256]; /* byte-level BPE: id of each single byte */
    int32_t byte_tok[256];/* byte fallback: id of <0xXX>, -1 if absent */
    /* merges: (id_a, id_b) -> rank << 32 | merged id */
    ld_pairmap merges;
    int64_t n_merges;
    int32_t (*merge_list)[2]; /* in rank order, for saving */
    int32_t *merge_rank;      /* rank of each merge_list entry (NULL = its index) */
    ld_special *specials;
    int n_specials;
    int *sp_order;     /* special indices grouped by first byte, longest first */
    int sp_first[257]; /* group of byte c: sp_order[sp_first[c] .. sp_first[c + 1]) */
    /* the pipeline */
    ld_norm_op *norm;
    int n_norm;
    ld_split_op *split;
    int n_split;
    const ld_pre_row *pre_row; /* the named regex row the split steps are, or NULL */
    bool byte_level;    /* BPE over bytes, GPT-2 spellings in files */
    bool byte_fallback; /* characters missing from the vocabulary become <0xXX> tokens */
    bool ignore_merges; /* a pre-token that is in the vocabulary is one token */
    bool metaspace;     /* ▁ stands for a space (SentencePiece) */
    bool legacy_prepend;/* tokenizer.json normalizer Prepend(▁) (else Metaspace prepend_scheme) */
    bool strip_first_space; /* decoding drops one leading space (the one encoding added) */
    int prepend_scheme; /* LD_PREPEND_* of the Metaspace or Prepend step, -1 = none */
    bool fuse_unk;
    /* WordPiece */
    char *wp_prefix;    /* "##" */
    int wp_max_chars;   /* longer words are [UNK] */
    bool wp_cleanup;
    /* post-processing (LD_ENCODE_ADD_SPECIAL): ids before and after the text */
    int32_t post_pre[4], post_suf[4];
    int n_post_pre, n_post_suf;
    int32_t bos, eos, pad, unk, sep, cls, mask;
    uint64_t hash;
};

/* Builds the lookup structures from tok_bytes / merge_list / specials / the pipeline. */
ld_status ld_tokenizer_finish(ld_tokenizer *t);
ld_tokenizer *ld_tokenizer_alloc(ld_ctx *ctx, int64_t n_vocab);
/* Sets token id's piece (copied) and, for a special, registers it. */
ld_status ld_tokenizer_set_token(ld_tokenizer *t, int64_t id, const char *piece, size_t len, bool special);
/* Appends a normalizer / pre-tokenizer step. */
ld_status ld_tokenizer_add_norm(ld_tokenizer *t, ld_norm_kind kind, unsigned flags, const char *a, const char *b);
ld_status ld_tokenizer_add_split(ld_tokenizer *t, ld_split_kind kind, const char *pattern, unsigned flags);
/* SentencePiece models without merges (GGUF llama): merges derived from the scores, every
 * split of a token into two tokens, the higher the merged token's score the earlier. */
ld_status ld_tokenizer_merges_from_scores(ld_tokenizer *t);

/* Runs normalizer step op on in[0..n) into *out (grown as needed). first: the stretch is at
 * the start of the input. */
typedef struct ld_buf {
    char *p;
    size_t len, cap;
} ld_buf;
bool ld_buf_reserve(ld_buf *b, size_t n);
ld_status ld_norm_run(const ld_norm_op *op, const char *in, size_t n, bool first, ld_buf *out);

/* The ids of one pre-token under the model (appends to out; scratch reused). */
typedef struct ld_model_scratch ld_model_scratch;
ld_model_scratch *ld_model_scratch_new(void);
void ld_model_scratch_free(ld_model_scratch *s);
typedef void (*ld_emit_fn)(void *user, int32_t id);
ld_status ld_model_encode(const ld_tokenizer *t, ld_model_scratch *s, const char *piece, size_t len, ld_emit_fn emit,
                          void *user);

#endif

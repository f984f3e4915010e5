/* liandan/data.h — corpora to token shards, and the batch sampler that feeds training.
 *
 * Corpus readers yield documents from txt (one document per line, or per blank-line-separated
 * paragraph), TSV (one column), JSONL (one string field) and FASTA files. `liandan data
 * prepare` normalises, deduplicates, splits train/val, tokenizes in parallel and writes token
 * shards (byte layout: docs/formats/token-shards.md). The sampler draws (B, T+1) windows from
 * shards, deterministic for a seed, disjoint across data-parallel ranks, resumable from a
 * cursor saved in training checkpoints. */
#ifndef LIANDAN_DATA_H
#define LIANDAN_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"
#include "liandan/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- corpus readers ------------------------------------------------------------------ */
typedef enum ld_corpus_format {
    LD_CORPUS_AUTO = 0, /* from the extension: .txt .tsv .jsonl .fa/.fasta */
    LD_CORPUS_TXT,
    LD_CORPUS_TSV,
    LD_CORPUS_JSONL,
    LD_CORPUS_FASTA,
} ld_corpus_format;

typedef struct ld_corpus_params {
    ld_corpus_format format;
    int tsv_column;          /* 0-based; -1 = the last column */
    const char *jsonl_field; /* default "text" */
    bool nfkc;               /* Unicode NFKC normalisation */
    bool to_simplified;      /* Traditional -> Simplified Chinese via OpenCC (error if not built in) */
    bool collapse_whitespace;/* runs of whitespace -> one space, trimmed */
    bool txt_paragraphs;     /* txt: one document per blank-line-separated paragraph (default: per line) */
    /* FASTA of proteins: lowercase letters are upper-cased, J (Leu/Ile) becomes X, a final '*'
     * (stop) is dropped; anything else that is not a letter (digits, alignment gaps '-' '.',
     * a '*' followed by more residues) is an error naming file:line:column. */
    bool protein;
} ld_corpus_params;
ld_corpus_params ld_corpus_default_params(void);

typedef struct ld_corpus ld_corpus;
/* Opens one file (mmapped). Bad lines (a TSV row without the column, JSONL that is not an
 * object with a string field, invalid UTF-8) are errors naming file:line. */
ld_status ld_corpus_open(ld_ctx *ctx, const char *path, const ld_corpus_params *p, ld_corpus **out);
void ld_corpus_close(ld_corpus *c);
/* The next document (normalised per params; valid until the next call). LD_ERR_NOT_FOUND at
 * the end of the file. */
ld_status ld_corpus_next(ld_corpus *c, const char **doc, size_t *len);
/* A text source over the corpus, for ld_bpe_train. */
ld_text_source ld_corpus_text_source(ld_corpus *c);

/* ---- token shards -------------------------------------------------------------------- */
typedef struct ld_shard ld_shard;
/* Opens and validates a shard: magic, version, header checksum and token checksum, token
 * width; if tok is not NULL its hash must match the shard's (else LD_ERR_MISMATCH naming
 * both hashes). */
ld_status ld_shard_open(ld_ctx *ctx, const char *path, const ld_tokenizer *tok, ld_shard **out);
void ld_shard_close(ld_shard *s);
int64_t ld_shard_tokens(const ld_shard *s);
int64_t ld_shard_docs(const ld_shard *s);
/* Token i (0 <= i < tokens). */
int32_t ld_shard_token(const ld_shard *s, int64_t i);
/* Start offset of document d (0 <= d <= docs; entry docs is the token count). */
int64_t ld_shard_doc_start(const ld_shard *s, int64_t d);
/* The same checks over size bytes at data (borrowed: kept alive by the caller until close);
 * `name` is used in messages. */
ld_status ld_shard_open_memory(ld_ctx *ctx, const char *name, const void *data, size_t size, const ld_tokenizer *tok,
                               ld_shard **out);
int64_t ld_shard_vocab_size(const ld_shard *s);
uint64_t ld_shard_tokenizer_hash(const ld_shard *s);
int ld_shard_token_bytes(const ld_shard *s); /* 2 or 4 */
/* Copies tokens [start, start+n) into out[n] (the range must be inside the shard). */
void ld_shard_read(const ld_shard *s, int64_t start, int64_t n, int32_t *out);

typedef struct ld_shard_writer ld_shard_writer;
/* Token width 16 when vocab_size <= 65536, else 32. Written to path.tmp, renamed on close. */
ld_status ld_shard_writer_open(ld_ctx *ctx, const char *path, const ld_tokenizer *tok, ld_shard_writer **out);
/* The same without a tokenizer: ids must be < vocab_size; tokenizer_hash is recorded as given
 * (0 for synthetic data). */
ld_status ld_shard_writer_open_raw(ld_ctx *ctx, const char *path, int64_t vocab_size, uint64_t tokenizer_hash,
                                   ld_shard_writer **out);
int64_t ld_shard_writer_tokens(const ld_shard_writer *w);
int64_t ld_shard_writer_docs(const ld_shard_writer *w);
/* Ids outside [0, vocab) are LD_ERR_INVALID_ARG (and the writer then fails on close). */
ld_status ld_shard_writer_add_doc(ld_shard_writer *w, const int32_t *ids, size_t n);
ld_status ld_shard_writer_close(ld_shard_writer *w); /* finalises and frees, even on error */
void ld_shard_writer_abort(ld_shard_writer *w);      /* discards path.tmp and frees */

/* ---- preparing a corpus ----------------------------------------------------------------- */
typedef struct ld_prepare_params {
    ld_corpus_params corpus;
    double val_fraction;     /* documents whose content hash falls in this fraction go to val */
    bool dedup;              /* drop exact duplicate documents */
    bool add_eos;            /* append the tokenizer's EOS (or BOS) id after each document */
    int64_t shard_tokens;    /* approximate tokens per shard file */
    int n_threads;
    void (*progress)(void *user, double bytes_done, double bytes_total, int64_t docs, int64_t tokens);
    void *progress_user;
} ld_prepare_params;
ld_prepare_params ld_prepare_default_params(void);

typedef struct ld_prepare_stats {
    int64_t docs, duplicates, train_docs, val_docs, train_tokens, val_tokens, bytes;
    int n_train_shards, n_val_shards;
} ld_prepare_stats;

/* Reads every input file and writes OUT_DIR/train-NNNNN.bin and OUT_DIR/val-NNNNN.bin. */
ld_status ld_data_prepare(ld_ctx *ctx, const ld_tokenizer *tok, const char *const *inputs, int n_inputs,
                          const char *out_dir, const ld_prepare_params *p, ld_prepare_stats *stats);

/* ---- the batch sampler ------------------------------------------------------------------- */
typedef enum ld_sample_mode {
    LD_SAMPLE_RANDOM_WINDOWS = 0, /* windows of T+1 tokens at random offsets (an epoch-free stream) */
    LD_SAMPLE_PACKED_DOCS,        /* documents packed back to back in a shuffled order, split into rows */
    LD_SAMPLE_SEQUENTIAL,         /* consecutive non-overlapping windows of T+1 tokens from the start of
                                     the rank's range, wrapping at its end (validation; seed unused) */
} ld_sample_mode;

typedef struct ld_sampler_params {
    ld_sample_mode mode;
    uint64_t seed;
    int rank, world;              /* data-parallel rank in 0..world-1; ranks see disjoint data */
} ld_sampler_params;
ld_sampler_params ld_sampler_default_params(void);

typedef struct ld_batch_sampler ld_batch_sampler;
/* Over every shard matching `pattern` (a directory + prefix such as "data/train", or one
 * shard file). All shards must share one tokenizer hash. */
ld_status ld_batch_sampler_open(ld_ctx *ctx, const char *pattern, const ld_tokenizer *tok,
                                const ld_sampler_params *p, ld_batch_sampler **out);
void ld_batch_sampler_free(ld_batch_sampler *s);
/* Fills tokens[B * (T + 1)]. */
ld_status ld_batch_sampler_next(ld_batch_sampler *s, int32_t *tokens, int64_t B, int64_t T);
/* The cursor as a JSON object text (malloc'd; free()); restore takes the same text. */
ld_status ld_batch_sampler_save(const ld_batch_sampler *s, char **json);
ld_status ld_batch_sampler_restore(ld_batch_sampler *s, const char *json);
int64_t ld_batch_sampler_tokens(const ld_batch_sampler *s); /* tokens available to this rank */

/* ---- masked-LM batches ------------------------------------------------------------------
 * Sequences (FASTA records, text lines, ... read with the corpus readers) become rows
 *   [CLS] tokens [SEP] [PAD] ...
 * with a share mask_prob of their tokens selected for prediction: of those, replace_mask are
 * shown as [MASK], replace_random as a random ordinary token, the rest unchanged (BERT's
 * 80/10/10). With whole_word a WordPiece word ("play" "##ing") is selected as a whole. Every
 * row has at least one prediction. A sequence longer than the row is cropped to a window
 * (random while training, its start with eval) or, with split_long, cut into consecutive
 * pieces when loaded. Length bucketing: sequences are drawn in a shuffled order (fixed with
 * eval), each group of `bucket` batches is sorted by length and cut into batches whose order
 * is shuffled, so a batch is padded only to its longest row (T_used <= T). Masks, crops and
 * orders come from (seed, epoch, sequence): a new masking every epoch (the same every pass
 * with eval), and a cursor of three integers resumes exactly. Sequences live in memory as
 * token ids (4 bytes per residue or character). */
typedef struct ld_mlm_params {
    float mask_prob;       /* 0.15 */
    float replace_mask;    /* 0.8 */
    float replace_random;  /* 0.1 */
    bool whole_word;       /* select WordPiece words whole */
    bool split_long;       /* cut long sequences into pieces when loading (else crop per epoch) */
    bool eval;             /* fixed order, crops at the start, the same masks every pass */
    int64_t bucket;        /* batches per length bucket (64; 1 = no bucketing) */
    int64_t max_docs;      /* read at most this many sequences (0 = all) */
    uint64_t seed;
    ld_corpus_params corpus; /* how the files are read (set corpus.protein for FASTA proteins) */
} ld_mlm_params;
ld_mlm_params ld_mlm_default_params(void);

/* The special ids masked-LM rows use: [CLS]/<cls>, [SEP]/<eos>, [PAD]/<pad>, [MASK]/<mask>,
 * [UNK]/<unk> (-1 when absent; all but unk are required). */
typedef struct ld_mlm_specials {
    int32_t cls, sep, pad, mask, unk;
} ld_mlm_specials;
ld_status ld_mlm_specials_of(ld_ctx *ctx, const ld_tokenizer *tok, ld_mlm_specials *sp);

typedef struct ld_mlm_source ld_mlm_source;
/* Reads and tokenizes every file (errors name file:line), for rows of T tokens. tok must
 * outlive nothing: it is only used while opening. */
ld_status ld_mlm_source_open(ld_ctx *ctx, const char *const *paths, int n_paths, const ld_tokenizer *tok, int64_t T,
                             const ld_mlm_params *p, ld_mlm_source **out);
void ld_mlm_source_free(ld_mlm_source *s);
int64_t ld_mlm_source_docs(const ld_mlm_source *s);
int64_t ld_mlm_source_tokens(const ld_mlm_source *s);
int64_t ld_mlm_source_row_length(const ld_mlm_source *s); /* T */
const ld_mlm_specials *ld_mlm_source_specials(const ld_mlm_source *s);
/* freq[V] = each id's share of the sequences' tokens (the unigram baseline). */
ld_status ld_mlm_source_unigram(const ld_mlm_source *s, int64_t V, double *freq);
/* The next batch of B rows laid out [B, *T_used] (T_used <= T): ids, targets (the original id
 * at predicted positions, -100 elsewhere) and lengths[B] (real tokens, specials included;
 * rows past the data's end in eval mode hold only [CLS] and predict nothing). */
ld_status ld_mlm_source_next(ld_mlm_source *s, int64_t B, int32_t *ids, int32_t *targets, int32_t *lengths,
                             int64_t *T_used);
/* The cursor as a JSON object text (malloc'd; free()); restore takes the same text. */
ld_status ld_mlm_source_save(const ld_mlm_source *s, char **json);
ld_status ld_mlm_source_restore(ld_mlm_source *s, const char *json);

#ifdef __cplusplus
}
#endif
#endif

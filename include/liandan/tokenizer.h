/* liandan/tokenizer.h — tokenizers: one type with pluggable models — byte-level BPE (GPT-2 /
 * Llama-3 / Qwen2 family, every pre-tokenizer regex llama.cpp names), SentencePiece-style BPE
 * with byte fallback and the ▁ space marker (Llama-2, Mistral, Gemma), WordPiece (BERT) —
 * read from and written to Hugging Face tokenizer.json and GGUF tokenizer.ggml.* metadata;
 * BPE training; character vocabularies (amino acids for protein models, WordPiece vocab.txt
 * characters for Chinese BERT).
 *
 * An ld_tokenizer is immutable after creation and may be used from several threads at once
 * (encode keeps its caches per call or behind a lock). Ids are int32. */
#ifndef LIANDAN_TOKENIZER_H
#define LIANDAN_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ld_tokenizer ld_tokenizer;

/* Pre-tokenization regexes reproduced exactly from their reference implementations. */
typedef enum ld_pretokenizer {
    LD_PRETOK_GPT2 = 0, /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    LD_PRETOK_LLAMA3,   /* Llama-3 / cl100k-style: case-insensitive contractions, \p{N}{1,3} digit groups */
    LD_PRETOK_QWEN2,    /* Qwen2: as Llama-3 but single digits (\p{N}) */
    LD_PRETOK_COUNT
} ld_pretokenizer;

/* ---- loading and saving ------------------------------------------------------------ */
/* Reads a Hugging Face tokenizer.json: model BPE (byte-level, or over characters with
 * byte_fallback / ignore_merges) or WordPiece; normalizers NFC/NFD/NFKC/NFKD, Lowercase,
 * StripAccents, BertNormalizer, Prepend, Replace (String), Sequence; pre-tokenizers ByteLevel,
 * Split (Isolated / Removed), Metaspace, BertPreTokenizer, Whitespace, WhitespaceSplit,
 * Digits, Punctuation, Sequence; post-processors TemplateProcessing, BertProcessing,
 * RobertaProcessing, ByteLevel, Sequence; added_tokens (matched in the raw text). Errors name
 * the file and the JSON path or byte position: truncated or invalid JSON, merges naming
 * unknown tokens, duplicate ids, unsupported components. */
ld_status ld_tokenizer_load(ld_ctx *ctx, const char *path, ld_tokenizer **out);
/* The same from memory (`name` is used in messages). */
ld_status ld_tokenizer_load_memory(ld_ctx *ctx, const char *name, const char *json, size_t len, ld_tokenizer **out);
/* Writes tokenizer.json (loadable by @huggingface/tokenizers and transformers). */
ld_status ld_tokenizer_save(const ld_tokenizer *tok, const char *path);
void ld_tokenizer_free(ld_tokenizer *tok);
/* Opens whatever a user points at: a GGUF file (vocab-only ones too: only the metadata is
 * read), a model directory (its tokenizer.json) or a tokenizer.json. */
ld_status ld_tokenizer_open(ld_ctx *ctx, const char *path, ld_tokenizer **out);

/* GGUF form (tokenizer.ggml.* metadata as llama.cpp reads it): model "gpt2" = byte-level BPE
 * with tokenizer.ggml.pre naming its regexes, "llama" = SentencePiece BPE (scores, byte
 * tokens, add_space_prefix), "bert" = WordPiece. to_gguf writes the keys into a GGUF writer;
 * n_vocab (0 = the tokenizer's size) pads the token list with unused "[PADn]" tokens up to the
 * model's vocabulary. from_gguf builds the tokenizer from a GGUF file's metadata (`name` is
 * used in messages): an unsupported tokenizer model or pre-tokenizer is LD_ERR_UNSUPPORTED
 * naming it; add_bos_token / add_eos_token / add_sep_token become the post-processing that
 * LD_ENCODE_ADD_SPECIAL applies. */
typedef struct ld_gguf ld_gguf;
typedef struct ld_gguf_writer ld_gguf_writer;
ld_status ld_tokenizer_to_gguf(const ld_tokenizer *tok, ld_gguf_writer *w, int64_t n_vocab);
ld_status ld_tokenizer_from_gguf(ld_ctx *ctx, const ld_gguf *g, const char *name, ld_tokenizer **out);
/* Writes a vocab-only GGUF (the tokenizer keys, an architecture name and placeholder sizes,
 * no tensors) that llama.cpp loads with vocab_only. */
ld_status ld_tokenizer_save_gguf(const ld_tokenizer *tok, const char *path);

/* A character vocabulary: each token is one Unicode character or a special token like
 * "[PAD]"; unknown characters map to the "[UNK]" id. amino: the IUPAC amino-acid letters plus
 * [PAD] [MASK] [CLS] [SEP] [UNK]. vocab_txt: a WordPiece vocab.txt (one token per line);
 * its single-character entries form the vocabulary. */
ld_status ld_tokenizer_new_amino(ld_ctx *ctx, ld_tokenizer **out);
/* ESM-2's 33-token protein alphabet in its id order (<cls> <pad> <eos> <unk>, the 20 standard
 * residues by frequency, X B U Z O . -, <null_1>, <mask>), so models trained with it load as
 * transformers' EsmForMaskedLM with EsmTokenizer's vocab.txt. BOS = <cls>, EOS = <eos>. */
ld_status ld_tokenizer_new_esm(ld_ctx *ctx, ld_tokenizer **out);
ld_status ld_tokenizer_load_vocab_txt(ld_ctx *ctx, const char *path, ld_tokenizer **out);

/* ---- using it ----------------------------------------------------------------------- */
enum {
    LD_ENCODE_SPECIAL_AS_TEXT = 1u << 0, /* untrusted input: "<|endoftext|>" is plain text */
    LD_ENCODE_ADD_BOS = 1u << 1,         /* prepend the BOS token, if the tokenizer has one */
    /* add what the tokenizer's post-processing adds (tokenizer.json post_processor, GGUF
     * add_bos_token / add_eos_token: "<s>" for Llama-2, "[CLS] ... [SEP]" for BERT); as
     * Hugging Face's add_special_tokens=True. Takes precedence over LD_ENCODE_ADD_BOS. */
    LD_ENCODE_ADD_SPECIAL = 1u << 2,
};
/* Encodes len bytes of text (any bytes: invalid UTF-8 round-trips through byte tokens) into
 * ids[0..cap); *n_ids receives the number of ids the text needs. If that exceeds cap,
 * nothing beyond cap is written and LD_ERR_LIMIT is returned (call again with more room). */
ld_status ld_tokenizer_encode(const ld_tokenizer *tok, const char *text, size_t len, unsigned flags,
                              int32_t *ids, size_t cap, size_t *n_ids);
/* Encodes n texts (texts[i] of lens[i] bytes) on n_threads threads (0 = the ctx's), each thread
 * keeping a word cache across its texts. *ids (all texts' ids one after the other) and
 * *offsets (n + 1 entries: text i's ids are ids[offsets[i] .. offsets[i + 1])) are allocated
 * through the tokenizer's ctx; free both with ld_free. The same ids as ld_tokenizer_encode. */
ld_status ld_tokenizer_encode_batch(const ld_tokenizer *tok, const char *const *texts, const size_t *lens, size_t n,
                                    unsigned flags, int n_threads, int32_t **ids, size_t **offsets);
/* Decodes ids to bytes in out[0..cap) (not NUL-terminated); *n_bytes receives the length
 * needed; LD_ERR_LIMIT if cap is too small. Ids out of range are LD_ERR_INVALID_ARG. Special
 * tokens are decoded to their text unless skip_special. */
ld_status ld_tokenizer_decode(const ld_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                              char *out, size_t cap, size_t *n_bytes);
/* The bytes of one token as decoded text (for streaming output a token at a time the
 * caller buffers incomplete UTF-8 sequences). */
ld_status ld_tokenizer_token_bytes(const ld_tokenizer *tok, int32_t id, const char **bytes, size_t *len);

int64_t ld_tokenizer_vocab_size(const ld_tokenizer *tok);
/* Id of a token given by its text (a special token like "<|endoftext|>" or a vocab entry in
 * its tokenizer.json spelling), or -1. */
int32_t ld_tokenizer_token_id(const ld_tokenizer *tok, const char *token);
/* Special ids, or -1 when absent. */
int32_t ld_tokenizer_bos_id(const ld_tokenizer *tok);
int32_t ld_tokenizer_eos_id(const ld_tokenizer *tok);
int32_t ld_tokenizer_pad_id(const ld_tokenizer *tok);
int32_t ld_tokenizer_unk_id(const ld_tokenizer *tok);
/* true for special (control) tokens such as "<|endoftext|>": their bytes are their name, not
 * text the model writes. */
bool ld_tokenizer_is_special(const ld_tokenizer *tok, int32_t id);
/* A 64-bit hash of everything that determines encoding (vocab, merges, specials, regex):
 * token shards record it so data tokenized with another tokenizer is refused. */
uint64_t ld_tokenizer_hash(const ld_tokenizer *tok);

/* ---- training ----------------------------------------------------------------------- */
typedef struct ld_bpe_train_params {
    int64_t vocab_size;          /* target size including the 256 byte tokens and the specials */
    int64_t min_frequency;       /* merges of pairs seen fewer times are not learned */
    ld_pretokenizer pretokenizer;
    const char *const *special_tokens; /* e.g. {"<|endoftext|>", "<pad>"}; ids 0.. in this order */
    int n_special_tokens;
    int n_threads;               /* 0 = the ctx's */
    /* progress: called now and then with the work done and total (bytes read, then merges) */
    void (*progress)(void *user, const char *phase, double done, double total);
    void *progress_user;
} ld_bpe_train_params;
ld_bpe_train_params ld_bpe_train_default_params(void);

/* A source of training text: documents pulled one at a time. */
typedef struct ld_text_source {
    /* Sets *doc and *len to the next document (valid until the next call); returns LD_OK, or
     * LD_ERR_NOT_FOUND at the end, or an error (which names the file and line). */
    ld_status (*next)(void *user, const char **doc, size_t *len);
    void *user;
} ld_text_source;

ld_status ld_bpe_train(ld_ctx *ctx, const ld_bpe_train_params *p, ld_text_source *src, ld_tokenizer **out);

#ifdef __cplusplus
}
#endif
#endif

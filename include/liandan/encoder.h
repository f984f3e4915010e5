/* liandan/encoder.h — the bidirectional transformer encoder (文溯 protein model, BERT, the
 * text tower of the image-text model) and its masked-language-model head.
 *
 * One implementation, two variants chosen by the config:
 *   bert: learned absolute positions and token types, LayerNorm after each residual add
 *         (post-LN), GELU MLP, biases everywhere (HF BertForMaskedLM tensor names);
 *   esm:  rotary positions, LayerNorm before attention and MLP (pre-LN) and once after the
 *         last layer, ESM-2's "token dropout" rescaling of the embeddings (HF
 *         EsmForMaskedLM tensor names).
 * Both have the same MLM head: dense -> GELU -> LayerNorm -> decoder tied to the word
 * embeddings, plus an output bias. Parameters are named as in the Hugging Face model, so a
 * model directory written here loads in transformers and vice versa.
 *
 * Inputs are padded batches: ids [B, T] (row-major), each row's first lengths[b] tokens
 * real and the rest padding (pad_token_id). Padding keys are never attended to; hidden
 * states at padding positions are computed but meaningless.
 *
 * Using it as a tower of another model (e.g. CLIP's text encoder):
 *   ld_encoder_forward(m, tape, ids, NULL, lengths, B, T, &hidden);      // [B, T, C]
 *   ld_encoder_pool(m, tape, hidden, lengths, LD_POOL_CLS, &pooled);     // [B, C]
 * Both record on the tape, so gradients flow into the encoder's parameters. */
#ifndef LIANDAN_ENCODER_H
#define LIANDAN_ENCODER_H

#include "liandan/data.h"
#include "liandan/nn.h"
#include "liandan/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ld_encoder_arch { LD_ENCODER_BERT = 0, LD_ENCODER_ESM = 1 } ld_encoder_arch;

typedef struct ld_encoder_config {
    ld_encoder_arch arch;
    int64_t vocab_size;
    int64_t hidden_size;       /* C */
    int64_t n_layers;
    int64_t n_heads;
    int64_t intermediate_size; /* MLP width (4 C in BERT-base) */
    int64_t max_position;      /* longest input: bert = rows of the position table; esm = the
                                  config's max_position_embeddings (rotary has no table) */
    int64_t type_vocab_size;   /* bert: token types (segments), usually 2; esm: 0 */
    float norm_eps;            /* 1e-12 (bert), 1e-5 (esm) */
    float rope_theta;          /* esm: 10000 */
    float init_std;            /* 0.02 */
    float dropout;             /* hidden dropout while training (bert 0.1, esm 0) */
    bool gelu_tanh;            /* the tanh GELU ("gelu_new") instead of the exact erf GELU */
    bool quick_gelu;           /* CLIP's x sigmoid(1.702 x) ("quick_gelu") instead of either GELU */
    bool causal;               /* each position attends to itself and earlier ones only (CLIP's
                                  text tower); false: bidirectional */
    bool token_dropout;        /* esm-2: embeddings of mask tokens are zeroed and every row is
                                  scaled by 0.88 / (1 - its share of mask tokens) */
    int32_t pad_token_id;
    int32_t mask_token_id;     /* -1 = unknown (only token_dropout needs it) */
} ld_encoder_config;

/* BERT-base-like proportions at a small size (the default for new bert models), or ESM-2's
 * conventions (33-token vocabulary, rotary, token dropout). */
ld_encoder_config ld_encoder_default_config(ld_encoder_arch arch);
/* Checks dimensions for consistency; the error names the offending fields. */
ld_status ld_encoder_config_validate(ld_ctx *ctx, const ld_encoder_config *cfg);
/* Parameter count (embeddings and the MLM head included, the tied decoder counted once). */
int64_t ld_encoder_config_num_params(const ld_encoder_config *cfg);
/* Model FLOPs per token of an MLM training step with sequences of T tokens of which a share
 * `mlm_fraction` is predicted: 6 x (the encoder's matrix parameters) + 6 x (the head's, times
 * mlm_fraction) + 12 L C T for attention (bidirectional: every key, where the causal LM's
 * 6 L C T counts half). */
double ld_encoder_train_flops_per_token(const ld_encoder_config *cfg, int64_t T, double mlm_fraction);

/* Parses a Hugging Face config.json with model_type "bert" (BertConfig) or "esm"
 * (EsmConfig). `path` is used in error messages. Unknown keys are logged as warnings;
 * unsupported features (absolute positions in esm, relative positions in bert, activations
 * other than gelu / gelu_new) are errors naming the key. */
ld_status ld_encoder_config_from_json(ld_ctx *ctx, const char *text, size_t len, const char *path,
                                      ld_encoder_config *out);
/* The config.json text for cfg (malloc'd, caller frees with free()); NULL on OOM. */
char *ld_encoder_config_to_json(const ld_encoder_config *cfg);

typedef struct ld_encoder ld_encoder;

typedef enum ld_pooling {
    LD_POOL_CLS = 0,  /* the first position's hidden state (BERT's [CLS], ESM's <cls>) */
    LD_POOL_MEAN = 1, /* the average over each row's real tokens (special tokens included) */
    LD_POOL_LAST = 2, /* the last real token's (a causal LM's classification head, liandan/adapter.h) */
} ld_pooling;

/* Builds the model with freshly initialised parameters (BERT conventions: N(0, std) for
 * matrices and embeddings, LayerNorm weights 1, biases 0). */
ld_status ld_encoder_new(ld_ctx *ctx, const ld_encoder_config *cfg, uint64_t seed, ld_encoder **out);
void ld_encoder_free(ld_encoder *m);
const ld_encoder_config *ld_encoder_config_of(const ld_encoder *m);
ld_params *ld_encoder_params(ld_encoder *m);
ld_ctx *ld_encoder_ctx(const ld_encoder *m);

/* Writes dir/config.json and dir/model.safetensors (F32, HF names; the directory is created
 * if needed, files written atomically). The tokenizer files are the caller's to write. */
ld_status ld_encoder_save(ld_encoder *m, const char *dir);
/* Loads a model directory (config.json + model.safetensors or a sharded index; F32, F16 or
 * BF16). Accepts checkpoints of BertForMaskedLM / BertForPreTraining / BertModel and
 * EsmForMaskedLM / EsmModel (a missing MLM head is initialised fresh and logged; pooler,
 * next-sentence and contact heads are ignored), TF-era names (LayerNorm.gamma / beta).
 * Errors name the file and tensor: missing, wrong shape, wrong dtype. */
ld_status ld_encoder_load(ld_ctx *ctx, const char *dir, ld_encoder **out);
/* true when dir/config.json names model_type "bert" or "esm". */
bool ld_encoder_dir_sniff(const char *dir);

/* GGUF for llama.cpp's embedding path (architecture "bert": bert.* keys, token_embd /
 * position_embd / token_types / blk.N.* tensors, bert.pooling_type). The MLM head is not
 * written (llama.cpp's bert has none); esm is LD_ERR_UNSUPPORTED (no llama.cpp architecture).
 * type: F32, F16, BF16 or a quantized type for the matrices (vectors stay F32). */
typedef struct ld_encoder_gguf_params {
    ld_dtype type;
    ld_pooling pooling; /* what llama.cpp pools to (mean by default) */
    const char *name;   /* general.name; NULL = "liandan encoder" */
} ld_encoder_gguf_params;
ld_encoder_gguf_params ld_encoder_gguf_default_params(void);
ld_status ld_encoder_save_gguf(ld_encoder *m, const ld_tokenizer *tok, const char *path, const ld_encoder_gguf_params *p);
/* Reads a "bert" GGUF (written here or by llama.cpp's converter) into an encoder with the tanh
 * GELU llama.cpp computes; its MLM head starts freshly initialised (the file has none). *tok
 * (may be NULL) receives the file's tokenizer. Other architectures are LD_ERR_UNSUPPORTED. */
ld_status ld_encoder_load_gguf(ld_ctx *ctx, const char *path, ld_encoder **out, ld_tokenizer **tok);

/* ---- forward passes (record on the tape; backward comes from ld_tape_backward) -------- */
/* Final hidden states [B, T, C] for ids [B * T]. types: token types [B * T] or NULL (all 0;
 * must be NULL for esm). lengths: real tokens per row, 1..T each, or NULL (all T). ids,
 * types and lengths must stay valid until ld_tape_backward() returns. */
ld_status ld_encoder_forward(ld_encoder *m, ld_tape *t, const int32_t *ids, const int32_t *types,
                             const int32_t *lengths, int64_t B, int64_t T, ld_tensor **hidden);

/* MLM logits [n, V] of the hidden states at `positions` (n indices into the B*T rows of
 * hidden; NULL = all rows, n = B*T). positions must stay valid until backward. */
ld_status ld_encoder_mlm_logits(ld_encoder *m, ld_tape *t, const ld_tensor *hidden, const int32_t *positions,
                                int64_t n, ld_tensor **logits);

/* The masked-LM loss: mean cross-entropy of the head's predictions at the positions whose
 * target != -100 (the head runs only there). targets [B * T]; ids, lengths as for forward.
 * *counted (may be NULL) receives the number of predicted positions; *logits (may be NULL)
 * the [counted, V] logits in position order. Errors when no position is predicted. */
ld_status ld_encoder_mlm_loss(ld_encoder *m, ld_tape *t, const int32_t *ids, const int32_t *lengths,
                              const int32_t *targets, int64_t B, int64_t T, ld_tensor **loss, int64_t *counted,
                              ld_tensor **logits);

/* One vector per row: pooled [B, C] from hidden [B, T, C]; lengths as for forward. */
ld_status ld_encoder_pool(ld_encoder *m, ld_tape *t, const ld_tensor *hidden, const int32_t *lengths,
                          ld_pooling mode, ld_tensor **pooled);
/* "cls" / "mean" -> mode; false for other names. */
bool ld_pooling_from_name(const char *name, ld_pooling *out);
const char *ld_pooling_name(ld_pooling p);

/* ---- using a trained encoder (inference: nothing is recorded for backward) ------------ */
/* A model directory and its tokenizer (tokenizer.json, else vocab.txt: a character vocabulary
 * such as Chinese BERT's or ESM's), or a "bert" GGUF file. The tokenizer may not be larger than
 * the model's vocabulary. */
ld_status ld_encoder_open(ld_ctx *ctx, const char *dir, ld_encoder **m, ld_tokenizer **tok);
/* Writes the tokenizer beside a saved model: vocab.txt + tokenizer_config.json +
 * special_tokens_map.json (BertTokenizer / EsmTokenizer) for a character vocabulary,
 * tokenizer.json otherwise. */
ld_status ld_encoder_save_tokenizer(ld_encoder *m, const ld_tokenizer *tok, const char *dir);
/* One input row for text: [CLS] tokens [SEP] (special tokens written in the text, such as
 * [MASK] or <mask>, are recognised), cut to max_position. *ids is ld_alloc'd (ld_free with
 * the model's ctx). */
ld_status ld_encoder_encode_text(const ld_encoder *m, const ld_tokenizer *tok, const char *text, size_t len,
                                 int32_t **ids, int64_t *n);
/* Pooled embeddings out[n, C] of n input rows (seqs[i] of lens[i] tokens), L2-normalised
 * when normalize; rows are run in padded batches of 16. */
ld_status ld_encoder_embed(ld_encoder *m, const int32_t *const *seqs, const int64_t *lens, int64_t n, ld_pooling mode,
                           bool normalize, float *out);
/* Final hidden states out[n, C] of one input row of n tokens (per-token features). */
ld_status ld_encoder_hidden(ld_encoder *m, const int32_t *ids, int64_t n, float *out);
/* Features of several layers (linear probes): bit l of `layers` picks layer l — 0 the
 * embeddings (the first block's input), 1..L-1 the residual stream after block l, L (the
 * model's layer count) the final hidden states (after esm's final LayerNorm: what
 * ld_encoder_embed and ld_encoder_hidden return). Each output row holds the chosen layers'
 * vectors side by side in layer order: out[n, k * C] for k chosen layers. Bits above L or
 * none at all are LD_ERR_INVALID_ARG. */
ld_status ld_encoder_embed_layers(ld_encoder *m, const int32_t *const *seqs, const int64_t *lens, int64_t n,
                                  ld_pooling mode, uint64_t layers, float *out);
/* The same per token of one input row of n tokens: out[n, k * C]. */
ld_status ld_encoder_hidden_layers(ld_encoder *m, const int32_t *ids, int64_t n, uint64_t layers, float *out);
/* The k most likely tokens at every position of ids holding mask_id: positions[n_masks],
 * top_ids / top_probs [n_masks, k] (probabilities under the softmax over the vocabulary), at
 * most cap_masks masks. */
ld_status ld_encoder_fill_mask(ld_encoder *m, const int32_t *ids, int64_t n, int32_t mask_id, int k,
                               int64_t cap_masks, int64_t *n_masks, int64_t *positions, int32_t *top_ids,
                               float *top_probs);
/* Held-out masked-LM quality over an eval-mode source (one pass, or max_batches batches of B):
 * the mean cross-entropy and accuracy at the predicted positions, and the unigram baseline's
 * (unigram[V] = token shares of the training data, or NULL: always guessing the most frequent
 * token, and its -log share as the loss). */
typedef struct ld_mlm_eval {
    double loss, accuracy;
    double unigram_loss, unigram_accuracy;
    int64_t predicted;
} ld_mlm_eval;
ld_status ld_encoder_mlm_eval(ld_encoder *m, ld_mlm_source *src, int64_t B, int64_t max_batches,
                              const double *unigram, ld_mlm_eval *out);

#ifdef __cplusplus
}
#endif
#endif

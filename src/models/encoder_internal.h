/* models/encoder_internal.h — the encoder's layout and its tensor-name tables, shared by the
 * forward pass (encoder.c), the model-directory loader/saver (encoder_dir.c) and the GGUF
 * writer/reader (encoder_gguf.c). */
#ifndef LD_ENCODER_INTERNAL_H
#define LD_ENCODER_INTERNAL_H

#include <stddef.h>

#include "liandan/encoder.h"
#include "nn/nn_internal.h"

/* Per-layer parameters. ln1 / ln2: bert's LayerNorms after the attention and MLP residual
 * adds; esm's before attention and before the MLP. */
typedef struct enc_layer {
    ld_tensor *q, *q_b, *k, *k_b, *v, *v_b, *o, *o_b;
    ld_tensor *ln1_w, *ln1_b;
    ld_tensor *up, *up_b, *down, *down_b;
    ld_tensor *ln2_w, *ln2_b;
} enc_layer;

struct ld_encoder {
    ld_ctx *ctx;
    ld_encoder_config cfg;
    ld_params *params;
    ld_tensor *wte;                     /* word embeddings [V, C], also the MLM decoder */
    ld_tensor *wpe, *wtt;               /* bert: positions [P, C], token types [TT, C] */
    ld_tensor *emb_ln_w, *emb_ln_b;     /* bert: LayerNorm of the embedding sum */
    ld_tensor *final_ln_w, *final_ln_b; /* esm: emb_layer_norm_after */
    ld_tensor *contact_w, *contact_b;   /* esm: the contact head, frozen (kept for round trips) */
    ld_tensor *head_w, *head_b, *head_ln_w, *head_ln_b, *head_bias; /* MLM head */
    enc_layer *layers;
    int names;          /* enc_names: which tensor names the parameters have */
    bool no_rotary;     /* an esm-layout (pre-LN) tower without rotary: a ViT (positions added by its owner) */
    bool shared_params; /* params belong to the owner (a tower of a two-tower model) */
    ld_tensor **taps;   /* set by ld_encoder_*_layers around one forward: enc_blocks_forward stores
                         * the input of the first block in taps[0], the residual stream after
                         * block l in taps[l] and the final hidden states in taps[n_layers] */
};

/* Which tensor names an encoder's parameters get: its architecture's (HF bert / esm), or
 * those of transformers' CLIP towers (CLIPEncoderLayer: self_attn.q_proj, layer_norm1, mlp.fc1,
 * ...; the text tower's token / position embeddings and final_layer_norm, the vision tower's
 * post_layernorm and no embeddings of its own). The CLIP names go with the esm layout (pre-LN
 * and a final LayerNorm) without rotary. */
typedef enum enc_names { ENC_NAMES_ARCH = 0, ENC_NAMES_CLIP_TEXT = 1, ENC_NAMES_CLIP_VISION = 2 } enc_names;

/* An encoder whose parameters are added to `shared` (NULL: a set of its own), each name
 * prefixed by `prefix` ("text_model." for a tower); rotary false leaves esm-layout layers
 * without rotary (the ViT's pre-LN blocks); names picks the tensor names (ENC_NAMES_CLIP_*
 * need the esm arch and rotary false). */
ld_status enc_new_in(ld_ctx *ctx, const ld_encoder_config *cfg, uint64_t seed, ld_params *shared, const char *prefix,
                     bool rotary, enc_names names, ld_encoder **out);
/* The layer stack (and esm's final LayerNorm) on embeddings x [B, T, C]: hidden [B, T, C]. */
ld_status enc_blocks_forward(ld_encoder *m, ld_tape *t, ld_tensor *x, const int32_t *lengths, ld_tensor **hidden);

/* How a parameter is initialised and which shape it has. */
enum { ENC_INIT_NORMAL, ENC_INIT_ZERO, ENC_INIT_ONE };
enum { ENC_SHAPE_CC, ENC_SHAPE_IC, ENC_SHAPE_CI, ENC_SHAPE_C, ENC_SHAPE_I };

/* One per-layer parameter: its field in enc_layer and its name after the layer prefix for
 * bert / esm / CLIP (HF) and in llama.cpp's GGUF ("blk.N." prefix; bert only). */
typedef struct enc_layer_param {
    size_t field;
    const char *hf[3];
    const char *gguf;
    int init, shape;
} enc_layer_param;
extern const enc_layer_param enc_layer_params[];
extern const int enc_n_layer_params;

/* One model-level parameter of an architecture. */
typedef struct enc_top_param {
    size_t field;
    const char *hf;
    const char *gguf; /* NULL: not in llama.cpp's bert */
    int init;
    int rows;         /* 'V' vocab, 'P' positions, 'T' token types, 'C' hidden, 'L' layers x heads, '1' one */
    int cols;         /* 'C', '1' or 0 (1-D) */
    bool frozen;
} enc_top_param;
/* The model-level parameters of arch, terminated by an entry with hf == NULL. */
const enc_top_param *enc_top_params(ld_encoder_arch arch);
/* "bert.encoder.layer." / "esm.encoder.layer." */
const char *enc_layer_prefix(ld_encoder_arch arch);

#define ENC_FIELD(base, off) (*(ld_tensor **)((char *)(base) + (off)))

/* One parameter of a configuration as enc_each_param gives it; `slot` is where the model
 * keeps its tensor (NULL when no model was given). */
typedef struct enc_param_desc {
    const char *name;
    int ndim;
    int64_t dims[2];
    int init;
    bool frozen;
    ld_tensor **slot;
} enc_param_desc;
/* Calls fn for every parameter of cfg in HF's state-dict order (embeddings, layers, the rest)
 * and stops at the first status that is not LD_OK, which it returns. m (may be NULL) gives the
 * slots. ld_encoder_new builds the model with it; the loader checks a directory's tensors with
 * it before anything is allocated. */
ld_status enc_each_param(const ld_encoder_config *cfg, ld_encoder *m,
                         ld_status (*fn)(void *user, const enc_param_desc *p), void *user);
/* The same for the tensor names `names` (enc_names). */
ld_status enc_each_param_named(const ld_encoder_config *cfg, int names, ld_encoder *m,
                               ld_status (*fn)(void *user, const enc_param_desc *p), void *user);

#endif

/* liandan/clip.h — the image-text two-tower model (文瀾 / BriVL, CLIP): a ViT image tower and
 * a BERT text tower (the encoder family), linear projections into one embedding space, L2
 * normalisation, and the symmetric InfoNCE loss with a learnable, clamped temperature.
 *
 * Image tower (ViT, CLIP's layout): the S x S image is cut into (S/P)^2 patches of P x P x 3;
 * the patch embedding is one matrix product over the unfolded patches (no bias); a class token
 * is prepended, learned positions added, a LayerNorm ("pre_layrnorm") applied, then pre-LN
 * transformer blocks (the encoder's esm layout without rotary) and a final LayerNorm; the class
 * token's state is projected (visual_projection, no bias).
 * Text tower: the encoder's bert variant over a character vocabulary, [CLS] pooling, projected
 * (text_projection, no bias).
 * logit_scale is log(1 / temperature), initialised to log(1 / 0.07) and clamped at log(100) as
 * in CLIP.
 *
 * Parameters live in one set, named "text_model." + BERT names, "vision_model." + ...
 * (docs/clip.md lists them). A model directory holds config.json (model_type "clip",
 * text_config = BertConfig keys, vision_config = CLIPVisionConfig keys), model.safetensors and
 * the text tower's vocab.txt.
 *
 * The second layout, LD_CLIP_LAYOUT_HF, is transformers' CLIPModel: the text tower is a causal
 * pre-LN transformer (token + learned position embeddings, quick_gelu MLPs, final_layer_norm)
 * pooled at the end-of-text token, every tower block has CLIPEncoderLayer names
 * (text_model.encoder.layers.N.self_attn.q_proj, ...), the vision tower has a separate
 * class_embedding, a Conv2d-shaped patch_embedding and post_layernorm; config.json is a
 * CLIPConfig (text_config = CLIPTextConfig, vision_config = CLIPVisionConfig, absent keys take
 * transformers' defaults). Such a directory loads, runs and is written back in the same names. */
#ifndef LIANDAN_CLIP_H
#define LIANDAN_CLIP_H

#include "liandan/encoder.h"
#include "liandan/image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ld_clip_layout {
    LD_CLIP_LAYOUT_BERT = 0, /* liandan's: a BERT text tower with [CLS] pooling, esm-named ViT blocks */
    LD_CLIP_LAYOUT_HF = 1,   /* transformers' CLIPModel (see above) */
} ld_clip_layout;

typedef struct ld_clip_config {
    ld_clip_layout layout;
    ld_encoder_config text;  /* bert; LD_CLIP_LAYOUT_HF: esm arch (pre-LN + final LayerNorm), causal,
                                no rotary, quick_gelu unless hidden_act says otherwise */
    int64_t image_size;      /* S (square images) */
    int64_t patch_size;      /* P; S % P == 0 */
    int64_t vision_width, vision_layers, vision_heads, vision_mlp;
    float vision_eps;        /* LayerNorm epsilon (1e-5) */
    int64_t embed_dim;       /* projection_dim */
    float logit_scale_init;  /* log(1 / 0.07) = 2.6592 */
    float logit_scale_max;   /* log(100) = 4.6052 */
    bool vision_quick_gelu;  /* vision MLPs use quick_gelu (CLIP's default) ... */
    bool vision_gelu_tanh;   /* ... or the tanh GELU; neither: the erf GELU */
    /* LD_CLIP_LAYOUT_HF: a caption is bos_token_id, its tokens, eos_token_id, then padding
     * (text.pad_token_id), and the text tower pools the hidden state at the first eos_token_id
     * of each row; eos_token_id 2 is transformers' legacy rule: at the largest id of the row. */
    int32_t bos_token_id, eos_token_id;
} ld_clip_config;

/* A small model for 32 x 32 images: patches of 4 (64 + 1 tokens), width 128, 4 layers. */
ld_clip_config ld_clip_default_config(void);
/* transformers' CLIPConfig() defaults (LD_CLIP_LAYOUT_HF): the shapes of OpenAI's ViT-B/32 —
 * text 12 layers of width 512 (8 heads, 77 positions, 49,408 tokens), vision 12 layers of
 * width 768 (12 heads) on 224 x 224 images in patches of 32, projection 512, quick_gelu. */
ld_clip_config ld_clip_hf_config(void);
ld_status ld_clip_config_validate(ld_ctx *ctx, const ld_clip_config *cfg);
ld_status ld_clip_config_from_json(ld_ctx *ctx, const char *text, size_t len, const char *path, ld_clip_config *out);
/* The config.json text (malloc'd, free with free()); NULL on OOM. */
char *ld_clip_config_to_json(const ld_clip_config *cfg);
/* Model FLOPs of one training pair (image + caption of T tokens), forward and backward:
 * 6 x matrix parameters per token of each tower + attention (12 L C T per token). */
double ld_clip_train_flops_per_pair(const ld_clip_config *cfg, int64_t T);

typedef struct ld_clip ld_clip;

ld_status ld_clip_new(ld_ctx *ctx, const ld_clip_config *cfg, uint64_t seed, ld_clip **out);
void ld_clip_free(ld_clip *m);
const ld_clip_config *ld_clip_config_of(const ld_clip *m);
ld_params *ld_clip_params(ld_clip *m);
ld_ctx *ld_clip_ctx(const ld_clip *m);
/* The text tower (its parameters are in ld_clip_params). */
ld_encoder *ld_clip_text_tower(ld_clip *m);

/* config.json + model.safetensors (+ vocab.txt of tok when tok is not NULL). */
ld_status ld_clip_save(ld_clip *m, const ld_tokenizer *tok, const char *dir);
/* Loads a directory written by ld_clip_save, or a transformers CLIPModel directory (weights
 * F32, F16 or BF16; model.safetensors or a sharded set); *tok (may be NULL) receives its
 * vocab.txt, or stays NULL when the directory has none (logged: images only). */
ld_status ld_clip_load(ld_ctx *ctx, const char *dir, ld_clip **out, ld_tokenizer **tok);
/* true when dir/config.json names model_type "clip". */
bool ld_clip_dir_sniff(const char *dir);
/* true when the JSON text of len bytes is an object with model_type "clip". */
bool ld_clip_config_sniff(const char *text, size_t len);

/* ---- forward passes (record on the tape) ---------------------------------------------- */
/* L2-normalised image embeddings [B, E] of pixels [B, 3, S, S] (normalised input, see
 * ld_image_to_input). pixels must stay valid until backward. */
ld_status ld_clip_image_embed(ld_clip *m, ld_tape *t, const float *pixels, int64_t B, ld_tensor **emb);
/* The patch embedding alone (with the class token): tokens [B, N + 1, width] before positions. */
ld_status ld_clip_patch_embed(ld_clip *m, ld_tape *t, const float *pixels, int64_t B, ld_tensor **tokens);
/* L2-normalised text embeddings [B, E] of padded ids [B, T] with lengths[B]. */
ld_status ld_clip_text_embed(ld_clip *m, ld_tape *t, const int32_t *ids, const int32_t *lengths, int64_t B, int64_t T,
                             ld_tensor **emb);
/* The symmetric InfoNCE loss of B (image, caption) pairs. */
ld_status ld_clip_loss(ld_clip *m, ld_tape *t, const float *pixels, const int32_t *ids, const int32_t *lengths,
                       int64_t B, int64_t T, ld_tensor **loss);
/* The same with MoCo-style queues (BriVL): the images are also scored against text_queue
 * [n_text, E] and the captions against image_queue [n_image, E] (a momentum encoder's recent
 * embeddings: extra negatives, no gradient; valid until backward). ld_op_infonce_queues. */
ld_status ld_clip_loss_queued(ld_clip *m, ld_tape *t, const float *pixels, const int32_t *ids, const int32_t *lengths,
                              int64_t B, int64_t T, const float *image_queue, int64_t n_image, const float *text_queue,
                              int64_t n_text, ld_tensor **loss);

/* ---- the momentum encoder (MoCo / BriVL) ------------------------------------------------ */
/* Every parameter of dst = src's (two models of one config). */
ld_status ld_clip_copy_params(ld_clip *dst, const ld_clip *src);
/* k = momentum k + (1 - momentum) q for every trainable parameter of q (an exponential moving
 * average of q's weights in k; frozen ones are left alone). */
ld_status ld_clip_momentum_update(ld_clip *k, const ld_clip *q, float momentum);

/* ---- captions -------------------------------------------------------------------------- */
/* A character vocabulary (vocab.txt lines: [PAD] [UNK] [CLS] [SEP] [MASK], then every character
 * seen at least min_count times in texts, most frequent first) written to path. */
ld_status ld_clip_build_vocab(ld_ctx *ctx, const char *const *texts, int64_t n, int min_count, const char *path);
/* [CLS] characters [SEP] of text cut to at most T tokens; ids[T] padded with [PAD]; *len the
 * real length. */
ld_status ld_clip_encode_caption(const ld_tokenizer *tok, const char *text, int64_t T, int32_t *ids, int32_t *len);

/* ---- inference (nothing recorded) ------------------------------------------------------- */
/* out[n, E] for n square uint8 images [S, S, 3] (normalised with the default transform). */
ld_status ld_clip_embed_images(ld_clip *m, const uint8_t *const *images, int64_t n, float *out);
/* out[n, E] for n texts (each cut to the text tower's max_position). */
ld_status ld_clip_embed_texts(ld_clip *m, const ld_tokenizer *tok, const char *const *texts, int64_t n, float *out);

#ifdef __cplusplus
}
#endif
#endif

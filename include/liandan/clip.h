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
 * the text tower's vocab.txt. */
#ifndef LIANDAN_CLIP_H
#define LIANDAN_CLIP_H

#include "liandan/encoder.h"
#include "liandan/image.h"
#include "liandan/train.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ld_clip_config {
    ld_encoder_config text;  /* bert */
    int64_t image_size;      /* S (square images) */
    int64_t patch_size;      /* P; S % P == 0 */
    int64_t vision_width, vision_layers, vision_heads, vision_mlp;
    float vision_eps;        /* LayerNorm epsilon (1e-5) */
    int64_t embed_dim;       /* projection_dim */
    float logit_scale_init;  /* log(1 / 0.07) = 2.6592 */
    float logit_scale_max;   /* log(100) = 4.6052 */
} ld_clip_config;

/* A small model for 32 x 32 images: patches of 4 (64 + 1 tokens), width 128, 4 layers. */
ld_clip_config ld_clip_default_config(void);
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
/* Loads a directory written by ld_clip_save; *tok (may be NULL) receives its vocab.txt. */
ld_status ld_clip_load(ld_ctx *ctx, const char *dir, ld_clip **out, ld_tokenizer **tok);
/* true when dir/config.json names model_type "clip". */
bool ld_clip_dir_sniff(const char *dir);

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

/* ---- training (liandan pretrain with "model": {"model_type": "clip", ...}) ------------ */
typedef struct ld_clip_train_config {
    ld_clip_config model;
    char train_data[1024], val_data[1024]; /* emoji_clip directory or a TSV / JSONL list ("" val: none) */
    char split[16], val_split[16];         /* emoji_clip splits ("train", "dev"); ignored for lists */
    char lang[8];                          /* captions: "zh", "en" or "both" (each image twice) */
    char out_dir[1024];
    int64_t batch_size, max_steps, eval_every;
    ld_lr_schedule schedule;
    ld_adamw_config optim;
    ld_image_transform transform;          /* "pad", "flip" */
    bool augment;
    uint64_t seed;
    int threads;
} ld_clip_train_config;
ld_clip_train_config ld_clip_train_config_default(void);
/* Parses a training config (docs/clip.md lists the keys); errors name the key. */
ld_status ld_clip_train_config_parse(ld_ctx *ctx, const char *text, size_t len, const char *path,
                                     ld_clip_train_config *out);
/* true when the config's "model" has model_type "clip" (the pretrain command dispatches on it). */
bool ld_clip_train_config_is_clip(const char *text, size_t len);

/* Image-caption pairs: one image set, or two (lang "both": the same images with zh and en
 * captions). */
typedef struct ld_clip_pairs {
    ld_image_set *sets[2];
    int n_sets;
    int64_t n;
} ld_clip_pairs;
ld_status ld_clip_pairs_open(ld_ctx *ctx, const char *path, const char *split, const char *lang, int size,
                             ld_clip_pairs *out);
void ld_clip_pairs_free(ld_clip_pairs *p);

typedef struct ld_clip_train_progress {
    int64_t step, max_steps;
    double loss, val_loss;     /* val_loss NAN when not evaluated this step */
    double lr, grad_norm, temperature;
    double pairs_per_s, mfu, elapsed_s;
    double data_s;             /* seconds the step spent preparing its batch (decode, augment, tokenize) */
    bool skipped;
} ld_clip_train_progress;
typedef void (*ld_clip_train_progress_fn)(void *user, const ld_clip_train_progress *p);

/* Trains m on train (val may be NULL) as c says, writing out_dir/metrics.jsonl; calls cb after
 * every step. peak_flops (FLOP/s, 0 = unknown) gives MFU. Stops with LD_ERR_INTERRUPTED when
 * *stop becomes nonzero. The caller saves the model. */
ld_status ld_clip_train(ld_clip *m, const ld_tokenizer *tok, const ld_clip_train_config *c, const ld_clip_pairs *train,
                        const ld_clip_pairs *val, double peak_flops, ld_clip_train_progress_fn cb, void *user,
                        volatile int *stop);

/* ---- evaluation ------------------------------------------------------------------------ */
#define LD_RETRIEVAL_KS 3 /* R@1, R@5, R@10 */
typedef struct ld_retrieval_result {
    double t2i[LD_RETRIEVAL_KS], i2t[LD_RETRIEVAL_KS];               /* recall at 1, 5, 10 */
    double t2i_chance[LD_RETRIEVAL_KS], i2t_chance[LD_RETRIEVAL_KS]; /* the same for random rankings (exact) */
    int64_t n_images, n_texts;                                       /* images; distinct captions */
} ld_retrieval_result;
/* Recall of n (image, caption) pairs given L2-normalised embeddings img[n, E] and txt[n, E];
 * group[i] identifies pair i's caption text (pairs with the same caption share a group: any of
 * their images answers the caption, and each distinct caption is one query and one
 * candidate). Text->image: each distinct caption ranks the n images; image->text: each image
 * ranks the distinct captions. */
ld_status ld_retrieval_eval(ld_ctx *ctx, const float *img, const float *txt, const int64_t *group, int64_t n, int64_t E,
                            ld_retrieval_result *out);
/* The bag-of-characters baseline: a caption is its L2-normalised vector of character counts
 * (characters of the training captions); an image is mapped to that space by ridge regression
 * (penalty `ridge`) from its 8 x 8 downsampled pixels, fit on the training pairs. *img, *txt
 * [test->n, *dim] (malloc'd; free()) are the test pairs' embeddings, L2-normalised. */
ld_status ld_retrieval_boc_baseline(ld_ctx *ctx, const ld_clip_pairs *train, const ld_clip_pairs *test, double ridge,
                                    float **img, float **txt, int64_t *dim);
/* Zero-shot classification: pred[i] = the label whose prompt text is closest (cosine) to image
 * i; score[i] (may be NULL) that cosine. */
ld_status ld_clip_zero_shot(ld_clip *m, const ld_tokenizer *tok, const char *const *prompts, int64_t n_labels,
                            const uint8_t *const *images, int64_t n, int64_t *pred, float *score);

#ifdef __cplusplus
}
#endif
#endif

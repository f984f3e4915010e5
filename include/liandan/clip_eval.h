/* liandan/clip_eval.h — evaluating and using the image-text model: retrieval recall against chance and
 * a bag-of-characters baseline, zero-shot classification, an embedding index with brute-force
 * cosine search. */
#ifndef LIANDAN_CLIP_EVAL_H
#define LIANDAN_CLIP_EVAL_H

#include "liandan/clip.h"

#ifdef __cplusplus
extern "C" {
#endif

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

/* ---- index and search (brute-force cosine) -------------------------------------------- */
typedef struct ld_clip_index ld_clip_index;
/* Writes n embeddings emb[n, E] with names (e.g. image paths) and the model directory that made
 * them (layout in src/infer/clip_index.c), atomically. */
ld_status ld_clip_index_write(ld_ctx *ctx, const char *path, const char *model_dir, const float *emb, int64_t n,
                              int64_t E, const char *const *names);
ld_status ld_clip_index_open(ld_ctx *ctx, const char *path, ld_clip_index **out);
/* The same from memory (bounds-checked; `name` in messages). */
ld_status ld_clip_index_parse(ld_ctx *ctx, const void *data, size_t size, const char *name, ld_clip_index **out);
void ld_clip_index_free(ld_clip_index *ix);
int64_t ld_clip_index_count(const ld_clip_index *ix);
int64_t ld_clip_index_dim(const ld_clip_index *ix);
const char *ld_clip_index_model(const ld_clip_index *ix);
const char *ld_clip_index_name(const ld_clip_index *ix, int64_t i);
/* The k best items for query q[E] by cosine, best first: ids[k], scores[k]; *found = min(k, n). */
ld_status ld_clip_index_search(const ld_clip_index *ix, const float *q, int64_t k, int64_t *ids, float *scores,
                               int64_t *found);

#ifdef __cplusplus
}
#endif
#endif

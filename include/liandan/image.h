/* liandan/image.h — images for the image-text model (文瀾 / CLIP): decoding PNG (libpng) and
 * JPEG (libjpeg-turbo) into 8-bit RGB, resizing, cropping, flipping and normalising into the
 * float input of the vision tower, and image-text datasets.
 *
 * Pixels are row-major HWC uint8 RGB (alpha composited on white). The vision tower's input is
 * CHW float32, each channel (x / 255 - mean[c]) / std[c].
 *
 * Datasets (ld_image_set) hold every image already resized to one square size, with a caption
 * and an optional label per item:
 *   - the emoji_clip directory (images_32x32_rgb.u8 + index.tsv, see its SOURCE.md): one split,
 *     captions in Chinese or English, the category as the label;
 *   - a TSV (image path, caption[, label]; a header line "image\tcaption[\tlabel]" is skipped)
 *     or JSONL ({"image": path, "caption": text[, "label": text]}) list; relative image paths are
 *     relative to the list's directory. Bad images (truncated, not an image, an unreadable file)
 *     are skipped with a counted warning (LD_BAD_IMAGE_SKIP) or rejected with an error naming
 *     the list file, line and image (LD_BAD_IMAGE_REJECT). A malformed line is always an error. */
#ifndef LIANDAN_IMAGE_H
#define LIANDAN_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ld_image {
    int width, height; /* pixels; channels are always 3 (RGB) */
    uint8_t *px;       /* [height, width, 3], ld_alloc'd through the ctx that decoded it */
} ld_image;
void ld_image_free(ld_ctx *ctx, ld_image *im);

/* Which decoders this build has (libpng / libjpeg found at build time). */
bool ld_image_has_png(void);
bool ld_image_has_jpeg(void);

/* Decodes a PNG or JPEG held in memory (recognised by its signature; `name` is used in error
 * messages). Errors: LD_ERR_FORMAT for a truncated or corrupt image or one that is neither,
 * LD_ERR_UNSUPPORTED when the decoder was not built in, LD_ERR_LIMIT beyond 16384 x 16384. */
ld_status ld_image_decode(ld_ctx *ctx, const void *data, size_t len, const char *name, ld_image *out);
/* Reads and decodes a file. */
ld_status ld_image_load(ld_ctx *ctx, const char *path, ld_image *out);
/* Writes an 8-bit RGB PNG (for tests and tools); LD_ERR_UNSUPPORTED without libpng. */
ld_status ld_image_save_png(ld_ctx *ctx, const char *path, const uint8_t *px, int width, int height);

/* Bilinear resize of src [sh, sw, 3] to dst [dh, dw, 3] (pixel centres aligned; a box
 * average first when shrinking by 2x or more so detail does not alias). */
void ld_image_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh);
/* Resizes so the shorter side is `size`, then takes the centre size x size square:
 * dst [size, size, 3]. */
void ld_image_resize_center_crop(const uint8_t *src, int sw, int sh, uint8_t *dst, int size);

/* How a square uint8 image becomes the tower's input. */
typedef struct ld_image_transform {
    float mean[3], std[3]; /* per channel, on x / 255 (CLIP's: 0.481 0.458 0.408 / 0.269 0.261 0.276) */
    int pad;               /* random crop: pad by this many pixels (edge replicated), crop back (0 = off) */
    bool flip;             /* random horizontal flip with probability 1/2 */
} ld_image_transform;
ld_image_transform ld_image_transform_default(void);
/* src [S, S, 3] uint8 -> dst [3, S, S] float. With rng NULL the image is only normalised
 * (evaluation); otherwise pad/crop/flip are drawn from rng (training augmentation). */
void ld_image_to_input(const uint8_t *src, int S, const ld_image_transform *tf, ld_rng *rng, float *dst);
/* n images at once on the ctx's threads: image i gets its own rng stream ld_rng_at(seed, i)
 * (augment false: normalisation only). src [n, S, S, 3] -> dst [n, 3, S, S]. */
void ld_image_batch_to_input(ld_ctx *ctx, const uint8_t *const *src, int64_t n, int S, const ld_image_transform *tf,
                             bool augment, uint64_t seed, float *dst);

/* ---- datasets ----------------------------------------------------------------------- */
typedef enum ld_bad_image_policy { LD_BAD_IMAGE_REJECT = 0, LD_BAD_IMAGE_SKIP = 1 } ld_bad_image_policy;

typedef struct ld_image_set ld_image_set;

typedef struct ld_image_set_params {
    int size;                   /* images are resized / centre-cropped to size x size (default 32) */
    ld_bad_image_policy bad;    /* lists: what a bad image does (default reject) */
    const char *split;          /* emoji_clip: "train", "dev", "test" or NULL for all */
    const char *lang;           /* emoji_clip: captions "zh" (default) or "en" */
} ld_image_set_params;
ld_image_set_params ld_image_set_default_params(void);

/* Opens a dataset: a directory holding index.tsv + images_32x32_rgb.u8 (emoji_clip), or a
 * .tsv / .jsonl list. Errors name the file and line. */
ld_status ld_image_set_open(ld_ctx *ctx, const char *path, const ld_image_set_params *p, ld_image_set **out);
/* The same from a list held in memory (`name` for messages; relative paths against `base_dir`). */
ld_status ld_image_set_parse_list(ld_ctx *ctx, const char *text, size_t len, const char *name, bool jsonl,
                                  const char *base_dir, const ld_image_set_params *p, ld_image_set **out);
void ld_image_set_free(ld_image_set *s);
int64_t ld_image_set_count(const ld_image_set *s);
int ld_image_set_size(const ld_image_set *s);
/* Images skipped under LD_BAD_IMAGE_SKIP. */
int64_t ld_image_set_skipped(const ld_image_set *s);
/* Item i: pixels [size, size, 3], caption, label (NULL when the set has none). */
const uint8_t *ld_image_set_pixels(const ld_image_set *s, int64_t i);
const char *ld_image_set_caption(const ld_image_set *s, int64_t i);
const char *ld_image_set_label(const ld_image_set *s, int64_t i);

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

#ifdef __cplusplus
}
#endif
#endif

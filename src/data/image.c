/* data/image.c — images into the vision tower's input: PNG (libpng) and JPEG (libjpeg-turbo)
 * decoding into 8-bit RGB, resizing, centre crop, training augmentation (padded random crop,
 * flip) and per-channel normalisation, batched on the ctx's threads. */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/team.h"
#include "liandan/image.h"

#ifdef LD_HAVE_PNG
#include <png.h>
#endif
#ifdef LD_HAVE_JPEG
#include <jpeglib.h>
#endif

#define IMAGE_MAX_SIDE 16384

void ld_image_free(ld_ctx *ctx, ld_image *im) {
    if (!im) return;
    ld_free(ctx, im->px);
    im->px = NULL, im->width = im->height = 0;
}

bool ld_image_has_png(void) {
#ifdef LD_HAVE_PNG
    return true;
#else
    return false;
#endif
}
bool ld_image_has_jpeg(void) {
#ifdef LD_HAVE_JPEG
    return true;
#else
    return false;
#endif
}

#if defined(LD_HAVE_PNG) || defined(LD_HAVE_JPEG)
static ld_status check_size(ld_ctx *ctx, const char *name, long w, long h) {
    if (w <= 0 || h <= 0) return ld_error(ctx, LD_ERR_FORMAT, "%s: image has no pixels (%ld x %ld)", name, w, h);
    if (w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE)
        return ld_error(ctx, LD_ERR_LIMIT, "%s: image of %ld x %ld pixels is larger than %d x %d", name, w, h,
                        IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    return LD_OK;
}
#endif

/* ---- PNG --------------------------------------------------------------------------- */

static ld_status decode_png(ld_ctx *ctx, const void *data, size_t len, const char *name, ld_image *out) {
#ifdef LD_HAVE_PNG
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&im, data, len))
        return ld_error(ctx, LD_ERR_FORMAT, "%s: not a readable PNG (%s)", name, im.message);
    ld_status st = check_size(ctx, name, (long)im.width, (long)im.height);
    if (st) {
        png_image_free(&im);
        return st;
    }
    im.format = PNG_FORMAT_RGB; /* alpha is composited on the background below */
    uint8_t *px = ld_alloc(ctx, (size_t)im.width * im.height * 3);
    if (!px) {
        png_image_free(&im);
        return ld_ctx_status(ctx);
    }
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&im, &white, px, 0, NULL)) {
        ld_free(ctx, px);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: corrupt or truncated PNG (%s)", name, im.message);
    }
    out->width = (int)im.width, out->height = (int)im.height, out->px = px;
    return LD_OK;
#else
    (void)data, (void)len, (void)out;
    return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: PNG decoding is not built in (libpng was not found)", name);
#endif
}

ld_status ld_image_save_png(ld_ctx *ctx, const char *path, const uint8_t *px, int width, int height) {
#ifdef LD_HAVE_PNG
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION, im.width = (png_uint_32)width, im.height = (png_uint_32)height;
    im.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&im, path, 0, px, 0, NULL))
        return ld_error(ctx, LD_ERR_IO, "cannot write PNG %s: %s", path, im.message);
    return LD_OK;
#else
    (void)px, (void)width, (void)height;
    return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: PNG writing is not built in (libpng was not found)", path);
#endif
}

/* ---- JPEG -------------------------------------------------------------------------- */

#ifdef LD_HAVE_JPEG
typedef struct jpeg_err {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_err;

static void jpeg_fail(j_common_ptr c) {
    jpeg_err *e = (jpeg_err *)c->err;
    e->mgr.format_message(c, e->msg);
    longjmp(e->jump, 1);
}
static void jpeg_quiet(j_common_ptr c, int level) {
    (void)c, (void)level; /* the library never prints: warnings (e.g. premature end) are not reported */
}
#endif

static ld_status decode_jpeg(ld_ctx *ctx, const void *data, size_t len, const char *name, ld_image *out) {
#ifdef LD_HAVE_JPEG
    struct jpeg_decompress_struct d;
    jpeg_err err;
    uint8_t *volatile px = NULL;
    d.err = jpeg_std_error(&err.mgr);
    err.mgr.error_exit = jpeg_fail;
    err.mgr.emit_message = jpeg_quiet;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&d);
        ld_free(ctx, px);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: corrupt JPEG (%s)", name, err.msg);
    }
    jpeg_create_decompress(&d);
    jpeg_mem_src(&d, (const unsigned char *)data, (unsigned long)len);
    jpeg_read_header(&d, TRUE);
    d.out_color_space = JCS_RGB;
    ld_status st = check_size(ctx, name, (long)d.image_width, (long)d.image_height);
    if (!st) {
        jpeg_start_decompress(&d);
        if (d.output_components != 3)
            st = ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: JPEG with %d output components", name, d.output_components);
        else if (!(px = ld_alloc(ctx, (size_t)d.output_width * d.output_height * 3)))
            st = ld_ctx_status(ctx);
    }
    if (st) {
        jpeg_destroy_decompress(&d);
        return st;
    }
    while (d.output_scanline < d.output_height) {
        JSAMPROW row = px + (size_t)d.output_scanline * d.output_width * 3;
        jpeg_read_scanlines(&d, &row, 1);
    }
    /* a truncated file decodes to grey rows with a warning: count it as corrupt */
    bool truncated = err.mgr.num_warnings > 0;
    out->width = (int)d.output_width, out->height = (int)d.output_height;
    jpeg_finish_decompress(&d);
    jpeg_destroy_decompress(&d);
    if (truncated) {
        ld_free(ctx, px);
        return ld_error(ctx, LD_ERR_FORMAT, "%s: truncated or damaged JPEG", name);
    }
    out->px = px;
    return LD_OK;
#else
    (void)data, (void)len, (void)out;
    return ld_error(ctx, LD_ERR_UNSUPPORTED, "%s: JPEG decoding is not built in (libjpeg was not found)", name);
#endif
}

/* One row per format: signature and decoder. */
static const struct {
    const char *what;
    const uint8_t sig[8];
    size_t sig_len;
    ld_status (*decode)(ld_ctx *, const void *, size_t, const char *, ld_image *);
} decoders[] = {
    {"PNG", {0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a}, 8, decode_png},
    {"JPEG", {0xff, 0xd8, 0xff}, 3, decode_jpeg},
};

ld_status ld_image_decode(ld_ctx *ctx, const void *data, size_t len, const char *name, ld_image *out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_image_decode: NULL out");
    memset(out, 0, sizeof *out);
    if (!name) name = "image";
    if (!data && len) return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: NULL data", name);
    for (size_t i = 0; i < sizeof decoders / sizeof decoders[0]; i++)
        if (len >= decoders[i].sig_len && !memcmp(data, decoders[i].sig, decoders[i].sig_len))
            return decoders[i].decode(ctx, data, len, name, out);
    return ld_error(ctx, LD_ERR_FORMAT, "%s: not a PNG or JPEG image (%zu bytes, unknown signature)", name, len);
}

ld_status ld_image_load(ld_ctx *ctx, const char *path, ld_image *out) {
    if (!path || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_image_load: NULL argument");
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (!f) return ld_error(ctx, LD_ERR_IO, "cannot open image %s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    ld_status st = LD_OK;
    for (;;) {
        if (len == cap) {
            size_t ncap = cap ? 2 * cap : 1 << 16;
            if (ncap > ((size_t)1 << 30)) {
                st = ld_error(ctx, LD_ERR_LIMIT, "image %s is larger than 1 GiB", path);
                break;
            }
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                st = ld_error(ctx, LD_ERR_NOMEM, "reading image %s: out of memory", path);
                break;
            }
            buf = nb, cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) st = ld_error(ctx, LD_ERR_IO, "cannot read image %s", path);
            break;
        }
    }
    fclose(f);
    if (!st) st = ld_image_decode(ctx, buf, len, path, out);
    free(buf);
    return st;
}

/* ---- geometry ---------------------------------------------------------------------- */

/* Box-averages src by integer factors fx, fy: dst [sh / fy, sw / fx, 3]. */
static void box_shrink(const uint8_t *src, int sw, int sh, int fx, int fy, uint8_t *dst) {
    int dw = sw / fx, dh = sh / fy;
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < 3; c++) {
                unsigned s = 0;
                for (int j = 0; j < fy; j++)
                    for (int i = 0; i < fx; i++) s += src[((size_t)(y * fy + j) * sw + x * fx + i) * 3 + c];
                dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)((s + (unsigned)(fx * fy) / 2) / (unsigned)(fx * fy));
            }
}

static void bilinear(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    float sx = (float)sw / (float)dw, sy = (float)sh / (float)dh;
    for (int y = 0; y < dh; y++) {
        float fy = ((float)y + 0.5f) * sy - 0.5f;
        if (fy < 0) fy = 0;
        int y0 = (int)fy, y1 = y0 + 1 < sh ? y0 + 1 : sh - 1;
        float wy = fy - (float)y0;
        for (int x = 0; x < dw; x++) {
            float fx = ((float)x + 0.5f) * sx - 0.5f;
            if (fx < 0) fx = 0;
            int x0 = (int)fx, x1 = x0 + 1 < sw ? x0 + 1 : sw - 1;
            float wx = fx - (float)x0;
            for (int c = 0; c < 3; c++) {
                float a = src[((size_t)y0 * sw + x0) * 3 + c], b = src[((size_t)y0 * sw + x1) * 3 + c];
                float d = src[((size_t)y1 * sw + x0) * 3 + c], e = src[((size_t)y1 * sw + x1) * 3 + c];
                float v = (a + (b - a) * wx) * (1 - wy) + (d + (e - d) * wx) * wy;
                dst[((size_t)y * dw + x) * 3 + c] = (uint8_t)(v + 0.5f);
            }
        }
    }
}

void ld_image_resize(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh) {
    int fx = sw / dw >= 2 ? sw / dw : 1, fy = sh / dh >= 2 ? sh / dh : 1;
    if (fx == 1 && fy == 1) {
        bilinear(src, sw, sh, dst, dw, dh);
        return;
    }
    uint8_t *tmp = malloc((size_t)(sw / fx) * (size_t)(sh / fy) * 3);
    if (!tmp) { /* no memory for the box pass: plain bilinear still gives an image */
        bilinear(src, sw, sh, dst, dw, dh);
        return;
    }
    box_shrink(src, sw, sh, fx, fy, tmp);
    bilinear(tmp, sw / fx, sh / fy, dst, dw, dh);
    free(tmp);
}

void ld_image_resize_center_crop(const uint8_t *src, int sw, int sh, uint8_t *dst, int size) {
    /* scale so the shorter side is `size`, then cut the centre square */
    int rw = sw <= sh ? size : (int)((int64_t)sw * size / sh), rh = sh <= sw ? size : (int)((int64_t)sh * size / sw);
    if (rw < size) rw = size;
    if (rh < size) rh = size;
    uint8_t *tmp = malloc((size_t)rw * (size_t)rh * 3);
    if (!tmp) {
        ld_image_resize(src, sw, sh, dst, size, size); /* squashes rather than fails */
        return;
    }
    ld_image_resize(src, sw, sh, tmp, rw, rh);
    int x0 = (rw - size) / 2, y0 = (rh - size) / 2;
    for (int y = 0; y < size; y++) memcpy(dst + (size_t)y * size * 3, tmp + ((size_t)(y + y0) * rw + x0) * 3, (size_t)size * 3);
    free(tmp);
}

/* ---- the tower's input ------------------------------------------------------------- */

ld_image_transform ld_image_transform_default(void) {
    ld_image_transform t = {.mean = {0.48145466f, 0.4578275f, 0.40821073f},
                            .std = {0.26862954f, 0.26130258f, 0.27577711f}, .pad = 0, .flip = false};
    return t;
}

void ld_image_to_input(const uint8_t *src, int S, const ld_image_transform *tf, ld_rng *rng, float *dst) {
    int dx = 0, dy = 0;
    bool flip = false;
    if (rng && tf->pad > 0) {
        dx = (int)ld_rng_below(rng, (uint64_t)(2 * tf->pad + 1)) - tf->pad;
        dy = (int)ld_rng_below(rng, (uint64_t)(2 * tf->pad + 1)) - tf->pad;
    }
    if (rng && tf->flip) flip = ld_rng_below(rng, 2) == 1;
    float scale[3], shift[3];
    for (int c = 0; c < 3; c++) scale[c] = 1.0f / (255.0f * tf->std[c]), shift[c] = -tf->mean[c] / tf->std[c];
    for (int y = 0; y < S; y++) {
        int sy = y + dy < 0 ? 0 : y + dy >= S ? S - 1 : y + dy; /* edge replicated */
        for (int x = 0; x < S; x++) {
            int xx = flip ? S - 1 - x : x;
            int sx = xx + dx < 0 ? 0 : xx + dx >= S ? S - 1 : xx + dx;
            const uint8_t *p = src + ((size_t)sy * S + sx) * 3;
            for (int c = 0; c < 3; c++) dst[((size_t)c * S + y) * S + x] = (float)p[c] * scale[c] + shift[c];
        }
    }
}

typedef struct {
    const uint8_t *const *src;
    int S;
    const ld_image_transform *tf;
    bool augment;
    uint64_t seed;
    float *dst;
} images_args;

static void images_part(void *arg, int64_t lo, int64_t hi, int piece) {
    (void)piece;
    const images_args *a = arg;
    for (int64_t i = lo; i < hi; i++) {
        ld_rng r = ld_rng_init(ld_rng_at(a->seed, (uint64_t)i));
        ld_image_to_input(a->src[i], a->S, a->tf, a->augment ? &r : NULL, a->dst + (size_t)i * 3 * a->S * a->S);
    }
}

void ld_image_batch_to_input(ld_ctx *ctx, const uint8_t *const *src, int64_t n, int S, const ld_image_transform *tf,
                             bool augment, uint64_t seed, float *dst) {
    LD_TEAM_SCOPE(ctx);
    images_args a = {src, S, tf, augment, seed, dst};
    ld_par_for(n, 4, images_part, &a);
}

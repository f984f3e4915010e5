/* tests/unit/test_image.c — image decoding (PNG, JPEG), resizing and the tower's input
 * transform, image-text datasets (emoji_clip, TSV and JSONL lists) and their bad inputs. */
#include <math.h>

#include "data_test_util.h"
#include "liandan/image.h"

/* One context for the whole binary (freed at exit, so the leak checker sees none). */
static ld_ctx *test_ctx_;
static void test_ctx_free_(void) {
    ld_ctx_free(test_ctx_);
}
static ld_ctx *test_ctx(void) {
    if (!test_ctx_) test_ctx_ = dt_ctx(), atexit(test_ctx_free_);
    return test_ctx_;
}

#ifdef LD_HAVE_JPEG /* (the library's libjpeg: cmake/deps.cmake) */
#include <jpeglib.h>
#define HAVE_JPEG_ENCODER 1
/* A baseline JPEG of px [h, w, 3] at quality 95, written with libjpeg; malloc'd into *out. */
static void jpeg_encode(const uint8_t *px, int w, int h, unsigned char **out, unsigned long *len) {
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    *out = NULL, *len = 0;
    jpeg_mem_dest(&c, out, len);
    c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h, c.input_components = 3, c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 95, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
}
#endif

/* A smooth test pattern [h, w, 3]. */
static uint8_t *pattern(int w, int h) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            p[(y * w + x) * 3 + 0] = (uint8_t)(255 * x / (w - 1));
            p[(y * w + x) * 3 + 1] = (uint8_t)(255 * y / (h - 1));
            p[(y * w + x) * 3 + 2] = 128;
        }
    return p;
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*len + 1);
    if (fread(b, 1, *len, f) != *len) *len = 0;
    fclose(f);
    return b;
}

TEST(png_round_trip) {
    if (!ld_image_has_png()) SKIP("built without libpng");
    ld_ctx *ctx = test_ctx();
    uint8_t *p = pattern(40, 24);
    const char *path = dt_path("p.png");
    CHECK_STATUS(ctx, ld_image_save_png(ctx, path, p, 40, 24), LD_OK, NULL);
    ld_image im;
    CHECK_STATUS(ctx, ld_image_load(ctx, path, &im), LD_OK, NULL);
    CHECK(im.width == 40 && im.height == 24);
    CHECK(im.px && !memcmp(im.px, p, 40 * 24 * 3));
    ld_image_free(ctx, &im);
    free(p);
}

TEST(jpeg_decodes_close) {
#ifdef HAVE_JPEG_ENCODER
    if (!ld_image_has_jpeg()) SKIP("built without libjpeg");
    ld_ctx *ctx = test_ctx();
    uint8_t *p = pattern(48, 32);
    unsigned char *j;
    unsigned long jl;
    jpeg_encode(p, 48, 32, &j, &jl);
    ld_image im;
    CHECK_STATUS(ctx, ld_image_decode(ctx, j, jl, "p.jpg", &im), LD_OK, NULL);
    CHECK(im.width == 48 && im.height == 32);
    double err = 0;
    for (int i = 0; im.px && i < 48 * 32 * 3; i++) err += fabs((double)im.px[i] - p[i]);
    CHECK_MSG(err / (48 * 32 * 3) < 4.0, "mean absolute error %.2f of a quality-95 JPEG", err / (48 * 32 * 3));
    ld_image_free(ctx, &im);
    /* truncated: half the file */
    CHECK_STATUS(ctx, ld_image_decode(ctx, j, jl / 2, "half.jpg", &im), LD_ERR_FORMAT, "half.jpg");
    free(j);
    free(p);
#else
    SKIP("built without libjpeg");
#endif
}

typedef struct decode_case {
    const char *name;
    const char *data;
    size_t len;
    ld_status expect;
    const char *msg;
} decode_case;

TEST(bad_images) {
    ld_ctx *ctx = test_ctx();
    const decode_case cases[] = {
        {"empty.png", "", 0, LD_ERR_FORMAT, "empty.png: not a PNG or JPEG image (0 bytes"},
        {"gif.png", "GIF89a\1\0\1\0", 10, LD_ERR_FORMAT, "gif.png: not a PNG or JPEG"},
        {"sig.png", "\x89PNG\r\n\x1a\n", 8, ld_image_has_png() ? LD_ERR_FORMAT : LD_ERR_UNSUPPORTED, "sig.png"},
        {"sig.jpg", "\xff\xd8\xff\xe0", 4, ld_image_has_jpeg() ? LD_ERR_FORMAT : LD_ERR_UNSUPPORTED, "sig.jpg"},
        {"text.jpg", "hello", 5, LD_ERR_FORMAT, "text.jpg: not a PNG or JPEG"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ld_image im;
        CHECK_STATUS(ctx, ld_image_decode(ctx, cases[i].data, cases[i].len, cases[i].name, &im), cases[i].expect,
                     cases[i].msg);
        CHECK(im.px == NULL);
    }
    if (!ld_image_has_png()) return;
    /* a valid PNG cut short, and one with a flipped byte in its pixel data */
    uint8_t *p = pattern(32, 32);
    const char *path = dt_path("t.png");
    CHECK_STATUS(ctx, ld_image_save_png(ctx, path, p, 32, 32), LD_OK, NULL);
    size_t len = 0;
    uint8_t *png = read_file(path, &len);
    ld_image im;
    CHECK_STATUS(ctx, ld_image_decode(ctx, png, len - 20, "cut.png", &im), LD_ERR_FORMAT, "cut.png: corrupt or truncated PNG");
    png[len - 30] ^= 0x5a; /* inside the IDAT chunk: its CRC no longer matches */
    CHECK_STATUS(ctx, ld_image_decode(ctx, png, len, "flip.png", &im), LD_ERR_FORMAT, "flip.png");
    CHECK_STATUS(ctx, ld_image_load(ctx, dt_path("missing.png"), &im), LD_ERR_IO, "missing.png");
    free(png);
    free(p);
}

TEST(resize_and_input) {
    /* a constant image stays constant through resizing (up, down by 2.5x, box + bilinear) */
    uint8_t src[20 * 20 * 3], dst[8 * 8 * 3], big[50 * 30 * 3];
    memset(src, 77, sizeof src);
    ld_image_resize(src, 20, 20, dst, 8, 8);
    for (size_t i = 0; i < sizeof dst; i++) CHECK(dst[i] == 77);
    ld_image_resize(src, 20, 20, big, 50, 30);
    for (size_t i = 0; i < sizeof big; i++) CHECK(big[i] == 77);
    /* centre crop of a 64 x 32 image whose middle half is white: all white at 16 x 16 */
    uint8_t *wide = calloc(64 * 32 * 3, 1), sq[16 * 16 * 3];
    for (int y = 0; y < 32; y++) memset(wide + (y * 64 + 16) * 3, 255, 32 * 3);
    ld_image_resize_center_crop(wide, 64, 32, sq, 16);
    for (size_t i = 0; i < sizeof sq; i++) CHECK(sq[i] == 255);
    free(wide);
    /* normalisation, then a flip drawn from an rng mirrors the rows */
    uint8_t *p = pattern(8, 8);
    ld_image_transform tf = ld_image_transform_default();
    float a[3 * 64], b[3 * 64];
    ld_image_to_input(p, 8, &tf, NULL, a);
    CHECK_NEAR(a[0], (0 / 255.0 - tf.mean[0]) / tf.std[0], 1e-5);
    CHECK_NEAR(a[64 + 8 * 7], (255 / 255.0 - tf.mean[1]) / tf.std[1], 1e-5); /* G at (y=7, x=0) */
    tf.flip = true;
    int flipped = 0;
    for (uint64_t s = 0; s < 8; s++) {
        ld_rng r = ld_rng_init(s);
        ld_image_to_input(p, 8, &tf, &r, b);
        bool mirror = true, same = !memcmp(a, b, sizeof a);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 8; y++)
                for (int x = 0; x < 8; x++) mirror &= b[(c * 8 + y) * 8 + x] == a[(c * 8 + y) * 8 + 7 - x];
        CHECK(mirror || same);
        flipped += mirror;
    }
    CHECK(flipped > 0 && flipped < 8);
    free(p);
}

TEST(emoji_clip_set) {
    char buf[512];
    if (!ld_test_data("emoji_clip/index.tsv", buf, sizeof buf)) SKIP("no emoji_clip data");
    *strrchr(buf, '/') = 0;
    ld_ctx *ctx = test_ctx();
    ld_image_set_params p = ld_image_set_default_params();
    ld_image_set *s = NULL;
    p.split = "test";
    CHECK_STATUS(ctx, ld_image_set_open(ctx, buf, &p, &s), LD_OK, NULL);
    CHECK(ld_image_set_count(s) == 376 && ld_image_set_size(s) == 32);
    CHECK(ld_image_set_label(s, 0) != NULL);
    ld_image_set_free(s);
    p.split = "train", p.lang = "en";
    CHECK_STATUS(ctx, ld_image_set_open(ctx, buf, &p, &s), LD_OK, NULL);
    CHECK(ld_image_set_count(s) == 2999);
    bool pizza = false;
    for (int64_t i = 0; i < ld_image_set_count(s); i++) pizza |= !strcmp(ld_image_set_caption(s, i), "pizza");
    CHECK(!pizza); /* pizza is in the dev split */
    ld_image_set_free(s);
    p.split = "nosuch";
    CHECK_STATUS(ctx, ld_image_set_open(ctx, buf, &p, &s), LD_ERR_NOT_FOUND, "no image in split 'nosuch'");
    p.split = NULL, p.lang = "fr";
    CHECK_STATUS(ctx, ld_image_set_open(ctx, buf, &p, &s), LD_ERR_INVALID_ARG, "language 'fr'");
}

typedef struct list_case {
    const char *name;
    const char *text;
    ld_bad_image_policy bad;
    ld_status expect;
    const char *msg;
    int64_t n, skipped; /* when it loads */
} list_case;

TEST(image_lists) {
    if (!ld_image_has_png()) SKIP("built without libpng");
    ld_ctx *ctx = test_ctx();
    uint8_t *p = pattern(20, 10);
    CHECK_STATUS(ctx, ld_image_save_png(ctx, dt_path("a.png"), p, 20, 10), LD_OK, NULL);
    dt_write("bad.png", "\x89PNG\r\n\x1a\nxxxx", 12);
    dt_write("notimg.png", "hello", 5);
    free(p);
    static const list_case cases[] = {
        {"ok.tsv", "image\tcaption\tlabel\na.png\t一只猫\tanimal\na.png\tcat\tanimal\n", 0, LD_OK, NULL, 2, 0},
        {"ok.jsonl", "{\"image\":\"a.png\",\"caption\":\"猫\"}\n\n{\"image\":\"a.png\",\"caption\":\"x\",\"label\":\"y\"}\n", 0, LD_OK,
         NULL, 2, 0},
        {"skip.tsv", "a.png\tcat\nbad.png\tdog\nnotimg.png\tfish\nnone.png\tbird\n", LD_BAD_IMAGE_SKIP, LD_OK, NULL, 1, 3},
        {"reject.tsv", "a.png\tcat\nbad.png\tdog\n", LD_BAD_IMAGE_REJECT, LD_ERR_FORMAT, "reject.tsv:2: ", 0, 0},
        {"reject_missing.tsv", "none.png\tbird\n", LD_BAD_IMAGE_REJECT, LD_ERR_IO, "reject_missing.tsv:1: cannot open image", 0, 0},
        {"all_bad.tsv", "bad.png\tdog\n", LD_BAD_IMAGE_SKIP, LD_ERR_NOT_FOUND, "all_bad.tsv: no usable image (1 skipped)", 0, 0},
        {"one_field.tsv", "a.png\n", 0, LD_ERR_FORMAT, "one_field.tsv:1: expected 2 or 3 tab-separated fields", 0, 0},
        {"four.tsv", "a.png\tb\tc\td\n", 0, LD_ERR_FORMAT, "four.tsv:1: expected 2 or 3", 0, 0},
        {"mixed.tsv", "a.png\tb\tc\na.png\tb\n", 0, LD_ERR_FORMAT, "mixed.tsv:2: 2 fields where earlier lines had 3", 0, 0},
        {"empty_cap.tsv", "a.png\t\n", 0, LD_ERR_FORMAT, "empty_cap.tsv:1: empty caption", 0, 0},
        {"empty_path.tsv", "\tcat\n", 0, LD_ERR_FORMAT, "empty_path.tsv:1: empty image path", 0, 0},
        {"empty.tsv", "", 0, LD_ERR_NOT_FOUND, "empty.tsv: no usable image", 0, 0},
        {"array.jsonl", "[1]\n", 0, LD_ERR_FORMAT, "array.jsonl:1: expected a JSON object", 0, 0},
        {"nocap.jsonl", "{\"image\":\"a.png\"}\n", 0, LD_ERR_FORMAT, "nocap.jsonl:1: key 'caption'", 0, 0},
        {"badjson.jsonl", "{\"image\":\"a.png\",\n", 0, LD_ERR_FORMAT, "badjson.jsonl:1", 0, 0},
        {"numcap.jsonl", "{\"image\":\"a.png\",\"caption\":3}\n", 0, LD_ERR_FORMAT, "numcap.jsonl:1: key 'caption'", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const list_case *k = &cases[i];
        ld_image_set_params ip = ld_image_set_default_params();
        ip.bad = k->bad, ip.size = 8;
        ld_image_set *s = NULL;
        const char *path = dt_write(k->name, k->text, strlen(k->text));
        CHECK_STATUS(ctx, ld_image_set_open(ctx, path, &ip, &s), k->expect, k->msg);
        if (k->expect == LD_OK && s) {
            CHECK_MSG(ld_image_set_count(s) == k->n && ld_image_set_skipped(s) == k->skipped, "%s: %lld items, %lld skipped",
                      k->name, (long long)ld_image_set_count(s), (long long)ld_image_set_skipped(s));
            CHECK(ld_image_set_size(s) == 8);
        }
        if (s && !strcmp(k->name, "ok.tsv")) {
            CHECK(!strcmp(ld_image_set_caption(s, 0), "一只猫") && !strcmp(ld_image_set_label(s, 1), "animal"));
        }
        if (k->expect != LD_OK) CHECK(s == NULL);
        ld_image_set_free(s);
    }
}

LD_TEST_MAIN()

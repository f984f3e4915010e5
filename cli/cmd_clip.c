/* cli/cmd_clip.c — the image-text model on the command line: `liandan pretrain` of a config
 * whose model is clip, `liandan embed` of images and texts, `liandan eval retrieval` (R@k
 * against chance and the bag-of-characters baseline), `liandan eval zeroshot` and
 * `liandan classify` (zero-shot labels from prompt templates). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bench.h"
#include "cli.h"

/* ---- pretrain --------------------------------------------------------------------------- */

typedef struct train_ui {
    bool quiet;
    int64_t every;
} train_ui;

static void train_progress(void *user, const ld_clip_train_progress *p) {
    train_ui *ui = user;
    bool val = !isnan(p->val_loss);
    if (ui->quiet && !val && p->step != p->max_steps) return;
    if (!val && p->step % ui->every && p->step != p->max_steps && p->step != 1) return;
    fprintf(stderr, "step %lld/%lld  loss %.4f", (long long)p->step, (long long)p->max_steps, p->loss);
    if (val) fprintf(stderr, "  val %.4f", p->val_loss);
    fprintf(stderr, "  lr %.2e  temperature %.4f  %.0f pairs/s  MFU %.1f%%  batch prep %.1f ms  %.0f s\n", p->lr,
            p->temperature, p->pairs_per_s, 100 * p->mfu, 1e3 * p->data_s, p->elapsed_s);
}

/* mkdir -p */
static int make_dir(const char *path) {
    char buf[1200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(buf, 0755); /* a failure shows up below */
            *p = '/';
        }
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "liandan pretrain: cannot create %s: %s\n", path, strerror(errno));
        return 1;
    }
    return 0;
}

bool ld_cli_is_clip_config(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char *text = NULL;
    size_t len = 0;
    bool yes = !ld_cli_read_all(f, "pretrain", path, &text, &len) && ld_clip_train_config_is_clip(text, len);
    fclose(f);
    free(text);
    return yes;
}

int ld_cli_clip_pretrain(const char *config, const char *out, int64_t max_steps, int threads, bool quiet, bool resume) {
    FILE *f = fopen(config, "rb");
    if (!f) return fprintf(stderr, "liandan pretrain: cannot open %s: %s\n", config, strerror(errno)), 1;
    char *text = NULL;
    size_t len = 0;
    int rc = ld_cli_read_all(f, "pretrain", config, &text, &len);
    fclose(f);
    if (rc) return rc;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_clip_train_config c;
    ld_status st = ld_clip_train_config_parse(ctx, text, len, config, &c);
    free(text);
    if (st) {
        rc = ld_cli_fail(ctx, "reading the config");
        ld_ctx_free(ctx);
        return rc;
    }
    if (out) snprintf(c.out_dir, sizeof c.out_dir, "%s", out);
    if (max_steps > 0) c.max_steps = c.schedule.max_steps = max_steps;
    c.resume = resume;
    if (!threads && c.threads) ld_ctx_set_threads(ctx, c.threads);
    ld_clip_pairs train = {0}, val = {0};
    ld_tokenizer *tok = NULL;
    ld_clip *m = NULL;
    char dir[1100], vocab[1200];
    snprintf(dir, sizeof dir, "%s/model", c.out_dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
    int S = (int)c.model.image_size;
    if (ld_clip_pairs_open(ctx, c.train_data, c.split, c.lang, S, &train)) {
        rc = ld_cli_fail(ctx, "reading the training data");
        goto done;
    }
    const char *vpath = c.val_data[0] ? c.val_data : c.val_split[0] ? c.train_data : NULL;
    if (vpath && ld_clip_pairs_open(ctx, vpath, c.val_split, c.lang, S, &val)) {
        rc = ld_cli_fail(ctx, "reading the validation data");
        goto done;
    }
    if ((rc = make_dir(c.out_dir)) || (rc = make_dir(dir))) goto done;
    /* the character vocabulary of the training captions */
    const char **caps = malloc((size_t)train.n * sizeof *caps);
    int64_t k = 0;
    for (int s = 0; caps && s < train.n_sets; s++)
        for (int64_t i = 0; i < ld_image_set_count(train.sets[s]); i++) caps[k++] = ld_image_set_caption(train.sets[s], i);
    st = caps ? ld_clip_build_vocab(ctx, caps, k, 1, vocab) : LD_ERR_NOMEM;
    free(caps);
    if (st || ld_tokenizer_load_vocab_txt(ctx, vocab, &tok)) {
        rc = ld_cli_fail(ctx, "building the character vocabulary");
        goto done;
    }
    c.model.text.vocab_size = ld_tokenizer_vocab_size(tok);
    if (c.model.layout == LD_CLIP_LAYOUT_HF) { /* captions are [CLS] characters [SEP] [PAD]...: its bos / eos / pad */
        c.model.bos_token_id = ld_tokenizer_token_id(tok, "[CLS]"), c.model.eos_token_id = ld_tokenizer_token_id(tok, "[SEP]");
        c.model.text.pad_token_id = ld_tokenizer_token_id(tok, "[PAD]");
    }
    if (ld_clip_new(ctx, &c.model, c.seed, &m)) {
        rc = ld_cli_fail(ctx, "building the model");
        goto done;
    }
    fprintf(stderr,
            "liandan pretrain: clip, %lld trainable parameters (ViT %lldx%lld patches of %lld, width %lld x %lld layers; "
            "text %lld chars, width %lld x %lld layers; embeddings %lld)\n"
            "  %lld training pairs (%s, %s), %lld validation pairs; batch %lld, %lld steps -> %s\n",
            (long long)ld_params_numel(ld_clip_params(m), true), (long long)(S / c.model.patch_size),
            (long long)(S / c.model.patch_size), (long long)c.model.patch_size, (long long)c.model.vision_width,
            (long long)c.model.vision_layers, (long long)c.model.text.vocab_size, (long long)c.model.text.hidden_size,
            (long long)c.model.text.n_layers, (long long)c.model.embed_dim, (long long)train.n, c.split, c.lang,
            (long long)val.n, (long long)c.batch_size, (long long)c.max_steps, c.out_dir);
    double peak = ld_bench_quick_fma_peak(ld_ctx_threads(ctx)) * 1e9;
    train_ui ui = {.quiet = quiet, .every = c.max_steps >= 200 ? 20 : 5};
    st = ld_clip_train(m, tok, &c, &train, val.n ? &val : NULL, peak, train_progress, &ui, NULL);
    if (st) {
        rc = ld_cli_fail(ctx, "training");
        goto done;
    }
    if (ld_clip_save(m, tok, dir)) {
        rc = ld_cli_fail(ctx, "saving the model");
        goto done;
    }
    fprintf(stderr, "liandan pretrain: model -> %s\n  liandan eval retrieval %s --data %s\n", dir, dir, c.train_data);
done:
    ld_clip_free(m);
    ld_tokenizer_free(tok);
    ld_clip_pairs_free(&train);
    ld_clip_pairs_free(&val);
    ld_ctx_free(ctx);
    return rc;
}

/* ---- embed ------------------------------------------------------------------------------ */

static int load_model(ld_ctx *ctx, const char *dir, ld_clip **m, ld_tokenizer **tok) {
    if (ld_clip_load(ctx, dir, m, tok)) return ld_cli_fail(ctx, "loading the model");
    return 0;
}

/* Decodes and centre-crops each file to the model's image size: imgs[n] malloc'd. */
static int load_images(ld_ctx *ctx, const ld_clip *m, const char *const *files, int n, uint8_t ***out) {
    int S = (int)ld_clip_config_of(m)->image_size;
    uint8_t **imgs = calloc((size_t)(n ? n : 1), sizeof *imgs);
    if (!imgs) return fprintf(stderr, "liandan: out of memory\n"), 1;
    *out = imgs;
    for (int i = 0; i < n; i++) {
        ld_image im;
        if (ld_image_load(ctx, files[i], &im)) return ld_cli_fail(ctx, "reading an image");
        imgs[i] = malloc((size_t)S * S * 3);
        if (imgs[i]) ld_image_resize_center_crop(im.px, im.width, im.height, imgs[i], S);
        ld_image_free(ctx, &im);
        if (!imgs[i]) return fprintf(stderr, "liandan: out of memory\n"), 1;
    }
    return 0;
}

static void free_images(uint8_t **imgs, int n) {
    for (int i = 0; imgs && i < n; i++) free(imgs[i]);
    free(imgs);
}

static void print_json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

int ld_cli_clip_embed(const char *dir, const ld_cli_list *images, const ld_cli_list *texts, const char *npy, int threads) {
    if (images->n + texts->n == 0) return fprintf(stderr, "liandan embed: give --image FILE or --text TEXT (or both)\n"), 2;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_clip *m = NULL;
    ld_tokenizer *tok = NULL;
    uint8_t **imgs = NULL;
    float *out = NULL;
    int rc = load_model(ctx, dir, &m, &tok);
    int64_t E = m ? ld_clip_config_of(m)->embed_dim : 0, n = images->n + texts->n;
    if (!rc) rc = load_images(ctx, m, images->v, images->n, &imgs);
    if (!rc && !(out = malloc((size_t)(n * E) * sizeof *out))) rc = fprintf(stderr, "liandan embed: out of memory\n") > 0;
    if (!rc && images->n && ld_clip_embed_images(m, (const uint8_t *const *)imgs, images->n, out))
        rc = ld_cli_fail(ctx, "embedding the images");
    if (!rc && texts->n && ld_clip_embed_texts(m, tok, (const char *const *)texts->v, texts->n, out + images->n * E))
        rc = ld_cli_fail(ctx, "embedding the texts");
    if (!rc && npy) {
        rc = ld_cli_write_npy(ctx, npy, out, n, E);
        if (!rc)
            fprintf(stderr, "liandan embed: %lld embeddings of %lld values (images first, then texts) -> %s\n",
                    (long long)n, (long long)E, npy);
    }
    for (int64_t i = 0; !rc && !npy && i < n; i++) {
        bool img = i < images->n;
        printf("{\"index\": %lld, \"%s\": ", (long long)i, img ? "image" : "text");
        print_json_string(img ? images->v[i] : texts->v[i - images->n]);
        printf(", \"embedding\": [");
        for (int64_t j = 0; j < E; j++) printf(j ? ", %.7g" : "%.7g", (double)out[i * E + j]);
        printf("]}\n");
    }
    free(out);
    free_images(imgs, images->n);
    ld_tokenizer_free(tok);
    ld_clip_free(m);
    ld_ctx_free(ctx);
    return rc;
}

/* ---- eval retrieval --------------------------------------------------------------------- */

/* group[i]: the index of the first pair with caption i's text. */
static int64_t *caption_groups(const ld_clip_pairs *p, const char ***caps_out) {
    const char **caps = malloc((size_t)p->n * sizeof *caps);
    int64_t *g = malloc((size_t)p->n * sizeof *g);
    if (!caps || !g) return free(caps), free(g), NULL;
    int64_t k = 0;
    for (int s = 0; s < p->n_sets; s++)
        for (int64_t i = 0; i < ld_image_set_count(p->sets[s]); i++) caps[k++] = ld_image_set_caption(p->sets[s], i);
    for (int64_t i = 0; i < p->n; i++) {
        g[i] = i;
        for (int64_t j = 0; j < i; j++)
            if (!strcmp(caps[j], caps[i])) {
                g[i] = g[j];
                break;
            }
    }
    *caps_out = caps;
    return g;
}

static const uint8_t **pair_pixels(const ld_clip_pairs *p) {
    const uint8_t **px = malloc((size_t)p->n * sizeof *px);
    int64_t k = 0;
    for (int s = 0; px && s < p->n_sets; s++)
        for (int64_t i = 0; i < ld_image_set_count(p->sets[s]); i++) px[k++] = ld_image_set_pixels(p->sets[s], i);
    return px;
}

static void print_row(const char *what, const ld_retrieval_result *r) {
    printf("%-26s %6.3f %6.3f %6.3f   %6.3f %6.3f %6.3f\n", what, r->t2i[0], r->t2i[1], r->t2i[2], r->i2t[0], r->i2t[1],
           r->i2t[2]);
}

int ld_cli_eval_retrieval(int argc, char **argv) {
    const char *data = NULL, *split = "test", *train_split = "train", *lang = "zh";
    double ridge = 10;
    int threads = 0;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("data", 'd', &data, "DIR|LIST", "emoji_clip directory or a TSV / JSONL image-caption list"),
        LD_CLI_STRING("split", 0, &split, "NAME", "emoji_clip split to evaluate (default test)"),
        LD_CLI_STRING("train-split", 0, &train_split, "NAME", "split the bag-of-characters baseline is fit on (default train)"),
        LD_CLI_STRING("lang", 0, &lang, "zh|en|both", "caption language (default zh)"),
        LD_CLI_DOUBLE("ridge", 0, &ridge, 0, 1e9, false, "X", "the baseline's ridge penalty (default 10)"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {.cmd = "eval retrieval", .args = "MODEL_DIR", .opts = opts, .pos = &pos, .min_pos = 1,
                              .max_pos = 1,
                              .about = "Text->image and image->text recall at 1, 5 and 10 of an image-text (clip) model\n"
                                       "on one split, next to chance and a bag-of-characters baseline."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    if (!data) return fprintf(stderr, "liandan eval retrieval: --data is required\n"), ld_cli_parse_free(&spec), 2;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_clip *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_clip_pairs test = {0}, train = {0};
    const char **caps = NULL;
    const uint8_t **px = NULL;
    int64_t *group = NULL;
    float *img = NULL, *txt = NULL, *bimg = NULL, *btxt = NULL;
    rc = load_model(ctx, pos.v[0], &m, &tok);
    int S = m ? (int)ld_clip_config_of(m)->image_size : 0;
    if (!rc && ld_clip_pairs_open(ctx, data, split, lang, S, &test)) rc = ld_cli_fail(ctx, "reading the data");
    int64_t n = test.n, E = m ? ld_clip_config_of(m)->embed_dim : 0, D = 0;
    if (!rc) {
        group = caption_groups(&test, &caps), px = pair_pixels(&test);
        img = malloc((size_t)(n * E) * sizeof *img), txt = malloc((size_t)(n * E) * sizeof *txt);
        if (!group || !px || !img || !txt) rc = fprintf(stderr, "liandan eval retrieval: out of memory\n") > 0;
    }
    double t0 = ld_time_now();
    if (!rc && (ld_clip_embed_images(m, px, n, img) || ld_clip_embed_texts(m, tok, caps, n, txt)))
        rc = ld_cli_fail(ctx, "embedding");
    double t_embed = ld_time_now() - t0;
    ld_retrieval_result r, b, *br = NULL;
    if (!rc && ld_retrieval_eval(ctx, img, txt, group, n, E, &r)) rc = ld_cli_fail(ctx, "scoring");
    /* the baseline, fit on the training split of the same data (emoji_clip directories only) */
    struct stat sb;
    if (!rc && stat(data, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if (ld_clip_pairs_open(ctx, data, train_split, lang, S, &train) ||
            ld_retrieval_boc_baseline(ctx, &train, &test, ridge, &bimg, &btxt, &D) ||
            ld_retrieval_eval(ctx, bimg, btxt, group, n, D, &b))
            rc = ld_cli_fail(ctx, "the bag-of-characters baseline");
        else br = &b;
    }
    if (!rc) {
        printf("%s split '%s', %s captions: %lld images, %lld distinct captions (embedding took %.2f s)\n", data, split,
               lang, (long long)r.n_images, (long long)r.n_texts, t_embed);
        printf("%-26s %6s %6s %6s   %6s %6s %6s\n", "", "t2i@1", "@5", "@10", "i2t@1", "@5", "@10");
        ld_retrieval_result ch = r;
        memcpy(ch.t2i, r.t2i_chance, sizeof ch.t2i), memcpy(ch.i2t, r.i2t_chance, sizeof ch.i2t);
        print_row("chance", &ch);
        if (br) {
            char what[64];
            snprintf(what, sizeof what, "bag of characters (%s)", train_split);
            print_row(what, br);
        }
        print_row("model", &r);
    }
    free(img), free(txt), free(bimg), free(btxt), free(group), free(caps), free(px);
    ld_clip_pairs_free(&test), ld_clip_pairs_free(&train);
    ld_tokenizer_free(tok);
    ld_clip_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

/* ---- zero-shot classification ------------------------------------------------------------ */

/* emoji_clip's categories (emoji-datasource's English names) and their Chinese prompts. */
static const char *const emoji_categories[][2] = {
    {"Smileys & Emotion", "笑脸和情感"}, {"People & Body", "人物和身体"}, {"Component", "组件"},
    {"Animals & Nature", "动物和自然"},  {"Food & Drink", "食物和饮料"},  {"Travel & Places", "旅行和地点"},
    {"Activities", "活动"},              {"Objects", "物品"},             {"Symbols", "符号"},
    {"Flags", "旗帜"},
};
#define N_EMOJI_CATEGORIES ((int)(sizeof emoji_categories / sizeof emoji_categories[0]))

/* prompt = template with "{}" replaced by the label (malloc'd). */
static char *fill_template(const char *tmpl, const char *label) {
    const char *at = strstr(tmpl, "{}");
    size_t n = strlen(tmpl) + strlen(label) + 1;
    char *s = malloc(n);
    if (!s) return NULL;
    if (!at) snprintf(s, n, "%s", label);
    else snprintf(s, n, "%.*s%s%s", (int)(at - tmpl), tmpl, label, at + 2);
    return s;
}

int ld_cli_eval_zeroshot(int argc, char **argv) {
    const char *data = NULL, *split = "test", *lang = "zh", *tmpl = "{}";
    int threads = 0;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("data", 'd', &data, "DIR", "the emoji_clip directory"),
        LD_CLI_STRING("split", 0, &split, "NAME", "split to classify (default test)"),
        LD_CLI_STRING("lang", 0, &lang, "zh|en", "language of the category prompts (default zh)"),
        LD_CLI_STRING("template", 0, &tmpl, "TEXT", "prompt template, {} is the label (default \"{}\")"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {.cmd = "eval zeroshot", .args = "MODEL_DIR", .opts = opts, .pos = &pos, .min_pos = 1,
                              .max_pos = 1,
                              .about = "Zero-shot category accuracy of an image-text model on emoji_clip: each image gets\n"
                                       "the category whose prompt embeds closest; next to chance and the majority class."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    if (!data) return fprintf(stderr, "liandan eval zeroshot: --data is required\n"), ld_cli_parse_free(&spec), 2;
    bool zh = !strcmp(lang, "zh");
    if (!zh && strcmp(lang, "en"))
        return fprintf(stderr, "liandan eval zeroshot: --lang must be zh or en\n"), ld_cli_parse_free(&spec), 2;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_clip *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_clip_pairs test = {0};
    const uint8_t **px = NULL;
    int64_t *pred = NULL;
    char *prompts[N_EMOJI_CATEGORIES] = {0};
    rc = load_model(ctx, pos.v[0], &m, &tok);
    if (!rc && ld_clip_pairs_open(ctx, data, split, "en", (int)ld_clip_config_of(m)->image_size, &test))
        rc = ld_cli_fail(ctx, "reading the data");
    for (int l = 0; !rc && l < N_EMOJI_CATEGORIES; l++)
        if (!(prompts[l] = fill_template(tmpl, emoji_categories[l][zh]))) rc = 1;
    int64_t n = test.n, correct = 0, counts[N_EMOJI_CATEGORIES] = {0}, unknown = 0;
    if (!rc && (!(px = pair_pixels(&test)) || !(pred = malloc((size_t)n * sizeof *pred))))
        rc = fprintf(stderr, "liandan eval zeroshot: out of memory\n") > 0;
    if (!rc && ld_clip_zero_shot(m, tok, (const char *const *)prompts, N_EMOJI_CATEGORIES, px, n, pred, NULL))
        rc = ld_cli_fail(ctx, "classifying");
    for (int64_t i = 0; !rc && i < n; i++) {
        const char *label = ld_image_set_label(test.sets[0], i);
        int truth = -1;
        for (int l = 0; l < N_EMOJI_CATEGORIES && label; l++)
            if (!strcmp(label, emoji_categories[l][0])) truth = l;
        if (truth < 0) {
            unknown++;
            continue;
        }
        counts[truth]++;
        correct += pred[i] == truth;
    }
    if (!rc) {
        int64_t major = 0, scored = n - unknown;
        int maj = 0;
        for (int l = 0; l < N_EMOJI_CATEGORIES; l++)
            if (counts[l] > major) major = counts[l], maj = l;
        printf("%s split '%s': %lld images, %d categories, %s prompts \"%s\"\n", data, split, (long long)scored,
               N_EMOJI_CATEGORIES, lang, tmpl);
        printf("  chance (uniform)          %.4f\n", 1.0 / N_EMOJI_CATEGORIES);
        printf("  majority (%s)   %.4f\n", emoji_categories[maj][0], (double)major / (double)(scored ? scored : 1));
        printf("  zero-shot accuracy        %.4f\n", (double)correct / (double)(scored ? scored : 1));
    }
    for (int l = 0; l < N_EMOJI_CATEGORIES; l++) free(prompts[l]);
    free(px), free(pred);
    ld_clip_pairs_free(&test);
    ld_tokenizer_free(tok);
    ld_clip_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

/* ---- classify --------------------------------------------------------------------------- */

static int cmd_classify(int argc, char **argv) {
    const char *labels_file = NULL, *tmpl = "{}";
    int threads = 0;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("labels", 'l', &labels_file, "FILE", "label names, one a line (required)"),
        LD_CLI_STRING("template", 0, &tmpl, "TEXT", "prompt template, {} is the label (default \"{}\")"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {.cmd = "classify", .args = "MODEL_DIR IMAGE...", .opts = opts, .pos = &pos, .min_pos = 2,
                              .max_pos = 1 << 20,
                              .about = "Zero-shot classification with an image-text (clip) model: each image (PNG or JPEG)\n"
                                       "gets the label whose prompt embeds closest. Prints one JSON object per image."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    if (!labels_file) return fprintf(stderr, "liandan classify: --labels FILE is required\n"), ld_cli_parse_free(&spec), 2;
    FILE *f = fopen(labels_file, "rb");
    if (!f) {
        fprintf(stderr, "liandan classify: cannot open %s: %s\n", labels_file, strerror(errno));
        return ld_cli_parse_free(&spec), 1;
    }
    char *text = NULL;
    size_t len = 0;
    rc = ld_cli_read_all(f, "classify", labels_file, &text, &len);
    fclose(f);
    if (rc) return ld_cli_parse_free(&spec), rc;
    /* one label a line; blank lines skipped */
    char **labels = NULL, **prompts = NULL;
    int64_t nl = 0;
    for (char *p = text, *e; !rc && p < text + len; p = e + 1) {
        e = memchr(p, '\n', (size_t)(text + len - p));
        if (!e) e = text + len;
        *e = 0;
        if (e > p && e[-1] == '\r') e[-1] = 0;
        if (!*p) continue;
        char **nlab = realloc(labels, (size_t)(nl + 1) * sizeof *labels);
        if (!nlab) rc = 1;
        else labels = nlab, labels[nl++] = p;
    }
    if (!rc && nl == 0) rc = fprintf(stderr, "liandan classify: %s has no labels\n", labels_file) > 0 ? 2 : 2;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_clip *m = NULL;
    ld_tokenizer *tok = NULL;
    uint8_t **imgs = NULL;
    int n = pos.n - 1;
    int64_t *pred = malloc((size_t)(n ? n : 1) * sizeof *pred);
    float *score = malloc((size_t)(n ? n : 1) * sizeof *score);
    prompts = calloc((size_t)(nl ? nl : 1), sizeof *prompts);
    if (!rc && (!pred || !score || !prompts)) rc = fprintf(stderr, "liandan classify: out of memory\n") > 0;
    for (int64_t l = 0; !rc && l < nl; l++)
        if (!(prompts[l] = fill_template(tmpl, labels[l]))) rc = 1;
    if (!rc) rc = load_model(ctx, pos.v[0], &m, &tok);
    if (!rc) rc = load_images(ctx, m, pos.v + 1, n, &imgs);
    if (!rc && ld_clip_zero_shot(m, tok, (const char *const *)prompts, nl, (const uint8_t *const *)imgs, n, pred, score))
        rc = ld_cli_fail(ctx, "classifying");
    for (int i = 0; !rc && i < n; i++) {
        printf("{\"image\": ");
        print_json_string(pos.v[1 + i]);
        printf(", \"label\": ");
        print_json_string(labels[pred[i]]);
        printf(", \"cosine\": %.5f}\n", (double)score[i]);
    }
    for (int64_t l = 0; prompts && l < nl; l++) free(prompts[l]);
    free(prompts), free(labels), free(text), free(pred), free(score);
    free_images(imgs, n);
    ld_tokenizer_free(tok);
    ld_clip_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_classify = {"classify", "zero-shot image classification with an image-text model",
                                        cmd_classify};

/* ---- index and search ------------------------------------------------------------------- */

static int cmd_index(int argc, char **argv) {
    const char *out = NULL, *data = NULL, *split = "test", *lang = "zh";
    int threads = 0;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_STRING("output", 'o', &out, "INDEX", "the index file to write (required)"),
        LD_CLI_STRING("data", 'd', &data, "DIR|LIST", "index an image-text set instead of IMAGE files (names = captions)"),
        LD_CLI_STRING("split", 0, &split, "NAME", "with --data: the emoji_clip split (default test)"),
        LD_CLI_STRING("lang", 0, &lang, "zh|en", "with --data: caption language of the names (default zh)"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {.cmd = "index", .args = "MODEL_DIR [IMAGE...]", .opts = opts, .pos = &pos, .min_pos = 1,
                              .max_pos = 1 << 20,
                              .about = "Embeds images (PNG / JPEG files, or a --data set) with an image-text model into an\n"
                                       "index file for `liandan search`."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    if (!out || ((pos.n > 1) == (data != NULL))) {
        fprintf(stderr, "liandan index: give -o INDEX and either IMAGE files or --data\n");
        return ld_cli_parse_free(&spec), 2;
    }
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_clip *m = NULL;
    ld_tokenizer *tok = NULL;
    ld_clip_pairs set = {0};
    uint8_t **imgs = NULL;
    const uint8_t **px = NULL;
    const char **names = NULL, **caps = NULL;
    int64_t *groups = NULL, n = data ? 0 : pos.n - 1;
    float *emb = NULL;
    rc = load_model(ctx, pos.v[0], &m, &tok);
    if (!rc && data) {
        if (ld_clip_pairs_open(ctx, data, split, lang, (int)ld_clip_config_of(m)->image_size, &set))
            rc = ld_cli_fail(ctx, "reading the data");
        else if (!(px = pair_pixels(&set)) || !(groups = caption_groups(&set, &caps))) rc = 1;
        n = set.n, names = caps;
    } else if (!rc) {
        rc = load_images(ctx, m, pos.v + 1, (int)n, &imgs);
        px = (const uint8_t **)imgs, names = pos.v + 1;
    }
    int64_t E = m ? ld_clip_config_of(m)->embed_dim : 0;
    if (!rc && !(emb = malloc((size_t)(n * E + 1) * sizeof *emb))) rc = 1;
    if (!rc && ld_clip_embed_images(m, px, n, emb)) rc = ld_cli_fail(ctx, "embedding");
    char abs_model[4096];
    if (!rc && !realpath(pos.v[0], abs_model)) snprintf(abs_model, sizeof abs_model, "%s", pos.v[0]);
    if (!rc && ld_clip_index_write(ctx, out, abs_model, emb, n, E, names)) rc = ld_cli_fail(ctx, "writing the index");
    if (!rc) fprintf(stderr, "liandan index: %lld images x %lld dims -> %s\n", (long long)n, (long long)E, out);
    free(emb), free(groups), free(caps);
    if (!data) free_images(imgs, (int)n);
    else free(px);
    ld_clip_pairs_free(&set);
    ld_tokenizer_free(tok);
    ld_clip_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_index = {"index", "embed images into a search index (image-text model)", cmd_index};

static int cmd_search(int argc, char **argv) {
    int64_t k = 5;
    const char *model = NULL;
    int threads = 0;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_INT64("top", 'k', &k, 1, 1 << 20, "K", "how many results per query (default 5)"),
        LD_CLI_STRING("model", 'm', &model, "DIR", "the model directory (default: the one the index names)"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {.cmd = "search", .args = "INDEX QUERY...", .opts = opts, .pos = &pos, .min_pos = 2,
                              .max_pos = 1 << 20,
                              .about = "Text -> image search: the images of an index closest (cosine) to each query text.\n"
                                       "Prints one JSON object per query with the top results and the search time."};
    int rc;
    if (!ld_cli_parse(&spec, argc, argv, &rc)) return ld_cli_parse_free(&spec), rc;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_clip_index *ix = NULL;
    ld_clip *m = NULL;
    ld_tokenizer *tok = NULL;
    rc = ld_clip_index_open(ctx, pos.v[0], &ix) ? ld_cli_fail(ctx, "reading the index") : 0;
    if (!rc) rc = load_model(ctx, model ? model : ld_clip_index_model(ix), &m, &tok);
    int64_t E = m ? ld_clip_config_of(m)->embed_dim : 0, nq = pos.n - 1;
    if (!rc && E != ld_clip_index_dim(ix)) {
        fprintf(stderr, "liandan search: the index holds %lld-dimensional embeddings, the model makes %lld\n",
                (long long)ld_clip_index_dim(ix), (long long)E);
        rc = 1;
    }
    float *q = malloc((size_t)(nq * E + 1) * sizeof *q), *scores = malloc((size_t)k * sizeof *scores);
    int64_t *ids = malloc((size_t)k * sizeof *ids);
    if (!rc && (!q || !scores || !ids)) rc = fprintf(stderr, "liandan search: out of memory\n") > 0;
    if (!rc && ld_clip_embed_texts(m, tok, (const char *const *)pos.v + 1, nq, q)) rc = ld_cli_fail(ctx, "embedding");
    for (int64_t i = 0; !rc && i < nq; i++) {
        int64_t found = 0;
        double t0 = ld_time_now();
        if (ld_clip_index_search(ix, q + i * E, k, ids, scores, &found)) {
            rc = ld_cli_fail(ctx, "searching");
            break;
        }
        double ms = 1e3 * (ld_time_now() - t0);
        printf("{\"query\": ");
        print_json_string(pos.v[1 + i]);
        printf(", \"search_ms\": %.3f, \"results\": [", ms);
        for (int64_t j = 0; j < found; j++) {
            printf(j ? ", {\"name\": " : "{\"name\": ");
            print_json_string(ld_clip_index_name(ix, ids[j]));
            printf(", \"cosine\": %.5f}", (double)scores[j]);
        }
        printf("]}\n");
    }
    free(q), free(scores), free(ids);
    ld_clip_index_free(ix);
    ld_tokenizer_free(tok);
    ld_clip_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_search = {"search", "text -> image search over an index (image-text model)", cmd_search};

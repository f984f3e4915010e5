/* bench/bench_clip.c — `liandan bench clip`: the image-text model's training step (forward
 * of both towers, the symmetric InfoNCE loss, backward, AdamW) as pairs/s and MFU against the
 * fp32 FMA peak measured in the same run (FLOPs: ld_clip_train_flops_per_pair), at two shapes:
 * configs/clip_emoji.json's (32 x 32 images in patches of 8, towers of width 64 x 2 layers,
 * batch 64, captions of 12 tokens) and transformers' CLIPModel ViT-B/32 (224 x 224 in patches
 * of 32, 12 x 768 vision, 12 x 512 causal text, batch 8, captions of 16 tokens); the image
 * pipeline alone (PNG decode, padded random crop, flip, normalisation) as images/s and its
 * ratio to each step's; and a text -> image query over 376 embeddings (the emoji test split's
 * size): embedding the query text and the brute-force top-10, milliseconds per query. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "liandan/clip.h"
#include "liandan/clip_eval.h"
#include "liandan/liandan.h"

typedef struct clip_run {
    ld_clip *m;
    ld_tape *tape;
    ld_adamw *opt;
    float *px;
    int32_t *ids, *lens;
    int64_t B, T;
    ld_status st;
} clip_run;

static void train_step(void *arg) {
    clip_run *r = arg;
    if (r->st) return;
    ld_params_zero_grad(ld_clip_params(r->m));
    ld_tape_reset(r->tape);
    ld_tensor *loss = NULL;
    r->st = ld_clip_loss(r->m, r->tape, r->px, r->ids, r->lens, r->B, r->T, &loss);
    if (!r->st) r->st = ld_tape_backward(r->tape, loss);
    if (!r->st) r->st = ld_adamw_step(r->opt, 1e-4f, 1.0f, NULL);
}

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Medians of the wall and the process CPU seconds of one fn(arg), after one warm-up: on a
 * shared machine the CPU time of a 1-thread run is what the step costs. */
static void median_wall_cpu(void (*fn)(void *), void *arg, int reps, double *wall, double *cpu) {
    double w[64], c[64];
    if (reps > 64) reps = 64;
    fn(arg);
    for (int i = 0; i < reps; i++) {
        double w0 = ld_time_now(), c0 = cpu_now();
        fn(arg);
        w[i] = ld_time_now() - w0, c[i] = cpu_now() - c0;
    }
    qsort(w, (size_t)reps, sizeof w[0], cmp_double), qsort(c, (size_t)reps, sizeof c[0], cmp_double);
    *wall = reps % 2 ? w[reps / 2] : 0.5 * (w[reps / 2 - 1] + w[reps / 2]);
    *cpu = reps % 2 ? c[reps / 2] : 0.5 * (c[reps / 2 - 1] + c[reps / 2]);
}

/* The fp32 FMA peak of one thread per second of its CPU time (best of 7 trials of the
 * limits' own loop): what a core does when it runs, however busy the machine. GFLOP/s. */
static double fma_peak_cpu(void) {
    const ld_bench_loops *L = ld_bench_loops_get();
    if (!L->fma) return 0;
    double best = 0;
    L->fma(1000000);
    for (int i = 0; i < 7; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        L->fma(2000000);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        if (s > 0 && 2000000.0 * L->fma_per_iter / s > best) best = 2000000.0 * L->fma_per_iter / s;
    }
    return best * 1e-9;
}

/* configs/clip_emoji.json's model (the BERT-text layout liandan trains on emoji_clip). */
static ld_clip_config emoji_shape(void) {
    ld_clip_config c = ld_clip_default_config();
    c.image_size = 32, c.patch_size = 8, c.vision_width = 64, c.vision_layers = 2, c.vision_heads = 4, c.vision_mlp = 256;
    c.text.vocab_size = 1361, c.text.hidden_size = 64, c.text.n_layers = 2, c.text.n_heads = 4;
    c.text.intermediate_size = 256, c.text.max_position = 24;
    c.embed_dim = 64;
    return c;
}

static void free_run(clip_run *r) {
    free(r->px), free(r->ids), free(r->lens);
    ld_adamw_free(r->opt);
    ld_tape_free(r->tape);
    ld_clip_free(r->m);
}

static ld_status setup(ld_ctx *ctx, const ld_clip_config *c, int64_t B, int64_t T, clip_run *r) {
    memset(r, 0, sizeof *r);
    r->B = B, r->T = T;
    ld_status st;
    if ((st = ld_clip_new(ctx, c, 1, &r->m)) || (st = ld_tape_new(ctx, &r->tape)) ||
        (st = ld_adamw_new(ld_clip_params(r->m), NULL, &r->opt)))
        return st;
    int64_t S = c->image_size;
    r->px = malloc((size_t)(B * 3 * S * S) * sizeof(float));
    r->ids = malloc((size_t)(B * T) * sizeof(int32_t));
    r->lens = malloc((size_t)B * sizeof(int32_t));
    if (!r->px || !r->ids || !r->lens) return LD_ERR_NOMEM;
    ld_rng rng = ld_rng_init(3);
    for (int64_t i = 0; i < B * 3 * S * S; i++) r->px[i] = ld_rng_normal(&rng);
    bool hf = c->layout == LD_CLIP_LAYOUT_HF;
    for (int64_t b = 0; b < B; b++) {
        r->lens[b] = (int32_t)T;
        for (int64_t t = 0; t < T; t++) r->ids[b * T + t] = (int32_t)(5 + ld_rng_below(&rng, (uint64_t)(c->text.vocab_size - 5)));
        r->ids[b * T] = hf ? c->bos_token_id : 2;
        if (hf) r->ids[b * T + T - 1] = c->eos_token_id;
    }
    return LD_OK;
}

/* The training-step rows; returns pairs per CPU-second (0 when it failed). */
static double bench_step(ld_ctx *ctx, const char *label, const ld_clip_config *c, int64_t B, int64_t T,
                         const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    clip_run r;
    ld_status st = setup(ctx, c, B, T, &r);
    double img_s = 0;
    if (!st) {
        train_step(&r); /* warm-up beyond the median's: arenas settle */
        double s, cpu;
        median_wall_cpu(train_step, &r, o->reps < 3 ? 3 : o->reps, &s, &cpu);
        st = r.st;
        if (!st) {
            img_s = (double)B / cpu;
            double flops = ld_clip_train_flops_per_pair(c, T) * (double)B / s, step_flops = ld_clip_train_flops_per_pair(c, T) * (double)B;
            char name[128];
            snprintf(name, sizeof name, "%s train step B=%lld T=%lld pairs/s", label, (long long)B, (long long)T);
            ld_bench_report_row(rep, "clip", name, (double)B / s, "pairs/s", -1, NULL);
            snprintf(name, sizeof name, "%s train step B=%lld fp32 MFU", label, (long long)B);
            ld_bench_report_row(rep, "clip", name, flops * 1e-9, "GFLOP/s", flops * 1e-9 / lim->fma_f32_gflops,
                                "fp32 FMA peak");
            /* per CPU-second: the step's FLOPs over its CPU time (all threads), against one
             * thread's peak per CPU-second: on a busy machine the ratio that stays put */
            double peak_cpu = fma_peak_cpu();
            snprintf(name, sizeof name, "%s train step B=%lld fp32 MFU per CPU-second", label, (long long)B);
            ld_bench_report_row(rep, "clip", name, step_flops / cpu * 1e-9, "GFLOP/cpu-s",
                                peak_cpu > 0 ? step_flops / cpu * 1e-9 / peak_cpu : -1, "FMA peak per CPU-s");
        }
    }
    if (st) {
        fprintf(stderr, "liandan bench clip: %s: %s\n", label, ld_ctx_error(ctx));
        rep->failures++;
    }
    free_run(&r);
    return img_s;
}

typedef struct pipe_run {
    ld_ctx *ctx;
    bool decode; /* PNG decode every image first (else the pixels are already decoded) */
    const uint8_t *png;
    size_t png_len;
    int S;
    int64_t n;
    uint8_t **imgs;
    float *out;
    uint64_t seed;
    ld_status st;
} pipe_run;

/* n images: PNG decode (when p->decode), then the training transform (pad-2 random crop,
 * flip, normalise) on the ctx's threads. */
static void pipeline(void *arg) {
    pipe_run *p = arg;
    for (int64_t i = 0; p->decode && i < p->n && !p->st; i++) {
        ld_image im = {0};
        if ((p->st = ld_image_decode(p->ctx, p->png, p->png_len, "bench.png", &im))) break;
        memcpy(p->imgs[i], im.px, (size_t)p->S * (size_t)p->S * 3);
        ld_image_free(p->ctx, &im);
    }
    ld_image_transform tf = ld_image_transform_default();
    tf.pad = 2, tf.flip = true;
    if (!p->st) ld_image_batch_to_input(p->ctx, (const uint8_t *const *)p->imgs, p->n, p->S, &tf, true, p->seed++, p->out);
}

/* Images per CPU-second of the pipeline alone at S x S, with or without a PNG decode of
 * every image (0 when PNG is not built in or it failed). Training decodes a list's images
 * once when it opens it (emoji_clip's are raw pixels), so a step's share is the transform. */
static double bench_pipeline(ld_ctx *ctx, int S, bool decode, const ld_bench_opts *o, ld_bench_report *rep) {
    if (!ld_image_has_png()) {
        fprintf(stderr, "liandan bench clip: built without libpng: no pipeline row\n");
        return 0;
    }
    pipe_run p = {.ctx = ctx, .S = S, .n = 64, .decode = decode};
    char path[] = "/tmp/liandan_bench_clip_XXXXXX";
    int fd = mkstemp(path);
    uint8_t *src = malloc((size_t)S * (size_t)S * 3);
    p.imgs = calloc((size_t)p.n, sizeof *p.imgs);
    p.out = malloc((size_t)p.n * 3 * (size_t)S * (size_t)S * sizeof(float));
    double img_s = 0;
    char *bytes = NULL;
    if (fd < 0 || !src || !p.imgs || !p.out) p.st = LD_ERR_NOMEM;
    if (fd >= 0) close(fd);
    for (int64_t i = 0; !p.st && i < p.n; i++)
        if (!(p.imgs[i] = malloc((size_t)S * (size_t)S * 3))) p.st = LD_ERR_NOMEM;
    ld_rng rng = ld_rng_init(9);
    for (int i = 0; src && i < S * S * 3; i++) src[i] = (uint8_t)((i * 7 + (int)ld_rng_below(&rng, 32)) & 255);
    if (!p.st) p.st = ld_image_save_png(ctx, path, src, S, S);
    if (!p.st) p.st = ld_file_read(ctx, path, 1 << 26, &bytes, &p.png_len);
    p.png = (const uint8_t *)bytes;
    if (!p.st) {
        p.decode = true;
        pipeline(&p); /* the decoded pixels, for the transform alone */
        p.decode = decode;
        double s, cpu;
        median_wall_cpu(pipeline, &p, o->reps < 5 ? 5 : o->reps, &s, &cpu);
        if (!p.st) {
            img_s = (double)p.n / cpu;
            char name[96];
            snprintf(name, sizeof name, "image pipeline %dx%d %s images/s", S, S, decode ? "PNG decode + augment" : "augment");
            ld_bench_report_row(rep, "clip", name, (double)p.n / s, "img/s", -1, NULL);
            snprintf(name, sizeof name, "image pipeline %dx%d %s per CPU-second", S, S, decode ? "PNG decode + augment" : "augment");
            ld_bench_report_row(rep, "clip", name, img_s, "img/cpu-s", -1, NULL);
        }
    }
    if (p.st) {
        fprintf(stderr, "liandan bench clip: pipeline: %s\n", ld_ctx_error(ctx));
        rep->failures++;
    }
    unlink(path);
    for (int64_t i = 0; p.imgs && i < p.n; i++) free(p.imgs[i]);
    free(p.imgs), free(p.out), free(src);
    ld_free(ctx, bytes);
    return img_s;
}

typedef struct query_run {
    ld_clip *m;
    ld_tape *tape;
    const ld_clip_index *ix;
    int32_t ids[12], len;
    ld_status st;
} query_run;

/* One text -> image query: embed a 12-token caption, then the top 10 of the index. */
static void query(void *arg) {
    query_run *q = arg;
    if (q->st) return;
    ld_tape_reset(q->tape);
    ld_tensor *e = NULL;
    int64_t ids[10], found;
    float sc[10];
    q->st = ld_clip_text_embed(q->m, q->tape, q->ids, &q->len, 1, 12, &e);
    if (!q->st) q->st = ld_clip_index_search(q->ix, e->data, 10, ids, sc, &found);
}

static void bench_search(ld_ctx *ctx, const ld_bench_opts *o, ld_bench_report *rep) {
    ld_clip_config c = emoji_shape();
    query_run q = {.len = 12};
    enum { N = 376, E = 64 };
    float *emb = malloc((size_t)N * E * sizeof(float));
    const char **names = malloc(N * sizeof *names);
    char path[] = "/tmp/liandan_bench_index_XXXXXX";
    int fd = mkstemp(path);
    ld_clip_index *ix = NULL;
    ld_status st = emb && names && fd >= 0 ? LD_OK : LD_ERR_NOMEM;
    if (fd >= 0) close(fd);
    ld_rng rng = ld_rng_init(5);
    for (int64_t i = 0; !st && i < (int64_t)N * E; i++) emb[i] = ld_rng_normal(&rng) * 0.125f;
    for (int i = 0; !st && i < N; i++) names[i] = "image.png";
    if (!st) st = ld_clip_index_write(ctx, path, "/bench/model", emb, N, E, names);
    if (!st) st = ld_clip_index_open(ctx, path, &ix);
    if (!st) st = ld_clip_new(ctx, &c, 1, &q.m);
    if (!st) st = ld_tape_new(ctx, &q.tape);
    if (!st) {
        ld_tape_set_grad_enabled(q.tape, false);
        q.ix = ix;
        for (int t = 0; t < 12; t++) q.ids[t] = 5 + t * 13;
        q.ids[0] = 2, q.ids[11] = 3;
        query(&q);
        double s = ld_bench_median(query, &q, o->reps < 9 ? 9 : o->reps);
        if (!(st = q.st))
            ld_bench_report_row(rep, "clip", "search 376 images (emoji shape): embed text + top-10, ms/query", s * 1e3,
                                "ms", s * 1e3 / 10.0, "10 ms target");
    }
    if (st) {
        fprintf(stderr, "liandan bench clip: search: %s\n", ld_ctx_error(ctx));
        rep->failures++;
    }
    unlink(path);
    ld_clip_index_free(ix);
    ld_tape_free(q.tape);
    ld_clip_free(q.m);
    free(emb), free(names);
}

void ld_bench_clip(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&cp, &ctx)) return;
    bool all = !o->filter;
    double emoji = 0, b32 = 0, aug32 = 0, dec32 = 0, aug224 = 0, dec224 = 0;
    ld_clip_config e = emoji_shape(), h = ld_clip_hf_config();
    if (all || strstr("emoji", o->filter)) emoji = bench_step(ctx, "emoji shape", &e, 64, 12, o, lim, rep);
    if (all || strstr("b32", o->filter)) b32 = bench_step(ctx, "ViT-B/32 shape", &h, 8, 16, o, lim, rep);
    if (all || strstr("pipeline", o->filter)) {
        aug32 = bench_pipeline(ctx, 32, false, o, rep), dec32 = bench_pipeline(ctx, 32, true, o, rep);
        aug224 = bench_pipeline(ctx, 224, false, o, rep), dec224 = bench_pipeline(ctx, 224, true, o, rep);
    }
    /* per CPU-second on both sides: what each costs, however busy the machine */
    struct {
        const char *name;
        double pipe, step;
    } ratios[] = {{"pipeline 32x32 augment / emoji-shape step, per CPU-s", aug32, emoji},
                  {"pipeline 32x32 decode + augment / emoji-shape step, per CPU-s", dec32, emoji},
                  {"pipeline 224x224 augment / ViT-B/32 step, per CPU-s", aug224, b32},
                  {"pipeline 224x224 decode + augment / ViT-B/32 step, per CPU-s", dec224, b32}};
    for (size_t i = 0; i < sizeof ratios / sizeof ratios[0]; i++)
        if (ratios[i].pipe > 0 && ratios[i].step > 0)
            ld_bench_report_row(rep, "clip", ratios[i].name, ratios[i].pipe / ratios[i].step, "x", -1, NULL);
    if (all || strstr("search", o->filter)) bench_search(ctx, o, rep);
    ld_ctx_free(ctx);
}

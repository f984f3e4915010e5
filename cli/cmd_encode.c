/* cli/cmd_encode.c — the encoder commands: `liandan embed` (pooled embeddings of texts or of
 * a corpus file, as JSON lines or a .npy array) and `liandan fill-mask` (the most likely
 * tokens at each [MASK] / <mask>). The library does the work (liandan/encoder.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const pooling_names[] = {"cls", "mean", NULL}; /* ld_pooling order */

/* Writes data[n, c] as a little-endian float32 .npy file (format version 1.0), atomically: a
 * failure leaves no half file (and an earlier file under the name stays). */
int ld_cli_write_npy(ld_ctx *ctx, const char *path, const float *data, int64_t n, int64_t c) {
    char head[192];
    int hl = snprintf(head + 10, sizeof head - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                      (long long)n, (long long)c);
    int total = 10 + hl + 1, pad = (64 - total % 64) % 64;
    unsigned short len = (unsigned short)(hl + pad + 1);
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (char)(len & 0xff), head[9] = (char)(len >> 8);
    memset(head + 10 + hl, ' ', (size_t)pad);
    head[10 + hl + pad] = '\n';
    ld_atomic_file *f = NULL;
    if (ld_atomic_file_open(ctx, path, &f) || ld_atomic_file_write(f, head, (size_t)total + (size_t)pad) ||
        ld_atomic_file_write(f, data, (size_t)(n * c) * sizeof(float))) {
        ld_atomic_file_abort(f);
        return ld_cli_fail(ctx, "embed");
    }
    return ld_atomic_file_commit(f) ? ld_cli_fail(ctx, "embed") : 0;
}

/* Every document of a corpus file as an input row. */
static int encode_file(ld_ctx *ctx, ld_encoder *m, const ld_tokenizer *tok, const char *path, int32_t ***seqs,
                       int64_t **lens, int64_t *n) {
    ld_corpus_params cp = ld_corpus_default_params();
    size_t pl = strlen(path);
    cp.protein = (pl > 3 && !strcmp(path + pl - 3, ".fa")) || (pl > 6 && !strcmp(path + pl - 6, ".fasta")) ||
                 (pl > 4 && !strcmp(path + pl - 4, ".faa"));
    ld_corpus *c;
    if (ld_corpus_open(ctx, path, &cp, &c)) return ld_cli_fail(ctx, "reading the inputs");
    const char *doc;
    size_t len;
    int64_t cap = 0;
    ld_status st;
    while ((st = ld_corpus_next(c, &doc, &len)) == LD_OK) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 256;
            int32_t **ns = realloc(*seqs, (size_t)cap * sizeof **seqs);
            if (ns) *seqs = ns;
            int64_t *nl = ns ? realloc(*lens, (size_t)cap * sizeof **lens) : NULL;
            if (!nl) {
                ld_corpus_close(c);
                return fprintf(stderr, "liandan: out of memory\n"), 1;
            }
            *lens = nl;
        }
        if (ld_encoder_encode_text(m, tok, doc, len, &(*seqs)[*n], &(*lens)[*n])) break;
        (*n)++;
    }
    ld_corpus_close(c);
    if (st != LD_ERR_NOT_FOUND) return ld_cli_fail(ctx, "reading the inputs");
    return 0;
}

static int cmd_embed(int argc, char **argv) {
    const char *file = NULL, *npy = NULL;
    int threads = 0, pooling = LD_POOL_MEAN;
    bool normalize = false;
    ld_cli_list pos = {0}, texts = {0}, images = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_LIST("text", 't', &texts, "TEXT", "an input text (repeatable)"),
        LD_CLI_LIST("image", 'i', &images, "FILE", "an input image, PNG or JPEG (repeatable; image-text models)"),
        LD_CLI_STRING("file", 'f', &file, "FILE",
                      "one input per document: .txt lines, .tsv last column, .jsonl \"text\",\n"
                      "FASTA records (read as proteins)"),
        LD_CLI_ENUM("pooling", 0, &pooling, pooling_names, "the [CLS] position or the mean over the tokens"),
        LD_CLI_FLAG("normalize", 0, &normalize, "L2-normalise each embedding"),
        LD_CLI_STRING("output", 'o', &npy, "OUT.npy", "write a float32 array [n, hidden] (NumPy .npy) instead of JSON"),
        {.name = "npy", .type = LD_CLI_T_STRING, .dest.s = &npy}, /* the first spelling */
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "embed", .args = "MODEL_DIR", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Pooled embeddings of an encoder model (BERT, ESM) for --text inputs or the documents of --file;\n"
                 "of an image-text (clip) model, L2-normalised, for --image files and --text inputs.\n"
                 "Without -o one JSON object per input is printed: {\"index\": i, \"tokens\": n, \"embedding\": [...]}."};
    int rc0;
    if (!ld_cli_parse(&spec, argc, argv, &rc0)) return ld_cli_parse_free(&spec), rc0;
    if (ld_clip_dir_sniff(pos.v[0])) {
        if (file) {
            fprintf(stderr, "liandan embed: an image-text model takes --image and --text, not --file\n");
            return ld_cli_parse_free(&spec), 2;
        }
        rc0 = ld_cli_clip_embed(pos.v[0], &images, &texts, npy, threads);
        return ld_cli_parse_free(&spec), rc0;
    }
    if (images.n) {
        fprintf(stderr, "liandan embed: --image needs an image-text (clip) model; %s is not one\n", pos.v[0]);
        return ld_cli_parse_free(&spec), 2;
    }
    if ((file != NULL) == (texts.n > 0)) {
        fprintf(stderr, "liandan embed: give --text (one or more) or --file\n");
        return ld_cli_parse_free(&spec), 2;
    }
    const char *dir = pos.v[0];
    int n_texts = texts.n;
    ld_pooling pool = (ld_pooling)pooling;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_encoder *m = NULL;
    ld_tokenizer *tok = NULL;
    if (ld_encoder_open(ctx, dir, &m, &tok)) {
        rc0 = ld_cli_fail(ctx, "loading the model");
        ld_ctx_free(ctx);
        return ld_cli_parse_free(&spec), rc0;
    }
    int32_t **seqs = NULL;
    int64_t *lens = NULL, n = 0;
    int rc = 0;
    if (file) rc = encode_file(ctx, m, tok, file, &seqs, &lens, &n);
    else {
        seqs = calloc((size_t)n_texts, sizeof *seqs), lens = calloc((size_t)n_texts, sizeof *lens);
        if (!seqs || !lens) rc = fprintf(stderr, "liandan embed: out of memory\n") > 0;
        for (; n < n_texts && !rc; n++)
            if (ld_encoder_encode_text(m, tok, texts.v[n], strlen(texts.v[n]), &seqs[n], &lens[n]))
                rc = ld_cli_fail(ctx, "encoding the text");
    }
    int64_t C = ld_encoder_config_of(m)->hidden_size;
    float *out = rc ? NULL : malloc((size_t)((n ? n : 1) * C) * sizeof(float));
    if (!rc && !out) rc = fprintf(stderr, "liandan embed: out of memory\n") > 0;
    if (!rc && ld_encoder_embed(m, (const int32_t *const *)seqs, lens, n, pool, normalize, out))
        rc = ld_cli_fail(ctx, "computing embeddings");
    if (!rc && npy) rc = ld_cli_write_npy(ctx, npy, out, n, C);
    for (int64_t i = 0; !rc && !npy && i < n; i++) {
        printf("{\"index\": %lld, \"tokens\": %lld, \"embedding\": [", (long long)i, (long long)lens[i]);
        for (int64_t j = 0; j < C; j++) printf(j ? ", %.7g" : "%.7g", (double)out[i * C + j]);
        printf("]}\n");
    }
    if (!rc && npy) fprintf(stderr, "liandan embed: %lld embeddings of %lld values (%s pooling) -> %s\n", (long long)n,
                            (long long)C, ld_pooling_name(pool), npy);
    for (int64_t i = 0; i < n; i++) ld_free(ctx, seqs[i]);
    free(seqs), free(lens), free(out);
    ld_tokenizer_free(tok);
    ld_encoder_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_embed = {"embed", "pooled embeddings of an encoder (BERT, ESM)", cmd_embed};

static int cmd_fill_mask(int argc, char **argv) {
    int threads = 0;
    int64_t k = 5;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        LD_CLI_INT64("top", 'k', &k, 1, 1000, "K", "candidates per mask"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "fill-mask", .args = "MODEL_DIR TEXT", .opts = opts, .pos = &pos, .min_pos = 2, .max_pos = 2,
        .about = "Prints, for each mask token in TEXT ([MASK] for BERT, <mask> for ESM), the K most likely tokens\n"
                 "with their probabilities."};
    int rc0;
    if (!ld_cli_parse(&spec, argc, argv, &rc0)) return ld_cli_parse_free(&spec), rc0;
    const char *dir = pos.v[0], *text = pos.v[1];
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_encoder *m = NULL;
    ld_tokenizer *tok = NULL;
    if (ld_encoder_open(ctx, dir, &m, &tok)) {
        rc0 = ld_cli_fail(ctx, "loading the model");
        ld_ctx_free(ctx);
        return ld_cli_parse_free(&spec), rc0;
    }
    int32_t *ids = NULL;
    int64_t n = 0, n_masks = 0;
    ld_mlm_specials sp;
    int rc = 0;
    if (ld_mlm_specials_of(ctx, tok, &sp) || ld_encoder_encode_text(m, tok, text, strlen(text), &ids, &n))
        rc = ld_cli_fail(ctx, "encoding the text");
    int64_t *where = rc ? NULL : malloc((size_t)n * sizeof *where);
    int32_t *top = rc ? NULL : malloc((size_t)(n * k) * sizeof *top);
    float *prob = rc ? NULL : malloc((size_t)(n * k) * sizeof *prob);
    if (!rc && (!where || !top || !prob)) rc = fprintf(stderr, "liandan fill-mask: out of memory\n") > 0;
    if (!rc && ld_encoder_fill_mask(m, ids, n, sp.mask, (int)k, n, &n_masks, where, top, prob))
        rc = ld_cli_fail(ctx, "fill-mask");
    for (int64_t j = 0; !rc && j < n_masks; j++) {
        printf("mask %lld (token %lld):\n", (long long)j + 1, (long long)where[j]);
        for (int64_t r = 0; r < k; r++) {
            const char *b = "";
            size_t bl = 0;
            ld_tokenizer_token_bytes(tok, top[j * k + r], &b, &bl);
            printf("  %.4f  %.*s\n", (double)prob[j * k + r], (int)bl, b);
        }
    }
    ld_free(ctx, ids);
    free(where), free(top), free(prob);
    ld_tokenizer_free(tok);
    ld_encoder_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

const ld_cli_command ld_cmd_fill_mask = {"fill-mask", "the most likely tokens at [MASK] positions (encoders)",
                                         cmd_fill_mask};

static bool is_fasta(const char *p) {
    size_t l = strlen(p);
    return (l > 3 && !strcmp(p + l - 3, ".fa")) || (l > 6 && !strcmp(p + l - 6, ".fasta")) ||
           (l > 4 && !strcmp(p + l - 4, ".faa"));
}

int ld_cli_eval_mlm(int argc, char **argv) {
    const char *data = NULL, *train = NULL;
    int threads = 0;
    int64_t T = 0, B = 16, max_docs = 0;
    uint64_t seed = 1;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        {.name = "data", .type = LD_CLI_T_STRING, .dest.s = &data, .arg = "FILE", .required = true,
         .help = "held-out sequences (FASTA records are read as proteins; .txt/.tsv/.jsonl)"},
        LD_CLI_STRING("train", 0, &train, "FILE", "the training data, for the unigram baseline (default: --data)"),
        {.name = "seq-len", .type = LD_CLI_T_INT64, .dest.i64 = &T, .min = 3, .max = 1 << 20, .arg = "N",
         .def = "min(max_position, 512)", .help = "row length, specials included"},
        LD_CLI_INT64("batch", 'b', &B, 1, 4096, "N", "sequences per batch"),
        {.name = "max-docs", .type = LD_CLI_T_INT64, .dest.i64 = &max_docs, .min = 0, .max = 1LL << 40, .arg = "N",
         .def = "all", .help = "evaluate at most N sequences"},
        LD_CLI_UINT64("seed", 0, &seed, "N", "masking seed"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "eval mlm", .args = "MODEL_DIR", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Masked-LM quality on held-out sequences: 15 % of the tokens of each sequence masked (80/10/10,\n"
                 "the same masks every run), the model's cross-entropy and accuracy at those positions, and the\n"
                 "unigram baseline's (the token shares of --train, else of --data; its accuracy is that of always\n"
                 "guessing the most frequent token)."};
    int rc0;
    if (!ld_cli_parse(&spec, argc, argv, &rc0)) return ld_cli_parse_free(&spec), rc0;
    const char *dir = pos.v[0];
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_encoder *m = NULL;
    ld_tokenizer *tok = NULL;
    if (ld_encoder_open(ctx, dir, &m, &tok)) {
        rc0 = ld_cli_fail(ctx, "loading the model");
        ld_ctx_free(ctx);
        return ld_cli_parse_free(&spec), rc0;
    }
    int64_t V = ld_encoder_config_of(m)->vocab_size, maxp = ld_encoder_config_of(m)->max_position;
    if (!T) T = maxp < 512 ? maxp : 512;
    ld_mlm_params p = ld_mlm_default_params();
    p.eval = true, p.seed = (uint64_t)seed, p.max_docs = max_docs;
    p.corpus.protein = is_fasta(data);
    ld_mlm_source *src = NULL, *tr = NULL;
    double *freq = calloc((size_t)V, sizeof *freq);
    ld_mlm_eval e;
    int rc = 0;
    double t0 = ld_time_now();
    if (!freq) rc = fprintf(stderr, "liandan eval mlm: out of memory\n") > 0;
    else if (ld_mlm_source_open(ctx, &data, 1, tok, T, &p, &src)) rc = ld_cli_fail(ctx, "reading the held-out data");
    if (!rc && train) {
        ld_mlm_params tp = p;
        tp.max_docs = 0, tp.corpus.protein = is_fasta(train);
        if (ld_mlm_source_open(ctx, &train, 1, tok, T, &tp, &tr)) rc = ld_cli_fail(ctx, "reading the training data");
    }
    if (!rc) ld_mlm_source_unigram(tr ? tr : src, V, freq);
    if (!rc && ld_encoder_mlm_eval(m, src, B, 0, freq, &e)) rc = ld_cli_fail(ctx, "evaluating");
    if (!rc) {
        printf("sequences           %lld (%lld tokens), %lld predicted positions\n", (long long)ld_mlm_source_docs(src),
               (long long)ld_mlm_source_tokens(src), (long long)e.predicted);
        printf("model    loss %.4f  accuracy %.4f  perplexity %.3f\n", e.loss, e.accuracy, exp(e.loss));
        printf("unigram  loss %.4f  accuracy %.4f  perplexity %.3f   (shares of %s)\n", e.unigram_loss,
               e.unigram_accuracy, exp(e.unigram_loss), train ? train : data);
        printf("{\"loss\": %.6f, \"accuracy\": %.6f, \"unigram_loss\": %.6f, \"unigram_accuracy\": %.6f, "
               "\"predicted\": %lld, \"seconds\": %.1f}\n",
               e.loss, e.accuracy, e.unigram_loss, e.unigram_accuracy, (long long)e.predicted, ld_time_now() - t0);
    }
    free(freq);
    ld_mlm_source_free(src), ld_mlm_source_free(tr);
    ld_tokenizer_free(tok);
    ld_encoder_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

static const char *const task_names[] = {"deeploc", "deeploc-membrane", "ss3", NULL}; /* ld_protein_task order */

/* --layers: "last", "all" or comma-separated layer numbers 0..L -> ld_encoder_embed_layers' bits. */
static bool parse_layers(const char *s, int64_t L, uint64_t *out, char *why, size_t cap) {
    *out = 0;
    if (L > 62) return snprintf(why, cap, "--layers: a model of %lld layers is more than this option reads", (long long)L), false;
    if (!strcmp(s, "last")) return *out = (uint64_t)1 << L, true;
    if (!strcmp(s, "all")) return *out = ((uint64_t)1 << (L + 1)) - 1, true;
    for (const char *p = s;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > L || (*end && *end != ',')) {
            snprintf(why, cap, "--layers '%s': want last, all or layer numbers 0..%lld separated by commas", s, (long long)L);
            return false;
        }
        *out |= (uint64_t)1 << v;
        if (!*end) return true;
        p = end + 1;
    }
}

int ld_cli_eval_probe(int argc, char **argv) {
    const char *data = NULL, *layers_arg = "last";
    int threads = 0, task_i = 0, pooling = LD_POOL_MEAN, iters = 300;
    int64_t max_train = -1, max_test = 0, max_len = 512;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        {.name = "task", .type = LD_CLI_T_ENUM, .dest.i = &task_i, .choices = task_names, .required = true,
         .help = "deeploc (10 locations), deeploc-membrane (M/S), ss3 (per residue)"},
        {.name = "data", .type = LD_CLI_T_STRING, .dest.s = &data, .arg = "FILE.tsv", .required = true,
         .help = "shared/data/protein: deeploc/deeploc_subset.tsv or flip_secondary_structure/ss3_sampled.tsv"},
        {.name = "max-train", .type = LD_CLI_T_INT64, .dest.i64 = &max_train, .min = 1, .max = 1LL << 40, .arg = "N",
         .def = "all; ss3 500", .help = "training sequences"},
        {.name = "max-test", .type = LD_CLI_T_INT64, .dest.i64 = &max_test, .min = 0, .max = 1LL << 40, .arg = "N",
         .def = "all", .help = "test sequences"},
        LD_CLI_INT64("max-len", 0, &max_len, 3, 1 << 20, "N", "tokens per sequence, specials included"),
        LD_CLI_ENUM("pooling", 0, &pooling, pooling_names, "sequence tasks: how residues become one vector"),
        LD_CLI_INT("iters", 0, &iters, 1, 100000, "N", "Adam steps of the regression"),
        {.name = "layers", .type = LD_CLI_T_STRING, .dest.s = &layers_arg, .arg = "LIST", .def = "last",
         .help = "the model's features: last (final hidden states), all, or layer numbers (0 = embeddings, 1..L "
                 "after each block) read side by side, e.g. 0,3"},
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "eval probe", .args = "[MODEL_DIR]", .opts = opts, .pos = &pos, .min_pos = 0, .max_pos = 1,
        .about = "Linear probe of a frozen protein encoder: a softmax regression trained on the model's features\n"
                 "(pooled per sequence, or per residue for ss3) and tested on the held-out split, next to the same\n"
                 "regression on amino-acid composition (deeploc) or one-hot residues (ss3) and the majority class.\n"
                 "Without MODEL_DIR only the baselines run."};
    int rc0;
    if (!ld_cli_parse(&spec, argc, argv, &rc0)) return ld_cli_parse_free(&spec), rc0;
    const char *dir = pos.n ? pos.v[0] : NULL, *task_name = task_names[task_i];
    ld_protein_task task = (ld_protein_task)task_i;
    ld_pooling pool = (ld_pooling)pooling;
    ld_probe_task_params p = ld_probe_task_default_params(task);
    if (max_train >= 0) p.max_train = max_train;
    p.max_test = max_test, p.max_len = max_len, p.pooling = pool, p.fit.iters = iters;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_encoder *m = NULL;
    ld_tokenizer *tok = NULL;
    if (dir && ld_encoder_open(ctx, dir, &m, &tok)) {
        rc0 = ld_cli_fail(ctx, "loading the model");
        ld_ctx_free(ctx);
        return ld_cli_parse_free(&spec), rc0;
    }
    if (m && p.max_len > ld_encoder_config_of(m)->max_position) p.max_len = ld_encoder_config_of(m)->max_position;
    char why[256];
    if (m && !parse_layers(layers_arg, ld_encoder_config_of(m)->n_layers, &p.layers, why, sizeof why)) {
        fprintf(stderr, "liandan eval probe: %s\n", why);
        ld_encoder_free(m), ld_tokenizer_free(tok), ld_ctx_free(ctx);
        return ld_cli_parse_free(&spec), 2;
    }
    ld_probe_report r;
    int rc = 0;
    fprintf(stderr, "liandan eval probe: %s on %s%s...\n", task_name, data, m ? " (baselines and the model)" : " (baselines)");
    if (ld_protein_probe(ctx, m, tok, data, &p, &r)) rc = ld_cli_fail(ctx, "probe");
    else {
        const char *unit = task == LD_PROBE_SS3 ? "residues" : "sequences";
        printf("%s: %lld training and %lld test %s, %lld classes\n", task_name, (long long)r.n_train, (long long)r.n_test,
               unit, (long long)r.n_classes);
        printf("  majority class          %.4f\n", r.majority);
        printf("  %-24s%.4f\n", r.baseline_name, r.baseline);
        if (m) printf("  model (%s%s, layers %s)  %.4f\n", task == LD_PROBE_SS3 ? "per residue" : ld_pooling_name(pool),
                      task == LD_PROBE_SS3 ? "" : " pooled", layers_arg, r.model);
        printf("{\"task\": \"%s\", \"train\": %lld, \"test\": %lld, \"majority\": %.6f, \"baseline\": %.6f, \"model\": %.6f, "
               "\"layers\": \"%s\", \"seconds\": %.1f}\n",
               task_name, (long long)r.n_train, (long long)r.n_test, r.majority, r.baseline, m ? r.model : -1.0,
               m ? layers_arg : "", r.seconds);
    }
    ld_tokenizer_free(tok);
    ld_encoder_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

static void classify_step(void *user, int64_t step, int64_t steps, double loss) {
    ld_cli_bar *bar = user;
    char phase[64];
    snprintf(phase, sizeof phase, "fine-tuning, loss %.4f", loss);
    ld_cli_progress(bar, phase, (double)step, (double)steps, "steps", 1);
}

int ld_cli_eval_classify(int argc, char **argv) {
    ld_classify_ft_params p = ld_classify_ft_default_params();
    int threads = 0, pooling = LD_POOL_CLS;
    ld_cli_list pos = {0};
    const ld_cli_opt opts[] = {
        {.name = "train", .type = LD_CLI_T_STRING, .dest.s = &p.train_path, .arg = "FILE", .required = true,
         .help = "training examples: a .tsv with a header or .jsonl (e.g. zh_eval/chnsenticorp/train.tsv)"},
        {.name = "test", .type = LD_CLI_T_STRING, .dest.s = &p.test_path, .arg = "FILE", .required = true,
         .help = "the examples scored after fine-tuning (the same format)"},
        LD_CLI_STRING("text-field", 0, &p.text_field, "NAME", "the text column / key"),
        LD_CLI_STRING("label-field", 0, &p.label_field, "NAME", "the label column / key"),
        {.name = "max-train", .type = LD_CLI_T_INT64, .dest.i64 = &p.max_train, .min = 0, .max = 1LL << 40, .arg = "N",
         .def = "all", .help = "training examples read (the first N)"},
        {.name = "max-test", .type = LD_CLI_T_INT64, .dest.i64 = &p.max_test, .min = 0, .max = 1LL << 40, .arg = "N",
         .def = "all", .help = "test examples read (the first N)"},
        LD_CLI_INT64("seq-len", 0, &p.seq_len, 3, 1 << 20, "N", "tokens per row, [CLS] and [SEP] included"),
        LD_CLI_INT64("batch-size", 0, &p.batch_size, 1, 1 << 16, "N", "rows per step"),
        LD_CLI_INT("epochs", 0, &p.epochs, 1, 1000, "N", "passes over the training examples"),
        LD_CLI_FLOAT("lr", 0, &p.lr, 0, 10, LD_CLI_OPEN_MIN, "LR", "peak learning rate (linear warmup, then linear decay to 0)"),
        LD_CLI_FLOAT("weight-decay", 0, &p.weight_decay, 0, 10, 0, "W", "AdamW weight decay"),
        LD_CLI_FLOAT("warmup", 0, &p.warmup_share, 0, 0.99, 0, "SHARE", "share of the steps spent warming up"),
        LD_CLI_ENUM("pooling", 0, &pooling, pooling_names, "how a row becomes one vector for the head"),
        LD_CLI_UINT64("seed", 0, &p.seed, "N", "shuffling and the head's initialisation"),
        LD_CLI_THREADS(&threads),
        LD_CLI_END,
    };
    const ld_cli_spec spec = {
        .cmd = "eval classify", .args = "MODEL_DIR", .opts = opts, .pos = &pos, .min_pos = 1, .max_pos = 1,
        .about = "Fine-tunes an encoder for sequence classification (BERT's recipe: [CLS] text [SEP], the pooled\n"
                 "state through a new linear head, every weight trained by AdamW) on --train, then prints the\n"
                 "accuracy and macro-F1 on --test next to the majority class. The model on disk is not changed."};
    int rc0;
    if (!ld_cli_parse(&spec, argc, argv, &rc0)) return ld_cli_parse_free(&spec), rc0;
    p.pooling = (ld_pooling)pooling;
    ld_ctx *ctx = ld_cli_ctx(threads);
    ld_encoder *m = NULL;
    ld_tokenizer *tok = NULL;
    if (ld_encoder_open(ctx, pos.v[0], &m, &tok)) {
        rc0 = ld_cli_fail(ctx, "loading the model");
        ld_ctx_free(ctx);
        return ld_cli_parse_free(&spec), rc0;
    }
    ld_cli_bar bar = {0};
    p.on_step = classify_step, p.user = &bar;
    ld_classify_ft_report r;
    int rc = 0;
    if (ld_encoder_classify_finetune(m, tok, &p, &r)) rc = ld_cli_fail(ctx, "fine-tuning");
    else {
        printf("%lld training and %lld test examples, %lld labels, %lld steps (%lld examples cut to %lld tokens)\n",
               (long long)r.n_train, (long long)r.n_test, (long long)r.n_labels, (long long)r.steps,
               (long long)r.truncated, (long long)p.seq_len);
        printf("  majority class   %.4f\n  fine-tuned       %.4f (macro-F1 %.4f)\n", r.majority, r.accuracy, r.macro_f1);
        printf("{\"train\": %lld, \"test\": %lld, \"steps\": %lld, \"final_loss\": %.6f, \"majority\": %.6f, "
               "\"accuracy\": %.6f, \"macro_f1\": %.6f, \"seconds\": %.1f}\n",
               (long long)r.n_train, (long long)r.n_test, (long long)r.steps, r.final_loss, r.majority, r.accuracy,
               r.macro_f1, r.seconds);
    }
    ld_tokenizer_free(tok);
    ld_encoder_free(m);
    ld_ctx_free(ctx);
    ld_cli_parse_free(&spec);
    return rc;
}

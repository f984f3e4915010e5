/* bench/bench_tokenizer.c — `liandan bench tokenizer`: training a 32k byte-level BPE on
 * zh_pretrain + en_text, and encoding throughput (MB/s, documents in parallel on the run's
 * threads) on each corpus, side by side with @huggingface/tokenizers (Node, one thread — it
 * has no other mode) on the same tokenizer.json and the same text (a 2 MB sample of each
 * corpus, since the JS encoder is about 0.2-0.4 MB/s). Data: $LD_DATA_DIR or ../shared/data. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

typedef struct docs {
    char *text;      /* all documents, '\n'-separated */
    size_t *off;     /* n + 1 offsets */
    size_t n, bytes;
} docs;

static int is_tsv(const struct dirent *e) {
    size_t n = strlen(e->d_name);
    return n > 4 && !strcmp(e->d_name + n - 4, ".tsv");
}

/* The documents (the last TSV column, read by src/data/corpus) of every .tsv file in dir in
 * name order, skipping each file's first line when it is a header, up to max_bytes. */
static int load_docs(const char *dir, size_t max_bytes, bool skip_header, docs *d) {
    memset(d, 0, sizeof *d);
    struct dirent **names = NULL;
    int nn = scandir(dir, &names, is_tsv, alphasort);
    if (nn < 0) return -1;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx)) return -1;
    size_t cap = 1 << 20, ocap = 1 << 16;
    d->text = malloc(cap), d->off = malloc(ocap * sizeof *d->off);
    ld_corpus_params cp = ld_corpus_default_params();
    for (int i = 0; i < nn; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
        free(names[i]);
        ld_corpus *c = NULL;
        const char *t;
        size_t l;
        if (ld_corpus_open(ctx, path, &cp, &c)) continue;
        for (long k = 0; d->bytes < max_bytes && ld_corpus_next(c, &t, &l) == LD_OK; k++) {
            if ((skip_header && k == 0) || !l) continue;
            while (d->bytes + l + 1 > cap) d->text = realloc(d->text, cap *= 2);
            if (d->n + 2 > ocap) d->off = realloc(d->off, (ocap *= 2) * sizeof *d->off);
            d->off[d->n++] = d->bytes;
            memcpy(d->text + d->bytes, t, l);
            d->bytes += l;
            d->text[d->bytes++] = '\n';
        }
        ld_corpus_close(c);
    }
    free(names);
    ld_ctx_free(ctx);
    d->off[d->n] = d->bytes;
    return 0;
}

typedef struct enc_run {
    const ld_tokenizer *tok;
    const docs *d;
    int64_t tokens;
} enc_run;

static void encode_all(void *arg) {
    enc_run *r = arg;
    int64_t total = 0;
#pragma omp parallel reduction(+ : total)
    {
        size_t cap = 1 << 16;
        int32_t *ids = malloc(cap * sizeof *ids);
#pragma omp for schedule(dynamic, 256)
        for (size_t i = 0; i < r->d->n; i++) {
            size_t n = 0, len = r->d->off[i + 1] - r->d->off[i] - 1;
            if (ld_tokenizer_encode(r->tok, r->d->text + r->d->off[i], len, 0, ids, cap, &n) == LD_ERR_LIMIT) {
                free(ids);
                ids = malloc((cap = 2 * n) * sizeof *ids);
                ld_tokenizer_encode(r->tok, r->d->text + r->d->off[i], len, 0, ids, cap, &n);
            }
            total += (int64_t)n;
        }
        free(ids);
    }
    r->tokens = total;
}

typedef struct train_src {
    const docs *d[2];
    size_t k, i;
} train_src;

static ld_status train_next(void *u, const char **doc, size_t *len) {
    train_src *s = u;
    while (s->k < 2 && s->i >= s->d[s->k]->n) s->k++, s->i = 0;
    if (s->k == 2) return LD_ERR_NOT_FOUND;
    const docs *d = s->d[s->k];
    *doc = d->text + d->off[s->i];
    *len = d->off[s->i + 1] - d->off[s->i] - 1;
    s->i++;
    return LD_OK;
}

/* MB/s of @huggingface/tokenizers on the sample, or 0 when Node or the package is missing. */
static double node_mbps(const char *tok_path, const char *sample_path) {
    if (access("tests/oracle/node_modules/@huggingface/tokenizers", F_OK)) return 0;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node tests/oracle/tokenize_lines.mjs '%s' '%s' --bench 2>/dev/null", tok_path, sample_path);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char buf[512] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    pclose(p);
    const char *m = strstr(buf, "\"mb_per_s\":");
    return m ? atof(m + 11) : 0;
}

void ld_bench_tokenizer(const ld_bench_opts *o, const ld_machine_limits *lim, ld_bench_report *rep) {
    (void)lim;
    const char *data = getenv("LD_DATA_DIR") ? getenv("LD_DATA_DIR") : "../shared/data";
    char zh_dir[4096], en_dir[4096];
    snprintf(zh_dir, sizeof zh_dir, "%s/zh_pretrain", data);
    snprintf(en_dir, sizeof en_dir, "%s/en_text", data);
    docs zh, en;
    if (load_docs(zh_dir, SIZE_MAX, false, &zh) || load_docs(en_dir, SIZE_MAX, true, &en) || !zh.n || !en.n) {
        fprintf(stderr, "liandan bench tokenizer: no corpus under %s (set LD_DATA_DIR)\n", data);
        return;
    }
    ld_ctx_params cp = ld_ctx_default_params();
    cp.n_threads = o->threads;
    ld_ctx *ctx = NULL;
    ld_ctx_new(&cp, &ctx);
    ld_bpe_train_params p = ld_bpe_train_default_params();
    const char *sp[] = {"<|endoftext|>"};
    p.vocab_size = 32000, p.special_tokens = sp, p.n_special_tokens = 1;
    train_src ts = {{&zh, &en}, 0, 0};
    ld_text_source src = {train_next, &ts};
    ld_tokenizer *tok = NULL;
    double t0 = ld_time_now();
    if (ld_bpe_train(ctx, &p, &src, &tok)) {
        fprintf(stderr, "liandan bench tokenizer: %s\n", ld_ctx_error(ctx));
        ld_ctx_free(ctx);
        return;
    }
    double train_s = ld_time_now() - t0;
    char name[160];
    snprintf(name, sizeof name, "train 32k BPE on zh_pretrain+en_text (%.0f MB)", (double)(zh.bytes + en.bytes) / 1e6);
    ld_bench_report_row(rep, "tokenizer", name, train_s, "s", -1, NULL);
    char tok_path[] = "/tmp/liandan-bench-tok-XXXXXX";
    int fd = mkstemp(tok_path);
    if (fd >= 0) close(fd);
    ld_tokenizer_save(tok, tok_path);
    const docs *sets[2] = {&zh, &en};
    const char *names[2] = {"zh_pretrain", "en_text"};
    for (int s = 0; s < 2; s++) {
        enc_run r = {tok, sets[s], 0};
        double sec = ld_bench_median(encode_all, &r, o->reps < 5 ? 5 : o->reps);
        double mbps = (double)sets[s]->bytes / 1e6 / sec;
        snprintf(name, sizeof name, "encode %s (%.0f MB, %.2f bytes/token)", names[s], (double)sets[s]->bytes / 1e6,
                 (double)sets[s]->bytes / (double)r.tokens);
        ld_bench_report_row(rep, "tokenizer", name, mbps, "MB/s", -1, NULL);
        /* the same 2 MB sample through both encoders */
        docs sample = *sets[s];
        size_t n = 0;
        while (n < sample.n && sample.off[n + 1] < (2u << 20)) n++;
        sample.n = n, sample.bytes = sample.off[n];
        char sample_path[] = "/tmp/liandan-bench-sample-XXXXXX";
        fd = mkstemp(sample_path);
        if (fd >= 0) {
            if (write(fd, sample.text, sample.bytes) != (ssize_t)sample.bytes) {}
            close(fd);
        }
        enc_run rs = {tok, &sample, 0};
        double ours = (double)sample.bytes / 1e6 / ld_bench_median(encode_all, &rs, o->reps < 5 ? 5 : o->reps);
        double theirs = node_mbps(tok_path, sample_path);
        unlink(sample_path);
        snprintf(name, sizeof name, "%s 2 MB sample: ours", names[s]);
        ld_bench_report_row(rep, "tokenizer", name, ours, "MB/s", -1, NULL);
        if (theirs > 0) {
            snprintf(name, sizeof name, "%s 2 MB sample: @huggingface/tokenizers", names[s]);
            ld_bench_report_row(rep, "tokenizer", name, theirs, "MB/s", -1, NULL);
            snprintf(name, sizeof name, "%s: ours / @huggingface/tokenizers", names[s]);
            ld_bench_report_row(rep, "tokenizer", name, ours / theirs, "x", -1, NULL);
        }
    }
    unlink(tok_path);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
    free(zh.text), free(zh.off), free(en.text), free(en.off);
}

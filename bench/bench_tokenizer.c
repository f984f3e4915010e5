/* bench/bench_tokenizer.c — `liandan bench tokenizer`: training a 32k byte-level BPE on
 * zh_pretrain + en_text, and encoding throughput (MB/s, documents in parallel on the run's
 * threads) on each corpus, side by side with Hugging Face's Rust tokenizers (npm `tokenizers`,
 * pinned in tests/oracle; encodeBatch with RAYON_NUM_THREADS = the same thread count) on the
 * same tokenizer.json and the same text, in the same run; the token counts must agree. The
 * training row has the Rust trainer beside it (train_rust.mjs: its napi train() with the default
 * BpeTrainer, 30,000 tokens, on the same text one document a line), wall and CPU seconds.
 * Data: $LD_DATA_DIR or ../shared/data. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
    int threads;
    ld_ctx *ctx;
} enc_run;

/* The whole corpus through ld_tokenizer_encode_batch (one document a text), as encodeBatch. */
static void encode_all(void *arg) {
    enc_run *r = arg;
    size_t n = r->d->n;
    const char **texts = malloc((n + 1) * sizeof *texts);
    size_t *lens = malloc((n + 1) * sizeof *lens), *off = NULL;
    int32_t *ids = NULL;
    for (size_t i = 0; texts && lens && i < n; i++)
        texts[i] = r->d->text + r->d->off[i], lens[i] = r->d->off[i + 1] - r->d->off[i] - 1;
    r->tokens = -1;
    if (texts && lens && !ld_tokenizer_encode_batch(r->tok, texts, lens, n, 0, r->threads, &ids, &off)) r->tokens = (int64_t)off[n];
    ld_free(r->ctx, ids), ld_free(r->ctx, off);
    free(texts), free(lens);
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

/* MB/s and token count of the Rust tokenizers on a file (one document a line), or 0 when Node
 * or the package is missing. */
static double rust_mbps(const char *tok_path, const char *text_path, int threads, int reps, int64_t *tokens) {
    if (access("tests/oracle/node_modules/tokenizers", F_OK)) return 0;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "RAYON_NUM_THREADS=%d node tests/oracle/tokenize_rust.mjs '%s' '%s' --bench %d 2>/dev/null",
             threads, tok_path, text_path, reps);
    FILE *p = popen(cmd, "r");
    if (!p) return 0;
    char buf[512] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    pclose(p);
    const char *m = strstr(buf, "\"mb_per_s\":"), *t = strstr(buf, "\"tokens\":");
    if (t) *tokens = atoll(t + 9);
    return m ? atof(m + 11) : 0;
}

/* Wall and CPU seconds of the Rust trainer on a text file; false when Node or the package is
 * missing or it failed. */
static bool rust_train(const char *text_path, int threads, double *wall, double *cpu) {
    if (access("tests/oracle/node_modules/tokenizers", F_OK)) return false;
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "RAYON_NUM_THREADS=%d node tests/oracle/train_rust.mjs '%s' 2>/dev/null", threads, text_path);
    FILE *p = popen(cmd, "r");
    if (!p) return false;
    char buf[16384] = ""; /* the trainer may print progress lines before the JSON */
    size_t n = 0, got;
    while ((got = fread(buf + n, 1, sizeof buf - 1 - n, p)) > 0 && (n += got) < sizeof buf - 1) {}
    buf[n] = 0;
    pclose(p);
    const char *w = strstr(buf, "\"seconds\":"), *c = strstr(buf, "\"cpu_seconds\":");
    if (!w || !c) return false;
    *wall = atof(w + 10), *cpu = atof(c + 14);
    return *wall > 0;
}

static double cpu_seconds(void) { /* this process, all threads */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
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
    double t0 = ld_time_now(), c0 = cpu_seconds();
    if (ld_bpe_train(ctx, &p, &src, &tok)) {
        fprintf(stderr, "liandan bench tokenizer: %s\n", ld_ctx_error(ctx));
        ld_ctx_free(ctx);
        return;
    }
    double train_s = ld_time_now() - t0, train_cpu = cpu_seconds() - c0;
    char name[200];
    snprintf(name, sizeof name, "train 32k BPE on zh_pretrain+en_text (%.0f MB)", (double)(zh.bytes + en.bytes) / 1e6);
    ld_bench_report_row(rep, "tokenizer", name, train_s, "s", -1, NULL);
    snprintf(name, sizeof name, "train 32k BPE: CPU time, %d threads", ld_ctx_threads(ctx));
    ld_bench_report_row(rep, "tokenizer", name, train_cpu, "s", -1, NULL);
    char all_path[] = "/tmp/liandan-bench-text-XXXXXX";
    int afd = mkstemp(all_path);
    if (afd >= 0) {
        bool ok = write(afd, zh.text, zh.bytes) == (ssize_t)zh.bytes && write(afd, en.text, en.bytes) == (ssize_t)en.bytes;
        close(afd);
        double rw = 0, rc = 0;
        if (ok && rust_train(all_path, ld_ctx_threads(ctx), &rw, &rc)) {
            snprintf(name, sizeof name, "train BPE: Rust tokenizers (default BpeTrainer, 30k tokens, %d threads)", ld_ctx_threads(ctx));
            ld_bench_report_row(rep, "tokenizer", name, rw, "s", -1, NULL);
            ld_bench_report_row(rep, "tokenizer", "train BPE: Rust tokenizers, CPU time", rc, "s", -1, NULL);
            ld_bench_report_row(rep, "tokenizer", "train BPE: Rust wall / liandan wall", rw / train_s, "x", -1, NULL);
            ld_bench_report_row(rep, "tokenizer", "train BPE: Rust CPU / liandan CPU", rc / train_cpu, "x", -1, NULL);
        }
        unlink(all_path);
    }
    char tok_path[] = "/tmp/liandan-bench-tok-XXXXXX";
    int fd = mkstemp(tok_path);
    if (fd >= 0) close(fd);
    ld_tokenizer_save(tok, tok_path);
    const docs *sets[2] = {&zh, &en};
    const char *names[2] = {"zh_pretrain", "en_text"};
    int reps = o->reps > 0 ? o->reps : 5;
    for (int s = 0; s < 2; s++) {
        enc_run r = {tok, sets[s], 0, ld_ctx_threads(ctx), ctx};
        double sec = ld_bench_median(encode_all, &r, reps);
        double mbps = (double)sets[s]->bytes / 1e6 / sec;
        snprintf(name, sizeof name, "encode %s (%.0f MB, %.2f bytes/token): liandan", names[s], (double)sets[s]->bytes / 1e6,
                 (double)sets[s]->bytes / (double)r.tokens);
        ld_bench_report_row(rep, "tokenizer", name, mbps, "MB/s", -1, NULL);
        char text_path[] = "/tmp/liandan-bench-text-XXXXXX";
        fd = mkstemp(text_path);
        if (fd >= 0) {
            if (write(fd, sets[s]->text, sets[s]->bytes) != (ssize_t)sets[s]->bytes) {}
            close(fd);
        }
        int64_t their_tokens = -1;
        double theirs = rust_mbps(tok_path, text_path, ld_ctx_threads(ctx), reps, &their_tokens);
        unlink(text_path);
        if (theirs > 0) {
            snprintf(name, sizeof name, "encode %s: Rust tokenizers (encodeBatch, %d threads%s)", names[s], ld_ctx_threads(ctx),
                     their_tokens == r.tokens ? ", same token count" : ", TOKEN COUNTS DIFFER");
            ld_bench_report_row(rep, "tokenizer", name, theirs, "MB/s", -1, NULL);
            snprintf(name, sizeof name, "encode %s: liandan / Rust tokenizers", names[s]);
            ld_bench_report_row(rep, "tokenizer", name, mbps / theirs, "x", -1, NULL);
        }
    }
    unlink(tok_path);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
    free(zh.text), free(zh.off), free(en.text), free(en.off);
}

/* tests/unit/data_test_util.h — helpers for the data-layer tests: a temporary directory,
 * writing small files, and synthetic token shards. */
#ifndef DATA_TEST_UTIL_H
#define DATA_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data_internal.h"
#include "ld_test.h"

static char dt_dir_[256];

/* A fresh directory under /tmp for this test binary (removed at exit by rm -rf). */
static void dt_cleanup_(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dt_dir_);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dt_dir_);
}
static inline const char *dt_dir(void) {
    if (!dt_dir_[0]) {
        snprintf(dt_dir_, sizeof dt_dir_, "/tmp/ld_data_test_XXXXXX");
        if (!mkdtemp(dt_dir_)) {
            perror("mkdtemp");
            exit(1);
        }
        atexit(dt_cleanup_);
    }
    return dt_dir_;
}

/* dt_path("x.tsv") -> "<dir>/x.tsv" in a rotating static buffer. */
static inline const char *dt_path(const char *name) {
    static char bufs[8][512];
    static int k;
    char *b = bufs[k++ & 7];
    snprintf(b, 512, "%s/%s", dt_dir(), name);
    return b;
}

static inline const char *dt_write(const char *name, const void *data, size_t len) {
    const char *p = dt_path(name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, len, f) != len) {
        perror(p);
        exit(1);
    }
    fclose(f);
    return p;
}
#define DT_WRITE_STR(name, s) dt_write(name, s, strlen(s))

static inline ld_ctx *dt_ctx(void) {
    ld_ctx_params p = ld_ctx_default_params();
    p.n_threads = 2;
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(&p, &ctx) != LD_OK) exit(1);
    return ctx;
}

/* Reads all documents of a corpus file into one string, documents joined with '|'. */
static inline ld_status dt_read_all(ld_ctx *ctx, const char *path, const ld_corpus_params *p, char *out, size_t cap, int *ndocs) {
    ld_corpus *c;
    *ndocs = 0;
    ld_status st = ld_corpus_open(ctx, path, p, &c);
    if (st != LD_OK) return st;
    size_t o = 0;
    *ndocs = 0;
    out[0] = 0;
    const char *d;
    size_t n;
    while ((st = ld_corpus_next(c, &d, &n)) == LD_OK) {
        if (*ndocs && o + 1 < cap) out[o++] = '|';
        if (o + n < cap) {
            memcpy(out + o, d, n);
            o += n;
        }
        out[o] = 0;
        (*ndocs)++;
    }
    ld_corpus_close(c);
    return st == LD_ERR_NOT_FOUND ? LD_OK : st;
}

/* A shard of synthetic documents: doc d (global index first_doc + d) has length
 * 1 + (gd * 7) % max_len and tokens (gd * 1000 + i) % vocab. */
static inline void dt_make_shard(ld_ctx *ctx, const char *path, int64_t first_doc, int64_t n_docs, int max_len, int64_t vocab,
                          uint64_t hash) {
    ld_shard_writer *w;
    if (ld_shard_writer_open_raw(ctx, path, vocab, hash, &w) != LD_OK) {
        fprintf(stderr, "%s\n", ld_ctx_error(ctx));
        exit(1);
    }
    int32_t ids[4096];
    for (int64_t d = 0; d < n_docs; d++) {
        int64_t gd = first_doc + d;
        int len = 1 + (int)((gd * 7) % max_len);
        for (int i = 0; i < len; i++) ids[i] = (int32_t)((gd * 1000 + i) % vocab);
        ld_shard_writer_add_doc(w, ids, (size_t)len);
    }
    if (ld_shard_writer_close(w) != LD_OK) {
        fprintf(stderr, "%s\n", ld_ctx_error(ctx));
        exit(1);
    }
}

#endif

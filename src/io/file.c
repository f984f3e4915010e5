/* io/file.c — whole-file helpers: read-only mmap, bounded reads of small files, atomic
 * writes (temporary file, fsync, rename, directory fsync) and directories written as a whole
 * (a temporary sibling swapped into place), used by every writer and by training checkpoints. */
#define _XOPEN_SOURCE 700 /* nftw */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "liandan/io.h"

static const uint8_t empty_file_[1];

ld_status ld_file_map(ld_ctx *ctx, const char *path, ld_mapping *out) {
    if (!out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_file_map: NULL argument");
    memset(out, 0, sizeof *out);
    if (!path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_file_map: NULL path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ld_error(ctx, errno == ENOENT ? LD_ERR_NOT_FOUND : LD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return ld_error(ctx, LD_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return ld_error(ctx, LD_ERR_IO, "%s: not a regular file", path);
    }
    if (sb.st_size == 0) {
        close(fd);
        out->data = empty_file_;
        return LD_OK;
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return ld_error(ctx, LD_ERR_LIMIT, "%s: too large to map", path);
    }
    size_t size = (size_t)sb.st_size;
    void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED) return ld_error(ctx, LD_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size, strerror(e));
    out->data = p;
    out->size = size;
    out->map_size_ = size;
    return LD_OK;
}

void ld_file_unmap(ld_mapping *m) {
    if (!m) return;
    if (m->map_size_) munmap((void *)m->data, m->map_size_);
    memset(m, 0, sizeof *m);
}

ld_status ld_file_read(ld_ctx *ctx, const char *path, size_t max_size, char **out, size_t *size) {
    if (!out || !path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_file_read: NULL argument");
    *out = NULL;
    if (size) *size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ld_error(ctx, errno == ENOENT ? LD_ERR_NOT_FOUND : LD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ld_error(ctx, LD_ERR_IO, "%s: not a readable regular file", path);
    }
    if ((uint64_t)sb.st_size > (uint64_t)max_size) {
        close(fd);
        return ld_error(ctx, LD_ERR_LIMIT, "%s: %lld bytes is larger than the limit of %zu bytes", path,
                        (long long)sb.st_size, max_size);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *buf = ld_alloc(ctx, n + 1);
    if (!buf) {
        close(fd);
        return ld_ctx_status(ctx);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            ld_free(ctx, buf);
            return ld_error(ctx, LD_ERR_IO, "%s: read failed at byte %zu: %s", path, got, e ? strerror(e) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *out = buf;
    if (size) *size = n;
    return LD_OK;
}

struct ld_atomic_file {
    ld_ctx *ctx;
    int fd;
    char *path;
    char *tmp;
    size_t written;
    bool failed;
};

ld_status ld_atomic_file_open(ld_ctx *ctx, const char *path, ld_atomic_file **out) {
    if (!out || !path || !*path) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_atomic_file_open: bad argument");
    *out = NULL;
    ld_atomic_file *f = ld_calloc(ctx, 1, sizeof *f);
    if (!f) return ld_ctx_status(ctx);
    f->ctx = ctx;
    f->fd = -1;
    size_t n = strlen(path);
    f->path = ld_strdup(ctx, path);
    f->tmp = ld_alloc(ctx, n + 16);
    if (!f->path || !f->tmp) {
        ld_atomic_file_abort(f);
        return ld_ctx_status(ctx);
    }
    snprintf(f->tmp, n + 16, "%s.tmp-XXXXXX", path);
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0) {
        ld_status st = ld_error(ctx, LD_ERR_IO, "%s: cannot create temporary file: %s", path, strerror(errno));
        f->tmp[0] = 0;
        ld_atomic_file_abort(f);
        return st;
    }
    fchmod(f->fd, 0644);
    *out = f;
    return LD_OK;
}

ld_status ld_atomic_file_write(ld_atomic_file *f, const void *data, size_t size) {
    if (!f) return LD_ERR_INVALID_ARG;
    const uint8_t *p = data;
    while (size) {
        ssize_t r = write(f->fd, p, size > ((size_t)1 << 30) ? ((size_t)1 << 30) : size);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            f->failed = true;
            return ld_error(f->ctx, LD_ERR_IO, "%s: write failed at byte %zu: %s", f->path, f->written,
                            r < 0 ? strerror(errno) : "no progress");
        }
        p += r;
        size -= (size_t)r;
        f->written += (size_t)r;
    }
    return LD_OK;
}

static void atomic_free(ld_atomic_file *f) {
    ld_ctx *ctx = f->ctx;
    ld_free(ctx, f->path);
    ld_free(ctx, f->tmp);
    ld_free(ctx, f);
}

void ld_atomic_file_abort(ld_atomic_file *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (f->tmp && f->tmp[0]) unlink(f->tmp);
    atomic_free(f);
}

ld_status ld_dir_fsync(ld_ctx *ctx, const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return ld_error(ctx, LD_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    int r = fsync(fd);
    int e = errno;
    close(fd);
    if (r != 0 && e != EINVAL) return ld_error(ctx, LD_ERR_IO, "%s: cannot fsync directory: %s", dir, strerror(e));
    return LD_OK;
}

ld_status ld_atomic_file_commit(ld_atomic_file *f) {
    if (!f) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = f->ctx;
    if (f->failed) {
        ld_atomic_file_abort(f);
        return ld_error(ctx, LD_ERR_STATE, "atomic write: commit after a failed write");
    }
    if (fsync(f->fd) != 0) {
        ld_status st = ld_error(ctx, LD_ERR_IO, "%s: fsync failed: %s", f->tmp, strerror(errno));
        ld_atomic_file_abort(f);
        return st;
    }
    int r = close(f->fd);
    f->fd = -1;
    if (r != 0) {
        ld_status st = ld_error(ctx, LD_ERR_IO, "%s: close failed: %s", f->tmp, strerror(errno));
        ld_atomic_file_abort(f);
        return st;
    }
    if (rename(f->tmp, f->path) != 0) {
        ld_status st = ld_error(ctx, LD_ERR_IO, "%s: cannot rename %s into place: %s", f->path, f->tmp, strerror(errno));
        ld_atomic_file_abort(f);
        return st;
    }
    /* The directory holding path: everything before the last '/', or ".". */
    char *slash = strrchr(f->path, '/');
    ld_status st;
    if (!slash) st = ld_dir_fsync(ctx, ".");
    else if (slash == f->path) st = ld_dir_fsync(ctx, "/");
    else {
        *slash = 0;
        st = ld_dir_fsync(ctx, f->path);
    }
    f->tmp[0] = 0; /* renamed: nothing to unlink */
    atomic_free(f);
    return st;
}

ld_status ld_file_write_atomic(ld_ctx *ctx, const char *path, const void *data, size_t size) {
    ld_atomic_file *f;
    ld_status st = ld_atomic_file_open(ctx, path, &f);
    if (st) return st;
    st = ld_atomic_file_write(f, data, size);
    if (st) {
        ld_atomic_file_abort(f);
        return st;
    }
    return ld_atomic_file_commit(f);
}

/* ---- directories written as a whole --------------------------------------------------- */

struct ld_dir_txn {
    ld_ctx *ctx;
    char *dir, *tmp;
};

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

ld_status ld_remove_tree(ld_ctx *ctx, const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return errno == ENOENT ? LD_OK : ld_error(ctx, LD_ERR_IO, "%s: %s", path, strerror(errno));
    if (nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return ld_error(ctx, LD_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return LD_OK;
}

/* "a/b/c" -> parent "a/b" and base "c" (parent "." when there is no slash). */
static void split_path(const char *path, char *parent, size_t pcap, const char **base) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(parent, pcap, ".");
        *base = path;
    } else {
        snprintf(parent, pcap, "%.*s", slash == path ? 1 : (int)(slash - path), path);
        *base = slash + 1;
    }
}

/* Removes "<base>.tmp-<pid>-*" siblings left by processes that no longer run. */
static void remove_stale_siblings(ld_ctx *ctx, const char *parent, const char *base) {
    DIR *d = opendir(parent);
    if (!d) return;
    size_t bl = strlen(base);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, base, bl) || strncmp(e->d_name + bl, ".tmp-", 5)) continue;
        char *end;
        long pid = strtol(e->d_name + bl + 5, &end, 10);
        if (end == e->d_name + bl + 5 || *end != '-' || pid <= 0) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* still running (or not ours to judge) */
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", parent, e->d_name);
        ld_remove_tree(ctx, path);
    }
    closedir(d);
}

ld_status ld_dir_txn_begin(ld_ctx *ctx, const char *dir, ld_dir_txn **out) {
    if (!out || !dir || !*dir) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_dir_txn_begin: bad argument");
    *out = NULL;
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--; /* "out/" names "out" */
    if (n + 64 > 4096) return ld_error(ctx, LD_ERR_LIMIT, "%s: path too long", dir);
    struct stat sb;
    if (stat(dir, &sb) == 0 && !S_ISDIR(sb.st_mode)) return ld_error(ctx, LD_ERR_IO, "%s: exists and is not a directory", dir);
    ld_dir_txn *tx = ld_calloc(ctx, 1, sizeof *tx);
    char *d = tx ? ld_alloc(ctx, n + 1) : NULL, *tmp = d ? ld_alloc(ctx, n + 48) : NULL;
    if (!tmp) {
        ld_free(ctx, d);
        ld_free(ctx, tx);
        return ld_ctx_status(ctx);
    }
    memcpy(d, dir, n);
    d[n] = 0;
    tx->ctx = ctx, tx->dir = d, tx->tmp = tmp;
    char parent[4096];
    const char *base;
    split_path(d, parent, sizeof parent, &base);
    remove_stale_siblings(ctx, parent, base);
    snprintf(tmp, n + 48, "%s.tmp-%ld-XXXXXX", d, (long)getpid());
    if (!mkdtemp(tmp)) {
        ld_status st = ld_error(ctx, LD_ERR_IO, "%s: cannot create a temporary directory beside it: %s", d, strerror(errno));
        tmp[0] = 0;
        ld_dir_txn_abort(tx);
        return st;
    }
    chmod(tmp, 0755);
    *out = tx;
    return LD_OK;
}

const char *ld_dir_txn_path(const ld_dir_txn *tx) {
    return tx ? tx->tmp : NULL;
}

void ld_dir_txn_abort(ld_dir_txn *tx) {
    if (!tx) return;
    if (tx->tmp[0]) ld_remove_tree(tx->ctx, tx->tmp);
    ld_free(tx->ctx, tx->tmp);
    ld_free(tx->ctx, tx->dir);
    ld_free(tx->ctx, tx);
}

/* Swaps two paths atomically where the system can (Linux renameat2); 1 when it cannot. */
static int exchange(const char *a, const char *b) {
#ifdef SYS_renameat2
    if (syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, 2 /* RENAME_EXCHANGE */) == 0) return 0;
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return -1;
#else
    (void)a, (void)b;
#endif
    return 1;
}

ld_status ld_dir_txn_commit(ld_dir_txn *tx) {
    if (!tx) return LD_ERR_INVALID_ARG;
    ld_ctx *ctx = tx->ctx;
    char parent[4096];
    const char *base;
    split_path(tx->dir, parent, sizeof parent, &base);
    ld_status st = ld_dir_fsync(ctx, tx->tmp);
    struct stat sb;
    bool had_old = !st && lstat(tx->dir, &sb) == 0;
    if (!st && !had_old && rename(tx->tmp, tx->dir) != 0)
        st = ld_error(ctx, LD_ERR_IO, "%s: cannot rename %s into place: %s", tx->dir, tx->tmp, strerror(errno));
    if (!st && had_old) {
        /* the new directory takes the name; the old one ends under the temporary name */
        int r = exchange(tx->tmp, tx->dir);
        if (r == 1) { /* no atomic exchange here: move the old one aside first */
            char aside[4096 + 64];
            snprintf(aside, sizeof aside, "%s.old", tx->tmp);
            r = rename(tx->dir, aside) != 0 ? -1 : rename(tx->tmp, tx->dir) != 0 ? (rename(aside, tx->dir), -1) : 0;
            if (!r) r = rename(aside, tx->tmp);
        }
        if (r != 0) st = ld_error(ctx, LD_ERR_IO, "%s: cannot replace it with %s: %s", tx->dir, tx->tmp, strerror(errno));
    }
    if (!st) st = ld_dir_fsync(ctx, parent);
    if (!st && !had_old) tx->tmp[0] = 0; /* renamed: nothing left to remove */
    ld_dir_txn_abort(tx);                 /* removes the old directory, or the new one after a failure */
    return st;
}

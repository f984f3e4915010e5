/* io/safe_path.c — names of files kept in a directory, and paths that cannot leave it
 * (no "..", absolute paths, NUL or symlink escapes): what the server and the registry read
 * and write under their directories goes through these. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "liandan/io.h"

ld_status ld_name_check(ld_ctx *ctx, const char *what, const char *name) {
    if (!name || !name[0]) return ld_error(ctx, LD_ERR_INVALID_ARG, "%s name is empty", what);
    size_t n = strnlen(name, 129);
    if (n > 128) return ld_error(ctx, LD_ERR_INVALID_ARG, "%s name is longer than 128 bytes", what);
    if (name[0] == '.') return ld_error(ctx, LD_ERR_INVALID_ARG, "%s name '%s' starts with '.'", what, name);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
                  c == '-';
        if (!ok)
            return ld_error(ctx, LD_ERR_INVALID_ARG,
                            "%s name has the byte 0x%02x at %zu; names are letters, digits, '.', '_' and '-'", what, c, i);
    }
    return LD_OK;
}

ld_status ld_path_inside(ld_ctx *ctx, const char *root, const char *name, char *out, size_t cap, bool *exists) {
    if (exists) *exists = false;
    ld_status st = ld_name_check(ctx, "the", name);
    if (st) return st;
    char real_root[PATH_MAX], real[PATH_MAX];
    if (!realpath(root, real_root)) return ld_error(ctx, LD_ERR_NOT_FOUND, "%s: %s", root, strerror(errno));
    size_t need = strlen(root) + 1 + strlen(name) + 1;
    if (need > cap) return ld_error(ctx, LD_ERR_LIMIT, "%s/%s: path longer than %zu bytes", root, name, cap);
    snprintf(out, cap, "%s/%s", root, name);
    struct stat sb;
    if (lstat(out, &sb) != 0) return LD_OK; /* does not exist (yet) */
    if (!realpath(out, real)) /* a dangling symlink: refuse rather than create through it */
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: a link that leads nowhere", name);
    size_t rl = strlen(real_root);
    if (strncmp(real, real_root, rl) || (real[rl] != '/' && real[rl] != 0) || real[rl] == 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "%s: escapes %s (it resolves to %s)", name, root, real);
    if (exists) *exists = true;
    return LD_OK;
}

/* liandan/status.h — status codes shared by every library function.
 *
 * Every fallible library function returns ld_status: LD_OK (0) on success, a negative
 * code otherwise. The codes, their names and their one-line messages live in one
 * X-macro table so that the enum, ld_status_name() and ld_status_message() can never
 * drift apart. The detailed, situation-specific message (which file, which byte, which
 * tensor) is left on the ld_ctx: see ld_ctx_error(). */
#ifndef LIANDAN_STATUS_H
#define LIANDAN_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(enum name, value, short message) */
#define LD_STATUS_TABLE(X)                                                   \
    X(LD_OK, 0, "success")                                                   \
    X(LD_ERR_INVALID_ARG, -1, "invalid argument")                            \
    X(LD_ERR_NOMEM, -2, "out of memory")                                     \
    X(LD_ERR_SHAPE, -3, "shape mismatch")                                    \
    X(LD_ERR_DTYPE, -4, "unsupported or mismatched data type")               \
    X(LD_ERR_OVERFLOW, -5, "size or index overflow")                         \
    X(LD_ERR_IO, -6, "input/output error")                                   \
    X(LD_ERR_FORMAT, -7, "malformed input")                                  \
    X(LD_ERR_UNSUPPORTED, -8, "not supported")                               \
    X(LD_ERR_NOT_FOUND, -9, "not found")                                     \
    X(LD_ERR_STATE, -10, "operation not valid in the current state")         \
    X(LD_ERR_NUMERIC, -11, "numerical error (NaN or infinity)")              \
    X(LD_ERR_CHECKSUM, -12, "checksum mismatch")                             \
    X(LD_ERR_MISMATCH, -13, "incompatible components")                       \
    X(LD_ERR_INTERRUPTED, -14, "interrupted")                                \
    X(LD_ERR_LIMIT, -15, "a configured limit was exceeded")                  \
    X(LD_ERR_INTERNAL, -16, "internal error")

typedef enum ld_status {
#define LD_STATUS_ENUM_(name, value, msg) name = value,
    LD_STATUS_TABLE(LD_STATUS_ENUM_)
#undef LD_STATUS_ENUM_
} ld_status;

/* "LD_ERR_SHAPE" for LD_ERR_SHAPE; "LD_UNKNOWN_STATUS" for values outside the table. */
const char *ld_status_name(ld_status s);
/* "shape mismatch" for LD_ERR_SHAPE; never NULL. */
const char *ld_status_message(ld_status s);

#ifdef __cplusplus
}
#endif
#endif

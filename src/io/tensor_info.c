/* io/tensor_info.c — turning a tensor described by a file (safetensors, GGUF) into an
 * ld_tensor view over the mapping. */
#include <string.h>

#include "liandan/io.h"

ld_status ld_tensor_info_view(ld_ctx *ctx, const ld_tensor_info *info, ld_tensor *out) {
    if (!info || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tensor_info_view: NULL argument");
    if (!ld_dtype_traits(info->dtype))
        return ld_error(ctx, LD_ERR_DTYPE, "tensor '%s': dtype %s is not supported by liandan", info->name,
                        info->dtype_name ? info->dtype_name : "?");
    if (info->ndim > LD_MAX_DIMS)
        return ld_error(ctx, LD_ERR_SHAPE, "tensor '%s': %d dimensions, liandan tensors have at most %d", info->name,
                        info->ndim, LD_MAX_DIMS);
    int64_t one = 1;
    const int64_t *shape = info->ndim ? info->shape : &one;
    ld_status st = ld_tensor_init(ctx, out, info->dtype, info->ndim ? info->ndim : 1, shape);
    if (st) return ld_error_wrap(ctx, st, "tensor '%s': ", info->name);
    if (ld_tensor_nbytes(out) != info->nbytes)
        return ld_error(ctx, LD_ERR_INTERNAL, "tensor '%s': %zu bytes in the file, %zu expected", info->name,
                        info->nbytes, ld_tensor_nbytes(out));
    out->data = (void *)info->data;
    out->flags = LD_TENSOR_VIEW;
    ld_tensor_set_name(out, info->name);
    return LD_OK;
}

/* tensor/tensor.c — tensor shapes, views and conversions between float element types. */
#include <stdio.h>
#include <string.h>

#include "liandan/tensor.h"

int64_t ld_tensor_numel(const ld_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t ld_tensor_nbytes(const ld_tensor *t) {
    size_t b;
    if (ld_dtype_row_bytes(t->dtype, ld_tensor_numel(t), &b)) return 0;
    return b;
}

bool ld_tensor_is_contiguous(const ld_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

bool ld_tensor_same_shape(const ld_tensor *a, const ld_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

ld_status ld_tensor_init(ld_ctx *ctx, ld_tensor *t, ld_dtype dtype, int ndim, const int64_t *shape) {
    if (!t || !shape) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tensor_init: NULL argument");
    const ld_dtype_info *d = ld_dtype_traits(dtype);
    if (!d) return ld_error(ctx, LD_ERR_DTYPE, "unknown dtype %d", (int)dtype);
    if (ndim < 1 || ndim > LD_MAX_DIMS)
        return ld_error(ctx, LD_ERR_SHAPE, "tensor rank %d outside 1..%d", ndim, LD_MAX_DIMS);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0)
            return ld_error(ctx, LD_ERR_SHAPE, "dimension %d is %lld (must be positive)", i,
                            (long long)shape[i]);
        if (ld_mul_size(n, (size_t)shape[i], &n) || n > (size_t)INT64_MAX / 8)
            return ld_error(ctx, LD_ERR_OVERFLOW, "tensor element count overflows at dimension %d", i);
    }
    if (shape[ndim - 1] % d->block_size)
        return ld_error(ctx, LD_ERR_SHAPE, "last dimension %lld is not a multiple of the %s block size %d",
                        (long long)shape[ndim - 1], d->name, d->block_size);
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->ndim = ndim;
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
    return LD_OK;
}

ld_status ld_tensor_new(ld_ctx *ctx, ld_arena *arena, ld_dtype dtype, int ndim, const int64_t *shape,
                        ld_tensor **out) {
    if (!out || !arena) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tensor_new: NULL argument");
    *out = NULL;
    ld_tensor tmp;
    ld_status st = ld_tensor_init(ctx, &tmp, dtype, ndim, shape);
    if (st) return st;
    size_t bytes = ld_tensor_nbytes(&tmp);
    ld_tensor *t = ld_arena_alloc(arena, sizeof *t);
    if (!t) return ld_ctx_status(ctx);
    *t = tmp;
    t->data = ld_arena_alloc(arena, bytes);
    if (!t->data) return ld_ctx_status(ctx);
    memset(t->data, 0, bytes);
    *out = t;
    return LD_OK;
}

ld_status ld_tensor_reshape(ld_ctx *ctx, const ld_tensor *src, int ndim, const int64_t *shape,
                            ld_tensor *out) {
    if (!src || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tensor_reshape: NULL argument");
    if (!ld_tensor_is_contiguous(src))
        return ld_error(ctx, LD_ERR_STATE, "reshape of non-contiguous tensor '%s'", src->name);
    ld_tensor t;
    ld_status st = ld_tensor_init(ctx, &t, src->dtype, ndim, shape);
    if (st) return st;
    if (ld_tensor_numel(&t) != ld_tensor_numel(src)) {
        char a[64], b[64];
        return ld_error(ctx, LD_ERR_SHAPE, "cannot reshape '%s' %s to %s", src->name,
                        ld_tensor_shape_str(src, a, sizeof a), ld_tensor_shape_str(&t, b, sizeof b));
    }
    t.data = src->data;
    t.flags = LD_TENSOR_VIEW;
    memcpy(t.name, src->name, sizeof t.name);
    *out = t;
    return LD_OK;
}

ld_status ld_tensor_slice0(ld_ctx *ctx, const ld_tensor *src, int64_t start, int64_t len, ld_tensor *out) {
    if (!src || !out) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_tensor_slice0: NULL argument");
    if (start < 0 || len <= 0 || start > src->shape[0] || len > src->shape[0] - start)
        return ld_error(ctx, LD_ERR_SHAPE, "slice [%lld, %lld) outside dimension 0 of size %lld",
                        (long long)start, (long long)(start + len), (long long)src->shape[0]);
    ld_tensor t = *src;
    size_t off;
    if (ld_dtype_row_bytes(src->dtype, start * src->stride[0], &off))
        return ld_error(ctx, LD_ERR_SHAPE, "slice start is not block-aligned");
    t.shape[0] = len;
    t.data = (char *)src->data + off;
    t.grad = NULL;
    t.flags = LD_TENSOR_VIEW;
    *out = t;
    return LD_OK;
}

void ld_tensor_set_name(ld_tensor *t, const char *name) {
    if (!t) return;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}

const char *ld_tensor_shape_str(const ld_tensor *t, char *buf, size_t cap) {
    size_t n = 0;
    if (!cap) return buf;
    buf[0] = 0;
    n += (size_t)snprintf(buf + n, cap - n, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

ld_status ld_convert(ld_ctx *ctx, ld_dtype dst_type, void *dst, ld_dtype src_type, const void *src,
                     int64_t n) {
    if ((!dst || !src) && n > 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_convert: NULL buffer");
    if (n < 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_convert: negative count");
    const ld_dtype_info *di = ld_dtype_traits(dst_type), *si = ld_dtype_traits(src_type);
    if (!di || !si || !di->is_float || !si->is_float)
        return ld_error(ctx, LD_ERR_DTYPE, "ld_convert: %s -> %s is not a float conversion",
                        si ? si->name : "?", di ? di->name : "?");
    for (int64_t i = 0; i < n; i++) {
        float f;
        switch (src_type) {
        case LD_F32: f = ((const float *)src)[i]; break;
        case LD_F16: f = ld_fp16_to_fp32(((const uint16_t *)src)[i]); break;
        default: f = ld_bf16_to_fp32(((const uint16_t *)src)[i]); break;
        }
        switch (dst_type) {
        case LD_F32: ((float *)dst)[i] = f; break;
        case LD_F16: ((uint16_t *)dst)[i] = ld_fp32_to_fp16(f); break;
        default: ((uint16_t *)dst)[i] = ld_fp32_to_bf16(f); break;
        }
    }
    return LD_OK;
}

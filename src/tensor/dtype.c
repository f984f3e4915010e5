/* tensor/dtype.c — the dtype traits table and scalar float conversions. */
#include <string.h>

#include "liandan/tensor.h"

static const ld_dtype_info dtype_table[LD_DTYPE_COUNT] = {
#define LD_DTYPE_INFO_(e, name, blk, bytes, ggml, isf, ftype) [e] = {name, blk, bytes, ggml, isf, ftype},
    LD_DTYPE_TABLE(LD_DTYPE_INFO_)
#undef LD_DTYPE_INFO_
};

const ld_dtype_info *ld_dtype_traits(ld_dtype t) {
    if ((int)t < 0 || t >= LD_DTYPE_COUNT) return NULL;
    return &dtype_table[t];
}

ld_dtype ld_dtype_from_name(const char *name) {
    if (!name) return LD_DTYPE_COUNT;
    for (int i = 0; i < LD_DTYPE_COUNT; i++)
        if (strcmp(dtype_table[i].name, name) == 0) return (ld_dtype)i;
    return LD_DTYPE_COUNT;
}

int ld_dtype_row_bytes(ld_dtype t, int64_t n, size_t *out) {
    const ld_dtype_info *d = ld_dtype_traits(t);
    *out = 0;
    if (!d || n < 0 || n % d->block_size) return 1;
    return ld_mul_size((size_t)(n / d->block_size), (size_t)d->block_bytes, out);
}

uint16_t ld_fp32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float ld_bf16_to_fp32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE half precision, round to nearest even, overflow to infinity, subnormals kept. */
uint16_t ld_fp32_to_fp16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);           /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);          /* overflow -> inf */
    if (abs < 0x38800000u) {                                            /* subnormal or zero */
        if (abs < 0x33000000u) return (uint16_t)sign;
        uint32_t e = abs >> 23, m = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                                       /* 14..24 */
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((abs - 0x38000000u) >> 13), rem = abs & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float ld_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, u;
    if (e == 0x1f) u = sign | 0x7f800000u | (m << 13);
    else if (e) u = sign | ((e + 112) << 23) | (m << 13);
    else if (!m) u = sign;
    else {
        e = 113;
        while (!(m & 0x400u)) { m <<= 1; e--; }
        u = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* io/gguf_internal.h — the layout of the GGUF reader, shared by gguf.c and gguf_write.c. */
#ifndef LD_GGUF_INTERNAL_H
#define LD_GGUF_INTERNAL_H

#include "io/io_internal.h"

typedef struct ld_gguf_kv {
    const char *key;
    ld_gguf_value value;
} ld_gguf_kv;

struct ld_gguf {
    ld_ctx *ctx;
    char *name;
    ld_mapping map;
    ld_arena *arena;
    uint32_t version, alignment;
    size_t data_offset;
    ld_gguf_kv *kvs; /* file order */
    ld_gguf_kv *kv_sorted;
    size_t n_kv;
    ld_tensor_info *tensors; /* file order */
    const ld_tensor_info **by_name;
    size_t n_tensors;
};

/* Bytes of a scalar value of type t (0 for STRING, ARRAY and unknown types). */
size_t ld_gguf_scalar_size(ld_gguf_type t);

static inline bool ld_gguf_is_int(ld_gguf_type t) {
    return t == LD_GGUF_UINT8 || t == LD_GGUF_INT8 || t == LD_GGUF_UINT16 || t == LD_GGUF_INT16 || t == LD_GGUF_UINT32 ||
           t == LD_GGUF_INT32 || t == LD_GGUF_UINT64 || t == LD_GGUF_INT64;
}

#endif

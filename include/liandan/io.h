/* liandan/io.h — files and file formats: mmap, atomic writes, JSON accessors, safetensors
 * (single files and Hugging Face sharded sets), GGUF.
 *
 * Every parser here is bounds-checked: lengths, counts, dimensions and offsets are checked
 * against the input size (overflow-checked) before anything is allocated from them, and bad
 * input gets LD_ERR_FORMAT (or LD_ERR_LIMIT / LD_ERR_UNSUPPORTED) with a message naming the
 * file and the byte, key or tensor. Every parser has a from-memory entry point (used by the
 * fuzz harnesses) next to the from-file one.
 *
 * Tensor data returned by the readers points into the read-only mapping: it is valid until
 * the reader is closed, and is NOT necessarily aligned to its element size (safetensors
 * offsets are arbitrary) — copy or use unaligned loads. Shapes are outermost first, as in
 * ld_tensor (GGUF stores them innermost first; the GGUF reader reverses them). */
#ifndef LIANDAN_IO_H
#define LIANDAN_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "liandan/core.h"
#include "liandan/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ==== files ============================================================================ */

/* A read-only memory mapping of a whole file. An empty file maps to size 0 and a non-NULL
 * data pointer. */
typedef struct ld_mapping {
    const uint8_t *data;
    size_t size;
    size_t map_size_; /* private: what to munmap (0 = nothing) */
} ld_mapping;

/* Maps `path` read-only. On failure *out is zeroed. Release with ld_file_unmap(). */
ld_status ld_file_map(ld_ctx *ctx, const char *path, ld_mapping *out);
/* Unmaps and zeroes *m; safe on a zeroed or already-unmapped struct. */
void ld_file_unmap(ld_mapping *m);

/* Reads a whole (small) file into a NUL-terminated buffer allocated with ld_alloc (the caller
 * ld_free()s it). Files larger than max_size bytes fail with LD_ERR_LIMIT. *size may be NULL. */
ld_status ld_file_read(ld_ctx *ctx, const char *path, size_t max_size, char **out, size_t *size);

/* Writes a file atomically: data goes to "<path>.tmp-XXXXXX" in the same directory, which is
 * fsynced, renamed over `path`, and the directory is fsynced. A crash leaves either the old
 * file or the new one, never a mix. Usage:
 *   ld_atomic_file *f; ld_atomic_file_open(ctx, path, &f);
 *   ld_atomic_file_write(f, p, n) ...;  ld_atomic_file_commit(f);   // or ld_atomic_file_abort(f)
 * commit and abort free the handle (also on failure); after a failed write, call abort. */
typedef struct ld_atomic_file ld_atomic_file;
ld_status ld_atomic_file_open(ld_ctx *ctx, const char *path, ld_atomic_file **out);
ld_status ld_atomic_file_write(ld_atomic_file *f, const void *data, size_t size);
ld_status ld_atomic_file_commit(ld_atomic_file *f);
void ld_atomic_file_abort(ld_atomic_file *f);
/* One-shot form of the above. */
ld_status ld_file_write_atomic(ld_ctx *ctx, const char *path, const void *data, size_t size);
/* SHA-256 (FIPS 180-4): content addresses of uploaded files, hashes of API keys. */
typedef struct ld_sha256 {
    uint32_t h[8];
    uint64_t bytes;
    uint8_t block[64];
} ld_sha256;
void ld_sha256_init(ld_sha256 *s);
void ld_sha256_update(ld_sha256 *s, const void *data, size_t n);
void ld_sha256_final(ld_sha256 *s, uint8_t digest[32]);
/* The digest of data[0..n) as 64 lowercase hex digits and a NUL, into hex[65]. */
void ld_sha256_hex(const void *data, size_t n, char hex[65]);

/* Names of things kept in a directory the caller controls (models, datasets): 1..128 bytes
 * of [A-Za-z0-9._-], not starting with '.', and nothing else — no '/', no "..", no NUL, no
 * absolute path. LD_ERR_INVALID_ARG with a message saying what is wrong, naming `what`. */
ld_status ld_name_check(ld_ctx *ctx, const char *what, const char *name);
/* root + "/" + name into out[cap] for a checked name; when that path exists, its real path
 * (symlinks resolved) must lie inside root's real path, else LD_ERR_INVALID_ARG ("escapes").
 * LD_ERR_NOT_FOUND when root does not exist. *exists (may be NULL) tells whether it exists. */
ld_status ld_path_inside(ld_ctx *ctx, const char *root, const char *name, char *out, size_t cap, bool *exists);

/* fsyncs a directory (after renames inside it). */
ld_status ld_dir_fsync(ld_ctx *ctx, const char *dir);

/* Writes a directory as a whole (a model directory, a checkpoint): the files go into a
 * temporary sibling "<dir>.tmp-<pid>-XXXXXX" (ld_dir_txn_path), and commit fsyncs it, swaps
 * it with `dir` (atomically where the system can: Linux renameat2), fsyncs the parent and
 * removes the old directory. A failure or a crash at any moment leaves either the complete
 * old directory or the complete new one under the name; abort (and a failed commit) removes
 * the temporary one, and begin removes those left by processes that died. The old directory
 * is replaced whole: callers check first that it is theirs to replace. Usage:
 *   ld_dir_txn *tx; ld_dir_txn_begin(ctx, "out/model", &tx);
 *   write files under ld_dir_txn_path(tx) ...;  ld_dir_txn_commit(tx);   // or ld_dir_txn_abort(tx)
 * commit and abort free the handle (also on failure). */
typedef struct ld_dir_txn ld_dir_txn;
ld_status ld_dir_txn_begin(ld_ctx *ctx, const char *dir, ld_dir_txn **out);
const char *ld_dir_txn_path(const ld_dir_txn *tx);
ld_status ld_dir_txn_commit(ld_dir_txn *tx);
void ld_dir_txn_abort(ld_dir_txn *tx);
/* Removes a file or a directory tree (missing: LD_OK). */
ld_status ld_remove_tree(ld_ctx *ctx, const char *path);

/* ==== tensors in files ================================================================= */

#define LD_IO_MAX_DIMS 8

/* One tensor of a safetensors or GGUF file, as described by the file. Borrowed from the
 * reader; valid until it is closed. */
typedef struct ld_tensor_info {
    const char *name;
    ld_dtype dtype;         /* LD_DTYPE_COUNT when liandan cannot compute with the file's type */
    const char *dtype_name; /* the file's spelling: "F32", "I64", "Q4_K", "Q5_0" */
    int32_t file_type;      /* GGUF: the GGML type id; safetensors: -1 */
    int ndim;               /* 0 for a scalar */
    int64_t shape[LD_IO_MAX_DIMS]; /* outermost first */
    uint64_t offset;        /* of the data, relative to the start of the data section */
    size_t nbytes;
    const void *data;       /* into the mapping; possibly unaligned */
} ld_tensor_info;

/* A view of the file's tensor as an ld_tensor (data borrowed, flags LD_TENSOR_VIEW). Errors:
 * LD_ERR_DTYPE for types liandan does not support, LD_ERR_SHAPE for ndim > LD_MAX_DIMS or a
 * zero-sized dimension. A scalar becomes shape {1}. */
ld_status ld_tensor_info_view(ld_ctx *ctx, const ld_tensor_info *info, ld_tensor *out);

/* ==== safetensors ====================================================================== */

#define LD_SAFETENSORS_MAX_HEADER ((uint64_t)100 << 20)

typedef struct ld_safetensors ld_safetensors;

/* Opens (mmaps) and validates a .safetensors file: header length and JSON, dtypes, shapes
 * (element count * dtype size == end - begin, overflow-checked), offsets in bounds, tensors
 * covering the data section exactly without overlaps or gaps, unique names, string metadata. */
ld_status ld_safetensors_open(ld_ctx *ctx, const char *path, ld_safetensors **out);
/* Same over a caller-owned buffer that must outlive the reader. `name` is used in messages. */
ld_status ld_safetensors_open_memory(ld_ctx *ctx, const char *name, const void *data, size_t size,
                                     ld_safetensors **out);
void ld_safetensors_close(ld_safetensors *st);

size_t ld_safetensors_count(const ld_safetensors *st);
/* Tensors in name order (strcmp). */
const ld_tensor_info *ld_safetensors_at(const ld_safetensors *st, size_t i);
/* NULL when absent. */
const ld_tensor_info *ld_safetensors_find(const ld_safetensors *st, const char *name);
/* Like find, but a missing tensor is LD_ERR_NOT_FOUND naming it and the file. */
ld_status ld_safetensors_get(ld_ctx *ctx, const ld_safetensors *st, const char *name,
                             const ld_tensor_info **out);
/* "__metadata__" entries, in key order; get returns NULL when absent. */
size_t ld_safetensors_metadata_count(const ld_safetensors *st);
void ld_safetensors_metadata_at(const ld_safetensors *st, size_t i, const char **key, const char **value);
const char *ld_safetensors_metadata_get(const ld_safetensors *st, const char *key);

/* A tensor to write. dtype is used unless st_dtype names a safetensors dtype ("I64", "U8",
 * ...) liandan has no ld_dtype for. shape is outermost first (ndim 0..LD_IO_MAX_DIMS); data
 * holds the tensor's bytes, contiguous, little-endian. */
typedef struct ld_st_write_tensor {
    const char *name;
    ld_dtype dtype;
    const char *st_dtype;
    int ndim;
    const int64_t *shape;
    const void *data;
} ld_st_write_tensor;

typedef struct ld_str_pair {
    const char *key;
    const char *value;
} ld_str_pair;

/* Writes a safetensors file atomically. Tensors are stored (header and data) in name order,
 * so the output depends only on the set of tensors; the header is padded with spaces to a
 * multiple of 8 bytes, as the Hugging Face implementation does. Duplicate names are
 * LD_ERR_INVALID_ARG. */
ld_status ld_safetensors_write(ld_ctx *ctx, const char *path, const ld_st_write_tensor *tensors, size_t n,
                               const ld_str_pair *metadata, size_t n_metadata);
/* The same bytes into a buffer allocated with ld_alloc (caller frees). */
ld_status ld_safetensors_write_memory(ld_ctx *ctx, const ld_st_write_tensor *tensors, size_t n,
                                      const ld_str_pair *metadata, size_t n_metadata, void **out,
                                      size_t *size);

/* ---- Hugging Face sharded sets (model.safetensors.index.json) ---- */

/* The parsed index: weight_map entries sorted by tensor name, and the distinct shard files
 * in first-seen order. Validates: an object with an object "weight_map" of string values,
 * file names relative without ".." components, no tensor listed twice. */
typedef struct ld_hf_index ld_hf_index;
ld_status ld_hf_index_parse(ld_ctx *ctx, const char *doc, const char *text, size_t len, ld_hf_index **out);
void ld_hf_index_free(ld_hf_index *idx);
size_t ld_hf_index_count(const ld_hf_index *idx);
void ld_hf_index_at(const ld_hf_index *idx, size_t i, const char **tensor, const char **file);
size_t ld_hf_index_file_count(const ld_hf_index *idx);
const char *ld_hf_index_file(const ld_hf_index *idx, size_t i);

/* Several safetensors files opened as one logical set of tensors. */
typedef struct ld_st_set ld_st_set;
/* `path` is a model directory (uses model.safetensors.index.json if present, else
 * model.safetensors), an index .json file, or a single .safetensors file. With an index,
 * every shard must exist and be valid, every listed tensor must be in its shard, and every
 * tensor of a shard must be listed for that shard (so no tensor is in two shards). */
ld_status ld_st_set_open(ld_ctx *ctx, const char *path, ld_st_set **out);
void ld_st_set_close(ld_st_set *set);
size_t ld_st_set_count(const ld_st_set *set);
const ld_tensor_info *ld_st_set_at(const ld_st_set *set, size_t i); /* name order */
const ld_tensor_info *ld_st_set_find(const ld_st_set *set, const char *name);
ld_status ld_st_set_get(ld_ctx *ctx, const ld_st_set *set, const char *name, const ld_tensor_info **out);
size_t ld_st_set_file_count(const ld_st_set *set);
const ld_safetensors *ld_st_set_file(const ld_st_set *set, size_t i);

/* ==== GGUF ============================================================================= */

/* Value types, with the ids GGUF stores. */
typedef enum ld_gguf_type {
    LD_GGUF_UINT8 = 0,
    LD_GGUF_INT8 = 1,
    LD_GGUF_UINT16 = 2,
    LD_GGUF_INT16 = 3,
    LD_GGUF_UINT32 = 4,
    LD_GGUF_INT32 = 5,
    LD_GGUF_FLOAT32 = 6,
    LD_GGUF_BOOL = 7,
    LD_GGUF_STRING = 8,
    LD_GGUF_ARRAY = 9,
    LD_GGUF_UINT64 = 10,
    LD_GGUF_INT64 = 11,
    LD_GGUF_FLOAT64 = 12,
    LD_GGUF_TYPE_COUNT
} ld_gguf_type;
const char *ld_gguf_type_name(ld_gguf_type t); /* "UINT32"; "?" outside the enum */

#define LD_GGUF_DEFAULT_ALIGNMENT 32
/* general.alignment above this is rejected (real files use 32; padding is allocated per tensor). */
#define LD_GGUF_MAX_ALIGNMENT 65536
#define LD_GGUF_MAX_ARRAY_DEPTH 8

/* A GGUF string: not necessarily NUL-free, but always NUL-terminated (a copy). */
typedef struct ld_gguf_str {
    const char *s;
    size_t len;
} ld_gguf_str;

/* A metadata value. Scalars: the value is at raw (little-endian, possibly unaligned) or in
 * str. Arrays: elem_type and count; numeric items are packed at raw; STRING items are in
 * strs[count]; ARRAY items are in items[count]. */
typedef struct ld_gguf_value {
    ld_gguf_type type;
    ld_gguf_type elem_type;
    uint64_t count;
    const uint8_t *raw;
    ld_gguf_str str;
    const ld_gguf_str *strs;
    const struct ld_gguf_value *items;
    const uint8_t *encoded; /* the value's bytes in the file (after the type id) */
    size_t encoded_size;
} ld_gguf_value;

/* Item i of a value, decoded: the scalar itself (i = 0) or element i of an array of numbers or
 * bools. Signed integers land in i64, unsigned ones and bools (0/1) in u64, floats in f64 (as
 * exactly as the type allows). false for strings, arrays of strings or arrays, and i out of range. */
typedef struct ld_gguf_item {
    ld_gguf_type type;
    int64_t i64;
    uint64_t u64;
    double f64;
} ld_gguf_item;
bool ld_gguf_value_item(const ld_gguf_value *v, uint64_t i, ld_gguf_item *out);

typedef struct ld_gguf ld_gguf;

/* Opens (mmaps) and validates a GGUF file (version 2 or 3, little-endian): see
 * docs/formats/gguf.md for the rules. Tensors of GGML types liandan does not compute with
 * (Q5_0, IQ2_XS, I64, ...) are accepted with dtype LD_DTYPE_COUNT; unknown type ids fail. */
ld_status ld_gguf_open(ld_ctx *ctx, const char *path, ld_gguf **out);
ld_status ld_gguf_open_memory(ld_ctx *ctx, const char *name, const void *data, size_t size, ld_gguf **out);
void ld_gguf_close(ld_gguf *g);

uint32_t ld_gguf_version(const ld_gguf *g);
uint32_t ld_gguf_alignment(const ld_gguf *g);
uint64_t ld_gguf_data_offset(const ld_gguf *g); /* file offset of the data section */
size_t ld_gguf_kv_count(const ld_gguf *g);
const char *ld_gguf_kv_key(const ld_gguf *g, size_t i);       /* file order */
const ld_gguf_value *ld_gguf_kv_value(const ld_gguf *g, size_t i);
const ld_gguf_value *ld_gguf_find(const ld_gguf *g, const char *key); /* NULL when absent */

/* Typed getters. A missing key is LD_ERR_NOT_FOUND; a value of another type, or one that
 * does not fit, is LD_ERR_FORMAT naming the key and both types. Integer getters accept any
 * integer type whose value is in range; float getters accept FLOAT32/FLOAT64. */
ld_status ld_gguf_get_int(ld_ctx *ctx, const ld_gguf *g, const char *key, int64_t min, int64_t max, int64_t *out);
ld_status ld_gguf_get_u32(ld_ctx *ctx, const ld_gguf *g, const char *key, uint32_t *out);
ld_status ld_gguf_get_f32(ld_ctx *ctx, const ld_gguf *g, const char *key, float *out);
ld_status ld_gguf_get_bool(ld_ctx *ctx, const ld_gguf *g, const char *key, bool *out);
ld_status ld_gguf_get_str(ld_ctx *ctx, const ld_gguf *g, const char *key, const char **out);
/* Arrays of strings (tokenizer.ggml.tokens, .merges): borrowed. */
ld_status ld_gguf_get_strs(ld_ctx *ctx, const ld_gguf *g, const char *key, const ld_gguf_str **out, size_t *n);
/* Numeric arrays converted into a new ld_alloc'd buffer (caller frees): any integer element
 * type for i32 (values must fit), FLOAT32/FLOAT64 for f32. */
ld_status ld_gguf_get_i32s(ld_ctx *ctx, const ld_gguf *g, const char *key, int32_t **out, size_t *n);
ld_status ld_gguf_get_f32s(ld_ctx *ctx, const ld_gguf *g, const char *key, float **out, size_t *n);

size_t ld_gguf_tensor_count(const ld_gguf *g);
const ld_tensor_info *ld_gguf_tensor_at(const ld_gguf *g, size_t i); /* file order */
const ld_tensor_info *ld_gguf_find_tensor(const ld_gguf *g, const char *name);
ld_status ld_gguf_get_tensor(ld_ctx *ctx, const ld_gguf *g, const char *name, const ld_tensor_info **out);

/* GGML type ids: name and block geometry of every type GGML defines (including those liandan
 * does not compute with); false for unknown ids. */
bool ld_ggml_type_info(int32_t ggml_type, const char **name, int *block_size, int *block_bytes);

/* ---- writer ---- */
typedef struct ld_gguf_writer ld_gguf_writer;
ld_status ld_gguf_writer_new(ld_ctx *ctx, ld_gguf_writer **out);
void ld_gguf_writer_free(ld_gguf_writer *w);
/* Setting an existing key replaces its value in place (key order is insertion order). */
/* Any scalar type (UINT8..FLOAT64, BOOL): ld_gguf_scalar_size bytes, little-endian. */
ld_status ld_gguf_writer_set_scalar(ld_gguf_writer *w, const char *key, ld_gguf_type type, const void *le_bytes);
ld_status ld_gguf_writer_set_u32(ld_gguf_writer *w, const char *key, uint32_t v);
ld_status ld_gguf_writer_set_i32(ld_gguf_writer *w, const char *key, int32_t v);
ld_status ld_gguf_writer_set_u64(ld_gguf_writer *w, const char *key, uint64_t v);
ld_status ld_gguf_writer_set_f32(ld_gguf_writer *w, const char *key, float v);
ld_status ld_gguf_writer_set_bool(ld_gguf_writer *w, const char *key, bool v);
ld_status ld_gguf_writer_set_str(ld_gguf_writer *w, const char *key, const char *v);
/* A numeric array: n items of elem_type, packed little-endian at items. */
ld_status ld_gguf_writer_set_array(ld_gguf_writer *w, const char *key, ld_gguf_type elem_type,
                                   const void *items, size_t n);
ld_status ld_gguf_writer_set_strs(ld_gguf_writer *w, const char *key, const char *const *items, size_t n);
/* Copies a value read by ld_gguf (any type, nested arrays included) byte for byte. */
ld_status ld_gguf_writer_set_value(ld_gguf_writer *w, const char *key, const ld_gguf_value *v);
/* Adds a tensor; shape outermost first; data (nbytes, which must match the type and shape)
 * is borrowed until the write. general.alignment, when set, must be a power of two. */
ld_status ld_gguf_writer_add_tensor(ld_gguf_writer *w, const char *name, int32_t ggml_type, int ndim,
                                    const int64_t *shape, const void *data, size_t nbytes);
/* A tensor whose nbytes are produced at write time: fill(user, dst, nbytes) writes them into a
 * buffer the writer holds for that call only. Tensors are filled in insertion order, one at a
 * time, so a writer of large tensors holds one of them at once; a fill error fails the write
 * (the file is not created) with the tensor named. user is borrowed until the write. */
typedef ld_status (*ld_gguf_fill_fn)(void *user, void *dst, size_t nbytes);
ld_status ld_gguf_writer_add_tensor_fn(ld_gguf_writer *w, const char *name, int32_t ggml_type, int ndim,
                                       const int64_t *shape, size_t nbytes, ld_gguf_fill_fn fill, void *user);
/* Writes version 3: KVs in insertion order, tensor infos in insertion order, each tensor's
 * data at the next aligned offset, zero padding (also after the last tensor). */
ld_status ld_gguf_writer_write(ld_gguf_writer *w, const char *path);
ld_status ld_gguf_writer_write_memory(ld_gguf_writer *w, void **out, size_t *size);

#ifdef __cplusplus
}
#endif
#endif

/* core/endian.h — little-endian loads and stores for the file formats (GGUF, safetensors, token
 * shards, hashes): the one copy every layer uses. Unaligned pointers are fine. */
#ifndef LD_CORE_ENDIAN_H
#define LD_CORE_ENDIAN_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define LD_BSWAP16(x) __builtin_bswap16(x)
#define LD_BSWAP32(x) __builtin_bswap32(x)
#define LD_BSWAP64(x) __builtin_bswap64(x)
#else
#define LD_BSWAP16(x) (x)
#define LD_BSWAP32(x) (x)
#define LD_BSWAP64(x) (x)
#endif

static inline uint16_t ld_le16(const uint8_t *p) {
    uint16_t v;
    memcpy(&v, p, 2);
    return LD_BSWAP16(v);
}
static inline uint32_t ld_le32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return LD_BSWAP32(v);
}
static inline uint64_t ld_le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return LD_BSWAP64(v);
}
static inline void ld_put_le32(uint8_t *p, uint32_t v) {
    v = LD_BSWAP32(v);
    memcpy(p, &v, 4);
}
static inline void ld_put_le64(uint8_t *p, uint64_t v) {
    v = LD_BSWAP64(v);
    memcpy(p, &v, 8);
}

#endif

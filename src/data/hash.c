/* data/hash.c — the data layer's hashes: the 64-bit shard checksum (four FNV-1a lanes over
 * 64-bit words; exact definition in docs/formats/token-shards.md) and the 128-bit document
 * hash used for deduplication and the train/val split. */
#include <string.h>

#include "core/endian.h"
#include "data/data_internal.h"

#define FNV_BASIS 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull


void ld_hash64_init(ld_hash64_state *h) {
    memset(h, 0, sizeof *h);
    for (int i = 0; i < 4; i++) h->lane[i] = FNV_BASIS ^ (uint64_t)i;
}

static inline void absorb_word(ld_hash64_state *h, uint64_t w) {
    uint64_t *l = &h->lane[h->words & 3];
    *l = (*l ^ w) * FNV_PRIME;
    h->words++;
}

void ld_hash64_update(ld_hash64_state *h, const void *data, size_t len) {
    const uint8_t *p = data;
    h->len += len;
    if (h->ntail) {
        while (len && h->ntail < 8) {
            h->tail[h->ntail++] = *p++;
            len--;
        }
        if (h->ntail < 8) return;
        absorb_word(h, ld_le64(h->tail));
        h->ntail = 0;
    }
    /* four independent multiply chains; words stay assigned to lane (index % 4) */
    uint64_t l0 = h->lane[0], l1 = h->lane[1], l2 = h->lane[2], l3 = h->lane[3];
    unsigned rot = (unsigned)(h->words & 3);
    uint64_t *lanes[4] = {&l0, &l1, &l2, &l3};
    while (rot && len >= 8) { /* align to lane 0 */
        *lanes[rot] = (*lanes[rot] ^ ld_le64(p)) * FNV_PRIME;
        h->words++;
        p += 8;
        len -= 8;
        rot = (rot + 1) & 3;
    }
    if (rot == 0) {
        while (len >= 32) {
            l0 = (l0 ^ ld_le64(p)) * FNV_PRIME;
            l1 = (l1 ^ ld_le64(p + 8)) * FNV_PRIME;
            l2 = (l2 ^ ld_le64(p + 16)) * FNV_PRIME;
            l3 = (l3 ^ ld_le64(p + 24)) * FNV_PRIME;
            h->words += 4;
            p += 32;
            len -= 32;
        }
    }
    h->lane[0] = l0, h->lane[1] = l1, h->lane[2] = l2, h->lane[3] = l3;
    while (len >= 8) {
        absorb_word(h, ld_le64(p));
        p += 8;
        len -= 8;
    }
    while (len) {
        h->tail[h->ntail++] = *p++;
        len--;
    }
}

uint64_t ld_hash64_final(const ld_hash64_state *h0) {
    ld_hash64_state h = *h0;
    if (h.ntail) {
        uint8_t w[8] = {0};
        memcpy(w, h.tail, h.ntail);
        absorb_word(&h, ld_le64(w));
    }
    uint64_t r = FNV_BASIS;
    for (int i = 0; i < 4; i++) r = (r ^ h.lane[i]) * FNV_PRIME;
    r = (r ^ h.len) * FNV_PRIME;
    return r;
}

uint64_t ld_hash64(const void *data, size_t len) {
    ld_hash64_state h;
    ld_hash64_init(&h);
    ld_hash64_update(&h, data, len);
    return ld_hash64_final(&h);
}

/* ---- 128-bit document hash: two multiply-rotate chains, finished with a 64-bit avalanche */
static inline uint64_t rotl64(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}
static inline uint64_t fmix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ull;
    k ^= k >> 33;
    return k;
}

ld_hash128 ld_hash128_of(const void *data, size_t len) {
    const uint64_t c1 = 0x87c37b91114253d5ull, c2 = 0x4cf5ad432745937full;
    const uint8_t *p = data;
    uint64_t h1 = 0x9e3779b97f4a7c15ull ^ len, h2 = 0x632be59bd9b4e019ull ^ len;
    size_t n = len;
    while (n >= 16) {
        uint64_t k1 = ld_le64(p), k2 = ld_le64(p + 8);
        k1 *= c1, k1 = rotl64(k1, 31), k1 *= c2, h1 ^= k1;
        h1 = rotl64(h1, 27), h1 += h2, h1 = h1 * 5 + 0x52dce729;
        k2 *= c2, k2 = rotl64(k2, 33), k2 *= c1, h2 ^= k2;
        h2 = rotl64(h2, 31), h2 += h1, h2 = h2 * 5 + 0x38495ab5;
        p += 16;
        n -= 16;
    }
    uint8_t t[16] = {0};
    memcpy(t, p, n);
    uint64_t k1 = ld_le64(t), k2 = ld_le64(t + 8);
    k1 *= c1, k1 = rotl64(k1, 31), k1 *= c2, h1 ^= k1;
    k2 *= c2, k2 = rotl64(k2, 33), k2 *= c1, h2 ^= k2;
    h1 += h2, h2 += h1;
    h1 = fmix64(h1), h2 = fmix64(h2);
    h1 += h2, h2 += h1;
    return (ld_hash128){h1, h2};
}

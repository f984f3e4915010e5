/* tokenizer/strmap.c — open-addressing hash map from byte strings to int64, for vocabularies,
 * merge ranks and word caches. Keys are copied into one growing buffer. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

uint64_t ld_hash_bytes(const void *data, size_t len, uint64_t seed) {
    const unsigned char *p = data;
    uint64_t h = seed ^ 0x9E3779B97F4A7C15ULL ^ (len * 0xff51afd7ed558ccdULL);
    while (len >= 8) {
        uint64_t k;
        memcpy(&k, p, 8);
        h = (h ^ (k * 0xC2B2AE3D27D4EB4FULL)) * 0x9E3779B97F4A7C15ULL;
        h ^= h >> 29;
        p += 8, len -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, p, len);
    h = (h ^ (k * 0xC2B2AE3D27D4EB4FULL)) * 0x9E3779B97F4A7C15ULL;
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    h ^= h >> 32;
    return h ? h : 1;
}

ld_status ld_strmap_init(ld_ctx *ctx, ld_strmap *m, size_t expected) {
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
    size_t cap = 64;
    while (cap < expected * 2) cap *= 2;
    m->cap = cap;
    m->hashes = ld_calloc(ctx, cap, sizeof *m->hashes);
    m->key_off = ld_alloc(ctx, cap * sizeof *m->key_off);
    m->key_len = ld_alloc(ctx, cap * sizeof *m->key_len);
    m->values = ld_alloc(ctx, cap * sizeof *m->values);
    m->keys_cap = 1024;
    m->keys = ld_alloc(ctx, m->keys_cap);
    if (!m->hashes || !m->key_off || !m->key_len || !m->values || !m->keys) {
        ld_strmap_free(m);
        return ld_ctx_status(ctx);
    }
    return LD_OK;
}

void ld_strmap_free(ld_strmap *m) {
    if (!m->ctx) return;
    ld_free(m->ctx, m->hashes), ld_free(m->ctx, m->key_off), ld_free(m->ctx, m->key_len);
    ld_free(m->ctx, m->values), ld_free(m->ctx, m->keys);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(const ld_strmap *m, uint64_t h, const char *key, size_t len) {
    size_t i = h & (m->cap - 1);
    while (m->hashes[i]) {
        if (m->hashes[i] == h && m->key_len[i] == len && !memcmp(m->keys + m->key_off[i], key, len)) return i;
        i = (i + 1) & (m->cap - 1);
    }
    return i;
}

int64_t *ld_strmap_get(const ld_strmap *m, const char *key, size_t len) {
    if (!m->cap) return NULL;
    size_t i = find_slot(m, ld_hash_bytes(key, len, 0), key, len);
    return m->hashes[i] ? &m->values[i] : NULL;
}

static ld_status grow(ld_strmap *m) {
    ld_strmap n = *m;
    size_t cap = m->cap * 2;
    n.cap = cap;
    n.hashes = ld_calloc(m->ctx, cap, sizeof *n.hashes);
    n.key_off = ld_alloc(m->ctx, cap * sizeof *n.key_off);
    n.key_len = ld_alloc(m->ctx, cap * sizeof *n.key_len);
    n.values = ld_alloc(m->ctx, cap * sizeof *n.values);
    if (!n.hashes || !n.key_off || !n.key_len || !n.values) {
        ld_free(m->ctx, n.hashes), ld_free(m->ctx, n.key_off), ld_free(m->ctx, n.key_len), ld_free(m->ctx, n.values);
        return ld_ctx_status(m->ctx);
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->hashes[i]) continue;
        size_t j = m->hashes[i] & (cap - 1);
        while (n.hashes[j]) j = (j + 1) & (cap - 1);
        n.hashes[j] = m->hashes[i], n.key_off[j] = m->key_off[i], n.key_len[j] = m->key_len[i];
        n.values[j] = m->values[i];
    }
    ld_free(m->ctx, m->hashes), ld_free(m->ctx, m->key_off), ld_free(m->ctx, m->key_len), ld_free(m->ctx, m->values);
    *m = n;
    return LD_OK;
}

ld_status ld_strmap_put(ld_strmap *m, const char *key, size_t len, int64_t init, int64_t **slot) {
    uint64_t h = ld_hash_bytes(key, len, 0);
    size_t i = find_slot(m, h, key, len);
    if (m->hashes[i]) {
        *slot = &m->values[i];
        return LD_OK;
    }
    if ((m->count + 1) * 4 > m->cap * 3) {
        ld_status st = grow(m);
        if (st) return st;
        i = find_slot(m, h, key, len);
    }
    if (m->keys_len + len > m->keys_cap) {
        size_t cap = m->keys_cap * 2;
        while (cap < m->keys_len + len) cap *= 2;
        if (cap > UINT32_MAX) return ld_error(m->ctx, LD_ERR_LIMIT, "hash map keys exceed 4 GiB");
        char *k = ld_alloc(m->ctx, cap);
        if (!k) return ld_ctx_status(m->ctx);
        memcpy(k, m->keys, m->keys_len);
        ld_free(m->ctx, m->keys);
        m->keys = k, m->keys_cap = cap;
    }
    memcpy(m->keys + m->keys_len, key, len);
    m->hashes[i] = h, m->key_off[i] = (uint32_t)m->keys_len, m->key_len[i] = (uint32_t)len, m->values[i] = init;
    m->keys_len += len;
    m->count++;
    *slot = &m->values[i];
    return LD_OK;
}

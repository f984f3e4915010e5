/* infer/kv_pages.c — page tables and reference counts of the paged KV cache (kv_pages.h). */
#include "infer/kv_pages.h"

#include <string.h>

static int64_t pages_for(const ld_kv_pages *kv, int64_t len) {
    return (len + kv->page_tokens - 1) / kv->page_tokens;
}

ld_status ld_kv_pages_init(ld_ctx *ctx, ld_kv_pages *kv, int n_slots, int64_t per_slot, int32_t n_pages,
                           int64_t page_tokens) {
    memset(kv, 0, sizeof *kv);
    kv->page_tokens = page_tokens, kv->per_slot = per_slot, kv->n_slots = n_slots;
    kv->n_pages = n_pages, kv->n_free = n_pages;
    kv->ref = ld_calloc(ctx, (size_t)n_pages, sizeof *kv->ref);
    kv->stack = ld_alloc(ctx, (size_t)n_pages * sizeof *kv->stack);
    kv->at = ld_alloc(ctx, (size_t)n_pages * sizeof *kv->at);
    kv->table = ld_alloc(ctx, (size_t)n_slots * (size_t)per_slot * sizeof *kv->table);
    if (!kv->ref || !kv->stack || !kv->at || !kv->table) {
        ld_kv_pages_free(ctx, kv);
        return ld_error(ctx, LD_ERR_NOMEM, "KV cache: cannot allocate the tables of %d pages", (int)n_pages);
    }
    for (int32_t i = 0; i < n_pages; i++) kv->stack[i] = n_pages - 1 - i, kv->at[n_pages - 1 - i] = i;
    for (int64_t i = 0; i < (int64_t)n_slots * per_slot; i++) kv->table[i] = -1;
    return LD_OK;
}

void ld_kv_pages_free(ld_ctx *ctx, ld_kv_pages *kv) {
    ld_free(ctx, kv->ref), ld_free(ctx, kv->stack), ld_free(ctx, kv->at), ld_free(ctx, kv->table);
    kv->ref = kv->stack = kv->at = kv->table = NULL;
    kv->n_pages = kv->n_free = 0;
}

int64_t ld_kv_pages_needed(const ld_kv_pages *kv, int64_t len, int64_t n) {
    return pages_for(kv, len + n) - pages_for(kv, len);
}

/* Takes free page p out of the free stack. */
static int32_t take_page(ld_kv_pages *kv, int32_t p) {
    const int32_t i = kv->at[p], last = kv->stack[--kv->n_free];
    kv->stack[i] = last, kv->at[last] = i;
    kv->at[p] = -1, kv->ref[p] = 1;
    return p;
}

/* A free page to follow page prev (-1: none) in a slot's table (the placement in kv_pages.h);
 * some page is free. */
static int32_t take(ld_kv_pages *kv, int32_t prev) {
    if (prev >= 0 && prev + 1 < kv->n_pages && kv->ref[prev + 1] == 0) return take_page(kv, prev + 1);
    int32_t best = -1, best_len = 0;
    for (int32_t a = 0; a < kv->n_pages;) {
        if (kv->ref[a]) {
            a++;
            continue;
        }
        int32_t b = a;
        while (b < kv->n_pages && kv->ref[b] == 0) b++;
        if (b - a > best_len) best_len = b - a, best = a == 0 ? 0 : a + (b - a) / 2;
        a = b;
    }
    return take_page(kv, best);
}

static void release(ld_kv_pages *kv, int32_t p) {
    if (--kv->ref[p] == 0) kv->at[p] = kv->n_free, kv->stack[kv->n_free++] = p;
}

void ld_kv_pages_grow(ld_kv_pages *kv, int slot, int64_t len, int64_t n) {
    int32_t *t = kv->table + (int64_t)slot * kv->per_slot;
    for (int64_t i = pages_for(kv, len); i < pages_for(kv, len + n); i++) t[i] = take(kv, i ? t[i - 1] : -1);
}

void ld_kv_pages_truncate(ld_kv_pages *kv, int slot, int64_t old_len, int64_t new_len) {
    int32_t *t = kv->table + (int64_t)slot * kv->per_slot;
    for (int64_t i = pages_for(kv, new_len); i < pages_for(kv, old_len); i++) release(kv, t[i]), t[i] = -1;
}

ld_status ld_kv_pages_share(ld_ctx *ctx, ld_kv_pages *kv, int dst, int src, int64_t n, int32_t *copy_from,
                            int32_t *copy_to) {
    int32_t *d = kv->table + (int64_t)dst * kv->per_slot;
    const int32_t *s = kv->table + (int64_t)src * kv->per_slot;
    int64_t full = n / kv->page_tokens;
    *copy_from = *copy_to = -1;
    if (n % kv->page_tokens) {
        if (!kv->n_free)
            return ld_error(ctx, LD_ERR_LIMIT, "KV cache full: no free page to copy a shared prefix into (%d pages)",
                            (int)kv->n_pages);
        *copy_from = s[full], *copy_to = d[full] = take(kv, full ? s[full - 1] : -1);
    }
    for (int64_t i = 0; i < full; i++) d[i] = s[i], kv->ref[s[i]]++;
    return LD_OK;
}

ld_status ld_kv_pages_unshare_last(ld_ctx *ctx, ld_kv_pages *kv, int slot, int64_t len, int32_t *copy_from,
                                   int32_t *copy_to) {
    int32_t *t = kv->table + (int64_t)slot * kv->per_slot;
    int64_t i = len / kv->page_tokens;
    *copy_from = *copy_to = -1;
    if (len % kv->page_tokens == 0 || kv->ref[t[i]] == 1) return LD_OK;
    if (!kv->n_free)
        return ld_error(ctx, LD_ERR_LIMIT, "KV cache full: no free page to cut slot %d at %lld tokens", slot,
                        (long long)len);
    *copy_from = t[i], *copy_to = take(kv, i ? t[i - 1] : -1);
    release(kv, t[i]);
    t[i] = *copy_to;
    return LD_OK;
}

int64_t ld_kv_pages_exclusive(const ld_kv_pages *kv, const bool *slots, int32_t *count) {
    memset(count, 0, (size_t)kv->n_pages * sizeof *count);
    for (int s = 0; s < kv->n_slots; s++)
        for (int64_t i = 0; slots[s] && i < kv->per_slot; i++)
            if (kv->table[(int64_t)s * kv->per_slot + i] >= 0) count[kv->table[(int64_t)s * kv->per_slot + i]]++;
    int64_t n = 0;
    for (int32_t p = 0; p < kv->n_pages; p++) n += kv->ref[p] > 0 && count[p] == kv->ref[p];
    return n;
}

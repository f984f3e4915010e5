/* infer/kv_pages.h — the page tables of a paged KV cache (no tensor data: the session owns
 * the pool of K/V rows and indexes it with these page numbers).
 *
 * A sequence (slot) holding len tokens owns ceil(len / page_tokens) pages, listed in its
 * page table; token at position p lives in row p % page_tokens of page table[p / page_tokens].
 * Pages are reference-counted: ld_kv_pages_share lets a slot reuse another slot's full pages
 * (a shared prompt prefix). Invariant: a page referenced more than once is full in every slot
 * that references it, so appending never writes into a shared page.
 * Placement: a slot's next page is the one after its last when that is free, and a slot's
 * first page (or the next when that one is taken) sits in the middle of the longest run of
 * free pages (at its start when nothing precedes the run), so that sequences growing side by
 * side each keep consecutive page numbers, which the session reads as one run of rows. */
#ifndef LD_INFER_KV_PAGES_H
#define LD_INFER_KV_PAGES_H

#include <stdbool.h>

#include "liandan/core.h"

typedef struct ld_kv_pages {
    int64_t page_tokens; /* tokens per page */
    int64_t per_slot;    /* table entries per slot: ceil(max_len / page_tokens) */
    int n_slots;
    int32_t n_pages, n_free;
    int32_t *ref;   /* [n_pages] references; 0 = free */
    int32_t *stack; /* [n_pages] free page numbers, n_free of them */
    int32_t *at;    /* [n_pages] where a free page is in stack (-1: taken) */
    int32_t *table; /* [n_slots][per_slot] page numbers, -1 = none */
} ld_kv_pages;

/* Sets up tables for n_pages free pages (allocated through ctx). */
ld_status ld_kv_pages_init(ld_ctx *ctx, ld_kv_pages *kv, int n_slots, int64_t per_slot, int32_t n_pages,
                           int64_t page_tokens);
void ld_kv_pages_free(ld_ctx *ctx, ld_kv_pages *kv);
/* Pages a slot holding len tokens needs to take n more. */
int64_t ld_kv_pages_needed(const ld_kv_pages *kv, int64_t len, int64_t n);
/* Gives a slot holding len tokens the pages for n more; the caller checked that
 * ld_kv_pages_needed() pages are free. */
void ld_kv_pages_grow(ld_kv_pages *kv, int slot, int64_t len, int64_t n);
/* Releases the pages of a slot beyond the first new_len tokens (it held old_len). */
void ld_kv_pages_truncate(ld_kv_pages *kv, int slot, int64_t old_len, int64_t new_len);
/* The page holding position pos of slot. */
static inline int32_t ld_kv_pages_at(const ld_kv_pages *kv, int slot, int64_t pos) {
    return kv->table[(int64_t)slot * kv->per_slot + pos / kv->page_tokens];
}
/* Empty slot dst takes the first n tokens of slot src: their whole pages are shared; when n
 * ends inside a page, a fresh page is taken for dst and *copy_from / *copy_to name the pages
 * whose first n % page_tokens rows the caller must copy (else *copy_to = -1). LD_ERR_LIMIT
 * when no page is free for that copy (then dst stays empty). */
ld_status ld_kv_pages_share(ld_ctx *ctx, ld_kv_pages *kv, int dst, int src, int64_t n, int32_t *copy_from,
                            int32_t *copy_to);
/* Before a slot is cut to len tokens: when len ends inside a page that other slots also
 * hold, the slot gets a fresh page in its place and the caller copies the first
 * len % page_tokens rows of *copy_from into *copy_to (else *copy_to = -1). LD_ERR_LIMIT when
 * no page is free. */
ld_status ld_kv_pages_unshare_last(ld_ctx *ctx, ld_kv_pages *kv, int slot, int64_t len, int32_t *copy_from,
                                   int32_t *copy_to);

/* Pages referenced only by the slots flagged in slots[n_slots] (what emptying them would free).
 * count: scratch of n_pages ints. */
int64_t ld_kv_pages_exclusive(const ld_kv_pages *kv, const bool *slots, int32_t *count);

#endif

/*
 * limit.c -- lock-free insert-only hash tables for per-user limits and
 * idempotency keys. Linear probing on a 64-bit hash keeps a probe within one
 * or two cache lines; entries are never deleted, so a probe that meets an
 * empty tag has proven the key absent. See limit.h for the entry protocol.
 */
#include "limit.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "mem.h"

#define TAG_EMPTY 0u
#define TAG_BUSY 1u

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#else
#define cpu_relax() ((void)0)
#endif

int lim_init(lim_table *t, uint32_t capacity) {
  memset(t, 0, sizeof(*t));
  if (capacity < 4 || capacity > (1u << 30) || (capacity & (capacity - 1)) != 0)
    return -1;
  size_t bytes = (size_t)capacity * sizeof(lim_entry);
  void *m = mem_populated(bytes); /* probed at random: see mem.h */
  if (m == NULL) return -1;
  t->e = m;
  t->bytes = bytes;
  t->mask = capacity - 1;
  t->max_used = capacity / 4 * 3;
  return 0;
}

void lim_free(lim_table *t) {
  if (t->e != NULL) mem_free(t->e, t->bytes);
  t->e = NULL;
}

uint32_t lim_used(const lim_table *t) {
  /* relaxed: a count for reporting. */
  return atomic_load_explicit(&t->used, memory_order_relaxed);
}

uint64_t lim_tag(uint64_t k1, uint64_t k2) {
  uint64_t k[2] = {k1, k2};
  uint64_t h = XXH3_64bits(k, sizeof(k));
  return h > TAG_BUSY ? h : h + 2;
}

/* Wait out a claim in progress; returns the published tag. */
static uint64_t wait_claimed(lim_entry *e) {
  uint64_t tag;
  /* acquire: pairs with the release that publishes the tag in lim_upsert. */
  while ((tag = atomic_load_explicit(&e->tag, memory_order_acquire)) == TAG_BUSY)
    cpu_relax();
  return tag;
}

static uint32_t probe(lim_table *t, uint64_t k1, uint64_t k2, uint64_t tag, int insert) {
  uint32_t i = lim_home(t, tag);
  for (uint32_t n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
    lim_entry *e = &t->e[i];
    /* acquire: pairs with the release that publishes the tag; k1/k2 are
     * written before it. */
    uint64_t cur = atomic_load_explicit(&e->tag, memory_order_acquire);
    for (;;) {
      if (cur == TAG_BUSY) cur = wait_claimed(e);
      if (cur != TAG_EMPTY) break;
      if (!insert) return LIM_FULL;
      /* acquire: pairs with the release increment below. An insert counts
       * only after its claim, so a claim in flight never refuses a key that
       * fits; racing inserters can pass the bound by one each, and the
       * quarter left free keeps probes short and finite regardless. */
      if (atomic_load_explicit(&t->used, memory_order_acquire) >= t->max_used) {
        /* at the bound, unless someone is claiming this very slot (maybe
         * for our key): look again before refusing */
        cur = atomic_load_explicit(&e->tag, memory_order_acquire);
        if (cur != TAG_EMPTY) continue;
        return LIM_FULL;
      }
      /* acquire on failure: the winner's tag may be the one we want (and
       * C11 wants success at least as strong). */
      if (atomic_compare_exchange_strong_explicit(&e->tag, &cur, TAG_BUSY,
                                                  memory_order_acquire,
                                                  memory_order_acquire)) {
        e->k1 = k1;
        e->k2 = k2;
        /* relaxed: published by the tag store below. */
        atomic_store_explicit(&e->val, 0, memory_order_relaxed);
        /* release: pairs with the acquire loads of the tag in probe and
         * wait_claimed; the key is complete before the tag names it. */
        atomic_store_explicit(&e->tag, tag, memory_order_release);
        /* release: pairs with the acquire load of used above; a thread that
         * sees this count sees the claim that made it. */
        atomic_fetch_add_explicit(&t->used, 1, memory_order_release);
        return i;
      }
      /* lost the race for this slot: look at what the winner put there */
    }
    if (cur == tag && e->k1 == k1 && e->k2 == k2) return i;
  }
  return LIM_FULL; /* unreachable while max_used < capacity */
}

uint32_t lim_upsert(lim_table *t, uint64_t k1, uint64_t k2) {
  return probe(t, k1, k2, lim_tag(k1, k2), 1);
}

uint32_t lim_upsert_tag(lim_table *t, uint64_t k1, uint64_t k2, uint64_t tag) {
  return probe(t, k1, k2, tag, 1);
}

uint32_t lim_find(lim_table *t, uint64_t k1, uint64_t k2) {
  return probe(t, k1, k2, lim_tag(k1, k2), 0);
}

uint32_t lim_find_tag(lim_table *t, uint64_t k1, uint64_t k2, uint64_t tag) {
  return probe(t, k1, k2, tag, 0);
}

int lim_take(lim_entry *e, uint32_t qty, uint32_t limit) {
  /* relaxed: a counter whose invariant lives in its own modification order. */
  uint64_t c = atomic_load_explicit(&e->val, memory_order_relaxed);
  do {
    if (c + qty > limit) return -1;
  } while (!atomic_compare_exchange_weak_explicit(&e->val, &c, c + qty, memory_order_relaxed,
                                                  memory_order_relaxed));
  return 0;
}

void lim_give(lim_entry *e, uint32_t qty) {
  /* relaxed: see lim_take. */
  uint64_t c = atomic_fetch_sub_explicit(&e->val, qty, memory_order_relaxed);
  assert(c >= qty);
  (void)c;
}

uint64_t lim_key_claim(lim_entry *e) {
  uint64_t v = LIM_KEY_FREE;
  /* acquire (success and failure): a bound order id read here must see the
   * binder's writes; pairs with the release in lim_key_set. */
  if (atomic_compare_exchange_strong_explicit(&e->val, &v, LIM_KEY_PENDING,
                                              memory_order_acquire, memory_order_acquire))
    return LIM_KEY_FREE;
  return v;
}

void lim_key_set(lim_entry *e, uint64_t order_id) {
  assert(atomic_load(&e->val) == LIM_KEY_PENDING);
  assert(order_id == LIM_KEY_FREE || order_id > LIM_KEY_PENDING);
  /* release: pairs with the acquire in lim_key_claim / lim_val. */
  atomic_store_explicit(&e->val, order_id, memory_order_release);
}

void lim_key_unbind(lim_entry *e, uint64_t order_id) {
  uint64_t v = order_id;
  /* release: pairs with the acquire in lim_key_claim / lim_val. */
  atomic_compare_exchange_strong_explicit(&e->val, &v, LIM_KEY_FREE, memory_order_release,
                                          memory_order_relaxed);
}

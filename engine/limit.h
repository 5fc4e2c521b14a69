/*
 * limit.h -- the per-user and idempotency tables: fixed-size open-addressing
 * hash tables that many producer threads probe and insert into without
 * locks, and that never delete.
 *
 * An entry is 32 bytes: a tag (0 empty, 1 being claimed, else a hash of the
 * key), the full 128-bit key, and one 64-bit atomic value. An insert claims
 * an empty slot with one CAS on the tag, writes the key, then publishes the
 * real tag; a prober that meets a claim in progress waits for those few
 * stores. Comparing the full key after the tag means a hash collision costs
 * a probe, never a wrong answer.
 *
 *  buyers: key (user id, event slot) -> units the user holds (reserved +
 *          paid). lim_take adds qty only while the result stays within the
 *          event's limit (I3); cancel and expiry give units back.
 *  keys:   key (XXH3-128 of the idempotency key, seeded with the event id)
 *          -> LIM_KEY_FREE, LIM_KEY_PENDING (a reserve in progress on some
 *          thread) or the order id it made (I4).
 *
 * Bounds: capacity slots (a power of two); inserts stop at 3/4 full with
 * LIM_FULL (concurrent inserters may each pass it by one), so probe chains
 * stay short and always end. Memory is
 * 32 bytes x capacity, mapped and touched at open (resident from then on).
 */
#ifndef SPIKE_LIMIT_H
#define SPIKE_LIMIT_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define LIM_FULL UINT32_MAX
#define LIM_KEY_FREE 0u
#define LIM_KEY_PENDING 1u

typedef struct lim_entry {
  _Atomic uint64_t tag;
  uint64_t k1;
  uint64_t k2;
  _Atomic uint64_t val;
} lim_entry;

_Static_assert(sizeof(lim_entry) == 32, "two entries per cache line");

typedef struct lim_table {
  lim_entry *e;
  size_t bytes;
  uint32_t mask;
  uint32_t max_used;          /* 3/4 of capacity */
  alignas(64) _Atomic uint32_t used;
} lim_table;

/* capacity: a power of two, 4 .. 1<<30. -1 when not, or out of memory. */
int lim_init(lim_table *t, uint32_t capacity);
void lim_free(lim_table *t);


/* Index of the entry for (k1, k2), inserting it (val 0) when absent;
 * LIM_FULL when absent and the table is at its bound. Any thread. */
uint32_t lim_upsert(lim_table *t, uint64_t k1, uint64_t k2);
/* The hash a probe for (k1, k2) starts from. Any thread. */
uint64_t lim_tag(uint64_t k1, uint64_t k2);
/* lim_upsert for the tag lim_tag(k1, k2) gave (not checked): a caller that
 * asked for the entry's line early (lim_prefetch) need not hash twice. */
uint32_t lim_upsert_tag(lim_table *t, uint64_t k1, uint64_t k2, uint64_t tag);
/* The slot a probe for tag looks at first. */
static inline uint32_t lim_home(const lim_table *t, uint64_t tag) {
  return (uint32_t)tag & t->mask;
}
/* Ask for the cache line a probe for tag starts at, to be written: a
 * caller with other work to do first lets the miss, and another table's,
 * run beside it instead of one after the other. Any thread. */
static inline void lim_prefetch(const lim_table *t, uint64_t tag) {
  __builtin_prefetch(&t->e[lim_home(t, tag)], 1);
}
/* Index of the entry for (k1, k2), or LIM_FULL when absent. Any thread. */
uint32_t lim_find(lim_table *t, uint64_t k1, uint64_t k2);
/* lim_find for the tag lim_tag(k1, k2) gave (not checked). */
uint32_t lim_find_tag(lim_table *t, uint64_t k1, uint64_t k2, uint64_t tag);

static inline lim_entry *lim_at(lim_table *t, uint32_t i) { return &t->e[i]; }
static inline uint32_t lim_capacity(const lim_table *t) { return t->mask + 1; }
uint32_t lim_used(const lim_table *t);
/* Room for one more entry (a hint: concurrent inserters may pass it). */
static inline int lim_room(lim_table *t) {
  /* relaxed: a bound, read as a hint */
  return atomic_load_explicit(&t->used, memory_order_relaxed) < t->max_used;
}

/* buyers: add qty to the entry's count if the result is <= limit. 0 or -1. */
int lim_take(lim_entry *e, uint32_t qty, uint32_t limit);
/* buyers: subtract qty (it must be held). */
void lim_give(lim_entry *e, uint32_t qty);
/* buyers: the units held now (a hint: lim_take decides). */
static inline uint64_t lim_held(lim_entry *e) {
  /* relaxed: as in lim_take. */
  return atomic_load_explicit(&e->val, memory_order_relaxed);
}

/* keys: claim a free key for this thread. Returns LIM_KEY_FREE when the
 * caller now holds it (value PENDING); otherwise the value it had: PENDING
 * (another reserve is in progress) or the order id. */
uint64_t lim_key_claim(lim_entry *e);
/* keys: bind a held key to its order, or let it go (order 0). */
void lim_key_set(lim_entry *e, uint64_t order_id);
/* keys: unbind the key from order_id if it still names it (commit failed). */
void lim_key_unbind(lim_entry *e, uint64_t order_id);
static inline uint64_t lim_val(lim_entry *e) {
  /* acquire: pairs with the release in lim_key_set / lim_key_unbind. */
  return atomic_load_explicit(&e->val, memory_order_acquire);
}

#endif /* SPIKE_LIMIT_H */

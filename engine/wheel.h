/*
 * wheel.h -- a hierarchical timing wheel for reservation deadlines.
 *
 * Five levels of 64 slots at 1 ms resolution cover 2^30 ms (12.4 days), more
 * than SPIKE_PAY_TIMEOUT_MAX_S. Arming is O(1): pick a level by how far away
 * the deadline is and push onto that slot's list. Advancing the clock walks
 * millisecond ticks; when level 0 wraps, the next level-1 slot is cascaded
 * down, and so on up (the scheme of Varghese and Lauck, as Linux timers use
 * it). Entries never leave early: an entry fires at the first advance whose
 * time is >= its deadline, and lands on a FIFO "due" list the owner pops.
 *
 * Entries are doubly linked and indexed by order id, so a paid or cancelled
 * reservation is disarmed in O(1) and its entry is free at once: the pool
 * bounds the reservations that are live, not those whose deadline has yet
 * to pass.
 *
 * The clock may step (the writer runs the wheel on the wall clock, the one
 * deadlines are promised in). An advance far beyond the wheel's time (more
 * than WHEEL_WALK_MAX_MS) does not walk every millisecond: it re-places
 * every pending entry once and sorts the ones that came due, O(n log n) in
 * the entries instead of O(gap). An advance to a time before the wheel's
 * re-places every pending entry relative to it, so a deadline armed after
 * a step back is not due early: entries fire when the clock reaches their
 * deadline, whichever way it moved in between.
 *
 * Single-threaded: owned by the writer. Bounds: capacity entries of
 * 32 bytes plus 12 bytes of index and scratch each, allocated at init; the
 * index and the pool's first WHEEL_POPULATE_ENTRIES entries are touched then, the
 * rest of the pool as it fills. wheel_arm fails when all are in use.
 */
#ifndef SPIKE_WHEEL_H
#define SPIKE_WHEEL_H

#include <stdint.h>

#define WHEEL_LEVELS 5
#define WHEEL_BITS 6
#define WHEEL_SLOTS (1u << WHEEL_BITS)
#define WHEEL_SPAN_MS (1ll << (WHEEL_LEVELS * WHEEL_BITS))
#define WHEEL_NONE UINT32_MAX
#define WHEEL_WALK_MAX_MS 65536
/* Pool entries populated at init (64 MiB); the rest fault in as used. */
#define WHEEL_POPULATE_ENTRIES (1u << 21)

typedef struct wheel_entry {
  uint64_t order_id;
  int64_t deadline_ms;
  uint32_t next, prev;
  uint32_t list; /* the list it is on: level * WHEEL_SLOTS + slot, DUE or FREE */
  uint32_t pad_;
} wheel_entry;

typedef struct wheel {
  wheel_entry *pool;
  uint32_t capacity;
  uint32_t used;
  uint32_t free_head; /* recycled entries */
  uint32_t fresh;     /* entries [fresh, capacity) were never used */
  int64_t cur_ms; /* the next tick to process */
  uint32_t head[WHEEL_LEVELS * WHEEL_SLOTS + 1]; /* the slots, then the due list */
  uint32_t due_tail;
  uint32_t pending;   /* entries in slots (not due) */
  uint32_t *index;    /* order id -> entry, open addressing, WHEEL_NONE empty */
  uint32_t index_mask;
  uint32_t *scratch;  /* capacity entries, for a long advance */
} wheel;

/* capacity >= 1. now_ms: the wheel's start time. -1 out of memory. */
int wheel_init(wheel *w, uint32_t capacity, int64_t now_ms);
void wheel_free(wheel *w);

/* Grow the pool to capacity entries (recovery only). 0, or -1. */
int wheel_grow(wheel *w, uint32_t capacity);

/* Arm a deadline for an order that is not armed: 0, or -1 when every entry
 * is in use. A deadline before the wheel's next tick (the start time, then
 * the last advance + 1) goes straight to the due list; any other is due at
 * the first wheel_advance to a time >= it. */
int wheel_arm(wheel *w, uint64_t order_id, int64_t deadline_ms);

/* Disarm an order's entry, due or not: 0, or -1 when it is not armed. */
int wheel_cancel(wheel *w, uint64_t order_id);

/* Move every entry with deadline <= now_ms to the due list, oldest first.
 * now_ms may be earlier than the last advance (a clock step). */
void wheel_advance(wheel *w, int64_t now_ms);

/* Pop the oldest due entry: 1 with *order_id / *deadline_ms set, or 0. */
int wheel_pop(wheel *w, uint64_t *order_id, int64_t *deadline_ms);

/* The earliest time something may become due: now when entries are due,
 * INT64_MAX when the wheel is empty; otherwise a time <= the earliest
 * deadline (the next level-0 entry or the next cascade). */
int64_t wheel_next_ms(const wheel *w);

static inline uint32_t wheel_used(const wheel *w) { return w->used; }

/* Where order_id's index slot starts: for a prefetch ahead of an arm. */
static inline const uint32_t *wheel_index_at(const wheel *w, uint64_t order_id) {
  return &w->index[(uint32_t)((order_id * 0x9E3779B97F4A7C15ull) >> 32) & w->index_mask];
}
static inline int wheel_has_due(const wheel *w) {
  return w->head[WHEEL_LEVELS * WHEEL_SLOTS] != WHEEL_NONE;
}

#endif /* SPIKE_WHEEL_H */

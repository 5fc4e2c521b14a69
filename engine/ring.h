/*
 * ring.h -- a bounded lock-free single-producer / single-consumer ring.
 *
 * Every producer thread owns one submission ring into the writer, and the
 * writer owns one completion ring back to each producer. Slots are written
 * in place (acquire a slot, fill it, publish) so a message is never copied
 * twice. Indices run free as uint32_t and are masked on use, so full and
 * empty need no spare slot. Each side keeps a private copy of the other
 * side's index and reloads it only when the ring looks full (producer) or
 * empty (consumer): in steady state the two cores share no cache line but
 * the slots themselves.
 *
 * Bounds: capacity is a power of two, 2 .. 1<<30 slots. A full ring is
 * reported (ring_acquire returns NULL), never waited on.
 */
#ifndef SPIKE_RING_H
#define SPIKE_RING_H

#include <assert.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RING_CACHE_LINE 64
#define RING_CAPACITY_MAX (1u << 30)

typedef struct ring {
  /* Producer's line: its index and its view of the consumer's. */
  alignas(RING_CACHE_LINE) _Atomic uint32_t tail;
  uint32_t head_seen;
  /* Consumer's line. */
  alignas(RING_CACHE_LINE) _Atomic uint32_t head;
  uint32_t tail_seen;
  /* Read-only after init. */
  alignas(RING_CACHE_LINE) uint32_t mask;
  uint32_t elem_size;
  unsigned char *slots;
} ring;

_Static_assert(sizeof(ring) == 3 * RING_CACHE_LINE, "ring sides share a line");

static inline int ring_is_pow2(uint32_t n) { return n >= 2 && (n & (n - 1)) == 0; }

/* 0, or -1 when capacity is not a power of two in range or memory is short. */
static inline int ring_init(ring *r, uint32_t capacity, uint32_t elem_size) {
  memset(r, 0, sizeof(*r));
  if (!ring_is_pow2(capacity) || capacity > RING_CAPACITY_MAX || elem_size == 0)
    return -1;
  size_t bytes = (size_t)capacity * elem_size;
  bytes = (bytes + RING_CACHE_LINE - 1) & ~(size_t)(RING_CACHE_LINE - 1);
  r->slots = aligned_alloc(RING_CACHE_LINE, bytes);
  if (r->slots == NULL) return -1;
  r->mask = capacity - 1;
  r->elem_size = elem_size;
  return 0;
}

static inline void ring_free(ring *r) {
  free(r->slots);
  r->slots = NULL;
}

static inline uint32_t ring_capacity(const ring *r) { return r->mask + 1; }

/* Producer: a free slot to fill, or NULL when the ring is full. */
static inline void *ring_acquire(ring *r) {
  /* relaxed: only this thread writes tail. */
  uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
  if (tail - r->head_seen > r->mask) {
    /* acquire: pairs with the consumer's release in ring_release, so the
     * slots it gave back are no longer being read. */
    r->head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
    if (tail - r->head_seen > r->mask) return NULL;
  }
  return r->slots + (size_t)(tail & r->mask) * r->elem_size;
}

/* Producer: make the slot from the last ring_acquire visible. */
static inline void ring_publish(ring *r) {
  uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
  assert(tail - r->head_seen <= r->mask);
  /* release: pairs with the consumer's acquire in ring_peek; the slot's
   * contents are written before the index that exposes them. */
  atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
}

/* Producer: ring_publish as a seq_cst store, for a producer that next
 * loads a "consumer is asleep" flag (Dekker's handshake; see
 * engine_wake_writer). */
static inline void ring_publish_sc(ring *r) {
  uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
  assert(tail - r->head_seen <= r->mask);
  atomic_store_explicit(&r->tail, tail + 1, memory_order_seq_cst);
}

/* Consumer: 1 when slots are ready, as a seq_cst load, for a consumer that
 * has just stored its "asleep" flag (the other half of the handshake). */
static inline int ring_pending_sc(const ring *r) {
  /* relaxed: only the consumer writes head. */
  uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  return atomic_load_explicit(&r->tail, memory_order_seq_cst) != head;
}

/* Consumer: how many slots are ready to read. */
static inline uint32_t ring_peek(ring *r) {
  /* relaxed: only this thread writes head. */
  uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  if (r->tail_seen == head) {
    /* acquire: pairs with the release in ring_publish. */
    r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire);
  }
  assert(r->tail_seen - head <= r->mask + 1);
  return r->tail_seen - head;
}

/* Consumer: the i-th ready slot (i < ring_peek()). */
static inline void *ring_at(ring *r, uint32_t i) {
  uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  assert(i < r->tail_seen - head);
  return r->slots + (size_t)((head + i) & r->mask) * r->elem_size;
}

/* Consumer: give n read slots back to the producer. */
static inline void ring_release(ring *r, uint32_t n) {
  uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  assert(n <= r->tail_seen - head);
  /* release: pairs with the producer's acquire in ring_acquire; reads of
   * these slots happen before the producer may overwrite them. */
  atomic_store_explicit(&r->head, head + n, memory_order_release);
}

/* Any thread: an approximate fill level, for metrics and health. */
static inline uint32_t ring_depth(const ring *r) {
  /* relaxed: a snapshot for reporting; no data is read through it. */
  uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
  uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
  uint32_t d = tail - head;
  return d > r->mask + 1 ? 0 : d;
}

#endif /* SPIKE_RING_H */

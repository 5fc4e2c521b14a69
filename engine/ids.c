/*
 * ids.c -- per-producer time-ordered id generator. See ids.h for the layout
 * and the restart rule. Deliberately no shared counter: a CAS on one global
 * word would be the only cache line every producer writes per order.
 */
#include "ids.h"

#include <assert.h>

void ids_init(ids *g, uint32_t producer, int64_t floor_ms) { ids_resume(g, producer, floor_ms, 0); }

void ids_resume(ids *g, uint32_t producer, int64_t floor_ms, uint64_t last) {
  assert(producer < IDS_PRODUCERS);
  assert(floor_ms >= 0);
  assert(last == 0 || ids_ms(last) < floor_ms); /* the first id is above last */
  g->ms = floor_ms;
  g->seq = 0;
  g->producer = producer;
  /* relaxed: the writer reads it only as a high-water mark (ids_next). */
  atomic_store_explicit(&g->last, last, memory_order_relaxed);
}

uint64_t ids_next(ids *g, int64_t now_ms) {
  if (now_ms > g->ms) {
    g->ms = now_ms;
    g->seq = 0;
  } else if (g->seq > IDS_SEQ_MAX) {
    g->ms++; /* borrow the next millisecond; see ids.h */
    g->seq = 0;
  }
  uint64_t id = ((uint64_t)g->ms << IDS_MS_SHIFT) |
                ((uint64_t)g->producer << IDS_SEQ_BITS) | g->seq++;
  assert(id > atomic_load_explicit(&g->last, memory_order_relaxed));
  /* relaxed: the writer reads this only as a high-water mark to persist; a
   * stale value is safe because the restart gap covers it (ids.h). */
  atomic_store_explicit(&g->last, id, memory_order_relaxed);
  return id;
}

int64_t ids_floor_ms(uint64_t hwm, int64_t now_ms) {
  int64_t after = ids_ms(hwm) + IDS_RESTART_GAP_MS;
  return now_ms > after ? now_ms : after;
}

/*
 * wheel.c -- hierarchical timing wheel; see wheel.h. Entries live in one
 * preallocated pool linked by index, so arming never allocates and a slot is
 * a 4-byte list head.
 */
#include "wheel.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int wheel_init(wheel *w, uint32_t capacity, int64_t now_ms) {
  memset(w, 0, sizeof(*w));
  if (capacity == 0 || capacity == WHEEL_NONE) return -1;
  w->pool = malloc(sizeof(wheel_entry) * capacity);
  if (w->pool == NULL) return -1;
  w->capacity = capacity;
  for (uint32_t i = 0; i < capacity; i++) w->pool[i].next = i + 1 < capacity ? i + 1 : WHEEL_NONE;
  w->free_head = 0;
  w->cur_ms = now_ms;
  for (int l = 0; l < WHEEL_LEVELS; l++)
    for (uint32_t s = 0; s < WHEEL_SLOTS; s++) w->slot[l][s] = WHEEL_NONE;
  w->due_head = w->due_tail = WHEEL_NONE;
  return 0;
}

void wheel_free(wheel *w) {
  free(w->pool);
  w->pool = NULL;
}

int wheel_grow(wheel *w, uint32_t capacity) {
  if (capacity <= w->capacity || capacity == WHEEL_NONE) return -1;
  wheel_entry *pool = realloc(w->pool, sizeof(wheel_entry) * capacity);
  if (pool == NULL) return -1;
  w->pool = pool;
  /* Entries link by index, so the move keeps every list intact; the new
   * entries go on the free list. */
  for (uint32_t i = w->capacity; i < capacity; i++)
    pool[i].next = i + 1 < capacity ? i + 1 : w->free_head;
  w->free_head = w->capacity;
  w->capacity = capacity;
  return 0;
}

static void due_push(wheel *w, uint32_t i) {
  w->pool[i].next = WHEEL_NONE;
  if (w->due_tail == WHEEL_NONE)
    w->due_head = i;
  else
    w->pool[w->due_tail].next = i;
  w->due_tail = i;
}

/* Link entry i into the slot its deadline belongs to, relative to cur_ms. */
static void place(wheel *w, uint32_t i) {
  int64_t deadline = w->pool[i].deadline_ms;
  if (deadline < w->cur_ms) {
    due_push(w, i);
    return;
  }
  int64_t delta = deadline - w->cur_ms;
  if (delta >= WHEEL_SPAN_MS) {
    /* Farther than the wheel reaches: park in the top level's farthest slot;
     * each cascade re-places it until it fits. */
    deadline = w->cur_ms + WHEEL_SPAN_MS - 1;
    delta = WHEEL_SPAN_MS - 1;
  }
  int level = 0;
  while (level < WHEEL_LEVELS - 1 && delta >= (1ll << ((level + 1) * WHEEL_BITS))) level++;
  uint32_t s = (uint32_t)(deadline >> (level * WHEEL_BITS)) & (WHEEL_SLOTS - 1);
  w->pool[i].next = w->slot[level][s];
  w->slot[level][s] = i;
  w->pending++;
}

int wheel_arm(wheel *w, uint64_t order_id, int64_t deadline_ms) {
  if (w->free_head == WHEEL_NONE) return -1;
  uint32_t i = w->free_head;
  w->free_head = w->pool[i].next;
  w->used++;
  assert(w->used <= w->capacity);
  w->pool[i].order_id = order_id;
  w->pool[i].deadline_ms = deadline_ms;
  place(w, i);
  return 0;
}

/* Re-place every entry of one slot (a cascade). */
static void cascade(wheel *w, int level, uint32_t s) {
  uint32_t i = w->slot[level][s];
  w->slot[level][s] = WHEEL_NONE;
  while (i != WHEEL_NONE) {
    uint32_t next = w->pool[i].next;
    assert(w->pending > 0);
    w->pending--;
    place(w, i);
    i = next;
  }
}

/* Process the tick cur_ms, then step to the next. */
static void tick(wheel *w) {
  int64_t t = w->cur_ms;
  /* When a level's index wraps to 0, the next level's slot for this round
   * comes down first (Linux's cascade order). */
  for (int level = 1; level < WHEEL_LEVELS; level++) {
    if ((t & ((1ll << (level * WHEEL_BITS)) - 1)) != 0) break;
    cascade(w, level, (uint32_t)(t >> (level * WHEEL_BITS)) & (WHEEL_SLOTS - 1));
  }
  uint32_t s = (uint32_t)t & (WHEEL_SLOTS - 1);
  uint32_t i = w->slot[0][s];
  w->slot[0][s] = WHEEL_NONE;
  while (i != WHEEL_NONE) {
    uint32_t next = w->pool[i].next;
    assert(w->pool[i].deadline_ms <= t);
    w->pending--;
    due_push(w, i);
    i = next;
  }
  w->cur_ms = t + 1;
}

void wheel_advance(wheel *w, int64_t now_ms) {
  while (w->cur_ms <= now_ms) {
    if (w->pending == 0) {
      /* Nothing in the slots: jump, keeping level indexes meaningful
       * because every placement is relative to cur_ms. */
      w->cur_ms = now_ms + 1;
      return;
    }
    tick(w);
  }
}

int wheel_pop(wheel *w, uint64_t *order_id, int64_t *deadline_ms) {
  uint32_t i = w->due_head;
  if (i == WHEEL_NONE) return 0;
  w->due_head = w->pool[i].next;
  if (w->due_head == WHEEL_NONE) w->due_tail = WHEEL_NONE;
  *order_id = w->pool[i].order_id;
  *deadline_ms = w->pool[i].deadline_ms;
  w->pool[i].order_id = 0; /* poison: a reuse without re-arming shows */
  w->pool[i].next = w->free_head;
  w->free_head = i;
  assert(w->used > 0);
  w->used--;
  return 1;
}

int64_t wheel_next_ms(const wheel *w) {
  if (w->due_head != WHEEL_NONE) return w->cur_ms - 1;
  if (w->pending == 0) return INT64_MAX;
  for (uint32_t k = 0; k < WHEEL_SLOTS; k++) {
    int64_t t = w->cur_ms + k;
    /* a cascade at t (the next tick included) may bring entries due at t */
    if ((t & (WHEEL_SLOTS - 1)) == 0) return t;
    if (w->slot[0][t & (WHEEL_SLOTS - 1)] != WHEEL_NONE) return t;
  }
  return w->cur_ms + WHEEL_SLOTS;
}

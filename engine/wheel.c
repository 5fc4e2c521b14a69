/*
 * wheel.c -- hierarchical timing wheel; see wheel.h. Entries live in one
 * preallocated pool linked by index, so arming never allocates and a slot is
 * a 4-byte list head. The order-id index is linear probing with
 * backward-shift deletion: no tombstones, so probe chains stay as short as
 * the load (at most one half) allows. The index, probed at random, is
 * populated at init (mem.h); the pool is handed out from a high-water mark
 * before any entry is recycled and faults in as it fills, so a large
 * --max-reserved costs address space, not start-up time.
 */
#define _GNU_SOURCE
#include "wheel.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

#define LIST_DUE ((uint32_t)(WHEEL_LEVELS * WHEEL_SLOTS))
#define LIST_FREE (LIST_DUE + 1)

/* ---- the order-id index ------------------------------------------------
 * Slots hold entry + 1, so 0 is empty and zeroed memory an empty index. */

static uint32_t index_home(const wheel *w, uint64_t order_id) {
  return (uint32_t)(wheel_index_at(w, order_id) - w->index);
}

static size_t index_bytes(const wheel *w) { return ((size_t)w->index_mask + 1) * sizeof(uint32_t); }

static int index_build(wheel *w, uint32_t capacity) {
  uint32_t size = 2;
  while (size < capacity * 2ull && size < (1u << 31)) size <<= 1;
  uint32_t *index = mem_populated((size_t)size * sizeof(uint32_t));
  if (index == NULL) return -1;
  if (w->index != NULL) mem_free(w->index, index_bytes(w));
  w->index = index;
  w->index_mask = size - 1;
  return 0;
}

static uint32_t index_find(const wheel *w, uint64_t order_id, uint32_t *pos) {
  for (uint32_t h = index_home(w, order_id);; h = (h + 1) & w->index_mask) {
    uint32_t i = w->index[h];
    if (i == 0 || w->pool[i - 1].order_id == order_id) {
      *pos = h;
      return i == 0 ? WHEEL_NONE : i - 1;
    }
  }
}

static void index_put(wheel *w, uint32_t i) {
  uint32_t pos;
  uint32_t found = index_find(w, w->pool[i].order_id, &pos);
  assert(found == WHEEL_NONE); /* an order is armed at most once */
  (void)found;
  w->index[pos] = i + 1;
}

static void index_del(wheel *w, uint32_t pos) {
  /* Backward shift: pull later members of the chain into the hole. */
  uint32_t hole = pos;
  for (uint32_t h = (pos + 1) & w->index_mask;; h = (h + 1) & w->index_mask) {
    uint32_t i = w->index[h];
    if (i == 0) break;
    uint32_t home = index_home(w, w->pool[i - 1].order_id);
    /* i may move to the hole when its home is not in (hole, h]. */
    if (((h - home) & w->index_mask) >= ((h - hole) & w->index_mask)) {
      w->index[hole] = i;
      hole = h;
    }
  }
  w->index[hole] = 0;
}

/* ---- lists --------------------------------------------------------------- */

static void link_head(wheel *w, uint32_t list, uint32_t i) {
  wheel_entry *en = &w->pool[i];
  en->list = list;
  en->prev = WHEEL_NONE;
  en->next = w->head[list];
  if (en->next != WHEEL_NONE) w->pool[en->next].prev = i;
  w->head[list] = i;
}

static void due_push(wheel *w, uint32_t i) {
  wheel_entry *en = &w->pool[i];
  en->list = LIST_DUE;
  en->next = WHEEL_NONE;
  en->prev = w->due_tail;
  if (w->due_tail == WHEEL_NONE)
    w->head[LIST_DUE] = i;
  else
    w->pool[w->due_tail].next = i;
  w->due_tail = i;
}

static void unlink_entry(wheel *w, uint32_t i) {
  wheel_entry *en = &w->pool[i];
  assert(en->list < LIST_FREE);
  if (en->prev != WHEEL_NONE)
    w->pool[en->prev].next = en->next;
  else
    w->head[en->list] = en->next;
  if (en->next != WHEEL_NONE)
    w->pool[en->next].prev = en->prev;
  else if (en->list == LIST_DUE)
    w->due_tail = en->prev;
  if (en->list != LIST_DUE) {
    assert(w->pending > 0);
    w->pending--;
  }
}

static void release(wheel *w, uint32_t i) {
  wheel_entry *en = &w->pool[i];
  en->order_id = 0; /* poison: a reuse without re-arming shows */
  en->list = LIST_FREE;
  en->next = w->free_head;
  w->free_head = i;
  assert(w->used > 0);
  w->used--;
}

/* ---- set-up ---------------------------------------------------------------- */

/* The pool fills from its start as reserves arrive: fault its first
 * WHEEL_POPULATE_ENTRIES entries in now (those from `from` on), so a
 * sale's first million reserves do not each take a share of a page fault
 * on the writer's path. */
static void populate_head(wheel_entry *pool, uint32_t from, uint32_t capacity) {
  uint32_t hot = capacity < WHEEL_POPULATE_ENTRIES ? capacity : WHEEL_POPULATE_ENTRIES;
  if (from < hot) mem_populate(pool + from, sizeof(wheel_entry) * (hot - from));
}

int wheel_init(wheel *w, uint32_t capacity, int64_t now_ms) {
  memset(w, 0, sizeof(*w));
  if (capacity == 0 || capacity == WHEEL_NONE) return -1;
  w->capacity = capacity;
  w->pool = mem_lazy(sizeof(wheel_entry) * capacity);
  w->scratch = mem_lazy(sizeof(uint32_t) * capacity);
  if (w->pool == NULL || w->scratch == NULL || index_build(w, capacity) != 0) {
    wheel_free(w);
    return -1;
  }
  populate_head(w->pool, 0, capacity);
  w->free_head = WHEEL_NONE;
  w->fresh = 0;
  w->cur_ms = now_ms;
  for (uint32_t l = 0; l <= LIST_DUE; l++) w->head[l] = WHEEL_NONE;
  w->due_tail = WHEEL_NONE;
  return 0;
}

void wheel_free(wheel *w) {
  mem_free(w->pool, sizeof(wheel_entry) * w->capacity);
  mem_free(w->scratch, sizeof(uint32_t) * w->capacity);
  if (w->index != NULL) mem_free(w->index, index_bytes(w));
  w->pool = NULL;
  w->index = NULL;
  w->scratch = NULL;
}

int wheel_grow(wheel *w, uint32_t capacity) {
  if (capacity <= w->capacity || capacity == WHEEL_NONE) return -1;
  wheel_entry *pool = mem_lazy(sizeof(wheel_entry) * capacity);
  uint32_t *scratch = mem_lazy(sizeof(uint32_t) * capacity);
  if (pool == NULL || scratch == NULL || index_build(w, capacity) != 0) {
    mem_free(pool, sizeof(wheel_entry) * capacity);
    mem_free(scratch, sizeof(uint32_t) * capacity);
    return -1;
  }
  memcpy(pool, w->pool, sizeof(wheel_entry) * w->fresh);
  populate_head(pool, w->fresh, capacity); /* entries before fresh were copied */
  mem_free(w->pool, sizeof(wheel_entry) * w->capacity);
  mem_free(w->scratch, sizeof(uint32_t) * w->capacity);
  w->pool = pool;
  w->scratch = scratch;
  /* Entries link by index, so the move keeps every list intact; the index
   * is rebuilt for its new size, and the new entries are fresh. */
  for (uint32_t i = 0; i < w->fresh; i++)
    if (pool[i].list != LIST_FREE) index_put(w, i);
  w->capacity = capacity;
  return 0;
}

/* ---- arming and firing ---------------------------------------------------- */

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
  uint32_t level = 0;
  while (level < WHEEL_LEVELS - 1 && delta >= (1ll << ((level + 1) * WHEEL_BITS))) level++;
  uint32_t s = (uint32_t)(deadline >> (level * WHEEL_BITS)) & (WHEEL_SLOTS - 1);
  link_head(w, level * WHEEL_SLOTS + s, i);
  w->pending++;
}

int wheel_arm(wheel *w, uint64_t order_id, int64_t deadline_ms) {
  uint32_t i;
  if (w->free_head != WHEEL_NONE) {
    i = w->free_head;
    w->free_head = w->pool[i].next;
  } else if (w->fresh < w->capacity) {
    i = w->fresh++; /* never used: its page is touched only now */
  } else {
    return -1;
  }
  w->used++;
  assert(w->used <= w->capacity);
  w->pool[i].order_id = order_id;
  w->pool[i].deadline_ms = deadline_ms;
  index_put(w, i);
  place(w, i);
  return 0;
}

int wheel_cancel(wheel *w, uint64_t order_id) {
  uint32_t pos;
  uint32_t i = index_find(w, order_id, &pos);
  if (i == WHEEL_NONE) return -1;
  index_del(w, pos);
  unlink_entry(w, i);
  release(w, i);
  return 0;
}

/* Re-place every entry of one slot (a cascade). */
static void cascade(wheel *w, uint32_t list) {
  uint32_t i = w->head[list];
  w->head[list] = WHEEL_NONE;
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
  for (uint32_t level = 1; level < WHEEL_LEVELS; level++) {
    if ((t & ((1ll << (level * WHEEL_BITS)) - 1)) != 0) break;
    cascade(w, level * WHEEL_SLOTS + ((uint32_t)(t >> (level * WHEEL_BITS)) & (WHEEL_SLOTS - 1)));
  }
  uint32_t list = (uint32_t)t & (WHEEL_SLOTS - 1);
  uint32_t i = w->head[list];
  w->head[list] = WHEEL_NONE;
  while (i != WHEEL_NONE) {
    uint32_t next = w->pool[i].next;
    assert(w->pool[i].deadline_ms <= t);
    w->pending--;
    due_push(w, i);
    i = next;
  }
  w->cur_ms = t + 1;
}

static int by_deadline(const void *a, const void *b, void *arg) {
  const wheel_entry *pool = arg;
  int64_t x = pool[*(const uint32_t *)a].deadline_ms, y = pool[*(const uint32_t *)b].deadline_ms;
  return x < y ? -1 : x > y;
}

/* Re-place everything relative to now_ms: a long advance (due ones come
 * out sorted oldest first, as ticking would have had them), or a step back
 * (nothing comes due: every pending deadline is after the old time). */
static void leap(wheel *w, int64_t now_ms) {
  uint32_t n = 0;
  for (uint32_t l = 0; l < LIST_DUE; l++) {
    for (uint32_t i = w->head[l]; i != WHEEL_NONE; i = w->pool[i].next) w->scratch[n++] = i;
    w->head[l] = WHEEL_NONE;
  }
  assert(n == w->pending);
  w->pending = 0;
  w->cur_ms = now_ms + 1;
  uint32_t due = 0;
  for (uint32_t k = 0; k < n; k++) {
    uint32_t i = w->scratch[k];
    if (w->pool[i].deadline_ms <= now_ms)
      w->scratch[due++] = i; /* due <= k: never overwrites an unread one */
    else
      place(w, i);
  }
  qsort_r(w->scratch, due, sizeof(uint32_t), by_deadline, w->pool);
  for (uint32_t k = 0; k < due; k++) due_push(w, w->scratch[k]);
}

void wheel_advance(wheel *w, int64_t now_ms) {
  if (w->pending > 0 && (now_ms - w->cur_ms > WHEEL_WALK_MAX_MS || now_ms < w->cur_ms - 1)) {
    leap(w, now_ms);
    return;
  }
  if (now_ms < w->cur_ms - 1) w->cur_ms = now_ms + 1; /* a step back, nothing pending */
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
  uint32_t i = w->head[LIST_DUE];
  if (i == WHEEL_NONE) return 0;
  *order_id = w->pool[i].order_id;
  *deadline_ms = w->pool[i].deadline_ms;
  uint32_t pos;
  uint32_t found = index_find(w, *order_id, &pos);
  assert(found == i);
  (void)found;
  index_del(w, pos);
  unlink_entry(w, i);
  release(w, i);
  return 1;
}

int64_t wheel_next_ms(const wheel *w) {
  if (w->head[LIST_DUE] != WHEEL_NONE) return w->cur_ms - 1;
  if (w->pending == 0) return INT64_MAX;
  for (uint32_t k = 0; k < WHEEL_SLOTS; k++) {
    int64_t t = w->cur_ms + k;
    /* a cascade at t (the next tick included) may bring entries due at t */
    if ((t & (WHEEL_SLOTS - 1)) == 0) return t;
    if (w->head[t & (WHEEL_SLOTS - 1)] != WHEEL_NONE) return t;
  }
  return w->cur_ms + WHEEL_SLOTS;
}

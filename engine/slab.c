/*
 * slab.c -- events and their counters. The one hot operation, slab_take, is
 * a single CAS loop on a word no other table shares; everything else here is
 * either rare (create, restock) or done by the writer after a commit. See
 * slab.h for why available is derived rather than stored.
 */
#include "slab.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "codec.h"

#define HELD_RESERVED(h) ((uint32_t)((h) & 0xffffffffu))
#define HELD_SOLD(h) ((uint32_t)((h) >> 32))

static uint32_t next_pow2(uint32_t n) {
  uint32_t p = 2;
  while (p < n) p <<= 1;
  return p;
}

int slab_init(slab *s, uint32_t capacity) {
  memset(s, 0, sizeof(*s));
  if (capacity == 0 || capacity > (1u << 24)) return -1;
  s->ev = aligned_alloc(64, sizeof(slab_event) * capacity);
  uint32_t icap = next_pow2(capacity * 2);
  s->index = calloc(icap, sizeof(*s->index));
  if (s->ev == NULL || s->index == NULL) {
    free(s->ev);
    free(s->index);
    memset(s, 0, sizeof(*s)); /* slab_free must find nothing to free */
    return -1;
  }
  memset(s->ev, 0, sizeof(slab_event) * capacity);
  s->capacity = capacity;
  s->index_mask = icap - 1;
  pthread_mutex_init(&s->lock, NULL);
  return 0;
}

void slab_free(slab *s) {
  if (s->ev == NULL) return;
  pthread_mutex_destroy(&s->lock);
  free(s->ev);
  free(s->index);
  memset(s, 0, sizeof(*s));
}

static uint32_t index_hash(const slab *s, uint64_t id) {
  return (uint32_t)XXH3_64bits(&id, sizeof(id)) & s->index_mask;
}

/* Any slot (in any state) holding id, or SLAB_NONE. Lock-free. */
static uint32_t find_any(slab *s, uint64_t id) {
  for (uint32_t i = index_hash(s, id), n = 0; n <= s->index_mask;
       i = (i + 1) & s->index_mask, n++) {
    /* acquire: pairs with the release in index_insert; the slot's id is
     * written before its index entry. */
    uint32_t v = atomic_load_explicit(&s->index[i], memory_order_acquire);
    if (v == 0) return SLAB_NONE;
    if (s->ev[v - 1].id == id) return v - 1;
  }
  return SLAB_NONE;
}

static void index_insert(slab *s, uint64_t id, uint32_t slot) {
  for (uint32_t i = index_hash(s, id);; i = (i + 1) & s->index_mask) {
    if (atomic_load_explicit(&s->index[i], memory_order_relaxed) == 0) {
      /* release: pairs with the acquire in find_any. */
      atomic_store_explicit(&s->index[i], slot + 1, memory_order_release);
      return;
    }
  }
}

uint32_t slab_find(slab *s, uint64_t id) {
  uint32_t slot = find_any(s, id);
  if (slot == SLAB_NONE) return SLAB_NONE;
  /* acquire: pairs with the release in slab_make_visible; the event's fields
   * are complete before it is seen as visible. */
  if (atomic_load_explicit(&s->ev[slot].state, memory_order_acquire) != SLAB_VISIBLE)
    return SLAB_NONE;
  return slot;
}

/* The id is not written here: claim_slot sets it once, before lock-free
 * readers can reach the slot, and a reused dead slot keeps its id. */
static void fill_slot(slab_event *e, const char *name, size_t name_len,
                      int64_t price, int64_t start_at, int64_t end_at,
                      uint32_t per_user_limit, uint32_t pay_timeout_s) {
  assert(name_len <= SPIKE_NAME_MAX);
  e->name_len = (uint32_t)name_len;
  memcpy(e->name, name, name_len);
  e->name[name_len] = '\0';
  e->price = price;
  e->start_at = start_at;
  e->end_at = end_at;
  e->per_user_limit = per_user_limit;
  e->pay_timeout_s = pay_timeout_s;
}

/* Claim a slot for id under the lock: a dead slot of the same id, or a new
 * one. Sets *status on failure. */
static uint32_t claim_slot(slab *s, uint64_t id, int *status) {
  uint32_t slot = find_any(s, id);
  if (slot != SLAB_NONE) {
    if (atomic_load_explicit(&s->ev[slot].state, memory_order_relaxed) != SLAB_DEAD) {
      *status = SPIKE_EEXIST;
      return SLAB_NONE;
    }
    return slot;
  }
  uint32_t n = atomic_load_explicit(&s->count, memory_order_relaxed);
  if (n == s->capacity) {
    *status = SPIKE_EFULL;
    return SLAB_NONE;
  }
  s->ev[n].id = id;
  index_insert(s, id, n);
  /* release: pairs with the acquire in slab iteration (spike_event_list);
   * the slot's id is set before it is counted. */
  atomic_store_explicit(&s->count, n + 1, memory_order_release);
  return n;
}

uint32_t slab_create(slab *s, const spike_event_spec *spec, int *status) {
  assert(spec->id != 0 && spec->stock > 0 && spec->stock <= UINT32_MAX);
  pthread_mutex_lock(&s->lock);
  uint32_t slot = claim_slot(s, spec->id, status);
  if (slot != SLAB_NONE) {
    slab_event *e = &s->ev[slot];
    fill_slot(e, spec->name, spec->name_len, spec->price, spec->start_at,
              spec->end_at, spec->per_user_limit, spec->pay_timeout_s);
    /* relaxed: the slot is invisible until slab_make_visible publishes it. */
    atomic_store_explicit(&e->held, 0, memory_order_relaxed);
    atomic_store_explicit(&e->total, (uint32_t)spec->stock, memory_order_relaxed);
    atomic_store_explicit(&e->flags, 0, memory_order_relaxed);
    atomic_store_explicit(&e->state, SLAB_CREATING, memory_order_release);
  }
  pthread_mutex_unlock(&s->lock);
  return slot;
}

uint32_t slab_load(slab *s, const spike_event *ev, int closed) {
  int status;
  if (ev->stock_total > UINT32_MAX || ev->reserved > ev->stock_total ||
      ev->sold > ev->stock_total - ev->reserved)
    return SLAB_NONE;
  uint32_t slot = claim_slot(s, ev->id, &status);
  if (slot == SLAB_NONE) return SLAB_NONE;
  slab_event *e = &s->ev[slot];
  fill_slot(e, ev->name, strlen(ev->name), ev->price, ev->start_at, ev->end_at,
            ev->per_user_limit, ev->pay_timeout_s);
  /* relaxed: recovery runs before any other thread exists. */
  atomic_store_explicit(&e->held, ev->reserved | (ev->sold << 32), memory_order_relaxed);
  atomic_store_explicit(&e->total, (uint32_t)ev->stock_total, memory_order_relaxed);
  atomic_store_explicit(&e->flags, closed ? SLAB_FLAG_CLOSED : 0, memory_order_relaxed);
  atomic_store_explicit(&e->state, SLAB_VISIBLE, memory_order_relaxed);
  return slot;
}

void slab_make_visible(slab *s, uint32_t slot) {
  assert(atomic_load(&s->ev[slot].state) == SLAB_CREATING);
  /* release: pairs with the acquire in slab_find. */
  atomic_store_explicit(&s->ev[slot].state, SLAB_VISIBLE, memory_order_release);
}

void slab_make_dead(slab *s, uint32_t slot) {
  pthread_mutex_lock(&s->lock);
  assert(atomic_load(&s->ev[slot].state) == SLAB_CREATING);
  atomic_store_explicit(&s->ev[slot].state, SLAB_DEAD, memory_order_relaxed);
  pthread_mutex_unlock(&s->lock);
}

int slab_take(slab_event *e, uint32_t qty) {
  /* acquire on held, then on total: total is at least as new as the one the
   * last taker compared against, so a stale total cannot fake a sell-out. */
  uint64_t h = atomic_load_explicit(&e->held, memory_order_acquire);
  for (;;) {
    /* acquire: pairs with the release in slab_restock. */
    uint32_t total = atomic_load_explicit(&e->total, memory_order_acquire);
    uint64_t used = (uint64_t)HELD_RESERVED(h) + HELD_SOLD(h);
    if (used + qty > total) return -1;
    /* release on success: pairs with the acquire loads of held in slab_take
     * and slab_read, carrying the total this take was checked against. */
    if (atomic_compare_exchange_weak_explicit(&e->held, &h, h + qty,
                                              memory_order_release,
                                              memory_order_acquire))
      return 0;
  }
}

void slab_release(slab_event *e, uint32_t qty) {
  /* relaxed: a single-word counter update; see slab_take. */
  uint64_t h = atomic_fetch_sub_explicit(&e->held, qty, memory_order_relaxed);
  assert(HELD_RESERVED(h) >= qty);
  (void)h;
}

void slab_sell(slab_event *e, uint32_t qty) {
  /* Adding (qty << 32) - qty moves qty from the low half to the high half
   * in one step: the low half has at least qty, so the borrow is exact. */
  uint64_t delta = ((uint64_t)qty << 32) - qty;
  /* relaxed: see slab_take. */
  uint64_t h = atomic_fetch_add_explicit(&e->held, delta, memory_order_relaxed);
  assert(HELD_RESERVED(h) >= qty);
  (void)h;
}

int slab_restock(slab_event *e, uint64_t add) {
  /* relaxed: only the writer stores total. */
  uint32_t t = atomic_load_explicit(&e->total, memory_order_relaxed);
  if (add == 0 || add > (uint64_t)UINT32_MAX - t) return -1;
  /* release: pairs with the acquire loads of total in slab_take/slab_read. */
  atomic_store_explicit(&e->total, (uint32_t)(t + add), memory_order_release);
  return 0;
}

int slab_short(const slab_event *e, uint32_t qty) {
  /* acquire: as in slab_take, so a stale total cannot fake a sell-out. */
  uint64_t h = atomic_load_explicit(&e->held, memory_order_acquire);
  uint32_t t = atomic_load_explicit(&e->total, memory_order_acquire);
  return (uint64_t)HELD_RESERVED(h) + HELD_SOLD(h) + qty > t;
}

void slab_read(const slab_event *e, int64_t now_ms, spike_event *out) {
  /* Read held before total: total only grows, so available computed from a
   * later total is never negative and the three always sum to it. acquire:
   * pairs with the release of a successful slab_take, so total is at least
   * the one that take was checked against. */
  uint64_t h = atomic_load_explicit(&e->held, memory_order_acquire);
  uint32_t t = atomic_load_explicit(&e->total, memory_order_acquire);
  uint32_t flags = atomic_load_explicit(&e->flags, memory_order_relaxed);
  out->id = e->id;
  memcpy(out->name, e->name, e->name_len + 1);
  out->price = e->price;
  out->reserved = HELD_RESERVED(h);
  out->sold = HELD_SOLD(h);
  out->stock_total = t;
  assert(out->reserved + out->sold <= out->stock_total);
  out->available = t - out->reserved - out->sold;
  out->start_at = e->start_at;
  out->end_at = e->end_at;
  out->per_user_limit = e->per_user_limit;
  out->pay_timeout_s = e->pay_timeout_s;
  out->state = codec_event_state(flags & SLAB_FLAG_CLOSED, now_ms, e->start_at, e->end_at,
                             out->available);
}

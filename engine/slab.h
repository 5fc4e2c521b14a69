/*
 * slab.h -- the preallocated arena of events and their stock counters.
 *
 * Each event lives in one slot of a fixed array sized at open. Its hot
 * cache line holds everything a reserve reads: one 64-bit word packing
 * reserved (low 32 bits) and sold (high 32 bits), the stock total, flags and
 * the sale window. available is never stored: it is total - reserved - sold,
 * so a snapshot always balances (I2) and a reserve is one compare-and-swap
 * that adds to reserved only while reserved + sold + qty <= total (I1). Pay
 * moves units from reserved to sold with one atomic add on the same word.
 * total only grows (restock), so a stale read of it is conservative.
 *
 * Slots are handed out in order and never freed; an event whose creation
 * failed to commit leaves a dead slot that a new create of the same id
 * reuses. An id -> slot index (open addressing, 2x the slot count) serves
 * lookups without locks; creation, which is rare, takes a mutex.
 *
 * Bounds: max_events slots; stock_total <= UINT32_MAX per event.
 */
#ifndef SPIKE_SLAB_H
#define SPIKE_SLAB_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "spike.h"

#define SLAB_NONE UINT32_MAX

enum slab_slot_state {
  SLAB_FREE = 0,     /* never used */
  SLAB_CREATING = 1, /* created, not committed: invisible */
  SLAB_VISIBLE = 2,  /* committed: reads and reserves see it */
  SLAB_DEAD = 3,     /* its create failed to commit */
};

#define SLAB_FLAG_CLOSED 1u

typedef struct slab_event {
  /* Hot line: everything spike_reserve reads. */
  alignas(64) _Atomic uint64_t held; /* reserved | sold << 32 */
  _Atomic uint32_t total;
  _Atomic uint32_t flags;            /* SLAB_FLAG_* */
  _Atomic uint32_t state;            /* enum slab_slot_state */
  uint32_t per_user_limit;
  int64_t start_at;
  int64_t end_at;
  int64_t price;
  uint32_t pay_timeout_s;
  /* Cold: identity. Written before the slot becomes visible. */
  alignas(64) uint64_t id;
  uint32_t name_len;
  char name[SPIKE_NAME_MAX + 1];
} slab_event;

typedef struct slab {
  slab_event *ev;
  uint32_t capacity;
  _Atomic uint32_t count;     /* slots handed out */
  _Atomic uint32_t *index;    /* slot + 1, 0 = empty */
  uint32_t index_mask;
  pthread_mutex_t lock;       /* create only */
} slab;

int slab_init(slab *s, uint32_t capacity);
void slab_free(slab *s);

/* The visible event with this id, or SLAB_NONE. Any thread. */
uint32_t slab_find(slab *s, uint64_t id);

/*
 * Claim a slot for a new event from spec (validated by the caller): state
 * SLAB_CREATING, counters zero and total = stock. Returns the slot, or
 * SLAB_NONE with *status SPIKE_EEXIST (the id is taken, visible or being
 * created) or SPIKE_EFULL (no slot left).
 */
uint32_t slab_create(slab *s, const spike_event_spec *spec, int *status);

/* Load a committed event during recovery (single-threaded). SLAB_NONE when
 * the slab is full or the id is there already. */
uint32_t slab_load(slab *s, const spike_event *ev, int closed);

/* Writer, after commit: publish a created slot / kill a failed one. */
void slab_make_visible(slab *s, uint32_t slot);
void slab_make_dead(slab *s, uint32_t slot);

static inline slab_event *slab_at(slab *s, uint32_t slot) { return &s->ev[slot]; }

/* Take qty units into reserved: 0, or -1 when fewer than qty remain. */
int slab_take(slab_event *e, uint32_t qty);
/* Return qty reserved units to available (cancel, expiry, undo). */
void slab_release(slab_event *e, uint32_t qty);
/* Move qty units from reserved to sold (pay). */
void slab_sell(slab_event *e, uint32_t qty);
/* Add to stock_total (restock): 0, or -1 past UINT32_MAX. */
int slab_restock(slab_event *e, uint64_t add);

/* True when fewer than qty units are available: the sold-out
 * short-circuit, which takes nothing (slab_take decides). */
int slab_short(const slab_event *e, uint32_t qty);

/* A consistent snapshot of the event at now_ms. */
void slab_read(const slab_event *e, int64_t now_ms, spike_event *out);

#endif /* SPIKE_SLAB_H */

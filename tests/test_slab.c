/*
 * test_slab.c -- the event slab (engine/slab.h): slot life (creating,
 * visible, dead and reused), the packed reserved|sold word at its bounds,
 * restock, the state a snapshot reports at the edges of the sale window,
 * recovery loads, and threads racing slab_take against one event (I1, I2).
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "codec.h"
#include "slab.h"
#include "test.h"

#define T0 1700000000000ll /* a fixed "now", unix ms */

static spike_event_spec spec_of(uint64_t id, uint64_t stock, const char *name) {
  spike_event_spec s;
  memset(&s, 0, sizeof(s));
  s.id = id;
  s.name = name;
  s.name_len = strlen(name);
  s.stock = stock;
  s.price = 250;
  s.start_at = T0;
  s.end_at = T0 + 3600000;
  s.per_user_limit = 2;
  s.pay_timeout_s = 900;
  return s;
}

/* Create and publish an event; its slot. */
static uint32_t make_live(slab *s, uint64_t id, uint64_t stock) {
  spike_event_spec sp = spec_of(id, stock, "sale");
  int st = 12345;
  uint32_t slot = slab_create(s, &sp, &st);
  CHECK(slot != SLAB_NONE);
  slab_make_visible(s, slot);
  return slot;
}

static void check_balance(const slab_event *e, uint64_t total, uint64_t reserved, uint64_t sold) {
  spike_event ev;
  slab_read(e, T0 + 1, &ev);
  CHECK_EQ(ev.stock_total, total);
  CHECK_EQ(ev.reserved, reserved);
  CHECK_EQ(ev.sold, sold);
  CHECK_EQ(ev.available, total - reserved - sold);
  CHECK_EQ(ev.available + ev.reserved + ev.sold, ev.stock_total);
  CHECK_EQ(slab_short(e, 1), reserved + sold >= total);
  CHECK_EQ(slab_short(e, 3), reserved + sold + 3 > total);
}

static void init_bounds(void) {
  slab s;
  CHECK_EQ(slab_init(&s, 0), -1);
  CHECK_EQ(slab_init(&s, (1u << 24) + 1), -1);
  CHECK_EQ(slab_init(&s, UINT32_MAX), -1);
  for (uint32_t cap = 1; cap <= 33; cap += 4) {
    CHECK_EQ(slab_init(&s, cap), 0);
    CHECK_EQ(s.capacity, cap);
    CHECK_EQ(atomic_load(&s.count), 0);
    /* The index is a power of two at least twice the slot count. */
    CHECK(((s.index_mask + 1) & s.index_mask) == 0);
    CHECK(s.index_mask + 1 >= 2 * cap);
    CHECK_EQ(slab_find(&s, 1), SLAB_NONE);
    slab_free(&s);
  }
}

static void create_visible_dead_reuse(void) {
  slab s;
  CHECK_EQ(slab_init(&s, 3), 0);
  spike_event_spec a = spec_of(42, 10, "first");
  int st = 0;
  uint32_t sa = slab_create(&s, &a, &st);
  CHECK_EQ(sa, 0);
  CHECK_EQ(atomic_load(&s.count), 1);
  slab_event *ea = slab_at(&s, sa);
  CHECK_EQ(atomic_load(&ea->state), SLAB_CREATING);
  CHECK_EQ(ea->id, 42);
  CHECK(strcmp(ea->name, "first") == 0);
  CHECK_EQ(atomic_load(&ea->total), 10);
  CHECK_EQ(atomic_load(&ea->held), 0);
  CHECK_EQ(slab_find(&s, 42), SLAB_NONE); /* invisible while creating */
  st = 0;
  CHECK_EQ(slab_create(&s, &a, &st), SLAB_NONE);
  CHECK_EQ(st, SPIKE_EEXIST); /* an id being created is taken */
  slab_make_visible(&s, sa);
  CHECK_EQ(slab_find(&s, 42), sa);
  st = 0;
  CHECK_EQ(slab_create(&s, &a, &st), SLAB_NONE);
  CHECK_EQ(st, SPIKE_EEXIST);

  /* A failed create leaves a dead slot; the same id reuses it. */
  spike_event_spec b = spec_of(7, 5, "doomed");
  uint32_t sb = slab_create(&s, &b, &st);
  CHECK_EQ(sb, 1);
  CHECK(slab_take(slab_at(&s, sb), 2) == 0); /* leftovers a reuse must clear */
  slab_make_dead(&s, sb);
  CHECK_EQ(atomic_load(&slab_at(&s, sb)->state), SLAB_DEAD);
  CHECK_EQ(slab_find(&s, 7), SLAB_NONE);
  CHECK_EQ(slab_find(&s, 42), sa);
  b = spec_of(7, 9, "second try");
  b.price = 999;
  b.per_user_limit = 4;
  uint32_t sb2 = slab_create(&s, &b, &st);
  CHECK_EQ(sb2, sb);
  CHECK_EQ(atomic_load(&s.count), 2); /* no new slot was spent */
  slab_event *eb = slab_at(&s, sb2);
  CHECK_EQ(atomic_load(&eb->state), SLAB_CREATING);
  CHECK_EQ(atomic_load(&eb->held), 0);
  CHECK_EQ(atomic_load(&eb->total), 9);
  CHECK_EQ(eb->price, 999);
  CHECK_EQ(eb->per_user_limit, 4);
  CHECK(strcmp(eb->name, "second try") == 0);
  CHECK_EQ(eb->name_len, strlen("second try"));
  CHECK_EQ(slab_find(&s, 7), SLAB_NONE);
  slab_make_visible(&s, sb2);
  CHECK_EQ(slab_find(&s, 7), sb2);

  /* Full: the third slot goes, then EBUSY; a dead id still reuses its slot
   * when the slab is full. */
  spike_event_spec c = spec_of(9, 1, "third");
  uint32_t sc = slab_create(&s, &c, &st);
  CHECK_EQ(sc, 2);
  spike_event_spec d = spec_of(10, 1, "fourth");
  st = 0;
  CHECK_EQ(slab_create(&s, &d, &st), SLAB_NONE);
  CHECK_EQ(st, SPIKE_EFULL);
  slab_make_dead(&s, sc);
  st = 0;
  CHECK_EQ(slab_create(&s, &d, &st), SLAB_NONE);
  CHECK_EQ(st, SPIKE_EFULL); /* a dead slot belongs to its id, not to anyone */
  CHECK_EQ(slab_create(&s, &c, &st), sc);
  slab_make_visible(&s, sc);
  CHECK_EQ(slab_find(&s, 9), sc);
  CHECK_EQ(slab_find(&s, 10), SLAB_NONE);
  CHECK_EQ(slab_find(&s, 0), SLAB_NONE);
  slab_free(&s);
}

static void many_ids_in_index(void) {
  /* Fill a slab with scattered ids: every lookup finds its own slot through
   * the collisions of a small index, and unknown ids are absent. */
  uint64_t seed = test_seed(), rs = seed;
  slab s;
  enum { N = 500 };
  CHECK_EQ(slab_init(&s, N), 0);
  static uint64_t ids[N];
  for (uint32_t i = 0; i < N; i++) {
    uint64_t id;
    int dup;
    do {
      id = (i % 3 == 0) ? i + 1 : (test_rand(&rs) | 1);
      dup = 0;
      for (uint32_t k = 0; k < i; k++)
        dup |= ids[k] == id;
    } while (dup);
    ids[i] = id;
    spike_event_spec sp = spec_of(id, 1 + i, "x");
    int st;
    uint32_t slot = slab_create(&s, &sp, &st);
    CHECK_EQ(slot, i);
    if (i % 5 != 0) slab_make_visible(&s, slot);
  }
  for (uint32_t i = 0; i < N; i++) {
    CHECK_EQ(slab_find(&s, ids[i]), i % 5 != 0 ? i : SLAB_NONE);
    CHECK_EQ(slab_at(&s, i)->id, ids[i]);
    CHECK_EQ(atomic_load(&slab_at(&s, i)->total), 1 + i);
  }
  for (uint32_t i = 0; i < 1000; i++) {
    uint64_t id = test_rand(&rs) & ~1ull; /* even: never a random id above */
    if (id <= N) continue;
    CHECK_EQ(slab_find(&s, id), SLAB_NONE);
  }
  int st;
  spike_event_spec sp = spec_of(123456789, 1, "y");
  CHECK_EQ(slab_create(&s, &sp, &st), SLAB_NONE);
  CHECK_EQ(st, SPIKE_EFULL);
  slab_free(&s);
}

static void take_release_sell(void) {
  slab s;
  CHECK_EQ(slab_init(&s, 1), 0);
  slab_event *e = slab_at(&s, make_live(&s, 1, 10));
  check_balance(e, 10, 0, 0);
  CHECK_EQ(slab_take(e, 3), 0);
  CHECK_EQ(slab_take(e, 3), 0);
  CHECK_EQ(slab_take(e, 3), 0);
  check_balance(e, 10, 9, 0);
  CHECK_EQ(slab_take(e, 2), -1); /* 9 + 2 > 10: refused whole, nothing taken */
  check_balance(e, 10, 9, 0);
  CHECK_EQ(slab_take(e, 1), 0);
  CHECK_EQ(slab_take(e, 1), -1);
  check_balance(e, 10, 10, 0);
  CHECK(slab_short(e, 1));
  slab_release(e, 2);
  check_balance(e, 10, 8, 0);
  CHECK(!slab_short(e, 1));
  slab_sell(e, 5); /* pay: reserved -> sold, available unchanged */
  check_balance(e, 10, 3, 5);
  CHECK_EQ(slab_take(e, 3), -1);
  CHECK_EQ(slab_take(e, 2), 0);
  check_balance(e, 10, 5, 5);
  slab_sell(e, 5);
  check_balance(e, 10, 0, 10);
  CHECK(slab_short(e, 1));
  CHECK_EQ(slab_take(e, 1), -1);
  CHECK_EQ(slab_take(e, UINT32_MAX), -1);
  slab_free(&s);
}

static void packed_word_bounds(void) {
  /* reserved and sold each fill their whole 32-bit half. */
  slab s;
  CHECK_EQ(slab_init(&s, 2), 0);
  slab_event *e = slab_at(&s, make_live(&s, 1, UINT32_MAX));
  CHECK_EQ(slab_take(e, UINT32_MAX), 0);
  CHECK_EQ(slab_take(e, 1), -1);
  check_balance(e, UINT32_MAX, UINT32_MAX, 0);
  CHECK_EQ(atomic_load(&e->held), 0xffffffffull);
  slab_sell(e, UINT32_MAX);
  check_balance(e, UINT32_MAX, 0, UINT32_MAX);
  CHECK_EQ(atomic_load(&e->held), 0xffffffff00000000ull);
  CHECK_EQ(slab_take(e, 1), -1);

  /* A sell of part of reserved borrows exactly across the halves. */
  e = slab_at(&s, make_live(&s, 2, UINT32_MAX));
  CHECK_EQ(slab_take(e, 0x80000000u), 0);
  slab_sell(e, 1);
  check_balance(e, UINT32_MAX, 0x7fffffffu, 1);
  slab_sell(e, 0x7fffffffu);
  check_balance(e, UINT32_MAX, 0, 0x80000000u);
  CHECK_EQ(slab_take(e, 0x7fffffffu), 0);
  CHECK_EQ(slab_take(e, 1), -1);
  slab_release(e, 0x7fffffffu);
  check_balance(e, UINT32_MAX, 0, 0x80000000u);
  CHECK_EQ(slab_take(e, 0x80000000u), -1);
  CHECK_EQ(slab_take(e, 0x7fffffffu), 0);
  slab_free(&s);
}

static void restock_bounds(void) {
  slab s;
  CHECK_EQ(slab_init(&s, 1), 0);
  slab_event *e = slab_at(&s, make_live(&s, 5, 10));
  CHECK_EQ(slab_take(e, 10), 0);
  CHECK(slab_short(e, 1));
  CHECK_EQ(slab_restock(e, 0), -1);
  check_balance(e, 10, 10, 0);
  CHECK_EQ(slab_restock(e, 5), 0);
  check_balance(e, 15, 10, 0);
  CHECK(!slab_short(e, 1));
  CHECK_EQ(slab_take(e, 5), 0);
  CHECK_EQ(slab_take(e, 1), -1);
  /* Up to UINT32_MAX exactly, not one past, and no wrap for a huge add. */
  CHECK_EQ(slab_restock(e, (uint64_t)UINT32_MAX - 14), -1);
  CHECK_EQ(slab_restock(e, 1ull << 32), -1);
  CHECK_EQ(slab_restock(e, (1ull << 32) + 1), -1); /* wraps to 16 if truncated */
  CHECK_EQ(slab_restock(e, UINT64_MAX), -1);         /* wraps past 2^64 if added */
  CHECK_EQ(slab_restock(e, UINT64_MAX - 14), -1);
  check_balance(e, 15, 15, 0);
  CHECK_EQ(slab_restock(e, (uint64_t)UINT32_MAX - 15), 0);
  check_balance(e, UINT32_MAX, 15, 0);
  CHECK_EQ(slab_restock(e, 1), -1);
  check_balance(e, UINT32_MAX, 15, 0);
  slab_free(&s);
}

static void state_at_boundaries(void) {
  const int64_t st = 1000, en = 2000;
  /* slab_state_of itself. */
  CHECK_EQ(codec_event_state(0, st - 1, st, en, 5), SPIKE_EVENT_SCHEDULED);
  CHECK_EQ(codec_event_state(0, st - 1, st, en, 0), SPIKE_EVENT_SCHEDULED);
  CHECK_EQ(codec_event_state(0, st, st, en, 5), SPIKE_EVENT_LIVE);
  CHECK_EQ(codec_event_state(0, st, st, en, 0), SPIKE_EVENT_SOLD_OUT);
  CHECK_EQ(codec_event_state(0, en - 1, st, en, 1), SPIKE_EVENT_LIVE);
  CHECK_EQ(codec_event_state(0, en - 1, st, en, 0), SPIKE_EVENT_SOLD_OUT);
  CHECK_EQ(codec_event_state(0, en, st, en, 5), SPIKE_EVENT_ENDED);
  CHECK_EQ(codec_event_state(0, en, st, en, 0), SPIKE_EVENT_ENDED);
  CHECK_EQ(codec_event_state(0, en + 100000, st, en, 5), SPIKE_EVENT_ENDED);
  for (int64_t now = st - 2; now <= en + 2; now++) {
    CHECK_EQ(codec_event_state(1, now, st, en, 5), SPIKE_EVENT_CLOSED);
    CHECK_EQ(codec_event_state(1, now, st, en, 0), SPIKE_EVENT_CLOSED);
  }

  /* The same through a snapshot of a real event. */
  slab s;
  CHECK_EQ(slab_init(&s, 1), 0);
  slab_event *e = slab_at(&s, make_live(&s, 3, 2));
  spike_event ev;
  slab_read(e, T0 - 1, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_SCHEDULED);
  slab_read(e, T0, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_LIVE);
  CHECK_EQ(slab_take(e, 2), 0);
  slab_read(e, T0, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_SOLD_OUT);
  slab_read(e, T0 - 1, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_SCHEDULED);
  slab_read(e, T0 + 3600000 - 1, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_SOLD_OUT);
  slab_release(e, 1);
  slab_read(e, T0 + 3600000 - 1, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_LIVE);
  slab_read(e, T0 + 3600000, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_ENDED);
  atomic_fetch_or(&e->flags, SLAB_FLAG_CLOSED);
  slab_read(e, T0 + 10, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_CLOSED);
  slab_read(e, T0 - 10, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_CLOSED);
  /* Every field of the snapshot. */
  CHECK_EQ(ev.id, 3);
  CHECK(strcmp(ev.name, "sale") == 0);
  CHECK_EQ(ev.price, 250);
  CHECK_EQ(ev.start_at, T0);
  CHECK_EQ(ev.end_at, T0 + 3600000);
  CHECK_EQ(ev.per_user_limit, 2);
  CHECK_EQ(ev.pay_timeout_s, 900);
  CHECK_EQ(ev.stock_total, 2);
  CHECK_EQ(ev.reserved, 1);
  CHECK_EQ(ev.available, 1);
  slab_free(&s);
}

static void name_full_length(void) {
  slab s;
  CHECK_EQ(slab_init(&s, 1), 0);
  char name[SPIKE_NAME_MAX + 1];
  for (int i = 0; i < SPIKE_NAME_MAX; i++)
    name[i] = (char)('a' + i % 26);
  name[SPIKE_NAME_MAX] = '\0';
  spike_event_spec sp = spec_of(77, 3, name);
  int st;
  uint32_t slot = slab_create(&s, &sp, &st);
  CHECK(slot != SLAB_NONE);
  slab_make_visible(&s, slot);
  spike_event ev;
  slab_read(slab_at(&s, slot), T0, &ev);
  CHECK_EQ(strlen(ev.name), SPIKE_NAME_MAX);
  CHECK(memcmp(ev.name, name, SPIKE_NAME_MAX + 1) == 0);
  /* A name not NUL-terminated at name_len: exactly name_len bytes. */
  sp = spec_of(78, 3, "abcdef");
  sp.name_len = 3;
  slab_free(&s);
  CHECK_EQ(slab_init(&s, 1), 0);
  slot = slab_create(&s, &sp, &st);
  slab_make_visible(&s, slot);
  slab_read(slab_at(&s, slot), T0, &ev);
  CHECK(strcmp(ev.name, "abc") == 0);
  slab_free(&s);
}

static spike_event loaded(uint64_t id, uint64_t total, uint64_t reserved, uint64_t sold) {
  spike_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.id = id;
  snprintf(ev.name, sizeof(ev.name), "loaded %llu", (unsigned long long)id);
  ev.price = 10;
  ev.stock_total = total;
  ev.reserved = reserved;
  ev.sold = sold;
  ev.available = total - reserved - sold;
  ev.start_at = T0;
  ev.end_at = T0 + 1000;
  ev.per_user_limit = 1;
  ev.pay_timeout_s = 60;
  return ev;
}

static void load_for_recovery(void) {
  slab s;
  CHECK_EQ(slab_init(&s, 3), 0);
  spike_event a = loaded(11, 100, 30, 40);
  uint32_t sa = slab_load(&s, &a, 0);
  CHECK_EQ(sa, 0);
  CHECK_EQ(slab_find(&s, 11), sa); /* visible at once */
  slab_event *e = slab_at(&s, sa);
  check_balance(e, 100, 30, 40);
  spike_event ev;
  slab_read(e, T0, &ev);
  CHECK(strcmp(ev.name, "loaded 11") == 0);
  CHECK_EQ(ev.state, SPIKE_EVENT_LIVE);
  CHECK_EQ(slab_take(e, 30), 0);
  CHECK_EQ(slab_take(e, 1), -1);
  slab_sell(e, 60);
  check_balance(e, 100, 0, 100);

  /* Counters at their 32-bit maximum load into the right halves. */
  spike_event big = loaded(12, UINT32_MAX, 1, UINT32_MAX - 1);
  uint32_t sb = slab_load(&s, &big, 1);
  CHECK_EQ(sb, 1);
  check_balance(slab_at(&s, sb), UINT32_MAX, 1, UINT32_MAX - 1);
  slab_read(slab_at(&s, sb), T0, &ev);
  CHECK_EQ(ev.state, SPIKE_EVENT_CLOSED);

  /* Refused: a duplicate id, an oversold record, a total past 32 bits. */
  CHECK_EQ(slab_load(&s, &a, 0), SLAB_NONE);
  spike_event bad = loaded(13, 10, 6, 5);
  CHECK_EQ(slab_load(&s, &bad, 0), SLAB_NONE);
  bad = loaded(13, (uint64_t)UINT32_MAX + 1, 0, 0);
  CHECK_EQ(slab_load(&s, &bad, 0), SLAB_NONE);
  CHECK_EQ(slab_find(&s, 13), SLAB_NONE);
  CHECK_EQ(atomic_load(&s.count), 2);

  /* A create of a loaded id is EEXIST; the last slot loads; then full. */
  spike_event_spec sp = spec_of(11, 5, "again");
  int st = 0;
  CHECK_EQ(slab_create(&s, &sp, &st), SLAB_NONE);
  CHECK_EQ(st, SPIKE_EEXIST);
  spike_event c = loaded(14, 5, 0, 0);
  CHECK_EQ(slab_load(&s, &c, 0), 2);
  spike_event d = loaded(15, 5, 0, 0);
  CHECK_EQ(slab_load(&s, &d, 0), SLAB_NONE);
  CHECK_EQ(slab_find(&s, 15), SLAB_NONE);
  slab_free(&s);
}

/* ---- threads ------------------------------------------------------------- */

#define RACERS 4

typedef struct race {
  slab_event *e;
  pthread_barrier_t phase;
  _Atomic int stop_restock; /* racers -> observer: phase 2 begins */
  _Atomic int restock_done; /* observer -> racers: no restock after this */
  _Atomic int finished;     /* main -> observer */
  _Atomic int over;         /* set by any observer that saw reserved + sold > total */
} race;

typedef struct racer {
  race *r;
  uint64_t seed;
  uint64_t taken;    /* units this thread reserved, in all */
  uint64_t released; /* units it gave back */
  uint64_t sold;     /* units it sold (of its own reserved) */
  uint64_t refused;
} racer;

static void *racer_main(void *arg) {
  racer *me = arg;
  slab_event *e = me->r->e;
  uint64_t rs = me->seed;
  uint64_t holding = 0; /* reserved by this thread, not yet sold or released */
  pthread_barrier_wait(&me->r->phase);
  /* Phase 1: takes mixed with releases and sells of this thread's own units. */
  for (int i = 0; i < 20000; i++) {
    uint32_t q = 1 + (uint32_t)(test_rand(&rs) % 3);
    if (slab_take(e, q) == 0) {
      me->taken += q;
      holding += q;
    } else {
      me->refused++;
    }
    uint64_t x = test_rand(&rs) % 8;
    if (holding > 0 && x == 0) {
      uint32_t k = 1 + (uint32_t)(test_rand(&rs) % holding);
      slab_release(e, k);
      me->released += k;
      holding -= k;
    } else if (holding > 0 && x == 1) {
      uint32_t k = 1 + (uint32_t)(test_rand(&rs) % holding);
      slab_sell(e, k);
      me->sold += k;
      holding -= k;
    }
    if (slab_short(e, 1)) sched_yield();
  }
  if (pthread_barrier_wait(&me->r->phase) == PTHREAD_BARRIER_SERIAL_THREAD) {
    atomic_store(&me->r->stop_restock, 1);
    while (!atomic_load(&me->r->restock_done))
      sched_yield();
  }
  pthread_barrier_wait(&me->r->phase);
  /* Phase 2: nothing comes back any more; take until sold out. */
  for (;;) {
    uint32_t q = 1 + (uint32_t)(test_rand(&rs) % 3);
    if (slab_take(e, q) == 0) {
      me->taken += q;
    } else if (slab_take(e, 1) == 0) {
      me->taken += 1;
    } else {
      break;
    }
  }
  return NULL;
}

static void *observer_main(void *arg) {
  race *r = arg;
  /* The writer's role: restock now and then, and read snapshots that must
   * always balance. */
  uint64_t restocked = 0;
  int restocking = 1;
  while (!atomic_load(&r->finished)) {
    spike_event ev;
    slab_read(r->e, T0 + 1, &ev);
    if (ev.reserved + ev.sold > ev.stock_total ||
        ev.available + ev.reserved + ev.sold != ev.stock_total)
      atomic_store(&r->over, 1);
    if (restocking && atomic_load(&r->stop_restock)) {
      restocking = 0;
      atomic_store(&r->restock_done, 1);
    }
    if (restocking && restocked < 5000 && slab_restock(r->e, 50) == 0) restocked += 50;
    sched_yield();
  }
  return (void *)(uintptr_t)restocked;
}

static void take_race(uint32_t total) {
  slab s;
  CHECK_EQ(slab_init(&s, 1), 0);
  race r;
  memset(&r, 0, sizeof(r));
  r.e = slab_at(&s, make_live(&s, 99, total));
  CHECK_EQ(pthread_barrier_init(&r.phase, NULL, RACERS), 0);
  uint64_t seed = test_seed();
  racer rc[RACERS];
  pthread_t th[RACERS], obs;
  memset(rc, 0, sizeof(rc));
  CHECK_EQ(pthread_create(&obs, NULL, observer_main, &r), 0);
  for (int i = 0; i < RACERS; i++) {
    rc[i].r = &r;
    rc[i].seed = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    CHECK_EQ(pthread_create(&th[i], NULL, racer_main, &rc[i]), 0);
  }
  for (int i = 0; i < RACERS; i++)
    CHECK_EQ(pthread_join(th[i], NULL), 0);
  atomic_store(&r.finished, 1);
  void *ret;
  CHECK_EQ(pthread_join(obs, &ret), 0);
  uint64_t restocked = (uint64_t)(uintptr_t)ret;
  CHECK_EQ(atomic_load(&r.over), 0);

  uint64_t taken = 0, released = 0, sold = 0;
  for (int i = 0; i < RACERS; i++) {
    taken += rc[i].taken;
    released += rc[i].released;
    sold += rc[i].sold;
  }
  spike_event ev;
  slab_read(r.e, T0 + 1, &ev);
  CHECK_EQ(ev.stock_total, total + restocked);
  /* Every successful take is accounted for, none invented or lost. */
  CHECK_EQ(ev.sold, sold);
  CHECK_EQ(ev.reserved + ev.sold, taken - released);
  /* They kept trying until sold out: exactly the total, never more. */
  CHECK_EQ(ev.reserved + ev.sold, ev.stock_total);
  CHECK_EQ(ev.available, 0);
  CHECK(slab_short(r.e, 1));
  CHECK_EQ(slab_take(r.e, 1), -1);
  pthread_barrier_destroy(&r.phase);
  slab_free(&s);
}

static void take_race_small(void) { take_race(97); }
static void take_race_large(void) { take_race(40000); }

/* Lock-free lookups against a creating thread: an event found is complete. */
typedef struct pub {
  slab s;
  _Atomic uint32_t created;
} pub;

#define PUB_N 400

static void *creator_main(void *arg) {
  pub *p = arg;
  for (uint32_t i = 0; i < PUB_N; i++) {
    char name[32];
    snprintf(name, sizeof(name), "event-%u", i);
    spike_event_spec sp = spec_of(1000 + i, 1 + i, name);
    sp.price = i;
    int st;
    uint32_t slot = slab_create(&p->s, &sp, &st);
    CHECK_EQ(slot, i);
    sched_yield(); /* let the finders meet it while it is being created */
    if (i % 7 == 3)
      slab_make_dead(&p->s, slot);
    else
      slab_make_visible(&p->s, slot);
    sched_yield();
    atomic_store(&p->created, i + 1);
  }
  return NULL;
}

static void *finder_main(void *arg) {
  pub *p = arg;
  uint32_t seen = 0;
  while (seen < PUB_N) {
    /* The finder also reads events past upto: for those only the slab's
     * own release/acquire orders the fields before the read (TSan checks). */
    uint32_t upto = atomic_load(&p->created);
    for (uint32_t i = seen; i < PUB_N; i++) {
      uint32_t slot = slab_find(&p->s, 1000 + i);
      if (slot == SLAB_NONE) {
        if (i < upto) CHECK(i % 7 == 3); /* published before we looked */
        continue;
      }
      CHECK(i % 7 != 3);
      CHECK_EQ(slot, i);
      spike_event ev;
      slab_read(slab_at(&p->s, slot), T0 + 1, &ev);
      char name[32];
      snprintf(name, sizeof(name), "event-%u", i);
      CHECK(strcmp(ev.name, name) == 0);
      CHECK_EQ(ev.stock_total, 1 + i);
      CHECK_EQ(ev.price, i);
      CHECK_EQ(ev.id, 1000 + i);
    }
    seen = upto;
    sched_yield();
  }
  return NULL;
}

static void find_while_creating(void) {
  pub p;
  memset(&p, 0, sizeof(p));
  CHECK_EQ(slab_init(&p.s, PUB_N), 0);
  pthread_t c, f[2];
  for (int i = 0; i < 2; i++)
    CHECK_EQ(pthread_create(&f[i], NULL, finder_main, &p), 0);
  CHECK_EQ(pthread_create(&c, NULL, creator_main, &p), 0);
  CHECK_EQ(pthread_join(c, NULL), 0);
  for (int i = 0; i < 2; i++)
    CHECK_EQ(pthread_join(f[i], NULL), 0);
  slab_free(&p.s);
}

TEST_LIST({"init_bounds", init_bounds, 0},
          {"create_visible_dead_reuse", create_visible_dead_reuse, 0},
          {"many_ids_in_index", many_ids_in_index, 0}, {"take_release_sell", take_release_sell, 0},
          {"packed_word_bounds", packed_word_bounds, 0}, {"restock_bounds", restock_bounds, 0},
          {"state_at_boundaries", state_at_boundaries, 0},
          {"name_full_length", name_full_length, 0}, {"load_for_recovery", load_for_recovery, 0},
          /* 180 s: a bound on a hang; the threads yield to each other, and
           * on one CPU shared with a busy process the TSan build took 42 s */
          {"take_race_small", take_race_small, 180}, {"take_race_large", take_race_large, 180},
          {"find_while_creating", find_while_creating, 60})

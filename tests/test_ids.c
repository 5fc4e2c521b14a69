/*
 * test_ids.c -- the time-ordered id generator (engine/ids.h): layout,
 * strict increase under a steady, a stalled and a backward clock, the
 * borrow of the next millisecond past 16,384 ids, producers that never
 * collide, and the restart floor.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "ids.h"
#include "test.h"

#define T0 1700000000000ll /* unix ms */

static uint32_t id_producer(uint64_t id) {
  return (uint32_t)(id >> IDS_SEQ_BITS) & (IDS_PRODUCERS - 1);
}
static uint32_t id_seq(uint64_t id) { return (uint32_t)id & IDS_SEQ_MAX; }

static void layout(void) {
  CHECK_EQ(IDS_SEQ_MAX, 16383);
  CHECK_EQ(IDS_PRODUCERS, 64);
  CHECK_EQ(IDS_MS_SHIFT, 20);
  ids g;
  ids_init(&g, 37, 0);
  uint64_t id = ids_next(&g, T0);
  CHECK_EQ(ids_ms(id), T0);
  CHECK_EQ(id_producer(id), 37);
  CHECK_EQ(id_seq(id), 0);
  CHECK_EQ(id, ((uint64_t)T0 << 20) | (37u << 14));
  CHECK_EQ(atomic_load(&g.last), id);
  uint64_t id2 = ids_next(&g, T0);
  CHECK_EQ(id2, id + 1);
  CHECK_EQ(id_seq(id2), 1);
  CHECK_EQ(atomic_load(&g.last), id2);
  /* A new millisecond starts the sequence over. */
  uint64_t id3 = ids_next(&g, T0 + 1);
  CHECK_EQ(ids_ms(id3), T0 + 1);
  CHECK_EQ(id_seq(id3), 0);
  CHECK_EQ(id_producer(id3), 37);
  /* The top producer and the whole ms range of a realistic clock fit. */
  ids_init(&g, IDS_PRODUCERS - 1, 0);
  int64_t far = 4102444800000ll; /* 2100-01-01 */
  id = ids_next(&g, far);
  CHECK_EQ(ids_ms(id), far);
  CHECK_EQ(id_producer(id), IDS_PRODUCERS - 1);
  CHECK(id > 0);
}

static void strictly_increasing(void) {
  uint64_t seed = test_seed(), rs = seed;
  ids g;
  ids_init(&g, 5, 0);
  uint64_t prev = 0;
  int64_t now = T0;
  for (int i = 0; i < 200000; i++) {
    /* The clock stalls, creeps, jumps, and sometimes steps back. */
    uint64_t r = test_rand(&rs) % 100;
    if (r < 60) {
    } else if (r < 85) {
      now += 1;
    } else if (r < 95) {
      now += (int64_t)(test_rand(&rs) % 5000);
    } else {
      now -= (int64_t)(test_rand(&rs) % 3000);
    }
    uint64_t id = ids_next(&g, now);
    CHECK(id > prev);
    CHECK_EQ(id_producer(id), 5);
    CHECK(ids_ms(id) >= now); /* never behind the clock */
    CHECK_EQ(atomic_load(&g.last), id);
    prev = id;
  }
}

static void clock_steps_back(void) {
  ids g;
  ids_init(&g, 1, 0);
  uint64_t a = ids_next(&g, T0 + 500);
  /* The clock goes back a whole second: ids stay in the newer ms. */
  uint64_t b = ids_next(&g, T0 - 500);
  CHECK(b > a);
  CHECK_EQ(ids_ms(b), T0 + 500);
  CHECK_EQ(id_seq(b), 1);
  uint64_t c = ids_next(&g, T0 + 499);
  CHECK(c > b);
  CHECK_EQ(ids_ms(c), T0 + 500);
  /* Once the clock passes again, it is followed. */
  uint64_t d = ids_next(&g, T0 + 501);
  CHECK_EQ(ids_ms(d), T0 + 501);
  CHECK_EQ(id_seq(d), 0);
}

static void borrow_next_ms(void) {
  ids g;
  ids_init(&g, 9, 0);
  uint64_t prev = 0;
  /* 16,384 ids fill T0; the next ones borrow T0+1, then T0+2. */
  for (uint32_t i = 0; i < 3 * (IDS_SEQ_MAX + 1) + 10; i++) {
    uint64_t id = ids_next(&g, T0);
    CHECK(id > prev);
    CHECK_EQ(ids_ms(id), T0 + i / (IDS_SEQ_MAX + 1));
    CHECK_EQ(id_seq(id), i % (IDS_SEQ_MAX + 1));
    CHECK_EQ(id_producer(id), 9);
    prev = id;
  }
  CHECK_EQ(ids_ms(prev), T0 + 3);
  /* The clock catching up to a borrowed ms does not restart it. */
  uint64_t id = ids_next(&g, T0 + 3);
  CHECK(id > prev);
  CHECK_EQ(ids_ms(id), T0 + 3);
  CHECK_EQ(id_seq(id), 10);
  id = ids_next(&g, T0 + 1);
  CHECK(id > prev);
  CHECK_EQ(ids_ms(id), T0 + 3);
  /* Passing it does. */
  uint64_t later = ids_next(&g, T0 + 4);
  CHECK(later > id);
  CHECK_EQ(ids_ms(later), T0 + 4);
  CHECK_EQ(id_seq(later), 0);
  /* A borrow at the exact boundary of a new ms. */
  ids_init(&g, 9, 0);
  for (uint32_t i = 0; i <= IDS_SEQ_MAX; i++)
    ids_next(&g, T0 + 10);
  id = ids_next(&g, T0 + 10);
  CHECK_EQ(ids_ms(id), T0 + 11);
  CHECK_EQ(id_seq(id), 0);
  id = ids_next(&g, T0 + 11);
  CHECK_EQ(ids_ms(id), T0 + 11);
  CHECK_EQ(id_seq(id), 1);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void producers_never_collide(void) {
  /* Every producer mints on its own clock rate; the busiest burst past
   * 16,384 a millisecond and borrow ahead of the others. */
  enum { PER = 18000 };
  uint64_t *all = malloc(sizeof(uint64_t) * IDS_PRODUCERS * PER);
  CHECK(all != NULL);
  ids g[IDS_PRODUCERS];
  for (uint32_t p = 0; p < IDS_PRODUCERS; p++)
    ids_init(&g[p], p, T0);
  size_t n = 0;
  for (uint32_t i = 0; i < PER; i++) {
    for (uint32_t p = 0; p < IDS_PRODUCERS; p++) {
      uint64_t id = ids_next(&g[p], T0 + i / (2000 + 250 * p));
      CHECK_EQ(id_producer(id), p);
      all[n++] = id;
    }
  }
  CHECK(ids_ms(atomic_load(&g[IDS_PRODUCERS - 1].last)) > T0); /* it borrowed */
  qsort(all, n, sizeof(uint64_t), cmp_u64);
  for (size_t i = 1; i < n; i++)
    CHECK(all[i] != all[i - 1]);
  free(all);
}

typedef struct minter {
  uint32_t producer;
  uint64_t *out;
  uint32_t n;
} minter;

static void *mint_main(void *arg) {
  minter *m = arg;
  ids g;
  ids_init(&g, m->producer, T0);
  for (uint32_t i = 0; i < m->n; i++) {
    m->out[i] = ids_next(&g, T0 + i / 5000);
    if (i > 0) CHECK(m->out[i] > m->out[i - 1]);
  }
  return NULL;
}

static void threads_never_collide(void) {
  enum { TH = 4, PER = 50000 };
  uint64_t *all = malloc(sizeof(uint64_t) * TH * PER);
  CHECK(all != NULL);
  minter m[TH];
  pthread_t th[TH];
  for (int i = 0; i < TH; i++) {
    m[i].producer = (uint32_t)i * 17; /* 0, 17, 34, 51 */
    m[i].out = all + (size_t)i * PER;
    m[i].n = PER;
    CHECK_EQ(pthread_create(&th[i], NULL, mint_main, &m[i]), 0);
  }
  for (int i = 0; i < TH; i++)
    CHECK_EQ(pthread_join(th[i], NULL), 0);
  qsort(all, (size_t)TH * PER, sizeof(uint64_t), cmp_u64);
  for (size_t i = 1; i < (size_t)TH * PER; i++)
    CHECK(all[i] != all[i - 1]);
  free(all);
}

static void init_floor(void) {
  ids g;
  /* A clock behind the floor mints at the floor, not at the clock. */
  ids_init(&g, 3, T0 + 1000);
  uint64_t id = ids_next(&g, T0);
  CHECK_EQ(ids_ms(id), T0 + 1000);
  CHECK_EQ(id_seq(id), 0);
  CHECK(ids_next(&g, T0 + 999) > id);
  /* A clock ahead of it wins. */
  ids_init(&g, 3, T0);
  id = ids_next(&g, T0 + 5);
  CHECK_EQ(ids_ms(id), T0 + 5);
  CHECK_EQ(atomic_load(&g.last), id);
  /* A fresh generator has minted nothing. */
  ids_init(&g, 63, T0);
  CHECK_EQ(atomic_load(&g.last), 0);
  id = ids_next(&g, T0);
  CHECK_EQ(id, ((uint64_t)T0 << IDS_MS_SHIFT) | (63u << IDS_SEQ_BITS));
}

static void floor_ms_and_restart(void) {
  uint64_t hwm = ((uint64_t)T0 << IDS_MS_SHIFT) | (12u << IDS_SEQ_BITS) | 77;
  CHECK_EQ(ids_ms(hwm), T0);
  /* The gap wins while the clock is close to (or behind) the mark. */
  CHECK_EQ(ids_floor_ms(hwm, T0), T0 + IDS_RESTART_GAP_MS);
  CHECK_EQ(ids_floor_ms(hwm, T0 - 50000), T0 + IDS_RESTART_GAP_MS);
  CHECK_EQ(ids_floor_ms(hwm, T0 + IDS_RESTART_GAP_MS), T0 + IDS_RESTART_GAP_MS);
  /* The clock wins once it is past. */
  CHECK_EQ(ids_floor_ms(hwm, T0 + IDS_RESTART_GAP_MS + 1), T0 + IDS_RESTART_GAP_MS + 1);
  CHECK_EQ(ids_floor_ms(hwm, T0 + 86400000), T0 + 86400000);
  CHECK_EQ(ids_floor_ms(0, 5), IDS_RESTART_GAP_MS);
  CHECK_EQ(ids_floor_ms(0, T0), T0);

  /* A run that borrowed far ahead, then a restart with the clock stepped
   * back: every producer's new ids are above everything minted before,
   * including ids minted after the persisted mark (within the gap). */
  ids g[IDS_PRODUCERS];
  for (uint32_t p = 0; p < IDS_PRODUCERS; p++)
    ids_init(&g[p], p, T0);
  uint64_t mark = 0, newest = 0;
  for (int i = 0; i < 200000; i++) {
    uint64_t id = ids_next(&g[i % 2], T0 + 3); /* a burst: borrows 6 ms ahead */
    if (i == 60000) mark = id;                 /* the last hwm the writer persisted */
    if (id > newest) newest = id;
  }
  CHECK_EQ(ids_ms(newest), T0 + 3 + 100000 / (IDS_SEQ_MAX + 1));
  uint64_t hw = 0;
  for (uint32_t p = 0; p < 2; p++)
    if (atomic_load(&g[p].last) > hw) hw = atomic_load(&g[p].last);
  CHECK_EQ(hw, newest);
  for (int64_t back = 0; back <= 900; back += 300) {
    int64_t floor = ids_floor_ms(mark, T0 + 3 - back);
    for (uint32_t p = 0; p < IDS_PRODUCERS; p++) {
      ids r;
      ids_init(&r, p, floor);
      uint64_t id = ids_next(&r, T0 + 3 - back);
      CHECK(id > newest);
      CHECK(id > mark);
    }
  }
}

TEST_LIST({"layout", layout, 0}, {"strictly_increasing", strictly_increasing, 0},
          {"clock_steps_back", clock_steps_back, 0}, {"borrow_next_ms", borrow_next_ms, 0},
          {"producers_never_collide", producers_never_collide, 0},
          {"threads_never_collide", threads_never_collide, 0}, {"init_floor", init_floor, 0},
          {"floor_ms_and_restart", floor_ms_and_restart, 0})

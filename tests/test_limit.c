/*
 * test_limit.c -- the insert-only hash tables (engine/limit.h): bounds at
 * init and at 3/4 full, full-key comparison, the buyers' counter (I3), the
 * idempotency key protocol (I4), and threads racing upserts, takes and key
 * claims on shared entries.
 */
#include <pthread.h>
#include <sched.h>
#include <string.h>

#include "limit.h"
#include "test.h"

static void init_bounds(void) {
  lim_table t;
  static const uint32_t bad[] = {0, 1, 2, 3, 5, 6, 12, 1000, (1u << 30) + 1, 1u << 31, UINT32_MAX};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    CHECK_EQ(lim_init(&t, bad[i]), -1);
    CHECK(t.e == NULL);
    lim_free(&t); /* safe after a failed init */
  }
  for (uint32_t cap = 4; cap <= (1u << 16); cap <<= 1) {
    CHECK_EQ(lim_init(&t, cap), 0);
    CHECK_EQ(lim_capacity(&t), cap);
    CHECK_EQ(lim_used(&t), 0);
    CHECK_EQ(t.max_used, cap / 4 * 3);
    CHECK_EQ(lim_find(&t, 1, 2), LIM_FULL);
    lim_free(&t);
    CHECK(t.e == NULL);
  }
}

static void upsert_find(void) {
  lim_table t;
  CHECK_EQ(lim_init(&t, 64), 0);
  CHECK_EQ(lim_find(&t, 10, 20), LIM_FULL);
  uint32_t i = lim_upsert(&t, 10, 20);
  CHECK(i < 64);
  CHECK_EQ(lim_used(&t), 1);
  CHECK_EQ(lim_find(&t, 10, 20), i);
  CHECK_EQ(lim_upsert(&t, 10, 20), i); /* no second entry */
  CHECK_EQ(lim_used(&t), 1);
  lim_entry *e = lim_at(&t, i);
  CHECK_EQ(e->k1, 10);
  CHECK_EQ(e->k2, 20);
  CHECK_EQ(lim_val(e), 0); /* a new entry starts at 0 */
  CHECK(atomic_load(&e->tag) > 1);
  /* The value belongs to the entry: a later upsert finds it unchanged. */
  CHECK_EQ(lim_take(e, 3, 5), 0);
  CHECK_EQ(lim_upsert(&t, 10, 20), i);
  CHECK_EQ(lim_val(lim_at(&t, i)), 3);
  /* The all-zero key is a key like any other. */
  uint32_t z = lim_upsert(&t, 0, 0);
  CHECK(z != LIM_FULL && z != i);
  CHECK_EQ(lim_find(&t, 0, 0), z);
  CHECK_EQ(lim_used(&t), 2);
  /* With its tag given (as a caller that prefetched gives it), an upsert
   * finds the same entry, or makes the one lim_upsert would have; the tag
   * is the one the entry stores, and the probe starts at its home. */
  CHECK_EQ(lim_upsert_tag(&t, 10, 20, lim_tag(10, 20)), i);
  CHECK_EQ(atomic_load(&e->tag), lim_tag(10, 20));
  uint32_t y = lim_upsert_tag(&t, 30, 40, lim_tag(30, 40));
  CHECK(y != LIM_FULL && y != i && y != z);
  CHECK_EQ(lim_find(&t, 30, 40), y);
  CHECK_EQ(lim_upsert(&t, 30, 40), y);
  CHECK_EQ(lim_used(&t), 3);
  lim_free(&t);
}

static void full_key_compared(void) {
  /* Keys that differ only in k2, only in k1, or are swapped, are distinct
   * entries; in a 4096-slot table many share a home slot, so probing walks
   * past entries whose key differs and must never answer with them. */
  lim_table t;
  CHECK_EQ(lim_init(&t, 4096), 0);
  enum { N = 1000 };
  static uint32_t idx[N][3];
  for (uint32_t i = 0; i < N; i++) {
    idx[i][0] = lim_upsert(&t, 7, i);                 /* same k1, k2 differs */
    idx[i][1] = lim_upsert(&t, (uint64_t)i << 32, 7); /* same k2, k1 differs */
    idx[i][2] = lim_upsert(&t, 7ull << 40, (uint64_t)i << 32);
    for (int k = 0; k < 3; k++)
      CHECK(idx[i][k] != LIM_FULL);
  }
  CHECK_EQ(lim_used(&t), 3 * N);
  for (uint32_t i = 0; i < N; i++) {
    CHECK_EQ(lim_find(&t, 7, i), idx[i][0]);
    CHECK_EQ(lim_find(&t, (uint64_t)i << 32, 7), idx[i][1]);
    CHECK_EQ(lim_find(&t, 7ull << 40, (uint64_t)i << 32), idx[i][2]);
    CHECK_EQ(lim_at(&t, idx[i][0])->k2, i);
    CHECK_EQ(lim_at(&t, idx[i][1])->k1, (uint64_t)i << 32);
    /* Near misses are absent. */
    CHECK_EQ(lim_find(&t, 8, i), LIM_FULL);
    CHECK_EQ(lim_find(&t, 7, i + 100000), LIM_FULL);
    CHECK_EQ(lim_find(&t, ((uint64_t)i << 32) | 1, 7), LIM_FULL);
  }
  /* Every index distinct. */
  static unsigned char seen[4096];
  for (uint32_t i = 0; i < N; i++)
    for (int k = 0; k < 3; k++) {
      CHECK_EQ(seen[idx[i][k]], 0);
      seen[idx[i][k]] = 1;
    }
  /* Entries keep their own values. */
  CHECK_EQ(lim_take(lim_at(&t, idx[5][0]), 2, 9), 0);
  CHECK_EQ(lim_val(lim_at(&t, idx[6][0])), 0);
  CHECK_EQ(lim_val(lim_at(&t, lim_find(&t, 7, 5))), 2);
  lim_free(&t);
}

static void tag_collision_compares_full_key(void) {
  /* A real 64-bit tag collision can't be found by search, so make one: let
   * (k1, k2) insert normally, then rewrite that entry's key to a neighbour
   * while it keeps the tag. The table now holds an entry that matches
   * (k1, k2)'s tag and differs from it only in k2 (then only in k1): a
   * lookup must probe past it, and an upsert must make a new entry. */
  for (int which = 0; which < 2; which++) {
    lim_table t;
    CHECK_EQ(lim_init(&t, 16), 0);
    uint64_t k1 = 0x1111, k2 = 0x2222;
    uint32_t i = lim_upsert(&t, k1, k2);
    CHECK(i != LIM_FULL);
    lim_entry *e = lim_at(&t, i);
    CHECK(atomic_load(&e->tag) > 1);
    atomic_store(&e->val, 77);
    if (which == 0)
      e->k2 = k2 ^ 1; /* same tag, same k1, k2 differs */
    else
      e->k1 = k1 ^ 1; /* same tag, same k2, k1 differs */
    CHECK_EQ(lim_find(&t, k1, k2), LIM_FULL);
    uint32_t j = lim_upsert(&t, k1, k2);
    CHECK(j != LIM_FULL && j != i);
    CHECK_EQ(lim_val(lim_at(&t, j)), 0);
    CHECK_EQ(lim_find(&t, k1, k2), j);
    CHECK_EQ(lim_used(&t), 2);
    CHECK_EQ(lim_val(e), 77); /* the other key's entry is untouched */
    lim_free(&t);
  }
}

static void full_at_three_quarters(void) {
  for (uint32_t cap = 4; cap <= 1024; cap <<= 1) {
    lim_table t;
    CHECK_EQ(lim_init(&t, cap), 0);
    uint32_t max = cap / 4 * 3;
    for (uint32_t i = 0; i < max; i++) {
      uint32_t k = lim_upsert(&t, 1, i);
      CHECK(k != LIM_FULL);
      CHECK(k < cap);
    }
    CHECK_EQ(lim_used(&t), max);
    /* At the bound: a new key is refused, again and again. */
    CHECK_EQ(lim_upsert(&t, 2, 0), LIM_FULL);
    CHECK_EQ(lim_upsert(&t, 2, 1), LIM_FULL);
    CHECK_EQ(lim_used(&t), max);
    /* Existing keys are still found and upserted; absent ones end their
     * probe (there is always an empty slot). */
    for (uint32_t i = 0; i < max; i++) {
      uint32_t k = lim_find(&t, 1, i);
      CHECK(k != LIM_FULL);
      CHECK_EQ(lim_upsert(&t, 1, i), k);
    }
    for (uint32_t i = 0; i < 100; i++)
      CHECK_EQ(lim_find(&t, 3, i), LIM_FULL);
    CHECK_EQ(lim_used(&t), max);
    lim_free(&t);
  }
}

static void take_give_limit(void) {
  lim_table t;
  CHECK_EQ(lim_init(&t, 16), 0);
  lim_entry *e = lim_at(&t, lim_upsert(&t, 42, 1));
  CHECK_EQ(lim_take(e, 3, 5), 0);
  CHECK_EQ(lim_val(e), 3);
  CHECK_EQ(lim_take(e, 3, 5), -1); /* 6 > 5: refused whole */
  CHECK_EQ(lim_val(e), 3);
  CHECK_EQ(lim_take(e, 2, 5), 0); /* exactly the limit */
  CHECK_EQ(lim_val(e), 5);
  CHECK_EQ(lim_take(e, 1, 5), -1);
  lim_give(e, 4);
  CHECK_EQ(lim_val(e), 1);
  CHECK_EQ(lim_take(e, 4, 5), 0);
  CHECK_EQ(lim_take(e, 1, 5), -1);
  CHECK_EQ(lim_take(e, 1, 6), 0); /* a higher limit (per call) allows more */
  CHECK_EQ(lim_val(e), 6);
  lim_give(e, 6);
  CHECK_EQ(lim_val(e), 0);
  CHECK_EQ(lim_take(e, 6, 5), -1); /* more than the limit at once */
  CHECK_EQ(lim_take(e, 1, 0), -1); /* limit 0 allows nothing */
  CHECK_EQ(lim_take(e, UINT32_MAX, UINT32_MAX), 0);
  CHECK_EQ(lim_take(e, 1, UINT32_MAX), -1);
  CHECK_EQ(lim_take(e, UINT32_MAX, UINT32_MAX), -1);
  CHECK_EQ(lim_val(e), UINT32_MAX);
  lim_give(e, UINT32_MAX);
  CHECK_EQ(lim_val(e), 0);
  lim_free(&t);
}

static void key_claim_set_unbind(void) {
  lim_table t;
  CHECK_EQ(lim_init(&t, 16), 0);
  uint32_t i = lim_upsert(&t, 0xabcdef, 0x123456);
  lim_entry *e = lim_at(&t, i);
  CHECK_EQ(lim_val(e), LIM_KEY_FREE);
  /* First claim wins and holds the key; later claims see it pending. */
  CHECK_EQ(lim_key_claim(e), LIM_KEY_FREE);
  CHECK_EQ(lim_val(e), LIM_KEY_PENDING);
  CHECK_EQ(lim_key_claim(e), LIM_KEY_PENDING);
  CHECK_EQ(lim_key_claim(e), LIM_KEY_PENDING);
  /* Bound: every claim answers the order id. */
  lim_key_set(e, 1000);
  CHECK_EQ(lim_val(e), 1000);
  CHECK_EQ(lim_key_claim(e), 1000);
  CHECK_EQ(lim_val(e), 1000);
  /* Unbind only the order it names. */
  lim_key_unbind(e, 999);
  CHECK_EQ(lim_val(e), 1000);
  lim_key_unbind(e, LIM_KEY_PENDING);
  CHECK_EQ(lim_val(e), 1000);
  lim_key_unbind(e, 1000);
  CHECK_EQ(lim_val(e), LIM_KEY_FREE);
  lim_key_unbind(e, 1000); /* again: nothing to do */
  CHECK_EQ(lim_val(e), LIM_KEY_FREE);
  /* Free again: the next claim wins; letting it go (order 0) frees it. */
  CHECK_EQ(lim_key_claim(e), LIM_KEY_FREE);
  lim_key_set(e, LIM_KEY_FREE);
  CHECK_EQ(lim_val(e), LIM_KEY_FREE);
  CHECK_EQ(lim_key_claim(e), LIM_KEY_FREE);
  lim_key_set(e, UINT64_MAX); /* the largest order id */
  CHECK_EQ(lim_key_claim(e), UINT64_MAX);
  /* Unbind of a pending key by an order id leaves it pending. */
  uint32_t j = lim_upsert(&t, 0xabcdef, 0x123457);
  CHECK(j != i);
  lim_entry *f = lim_at(&t, j);
  CHECK_EQ(lim_key_claim(f), LIM_KEY_FREE);
  lim_key_unbind(f, 77);
  CHECK_EQ(lim_val(f), LIM_KEY_PENDING);
  lim_key_set(f, 2); /* the smallest order id */
  CHECK_EQ(lim_val(f), 2);
  CHECK_EQ(lim_val(e), UINT64_MAX); /* keys are independent */
  lim_free(&t);
}

/* ---- threads ------------------------------------------------------------- */

#define THREADS 4

typedef struct shared {
  lim_table t;
  pthread_barrier_t go;
  uint32_t nkeys;
  uint64_t salt;
} shared;

typedef struct worker {
  shared *s;
  uint64_t seed;
  uint32_t *idx; /* per key, what this thread got */
  uint64_t n_ok, n_full;
  uint64_t taken, given;
  uint64_t claims_won;
} worker;

static void *upsert_main(void *arg) {
  worker *w = arg;
  shared *s = w->s;
  uint64_t rs = w->seed;
  /* Each thread walks the keys from its own random offset and stride, so
   * they collide on different keys at different moments. */
  uint32_t n = s->nkeys;
  uint32_t off = (uint32_t)(test_rand(&rs) % n);
  uint32_t stride = 1;
  do
    stride = 1 + (uint32_t)(test_rand(&rs) % n);
  while (n % stride == 0 && stride != 1); /* coprime enough for n prime */
  pthread_barrier_wait(&s->go);
  for (uint32_t k = 0; k < n; k++) {
    uint32_t key = (uint32_t)((off + (uint64_t)k * stride) % n);
    w->idx[key] = lim_upsert(&s->t, s->salt, key);
  }
  return NULL;
}

static void upsert_race_once(uint32_t cap, uint32_t nkeys, uint64_t seed) {
  shared s;
  memset(&s, 0, sizeof(s));
  CHECK_EQ(lim_init(&s.t, cap), 0);
  CHECK_EQ(pthread_barrier_init(&s.go, NULL, THREADS), 0);
  s.nkeys = nkeys;
  s.salt = seed;
  worker w[THREADS];
  pthread_t th[THREADS];
  memset(w, 0, sizeof(w));
  for (int i = 0; i < THREADS; i++) {
    w[i].s = &s;
    w[i].seed = seed * (uint64_t)(2 * i + 3) + 1;
    w[i].idx = calloc(nkeys, sizeof(uint32_t));
    CHECK(w[i].idx != NULL);
    CHECK_EQ(pthread_create(&th[i], NULL, upsert_main, &w[i]), 0);
  }
  for (int i = 0; i < THREADS; i++)
    CHECK_EQ(pthread_join(th[i], NULL), 0);
  /* Every thread got the same entry for every key, and that entry holds
   * the key; one entry per distinct key. */
  unsigned char *seen = calloc(cap, 1);
  CHECK(seen != NULL);
  for (uint32_t k = 0; k < nkeys; k++) {
    uint32_t i0 = w[0].idx[k];
    CHECK(i0 != LIM_FULL);
    for (int i = 1; i < THREADS; i++)
      CHECK_EQ(w[i].idx[k], i0);
    CHECK_EQ(lim_at(&s.t, i0)->k1, s.salt);
    CHECK_EQ(lim_at(&s.t, i0)->k2, k);
    CHECK_EQ(lim_find(&s.t, s.salt, k), i0);
    CHECK_EQ(seen[i0], 0);
    seen[i0] = 1;
  }
  CHECK_EQ(lim_used(&s.t), nkeys);
  for (int i = 0; i < THREADS; i++)
    free(w[i].idx);
  free(seen);
  pthread_barrier_destroy(&s.go);
  lim_free(&s.t);
}

/* Many short rounds: each starts the threads together on a fresh table,
 * where the races are. */
static void run_upsert_race(uint32_t cap, uint32_t nkeys, int rounds) {
  uint64_t seed = test_seed(), rs = seed;
  for (int r = 0; r < rounds; r++)
    upsert_race_once(cap, nkeys, test_rand(&rs));
}

/* Key counts are prime so that every stride visits every key. The crowded
 * table holds 47 keys against a bound of 48: threads racing one below the
 * bound must never be refused a key that fits. */
static void upsert_race_roomy(void) { run_upsert_race(8192, 3001, 20); }
static void upsert_race_crowded(void) { run_upsert_race(64, 47, 300); }

static void *fill_main(void *arg) {
  worker *w = arg;
  shared *s = w->s;
  pthread_barrier_wait(&s->go);
  /* Distinct keys per thread, until the table refuses a few in a row. */
  uint64_t me = w->seed;
  uint32_t fulls_in_row = 0;
  for (uint64_t k = 0; fulls_in_row < 64; k++) {
    if (lim_upsert(&s->t, me, k) == LIM_FULL) {
      w->n_full++;
      fulls_in_row++;
    } else {
      w->n_ok++;
      fulls_in_row = 0;
    }
  }
  return NULL;
}

static void fill_race_to_bound(void) {
  /* Threads inserting distinct keys stop at 3/4 of capacity; each racing
   * inserter may pass the bound by one (limit.h), never more. */
  shared s;
  memset(&s, 0, sizeof(s));
  CHECK_EQ(lim_init(&s.t, 4096), 0);
  CHECK_EQ(pthread_barrier_init(&s.go, NULL, THREADS), 0);
  worker w[THREADS];
  pthread_t th[THREADS];
  memset(w, 0, sizeof(w));
  for (int i = 0; i < THREADS; i++) {
    w[i].s = &s;
    w[i].seed = 1000 + (uint64_t)i;
    CHECK_EQ(pthread_create(&th[i], NULL, fill_main, &w[i]), 0);
  }
  uint64_t ok = 0;
  for (int i = 0; i < THREADS; i++) {
    CHECK_EQ(pthread_join(th[i], NULL), 0);
    ok += w[i].n_ok;
  }
  CHECK(ok >= 3072 && ok <= 3072 + THREADS - 1);
  CHECK_EQ(lim_used(&s.t), ok);
  CHECK_EQ(lim_upsert(&s.t, 99, 99), LIM_FULL);
  uint32_t present = 0;
  for (uint32_t i = 0; i < 4096; i++)
    present += atomic_load(&s.t.e[i].tag) != 0;
  CHECK_EQ(present, ok);
  pthread_barrier_destroy(&s.go);
  lim_free(&s.t);
}

#define LIMIT 1000u

static void *take_main(void *arg) {
  worker *w = arg;
  shared *s = w->s;
  lim_entry *e = lim_at(&s->t, lim_upsert(&s->t, 5, 5));
  uint64_t rs = w->seed, holding = 0;
  pthread_barrier_wait(&s->go);
  for (int i = 0; i < 100000; i++) {
    uint32_t q = 1 + (uint32_t)(test_rand(&rs) % 3);
    if (lim_take(e, q, LIMIT) == 0) {
      w->taken += q;
      holding += q;
    }
    CHECK(lim_val(e) <= LIMIT);
    if (holding > 0 && test_rand(&rs) % 4 == 0) {
      uint32_t k = 1 + (uint32_t)(test_rand(&rs) % holding);
      lim_give(e, k);
      w->given += k;
      holding -= k;
    }
  }
  pthread_barrier_wait(&s->go);
  while (lim_take(e, 1, LIMIT) == 0)
    w->taken++; /* nothing given back now */
  return NULL;
}

static void take_race_respects_limit(void) {
  shared s;
  memset(&s, 0, sizeof(s));
  CHECK_EQ(lim_init(&s.t, 16), 0);
  CHECK_EQ(pthread_barrier_init(&s.go, NULL, THREADS), 0);
  uint64_t seed = test_seed();
  worker w[THREADS];
  pthread_t th[THREADS];
  memset(w, 0, sizeof(w));
  for (int i = 0; i < THREADS; i++) {
    w[i].s = &s;
    w[i].seed = seed + 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
    CHECK_EQ(pthread_create(&th[i], NULL, take_main, &w[i]), 0);
  }
  uint64_t taken = 0, given = 0;
  for (int i = 0; i < THREADS; i++) {
    CHECK_EQ(pthread_join(th[i], NULL), 0);
    taken += w[i].taken;
    given += w[i].given;
  }
  lim_entry *e = lim_at(&s.t, lim_find(&s.t, 5, 5));
  CHECK_EQ(lim_val(e), LIMIT);
  CHECK_EQ(taken - given, LIMIT);
  CHECK_EQ(lim_used(&s.t), 1);
  pthread_barrier_destroy(&s.go);
  lim_free(&s.t);
}

#define CLAIM_KEYS 2000u

typedef struct claim_shared {
  shared s;
  uint32_t idx[CLAIM_KEYS];
  _Atomic int owner[CLAIM_KEYS];
} claim_shared;

typedef struct claimer {
  claim_shared *c;
  int id;
  uint64_t won;
} claimer;

static void *claim_main(void *arg) {
  claimer *me = arg;
  claim_shared *c = me->c;
  pthread_barrier_wait(&c->s.go);
  for (uint32_t k = 0; k < CLAIM_KEYS; k++) {
    /* Every thread upserts the key itself, as a producer would. */
    uint32_t i = lim_upsert(&c->s.t, 0x5eed, k);
    CHECK_EQ(i, c->idx[k]);
    lim_entry *e = lim_at(&c->s.t, i);
    uint64_t v = lim_key_claim(e);
    if (v == LIM_KEY_FREE) {
      int none = 0;
      CHECK(atomic_compare_exchange_strong(&c->owner[k], &none, me->id + 1));
      me->won++;
      lim_key_set(e, 1000 + k); /* the order this key made */
    } else {
      CHECK(v == LIM_KEY_PENDING || v == 1000 + k);
    }
  }
  return NULL;
}

static void key_claim_race(void) {
  claim_shared *c = calloc(1, sizeof(*c));
  CHECK(c != NULL);
  CHECK_EQ(lim_init(&c->s.t, 4096), 0);
  CHECK_EQ(pthread_barrier_init(&c->s.go, NULL, THREADS), 0);
  for (uint32_t k = 0; k < CLAIM_KEYS; k++)
    c->idx[k] = lim_upsert(&c->s.t, 0x5eed, k);
  claimer w[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    w[i].c = c;
    w[i].id = i;
    w[i].won = 0;
    CHECK_EQ(pthread_create(&th[i], NULL, claim_main, &w[i]), 0);
  }
  uint64_t won = 0;
  for (int i = 0; i < THREADS; i++) {
    CHECK_EQ(pthread_join(th[i], NULL), 0);
    won += w[i].won;
  }
  /* Each key was won exactly once and names its order. */
  CHECK_EQ(won, CLAIM_KEYS);
  for (uint32_t k = 0; k < CLAIM_KEYS; k++) {
    CHECK(atomic_load(&c->owner[k]) != 0);
    CHECK_EQ(lim_val(lim_at(&c->s.t, c->idx[k])), 1000 + k);
  }
  CHECK_EQ(lim_used(&c->s.t), CLAIM_KEYS);
  pthread_barrier_destroy(&c->s.go);
  lim_free(&c->s.t);
  free(c);
}

TEST_LIST({"init_bounds", init_bounds, 0}, {"upsert_find", upsert_find, 0},
          {"full_key_compared", full_key_compared, 0},
          {"tag_collision_compares_full_key", tag_collision_compares_full_key, 0},
          {"full_at_three_quarters", full_at_three_quarters, 0},
          {"take_give_limit", take_give_limit, 0},
          {"key_claim_set_unbind", key_claim_set_unbind, 0},
          {"upsert_race_roomy", upsert_race_roomy, 60},
          {"upsert_race_crowded", upsert_race_crowded, 60},
          {"fill_race_to_bound", fill_race_to_bound, 60},
          {"take_race_respects_limit", take_race_respects_limit, 60},
          {"key_claim_race", key_claim_race, 60})

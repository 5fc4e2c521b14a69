/*
 * test_stress.c -- the invariants under concurrency, meant for the TSan
 * build: 4 producer threads make 1,000,000 reserve attempts by distinct and
 * repeating users on 10,000 units, some with idempotency keys that they
 * retry. Exactly 10,000 units are won (I1), no user holds more than the
 * limit (I3), every retried key gets its first order back (I4), and the
 * disk agrees after a restart.
 *
 *   SPIKE_STRESS_ATTEMPTS=N shrinks or grows the run (default 1,000,000).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "engine_util.h"

#define THREADS 4
#define STOCK 10000
#define LIMIT 2
#define USERS 200000
#define EVENT_ID 77
#define INFLIGHT 256

typedef struct req {
  spike_op op;
  struct worker *w;
  uint64_t user;
  int64_t key_slot; /* index into the worker's key table, or -1 */
  int retry;        /* this request re-sends an earlier key */
  int busy;         /* submitted, callback not yet run */
} req;

typedef struct keyrec {
  uint64_t user;
  uint64_t order_id; /* 0: first send not settled or not won */
  int settled;
  int won;
} keyrec;

typedef struct worker {
  spike_engine *e;
  spike_producer *p;
  int index;
  uint64_t attempts;
  uint64_t rng;
  req reqs[INFLIGHT];
  keyrec *keys;
  uint32_t nkeys, cap_keys;
  /* results */
  uint64_t won, won_units, replays_ok, sold_out, limited, busy_retries;
  uint64_t done;
} worker;

static _Atomic uint32_t units_by_user[USERS + 1]; /* user ids 1..USERS */
static _Atomic uint64_t total_units;

static void key_string(const worker *w, uint32_t slot, char *buf, size_t cap, size_t *len) {
  *len = (size_t)snprintf(buf, cap, "t%d-k%u", w->index, slot);
}

static void on_done(spike_op *op) {
  req *r = (req *)op; /* op is the first member */
  worker *w = r->w;
  r->busy = 0;
  w->done++;
  switch (op->status) {
  case SPIKE_OK:
    CHECK_EQ(op->r.order.user_id, r->user);
    CHECK_EQ(op->r.order.event_id, EVENT_ID);
    if (op->replayed) {
      CHECK(r->retry);
      keyrec *k = &w->keys[r->key_slot];
      /* a retry finds the order its key made, whether the first send has
       * settled yet or not */
      if (k->settled) CHECK(k->won && k->order_id == op->r.order.id);
      w->replays_ok++;
      break;
    }
    w->won++;
    w->won_units += op->r.order.qty;
    atomic_fetch_add(&total_units, op->r.order.qty);
    uint32_t held = atomic_fetch_add(&units_by_user[r->user], op->r.order.qty) + op->r.order.qty;
    CHECK(held <= LIMIT); /* I3, as the engine answered */
    if (r->key_slot >= 0) {
      keyrec *k = &w->keys[r->key_slot];
      CHECK(!k->won); /* I4: one key, one order */
      k->won = 1;
      k->order_id = op->r.order.id;
    }
    break;
  default:
    fprintf(stderr, "unexpected completion status %d (%s)\n", op->status,
            spike_strerror(op->status));
    abort();
  }
  if (r->key_slot >= 0 && !r->retry) w->keys[r->key_slot].settled = 1;
}

static req *free_req(worker *w) {
  for (;;) {
    for (int i = 0; i < INFLIGHT; i++)
      if (!w->reqs[i].busy) return &w->reqs[i];
    struct pollfd pfd = {spike_producer_fd(w->p), POLLIN, 0};
    poll(&pfd, 1, 100);
    spike_producer_drain(w->p);
  }
}

static void *run_worker(void *arg) {
  worker *w = arg;
  CHECK_EQ(spike_producer_open(w->e, &w->p), SPIKE_OK);
  w->cap_keys = (uint32_t)(w->attempts / 4 + 16);
  w->keys = calloc(w->cap_keys, sizeof(keyrec));
  CHECK(w->keys != NULL);
  for (uint64_t i = 0; i < w->attempts; i++) {
    req *r = free_req(w);
    memset(r, 0, sizeof(*r));
    r->w = w;
    r->key_slot = -1;
    uint64_t x = test_rand(&w->rng);
    uint32_t qty = 1 + (uint32_t)(x >> 62 == 0); /* a quarter ask for 2 */
    char key[32];
    size_t klen = 0;
    if ((x & 7) == 0 && w->nkeys > 0) {
      /* retry an earlier key, as its own user */
      r->key_slot = (int64_t)((x >> 8) % w->nkeys);
      r->retry = 1;
      r->user = w->keys[r->key_slot].user;
      key_string(w, (uint32_t)r->key_slot, key, sizeof(key), &klen);
    } else {
      r->user = 1 + (x >> 16) % USERS;
      if ((x & 7) < 3 && w->nkeys < w->cap_keys) {
        r->key_slot = w->nkeys++;
        w->keys[r->key_slot] = (keyrec){.user = r->user};
        key_string(w, (uint32_t)r->key_slot, key, sizeof(key), &klen);
      }
    }
    for (;;) {
      int rc = spike_reserve(w->p, &r->op, EVENT_ID, r->user, qty, klen ? key : NULL, klen,
                             on_done);
      if (rc == SPIKE_PENDING) {
        r->busy = 1;
        break;
      }
      if (rc == SPIKE_EBUSY) {
        w->busy_retries++;
        spike_producer_drain(w->p);
        continue;
      }
      if (rc == SPIKE_ESOLDOUT) w->sold_out++;
      else if (rc == SPIKE_ELIMIT) w->limited++;
      else {
        fprintf(stderr, "unexpected status %d (%s)\n", rc, spike_strerror(rc));
        abort();
      }
      /* refused: a first send of a key that lost leaves it free */
      if (r->key_slot >= 0 && !r->retry) w->keys[r->key_slot].settled = 1;
      break;
    }
  }
  while (spike_producer_inflight(w->p) > 0) {
    struct pollfd pfd = {spike_producer_fd(w->p), POLLIN, 0};
    poll(&pfd, 1, 100);
    spike_producer_drain(w->p);
  }
  CHECK_EQ(spike_producer_close(w->p), SPIKE_OK);
  return NULL;
}

static void million_attempts(void) {
  uint64_t seed = test_seed();
  uint64_t attempts = 1000000;
  const char *env = getenv("SPIKE_STRESS_ATTEMPTS");
  if (env != NULL) attempts = strtoull(env, NULL, 10);
  spike_config cfg;
  small_config(&cfg, "stress");
  cfg.max_buyers = 1u << 19;
  cfg.max_keys = 1u << 19;
  cfg.ring_size = 1024;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(EVENT_ID, STOCK);
  s.per_user_limit = LIMIT;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);

  static worker ws[THREADS];
  pthread_t th[THREADS];
  for (int i = 0; i < THREADS; i++) {
    ws[i] = (worker){.e = e, .index = i, .attempts = attempts / THREADS,
                     .rng = seed + (uint64_t)i * 0x9E3779B97F4A7C15ull};
    CHECK_EQ(pthread_create(&th[i], NULL, run_worker, &ws[i]), 0);
  }
  uint64_t won_units = 0, replays = 0, sold_out = 0, limited = 0, busy = 0;
  for (int i = 0; i < THREADS; i++) {
    CHECK_EQ(pthread_join(th[i], NULL), 0);
    won_units += ws[i].won_units;
    replays += ws[i].replays_ok;
    sold_out += ws[i].sold_out;
    limited += ws[i].limited;
    busy += ws[i].busy_retries;
  }
  printf("  won %" PRIu64 " units, %" PRIu64 " replays, %" PRIu64 " sold out, %" PRIu64
         " limited, %" PRIu64 " busy retries\n",
         won_units, replays, sold_out, limited, busy);
  CHECK_EQ(won_units, STOCK); /* I1: everything sold, nothing twice */
  CHECK_EQ(atomic_load(&total_units), STOCK);
  CHECK(replays > 0);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, EVENT_ID, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, STOCK);
  CHECK_EQ(ev.available, 0);
  CHECK_EQ(spike_close(e), SPIKE_OK);

  /* The disk agrees: recovery cross-checks counters against orders, and
   * every user's orders add up to what the engine answered. */
  e = open_engine(&cfg);
  CHECK_EQ(spike_event_get(e, EVENT_ID, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, STOCK);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  uint64_t checked = 0;
  static spike_order orders[LIMIT + 1];
  for (uint64_t u = 1; u <= USERS; u++) {
    uint32_t n;
    CHECK_EQ(spike_user_orders(p, u, EVENT_ID, 0, orders, LIMIT + 1, &n, NULL), SPIKE_OK);
    uint32_t units = 0;
    for (uint32_t i = 0; i < n; i++) units += orders[i].qty;
    CHECK(units <= LIMIT); /* I3 on disk */
    CHECK_EQ(units, atomic_load(&units_by_user[u]));
    checked += units;
  }
  CHECK_EQ(checked, STOCK);
  /* every won key is stored with its order: a retry after restart finds it */
  for (int t = 0; t < THREADS; t++)
    for (uint32_t k = 0; k < ws[t].nkeys; k += 97) {
      if (!ws[t].keys[k].won) continue;
      char key[32];
      size_t klen;
      key_string(&ws[t], k, key, sizeof(key), &klen);
      spike_op op;
      CHECK_EQ(settle(p, &op, spike_reserve(p, &op, EVENT_ID, ws[t].keys[k].user, 1, key, klen,
                                            count_cb)),
               SPIKE_OK);
      CHECK_EQ(op.replayed, 1);
      CHECK_EQ(op.r.order.id, ws[t].keys[k].order_id);
    }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"million_attempts", million_attempts, 300})

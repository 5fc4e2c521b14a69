/*
 * test_races.c -- races that sell the last unit (issue 11, row 8), run under
 * TSan and ASan: many producers on one unit; pay, cancel and the expiry on
 * one order at its deadline; restocks during a crowd. (Closes during a
 * crowd: test_engine's close_races_reserves.) Each must end with exactly one
 * winner or one final state, and counters that balance.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_util.h"

#define THREADS 4

static spike_engine *open_small(spike_config *cfg, const char *tag) {
  small_config(cfg, tag);
  cfg->max_buyers = 1u << 18;
  cfg->max_reserved = 1u << 18;
  cfg->max_events = 256;
  return open_engine(cfg);
}

static void balanced(spike_engine *e, uint64_t id, spike_event *ev) {
  CHECK_EQ(spike_event_get(e, id, ev), SPIKE_OK);
  CHECK(ev->reserved + ev->sold <= ev->stock_total);                 /* I1 */
  CHECK_EQ(ev->available + ev->reserved + ev->sold, ev->stock_total); /* I2 */
}

/* ---- many producers, one unit -------------------------------------------- */

enum { ROUNDS = 100 };

typedef struct crowd {
  spike_engine *e;
  int index;
  _Atomic int *go;
  int won[ROUNDS];
} crowd;

static void *one_unit_buyer(void *arg) {
  crowd *c = arg;
  spike_producer *p;
  CHECK_EQ(spike_producer_open(c->e, &p), SPIKE_OK);
  for (int r = 0; r < ROUNDS; r++) {
    while (atomic_load(c->go) <= r) sched_yield();
    spike_op op;
    int rc = settle(p, &op, spike_reserve(p, &op, 1000 + (uint64_t)r,
                                          (uint64_t)c->index + 1, 1, NULL, 0, count_cb));
    CHECK(rc == SPIKE_OK || rc == SPIKE_ESOLDOUT);
    c->won[r] = rc == SPIKE_OK;
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  return NULL;
}

static void last_unit_one_winner(void) {
  spike_config cfg;
  spike_engine *e = open_small(&cfg, "race-unit");
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  for (int r = 0; r < ROUNDS; r++) {
    spike_event_spec s = spec_default(1000 + (uint64_t)r, 1);
    CHECK_EQ(create_event(p, &s), SPIKE_OK);
  }
  _Atomic int go = 0;
  static crowd c[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    c[i] = (crowd){.e = e, .index = i, .go = &go};
    CHECK_EQ(pthread_create(&t[i], NULL, one_unit_buyer, &c[i]), 0);
  }
  for (int r = 0; r < ROUNDS; r++) {
    atomic_store(&go, r + 1); /* everyone at once */
    struct timespec nap = {0, 2000000};
    nanosleep(&nap, NULL);
  }
  for (int i = 0; i < THREADS; i++) CHECK_EQ(pthread_join(t[i], NULL), 0);
  for (int r = 0; r < ROUNDS; r++) {
    int winners = 0;
    for (int i = 0; i < THREADS; i++) winners += c[i].won[r];
    CHECK_EQ(winners, 1);
    spike_event ev;
    balanced(e, 1000 + (uint64_t)r, &ev);
    CHECK_EQ(ev.reserved, 1);
    CHECK_EQ(ev.available, 0);
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- pay, cancel and the expiry at the deadline -------------------------- */

typedef struct racer {
  spike_engine *e;
  const uint64_t *ids;
  int n;
  int pay; /* 1 pays, 0 cancels */
  _Atomic int *go;
  int *status;
} racer;

static void *deadline_racer(void *arg) {
  racer *r = arg;
  spike_producer *p;
  CHECK_EQ(spike_producer_open(r->e, &p), SPIKE_OK);
  while (!atomic_load(r->go)) sched_yield();
  for (int i = 0; i < r->n; i++) {
    spike_op op;
    r->status[i] = r->pay
                       ? settle(p, &op, spike_pay(p, &op, r->ids[i], 0, "race", 4, count_cb))
                       : settle(p, &op, spike_cancel(p, &op, r->ids[i], 0, count_cb));
    CHECK(r->status[i] == SPIKE_OK || r->status[i] == SPIKE_ESTATE);
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  return NULL;
}

static void pay_cancel_expiry_at_deadline(void) {
  spike_config cfg;
  spike_engine *e = open_small(&cfg, "race-deadline");
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  enum { N = 300 };
  spike_event_spec s = spec_default(7, N);
  s.pay_timeout_s = 1;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  static uint64_t ids[N];
  int64_t t0 = wall_ms();
  for (int i = 0; i < N; i++) {
    spike_op op;
    CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 7, 1 + (uint64_t)i, 1, NULL, 0, count_cb)),
             SPIKE_OK);
    ids[i] = op.r.order.id;
  }
  /* start both racers just before the first deadline: the timers fire
   * while pays and cancels arrive for the same orders */
  int64_t wait = t0 + 1000 - 30 - wall_ms();
  if (wait > 0) {
    struct timespec nap = {0, (long)wait * 1000000};
    nanosleep(&nap, NULL);
  }
  _Atomic int go = 0;
  static int pay_status[N], cancel_status[N];
  racer a = {e, ids, N, 1, &go, pay_status}, b = {e, ids, N, 0, &go, cancel_status};
  pthread_t ta, tb;
  CHECK_EQ(pthread_create(&ta, NULL, deadline_racer, &a), 0);
  CHECK_EQ(pthread_create(&tb, NULL, deadline_racer, &b), 0);
  atomic_store(&go, 1);
  CHECK_EQ(pthread_join(ta, NULL), 0);
  CHECK_EQ(pthread_join(tb, NULL), 0);
  struct timespec nap = {1, 200000000}; /* every deadline has passed */
  nanosleep(&nap, NULL);
  int paid = 0, cancelled = 0, expired = 0;
  for (int i = 0; i < N; i++) {
    spike_order o;
    CHECK_EQ(spike_order_get(p, ids[i], &o), SPIKE_OK);
    /* exactly one final state, and it is the one that answered ok */
    switch (o.state) {
    case SPIKE_ORDER_PAID:
      paid++;
      CHECK_EQ(pay_status[i], SPIKE_OK);
      CHECK_EQ(cancel_status[i], SPIKE_ESTATE);
      break;
    case SPIKE_ORDER_CANCELLED:
      cancelled++;
      CHECK_EQ(cancel_status[i], SPIKE_OK);
      CHECK_EQ(pay_status[i], SPIKE_ESTATE);
      break;
    case SPIKE_ORDER_EXPIRED:
      expired++;
      CHECK_EQ(pay_status[i], SPIKE_ESTATE);
      CHECK_EQ(cancel_status[i], SPIKE_ESTATE);
      break;
    default:
      abort();
    }
  }
  printf("  paid %d, cancelled %d, expired %d\n", paid, cancelled, expired);
  spike_event ev;
  balanced(e, 7, &ev);
  CHECK_EQ(ev.sold, paid);
  CHECK_EQ(ev.reserved, 0);
  CHECK_EQ(ev.available, N - paid);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- restocks during a crowd ----------------------------------------------- */

typedef struct shopper {
  spike_engine *e;
  int index;
  _Atomic int *stop;
  long won;
} shopper;

static void *restock_shopper(void *arg) {
  shopper *s = arg;
  spike_producer *p;
  CHECK_EQ(spike_producer_open(s->e, &p), SPIKE_OK);
  uint64_t user = (uint64_t)(s->index + 1) << 32;
  while (!atomic_load(s->stop)) {
    spike_op op;
    int rc = settle(p, &op, spike_reserve(p, &op, 9, user++, 1, NULL, 0, count_cb));
    CHECK(rc == SPIKE_OK || rc == SPIKE_ESOLDOUT);
    if (rc == SPIKE_OK) s->won++;
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  return NULL;
}

static void restock_during_crowd(void) {
  spike_config cfg;
  spike_engine *e = open_small(&cfg, "race-restock");
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(9, 5);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  _Atomic int stop = 0;
  static shopper sh[THREADS];
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    sh[i] = (shopper){.e = e, .index = i, .stop = &stop};
    CHECK_EQ(pthread_create(&t[i], NULL, restock_shopper, &sh[i]), 0);
  }
  uint64_t added = 0;
  for (int k = 0; k < 50; k++) {
    spike_op op;
    uint64_t add = 1 + (uint64_t)k % 7;
    CHECK_EQ(settle(p, &op, spike_event_restock(p, &op, 9, add, count_cb)), SPIKE_OK);
    added += add;
    spike_event ev;
    balanced(e, 9, &ev);
  }
  /* let the crowd take what is left */
  struct timespec nap = {0, 100000000};
  nanosleep(&nap, NULL);
  atomic_store(&stop, 1);
  long won = 0;
  for (int i = 0; i < THREADS; i++) {
    CHECK_EQ(pthread_join(t[i], NULL), 0);
    won += sh[i].won;
  }
  spike_event ev;
  balanced(e, 9, &ev);
  CHECK_EQ(ev.stock_total, 5 + added);
  CHECK_EQ(ev.reserved, (uint64_t)won); /* every unit went to exactly one winner */
  CHECK_EQ(ev.available, 0);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"last_unit_one_winner", last_unit_one_winner, 120},
          {"pay_cancel_expiry_at_deadline", pay_cancel_expiry_at_deadline, 120},
          {"restock_during_crowd", restock_during_crowd, 120})

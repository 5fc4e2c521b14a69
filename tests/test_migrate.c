/*
 * test_migrate.c -- a store written by the previous release (schema 1,
 * tests/fixtures/schema1) opens with this one: migrated in one transaction,
 * with every order, each user's orders, the idempotency keys and the
 * counters as they were, and new orders chained onto the old ones.
 */
#include <stdio.h>
#include <string.h>

#include "engine_util.h"
#include "schema.h"

#define ORDER_KEY_A 1883002921054896128ull
#define ORDER_PAID 1883002921055944704ull
#define ORDER_EV12 1883002921055944705ull
#define ORDER_KEY_B 1883002921056993280ull
#define ORDER_CANCELLED 1883002921056993281ull

static void copy_fixture(const char *dir) {
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "cp tests/fixtures/schema1/data.mdb '%s/data.mdb'", dir);
  CHECK_EQ(system(cmd), 0);
}

static int by_event_then_id(const void *a, const void *b) {
  const spike_order *x = a, *y = b;
  if (x->event_id != y->event_id) return x->event_id < y->event_id ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

/* A user's orders, sorted by event then id (the fixture's order). */
static void user_orders(spike_producer *p, uint64_t user, uint64_t event, uint64_t *ids,
                        uint32_t *n) {
  static spike_order out[16];
  CHECK_EQ(spike_user_orders(p, user, event, 0, out, 16, n, NULL), SPIKE_OK);
  qsort(out, *n, sizeof(*out), by_event_then_id);
  for (uint32_t i = 0; i < *n; i++) {
    CHECK_EQ(out[i].user_id, user);
    ids[i] = out[i].id;
  }
}

/* What the fixture holds, whichever schema read it. */
static void check_fixture(spike_engine *e, spike_producer *p) {
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 11, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 2);
  CHECK_EQ(ev.sold, 1);
  CHECK_EQ(ev.available, 7);
  CHECK_EQ(spike_event_get(e, 12, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 1);
  spike_order o;
  CHECK_EQ(spike_order_get(p, ORDER_PAID, &o), SPIKE_OK);
  CHECK_EQ(o.state, SPIKE_ORDER_PAID);
  CHECK(strcmp(o.payment_id, "pay-1") == 0);
  CHECK_EQ(spike_order_get(p, ORDER_CANCELLED, &o), SPIKE_OK);
  CHECK_EQ(o.state, SPIKE_ORDER_CANCELLED);
  uint64_t ids[16];
  uint32_t n;
  /* user 7: grouped by event, oldest first */
  user_orders(p, 7, 0, ids, &n);
  CHECK_EQ(n, 4);
  CHECK(ids[0] == ORDER_KEY_A && ids[1] == ORDER_PAID && ids[2] == ORDER_CANCELLED &&
        ids[3] == ORDER_EV12);
  user_orders(p, 7, 12, ids, &n);
  CHECK(n == 1 && ids[0] == ORDER_EV12);
  user_orders(p, 8, 0, ids, &n);
  CHECK(n == 1 && ids[0] == ORDER_KEY_B);
  user_orders(p, 9, 0, ids, &n);
  CHECK_EQ(n, 0);
  /* the keys: a retry finds its order; another user's retry is refused */
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 11, 7, 1, "key-a", 5, count_cb)), SPIKE_OK);
  CHECK(op.replayed && op.r.order.id == ORDER_KEY_A);
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 11, 8, 1, "key-b", 5, count_cb)), SPIKE_OK);
  CHECK(op.replayed && op.r.order.id == ORDER_KEY_B);
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 11, 9, 1, "key-b", 5, count_cb)),
           SPIKE_EFORBIDDEN);
}

static void schema1_store_migrates(void) {
  spike_config cfg;
  small_config(&cfg, "migrate");
  copy_fixture(cfg.data_dir);
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  check_fixture(e, p);
  /* The limits carried over (user 7 holds 2 of 3 in event 11), and a new
   * order joins the user's chain after the migrated ones. */
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 11, 7, 1, NULL, 0, count_cb)), SPIKE_OK);
  uint64_t fresh = op.r.order.id;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 11, 7, 1, NULL, 0, count_cb)), SPIKE_ELIMIT);
  uint64_t ids[16];
  uint32_t n;
  user_orders(p, 7, 11, ids, &n);
  CHECK(n == 4 && ids[3] == fresh);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);

  /* Reopened: schema 2 now, nothing to migrate, the same answers. */
  store *st;
  char err[256];
  CHECK_EQ(store_open(&st, cfg.data_dir, cfg.map_size_bytes, 8, err, sizeof(err)), 0);
  CHECK_EQ(store_migrated(st), 0);
  store_close(st);
  e = open_engine(&cfg);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  user_orders(p, 7, 0, ids, &n);
  CHECK(n == 5 && ids[3] == fresh && ids[4] == ORDER_EV12);
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 11, 7, 1, "key-a", 5, count_cb)), SPIKE_OK);
  CHECK(op.replayed && op.r.order.id == ORDER_KEY_A);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* The migration reports what it rewrote, once. */
static void migration_counts_orders(void) {
  spike_config cfg;
  small_config(&cfg, "migrate-count");
  copy_fixture(cfg.data_dir);
  store *st;
  char err[256];
  CHECK_EQ(store_open(&st, cfg.data_dir, cfg.map_size_bytes, 8, err, sizeof(err)), 0);
  CHECK_EQ(store_migrated(st), 5);
  store_close(st);
  CHECK_EQ(store_open(&st, cfg.data_dir, cfg.map_size_bytes, 8, err, sizeof(err)), 0);
  CHECK_EQ(store_migrated(st), 0);
  store_close(st);
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  check_fixture(e, p);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"schema1_store_migrates", schema1_store_migrates, 0},
          {"migration_counts_orders", migration_counts_orders, 0})

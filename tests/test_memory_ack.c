/*
 * test_memory_ack.c -- what ack=memory promises: an answer before the
 * commit, but never more lost than one batch's worth when commits fail, and
 * the same order semantics as durable mode for whoever acts on the answer
 * at once (through any producer). test_fault adds the cases that need a
 * slow fsync.
 */
#include <string.h>

#include "engine_util.h"

static void memory_config(spike_config *cfg, const char *tag) {
  small_config(cfg, tag);
  cfg->ack = SPIKE_ACK_MEMORY;
}

/*
 * A map too small for the load: commits start failing with MAP_FULL. The
 * answers given before the commit (SPIKE_OK at the call) and the ones given
 * after it (SPIKE_PENDING, then the callback) together may exceed what the
 * store holds by at most batch_max, the documented bound; and the engine
 * counts exactly what it lost.
 */
static void map_full_loses_at_most_one_batch(void) {
  spike_config cfg;
  memory_config(&cfg, "memfull");
  cfg.map_size_bytes = 1u << 20;
  cfg.batch_max = 64;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(7, 1000000);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  enum { WAVE = 256 };
  static spike_op ops[WAVE];
  static char keys[WAVE][40];
  uint64_t user = 1, told = 0, failed = 0, waves_after_failure = 0;
  while (waves_after_failure < 40 && user < 2000000) {
    int n = 0, pending = 0;
    for (int i = 0; i < WAVE; i++, user++) {
      int kl = snprintf(keys[i], sizeof(keys[i]), "a-long-idempotency-key-%llu",
                        (unsigned long long)user);
      ops[i].data = &n;
      int rc = spike_reserve(p, &ops[i], 7, user, 1, keys[i], (size_t)kl, count_cb);
      if (rc == SPIKE_OK) {
        told++;
        ops[i].status = 1; /* answered now; not waited for */
      } else if (rc == SPIKE_PENDING) {
        pending++;
      } else {
        CHECK(rc == SPIKE_EBUSY || rc == SPIKE_ESTORAGE);
        ops[i].status = 1;
      }
    }
    wait_count(p, &n, pending);
    for (int i = 0; i < WAVE; i++) {
      if (ops[i].status == 1) continue;
      if (ops[i].status == SPIKE_OK) {
        told++;
      } else {
        CHECK_EQ(ops[i].status, SPIKE_ESTORAGE);
        CHECK(strstr(ops[i].detail, "map full") != NULL);
        failed++;
      }
    }
    if (failed > 0) waves_after_failure++;
  }
  CHECK(failed > 0);
  spike_stats st;
  spike_stats_get(e, &st);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  cfg.map_size_bytes = 64u << 20;
  e = open_engine(&cfg);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 7, &ev), SPIKE_OK);
  fprintf(stderr, "told %llu, stored %llu, lost %llu (counted %llu), failed %llu\n",
          (unsigned long long)told, (unsigned long long)ev.reserved,
          (unsigned long long)(told - ev.reserved), (unsigned long long)st.acks_lost_total,
          (unsigned long long)failed);
  CHECK(told >= ev.reserved); /* nothing stored that nobody was told of */
  CHECK(told - ev.reserved <= cfg.batch_max);
  CHECK_EQ(told - ev.reserved, st.acks_lost_total);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* A reserve of one unit, answered (at enqueue, or at its commit past the
 * memory-ack bound): its order id. */
static uint64_t reserve_now(spike_producer *p, uint64_t event, uint64_t user) {
  spike_op r;
  int rc = spike_reserve(p, &r, event, user, 1, NULL, 0, count_cb);
  if (rc == SPIKE_PENDING) rc = settle(p, &r, rc);
  CHECK_EQ(rc, SPIKE_OK);
  return r.r.order.id;
}

/* A reserve answered on one producer, paid or cancelled at once on another:
 * the writer may drain the second ring first, and must wait for the order
 * rather than say it does not exist. */
static void pay_and_cancel_through_another_producer(void) {
  spike_config cfg;
  memory_config(&cfg, "memxp");
  spike_engine *e = open_engine(&cfg);
  spike_producer *a, *b;
  CHECK_EQ(spike_producer_open(e, &a), SPIKE_OK);
  CHECK_EQ(spike_producer_open(e, &b), SPIKE_OK);
  spike_event_spec s = spec_default(8, 100000);
  CHECK_EQ(create_event(a, &s), SPIKE_OK);
  int not_found = 0;
  for (int i = 0; i < 2000; i++) {
    spike_op o;
    uint64_t id = reserve_now(a, 8, 1000 + (uint64_t)i);
    int rc;
    if (i % 2 == 0)
      rc = settle(b, &o, spike_pay(b, &o, id, 0, "pay", 3, count_cb));
    else
      rc = settle(b, &o, spike_cancel(b, &o, id, 0, count_cb));
    if (rc == SPIKE_ENOORDER) not_found++;
    else CHECK_EQ(rc, SPIKE_OK);
  }
  CHECK_EQ(not_found, 0);
  /* The event-scoped forms: an order of another event is not found there,
   * whether or not its reserve has reached the writer yet; of its own
   * event it is paid or cancelled as above. */
  spike_event_spec s2 = spec_default(9, 10);
  CHECK_EQ(create_event(a, &s2), SPIKE_OK);
  for (int i = 0; i < 200; i++) {
    spike_op o;
    uint64_t id = reserve_now(a, 8, 5000 + (uint64_t)i);
    int rc;
    if (i % 2 == 0)
      rc = settle(b, &o, spike_cancel_in_event(b, &o, 9, id, 0, count_cb));
    else
      rc = settle(b, &o, spike_pay_in_event(b, &o, 9, id, 0, "pay", 3, count_cb));
    CHECK_EQ(rc, SPIKE_ENOORDER);
    rc = settle(b, &o, spike_cancel_in_event(b, &o, 8, id, 0, count_cb));
    CHECK_EQ(rc, SPIKE_OK);
    CHECK_EQ(o.r.order.state, SPIKE_ORDER_CANCELLED);
  }
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 9, &ev), SPIKE_OK);
  CHECK_EQ(ev.available, 10);
  /* An id nobody minted is still "not found", at once. */
  spike_op o;
  CHECK_EQ(settle(b, &o, spike_pay(b, &o, 12345, 0, "pay", 3, count_cb)), SPIKE_ENOORDER);
  CHECK_EQ(spike_producer_close(a), SPIKE_OK);
  CHECK_EQ(spike_producer_close(b), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* An id a producer minted that never reaches the writer as an order (here
 * an event's, picked by the engine) is waited for, 2 s, and then answered
 * "busy", not "not found": a reserve that slow may still arrive. Once a
 * later reserve of that producer is taken, the id is known not to be an
 * order, and "not found" comes at once. */
static void minted_id_waited_for_then_busy(void) {
  spike_config cfg;
  memory_config(&cfg, "meminflight");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(0, 10);
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_event_create(p, &op, &s, count_cb)), SPIKE_OK);
  uint64_t minted = op.r.event.id;
  int64_t t0 = wall_ms();
  CHECK_EQ(settle(p, &op, spike_pay(p, &op, minted, 0, "pay", 3, count_cb)), SPIKE_EBUSY);
  CHECK(wall_ms() - t0 >= 1900);
  CHECK(strstr(op.detail, "on its way") != NULL);
  int rc = spike_reserve(p, &op, minted, 1, 1, NULL, 0, count_cb);
  if (rc == SPIKE_PENDING) rc = settle(p, &op, rc);
  CHECK_EQ(rc, SPIKE_OK);
  spike_op g;
  CHECK_EQ(settle(p, &g, spike_feed_wait(p, &g, 0, 0, count_cb)), SPIKE_OK); /* reserve taken */
  t0 = wall_ms();
  CHECK_EQ(settle(p, &op, spike_pay(p, &op, minted, 0, "pay", 3, count_cb)), SPIKE_ENOORDER);
  CHECK(wall_ms() - t0 < 1000);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"map_full_loses_at_most_one_batch", map_full_loses_at_most_one_batch, 120},
          {"minted_id_waited_for_then_busy", minted_id_waited_for_then_busy, 30},
          {"pay_and_cancel_through_another_producer", pay_and_cancel_through_another_producer, 0})

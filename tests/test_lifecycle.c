/*
 * test_lifecycle.c -- the order lifecycle through the engine: every
 * (state, operation) pair, expiry under load, and pay racing cancel and
 * expiry from several threads. Each ends with the counters balanced and
 * the feed holding exactly one record per change.
 */
#include <lmdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "engine_util.h"
#include "vclock.h"

/* Feed totals: records by type, and per order how many terminal records. */
typedef struct feed_tally {
  uint64_t by_type[8];
  uint64_t records;
} feed_tally;

static void tally_feed(spike_producer *p, feed_tally *t) {
  static spike_change ch[1000];
  memset(t, 0, sizeof(*t));
  uint64_t after = 0, expect = 1;
  for (;;) {
    uint32_t n;
    uint64_t next;
    CHECK_EQ(spike_feed_read(p, after, ch, 1000, &n, &next), SPIKE_OK);
    if (n == 0) break;
    for (uint32_t i = 0; i < n; i++) {
      CHECK_EQ(ch[i].seq, expect++); /* no gap, none twice, in order */
      t->by_type[ch[i].type]++;
      t->records++;
    }
    after = next;
  }
}

static void check_balanced(spike_engine *e, uint64_t event_id) {
  spike_event ev;
  CHECK_EQ(spike_event_get(e, event_id, &ev), SPIKE_OK);
  CHECK(ev.reserved + ev.sold <= ev.stock_total);
  CHECK_EQ(ev.available + ev.reserved + ev.sold, ev.stock_total);
}

/* ---- the table ------------------------------------------------------------ */

enum { S_RESERVED, S_PAID, S_CANCELLED, S_EXPIRED, STATES };
enum { OP_PAY_SAME, OP_PAY_OTHER, OP_CANCEL, OP_EXPIRE, OPS };

/* expected (status, final state) for every pair */
static const struct {
  int status;
  spike_order_state after;
} table[STATES][OPS] = {
    /*              pay (same id)                          pay (other id)
                    cancel                                 expire */
    [S_RESERVED] = {{SPIKE_OK, SPIKE_ORDER_PAID}, {SPIKE_OK, SPIKE_ORDER_PAID},
                    {SPIKE_OK, SPIKE_ORDER_CANCELLED}, {SPIKE_OK, SPIKE_ORDER_EXPIRED}},
    [S_PAID] = {{SPIKE_OK, SPIKE_ORDER_PAID}, {SPIKE_ESTATE, SPIKE_ORDER_PAID},
                {SPIKE_ESTATE, SPIKE_ORDER_PAID}, {SPIKE_OK, SPIKE_ORDER_PAID}},
    [S_CANCELLED] = {{SPIKE_ESTATE, SPIKE_ORDER_CANCELLED}, {SPIKE_ESTATE, SPIKE_ORDER_CANCELLED},
                     {SPIKE_OK, SPIKE_ORDER_CANCELLED}, {SPIKE_OK, SPIKE_ORDER_CANCELLED}},
    [S_EXPIRED] = {{SPIKE_ESTATE, SPIKE_ORDER_EXPIRED}, {SPIKE_ESTATE, SPIKE_ORDER_EXPIRED},
                   {SPIKE_ESTATE, SPIKE_ORDER_EXPIRED}, {SPIKE_OK, SPIKE_ORDER_EXPIRED}},
};

/* An order of event 1 (pay window 1 s) brought into state s. */
static uint64_t order_in(spike_producer *p, uint64_t user, int s) {
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, user, 1, NULL, 0, count_cb)), SPIKE_OK);
  uint64_t id = op.r.order.id;
  if (s == S_PAID) CHECK_EQ(settle(p, &op, spike_pay(p, &op, id, user, "A", 1, count_cb)), SPIKE_OK);
  if (s == S_CANCELLED) CHECK_EQ(settle(p, &op, spike_cancel(p, &op, id, user, count_cb)), SPIKE_OK);
  return id;
}

static void every_state_and_operation(void) {
  spike_config cfg;
  small_config(&cfg, "table");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 100);
  s.pay_timeout_s = 1;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);

  uint64_t id[STATES][OPS];
  for (int st = 0; st < STATES; st++)
    for (int op = 0; op < OPS; op++) id[st][op] = order_in(p, 1000 + st * 10 + op, st);
  /* The expired row and the expire column need the window to pass: the
   * rest act now, inside it. */
  for (int st = S_RESERVED; st <= S_CANCELLED; st++)
    for (int o = OP_PAY_SAME; o <= OP_CANCEL; o++) {
      spike_op op;
      uint64_t user = 1000 + (uint64_t)(st * 10 + o);
      int rc = o == OP_CANCEL ? spike_cancel(p, &op, id[st][o], user, count_cb)
                              : spike_pay(p, &op, id[st][o], user, o == OP_PAY_SAME ? "A" : "B",
                                          1, count_cb);
      rc = settle(p, &op, rc);
      if (rc != table[st][o].status || op.r.order.state != table[st][o].after) {
        fprintf(stderr, "state %d op %d: status %d state %d\n", st, o, rc, op.r.order.state);
        abort();
      }
      CHECK_EQ(op.replayed, st != S_RESERVED && rc == SPIKE_OK);
    }
  vclock_pass(1300); /* the reserved ones left expire now */
  vclock_settle(p);
  for (int o = OP_PAY_SAME; o <= OP_CANCEL; o++) {
    spike_op op;
    uint64_t user = 1000 + (uint64_t)(S_EXPIRED * 10 + o);
    int rc = o == OP_CANCEL ? spike_cancel(p, &op, id[S_EXPIRED][o], user, count_cb)
                            : spike_pay(p, &op, id[S_EXPIRED][o], user, "A", 1, count_cb);
    CHECK_EQ(settle(p, &op, rc), table[S_EXPIRED][o].status);
    CHECK_EQ(op.r.order.state, SPIKE_ORDER_EXPIRED);
  }
  for (int st = 0; st < STATES; st++) { /* the expire column: the timer fired */
    spike_order o;
    CHECK_EQ(spike_order_get(p, id[st][OP_EXPIRE], &o), SPIKE_OK);
    CHECK_EQ(o.state, table[st][OP_EXPIRE].after);
  }
  check_balanced(e, 1);
  feed_tally t;
  tally_feed(p, &t);
  /* 16 reserves; paid: 1 setup + 2 from reserved; cancelled: 1 setup + 1;
   * expired: the reserved expire-column order and the 4 of the last row */
  CHECK_EQ(t.by_type[SPIKE_CHANGE_ORDER_RESERVED], 16);
  CHECK_EQ(t.by_type[SPIKE_CHANGE_ORDER_PAID], 4 + 2);
  CHECK_EQ(t.by_type[SPIKE_CHANGE_ORDER_CANCELLED], 4 + 1);
  CHECK_EQ(t.by_type[SPIKE_CHANGE_ORDER_EXPIRED], 1 + 4);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.sold, 6);
  CHECK_EQ(ev.reserved, 0);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- expiry under load ------------------------------------------------------ */

static void ten_thousand_expire(void) {
  enum { N = 10000 };
  spike_config cfg;
  small_config(&cfg, "expire10k");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(2, N);
  s.pay_timeout_s = 1;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  static spike_op ops[N];
  int done = 0;
  for (int i = 0; i < N; i++) {
    ops[i].data = &done;
    int rc;
    while ((rc = spike_reserve(p, &ops[i], 2, (uint64_t)i + 1, 1, NULL, 0, count_cb)) ==
           SPIKE_EBUSY)
      spike_producer_drain(p);
    CHECK_EQ(rc, SPIKE_PENDING);
  }
  wait_count(p, &done, N);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 2, &ev), SPIKE_OK);
  CHECK_EQ(ev.available, 0);
  vclock_pass(1000); /* the window ends: all of them, in a few batches */
  for (int i = 0; i < 1000 && ev.available < N; i++) {
    vclock_settle(p);
    CHECK_EQ(spike_event_get(e, 2, &ev), SPIKE_OK);
  }
  CHECK_EQ(ev.available, N); /* every unit back, and none twice */
  CHECK_EQ(ev.reserved, 0);
  spike_stats st;
  spike_stats_get(e, &st);
  CHECK_EQ(st.orders_expired_total, N);
  CHECK_EQ(st.reservations_live, 0);
  feed_tally t;
  tally_feed(p, &t);
  CHECK_EQ(t.by_type[SPIKE_CHANGE_ORDER_EXPIRED], N);
  /* each user holds nothing now: they can buy again */
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 2, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- races ------------------------------------------------------------------ */

enum { RACE_ORDERS = 3000 };
static uint64_t race_ids[RACE_ORDERS];
static _Atomic int race_go;

typedef struct racer {
  spike_engine *e;
  int pay; /* 1: pays every order, 0: cancels every order */
  int ok, refused;
} racer;

static void *race(void *arg) {
  racer *r = arg;
  spike_producer *p;
  CHECK_EQ(spike_producer_open(r->e, &p), SPIKE_OK);
  while (!atomic_load(&race_go)) {
  }
  spike_op *ops = calloc(RACE_ORDERS, sizeof(*ops));
  CHECK(ops != NULL);
  int done = 0, sent = 0;
  for (int i = 0; i < RACE_ORDERS; i++) {
    int k = r->pay ? i : RACE_ORDERS - 1 - i; /* meet in the middle */
    ops[i].data = &done;
    int rc;
    for (;;) {
      rc = r->pay ? spike_pay(p, &ops[i], race_ids[k], 0, "race", 4, count_cb)
                  : spike_cancel(p, &ops[i], race_ids[k], 0, count_cb);
      if (rc != SPIKE_EBUSY) break;
      spike_producer_drain(p);
    }
    CHECK_EQ(rc, SPIKE_PENDING);
    sent++;
  }
  wait_count(p, &done, sent);
  for (int i = 0; i < RACE_ORDERS; i++) {
    if (ops[i].status == SPIKE_OK) r->ok++;
    else if (ops[i].status == SPIKE_ESTATE) r->refused++;
    else abort();
  }
  free(ops);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  return NULL;
}

static void pay_races_cancel_and_expiry(void) {
  spike_config cfg;
  small_config(&cfg, "race");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(3, RACE_ORDERS);
  s.pay_timeout_s = 1;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  static spike_op ops[RACE_ORDERS];
  int done = 0;
  for (int i = 0; i < RACE_ORDERS; i++) {
    ops[i].data = &done;
    int rc;
    while ((rc = spike_reserve(p, &ops[i], 3, (uint64_t)i + 1, 1, NULL, 0, count_cb)) ==
           SPIKE_EBUSY)
      spike_producer_drain(p);
    CHECK_EQ(rc, SPIKE_PENDING);
  }
  wait_count(p, &done, RACE_ORDERS);
  for (int i = 0; i < RACE_ORDERS; i++) race_ids[i] = ops[i].r.order.id;
  /* start the racers so that the window closes while they run */
  int64_t deadline = ops[0].r.order.expires_at;
  if (wall_ms() < deadline - 10) vclock_pass(deadline - 10 - wall_ms());
  racer payer = {.e = e, .pay = 1}, canceller = {.e = e, .pay = 0};
  pthread_t a, b;
  CHECK_EQ(pthread_create(&a, NULL, race, &payer), 0);
  CHECK_EQ(pthread_create(&b, NULL, race, &canceller), 0);
  atomic_store(&race_go, 1);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  vclock_pass(1300); /* whatever neither won expires */
  vclock_settle(p);

  uint32_t paid = 0, cancelled = 0, expired = 0;
  for (int i = 0; i < RACE_ORDERS; i++) {
    spike_order o;
    CHECK_EQ(spike_order_get(p, race_ids[i], &o), SPIKE_OK);
    if (o.state == SPIKE_ORDER_PAID) paid++;
    else if (o.state == SPIKE_ORDER_CANCELLED) cancelled++;
    else if (o.state == SPIKE_ORDER_EXPIRED) expired++;
    else abort();
  }
  printf("  paid %u, cancelled %u, expired %u\n", paid, cancelled, expired);
  CHECK_EQ(paid + cancelled + expired, RACE_ORDERS); /* exactly one terminal state each */
  CHECK_EQ(payer.ok, paid);
  CHECK_EQ(canceller.ok, cancelled);
  /* each order got one pay and one cancel: the loser of a pay/cancel race
   * is refused once, an order that expired first refuses both */
  CHECK_EQ(payer.refused + canceller.refused, RACE_ORDERS + expired);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 3, &ev), SPIKE_OK);
  CHECK_EQ(ev.sold, paid);
  CHECK_EQ(ev.reserved, 0);
  CHECK_EQ(ev.available, RACE_ORDERS - paid); /* each unit returned once */
  feed_tally t;
  tally_feed(p, &t);
  CHECK_EQ(t.by_type[SPIKE_CHANGE_ORDER_PAID], paid);
  CHECK_EQ(t.by_type[SPIKE_CHANGE_ORDER_CANCELLED], cancelled);
  CHECK_EQ(t.by_type[SPIKE_CHANGE_ORDER_EXPIRED], expired);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* Under load that fills every batch, expiries still get their share. */
static void expiry_not_starved_by_full_batches(void) {
  spike_config cfg;
  small_config(&cfg, "starve");
  cfg.batch_max = 4;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(5, 200);
  s.pay_timeout_s = 1;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_event_spec busy = spec_default(6, 4000000000u);
  CHECK_EQ(create_event(p, &busy), SPIKE_OK);
  static spike_op ops[1024]; /* the ring's size: in flight at most */
  int n = 0;
  for (uint64_t u = 1; u <= 200; u++) {
    ops[u].data = &n;
    CHECK_EQ(spike_reserve(p, &ops[u], 5, u, 1, NULL, 0, count_cb), SPIKE_PENDING);
  }
  wait_count(p, &n, 200);
  /* the 200 come due; keep the ring full: every batch is full of reserves */
  vclock_pass(1000);
  uint64_t user = 1000, sent = 0;
  int rounds = 0;
  spike_event ev;
  n = 0;
  do {
    for (uint32_t i = 0; i < 1024; i++) {
      ops[i].data = &n;
      int rc = spike_reserve(p, &ops[i], 6, user++, 1, NULL, 0, count_cb);
      CHECK_EQ(rc, SPIKE_PENDING);
      sent++;
    }
    wait_count(p, &n, (int)sent);
    CHECK_EQ(spike_event_get(e, 5, &ev), SPIKE_OK);
  } while (ev.available < 200 && ++rounds < 50);
  CHECK_EQ(ev.available, 200); /* all 200 expired while the load went on */
  CHECK(sent > 1000);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static void feed_retention(void) {
  spike_config cfg;
  small_config(&cfg, "retain");
  cfg.feed_retain = 10;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(4, 100);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  for (uint64_t u = 1; u <= 30; u++) {
    spike_op op;
    CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 4, u, 1, NULL, 0, count_cb)), SPIKE_OK);
  }
  static spike_change ch[64];
  uint32_t n;
  uint64_t next;
  /* A cursor behind what is kept is refused, not answered with a page
   * that skips the dropped records; the info says where the feed starts. */
  spike_feed_info info;
  CHECK_EQ(spike_feed_fetch(p, 0, ch, 64, &n, &next, &info), SPIKE_EINVAL);
  CHECK_EQ(n, 0);
  CHECK_EQ(info.first, 22);
  CHECK_EQ(info.head, 31);
  CHECK_EQ(info.records, 10);
  CHECK(info.bytes > 0 && info.store_id != 0);
  uint64_t id = info.store_id;
  CHECK_EQ(spike_feed_read(p, 20, ch, 64, &n, &next), SPIKE_EINVAL);
  CHECK_EQ(spike_feed_read(p, 32, ch, 64, &n, &next), SPIKE_EINVAL); /* ahead of the head */
  CHECK_EQ(spike_feed_fetch(p, 21, ch, 64, &n, &next, &info), SPIKE_OK);
  CHECK_EQ(n, 10); /* the newest ten: seqs 22..31 */
  CHECK_EQ(ch[0].seq, 22);
  CHECK_EQ(next, 31);
  CHECK_EQ(spike_feed_read(p, 31, ch, 64, &n, &next), SPIKE_OK); /* at the head: empty */
  CHECK_EQ(n, 0);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  e = open_engine(&cfg); /* the seq goes on after a restart */
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 4, 99, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_feed_fetch(p, 30, ch, 64, &n, &next, &info), SPIKE_OK);
  CHECK_EQ(n, 2);
  CHECK_EQ(ch[1].seq, 32);
  CHECK_EQ(info.store_id, id); /* the store keeps its id across a restart */
  spike_stats st;
  spike_stats_get(e, &st);
  CHECK_EQ(st.store_id, id);
  CHECK(st.map_used_bytes > 0 && st.map_used_bytes <= st.map_size_bytes);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* Set (v != UINT64_MAX) or delete the store's meta key "epoch_end" from
 * outside, as a build that keeps no epochs would leave it. */
static void meta_epoch_end(const char *dir, uint64_t v) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  CHECK_EQ(mdb_env_create(&env), 0);
  CHECK_EQ(mdb_env_set_maxdbs(env, 8), 0);
  CHECK_EQ(mdb_env_set_mapsize(env, 64u << 20), 0);
  CHECK_EQ(mdb_env_open(env, dir, 0, 0644), 0);
  CHECK_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
  CHECK_EQ(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
  MDB_val k = {9, (void *)"epoch_end"};
  if (v == UINT64_MAX) {
    CHECK_EQ(mdb_del(txn, dbi, &k, NULL), 0);
  } else {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (56 - 8 * i));
    MDB_val val = {8, b};
    CHECK_EQ(mdb_put(txn, dbi, &k, &val, 0), 0);
  }
  CHECK_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

static void reserve_users(spike_engine *e, uint64_t from, uint64_t to) {
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  for (uint64_t u = from; u <= to; u++) {
    spike_op op;
    CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 4, u, 1, NULL, 0, count_cb)), SPIKE_OK);
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
}

/* Each open begins an epoch at the head + 1; records keep the epoch of the
 * run that wrote them; records a build without epochs wrote (past
 * "epoch_end") are unknown (0), never the epoch before them. */
static void feed_epochs(void) {
  spike_config cfg;
  small_config(&cfg, "epochs");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(4, 100);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  reserve_users(e, 1, 4); /* seqs 1..5 */
  uint64_t a = spike_feed_epoch(e, 5);
  CHECK(a != 0 && spike_feed_epoch(e, 1) == a && spike_feed_epoch(e, 0) == 0);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  e = open_engine(&cfg);
  reserve_users(e, 5, 5); /* seq 6 */
  uint64_t b = spike_feed_epoch(e, 6);
  CHECK(b != 0 && b != a && spike_feed_epoch(e, 5) == a);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  /* as if the run of epoch b had written nothing, and then a build keeping
   * no epochs had written seq 6 */
  meta_epoch_end(cfg.data_dir, 5);
  e = open_engine(&cfg);
  CHECK_EQ(spike_feed_epoch(e, 5), a);
  CHECK_EQ(spike_feed_epoch(e, 6), 0);
  uint64_t c = spike_feed_epoch(e, 7); /* this run's */
  CHECK(c != 0 && c != a && c != b);
  reserve_users(e, 6, 6); /* seq 7 */
  CHECK_EQ(spike_feed_epoch(e, 7), c);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  /* epochs with no end kept beside them: none is trusted */
  meta_epoch_end(cfg.data_dir, UINT64_MAX);
  e = open_engine(&cfg);
  CHECK_EQ(spike_feed_epoch(e, 4), 0);
  CHECK_EQ(spike_feed_epoch(e, 7), 0);
  CHECK(spike_feed_epoch(e, 8) != 0);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"every_state_and_operation", every_state_and_operation, 60},
          {"feed_epochs", feed_epochs, 30},
          {"ten_thousand_expire", ten_thousand_expire, 60},
          {"pay_races_cancel_and_expiry", pay_races_cancel_and_expiry, 60},
          {"expiry_not_starved_by_full_batches", expiry_not_starved_by_full_batches, 30},
          {"feed_retention", feed_retention, 30})

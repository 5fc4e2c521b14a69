/*
 * bench_lifecycle.c -- the order lifecycle's cost: durable pay and cancel
 * operations per second next to reserve, and expiring 1,000,000
 * reservations (time and memory), each against a raw LMDB reference in
 * the same run.
 *
 * Engine: ack=durable, batch_max 4096, one producer keeping up to the ring
 * size in flight. Reserve N orders, pay N/2 of them, cancel the other N/2;
 * each phase timed from its first submission to its last completion.
 *
 * Reference for pay/cancel: one thread rewrites the same number of orders
 * of a raw store the way the writer does, 4096 per fsync'd transaction:
 * get and decode the order, change its state, store_put_order_change
 * (the order and its feed record), and one event record per batch.
 *
 * Expiry: reserve E orders with a window of S seconds in a fresh store,
 * close the engine, let the window pass, and time spike_open, which recovers the
 * store and expires every overdue reservation before returning; the same
 * store opened with nothing overdue (a second copy, reserved with a long
 * window) gives the recovery alone. Reference: one thread rewriting the E
 * orders as expired, 4096 per transaction. Memory: the expiry wheel holds
 * 24 bytes per reservation (wheel.h); the resident set before and after
 * the reservations are made is printed beside it.
 *
 *   bench_lifecycle [--orders N] [--expire E] [--window S] [DIR]
 *
 * S (default 10) is the expiry phase's pay window, which must outlast the
 * time it takes to reserve E orders; the smoke run in make test uses 1.
 * N is 2..2^24, E 1..2^24 (a store's map is 8 GiB, a few hundred bytes an
 * order), S 1..600 (the live copy's window is an hour, and must not run
 * out before its timed open).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "codec.h"
#include "ids.h"
#include "schema.h"
#include "spike.h"

#define BATCH 4096
#define EVENT_ID 1
#define ORDERS_MAX (1u << 24) /* --orders and --expire: within the 8 GiB map */
#define WINDOW_MAX 600u       /* well inside the live copy's 3600 s */

static long rss_kb(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return -1;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = -1;
  fclose(f);
  return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_lifecycle: %s: %d %s %s\n", what, rc, spike_strerror(rc),
          spike_open_error());
  exit(1);
}

static void config(spike_config *c, const char *dir, uint64_t orders) {
  spike_config_init(c);
  c->data_dir = dir;
  c->map_size_bytes = 8ull << 30;
  c->batch_max = BATCH;
  c->max_events = 4;
  c->max_buyers = pow2_at_least(orders * 2);
  c->max_keys = 16;
  c->max_reserved = (uint32_t)orders + 16;
  c->max_producers = 2;
  c->ring_size = 8192;
}

/* ---- engine side ---------------------------------------------------------- */

typedef struct run {
  spike_producer *p;
  spike_op *ops;
  uint64_t *ids;
  uint64_t done, failed;
} run;

static void op_cb(spike_op *op) {
  run *r = op->data;
  if (op->status == SPIKE_OK)
    r->done++;
  else
    r->failed++;
}

static void wait_inflight(spike_producer *p, uint32_t below) {
  while (spike_producer_inflight(p) > below) {
    struct pollfd pfd = {spike_producer_fd(p), POLLIN, 0};
    poll(&pfd, 1, 100);
    spike_producer_drain(p);
  }
}

/* kind: 0 reserve, 1 pay, 2 cancel, over ids[from, to). Returns seconds. */
static double phase(run *r, int kind, uint64_t from, uint64_t to) {
  uint64_t t0 = now_ns();
  r->done = r->failed = 0;
  for (uint64_t i = from; i < to; i++) {
    spike_op *op = &r->ops[i % 8192];
    if (spike_producer_inflight(r->p) >= 8192 - 1) wait_inflight(r->p, 4096);
    op->data = r;
    int rc;
    for (;;) {
      rc = kind == 0   ? spike_reserve(r->p, op, EVENT_ID, i + 1, 1, NULL, 0, op_cb)
           : kind == 1 ? spike_pay(r->p, op, r->ids[i], 0, "bench", 5, op_cb)
                       : spike_cancel(r->p, op, r->ids[i], 0, op_cb);
      if (rc != SPIKE_EBUSY) break;
      wait_inflight(r->p, spike_producer_inflight(r->p) / 2);
    }
    if (rc != SPIKE_PENDING) die("submit", rc);
    if (kind == 0) r->ids[i] = op->r.order.id; /* known at submit */
  }
  wait_inflight(r->p, 0);
  if (r->failed) die("ops failed", (int)r->failed);
  return (double)(now_ns() - t0) / 1e9;
}

static void create_event(spike_producer *p, uint64_t stock, uint32_t pay_timeout_s) {
  spike_event_spec s = {.id = EVENT_ID, .name = "bench", .name_len = 5, .stock = stock,
                        .price = 100, .start_at = 0, .end_at = 253402300799999ll,
                        .per_user_limit = 1, .pay_timeout_s = pay_timeout_s};
  run r = {.p = p};
  spike_op op;
  op.data = &r;
  int rc = spike_event_create(p, &op, &s, op_cb);
  if (rc != SPIKE_PENDING) die("create", rc);
  wait_inflight(p, 0);
  if (r.done != 1) die("create failed", op.status);
}

static void engine_pay_cancel(const char *dir, uint64_t n, double *t_res, double *t_pay,
                              double *t_can) {
  spike_config c;
  config(&c, dir, n);
  spike_engine *e;
  int rc = spike_open(&e, &c);
  if (rc != SPIKE_OK) die("open", rc);
  run r = {0};
  r.ops = calloc(8192, sizeof(spike_op));
  r.ids = calloc(n, sizeof(uint64_t));
  if (spike_producer_open(e, &r.p) != SPIKE_OK) die("producer", 0);
  create_event(r.p, n, 3600);
  *t_res = phase(&r, 0, 0, n);
  *t_pay = phase(&r, 1, 0, n / 2);
  *t_can = phase(&r, 2, n / 2, n);
  spike_event ev;
  spike_event_get(e, EVENT_ID, &ev);
  if (ev.sold != n / 2 || ev.available != n - n / 2 || ev.reserved != 0) die("counters", 0);
  spike_producer_close(r.p);
  spike_close(e);
  free(r.ops);
  free(r.ids);
}

/* ---- reference -------------------------------------------------------------- */

static void ref_check(int rc, const char *what) {
  if (rc != 0) {
    fprintf(stderr, "bench_lifecycle: reference %s: %s\n", what, store_strerror(rc));
    exit(1);
  }
}

/* A raw store holding n reserved orders (ids out) and the event: untimed. */
static store_txn *ref_fill(store **st, const char *dir, uint64_t n, uint64_t *ids_out,
                           spike_event *ev, uint64_t *seq) {
  char err[256];
  if (store_open(st, dir, 8ull << 30, 16, err, sizeof(err)) != 0) {
    fprintf(stderr, "bench_lifecycle: %s\n", err);
    exit(1);
  }
  store_txn *txn = store_txn_new(*st);
  if (txn == NULL) ref_check(ENOMEM, "store_txn_new");
  ids g;
  ids_init(&g, 0, wall_ms());
  memset(ev, 0, sizeof(*ev));
  ev->id = EVENT_ID;
  strcpy(ev->name, "bench");
  ev->price = 100;
  ev->stock_total = n;
  ev->end_at = 253402300799999ll;
  ev->per_user_limit = 1;
  ev->pay_timeout_s = 3600;
  *seq = 0;
  for (uint64_t i = 0; i < n;) {
    ref_check(store_write_begin(txn), "begin");
    int64_t now = wall_ms();
    for (uint64_t k = 0; k < BATCH && i < n; k++, i++) {
      order_rec r = {.o = {.id = ids_next(&g, now), .event_id = EVENT_ID, .user_id = i + 1,
                           .qty = 1, .amount = 100, .state = SPIKE_ORDER_RESERVED,
                           .created_at = now, .expires_at = now + 3600000},
                     .rseq = *seq + 1};
      ids_out[i] = r.o.id;
      ref_check(store_put_order_change(txn, &r, 1, ++*seq, SPIKE_CHANGE_ORDER_RESERVED, now),
                "put");
      ev->reserved++;
    }
    ev->available = ev->stock_total - ev->reserved - ev->sold;
    ref_check(store_put_event(txn, ev, 0), "event");
    ref_check(store_write_commit(txn, 1), "commit");
  }
  return txn;
}

/* Move ids[from, to) to state the way the writer does, 4096 per fsync'd
 * transaction. Returns seconds. */
static double ref_transition(store_txn *txn, const uint64_t *idv, uint64_t from, uint64_t to,
                             spike_order_state state, spike_event *ev, uint64_t *seq) {
  uint64_t t0 = now_ns();
  spike_change_type type = state == SPIKE_ORDER_PAID        ? SPIKE_CHANGE_ORDER_PAID
                           : state == SPIKE_ORDER_CANCELLED ? SPIKE_CHANGE_ORDER_CANCELLED
                                                            : SPIKE_CHANGE_ORDER_EXPIRED;
  for (uint64_t i = from; i < to;) {
    ref_check(store_write_begin(txn), "begin");
    int64_t now = wall_ms();
    for (uint64_t k = 0; k < BATCH && i < to; k++, i++) {
      order_rec r;
      spike_order *o = &r.o;
      ref_check(store_get_order_rec(txn, idv[i], &r), "get");
      o->state = state;
      if (state == SPIKE_ORDER_PAID) {
        o->paid_at = now;
        strcpy(o->payment_id, "bench");
        ev->sold++;
      } else {
        o->cancelled_at = now;
      }
      ev->reserved--;
      ref_check(store_put_order_change(txn, &r, 0, ++*seq, type, now), "put");
    }
    ev->available = ev->stock_total - ev->reserved - ev->sold;
    ref_check(store_put_event(txn, ev, 0), "event");
    ref_check(store_write_commit(txn, 1), "commit");
  }
  ref_check(store_sync(store_txn_store(txn)), "sync");
  return (double)(now_ns() - t0) / 1e9;
}

/* ---- expiry --------------------------------------------------------------- */

/* Reserve e orders with the given window into dir and close. */
static void fill_engine(const char *dir, uint64_t e_orders, uint32_t window_s, long *rss_before,
                        long *rss_after, double *took) {
  spike_config c;
  config(&c, dir, e_orders);
  spike_engine *e;
  int rc = spike_open(&e, &c);
  if (rc != SPIKE_OK) die("open", rc);
  run r = {0};
  r.ops = calloc(8192, sizeof(spike_op));
  r.ids = calloc(e_orders, sizeof(uint64_t));
  if (spike_producer_open(e, &r.p) != SPIKE_OK) die("producer", 0);
  create_event(r.p, e_orders, window_s);
  if (rss_before) *rss_before = rss_kb();
  *took = phase(&r, 0, 0, e_orders);
  if (rss_after) *rss_after = rss_kb();
  spike_producer_close(r.p);
  spike_close(e);
  free(r.ops);
  free(r.ids);
}

static double timed_open(const char *dir, uint64_t e_orders, uint64_t *expired) {
  spike_config c;
  config(&c, dir, e_orders);
  spike_engine *e;
  uint64_t t0 = now_ns();
  int rc = spike_open(&e, &c);
  double s = (double)(now_ns() - t0) / 1e9;
  if (rc != SPIKE_OK) die("reopen", rc);
  spike_stats st;
  spike_stats_get(e, &st);
  *expired = st.orders_expired_total;
  spike_close(e);
  return s;
}

static void usage(FILE *f) {
  fprintf(f, "usage: bench_lifecycle [--orders N] [--expire E] [--window S] [DIR]\n"
             "  durable reserve/pay/cancel ops/s over N orders (default 200000; 2..2^24) and\n"
             "  the cost of expiring E reservations (default 1000000; 1..2^24) reserved with\n"
             "  a pay window of S seconds (default 10; 1..%u), against raw LMDB; data in DIR\n",
          WINDOW_MAX);
}

int main(int argc, char **argv) {
  uint64_t n = 200000, ne = 1000000;
  uint32_t window_s = 10;
  const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--orders") == 0) n = bench_arg_u64(argc, argv, &i, 2, ORDERS_MAX);
    else if (strcmp(argv[i], "--expire") == 0) ne = bench_arg_u64(argc, argv, &i, 1, ORDERS_MAX);
    else if (strcmp(argv[i], "--window") == 0)
      window_s = (uint32_t)bench_arg_u64(argc, argv, &i, 1, WINDOW_MAX);
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "bench_lifecycle: unknown flag \"%s\"\n", argv[i]);
      usage(stderr);
      return 2;
    } else base = argv[i];
  }
  char dir[512];
  snprintf(dir, sizeof(dir), "%s/spike-bench-lifecycle-%d", base, (int)getpid());
  rmrf(dir);
  char a[600], b[600], c[600];
  snprintf(a, sizeof(a), "%s/engine", dir);
  snprintf(b, sizeof(b), "%s/ref", dir);
  mkdir(dir, 0755);
  mkdir(b, 0755);

  /* pay and cancel */
  double t_res, t_pay, t_can;
  engine_pay_cancel(a, n, &t_res, &t_pay, &t_can);
  store *st;
  spike_event ev;
  uint64_t seq, *idv = calloc(n, sizeof(uint64_t));
  store_txn *txn = ref_fill(&st, b, n, idv, &ev, &seq);
  double r_pay = ref_transition(txn, idv, 0, n / 2, SPIKE_ORDER_PAID, &ev, &seq);
  double r_can = ref_transition(txn, idv, n / 2, n, SPIKE_ORDER_CANCELLED, &ev, &seq);
  store_txn_free(txn);
  store_close(st);
  free(idv);
  double half = (double)(n / 2);
  printf("reserve %" PRIu64 ": %.0f ops/s; pay %.0f: %.0f ops/s (raw LMDB %.0f, ratio %.3f); "
         "cancel %.0f: %.0f ops/s (raw LMDB %.0f, ratio %.3f)\n",
         n, (double)n / t_res, half, half / t_pay, half / r_pay, r_pay / t_pay, half, half / t_can,
         half / r_can, r_can / t_can);
  printf("summary\tdurable reserve, batch %d\t%.0f ops/s\t-\t-\n", BATCH, (double)n / t_res);
  printf("summary\tdurable pay, batch %d\t%.0f ops/s\t%.0f ops/s (raw LMDB)\t%.3f\n", BATCH,
         half / t_pay, half / r_pay, r_pay / t_pay);
  printf("summary\tdurable cancel, batch %d\t%.0f ops/s\t%.0f ops/s (raw LMDB)\t%.3f\n", BATCH,
         half / t_can, half / r_can, r_can / t_can);
  rmrf(a);
  rmrf(b);

  /* expiry: a store of ne overdue reservations, and one of ne live ones */
  long rss0, rss1;
  double fill_s, fill2_s;
  snprintf(c, sizeof(c), "%s/live", dir);
  int64_t filled_at = wall_ms();
  fill_engine(a, ne, window_s, &rss0, &rss1, &fill_s);
  fill_engine(c, ne, 3600, NULL, NULL, &fill2_s);
  if (fill_s >= window_s) fprintf(stderr, "bench_lifecycle: reserving took longer than the window\n");
  int64_t wait_ms = filled_at + (int64_t)(fill_s * 1000) + window_s * 1000 + 500 - wall_ms();
  if (wait_ms > 0) usleep((useconds_t)wait_ms * 1000);
  uint64_t expired = 0, none = 0;
  double open_overdue = timed_open(a, ne, &expired);
  double open_live = timed_open(c, ne, &none);
  double expire_s = open_overdue - open_live;
  idv = calloc(ne, sizeof(uint64_t));
  snprintf(b, sizeof(b), "%s/ref2", dir);
  mkdir(b, 0755);
  txn = ref_fill(&st, b, ne, idv, &ev, &seq);
  double r_exp = ref_transition(txn, idv, 0, ne, SPIKE_ORDER_EXPIRED, &ev, &seq);
  store_txn_free(txn);
  store_close(st);
  free(idv);
  printf("expire %" PRIu64 ": spike_open with all overdue %.2f s, with none overdue %.2f s: "
         "expiry %.2f s (%" PRIu64 " expired, %.0f/s); raw LMDB rewrite %.2f s (%.0f/s); "
         "ratio %.3f\n",
         ne, open_overdue, open_live, expire_s, expired, (double)ne / expire_s, r_exp,
         (double)ne / r_exp, r_exp / expire_s);
  printf("memory: expiry wheel %.1f MiB for %" PRIu64 " reservations (44 B each); resident set "
         "%ld MiB before reserving, %ld MiB after\n",
         44.0 * (double)ne / 1048576.0, ne, rss0 / 1024, rss1 / 1024);
  printf("summary\texpire %" PRIu64 " reservations\t%.2f s\t%.2f s (raw LMDB)\t%.3f\n", ne,
         expire_s, r_exp, r_exp / expire_s);
  printf("summary\texpiry wheel memory, %" PRIu64 "\t%.1f MiB\t-\t-\n", ne,
         24.0 * (double)ne / 1048576.0);
  rmrf(dir);
  return expired == ne ? 0 : 1;
}

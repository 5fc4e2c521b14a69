/*
 * test_callbacks.c -- the callback contract of spike.h ("Callbacks"), one
 * case per promise: a callback runs once per SPIKE_PENDING and never
 * otherwise; the op is the caller's again in its callback (resubmit it, free
 * it); what a callback may call and what it is refused; callbacks run on the
 * owner thread, never inside a submission, never nested; one drain runs only
 * what had completed when it started; the eventfd works edge-triggered and
 * level-triggered without a lost or an endless wake-up.
 */
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "engine_util.h"

/* ---- once per SPIKE_PENDING, never otherwise ---------------------------- */

static void once_per_pending(void) {
  spike_config cfg;
  small_config(&cfg, "cb-once");
  cfg.ack = SPIKE_ACK_MEMORY;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p = producer_with_event(e, 1, 3, 1);
  enum { N = 8 };
  static spike_op ops[N];
  static int calls[N];
  int pending = 0, now = 0, refused = 0;
  for (int i = 0; i < N; i++) {
    ops[i].data = &calls[i];
    /* 3 units, ack=memory: OK now (no callback), then sold out (refused) */
    int rc = spike_reserve(p, &ops[i], 1, (uint64_t)i + 1, 1, NULL, 0, count_cb);
    if (rc == SPIKE_PENDING)
      pending++;
    else if (rc == SPIKE_OK)
      now++;
    else
      refused++;
  }
  CHECK_EQ(now, 3);
  CHECK_EQ(refused, N - 3);
  /* and a pay, which always waits for its commit */
  spike_op pay;
  int pay_calls = 0;
  pay.data = &pay_calls;
  CHECK_EQ(spike_pay(p, &pay, ops[0].r.order.id, 1, "p", 1, count_cb), SPIKE_PENDING);
  wait_count(p, &pay_calls, 1);
  CHECK_EQ(pay.status, SPIKE_OK);
  /* nothing else runs, however often we drain */
  for (int k = 0; k < 20; k++)
    spike_producer_drain(p);
  CHECK_EQ(pay_calls, 1);
  for (int i = 0; i < N; i++)
    CHECK_EQ(calls[i], 0);
  CHECK_EQ(pending, 0);
  CHECK_EQ(spike_producer_inflight(p), 0);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- the op is the caller's in its callback ----------------------------- */

typedef struct chain {
  spike_producer *p;
  int left, done, drains, last_drain, same_drain;
  uint64_t user;
} chain;

static int drain_no; /* which drain call is running */

static void resubmit(spike_op *op) {
  chain *c = op->data;
  CHECK_EQ(op->status, SPIKE_OK);
  if (drain_no == c->last_drain) c->same_drain++;
  c->last_drain = drain_no;
  c->done++;
  if (--c->left == 0) return;
  /* the same op, at once, from inside its own callback */
  CHECK_EQ(spike_reserve(c->p, op, 1, ++c->user, 1, NULL, 0, resubmit), SPIKE_PENDING);
}

static void op_resubmitted_from_its_callback(void) {
  spike_config cfg;
  small_config(&cfg, "cb-reuse");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p = producer_with_event(e, 1, 1000, 1);
  chain c = {.p = p, .left = 200, .user = 1, .last_drain = -1};
  spike_op op;
  op.data = &c;
  CHECK_EQ(spike_reserve(p, &op, 1, c.user, 1, NULL, 0, resubmit), SPIKE_PENDING);
  int64_t deadline = test_now_ms() + 20000;
  while (c.left > 0 && test_now_ms() < deadline) {
    struct pollfd pfd = {spike_producer_fd(p), POLLIN, 0};
    poll(&pfd, 1, 100);
    drain_no++;
    int ran = spike_producer_drain(p);
    CHECK(ran == 0 || ran == 1); /* one op in flight at a time */
  }
  CHECK_EQ(c.done, 200);
  /* a resubmitted op never ran in the drain that ran its predecessor */
  CHECK_EQ(c.same_drain, 0);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 200);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static int freed;

static void free_it(spike_op *op) {
  CHECK_EQ(op->status, SPIKE_OK);
  free(op); /* ASan: any later touch by the engine is a use after free */
  freed++;
}

static void op_freed_in_its_callback(void) {
  spike_config cfg;
  small_config(&cfg, "cb-free");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p = producer_with_event(e, 1, 1000, 1000);
  enum { N = 300 };
  for (int i = 0; i < N; i++) {
    spike_op *op = malloc(sizeof(*op));
    CHECK(op != NULL);
    CHECK_EQ(spike_reserve(p, op, 1, 7, 1, NULL, 0, free_it), SPIKE_PENDING);
    if (i % 50 == 49) wait_count(p, &freed, i + 1);
  }
  wait_count(p, &freed, N);
  /* pays of those orders, through fresh ops freed the same way */
  spike_order list[8];
  uint32_t n;
  CHECK_EQ(spike_user_orders(p, 7, 1, 0, list, 8, &n, NULL), SPIKE_OK);
  CHECK_EQ(n, 8);
  for (uint32_t i = 0; i < n; i++) {
    spike_op *op = malloc(sizeof(*op));
    CHECK_EQ(spike_pay(p, op, list[i].id, 7, "pay", 3, free_it), SPIKE_PENDING);
  }
  wait_count(p, &freed, N + (int)n);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);

  /* ack=memory: SPIKE_OK hands the op back at once; free it there */
  small_config(&cfg, "cb-free-mem");
  cfg.ack = SPIKE_ACK_MEMORY;
  e = open_engine(&cfg);
  p = producer_with_event(e, 1, 1000, 1000);
  int now = 0;
  for (int i = 0; i < 100; i++) {
    spike_op *op = malloc(sizeof(*op));
    int rc = spike_reserve(p, op, 1, 9, 1, NULL, 0, free_it);
    if (rc == SPIKE_OK) {
      free(op);
      now++;
    } else {
      CHECK_EQ(rc, SPIKE_PENDING); /* past the memory-ack bound */
    }
  }
  CHECK(now > 0);
  while (spike_producer_inflight(p) > 0) {
    struct pollfd pfd = {spike_producer_fd(p), POLLIN, 0};
    poll(&pfd, 1, 100);
    spike_producer_drain(p);
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  spike_event ev;
  e = open_engine(&cfg);
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 100);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- what a callback may call ------------------------------------------ */

typedef struct inside {
  spike_engine *e;
  spike_producer *p, *other;
  spike_op other_op;
  int other_done, ran, depth, nested;
} inside;

static void other_cb(spike_op *op) { ((inside *)op->data)->other_done++; }

static void calls_inside(spike_op *op) {
  inside *in = op->data;
  if (in->depth++ != 0) in->nested++;
  in->ran++;
  CHECK_EQ(op->status, SPIKE_OK);
  /* refused: drain or close this producer; close the engine */
  CHECK_EQ(spike_producer_drain(in->p), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_close(in->p), SPIKE_EMISUSE);
  CHECK_EQ(spike_close(in->e), SPIKE_EBUSY);
  /* allowed: reads, counters, the last error, the engine's calls */
  spike_order o;
  CHECK_EQ(spike_order_get(in->p, op->r.order.id, &o), SPIKE_OK);
  CHECK_EQ(o.user_id, op->r.order.user_id);
  spike_event ev;
  CHECK_EQ(spike_event_get(in->e, 1, &ev), SPIKE_OK);
  spike_stats st;
  spike_stats_get(in->e, &st);
  const char *why;
  CHECK_EQ(spike_health(in->e, &why), SPIKE_OK);
  char buf[64];
  CHECK_EQ(spike_producer_error(in->p, buf, sizeof(buf)), SPIKE_OK);
  (void)spike_producer_inflight(in->p);
  /* a submission through another producer this thread owns, and through
   * this one */
  in->other_op.data = in;
  CHECK_EQ(
      spike_reserve(in->other, &in->other_op, 1, 500 + (uint64_t)in->ran, 1, NULL, 0, other_cb),
      SPIKE_PENDING);
  in->depth--;
}

static void what_a_callback_may_call(void) {
  spike_config cfg;
  small_config(&cfg, "cb-inside");
  spike_engine *e = open_engine(&cfg);
  inside in = {.e = e};
  CHECK_EQ(spike_producer_open(e, &in.p), SPIKE_OK);
  CHECK_EQ(spike_producer_open(e, &in.other), SPIKE_OK);
  spike_event_spec s = spec_default(1, 1000);
  CHECK_EQ(create_event(in.p, &s), SPIKE_OK);
  for (int round = 1; round <= 3; round++) {
    spike_op op;
    op.data = &in;
    CHECK_EQ(spike_reserve(in.p, &op, 1, (uint64_t)round, 1, NULL, 0, calls_inside), SPIKE_PENDING);
    while (in.ran < round) {
      struct pollfd pfd = {spike_producer_fd(in.p), POLLIN, 0};
      poll(&pfd, 1, 100);
      CHECK(spike_producer_drain(in.p) >= 0);
    }
    wait_count(in.other, &in.other_done, round);
  }
  CHECK_EQ(in.nested, 0);
  /* after the drain returned, closing works */
  CHECK_EQ(spike_producer_close(in.p), SPIKE_OK);
  CHECK_EQ(spike_producer_close(in.other), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- threads: the owner's, never inside a submission -------------------- */

typedef struct owner {
  spike_producer *p;
  pthread_t self;
  int in_submit, wrong_thread, inside_submit, done;
} owner;

static void where_cb(spike_op *op) {
  owner *o = op->data;
  if (!pthread_equal(pthread_self(), o->self)) o->wrong_thread++;
  if (o->in_submit) o->inside_submit++;
  o->done++;
}

static void *owner_thread(void *arg) {
  owner *o = arg;
  o->self = pthread_self();
  enum { N = 2000 };
  static spike_op ops[N];
  for (int i = 0; i < N; i++) {
    ops[i].data = o;
    int rc;
    do {
      o->in_submit = 1;
      rc = spike_reserve(o->p, &ops[i], 1, (uint64_t)i + 1, 1, NULL, 0, where_cb);
      o->in_submit = 0;
      if (rc == SPIKE_EBUSY) spike_producer_drain(o->p);
    } while (rc == SPIKE_EBUSY);
    CHECK_EQ(rc, SPIKE_PENDING);
    if (i % 7 == 0) spike_producer_drain(o->p);
  }
  wait_count(o->p, &o->done, N);
  return NULL;
}

static void callbacks_on_the_owner_thread(void) {
  spike_config cfg;
  small_config(&cfg, "cb-thread");
  cfg.ring_size = 64; /* the queue fills: EBUSY, drained, retried */
  spike_engine *e = open_engine(&cfg);
  owner o = {0};
  /* opened here, handed to another thread before anyone uses it */
  CHECK_EQ(spike_producer_open(e, &o.p), SPIKE_OK);
  spike_producer *setup;
  CHECK_EQ(spike_producer_open(e, &setup), SPIKE_OK);
  spike_event_spec s = spec_default(1, 100000);
  CHECK_EQ(create_event(setup, &s), SPIKE_OK);
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, owner_thread, &o), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_EQ(o.done, 2000);
  CHECK_EQ(o.wrong_thread, 0);
  CHECK_EQ(o.inside_submit, 0);
  /* this thread is not the owner: refused, nothing run */
  CHECK_EQ(spike_producer_drain(o.p), SPIKE_EMISUSE);
  char text[160];
  CHECK_EQ(spike_producer_error(o.p, text, sizeof(text)), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_close(o.p), SPIKE_OK); /* any thread, once idle */
  CHECK_EQ(spike_producer_close(setup), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- edge- and level-triggered ----------------------------------------- */

typedef struct wave {
  spike_producer *p;
  int done, resubmitted;
  uint64_t user;
} wave;

/* Half the callbacks submit again, so completions keep arriving while the
 * loop drains: the case a lost edge would hang. */
static void wave_cb(spike_op *op) {
  wave *w = op->data;
  CHECK_EQ(op->status, SPIKE_OK);
  w->done++;
  if (w->user % 2 == 0 && w->resubmitted < 3000) {
    w->resubmitted++;
    CHECK_EQ(spike_reserve(w->p, op, 1, ++w->user, 1, NULL, 0, wave_cb), SPIKE_PENDING);
  } else {
    w->user++;
  }
}

static void run_waves(int edge) {
  spike_config cfg;
  small_config(&cfg, edge ? "cb-edge" : "cb-level");
  spike_engine *e = open_engine(&cfg);
  wave w = {0};
  CHECK_EQ(spike_producer_open(e, &w.p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 1000000);
  CHECK_EQ(create_event(w.p, &s), SPIKE_OK);
  int ep = epoll_create1(0);
  CHECK(ep >= 0);
  struct epoll_event ev = {.events = EPOLLIN | (edge ? EPOLLET : 0)};
  CHECK_EQ(epoll_ctl(ep, EPOLL_CTL_ADD, spike_producer_fd(w.p), &ev), 0);
  enum { WAVES = 40, PER = 100 };
  static spike_op ops[PER];
  int submitted = 0;
  for (int k = 0; k < WAVES; k++) {
    for (int i = 0; i < PER; i++) {
      ops[i].data = &w;
      CHECK_EQ(spike_reserve(w.p, &ops[i], 1, 1000000 + (uint64_t)submitted++, 1, NULL, 0, wave_cb),
               SPIKE_PENDING);
    }
    /* One drain per readiness, no extra drains: a lost wake-up shows as a
     * 10 s wait with ops in flight. */
    while (spike_producer_inflight(w.p) > 0) {
      struct epoll_event got;
      int n = epoll_wait(ep, &got, 1, 10000);
      if (n == 0) {
        fprintf(stderr, "no wake-up in 10 s with %u in flight\n", spike_producer_inflight(w.p));
        abort();
      }
      CHECK_EQ(n, 1);
      CHECK(spike_producer_drain(w.p) >= 0);
    }
  }
  CHECK_EQ(w.done, submitted + w.resubmitted);
  CHECK(w.resubmitted > 0);
  /* Nothing in flight: the fd does not stay readable. At most one late
   * write (a completion the drain ran before its signal) wakes it once. */
  int wakes = 0;
  struct pollfd pfd = {spike_producer_fd(w.p), POLLIN, 0};
  while (poll(&pfd, 1, 0) == 1 && wakes < 5) {
    CHECK_EQ(spike_producer_drain(w.p), 0);
    wakes++;
  }
  CHECK(wakes <= 1);
  close(ep);
  CHECK_EQ(spike_producer_close(w.p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* A handle kept past its close is refused at every call, and no op of it
 * reaches the writer; the slot opened again is a new producer. */
static void closed_producer_refused(void) {
  spike_config cfg;
  small_config(&cfg, "cb-closed");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p, *q;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  spike_op op;
  memset(&op, 0x5a, sizeof(op));
  CHECK_EQ(spike_reserve(p, &op, 1, 7, 1, NULL, 0, count_cb), SPIKE_EMISUSE);
  CHECK_EQ(spike_pay(p, &op, 1, 7, "x", 1, count_cb), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_drain(p), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_inflight(p), 0);
  char text[160];
  CHECK_EQ(spike_producer_error(p, text, sizeof(text)), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_close(p), SPIKE_EMISUSE);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.available, 10);
  CHECK_EQ(spike_producer_open(e, &q), SPIKE_OK);
  CHECK_EQ(settle(q, &op, spike_reserve(q, &op, 1, 8, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(q), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static void edge_triggered(void) { run_waves(1); }
static void level_triggered(void) { run_waves(0); }

TEST_LIST({"once_per_pending", once_per_pending, 0},
          {"op_resubmitted_from_its_callback", op_resubmitted_from_its_callback, 0},
          {"op_freed_in_its_callback", op_freed_in_its_callback, 0},
          {"what_a_callback_may_call", what_a_callback_may_call, 0},
          {"callbacks_on_the_owner_thread", callbacks_on_the_owner_thread, 0},
          {"closed_producer_refused", closed_producer_refused, 0},
          {"edge_triggered", edge_triggered, 0}, {"level_triggered", level_triggered, 0})

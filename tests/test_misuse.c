/*
 * test_misuse.c -- a library inside someone's gateway answers misuse with
 * SPIKE_EMISUSE (or SPIKE_EINVAL for bad values) at the call, never with an
 * abort, a lost completion or a corrupted ring: a producer used from a
 * second thread, an op submitted again while pending, a NULL callback,
 * user id 0, an event name that is not UTF-8.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "engine_util.h"

typedef struct intruder {
  spike_producer *p;
  _Atomic int *stop;
  long refused, other;
} intruder;

/* Hammer another thread's producer: every call must be refused. */
static void *intrude(void *arg) {
  intruder *in = arg;
  spike_op op;
  while (!atomic_load(in->stop)) {
    int rc = spike_reserve(in->p, &op, 1, 999999, 1, NULL, 0, count_cb);
    int rd = spike_producer_drain(in->p);
    /* reads too: they use the producer's read transaction */
    spike_order o;
    spike_change c;
    uint32_t count;
    uint64_t next;
    int r1 = spike_order_get(in->p, 1, &o);
    int r2 = spike_user_orders(in->p, 7, 0, 0, &o, 1, &count, NULL);
    int r3 = spike_feed_read(in->p, 0, &c, 1, &count, &next);
    if (rc == SPIKE_EMISUSE && rd == SPIKE_EMISUSE && r1 == SPIKE_EMISUSE &&
        r2 == SPIKE_EMISUSE && r3 == SPIKE_EMISUSE)
      in->refused++;
    else in->other++;
  }
  return NULL;
}

static void producer_used_from_two_threads(void) {
  spike_config cfg;
  small_config(&cfg, "misuse-thread");
  cfg.ring_size = 256;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 1000000);
  s.per_user_limit = 1000000;
  CHECK_EQ(create_event(p, &s), SPIKE_OK); /* this thread owns p now */
  _Atomic int stop = 0;
  intruder in = {.p = p, .stop = &stop};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, intrude, &in), 0);
  /* The owner goes on as if nothing happened: every completion arrives. */
  enum { WAVE = 64, WAVES = 300, N = WAVE * WAVES };
  static spike_op ops[WAVE];
  int done = 0;
  for (int w = 0; w < WAVES; w++) {
    for (int i = 0; i < WAVE; i++) {
      ops[i].data = &done;
      CHECK_EQ(spike_reserve(p, &ops[i], 1, 7, 1, NULL, 0, count_cb), SPIKE_PENDING);
    }
    wait_count(p, &done, (w + 1) * WAVE);
    for (int i = 0; i < WAVE; i++) CHECK_EQ(ops[i].status, SPIKE_OK);
  }
  atomic_store(&stop, 1);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK(in.refused > 0);
  CHECK_EQ(in.other, 0);
  CHECK_EQ(done, N);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, N);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* A producer opened on one thread and first used on another belongs to the
 * second (spiked opens on its main thread, runs on its loop threads). */
typedef struct adopt {
  spike_producer *p;
  int rc;
} adopt;

static void *adopt_main(void *arg) {
  adopt *a = arg;
  spike_op op;
  spike_event_spec s = spec_default(2, 10);
  a->rc = settle(a->p, &op, spike_event_create(a->p, &op, &s, count_cb));
  return NULL;
}

static void first_user_owns_it(void) {
  spike_config cfg;
  small_config(&cfg, "misuse-adopt");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  adopt a = {.p = p};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, adopt_main, &a), 0);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_EQ(a.rc, SPIKE_OK);
  spike_op op;
  CHECK_EQ(spike_reserve(p, &op, 2, 1, 1, NULL, 0, count_cb), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_drain(p), SPIKE_EMISUSE);
  /* Closing and opening again gives a producer the next thread may own. */
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 2, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static int twice_calls;
static void twice_cb(spike_op *op) {
  twice_calls++;
  (*(int *)op->data)++;
}

static void op_submitted_twice(void) {
  spike_config cfg;
  small_config(&cfg, "misuse-twice");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(3, 100);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  for (int round = 0; round < 200; round++) {
    spike_op op;
    int n = 0;
    op.data = &n;
    twice_calls = 0;
    CHECK_EQ(spike_reserve(p, &op, 3, 100 + (uint64_t)round % 50, 1, NULL, 0, twice_cb),
             SPIKE_PENDING);
    /* Again while pending, by every kind of submission: refused, and op
     * untouched (the engine owns it now: it is only looked at once done). */
    CHECK_EQ(spike_reserve(p, &op, 3, 5, 1, NULL, 0, twice_cb), SPIKE_EMISUSE);
    CHECK_EQ(spike_pay(p, &op, 1, 0, "x", 1, twice_cb), SPIKE_EMISUSE);
    CHECK_EQ(spike_cancel(p, &op, 1, 0, twice_cb), SPIKE_EMISUSE);
    CHECK_EQ(spike_event_close(p, &op, 3, twice_cb), SPIKE_EMISUSE);
    CHECK_EQ(spike_feed_wait(p, &op, 0, 0, twice_cb), SPIKE_EMISUSE);
    CHECK_EQ(spike_producer_inflight(p), 1);
    wait_count(p, &n, 1);
    CHECK_EQ(twice_calls, 1);
    CHECK(op.data == &n);
    CHECK_EQ(op.status, SPIKE_OK); /* the first submission's answer */
    CHECK_EQ(op.r.order.event_id, 3);
    CHECK_EQ(op.r.order.user_id, 100 + (uint64_t)round % 50);
    /* Completed: free to reuse. */
    if (op.status == SPIKE_OK) {
      n = 0;
      CHECK_EQ(spike_cancel(p, &op, op.r.order.id, 0, twice_cb), SPIKE_PENDING);
      wait_count(p, &n, 1);
      CHECK_EQ(op.status, SPIKE_OK);
    }
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static void null_callback(void) {
  for (int mode = 0; mode < 2; mode++) {
    spike_config cfg;
    small_config(&cfg, "misuse-null");
    cfg.ack = mode ? SPIKE_ACK_MEMORY : SPIKE_ACK_DURABLE;
    spike_engine *e = open_engine(&cfg);
    spike_producer *p;
    CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
    spike_event_spec s = spec_default(4, 100);
    spike_op op;
    CHECK_EQ(spike_event_create(p, &op, &s, NULL), SPIKE_EMISUSE);
    CHECK_EQ(create_event(p, &s), SPIKE_OK);
    CHECK_EQ(spike_reserve(p, &op, 4, 1, 1, NULL, 0, NULL), SPIKE_EMISUSE);
    CHECK_EQ(op.status, SPIKE_EMISUSE);
    CHECK(strstr(op.detail, "callback") != NULL);
    CHECK_EQ(spike_reserve(p, &op, 4, 1, 1, "key", 3, NULL), SPIKE_EMISUSE);
    CHECK_EQ(spike_pay(p, &op, 1, 0, "x", 1, NULL), SPIKE_EMISUSE);
    CHECK_EQ(spike_cancel(p, &op, 1, 0, NULL), SPIKE_EMISUSE);
    CHECK_EQ(spike_event_restock(p, &op, 4, 1, NULL), SPIKE_EMISUSE);
    CHECK_EQ(spike_event_close(p, &op, 4, NULL), SPIKE_EMISUSE);
    CHECK_EQ(spike_feed_wait(p, &op, 0, 10, NULL), SPIKE_EMISUSE);
    CHECK_EQ(spike_producer_inflight(p), 0);
    CHECK_EQ(spike_producer_drain(p), 0);
    spike_event ev;
    CHECK_EQ(spike_event_get(e, 4, &ev), SPIKE_OK);
    CHECK_EQ(ev.reserved, 0);
    CHECK_EQ(spike_producer_close(p), SPIKE_OK);
    CHECK_EQ(spike_close(e), SPIKE_OK);
    test_rmrf(cfg.data_dir);
  }
}

/* A NULL handle, op or out pointer is refused at the call: never a crash. */
static void null_pointers(void) {
  spike_config cfg;
  small_config(&cfg, "misuse-nulls");
  spike_engine *e = (spike_engine *)&cfg; /* *out is NULL after any refusal */
  CHECK_EQ(spike_open(NULL, &cfg), SPIKE_EMISUSE);
  CHECK(strstr(spike_open_error(), "NULL") != NULL);
  CHECK_EQ(spike_open(&e, NULL), SPIKE_EMISUSE);
  CHECK(e == NULL);
  CHECK_EQ(spike_close(NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_close(NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_drain(NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_fd(NULL), -1);
  CHECK_EQ(spike_producer_inflight(NULL), 0);
  char buf[128];
  CHECK_EQ(spike_engine_error(NULL, buf, sizeof(buf)), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_error(NULL, buf, sizeof(buf)), SPIKE_EMISUSE);
  const char *why = NULL;
  CHECK_EQ(spike_health(NULL, &why), SPIKE_EMISUSE);
  CHECK(why != NULL);
  spike_feed_release(NULL);
  spike_config_init(NULL);
  spike_stats st;
  spike_stats_get(NULL, &st);
  CHECK_EQ(spike_feed_epoch(NULL, 1), 0);
  const char *field = NULL;
  CHECK_EQ(spike_event_spec_check(NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "spec") == 0);

  e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(NULL, &p), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_open(e, NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(7, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op op;
  CHECK_EQ(spike_reserve(NULL, &op, 7, 1, 1, NULL, 0, count_cb), SPIKE_EMISUSE);
  CHECK_EQ(spike_reserve(p, NULL, 7, 1, 1, NULL, 0, count_cb), SPIKE_EMISUSE);
  CHECK_EQ(spike_pay(p, NULL, 1, 1, "x", 1, count_cb), SPIKE_EMISUSE);
  CHECK_EQ(spike_cancel(NULL, &op, 1, 1, count_cb), SPIKE_EMISUSE);
  CHECK_EQ(spike_event_create(p, &op, NULL, count_cb), SPIKE_EINVAL);
  CHECK(strcmp(op.detail, "spec") == 0);
  CHECK_EQ(spike_health(e, NULL), SPIKE_OK);
  CHECK_EQ(spike_event_get(e, 7, NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_event_get(NULL, 7, &(spike_event){0}), SPIKE_EMISUSE);
  uint32_t n = 1;
  uint64_t next = 1;
  CHECK_EQ(spike_event_list(e, 0, NULL, 4, &n, &next), SPIKE_EMISUSE);
  CHECK_EQ(n, 0);
  CHECK_EQ(spike_event_list(e, 0, &(spike_event){0}, 1, NULL, NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_order_get(p, 1, NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_user_orders(p, 1, 0, 0, NULL, 4, &n, NULL), SPIKE_EMISUSE);
  spike_change ch;
  spike_feed_info info;
  CHECK_EQ(spike_feed_fetch(p, 0, &ch, 1, &n, &next, NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_feed_fetch(p, 0, NULL, 1, &n, &next, &info), SPIKE_EMISUSE);
  /* max 0 with no array is the feed's standing alone (spiked's metrics) */
  CHECK_EQ(spike_feed_fetch(p, 0, NULL, 0, &n, &next, &info), SPIKE_OK);
  CHECK(info.store_id != 0);
  CHECK_EQ(spike_backup(e, "x", NULL), SPIKE_EMISUSE);
  CHECK_EQ(spike_backup_dir("x", "y", NULL), SPIKE_EMISUSE);
  /* and nothing was half-done: the engine still serves */
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 7, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK(spike_producer_fd(p) >= 0);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  /* a closed producer has no descriptor to watch, as it has no other use */
  CHECK_EQ(spike_producer_fd(p), -1);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static void bad_values(void) {
  spike_config cfg;
  small_config(&cfg, "misuse-values");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(5, 100);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op op;
  /* user 0 is the admin over HTTP; the library refuses it as a buyer */
  CHECK_EQ(spike_reserve(p, &op, 5, 0, 1, NULL, 0, count_cb), SPIKE_EINVAL);
  CHECK(strcmp(op.detail, "user_id") == 0);
  static const char *const bad[] = {
      "\xff",                 /* not a UTF-8 byte */
      "sale \xc0\x80",        /* overlong NUL */
      "\xe0\x80\xaf",         /* overlong '/' */
      "\xed\xa0\x80",         /* a surrogate */
      "\xf4\x90\x80\x80",     /* above U+10FFFF */
      "cut \xe2\x82",         /* truncated */
      "\x80 lone continuation",
      "tab\there",            /* a control */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    spike_event_spec b = spec_default(0, 10);
    b.name = bad[i];
    b.name_len = strlen(bad[i]);
    const char *field = NULL;
    CHECK_EQ(spike_event_spec_check(&b, &field), SPIKE_EINVAL);
    CHECK(strcmp(field, "name") == 0);
    CHECK_EQ(spike_event_create(p, &op, &b, count_cb), SPIKE_EINVAL);
  }
  spike_event_spec good = spec_default(6, 10);
  good.name = "Caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x8e\x89"; /* Café € 🎉 */
  good.name_len = strlen(good.name);
  CHECK_EQ(create_event(p, &good), SPIKE_OK);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 6, &ev), SPIKE_OK);
  CHECK(strcmp(ev.name, good.name) == 0);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"producer_used_from_two_threads", producer_used_from_two_threads, 60},
          {"first_user_owns_it", first_user_owns_it, 0},
          {"op_submitted_twice", op_submitted_twice, 0}, {"null_callback", null_callback, 0},
          {"null_pointers", null_pointers, 0}, {"bad_values", bad_values, 0})

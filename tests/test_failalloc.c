/*
 * test_failalloc.c -- allocation failure (issue 11, row 4), under
 * tests/failalloc.c: the Nth allocation or mapping fails, for N = 1, 2, 3
 * ... until the call needs fewer than N, once with that one failure alone
 * and once with every allocation from the Nth on failing. Through
 * spike_open (recovering a store that holds events, orders in every state,
 * a key, and a reservation gone overdue, so recovery commits an expiry;
 * migrating the schema 1 fixture; creating a store),
 * through producers, reserve, pay, cancel, event create and restock, the
 * reads and the writer's commits, and through spike_close.
 *
 * At every N: a status from the contract (spike_open: SPIKE_EINTERNAL or
 * SPIKE_ESTORAGE, spike_open_error() saying what, and no engine handed
 * out), never a crash or a hang; nothing left behind (the shim's ledger of
 * what was allocated or mapped during the call is empty once it returned,
 * or once the engine is closed, and the process holds the descriptors it
 * held); and a store that reopens with every change that was answered OK
 * (recovery cross-checks the counters against the orders).
 *
 *   LD_PRELOAD=build/rel/tests/libfailalloc.so build/rel/tests/test_failalloc [case]
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine_util.h"

static void (*fa_arm)(long, int);
static long (*fa_calls)(void);
static long (*fa_failed)(void);
static void (*fa_track)(int);
static long (*fa_live)(void);
static void (*fa_report)(int);

#define FIND(var, name)                                                        \
  do {                                                                         \
    void *sym_ = dlsym(RTLD_DEFAULT, name);                                    \
    if (sym_ == NULL) {                                                        \
      fprintf(stderr, "run with LD_PRELOAD=build/rel/tests/libfailalloc.so\n"); \
      abort();                                                                 \
    }                                                                          \
    memcpy(&(var), &sym_, sizeof(sym_)); /* object to function pointer */     \
  } while (0)

static void need_shim(void) {
  FIND(fa_arm, "failalloc_arm");
  FIND(fa_calls, "failalloc_calls");
  FIND(fa_failed, "failalloc_failed");
  FIND(fa_track, "failalloc_track");
  FIND(fa_live, "failalloc_live");
  FIND(fa_report, "failalloc_report");
}

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  CHECK(d != NULL);
  int n = 0;
  while (readdir(d) != NULL) n++;
  closedir(d);
  return n;
}

/* ---- the store every try starts from ----------------------------------------- */

static spike_config cfg;
static char dir[PATH_MAX], tmpl[PATH_MAX + 16];
static uint64_t order_kept, order_paid; /* reserved with key "k1"; paid */

static void copy_file(const char *from, const char *to) {
  static char buf[1 << 16];
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CHECK(in >= 0 && out >= 0);
  ssize_t n;
  while ((n = read(in, buf, sizeof(buf))) > 0) CHECK_EQ(write(out, buf, (size_t)n), n);
  CHECK_EQ(n, 0);
  close(in);
  close(out);
}

static int fresh; /* the tries create the store: there is no template */

static void restore(void) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof(path), "%s/lock.mdb", dir);
  unlink(path);
  snprintf(path, sizeof(path), "%s/data.mdb", dir);
  if (fresh)
    unlink(path);
  else
    copy_file(tmpl, path);
}

/* Events, orders in every state, a key, a closed event, a restock, and a
 * reservation that is overdue by the time the tries open the store. */
static void make_template(const char *tag) {
  need_shim();
  spike_config_init(&cfg);
  snprintf(dir, sizeof(dir), "%s", test_tmpdir(tag));
  snprintf(tmpl, sizeof(tmpl), "%s.tmpl", dir);
  cfg.data_dir = dir;
  cfg.map_size_bytes = 4u << 20;
  cfg.max_events = 8;
  cfg.max_buyers = cfg.max_keys = cfg.max_users = 64;
  cfg.max_reserved = 64;
  cfg.max_producers = 2;
  cfg.ring_size = 64;
  cfg.batch_max = 16;
  cfg.max_feed_waiters = 4;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s1 = spec_default(1, 100), s2 = spec_default(2, 10), s3 = spec_default(3, 5);
  s1.per_user_limit = 5;
  s2.pay_timeout_s = 1;
  CHECK_EQ(create_event(p, &s1), SPIKE_OK);
  CHECK_EQ(create_event(p, &s2), SPIKE_OK);
  CHECK_EQ(create_event(p, &s3), SPIKE_OK);
  spike_op a, b, c, d;
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, "k1", 2, count_cb)), SPIKE_OK);
  order_kept = a.r.order.id;
  CHECK_EQ(settle(p, &b, spike_reserve(p, &b, 1, 2, 2, NULL, 0, count_cb)), SPIKE_OK);
  order_paid = b.r.order.id;
  CHECK_EQ(settle(p, &d, spike_pay(p, &d, order_paid, 2, "pay-2", 5, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &c, spike_reserve(p, &c, 1, 3, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &d, spike_cancel(p, &d, c.r.order.id, 3, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &d, spike_event_restock(p, &d, 1, 5, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &d, spike_event_close(p, &d, 3, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &d, spike_reserve(p, &d, 2, 4, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  nanosleep(&(struct timespec){1, 100 * 1000000}, NULL); /* event 2's order is overdue */
  char path[PATH_MAX + 16];
  snprintf(path, sizeof(path), "%s/data.mdb", dir);
  copy_file(path, tmpl);
  /* What happens once per process happens here, outside the ledger: the
   * writer thread's stack and TLS (kept by glibc for the next thread), and
   * the time zone glibc reads at the first gmtime_r (the first log line). */
  struct tm tm;
  time_t t0 = 0;
  gmtime_r(&t0, &tm);
  restore();
  e = open_engine(&cfg);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_order o;
  CHECK_EQ(spike_order_get(p, order_kept, &o), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
}

static void done_with_template(void) {
  test_rmrf(dir);
  unlink(tmpl);
}

/* Nothing of what the call allocated or mapped is still held. */
static void nothing_left(const char *what, long n, int sticky, int fds) {
  fa_track(0);
  long live = fa_live();
  if (live != 0) {
    fprintf(stderr, "%s, allocation %ld failing%s: %ld left behind%s\n", what, n,
            sticky ? " and every one after it" : "", live, live < 0 ? " (ledger full)" : ":");
    fa_report(2);
    abort();
  }
  int now = count_fds();
  if (now != fds) {
    fprintf(stderr, "%s, allocation %ld failing%s: %d descriptors before, %d after\n", what, n,
            sticky ? " and every one after it" : "", fds, now);
    abort();
  }
}

/* ---- spike_open --------------------------------------------------------------- */

/* Open the store restored from the template with allocation n failing (and
 * with sticky every later one), for n = 1, 2, ... until open needs fewer.
 * then(): what a failed try must have left the store able to do. */
static void open_under_failures(const char *what, void (*then)(void)) {
  for (int sticky = 0; sticky < 2; sticky++) {
    long ok_anyway = 0, einternal = 0, estorage = 0, n;
    for (n = 1;; n++) {
      restore();
      int fds = count_fds();
      spike_engine *e = NULL;
      fa_track(1);
      fa_arm(n, sticky);
      int rc = spike_open(&e, &cfg);
      long hit = fa_failed(), calls = fa_calls();
      fa_arm(0, 0);
      if (rc == SPIKE_OK) {
        /* the failure was absorbed: the engine must be whole */
        spike_producer *p;
        CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
        spike_event ev;
        CHECK(fresh || spike_event_get(e, 1, &ev) == SPIKE_OK ||
              spike_event_get(e, 11, &ev) == SPIKE_OK);
        CHECK_EQ(spike_producer_close(p), SPIKE_OK);
        CHECK_EQ(spike_close(e), SPIKE_OK);
        if (hit > 0) ok_anyway++;
      } else {
        CHECK(e == NULL);
        if (rc != SPIKE_EINTERNAL && rc != SPIKE_ESTORAGE) {
          fprintf(stderr, "allocation %ld: spike_open returned %d (%s): %s\n", n, rc,
                  spike_strerror(rc), spike_open_error());
          abort();
        }
        CHECK(spike_open_error()[0] != '\0');
        CHECK(hit > 0);
        if (rc == SPIKE_EINTERNAL) einternal++;
        else estorage++;
      }
      nothing_left(what, n, sticky, fds);
      if (getenv("SPIKE_FAILALLOC_VERBOSE") != NULL)
        printf("%s, allocation %ld failing%s: %s%s%s\n", what, n, sticky ? " on" : "",
               spike_strerror(rc), rc != SPIKE_OK ? ": " : "",
               rc != SPIKE_OK ? spike_open_error() : "");
      if (rc != SPIKE_OK) then();
      if (hit == 0) {
        CHECK_EQ(rc, SPIKE_OK);
        printf("%s, %s: %ld allocations; %ld SPIKE_EINTERNAL, %ld SPIKE_ESTORAGE, "
               "%ld opened anyway; nothing left behind\n",
               what, sticky ? "the Nth and every later one failing" : "the Nth failing alone",
               calls, einternal, estorage, ok_anyway);
        break;
      }
    }
  }
}

/* After a failed open the store opens, whole: recovery cross-checks every
 * event's counters against its orders. */
static void store_opens(void) {
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_order o;
  CHECK_EQ(spike_order_get(p, order_kept, &o), SPIKE_OK);
  CHECK_EQ(o.state, SPIKE_ORDER_RESERVED);
  CHECK_EQ(spike_order_get(p, order_paid, &o), SPIKE_OK);
  CHECK_EQ(o.state, SPIKE_ORDER_PAID);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
}

static void open_fails_cleanly(void) {
  make_template("fa-open");
  open_under_failures("spike_open", store_opens);
  done_with_template();
}

/* A schema 1 store is migrated in one transaction at open: a failure
 * leaves it as it was (the next open migrates it), never half done. */
static void migrated_store_opens(void) {
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 11, &ev), SPIKE_OK);
  CHECK(ev.reserved == 2 && ev.sold == 1);
  static spike_order mine[8];
  uint32_t n;
  CHECK_EQ(spike_user_orders(p, 7, 0, 0, mine, 8, &n, NULL), SPIKE_OK);
  CHECK_EQ(n, 4);
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 11, 7, 1, "key-a", 5, count_cb)), SPIKE_OK);
  CHECK(op.replayed);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
}

static void migration_fails_cleanly(void) {
  make_template("fa-migrate");
  copy_file("tests/fixtures/schema1/data.mdb", tmpl);
  open_under_failures("spike_open migrating schema 1", migrated_store_opens);
  done_with_template();
}

/* A new store is made beside the data directory and renamed into place: a
 * failed try leaves no store and nothing of the attempt, and the next open
 * makes it. */
static void store_created(void) {
  char path[PATH_MAX + 16];
  struct stat st;
  snprintf(path, sizeof(path), "%s/new.tmp", dir);
  CHECK(stat(path, &st) != 0 && errno == ENOENT);
  spike_engine *e = open_engine(&cfg);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  restore();
}

static void creation_fails_cleanly(void) {
  make_template("fa-create");
  fresh = 1;
  open_under_failures("spike_open creating a store", store_created);
  done_with_template();
}

/* ---- operations and the writer ----------------------------------------------- */

typedef struct outcome {
  int producer, reserve, pay, cancel, create, restock, get, feed, user;
  uint64_t reserved_id;
} outcome;

static int is_fault(int rc) { return rc == SPIKE_ESTORAGE || rc == SPIKE_EINTERNAL; }

#define NOT_RUN INT_MIN

static void ops(spike_engine *e, outcome *r) {
  *r = (outcome){NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN,
                 NOT_RUN, NOT_RUN, NOT_RUN, NOT_RUN, 0};
  spike_producer *p;
  r->producer = spike_producer_open(e, &p);
  if (r->producer != SPIKE_OK) {
    CHECK(is_fault(r->producer));
    return;
  }
  spike_op a, b, c, d, f;
  r->reserve = settle(p, &a, spike_reserve(p, &a, 1, 10, 1, "ka", 2, count_cb));
  CHECK(r->reserve == SPIKE_OK || is_fault(r->reserve));
  if (r->reserve == SPIKE_OK) r->reserved_id = a.r.order.id;
  r->pay = settle(p, &b, spike_pay(p, &b, order_kept, 1, "pay-1", 5, count_cb));
  CHECK(r->pay == SPIKE_OK || is_fault(r->pay));
  if (r->reserve == SPIKE_OK) {
    r->cancel = settle(p, &c, spike_cancel(p, &c, r->reserved_id, 10, count_cb));
    CHECK(r->cancel == SPIKE_OK || is_fault(r->cancel));
  }
  spike_event_spec s = spec_default(9, 7);
  r->create = settle(p, &d, spike_event_create(p, &d, &s, count_cb));
  CHECK(r->create == SPIKE_OK || is_fault(r->create));
  r->restock = settle(p, &f, spike_event_restock(p, &f, 1, 3, count_cb));
  CHECK(r->restock == SPIKE_OK || is_fault(r->restock));
  spike_order o;
  r->get = spike_order_get(p, order_paid, &o);
  CHECK(r->get == SPIKE_OK || is_fault(r->get));
  static spike_change ch[16];
  uint32_t count;
  uint64_t next;
  r->feed = spike_feed_read(p, 0, ch, 16, &count, &next);
  CHECK(r->feed == SPIKE_OK || is_fault(r->feed));
  static spike_order mine[8];
  r->user = spike_user_orders(p, 2, 0, 0, mine, 8, &count, NULL);
  CHECK(r->user == SPIKE_OK || is_fault(r->user));
  if (r->user == SPIKE_OK) CHECK_EQ(count, 1);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
}

/* What was answered OK is in the store; recovery cross-checked the rest. */
static void answered_is_stored(const outcome *r) {
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_order o;
  CHECK_EQ(spike_order_get(p, order_kept, &o), SPIKE_OK);
  if (r->pay == SPIKE_OK) CHECK_EQ(o.state, SPIKE_ORDER_PAID);
  if (r->reserve == SPIKE_OK) {
    CHECK_EQ(spike_order_get(p, r->reserved_id, &o), SPIKE_OK);
    if (r->cancel == SPIKE_OK) CHECK_EQ(o.state, SPIKE_ORDER_CANCELLED);
  }
  spike_event ev;
  if (r->create == SPIKE_OK) CHECK_EQ(spike_event_get(e, 9, &ev), SPIKE_OK);
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  if (r->restock == SPIKE_OK) CHECK_EQ(ev.stock_total, 108);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
}

static void operations_fail_cleanly(void) {
  make_template("fa-ops");
  for (int sticky = 0; sticky < 2; sticky++) {
    long n, faults = 0;
    for (n = 1;; n++) {
      restore();
      int fds = count_fds();
      fa_track(1);
      spike_engine *e = open_engine(&cfg);
      outcome r;
      fa_arm(n, sticky);
      ops(e, &r);
      long hit = fa_failed(), calls = fa_calls();
      fa_arm(0, 0);
      CHECK_EQ(spike_close(e), SPIKE_OK);
      nothing_left("operations", n, sticky, fds);
      if (getenv("SPIKE_FAILALLOC_VERBOSE") != NULL)
        printf("operations, allocation %ld failing%s: producer %d reserve %d pay %d cancel %d "
               "create %d restock %d get %d feed %d user %d\n",
               n, sticky ? " on" : "", r.producer, r.reserve, r.pay, r.cancel, r.create, r.restock,
               r.get, r.feed, r.user);
      answered_is_stored(&r);
      int any = is_fault(r.producer) || is_fault(r.reserve) || is_fault(r.pay) ||
                is_fault(r.cancel) || is_fault(r.create) || is_fault(r.restock) ||
                is_fault(r.get) || is_fault(r.feed) || is_fault(r.user);
      faults += any;
      if (hit == 0) {
        CHECK(!any);
        printf("operations, %s: %ld allocations; %ld of %ld tries answered a fault (the others "
               "absorbed it); nothing left behind, every change answered OK stored\n",
               sticky ? "the Nth and every later one failing" : "the Nth failing alone",
               calls, faults, n - 1);
        break;
      }
    }
  }
  done_with_template();
}

/* ---- spike_close ---------------------------------------------------------------- */

static void close_fails_cleanly(void) {
  make_template("fa-close");
  long n;
  for (n = 1;; n++) {
    restore();
    int fds = count_fds();
    fa_track(1);
    spike_engine *e = open_engine(&cfg);
    spike_producer *p;
    CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
    spike_op a;
    CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 11, 1, NULL, 0, count_cb)), SPIKE_OK);
    CHECK_EQ(spike_producer_close(p), SPIKE_OK);
    fa_arm(n, 1);
    CHECK_EQ(spike_close(e), SPIKE_OK);
    long hit = fa_failed(), calls = fa_calls();
    fa_arm(0, 0);
    nothing_left("spike_close", n, 1, fds);
    if (hit == 0) {
      printf("spike_close: %ld allocations, nothing left behind\n", calls);
      break;
    }
  }
  done_with_template();
}

TEST_LIST({"open_fails_cleanly", open_fails_cleanly, 300},
          {"migration_fails_cleanly", migration_fails_cleanly, 300},
          {"creation_fails_cleanly", creation_fails_cleanly, 300},
          {"operations_fail_cleanly", operations_fail_cleanly, 300},
          {"close_fails_cleanly", close_fails_cleanly, 60})

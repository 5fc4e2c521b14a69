/*
 * test_powerloss.c -- the power cut at every I/O operation (issue 11, row
 * 1), under LD_PRELOAD=build/rel/tests/libpowerloss.so.
 *
 * A child runs one fixed workload (events created, reserves, a keyed retry,
 * pays, cancels, a restock, a sell-out, a close, expiries, refused pays and
 * cancels of expired orders) and writes a line per answer it got. The shim
 * cuts the power at the child's N-th write or sync of the data file: that
 * op never happens, the child dies, and the shim's image of the file holds
 * what a disk would (every write since the last sync dropped; in the torn
 * mode, a random half of those writes' 512-byte sectors kept). The parent
 * puts the image in place, opens the store, and checks: it opens; every
 * answered change is there with its state; I1-I3 and the per-user limits
 * hold; the feed is whole. A calibration run counts the workload's ops; N
 * then runs over them.
 *
 *   SPIKE_POWERLOSS_LONG=1    20 random tearings at every cut point instead
 *                             of one (the long form: make powerloss)
 *   SPIKE_SEED=...            replays the torn sectors
 *
 * Expiry without sleeping: this binary defines clock_gettime, and the
 * workload moves the wall clock past the pay timeout.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine_util.h"

static _Atomic int64_t shift_ms;

int clock_gettime(clockid_t id, struct timespec *ts) {
  int rc = (int)syscall(SYS_clock_gettime, id, ts);
  int64_t off = atomic_load(&shift_ms);
  if (rc != 0 || id != CLOCK_REALTIME || off == 0) return rc;
  int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + off * 1000000;
  ts->tv_sec = ns / 1000000000;
  ts->tv_nsec = ns % 1000000000;
  return 0;
}

/* ---- the shim ------------------------------------------------------------ */

static void (*pl_reset)(void);
static void (*pl_cut)(uint64_t, uint64_t);
static uint64_t (*pl_ops)(void);

static void need_shim(void) {
  void *a = dlsym(RTLD_DEFAULT, "spike_powerloss_reset");
  void *b = dlsym(RTLD_DEFAULT, "spike_powerloss_cut");
  void *c = dlsym(RTLD_DEFAULT, "spike_powerloss_ops");
  memcpy(&pl_reset, &a, sizeof(a)); /* object to function pointer, per POSIX */
  memcpy(&pl_cut, &b, sizeof(b));
  memcpy(&pl_ops, &c, sizeof(c));
  if (pl_reset == NULL || pl_cut == NULL || pl_ops == NULL) {
    fprintf(stderr, "run with LD_PRELOAD=build/rel/tests/libpowerloss.so\n");
    abort();
  }
}

/* ---- the workload (the child) -------------------------------------------- */

#define EV_A 71 /* stock 20, limit 2, pay timeout 1 s */
#define EV_B 72 /* stock 3: sold out below */
#define LIMIT 2

typedef struct child {
  int fd;
  spike_producer *p;
} child;

/* One answer: kind, status, order (or event) id, user, event. */
static void tell(const child *c, char kind, int status, uint64_t id, uint64_t user, uint64_t ev) {
  char line[128];
  int n = snprintf(line, sizeof(line), "%c %d %llu %llu %llu\n", kind, status,
                   (unsigned long long)id, (unsigned long long)user, (unsigned long long)ev);
  if (write(c->fd, line, (size_t)n) != n) _exit(3); /* < PIPE_BUF: atomic */
}

static uint64_t reserve(const child *c, uint64_t ev, uint64_t user, const char *key) {
  spike_op op;
  int rc = settle(c->p, &op, spike_reserve(c->p, &op, ev, user, 1, key, key ? strlen(key) : 0,
                                           count_cb));
  tell(c, op.replayed ? 'K' : 'R', rc, rc == SPIKE_OK ? op.r.order.id : 0, user, ev);
  return rc == SPIKE_OK ? op.r.order.id : 0;
}

static void pay(const child *c, uint64_t id, uint64_t user) {
  spike_op op;
  int rc = settle(c->p, &op, spike_pay(c->p, &op, id, user, "pl-pay", 6, count_cb));
  tell(c, 'P', rc, id, user, 0);
}

static void cancel(const child *c, uint64_t id, uint64_t user) {
  spike_op op;
  int rc = settle(c->p, &op, spike_cancel(c->p, &op, id, user, count_cb));
  tell(c, 'C', rc, id, user, 0);
}

static void event(const child *c, char kind, uint64_t ev, uint64_t stock) {
  spike_op op;
  int rc;
  if (kind == 'E') {
    spike_event_spec s = spec_default(ev, stock);
    s.per_user_limit = LIMIT;
    s.pay_timeout_s = 1;
    s.end_at = wall_ms() + 86400000;
    rc = settle(c->p, &op, spike_event_create(c->p, &op, &s, count_cb));
  } else if (kind == 'S') {
    rc = settle(c->p, &op, spike_event_restock(c->p, &op, ev, stock, count_cb));
  } else {
    rc = settle(c->p, &op, spike_event_close(c->p, &op, ev, count_cb));
  }
  tell(c, kind, rc, ev, 0, ev);
}

static void workload(const spike_config *cfg, int fd) {
  spike_engine *e = open_engine((spike_config *)cfg);
  child c = {.fd = fd};
  CHECK_EQ(spike_producer_open(e, &c.p), SPIKE_OK);
  event(&c, 'E', EV_A, 20);
  event(&c, 'E', EV_B, 3);
  uint64_t a[8];
  for (uint64_t u = 1; u <= 6; u++) a[u] = reserve(&c, EV_A, u, NULL);
  a[7] = reserve(&c, EV_A, 7, "pl-key");
  reserve(&c, EV_A, 7, "pl-key"); /* the retry: the same order */
  reserve(&c, EV_A, 1, NULL);     /* user 1's second unit (limit 2) */
  reserve(&c, EV_A, 1, NULL);     /* past the limit: refused */
  pay(&c, a[1], 1);
  pay(&c, a[2], 2);
  pay(&c, a[2], 2); /* a repeat */
  cancel(&c, a[3], 3);
  reserve(&c, EV_A, 3, NULL); /* buys again after the cancel */
  event(&c, 'S', EV_A, 5);
  for (uint64_t u = 10; u <= 13; u++) reserve(&c, EV_B, u, NULL); /* the last sells out */
  pay(&c, reserve(&c, EV_B, 14, NULL), 14); /* sold out: nothing to pay */
  event(&c, 'X', EV_B, 0);
  reserve(&c, EV_B, 15, NULL); /* closed */
  atomic_store(&shift_ms, 2000); /* past the 1 s pay timeout */
  reserve(&c, EV_A, 20, NULL);   /* this batch expires the unpaid ones */
  pay(&c, a[4], 4);              /* expired: refused */
  cancel(&c, a[5], 5);           /* expired: refused */
  cancel(&c, a[1], 1);           /* paid: refused */
  CHECK_EQ(spike_producer_close(c.p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
}

/* ---- one cut (the parent) -------------------------------------------------- */

typedef struct answer {
  char kind;
  int status;
  uint64_t id, user, ev;
} answer;

#define ANSWERS_MAX 128

/* Run the workload in a child, cut at op n (0: never), collect the answers.
 * Returns the child's op count when it ran to the end (calibration). */
static uint64_t one_cut(const spike_config *cfg, uint64_t n, uint64_t torn, answer *ans,
                        int *nans) {
  int pfd[2], cfd[2];
  CHECK_EQ(pipe(pfd), 0);
  CHECK_EQ(pipe(cfd), 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    close(cfd[0]);
    pl_reset();
    pl_cut(n, torn);
    workload(cfg, pfd[1]);
    uint64_t ops = pl_ops();
    if (write(cfd[1], &ops, sizeof(ops)) != sizeof(ops)) _exit(3);
    _exit(0);
  }
  close(pfd[1]);
  close(cfd[1]);
  static char buf[1 << 16];
  size_t len = 0;
  ssize_t r;
  while ((r = read(pfd[0], buf + len, sizeof(buf) - 1 - len)) > 0) len += (size_t)r;
  buf[len] = '\0';
  uint64_t ops = 0;
  if (read(cfd[0], &ops, sizeof(ops)) != sizeof(ops)) ops = 0;
  close(pfd[0]);
  close(cfd[0]);
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  if (n == 0) CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  else CHECK((WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL) || (WIFEXITED(st) && WEXITSTATUS(st) == 0));
  *nans = 0;
  for (char *line = strtok(buf, "\n"); line != NULL; line = strtok(NULL, "\n")) {
    answer a;
    unsigned long long id, user, ev;
    CHECK_EQ(sscanf(line, "%c %d %llu %llu %llu", &a.kind, &a.status, &id, &user, &ev), 5);
    a.id = id;
    a.user = user;
    a.ev = ev;
    CHECK(*nans < ANSWERS_MAX);
    ans[(*nans)++] = a;
  }
  /* The cut: the disk holds what the image holds. No image: killed before
   * the store was opened. */
  char img[600], data[600];
  snprintf(img, sizeof(img), "%s/data.mdb.durable", cfg->data_dir);
  snprintf(data, sizeof(data), "%s/data.mdb", cfg->data_dir);
  CHECK(rename(img, data) == 0 || errno == ENOENT);
  return ops;
}

/* What the answers promised is what the store holds. */
static void check_store(const spike_config *cfg, const answer *ans, int nans, uint64_t n) {
  spike_engine *e = NULL;
  int rc = spike_open(&e, cfg);
  if (rc != SPIKE_OK) {
    fprintf(stderr, "cut at op %llu: spike_open: %s: %s\n", (unsigned long long)n,
            spike_strerror(rc), spike_open_error());
    abort();
  }
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  for (int i = 0; i < nans; i++) {
    const answer *a = &ans[i];
    if (a->status != SPIKE_OK) continue; /* a refusal promised nothing */
    spike_order o;
    spike_event ev;
    switch (a->kind) {
    case 'E':
      CHECK_EQ(spike_event_get(e, a->ev, &ev), SPIKE_OK);
      break;
    case 'S':
      CHECK_EQ(spike_event_get(e, a->ev, &ev), SPIKE_OK);
      CHECK_EQ(ev.stock_total, 25);
      break;
    case 'X':
      CHECK_EQ(spike_event_get(e, a->ev, &ev), SPIKE_OK);
      CHECK_EQ(ev.state, SPIKE_EVENT_CLOSED);
      break;
    case 'R':
    case 'K': {
      CHECK_EQ(spike_order_get(p, a->id, &o), SPIKE_OK);
      CHECK_EQ(o.user_id, a->user);
      CHECK_EQ(o.event_id, a->ev);
      /* its later answers decide its state; else reserved or expired */
      spike_order_state want = 0;
      for (int j = i + 1; j < nans; j++)
        if (ans[j].id == a->id && ans[j].status == SPIKE_OK && ans[j].kind == 'P')
          want = SPIKE_ORDER_PAID;
        else if (ans[j].id == a->id && ans[j].status == SPIKE_OK && ans[j].kind == 'C')
          want = SPIKE_ORDER_CANCELLED;
      if (want != 0) CHECK_EQ(o.state, want);
      else CHECK(o.state == SPIKE_ORDER_RESERVED || o.state == SPIKE_ORDER_EXPIRED);
      break;
    }
    case 'P':
      CHECK_EQ(spike_order_get(p, a->id, &o), SPIKE_OK);
      CHECK_EQ(o.state, SPIKE_ORDER_PAID);
      break;
    case 'C':
      CHECK_EQ(spike_order_get(p, a->id, &o), SPIKE_OK);
      CHECK_EQ(o.state, SPIKE_ORDER_CANCELLED);
      break;
    default:
      abort();
    }
  }
  /* I1, I2 (recovery has checked the counters against the orders), I3 */
  for (uint64_t id = EV_A; id <= EV_B; id++) {
    spike_event ev;
    if (spike_event_get(e, id, &ev) != SPIKE_OK) continue;
    CHECK(ev.reserved + ev.sold <= ev.stock_total);
    CHECK_EQ(ev.available + ev.reserved + ev.sold, ev.stock_total);
    for (uint64_t u = 1; u <= 20; u++) {
      static spike_order list[16];
      uint32_t k;
      CHECK_EQ(spike_user_orders(p, u, id, 0, list, 16, &k, NULL), SPIKE_OK);
      uint32_t held = 0;
      for (uint32_t j = 0; j < k; j++)
        if (list[j].state == SPIKE_ORDER_RESERVED || list[j].state == SPIKE_ORDER_PAID)
          held += list[j].qty;
      CHECK(held <= LIMIT);
    }
  }
  /* the feed: 1..N without a gap, every record decodes */
  static spike_change ch[64];
  uint64_t after = 0, expect = 1;
  for (;;) {
    uint32_t k;
    uint64_t next;
    CHECK_EQ(spike_feed_read(p, after, ch, 64, &k, &next), SPIKE_OK);
    if (k == 0) break;
    for (uint32_t j = 0; j < k; j++) CHECK_EQ(ch[j].seq, expect++);
    after = next;
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
}

static void small(spike_config *cfg, const char *tag) {
  small_config(cfg, tag);
  cfg->max_producers = 2;
  cfg->ring_size = 64;
}

static void cut_everywhere(uint64_t torn_mode) {
  need_shim();
  uint64_t rng = test_seed();
  spike_config cfg;
  small(&cfg, torn_mode ? "powerloss-torn" : "powerloss");
  static answer ans[ANSWERS_MAX];
  int nans;
  atomic_store(&shift_ms, 0);
  uint64_t total = one_cut(&cfg, 0, 0, ans, &nans);
  CHECK(total > 10);
  CHECK_EQ(nans, 30); /* one per request of the workload */
  check_store(&cfg, ans, nans, 0);
  /* Every cut point; the long form tries 20 tearings at each. */
  const char *lng = getenv("SPIKE_POWERLOSS_LONG");
  uint32_t tearings = torn_mode ? (lng != NULL && strcmp(lng, "1") == 0 ? 20 : 1) : 1;
  uint64_t runs = 0;
  for (uint64_t at = 1; at <= total + 1; at++)
    for (uint32_t k = 0; k < tearings; k++) {
      test_rmrf(cfg.data_dir);
      mkdir(cfg.data_dir, 0755);
      atomic_store(&shift_ms, 0);
      uint64_t torn = torn_mode ? (test_rand(&rng) | 1) : 0;
      one_cut(&cfg, at, torn, ans, &nans);
      atomic_store(&shift_ms, 0);
      check_store(&cfg, ans, nans, at);
      runs++;
    }
  printf("  %llu ops in the workload, %llu cuts%s\n", (unsigned long long)total,
         (unsigned long long)runs, torn_mode ? " (torn sectors)" : "");
  test_rmrf(cfg.data_dir);
}

static void unsynced_dropped(void) { cut_everywhere(0); }
static void torn_sectors(void) { cut_everywhere(1); }

TEST_LIST({"unsynced_dropped", unsynced_dropped, 600}, {"torn_sectors", torn_sectors, 600})

/*
 * test_sim.c -- a seeded simulation of the engine against a model (issue 11,
 * row 7). From a seed: events with random stock, limits, pay timeouts and
 * sale windows; then random steps (reserve, keyed reserve and its retry,
 * pay by the owner, an admin or a stranger, cancel, restock, close, the
 * clock moving, a reopen), each answered by the engine and predicted by the
 * model; after every step the engine's events, orders and holdings must be
 * the model's. I1-I4 follow (the model never oversells, balances, holds a
 * user to the limit, binds a key to one order); a reopen checks recovery.
 *
 * The clock is this binary's: clock_gettime here answers a virtual time for
 * CLOCK_REALTIME and CLOCK_MONOTONIC that only the simulation moves, so
 * expiries happen when the model says and nothing sleeps.
 *
 *   SPIKE_SIM_SEEDS=N     seeds to run (default 200; make sim: 10,000)
 *   SPIKE_SEED=S          run one seed (a failure prints the one to use)
 *   SPIKE_SIM_STEPS=N     steps per seed (default 150)
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine_util.h"

/* ---- the virtual clock ------------------------------------------------- */

#define EPOCH_MS 1800000000000ll /* 2027-01-15: ids and windows look real */

static _Atomic int64_t vms; /* ms since EPOCH_MS */

int clock_gettime(clockid_t id, struct timespec *ts) {
  if (id != CLOCK_REALTIME && id != CLOCK_MONOTONIC)
    return (int)syscall(SYS_clock_gettime, id, ts);
  int64_t ms = atomic_load(&vms) + (id == CLOCK_REALTIME ? EPOCH_MS : 1000000);
  ts->tv_sec = ms / 1000;
  ts->tv_nsec = (ms % 1000) * 1000000;
  return 0;
}

static int64_t now_ms(void) { return EPOCH_MS + atomic_load(&vms); }

/* ---- the model ------------------------------------------------------------ */

#define EVENTS 3
#define USERS 8
#define ORDERS_MAX 512
#define KEYS 6

typedef struct m_event {
  uint64_t id;
  uint64_t total, reserved, sold;
  uint32_t limit, timeout_s;
  int64_t start, end;
  int closed;
} m_event;

typedef struct m_order {
  uint64_t id;
  int ev; /* index */
  uint64_t user;
  uint32_t qty;
  spike_order_state state;
  int64_t expires_at;
  char pid[16]; /* payment id when paid */
} m_order;

typedef struct model {
  m_event ev[EVENTS];
  m_order o[ORDERS_MAX];
  int no;
  uint64_t key_order[EVENTS][KEYS]; /* 0: unbound */
} model;

static uint32_t held(const model *m, int ev, uint64_t user) {
  uint32_t h = 0;
  for (int i = 0; i < m->no; i++)
    if (m->o[i].ev == ev && m->o[i].user == user &&
        (m->o[i].state == SPIKE_ORDER_RESERVED || m->o[i].state == SPIKE_ORDER_PAID))
      h += m->o[i].qty;
  return h;
}

static m_order *find(model *m, uint64_t id) {
  for (int i = 0; i < m->no; i++)
    if (m->o[i].id == id) return &m->o[i];
  return NULL;
}

/* Every reserved order past its deadline expires (the writer's timers, a
 * pay or cancel reaching it, or recovery: all the same to the model). */
static void expire(model *m) {
  for (int i = 0; i < m->no; i++) {
    m_order *o = &m->o[i];
    if (o->state == SPIKE_ORDER_RESERVED && now_ms() >= o->expires_at) {
      o->state = SPIKE_ORDER_EXPIRED;
      m->ev[o->ev].reserved -= o->qty;
    }
  }
}

static spike_event_state m_state(const m_event *e) {
  uint64_t avail = e->total - e->reserved - e->sold;
  if (e->closed) return SPIKE_EVENT_CLOSED;
  if (now_ms() >= e->end) return SPIKE_EVENT_ENDED;
  if (now_ms() < e->start) return SPIKE_EVENT_SCHEDULED;
  return avail == 0 ? SPIKE_EVENT_SOLD_OUT : SPIKE_EVENT_LIVE;
}

/* ---- the engine side -------------------------------------------------------- */

typedef struct sim {
  spike_config cfg;
  spike_engine *e;
  spike_producer *p;
  model m;
  uint64_t rng, seed;
  int step;
} sim;

#define FAIL_IF(cond, ...)                                                            \
  do {                                                                                \
    if (cond) {                                                                       \
      fprintf(stderr, "seed %llu step %d: ", (unsigned long long)s->seed, s->step);    \
      fprintf(stderr, __VA_ARGS__);                                                   \
      fprintf(stderr, "\n  replay: SPIKE_SEED=%llu build/asan/tests/test_sim\n",       \
              (unsigned long long)s->seed);                                           \
      abort();                                                                        \
    }                                                                                 \
  } while (0)

static void open_sim(sim *s) {
  s->e = open_engine(&s->cfg);
  CHECK_EQ(spike_producer_open(s->e, &s->p), SPIKE_OK);
}

static void close_sim(sim *s) {
  CHECK_EQ(spike_producer_close(s->p), SPIKE_OK);
  CHECK_EQ(spike_close(s->e), SPIKE_OK);
}

/* Let the writer take everything due at the current time: a feed wait is
 * answered in a cycle that has fired the due timers and applied them. */
static void sync_writer(sim *s) {
  spike_op op;
  CHECK_EQ(settle(s->p, &op, spike_feed_wait(s->p, &op, UINT64_MAX - 1, 0, count_cb)), SPIKE_OK);
}

static uint64_t rnd(sim *s, uint64_t n) { return test_rand(&s->rng) % n; }

static void step_reserve(sim *s) {
  model *m = &s->m;
  int ev = (int)rnd(s, EVENTS);
  m_event *me = &m->ev[ev];
  uint64_t user = 1 + rnd(s, USERS);
  uint32_t qty = 1 + (uint32_t)rnd(s, 3);
  int keyed = rnd(s, 3) == 0;
  int k = (int)rnd(s, KEYS);
  char key[16];
  snprintf(key, sizeof(key), "key-%d", k);
  /* the model's answer, in the engine's order of checks */
  int want;
  uint64_t avail = me->total - me->reserved - me->sold;
  uint64_t bound = keyed ? m->key_order[ev][k] : 0;
  if (bound != 0) {
    want = find(m, bound)->user == user ? SPIKE_OK : SPIKE_EFORBIDDEN; /* a replay */
  } else if (me->closed || now_ms() < me->start || now_ms() >= me->end) {
    want = SPIKE_ENOTLIVE; /* sold out or not: a sale that is over is that first */
  } else if (avail == 0) {
    want = SPIKE_ESOLDOUT;
  } else if (qty > me->limit || held(m, ev, user) + qty > me->limit) {
    want = SPIKE_ELIMIT;
  } else if (avail < qty) {
    want = SPIKE_ESOLDOUT;
  } else {
    want = SPIKE_OK;
  }
  spike_op op;
  int rc = settle(s->p, &op, spike_reserve(s->p, &op, me->id, user, qty, keyed ? key : NULL,
                                           keyed ? strlen(key) : 0, count_cb));
  FAIL_IF(rc != want, "reserve event %llu user %llu qty %u%s%s: %s, the model says %s",
          (unsigned long long)me->id, (unsigned long long)user, qty, keyed ? " key " : "",
          keyed ? key : "", spike_strerror(rc), spike_strerror(want));
  if (bound != 0) {
    FAIL_IF(rc == SPIKE_OK && (op.r.order.id != bound || !op.replayed), "replay gave order %llu",
            (unsigned long long)op.r.order.id);
    return;
  }
  if (rc != SPIKE_OK) return;
  CHECK(m->no < ORDERS_MAX);
  m_order *o = &m->o[m->no++];
  memset(o, 0, sizeof(*o));
  o->id = op.r.order.id;
  o->ev = ev;
  o->user = user;
  o->qty = qty;
  o->state = SPIKE_ORDER_RESERVED;
  o->expires_at = op.r.order.expires_at;
  FAIL_IF(o->expires_at != now_ms() + (int64_t)me->timeout_s * 1000, "expires_at");
  me->reserved += qty;
  if (keyed) m->key_order[ev][k] = o->id;
}

static void step_order_op(sim *s, int pay) {
  model *m = &s->m;
  if (m->no == 0) return;
  m_order *o = &m->o[rnd(s, (uint64_t)m->no)];
  uint64_t who = rnd(s, 6) == 0 ? 0 : rnd(s, 8) == 0 ? o->user % USERS + 1 : o->user;
  char pid[16];
  snprintf(pid, sizeof(pid), "pay-%llu", (unsigned long long)rnd(s, 2));
  /* the writer expires it first when its deadline has passed */
  int want;
  spike_order_state next = o->state;
  if (who != 0 && who != o->user) {
    want = SPIKE_EFORBIDDEN;
  } else {
    if (o->state == SPIKE_ORDER_RESERVED && now_ms() >= o->expires_at) {
      o->state = SPIKE_ORDER_EXPIRED;
      m->ev[o->ev].reserved -= o->qty;
    }
    if (pay)
      want = o->state == SPIKE_ORDER_RESERVED                                  ? SPIKE_OK
             : o->state == SPIKE_ORDER_PAID && strcmp(o->pid, pid) == 0 ? SPIKE_OK
                                                                            : SPIKE_ESTATE;
    else
      want = o->state == SPIKE_ORDER_RESERVED || o->state == SPIKE_ORDER_CANCELLED ? SPIKE_OK
                                                                                     : SPIKE_ESTATE;
    if (want == SPIKE_OK && o->state == SPIKE_ORDER_RESERVED)
      next = pay ? SPIKE_ORDER_PAID : SPIKE_ORDER_CANCELLED;
  }
  spike_op op;
  int rc = pay ? settle(s->p, &op, spike_pay(s->p, &op, o->id, who, pid, strlen(pid), count_cb))
               : settle(s->p, &op, spike_cancel(s->p, &op, o->id, who, count_cb));
  FAIL_IF(rc != want, "%s order %llu by %llu: %s, the model says %s", pay ? "pay" : "cancel",
          (unsigned long long)o->id, (unsigned long long)who, spike_strerror(rc),
          spike_strerror(want));
  if (next != o->state) {
    m_event *me = &m->ev[o->ev];
    me->reserved -= o->qty;
    if (pay) {
      me->sold += o->qty;
      snprintf(o->pid, sizeof(o->pid), "%s", pid);
    }
    o->state = next;
  }
}

static void step_event_op(sim *s, int close) {
  model *m = &s->m;
  m_event *me = &m->ev[rnd(s, EVENTS)];
  spike_op op;
  if (close) {
    CHECK_EQ(settle(s->p, &op, spike_event_close(s->p, &op, me->id, count_cb)), SPIKE_OK);
    me->closed = 1;
    return;
  }
  uint64_t add = 1 + rnd(s, 5);
  int want = me->closed ? SPIKE_ENOTLIVE : SPIKE_OK;
  int rc = settle(s->p, &op, spike_event_restock(s->p, &op, me->id, add, count_cb));
  FAIL_IF(rc != want, "restock %llu: %s, the model says %s", (unsigned long long)me->id,
          spike_strerror(rc), spike_strerror(want));
  if (rc == SPIKE_OK) me->total += add;
}

/* The engine is the model. */
static void check(sim *s) {
  model *m = &s->m;
  expire(m);
  sync_writer(s);
  for (int i = 0; i < EVENTS; i++) {
    m_event *me = &m->ev[i];
    spike_event ev;
    CHECK_EQ(spike_event_get(s->e, me->id, &ev), SPIKE_OK);
    FAIL_IF(ev.stock_total != me->total || ev.reserved != me->reserved || ev.sold != me->sold ||
                ev.available != me->total - me->reserved - me->sold || ev.state != m_state(me),
            "event %llu: total/reserved/sold %llu/%llu/%llu %s, the model %llu/%llu/%llu %s",
            (unsigned long long)me->id, (unsigned long long)ev.stock_total,
            (unsigned long long)ev.reserved, (unsigned long long)ev.sold,
            spike_event_state_name(ev.state), (unsigned long long)me->total,
            (unsigned long long)me->reserved, (unsigned long long)me->sold,
            spike_event_state_name(m_state(me)));
    FAIL_IF(me->reserved + me->sold > me->total, "the model oversold"); /* I1 */
  }
  for (int i = 0; i < m->no; i++) {
    spike_order o;
    CHECK_EQ(spike_order_get(s->p, m->o[i].id, &o), SPIKE_OK);
    FAIL_IF(o.state != m->o[i].state, "order %llu is %s, the model says %s",
            (unsigned long long)o.id, spike_order_state_name(o.state),
            spike_order_state_name(m->o[i].state));
  }
  /* each user's orders, as the engine lists them (I3 through the model) */
  uint64_t user = 1 + rnd(s, USERS);
  static spike_order list[ORDERS_MAX];
  uint32_t n;
  CHECK_EQ(spike_user_orders(s->p, user, 0, 0, list, ORDERS_MAX, &n, NULL), SPIKE_OK);
  uint32_t want = 0;
  for (int i = 0; i < m->no; i++) want += m->o[i].user == user;
  FAIL_IF(n != want, "user %llu has %u orders listed, the model %u", (unsigned long long)user, n,
          want);
}

static void run_seed(uint64_t seed, int steps, const char *dir) {
  sim *s = calloc(1, sizeof(*s));
  CHECK(s != NULL);
  s->seed = s->rng = seed;
  atomic_store(&vms, 0);
  small_config(&s->cfg, "sim");
  test_rmrf(s->cfg.data_dir);
  static char path[600];
  snprintf(path, sizeof(path), "%s/spike-sim-%d", dir, (int)getpid());
  test_rmrf(path);
  s->cfg.data_dir = path;
  s->cfg.log_level = SPIKE_LOG_ERROR; /* tmpfs on purpose: no warning per reopen */
  s->cfg.max_producers = 2;
  s->cfg.ring_size = 64;
  open_sim(s);
  for (int i = 0; i < EVENTS; i++) {
    m_event *me = &s->m.ev[i];
    me->id = 100 + (uint64_t)i;
    me->total = 1 + rnd(s, 12);
    me->limit = 1 + (uint32_t)rnd(s, 3);
    me->timeout_s = 1 + (uint32_t)rnd(s, 5);
    me->start = now_ms() + (rnd(s, 4) == 0 ? (int64_t)rnd(s, 20000) : -1000);
    me->end = me->start + 20000 + (int64_t)rnd(s, 60000);
    spike_event_spec sp = spec_default(me->id, me->total);
    sp.per_user_limit = me->limit;
    sp.pay_timeout_s = me->timeout_s;
    sp.start_at = me->start;
    sp.end_at = me->end;
    CHECK_EQ(create_event(s->p, &sp), SPIKE_OK);
  }
  for (s->step = 0; s->step < steps; s->step++) {
    uint64_t r = rnd(s, 100);
    if (r < 40) step_reserve(s);
    else if (r < 55) step_order_op(s, 1);
    else if (r < 67) step_order_op(s, 0);
    else if (r < 82) atomic_fetch_add(&vms, (int64_t)rnd(s, 3000)); /* the clock moves */
    else if (r < 88) step_event_op(s, 0);
    else if (r < 90) step_event_op(s, 1);
    else if (r < 94) { /* reopen: recovery rebuilds it all */
      close_sim(s);
      open_sim(s);
    } else {
      continue;
    }
    check(s);
  }
  close_sim(s);
  test_rmrf(path);
  free(s);
}

static void seeds(void) {
  const char *v = getenv("SPIKE_SIM_SEEDS");
  int n = v != NULL && atoi(v) > 0 ? atoi(v) : 200;
  v = getenv("SPIKE_SIM_STEPS");
  int steps = v != NULL && atoi(v) > 0 ? atoi(v) : 150;
  /* the store is logic here, not a disk: tmpfs when there is one */
  struct stat st;
  const char *dir = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
  if (getenv("SPIKE_SEED") != NULL) {
    run_seed(test_seed(), steps, dir);
    return;
  }
  uint64_t base = test_seed();
  for (int i = 0; i < n; i++) run_seed(base + (uint64_t)i, steps, dir);
  printf("  %d seeds of %d steps from %llu\n", n, steps, (unsigned long long)base);
}

TEST_LIST({"seeds", seeds, 600})

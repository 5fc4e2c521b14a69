/*
 * bench_writer.c -- durable orders per second end to end through the
 * engine's writer, against a raw LMDB loop that writes the same records.
 *
 * Engine: ack=durable, batch_max B, batch_us 0, one producer thread that
 * keeps up to max(64, 4 x B) reserves in flight, at most ring_size (fresh
 * user each, no key), waits on the completion fd with poll() and drains. An order counts when
 * its callback reports SPIKE_OK, i.e. after its batch was committed with
 * fsync. The rate is orders / (last completion - first submit).
 *
 * Reference: one thread, no ring, no tables, no callbacks: per order
 * store_put_order_change (the order, appended, with its user's previous
 * order, and its order.reserved change record); per batch of B one
 * store_put_event with the new counters and one store_put_meta("id_hwm"),
 * then store_write_commit leaving the meta page to the next commit's sync,
 * as the writer does when more is queued (and one store_sync at the end,
 * inside the timing). These are exactly the
 * puts the writer makes for a batch of keyless reserves (engine/writer.c:
 * apply_reserve, commit), through the same schema.c functions, into a store
 * opened the same way (store_open).
 *
 * --engines N runs N engines at once, each with its own store, writer and
 * producer thread, against N reference loops at once, each with its own
 * store: the rates are summed. That is a partitioned store with nothing
 * between its parts (docs/design.md, "Why one store"), the most one could
 * make of the machine's cores and disk.
 *
 * Every run gets a fresh data directory under argv[1], else $TMPDIR, else
 * /tmp; it must be a real disk for fsync to mean anything. Runs alternate
 * engine / reference so drifting machine load hits both alike; medians of
 * --reps runs are reported.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "codec.h"
#include "engine.h"
#include "ids.h"
#include "schema.h"
#include "spike.h"

#define REPS_MAX 15
#define SECONDS_MAX 60.0
#define ORDERS_MIN 8192u
#define ORDERS_MAX (1u << 28) /* also the most --preload builds */
#define BATCH_MAX 65536u
#define EVENT_ID 1000u
#define PRICE 1999
#define PAY_TIMEOUT_S 900u
#define EVENT_NAME "bench sale"
#define GOAL_RATIO 0.8
#define GOAL_RATE_4096 1000000.0
#define ENGINES_MAX 64u
#define TMPFS_MAGIC_ 0x01021994

static uint32_t batches[] = {1, 16, 256, 4096};

/* Users: a real crowd arrives in no order (random ids, the default), or
 * one after another (--users seq). A bijection of a counter: every user is
 * new, in an order that scatters them over every index. */
static int random_users = 1;

static uint64_t user_at(uint64_t n) {
  if (!random_users) return n;
  uint64_t z = n * 0x9E3779B97F4A7C15ull; /* splitmix64's finalizer: a bijection */
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return z != 0 ? z : 1;
}
#define NBATCH_ALL (sizeof(batches) / sizeof(batches[0]))

static uint64_t cpu_ns(clockid_t clk) {
  struct timespec ts;
  if (clock_gettime(clk, &ts) != 0) return 0;
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *why) {
  fprintf(stderr, "bench_writer: %s: %s\n", what, why);
  exit(1);
}

/* ---- engine ------------------------------------------------------------ */

typedef struct engine_run {
  spike_op *ops;      /* the in-flight limit's worth of ops */
  uint32_t *free_ops; /* stack of free indices */
  uint32_t nfree;
  uint64_t ok, failed;
  int first_error;
} engine_run;

/* The callbacks' context: one run at a time on each thread (--engines N
 * runs N threads, each its own engine and producer). */
static _Thread_local engine_run *cur_run;
static _Thread_local int create_done;

/* --engines N: the runs of one round start their clocks together, once
 * every engine is open and has its event. */
static uint32_t nengines = 1;
static pthread_barrier_t start_line;

static void line_up(void) {
  if (nengines > 1) pthread_barrier_wait(&start_line);
}

static void reserve_cb(spike_op *op) {
  engine_run *r = cur_run;
  if (op->status == SPIKE_OK) {
    r->ok++;
  } else {
    if (r->failed++ == 0) r->first_error = op->status;
  }
  r->free_ops[r->nfree++] = (uint32_t)(op - r->ops);
}

static void create_cb(spike_op *op) {
  (void)op;
  create_done = 1;
}

typedef struct result {
  double rate; /* orders/s */
  uint64_t orders;
  double seconds;
  uint64_t commits;
  double batch_avg;
  double commit_ms_avg; /* mean store_write_commit time, fsync included */
  double cpu_us;        /* CPU time (user + system) of the writing thread per order */
  uint32_t inflight;    /* most reserves in flight (engine only) */
  double open_s;        /* spike_open, recovery included (engine only) */
} result;

/* In flight: the whole ring, except that a small batch needs far less to
 * stay busy, and what is in flight when time is up must still drain at the
 * batch's rate (8192 single-order fsyncs take seconds). */
static uint32_t inflight_max(uint32_t batch, uint32_t ring_size, uint32_t opt) {
  if (opt != 0) return opt < ring_size ? opt : ring_size;
  uint64_t n = (uint64_t)batch * 4 > 64 ? (uint64_t)batch * 4 : 64;
  return n < ring_size ? (uint32_t)n : ring_size;
}

static void engine_once(const char *dir, uint32_t batch, double seconds, uint64_t cap, int prefault,
                        uint32_t inflight_opt, uint64_t map_extra, result *res) {
  uint32_t ring_size = pow2_at_least(batch * 2 > 8192 ? (uint64_t)batch * 2 : 8192);
  uint32_t inflight = inflight_max(batch, ring_size, inflight_opt);
  spike_config cfg;
  spike_config_init(&cfg);
  cfg.data_dir = dir;
  cfg.ack = SPIKE_ACK_DURABLE;
  cfg.batch_max = batch;
  cfg.batch_us = 0;
  cfg.ring_size = ring_size;
  cfg.max_events = 4;
  cfg.max_producers = 2;
  cfg.max_keys = 1u << 10;
  cfg.max_buyers = pow2_at_least(cap + cap / 3 + 1);
  cfg.max_reserved = (uint32_t)cap;
  cfg.map_size_bytes = (cap * 2048 > (1ull << 30) ? cap * 2048 : 1ull << 30) + map_extra;
  spike_engine *e;
  uint64_t open0 = now_ns();
  int rc = spike_open(&e, &cfg);
  if (rc != SPIKE_OK) die("spike_open", spike_open_error());
  res->open_s = (double)(now_ns() - open0) / 1e9;
  spike_producer *p;
  if ((rc = spike_producer_open(e, &p)) != SPIKE_OK) die("spike_producer_open", spike_strerror(rc));
  int fd = spike_producer_fd(p);

  spike_event_spec s;
  memset(&s, 0, sizeof(s));
  s.id = EVENT_ID;
  s.name = EVENT_NAME;
  s.name_len = strlen(s.name);
  s.stock = UINT32_MAX;
  s.price = PRICE;
  s.start_at = wall_ms() - 60000;
  s.end_at = wall_ms() + 3600000;
  s.per_user_limit = 1;
  s.pay_timeout_s = PAY_TIMEOUT_S;
  spike_op cop;
  create_done = 0;
  rc = spike_event_create(p, &cop, &s, create_cb);
  if (rc != SPIKE_PENDING) die("spike_event_create", spike_strerror(rc));
  while (!create_done) {
    struct pollfd pfd = {fd, POLLIN, 0};
    poll(&pfd, 1, 100);
    spike_producer_drain(p);
  }
  if (cop.status != SPIKE_OK) die("spike_event_create", spike_strerror(cop.status));
  if (prefault) {
    /* The buyer table comes from calloc; a fresh user's entry would cost a
     * page fault plus a copy-on-write fault with a TLB shootdown until every
     * page has been touched once. A running engine is past that: touch them
     * now (nothing else uses the table yet). */
    memset(e->buyers.e, 0, (size_t)lim_capacity(&e->buyers) * sizeof(lim_entry));
  }

  engine_run run;
  memset(&run, 0, sizeof(run));
  run.ops = calloc(inflight, sizeof(*run.ops));
  run.free_ops = calloc(inflight, sizeof(*run.free_ops));
  if (run.ops == NULL || run.free_ops == NULL) die("calloc", strerror(ENOMEM));
  for (uint32_t i = 0; i < inflight; i++)
    run.free_ops[run.nfree++] = inflight - 1 - i;
  cur_run = &run;

  line_up();
  uint64_t limit_ns = (uint64_t)(seconds * 1e9);
  uint64_t user = 1, submitted = 0;
  /* The writer thread's CPU clock: its own work per order, fsync waits
   * excluded. */
  clockid_t wclk;
  if (pthread_getcpuclockid(e->writer_thread, &wclk) != 0) wclk = CLOCK_THREAD_CPUTIME_ID;
  uint64_t wcpu0 = cpu_ns(wclk);
  uint64_t t0 = now_ns(), t_last = t0;
  int submitting = 1;
  for (;;) {
    while (submitting && run.nfree > 0) {
      spike_op *op = &run.ops[run.free_ops[--run.nfree]];
      rc = spike_reserve(p, op, EVENT_ID, user_at(user), 1, NULL, 0, reserve_cb);
      if (rc == SPIKE_EBUSY) {
        /* a full ring waits for completions; a full table never ends */
        if (spike_producer_inflight(p) == 0) die("spike_reserve", op->detail);
        run.nfree++;
        break;
      }
      if (rc != SPIKE_PENDING) die("spike_reserve", spike_strerror(rc));
      user++;
      if (++submitted >= cap) submitting = 0;
      if (submitted % 256 == 0 && now_ns() - t0 >= limit_ns) submitting = 0;
    }
    if (!submitting && spike_producer_inflight(p) == 0) break;
    struct pollfd pfd = {fd, POLLIN, 0};
    poll(&pfd, 1, 100);
    if (spike_producer_drain(p) > 0) t_last = now_ns();
    if (submitting && t_last - t0 >= limit_ns) submitting = 0;
  }
  cur_run = NULL;
  if (run.failed > 0)
    fprintf(stderr, "bench_writer: %llu reserves failed (first: %s)\n",
            (unsigned long long)run.failed, spike_strerror(run.first_error));

  uint64_t wcpu = cpu_ns(wclk) - wcpu0;
  spike_stats st;
  spike_stats_get(e, &st);
  if ((rc = spike_producer_close(p)) != SPIKE_OK) die("spike_producer_close", spike_strerror(rc));
  if ((rc = spike_close(e)) != SPIKE_OK) die("spike_close", spike_strerror(rc));
  free(run.ops);
  free(run.free_ops);
  rmrf(dir);

  res->inflight = inflight;
  res->orders = run.ok;
  res->seconds = (double)(t_last - t0) / 1e9;
  res->rate = res->seconds > 0 ? (double)run.ok / res->seconds : 0;
  /* The create's commit is in these counters too: leave it out. */
  res->commits = st.commits_total > 0 ? st.commits_total - 1 : 0;
  res->batch_avg = res->commits ? (double)(st.batch_size_sum - 1) / (double)res->commits : 0;
  res->cpu_us = run.ok ? (double)wcpu / 1e3 / (double)run.ok : 0;
  res->commit_ms_avg =
      st.commits_total ? st.commit_seconds_sum * 1e3 / (double)st.commits_total : 0;
}

/* ---- reference: raw LMDB ------------------------------------------------- */

static void check(int rc, const char *what) {
  if (rc != 0) die(what, store_strerror(rc));
}

static void reference_once(const char *dir, uint32_t batch, double seconds, uint64_t cap,
                           result *res) {
  if (mkdir(dir, 0755) != 0) die(dir, strerror(errno));
  uint64_t map = cap * 2048 > (1ull << 30) ? cap * 2048 : 1ull << 30;
  store *st;
  store_txn *txn;
  char err[256];
  if (store_open(&st, dir, map, 2 + 16, err, sizeof(err)) != 0) die("store_open", err);
  if ((txn = store_txn_new(st)) == NULL) die("store_txn_new", strerror(ENOMEM));

  int64_t now = wall_ms();
  spike_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.id = EVENT_ID;
  snprintf(ev.name, sizeof(ev.name), "%s", EVENT_NAME);
  ev.price = PRICE;
  ev.stock_total = UINT32_MAX;
  ev.available = UINT32_MAX;
  ev.start_at = now - 60000;
  ev.end_at = now + 3600000;
  ev.per_user_limit = 1;
  ev.pay_timeout_s = PAY_TIMEOUT_S;
  ev.state = SPIKE_EVENT_LIVE;
  uint64_t seq = 0;

  /* The event's creation, as the writer commits it: not timed. */
  check(store_write_begin(txn), "store_write_begin");
  check(store_put_event(txn, &ev, 0), "store_put_event");
  check(store_append_change(txn, ++seq, SPIKE_CHANGE_EVENT_CREATED, now, NULL, &ev, 0),
        "store_append_change");
  check(store_write_commit(txn, 1), "store_write_commit");

  ids g;
  ids_init(&g, 0, now);
  line_up();
  uint64_t limit_ns = (uint64_t)(seconds * 1e9);
  uint64_t user = 1, orders = 0, commits = 0, commit_ns = 0;
  uint64_t cpu0 = cpu_ns(CLOCK_THREAD_CPUTIME_ID);
  uint64_t t0 = now_ns(), t = t0;
  while (orders < cap && t - t0 < limit_ns) {
    now = wall_ms();
    check(store_write_begin(txn), "store_write_begin");
    uint64_t last_id = 0;
    for (uint32_t i = 0; i < batch; i++) {
      order_rec r;
      memset(&r, 0, sizeof(r));
      spike_order *o = &r.o;
      o->id = last_id = ids_next(&g, now);
      o->event_id = EVENT_ID;
      o->user_id = user_at(user++);
      o->qty = 1;
      o->amount = PRICE;
      o->state = SPIKE_ORDER_RESERVED;
      o->created_at = now;
      o->expires_at = now + (int64_t)PAY_TIMEOUT_S * 1000;
      r.rseq = seq + 1; /* a fresh user: no previous order */
      check(store_put_order_change(txn, &r, 1, ++seq, SPIKE_CHANGE_ORDER_RESERVED,
                                   o->created_at),
            "store_put_order_change");
    }
    ev.reserved += batch;
    ev.available -= batch;
    check(store_put_event(txn, &ev, 0), "store_put_event");
    check(store_put_meta(txn, "id_hwm", last_id), "store_put_meta");
    uint64_t c0 = now_ns();
    check(store_write_commit(txn, 1), "store_write_commit");
    commit_ns += now_ns() - c0;
    store_write_ahead(st); /* the file written ahead, as the engine's writer keeps it */
    orders += batch;
    commits++;
    t = now_ns();
  }
  check(store_sync(st), "store_sync"); /* the last batch, durable */
  t = now_ns();
  uint64_t cpu = cpu_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
  store_txn_free(txn);
  store_close(st);
  rmrf(dir);
  res->cpu_us = orders ? (double)cpu / 1e3 / (double)orders : 0;
  res->orders = orders;
  res->seconds = (double)(t - t0) / 1e9;
  res->rate = (double)orders / res->seconds;
  res->commits = commits;
  res->batch_avg = batch;
  res->commit_ms_avg = commits ? (double)commit_ns / 1e6 / (double)commits : 0;
  res->inflight = 0;
}

/* ---- N at once (--engines) ----------------------------------------------- */

typedef struct one_run {
  pthread_t t;
  int engine; /* else the reference */
  char path[PATH_MAX];
  uint32_t batch;
  double seconds;
  uint64_t cap;
  int prefault;
  uint32_t inflight_opt;
  result res;
} one_run;

static void *one_main(void *arg) {
  one_run *o = arg;
  if (o->engine)
    engine_once(o->path, o->batch, o->seconds, o->cap, o->prefault, o->inflight_opt, 0, &o->res);
  else
    reference_once(o->path, o->batch, o->seconds, o->cap, &o->res);
  return NULL;
}

/* The engine (or the reference) in nengines directories PATH-K at once,
 * their results summed into res: rates and orders added, commit times and
 * CPU per order weighted by commits and orders. One: in PATH, on this
 * thread, its result as it is. */
static void run_n(int engine, const char *path, uint32_t batch, double seconds, uint64_t cap,
                  int prefault, uint32_t inflight_opt, result *res) {
  one_run *o = calloc(nengines, sizeof(*o));
  if (o == NULL) die("calloc", strerror(ENOMEM));
  for (uint32_t k = 0; k < nengines; k++) {
    o[k].engine = engine;
    if (nengines == 1)
      snprintf(o[k].path, sizeof(o[k].path), "%s", path);
    else
      snprintf(o[k].path, sizeof(o[k].path), "%s-%u", path, k);
    o[k].batch = batch;
    o[k].seconds = seconds;
    o[k].cap = cap;
    o[k].prefault = prefault;
    o[k].inflight_opt = inflight_opt;
  }
  if (nengines == 1) {
    one_main(&o[0]);
    *res = o[0].res;
    free(o);
    return;
  }
  if (pthread_barrier_init(&start_line, NULL, nengines) != 0) die("pthread_barrier_init", "failed");
  for (uint32_t k = 0; k < nengines; k++)
    if (pthread_create(&o[k].t, NULL, one_main, &o[k]) != 0) die("pthread_create", "failed");
  memset(res, 0, sizeof(*res));
  double commit_ms = 0, cpu = 0;
  for (uint32_t k = 0; k < nengines; k++) {
    pthread_join(o[k].t, NULL);
    const result *r = &o[k].res;
    res->rate += r->rate;
    res->orders += r->orders;
    res->commits += r->commits;
    if (r->seconds > res->seconds) res->seconds = r->seconds;
    commit_ms += r->commit_ms_avg * (double)r->commits;
    cpu += r->cpu_us * (double)r->orders;
    res->inflight = r->inflight;
    if (r->open_s > res->open_s) res->open_s = r->open_s;
  }
  pthread_barrier_destroy(&start_line);
  free(o);
  res->batch_avg = res->commits ? (double)res->orders / (double)res->commits : 0;
  res->commit_ms_avg = res->commits ? commit_ms / (double)res->commits : 0;
  res->cpu_us = res->orders ? cpu / (double)res->orders : 0;
}

/* ---- a store that already holds orders -------------------------------- */

#define PRELOAD_EVENT 999u
#define PRELOAD_PER_USER 10 /* repeat customers: N orders by N/10 users */

/* A store of n orders, each reserved and then cancelled (no holdings, no
 * timers: what a store looks like after many sales), by n / 10 users, with
 * their chains and both change records; written raw, untimed. Returns the
 * data file's size. */
static uint64_t preload_build(const char *dir, uint64_t n) {
  char err[256];
  store *st;
  uint64_t map = n * 1024 + (1ull << 30);
  if (store_open(&st, dir, map, 4, err, sizeof(err)) != 0) die("store_open", err);
  store_txn *txn = store_txn_new(st);
  if (txn == NULL) die("store_txn_new", strerror(ENOMEM));
  uint64_t users = n / PRELOAD_PER_USER ? n / PRELOAD_PER_USER : 1;
  uint64_t *last = calloc(users, sizeof(uint64_t));
  if (last == NULL) die("calloc", strerror(ENOMEM));
  int64_t now = wall_ms();
  spike_event ev;
  memset(&ev, 0, sizeof(ev));
  ev.id = PRELOAD_EVENT;
  strcpy(ev.name, "past sales");
  ev.price = PRICE;
  ev.stock_total = n < UINT32_MAX ? n : UINT32_MAX;
  ev.available = ev.stock_total;
  ev.start_at = now - 86400000;
  ev.end_at = now - 3600000;
  ev.per_user_limit = 1;
  ev.pay_timeout_s = PAY_TIMEOUT_S;
  ids g;
  ids_init(&g, 1, now - 86400000); /* ids below anything minted later */
  uint64_t seq = 0, id = 0;
  check(store_write_begin(txn), "store_write_begin");
  check(store_put_event(txn, &ev, 1), "store_put_event");
  check(store_append_change(txn, ++seq, SPIKE_CHANGE_EVENT_CREATED, now, NULL, &ev, 1),
        "store_append_change");
  for (uint64_t i = 0; i < n; i++) {
    uint64_t u = i % users;
    order_rec r;
    memset(&r, 0, sizeof(r));
    r.o.id = id = ids_next(&g, now - 86400000);
    r.o.event_id = PRELOAD_EVENT;
    r.o.user_id = user_at(1000000000000ull + u);
    r.o.qty = 1;
    r.o.amount = PRICE;
    r.o.state = SPIKE_ORDER_RESERVED;
    r.o.created_at = now - 86400000;
    r.o.expires_at = r.o.created_at + (int64_t)PAY_TIMEOUT_S * 1000;
    r.prev = last[u];
    r.rseq = seq + 1;
    last[u] = r.o.id;
    check(store_put_order_change(txn, &r, 1, ++seq, SPIKE_CHANGE_ORDER_RESERVED, r.o.created_at),
          "store_put_order_change");
    r.o.state = SPIKE_ORDER_CANCELLED;
    r.o.cancelled_at = r.o.created_at + 1000;
    check(store_put_order_change(txn, &r, 0, ++seq, SPIKE_CHANGE_ORDER_CANCELLED,
                                 r.o.cancelled_at),
          "store_put_order_change");
    if ((i + 1) % 65536 == 0 || i + 1 == n) {
      check(store_put_meta(txn, "id_hwm", id), "store_put_meta");
      check(store_write_commit(txn, 1), "store_write_commit");
      if (i + 1 < n) check(store_write_begin(txn), "store_write_begin");
    }
  }
  check(store_sync(st), "store_sync");
  free(last);
  store_txn_free(txn);
  store_close(st);
  char path[PATH_MAX + 16];
  snprintf(path, sizeof(path), "%s/data.mdb", dir);
  struct stat sb;
  return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* cp from/data.mdb to/data.mdb */
static void preload_copy(const char *from, const char *to) {
  char a[PATH_MAX + 16], b[PATH_MAX + 16];
  snprintf(a, sizeof(a), "%s/data.mdb", from);
  snprintf(b, sizeof(b), "%s/data.mdb", to);
  if (mkdir(to, 0755) != 0 && errno != EEXIST) die("mkdir", strerror(errno));
  FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
  if (in == NULL || out == NULL) die("copying the preloaded store", strerror(errno));
  static char buf[1 << 20];
  size_t k;
  while ((k = fread(buf, 1, sizeof(buf), in)) > 0)
    if (fwrite(buf, 1, k, out) != k) die("copying the preloaded store", strerror(errno));
  fclose(in);
  if (fclose(out) != 0) die("copying the preloaded store", strerror(errno));
}

/* --preload: the engine on a fresh store and on one holding n orders,
 * alternately; medians and their ratio per batch size. */
static int preload_main(const char *base, uint64_t n, int reps, double seconds, uint64_t cap,
                        int prefault, uint32_t inflight_opt, uint32_t only_batch) {
  char tmpl[PATH_MAX];
  snprintf(tmpl, sizeof(tmpl), "%s/preload", base);
  if (mkdir(tmpl, 0755) != 0) die("mkdir", strerror(errno));
  uint64_t t0 = now_ns();
  uint64_t bytes = preload_build(tmpl, n);
  printf("bench_writer: a store of %llu orders by %llu users: %.1f s to write, %.0f MiB\n",
         (unsigned long long)n, (unsigned long long)(n / PRELOAD_PER_USER),
         (double)(now_ns() - t0) / 1e9, (double)bytes / 1048576.0);
  fflush(stdout);
  uint32_t sizes[2] = {256, 4096};
  size_t nb = 2;
  if (only_batch != 0) {
    sizes[0] = only_batch;
    nb = 1;
  }
  for (size_t b = 0; b < nb; b++) {
    double fresh[REPS_MAX], full[REPS_MAX], opens[REPS_MAX];
    for (int r = 0; r < reps; r++) {
      char path[PATH_MAX];
      result rf, rp;
      snprintf(path, sizeof(path), "%s/fresh-%u-%d", base, sizes[b], r);
      engine_once(path, sizes[b], seconds, cap, prefault, inflight_opt, 0, &rf);
      snprintf(path, sizeof(path), "%s/full-%u-%d", base, sizes[b], r);
      preload_copy(tmpl, path);
      engine_once(path, sizes[b], seconds, cap, prefault, inflight_opt, bytes * 2, &rp);
      fresh[r] = rf.rate;
      full[r] = rp.rate;
      opens[r] = rp.open_s;
      printf("batch %4u run %d: fresh store %10.0f orders/s (writer %.2f us/order); store of %llu "
             "orders %10.0f orders/s (writer %.2f us/order, commit %.2f ms, open %.1f s); "
             "ratio %.3f\n",
             sizes[b], r + 1, rf.rate, rf.cpu_us, (unsigned long long)n, rp.rate, rp.cpu_us,
             rp.commit_ms_avg, rp.open_s, rp.rate / rf.rate);
      fflush(stdout);
    }
    double mf = median(fresh, reps), mp = median(full, reps);
    printf("batch %4u: fresh store %.0f durable orders/s, store of %llu orders %.0f (medians of "
           "%d); ratio %.3f; open of the full store %.1f s\n",
           sizes[b], mf, (unsigned long long)n, mp, reps, mp / mf, median(opens, reps));
    printf("summary\twriter durable, batch %u, store of %llu orders\t%.0f orders/s\t%.0f "
           "orders/s (fresh store)\t%.3f\n",
           sizes[b], (unsigned long long)n, mp, mf, mp / mf);
    fflush(stdout);
  }
  rmrf(base);
  return 0;
}

/* ---- main ------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f, "usage: bench_writer [--reps N] [--seconds S] [--orders N] [--inflight N]\n"
             "                    [--batch B] [--cold] [--users random|seq] [--preload N]\n"
             "                    [--store-only OUT] [--engines N] [DIR]\n"
             "  Durable orders/s through the engine (ack=durable, one producer keeping\n"
             "  reserves in flight, see --inflight) against a raw one-thread LMDB loop\n"
             "  writing the same records with fsync'd commits, for batch sizes 1, 16,\n"
             "  256 and 4096.\n"
             "  DIR          where the data directories go; must be a real disk (default\n"
             "               $TMPDIR or /tmp)\n"
             "  --reps N     engine/reference pairs per batch size, 1..15; medians reported\n"
             "               (default 3)\n"
             "  --seconds S  length of one run, (0, 60] (default 1.0; batch size 1 runs\n"
             "               half as long)\n"
             "  --orders N   at most this many orders per run, 8192..2^28 (default\n"
             "               2097152); the engine's tables are sized from it\n"
             "  --inflight N most reserves in flight, 1 or more (default: max(64, 4 x\n"
             "               batch)), at most ring_size = max(8192, 2 x batch)\n"
             "  --batch B    run only this batch size (1..65536); no goal lines\n"
             "  --cold       leave the engine's buyer table untouched before the run (by\n"
             "               default its pages are faulted in first: steady state)\n"
             "  --users U    random (default: a crowd, ids in no order) or seq (1, 2, 3...)\n"
             "  --preload N  instead of the raw reference, run the engine on a fresh store\n"
             "               and on one already holding N orders, 1..2^28 (reserved, then\n"
             "               cancelled, by N/10 users; built once, copied per run),\n"
             "               alternately\n"
             "  --store-only OUT  with --preload N: only build that store, in the new\n"
             "               directory OUT, and keep it (for bench/backup.sh)\n"
             "  --engines N  N engines at once, 1..64, each its own store, writer and\n"
             "               producer thread, against N reference loops at once: rates\n"
             "               summed, writer CPU per order over all (default 1; not with\n"
             "               --preload). A store split N ways with nothing between the\n"
             "               parts: the most a partitioned store could give\n"
             "Output: one line per run, one line per batch size, the goals, then\n"
             "  summary<TAB>what<TAB>value<TAB>reference<TAB>ratio\n");
}

int main(int argc, char **argv) {
  int reps = 3, prefault = 1;
  uint32_t inflight_opt = 0, only_batch = 0;
  double seconds = 1.0;
  uint64_t cap = 1u << 21, preload = 0;
  const char *store_only = NULL;
  const char *dir = getenv("TMPDIR");
  if (dir == NULL || dir[0] == '\0') dir = "/tmp";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--reps") == 0) {
      reps = (int)bench_arg_u64(argc, argv, &i, 1, REPS_MAX);
    } else if (strcmp(argv[i], "--seconds") == 0) {
      seconds = bench_arg_double(argc, argv, &i, 0, SECONDS_MAX);
    } else if (strcmp(argv[i], "--orders") == 0) {
      cap = bench_arg_u64(argc, argv, &i, ORDERS_MIN, ORDERS_MAX);
    } else if (strcmp(argv[i], "--inflight") == 0) {
      inflight_opt = (uint32_t)bench_arg_u64(argc, argv, &i, 1, UINT32_MAX);
    } else if (strcmp(argv[i], "--batch") == 0) {
      only_batch = (uint32_t)bench_arg_u64(argc, argv, &i, 1, BATCH_MAX);
    } else if (strcmp(argv[i], "--users") == 0) {
      const char *u = bench_arg(argc, argv, &i);
      if (strcmp(u, "random") != 0 && strcmp(u, "seq") != 0) {
        fprintf(stderr, "bench_writer: --users: \"%s\" is not random or seq\n", u);
        return 2;
      }
      random_users = strcmp(u, "seq") != 0;
    } else if (strcmp(argv[i], "--cold") == 0) {
      prefault = 0;
    } else if (strcmp(argv[i], "--preload") == 0) {
      preload = bench_arg_u64(argc, argv, &i, 1, ORDERS_MAX);
    } else if (strcmp(argv[i], "--engines") == 0) {
      nengines = (uint32_t)bench_arg_u64(argc, argv, &i, 1, ENGINES_MAX);
    } else if (strcmp(argv[i], "--store-only") == 0) {
      store_only = bench_arg(argc, argv, &i);
    } else if (argv[i][0] != '-') {
      dir = argv[i];
    } else {
      fprintf(stderr, "bench_writer: unknown flag \"%s\"\n", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  if (nengines > 1 && preload > 0) {
    fprintf(stderr, "bench_writer: --engines is not for --preload runs\n");
    return 2;
  }
  if (store_only != NULL) {
    if (preload == 0 || mkdir(store_only, 0755) != 0) {
      fprintf(stderr, "bench_writer: --store-only needs --preload N and a new directory\n");
      return 2;
    }
    uint64_t t0 = now_ns(), bytes = preload_build(store_only, preload);
    printf("bench_writer: a store of %llu orders by %llu users in %s: %.1f s to write, %.0f MiB\n",
           (unsigned long long)preload, (unsigned long long)(preload / PRELOAD_PER_USER),
           store_only, (double)(now_ns() - t0) / 1e9, (double)bytes / 1048576.0);
    return 0;
  }
  char base[PATH_MAX - 64]; /* room for the runs' subdirectories */
  if ((size_t)snprintf(base, sizeof(base), "%s/spike-bench-writer-XXXXXX", dir) >= sizeof(base)) {
    fprintf(stderr, "bench_writer: DIR is too long\n");
    return 2;
  }
  if (mkdtemp(base) == NULL) {
    fprintf(stderr, "bench_writer: mkdtemp %s: %s\n", base, strerror(errno));
    return 1;
  }
  struct statfs sf;
  if (statfs(base, &sf) == 0 && sf.f_type == TMPFS_MAGIC_)
    fprintf(stderr, "bench_writer: warning: %s is on tmpfs; fsync costs nothing there\n", base);
  printf("bench_writer: %d engine/reference pairs per batch size, %.2f s per run (batch 1: "
         "%.2f s), up to %llu orders per run, buyer table %s, data under %s\n",
         reps, seconds, seconds / 2, (unsigned long long)cap, prefault ? "pre-faulted" : "cold",
         base);
  if (nengines > 1)
    printf("bench_writer: %u engines at once in every engine run, each its own store and "
           "writer, and %u reference loops at once in every reference run; rates summed\n",
           nengines, nengines);

  if (preload > 0) return preload_main(base, preload, reps, seconds, cap, prefault, inflight_opt,
                                      only_batch);
  size_t nbatch = NBATCH_ALL;
  if (only_batch != 0) {
    batches[0] = only_batch;
    nbatch = 1;
  }
  double eng[NBATCH_ALL][REPS_MAX], ref[NBATCH_ALL][REPS_MAX];
  double ecpu[REPS_MAX], rcpu[REPS_MAX];
  double em[NBATCH_ALL], rm[NBATCH_ALL];
  for (size_t b = 0; b < nbatch; b++) {
    uint32_t B = batches[b];
    double secs = B == 1 ? seconds / 2 : seconds; /* fsync-bound: fewer orders do */
    for (int r = 0; r < reps; r++) {
      char path[PATH_MAX];
      result re, rr;
      snprintf(path, sizeof(path), "%s/engine-%u-%d", base, B, r);
      run_n(1, path, B, secs, cap, prefault, inflight_opt, &re);
      snprintf(path, sizeof(path), "%s/ref-%u-%d", base, B, r);
      run_n(0, path, B, secs, cap, prefault, inflight_opt, &rr);
      eng[b][r] = re.rate;
      ref[b][r] = rr.rate;
      ecpu[r] = re.cpu_us;
      rcpu[r] = rr.cpu_us;
      printf("batch %4u run %d: engine %10.0f orders/s (%llu orders in %.2f s, %u in flight, "
             "%llu commits, %.1f orders per commit, commit %.2f ms, writer CPU %.2f us per "
             "order); reference %10.0f orders/s (%llu orders, %llu commits, commit %.2f ms, "
             "CPU %.2f us per order); ratio %.3f\n",
             B, r + 1, re.rate, (unsigned long long)re.orders, re.seconds, re.inflight,
             (unsigned long long)re.commits, re.batch_avg, re.commit_ms_avg, re.cpu_us, rr.rate,
             (unsigned long long)rr.orders, (unsigned long long)rr.commits, rr.commit_ms_avg,
             rr.cpu_us, re.rate / rr.rate);
      fflush(stdout);
    }
    em[b] = median(eng[b], reps);
    rm[b] = median(ref[b], reps);
    printf("batch %4u: engine %.0f durable orders/s, reference %.0f orders/s (medians of "
           "%d); ratio %.3f; CPU per order: writer thread %.2f us, reference %.2f us\n",
           B, em[b], rm[b], reps, em[b] / rm[b], median(ecpu, reps), median(rcpu, reps));
    fflush(stdout);
  }
  rmrf(base);

  if (only_batch == 0 && nengines == 1) { /* N engines are no one engine's goal */
    int ratio_met = 1;
    for (size_t b = 0; b < nbatch; b++)
      if (em[b] < GOAL_RATIO * rm[b]) ratio_met = 0;
    double at4096 = em[nbatch - 1];
    printf("goal: engine >= %.1f x reference at every batch size: %s\n", GOAL_RATIO,
           ratio_met ? "met" : "not met");
    printf("goal: >= 1,000,000 durable orders/s at batch 4096: %s (%.0f orders/s)\n",
           at4096 >= GOAL_RATE_4096 ? "met" : "not met", at4096);
  }
  char n[32] = "";
  if (nengines > 1) snprintf(n, sizeof(n), ", %u engines", nengines);
  for (size_t b = 0; b < nbatch; b++)
    printf("summary\twriter durable, batch %u%s\t%.0f orders/s\t%.0f orders/s (raw LMDB)\t%.3f\n",
           batches[b], n, em[b], rm[b], em[b] / rm[b]);
  return 0;
}

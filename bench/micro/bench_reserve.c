/*
 * bench_reserve.c -- spike_reserve() calls per second on one thread, memory
 * path only: ack=memory, no idempotency key, one event with stock
 * UINT32_MAX and a per-user limit of 1, a fresh user on every call.
 *
 * The engine's writer thread drains the ring and commits to LMDB at the
 * same time, as it would in service. When the writer falls behind, the
 * memory-ack bound (batch_max answered, uncommitted reserves) makes
 * reserves wait for their commit (SPIKE_PENDING: accepted, their op back
 * at the callback), and then the ring fills and spike_reserve returns
 * SPIKE_EBUSY (counted as retries, not as reserves). The time spent
 * waiting for either is measured so two rates come out: accepted reserves
 * per second of wall time (what the writer lets through) and per second of
 * time not spent waiting on the writer (what the calling thread itself
 * costs).
 *
 * Reference, in the same run: the parts of the loop body no reserve can
 * avoid, one XXH3_64bits of the user id and one uncontended atomic CAS on a
 * counter per call. The ratio says how far a reserve is from that floor.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "util.h"
#include "engine.h"
#include "spike.h"

#define REPS_MAX 15
#define SECONDS_MAX 60.0
#define CALLS_MIN 1024u
#define CALLS_MAX (1u << 29)
#define EVENT_ID 1000u
#define RING_SLOTS (1u << 16)
#define CLOCK_EVERY 256u /* calls between two looks at the clock */

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_reserve: %s: %s\n", what, spike_strerror(rc));
  exit(1);
}

static int op_done; /* set by flag_cb; one op waits at a time */

static void flag_cb(spike_op *op) {
  (void)op;
  op_done = 1;
}

/* Past the memory-ack bound (as many answered, uncommitted reserves as
 * batch_max) a reserve waits for its commit like a durable one: it returns
 * SPIKE_PENDING and its op stays the engine's until the callback. The loop
 * uses OPS ops in turn, and waits (as for a full ring) for one to come
 * back before it uses it again. */
#define OPS 8192u /* as many as spiked's default ring; a cold op per call would be measured too */
static spike_op *ops;
static unsigned char *op_out; /* 1 while ops[i] is in flight */

static void reserve_cb(spike_op *op) {
  if (op->status != SPIKE_OK) die("spike_reserve (completed)", op->status);
  op_out[op - ops] = 0;
}

static void wait_back(spike_producer *p, uint32_t i) {
  while (op_out[i]) {
    struct pollfd pfd = {spike_producer_fd(p), POLLIN, 0};
    poll(&pfd, 1, 100);
    spike_producer_drain(p);
  }
}

/* Submit-and-wait for an op that completes through the callback. */
static int wait_op(spike_producer *p, spike_op *op, int rc) {
  if (rc != SPIKE_PENDING) return rc;
  while (!op_done) {
    struct pollfd pfd = {spike_producer_fd(p), POLLIN, 0};
    poll(&pfd, 1, 100);
    spike_producer_drain(p);
  }
  return op->status;
}

typedef struct result {
  uint64_t accepted; /* reserves that returned SPIKE_OK or SPIKE_PENDING */
  uint64_t retries;  /* calls that returned SPIKE_EBUSY (ring full) */
  uint64_t total_ns; /* the whole loop */
  uint64_t busy_ns;  /* inside runs of SPIKE_EBUSY, or waiting for an op back */
  uint64_t pending;  /* reserves past the memory-ack bound (SPIKE_PENDING) */
  uint64_t commits, batch_sum;
} result;

static void reserve_once(const char *base, int rep, uint64_t cap, double seconds, int prefault,
                         result *res) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s/reserve-%d", base, rep);
  spike_config cfg;
  spike_config_init(&cfg);
  cfg.data_dir = dir;
  cfg.ack = SPIKE_ACK_MEMORY;
  cfg.ring_size = RING_SLOTS;
  cfg.max_events = 4;
  cfg.max_producers = 2;
  cfg.max_keys = 1u << 10;
  cfg.max_buyers = pow2_at_least(cap + cap / 3 + 1);
  cfg.max_reserved = (uint32_t)cap;
  /* Every accepted order is written to LMDB: order, buyer and feed records
   * come to a few hundred bytes; leave room for twice that. */
  cfg.map_size_bytes = cap * 1024 > (1ull << 30) ? cap * 1024 : 1ull << 30;
  spike_engine *e;
  int rc = spike_open(&e, &cfg);
  if (rc != SPIKE_OK) {
    fprintf(stderr, "bench_reserve: spike_open %s: %s\n", dir, spike_open_error());
    exit(1);
  }
  spike_producer *p;
  if ((rc = spike_producer_open(e, &p)) != SPIKE_OK) die("spike_producer_open", rc);
  spike_event_spec s;
  memset(&s, 0, sizeof(s));
  s.id = EVENT_ID;
  s.name = "bench sale";
  s.name_len = strlen(s.name);
  s.stock = UINT32_MAX;
  s.price = 1999;
  s.start_at = wall_ms() - 60000;
  s.end_at = wall_ms() + 3600000;
  s.per_user_limit = 1;
  s.pay_timeout_s = 900;
  spike_op op;
  op_done = 0;
  if ((rc = wait_op(p, &op, spike_event_create(p, &op, &s, flag_cb))) != SPIKE_OK)
    die("spike_event_create", rc);

  if (prefault) {
    /* The buyer table comes from calloc: untouched, each fresh user's entry
     * costs a zero-page fault and then a copy-on-write fault with a TLB
     * shootdown. A long-running engine has touched every page; write them
     * once (nothing else uses the table yet) to measure that steady state. */
    memset(e->buyers.e, 0, (size_t)lim_capacity(&e->buyers) * sizeof(lim_entry));
  }
  memset(res, 0, sizeof(*res));
  uint64_t limit_ns = (uint64_t)(seconds * 1e9);
  uint64_t user = 1, busy_ns = 0, retries = 0, pending = 0;
  uint64_t t0 = now_ns(), t = t0;
  while (user <= cap) {
    uint32_t i = (uint32_t)(user % OPS);
    if (op_out[i]) {
      uint64_t b0 = now_ns();
      wait_back(p, i);
      busy_ns += now_ns() - b0;
    }
    spike_op *o = &ops[i];
    rc = spike_reserve(p, o, EVENT_ID, user, 1, NULL, 0, reserve_cb);
    if (rc == SPIKE_EBUSY) {
      if (o->detail == NULL || strcmp(o->detail, "commit queue full") != 0)
        die(o->detail != NULL ? o->detail : "spike_reserve", rc);
      uint64_t b0 = now_ns();
      do {
        retries++;
        cpu_relax();
        spike_producer_drain(p);
        rc = spike_reserve(p, o, EVENT_ID, user, 1, NULL, 0, reserve_cb);
      } while (rc == SPIKE_EBUSY);
      busy_ns += now_ns() - b0;
    }
    if (rc == SPIKE_PENDING) {
      op_out[i] = 1;
      pending++;
    } else if (rc != SPIKE_OK) {
      die("spike_reserve", rc);
    }
    if (user++ % CLOCK_EVERY == 0) {
      spike_producer_drain(p);
      if ((t = now_ns()) - t0 >= limit_ns) break;
    }
  }
  t = now_ns();
  res->accepted = user - 1;
  res->retries = retries;
  res->total_ns = t - t0;
  res->busy_ns = busy_ns;
  res->pending = pending;
  for (uint32_t i = 0; i < OPS; i++) wait_back(p, i); /* every op back before the close */

  if ((rc = spike_producer_close(p)) != SPIKE_OK) die("spike_producer_close", rc);
  spike_stats st;
  spike_stats_get(e, &st);
  res->commits = st.commits_total;
  res->batch_sum = st.batch_size_sum;
  if ((rc = spike_close(e)) != SPIKE_OK) die("spike_close", rc);
  rmrf(dir);
}

/* Calls per second of the floor: one hash of the user id, one CAS. */
static double reference_once(uint64_t calls) {
  static _Atomic uint64_t counter;
  uint64_t sink = 0;
  uint64_t t0 = now_ns();
  for (uint64_t user = 1; user <= calls; user++) {
    sink ^= XXH3_64bits(&user, sizeof(user));
    /* relaxed load, acq_rel CAS: the orders slab_take uses on the event's
     * counter word; this counter publishes nothing, it stands in for it. */
    uint64_t cur = atomic_load_explicit(&counter, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&counter, &cur, cur + 1, memory_order_acq_rel,
                                                  memory_order_relaxed)) {
    }
  }
  uint64_t ns = now_ns() - t0;
  __asm__ __volatile__("" : : "r"(sink)); /* the hashes are used */
  return (double)calls / ((double)ns / 1e9);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_reserve [--reps N] [--seconds S] [--calls N] [--dir DIR]\n"
          "  spike_reserve() calls per second on one thread with ack=memory, one\n"
          "  event (stock UINT32_MAX, limit 1), a fresh user per call, no key; the\n"
          "  writer drains the %u-slot ring concurrently. Reference: one XXH3_64bits\n"
          "  of the user id plus one uncontended atomic CAS per call.\n"
          "  --reps N      runs, 1..15, each on a fresh engine with its buyer table\n"
          "                pre-faulted (steady state); medians reported (default 3). One\n"
          "                more run on a cold (untouched) table follows and is reported\n"
          "                apart\n"
          "  --seconds S   length of one run, (0, 60] (default 0.7)\n"
          "  --calls N     at most this many reserves per run, 1024..2^29 (default\n"
          "                1048576); the tables are sized from it\n"
          "  --dir DIR     where the data directories go (default $TMPDIR or /tmp)\n"
          "Output: one line per run, then summary lines:\n"
          "  summary<TAB>what<TAB>value<TAB>reference<TAB>ratio\n",
          RING_SLOTS);
}

int main(int argc, char **argv) {
  int reps = 3;
  double seconds = 0.7;
  uint64_t cap = 1u << 20;
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
    } else if (strcmp(argv[i], "--calls") == 0) {
      cap = bench_arg_u64(argc, argv, &i, CALLS_MIN, CALLS_MAX);
    } else if (strcmp(argv[i], "--dir") == 0) {
      dir = bench_arg(argc, argv, &i);
    } else {
      fprintf(stderr, "bench_reserve: %s \"%s\"\n",
              argv[i][0] == '-' ? "unknown flag" : "unexpected argument", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  char base[PATH_MAX - 64]; /* room for the run's subdirectory */
  if ((size_t)snprintf(base, sizeof(base), "%s/spike-bench-reserve-XXXXXX", dir) >= sizeof(base)) {
    fprintf(stderr, "bench_reserve: --dir is too long\n");
    return 2;
  }
  if (mkdtemp(base) == NULL) {
    fprintf(stderr, "bench_reserve: mkdtemp %s: %s\n", base, strerror(errno));
    return 1;
  }
  ops = calloc(OPS, sizeof(*ops));
  op_out = calloc(OPS, 1);
  if (ops == NULL || op_out == NULL) {
    fprintf(stderr, "bench_reserve: out of memory\n");
    return 1;
  }
  printf("bench_reserve: ack=memory, ring %u slots, up to %llu calls or %.2f s per run, "
         "%d runs, data under %s\n",
         RING_SLOTS, (unsigned long long)cap, seconds, reps, base);

  /* reps runs on pre-faulted tables (steady state), then one cold run. */
  double wall[REPS_MAX + 1], own[REPS_MAX + 1], ref[REPS_MAX + 1];
  for (int r = 0; r <= reps; r++) {
    int cold = r == reps;
    result res;
    reserve_once(base, r, cap, seconds, !cold, &res);
    double s = (double)res.total_ns / 1e9;
    double s_own = (double)(res.total_ns - res.busy_ns) / 1e9;
    wall[r] = (double)res.accepted / s;
    own[r] = s_own > 0 ? (double)res.accepted / s_own : 0;
    ref[r] = reference_once(res.accepted > 4000000 ? res.accepted : 4000000);
    printf("%s run%s%.0d: %llu reserves in %.3f s = %.3f M reserves/s (%llu past the "
           "memory-ack bound, answered at their commit); %llu EBUSY retries "
           "(waiting on the writer %.1f%% of the time); %.3f M reserves/s outside those waits "
           "(%.0f ns per reserve); writer: %llu commits, %.0f orders per batch; "
           "reference hash+CAS %.2f M calls/s (%.1f ns per call)\n",
           cold ? "cold-table" : "warm-table", cold ? "" : " ", cold ? 0 : r + 1,
           (unsigned long long)res.accepted, s, wall[r] / 1e6, (unsigned long long)res.pending,
           (unsigned long long)res.retries,
           100.0 * (double)res.busy_ns / (double)res.total_ns, own[r] / 1e6,
           own[r] > 0 ? 1e9 / own[r] : 0, (unsigned long long)res.commits,
           res.commits ? (double)res.batch_sum / (double)res.commits : 0.0, ref[r] / 1e6,
           1e9 / ref[r]);
  }
  rmrf(base);
  double cw = wall[reps], cf = ref[reps];
  double w = median(wall, reps), o = median(own, reps), f = median(ref, reps);
  printf("reserve: %.3f M reserves/s (median of %d, wall clock); %.3f M reserves/s outside "
         "waits on the writer; reference hash+CAS %.2f M calls/s; ratio %.4f (wall), %.4f "
         "(outside waits)\n",
         w / 1e6, reps, o / 1e6, f / 1e6, w / f, o / f);
  printf("reserve, cold buyer table (first touch of each page): %.3f M reserves/s; ratio "
         "%.4f\n",
         cw / 1e6, cw / cf);
  printf("summary\treserve ack=memory, 1 thread (wall)\t%.3f M calls/s\t%.2f M calls/s "
         "(hash+CAS)\t%.4f\n",
         w / 1e6, f / 1e6, w / f);
  printf("summary\treserve ack=memory, excl. waits on the writer\t%.3f M calls/s\t%.2f M "
         "calls/s (hash+CAS)\t%.4f\n",
         o / 1e6, f / 1e6, o / f);
  printf("summary\treserve ack=memory, cold buyer table\t%.3f M calls/s\t%.2f M calls/s "
         "(hash+CAS)\t%.4f\n",
         cw / 1e6, cf / 1e6, cw / cf);
  return 0;
}

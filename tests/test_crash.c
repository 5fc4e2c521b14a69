/*
 * test_crash.c -- durability across kill -9 (I5) and the invariants after
 * every restart (I1-I3).
 *
 * A child process embeds the engine and works under load, writing one line
 * per durable acknowledgement to a pipe. The parent SIGKILLs it at a random
 * moment, reopens the store itself (recovery refuses to open if any event's
 * counters disagree with its orders) and checks that every acknowledged
 * change is on disk, that no user holds more than the limit, and that the
 * feed holds exactly one record per change, in order. Repeated for many
 * cycles on the same store.
 *
 *   SPIKE_CRASH_CYCLES=N   cycles per case (default 20; make soak-crash: 1,000)
 *   SPIKE_CRASH_SEGMENT=N  start from an empty store every N cycles (default
 *                          50), so every check reads a bounded store
 *   SPIKE_CRASH_RUN_MS=N   every life runs N ms (default: 30 to 330 at random)
 *   SPIKE_POWERLOSS=1      with LD_PRELOAD=build/rel/tests/libpowerloss.so:
 *                          every kill is a power cut. The shim keeps the data
 *                          file as the disk would hold it (unsynced writes
 *                          dropped), and the parent puts that image in place
 *                          before it reopens and checks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine_util.h"
#include "schema.h"

#define EVENT_ID 501
#define STOCK 1000000
#define LIMIT 3

typedef struct ack {
  char kind; /* 'R' reserved, 'P' paid, 'C' cancelled; 'L' lost (ack=memory) */
  uint64_t order, user;
  uint32_t qty;
  int life; /* the cycle that heard it */
} ack;

static ack *acks;
static uint32_t nacks, cap_acks;
static int life; /* the current cycle */
static uint64_t lost_total, lost_most;

/* ---- the child ---------------------------------------------------------- */

typedef struct child {
  spike_producer *p;
  int fd;
  uint64_t next_user;
  uint64_t rng;
  int pay_share; /* 0: reserve only */
  uint64_t recent[64];
  uint32_t nrecent;
} child;

typedef struct creq {
  spike_op op;
  child *c;
  char kind; /* 'R' reserve, 'O' pay or cancel */
  int busy;
} creq;

static void emit(child *c, char kind, const spike_order *o) {
  char line[96];
  int n = snprintf(line, sizeof(line), "%c %llu %llu %u\n", kind, (unsigned long long)o->id,
                   (unsigned long long)o->user_id, o->qty);
  /* one write per line, < PIPE_BUF: atomic, and on its way before we die */
  if (write(c->fd, line, (size_t)n) != n) _exit(3);
}

static void child_done(spike_op *op) {
  creq *r = (creq *)op;
  child *c = r->c;
  r->busy = 0;
  if (op->status != SPIKE_OK || op->replayed) return;
  if (r->kind == 'R') {
    emit(c, 'R', &op->r.order);
    c->recent[c->nrecent++ % 64] = op->r.order.id;
  } else if (op->r.order.state == SPIKE_ORDER_PAID) {
    emit(c, 'P', &op->r.order);
  } else if (op->r.order.state == SPIKE_ORDER_CANCELLED) {
    emit(c, 'C', &op->r.order);
  }
}

static void child_main(const spike_config *cfg, int fd, uint64_t seed, uint64_t user_base,
                       int pay_share) {
  spike_engine *e = open_engine((spike_config *)cfg);
  child c = {.fd = fd, .next_user = user_base, .rng = seed, .pay_share = pay_share};
  CHECK_EQ(spike_producer_open(e, &c.p), SPIKE_OK);
  spike_event ev;
  if (spike_event_get(e, EVENT_ID, &ev) != SPIKE_OK) {
    spike_event_spec s = spec_default(EVENT_ID, STOCK);
    s.per_user_limit = LIMIT;
    s.pay_timeout_s = pay_share ? 1 : 900; /* with pay: expiries race the kills too */
    CHECK_EQ(create_event(c.p, &s), SPIKE_OK);
  }
  /* serving: the parent's clock starts now (see one_life) */
  if (write(c.fd, "S\n", 2) != 2) _exit(3);
  static creq reqs[128];
  for (;;) {
    for (int i = 0; i < 128; i++) {
      creq *r = &reqs[i];
      if (r->busy) continue;
      r->c = &c;
      uint64_t x = test_rand(&c.rng);
      int rc;
      if (c.pay_share && c.nrecent > 0 && (x % 100) < (uint64_t)c.pay_share) {
        uint64_t id = c.recent[(x >> 8) % (c.nrecent < 64 ? c.nrecent : 64)];
        r->kind = 'O';
        if (x & 0x10000)
          rc = spike_pay(c.p, &r->op, id, 0, "crash-pay", 9, child_done);
        else
          rc = spike_cancel(c.p, &r->op, id, 0, child_done);
      } else {
        /* users repeat a little, so limits matter */
        uint64_t user = c.next_user + (x >> 40) % 64;
        if ((x & 3) == 0) c.next_user++;
        r->kind = 'R';
        rc = spike_reserve(c.p, &r->op, EVENT_ID, user, 1 + (uint32_t)((x >> 20) & 1), NULL, 0,
                           child_done);
      }
      if (rc == SPIKE_PENDING) r->busy = 1;
      if (rc == SPIKE_OK && r->kind == 'R') { /* ack=memory: answered now */
        emit(&c, 'R', &r->op.r.order);
        c.recent[c.nrecent++ % 64] = r->op.r.order.id;
      }
    }
    struct pollfd pfd = {spike_producer_fd(c.p), POLLIN, 0};
    poll(&pfd, 1, 10);
    spike_producer_drain(c.p);
  }
}

/* ---- the parent --------------------------------------------------------- */

/* Returns 1 when the child said it is serving. */
static int parse_acks(char *buf, size_t *len) {
  char *start = buf, *nl;
  int serving = 0;
  while ((nl = memchr(start, '\n', (size_t)(buf + *len - start))) != NULL) {
    *nl = '\0';
    if (strcmp(start, "S") == 0) serving = 1;
    ack a;
    unsigned long long o, u;
    if (sscanf(start, "%c %llu %llu %u", &a.kind, &o, &u, &a.qty) == 4) {
      a.order = o;
      a.user = u;
      a.life = life;
      if (nacks == cap_acks) {
        cap_acks = cap_acks ? cap_acks * 2 : 65536;
        acks = realloc(acks, sizeof(*acks) * cap_acks);
        CHECK(acks != NULL);
      }
      acks[nacks++] = a;
    }
    start = nl + 1;
  }
  *len = (size_t)(buf + *len - start);
  memmove(buf, start, *len);
  return serving;
}

static int power_loss(void) {
  const char *v = getenv("SPIKE_POWERLOSS");
  if (v == NULL || strcmp(v, "1") != 0) return 0;
  if (dlsym(RTLD_DEFAULT, "spike_powerloss_reset") == NULL) {
    fprintf(stderr, "SPIKE_POWERLOSS=1 needs LD_PRELOAD=build/rel/tests/libpowerloss.so\n");
    abort();
  }
  return 1;
}

/* Run the child, kill it, collect every ack it wrote. The kill comes
 * run_ms after the child says it serves, or, with early set, run_ms after
 * the fork, which may be during its open and recovery: on a loaded machine
 * an open alone can take longer than a short life, and lives that never
 * serve would check nothing. */
static void one_life(const spike_config *cfg, uint64_t seed, uint64_t user_base, int pay_share,
                     int run_ms, int early) {
  int pfd[2];
  CHECK_EQ(pipe(pfd), 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    close(pfd[0]);
    void *reset = dlsym(RTLD_DEFAULT, "spike_powerloss_reset");
    if (reset != NULL) {
      void (*fn)(void);
      memcpy(&fn, &reset, sizeof(fn)); /* object to function pointer, per POSIX */
      fn();
    }
    child_main(cfg, pfd[1], seed, user_base, pay_share);
    _exit(0);
  }
  close(pfd[1]);
  fcntl(pfd[0], F_SETFL, O_NONBLOCK);
  static char buf[1 << 16];
  size_t len = 0;
  /* a bound on the wait for "serving" too, so a hung open is a failure */
  int64_t kill_at = test_now_ms() + (early ? run_ms : 60000);
  int killed = 0, serving = 0;
  for (;;) {
    if (!killed && !early && !serving && test_now_ms() >= kill_at) {
      fprintf(stderr, "the child did not serve within 60 s\n");
      abort();
    }
    if (!killed && test_now_ms() >= kill_at) {
      kill(pid, SIGKILL);
      killed = 1;
    }
    struct pollfd p = {pfd[0], POLLIN, 0};
    poll(&p, 1, 5);
    ssize_t n = read(pfd[0], buf + len, sizeof(buf) - len);
    if (n > 0) {
      len += (size_t)n;
      if (parse_acks(buf, &len) && !serving) {
        serving = 1;
        if (!early) kill_at = test_now_ms() + run_ms;
      }
    } else if (n == 0) {
      break; /* the child is gone and the pipe is drained */
    } else if (errno != EAGAIN && errno != EINTR) {
      break;
    }
  }
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  close(pfd[0]);
  if (power_loss()) {
    /* The cut: the disk holds what was synced, nothing written after. */
    char img[600], data[600];
    snprintf(img, sizeof(img), "%s/data.mdb.durable", cfg->data_dir);
    snprintf(data, sizeof(data), "%s/data.mdb", cfg->data_dir);
    /* No image: killed before it opened the store, which is as it was. */
    CHECK(rename(img, data) == 0 || errno == ENOENT);
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/*
 * The store as the crash left it, read in one transaction: the event record
 * balances (I1, I2) and equals the sums over its orders, and the feed runs
 * 1..N without a gap and replays to the same counters -- one record per
 * change, none missing, none twice.
 */
typedef struct disk_sums {
  uint64_t reserved, sold;
} disk_sums;

static int sum_order(void *arg, const order_rec *r) {
  disk_sums *d = arg;
  const spike_order *o = &r->o;
  if (o->state == SPIKE_ORDER_RESERVED) d->reserved += o->qty;
  if (o->state == SPIKE_ORDER_PAID) d->sold += o->qty;
  return 0;
}

static void disk_check(const spike_config *cfg) {
  store *st;
  char err[256];
  CHECK_EQ(store_open(&st, cfg->data_dir, cfg->map_size_bytes, 16, err, sizeof(err)), 0);
  store_txn *t = store_txn_new(st);
  CHECK(t != NULL);
  CHECK_EQ(store_read_begin(t), 0);
  spike_event ev;
  int rc = store_get_event(t, EVENT_ID, 0, &ev, NULL);
  if (rc == STORE_NOTFOUND) goto out; /* killed before the event committed */
  CHECK_EQ(rc, 0);
  CHECK(ev.reserved + ev.sold <= ev.stock_total);                 /* I1 */
  CHECK_EQ(ev.available + ev.reserved + ev.sold, ev.stock_total); /* I2 */
  disk_sums d = {0, 0};
  CHECK_EQ(store_each_order(t, sum_order, &d), 0);
  CHECK_EQ(d.reserved, ev.reserved);
  CHECK_EQ(d.sold, ev.sold);
  uint64_t expect = 1, f_reserved = 0, f_sold = 0, after = 0;
  static spike_change ch[256];
  for (;;) {
    uint32_t n;
    uint64_t next;
    CHECK_EQ(store_feed_read(t, after, UINT64_MAX, ch, 256, &n, &next), 0);
    if (n == 0) break;
    for (uint32_t i = 0; i < n; i++) {
      CHECK_EQ(ch[i].seq, expect++);
      const spike_order *o = &ch[i].u.order;
      switch (ch[i].type) {
      case SPIKE_CHANGE_ORDER_RESERVED: f_reserved += o->qty; break;
      case SPIKE_CHANGE_ORDER_PAID: f_reserved -= o->qty, f_sold += o->qty; break;
      case SPIKE_CHANGE_ORDER_CANCELLED:
      case SPIKE_CHANGE_ORDER_EXPIRED: f_reserved -= o->qty; break;
      default: break;
      }
    }
    after = next;
  }
  CHECK_EQ(f_reserved, ev.reserved);
  CHECK_EQ(f_sold, ev.sold);
out:
  store_txn_free(t);
  store_close(st);
}

/* Everything acknowledged is there and the invariants hold, after recovery
 * (which itself refuses to open a store whose counters disagree). */
static void verify(const spike_config *cfg) {
  spike_engine *e = open_engine((spike_config *)cfg); /* recovery cross-checks */
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event ev;
  int rc = spike_event_get(e, EVENT_ID, &ev);
  if (rc == SPIKE_ENOEVENT && nacks == 0) {
    /* killed before the event committed (a loaded machine): nothing to see */
    CHECK_EQ(spike_producer_close(p), SPIKE_OK);
    CHECK_EQ(spike_close(e), SPIKE_OK);
    return;
  }
  CHECK_EQ(rc, SPIKE_OK);
  CHECK(ev.reserved + ev.sold <= ev.stock_total);                 /* I1 */
  CHECK_EQ(ev.available + ev.reserved + ev.sold, ev.stock_total); /* I2 */
  uint64_t *ids = malloc(sizeof(uint64_t) * (nacks + 1));
  uint32_t nids = 0, lost = 0;
  for (uint32_t i = 0; i < nacks; i++) {
    spike_order o;
    if (acks[i].kind == 'L') {
      ids[nids++] = acks[i].order; /* lost, but its id must never come back */
      continue;
    }
    rc = spike_order_get(p, acks[i].order, &o);
    if (rc == SPIKE_ENOORDER && cfg->ack == SPIKE_ACK_MEMORY && acks[i].kind == 'R' &&
        acks[i].life == life) {
      /* answered before its commit, and the crash came first: within the
       * bound, and gone for good (never there in a later life either) */
      acks[i].kind = 'L';
      ids[nids++] = acks[i].order;
      lost++;
      continue;
    }
    CHECK_EQ(rc, SPIKE_OK); /* I5 */
    CHECK_EQ(o.user_id, acks[i].user);
    CHECK_EQ(o.qty, acks[i].qty);
    if (acks[i].kind == 'R') ids[nids++] = acks[i].order;
    if (acks[i].kind == 'P') CHECK_EQ(o.state, SPIKE_ORDER_PAID);
    if (acks[i].kind == 'C') CHECK_EQ(o.state, SPIKE_ORDER_CANCELLED);
    /* I3 for every user we heard of */
    static spike_order list[64];
    uint32_t n;
    CHECK_EQ(spike_user_orders(p, o.user_id, EVENT_ID, 0, list, 64, &n, NULL), SPIKE_OK);
    uint32_t held = 0;
    for (uint32_t j = 0; j < n; j++)
      if (list[j].state == SPIKE_ORDER_RESERVED || list[j].state == SPIKE_ORDER_PAID)
        held += list[j].qty;
    CHECK(held <= LIMIT);
  }
  /* ack=memory: a crash loses at most batch_max answered reserves */
  CHECK(lost <= cfg->batch_max);
  lost_total += lost;
  if (lost > lost_most) lost_most = lost;
  /* ids are never reused, across all the restarts */
  qsort(ids, nids, sizeof(uint64_t), cmp_u64);
  for (uint32_t i = 1; i < nids; i++)
    CHECK(ids[i] != ids[i - 1]);
  free(ids);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
}

static void run_cycles(const char *tag, int pay_share, spike_ack mode) {
  uint64_t seed = test_seed();
  int cycles = 20, segment = 50;
  const char *env = getenv("SPIKE_CRASH_CYCLES");
  if (env != NULL) cycles = atoi(env);
  if ((env = getenv("SPIKE_CRASH_SEGMENT")) != NULL && atoi(env) > 0) segment = atoi(env);
  spike_config cfg;
  small_config(&cfg, tag);
  cfg.max_buyers = 1u << 20;
  cfg.max_reserved = 1u << 20;
  cfg.ring_size = 256;
  cfg.ack = mode;
  if (mode == SPIKE_ACK_MEMORY) cfg.batch_max = 64; /* the loss bound under test */
  nacks = 0;
  lost_total = lost_most = 0;
  uint64_t rng = seed, heard = 0;
  uint32_t before = 0;
  for (int i = 0; i < cycles; i++) {
    if (i > 0 && i % segment == 0) { /* a fresh store: checks stay bounded */
      test_rmrf(cfg.data_dir);
      nacks = before = 0;
    }
    life = i;
    int run_ms = 30 + (int)(test_rand(&rng) % 300);
    if ((env = getenv("SPIKE_CRASH_RUN_MS")) != NULL && atoi(env) > 0) run_ms = atoi(env);
    int early = test_rand(&rng) % 4 == 0; /* one life in four may die opening */
    one_life(&cfg, test_rand(&rng), (uint64_t)(i + 1) * 10000000u, pay_share, run_ms, early);
    disk_check(&cfg); /* as the crash left it */
    verify(&cfg);
    disk_check(&cfg); /* after recovery and its expiries */
    if (cycles <= 50 || (i + 1) % 50 == 0)
      printf("  cycle %d: killed %d ms after %s, %u acks (%u in this store)\n", i + 1, run_ms,
             early ? "its start" : "it served", nacks - before, nacks);
    heard += nacks - before;
    before = nacks;
  }
  printf("  %d kills, %llu answers checked", cycles, (unsigned long long)heard);
  if (mode == SPIKE_ACK_MEMORY)
    printf("; answered before commit and lost: %llu in all, at most %llu in one crash (bound %u)",
           (unsigned long long)lost_total, (unsigned long long)lost_most, cfg.batch_max);
  printf("\n");
  CHECK(heard > 0);
  test_rmrf(cfg.data_dir);
}

static void kill9_reserve(void) { run_cycles("crash", 0, SPIKE_ACK_DURABLE); }

static void kill9_pay_cancel_expire(void) { run_cycles("crash-pay", 30, SPIKE_ACK_DURABLE); }

/* ack=memory: reserves answered before their commit; a crash may take at
 * most batch_max of them, pays and cancels none. */
static void kill9_memory_ack(void) { run_cycles("crash-mem", 30, SPIKE_ACK_MEMORY); }

TEST_LIST({"kill9_reserve", kill9_reserve, 240},
          {"kill9_pay_cancel_expire", kill9_pay_cancel_expire, 240},
          {"kill9_memory_ack", kill9_memory_ack, 240})

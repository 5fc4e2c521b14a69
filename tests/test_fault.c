/*
 * test_fault.c -- I6 under real I/O errors, injected by tests/fault.c (run
 * with LD_PRELOAD=build/rel/tests/libfault.so; run.sh does), and a real
 * full file system where this process may mount one.
 *
 * A write refused for space fails its batch with SPIKE_ESTORAGE and undoes
 * it in memory, and nothing of it reached the disk: the writer goes on, and
 * commits succeed again once there is room (ready says "disk full" until
 * then). Any other failed write or sync (EIO; ENOSPC reported by a sync) is
 * never retried: the writer stops taking commits, health says why, every
 * later write is refused at once, reads go on, and a reopen finds exactly
 * what was committed before.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "engine_util.h"
#include "schema.h"

static void (*fault_sync)(int);
static void (*fault_write)(int);
static void (*fault_sync_delay_ms)(int);
static void (*fault_sync_after)(int, int);
static void (*fault_sync_once)(int, int);
static void (*fault_write_after)(int, int, int);
static void (*fault_write_limit)(long long, int);
static void (*fault_free_bytes)(long long);

static void need_shim(void) {
  void *a = dlsym(RTLD_DEFAULT, "spike_fault_sync"), *b = dlsym(RTLD_DEFAULT, "spike_fault_write");
  void *c = dlsym(RTLD_DEFAULT, "spike_fault_sync_delay_ms");
  void *d = dlsym(RTLD_DEFAULT, "spike_fault_sync_after");
  void *f = dlsym(RTLD_DEFAULT, "spike_fault_sync_once");
  void *g = dlsym(RTLD_DEFAULT, "spike_fault_write_after");
  void *h = dlsym(RTLD_DEFAULT, "spike_fault_write_limit");
  void *k = dlsym(RTLD_DEFAULT, "spike_fault_free_bytes");
  memcpy(&fault_write_limit, &h, sizeof(h));
  memcpy(&fault_free_bytes, &k, sizeof(k));
  memcpy(&fault_write_after, &g, sizeof(g));
  memcpy(&fault_sync_after, &d, sizeof(d));
  memcpy(&fault_sync_once, &f, sizeof(f));
  memcpy(&fault_sync, &a, sizeof(a)); /* object to function pointer, per POSIX */
  memcpy(&fault_write, &b, sizeof(b));
  memcpy(&fault_sync_delay_ms, &c, sizeof(c));
  if (fault_sync == NULL || fault_write == NULL || fault_sync_delay_ms == NULL ||
      fault_sync_after == NULL || fault_sync_once == NULL || fault_write_after == NULL ||
      fault_write_limit == NULL || fault_free_bytes == NULL) {
    fprintf(stderr, "run with LD_PRELOAD=build/rel/tests/libfault.so\n");
    abort();
  }
}

static void io_error_stops_the_writer(int use_sync, int err, const char *tag, const char *why) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, tag);
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op a, b;
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, NULL, 0, count_cb)), SPIKE_OK);

  if (use_sync) fault_sync(err);
  else fault_write(err);
  CHECK_EQ(settle(p, &b, spike_reserve(p, &b, 1, 2, 1, "k", 1, count_cb)), SPIKE_ESTORAGE);
  CHECK(strstr(b.detail, why) != NULL);
  fault_sync(0);
  fault_write(0);

  /* undone in memory: the unit, the user's limit, the key */
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 1);
  CHECK_EQ(ev.available, 9);
  /* never retried: the disk is "fixed" but the writer stays stopped */
  const char *health;
  CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
  CHECK(strstr(health, why) != NULL);
  spike_op c;
  CHECK_EQ(spike_reserve(p, &c, 1, 3, 1, NULL, 0, count_cb), SPIKE_ESTORAGE);
  CHECK_EQ(spike_pay(p, &c, a.r.order.id, 1, "x", 1, count_cb), SPIKE_ESTORAGE);
  /* reads go on */
  spike_order o;
  CHECK_EQ(spike_order_get(p, a.r.order.id, &o), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);

  /* reopened from disk: what committed before, nothing of the failed batch */
  e = open_engine(&cfg);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 1);
  CHECK_EQ(spike_order_get(p, a.r.order.id, &o), SPIKE_OK);
  CHECK_EQ(spike_order_get(p, b.r.order.id, &o), SPIKE_ENOORDER);
  CHECK_EQ(spike_health(e, &health), SPIKE_OK);
  /* the user and the key are free again */
  CHECK_EQ(settle(p, &b, spike_reserve(p, &b, 1, 2, 1, "k", 1, count_cb)), SPIKE_OK);
  CHECK_EQ(b.replayed, 0);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static void fsync_eio(void) { io_error_stops_the_writer(1, EIO, "eio", "I/O error"); }
/* NFS and thin provisioning report a full disk at the sync: by then the
 * kernel may have dropped the pages it could not write. */
static void fsync_enospc(void) {
  io_error_stops_the_writer(1, ENOSPC, "syncnospc", "disk full at sync");
}
/* An I/O error from a write on a disk with room is not a full disk. */
static void write_eio(void) { io_error_stops_the_writer(0, EIO, "writeeio", "I/O error"); }

/*
 * A write refused for space: the batch fails, its takes are undone, and
 * the writer goes on. While the disk is full every batch fails (ops are
 * still accepted: the writer has not stopped), due expiries back off, and
 * health says "disk full"; once space returns the next commit succeeds,
 * health is ok, and the expiry that waited happens. Every acknowledged
 * change is there after a reopen.
 */
static void write_enospc_recovers(int err, const char *tag) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, tag);
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_event_spec quick = spec_default(2, 10);
  quick.pay_timeout_s = 1;
  CHECK_EQ(create_event(p, &quick), SPIKE_OK);
  spike_op a, b, c, d, x;
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &x, spike_reserve(p, &x, 2, 1, 1, NULL, 0, count_cb)), SPIKE_OK);

  fault_write(err);
  CHECK_EQ(settle(p, &b, spike_reserve(p, &b, 1, 2, 1, "k", 1, count_cb)), SPIKE_ESTORAGE);
  CHECK(strstr(b.detail, "disk full") != NULL);
  const char *health;
  CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
  CHECK(strstr(health, "disk full") != NULL);
  /* still accepted, still failing: the writer has not stopped */
  CHECK_EQ(settle(p, &c, spike_reserve(p, &c, 1, 3, 1, NULL, 0, count_cb)), SPIKE_ESTORAGE);
  CHECK_EQ(settle(p, &c, spike_pay(p, &c, a.r.order.id, 1, "pay-a", 5, count_cb)), SPIKE_ESTORAGE);
  /* x's deadline passes while full: its expiry fails and backs off */
  struct timespec nap = {1, 300 * 1000000};
  nanosleep(&nap, NULL);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 1);
  CHECK_EQ(ev.sold, 0);
  CHECK_EQ(spike_event_get(e, 2, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 1);
  spike_stats st;
  spike_stats_get(e, &st);
  CHECK(st.commit_failures_total >= 3);

  fault_write(0);
  /* the same key makes a new order: the failed one unbound it */
  CHECK_EQ(settle(p, &b, spike_reserve(p, &b, 1, 2, 1, "k", 1, count_cb)), SPIKE_OK);
  CHECK_EQ(b.replayed, 0);
  CHECK_EQ(spike_health(e, &health), SPIKE_OK);
  CHECK_EQ(settle(p, &c, spike_pay(p, &c, a.r.order.id, 1, "pay-a", 5, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &d, spike_reserve(p, &d, 1, 3, 1, NULL, 0, count_cb)), SPIKE_OK);
  int64_t until = test_now_ms() + 6000; /* the back-off is at most 5 s */
  do {
    nanosleep(&(struct timespec){0, 20 * 1000000}, NULL);
    CHECK_EQ(spike_event_get(e, 2, &ev), SPIKE_OK);
  } while (ev.reserved != 0 && test_now_ms() < until);
  CHECK_EQ(ev.reserved, 0);
  CHECK_EQ(ev.available, 10);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);

  e = open_engine(&cfg);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.sold, 1);
  CHECK_EQ(ev.reserved, 2);
  spike_order o;
  CHECK_EQ(spike_order_get(p, a.r.order.id, &o), SPIKE_OK);
  CHECK_EQ(o.state, SPIKE_ORDER_PAID);
  CHECK_EQ(spike_order_get(p, b.r.order.id, &o), SPIKE_OK);
  CHECK_EQ(spike_order_get(p, d.r.order.id, &o), SPIKE_OK);
  CHECK_EQ(spike_order_get(p, x.r.order.id, &o), SPIKE_OK);
  CHECK_EQ(o.state, SPIKE_ORDER_EXPIRED);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* Ready again with nothing to commit (outside QA: health said "disk full"
 * until some commit happened, so a node a load balancer had taken out of
 * rotation for it never came back): an idle writer tries a commit a second
 * while the disk is full, and the first that fits clears it. */
static void room_back_without_traffic(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "roomback");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op a;
  fault_write(ENOSPC);
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, NULL, 0, count_cb)), SPIKE_ESTORAGE);
  const char *health;
  CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
  CHECK(strstr(health, "disk full") != NULL);
  usleep(1500 * 1000); /* still full: the tries fail, and it stays so */
  CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
  fault_write(0);
  int64_t t0 = test_now_ms();
  while (spike_health(e, &health) != SPIKE_OK && test_now_ms() - t0 < 3000) usleep(20 * 1000);
  CHECK_EQ(spike_health(e, &health), SPIKE_OK);
  CHECK(test_now_ms() - t0 < 2500);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 0); /* nothing came of the try but room */
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  e = open_engine(&cfg); /* and the store opens as it was */
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 1);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* A crowd of new buyers against a full disk (outside QA): every reserve
 * failed, but each left its buyer and user entries (the tables never
 * delete), the tables filled, and once the disk had room every new buyer
 * got 507 until a restart. While commits fail for room the tables now grow
 * by at most a batch, and new buyers are served when room is back. */
static void full_disk_spares_the_tables(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "spares");
  cfg.batch_max = 16;
  cfg.max_buyers = 256; /* usable to 192 */
  cfg.max_users = 256;
  cfg.max_keys = 256;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10000);
  s.per_user_limit = 2;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op a;
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  spike_stats st0, st;
  spike_stats_get(e, &st0);
  fault_write(ENOSPC);
  char key[32];
  for (uint64_t u = 1000; u < 1500; u++) { /* half of them with a key */
    snprintf(key, sizeof(key), "k%llu", (unsigned long long)u);
    int keyed = u % 2 == 0;
    int rc = settle(p, &a, spike_reserve(p, &a, 1, u, 1, keyed ? key : NULL,
                                         keyed ? strlen(key) : 0, count_cb));
    CHECK_EQ(rc, SPIKE_ESTORAGE);
    CHECK(strstr(a.detail, "disk full") != NULL);
  }
  /* the user already in the tables still goes to the writer (and fails there) */
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, NULL, 0, count_cb)), SPIKE_ESTORAGE);
  spike_stats_get(e, &st);
  CHECK(st.buyers_used <= st0.buyers_used + 2 * cfg.batch_max);
  CHECK(st.users_used <= st0.users_used + 2 * cfg.batch_max);
  CHECK(st.keys_used <= st0.keys_used + 2 * cfg.batch_max);
  fault_write(0);
  const char *health;
  int64_t t0 = test_now_ms();
  while (spike_health(e, &health) != SPIKE_OK && test_now_ms() - t0 < 5000) usleep(20 * 1000);
  CHECK_EQ(spike_health(e, &health), SPIKE_OK);
  for (uint64_t u = 2000; u < 2100; u++) /* new buyers: served, not 507 */
    CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, u, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* Room for a commit is not room for the crowd (outside QA: on a tmpfs
 * with nothing free, a commit of one order fit in LMDB's freed pages, so
 * ready turned 200 a second after a refusal, and the next batches failed
 * again, once a second). Writes fit again here, but the file system has
 * 4 KiB for this process (statvfs and fallocate say so): ready stays 503
 * "disk full" through the probes, and a reserve that fits is served
 * meanwhile. Ready is 200 again once a whole batch's worth of reserves
 * (batch_max) has committed since the refusal (room inside the file), or,
 * the second time, once the file system has room. */
static void room_back_needs_headroom(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "headroom");
  cfg.batch_max = 64;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 1000);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op a;
  uint64_t user = 1;
  const char *health;
  for (int turn = 0; turn < 2; turn++) {
    fault_write(ENOSPC);
    CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, user++, 1, NULL, 0, count_cb)), SPIKE_ESTORAGE);
    CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
    fault_free_bytes(4096);
    fault_write(0);
    usleep(2500 * 1000); /* two probes and more */
    CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
    CHECK(strstr(health, "disk full") != NULL);
    CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, user++, 1, NULL, 0, count_cb)), SPIKE_OK);
    CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE); /* a commit fitting is not enough */
    if (turn == 0) {
      for (uint32_t i = 1; i < cfg.batch_max; i++) { /* one a commit: 64 in all */
        CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
        CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, user++, 1, NULL, 0, count_cb)), SPIKE_OK);
      }
      CHECK_EQ(spike_health(e, &health), SPIKE_OK);
    } else {
      fault_free_bytes(-1);
      int64_t t0 = test_now_ms();
      while (spike_health(e, &health) != SPIKE_OK && test_now_ms() - t0 < 3000) usleep(20 * 1000);
      CHECK_EQ(spike_health(e, &health), SPIKE_OK);
    }
    fault_free_bytes(-1);
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* A restart on a full disk: the open commits (the id floor, then the
 * expiry of reservations that went overdue while the engine was down,
 * before it takes new ones), and that commit cannot be made, so the open
 * is refused, saying why; once there is room it opens and they expire.
 * (The shim fails every write; a real full disk lets LMDB reuse free pages
 * inside the file, so such an open may well succeed there.) */
static void full_disk_at_open(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "fullopen");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  s.pay_timeout_s = 1;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op a;
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  nanosleep(&(struct timespec){1, 100 * 1000000}, NULL);
  fault_write(ENOSPC);
  e = NULL;
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_ESTORAGE);
  CHECK(e == NULL);
  if (strstr(spike_open_error(), "no space left on the file system") == NULL &&
      strstr(spike_open_error(), "disk full") == NULL) {
    fprintf(stderr, "%s\n", spike_open_error());
    abort();
  }
  fault_write(0);
  e = open_engine(&cfg);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 0);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/*
 * A write refused for space while a deferred batch waits for the next
 * sync: unlike a failed sync or an I/O error, this failure proves nothing
 * against the deferred batch (the store's own fdatasync found no writeback
 * error), so that batch is synced and answered OK, not lost. Staged as in
 * sync_after_commit_fails, with batch_max 1: Z's data sync is held 200 ms;
 * A and B queue behind it; A defers its meta page (B is queued); once A's
 * data sync and its meta page write are made, writes fail for space, so
 * B's commit is refused.
 */
static void deferred_batch_survives_a_full_disk(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "nospacedeferred");
  cfg.batch_max = 1;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op z, a, b;
  int n = 0;
  z.data = a.data = b.data = &n;
  fault_sync_delay_ms(200);
  fault_write_after(2, 1, ENOSPC); /* Z's data sync, A's; A's meta page */
  CHECK_EQ(spike_reserve(p, &z, 1, 1, 1, NULL, 0, count_cb), SPIKE_PENDING);
  nanosleep(&(struct timespec){0, 50 * 1000000}, NULL); /* the writer is in Z's sync */
  CHECK_EQ(spike_reserve(p, &a, 1, 2, 1, NULL, 0, count_cb), SPIKE_PENDING);
  CHECK_EQ(spike_reserve(p, &b, 1, 3, 1, NULL, 0, count_cb), SPIKE_PENDING);
  wait_count(p, &n, 3);
  fault_sync_delay_ms(0);
  CHECK_EQ(z.status, SPIKE_OK);
  CHECK_EQ(a.status, SPIKE_OK); /* deferred, then synced: not lost */
  CHECK_EQ(b.status, SPIKE_ESTORAGE);
  CHECK(strstr(b.detail, "disk full") != NULL);
  const char *health;
  CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
  CHECK(strstr(health, "disk full") != NULL);
  fault_write(0);
  spike_op c;
  CHECK_EQ(settle(p, &c, spike_reserve(p, &c, 1, 3, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  e = open_engine(&cfg);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_order o;
  CHECK_EQ(spike_order_get(p, a.r.order.id, &o), SPIKE_OK);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 3); /* Z, A, C */
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static void write_enospc(void) { write_enospc_recovers(ENOSPC, "enospc"); }
static void write_edquot(void) { write_enospc_recovers(EDQUOT, "edquot"); }

/* ---- a real full file system -------------------------------------------------
 * A small tmpfs, mounted in a mount namespace of this test's own (so it goes
 * when the process does), filled by a file until only a little is left; the
 * store grows into the rest. With SPIKE_DISKFULL_CYCLES=n it fills and frees
 * n times (the long form); every acknowledged order is checked after a
 * reopen, and the counters agree (recovery cross-checks them). Where this
 * process may not mount (not root, no CAP_SYS_ADMIN), the case says so and
 * passes: the shim cases above drive the same paths. */

enum { WAVE_MAX = 64, FREED_KIB = 256 };

static int private_tmpfs(const char *dir, long kib) {
  if (unshare(CLONE_NEWNS) != 0) return -1;
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return -1;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return -1;
  char opts[32];
  snprintf(opts, sizeof(opts), "size=%ldk", kib);
  return mount("tmpfs", dir, "tmpfs", 0, opts);
}

/* Grow the file at path until about leave_kib are free. */
static void fill(const char *path, int leave_kib) {
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  CHECK(fd >= 0);
  static char block[4096];
  for (;;) {
    struct statvfs v;
    CHECK_EQ(fstatvfs(fd, &v), 0);
    if ((long)(v.f_bavail * v.f_frsize / 1024) <= leave_kib) break;
    if (write(fd, block, sizeof(block)) != (ssize_t)sizeof(block)) break;
  }
  close(fd);
}

static void disk_full_tmpfs(void) {
  char base[240], dir[256];
  snprintf(base, sizeof(base), "%s", test_tmpdir("tmpfs"));
  snprintf(dir, sizeof(dir), "%s/mnt", base);
  const char *cycles_env = getenv("SPIKE_DISKFULL_CYCLES");
  int cycles = cycles_env != NULL && atoi(cycles_env) > 0 ? atoi(cycles_env) : 2;
  /* The store keeps every order: each cycle it grows by what the filler
   * left free (at most 88 KiB) before the disk is full. */
  if (private_tmpfs(dir, 2048 + 96L * cycles) != 0) {
    printf("skip disk_full_tmpfs: cannot mount a tmpfs here (%s); the shim cases cover the "
           "paths\n", strerror(errno));
    test_rmrf(base);
    return;
  }
  uint64_t seed = test_seed(), rnd = seed;
  spike_config cfg;
  small_config(&cfg, "unused");
  test_rmrf(cfg.data_dir);
  char data[300], filler[300];
  snprintf(data, sizeof(data), "%s/data", dir);
  snprintf(filler, sizeof(filler), "%s/filler", dir);
  cfg.data_dir = data;
  cfg.max_buyers = cfg.max_keys = 1u << 20;
  cfg.max_reserved = 1u << 20;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 4000000000u);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  static spike_op ops[WAVE_MAX];
  static uint64_t *acked;
  size_t nacked = 0, cap = 1u << 16;
  acked = malloc(cap * sizeof(*acked));
  uint64_t user = 1;
  int fulls = 0;
  const char *detail = "";
  for (int cycle = 0; cycle < cycles; cycle++) {
    fill(filler, 24 + (int)(test_rand(&rnd) % 64));
    int failed = 0;
    for (int wave = 0; wave < 100000 && !failed; wave++) {
      int n = 0, w = 1 + (int)(test_rand(&rnd) % WAVE_MAX);
      for (int i = 0; i < w; i++) {
        ops[i].data = &n;
        CHECK_EQ(spike_reserve(p, &ops[i], 1, user++, 1, NULL, 0, count_cb), SPIKE_PENDING);
      }
      wait_count(p, &n, w);
      for (int i = 0; i < w; i++) {
        if (ops[i].status == SPIKE_OK) {
          if (nacked == cap) acked = realloc(acked, (cap *= 2) * sizeof(*acked));
          acked[nacked++] = ops[i].r.order.id;
        } else {
          CHECK_EQ(ops[i].status, SPIKE_ESTORAGE);
          detail = ops[i].detail;
          failed++;
        }
      }
    }
    CHECK(failed > 0);
    CHECK(strstr(detail, "disk full") != NULL);
    /* A smaller batch may still fit where the wave did not: reserve one at
     * a time until one fails; then health must say why (nothing commits
     * after it: this is the only producer). */
    spike_op one;
    int rc = SPIKE_OK;
    for (int i = 0; i < 100000 && rc == SPIKE_OK; i++) {
      rc = settle(p, &one, spike_reserve(p, &one, 1, user++, 1, NULL, 0, count_cb));
      if (rc == SPIKE_OK) {
        if (nacked == cap) acked = realloc(acked, (cap *= 2) * sizeof(*acked));
        acked[nacked++] = one.r.order.id;
      }
    }
    CHECK_EQ(rc, SPIKE_ESTORAGE);
    CHECK(strstr(one.detail, "disk full") != NULL);
    const char *why;
    CHECK_EQ(spike_health(e, &why), SPIKE_ESTORAGE);
    CHECK(strstr(why, "disk full") != NULL);
    fulls++;
    /* space returns: the next commit succeeds and ready comes back (ready
     * waits for 4 MiB free, or an eighth of the file system if less: room
     * for a commit is not room for the crowd, room_back_needs_headroom) */
    struct stat fst;
    struct statvfs fsv;
    CHECK_EQ(stat(filler, &fst), 0);
    CHECK_EQ(statvfs(dir, &fsv), 0);
    off_t eighth = (off_t)(fsv.f_blocks * fsv.f_frsize / 8), freed = FREED_KIB * 1024;
    freed += eighth < (4 << 20) ? eighth : (4 << 20);
    CHECK_EQ(truncate(filler, fst.st_size > freed ? fst.st_size - freed : 0), 0);
    CHECK_EQ(settle(p, &one, spike_reserve(p, &one, 1, user++, 1, NULL, 0, count_cb)), SPIKE_OK);
    if (nacked == cap) acked = realloc(acked, (cap *= 2) * sizeof(*acked));
    acked[nacked++] = one.r.order.id;
    /* at that commit, or (asked at most every 100 ms) the idle writer's
     * try within about a second */
    int64_t t0 = test_now_ms();
    while (spike_health(e, &why) != SPIKE_OK && test_now_ms() - t0 < 3000) usleep(10 * 1000);
    CHECK_EQ(spike_health(e, &why), SPIKE_OK);
    if (cycle % 10 == 9 || cycle == cycles - 1) {
      /* reopen from disk: every acknowledged order, counters that agree */
      CHECK_EQ(spike_producer_close(p), SPIKE_OK);
      CHECK_EQ(spike_close(e), SPIKE_OK);
      e = open_engine(&cfg);
      CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
      spike_event ev;
      CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
      CHECK_EQ(ev.reserved, nacked);
      for (size_t i = 0; i < nacked; i++) {
        spike_order o;
        CHECK_EQ(spike_order_get(p, acked[i], &o), SPIKE_OK);
      }
    }
  }
  printf("disk full %d times (seed %llu), %zu orders acknowledged, all there after reopen\n",
         fulls, (unsigned long long)seed, nacked);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  free(acked);
  umount(dir);
  test_rmrf(base);
}

/*
 * ack=memory answers before the commit, but never more than batch_max
 * answers ahead of it: with the writer held in a slow fsync, the first
 * batch_max reserves are answered at once and the rest wait for their
 * commit. Then the same in a child killed during the stall: what it was
 * told and what the store holds differ by at most batch_max.
 */
enum { BOUND_BATCH = 32, BOUND_TRIES = 400 };

static void bounded_burst(spike_producer *p, uint32_t *now_acks, int *done, spike_op *ops,
                          uint64_t user0) {
  *now_acks = 0;
  for (int i = 0; i < BOUND_TRIES; i++) {
    ops[i].data = done;
    int rc = spike_reserve(p, &ops[i], 1, user0 + (uint64_t)i, 1, NULL, 0, count_cb);
    if (rc == SPIKE_OK) (*now_acks)++;
    else CHECK_EQ(rc, SPIKE_PENDING);
  }
}

static void memory_acks_bounded(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "membound");
  cfg.ack = SPIKE_ACK_MEMORY;
  cfg.batch_max = BOUND_BATCH;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 100000);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  static spike_op ops[BOUND_TRIES];
  int done = 0;
  uint32_t now_acks;
  fault_sync_delay_ms(300);
  bounded_burst(p, &now_acks, &done, ops, 1000);
  fault_sync_delay_ms(0);
  CHECK(now_acks >= 1);
  CHECK(now_acks <= BOUND_BATCH);
  wait_count(p, &done, BOUND_TRIES - (int)now_acks);
  for (int i = 0; i < BOUND_TRIES; i++) CHECK_EQ(ops[i].status, SPIKE_OK);
  spike_event ev;
  CHECK_EQ(spike_producer_close(p), SPIKE_OK); /* waits for the ring */
  CHECK_EQ(spike_close(e), SPIKE_OK);
  e = open_engine(&cfg);
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, BOUND_TRIES);
  CHECK_EQ(spike_close(e), SPIKE_OK);

  /* kill -9 while the writer sits in fsync */
  int pfd[2];
  CHECK_EQ(pipe(pfd), 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    e = open_engine(&cfg);
    CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
    done = 0;
    fault_sync_delay_ms(5000);
    bounded_burst(p, &now_acks, &done, ops, 5000);
    if (write(pfd[1], &now_acks, sizeof(now_acks)) != sizeof(now_acks)) _exit(3);
    pause();
    _exit(0);
  }
  close(pfd[1]);
  uint32_t child_acks = 0;
  CHECK_EQ(read(pfd[0], &child_acks, sizeof(child_acks)), (ssize_t)sizeof(child_acks));
  kill(pid, SIGKILL);
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  close(pfd[0]);
  CHECK(child_acks >= 1 && child_acks <= BOUND_BATCH);
  e = open_engine(&cfg);
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  /* Nothing waiting for a commit was answered; of the answered, at most
   * one batch's worth is gone. */
  CHECK(ev.reserved >= BOUND_TRIES);
  CHECK(ev.reserved + BOUND_BATCH >= BOUND_TRIES + child_acks);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ack=memory: a cancel answers after its units are back, so the same user
 * may buy again at once, even while commits are slow. */
static void memory_cancel_then_buy_again(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "memrebuy");
  cfg.ack = SPIKE_ACK_MEMORY;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(9, 1);
  s.per_user_limit = 1;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  fault_sync_delay_ms(50);
  for (int i = 0; i < 10; i++) {
    spike_op r, c;
    int rc = spike_reserve(p, &r, 9, 42, 1, NULL, 0, count_cb);
    if (rc == SPIKE_PENDING) rc = settle(p, &r, rc);
    CHECK_EQ(rc, SPIKE_OK);
    CHECK_EQ(settle(p, &c, spike_cancel(p, &c, r.r.order.id, 42, count_cb)), SPIKE_OK);
    CHECK_EQ(c.r.order.state, SPIKE_ORDER_CANCELLED);
  }
  fault_sync_delay_ms(0);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 9, &ev), SPIKE_OK);
  CHECK_EQ(ev.available, 1);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/*
 * A commit with more queued behind it leaves its meta page to the next
 * commit's sync, and its batch is answered only then; when no commit
 * follows after all, an explicit sync does it. Here that sync fails: the
 * batch is not confirmed, the writer stops, and a reopen finds a store that
 * holds it or not -- but whose counters agree either way.
 *
 * Staging, with batch_max 1: reserve Z's data sync is held 200 ms; A and a
 * feed wait queue behind it. A's commit sees the wait queued and defers its
 * meta page; the wait's cycle writes nothing, so the explicit sync runs:
 * the third sync (Z's data, A's data, then it), which is made to fail.
 */
static void sync_after_commit_fails(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "metasync");
  cfg.batch_max = 1;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op z, a, w;
  int n = 0;
  z.data = a.data = w.data = &n;
  fault_sync_delay_ms(200);
  fault_sync_after(2, EIO);
  CHECK_EQ(spike_reserve(p, &z, 1, 1, 1, NULL, 0, count_cb), SPIKE_PENDING);
  struct timespec nap = {0, 50 * 1000000};
  nanosleep(&nap, NULL); /* the writer is in Z's data sync now */
  CHECK_EQ(spike_reserve(p, &a, 1, 2, 1, NULL, 0, count_cb), SPIKE_PENDING);
  CHECK_EQ(spike_feed_wait(p, &w, 0, 0, count_cb), SPIKE_PENDING);
  wait_count(p, &n, 3);
  fault_sync_delay_ms(0);
  fault_sync(0);
  CHECK_EQ(z.status, SPIKE_OK); /* its meta page was written synchronously */
  CHECK_EQ(a.status, SPIKE_ESTORAGE);
  CHECK(strstr(a.detail, "I/O error") != NULL);
  CHECK_EQ(w.status, SPIKE_OK);
  const char *health;
  CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
  spike_op b;
  CHECK_EQ(spike_reserve(p, &b, 1, 3, 1, NULL, 0, count_cb), SPIKE_ESTORAGE);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  e = open_engine(&cfg); /* recovery cross-checks the counters */
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK(ev.reserved >= 1 && ev.reserved <= 2); /* Z, and A perhaps */
  CHECK_EQ(ev.available + ev.reserved, 10);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/*
 * Linux reports a writeback error to one fsync and then forgets it: a later
 * sync succeeds though the pages it would have written are gone. So after
 * a failed data sync the batch whose meta page rode on it (A, deferred) is
 * never confirmed on the strength of a sync retried later: its outcome is
 * unknown, and it fails. Staged as above, with batch_max 1: Z's data sync
 * is held 200 ms; A and B queue behind it; A defers its meta page (B is
 * queued); B's data sync, the third, fails once.
 */
static void deferred_batch_after_a_failed_sync(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "synconce");
  cfg.batch_max = 1;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op z, a, b;
  int n = 0;
  z.data = a.data = b.data = &n;
  fault_sync_delay_ms(200);
  fault_sync_once(2, EIO);
  CHECK_EQ(spike_reserve(p, &z, 1, 1, 1, NULL, 0, count_cb), SPIKE_PENDING);
  struct timespec nap = {0, 50 * 1000000};
  nanosleep(&nap, NULL); /* the writer is in Z's data sync now */
  CHECK_EQ(spike_reserve(p, &a, 1, 2, 1, NULL, 0, count_cb), SPIKE_PENDING);
  CHECK_EQ(spike_reserve(p, &b, 1, 3, 1, NULL, 0, count_cb), SPIKE_PENDING);
  wait_count(p, &n, 3);
  fault_sync_delay_ms(0);
  CHECK_EQ(z.status, SPIKE_OK);
  CHECK_EQ(a.status, SPIKE_ESTORAGE);
  CHECK_EQ(b.status, SPIKE_ESTORAGE);
  const char *health;
  CHECK_EQ(spike_health(e, &health), SPIKE_ESTORAGE);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  e = open_engine(&cfg); /* recovery cross-checks the counters */
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK(ev.reserved >= 1 && ev.reserved <= 2); /* Z, and A perhaps: unknown */
  CHECK_EQ(ev.available + ev.reserved, 10);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/*
 * A verdict read from a batch that is not durable yet stands only if that
 * batch becomes durable. Pay A commits with its meta page deferred (a
 * repeat is queued); the repeat finds the order paid, and its cycle writes
 * nothing, so the explicit sync runs, and fails: the pay fails, and so does
 * the repeat that read it. A feed wait in the same cycle stands (it reads
 * only the durable seq).
 */
static void verdict_on_a_batch_that_fails_to_sync(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "verdictsync");
  cfg.batch_max = 1;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op o;
  CHECK_EQ(settle(p, &o, spike_reserve(p, &o, 1, 9, 1, NULL, 0, count_cb)), SPIKE_OK);
  uint64_t oid = o.r.order.id;
  spike_op z, a, again, other, w;
  int n = 0;
  z.data = a.data = again.data = other.data = w.data = &n;
  fault_sync_delay_ms(200);
  fault_sync_after(2, EIO); /* Z's data, A's data; the explicit sync fails */
  CHECK_EQ(spike_reserve(p, &z, 1, 1, 1, NULL, 0, count_cb), SPIKE_PENDING);
  struct timespec nap = {0, 50 * 1000000};
  nanosleep(&nap, NULL);
  CHECK_EQ(spike_pay(p, &a, oid, 9, "p1", 2, count_cb), SPIKE_PENDING);
  CHECK_EQ(spike_pay(p, &again, oid, 9, "p1", 2, count_cb), SPIKE_PENDING);
  wait_count(p, &n, 3);
  CHECK_EQ(spike_pay(p, &other, oid, 9, "p2", 2, count_cb), SPIKE_ESTORAGE); /* refused now */
  fault_sync_delay_ms(0);
  fault_sync(0);
  CHECK_EQ(z.status, SPIKE_OK);
  CHECK_EQ(a.status, SPIKE_ESTORAGE);
  CHECK_EQ(again.status, SPIKE_ESTORAGE);
  CHECK_EQ(again.replayed, 0);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* Opening syncs the store first (a killed process may have left a commit
 * in the page cache only): a store that cannot be synced is not opened. */
static void open_fails_when_the_sync_fails(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "opensync");
  spike_engine *e = open_engine(&cfg);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  fault_sync(EIO);
  e = NULL;
  int rc = spike_open(&e, &cfg);
  fault_sync(0);
  CHECK_EQ(rc, SPIKE_ESTORAGE);
  CHECK(e == NULL);
  CHECK(strstr(spike_open_error(), "sync") != NULL);
  e = open_engine(&cfg);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/*
 * Ids are never reused, even across a restart soon after another. Opened
 * within a second of its last mint, an engine mints ahead of the clock, at
 * the floor its store gives it. A life killed before its first commit
 * (here: held in that commit's sync) leaves the next one a floor above its
 * own, so the id it answered with ack=memory cannot come back.
 */
static void ids_not_reused_after_a_quick_crash(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "quickcrash");
  cfg.ack = SPIKE_ACK_MEMORY;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 100);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK); /* the mark: an id of now */

  int fd[2];
  CHECK_EQ(pipe(fd), 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    e = open_engine(&cfg);
    CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
    fault_sync_delay_ms(5000); /* its first commit never completes */
    CHECK_EQ(spike_reserve(p, &op, 1, 2, 1, NULL, 0, count_cb), SPIKE_OK);
    uint64_t lost = op.r.order.id;
    if (write(fd[1], &lost, sizeof(lost)) != (ssize_t)sizeof(lost)) _exit(2);
    _exit(0); /* a crash: nothing of this life was committed */
  }
  close(fd[1]);
  uint64_t lost = 0;
  CHECK_EQ(read(fd[0], &lost, sizeof(lost)), (ssize_t)sizeof(lost));
  close(fd[0]);
  int status;
  CHECK_EQ(waitpid(pid, &status, 0), pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  e = open_engine(&cfg);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_order o;
  CHECK_EQ(spike_order_get(p, lost, &o), SPIKE_ENOORDER); /* lost with its life */
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, 3, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK(op.r.order.id > lost);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* A close queued ahead of a reserve refuses it in the writer; a retry of
 * that reserve with its key, sent while it was still pending, is refused
 * the same way: the event is closed, not "the original failed". The writer
 * is held in a sync (reserve Z's) while the three queue behind it. */
static void keyed_reserve_behind_a_close(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "closekey");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(5, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op z, c, r, retry;
  int n = 0;
  z.data = c.data = r.data = retry.data = &n;
  fault_sync_delay_ms(300);
  CHECK_EQ(spike_reserve(p, &z, 5, 9, 1, NULL, 0, count_cb), SPIKE_PENDING);
  struct timespec nap = {0, 50 * 1000000};
  nanosleep(&nap, NULL); /* the writer is in Z's sync now */
  CHECK_EQ(spike_event_close(p, &c, 5, count_cb), SPIKE_PENDING);
  CHECK_EQ(spike_reserve(p, &r, 5, 1, 1, "k1", 2, count_cb), SPIKE_PENDING);
  CHECK_EQ(spike_reserve(p, &retry, 5, 1, 1, "k1", 2, count_cb), SPIKE_PENDING);
  wait_count(p, &n, 4);
  fault_sync_delay_ms(0);
  CHECK_EQ(z.status, SPIKE_OK);
  CHECK_EQ(c.status, SPIKE_OK);
  CHECK_EQ(r.status, SPIKE_ENOTLIVE);
  CHECK_EQ(retry.status, SPIKE_ENOTLIVE);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 5, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 1); /* Z's */
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/*
 * Writing data.mdb ahead of LMDB (store_write_ahead) is best effort and
 * must stay so: it never takes the file system's last 64 MiB, and a write
 * refused in the middle of an extension leaves a store whose commits go on
 * over the zeros that were written, are refused for space (not stopped)
 * where the room ends, and all succeed again once there is room, every
 * confirmed order there after a reopen.
 */
enum { AHEAD_BURST = 200, AHEAD_MAX = 40000 };


/* data.mdb's size once the writer is done with it: the writer extends the
 * file after it has answered a batch, so two more reserves, one at a time,
 * wait out an extension in progress (the writer takes the second only when
 * it is done with the first's; that one finds the file extended). */
static off_t data_size(spike_producer *p, const char *dir, uint64_t *user, uint64_t *ids, int *n) {
  for (int i = 0; i < 2; i++) {
    spike_op op;
    int rc = settle(p, &op, spike_reserve(p, &op, 1, ++*user, 1, NULL, 0, count_cb));
    if (rc != SPIKE_OK) {
      CHECK_EQ(rc, SPIKE_ESTORAGE);
      continue;
    }
    CHECK(*n < AHEAD_MAX);
    ids[(*n)++] = op.r.order.id;
  }
  char path[4200];
  snprintf(path, sizeof(path), "%s/data.mdb", dir);
  struct stat sb;
  CHECK_EQ(stat(path, &sb), 0);
  return sb.st_size;
}

static uint64_t pages_used(spike_engine *e) {
  spike_stats st;
  spike_stats_get(e, &st);
  return st.map_used_bytes;
}

/* AHEAD_BURST reserves of new users in one batch; their order ids go to
 * ids[*n...] for the ones confirmed. The number refused (SPIKE_ESTORAGE). */
static int ahead_burst(spike_producer *p, uint64_t *user, uint64_t *ids, int *n) {
  static spike_op ops[AHEAD_BURST];
  int done = 0, waiting = 0, refused = 0;
  for (int i = 0; i < AHEAD_BURST; i++) {
    ops[i].data = &done;
    int rc = spike_reserve(p, &ops[i], 1, ++*user, 1, NULL, 0, count_cb);
    if (rc == SPIKE_PENDING) waiting++;
    else CHECK_EQ(rc, SPIKE_OK);
  }
  wait_count(p, &done, waiting);
  for (int i = 0; i < AHEAD_BURST; i++) {
    if (ops[i].status == SPIKE_ESTORAGE) {
      CHECK(strstr(ops[i].detail, "disk full") != NULL);
      refused++;
      continue;
    }
    CHECK_EQ(ops[i].status, SPIKE_OK);
    CHECK(*n < AHEAD_MAX - 2);
    ids[(*n)++] = ops[i].r.order.id;
  }
  return refused;
}

static void write_ahead_bounds(void) {
  need_shim();
  spike_config cfg;
  small_config(&cfg, "ahead");
  cfg.map_size_bytes = 256u << 20;
  struct statfs fs;
  const char *fs_name;
  CHECK_EQ(statfs(cfg.data_dir, &fs), 0);
  if (store_fs_of((unsigned long)fs.f_type, &fs_name) != STORE_FS_PLAIN ||
      (uint64_t)fs.f_bavail * (uint64_t)fs.f_bsize < (80ull << 20)) {
    fprintf(stderr, "note: %s is in memory, copy-on-write or nearly full: nothing is written ahead there\n",
            cfg.data_dir);
    test_rmrf(cfg.data_dir);
    return;
  }
  static uint64_t ids[AHEAD_MAX];
  int n = 0;
  uint64_t user = 0;
  /* 64 MiB and a half free: an extension (up to 1 MiB) would leave less
   * than 64 MiB, so the file stays as LMDB grows it */
  fault_free_bytes((64ll << 20) + (512 << 10));
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 1000000);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  for (int i = 0; i < 30; i++) CHECK_EQ(ahead_burst(p, &user, ids, &n), 0);
  uint64_t used = pages_used(e);
  CHECK(used > (512u << 10)); /* past the point an extension was due */
  CHECK((uint64_t)data_size(p, cfg.data_dir, &user, ids, &n) < used + (64u << 10));

  /* room again: the next commit is followed by an extension to 1 MiB past
   * its pages, which the commit after it finds in place */
  fault_free_bytes(-1);
  CHECK_EQ(ahead_burst(p, &user, ids, &n), 0);
  CHECK_EQ(ahead_burst(p, &user, ids, &n), 0);
  off_t ahead = data_size(p, cfg.data_dir, &user, ids, &n);
  used = pages_used(e);
  CHECK((uint64_t)ahead >= used + (512u << 10));

  /* the file system has room for 256 KiB and a page more: the next
   * extension's first 256 KiB of zeros are written, its second are not */
  off_t limit = ahead + (256 << 10) + 4096;
  fault_write_limit(limit, ENOSPC);
  int refused = 0;
  while (refused == 0 && n + AHEAD_BURST <= AHEAD_MAX) {
    refused = ahead_burst(p, &user, ids, &n);
    off_t now = data_size(p, cfg.data_dir, &user, ids, &n);
    CHECK(now == ahead || now == ahead + (256 << 10));
  }
  CHECK(refused > 0); /* LMDB reached the end of the room */
  CHECK_EQ(data_size(p, cfg.data_dir, &user, ids, &n), ahead + (256 << 10));
  /* refused for space (ahead_burst checked each one says "disk full"),
   * not stopped: a commit small enough to fit in the pages LMDB has free
   * may still be made */
  const char *health;
  fault_write_limit(-1, 0);
  CHECK_EQ(ahead_burst(p, &user, ids, &n), 0);
  CHECK_EQ(spike_health(e, &health), SPIKE_OK);
  CHECK_EQ(ahead_burst(p, &user, ids, &n), 0);
  ahead = data_size(p, cfg.data_dir, &user, ids, &n);
  CHECK((uint64_t)ahead >= pages_used(e) + (512u << 10));
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);

  e = open_engine(&cfg);
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, (uint64_t)n);
  CHECK_EQ(ev.available, 1000000 - (uint64_t)n);
  spike_order o;
  for (int i = 0; i < n; i++) {
    CHECK_EQ(spike_order_get(p, ids[i], &o), SPIKE_OK);
    CHECK_EQ(o.state, SPIKE_ORDER_RESERVED);
  }
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"full_disk_spares_the_tables", full_disk_spares_the_tables, 30},
          {"fsync_eio", fsync_eio, 30}, {"fsync_enospc", fsync_enospc, 30},
          {"write_eio", write_eio, 30},
          {"keyed_reserve_behind_a_close", keyed_reserve_behind_a_close, 30},
          {"ids_not_reused_after_a_quick_crash", ids_not_reused_after_a_quick_crash, 30},
          {"sync_after_commit_fails", sync_after_commit_fails, 30},
          {"deferred_batch_after_a_failed_sync", deferred_batch_after_a_failed_sync, 30},
          {"verdict_on_a_batch_that_fails_to_sync", verdict_on_a_batch_that_fails_to_sync, 30},
          {"open_fails_when_the_sync_fails", open_fails_when_the_sync_fails, 30},
          {"write_enospc", write_enospc, 30}, {"write_edquot", write_edquot, 30},
          {"full_disk_at_open", full_disk_at_open, 30},
          {"room_back_without_traffic", room_back_without_traffic, 30},
          {"room_back_needs_headroom", room_back_needs_headroom, 30},
          {"write_ahead_bounds", write_ahead_bounds, 60},
          {"deferred_batch_survives_a_full_disk", deferred_batch_survives_a_full_disk, 30},
          {"disk_full_tmpfs", disk_full_tmpfs, 600},
          {"memory_acks_bounded", memory_acks_bounded, 60},
          {"memory_cancel_then_buy_again", memory_cancel_then_buy_again, 30})

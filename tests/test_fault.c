/*
 * test_fault.c -- I6 under real I/O errors, injected by tests/fault.c (run
 * with LD_PRELOAD=build/rel/tests/libfault.so; run.sh does). A failed fsync
 * or write fails its whole batch with SPIKE_ESTORAGE and undoes it in
 * memory; it is never retried: the writer stops taking commits, health
 * says why, every later write is refused at once, reads go on, and a
 * reopen finds exactly what was committed before.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include "engine_util.h"

static void (*fault_sync)(int);
static void (*fault_write)(int);

static void need_shim(void) {
  void *a = dlsym(RTLD_DEFAULT, "spike_fault_sync"), *b = dlsym(RTLD_DEFAULT, "spike_fault_write");
  memcpy(&fault_sync, &a, sizeof(a)); /* object to function pointer, per POSIX */
  memcpy(&fault_write, &b, sizeof(b));
  if (fault_sync == NULL || fault_write == NULL) {
    fprintf(stderr, "run with LD_PRELOAD=build/rel/tests/libfault.so\n");
    abort();
  }
}

static void io_error_stops_the_writer(int use_sync, const char *tag, const char *why) {
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

  if (use_sync) fault_sync(EIO);
  else fault_write(ENOSPC);
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

static void fsync_eio(void) { io_error_stops_the_writer(1, "eio", "I/O error"); }
static void write_enospc(void) { io_error_stops_the_writer(0, "enospc", "disk full"); }

TEST_LIST({"fsync_eio", fsync_eio, 30}, {"write_enospc", write_enospc, 30})

/*
 * test_fault_http.c -- a full disk, I/O errors and a full map, seen by an
 * HTTP client of the real spiked: the failing request's status and code
 * (500/50001 naming the cause), /healthz/ready (503 with the reason), what
 * happens once the cause goes (space back: served again by itself; an I/O
 * error: nothing more is committed until a restart), and after a restart
 * every order that was answered 201 is there.
 *
 * Faults come from tests/fault.c, loaded into spiked alone and steered
 * through its control file; the full disk also comes from a real tmpfs
 * where this process may mount one (skipped, saying so, where it may not).
 *
 *   ./build/rel/tests/test_fault_http [case]     (spiked: $SPIKED or build/rel/spiked)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "http_client.h"
#include "test.h"

static hc_resp R;

static void create_event(int port) { hc_create_event(port, 1, 1000000); }

/* Answered orders, to look for after a restart. */
static uint64_t acked[1 << 16];
static size_t nacked;

static void note_acked(void) {
  CHECK_EQ(R.status, 201);
  CHECK(nacked < sizeof(acked) / sizeof(acked[0]));
  acked[nacked++] = (uint64_t)hc_json_int(&R, "data.id");
}

static int reserve(int port, uint64_t user) {
  char body[64];
  snprintf(body, sizeof(body), "{\"user_id\":\"%llu\"}", (unsigned long long)user);
  int status = hc_do(port, "POST", "/api/v1/events/1/orders", NULL, body, &R);
  if (status == 201) note_acked();
  return status;
}

/* The answer is status/code and its msg holds why. */
static void expect(int status, int code, const char *why) {
  char msg[256] = "";
  hc_json(&R, "msg", msg, sizeof(msg));
  if (R.status != status || hc_code(&R) != code || strstr(msg, why) == NULL) {
    fprintf(stderr, "want %d/%d \"%s\", got %d/%d: %s\n", status, code, why, R.status,
            hc_code(&R), R.body);
    abort();
  }
}

static void ready_is(int port, int status, const char *why) {
  CHECK_EQ(hc_do(port, "GET", "/healthz/ready", NULL, NULL, &R), status);
  if (status != 200) expect(503, 50005, why);
}

/* Ready again within 3 s: room after a full disk is asked at a commit at
 * most every 100 ms, and by the idle writer once a second. */
static void ready_soon(int port) {
  int64_t t0 = test_now_ms();
  while (hc_do(port, "GET", "/healthz/ready", NULL, NULL, &R) != 200 && test_now_ms() - t0 < 3000)
    usleep(20 * 1000);
  ready_is(port, 200, NULL);
}

/* /metrics names reason as the one spike_not_ready is 1 for. */
static void not_ready_for(int port, const char *reason) {
  static const char *const all[] = {"draining", "storage_failed", "map_full", "disk_full",
                                     "commit_queue"};
  CHECK_EQ(hc_do(port, "GET", "/metrics", NULL, NULL, &R), 200);
  for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
    char want[96];
    snprintf(want, sizeof(want), "\nspike_not_ready{reason=\"%s\"} %d\n", all[i],
             strcmp(all[i], reason) == 0);
    if (strstr(R.body, want) == NULL) {
      fprintf(stderr, "no \"%s\" in /metrics\n", want + 1);
      abort();
    }
  }
}

/* Pipelined waves of reserves until one is refused; the refusal stays in R. */
static void reserve_until_refused(int port, uint64_t *user) {
  static char buf[1 << 16];
  int fd = hc_connect(port);
  CHECK(fd >= 0);
  int refused = 0;
  hc_resp *last = malloc(sizeof(*last));
  for (int wave = 0; wave < 20000 && !refused; wave++) {
    size_t len = 0;
    for (int i = 0; i < 16; i++) {
      char body[64];
      snprintf(body, sizeof(body), "{\"user_id\":\"%llu\"}", (unsigned long long)(*user)++);
      len += hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/1/orders", NULL,
                       body);
    }
    hc_send(fd, buf, len);
    for (int i = 0; i < 16; i++) {
      CHECK_EQ(hc_read(fd, &R, 5000), 0);
      if (R.status == 201) {
        note_acked();
      } else {
        refused = 1;
        memcpy(last, &R, sizeof(R));
      }
    }
  }
  close(fd);
  CHECK(refused);
  memcpy(&R, last, sizeof(R));
  free(last);
}

/* Waves, then one at a time (a lone reserve may fit where a wave did not)
 * until one is refused: nothing commits after that refusal, so ready must
 * say why. */
static void reserve_until_full(int port, uint64_t *user) {
  reserve_until_refused(port, user);
  for (int i = 0; i < 100000 && reserve(port, (*user)++) == 201; i++) {
  }
  CHECK(R.status != 201);
}

/* After a restart: every answered order, and the event's count of them. */
static void all_acked_there(int port) {
  char path[64];
  for (size_t i = 0; i < nacked; i++) {
    snprintf(path, sizeof(path), "/api/v1/orders/%llu", (unsigned long long)acked[i]);
    if (hc_do(port, "GET", path, NULL, NULL, &R) != 200) {
      fprintf(stderr, "order %llu was answered 201 and is gone: %s\n",
              (unsigned long long)acked[i], R.body);
      abort();
    }
  }
  CHECK_EQ(hc_do(port, "GET", "/api/v1/events/1", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_int(&R, "data.reserved"), (long long)nacked);
}

/* ---- the fault shim ------------------------------------------------------------ */

static char ctl[300];

static void faults(const char *what) { fault_ctl(ctl, what); }

static void no_faults(void) { unlink(ctl); }

static void start_under_shim(spiked *s, const char *dir) { spiked_start_shim(s, dir, NULL, ctl, sizeof(ctl)); }

static void disk_full_and_io_error(void) {
  spiked s;
  start_under_shim(&s, NULL);
  create_event(s.port);
  CHECK_EQ(reserve(s.port, 1), 201);

  /* full: refused with the cause, ready says so, reads go on */
  faults("write=ENOSPC");
  CHECK_EQ(reserve(s.port, 2), 500);
  expect(500, 50001, "disk full");
  ready_is(s.port, 503, "disk full");
  not_ready_for(s.port, "disk_full"); /* not storage_failed: it comes back by itself */
  char path[64];
  snprintf(path, sizeof(path), "/api/v1/orders/%llu", (unsigned long long)acked[0]);
  CHECK_EQ(hc_do(s.port, "GET", path, NULL, NULL, &R), 200);
  CHECK_EQ(reserve(s.port, 2), 500); /* still full, still refused, still running */
  /* space back: served again, nothing restarted */
  no_faults();
  CHECK_EQ(reserve(s.port, 2), 201);
  ready_soon(s.port);

  /* an I/O error at the sync: fail-stop, even once the disk is "fixed" */
  faults("sync=EIO");
  CHECK_EQ(reserve(s.port, 3), 500);
  expect(500, 50001, "I/O error");
  ready_is(s.port, 503, "I/O error");
  not_ready_for(s.port, "storage_failed");
  no_faults();
  CHECK_EQ(reserve(s.port, 4), 500);
  expect(500, 50001, "reopened");
  ready_is(s.port, 503, "I/O error");
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);

  /* a restart recovers from what is on disk */
  char dir[256];
  snprintf(dir, sizeof(dir), "%s", s.dir);
  spiked_start(&s, dir, NULL);
  ready_is(s.port, 200, NULL);
  all_acked_there(s.port);
  CHECK_EQ(reserve(s.port, 3), 201);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(dir);
  unlink(s.log);
  unlink(ctl);
}

/* ---- the map ------------------------------------------------------------------ */

static void map_full_then_larger_map(void) {
  static const char *const small[] = {"--map-size", "1M", "--batch-max", "64", NULL};
  static const char *const large[] = {"--map-size", "4M", NULL};
  spiked s;
  spiked_start(&s, NULL, small);
  create_event(s.port);
  uint64_t user = 1;
  reserve_until_full(s.port, &user);
  expect(500, 50001, "map full");
  ready_is(s.port, 503, "map full");
  /* A small commit that fits (a new event, a close) proves nothing of the
   * next reserves: ready stays 503 (it turned 200). Only a batch holding
   * reserves that commits turns it back. */
  hc_create_event(s.port, 2, 10);
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/events/2/close", NULL, NULL, &R), 200);
  ready_is(s.port, 503, "map full");
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  char dir[256];
  snprintf(dir, sizeof(dir), "%s", s.dir);
  spiked_start(&s, dir, large);
  ready_is(s.port, 200, NULL);
  all_acked_there(s.port);
  CHECK_EQ(reserve(s.port, user++), 201);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  printf("map full after %zu orders in 1 MiB; all there with --map-size 4M\n", nacked - 1);
  test_rmrf(dir);
  unlink(s.log);
}

/* ---- a real full file system --------------------------------------------------- */

static void fill(const char *path, long leave_kib) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
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
  char mnt[256], data[300], filler[300];
  snprintf(mnt, sizeof(mnt), "%s", test_tmpdir("http-tmpfs"));
  if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("tmpfs", mnt, "tmpfs", 0, "size=2m") != 0) {
    printf("skip disk_full_tmpfs: cannot mount a tmpfs here (%s); disk_full_and_io_error "
           "covers the paths\n",
           strerror(errno));
    test_rmrf(mnt);
    return;
  }
  snprintf(data, sizeof(data), "%s/data", mnt);
  snprintf(filler, sizeof(filler), "%s/filler", mnt);
  spiked s;
  spiked_start(&s, data, NULL);
  create_event(s.port);
  uint64_t user = 1;
  for (int round = 0; round < 2; round++) {
    fill(filler, 48);
    reserve_until_full(s.port, &user);
    expect(500, 50001, "disk full");
    ready_is(s.port, 503, "disk full");
    CHECK_EQ(unlink(filler), 0);
    CHECK_EQ(reserve(s.port, user++), 201);
    ready_soon(s.port);
  }
  /* kill -9, then recover from the disk */
  CHECK_EQ(spiked_stop(&s, SIGKILL), 128 + SIGKILL);
  spiked_start(&s, data, NULL);
  ready_is(s.port, 200, NULL);
  all_acked_there(s.port);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  printf("disk full twice, %zu orders answered 201, all there after kill -9\n", nacked);
  umount(mnt);
  test_rmrf(mnt);
}

/* spike_http_inflight{loop="0"}: requests waiting for the engine, as the
 * last scrape saw them (-1 when absent). */
static long inflight_now(int port) {
  CHECK_EQ(hc_do(port, "GET", "/metrics", NULL, NULL, &R), 200);
  const char *m = strstr(R.body, "\nspike_http_inflight{loop=\"0\"} ");
  return m != NULL ? strtol(m + strlen("\nspike_http_inflight{loop=\"0\"} "), NULL, 10) : -1;
}

/* The in-flight gauge under a slow disk: five reserves waiting for a commit
 * whose sync is held show as five, and as none once answered. */
static void inflight_gauge_under_a_slow_sync(void) {
  spiked s;
  start_under_shim(&s, NULL);
  create_event(s.port);
  CHECK_EQ(inflight_now(s.port), 0);
  faults("delay=1500");
  int fds[5];
  for (int i = 0; i < 5; i++) {
    char body[96], req[512];
    snprintf(body, sizeof(body), "{\"user_id\":%d,\"qty\":1}", 7000 + i);
    size_t n = hc_format(req, sizeof(req), "POST", "/api/v1/events/1/orders", "", body);
    fds[i] = hc_connect(s.port);
    hc_send(fds[i], req, n);
  }
  long seen = 0;
  for (int t = 0; t < 20 && seen != 5; t++) { /* each scrape a turn later */
    usleep(50 * 1000);
    seen = inflight_now(s.port);
  }
  CHECK_EQ(seen, 5);
  no_faults();
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(hc_read(fds[i], &R, 10000), 0);
    CHECK_EQ(R.status, 201);
    close(fds[i]);
  }
  CHECK_EQ(inflight_now(s.port), 0);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* SIGTERM or SIGINT while the store opens ends spiked then, not after
 * the open (seconds of recovery on a large store): every sync sleeps 3 s
 * here, so the open of a new store (a commit, its syncs) is long. It exits
 * 0, says so, never listens, and the store opens afterwards. */
static void signal_while_opening(void) {
  static const int sigs[] = {SIGTERM, SIGINT};
  for (int i = 0; i < 2; i++) {
    spiked s;
    spiked_spawn_shim(&s, NULL, "delay=3000", ctl, sizeof(ctl));
    usleep(300 * 1000); /* the signal may come before the watch begins too: it waits pending */
    int64_t t0 = test_now_ms();
    int rc = spiked_stop(&s, sigs[i]);
    int64_t took = test_now_ms() - t0;
    const char *log = spiked_log(&s);
    if (rc != 0 || strstr(log, "while the store was opening: exiting") == NULL ||
        strstr(log, "listening") != NULL)
      fprintf(stderr, "signal %d: exit %d after %lld ms, log:\n%s\n", sigs[i], rc, (long long)took, log);
    CHECK_EQ(rc, 0);
    CHECK(strstr(log, sigs[i] == SIGINT ? "SIGINT while the store was opening: exiting"
                                        : "SIGTERM while the store was opening: exiting") != NULL);
    CHECK(strstr(log, "listening") == NULL);
    no_faults();
    char dir[256];
    snprintf(dir, sizeof(dir), "%s", s.dir);
    spiked_start(&s, dir, NULL); /* the open cut short is a kill -9: the store is whole */
    create_event(s.port);
    CHECK_EQ(reserve(s.port, 42), 201);
    CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
    test_rmrf(s.dir);
    unlink(s.log); /* the next turn's server logs to the same path */
  }
}

TEST_LIST({"disk_full_and_io_error", disk_full_and_io_error, 60},
          {"signal_while_opening", signal_while_opening, 60},
          {"inflight_gauge_under_a_slow_sync", inflight_gauge_under_a_slow_sync, 60},
          {"map_full_then_larger_map", map_full_then_larger_map, 120},
          {"disk_full_tmpfs", disk_full_tmpfs, 60})

/*
 * test_backup.c -- backups that restore, through the real spiked: the
 * restore drill (back up under load, restore into a fresh directory, start
 * spiked on it: every order answered before the backup began is there in
 * the state it was answered with, the counters balance, the store id says
 * it is a restored store), `spiked --backup` beside a running server,
 * refusals (no --backup-dir, names that are paths, an existing name), a
 * full disk under the backup (tests/fault.c loaded into spiked alone) and
 * a second backup while one runs.
 *
 *   ./build/rel/tests/test_backup [case]     (spiked: $SPIKED or build/rel/spiked)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "engine_util.h"
#include "http_client.h"
#include "test.h"

#define STOCK 100000
#define ACKED 300 /* orders answered before the backup: users 1..ACKED */
#define PAID 100  /* of them paid: users 1..PAID */
#define CANCELLED 50 /* then cancelled: users PAID+1..PAID+CANCELLED */

static hc_resp R;
static uint64_t order_of[ACKED + 1]; /* by user */

static void sale_event(int port) { hc_create_event(port, 1, STOCK); }

static int reserve(int port, uint64_t user) {
  char body[64];
  snprintf(body, sizeof(body), "{\"user_id\":%llu}", (unsigned long long)user);
  return hc_do(port, "POST", "/api/v1/events/1/orders", NULL, body, &R);
}

static void order_op(int port, uint64_t user, const char *op) {
  char path[96], body[96];
  snprintf(path, sizeof(path), "/api/v1/orders/%llu/%s", (unsigned long long)order_of[user], op);
  snprintf(body, sizeof(body), "{\"user_id\":%llu,\"payment_id\":\"pay-%llu\"}",
           (unsigned long long)user, (unsigned long long)user);
  if (strcmp(op, "cancel") == 0)
    snprintf(body, sizeof(body), "{\"user_id\":%llu}", (unsigned long long)user);
  CHECK_EQ(hc_do(port, "POST", path, NULL, body, &R), 200);
}

/* Orders answered, paid and cancelled before any backup. */
static void acked_orders(int port) {
  for (uint64_t u = 1; u <= ACKED; u++) {
    CHECK_EQ(reserve(port, u), 201);
    order_of[u] = (uint64_t)hc_json_int(&R, "data.id");
  }
  for (uint64_t u = 1; u <= PAID; u++) order_op(port, u, "pay");
  for (uint64_t u = PAID + 1; u <= PAID + CANCELLED; u++) order_op(port, u, "cancel");
}

/* Every acked order is there in the state it was answered with, and the
 * event's counters balance (I1, I2). */
static void check_acked(int port) {
  char path[64], state[32];
  for (uint64_t u = 1; u <= ACKED; u++) {
    snprintf(path, sizeof(path), "/api/v1/orders/%llu", (unsigned long long)order_of[u]);
    if (hc_do(port, "GET", path, NULL, NULL, &R) != 200) {
      fprintf(stderr, "order %llu (user %llu), answered before the backup, is gone: %s\n",
              (unsigned long long)order_of[u], (unsigned long long)u, R.body);
      abort();
    }
    CHECK_EQ(hc_json(&R, "data.state", state, sizeof(state)), 0);
    const char *want = u <= PAID ? "paid" : u <= PAID + CANCELLED ? "cancelled" : "reserved";
    if (strcmp(state, want) != 0) {
      fprintf(stderr, "order of user %llu: %s, answered as %s\n", (unsigned long long)u, state, want);
      abort();
    }
  }
  CHECK_EQ(hc_do(port, "GET", "/api/v1/events/1", NULL, NULL, &R), 200);
  long long avail = hc_json_int(&R, "data.available"), res = hc_json_int(&R, "data.reserved"),
            sold = hc_json_int(&R, "data.sold"), total = hc_json_int(&R, "data.stock_total");
  CHECK_EQ(total, STOCK);
  CHECK_EQ(avail + res + sold, total);
  CHECK(res + sold <= total);
  CHECK_EQ(sold, PAID);
  CHECK(res >= ACKED - PAID - CANCELLED);
}

/* The feed's answer: store id, where it was restored from (0: not), head. */
typedef struct feed_id {
  char store[24], from[24];
  long long restored_seq, head;
} feed_id;

static void feed_id_get(int port, feed_id *f) {
  CHECK_EQ(hc_do(port, "GET", "/api/v1/feed?after=0&limit=1", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json(&R, "data.storeId", f->store, sizeof(f->store)), 0);
  f->from[0] = '\0';
  hc_json(&R, "data.restoredFrom", f->from, sizeof(f->from));
  f->restored_seq = hc_json_int(&R, "data.restoredSeq");
  f->head = hc_json_int(&R, "data.head");
  char h[32];
  const char *hdr = hc_header(&R, "X-Spike-Restored-From", h, sizeof(h));
  CHECK(f->from[0] == '\0' ? hdr == NULL : hdr != NULL && strcmp(h, f->from) == 0);
}

static void copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0644);
  CHECK(in >= 0 && out >= 0);
  char buf[1 << 16];
  ssize_t n;
  while ((n = read(in, buf, sizeof(buf))) > 0) CHECK_EQ(write(out, buf, (size_t)n), n);
  CHECK_EQ(n, 0);
  CHECK_EQ(fsync(out), 0);
  close(in);
  close(out);
}

/* Restore: the backup's data.mdb into a fresh data directory. */
static const char *restore(const char *backup, const char *tag) {
  static char dir[512];
  snprintf(dir, sizeof(dir), "%s", test_tmpdir(tag));
  char from[600], to[600];
  snprintf(from, sizeof(from), "%s/data.mdb", backup);
  snprintf(to, sizeof(to), "%s/data.mdb", dir);
  copy_file(from, to);
  return dir;
}

static int exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

/* Entries in dir whose name contains part. */
static int entries_with(const char *dir, const char *part) {
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strstr(e->d_name, part) != NULL;
  closedir(d);
  return n;
}

/* Reserves from a child process until stopped (or 20,000, or 20 s). */
static pid_t load_start(int port) {
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int64_t end = test_now_ms() + 20000;
    for (uint64_t u = 1000000; u < 1020000 && test_now_ms() < end; u++) reserve(port, u);
    _exit(0);
  }
  return pid;
}

static void load_stop(pid_t pid) {
  kill(pid, SIGKILL);
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
}

/* spiked with args, an event and the acked orders; where its feed stands. */
static void serving_with_orders(spiked *s, const char *const *args, feed_id *before) {
  spiked_start(s, NULL, args);
  sale_event(s->port);
  acked_orders(s->port);
  feed_id_get(s->port, before);
  CHECK_EQ(before->from[0], '\0');
}

static void restore_drill(void) {
  char bdir[512], backup[600], args_dir[600];
  snprintf(bdir, sizeof(bdir), "%s", test_tmpdir("backups"));
  snprintf(args_dir, sizeof(args_dir), "%s", bdir);
  const char *args[] = {"--backup-dir", args_dir, NULL};
  spiked s;
  feed_id before;
  serving_with_orders(&s, args, &before);
  pid_t load = load_start(s.port);
  usleep(200 * 1000);
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", "X-Request-Id: drill-1\r\n",
                 "{\"name\":\"drill\"}", &R), 201);
  long long seq = hc_json_int(&R, "data.seq");
  char id[24];
  CHECK_EQ(hc_json(&R, "data.storeId", id, sizeof(id)), 0);
  CHECK(strcmp(id, before.store) == 0);
  CHECK(seq >= before.head); /* every change answered before it began */
  CHECK(hc_json_int(&R, "data.bytes") > 0);
  load_stop(load);
  /* the log line's ms and bytes are numbers, as "store opened"'s ms is (a
   * field of two JSON types broke typed log pipelines); its seq a string */
  const char *line = strstr(spiked_log(&s), "\"msg\":\"backup of store");
  CHECK(line != NULL);
  if (line != NULL) {
    CHECK(strstr(line, "\"bytes\":") != NULL && strstr(line, "\"bytes\":\"") == NULL);
    CHECK(strstr(line, "\"ms\":") != NULL && strstr(line, "\"ms\":\"") == NULL);
    CHECK(strstr(line, "\"seq\":\"") != NULL);
    /* a line about the request: its traceId (api.md) */
    const char *eol = strchr(line, '\n');
    const char *t = strstr(line, "\"traceId\":\"drill-1\"");
    CHECK(t != NULL && (eol == NULL || t < eol));
  }
  snprintf(backup, sizeof(backup), "%s/drill", bdir);
  CHECK(exists(backup));
  CHECK_EQ(entries_with(bdir, ".partial"), 0);
  CHECK(hc_do(s.port, "GET", "/metrics", NULL, NULL, &R) == 200);
  CHECK(strstr(R.body, "spike_backups_total{result=\"ok\"} 1\n") != NULL);
  CHECK(strstr(R.body, "spike_store_restored_info") == NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);

  /* the restore: a fresh directory, a new store id, the old one named */
  spiked r;
  spiked_start(&r, restore(backup, "restored"), NULL);
  check_acked(r.port);
  feed_id after;
  feed_id_get(r.port, &after);
  CHECK(strcmp(after.store, before.store) != 0);
  CHECK(strcmp(after.from, before.store) == 0);
  CHECK_EQ(after.restored_seq, seq);
  CHECK_EQ(after.head, seq);
  CHECK(strstr(spiked_log(&r), "restored from a backup of store") != NULL);
  CHECK(hc_do(r.port, "GET", "/metrics", NULL, NULL, &R) == 200);
  char want[160];
  snprintf(want, sizeof(want), "spike_store_restored_info{restored_from=\"%s\",restored_seq=\"%lld\"} 1",
           before.store, seq);
  CHECK(strstr(R.body, want) != NULL);
  /* it serves: a new order, and the feed goes on past the backup's seq */
  CHECK_EQ(reserve(r.port, 7777777), 201);
  feed_id later;
  feed_id_get(r.port, &later);
  CHECK(later.head > seq);
  /* a restart keeps the restored store's id: one restore, one id */
  char dir[256];
  snprintf(dir, sizeof(dir), "%s", r.dir);
  CHECK_EQ(spiked_stop(&r, SIGTERM), 0);
  spiked_start(&r, dir, NULL);
  feed_id again;
  feed_id_get(r.port, &again);
  CHECK(strcmp(again.store, after.store) == 0 && strcmp(again.from, before.store) == 0);
  check_acked(r.port);
  CHECK_EQ(spiked_stop(&r, SIGTERM), 0);

  /* a second restore of the same backup is another store */
  spiked r2;
  spiked_start(&r2, restore(backup, "restored2"), NULL);
  feed_id other;
  feed_id_get(r2.port, &other);
  CHECK(strcmp(other.store, after.store) != 0 && strcmp(other.from, before.store) == 0);
  check_acked(r2.port);
  CHECK_EQ(spiked_stop(&r2, SIGTERM), 0);
}

/* spiked --backup DEST --data D: a second process, beside the server. */
static int run_backup_command(const char *data, const char *dest, char *out, size_t cap) {
  const char *bin = getenv("SPIKED");
  if (bin == NULL || *bin == '\0') bin = "build/rel/spiked";
  char cmd[2048];
  snprintf(cmd, sizeof(cmd), "%s --data '%s' --backup '%s' 2>&1", bin, data, dest);
  FILE *p = popen(cmd, "r");
  CHECK(p != NULL);
  size_t n = fread(out, 1, cap - 1, p);
  out[n] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void backup_command(void) {
  spiked s;
  feed_id before;
  serving_with_orders(&s, NULL, &before);
  char bdir[512], dest[600], out[4096];
  snprintf(bdir, sizeof(bdir), "%s", test_tmpdir("cmdbackups"));
  snprintf(dest, sizeof(dest), "%s/one", bdir);
  pid_t load = load_start(s.port);
  usleep(100 * 1000);
  CHECK_EQ(run_backup_command(s.dir, dest, out, sizeof(out)), 0);
  load_stop(load);
  CHECK(strstr(out, before.store) != NULL && strstr(out, "\"bytes\":") != NULL);
  /* refused: an existing destination, a directory without a store */
  CHECK_EQ(run_backup_command(s.dir, dest, out, sizeof(out)), 1);
  CHECK(strstr(out, "already exists") != NULL);
  snprintf(dest, sizeof(dest), "%s/two", bdir);
  CHECK_EQ(run_backup_command(bdir, dest, out, sizeof(out)), 1);
  CHECK(!exists(dest));
  /* a name an interrupted backup would leave (safe to delete, the docs say) */
  snprintf(dest, sizeof(dest), "%s/x.partial.1", bdir);
  CHECK_EQ(run_backup_command(s.dir, dest, out, sizeof(out)), 1);
  CHECK(strstr(out, "interrupted backup") != NULL && !exists(dest));
  CHECK_EQ(entries_with(bdir, ".partial"), 0);
  /* a trailing slash names the same directory (its parent was itself) */
  snprintf(dest, sizeof(dest), "%s/three/", bdir);
  CHECK_EQ(run_backup_command(s.dir, dest, out, sizeof(out)), 0);
  snprintf(dest, sizeof(dest), "%s/three/data.mdb", bdir);
  CHECK(exists(dest));
  /* the server went on serving, and the backup restores */
  CHECK_EQ(reserve(s.port, 5555555), 201);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  snprintf(dest, sizeof(dest), "%s/one", bdir);
  spiked r;
  spiked_start(&r, restore(dest, "cmdrestored"), NULL);
  check_acked(r.port);
  feed_id after;
  feed_id_get(r.port, &after);
  CHECK(strcmp(after.from, before.store) == 0 && strcmp(after.store, before.store) != 0);
  CHECK_EQ(spiked_stop(&r, SIGTERM), 0);
  /* root backing up a store another user owns (a service's, restored and
   * not started since: no lock.mdb): the lock.mdb the backup makes is the
   * store owner's (outside QA: it was root's, and the service, running as
   * that user, could not open its own store). Root alone can give files to
   * another user, so only root can make the case. */
  if (geteuid() == 0) {
    char f[700];
    snprintf(f, sizeof(f), "%s/one/lock.mdb", bdir);
    unlink(f);
    snprintf(f, sizeof(f), "%s/one/data.mdb", bdir);
    CHECK(chown(f, 61234, 61235) == 0);
    char src[600];
    snprintf(src, sizeof(src), "%s/one", bdir);
    snprintf(dest, sizeof(dest), "%s/four", bdir);
    CHECK_EQ(run_backup_command(src, dest, out, sizeof(out)), 0);
    struct stat st;
    snprintf(f, sizeof(f), "%s/one/lock.mdb", bdir);
    CHECK(stat(f, &st) == 0);
    CHECK(st.st_uid == 61234 && st.st_gid == 61235);
  } else {
    printf("  not root: the lock.mdb owner case needs root\n");
  }
}

static void backup_refused(void) {
  /* without --backup-dir the route is off */
  spiked s;
  spiked_start(&s, NULL, NULL);
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", NULL, NULL, &R), 403);
  CHECK_EQ(hc_code(&R), 20006);
  CHECK(strstr(R.body, "--backup-dir") != NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);

  char bdir[512], dir[600];
  snprintf(bdir, sizeof(bdir), "%s", test_tmpdir("refused"));
  snprintf(dir, sizeof(dir), "%s", bdir);
  const char *args[] = {"--backup-dir", dir, "--admin-token", "sesame", NULL};
  spiked_start(&s, NULL, args);
  const char *admin = "Authorization: Bearer sesame\r\n";
  /* only an admin, only POST */
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", NULL, NULL, &R), 401);
  CHECK_EQ(hc_do(s.port, "GET", "/api/v1/admin/backup", admin, NULL, &R), 405);
  /* a name, never a path */
  static const char *const bad[] = {"../escape", ".hidden", "a/b", "..", "x.partial.1", "",
                                    "name with space",
                                    "a1234567890123456789012345678901234567890123456789012345678901234"};
  char body[160];
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(body, sizeof(body), "{\"name\":\"%s\"}", bad[i]);
    if (hc_do(s.port, "POST", "/api/v1/admin/backup", admin, body, &R) != 400) {
      fprintf(stderr, "name \"%s\": %s\n", bad[i], R.body);
      abort();
    }
    CHECK_EQ(hc_code(&R), 40001);
  }
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", admin, "{\"path\":\"/tmp\"}", &R), 400);
  /* an existing name is refused and left as it was */
  char taken[600], keep[700];
  snprintf(taken, sizeof(taken), "%s/taken", bdir);
  CHECK_EQ(mkdir(taken, 0755), 0);
  snprintf(keep, sizeof(keep), "%s/keep", taken);
  FILE *f = fopen(keep, "w");
  CHECK(f != NULL);
  fclose(f);
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup",
                 "Authorization: Bearer sesame\r\nX-Request-Id: taken-1\r\n", "{\"name\":\"taken\"}",
                 &R), 400);
  CHECK(strstr(R.body, "already exists") != NULL);
  /* the caller's mistake, logged as a warning with the request's traceId */
  const char *line = strstr(spiked_log(&s), "\"msg\":\"backup failed");
  CHECK(line != NULL);
  if (line != NULL) {
    const char *bol = line;
    while (bol > spiked_log(&s) && bol[-1] != '\n') bol--;
    const char *lv = strstr(bol, "\"level\":\"");
    CHECK(lv != NULL && lv < line && strncmp(lv, "\"level\":\"warn\"", 14) == 0);
    CHECK(strstr(line, "\"traceId\":\"taken-1\"") != NULL);
  }
  CHECK(exists(keep));
  /* nothing else was made, and a good name works */
  CHECK_EQ(entries_with(bdir, ""), 3); /* ".", "..", "taken" */
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", admin, "{\"name\":\"ok-1.b_c\"}", &R), 201);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);

  /* --backup-dir must be a directory */
  char missing[600];
  snprintf(missing, sizeof(missing), "%s/missing", bdir);
  const char *bin = getenv("SPIKED");
  char cmd[1400];
  snprintf(cmd, sizeof(cmd), "%s --listen 127.0.0.1:0 --data %s/d --backup-dir %s 2>/dev/null",
           bin != NULL && *bin ? bin : "build/rel/spiked", bdir, missing);
  int st = system(cmd);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
}

static char ctl[300];

/* spiked under the fault shim with a fresh --backup-dir (into bdir), an
 * event and one order. */
static void start_shim_with_backups(spiked *s, char *bdir, size_t cap, const char *tag) {
  static char dir[600];
  snprintf(bdir, cap, "%s", test_tmpdir(tag));
  snprintf(dir, sizeof(dir), "%s", bdir);
  const char *args[] = {"--backup-dir", dir, NULL};
  spiked_start_shim(s, NULL, args, ctl, sizeof(ctl));
  sale_event(s->port);
  CHECK_EQ(reserve(s->port, 1), 201);
}

/* The backup's file system fills: 500 naming it, nothing left behind, the
 * server serves on; once there is room a backup is made. */
static void backup_disk_full(void) {
  char bdir[512];
  spiked s;
  start_shim_with_backups(&s, bdir, sizeof(bdir), "full");
  fault_ctl(ctl, "copy=ENOSPC");
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", NULL, "{\"name\":\"full\"}", &R), 500);
  CHECK_EQ(hc_code(&R), 50001);
  CHECK(strstr(R.body, "No space left on device") != NULL);
  CHECK_EQ(entries_with(bdir, "full"), 0);
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/ready", NULL, NULL, &R), 200);
  CHECK_EQ(reserve(s.port, 2), 201);
  unlink(ctl);
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", NULL, "{\"name\":\"full\"}", &R), 201);
  CHECK(hc_do(s.port, "GET", "/metrics", NULL, NULL, &R) == 200);
  CHECK(strstr(R.body, "spike_backups_total{result=\"failed\"} 1\n") != NULL);
  CHECK(strstr(R.body, "spike_backups_total{result=\"ok\"} 1\n") != NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
}

/* POST a backup named name on a connection of its own and wait until its
 * copy is seen running (name.partial.PID exists in bdir); the connection,
 * for its answer. */
static int backup_started(int port, const char *bdir, const char *name) {
  int fd = hc_connect(port);
  CHECK(fd >= 0);
  char req[512], body[128], partial[96];
  snprintf(body, sizeof(body), "{\"name\":\"%s\"}", name);
  size_t n = hc_format(req, sizeof(req), "POST", "/api/v1/admin/backup", "", body);
  hc_send(fd, req, n);
  snprintf(partial, sizeof(partial), "%s.partial", name);
  int64_t end = test_now_ms() + 20000;
  while (entries_with(bdir, partial) == 0) {
    CHECK(test_now_ms() < end);
    usleep(5000);
  }
  return fd;
}

/* A second backup while one runs is 503 at once; the first completes. The
 * shim slows every sync so the first is seen running (its .partial
 * directory exists from its start to its end). */
static void backup_concurrent(void) {
  char bdir[512];
  spiked s;
  start_shim_with_backups(&s, bdir, sizeof(bdir), "conc");
  fault_ctl(ctl, "delay=1500");
  int fd = backup_started(s.port, bdir, "first");
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", NULL, "{\"name\":\"second\"}", &R), 503);
  CHECK_EQ(hc_code(&R), 50005);
  CHECK(strstr(R.body, "a backup is already running") != NULL);
  char ra[16];
  CHECK(hc_header(&R, "Retry-After", ra, sizeof(ra)) != NULL);
  CHECK(hc_do(s.port, "GET", "/metrics", NULL, NULL, &R) == 200);
  CHECK(strstr(R.body, "spike_backup_running 1\n") != NULL);
  CHECK(strstr(R.body, "spike_backups_total{result=\"busy\"} 1\n") != NULL);
  CHECK(strstr(R.body, "spike_http_overloaded_total{reason=\"backup_running\"} 1\n") != NULL);
  unlink(ctl);
  CHECK_EQ(hc_read(fd, &R, 30000), 0);
  CHECK_EQ(R.status, 201);
  close(fd);
  CHECK_EQ(entries_with(bdir, "second"), 0);
  CHECK_EQ(entries_with(bdir, ".partial"), 0);
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", NULL, "{\"name\":\"third\"}", &R), 201);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
}

/* kill -9 in the middle of a backup leaves no backup of that name, only
 * its .partial directory; a new spiked makes one under the same name. */
static void backup_killed(void) {
  char bdir[512], dir[600], name[700];
  spiked s;
  start_shim_with_backups(&s, bdir, sizeof(bdir), "killed");
  snprintf(dir, sizeof(dir), "%s", s.dir);
  fault_ctl(ctl, "delay=2000");
  int fd = backup_started(s.port, bdir, "k");
  CHECK_EQ(spiked_stop(&s, SIGKILL), 128 + SIGKILL);
  close(fd);
  unlink(ctl);
  snprintf(name, sizeof(name), "%s/k", bdir);
  CHECK(!exists(name));
  CHECK_EQ(entries_with(bdir, "k.partial"), 1);
  char bd[600];
  snprintf(bd, sizeof(bd), "%s", bdir);
  const char *args[] = {"--backup-dir", bd, NULL};
  spiked_start(&s, dir, args);
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", NULL, "{\"name\":\"k\"}", &R), 201);
  CHECK(exists(name));
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
}

/* A reader that died in its read transaction (a `spiked --backup` killed
 * mid-copy) pinned its snapshot until spiked's next start, and the store
 * grew with every commit until the map was full: the serving spiked clears
 * it within about a second now. */
static void dead_reader_cleared(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    MDB_env *env;
    MDB_txn *t;
    if (mdb_env_create(&env) != 0 || mdb_env_open(env, s.dir, MDB_RDONLY | MDB_NOTLS, 0644) != 0 ||
        mdb_txn_begin(env, NULL, MDB_RDONLY, &t) != 0)
      _exit(1);
    kill(getpid(), SIGKILL); /* in the transaction, its slot taken */
    _exit(2);
  }
  int st = 0;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  int cleared = 0;
  for (int64_t end = test_now_ms() + 10000; !cleared && test_now_ms() < end; usleep(50 * 1000))
    cleared = strstr(spiked_log(&s), "cleared 1 reader slot") != NULL;
  CHECK(cleared);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
}

/* ---- libspike itself ---------------------------------------------------- */

typedef struct lib_backup {
  spike_engine *e;
  const char *dest;
  int rc;
  spike_backup_info info;
} lib_backup;

static void *lib_backup_run(void *arg) {
  lib_backup *b = arg;
  b->rc = spike_backup(b->e, b->dest, &b->info);
  return NULL;
}

/* Through spike.h, under the shim with every sync slowed (the case reruns
 * this binary so, by its own name): while spike_backup runs, a second one
 * and spike_close are refused with SPIKE_EBUSY and nothing is closed; then
 * the backup opens as a restored store, spike_store_origin_get says from
 * what, and spike_backup_dir copies a store no engine has open (and
 * refuses one this process has). */
static void library_busy_here(const char *ctl);

static void library_busy(void) {
  const char *ctl = getenv("SPIKE_FAULT_CTL");
  if (ctl != NULL && *ctl != '\0') {
    library_busy_here(ctl);
    return;
  }
  const char *shim = getenv("FAULT_SHIM");
  if (shim == NULL || *shim == '\0') shim = "build/rel/tests/libfault.so";
  CHECK(access(shim, R_OK) == 0);
  char path[300], self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  CHECK(n > 0);
  self[n] = '\0';
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof(path), "%s/spike-test-libctl-%d", tmp != NULL && *tmp ? tmp : "/tmp",
           (int)getpid());
  unlink(path);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    setenv("LD_PRELOAD", shim, 1);
    setenv("SPIKE_FAULT_CTL", path, 1);
    execl(self, self, "library_busy", (char *)NULL);
    _exit(127);
  }
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  unlink(path);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void library_busy_here(const char *ctl) {
  spike_config cfg;
  small_config(&cfg, "lib");
  char data[512], bdir[512], dest[600], dest2[600];
  snprintf(data, sizeof(data), "%s", cfg.data_dir);
  cfg.data_dir = data;
  snprintf(bdir, sizeof(bdir), "%s", test_tmpdir("libbackups"));
  snprintf(dest, sizeof(dest), "%s/one", bdir);
  snprintf(dest2, sizeof(dest2), "%s/two", bdir);
  spike_engine *e = open_engine(&cfg);
  spike_producer *p = producer_with_event(e, 1, 1000, 1);
  spike_op op;
  uint64_t ids[20];
  for (uint64_t u = 1; u <= 20; u++) {
    CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, u, 1, NULL, 0, count_cb)), SPIKE_OK);
    ids[u - 1] = op.r.order.id;
  }
  spike_store_origin o;
  spike_store_origin_get(e, &o);
  CHECK(o.store_id != 0 && o.restored_from == 0);
  spike_backup_info info;
  CHECK_EQ(spike_backup(e, NULL, &info), SPIKE_EINVAL);

  fault_ctl(ctl, "delay=1000");
  lib_backup b = {e, dest, -1, {0}};
  pthread_t t;
  CHECK_EQ(pthread_create(&t, NULL, lib_backup_run, &b), 0);
  int64_t end = test_now_ms() + 20000;
  while (entries_with(bdir, "one.partial") == 0) {
    CHECK(test_now_ms() < end);
    usleep(2000);
  }
  CHECK_EQ(spike_backup(e, dest2, &info), SPIKE_EBUSY);
  CHECK(strstr(info.error, "already running") != NULL);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_EBUSY);
  unlink(ctl);
  CHECK_EQ(pthread_join(t, NULL), 0);
  CHECK_EQ(b.rc, SPIKE_OK);
  CHECK_EQ(b.info.store_id, o.store_id);
  CHECK(b.info.seq >= 21 && b.info.bytes > 0);
  /* by path while this process has it open: refused, the locks kept */
  CHECK_EQ(spike_backup_dir(data, dest2, &info), SPIKE_EMISUSE);
  CHECK(strstr(info.error, "open in this process") != NULL);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  CHECK(!exists(dest2));

  /* a store no engine holds, copied by path; then both restored */
  CHECK_EQ(spike_backup_dir(data, dest2, &info), SPIKE_OK);
  CHECK_EQ(info.store_id, o.store_id);
  uint64_t seq2 = info.seq;
  CHECK_EQ(spike_backup_dir(data, dest2, &info), SPIKE_EINVAL);
  CHECK(strstr(info.error, "already exists") != NULL);
  const char *paths[] = {dest, dest2};
  for (int i = 0; i < 2; i++) {
    spike_config rc;
    small_config(&rc, i == 0 ? "librestored" : "librestored2");
    char from[700], to[700];
    snprintf(from, sizeof(from), "%s/data.mdb", paths[i]);
    snprintf(to, sizeof(to), "%s/data.mdb", rc.data_dir);
    copy_file(from, to);
    spike_engine *r = open_engine(&rc);
    spike_store_origin ro;
    spike_store_origin_get(r, &ro);
    CHECK(ro.store_id != 0 && ro.store_id != o.store_id);
    CHECK_EQ(ro.restored_from, o.store_id);
    CHECK_EQ(ro.restored_seq, i == 0 ? b.info.seq : seq2);
    CHECK(ro.backup_at_ms > 0 && ro.restored_at_ms >= ro.backup_at_ms);
    spike_producer *rp;
    CHECK_EQ(spike_producer_open(r, &rp), SPIKE_OK);
    spike_order ord;
    for (int k = 0; k < 20; k++) CHECK_EQ(spike_order_get(rp, ids[k], &ord), SPIKE_OK);
    spike_event ev;
    CHECK_EQ(spike_event_get(r, 1, &ev), SPIKE_OK);
    CHECK_EQ(ev.available + ev.reserved + ev.sold, ev.stock_total);
    CHECK_EQ(ev.reserved, 20);
    CHECK_EQ(spike_producer_close(rp), SPIKE_OK);
    CHECK_EQ(spike_close(r), SPIKE_OK);
  }
}

TEST_LIST({"restore_drill", restore_drill, 90}, {"backup_command", backup_command, 60},
          {"backup_refused", backup_refused, 60}, {"backup_disk_full", backup_disk_full, 60},
          {"backup_concurrent", backup_concurrent, 60}, {"backup_killed", backup_killed, 60},
          {"dead_reader_cleared", dead_reader_cleared, 60},
          {"library_busy", library_busy, 60})

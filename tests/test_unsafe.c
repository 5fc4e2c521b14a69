/*
 * test_unsafe.c -- configurations refused, or warned about, before anything
 * is written: a second process on a store, a store written by a newer
 * schema (or by another program), a map below the floor, a data directory
 * in memory. Each through libspike (the status and spike_open_error()) and
 * through spiked (its exit code, 1 for a store it cannot open and 2 for a
 * bad flag, and its stderr).
 *
 *   SPIKED=build/asan/spiked ./build/rel/tests/test_unsafe [case]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine_util.h"
#include "http_client.h"

#define TMPFS_MAGIC_ 0x01021994

/* The whole of a file, NUL-terminated, in a static buffer; *len gets its
 * size. */
static const char *slurp(const char *path, size_t *len) {
  static char buf[8 << 20];
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  ssize_t n = read(fd, buf, sizeof(buf));
  CHECK(n >= 0 && (size_t)n < sizeof(buf));
  close(fd);
  buf[n] = '\0';
  *len = (size_t)n;
  return buf;
}

/* A store holding one event and an order, closed. */
static void make_store(spike_config *cfg, const char *tag) {
  small_config(cfg, tag);
  spike_engine *e = open_engine(cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 10);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, 7, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
}

/* Put key = 8-byte big-endian v into database db (NULL: the main one). */
static void lmdb_put_u64(const char *dir, const char *db, const char *key, uint64_t v) {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  uint8_t b[8];
  for (int i = 7; i >= 0; i--, v >>= 8) b[i] = (uint8_t)v;
  CHECK_EQ(mdb_env_create(&env), 0);
  CHECK_EQ(mdb_env_set_maxdbs(env, 8), 0);
  CHECK_EQ(mdb_env_open(env, dir, 0, 0644), 0);
  CHECK_EQ(mdb_txn_begin(env, NULL, 0, &txn), 0);
  CHECK_EQ(mdb_dbi_open(txn, db, db == NULL ? 0 : MDB_CREATE, &dbi), 0);
  MDB_val k = {strlen(key), (void *)key}, val = {sizeof(b), b};
  CHECK_EQ(mdb_put(txn, dbi, &k, &val, 0), 0);
  CHECK_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

/* ---- a second process on the store ------------------------------------------ */

static void lib_second_opener(void) {
  spike_config cfg;
  small_config(&cfg, "second");
  spike_engine *e = open_engine(&cfg), *e2 = NULL;
  char want[64];
  CHECK_EQ(spike_open(&e2, &cfg), SPIKE_ELOCKED);
  CHECK(e2 == NULL);
  CHECK(strstr(spike_open_error(), "already open in this process") != NULL);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    snprintf(want, sizeof(want), "in use by another process (pid %d)", (int)getppid());
    int ok = spike_open(&e2, &cfg) == SPIKE_ELOCKED && e2 == NULL &&
             strstr(spike_open_error(), want) != NULL;
    if (!ok) fprintf(stderr, "child: %s\n", spike_open_error());
    _exit(ok ? 0 : 1);
  }
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  e = open_engine(&cfg); /* the lock went with the engine */
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static void spiked_second_opener(void) {
  spiked a;
  spiked_start(&a, NULL, NULL);
  static char log[1 << 16];
  const char *args[] = {"--listen", "127.0.0.1:0", "--data", a.dir, NULL};
  CHECK_EQ(spiked_refused(args, log, sizeof(log)), 1);
  char want[64];
  snprintf(want, sizeof(want), "in use by another process (pid %d)", (int)a.pid);
  if (strstr(log, want) == NULL) {
    fprintf(stderr, "want \"%s\" in:\n%s", want, log);
    abort();
  }
  hc_resp *r = malloc(sizeof(*r));
  CHECK_EQ(hc_do(a.port, "GET", "/healthz/ready", NULL, NULL, r), 200); /* the first serves on */
  free(r);
  CHECK_EQ(spiked_stop(&a, SIGTERM), 0);
  test_rmrf(a.dir);
  unlink(a.log);
}

/* ---- a store this build does not write ----------------------------------------- */

/* Refused by spike_open and by spiked, and not a byte of data.mdb changed. */
static void refused_untouched(const spike_config *cfg, const char *want) {
  char path[300];
  snprintf(path, sizeof(path), "%s/data.mdb", cfg->data_dir);
  size_t len;
  const char *b = slurp(path, &len);
  char *before = malloc(len);
  memcpy(before, b, len);
  spike_engine *e = NULL;
  CHECK_EQ(spike_open(&e, cfg), SPIKE_ESTORAGE);
  CHECK(e == NULL);
  if (strstr(spike_open_error(), want) == NULL ||
      strstr(spike_open_error(), "nothing was written") == NULL) {
    fprintf(stderr, "want \"%s\" in: %s\n", want, spike_open_error());
    abort();
  }
  size_t len2;
  b = slurp(path, &len2);
  CHECK_EQ(len2, len);
  CHECK(memcmp(before, b, len) == 0);

  static char log[1 << 16];
  const char *args[] = {"--listen", "127.0.0.1:0", "--data", cfg->data_dir, NULL};
  CHECK_EQ(spiked_refused(args, log, sizeof(log)), 1);
  if (strstr(log, want) == NULL) {
    fprintf(stderr, "want \"%s\" in:\n%s", want, log);
    abort();
  }
  b = slurp(path, &len2);
  CHECK_EQ(len2, len);
  CHECK(memcmp(before, b, len) == 0);
  free(before);
}

static void newer_schema(void) {
  spike_config cfg;
  make_store(&cfg, "newer");
  lmdb_put_u64(cfg.data_dir, "meta", "schema", 3);
  refused_untouched(&cfg, "store schema 3 is newer than this build reads (1 to 2)");
  test_rmrf(cfg.data_dir);
}

/* Another program's LMDB environment: spike would otherwise add its
 * databases and a schema version to it. */
static void foreign_environment(void) {
  spike_config cfg;
  small_config(&cfg, "foreign");
  lmdb_put_u64(cfg.data_dir, NULL, "someone-elses", 42);
  refused_untouched(&cfg, "not a spike store");
  test_rmrf(cfg.data_dir);
}

/* ---- the map floor ------------------------------------------------------------ */

static void map_floor(void) {
  spike_config cfg;
  small_config(&cfg, "floor");
  spike_engine *e = NULL;
  cfg.map_size_bytes = (1u << 20) - 4096;
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_EINVAL);
  CHECK(strstr(spike_open_error(), "map_size_bytes is below the floor of 1 MiB") != NULL);
  /* nothing made: not even the directory's files */
  struct stat st;
  char path[300];
  snprintf(path, sizeof(path), "%s/data.mdb", cfg.data_dir);
  CHECK(stat(path, &st) != 0 && errno == ENOENT);

  /* At the floor a store works: a sale of a thousand orders fits. */
  cfg.map_size_bytes = 1u << 20;
  e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 1000);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  static spike_op ops[1000];
  int n = 0;
  for (int i = 0; i < 1000; i++) {
    ops[i].data = &n;
    CHECK_EQ(spike_reserve(p, &ops[i], 1, (uint64_t)i + 1, 1, NULL, 0, count_cb), SPIKE_PENDING);
  }
  wait_count(p, &n, 1000);
  for (int i = 0; i < 1000; i++) CHECK_EQ(ops[i].status, SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  CHECK_EQ(stat(path, &st), 0);
  printf("a sale of 1000 orders at the 1 MiB floor: data.mdb is %lld KiB\n",
         (long long)st.st_size / 1024);
  test_rmrf(cfg.data_dir);

  /* spiked: a usage error (exit 2) that says which flag */
  static char log[1 << 16];
  const char *dir = test_tmpdir("floor-spiked");
  const char *low[] = {"--listen", "127.0.0.1:0", "--data", dir, "--map-size", "1023K", NULL};
  CHECK_EQ(spiked_refused(low, log, sizeof(log)), 2);
  CHECK(strstr(log, "map-size") != NULL);
  snprintf(path, sizeof(path), "%s/data.mdb", dir);
  CHECK(stat(path, &st) != 0 && errno == ENOENT);
  static const char *const at_floor[] = {"--map-size", "1M", NULL};
  spiked sv;
  spiked_start(&sv, dir, at_floor);
  CHECK_EQ(spiked_stop(&sv, SIGTERM), 0);
  test_rmrf(dir);
  unlink(sv.log);
}

/* ---- a data directory in memory ---------------------------------------------- */

static int tmpfs_mounted;

/* A tmpfs directory: /dev/shm when it is one, else one mounted in a private
 * mount namespace; NULL when neither can be had. */
static const char *tmpfs_dir(const char *tag) {
  static char dir[300];
  struct statfs f;
  if (statfs("/dev/shm", &f) == 0 && (unsigned long)f.f_type == TMPFS_MAGIC_ &&
      access("/dev/shm", W_OK) == 0) {
    snprintf(dir, sizeof(dir), "/dev/shm/spike-test-%s-%d", tag, (int)getpid());
    test_rmrf(dir);
    CHECK_EQ(mkdir(dir, 0755), 0);
    return dir;
  }
  snprintf(dir, sizeof(dir), "%s", test_tmpdir(tag));
  if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
      mount("tmpfs", dir, "tmpfs", 0, "size=16m") != 0)
    return NULL;
  tmpfs_mounted = 1;
  return dir;
}

/* Warned, not refused: see docs/reliability.md. */
static void tmpfs_warns(void) {
  const char *dir = tmpfs_dir("tmpfs");
  if (dir == NULL) {
    printf("skip tmpfs_warns: no tmpfs here and none can be mounted (%s)\n", strerror(errno));
    return;
  }
  char data[400], errpath[300];
  snprintf(data, sizeof(data), "%s/data", dir);
  snprintf(errpath, sizeof(errpath), "%s/err", test_tmpdir("tmpfs-err"));
  spike_config cfg;
  small_config(&cfg, "tmpfs-unused");
  test_rmrf(cfg.data_dir);
  cfg.data_dir = data;
  for (int ack = 0; ack < 2; ack++) {
    cfg.ack = ack ? SPIKE_ACK_MEMORY : SPIKE_ACK_DURABLE;
    fflush(stderr);
    int saved = dup(2), fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    spike_engine *e = NULL;
    int rc = spike_open(&e, &cfg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    CHECK_EQ(rc, SPIKE_OK);
    size_t len;
    const char *log = slurp(errpath, &len);
    CHECK(strstr(log, "\"level\":\"warn\"") != NULL);
    CHECK(strstr(log, "is on tmpfs: the store is lost on reboot or power loss") != NULL);
    if ((strstr(log, "--ack durable answers survive a crash of the process") != NULL) != !ack) {
      fprintf(stderr, "ack %d: %s\n", ack, log);
      abort();
    }
    CHECK_EQ(spike_close(e), SPIKE_OK);
  }
  static const char *const args[] = {"--ack", "durable", NULL};
  spiked s;
  snprintf(data, sizeof(data), "%s/spiked", dir);
  spiked_start(&s, data, args);
  hc_resp *r = malloc(sizeof(*r));
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/ready", NULL, NULL, r), 200); /* it serves */
  free(r);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  CHECK(strstr(spiked_log(&s), "is on tmpfs: the store is lost on reboot or power loss") != NULL);
  if (tmpfs_mounted) umount(dir);
  test_rmrf(dir);
  unlink(s.log);
  *strrchr(errpath, '/') = '\0';
  test_rmrf(errpath);
}

TEST_LIST({"lib_second_opener", lib_second_opener, 30},
          {"spiked_second_opener", spiked_second_opener, 30}, {"newer_schema", newer_schema, 30},
          {"foreign_environment", foreign_environment, 30}, {"map_floor", map_floor, 60},
          {"tmpfs_warns", tmpfs_warns, 30})

/*
 * test_errors.c -- errors a caller can act on, and what comes with them:
 * "retry soon" (SPIKE_EBUSY), "a table is full" (SPIKE_EFULL) and "another
 * owner" (SPIKE_ELOCKED) are distinct statuses with their own contract
 * codes and HTTP statuses; spike_producer_error and spike_engine_error say
 * what happened in words; spike_config and spike_stats carry their size;
 * the log sink (spike_config.log_cb) gets level, module, message and
 * key-value pairs, and without one the lines are JSON on stderr.
 */
#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine_util.h"
#include "log.h"
#include "schema.h"

static void codes_and_http(void) {
  CHECK_EQ(spike_code(SPIKE_EBUSY), 50005);
  CHECK_EQ(spike_http_status(SPIKE_EBUSY), 503);
  CHECK_EQ(spike_code(SPIKE_EFULL), 50006);
  CHECK_EQ(spike_http_status(SPIKE_EFULL), 507);
  CHECK_EQ(spike_code(SPIKE_ELOCKED), 50007);
  CHECK_EQ(spike_http_status(SPIKE_ELOCKED), 503);
  CHECK_EQ(spike_code(SPIKE_EVERSION), 50008);
  CHECK_EQ(spike_http_status(SPIKE_EVERSION), 505);
  CHECK(strcmp(spike_strerror(SPIKE_EFULL), "a table is full") == 0);
  CHECK(strcmp(spike_strerror(SPIKE_ELOCKED), "the data directory is in use") == 0);
  /* no two statuses share a contract code */
  static const int codes[] = {
#define XX(name, code, http, msg) code,
      SPIKE_ERRNO_MAP(XX)
#undef XX
  };
  size_t n = sizeof(codes) / sizeof(codes[0]);
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      CHECK(codes[i] != codes[j]);
}

static int has(const char *text, const char *part) {
  if (strstr(text, part) != NULL) return 1;
  fprintf(stderr, "\"%s\" does not say \"%s\"\n", text, part);
  return 0;
}

/* Each bound answers with the status that says what to do about it, and
 * the producer's last error says which bound. */
static void busy_full_distinct(void) {
  spike_config cfg;
  small_config(&cfg, "err-bounds");
  cfg.ring_size = 4;
  cfg.max_buyers = 16; /* 12 usable */
  cfg.max_keys = 4;    /* 3 usable */
  cfg.max_events = 2;
  cfg.max_producers = 2;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p, *q, *r;
  char why[256];
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  CHECK_EQ(spike_producer_error(p, why, sizeof(why)), SPIKE_OK);
  CHECK_EQ(why[0], '\0');
  spike_event_spec s = spec_default(1, 100);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  s = spec_default(2, 100);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  /* events: a table */
  spike_op op;
  s = spec_default(3, 100);
  CHECK_EQ(spike_event_create(p, &op, &s, count_cb), SPIKE_EFULL);
  CHECK_EQ(spike_producer_error(p, why, sizeof(why)), SPIKE_EFULL);
  CHECK(has(why, "spike_event_create: a table is full: event table full (max_events)"));
  /* producers: a table, said by the engine */
  CHECK_EQ(spike_producer_open(e, &q), SPIKE_OK);
  CHECK_EQ(spike_producer_open(e, &r), SPIKE_EFULL);
  CHECK_EQ(spike_engine_error(e, why, sizeof(why)), SPIKE_EFULL);
  CHECK(has(why, "all 2 producers are open (max_producers)"));
  CHECK_EQ(spike_producer_close(q), SPIKE_OK);
  /* in flight: busy, retry */
  static spike_op ops[5];
  int n = 0;
  for (int i = 0; i < 4; i++) {
    ops[i].data = &n;
    CHECK_EQ(spike_reserve(p, &ops[i], 1, 100 + (uint64_t)i, 1, NULL, 0, count_cb), SPIKE_PENDING);
  }
  CHECK_EQ(spike_reserve(p, &ops[4], 1, 200, 1, NULL, 0, count_cb), SPIKE_EBUSY);
  CHECK_EQ(spike_producer_error(p, why, sizeof(why)), SPIKE_EBUSY);
  CHECK(has(why, "spike_reserve: overloaded: too many operations in flight; retry soon"));
  /* closes while work is outstanding: busy, and said */
  CHECK_EQ(spike_producer_close(p), SPIKE_EBUSY);
  CHECK_EQ(spike_producer_error(p, why, sizeof(why)), SPIKE_EBUSY);
  CHECK(has(why, "in flight: drain first"));
  CHECK_EQ(spike_close(e), SPIKE_EBUSY);
  CHECK_EQ(spike_engine_error(e, why, sizeof(why)), SPIKE_EBUSY);
  CHECK(has(why, "1 producer is still open"));
  wait_count(p, &n, 4);
  /* keys: a table (4 slots, 3 usable) */
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 2, 100, 1, "k1", 2, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 2, 101, 1, "k2", 2, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 2, 102, 1, "k3", 2, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_reserve(p, &op, 2, 103, 1, "k4", 2, count_cb), SPIKE_EFULL);
  CHECK(has(op.detail, "idempotency key table full (max_keys)"));
  /* buyers, (event, user) pairs: a table; 7 of 12 used */
  for (uint64_t u = 104; u < 109; u++)
    CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, u, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_reserve(p, &op, 1, 109, 1, NULL, 0, count_cb), SPIKE_EFULL);
  CHECK_EQ(spike_producer_error(p, why, sizeof(why)), SPIKE_EFULL);
  CHECK(has(why, "buyer table full (max_buyers); raise it in spike_config"));
  /* a failure delivered to a callback becomes the last error too */
  CHECK_EQ(settle(p, &op, spike_pay(p, &op, 424242, 0, "x", 1, count_cb)), SPIKE_ENOORDER);
  CHECK_EQ(spike_producer_error(p, why, sizeof(why)), SPIKE_ENOORDER);
  CHECK(has(why, "spike_pay: order not found"));
  /* cut to the caller's buffer, NUL-terminated */
  char small[8];
  CHECK_EQ(spike_producer_error(p, small, sizeof(small)), SPIKE_ENOORDER);
  CHECK_EQ(strlen(small), 7);
  CHECK_EQ(spike_producer_error(p, NULL, 0), SPIKE_ENOORDER);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* Live reservations: a table too, whose entries end on their own. */
static void reservations_full(void) {
  spike_config cfg;
  small_config(&cfg, "err-armed");
  cfg.max_reserved = 2;
  spike_engine *e = open_engine(&cfg);
  spike_producer *p = producer_with_event(e, 1, 100, 1);
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  uint64_t first = op.r.order.id;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, 2, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_reserve(p, &op, 1, 3, 1, NULL, 0, count_cb), SPIKE_EFULL);
  CHECK(has(op.detail, "reservation table full (max_reserved)"));
  const char *why;
  CHECK_EQ(spike_health(e, &why), SPIKE_EFULL);
  /* a cancel ends one: room again */
  CHECK_EQ(settle(p, &op, spike_cancel(p, &op, first, 1, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, 3, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* A locked directory: ELOCKED, naming this process or the other's pid. */
static void locked_by_another_owner(void) {
  spike_config cfg;
  small_config(&cfg, "err-lock");
  spike_engine *e = open_engine(&cfg), *e2;
  CHECK_EQ(spike_open(&e2, &cfg), SPIKE_ELOCKED);
  CHECK(has(spike_open_error(), "already open in this process"));
  /* the same directory by another path is the same directory */
  char other[4200];
  snprintf(other, sizeof(other), "%s/.", cfg.data_dir);
  spike_config c2 = cfg;
  c2.data_dir = other;
  CHECK_EQ(spike_open(&e2, &c2), SPIKE_ELOCKED);
  CHECK_EQ(spike_close(e), SPIKE_OK);

  /* another process holds it */
  int ready[2], go[2];
  CHECK_EQ(pipe(ready), 0);
  CHECK_EQ(pipe(go), 0);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    spike_engine *mine;
    char c = spike_open(&mine, &cfg) == SPIKE_OK ? 'y' : 'n';
    if (write(ready[1], &c, 1) != 1) _exit(2);
    if (read(go[0], &c, 1) != 1) _exit(2);
    _exit(spike_close(mine) == SPIKE_OK ? 0 : 1);
  }
  char c;
  CHECK_EQ(read(ready[0], &c, 1), 1);
  CHECK_EQ(c, 'y');
  CHECK_EQ(spike_open(&e2, &cfg), SPIKE_ELOCKED);
  char pidtext[64];
  snprintf(pidtext, sizeof(pidtext), "in use by another process (pid %d)", (int)pid);
  CHECK(has(spike_open_error(), pidtext));
  CHECK_EQ(write(go[1], "x", 1), 1);
  int st;
  CHECK_EQ(waitpid(pid, &st, 0), pid);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  /* free again once it closed */
  e = open_engine(&cfg);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* A reserve refused at a full table takes no slot in the others: the
 * tables never delete, so it would hold them until a restart, and the
 * next reserve would be refused naming the wrong table. */
static void full_table_takes_no_slot(void) {
  for (int which = 0; which < 2; which++) {
    spike_config cfg;
    small_config(&cfg, "err-fulltab");
    cfg.max_users = which == 0 ? 4 : 64;   /* 3 usable */
    cfg.max_buyers = which == 0 ? 16 : 4;  /* 12 or 3 usable */
    cfg.max_keys = 16;
    spike_engine *e = open_engine(&cfg);
    spike_producer *p;
    CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
    for (uint64_t ev = 1; ev <= 2; ev++) {
      spike_event_spec s = spec_default(ev, 100);
      s.per_user_limit = 5;
      CHECK_EQ(create_event(p, &s), SPIKE_OK);
    }
    spike_op op;
    for (uint64_t u = 1; u <= 3; u++)
      CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, u, 1, NULL, 0, count_cb)), SPIKE_OK);
    spike_stats before, after;
    spike_stats_get(e, &before);
    for (uint64_t u = 100; u < 112; u++) {
      char key[16];
      snprintf(key, sizeof(key), "k%llu", (unsigned long long)u);
      CHECK_EQ(spike_reserve(p, &op, 1, u, 1, key, strlen(key), count_cb), SPIKE_EFULL);
      CHECK(has(op.detail, which == 0 ? "user table full" : "buyer table full"));
    }
    spike_stats_get(e, &after);
    CHECK_EQ(after.buyers_used, before.buyers_used);
    CHECK_EQ(after.users_used, before.users_used);
    CHECK_EQ(after.keys_used, before.keys_used);
    if (which == 0) {
      /* a known user buys another event: a buyer slot it can still have */
      CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 2, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
    } else {
      /* a known buyer buys again, with a key: the key table has room */
      CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, 1, 1, "again", 5, count_cb)), SPIKE_OK);
    }
    CHECK_EQ(spike_producer_close(p), SPIKE_OK);
    CHECK_EQ(spike_close(e), SPIKE_OK);
    test_rmrf(cfg.data_dir);
  }
}

/* A data file cut short (an interrupted copy, a restore onto a full disk)
 * is refused at open with words, not read until a page past its end faults
 * the process with SIGBUS; the file is left as it was. */
static void cut_short_store(void) {
  spike_config cfg;
  small_config(&cfg, "err-short");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 100000);
  s.per_user_limit = 100000;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op op;
  for (uint64_t u = 1; u <= 2000; u++) /* a file of many pages */
    CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, u, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  spike_stats st;
  spike_stats_get(e, &st);
  off_t used = (off_t)st.map_used_bytes; /* the pages LMDB uses */
  CHECK_EQ(spike_close(e), SPIKE_OK);
  char data[4200];
  snprintf(data, sizeof(data), "%s/data.mdb", cfg.data_dir);
  struct stat sb;
  CHECK_EQ(stat(data, &sb), 0);
  CHECK(used > 16 * 4096 && sb.st_size >= used);
  /* The writer keeps the file written past those pages (store/schema.c,
   * store_write_ahead), except in memory; the zeros are not part of the
   * store: a file cut to the pages LMDB uses opens with every order. */
  struct statfs fs;
  CHECK_EQ(statfs(cfg.data_dir, &fs), 0);
  const char *fs_name;
  if (store_fs_of((unsigned long)fs.f_type, &fs_name) != STORE_FS_PLAIN ||
      (uint64_t)fs.f_bavail * (uint64_t)fs.f_bsize < (80ull << 20))
    fprintf(stderr, "note: %s is in memory, copy-on-write or nearly full: no writing ahead to check\n",
            cfg.data_dir);
  else
    CHECK(sb.st_size >= used + (512 << 10));
  CHECK_EQ(truncate(data, used), 0);
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_OK);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 1, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 2000);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  CHECK_EQ(stat(data, &sb), 0);
  /* half, a page short, and nothing at all (an empty file was taken for a
   * new store: the restored orders silently gone) */
  for (int cut = 0; cut < 4; cut++) {
    off_t to = cut == 0 ? used / 2 : cut == 1 ? used - 4096 : cut == 2 ? 100 : 0;
    CHECK_EQ(truncate(data, to), 0);
    spike_engine *e2 = NULL;
    CHECK_EQ(spike_open(&e2, &cfg), SPIKE_ESTORAGE);
    CHECK(e2 == NULL);
    CHECK(has(spike_open_error(), "cut short"));
    struct stat now;
    CHECK_EQ(stat(data, &now), 0);
    CHECK_EQ(now.st_size, to);
  }
  test_rmrf(cfg.data_dir);
}

/* ---- sizes -------------------------------------------------------------- */

static void config_carries_its_size(void) {
  spike_config cfg;
  spike_engine *e;
  /* not made by spike_config_init */
  memset(&cfg, 0, sizeof(cfg));
  cfg.data_dir = test_tmpdir("err-size");
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_EMISUSE);
  CHECK(has(spike_open_error(), "spike_config_init"));
  /* from a newer spike.h than this library */
  small_config(&cfg, "err-size");
  cfg.size = sizeof(cfg) + 8;
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_EMISUSE);
  CHECK(has(spike_open_error(), "newer spike.h"));
  /* ... also when made by spike_config_init of that newer spike.h (its
   * inline wrapper passes the larger size): its own fields zeroed */
  struct {
    spike_config c;
    unsigned char more[8];
  } newer;
  memset(&newer, 0xa5, sizeof(newer));
  spike_config_init_size(&newer.c, sizeof(newer));
  CHECK_EQ(newer.c.size, sizeof(newer));
  for (size_t i = 0; i < sizeof(newer.more); i++) CHECK_EQ(newer.more[i], 0);
  newer.c.data_dir = test_tmpdir("err-size");
  CHECK_EQ(spike_open(&e, &newer.c), SPIKE_EMISUSE);
  CHECK(has(spike_open_error(), "newer spike.h"));
  /* 0.2.0's spike.h: its size ends with log_level's padding; the fields
   * after it (memory_commit_us) keep their defaults whatever its padding
   * held */
  size_t v020 = (offsetof(spike_config, log_level) + sizeof(spike_log_level) + 7) / 8 * 8;
  CHECK(offsetof(spike_config, memory_commit_us) >= v020);
  small_config(&cfg, "err-size");
  cfg.size = (uint32_t)v020;
  cfg.ack = SPIKE_ACK_MEMORY;
  memset((char *)&cfg + offsetof(spike_config, log_level) + sizeof(spike_log_level), 0xff,
         sizeof(cfg) - offsetof(spike_config, log_level) - sizeof(spike_log_level));
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_OK); /* 0xffffffff would be refused as a pace */
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
  /* an older spike.h, which ended at feed_retain: the rest is defaulted */
  size_t old = offsetof(spike_config, feed_retain) + sizeof(uint64_t);
  memset(&cfg, 0xa5, sizeof(cfg)); /* what an older caller never wrote */
  spike_config_init_size(&cfg, old);
  CHECK_EQ(cfg.size, old);
  cfg.data_dir = test_tmpdir("err-size");
  cfg.map_size_bytes = 16u << 20;
  cfg.max_buyers = cfg.max_keys = cfg.max_reserved = 1u << 12;
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  /* the defaults */
  spike_config_init(&cfg);
  CHECK_EQ(cfg.size, sizeof(cfg));
  CHECK(cfg.log_cb == NULL);
  CHECK_EQ(cfg.log_level, SPIKE_LOG_INFO);
  test_rmrf(test_tmpdir("err-size"));
}

static void stats_carry_their_size(void) {
  spike_config cfg;
  small_config(&cfg, "err-stats");
  spike_engine *e = open_engine(&cfg);
  /* an older, smaller spike_stats: nothing past it is written */
  struct {
    spike_stats st;
    unsigned char canary[64];
  } buf;
  memset(&buf, 0x5a, sizeof(buf));
  size_t part = offsetof(spike_stats, commit_seconds_count);
  spike_stats_get_size(e, &buf.st, part);
  CHECK_EQ(buf.st.size, part);
  const unsigned char *b = (const unsigned char *)&buf.st;
  for (size_t i = part; i < sizeof(buf); i++)
    CHECK_EQ(b[i], 0x5a);
  spike_stats st;
  spike_stats_get(e, &st);
  CHECK_EQ(st.size, sizeof(st));
  CHECK(st.buyers_capacity > 0);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* ---- logging ------------------------------------------------------------ */

typedef struct logged {
  int lines, kv_ok;
  spike_log_level level;
  char module[16], msg[256];
} logged;

static void sink(void *ctx, spike_log_level level, const char *module, const char *msg,
                 const spike_log_kv *kv, size_t n) {
  logged *l = ctx;
  l->lines++;
  l->level = level;
  snprintf(l->module, sizeof(l->module), "%s", module);
  snprintf(l->msg, sizeof(l->msg), "%s", msg);
  int seen = 0;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(kv[i].key, "schema") == 0 && strcmp(kv[i].value, "2") == 0) seen++;
    if (strcmp(kv[i].key, "orders") == 0 && atoi(kv[i].value) > 0) seen++;
  }
  l->kv_ok = seen == 2;
}

/* The schema 1 fixture logs its migration (info, engine, with kv). */
static void open_fixture(spike_config *cfg, const char *tag) {
  small_config(cfg, tag);
  char cmd[1024];
  snprintf(cmd, sizeof(cmd), "cp tests/fixtures/schema1/data.mdb '%s/data.mdb'", cfg->data_dir);
  CHECK_EQ(system(cmd), 0);
}

static void log_callback(void) {
  spike_config cfg;
  open_fixture(&cfg, "err-log");
  logged l = {0};
  cfg.log_cb = sink;
  cfg.log_ctx = &l;
  spike_engine *e = open_engine(&cfg);
  CHECK_EQ(l.lines, 1);
  CHECK_EQ(l.level, SPIKE_LOG_INFO);
  CHECK(strcmp(l.module, "engine") == 0);
  CHECK(has(l.msg, "migrated"));
  CHECK(l.kv_ok);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
  /* below log_level: dropped before the sink */
  open_fixture(&cfg, "err-log");
  memset(&l, 0, sizeof(l));
  cfg.log_cb = sink;
  cfg.log_ctx = &l;
  cfg.log_level = SPIKE_LOG_WARN;
  e = open_engine(&cfg);
  CHECK_EQ(l.lines, 0);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
  /* a level that is not one */
  small_config(&cfg, "err-log");
  cfg.log_level = (spike_log_level)7;
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_EINVAL);
  CHECK(has(spike_open_error(), "log_level"));
  /* a map past 64 TiB: address space an open cannot have */
  small_config(&cfg, "err-log");
  cfg.map_size_bytes = (1ull << 46) + 1;
  CHECK_EQ(spike_open(&e, &cfg), SPIKE_EINVAL);
  CHECK(has(spike_open_error(), "above 64 TiB"));
  /* more live reservations on disk than max_reserved: the bound rises to
   * hold them, and says so (it rose silently) */
  small_config(&cfg, "err-log");
  e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(1, 100);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op op;
  for (uint64_t u = 1; u <= 3; u++)
    CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 1, u, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  memset(&l, 0, sizeof(l));
  cfg.log_cb = sink;
  cfg.log_ctx = &l;
  cfg.max_reserved = 2;
  e = open_engine(&cfg);
  CHECK_EQ(l.level, SPIKE_LOG_WARN);
  CHECK(has(l.msg, "3 live reservations on disk, more than max_reserved (2)"));
  spike_stats st;
  spike_stats_get(e, &st);
  CHECK_EQ(st.reservations_capacity, 3);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

static void log_default_json_on_stderr(void) {
  spike_config cfg;
  open_fixture(&cfg, "err-log-json");
  char path[4200];
  snprintf(path, sizeof(path), "%s.stderr", cfg.data_dir);
  int fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0644);
  CHECK(fd >= 0);
  int saved = dup(2);
  CHECK(dup2(fd, 2) == 2);
  spike_engine *e = open_engine(&cfg);
  CHECK(dup2(saved, 2) == 2);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  char text[4096];
  ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
  CHECK(n > 0);
  text[n] = '\0';
  close(fd);
  close(saved);
  unlink(path);
  CHECK(has(text, "{\"ts\":\""));
  CHECK(has(text, "\"level\":\"info\",\"module\":\"engine\",\"msg\":\"migrated "));
  CHECK(has(text, "\"schema\":\"2\""));
  CHECK(has(text, "\"orders\":\""));
  CHECK(has(text, "}\n"));
  test_rmrf(cfg.data_dir);
}

/* What a client sends ends up in JSON lines: whatever the bytes, the
 * escape is valid JSON text (UTF-8 kept, anything else U+FFFD). */
static void escape_any_bytes(void) {
  static const struct {
    const char *in, *out;
  } cases[] = {
      {"/caf\xc3\xa9", "/caf\xc3\xa9"},              /* é: kept */
      {"/\xe2\x82\xac\xf0\x9f\x98\x80", "/\xe2\x82\xac\xf0\x9f\x98\x80"}, /* € and an emoji */
      {"/\xff", "/\\ufffd"},                           /* never UTF-8 */
      {"/\xc0\xaf", "/\\ufffd\\ufffd"},                /* overlong '/' */
      {"/12\xe9", "/12\\ufffd"},                       /* Latin-1 */
      {"/\xed\xa0\x80", "/\\ufffd\\ufffd\\ufffd"},    /* a surrogate */
      {"/\xf4\x90\x80\x80", "/\\ufffd\\ufffd\\ufffd\\ufffd"}, /* past U+10FFFF */
      {"/\xe2\x82", "/\\ufffd\\ufffd"},                /* a character cut short */
      {"a\"b\\c\x01", "a\\\"b\\\\c\\u0001"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    char out[128];
    log_escape(out, sizeof(out), cases[i].in, strlen(cases[i].in));
    if (strcmp(out, cases[i].out) != 0) {
      fprintf(stderr, "case %zu: got %s\n", i, out);
      abort();
    }
  }
  /* a cut at cap never splits an escape or a character */
  char small[12];
  size_t n = log_escape(small, sizeof(small), "\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9);
  CHECK(n <= sizeof(small) - 1 && n % 3 == 0 && small[n] == '\0');
}

TEST_LIST({"codes_and_http", codes_and_http, 0}, {"cut_short_store", cut_short_store, 0}, {"full_table_takes_no_slot", full_table_takes_no_slot, 0}, {"escape_any_bytes", escape_any_bytes, 0}, {"busy_full_distinct", busy_full_distinct, 0},
          {"reservations_full", reservations_full, 0},
          {"locked_by_another_owner", locked_by_another_owner, 0},
          {"config_carries_its_size", config_carries_its_size, 0},
          {"stats_carry_their_size", stats_carry_their_size, 0}, {"log_callback", log_callback, 0},
          {"log_default_json_on_stderr", log_default_json_on_stderr, 0})

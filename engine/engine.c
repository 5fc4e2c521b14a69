/*
 * engine.c -- libspike's public surface: open and close, producers, the
 * producer-side half of every operation, and the reads.
 *
 * The reserve path is the one that matters for speed. It touches, in order:
 * the event's hot cache line (sold-out short-circuit, sale window), the
 * idempotency table (only with a key), the buyer's entry, the event's
 * counter word (one CAS), this producer's id generator, and one ring slot.
 * No lock, no allocation, no syscall unless the writer is asleep.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "backup.h"
#include "engine.h"
#include "log.h"
#include "mem.h"
#include "recover.h"
#include "writer.h"

const double spike_commit_bucket_s[SPIKE_COMMIT_BUCKETS] = {
    0.00005, 0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064,
    0.0128,  0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192, 1.6384};
const uint32_t spike_batch_bucket[SPIKE_BATCH_BUCKETS] = {1,   2,   4,    8,    16,   32,  64,
                                                          128, 256, 512, 1024, 2048, 4096, 8192};

/* ---- status table ------------------------------------------------------ */

const char *spike_strerror(int status) {
  switch (status) {
  case SPIKE_OK: return "ok";
  case SPIKE_PENDING: return "pending";
#define XX(name, code, http, msg) \
  case SPIKE_##name: return msg;
    SPIKE_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown status";
}

int spike_code(int status) {
  switch (status) {
#define XX(name, code, http, msg) \
  case SPIKE_##name: return code;
    SPIKE_ERRNO_MAP(XX)
#undef XX
  case SPIKE_OK: return 0;
  }
  return 50002; /* an unknown status (SPIKE_PENDING, a libuv error) is internal, as its 500 */
}

int spike_http_status(int status) {
  switch (status) {
#define XX(name, code, http, msg) \
  case SPIKE_##name: return http;
    SPIKE_ERRNO_MAP(XX)
#undef XX
  }
  return status == SPIKE_OK ? 200 : 500;
}

const char *spike_version(void) { return SPIKE_VERSION_STRING; }

const char *spike_change_name(spike_change_type type) {
  static const char *const names[] = {
      NULL,           "order.reserved",  "order.paid",   "order.cancelled",
      "order.expired", "event.created", "event.restocked", "event.closed"};
  return type >= 1 && type <= SPIKE_CHANGE_EVENT_CLOSED ? names[type] : NULL;
}

const char *spike_event_state_name(spike_event_state state) {
  static const char *const names[] = {"scheduled", "live", "sold_out", "ended", "closed"};
  return (unsigned)state <= SPIKE_EVENT_CLOSED ? names[state] : NULL;
}

const char *spike_order_state_name(spike_order_state state) {
  static const char *const names[] = {NULL, "reserved", "paid", "cancelled", "expired"};
  return state >= 1 && state <= SPIKE_ORDER_EXPIRED ? names[state] : NULL;
}

/* ---- time, logs, wake-ups ---------------------------------------------- */

int64_t engine_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t engine_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t engine_mono_ms(void) { return (int64_t)(engine_mono_ns() / 1000000u); }

void engine_log(spike_engine *e, int level, const char *module, const spike_log_kv *kv, size_t n,
                const char *fmt, ...) {
  if (level < (int)e->cfg.log_level) return;
  if (e->cfg.log_cb == NULL && !log_enabled(level)) return;
  char msg[LOG_LINE_MAX / 2];
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (m < 0) msg[0] = '\0';
  if (e->cfg.log_cb != NULL)
    e->cfg.log_cb(e->cfg.log_ctx, (spike_log_level)level, module, msg, kv, n);
  else
    log_kv(level, module, kv, n, msg);
}

void engine_error(spike_engine *e, int status, const char *module, const char *fmt, ...) {
  char text[sizeof(e->err_text)];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&e->err_lock);
  e->err_status = status;
  memcpy(e->err_text, text, sizeof(text));
  pthread_mutex_unlock(&e->err_lock);
  if (module != NULL) engine_log(e, LOG_ERROR, module, NULL, 0, "%s", text);
}

static int copy_error(int status, const char *text, char *buf, size_t cap) {
  if (buf != NULL && cap > 0) snprintf(buf, cap, "%s", text);
  return status;
}

int spike_engine_error(spike_engine *e, char *buf, size_t cap) {
  if (e == NULL) return copy_error(SPIKE_EMISUSE, "spike_engine_error: the engine is NULL", buf, cap);
  pthread_mutex_lock(&e->err_lock);
  int status = copy_error(e->err_status, e->err_text, buf, cap);
  pthread_mutex_unlock(&e->err_lock);
  return status;
}

static void wake(spike_engine *e) {
  if (atomic_exchange_explicit(&e->writer_sleeping, WRITER_AWAKE, memory_order_seq_cst) != WRITER_AWAKE)
    syscall(SYS_futex, (int *)&e->writer_sleeping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void engine_wake_writer(spike_engine *e) {
  /* seq_cst: the producer's half of the handshakes in writer_sleep and
   * pace. The tail was stored seq_cst (ring_publish_sc), then urgent; the
   * load below cannot move above them, so either the writer sees the
   * message (and urgent) or this sees it asleep or pacing. */
  if (e->pacing) atomic_store_explicit(&e->urgent, 1, memory_order_seq_cst);
  if (atomic_load_explicit(&e->writer_sleeping, memory_order_seq_cst) != WRITER_AWAKE) wake(e);
}

/* A message nobody waits on (a reserve answered at enqueue, a long feed
 * wait) while the writer paces: it wakes a writer that sleeps with nothing
 * to do, and otherwise waits for the pace, as it may; but once this ring is
 * half full it is urgent (so that the flag, not a look at a writer that
 * may be busy just then, carries it to the next pace). */
static void nudge_writer(spike_engine *e, spike_producer *p) {
  if (ring_depth(&p->submit) >= ring_capacity(&p->submit) / 2) {
    engine_wake_writer(e);
    return;
  }
  if (atomic_load_explicit(&e->writer_sleeping, memory_order_seq_cst) == WRITER_ASLEEP) wake(e);
}

/* After ring_publish_sc: tell the writer of a message, urgent when its
 * caller waits for the commit. */
static void tell_writer(spike_engine *e, spike_producer *p, int urgent) {
  if (urgent || !e->pacing)
    engine_wake_writer(e);
  else
    nudge_writer(e, p);
}

/* ---- configuration and open ------------------------------------------- */

static void config_defaults(spike_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->size = sizeof(*cfg);
  cfg->data_dir = "./data";
  cfg->map_size_bytes = 1ull << 30;
  cfg->ack = SPIKE_ACK_DURABLE;
  cfg->batch_max = 4096;
  cfg->batch_us = 0;
  cfg->max_events = 4096;
  cfg->max_buyers = 1u << 20;
  cfg->max_users = 0; /* as max_buyers */
  cfg->max_keys = 1u << 20;
  cfg->max_reserved = 1u << 20;
  cfg->max_producers = 16;
  cfg->ring_size = 8192;
  cfg->max_feed_waiters = 1024;
  cfg->feed_retain = 0;
  cfg->log_cb = NULL;
  cfg->log_ctx = NULL;
  cfg->log_level = SPIKE_LOG_INFO;
  cfg->memory_commit_us = 5000;
}

/* The first spike_config of this ABI ended with feed_retain: a smaller
 * size than that is not a spike_config_init's. */
#define CONFIG_SIZE_MIN (offsetof(spike_config, feed_retain) + sizeof(uint64_t))

/* The size of 0.2.0's spike_config: log_level, then padding. A field added
 * since must begin past it (spike.h says why). */
#define CONFIG_SIZE_0_2_0                                                                    \
  ((offsetof(spike_config, log_level) + sizeof(spike_log_level) + _Alignof(spike_config) - 1) / \
   _Alignof(spike_config) * _Alignof(spike_config))
_Static_assert(offsetof(spike_config, memory_commit_us) >= CONFIG_SIZE_0_2_0,
               "memory_commit_us is inside the padding an older spike.h's size covers");
_Static_assert(sizeof(spike_config) % 8 == 0 &&
                   offsetof(spike_config, reserved2_) + sizeof(uint32_t) == sizeof(spike_config),
               "spike_config has tail padding: a field added there would not grow it");

void spike_config_init_size(spike_config *cfg, size_t size) {
  spike_config d;
  config_defaults(&d);
  if (cfg == NULL || size < CONFIG_SIZE_MIN || size > UINT32_MAX)
    return; /* not a spike_config: spike_open refuses it */
  /* A config from a newer spike.h keeps its size, so that spike_open
   * refuses it rather than ignore what it asks; its fields this library
   * does not know are zeroed. */
  size_t known = size < sizeof(d) ? size : sizeof(d);
  memcpy(cfg, &d, known);
  if (size > known) memset((char *)cfg + known, 0, size - known);
  cfg->size = (uint32_t)size;
}

static _Thread_local char open_err[PATH_MAX + 512];

const char *spike_open_error(void) { return open_err; }

/* The smallest map accepted. An empty store takes 4 pages (16 KiB); at 1 MiB
 * a sale of a few thousand orders fits. A map that fills later fails its
 * batches cleanly (map full), so the floor only refuses what cannot be
 * meant. */
#define MAP_SIZE_MIN_BYTES (1u << 20)
/* A map is address space: 64 TiB is half of x86-64's user half, and more
 * than that failed at open as "out of memory" */
#define MAP_SIZE_MAX_BYTES (1ull << 46)

static int is_pow2(uint32_t n) { return n >= 2 && (n & (n - 1)) == 0; }

static const char *check_config(const spike_config *c) {
  if ((unsigned)c->log_level > SPIKE_LOG_ERROR) return "log_level is not a spike_log_level";
  if (c->data_dir == NULL || c->data_dir[0] == '\0') return "data_dir is empty";
  if (strlen(c->data_dir) > PATH_MAX - 32) return "data_dir is too long";
  if (c->map_size_bytes < MAP_SIZE_MIN_BYTES) return "map_size_bytes is below the floor of 1 MiB";
  if (c->map_size_bytes > MAP_SIZE_MAX_BYTES) return "map_size_bytes is above 64 TiB (2^46)";
  if (c->ack != SPIKE_ACK_DURABLE && c->ack != SPIKE_ACK_MEMORY) return "ack is not a mode";
  if (c->batch_max < 1 || c->batch_max > 65536) return "batch_max is not in 1..65536";
  if (c->batch_us > 1000000) return "batch_us is above 1 s";
  if (c->memory_commit_us > 1000000) return "memory_commit_us is above 1 s";
  if (c->max_events < 1 || c->max_events > (1u << 24)) return "max_events is not in 1..2^24";
  if (!is_pow2(c->max_buyers) || c->max_buyers < 4 || c->max_buyers > (1u << 30))
    return "max_buyers is not a power of two in 4..2^30";
  if (!is_pow2(c->max_keys) || c->max_keys < 4 || c->max_keys > (1u << 30))
    return "max_keys is not a power of two in 4..2^30";
  if (c->max_users != 0 && (!is_pow2(c->max_users) || c->max_users < 4 || c->max_users > (1u << 30)))
    return "max_users is not 0 or a power of two in 4..2^30";
  if (c->max_reserved < 1 || c->max_reserved > (1u << 30))
    return "max_reserved is not in 1..2^30";
  if (c->max_producers < 1 || c->max_producers > SPIKE_PRODUCERS_MAX)
    return "max_producers is not in 1..64";
  if (!is_pow2(c->ring_size) || c->ring_size > (1u << 24))
    return "ring_size is not a power of two in 2..2^24";
  if (c->max_feed_waiters < 1) return "max_feed_waiters is 0";
  return NULL;
}

static int mkdir_p(const char *path) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof(buf), "%s", path);
  for (char *p = buf + 1; *p != '\0'; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
  return 0;
}

/* The engines open in this process, by data directory: flock alone cannot
 * tell a second open here from one in another process. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static spike_engine *open_list;

static void unregister_dir(spike_engine *e) {
  pthread_mutex_lock(&open_lock);
  for (spike_engine **pp = &open_list; *pp != NULL; pp = &(*pp)->open_next)
    if (*pp == e) {
      *pp = e->open_next;
      break;
    }
  pthread_mutex_unlock(&open_lock);
}

/* The engine this process has open on the directory st describes, or NULL.
 * open_lock held. */
static const spike_engine *open_here(const struct stat *st) {
  for (const spike_engine *o = open_list; o != NULL; o = o->open_next)
    if (o->open_pid == getpid() && o->dir_dev == (uint64_t)st->st_dev &&
        o->dir_ino == (uint64_t)st->st_ino)
      return o;
  return NULL;
}

/* One engine per data directory, in this process and across processes: two
 * would each believe they own the stock. LMDB alone would let both in. The
 * lock file holds the owner's pid, for the message a second opener gets. */
static int lock_dir(spike_engine *e) {
  char path[PATH_MAX];
  struct stat st;
  if (stat(e->data_dir, &st) != 0) {
    snprintf(open_err, sizeof(open_err), "%s: %s", e->data_dir, strerror(errno));
    return SPIKE_ESTORAGE;
  }
  pthread_mutex_lock(&open_lock);
  const spike_engine *o = open_here(&st);
  if (o != NULL) {
    snprintf(open_err, sizeof(open_err),
             "%s is already open in this process (as %s): one engine per data directory",
             e->data_dir, o->data_dir);
    pthread_mutex_unlock(&open_lock);
    return SPIKE_ELOCKED;
  }
  e->dir_dev = (uint64_t)st.st_dev;
  e->dir_ino = (uint64_t)st.st_ino;
  e->open_pid = getpid();
  e->open_next = open_list;
  open_list = e;
  pthread_mutex_unlock(&open_lock);
  snprintf(path, sizeof(path), "%s/spike.lock", e->data_dir);
  e->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (e->lock_fd < 0) {
    snprintf(open_err, sizeof(open_err), "%s: %s", path, strerror(errno));
    return SPIKE_ESTORAGE;
  }
  if (flock(e->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    char buf[24];
    ssize_t n = pread(e->lock_fd, buf, sizeof(buf) - 1, 0);
    long pid = 0;
    if (n > 0) {
      buf[n] = '\0';
      pid = strtol(buf, NULL, 10);
    }
    if (pid > 0)
      snprintf(open_err, sizeof(open_err), "%s is in use by another process (pid %ld)",
               e->data_dir, pid);
    else
      snprintf(open_err, sizeof(open_err), "%s is in use by another process", e->data_dir);
    return SPIKE_ELOCKED;
  }
  char pid[24];
  int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
  /* A failure here costs only the pid in another opener's refusal. */
  int written = ftruncate(e->lock_fd, 0) == 0 && pwrite(e->lock_fd, pid, (size_t)n, 0) == n;
  (void)written;
  return SPIKE_OK;
}

/* A data directory in memory keeps every promise but one: nothing survives
 * a reboot or a power cut, acknowledged orders included. Worth a warning,
 * not a refusal: tests, CI and throwaway demos run there on purpose, and a
 * volatile disk is not always visible from here anyway (an overlay whose
 * upper layer is in memory, a disk that ignores flushes). */
static void warn_if_volatile(spike_engine *e) {
  struct statfs f;
  if (statfs(e->data_dir, &f) != 0) return;
  const char *fs;
  if (store_fs_of((unsigned long)f.f_type, &fs) != STORE_FS_MEMORY) return;
  engine_log(e, LOG_WARN, "engine", NULL, 0,
             "%s is on %s: the store is lost on reboot or power loss%s", e->data_dir, fs,
             e->cfg.ack == SPIKE_ACK_DURABLE
                 ? ", so --ack durable answers survive a crash of the process, not of the machine"
                 : "");
}

static void free_engine(spike_engine *e) {
  if (e->w != NULL) writer_destroy(e->w);
  if (e->producers != NULL) {
    for (uint32_t i = 0; i < e->cfg.max_producers; i++) {
      ring_free(&e->producers[i].submit);
      ring_free(&e->producers[i].done);
      free(e->producers[i].pend);
      if (e->producers[i].efd >= 0) close(e->producers[i].efd);
    }
    free(e->producers);
  }
  store_close(e->st);
  lim_free(&e->keys);
  lim_free(&e->users);
  mem_free((void *)e->user_head, (size_t)e->cfg.max_users * sizeof(*e->user_head));
  lim_free(&e->buyers);
  slab_free(&e->slab);
  if (e->lock_fd >= 0) close(e->lock_fd);
  unregister_dir(e);
  pthread_mutex_destroy(&e->producers_lock);
  pthread_mutex_destroy(&e->err_lock);
  free(e->data_dir);
  free(e);
}

/* A restored store says so at every open, loudest at the first. */
static void log_origin(spike_engine *e) {
  store_origin o;
  store_get_origin(e->st, &o);
  if (o.restored_from == 0) return;
  char id[24], from[24], seq[24];
  snprintf(id, sizeof(id), "%016llx", (unsigned long long)store_id(e->st));
  snprintf(from, sizeof(from), "%016llx", (unsigned long long)o.restored_from);
  snprintf(seq, sizeof(seq), "%llu", (unsigned long long)o.restored_seq);
  const spike_log_kv kv[] = {
      {"dataDir", e->data_dir}, {"storeId", id}, {"restoredFrom", from}, {"restoredSeq", seq}};
  if (o.restored_now)
    engine_log(e, LOG_WARN, "engine", kv, 4,
               "restored from a backup of store %s at feed seq %s: this is store %s now; feed "
               "consumers must resync (docs/operations.md, Backups)",
               from, seq, id);
  else
    engine_log(e, LOG_INFO, "engine", kv, 4, "store %s was restored from store %s at feed seq %s",
               id, from, seq);
}

int spike_open(spike_engine **out, const spike_config *user_cfg) {
  open_err[0] = '\0';
  if (out != NULL) *out = NULL; /* on every error, as spike_producer_open does */
  if (out == NULL || user_cfg == NULL) {
    snprintf(open_err, sizeof(open_err), "spike_open: %s is NULL", out == NULL ? "out" : "the config");
    return SPIKE_EMISUSE;
  }
  if (user_cfg->size < CONFIG_SIZE_MIN) {
    snprintf(open_err, sizeof(open_err),
             "config: size is %u: make the spike_config with spike_config_init()",
             user_cfg->size);
    return SPIKE_EMISUSE;
  }
  if (user_cfg->size > sizeof(spike_config)) {
    snprintf(open_err, sizeof(open_err),
             "config: size %u is from a newer spike.h than this libspike %s knows (%zu)",
             user_cfg->size, SPIKE_VERSION_STRING, sizeof(spike_config));
    return SPIKE_EMISUSE;
  }
  /* What an older spike.h lacks keeps its default. */
  spike_config full;
  config_defaults(&full);
  memcpy(&full, user_cfg, user_cfg->size);
  const spike_config *cfg = &full;
  const char *bad = check_config(cfg);
  if (bad != NULL) {
    snprintf(open_err, sizeof(open_err), "config: %s", bad);
    return SPIKE_EINVAL;
  }
  spike_engine *e = calloc(1, sizeof(*e));
  if (e == NULL) {
    snprintf(open_err, sizeof(open_err), "out of memory for the engine");
    return SPIKE_EINTERNAL;
  }
  e->cfg = *cfg;
  e->users_as_buyers = e->cfg.max_users == 0;
  if (e->users_as_buyers) e->cfg.max_users = e->cfg.max_buyers;
  e->lock_fd = -1;
  e->armed_max = cfg->max_reserved;
  e->unconfirmed_max = cfg->batch_max;
  e->pacing = cfg->ack == SPIKE_ACK_MEMORY && cfg->memory_commit_us > 0;
  pthread_mutex_init(&e->producers_lock, NULL);
  pthread_mutex_init(&e->err_lock, NULL);
  int status = SPIKE_EINTERNAL;
  e->data_dir = strdup(cfg->data_dir);
  if (e->data_dir == NULL) {
    snprintf(open_err, sizeof(open_err), "out of memory for the engine");
    goto fail;
  }
  e->cfg.data_dir = e->data_dir;
  if (mkdir_p(e->data_dir) != 0) {
    snprintf(open_err, sizeof(open_err), "%s: %s", e->data_dir, strerror(errno));
    status = SPIKE_ESTORAGE;
    goto fail;
  }
  if ((status = lock_dir(e)) != SPIKE_OK) goto fail;
  status = SPIKE_EINTERNAL;
  if (slab_init(&e->slab, cfg->max_events) != 0 || lim_init(&e->buyers, cfg->max_buyers) != 0 ||
      lim_init(&e->keys, cfg->max_keys) != 0 || lim_init(&e->users, e->cfg.max_users) != 0 ||
      (e->user_head = mem_populated((size_t)e->cfg.max_users * sizeof(*e->user_head))) == NULL) {
    snprintf(open_err, sizeof(open_err), "out of memory for the slab and tables");
    goto fail;
  }
  e->producers = calloc(cfg->max_producers, sizeof(*e->producers));
  if (e->producers == NULL) {
    snprintf(open_err, sizeof(open_err), "out of memory for the producers");
    goto fail;
  }
  for (uint32_t i = 0; i < cfg->max_producers; i++) e->producers[i].efd = -1;
  for (uint32_t i = 0; i < cfg->max_producers; i++) {
    spike_producer *p = &e->producers[i];
    p->e = e;
    p->idx = i;
    /* The eventfd lives as long as the engine, not the producer: the writer
     * signals it after publishing completions, and a producer may have
     * drained them and closed in between. A late signal is then only a
     * spurious wake-up for the slot's next owner, never a write to a closed
     * (or reused) descriptor. */
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->efd < 0) {
      snprintf(open_err, sizeof(open_err), "eventfd: %s", strerror(errno));
      goto fail;
    }
    p->pend_mask = cfg->ring_size * 2 - 1;
    p->pend = calloc((size_t)cfg->ring_size * 2, sizeof(*p->pend));
    if (p->pend == NULL || ring_init(&p->submit, cfg->ring_size, MSG_SLOT_BYTES) != 0 ||
        ring_init(&p->done, cfg->ring_size, sizeof(spike_op *)) != 0) {
      snprintf(open_err, sizeof(open_err), "out of memory for the rings");
      goto fail;
    }
  }
  char err[256];
  int rc = store_open(&e->st, e->data_dir, cfg->map_size_bytes, cfg->max_producers + 16, err,
                      sizeof(err));
  if (rc != 0) {
    snprintf(open_err, sizeof(open_err), "%s", err);
    status = rc == ENOMEM ? SPIKE_EINTERNAL : SPIKE_ESTORAGE;
    goto fail;
  }
  if (store_migrated(e->st) > 0) {
    char schema[16], orders[24];
    snprintf(schema, sizeof(schema), "%d", STORE_SCHEMA_VERSION);
    snprintf(orders, sizeof(orders), "%llu", (unsigned long long)store_migrated(e->st));
    const spike_log_kv kv[] = {{"dataDir", e->data_dir}, {"schema", schema}, {"orders", orders}};
    engine_log(e, LOG_INFO, "engine", kv, 3, "migrated %s to store schema %s: %s orders rewritten",
               e->data_dir, schema, orders);
  }
  log_origin(e);
  uint64_t map_asked, map_was, map_now;
  store_map_open_sizes(e->st, &map_asked, &map_was, &map_now);
  if (map_was > map_asked)
    engine_log(e, LOG_INFO, "engine", NULL, 0,
               "map size %llu MiB, the store's own, larger than the %llu MiB asked for",
               (unsigned long long)(map_was >> 20), (unsigned long long)(map_asked >> 20));
  if (map_now > map_was)
    engine_log(e, LOG_WARN, "engine", NULL, 0,
               "map grown at open from %llu MiB to %llu MiB: the store was over 80%% full",
               (unsigned long long)(map_was >> 20), (unsigned long long)(map_now >> 20));
  e->w = writer_create(e);
  if (e->w == NULL) {
    snprintf(open_err, sizeof(open_err), "out of memory for the writer");
    goto fail;
  }
  if ((status = recover(e, err, sizeof(err))) != SPIKE_OK) {
    snprintf(open_err, sizeof(open_err), "%s: recovery: %s", e->data_dir, err);
    goto fail;
  }
  /* Reservations that went overdue while we were down expire before anyone
   * can reserve again. */
  if ((status = writer_expire_overdue(e->w)) != SPIKE_OK) {
    /* relaxed: the writer ran on this thread */
    int full = atomic_load_explicit(&e->map_full, memory_order_relaxed);
    const char *why = full == ENGINE_FULL_DISK  ? "disk full"
                      : full == ENGINE_FULL_MAP ? "map full: raise --map-size"
                                                : atomic_load_explicit(&e->failed_why,
                                                                       memory_order_relaxed);
    snprintf(open_err, sizeof(open_err), "%s: expiring overdue reservations failed: %s",
             e->data_dir, why != NULL ? why : "commit failed");
    goto fail;
  }
  if (writer_start(e->w) != 0) {
    snprintf(open_err, sizeof(open_err), "cannot start the writer thread");
    status = SPIKE_EINTERNAL;
    goto fail;
  }
  warn_if_volatile(e);
  *out = e;
  return SPIKE_OK;
fail:
  free_engine(e);
  return status;
}

int spike_close(spike_engine *e) {
  if (e == NULL) return SPIKE_EMISUSE;
  pthread_mutex_lock(&e->producers_lock);
  uint32_t open = 0;
  for (uint32_t i = 0; i < e->cfg.max_producers; i++)
    open += (uint32_t)atomic_load_explicit(&e->producers[i].active, memory_order_relaxed);
  pthread_mutex_unlock(&e->producers_lock);
  if (open > 0) {
    engine_error(e, SPIKE_EBUSY, NULL,
                 "spike_close: %u producer%s still open: close %s first; nothing was closed", open,
                 open == 1 ? " is" : "s are", open == 1 ? "it" : "them");
    return SPIKE_EBUSY;
  }
  /* relaxed: a flag, not a guard of memory; spike_backup's own CAS orders it */
  if (atomic_load_explicit(&e->backing_up, memory_order_relaxed)) {
    engine_error(e, SPIKE_EBUSY, NULL, "spike_close: a backup is running; nothing was closed");
    return SPIKE_EBUSY;
  }
  writer_stop(e->w);
  free_engine(e);
  return SPIKE_OK;
}

/* ---- backups ---------------------------------------------------------- */

static int backup_status(int rc) {
  return rc == 0 ? SPIKE_OK : rc == STORE_BADDEST || rc == EINVAL ? SPIKE_EINVAL : SPIKE_ESTORAGE;
}

static void backup_out(spike_backup_info *out, const store_backup_info *b) {
  out->store_id = b->store_id;
  out->seq = b->seq;
  out->bytes = b->bytes;
  out->at_ms = b->at_ms;
  out->duration_ms = b->duration_ms;
}

int spike_backup(spike_engine *e, const char *dest_dir, spike_backup_info *out) {
  if (e == NULL || out == NULL) return SPIKE_EMISUSE;
  memset(out, 0, sizeof(*out));
  int idle = 0;
  if (dest_dir == NULL) {
    snprintf(out->error, sizeof(out->error), "no backup destination");
    return SPIKE_EINVAL;
  }
  if (!atomic_compare_exchange_strong(&e->backing_up, &idle, 1)) {
    snprintf(out->error, sizeof(out->error), "a backup is already running");
    return SPIKE_EBUSY;
  }
  store_backup_info b;
  int rc = store_backup(e->st, dest_dir, &b, out->error, sizeof(out->error));
  atomic_store(&e->backing_up, 0);
  backup_out(out, &b);
  char id[24], seq[24], bytes[24], ms[24];
  snprintf(id, sizeof(id), "%016llx", (unsigned long long)b.store_id);
  snprintf(seq, sizeof(seq), "%llu", (unsigned long long)b.seq);
  snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)b.bytes);
  snprintf(ms, sizeof(ms), "%llu", (unsigned long long)b.duration_ms);
  const spike_log_kv kv[] = {
      {"dest", dest_dir}, {"storeId", id}, {"seq", seq}, {"bytes", bytes}, {"ms", ms}};
  if (rc == 0)
    engine_log(e, LOG_INFO, "backup", kv, 5, "backup of store %s at feed seq %s: %s bytes in %s ms",
               id, seq, bytes, ms);
  else
    engine_log(e, backup_status(rc) == SPIKE_EINVAL ? LOG_WARN : LOG_ERROR, "backup", kv, 1,
               "backup failed: %s", out->error); /* a taken name: the caller's mistake */
  return backup_status(rc);
}

int spike_backup_dir(const char *data_dir, const char *dest_dir, spike_backup_info *out) {
  if (out == NULL) return SPIKE_EMISUSE;
  memset(out, 0, sizeof(*out));
  if (data_dir == NULL || dest_dir == NULL) {
    snprintf(out->error, sizeof(out->error), "no %s", data_dir == NULL ? "data directory"
                                                                       : "backup destination");
    return SPIKE_EINVAL;
  }
  /* LMDB's locks are per process: opening the environment again here and
   * closing it would drop the engine's own. */
  struct stat st;
  if (stat(data_dir, &st) == 0) {
    pthread_mutex_lock(&open_lock);
    int here = open_here(&st) != NULL;
    pthread_mutex_unlock(&open_lock);
    if (here) {
      snprintf(out->error, sizeof(out->error),
               "%s is open in this process: back it up with spike_backup()", data_dir);
      return SPIKE_EMISUSE;
    }
  }
  store_backup_info b;
  int rc = store_backup_dir(data_dir, dest_dir, &b, out->error, sizeof(out->error));
  backup_out(out, &b);
  return backup_status(rc);
}

uint64_t spike_feed_epoch(spike_engine *e, uint64_t seq) {
  return e != NULL ? store_epoch_of(e->st, seq) : 0;
}

void spike_store_origin_get(spike_engine *e, spike_store_origin *out) {
  if (out == NULL) return;
  if (e == NULL) {
    memset(out, 0, sizeof(*out));
    return;
  }
  store_origin o;
  store_get_origin(e->st, &o);
  out->store_id = store_id(e->st);
  out->restored_from = o.restored_from;
  out->restored_seq = o.restored_seq;
  out->backup_at_ms = o.backup_at_ms;
  out->restored_at_ms = o.restored_at_ms;
}

/* ---- producers ------------------------------------------------------- */

int spike_producer_open(spike_engine *e, spike_producer **out) {
  if (out == NULL) return SPIKE_EMISUSE;
  *out = NULL;
  if (e == NULL) return SPIKE_EMISUSE;
  pthread_mutex_lock(&e->producers_lock);
  spike_producer *p = NULL;
  for (uint32_t i = 0; i < e->cfg.max_producers && p == NULL; i++)
    if (!atomic_load_explicit(&e->producers[i].active, memory_order_relaxed))
      p = &e->producers[i];
  if (p == NULL) {
    pthread_mutex_unlock(&e->producers_lock);
    engine_error(e, SPIKE_EFULL, NULL,
                 "spike_producer_open: all %u producers are open (max_producers): close one, "
                 "or raise max_producers (at most %d)",
                 e->cfg.max_producers, SPIKE_PRODUCERS_MAX);
    return SPIKE_EFULL;
  }
  if ((p->rtxn = store_txn_new(e->st)) == NULL) {
    pthread_mutex_unlock(&e->producers_lock);
    engine_error(e, SPIKE_EINTERNAL, NULL, "spike_producer_open: out of memory");
    return SPIKE_EINTERNAL;
  }
  uint64_t stale;
  ssize_t r = read(p->efd, &stale, sizeof(stale)); /* a previous owner's wake-ups */
  (void)r;
  /* Ids continue above whatever this slot minted before. */
  uint64_t prev = atomic_load_explicit(&p->ids.last, memory_order_relaxed);
  int64_t floor = e->id_floor_ms;
  if (prev != 0 && ids_ms(prev) + 1 > floor) floor = ids_ms(prev) + 1;
  /* last stays prev: a slot opened and closed without minting must not
   * leave the next open only id_floor_ms to go on, or an open in the
   * millisecond of this slot's last mint mints that id again (two orders,
   * one record). */
  ids_resume(&p->ids, p->idx, floor, prev);
  p->inflight = 0;
  p->err_status = SPIKE_OK;
  p->err_detail = NULL;
  atomic_store_explicit(&p->draining, 0, memory_order_relaxed);
  atomic_store_explicit(&p->owner, 0, memory_order_relaxed);
  /* release: pairs with the writer's acquire of active; the slot's fields
   * are set before the writer may look at its ring. */
  atomic_store_explicit(&p->active, 1, memory_order_release);
  pthread_mutex_unlock(&e->producers_lock);
  *out = p;
  return SPIKE_OK;
}

int spike_producer_fd(const spike_producer *p) {
  if (p == NULL || atomic_load_explicit(&p->owner, memory_order_relaxed) == PRODUCER_CLOSED)
    return -1;
  return p->efd;
}

static const char *call_name(uint8_t type) {
  static const char *const names[] = {
      [0] = "spike_producer_close",
      [MSG_RESERVE] = "spike_reserve",
      [MSG_REPLAY] = "spike_reserve (a retried key)",
      [MSG_PAY] = "spike_pay",
      [MSG_CANCEL] = "spike_cancel",
      [MSG_EVENT_CREATE] = "spike_event_create",
      [MSG_EVENT_RESTOCK] = "spike_event_restock",
      [MSG_EVENT_CLOSE] = "spike_event_close",
      [MSG_FEED_WAIT] = "spike_feed_wait",
      [MSG_FEED_END] = "spike_feed_wait_end",
  };
  return type < sizeof(names) / sizeof(names[0]) && names[type] ? names[type] : "spike";
}

int spike_producer_error(const spike_producer *p, char *buf, size_t cap) {
  if (p == NULL) return copy_error(SPIKE_EMISUSE, "spike_producer_error: the producer is NULL", buf, cap);
  /* Only the owner's own errors, and without claiming p: a thread that
   * reads before it submits does not take p from the one it was meant for. */
  uintptr_t o = atomic_load_explicit(&((spike_producer *)p)->owner, memory_order_relaxed);
  if (o != (uintptr_t)pthread_self() && o != 0)
    return copy_error(SPIKE_EMISUSE, "spike_producer_error: another thread's producer, or a closed one",
                      buf, cap);
  if (p->err_status == SPIKE_OK) return copy_error(SPIKE_OK, "", buf, cap);
  const char *hint = p->err_status == SPIKE_EFULL ? "; raise it in spike_config"
                     : p->err_status == SPIKE_EBUSY ? "; retry soon"
                                                    : "";
  char text[256];
  snprintf(text, sizeof(text), "%s: %s%s%s%s", call_name(p->err_type),
           spike_strerror(p->err_status), p->err_detail ? ": " : "",
           p->err_detail ? p->err_detail : "", hint);
  return copy_error(p->err_status, text, buf, cap);
}

uint32_t spike_producer_inflight(const spike_producer *p) { return p != NULL ? p->inflight : 0; }

/* ---- ops in flight ----------------------------------------------------------
 * Each producer keeps the addresses of its pending ops in a small set (open
 * addressing, linear probing, backward-shift deletion, at most half full
 * since inflight <= the ring's size), so an op submitted again while it is
 * pending is refused at the call. Owner thread only. */

static uint32_t pend_home(const spike_producer *p, const spike_op *op) {
  return (uint32_t)(((uintptr_t)op * 0x9E3779B97F4A7C15ull) >> 32) & p->pend_mask;
}

static int pend_has(const spike_producer *p, const spike_op *op) {
  for (uint32_t h = pend_home(p, op);; h = (h + 1) & p->pend_mask) {
    if (p->pend[h] == NULL) return 0;
    if (p->pend[h] == op) return 1;
  }
}

static void pend_add(spike_producer *p, spike_op *op) {
  uint32_t h = pend_home(p, op);
  while (p->pend[h] != NULL) h = (h + 1) & p->pend_mask;
  p->pend[h] = op;
}

static void pend_del(spike_producer *p, spike_op *op) {
  uint32_t h = pend_home(p, op);
  while (p->pend[h] != op) {
    assert(p->pend[h] != NULL);
    h = (h + 1) & p->pend_mask;
  }
  uint32_t hole = h;
  for (h = (h + 1) & p->pend_mask; p->pend[h] != NULL; h = (h + 1) & p->pend_mask) {
    uint32_t home = pend_home(p, p->pend[h]);
    if (((h - home) & p->pend_mask) >= ((h - hole) & p->pend_mask)) {
      p->pend[hole] = p->pend[h];
      hole = h;
    }
  }
  p->pend[hole] = NULL;
}

/* The calling thread may use p: it is p's owner, or p had none yet (and
 * this thread is its owner from now on). Never true of a closed p. */
static int owned(spike_producer *p) {
  if (p == NULL) return 0;
  uintptr_t self = (uintptr_t)pthread_self();
  uintptr_t o = atomic_load_explicit(&p->owner, memory_order_relaxed);
  if (o == self) return 1;
  return o == 0 &&
         atomic_compare_exchange_strong_explicit(&p->owner, &o, self, memory_order_relaxed,
                                                 memory_order_relaxed);
}

static void note_error(spike_producer *p, int status, uint8_t type, const char *detail) {
  p->err_status = status;
  p->err_type = type;
  p->err_detail = detail;
}

int spike_producer_drain(spike_producer *p) {
  if (!owned(p)) return SPIKE_EMISUSE;
  /* relaxed: the owner's own flag (see spike_producer). */
  if (atomic_load_explicit(&p->draining, memory_order_relaxed)) return SPIKE_EMISUSE;
  uint64_t n;
  ssize_t r = read(p->efd, &n, sizeof(n)); /* reset before popping: no lost wake-up */
  (void)r;
  /* Only what is there now: a callback that submits again cannot keep this
   * call running, and what completes meanwhile was signalled after the
   * read above, so the fd is readable again for it. */
  uint32_t ready = ring_peek(&p->done);
  atomic_store_explicit(&p->draining, 1, memory_order_relaxed);
  for (uint32_t i = 0; i < ready; i++) {
    spike_op *op = *(spike_op **)ring_at(&p->done, 0);
    ring_release(&p->done, 1);
    assert(p->inflight > 0);
    p->inflight--;
    pend_del(p, op); /* the callback may submit it again */
    if (op->status < 0) note_error(p, op->status, OP(op)->type_, op->detail);
    OP(op)->cb_(op); /* op is the caller's from here on */
  }
  atomic_store_explicit(&p->draining, 0, memory_order_relaxed);
  return (int)ready;
}

int spike_producer_close(spike_producer *p) {
  if (p == NULL) return SPIKE_EMISUSE;
  spike_engine *e = p->e;
  if (atomic_load_explicit(&p->owner, memory_order_relaxed) == PRODUCER_CLOSED)
    return SPIKE_EMISUSE;
  if (atomic_load_explicit(&p->draining, memory_order_relaxed)) return SPIKE_EMISUSE;
  if (p->inflight > 0) {
    note_error(p, SPIKE_EBUSY, 0, "ops are still in flight: drain first");
    return SPIKE_EBUSY;
  }
  /* Acknowledged-at-enqueue reserves may still sit in the ring: let the
   * writer take them before the slot goes quiet. */
  while (ring_depth(&p->submit) > 0) {
    engine_wake_writer(e);
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
  }
  pthread_mutex_lock(&e->producers_lock);
  store_txn_free(p->rtxn);
  p->rtxn = NULL;
  /* A handle kept past its close is refused (SPIKE_EMISUSE) until the slot
   * is opened again, when it is the new producer's. */
  atomic_store_explicit(&p->owner, PRODUCER_CLOSED, memory_order_relaxed);
  atomic_store_explicit(&p->active, 0, memory_order_release);
  pthread_mutex_unlock(&e->producers_lock);
  return SPIKE_OK;
}

/* ---- submissions ------------------------------------------------------- */

static void op_init(spike_op *op, spike_producer *p, uint8_t type, spike_cb cb) {
  op->status = SPIKE_OK;
  op->replayed = 0;
  op->detail = NULL;
  memset(op->reserved_, 0, sizeof(op->reserved_));
  OP(op)->cb_ = cb;
  OP(op)->next_ = NULL;
  OP(op)->producer_ = p;
  OP(op)->type_ = type;
}

/* Every refusal after op_init ends here: it also becomes the producer's
 * last error. */
static int refuse(spike_op *op, int status, const char *detail) {
  op->status = status;
  op->detail = detail;
  note_error(OP(op)->producer_, status, OP(op)->type_, detail);
  return status;
}

/* Every submission starts here: misuse is refused before op is touched
 * (a pending op is the engine's), at the cost of a few instructions. */
static int op_start(spike_op *op, spike_producer *p, uint8_t type, spike_cb cb) {
  if (op == NULL || !owned(p)) return SPIKE_EMISUSE;
  if (pend_has(p, op)) return SPIKE_EMISUSE;
  op_init(op, p, type, cb);
  if (cb == NULL) return refuse(op, SPIKE_EMISUSE, "callback is NULL");
  return SPIKE_OK;
}

static int writer_failed(spike_engine *e) {
  /* acquire: pairs with the release in the writer's fail_batch. */
  return atomic_load_explicit(&e->failed, memory_order_acquire);
}

/* A ring slot for an op that will complete through the callback. */
static msg *claim_slot(spike_producer *p, spike_op *op, int *status) {
  if (writer_failed(p->e)) {
    *status = refuse(op, SPIKE_ESTORAGE, "storage failed; the engine must be reopened");
    return NULL;
  }
  if (p->inflight >= ring_capacity(&p->done)) {
    *status = refuse(op, SPIKE_EBUSY, "too many operations in flight");
    return NULL;
  }
  msg *m = ring_acquire(&p->submit);
  if (m == NULL) *status = refuse(op, SPIKE_EBUSY, "commit queue full");
  return m;
}

static int submit_as(spike_producer *p, msg *m, spike_op *op, int urgent) {
  m->type = OP(op)->type_;
  m->op = op;
  pend_add(p, op);
  ring_publish_sc(&p->submit);
  tell_writer(p->e, p, urgent);
  p->inflight++;
  return SPIKE_PENDING;
}

/* An op whose caller waits for the writer: urgent. */
static int submit(spike_producer *p, msg *m, spike_op *op) { return submit_as(p, m, op, 1); }

static int replay(spike_producer *p, spike_op *op, uint32_t slot, uint64_t order_id,
                  uint64_t user_id, uint32_t key_idx, spike_cb cb) {
  int status;
  op_init(op, p, MSG_REPLAY, cb);
  msg *m = claim_slot(p, op, &status);
  if (m == NULL) return status;
  OP(op)->slot_ = slot;
  OP(op)->a_ = order_id;
  OP(op)->b_ = user_id;
  OP(op)->idx_ = key_idx;
  return submit(p, m, op);
}

static int sale_window(const slab_event *ev, int64_t now) {
  /* acquire: pairs with the writer's release when it closes the event. */
  if (atomic_load_explicit(&ev->flags, memory_order_acquire) & SLAB_FLAG_CLOSED) return 0;
  return now >= ev->start_at && now < ev->end_at;
}

/* The buyer entry bidx (LIM_FULL: none yet) could not take qty more under
 * limit: a hint read before any insert (lim_take decides). */
static int holds_too_many(spike_engine *e, uint32_t bidx, uint32_t qty, uint32_t limit) {
  return bidx != LIM_FULL && lim_held(lim_at(&e->buyers, bidx)) + qty > limit;
}

/* A reserve refused before it has inserted anything, unless its key
 * already names an order: then it is a retry, answered with that order. */
static int refuse_unless_bound(spike_producer *p, spike_op *op, uint32_t slot, uint64_t user_id,
                               const char *key, XXH128_hash_t kh, int status, const char *detail,
                               spike_cb cb) {
  if (key != NULL) {
    uint32_t kidx = lim_find(&p->e->keys, kh.low64, kh.high64);
    if (kidx != LIM_FULL) {
      uint64_t v = lim_val(lim_at(&p->e->keys, kidx));
      if (v > LIM_KEY_PENDING) return replay(p, op, slot, v, user_id, kidx, cb);
      /* its first try is still deciding: the answer is that one's */
      if (v == LIM_KEY_PENDING)
        return refuse(op, SPIKE_EBUSY, "a request with this key is in progress");
    }
  }
  return refuse(op, status, detail);
}

/* The table a reserve would find full, looked at before it inserts into
 * any: the tables never delete, so a reserve refused at a full user table
 * after its key and buyer went in would hold those slots until a restart
 * (and the next reserve would be refused naming the wrong table). NULL:
 * room in each table that needs an entry. kh: NULL without a key. */
static const char *full_table(spike_engine *e, uint32_t bidx, uint64_t user_id, uint32_t slot,
                              uint64_t btag, uint64_t utag, const XXH128_hash_t *kh, uint64_t ktag) {
  if (!lim_room(&e->buyers) &&
      (bidx != LIM_FULL ? bidx : lim_find_tag(&e->buyers, user_id, slot, btag)) == LIM_FULL)
    return "buyer table full (max_buyers)";
  if (!lim_room(&e->users) && lim_find_tag(&e->users, user_id, 0, utag) == LIM_FULL)
    return "user table full (max_users)";
  if (kh != NULL && !lim_room(&e->keys) &&
      lim_find_tag(&e->keys, kh->low64, kh->high64, ktag) == LIM_FULL)
    return "idempotency key table full (max_keys)";
  return NULL;
}

/* While commits fail for room (the disk or the map full), a reserve that
 * would add a buyer, user or key entry is refused once its table has
 * grown past what the writer allows (room_rebase: a batch when the
 * failures begin, halved by each failed commit, doubled by each commit of
 * reserves that fits): the tables never delete, and a crowd of new buyers
 * retrying against a full disk filled them with reserves that all failed,
 * so that after the disk had room again every new buyer got 507 until a
 * restart. The words are a failed commit's. NULL: not refused. */
static const char *room_refused(spike_engine *e, uint32_t bidx, uint64_t user_id, uint32_t slot,
                                uint64_t btag, uint64_t utag, const XXH128_hash_t *kh,
                                uint64_t ktag) {
  /* acquire: pairs with the writer's release, after the bases */
  int full = atomic_load_explicit(&e->map_full, memory_order_acquire);
  if (full == 0) return NULL;
  uint64_t slack = atomic_load_explicit(&e->room_slack, memory_order_relaxed);
  /* relaxed: bounds, published by the acquire above */
  int refuse =
      (lim_used(&e->buyers) >= atomic_load_explicit(&e->room_base[0], memory_order_relaxed) + slack &&
       (bidx != LIM_FULL ? bidx : lim_find_tag(&e->buyers, user_id, slot, btag)) == LIM_FULL) ||
      (lim_used(&e->users) >= atomic_load_explicit(&e->room_base[1], memory_order_relaxed) + slack &&
       lim_find_tag(&e->users, user_id, 0, utag) == LIM_FULL) ||
      (kh != NULL &&
       lim_used(&e->keys) >= atomic_load_explicit(&e->room_base[2], memory_order_relaxed) + slack &&
       lim_find_tag(&e->keys, kh->low64, kh->high64, ktag) == LIM_FULL);
  if (!refuse) return NULL;
  /* One such reserve a second still reaches the writer: only a reserve's
   * commit clears a full map (a snapshot released, pages freed), and with
   * every new buyer refused here and the others at their limit, none would
   * until a restart (outside QA). One dead entry a second at most.
   * relaxed: a rate; nothing is read through it. */
  int64_t now = engine_mono_ms();
  int64_t last = atomic_load_explicit(&e->room_probe_ms, memory_order_relaxed);
  if (now - last >= 1000 &&
      atomic_compare_exchange_strong_explicit(&e->room_probe_ms, &last, now, memory_order_relaxed,
                                              memory_order_relaxed))
    return NULL;
  return full == ENGINE_FULL_MAP ? "map full: raise --map-size" : "disk full";
}

int spike_reserve(spike_producer *p, spike_op *op, uint64_t event_id, uint64_t user_id,
                  uint32_t qty, const char *key, size_t key_len, spike_cb cb) {
  int status = op_start(op, p, MSG_RESERVE, cb);
  if (status != SPIKE_OK) return status;
  spike_engine *e = p->e;
  if (qty == 0) return refuse(op, SPIKE_EINVAL, "qty");
  if (user_id == 0) return refuse(op, SPIKE_EINVAL, "user_id");
  if (key != NULL ? key_len == 0 || key_len > SPIKE_KEY_MAX : key_len != 0)
    return refuse(op, SPIKE_EINVAL, "idempotency key"); /* NULL with a length: a caller's slip */
  uint32_t slot = slab_find(&e->slab, event_id);
  if (slot == SLAB_NONE) return refuse(op, SPIKE_ENOEVENT, NULL);
  slab_event *ev = slab_at(&e->slab, slot);

  lim_entry *ke = NULL;
  uint32_t kidx = LIM_FULL;
  XXH128_hash_t kh = {0, 0};
  if (key != NULL) kh = XXH3_128bits_withSeed(key, key_len, event_id);
  if (slab_short(ev, 1)) {
    /* The short-circuit: a keyless request touches nothing else. A keyed
     * one may be a retry of an order that won. An event that is over is
     * that before it is sold out. */
    return refuse_unless_bound(p, op, slot, user_id, key, kh,
                               sale_window(ev, engine_now_ms()) ? SPIKE_ESOLDOUT : SPIKE_ENOTLIVE,
                               NULL, cb);
  }
  /* The buyer and user tables (and the key table, with a key) are probed
   * at random below: ask for their lines now, so the misses overlap each
   * other and the checks in between. Here, not
   * after those checks: there it bought nothing (bench_reserve, alternated:
   * 2.38-2.53 M reserves/s here, 2.05-2.23 there and 2.09-2.20 without),
   * and a refusal between (the sale not open yet, qty over the limit)
   * costs two hashes more, a few ns beside an HTTP request. */
  uint64_t btag = lim_tag(user_id, slot), utag = lim_tag(user_id, 0);
  uint64_t ktag = key != NULL ? lim_tag(kh.low64, kh.high64) : 0;
  lim_prefetch(&e->buyers, btag);
  lim_prefetch(&e->users, utag);
  if (key != NULL) lim_prefetch(&e->keys, ktag);
  int64_t now = engine_now_ms();
  /* What can be refused is refused before anything is inserted: the
   * tables never delete, so a refusal that inserted (a key, a buyer, a
   * user) would hold a slot until a restart, and a crowd retrying before
   * the sale opens could fill them. Only a race with another reserve of
   * the same user or the last units gets past these and is refused below,
   * after the inserts. */
  if (writer_failed(e))
    return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_ESTORAGE,
                               "storage failed; the engine must be reopened", cb);
  if (!sale_window(ev, now))
    return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_ENOTLIVE, NULL, cb);
  if (qty > ev->per_user_limit)
    return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_ELIMIT, NULL, cb);
  uint32_t bidx = LIM_FULL;
  if (key != NULL) {
    /* A user at the limit inserts no key either. (Without a key, lim_take
     * decides below: such a user's entries exist already.) */
    bidx = lim_find_tag(&e->buyers, user_id, slot, btag);
    if (holds_too_many(e, bidx, qty, ev->per_user_limit))
      return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_ELIMIT, NULL, cb);
  }
  if (slab_short(ev, qty)) { /* the user's limit first, as lim_take comes before slab_take */
    if (key == NULL) bidx = lim_find_tag(&e->buyers, user_id, slot, btag);
    int limit = holds_too_many(e, bidx, qty, ev->per_user_limit);
    return refuse_unless_bound(p, op, slot, user_id, key, kh,
                               limit ? SPIKE_ELIMIT : SPIKE_ESOLDOUT,
                               !limit && qty > 1 && !slab_short(ev, 1) ? "fewer units left than qty"
                                                                       : NULL,
                               cb);
  }
  const char *full = full_table(e, bidx, user_id, slot, btag, utag, key != NULL ? &kh : NULL, ktag);
  if (full != NULL) return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_EFULL, full, cb);
  const char *room = room_refused(e, bidx, user_id, slot, btag, utag, key != NULL ? &kh : NULL, ktag);
  if (room != NULL)
    return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_ESTORAGE, room, cb);
  if (key != NULL) {
    /* Back-pressure and the reservation bound, looked at before the key
     * goes in (and decided again below, where they are claimed): a crowd
     * retrying with a fresh key each time through a full queue must not
     * fill the key table. ring_acquire only looks: the slot is taken when
     * it is published. */
    if (ring_acquire(&p->submit) == NULL)
      return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_EBUSY, "commit queue full",
                                 cb);
    if (e->cfg.ack != SPIKE_ACK_MEMORY && p->inflight >= ring_capacity(&p->done))
      return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_EBUSY,
                                 "too many operations in flight", cb);
    /* relaxed: a bound, read as a hint */
    if (atomic_load_explicit(&e->armed, memory_order_relaxed) >= e->armed_max)
      return refuse_unless_bound(p, op, slot, user_id, key, kh, SPIKE_EFULL,
                                 "reservation table full (max_reserved)", cb);
    kidx = lim_upsert_tag(&e->keys, kh.low64, kh.high64, ktag);
    if (kidx == LIM_FULL) return refuse(op, SPIKE_EFULL, "idempotency key table full (max_keys)");
    ke = lim_at(&e->keys, kidx);
    uint64_t v = lim_key_claim(ke);
    if (v == LIM_KEY_PENDING) return refuse(op, SPIKE_EBUSY, "a request with this key is in progress");
    if (v != LIM_KEY_FREE) return replay(p, op, slot, v, user_id, kidx, cb);
  }

  /* From here on this thread holds the key (if any): every exit lets it go
   * or binds it. */
  const char *detail = NULL;
  int ack_now = 0; /* acknowledged at enqueue: holds one unconfirmed place */
  msg *m = NULL;
  lim_entry *buyer = NULL;
  /* ack=memory answers before the commit only while commits succeed and
   * at most unconfirmed_max such answers are uncommitted: that is all a
   * crash or a failed batch can lose. Past either, the reserve waits for
   * its commit as a durable one does. */
  if (e->cfg.ack == SPIKE_ACK_MEMORY &&
      !atomic_load_explicit(&e->commits_failing, memory_order_relaxed)) {
    /* acquire: pairs with the writer's release when it settles a batch;
     * a claim that reads a count the writer lowered after a failure sees
     * commits_failing too (see fail_batch). */
    if (atomic_fetch_add_explicit(&e->unconfirmed, 1, memory_order_acquire) < e->unconfirmed_max &&
        !atomic_load_explicit(&e->commits_failing, memory_order_relaxed))
      ack_now = 1;
    else
      atomic_fetch_sub_explicit(&e->unconfirmed, 1, memory_order_relaxed);
  }
  if (!ack_now && p->inflight >= ring_capacity(&p->done)) {
    status = SPIKE_EBUSY;
    detail = "too many operations in flight";
    goto refused;
  }
  if ((m = ring_acquire(&p->submit)) == NULL) {
    status = SPIKE_EBUSY;
    detail = "commit queue full";
    goto refused;
  }
  /* relaxed: a bound on wheel entries, not a publication. */
  if (atomic_fetch_add_explicit(&e->armed, 1, memory_order_relaxed) >= e->armed_max) {
    status = SPIKE_EFULL;
    detail = "reservation table full (max_reserved)";
    goto unarm;
  }
  if (bidx == LIM_FULL) bidx = lim_upsert_tag(&e->buyers, user_id, slot, btag);
  if (bidx == LIM_FULL) {
    status = SPIKE_EFULL;
    detail = "buyer table full (max_buyers)";
    goto unarm;
  }
  uint32_t uidx = lim_upsert_tag(&e->users, user_id, 0, utag);
  if (uidx == LIM_FULL) {
    status = SPIKE_EFULL;
    detail = "user table full (max_users)";
    goto unarm;
  }
  buyer = lim_at(&e->buyers, bidx);
  if (lim_take(buyer, qty, ev->per_user_limit) != 0) {
    status = SPIKE_ELIMIT;
    goto unarm;
  }
  if (slab_take(ev, qty) != 0) {
    lim_give(buyer, qty);
    status = SPIKE_ESOLDOUT;
    goto unarm;
  }

  uint64_t id = ids_next(&p->ids, now);
  spike_order *o = &op->r.order;
  memset(o, 0, sizeof(*o));
  o->id = id;
  o->event_id = event_id;
  o->user_id = user_id;
  o->qty = qty;
  o->amount = ev->price * (int64_t)qty;
  o->state = SPIKE_ORDER_RESERVED;
  o->created_at = now;
  o->expires_at = now + (int64_t)ev->pay_timeout_s * 1000;

  m->type = MSG_RESERVE;
  m->qty = qty;
  m->event_slot = slot;
  m->buyer_idx = bidx;
  m->key_idx = kidx;
  m->user_idx = uidx;
  m->order_id = id;
  m->user_id = user_id;
  m->created_at = now;
  m->op = ack_now ? NULL : op;
  /* Bind the key before the message can reach the writer, so a failed
   * batch finds it bound to this order and can unbind it. */
  if (ke != NULL) lim_key_set(ke, id);
  if (!ack_now) pend_add(p, op);
  ring_publish_sc(&p->submit);
  tell_writer(e, p, !ack_now);
  if (ack_now) return SPIKE_OK;
  p->inflight++;
  return SPIKE_PENDING;

unarm:
  atomic_fetch_sub_explicit(&e->armed, 1, memory_order_relaxed);
refused:
  if (ack_now) atomic_fetch_sub_explicit(&e->unconfirmed, 1, memory_order_relaxed);
  if (ke != NULL) lim_key_set(ke, LIM_KEY_FREE);
  return refuse(op, status, detail);
}

static int valid_text(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return 0;
  return 1;
}

/* No C1 control (U+0080-009F) in well-formed UTF-8: C2 80 to C2 9F. */
static int no_c1(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  for (size_t i = 0; i + 1 < n; i++)
    if (s[i] == 0xc2 && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f) return 0;
  return 1;
}

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. */
static int valid_utf8(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  for (size_t i = 0, k; i < n; i += k)
    if ((k = s[i] < 0x80 ? 1 : log_utf8_seq(s + i, n - i)) == 0) return 0;
  return 1;
}

/* What the engine stores as text (an event's name, a payment id): UTF-8,
 * no control characters (C0, DEL, C1), so every JSON answer can carry it. */
static int plain_text(const char *s, size_t n) {
  return valid_text(s, n) && valid_utf8(s, n) && no_c1(s, n);
}

static int order_op(spike_producer *p, spike_op *op, uint8_t type, uint64_t event_id,
                    uint64_t order_id, uint64_t user_id, const char *payment_id, size_t pid_len,
                    spike_cb cb) {
  int status;
  if ((status = op_start(op, p, type, cb)) != SPIKE_OK) return status;
  if (order_id == 0) return refuse(op, SPIKE_ENOORDER, NULL);
  if (type == MSG_PAY &&
      (payment_id == NULL || pid_len == 0 || pid_len > SPIKE_PAYMENT_ID_MAX ||
       !plain_text(payment_id, pid_len)))
    return refuse(op, SPIKE_EINVAL, "payment_id");
  msg *m = claim_slot(p, op, &status);
  if (m == NULL) return status;
  OP(op)->a_ = order_id;
  OP(op)->b_ = user_id;
  OP(op)->c_ = event_id;
  OP(op)->pid_len_ = (uint8_t)pid_len;
  if (type == MSG_PAY) memcpy(OP(op)->pid_, payment_id, pid_len);
  return submit(p, m, op);
}

int spike_pay(spike_producer *p, spike_op *op, uint64_t order_id, uint64_t user_id,
              const char *payment_id, size_t payment_id_len, spike_cb cb) {
  return order_op(p, op, MSG_PAY, 0, order_id, user_id, payment_id, payment_id_len, cb);
}

int spike_cancel(spike_producer *p, spike_op *op, uint64_t order_id, uint64_t user_id,
                 spike_cb cb) {
  return order_op(p, op, MSG_CANCEL, 0, order_id, user_id, NULL, 0, cb);
}

int spike_pay_in_event(spike_producer *p, spike_op *op, uint64_t event_id, uint64_t order_id,
                       uint64_t user_id, const char *payment_id, size_t payment_id_len,
                       spike_cb cb) {
  return order_op(p, op, MSG_PAY, event_id, order_id, user_id, payment_id, payment_id_len, cb);
}

int spike_cancel_in_event(spike_producer *p, spike_op *op, uint64_t event_id, uint64_t order_id,
                          uint64_t user_id, spike_cb cb) {
  return order_op(p, op, MSG_CANCEL, event_id, order_id, user_id, NULL, 0, cb);
}

#define PRICE_MAX 1000000000000ll  /* 10^10 currency units, in cents */
#define PER_USER_LIMIT_MAX 1000000u
#define TIME_MAX 253402300799999ll /* 9999-12-31T23:59:59.999Z */

int spike_event_spec_check(const spike_event_spec *s, const char **field) {
  const char *bad = NULL;
  if (s == NULL)
    bad = "spec";
  else if (s->name == NULL || s->name_len == 0 || s->name_len > SPIKE_NAME_MAX ||
      !plain_text(s->name, s->name_len))
    bad = "name";
  else if (s->stock == 0 || s->stock > UINT32_MAX)
    bad = "stock";
  else if (s->price < 0 || s->price > PRICE_MAX)
    bad = "price";
  else if (s->start_at < 0 || s->start_at > TIME_MAX)
    bad = "start_at";
  else if (s->end_at <= s->start_at || s->end_at > TIME_MAX)
    bad = "end_at";
  else if (s->per_user_limit < 1 || s->per_user_limit > PER_USER_LIMIT_MAX)
    bad = "per_user_limit";
  else if (s->pay_timeout_s < 1 || s->pay_timeout_s > SPIKE_PAY_TIMEOUT_MAX_S)
    bad = "pay_timeout_s";
  else if (s->reserved_[0] != 0 || s->reserved_[1] != 0)
    bad = "reserved";
  if (field != NULL) *field = bad;
  return bad == NULL ? SPIKE_OK : SPIKE_EINVAL;
}

int spike_event_create(spike_producer *p, spike_op *op, const spike_event_spec *spec,
                       spike_cb cb) {
  const char *field;
  int status;
  if ((status = op_start(op, p, MSG_EVENT_CREATE, cb)) != SPIKE_OK) return status;
  if (spike_event_spec_check(spec, &field) != SPIKE_OK) return refuse(op, SPIKE_EINVAL, field);
  msg *m = claim_slot(p, op, &status);
  if (m == NULL) return status;
  spike_event_spec s = *spec;
  if (s.id == 0) s.id = ids_next(&p->ids, engine_now_ms());
  uint32_t slot = slab_create(&p->e->slab, &s, &status);
  if (slot == SLAB_NONE)
    return refuse(op, status, status == SPIKE_EFULL ? "event table full (max_events)" : NULL);
  OP(op)->slot_ = slot;
  return submit(p, m, op);
}

int spike_event_restock(spike_producer *p, spike_op *op, uint64_t event_id, uint64_t add,
                        spike_cb cb) {
  int status;
  if ((status = op_start(op, p, MSG_EVENT_RESTOCK, cb)) != SPIKE_OK) return status;
  uint32_t slot = slab_find(&p->e->slab, event_id);
  if (slot == SLAB_NONE) return refuse(op, SPIKE_ENOEVENT, NULL);
  slab_event *ev = slab_at(&p->e->slab, slot);
  if (atomic_load_explicit(&ev->flags, memory_order_acquire) & SLAB_FLAG_CLOSED)
    return refuse(op, SPIKE_ENOTLIVE, NULL);
  if (add == 0 || add > UINT32_MAX ||
      atomic_load_explicit(&ev->total, memory_order_acquire) + add > UINT32_MAX)
    return refuse(op, SPIKE_EINVAL, "add");
  msg *m = claim_slot(p, op, &status);
  if (m == NULL) return status;
  OP(op)->slot_ = slot;
  OP(op)->b_ = add;
  return submit(p, m, op);
}

int spike_event_close(spike_producer *p, spike_op *op, uint64_t event_id, spike_cb cb) {
  int status;
  if ((status = op_start(op, p, MSG_EVENT_CLOSE, cb)) != SPIKE_OK) return status;
  uint32_t slot = slab_find(&p->e->slab, event_id);
  if (slot == SLAB_NONE) return refuse(op, SPIKE_ENOEVENT, NULL);
  msg *m = claim_slot(p, op, &status);
  if (m == NULL) return status;
  OP(op)->slot_ = slot;
  return submit(p, m, op);
}

#define FEED_WAIT_MAX_MS 30000u

int spike_feed_wait(spike_producer *p, spike_op *op, uint64_t after, uint32_t wait_ms,
                    spike_cb cb) {
  int status;
  if ((status = op_start(op, p, MSG_FEED_WAIT, cb)) != SPIKE_OK) return status;
  if (wait_ms > FEED_WAIT_MAX_MS) return refuse(op, SPIKE_EINVAL, "wait_ms");
  msg *m = claim_slot(p, op, &status);
  if (m == NULL) return status;
  OP(op)->a_ = after;
  OP(op)->deadline_ = engine_mono_ms() + wait_ms;
  /* A long wait is for the next commit, which the pace bounds; one that
   * ends sooner than the pace must reach the writer now (pace() then
   * counts its deadline). */
  return submit_as(p, m, op, (uint64_t)wait_ms * 1000 < p->e->cfg.memory_commit_us);
}

int spike_feed_wait_end(spike_producer *p, spike_op *op) {
  if (op == NULL || !owned(p)) return SPIKE_EMISUSE;
  /* Pending (not yet drained), so its private area is still the engine's
   * and type_, set before it was submitted, is stable. */
  if (!pend_has(p, op) || OP(op)->type_ != MSG_FEED_WAIT) return SPIKE_OK;
  msg *m = ring_acquire(&p->submit);
  if (m == NULL) {
    note_error(p, SPIKE_EBUSY, MSG_FEED_END, "commit queue full");
    return SPIKE_EBUSY;
  }
  m->type = MSG_FEED_END;
  m->op = op;
  m->user_id = (uint64_t)(uintptr_t)p; /* whose: an address is reused by other producers */
  ring_publish_sc(&p->submit);
  tell_writer(p->e, p, 1);
  return SPIKE_OK;
}

void spike_feed_release(spike_engine *e) {
  if (e == NULL) return;
  /* seq_cst: the releaser's half of a handshake with writer_sleep, which
   * stores writer_sleeping and then loads this (as engine_wake_writer and
   * the rings' tails). */
  atomic_store_explicit(&e->feed_released, 1, memory_order_seq_cst);
  engine_wake_writer(e);
}

/* ---- reads ------------------------------------------------------------ */

int spike_event_get(spike_engine *e, uint64_t event_id, spike_event *out) {
  if (e == NULL || out == NULL) return SPIKE_EMISUSE;
  uint32_t slot = slab_find(&e->slab, event_id);
  if (slot == SLAB_NONE) return SPIKE_ENOEVENT;
  slab_read(slab_at(&e->slab, slot), engine_now_ms(), out);
  return SPIKE_OK;
}

/* The heap of spike_event_list: out[0..n) holds the smallest ids seen, the
 * largest at the root, so a page costs O(events * log max). */
static void heap_sift(spike_event *h, uint32_t n, uint32_t i) {
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, big = i;
    if (l < n && h[l].id > h[big].id) big = l;
    if (r < n && h[r].id > h[big].id) big = r;
    if (big == i) return;
    spike_event t = h[i];
    h[i] = h[big];
    h[big] = t;
    i = big;
  }
}

static int by_id(const void *a, const void *b) {
  uint64_t x = ((const spike_event *)a)->id, y = ((const spike_event *)b)->id;
  return x < y ? -1 : x > y;
}

int spike_event_list(spike_engine *e, uint64_t after, spike_event *out, uint32_t max,
                     uint32_t *count, uint64_t *next) {
  if (next != NULL) *next = 0;
  if (count == NULL) return SPIKE_EMISUSE;
  *count = 0;
  if (e == NULL || out == NULL) return SPIKE_EMISUSE;
  if (max == 0) return SPIKE_EINVAL; /* no page, and no cursor to give for the next */
  /* acquire: pairs with the release in slab's claim_slot. */
  uint32_t n = atomic_load_explicit(&e->slab.count, memory_order_acquire);
  int64_t now = engine_now_ms();
  uint32_t c = 0, more = 0;
  for (uint32_t i = 0; i < n; i++) {
    slab_event *ev = slab_at(&e->slab, i);
    if (atomic_load_explicit(&ev->state, memory_order_acquire) != SLAB_VISIBLE) continue;
    if (ev->id <= after) continue;
    if (c < max) {
      slab_read(ev, now, &out[c++]);
      if (c == max)
        for (uint32_t k = max / 2; k-- > 0;) heap_sift(out, max, k);
    } else {
      more = 1;
      if (ev->id < out[0].id) {
        slab_read(ev, now, &out[0]);
        heap_sift(out, max, 0);
      }
    }
  }
  qsort(out, c, sizeof(*out), by_id);
  *count = c;
  if (next != NULL) *next = more ? out[c - 1].id : 0;
  return SPIKE_OK;
}

static int read_status(spike_engine *e, const char *call, int rc) {
  if (rc == 0) return SPIKE_OK;
  if (rc == STORE_NOTFOUND) return SPIKE_ENOORDER;
  engine_error(e, SPIKE_ESTORAGE, "engine", "%s: read failed: %s", call, store_strerror(rc));
  return SPIKE_ESTORAGE;
}

int spike_order_get(spike_producer *p, uint64_t order_id, spike_order *out) {
  if (out == NULL || !owned(p)) return SPIKE_EMISUSE; /* its read transaction is p's */
  int rc = store_read_begin(p->rtxn);
  if (rc == 0) rc = store_get_order(p->rtxn, order_id, out);
  store_read_end(p->rtxn);
  return read_status(p->e, "spike_order_get", rc);
}

/* Orders of other events a user-orders page skips at most before it ends
 * (with a cursor), so that one call stays bounded whatever the chain. */
#define USER_SKIP_MAX 100000u

int spike_user_orders(spike_producer *p, uint64_t user_id, uint64_t event_id, uint64_t after,
                      spike_order *out, uint32_t max, uint32_t *count, uint64_t *next) {
  if (next != NULL) *next = 0;
  if (count == NULL) return SPIKE_EMISUSE;
  *count = 0;
  if (out == NULL || !owned(p)) return SPIKE_EMISUSE;
  if (max == 0) return SPIKE_EINVAL; /* no page, and no cursor to give for the next */
  uint32_t u = lim_find(&p->e->users, user_id, 0);
  if (u == LIM_FULL) return after == 0 ? SPIKE_OK : SPIKE_EINVAL;
  /* The head first, then the snapshot: the writer publishes a head only
   * after its commit, so the snapshot holds the whole chain from it.
   * acquire: pairs with that release. */
  uint64_t id = atomic_load_explicit(&p->e->user_head[u], memory_order_acquire);
  int rc = store_read_begin(p->rtxn);
  order_rec r;
  if (rc == 0 && after != 0) {
    /* The cursor is an order of this user's: the page goes on from the one
     * committed before it. */
    rc = store_get_order_rec(p->rtxn, after, &r);
    if (rc == STORE_NOTFOUND || (rc == 0 && r.o.user_id != user_id)) {
      store_read_end(p->rtxn);
      return SPIKE_EINVAL;
    }
    id = r.prev;
  }
  uint32_t n = 0, skipped = 0;
  uint64_t last = 0;
  /* With an event filter a full page reads on, to learn whether another of
   * the event's orders follows: only then is there a next page (else the
   * caller would fetch an empty one), and the orders of other events
   * passed on the way are skipped for good (the cursor moves past them). */
  while (rc == 0 && id != 0 && (n < max || event_id != 0) && skipped < USER_SKIP_MAX) {
    rc = store_get_order_rec(p->rtxn, id, &r);
    if (rc != 0) break;
    if (r.o.user_id != user_id) {
      rc = STORE_ECORRUPT; /* a chain that leaves its user is damage */
      break;
    }
    if (event_id == 0 || r.o.event_id == event_id) {
      if (n == max) break; /* the next page's first: id stays at it */
      out[n++] = r.o;
    } else {
      skipped++;
    }
    last = id;
    id = r.prev;
  }
  store_read_end(p->rtxn);
  *count = n;
  if (rc != 0) return read_status(p->e, "spike_user_orders", rc);
  if (next != NULL && id != 0) *next = last;
  return SPIKE_OK;
}

int spike_feed_fetch(spike_producer *p, uint64_t after, spike_change *out, uint32_t max,
                     uint32_t *count, uint64_t *next, spike_feed_info *info) {
  if (count == NULL || next == NULL || info == NULL) return SPIKE_EMISUSE;
  *count = 0;
  *next = after;
  if ((out == NULL && max > 0) || !owned(p)) return SPIKE_EMISUSE; /* max 0: the info alone */
  memset(info, 0, sizeof(*info));
  info->store_id = store_id(p->e->st);
  /* Only what is durable: a record a power cut could take back (the last
   * commit, until its sync) must not reach a consumer, who would then see
   * its seq reused. acquire: pairs with the writer's release of feed_seq. */
  uint64_t upto = atomic_load_explicit(&p->e->feed_seq, memory_order_acquire);
  info->head = upto;
  uint64_t first = 0, last = 0;
  int rc = store_read_begin(p->rtxn);
  if (rc == 0) rc = store_feed_bounds(p->rtxn, &first, &last);
  if (rc == 0) rc = store_feed_size(p->rtxn, &info->records, &info->bytes);
  /* first > upto: what is kept is newer than durable (retention trimmed
   * past the head): from the head's point of view nothing is kept. */
  info->first = first != 0 && first <= upto ? first : upto + 1;
  if (rc == 0 && (after > upto || after + 1 < info->first)) {
    store_read_end(p->rtxn);
    return SPIKE_EINVAL;
  }
  if (rc == 0) rc = store_feed_read(p->rtxn, after, upto, out, max, count, next);
  store_read_end(p->rtxn);
  return rc == 0 ? SPIKE_OK : read_status(p->e, "spike_feed_read", rc);
}

int spike_feed_read(spike_producer *p, uint64_t after, spike_change *out, uint32_t max,
                    uint32_t *count, uint64_t *next) {
  spike_feed_info info;
  return spike_feed_fetch(p, after, out, max, count, next, &info);
}

/* ---- health and stats --------------------------------------------------- */

static uint32_t queue_depth(spike_engine *e, uint32_t *capacity) {
  uint32_t depth = 0, cap = 0;
  for (uint32_t i = 0; i < e->cfg.max_producers; i++) {
    spike_producer *p = &e->producers[i];
    if (!atomic_load_explicit(&p->active, memory_order_acquire)) continue;
    depth += ring_depth(&p->submit);
    cap += ring_capacity(&p->submit);
  }
  *capacity = cap;
  return depth;
}

int spike_health(spike_engine *e, const char **why) {
  const char *ignored;
  if (why == NULL) why = &ignored; /* the status alone */
  *why = "ok";
  if (e == NULL) {
    *why = "the engine is NULL";
    return SPIKE_EMISUSE;
  }
  if (writer_failed(e)) {
    *why = atomic_load_explicit(&e->failed_why, memory_order_relaxed);
    return SPIKE_ESTORAGE;
  }
  /* relaxed: a health flag. */
  int full = atomic_load_explicit(&e->map_full, memory_order_relaxed);
  if (full != 0) {
    *why = full == ENGINE_FULL_DISK ? "disk full: free space; commits resume by themselves"
                                    : "map full: raise --map-size";
    return SPIKE_ESTORAGE;
  }
  uint32_t cap;
  uint32_t depth = queue_depth(e, &cap);
  /* past nine tenths (cap / 10 * 9 was 0 for rings under 10 slots: one
   * queued op read as "nearly full") */
  if (cap > 0 && (uint64_t)depth * 10 > (uint64_t)cap * 9) {
    *why = "commit queue nearly full";
    return SPIKE_EBUSY;
  }
  if (atomic_load_explicit(&e->armed, memory_order_relaxed) >= e->armed_max) {
    *why = "reservation table full";
    return SPIKE_EFULL;
  }
  return SPIKE_OK;
}

void spike_stats_get_size(spike_engine *e, spike_stats *user_out, size_t size) {
  if (e == NULL || user_out == NULL) return;
  const engine_stats *s = &e->stats;
  spike_stats full, *out = &full;
  memset(out, 0, sizeof(*out));
  out->size = (uint32_t)(size < sizeof(full) ? size : sizeof(full));
  /* relaxed throughout: reporting counters. */
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
  out->commits_total = LOAD(s->commits);
  out->commit_failures_total = LOAD(s->failures);
  out->ops_committed_total = LOAD(s->ops);
  out->orders_expired_total = LOAD(s->expired);
  for (int i = 0; i <= SPIKE_COMMIT_BUCKETS; i++) out->commit_seconds_count[i] = LOAD(s->commit_hist[i]);
  out->commit_seconds_sum = (double)LOAD(s->commit_ns_sum) / 1e9;
  for (int i = 0; i <= SPIKE_BATCH_BUCKETS; i++) out->batch_size_count[i] = LOAD(s->batch_hist[i]);
  out->batch_size_sum = LOAD(s->batch_sum);
  out->reservations_live = LOAD(e->armed);
  out->reservations_capacity = e->armed_max;
  out->acks_lost_total = LOAD(s->acks_lost);
  out->feed_seq = atomic_load_explicit(&e->feed_seq, memory_order_acquire);
#undef LOAD
  out->queue_depth = queue_depth(e, &out->queue_capacity);
  out->buyers_used = lim_used(&e->buyers);
  out->buyers_capacity = lim_capacity(&e->buyers);
  out->keys_used = lim_used(&e->keys);
  out->keys_capacity = lim_capacity(&e->keys);
  out->users_used = lim_used(&e->users);
  out->users_capacity = lim_capacity(&e->users);
  out->store_id = store_id(e->st);
  store_map_usage(e->st, &out->map_size_bytes, &out->map_used_bytes);
  /* relaxed: a reporting gauge */
  out->feed_waiters = atomic_load_explicit(&e->feed_waiters, memory_order_relaxed);
  out->feed_waiters_capacity = e->cfg.max_feed_waiters;
  if (size >= sizeof(uint32_t)) memcpy(user_out, out, out->size);
}

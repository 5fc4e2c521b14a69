/*
 * server.c -- loops, listeners, start-up and the graceful drain.
 *
 * Each loop thread owns a listener on the same address (SO_REUSEPORT: the
 * kernel spreads connections), a producer into the engine, and every
 * connection it accepted; nothing is shared between loops but the engine
 * and a connection count. The main thread only waits for a signal.
 *
 * Drain, on SIGTERM or SIGINT: every loop closes its listener, closes idle
 * connections, lets requests already received finish (parked feed waits
 * are released at once), closes the rest as they go idle, then closes its
 * producer. Connections in lingering close are closed once nothing else is
 * left on their loop and their client has acknowledged every byte written
 * to it (else they linger on, within their bounds), and an idle connection
 * with input unread, or answers not yet acknowledged, lingers instead of
 * closing: either way a reset would cost the client answers it was sent.
 * When every loop is done the engine commits what is
 * left and closes LMDB. A drain that outlives --drain-timeout-ms is forced.
 *
 * A setting found wrong here (the address, a missing secret) is a flag
 * error: a plain line on stderr and exit 2, as main.c's.
 *
 * SIGHUP reopens --log-file and --access-log (logrotate moves a file, then
 * signals), and nothing else: no drain, no exit.
 */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "path.h"

#define SWEEP_MS 250
#define LISTEN_BACKLOG 4096

void server_config_init(server_config *cfg) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->listen = "127.0.0.1:8080";
  spike_config_init(&cfg->engine);
  cfg->threads = 1;
  cfg->auth = AUTH_NONE;
  cfg->lim.max_conns = 10000;
  cfg->lim.max_refusals = 64;
  cfg->lim.turn_budget_us = 250;
  cfg->lim.max_header_bytes = 8192;
  cfg->lim.max_body_bytes = 65536;
  cfg->lim.header_timeout_ms = 10000;
  cfg->lim.idle_timeout_ms = 60000;
  cfg->lim.max_pipeline = 16;
  cfg->lim.max_pipeline_bytes = 64u << 10;
  cfg->lim.drain_timeout_ms = 10000;
  cfg->lim.linger_ms = 5000;
  cfg->lim.linger_idle_ms = 2000;
  cfg->lim.linger_max_bytes = 8u << 20;
}

/* ---- readiness and metrics (api.c calls these) --------------------------- */

int server_ready(server *srv, const char **why) {
  /* relaxed: a flag read for a health answer. */
  if (atomic_load_explicit(&srv->draining, memory_order_relaxed)) {
    *why = "draining";
    return SPIKE_EBUSY;
  }
  int rc = spike_health(srv->engine, why);
  /* A full reservation table (SPIKE_EFULL, checked after everything else)
   * refuses new reserves, 507, but the pays and cancels that free it must
   * still reach this node, the only one that holds those reservations: it
   * stays ready, in a balancer's rotation (outside QA: taken out, its
   * buyers could not pay, and their reservations all expired). */
  if (rc == SPIKE_EFULL) {
    *why = "ok";
    rc = SPIKE_OK;
  }
  return rc;
}

void server_metrics(loop_ctx *lc, jbuf *out) {
  server *srv = lc->srv;
  metrics *shards[SPIKE_PRODUCERS_MAX];
  uint32_t n = srv->threads < SPIKE_PRODUCERS_MAX ? srv->threads : SPIKE_PRODUCERS_MAX;
  for (uint32_t i = 0; i < n; i++) shards[i] = &srv->loops[i].m;
  spike_feed_info feed;
  uint32_t count;
  uint64_t next;
  int feed_rc = lc->producer == NULL ? SPIKE_EINTERNAL
                                     : spike_feed_fetch(lc->producer, 0, NULL, 0, &count, &next, &feed);
  metrics_view v = {.shards = shards, .nshards = n, .e = srv->engine, .events = lc->events,
                    .max_events = srv->ecfg.max_events,
                    .feed = feed_rc == SPIKE_OK || feed_rc == SPIKE_EINVAL ? &feed : NULL,
                    /* relaxed: a flag read for a scrape. */
                    .draining = atomic_load_explicit(&srv->draining, memory_order_relaxed),
                    .access_log = srv->access != NULL,
                    .access_log_lost = accesslog_lost(srv->access),
                    .log_lost = log_lines_lost(),
                    .backups = &srv->backups,
                    .inflight_capacity = srv->ecfg.ring_size};
  v.ready_status = server_ready(srv, &v.ready_why);
  metrics_render(out, &v);
}

/* ---- the drain ------------------------------------------------------------ */

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond; /* on CLOCK_MONOTONIC: done_init */
static uint32_t loops_done;

static void close_quietly(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* The loop has no connection left: once the engine has answered every
 * parked request, close the producer and the loop's handles; uv_run then
 * returns. Lingering connections hold the drain only until their client
 * has acknowledged everything written to it (conn_close_delivered), asked
 * at most every 100 ms: each close calls here, and a scan of every
 * connection per close would be quadratic in a crowd of slow readers. The
 * sweep asks again every 250 ms. */
void server_loop_maybe_done(loop_ctx *lc) {
  if (!lc->draining || lc->producer == NULL) return;
  assert(lc->nlinger <= lc->nconns);
  if (lc->nconns > lc->nlinger) return; /* answers still owed, or closes under way */
  if (lc->nlinger > 0) {
    uint64_t now = uv_now(&lc->loop);
    if (lc->delivered_asked_ms == 0 || now - lc->delivered_asked_ms >= 100) {
      lc->delivered_asked_ms = now;
      conn_close_delivered(lc); /* on_closed asks again, and the sweep */
    }
    return;
  }
  if (spike_producer_inflight(lc->producer) > 0) return; /* the sweep asks again */
  spike_uv_detach(&lc->adapter, NULL);
  spike_producer_close(lc->producer);
  lc->producer = NULL;
  /* what the counted log lines still owe, before the sweep that tells them goes */
  conn_log_refusals(lc, 1);
  api_log_unlogged(lc, 1);
  close_quietly((uv_handle_t *)&lc->sweep);
  close_quietly((uv_handle_t *)&lc->flush);
  close_quietly((uv_handle_t *)&lc->closer);
  close_quietly((uv_handle_t *)&lc->turn_clock);
  /* under done_lock: the main thread's wake_loop sends only while this is
   * 0, and once the loop has closed (uv_loop_close) its eventfd is gone:
   * uv_async_send's write to it fails and libuv aborts */
  pthread_mutex_lock(&done_lock);
  lc->wake_closed = 1;
  close_quietly((uv_handle_t *)&lc->wake);
  pthread_mutex_unlock(&done_lock);
}

/* From the main thread: wake a loop unless it has closed its wake (its
 * drain ended, or is ending, on its own). */
static void wake_loop(loop_ctx *lc) {
  pthread_mutex_lock(&done_lock);
  if (!lc->wake_closed) uv_async_send(&lc->wake);
  pthread_mutex_unlock(&done_lock);
}

static void on_wake(uv_async_t *a) {
  loop_ctx *lc = a->data;
  if (!lc->draining) {
    lc->draining = 1;
    close_quietly((uv_handle_t *)&lc->listener);
    conn_drain_all(lc, 0);
  }
  if (lc->forced) conn_drain_all(lc, 1);
  server_loop_maybe_done(lc);
}

uint64_t loop_turn_busy_ns(const loop_ctx *lc) {
  if (lc->turn_ns == 0) return 0; /* before the first prepare */
  uint64_t span = uv_hrtime() - lc->turn_ns;
  /* libuv counts a wait once it ends, before the callbacks it woke for */
  uint64_t waited = uv_metrics_idle_time((uv_loop_t *)&lc->loop) - lc->turn_idle_ns;
  return span > waited ? span - waited : 0;
}

/* Runs just before each wait for events: the turn that just ended goes
 * into the histogram, and the next one starts. */
static void on_prepare(uv_prepare_t *h) {
  loop_ctx *lc = h->data;
  if (lc->turn_ns != 0) metrics_turn(&lc->m, loop_turn_busy_ns(lc));
  /* relaxed: a gauge for a scrape on another loop. */
  atomic_store_explicit(&lc->m.inflight, lc->producer != NULL ? spike_producer_inflight(lc->producer) : 0,
                        memory_order_relaxed);
  lc->turn_ns = uv_hrtime();
  lc->turn_idle_ns = uv_metrics_idle_time(&lc->loop);
}

static void on_sweep(uv_timer_t *t) {
  loop_ctx *lc = t->data;
  conn_sweep(t);
  api_log_unlogged(lc, 0);
  conn_log_refusals(lc, 0);
  if (lc->srv->access != NULL) accesslog_flush(lc->srv->access, lc->idx);
  server_loop_maybe_done(lc);
}

/* --log-file names a file: "-" is stderr, the default, as it is stdout for
 * --access-log (it wrote a file named "-"). */
static int log_to_file(const server_config *cfg) {
  return cfg->log_file != NULL && cfg->log_file[0] != '\0' && strcmp(cfg->log_file, "-") != 0;
}

/* --log-file: point stderr (the JSON log) at the file, opened anew. dup2
 * swaps the descriptor in one step, so a line being written goes whole to
 * the old file or the new. */
static int open_log_file(const char *path) {
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return -errno;
  int rc = dup2(fd, STDERR_FILENO) < 0 ? -errno : 0;
  close(fd);
  return rc;
}

/* libuv's pool (backups run there) starts with its first job, and its
 * threads take the name of the thread that queued it: start it here, on the
 * main thread named for it, so that none is taken for a loop in top -H. */
static void pool_noop(uv_work_t *w) { (void)w; }
static void pool_noop_done(uv_work_t *w, int status) { (void)w, (void)status; }
static void start_pool(void) {
  char was[16] = "";
  uv_loop_t l;
  uv_work_t w;
  (void)prctl(PR_GET_NAME, was);
  (void)prctl(PR_SET_NAME, "spike-pool");
  if (uv_loop_init(&l) == 0) {
    if (uv_queue_work(&l, &w, pool_noop, pool_noop_done) == 0) uv_run(&l, UV_RUN_DEFAULT);
    uv_loop_close(&l);
  }
  (void)prctl(PR_SET_NAME, was);
}

static void loop_main(void *arg) {
  loop_ctx *lc = arg;
  char name[16];
  snprintf(name, sizeof name, "spike-loop-%u", lc->idx % 10000);
  (void)prctl(PR_SET_NAME, name);
  uv_run(&lc->loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&lc->loop);
  if (rc != 0) log_line(LOG_ERROR, "server", NULL, NULL, "loop %u: handles left open", lc->idx);
  pthread_mutex_lock(&done_lock);
  loops_done++;
  pthread_cond_signal(&done_cond);
  pthread_mutex_unlock(&done_lock);
}

static void done_init(void) {
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&done_cond, &ca);
  pthread_condattr_destroy(&ca);
}

/* Wait until every loop is done or the deadline passes; 1 when all are.
 * On the monotonic clock: the wall clock stepped back an hour during a
 * drain held it (and the 5 s that end it) for that hour. */
static int wait_loops(uint32_t n, int64_t timeout_ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (timeout_ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
  pthread_mutex_lock(&done_lock);
  while (loops_done < n)
    if (pthread_cond_timedwait(&done_cond, &done_lock, &ts) == ETIMEDOUT) break;
  int all = loops_done >= n;
  pthread_mutex_unlock(&done_lock);
  return all;
}

/* ---- set-up ------------------------------------------------------------- */

static int parse_listen(const char *s, char *host, size_t hostcap, int *port,
                        struct sockaddr_storage *sa) {
  const char *colon = strrchr(s, ':');
  if (colon == NULL) return -1;
  size_t hl = (size_t)(colon - s);
  const char *h = s;
  int v6 = hl >= 2 && s[0] == '[' && s[hl - 1] == ']';
  if (v6) h++, hl -= 2;
  /* no host is no default: ":8080" would listen on every interface, the
   * admin routes' loopback rule included, without the address saying so */
  if (hl == 0 || hl >= hostcap) return -1;
  memcpy(host, h, hl);
  host[hl] = '\0';
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end != '\0' || p < 0 || p > 65535 || end == colon + 1) return -1;
  *port = (int)p;
  if (!v6 && uv_ip4_addr(host, *port, (struct sockaddr_in *)sa) == 0) return 0;
  if (v6 && uv_ip6_addr(host, *port, (struct sockaddr_in6 *)sa) == 0) return 0;
  return -1;
}

static int is_loopback(const struct sockaddr_storage *sa) {
  if (sa->ss_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->ss_family == AF_INET6) {
    static const unsigned char lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr, lo, 16) == 0;
  }
  return 0;
}

/* Make sure nobody listens on sa yet, and turn port 0 into the one port
 * every loop will share. The loops' sockets set SO_REUSEPORT so the kernel
 * spreads connections across them; without this probe a second spiked on
 * the same address would join them silently and take half the traffic. */
static int claim_address(struct sockaddr_storage *sa) {
  int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* TIME_WAIT is fine */
  socklen_t len = sa->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  int rc = bind(fd, (const struct sockaddr *)sa, len) == 0 ? 0 : -errno;
  if (rc == 0 && listen(fd, 1) != 0) rc = -errno; /* a bound, not listening, socket proves less */
  if (rc == 0 && getsockname(fd, (struct sockaddr *)sa, &len) != 0) rc = -errno;
  close(fd);
  return rc;
}

/* A listening socket of our own (libuv 1.44 has no SO_REUSEPORT flag). */
static int listen_on(loop_ctx *lc, const struct sockaddr_storage *sa) {
  int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  socklen_t len = sa->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  if (bind(fd, (const struct sockaddr *)sa, len) != 0) {
    int err = -errno;
    close(fd);
    return err;
  }
  uv_tcp_init(&lc->loop, &lc->listener);
  lc->listener.data = lc;
  lc->listening = 1;
  int rc = uv_tcp_open(&lc->listener, fd);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&lc->listener, LISTEN_BACKLOG, conn_on_accept);
  return rc;
}

static int loop_init(server *srv, loop_ctx *lc, uint32_t idx, const struct sockaddr_storage *sa) {
  lc->srv = srv;
  lc->idx = idx;
  /* Random in every bit: XXH3 of the 8-byte counter mixes the seed's high
   * half with the counter by XOR only, so salts that differed there alone
   * (getpid() << 32, two spiked started in the same second) gave the same
   * traceIds, shifted (outside QA: 192 of 200 shared). */
  if (getrandom(&lc->trace_salt, sizeof(lc->trace_salt), GRND_NONBLOCK) !=
      (ssize_t)sizeof(lc->trace_salt)) /* never waits at boot for the pool */
    lc->trace_salt = (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull ^ uv_hrtime() ^
                     ((uint64_t)getpid() << 17);
  lc->trace_salt ^= idx;
  lc->scratch = malloc(srv->lim.max_body_bytes);
  lc->events = calloc(srv->ecfg.max_events, sizeof(spike_event));
  lc->orders = calloc(API_LIST_MAX, sizeof(spike_order));
  lc->changes = calloc(API_FEED_MAX, sizeof(spike_change));
  if (lc->scratch == NULL || lc->events == NULL || lc->orders == NULL || lc->changes == NULL)
    return UV_ENOMEM;
  if (rl_init(&lc->rl, 1u << 16, srv->lim.rate_limit, srv->lim.rate_burst) != 0) return UV_ENOMEM;
  int rc = uv_loop_init(&lc->loop);
  if (rc != 0) return rc;
  lc->inited = 1;
  if ((rc = uv_loop_configure(&lc->loop, UV_METRICS_IDLE_TIME)) != 0) return rc;
  if (spike_producer_open(srv->engine, &lc->producer) != SPIKE_OK) {
    lc->producer = NULL;
    return UV_EMFILE;
  }
  if ((rc = spike_uv_attach(&lc->loop, &lc->adapter, lc->producer)) != 0) return rc;
  uv_async_init(&lc->loop, &lc->wake, on_wake);
  lc->wake.data = lc;
  uv_timer_init(&lc->loop, &lc->sweep);
  lc->sweep.data = lc;
  uv_timer_start(&lc->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
  uv_idle_init(&lc->loop, &lc->closer);
  lc->closer.data = lc;
  uv_check_init(&lc->loop, &lc->flush);
  lc->flush.data = lc;
  uv_check_start(&lc->flush, conn_flush_dirty);
  uv_prepare_init(&lc->loop, &lc->turn_clock);
  lc->turn_clock.data = lc;
  uv_prepare_start(&lc->turn_clock, on_prepare);
  lc->handles = 1;
  return listen_on(lc, sa);
}

/* Close a loop that never ran (start-up failed): its handles, then it. */
static void loop_abandon(loop_ctx *lc) {
  if (!lc->inited) return;
  lc->draining = 1;
  if (lc->handles) {
    if (lc->listening) close_quietly((uv_handle_t *)&lc->listener);
    server_loop_maybe_done(lc);
  } else if (lc->producer != NULL) {
    spike_producer_close(lc->producer);
    lc->producer = NULL;
  }
  uv_run(&lc->loop, UV_RUN_DEFAULT);
  uv_loop_close(&lc->loop);
}

static void loop_free(loop_ctx *lc) {
  rl_free(&lc->rl);
  free(lc->scratch);
  free(lc->events);
  free(lc->orders);
  free(lc->changes);
  for (req *r = lc->free_reqs, *next; r != NULL; r = next) {
    next = r->next;
    free(r);
  }
}

static void demo_done(spike_op *op) { (void)op; }

/* A demo event on an empty store, so `make run` has something to sell. */
static int create_demo(server *srv) {
  spike_event one;
  uint32_t n = 0;
  spike_event_list(srv->engine, 0, &one, 1, &n, NULL);
  if (n > 0) return 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  static const char name[] = "Demo flash sale";
  spike_event_spec s = {.id = 1, .name = name, .name_len = sizeof(name) - 1, .stock = 1000,
                        .price = 999, .start_at = now, .end_at = now + 366 * 24 * 3600 * 1000ll,
                        .per_user_limit = 1, .pay_timeout_s = 900};
  spike_producer *p;
  spike_op op;
  if (spike_producer_open(srv->engine, &p) != SPIKE_OK) return -1;
  int rc = spike_event_create(p, &op, &s, demo_done);
  if (rc == SPIKE_PENDING) {
    while (spike_producer_inflight(p) > 0) {
      struct timespec nap = {0, 1000000};
      nanosleep(&nap, NULL);
      spike_producer_drain(p);
    }
    rc = op.status;
  }
  spike_producer_close(p);
  if (rc != SPIKE_OK) {
    log_line(LOG_ERROR, "server", NULL, NULL, "demo event: %s", spike_strerror(rc));
    return -1;
  }
  log_line(LOG_INFO, "server", NULL, ",\"eventId\":\"1\"", "created the demo event");
  return 0;
}

static const char *from(const char *where) { return where != NULL ? where : ""; }

/* Whether a start could use dir as its data directory: 0, or the errno
 * that says why not, and in *file the store file that is at fault. A store
 * there needs its files readable and writable, and the directory writable
 * when lock.mdb or spike.lock are not there yet (a restore copies data.mdb
 * alone: the start makes them); an empty directory must take a new store;
 * one not there yet is made at start (mkdir -p), so the nearest directory
 * above it that is there must take it. */
static int data_dir_unusable(const char *dir, const char **file) {
  static const char *const names[] = {"data.mdb", "lock.mdb", "spike.lock"};
  struct stat st;
  if (stat(dir, &st) != 0) {
    int err = errno;
    char up[PATH_MAX], at[PATH_MAX];
    snprintf(at, sizeof(at), "%s", dir);
    while (err == ENOENT && strcmp(at, ".") != 0 && strcmp(at, "/") != 0) {
      path_dir(at, up, sizeof(up));
      snprintf(at, sizeof(at), "%s", up);
      if (stat(at, &st) == 0) return S_ISDIR(st.st_mode) ? dir_writable(at) : ENOTDIR;
      err = errno;
    }
    return err;
  }
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  int missing = 0;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char f[PATH_MAX];
    snprintf(f, sizeof(f), "%s/%s", dir, names[i]);
    if (access(f, F_OK) != 0) {
      missing = 1;
    } else if (access(f, R_OK | W_OK) != 0) {
      *file = names[i];
      return errno;
    }
  }
  return missing ? dir_writable(dir) : 0;
}

int server_check(const server_config *cfg, int starting) {
  char host[sizeof(((server *)0)->host)];
  int port;
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof(sa));
  if (parse_listen(cfg->listen, host, sizeof(host), &port, &sa) != 0) {
    fprintf(stderr,
            "spiked: %s--listen: bad value \"%s\": host:port or [v6]:port, the host an IP address "
            "(0.0.0.0 or [::] for every interface) (see --help)\n",
            from(cfg->listen_from), cfg->listen);
    return 2;
  }
  if (cfg->feed_token != NULL && cfg->feed_token[0] != '\0' && cfg->admin_token != NULL &&
      strcmp(cfg->feed_token, cfg->admin_token) == 0) {
    fprintf(stderr, "spiked: %s--feed-token: bad value: the same as --admin-token (see --help)\n",
            from(cfg->feed_token_from));
    return 2;
  }
  if (cfg->backup_dir != NULL && cfg->backup_dir[0] != '\0') {
    /* a backup makes a new directory there: one that takes none (read
     * only, not ours, /proc) fails every backup, and is told now */
    int bad = dir_writable(cfg->backup_dir);
    if (bad != 0) {
      fprintf(stderr, "spiked: %s--backup-dir: bad value \"%s\": %s (see --help)\n",
              from(cfg->backup_dir_from), cfg->backup_dir, strerror(bad));
      return 2;
    }
  }
  /* The data directory: a file, a directory (or a store's files) this user
   * cannot write, or one that cannot be made, is a start that exits 1, and
   * a service manager's restart loop. */
  if (!starting && cfg->engine.data_dir != NULL && cfg->engine.data_dir[0] != '\0') {
    const char *d = cfg->engine.data_dir;
    const char *file = NULL;
    int bad = data_dir_unusable(d, &file);
    if (bad != 0) {
      fprintf(stderr, "spiked: --data: bad value \"%s\": %s%s%s (see --help)\n", d,
              file != NULL ? file : "", file != NULL ? ": " : "", strerror(bad));
      return 2;
    }
  }
  if (cfg->auth == AUTH_JWT && (cfg->jwt_secret == NULL || cfg->jwt_secret[0] == '\0')) {
    fprintf(stderr, "spiked: --jwt-secret: missing: %s--auth jwt needs it (see --help)\n",
            from(cfg->auth_from));
    return 2;
  }
  /* The log files: a start opens (and creates) them before the store, and
   * exits 2 when it cannot; here nothing is left behind (path_writable
   * creates a file it must try, and removes it). A directory that is
   * not there yet is only a note for --check-config: a service manager
   * may make it at start (systemd's LogsDirectory=). */
  const struct {
    const char *flag, *path, *from;
  } files[] = {{"--log-file", cfg->log_file, cfg->log_file_from},
               {"--access-log", cfg->access_log, cfg->access_log_from}};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    const char *path = files[i].path;
    if (path == NULL || path[0] == '\0' || strcmp(path, "-") == 0) continue;
    int bad = path_writable(path);
    const char *from = files[i].from != NULL ? files[i].from : "";
    if (bad == ENOENT && !starting) {
      fprintf(stderr, "spiked: note: %s%s \"%s\": its directory does not exist yet; a start "
                      "without it exits 2\n", from, files[i].flag, path);
      continue;
    }
    if (bad != 0) {
      fprintf(stderr, "spiked: %s%s: bad value \"%s\": %s (see --help)\n", from, files[i].flag,
              path, strerror(bad));
      return 2;
    }
  }
  return 0;
}

/* Descriptors for every connection --max-conns allows, the refusals being
 * answered, and some to spare (the store, the logs, the loops): raise the
 * soft limit as far as the hard one lets. When that is not enough, lower
 * the connection limit for this run to what fits, and say so: past the
 * descriptors libuv drops a connection at accept, with nothing told to the
 * client and nothing counted, where past --max-conns it gets its 503 and
 * counts in spike_connections_refused_total (outside QA: at ulimit -n 300
 * and --max-conns 1000, 723 of 1000 clients got nothing, unlogged). */
#define LOOP_FDS 8 /* descriptors a loop thread holds: its epoll, eventfds, listener */

static void raise_nofile(const server_config *cfg, http_limits *lim) {
  struct rlimit rl;
  uint64_t base = 64 + (uint64_t)cfg->threads * LOOP_FDS; /* the store, the logs, the loops */
  uint64_t refusals = (uint64_t)cfg->threads * lim->max_refusals;
  uint64_t want = (uint64_t)lim->max_conns + refusals + base;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= want)
    return;
  rlim_t old = rl.rlim_cur;
  rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want ? (rlim_t)want : rl.rlim_max;
  if (rl.rlim_cur > old) setrlimit(RLIMIT_NOFILE, &rl);
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) return;
  /* The refusals take at most a quarter of what is left (their bound alone
   * could take it all: --threads 16 at ulimit -n 1024 left one connection,
   * outside QA), the connections the rest. */
  uint64_t left = rl.rlim_cur > base ? rl.rlim_cur - base : 0;
  uint32_t per_loop = lim->max_refusals;
  if (refusals > left / 4) per_loop = (uint32_t)(left / 4 / cfg->threads);
  uint64_t conns = left - (uint64_t)cfg->threads * per_loop;
  uint32_t fit = conns > 0 ? (uint32_t)conns : 1;
  log_line(LOG_WARN, "server", NULL, NULL,
           "open files limited to %llu, under the %llu that --max-conns %u needs: connections "
           "limited to %u and refusals to %u a loop thread for this run; raise ulimit -n "
           "(LimitNOFILE) or lower --max-conns",
           (unsigned long long)rl.rlim_cur, (unsigned long long)want, lim->max_conns, fit, per_loop);
  lim->max_conns = fit;
  lim->max_refusals = per_loop;
}

/*
 * While the store opens (recovery reads every order: seconds on a large
 * store), SIGINT and SIGTERM end the process at once, as they would any
 * program that has not begun to serve: nothing has been answered, and an
 * open cut short is a kill -9, which the store survives (I5). A thread of
 * its own waits for them on a signalfd, since the main thread is inside
 * spike_open; SIGHUP stays pending for the main thread's loop.
 */
typedef struct open_watch {
  pthread_t thread;
  int sfd;     /* signalfd: SIGINT, SIGTERM (blocked everywhere) */
  int stop;    /* eventfd: the store is open, stop watching */
} open_watch;

static void *open_watch_main(void *arg) {
  open_watch *w = arg;
  struct pollfd p[2] = {{w->sfd, POLLIN, 0}, {w->stop, POLLIN, 0}};
  for (;;) {
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return NULL; /* the open goes on; the signal is answered after it */
    }
    if (p[1].revents != 0) return NULL;
    struct signalfd_siginfo si; /* nonblocking: taken by another reader, it polls again */
    if (p[0].revents != 0 && read(w->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
      log_line(LOG_WARN, "server", NULL, NULL, "%s while the store was opening: exiting",
               si.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
      _exit(0);
    }
  }
}

/* 0: watching; -1: not (the signals then wait for the open, as before). */
static int open_watch_start(open_watch *w) {
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  w->sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
  if (w->sfd < 0) return -1;
  w->stop = eventfd(0, EFD_CLOEXEC);
  if (w->stop < 0) {
    close(w->sfd);
    return -1;
  }
  if (pthread_create(&w->thread, NULL, open_watch_main, w) != 0) {
    close(w->sfd);
    close(w->stop);
    return -1;
  }
  return 0;
}

static void open_watch_stop(open_watch *w) {
  uint64_t one = 1;
  ssize_t n;
  do n = write(w->stop, &one, sizeof(one));
  while (n < 0 && errno == EINTR);
  pthread_join(w->thread, NULL);
  close(w->sfd);
  close(w->stop);
}

/* The watch from main's first line (server_watch_start) until the store
 * is open: a SIGINT or SIGTERM while the config file or a log file is
 * opened or read (a FIFO, /dev/stdin, a hung mount: open and read block,
 * with the signals blocked) ended nothing; the process hung until a kill -9. */
static open_watch early_watch;
static int early_watching;

void server_watch_start(void) {
  if (!early_watching) early_watching = open_watch_start(&early_watch) == 0;
}

void server_watch_stop(void) {
  if (early_watching) open_watch_stop(&early_watch);
  early_watching = 0;
}

/* Tell a service manager how the start goes (systemd's Type=notify): one
 * datagram to $NOTIFY_SOCKET, a path or, after '@', an abstract name; the
 * protocol itself, not libsystemd. Nothing when it is not set. READY=1 once
 * spiked listens, so `systemctl start` and the units after it wait for the
 * store's recovery (seconds on a large store), and STOPPING=1 at the drain. */
static void notify_manager(const char *state) {
  const char *path = getenv("NOTIFY_SOCKET");
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  size_t n = path != NULL ? strlen(path) : 0;
  if (n < 2 || n >= sizeof(a.sun_path) || (path[0] != '/' && path[0] != '@')) return;
  memcpy(a.sun_path, path, n);
  if (path[0] == '@') a.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&a, len) < 0)
    log_line(LOG_WARN, "server", NULL, NULL, "NOTIFY_SOCKET %s: %s", path, strerror(errno));
  close(fd);
}

void server_signals(sigset_t *sigs) {
  sigemptyset(sigs);
  sigaddset(sigs, SIGINT);
  sigaddset(sigs, SIGTERM);
  sigaddset(sigs, SIGHUP);
}

int server_run(const server_config *cfg) {
  static server srv;
  int rc;
  struct sockaddr_storage sa;
  memset(&sa, 0, sizeof(sa));
  /* Signals are taken by this thread alone, with sigwait; every thread
   * started from here on (the access log's, the loops, the writer)
   * inherits the blocked mask, so none of them can be the one a SIGHUP or
   * SIGTERM kills. main blocks them from its first line (a SIGTERM in the
   * first milliseconds killed the process, 143); blocked here as well, and
   * the watch started, so that server_run stands on its own. */
  sigset_t sigs;
  server_signals(&sigs);
  pthread_sigmask(SIG_BLOCK, &sigs, NULL);
  if ((rc = server_check(cfg, 1)) != 0) return rc;
  done_init();
  signal(SIGPIPE, SIG_IGN);
  parse_listen(cfg->listen, srv.host, sizeof(srv.host), &srv.port, &sa); /* checked */
  srv.lim = cfg->lim;
  srv.threads = cfg->threads;
  srv.ecfg = cfg->engine;
  srv.ecfg.max_producers = cfg->threads + 2; /* loops, the demo, one spare */
  srv.auth = (auth_config){cfg->auth, cfg->jwt_secret, cfg->admin_token, is_loopback(&sa),
                           cfg->feed_token};
  if (log_to_file(cfg) && (rc = open_log_file(cfg->log_file)) != 0) {
    fprintf(stderr, "spiked: %s--log-file: bad value \"%s\": %s\n",
            from(cfg->log_file_from), cfg->log_file, strerror(-rc));
    return 2;
  }
  if (cfg->backup_dir != NULL && cfg->backup_dir[0] != '\0') srv.backup_dir = cfg->backup_dir;
  if (!srv.auth.loopback && (cfg->admin_token == NULL || cfg->admin_token[0] == '\0'))
    log_line(LOG_WARN, "server", NULL, NULL,
             "no admin token and not on loopback: admin routes are refused");
  /* Opened before the store, like --log-file: a bad path is a bad value. */
  if (cfg->access_log != NULL && cfg->access_log[0] != '\0') {
    char err[300];
    if (accesslog_open(&srv.access, cfg->access_log, cfg->threads, err, sizeof(err)) != 0) {
      fprintf(stderr, "spiked: %s%s\n", from(cfg->access_log_from),
              err); /* err names the flag and the path */
      return 2;
    }
  }

  raise_nofile(cfg, &srv.lim);

  /* The address first: a second spiked on a taken address fails at once,
   * before it opens (or creates) a store. */
  rc = claim_address(&sa);
  if (rc != 0) {
    log_line(LOG_ERROR, "server", NULL, NULL, "cannot listen on %s: %s", cfg->listen,
             uv_strerror(rc));
    accesslog_close(srv.access);
    return 1;
  }
  uint64_t open_ns = uv_hrtime();
  server_watch_start(); /* main started it already; a no-op then */
  rc = spike_open(&srv.engine, &srv.ecfg);
  server_watch_stop();
  if (rc != SPIKE_OK) {
    log_line(LOG_ERROR, "server", NULL, NULL, "cannot open the engine: %s: %s",
             spike_strerror(rc), spike_open_error());
    accesslog_close(srv.access);
    return 1;
  }
  {
    /* What recovery found, and what it cost: a restart's downtime grows
     * with the store (docs/operations.md, "Restarts"). */
    spike_stats st;
    spike_stats_get(srv.engine, &st);
    char fields[160];
    snprintf(fields, sizeof(fields),
             ",\"ms\":%llu,\"users\":%u,\"reservationsLive\":%u,\"feedSeq\":\"%llu\"",
             (unsigned long long)((uv_hrtime() - open_ns) / 1000000u), st.users_used,
             st.reservations_live, (unsigned long long)st.feed_seq);
    log_line(LOG_INFO, "server", NULL, fields, "store opened");
  }
  if (cfg->demo && create_demo(&srv) != 0) {
    spike_close(srv.engine);
    accesslog_close(srv.access);
    return 1;
  }
  conn_init_settings();
  srv.port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                           : ((struct sockaddr_in6 *)&sa)->sin6_port);
  srv.loops = calloc(cfg->threads, sizeof(loop_ctx));
  uint32_t made = 0;
  int exit_code = 0;
  for (; made < cfg->threads; made++) {
    rc = loop_init(&srv, &srv.loops[made], made, &sa);
    if (rc != 0) {
      log_line(LOG_ERROR, "server", NULL, NULL, "cannot listen on %s: %s", cfg->listen,
               uv_strerror(rc));
      exit_code = 1;
      made++;
      break;
    }
  }
  if (exit_code == 0) {
    metrics *shards[SPIKE_PRODUCERS_MAX];
    uint32_t ns = made < SPIKE_PRODUCERS_MAX ? made : SPIKE_PRODUCERS_MAX;
    for (uint32_t i = 0; i < ns; i++) shards[i] = &srv.loops[i].m;
    if ((rc = stats_open(&srv.stats, srv.engine, shards, ns)) != 0 ||
        (rc = stats_start(srv.stats)) != 0) { /* no history: the stats route says so */
      log_line(LOG_WARN, "server", NULL, NULL, "dashboard history: %s", strerror(-rc));
      stats_close(srv.stats);
      srv.stats = NULL;
    }
    start_pool();
    for (uint32_t i = 0; i < made; i++) {
      uv_thread_create(&srv.loops[i].thread, loop_main, &srv.loops[i]);
      srv.loops[i].started = 1;
    }
    /* The data directory is the operator's string: escaped, whole. */
    char dir[4 * PATH_MAX], fields[sizeof(dir) + 256], pace[40] = "";
    log_escape(dir, sizeof(dir), srv.ecfg.data_dir, strlen(srv.ecfg.data_dir));
    if (srv.ecfg.ack == SPIKE_ACK_MEMORY)
      snprintf(pace, sizeof(pace), ",\"memoryCommitUs\":%u", srv.ecfg.memory_commit_us);
    snprintf(fields, sizeof(fields),
             ",\"listen\":\"%s%s%s:%d\",\"data\":\"%s\",\"ack\":\"%s\"%s,\"threads\":%u,"
             "\"auth\":\"%s\"",
             sa.ss_family == AF_INET6 ? "[" : "", srv.host, sa.ss_family == AF_INET6 ? "]" : "",
             srv.port, dir, srv.ecfg.ack == SPIKE_ACK_DURABLE ? "durable" : "memory", pace, cfg->threads,
             cfg->auth == AUTH_JWT ? "jwt" : "none");
    log_line(LOG_INFO, "server", NULL, fields, "spiked %s listening", spike_version());
    notify_manager("READY=1");
    int sig = 0;
    /* "-" is stdout: nothing to reopen */
    int access_file = srv.access != NULL && strcmp(cfg->access_log, "-") != 0;
    while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
      int kept = 0; /* files that could not be reopened */
      if (log_to_file(cfg) && (rc = open_log_file(cfg->log_file)) != 0) {
        log_line(LOG_ERROR, "server", NULL, NULL, "SIGHUP: --log-file %s: %s (keeping the old file)",
                 cfg->log_file, strerror(-rc));
        kept++;
      }
      if (access_file && (rc = accesslog_reopen(srv.access)) != 0) {
        log_line(LOG_ERROR, "server", NULL, NULL, "SIGHUP: --access-log %s: %s (keeping the old file)",
                 cfg->access_log, strerror(-rc));
        kept++;
      }
      if (!log_to_file(cfg) && !access_file)
        log_line(LOG_INFO, "server", NULL, NULL,
                 "SIGHUP: no log files to reopen (neither --log-file nor --access-log names a file)");
      else if (kept == 0)
        log_line(LOG_INFO, "server", NULL, NULL, "SIGHUP: log files reopened");
      else
        log_line(LOG_WARN, "server", NULL, NULL, "SIGHUP: %d log file%s not reopened (above)", kept,
                 kept > 1 ? "s" : "");
    }
    log_line(LOG_INFO, "server", NULL, NULL, "%s: draining", sig == SIGINT ? "SIGINT" : "SIGTERM");
    notify_manager("STOPPING=1");
  }

  if (exit_code != 0) {
    for (uint32_t i = 0; i < made; i++) loop_abandon(&srv.loops[i]);
  } else {
    /* Drain: every loop stops accepting and finishes what it has. */
    /* release: a feed wait answered because of the release below says
     * Connection: close (api.c's acquire) */
    atomic_store_explicit(&srv.draining, 1, memory_order_release);
    spike_feed_release(srv.engine);
    for (uint32_t i = 0; i < made; i++) wake_loop(&srv.loops[i]);
    if (!wait_loops(made, cfg->lim.drain_timeout_ms)) {
      log_line(LOG_WARN, "server", NULL, NULL, "drain timed out after %u ms: closing connections",
               cfg->lim.drain_timeout_ms);
      for (uint32_t i = 0; i < made; i++) {
        srv.loops[i].forced = 1;
        wake_loop(&srv.loops[i]);
      }
      if (!wait_loops(made, 5000)) {
        log_line(LOG_ERROR, "server", NULL, NULL, "loops did not stop: exiting without a drain");
        _exit(1);
      }
    }
  }
  for (uint32_t i = 0; i < made; i++)
    if (srv.loops[i].started) uv_thread_join(&srv.loops[i].thread);
  stats_close(srv.stats); /* it reads the loops' shards: before they go */
  srv.stats = NULL;
  for (uint32_t i = 0; i < made; i++) loop_free(&srv.loops[i]);
  free(srv.loops);
  accesslog_close(srv.access); /* the loops are gone: write what they left */
  srv.access = NULL;
  rc = spike_close(srv.engine);
  if (rc != SPIKE_OK) {
    log_line(LOG_ERROR, "server", NULL, NULL, "engine close: %s", spike_strerror(rc));
    return 1;
  }
  if (exit_code == 0) log_line(LOG_INFO, "server", NULL, NULL, "drained; bye");
  return exit_code;
}

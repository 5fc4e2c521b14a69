/*
 * test_relay.c -- spike-relay (relay/) against a real spiked and a real
 * RabbitMQ broker, both started here on 127.0.0.1.
 *
 * The broker is a private instance of Debian's rabbitmq-server: its own
 * node name, AMQP, distribution and epmd ports, data and log directories
 * under a fresh temporary directory, run as this user; it never touches a
 * system-wide broker (if the package started one) and is killed with the
 * test. A machine without rabbitmq-server fails the broker cases, saying
 * so: they are never skipped.
 *
 * chaos: a load of reserves, pays and cancels on several events while the
 * relay, spiked and the broker are each killed with SIGKILL at random
 * points (SPIKE_SEED replays one), a consumer reading the queue all along.
 * Then: every change the feed holds arrived; the first copy of each came
 * in seq order (so in order per event); every repeat is one the relay was
 * entitled to (at most one page after a point it resumed from) or one the
 * broker redelivered to the reconnected consumer; every order acknowledged
 * 201 arrived. The relay ends on SIGTERM with exit 0 and its cursor at the
 * head.
 *
 *   SPIKE_RELAY_KILLS=R,S,B  kills of the relay, spiked, the broker (4,2,1)
 *   SPIKE_RELAY=build/asan/spike-relay   the relay under test
 *   SPIKE_RELAY_WRAP="valgrind -q --error-exitcode=99"   the relay under a tool
 *   SPIKE_RELAY_PACE=N       also take the pace (make bench-relay): N more
 *                            operations, then the whole feed through a fresh
 *                            relay and through feed_sqlite
 *   FEED_SQLITE=...          the reference consumer the pace is compared to
 *   RABBITMQ_SERVER=...      the broker's start script (found under
 *                            /usr/lib/rabbitmq otherwise)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "http_client.h"
#include "test.h"

#define LIMIT 50 /* the relay's page: the most one restart may repeat */
#define QUEUE "spike.test"
#define EVENTS 4

static hc_resp R;

static const char *relay_bin(void) {
  const char *b = getenv("SPIKE_RELAY");
  return b && *b ? b : "build/rel/spike-relay";
}

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) { usleep((useconds_t)ms * 1000); }

/* The file's text, NUL-terminated, static storage ("" if absent). */
static const char *slurp(const char *path) {
  static char buf[1 << 20];
  buf[0] = '\0';
  FILE *f = fopen(path, "r");
  if (f == NULL) return buf;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static pid_t spawn(const char *const *argv, const char *log) { return test_spawn(argv, log, 1); }

/* Wait up to ms for needle to appear in the file at path. */
static bool wait_log(const char *path, const char *needle, int ms) {
  for (int64_t until = test_now_ms() + ms; test_now_ms() < until; sleep_ms(50))
    if (strstr(slurp(path), needle) != NULL) return true;
  return false;
}

/* Wait for pid up to ms; its exit status (128 + signal), or -1 still running. */
static int reap(pid_t pid, int ms) {
  for (int i = 0; i <= ms / 10; i++) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid)
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    sleep_ms(10);
  }
  return -1;
}

static int stop(pid_t pid, int sig, int ms) {
  kill(pid, sig);
  int rc = reap(pid, ms);
  if (rc < 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
  return rc;
}

/* ---- the private broker ---------------------------------------------------- */

typedef struct rabbit {
  char dir[300], log[320];
  int port, dist_port, epmd_port;
  pid_t pid, epmd;
} rabbit;

static const char *rabbit_script(void) {
  static char path[512];
  const char *env = getenv("RABBITMQ_SERVER");
  if (env && *env) return env;
  glob_t g;
  path[0] = '\0';
  if (glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server", 0, NULL, &g) == 0) {
    snprintf(path, sizeof(path), "%s", g.gl_pathv[g.gl_pathc - 1]);
    globfree(&g);
  }
  return path;
}

/* Log in and out: the broker takes connections. */
static bool amqp_up(int port) {
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t *s = amqp_tcp_socket_new(c);
  struct timeval tv = {2, 0};
  bool ok = amqp_socket_open_noblock(s, "127.0.0.1", port, &tv) == AMQP_STATUS_OK &&
            amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type ==
                AMQP_RESPONSE_NORMAL;
  if (ok) amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
  return ok;
}

static void rabbit_boot(rabbit *r) {
  const char *script = rabbit_script();
  if (script[0] == '\0' || access(script, X_OK) != 0) {
    fprintf(stderr,
            "rabbitmq-server is not installed (no /usr/lib/rabbitmq/lib/rabbitmq_server-*/"
            "sbin/rabbitmq-server): `make deps` installs it; this test needs a real broker\n");
    abort();
  }
  char port[16], dist[16], epmd[16], node[64], s1[400], s2[400], s3[400], s4[400], s5[400];
  snprintf(port, sizeof(port), "%d", r->port);
  snprintf(dist, sizeof(dist), "%d", r->dist_port);
  snprintf(epmd, sizeof(epmd), "%d", r->epmd_port);
  snprintf(node, sizeof(node), "spike-test-%d@localhost", r->port);
  snprintf(s1, sizeof(s1), "%s/mnesia", r->dir);
  snprintf(s2, sizeof(s2), "%s/log", r->dir);
  snprintf(s3, sizeof(s3), "%s/rabbitmq", r->dir); /* rabbitmq.conf, empty */
  snprintf(s4, sizeof(s4), "%s/enabled_plugins", r->dir);
  snprintf(s5, sizeof(s5), "%s/pid", r->dir);
  fflush(NULL);
  r->pid = fork();
  CHECK(r->pid >= 0);
  if (r->pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    setenv("HOME", r->dir, 1); /* its own Erlang cookie */
    setenv("RABBITMQ_NODENAME", node, 1);
    setenv("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1", 1);
    setenv("RABBITMQ_NODE_PORT", port, 1);
    setenv("RABBITMQ_DIST_PORT", dist, 1);
    setenv("ERL_EPMD_PORT", epmd, 1);
    setenv("ERL_EPMD_ADDRESS", "127.0.0.1", 1);
    /* the Erlang distribution listener too (it took every interface) */
    setenv("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", "-kernel inet_dist_use_interface {127,0,0,1}", 1);
    setenv("RABBITMQ_MNESIA_BASE", s1, 1);
    setenv("RABBITMQ_LOG_BASE", s2, 1);
    setenv("RABBITMQ_CONFIG_FILE", s3, 1);
    setenv("RABBITMQ_ADVANCED_CONFIG_FILE", s3, 1); /* none there */
    setenv("RABBITMQ_CONF_ENV_FILE", s3, 1);
    setenv("RABBITMQ_ENABLED_PLUGINS_FILE", s4, 1);
    setenv("RABBITMQ_PID_FILE", s5, 1);
    /* exec the Erlang VM in this very process, so its pid is the broker */
    setenv("RUNNING_UNDER_SYSTEMD", "1", 1);
    int fd = open(r->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    execl(script, script, (char *)NULL);
    fprintf(stderr, "exec %s: %s\n", script, strerror(errno));
    _exit(127);
  }
  int64_t t0 = test_now_ms(), until = t0 + 120000; /* a loaded two-core machine: 15-25 s */
  while (!amqp_up(r->port)) {
    int st = reap(r->pid, 0);
    if (st >= 0 || test_now_ms() > until) {
      const char *log = slurp(r->log);
      size_t n = strlen(log);
      fprintf(stderr, "rabbitmq-server %s (node %s, port %d); its output ends:\n%s\n",
              st >= 0 ? "exited at start" : "did not take connections in 120 s", node, r->port,
              log + (n > 3000 ? n - 3000 : 0));
      abort();
    }
    sleep_ms(200);
  }
  fprintf(stderr, "rabbitmq-server up in %lld ms\n", (long long)(test_now_ms() - t0));
}

static void rabbit_start(rabbit *r) {
  memset(r, 0, sizeof(*r));
  snprintf(r->dir, sizeof(r->dir), "%s", test_tmpdir("rabbit"));
  snprintf(r->log, sizeof(r->log), "%s/broker.out", r->dir);
  r->port = hc_free_port();
  r->dist_port = hc_free_port();
  r->epmd_port = hc_free_port();
  char f[400];
  snprintf(f, sizeof(f), "%s/enabled_plugins", r->dir);
  FILE *pf = fopen(f, "w");
  CHECK(pf != NULL);
  fputs("[].\n", pf);
  fclose(pf);
  snprintf(f, sizeof(f), "%s/rabbitmq.conf", r->dir);
  pf = fopen(f, "w");
  CHECK(pf != NULL);
  fputs("loopback_users = none\n", pf);
  fclose(pf);
  /* our own epmd on a private port, so nothing outlives the test */
  char port[16], log[400];
  snprintf(port, sizeof(port), "%d", r->epmd_port);
  snprintf(log, sizeof(log), "%s/epmd.out", r->dir);
  const char *argv[] = {"epmd", "-port", port, "-address", "127.0.0.1", NULL};
  r->epmd = spawn(argv, log);
  sleep_ms(200);
  rabbit_boot(r);
}

static void rabbit_stop(rabbit *r) {
  if (r->pid > 0) stop(r->pid, SIGKILL, 10000);
  if (r->epmd > 0) stop(r->epmd, SIGKILL, 10000);
  r->pid = r->epmd = 0;
  test_rmrf(r->dir);
}

/* ---- the consumer: a child that writes down every delivery ------------------- */

static volatile sig_atomic_t consumer_stop;
static const char *consume_queue = QUEUE; /* the queue consume() reads */
static int consume_pause_ms;               /* and how long it takes over each message */
static int consume_prefetch = 200;         /* unacknowledged messages it may hold */
static void on_term(int sig) {
  (void)sig;
  consumer_stop = 1;
}

/* One line per delivery: "epoch seq redelivered message-id routing-key
 * order-id", order-id "-" for event changes; acked after it is written. */
static void consume(int port, const char *out) {
  signal(SIGTERM, on_term);
  FILE *f = fopen(out, "w");
  CHECK(f != NULL);
  for (int epoch = 1; !consumer_stop; epoch++) {
    amqp_connection_state_t c = amqp_new_connection();
    amqp_socket_t *s = amqp_tcp_socket_new(c);
    struct timeval tv = {2, 0};
    if (amqp_socket_open_noblock(s, "127.0.0.1", port, &tv) != AMQP_STATUS_OK ||
        amqp_login(c, "/", 0, 131072, 10, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type !=
            AMQP_RESPONSE_NORMAL)
      goto next;
    amqp_channel_open(c, 1);
    amqp_basic_qos(c, 1, 0, (uint16_t)consume_prefetch, 0);
    amqp_basic_consume(c, 1, amqp_cstring_bytes(consume_queue), amqp_empty_bytes, 0, 0, 0,
                       amqp_empty_table);
    if (amqp_get_rpc_reply(c).reply_type != AMQP_RESPONSE_NORMAL) goto next; /* no queue yet */
    while (!consumer_stop) {
      amqp_envelope_t e;
      struct timeval wait = {0, 200000};
      amqp_maybe_release_buffers(c);
      amqp_rpc_reply_t r = amqp_consume_message(c, &e, &wait, 0);
      if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && r.library_error == AMQP_STATUS_TIMEOUT)
        continue;
      if (r.reply_type != AMQP_RESPONSE_NORMAL) break;
      char body[4096], oid[32] = "-";
      snprintf(body, sizeof(body), "%.*s", (int)e.message.body.len, (char *)e.message.body.bytes);
      const char *o = strstr(body, "\"order\":{\"id\":\"");
      if (o) sscanf(o + 15, "%31[0-9]", oid);
      unsigned long long seq = 0;
      const char *q = strstr(body, "\"seq\":");
      if (q) seq = strtoull(q + 6, NULL, 10);
      amqp_basic_properties_t *p = &e.message.properties;
      fprintf(f, "%d %llu %d %.*s %.*s %s\n", epoch, seq, e.redelivered,
              (int)(p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG ? p->message_id.len : 1),
              p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG ? (char *)p->message_id.bytes : "?",
              (int)e.routing_key.len, (char *)e.routing_key.bytes, oid);
      fflush(f);
      if (consume_pause_ms > 0) sleep_ms(consume_pause_ms);
      int acked = amqp_basic_ack(c, 1, e.delivery_tag, 0);
      amqp_destroy_envelope(&e);
      if (acked != AMQP_STATUS_OK) break;
    }
  next:
    amqp_destroy_connection(c);
    if (!consumer_stop) sleep_ms(200);
  }
  fclose(f);
  _exit(0);
}

static pid_t consumer_start(int port, const char *out) {
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    consume(port, out);
  }
  return pid;
}

/* What the consumer saw, read back. */
typedef struct delivery {
  int epoch, redelivered;
  unsigned long long seq;
  char id[48], rkey[64], oid[32];
} delivery;

static delivery *deliveries;
static size_t n_deliveries;

static void read_deliveries(const char *path) {
  free(deliveries);
  deliveries = NULL;
  n_deliveries = 0;
  size_t cap = 0;
  FILE *f = fopen(path, "r");
  if (f == NULL) return;
  delivery d;
  while (fscanf(f, "%d %llu %d %47s %63s %31s", &d.epoch, &d.seq, &d.redelivered, d.id, d.rkey,
                d.oid) == 6) {
    if (n_deliveries == cap) {
      cap = cap ? cap * 2 : 1024;
      deliveries = realloc(deliveries, cap * sizeof(*deliveries));
      CHECK(deliveries != NULL);
    }
    deliveries[n_deliveries++] = d;
  }
  fclose(f);
}

/* The first copies, in arrival order, are 1, 2, 3, ...: the highest seq
 * up to which they are, stopping at a gap (printed when verbose). */
static unsigned long long first_copies_in_order(bool verbose) {
  unsigned long long top = 0;
  for (size_t i = 0; i < n_deliveries; i++) {
    if (deliveries[i].seq == top + 1)
      top++;
    else if (deliveries[i].seq > top + 1) {
      if (verbose)
        fprintf(stderr, "delivery %zu: seq %llu arrived before seq %llu: a change lost or late\n",
                i, deliveries[i].seq, top + 1);
      break;
    }
  }
  return top;
}

/* ---- the relay ------------------------------------------------------------- */

typedef struct relay {
  pid_t pid;
  char cursor[400], log[400];
} relay;

static void relay_start(relay *r, int feed_port, int amqp_port, const char *const *extra) {
  char feed[32], amqp[32], limit[16];
  snprintf(feed, sizeof(feed), "127.0.0.1:%d", feed_port);
  snprintf(amqp, sizeof(amqp), "127.0.0.1:%d", amqp_port);
  snprintf(limit, sizeof(limit), "%d", LIMIT);
  /* SPIKE_RELAY_WRAP: words to run it under (valgrind ...) */
  static char wrap[256];
  const char *argv[48];
  int n = 0;
  const char *w = getenv("SPIKE_RELAY_WRAP");
  snprintf(wrap, sizeof(wrap), "%s", w ? w : "");
  for (char *save, *t = strtok_r(wrap, " ", &save); t && n < 8; t = strtok_r(NULL, " ", &save))
    argv[n++] = t;
  const char *fixed[] = {relay_bin(), "--feed",           feed,  "--feed-token",
                         "rd",        "--amqp",           amqp,  "--cursor",
                         r->cursor,   "--limit",          limit, "--wait-ms",
                         "1000",      "--backoff-max-ms", "500", "--confirm-timeout-ms",
                         "3000"};
  argv[n++] = fixed[0];
  /* flag and value pairs; one that extra gives is extra's (a repeat is
   * refused) */
  for (size_t i = 1; i + 1 < sizeof(fixed) / sizeof(fixed[0]); i += 2) {
    int overridden = 0;
    for (int k = 0; extra && extra[k]; k++)
      overridden |= strcmp(extra[k], fixed[i]) == 0;
    if (!overridden) argv[n++] = fixed[i], argv[n++] = fixed[i + 1];
  }
  for (int i = 0; extra && extra[i] && n < 46; i++)
    argv[n++] = extra[i];
  argv[n] = NULL;
  r->pid = spawn(argv, r->log);
}

/* The cursor file as "<store> <seq>": the seq, or 0 when there is none. */
static unsigned long long cursor_seq(const char *path, char *store, size_t cap) {
  unsigned long long seq = 0;
  char id[64] = "";
  if (sscanf(slurp(path), "%63s %llu", id, &seq) != 2) seq = 0;
  if (store) snprintf(store, cap, "%s", id);
  return seq;
}

/* ---- load ------------------------------------------------------------------ */

static uint64_t rng;
static char acked_orders[20000][24];
static size_t n_acked;

static int create_event(int port, uint64_t id) {
  char body[512];
  snprintf(body, sizeof(body),
           "{\"id\":%llu,\"name\":\"Sale %llu\",\"stock\":1000000,\"price\":1500,\"start_at\":%lld,"
           "\"end_at\":%lld,\"per_user_limit\":1000,\"pay_timeout_s\":600}",
           (unsigned long long)id, (unsigned long long)id, (long long)(wall_ms() - 60000),
           (long long)(wall_ms() + 3600000));
  return hc_do(port, "POST", "/api/v1/events", "Authorization: Bearer adm\r\n", body, &R);
}

/* n operations: reserves on random events, some paid or cancelled at once.
 * Refusals while spiked restarts are fine: the feed is the truth; every
 * 201 is noted, to be found at the consumer. */
static void load(int port, int n) {
  for (int i = 0; i < n; i++) {
    char path[96], body[96], oid[24];
    uint64_t ev = 1 + test_rand(&rng) % EVENTS;
    snprintf(path, sizeof(path), "/api/v1/events/%llu/orders", (unsigned long long)ev);
    unsigned long long user = 1 + test_rand(&rng) % 50;
    snprintf(body, sizeof(body), "{\"user_id\":\"%llu\"}", user);
    if (hc_do(port, "POST", path, NULL, body, &R) != 201 ||
        hc_json(&R, "data.id", oid, sizeof(oid)) != 0)
      continue;
    if (n_acked < sizeof(acked_orders) / sizeof(acked_orders[0]))
      snprintf(acked_orders[n_acked++], sizeof(acked_orders[0]), "%s", oid);
    unsigned what = (unsigned)(test_rand(&rng) % 4);
    if (what == 0) {
      snprintf(path, sizeof(path), "/api/v1/orders/%s/pay", oid);
      snprintf(body, sizeof(body), "{\"user_id\":\"%llu\",\"payment_id\":\"p%s\"}", user, oid);
      hc_do(port, "POST", path, NULL, body, &R);
    } else if (what == 1) {
      snprintf(path, sizeof(path), "/api/v1/orders/%s/cancel", oid);
      snprintf(body, sizeof(body), "{\"user_id\":\"%llu\"}", user);
      hc_do(port, "POST", path, NULL, body, &R);
    }
  }
}

static unsigned long long feed_head(int port, char *store, size_t cap) {
  CHECK_EQ(
      hc_do(port, "GET", "/api/v1/feed?after=0&limit=1", "Authorization: Bearer rd\r\n", NULL, &R),
      200);
  CHECK(hc_json(&R, "data.storeId", store, cap) == 0);
  return (unsigned long long)hc_json_int(&R, "data.head");
}

/* Every "after":N the relay logged: where it started or resumed. */
static size_t resume_points(const char *log, unsigned long long *out, size_t cap) {
  size_t n = 0;
  for (const char *p = strstr(log, "\"after\":"); p && n < cap; p = strstr(p + 1, "\"after\":"))
    out[n++] = strtoull(p + 8, NULL, 10);
  return n;
}

/* ---- the cases ------------------------------------------------------------- */

/* A case's broker, and spiked (the feed token "rd", the admin token "adm")
 * with events 1..EVENTS, its data and the consumer's file in the case's
 * own folder (tmp/spiked, tmp/seen). */
static const char *const relay_sargs[] = {"--feed-token", "rd", "--admin-token", "adm", NULL};
static void world_start(rabbit *mq, spiked *s, const char *name, char *tmp, size_t tmp_cap,
                        char *dir, size_t dir_cap, char *seen, size_t seen_cap) {
  rng = test_seed();
  rabbit_start(mq);
  snprintf(tmp, tmp_cap, "%s", test_tmpdir(name));
  snprintf(dir, dir_cap, "%s/spiked", tmp);
  snprintf(seen, seen_cap, "%s/seen", tmp);
  spiked_start(s, dir, relay_sargs);
  for (uint64_t e = 1; e <= EVENTS; e++)
    CHECK_EQ(create_event(s->port, e), 201);
}

/* What world_start started, stopped, and the case's folder removed. */
static void world_stop(rabbit *mq, spiked *s, const char *tmp) {
  CHECK_EQ(spiked_stop(s, SIGTERM), 0);
  rabbit_stop(mq);
  test_rmrf(tmp);
}

/* A relay's cursor and log in a case's folder. */
static void relay_in(relay *r, const char *tmp) {
  snprintf(r->cursor, sizeof(r->cursor), "%s/cursor", tmp);
  snprintf(r->log, sizeof(r->log), "%s/relay.log", tmp);
}

/* Until the relay's cursor reaches seq, at most ms: the cursor's seq. */
static unsigned long long cursor_reaches(const relay *r, unsigned long long seq, int ms) {
  int64_t t0 = test_now_ms();
  while (cursor_seq(r->cursor, NULL, 0) < seq && test_now_ms() - t0 < ms)
    sleep_ms(50);
  return cursor_seq(r->cursor, NULL, 0);
}

/* A connection to the private broker, logged in, channel 1 open. */
static amqp_connection_state_t amqp_open(int port) {
  amqp_connection_state_t c = amqp_new_connection();
  amqp_socket_t *so = amqp_tcp_socket_new(c);
  struct timeval tv = {5, 0};
  CHECK(amqp_socket_open_noblock(so, "127.0.0.1", port, &tv) == AMQP_STATUS_OK);
  CHECK(amqp_login(c, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type ==
        AMQP_RESPONSE_NORMAL);
  amqp_channel_open(c, 1);
  CHECK(amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL);
  return c;
}

static void amqp_done(amqp_connection_state_t c) {
  amqp_connection_close(c, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(c);
}

static void chaos(void) {
  int kills[3] = {4, 2, 1}; /* relay, spiked, broker */
  const char *k = getenv("SPIKE_RELAY_KILLS");
  if (k) CHECK(sscanf(k, "%d,%d,%d", &kills[0], &kills[1], &kills[2]) == 3);
  rabbit mq;
  spiked s;
  char dir[256], tmp[200], seen[256];
  world_start(&mq, &s, "relay", tmp, sizeof(tmp), dir, sizeof(dir), seen, sizeof(seen));

  static const char *const rargs[] = {"--queue", QUEUE, NULL};
  relay r;
  relay_in(&r, tmp);
  relay_start(&r, s.port, mq.port, rargs);
  pid_t cons = consumer_start(mq.port, seen);

  /* the kills, in a random order, each after a random burst of load */
  char plan[64];
  int steps = 0;
  for (int w = 0; w < 3; w++)
    for (int i = 0; i < kills[w] && steps < 60; i++)
      plan[steps++] = "rsb"[w];
  for (int i = steps - 1; i > 0; i--) {
    int j = (int)(test_rand(&rng) % (uint64_t)(i + 1));
    char t = plan[i];
    plan[i] = plan[j], plan[j] = t;
  }
  unsigned long long resumed[512];
  size_t n_resumed = 0;
  for (int i = 0; i < steps; i++) {
    load(s.port, 30 + (int)(test_rand(&rng) % 100));
    sleep_ms((int)(test_rand(&rng) % 150)); /* the relay somewhere in a page */
    if (plan[i] == 'r') {
      /* a backlog first, so the kill lands in the middle of pages */
      kill(r.pid, SIGSTOP);
      load(s.port, LIMIT + 10 + (int)(test_rand(&rng) % 100));
      kill(r.pid, SIGCONT);
      sleep_ms((int)(test_rand(&rng) % 200));
      CHECK_EQ(stop(r.pid, SIGKILL, 10000), 128 + SIGKILL);
      resumed[n_resumed++] = cursor_seq(r.cursor, NULL, 0);
      load(s.port, 30);
      relay_start(&r, s.port, mq.port, rargs);
    } else if (plan[i] == 's') {
      CHECK_EQ(spiked_stop(&s, SIGKILL), 128 + SIGKILL);
      sleep_ms(300);
      spiked_start_on(&s, s.port, dir, relay_sargs);
    } else {
      CHECK_EQ(stop(mq.pid, SIGKILL, 10000), 128 + SIGKILL);
      load(s.port, 50); /* the relay waits it out */
      rabbit_boot(&mq);
    }
    fprintf(stderr, "step %d: killed %s\n", i,
            plan[i] == 'r'   ? "the relay"
            : plan[i] == 's' ? "spiked"
                             : "the broker");
  }
  load(s.port, 100);

  /* everything arrives */
  char store[40];
  unsigned long long head = feed_head(s.port, store, sizeof(store)), got = 0;
  int64_t until = test_now_ms() + 60000;
  while ((got = (read_deliveries(seen), first_copies_in_order(false))) < head &&
         test_now_ms() < until)
    sleep_ms(200);
  if (got < head) {
    fprintf(stderr, "the consumer has seqs 1..%llu of %llu in order; relay log:\n%s\n", got, head,
            slurp(r.log));
    first_copies_in_order(true);
  }
  CHECK_EQ(got, head);
  /* the relay stops on SIGTERM, exit 0, its cursor at the head */
  CHECK_EQ(stop(r.pid, SIGTERM, 20000), 0);
  char cstore[40];
  CHECK_EQ(cursor_seq(r.cursor, cstore, sizeof(cstore)), head);
  CHECK(strcmp(cstore, store) == 0);
  char ep[40] = ""; /* and the epoch of its record */
  CHECK(sscanf(slurp(r.cursor), "%*s %*u %39s", ep) == 1 && strlen(ep) == 16);
  CHECK_EQ(stop(cons, SIGTERM, 10000), 0);
  read_deliveries(seen);

  /* in order: the first copies are 1..head with no gap (so, per event too) */
  CHECK_EQ(first_copies_in_order(true), head);
  /* each message says what it is */
  unsigned *copies = calloc(head + 1, sizeof(unsigned));
  int *first_epoch = calloc(head + 1, sizeof(int));
  CHECK(copies && first_epoch);
  n_resumed += resume_points(slurp(r.log), resumed + n_resumed, 512 - n_resumed);
  size_t dups = 0, relay_dups = 0;
  for (size_t i = 0; i < n_deliveries; i++) {
    delivery *d = &deliveries[i];
    char want[64];
    snprintf(want, sizeof(want), "%s:%llu", store, d->seq);
    CHECK(d->seq >= 1 && d->seq <= head);
    if (strcmp(d->id, want) != 0) fprintf(stderr, "message id %s for seq %llu\n", d->id, d->seq);
    CHECK(strcmp(d->id, want) == 0);
    CHECK(strncmp(d->rkey, "order.", 6) == 0 || strncmp(d->rkey, "event.", 6) == 0);
    if (copies[d->seq]++ == 0) {
      first_epoch[d->seq] = d->epoch;
      continue;
    }
    dups++;
    /* a repeat: the broker's, to a consumer that reconnected or on a
     * redelivery it marked; or the relay's, within one page after a point
     * it resumed from */
    if (d->epoch != first_epoch[d->seq] || d->redelivered) continue;
    bool explained = false;
    for (size_t j = 0; j < n_resumed && !explained; j++)
      explained = resumed[j] < d->seq && d->seq <= resumed[j] + LIMIT;
    if (!explained) fprintf(stderr, "seq %llu repeated, and no resume point explains it\n", d->seq);
    CHECK(explained);
    relay_dups++;
  }
  /* every order acknowledged 201 arrived */
  for (size_t i = 0; i < n_acked; i++) {
    bool found = false;
    for (size_t j = 0; j < n_deliveries && !found; j++)
      found = strcmp(deliveries[j].oid, acked_orders[i]) == 0;
    if (!found) fprintf(stderr, "order %s was acknowledged and never arrived\n", acked_orders[i]);
    CHECK(found);
  }
  printf("  %llu changes, %zu deliveries, %zu repeats (%zu by the relay), %zu resume points, "
         "kills: relay %d, spiked %d, broker %d\n",
         head, n_deliveries, dups, relay_dups, n_resumed, kills[0], kills[1], kills[2]);

  /* a change that no queue takes is not dropped: the relay stops on it,
   * its cursor unwritten */
  relay u;
  snprintf(u.cursor, sizeof(u.cursor), "%s/cursor-nowhere", tmp);
  snprintf(u.log, sizeof(u.log), "%s/relay-nowhere.log", tmp);
  static const char *const nowhere[] = {"--exchange", "spike.nowhere", NULL};
  relay_start(&u, s.port, mq.port, nowhere);
  CHECK_EQ(reap(u.pid, 20000), 1);
  CHECK(strstr(slurp(u.log), "routed a change nowhere") != NULL);
  CHECK(access(u.cursor, F_OK) != 0);
  /* a refused login is not waited out: exit 1, the broker's words */
  unlink(u.log);
  static const char *const wrong[] = {"--amqp-password", "wrong", NULL};
  relay_start(&u, s.port, mq.port, wrong);
  CHECK_EQ(reap(u.pid, 20000), 1);
  CHECK(strstr(slurp(u.log), "ACCESS_REFUSED") != NULL);
  CHECK(access(u.cursor, F_OK) != 0);

  /* the relay's pace: the whole feed again into a fresh queue, and the
   * reference consumer (feed_sqlite, one fsync per page too) over the same
   * feed, for scale; SPIKE_RELAY_PACE=N adds N operations first */
  /* --stop-at is where it stops, not the end of the page it falls in
   * (a relay at --stop-at 5 published a whole page of 500) */
  relay st;
  snprintf(st.cursor, sizeof(st.cursor), "%s/cursor-stop", tmp);
  snprintf(st.log, sizeof(st.log), "%s/relay-stop.log", tmp);
  const char *stop_args[] = {"--exchange", "spike.stop", "--queue", "spike.stop",
                             "--stop-at",  "5",          NULL};
  relay_start(&st, s.port, mq.port, stop_args);
  CHECK_EQ(reap(st.pid, 30000), 0);
  CHECK_EQ(cursor_seq(st.cursor, NULL, 0), 5);
  const char *more = getenv("SPIKE_RELAY_PACE");
  if (more == NULL) goto done; /* make bench-relay, not make test */
  load(s.port, atoi(more));
  head = feed_head(s.port, store, sizeof(store));
  relay b;
  snprintf(b.cursor, sizeof(b.cursor), "%s/cursor-bench", tmp);
  snprintf(b.log, sizeof(b.log), "%s/relay-bench.log", tmp);
  char stop_at[32], db[300], feed[32];
  snprintf(stop_at, sizeof(stop_at), "%llu", head);
  /* an exchange of its own: only the bench queue takes these */
  const char *bargs[] = {"--exchange", "spike.bench", "--queue", "spike.bench", "--stop-at",
                         stop_at,      "--limit",     "1000",    NULL};
  int64_t t0 = test_now_ms();
  relay_start(&b, s.port, mq.port, bargs);
  /* its peak resident size, read while it runs (VmHWM) */
  long hwm_kb = 0;
  int rc;
  while ((rc = reap(b.pid, 50)) < 0 && test_now_ms() - t0 < 600000) {
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)b.pid);
    const char *st = strstr(slurp(path), "VmHWM:");
    if (st) hwm_kb = strtol(st + 6, NULL, 10);
  }
  CHECK_EQ(rc, 0);
  int64_t relay_ms = test_now_ms() - t0;
  const char *fs = getenv("FEED_SQLITE");
  snprintf(db, sizeof(db), "%s/feed.db", tmp);
  snprintf(feed, sizeof(feed), "127.0.0.1:%d", s.port);
  const char *fargs[] = {fs && *fs ? fs : "build/rel/examples/feed_sqlite",
                         feed,
                         db,
                         "--token",
                         "rd",
                         "--stop-at",
                         stop_at,
                         "--limit",
                         "1000",
                         NULL};
  t0 = test_now_ms();
  CHECK_EQ(reap(spawn(fargs, b.log), 600000), 0);
  int64_t sqlite_ms = test_now_ms() - t0;
  printf("  spike-relay's peak resident size: %ld KiB\n", hwm_kb);
  printf("  pace, %llu changes in pages of 1000: spike-relay %lld ms, %.0f changes/s; "
         "feed_sqlite %lld ms, %.0f changes/s\n",
         head, (long long)relay_ms, (double)head * 1000 / (double)(relay_ms ? relay_ms : 1),
         (long long)sqlite_ms, (double)head * 1000 / (double)(sqlite_ms ? sqlite_ms : 1));

done:
  free(copies);
  free(first_epoch);
  world_stop(&mq, &s, tmp);
}

/* A queue that refuses what it has no room for (x-max-length 5,
 * x-overflow reject-publish) nacks most of every page of 50: the relay
 * used to publish the whole page again, refused again, forever, and flood
 * the queue with repeats meanwhile (found by outside QA). Now, after a
 * nack, it publishes that page's changes one at a time, each after the one
 * before it was confirmed, and every change gets through. */
static void nacking_queue(void) {
  rabbit mq;
  spiked s;
  char dir[256], tmp[200], seen[256];
  world_start(&mq, &s, "relay-nack", tmp, sizeof(tmp), dir, sizeof(dir), seen, sizeof(seen));
  load(s.port, 120);
  char store[40];
  unsigned long long head = feed_head(s.port, store, sizeof(store));
  CHECK(head > 2 * LIMIT);

  /* the capped queue, bound to all of an exchange of its own */
  amqp_connection_state_t c = amqp_open(mq.port);
  amqp_exchange_declare(c, 1, amqp_cstring_bytes("spike.capped"), amqp_cstring_bytes("topic"), 0,
                        1, 0, 0, amqp_empty_table);
  CHECK(amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL);
  amqp_table_entry_t args[2] = {
      {.key = amqp_cstring_bytes("x-max-length"),
       .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = 5}},
      {.key = amqp_cstring_bytes("x-overflow"),
       .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes("reject-publish")}},
  };
  amqp_queue_declare(c, 1, amqp_cstring_bytes("spike.capped"), 0, 1, 0, 0,
                     (amqp_table_t){.num_entries = 2, .entries = args});
  CHECK(amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL);
  amqp_queue_bind(c, 1, amqp_cstring_bytes("spike.capped"), amqp_cstring_bytes("spike.capped"),
                  amqp_cstring_bytes("#"), amqp_empty_table);
  CHECK(amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL);
  amqp_done(c);

  relay r;
  relay_in(&r, tmp);
  static const char *const rargs[] = {"--exchange", "spike.capped", "--backoff-max-ms", "200", NULL};
  relay_start(&r, s.port, mq.port, rargs);
  /* nobody reads yet: the queue fills at 5 and the rest of the page is refused */
  CHECK(wait_log(r.log, "refused (nacked) part of the page", 30000));
  /* a reader slower than a page comes: a whole page never fits */
  consume_queue = "spike.capped";
  consume_pause_ms = 5;
  consume_prefetch = 1; /* held messages are not counted against x-max-length */
  pid_t cons = consumer_start(mq.port, seen);
  CHECK_EQ(cursor_reaches(&r, head, 60000), head);
  CHECK(strstr(slurp(r.log), "one change at a time") != NULL);
  CHECK_EQ(stop(r.pid, SIGTERM, 10000), 0);
  /* the consumer takes what the queue still holds (5 at most) */
  int64_t t0 = test_now_ms();
  do {
    sleep_ms(100);
    read_deliveries(seen);
  } while ((n_deliveries == 0 || deliveries[n_deliveries - 1].seq < head) &&
           test_now_ms() - t0 < 10000);
  CHECK_EQ(stop(cons, SIGTERM, 10000), 0);
  read_deliveries(seen);
  /* every change arrived (a nacked page's later changes may come first) */
  unsigned char *got = calloc(head + 1, 1);
  CHECK(got != NULL);
  for (size_t i = 0; i < n_deliveries; i++)
    if (deliveries[i].seq >= 1 && deliveries[i].seq <= head) got[deliveries[i].seq] = 1;
  for (unsigned long long q = 1; q <= head; q++)
    if (!got[q]) {
      fprintf(stderr, "seq %llu never arrived\n", q);
      CHECK(got[q]);
    }
  free(got);
  consume_queue = QUEUE;
  consume_pause_ms = 0;
  consume_prefetch = 200;
  world_stop(&mq, &s, tmp);
}

/* The queue --queue declares, deleted while the relay runs: the next
 * change comes back unroutable. It used to stop the relay (exit 1, "bind
 * a queue ... or pass --queue", with --queue passed); now it reconnects,
 * which declares the queue again, and publishes from its cursor (outside
 * QA). */
static void queue_deleted(void) {
  rabbit mq;
  spiked s;
  char dir[256], tmp[200], seen[256];
  world_start(&mq, &s, "relay-qdel", tmp, sizeof(tmp), dir, sizeof(dir), seen, sizeof(seen));
  load(s.port, 20);
  relay r;
  relay_in(&r, tmp);
  static const char *const rargs[] = {"--queue", QUEUE, NULL};
  relay_start(&r, s.port, mq.port, rargs);
  char store[40];
  unsigned long long head = feed_head(s.port, store, sizeof(store));
  CHECK_EQ(cursor_reaches(&r, head, 30000), head);
  amqp_connection_state_t c = amqp_open(mq.port);
  amqp_queue_delete(c, 1, amqp_cstring_bytes(QUEUE), 0, 0);
  CHECK(amqp_get_rpc_reply(c).reply_type == AMQP_RESPONSE_NORMAL);
  amqp_done(c);
  load(s.port, 20);
  head = feed_head(s.port, store, sizeof(store));
  CHECK_EQ(cursor_reaches(&r, head, 30000), head);
  CHECK(kill(r.pid, 0) == 0); /* still running */
  CHECK(strstr(slurp(r.log), "routed a change nowhere") != NULL);
  CHECK_EQ(stop(r.pid, SIGTERM, 10000), 0);
  world_stop(&mq, &s, tmp);
}

/* Feed requests spiked has answered so far, every status. */
static long long feed_requests(int port) {
  CHECK_EQ(hc_do(port, "GET", "/metrics", NULL, NULL, &R), 200);
  long long n = 0;
  static const char key[] = "spike_http_request_duration_seconds_count{route=\"feed\"";
  for (const char *p = strstr(R.body, key); p != NULL; p = strstr(p + 1, key))
    n += strtoll(strchr(p, ' ') + 1, NULL, 10);
  return n;
}

/* The stops and the waits that need no broker: a closed port stands in. */
static void stops_and_waits(void) {
  static const char *const sargs[] = {"--feed-token", "rd", "--admin-token", "adm", NULL};
  spiked s;
  char store[40], tmp[200], dir[256], line[128];
  snprintf(tmp, sizeof(tmp), "%s", test_tmpdir("relay-stops"));
  snprintf(dir, sizeof(dir), "%s/spiked", tmp);
  spiked_start(&s, dir, sargs);
  CHECK_EQ(create_event(s.port, 1), 201);
  load(s.port, 5);
  unsigned long long head = feed_head(s.port, store, sizeof(store));
  int closed = hc_free_port();
  relay r;
  relay_in(&r, tmp);
#define CURSOR(...)                                                                                \
  do {                                                                                             \
    FILE *f_ = fopen(r.cursor, "w");                                                               \
    CHECK(f_ != NULL);                                                                             \
    snprintf(line, sizeof(line), __VA_ARGS__);                                                     \
    fputs(line, f_);                                                                               \
    fclose(f_);                                                                                    \
    unlink(r.log);                                                                                 \
  } while (0)

  /* another store's cursor: exit 3, saying so */
  CURSOR("00000000deadbeef 3\n");
  relay_start(&r, s.port, closed, NULL);
  CHECK_EQ(reap(r.pid, 20000), 3);
  CHECK(strstr(slurp(r.log), "a replaced store") != NULL);
  /* this store's id and a seq it has, but another history's record there
   * (a copy of the store that took other writes): exit 3, saying so */
  CURSOR("%s %llu 0123456789abcdef\n", store, head);
  relay_start(&r, s.port, closed, NULL);
  CHECK_EQ(reap(r.pid, 20000), 3);
  CHECK(strstr(slurp(r.log), "another epoch") != NULL);
  /* a cursor ahead of the head (an older copy of the store): exit 4 */
  CURSOR("%s %llu\n", store, head + 10);
  relay_start(&r, s.port, closed, NULL);
  CHECK_EQ(reap(r.pid, 20000), 4);
  CHECK(strstr(slurp(r.log), "is ahead of the feed's head") != NULL);
  CHECK_EQ(cursor_seq(r.cursor, NULL, 0), head + 10); /* untouched */
  /* ... with --stop-at behind it too: checked against the feed, not taken
   * for "reached" (it exited 0) */
  static const char *const stop_behind[] = {"--stop-at", "1", NULL};
  relay_start(&r, s.port, closed, stop_behind);
  CHECK_EQ(reap(r.pid, 20000), 4);
  /* --from starts a new cursor only: one that exists is where downstream
   * stands */
  static const char *const from[] = {"--from", "1", NULL};
  relay_start(&r, s.port, closed, from);
  CHECK_EQ(reap(r.pid, 20000), 1);
  CHECK(strstr(slurp(r.log), "--from starts a new one") != NULL);
  CHECK_EQ(cursor_seq(r.cursor, NULL, 0), head + 10);
  /* --queue binds with '#': with a direct exchange it would route nothing */
  static const char *const direct[] = {"--exchange-type", "direct", "--queue", "q", NULL};
  relay_start(&r, s.port, closed, direct);
  CHECK_EQ(reap(r.pid, 20000), 2);
  CHECK(strstr(slurp(r.log), "direct exchange") != NULL);
  /* a cursor file that is not one: exit 1, not a guess */
  CURSOR("garbage\n");
  relay_start(&r, s.port, closed, NULL);
  CHECK_EQ(reap(r.pid, 20000), 1);
  CHECK(strstr(slurp(r.log), "is not '<store id> <seq> [<epoch>]'") != NULL);
  /* a seq that is not digits is malformed too: "-5" was read as 2^64-5, a
   * cursor "ahead of the feed" (exit 4) (outside QA) */
  CURSOR("%s -5\n", store);
  relay_start(&r, s.port, closed, NULL);
  CHECK_EQ(reap(r.pid, 20000), 1);
  CHECK(strstr(slurp(r.log), "is not '<store id> <seq> [<epoch>]'") != NULL);
  /* --wait-ms 0 on a feed with nothing new: a pause between the empty
   * pages, not a spin (without the pause, over 30 in that second; outside QA) */
  CURSOR("%s %llu\n", store, head);
  static const char *const no_wait[] = {"--wait-ms", "0", NULL};
  long long asked = feed_requests(s.port);
  relay_start(&r, s.port, closed, no_wait);
  sleep_ms(1000);
  asked = feed_requests(s.port) - asked;
  CHECK(asked >= 3 && asked <= 30); /* about one each 100 ms */
  CHECK_EQ(stop(r.pid, SIGTERM, 10000), 0);
  /* a wrong token: exit 1 */
  unlink(r.cursor);
  static const char *const bad_token[] = {"--feed-token", "nope", NULL};
  relay_start(&r, s.port, closed, bad_token);
  CHECK_EQ(reap(r.pid, 20000), 1);
  CHECK(strstr(slurp(r.log), "refused the token") != NULL);

  /* no broker: it waits, retrying with backoff, and SIGTERM ends it at
   * once with exit 0, no cursor written; a second relay on the same
   * cursor is refused meanwhile */
  unlink(r.log);
  relay_start(&r, s.port, closed, NULL);
  CHECK(wait_log(r.log, "cannot connect to the broker", 20000));
  sleep_ms(500);
  CHECK_EQ(reap(r.pid, 0), -1);
  relay two;
  snprintf(two.cursor, sizeof(two.cursor), "%s", r.cursor);
  snprintf(two.log, sizeof(two.log), "%s/two.log", tmp);
  relay_start(&two, s.port, closed, NULL);
  CHECK_EQ(reap(two.pid, 20000), 1);
  CHECK(strstr(slurp(two.log), "another spike-relay holds") != NULL);
  CHECK_EQ(stop(r.pid, SIGTERM, 10000), 0); /* not waiting out the backoff */
  CHECK(access(r.cursor, F_OK) != 0);

  /* no spiked: the same */
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  unlink(r.log);
  relay_start(&r, s.port, closed, NULL);
  CHECK(wait_log(r.log, "no answer from", 20000));
  CHECK_EQ(reap(r.pid, 0), -1);
  CHECK_EQ(stop(r.pid, SIGTERM, 10000), 0);

  /* usage */
  unlink(r.log);
  const char *h[] = {relay_bin(), "--help", NULL};
  CHECK_EQ(reap(spawn(h, r.log), 10000), 0);
  CHECK(strstr(slurp(r.log), "usage: spike-relay") != NULL);
  const char *bad[] = {relay_bin(), "--feed",  "127.0.0.1:1", "--cursor",
                       r.cursor,    "--limit", "5000",        NULL};
  CHECK_EQ(reap(spawn(bad, r.log), 10000), 2);
  CHECK(strstr(slurp(r.log), "--limit 5000: not 1-1000") != NULL);
  const char *twice[] = {relay_bin(), "--feed",  "127.0.0.1:1", "--cursor", r.cursor,
                         "--limit",   "5",       "--limit",     "6",        NULL};
  CHECK_EQ(reap(spawn(twice, r.log), 10000), 2);
  CHECK(strstr(slurp(r.log), "--limit given twice") != NULL);
  const char *spaced[] = {relay_bin(), "--feed",  "127.0.0.1:1", "--cursor",
                          r.cursor,    "--limit", " 5",          NULL};
  CHECK_EQ(reap(spawn(spaced, r.log), 10000), 2);
  const char *none[] = {relay_bin(), "--cursor", r.cursor, NULL};
  CHECK_EQ(reap(spawn(none, r.log), 10000), 2);
  CHECK(strstr(slurp(r.log), "--feed HOST:PORT is required") != NULL);
  test_rmrf(tmp);
}

/* A store restored from a backup of the cursor's store (docs/operations.md,
 * Backups): a cursor at most the backup's last seq goes on under the new
 * store id (it was refused as a replaced store, and a relay started afresh
 * republished the whole history); one past it is refused (exit 4), naming
 * what downstream has that the restored store does not. No broker needed. */
static void restored_store(void) {
  spiked s;
  char tmp[200], dir[256], backups[256], restored[256], store[40], line[128];
  snprintf(tmp, sizeof(tmp), "%s", test_tmpdir("relay-restored"));
  snprintf(dir, sizeof(dir), "%s/spiked", tmp);
  snprintf(backups, sizeof(backups), "%s/backups", tmp);
  snprintf(restored, sizeof(restored), "%s/restored", tmp);
  CHECK(mkdir(backups, 0755) == 0);
  const char *sargs[] = {"--feed-token", "rd", "--admin-token", "adm", "--backup-dir", backups,
                         NULL};
  spiked_start(&s, dir, sargs);
  CHECK_EQ(create_event(s.port, 1), 201);
  load(s.port, 5);
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/admin/backup", "Authorization: Bearer adm\r\n",
                 "{\"name\":\"b1\"}", &R),
           201);
  load(s.port, 5); /* past the backup: the old store's own */
  unsigned long long old_head = feed_head(s.port, store, sizeof(store));
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  CHECK(mkdir(restored, 0755) == 0);
  char cmd[800];
  snprintf(cmd, sizeof(cmd), "cp '%s/b1/data.mdb' '%s/'", backups, restored);
  CHECK(system(cmd) == 0);
  spiked_start(&s, restored, sargs);
  CHECK_EQ(hc_do(s.port, "GET", "/api/v1/feed?after=0&limit=1", "Authorization: Bearer rd\r\n",
                 NULL, &R),
           200);
  char v[40], new_id[40];
  CHECK(hc_header(&R, "X-Spike-Restored-Seq", v, sizeof(v)) != NULL);
  unsigned long long rseq = strtoull(v, NULL, 10);
  CHECK(hc_header(&R, "X-Spike-Store-Id", new_id, sizeof(new_id)) != NULL);
  CHECK(strcmp(new_id, store) != 0 && rseq >= 2 && rseq < old_head);
  int closed = hc_free_port();
  relay r;
  relay_in(&r, tmp);
  /* behind the backup's last seq: goes on under the new id, the cursor
   * rewritten at once, then waits for the broker with the next page */
  FILE *f = fopen(r.cursor, "w");
  CHECK(f != NULL);
  fprintf(f, "%s %llu\n", store, rseq - 2);
  fclose(f);
  relay_start(&r, s.port, closed, NULL);
  CHECK(wait_log(r.log, "cannot connect to the broker", 20000));
  CHECK(strstr(slurp(r.log), "restored from a backup of the cursor's store") != NULL);
  char id[40];
  CHECK_EQ(cursor_seq(r.cursor, id, sizeof(id)), rseq - 2);
  CHECK(strcmp(id, new_id) == 0);
  CHECK_EQ(stop(r.pid, SIGTERM, 10000), 0);
  /* past it: what was published after the backup is not in this store */
  f = fopen(r.cursor, "w");
  CHECK(f != NULL);
  fprintf(f, "%s %llu\n", store, old_head);
  fclose(f);
  unlink(r.log);
  relay_start(&r, s.port, closed, NULL);
  CHECK_EQ(reap(r.pid, 20000), 4);
  snprintf(line, sizeof(line), "at seq %llu, behind the cursor %llu", rseq, old_head);
  CHECK(strstr(slurp(r.log), line) != NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(tmp);
}

TEST_LIST({"stops_and_waits", stops_and_waits, 60}, {"restored_store", restored_store, 60},
          {"nacking_queue", nacking_queue, 120}, {"queue_deleted", queue_deleted, 90},
          {"chaos", chaos, 400})

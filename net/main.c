/*
 * main.c -- spiked: flags, their environment twins, --help, then server_run.
 *
 * One table describes every flag: its name, its variable (SPIKE_ plus the
 * name in capitals), its kind, its default and its help line, so --help,
 * the environment and the parser can never disagree. Environment first,
 * then flags, so a flag always wins.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server.h"

typedef enum kind { K_STR, K_U32, K_U64, K_SIZE, K_BOOL, K_ACK, K_AUTH, K_LEVEL } kind;

typedef struct flag {
  const char *name; /* without the dashes */
  kind k;
  void *dst;
  const char *def;  /* shown in --help */
  const char *help;
  uint64_t min, max;
} flag;

static server_config cfg;
static int log_level = LOG_INFO;
static uint32_t threads_u32 = 1;

#define U32(field) (&cfg.field)

static flag flags[] = {
    {"listen", K_STR, &cfg.listen, "127.0.0.1:8080", "address to listen on: host:port or [v6]:port", 0, 0},
    {"data", K_STR, &cfg.engine.data_dir, "./data", "data directory (LMDB files and a lock file)", 0, 0},
    {"ack", K_ACK, &cfg.engine.ack, "durable",
     "durable: 201 after the fsync'd commit; memory: 201 at enqueue (a crash can lose one batch)", 0, 0},
    {"threads", K_U32, &threads_u32, "1", "event-loop threads (each with its own listener)", 1, 62},
    {"batch-max", K_U32, U32(engine.batch_max), "4096", "operations per commit", 1, 65536},
    {"batch-us", K_U32, U32(engine.batch_us), "0", "extra microseconds a commit may wait to fill", 0, 1000000},
    {"map-size", K_SIZE, &cfg.engine.map_size_bytes, "1G", "LMDB map size (K, M, G suffixes)", 1u << 20, UINT64_MAX},
    {"auth", K_AUTH, &cfg.auth, "none", "none: the body's user_id is the user; jwt: HS256 bearer tokens", 0, 0},
    {"jwt-secret", K_STR, &cfg.jwt_secret, "", "HS256 secret for --auth jwt", 0, 0},
    {"admin-token", K_STR, &cfg.admin_token, "",
     "bearer token for admin routes; without one they are open only on loopback", 0, 0},
    {"log-level", K_LEVEL, &log_level, "info", "debug, info, warn or error", 0, 0},
    {"demo", K_BOOL, &cfg.demo, "off", "create a demo event (id 1) on an empty store", 0, 0},
    {"max-conns", K_U32, U32(lim.max_conns), "10000", "open connections; past it new ones get a 503", 1, 10000000},
    {"max-refusals", K_U32, U32(lim.max_refusals), "64",
     "connections past --max-conns being answered 503, per loop thread; past it: closed unanswered",
     0, 1000000},
    {"max-header-bytes", K_U32, U32(lim.max_header_bytes), "8192", "request line and headers; 413 past it", 256, 1u << 20},
    {"max-body-bytes", K_U32, U32(lim.max_body_bytes), "65536", "request body; 413 past it", 64, 16u << 20},
    {"header-timeout-ms", K_U32, U32(lim.header_timeout_ms), "10000",
     "a request must arrive whole within this (slowloris)", 100, 3600000},
    {"idle-timeout-ms", K_U32, U32(lim.idle_timeout_ms), "60000",
     "idle keep-alive connections, and clients that do not read, are closed after this", 100, 86400000},
    {"max-pipeline", K_U32, U32(lim.max_pipeline), "16", "requests in flight per connection", 1, 1024},
    {"max-pipeline-bytes", K_SIZE, &cfg.lim.max_pipeline_bytes, "64K",
     "answers per connection not yet taken by the client; past it no more requests are read",
     1024, 1u << 30},
    {"drain-timeout-ms", K_U32, U32(lim.drain_timeout_ms), "10000",
     "on SIGTERM, longest wait for in-flight requests", 0, 600000},
    {"linger-ms", K_U32, U32(lim.linger_ms), "5000",
     "after an answer that ends a connection, discard client input this long (0: close)", 0, 600000},
    {"linger-idle-ms", K_U32, U32(lim.linger_idle_ms), "2000",
     "... or until the client is quiet this long", 1, 600000},
    {"linger-max-bytes", K_SIZE, &cfg.lim.linger_max_bytes, "8M",
     "... or until this much is discarded (K, M, G suffixes)", 0, UINT64_MAX},
    {"rate-limit", K_U32, U32(lim.rate_limit), "0",
     "requests per second per client address, per loop thread; 0: off (429 past it)", 0, 10000000},
    {"rate-burst", K_U32, U32(lim.rate_burst), "0", "token-bucket size for --rate-limit (0: the rate)", 0,
     10000000},
    {"max-events", K_U32, U32(engine.max_events), "4096", "events the engine holds", 1, 1u << 24},
    {"max-buyers", K_U32, U32(engine.max_buyers), "1048576",
     "(event, user) slots, a power of two, usable to 3/4", 4, 1u << 30},
    {"max-keys", K_U32, U32(engine.max_keys), "1048576",
     "idempotency key slots, a power of two, usable to 3/4", 4, 1u << 30},
    {"max-users", K_U32, U32(engine.max_users), "0",
     "users with orders in the store, a power of two, usable to 3/4 (0: as --max-buyers)", 0,
     1u << 30},
    {"max-reserved", K_U32, U32(engine.max_reserved), "1048576", "live reservations (reserved, not yet paid, cancelled or expired)",
     1, 1u << 30},
    {"ring-size", K_U32, U32(engine.ring_size), "8192", "commit ring slots per loop thread, a power of two", 2,
     1u << 24},
    {"feed-retain", K_U64, &cfg.engine.feed_retain, "0", "newest change-feed records kept (0: all)", 0,
     UINT64_MAX},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

static void usage(FILE *f) {
  fprintf(f,
          "usage: spiked [flags]\n\n"
          "spike's flash-sale endpoint: reserve, pay and cancel over HTTP/1.1 with\n"
          "every 201 on disk (ack=durable). SIGTERM or SIGINT drains and exits 0.\n\n"
          "Every flag also reads from the environment variable shown; a flag wins.\n\n");
  for (size_t i = 0; i < NFLAGS; i++) {
    char env[64], *e = env;
    e += snprintf(env, sizeof(env), "SPIKE_");
    for (const char *n = flags[i].name; *n; n++) *e++ = *n == '-' ? '_' : (char)(*n & ~0x20);
    *e = '\0';
    fprintf(f, "  --%-18s %-24s %s (default %s)\n", flags[i].name, env, flags[i].help,
            flags[i].def[0] ? flags[i].def : "none");
  }
  fprintf(f, "  --%-18s %-24s %s\n  --%-18s %-24s %s\n", "help", "", "this text", "version", "",
          "print the version");
}

static int parse_u64(const char *v, uint64_t *out, int sizes) {
  char *end;
  errno = 0;
  if (*v == '-' || *v == '\0') return -1;
  unsigned long long x = strtoull(v, &end, 10);
  if (errno != 0 || end == v) return -1;
  uint64_t mul = 1;
  if (sizes && *end != '\0') {
    switch (*end | 0x20) {
    case 'k': mul = 1ull << 10; break;
    case 'm': mul = 1ull << 20; break;
    case 'g': mul = 1ull << 30; break;
    case 't': mul = 1ull << 40; break;
    default: return -1;
    }
    end++;
    if ((*end | 0x20) == 'b' || (*end | 0x20) == 'i') end++;
    if ((*end | 0x20) == 'b') end++;
  }
  if (*end != '\0' || x > UINT64_MAX / mul) return -1;
  *out = x * mul;
  return 0;
}

static int set(const flag *f, const char *v, const char *from) {
  uint64_t x;
  switch (f->k) {
  case K_STR: *(const char **)f->dst = v; return 0;
  case K_BOOL:
    if (v == NULL || strcmp(v, "1") == 0 || strcmp(v, "true") == 0 || strcmp(v, "on") == 0 ||
        strcmp(v, "yes") == 0)
      *(int *)f->dst = 1;
    else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0 || strcmp(v, "off") == 0 ||
             strcmp(v, "no") == 0)
      *(int *)f->dst = 0;
    else
      break;
    return 0;
  case K_ACK:
    if (strcmp(v, "durable") == 0) *(spike_ack *)f->dst = SPIKE_ACK_DURABLE;
    else if (strcmp(v, "memory") == 0) *(spike_ack *)f->dst = SPIKE_ACK_MEMORY;
    else break;
    return 0;
  case K_AUTH:
    if (strcmp(v, "none") == 0) *(auth_mode *)f->dst = AUTH_NONE;
    else if (strcmp(v, "jwt") == 0) *(auth_mode *)f->dst = AUTH_JWT;
    else break;
    return 0;
  case K_LEVEL: {
    int l = log_level_parse(v);
    if (l < 0) break;
    *(int *)f->dst = l;
    return 0;
  }
  case K_U32:
  case K_U64:
  case K_SIZE:
    if (parse_u64(v, &x, f->k == K_SIZE) != 0 || x < f->min || x > f->max) break;
    if (f->k == K_U32) *(uint32_t *)f->dst = (uint32_t)x;
    else *(uint64_t *)f->dst = x;
    return 0;
  }
  fprintf(stderr, "spiked: %s%s: bad value \"%s\" (see --help)\n", from, f->name, v ? v : "");
  return -1;
}

static const flag *find(const char *name, size_t n) {
  for (size_t i = 0; i < NFLAGS; i++)
    if (strlen(flags[i].name) == n && memcmp(flags[i].name, name, n) == 0) return &flags[i];
  return NULL;
}

static int from_env(void) {
  for (size_t i = 0; i < NFLAGS; i++) {
    char env[64], *e = env;
    e += snprintf(env, sizeof(env), "SPIKE_");
    for (const char *n = flags[i].name; *n; n++) *e++ = *n == '-' ? '_' : (char)(*n & ~0x20);
    *e = '\0';
    const char *v = getenv(env);
    if (v != NULL && set(&flags[i], v, "$SPIKE_ for --") != 0) return -1;
  }
  return 0;
}

static int from_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(a, "--version") == 0) {
      printf("spiked %s\n", spike_version());
      exit(0);
    }
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "spiked: unexpected argument \"%s\" (see --help)\n", a);
      return -1;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    const flag *f = find(name, n);
    if (f == NULL) {
      fprintf(stderr, "spiked: unknown flag \"%s\" (see --help)\n", a);
      return -1;
    }
    const char *v = eq ? eq + 1 : NULL;
    if (v == NULL && f->k != K_BOOL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "spiked: --%s needs a value\n", f->name);
        return -1;
      }
      v = argv[++i];
    }
    if (set(f, v, "--") != 0) return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  server_config_init(&cfg);
  if (from_env() != 0 || from_args(argc, argv) != 0) return 2;
  cfg.threads = threads_u32;
  log_set_level(log_level);
  if ((cfg.engine.max_buyers & (cfg.engine.max_buyers - 1)) != 0 ||
      (cfg.engine.max_keys & (cfg.engine.max_keys - 1)) != 0 ||
      (cfg.engine.max_users & (cfg.engine.max_users - 1)) != 0 ||
      (cfg.engine.ring_size & (cfg.engine.ring_size - 1)) != 0) {
    fprintf(stderr,
            "spiked: --max-buyers, --max-keys, --max-users and --ring-size must be powers of two\n");
    return 2;
  }
  return server_run(&cfg);
}

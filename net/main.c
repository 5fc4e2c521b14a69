/*
 * main.c -- spiked: flags, their environment twins, --help, then server_run.
 *
 * One table describes every flag: its name, its variable (SPIKE_ plus the
 * name in capitals), its kind, its default, its bounds and its help line,
 * so --help, the environment, the config file and the parser can never
 * disagree, and every bad value is refused with the same sentence naming
 * what is allowed. The config file (--config FILE) first, then the
 * environment, then flags, so a flag always wins.
 */
#include <errno.h>
#include <signal.h>
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
  int pow2;         /* 1: a power of two; 2: that or 0 (which means another flag's value) */
} flag;

static server_config cfg;
static int log_level = LOG_INFO;
static uint32_t threads_u32 = 1;

#define U32(field) (&cfg.field)

static flag flags[] = {
    {"listen", K_STR, &cfg.listen, "127.0.0.1:8080", "address to listen on: host:port or [v6]:port", 0, 0, 0},
    {"data", K_STR, &cfg.engine.data_dir, "./data", "data directory (LMDB files and a lock file)", 0, 0, 0},
    {"ack", K_ACK, &cfg.engine.ack, "durable",
     "durable: 201 after the fsync'd commit; memory: 201 at enqueue (a crash can lose one batch)", 0, 0, 0},
    {"threads", K_U32, &threads_u32, "1", "event-loop threads (each with its own listener)", 1, 62, 0},
    {"batch-max", K_U32, U32(engine.batch_max), "4096", "operations per commit", 1, 65536, 0},
    {"batch-us", K_U32, U32(engine.batch_us), "0", "extra microseconds a commit may wait to fill", 0, 1000000, 0},
    {"memory-commit-us", K_U32, U32(engine.memory_commit_us), "5000",
     "with --ack memory: longest a reserve answered at enqueue waits for its commit (0: commit at once)", 0, 1000000, 0},
    {"map-size", K_SIZE, &cfg.engine.map_size_bytes, "1G",
     "LMDB map size; doubled at open when the store is over 80% full", 1u << 20, 1ull << 46, 0},
    {"auth", K_AUTH, &cfg.auth, "none", "none: the body's user_id is the user; jwt: HS256 bearer tokens", 0, 0, 0},
    {"jwt-secret", K_STR, &cfg.jwt_secret, "", "HS256 secret for --auth jwt", 0, 0, 0},
    {"admin-token", K_STR, &cfg.admin_token, "",
     "bearer token for admin routes; without one they are open only on loopback", 0, 0, 0},
    {"backup-dir", K_STR, &cfg.backup_dir, "",
     "POST /api/v1/admin/backup writes backups here, each a new directory (off without it)", 0, 0, 0},
    {"feed-token", K_STR, &cfg.feed_token, "",
     "read-only bearer token: GET /api/v1/feed and nothing else", 0, 0, 0},
    {"access-log", K_STR, &cfg.access_log, "",
     "one JSON line per request to this file, or - for stdout (reopened on SIGHUP)", 0, 0, 0},
    {"log-file", K_STR, &cfg.log_file, "", "the JSON log to this file, not stderr (reopened on SIGHUP)", 0, 0, 0},
    {"log-level", K_LEVEL, &log_level, "info", "debug, info, warn or error", 0, 0, 0},
    {"demo", K_BOOL, &cfg.demo, "off", "create a demo event (id 1) on an empty store", 0, 0, 0},
    {"max-conns", K_U32, U32(lim.max_conns), "10000", "open connections; past it new ones get a 503 (probes and /metrics are answered)", 1, 10000000, 0},
    {"max-refusals", K_U32, U32(lim.max_refusals), "64",
     "connections past --max-conns being read and answered (503, or a probe), per loop thread; past it: closed unanswered",
     0, 1000000, 0},
    {"max-header-bytes", K_U32, U32(lim.max_header_bytes), "8192", "request line and headers; 413 past it", 256, 1u << 20, 0},
    {"max-body-bytes", K_U32, U32(lim.max_body_bytes), "65536", "request body; 413 past it", 64, 16u << 20, 0},
    {"header-timeout-ms", K_U32, U32(lim.header_timeout_ms), "10000",
     "a request must arrive whole within this (slowloris)", 100, 3600000, 0},
    {"idle-timeout-ms", K_U32, U32(lim.idle_timeout_ms), "60000",
     "idle keep-alive connections, and clients that do not read, are closed after this", 100, 86400000, 0},
    {"max-pipeline", K_U32, U32(lim.max_pipeline), "16", "requests in flight per connection", 1, 1024, 0},
    {"max-pipeline-bytes", K_SIZE, &cfg.lim.max_pipeline_bytes, "64K",
     "answers per connection not yet taken by the client; past it no more requests are read",
     1024, 1u << 30, 0},
    {"drain-timeout-ms", K_U32, U32(lim.drain_timeout_ms), "10000",
     "on SIGTERM, longest wait for in-flight requests", 0, 600000, 0},
    {"linger-ms", K_U32, U32(lim.linger_ms), "5000",
     "after an answer that ends a connection, discard client input this long (0: close)", 0, 600000, 0},
    {"linger-idle-ms", K_U32, U32(lim.linger_idle_ms), "2000",
     "... or until the client is quiet this long", 1, 600000, 0},
    {"linger-max-bytes", K_SIZE, &cfg.lim.linger_max_bytes, "8M",
     "... or until this much is discarded", 0, UINT64_MAX, 0},
    {"turn-budget-us", K_U32, U32(lim.turn_budget_us), "250",
     "a loop turn busy this long takes no more new connections' work (0: one of each a turn)", 0,
     1000000, 0},
    {"rate-limit", K_U32, U32(lim.rate_limit), "0",
     "requests per second per client address, per loop thread; 0: off (429 past it)", 0, 10000000, 0},
    {"rate-burst", K_U32, U32(lim.rate_burst), "0", "token-bucket size for --rate-limit (0: the rate)", 0,
     10000000, 0},
    {"max-events", K_U32, U32(engine.max_events), "4096", "events the engine holds", 1, 1u << 24, 0},
    {"max-buyers", K_U32, U32(engine.max_buyers), "1048576",
     "(event, user) slots, usable to 3/4", 4, 1u << 30, 1},
    {"max-keys", K_U32, U32(engine.max_keys), "1048576",
     "idempotency key slots, usable to 3/4", 4, 1u << 30, 1},
    {"max-users", K_U32, U32(engine.max_users), "0",
     "users with orders in the store, usable to 3/4 (0: as --max-buyers)", 4, 1u << 30, 2},
    {"max-reserved", K_U32, U32(engine.max_reserved), "1048576", "live reservations (reserved, not yet paid, cancelled or expired)",
     1, 1u << 30, 0},
    {"ring-size", K_U32, U32(engine.ring_size), "8192", "commit ring slots per loop thread", 2,
     1u << 24, 1},
    {"feed-retain", K_U64, &cfg.engine.feed_retain, "0", "newest change-feed records kept (0: all)", 0,
     UINT64_MAX, 0},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

/* A size as --help and errors write it: "1M" when whole, else bytes. */
static void fmt_size(char *out, size_t cap, uint64_t v) {
  static const char units[] = "TGMK";
  for (int u = 0; u < 4; u++) {
    uint64_t m = 1ull << (10 * (4 - u));
    if (v >= m && v % m == 0) {
      snprintf(out, cap, "%llu%c", (unsigned long long)(v / m), units[u]);
      return;
    }
  }
  snprintf(out, cap, "%llu", (unsigned long long)v);
}

/* What a flag accepts, in words: the same text in --help and in errors. */
static void allowed(const flag *f, char *out, size_t cap) {
  char lo[32], hi[32];
  switch (f->k) {
  case K_STR: snprintf(out, cap, "a string"); break;
  case K_BOOL: snprintf(out, cap, "on or off (also true/false, yes/no, 1/0)"); break;
  case K_ACK: snprintf(out, cap, "durable or memory"); break;
  case K_AUTH: snprintf(out, cap, "none or jwt"); break;
  case K_LEVEL: snprintf(out, cap, "debug, info, warn or error"); break;
  case K_SIZE:
    fmt_size(lo, sizeof(lo), f->min);
    if (f->max == UINT64_MAX)
      snprintf(out, cap, "a size of at least %s: bytes, or a number with K, M, G or T (KiB..TiB)", lo);
    else
      fmt_size(hi, sizeof(hi), f->max),
          snprintf(out, cap, "a size from %s to %s: bytes, or a number with K, M, G or T (KiB..TiB)",
                   lo, hi);
    break;
  case K_U32:
  case K_U64:
    if (f->pow2)
      snprintf(out, cap, "%sa power of two from %llu to %llu", f->pow2 == 2 ? "0 or " : "",
               (unsigned long long)f->min, (unsigned long long)f->max);
    else if (f->max == UINT64_MAX)
      snprintf(out, cap, "an integer, %llu or more", (unsigned long long)f->min);
    else
      snprintf(out, cap, "an integer from %llu to %llu", (unsigned long long)f->min,
               (unsigned long long)f->max);
    break;
  }
}

static void env_name(const flag *f, char *env, size_t cap) {
  char *e = env + snprintf(env, cap, "SPIKE_");
  for (const char *n = f->name; *n && e < env + cap - 1; n++) *e++ = *n == '-' ? '_' : (char)(*n & ~0x20);
  *e = '\0';
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: spiked [--config FILE] [flags]\n\n"
          "spike's flash-sale endpoint: reserve, pay and cancel over HTTP/1.1 with\n"
          "every 201 on disk (ack=durable). SIGTERM or SIGINT drains and exits 0;\n"
          "SIGHUP reopens --log-file and --access-log.\n\n"
          "Every flag also reads from the environment variable shown, and from a\n"
          "config file (--config FILE or SPIKE_CONFIG: one \"name = value\" a line,\n"
          "the names below without dashes, # comments). A flag wins over the\n"
          "environment, which wins over the file.\n\n");
  for (size_t i = 0; i < NFLAGS; i++) {
    char env[64], what[160];
    env_name(&flags[i], env, sizeof(env));
    fprintf(f, "  --%-18s %-24s %s (default %s)\n", flags[i].name, env, flags[i].help,
            flags[i].def[0] ? flags[i].def : "none");
    if (flags[i].k != K_STR) {
      allowed(&flags[i], what, sizeof(what));
      fprintf(f, "  %-45s %s\n", "", what);
    }
  }
  fprintf(f, "  --%-18s %-24s %s\n  --%-18s %-24s %s\n  --%-18s %-24s %s\n", "config", "SPIKE_CONFIG",
          "read flags from this file first", "help", "", "this text", "version", "",
          "print the version");
  fprintf(f, "  --%-18s %-24s %s\n  %-45s %s\n", "backup DEST", "",
          "back up the store in --data into the new directory DEST and exit: no server", "",
          "starts; a spiked may be serving that store meanwhile (exit 0, or 1 and why)");
  fprintf(f, "  --%-18s %-24s %s\n  %-45s %s\n", "check-config", "",
          "read the config file, the environment and the flags, check them, say", "",
          "\"configuration ok\" and exit 0, or exit 2 with the first bad value");
}

static int parse_u64(const char *v, uint64_t *out, int sizes) {
  char *end;
  errno = 0;
  if (*v < '0' || *v > '9') return -1; /* no sign, no space: strtoull would take them */
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
    if ((*end | 0x20) == 'i') end++; /* Ki, KiB */
    if ((*end | 0x20) == 'b') end++; /* KB, KiB */
  }
  if (*end != '\0' || x > UINT64_MAX / mul) return -1;
  *out = x * mul;
  return 0;
}

/* Where a value that server_check looks at later came from, kept for its
 * error ("FILE:N: ", "$SPIKE_LISTEN: ", "" for a flag); NULL for the rest. */
static const char **from_slot(const void *dst) {
  if (dst == &cfg.log_file) return &cfg.log_file_from;
  if (dst == &cfg.access_log) return &cfg.access_log_from;
  if (dst == &cfg.listen) return &cfg.listen_from;
  if (dst == &cfg.backup_dir) return &cfg.backup_dir_from;
  if (dst == &cfg.feed_token) return &cfg.feed_token_from;
  if (dst == &cfg.auth) return &cfg.auth_from;
  return NULL;
}

static int set_value(const flag *f, const char *v, const char *from);

/* Set f from v. from: where v came from, as the error names it. */
static int set(const flag *f, const char *v, const char *from) {
  if (set_value(f, v, from) != 0) return -1;
  const char **slot = from_slot(f->dst);
  if (slot == NULL) return 0;
  char *copy = strdup(from);
  if (copy == NULL) return -1;
  free((char *)*slot); /* an earlier source's, replaced (a flag over $SPIKE_LISTEN) */
  *slot = copy;
  return 0;
}

static int set_value(const flag *f, const char *v, const char *from) {
  uint64_t x;
  switch (f->k) {
  case K_STR:
    if (f->dst == &cfg.engine.data_dir && v[0] == '\0') { /* said where it came from */
      fprintf(stderr, "spiked: %s--data: bad value \"\": a directory (see --help)\n", from);
      return -1;
    }
    *(const char **)f->dst = v;
    return 0;
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
    if (parse_u64(v, &x, f->k == K_SIZE) != 0) break;
    if (!(f->pow2 == 2 && x == 0)) { /* 2: 0 (as another flag) or a power of two */
      if (x < f->min || x > f->max) break;
      if (f->pow2 && (x & (x - 1)) != 0) break;
    }
    if (f->k == K_U32) *(uint32_t *)f->dst = (uint32_t)x;
    else *(uint64_t *)f->dst = x;
    return 0;
  }
  char what[160];
  allowed(f, what, sizeof(what));
  fprintf(stderr, "spiked: %s--%s: bad value \"%s\": %s (see --help)\n", from, f->name, v ? v : "",
          what);
  return -1;
}

static const flag *find(const char *name, size_t n) {
  for (size_t i = 0; i < NFLAGS; i++)
    if (strlen(flags[i].name) == n && memcmp(flags[i].name, name, n) == 0) return &flags[i];
  return NULL;
}

/* A SPIKE_ variable that names no setting is said, not silently ignored: a
 * typo (SPIKE_THREAD, SPIKE_ADMINTOKEN) would leave the default in place.
 * A note, not a refusal: the environment may hold other programs' SPIKE_
 * variables (the test suites' among them). */
static void note_unknown_env(void) {
  extern char **environ;
  for (char **v = environ; v != NULL && *v != NULL; v++) {
    if (strncmp(*v, "SPIKE_", 6) != 0) continue;
    size_t n = strcspn(*v, "=");
    int known = n == strlen("SPIKE_CONFIG") && strncmp(*v, "SPIKE_CONFIG", n) == 0;
    for (size_t i = 0; i < NFLAGS && !known; i++) {
      char env[64];
      env_name(&flags[i], env, sizeof(env));
      known = strlen(env) == n && strncmp(*v, env, n) == 0;
    }
    if (!known)
      fprintf(stderr, "spiked: note: $%.*s is not a setting spiked reads (see --help)\n",
              (int)(n < 64 ? n : 64), *v);
  }
}

static int from_env(void) {
  note_unknown_env();
  for (size_t i = 0; i < NFLAGS; i++) {
    char env[64], from[80];
    env_name(&flags[i], env, sizeof(env));
    const char *v = getenv(env);
    snprintf(from, sizeof(from), "$%s: ", env);
    if (v != NULL && set(&flags[i], v, from) != 0) return -1;
  }
  return 0;
}

#define CONFIG_LINE_MAX 4096
#define CONFIG_LINES_MAX 1000

static char *trim(char *p) {
  while (*p == ' ' || *p == '\t') p++;
  char *e = p + strlen(p);
  while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) *--e = '\0';
  return p;
}

/* name = value lines; # starts a comment line. The values are kept for
 * the process's life (flags point at them). */
static int from_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "spiked: --config %s: %s\n", path, strerror(errno));
    return -1;
  }
  char buf[CONFIG_LINE_MAX + 2], from[CONFIG_LINE_MAX + 64];
  int rc = 0;
  int seen[sizeof(flags) / sizeof(flags[0])] = {0}; /* the line each name is on */
  for (int lineno = 1; rc == 0 && fgets(buf, sizeof(buf), f) != NULL; lineno++) {
    snprintf(from, sizeof(from), "%s:%d: ", path, lineno);
    if (lineno > CONFIG_LINES_MAX || (strlen(buf) > CONFIG_LINE_MAX && buf[CONFIG_LINE_MAX] != '\n')) {
      fprintf(stderr, "spiked: %sover %d lines or %d bytes a line\n", from, CONFIG_LINES_MAX,
              CONFIG_LINE_MAX);
      rc = -1;
      break;
    }
    /* a UTF-8 byte-order mark, as some editors begin a file: not part of
     * the first name (it was "unknown name" with the mark unseen in it) */
    char *p = trim(lineno == 1 && strncmp(buf, "\xef\xbb\xbf", 3) == 0 ? buf + 3 : buf);
    if (*p == '\0' || *p == '#') continue;
    char *eq = strchr(p, '=');
    if (eq == NULL) {
      fprintf(stderr, "spiked: %sexpected \"name = value\"\n", from);
      rc = -1;
      break;
    }
    *eq = '\0';
    char *name = trim(p), *value = trim(eq + 1);
    const flag *fl = find(name, strlen(name));
    if (fl == NULL || strcmp(name, "config") == 0) {
      fprintf(stderr, "spiked: %sunknown name \"%s\" (see --help)\n", from, name);
      rc = -1;
      break;
    }
    if (seen[fl - flags] != 0) { /* as on the command line: once */
      fprintf(stderr, "spiked: %s\"%s\" given twice (line %d too)\n", from, name, seen[fl - flags]);
      rc = -1;
      break;
    }
    seen[fl - flags] = lineno;
    for (const char *h = strchr(value, '#'); h != NULL; h = strchr(h + 1, '#'))
      if (h > value && (h[-1] == ' ' || h[-1] == '\t')) {
        fprintf(stderr,
                "spiked: note: %sthe value of \"%s\" holds \" #\": a comment is a whole line, "
                "so that is part of the value\n",
                from, name);
        break;
      }
    /* A string flag points at its value: keep a copy for the process's
     * life, in a table, so a later line or flag replacing it leaks none. */
    static char *kept[CONFIG_LINES_MAX];
    if (fl->k == K_STR && (value = kept[lineno - 1] = strdup(value)) == NULL) rc = -1;
    else if (set(fl, value, from) != 0) rc = -1;
  }
  if (rc == 0 && ferror(f)) { /* a directory, an I/O error: not an end of file */
    fprintf(stderr, "spiked: --config %s: %s\n", path, strerror(errno));
    rc = -1;
  }
  fclose(f);
  return rc;
}

/* --help and --version answer whatever else the command line, the
 * environment or a config file holds. */
static void help_or_version(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(argv[i], "--version") == 0) {
      printf("spiked %s\n", spike_version());
      exit(0);
    }
  }
}

/* The --config flag (or SPIKE_CONFIG), looked for before anything else. */
static const char *config_path(int argc, char **argv) {
  const char *path = getenv("SPIKE_CONFIG");
  int n = 0;
  for (int i = 1; i < argc; i++) {
    if (strncmp(argv[i], "--config=", 9) == 0) path = argv[i] + 9, n++;
    else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) path = argv[++i], n++;
  }
  if (n > 1) {
    fprintf(stderr, "spiked: --config given twice (one value each)\n");
    exit(2);
  }
  return path;
}

static const char *backup_to; /* --backup DEST: back up and exit */
static int check_only;        /* --check-config: read everything, say so, exit */

static int from_args(int argc, char **argv) {
  /* each flag once: a second --listen (or any) silently replaced the first */
  static uint8_t given[sizeof(flags) / sizeof(flags[0])];
  int checks = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    /* --backup is a command, not a setting: no variable, no config name */
    if (strncmp(a, "--backup=", 9) == 0 || strcmp(a, "--backup") == 0) {
      if (backup_to != NULL) {
        fprintf(stderr, "spiked: --backup given twice (one value each)\n");
        return -1;
      }
      backup_to = a[8] == '=' ? a + 9 : i + 1 < argc ? argv[++i] : "";
      if (backup_to[0] == '\0') {
        fprintf(stderr, "spiked: --backup needs a value (the new backup directory)\n");
        return -1;
      }
      continue;
    }
    if (strcmp(a, "--check-config") == 0) {
      if (checks++ > 0) {
        fprintf(stderr, "spiked: --check-config given twice\n");
        return -1;
      }
      check_only = 1;
      continue;
    }
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "spiked: unexpected argument \"%s\" (see --help)\n", a);
      return -1;
    }
    if (strncmp(a, "--config=", 9) == 0) continue; /* read first */
    if (strcmp(a, "--config") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "spiked: --config needs a value\n");
        return -1;
      }
      i++;
      continue;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    const flag *f = find(name, n);
    if (f == NULL) {
      fprintf(stderr, "spiked: unknown flag \"%s\" (see --help)\n", a);
      return -1;
    }
    if (given[f - flags]++ > 0) {
      fprintf(stderr, "spiked: --%s given twice (one value each; a flag overrides its variable "
                      "and the config file)\n", f->name);
      return -1;
    }
    const char *v = eq ? eq + 1 : NULL;
    /* a switch may take its value as the next word: --demo off. spiked
     * takes no other words, so any is that value (--demo maybe: a bad
     * value, said as one) */
    if (v == NULL && f->k == K_BOOL && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
      v = argv[++i];
    if (v == NULL && f->k != K_BOOL) {
      if (i + 1 >= argc) {
        fprintf(stderr, "spiked: --%s needs a value\n", f->name);
        return -1;
      }
      v = argv[++i];
    }
    if (set(f, v, "") != 0) return -1;
  }
  return 0;
}

/* spiked --backup DEST: one line of JSON on stdout when it is made. */
static int backup_command(const char *data_dir, const char *dest) {
  spike_backup_info info;
  int rc = spike_backup_dir(data_dir, dest, &info);
  if (rc != SPIKE_OK) {
    fprintf(stderr, "spiked: --backup: %s\n", info.error);
    return 1;
  }
  char path[8192];
  log_escape(path, sizeof(path), dest, strlen(dest));
  printf("{\"path\":\"%s\",\"storeId\":\"%016llx\",\"seq\":%llu,\"bytes\":%llu,\"at\":%lld,"
         "\"ms\":%llu}\n",
         path, (unsigned long long)info.store_id, (unsigned long long)info.seq,
         (unsigned long long)info.bytes, (long long)info.at_ms,
         (unsigned long long)info.duration_ms);
  return 0;
}

/* --check-config, --backup, --help, --version: commands that do not serve,
 * which a signal ends as it would any program (a --check-config killed by
 * timeout(1) must not exit 0). A value that happens to be one of these
 * words only leaves the signals as they were before 2026-11-29. */
static int serves(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (strcmp(argv[i], "--check-config") == 0 || strcmp(argv[i], "--backup") == 0 ||
        strncmp(argv[i], "--backup=", 9) == 0 || strcmp(argv[i], "--help") == 0 ||
        strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--version") == 0)
      return 0;
  return 1;
}

int main(int argc, char **argv) {
  /* A server blocks SIGINT, SIGTERM and SIGHUP from its first line: one
   * stopped in its first milliseconds exits 0, as --help says, where it
   * died of the signal (143); until the store is open a thread takes them
   * on a signalfd (server_watch_start). The commands that do not serve
   * leave them alone: a signal ends them as it would any program. */
  sigset_t sigs;
  server_signals(&sigs);
  if (serves(argc, argv)) {
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    /* until the store is open, SIGINT/SIGTERM exit 0 at once, also while
     * the config file or a log file blocks in open or read */
    server_watch_start();
  }
  server_config_init(&cfg);
  help_or_version(argc, argv);
  const char *config = config_path(argc, argv);
  if ((config != NULL && config[0] != '\0' && from_file(config) != 0) || from_env() != 0 ||
      from_args(argc, argv) != 0)
    return 2;
  cfg.threads = threads_u32;
  log_set_level(log_level);
  if (check_only) {
    int rc = server_check(&cfg, 0);
    if (rc == 0) printf("spiked: configuration ok\n");
    return rc;
  }
  if (backup_to != NULL) return backup_command(cfg.engine.data_dir, backup_to);
  return server_run(&cfg);
}

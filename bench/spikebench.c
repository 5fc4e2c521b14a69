/*
 * spikebench.c -- spike's P99 harness: point it at a flash-sale endpoint
 * (spike's or anyone's speaking the same API) and learn its real tail.
 *
 * Open loop (--rate): every connection keeps its own schedule of intended
 * send times, rate/C apart, and latency runs from the intended time, not
 * from when the request could finally go out. A server that stalls for
 * 200 ms is charged for every request that should have been sent during
 * the stall, which a closed-loop tool (--max, wrk) hides by simply not
 * sending ("coordinated omission"); the trade-off is wrk2's: one request
 * in flight per connection, so an overloaded server shows up as growing
 * latency and as "unsent" requests rather than as extra connections.
 *
 * Each thread runs one libuv loop over its share of keep-alive connections,
 * parses responses with llhttp, paces sends with an absolute-time timerfd
 * (libuv timers tick in milliseconds, too coarse for sub-millisecond
 * schedules) and a min-heap of idle connections by next send time. Every
 * buffer is allocated before the run; the hot path formats into a
 * connection's own buffer and records into its thread's histogram.
 *
 * Scenarios: reserve (a fresh user per request), flash-crowd (connect all,
 * fire at one instant, then keep buying until sold out), mixed (reserve,
 * read the event, pay a share of the orders), get (GET the URL as is, for
 * comparing with any HTTP server). --verify reads the event before and
 * after and checks the sale's invariants against what the run saw.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#define JSMN_STATIC
#include <jsmn.h>

#include "hist.h"
#include "plot.h"

/* ---- bounds ------------------------------------------------------------------ */

#define SB_CONNS_MAX 60000 /* one loopback address has ~28k ephemeral ports by default */
#define SB_THREADS_MAX 64
#define SB_RATE_MAX 10000000.0 /* requests per second, all connections */
#define SB_DURATION_MAX_S 86400.0
#define SB_TIMEOUT_MAX_MS 600000
#define SB_CONNECT_WAIT_MS 30000 /* every connection open before the start */
#define SB_REQ_BYTES 1024        /* one formatted request: URL and host are bounded to fit */
#define SB_BODY_BYTES 1024       /* response body kept for JSON; longer is flagged */
#define SB_READ_BYTES 65536      /* per-thread read buffer */
#define SB_TOKENS 96             /* JSON tokens of one envelope */
#define SB_CODES 32              /* distinct envelope codes counted; the rest as "other" */
#define SB_PAYQ 65536            /* orders waiting to be paid, per thread */
#define SB_VERIFY_CAP_MAX (1u << 28)
#define SB_VERIFY_USERS_MAX 100000
#define SB_PACE_SLACK_NS 10000ull /* send this early rather than re-arm for it */
#define SB_SWEEP_MS 20
#define SB_BACKOFF_MAX_MS 1000
#define SB_PLOT_ROWS 8192 /* rows of one .hgrm */
#define SB_PATH_BYTES 256
#define SB_HOST_BYTES 256
#define SB_VERIFY_BODY_BYTES (1u << 20)
#define SB_VERIFY_TOKENS (1 << 16)

#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull

enum scenario { SC_RESERVE, SC_FLASH, SC_MIXED, SC_GET };
static const char *const scenario_names[] = {"reserve", "flash-crowd", "mixed", "get"};

enum kind { RK_RESERVE, RK_READ, RK_PAY, RK_GET, RK_COUNT };
static const char *const kind_names[] = {"reserve", "read", "pay", "get"};

enum mode { MODE_OPEN, MODE_CLOSED, MODE_FLASH };

/* ---- options ------------------------------------------------------------------ */

typedef struct opts {
  const char *url;
  char host[SB_HOST_BYTES]; /* as given, for the Host header */
  char name[SB_HOST_BYTES]; /* to resolve */
  char port_s[8];
  char path[SB_PATH_BYTES]; /* the URL's path: a prefix for the API, the target for get */
  struct sockaddr_storage addr;
  uint64_t event;
  int scenario;
  uint64_t conns, threads;
  double duration_s, warmup_s, rate;
  int max;
  uint64_t users, user_base, seed;
  double pay_share, read_share;
  uint64_t timeout_ms;
  const char *hgrm, *svg, *json, *label;
  int verify;
  uint64_t verify_users, verify_cap;
  int quiet, progress;
} opts;

static opts O;

/* ---- shared run state ----------------------------------------------------------- */

typedef struct stats {
  hist lat; /* every measured request */
  hist kind_lat[RK_COUNT];
  hist burst;           /* flash crowd: the first request of each connection, from t0 */
  hist burst_own;       /* the same, from when each was actually written */
  hist lag;             /* how late the pacer sent against the schedule */
  uint64_t status[600]; /* measured responses by HTTP status; [0]: outside 100..599 */
  int32_t code[SB_CODES];
  uint64_t code_n[SB_CODES];
  uint64_t ncodes, code_other, no_envelope;
  uint64_t sent, unsent;
  uint64_t e_connect, e_read, e_write, e_timeout, e_parse, server_closed;
  /* whole run, warmup included: what --verify compares with the server */
  uint64_t created, paid, unknown_reserve, unknown_pay, soldout_seen, wrong_user;
  uint64_t pay_dropped, wins_dropped;
  uint64_t first_201_ns, last_201_ns, burst_last_ns, first_soldout_ns;
} stats;

typedef struct run_state {
  int mode;
  uint64_t interval_ns; /* open loop: per connection */
  uint64_t t0_ns, warm_end_ns, end_ns;
  _Atomic int go;       /* release: t0/warm_end/end are set before it */
  _Atomic int stop;     /* SIGINT: stop sending now */
  uint64_t stop_ns;     /* when main saw the signal; 0: never */
  _Atomic int sold_out; /* flash crowd: a 30001 was seen by some thread */
  _Atomic uint64_t connected;
  _Atomic uint64_t connect_failures; /* before the start: a dead URL fails fast */
  _Atomic uint32_t finished;
  pthread_mutex_t prog_mu; /* progress line: workers merge their second here */
  hist prog_hist;
  uint64_t prog_bad, prog_err;
} run_state;

static run_state R;

typedef struct worker worker;

enum cstate { C_CLOSED, C_CONNECTING, C_READY, C_CLOSING };

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  llhttp_t parser;
  worker *w;
  uint32_t gidx;     /* index over all threads */
  uint32_t heap_pos; /* UINT32_MAX: not waiting in the pacer's heap */
  uint8_t state, busy, done, counted, kind, burst, writing;
  uint8_t msg_done, keep, bad, truncated, ever_connected;
  int status; /* of the response being parsed */
  uint32_t backoff_ms;
  uint64_t next_ns; /* open loop: the next intended send time */
  uint64_t intended_ns, sent_ns, reconnect_ns;
  uint64_t user, order; /* of the request in flight */
  size_t body_len, wlen;
  char wbuf[SB_REQ_BYTES];
  char body[SB_BODY_BYTES];
} conn;

struct worker {
  uint32_t id;
  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t sweep, tick;
  uv_poll_t pacer;
  int tfd;
  uint64_t armed_ns; /* the timerfd's expiry, 0 when not armed */
  int flash_pending;
  pthread_mutex_t wake_mu;
  int wake_closed;
  int wake_ready; /* the async handle exists: main may send */
  int started, stopping;
  uint64_t end_ns; /* R.end_ns, or earlier on SIGINT */
  conn *conns;
  uint32_t nconns, busy_n;
  conn **heap;
  uint32_t heap_n;
  uint64_t user_seq, rng;
  uint64_t payq_order[SB_PAYQ], payq_user[SB_PAYQ];
  uint32_t payq_head, payq_n;
  uint64_t *win_user, *win_order;
  size_t nwins, cap_wins;
  stats st;
  hist iv; /* this second, for the progress line */
  uint64_t iv_bad, iv_err;
  jsmntok_t toks[SB_TOKENS];
  char rbuf[SB_READ_BYTES];
  pthread_t thread;
};

static worker *W;
static uint32_t NW;
static llhttp_settings_t parser_settings;
static volatile sig_atomic_t interrupted;
static char prefix_reserve[SB_PATH_BYTES + 64], prefix_read[SB_PATH_BYTES + 64],
    prefix_pay[SB_PATH_BYTES + 16];

static uint64_t now_ns(void) { return uv_hrtime(); }

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static double rand01(uint64_t *s) { return (double)(xorshift(s) >> 11) / 9007199254740992.0; }

/* ---- JSON (jsmn) ------------------------------------------------------------------ */

/* The token after the subtree at i. jsmn gives objects their key count and
 * keys a size of 1 (their value), so one counter walks any subtree. */
static int js_skip(const jsmntok_t *t, int n, int i) {
  int pending = 1;
  while (pending > 0 && i < n) {
    pending += t[i].size - 1;
    i++;
  }
  return i;
}

static int js_key(const char *js, const jsmntok_t *t, int n, int obj, const char *key) {
  if (obj < 0 || obj >= n || t[obj].type != JSMN_OBJECT) return -1;
  size_t kl = strlen(key);
  int i = obj + 1;
  for (int k = 0; k < t[obj].size && i + 1 < n; k++) {
    if (t[i].type == JSMN_STRING && (size_t)(t[i].end - t[i].start) == kl &&
        memcmp(js + t[i].start, key, kl) == 0)
      return i + 1;
    i = js_skip(t, n, i);
  }
  return -1;
}

/* An unsigned integer, as a number or a string of digits. */
static int js_u64(const char *js, const jsmntok_t *t, int i, uint64_t *out) {
  if (i < 0 || (t[i].type != JSMN_PRIMITIVE && t[i].type != JSMN_STRING)) return -1;
  int len = t[i].end - t[i].start;
  if (len < 1 || len > 20) return -1;
  uint64_t v = 0;
  for (int k = 0; k < len; k++) {
    char ch = js[t[i].start + k];
    if (ch < '0' || ch > '9') return -1;
    uint64_t d = (uint64_t)(ch - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

static int js_is(const char *js, const jsmntok_t *t, int i, const char *s) {
  size_t n = strlen(s);
  return i >= 0 && t[i].type == JSMN_STRING && (size_t)(t[i].end - t[i].start) == n &&
         memcmp(js + t[i].start, s, n) == 0;
}

/* ---- flags ---------------------------------------------------------------------- */

enum fkind { F_STR, F_U64, F_DBL, F_BOOL, F_SCEN };

typedef struct flag {
  const char *name;
  int k;
  void *dst;
  const char *def;
  const char *help;
  double min, max;
} flag;

static const flag flags[] = {
    {"url", F_STR, &O.url, "http://127.0.0.1:8080",
     "http://host[:port][/prefix]; the prefix goes before /api/v1 (get: the path fetched)", 0, 0},
    {"scenario", F_SCEN, &O.scenario, "reserve", "reserve | flash-crowd | mixed | get", 0, 0},
    {"event", F_U64, &O.event, "1", "the event id the scenario buys from", 1, 1.8e19},
    {"connections", F_U64, &O.conns, "16", "keep-alive connections, over all threads", 1,
     SB_CONNS_MAX},
    {"threads", F_U64, &O.threads, "1", "event-loop threads, each with its share of connections", 1,
     SB_THREADS_MAX},
    {"duration", F_DBL, &O.duration_s, "10",
     "seconds measured (flash-crowd: the longest it may take)", 0.1, SB_DURATION_MAX_S},
    {"warmup", F_DBL, &O.warmup_s, "0", "seconds of the same load before measuring", 0,
     SB_DURATION_MAX_S},
    {"rate", F_DBL, &O.rate, "",
     "open loop: requests per second over all connections, latency from intended send time", 1,
     SB_RATE_MAX},
    {"max", F_BOOL, &O.max, "off", "closed loop: each connection sends as soon as answered", 0, 0},
    {"users", F_U64, &O.users, "0", "distinct users cycled through (0: a fresh user per reserve)",
     0, 1.8e19},
    {"user-base", F_U64, &O.user_base, "1",
     "first user id; give each run against one store its own range", 1, 1.8e19},
    {"pay-share", F_DBL, &O.pay_share, "0.5", "mixed: share of the 201s that are paid", 0, 1},
    {"read-share", F_DBL, &O.read_share, "0.2",
     "mixed: share of the other requests that read the event", 0, 1},
    {"seed", F_U64, &O.seed, "1", "mixed: seed for the request mix", 1, 1.8e19},
    {"timeout-ms", F_U64, &O.timeout_ms, "10000",
     "a request unanswered this long is a timeout error; the connection is reopened", 10,
     SB_TIMEOUT_MAX_MS},
    {"hgrm", F_STR, &O.hgrm, "", "write the percentile distribution (HdrHistogram .hgrm, ms)", 0,
     0},
    {"svg", F_STR, &O.svg, "", "write a latency-by-percentile plot", 0, 0},
    {"label", F_STR, &O.label, "", "the run's name in the plot (default: scenario and rate)", 0, 0},
    {"json", F_STR, &O.json, "", "write the summary as JSON", 0, 0},
    {"verify", F_BOOL, &O.verify, "off",
     "read the event before and after and check the sale's invariants; exit 1 on a violation", 0,
     0},
    {"verify-users", F_U64, &O.verify_users, "200",
     "--verify: winners whose orders are read back from the server", 0, SB_VERIFY_USERS_MAX},
    {"verify-cap", F_U64, &O.verify_cap, "4194304",
     "--verify: 201s remembered for the per-user check (16 bytes each)", 1, SB_VERIFY_CAP_MAX},
    {"quiet", F_BOOL, &O.quiet, "off", "no progress line", 0, 0},
    {"progress", F_BOOL, &O.progress, "off",
     "a progress line every second even when stdout is not a terminal", 0, 0},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

static void usage(FILE *f) {
  fprintf(f,
          "usage: spikebench [flags]\n"
          "       spikebench plot OUT.svg A.hgrm [B.hgrm ...] [--title TEXT]\n\n"
          "Measures a flash-sale endpoint's latency from when each request was meant to be\n"
          "sent (open loop, --rate), or its peak throughput (closed loop, --max), and can\n"
          "check the sale's invariants after the run (--verify).\n\n"
          "Scenarios:\n"
          "  reserve      POST {prefix}/api/v1/events/{event}/orders for a fresh user each time\n"
          "  flash-crowd  open --connections first, fire one reserve on each at the same\n"
          "               instant, keep buying until sold out; reports time to sell out\n"
          "               and the burst's latency (takes neither --rate nor --max)\n"
          "  mixed        pay a queued order if there is one; else read the event\n"
          "               (--read-share) or reserve; --pay-share of the 201s get paid\n"
          "  get          GET the URL's path: any HTTP server, for comparison\n\n"
          "Flags (--name value or --name=value):\n");
  for (size_t i = 0; i < NFLAGS; i++) {
    char head[40];
    snprintf(head, sizeof(head), "--%s%s", flags[i].name,
             flags[i].k == F_BOOL                          ? ""
             : flags[i].k == F_STR || flags[i].k == F_SCEN ? " S"
                                                           : " N");
    fprintf(f, "  %-18s %s", head, flags[i].help);
    if (flags[i].def[0] != '\0') fprintf(f, " (default %s)", flags[i].def);
    if (flags[i].k == F_U64 || flags[i].k == F_DBL)
      fprintf(f, " [%g..%g]", flags[i].min, flags[i].max);
    fputc('\n', f);
  }
  fprintf(f, "  %-18s %s\n\n", "--help", "this text");
  fprintf(f, "Exactly one of --rate and --max for reserve, mixed and get. Output: a summary on\n"
             "stdout (requests/s, p50 p90 p99 p99.9 p99.99 max, status and envelope codes,\n"
             "socket errors), a progress line per second on a terminal.\n"
             "Exit status: 0 done, 1 the run failed or --verify found a violation, 2 bad usage.\n");
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("spikebench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs(" (see spikebench --help)\n", stderr);
  va_end(ap);
  exit(2);
}

static int parse_u64(const char *v, uint64_t *out) {
  if (v == NULL || *v < '0' || *v > '9') return -1;
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (errno != 0 || *end != '\0') return -1;
  *out = x;
  return 0;
}

static int parse_dbl(const char *v, double *out) {
  if (v == NULL || *v == '\0') return -1;
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (errno != 0 || *end != '\0' || !isfinite(x)) return -1;
  *out = x;
  return 0;
}

static void set_flag(const flag *f, const char *v) {
  uint64_t u;
  double d;
  switch (f->k) {
  case F_STR:
    if (v[0] == '\0') die_usage("--%s needs a non-empty value", f->name);
    *(const char **)f->dst = v;
    return;
  case F_BOOL: *(int *)f->dst = 1; return;
  case F_SCEN:
    for (int i = 0; i < 4; i++)
      if (strcmp(v, scenario_names[i]) == 0) {
        *(int *)f->dst = i;
        return;
      }
    die_usage("--scenario: unknown scenario \"%s\"", v);
  case F_U64:
    if (parse_u64(v, &u) != 0 || (double)u < f->min || (double)u > f->max)
      die_usage("--%s: \"%s\" is not a whole number in [%g, %g]", f->name, v, f->min, f->max);
    *(uint64_t *)f->dst = u;
    return;
  case F_DBL:
    if (parse_dbl(v, &d) != 0 || d < f->min || d > f->max)
      die_usage("--%s: \"%s\" is not a number in [%g, %g]", f->name, v, f->min, f->max);
    *(double *)f->dst = d;
    return;
  }
}

/* http://host[:port][/path]: fills host, name, port_s and path, or exits 2. */
static void parse_url(const char *url) {
  if (strncmp(url, "https://", 8) == 0) die_usage("--url: https is not supported, only http://");
  if (strncmp(url, "http://", 7) != 0) die_usage("--url: \"%s\" does not start with http://", url);
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f) die_usage("--url: spaces or control characters");
  const char *h = url + 7, *slash = strchr(h, '/');
  size_t hl = slash ? (size_t)(slash - h) : strlen(h);
  if (hl == 0 || hl >= sizeof(O.host)) die_usage("--url: no host, or a host too long");
  memcpy(O.host, h, hl);
  O.host[hl] = '\0';
  if (strchr(O.host, '@') != NULL) die_usage("--url: credentials in the URL are not supported");
  const char *port = NULL;
  if (O.host[0] == '[') {
    char *close = strchr(O.host, ']');
    if (close == NULL) die_usage("--url: unclosed [ in the host");
    size_t nl = (size_t)(close - O.host - 1);
    memcpy(O.name, O.host + 1, nl);
    O.name[nl] = '\0';
    if (close[1] == ':')
      port = close + 2;
    else if (close[1] != '\0')
      die_usage("--url: junk after ]");
  } else {
    char *colon = strchr(O.host, ':');
    size_t nl = colon ? (size_t)(colon - O.host) : hl;
    memcpy(O.name, O.host, nl);
    O.name[nl] = '\0';
    if (colon) port = colon + 1;
  }
  if (O.name[0] == '\0') die_usage("--url: no host");
  uint64_t pn = 80;
  if (port != NULL && (parse_u64(port, &pn) != 0 || pn < 1 || pn > 65535))
    die_usage("--url: bad port \"%s\"", port);
  snprintf(O.port_s, sizeof(O.port_s), "%u", (unsigned)pn);
  const char *path = slash ? slash : "";
  size_t pl = strlen(path);
  if (pl >= sizeof(O.path) - 1) die_usage("--url: path longer than %d bytes", SB_PATH_BYTES - 2);
  memcpy(O.path, path, pl + 1);
}

static void resolve(void) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(O.name, O.port_s, &hints, &res);
  if (rc != 0 || res == NULL)
    die_usage("--url: cannot resolve \"%s\": %s", O.name, gai_strerror(rc));
  memcpy(&O.addr, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
}

static void parse_args(int argc, char **argv) {
  for (size_t i = 0; i < NFLAGS; i++) {
    const flag *f = &flags[i];
    if (f->def[0] != '\0' && f->k != F_BOOL) set_flag(f, f->def);
  }
  O.rate = 0;
  int have_rate = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strncmp(a, "--", 2) != 0) die_usage("unexpected argument \"%s\"", a);
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t n = eq ? (size_t)(eq - name) : strlen(name);
    const flag *f = NULL;
    for (size_t k = 0; k < NFLAGS; k++)
      if (strlen(flags[k].name) == n && memcmp(flags[k].name, name, n) == 0) f = &flags[k];
    if (f == NULL) die_usage("unknown flag \"%s\"", a);
    const char *v = eq ? eq + 1 : NULL;
    if (f->k == F_BOOL) {
      if (v != NULL) die_usage("--%s takes no value", f->name);
    } else if (v == NULL) {
      if (i + 1 >= argc) die_usage("--%s needs a value", f->name);
      v = argv[++i];
    }
    set_flag(f, v);
    if (f->dst == &O.rate) have_rate = 1;
  }
  parse_url(O.url);
  if (O.scenario == SC_FLASH) {
    if (have_rate || O.max) die_usage("flash-crowd takes neither --rate nor --max");
    if (O.warmup_s > 0) die_usage("flash-crowd has no warmup: the crowd arrives once");
  } else {
    if (have_rate == O.max) die_usage("give exactly one of --rate R (open loop) and --max");
    if (have_rate && O.rate / (double)O.conns > 1e6)
      die_usage("--rate: more than 1,000,000 requests per second per connection");
  }
  if (O.scenario == SC_GET && O.verify) die_usage("--verify needs a spike scenario, not get");
  if (O.threads > O.conns) O.threads = O.conns;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && O.conns + 64 > rl.rlim_cur)
      die_usage("--connections %" PRIu64 " needs %" PRIu64 " open files, the limit is %llu "
                "(raise ulimit -n)",
                O.conns, O.conns + 64, (unsigned long long)rl.rlim_cur);
  }
  resolve();
}

/* ---- request formatting ------------------------------------------------------------ */

static void build_prefixes(void) {
  const char *p = O.path;
  size_t n = strlen(p);
  while (n > 0 && p[n - 1] == '/')
    n--; /* "http://h/" and "http://h" are the same API */
  snprintf(prefix_reserve, sizeof(prefix_reserve), "%.*s/api/v1/events/%" PRIu64 "/orders", (int)n,
           p, O.event);
  snprintf(prefix_read, sizeof(prefix_read), "%.*s/api/v1/events/%" PRIu64, (int)n, p, O.event);
  snprintf(prefix_pay, sizeof(prefix_pay), "%.*s/api/v1/orders/", (int)n, p);
}

static uint64_t next_user(worker *w) {
  /* interleaved by thread so threads never share a user by accident */
  uint64_t k = w->user_seq++ * NW + w->id;
  return O.user_base + (O.users ? k % O.users : k);
}

/* Format c's next request of this kind into c->wbuf: its length, or 0 when
 * it does not fit (checked once at start-up with the longest ids). */
static size_t format_req(conn *c, int kind) {
  char *b = c->wbuf;
  size_t cap = sizeof(c->wbuf);
  int n = -1;
  char body[160];
  int bl;
  switch (kind) {
  case RK_RESERVE:
    bl = snprintf(body, sizeof(body), "{\"user_id\":\"%" PRIu64 "\"}", c->user);
    n = snprintf(b, cap,
                 "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\n\r\n%s",
                 prefix_reserve, O.host, bl, body);
    break;
  case RK_PAY:
    bl = snprintf(body, sizeof(body),
                  "{\"user_id\":\"%" PRIu64 "\",\"payment_id\":\"sb-%" PRIu64 "\"}", c->user,
                  c->order);
    n = snprintf(b, cap,
                 "POST %s%" PRIu64 "/pay HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\n\r\n%s",
                 prefix_pay, c->order, O.host, bl, body);
    break;
  case RK_READ:
    n = snprintf(b, cap, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", prefix_read, O.host);
    break;
  case RK_GET:
    n = snprintf(b, cap, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", O.path[0] ? O.path : "/", O.host);
    break;
  }
  return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* Every kind of request, with the longest ids, fits a connection's buffer. */
static void check_request_size(void) {
  static conn probe;
  probe.user = probe.order = UINT64_MAX;
  for (int k = 0; k < RK_COUNT; k++)
    if (format_req(&probe, k) == 0)
      die_usage("--url: host and path too long for a %d-byte request", SB_REQ_BYTES);
}

/* ---- the pacer: a min-heap of idle connections by next send time ---------------------- */

#define NO_POS UINT32_MAX

static void heap_set(worker *w, uint32_t i, conn *c) {
  w->heap[i] = c;
  c->heap_pos = i;
}

static void heap_up(worker *w, uint32_t i) {
  conn *c = w->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (w->heap[p]->next_ns <= c->next_ns) break;
    heap_set(w, i, w->heap[p]);
    i = p;
  }
  heap_set(w, i, c);
}

static void heap_down(worker *w, uint32_t i) {
  conn *c = w->heap[i];
  for (;;) {
    uint32_t l = 2 * i + 1, m = i;
    uint64_t best = c->next_ns;
    if (l < w->heap_n && w->heap[l]->next_ns < best) m = l, best = w->heap[l]->next_ns;
    if (l + 1 < w->heap_n && w->heap[l + 1]->next_ns < best) m = l + 1;
    if (m == i) break;
    heap_set(w, i, w->heap[m]);
    i = m;
  }
  heap_set(w, i, c);
}

static void heap_remove(worker *w, conn *c) {
  uint32_t i = c->heap_pos;
  if (i == NO_POS) return;
  assert(i < w->heap_n && w->heap[i] == c);
  uint32_t last = --w->heap_n;
  if (i != last) {
    conn *m = w->heap[last];
    heap_set(w, i, m);
    heap_down(w, i);
    heap_up(w, m->heap_pos);
  }
  c->heap_pos = NO_POS;
}

static void pacer_arm(worker *w, uint64_t at_ns) {
  struct itimerspec its;
  memset(&its, 0, sizeof(its));
  its.it_value.tv_sec = (time_t)(at_ns / NS_PER_S);
  its.it_value.tv_nsec = (long)(at_ns % NS_PER_S);
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  /* uv_hrtime is CLOCK_MONOTONIC, so its values are this clock's absolute times */
  int rc = timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
  assert(rc == 0);
  (void)rc;
  w->armed_ns = at_ns;
}

static void heap_push(worker *w, conn *c) {
  assert(c->heap_pos == NO_POS && w->heap_n < w->nconns);
  w->heap[w->heap_n] = c;
  c->heap_pos = w->heap_n++;
  heap_up(w, c->heap_pos);
  if (w->armed_ns == 0 || c->next_ns < w->armed_ns) pacer_arm(w, c->next_ns);
}

/* ---- connections ------------------------------------------------------------------ */

static void conn_connect(conn *c);
static void on_write(uv_write_t *req, int status);
static void conn_close(conn *c);
static void schedule(conn *c);
static void check_finish(worker *w);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  conn *c = h->data;
  /* one buffer per thread: a read is parsed before the loop reads again */
  *buf = uv_buf_init(c->w->rbuf, sizeof(c->w->rbuf));
}

static void count_code_n(stats *st, int64_t code, uint64_t n) {
  for (uint64_t i = 0; i < st->ncodes; i++)
    if (st->code[i] == code) {
      st->code_n[i] += n;
      return;
    }
  if (st->ncodes < SB_CODES) {
    st->code[st->ncodes] = (int32_t)code;
    st->code_n[st->ncodes++] = n;
  } else {
    st->code_other += n;
  }
}

static void count_code(stats *st, int64_t code) { count_code_n(st, code, 1); }

/* A request whose answer never came: it may or may not have happened. */
static void lose_request(conn *c) {
  if (!c->busy) return;
  worker *w = c->w;
  if (c->kind == RK_RESERVE)
    w->st.unknown_reserve++;
  else if (c->kind == RK_PAY)
    w->st.unknown_pay++;
  c->busy = 0;
  w->busy_n--;
}

static void send_req(conn *c, int kind, uint64_t intended_ns, int counted) {
  worker *w = c->w;
  assert(c->state == C_READY && !c->busy);
  if (kind == RK_RESERVE) c->user = next_user(w);
  c->kind = (uint8_t)kind;
  c->wlen = format_req(c, kind);
  assert(c->wlen > 0); /* check_request_size ran at start-up */
  c->intended_ns = intended_ns;
  c->counted = (uint8_t)counted;
  c->status = 0;
  c->body_len = 0;
  c->truncated = 0;
  c->busy = 1;
  w->busy_n++;
  w->st.sent++;
  c->sent_ns = now_ns();
  uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)c->wlen);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)c->wlen) return;
  if (n < 0 && n != UV_EAGAIN) {
    w->st.e_write++;
    conn_close(c);
    return;
  }
  if (n < 0) n = 0;
  b = uv_buf_init(c->wbuf + n, (unsigned)(c->wlen - (size_t)n));
  c->writing = 1;
  if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    c->writing = 0;
    w->st.e_write++;
    conn_close(c);
  }
}

static void on_write(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  if (status < 0 && status != UV_ECANCELED && c->state == C_READY) {
    c->w->st.e_write++;
    conn_close(c);
  }
}

static int pick_kind(worker *w, conn *c) {
  switch (O.scenario) {
  case SC_GET: return RK_GET;
  case SC_MIXED:
    if (w->payq_n > 0) {
      c->order = w->payq_order[w->payq_head];
      c->user = w->payq_user[w->payq_head];
      w->payq_head = (w->payq_head + 1) % SB_PAYQ;
      w->payq_n--;
      return RK_PAY;
    }
    return rand01(&w->rng) < O.read_share ? RK_READ : RK_RESERVE;
  default: return RK_RESERVE;
  }
}

/* Parse the envelope of c's response: code, data.id, data.user_id. */
static int envelope(worker *w, conn *c, int64_t *code, uint64_t *id, uint64_t *user) {
  *code = -1;
  *id = *user = 0;
  if (c->truncated || c->body_len == 0) return -1;
  jsmn_parser p;
  jsmn_init(&p);
  int n = jsmn_parse(&p, c->body, c->body_len, w->toks, SB_TOKENS);
  if (n <= 0 || w->toks[0].type != JSMN_OBJECT) return -1;
  uint64_t v;
  if (js_u64(c->body, w->toks, js_key(c->body, w->toks, n, 0, "code"), &v) != 0) return -1;
  *code = (int64_t)v;
  int data = js_key(c->body, w->toks, n, 0, "data");
  if (js_u64(c->body, w->toks, js_key(c->body, w->toks, n, data, "id"), &v) == 0) *id = v;
  if (js_u64(c->body, w->toks, js_key(c->body, w->toks, n, data, "user_id"), &v) == 0) *user = v;
  return 0;
}

static void on_response(conn *c) {
  worker *w = c->w;
  stats *st = &w->st;
  uint64_t now = now_ns();
  uint64_t start = c->intended_ns < c->sent_ns ? c->intended_ns : c->sent_ns;
  uint64_t lat = now > start ? now - start : 0;
  int64_t code = -1;
  uint64_t id = 0, user = 0;
  int env = c->kind == RK_GET ? -1 : envelope(w, c, &code, &id, &user);
  int http = c->status;

  /* the progress line shows warmup traffic too */
  hist_record(&w->iv, lat);
  if (http < 200 || http > 299) w->iv_bad++;
  if (c->counted) {
    hist_record(&st->lat, lat);
    hist_record(&st->kind_lat[c->kind], lat);
    st->status[http >= 100 && http <= 599 ? http : 0]++;
    if (c->kind != RK_GET) {
      if (env == 0)
        count_code(st, code);
      else
        st->no_envelope++;
    }
  }
  if (c->burst) {
    hist_record(&st->burst, lat);
    hist_record(&st->burst_own, now > c->sent_ns ? now - c->sent_ns : 0);
    if (now > st->burst_last_ns) st->burst_last_ns = now;
    c->burst = 0;
  }
  if (c->kind == RK_RESERVE && http == 201) {
    st->created++;
    if (st->first_201_ns == 0) st->first_201_ns = now;
    st->last_201_ns = now;
    if (env != 0 || user != c->user) st->wrong_user++;
    if (O.verify) {
      if (w->nwins < w->cap_wins) {
        w->win_user[w->nwins] = c->user;
        w->win_order[w->nwins++] = id;
      } else {
        w->st.wins_dropped++;
      }
    }
    if (O.scenario == SC_MIXED && id != 0 && rand01(&w->rng) < O.pay_share) {
      if (w->payq_n < SB_PAYQ) {
        uint32_t tail = (w->payq_head + w->payq_n) % SB_PAYQ;
        w->payq_order[tail] = id;
        w->payq_user[tail] = c->user;
        w->payq_n++;
      } else {
        st->pay_dropped++;
      }
    }
  }
  if (c->kind == RK_PAY && http == 200 && code == 0) st->paid++;
  if (code == 30001) {
    st->soldout_seen++;
    if (st->first_soldout_ns == 0) st->first_soldout_ns = now;
    /* relaxed: a hint to stop buying; the run's end does not depend on it */
    atomic_store_explicit(&R.sold_out, 1, memory_order_relaxed);
  }
  c->busy = 0;
  w->busy_n--;
  c->backoff_ms = 0;
  if (!c->keep) {
    conn_close(c);
    return;
  }
  schedule(c);
}

static int on_headers_complete(llhttp_t *p) {
  conn *c = p->data;
  c->status = p->status_code;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  conn *c = p->data;
  if (c->kind == RK_GET) return 0;
  if (c->body_len + len > sizeof(c->body)) {
    c->truncated = 1;
    return 0;
  }
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn *c = p->data;
  if (!c->busy || c->msg_done) c->bad = 1; /* an answer nobody asked for */
  c->msg_done = 1;
  c->keep = (uint8_t)llhttp_should_keep_alive(p);
  return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  worker *w = c->w;
  if (nread == 0) return;
  if (nread > 0) {
    llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
    if (err != HPE_OK || c->bad) {
      w->st.e_parse++;
      conn_close(c);
      return;
    }
  } else {
    /* the end of a response that runs to EOF (no Content-Length) */
    if (nread == UV_EOF && c->busy && !c->msg_done) llhttp_finish(&c->parser);
    if (!c->msg_done) {
      if (c->busy)
        w->st.e_read++;
      else
        w->st.server_closed++;
      conn_close(c);
      return;
    }
    c->keep = 0;
  }
  if (c->msg_done) {
    c->msg_done = 0;
    on_response(c);
  }
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  worker *w = c->w;
  if (status == UV_ECANCELED || c->state != C_CONNECTING) return;
  if (status < 0) {
    w->st.e_connect++;
    /* relaxed: a count the main thread polls */
    atomic_fetch_add_explicit(&R.connect_failures, 1, memory_order_relaxed);
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_RESPONSE, &parser_settings);
  c->parser.data = c;
  c->msg_done = c->bad = 0;
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    w->st.e_connect++;
    conn_close(c);
    return;
  }
  c->state = C_READY;
  if (!c->ever_connected) {
    c->ever_connected = 1;
    /* relaxed: a count the main thread polls; go (release/acquire) orders the rest */
    atomic_fetch_add_explicit(&R.connected, 1, memory_order_relaxed);
  }
  if (w->started) {
    if (R.mode == MODE_FLASH && c->burst) c->burst = 0; /* too late for the burst */
    schedule(c);
  }
}

static void conn_connect(conn *c) {
  worker *w = c->w;
  assert(c->state == C_CLOSED);
  int rc = uv_tcp_init(&w->loop, &c->tcp);
  if (rc != 0) {
    w->st.e_connect++;
    c->reconnect_ns = now_ns() + 100 * NS_PER_MS;
    return;
  }
  c->tcp.data = c;
  c->connect_req.data = c;
  c->write_req.data = c;
  c->state = C_CONNECTING;
  rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&O.addr, on_connect);
  if (rc != 0) {
    w->st.e_connect++;
    conn_close(c);
  }
}

static void on_closed(uv_handle_t *h) {
  conn *c = h->data;
  c->state = C_CLOSED;
  c->writing = 0;
  c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 10;
  if (c->backoff_ms > SB_BACKOFF_MAX_MS) c->backoff_ms = SB_BACKOFF_MAX_MS;
  c->reconnect_ns = now_ns() + c->backoff_ms * NS_PER_MS;
}

static void conn_close(conn *c) {
  if (c->state == C_CLOSED || c->state == C_CLOSING) return;
  worker *w = c->w;
  lose_request(c);
  heap_remove(w, c);
  c->state = C_CLOSING;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
  if (w->started && !w->stopping) check_finish(w);
}

/* ---- the schedule ------------------------------------------------------------------- */

static int in_window(uint64_t t) { return t >= R.warm_end_ns && t < R.end_ns; }

static void finish_conn(conn *c) {
  if (!c->done) c->done = 1;
  check_finish(c->w);
}

/* c is idle: send its next request now, park it until its time, or end it. */
static void schedule(conn *c) {
  worker *w = c->w;
  if (!w->started || w->stopping || c->state != C_READY || c->busy || c->done) return;
  uint64_t now = now_ns();
  switch (R.mode) {
  case MODE_OPEN:
    if (c->next_ns >= w->end_ns) {
      finish_conn(c);
      return;
    }
    if (c->next_ns > now + SB_PACE_SLACK_NS) {
      heap_push(w, c);
      return;
    }
    {
      uint64_t t = c->next_ns;
      c->next_ns += R.interval_ns;
      send_req(c, pick_kind(w, c), t, in_window(t));
    }
    return;
  case MODE_CLOSED:
    if (now >= w->end_ns) {
      finish_conn(c);
      return;
    }
    send_req(c, pick_kind(w, c), now, in_window(now));
    return;
  case MODE_FLASH:
    if (w->flash_pending) return; /* opened before t0: it fires with the crowd */
    /* relaxed: see on_response */
    if (now >= w->end_ns || atomic_load_explicit(&R.sold_out, memory_order_relaxed)) {
      finish_conn(c);
      return;
    }
    send_req(c, RK_RESERVE, now, 1);
    return;
  }
}

static void on_pace(uv_poll_t *h, int status, int events) {
  worker *w = h->data;
  (void)events;
  uint64_t expirations;
  if (status < 0) return;
  while (read(w->tfd, &expirations, sizeof(expirations)) > 0) {
  }
  w->armed_ns = 0;
  uint64_t now = now_ns();
  if (w->flash_pending) {
    if (now + SB_PACE_SLACK_NS < R.t0_ns) {
      pacer_arm(w, R.t0_ns);
      return;
    }
    w->flash_pending = 0;
    /* the crowd: one reserve per open connection, all intended at t0 */
    for (uint32_t i = 0; i < w->nconns; i++) {
      conn *c = &w->conns[i];
      if (c->state != C_READY || c->busy) continue;
      c->burst = 1;
      send_req(c, RK_RESERVE, R.t0_ns, 1);
    }
    uint64_t done = now_ns();
    hist_record(&w->st.lag, done > R.t0_ns ? done - R.t0_ns : 0);
    check_finish(w);
    return;
  }
  while (w->heap_n > 0 && w->heap[0]->next_ns <= now + SB_PACE_SLACK_NS) {
    conn *c = w->heap[0];
    heap_remove(w, c);
    uint64_t t = c->next_ns;
    if (t >= w->end_ns) {
      finish_conn(c);
      continue;
    }
    c->next_ns += R.interval_ns;
    uint64_t sent = now_ns();
    send_req(c, pick_kind(w, c), t, in_window(t));
    if (in_window(t)) hist_record(&w->st.lag, sent > t ? sent - t : 0);
  }
  if (w->heap_n > 0) pacer_arm(w, w->heap[0]->next_ns);
}

/* ---- the worker's life --------------------------------------------------------------- */

static void worker_close_all(worker *w) {
  for (uint32_t i = 0; i < w->nconns; i++)
    conn_close(&w->conns[i]);
  pthread_mutex_lock(&w->wake_mu);
  w->wake_closed = 1;
  uv_close((uv_handle_t *)&w->wake, NULL);
  pthread_mutex_unlock(&w->wake_mu);
  uv_close((uv_handle_t *)&w->sweep, NULL);
  uv_close((uv_handle_t *)&w->tick, NULL);
  uv_close((uv_handle_t *)&w->pacer, NULL);
}

static void check_finish(worker *w) {
  if (!w->started || w->stopping) return;
  uint64_t now = now_ns();
  int over = now >= w->end_ns;
  if (R.mode == MODE_FLASH && atomic_load_explicit(&R.sold_out, memory_order_relaxed)) over = 1;
  if (!over) {
    /* every connection has had its last request answered */
    uint32_t done = 0;
    for (uint32_t i = 0; i < w->nconns; i++)
      done += w->conns[i].done;
    if (done < w->nconns) return;
  }
  if (w->busy_n > 0 || w->flash_pending) return;
  w->stopping = 1;
  /* what the schedule still owed when the run ended: the server was behind */
  if (R.mode == MODE_OPEN)
    for (uint32_t i = 0; i < w->nconns; i++) {
      conn *c = &w->conns[i];
      uint64_t from = c->next_ns > R.warm_end_ns ? c->next_ns : R.warm_end_ns;
      if (from < w->end_ns) w->st.unsent += (w->end_ns - from + R.interval_ns - 1) / R.interval_ns;
    }
  worker_close_all(w);
}

static void on_sweep(uv_timer_t *t) {
  worker *w = t->data;
  uint64_t now = now_ns();
  uint64_t limit = O.timeout_ms * NS_PER_MS;
  for (uint32_t i = 0; i < w->nconns; i++) {
    conn *c = &w->conns[i];
    if (c->busy && now - c->sent_ns > limit) {
      w->st.e_timeout++;
      w->iv_err++;
      conn_close(c);
    } else if (c->state == C_CLOSED && !c->done && !w->stopping && now >= c->reconnect_ns &&
               (!w->started || now < w->end_ns)) {
      conn_connect(c);
    }
  }
  check_finish(w);
}

static void on_tick(uv_timer_t *t) {
  worker *w = t->data;
  pthread_mutex_lock(&R.prog_mu);
  hist_merge(&R.prog_hist, &w->iv);
  R.prog_bad += w->iv_bad;
  R.prog_err += w->iv_err;
  pthread_mutex_unlock(&R.prog_mu);
  hist_init(&w->iv);
  w->iv_bad = w->iv_err = 0;
}

static void start_run(worker *w) {
  w->started = 1;
  w->end_ns = R.end_ns;
  uint64_t now = now_ns();
  if (O.progress) {
    uint64_t first = R.t0_ns + NS_PER_S > now ? (R.t0_ns + NS_PER_S - now) / NS_PER_MS : 0;
    uv_timer_start(&w->tick, on_tick, first, 1000);
  }
  for (uint32_t i = 0; i < w->nconns; i++) {
    conn *c = &w->conns[i];
    if (R.mode == MODE_OPEN) c->next_ns = R.t0_ns + (uint64_t)((double)c->gidx * 1e9 / O.rate);
  }
  if (R.mode == MODE_FLASH) {
    w->flash_pending = 1;
    pacer_arm(w, R.t0_ns);
    return;
  }
  for (uint32_t i = 0; i < w->nconns; i++)
    schedule(&w->conns[i]);
}

static void on_wake(uv_async_t *a) {
  worker *w = a->data;
  /* acquire: pairs with main's release store, so t0/end are visible */
  if (!w->started && atomic_load_explicit(&R.go, memory_order_acquire)) start_run(w);
  if (atomic_load_explicit(&R.stop, memory_order_acquire) && w->started && !w->stopping) {
    uint64_t now = now_ns();
    if (now < w->end_ns) w->end_ns = now;
    w->flash_pending = 0;
    for (uint32_t i = 0; i < w->nconns; i++) {
      heap_remove(w, &w->conns[i]);
      w->conns[i].done = 1;
    }
    check_finish(w);
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  /* the pacer wants its timerfd on time, not batched with its neighbours */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  int rc = uv_loop_init(&w->loop);
  assert(rc == 0);
  w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  assert(w->tfd >= 0);
  pthread_mutex_lock(&w->wake_mu);
  rc = uv_async_init(&w->loop, &w->wake, on_wake);
  assert(rc == 0);
  w->wake_ready = 1;
  pthread_mutex_unlock(&w->wake_mu);
  uv_timer_init(&w->loop, &w->sweep);
  uv_timer_init(&w->loop, &w->tick);
  uv_poll_init(&w->loop, &w->pacer, w->tfd);
  w->wake.data = w->sweep.data = w->tick.data = w->pacer.data = w;
  uv_poll_start(&w->pacer, UV_READABLE, on_pace);
  uv_timer_start(&w->sweep, on_sweep, SB_SWEEP_MS, SB_SWEEP_MS);
  for (uint32_t i = 0; i < w->nconns; i++)
    conn_connect(&w->conns[i]);
  /* go may have been given before this loop ran */
  on_wake(&w->wake);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&w->loop);
  assert(rc == 0);
  (void)rc;
  close(w->tfd);
  /* relaxed: join() orders everything after it */
  atomic_fetch_add_explicit(&R.finished, 1, memory_order_relaxed);
  return NULL;
}

static void wake_worker(worker *w) {
  pthread_mutex_lock(&w->wake_mu);
  if (w->wake_ready && !w->wake_closed) uv_async_send(&w->wake);
  pthread_mutex_unlock(&w->wake_mu);
}

/* ---- blocking HTTP, for --verify ---------------------------------------------------- */

/* snprintf for messages, where cutting a long one short is what we want. */
static void say(char *dst, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *dst, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
}

typedef struct bresp {
  int status;
  int complete;
  size_t len;
  int truncated;
  char *body;
  size_t cap;
} bresp;

static int b_on_headers(llhttp_t *p) {
  ((bresp *)p->data)->status = p->status_code;
  return 0;
}

static int b_on_body(llhttp_t *p, const char *at, size_t n) {
  bresp *r = p->data;
  if (r->len + n >= r->cap) { /* one byte kept for the terminating NUL */
    r->truncated = 1;
    return 0;
  }
  memcpy(r->body + r->len, at, n);
  r->len += n;
  return 0;
}

static int b_on_complete(llhttp_t *p) {
  ((bresp *)p->data)->complete = 1;
  return HPE_PAUSED;
}

/* GET path over a new connection; 0 with r filled, or -1 (why in err). */
static int http_get(const char *path, bresp *r, char *err, size_t errcap) {
  static char buf[16384];
  r->status = 0;
  r->complete = 0;
  r->len = 0;
  r->truncated = 0;
  int fd = socket(O.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    say(err, errcap, "socket: %s", strerror(errno));
    return -1;
  }
  socklen_t alen =
      O.addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&O.addr, alen) != 0) {
    say(err, errcap, "connect: %s", strerror(errno));
    close(fd);
    return -1;
  }
  int n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
                   path, O.host);
  if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n) {
    say(err, errcap, "send: %s", strerror(errno));
    close(fd);
    return -1;
  }
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_headers_complete = b_on_headers;
  s.on_body = b_on_body;
  s.on_message_complete = b_on_complete;
  llhttp_t p;
  llhttp_init(&p, HTTP_RESPONSE, &s);
  p.data = r;
  while (!r->complete) {
    ssize_t got = recv(fd, buf, sizeof(buf), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (got == 0) llhttp_finish(&p);
      if (r->complete) break;
      say(err, errcap, "%s", got == 0 ? "closed before the response ended" : strerror(errno));
      close(fd);
      return -1;
    }
    llhttp_errno_t e = llhttp_execute(&p, buf, (size_t)got);
    if (e != HPE_OK && e != HPE_PAUSED) {
      say(err, errcap, "bad response: %s", llhttp_errno_name(e));
      close(fd);
      return -1;
    }
  }
  close(fd);
  if (r->truncated) {
    say(err, errcap, "response body larger than %zu bytes", r->cap);
    return -1;
  }
  r->body[r->len] = '\0'; /* for messages; the parsers take the length */
  return 0;
}

typedef struct event_snap {
  uint64_t stock_total, available, reserved, sold, per_user_limit;
  char state[24];
} event_snap;

static char vbody[SB_VERIFY_BODY_BYTES];
static jsmntok_t vtoks[SB_VERIFY_TOKENS];

static int read_event(event_snap *e, char *err, size_t errcap) {
  bresp r = {.body = vbody, .cap = sizeof(vbody)};
  if (http_get(prefix_read, &r, err, errcap) != 0) return -1;
  jsmn_parser p;
  jsmn_init(&p);
  int n = jsmn_parse(&p, r.body, r.len, vtoks, SB_VERIFY_TOKENS);
  if (r.status != 200 || n <= 0) {
    say(err, errcap, "GET %s answered %d: %.200s", prefix_read, r.status, r.body);
    return -1;
  }
  int data = js_key(r.body, vtoks, n, 0, "data");
  struct {
    const char *k;
    uint64_t *v;
  } f[] = {{"stock_total", &e->stock_total},
           {"available", &e->available},
           {"reserved", &e->reserved},
           {"sold", &e->sold},
           {"per_user_limit", &e->per_user_limit}};
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
    if (js_u64(r.body, vtoks, js_key(r.body, vtoks, n, data, f[i].k), f[i].v) != 0) {
      say(err, errcap, "GET %s: no \"%s\" in the event: %.200s", prefix_read, f[i].k, r.body);
      return -1;
    }
  int st = js_key(r.body, vtoks, n, data, "state");
  e->state[0] = '\0';
  if (st >= 0 && vtoks[st].type == JSMN_STRING) {
    int len = vtoks[st].end - vtoks[st].start;
    snprintf(e->state, sizeof(e->state), "%.*s", len, r.body + vtoks[st].start);
  }
  return 0;
}

/* A user's live orders in the event (reserved or paid): their count, the
 * quantity they hold, and whether order is one of them. */
static int read_user_orders(uint64_t user, uint64_t order, uint64_t *live, uint64_t *qty,
                            int *found, char *err, size_t errcap) {
  char path[SB_PATH_BYTES + 96];
  size_t n = strlen(O.path);
  while (n > 0 && O.path[n - 1] == '/')
    n--;
  snprintf(path, sizeof(path), "%.*s/api/v1/users/%" PRIu64 "/orders?event_id=%" PRIu64, (int)n,
           O.path, user, O.event);
  bresp r = {.body = vbody, .cap = sizeof(vbody)};
  if (http_get(path, &r, err, errcap) != 0) return -1;
  jsmn_parser p;
  jsmn_init(&p);
  int nt = jsmn_parse(&p, r.body, r.len, vtoks, SB_VERIFY_TOKENS);
  int arr = nt > 0 ? js_key(r.body, vtoks, nt, js_key(r.body, vtoks, nt, 0, "data"), "orders") : -1;
  if (r.status != 200 || arr < 0 || vtoks[arr].type != JSMN_ARRAY) {
    say(err, errcap, "GET %s answered %d: %.200s", path, r.status, r.body);
    return -1;
  }
  *live = *qty = 0;
  *found = 0;
  int i = arr + 1;
  for (int k = 0; k < vtoks[arr].size && i < nt; k++) {
    uint64_t id = 0, q = 0;
    js_u64(r.body, vtoks, js_key(r.body, vtoks, nt, i, "id"), &id);
    js_u64(r.body, vtoks, js_key(r.body, vtoks, nt, i, "qty"), &q);
    int state = js_key(r.body, vtoks, nt, i, "state");
    if (js_is(r.body, vtoks, state, "reserved") || js_is(r.body, vtoks, state, "paid")) {
      (*live)++;
      *qty += q;
    }
    if (id == order) *found = 1;
    i = js_skip(vtoks, nt, i);
  }
  return 0;
}

/* ---- verification ------------------------------------------------------------------ */

#define CHECKS_MAX 16

typedef struct check {
  const char *name;
  int ok;
  char detail[256];
} check;

static check checks[CHECKS_MAX];
static int nchecks;

static void add_check(const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_check(const char *name, int ok, const char *fmt, ...) {
  assert(nchecks < CHECKS_MAX);
  check *c = &checks[nchecks++];
  c->name = name;
  c->ok = ok;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
  va_end(ap);
}

static int cmp_u64_pair(const void *a, const void *b) {
  const uint64_t *x = a, *y = b;
  if (x[0] != y[0]) return x[0] < y[0] ? -1 : 1;
  return x[1] < y[1] ? -1 : x[1] > y[1];
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static int balanced(const event_snap *e) {
  return e->available + e->reserved + e->sold == e->stock_total &&
         e->reserved + e->sold <= e->stock_total;
}

/* Every check --verify makes; returns how many failed. */
static int verify_run(const stats *t, const event_snap *b, const event_snap *a) {
  char err[512];
  add_check("balance-before", balanced(b),
            "available %" PRIu64 " + reserved %" PRIu64 " + sold %" PRIu64 " vs stock %" PRIu64,
            b->available, b->reserved, b->sold, b->stock_total);
  add_check("balance-after", balanced(a),
            "available %" PRIu64 " + reserved %" PRIu64 " + sold %" PRIu64 " vs stock %" PRIu64,
            a->available, a->reserved, a->sold, a->stock_total);
  int64_t taken = (int64_t)(a->reserved + a->sold) - (int64_t)(b->reserved + b->sold);
  int ok = t->unknown_reserve == 0 ? taken == (int64_t)t->created
                                   : taken >= (int64_t)t->created &&
                                         taken <= (int64_t)(t->created + t->unknown_reserve);
  add_check("taken-equals-201s", ok,
            "reserved+sold grew by %" PRId64 "; 201s %" PRIu64
            ", reserves without an answer %" PRIu64,
            taken, t->created, t->unknown_reserve);
  if (O.scenario == SC_MIXED) {
    int64_t sold = (int64_t)a->sold - (int64_t)b->sold;
    ok = t->unknown_pay == 0
             ? sold == (int64_t)t->paid
             : sold >= (int64_t)t->paid && sold <= (int64_t)(t->paid + t->unknown_pay);
    add_check("sold-equals-paid", ok,
              "sold grew by %" PRId64 "; paid answers %" PRIu64 ", pays without an answer %" PRIu64,
              sold, t->paid, t->unknown_pay);
  }
  add_check("201-for-the-asking-user", t->wrong_user == 0,
            "%" PRIu64 " 201s named another user or had no order", t->wrong_user);

  /* no user won more than the event's per-user limit, no order id twice */
  size_t total = 0;
  for (uint32_t i = 0; i < NW; i++)
    total += W[i].nwins;
  uint64_t *pairs = total ? malloc(total * 2 * sizeof(uint64_t)) : NULL;
  uint64_t *orders = total ? malloc(total * sizeof(uint64_t)) : NULL;
  if (total && (pairs == NULL || orders == NULL)) {
    add_check("per-user-limit", 0, "out of memory for %zu wins", total);
    free(pairs);
    free(orders);
    return 1;
  }
  size_t n = 0;
  for (uint32_t i = 0; i < NW; i++)
    for (size_t j = 0; j < W[i].nwins; j++, n++) {
      pairs[2 * n] = W[i].win_user[j];
      pairs[2 * n + 1] = W[i].win_order[j];
      orders[n] = W[i].win_order[j];
    }
  if (total) {
    qsort(pairs, total, 2 * sizeof(uint64_t), cmp_u64_pair);
    qsort(orders, total, sizeof(uint64_t), cmp_u64);
  }
  uint64_t worst = 0, worst_user = 0, over = 0, dup_orders = 0, users = 0;
  /* first[u]: where the u-th distinct user's wins start in pairs */
  size_t *first = total ? malloc(total * sizeof(size_t)) : NULL;
  for (size_t i = 0; i < total;) {
    size_t j = i;
    while (j < total && pairs[2 * j] == pairs[2 * i])
      j++;
    if (first != NULL) first[users] = i;
    users++;
    if (j - i > worst) worst = j - i, worst_user = pairs[2 * i];
    if (j - i > b->per_user_limit) over++;
    i = j;
  }
  for (size_t i = 1; i < total; i++)
    dup_orders += orders[i] == orders[i - 1];
  add_check("per-user-limit", over == 0,
            "%" PRIu64 " users won; most by one user: %" PRIu64 " (user %" PRIu64
            "), limit %" PRIu64 "%s",
            users, worst, worst_user, b->per_user_limit,
            t->wins_dropped ? "; some 201s past --verify-cap were not checked" : "");
  add_check("order-ids-unique", dup_orders == 0, "%" PRIu64 " order ids seen twice", dup_orders);

  /* the server's own view of a sample of the winners, spread over them */
  uint64_t asked = 0, bad = 0, missing = 0;
  err[0] = '\0';
  uint64_t want = first == NULL ? 0 : O.verify_users < users ? O.verify_users : users;
  for (uint64_t k = 0; k < want; k++) {
    size_t i = first[k * users / want];
    uint64_t live, qty;
    int found;
    if (read_user_orders(pairs[2 * i], pairs[2 * i + 1], &live, &qty, &found, err, sizeof(err)) !=
        0) {
      bad++;
      continue;
    }
    asked++;
    if (qty > b->per_user_limit) bad++;
    if (!found) missing++;
  }
  free(first);
  if (want > 0)
    add_check("server-per-user", bad == 0 && missing == 0,
              "%" PRIu64 " winners read back: %" PRIu64 " over the limit or unreadable, %" PRIu64
              " without their order%s%s",
              asked, bad, missing, err[0] ? "; " : "", err);
  if (O.scenario == SC_FLASH && t->soldout_seen > 0)
    add_check("sold-out-means-empty", a->available == 0,
              "a 30001 was answered; available after the run is %" PRIu64, a->available);
  free(pairs);
  free(orders);
  int failed = 0;
  for (int i = 0; i < nchecks; i++)
    failed += !checks[i].ok;
  return failed;
}

/* ---- reporting ------------------------------------------------------------------- */

static double ms(uint64_t ns) { return (double)ns / 1e6; }

static void merge_stats(stats *dst, const stats *s) {
  hist_merge(&dst->lat, &s->lat);
  for (int k = 0; k < RK_COUNT; k++)
    hist_merge(&dst->kind_lat[k], &s->kind_lat[k]);
  hist_merge(&dst->burst, &s->burst);
  hist_merge(&dst->burst_own, &s->burst_own);
  hist_merge(&dst->lag, &s->lag);
  for (int i = 0; i < 600; i++)
    dst->status[i] += s->status[i];
  for (uint64_t i = 0; i < s->ncodes; i++)
    count_code_n(dst, s->code[i], s->code_n[i]);
  dst->code_other += s->code_other;
  dst->no_envelope += s->no_envelope;
#define ADD(f) dst->f += s->f
  ADD(sent);
  ADD(unsent);
  ADD(e_connect);
  ADD(e_read);
  ADD(e_write);
  ADD(e_timeout);
  ADD(e_parse);
  ADD(server_closed);
  ADD(created);
  ADD(paid);
  ADD(unknown_reserve);
  ADD(unknown_pay);
  ADD(soldout_seen);
  ADD(wrong_user);
  ADD(pay_dropped);
  ADD(wins_dropped);
#undef ADD
#define MAXF(f)                                                                                    \
  if (s->f > dst->f) dst->f = s->f
#define MINF(f)                                                                                    \
  if (s->f != 0 && (dst->f == 0 || s->f < dst->f)) dst->f = s->f
  MAXF(last_201_ns);
  MAXF(burst_last_ns);
  MINF(first_201_ns);
  MINF(first_soldout_ns);
#undef MAXF
#undef MINF
}

static const double pcts[] = {50, 90, 99, 99.9, 99.99};
static const char *const pct_keys[] = {"p50", "p90", "p99", "p99_9", "p99_99"};

static void print_lat(FILE *f, const char *what, const hist *h) {
  fprintf(f, "  %-10s", what);
  if (hist_count(h) == 0) {
    fprintf(f, "no answers\n");
    return;
  }
  fprintf(
      f,
      "p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  p99.99 %.3f  max %.3f ms  (mean %.3f, n %" PRIu64
      ")\n",
      ms(hist_percentile(h, 50)), ms(hist_percentile(h, 90)), ms(hist_percentile(h, 99)),
      ms(hist_percentile(h, 99.9)), ms(hist_percentile(h, 99.99)), ms(hist_max(h)),
      hist_mean(h) / 1e6, hist_count(h));
}

static void json_lat(FILE *f, const hist *h) {
  fprintf(f, "{\"count\":%" PRIu64 ",\"min\":%.6f,\"mean\":%.6f,\"stddev\":%.6f", hist_count(h),
          ms(hist_min(h)), hist_mean(h) / 1e6, hist_stddev(h) / 1e6);
  for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
    fprintf(f, ",\"%s\":%.6f", pct_keys[i], ms(hist_percentile(h, pcts[i])));
  fprintf(f, ",\"max\":%.6f}", ms(hist_max(h)));
}

static void json_str(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      fprintf(f, "\\%c", ch);
    else if (ch < 0x20)
      fprintf(f, "\\u%04x", ch);
    else
      fputc(ch, f);
  }
  fputc('"', f);
}

typedef struct summary {
  stats *t;
  double window_s;
  int verified, verify_failed;
  event_snap before, after;
  char verify_error[512];
} summary;

static const char *mode_name(void) {
  return R.mode == MODE_OPEN ? "open" : R.mode == MODE_CLOSED ? "closed" : "flash";
}

static void write_json(FILE *f, const summary *s) {
  const stats *t = s->t;
  uint64_t n = hist_count(&t->lat);
  fprintf(f, "{\"tool\":\"spikebench\",\"scenario\":\"%s\",\"url\":", scenario_names[O.scenario]);
  json_str(f, O.url);
  fprintf(f, ",\"event\":%" PRIu64 ",\"connections\":%" PRIu64 ",\"threads\":%u,\"mode\":\"%s\"",
          O.event, O.conns, NW, mode_name());
  fprintf(f,
          ",\"rate\":%.3f,\"duration_s\":%.3f,\"warmup_s\":%.3f,\"user_base\":%" PRIu64
          ",\"users\":%" PRIu64,
          R.mode == MODE_OPEN ? O.rate : 0.0, O.duration_s, O.warmup_s, O.user_base, O.users);
  fprintf(f, ",\"interrupted\":%s", R.stop_ns ? "true" : "false");
  fprintf(f,
          ",\"window_s\":%.6f,\"requests\":%" PRIu64 ",\"rps\":%.3f,\"sent\":%" PRIu64
          ",\"unsent\":%" PRIu64,
          s->window_s, n, s->window_s > 0 ? (double)n / s->window_s : 0.0, t->sent, t->unsent);
  fputs(",\"latency_ms\":", f);
  json_lat(f, &t->lat);
  fputs(",\"send_lag_ms\":", f);
  json_lat(f, &t->lag);
  fputs(",\"by_kind\":{", f);
  int first = 1;
  for (int k = 0; k < RK_COUNT; k++) {
    if (hist_count(&t->kind_lat[k]) == 0) continue;
    fprintf(f, "%s\"%s\":", first ? "" : ",", kind_names[k]);
    json_lat(f, &t->kind_lat[k]);
    first = 0;
  }
  fputs("},\"status\":{", f);
  first = 1;
  for (int i = 0; i < 600; i++) {
    if (t->status[i] == 0) continue;
    fprintf(f, "%s\"%d\":%" PRIu64, first ? "" : ",", i, t->status[i]);
    first = 0;
  }
  fputs("},\"codes\":{", f);
  for (uint64_t i = 0; i < t->ncodes; i++)
    fprintf(f, "%s\"%d\":%" PRIu64, i ? "," : "", t->code[i], t->code_n[i]);
  fprintf(f, "},\"codes_other\":%" PRIu64 ",\"no_envelope\":%" PRIu64, t->code_other,
          t->no_envelope);
  fprintf(f,
          ",\"errors\":{\"connect\":%" PRIu64 ",\"read\":%" PRIu64 ",\"write\":%" PRIu64
          ",\"timeout\":%" PRIu64 ",\"parse\":%" PRIu64 ",\"server_closed\":%" PRIu64 "}",
          t->e_connect, t->e_read, t->e_write, t->e_timeout, t->e_parse, t->server_closed);
  fprintf(f,
          ",\"run\":{\"created\":%" PRIu64 ",\"paid\":%" PRIu64 ",\"unknown_reserve\":%" PRIu64
          ",\"unknown_pay\":%" PRIu64 ",\"sold_out_answers\":%" PRIu64 ",\"pay_dropped\":%" PRIu64
          "}",
          t->created, t->paid, t->unknown_reserve, t->unknown_pay, t->soldout_seen, t->pay_dropped);
  if (R.mode == MODE_FLASH) {
    fprintf(f,
            ",\"flash\":{\"sold_out\":%s,\"sell_out_ms\":%.6f,\"first_sold_out_ms\":%.6f,"
            "\"burst_done_ms\":%.6f,\"burst\":",
            t->soldout_seen ? "true" : "false",
            t->last_201_ns > R.t0_ns ? ms(t->last_201_ns - R.t0_ns) : 0.0,
            t->first_soldout_ns > R.t0_ns ? ms(t->first_soldout_ns - R.t0_ns) : 0.0,
            t->burst_last_ns > R.t0_ns ? ms(t->burst_last_ns - R.t0_ns) : 0.0);
    json_lat(f, &t->burst);
    fputs(",\"burst_from_own_send\":", f);
    json_lat(f, &t->burst_own);
    fprintf(f, ",\"burst_written_ms\":%.6f}", ms(hist_max(&t->lag)));
  }
  if (s->verified) {
    fprintf(f, ",\"verify\":{\"ok\":%s", s->verify_failed ? "false" : "true");
    if (s->verify_error[0]) {
      fputs(",\"error\":", f);
      json_str(f, s->verify_error);
    }
    fputs(",\"checks\":[", f);
    for (int i = 0; i < nchecks; i++) {
      fprintf(f, "%s{\"name\":\"%s\",\"ok\":%s,\"detail\":", i ? "," : "", checks[i].name,
              checks[i].ok ? "true" : "false");
      json_str(f, checks[i].detail);
      fputc('}', f);
    }
    fputs("]}", f);
  }
  fputs("}\n", f);
}

static void print_summary(FILE *f, const summary *s) {
  const stats *t = s->t;
  uint64_t n = hist_count(&t->lat);
  fprintf(f, "spikebench %s on %s (event %" PRIu64 "), %" PRIu64 " connections, %u thread%s, ",
          scenario_names[O.scenario], O.url, O.event, O.conns, NW, NW == 1 ? "" : "s");
  if (R.mode == MODE_OPEN)
    fprintf(f, "open loop at %.0f req/s, %.1f s (+%.1f s warmup)\n", O.rate, O.duration_s,
            O.warmup_s);
  else if (R.mode == MODE_CLOSED)
    fprintf(f, "closed loop (--max), %.1f s (+%.1f s warmup)\n", O.duration_s, O.warmup_s);
  else
    fprintf(f, "flash crowd\n");
  if (R.stop_ns) fprintf(f, "  interrupted: the window ends at the signal\n");
  fprintf(f, "  requests  %" PRIu64 " in %.3f s = %.1f req/s", n, s->window_s,
          s->window_s > 0 ? (double)n / s->window_s : 0.0);
  if (R.mode == MODE_OPEN)
    fprintf(f, " (offered %.0f; %" PRIu64 " never sent: the server was behind)", O.rate, t->unsent);
  fputc('\n', f);
  print_lat(f, "latency", &t->lat);
  if (O.scenario == SC_MIXED)
    for (int k = 0; k < RK_COUNT; k++)
      if (hist_count(&t->kind_lat[k]) > 0) print_lat(f, kind_names[k], &t->kind_lat[k]);
  if (R.mode == MODE_OPEN && hist_count(&t->lag) > 0)
    fprintf(f, "  send lag  p99 %.3f ms, max %.3f ms (pacer lateness, included above)\n",
            ms(hist_percentile(&t->lag, 99)), ms(hist_max(&t->lag)));
  if (R.mode == MODE_FLASH) {
    fprintf(f, "  flash     %" PRIu64 " units sold (201); ", t->created);
    if (t->soldout_seen && t->created == 0)
      fprintf(f, "sold out before the crowd came (no 201)");
    else if (t->soldout_seen)
      fprintf(f, "sold out %.3f ms after the burst (last 201), first 30001 at %.3f ms",
              t->last_201_ns > R.t0_ns ? ms(t->last_201_ns - R.t0_ns) : 0.0,
              t->first_soldout_ns > R.t0_ns ? ms(t->first_soldout_ns - R.t0_ns) : 0.0);
    else
      fprintf(f, "not sold out");
    fprintf(f, "; burst answered in %.3f ms\n",
            t->burst_last_ns > R.t0_ns ? ms(t->burst_last_ns - R.t0_ns) : 0.0);
    print_lat(f, "burst", &t->burst);
    print_lat(f, "own send", &t->burst_own);
    fprintf(f,
            "            (burst: from the common start; own send: from when each request was\n"
            "            written -- writing the crowd took up to %.3f ms)\n",
            ms(hist_max(&t->lag)));
  }
  fprintf(f, "  status   ");
  for (int i = 0; i < 600; i++)
    if (t->status[i]) fprintf(f, " %d: %" PRIu64, i, t->status[i]);
  fputc('\n', f);
  if (O.scenario != SC_GET) {
    fprintf(f, "  codes    ");
    for (uint64_t i = 0; i < t->ncodes; i++)
      fprintf(f, " %d: %" PRIu64, t->code[i], t->code_n[i]);
    if (t->code_other) fprintf(f, " other: %" PRIu64, t->code_other);
    if (t->no_envelope) fprintf(f, " no envelope: %" PRIu64, t->no_envelope);
    fputc('\n', f);
  }
  fprintf(f,
          "  socket    connect %" PRIu64 ", read %" PRIu64 ", write %" PRIu64 ", timeout %" PRIu64
          ", parse %" PRIu64 "; closed by server when idle %" PRIu64 "\n",
          t->e_connect, t->e_read, t->e_write, t->e_timeout, t->e_parse, t->server_closed);
  if (t->pay_dropped)
    fprintf(f, "  note      %" PRIu64 " orders not paid: the pay queue was full\n", t->pay_dropped);
  if (s->verified) {
    if (s->verify_error[0]) fprintf(f, "  verify    FAILED: %s\n", s->verify_error);
    for (int i = 0; i < nchecks; i++)
      fprintf(f, "  verify    %-4s %-24s %s\n", checks[i].ok ? "ok" : "FAIL", checks[i].name,
              checks[i].detail);
  }
}

/* ---- `spikebench plot` and --svg --------------------------------------------------- */

static hist_row plot_rows[PLOT_SERIES_MAX][SB_PLOT_ROWS];
static double plot_pct[PLOT_SERIES_MAX][SB_PLOT_ROWS], plot_ms[PLOT_SERIES_MAX][SB_PLOT_ROWS];
static char plot_labels[PLOT_SERIES_MAX][128];

static int load_series(FILE *f, size_t i, plot_series *s, const char *label) {
  hist_hgrm h = {.rows = plot_rows[i], .cap = SB_PLOT_ROWS};
  if (hist_read_hgrm(f, &h) != 0) return -1;
  for (size_t j = 0; j < h.n; j++) {
    plot_pct[i][j] = h.rows[j].pct;
    plot_ms[i][j] = h.rows[j].value_ms;
  }
  snprintf(plot_labels[i], sizeof(plot_labels[i]), "%s", label);
  s->label = plot_labels[i];
  s->pct = plot_pct[i];
  s->ms = plot_ms[i];
  s->n = h.n;
  return 0;
}

static int write_svg_file(const char *out, const char *title, const plot_series *s, size_t n) {
  FILE *f = fopen(out, "w");
  if (f == NULL) {
    fprintf(stderr, "spikebench: %s: %s\n", out, strerror(errno));
    return -1;
  }
  int rc = plot_svg(f, title, s, n);
  if (fclose(f) != 0) rc = -1;
  if (rc != 0) fprintf(stderr, "spikebench: writing %s failed\n", out);
  return rc;
}

static int plot_main(int argc, char **argv) {
  const char *out = NULL, *title = "Latency by Percentile Distribution";
  const char *files[PLOT_SERIES_MAX];
  size_t nf = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--title") == 0) {
      if (i + 1 >= argc) die_usage("plot: --title needs a value");
      title = argv[++i];
    } else if (strncmp(argv[i], "--", 2) == 0) {
      die_usage("plot: unknown flag \"%s\"", argv[i]);
    } else if (out == NULL) {
      out = argv[i];
    } else {
      if (nf == PLOT_SERIES_MAX) die_usage("plot: at most %d .hgrm files", PLOT_SERIES_MAX);
      files[nf++] = argv[i];
    }
  }
  if (out == NULL || nf == 0) die_usage("plot: give OUT.svg and at least one .hgrm file");
  plot_series s[PLOT_SERIES_MAX];
  for (size_t i = 0; i < nf; i++) {
    FILE *f = fopen(files[i], "r");
    if (f == NULL) {
      fprintf(stderr, "spikebench: plot: %s: %s\n", files[i], strerror(errno));
      return 1;
    }
    /* the label: the file name without its directory and .hgrm */
    const char *base = strrchr(files[i], '/');
    base = base ? base + 1 : files[i];
    char label[128];
    snprintf(label, sizeof(label), "%s", base);
    size_t ll = strlen(label);
    if (ll > 5 && strcmp(label + ll - 5, ".hgrm") == 0) label[ll - 5] = '\0';
    int rc = load_series(f, i, &s[i], label);
    fclose(f);
    if (rc != 0) {
      fprintf(stderr,
              "spikebench: plot: %s is not an .hgrm percentile distribution (or has more "
              "than %d rows)\n",
              files[i], SB_PLOT_ROWS);
      return 1;
    }
  }
  return write_svg_file(out, title, s, nf) == 0 ? 0 : 1;
}

/* ---- main -------------------------------------------------------------------------- */

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
}

static void print_progress(uint64_t second) {
  pthread_mutex_lock(&R.prog_mu);
  hist *h = &R.prog_hist;
  int warm = (R.t0_ns + second * NS_PER_S) <= R.warm_end_ns;
  printf("[%3" PRIu64 "s]%s %7" PRIu64 " req/s  p50 %.3f  p99 %.3f  max %.3f ms  non-2xx %" PRIu64
         "  errors %" PRIu64 "\n",
         second, warm ? " warmup" : "", hist_count(h), ms(hist_percentile(h, 50)),
         ms(hist_percentile(h, 99)), ms(hist_max(h)), R.prog_bad, R.prog_err);
  fflush(stdout);
  hist_init(h);
  R.prog_bad = R.prog_err = 0;
  pthread_mutex_unlock(&R.prog_mu);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "plot") == 0) return plot_main(argc, argv);
  parse_args(argc, argv);
  if (O.quiet)
    O.progress = 0;
  else if (!O.progress)
    O.progress = isatty(STDOUT_FILENO);
  signal(SIGPIPE, SIG_IGN);
  build_prefixes();
  check_request_size();

  llhttp_settings_init(&parser_settings);
  parser_settings.on_headers_complete = on_headers_complete;
  parser_settings.on_body = on_body;
  parser_settings.on_message_complete = on_message_complete;

  summary sum;
  memset(&sum, 0, sizeof(sum));
  char err[512];
  if (O.verify) {
    sum.verified = 1;
    if (read_event(&sum.before, err, sizeof(err)) != 0) {
      fprintf(stderr, "spikebench: --verify: cannot read the event before the run: %s\n", err);
      return 1;
    }
  }

  R.mode = O.scenario == SC_FLASH ? MODE_FLASH : O.max ? MODE_CLOSED : MODE_OPEN;
  if (R.mode == MODE_OPEN) R.interval_ns = (uint64_t)((double)O.conns * 1e9 / O.rate);
  if (R.interval_ns == 0) R.interval_ns = 1;
  pthread_mutex_init(&R.prog_mu, NULL);
  hist_init(&R.prog_hist);

  NW = (uint32_t)O.threads;
  W = calloc(NW, sizeof(worker));
  conn *conns = calloc(O.conns, sizeof(conn));
  conn **heaps = calloc(O.conns, sizeof(conn *));
  if (W == NULL || conns == NULL || heaps == NULL) {
    fprintf(stderr, "spikebench: out of memory for %" PRIu64 " connections\n", O.conns);
    return 1;
  }
  uint64_t per = O.conns / NW, extra = O.conns % NW, at = 0;
  for (uint32_t i = 0; i < NW; i++) {
    worker *w = &W[i];
    w->id = i;
    w->nconns = (uint32_t)(per + (i < extra));
    w->conns = conns + at;
    w->heap = heaps + at;
    w->rng = O.seed * 0x9E3779B97F4A7C15ull + i + 1;
    pthread_mutex_init(&w->wake_mu, NULL);
    hist_init(&w->iv);
    hist_init(&w->st.lat);
    hist_init(&w->st.burst);
    hist_init(&w->st.burst_own);
    hist_init(&w->st.lag);
    for (int k = 0; k < RK_COUNT; k++)
      hist_init(&w->st.kind_lat[k]);
    for (uint32_t j = 0; j < w->nconns; j++) {
      conn *c = &w->conns[j];
      c->w = w;
      c->gidx = (uint32_t)(at + j);
      c->heap_pos = NO_POS;
      c->state = C_CLOSED;
    }
    if (O.verify) {
      w->cap_wins = O.verify_cap / NW + 1;
      w->win_user = malloc(w->cap_wins * sizeof(uint64_t));
      w->win_order = malloc(w->cap_wins * sizeof(uint64_t));
      if (w->win_user == NULL || w->win_order == NULL) {
        fprintf(stderr, "spikebench: out of memory for --verify-cap\n");
        return 1;
      }
    }
    at += w->nconns;
  }

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  /* workers leave the signals to this thread */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  for (uint32_t i = 0; i < NW; i++)
    if (pthread_create(&W[i].thread, NULL, worker_main, &W[i]) != 0) {
      fprintf(stderr, "spikebench: cannot start thread %u\n", i);
      return 1;
    }
  pthread_sigmask(SIG_SETMASK, &old, NULL);

  /* every connection open first, so the schedule starts from a known state */
  uint64_t deadline = now_ns() + SB_CONNECT_WAIT_MS * NS_PER_MS;
  while (atomic_load_explicit(&R.connected, memory_order_relaxed) < O.conns &&
         now_ns() < deadline && !interrupted) {
    /* nobody answers at all (three refusals per connection): say so now */
    if (atomic_load_explicit(&R.connected, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&R.connect_failures, memory_order_relaxed) >= 3 * O.conns)
      break;
    usleep(2000);
  }
  uint64_t connected = atomic_load_explicit(&R.connected, memory_order_relaxed);
  if (connected < O.conns)
    fprintf(stderr, "spikebench: only %" PRIu64 " of %" PRIu64 " connections opened%s\n", connected,
            O.conns, connected ? "; running with those" : "");

  uint64_t t0 = now_ns() + (R.mode == MODE_FLASH ? 20 : 5) * NS_PER_MS;
  R.t0_ns = t0;
  R.warm_end_ns = t0 + (uint64_t)(O.warmup_s * 1e9);
  R.end_ns = R.warm_end_ns + (uint64_t)(O.duration_s * 1e9);
  if (R.mode == MODE_FLASH) R.warm_end_ns = t0;
  if (connected == 0 || interrupted) atomic_store_explicit(&R.stop, 1, memory_order_release);
  /* release: pairs with the workers' acquire in on_wake */
  atomic_store_explicit(&R.go, 1, memory_order_release);
  for (uint32_t i = 0; i < NW; i++)
    wake_worker(&W[i]);

  uint64_t second = 1;
  while (atomic_load_explicit(&R.finished, memory_order_relaxed) < NW) {
    usleep(5000);
    if (interrupted && !atomic_load_explicit(&R.stop, memory_order_relaxed)) {
      R.stop_ns = now_ns();
      atomic_store_explicit(&R.stop, 1, memory_order_release);
      for (uint32_t i = 0; i < NW; i++)
        wake_worker(&W[i]);
    }
    /* print second k a little after every thread has ticked for it */
    if (O.progress && now_ns() >= t0 + second * NS_PER_S + 100 * NS_PER_MS)
      print_progress(second++);
  }
  for (uint32_t i = 0; i < NW; i++)
    pthread_join(W[i].thread, NULL);

  static stats total;
  hist_init(&total.lat);
  hist_init(&total.burst);
  hist_init(&total.burst_own);
  hist_init(&total.lag);
  for (int k = 0; k < RK_COUNT; k++)
    hist_init(&total.kind_lat[k]);
  for (uint32_t i = 0; i < NW; i++)
    merge_stats(&total, &W[i].st);
  sum.t = &total;
  if (R.mode == MODE_FLASH) {
    uint64_t last =
        total.burst_last_ns > total.last_201_ns ? total.burst_last_ns : total.last_201_ns;
    sum.window_s = last > t0 ? (double)(last - t0) / 1e9 : 0.0;
  } else {
    uint64_t end = R.stop_ns != 0 && R.stop_ns < R.end_ns ? R.stop_ns : R.end_ns;
    sum.window_s = end > R.warm_end_ns ? (double)(end - R.warm_end_ns) / 1e9 : 0.0;
  }

  int rc = connected == 0 ? 1 : 0;
  if (connected == 0) fprintf(stderr, "spikebench: could not connect to %s\n", O.url);
  if (O.verify && connected > 0) {
    if (read_event(&sum.after, err, sizeof(err)) != 0) {
      say(sum.verify_error, sizeof(sum.verify_error), "cannot read the event after the run: %s",
          err);
      sum.verify_failed = 1;
    } else {
      sum.verify_failed = verify_run(&total, &sum.before, &sum.after);
    }
    if (sum.verify_failed) rc = 1;
  }

  print_summary(stdout, &sum);
  if (O.json) {
    FILE *f = fopen(O.json, "w");
    if (f == NULL) {
      fprintf(stderr, "spikebench: %s: %s\n", O.json, strerror(errno));
      rc = 1;
    } else {
      write_json(f, &sum);
      if (fclose(f) != 0) rc = 1;
    }
  }
  if (O.hgrm) {
    FILE *f = fopen(O.hgrm, "w");
    if (f == NULL || hist_write_hgrm(&total.lat, f) != 0) {
      fprintf(stderr, "spikebench: %s: %s\n", O.hgrm, strerror(errno));
      rc = 1;
    }
    if (f != NULL && fclose(f) != 0) rc = 1;
  }
  if (O.svg) {
    FILE *tmp = tmpfile();
    plot_series s;
    char label[128];
    if (O.label)
      snprintf(label, sizeof(label), "%s", O.label);
    else if (R.mode == MODE_OPEN)
      snprintf(label, sizeof(label), "%s at %.0f req/s", scenario_names[O.scenario], O.rate);
    else
      snprintf(label, sizeof(label), "%s, %s", scenario_names[O.scenario], mode_name());
    if (tmp == NULL || hist_count(&total.lat) == 0 || hist_write_hgrm(&total.lat, tmp) != 0 ||
        fseek(tmp, 0, SEEK_SET) != 0 || load_series(tmp, 0, &s, label) != 0 ||
        write_svg_file(O.svg, "Latency by Percentile Distribution", &s, 1) != 0) {
      fprintf(stderr, "spikebench: --svg: nothing to plot or cannot write %s\n", O.svg);
      rc = 1;
    }
    if (tmp != NULL) fclose(tmp);
  }
  for (uint32_t i = 0; i < NW; i++) {
    free(W[i].win_user);
    free(W[i].win_order);
    pthread_mutex_destroy(&W[i].wake_mu);
  }
  free(W);
  free(conns);
  free(heaps);
  pthread_mutex_destroy(&R.prog_mu);
  return rc;
}

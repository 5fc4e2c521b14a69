/*
 * spikebench.c -- spike's P99 harness: point it at a flash-sale endpoint
 * (spike's, or any service a template describes) and learn its real tail,
 * and whether the answers were the ones the sale should give.
 *
 * This file is the command line: flags into a scenario (scenario.c) and a
 * load configuration (load.c), the run, then the checks (verify.c), the
 * verdict and the outputs (report.c). `spikebench plot` draws .hgrm files;
 * `spikebench merge` adds up the .hgrm files of several load machines.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "load.h"
#include "path.h"
#include "plot.h"
#include "report.h"
#include "scenario.h"
#include "verify.h"

#define SB_DURATION_MAX_S 86400.0
#define SB_RATE_MAX 10000000.0 /* requests per second, all connections */
#define SB_TIMEOUT_MAX_MS 600000
#define SB_VERIFY_CAP_MAX (1u << 28)
#define SB_EVENTS_MAX 1000000
#define SB_PATH_BYTES 256
#define SB_PLOT_ROWS 8192                 /* rows of one .hgrm */
#define SB_JWT_SLACK_S 3600               /* tokens outlive the run by this */
#define SB_START_AHEAD_MAX_MS 86400000ull /* --start-at at most a day ahead */

/* ---- options ------------------------------------------------------------------------ */

typedef struct opts {
  const char *url, *template_file, *jwt_secret, *slo;
  char name[SC_HOST_BYTES]; /* the host to resolve */
  char port_s[8];
  char path[SB_PATH_BYTES]; /* the URL's path: a prefix for the API, the target for get */
  int scenario, scenario_given;
  uint64_t event, events, conns, threads, users, user_base, seed, timeout_ms, interval_ms, start_at_ms;
  double duration_s, warmup_s, rate, pay_share, read_share;
  int max, verify, quiet, progress;
  uint64_t verify_users, verify_cap;
  const char *hgrm, *svg, *timeline_svg, *json, *label;
  const char *headers[SC_HEADER_LINES_MAX];
  int nheaders;
} opts;

static opts O;
static sc_scenario SC;
static volatile sig_atomic_t interrupted;

enum fkind { F_STR, F_U64, F_DBL, F_BOOL, F_SCEN, F_HDR };

typedef struct flag {
  const char *name;
  int k;
  void *dst;
  const char *def;
  const char *help;
  double min, max; /* for F_U64 and F_DBL */
} flag;

#define U64_ANY 1.8446744073709552e19 /* "no upper bound" for a whole number */
#define U63 9223372036854775807.0       /* 2^63 as a double: the fresh user ids' bound */

static const flag flags[] = {
    {"url", F_STR, &O.url, "http://127.0.0.1:8080",
     "http://host[:port][/prefix]; the prefix goes before /api/v1 (get: the path fetched)", 0, 0},
    {"scenario", F_SCEN, &O.scenario, "reserve", "reserve | flash-crowd | mixed | get | template",
     0, 0},
    {"template", F_STR, &O.template_file, "",
     "a scenario template file (see Scenarios above); with --scenario flash-crowd the crowd sends "
     "it",
     0, 0},
    {"event", F_U64, &O.event, "1", "the event id: spike's routes, and {event} in a template", 1,
     U64_ANY},
    {"events", F_U64, &O.events, "1",
     "spread the requests over events --event .. --event+N-1 in turn (a partitioned cluster)", 1,
     SB_EVENTS_MAX},
    {"connections", F_U64, &O.conns, "16", "keep-alive connections, over all threads", 1,
     LD_CONNS_MAX},
    {"threads", F_U64, &O.threads, "1", "event-loop threads, each with its share of connections", 1,
     LD_THREADS_MAX},
    {"duration", F_DBL, &O.duration_s, "10",
     "seconds measured (flash-crowd: the longest it may take)", 0.1, SB_DURATION_MAX_S},
    {"warmup", F_DBL, &O.warmup_s, "0", "seconds of the same load before measuring", 0,
     SB_DURATION_MAX_S},
    {"rate", F_DBL, &O.rate, "",
     "open loop: requests per second over all connections, latency from intended send time", 1,
     SB_RATE_MAX},
    {"max", F_BOOL, &O.max, "off", "closed loop: each connection sends as soon as answered", 0, 0},
    {"users", F_U64, &O.users, "0", "distinct users cycled through (0: a fresh user per buy)", 0,
     U64_ANY},
    {"user-base", F_U64, &O.user_base, "1",
     "first user id; give each run against one store its own range (ids stay below 2^64)", 1,
     U63},
    {"pay-share", F_DBL, &O.pay_share, "0.5", "mixed: share of the 201s that are paid", 0, 1},
    {"read-share", F_DBL, &O.read_share, "0.2",
     "mixed: share of the other requests that read the event", 0, 1},
    {"seed", F_U64, &O.seed, "1", "mixed: seed for the request mix", 1, U64_ANY},
    {"timeout-ms", F_U64, &O.timeout_ms, "10000",
     "a request unanswered this long is lost; the connection is reopened", 10, SB_TIMEOUT_MAX_MS},
    {"header", F_HDR, NULL, "",
     "\"Name: value\" added to every request; repeat for more (up to 16)", 0, 0},
    {"jwt-secret", F_STR, &O.jwt_secret, "",
     "sign an HS256 token per user (sub = the user id), sent as Authorization: Bearer", 0, 0},
    {"slo", F_STR, &O.slo, "",
     "thresholds that decide the exit status, e.g. 'p99<2ms,errors<0.1%,rate>=99%'", 0, 0},
    {"interval-ms", F_U64, &O.interval_ms, "", "timeline interval (default 1000; flash-crowd 10)",
     1, 3600000},
    {"start-at", F_U64, &O.start_at_ms, "",
     "unix time in ms at which the load starts (from 1 s ago to a day ahead): several "
     "machines start together",
     1, U64_ANY},
    {"hgrm", F_STR, &O.hgrm, "",
     "write the distribution (HdrHistogram .hgrm, ms), and beside it X.uncorrected.hgrm "
     "and one per outcome, X.won.hgrm ...", 0, 0},
    {"svg", F_STR, &O.svg, "", "write a latency-by-percentile plot, a line per outcome", 0, 0},
    {"timeline-svg", F_STR, &O.timeline_svg, "",
     "write the timeline: latency, answers by outcome and in flight per interval", 0, 0},
    {"label", F_STR, &O.label, "", "the run's name in the plots (default: scenario and rate)", 0,
     0},
    {"json", F_STR, &O.json, "", "write the summary, timeline and verdict as JSON", 0, 0},
    {"verify", F_BOOL, &O.verify, "off",
     "read the event before and after and check the sale's invariants (spike's API)", 0, 0},
    {"verify-users", F_U64, &O.verify_users, "200",
     "--verify: winners whose orders are read back from the server", 0, VF_USERS_MAX},
    {"verify-cap", F_U64, &O.verify_cap, "4194304",
     "--verify: 201s remembered for the per-user check (16 bytes each)", 1, SB_VERIFY_CAP_MAX},
    {"quiet", F_BOOL, &O.quiet, "off", "no progress line", 0, 0},
    {"progress", F_BOOL, &O.progress, "off",
     "a progress line every second even when stdout is not a terminal (with --interval-ms "
     "under 1000, the interval that ends each second)", 0, 0},
};
#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

/* A bound for --help: whole numbers as such, "any" for no bound. */
static void fmt_bound(char *out, size_t cap, double v) {
  if (v >= U64_ANY)
    snprintf(out, cap, "any");
  else if (v == U63)
    snprintf(out, cap, "2^63");
  else if (v == floor(v) && fabs(v) < 1e15)
    snprintf(out, cap, "%.0f", v);
  else
    snprintf(out, cap, "%g", v);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: spikebench [flags]\n"
          "       spikebench plot OUT.svg A.hgrm [B.hgrm ...] [--title TEXT]\n"
          "       spikebench merge OUT.hgrm A.hgrm [B.hgrm ...] [--json OUT.json]\n\n"
          "Measures a flash-sale endpoint's latency from when each request was meant to be\n"
          "sent (open loop, --rate), or its peak throughput (closed loop, --max), sorts every\n"
          "answer into won / sold_out / limited / shed / error, checks the answers are what\n"
          "the scenario expects, and can check the sale's invariants after the run (--verify).\n\n"
          "Scenarios:\n"
          "  reserve      POST {prefix}/api/v1/events/{event}/orders for a fresh user each time\n"
          "  flash-crowd  open --connections first, fire one request on each at the same\n"
          "               instant, keep buying until sold out; reports time to sell out\n"
          "               and the burst's latency (takes neither --rate nor --max)\n"
          "  mixed        pay a queued order if there is one; else read the event\n"
          "               (--read-share) or reserve; --pay-share of the 201s get paid\n"
          "  get          GET the URL's path: any HTTP server, for comparison\n"
          "  template     the request in --template FILE, for any service:\n"
          "                 method POST\n"
          "                 path /api/v1/events/{event}/orders\n"
          "                 header Content-Type: application/json\n"
          "                 body {\"user_id\":\"{user}\",\"request_id\":\"{run}-{seq}\"}\n"
          "                 won 201 200\n"
          "                 sold-out 409:30001      (a status, or status:code of the body)\n"
          "                 limited 409:30007\n"
          "                 shed 503 429\n"
          "               {user} {event} {seq} {run} are replaced per request; other\n"
          "               statuses are errors; without a won line 2xx is won\n\n"
          "Flags (--name value or --name=value):\n");
  for (size_t i = 0; i < NFLAGS; i++) {
    char head[40];
    snprintf(head, sizeof(head), "--%s%s", flags[i].name,
             flags[i].k == F_BOOL                         ? ""
             : flags[i].k == F_U64 || flags[i].k == F_DBL ? " N"
                                                          : " S");
    char text[400];
    snprintf(text, sizeof(text), "%s", flags[i].help);
    size_t tl = strlen(text);
    if (flags[i].def[0] != '\0')
      tl += (size_t)snprintf(text + tl, sizeof(text) - tl, " (default %s)", flags[i].def);
    if (flags[i].k == F_U64 || flags[i].k == F_DBL) {
      char lo[32], hi[32];
      fmt_bound(lo, sizeof(lo), flags[i].min);
      fmt_bound(hi, sizeof(hi), flags[i].max);
      snprintf(text + tl, sizeof(text) - tl, " [%s..%s]", lo, hi);
    }
    rp_wrap(f, head, 19, 98, text);
  }
  fprintf(f, "  %-18s %s\n\n", "--help", "this text");
  fprintf(f, "Exactly one of --rate and --max for reserve, mixed, get and template.\n"
             "Output: a summary on stdout (achieved rate and why sends were late, corrected and\n"
             "uncorrected latency, latency per outcome, statuses, codes, socket errors, the\n"
             "verdict), a progress line per second on a terminal.\n"
             "--slo terms: pN max mean (in us/ms/s; prefix won. sold_out. limited. shed. error.\n"
             "or uncorrected.), errors, won, sold_out, limited, shed (N or N%%), rate (req/s or\n"
             "N%% of --rate), unsent, late (N or N%% of the schedule); < <= > >=.\n"
             "Exit status: 0 the answers were what the scenario expects and every --slo term\n"
             "held; 1 the run failed (no server, nothing won or sold out, unexpected answers or\n"
             "lost requests beyond --slo errors (none by default), --verify found a violation);\n"
             "2 bad usage; 3 an --slo threshold was crossed; 4 interrupted (SIGINT or SIGTERM):\n"
             "the report covers the window up to the signal, and is never a pass.\n");
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
  /* decimal only: strtod takes a leading space, hex ("0x10") and "inf" too */
  if (v == NULL || *v == '\0' || strspn(v, "0123456789.eE+-") != strlen(v) ||
      !(isdigit((unsigned char)v[0]) || (v[0] == '.' && isdigit((unsigned char)v[1]))))
    return -1;
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
  char lo[32], hi[32];
  fmt_bound(lo, sizeof(lo), f->min);
  fmt_bound(hi, sizeof(hi), f->max);
  switch (f->k) {
  case F_STR:
    if (v[0] == '\0') die_usage("--%s needs a non-empty value", f->name);
    *(const char **)f->dst = v;
    return;
  case F_HDR:
    if (O.nheaders == SC_HEADER_LINES_MAX) die_usage("--header: more than %d", SC_HEADER_LINES_MAX);
    O.headers[O.nheaders++] = v;
    return;
  case F_BOOL: *(int *)f->dst = 1; return;
  case F_SCEN:
    for (int i = 0; i < SC_COUNT; i++)
      if (strcmp(v, sc_names[i]) == 0) {
        *(int *)f->dst = i;
        return;
      }
    die_usage("--scenario: unknown scenario \"%s\"", v);
  case F_U64:
    /* the upper bound in integers: 2^63 + 1 rounds to 2^63 as a double */
    if (parse_u64(v, &u) != 0 || (double)u < f->min || (f->max < U64_ANY && u > (uint64_t)f->max))
      die_usage("--%s: \"%s\" is not a whole number in [%s, %s]", f->name, v, lo, hi);
    *(uint64_t *)f->dst = u;
    return;
  case F_DBL:
    if (parse_dbl(v, &d) != 0 || d < f->min || d > f->max)
      die_usage("--%s: \"%s\" is not a number in [%s, %s]", f->name, v, lo, hi);
    *(double *)f->dst = d;
    return;
  }
}

/* http://host[:port][/path]: the Host header, name, port_s and path, or exit 2. */
static void parse_url(const char *url) {
  if (strncmp(url, "https://", 8) == 0) die_usage("--url: https is not supported, only http://");
  if (strncmp(url, "http://", 7) != 0) die_usage("--url: \"%s\" does not start with http://", url);
  for (const char *p = url; *p; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
      die_usage("--url: spaces, control characters or bytes past ASCII (percent-encode them: "
                "a request line is ASCII)");
  const char *h = url + 7, *slash = strchr(h, '/');
  size_t hl = slash ? (size_t)(slash - h) : strlen(h);
  if (hl == 0 || hl >= sizeof(SC.host)) die_usage("--url: no host, or a host too long");
  memcpy(SC.host, h, hl);
  SC.host[hl] = '\0';
  if (strchr(SC.host, '@') != NULL) die_usage("--url: credentials in the URL are not supported");
  const char *port = NULL;
  if (SC.host[0] == '[') {
    char *close = strchr(SC.host, ']');
    if (close == NULL) die_usage("--url: unclosed [ in the host");
    size_t nl = (size_t)(close - SC.host - 1);
    memcpy(O.name, SC.host + 1, nl);
    O.name[nl] = '\0';
    if (close[1] == ':')
      port = close + 2;
    else if (close[1] != '\0')
      die_usage("--url: junk after ]");
  } else {
    char *colon = strchr(SC.host, ':');
    size_t nl = colon ? (size_t)(colon - SC.host) : hl;
    memcpy(O.name, SC.host, nl);
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

static void resolve(struct sockaddr_storage *addr) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(O.name, O.port_s, &hints, &res);
  if (rc != 0 || res == NULL)
    die_usage("--url: cannot resolve \"%s\": %s", O.name, gai_strerror(rc));
  memcpy(addr, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
}

/* A file's path with its directory resolved (the directory exists: the
 * caller checked it can be written into), so two spellings compare equal. */
static void where(const char *path, char *out, size_t cap) {
  char dir[PATH_MAX], real[PATH_MAX];
  const char *slash = strrchr(path, '/');
  const char *base = slash != NULL ? slash + 1 : path;
  path_dir(path, dir, sizeof(dir));
  if (realpath(dir, real) == NULL) snprintf(real, sizeof(real), "%s", dir);
  snprintf(out, cap, "%s/%s", strcmp(real, "/") == 0 ? "" : real, base);
}

static void parse_args(int argc, char **argv) {
  for (size_t i = 0; i < NFLAGS; i++) {
    const flag *f = &flags[i];
    if (f->def[0] != '\0' && f->k != F_BOOL && f->k != F_HDR) set_flag(f, f->def);
  }
  int have_rate = 0;
  unsigned char given[NFLAGS] = {0};
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
    /* A flag given twice is refused, not settled by the last: a second
     * --slo silently dropped the first one's terms. --header adds. */
    if (f->k != F_HDR && given[f - flags]++)
      die_usage("--%s given twice%s", f->name,
                f->dst == &O.slo ? ": one --slo takes every term, joined by commas" : "");
    const char *v = eq ? eq + 1 : NULL;
    if (f->k == F_BOOL) {
      if (v != NULL) die_usage("--%s takes no value", f->name);
    } else if (v == NULL) {
      if (i + 1 >= argc) die_usage("--%s needs a value", f->name);
      v = argv[++i];
    }
    set_flag(f, v);
    if (f->dst == &O.rate) have_rate = 1;
    if (f->dst == &O.scenario) O.scenario_given = 1;
  }
  parse_url(O.url);
  if (O.template_file != NULL && !O.scenario_given) O.scenario = SC_TEMPLATE;
  /* A flag the run would not read is refused, not silently ignored */
  for (size_t k = 0; k < NFLAGS; k++) {
    if (!given[k]) continue;
    const void *d = flags[k].dst;
    if ((d == &O.pay_share || d == &O.read_share || d == &O.seed) && O.scenario != SC_MIXED)
      die_usage("--%s goes with --scenario mixed", flags[k].name);
    if ((d == &O.verify_users || d == &O.verify_cap) && !O.verify)
      die_usage("--%s goes with --verify", flags[k].name);
  }
  if (O.scenario == SC_TEMPLATE && O.template_file == NULL)
    die_usage("--scenario template needs --template FILE");
  if (O.template_file != NULL && O.scenario != SC_TEMPLATE && O.scenario != SC_FLASH)
    die_usage("--template goes with --scenario template or flash-crowd");
  if (O.scenario == SC_FLASH) {
    if (have_rate || O.max) die_usage("flash-crowd takes neither --rate nor --max");
    if (O.warmup_s > 0) die_usage("flash-crowd has no warmup: the crowd arrives once");
  } else {
    if (have_rate == O.max) die_usage("give exactly one of --rate R (open loop) and --max");
    if (have_rate && O.rate / (double)O.conns > 1e6)
      die_usage("--rate: more than 1,000,000 requests per second per connection");
  }
  if (O.events > 1 && (O.scenario == SC_FLASH || O.verify))
    die_usage("--events: %s checks one event", O.verify ? "--verify" : "flash-crowd");
  if (O.events > 1 && O.event > UINT64_MAX - (O.events - 1))
    die_usage("--events: --event + --events passes the largest id");
  if (O.verify && (O.scenario == SC_GET || O.template_file != NULL))
    die_usage("--verify reads spike's API: it needs reserve, flash-crowd or mixed, not a %s",
              O.template_file ? "template" : "get");
  if (O.start_at_ms > 0) {
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    uint64_t now_ms = (uint64_t)rt.tv_sec * 1000 + (uint64_t)rt.tv_nsec / 1000000;
    if (O.start_at_ms > now_ms + SB_START_AHEAD_MAX_MS)
      die_usage("--start-at: more than a day from now (it is %" PRIu64 " now)", now_ms);
    if (O.start_at_ms + 1000 < now_ms)
      die_usage("--start-at: %" PRIu64 " ms ago already", now_ms - O.start_at_ms);
  }
  /* The files a run writes, checked before it: a path that cannot be
   * written was found only after the whole load, which then exited 1 */
  const struct {
    const char *flag, *path;
  } outs[] = {{"--json", O.json}, {"--hgrm", O.hgrm}, {"--svg", O.svg},
              {"--timeline-svg", O.timeline_svg}};
  /* ... and every file they write, by where it is (./r.json is r.json; the
   * .hgrm's per-outcome files too): no two may be one file */
  struct {
    const char *flag;
    char file[2 * PATH_MAX + 2];
  } files[4 + OUT_COUNT + 1];
  size_t nfiles = 0;
  for (size_t i = 0; i < sizeof(outs) / sizeof(outs[0]); i++) {
    const char *path = outs[i].path;
    if (path == NULL || path[0] == '\0') continue;
    int bad = path_writable(path);
    if (bad != 0) die_usage("%s %s: %s", outs[i].flag, path, strerror(bad));
    /* --hgrm: the file, one per outcome, and the uncorrected one (o == OUT_COUNT) */
    for (int o = -1; o <= (outs[i].path == O.hgrm ? OUT_COUNT : -1); o++) {
      char name[PATH_MAX];
      if (o < 0)
        snprintf(name, sizeof(name), "%s", path);
      else
        rp_hgrm_name(name, sizeof(name), path, o < OUT_COUNT ? sc_outcome_names[o] : "uncorrected");
      where(name, files[nfiles].file, sizeof(files[nfiles].file));
      files[nfiles].flag = outs[i].flag;
      for (size_t j = 0; j < nfiles; j++)
        if (files[j].flag != outs[i].flag && strcmp(files[j].file, files[nfiles].file) == 0)
          die_usage("%s and %s both write %s: one would overwrite the other", files[j].flag,
                    outs[i].flag, files[nfiles].file);
      nfiles++;
    }
  }
  if (O.threads > O.conns) O.threads = O.conns;
  if (O.interval_ms == 0) O.interval_ms = O.scenario == SC_FLASH ? 10 : 1000;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    if (rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
      getrlimit(RLIMIT_NOFILE, &rl);
    }
    /* each load thread's loop holds about 7 descriptors of its own (epoll,
     * eventfd, timerfd, pipes): at --threads 16 connections past the limit
     * failed for 30 s, then were put down to the server */
    uint64_t need = O.conns + 56 + 8 * (uint64_t)O.threads;
    if (rl.rlim_cur != RLIM_INFINITY && need > rl.rlim_cur)
      die_usage("--connections %" PRIu64 " with --threads %" PRIu64 " needs %" PRIu64
                " open files, the limit is %llu (raise ulimit -n)",
                O.conns, (uint64_t)O.threads, need, (unsigned long long)rl.rlim_cur);
  }
}

/* The scenario the flags describe, or exit 2. */
static void build_scenario(void) {
  char err[300];
  SC.event = O.event;
  SC.events = O.events;
  SC.users = O.users;
  SC.user_base = O.user_base;
  SC.pay_share = O.pay_share;
  SC.read_share = O.read_share;
  SC.seed = O.seed;
  SC.nworkers = (uint32_t)O.threads;
  sc_run_id(SC.run_id);
  if (O.jwt_secret != NULL) {
    if (strlen(O.jwt_secret) >= MINT_SECRET_BYTES)
      die_usage("--jwt-secret: longer than %d bytes", MINT_SECRET_BYTES - 1);
    SC.jwt_secret = O.jwt_secret;
    int64_t from = O.start_at_ms ? (int64_t)(O.start_at_ms / 1000) : (int64_t)time(NULL);
    SC.jwt_exp_s = from + (int64_t)(O.warmup_s + O.duration_s) + SB_JWT_SLACK_S;
  }
  for (int i = 0; i < O.nheaders; i++) {
    if (sc_header_add(SC.headers, &SC.headers_len, sizeof(SC.headers), O.headers[i],
                      O.jwt_secret != NULL, err, sizeof(err)) != 0)
      die_usage("--header: %s", err);
    if (strncasecmp(O.headers[i], "host:", 5) == 0) SC.host_given = 1;
    if (strncasecmp(O.headers[i], "content-type:", 13) == 0) SC.ctype_given = 1;
  }
  if (O.template_file != NULL) {
    static char text[SC_TEMPLATE_BYTES + 2];
    FILE *f = fopen(O.template_file, "r");
    if (f == NULL) die_usage("--template: %s: %s", O.template_file, strerror(errno));
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) die_usage("--template: cannot read %s", O.template_file);
    if (n > SC_TEMPLATE_BYTES) die_usage("--template: longer than %d bytes", SC_TEMPLATE_BYTES);
    static sc_request r;
    if (sc_template_parse(&r, O.path, text, n, err, sizeof(err)) != 0)
      die_usage("--template %s: %s", O.template_file, err);
    sc_from_template(&SC, &r);
    if (O.scenario == SC_FLASH) SC.id = SC_FLASH;
  } else if (sc_builtin(&SC, O.scenario, O.path, O.path, err, sizeof(err)) != 0) {
    die_usage("%s", err);
  }
  sc_set_expected(&SC);
}

/* ---- plots ------------------------------------------------------------------------- */

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

/* A histogram as a plot series, through its .hgrm text. */
static int hist_series(const hist *h, size_t i, plot_series *s, const char *label) {
  FILE *tmp = tmpfile();
  int rc = tmp == NULL || hist_write_hgrm(h, tmp) != 0 || fseek(tmp, 0, SEEK_SET) != 0 ||
                   load_series(tmp, i, s, label) != 0
               ? -1
               : 0;
  if (tmp != NULL) fclose(tmp);
  return rc;
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
  int titled = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      return 0;
    }
    if (strcmp(argv[i], "--title") == 0) {
      if (i + 1 >= argc) die_usage("plot: --title needs a value");
      if (titled++) die_usage("plot: --title given twice");
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
  /* the same file twice is two lines of one plot: allowed */
  int safe = rp_outputs_safe("plot", out, NULL, files, (int)nf, 1);
  if (safe != 0) return safe;
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

/* --svg: the corrected distribution, and one line per outcome (and the
 * uncorrected one in open loop). */
static int write_run_svg(const ld_config *cfg, const ld_stats *t) {
  char base[96], label[128];
  if (O.label)
    snprintf(base, sizeof(base), "%s", O.label);
  else if (cfg->mode == LD_OPEN)
    snprintf(base, sizeof(base), "%s at %.0f req/s", sc_names[SC.id], cfg->rate);
  else if (cfg->mode == LD_CLOSED)
    snprintf(base, sizeof(base), "%s, closed loop", sc_names[SC.id]);
  else
    snprintf(base, sizeof(base), "%s", sc_names[SC.id]);
  plot_series s[PLOT_SERIES_MAX];
  size_t n = 0;
  if (hist_count(&t->lat) == 0) return -1;
  if (hist_series(&t->lat, n, &s[n], base) == 0) n++;
  if (cfg->mode == LD_OPEN) {
    snprintf(label, sizeof(label), "%s, uncorrected", base);
    if (hist_series(&t->lat_unc, n, &s[n], label) == 0) n++;
  }
  for (int o = 0; o < OUT_COUNT; o++) {
    if (hist_count(&t->out_lat[o]) == 0 || hist_count(&t->out_lat[o]) == hist_count(&t->lat))
      continue; /* one outcome only: the same line as the whole */
    snprintf(label, sizeof(label), "%s: %s", base, sc_outcome_names[o]);
    if (hist_series(&t->out_lat[o], n, &s[n], label) == 0) n++;
  }
  return n > 0 ? write_svg_file(O.svg, "Latency by Percentile Distribution", s, n) : -1;
}

static int write_timeline_svg(const ld_config *cfg, const ld_result *res) {
  size_t n = res->nrows;
  if (n == 0) return -1;
  double *buf = calloc(n * 11, sizeof(double));
  if (buf == NULL) return -1;
  double *x = buf, *p50 = buf + n, *p99 = buf + 2 * n, *mx = buf + 3 * n, *sent = buf + 4 * n,
         *fl = buf + 5 * n;
  double *outs = buf + 6 * n; /* OUT_COUNT series */
  /* the window's end (or a Ctrl-C), from t0: the row it falls in is a rate
   * over its part before it (the sends stop there; at 400/s for 2.5 s the
   * last row read 200/s) */
  uint64_t wend = res->stop_ns != 0 && res->stop_ns < res->end_ns ? res->stop_ns : res->end_ns;
  uint64_t wend_rel = wend > res->t0_ns ? wend - res->t0_ns : 0;
  for (size_t i = 0; i < n; i++) {
    const ld_row *r = &res->rows[i];
    uint64_t to = r->t_ns < wend_rel && wend_rel < r->end_ns ? wend_rel : r->end_ns;
    double per_s = 1e9 / (double)(to - r->t_ns); /* the first row may be short */
    x[i] = (double)r->t_ns / 1e9;
    p50[i] = (double)r->p50_ns / 1e6;
    p99[i] = (double)r->p99_ns / 1e6;
    mx[i] = (double)r->max_ns / 1e6;
    sent[i] = (double)r->sent * per_s;
    fl[i] = (double)r->in_flight;
    for (int o = 0; o < OUT_COUNT; o++)
      outs[o * n + i] = (double)r->out_n[o] * per_s;
  }
  plot_line lat[3] = {{"p50", p50}, {"p99", p99}, {"max", mx}};
  plot_line rates[1 + OUT_COUNT];
  size_t nr = 0;
  rates[nr++] = (plot_line){"sent", sent};
  for (int o = 0; o < OUT_COUNT; o++)
    if (res->total.out_n[o] > 0) rates[nr++] = (plot_line){sc_outcome_names[o], outs + o * n};
  plot_line inflight[1] = {{"in flight", fl}};
  plot_panel panels[3] = {
      {"latency (ms)", lat, 3}, {"per second", rates, nr}, {"in flight", inflight, 1}};
  char title[160];
  snprintf(title, sizeof(title), "%s: timeline, %" PRIu64 " ms intervals",
           O.label ? O.label : sc_names[SC.id], cfg->interval_ms);
  double warm = cfg->warmup_s;
  int rc = -1;
  FILE *f = fopen(O.timeline_svg, "w");
  if (f != NULL) {
    rc = plot_timeline_svg(f, title, x, n, panels, 3, warm);
    if (fclose(f) != 0) rc = -1;
  }
  if (rc != 0) fprintf(stderr, "spikebench: --timeline-svg: cannot write %s\n", O.timeline_svg);
  free(buf);
  return rc;
}

/* ---- main -------------------------------------------------------------------------- */

/* The first SIGINT or SIGTERM ends the run and reports it; a second one,
 * for a run stuck on a frozen server, ends the process at once. */
static void on_signal(int sig) {
  interrupted = 1;
  signal(sig, SIG_DFL);
}

/* A progress line a second: every row when rows are a second or longer,
 * else the row in which each second ends (its own interval's figures). */
static void on_row(const ld_row *row, void *arg) {
  (void)arg;
  if (!O.progress) return;
  if (O.interval_ms < 1000 && row->end_ns / 1000000000u == row->t_ns / 1000000000u) return;
  rp_print_row(stdout, row);
  fflush(stdout);
}

static int64_t verify_before_ms; /* monotonic: when the event was read before the run */
static int64_t expired_before;   /* spiked's expiries then, or -1 */

static int64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --verify: the event before the run, or exit 1. */
static void verify_before(const vf_target *tg, vf_event *before) {
  char err[512];
  verify_before_ms = mono_ms();
  expired_before = vf_read_expired(tg);
  if (vf_read_event(tg, before, err, sizeof(err)) != 0) {
    fprintf(stderr, "spikebench: --verify: cannot read the event before the run: %s\n", err);
    exit(1);
  }
}

static void verify_after(const vf_target *tg, const ld_result *res, const vf_event *before,
                         vf_report *rep) {
  vf_event after;
  char err[400];
  if (vf_read_event(tg, &after, err, sizeof(err)) != 0) {
    snprintf(rep->error, sizeof(rep->error), "cannot read the event after the run: %s", err);
    return;
  }
  const ld_stats *t = &res->total;
  vf_input in = {t->created,      t->unknown_buy,  t->paid,
                 t->unknown_pay,  t->wrong_user,   t->soldout_seen,
                 t->wins_dropped, SC.id == SC_MIXED, res->win_user,
                 res->win_order,  res->nwins,      0};
  /* Reservations that expired during the run gave their units back: how
   * many, from spiked's counter. Without it, none could have where none
   * was held before and the run was shorter than the event's pay timeout. */
  int64_t expired_after = expired_before < 0 ? -1 : vf_read_expired(tg);
  if (expired_after >= expired_before && expired_before >= 0)
    in.expired = expired_after - expired_before;
  else
    in.expired = before->reserved > 0 ||
                         mono_ms() - verify_before_ms >= (int64_t)after.pay_timeout_s * 1000
                     ? -1
                     : 0;
  vf_checks(&in, before, &after, rep);
  vf_sample(tg, &in, before, O.verify_users, rep);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "plot") == 0) return plot_main(argc, argv);
  if (argc > 1 && strcmp(argv[1], "merge") == 0) return rp_merge_main(argc, argv);
  parse_args(argc, argv);
  build_scenario();
  rp_slo slo;
  if (O.slo != NULL) {
    char err[200];
    if (rp_slo_parse(&slo, O.slo, err, sizeof(err)) != 0) die_usage("%s", err);
    for (int i = 0; i < slo.n; i++) /* a share of the target rate needs a target */
      if (slo.t[i].metric == M_RATE && slo.t[i].share && (O.max || O.scenario == SC_FLASH))
        die_usage("--slo %s: a share of the target rate needs --rate (open loop)", slo.t[i].text);
  }
  if (O.quiet)
    O.progress = 0;
  else if (!O.progress)
    O.progress = isatty(STDOUT_FILENO);
  signal(SIGPIPE, SIG_IGN);

  static ld_config cfg;
  resolve(&cfg.addr);
  cfg.conns = O.conns;
  cfg.threads = (uint32_t)O.threads;
  cfg.mode = SC.id == SC_FLASH ? LD_FLASH : O.max ? LD_CLOSED : LD_OPEN;
  cfg.rate = O.rate;
  cfg.duration_s = O.duration_s;
  cfg.warmup_s = O.warmup_s;
  cfg.timeout_ms = O.timeout_ms;
  cfg.interval_ms = O.interval_ms;
  cfg.start_at_ms = O.start_at_ms;
  cfg.verify_cap = O.verify ? O.verify_cap : 0;
  cfg.mint_slots = 0;
  if (O.jwt_secret != NULL && O.users > 0) {
    uint64_t per = MINT_SLOTS_MAX / O.threads;
    cfg.mint_slots = (size_t)(O.users < per ? O.users : per);
  }
  cfg.sc = &SC;
  cfg.interrupted = &interrupted;
  cfg.on_row = on_row;
  if (ld_rows_needed(&cfg) > LD_ROWS_MAX)
    die_usage("a run of %.0f s (warmup included) and its answers' grace of twice --timeout-ms "
              "(%" PRIu64 " ms) in timeline rows of %" PRIu64
              " ms (--interval-ms%s) needs more than %d rows: raise --interval-ms, or shorten the "
              "run or --timeout-ms",
              O.duration_s + O.warmup_s, O.timeout_ms, O.interval_ms,
              O.scenario == SC_FLASH ? ", 10 for a flash crowd unless given" : "", LD_ROWS_MAX);

  vf_target tg = {cfg.addr, &SC, O.path};
  vf_event before;
  if (O.verify) verify_before(&tg, &before);

  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  static ld_result res;
  if (ld_run(&cfg, &res) != 0) return 1;

  static vf_report vrep;
  if (O.verify && res.connected > 0) verify_after(&tg, &res, &before, &vrep);

  rp_run run = {
      O.url, &SC, &cfg, &res, O.verify && res.connected > 0 ? &vrep : NULL, O.slo ? &slo : NULL};
  static rp_verdict v;
  rp_judge(&run, &v);
  rp_print(stdout, &run, &v);
  int rc = v.exit_code;
  if (O.json) {
    FILE *f = fopen(O.json, "w");
    if (f == NULL) {
      fprintf(stderr, "spikebench: %s: %s\n", O.json, strerror(errno));
      rc = 1;
    } else {
      rp_write_json(f, &run, &v);
      int bad = ferror(f);
      if (fclose(f) != 0 || bad) { /* a full disk: said, not only an exit status */
        fprintf(stderr, "spikebench: --json %s: %s; the summary above stands, the file does not\n",
                O.json, strerror(errno ? errno : EIO));
        rc = 1;
      }
    }
  }
  if (O.hgrm && rp_write_hgrms(O.hgrm, &res.total) != 0) rc = 1;
  if (O.svg && write_run_svg(&cfg, &res.total) != 0) {
    fprintf(stderr, "spikebench: --svg: nothing to plot or cannot write %s\n", O.svg);
    rc = 1;
  }
  if (O.timeline_svg && write_timeline_svg(&cfg, &res) != 0) rc = 1;
  ld_result_free(&res);
  return rc;
}

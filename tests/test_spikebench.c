/*
 * test_spikebench.c -- spikebench end to end: against a server that
 * freezes for 200 ms once a second, the open loop must report the stall in
 * its p99 while the closed loop (--max) hides it (coordinated omission);
 * against a real spiked, the reserve, mixed and flash-crowd scenarios must
 * pass --verify with counts that add up, and --verify must fail when
 * another client takes stock behind its back. A run whose answers are
 * wrong (401s from a protected server, 409s for users that already
 * bought, the server down) fails and says why; --jwt-secret reaches the
 * protected server; --slo decides the exit status; a template run, its
 * timeline and `spikebench merge`. Plus the usage errors, and the .hgrm /
 * `spikebench plot` path.
 *
 *   SPIKEBENCH=build/asan/spikebench STALL_SERVER=... SPIKED=... \
 *     ./build/rel/tests/test_spikebench [case]
 *
 * spikebench's results are read from its --json file.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "http_client.h"
#include "test.h"

static hc_resp J; /* a --json file, or a response */

static const char *bench_bin(void) {
  const char *b = getenv("SPIKEBENCH");
  return b && *b ? b : "build/rel/spikebench";
}

static const char *stall_bin(void) {
  const char *b = getenv("STALL_SERVER");
  return b && *b ? b : "build/rel/tests/stall_server";
}

static char workdir[512];

static const char *tmp_path(const char *name) {
  static char p[4][600];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof(p[k]), "%s/%s", workdir, name);
  return p[k];
}

/* Start spikebench with args (NULL-terminated); its output goes to log. */
static pid_t bench_start(const char *const *args, const char *log) {
  const char *argv[64] = {bench_bin()};
  int n = 1;
  for (int i = 0; args[i] != NULL && n < 63; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  return test_spawn(argv, log, 0);
}

static void show(const char *log) {
  char buf[8192];
  FILE *f = fopen(log, "r");
  if (f == NULL) return;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  fprintf(stderr, "---- %s\n%s----\n", log, buf);
}

static int bench_wait(pid_t pid, const char *log) {
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  (void)log;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Run spikebench to its end; its output is shown when the exit status is
 * not the one wanted. */
static void bench(const char *const *args, const char *log, int want) {
  int rc = bench_wait(bench_start(args, log), log);
  if (rc != want) {
    show(log);
    fprintf(stderr, "spikebench exited %d, want %d\n", rc, want);
  }
  CHECK_EQ(rc, want);
}

/* Load a file (--json, a log, an SVG) into J. */
static void load_file(const char *path) {
  FILE *f = fopen(path, "r");
  CHECK(f != NULL);
  J.body_len = fread(J.body, 1, sizeof(J.body) - 1, f);
  J.body[J.body_len] = '\0';
  fclose(f);
  CHECK(J.body_len > 0);
}

static double jnum(const char *path) {
  char v[64];
  if (hc_json(&J, path, v, sizeof(v)) != 0) {
    fprintf(stderr, "no %s in %s\n", path, J.body);
    abort();
  }
  return strtod(v, NULL);
}

/* A number that may be absent (a status or code never seen): 0 then. */
static long long jcount(const char *path) {
  char v[64];
  return hc_json(&J, path, v, sizeof(v)) == 0 ? strtoll(v, NULL, 10) : 0;
}

static void setup(const char *tag) { snprintf(workdir, sizeof(workdir), "%s", test_tmpdir(tag)); }

/* ---- the stall server -------------------------------------------------------------- */

/* Start the stall server with extra flags; its URL into url (64 bytes). */
static pid_t stall_start_with(char *url, const char *const *extra) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(fds[1], 1);
    close(fds[0]);
    close(fds[1]);
    const char *argv[16] = {stall_bin(), "--freeze-ms", "200", "--period-ms", "1000"};
    int n = 5;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 15; i++)
      argv[n++] = extra[i]; /* later flags win */
    argv[n] = NULL;
    execv(stall_bin(), (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", stall_bin(), strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  char line[128];
  size_t n = 0;
  while (n < sizeof(line) - 1) {
    ssize_t r = read(fds[0], line + n, 1);
    if (r <= 0 || line[n] == '\n') break;
    n++;
  }
  line[n] = '\0';
  close(fds[0]);
  int port;
  CHECK(sscanf(line, "listening 127.0.0.1:%d", &port) == 1);
  snprintf(url, 64, "http://127.0.0.1:%d", port);
  return pid;
}

static pid_t stall_start(char *url) { return stall_start_with(url, NULL); }

static void stall_stop(pid_t pid) {
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

/* Ctrl-C while the server is frozen (outside QA): the sends due then
 * could not be made, each connection waiting for an answer, so the
 * corrected latency lacks their wait. The run is never a pass: exit 4,
 * INTERRUPTED, and the reason gives their number (it printed PASS with a
 * p90 of 0.2 ms where the same window run through had 3.7 s). */
static void interrupted_during_a_freeze(void) {
  setup("sb-int");
  char url[64];
  const char *const extra[] = {"--freeze-ms", "4000", "--period-ms", "5000", NULL};
  pid_t srv = stall_start_with(url, extra); /* frozen from 5 s to 9 s after its start */
  const char *args[] = {"--url", url, "--rate", "100", "--connections", "4", "--duration", "10",
                        "--json", tmp_path("int.json"), NULL};
  pid_t b = bench_start(args, tmp_path("int.log"));
  usleep(6500 * 1000); /* into the freeze */
  kill(b, SIGINT);
  int rc = bench_wait(b, tmp_path("int.log"));
  if (rc != 4) show(tmp_path("int.log"));
  CHECK_EQ(rc, 4);
  load_file(tmp_path("int.log"));
  CHECK(strstr(J.body, "verdict     INTERRUPTED (exit 4)") != NULL);
  CHECK(strstr(J.body, "sends due before it were never made") != NULL);
  load_file(tmp_path("int.json"));
  CHECK(strstr(J.body, "never made, every connection still waiting for an answer") != NULL);
  CHECK(strstr(J.body, "\"interrupted\":true") != NULL);
  CHECK_EQ(jnum("verdict.exit"), 4);
  /* a signal during the warm-up: nothing measured, which is no failure of
   * the server (it said FAIL, "no answers in the measured window") */
  const char *warm[] = {"--url", url, "--scenario", "get", "--rate", "100", "--warmup", "3",
                        "--duration", "5", "--json", tmp_path("warm.json"), NULL};
  b = bench_start(warm, tmp_path("warm.log"));
  usleep(1000 * 1000);
  kill(b, SIGINT);
  rc = bench_wait(b, tmp_path("warm.log"));
  if (rc != 4) show(tmp_path("warm.log"));
  CHECK_EQ(rc, 4);
  load_file(tmp_path("warm.log"));
  CHECK(strstr(J.body, "interrupted before the measured window began") != NULL);
  stall_stop(srv);
}

/* --rate times --duration not whole (outside QA): the schedule sends at
 * 0, 1/rate, ..., 2 sends in 0.5 s at 3/s, and a server answering each is
 * 100 % of the target, not 133 %. A label that is not UTF-8 makes a valid
 * SVG (U+FFFD in its place). */
static void uneven_schedule_and_odd_label(void) {
  setup("sb-uneven");
  char url[64];
  const char *const extra[] = {"--freeze-ms", "0", NULL};
  pid_t srv = stall_start_with(url, extra);
  const char *args[] = {"--url", url, "--scenario", "get", "--rate", "3", "--duration", "0.5",
                        "--connections", "1", "--label", "lab\xff" "el", "--svg", tmp_path("u.svg"),
                        "--slo", "rate>=99%", "--json", tmp_path("u.json"), NULL};
  bench(args, tmp_path("u.log"), 0);
  load_file(tmp_path("u.json"));
  CHECK_EQ(jnum("requests"), 2);
  CHECK(jnum("achieved.share_of_target") > 0.99 && jnum("achieved.share_of_target") < 1.01);
  load_file(tmp_path("u.svg"));
  CHECK(strstr(J.body, "lab&#xFFFD;el") != NULL);
  CHECK(memchr(J.body, 0xff, J.body_len) == NULL);
  stall_stop(srv);
}

/* Open loop sees the stall, closed loop hides it: the point of the tool. */
static void stall_open_vs_closed(void) {
  setup("sb-stall");
  char url[64];
  pid_t srv = stall_start(url);

  const char *open_args[] = {"--url",      url, "--rate",  "2000",   "--connections",       "16",
                             "--duration", "3", "--quiet", "--json", tmp_path("open.json"), NULL};
  bench(open_args, tmp_path("open.log"), 0);
  load_file(tmp_path("open.json"));
  double open_p99 = jnum("latency_ms.p99"), open_p50 = jnum("latency_ms.p50");
  double open_n = jnum("requests");
  fprintf(stderr, "open loop: p50 %.3f ms, p99 %.3f ms over %.0f requests\n", open_p50, open_p99,
          open_n);
  /* a fifth of the schedule falls in a freeze: far more than 1 % waits >= 100 ms */
  CHECK(open_p99 >= 100.0);
  CHECK(open_n >= 2000 * 3 * 0.8);
  CHECK_EQ(jcount("errors.timeout") + jcount("errors.read") + jcount("errors.parse"), 0);

  const char *closed_args[] = {
      "--url", url,       "--max",  "--connections",         "16", "--duration",
      "3",     "--quiet", "--json", tmp_path("closed.json"), NULL};
  bench(closed_args, tmp_path("closed.log"), 0);
  load_file(tmp_path("closed.json"));
  double closed_p99 = jnum("latency_ms.p99"), closed_max = jnum("latency_ms.max");
  double closed_n = jnum("requests");
  fprintf(stderr, "closed loop: p99 %.3f ms, max %.3f ms over %.0f requests\n", closed_p99,
          closed_max, closed_n);
  /* the same freezes, each counted once per connection: they vanish below p99 */
  CHECK(closed_max >= 100.0);
  CHECK(closed_p99 < 50.0);
  CHECK(closed_p99 < open_p99 / 3);
  CHECK(closed_n > open_n);
  stall_stop(srv);
  test_rmrf(workdir);
}

/* A server that closes each connection after its answer is served at the
 * rate asked, with nothing put down to it being down; one that goes away
 * mid-run fails the run; what is lost in the warm-up is not the run's. */
static void closes_goes_away_warmup(void) {
  setup("sb-away");
  char url[64];
  static const char *const closing[] = {"--close", "--freeze-ms", "0", NULL};
  pid_t srv = stall_start_with(url, closing);
  const char *close_args[] = {"--url",      url, "--rate",  "500",    "--connections",        "8",
                              "--duration", "2", "--quiet", "--json", tmp_path("close.json"), NULL};
  bench(close_args, tmp_path("close.log"), 0);
  load_file(tmp_path("close.json"));
  CHECK(jnum("requests") >= 500 * 2 * 0.95);
  CHECK_EQ(jcount("late_by_cause.down"), 0);
  CHECK_EQ(jcount("unsent_by_cause.down"), 0);
  stall_stop(srv);

  /* one that closes a connection idle for 5 ms, saying nothing (an idle
   * timeout): re-opened at once, nothing put down to it being down (it
   * backed off 10-20 ms, and most sends went out late) */
  static const char *const idle[] = {"--idle-close-ms", "5", "--freeze-ms", "0", NULL};
  srv = stall_start_with(url, idle);
  /* (a send that meets the close in flight is lost: HTTP's keep-alive race) */
  const char *idle_args[] = {"--url",      url, "--rate",  "100",    "--connections",       "2",
                             "--duration", "2", "--quiet", "--json", tmp_path("idle.json"),
                             "--slo",      "errors<=2",    NULL};
  bench(idle_args, tmp_path("idle.log"), 0);
  load_file(tmp_path("idle.json"));
  fprintf(stderr, "idle closes: %lld late for the server, %lld for being down\n",
          jcount("late_by_cause.server"), jcount("late_by_cause.down"));
  CHECK(jcount("requests") >= 200 * 0.98);
  CHECK_EQ(jcount("late_by_cause.down"), 0);
  CHECK_EQ(jcount("unsent"), 0);
  CHECK(jcount("late_by_cause.server") < 20);
  stall_stop(srv);

  /* killed a second into a 3 s run */
  static const char *const calm[] = {"--freeze-ms", "0", NULL};
  srv = stall_start_with(url, calm);
  const char *away_args[] = {"--url",      url, "--rate", "100", "--connections", "4",
                             "--duration", "3", NULL};
  pid_t b = bench_start(away_args, tmp_path("away.log"));
  usleep(1000 * 1000);
  kill(srv, SIGKILL);
  waitpid(srv, NULL, 0);
  int rc = bench_wait(b, tmp_path("away.log"));
  if (rc != 1) show(tmp_path("away.log"));
  CHECK_EQ(rc, 1);
  load_file(tmp_path("away.log"));
  CHECK(strstr(J.body, "the server went away") != NULL);

  /* killed half a second into a 2 s run, and back on its port half a
   * second later: the sends due while it was down are late for that,
   * though each of the backlog then waits for the answer before it
   * (outside QA: all but the first after each reconnect were put down to
   * a slow server). A request in flight at the kill may be lost: exit 0
   * or 1. */
  srv = stall_start_with(url, calm);
  const char *back_args[] = {"--url",      url, "--rate", "100", "--connections", "4",
                             "--duration", "2", "--json", tmp_path("back.json"), NULL};
  b = bench_start(back_args, tmp_path("back.log"));
  usleep(500 * 1000);
  kill(srv, SIGKILL);
  waitpid(srv, NULL, 0);
  usleep(500 * 1000);
  char port[16];
  snprintf(port, sizeof(port), "%s", strrchr(url, ':') + 1);
  const char *back[] = {"--freeze-ms", "0", "--port", port, NULL};
  srv = stall_start_with(url, back);
  rc = bench_wait(b, tmp_path("back.log"));
  CHECK(rc == 0 || rc == 1);
  load_file(tmp_path("back.json"));
  fprintf(stderr, "down 0.5 s: late for the server %lld, for being down %lld\n",
          jcount("late_by_cause.server"), jcount("late_by_cause.down"));
  CHECK(jcount("late_by_cause.down") >= 30);
  CHECK(jcount("late_by_cause.server") < jcount("late_by_cause.down") / 4);
  stall_stop(srv);

  /* frozen (SIGSTOP) from 0.3 to 0.9 s, in a 2 s warm-up; 300 ms timeouts */
  srv = stall_start_with(url, calm);
  const char *warm_args[] = {"--url",      url, "--rate",       "200", "--connections", "4",
                             "--warmup",   "2", "--duration",   "1",   "--timeout-ms",  "300",
                             NULL};
  b = bench_start(warm_args, tmp_path("warm.log"));
  usleep(300 * 1000);
  kill(srv, SIGSTOP);
  usleep(600 * 1000);
  kill(srv, SIGCONT);
  rc = bench_wait(b, tmp_path("warm.log"));
  if (rc != 0) show(tmp_path("warm.log"));
  CHECK_EQ(rc, 0);
  stall_stop(srv);
  test_rmrf(workdir);
}

/* A server that answers a connection past its limit 503 before any
 * request was sent, and closes it: a refused connect, backed off from, not
 * a parse error (an answer nobody asked for) retried at once. spiked did
 * this until 2026-11-29 (it now reads the request, to answer probes). */
static void refused_before_the_request(void) {
  setup("sb-refuse");
  char url[64];
  static const char *const four[] = {"--freeze-ms", "0", "--refuse-past", "4", NULL};
  pid_t srv = stall_start_with(url, four);
  const char *args[] = {"--url",      url, "--scenario", "get",  "--rate", "100", "--connections",
                        "8",          "--duration", "1", "--quiet", "--json", tmp_path("ref.json"),
                        "--slo",      "errors<=100%", NULL};
  bench(args, tmp_path("ref.log"), 0);
  load_file(tmp_path("ref.json"));
  fprintf(stderr, "refused before the request: %lld refused, %lld parse errors, %lld answers\n",
          jcount("errors.refused"), jcount("errors.parse"), jcount("requests"));
  CHECK(jcount("errors.refused") >= 4);
  CHECK(jcount("errors.refused") <= 4 * 12); /* backed off: 10, 20, 40 ... ms */
  CHECK_EQ(jcount("errors.parse"), 0);
  CHECK(jcount("requests") > 0); /* on the four connections it kept */
  stall_stop(srv);
  test_rmrf(workdir);
}

/* The schedule is the window's, kept past its end: users due in a freeze
 * that outlasts the window wait for it in the corrected latency (they were
 * left out); a server that takes connections and stops answering fails
 * the run (its owed sends passed --slo errors<5%); a second at 7/s is 7
 * sends (rounding made it 8, one "never made"). */
static void schedule_past_the_end(void) {
  setup("sb-end");
  char url[64];
  /* frozen from 1.5 s to 2.5 s of the server's life; the run is 2 s */
  static const char *const late[] = {"--freeze-ms", "1000", "--period-ms", "1500", NULL};
  pid_t srv = stall_start_with(url, late);
  const char *end_args[] = {"--url",      url, "--rate",  "400",    "--connections",      "4",
                            "--duration", "2", "--quiet", "--json", tmp_path("end.json"), NULL};
  bench(end_args, tmp_path("end.log"), 0);
  load_file(tmp_path("end.json"));
  fprintf(stderr, "freeze at the end: p99 %.1f ms, %.0f requests, %lld unsent\n",
          jnum("latency_ms.p99"), jnum("requests"), jcount("unsent"));
  CHECK(jnum("latency_ms.p99") >= 300.0); /* a fifth of the schedule waited 0.5 s or more */
  CHECK_EQ(jcount("unsent"), 0);
  CHECK(jnum("requests") >= 400 * 2 * 0.98);
  stall_stop(srv);

  /* stopped (SIGSTOP) 0.5 s into a 2 s run and never answering again:
   * connections open, requests time out, the schedule is owed */
  static const char *const calm[] = {"--freeze-ms", "0", NULL};
  srv = stall_start_with(url, calm);
  const char *hang_args[] = {"--url",        url, "--rate",     "200",         "--connections", "4",
                             "--duration",   "2", "--timeout-ms", "200",       "--slo",
                             "errors<5%",    NULL};
  pid_t b = bench_start(hang_args, tmp_path("hang.log"));
  usleep(500 * 1000);
  kill(srv, SIGSTOP);
  int rc = bench_wait(b, tmp_path("hang.log"));
  kill(srv, SIGCONT);
  if (rc != 1) show(tmp_path("hang.log"));
  CHECK_EQ(rc, 1);
  load_file(tmp_path("hang.log"));
  CHECK(strstr(J.body, "never sent") != NULL);
  stall_stop(srv);

  srv = stall_start_with(url, calm);
  const char *seven[] = {"--url",      url, "--rate", "7",        "--connections", "1",
                         "--duration", "1", "--slo",  "unsent<=0", "--quiet",       "--json",
                         tmp_path("seven.json"), NULL};
  bench(seven, tmp_path("seven.log"), 0);
  load_file(tmp_path("seven.json"));
  CHECK_EQ(jcount("sent"), 7);
  CHECK_EQ(jcount("unsent"), 0);
  stall_stop(srv);
  test_rmrf(workdir);
}

/* ---- against spiked ---------------------------------------------------------------- */

static void create_event(int port, int id, int stock) {
  char body[256];
  snprintf(body, sizeof(body),
           "{\"id\":%d,\"name\":\"bench %d\",\"stock\":%d,\"price\":999,\"start_at\":0,"
           "\"end_at\":253402300799999,\"per_user_limit\":1}",
           id, id, stock);
  CHECK_EQ(hc_do(port, "POST", "/api/v1/events", NULL, body, &J), 201);
}

static long long event_field(int port, int id, const char *field) {
  char path[64], f[64];
  snprintf(path, sizeof(path), "/api/v1/events/%d", id);
  CHECK_EQ(hc_do(port, "GET", path, NULL, NULL, &J), 200);
  snprintf(f, sizeof(f), "data.%s", field);
  return hc_json_int(&J, f);
}

static const char *const spiked_args[] = {"--log-level", "warn", NULL};

/* The JSON summary's counts add up: every measured answer has one status and,
 * from spiked, one envelope code. */
static void counts_add_up(void) {
  long long n = (long long)jnum("requests");
  long long st = jcount("status.200") + jcount("status.201") + jcount("status.409") +
                 jcount("status.404") + jcount("status.503") + jcount("status.500");
  CHECK_EQ(st, n);
  long long codes = jcount("codes.0") + jcount("codes.30001") + jcount("codes.30007") +
                    jcount("codes.30002") + jcount("codes.50005");
  CHECK_EQ(codes, n);
  CHECK_EQ(jcount("codes.0"), jcount("status.200") + jcount("status.201"));
  CHECK_EQ(jcount("no_envelope"), 0);
  char v[16];
  CHECK(hc_json(&J, "verify.ok", v, sizeof(v)) == 0 && strcmp(v, "true") == 0);
}

static void reserve_verify(void) {
  setup("sb-reserve");
  spiked s;
  spiked_start(&s, NULL, spiked_args);
  create_event(s.port, 7, 100000);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d/", s.port);
  /* 2000 reserves over 1500 users: 500 repeats must be refused (limit 1) */
  const char *args[] = {"--url",
                        url,
                        "--event",
                        "7",
                        "--rate",
                        "1000",
                        "--connections",
                        "8",
                        "--duration",
                        "2",
                        "--users",
                        "1500",
                        "--user-base",
                        "5000000",
                        "--verify",
                        "--quiet",
                        "--json",
                        tmp_path("r.json"),
                        "--hgrm",
                        tmp_path("durable.hgrm"),
                        "--svg",
                        tmp_path("r.svg"),
                        NULL};
  bench(args, tmp_path("r.log"), 0);
  load_file(tmp_path("r.json"));
  counts_add_up();
  long long n = (long long)jnum("requests");
  long long created = (long long)jnum("run.created");
  CHECK(n + (long long)jnum("unsent") >= 1900);
  CHECK_EQ(jcount("status.201") + jcount("status.409"), n);
  CHECK_EQ(jcount("codes.30007"), jcount("status.409"));
  CHECK(created <= 1500);
  CHECK_EQ(created, jcount("status.201"));
  /* the server agrees */
  CHECK_EQ(event_field(s.port, 7, "reserved"), created);
  CHECK_EQ(event_field(s.port, 7, "available"), 100000 - created);

  /* an event whose reservations expire during the run: their units come
   * back, and --verify allows for those spiked counted (outside QA: such a
   * run always failed taken-equals-201s) */
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/events", NULL,
                 "{\"id\":8,\"name\":\"short\",\"stock\":100000,\"price\":1,\"start_at\":0,"
                 "\"end_at\":253402300799999,\"pay_timeout_s\":1}",
                 &J),
           201);
  const char *expiring[] = {"--url",      url, "--event", "8",      "--rate",              "200",
                            "--duration", "2.5", "--verify", "--quiet", "--json", tmp_path("x.json"),
                            NULL};
  bench(expiring, tmp_path("x.log"), 0);
  load_file(tmp_path("x.json"));
  CHECK(strstr(J.body, "expired meanwhile") != NULL);
  long long made = (long long)jnum("run.created");
  CHECK(event_field(s.port, 8, "reserved") < made);

  /* plot: the run's own .hgrm twice, labelled by file name */
  FILE *in = fopen(tmp_path("durable.hgrm"), "r"), *out = fopen(tmp_path("again.hgrm"), "w");
  CHECK(in != NULL && out != NULL);
  char buf[4096];
  size_t k;
  while ((k = fread(buf, 1, sizeof(buf), in)) > 0)
    CHECK(fwrite(buf, 1, k, out) == k);
  fclose(in);
  fclose(out);
  const char *plot[] = {"plot", tmp_path("both.svg"), tmp_path("durable.hgrm"),
                        tmp_path("again.hgrm"), NULL};
  bench(plot, tmp_path("plot.log"), 0);
  static const char *const svgs[] = {"both.svg", "r.svg"};
  for (int i = 0; i < 2; i++) {
    load_file(tmp_path(svgs[i]));
    CHECK(strncmp(J.body, "<svg", 4) == 0);
    CHECK(strstr(J.body, "</svg>") != NULL);
    CHECK(strstr(J.body, "<polyline") != NULL);
  }
  CHECK(strstr(J.body, ">durable<") == NULL); /* r.svg is labelled by scenario */
  load_file(tmp_path("both.svg"));
  CHECK(strstr(J.body, ">durable<") != NULL && strstr(J.body, ">again<") != NULL);
  /* not an .hgrm: a clear failure */
  const char *bad_plot[] = {"plot", tmp_path("x.svg"), tmp_path("r.json"), NULL};
  bench(bad_plot, tmp_path("plot2.log"), 1);
  /* OUT.svg forgotten: the first .hgrm would have become the plot (outside
   * QA); refused, the file as it was */
  struct stat was, is;
  CHECK_EQ(stat(tmp_path("durable.hgrm"), &was), 0);
  const char *forgot[] = {"plot", tmp_path("durable.hgrm"), tmp_path("again.hgrm"), NULL};
  bench(forgot, tmp_path("plot3.log"), 2);
  load_file(tmp_path("plot3.log"));
  CHECK(strstr(J.body, "holds a latency distribution; the output comes first") != NULL);
  const char *into_input[] = {"plot", tmp_path("again.hgrm"), tmp_path("durable.hgrm"),
                              tmp_path("again.hgrm"), NULL};
  bench(into_input, tmp_path("plot4.log"), 2);
  CHECK_EQ(stat(tmp_path("durable.hgrm"), &is), 0);
  CHECK(is.st_size == was.st_size && is.st_mtime == was.st_mtime);
  const char *titles[] = {"plot", tmp_path("t.svg"), tmp_path("durable.hgrm"), "--title", "a",
                          "--title", "b", NULL};
  bench(titles, tmp_path("plot5.log"), 2);

  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
  test_rmrf(workdir);
}

static void mixed_verify(void) {
  setup("sb-mixed");
  spiked s;
  spiked_start(&s, NULL, spiked_args);
  create_event(s.port, 9, 100000);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
  const char *args[] = {"--url",
                        url,
                        "--event",
                        "9",
                        "--scenario",
                        "mixed",
                        "--rate",
                        "800",
                        "--connections",
                        "8",
                        "--threads",
                        "2",
                        "--duration",
                        "2",
                        "--warmup",
                        "0.5",
                        "--verify",
                        "--quiet",
                        "--json",
                        tmp_path("m.json"),
                        NULL};
  bench(args, tmp_path("m.log"), 0);
  load_file(tmp_path("m.json"));
  counts_add_up();
  long long paid = (long long)jnum("run.paid"), created = (long long)jnum("run.created");
  CHECK(paid > 0 && created > 0 && paid <= created);
  CHECK(jnum("by_kind.reserve.count") > 0);
  CHECK(jnum("by_kind.read.count") > 0);
  CHECK(jnum("by_kind.pay.count") > 0);
  CHECK_EQ(event_field(s.port, 9, "sold"), paid);
  CHECK_EQ(event_field(s.port, 9, "reserved"), created - paid);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
  test_rmrf(workdir);
}

static void flash_crowd_verify(void) {
  setup("sb-flash");
  spiked s;
  spiked_start(&s, NULL, spiked_args);
  create_event(s.port, 11, 100);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
  const char *args[] = {
      "--url", url,          "--event", "11",       "--scenario", "flash-crowd", "--connections",
      "200",   "--duration", "20",      "--verify", "--quiet",    "--json",      tmp_path("f.json"),
      NULL};
  bench(args, tmp_path("f.log"), 0);
  load_file(tmp_path("f.json"));
  counts_add_up();
  CHECK_EQ(jcount("status.201"), 100);
  CHECK_EQ(jcount("codes.30001"), jcount("status.409"));
  CHECK(jcount("status.409") >= 100); /* every other connection was told: sold out */
  CHECK_EQ(jcount("errors.connect"), 0);
  char v[16];
  CHECK(hc_json(&J, "flash.sold_out", v, sizeof(v)) == 0 && strcmp(v, "true") == 0);
  CHECK(jnum("flash.sell_out_ms") > 0);
  CHECK_EQ((long long)jnum("flash.burst.count"), 200);
  CHECK(jnum("by_outcome.won.count") == 100 && jnum("by_outcome.sold_out.count") >= 100);
  /* the summary: the burst once, no requests-per-second for a burst */
  load_file(tmp_path("f.log"));
  CHECK(strstr(J.body, "req/s") == NULL);
  CHECK(strstr(J.body, "  burst       p50") != NULL && strstr(J.body, "  latency ") == NULL);
  CHECK_EQ(event_field(s.port, 11, "available"), 0);
  CHECK_EQ(event_field(s.port, 11, "reserved"), 100);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
  test_rmrf(workdir);
}

/* Another client buying the same event during the run breaks "taken equals
 * 201s": --verify must say so and exit 1. */
static void verify_catches_other_buyer(void) {
  setup("sb-other");
  spiked s;
  spiked_start(&s, NULL, spiked_args);
  create_event(s.port, 13, 100000);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
  const char *other[] = {"--url",         url, "--event",    "13", "--rate",      "300",
                         "--connections", "2", "--duration", "3",  "--user-base", "900000000",
                         "--quiet",       NULL};
  pid_t o = bench_start(other, tmp_path("other.log"));
  usleep(300000);
  const char *args[] = {
      "--url", url,          "--event", "13",       "--rate",  "300",    "--connections",
      "2",     "--duration", "1.5",     "--verify", "--quiet", "--json", tmp_path("v.json"),
      NULL};
  bench(args, tmp_path("v.log"), 1);
  CHECK_EQ(bench_wait(o, tmp_path("other.log")), 0);
  load_file(tmp_path("v.json"));
  char v[16];
  CHECK(hc_json(&J, "verify.ok", v, sizeof(v)) == 0 && strcmp(v, "false") == 0);
  CHECK(strstr(J.body, "\"name\":\"taken-equals-201s\",\"ok\":false") != NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);

  /* a server that is not spike cannot be verified: exit 1, not a pass */
  pid_t srv = stall_start(url);
  const char *lie[] = {"--url", url,        "--rate",  "100", "--duration",
                       "0.5",   "--verify", "--quiet", NULL};
  bench(lie, tmp_path("lie.log"), 1);
  stall_stop(srv);
  test_rmrf(workdir);
}

/* The JSON's verdict: its exit status, and whether some reason says what. */
static void check_verdict(int exit_code, const char *what) {
  CHECK_EQ((long long)jnum("verdict.exit"), exit_code);
  if (what != NULL && strstr(J.body, what) == NULL) {
    fprintf(stderr, "no \"%s\" in %s\n", what, J.body);
    CHECK(0);
  }
}

/* Every errors term must hold (outside QA: the last one alone decided, so
 * 'errors<1,errors<60%' passed a run with half its answers wrong, and its
 * count term printed ok). Half the users of the second run already hold
 * their limit: 50 % errors. */
static void errors_terms_all_hold(void) {
  setup("sb-errs");
  spiked s;
  spiked_start(&s, NULL, NULL);
  create_event(s.port, 12, 100000);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
  const char *first[] = {"--url", url, "--event", "12", "--rate", "100", "--connections", "2",
                         "--duration", "0.5", "--user-base", "900000", "--quiet", NULL};
  bench(first, tmp_path("f.log"), 0); /* users 900000..900049 */
  static const char *const slos[] = {"errors<1,errors<60%", "errors<60%,errors<1", "errors<1000,errors<60%",
                                     "errors<1000,errors<10%"};
  static const int want[] = {1, 1, 0, 1};
  for (int i = 0; i < 4; i++) {
    /* users 900000.. again and as many new: the first 50 are limited */
    char ub[16];
    snprintf(ub, sizeof(ub), "%d", i == 0 ? 900000 : 900000 + 1000 * i);
    if (i > 0) { /* each run its own half-used range */
      const char *prime[] = {"--url", url, "--event", "12", "--rate", "100", "--connections", "2",
                             "--duration", "0.5", "--user-base", ub, "--quiet", NULL};
      bench(prime, tmp_path("p.log"), 0);
    }
    const char *args[] = {"--url", url, "--event", "12", "--rate", "200", "--connections", "2",
                          "--duration", "0.5", "--user-base", ub, "--quiet", "--slo", slos[i],
                          "--json", tmp_path("e.json"), NULL};
    bench(args, tmp_path("e.log"), want[i]);
    load_file(tmp_path("e.json"));
    check_verdict(want[i], NULL);
    CHECK(jnum("verdict.errors") >= 40 && jnum("verdict.errors") <= 60);
  }
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(workdir);
}

/* A protected server: every answer 401 is a failure that says why; with
 * --jwt-secret each user's own token passes --verify; the same users again
 * are refused at their limit, which fails and names --user-base; --header
 * with the admin token passes. */
static void wrong_answers_fail(void) {
  setup("sb-wrong");
  spiked s;
  static const char *const jwt_args[] = {
      "--log-level", "warn", "--auth", "jwt", "--jwt-secret", "k3y", "--admin-token", "adm", NULL};
  spiked_start(&s, NULL, jwt_args);
  char body[256];
  snprintf(body, sizeof(body),
           "{\"id\":5,\"name\":\"j\",\"stock\":100000,\"price\":1,\"start_at\":0,"
           "\"end_at\":253402300799999,\"per_user_limit\":1}");
  CHECK_EQ(hc_do(s.port, "POST", "/api/v1/events", "Authorization: Bearer adm\r\n", body, &J), 201);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
  const char *no_token[] = {
      "--url",      url,   "--event", "5",      "--rate",           "300", "--connections", "4",
      "--duration", "0.5", "--quiet", "--json", tmp_path("n.json"), NULL};
  bench(no_token, tmp_path("n.log"), 1);
  load_file(tmp_path("n.json"));
  check_verdict(1, "credentials missing");
  CHECK(jcount("status.401") > 0 && jcount("status.401") == (long long)jnum("requests"));
  CHECK_EQ(jcount("outcomes.error"), jcount("status.401"));

  const char *with[] = {"--url",
                        url,
                        "--event",
                        "5",
                        "--rate",
                        "300",
                        "--connections",
                        "4",
                        "--duration",
                        "0.5",
                        "--user-base",
                        "700000",
                        "--jwt-secret",
                        "k3y",
                        "--verify",
                        "--quiet",
                        "--json",
                        tmp_path("w.json"),
                        NULL};
  bench(with, tmp_path("w.log"), 0);
  load_file(tmp_path("w.json"));
  check_verdict(0, NULL);
  CHECK(jcount("status.201") > 0 && jcount("status.201") == (long long)jnum("run.created"));
  char v[16];
  CHECK(hc_json(&J, "verify.ok", v, sizeof(v)) == 0 && strcmp(v, "true") == 0);
  /* the same users again: 409 30007 for everyone, fast, and a failure */
  const char *again[] = {
      "--url",         url,   "--event",    "5",      "--rate",           "300",
      "--connections", "4",   "--duration", "0.5",    "--user-base",      "700000",
      "--jwt-secret",  "k3y", "--quiet",    "--json", tmp_path("a.json"), NULL};
  bench(again, tmp_path("a.log"), 1);
  load_file(tmp_path("a.json"));
  check_verdict(1, "--user-base");
  CHECK(jcount("codes.30007") > 0 && jcount("codes.30007") == jcount("outcomes.limited"));
  /* --header reaches the server: the admin token acts for the body's user */
  const char *admin[] = {"--url",
                         url,
                         "--event",
                         "5",
                         "--rate",
                         "300",
                         "--connections",
                         "4",
                         "--duration",
                         "0.3",
                         "--user-base",
                         "900000",
                         "--header",
                         "Authorization: Bearer adm",
                         "--quiet",
                         "--json",
                         tmp_path("h.json"),
                         NULL};
  bench(admin, tmp_path("h.log"), 0);
  load_file(tmp_path("h.json"));
  check_verdict(0, NULL);
  CHECK(jcount("status.201") > 0 && jcount("status.201") == (long long)jnum("requests"));
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);

  /* the server gone: a failure that says so, not "the server was behind" */
  const char *down[] = {"--url",   url,      "--rate",           "100", "--duration", "0.3",
                        "--quiet", "--json", tmp_path("d.json"), NULL};
  bench(down, tmp_path("d.log"), 1);
  load_file(tmp_path("d.json"));
  check_verdict(1, "the server was down");
  CHECK(strstr(J.body, "were made: the server was down or refused connections") != NULL);
  test_rmrf(workdir);
}

/* --slo decides the exit status: 3 for a threshold crossed, 0 when all hold. */
static void slo_exit_codes(void) {
  setup("sb-slo");
  char url[64];
  pid_t srv = stall_start(url);
  const char *miss[] = {"--url",   url,     "--rate",         "500",    "--duration",       "0.5",
                        "--quiet", "--slo", "p99<1us,won>=1", "--json", tmp_path("m.json"), NULL};
  bench(miss, tmp_path("m.log"), 3);
  load_file(tmp_path("m.json"));
  check_verdict(3, "--slo p99<1us did not hold");
  const char *hold[] = {"--url",   url,          "--rate",
                        "500",     "--duration", "0.5",
                        "--quiet", "--slo",      "p99<10s,errors<1%,won>=50%",
                        NULL};
  bench(hold, tmp_path("h.log"), 0);
  stall_stop(srv);
  test_rmrf(workdir);
}

/* A server slower than the rate (outside QA): the answer rate is what was
 * answered over the time the answers took, not over the window (a server
 * that made 384/s was reported at 614/s, and a rate SLO of 600 passed);
 * an answer later than --timeout-ms is lost, not answered (the sweep looked
 * every 20 ms, and answers at 30 ms passed a 25 ms timeout). */
static void slow_server(void) {
  setup("sb-slow");
  char url[64];
  /* 2 connections, one answer each per 5 ms: about 400/s against 600 */
  static const char *const slow[] = {"--freeze-ms", "0", "--delay-ms", "5", NULL};
  pid_t srv = stall_start_with(url, slow);
  const char *args[] = {"--url",      url,    "--scenario",         "get",  "--rate",
                        "600",        "--connections", "2",         "--duration", "1",
                        "--timeout-ms", "3000", "--slo",          "rate>=500", "--quiet",
                        "--json",     tmp_path("slow.json"), NULL};
  bench(args, tmp_path("slow.log"), 3);
  load_file(tmp_path("slow.json"));
  check_verdict(3, "rate>=500 did not hold");
  CHECK_EQ(jcount("requests"), 600); /* every send made, within the grace */
  double answered_s = jnum("answered_s"), rate = jnum("achieved.answered_per_s");
  CHECK(answered_s > jnum("window_s") + 0.2);
  CHECK(rate < 450 && rate > 100);
  CHECK(jnum("achieved.share_of_target") < 0.75);
  load_file(tmp_path("slow.log"));
  CHECK(strstr(J.body, "took") != NULL);
  /* without the rate in the verdict, a PASS far short of it says so */
  const char *nor[] = {"--url",      url,    "--scenario",   "get",  "--rate", "600",
                       "--connections", "2", "--duration", "1", "--timeout-ms", "3000",
                       "--quiet", NULL};
  bench(nor, tmp_path("nor.log"), 0);
  load_file(tmp_path("nor.log"));
  CHECK(strstr(J.body, "of the target rate was answered") != NULL);
  stall_stop(srv);

  /* a server slow to answer but keeping up (300 ms, 40 connections for
   * 100/s): its rate is 100/s, not the window over window plus latency */
  static const char *const far[] = {"--freeze-ms", "0", "--delay-ms", "300", NULL};
  srv = stall_start_with(url, far);
  const char *keeps[] = {"--url", url, "--scenario", "get", "--rate", "100", "--connections", "40",
                         "--duration", "2", "--timeout-ms", "3000", "--slo", "rate>=95",
                         "--quiet", NULL};
  bench(keeps, tmp_path("keeps.log"), 0);
  stall_stop(srv);

  /* one slow answer, the window's last (the 100th of 100 at 100/s takes
   * 300 ms): every send went out on time, so the rate is 100/s (it read
   * 77.8/s, sent and answered, and missed rate>=95%) */
  static const char *const last[] = {"--freeze-ms", "0", "--slow-every", "100", "--slow-ms",
                                     "300", NULL};
  srv = stall_start_with(url, last);
  const char *tail[] = {"--url", url, "--scenario", "get", "--rate", "100", "--connections", "8",
                        "--duration", "1", "--warmup", "0", "--slo", "rate>=95%", "--quiet",
                        "--json", tmp_path("tail.json"), NULL};
  bench(tail, tmp_path("tail.log"), 0);
  load_file(tmp_path("tail.json"));
  CHECK(jnum("achieved.share_of_target") > 0.95);
  CHECK(jnum("latency_ms.max") >= 300.0); /* the slow answer was in it */
  stall_stop(srv);

  /* one answer in 50 takes 60 ms, beside connections that stand idle: the
   * late sends behind it are said to be that, not the server's capacity */
  static const char *const hol[] = {"--freeze-ms", "0", "--slow-every", "50", "--slow-ms", "60",
                                    NULL};
  srv = stall_start_with(url, hol);
  const char *holargs[] = {"--url", url, "--scenario", "get", "--rate", "500", "--connections",
                           "16", "--duration", "1", "--quiet", "--json", tmp_path("hol.json"),
                           NULL};
  bench(holargs, tmp_path("hol.log"), 0);
  load_file(tmp_path("hol.json"));
  CHECK(jcount("late_server_with_idle_connection") > 0);
  CHECK(jcount("late_server_with_idle_connection") <= jcount("late_by_cause.server"));
  CHECK(strstr(J.body, "while another connection stood idle") != NULL);
  stall_stop(srv);
  load_file(tmp_path("keeps.log"));
  CHECK(strstr(J.body, "of the target rate was answered") == NULL);

  static const char *const slower[] = {"--freeze-ms", "0", "--delay-ms", "30", NULL};
  srv = stall_start_with(url, slower);
  const char *late[] = {"--url", url, "--scenario", "get", "--rate", "50", "--connections", "4",
                        "--duration", "1", "--timeout-ms", "25", "--quiet", "--json",
                        tmp_path("late.json"), NULL};
  bench(late, tmp_path("late.log"), 1);
  load_file(tmp_path("late.json"));
  CHECK_EQ(jcount("requests"), 0);
  CHECK(jcount("errors.timeout") >= 30); /* the rest never sent: reconnecting after those */
  stall_stop(srv);
  test_rmrf(workdir);
}

/* A template measures any endpoint; two runs' .hgrm files merge into one. */
static void template_timeline_merge(void) {
  setup("sb-template");
  spiked s;
  spiked_start(&s, NULL, spiked_args);
  create_event(s.port, 21, 100000);
  FILE *f = fopen(tmp_path("buy.tpl"), "w");
  fputs("name buy\nmethod POST\npath /api/v1/events/{event}/orders\n"
        "header Idempotency-Key: {run}-{seq}\nbody {\"user_id\":\"{user}\"}\n"
        "won 201\nsold-out 409:30001\nlimited 409:30007\nshed 503 429\n",
        f);
  fclose(f);
  char url[64];
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", s.port);
  long long total = 0;
  char tpl[600], json[600], hgrm[600], svg[600];
  snprintf(tpl, sizeof(tpl), "%s", tmp_path("buy.tpl"));
  snprintf(svg, sizeof(svg), "%s", tmp_path("tl.svg"));
  for (int k = 0; k < 2; k++) {
    char base[16];
    snprintf(base, sizeof(base), "%d", 800000 + k * 100000);
    snprintf(json, sizeof(json), "%s/t%d.json", workdir, k);
    snprintf(hgrm, sizeof(hgrm), "%s/t%d.hgrm", workdir, k);
    const char *args[] = {"--url",
                          url,
                          "--event",
                          "21",
                          "--template",
                          tpl,
                          "--rate",
                          "400",
                          "--connections",
                          "4",
                          "--duration",
                          "0.6",
                          "--interval-ms",
                          "200",
                          "--user-base",
                          base,
                          "--quiet",
                          "--json",
                          json,
                          "--hgrm",
                          hgrm,
                          "--timeline-svg",
                          svg,
                          NULL};
    bench(args, tmp_path("t.log"), 0);
    load_file(json);
    check_verdict(0, NULL);
    long long n = (long long)jnum("requests");
    CHECK(n > 0 && jcount("outcomes.won") == n && jcount("status.201") == n);
    total += n;
    /* the timeline: every answer in some row */
    long long rows_won = 0;
    for (int i = 0;; i++) {
      char key[64], v[32];
      snprintf(key, sizeof(key), "timeline.rows.%d.won", i);
      if (hc_json(&J, key, v, sizeof(v)) != 0) break;
      rows_won += strtoll(v, NULL, 10);
    }
    CHECK_EQ(rows_won, n);
  }
  CHECK_EQ(event_field(s.port, 21, "reserved"), total);
  char all[600], t0[600], mlog[600];
  snprintf(all, sizeof(all), "%s", tmp_path("all.hgrm"));
  snprintf(t0, sizeof(t0), "%s", tmp_path("t0.hgrm"));
  snprintf(mlog, sizeof(mlog), "%s", tmp_path("merge.log"));
  snprintf(json, sizeof(json), "%s", tmp_path("all.json"));
  const char *merge[] = {"merge", all, t0, hgrm, "--json", json, NULL};
  bench(merge, mlog, 0);
  load_file(json);
  CHECK_EQ((long long)jnum("latency_ms.count"), total);
  char v[16];
  CHECK(hc_json(&J, "exact", v, sizeof(v)) == 0 && strcmp(v, "true") == 0);
  /* the per-outcome file sits beside the run's */
  f = fopen(tmp_path("t0.won.hgrm"), "r");
  CHECK(f != NULL);
  fclose(f);
  load_file(svg);
  CHECK(strncmp(J.body, "<svg", 4) == 0 && strstr(J.body, ">in flight<") != NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
  test_rmrf(workdir);
}

static void usage_errors(void) {
  setup("sb-usage");
  static const char *const bad[][10] = {
      {"--rate", "100", "--max", NULL},
      {"--duration", "5", NULL},
      {"--rate", "0", NULL},
      {"--rate", "abc", NULL},
      {"--max", "--connections", "0", NULL},
      {"--max", "--connections", "99999999", NULL},
      {"--max", "--url", "ftp://x/", NULL},
      {"--max", "--url", "https://x/", NULL},
      {"--max", "--url", "http://:80/", NULL},
      {"--max", "--url", "http://h:99999/", NULL},
      {"--max", "--url", "http://127.0.0.1:1/caf\xc3\xa9", NULL}, /* not ASCII: percent-encode */
      {"--max", "--scenario", "nope", NULL},
      {"--max", "--bogus", NULL},
      {"--scenario", "flash-crowd", "--rate", "10", NULL},
      {"--scenario", "get", "--max", "--verify", NULL},
      {"--max", "--duration", "-1", NULL},
      {"--max", "--threads", "65", NULL},
      {"--max", "extra", NULL},
      {"--max", "--url", NULL},
      {"--max=1", NULL},
      {"plot", NULL},
      {"plot", "out.svg", NULL},
      {"merge", NULL},
      {"merge", "out.hgrm", NULL},
      {"--max", "--slo", "p99<2", NULL},
      {"--max", "--slo", "nonsense", NULL},
      {"--max", "--header", "Connection: close", NULL},
      {"--max", "--header", "X: 1", "--header", "Authorization: x", "--jwt-secret", "s", NULL},
      {"--max", "--template", "/nonexistent/t.tpl", NULL},
      {"--scenario", "template", "--max", NULL},
      {"--scenario", "get", "--max", "--template", "/dev/null", NULL},
      {"--max", "--interval-ms", "1", "--duration", "86400", NULL},
      {"--scenario", "flash-crowd", "--duration", "3600", NULL},
      {"--max", "--slo", "rate>=99%", NULL},
      {"--max", "--start-at", "1000", NULL},
      {"--max", "--start-at", "99999999999999", NULL},
      {"--max", "--events", "0", NULL},
      {"--max", "--events", "2", "--verify", NULL},
      {"--scenario", "flash-crowd", "--events", "2", NULL},
      {"--max", "--event", "18446744073709551615", "--events", "2", NULL},
      /* a flag twice: the second --slo dropped the first's terms */
      {"--max", "--slo", "p99<2ms", "--slo", "p90<9ms", NULL},
      {"--rate", "100", "--rate", "200", NULL},
      /* decimal numbers only: strtod took hex and a leading space */
      {"--rate", "0x10", NULL},
      {"--rate", " 5", NULL},
      {"--max", "--pay-share", "0x0.8p0", NULL},
      /* fresh users past 2^64 wrapped around to 0 */
      {"--max", "--user-base", "18446744073709551600", NULL},
      /* an output that cannot be written: said before the run, not after it */
      {"--max", "--json", "/nonexistent/dir/r.json", NULL},
      {"--max", "--hgrm", "/", NULL},
      /* two outputs on one file: the JSON was lost under the .hgrm */
      {"--max", "--json", "same.out", "--hgrm", "same.out", NULL},
      {"--max", "--json", "same.out", "--hgrm", "./same.out", NULL},
      {"--max", "--hgrm", "r.hgrm", "--json", "r.won.hgrm", NULL}, /* a per-outcome file */
      {"--rate", "10", "--hgrm", "r.hgrm", "--svg", "r.uncorrected.hgrm", NULL}, /* and that one */
      /* numbers are decimal in --slo too (0x10ms was 16 ms) */
      {"--max", "--slo", "p99<0x10ms", NULL},
      /* flags the run would not read: accepted and ignored before */
      {"--max", "--pay-share", "0.3", NULL},
      {"--max", "--scenario", "get", "--seed", "7", NULL},
      {"--max", "--verify-users", "5", NULL},
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    fprintf(stderr, "bad usage %zu: %s %s\n", i, bad[i][0], bad[i][1] ? bad[i][1] : "");
    bench((const char *const *)bad[i], tmp_path("u.log"), 2);
  }
  /* --help names every flag and exits 0 */
  const char *help[] = {"--help", NULL};
  bench(help, tmp_path("h.log"), 0);
  load_file(tmp_path("h.log"));
  static const char *const names[] = {
      "--url",          "--scenario",     "--event",         "--connections", "--threads",
      "--duration",     "--warmup",       "--rate",          "--max",         "--users",
      "--user-base",    "--pay-share",    "--read-share",    "--seed",        "--timeout-ms",
      "--hgrm",         "--svg",          "--label",         "--json",        "--verify",
      "--verify-users", "--verify-cap",   "--quiet",         "--progress",    "spikebench plot",
      "--template",     "--header",       "--jwt-secret",    "--slo",         "--interval-ms",
      "--start-at",     "--timeline-svg", "spikebench merge", "--events"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    CHECK(strstr(J.body, names[i]) != NULL);
  /* ranges as numbers people read: no 1.8e+19 */
  CHECK(strstr(J.body, "e+") == NULL);
  CHECK(strstr(J.body, "[1..10000000]") != NULL && strstr(J.body, "[1..any]") != NULL);
  /* nothing listening: exit 1 with a clear line, not a hang */
  const char *down[] = {"--url", "http://127.0.0.1:1", "--max", "--duration", "0.2", "--quiet",
                        NULL};
  bench(down, tmp_path("d.log"), 1);
  test_rmrf(workdir);
}

TEST_LIST({"stall_open_vs_closed", stall_open_vs_closed, 30},
          {"refused_before_the_request", refused_before_the_request, 30},
          {"interrupted_during_a_freeze", interrupted_during_a_freeze, 30},
          {"uneven_schedule_and_odd_label", uneven_schedule_and_odd_label, 30},
          {"closes_goes_away_warmup", closes_goes_away_warmup, 30},
          {"schedule_past_the_end", schedule_past_the_end, 40},
          {"reserve_verify", reserve_verify, 30}, {"mixed_verify", mixed_verify, 30},
          {"flash_crowd_verify", flash_crowd_verify, 30},
          {"verify_catches_other_buyer", verify_catches_other_buyer, 30},
          {"wrong_answers_fail", wrong_answers_fail, 30}, {"slo_exit_codes", slo_exit_codes, 30},
          {"errors_terms_all_hold", errors_terms_all_hold, 30},
          {"slow_server", slow_server, 30},
          {"template_timeline_merge", template_timeline_merge, 30},
          {"usage_errors", usage_errors, 60})

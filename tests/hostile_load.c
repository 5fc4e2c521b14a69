/*
 * hostile_load.c -- slow and hostile clients against a running spiked on
 * loopback, for a fixed time, while tests/hostile.sh measures a legitimate
 * client beside them (issue 11, row 6). Three processes, each with its own
 * descriptors:
 *
 *   slow     --slowloris connections trickling a request a byte per 100 ms
 *            (reopened as spiked cuts them) and --non-readers connections
 *            that pipeline requests and never read
 *   smuggle  every ambiguous request of hostile.c in turn, one every
 *            --smuggle-every-ms: each must get one 400 and a close
 *   flood    --flood connections at once every --flood-every-ms; each
 *            must be served, answered 503 then closed, or closed unanswered
 *
 * and this one samples spiked's RSS and descriptors (--pid) every 100 ms.
 * It stops itself after --seconds; exit 0 when nothing went wrong, 1 when
 * a check failed, 2 on bad usage. One line per process, then a summary.
 *
 * --stall N measures one thing instead: with spiked stopped (SIGSTOP), N
 * connections, each with a request, queue in its backlog; it is woken
 * with a keep-alive client's request waiting too, and the time that
 * client waits is how long the loop is held by a flood that has already
 * arrived.
 *
 *   hostile_load --port 8080 --pid 1234 --seconds 30
 *   hostile_load --port 8080 --pid 1234 --stall 4000
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hostile.h"
#include "test.h"

static struct {
  int port;
  pid_t pid;
  int seconds;
  int slowloris, non_readers, flood, stall;
  int flood_every_ms, smuggle_every_ms;
  uint64_t event, user_base;
} opt = {.seconds = 30,
         .slowloris = 1000,
         .non_readers = 1000,
         .flood = 10000,
         .flood_every_ms = 5000,
         .smuggle_every_ms = 50,
         .event = 1,
         .user_base = 2000000000};

static int usage(void) {
  fprintf(stderr, "usage: hostile_load --port N [--pid N] [--seconds 30] [--slowloris 1000]\n"
                  "       [--non-readers 1000] [--flood 10000] [--flood-every-ms 5000]\n"
                  "       [--smuggle-every-ms 50] [--event 1] [--user-base 2000000000]\n"
                  "       hostile_load --port N --pid N --stall N\n");
  return 2;
}

static void run_slow(int64_t end_ms) {
  long need = opt.slowloris + opt.non_readers + 64;
  if (hx_raise_nofile(need) < 0) {
    printf("slow: RLIMIT_NOFILE's hard limit is below %ld\n", need);
    exit(1);
  }
  if (opt.slowloris == 0 && opt.non_readers == 0) exit(0);
  hx_slow g;
  hx_mute m;
  hx_slow_open(&g, opt.port, opt.slowloris);
  hx_mute_open(&m, opt.port, opt.non_readers, 32, opt.event, opt.user_base, 2000);
  long cut = 0, resets = 0, mute_closed_max = 0;
  while (test_now_ms() < end_ms) {
    hx_slow_tick(&g);
    for (int i = 0; i < g.n; i++)
      if (g.fd[i] < 0) {
        cut++;
        resets += g.reset[i];
      }
    hx_slow_refill(&g, opt.port);
    long mc = hx_mute_closed(&m);
    if (mc > mute_closed_max) mute_closed_max = mc;
    usleep(100 * 1000);
  }
  printf("slow: %d slowloris kept open, %ld cut by spiked (%ld by reset); %d non-readers sent "
         "%lld bytes, %ld closed by spiked\n",
         opt.slowloris, cut, resets, opt.non_readers, m.sent_bytes, mute_closed_max);
  hx_slow_close(&g);
  hx_mute_close(&m);
  exit(0);
}

/* Each ambiguous request gets one 400 (40001) and a FIN. While a flood
 * holds every place, a smuggling connection may instead be turned away at
 * the connection limit before its request is read: one 503 (50005) and a
 * FIN, or, past --max-refusals, a close with nothing sent. Nothing else. */
static void run_smuggle(int64_t end_ms) {
  long sent = 0, bad = 0, turned_away = 0;
  uint64_t user = opt.user_base + 500000000ull;
  for (size_t i = 0; test_now_ms() < end_ms; i = (i + 1) % hx_nsmuggles) {
    hx_answer a;
    hx_smuggle_run(opt.port, &hx_smuggles[i], opt.event, user++, 0, 2000, &a);
    sent++;
    int refused =
        a.answers == 1 && a.status == 400 && a.code == 40001 && a.conn_close && a.end == HX_EOF;
    int at_limit = (a.answers == 1 && a.status == 503 && a.code == 50005 && a.end == HX_EOF) ||
                   (a.answers == 0 && a.first[0] == '\0' && a.end != HX_OPEN);
    turned_away += at_limit;
    if (!refused && !at_limit && bad++ < 5)
      printf("smuggle: %s: %d answer(s), first %d/%d, %s\n", hx_smuggles[i].name, a.answers,
             a.status, a.code,
             a.end == HX_EOF   ? "EOF"
             : a.end == HX_RST ? "reset"
                               : "open");
    int64_t next = test_now_ms() + opt.smuggle_every_ms;
    while (test_now_ms() < next && test_now_ms() < end_ms)
      usleep(10 * 1000);
  }
  printf("smuggle: %ld ambiguous requests: %ld refused with one 400 and a FIN, %ld turned away at "
         "the connection limit, %ld neither\n",
         sent, sent - turned_away - bad, turned_away, bad);
  exit(bad == 0 ? 0 : 1);
}

static void run_flood(int64_t end_ms) {
  if (hx_raise_nofile(opt.flood + 64) < 0) {
    printf("flood: RLIMIT_NOFILE's hard limit is below %d\n", opt.flood + 64);
    exit(1);
  }
  hx_flood sum;
  memset(&sum, 0, sizeof(sum));
  int floods = 0;
  int64_t worst_ms = 0;
  usleep(1000 * 1000); /* let the slow clients take their places first */
  while (test_now_ms() < end_ms) {
    int64_t t0 = test_now_ms();
    hx_flood f;
    /* the event, not a probe: past the limit a probe is answered */
    char get[96];
    snprintf(get, sizeof(get), "GET /api/v1/events/%llu HTTP/1.1\r\nHost: t\r\n\r\n",
             (unsigned long long)opt.event);
    hx_flood_run(&f, opt.port, opt.flood, get, 30000, 0);
    floods++;
    sum.served += f.served;
    sum.refused_503 += f.refused_503;
    sum.closed_fin += f.closed_fin;
    sum.closed_rst += f.closed_rst;
    sum.bad_503_rst += f.bad_503_rst;
    sum.bad_partial += f.bad_partial;
    sum.bad_other += f.bad_other;
    sum.hung += f.hung;
    if (f.took_ms > worst_ms) worst_ms = f.took_ms;
    if (f.example[0] != '\0' && sum.example[0] == '\0')
      snprintf(sum.example, sizeof(sum.example), "%s", f.example);
    int64_t next = t0 + opt.flood_every_ms;
    while (test_now_ms() < next && test_now_ms() < end_ms)
      usleep(50 * 1000);
  }
  printf("flood: %d floods of %d: %d served, %d answered 503 then EOF, %d closed unanswered "
         "(%d EOF, %d reset); bad: %d 503+reset, %d partial, %d other, %d hung; slowest %lld ms\n",
         floods, opt.flood, sum.served, sum.refused_503, sum.closed_fin + sum.closed_rst,
         sum.closed_fin, sum.closed_rst, sum.bad_503_rst, sum.bad_partial, sum.bad_other, sum.hung,
         (long long)worst_ms);
  if (sum.example[0] != '\0') printf("flood: first bad: %s\n", sum.example);
  exit(hx_flood_bad(&sum) == 0 ? 0 : 1);
}

static int run_stall(void) {
  if (hx_raise_nofile(opt.stall + 64) < 0) {
    printf("stall: RLIMIT_NOFILE's hard limit is below %d\n", opt.stall + 64);
    return 1;
  }
  static const char req[] = "GET /healthz/live HTTP/1.1\r\nHost: t\r\n\r\n";
  char buf[4096];
  int legit = hx_connect_nb(opt.port);
  struct pollfd p = {legit, POLLOUT, 0};
  if (legit < 0 || poll(&p, 1, 5000) != 1) {
    printf("stall: cannot connect\n");
    return 1;
  }
  send(legit, req, sizeof(req) - 1, MSG_NOSIGNAL);
  p.events = POLLIN;
  if (poll(&p, 1, 5000) != 1 || recv(legit, buf, sizeof(buf), 0) <= 0) {
    printf("stall: no first answer\n");
    return 1;
  }
  if (kill(opt.pid, SIGSTOP) != 0) {
    printf("stall: cannot stop pid %d\n", (int)opt.pid);
    return 1;
  }
  usleep(50 * 1000);
  int *fds = calloc((size_t)opt.stall, sizeof(int));
  for (int i = 0; i < opt.stall; i++)
    fds[i] = hx_connect_nb(opt.port);
  usleep(300 * 1000); /* the handshakes complete in the kernel's backlog */
  for (int i = 0; i < opt.stall; i++)
    if (fds[i] >= 0) send(fds[i], req, sizeof(req) - 1, MSG_NOSIGNAL);
  send(legit, req, sizeof(req) - 1, MSG_NOSIGNAL);
  usleep(100 * 1000);
  int64_t t0 = test_now_ms();
  kill(opt.pid, SIGCONT);
  int ok = poll(&p, 1, 10000) == 1 && recv(legit, buf, sizeof(buf), 0) > 0;
  int64_t waited = test_now_ms() - t0;
  printf(
      "stall: a keep-alive request waited %lld ms while spiked woke to %d queued connections%s\n",
      (long long)waited, opt.stall, ok ? "" : " (no answer)");
  for (int i = 0; i < opt.stall; i++)
    if (fds[i] >= 0) close(fds[i]);
  free(fds);
  close(legit);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) return usage();
    long long v = strtoll(argv[++i], NULL, 10);
    if (strcmp(a, "--port") == 0)
      opt.port = (int)v;
    else if (strcmp(a, "--pid") == 0)
      opt.pid = (pid_t)v;
    else if (strcmp(a, "--seconds") == 0)
      opt.seconds = (int)v;
    else if (strcmp(a, "--slowloris") == 0)
      opt.slowloris = (int)v;
    else if (strcmp(a, "--non-readers") == 0)
      opt.non_readers = (int)v;
    else if (strcmp(a, "--flood") == 0)
      opt.flood = (int)v;
    else if (strcmp(a, "--stall") == 0)
      opt.stall = (int)v;
    else if (strcmp(a, "--flood-every-ms") == 0)
      opt.flood_every_ms = (int)v;
    else if (strcmp(a, "--smuggle-every-ms") == 0)
      opt.smuggle_every_ms = (int)v;
    else if (strcmp(a, "--event") == 0)
      opt.event = (uint64_t)v;
    else if (strcmp(a, "--user-base") == 0)
      opt.user_base = (uint64_t)v;
    else
      return usage();
  }
  if (opt.port <= 0 || opt.seconds <= 0 || opt.seconds > 3600) return usage();
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (opt.stall > 0) return opt.pid > 0 ? run_stall() : usage();
  int64_t end_ms = test_now_ms() + (int64_t)opt.seconds * 1000;
  void (*const parts[])(int64_t) = {run_slow, run_smuggle, run_flood};
  pid_t kids[3];
  for (int k = 0; k < 3; k++) {
    fflush(NULL);
    kids[k] = fork();
    if (kids[k] < 0) {
      perror("fork");
      return 1;
    }
    if (kids[k] == 0) {
      alarm((unsigned)opt.seconds + 60); /* whatever happens, it stops */
      parts[k](end_ms);
    }
  }
  long rss_max = 0;
  int fds_max = 0, running = 3, failed = 0;
  while (running > 0) {
    if (opt.pid > 0) {
      long rss = hx_rss_kib(opt.pid);
      int fds = hx_fd_count(opt.pid);
      if (rss > rss_max) rss_max = rss;
      if (fds > fds_max) fds_max = fds;
      if (rss < 0) {
        printf("spiked (pid %d) is gone\n", (int)opt.pid);
        failed = 1;
        opt.pid = 0;
      }
    }
    int st;
    pid_t w = waitpid(-1, &st, WNOHANG);
    if (w > 0) {
      running--;
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
      continue;
    }
    usleep(100 * 1000);
  }
  if (opt.pid > 0) printf("spiked during: max RSS %ld KiB, max fds %d\n", rss_max, fds_max);
  return failed;
}

/*
 * epoll.c -- a gateway that embeds libspike in a bare epoll loop, no HTTP,
 * no libuv: only spike.h.
 *
 * The loop watches three fds: a timerfd that "receives" bursts of buy
 * requests, a signalfd for SIGINT/SIGTERM, and the producer's completion
 * eventfd, edge-triggered (EPOLLET: spike.h promises that every completion
 * a drain did not run leaves a new edge). Won orders are paid, one in ten
 * cancelled. The engine's log lines go to this program's own sink
 * (spike_config.log_cb), and refusals are explained with
 * spike_producer_error(). At the end it checks the event's counters, pages
 * through the event list and one user's orders, and closes everything.
 *
 *   cc -o epoll epoll.c $(pkg-config --cflags --libs spike)
 *   epoll [DATA_DIR] [REQUESTS]       defaults: ./data-epoll 5000
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "spike.h"

#define EVENT_ID 2
#define STOCK 500
#define BURST 64
#define POOL 1024

typedef struct gateway gateway;

typedef struct request {
  spike_op op; /* first: the callback casts back */
  gateway *g;
  int busy;
} request;

struct gateway {
  spike_engine *engine;
  spike_producer *producer;
  int epfd, tfd, sfd;
  request pool[POOL];
  uint64_t first_user, next_user, budget, sent;
  uint64_t reserved, paid, cancelled, sold_out, busy, refused, failed;
  int stopping;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The engine's log lines, in this gateway's format. Any thread. */
static void log_sink(void *ctx, spike_log_level level, const char *module, const char *msg,
                     const spike_log_kv *kv, size_t n) {
  static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
  char line[1024];
  int len = snprintf(line, sizeof(line), "%s [spike/%s] %s", names[level & 3], module, msg);
  for (size_t i = 0; i < n && len > 0 && (size_t)len < sizeof(line); i++)
    len += snprintf(line + len, sizeof(line) - (size_t)len, " %s=%s", kv[i].key, kv[i].value);
  fprintf((FILE *)ctx, "%s\n", line);
}

static request *take(gateway *g) {
  for (int i = 0; i < POOL; i++)
    if (!g->pool[i].busy) {
      g->pool[i].busy = 1;
      g->pool[i].g = g;
      return &g->pool[i];
    }
  return NULL;
}

static void refused(gateway *g, int rc) {
  char why[256];
  spike_producer_error(g->producer, why, sizeof(why));
  fprintf(stderr, "epoll: refused (%d %s): %s\n", spike_code(rc), spike_strerror(rc), why);
  g->refused++;
}

static void on_settled(spike_op *op) {
  request *r = (request *)op;
  r->busy = 0;
  if (op->status != SPIKE_OK) {
    r->g->failed++;
    return;
  }
  if (op->r.order.state == SPIKE_ORDER_PAID) r->g->paid++;
  if (op->r.order.state == SPIKE_ORDER_CANCELLED) r->g->cancelled++;
}

/* Runs inside spike_producer_drain: submitting from here is allowed. */
static void on_reserved(spike_op *op) {
  request *r = (request *)op;
  gateway *g = r->g;
  if (op->status != SPIKE_OK) {
    r->busy = 0;
    g->failed++;
    return;
  }
  g->reserved++;
  /* The op is ours again: reuse it for the follow-up. */
  spike_order o = op->r.order;
  char pid[32];
  int n = snprintf(pid, sizeof(pid), "pay-%" PRIu64, o.id);
  int rc = o.id % 10 == 0 ? spike_cancel(g->producer, op, o.id, o.user_id, on_settled)
                          : spike_pay(g->producer, op, o.id, o.user_id, pid, (size_t)n, on_settled);
  if (rc != SPIKE_PENDING) {
    r->busy = 0;
    if (rc < 0) refused(g, rc);
  }
}

static void on_tick(gateway *g) {
  uint64_t ticks;
  if (read(g->tfd, &ticks, sizeof(ticks)) < 0 && errno != EAGAIN) perror("epoll: timerfd");
  for (int i = 0; i < BURST && g->sent < g->budget; i++) {
    request *r = take(g);
    if (r == NULL) break;
    g->sent++;
    int rc = spike_reserve(g->producer, &r->op, EVENT_ID, g->next_user++, 1, NULL, 0, on_reserved);
    if (rc == SPIKE_PENDING) continue;
    r->busy = 0;
    if (rc == SPIKE_ESOLDOUT)
      g->sold_out++;
    else if (rc == SPIKE_EBUSY)
      g->busy++; /* a queue is full: retry soon (HTTP 503 + Retry-After) */
    else if (rc != SPIKE_OK)
      refused(g, rc);
  }
  spike_event ev;
  if (g->sent >= g->budget || (spike_event_get(g->engine, EVENT_ID, &ev) == SPIKE_OK &&
                               ev.available == 0 && ev.reserved == 0))
    g->stopping = 1;
}

/* The loop: runs until stopping and nothing is in flight. */
static int run(gateway *g) {
  struct epoll_event evs[8];
  while (!g->stopping || spike_producer_inflight(g->producer) > 0) {
    int n = epoll_wait(g->epfd, evs, 8, 1000);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      perror("epoll: epoll_wait");
      return -1;
    }
    if (n == 0 && spike_producer_inflight(g->producer) > 0) {
      /* With edge triggering a lost wake-up would hang here: say so. */
      fprintf(stderr, "epoll: 1 s without a completion, %u in flight\n",
              spike_producer_inflight(g->producer));
      return -1;
    }
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == spike_producer_fd(g->producer)) {
        spike_producer_drain(g->producer); /* callbacks run here, on this thread */
      } else if (fd == g->tfd) {
        if (!g->stopping) on_tick(g);
      } else if (fd == g->sfd) {
        struct signalfd_siginfo si;
        if (read(g->sfd, &si, sizeof(si)) > 0) g->stopping = 1;
      }
    }
  }
  return 0;
}

static int watch(gateway *g, int fd, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.fd = fd};
  return epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* Create the sale unless it exists; waits for the commit right here. */
static int create_event(gateway *g) {
  spike_event ev;
  if (spike_event_get(g->engine, EVENT_ID, &ev) == SPIKE_OK) return 0;
  static const char name[] = "epoll demo sale";
  spike_event_spec spec = {.id = EVENT_ID,
                           .name = name,
                           .name_len = sizeof(name) - 1,
                           .stock = STOCK,
                           .price = 2500,
                           .start_at = now_ms() - 1000,
                           .end_at = now_ms() + 24 * 3600 * 1000ll,
                           .per_user_limit = 1,
                           .pay_timeout_s = 300};
  request *r = take(g);
  int rc = spike_event_create(g->producer, &r->op, &spec, on_settled);
  if (rc != SPIKE_PENDING) {
    refused(g, rc);
    return -1;
  }
  while (r->busy) {
    struct epoll_event e;
    if (epoll_wait(g->epfd, &e, 1, 1000) > 0 && e.data.fd == spike_producer_fd(g->producer))
      spike_producer_drain(g->producer);
  }
  return r->op.status == SPIKE_OK ? 0 : -1;
}

/* Every event, a page of 2 at a time; returns how many. */
static uint32_t count_events(gateway *g) {
  spike_event page[2];
  uint32_t total = 0, n;
  uint64_t after = 0, next;
  do {
    spike_event_list(g->engine, after, page, 2, &n, &next);
    total += n;
    after = next;
  } while (next != 0);
  return total;
}

/* One user's orders, a page of 1 at a time (after a reserve and a pay or
 * cancel, still one order). */
static uint32_t count_orders(gateway *g, uint64_t user) {
  spike_order page[1];
  uint32_t total = 0, n;
  uint64_t after = 0, next;
  do {
    if (spike_user_orders(g->producer, user, 0, after, page, 1, &n, &next) != SPIKE_OK) break;
    total += n;
    after = next;
  } while (next != 0);
  return total;
}

int main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    printf("usage: epoll [DATA_DIR] [REQUESTS]\n"
           "  Plays a flash sale against libspike inside a bare epoll loop.\n");
    return 0;
  }
  static gateway g;
  g.budget = argc > 2 ? strtoull(argv[2], NULL, 10) : 5000;
  g.first_user = g.next_user = (uint64_t)now_ms() * 1000; /* fresh users on every run */

  spike_config cfg;
  spike_config_init(&cfg);
  cfg.data_dir = argc > 1 ? argv[1] : "./data-epoll";
  cfg.max_buyers = 1u << 16;
  cfg.max_keys = 1u << 10;
  cfg.max_reserved = 1u << 14;
  cfg.max_producers = 1;
  cfg.ring_size = 2048;
  cfg.log_cb = log_sink;
  cfg.log_ctx = stderr;
  int rc = spike_open(&g.engine, &cfg);
  if (rc != SPIKE_OK) {
    fprintf(stderr, "epoll: %s: %s\n", spike_strerror(rc), spike_open_error());
    return 1;
  }
  if ((rc = spike_producer_open(g.engine, &g.producer)) != SPIKE_OK) {
    char why[256];
    spike_engine_error(g.engine, why, sizeof(why));
    fprintf(stderr, "epoll: %s\n", why);
    return 1;
  }
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGTERM);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  struct itimerspec every_ms = {{0, 1000000}, {0, 1000000}};
  g.epfd = epoll_create1(EPOLL_CLOEXEC);
  g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  g.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
  if (g.epfd < 0 || g.tfd < 0 || g.sfd < 0 || timerfd_settime(g.tfd, 0, &every_ms, NULL) != 0 ||
      watch(&g, spike_producer_fd(g.producer), EPOLLIN | EPOLLET) != 0 ||
      watch(&g, g.tfd, EPOLLIN) != 0 || watch(&g, g.sfd, EPOLLIN) != 0) {
    perror("epoll: set-up");
    return 1;
  }
  int bad = create_event(&g) != 0 || run(&g) != 0;

  spike_event ev;
  spike_event_get(g.engine, EVENT_ID, &ev);
  printf("requests %" PRIu64 ": reserved %" PRIu64 ", paid %" PRIu64 ", cancelled %" PRIu64
         ", sold out %" PRIu64 ", busy %" PRIu64 ", refused %" PRIu64 ", failed %" PRIu64 "\n",
         g.sent, g.reserved, g.paid, g.cancelled, g.sold_out, g.busy, g.refused, g.failed);
  printf("event %d: stock %" PRIu64 " available %" PRIu64 " reserved %" PRIu64 " sold %" PRIu64
         " (%s)\n",
         EVENT_ID, ev.stock_total, ev.available, ev.reserved, ev.sold,
         spike_event_state_name(ev.state));
  if (ev.available + ev.reserved + ev.sold != ev.stock_total || ev.sold < g.paid || g.failed != 0 ||
      g.refused != 0) {
    fprintf(stderr, "epoll: counters do not balance, or something failed\n");
    bad = 1;
  }
  if (count_events(&g) < 1 || (g.reserved > 0 && count_orders(&g, g.first_user) != 1)) {
    fprintf(stderr, "epoll: paging found the wrong number of events or orders\n");
    bad = 1;
  }
  if (spike_producer_close(g.producer) != SPIKE_OK || spike_close(g.engine) != SPIKE_OK) {
    fprintf(stderr, "epoll: close failed\n");
    bad = 1;
  }
  close(g.tfd);
  close(g.sfd);
  close(g.epfd);
  return bad;
}

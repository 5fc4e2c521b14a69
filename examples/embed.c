/*
 * embed.c -- a gateway that embeds libspike in its own libuv loop, no HTTP.
 *
 * It plays a flash sale against itself: a timer "receives" bursts of buy
 * requests from simulated users, reserves through the engine, pays most of
 * the orders it wins and cancels some, until the sale sells out or the
 * request budget is spent. Completions come back on this loop's thread
 * through the producer's eventfd and the header-only libuv adapter
 * (spike_uv.h). At the end it checks the event's counters against what it
 * was told, closes everything and asserts the loop has no handle left.
 *
 * It uses only the installed headers; build it against the package with
 *   cc -o embed embed.c $(pkg-config --cflags --libs spike-uv)
 * (examples/Makefile does that).
 *
 *   embed [DATA_DIR] [REQUESTS]       defaults: ./data-embed 5000
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "spike.h"
#include "spike_uv.h"

#define EVENT_ID 1
#define STOCK 500
#define BURST 64
#define POOL 1024

typedef struct gateway gateway;

typedef struct request {
  spike_op op; /* first: callbacks cast back */
  gateway *g;
  int busy;
} request;

struct gateway {
  uv_loop_t loop;
  uv_timer_t tick;
  uv_signal_t sigint;
  spike_engine *engine;
  spike_producer *producer;
  spike_uv adapter;
  request pool[POOL];
  uint64_t next_user, budget, sent;
  uint64_t reserved, paid, cancelled, sold_out, limited, busy;
  int stopping;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

static void stop(gateway *g);

/* A refusal, with what the producer's last error says about it. */
static void report(gateway *g, int rc, const char *what) {
  char why[256];
  spike_producer_error(g->producer, why, sizeof(why));
  fprintf(stderr, "embed: %s refused (%d, %s): %s\n", what, spike_code(rc),
          spike_strerror(rc), why);
}

/* Once stopping, the last completion detaches the adapter: with no handle
 * left, uv_run returns. */
static void maybe_finish(gateway *g) {
  if (g->stopping == 1 && spike_producer_inflight(g->producer) == 0) {
    g->stopping = 2;
    spike_uv_detach(&g->adapter, NULL);
  }
}

static void on_created(spike_op *op) { ((request *)op)->busy = 0; }

static void on_paid_or_cancelled(spike_op *op) {
  request *r = (request *)op;
  r->busy = 0;
  maybe_finish(r->g);
  if (op->status != SPIKE_OK) {
    fprintf(stderr, "embed: order %" PRIu64 ": %s\n", op->r.order.id, spike_strerror(op->status));
    return;
  }
  if (op->r.order.state == SPIKE_ORDER_PAID) r->g->paid++;
  if (op->r.order.state == SPIKE_ORDER_CANCELLED) r->g->cancelled++;
}

/* A won order: pay 9 in 10 of them, cancel the rest. */
static void follow_up(gateway *g, const spike_order *o) {
  request *r = take(g);
  if (r == NULL) return;
  char pid[32];
  int n = snprintf(pid, sizeof(pid), "pay-%" PRIu64, o->id);
  int rc = o->id % 10 == 0 ? spike_cancel(g->producer, &r->op, o->id, o->user_id, on_paid_or_cancelled)
                           : spike_pay(g->producer, &r->op, o->id, o->user_id, pid, (size_t)n,
                                       on_paid_or_cancelled);
  if (rc == SPIKE_PENDING) return;
  r->busy = 0;
  if (rc < 0) report(g, rc, o->id % 10 == 0 ? "cancel" : "pay");
}

static void on_reserved(spike_op *op) {
  request *r = (request *)op;
  gateway *g = r->g;
  r->busy = 0;
  if (op->status == SPIKE_OK) {
    g->reserved++;
    if (!g->stopping) follow_up(g, &op->r.order);
  } else {
    fprintf(stderr, "embed: reserve failed after submit: %s\n", spike_strerror(op->status));
  }
  maybe_finish(g);
}

static void on_tick(uv_timer_t *t) {
  gateway *g = t->data;
  for (int i = 0; i < BURST && g->sent < g->budget; i++) {
    request *r = take(g);
    if (r == NULL) break;
    g->sent++;
    uint64_t user = g->next_user++;
    int rc = spike_reserve(g->producer, &r->op, EVENT_ID, user, 1, NULL, 0, on_reserved);
    if (rc == SPIKE_PENDING) continue;
    r->busy = 0;
    if (rc == SPIKE_OK) { /* ack=memory would answer here */
      g->reserved++;
      follow_up(g, &r->op.r.order);
    } else if (rc == SPIKE_ESOLDOUT) {
      g->sold_out++;
    } else if (rc == SPIKE_ELIMIT) {
      g->limited++;
    } else if (rc == SPIKE_EBUSY) {
      g->busy++; /* a queue is full: a gateway answers 503 with Retry-After */
    } else {
      report(g, rc, "reserve"); /* SPIKE_EFULL: a table is too small; configuration */
    }
  }
  spike_event ev;
  if (g->sent >= g->budget ||
      (spike_event_get(g->engine, EVENT_ID, &ev) == SPIKE_OK && ev.available == 0 &&
       ev.reserved == 0))
    stop(g);
}

static void stop(gateway *g) {
  if (g->stopping) return;
  g->stopping = 1;
  uv_timer_stop(&g->tick);
  uv_close((uv_handle_t *)&g->tick, NULL);
  uv_close((uv_handle_t *)&g->sigint, NULL);
  maybe_finish(g);
}

static void on_sigint(uv_signal_t *s, int signum) {
  (void)signum;
  stop(s->data);
}

static int create_event_if_missing(gateway *g) {
  spike_event ev;
  if (spike_event_get(g->engine, EVENT_ID, &ev) == SPIKE_OK) return 0;
  spike_event_spec spec = {
      .id = EVENT_ID,
      .name = "embedded demo sale",
      .name_len = strlen("embedded demo sale"),
      .stock = STOCK,
      .price = 4999,
      .start_at = now_ms() - 1000,
      .end_at = now_ms() + 24 * 3600 * 1000ll,
      .per_user_limit = 1,
      .pay_timeout_s = 300,
  };
  request *r = take(g);
  int rc = spike_event_create(g->producer, &r->op, &spec, on_created);
  if (rc != SPIKE_PENDING) {
    fprintf(stderr, "embed: create event: %s\n", spike_strerror(rc));
    return -1;
  }
  /* The loop is not running yet: drive it until the create completes. */
  while (r->busy) uv_run(&g->loop, UV_RUN_ONCE);
  if (r->op.status != SPIKE_OK) {
    fprintf(stderr, "embed: create event: %s\n", spike_strerror(r->op.status));
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    printf("usage: embed [DATA_DIR] [REQUESTS]\n"
           "  Plays a flash sale against libspike inside a libuv loop.\n");
    return 0;
  }
  static gateway g;
  g.budget = argc > 2 ? strtoull(argv[2], NULL, 10) : 5000;
  g.next_user = (uint64_t)now_ms(); /* fresh users on every run */
  spike_config cfg;
  spike_config_init(&cfg);
  cfg.data_dir = argc > 1 ? argv[1] : "./data-embed";
  cfg.max_buyers = 1u << 16;
  cfg.max_keys = 1u << 10;
  cfg.max_reserved = 1u << 14;
  cfg.max_producers = 2;
  cfg.ring_size = 2048;
  int rc = spike_open(&g.engine, &cfg);
  if (rc != SPIKE_OK) {
    fprintf(stderr, "embed: %s: %s\n", spike_strerror(rc), spike_open_error());
    return 1;
  }
  if ((rc = spike_producer_open(g.engine, &g.producer)) != SPIKE_OK) {
    char why[256];
    spike_engine_error(g.engine, why, sizeof(why));
    fprintf(stderr, "embed: producer: %s\n", why);
    return 1;
  }
  if ((rc = uv_loop_init(&g.loop)) != 0 || (rc = spike_uv_attach(&g.loop, &g.adapter, g.producer)) != 0) {
    fprintf(stderr, "embed: libuv: %s\n", uv_strerror(rc));
    return 1;
  }
  if (create_event_if_missing(&g) != 0) return 1;
  uv_timer_init(&g.loop, &g.tick);
  g.tick.data = &g;
  uv_timer_start(&g.tick, on_tick, 0, 1);
  uv_signal_init(&g.loop, &g.sigint);
  g.sigint.data = &g;
  uv_signal_start(&g.sigint, on_sigint, SIGINT);

  uv_run(&g.loop, UV_RUN_DEFAULT);

  int bad = 0;
  if (uv_loop_close(&g.loop) != 0) {
    fprintf(stderr, "embed: handles left on the loop\n");
    bad = 1;
  }
  spike_event ev;
  spike_event_get(g.engine, EVENT_ID, &ev);
  printf("requests %" PRIu64 ": reserved %" PRIu64 ", paid %" PRIu64 ", cancelled %" PRIu64
         ", sold out %" PRIu64 ", limited %" PRIu64 ", busy %" PRIu64 "\n",
         g.sent, g.reserved, g.paid, g.cancelled, g.sold_out, g.limited, g.busy);
  printf("event %d: stock %" PRIu64 " available %" PRIu64 " reserved %" PRIu64 " sold %" PRIu64
         " (%s)\n",
         EVENT_ID, ev.stock_total, ev.available, ev.reserved, ev.sold,
         spike_event_state_name(ev.state));
  if (g.adapter.status != 0) {
    fprintf(stderr, "embed: the completion fd's poll failed: %s\n", uv_strerror(g.adapter.status));
    bad = 1;
  }
  if (ev.available + ev.reserved + ev.sold != ev.stock_total || ev.sold < g.paid) {
    fprintf(stderr, "embed: counters do not balance\n");
    bad = 1;
  }
  if (spike_producer_close(g.producer) != SPIKE_OK || spike_close(g.engine) != SPIKE_OK) {
    fprintf(stderr, "embed: close failed\n");
    bad = 1;
  }
  return bad;
}

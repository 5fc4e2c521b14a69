/*
 * clash.c -- an embedder whose own functions share names with libspike's
 * modules (recover, store_open, log_line), as a gateway's might. Built by
 * tests/test_exports.sh against the installed libspike, shared and static:
 * it must link, libspike must never call the embedder's functions, and an
 * event sold before a restart must be recovered after it.
 *
 *   clash DATA_DIR          prints one line; exit 0 when all of that holds
 */
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spike.h"

#define EVENT_ID 7
#define STOCK 10
#define USER_ID 42

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "clash: %s:%d: %s\n", __FILE__, __LINE__, #cond);                            \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

/* The embedder's own functions: same names as libspike's modules, its own
 * meaning ("nothing to recover", "opened"). Each call counts; libspike
 * calling one would show here. */
static int own_calls;
int recover(void) {
  own_calls++;
  return 0;
}
int store_open(const char *what) {
  own_calls++;
  return what != NULL ? 0 : -1;
}
void log_line(const char *msg) { own_calls += msg != NULL; }

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int done;
static void on_done(spike_op *op) {
  (void)op;
  done++;
}

/* Finish a submission the way a host would: poll the completion fd and
 * drain, for at most 10 s. Returns the op's status. */
static int settle(spike_producer *p, spike_op *op, int rc) {
  if (rc != SPIKE_PENDING) return rc;
  done = 0;
  for (int i = 0; i < 1000 && !done; i++) {
    struct pollfd pfd = {spike_producer_fd(p), POLLIN, 0};
    poll(&pfd, 1, 10);
    spike_producer_drain(p);
  }
  CHECK(done == 1);
  return op->status;
}

static spike_engine *open_engine(const spike_config *cfg) {
  spike_engine *e = NULL;
  int rc = spike_open(&e, cfg);
  if (rc != SPIKE_OK) {
    fprintf(stderr, "clash: spike_open: %s: %s\n", spike_strerror(rc), spike_open_error());
    exit(1);
  }
  return e;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: clash DATA_DIR\n");
    return 2;
  }
  spike_set_log_level(2);
  spike_config cfg;
  spike_config_init(&cfg);
  cfg.data_dir = argv[1];
  cfg.map_size_bytes = 16u << 20;
  cfg.max_events = 16;
  cfg.max_buyers = 1024;
  cfg.max_keys = 1024;
  cfg.max_reserved = 1024;
  cfg.max_producers = 2;
  cfg.ring_size = 64;

  /* First run: create an event, reserve one unit and pay for it. */
  spike_engine *e = open_engine(&cfg);
  spike_producer *p = NULL;
  CHECK(spike_producer_open(e, &p) == SPIKE_OK);
  spike_event_spec spec;
  memset(&spec, 0, sizeof(spec));
  spec.id = EVENT_ID;
  spec.name = "clash sale";
  spec.name_len = strlen(spec.name);
  spec.stock = STOCK;
  spec.price = 500;
  spec.start_at = wall_ms() - 60000;
  spec.end_at = wall_ms() + 3600000;
  spec.per_user_limit = 1;
  spec.pay_timeout_s = 900;
  spike_op op;
  memset(&op, 0, sizeof(op));
  CHECK(settle(p, &op, spike_event_create(p, &op, &spec, on_done)) == SPIKE_OK);
  CHECK(settle(p, &op, spike_reserve(p, &op, EVENT_ID, USER_ID, 1, NULL, 0, on_done)) == SPIKE_OK);
  uint64_t order_id = op.r.order.id;
  CHECK(settle(p, &op, spike_pay(p, &op, order_id, USER_ID, "pay-1", 5, on_done)) == SPIKE_OK);
  CHECK(spike_producer_close(p) == SPIKE_OK);
  CHECK(spike_close(e) == SPIKE_OK);

  /* Second run: recovery rebuilds the event and the order from LMDB. */
  e = open_engine(&cfg);
  spike_event ev;
  int rc = spike_event_get(e, EVENT_ID, &ev);
  if (rc != SPIKE_OK) {
    fprintf(stderr, "clash: event %d not recovered: %s\n", EVENT_ID, spike_strerror(rc));
    return 1;
  }
  CHECK(ev.stock_total == STOCK && ev.sold == 1 && ev.available == STOCK - 1);
  CHECK(spike_producer_open(e, &p) == SPIKE_OK);
  spike_order o;
  CHECK(spike_order_get(p, order_id, &o) == SPIKE_OK);
  CHECK(o.state == SPIKE_ORDER_PAID && o.event_id == EVENT_ID);
  CHECK(spike_producer_close(p) == SPIKE_OK);
  CHECK(spike_close(e) == SPIKE_OK);

  /* libspike never called the embedder's functions; they are still its own. */
  CHECK(own_calls == 0);
  CHECK(recover() == 0 && store_open("x") == 0);
  log_line("x");
  CHECK(own_calls == 3);
  printf("event %d recovered: %" PRIu64 " sold, %" PRIu64 " available\n", EVENT_ID, ev.sold,
         ev.available);
  return 0;
}

/*
 * engine_util.h -- helpers shared by the tests that drive libspike: open an
 * engine on a fresh directory, create events, and wait for an op's callback
 * the way a host would (poll the completion fd, then drain).
 */
#ifndef SPIKE_TEST_ENGINE_UTIL_H
#define SPIKE_TEST_ENGINE_UTIL_H

#include <poll.h>
#include <string.h>
#include <time.h>

#include "spike.h"
#include "test.h"

static inline int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Callback: count completions in the int that op->data points to. */
static inline void count_cb(spike_op *op) { (*(int *)op->data)++; }

/* Poll and drain until *counter reaches target (or 10 s pass: abort). */
static inline void wait_count(spike_producer *p, int *counter, int target) {
  int64_t deadline = test_now_ms() + 10000;
  while (*counter < target) {
    struct pollfd pfd = {spike_producer_fd(p), POLLIN, 0};
    poll(&pfd, 1, 100);
    spike_producer_drain(p);
    if (test_now_ms() > deadline) {
      fprintf(stderr, "wait_count: %d of %d completions after 10 s\n", *counter, target);
      abort();
    }
  }
}

/* Finish a submission: wait if it is pending; return the op's status. */
static inline int settle(spike_producer *p, spike_op *op, int rc) {
  if (rc != SPIKE_PENDING) return rc;
  int n = 0;
  op->data = &n;
  wait_count(p, &n, 1);
  return op->status;
}

static inline spike_event_spec spec_default(uint64_t id, uint64_t stock) {
  spike_event_spec s;
  memset(&s, 0, sizeof(s));
  s.id = id;
  s.name = "test sale";
  s.name_len = strlen(s.name);
  s.stock = stock;
  s.price = 1999;
  s.start_at = wall_ms() - 60000;
  s.end_at = wall_ms() + 3600000;
  s.per_user_limit = 1;
  s.pay_timeout_s = 900;
  return s;
}

static inline int create_event(spike_producer *p, const spike_event_spec *s) {
  spike_op op;
  return settle(p, &op, spike_event_create(p, &op, s, count_cb));
}

/* A producer on e and an event (id, stock units, per-user limit) made
 * through it: how most cases begin. */
static inline spike_producer *producer_with_event(spike_engine *e, uint64_t id, uint64_t stock,
                                                  uint32_t per_user_limit) {
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = spec_default(id, stock);
  s.per_user_limit = per_user_limit;
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  return p;
}

static inline spike_engine *open_engine(spike_config *cfg) {
  spike_engine *e = NULL;
  int rc = spike_open(&e, cfg);
  if (rc != SPIKE_OK) {
    fprintf(stderr, "spike_open: %s: %s\n", spike_strerror(rc), spike_open_error());
    abort();
  }
  return e;
}

/* A small, fast configuration on a fresh directory. */
static inline void small_config(spike_config *cfg, const char *tag) {
  spike_config_init(cfg);
  cfg->data_dir = test_tmpdir(tag);
  cfg->map_size_bytes = 64u << 20;
  cfg->max_events = 64;
  cfg->max_buyers = 1u << 16;
  cfg->max_keys = 1u << 16;
  cfg->max_reserved = 1u << 16;
  cfg->max_producers = 8;
  cfg->ring_size = 1024;
}

#endif /* SPIKE_TEST_ENGINE_UTIL_H */

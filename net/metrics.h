/*
 * metrics.h -- Prometheus text exposition. Each loop thread owns one shard
 * and is its only writer, so counting a request is plain loads and stores
 * (relaxed atomics, no locked instruction); a scrape sums the shards.
 *
 * Names follow the Prometheus naming guide (and pass `promtool check
 * metrics`): the spike_ prefix, base units in the name (_seconds, _bytes),
 * _total on counters and only on them. Labels mean one thing everywhere:
 * route (router_label), code (the HTTP status), api_code (the contract's
 * code), reason, table, event.
 */
#ifndef SPIKE_METRICS_H
#define SPIKE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "json.h"
#include "router.h"
#include "spike.h"

#define METRIC_LAT_BUCKETS 16
#define METRIC_TURN_BUCKETS 14
#define METRIC_STATUSES 16 /* 15 known HTTP statuses and "other" */
/* the contract's error codes, in SPIKE_ERRNO_MAP order */
#define METRIC_ONE_(name, code, http, msg) +1
#define METRIC_CODES (0 SPIKE_ERRNO_MAP(METRIC_ONE_))

/* Why a request was refused at a bound, 503 or 507 (a full table):
 * XX(label, text found in the answer's detail). Every 503 and 507 spiked
 * sends is counted under one of these. */
#define METRIC_BUSY_REASONS(XX)                                               \
  XX(commit_queue, "commit queue full")                                      \
  XX(inflight, "too many operations in flight")                              \
  XX(reservations, "reservation table full")                                 \
  XX(buyers, "buyer table full")                                             \
  XX(users, "user table full")                                               \
  XX(keys, "idempotency key table full")                                     \
  XX(events, "event table full")                                             \
  XX(feed_waiters, "too many parked feed requests")                          \
  XX(key_in_progress, "in progress")                                         \
  XX(order_in_flight, "still on its way")                                    \
  XX(connections, "connection limit")                                        \
  XX(backup_running, "a backup is already running")                          \
  XX(not_ready, NULL) /* the readiness probes' own 503 */                    \
  XX(other, NULL)

typedef enum metric_busy {
#define XX(label, text) MB_##label,
  METRIC_BUSY_REASONS(XX)
#undef XX
  MB_COUNT
} metric_busy;

typedef struct metrics {
  _Atomic uint64_t lat[H_COUNT][METRIC_STATUSES][METRIC_LAT_BUCKETS + 1];
  _Atomic uint64_t lat_sum_ns[H_COUNT][METRIC_STATUSES];
  _Atomic uint64_t errors[METRIC_CODES];
  _Atomic uint64_t busy[MB_COUNT];
  _Atomic int64_t connections, lingering;
  _Atomic uint64_t accepted, refused, timeouts, lingered;
  _Atomic uint64_t log_lines, log_dropped; /* the access log */
  _Atomic uint64_t turn[METRIC_TURN_BUCKETS + 1]; /* its loop's turns by busy time */
  _Atomic uint64_t turn_sum_ns;  /* their sum: the loop's busy time (both metrics) */
  _Atomic uint32_t inflight;     /* its producer's ops in flight at its last turn's end */
} metrics;

/* The reason a 503 is counted under: h is the route, detail the answer's
 * detail text (NULL when none). */
metric_busy metrics_busy_reason(handler h, const char *detail);

/* Owner thread only. status: the spike status the request ended with;
 * busy: its 503 or 507 reason (ignored unless status is SPIKE_EBUSY or
 * SPIKE_EFULL). */
void metrics_request(metrics *m, handler h, int http, int status, metric_busy busy, uint64_t ns);
/* Owner thread only: one loop turn that kept the thread busy for ns (its
 * time between two waits for events). */
void metrics_turn(metrics *m, uint64_t ns);
/* Owner thread only: add delta to a counter or gauge of its shard. */
void metrics_add(_Atomic uint64_t *c, uint64_t delta);
void metrics_gauge_add(_Atomic int64_t *g, int64_t delta);

/* The HTTP status counted at status index s (0..METRIC_STATUSES-1); 0 for
 * the last index, "other". */
int metrics_status_of(int s);
/* The upper bound, in seconds, of latency bucket k (0..METRIC_LAT_BUCKETS-1). */
double metrics_lat_bucket_s(int k);

/* What one scrape shows. */
/* Backups made through the admin route: api.c counts, any loop thread. */
typedef struct metrics_backups {
  _Atomic uint64_t ok, failed, busy; /* answered 201; failed; refused, one running */
  _Atomic int running;               /* 1 while one runs: the route's one-at-a-time guard */
  _Atomic uint64_t last_ok_at_ms, last_duration_ms, last_bytes, last_seq; /* the last 201 */
} metrics_backups;

typedef struct metrics_view {
  metrics *const *shards;
  uint32_t nshards;
  spike_engine *e;
  spike_event *events;         /* scratch for max_events spike_events */
  uint32_t max_events;
  const spike_feed_info *feed; /* NULL when it could not be read */
  int ready_status;            /* SPIKE_OK, or why readiness is 503: */
  const char *ready_why;       /* its text */
  int draining;
  int access_log;              /* an access log is configured */
  uint64_t access_log_lost;    /* its lines a write refused */
  uint64_t log_lost;           /* log lines a write refused */
  const metrics_backups *backups;
  uint32_t inflight_capacity;  /* a loop's bound on ops in flight (--ring-size) */
} metrics_view;

/* Render every metric: the shards' HTTP metrics, the engine's statistics,
 * per-event gauges, the process and the build. */
void metrics_render(jbuf *out, const metrics_view *v);

#endif /* SPIKE_METRICS_H */

/*
 * metrics.h -- Prometheus text exposition. Each loop thread owns one shard
 * and is its only writer, so counting a request is plain loads and stores
 * (relaxed atomics, no locked instruction); a scrape sums the shards.
 */
#ifndef SPIKE_METRICS_H
#define SPIKE_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#include "json.h"
#include "router.h"
#include "spike.h"

#define METRIC_LAT_BUCKETS 16
#define METRIC_STATUSES 15 /* 14 known HTTP statuses and "other" */
/* the contract's error codes, in SPIKE_ERRNO_MAP order */
#define METRIC_ONE_(name, code, http, msg) +1
#define METRIC_CODES (0 SPIKE_ERRNO_MAP(METRIC_ONE_))

typedef struct metrics {
  _Atomic uint64_t lat[H_COUNT][METRIC_STATUSES][METRIC_LAT_BUCKETS + 1];
  _Atomic uint64_t lat_sum_ns[H_COUNT][METRIC_STATUSES];
  _Atomic uint64_t errors[METRIC_CODES];
  _Atomic int64_t connections, lingering;
  _Atomic uint64_t accepted, refused, timeouts, lingered;
} metrics;

/* Owner thread only. status: the spike status the request ended with. */
void metrics_request(metrics *m, handler h, int http, int status, uint64_t ns);
/* Owner thread only: add delta to a counter or gauge of its shard. */
void metrics_add(_Atomic uint64_t *c, uint64_t delta);
void metrics_gauge_add(_Atomic int64_t *g, int64_t delta);

/* Render every metric: the shards' HTTP metrics, the engine's statistics
 * and per-event gauges. events: scratch for max_events spike_events. */
void metrics_render(jbuf *out, metrics *const *shards, uint32_t nshards, spike_engine *e,
                    spike_event *events, uint32_t max_events, int ready);

#endif /* SPIKE_METRICS_H */

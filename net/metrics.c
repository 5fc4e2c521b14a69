/*
 * metrics.c -- counters and histograms in the Prometheus text format
 * (version 0.0.4): counters end in _total, durations are histograms in
 * seconds with cumulative le buckets, a HELP and TYPE line per family.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const double lat_bucket_s[METRIC_LAT_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   10};
static const int statuses[METRIC_STATUSES - 1] = {200, 201, 400, 401, 403, 404, 405,
                                                  409, 413, 429, 431, 500, 503, 507};
static const int codes[METRIC_CODES] = {
#define XX(name, code, http, msg) code,
    SPIKE_ERRNO_MAP(XX)
#undef XX
};

void metrics_add(_Atomic uint64_t *c, uint64_t delta) {
  /* relaxed load and store: this thread is the only writer; scrapes read. */
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + delta,
                        memory_order_relaxed);
}

void metrics_gauge_add(_Atomic int64_t *g, int64_t delta) {
  /* relaxed: as metrics_add. */
  atomic_store_explicit(g, atomic_load_explicit(g, memory_order_relaxed) + delta,
                        memory_order_relaxed);
}

static int status_index(int http) {
  for (int i = 0; i < METRIC_STATUSES - 1; i++)
    if (statuses[i] == http) return i;
  return METRIC_STATUSES - 1;
}

void metrics_request(metrics *m, handler h, int http, int status, uint64_t ns) {
  int s = status_index(http);
  double sec = (double)ns / 1e9;
  int b = 0;
  while (b < METRIC_LAT_BUCKETS && sec > lat_bucket_s[b]) b++;
  metrics_add(&m->lat[h][s][b], 1);
  metrics_add(&m->lat_sum_ns[h][s], ns);
  if (status < 0)
    for (int i = 0; i < METRIC_CODES; i++)
      if (codes[i] == -status) {
        metrics_add(&m->errors[i], 1);
        break;
      }
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void line(jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(jbuf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
  va_end(ap);
  if (n > 0) jb_raw(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

static void family(jbuf *b, const char *name, const char *type, const char *help) {
  line(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void http_metrics(jbuf *b, metrics *const *sh, uint32_t n) {
  family(b, "spike_http_request_duration_seconds", "histogram",
         "HTTP request latency by route and status code.");
  for (int h = 0; h < H_COUNT; h++)
    for (int s = 0; s < METRIC_STATUSES; s++) {
      uint64_t cum = 0, counts[METRIC_LAT_BUCKETS + 1], sum_ns = 0;
      for (int k = 0; k <= METRIC_LAT_BUCKETS; k++) {
        counts[k] = 0;
        for (uint32_t i = 0; i < n; i++) counts[k] += LOAD(sh[i]->lat[h][s][k]);
      }
      for (uint32_t i = 0; i < n; i++) sum_ns += LOAD(sh[i]->lat_sum_ns[h][s]);
      uint64_t total = 0;
      for (int k = 0; k <= METRIC_LAT_BUCKETS; k++) total += counts[k];
      if (total == 0) continue;
      char code[8];
      snprintf(code, sizeof(code), "%d", s < METRIC_STATUSES - 1 ? statuses[s] : 0);
      const char *route = router_label((handler)h);
      for (int k = 0; k < METRIC_LAT_BUCKETS; k++) {
        cum += counts[k];
        line(b, "spike_http_request_duration_seconds_bucket{route=\"%s\",code=\"%s\",le=\"%g\"} %llu\n",
             route, code, lat_bucket_s[k], (unsigned long long)cum);
      }
      line(b, "spike_http_request_duration_seconds_bucket{route=\"%s\",code=\"%s\",le=\"+Inf\"} %llu\n",
           route, code, (unsigned long long)total);
      line(b, "spike_http_request_duration_seconds_sum{route=\"%s\",code=\"%s\"} %.9f\n", route,
           code, (double)sum_ns / 1e9);
      line(b, "spike_http_request_duration_seconds_count{route=\"%s\",code=\"%s\"} %llu\n", route,
           code, (unsigned long long)total);
    }
  family(b, "spike_api_errors_total", "counter", "Error answers by contract code.");
  for (int c = 0; c < METRIC_CODES; c++) {
    uint64_t v = 0;
    for (uint32_t i = 0; i < n; i++) v += LOAD(sh[i]->errors[c]);
    line(b, "spike_api_errors_total{code=\"%d\"} %llu\n", codes[c], (unsigned long long)v);
  }
  int64_t conns = 0, lingering = 0;
  uint64_t acc = 0, ref = 0, to = 0, lingered = 0;
  for (uint32_t i = 0; i < n; i++) {
    conns += LOAD(sh[i]->connections);
    lingering += LOAD(sh[i]->lingering);
    acc += LOAD(sh[i]->accepted);
    ref += LOAD(sh[i]->refused);
    to += LOAD(sh[i]->timeouts);
    lingered += LOAD(sh[i]->lingered);
  }
  family(b, "spike_connections", "gauge", "Open client connections.");
  line(b, "spike_connections %lld\n", (long long)conns);
  family(b, "spike_connections_accepted_total", "counter", "Connections accepted.");
  line(b, "spike_connections_accepted_total %llu\n", (unsigned long long)acc);
  family(b, "spike_connections_refused_total", "counter",
         "Connections refused for the connection limit: a 503, or closed unanswered.");
  line(b, "spike_connections_refused_total %llu\n", (unsigned long long)ref);
  family(b, "spike_connection_timeouts_total", "counter",
         "Connections cut for a header, body or idle timeout.");
  line(b, "spike_connection_timeouts_total %llu\n", (unsigned long long)to);
  family(b, "spike_connections_lingering", "gauge",
         "Connections answered and closing: reading and discarding what the client still sends.");
  line(b, "spike_connections_lingering %lld\n", (long long)lingering);
  family(b, "spike_connections_lingered_total", "counter",
         "Connections closed by lingering close after an answer that ended them.");
  line(b, "spike_connections_lingered_total %llu\n", (unsigned long long)lingered);
}

/* A histogram without labels: counts per bucket (not cumulative) + +Inf. */
static void histogram(jbuf *b, const char *name, const char *help, const double *le, int n,
                      const uint64_t *counts, double sum) {
  family(b, name, "histogram", help);
  uint64_t cum = 0;
  for (int k = 0; k < n; k++) {
    cum += counts[k];
    line(b, "%s_bucket{le=\"%g\"} %llu\n", name, le[k], (unsigned long long)cum);
  }
  cum += counts[n];
  line(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cum);
  line(b, "%s_sum %.9g\n", name, sum);
  line(b, "%s_count %llu\n", name, (unsigned long long)cum);
}

static void engine_metrics(jbuf *b, spike_engine *e) {
  spike_stats st;
  spike_stats_get(e, &st);
  histogram(b, "spike_commit_duration_seconds",
            "Time of one LMDB commit (write and fsync) of a batch.", spike_commit_bucket_s,
            SPIKE_COMMIT_BUCKETS, st.commit_seconds_count, st.commit_seconds_sum);
  double batch_le[SPIKE_BATCH_BUCKETS];
  for (int k = 0; k < SPIKE_BATCH_BUCKETS; k++) batch_le[k] = spike_batch_bucket[k];
  histogram(b, "spike_commit_batch_size", "Operations per committed batch.", batch_le,
            SPIKE_BATCH_BUCKETS, st.batch_size_count, (double)st.batch_size_sum);
  family(b, "spike_commits_total", "counter", "Batches committed.");
  line(b, "spike_commits_total %llu\n", (unsigned long long)st.commits_total);
  family(b, "spike_commit_failures_total", "counter", "Batches whose commit failed.");
  line(b, "spike_commit_failures_total %llu\n", (unsigned long long)st.commit_failures_total);
  family(b, "spike_ops_committed_total", "counter", "Operations in committed batches.");
  line(b, "spike_ops_committed_total %llu\n", (unsigned long long)st.ops_committed_total);
  family(b, "spike_orders_expired_total", "counter", "Reservations expired unpaid.");
  line(b, "spike_orders_expired_total %llu\n", (unsigned long long)st.orders_expired_total);
  family(b, "spike_commit_queue_depth", "gauge", "Operations waiting in the commit rings.");
  line(b, "spike_commit_queue_depth %u\n", st.queue_depth);
  family(b, "spike_commit_queue_capacity", "gauge", "Slots in the commit rings.");
  line(b, "spike_commit_queue_capacity %u\n", st.queue_capacity);
  family(b, "spike_reservations_live", "gauge",
         "Reserved orders not yet paid, cancelled or expired (bounded by --max-reserved).");
  line(b, "spike_reservations_live %u\n", st.reservations_live);
  family(b, "spike_reservations_capacity", "gauge", "The bound on live reservations.");
  line(b, "spike_reservations_capacity %u\n", st.reservations_capacity);
  family(b, "spike_memory_acks_lost_total", "counter",
         "Reserves answered before their commit (--ack memory) whose batch failed.");
  line(b, "spike_memory_acks_lost_total %llu\n", (unsigned long long)st.acks_lost_total);
  family(b, "spike_table_used", "gauge", "Entries used in the engine's fixed tables.");
  line(b, "spike_table_used{table=\"buyers\"} %u\n", st.buyers_used);
  line(b, "spike_table_used{table=\"keys\"} %u\n", st.keys_used);
  line(b, "spike_table_used{table=\"users\"} %u\n", st.users_used);
  family(b, "spike_table_capacity", "gauge", "Slots in the engine's fixed tables.");
  line(b, "spike_table_capacity{table=\"buyers\"} %u\n", st.buyers_capacity);
  line(b, "spike_table_capacity{table=\"keys\"} %u\n", st.keys_capacity);
  line(b, "spike_table_capacity{table=\"users\"} %u\n", st.users_capacity);
  family(b, "spike_feed_seq", "gauge", "Newest durable change-feed sequence number.");
  line(b, "spike_feed_seq %llu\n", (unsigned long long)st.feed_seq);
}

static void event_metrics(jbuf *b, spike_engine *e, spike_event *ev, uint32_t max) {
  uint32_t n = 0;
  spike_event_list(e, 0, ev, max, &n, NULL);
  static const char *const names[] = {"spike_event_available", "spike_event_reserved",
                                      "spike_event_sold", "spike_event_stock_total"};
  static const char *const helps[] = {"Units available.", "Units reserved, awaiting payment.",
                                      "Units sold (paid).", "Initial stock plus restocks."};
  for (int f = 0; f < 4; f++) {
    family(b, names[f], "gauge", helps[f]);
    for (uint32_t i = 0; i < n; i++) {
      uint64_t v = f == 0 ? ev[i].available : f == 1 ? ev[i].reserved
                                             : f == 2 ? ev[i].sold
                                                      : ev[i].stock_total;
      line(b, "%s{event=\"%llu\"} %llu\n", names[f], (unsigned long long)ev[i].id,
           (unsigned long long)v);
    }
  }
}

void metrics_render(jbuf *out, metrics *const *shards, uint32_t nshards, spike_engine *e,
                    spike_event *events, uint32_t max_events, int ready) {
  http_metrics(out, shards, nshards);
  engine_metrics(out, e);
  event_metrics(out, e, events, max_events);
  family(out, "spike_ready", "gauge", "1 when /healthz/ready answers 200.");
  line(out, "spike_ready %d\n", ready ? 1 : 0);
}

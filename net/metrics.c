/*
 * metrics.c -- counters and histograms in the Prometheus text format
 * (version 0.0.4): counters end in _total, durations are histograms in
 * seconds with cumulative le buckets, a HELP and TYPE line per family.
 * The process_* families are the ones Prometheus client libraries export,
 * read from /proc at scrape time.
 */
#include "metrics.h"

#include <dirent.h>
#include <fcntl.h>
#include <llhttp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

static const double lat_bucket_s[METRIC_LAT_BUCKETS] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,   10};
static const int statuses[METRIC_STATUSES - 1] = {200, 201, 400, 401, 403, 404, 405, 409,
                                                  413, 429, 431, 500, 503, 505, 507};
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

static const char *const busy_text[MB_COUNT] = {
#define XX(label, text) text,
    METRIC_BUSY_REASONS(XX)
#undef XX
};
static const char *const busy_label[MB_COUNT] = {
#define XX(label, text) #label,
    METRIC_BUSY_REASONS(XX)
#undef XX
};

int metrics_status_of(int s) {
  return s >= 0 && s < METRIC_STATUSES - 1 ? statuses[s] : 0;
}

double metrics_lat_bucket_s(int k) {
  return k >= 0 && k < METRIC_LAT_BUCKETS ? lat_bucket_s[k] : lat_bucket_s[METRIC_LAT_BUCKETS - 1];
}

metric_busy metrics_busy_reason(handler h, const char *detail) {
  if (h == H_READY) return MB_not_ready;
  for (int i = 0; detail != NULL && i < MB_COUNT; i++)
    if (busy_text[i] != NULL && strstr(detail, busy_text[i]) != NULL) return (metric_busy)i;
  return MB_other;
}

/* Loop turns are mostly tens of microseconds; the tail is what matters. */
static const double turn_bucket_s[METRIC_TURN_BUCKETS] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
    0.0025,  0.005,    0.01,    0.025,  0.05,    0.1,    1};

/* The bucket of n upper bounds that ns falls in; n for past the last. */
static int bucket(const double *bounds, int n, uint64_t ns) {
  double sec = (double)ns / 1e9;
  int b = 0;
  while (b < n && sec > bounds[b])
    b++;
  return b;
}

void metrics_request(metrics *m, handler h, int http, int status, metric_busy busy, uint64_t ns) {
  int s = status_index(http);
  metrics_add(&m->lat[h][s][bucket(lat_bucket_s, METRIC_LAT_BUCKETS, ns)], 1);
  metrics_add(&m->lat_sum_ns[h][s], ns);
  if (status < 0)
    for (int i = 0; i < METRIC_CODES; i++)
      if (codes[i] == -status) {
        metrics_add(&m->errors[i], 1);
        break;
      }
  if ((status == SPIKE_EBUSY || status == SPIKE_EFULL) && (unsigned)busy < MB_COUNT)
    metrics_add(&m->busy[busy], 1);
}

void metrics_turn(metrics *m, uint64_t ns) {
  metrics_add(&m->turn[bucket(turn_bucket_s, METRIC_TURN_BUCKETS, ns)], 1);
  metrics_add(&m->turn_sum_ns, ns);
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

static void http_metrics(jbuf *b, metrics *const *sh, uint32_t n, int access_log, uint64_t lost,
                         uint32_t inflight_capacity) {
  family(b, "spike_http_request_duration_seconds", "histogram",
         "HTTP request latency by route and status code.");
  for (int h = 0; h < H_COUNT; h++)
    for (int s = 0; s < METRIC_STATUSES; s++) {
      uint64_t cum = 0, counts[METRIC_LAT_BUCKETS + 1], sum_ns = 0;
      for (int k = 0; k <= METRIC_LAT_BUCKETS; k++) {
        counts[k] = 0;
        for (uint32_t i = 0; i < n; i++)
          counts[k] += LOAD(sh[i]->lat[h][s][k]);
      }
      for (uint32_t i = 0; i < n; i++)
        sum_ns += LOAD(sh[i]->lat_sum_ns[h][s]);
      uint64_t total = 0;
      for (int k = 0; k <= METRIC_LAT_BUCKETS; k++)
        total += counts[k];
      if (total == 0) continue;
      char code[8];
      if (s < METRIC_STATUSES - 1)
        snprintf(code, sizeof(code), "%d", statuses[s]);
      else
        snprintf(code, sizeof(code), "other");
      const char *route = router_label((handler)h);
      for (int k = 0; k < METRIC_LAT_BUCKETS; k++) {
        cum += counts[k];
        line(
            b,
            "spike_http_request_duration_seconds_bucket{route=\"%s\",code=\"%s\",le=\"%g\"} %llu\n",
            route, code, lat_bucket_s[k], (unsigned long long)cum);
      }
      line(
          b,
          "spike_http_request_duration_seconds_bucket{route=\"%s\",code=\"%s\",le=\"+Inf\"} %llu\n",
          route, code, (unsigned long long)total);
      line(b, "spike_http_request_duration_seconds_sum{route=\"%s\",code=\"%s\"} %.9f\n", route,
           code, (double)sum_ns / 1e9);
      line(b, "spike_http_request_duration_seconds_count{route=\"%s\",code=\"%s\"} %llu\n", route,
           code, (unsigned long long)total);
    }
  family(b, "spike_api_errors_total", "counter", "Error answers by contract code (api_code).");
  for (int c = 0; c < METRIC_CODES; c++) {
    uint64_t v = 0;
    for (uint32_t i = 0; i < n; i++)
      v += LOAD(sh[i]->errors[c]);
    line(b, "spike_api_errors_total{api_code=\"%d\"} %llu\n", codes[c], (unsigned long long)v);
  }
  family(b, "spike_http_overloaded_total", "counter",
         "Refusals at a bound by reason: 503 (50005) for a queue or limit, 507 (50006) for a full "
         "table.");
  for (int r = 0; r < MB_COUNT; r++) {
    uint64_t v = 0;
    for (uint32_t i = 0; i < n; i++)
      v += LOAD(sh[i]->busy[r]);
    line(b, "spike_http_overloaded_total{reason=\"%s\"} %llu\n", busy_label[r],
         (unsigned long long)v);
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
  family(b, "spike_loop_busy_seconds_total", "counter",
         "Wall time each HTTP loop thread spent outside its wait for events (time descheduled "
         "included: compare process_cpu_seconds_total); rate() is the loop's utilisation (1: "
         "saturated). Counted at the end of each turn.");
  for (uint32_t i = 0; i < n; i++)
    line(b, "spike_loop_busy_seconds_total{loop=\"%u\"} %.6f\n", i,
         (double)LOAD(sh[i]->turn_sum_ns) / 1e9);
  uint64_t turns[METRIC_TURN_BUCKETS + 1] = {0}, turn_ns = 0;
  for (uint32_t i = 0; i < n; i++) {
    for (int k = 0; k <= METRIC_TURN_BUCKETS; k++) turns[k] += LOAD(sh[i]->turn[k]);
    turn_ns += LOAD(sh[i]->turn_sum_ns);
  }
  histogram(b, "spike_loop_turn_seconds",
            "Loop turns, of every loop thread together, by the wall time each kept its thread "
            "from waiting for events (time descheduled included). A request that arrives during "
            "a turn waits for its end: a long tail here is latency every client shares.",
            turn_bucket_s, METRIC_TURN_BUCKETS, turns, (double)turn_ns / 1e9);
  family(b, "spike_http_inflight", "gauge",
         "Requests of each HTTP loop waiting for the engine (a commit, mostly), at the end of its "
         "last turn. At spike_http_inflight_capacity new ones are answered 503 (reason inflight).");
  for (uint32_t i = 0; i < n; i++)
    line(b, "spike_http_inflight{loop=\"%u\"} %u\n", i, (unsigned)LOAD(sh[i]->inflight));
  family(b, "spike_http_inflight_capacity", "gauge",
         "Each HTTP loop's bound on requests waiting for the engine (--ring-size).");
  line(b, "spike_http_inflight_capacity %u\n", inflight_capacity);
  family(b, "spike_connections", "gauge", "Open client connections.");
  line(b, "spike_connections %lld\n", (long long)conns);
  family(b, "spike_connections_accepted_total", "counter", "Connections accepted.");
  line(b, "spike_connections_accepted_total %llu\n", (unsigned long long)acc);
  family(b, "spike_connections_refused_total", "counter",
         "Connections refused for the connection limit: a 503, or closed unanswered (a probe "
         "answered past it is not one).");
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
  if (!access_log) return;
  uint64_t lines = 0, dropped = 0;
  for (uint32_t i = 0; i < n; i++) {
    lines += LOAD(sh[i]->log_lines);
    dropped += LOAD(sh[i]->log_dropped);
  }
  family(b, "spike_access_log_lines_total", "counter", "Access-log lines handed to its writer.");
  line(b, "spike_access_log_lines_total %llu\n", (unsigned long long)lines);
  family(b, "spike_access_log_dropped_total", "counter",
         "Access-log lines dropped because its writer was behind (every buffer full).");
  line(b, "spike_access_log_dropped_total %llu\n", (unsigned long long)dropped);
  family(b, "spike_access_log_lost_total", "counter",
         "Access-log lines handed to its writer that its file refused (a full disk).");
  line(b, "spike_access_log_lost_total %llu\n", (unsigned long long)lost);
}

static void engine_metrics(jbuf *b, spike_engine *e, uint32_t nevents, uint32_t max_events) {
  spike_stats st;
  spike_stats_get(e, &st);
  histogram(b, "spike_commit_duration_seconds",
            "Time of one LMDB commit (write and fsync) of a batch.", spike_commit_bucket_s,
            SPIKE_COMMIT_BUCKETS, st.commit_seconds_count, st.commit_seconds_sum);
  double batch_le[SPIKE_BATCH_BUCKETS];
  for (int k = 0; k < SPIKE_BATCH_BUCKETS; k++)
    batch_le[k] = spike_batch_bucket[k];
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
  family(b, "spike_feed_waiters", "gauge", "Feed long-polls parked now, waiting for a commit or wait_ms.");
  line(b, "spike_feed_waiters %u\n", st.feed_waiters);
  family(b, "spike_feed_waiters_capacity", "gauge", "The bound on parked feed long-polls; past it they are 503.");
  line(b, "spike_feed_waiters_capacity %u\n", st.feed_waiters_capacity);
  family(b, "spike_memory_acks_lost_total", "counter",
         "Reserves answered before their commit (--ack memory) whose batch failed.");
  line(b, "spike_memory_acks_lost_total %llu\n", (unsigned long long)st.acks_lost_total);
  family(b, "spike_table_used", "gauge", "Entries used in the engine's fixed tables.");
  line(b, "spike_table_used{table=\"buyers\"} %u\n", st.buyers_used);
  line(b, "spike_table_used{table=\"keys\"} %u\n", st.keys_used);
  line(b, "spike_table_used{table=\"users\"} %u\n", st.users_used);
  line(b, "spike_table_used{table=\"reservations\"} %u\n", st.reservations_live);
  line(b, "spike_table_used{table=\"events\"} %u\n", nevents);
  family(b, "spike_table_capacity", "gauge", "Slots in the engine's fixed tables.");
  line(b, "spike_table_capacity{table=\"buyers\"} %u\n", st.buyers_capacity);
  line(b, "spike_table_capacity{table=\"keys\"} %u\n", st.keys_capacity);
  line(b, "spike_table_capacity{table=\"users\"} %u\n", st.users_capacity);
  line(b, "spike_table_capacity{table=\"reservations\"} %u\n", st.reservations_capacity);
  line(b, "spike_table_capacity{table=\"events\"} %u\n", max_events);
  family(b, "spike_feed_seq", "gauge", "Newest durable change-feed sequence number (the head).");
  line(b, "spike_feed_seq %llu\n", (unsigned long long)st.feed_seq);
  family(b, "spike_store_map_size_bytes", "gauge", "The LMDB map size (--map-size, or grown).");
  line(b, "spike_store_map_size_bytes %llu\n", (unsigned long long)st.map_size_bytes);
  family(b, "spike_store_map_used_bytes", "gauge",
         "The LMDB map's high-water mark; commits fail (map full) when it reaches the size.");
  line(b, "spike_store_map_used_bytes %llu\n", (unsigned long long)st.map_used_bytes);
}

static void feed_metrics(jbuf *b, const spike_feed_info *f) {
  if (f == NULL) return;
  family(b, "spike_feed_first_seq", "gauge",
         "Oldest change-feed seq still kept (older ones were dropped by --feed-retain).");
  line(b, "spike_feed_first_seq %llu\n", (unsigned long long)f->first);
  family(b, "spike_feed_records", "gauge", "Change-feed records kept.");
  line(b, "spike_feed_records %llu\n", (unsigned long long)f->records);
  family(b, "spike_feed_size_bytes", "gauge", "Bytes of the LMDB pages the change feed takes.");
  line(b, "spike_feed_size_bytes %llu\n", (unsigned long long)f->bytes);
  family(b, "spike_store_info", "gauge",
         "The store's id (random at creation; the feed's answers carry it), as a label.");
  line(b, "spike_store_info{store_id=\"%016llx\"} 1\n", (unsigned long long)f->store_id);
}

/* An event that ended or was closed with no reservation left can no longer
 * change (but for a restock): its series end, so a store of many past
 * sales does not scrape one series per event per counter forever (outside
 * QA: 20,000 ended events, 80,008 series, 2.9 MB a scrape). */
static int finished(const spike_event *ev) {
  return (ev->state == SPIKE_EVENT_ENDED || ev->state == SPIKE_EVENT_CLOSED) && ev->reserved == 0;
}

static void event_metrics(jbuf *b, const spike_event *ev, uint32_t n) {
  static const char *const names[] = {"spike_event_available", "spike_event_reserved",
                                      "spike_event_sold", "spike_event_stock"};
  static const char *const helps[] = {"Units available.", "Units reserved, awaiting payment.",
                                      "Units sold (paid).", "Initial stock plus restocks."};
  for (int f = 0; f < 4; f++) {
    family(b, names[f], "gauge", helps[f]);
    for (uint32_t i = 0; i < n; i++) {
      if (finished(&ev[i])) continue;
      uint64_t v = f == 0   ? ev[i].available
                   : f == 1 ? ev[i].reserved
                   : f == 2 ? ev[i].sold
                            : ev[i].stock_total;
      line(b, "%s{event=\"%llu\"} %llu\n", names[f], (unsigned long long)ev[i].id,
           (unsigned long long)v);
    }
  }
}

/* process_*: what every Prometheus client library exports, from /proc. */
static void process_metrics(jbuf *b) {
  char buf[1024];
  FILE *f = fopen("/proc/self/stat", "r");
  size_t n = f != NULL ? fread(buf, 1, sizeof(buf) - 1, f) : 0;
  if (f != NULL) fclose(f);
  buf[n] = '\0';
  /* Fields after the command name, which may hold spaces: field 3 first. */
  const char *p = strrchr(buf, ')');
  unsigned long long field[52] = {0};
  for (int k = 3; p != NULL && k < 52; k++) {
    p = strchr(p + 1, ' ');
    if (p != NULL) field[k] = strtoull(p + 1, NULL, 10);
  }
  double tick = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
  unsigned long long boot = 0;
  if ((f = fopen("/proc/stat", "r")) != NULL) {
    while (fgets(buf, sizeof(buf), f) != NULL)
      if (strncmp(buf, "btime ", 6) == 0) boot = strtoull(buf + 6, NULL, 10);
    fclose(f);
  }
  uint64_t fds = 0;
  /* open + fdopendir, not opendir: TSan records a descriptor made by
   * open(), not by opendir(), and libuv closes sockets with a raw
   * syscall(SYS_close) it cannot see, so closedir() on a number a loop
   * thread's socket had is a false "data race" with that thread. */
  int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
  if (d == NULL && dfd >= 0) close(dfd);
  if (d != NULL) {
    for (struct dirent *de; (de = readdir(d)) != NULL;)
      if (de->d_name[0] != '.') fds++;
    closedir(d);
    fds--; /* the directory's own descriptor */
  }
  struct rlimit rl = {0, 0};
  getrlimit(RLIMIT_NOFILE, &rl);
  family(b, "process_cpu_seconds_total", "counter",
         "Total user and system CPU time spent in seconds.");
  line(b, "process_cpu_seconds_total %.2f\n", (double)(field[14] + field[15]) / tick);
  family(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  line(b, "process_resident_memory_bytes %.0f\n", (double)field[24] * page);
  family(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  line(b, "process_virtual_memory_bytes %llu\n", field[23]);
  family(b, "process_open_fds", "gauge", "Number of open file descriptors.");
  line(b, "process_open_fds %llu\n", (unsigned long long)fds);
  family(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
  line(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
  family(b, "process_start_time_seconds", "gauge",
         "Start time of the process since unix epoch in seconds.");
  line(b, "process_start_time_seconds %.2f\n", (double)boot + (double)field[22] / tick);
}

/* spike_ready, and which check holds it at 0. */
static void ready_metrics(jbuf *b, const metrics_view *v) {
  static const char *const reasons[] = {"draining", "storage_failed", "map_full", "disk_full",
                                        "commit_queue"};
  enum { N_REASONS = sizeof(reasons) / sizeof(reasons[0]) };
  int now = -1;
  const char *why = v->ready_why != NULL ? v->ready_why : "";
  if (v->draining)
    now = 0;
  else if (v->ready_status == SPIKE_ESTORAGE) /* full: served again by itself; failed: not */
    now = strncmp(why, "map full", 8) == 0                 ? 2
          : strncmp(why, "disk full: free space", 21) == 0 ? 3
                                                           : 1;
  else if (v->ready_status != SPIKE_OK)
    now = 4; /* the commit queue */
  family(b, "spike_ready", "gauge", "1 when /healthz/ready answers 200.");
  line(b, "spike_ready %d\n", now < 0 ? 1 : 0);
  family(b, "spike_not_ready", "gauge",
         "1 for the reason /healthz/ready answers 503 now (the first check that fails).");
  for (int i = 0; i < N_REASONS; i++)
    line(b, "spike_not_ready{reason=\"%s\"} %d\n", reasons[i], i == now ? 1 : 0);
}

/* The store's origin, and the backups asked of this process. */
static void backup_metrics(jbuf *b, const metrics_view *v) {
  spike_store_origin o;
  spike_store_origin_get(v->e, &o);
  if (o.restored_from != 0) {
    family(b, "spike_store_restored_info", "gauge",
           "This store was restored from a backup of store restored_from, whose feed it holds "
           "up to restored_seq. Always 1.");
    line(b, "spike_store_restored_info{restored_from=\"%016llx\",restored_seq=\"%llu\"} 1\n",
         (unsigned long long)o.restored_from, (unsigned long long)o.restored_seq);
  }
  const metrics_backups *k = v->backups;
  if (k == NULL) return;
  /* relaxed: counters read for a scrape. */
  family(b, "spike_backups_total", "counter",
         "Backups asked for through POST /api/v1/admin/backup, by result (busy: one was running).");
  line(b, "spike_backups_total{result=\"ok\"} %llu\n",
       (unsigned long long)atomic_load_explicit(&k->ok, memory_order_relaxed));
  line(b, "spike_backups_total{result=\"failed\"} %llu\n",
       (unsigned long long)atomic_load_explicit(&k->failed, memory_order_relaxed));
  line(b, "spike_backups_total{result=\"busy\"} %llu\n",
       (unsigned long long)atomic_load_explicit(&k->busy, memory_order_relaxed));
  family(b, "spike_backup_running", "gauge", "1 while a backup runs.");
  line(b, "spike_backup_running %d\n", atomic_load_explicit(&k->running, memory_order_relaxed));
  uint64_t at = atomic_load_explicit(&k->last_ok_at_ms, memory_order_relaxed);
  if (at == 0) return; /* no backup has succeeded yet: no last one to describe */
  family(b, "spike_backup_last_success_timestamp_seconds", "gauge",
         "When the last successful backup's copy began (unix seconds).");
  line(b, "spike_backup_last_success_timestamp_seconds %.3f\n", (double)at / 1000.0);
  family(b, "spike_backup_last_duration_seconds", "gauge", "How long the last successful backup took.");
  line(b, "spike_backup_last_duration_seconds %.3f\n",
       (double)atomic_load_explicit(&k->last_duration_ms, memory_order_relaxed) / 1000.0);
  family(b, "spike_backup_last_size_bytes", "gauge", "The last successful backup's data file.");
  line(b, "spike_backup_last_size_bytes %llu\n",
       (unsigned long long)atomic_load_explicit(&k->last_bytes, memory_order_relaxed));
  family(b, "spike_backup_last_seq", "gauge", "The newest feed seq the last successful backup holds.");
  line(b, "spike_backup_last_seq %llu\n",
       (unsigned long long)atomic_load_explicit(&k->last_seq, memory_order_relaxed));
}

static void build_metrics(jbuf *b) {
  family(b, "spike_build_info", "gauge",
         "The build: spike's version and its libraries'. Always 1.");
  line(b, "spike_build_info{version=\"%s\",libuv=\"%s\",llhttp=\"%d.%d.%d\"} 1\n", spike_version(),
       uv_version_string(), LLHTTP_VERSION_MAJOR, LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH);
}

void metrics_render(jbuf *out, const metrics_view *v) {
  uint32_t nevents = 0;
  spike_event_list(v->e, 0, v->events, v->max_events, &nevents, NULL);
  uint32_t shown = nevents < v->max_events ? nevents : v->max_events;
  http_metrics(out, v->shards, v->nshards, v->access_log, v->access_log_lost, v->inflight_capacity);
  family(out, "spike_log_lines_lost_total", "counter",
         "Log lines a write refused (a full disk under --log-file): lost, since nowhere can say so.");
  line(out, "spike_log_lines_lost_total %llu\n", (unsigned long long)v->log_lost);
  engine_metrics(out, v->e, nevents, v->max_events);
  feed_metrics(out, v->feed);
  backup_metrics(out, v);
  event_metrics(out, v->events, shown);
  ready_metrics(out, v);
  process_metrics(out);
  build_metrics(out);
}

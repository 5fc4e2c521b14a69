/*
 * stats.c -- a per-second history for the dashboard, kept by a thread of
 * its own so the request path does nothing new.
 *
 * Once a second the thread sums the loops' metrics shards (relaxed loads,
 * as a /metrics scrape does), reads spike_stats and the first
 * STATS_EVENTS_MAX events, and stores what changed since the previous
 * second: answers by HTTP status, new orders (reserve answers 201), the
 * reserve route's latency quantiles and the commit time quantiles, both
 * estimated from the difference of two histogram snapshots the way
 * Prometheus' histogram_quantile does (linear inside the bucket). The
 * ring's lock is held only to copy one sample in or to render the answer.
 */
#include "stats.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

typedef struct stats_event {
  uint64_t id, taken; /* taken: reserved + sold */
} stats_event;

typedef struct sample {
  int64_t t; /* unix seconds */
  uint32_t answers[METRIC_STATUSES];
  uint32_t orders;                    /* reserve answered 201 */
  uint32_t commits;                   /* batches committed */
  float lat_p50_ms, lat_p99_ms;       /* reserve route; < 0: no request */
  float commit_p50_ms, commit_p99_ms; /* < 0: no commit */
  uint32_t nev;
  stats_event ev[STATS_EVENTS_MAX];
} sample;

/* Cumulative counters as read last time. */
typedef struct totals {
  uint64_t answers[METRIC_STATUSES];
  uint64_t orders;
  uint64_t lat[METRIC_LAT_BUCKETS + 1];
  uint64_t commits;
  uint64_t commit[SPIKE_COMMIT_BUCKETS + 1];
} totals;

struct stats {
  spike_engine *e;
  const metrics *shards[SPIKE_PRODUCERS_MAX];
  uint32_t nshards;
  totals prev;                           /* the sampler's own */
  spike_event scratch[STATS_EVENTS_MAX]; /* the sampler's own */
  pthread_mutex_t lock;                  /* guards what follows */
  sample ring[STATS_HISTORY_S];
  uint32_t head, filled; /* next slot; samples held */
  pthread_cond_t wake;
  int stop;
  int started; /* the thread runs */
  pthread_t thread;
};

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static void read_totals(stats *s, totals *t) {
  memset(t, 0, sizeof(*t));
  int created = -1;
  for (int k = 0; k < METRIC_STATUSES; k++)
    if (metrics_status_of(k) == 201) created = k;
  for (uint32_t i = 0; i < s->nshards; i++) {
    const metrics *m = s->shards[i];
    for (int h = 0; h < H_COUNT; h++) {
      if (h == H_DASHBOARD || h == H_ADMIN_STATS) continue; /* the page's own */
      for (int c = 0; c < METRIC_STATUSES; c++)
        for (int k = 0; k <= METRIC_LAT_BUCKETS; k++) {
          /* relaxed: counters with one writer each; a sample needs no order. */
          uint64_t v = LOAD(m->lat[h][c][k]);
          t->answers[c] += v;
          if (h == H_RESERVE) {
            t->lat[k] += v;
            if (c == created) t->orders += v;
          }
        }
    }
  }
  spike_stats st;
  spike_stats_get(s->e, &st);
  t->commits = st.commits_total;
  memcpy(t->commit, st.commit_seconds_count, sizeof(t->commit));
}

/* The q-quantile of the observations counted in d (nb bounded buckets and
 * +Inf), in ms; -1 when there are none. */
static float quantile_ms(const uint64_t *d, const double *le, int nb, double q) {
  uint64_t total = 0;
  for (int k = 0; k <= nb; k++)
    total += d[k];
  if (total == 0) return -1;
  double rank = q * (double)total, cum = 0;
  for (int k = 0; k <= nb; k++) {
    if (d[k] > 0 && cum + (double)d[k] >= rank) {
      if (k == nb) return (float)(le[nb - 1] * 1e3); /* past the last bound */
      double lo = k > 0 ? le[k - 1] : 0;
      return (float)((lo + (le[k] - lo) * (rank - cum) / (double)d[k]) * 1e3);
    }
    cum += (double)d[k];
  }
  return (float)(le[nb - 1] * 1e3);
}

void stats_sample(stats *s) {
  totals now;
  read_totals(s, &now);
  sample x;
  memset(&x, 0, sizeof(x));
  x.t = (int64_t)time(NULL);
  for (int c = 0; c < METRIC_STATUSES; c++)
    x.answers[c] = (uint32_t)(now.answers[c] - s->prev.answers[c]);
  x.orders = (uint32_t)(now.orders - s->prev.orders);
  x.commits = (uint32_t)(now.commits - s->prev.commits);
  uint64_t d[SPIKE_COMMIT_BUCKETS + 1];
  double le[METRIC_LAT_BUCKETS];
  for (int k = 0; k <= METRIC_LAT_BUCKETS; k++)
    d[k] = now.lat[k] - s->prev.lat[k];
  for (int k = 0; k < METRIC_LAT_BUCKETS; k++)
    le[k] = metrics_lat_bucket_s(k);
  x.lat_p50_ms = quantile_ms(d, le, METRIC_LAT_BUCKETS, 0.5);
  x.lat_p99_ms = quantile_ms(d, le, METRIC_LAT_BUCKETS, 0.99);
  for (int k = 0; k <= SPIKE_COMMIT_BUCKETS; k++)
    d[k] = now.commit[k] - s->prev.commit[k];
  x.commit_p50_ms = quantile_ms(d, spike_commit_bucket_s, SPIKE_COMMIT_BUCKETS, 0.5);
  x.commit_p99_ms = quantile_ms(d, spike_commit_bucket_s, SPIKE_COMMIT_BUCKETS, 0.99);
  s->prev = now;
  uint32_t n = 0;
  spike_event_list(s->e, 0, s->scratch, STATS_EVENTS_MAX, &n, NULL);
  x.nev = n;
  for (uint32_t i = 0; i < n; i++) {
    const spike_event *ev = &s->scratch[i];
    x.ev[i] = (stats_event){ev->id, ev->reserved + ev->sold};
  }
  pthread_mutex_lock(&s->lock);
  s->ring[s->head] = x;
  s->head = (s->head + 1) % STATS_HISTORY_S;
  if (s->filled < STATS_HISTORY_S) s->filled++;
  pthread_mutex_unlock(&s->lock);
}

static void *sampler(void *arg) {
  stats *s = arg;
  (void)prctl(PR_SET_NAME, "spike-stats");
  struct timespec at;
  clock_gettime(CLOCK_MONOTONIC, &at);
  pthread_mutex_lock(&s->lock);
  while (!s->stop) {
    at.tv_sec++;
    while (!s->stop && pthread_cond_timedwait(&s->wake, &s->lock, &at) != ETIMEDOUT) {
    }
    if (s->stop) break;
    pthread_mutex_unlock(&s->lock);
    stats_sample(s);
    pthread_mutex_lock(&s->lock);
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

int stats_open(stats **out, spike_engine *e, metrics *const *shards, uint32_t nshards) {
  stats *s = calloc(1, sizeof(*s));
  if (s == NULL) return -ENOMEM;
  s->e = e;
  s->nshards = nshards < SPIKE_PRODUCERS_MAX ? nshards : SPIKE_PRODUCERS_MAX;
  for (uint32_t i = 0; i < s->nshards; i++)
    s->shards[i] = shards[i];
  read_totals(s, &s->prev);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->wake, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&s->lock, NULL);
  *out = s;
  return 0;
}

int stats_start(stats *s) {
  int rc = pthread_create(&s->thread, NULL, sampler, s);
  if (rc != 0) return -rc;
  s->started = 1;
  return 0;
}

void stats_close(stats *s) {
  if (s == NULL) return;
  if (s->started) {
    pthread_mutex_lock(&s->lock);
    s->stop = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
  }
  pthread_cond_destroy(&s->wake);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

/* ---- the answer ------------------------------------------------------------ */

static void jb_ms(jbuf *b, float v) {
  char tmp[32];
  if (v < 0) {
    jb_lit(b, "null");
    return;
  }
  int n = snprintf(tmp, sizeof(tmp), "%.3f", (double)v);
  jb_raw(b, tmp, (size_t)n);
}

static const stats_event *find(const sample *x, uint64_t id) {
  for (uint32_t i = 0; i < x->nev; i++)
    if (x->ev[i].id == id) return &x->ev[i];
  return NULL;
}

/* Sample i of the window (0 oldest); i = -1 the one before it, if held. */
static const sample *at(const stats *s, uint32_t n, int64_t i) {
  if (i < 0 && n >= s->filled) return NULL;
  uint32_t back = (uint32_t)((int64_t)n - i); /* 1 = newest */
  return &s->ring[(s->head + STATS_HISTORY_S - back) % STATS_HISTORY_S];
}

typedef enum field { F_ORDERS, F_COMMITS, F_LAT50, F_LAT99, F_COM50, F_COM99 } field;

static void series(jbuf *b, const stats *s, uint32_t n, field f) {
  jb_lit(b, "[");
  for (uint32_t i = 0; i < n; i++) {
    const sample *x = at(s, n, i);
    if (i > 0) jb_lit(b, ",");
    switch (f) {
    case F_ORDERS: jb_u64(b, x->orders); break;
    case F_COMMITS: jb_u64(b, x->commits); break;
    case F_LAT50: jb_ms(b, x->lat_p50_ms); break;
    case F_LAT99: jb_ms(b, x->lat_p99_ms); break;
    case F_COM50: jb_ms(b, x->commit_p50_ms); break;
    case F_COM99: jb_ms(b, x->commit_p99_ms); break;
    }
  }
  jb_lit(b, "]");
}

void stats_render(stats *s, jbuf *b, uint32_t seconds, const spike_event *evs, uint32_t nevs,
                  int more) {
  pthread_mutex_lock(&s->lock);
  uint32_t n = seconds < s->filled ? seconds : s->filled;
  jb_lit(b, "{\"historyS\":");
  jb_u64(b, STATS_HISTORY_S);
  jb_lit(b, ",\"seconds\":");
  jb_u64(b, n);
  jb_lit(b, ",\"t\":[");
  for (uint32_t i = 0; i < n; i++) {
    if (i > 0) jb_lit(b, ",");
    jb_i64(b, at(s, n, i)->t);
  }
  jb_lit(b, "],\"orders\":");
  series(b, s, n, F_ORDERS);
  jb_lit(b, ",\"answers\":{");
  int first = 1;
  for (int c = 0; c < METRIC_STATUSES; c++) {
    uint64_t any = 0;
    for (uint32_t i = 0; i < n; i++)
      any += at(s, n, i)->answers[c];
    if (any == 0) continue;
    char key[16];
    int st = metrics_status_of(c);
    int kl = st != 0 ? snprintf(key, sizeof(key), "\"%d\":[", st)
                     : snprintf(key, sizeof(key), "\"other\":[");
    if (!first) jb_lit(b, ",");
    first = 0;
    jb_raw(b, key, (size_t)kl);
    for (uint32_t i = 0; i < n; i++) {
      if (i > 0) jb_lit(b, ",");
      jb_u64(b, at(s, n, i)->answers[c]);
    }
    jb_lit(b, "]");
  }
  jb_lit(b, "},\"latencyMs\":{\"p50\":");
  series(b, s, n, F_LAT50);
  jb_lit(b, ",\"p99\":");
  series(b, s, n, F_LAT99);
  jb_lit(b, "},\"commits\":");
  series(b, s, n, F_COMMITS);
  jb_lit(b, ",\"commitMs\":{\"p50\":");
  series(b, s, n, F_COM50);
  jb_lit(b, ",\"p99\":");
  series(b, s, n, F_COM99);
  jb_lit(b, "},\"events\":[");
  for (uint32_t e = 0; e < nevs; e++) {
    const spike_event *ev = &evs[e];
    if (e > 0) jb_lit(b, ",");
    json_event(b, ev);
    if (b->len > 0 && b->p[b->len - 1] == '}') b->len--; /* reopen it for one more field */
    /* Units taken (reserved + sold) more than a second before; 0 when
     * units came back (cancel, expiry) or the event was not yet followed. */
    jb_lit(b, ",\"unitsPerS\":[");
    for (uint32_t i = 0; i < n; i++) {
      const stats_event *x = find(at(s, n, i), ev->id);
      const sample *p = at(s, n, (int64_t)i - 1);
      const stats_event *y = p != NULL ? find(p, ev->id) : NULL;
      uint64_t now = x != NULL ? x->taken : 0;
      uint64_t before = y != NULL ? y->taken : now;
      if (i > 0) jb_lit(b, ",");
      jb_u64(b, now > before ? now - before : 0);
    }
    jb_lit(b, "]}");
  }
  jb_lit(b, "],\"eventsMore\":");
  if (more)
    jb_lit(b, "true}");
  else
    jb_lit(b, "false}");
  pthread_mutex_unlock(&s->lock);
}

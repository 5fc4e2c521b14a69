/*
 * test_stats.c -- the dashboard's per-second history (net/stats.c) without
 * its thread: counters bumped by hand in a metrics shard and changes made
 * through a real engine, one stats_sample() per "second", and the JSON that
 * GET /api/v1/admin/stats answers checked field by field.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine_util.h"
#include "stats.h"
#include "test.h"

static metrics shard; /* zeroed; this thread is its only writer */

static int status_index(int http) {
  for (int i = 0; i < METRIC_STATUSES - 1; i++)
    if (metrics_status_of(i) == http) return i;
  return METRIC_STATUSES - 1;
}

/* count requests of route h answered http, all in latency bucket k */
static void count(handler h, int http, int k, uint64_t n) {
  metrics_add(&shard.lat[h][status_index(http)][k], n);
}

static jbuf b; /* the newest answer; render_done frees it */

static void render_done(void) { jb_free(&b); }

static char *render(stats *s, uint32_t seconds, spike_engine *e) {
  static spike_event evs[STATS_EVENTS_MAX];
  uint32_t n = 0;
  spike_event_list(e, 0, evs, STATS_EVENTS_MAX, &n, NULL);
  jb_free(&b);
  jb_init(&b, NULL, 0);
  stats_render(s, &b, seconds, evs, n, 0);
  jb_raw(&b, "", 1); /* NUL */
  CHECK(!b.oom);
  return b.p;
}

static void has(const char *json, const char *part) {
  if (strstr(json, part) == NULL) {
    fprintf(stderr, "missing %s in %s\n", part, json);
    abort();
  }
}

/* One second's answers, orders and reserve latency quantiles; the page's
 * own routes left out. */
static void one_second(void) {
  spike_config cfg;
  small_config(&cfg, "stats1");
  spike_engine *e = open_engine(&cfg);
  memset(&shard, 0, sizeof(shard));
  metrics *sh[1] = {&shard};
  stats *s;
  CHECK_EQ(stats_open(&s, e, sh, 1), 0);
  char *j = render(s, 60, e);
  has(j, "\"historyS\":300,\"seconds\":0,\"t\":[],\"orders\":[],\"answers\":{}");

  count(H_RESERVE, 201, 4, 90); /* 90 orders in (0.5 ms, 1 ms] */
  count(H_RESERVE, 409, 0, 10); /* 10 sold out in (0, 0.05 ms] */
  count(H_EVENT_GET, 200, 0, 7);
  count(H_DASHBOARD, 200, 0, 50); /* the page's own: not counted */
  count(H_ADMIN_STATS, 200, 0, 50);
  stats_sample(s);
  j = render(s, 60, e);
  has(j, "\"seconds\":1,");
  has(j, "\"orders\":[90]");
  has(j, "\"answers\":{\"200\":[7],\"201\":[90],\"409\":[10]}");
  /* rank 50 of 100: the 40th of 90 in (0.5, 1] ms -> 0.5 + 0.5 * 40/90 */
  has(j, "\"latencyMs\":{\"p50\":[0.722],");
  /* rank 99: the 89th of 90 -> 0.5 + 0.5 * 89/90 */
  has(j, "\"p99\":[0.994]}");
  has(j, "\"commits\":[0],\"commitMs\":{\"p50\":[null],\"p99\":[null]}");

  /* a quiet second: zeros and nulls, not the totals again */
  stats_sample(s);
  j = render(s, 60, e);
  has(j, "\"orders\":[90,0]");
  has(j, "\"201\":[90,0]");
  has(j, "\"p50\":[0.722,null]");
  j = render(s, 1, e); /* the newest only */
  has(j, "\"seconds\":1,");
  has(j, "\"orders\":[0]");
  stats_close(s);
  render_done();
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* Commits and their time come from spike_stats; units taken per second
 * per event from the event list; the events shown are the caller's. */
static void commits_and_events(void) {
  spike_config cfg;
  small_config(&cfg, "stats2");
  spike_engine *e = open_engine(&cfg);
  memset(&shard, 0, sizeof(shard));
  metrics *sh[1] = {&shard};
  stats *s;
  spike_producer *p = producer_with_event(e, 7, 100, 5);
  CHECK_EQ(stats_open(&s, e, sh, 1), 0); /* the create is before the baseline */
  for (uint64_t user = 1; user <= 3; user++) {
    spike_op op;
    CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 7, user, 2, NULL, 0, count_cb)), SPIKE_OK);
  }
  stats_sample(s);
  char *j = render(s, 60, e);
  has(j, "\"events\":[{\"id\":\"7\",\"name\":\"test sale\",\"price\":1999,\"stock_total\":100,"
         "\"available\":94,\"reserved\":6,\"sold\":0,");
  has(j, "\"unitsPerS\":[0]}"); /* the first second has no second before it */
  spike_op op;
  CHECK_EQ(settle(p, &op, spike_reserve(p, &op, 7, 9, 5, NULL, 0, count_cb)), SPIKE_OK);
  stats_sample(s);
  j = render(s, 60, e);
  has(j, "\"unitsPerS\":[0,5]}");
  has(j, "\"commitMs\":{\"p50\":[");
  CHECK(strstr(j, "\"commits\":[0,") == NULL); /* the reserves committed */
  CHECK(strstr(j, "\"commitMs\":{\"p50\":[null") == NULL);
  spike_producer_close(p);
  stats_close(s);
  render_done();
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* The ring holds STATS_HISTORY_S samples: the oldest are overwritten, and
 * an answer never holds more. */
static void ring_bound(void) {
  spike_config cfg;
  small_config(&cfg, "stats3");
  spike_engine *e = open_engine(&cfg);
  memset(&shard, 0, sizeof(shard));
  metrics *sh[1] = {&shard};
  stats *s;
  CHECK_EQ(stats_open(&s, e, sh, 1), 0);
  for (int i = 1; i <= STATS_HISTORY_S + 20; i++) {
    count(H_RESERVE, 201, 0, (uint64_t)i); /* second i: i orders */
    stats_sample(s);
  }
  char *j = render(s, STATS_HISTORY_S, e);
  char want[64];
  snprintf(want, sizeof(want), "\"seconds\":%d,", STATS_HISTORY_S);
  has(j, want);
  snprintf(want, sizeof(want), "\"orders\":[21,22,"); /* 1..20 are gone */
  has(j, want);
  snprintf(want, sizeof(want), ",%d],", STATS_HISTORY_S + 20);
  has(j, want);
  const char *o = strstr(j, "\"orders\":[");
  int commas = 0;
  for (const char *c = o; *c != ']'; c++)
    commas += *c == ',';
  CHECK_EQ(commas, STATS_HISTORY_S - 1);
  j = render(s, 3, e);
  has(j, "\"seconds\":3,");
  snprintf(want, sizeof(want), "\"orders\":[%d,%d,%d]", STATS_HISTORY_S + 18, STATS_HISTORY_S + 19,
           STATS_HISTORY_S + 20);
  has(j, want);
  stats_close(s);
  render_done();
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* The thread samples on its own and stops at close. */
static void thread_samples(void) {
  spike_config cfg;
  small_config(&cfg, "stats4");
  spike_engine *e = open_engine(&cfg);
  memset(&shard, 0, sizeof(shard));
  metrics *sh[1] = {&shard};
  stats *s;
  CHECK_EQ(stats_open(&s, e, sh, 1), 0);
  CHECK_EQ(stats_start(s), 0);
  char *j = NULL;
  for (int i = 0; i < 50; i++) { /* up to 5 s */
    j = render(s, 60, e);
    if (strstr(j, "\"seconds\":0,") == NULL) break;
    struct timespec nap = {0, 100000000};
    nanosleep(&nap, NULL);
  }
  CHECK(strstr(j, "\"seconds\":0,") == NULL);
  stats_close(s);
  render_done();
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"one_second", one_second, 30}, {"commits_and_events", commits_and_events, 30},
          {"ring_bound", ring_bound, 60}, {"thread_samples", thread_samples, 30})

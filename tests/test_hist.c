/*
 * test_hist.c -- spikebench's histogram and plot: accuracy within 1 %
 * against distributions whose percentiles are known exactly (sorted
 * samples), merge, the edges (0 and 100 %, empty, one value, clamping),
 * the .hgrm text round trip, and a well-formed SVG.
 */
#include <math.h>
#include <string.h>

#include "../bench/hist.h"
#include "../bench/plot.h"
#include "test.h"

#define N_SAMPLES 200000

static uint64_t samples[N_SAMPLES];
static hist h, h2, h3;

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double unit(uint64_t *s) { return (double)(test_rand(s) >> 11) / 9007199254740992.0; }

/* The exact answer under HdrHistogram's rank rule: the value at rank
 * round(p/100 * n), at least 1. */
static uint64_t exact(const uint64_t *sorted, size_t n, double p) {
  uint64_t want = (uint64_t)(p / 100.0 * (double)n + 0.5);
  if (want == 0) want = 1;
  if (want > n) want = n;
  return sorted[want - 1];
}

static void check_accuracy(size_t n, const char *what) {
  static const double ps[] = {1, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.99, 99.999};
  qsort(samples, n, sizeof(samples[0]), cmp_u64);
  for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
    uint64_t want = exact(samples, n, ps[i]), got = hist_percentile(&h, ps[i]);
    double err = fabs((double)got - (double)want) / (double)want;
    if (err > 0.01) {
      fprintf(stderr, "%s p%g: got %llu want %llu (error %.4f)\n", what, ps[i],
              (unsigned long long)got, (unsigned long long)want, err);
      CHECK(err <= 0.01);
    }
  }
  CHECK_EQ(hist_count(&h), n);
  CHECK_EQ(hist_min(&h), samples[0]);
  CHECK_EQ(hist_max(&h), samples[n - 1]);
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += (double)samples[i];
  CHECK(fabs(hist_mean(&h) - sum / (double)n) <= 1e-6 * sum / (double)n);
}

static void uniform_accuracy(void) {
  uint64_t s = test_seed();
  hist_init(&h);
  for (size_t i = 0; i < N_SAMPLES; i++) {
    samples[i] = 1000 + (uint64_t)(unit(&s) * 10e6); /* 1 us .. 10 ms */
    hist_record(&h, samples[i]);
  }
  check_accuracy(N_SAMPLES, "uniform");
}

static void exponential_accuracy(void) {
  uint64_t s = test_seed() ^ 0x5555;
  hist_init(&h);
  for (size_t i = 0; i < N_SAMPLES; i++) {
    double u = unit(&s);
    samples[i] = 1000 + (uint64_t)(-log(1.0 - u) * 1e6); /* mean 1 ms above 1 us */
    hist_record(&h, samples[i]);
  }
  check_accuracy(N_SAMPLES, "exponential");
}

static void log_uniform_accuracy(void) {
  /* every decade from 1 us to 60 s equally likely: the whole range at once */
  uint64_t s = test_seed() ^ 0xaaaa;
  hist_init(&h);
  for (size_t i = 0; i < N_SAMPLES; i++) {
    samples[i] = (uint64_t)(1000.0 * pow(6e7, unit(&s)));
    if (samples[i] < HIST_MIN_NS) samples[i] = HIST_MIN_NS;
    if (samples[i] > HIST_MAX_NS) samples[i] = HIST_MAX_NS;
    hist_record(&h, samples[i]);
  }
  check_accuracy(N_SAMPLES, "log-uniform");
}

static void bucket_geometry(void) {
  /* counters tile the range without gaps, each within 1/128 of its low end */
  size_t first = hist_index(HIST_MIN_NS), last = hist_index(HIST_MAX_NS);
  CHECK(last < HIST_COUNTS);
  for (size_t i = first; i <= last; i++) {
    uint64_t lo = hist_bucket_low(i), hi = hist_bucket_high(i);
    CHECK(lo <= hi);
    CHECK_EQ(hist_index(lo > HIST_MIN_NS ? lo : HIST_MIN_NS), i);
    if (hi <= HIST_MAX_NS) CHECK_EQ(hist_index(hi), i);
    CHECK((double)(hi - lo + 1) / (double)lo <= 1.0 / 128.0 + 1e-12);
    if (i > first) CHECK_EQ(lo, hist_bucket_high(i - 1) + 1);
  }
  uint64_t s = test_seed() ^ 0x1234;
  for (int k = 0; k < 100000; k++) {
    uint64_t v = HIST_MIN_NS + test_rand(&s) % (HIST_MAX_NS - HIST_MIN_NS);
    size_t i = hist_index(v);
    CHECK(hist_bucket_low(i) <= v && v <= hist_bucket_high(i));
  }
}

static void two_point(void) {
  /* 900 answers of 1 ms, 100 of 50 ms: p90 is the fast one, anything past
   * it the slow one, at exactly the rank where the step is */
  hist_init(&h);
  hist_record_n(&h, 1000000, 900);
  for (int i = 0; i < 100; i++)
    hist_record(&h, 50000000);
  CHECK_EQ(hist_count(&h), 1000);
  uint64_t fast_hi = hist_bucket_high(hist_index(1000000));
  CHECK_EQ(hist_percentile(&h, 50), fast_hi);
  CHECK_EQ(hist_percentile(&h, 90), fast_hi);
  CHECK_EQ(hist_percentile(&h, 90.05), 50000000); /* rank 901 */
  CHECK_EQ(hist_percentile(&h, 99), 50000000);
  CHECK_EQ(hist_percentile(&h, 99.999), 50000000);
  CHECK_EQ(hist_percentile(&h, 100), 50000000);
  CHECK_EQ(hist_percentile(&h, 0), 1000000);
  CHECK(fast_hi >= 1000000 && (double)fast_hi <= 1000000 * 1.01);
  CHECK(fabs(hist_mean(&h) - (0.9 * 1e6 + 0.1 * 50e6)) < 1e-3);
  /* stddev of a two-point distribution: sqrt(p(1-p)) * gap, from midpoints */
  double sd = sqrt(0.9 * 0.1) * 49e6;
  CHECK(fabs(hist_stddev(&h) - sd) / sd < 0.01);
}

static void edges(void) {
  hist_init(&h);
  CHECK_EQ(hist_count(&h), 0);
  CHECK_EQ(hist_percentile(&h, 0), 0);
  CHECK_EQ(hist_percentile(&h, 50), 0);
  CHECK_EQ(hist_percentile(&h, 100), 0);
  CHECK_EQ(hist_min(&h), 0);
  CHECK_EQ(hist_max(&h), 0);
  CHECK(hist_mean(&h) == 0.0 && hist_stddev(&h) == 0.0);

  hist_record(&h, 123456789);
  static const double ps[] = {0, 0.001, 1, 50, 99.9999, 100};
  for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
    CHECK_EQ(hist_percentile(&h, ps[i]), 123456789);
  CHECK_EQ(hist_percentile(&h, -5), 123456789);
  CHECK_EQ(hist_percentile(&h, 250), 123456789);
  CHECK_EQ(hist_percentile(&h, NAN), 123456789);

  /* below 1 us counts as 1 us, above 60 s as 60 s */
  hist_init(&h);
  hist_record(&h, 0);
  hist_record(&h, 999);
  hist_record(&h, HIST_MAX_NS + 1);
  hist_record(&h, UINT64_MAX);
  CHECK_EQ(h.clamped, 4);
  CHECK_EQ(hist_min(&h), HIST_MIN_NS);
  CHECK_EQ(hist_max(&h), HIST_MAX_NS);
  CHECK_EQ(hist_percentile(&h, 50), hist_bucket_high(hist_index(HIST_MIN_NS)));
  CHECK_EQ(hist_percentile(&h, 75), HIST_MAX_NS);
  CHECK_EQ(hist_percentile(&h, 100), HIST_MAX_NS);
  hist_record(&h, HIST_MIN_NS);
  hist_record(&h, HIST_MAX_NS);
  CHECK_EQ(h.clamped, 4);

  /* record_n is n records */
  hist_init(&h);
  hist_init(&h2);
  hist_record_n(&h, 777777, 5);
  hist_record_n(&h, 777777, 0);
  for (int i = 0; i < 5; i++)
    hist_record(&h2, 777777);
  CHECK(memcmp(&h, &h2, sizeof(h)) == 0);
}

static void merge(void) {
  uint64_t s = test_seed() ^ 0x77;
  hist_init(&h);
  hist_init(&h2);
  hist_init(&h3);
  for (int i = 0; i < 100000; i++) {
    uint64_t v = 500 + test_rand(&s) % 200000000;
    hist_record(i % 3 ? &h : &h2, v);
    hist_record(&h3, v);
  }
  hist merged;
  hist_init(&merged);
  hist_merge(&merged, &h);
  hist_merge(&merged, &h2);
  CHECK(memcmp(&merged, &h3, sizeof(merged)) == 0);
  /* an empty source changes nothing, an empty destination becomes the source */
  hist empty;
  hist_init(&empty);
  hist_merge(&merged, &empty);
  CHECK(memcmp(&merged, &h3, sizeof(merged)) == 0);
  hist_merge(&empty, &h3);
  CHECK(memcmp(&empty, &h3, sizeof(empty)) == 0);
  CHECK_EQ(hist_count(&empty), 100000);
}

static int count_cb(void *arg, uint64_t lo, uint64_t hi, uint64_t n, uint64_t cum) {
  uint64_t *st = arg;
  CHECK(lo <= hi && n > 0);
  CHECK(lo > st[1] || st[0] == 0);
  st[0] += n;
  st[1] = hi;
  CHECK_EQ(cum, st[0]);
  return 0;
}

static void foreach_buckets(void) {
  uint64_t s = test_seed() ^ 0x99;
  hist_init(&h);
  for (int i = 0; i < 50000; i++)
    hist_record(&h, 1000 + test_rand(&s) % 1000000000);
  uint64_t st[2] = {0, 0};
  CHECK_EQ(hist_foreach(&h, count_cb, st), 0);
  CHECK_EQ(st[0], 50000);
}

static void percentiles_monotonic(void) {
  uint64_t s = test_seed() ^ 0x31;
  hist_init(&h);
  for (int i = 0; i < 100000; i++)
    hist_record(&h, 1000 + (test_rand(&s) % 1000) * (test_rand(&s) % 100000));
  uint64_t prev = 0;
  for (int k = 0; k <= 10000; k++) {
    uint64_t v = hist_percentile(&h, k / 100.0);
    CHECK(v >= prev);
    prev = v;
  }
  CHECK_EQ(prev, hist_max(&h));
}

/* ---- .hgrm ---------------------------------------------------------------------- */

static char text[1 << 20];

static size_t slurp(FILE *f) {
  rewind(f);
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  text[n] = '\0';
  rewind(f);
  return n;
}

typedef struct find_arg {
  double count;
  uint64_t value;
} find_arg;

static int find_cb(void *arg, uint64_t lo, uint64_t hi, uint64_t n, uint64_t cum) {
  find_arg *fa = arg;
  (void)lo;
  (void)n;
  if ((double)cum < fa->count) return 0;
  fa->value = hi;
  return 1;
}

static void hgrm_round_trip(void) {
  uint64_t s = test_seed() ^ 0x4242;
  hist_init(&h);
  for (int i = 0; i < 100000; i++)
    hist_record(&h, 20000 + (uint64_t)(-log(1.0 - unit(&s)) * 2e6));
  FILE *f = tmpfile();
  CHECK(f != NULL);
  CHECK_EQ(hist_write_hgrm(&h, f), 0);
  slurp(f);
  static const char head[] = "       Value     Percentile TotalCount 1/(1-Percentile)\n\n";
  CHECK(strncmp(text, head, sizeof(head) - 1) == 0);
  CHECK(strstr(text, "#[Mean    = ") != NULL);
  CHECK(strstr(text, "#[Max     = ") != NULL);
  CHECK(strstr(text, "#[Buckets =           29, SubBuckets     =          256]") != NULL);
  /* the ticks HdrHistogram prints: 10 % steps to 50 %, halving after */
  CHECK(strstr(text, " 0.000000000000 ") != NULL);
  CHECK(strstr(text, " 0.500000000000 ") != NULL);
  CHECK(strstr(text, " 0.775000000000 ") != NULL);
  CHECK(strstr(text, " 0.900000000000 ") != NULL);
  CHECK(strstr(text, " 0.990625000000 ") != NULL);

  static hist_row rows[4096];
  hist_hgrm g = {.rows = rows, .cap = 4096};
  CHECK_EQ(hist_read_hgrm(f, &g), 0);
  fclose(f);
  CHECK(g.n > 50);
  CHECK_EQ(g.total, 100000);
  CHECK(fabs(g.max_ms - (double)hist_max(&h) / 1e6) < 0.0006);
  CHECK(fabs(g.mean_ms - hist_mean(&h) / 1e6) < 0.0006);
  CHECK(fabs(g.stddev_ms - hist_stddev(&h) / 1e6) < 0.0006);
  CHECK(g.rows[0].pct == 0.0);
  CHECK(g.rows[g.n - 1].pct == 100.0);
  CHECK_EQ(g.rows[g.n - 1].total_count, 100000);
  CHECK(fabs(g.rows[g.n - 1].value_ms - (double)hist_max(&h) / 1e6) < 0.0006);
  for (size_t i = 1; i < g.n; i++) {
    CHECK(g.rows[i].pct >= g.rows[i - 1].pct);
    CHECK(g.rows[i].value_ms >= g.rows[i - 1].value_ms);
    CHECK(g.rows[i].total_count >= g.rows[i - 1].total_count);
    /* each row is the first counter whose running total reaches its percentile,
     * as HdrHistogram's iterator has it (hist_percentile rounds the rank to
     * the nearest instead, so in a sparse tail the two may name neighbours) */
    if (g.rows[i].pct < 100.0) {
      /* a percentile that lands exactly on a running total (55 % of 100,000)
       * reads back from 12 decimals a hair either side of it: either
       * neighbour is the writer's row */
      double want = g.rows[i].pct / 100.0 * (double)hist_count(&h);
      find_arg lo = {want * (1 - 1e-12), 0}, hi = {want * (1 + 1e-12), 0};
      hist_foreach(&h, find_cb, &lo);
      hist_foreach(&h, find_cb, &hi);
      if (lo.value > hist_max(&h)) lo.value = hist_max(&h);
      if (hi.value > hist_max(&h)) hi.value = hist_max(&h);
      CHECK(fabs(g.rows[i].value_ms - (double)lo.value / 1e6) < 0.0006 ||
            fabs(g.rows[i].value_ms - (double)hi.value / 1e6) < 0.0006);
    }
  }

  /* an empty histogram still writes a header and footer, and reads back as nothing */
  hist_init(&h2);
  f = tmpfile();
  CHECK_EQ(hist_write_hgrm(&h2, f), 0);
  rewind(f);
  CHECK_EQ(hist_read_hgrm(f, &g), -1);
  fclose(f);

  /* malformed inputs */
  static const char *const bad[] = {
      "",
      "hello\n",
      ("       Value     Percentile TotalCount 1/(1-Percentile)\n\n   1.000 0.5 10 2.00\n"
       "   0.500 0.4 11 1.67\n"),
      "       Value     Percentile TotalCount 1/(1-Percentile)\n\n   1.000 abc 10 2.00\n",
      "       Value     Percentile TotalCount 1/(1-Percentile)\n\n   1.000 1.5 10\n",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    f = tmpfile();
    fputs(bad[i], f);
    rewind(f);
    CHECK_EQ(hist_read_hgrm(f, &g), -1);
    fclose(f);
  }
  /* more rows than the caller's array */
  hist_hgrm small = {.rows = rows, .cap = 3};
  f = tmpfile();
  hist_write_hgrm(&h, f);
  rewind(f);
  CHECK_EQ(hist_read_hgrm(f, &small), -1);
  fclose(f);
}

/* ---- plot ----------------------------------------------------------------------- */

static size_t count(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
    n++;
  return n;
}

static void plot_well_formed(void) {
  static const double pa[] = {0, 50, 90, 99, 99.9, 99.99, 100};
  static const double ma[] = {0.1, 0.2, 0.4, 0.9, 1.5, 3.0, 4.0};
  static const double mb[] = {0.2, 0.3, 0.8, 2.0, 5.0, 9.5, 12.0};
  plot_series s[2] = {{"durable <25%> & co", pa, ma, 7}, {"memory", pa, mb, 7}};
  FILE *f = tmpfile();
  CHECK_EQ(plot_svg(f, "Latency \"by\" percentile", s, 2), 0);
  size_t n = slurp(f);
  fclose(f);
  CHECK(n > 200);
  CHECK(strncmp(text, "<svg ", 5) == 0);
  CHECK(strcmp(text + n - 7, "</svg>\n") == 0);
  CHECK_EQ(count(text, "<svg"), 1);
  CHECK_EQ(count(text, "<polyline"), 2);
  CHECK_EQ(count(text, "</polyline>"), 2);
  CHECK_EQ(count(text, "<text"), count(text, "</text>"));
  CHECK_EQ(count(text, "<g"), count(text, "</g>"));
  CHECK(strstr(text, "durable &lt;25%&gt; &amp; co") != NULL);
  CHECK(strstr(text, ">memory<") != NULL);
  CHECK(strstr(text, "Latency &quot;by&quot; percentile") != NULL);
  /* the percentile gridlines HdrHistogram's plotter draws */
  static const char *const ticks[] = {">0%<", ">90%<", ">99%<", ">99.9%<", ">99.99%<", ">99.999%<"};
  for (size_t i = 0; i < sizeof(ticks) / sizeof(ticks[0]); i++)
    CHECK(strstr(text, ticks[i]) != NULL);
  /* escaped text leaves no stray angle brackets: every tag opens and closes */
  CHECK_EQ(count(text, "<"), count(text, ">"));
  /* y reaches a round number above 12 ms */
  CHECK(strstr(text, ">20<") != NULL);

  /* refusals */
  f = tmpfile();
  CHECK_EQ(plot_svg(f, "t", s, 0), -1);
  plot_series many[PLOT_SERIES_MAX + 1];
  for (size_t i = 0; i <= PLOT_SERIES_MAX; i++)
    many[i] = s[0];
  CHECK_EQ(plot_svg(f, "t", many, PLOT_SERIES_MAX + 1), -1);
  plot_series empty = {"e", pa, ma, 0};
  CHECK_EQ(plot_svg(f, "t", &empty, 1), -1);
  /* the most series allowed works */
  CHECK_EQ(plot_svg(f, "t", many, PLOT_SERIES_MAX), 0);
  fclose(f);
}

static void plot_deep_tail(void) {
  /* a series that reaches 99.99999 % widens the axis to seven nines */
  static const double p[] = {0, 99.99999, 100};
  static const double m[] = {1, 2, 3};
  plot_series s = {"deep", p, m, 3};
  FILE *f = tmpfile();
  CHECK_EQ(plot_svg(f, NULL, &s, 1), 0);
  slurp(f);
  fclose(f);
  CHECK(strstr(text, ">99.99999%<") != NULL);
  CHECK(strstr(text, "Latency by Percentile Distribution") != NULL);
}

/* A .hgrm read back into a histogram: exact from spikebench's count lines,
 * from the rows (never below the truth) without them; lines that disagree
 * are refused. */
static void hgrm_load(void) {
  uint64_t s = test_seed() ^ 0x2424;
  hist_init(&h);
  for (int i = 0; i < 30000; i++)
    hist_record(&h, 500 + (uint64_t)(-log(1.0 - unit(&s)) * 3e6));
  hist_record(&h, 200); /* below 1 us and above 60 s: clamped, and counted so */
  hist_record(&h, HIST_MAX_NS + 5);
  FILE *f = tmpfile();
  CHECK_EQ(hist_write_hgrm(&h, f), 0);
  rewind(f);
  int exact = 0;
  CHECK_EQ(hist_load_hgrm(f, &h2, &exact), 0);
  CHECK(exact);
  CHECK(memcmp(&h, &h2, sizeof(h)) == 0);
  slurp(f);
  fclose(f);
  CHECK(strstr(text, "#[spikebench-counts min_ns=1000 ") != NULL);
  CHECK(h.clamped >= 2 && strstr(text, "clamped=") != NULL);

  /* the rows alone: the same count, each percentile at or above the truth */
  static char rows_only[1 << 20];
  size_t n = 0;
  for (const char *p = text; *p;) {
    const char *e = strchr(p, '\n');
    size_t l = e ? (size_t)(e - p) + 1 : strlen(p);
    if (strncmp(p, "#[c ", 4) != 0 && strncmp(p, "#[spikebench", 12) != 0) {
      memcpy(rows_only + n, p, l);
      n += l;
    }
    p += l;
  }
  rows_only[n] = '\0';
  f = tmpfile();
  fputs(rows_only, f);
  rewind(f);
  CHECK_EQ(hist_load_hgrm(f, &h2, &exact), 0);
  fclose(f);
  CHECK(!exact);
  CHECK_EQ(hist_count(&h2), hist_count(&h));
  for (double p = 5; p < 100; p += 5)
    CHECK(hist_percentile(&h2, p) + 1000 >= hist_percentile(&h, p));

  /* counts that do not add up to the footer's total, a value off the
   * geometry, counts before their header line: refused */
  static const char *const bad[] = {
      "       Value     Percentile TotalCount 1/(1-Percentile)\n\n   1.000 1.0 2\n"
      "#[Max     =        1.000, Total count    =            2]\n"
      "#[spikebench-counts min_ns=1000000 max_ns=1000000 sum_ns=2000000 clamped=0]\n"
      "#[c 999424:1]\n",
      "       Value     Percentile TotalCount 1/(1-Percentile)\n\n   1.000 1.0 1\n"
      "#[Max     =        1.000, Total count    =            1]\n"
      "#[spikebench-counts min_ns=1000000 max_ns=1000000 sum_ns=1000000 clamped=0]\n"
      "#[c 999425:1]\n",
      ("       Value     Percentile TotalCount 1/(1-Percentile)\n\n   1.000 1.0 1\n"
       "#[c 999424:1]\n"),
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    f = tmpfile();
    fputs(bad[i], f);
    rewind(f);
    CHECK_EQ(hist_load_hgrm(f, &h2, &exact), -1);
    fclose(f);
  }
}

TEST_LIST({"uniform_accuracy", uniform_accuracy, 0},
          {"exponential_accuracy", exponential_accuracy, 0},
          {"log_uniform_accuracy", log_uniform_accuracy, 0},
          {"bucket_geometry", bucket_geometry, 0}, {"two_point", two_point, 0}, {"edges", edges, 0},
          {"merge", merge, 0}, {"foreach_buckets", foreach_buckets, 0},
          {"percentiles_monotonic", percentiles_monotonic, 0},
          {"hgrm_round_trip", hgrm_round_trip, 0}, {"plot_well_formed", plot_well_formed, 0},
          {"plot_deep_tail", plot_deep_tail, 0}, {"hgrm_load", hgrm_load, 0})

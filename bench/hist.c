/*
 * hist.c -- the log-linear latency histogram (see hist.h) and its .hgrm
 * text form.
 *
 * The index arithmetic is HdrHistogram's: a value's power of two picks the
 * bucket, the next 8 bits below its top bit pick the sub-bucket, and the
 * lower half of every bucket but the first overlaps the one before, so it
 * is skipped. Precision is fixed at compile time rather than chosen at run
 * time: the one configuration spikebench needs keeps the arithmetic in
 * constants and the struct free of pointers, at the cost of 30 KB per
 * histogram whatever the range actually used.
 */
#include "hist.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(HIST_SUB_BUCKETS == 2 * HIST_SUB_HALF, "sub-bucket halves");
_Static_assert((1u << HIST_SUB_HALF_BITS) == HIST_SUB_HALF, "half count is a power of two");
_Static_assert(HIST_MAX_NS < (uint64_t)HIST_SUB_BUCKETS << (HIST_BUCKETS - 1),
               "the last bucket holds HIST_MAX_NS");
_Static_assert(HIST_MAX_NS >= (uint64_t)HIST_SUB_BUCKETS << (HIST_BUCKETS - 2),
               "no bucket is wasted past HIST_MAX_NS");

#define SUB_MASK ((uint64_t)HIST_SUB_BUCKETS - 1)

static uint64_t clamp(uint64_t ns) {
  return ns < HIST_MIN_NS ? HIST_MIN_NS : ns > HIST_MAX_NS ? HIST_MAX_NS : ns;
}

static unsigned bucket_of(uint64_t v) {
  /* v | SUB_MASK has its top bit at 7 or above, so bucket 0 is < 256 */
  return (unsigned)(64 - __builtin_clzll(v | SUB_MASK)) - (HIST_SUB_HALF_BITS + 1);
}

size_t hist_index(uint64_t ns) {
  uint64_t v = clamp(ns);
  unsigned b = bucket_of(v);
  uint64_t sub = v >> b;
  assert(b < HIST_BUCKETS && sub < HIST_SUB_BUCKETS && (b == 0 || sub >= HIST_SUB_HALF));
  size_t i = ((size_t)(b + 1) << HIST_SUB_HALF_BITS) + (size_t)sub - HIST_SUB_HALF;
  assert(i < HIST_COUNTS);
  return i;
}

uint64_t hist_bucket_low(size_t i) {
  assert(i < HIST_COUNTS);
  size_t b = i >> HIST_SUB_HALF_BITS;
  size_t sub = (i & (HIST_SUB_HALF - 1)) + HIST_SUB_HALF;
  if (b == 0) return sub - HIST_SUB_HALF; /* the first bucket: 0..255 */
  return (uint64_t)sub << (b - 1);
}

uint64_t hist_bucket_high(size_t i) {
  size_t b = i >> HIST_SUB_HALF_BITS;
  uint64_t width = b == 0 ? 1 : 1ull << (b - 1);
  return hist_bucket_low(i) + width - 1;
}

void hist_init(hist *h) {
  memset(h, 0, sizeof(*h));
  h->min_ns = UINT64_MAX;
}

void hist_record_n(hist *h, uint64_t ns, uint64_t n) {
  if (n == 0) return;
  uint64_t v = clamp(ns);
  if (v != ns) h->clamped += n;
  h->counts[hist_index(v)] += n;
  h->total += n;
  h->sum_ns += v * n;
  if (v < h->min_ns) h->min_ns = v;
  if (v > h->max_ns) h->max_ns = v;
}

void hist_record(hist *h, uint64_t ns) { hist_record_n(h, ns, 1); }

void hist_merge(hist *dst, const hist *src) {
  if (src->total == 0) return;
  for (size_t i = 0; i < HIST_COUNTS; i++)
    dst->counts[i] += src->counts[i];
  dst->total += src->total;
  dst->sum_ns += src->sum_ns;
  dst->clamped += src->clamped;
  if (src->min_ns < dst->min_ns) dst->min_ns = src->min_ns;
  if (src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
}

uint64_t hist_count(const hist *h) { return h->total; }
uint64_t hist_min(const hist *h) { return h->total ? h->min_ns : 0; }
uint64_t hist_max(const hist *h) { return h->total ? h->max_ns : 0; }
double hist_mean(const hist *h) { return h->total ? (double)h->sum_ns / (double)h->total : 0.0; }

double hist_stddev(const hist *h) {
  if (h->total == 0) return 0.0;
  double mean = hist_mean(h), acc = 0.0;
  for (size_t i = 0; i < HIST_COUNTS; i++) {
    if (h->counts[i] == 0) continue;
    double mid = ((double)hist_bucket_low(i) + (double)hist_bucket_high(i)) / 2.0;
    acc += (mid - mean) * (mid - mean) * (double)h->counts[i];
  }
  return sqrt(acc / (double)h->total);
}

/* The value reported for counter i: its highest equivalent value, kept
 * inside the exact [min, max] so the ends are not overstated. */
static uint64_t reported(const hist *h, size_t i) {
  uint64_t v = hist_bucket_high(i);
  if (v > h->max_ns) v = h->max_ns;
  if (v < h->min_ns) v = h->min_ns;
  return v;
}

uint64_t hist_percentile(const hist *h, double pct) {
  if (h->total == 0) return 0;
  if (!(pct > 0.0)) return h->min_ns; /* also NaN */
  if (pct >= 100.0) return h->max_ns;
  /* HdrHistogram's rank: the count at or below the answer, at least 1. */
  uint64_t want = (uint64_t)(pct / 100.0 * (double)h->total + 0.5);
  if (want == 0) want = 1;
  uint64_t seen = 0;
  for (size_t i = 0; i < HIST_COUNTS; i++) {
    seen += h->counts[i];
    if (seen >= want) return reported(h, i);
  }
  return h->max_ns; /* not reached: seen ends at total >= want */
}

int hist_foreach(const hist *h, hist_visit_fn fn, void *arg) {
  uint64_t seen = 0;
  for (size_t i = 0; i < HIST_COUNTS; i++) {
    if (h->counts[i] == 0) continue;
    seen += h->counts[i];
    int rc = fn(arg, hist_bucket_low(i), hist_bucket_high(i), h->counts[i], seen);
    if (rc != 0) return rc;
  }
  return 0;
}

/* ---- .hgrm ----------------------------------------------------------------- */

#define TICKS_PER_HALF 5
#define NS_PER_MS 1e6

/* The next percentile tick after level: HdrHistogram's PercentileIterator,
 * which halves the distance to 100 % every TICKS_PER_HALF rows. */
static double next_level(double level) {
  double halvings = floor(log2(100.0 / (100.0 - level))) + 1.0;
  return level + 100.0 / (TICKS_PER_HALF * pow(2.0, halvings));
}

static void row(FILE *f, double value_ms, double pct, uint64_t cum) {
  double p = pct / 100.0;
  fprintf(f, "%12.3f %2.12f %10llu %14.2f\n", value_ms, p, (unsigned long long)cum,
          1.0 / (1.0 - p));
}

int hist_write_hgrm(const hist *h, FILE *f) {
  fprintf(f, "%12s %14s %10s %14s\n\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
  if (h->total > 0) {
    double level = 0.0;
    uint64_t cum = 0;
    size_t last = 0;
    for (size_t i = 0; i < HIST_COUNTS && cum < h->total; i++) {
      if (h->counts[i] == 0) continue;
      cum += h->counts[i];
      last = i;
      double here = 100.0 * (double)cum / (double)h->total;
      double v = (double)reported(h, i) / NS_PER_MS;
      /* The bucket that reaches the total gives one row, then the 100 %
       * row ends the table, as HdrHistogram's iterator does. */
      while (level <= here && level < 100.0) {
        row(f, v, level, cum);
        level = next_level(level);
        if (cum == h->total) break;
      }
    }
    fprintf(f, "%12.3f %2.12f %10llu\n", (double)reported(h, last) / NS_PER_MS, 1.0,
            (unsigned long long)h->total);
  }
  fprintf(f, "#[Mean    = %12.3f, StdDeviation   = %12.3f]\n", hist_mean(h) / NS_PER_MS,
          hist_stddev(h) / NS_PER_MS);
  fprintf(f, "#[Max     = %12.3f, Total count    = %12llu]\n", (double)hist_max(h) / NS_PER_MS,
          (unsigned long long)h->total);
  fprintf(f, "#[Buckets = %12d, SubBuckets     = %12d]\n", HIST_BUCKETS, HIST_SUB_BUCKETS);
  fprintf(f, "#[spikebench-counts min_ns=%llu max_ns=%llu sum_ns=%llu clamped=%llu]\n",
          (unsigned long long)hist_min(h), (unsigned long long)hist_max(h),
          (unsigned long long)h->sum_ns, (unsigned long long)h->clamped);
  int on_line = 0;
  for (size_t i = 0; i < HIST_COUNTS; i++) {
    if (h->counts[i] == 0) continue;
    fprintf(f, "%s%llu:%llu", on_line == 0 ? "#[c " : " ", (unsigned long long)hist_bucket_low(i),
            (unsigned long long)h->counts[i]);
    if (++on_line == 16) {
      fputs("]\n", f);
      on_line = 0;
    }
  }
  if (on_line > 0) fputs("]\n", f);
  return ferror(f) ? -1 : 0;
}

/* A footer line "#[Name = value, Name = value]": the two numbers. */
static int footer(const char *line, const char *first, double *a, double *b) {
  size_t n = strlen(first);
  if (strncmp(line, "#[", 2) != 0 || strncmp(line + 2, first, n) != 0) return 0;
  const char *eq = strchr(line, '=');
  if (eq == NULL) return 0;
  char *end;
  *a = strtod(eq + 1, &end);
  if (end == eq + 1) return 0;
  eq = strchr(end, '=');
  if (eq == NULL) return 0;
  *b = strtod(eq + 1, &end);
  return end != eq + 1;
}

/* One walk over a .hgrm text: blank lines skipped, the header noted, each
 * "#" line given to on_comment, each row parsed, checked (percentile and
 * count never going down) and given to on_row. A callback's non-zero return
 * stops the walk with -1. 0, or -1 for a malformed text or a read error. */
typedef struct walk {
  int (*on_row)(void *arg, const hist_row *r);
  int (*on_comment)(void *arg, const char *line);
  void *arg;
} walk;

static int walk_hgrm(FILE *f, const walk *w) {
  char line[1024];
  int saw_header = 0;
  hist_row prev = {0, 0, 0};
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strchr(line, '\n') == NULL && !feof(f)) return -1; /* a line this long is not .hgrm */
    const char *p = line;
    while (*p == ' ' || *p == '\t')
      p++;
    if (*p == '\n' || *p == '\r' || *p == '\0') continue;
    if (*p == '#') {
      if (w->on_comment(w->arg, p) != 0) return -1;
      continue;
    }
    if (strncmp(p, "Value", 5) == 0) {
      saw_header = 1;
      continue;
    }
    char *end;
    hist_row r;
    r.value_ms = strtod(p, &end);
    if (end == p) return -1;
    p = end;
    r.pct = strtod(p, &end) * 100.0;
    if (end == p) return -1;
    p = end;
    r.total_count = strtoull(p, &end, 10);
    if (end == p) return -1;
    if (!isfinite(r.value_ms) || r.value_ms < 0 || !(r.pct >= 0.0 && r.pct <= 100.0)) return -1;
    if (r.pct < prev.pct || r.total_count < prev.total_count) return -1;
    if (w->on_row(w->arg, &r) != 0) return -1;
    prev = r;
  }
  return saw_header && !ferror(f) ? 0 : -1;
}

static int rows_row(void *arg, const hist_row *r) {
  hist_hgrm *out = arg;
  if (out->n == out->cap) return -1;
  out->rows[out->n++] = *r;
  return 0;
}

static int rows_comment(void *arg, const char *line) {
  hist_hgrm *out = arg;
  double a, b;
  if (footer(line, "Mean", &a, &b)) {
    out->mean_ms = a;
    out->stddev_ms = b;
  } else if (footer(line, "Max", &a, &b)) {
    out->max_ms = a;
    out->total = b < 0 ? 0 : (uint64_t)b;
  }
  return 0;
}

int hist_read_hgrm(FILE *f, hist_hgrm *out) {
  out->n = 0;
  out->mean_ms = out->stddev_ms = out->max_ms = -1.0;
  out->total = 0;
  walk w = {rows_row, rows_comment, out};
  return walk_hgrm(f, &w) == 0 && out->n > 0 ? 0 : -1;
}

/* "key=NUMBER" in line: 0 with *v, or -1. */
static int kv(const char *line, const char *key, unsigned long long *v) {
  const char *p = strstr(line, key);
  if (p == NULL) return -1;
  p += strlen(key);
  char *end;
  errno = 0;
  *v = strtoull(p, &end, 10);
  return end == p || errno != 0 ? -1 : 0;
}

/* hist_load_hgrm's state: the exact counts, and the rows as a fallback. */
typedef struct load {
  hist *h;
  hist approx;
  uint64_t prev_count, rows, footer_total;
  int have_counts;
  unsigned long long mn, mx, sum, clamped;
} load;

static int load_row(void *arg, const hist_row *r) {
  load *l = arg;
  uint64_t ns = (uint64_t)llround(r->value_ms * NS_PER_MS);
  hist_record_n(&l->approx, ns, r->total_count - l->prev_count);
  l->prev_count = r->total_count;
  l->rows++;
  return 0;
}

static int load_comment(void *arg, const char *p) {
  load *l = arg;
  hist *h = l->h;
  double a, b;
  if (strncmp(p, "#[spikebench-counts ", 20) == 0) {
    if (kv(p, "min_ns=", &l->mn) || kv(p, "max_ns=", &l->mx) || kv(p, "sum_ns=", &l->sum) ||
        kv(p, "clamped=", &l->clamped))
      return -1;
    l->have_counts = 1;
  } else if (strncmp(p, "#[c ", 4) == 0) {
    if (!l->have_counts) return -1;
    for (p += 4; *p != ']' && *p != '\0';) {
      char *end;
      errno = 0;
      unsigned long long low = strtoull(p, &end, 10);
      if (end == p || *end != ':' || errno != 0) return -1;
      p = end + 1;
      unsigned long long n = strtoull(p, &end, 10);
      if (end == p || errno != 0 || n == 0) return -1;
      p = end;
      while (*p == ' ')
        p++;
      size_t i = hist_index(low);
      if (hist_bucket_low(i) != low && low >= HIST_MIN_NS) return -1; /* another geometry */
      h->counts[i] += n;
      h->total += n;
    }
  } else if (footer(p, "Max", &a, &b)) {
    l->footer_total = b < 0 ? 0 : (uint64_t)b;
  }
  return 0;
}

int hist_load_hgrm(FILE *f, hist *h, int *exact) {
  load l; /* 30 KB of fallback histogram, on the stack */
  memset(&l, 0, sizeof(l));
  l.h = h;
  hist_init(h);
  hist_init(&l.approx);
  *exact = 0;
  walk w = {load_row, load_comment, &l};
  if (walk_hgrm(f, &w) != 0) return -1;
  if (l.have_counts) {
    if (h->total != l.footer_total) return -1;
    h->sum_ns = l.sum;
    h->clamped = l.clamped;
    if (h->total > 0) {
      if (l.mn > l.mx || l.mn < HIST_MIN_NS || l.mx > HIST_MAX_NS ||
          h->counts[hist_index(l.mn)] == 0 || h->counts[hist_index(l.mx)] == 0)
        return -1;
      h->min_ns = l.mn;
      h->max_ns = l.mx;
    }
    *exact = 1;
    return 0;
  }
  if (l.rows == 0) return -1;
  *h = l.approx;
  return 0;
}

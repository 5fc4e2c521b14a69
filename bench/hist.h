/*
 * hist.h -- spikebench's latency histogram: log-linear buckets in the
 * manner of HdrHistogram, written here because no such library is packaged
 * for Debian.
 *
 * Values are nanoseconds. The tracked range is HIST_MIN_NS (1 us) to
 * HIST_MAX_NS (60 s); a value outside it is clamped to the nearer end and
 * counted in `clamped`. Layout: HdrHistogram's with a 1 ns unit and two
 * significant digits -- 256 sub-buckets in the first bucket, then 128 per
 * power of two -- so any recorded value is reported within 1/128 (0.78 %)
 * of itself: no worse than 1 % anywhere in the range.
 *
 * Memory: one fixed array of HIST_COUNTS counters inside the struct; no
 * allocation at all, so a histogram is embedded in the caller's state,
 * cleared with hist_init, and recording is a few shifts and an add.
 *
 * Threads: none of its own. A histogram is one thread's; merge copies
 * from one the caller has stopped writing.
 */
#ifndef SPIKE_HIST_H
#define SPIKE_HIST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define HIST_MIN_NS 1000ull        /* 1 us: smaller values count as this */
#define HIST_MAX_NS 60000000000ull /* 60 s: larger values count as this */
#define HIST_SUB_BUCKETS 256       /* HdrHistogram's sub_bucket_count */
#define HIST_SUB_HALF 128
#define HIST_SUB_HALF_BITS 7
#define HIST_BUCKETS 29 /* powers of two from 256 ns past 60 s */
#define HIST_COUNTS ((HIST_BUCKETS + 1) * HIST_SUB_HALF)

typedef struct hist {
  uint64_t total;   /* values recorded */
  uint64_t min_ns;  /* exact, after clamping; UINT64_MAX when empty */
  uint64_t max_ns;  /* exact, after clamping; 0 when empty */
  uint64_t sum_ns;  /* exact, for the mean */
  uint64_t clamped; /* values that were outside [HIST_MIN_NS, HIST_MAX_NS] */
  uint64_t counts[HIST_COUNTS];
} hist;

/* Empty h. */
void hist_init(hist *h);

/* Record one value of ns nanoseconds (clamped to the tracked range). */
void hist_record(hist *h, uint64_t ns);
/* Record n values of ns at once. */
void hist_record_n(hist *h, uint64_t ns, uint64_t n);

/* Add every value of src to dst. src is unchanged. */
void hist_merge(hist *dst, const hist *src);

/*
 * The value below which pct percent of the recorded values fall, in ns,
 * reported as the highest value equivalent to its bucket but never above
 * the exact max. pct <= 0 gives the exact min, pct >= 100 the exact max.
 * An empty histogram gives 0.
 */
uint64_t hist_percentile(const hist *h, double pct);

uint64_t hist_count(const hist *h);
uint64_t hist_min(const hist *h);  /* 0 when empty */
uint64_t hist_max(const hist *h);  /* 0 when empty */
double hist_mean(const hist *h);   /* ns; 0 when empty */
double hist_stddev(const hist *h); /* ns, from bucket midpoints; 0 when empty */

/* Bucket geometry, for iteration and tests: each counter covers the values
 * [hist_bucket_low(i), hist_bucket_high(i)]. */
uint64_t hist_bucket_low(size_t i);
uint64_t hist_bucket_high(size_t i);
/* The counter index a value falls in (after clamping). */
size_t hist_index(uint64_t ns);

/* Call fn for every non-empty counter in value order, with the counter's
 * range, its count and the running total through it. Stops early when fn
 * returns non-zero and returns that value; 0 otherwise. */
typedef int (*hist_visit_fn)(void *arg, uint64_t low_ns, uint64_t high_ns, uint64_t count,
                             uint64_t cumulative);
int hist_foreach(const hist *h, hist_visit_fn fn, void *arg);

/*
 * Write the percentile distribution in HdrHistogram's .hgrm text layout,
 * the way its outputPercentileDistribution prints it with 5 ticks per half
 * distance and values scaled to milliseconds (3 decimals): a header, one
 * row per percentile tick ("Value Percentile TotalCount 1/(1-Percentile)"),
 * a last row at 100 %, and the Mean/StdDeviation, Max/Total count and
 * Buckets/SubBuckets footer. Returns 0, or -1 when writing to f failed.
 */
int hist_write_hgrm(const hist *h, FILE *f);

/* One row of a .hgrm file. */
typedef struct hist_row {
  double value_ms;
  double pct; /* 0 .. 100 */
  uint64_t total_count;
} hist_row;

/* A .hgrm file read back; rows is the caller's array of cap rows. */
typedef struct hist_hgrm {
  hist_row *rows;
  size_t n, cap;
  double mean_ms, stddev_ms, max_ms; /* from the footer; -1 when absent */
  uint64_t total;                    /* from the footer; 0 when absent */
} hist_hgrm;

/*
 * The exact histogram inside a .hgrm that hist_write_hgrm wrote: after the
 * footer, comment lines (which HdrHistogram's tools skip) carry the exact
 * min, max, sum and every non-empty counter:
 *
 *   #[spikebench-counts min_ns=... max_ns=... sum_ns=... clamped=...]
 *   #[c LOW_NS:COUNT LOW_NS:COUNT ...]     (up to 16 counters a line)
 *
 * hist_load_hgrm reads a .hgrm back into h: exactly when those lines are
 * there (*exact = 1), so `spikebench merge` of several runs' files is the
 * histogram one process would have recorded; otherwise (*exact = 0, a
 * file from another tool) from the percentile rows, each row's new counts
 * put at its value, which overstates values between two rows by at most
 * one row's step. 0, or -1 when f is not a .hgrm or its lines disagree
 * with each other (counts not adding up to the total).
 */
int hist_load_hgrm(FILE *f, hist *h, int *exact);

/*
 * Read a .hgrm text from f into out (out->rows and out->cap set by the
 * caller). Returns 0; -1 when the text is not a percentile distribution
 * (no rows, a malformed row, percentiles going down) or has more than cap
 * rows.
 */
int hist_read_hgrm(FILE *f, hist_hgrm *out);

#endif /* SPIKE_HIST_H */

/*
 * util.h -- the small helpers every micro-benchmark needs: clocks, a
 * median, a power of two, removing a data directory.
 */
#ifndef SPIKE_BENCH_UTIL_H
#define SPIKE_BENCH_UTIL_H

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define BENCH_MEDIAN_MAX 64

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median of n <= BENCH_MEDIAN_MAX values; in is left as it was. */
static inline double median(const double *in, int n) {
  double v[BENCH_MEDIAN_MAX];
  if (n <= 0) return 0;
  if (n > BENCH_MEDIAN_MAX) n = BENCH_MEDIAN_MAX;
  memcpy(v, in, sizeof(double) * (size_t)n);
  qsort(v, (size_t)n, sizeof(*v), bench_cmp_double);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* The smallest power of two >= n, from 4 up to 2^30. */
static inline uint32_t pow2_at_least(uint64_t n) {
  uint32_t p = 4;
  while (p < n && p < (1u << 30)) p <<= 1;
  return p;
}

static inline int bench_rm_entry(const char *path, const struct stat *sb, int flag,
                                 struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static inline void rmrf(const char *path) { nftw(path, bench_rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

#endif /* SPIKE_BENCH_UTIL_H */

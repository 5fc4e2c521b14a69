/*
 * util.h -- the small helpers every micro-benchmark needs: clocks, a
 * median, a power of two, removing a data directory, a flag's value read
 * strictly.
 */
#ifndef SPIKE_BENCH_UTIL_H
#define SPIKE_BENCH_UTIL_H

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
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

/* ---- flags: a bad value names the flag and its range, exit 2 --------- */

static inline const char *bench_prog(char **argv) {
  const char *slash = strrchr(argv[0], '/');
  return slash != NULL ? slash + 1 : argv[0];
}

/* argv[*i] is a flag that takes a value: the value, *i moved onto it. */
static inline const char *bench_arg(int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "%s: %s needs a value\n", bench_prog(argv), argv[*i]);
    exit(2);
  }
  return argv[++*i];
}

/* The flag's value as a whole number in lo..hi written as plain digits
 * (strtoull alone takes a leading space, a sign and trailing junk too). */
static inline uint64_t bench_arg_u64(int argc, char **argv, int *i, uint64_t lo, uint64_t hi) {
  const char *v = bench_arg(argc, argv, i);
  char *end;
  errno = 0;
  unsigned long long x = strtoull(v, &end, 10);
  if (v[0] < '0' || v[0] > '9' || *end != '\0' || errno != 0 || x < lo || x > hi) {
    fprintf(stderr, "%s: %s: \"%s\" is not a whole number in %llu..%llu\n", bench_prog(argv),
            argv[*i - 1], v, (unsigned long long)lo, (unsigned long long)hi);
    exit(2);
  }
  return x;
}

/* The flag's value as a decimal number in (lo, hi] (strtod alone takes a
 * leading space, hex, "inf" and trailing junk too). */
static inline double bench_arg_double(int argc, char **argv, int *i, double lo, double hi) {
  const char *v = bench_arg(argc, argv, i);
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!(isdigit((unsigned char)v[0]) || (v[0] == '.' && isdigit((unsigned char)v[1]))) ||
      strspn(v, "0123456789.eE+-") != strlen(v) || *end != '\0' || errno != 0 || !isfinite(x) ||
      x <= lo || x > hi) {
    fprintf(stderr, "%s: %s: \"%s\" is not a number in (%g, %g]\n", bench_prog(argv), argv[*i - 1],
            v, lo, hi);
    exit(2);
  }
  return x;
}

#endif /* SPIKE_BENCH_UTIL_H */

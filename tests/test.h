/*
 * test.h -- a tiny test runner in the manner of libuv's: every case runs in
 * its own forked process under a time limit, prints one line, and the
 * program ends with "N passed, M failed" and a non-zero exit on failure.
 *
 *   ./build/rel/tests/test_slab            run every case
 *   ./build/rel/tests/test_slab take_cas   run one case, in this process
 *   SPIKE_SEED=1234 ./build/...            replay a randomised case
 *   SPIKE_TEST_TIMEOUT_S=7200 ./build/...  a longer limit for long forms
 */
#ifndef SPIKE_TEST_H
#define SPIKE_TEST_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

typedef struct test_case {
  const char *name;
  void (*fn)(void);
  unsigned timeout_s; /* 0: 60 s */
} test_case;

int test_main(int argc, char **argv, const test_case *cases, size_t n);

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);      \
      abort();                                                                       \
    }                                                                                \
  } while (0)

#define CHECK_EQ(a, b)                                                               \
  do {                                                                               \
    long long a_ = (long long)(a), b_ = (long long)(b);                              \
    if (a_ != b_) {                                                                  \
      fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%lld != %lld)\n", __FILE__, \
              __LINE__, #a, #b, a_, b_);                                             \
      abort();                                                                       \
    }                                                                                \
  } while (0)

#define TEST_LIST(...)                                                               \
  int main(int argc, char **argv) {                                                  \
    static const test_case cases_[] = {__VA_ARGS__};                                 \
    return test_main(argc, argv, cases_, sizeof(cases_) / sizeof(cases_[0]));        \
  }

/* The seed for randomised cases: SPIKE_SEED, or one drawn and printed. */
uint64_t test_seed(void);
/* xorshift64* on a caller's state. */
uint64_t test_rand(uint64_t *state);
/* A fresh empty directory under $TMPDIR (or /tmp); the path is static
 * storage valid until the next call. */
const char *test_tmpdir(const char *tag);
/* rm -rf path. */
void test_rmrf(const char *path);
/* Monotonic milliseconds. */
int64_t test_now_ms(void);
/* fork and exec argv (argv[0] looked up in PATH) with stdout and stderr
 * to log (truncated, or appended to when append), the child killed when
 * the test's process dies. The child's pid. */
pid_t test_spawn(const char *const *argv, const char *log, int append);

#endif /* SPIKE_TEST_H */

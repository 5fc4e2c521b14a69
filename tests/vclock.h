/*
 * vclock.h -- a test binary's own clock_gettime, so that the engine's calls
 * (and the test's) come here: the system's clocks plus offsets the test
 * moves. Include it in exactly one file of a test binary.
 *
 *   vclock_pass(ms)       time passes at once: the wall and the monotonic
 *                         clock both move (expiries come due, no sleep)
 *   vclock_wall_shift(ms) the wall clock alone is shifted by ms from the
 *                         system's (an NTP step, a VM resumed); the
 *                         monotonic clock does not move
 *
 * After vclock_pass, vclock_settle(p) returns once the writer has run a
 * whole cycle that read the clock after the move, so whatever came due
 * then is committed.
 */
#ifndef SPIKE_TEST_VCLOCK_H
#define SPIKE_TEST_VCLOCK_H

#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine_util.h"

static _Atomic int64_t vclock_wall_ms, vclock_mono_ms;

int clock_gettime(clockid_t id, struct timespec *ts) {
  int rc = (int)syscall(SYS_clock_gettime, id, ts);
  if (rc != 0) return rc;
  int64_t off = id == CLOCK_REALTIME    ? atomic_load(&vclock_wall_ms)
                : id == CLOCK_MONOTONIC ? atomic_load(&vclock_mono_ms)
                                        : 0;
  if (off == 0) return 0;
  int64_t ns = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + off * 1000000;
  ts->tv_sec = ns / 1000000000;
  ts->tv_nsec = ns % 1000000000;
  return 0;
}

static inline void vclock_pass(int64_t ms) {
  atomic_fetch_add(&vclock_wall_ms, ms);
  atomic_fetch_add(&vclock_mono_ms, ms);
}

static inline void vclock_wall_shift(int64_t ms) {
  atomic_store(&vclock_wall_ms, ms + atomic_load(&vclock_mono_ms));
}

/* Two feed waits that return at once, one after the other: the second is
 * taken by a cycle that began after the first was answered, so after any
 * vclock_pass made before this call. Its answer comes after that cycle's
 * commit. */
static inline void vclock_settle(spike_producer *p) {
  for (int i = 0; i < 2; i++) {
    spike_op w;
    CHECK_EQ(settle(p, &w, spike_feed_wait(p, &w, 0, 0, count_cb)), SPIKE_OK);
  }
}

#endif /* SPIKE_TEST_VCLOCK_H */

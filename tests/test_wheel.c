/*
 * test_wheel.c -- the hierarchical timing wheel (engine/wheel.h): no entry
 * fires before its deadline and each fires at the first advance that
 * reaches it, across every level boundary and out to the 7-day pay timeout;
 * past deadlines, the pool bound, reuse, growth, wheel_next_ms, and a
 * randomised run against a plain reference list.
 */
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "wheel.h"

#define DAY_MS 86400000ll
#define WEEK_MS (7 * DAY_MS) /* SPIKE_PAY_TIMEOUT_MAX_S */

static void init_bounds(void) {
  wheel w;
  CHECK_EQ(wheel_init(&w, 0, 0), -1);
  CHECK_EQ(wheel_init(&w, WHEEL_NONE, 0), -1);
  CHECK_EQ(wheel_init(&w, 1, 5000), 0);
  CHECK_EQ(wheel_used(&w), 0);
  CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
  uint64_t id = 9;
  int64_t dl = 9;
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  CHECK_EQ(id, 9); /* untouched */
  wheel_advance(&w, 1000000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
  /* One entry: armed, refused at the bound, fired, popped, armed again. */
  CHECK_EQ(wheel_arm(&w, 1, 1000100), 0);
  CHECK_EQ(wheel_used(&w), 1);
  CHECK_EQ(wheel_arm(&w, 2, 1000100), -1);
  wheel_advance(&w, 1000100);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 1);
  CHECK_EQ(dl, 1000100);
  CHECK_EQ(wheel_used(&w), 0);
  CHECK_EQ(wheel_arm(&w, 2, 1000200), 0);
  wheel_free(&w);
}

static void arm_advance_pop(void) {
  wheel w;
  CHECK_EQ(wheel_init(&w, 8, 1000), 0);
  CHECK_EQ(wheel_arm(&w, 11, 1005), 0);
  CHECK_EQ(wheel_arm(&w, 12, 1003), 0);
  CHECK_EQ(wheel_arm(&w, 13, 1010), 0);
  CHECK_EQ(wheel_used(&w), 3);
  uint64_t id;
  int64_t dl;
  wheel_advance(&w, 1002);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  wheel_advance(&w, 1003);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 12);
  CHECK_EQ(dl, 1003);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  CHECK_EQ(wheel_used(&w), 2);
  /* One advance over several deadlines: they come out oldest first. */
  wheel_advance(&w, 2000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 11);
  CHECK_EQ(dl, 1005);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 13);
  CHECK_EQ(dl, 1010);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  CHECK_EQ(wheel_used(&w), 0);
  CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
  /* An advance backwards, or to the same time, changes nothing. */
  CHECK_EQ(wheel_arm(&w, 14, 2001), 0);
  wheel_advance(&w, 1500);
  wheel_advance(&w, 2000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  wheel_advance(&w, 2001);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 14);
  /* Several entries on one deadline all fire together. */
  for (uint64_t i = 0; i < 8; i++)
    CHECK_EQ(wheel_arm(&w, 100 + i, 2100), 0);
  wheel_advance(&w, 2099);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  wheel_advance(&w, 2100);
  unsigned mask = 0;
  while (wheel_pop(&w, &id, &dl)) {
    CHECK_EQ(dl, 2100);
    CHECK(id >= 100 && id < 108);
    CHECK((mask & (1u << (id - 100))) == 0);
    mask |= 1u << (id - 100);
  }
  CHECK_EQ(mask, 0xff);
  wheel_free(&w);
}

static void past_deadline_is_due_at_once(void) {
  wheel w;
  CHECK_EQ(wheel_init(&w, 8, 50000), 0);
  uint64_t id;
  int64_t dl;
  /* Before the wheel's start time. */
  CHECK_EQ(wheel_arm(&w, 1, 49999), 0);
  CHECK(wheel_next_ms(&w) <= 50000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 1);
  CHECK_EQ(dl, 49999);
  CHECK_EQ(wheel_arm(&w, 2, 0), 0);
  CHECK_EQ(wheel_arm(&w, 3, -5), 0);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 2); /* due in the order armed */
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 3);
  CHECK_EQ(dl, -5);
  /* After an advance to now: at or before now is due at once. */
  wheel_advance(&w, 60000);
  CHECK_EQ(wheel_arm(&w, 4, 60000), 0);
  CHECK_EQ(wheel_arm(&w, 5, 59000), 0);
  CHECK(wheel_next_ms(&w) <= 60000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 4);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 5);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  /* One ms later is not. */
  CHECK_EQ(wheel_arm(&w, 6, 60001), 0);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  wheel_advance(&w, 60001);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 6);
  wheel_free(&w);
}

/* Pop everything due at now: each popped entry (id i+1 with deadline
 * dl[i]) is due, popped once, and marked in fired. How many. */
static int collect(wheel *w, int64_t now, const int64_t *dl, char *fired) {
  uint64_t id;
  int64_t got;
  int n = 0;
  while (wheel_pop(w, &id, &got)) {
    CHECK(got <= now);
    CHECK_EQ(got, dl[id - 1]);
    CHECK(!fired[id - 1]);
    fired[id - 1] = 1;
    n++;
  }
  return n;
}

/* Arm one entry per offset from start, then walk to each deadline: at
 * deadline - 1 it is still pending, at the deadline it pops. The walk mixes
 * big steps with single milliseconds. */
static void walk_deadlines(int64_t start, const int64_t *offsets, int n, uint64_t *rs) {
  wheel w;
  CHECK_EQ(wheel_init(&w, (uint32_t)n, start), 0);
  int64_t *dl = malloc(sizeof(int64_t) * (size_t)n);
  CHECK(dl != NULL);
  for (int i = 0; i < n; i++) {
    dl[i] = start + offsets[i];
    CHECK_EQ(wheel_arm(&w, (uint64_t)i + 1, dl[i]), 0);
  }
  /* Sort a copy of the deadlines to walk them in order. */
  int *order = malloc(sizeof(int) * (size_t)n);
  CHECK(order != NULL);
  for (int i = 0; i < n; i++)
    order[i] = i;
  for (int i = 1; i < n; i++)
    for (int k = i; k > 0 && dl[order[k]] < dl[order[k - 1]]; k--) {
      int t = order[k];
      order[k] = order[k - 1];
      order[k - 1] = t;
    }
  int64_t now = start;
  char *fired = calloc((size_t)n, 1);
  CHECK(fired != NULL);
  int nfired = 0;
  for (int oi = 0; oi < n; oi++) {
    int64_t d = dl[order[oi]];
    if (d - 1 > now) {
      /* A few random big steps, then small ones, up to d - 1. */
      while (d - 1 - now > 1000) {
        int64_t gap = d - 1 - now;
        now += 1 + (int64_t)(test_rand(rs) % (uint64_t)gap);
        wheel_advance(&w, now);
        nfired += collect(&w, now, dl, fired);
        if (d - 1 - now > 1000 && test_rand(rs) % 2) break;
      }
      while (now < d - 1) {
        now += 1 + (int64_t)(test_rand(rs) % 100);
        if (now > d - 1) now = d - 1;
        wheel_advance(&w, now);
        nfired += collect(&w, now, dl, fired);
      }
      CHECK(!fired[order[oi]]); /* never early */
    }
    if (d > now) now = d;
    wheel_advance(&w, now);
    nfired += collect(&w, now, dl, fired);
    CHECK(fired[order[oi]]); /* at the first advance that reaches it */
    /* Everything due by now has fired. */
    for (int k = 0; k < n; k++)
      CHECK_EQ(fired[k], dl[k] <= now);
  }
  CHECK_EQ(nfired, n);
  CHECK_EQ(wheel_used(&w), 0);
  CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
  free(fired);
  free(order);
  free(dl);
  wheel_free(&w);
}

static void level_boundaries(void) {
  /* Every level edge up to level 3 (64^k - 1, 64^k, 64^k + 1) and a spread
   * in between, from starts that are aligned and not aligned to the level
   * spans. Level 4 (2^24 ms) is in minutes_hours_week: each walk costs one
   * tick per millisecond. */
  int64_t offs[200];
  int n = 0;
  for (int k = 1; k <= 3; k++) {
    int64_t edge = 1ll << (6 * k);
    offs[n++] = edge - 1;
    offs[n++] = edge;
    offs[n++] = edge + 1;
    offs[n++] = 2 * edge - 1;
    offs[n++] = 2 * edge;
    if (k < 3) offs[n++] = 63 * edge + 1;
  }
  for (int64_t d = 0; d < 70; d++)
    offs[n++] = d;
  for (int64_t d = 4030; d < 4040; d++)
    offs[n++] = d;
  for (int64_t d = 4090; d < 4100; d++)
    offs[n++] = d;
  for (int64_t d = 262140; d < 262150; d++)
    offs[n++] = d;
  CHECK(n <= 200);
  uint64_t seed = test_seed(), rs = seed;
  static const int64_t starts[] = {
      0, 1, 63, 64, 65, 4095, 4096, 262143, 1ll << 24, (1ll << 30) - 1, 1ll << 30, 1700000000123ll};
  for (size_t s = 0; s < sizeof(starts) / sizeof(starts[0]); s++)
    walk_deadlines(starts[s], offs, n, &rs);
}

/* The wheel walks one tick per millisecond while anything is armed, so a
 * 7-day walk is 6e8 ticks: about 1.5 s here, 3 s under ASan, but 17 s under
 * TSan. The wheel is single-threaded (TSan has nothing to find in it; run.sh
 * runs this file under ASan), so a TSan build walks one day instead, which
 * still crosses every level including the top one (2^24 ms, 4.7 hours). */
#if defined(__SANITIZE_THREAD__)
#define LONGEST_MS DAY_MS
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define LONGEST_MS DAY_MS
#endif
#endif
#ifndef LONGEST_MS
#define LONGEST_MS WEEK_MS
#endif

static void minutes_hours_week(void) {
  /* Pay timeouts as they are configured: minutes, hours, days, up to the
   * 7-day maximum, with neighbours one ms either side. One walk covers them
   * all, in big steps and small. */
  static const int64_t base[] = {60000,       300000,        900000, 3600000,    4 * 3600000ll,
                                 (1ll << 24), 6 * 3600000ll, DAY_MS, 3 * DAY_MS, WEEK_MS};
  int64_t offs[3 * 10];
  int n = 0;
  for (int i = 0; i < 10; i++) {
    if (base[i] > LONGEST_MS) continue;
    offs[n++] = base[i] - 1;
    offs[n++] = base[i];
    offs[n++] = base[i] + 1;
  }
  uint64_t seed = test_seed(), rs = seed;
  walk_deadlines(1700000000123ll, offs, n, &rs);
}

static void capacity_and_reuse(void) {
  wheel w;
  CHECK_EQ(wheel_init(&w, 4, 0), 0);
  for (uint64_t i = 1; i <= 4; i++)
    CHECK_EQ(wheel_arm(&w, i, (int64_t)i * 10), 0);
  CHECK_EQ(wheel_arm(&w, 5, 100), -1);
  CHECK_EQ(wheel_arm(&w, 5, -1), -1); /* even a due one needs an entry */
  CHECK_EQ(wheel_used(&w), 4);
  /* Due but not popped still holds its entry. */
  wheel_advance(&w, 25);
  CHECK_EQ(wheel_used(&w), 4);
  CHECK_EQ(wheel_arm(&w, 5, 100), -1);
  uint64_t id;
  int64_t dl;
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 1);
  CHECK_EQ(wheel_used(&w), 3);
  /* A popped entry is free for the next arm, with its new values. */
  CHECK_EQ(wheel_arm(&w, 6, 26), 0);
  CHECK_EQ(wheel_arm(&w, 7, 26), -1);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 2);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  wheel_advance(&w, 26);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 6);
  CHECK_EQ(dl, 26);
  /* Many generations through a small pool. */
  int64_t now = 26;
  uint64_t next_id = 1000;
  for (int gen = 0; gen < 2000; gen++) {
    while (wheel_used(&w) < 4)
      CHECK_EQ(wheel_arm(&w, next_id++, now + 1 + gen % 7), 0);
    CHECK_EQ(wheel_arm(&w, 1, now + 1), -1);
    now += 3;
    wheel_advance(&w, now);
    while (wheel_pop(&w, &id, &dl))
      CHECK(dl <= now);
  }
  now += 10;
  wheel_advance(&w, now);
  while (wheel_pop(&w, &id, &dl))
    CHECK(dl <= now);
  CHECK_EQ(wheel_used(&w), 0);
  wheel_free(&w);
}

static void grow_keeps_armed(void) {
  wheel w;
  CHECK_EQ(wheel_init(&w, 3, 1000), 0);
  CHECK_EQ(wheel_arm(&w, 1, 900), 0);    /* due */
  CHECK_EQ(wheel_arm(&w, 2, 1050), 0);   /* level 0 */
  CHECK_EQ(wheel_arm(&w, 3, 100000), 0); /* level 2 */
  CHECK_EQ(wheel_arm(&w, 4, 2000), -1);
  CHECK_EQ(wheel_grow(&w, 3), -1); /* not larger */
  CHECK_EQ(wheel_grow(&w, 2), -1);
  CHECK_EQ(wheel_grow(&w, WHEEL_NONE), -1);
  CHECK_EQ(wheel_grow(&w, 6), 0);
  CHECK_EQ(wheel_used(&w), 3);
  CHECK_EQ(wheel_arm(&w, 4, 2000), 0);
  CHECK_EQ(wheel_arm(&w, 5, 5000), 0);
  CHECK_EQ(wheel_arm(&w, 6, 1001), 0);
  CHECK_EQ(wheel_arm(&w, 7, 1001), -1);
  uint64_t id;
  int64_t dl;
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 1);
  CHECK_EQ(dl, 900);
  /* Grow again with a partly used free list (one entry free). */
  CHECK_EQ(wheel_grow(&w, 64), 0);
  for (uint64_t i = 0; i < 59; i++)
    CHECK_EQ(wheel_arm(&w, 100 + i, 3000 + (int64_t)i), 0);
  CHECK_EQ(wheel_arm(&w, 7, 1001), -1);
  CHECK_EQ(wheel_used(&w), 64);
  /* Everything armed before and after the grows fires at its deadline. */
  int got = 0;
  for (int64_t now = 1000; now <= 100000; now++) {
    wheel_advance(&w, now);
    while (wheel_pop(&w, &id, &dl)) {
      CHECK_EQ(dl, now);
      if (id == 2) CHECK_EQ(dl, 1050);
      if (id == 3) CHECK_EQ(dl, 100000);
      if (id == 4) CHECK_EQ(dl, 2000);
      if (id == 5) CHECK_EQ(dl, 5000);
      if (id == 6) CHECK_EQ(dl, 1001);
      if (id >= 100) CHECK_EQ(dl, 3000 + (int64_t)(id - 100));
      got++;
    }
  }
  CHECK_EQ(got, 64);
  CHECK_EQ(wheel_used(&w), 0);
  wheel_free(&w);
}

static void next_ms_properties(void) {
  wheel w;
  CHECK_EQ(wheel_init(&w, 16, 1001), 0);
  CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
  /* Level-0 entries: the earliest deadline exactly. */
  CHECK_EQ(wheel_arm(&w, 1, 1030), 0);
  int64_t next = wheel_next_ms(&w);
  CHECK(next > 1000 && next <= 1030); /* 1024 (a cascade point) or 1030 */
  CHECK_EQ(wheel_arm(&w, 2, 1010), 0);
  CHECK_EQ(wheel_next_ms(&w), 1010);
  wheel_advance(&w, 1009);
  CHECK_EQ(wheel_next_ms(&w), 1010);
  /* Something due: now (at most). */
  wheel_advance(&w, 1010);
  CHECK(wheel_next_ms(&w) <= 1010);
  uint64_t id;
  int64_t dl;
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  next = wheel_next_ms(&w);
  CHECK(next > 1010 && next <= 1030);
  wheel_advance(&w, 1029);
  CHECK_EQ(wheel_next_ms(&w), 1030);
  wheel_advance(&w, 1030);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
  /* A far entry: a time in the future no later than its deadline, and
   * stepping to each answer in turn reaches it without skipping past. */
  CHECK_EQ(wheel_arm(&w, 3, 1030 + 500000), 0);
  CHECK_EQ(wheel_arm(&w, 4, 1030 + 7000), 0);
  int64_t now = 1030, steps = 0;
  uint64_t seen = 0;
  while (seen < 2) {
    int64_t next = wheel_next_ms(&w);
    CHECK(next > now);
    CHECK(next <= (seen == 0 ? 1030 + 7000 : 1030 + 500000));
    now = next;
    wheel_advance(&w, now);
    while (wheel_pop(&w, &id, &dl)) {
      CHECK_EQ(dl, now); /* stepping by next_ms lands on the deadline exactly */
      seen++;
    }
    steps++;
  }
  CHECK(steps < 500000); /* it skips ahead, not one ms at a time */
  CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
  wheel_free(&w);
}

/* ---- randomised against a reference -------------------------------------- */

typedef struct ref_entry {
  uint64_t id;
  int64_t dl;
} ref_entry;

static void random_vs_reference(void) {
  uint64_t seed = test_seed(), rs = seed;
  enum { CAP = 512 };
  for (int run = 0; run < 6; run++) {
    int64_t now = (int64_t)(test_rand(&rs) % (1ull << 40));
    wheel w;
    CHECK_EQ(wheel_init(&w, CAP, now), 0);
    /* Advance to the start time first, as the writer does, so that "at or
     * before now" below means due at once (wheel.h). */
    wheel_advance(&w, now);
    ref_entry ref[CAP];
    int nref = 0;
    uint64_t next_id = 1;
    int64_t end = now + 3000000 + (int64_t)(test_rand(&rs) % 3000000);
    while (now < end) {
      /* Arm a few. */
      int arms = (int)(test_rand(&rs) % 6);
      for (int a = 0; a < arms; a++) {
        uint64_t r = test_rand(&rs) % 100;
        int64_t dl;
        if (r < 5)
          dl = now - (int64_t)(test_rand(&rs) % 100); /* at or before now */
        else if (r < 60)
          dl = now + 1 + (int64_t)(test_rand(&rs) % 200);
        else if (r < 90)
          dl = now + 1 + (int64_t)(test_rand(&rs) % 20000);
        else
          dl = now + 1 + (int64_t)(test_rand(&rs) % 2000000);
        int rc = wheel_arm(&w, next_id, dl);
        if (nref == CAP) {
          CHECK_EQ(rc, -1);
          continue;
        }
        CHECK_EQ(rc, 0);
        if (dl <= now) {
          /* Straight to due: it pops at once, nothing else is due. */
          uint64_t id;
          int64_t got;
          CHECK_EQ(wheel_pop(&w, &id, &got), 1);
          CHECK_EQ(id, next_id);
          CHECK_EQ(got, dl);
          uint64_t id2;
          CHECK_EQ(wheel_pop(&w, &id2, &got), 0);
        } else {
          ref[nref].id = next_id;
          ref[nref].dl = dl;
          nref++;
        }
        next_id++;
      }
      /* Disarm a few (a pay or a cancel), and one that was never armed. */
      int cancels = (int)(test_rand(&rs) % 3);
      for (int c = 0; c < cancels && nref > 0; c++) {
        int k = (int)(test_rand(&rs) % (uint64_t)nref);
        CHECK_EQ(wheel_cancel(&w, ref[k].id), 0);
        CHECK_EQ(wheel_cancel(&w, ref[k].id), -1);
        ref[k] = ref[--nref];
      }
      CHECK_EQ(wheel_cancel(&w, next_id + 1000000), -1);
      CHECK_EQ(wheel_used(&w), nref);
      /* The writer sleeps until wheel_next_ms: never past the earliest. */
      int64_t earliest = INT64_MAX;
      for (int k = 0; k < nref; k++)
        if (ref[k].dl < earliest) earliest = ref[k].dl;
      CHECK(wheel_next_ms(&w) <= earliest);
      /* Advance: mostly small steps, sometimes a big one. */
      uint64_t r = test_rand(&rs) % 100;
      if (r < 70)
        now += (int64_t)(test_rand(&rs) % 50);
      else if (r < 95)
        now += (int64_t)(test_rand(&rs) % 5000);
      else
        now += (int64_t)(test_rand(&rs) % 200000);
      wheel_advance(&w, now);
      uint64_t id;
      int64_t got, prev = INT64_MIN;
      while (wheel_pop(&w, &id, &got)) {
        CHECK(got <= now);
        CHECK(got >= prev); /* one advance releases in deadline order */
        prev = got;
        int k;
        for (k = 0; k < nref && ref[k].id != id; k++) {
        }
        CHECK(k < nref); /* armed, and not popped before */
        CHECK_EQ(ref[k].dl, got);
        ref[k] = ref[--nref];
      }
      /* Nothing due is left behind. */
      for (int k = 0; k < nref; k++)
        CHECK(ref[k].dl > now);
      CHECK_EQ(wheel_used(&w), nref);
    }
    /* Run out the clock: everything still armed fires, at its deadline. */
    while (nref > 0) {
      int64_t first = INT64_MAX;
      for (int k = 0; k < nref; k++)
        if (ref[k].dl < first) first = ref[k].dl;
      wheel_advance(&w, first - 1);
      uint64_t id;
      int64_t got;
      CHECK_EQ(wheel_pop(&w, &id, &got), 0);
      now = first;
      wheel_advance(&w, now);
      int popped = 0;
      while (wheel_pop(&w, &id, &got)) {
        CHECK_EQ(got, now);
        int k;
        for (k = 0; k < nref && ref[k].id != id; k++) {
        }
        CHECK(k < nref);
        ref[k] = ref[--nref];
        popped++;
      }
      CHECK(popped > 0);
    }
    CHECK_EQ(wheel_used(&w), 0);
    CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
    wheel_free(&w);
  }
}

/* ---- disarm and long advances ------------------------------------------- */

static void cancel_anywhere(void) {
  wheel w;
  CHECK_EQ(wheel_init(&w, 16, 1000), 0);
  /* Three on one slot (head, middle, tail), one far, two due. */
  CHECK_EQ(wheel_arm(&w, 1, 1010), 0);
  CHECK_EQ(wheel_arm(&w, 2, 1010), 0);
  CHECK_EQ(wheel_arm(&w, 3, 1010), 0);
  CHECK_EQ(wheel_arm(&w, 4, 1000 + 3600000), 0);
  CHECK_EQ(wheel_arm(&w, 5, 900), 0);
  CHECK_EQ(wheel_arm(&w, 6, 901), 0);
  CHECK_EQ(wheel_used(&w), 6);
  CHECK_EQ(wheel_cancel(&w, 2), 0); /* middle of a slot */
  CHECK_EQ(wheel_cancel(&w, 3), 0); /* head of a slot (last armed) */
  CHECK_EQ(wheel_cancel(&w, 5), 0); /* head of the due list */
  CHECK_EQ(wheel_cancel(&w, 4), 0); /* a high level */
  CHECK_EQ(wheel_cancel(&w, 4), -1);
  CHECK_EQ(wheel_cancel(&w, 99), -1);
  CHECK_EQ(wheel_used(&w), 2);
  uint64_t id;
  int64_t dl;
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 6);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  wheel_advance(&w, 5000000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 1);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  CHECK_EQ(wheel_used(&w), 0);
  CHECK_EQ(wheel_next_ms(&w), INT64_MAX);
  /* Freed entries are reusable, and an id can be armed again. */
  for (uint64_t i = 1; i <= 16; i++) CHECK_EQ(wheel_arm(&w, i, 6000000 + (int64_t)i), 0);
  CHECK_EQ(wheel_arm(&w, 17, 6000000), -1);
  for (uint64_t i = 1; i <= 16; i += 2) CHECK_EQ(wheel_cancel(&w, i), 0);
  for (uint64_t i = 2; i <= 16; i += 2) CHECK_EQ(wheel_cancel(&w, i), 0);
  CHECK_EQ(wheel_used(&w), 0);
  wheel_free(&w);
}

/* A jump of a month does not walk 2.6 billion ticks, and what came due
 * comes out in deadline order. */
static void long_advance_leaps(void) {
  wheel w;
  enum { N = 2000 };
  CHECK_EQ(wheel_init(&w, N, 0), 0);
  uint64_t rs = test_seed();
  for (uint64_t i = 1; i <= N; i++)
    CHECK_EQ(wheel_arm(&w, i, 1 + (int64_t)(test_rand(&rs) % (2 * WEEK_MS))), 0);
  int64_t t0 = test_now_ms();
  wheel_advance(&w, WEEK_MS);
  uint64_t id;
  int64_t dl, prev = 0;
  uint32_t fired = 0;
  while (wheel_pop(&w, &id, &dl)) {
    CHECK(dl <= WEEK_MS);
    CHECK(dl >= prev);
    prev = dl;
    fired++;
  }
  CHECK(fired > 0 && fired < N);
  CHECK_EQ(wheel_used(&w), N - fired);
  wheel_advance(&w, 30 * DAY_MS);
  while (wheel_pop(&w, &id, &dl)) {
    CHECK(dl > WEEK_MS);
    CHECK(dl >= prev);
    prev = dl;
    fired++;
  }
  CHECK_EQ(fired, N);
  CHECK(test_now_ms() - t0 < 5000); /* walking 2.6e9 ticks takes far longer */
  wheel_free(&w);
}

/* The clock steps back 30 s: what is armed after the step is due 5 s after
 * it, not at once; what was armed before is due when the clock gets back to
 * its deadline. */
static void step_back_rebases(void) {
  wheel w;
  int64_t t = 1700000000000ll;
  CHECK_EQ(wheel_init(&w, 8, t), 0);
  wheel_advance(&w, t);
  CHECK_EQ(wheel_arm(&w, 1, t + 5000), 0);
  wheel_advance(&w, t + 1000);
  int64_t back = t + 1000 - 30000;
  wheel_advance(&w, back);
  CHECK_EQ(wheel_arm(&w, 2, back + 5000), 0);
  uint64_t id;
  int64_t dl;
  wheel_advance(&w, back + 4999);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  CHECK(wheel_next_ms(&w) <= back + 5000);
  wheel_advance(&w, back + 5000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 2);
  wheel_advance(&w, t + 4999);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  wheel_advance(&w, t + 5000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 1);
  /* A step back with nothing armed, then an arm: still not due early. */
  wheel_advance(&w, t - 100000);
  CHECK_EQ(wheel_arm(&w, 3, t - 99000), 0);
  wheel_advance(&w, t - 99001);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 0);
  wheel_advance(&w, t - 99000);
  CHECK_EQ(wheel_pop(&w, &id, &dl), 1);
  CHECK_EQ(id, 3);
  wheel_free(&w);
}

TEST_LIST({"init_bounds", init_bounds, 0}, {"arm_advance_pop", arm_advance_pop, 0},
          {"past_deadline_is_due_at_once", past_deadline_is_due_at_once, 0},
          {"level_boundaries", level_boundaries, 0}, {"minutes_hours_week", minutes_hours_week, 60},
          {"capacity_and_reuse", capacity_and_reuse, 0}, {"grow_keeps_armed", grow_keeps_armed, 0},
          {"next_ms_properties", next_ms_properties, 0},
          {"random_vs_reference", random_vs_reference, 0},
          {"cancel_anywhere", cancel_anywhere, 0},
          {"long_advance_leaps", long_advance_leaps, 0},
          {"step_back_rebases", step_back_rebases, 0})

/*
 * bench_ring.c -- throughput of the SPSC ring (engine/ring.h) with one
 * producer thread and one consumer thread, for the engine's 64-byte message
 * slots (MSG_SLOT_BYTES) and for 8-byte messages.
 *
 * The producer does what spike_reserve does: ring_acquire, fill the slot,
 * ring_publish, one message at a time. The consumer does what the writer
 * does: ring_peek, read every ready slot with ring_at, ring_release the
 * batch. Every message carries its sequence number and the consumer checks
 * it, so a lost or reordered message aborts the run.
 *
 * Reference: one thread copying the same messages into a buffer of the
 * ring's size (the bytes a ring moves, with no second core and no index
 * traffic). The ratio ring / reference says what the cross-core hand-off
 * costs on top of the copy. Results are medians of --reps runs.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"
#include "engine.h"
#include "ring.h"

#define RING_SLOTS 8192u /* the engine's default ring_size */
#define REPS_MAX 15

static void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

typedef struct run {
  ring r;
  uint32_t elem;  /* message bytes: 8 or 64 */
  uint64_t msgs;  /* messages per run */
  int pin;        /* pin producer to CPU 0, consumer to CPU 1 */
  _Atomic int go; /* both threads spin on this so they start together */
  uint64_t full_spins, empty_spins, batches;
  uint64_t sum; /* consumer's checksum, kept so the reads stay */
} run;

static void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set); /* best effort */
}

static void *producer_main(void *arg) {
  run *b = arg;
  if (b->pin) pin_to(0);
  unsigned char tmpl[MSG_SLOT_BYTES];
  memset(tmpl, 0xab, sizeof(tmpl));
  uint64_t spins = 0;
  /* acquire: pairs with the release in main; the ring is set up. */
  while (!atomic_load_explicit(&b->go, memory_order_acquire))
    cpu_relax();
  for (uint64_t i = 0; i < b->msgs; i++) {
    unsigned char *slot;
    while ((slot = ring_acquire(&b->r)) == NULL) {
      spins++;
      cpu_relax();
    }
    memcpy(tmpl, &i, sizeof(i));
    memcpy(slot, tmpl, b->elem);
    ring_publish(&b->r);
  }
  b->full_spins = spins;
  return NULL;
}

static void *consumer_main(void *arg) {
  run *b = arg;
  if (b->pin) pin_to(1);
  unsigned char out[MSG_SLOT_BYTES];
  uint64_t next = 0, sum = 0, spins = 0, batches = 0;
  while (!atomic_load_explicit(&b->go, memory_order_acquire))
    cpu_relax();
  while (next < b->msgs) {
    uint32_t n = ring_peek(&b->r);
    if (n == 0) {
      spins++;
      cpu_relax();
      continue;
    }
    for (uint32_t i = 0; i < n; i++) {
      memcpy(out, ring_at(&b->r, i), b->elem);
      uint64_t seq;
      memcpy(&seq, out, sizeof(seq));
      if (seq != next) {
        fprintf(stderr, "bench_ring: message %llu arrived as %llu\n", (unsigned long long)next,
                (unsigned long long)seq);
        abort();
      }
      sum += out[b->elem - 1];
      next++;
    }
    ring_release(&b->r, n);
    batches++;
  }
  b->empty_spins = spins;
  b->batches = batches;
  b->sum = sum;
  return NULL;
}

/* Messages per second through the ring, one run. */
static double ring_once(uint32_t elem, uint64_t msgs, int pin, run *b) {
  memset(b, 0, sizeof(*b));
  if (ring_init(&b->r, RING_SLOTS, elem) != 0) {
    fprintf(stderr, "bench_ring: ring_init failed\n");
    exit(1);
  }
  /* Touch the slots once so page faults are not part of the timing. */
  memset(b->r.slots, 0, (size_t)RING_SLOTS * elem);
  b->elem = elem;
  b->msgs = msgs;
  b->pin = pin;
  pthread_t prod, cons;
  if (pthread_create(&cons, NULL, consumer_main, b) != 0 ||
      pthread_create(&prod, NULL, producer_main, b) != 0) {
    fprintf(stderr, "bench_ring: pthread_create: %s\n", strerror(errno));
    exit(1);
  }
  usleep(1000);
  uint64_t t0 = now_ns();
  /* release: pairs with the threads' acquire of go. */
  atomic_store_explicit(&b->go, 1, memory_order_release);
  pthread_join(prod, NULL);
  pthread_join(cons, NULL);
  uint64_t ns = now_ns() - t0;
  ring_free(&b->r);
  return (double)msgs / ((double)ns / 1e9);
}

/* Messages per second copying the same bytes into a ring-sized buffer on
 * one thread. */
static double memcpy_once(uint32_t elem, uint64_t msgs) {
  unsigned char *buf = aligned_alloc(RING_CACHE_LINE, (size_t)RING_SLOTS * elem);
  if (buf == NULL) exit(1);
  memset(buf, 0, (size_t)RING_SLOTS * elem);
  unsigned char tmpl[MSG_SLOT_BYTES];
  memset(tmpl, 0xab, sizeof(tmpl));
  uint64_t t0 = now_ns();
  for (uint64_t i = 0; i < msgs; i++) {
    memcpy(tmpl, &i, sizeof(i));
    memcpy(buf + (size_t)(i & (RING_SLOTS - 1)) * elem, tmpl, elem);
    /* Keep each copy: the compiler may not fold the loop into its last
     * iteration. */
    __asm__ __volatile__("" : : "r"(buf) : "memory");
  }
  uint64_t ns = now_ns() - t0;
  free(buf);
  return (double)msgs / ((double)ns / 1e9);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_ring [--reps N] [--msgs N] [--no-pin]\n"
          "  SPSC ring throughput (engine/ring.h), one producer and one consumer\n"
          "  thread, %u slots, for %d-byte and 8-byte messages, against a one-thread\n"
          "  memcpy of the same bytes into a buffer of the same size.\n"
          "  --reps N    runs per measurement, 1..%d; the median is reported (default 5)\n"
          "  --msgs N    messages per run, %u or more (default 10000000)\n"
          "  --no-pin    do not pin the producer to CPU 0 and the consumer to CPU 1\n"
          "Output: one line per run, then one summary line per message size:\n"
          "  summary<TAB>what<TAB>value<TAB>reference<TAB>ratio\n",
          RING_SLOTS, MSG_SLOT_BYTES, REPS_MAX, RING_SLOTS);
}

int main(int argc, char **argv) {
  int reps = 5, pin = sysconf(_SC_NPROCESSORS_ONLN) >= 2;
  uint64_t msgs = 10000000;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--reps") == 0) {
      reps = (int)bench_arg_u64(argc, argv, &i, 1, REPS_MAX);
    } else if (strcmp(argv[i], "--msgs") == 0) {
      msgs = bench_arg_u64(argc, argv, &i, RING_SLOTS, UINT64_MAX);
    } else if (strcmp(argv[i], "--no-pin") == 0) {
      pin = 0;
    } else {
      fprintf(stderr, "bench_ring: %s \"%s\"\n",
              argv[i][0] == '-' ? "unknown flag" : "unexpected argument", argv[i]);
      usage(stderr);
      return 2;
    }
  }
  printf("bench_ring: %u slots, %llu messages per run, %d runs, threads %s\n", RING_SLOTS,
         (unsigned long long)msgs, reps, pin ? "pinned to CPUs 0 and 1" : "not pinned");
  static const uint32_t sizes[] = {MSG_SLOT_BYTES, 8};
  run b;
  for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
    uint32_t elem = sizes[s];
    double rv[REPS_MAX], mv[REPS_MAX];
    for (int r = 0; r < reps; r++) {
      /* Alternate the two so drifting machine load hits both alike. */
      rv[r] = ring_once(elem, msgs, pin, &b);
      mv[r] = memcpy_once(elem, msgs);
      printf("ring %2u B run %d: %8.2f M msgs/s (%.1f msgs per consumer batch, "
             "%llu full spins, %llu empty spins); memcpy %8.2f M msgs/s\n",
             elem, r + 1, rv[r] / 1e6, b.batches ? (double)msgs / (double)b.batches : 0.0,
             (unsigned long long)b.full_spins, (unsigned long long)b.empty_spins, mv[r] / 1e6);
    }
    double rm = median(rv, reps), mm = median(mv, reps);
    printf("ring %2u B: %.2f M msgs/s (%.2f GB/s), median of %d; reference memcpy %.2f M "
           "msgs/s; ratio %.3f\n",
           elem, rm / 1e6, rm * elem / 1e9, reps, mm / 1e6, rm / mm);
    printf("summary\tring SPSC %u B msgs\t%.2f M msgs/s\t%.2f M msgs/s (1-thread memcpy)\t%.3f\n",
           elem, rm / 1e6, mm / 1e6, rm / mm);
  }
  return 0;
}

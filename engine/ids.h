/*
 * ids.h -- 64-bit, time-ordered ids that are never reused.
 *
 * Layout: unix milliseconds << 20 | producer << 14 | sequence. Each producer
 * mints from its own generator with no shared atomic, so ids from different
 * threads never collide and never contend; ids from one producer strictly
 * increase. When a producer mints more than 16,384 ids in one millisecond it
 * borrows the next millisecond, so ids can run ahead of the clock under a
 * burst, never behind their predecessors.
 *
 * Across restarts: the writer persists a high-water mark (the largest id any
 * producer had minted when a batch committed). On open every generator
 * starts at max(now, hwm + IDS_RESTART_GAP_MS), which also covers ids that
 * were minted, acknowledged with ack=memory and lost in a crash, as long as
 * the wall clock did not step back by more than the gap. The open stores
 * that floor as the mark before any id is minted: a restart within the gap
 * mints at the floor, ahead of the clock, and a life that died before its
 * first commit must not hand the next the same floor.
 */
#ifndef SPIKE_IDS_H
#define SPIKE_IDS_H

#include <stdatomic.h>
#include <stdint.h>

#define IDS_SEQ_BITS 14
#define IDS_PRODUCER_BITS 6
#define IDS_MS_SHIFT (IDS_SEQ_BITS + IDS_PRODUCER_BITS)
#define IDS_SEQ_MAX ((1u << IDS_SEQ_BITS) - 1)
#define IDS_PRODUCERS (1u << IDS_PRODUCER_BITS)
#define IDS_RESTART_GAP_MS 1000

typedef struct ids {
  int64_t ms;            /* millisecond of the last id */
  uint32_t seq;          /* next sequence number within ms */
  uint32_t producer;     /* 0 .. IDS_PRODUCERS-1 */
  _Atomic uint64_t last; /* the last id minted; read by the writer */
} ids;

/* Start a generator for producer whose first id is above floor_ms. */
void ids_init(ids *g, uint32_t producer, int64_t floor_ms);
/* ids_init for a generator that minted last before (0: nothing), which
 * stays its last id until it mints again; floor_ms is above last's ms. */
void ids_resume(ids *g, uint32_t producer, int64_t floor_ms, uint64_t last);

/* The next id; now_ms is the caller's clock. Owner thread only. */
uint64_t ids_next(ids *g, int64_t now_ms);

/* The first millisecond a restarted engine may mint in. */
int64_t ids_floor_ms(uint64_t hwm, int64_t now_ms);

static inline int64_t ids_ms(uint64_t id) { return (int64_t)(id >> IDS_MS_SHIFT); }
/* The producer that minted id. */
static inline uint32_t ids_producer(uint64_t id) {
  return (uint32_t)(id >> IDS_SEQ_BITS) & (IDS_PRODUCERS - 1);
}

#endif /* SPIKE_IDS_H */

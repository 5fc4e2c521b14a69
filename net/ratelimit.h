/*
 * ratelimit.h -- per-client token buckets, one table per loop thread.
 *
 * A direct-mapped table keyed by a hash of the client's address: a bucket
 * holds `burst` tokens and refills at `rate` per second; a request takes
 * one. Two clients whose hashes collide share a slot and the newer one
 * resets it, so a collision can only ever let a request through, never
 * refuse one wrongly. Memory: 16 bytes x slots, allocated at start-up.
 * Each loop has its own table: a client spread over N loop threads may get
 * up to N x rate.
 */
#ifndef SPIKE_RATELIMIT_H
#define SPIKE_RATELIMIT_H

#include <stdint.h>

typedef struct rl_slot {
  uint64_t key;
  uint32_t tokens_milli; /* tokens x 1000 */
  uint32_t last_ms;      /* low 32 bits of the last refill time */
} rl_slot;

typedef struct ratelimit {
  rl_slot *slot;
  uint32_t mask;
  uint32_t rate;  /* tokens per second; 0: no limit */
  uint32_t burst; /* bucket size */
} ratelimit;

/* slots: a power of two. rate 0 disables the limiter (no memory). */
int rl_init(ratelimit *r, uint32_t slots, uint32_t rate, uint32_t burst);
void rl_free(ratelimit *r);

/* 1 when key may make a request at now_ms (a token is taken), else 0. */
int rl_allow(ratelimit *r, uint64_t key, uint64_t now_ms);

#endif /* SPIKE_RATELIMIT_H */

/*
 * ratelimit.c -- token buckets in fixed point; see ratelimit.h.
 */
#include "ratelimit.h"

#include <stdlib.h>

int rl_init(ratelimit *r, uint32_t slots, uint32_t rate, uint32_t burst) {
  r->slot = NULL;
  r->mask = 0;
  r->rate = rate;
  r->burst = burst ? burst : rate;
  if (rate == 0) return 0;
  if (slots < 2 || (slots & (slots - 1)) != 0) return -1;
  r->slot = calloc(slots, sizeof(rl_slot));
  if (r->slot == NULL) return -1;
  r->mask = slots - 1;
  return 0;
}

void rl_free(ratelimit *r) {
  free(r->slot);
  r->slot = NULL;
}

int rl_allow(ratelimit *r, uint64_t key, uint64_t now_ms) {
  if (r->rate == 0) return 1;
  uint64_t cap = (uint64_t)r->burst * 1000;
  /* a slot counts in 32 bits: a larger bucket (--rate-burst past 4294967)
   * wrapped to nearly nothing after a pause, and refused at once */
  if (cap > UINT32_MAX) cap = UINT32_MAX;
  rl_slot *s = &r->slot[(key ^ (key >> 29)) & r->mask];
  uint32_t now = (uint32_t)now_ms;
  if (s->key != key) {
    s->key = key;
    s->tokens_milli = (uint32_t)cap;
    s->last_ms = now;
  }
  uint64_t refill = (uint64_t)(uint32_t)(now - s->last_ms) * r->rate; /* milli-tokens */
  uint64_t t = s->tokens_milli + refill;
  if (t > cap) t = cap;
  s->last_ms = now;
  if (t < 1000) {
    s->tokens_milli = (uint32_t)t;
    return 0;
  }
  s->tokens_milli = (uint32_t)(t - 1000);
  return 1;
}

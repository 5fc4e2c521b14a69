/*
 * recover.h -- rebuild the engine's memory from LMDB at open.
 */
#ifndef SPIKE_RECOVER_H
#define SPIKE_RECOVER_H

#include <stddef.h>

#include "engine.h"

/*
 * Load every event into the slab and the writer's committed counters, the
 * units each buyer holds, the idempotency keys, the expiry timers of
 * reserved orders, the feed's bounds and the id high-water mark. Checks that
 * each event's stored reserved and sold equal the sums over its orders.
 * Returns SPIKE_OK, or a status with a sentence in err: SPIKE_EINVAL (a
 * table configured too small for what is on disk), SPIKE_ESTORAGE (LMDB
 * failed or a record is corrupt).
 */
int recover(spike_engine *e, char *err, size_t errlen);

/* Orders recovery reads ahead of the one it applies (recover.c). */
#define RECOVER_AHEAD 32

#endif /* SPIKE_RECOVER_H */

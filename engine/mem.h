/*
 * mem.h -- large allocations for the engine's tables, made at open.
 *
 * A table probed at random (the buyer, key and user tables, the expiry
 * wheel's index) is mapped in huge pages where the kernel has them and
 * populated now: lazily mapped, it costs a page fault on the first probe of
 * every 4 KiB and a TLB miss on most probes after, on the hot path. A table
 * filled from its start (the wheel's entry pool) is mapped in huge pages,
 * its first part populated now and the rest left to fault in as it fills:
 * a large bound then costs address space, not start-up time.
 */
#ifndef SPIKE_MEM_H
#define SPIKE_MEM_H

#include <stddef.h>

/* Zeroed memory, populated now. NULL when out of memory. */
void *mem_populated(size_t bytes);
/* Zeroed memory, populated as it is touched. NULL when out of memory. */
void *mem_lazy(size_t bytes);
/* Populate the first bytes of mem_lazy memory now (they are zero, and stay
 * so). NULL is a no-op. */
void mem_populate(void *p, size_t bytes);
/* Either kind; NULL is a no-op. */
void mem_free(void *p, size_t bytes);

#endif /* SPIKE_MEM_H */

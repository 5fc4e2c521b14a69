/*
 * writer.h -- the single writer thread: group commit of every change.
 *
 * One cycle: fire due reservation expiries (up to half of batch_max, so
 * that load filling every batch cannot starve them), drain the producers'
 * rings (round-robin, up to batch_max in all, waiting up to batch_us for
 * more), apply it all to one LMDB write transaction, commit with fsync,
 * then apply the in-memory effects that give stock back and complete the
 * ops.
 *
 * Timers (expiry, feed waits) run on the monotonic clock; records carry the
 * wall clock. An order is never expired before its wall-clock expires_at.
 *
 * Memory effects come in two kinds. Takes (a reserve's stock, its buyer
 * units, its key) are made by the producer before the commit and undone if
 * the commit fails. Gives (cancel, expiry, restock, pay's move to sold,
 * close, a create becoming visible) are made only after the commit, so a
 * failed batch never hands out stock twice. A failed batch fails with
 * SPIKE_ESTORAGE every op whose result depended on it (I6); verdicts on
 * state committed earlier (not found, wrong state, a feed wait) stand.
 * MDB_MAP_FULL leaves the writer running, any other commit error stops it
 * for good.
 *
 * Ops wait for each other only in one case: a pay, cancel or key replay
 * naming an order whose reserve is still in another producer's ring (with
 * ack=memory its id is known before the writer sees it) is deferred to a
 * later batch, for at most DEFER_MAX_MS.
 */
#ifndef SPIKE_WRITER_H
#define SPIKE_WRITER_H

#include <stdint.h>

#include "engine.h"

writer *writer_create(spike_engine *e);
void writer_destroy(writer *w);

/* Recovery's hooks, before the thread starts. */
void writer_load_event(writer *w, uint32_t slot, const spike_event *ev, int closed);
int writer_arm(writer *w, uint64_t order_id, int64_t deadline_ms);
void writer_load_feed(writer *w, uint64_t first, uint64_t last);
/* The largest order id on disk, the id high-water mark, and the first
 * millisecond this run mints ids in. */
void writer_load_orders_max(writer *w, uint64_t max_id, uint64_t hwm, int64_t floor_ms);

/* Run cycles on the calling thread until nothing is due: used at open, before
 * the thread starts, to expire what went overdue while the engine was down.
 * 0, or SPIKE_ESTORAGE when a commit failed. */
int writer_expire_overdue(writer *w);

/* Start / stop the thread. Stop drains every ring and commits first. */
int writer_start(writer *w);
void writer_stop(writer *w);

#endif /* SPIKE_WRITER_H */

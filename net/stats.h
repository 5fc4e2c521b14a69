/*
 * stats.h -- the last few minutes, one sample a second, for /dashboard and
 * GET /api/v1/admin/stats. A thread of its own wakes once a second, reads
 * the counters that already exist (the loops' metrics shards, spike_stats,
 * the event list) and keeps the difference from the previous second in a
 * ring of STATS_HISTORY_S samples: nothing is added to the request path.
 *
 * Bounds: STATS_HISTORY_S seconds of history (the oldest sample is
 * overwritten), STATS_EVENTS_MAX events per sample (the first ones in id
 * order; the answer says how many there were in all). The ring is
 * allocated at stats_open, never on a request.
 */
#ifndef SPIKE_STATS_H
#define SPIKE_STATS_H

#include <stdint.h>

#include "json.h"
#include "metrics.h"
#include "spike.h"

#define STATS_HISTORY_S 300 /* seconds kept: five minutes */
#define STATS_EVENTS_MAX 32 /* events followed per sample */
#define STATS_SECONDS_DEFAULT 60

typedef struct stats stats;

/* A history of shards[0..nshards) (at most SPIKE_PRODUCERS_MAX; the
 * pointers are copied) and engine e, empty, its baseline read now. The
 * shards and the engine must outlive stats_close. 0, or -ENOMEM. */
int stats_open(stats **out, spike_engine *e, metrics *const *shards, uint32_t nshards);
/* Start the thread that calls stats_sample once a second. 0, or a
 * negative errno (then nothing samples; the rest still works). */
int stats_start(stats *s);
/* Stop the thread, if started, and free the ring. NULL is fine. */
void stats_close(stats *s);
/* Take one sample now: what changed since the last one (or the baseline).
 * The thread's, or a test's when no thread runs. */
void stats_sample(stats *s);
/* Any thread: the newest `seconds` samples (1..STATS_HISTORY_S) as the
 * JSON object docs/api.md describes ("Dashboard"), with evs[0..nevs) (at
 * most STATS_EVENTS_MAX, read by the caller now) as its events; more: there
 * are more events than those. */
void stats_render(stats *s, jbuf *out, uint32_t seconds, const spike_event *evs, uint32_t nevs,
                  int more);

#endif /* SPIKE_STATS_H */

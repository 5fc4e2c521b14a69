/*
 * spike_uv.h -- the libuv adapter: attach a libspike producer to a uv_loop_t.
 *
 * It holds no logic: a uv_poll_t watches the producer's completion eventfd
 * and calls spike_producer_drain() when it turns readable, so callbacks run
 * on the loop's thread. spiked and examples/embed.c use it; a host on another
 * loop (epoll, nginx, Envoy) writes the same ten lines for its own.
 *
 * The caller allocates the spike_uv (embed it in its own struct) and keeps it
 * alive until the close callback.
 */
#ifndef SPIKE_UV_H
#define SPIKE_UV_H

#include <uv.h>

#include "spike.h"

typedef struct spike_uv {
  uv_poll_t poll;        /* poll.data is the caller's */
  spike_producer *producer;
} spike_uv;

/* Start watching p's completion fd on loop. Returns a libuv error code. */
int spike_uv_attach(uv_loop_t *loop, spike_uv *a, spike_producer *p);

/* Stop watching and close the handle; cb (may be NULL) runs when closed.
 * The producer is not closed: that is the caller's, after its ops drain. */
void spike_uv_detach(spike_uv *a, uv_close_cb cb);

#endif /* SPIKE_UV_H */

/*
 * spike_uv.h -- the libuv adapter: attach a libspike producer to a uv_loop_t.
 *
 * Header-only, so libspike itself does not depend on libuv: a program that
 * uses this header links libuv itself (pkg-config --cflags --libs spike-uv,
 * or spike and libuv). It holds no logic: a uv_poll_t watches the producer's
 * completion eventfd and calls spike_producer_drain() when it turns
 * readable, so callbacks run on the loop's thread. spiked and
 * examples/embed.c use it; examples/epoll.c does the same for a bare epoll
 * loop, and docs/embedding.md shows it for other loops.
 *
 * The caller allocates the spike_uv (embed it in its own struct) and keeps
 * it alive until the close callback has run. Loop thread only, like every
 * libuv call; the producer then belongs to that thread.
 */
#ifndef SPIKE_UV_H
#define SPIKE_UV_H

#include <stddef.h>

#include <uv.h>

#include "spike.h"

typedef struct spike_uv {
  uv_poll_t poll; /* poll.data is the caller's */
  spike_producer *producer;
  int status; /* the last poll error (a libuv code), or 0 */
} spike_uv;

static inline void spike_uv_on_readable_(uv_poll_t *h, int status, int events) {
  (void)events;
  spike_uv *a = (spike_uv *)(void *)((char *)h - offsetof(spike_uv, poll));
  /* An eventfd does not fail; should libuv report an error anyway, drain
   * all the same (it is harmless when nothing is waiting) and keep it. */
  if (status < 0) a->status = status;
  spike_producer_drain(a->producer);
}

/* Start watching p's completion fd on loop. Returns 0 or a libuv error code
 * (negative; uv_strerror() says what it means), and then nothing is
 * started and no close is needed; but when uv_poll_start failed the handle
 * is already being closed, so a stays in use until the loop has run once. */
static inline int spike_uv_attach(uv_loop_t *loop, spike_uv *a, spike_producer *p) {
  a->producer = p;
  a->status = 0;
  int rc = uv_poll_init(loop, &a->poll, spike_producer_fd(p));
  if (rc != 0) return rc;
  rc = uv_poll_start(&a->poll, UV_READABLE, spike_uv_on_readable_);
  if (rc != 0) uv_close((uv_handle_t *)&a->poll, NULL);
  return rc;
}

/* Stop watching and close the handle; cb (may be NULL) runs when closed.
 * The producer is not closed: that is the caller's, after its ops drain
 * (spike_producer_inflight() == 0). */
static inline void spike_uv_detach(spike_uv *a, uv_close_cb cb) {
  uv_poll_stop(&a->poll);
  uv_close((uv_handle_t *)&a->poll, cb);
}

#endif /* SPIKE_UV_H */

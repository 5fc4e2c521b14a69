/*
 * spike_uv.c -- see spike_uv.h. The whole adapter is a poll callback.
 */
#include "spike_uv.h"

#include <stddef.h>

static void on_readable(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  spike_uv *a = (spike_uv *)((char *)h - offsetof(spike_uv, poll));
  spike_producer_drain(a->producer);
}

int spike_uv_attach(uv_loop_t *loop, spike_uv *a, spike_producer *p) {
  a->producer = p;
  int rc = uv_poll_init(loop, &a->poll, spike_producer_fd(p));
  if (rc != 0) return rc;
  return uv_poll_start(&a->poll, UV_READABLE, on_readable);
}

void spike_uv_detach(spike_uv *a, uv_close_cb cb) {
  uv_poll_stop(&a->poll);
  uv_close((uv_handle_t *)&a->poll, cb);
}

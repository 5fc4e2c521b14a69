/*
 * verify.h -- spikebench --verify: after a run against spike's API, check
 * the sale's invariants against what the run saw.
 *
 * The event is read before and after the run (GET /api/v1/events/{id});
 * the checks (vf_checks) compare the two snapshots with the run's own
 * books: the counters balance, reserved + sold grew by exactly the 201s
 * (within the answers that never came), sold grew by the paid answers
 * (mixed), every 201 named the asking user, no user won more than the
 * per-user limit, no order id came twice, a sold-out event has nothing
 * left. vf_sample then reads a spread of the winners' orders back from the
 * server (GET /api/v1/users/{uid}/orders, with that user's token under
 * --jwt-secret) and checks each holds its order and no more than the limit.
 *
 * The HTTP here is blocking, one connection per request, 10 s timeouts:
 * it runs before and after the load, never during it.
 */
#ifndef SPIKE_BENCH_VERIFY_H
#define SPIKE_BENCH_VERIFY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "scenario.h"

#define VF_CHECKS_MAX 16
#define VF_DETAIL_BYTES 256
#define VF_BODY_BYTES (1u << 20) /* one answer read for --verify */
#define VF_TOKENS (1 << 16)
#define VF_USERS_MAX 100000 /* winners read back */

typedef struct vf_event {
  uint64_t stock_total, available, reserved, sold, per_user_limit;
  char state[24];
  uint64_t pay_timeout_s;
} vf_event;

/* Where and as whom to ask. */
typedef struct vf_target {
  struct sockaddr_storage addr;
  const sc_scenario *sc; /* event, Host, --header lines, jwt secret */
  const char *prefix;    /* the URL's path before /api/v1 */
} vf_target;

/* What the run saw, warmup included. */
typedef struct vf_input {
  uint64_t created, unknown_buy, paid, unknown_pay, wrong_user, soldout_seen, wins_dropped;
  int check_paid;                 /* mixed: sold must have grown by the paid answers */
  uint64_t *win_user, *win_order; /* each won buy: who and which order */
  size_t nwins;
  /* reservations of any event that expired between the two reads of the
   * event (spike_orders_expired_total's growth), or -1 when not known (no
   * /metrics to read): some of the run's may have expired, and given their
   * units back */
  int64_t expired;
} vf_input;

typedef struct vf_check {
  const char *name;
  int ok;
  char detail[VF_DETAIL_BYTES];
} vf_check;

typedef struct vf_report {
  vf_check checks[VF_CHECKS_MAX];
  int n, failed;
  char error[512]; /* the event could not be read: nothing could be checked */
} vf_report;

/* Read the event. 0, or -1 with err. */
int vf_read_event(const vf_target *t, vf_event *e, char *err, size_t errcap);
/* spiked's count of reservations expired so far, all events
 * (spike_orders_expired_total on /metrics beside the API); -1 when it
 * cannot be read. */
int64_t vf_read_expired(const vf_target *t);

/*
 * Read user's live orders (reserved or paid) in the event: how many, the
 * quantity they hold, and whether order is one of them. 0, or -1 with err.
 */
int vf_read_user_orders(const vf_target *t, uint64_t user, uint64_t order, uint64_t *live,
                        uint64_t *qty, int *found, char *err, size_t errcap);

/* The checks that need no server: appended to rep. in->win_* is sorted in
 * place (user, then order). */
void vf_checks(vf_input *in, const vf_event *before, const vf_event *after, vf_report *rep);

/* Read up to users winners back from the server (spread evenly over the
 * distinct winners of in, which vf_checks has sorted) and append the check. */
void vf_sample(const vf_target *t, const vf_input *in, const vf_event *before, uint64_t users,
               vf_report *rep);

#endif /* SPIKE_BENCH_VERIFY_H */

/*
 * test_clock.c -- steps of the wall clock (an NTP correction, a VM resumed)
 * neither expire a reservation before the expires_at it was promised nor
 * stall the writer. The wall clock is this binary's (tests/vclock.h):
 * the test shifts it; the monotonic clock is the system's.
 */
#include "vclock.h"

static void nap_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

static spike_event_spec wide_spec(uint64_t id, uint32_t pay_timeout_s) {
  spike_event_spec s = spec_default(id, 1000);
  s.start_at = wall_ms() - 86400000;
  s.end_at = wall_ms() + 90 * 86400000ll;
  s.pay_timeout_s = pay_timeout_s;
  return s;
}

static spike_order order_now(spike_producer *p, uint64_t id) {
  spike_order o;
  CHECK_EQ(spike_order_get(p, id, &o), SPIKE_OK);
  return o;
}

/* The clock steps back 30 s with a 5 s pay timeout: a reservation made
 * after the step is neither expired at once nor refused payment before its
 * stated deadline. */
static void backward_step_never_expires_early(void) {
  vclock_wall_shift(0);
  spike_config cfg;
  small_config(&cfg, "clock-back");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = wide_spec(1, 5);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  spike_op a, b, c;
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 1, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  vclock_wall_shift(-30000);
  CHECK_EQ(settle(p, &b, spike_reserve(p, &b, 1, 2, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK(b.r.order.expires_at < a.r.order.expires_at);
  nap_ms(1500);
  CHECK_EQ(order_now(p, a.r.order.id).state, SPIKE_ORDER_RESERVED);
  CHECK_EQ(order_now(p, b.r.order.id).state, SPIKE_ORDER_RESERVED);
  CHECK_EQ(settle(p, &c, spike_pay(p, &c, b.r.order.id, 0, "pay-b", 5, count_cb)), SPIKE_OK);
  spike_stats st;
  spike_stats_get(e, &st);
  CHECK_EQ(st.orders_expired_total, 0);
  /* A stays reserved until the wall clock reaches its expires_at, 30 s
   * later than its timer: 5 s after the step it is still reserved. */
  nap_ms(4000);
  spike_order oa = order_now(p, a.r.order.id);
  CHECK(wall_ms() < oa.expires_at);
  CHECK_EQ(oa.state, SPIKE_ORDER_RESERVED);
  /* The clock comes back: A expires, at its deadline, not before. */
  vclock_wall_shift(0);
  int64_t until = test_now_ms() + 5000;
  while (order_now(p, a.r.order.id).state == SPIKE_ORDER_RESERVED && test_now_ms() < until)
    nap_ms(20);
  oa = order_now(p, a.r.order.id);
  CHECK_EQ(oa.state, SPIKE_ORDER_EXPIRED);
  CHECK(oa.cancelled_at >= oa.expires_at);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  test_rmrf(cfg.data_dir);
}

/* The clock jumps 30 days ahead with reservations armed: the writer goes on
 * answering at once (no walk over 2.6e9 milliseconds), and the reservation
 * made before the jump, past its deadline by the wall clock now, is not
 * payable and expires by its timer. */
static void forward_step_does_not_stall(void) {
  vclock_wall_shift(0);
  spike_config cfg;
  small_config(&cfg, "clock-fwd");
  spike_engine *e = open_engine(&cfg);
  spike_producer *p;
  CHECK_EQ(spike_producer_open(e, &p), SPIKE_OK);
  spike_event_spec s = wide_spec(2, 1);
  CHECK_EQ(create_event(p, &s), SPIKE_OK);
  /* A week-long reservation keeps the wheel busy across the whole jump. */
  spike_event_spec week = wide_spec(3, SPIKE_PAY_TIMEOUT_MAX_S);
  CHECK_EQ(create_event(p, &week), SPIKE_OK);
  spike_op a, b, c;
  CHECK_EQ(settle(p, &c, spike_reserve(p, &c, 3, 9, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK_EQ(settle(p, &a, spike_reserve(p, &a, 2, 1, 1, NULL, 0, count_cb)), SPIKE_OK);
  vclock_wall_shift(30 * 86400000ll);
  int64_t t0 = test_now_ms();
  CHECK_EQ(settle(p, &b, spike_reserve(p, &b, 2, 2, 1, NULL, 0, count_cb)), SPIKE_OK);
  CHECK(test_now_ms() - t0 < 2000);
  CHECK_EQ(settle(p, &c, spike_pay(p, &c, a.r.order.id, 0, "late", 4, count_cb)), SPIKE_ESTATE);
  CHECK_EQ(c.r.order.state, SPIKE_ORDER_EXPIRED);
  /* b is payable: its deadline is a second after the jump */
  CHECK_EQ(settle(p, &c, spike_pay(p, &c, b.r.order.id, 0, "in-time", 7, count_cb)), SPIKE_OK);
  spike_event ev;
  CHECK_EQ(spike_event_get(e, 2, &ev), SPIKE_OK);
  CHECK_EQ(ev.reserved, 0);
  CHECK_EQ(ev.sold, 1);
  CHECK_EQ(spike_producer_close(p), SPIKE_OK);
  CHECK_EQ(spike_close(e), SPIKE_OK);
  vclock_wall_shift(0);
  test_rmrf(cfg.data_dir);
}

TEST_LIST({"backward_step_never_expires_early", backward_step_never_expires_early, 60},
          {"forward_step_does_not_stall", forward_step_does_not_stall, 60})

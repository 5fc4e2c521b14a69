/*
 * test_order.c -- the order state machine (engine/order.h): every (state,
 * action) pair of order_decide against the contract's table, and which
 * states hold units.
 */
#include <string.h>

#include "order.h"
#include "test.h"

typedef struct expect {
  spike_order_state from;
  order_action action;
  order_verdict verdict;
  spike_order_state next; /* the state after: the new one, or from unchanged */
} expect;

#define RESERVED SPIKE_ORDER_RESERVED
#define PAID SPIKE_ORDER_PAID
#define CANCELLED SPIKE_ORDER_CANCELLED
#define EXPIRED SPIKE_ORDER_EXPIRED

/* CONTRACT.md: reserved -> paid | cancelled | expired; a repeat of the
 * operation that reached a terminal state succeeds and changes nothing (the
 * same payment id, cancel again); everything else on a terminal state is
 * SPIKE_ESTATE; an expired order refuses everything. */
static const expect table[] = {
    /* reserved: every action applies. PAY_SAME is not meant for a reserved
     * order (order.h says use PAY_OTHER); it still pays. */
    {RESERVED, ORDER_PAY_SAME, ORDER_APPLY, PAID},
    {RESERVED, ORDER_PAY_OTHER, ORDER_APPLY, PAID},
    {RESERVED, ORDER_CANCEL, ORDER_APPLY, CANCELLED},
    {RESERVED, ORDER_EXPIRE, ORDER_APPLY, EXPIRED},
    /* paid: only the same payment again. */
    {PAID, ORDER_PAY_SAME, ORDER_REPEAT, PAID},
    {PAID, ORDER_PAY_OTHER, ORDER_REFUSE, PAID},
    {PAID, ORDER_CANCEL, ORDER_REFUSE, PAID},
    {PAID, ORDER_EXPIRE, ORDER_REFUSE, PAID},
    /* cancelled: only cancel again. */
    {CANCELLED, ORDER_PAY_SAME, ORDER_REFUSE, CANCELLED},
    {CANCELLED, ORDER_PAY_OTHER, ORDER_REFUSE, CANCELLED},
    {CANCELLED, ORDER_CANCEL, ORDER_REPEAT, CANCELLED},
    {CANCELLED, ORDER_EXPIRE, ORDER_REFUSE, CANCELLED},
    /* expired: nothing. */
    {EXPIRED, ORDER_PAY_SAME, ORDER_REFUSE, EXPIRED},
    {EXPIRED, ORDER_PAY_OTHER, ORDER_REFUSE, EXPIRED},
    {EXPIRED, ORDER_CANCEL, ORDER_REFUSE, EXPIRED},
    {EXPIRED, ORDER_EXPIRE, ORDER_REFUSE, EXPIRED},
};

static void every_pair(void) {
  size_t n = sizeof(table) / sizeof(table[0]);
  CHECK_EQ(n, 4 * ORDER_ACTIONS);
  int covered[5][ORDER_ACTIONS];
  memset(covered, 0, sizeof(covered));
  for (size_t i = 0; i < n; i++) {
    const expect *x = &table[i];
    spike_order_state next = (spike_order_state)0;
    order_verdict v = order_decide(x->from, x->action, &next);
    if (v != x->verdict || next != x->next)
      fprintf(stderr, "from %d action %d: verdict %d next %d, want %d %d\n", x->from, x->action, v,
              next, x->verdict, x->next);
    CHECK_EQ(v, x->verdict);
    CHECK_EQ(next, x->next);
    covered[x->from][x->action]++;
  }
  /* Every (state, action) pair appears exactly once. */
  for (int s = SPIKE_ORDER_RESERVED; s <= SPIKE_ORDER_EXPIRED; s++)
    for (int a = 0; a < ORDER_ACTIONS; a++)
      CHECK_EQ(covered[s][a], 1);
}

static void shape_of_the_table(void) {
  /* Properties the writer relies on, stated apart from the table above. */
  for (int s = SPIKE_ORDER_RESERVED; s <= SPIKE_ORDER_EXPIRED; s++) {
    int applies = 0, repeats = 0;
    for (int a = 0; a < ORDER_ACTIONS; a++) {
      spike_order_state next;
      order_verdict v = order_decide((spike_order_state)s, (order_action)a, &next);
      CHECK(v == ORDER_APPLY || v == ORDER_REPEAT || v == ORDER_REFUSE);
      CHECK(next >= SPIKE_ORDER_RESERVED && next <= SPIKE_ORDER_EXPIRED);
      if (v == ORDER_APPLY) {
        applies++;
        /* Only a reserved order moves, and only to a terminal state. */
        CHECK_EQ(s, SPIKE_ORDER_RESERVED);
        CHECK(next != SPIKE_ORDER_RESERVED);
      } else {
        CHECK_EQ(next, s); /* a repeat or refusal leaves the state */
        if (v == ORDER_REPEAT) repeats++;
      }
    }
    if (s == SPIKE_ORDER_RESERVED) CHECK_EQ(applies, ORDER_ACTIONS);
    if (s != SPIKE_ORDER_RESERVED) CHECK_EQ(applies, 0);
    /* At most one way to succeed again on a terminal state. */
    CHECK(repeats <= 1);
    if (s == SPIKE_ORDER_EXPIRED) CHECK_EQ(repeats, 0);
  }
}

static void holds_units(void) {
  CHECK_EQ(order_holds_units(SPIKE_ORDER_RESERVED), 1);
  CHECK_EQ(order_holds_units(SPIKE_ORDER_PAID), 1);
  CHECK_EQ(order_holds_units(SPIKE_ORDER_CANCELLED), 0);
  CHECK_EQ(order_holds_units(SPIKE_ORDER_EXPIRED), 0);
  CHECK_EQ(order_holds_units((spike_order_state)0), 0);
  CHECK_EQ(order_holds_units((spike_order_state)5), 0);
  /* Paying keeps the units held; cancel and expiry release them, and a
   * repeated cancel (ORDER_REPEAT) moves nothing, so a reservation returns
   * its quantity exactly once (I2). */
  for (int a = 0; a < ORDER_ACTIONS; a++) {
    spike_order_state next;
    CHECK_EQ(order_decide(SPIKE_ORDER_RESERVED, (order_action)a, &next), ORDER_APPLY);
    int pay = a == ORDER_PAY_SAME || a == ORDER_PAY_OTHER;
    CHECK_EQ(order_holds_units(next), pay);
  }
  spike_order_state next;
  CHECK_EQ(order_decide(SPIKE_ORDER_CANCELLED, ORDER_CANCEL, &next), ORDER_REPEAT);
  CHECK_EQ(order_holds_units(next), 0);
}

TEST_LIST({"every_pair", every_pair, 0}, {"shape_of_the_table", shape_of_the_table, 0},
          {"holds_units", holds_units, 0})

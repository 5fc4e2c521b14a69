/*
 * order.h -- the order state machine: reserved -> paid | cancelled | expired,
 * nothing else. One table decides every (state, operation) pair so the
 * writer, the tests and the docs share a single source of truth.
 */
#ifndef SPIKE_ORDER_H
#define SPIKE_ORDER_H

#include "spike.h"

typedef enum order_action {
  ORDER_PAY_SAME = 0, /* pay with the payment id already on the order */
  ORDER_PAY_OTHER,    /* pay with a different (or first) payment id */
  ORDER_CANCEL,
  ORDER_EXPIRE,
  ORDER_ACTIONS,
} order_action;

typedef enum order_verdict {
  ORDER_APPLY = 0, /* move to *next and write it */
  ORDER_REPEAT,    /* already done: succeed, write nothing (replayed) */
  ORDER_REFUSE,    /* SPIKE_ESTATE */
} order_verdict;

/* Decide action on an order in state from; *next is the state to write for
 * ORDER_APPLY. For ORDER_PAY_SAME on a reserved order (no payment yet) use
 * ORDER_PAY_OTHER: "same" means it matches a recorded payment. */
order_verdict order_decide(spike_order_state from, order_action action,
                           spike_order_state *next);

/* 1 when the state counts against the user's limit and the stock
 * (reserved or paid), else 0. */
static inline int order_holds_units(spike_order_state s) {
  return s == SPIKE_ORDER_RESERVED || s == SPIKE_ORDER_PAID;
}

#endif /* SPIKE_ORDER_H */

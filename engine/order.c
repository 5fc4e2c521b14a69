/*
 * order.c -- the transition table. Terminal states are final: the only
 * success on them is repeating the operation that got there (same payment
 * id, cancel again), which changes nothing.
 */
#include "order.h"

#include <assert.h>
#include <stddef.h>

typedef struct rule {
  order_verdict verdict;
  spike_order_state next;
} rule;

#define R(v, n) {ORDER_##v, SPIKE_ORDER_##n}
/* rows: reserved, paid, cancelled, expired; columns: order_action */
static const rule table[4][ORDER_ACTIONS] = {
    /* PAY_SAME        PAY_OTHER         CANCEL              EXPIRE */
    {R(APPLY, PAID), R(APPLY, PAID), R(APPLY, CANCELLED), R(APPLY, EXPIRED)},
    {R(REPEAT, PAID), R(REFUSE, PAID), R(REFUSE, PAID), R(REFUSE, PAID)},
    {R(REFUSE, CANCELLED), R(REFUSE, CANCELLED), R(REPEAT, CANCELLED), R(REFUSE, CANCELLED)},
    {R(REFUSE, EXPIRED), R(REFUSE, EXPIRED), R(REFUSE, EXPIRED), R(REFUSE, EXPIRED)},
};
#undef R

order_verdict order_decide(spike_order_state from, order_action action,
                           spike_order_state *next) {
  assert(from >= SPIKE_ORDER_RESERVED && from <= SPIKE_ORDER_EXPIRED);
  assert(action < ORDER_ACTIONS);
  const rule *r = &table[from - SPIKE_ORDER_RESERVED][action];
  *next = r->next;
  return r->verdict;
}

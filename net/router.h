/*
 * router.h -- method and path to handler, with the path's id. A pure
 * function over the request target: no allocation, no state, fuzzed.
 */
#ifndef SPIKE_ROUTER_H
#define SPIKE_ROUTER_H

#include <stddef.h>
#include <stdint.h>

/* One per (route, method). The order is the metrics' label order. */
#define ROUTER_HANDLERS(XX)                                                    \
  XX(EVENT_CREATE, "event_create")                                            \
  XX(EVENT_LIST, "event_list")                                                \
  XX(EVENT_GET, "event_get")                                                  \
  XX(EVENT_RESTOCK, "event_restock")                                          \
  XX(EVENT_CLOSE, "event_close")                                              \
  XX(RESERVE, "reserve")                                                      \
  XX(ORDER_GET, "order_get")                                                  \
  XX(ORDER_PAY, "order_pay")                                                  \
  XX(ORDER_CANCEL, "order_cancel")                                            \
  XX(USER_ORDERS, "user_orders")                                              \
  XX(FEED, "feed")                                                            \
  XX(BACKUP, "admin_backup")                                                  \
  XX(LIVE, "healthz_live")                                                    \
  XX(READY, "healthz_ready")                                                  \
  XX(METRICS, "metrics")                                                      \
  XX(DASHBOARD, "dashboard")        /* the page and its two files */          \
  XX(ADMIN_STATS, "admin_stats")                                              \
  XX(NOT_FOUND, "not_found")        /* no such path */                        \
  XX(BAD_METHOD, "method_not_allowed") /* path exists, method does not */     \
  XX(BAD_REQUEST, "bad_request")    /* unparseable, too large, ... */        \
  XX(CONN_LIMIT, "connection_limit") /* a connection past --max-conns: 503 */

typedef enum handler {
#define XX(name, label) H_##name,
  ROUTER_HANDLERS(XX)
#undef XX
  H_COUNT
} handler;

/* The files of /dashboard. */
typedef enum router_asset { RA_PAGE = 0, RA_JS = 1, RA_CSS = 2 } router_asset;

/* HEAD is matched as GET: every GET route answers HEAD without a body. */
typedef enum router_method {
  RM_GET = 0,
  RM_POST = 1,
  RM_OTHER = 2,
  RM_HEAD = 3,
  RM_PUT = 4 /* only PUT /api/v1/events/{id}: create with the path's id */
} router_method;

typedef struct route_match {
  handler h;
  uint64_t id;        /* the {id} or {uid} in the path (the order's in an order route) */
  int id_ok;          /* 0: the id was not a decimal u64 (H_* still set) */
  int in_event;       /* 1: an order route in the event-scoped form
                       * /api/v1/events/{event_id}/orders/{id}[/pay|/cancel] */
  uint64_t event_id;  /* in_event: the {event_id}; event_ok as id_ok */
  int event_ok;
  const char *allow;  /* H_BAD_METHOD: the methods the path allows */
  int asset;          /* H_DASHBOARD: which file, a router_asset */
  const char *query;  /* after '?', not including it; NULL when none */
  size_t query_len;
} route_match;

/* Match target (the request-target as sent, "/api/v1/events/7?x=1"). */
void router_match(router_method method, const char *target, size_t len, route_match *m);

/* The handler's label for metrics and logs. */
const char *router_label(handler h);

/* Find name=value in a query string: 1 with *value and *value_len set
 * (not percent-decoded: ids and numbers need none), else 0. */
int router_query(const char *query, size_t len, const char *name, const char **value,
                 size_t *value_len);

/* Parse 1..20 decimal digits that fit a u64. 0, or -1. */
int router_parse_u64(const char *s, size_t n, uint64_t *out);

#endif /* SPIKE_ROUTER_H */

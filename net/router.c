/*
 * router.c -- a hand-written matcher over the handful of v1 paths: split
 * the path on '/', compare the fixed segments, parse the id segments.
 * Cheaper and easier to read than a table of patterns for this many routes.
 */
#include "router.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

const char *router_label(handler h) {
  static const char *const labels[] = {
#define XX(name, label) label,
      ROUTER_HANDLERS(XX)
#undef XX
  };
  return (unsigned)h < H_COUNT ? labels[h] : "unknown";
}

int router_parse_u64(const char *s, size_t n, uint64_t *out) {
  if (n == 0 || n > 20) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

#define SEGS_MAX 7

typedef struct seg {
  const char *p;
  size_t n;
} seg;

static int eq(seg s, const char *lit) { return s.n == strlen(lit) && memcmp(s.p, lit, s.n) == 0; }

/* GET-only, POST-only or both; picks the handler or H_BAD_METHOD. A GET
 * route answers HEAD too. */
static void pick(route_match *m, router_method method, handler get, handler post) {
  if ((method == RM_GET || method == RM_HEAD) && get != H_COUNT) {
    m->h = get;
  } else if (method == RM_POST && post != H_COUNT) {
    m->h = post;
  } else {
    m->h = H_BAD_METHOD;
    m->allow = get != H_COUNT && post != H_COUNT ? "GET, HEAD, POST"
               : get != H_COUNT                  ? "GET, HEAD"
                                                 : "POST";
  }
}

/* An order route from its {id} segment on: s[0] is the id, n counts it. */
static void order_route(route_match *m, router_method method, const seg *s, size_t n) {
  m->id_ok = router_parse_u64(s[0].p, s[0].n, &m->id) == 0;
  if (n == 1) pick(m, method, H_ORDER_GET, H_COUNT);
  else if (n == 2 && eq(s[1], "pay")) pick(m, method, H_COUNT, H_ORDER_PAY);
  else if (n == 2 && eq(s[1], "cancel")) pick(m, method, H_COUNT, H_ORDER_CANCEL);
}

/* The absolute form (RFC 9112 §3.2.2: "http://host:port/path?q", which a
 * server must accept): the scheme and authority are skipped, and what
 * follows is routed as the origin form is. */
static size_t absolute_form_skip(const char *t, size_t len) {
  size_t k = len >= 7 && strncasecmp(t, "http://", 7) == 0    ? 7
             : len >= 8 && strncasecmp(t, "https://", 8) == 0 ? 8
                                                             : 0;
  if (k == 0) return 0;
  while (k < len && t[k] != '/' && t[k] != '?') k++;
  return k;
}

void router_match(router_method method, const char *target, size_t len, route_match *m) {
  memset(m, 0, sizeof(*m));
  m->h = H_NOT_FOUND;
  size_t skip = absolute_form_skip(target, len);
  target += skip;
  len -= skip;
  const char *q = memchr(target, '?', len);
  size_t plen = len;
  if (q != NULL) {
    plen = (size_t)(q - target);
    m->query = q + 1;
    m->query_len = len - plen - 1;
  }
  if (plen == 0 || target[0] != '/') return;
  seg s[SEGS_MAX];
  size_t n = 0, start = 1;
  for (size_t i = 1; i <= plen; i++) {
    if (i == plen || target[i] == '/') {
      /* an empty segment ("/api/v1/events/", "/users//orders") names no
       * route: 404, not a route with a malformed id */
      if (n == SEGS_MAX || i == start) return;
      s[n++] = (seg){target + start, i - start};
      start = i + 1;
    }
  }
  if (n == 2 && eq(s[0], "healthz")) {
    if (eq(s[1], "live")) pick(m, method, H_LIVE, H_COUNT);
    else if (eq(s[1], "ready")) pick(m, method, H_READY, H_COUNT);
    return;
  }
  if (n == 1 && eq(s[0], "metrics")) {
    pick(m, method, H_METRICS, H_COUNT);
    return;
  }
  if (eq(s[0], "dashboard") && n <= 2) { /* the page, its script, its style */
    if (n == 2) {
      if (eq(s[1], "app.js")) m->asset = RA_JS;
      else if (eq(s[1], "app.css")) m->asset = RA_CSS;
      else return;
    }
    pick(m, method, H_DASHBOARD, H_COUNT);
    return;
  }
  if (n == 1 && eq(s[0], "livez")) { /* the Kubernetes names, beside the contract's */
    pick(m, method, H_LIVE, H_COUNT);
    return;
  }
  if (n == 1 && eq(s[0], "readyz")) {
    pick(m, method, H_READY, H_COUNT);
    return;
  }
  if (n < 3 || !eq(s[0], "api") || !eq(s[1], "v1")) return;
  seg col = s[2];
  if (n > 3) m->id_ok = router_parse_u64(s[3].p, s[3].n, &m->id) == 0;
  if (eq(col, "events")) {
    if (n == 3) pick(m, method, H_EVENT_LIST, H_EVENT_CREATE);
    else if (n == 4 && method == RM_PUT) m->h = H_EVENT_CREATE; /* the path's id */
    else if (n == 4) {
      pick(m, method, H_EVENT_GET, H_COUNT);
      if (m->h == H_BAD_METHOD) m->allow = "GET, HEAD, PUT";
    }
    else if (n == 5 && eq(s[4], "restock")) pick(m, method, H_COUNT, H_EVENT_RESTOCK);
    else if (n == 5 && eq(s[4], "close")) pick(m, method, H_COUNT, H_EVENT_CLOSE);
    else if (n == 5 && eq(s[4], "orders")) pick(m, method, H_COUNT, H_RESERVE);
    else if (n > 5 && eq(s[4], "orders")) { /* the order routes, under their event */
      m->in_event = 1;
      m->event_id = m->id;
      m->event_ok = m->id_ok;
      order_route(m, method, s + 5, n - 5);
    }
  } else if (eq(col, "orders")) {
    if (n > 3) order_route(m, method, s + 3, n - 3);
  } else if (eq(col, "users")) {
    if (n == 5 && eq(s[4], "orders")) pick(m, method, H_USER_ORDERS, H_COUNT);
  } else if (eq(col, "feed")) {
    if (n == 3) pick(m, method, H_FEED, H_COUNT);
  } else if (eq(col, "admin")) {
    if (n == 4 && eq(s[3], "backup")) pick(m, method, H_COUNT, H_BACKUP);
    if (n == 4 && eq(s[3], "stats")) pick(m, method, H_ADMIN_STATS, H_COUNT);
  }
}

int router_query(const char *query, size_t len, const char *name, const char **value,
                 size_t *value_len) {
  size_t nl = strlen(name);
  const char *p = query, *end = query + len;
  while (p != NULL && p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp != NULL ? amp : end;
    if ((size_t)(stop - p) > nl && memcmp(p, name, nl) == 0 && p[nl] == '=') {
      *value = p + nl + 1;
      *value_len = (size_t)(stop - p - (ptrdiff_t)nl - 1);
      return 1;
    }
    if ((size_t)(stop - p) == nl && memcmp(p, name, nl) == 0) { /* "name" alone */
      *value = stop;
      *value_len = 0;
      return 1;
    }
    p = amp != NULL ? amp + 1 : NULL;
  }
  return 0;
}

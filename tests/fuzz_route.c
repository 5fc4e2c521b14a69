/*
 * fuzz_route.c -- libFuzzer target for what spiked reads from a request
 * before any body: the request-target (net/router.c: path, id, query), and
 * the Authorization header (net/auth.c: bearer tokens, JWTs). Nothing may
 * crash or over-read; every match must point inside the target; numbers
 * must parse exactly when they are 1..20 digits that fit a u64.
 *
 *   make build/fuzz/fuzz_route
 *   ./build/fuzz/fuzz_route -max_total_time=60 tests/corpus/route
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "router.h"

#define ASSERT(c) ((c) ? (void)0 : abort())

static int inside(const char *p, size_t n, const char *base, size_t len) {
  return p >= base && p + n <= base + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  /* a copy of exactly size bytes, so any over-read is ASan's */
  char *t = malloc(size - 1 ? size - 1 : 1);
  memcpy(t, data + 1, size - 1);
  size_t n = size - 1;
  router_method method = (router_method)(data[0] % 5);

  route_match m;
  router_match(method, t, n, &m);
  ASSERT(m.h < H_COUNT);
  ASSERT(router_label(m.h) != NULL);
  if (m.query != NULL) ASSERT(inside(m.query, m.query_len, t, n));
  static const char *const names[] = {"after", "limit", "wait_ms", "event_id", "x", ""};
  if (m.query != NULL)
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
      const char *v;
      size_t vl;
      if (router_query(m.query, m.query_len, names[i], &v, &vl)) ASSERT(inside(v, vl, t, n));
    }
  /* numbers: exactly the 1..20-digit ones that fit */
  uint64_t u;
  int ok = router_parse_u64(t, n, &u) == 0;
  int digits = n >= 1 && n <= 20;
  for (size_t i = 0; i < n && digits; i++) digits = t[i] >= '0' && t[i] <= '9';
  if (ok) ASSERT(digits);
  if (digits && n < 20) ASSERT(ok);

  /* the same bytes as an Authorization header, both modes */
  auth_config none = {AUTH_NONE, NULL, "admin-token", 1, NULL};
  auth_config jwt = {AUTH_JWT, "a-secret-of-some-length", "admin-token", 0, "feed-token"};
  who w;
  uint64_t user;
  int rc = auth_identify(&none, t, n, 1800000000, &w, &user);
  ASSERT(rc == 0 || rc == -20005);
  rc = auth_identify(&jwt, t, n, 1800000000, &w, &user);
  ASSERT(rc == 0 || rc == -20005);
  if (rc == 0) ASSERT(w == WHO_NOBODY || w == WHO_USER || w == WHO_ADMIN || w == WHO_FEED);
  ASSERT(auth_admin(&jwt, w, 1, rc, 0) <= 0);
  if (w == WHO_FEED) ASSERT(auth_admin(&jwt, w, 1, rc, 0) == -20006); /* read-only */
  /* HEAD is GET without the body: the same handler, the same id */
  route_match g, h;
  router_match(RM_GET, t, n, &g);
  router_match(RM_HEAD, t, n, &h);
  ASSERT(g.h == h.h && g.id_ok == h.id_ok && (!g.id_ok || g.id == h.id));
  free(t);
  return 0;
}

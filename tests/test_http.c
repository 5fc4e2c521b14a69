/*
 * test_http.c -- the real spiked over real sockets: every route and every
 * error code of the contract, the envelope, pipelining, split and
 * malformed requests, limits and timeouts, auth, a concurrent sell-out,
 * restart, and the SIGTERM drain.
 *
 *   SPIKED=build/asan/spiked ./build/rel/tests/test_http [case]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jwt.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ratelimit.h"
#include "http_client.h"
#include "test.h"

static hc_resp R; /* one response at a time; 1 MiB body */

static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* POST an event (admin open on loopback without a token). */
static int create_event(int port, uint64_t id, uint64_t stock, uint32_t limit, const char *auth) {
  char body[512];
  snprintf(body, sizeof(body),
           "{\"id\":%llu,\"name\":\"Sale %llu\",\"stock\":%llu,\"price\":1500,\"start_at\":%lld,"
           "\"end_at\":%lld,\"per_user_limit\":%u,\"pay_timeout_s\":600}",
           (unsigned long long)id, (unsigned long long)id, (unsigned long long)stock,
           (long long)(wall_ms() - 60000), (long long)(wall_ms() + 3600000), limit);
  return hc_do(port, "POST", "/api/v1/events", auth, body, &R);
}

static int reserve(int port, uint64_t event, uint64_t user, const char *extra) {
  char path[64], body[256];
  snprintf(path, sizeof(path), "/api/v1/events/%llu/orders", (unsigned long long)event);
  snprintf(body, sizeof(body), "{\"user_id\":\"%llu\"%s}", (unsigned long long)user,
           extra ? extra : "");
  return hc_do(port, "POST", path, NULL, body, &R);
}

static void expect(int status, int code) {
  if (R.status != status || hc_code(&R) != code) {
    fprintf(stderr, "want %d/%d, got %d/%d: %s\n", status, code, R.status, hc_code(&R), R.body);
    abort();
  }
}

/* Every body is the envelope, and its traceId is the X-Request-Id. */
static void check_envelope(void) {
  char trace[80], hdr[80], data[8];
  CHECK(hc_json(&R, "code", data, sizeof(data)) == 0);
  CHECK(hc_json(&R, "msg", trace, sizeof(trace)) == 0);
  CHECK(hc_json(&R, "data", hdr, sizeof(hdr)) == 0);
  CHECK(hc_json(&R, "traceId", trace, sizeof(trace)) == 0);
  CHECK(hc_header(&R, "X-Request-Id", hdr, sizeof(hdr)) != NULL);
  CHECK(strcmp(trace, hdr) == 0);
  if (hc_code(&R) != 0) CHECK(strstr(R.body, "\"data\":null") != NULL);
}

/* ---- routes and codes ------------------------------------------------------ */

static void every_route_and_code(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  int p = s.port;
  char v[128], path[128];

  CHECK_EQ(create_event(p, 7, 3, 2, NULL), 201);
  check_envelope();
  CHECK(hc_json(&R, "data.id", v, sizeof(v)) == 0 && strcmp(v, "7") == 0);
  CHECK(strstr(R.body, "\"id\":\"7\"") != NULL); /* ids travel as strings */
  CHECK_EQ(create_event(p, 7, 3, 2, NULL), 409);
  expect(409, 30010);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/events", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_len(&R, "data.events"), 1);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/events/7", NULL, NULL, &R), 200);
  CHECK(hc_json(&R, "data.state", v, sizeof(v)) == 0 && strcmp(v, "live") == 0);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/events/8", NULL, NULL, &R), 404);
  expect(404, 30009);
  check_envelope();

  /* reserve: 201, replay 200 with the same order, limits, sold out */
  CHECK_EQ(reserve(p, 7, 100, ",\"request_id\":\"r-1\""), 201);
  char order[32];
  CHECK(hc_json(&R, "data.id", order, sizeof(order)) == 0);
  CHECK(hc_json(&R, "data.user_id", v, sizeof(v)) == 0 && strcmp(v, "100") == 0);
  CHECK_EQ(reserve(p, 7, 100, ",\"request_id\":\"r-1\""), 200);
  CHECK(hc_json(&R, "data.id", v, sizeof(v)) == 0 && strcmp(v, order) == 0);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/orders", "Idempotency-Key: r-1\r\n",
                 "{\"user_id\":100}", &R), 200); /* the header, and a numeric id */
  CHECK(hc_json(&R, "data.id", v, sizeof(v)) == 0 && strcmp(v, order) == 0);
  /* whitespace after a value is not part of it (RFC 9110 §5.5): the same
   * key, so the same order, not a second one */
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/orders", "Idempotency-Key: r-1 \t \r\n",
                 "{\"user_id\":100}", &R), 200);
  CHECK(hc_json(&R, "data.id", v, sizeof(v)) == 0 && strcmp(v, order) == 0);
  /* another user's key: refused, saying so */
  CHECK_EQ(reserve(p, 7, 109, ",\"request_id\":\"r-1\""), 403);
  expect(403, 20006);
  CHECK(strstr(R.body, "another user's") != NULL);
  CHECK_EQ(reserve(p, 7, 100, ",\"qty\":2"), 409);
  expect(409, 30007);
  CHECK_EQ(reserve(p, 7, 101, ",\"qty\":2"), 201);
  CHECK_EQ(reserve(p, 7, 102, NULL), 409);
  expect(409, 30001);
  CHECK_EQ(reserve(p, 99, 102, NULL), 404);
  expect(404, 30009);
  /* more than is left, though not nothing: said so (outside QA) */
  CHECK_EQ(create_event(p, 70, 3, 5, NULL), 201);
  CHECK_EQ(reserve(p, 70, 200, ",\"qty\":2"), 201);
  CHECK_EQ(reserve(p, 70, 201, ",\"qty\":2"), 409);
  expect(409, 30001);
  CHECK(strstr(R.body, "fewer units left than qty") != NULL);
  CHECK_EQ(reserve(p, 70, 201, NULL), 201);
  CHECK_EQ(reserve(p, 70, 202, ",\"qty\":2"), 409);
  CHECK(strstr(R.body, "fewer units") == NULL); /* nothing left: plainly sold out */

  /* orders: get, pay, cancel and their state rules */
  snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
  CHECK_EQ(hc_do(p, "GET", path, NULL, NULL, &R), 200);
  CHECK(hc_json(&R, "data.state", v, sizeof(v)) == 0 && strcmp(v, "reserved") == 0);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/orders/12345", NULL, NULL, &R), 404);
  expect(404, 30008);
  snprintf(path, sizeof(path), "/api/v1/orders/%s/pay", order);
  CHECK_EQ(hc_do(p, "POST", path, NULL, "{\"payment_id\":\"pay-1\"}", &R), 200);
  CHECK(hc_json(&R, "data.state", v, sizeof(v)) == 0 && strcmp(v, "paid") == 0);
  CHECK_EQ(hc_do(p, "POST", path, NULL, "{\"payment_id\":\"pay-1\"}", &R), 200);
  CHECK_EQ(hc_do(p, "POST", path, NULL, "{\"payment_id\":\"pay-2\"}", &R), 409);
  expect(409, 30002);
  CHECK_EQ(hc_do(p, "POST", path, NULL, "{\"payment_id\":\"pay-1\",\"user_id\":\"5\"}", &R), 403);
  expect(403, 20006);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/orders/12345/cancel", NULL, "{}", &R), 404);
  expect(404, 30008);
  snprintf(path, sizeof(path), "/api/v1/orders/%s/cancel", order);
  CHECK_EQ(hc_do(p, "POST", path, NULL, NULL, &R), 409);
  expect(409, 30002);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/users/101/orders", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_len(&R, "data.orders"), 1);
  char other[32];
  CHECK(hc_json(&R, "data.orders.0.id", other, sizeof(other)) == 0);
  snprintf(path, sizeof(path), "/api/v1/orders/%s/cancel", other);
  CHECK_EQ(hc_do(p, "POST", path, NULL, "{\"user_id\":\"101\"}", &R), 200);
  CHECK(hc_json(&R, "data.state", v, sizeof(v)) == 0 && strcmp(v, "cancelled") == 0);
  CHECK_EQ(hc_do(p, "POST", path, NULL, NULL, &R), 200); /* repeating is 200 */
  CHECK_EQ(hc_do(p, "GET", "/api/v1/users/101/orders?event_id=7", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_len(&R, "data.orders"), 1);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/users/101/orders?event_id=8", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_len(&R, "data.orders"), 0);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/users/101/orders?event_id=x", NULL, NULL, &R), 400);
  expect(400, 40001);

  /* restock, close, not live */
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/restock", NULL, "{\"add\":5}", &R), 200);
  CHECK_EQ(hc_json_int(&R, "data.stock_total"), 8);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/restock", NULL, "{\"add\":0}", &R), 400);
  expect(400, 40001);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/close", NULL, NULL, &R), 200);
  CHECK(hc_json(&R, "data.state", v, sizeof(v)) == 0 && strcmp(v, "closed") == 0);
  CHECK_EQ(reserve(p, 7, 103, NULL), 409);
  expect(409, 30006);
  char body[512];
  snprintf(body, sizeof(body),
           "{\"id\":9,\"name\":\"later\",\"stock\":5,\"price\":1,\"start_at\":%lld,\"end_at\":%lld}",
           (long long)(wall_ms() + 3600000), (long long)(wall_ms() + 7200000));
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events", NULL, body, &R), 201);
  CHECK(hc_json(&R, "data.state", v, sizeof(v)) == 0 && strcmp(v, "scheduled") == 0);
  CHECK_EQ(reserve(p, 9, 1, NULL), 409);
  expect(409, 30006);

  /* the feed */
  CHECK_EQ(hc_do(p, "GET", "/api/v1/feed?after=0&limit=3", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_len(&R, "data.changes"), 3);
  CHECK(hc_json(&R, "data.changes.0.type", v, sizeof(v)) == 0 && strcmp(v, "event.created") == 0);
  CHECK(hc_json(&R, "data.changes.1.type", v, sizeof(v)) == 0 && strcmp(v, "order.reserved") == 0);
  CHECK_EQ(hc_json_int(&R, "data.next"), 3);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/feed?limit=1001", NULL, NULL, &R), 400);
  expect(400, 40001);

  /* validation, routes, methods, bodies */
  CHECK_EQ(reserve(p, 7, 0, NULL), 400);
  expect(400, 40001);
  CHECK(strstr(R.body, "user_id") != NULL); /* msg names the field */
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/orders", NULL, "{\"user_id\":\"1\",\"qty\":\"two\"}", &R), 400);
  expect(400, 40001);
  CHECK(strstr(R.body, "qty") != NULL);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/orders", NULL, "{\"user_id\":\"1\",\"qyt\":1}", &R), 400);
  expect(400, 40001);
  CHECK(strstr(R.body, "qyt") != NULL);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/orders", NULL, "{\"user_id\":\"1\",", &R), 400);
  expect(400, 40003);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/7/orders", "Content-Type: text/plain\r\n", NULL, &R), 400);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/events/abc", NULL, NULL, &R), 400);
  expect(400, 40001);
  CHECK_EQ(hc_do(p, "GET", "/api/v2/events", NULL, NULL, &R), 404);
  expect(404, 40004);
  /* an empty segment names no route, whatever method (not a bad id) */
  CHECK_EQ(hc_do(p, "GET", "/api/v1/events/", NULL, NULL, &R), 404);
  expect(404, 40004);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/", NULL, "{}", &R), 404);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/users//orders", NULL, NULL, &R), 404);
  CHECK_EQ(hc_do(p, "GET", "/api/v1//events", NULL, NULL, &R), 404);
  check_envelope();
  CHECK_EQ(hc_do(p, "DELETE", "/api/v1/events/7", NULL, NULL, &R), 405);
  expect(405, 40002);
  CHECK(hc_header(&R, "Allow", v, sizeof(v)) != NULL && strcmp(v, "GET, HEAD, PUT") == 0);
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/orders/1", NULL, NULL, &R), 405);
  CHECK(hc_header(&R, "Allow", v, sizeof(v)) != NULL && strcmp(v, "GET, HEAD") == 0);
  CHECK_EQ(hc_do(p, "DELETE", "/api/v1/events", NULL, NULL, &R), 405);
  CHECK(hc_header(&R, "Allow", v, sizeof(v)) != NULL && strcmp(v, "GET, HEAD, POST") == 0);

  /* health and metrics */
  CHECK_EQ(hc_do(p, "GET", "/healthz/live", NULL, NULL, &R), 200);
  CHECK_EQ(hc_do(p, "GET", "/healthz/ready", NULL, NULL, &R), 200);
  CHECK_EQ(hc_do(p, "GET", "/metrics", NULL, NULL, &R), 200);
  CHECK(hc_header(&R, "Content-Type", v, sizeof(v)) && strncmp(v, "text/plain", 10) == 0);
  static const char *const names[] = {
      "spike_http_request_duration_seconds_bucket{route=\"reserve\",code=\"201\"",
      "spike_commit_duration_seconds_count", "spike_commit_batch_size_bucket",
      "spike_commit_queue_depth", "spike_connections ", "spike_feed_waiters ", "spike_feed_waiters_capacity ",
      "spike_api_errors_total{api_code=\"30001\"} 3", "# TYPE spike_event_sold gauge",
      "# TYPE spike_commits_total counter"};
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
    if (strstr(R.body, names[i]) == NULL) {
      fprintf(stderr, "metrics lack %s\n", names[i]);
      abort();
    }
  /* event 7 is closed with nothing reserved: finished, off the page */
  CHECK(strstr(R.body, "spike_event_sold{event=\"7\"}") == NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

static void trace_ids_and_msgpack(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  char v[128];
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/live", "X-Request-Id: abc.DEF_123-x\r\n", NULL, &R), 200);
  CHECK(hc_json(&R, "traceId", v, sizeof(v)) == 0 && strcmp(v, "abc.DEF_123-x") == 0);
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/live", "X-Request-Id: abc  \r\n", NULL, &R), 200);
  CHECK(hc_json(&R, "traceId", v, sizeof(v)) == 0 && strcmp(v, "abc") == 0);
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/live", "X-Request-Id: bad id!\r\n", NULL, &R), 200);
  CHECK(hc_json(&R, "traceId", v, sizeof(v)) == 0 && strlen(v) == 16 && strcmp(v, "bad id!") != 0);
  check_envelope();
  /* Two servers started in the same second: no traceId in common (outside
   * QA: 192 of 200 were, since the salt differed only by the pid in its
   * high half, which XXH3 of an 8-byte counter only XORs in) */
  spiked s2;
  spiked_start(&s2, NULL, NULL);
  static char ids[2][50][20];
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < 50; i++) {
      CHECK_EQ(hc_do(k ? s2.port : s.port, "GET", "/healthz/live", NULL, NULL, &R), 200);
      CHECK(hc_json(&R, "traceId", ids[k][i], sizeof(ids[k][i])) == 0 && strlen(ids[k][i]) == 16);
    }
  for (int i = 0; i < 50; i++)
    for (int j = 0; j < 50; j++)
      CHECK(strcmp(ids[0][i], ids[1][j]) != 0);
  CHECK_EQ(spiked_stop(&s2, SIGTERM), 0);
  test_rmrf(s2.dir);
  CHECK_EQ(create_event(s.port, 5, 10, 1, NULL), 201);
  /* {"user_id": 77, "request_id": "mp"} as MessagePack */
  static const unsigned char mp[] = {0x82, 0xa7, 'u', 's', 'e', 'r', '_', 'i', 'd', 0x4d,
                                     0xaa, 'r',  'e', 'q', 'u', 'e', 's', 't', '_', 'i',
                                     'd',  0xa2, 'm', 'p'};
  char req[512];
  int n = snprintf(req, sizeof(req),
                   "POST /api/v1/events/5/orders HTTP/1.1\r\nHost: t\r\n"
                   "Content-Type: application/msgpack\r\nContent-Length: %zu\r\n\r\n",
                   sizeof(mp));
  memcpy(req + n, mp, sizeof(mp));
  int fd = hc_connect(s.port);
  hc_send(fd, req, (size_t)n + sizeof(mp));
  CHECK_EQ(hc_read(fd, &R, 5000), 0);
  CHECK_EQ(R.status, 201);
  CHECK(hc_json(&R, "data.user_id", v, sizeof(v)) == 0 && strcmp(v, "77") == 0);
  close(fd);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* ---- framing ---------------------------------------------------------------- */

static void pipelined_in_order_with(const char *const *extra) {
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 3, 1000000, 1, NULL), 201);
  static char buf[1 << 20];
  size_t len = 0;
  /* 100 requests of mixed kinds in one write; a slow (durable) reserve
   * ahead of fast reads must still come back first */
  for (int i = 0; i < 100; i++) {
    char hdr[64], body[64];
    snprintf(hdr, sizeof(hdr), "X-Request-Id: req-%d\r\n", i);
    if (i % 3 == 0) {
      snprintf(body, sizeof(body), "{\"user_id\":\"%d\"}", 5000 + i);
      len += hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/3/orders", hdr, body);
    } else {
      len += hc_format(buf + len, sizeof(buf) - len, "GET", "/api/v1/events/3", hdr, NULL);
    }
  }
  int fd = hc_connect(s.port);
  hc_send(fd, buf, len);
  for (int i = 0; i < 100; i++) {
    CHECK_EQ(hc_read(fd, &R, 30000), 0);
    char want[32], got[64];
    snprintf(want, sizeof(want), "req-%d", i);
    CHECK(hc_header(&R, "X-Request-Id", got, sizeof(got)) && strcmp(got, want) == 0);
    CHECK_EQ(R.status, i % 3 == 0 ? 201 : 200);
  }
  close(fd);

  /* 400 reads in one write, 25 times --max-pipeline: each 16 answered
   * are written at once and the next 16 parsed then, so the whole lot
   * takes milliseconds (outside QA: the poll in between blocked until the
   * sweep's timer, 16 answers every 250 ms, 6 s for these) */
  len = 0;
  for (int i = 0; i < 400; i++)
    len += hc_format(buf + len, sizeof(buf) - len, "GET", "/api/v1/events/3", NULL, NULL);
  fd = hc_connect(s.port);
  int64_t t0 = test_now_ms();
  hc_send(fd, buf, len);
  for (int i = 0; i < 400; i++) {
    CHECK_EQ(hc_read(fd, &R, 30000), 0);
    CHECK_EQ(R.status, 200);
  }
  int64_t took = test_now_ms() - t0;
  fprintf(stderr, "400 pipelined reads answered in %lld ms\n", (long long)took);
  CHECK(took < 3000); /* a bound on a stall, not a timing: 6,250 ms before */
  close(fd);

  /* 64 new connections, each writing 8 requests at once before any is
   * read: past the turn's budget for connections not yet answered, reads
   * wait for later turns and a read's later requests wait in c->pending;
   * every answer still comes, in order */
  enum { NEWC = 64, PER = 8 };
  int fds[NEWC];
  for (int k = 0; k < NEWC; k++) {
    len = 0;
    for (int i = 0; i < PER; i++) {
      char hdr[64], body[64];
      snprintf(hdr, sizeof(hdr), "X-Request-Id: c%d-%d\r\n", k, i);
      snprintf(body, sizeof(body), "{\"user_id\":\"%d\"}", 7000 + k * PER + i);
      len += i % 2 ? hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/3/orders", hdr, body)
                   : hc_format(buf + len, sizeof(buf) - len, "GET", "/api/v1/events/3", hdr, NULL);
    }
    fds[k] = hc_connect(s.port);
    hc_send(fds[k], buf, len);
  }
  for (int k = 0; k < NEWC; k++) {
    for (int i = 0; i < PER; i++) {
      CHECK_EQ(hc_read(fds[k], &R, 30000), 0);
      char want[32], got[64];
      snprintf(want, sizeof(want), "c%d-%d", k, i);
      CHECK(hc_header(&R, "X-Request-Id", got, sizeof(got)) && strcmp(got, want) == 0);
      CHECK_EQ(R.status, i % 2 ? 201 : 200);
    }
    close(fds[k]);
  }

  /* one request, one byte per write */
  len = hc_format(buf, sizeof(buf), "POST", "/api/v1/events/3/orders", "X-Request-Id: split\r\n",
                  "{\"user_id\":\"424242\"}");
  fd = hc_connect(s.port);
  for (size_t i = 0; i < len; i++) {
    hc_send(fd, buf + i, 1);
    if (i % 16 == 0) usleep(200);
  }
  CHECK_EQ(hc_read(fd, &R, 30000), 0);
  CHECK_EQ(R.status, 201);
  close(fd);

  /* 10,000 requests on one keep-alive connection, 16 in flight */
  fd = hc_connect(s.port);
  int sent = 0, got = 0;
  while (got < 10000) {
    len = 0;
    while (sent < 10000 && sent - got < 16) {
      char body[64];
      snprintf(body, sizeof(body), "{\"user_id\":\"%d\"}", 100000 + sent);
      if (sent % 2)
        len += hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/3/orders", NULL, body);
      else
        len += hc_format(buf + len, sizeof(buf) - len, "GET", "/api/v1/events/3", NULL, NULL);
      sent++;
    }
    hc_send(fd, buf, len);
    while (got < sent) {
      CHECK_EQ(hc_read(fd, &R, 5000), 0);
      CHECK_EQ(R.status, got % 2 ? 201 : 200);
      got++;
    }
  }
  close(fd);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

static void pipelined_in_order(void) { pipelined_in_order_with(NULL); }

/* --turn-budget-us 0: every turn is past its budget from its first piece
 * of new work, so it takes one accept, one first request and one close,
 * and the rest waits for the queue: every answer above still comes, in
 * order (the progress argument at conn.c's turn_over). */
static void pipelined_with_no_turn_budget(void) {
  static const char *const extra[] = {"--turn-budget-us", "0", NULL};
  pipelined_in_order_with(extra);
}

static void expect_eof(int fd);

static void malformed_requests(void) {
  static const char *const extra[] = {"--max-header-bytes", "1024", "--max-body-bytes", "2048",
                                      NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  /* a chunk-size line longer than --max-header-bytes (its extensions had
   * no bound but the timeout: outside QA sent 1 MB of one) */
  static char long_ext[2600];
  int le = snprintf(long_ext, sizeof(long_ext),
                    "POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\n"
                    "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2;x=");
  memset(long_ext + le, 'a', 2000);
  snprintf(long_ext + le + 2000, sizeof(long_ext) - (size_t)le - 2000, "\r\n{}\r\n0\r\n\r\n");
  struct {
    const char *raw;
    int status, code;
    const char *why; /* in the message, when given */
  } cases[] = {
      {"FOO / HTTP/1.1\r\nHost: t\r\n\r\n", 405, 40002, NULL},
      {"GET / HTTP/1.1\r\nHost: t\r\nHost t\r\n\r\n", 400, 40001, NULL},
      /* versions llhttp takes other than 1.0 and 1.1, and HTTP/2's preface
       * (h2load's default): 505, closed; versions it refuses: 400 */
      {"GET /healthz/live HTTP/2.0\r\nHost: t\r\n\r\n", 505, 50008, NULL},
      {"GET /healthz/live HTTP/0.9\r\nHost: t\r\n\r\n", 505, 50008, NULL},
      {"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, 50008, NULL},
      {"GET /healthz/live HTTP/9.9\r\nHost: t\r\n\r\n", 400, 40001, NULL},
      {"GET /healthz/live HTTP/1.2\r\nHost: t\r\n\r\n", 400, 40001, NULL},
      /* chunked is the one transfer coding spiked decodes: a gzipped body
       * would be read as if it were not */
      {"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
       "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
       400, 40001, "other than chunked"},
      /* HTTP/1.1 needs exactly one Host (RFC 9112 §3.2); HTTP/1.0 none */
      {"GET /healthz/live HTTP/1.1\r\n\r\n", 400, 40001, "Host missing"},
      {"GET /healthz/live HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 40001, "Host given twice"},
      {"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nContent-Length: 99999\r\n\r\n", 413, 40005, NULL},
      {"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n", 400, 40001,
       "malformed Content-Length"},
      /* the framing headers are read strictly: a tab around their value is
       * refused, and said for what it is (it was "malformed request", and
       * "without chunked" for a chunked one) */
      {"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
       "Content-Length: 2\t\r\n\r\n{}",
       400, 40001, "malformed Content-Length"},
      {"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
       "Transfer-Encoding: chunked\t\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
       400, 40001, "does not end in chunked (spaces around it at most)"},
      {"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
       400, 40001, "Content-Length given twice"},
      /* given twice: a proxy that read the other one vetted another request */
      {"GET /api/v1/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n", 400,
       40001, "Authorization given twice"},
      {"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nIdempotency-Key: a\r\nIdempotency-Key: b\r\n"
       "Content-Length: 2\r\n\r\n{}",
       400, 40001, "given twice"},
      {"POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
       "Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}",
       400, 40001, "given twice"},
      {long_ext, 400, 40001, "a line longer than --max-header-bytes"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    int fd = hc_connect(s.port);
    hc_send(fd, cases[i].raw, strlen(cases[i].raw));
    CHECK_EQ(hc_read(fd, &R, 5000), 0);
    if (R.status != cases[i].status || hc_code(&R) != cases[i].code) {
      fprintf(stderr, "case %zu: got %d %s\n", i, R.status, R.body);
      abort();
    }
    CHECK(R.closed); /* the connection cannot be trusted after a framing error */
    if (cases[i].why != NULL) CHECK(strstr(R.body, cases[i].why) != NULL);
    close(fd);
  }
  /* HTTP/1.0 needs no Host */
  {
    static const char h10[] = "GET /healthz/live HTTP/1.0\r\n\r\n";
    int fd = hc_connect(s.port);
    hc_send(fd, h10, sizeof(h10) - 1);
    CHECK_EQ(hc_read(fd, &R, 5000), 0);
    CHECK_EQ(R.status, 200);
    close(fd);
  }
  /* oversize headers, and a chunked body past the limit */
  static char big[4096];
  int n = snprintf(big, sizeof(big), "GET /healthz/live HTTP/1.1\r\nHost: t\r\nX-Pad: ");
  memset(big + n, 'a', 2000);
  memcpy(big + n + 2000, "\r\n\r\n", 5);
  int fd = hc_connect(s.port);
  hc_send(fd, big, strlen(big));
  CHECK_EQ(hc_read(fd, &R, 5000), 0);
  expect(413, 40005);
  close(fd);
  /* the limit is on the head as sent, line ends included: 1024 bytes pass,
   * 1025 do not, and neither do 300 empty headers (5 bytes each) */
  for (int over = 0; over <= 1; over++) {
    n = snprintf(big, sizeof(big), "GET /healthz/live HTTP/1.1\r\nHost: t\r\nX: ");
    memset(big + n, 'a', (size_t)(1024 - n - 4 + over));
    memcpy(big + 1024 - 4 + over, "\r\n\r\n", 5);
    CHECK_EQ(strlen(big), (size_t)(1024 + over));
    fd = hc_connect(s.port);
    hc_send(fd, big, strlen(big));
    CHECK_EQ(hc_read(fd, &R, 5000), 0);
    if (over)
      expect(413, 40005);
    else
      CHECK_EQ(R.status, 200);
    close(fd);
  }
  n = snprintf(big, sizeof(big), "GET /healthz/live HTTP/1.1\r\nHost: t\r\n");
  for (int i = 0; i < 300; i++) n += snprintf(big + n, sizeof(big) - (size_t)n, "X:\r\n");
  snprintf(big + n, sizeof(big) - (size_t)n, "\r\n");
  fd = hc_connect(s.port);
  hc_send(fd, big, strlen(big));
  CHECK_EQ(hc_read(fd, &R, 5000), 0);
  expect(413, 40005);
  close(fd);
  /* a content type is its media type, not a prefix of one */
  static const char jsonx[] = "POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\n"
                              "Content-Type: application/jsonx\r\nContent-Length: 13\r\n\r\n"
                              "{\"user_id\":1}";
  fd = hc_connect(s.port);
  hc_send(fd, jsonx, sizeof(jsonx) - 1);
  CHECK_EQ(hc_read(fd, &R, 5000), 0);
  expect(400, 40003);
  close(fd);
  fd = hc_connect(s.port);
  static const char chunked[] = "POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\n"
                                "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "800\r\n";
  hc_send(fd, chunked, sizeof(chunked) - 1);
  memset(big, ' ', 2048);
  hc_send(fd, big, 2048);
  hc_send(fd, "\r\n800\r\n", 7);
  hc_send(fd, big, 2048);
  CHECK_EQ(hc_read(fd, &R, 5000), 0);
  expect(413, 40005);
  close(fd);
  /* wrong JSON types and shapes */
  CHECK_EQ(create_event(s.port, 1, 10, 1, NULL), 201);
  static const char *const bodies[] = {"[]", "{\"user_id\":true}", "{\"user_id\":\"1\",\"qty\":1.5}",
                                       "{\"user_id\":\"-1\"}", "{\"user_id\":\"1\",\"qty\":0}",
                                       "{\"user_id\":\"1\",\"user_id\":\"2\"}", "nope",
                                       /* valid JSON past a bound: a parameter, not malformed */
                                       "{\"user_id\":\"1\",\"a\":1,\"b\":1,\"c\":1,\"d\":1,\"e\":1,"
                                       "\"f\":1,\"g\":1,\"h\":1,\"i\":1,\"j\":1,\"k\":1,\"l\":1,"
                                       "\"m\":1,\"n\":1,\"o\":1,\"p\":1}",
                                       "{\"user_id\":\"1\",\"x\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}"};
  static const int codes[] = {40003, 40001, 40001, 40001, 40001, 40001, 40003, 40001, 40001};
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    hc_do(s.port, "POST", "/api/v1/events/1/orders", NULL, bodies[i], &R);
    if (hc_code(&R) != codes[i]) {
      fprintf(stderr, "body %s: got %d %s\n", bodies[i], R.status, R.body);
      abort();
    }
  }
  /* HTTP/1.0: kept alive only when asked, and then the answer says so */
  char v[32];
  fd = hc_connect(s.port);
  static const char ka10[] = "GET /healthz/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  for (int i = 0; i < 2; i++) {
    hc_send(fd, ka10, sizeof(ka10) - 1);
    CHECK_EQ(hc_read(fd, &R, 5000), 0);
    CHECK_EQ(R.status, 200);
    CHECK(hc_header(&R, "Connection", v, sizeof(v)) != NULL && strcasecmp(v, "keep-alive") == 0);
    CHECK(!R.closed);
  }
  close(fd);
  fd = hc_connect(s.port);
  hc_send(fd, "GET /healthz/live HTTP/1.0\r\n\r\n", 31);
  CHECK_EQ(hc_read(fd, &R, 5000), 0);
  CHECK(hc_header(&R, "Connection", v, sizeof(v)) != NULL && strcasecmp(v, "close") == 0);
  expect_eof(fd);
  close(fd);
  /* the server took all that and still serves */
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/live", NULL, NULL, &R), 200);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* ---- limits and timeouts --------------------------------------------------- */

static int closed_within(int fd, int ms) {
  char b[256];
  struct pollfd p = {fd, POLLIN, 0};
  int64_t end = test_now_ms() + ms;
  while (test_now_ms() < end) {
    if (poll(&p, 1, 50) > 0) {
      ssize_t n = recv(fd, b, sizeof(b), 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return 1;
    }
  }
  return 0;
}

static void slowloris_and_idle(void) {
  static const char *const extra[] = {"--header-timeout-ms", "600", "--idle-timeout-ms", "800", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  /* one byte every 200 ms: cut off by the header deadline, not kept alive */
  int fd = hc_connect(s.port);
  const char *slow = "GET /healthz/live HTTP/1.1\r\nHost: t\r\n";
  int64_t t0 = test_now_ms();
  int cut = 0;
  for (size_t i = 0; i < strlen(slow) && !cut; i++) {
    hc_send(fd, slow + i, 1);
    cut = closed_within(fd, 200);
  }
  CHECK(cut);
  int64_t took = test_now_ms() - t0;
  CHECK(took >= 500 && took < 2500);
  close(fd);
  /* idle keep-alive: closed after the idle timeout */
  fd = hc_connect(s.port);
  CHECK(closed_within(fd, 2500));
  close(fd);
  /* a connection in use is not idle */
  fd = hc_connect(s.port);
  for (int i = 0; i < 6; i++) {
    char req[128];
    size_t n = hc_format(req, sizeof(req), "GET", "/healthz/live", NULL, NULL);
    hc_send(fd, req, n);
    CHECK_EQ(hc_read(fd, &R, 2000), 0);
    usleep(300 * 1000);
  }
  close(fd);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* Ten reserves pipelined whole, then an eleventh cut short, while their
 * commit waits past --header-timeout-ms (--batch-us): the late one is
 * dropped, but the ten are answered before the connection ends (outside
 * QA: it was cut with no answer at all, and the ten orders stood). */
static void late_request_behind_answers(void) {
  static const char *const extra[] = {"--header-timeout-ms", "300", "--batch-us", "900000",
                                      NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 3, 1000, 1, NULL), 201);
  static char buf[8192];
  size_t len = 0;
  for (int i = 0; i < 10; i++) {
    char body[64];
    snprintf(body, sizeof(body), "{\"user_id\":\"%d\"}", 42000 + i);
    len += hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/3/orders", NULL, body);
  }
  len += (size_t)snprintf(buf + len, sizeof(buf) - len, "POST /api/v1/events/3/ord");
  int fd = hc_connect(s.port);
  hc_send(fd, buf, len);
  for (int i = 0; i < 10; i++) {
    CHECK_EQ(hc_read(fd, &R, 5000), 0);
    CHECK_EQ(R.status, 201);
  }
  CHECK(closed_within(fd, 3000)); /* and no answer for the late one */
  close(fd);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);

  /* the same in a drain, where a late body's deadline is half the drain's
   * timeout: five reserves, then a body that never comes, then SIGTERM */
  static const char *const drain[] = {"--batch-us", "1000000", "--drain-timeout-ms", "1500", NULL};
  spiked_start(&s, NULL, drain);
  CHECK_EQ(create_event(s.port, 3, 1000, 1, NULL), 201);
  len = 0;
  for (int i = 0; i < 5; i++) {
    char body[64];
    snprintf(body, sizeof(body), "{\"user_id\":\"%d\"}", 43000 + i);
    len += hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/3/orders", NULL, body);
  }
  len += (size_t)snprintf(buf + len, sizeof(buf) - len,
                          "POST /api/v1/events/3/orders HTTP/1.1\r\nHost: t\r\n"
                          "Content-Type: application/json\r\nContent-Length: 30\r\n\r\n{");
  fd = hc_connect(s.port);
  hc_send(fd, buf, len);
  usleep(50 * 1000);
  CHECK_EQ(kill(s.pid, SIGTERM), 0);
  for (int i = 0; i < 5; i++) {
    CHECK_EQ(hc_read(fd, &R, 5000), 0);
    CHECK_EQ(R.status, 201);
  }
  CHECK(closed_within(fd, 3000));
  close(fd);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* Sockets of the server on 127.0.0.1:port whose client has closed and that
 * the server has not closed yet (CLOSE_WAIT). */
static int close_waits(int port) {
  FILE *f = fopen("/proc/net/tcp", "r");
  CHECK(f != NULL);
  char line[512], want[32];
  snprintf(want, sizeof(want), "0100007F:%04X", (unsigned)port);
  int n = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    char local[64], st[8];
    if (sscanf(line, "%*s %63s %*s %7s", local, st) == 2 && strcmp(local, want) == 0 &&
        strcmp(st, "08") == 0)
      n++;
  }
  fclose(f);
  return n;
}

/* Until the server has closed every connection its clients closed (10 s at
 * most), then a moment for the loop to finish that turn: a connection's
 * place under --max-conns is given back in its close callback. */
static void await_server_closes(int port) {
  for (int64_t end = test_now_ms() + 10000; close_waits(port) > 0 && test_now_ms() < end;)
    usleep(10 * 1000);
  CHECK_EQ(close_waits(port), 0);
  usleep(100 * 1000);
}

static void connection_limit(void) {
  static const char *const extra[] = {"--max-conns", "5", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  int fds[6];
  for (int i = 0; i < 5; i++) {
    fds[i] = hc_connect(s.port);
    char req[128];
    size_t n = hc_format(req, sizeof(req), "GET", "/healthz/live", NULL, NULL);
    hc_send(fds[i], req, n);
    CHECK_EQ(hc_read(fds[i], &R, 2000), 0); /* all five are served */
  }
  fds[5] = hc_connect(s.port);
  char req[128];
  size_t n = hc_format(req, sizeof(req), "GET", "/api/v1/events", NULL, NULL);
  hc_send(fds[5], req, n);
  CHECK_EQ(hc_read(fds[5], &R, 2000), 0); /* the sixth is refused */
  expect(503, 50005);
  CHECK(closed_within(fds[5], 2000));
  close(fds[5]);
  /* one past the limit that sends nothing is closed after --linger-idle-ms
   * (2 s), not the header timeout (10 s: silent connects held the places
   * the probes need, outside QA); counted as refused */
  fds[5] = hc_connect(s.port);
  CHECK(closed_within(fds[5], 6000));
  close(fds[5]);
  /* but a probe past the limit is answered, then the connection closed: a
   * full server is alive, ready and scraped (outside QA: a liveness probe
   * got the 503, and a kubelet would restart the node mid-sale) */
  static const char *const probes[] = {"/healthz/live", "/healthz/ready", "/livez", "/readyz",
                                       "/metrics"};
  for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
    int fd = hc_connect(s.port);
    n = hc_format(req, sizeof(req), "GET", probes[i], NULL, NULL);
    hc_send(fd, req, n);
    CHECK_EQ(hc_read(fd, &R, 2000), 0);
    CHECK_EQ(R.status, 200);
    CHECK(closed_within(fd, 2000));
    close(fd);
  }
  close(fds[0]);
  /* polled, not a fixed 100 ms: a refusal here would also count in
   * spike_connections_refused_total, asked below to be exactly 1 */
  await_server_closes(s.port);
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/live", NULL, NULL, &R), 200); /* room again */
  for (int i = 1; i < 5; i++) close(fds[i]);
  await_server_closes(s.port);
  int st = -1;
  for (int i = 0; i < 50 && st != 200; i++) { /* until the server has seen the closes */
    usleep(20 * 1000);
    st = hc_do(s.port, "GET", "/metrics", NULL, NULL, &R);
  }
  CHECK_EQ(st, 200);
  /* the sixth and the silent one; probes answered past the limit are not refusals */
  CHECK(strstr(R.body, "spike_connections_refused_total 2") != NULL);
  /* the 503 counts under its own route, not as a bad request */
  CHECK(strstr(R.body,
               "spike_http_request_duration_seconds_count{route=\"connection_limit\",code=\"503\"} 1") !=
        NULL);
  CHECK(strstr(R.body, "route=\"bad_request\",code=\"503\"") == NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

static double proc_cpu_s(pid_t pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  unsigned long ut = 0, st = 0;
  /* fields after the name: state ... utime(14) stime(15) */
  sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long long metric(int port, const char *name);

static void emfile_no_busy_loop(void) {
  spiked s;
  spiked_nofile = 64; /* the server alone runs out of descriptors */
  spiked_start(&s, NULL, NULL);
  spiked_nofile = 0;
  /* and said so at start: the hard limit is 64 too */
  CHECK(strstr(spiked_log(&s), "open files limited to 64, under the 10136 that --max-conns 10000 "
                               "needs: connections limited to 1 and refusals to 0 a loop thread "
                               "for this run") != NULL);
  static int fds[200];
  for (int i = 0; i < 200; i++) fds[i] = hc_connect(s.port);
  /* Past EMFILE the server waits, it does not spin: once it has worked
   * through the backlog (slowly, in a sanitizer build), a whole second
   * passes with next to no CPU. A spin never gets there. */
  double used = 1;
  for (int tries = 0; tries < 8 && used >= 0.2; tries++) {
    double c0 = proc_cpu_s(s.pid);
    usleep(1000 * 1000);
    used = proc_cpu_s(s.pid) - c0;
  }
  printf("  cpu over 1 s at EMFILE: %.3f s\n", used);
  CHECK(used < 0.2);
  for (int i = 0; i < 200; i++)
    if (fds[i] >= 0) close(fds[i]);
  usleep(200 * 1000);
  /* libuv's reserved-descriptor trick accepted and dropped what did not
   * fit, so the server recovers at once */
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/live", NULL, NULL, &R), 200);
  /* and the connections past what fits were refused as past --max-conns,
   * lowered to fit, and counted (outside QA: all dropped at EMFILE, none
   * counted) */
  long long refused = -1; /* asked until the one place is free (the probe before may hold it) */
  for (int i = 0; i < 100 && refused <= 0; i++) {
    refused = metric(s.port, "spike_connections_refused_total");
    if (refused <= 0) usleep(20 * 1000);
  }
  CHECK(refused > 0);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
  /* The refusals get at most a quarter of what is left after 64 and 8 a
   * loop thread, the connections the rest: 300 - 96 = 204, refusals 51 / 4
   * threads = 12 each, connections 204 - 48 = 156 (their bound alone had
   * taken it all: --threads 16 at 1024 left one connection, outside QA) */
  static const char *const four[] = {"--threads", "4", NULL};
  spiked_nofile = 300;
  spiked_start(&s, NULL, four);
  spiked_nofile = 0;
  CHECK(strstr(spiked_log(&s), "connections limited to 156 and refusals to 12 a loop thread") !=
        NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* A bucket past 2^32 milli-tokens (--rate-burst over 4294967): after any
 * pause the refill wrapped its count to nearly nothing, and a client that
 * had sent one request was refused (outside QA: 136 of 200 at a burst of
 * 5,000,000). It is held at what 32 bits count. */
static void rate_bucket_past_32_bits(void) {
  ratelimit r;
  CHECK_EQ(rl_init(&r, 64, 1000, 5000000), 0);
  uint64_t now = 1000000;
  CHECK(rl_allow(&r, 7, now));
  now += 50;
  int ok = 0;
  for (int i = 0; i < 200; i++) ok += rl_allow(&r, 7, now);
  CHECK_EQ(ok, 200);
  rl_free(&r);
  CHECK_EQ(rl_init(&r, 64, 10, 5), 0); /* a small one still refuses */
  ok = 0;
  for (int i = 0; i < 20; i++) ok += rl_allow(&r, 9, now);
  CHECK_EQ(ok, 5);
  rl_free(&r);
}

static void busy_and_rate_limited(void) {
  static const char *const extra[] = {"--max-reserved", "2", "--rate-limit", "50", "--rate-burst",
                                      "20", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 1, 100, 1, NULL), 201);
  CHECK_EQ(reserve(s.port, 1, 1, NULL), 201);
  CHECK_EQ(reserve(s.port, 1, 2, NULL), 201);
  /* A full table is a configuration limit: 507, code 50006, no Retry-After.
   * Readiness stays 200: the pays and cancels that free the table must
   * still reach this node (outside QA). */
  CHECK_EQ(reserve(s.port, 1, 3, NULL), 507);
  expect(507, 50006);
  CHECK(strstr(R.body, "reservation table full") != NULL);
  char v[32];
  CHECK(hc_header(&R, "Retry-After", v, sizeof(v)) == NULL);
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/ready", NULL, NULL, &R), 200);
  int limited = 0;
  for (int i = 0; i < 40 && !limited; i++)
    limited = hc_do(s.port, "GET", "/api/v1/events/1", NULL, NULL, &R) == 429;
  CHECK(limited);
  expect(429, 40009);
  CHECK(hc_header(&R, "Retry-After", v, sizeof(v)) != NULL);
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/live", NULL, NULL, &R), 200); /* probes are exempt */
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

static void storage_error_map_full(void) {
  static const char *const extra[] = {"--map-size", "1M", "--batch-max", "64", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 1, 1000000, 1, NULL), 201);
  int fd = hc_connect(s.port);
  static char buf[1 << 16];
  int seen = 0;
  for (int wave = 0; wave < 5000 && !seen; wave++) {
    size_t len = 0;
    for (int i = 0; i < 16; i++) {
      char body[96];
      snprintf(body, sizeof(body), "{\"user_id\":\"%d\",\"request_id\":\"key-%d-%d\"}",
               wave * 16 + i + 1, wave, i);
      len += hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/1/orders", NULL, body);
    }
    hc_send(fd, buf, len);
    for (int i = 0; i < 16; i++) {
      CHECK_EQ(hc_read(fd, &R, 5000), 0);
      if (R.status == 500) {
        expect(500, 50001);
        seen = 1;
      } else {
        CHECK_EQ(R.status, 201);
      }
    }
  }
  close(fd);
  CHECK(seen);
  CHECK_EQ(hc_do(s.port, "GET", "/api/v1/events/1", NULL, NULL, &R), 200); /* reads go on */
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* ---- lingering close ------------------------------------------------------- */

/* When the server answers and closes while the client is still sending (a
 * body it refused, bytes after a refusal, a request after Connection:
 * close), the client must read the whole answer and then EOF, never a
 * reset, and its sends must not fail while it finishes what it was
 * writing: bytes left unread at close, or arriving after it, make the
 * kernel send RST, and a client still writing its body (most write the
 * whole request before they read) loses the answer. Each case waits until
 * the answer has certainly been sent before it writes more, so a server
 * that closes outright fails every time, not only on a busy machine. */

static const char big_head[] = "POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\n"
                               "Content-Type: application/json\r\nContent-Length: 2097152\r\n\r\n";

/* The server has answered (fd is readable); then wait long enough for a
 * FIN or an RST behind the answer to have arrived too. */
static void await_answer(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  CHECK_EQ(poll(&p, 1, 5000), 1);
  usleep(200 * 1000);
}

/* Write n bytes of body filler; returns how many the socket took before a
 * send failed (n when none did). */
static size_t send_filler(int fd, size_t n) {
  static char fill[65536];
  memset(fill, 'x', sizeof(fill));
  size_t sent = 0;
  while (sent < n) {
    size_t k = n - sent < sizeof(fill) ? n - sent : sizeof(fill);
    ssize_t w = send(fd, fill, k, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    sent += (size_t)w;
  }
  return sent;
}

/* After the answer in R: it says Connection: close, and EOF follows, not a
 * reset. */
static void expect_eof(int fd) {
  CHECK(R.closed);
  char b[256];
  struct pollfd p = {fd, POLLIN, 0};
  CHECK_EQ(poll(&p, 1, 5000), 1);
  ssize_t n = recv(fd, b, sizeof(b), 0);
  if (n != 0) {
    fprintf(stderr, "want EOF after the %d, got %s\n", R.status, n < 0 ? strerror(errno) : "bytes");
    abort();
  }
}

/* One whole answer with status and code, then EOF. */
static void expect_answer_then_eof(int fd, int status, int code) {
  errno = 0;
  if (hc_read(fd, &R, 5000) != 0) {
    fprintf(stderr, "want a whole %d then EOF, got none: %s\n", status,
            errno != 0 ? strerror(errno) : "EOF or timeout");
    abort();
  }
  expect(status, code);
  expect_eof(fd);
}

/* Connect, send raw and read the answer into R, again while it is a 503:
 * with --max-conns 1 the server may not have seen an earlier close yet. */
static int connect_past_refusals(int port, const char *raw, size_t n) {
  for (int i = 0; i < 100; i++) {
    int fd = hc_connect(port);
    hc_send(fd, raw, n);
    if (hc_read(fd, &R, 5000) == 0 && R.status != 503) {
      if (i > 0) usleep(200 * 1000); /* for the refused tries to be gone too */
      return fd;
    }
    close(fd);
    usleep(20 * 1000);
  }
  abort();
}

/* An unlabelled metric's value, or -1. Overwrites R. Retries a refusal:
 * with --max-conns 1 the server may not have seen the last close yet. */
static long long metric(int port, const char *name) {
  int st = hc_do(port, "GET", "/metrics", NULL, NULL, &R);
  for (int i = 0; i < 50 && st == 503; i++) {
    usleep(20 * 1000);
    st = hc_do(port, "GET", "/metrics", NULL, NULL, &R);
  }
  if (st != 200) return -1;
  char key[128];
  snprintf(key, sizeof(key), "\n%s ", name);
  const char *p = strstr(R.body, key);
  return p != NULL ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* Poll a metric until it reads want; the milliseconds that took, or -1. */
static int64_t metric_wait(int port, const char *name, long long want, int64_t limit_ms) {
  int64_t t0 = test_now_ms();
  while (test_now_ms() - t0 < limit_ms) {
    if (metric(port, name) == want) return test_now_ms() - t0;
    usleep(20 * 1000);
  }
  return -1;
}

static void stop_clean(spiked *s) {
  CHECK_EQ(spiked_stop(s, SIGTERM), 0);
  CHECK(strstr(spiked_log(s), "handles left open") == NULL); /* uv_loop_close was 0 */
  test_rmrf(s->dir);
}

/* Issue 9's case: 2 MiB to a reserve route is refused after its headers. */
static void linger_after_413(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  CHECK_EQ(create_event(s.port, 1, 10, 1, NULL), 201);
  int fd = hc_connect(s.port);
  hc_send(fd, big_head, sizeof(big_head) - 1);
  send_filler(fd, 16384);
  await_answer(fd);
  CHECK_EQ(send_filler(fd, 512 * 1024), 512 * 1024); /* the client goes on with its body */
  usleep(100 * 1000);
  expect_answer_then_eof(fd, 413, 40005);
  close(fd);
  /* the whole body in one go before reading, as most clients do: the
   * server stops reading at the headers with bytes still unread */
  fd = hc_connect(s.port);
  hc_send(fd, big_head, sizeof(big_head) - 1);
  CHECK_EQ(send_filler(fd, 2 << 20), 2 << 20);
  expect_answer_then_eof(fd, 413, 40005);
  close(fd);
  CHECK_EQ(hc_do(s.port, "GET", "/healthz/live", NULL, NULL, &R), 200);
  CHECK_EQ(metric(s.port, "spike_connections_lingered_total"), 2);
  stop_clean(&s);
}

/* A broken request, and a request after Connection: close. */
static void linger_after_400(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  static const char broken[] = "POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\nHost t\r\n\r\n";
  int fd = hc_connect(s.port);
  hc_send(fd, broken, sizeof(broken) - 1);
  await_answer(fd);
  CHECK_EQ(send_filler(fd, 256 * 1024), 256 * 1024);
  usleep(100 * 1000);
  expect_answer_then_eof(fd, 400, 40001);
  close(fd);
  char req[256];
  size_t n = hc_format(req, sizeof(req), "GET", "/healthz/live", "Connection: close\r\n", NULL);
  fd = hc_connect(s.port);
  hc_send(fd, req, n);
  await_answer(fd);
  hc_send(fd, req, n); /* a client that pipelines past its own close */
  usleep(100 * 1000);
  CHECK_EQ(send_filler(fd, 64 * 1024), 64 * 1024);
  usleep(100 * 1000);
  expect_answer_then_eof(fd, 200, 0);
  close(fd);
  CHECK_EQ(metric(s.port, "spike_connections_lingered_total"), 2);
  stop_clean(&s);
}

/* Past --max-conns: 503 then EOF, and a lingering connection counts
 * against the limit. */
static void linger_at_max_conns(void) {
  static const char *const extra[] = {"--max-conns", "1", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  char req[256];
  /* not a probe: a probe past the limit is answered (connection_limit) */
  size_t n = hc_format(req, sizeof(req), "GET", "/api/v1/events", NULL, NULL);
  int held = connect_past_refusals(s.port, req, n); /* kept alive: the limit is reached */
  CHECK_EQ(R.status, 200);
  int fd = hc_connect(s.port);
  hc_send(fd, req, n);
  await_answer(fd);
  hc_send(fd, req, n);
  usleep(100 * 1000);
  CHECK_EQ(send_filler(fd, 64 * 1024), 64 * 1024);
  usleep(100 * 1000);
  expect_answer_then_eof(fd, 503, 50005);
  char v[32];
  CHECK(hc_header(&R, "Retry-After", v, sizeof(v)) != NULL);
  close(fd);
  close(held);
  /* answered 413, then lingers: the client stays quiet */
  held = connect_past_refusals(s.port, big_head, sizeof(big_head) - 1);
  expect(413, 40005);
  expect_eof(held);
  fd = hc_connect(s.port);
  hc_send(fd, req, n);
  CHECK_EQ(hc_read(fd, &R, 5000), 0);
  expect(503, 50005);
  close(fd);
  close(held);
  close(connect_past_refusals(s.port, req, n)); /* room again */
  CHECK_EQ(R.status, 200);
  CHECK(metric(s.port, "spike_connections_refused_total") >= 2);
  stop_clean(&s);
}

/* Refusals being answered have their own bound: past --max-refusals a
 * connection over the limit is closed unanswered, as before. */
static void linger_refusals_bounded(void) {
  static const char *const extra[] = {"--max-conns", "1",     "--max-refusals",   "1",
                                      "--linger-ms", "20000", "--linger-idle-ms", "20000",
                                      NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  char req[256];
  /* not a probe: a probe past the limit is answered (connection_limit) */
  size_t n = hc_format(req, sizeof(req), "GET", "/api/v1/events", NULL, NULL);
  int held = connect_past_refusals(s.port, req, n);
  CHECK_EQ(R.status, 200);
  int fd = hc_connect(s.port); /* refused with a 503, then lingers: the client stays quiet */
  hc_send(fd, req, n);
  expect_answer_then_eof(fd, 503, 50005);
  int fd2 = hc_connect(s.port);
  CHECK(fd2 >= 0);
  CHECK_EQ(hc_read(fd2, &R, 3000), -1);
  CHECK_EQ(R.status, 0);
  close(fd2);
  close(fd);
  close(held);
  close(connect_past_refusals(s.port, req, n));
  CHECK_EQ(R.status, 200);
  long long refused = metric(s.port, "spike_connections_refused_total");
  CHECK(refused >= 2);
  /* the log's counts add up to the metric within a second or two of the
   * last refusal (the end of a burst was told only at the next burst) */
  long long logged = 0;
  for (int tries = 0; tries < 40 && logged != refused; tries++) {
    usleep(100 * 1000);
    logged = 0;
    for (const char *p = spiked_log(&s); (p = strstr(p, "connection limit (--max-conns 1): ")) != NULL;) {
      p += strlen("connection limit (--max-conns 1): ");
      logged += strtoll(p, NULL, 10);
    }
  }
  CHECK_EQ(logged, refused);
  stop_clean(&s);
}

/* Each bound ends a linger: quiet for --linger-idle-ms, --linger-ms in all,
 * --linger-max-bytes discarded. */
static void linger_bounds(void) {
  static const char *const extra[] = {
      "--linger-ms", "2000", "--linger-idle-ms", "600", "--linger-max-bytes", "256K", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  /* quiet */
  int fd = hc_connect(s.port);
  hc_send(fd, big_head, sizeof(big_head) - 1);
  expect_answer_then_eof(fd, 413, 40005);
  int64_t t0 = test_now_ms();
  CHECK_EQ(metric(s.port, "spike_connections_lingering"), 1);
  CHECK(metric_wait(s.port, "spike_connections_lingering", 0, 5000) >= 0);
  int64_t took = test_now_ms() - t0;
  printf("  quiet linger ended after %lld ms\n", (long long)took);
  CHECK(took >= 450 && took < 1900);
  close(fd);
  /* a trickle keeps it from going quiet, not open for longer than --linger-ms */
  fd = hc_connect(s.port);
  hc_send(fd, big_head, sizeof(big_head) - 1);
  await_answer(fd);
  t0 = test_now_ms();
  while (send_filler(fd, 1024) == 1024 && test_now_ms() - t0 < 10000)
    usleep(100 * 1000);
  took = test_now_ms() - t0;
  printf("  trickling linger ended after %lld ms\n", (long long)took);
  CHECK(took >= 1500 && took < 4000);
  close(fd);
  /* a flood is cut after --linger-max-bytes (plus what the buffers hold) */
  fd = hc_connect(s.port);
  hc_send(fd, big_head, sizeof(big_head) - 1);
  await_answer(fd);
  t0 = test_now_ms();
  size_t sent = send_filler(fd, (size_t)64 << 20);
  took = test_now_ms() - t0;
  printf("  flood cut after %zu bytes, %lld ms\n", sent, (long long)took);
  CHECK(sent < (size_t)64 << 20);
  CHECK(took < 1500);
  close(fd);
  CHECK(metric_wait(s.port, "spike_connections_lingering", 0, 3000) >= 0);
  CHECK_EQ(metric(s.port, "spike_connections_lingered_total"), 3);
  stop_clean(&s);
}

/* SIGTERM does not wait for a lingering connection whose client has taken
 * its answer (and the end of file). */
static void linger_not_kept_by_drain(void) {
  static const char *const extra[] = {"--linger-ms", "20000", "--linger-idle-ms", "20000", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  int fd = hc_connect(s.port);
  hc_send(fd, big_head, sizeof(big_head) - 1);
  await_answer(fd);
  send_filler(fd, 1024);
  CHECK_EQ(metric(s.port, "spike_connections_lingering"), 1);
  int64_t t0 = test_now_ms();
  stop_clean(&s);
  int64_t took = test_now_ms() - t0;
  printf("  drained in %lld ms\n", (long long)took);
  CHECK(took < 5000); /* the drain timeout is 10 s; the linger 20 s */
  close(fd);
}

/* A client socket on port with a receive buffer of rcvbuf bytes: a small
 * window, so answers back up in spiked's kernel. */
static int connect_small_window(int port, int rcvbuf) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0);
  CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
  return fd;
}

/* n reserves of event 9 by users 1..n, pipelined in one buffer (malloc'd;
 * its length in *len). */
static char *pipelined_reserves(int n, size_t *len) {
  size_t cap = (size_t)n * 160;
  char *out = malloc(cap);
  CHECK(out != NULL);
  *len = 0;
  for (int i = 1; i <= n; i++) {
    char body[64];
    int bl = snprintf(body, sizeof(body), "{\"user_id\":\"%d\"}", i);
    *len += (size_t)snprintf(out + *len, cap - *len,
                             "POST /api/v1/events/9/orders HTTP/1.1\r\nHost: t\r\n"
                             "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                             bl, body);
  }
  return out;
}

/* SIGTERM while a pipelining client reads its answers slowly: its socket
 * holds requests spiked has not read and answers the client has not taken.
 * The drain must not reset the connection (a reset throws away the answers
 * still in the kernel: outside QA counted 7,417 orders reserved and 2,494
 * 201s received); the client reads every answer written, then end of file,
 * and the store holds exactly the orders it was told of. */
static void drain_keeps_written_answers(void) {
  static const char *const extra[] = {"--drain-timeout-ms", "5000", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 9, 1000000, 1, NULL), 201);
  int fd = connect_small_window(s.port, 4096);
  enum { N = 20000 };
  size_t len;
  char *out = pipelined_reserves(N, &len);
  /* send what the windows take within 2 s, reading nothing */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  size_t off = 0;
  int64_t t0 = test_now_ms();
  while (off < len && test_now_ms() - t0 < 2000) {
    ssize_t n = send(fd, out + off, len - off, MSG_NOSIGNAL);
    if (n > 0)
      off += (size_t)n;
    else
      usleep(10000);
  }
  free(out);
  usleep(300 * 1000);
  kill(s.pid, SIGTERM);
  usleep(300 * 1000);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  size_t got_cap = 64u << 20, got = 0;
  char *in = malloc(got_cap);
  CHECK(in != NULL);
  ssize_t n;
  while (got < got_cap && (n = recv(fd, in + got, got_cap - got, 0)) > 0) got += (size_t)n;
  int err = n < 0 ? errno : 0;
  close(fd);
  long created = 0;
  for (size_t i = 0; i + 12 <= got; i++)
    if (memcmp(in + i, "HTTP/1.1 201", 12) == 0) created++;
  int whole = got > 0 && in[got - 1] == '}'; /* the last answer's body, complete */
  free(in);
  printf("  %zu of %zu bytes sent; %ld answers of 201 read, then %s\n", off, len, created,
         err ? strerror(err) : "end of file");
  CHECK_EQ(err, 0); /* end of file, not a reset */
  CHECK(whole);
  CHECK(created > 0);
  /* spiked_stop: the SIGTERM is already on its way; signal 0 only waits */
  CHECK_EQ(spiked_stop(&s, 0), 0);
  spiked t;
  spiked_start(&t, s.dir, NULL);
  CHECK_EQ(hc_do(t.port, "GET", "/api/v1/events/9", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_int(&R, "data.reserved"), created);
  stop_clean(&t);
}

/* The drain's linger reaches its bound while a pipelining client still
 * takes its answers slowly and goes on sending (as one that sends a request
 * per answer read does): a close then, with input coming, resets the
 * connection and throws away the answers not yet taken (outside QA: about
 * 2,000 201s a run). While the client keeps taking them, the linger goes on
 * (to the drain's timeout); the client reads every answer, then end of
 * file. */
static void drain_waits_for_a_slow_reader(void) {
  static const char *const extra[] = {"--linger-ms", "1000", "--linger-idle-ms", "1000",
                                      "--drain-timeout-ms", "30000", "--max-pipeline", "1024",
                                      "--max-pipeline-bytes", "1M", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 9, 1000000, 1, NULL), 201);
  int fd = connect_small_window(s.port, 2048);
  enum { N = 120 };
  size_t len;
  char *out = pipelined_reserves(N, &len);
  hc_send(fd, out, len);
  free(out);
  /* until spiked has committed them all (the event and N reserves; its
   * answers back up, unread) */
  CHECK(metric_wait(s.port, "spike_ops_committed_total", N + 1, 10000) >= 0);
  usleep(200 * 1000);
  kill(s.pid, SIGTERM);
  /* read 128 bytes every 20 ms (6.4 KB/s: the answers waiting take
   * seconds, past --linger-ms), sending a byte every 100 ms */
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  size_t got_cap = 4u << 20, got = 0;
  char *in = malloc(got_cap);
  CHECK(in != NULL);
  int err = 0, eof = 0;
  int64_t t0 = test_now_ms(), sent_at = 0;
  while (!eof && !err && test_now_ms() - t0 < 40000) {
    ssize_t n = recv(fd, in + got, 128, 0);
    if (n > 0)
      got += (size_t)n;
    else if (n == 0)
      eof = 1;
    else if (errno != EAGAIN && errno != EWOULDBLOCK)
      err = errno;
    if (test_now_ms() - sent_at >= 100) {
      (void)send(fd, "x", 1, MSG_NOSIGNAL);
      sent_at = test_now_ms();
    }
    usleep(20 * 1000);
  }
  close(fd);
  long created = 0;
  for (size_t i = 0; i + 12 <= got; i++)
    if (memcmp(in + i, "HTTP/1.1 201", 12) == 0) created++;
  free(in);
  printf("  %ld answers of 201 read in %lld ms, then %s\n", created,
         (long long)(test_now_ms() - t0), err ? strerror(err) : eof ? "end of file" : "nothing");
  CHECK_EQ(err, 0);
  CHECK(eof);
  CHECK_EQ(created, N);
  CHECK_EQ(spiked_stop(&s, 0), 0);
  CHECK(strstr(spiked_log(&s), "drain timed out") == NULL);
  test_rmrf(s.dir);
}

/* A drain that times out with more than one loop: the loops without a
 * connection left finish their drain and close, and the forced close must
 * not wake them again (outside QA: uv_async_send on a closed loop's
 * eventfd fails and libuv aborts, exit 134 instead of 0, the access log's
 * last lines lost). One client sends /metrics pipelined and never reads,
 * holding its loop past --drain-timeout-ms. */
static void drain_timeout_with_idle_loops(void) {
  static const char *const extra[] = {"--threads", "3", "--drain-timeout-ms", "1000",
                                      "--linger-ms", "5000", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  int fd = connect_small_window(s.port, 2048);
  char req[40 * 16 + 1] = "";
  for (int i = 0; i < 16; i++) strcat(req, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  hc_send(fd, req, strlen(req));
  usleep(500 * 1000);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  CHECK(strstr(spiked_log(&s), "drain timed out") != NULL);
  CHECK(strstr(spiked_log(&s), "drained; bye") != NULL);
  close(fd);
  test_rmrf(s.dir);
}

/* Outside a drain, a lingering client still taking its answers while it
 * goes on sending gets more time than --linger-ms, but no more than twice
 * it: a client reading a little at a time must not hold a connection for
 * as long as it likes. 120 reserves pipelined, the last request saying
 * Connection: close; the client takes 64 bytes every 20 ms (3.2 KB/s: the
 * answers waiting in spiked's kernel would take seconds) and sends a byte
 * every 100 ms. Timed by spike_connections_lingering, from 1 back to 0. */
static void linger_extension_is_bounded(void) {
  static const char *const extra[] = {"--linger-ms", "1000", "--linger-idle-ms", "1000",
                                      "--max-pipeline", "1024", "--max-pipeline-bytes", "1M",
                                      NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 9, 1000000, 1, NULL), 201);
  int fd = connect_small_window(s.port, 2048);
  size_t len;
  char *out = pipelined_reserves(120, &len);
  static const char last[] = "GET /healthz/live HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  hc_send(fd, out, len);
  hc_send(fd, last, sizeof(last) - 1);
  free(out);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  char buf[64];
  int64_t t0 = test_now_ms(), sent_at = 0, polled_at = 0, lingering_at = 0, ended_at = 0;
  while (ended_at == 0 && test_now_ms() - t0 < 30000) {
    (void)recv(fd, buf, sizeof(buf), 0);
    int64_t now = test_now_ms();
    if (now - sent_at >= 100) {
      (void)send(fd, "x", 1, MSG_NOSIGNAL);
      sent_at = now;
    }
    if (now - polled_at >= 50) {
      polled_at = now;
      long long l = metric(s.port, "spike_connections_lingering");
      if (lingering_at == 0 && l == 1) lingering_at = test_now_ms();
      if (lingering_at != 0 && l == 0) ended_at = test_now_ms();
    }
    usleep(20 * 1000);
  }
  close(fd);
  int64_t took = ended_at - lingering_at;
  printf("  the connection lingered %lld ms (--linger-ms 1000)\n", (long long)took);
  CHECK(lingering_at != 0 && ended_at != 0);
  CHECK(took >= 1600); /* past --linger-ms: the client was taking its answers */
  CHECK(took < 3200);  /* twice it, and the sweep's 250 ms */
  stop_clean(&s);
}

/* ---- auth ------------------------------------------------------------------- */

static void token(char *out, size_t cap, const char *secret, const char *sub, long exp_delta,
                  jwt_alg_t alg) {
  jwt_t *j;
  CHECK(jwt_new(&j) == 0);
  if (sub != NULL) jwt_add_grant(j, "sub", sub);
  jwt_add_grant_int(j, "exp", (long)time(NULL) + exp_delta);
  if (alg == JWT_ALG_HS256)
    jwt_set_alg(j, alg, (const unsigned char *)secret, (int)strlen(secret));
  char *t = jwt_encode_str(j);
  CHECK(t != NULL);
  snprintf(out, cap, "Authorization: Bearer %s\r\n", t);
  free(t);
  jwt_free(j);
}

static void jwt_and_admin(void) {
  static const char *const extra[] = {"--auth", "jwt", "--jwt-secret", "s3cret", "--admin-token",
                                      "adm1n", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  int p = s.port;
  const char *admin = "Authorization: Bearer adm1n\r\n";
  char alice[1024], bob[1024], expired[1024], forged[1024], unsigned_tok[1024];
  token(alice, sizeof(alice), "s3cret", "11", 600, JWT_ALG_HS256);
  token(bob, sizeof(bob), "s3cret", "12", 600, JWT_ALG_HS256);
  token(expired, sizeof(expired), "s3cret", "11", -10, JWT_ALG_HS256);
  token(forged, sizeof(forged), "other", "11", 600, JWT_ALG_HS256);
  token(unsigned_tok, sizeof(unsigned_tok), "", "11", 600, JWT_ALG_NONE);

  CHECK_EQ(create_event(p, 1, 10, 1, NULL), 401);
  expect(401, 20001);
  CHECK_EQ(create_event(p, 1, 10, 1, "Authorization: Bearer wrong\r\n"), 401);
  expect(401, 20005);
  CHECK_EQ(create_event(p, 1, 10, 1, alice), 403);
  expect(403, 20006);
  CHECK_EQ(create_event(p, 1, 10, 1, admin), 201);

  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/1/orders", NULL, "{}", &R), 401);
  expect(401, 20001);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/1/orders", expired, "{}", &R), 401);
  expect(401, 20005);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/1/orders", forged, "{}", &R), 401);
  expect(401, 20005);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/1/orders", unsigned_tok, "{}", &R), 401);
  expect(401, 20005);
  /* not valid yet (nbf ahead), or for no user (sub 0): the token is refused */
  char early[1024], nobody[1024];
  {
    jwt_t *j;
    CHECK(jwt_new(&j) == 0);
    jwt_add_grant(j, "sub", "11");
    jwt_add_grant_int(j, "exp", (long)time(NULL) + 600);
    jwt_add_grant_int(j, "nbf", (long)time(NULL) + 300);
    jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)"s3cret", 6);
    char *t = jwt_encode_str(j);
    CHECK(t != NULL);
    snprintf(early, sizeof(early), "Authorization: Bearer %s\r\n", t);
    free(t);
    jwt_free(j);
  }
  token(nobody, sizeof(nobody), "s3cret", "0", 600, JWT_ALG_HS256);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/1/orders", early, "{}", &R), 401);
  expect(401, 20005);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/1/orders", nobody, "{}", &R), 401);
  expect(401, 20005);
  /* Tokens libjwt cannot write, signed with s3cret (HS256) and valid until
   * the year 9999: the payload of each is in its comment. */
  CHECK_EQ(create_event(p, 9, 10, 1, admin), 201);
  static const struct {
    const char *tok;
    int status;
    const char *user;
  } fixed[] = {
      /* {"sub":"13","sub":"14","exp":253402300799}: libjwt keeps the last, a
       * gateway may have read the first */
      {"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMyIsInN1YiI6IjE0IiwiZXhwIjoyNTM0MDIzMDA3OTl9."
       "LCIbTIVYyH7do-NmYYByymMySoHBH-6cFQ_cz7tZV_s",
       401, NULL},
      /* {"s\u0075b":"15","exp":253402300799}: a claim name escaped */
      {"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzXHUwMDc1YiI6IjE1IiwiZXhwIjoyNTM0MDIzMDA3OTl9."
       "2RLFfSuS15S-kAZTce4c4sQ_EthIZuylB-rDCwQ_GSE",
       401, NULL},
      /* {"sub":"16","exp":253402300799.5}: a NumericDate may have a fraction */
      {"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxNiIsImV4cCI6MjUzNDAyMzAwNzk5LjV9."
       "2hinxIYrXwTOs6RUpP3VXErMOQXsYhtC1o23IjzY9As",
       201, "16"},
      /* {"sub":"17","exp":253402300799,"nbf":253402300000.5}: not valid yet */
      {"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxNyIsImV4cCI6MjUzNDAyMzAwNzk5LCJuYmYiOjI1MzQw"
       "MjMwMDAwMC41fQ.fehke1vOr26WwU4gnGLDV8ydy_sIeEazFUTUSdi5Hv0",
       401, NULL},
      /* {"sub":"18","exp":253402300799,"https:\/\/example.com\/roles":["buyer"]}: a
       * claim name with escapes too long to spell sub, exp or nbf */
      {"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxOCIsImV4cCI6MjUzNDAyMzAwNzk5LCJodHRwczpcL1"
       "wvZXhhbXBsZS5jb21cL3JvbGVzIjpbImJ1eWVyIl19.U7PWC3os9Tb5bpM0xjFMn6WuC3wsaQFBl05IOvjZLMo",
       201, "18"},
      /* {"sub":9223372036854775807,"exp":253402300799,"roles":[{"sub":"1"}]}:
       * a numeric sub as large as JSON parsers keep; a nested sub is not one */
      {"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOjkyMjMzNzIwMzY4NTQ3NzU4MDcsImV4cCI6MjUzNDAyMzA"
       "wNzk5LCJyb2xlcyI6W3sic3ViIjoiMSJ9XX0.p1215Ms6BeIOwZe9JjmG_-1XMPwclGnvVjmol_3T2oo",
       201, "9223372036854775807"},
      /* {"alg":"hs256","typ":"JWT"} {"sub":"19","exp":253402300799}: alg is case-sensitive (RFC
       * 7515 4.1.1) */
      {"eyJhbGciOiJoczI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxOSIsImV4cCI6MjUzNDAyMzAwNzk5fQ.aduFgkQ9Q8"
       "GCQT33qwsmb6MKzGZJagrsIUQoj2otBoE",
       401, NULL},
      /* {"alg":"HS256","crit":["x-unknown"],"x-unknown":1} {"sub":"20","exp":253402300799}: crit
       * names an extension we do not understand (4.1.11) */
      {"eyJhbGciOiJIUzI1NiIsImNyaXQiOlsieC11bmtub3duIl0sIngtdW5rbm93biI6MX0.eyJzdWIiOiIyMCIsImV4cC"
       "I6MjUzNDAyMzAwNzk5fQ.s_jpEaay_hwqc4KELcjlX3WldFNLuHGCgh7vNI2Qudg",
       401, NULL},
      /* {"alg":"none","alg":"HS256"} {"sub":"21","exp":253402300799}: alg twice: a gateway may
       * have read the first */
      {"eyJhbGciOiJub25lIiwiYWxnIjoiSFMyNTYifQ.eyJzdWIiOiIyMSIsImV4cCI6MjUzNDAyMzAwNzk5fQ.dFfMMScY"
       "F4er8NDxyUID4cOJdQbJIKv-szu3zuGTIlE",
       401, NULL},
      /* {"alg":"HS256","typ":1} {"sub":"22","exp":253402300799}: typ not a string */
      {"eyJhbGciOiJIUzI1NiIsInR5cCI6MX0.eyJzdWIiOiIyMiIsImV4cCI6MjUzNDAyMzAwNzk5fQ.8WCTeqSxSc-qq7R"
       "EObk4CIREAbHm9zzpA8Cb09tyPOw",
       401, NULL},
      /* {"alg":"HS256","typ":"JWT"} {"sub":"01013","exp":253402300799}: a sub with a leading zero:
       * "01013" and "1013" one user */
      {"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwMTAxMyIsImV4cCI6MjUzNDAyMzAwNzk5fQ.VHbJTQ"
       "q59QYucypAiovjiao1kOjOv9VcOnxX9i_ar5U",
       401, NULL},
  };
  for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
    char hdr[512], who[32];
    snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s\r\n", fixed[i].tok);
    CHECK_EQ(hc_do(p, "POST", "/api/v1/events/9/orders", hdr, "{}", &R), fixed[i].status);
    if (fixed[i].user != NULL)
      CHECK(hc_json(&R, "data.user_id", who, sizeof(who)) == 0 && strcmp(who, fixed[i].user) == 0);
    else
      expect(401, 20005);
  }
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/1/orders", alice, "{\"user_id\":\"12\"}", &R), 403);
  expect(403, 20006);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events/1/orders", alice, "{}", &R), 201);
  char order[32], path[96], v[32];
  CHECK(hc_json(&R, "data.id", order, sizeof(order)) == 0);
  CHECK(hc_json(&R, "data.user_id", v, sizeof(v)) == 0 && strcmp(v, "11") == 0);
  snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
  CHECK_EQ(hc_do(p, "GET", path, alice, NULL, &R), 200);
  CHECK_EQ(hc_do(p, "GET", path, bob, NULL, &R), 403);
  expect(403, 20006);
  CHECK_EQ(hc_do(p, "GET", path, admin, NULL, &R), 200);
  CHECK_EQ(hc_do(p, "GET", path, NULL, NULL, &R), 401);
  snprintf(path, sizeof(path), "/api/v1/orders/%s/pay", order);
  CHECK_EQ(hc_do(p, "POST", path, bob, "{\"payment_id\":\"x\"}", &R), 403);
  expect(403, 20006);
  CHECK(strstr(R.body, "not your order") != NULL); /* said why, as GET says it */
  CHECK_EQ(hc_do(p, "POST", path, alice, "{\"payment_id\":\"x\"}", &R), 200);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/users/11/orders", bob, NULL, &R), 403);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/users/11/orders", alice, NULL, &R), 200);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/feed", alice, NULL, &R), 403);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/feed", admin, NULL, &R), 200);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/events/1", NULL, NULL, &R), 200); /* reads are public */
  /* the live page and its data: admin routes like the others */
  static const char *const page[] = {"/dashboard", "/dashboard/app.js", "/dashboard/app.css",
                                     "/api/v1/admin/stats"};
  for (size_t i = 0; i < sizeof(page) / sizeof(page[0]); i++) {
    CHECK_EQ(hc_do(p, "GET", page[i], NULL, NULL, &R), 401);
    expect(401, 20001);
    CHECK_EQ(hc_do(p, "GET", page[i], alice, NULL, &R), 403);
    expect(403, 20006);
    CHECK_EQ(hc_do(p, "GET", page[i], admin, NULL, &R), 200);
  }
  CHECK(hc_json(&R, "data.historyS", v, sizeof(v)) == 0 && strcmp(v, "300") == 0);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* ---- a sale under concurrency ---------------------------------------------- */

typedef struct client {
  int fd;
  int sent, done;
  uint64_t user;
  char in[4096];
  size_t in_len;
} client;

static void sell_out_200_connections(void) {
  enum { CONNS = 200, USERS = 3000, UNITS = 1000 };
  /* two loop threads: two listeners, two producers racing for the units */
  static const char *const extra[] = {"--threads", "2", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 1, UNITS, 1, NULL), 201);
  static client cl[CONNS];
  static struct pollfd pfd[CONNS];
  static int won[USERS];
  int next_user = 0, answers = 0, created = 0, sold_out = 0;
  for (int i = 0; i < CONNS; i++) {
    cl[i] = (client){.fd = hc_connect(s.port)};
    CHECK(cl[i].fd >= 0);
  }
  int64_t deadline = test_now_ms() + 60000;
  while (answers < USERS) {
    CHECK(test_now_ms() < deadline);
    for (int i = 0; i < CONNS; i++) {
      client *c = &cl[i];
      if (c->sent == c->done && next_user < USERS) {
        char req[256], body[64];
        c->user = (uint64_t)next_user++;
        snprintf(body, sizeof(body), "{\"user_id\":\"%llu\"}", (unsigned long long)c->user + 1);
        size_t n = hc_format(req, sizeof(req), "POST", "/api/v1/events/1/orders", NULL, body);
        hc_send(c->fd, req, n);
        c->sent++;
      }
      pfd[i] = (struct pollfd){c->fd, c->sent > c->done ? POLLIN : 0, 0};
    }
    poll(pfd, CONNS, 100);
    for (int i = 0; i < CONNS; i++) {
      if (!(pfd[i].revents & POLLIN)) continue;
      CHECK_EQ(hc_read(cl[i].fd, &R, 5000), 0);
      cl[i].done++;
      answers++;
      if (R.status == 201) {
        created++;
        CHECK(!won[cl[i].user]);
        won[cl[i].user] = 1;
      } else {
        expect(409, 30001);
        sold_out++;
      }
    }
  }
  CHECK_EQ(created, UNITS);
  CHECK_EQ(sold_out, USERS - UNITS);
  for (int i = 0; i < CONNS; i++) close(cl[i].fd);
  CHECK_EQ(hc_do(s.port, "GET", "/api/v1/events/1", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_int(&R, "data.reserved"), UNITS);
  CHECK_EQ(hc_json_int(&R, "data.available"), 0);
  CHECK_EQ(hc_json_int(&R, "data.stock_total"), UNITS);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* ---- restart and drain ------------------------------------------------------ */

/* PUT /api/v1/events/{id}: an event placed by its id (docs/scale-out.md),
 * and the order routes under their event, across a kill -9. */
static void put_event_and_scoped_orders(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  int p = s.port;
  char dir[256], body[512], path[128], order[32], v[64];
  snprintf(dir, sizeof(dir), "%s", s.dir);
  long long t0 = (long long)wall_ms();
  snprintf(body, sizeof(body),
           "{\"name\":\"placed\",\"stock\":3,\"price\":100,\"start_at\":%lld,"
           "\"end_at\":%lld,\"per_user_limit\":1}", t0 - 60000, t0 + 3600000);
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/events/42", NULL, body, &R), 201);
  check_envelope();
  CHECK(hc_json(&R, "data.id", v, sizeof(v)) == 0 && strcmp(v, "42") == 0);
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/events/42", NULL, body, &R), 409); /* taken */
  expect(409, 30010);
  /* the largest client id, and one past it */
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/events/9007199254740991", NULL, body, &R), 201);
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/events/9007199254740992", NULL, body, &R), 400);
  expect(400, 40001);
  CHECK(strstr(R.body, "event id") != NULL);
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/events/0", NULL, body, &R), 400);
  expect(400, 40001);
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/events/x1", NULL, body, &R), 400);
  expect(400, 40001);
  snprintf(body, sizeof(body),
           "{\"id\":43,\"name\":\"placed\",\"stock\":3,\"price\":100,\"start_at\":%lld,"
           "\"end_at\":%lld}", t0 - 60000, t0 + 3600000);
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/events/44", NULL, body, &R), 400); /* body id differs */
  expect(400, 40001);
  CHECK(strstr(R.body, "id") != NULL);
  CHECK_EQ(hc_do(p, "PUT", "/api/v1/events/43", NULL, body, &R), 201); /* body id agrees */
  CHECK_EQ(hc_do(p, "GET", "/api/v1/events/44", NULL, NULL, &R), 404);
  /* engine-minted ids are above the client range */
  snprintf(body, sizeof(body),
           "{\"name\":\"minted\",\"stock\":3,\"price\":100,\"start_at\":%lld,"
           "\"end_at\":%lld}", t0 - 60000, t0 + 3600000);
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events", NULL, body, &R), 201);
  CHECK(hc_json(&R, "data.id", v, sizeof(v)) == 0);
  CHECK(strtoull(v, NULL, 10) > 9007199254740991ull);

  CHECK_EQ(reserve(p, 42, 7, NULL), 201);
  CHECK(hc_json(&R, "data.id", order, sizeof(order)) == 0);
  snprintf(path, sizeof(path), "/api/v1/events/42/orders/%s", order);
  CHECK_EQ(hc_do(p, "GET", path, NULL, NULL, &R), 200);
  CHECK(hc_json(&R, "data.event_id", v, sizeof(v)) == 0 && strcmp(v, "42") == 0);
  snprintf(path, sizeof(path), "/api/v1/events/43/orders/%s", order); /* another event's */
  CHECK_EQ(hc_do(p, "GET", path, NULL, NULL, &R), 404);
  expect(404, 30008);
  snprintf(path, sizeof(path), "/api/v1/events/43/orders/%s/pay", order);
  CHECK_EQ(hc_do(p, "POST", path, NULL, "{\"payment_id\":\"p1\"}", &R), 404);
  expect(404, 30008);
  snprintf(path, sizeof(path), "/api/v1/events/x/orders/%s", order);
  CHECK_EQ(hc_do(p, "GET", path, NULL, NULL, &R), 400);
  expect(400, 40001);
  snprintf(path, sizeof(path), "/api/v1/events/42/orders/%s/pay", order);
  CHECK_EQ(hc_do(p, "GET", path, NULL, NULL, &R), 405);
  CHECK_EQ(hc_do(p, "POST", path, NULL, "{\"payment_id\":\"p1\"}", &R), 200);
  CHECK(hc_json(&R, "data.state", v, sizeof(v)) == 0 && strcmp(v, "paid") == 0);
  CHECK_EQ(reserve(p, 42, 8, NULL), 201);
  CHECK(hc_json(&R, "data.id", order, sizeof(order)) == 0);
  snprintf(path, sizeof(path), "/api/v1/events/42/orders/%s/cancel", order);
  CHECK_EQ(hc_do(p, "POST", path, NULL, NULL, &R), 200);
  CHECK(hc_json(&R, "data.state", v, sizeof(v)) == 0 && strcmp(v, "cancelled") == 0);
  CHECK_EQ(hc_do(p, "GET", "/api/v1/events/42/orders/1/x", NULL, NULL, &R), 404);
  expect(404, 40004);

  /* kill -9: the placed events and their counters come back */
  CHECK_EQ(spiked_stop(&s, SIGKILL), 128 + SIGKILL);
  spiked_start(&s, dir, NULL);
  CHECK_EQ(hc_do(s.port, "GET", "/api/v1/events/42", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_int(&R, "data.sold"), 1);
  CHECK_EQ(hc_json_int(&R, "data.available"), 2);
  CHECK_EQ(hc_do(s.port, "GET", "/api/v1/events/9007199254740991", NULL, NULL, &R), 200);
  snprintf(body, sizeof(body),
           "{\"name\":\"again\",\"stock\":3,\"price\":100,\"start_at\":%lld,"
           "\"end_at\":%lld}", t0 - 60000, t0 + 3600000);
  CHECK_EQ(hc_do(s.port, "PUT", "/api/v1/events/42", NULL, body, &R), 409);
  expect(409, 30010);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(dir);
}

static void restart_keeps_state(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  char dir[256];
  snprintf(dir, sizeof(dir), "%s", s.dir);
  CHECK_EQ(create_event(s.port, 4, 5, 1, NULL), 201);
  CHECK_EQ(reserve(s.port, 4, 1, ",\"request_id\":\"k1\""), 201);
  char order[32], v[32];
  CHECK(hc_json(&R, "data.id", order, sizeof(order)) == 0);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  spiked_start(&s, dir, NULL);
  CHECK_EQ(hc_do(s.port, "GET", "/api/v1/events/4", NULL, NULL, &R), 200);
  CHECK_EQ(hc_json_int(&R, "data.reserved"), 1);
  CHECK_EQ(reserve(s.port, 4, 1, NULL), 409); /* the limit survived */
  expect(409, 30007);
  CHECK_EQ(reserve(s.port, 4, 1, ",\"request_id\":\"k1\""), 200); /* so did the key */
  CHECK(hc_json(&R, "data.id", v, sizeof(v)) == 0 && strcmp(v, order) == 0);
  char path[64];
  snprintf(path, sizeof(path), "/api/v1/orders/%s", order);
  CHECK_EQ(hc_do(s.port, "GET", path, NULL, NULL, &R), 200);
  CHECK_EQ(spiked_stop(&s, SIGINT), 0);
  test_rmrf(dir);
}

/* Stop s (SIGTERM: exit 0), start it again on dir, and find each of the
 * n orders answered 201 before; then stop it and remove dir. */
static void all_there_after_restart(spiked *s, const char *dir, char (*ids)[32], int n) {
  CHECK_EQ(spiked_stop(s, SIGTERM), 0);
  spiked_start(s, dir, NULL);
  for (int i = 0; i < n; i++) {
    char path[64];
    snprintf(path, sizeof(path), "/api/v1/orders/%.31s", ids[i]);
    CHECK_EQ(hc_do(s->port, "GET", path, NULL, NULL, &R), 200);
  }
  CHECK_EQ(spiked_stop(s, SIGTERM), 0);
  test_rmrf(dir);
}

static void sigterm_drains_in_flight(void) {
  enum { CONNS = 50 };
  spiked s;
  spiked_start(&s, NULL, NULL);
  char dir[256];
  snprintf(dir, sizeof(dir), "%s", s.dir);
  CHECK_EQ(create_event(s.port, 2, 100000, 1, NULL), 201);
  int fds[CONNS];
  for (int i = 0; i < CONNS; i++) {
    fds[i] = hc_connect(s.port);
    static char buf[1 << 15];
    size_t len = 0;
    for (int k = 0; k < 8; k++) {
      char body[64];
      snprintf(body, sizeof(body), "{\"user_id\":\"%d\"}", i * 100 + k + 1);
      len += hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/2/orders", NULL, body);
    }
    hc_send(fds[i], buf, len);
  }
  /* One answer proves the server is reading; then SIGTERM while the rest
   * are in flight. (Requests it has not read yet are not in flight: the
   * drain may close those connections unanswered.) */
  static char ids[CONNS * 8][32];
  int n = 0;
  CHECK_EQ(hc_read(fds[0], &R, 10000), 0);
  CHECK_EQ(R.status, 201);
  CHECK(hc_json(&R, "data.id", ids[n++], 32) == 0);
  kill(s.pid, SIGTERM);
  for (int i = 0; i < CONNS; i++) {
    while (hc_read(fds[i], &R, 5000) == 0) {
      if (R.status == 201) CHECK(hc_json(&R, "data.id", ids[n++], 32) == 0);
      if (R.closed) break;
    }
    close(fds[i]);
  }
  all_there_after_restart(&s, dir, ids, n); /* already exiting: its stop exits 0 */
}

/* A request whose head was read before SIGTERM and whose body was still on
 * its way (after a 100 Continue, or without Expect) is read to its end,
 * served and answered: closing it unanswered would leave its client not
 * knowing whether it happened. An idle connection, and one with half a
 * head, are closed at once. */
static void sigterm_finishes_begun_requests(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  char dir[256];
  snprintf(dir, sizeof(dir), "%s", s.dir);
  CHECK_EQ(create_event(s.port, 3, 100, 1, NULL), 201);
  static const char with_expect[] =
      "POST /api/v1/events/3/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: 16\r\n\r\n";
  static const char without[] =
      "POST /api/v1/events/3/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
      "Content-Length: 16\r\n\r\n";
  static const char half_head[] = "POST /api/v1/events/3/orders HTTP/1.1\r\nHost: t\r\n";
  int a = hc_connect(s.port), b = hc_connect(s.port), c = hc_connect(s.port);
  int d = hc_connect(s.port), e = hc_connect(s.port);
  int idle = hc_connect(s.port);
  hc_send(a, with_expect, sizeof(with_expect) - 1);
  char got[256];
  size_t n = 0;
  for (int64_t end = test_now_ms() + 5000; test_now_ms() < end && !strstr(got, "\r\n\r\n");) {
    struct pollfd pf = {a, POLLIN, 0};
    if (poll(&pf, 1, 50) <= 0) continue;
    ssize_t k = recv(a, got + n, sizeof(got) - 1 - n, 0);
    CHECK(k > 0);
    n += (size_t)k;
    got[n] = '\0';
  }
  CHECK(strcmp(got, "HTTP/1.1 100 Continue\r\n\r\n") == 0);
  hc_send(b, without, sizeof(without) - 1);
  hc_send(c, half_head, sizeof(half_head) - 1);
  /* and two with part of their bodies in (one, then several, finished
   * back to back after the signal: only the first was served) */
  hc_send(d, without, sizeof(without) - 1);
  hc_send(d, "{", 1);
  hc_send(e, without, sizeof(without) - 1);
  hc_send(e, "{\"user", 6);
  /* and a parked feed wait, released by the drain */
  int f = hc_connect(s.port);
  char freq[256];
  size_t fn = hc_format(freq, sizeof(freq), "GET", "/api/v1/feed?after=1&wait_ms=25000", NULL, NULL);
  hc_send(f, freq, fn);
  CHECK_EQ(hc_do(s.port, "GET", "/livez", NULL, NULL, &R), 200); /* all of them were read */
  kill(s.pid, SIGTERM);
  /* its answer says the connection ends (released before each loop hears
   * of the drain, it once lacked Connection: close) */
  CHECK_EQ(hc_read(f, &R, 5000), 0);
  CHECK_EQ(R.status, 200);
  char fconn[32];
  CHECK(hc_header(&R, "Connection", fconn, sizeof(fconn)) != NULL && strcmp(fconn, "close") == 0);
  close(f);
  usleep(300 * 1000);
  /* the idle connection and the half head are closed: end of file, nothing else */
  int closed[2] = {idle, c};
  for (int i = 0; i < 2; i++) {
    char x;
    struct pollfd pf = {closed[i], POLLIN, 0};
    CHECK(poll(&pf, 1, 3000) == 1 && recv(closed[i], &x, 1, 0) == 0);
    close(closed[i]);
  }
  hc_send(a, "{\"user_id\":\"71\"}", 16);
  hc_send(b, "{\"user_id\":\"72\"}", 16);
  hc_send(d, "\"user_id\":\"73\"}", 15);
  hc_send(e, "_id\":\"74\"}", 10);
  char ids[4][32];
  int fds[4] = {a, b, d, e};
  for (int i = 0; i < 4; i++) {
    CHECK_EQ(hc_read(fds[i], &R, 5000), 0);
    CHECK_EQ(R.status, 201);
    char v[32];
    CHECK(hc_header(&R, "Connection", v, sizeof(v)) != NULL && strcmp(v, "close") == 0);
    CHECK(hc_json(&R, "data.id", ids[i], sizeof(ids[i])) == 0);
    CHECK(hc_read(fds[i], &R, 3000) != 0); /* then the close */
    close(fds[i]);
  }
  all_there_after_restart(&s, dir, ids, 4);
}

/* A pipelined flood of GETs on one connection, read and dropped: keeps
 * the loop busy between its waits for events. */
typedef struct flood {
  int fd;
  volatile int stop;
  pthread_t tw, tr;
} flood;

static void *flood_write(void *arg) {
  flood *f = arg;
  static const char get[] = "GET /livez HTTP/1.1\r\nHost: t\r\n\r\n";
  char buf[64 * (sizeof(get) - 1)];
  for (size_t i = 0; i < 64; i++) memcpy(buf + i * (sizeof(get) - 1), get, sizeof(get) - 1);
  while (!f->stop)
    if (send(f->fd, buf, sizeof(buf), MSG_NOSIGNAL) < 0) break;
  return NULL;
}

static void *flood_read(void *arg) {
  flood *f = arg;
  char buf[65536];
  while (!f->stop)
    if (recv(f->fd, buf, sizeof(buf), 0) <= 0) break;
  return NULL;
}

/* A loop stopped (starved of CPU) past a request's deadline, with the rest
 * of the request waiting unread in its socket: when it runs again its
 * sweep can come before the read. The request arrived whole in time; it is
 * served, not cut as a timeout (a nice-19 spiked beside busy loops cut 18
 * of 300 such requests). The loop is kept busy by a flood, so that it is
 * stopped between its waits for events, where the sweep runs first. */
static void starved_loop_reads_before_it_cuts(void) {
  static const char *const extra[] = {"--header-timeout-ms", "300", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 1, 1000, 1000, NULL), 201);
  static const char head[] = "POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\n"
                             "Content-Type: application/json\r\nContent-Length: 16\r\n\r\n";
  for (int round = 0; round < 5; round++) {
    flood fl[3];
    for (int k = 0; k < 3; k++) {
      flood *f = &fl[k];
      *f = (flood){.fd = hc_connect(s.port)};
      CHECK(f->fd >= 0);
      CHECK_EQ(pthread_create(&f->tw, NULL, flood_write, f), 0);
      CHECK_EQ(pthread_create(&f->tr, NULL, flood_read, f), 0);
    }
    usleep(100 * 1000);
    int a = hc_connect(s.port);
    hc_send(a, head, sizeof(head) - 1);
    usleep(50 * 1000); /* its head is read: its deadline runs */
    kill(s.pid, SIGSTOP);
    char body[32];
    snprintf(body, sizeof(body), "{\"user_id\":\"%d\"}", 70 + round);
    hc_send(a, body, strlen(body)); /* whole, 50 ms into its 300 */
    usleep(700 * 1000);
    kill(s.pid, SIGCONT);
    CHECK_EQ(hc_read(a, &R, 5000), 0);
    CHECK_EQ(R.status, 201);
    close(a);
    for (int k = 0; k < 3; k++) {
      flood *f = &fl[k];
      f->stop = 1;
      shutdown(f->fd, SHUT_RDWR);
      pthread_join(f->tw, NULL);
      pthread_join(f->tr, NULL);
      close(f->fd);
    }
  }
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

/* A body that never comes does not hold the drain to its timeout: its
 * request's deadline is brought within half the drain's, and the drain
 * ends there, not with "drain timed out". */
static void drain_bounds_a_slow_body(void) {
  /* 4 s, not 2: the drain ends at half of it, and what lies between that
   * and the bound is the margin for the exit (the TSan spiked beside four
   * busy loops: 1.22 s of the old 1.9 s bound) */
  static const char *const extra[] = {"--drain-timeout-ms", "4000", NULL};
  spiked s;
  spiked_start(&s, NULL, extra);
  CHECK_EQ(create_event(s.port, 3, 100, 1, NULL), 201);
  static const char head[] =
      "POST /api/v1/events/3/orders HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
      "Content-Length: 16\r\n\r\n{";
  int fd = hc_connect(s.port);
  hc_send(fd, head, sizeof(head) - 1);
  CHECK_EQ(hc_do(s.port, "GET", "/livez", NULL, NULL, &R), 200); /* it was read */
  int64_t t0 = test_now_ms();
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  int64_t took = test_now_ms() - t0;
  printf("  drained in %lld ms with a body that never came (drain timeout 4000 ms)\n",
         (long long)took);
  CHECK(took < 3800);
  CHECK(strstr(spiked_log(&s), "drain timed out") == NULL);
  close(fd);
  test_rmrf(s.dir);
}

/* A user's orders come a page of 1,000 at a time, newest first, with the
 * cursor of the next page (null on the last); every order on exactly one
 * page. */
static void user_orders_paged(void) {
  enum { N = 1005, WAVE = 100 };
  spiked s;
  spiked_start(&s, NULL, NULL);
  int p = s.port;
  CHECK_EQ(hc_do(p, "POST", "/api/v1/events", NULL,
                 "{\"id\":5,\"name\":\"paged\",\"stock\":2000,\"price\":1,\"start_at\":0,"
                 "\"end_at\":253402300799999,\"per_user_limit\":2000}",
                 &R),
           201);
  int fd = hc_connect(p);
  static char buf[WAVE * 256];
  for (int done = 0; done < N;) {
    size_t len = 0;
    int k = N - done < WAVE ? N - done : WAVE;
    for (int i = 0; i < k; i++)
      len += hc_format(buf + len, sizeof(buf) - len, "POST", "/api/v1/events/5/orders", NULL,
                       "{\"user_id\":\"500\"}");
    hc_send(fd, buf, len);
    for (int i = 0; i < k; i++) {
      CHECK_EQ(hc_read(fd, &R, 10000), 0);
      CHECK_EQ(R.status, 201);
    }
    done += k;
  }
  close(fd);
  static char seen[N][24];
  int nseen = 0;
  char next[32] = "", path[128];
  for (int page = 0;; page++) {
    if (page == 0)
      snprintf(path, sizeof(path), "/api/v1/users/500/orders");
    else
      snprintf(path, sizeof(path), "/api/v1/users/500/orders?after=%s", next);
    CHECK_EQ(hc_do(p, "GET", path, NULL, NULL, &R), 200);
    int n = hc_json_len(&R, "data.orders");
    CHECK_EQ(n, page == 0 ? 1000 : N - 1000);
    /* each order object's id, in one pass (hc_json per index parses the
     * whole page again each time: seconds under ASan for 1,000 orders) */
    const char *at = R.body;
    for (int i = 0; i < n; i++) {
      char id[24];
      at = strstr(at, "{\"id\":\"");
      CHECK(at != NULL);
      if (at == NULL) break;
      at += strlen("{\"id\":\"");
      size_t len = strcspn(at, "\"");
      CHECK(len > 0 && len < sizeof(id));
      snprintf(id, sizeof(id), "%.*s", (int)len, at);
      for (int j = 0; j < nseen; j++) CHECK(strcmp(seen[j], id) != 0);
      CHECK(nseen < N);
      snprintf(seen[nseen++], sizeof(seen[0]), "%s", id);
    }
    if (strstr(R.body, "\"next\":null") != NULL) break;
    CHECK(page == 0);
    CHECK(hc_json(&R, "data.next", next, sizeof(next)) == 0 && next[0] != '\0');
  }
  CHECK_EQ(nseen, N);
  /* a cursor that is not one of this user's orders */
  CHECK_EQ(hc_do(p, "GET", "/api/v1/users/501/orders?after=12345", NULL, NULL, &R), 400);
  expect(400, 40001);
  CHECK(strstr(R.body, "after") != NULL);
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  test_rmrf(s.dir);
}

static void feed_long_poll(void) {
  spiked s;
  spiked_start(&s, NULL, NULL);
  CHECK_EQ(create_event(s.port, 1, 10, 1, NULL), 201); /* seq 1 */
  int fd = hc_connect(s.port);
  char req[256];
  size_t n = hc_format(req, sizeof(req), "GET", "/api/v1/feed?after=1&wait_ms=10000", NULL, NULL);
  int64_t t0 = test_now_ms();
  hc_send(fd, req, n);
  usleep(200 * 1000);
  CHECK_EQ(reserve(s.port, 1, 5, NULL), 201); /* the commit wakes the parked request */
  static hc_resp W;
  CHECK_EQ(hc_read(fd, &W, 5000), 0);
  CHECK_EQ(W.status, 200);
  CHECK(test_now_ms() - t0 < 3000);
  CHECK_EQ(hc_json_len(&W, "data.changes"), 1);
  CHECK_EQ(hc_json_int(&W, "data.next"), 2);
  /* nothing happens: it answers empty at wait_ms */
  n = hc_format(req, sizeof(req), "GET", "/api/v1/feed?after=2&wait_ms=400", NULL, NULL);
  t0 = test_now_ms();
  hc_send(fd, req, n);
  CHECK_EQ(hc_read(fd, &W, 5000), 0);
  int64_t took = test_now_ms() - t0;
  CHECK(took >= 380 && took < 2000);
  CHECK_EQ(hc_json_len(&W, "data.changes"), 0);
  CHECK_EQ(hc_json_int(&W, "data.next"), 2);
  /* a parked request does not hold up the drain */
  n = hc_format(req, sizeof(req), "GET", "/api/v1/feed?after=2&wait_ms=30000", NULL, NULL);
  hc_send(fd, req, n);
  usleep(100 * 1000);
  t0 = test_now_ms();
  CHECK_EQ(spiked_stop(&s, SIGTERM), 0);
  CHECK(test_now_ms() - t0 < 5000);
  /* it was answered, and the answer says the connection ends (the wait is
   * released before each loop hears of the drain: it once raced) */
  CHECK_EQ(hc_read(fd, &W, 5000), 0);
  CHECK_EQ(W.status, 200);
  char conn[32];
  CHECK(hc_header(&W, "Connection", conn, sizeof(conn)) != NULL && strcmp(conn, "close") == 0);
  close(fd);
  test_rmrf(s.dir);
}

/* A long-poll whose client closes, or half-closes, ends at once: it does
 * not hold its connection, a --max-conns place and one of the engine's
 * parked feed waits until wait_ms runs out (outside QA: 1024 abandoned
 * long-polls locked every feed consumer out for 30 s). A client that only
 * half-closed still gets its answer, an empty page. */
static void feed_long_poll_client_gone(void) {
  spiked s;
  const char *args[] = {"--max-conns", "16", NULL};
  spiked_start(&s, NULL, args);
  CHECK_EQ(create_event(s.port, 1, 10, 1, NULL), 201); /* seq 1 */
  /* GONE close their keep-alive connections; then one that said
   * Connection: close, one HTTP/1.0 (neither is read after its request,
   * so neither hears the close: the sweep asks the socket), one reset
   * (the close path, not end-of-file); HALF shut down their sending side */
  enum { GONE = 8, CLOSE_HDR = GONE, H10, RST, HALF0, HALF = 2, ALL = HALF0 + HALF };
  int fds[ALL];
  char req[256], req_close[256];
  size_t n = hc_format(req, sizeof(req), "GET", "/api/v1/feed?after=1&wait_ms=30000", NULL, NULL);
  size_t n_close = hc_format(req_close, sizeof(req_close), "GET", "/api/v1/feed?after=1&wait_ms=30000",
                             "Connection: close\r\n", NULL);
  static const char req10[] = "GET /api/v1/feed?after=1&wait_ms=30000 HTTP/1.0\r\n\r\n";
  for (int i = 0; i < ALL; i++) {
    fds[i] = hc_connect(s.port);
    if (i == CLOSE_HDR) hc_send(fds[i], req_close, n_close);
    else if (i == H10) hc_send(fds[i], req10, sizeof(req10) - 1);
    else hc_send(fds[i], req, n);
  }
  /* all parked: polled, not a fixed 300 ms (a slow or loaded machine takes
   * longer to accept and parse twelve requests); the same values asked */
  CHECK(metric_wait(s.port, "spike_feed_waiters", ALL, 10000) >= 0);
  CHECK(metric_wait(s.port, "spike_connections", ALL + 1, 10000) >= 0);
  CHECK_EQ(metric(s.port, "spike_feed_waiters_capacity"), 1024);
  int64_t t0 = test_now_ms();
  for (int i = 0; i < HALF0; i++) {
    if (i == RST) {
      struct linger lg = {1, 0};
      CHECK_EQ(setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    }
    close(fds[i]);
  }
  for (int i = HALF0; i < ALL; i++) CHECK_EQ(shutdown(fds[i], SHUT_WR), 0);
  static hc_resp W;
  for (int i = HALF0; i < ALL; i++) {
    CHECK_EQ(hc_read(fds[i], &W, 5000), 0);
    CHECK_EQ(W.status, 200);
    CHECK_EQ(hc_json_len(&W, "data.changes"), 0);
    CHECK_EQ(hc_json_int(&W, "data.next"), 1);
    close(fds[i]);
  }
  CHECK(test_now_ms() - t0 < 5000);
  /* every one of them let go: only the metrics request is left, and no
   * long-poll holds a parked place (the reset one went by the close path) */
  CHECK(metric_wait(s.port, "spike_connections", 1, 5000) >= 0);
  CHECK(metric_wait(s.port, "spike_feed_waiters", 0, 5000) >= 0);
  CHECK(test_now_ms() - t0 < 10000);
  /* the places are free again: as many long-polls park again */
  for (int i = 0; i < ALL; i++) {
    fds[i] = hc_connect(s.port);
    hc_send(fds[i], req, n);
  }
  CHECK_EQ(reserve(s.port, 1, 5, NULL), 201); /* seq 2 wakes them all */
  for (int i = 0; i < ALL; i++) {
    CHECK_EQ(hc_read(fds[i], &W, 5000), 0);
    CHECK_EQ(W.status, 200);
    CHECK_EQ(hc_json_len(&W, "data.changes"), 1);
    close(fds[i]);
  }
  stop_clean(&s);
}

/* A second spiked on a busy address refuses to start (the listeners use
 * SO_REUSEPORT, which would otherwise let it take half the traffic). */
static void address_in_use(void) {
  spiked a;
  spiked_start(&a, NULL, NULL);
  char listen[64], dir[300];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", a.port);
  snprintf(dir, sizeof(dir), "%s-second", a.dir);
  const char *args[] = {"--listen", listen, "--data", dir, NULL};
  static char log[1 << 14];
  CHECK_EQ(spiked_refused(args, log, sizeof(log)), 1);
  struct stat sb;
  CHECK(stat(dir, &sb) != 0); /* refused before it made a store */
  CHECK_EQ(hc_do(a.port, "GET", "/healthz/live", NULL, NULL, &R), 200); /* the first serves on */
  CHECK_EQ(spiked_stop(&a, SIGTERM), 0);
  test_rmrf(a.dir);
  test_rmrf(dir);
}

TEST_LIST({"every_route_and_code", every_route_and_code, 60},
          {"starved_loop_reads_before_it_cuts", starved_loop_reads_before_it_cuts, 60},
          {"address_in_use", address_in_use, 30},
          {"feed_long_poll_client_gone", feed_long_poll_client_gone, 60},
          {"trace_ids_and_msgpack", trace_ids_and_msgpack, 30},
          {"pipelined_in_order", pipelined_in_order, 120},
          {"pipelined_with_no_turn_budget", pipelined_with_no_turn_budget, 120},
          {"malformed_requests", malformed_requests, 30},
          {"slowloris_and_idle", slowloris_and_idle, 30},
          {"rate_bucket_past_32_bits", rate_bucket_past_32_bits, 10},
          {"late_request_behind_answers", late_request_behind_answers, 30},
          {"connection_limit", connection_limit, 30},
          {"emfile_no_busy_loop", emfile_no_busy_loop, 45},
          {"linger_after_413", linger_after_413, 30},
          {"linger_after_400", linger_after_400, 30},
          {"linger_at_max_conns", linger_at_max_conns, 30},
          {"linger_refusals_bounded", linger_refusals_bounded, 30},
          {"linger_bounds", linger_bounds, 30},
          {"linger_not_kept_by_drain", linger_not_kept_by_drain, 30},
          {"drain_keeps_written_answers", drain_keeps_written_answers, 120},
          {"drain_waits_for_a_slow_reader", drain_waits_for_a_slow_reader, 90},
          {"drain_timeout_with_idle_loops", drain_timeout_with_idle_loops, 30},
          {"linger_extension_is_bounded", linger_extension_is_bounded, 60},
          {"busy_and_rate_limited", busy_and_rate_limited, 30},
          {"storage_error_map_full", storage_error_map_full, 60},
          {"jwt_and_admin", jwt_and_admin, 30},
          {"sell_out_200_connections", sell_out_200_connections, 120},
          {"put_event_and_scoped_orders", put_event_and_scoped_orders, 30},
          {"restart_keeps_state", restart_keeps_state, 30},
          {"sigterm_drains_in_flight", sigterm_drains_in_flight, 60},
          {"sigterm_finishes_begun_requests", sigterm_finishes_begun_requests, 30},
          {"drain_bounds_a_slow_body", drain_bounds_a_slow_body, 30},
          {"user_orders_paged", user_orders_paged, 60},
          {"feed_long_poll", feed_long_poll, 60})

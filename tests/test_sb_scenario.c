/*
 * test_sb_scenario.c -- spikebench's scenarios and tokens (bench/scenario.c,
 * bench/mint.c): the exact bytes of spike's built-in requests and of a
 * template's, placeholders, the requests' numbers and events over all
 * threads, header lines, the template file's errors, how
 * answers map onto outcomes, the outcomes each run expects, the mixed
 * scenario's pay queue, and per-user HS256 tokens that libjwt verifies.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <jwt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../bench/scenario.h"
#include "spike.h"
#include "test.h"

static sc_scenario sc;
static char buf[16384], err[300];
static _Atomic uint64_t seqs; /* the run's request counter, every sc_worker's */

static void setup(int id, const char *prefix) {
  memset(&sc, 0, sizeof(sc));
  atomic_store(&seqs, 0);
  sc.event = 7;
  sc.user_base = 1000;
  sc.nworkers = 2;
  sc.seed = 1;
  snprintf(sc.host, sizeof(sc.host), "h:81");
  snprintf(sc.run_id, sizeof(sc.run_id), "00000000000000ab");
  CHECK_EQ(sc_builtin(&sc, id, prefix, prefix, err, sizeof(err)), 0);
  sc_set_expected(&sc);
}

static void builtin_reserve_bytes(void) {
  setup(SC_RESERVE, "/shop/");
  sc_worker w0, w1;
  CHECK_EQ(sc_worker_init(&w0, &sc, 0, 0, &seqs), 0);
  CHECK_EQ(sc_worker_init(&w1, &sc, 1, 0, &seqs), 0);
  sc_call c;
  sc_next(&w1, &c);
  /* users interleave by thread: thread 1 of 2 starts at base + 1; requests
   * are numbered in the order they are taken, whichever thread takes them */
  CHECK_EQ(c.user, 1001);
  CHECK_EQ(c.seq, 1);
  size_t n = sc_format(&w1, &c, buf, sizeof(buf));
  buf[n] = '\0';
  const char *want = "POST /shop/api/v1/events/7/orders HTTP/1.1\r\nHost: h:81\r\n"
                     "Content-Type: application/json\r\nContent-Length: 18\r\n\r\n"
                     "{\"user_id\":\"1001\"}";
  if (strcmp(buf, want) != 0) fprintf(stderr, "got [%s]\n", buf);
  CHECK(strcmp(buf, want) == 0);
  sc_next(&w0, &c);
  CHECK_EQ(c.user, 1000);
  CHECK_EQ(c.seq, 2);
  sc_next(&w0, &c);
  CHECK_EQ(c.user, 1002);
  CHECK_EQ(c.seq, 3);
  /* every request fits what sc_max_request says */
  CHECK(sc_max_request(&sc) >= n);
  sc_worker_free(&w0);
  sc_worker_free(&w1);

  /* --users N cycles */
  setup(SC_RESERVE, "");
  sc.users = 3;
  sc.nworkers = 1;
  CHECK_EQ(sc_worker_init(&w0, &sc, 0, 0, &seqs), 0);
  uint64_t seen[6];
  for (int i = 0; i < 6; i++) {
    sc_next(&w0, &c);
    seen[i] = c.user;
  }
  CHECK(seen[0] == 1000 && seen[1] == 1001 && seen[2] == 1002 && seen[3] == 1000);
  sc_worker_free(&w0);

  /* --events 3: events 7, 8, 9 in turn over both threads' requests */
  setup(SC_RESERVE, "");
  sc.events = 3;
  CHECK_EQ(sc_worker_init(&w0, &sc, 0, 0, &seqs), 0);
  CHECK_EQ(sc_worker_init(&w1, &sc, 1, 0, &seqs), 0);
  int per[3] = {0, 0, 0};
  for (int i = 0; i < 30; i++) {
    sc_next(i % 2 ? &w1 : &w0, &c);
    CHECK(c.event >= 7 && c.event <= 9);
    per[c.event - 7]++;
    n = sc_format(i % 2 ? &w1 : &w0, &c, buf, sizeof(buf));
    buf[n] = '\0';
    char line[64];
    snprintf(line, sizeof(line), "POST /api/v1/events/%" PRIu64 "/orders ", c.event);
    CHECK(strncmp(buf, line, strlen(line)) == 0);
  }
  CHECK(per[0] == 10 && per[1] == 10 && per[2] == 10);
  sc_worker_free(&w0);
  sc_worker_free(&w1);

  /* get fetches the URL's path as is */
  setup(SC_GET, "/index.html");
  CHECK_EQ(sc_worker_init(&w0, &sc, 0, 0, &seqs), 0);
  sc_next(&w0, &c);
  n = sc_format(&w0, &c, buf, sizeof(buf));
  buf[n] = '\0';
  CHECK(strcmp(buf, "GET /index.html HTTP/1.1\r\nHost: h:81\r\n\r\n") == 0);
  sc_worker_free(&w0);
}

/* Threads that take requests at different paces (2 connections on one, 1
 * on the other) still send request k to event + (k - 1) mod N, and
 * {seq} counts 1, 2, ... over all of them: numbered per thread, thread 0
 * sent only odd numbers, every one to the first event. */
static void seq_over_threads(void) {
  setup(SC_RESERVE, "");
  sc.events = 2;
  sc_worker w0, w1;
  CHECK_EQ(sc_worker_init(&w0, &sc, 0, 0, &seqs), 0);
  CHECK_EQ(sc_worker_init(&w1, &sc, 1, 0, &seqs), 0);
  int per[2] = {0, 0};
  sc_call c;
  for (uint64_t k = 1; k <= 30; k++) {
    sc_next(k % 3 == 0 ? &w1 : &w0, &c);
    CHECK_EQ(c.seq, k);
    CHECK_EQ(c.event, 7 + (k - 1) % 2);
    per[c.event - 7]++;
  }
  CHECK(per[0] == 15 && per[1] == 15);
  sc_worker_free(&w0);
  sc_worker_free(&w1);
}

#define SEQ_THREADS 4
#define SEQ_EACH 20000
static uint64_t seq_got[SEQ_THREADS][SEQ_EACH];

static void *take_seqs(void *arg) {
  uint32_t id = (uint32_t)(uintptr_t)arg;
  sc_worker w;
  CHECK_EQ(sc_worker_init(&w, &sc, id, 0, &seqs), 0);
  sc_call c;
  for (int i = 0; i < SEQ_EACH; i++) {
    sc_next(&w, &c);
    seq_got[id][i] = c.seq;
  }
  sc_worker_free(&w);
  return NULL;
}

/* Threads taking numbers at once: every number of 1..N once, each
 * thread's in increasing order. */
static void seq_concurrent(void) {
  setup(SC_RESERVE, "");
  sc.nworkers = SEQ_THREADS;
  pthread_t th[SEQ_THREADS];
  for (uintptr_t i = 0; i < SEQ_THREADS; i++)
    CHECK(pthread_create(&th[i], NULL, take_seqs, (void *)i) == 0);
  for (int i = 0; i < SEQ_THREADS; i++)
    pthread_join(th[i], NULL);
  static uint8_t seen[SEQ_THREADS * SEQ_EACH + 1];
  for (int t = 0; t < SEQ_THREADS; t++)
    for (int i = 0; i < SEQ_EACH; i++) {
      uint64_t q = seq_got[t][i];
      CHECK(q >= 1 && q <= SEQ_THREADS * SEQ_EACH && !seen[q]);
      seen[q] = 1;
      if (i > 0) CHECK(q > seq_got[t][i - 1]);
    }
  CHECK_EQ(atomic_load(&seqs), SEQ_THREADS * SEQ_EACH);
}

static const char tpl[] = "# a shop\n"
                          "name buy\n"
                          "method PUT\n"
                          "path /cart/{event}/items?u={user}&s={seq}\n"
                          "header Idempotency-Key: {run}-{seq}\n"
                          "body {\"user\":\"{user}\",\"x\":{\"y\":1},\"odd\":\"{nope}\"}\r\n"
                          "won 201 2xx\n"
                          "sold-out 409:30001 410\n"
                          "limited 409:30007\n"
                          "shed 503 429\n";

static void template_bytes(void) {
  setup(SC_RESERVE, "");
  sc_request r;
  CHECK_EQ(sc_template_parse(&r, "/api", tpl, strlen(tpl), err, sizeof(err)), 0);
  CHECK(strcmp(r.name, "buy") == 0 && strcmp(r.method, "PUT") == 0);
  sc_from_template(&sc, &r);
  CHECK_EQ(sc.id, SC_TEMPLATE);
  CHECK_EQ(sc_header_add(sc.headers, &sc.headers_len, sizeof(sc.headers), "X-Trace:  t-{user} ", 0,
                         err, sizeof(err)),
           0);
  sc_set_expected(&sc);
  sc.nworkers = 1;
  sc_worker w;
  CHECK_EQ(sc_worker_init(&w, &sc, 0, 0, &seqs), 0);
  sc_call c;
  sc_next(&w, &c);
  size_t n = sc_format(&w, &c, buf, sizeof(buf));
  buf[n] = '\0';
  const char *body = "{\"user\":\"1000\",\"x\":{\"y\":1},\"odd\":\"{nope}\"}";
  char want[1024];
  snprintf(want, sizeof(want),
           "PUT /api/cart/7/items?u=1000&s=1 HTTP/1.1\r\nHost: h:81\r\nX-Trace: t-1000\r\n"
           "Idempotency-Key: 00000000000000ab-1\r\nContent-Type: application/json\r\n"
           "Content-Length: %zu\r\n\r\n%s",
           strlen(body), body);
  if (strcmp(buf, want) != 0) fprintf(stderr, "got [%s]\nwant [%s]\n", buf, want);
  CHECK(strcmp(buf, want) == 0);
  sc_worker_free(&w);

  /* the defaults: GET without a body, 2xx won; a Content-Type of its own is kept */
  const char *small = "path /x\n";
  CHECK_EQ(sc_template_parse(&r, "", small, strlen(small), err, sizeof(err)), 0);
  CHECK(strcmp(r.method, "GET") == 0);
  CHECK_EQ(sc_outcome_of(&r, 204, 0, 0), OUT_WON);
  CHECK_EQ(sc_outcome_of(&r, 302, 0, 0), OUT_ERROR);
  const char *ct = "path /x\nheader content-type: text/plain\nbody hi\n";
  CHECK_EQ(sc_template_parse(&r, "", ct, strlen(ct), err, sizeof(err)), 0);
  CHECK(strcmp(r.method, "POST") == 0);
  setup(SC_RESERVE, "");
  sc_from_template(&sc, &r);
  sc.nworkers = 1;
  CHECK_EQ(sc_worker_init(&w, &sc, 0, 0, &seqs), 0);
  sc_next(&w, &c);
  n = sc_format(&w, &c, buf, sizeof(buf));
  buf[n] = '\0';
  CHECK(strstr(buf, "application/json") == NULL);
  CHECK(strstr(buf, "content-type: text/plain\r\nContent-Length: 2\r\n\r\nhi") != NULL);
  /* a buffer too small is 0, not a cut request */
  CHECK_EQ(sc_format(&w, &c, buf, n - 1), 0);
  CHECK_EQ(sc_format(&w, &c, buf, n), n);
  sc_worker_free(&w);
}

static void template_errors(void) {
  static const struct {
    const char *text, *why;
  } bad[] = {
      {"method POST\n", "no path"},
      {"path x\n", "starts with /"},
      {"path /a b\n", "spaces"},
      {"path /a\nmethod post\n", "upper-case"},
      {"path /a\nbogus 1\n", "line 2: unknown key"},
      {"path /a\nwon 2000\n", "is not a status"},
      {"path /a\nwon 600\n", "is not a status"},
      {"path /a\nwon 409:x\n", "is not a status"},
      {"path /a\nwon\n", "give statuses"},
      {"path /a/{order}\n", "{order} is only for the built-in pay"},
      {"path /a\nheader Content-Length: 5\n", "spikebench's own"},
      {"path /a\nheader Bad Name: 1\n", "not an HTTP token"},
      {"path /a\nheader NoColon\n", "is not \"Name: value\""},
      {"path /a\nwon 200 201 202 203 204 205 206 207 208 209 210 211 212 213 214 215 216\n",
       "more than 16"},
  };
  sc_request r;
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = '\0';
    CHECK_EQ(sc_template_parse(&r, "", bad[i].text, strlen(bad[i].text), err, sizeof(err)), -1);
    if (strstr(err, bad[i].why) == NULL) fprintf(stderr, "case %zu: [%s]\n", i, err);
    CHECK(strstr(err, bad[i].why) != NULL);
  }
  /* a body past the bound, a control character, a template too long */
  static char big[SC_TEMPLATE_BYTES + 100];
  int n = snprintf(big, sizeof(big), "path /a\nbody ");
  memset(big + n, 'x', SC_BODY_BYTES + 1);
  big[n + SC_BODY_BYTES + 1] = '\0';
  CHECK_EQ(sc_template_parse(&r, "", big, strlen(big), err, sizeof(err)), -1);
  CHECK(strstr(err, "longer than") != NULL);
  const char ctl[] = "path /a\nbody a\001b\n";
  CHECK_EQ(sc_template_parse(&r, "", ctl, sizeof(ctl) - 1, err, sizeof(err)), -1);
  CHECK(strstr(err, "control character") != NULL);
  CHECK_EQ(sc_template_parse(&r, "", big, SC_TEMPLATE_BYTES + 1, err, sizeof(err)), -1);
}

static void header_lines(void) {
  char h[SC_HEADERS_BYTES];
  size_t len = 0;
  CHECK_EQ(sc_header_add(h, &len, sizeof(h), "X-A: 1", 0, err, sizeof(err)), 0);
  CHECK_EQ(sc_header_add(h, &len, sizeof(h), "Authorization: Bearer t", 0, err, sizeof(err)), 0);
  CHECK_EQ(len, strlen("X-A: 1\r\nAuthorization: Bearer t\r\n"));
  CHECK(memcmp(h, "X-A: 1\r\nAuthorization: Bearer t\r\n", len) == 0);
  /* with --jwt-secret the token is spikebench's to give */
  CHECK_EQ(sc_header_add(h, &len, sizeof(h), "authorization: x", 1, err, sizeof(err)), -1);
  CHECK(strstr(err, "--jwt-secret") != NULL);
  static const char *const bad[] = {"Connection: close",
                                    "Transfer-Encoding: chunked",
                                    "X-B: a\rb",
                                    "X-B: a\tb",
                                    ": v",
                                    "X(B): 1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    CHECK_EQ(sc_header_add(h, &len, sizeof(h), bad[i], 0, err, sizeof(err)), -1);
  CHECK_EQ(len, strlen("X-A: 1\r\nAuthorization: Bearer t\r\n"));
  /* at most SC_HEADER_LINES_MAX lines, and a bounded block */
  len = 0;
  for (int i = 0; i < SC_HEADER_LINES_MAX; i++)
    CHECK_EQ(sc_header_add(h, &len, sizeof(h), "X-N: 1", 0, err, sizeof(err)), 0);
  CHECK_EQ(sc_header_add(h, &len, sizeof(h), "X-N: 1", 0, err, sizeof(err)), -1);
  static char long_line[SC_HEADERS_BYTES + 10];
  memset(long_line, 'v', sizeof(long_line) - 1);
  memcpy(long_line, "X-L: ", 5);
  len = 0;
  CHECK_EQ(sc_header_add(h, &len, sizeof(h), long_line, 0, err, sizeof(err)), -1);
  CHECK_EQ(len, 0);
}

static void outcomes(void) {
  setup(SC_RESERVE, "");
  sc_call c = {0, 1000, 0, 1, 7};
  sc_answer a;
  static const struct {
    int status;
    const char *body;
    int outcome;
  } cases[] = {
      {201, "{\"code\":0,\"data\":{\"id\":\"9\",\"user_id\":\"1000\"}}", OUT_WON},
      {200, "{\"code\":0,\"data\":{\"id\":\"9\"}}", OUT_WON},
      {409, "{\"code\":30001,\"msg\":\"sold out\",\"data\":null}", OUT_SOLD_OUT},
      {409, "{\"code\":30007,\"msg\":\"limit\",\"data\":null}", OUT_LIMITED},
      {409, "{\"code\":30006,\"msg\":\"not live\",\"data\":null}", OUT_ERROR},
      {409, "", OUT_ERROR},
      {409, "not json", OUT_ERROR},
      {503, "{\"code\":50005}", OUT_SHED},
      {429, "", OUT_SHED},
      {401, "{\"code\":20001}", OUT_ERROR},
      {500, "{\"code\":50001}", OUT_ERROR},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    sc_classify(&sc, &c, cases[i].status, cases[i].body, strlen(cases[i].body), 0, &a);
    if (a.outcome != cases[i].outcome) fprintf(stderr, "case %zu: %d\n", i, a.outcome);
    CHECK_EQ(a.outcome, cases[i].outcome);
  }
  sc_classify(&sc, &c, 201, cases[0].body, strlen(cases[0].body), 0, &a);
  CHECK(a.has_code && a.code == 0 && a.id == 9 && a.user == 1000);
  /* a body cut short is not read: its code is unknown */
  sc_classify(&sc, &c, 409, cases[2].body, strlen(cases[2].body), 1, &a);
  CHECK(!a.has_code && a.outcome == OUT_ERROR);

  /* what each run expects */
  CHECK(sc.expected[OUT_WON] && sc.expected[OUT_SOLD_OUT] && sc.expected[OUT_SHED]);
  CHECK(!sc.expected[OUT_LIMITED] && !sc.expected[OUT_ERROR]);
  sc.users = 10;
  sc_set_expected(&sc);
  CHECK(sc.expected[OUT_LIMITED]);
  setup(SC_GET, "/");
  CHECK(!sc.expected[OUT_SOLD_OUT] && sc.expected[OUT_WON]);
  sc_classify(&sc, &c, 204, "", 0, 0, &a);
  CHECK_EQ(a.outcome, OUT_WON);
}

static void mixed_pay_queue(void) {
  setup(SC_MIXED, "");
  sc.nworkers = 1;
  sc.read_share = 0;
  sc.pay_share = 1;
  sc_worker w;
  CHECK_EQ(sc_worker_init(&w, &sc, 0, 0, &seqs), 0);
  sc_call c;
  sc_next(&w, &c);
  CHECK_EQ(c.kind, 0); /* reserve */
  sc_answer a = {201, 1, 0, 77, c.user, OUT_WON};
  sc_answered(&w, &c, &a);
  uint64_t buyer = c.user;
  sc_next(&w, &c);
  CHECK_EQ(c.kind, 2); /* pay, for that buyer and order */
  CHECK_EQ(c.order, 77);
  CHECK_EQ(c.user, buyer);
  size_t n = sc_format(&w, &c, buf, sizeof(buf));
  buf[n] = '\0';
  CHECK(strstr(buf, "POST /api/v1/orders/77/pay HTTP/1.1\r\n") == buf);
  CHECK(strstr(buf, "\"payment_id\":\"sb-77\"") != NULL);
  /* a refused reserve is not paid; read_share 1 reads */
  sc_next(&w, &c);
  a = (sc_answer){409, 1, 30001, 0, 0, OUT_SOLD_OUT};
  sc_answered(&w, &c, &a);
  sc.read_share = 1;
  sc_next(&w, &c);
  CHECK_EQ(c.kind, 1);
  n = sc_format(&w, &c, buf, sizeof(buf));
  buf[n] = '\0';
  CHECK(strcmp(buf, "GET /api/v1/events/7 HTTP/1.1\r\nHost: h:81\r\n\r\n") == 0);
  /* the queue's bound: past SC_PAYQ, won buys are dropped and counted */
  sc.read_share = 0;
  for (uint32_t i = 0; i < SC_PAYQ + 5; i++) {
    c.kind = 0;
    a = (sc_answer){201, 1, 0, i + 1, 5, OUT_WON};
    sc_answered(&w, &c, &a);
  }
  CHECK_EQ(w.payq_n, SC_PAYQ);
  CHECK_EQ(w.pay_dropped, 5);
  sc_worker_free(&w);
}

/* The token libjwt decodes with the secret: HS256, sub the user, exp. */
static void check_token(const char *tok, size_t len, const char *secret, uint64_t user,
                        int64_t exp) {
  char t[MINT_TOKEN_BYTES + 1];
  CHECK(len < sizeof(t));
  memcpy(t, tok, len);
  t[len] = '\0';
  jwt_t *j = NULL;
  CHECK(jwt_decode(&j, t, (const unsigned char *)secret, (int)strlen(secret)) == 0);
  CHECK(jwt_get_alg(j) == JWT_ALG_HS256);
  char want[24];
  snprintf(want, sizeof(want), "%" PRIu64, user);
  CHECK(strcmp(jwt_get_grant(j, "sub"), want) == 0);
  CHECK_EQ(jwt_get_grant_int(j, "exp"), exp);
  jwt_free(j);
  /* and not with another secret */
  j = NULL;
  CHECK(jwt_decode(&j, t, (const unsigned char *)"other", 5) != 0);
  if (j != NULL) jwt_free(j);
}

static void tokens(void) {
  int64_t exp = (int64_t)time(NULL) + 600;
  mint m;
  CHECK_EQ(mint_init(&m, "s3cret", exp, 4), 0);
  size_t len;
  const char *t = mint_token(&m, 42, &len);
  CHECK(t != NULL);
  check_token(t, len, "s3cret", 42, exp);
  CHECK_EQ(m.minted, 1);
  t = mint_token(&m, 42, &len);
  CHECK(t != NULL && m.minted == 1 && m.hits == 1);
  t = mint_token(&m, 46, &len); /* the same slot: replaced */
  check_token(t, len, "s3cret", 46, exp);
  t = mint_token(&m, UINT64_MAX, &len);
  check_token(t, len, "s3cret", UINT64_MAX, exp);
  CHECK_EQ(m.minted, 3);
  mint_free(&m);
  CHECK_EQ(mint_init(&m, "", exp, 0), -1);
  CHECK_EQ(mint_init(&m, "s", exp, MINT_SLOTS_MAX + 1), -1);

  /* a scenario with a secret sends each user's token; reads go without */
  setup(SC_MIXED, "");
  sc.nworkers = 1;
  sc.users = 3;
  sc.read_share = 0;
  sc.jwt_secret = "s3cret";
  sc.jwt_exp_s = exp;
  sc_worker w;
  CHECK_EQ(sc_worker_init(&w, &sc, 0, 3, &seqs), 0);
  CHECK_EQ(sc_worker_premint(&w, 3), 0);
  CHECK_EQ(w.mint.minted, 3);
  sc_call c;
  for (int i = 0; i < 6; i++) {
    sc_next(&w, &c);
    size_t n = sc_format(&w, &c, buf, sizeof(buf));
    buf[n] = '\0';
    const char *a = strstr(buf, "\r\nAuthorization: Bearer ");
    CHECK(a != NULL);
    a += 24;
    check_token(a, (size_t)(strstr(a, "\r\n") - a), "s3cret", c.user, exp);
  }
  CHECK_EQ(w.mint.minted, 3); /* all from the tokens signed ahead */
  CHECK(sc_max_request(&sc) > strlen("Authorization: Bearer ") + 100);
  sc.read_share = 1;
  sc_next(&w, &c);
  size_t n = sc_format(&w, &c, buf, sizeof(buf));
  buf[n] = '\0';
  CHECK(strstr(buf, "Authorization") == NULL);
  sc_worker_free(&w);
}

static void run_ids(void) {
  char a[17], b[17];
  sc_run_id(a);
  struct timespec ts = {0, 2000};
  nanosleep(&ts, NULL);
  sc_run_id(b);
  CHECK_EQ(strlen(a), 16);
  CHECK(strspn(a, "0123456789abcdef") == 16);
  CHECK(strcmp(a, b) != 0);
}

TEST_LIST({"builtin_reserve_bytes", builtin_reserve_bytes, 0},
          {"seq_over_threads", seq_over_threads, 0}, {"seq_concurrent", seq_concurrent, 0},
          {"template_bytes", template_bytes, 0}, {"template_errors", template_errors, 0},
          {"header_lines", header_lines, 0}, {"outcomes", outcomes, 0},
          {"mixed_pay_queue", mixed_pay_queue, 0}, {"tokens", tokens, 0}, {"run_ids", run_ids, 0})

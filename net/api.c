/*
 * api.c -- the v1 API: route, authenticate, validate, call libspike, and
 * write the contract's envelope {"code","msg","data","traceId"}.
 *
 * Every handler either answers at once (reads, refusals, ack=memory
 * reserves) or parks its request on the engine with the request itself as
 * the spike_op; the engine's callback finishes the response on this loop's
 * thread. Nothing here blocks and nothing allocates on the reserve path:
 * the response is written into the request's inline buffer, headers in
 * front of the body in reserved head room.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <xxhash.h>

#include "body.h"
#include "dashboard.h"
#include "http.h"
#include "log.h"

#define API_FEED_DEFAULT 100
#define API_FEED_WAIT_MAX_MS 30000

/* ---- the envelope --------------------------------------------------------- */

static const char *reason_phrase(int http) {
  switch (http) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 409: return "Conflict";
  case 413: return "Content Too Large";
  case 429: return "Too Many Requests";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  case 507: return "Insufficient Storage";
  }
  return "Unknown";
}

static void out_begin(req *r) {
  r->out.len = 0;
  r->out.oom = 0;
  jb_reserve(&r->out, RESP_HEAD_ROOM + 512);
  r->out.len = RESP_HEAD_ROOM;
}

static void put(char **p, const char *s, size_t n) {
  memcpy(*p, s, n);
  *p += n;
}
#define PUT_LIT(p, s) put((p), (s), sizeof(s) - 1)

/* The Date header (RFC 9110 §6.6.1), formatted at most once a second. */
static const char *date_header(loop_ctx *lc) {
  int64_t now = (int64_t)time(NULL);
  if (now != lc->date_sec) {
    struct tm tm;
    time_t t = (time_t)now;
    gmtime_r(&t, &tm);
    strftime(lc->date, sizeof(lc->date), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n", &tm);
    lc->date_sec = now;
  }
  return lc->date;
}

/* Put the status line and headers in front of the body, then hand the
 * request to the transport. */
static void finish(req *r, int http, const char *ctype, const char *extra) {
  char head[RESP_HEAD_ROOM], *p = head, num[20];
  size_t body = r->out.len - RESP_HEAD_ROOM;
  PUT_LIT(&p, "HTTP/1.1 ");
  assert(http >= 100 && http <= 999);
  put(&p, num, json_fmt_u64(num, (uint64_t)http));
  PUT_LIT(&p, " ");
  const char *why = reason_phrase(http);
  put(&p, why, strlen(why));
  PUT_LIT(&p, "\r\nContent-Type: ");
  put(&p, ctype, strlen(ctype));
  PUT_LIT(&p, "\r\nContent-Length: ");
  put(&p, num, json_fmt_u64(num, body));
  PUT_LIT(&p, "\r\nX-Request-Id: ");
  put(&p, r->trace, strlen(r->trace));
  PUT_LIT(&p, "\r\n");
  const char *date = date_header(r->lc);
  put(&p, date, strlen(date));
  if (extra != NULL) put(&p, extra, strlen(extra));
  if (r->feed_head_ok) {
    int n = snprintf(
        head + (p - head), sizeof(head) - (size_t)(p - head),
        "X-Spike-Store-Id: %016llx\r\nX-Spike-Feed-Head: %llu\r\nX-Spike-Feed-First: %llu\r\n",
        (unsigned long long)r->feed.store_id, (unsigned long long)r->feed.head,
        (unsigned long long)r->feed.first);
    p += n;
    if (r->restored_from != 0) {
      n = snprintf(head + (p - head), sizeof(head) - (size_t)(p - head),
                   "X-Spike-Restored-From: %016llx\r\nX-Spike-Restored-Seq: %llu\r\n",
                   (unsigned long long)r->restored_from, (unsigned long long)r->restored_seq);
      p += n;
    }
  }
  /* Draining, the connection ends after its last answer: that one says so
   * (the answers queued before it are still written). An HTTP/1.0 client
   * keeps the connection only if the answer says it may. */
  if (loop_draining(r->lc) && r->next == NULL) r->keep_alive = 0;
  if (!r->keep_alive)
    PUT_LIT(&p, "Connection: close\r\n");
  else if (r->http10)
    PUT_LIT(&p, "Connection: keep-alive\r\n");
  PUT_LIT(&p, "\r\n");
  size_t hl = (size_t)(p - head);
  r->out_off = RESP_HEAD_ROOM - hl;
  memcpy(r->out.p + r->out_off, head, hl);
  if (r->head) r->out.len = RESP_HEAD_ROOM; /* HEAD: GET's headers, no body */
  r->http = http;
  conn_respond(r);
}

static void fail(req *r, int status, const char *detail);

/* The ids a request is about, as JSON fields: those its answer named
 * (event, order, user) and, failing those, the path's. */
void api_log_ids(const req *r, char *out, size_t cap) {
  size_t k = 0;
  out[0] = '\0';
  uint64_t ev = r->event_id, ord = r->order_id, user = r->user_id;
  if (r->m.id_ok && ev == 0 && r->handler >= H_EVENT_GET && r->handler <= H_RESERVE) ev = r->m.id;
  if (r->m.event_ok && ev == 0 && r->m.in_event) ev = r->m.event_id;
  if (r->m.id_ok && ord == 0 && r->handler >= H_ORDER_GET && r->handler <= H_ORDER_CANCEL)
    ord = r->m.id;
  if (r->m.id_ok && user == 0 && r->handler == H_USER_ORDERS) user = r->m.id;
  if (ev != 0)
    k += (size_t)snprintf(out + k, cap - k, ",\"eventId\":\"%llu\"", (unsigned long long)ev);
  if (ord != 0 && k < cap)
    k += (size_t)snprintf(out + k, cap - k, ",\"orderId\":\"%llu\"", (unsigned long long)ord);
  if (user != 0 && k < cap)
    snprintf(out + k, cap - k, ",\"userId\":\"%llu\"", (unsigned long long)user);
}

static void ok_begin(req *r) {
  out_begin(r);
  jb_lit(&r->out, "{\"code\":0,\"msg\":\"ok\",\"data\":");
}

static void ok_end(req *r, int http) {
  jb_lit(&r->out, ",\"traceId\":");
  jb_cstr(&r->out, r->trace);
  jb_lit(&r->out, "}");
  if (r->out.oom) {
    fail(r, SPIKE_EINTERNAL, "response too large");
    return;
  }
  r->status = SPIKE_OK;
  finish(r, http, "application/json", NULL);
}

/* Every 5xx is logged, up to API_5XX_LOGGED_PER_S lines a second per loop
 * thread: a storm of them (a table full under a crowd, a probe every few
 * ms) is told as a count instead of a line each, which would flood the log
 * (test_ops: 150 507s in a second are 20 lines and a count of 130). The
 * metrics count every one. */
#define API_5XX_LOGGED_PER_S 20

void api_log_unlogged(loop_ctx *lc, int force) {
  uint64_t now = uv_now(&lc->loop);
  if (lc->err_unlogged == 0 || (!force && now - lc->err_window_ms < 1000)) return;
  log_line(LOG_ERROR, "http", NULL, NULL,
           "%llu more 5xx answer(s) in the last %llu ms not logged one by one (at most %d lines "
           "a second per loop thread; spike_http_request_duration_seconds counts every answer by "
           "code)",
           (unsigned long long)lc->err_unlogged, (unsigned long long)(now - lc->err_window_ms),
           API_5XX_LOGGED_PER_S);
  lc->err_unlogged = 0;
}

static int log_5xx_allowed(loop_ctx *lc) {
  uint64_t now = uv_now(&lc->loop);
  if (now - lc->err_window_ms >= 1000) {
    api_log_unlogged(lc, 0);
    lc->err_window_ms = now;
    lc->err_logged = 0;
  }
  if (lc->err_logged < API_5XX_LOGGED_PER_S) {
    lc->err_logged++;
    return 1;
  }
  lc->err_unlogged++;
  return 0;
}

static void fail(req *r, int status, const char *detail) {
  int http = spike_http_status(status);
  const char *msg = spike_strerror(status);
  out_begin(r);
  jb_lit(&r->out, "{\"code\":");
  jb_u64(&r->out, (uint64_t)spike_code(status));
  jb_lit(&r->out, ",\"msg\":");
  if (detail != NULL && *detail != '\0') {
    char text[256];
    int n = snprintf(text, sizeof(text), "%s: %s", msg, detail);
    jb_str(&r->out, text, n > 0 && (size_t)n < sizeof(text) ? (size_t)n : strlen(text));
  } else {
    jb_cstr(&r->out, msg);
  }
  jb_lit(&r->out, ",\"data\":null,\"traceId\":");
  jb_cstr(&r->out, r->trace);
  jb_lit(&r->out, "}");
  r->status = status;
  const char *extra = NULL;
  char allow[64];
  if (status == SPIKE_EMETHOD && r->m.allow != NULL) {
    snprintf(allow, sizeof(allow), "Allow: %s\r\n", r->m.allow);
    extra = allow;
  } else if (status == SPIKE_EBUSY || status == SPIKE_ERATE) {
    extra = "Retry-After: 1\r\n";
  } else if (status == SPIKE_ENOCREDS) { /* RFC 6750 §3 */
    extra = "WWW-Authenticate: Bearer realm=\"spike\"\r\n";
  } else if (status == SPIKE_ETOKEN) {
    extra = "WWW-Authenticate: Bearer realm=\"spike\", error=\"invalid_token\"\r\n";
  }
  if (status == SPIKE_EBUSY || status == SPIKE_EFULL)
    r->busy = (uint8_t)metrics_busy_reason((handler)r->handler, detail);
  /* a refusal at the connection limit is logged by conn.c, once a second;
   * a client's HTTP version is not the server's error */
  if (http >= 500 && r->handler != H_CONN_LIMIT && status != SPIKE_EVERSION &&
      log_5xx_allowed(r->lc)) {
    char ids[128];
    api_log_ids(r, ids, sizeof(ids));
    log_line(LOG_ERROR, "http", r->trace, ids, "%s failed: %s%s%s",
             router_label((handler)r->handler), msg, detail ? ": " : "", detail ? detail : "");
  }
  finish(r, http, "application/json", extra);
}

static void set_trace(loop_ctx *lc, req *r);

void api_error(loop_ctx *lc, req *r, int status, const char *detail) {
  if (r->trace[0] == '\0') set_trace(lc, r);
  fail(r, status, detail);
}

/* ---- request pieces -------------------------------------------------------- */

static int trace_char_ok(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

static void set_trace(loop_ctx *lc, req *r) {
  if (r->has_rid && r->rid_len >= 1 && r->rid_len <= TRACE_MAX) {
    const char *v = r->in.p + r->rid_off;
    uint32_t i = 0;
    while (i < r->rid_len && trace_char_ok(v[i]))
      i++;
    if (i == r->rid_len) {
      memcpy(r->trace, v, i);
      r->trace[i] = '\0';
      return;
    }
  }
  /* 64 bits from a per-loop counter, scrambled and salted per process. */
  uint64_t x = XXH3_64bits_withSeed(&lc->trace_seq, sizeof(lc->trace_seq), lc->trace_salt);
  lc->trace_seq++;
  static const char hex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; i--, x >>= 4)
    r->trace[i] = hex[x & 15];
  r->trace[16] = '\0';
}

typedef struct caller {
  who w;
  uint64_t user;
  int st;  /* auth_identify's verdict */
  int hdr; /* an Authorization header was sent */
} caller;

static void identify(loop_ctx *lc, req *r, caller *c) {
  /* "Authorization:" with an empty value sends no credentials: 20001, as
   * if it were absent (RFC 6750 §3.1: no error code then) */
  c->hdr = r->has_auth && r->auth_len > 0;
  c->user = 0;
  c->st = auth_identify(&lc->srv->auth, c->hdr ? r->in.p + r->auth_off : NULL, r->auth_len,
                        (int64_t)time(NULL), &c->w, &c->user);
}

/* Admin routes (and the feed, which the feed token may read too):
 * SPIKE_OK, or the refusal already sent. */
static int need_admin(loop_ctx *lc, req *r) {
  caller c;
  identify(lc, r, &c);
  int st = auth_admin(&lc->srv->auth, c.w, c.hdr, c.st, r->handler == H_FEED);
  if (st != SPIKE_OK)
    fail(r, st,
         st != SPIKE_EFORBIDDEN ? NULL
         : c.w == WHO_FEED      ? "the feed token reads the change feed only"
         : c.w != WHO_USER      ? "admin routes need --admin-token off loopback"
                                : "a user's token on an admin route");
  return st;
}

/* User routes under --auth jwt need a valid token (or the admin's). */
static int need_user(loop_ctx *lc, req *r, caller *c) {
  identify(lc, r, c);
  if (c->w == WHO_FEED) { /* read-only: nobody in particular here */
    if (lc->srv->auth.mode == AUTH_JWT) {
      fail(r, SPIKE_EFORBIDDEN, "the feed token reads the change feed only");
      return SPIKE_EFORBIDDEN;
    }
    c->w = WHO_NOBODY;
  }
  if (lc->srv->auth.mode == AUTH_NONE) {
    if (c->st != SPIKE_OK) c->w = WHO_NOBODY; /* a token we cannot read: nobody */
    c->st = SPIKE_OK;
    return SPIKE_OK;
  }
  if (c->st != SPIKE_OK) {
    fail(r, c->st, NULL);
    return c->st;
  }
  if (c->w == WHO_NOBODY) {
    fail(r, SPIKE_ENOCREDS, NULL);
    return SPIKE_ENOCREDS;
  }
  return SPIKE_OK;
}

static int parse_body(loop_ctx *lc, req *r, body *b, const char *const *allowed) {
  const char *field = NULL;
  int rc;
  if (r->body_len == 0) {
    b->n = 0;
    return SPIKE_OK;
  }
  const char *in = r->in.p + r->body_off;
  size_t cap = lc->srv->lim.max_body_bytes;
  if (r->ctype == 0)
    rc = SPIKE_EBADBODY, field = "no Content-Type: send application/json or application/msgpack";
  else if (r->ctype == 3)
    rc = SPIKE_EBADBODY, field = "Content-Type is not application/json or application/msgpack";
  else if (r->ctype == 2)
    rc = body_parse_msgpack(b, in, r->body_len, lc->scratch, cap);
  else
    rc = body_parse_json(b, in, r->body_len, lc->scratch, cap);
  if (rc == SPIKE_OK)
    rc = body_only(b, allowed, &field);
  else if (field == NULL && b->bad[0] != '\0')
    field = b->bad;
  if (rc != SPIKE_OK) fail(r, rc, field);
  return rc;
}

static int path_id(req *r, const char *what) {
  if (r->m.id_ok && r->m.id != 0) return SPIKE_OK;
  fail(r, SPIKE_EINVAL, what);
  return SPIKE_EINVAL;
}

/* A query parameter as u64 in [min, max]: SPIKE_OK (def when absent) or a
 * refusal sent. */
/* Query parameter name as a u64 in [min, max], def when absent: SPIKE_OK
 * or SPIKE_EINVAL, nothing answered. */
static int query_read(const req *r, const char *name, uint64_t def, uint64_t min, uint64_t max,
                      uint64_t *out) {
  const char *v;
  size_t n;
  *out = def;
  if (r->m.query == NULL || !router_query(r->m.query, r->m.query_len, name, &v, &n))
    return SPIKE_OK;
  if (router_parse_u64(v, n, out) != 0 || *out < min || *out > max) return SPIKE_EINVAL;
  return SPIKE_OK;
}

/* A route's query holds only the parameters it names, each at most once:
 * NULL, or the text for a 400 naming the first that is not ("aftr: not a
 * parameter of this route"), so a typo never passes silently. */
static const char *query_strange(const req *r, const char *const *known, char *buf, size_t cap) {
  if (r->m.query == NULL) return NULL;
  const char *p = r->m.query, *end = p + r->m.query_len;
  while (p != NULL && p < end) {
    const char *amp = memchr(p, '&', (size_t)(end - p));
    const char *stop = amp != NULL ? amp : end;
    const char *eqs = memchr(p, '=', (size_t)(stop - p));
    size_t nl = (size_t)((eqs != NULL ? eqs : stop) - p);
    if (stop > p) { /* "a&&b" and a trailing '&' have empty ones: nothing */
      int k = 0;
      while (known[k] != NULL && !(strlen(known[k]) == nl && memcmp(known[k], p, nl) == 0)) k++;
      int n = (int)(nl < 64 ? nl : 64);
      if (known[k] == NULL) {
        int vn = (int)(stop - p - 1 < 64 ? stop - p - 1 : 64); /* nl == 0: *p is '=' */
        if (nl == 0) snprintf(buf, cap, "a parameter with no name (\"=%.*s\")", vn, p + 1);
        else snprintf(buf, cap, "%.*s: not a parameter of this route", n, p);
        return buf;
      }
      const char *v;
      size_t vn;
      if (router_query(stop, (size_t)(end - stop), known[k], &v, &vn)) {
        snprintf(buf, cap, "%.*s: given twice", n, p);
        return buf;
      }
    }
    p = amp != NULL ? amp + 1 : NULL;
  }
  return NULL;
}

/* A route that takes its parameters in the query takes no body fields
 * (api.md): {"after":5} sent to the feed must not read it from 0. An empty
 * body, or {}, passes. SPIKE_OK, or the refusal sent (40001 naming the
 * field, or 40003 for a body that is not JSON or MessagePack). */
static int no_body_fields(loop_ctx *lc, req *r) {
  static const char *const none[] = {NULL};
  body b;
  return parse_body(lc, r, &b, none);
}

/* query_strange and no_body_fields, and the refusal (400) when a parameter
 * is strange. */
static int query_known(loop_ctx *lc, req *r, const char *const *known) {
  char why[128];
  const char *strange = query_strange(r, known, why, sizeof(why));
  if (strange == NULL) return no_body_fields(lc, r);
  fail(r, SPIKE_EINVAL, strange);
  return SPIKE_EINVAL;
}

/* query_read, and a refusal (400, naming the parameter) when it is bad. */
static int query_u64(req *r, const char *name, uint64_t def, uint64_t min, uint64_t max,
                     uint64_t *out) {
  int rc = query_read(r, name, def, min, max, out);
  if (rc != SPIKE_OK) fail(r, rc, name);
  return rc;
}

/* ---- handlers -------------------------------------------------------------- */

static void respond_event(req *r, const spike_event *e, int http) {
  r->event_id = e->id;
  ok_begin(r);
  json_event(&r->out, e);
  ok_end(r, http);
}

static void respond_order(req *r, const spike_order *o, int http) {
  r->order_id = o->id;
  r->event_id = o->event_id;
  r->user_id = o->user_id;
  ok_begin(r);
  json_order(&r->out, o);
  ok_end(r, http);
}

static void on_event_done(spike_op *op) {
  req *r = (req *)op;
  if (op->status != SPIKE_OK)
    fail(r, op->status, op->detail);
  else
    respond_event(r, &op->r.event, r->handler == H_EVENT_CREATE ? 201 : 200);
}

static void park_or_fail(req *r, int rc) {
  if (rc == SPIKE_PENDING)
    r->parked = 1;
  else
    fail(r, rc, r->op.detail);
}

static void event_create(loop_ctx *lc, req *r) {
  static const char *const allowed[] = {"id",       "name",   "stock",          "price",
                                        "start_at", "end_at", "per_user_limit", "pay_timeout_s",
                                        NULL};
  body b;
  if (need_admin(lc, r) != SPIKE_OK || parse_body(lc, r, &b, allowed) != SPIKE_OK) return;
  spike_event_spec s;
  memset(&s, 0, sizeof(s));
  uint64_t stock = 0, limit = 1, timeout = 900;
  const char *f = NULL;
  /* A chosen id stays below the ids the engine generates (above 2^53). */
  int rc = body_u64(&b, "id", 0, 1, SPIKE_EVENT_ID_CLIENT_MAX, &s.id, NULL, &f);
  if (r->method == RM_PUT) { /* PUT /api/v1/events/{id}: the path's id, in the client range */
    if (!r->m.id_ok || r->m.id == 0 || r->m.id > SPIKE_EVENT_ID_CLIENT_MAX) {
      fail(r, SPIKE_EINVAL, "event id (1..2^53-1 on PUT)");
      return;
    }
    if (rc == SPIKE_OK && s.id != 0 && s.id != r->m.id) {
      fail(r, SPIKE_EINVAL, "id (differs from the path's)");
      return;
    }
    s.id = r->m.id;
  }
  if (rc == SPIKE_OK)
    rc = body_str(&b, "name", 1, 1, SPIKE_NAME_MAX, &s.name, &s.name_len, NULL, &f);
  if (rc == SPIKE_OK) rc = body_u64(&b, "stock", 1, 1, UINT32_MAX, &stock, NULL, &f);
  if (rc == SPIKE_OK) rc = body_i64(&b, "price", 1, 0, INT64_MAX, &s.price, NULL, &f);
  if (rc == SPIKE_OK) rc = body_i64(&b, "start_at", 1, 0, INT64_MAX, &s.start_at, NULL, &f);
  if (rc == SPIKE_OK) rc = body_i64(&b, "end_at", 1, 0, INT64_MAX, &s.end_at, NULL, &f);
  if (rc == SPIKE_OK) rc = body_u64(&b, "per_user_limit", 0, 1, UINT32_MAX, &limit, NULL, &f);
  if (rc == SPIKE_OK) rc = body_u64(&b, "pay_timeout_s", 0, 1, UINT32_MAX, &timeout, NULL, &f);
  if (rc != SPIKE_OK) {
    fail(r, rc, f);
    return;
  }
  s.stock = stock;
  s.per_user_limit = (uint32_t)limit;
  s.pay_timeout_s = (uint32_t)timeout;
  park_or_fail(r, spike_event_create(lc->producer, &r->op, &s, on_event_done));
}

static void event_list(loop_ctx *lc, req *r) {
  uint32_t n = 0, max = lc->srv->ecfg.max_events;
  spike_event_list(lc->srv->engine, 0, lc->events, max, &n, NULL);
  ok_begin(r);
  jb_lit(&r->out, "{\"events\":[");
  for (uint32_t i = 0; i < n; i++) {
    if (i > 0) jb_lit(&r->out, ",");
    json_event(&r->out, &lc->events[i]);
  }
  jb_lit(&r->out, "]}");
  ok_end(r, 200);
}

static void event_get(loop_ctx *lc, req *r) {
  spike_event e;
  if (path_id(r, "event id") != SPIKE_OK) return;
  int rc = spike_event_get(lc->srv->engine, r->m.id, &e);
  if (rc != SPIKE_OK)
    fail(r, rc, NULL);
  else
    respond_event(r, &e, 200);
}

static void event_restock(loop_ctx *lc, req *r) {
  static const char *const allowed[] = {"add", NULL};
  body b;
  uint64_t add;
  const char *f = NULL;
  if (need_admin(lc, r) != SPIKE_OK || path_id(r, "event id") != SPIKE_OK ||
      parse_body(lc, r, &b, allowed) != SPIKE_OK)
    return;
  int rc = body_u64(&b, "add", 1, 1, UINT32_MAX, &add, NULL, &f);
  if (rc != SPIKE_OK) {
    fail(r, rc, f);
    return;
  }
  park_or_fail(r, spike_event_restock(lc->producer, &r->op, r->m.id, add, on_event_done));
}

static void event_close(loop_ctx *lc, req *r) {
  static const char *const allowed[] = {NULL};
  body b;
  if (need_admin(lc, r) != SPIKE_OK || path_id(r, "event id") != SPIKE_OK ||
      parse_body(lc, r, &b, allowed) != SPIKE_OK)
    return;
  park_or_fail(r, spike_event_close(lc->producer, &r->op, r->m.id, on_event_done));
}

static void on_order_done(spike_op *op) {
  req *r = (req *)op;
  if (op->status != SPIKE_OK) {
    fail(r, op->status, op->detail);
    return;
  }
  int created = r->handler == H_RESERVE && !op->replayed;
  respond_order(r, &op->r.order, created ? 201 : 200);
}

/* The user a request acts for: the token's, checked against a body
 * user_id; the body's under --auth none or for the admin. *user 0: the
 * admin acting on anyone's order. SPIKE_OK or a refusal sent. */
static int acting_user(req *r, const caller *c, const body *b, int need_body_user, uint64_t *user) {
  const char *f = NULL;
  uint64_t from_body = 0;
  int present = 0;
  int rc = body_u64(b, "user_id", 0, 1, UINT64_MAX, &from_body, &present, &f);
  if (rc != SPIKE_OK) {
    fail(r, rc, f);
    return rc;
  }
  if (c->w == WHO_USER) {
    if (present && from_body != c->user) {
      fail(r, SPIKE_EFORBIDDEN, "user_id is not the token's user");
      return SPIKE_EFORBIDDEN;
    }
    *user = c->user;
    return SPIKE_OK;
  }
  if (need_body_user && !present) {
    fail(r, SPIKE_EINVAL, "user_id");
    return SPIKE_EINVAL;
  }
  *user = present ? from_body : 0;
  return SPIKE_OK;
}

static void reserve(loop_ctx *lc, req *r) {
  static const char *const allowed[] = {"user_id", "qty", "request_id", NULL};
  body b;
  caller c;
  uint64_t user, qty = 1;
  const char *f = NULL, *key = NULL;
  size_t key_len = 0;
  int has_key = 0;
  if (need_user(lc, r, &c) != SPIKE_OK || path_id(r, "event id") != SPIKE_OK ||
      parse_body(lc, r, &b, allowed) != SPIKE_OK || acting_user(r, &c, &b, 1, &user) != SPIKE_OK)
    return;
  r->user_id = user;
  int rc = body_u64(&b, "qty", 0, 1, UINT32_MAX, &qty, NULL, &f);
  if (rc == SPIKE_OK)
    rc = body_str(&b, "request_id", 0, 1, SPIKE_KEY_MAX, &key, &key_len, &has_key, &f);
  if (rc != SPIKE_OK) {
    fail(r, rc, f);
    return;
  }
  if (r->has_ikey) {
    const char *h = r->in.p + r->ikey_off;
    int ok = r->ikey_len >= 1 && r->ikey_len <= SPIKE_KEY_MAX;
    for (uint32_t i = 0; ok && i < r->ikey_len; i++)
      ok = (unsigned char)h[i] >= 0x20 && h[i] != 0x7f;
    if (!ok || (has_key && (key_len != r->ikey_len || memcmp(key, h, key_len) != 0))) {
      fail(r, SPIKE_EINVAL,
           has_key ? "request_id differs from Idempotency-Key" : "Idempotency-Key");
      return;
    }
    key = h;
    key_len = r->ikey_len;
  }
  rc = spike_reserve(lc->producer, &r->op, r->m.id, user, (uint32_t)qty, key, key_len,
                     on_order_done);
  if (rc == SPIKE_OK)
    respond_order(r, &r->op.r.order, 201); /* ack=memory */
  else
    park_or_fail(r, rc);
}

/* The event-scoped order routes (/api/v1/events/{eid}/orders/{id}...): an
 * order of another event is not found there. Checked against committed
 * orders; one not committed yet (ack=memory) is left to the operation,
 * which pay and cancel check in the writer. SPIKE_OK, or a refusal sent. */
static int order_in_event(loop_ctx *lc, req *r) {
  if (!r->m.in_event) return SPIKE_OK;
  if (!r->m.event_ok || r->m.event_id == 0) {
    fail(r, SPIKE_EINVAL, "event id");
    return SPIKE_EINVAL;
  }
  spike_order o;
  int rc = spike_order_get(lc->producer, r->m.id, &o);
  if (rc == SPIKE_OK && o.event_id != r->m.event_id) rc = SPIKE_ENOORDER;
  else if (rc == SPIKE_ENOORDER) rc = SPIKE_OK;
  if (rc != SPIKE_OK) fail(r, rc, NULL);
  return rc;
}

static void order_get(loop_ctx *lc, req *r) {
  caller c;
  spike_order o;
  if (need_user(lc, r, &c) != SPIKE_OK || path_id(r, "order id") != SPIKE_OK ||
      order_in_event(lc, r) != SPIKE_OK)
    return;
  int rc = spike_order_get(lc->producer, r->m.id, &o);
  if (rc != SPIKE_OK)
    fail(r, rc, NULL);
  else if (c.w == WHO_USER && o.user_id != c.user)
    fail(r, SPIKE_EFORBIDDEN, "not your order");
  else
    respond_order(r, &o, 200);
}

static void order_change(loop_ctx *lc, req *r, int pay) {
  static const char *const pay_fields[] = {"payment_id", "user_id", NULL};
  static const char *const cancel_fields[] = {"user_id", NULL};
  body b;
  caller c;
  uint64_t user;
  const char *pid = NULL, *f = NULL;
  size_t pid_len = 0;
  if (need_user(lc, r, &c) != SPIKE_OK || path_id(r, "order id") != SPIKE_OK ||
      order_in_event(lc, r) != SPIKE_OK ||
      parse_body(lc, r, &b, pay ? pay_fields : cancel_fields) != SPIKE_OK ||
      acting_user(r, &c, &b, 0, &user) != SPIKE_OK)
    return;
  /* The scoped form: the writer checks the event too, for an order that
   * order_in_event could not read yet (ack=memory). */
  uint64_t in_event = r->m.in_event ? r->m.event_id : 0;
  if (pay) {
    int rc = body_str(&b, "payment_id", 1, 1, SPIKE_PAYMENT_ID_MAX, &pid, &pid_len, NULL, &f);
    if (rc != SPIKE_OK) {
      fail(r, rc, f);
      return;
    }
    park_or_fail(r, spike_pay_in_event(lc->producer, &r->op, in_event, r->m.id, user, pid,
                                       pid_len, on_order_done));
  } else {
    park_or_fail(r, spike_cancel_in_event(lc->producer, &r->op, in_event, r->m.id, user,
                                          on_order_done));
  }
}

static int by_event_then_id(const void *a, const void *b) {
  const spike_order *x = a, *y = b;
  if (x->event_id != y->event_id) return x->event_id < y->event_id ? -1 : 1;
  return x->id < y->id ? -1 : x->id > y->id;
}

static void user_orders(loop_ctx *lc, req *r) {
  static const char *const params[] = {"event_id", "after", NULL};
  caller c;
  uint64_t event = 0, after = 0, next = 0;
  if (need_user(lc, r, &c) != SPIKE_OK || path_id(r, "user id") != SPIKE_OK ||
      query_known(lc, r, params) != SPIKE_OK ||
      query_u64(r, "event_id", 0, 1, UINT64_MAX, &event) != SPIKE_OK ||
      query_u64(r, "after", 0, 1, UINT64_MAX, &after) != SPIKE_OK)
    return;
  if (c.w == WHO_USER && c.user != r->m.id) {
    fail(r, SPIKE_EFORBIDDEN, "not your orders");
    return;
  }
  uint32_t n = 0;
  int rc = spike_user_orders(lc->producer, r->m.id, event, after, lc->orders, API_LIST_MAX, &n,
                             &next);
  if (rc != SPIKE_OK) {
    fail(r, rc, rc == SPIKE_EINVAL ? "after: not one of this user's orders" : NULL);
    return;
  }
  /* A page: the newest API_LIST_MAX after the cursor, shown grouped by
   * event, oldest first in each; next, the cursor of the older ones. */
  qsort(lc->orders, n, sizeof(*lc->orders), by_event_then_id);
  ok_begin(r);
  jb_lit(&r->out, "{\"orders\":[");
  for (uint32_t i = 0; i < n; i++) {
    if (i > 0) jb_lit(&r->out, ",");
    json_order(&r->out, &lc->orders[i]);
  }
  jb_lit(&r->out, "],\"next\":");
  if (next != 0)
    jb_id(&r->out, next);
  else
    jb_lit(&r->out, "null");
  jb_lit(&r->out, "}");
  ok_end(r, 200);
}

/* Read the feed after r->after; 0 when there was nothing to read. Every
 * answer, refusals included, says which store it is and where its feed
 * stands (data and X-Spike-* headers), so a consumer can tell a replaced
 * or restored store from a quiet one. */
/* spike_feed_fetch into lc->changes, and where the feed stands into r for
 * the answer's X-Spike-* headers and data. */
static int feed_fetch(loop_ctx *lc, req *r, uint64_t after, uint32_t max, uint32_t *n,
                      uint64_t *next) {
  int rc = spike_feed_fetch(lc->producer, after, lc->changes, max, n, next, &r->feed);
  r->feed_head_ok = rc == SPIKE_OK || rc == SPIKE_EINVAL;
  spike_store_origin origin;
  spike_store_origin_get(lc->srv->engine, &origin);
  r->restored_from = origin.restored_from;
  r->restored_seq = origin.restored_seq;
  return rc;
}

/* 16 hex digits (a store id, an epoch) as a nonzero u64: 0 or -1. */
static int parse_hex64(const char *v, size_t n, uint64_t *out) {
  uint64_t x = 0;
  if (n != 16) return -1;
  for (size_t i = 0; i < n; i++) {
    char ch = v[i];
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (d < 0) return -1;
    x = x << 4 | (uint64_t)d;
  }
  *out = x;
  return x == 0 ? -1 : 0;
}

static int feed_answer(loop_ctx *lc, req *r, int force) {
  uint32_t n = 0;
  uint64_t next = r->after;
  int rc = feed_fetch(lc, r, r->after, r->limit, &n, &next);
  uint64_t mine = r->epoch != 0 && rc == SPIKE_OK ? spike_feed_epoch(lc->srv->engine, r->after) : 0;
  if (mine != 0 && mine != r->epoch) { /* the same store and seq, another record: a fork */
    char why[240];
    snprintf(why, sizeof(why),
             "epoch: this store's record %llu was written in epoch %016llx, yours in %016llx: "
             "a copy of the store that took other writes (a restored snapshot or cold copy?)",
             (unsigned long long)r->after, (unsigned long long)mine, (unsigned long long)r->epoch);
    fail(r, SPIKE_EINVAL, why);
    return 1;
  }
  if (rc == SPIKE_EINVAL) {
    char why[200];
    if (r->after > r->feed.head)
      snprintf(why, sizeof(why),
               "after: %llu is ahead of the feed's head %llu (a restored or replaced store?)",
               (unsigned long long)r->after, (unsigned long long)r->feed.head);
    else if (r->after + 2 == r->feed.first)
      snprintf(why, sizeof(why),
               "after: record %llu was dropped (--feed-retain); the oldest kept is %llu",
               (unsigned long long)r->after + 1, (unsigned long long)r->feed.first);
    else
      snprintf(why, sizeof(why),
               "after: records %llu..%llu were dropped (--feed-retain); the oldest kept is %llu",
               (unsigned long long)r->after + 1, (unsigned long long)r->feed.first - 1,
               (unsigned long long)r->feed.first);
    fail(r, rc, why);
    return 1;
  }
  if (rc != SPIKE_OK) {
    fail(r, rc, NULL);
    return 1;
  }
  if (n == 0 && !force) return 0;
  ok_begin(r);
  jb_lit(&r->out, "{\"storeId\":\"");
  char id[24];
  snprintf(id, sizeof(id), "%016llx", (unsigned long long)r->feed.store_id);
  jb_raw(&r->out, id, 16);
  if (r->restored_from != 0) { /* a restored store: where it picks up from */
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)r->restored_from);
    jb_lit(&r->out, "\",\"restoredFrom\":\"");
    jb_raw(&r->out, id, 16);
    jb_lit(&r->out, "\",\"restoredSeq\":");
    jb_u64(&r->out, r->restored_seq);
    jb_lit(&r->out, ",\"head\":");
  } else {
    jb_lit(&r->out, "\",\"head\":");
  }
  jb_u64(&r->out, r->feed.head);
  jb_lit(&r->out, ",\"first\":");
  jb_u64(&r->out, r->feed.first);
  jb_lit(&r->out, ",\"changes\":[");
  for (uint32_t i = 0; i < n; i++) {
    if (i > 0) jb_lit(&r->out, ",");
    json_change(&r->out, &lc->changes[i]);
  }
  jb_lit(&r->out, "],\"next\":");
  jb_u64(&r->out, next);
  uint64_t ep = spike_feed_epoch(lc->srv->engine, next); /* 0 for next 0 */
  if (ep != 0) { /* keep it beside next; send it back as epoch= */
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)ep);
    jb_lit(&r->out, ",\"nextEpoch\":\"");
    jb_raw(&r->out, id, 16);
    jb_lit(&r->out, "\"");
  }
  jb_lit(&r->out, "}");
  ok_end(r, 200);
  return 1;
}

static void on_feed_wake(spike_op *op) {
  req *r = (req *)op;
  if (op->status != SPIKE_OK) {
    fail(r, op->status, op->detail);
    return;
  }
  if (r->c == NULL) { /* the client left: nothing to read for */
    conn_respond(r);
    return;
  }
  feed_answer(r->lc, r, 1);
}

static void feed(loop_ctx *lc, req *r) {
  static const char *const params[] = {"after", "limit", "wait_ms", "epoch", NULL};
  uint64_t after, limit, wait_ms, epoch = 0;
  char why[128];
  const char *ev;
  size_t evn;
  if (need_admin(lc, r) != SPIKE_OK) return; /* no feed state for a stranger */
  const char *bad = query_strange(r, params, why, sizeof(why));
  if (bad == NULL)
    bad = query_read(r, "after", 0, 0, UINT64_MAX, &after)                     ? "after"
          : query_read(r, "limit", API_FEED_DEFAULT, 1, API_FEED_MAX, &limit) ? "limit"
          : query_read(r, "wait_ms", 0, 0, API_FEED_WAIT_MAX_MS, &wait_ms)    ? "wait_ms"
          : r->m.query != NULL && router_query(r->m.query, r->m.query_len, "epoch", &ev, &evn) &&
                  parse_hex64(ev, evn, &epoch) != 0
              ? "epoch (16 lower-case hex digits, not all 0, as nextEpoch)"
              : NULL;
  if (bad != NULL || r->body_len > 0) { /* refused, saying where the feed stands too */
    uint32_t none = 0;
    uint64_t next = 0;
    feed_fetch(lc, r, 0, 0, &none, &next);
    if (bad != NULL) {
      fail(r, SPIKE_EINVAL, bad);
      return;
    }
    if (no_body_fields(lc, r) != SPIKE_OK) return;
  }
  r->after = after;
  r->epoch = epoch;
  r->limit = (uint32_t)limit;
  if (feed_answer(lc, r, wait_ms == 0)) return;
  /* Nothing yet: park until a commit adds to the feed or wait_ms ends. */
  park_or_fail(r, spike_feed_wait(lc->producer, &r->op, after, (uint32_t)wait_ms, on_feed_wake));
}

/* ---- backups -------------------------------------------------------------
 * POST /api/v1/admin/backup {"name"?}: spike_backup into --backup-dir/name,
 * on a libuv pool thread so the loop goes on serving; the request waits
 * parked and is answered when the copy is done. One at a time per server:
 * another while one runs is 503 at once. The name is checked, never a
 * path: the destination is always a new directory right inside
 * --backup-dir. */

#define BACKUP_NAME_MAX 64

typedef struct backup_job {
  uv_work_t work;
  req *r;
  spike_engine *e;
  int rc;
  char name[BACKUP_NAME_MAX + 1];
  char dest[4096 + BACKUP_NAME_MAX + 2];
  spike_backup_info info;
} backup_job;

/* 1..64 of [A-Za-z0-9._-], beginning with a letter or digit (so never "."
 * or ".."), and not the name of a backup being made. */
static int backup_name_ok(const char *s, size_t n) {
  if (n == 0 || n > BACKUP_NAME_MAX) return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '.' && c != '_' && c != '-'))) return 0;
  }
  for (size_t i = 0; i + 8 <= n; i++)
    if (memcmp(s + i, ".partial", 8) == 0) return 0;
  return 1;
}

static void backup_work(uv_work_t *w) { /* a libuv pool thread */
  backup_job *j = w->data;
  log_thread_trace(j->r->trace); /* the engine's lines about it: this request's */
  j->rc = spike_backup(j->e, j->dest, &j->info);
  log_thread_trace(NULL);
}

static void backup_done(uv_work_t *w, int status) {
  backup_job *j = w->data;
  req *r = j->r;
  metrics_backups *k = &r->lc->srv->backups;
  (void)status; /* never cancelled */
  /* relaxed: counters and a flag for scrapes; the pool's hand-back orders
   * the job's fields. */
  if (j->rc == SPIKE_OK) {
    atomic_store_explicit(&k->last_ok_at_ms, (uint64_t)j->info.at_ms, memory_order_relaxed);
    atomic_store_explicit(&k->last_duration_ms, j->info.duration_ms, memory_order_relaxed);
    atomic_store_explicit(&k->last_bytes, j->info.bytes, memory_order_relaxed);
    atomic_store_explicit(&k->last_seq, j->info.seq, memory_order_relaxed);
    atomic_fetch_add_explicit(&k->ok, 1, memory_order_relaxed);
  } else {
    atomic_fetch_add_explicit(&k->failed, 1, memory_order_relaxed);
  }
  atomic_store(&k->running, 0);
  if (r->c == NULL) { /* the client left: the backup stands, nobody to tell */
    conn_respond(r);
  } else if (j->rc != SPIKE_OK) {
    fail(r, j->rc, j->info.error);
  } else {
    char id[24];
    snprintf(id, sizeof(id), "%016llx", (unsigned long long)j->info.store_id);
    ok_begin(r);
    jb_lit(&r->out, "{\"name\":");
    jb_cstr(&r->out, j->name);
    jb_lit(&r->out, ",\"path\":");
    jb_cstr(&r->out, j->dest);
    jb_lit(&r->out, ",\"storeId\":\"");
    jb_raw(&r->out, id, 16);
    jb_lit(&r->out, "\",\"seq\":");
    jb_u64(&r->out, j->info.seq);
    jb_lit(&r->out, ",\"bytes\":");
    jb_u64(&r->out, j->info.bytes);
    jb_lit(&r->out, ",\"at\":");
    jb_i64(&r->out, j->info.at_ms);
    jb_lit(&r->out, ",\"ms\":");
    jb_u64(&r->out, j->info.duration_ms);
    jb_lit(&r->out, "}");
    ok_end(r, 201);
  }
  free(j);
}

static void backup(loop_ctx *lc, req *r) {
  static const char *const allowed[] = {"name", NULL};
  server *srv = lc->srv;
  body b;
  if (need_admin(lc, r) != SPIKE_OK || parse_body(lc, r, &b, allowed) != SPIKE_OK) return;
  const char *name = NULL, *f = NULL;
  size_t name_len = 0;
  int has_name = 0;
  if (body_str(&b, "name", 0, 1, BACKUP_NAME_MAX, &name, &name_len, &has_name, &f) != SPIKE_OK ||
      (has_name && !backup_name_ok(name, name_len))) {
    fail(r, SPIKE_EINVAL,
         "name: 1 to 64 of A-Z a-z 0-9 . _ -, beginning with a letter or digit, without "
         "\".partial\"");
    return;
  }
  if (srv->backup_dir == NULL) {
    fail(r, SPIKE_EFORBIDDEN, "backups are off: start spiked with --backup-dir");
    return;
  }
  int idle = 0;
  if (!atomic_compare_exchange_strong(&srv->backups.running, &idle, 1)) {
    /* relaxed: a counter for scrapes. */
    atomic_fetch_add_explicit(&srv->backups.busy, 1, memory_order_relaxed);
    fail(r, SPIKE_EBUSY, "a backup is already running");
    return;
  }
  backup_job *j = calloc(1, sizeof(*j));
  if (j == NULL) {
    atomic_store(&srv->backups.running, 0);
    fail(r, SPIKE_EINTERNAL, "out of memory");
    return;
  }
  if (has_name) {
    memcpy(j->name, name, name_len);
  } else { /* backup-20261127T120938.123Z: sorts by time */
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(j->name, sizeof(j->name), "backup-%Y%m%dT%H%M%S", &tm);
    snprintf(j->name + n, sizeof(j->name) - n, ".%03ldZ", ts.tv_nsec / 1000000);
  }
  snprintf(j->dest, sizeof(j->dest), "%s/%s", srv->backup_dir, j->name);
  j->r = r;
  j->e = srv->engine;
  j->work.data = j;
  int rc = uv_queue_work(&lc->loop, &j->work, backup_work, backup_done);
  if (rc != 0) {
    free(j);
    atomic_store(&srv->backups.running, 0);
    fail(r, SPIKE_EINTERNAL, uv_strerror(rc));
    return;
  }
  r->parked = 1;
}

void server_metrics(loop_ctx *lc, jbuf *out);    /* server.c */
int server_ready(server *srv, const char **why); /* server.c */

static void metrics_page(loop_ctx *lc, req *r) {
  out_begin(r);
  server_metrics(lc, &r->out);
  if (r->out.oom) {
    fail(r, SPIKE_EINTERNAL, "metrics too large");
    return;
  }
  r->status = SPIKE_OK;
  finish(r, 200, "text/plain; version=0.0.4; charset=utf-8", NULL);
}

static void ready(loop_ctx *lc, req *r) {
  const char *why;
  if (server_ready(lc->srv, &why) != SPIKE_OK) {
    /* the contract's 503 with the reason, whatever the cause */
    r->status = SPIKE_EBUSY;
    fail(r, SPIKE_EBUSY, why);
    return;
  }
  ok_begin(r);
  jb_lit(&r->out, "{\"status\":\"ready\"}");
  ok_end(r, 200);
}

/* The longest head finish() writes besides its extra headers: status line,
 * the longest Content-Type here, a 20-digit length, a TRACE_MAX trace id,
 * Date, Connection: keep-alive (the longer of the two) and the blank line. */
#define HEAD_BASE_MAX 240
_Static_assert(sizeof(DASHBOARD_HEADERS) - 1 + HEAD_BASE_MAX <= RESP_HEAD_ROOM,
               "the dashboard's headers must fit the response head room");

/* GET /dashboard and its two files (admin): from memory, strict CSP. */
static void dashboard(loop_ctx *lc, req *r) {
  if (need_admin(lc, r) != SPIKE_OK) return;
  const char *body, *ctype;
  size_t len;
  dashboard_asset((router_asset)r->m.asset, &body, &len, &ctype);
  out_begin(r);
  jb_raw(&r->out, body, len);
  if (r->out.oom) {
    fail(r, SPIKE_EINTERNAL, "page too large");
    return;
  }
  r->status = SPIKE_OK;
  finish(r, 200, ctype, DASHBOARD_HEADERS);
}

/* GET /api/v1/admin/stats (admin): the per-second history the page draws. */
static void admin_stats(loop_ctx *lc, req *r) {
  static const char *const params[] = {"seconds", NULL};
  uint64_t seconds;
  if (need_admin(lc, r) != SPIKE_OK || query_known(lc, r, params) != SPIKE_OK ||
      query_u64(r, "seconds", STATS_SECONDS_DEFAULT, 1, STATS_HISTORY_S, &seconds) != SPIKE_OK)
    return;
  if (lc->srv->stats == NULL) {
    fail(r, SPIKE_EINTERNAL, "the dashboard's history did not start (see the log)");
    return;
  }
  /* The events as they are now, so the page and GET /api/v1/events/{id}
   * agree; their per-second history comes from the samples. */
  uint32_t n = 0, max = lc->srv->ecfg.max_events;
  uint64_t next = 0;
  spike_event_list(lc->srv->engine, 0, lc->events, max < STATS_EVENTS_MAX ? max : STATS_EVENTS_MAX,
                   &n, &next);
  ok_begin(r);
  stats_render(lc->srv->stats, &r->out, (uint32_t)seconds, lc->events, n, next != 0);
  ok_end(r, 200);
}

static int probe_handler(int h) { return h == H_LIVE || h == H_READY || h == H_METRICS; }

int api_probe(const req *r, uint8_t llmethod) {
  if (llmethod != HTTP_GET && llmethod != HTTP_HEAD) return 0;
  route_match m;
  router_match(RM_GET, r->in.p, r->target_len, &m);
  return probe_handler(m.h);
}

void api_handle(loop_ctx *lc, req *r) {
  set_trace(lc, r);
  router_match((router_method)r->method, r->in.p, r->target_len, &r->m);
  r->handler = (uint8_t)r->m.h;
  r->head = r->method == RM_HEAD;
  int probe = probe_handler(r->m.h);
  if (!probe && r->c != NULL && !rl_allow(&lc->rl, r->c->peer, uv_now(&lc->loop))) {
    fail(r, SPIKE_ERATE, "slow down");
    return;
  }
  switch (r->m.h) {
  case H_EVENT_CREATE: event_create(lc, r); break;
  case H_EVENT_LIST: event_list(lc, r); break;
  case H_EVENT_GET: event_get(lc, r); break;
  case H_EVENT_RESTOCK: event_restock(lc, r); break;
  case H_EVENT_CLOSE: event_close(lc, r); break;
  case H_RESERVE: reserve(lc, r); break;
  case H_ORDER_GET: order_get(lc, r); break;
  case H_ORDER_PAY: order_change(lc, r, 1); break;
  case H_ORDER_CANCEL: order_change(lc, r, 0); break;
  case H_USER_ORDERS: user_orders(lc, r); break;
  case H_FEED: feed(lc, r); break;
  case H_BACKUP: backup(lc, r); break;
  case H_LIVE:
    ok_begin(r);
    jb_lit(&r->out, "{\"status\":\"live\"}");
    ok_end(r, 200);
    break;
  case H_READY: ready(lc, r); break;
  case H_METRICS: metrics_page(lc, r); break;
  case H_DASHBOARD: dashboard(lc, r); break;
  case H_ADMIN_STATS: admin_stats(lc, r); break;
  case H_BAD_METHOD: fail(r, SPIKE_EMETHOD, NULL); break;
  case H_NOT_FOUND:
  default: fail(r, SPIKE_ENOROUTE, NULL); break;
  }
}

/* ---- after the answer: metrics and the access log ------------------------- */

void api_format_addr(const struct sockaddr_storage *sa, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
    snprintf(out, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
  } else {
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    snprintf(out, cap, "%s:%u", ip, ntohs(a->sin_port));
  }
}

/* One access line: who asked what, the answer, how long it took, the ids
 * it is about. Formatted on the loop, written by the log's own thread. */
static void access_line(loop_ctx *lc, const req *r, uint64_t ns) {
  char line[ACCESS_LINE_MAX], path[600], ids[128];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  if ((int64_t)ts.tv_sec != lc->log_sec) {
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    strftime(lc->log_ts, sizeof(lc->log_ts), "%Y-%m-%dT%H:%M:%S", &tm);
    lc->log_sec = (int64_t)ts.tv_sec;
  }
  /* at most 512 bytes of the target, never cut inside a UTF-8 character
   * (its bytes would be logged as U+FFFD, which says "not UTF-8") */
  uint32_t tl = r->target_len;
  if (tl > 512)
    for (tl = 512; tl > 509 && ((unsigned char)r->in.p[tl] & 0xc0) == 0x80;) tl--;
  log_escape(path, sizeof(path), r->in.p, tl);
  const char *method =
      r->handler == H_BAD_REQUEST || r->handler == H_CONN_LIMIT ? "-" : llhttp_method_name(r->llmethod);
  api_log_ids(r, ids, sizeof(ids));
  int n = snprintf(line, sizeof(line),
                   "{\"ts\":\"%s.%03ldZ\",\"traceId\":\"%s\",\"client\":\"%s\",\"method\":\"%s\","
                   "\"path\":\"%s\",\"route\":\"%s\",\"status\":%d,\"code\":%d,\"us\":%llu%s}\n",
                   lc->log_ts, ts.tv_nsec / 1000000, r->trace, r->c->addr, method, path,
                   router_label((handler)r->handler), r->http, spike_code(r->status),
                   (unsigned long long)(ns / 1000), ids);
  if (n <= 0 || (size_t)n >= sizeof(line)) return; /* cannot happen with these bounds */
  if (accesslog_write(lc->srv->access, lc->idx, line, (size_t)n) == 0)
    metrics_add(&lc->m.log_lines, 1);
  else
    metrics_add(&lc->m.log_dropped, 1);
}

void api_done(loop_ctx *lc, req *r, uint64_t ns) {
  metrics_request(&lc->m, (handler)r->handler, r->http, r->status, (metric_busy)r->busy, ns);
  if (lc->srv->access != NULL) access_line(lc, r, ns);
  if (log_enabled(LOG_DEBUG)) { /* at debug, the same in the main log */
    char f[224], ids[128];
    api_log_ids(r, ids, sizeof(ids));
    snprintf(f, sizeof(f), ",\"route\":\"%s\",\"status\":%d,\"code\":%d,\"us\":%llu%s",
             router_label((handler)r->handler), r->http, spike_code(r->status),
             (unsigned long long)(ns / 1000), ids);
    log_line(LOG_DEBUG, "http", r->trace, f, "request");
  }
}

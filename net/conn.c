/*
 * conn.c -- connections: bytes in through llhttp, responses out in request
 * order with as few syscalls as possible.
 *
 * Reading: every loop has one read buffer; llhttp's callbacks copy only
 * what a handler needs (the target, four header values, the body) into the
 * request, so the buffer is free again when the read callback returns.
 * Pipelined requests in one read are all parsed and dispatched in that
 * callback; past max_pipeline requests in flight, or max_pipeline_bytes
 * of answers the client has not taken, the parser pauses and the rest of
 * the input waits in the connection until responses drain.
 *
 * Writing: responses are written from the requests' own buffers. Once per
 * loop iteration (a uv_check) every connection with finished responses at
 * the head of its queue gets one uv_try_write of all of them (one writev);
 * whatever the socket does not take goes to one uv_write, and the
 * connection stops reading until it completes: a client that does not
 * read gets no more of our memory.
 *
 * Framing: llhttp 8.1 as Debian 12 ships it, in its default (loose) build,
 * takes a bare LF as a line end, reads the byte after a bare CR as if it
 * were the LF, and unfolds header lines that start with a space or tab.
 * A proxy in front that frames such bytes otherwise would see one request
 * where spiked sees two (request smuggling). So every byte llhttp reads
 * outside a body is checked here too (scan_framing): lines end in CRLF
 * exactly and none starts with a space or tab, and a request is
 * dispatched only once the bytes up to its last one have passed, which
 * is why on_message_complete pauses the parser. Header names must be
 * tokens, Transfer-Encoding must end in chunked and only in HTTP/1.1,
 * trailer fields are ignored, Upgrade is ignored and CONNECT refused. A
 * request that fails is answered 400 and the connection ends.
 *
 * Limits: header bytes, body bytes, requests in flight and answer bytes
 * not taken per connection, connections per server (and new ones taken
 * per loop turn), a deadline per request (slowloris) and per idle
 * connection or pending write, each with a defined answer (413, pause,
 * 503, close).
 *
 * Closing: when the server ends a connection after an answer (a refused
 * request, Connection: close, the drain) the client may still be sending,
 * and a close with bytes unread, or bytes arriving after it, makes the
 * kernel answer with RST, which can cost the client the answer. So, as
 * nginx does, such a connection lingers: its write side is shut down once
 * the answer is out, and what arrives is read and discarded until the
 * client closes or a bound is reached (time, quiet time, bytes). Lingering
 * connections still count against the connection limit.
 */
#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <strings.h>

#include <xxhash.h>

#include "http.h"
#include "log.h"

enum hkind { HK_NONE = 0, HK_RID, HK_AUTH, HK_IKEY, HK_CTYPE, HK_EXPECT, HK_TE };
/* conn.scan: where the framing check stands (0: a connection's start is a line's) */
/* SCAN_DATA_END: a chunk's data just ended, and its CRLF must follow (llhttp
 * 8.1's loose build takes any two bytes there) */
enum { SCAN_LINE_START = 0, SCAN_MID, SCAN_CR, SCAN_DATA_END };

#define FREE_REQS_MAX 4096
#define ACCEPTS_PER_TURN 16 /* connections taken per loop turn (see conn_on_accept) */
#define CLOSES_PER_TURN 16  /* connections closed per turn (see close_later) */
#define NEW_REQS_PER_TURN 32 /* requests of connections not yet answered, per turn (see alloc_cb) */
#define WRITE_BUFS_MAX 64

void server_loop_maybe_done(loop_ctx *lc); /* server.c */

/* ---- requests ------------------------------------------------------- */

req *req_alloc(loop_ctx *lc) {
  req *r = lc->free_reqs;
  if (r != NULL) {
    lc->free_reqs = r->next;
    lc->nfree--;
  } else {
    r = malloc(sizeof(*r));
    if (r == NULL) return NULL;
  }
  memset(r, 0, offsetof(req, in_store));
  r->lc = lc;
  jb_init(&r->in, r->in_store, sizeof(r->in_store));
  jb_init(&r->out, r->out_store, sizeof(r->out_store));
  return r;
}

void req_free(loop_ctx *lc, req *r) {
  jb_free(&r->in);
  jb_free(&r->out);
  if (lc->nfree < FREE_REQS_MAX) {
    r->next = lc->free_reqs;
    lc->free_reqs = r;
    lc->nfree++;
  } else {
    free(r);
  }
}

/* ---- connection state ------------------------------------------------- */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void conn_flush(conn *c);
static int accept_one(loop_ctx *lc);

/* ---- per-turn queues ---------------------------------------------------- */

static void on_closer_idle(uv_idle_t *h);

static void q_push(conn *c, int q) {
  loop_ctx *lc = c->lc;
  if (c->inq[q]) return;
  c->inq[q] = 1;
  c->q_next[q] = NULL;
  c->q_prev[q] = lc->q_tail[q];
  if (lc->q_tail[q] != NULL)
    lc->q_tail[q]->q_next[q] = c;
  else
    lc->q[q] = c;
  lc->q_tail[q] = c;
  if (!uv_is_active((uv_handle_t *)&lc->closer) && !uv_is_closing((uv_handle_t *)&lc->closer))
    uv_idle_start(&lc->closer, on_closer_idle);
}

static void q_unlink(conn *c, int q) {
  loop_ctx *lc = c->lc;
  if (!c->inq[q]) return;
  if (c->q_prev[q] != NULL)
    c->q_prev[q]->q_next[q] = c->q_next[q];
  else
    lc->q[q] = c->q_next[q];
  if (c->q_next[q] != NULL)
    c->q_next[q]->q_prev[q] = c->q_prev[q];
  else
    lc->q_tail[q] = c->q_prev[q];
  c->q_prev[q] = c->q_next[q] = NULL;
  c->inq[q] = 0;
}

/* ---- reading ------------------------------------------------------------- */

/* 1 once this turn has kept the thread busy past --turn-budget-us, whatever
 * the work (loop_turn_busy_ns). The counts (ACCEPTS_PER_TURN,
 * NEW_REQS_PER_TURN) bound a turn's new work on a fast machine; this bounds
 * it on a slow or loaded one, where each accept or first request costs
 * more. It gives established clients the turn: while their own work keeps
 * a turn past the budget, new connections get one accept a turn (the one
 * conn_flush_dirty takes) and the reads the queue resumes. Closes are held
 * to it too (one a turn at least), but not within an eighth of
 * --max-conns: there they free places. */
static int turn_over(const loop_ctx *lc) {
  return loop_turn_busy_ns(lc) >= (uint64_t)lc->srv->lim.turn_budget_us * 1000u;
}

/* A flood's thousand new connections each bring a request (a thousand
 * that never read bring 32 each), and one poll can report hundreds of them
 * readable: served in one turn, they held up the requests of every
 * connection already being served for milliseconds. So a turn serves at
 * most NEW_REQS_PER_TURN requests of connections that have had no answer
 * yet (not c->known), and none past the first once it is over its time
 * budget (turn_over). Past it such a connection stops reading (its bytes
 * stay in the kernel, or in c->pending when a read held several requests)
 * and waits in CONNQ_READ, oldest first. Each turn starts by letting
 * NEW_REQS_PER_TURN of those read again (on_closer_idle), before it polls,
 * so that each makes progress however busy the turns. Known and lingering
 * connections are read at once. */
static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn *c = h->data;
  loop_ctx *lc = c->lc;
  /* libuv reads one stream at a time: alloc, read(2), read callback. A
   * NULL buffer makes the read callback see UV_ENOBUFS. */
  if (lc->rbuf_busy) {
    *buf = uv_buf_init(NULL, 0);
    return;
  }
  if (!c->known && !c->lingering) {
    if (c->go_turn != lc->turn &&
        (lc->new_reqs >= NEW_REQS_PER_TURN || (lc->new_reqs > 0 && turn_over(lc)))) {
      q_push(c, CONNQ_READ);
      *buf = uv_buf_init(NULL, 0);
      return;
    }
    lc->new_reqs++; /* a read counts as a request: slowloris reads come a byte each */
  }
  lc->rbuf_busy = 1;
  *buf = uv_buf_init(lc->rbuf, sizeof(lc->rbuf));
}

/* Reading on or off. A connection waiting in CONNQ_READ is not reading
 * and is started again by its queue; turning it off takes it out. */
static void read_stop(conn *c) {
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = 0;
}

static void set_reading(conn *c, int on) {
  if (!on) q_unlink(c, CONNQ_READ);
  if (c->closing || on == c->reading || (on && (c->inq[CONNQ_CLOSE] || c->inq[CONNQ_READ])))
    return;
  if (!on)
    read_stop(c);
  else if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) == 0)
    c->reading = 1;
}

static void mark_dirty(conn *c) {
  if (c->dirty || c->closing) return;
  c->dirty = 1;
  c->dirty_next = c->lc->dirty;
  c->lc->dirty = c;
}

/* A connection past --max-conns that was not answered as a probe: counted
 * once, in spike_connections_refused_total and in the log's count (at its
 * 503, or as it closes unanswered). */
static void count_refusal(conn *c) {
  if (c->refusal_told) return;
  c->refusal_told = 1;
  metrics_add(&c->lc->m.refused, 1);
  c->lc->refusals_unlogged++;
  conn_log_refusals(c->lc, 0);
}

static void on_closed(uv_handle_t *h) {
  conn *c = h->data;
  loop_ctx *lc = c->lc;
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    lc->conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  lc->nconns--;
  if (c->refusal) {
    assert(lc->nrefusals > 0);
    lc->nrefusals--;
    count_refusal(c); /* one that sent nothing, or closed, before its answer */
  } else {
    /* relaxed: a count for the connection limit. */
    atomic_fetch_sub_explicit(&lc->srv->conns, 1, memory_order_relaxed);
  }
  metrics_gauge_add(&lc->m.connections, -1);
  free(c);
  if (lc->draining) server_loop_maybe_done(lc);
}

/* A long-poll parked on the engine, not yet told to end. */
static int feed_waiting(const req *r) {
  return r->parked && !r->done && r->handler == H_FEED && !r->ended;
}

/* The client is gone, or has said it sends no more: a parked long-poll
 * would hold its place among the engine's parked feed waits, and this
 * connection, until its wait_ms ran out, so it ends now (answered as if
 * the wait were over, to a client that may still read). Other parked
 * requests finish as they would: their ops are the engine's until then. */
static void end_feed_waits(conn *c) {
  for (req *r = c->head; r != NULL; r = r->next)
    if (feed_waiting(r) && spike_feed_wait_end(c->lc->producer, &r->op) == SPIKE_OK) r->ended = 1;
}

/* A connection that is not read (its request said Connection: close, or
 * its pipeline is full) hears no hang-up, and a parked long-poll would hold
 * it for wait_ms. So the sweep asks its socket, taking nothing from it:
 * end-of-file or an error ends its long-polls (input waiting hides an
 * end-of-file behind it; then the wait runs its course). */
static void check_gone(conn *c) {
  int waiting = 0;
  for (req *r = c->head; r != NULL && !waiting; r = r->next) waiting = feed_waiting(r);
  uv_os_fd_t fd;
  char b;
  if (!waiting || uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0) return;
  ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
    end_feed_waits(c);
}

/* Let go of every request and buffered input. Requests whose bytes a
 * uv_write holds stay at the head: on_write frees them. Requests waiting on
 * the engine stay the engine's: conn_respond frees them when their
 * callback runs. The rest go now. */
static void drop_requests(conn *c) {
  loop_ctx *lc = c->lc;
  end_feed_waits(c);
  uint32_t held = c->writing ? c->writing_reqs : 0;
  req *last_held = NULL, *r = c->head;
  for (uint32_t i = 0; r != NULL && i < held; i++) {
    last_held = r;
    r = r->next;
  }
  while (r != NULL) {
    req *next = r->next;
    if (r->parked && !r->done)
      r->c = NULL;
    else
      req_free(lc, r);
    r = next;
  }
  if (last_held != NULL) {
    last_held->next = NULL;
    c->tail = last_held;
  } else {
    c->head = c->tail = NULL;
  }
  c->queued = held;
  if (c->cur != NULL) {
    req_free(lc, c->cur);
    c->cur = NULL;
  }
  free(c->pending);
  c->pending = NULL;
  c->pending_len = 0;
}

/* Close now: uv_close cancels a pending write or shutdown. */
static void conn_close(conn *c) {
  if (c->closing) return;
  loop_ctx *lc = c->lc;
  q_unlink(c, CONNQ_CLOSE);
  set_reading(c, 0); /* and out of CONNQ_READ */
  c->closing = 1;
  if (c->lingering) {
    c->lingering = 0;
    assert(lc->nlinger > 0);
    lc->nlinger--;
    metrics_gauge_add(&lc->m.lingering, -1);
  }
  drop_requests(c);
  uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Close at the end of the turn, at most CLOSES_PER_TURN a turn
 * (conn_flush_dirty): for clients that hung up (end of file or a reset)
 * and connections the sweep found late. Three thousand clients of a flood
 * that hang up together reach one poll together, and a thousand slowloris
 * time out together; closing them all at once (a FIN each) held every
 * open connection's requests for the whole lot. Nothing more is read from
 * a queued connection. */
static void close_later(conn *c) {
  if (c->closing || c->inq[CONNQ_CLOSE]) return;
  set_reading(c, 0); /* and out of CONNQ_READ */
  q_push(c, CONNQ_CLOSE);
}

static void on_shutdown(uv_shutdown_t *sd, int status) {
  conn *c = sd->data;
  /* UV_ECANCELED: conn_close came first, and on_closed frees c after this. */
  if (status < 0 && !c->closing) conn_close(c);
  else if (status == 0) c->shut = 1; /* the FIN is queued behind the answers */
}

/* Lingering: the next deadline is the quiet limit, capped by the total. */
static void linger_touch(conn *c, uint64_t now_ms) {
  c->linger_heard_ms = now_ms;
  uint64_t quiet_ms = now_ms + c->lc->srv->lim.linger_idle_ms;
  c->deadline_ms = quiet_ms < c->linger_end_ms ? quiet_ms : c->linger_end_ms;
}

static uint32_t output_unacked(conn *c);

/* Every answer owed is written and the server ends the connection: linger
 * (see the top of the file), unless the client has already said it sends
 * no more or lingering is off. */
static void conn_end(conn *c) {
  loop_ctx *lc = c->lc;
  const http_limits *lim = &lc->srv->lim;
  if (c->closing) return;
  assert(!c->writing && !c->lingering);
  if (c->eof || lim->linger_ms == 0) {
    conn_close(c);
    return;
  }
  drop_requests(c);
  c->no_more = 1;
  c->sd.data = c;
  if (uv_shutdown(&c->sd, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  c->lingering = 1;
  lc->nlinger++;
  assert(lc->nlinger <= lc->nconns);
  metrics_gauge_add(&lc->m.lingering, 1);
  uint64_t now = uv_now(&lc->loop);
  c->linger_end_ms = now + lim->linger_ms;
  c->linger_cap_ms = now + 2 * lim->linger_ms;
  c->linger_outq = output_unacked(c);
  c->linger_bytes = 0;
  linger_touch(c, now);
  set_reading(c, 1);
  if (!c->reading) {
    conn_close(c);
    return;
  }
  metrics_add(&lc->m.lingered, 1); /* counted once it does linger */
  if (lc->draining) server_loop_maybe_done(lc); /* this may have been the last one busy */
}

/* Input on a lingering connection: discard it, within the bounds. */
static void linger_read(conn *c, ssize_t nread) {
  loop_ctx *lc = c->lc;
  if (nread < 0) { /* the client closed (or reset): nothing left to protect */
    close_later(c);
    return;
  }
  c->linger_bytes += (uint64_t)nread;
  if (c->linger_bytes > lc->srv->lim.linger_max_bytes) {
    log_line(LOG_DEBUG, "http", NULL, NULL, "lingering close cut after %llu bytes",
             (unsigned long long)c->linger_bytes);
    conn_close(c);
    return;
  }
  linger_touch(c, uv_now(&lc->loop));
}

static void push_req(conn *c, req *r) {
  r->next = NULL;
  if (c->tail != NULL)
    c->tail->next = r;
  else
    c->head = r;
  c->tail = r;
  c->queued++;
}

static req *pop_req(conn *c) {
  req *r = c->head;
  c->head = r->next;
  if (c->head == NULL) c->tail = NULL;
  c->queued--;
  return r;
}

/* The transport refuses the request being parsed (or a new one): answer
 * with status and close once it is written. */
static void refuse_as(conn *c, handler h, int status, const char *detail, const char *allow) {
  loop_ctx *lc = c->lc;
  req *r = c->cur;
  c->cur = NULL;
  if (r == NULL && (r = req_alloc(lc)) == NULL) {
    conn_close(c);
    return;
  }
  if (r->t0_ns == 0) r->t0_ns = uv_hrtime();
  r->c = c;
  r->keep_alive = 0;
  r->handler = h;
  c->no_more = 1;
  set_reading(c, 0);
  free(c->pending);
  c->pending = NULL;
  push_req(c, r);
  if (allow != NULL) r->m.allow = allow;
  api_error(lc, r, status, detail);
}

/* A connection past --max-conns (c->refusal) is answered 503 whatever went
 * wrong with its request: it was never to be served but for a probe. A 405
 * names the methods its path allows (allow), when the path is one of ours. */
static void refuse_allow(conn *c, int status, const char *detail, const char *allow) {
  if (c->refusal) {
    count_refusal(c);
    refuse_as(c, H_CONN_LIMIT, SPIKE_EBUSY, "connection limit", NULL);
  } else {
    refuse_as(c, H_BAD_REQUEST, status, detail, allow);
  }
}

static void refuse(conn *c, int status, const char *detail) { refuse_allow(c, status, detail, NULL); }

/* ---- llhttp callbacks ------------------------------------------------- */

/* Stop the parser from a callback: feed() answers with status. */
static int stop(conn *c, int status, const char *detail) {
  c->err_status = status;
  c->err_detail = detail;
  return -1;
}

/* --max-header-bytes counts the head as sent: the request line and every
 * header line with their separators and line ends (as one space, ": " and
 * CRLF: the optional whitespace around a value is not kept, and bounded by
 * the head's deadline). */
static int over_headers(conn *c, size_t n) {
  c->header_bytes += (uint32_t)n;
  if (c->header_bytes <= c->lc->srv->lim.max_header_bytes) return 0;
  stop(c, SPIKE_ETOOLARGE, "headers");
  return 1;
}

static int on_method(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  return over_headers(p->data, n) ? -1 : 0;
}

static int on_version(llhttp_t *p, const char *at, size_t n) {
  (void)at;
  return over_headers(p->data, n) ? -1 : 0;
}

static int on_method_complete(llhttp_t *p) { return over_headers(p->data, 1) ? -1 : 0; }
static int on_url_complete(llhttp_t *p) { return over_headers(p->data, 1) ? -1 : 0; }
/* llhttp gives the version's digits: "HTTP/" and the CRLF are 7 more */
static int on_version_complete(llhttp_t *p) { return over_headers(p->data, 7) ? -1 : 0; }

static int on_message_begin(llhttp_t *p) {
  conn *c = p->data;
  loop_ctx *lc = c->lc;
  req *r = req_alloc(lc);
  if (r == NULL) return stop(c, SPIKE_EINTERNAL, "out of memory");
  r->c = c;
  r->t0_ns = uv_hrtime();
  c->cur = r;
  c->header_bytes = c->body_bytes = 0;
  c->hname_len = 0;
  c->hkind = HK_NONE;
  c->trailers = 0;
  c->saw_te = 0;
  c->nhost = 0;
  /* The request's own deadline, kept apart from deadline_ms: a request
   * begun in a read that also held pipelined ones is still being received
   * when their answers go out in a uv_write, whose deadline (and its end,
   * in on_write) must not replace or clear this one (slowloris behind a
   * large answer). The idle deadline ends here. No write is pending now:
   * llhttp runs only in feed(), from on_read or resume(), and a connection
   * stops reading when a uv_write starts (conn_flush) and resumes only
   * once it is done; answers made during feed() are written later, from
   * the uv_check. So clearing deadline_ms drops no write's deadline. */
  assert(!c->writing);
  c->req_deadline_ms = uv_now(&lc->loop) + lc->srv->lim.header_timeout_ms;
  c->deadline_ms = 0;
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  if (over_headers(c, n)) return -1;
  jb_raw(&c->cur->in, at, n);
  c->cur->target_len += (uint32_t)n;
  return 0;
}

/* A field name's characters: RFC 9110's tchar. llhttp's loose build lets
 * a space through ("X Y: a"). */
static int is_tchar(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  if (over_headers(c, n)) return -1;
  for (size_t i = 0; i < n; i++)
    if (!is_tchar((unsigned char)at[i])) return stop(c, SPIKE_EINVAL, "header name");
  for (size_t i = 0; i < n && c->hname_len != UINT8_MAX; i++) {
    if (c->hname_len >= sizeof(c->hname)) {
      c->hname_len = UINT8_MAX; /* too long to be one we keep */
      break;
    }
    char ch = at[i];
    c->hname[c->hname_len++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
  }
  return 0;
}

static int name_is(const conn *c, const char *lit) {
  size_t n = strlen(lit);
  return c->hname_len == n && memcmp(c->hname, lit, n) == 0;
}

static int on_header_field_complete(llhttp_t *p) {
  conn *c = p->data;
  if (c->hname_len == 0) return stop(c, SPIKE_EINVAL, "empty header name");
  if (over_headers(c, 2)) return -1; /* ": " */
  c->hkind = name_is(c, "x-request-id")      ? HK_RID
             : name_is(c, "authorization")   ? HK_AUTH
             : name_is(c, "idempotency-key") ? HK_IKEY
             : name_is(c, "content-type")    ? HK_CTYPE
             : name_is(c, "expect")          ? HK_EXPECT
                                             : HK_NONE;
  if (name_is(c, "transfer-encoding")) c->saw_te = 1, c->hkind = HK_TE;
  if (name_is(c, "host") && !c->trailers && c->nhost < 2) c->nhost++;
  /* A trailer field never stands in for a header (RFC 9110 §6.5.1): a
   * proxy that vetted the head has not vetted what follows the body. */
  if (c->trailers) c->hkind = HK_NONE;
  c->hname_len = 0;
  c->hval_off = (uint32_t)c->cur->in.len;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  if (over_headers(c, n)) return -1;
  if (c->hkind != HK_NONE) jb_raw(&c->cur->in, at, n);
  return 0;
}

/* The value v (len bytes) names media type t: t, then the end, or
 * parameters after optional whitespace and ';' (RFC 9110 §8.3.1). */
static int media_is(const char *v, uint32_t len, const char *t) {
  size_t n = strlen(t);
  if (len < n || strncasecmp(v, t, n) != 0) return 0;
  for (uint32_t i = (uint32_t)n; i < len; i++) {
    if (v[i] == ';') return 1;
    if (v[i] != ' ' && v[i] != '\t') return 0;
  }
  return 1;
}

static int on_header_value_complete(llhttp_t *p) {
  conn *c = p->data;
  if (over_headers(c, 2)) return -1; /* CRLF */
  req *r = c->cur;
  uint32_t off = c->hval_off, len = (uint32_t)r->in.len - off;
  /* Whitespace around a value is not part of it (RFC 9110 §5.5): llhttp
   * drops the leading, the trailing is dropped here, so "abc " is the
   * same Idempotency-Key as "abc" (a retry through a proxy that trims
   * must find its order). */
  while (len > 0 && (r->in.p[off + len - 1] == ' ' || r->in.p[off + len - 1] == '\t')) len--;
  r->in.len = off + len;
  /* Credentials, a key and a content type given twice are refused, not
   * settled by taking one: a proxy that read the other would have vetted
   * a different request. */
  switch (c->hkind) {
  case HK_RID: r->rid_off = off, r->rid_len = len, r->has_rid = 1; break;
  case HK_AUTH:
    if (r->has_auth) return stop(c, SPIKE_EINVAL, "Authorization given twice");
    r->auth_off = off, r->auth_len = len, r->has_auth = 1;
    break;
  case HK_IKEY:
    if (r->has_ikey) return stop(c, SPIKE_EINVAL, "Idempotency-Key given twice");
    r->ikey_off = off, r->ikey_len = len, r->has_ikey = 1;
    break;
  case HK_CTYPE: {
    if (r->ctype != 0) return stop(c, SPIKE_EINVAL, "Content-Type given twice");
    const char *v = r->in.p + off;
    if (media_is(v, len, "application/json"))
      r->ctype = 1;
    else if (media_is(v, len, "application/msgpack") || media_is(v, len, "application/x-msgpack"))
      r->ctype = 2;
    else
      r->ctype = 3;
    r->in.len = off; /* classified: the bytes are not needed */
    break;
  }
  case HK_EXPECT:
    r->expect = len == 12 && strncasecmp(r->in.p + off, "100-continue", 12) == 0;
    r->in.len = off;
    break;
  case HK_TE: {
    /* chunked is the only coding spiked decodes: a body also gzipped, say,
     * would be read as if it were not (RFC 9112 §6.1: not understood,
     * not served) */
    const char *v = r->in.p + off;
    for (uint32_t i = 0; i < len;) {
      while (i < len && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
      uint32_t b = i;
      while (i < len && v[i] != ',' && v[i] != ' ' && v[i] != '\t' && v[i] != ';') i++;
      if (i > b && !(i - b == 7 && strncasecmp(v + b, "chunked", 7) == 0))
        return stop(c, SPIKE_EINVAL, "a Transfer-Encoding other than chunked");
      while (i < len && v[i] != ',') i++; /* its parameters */
    }
    r->in.len = off;
    break;
  }
  default: break;
  }
  c->hkind = HK_NONE;
  return 0;
}

/* Expect: 100-continue (RFC 9110 §10.1.1): the interim answer goes in the
 * connection's queue as a finished response of its own, so it follows the
 * answers to earlier pipelined requests and precedes this one's. */
static void continue_100(conn *c) {
  static const char interim[] = "HTTP/1.1 100 Continue\r\n\r\n";
  req *x = req_alloc(c->lc);
  if (x == NULL) return; /* the client sends its body after its own timeout */
  x->c = c;
  x->keep_alive = 1;
  x->done = 1;
  jb_raw(&x->out, interim, sizeof(interim) - 1);
  push_req(c, x);
  mark_dirty(c);
}

static int on_headers_complete(llhttp_t *p) {
  conn *c = p->data;
  if (over_headers(c, 2)) return -1; /* the empty line */
  /* past --max-conns: a probe is answered, and nothing else (refuse) */
  if (c->refusal) {
    if (!api_probe(c->cur, p->method)) return stop(c, SPIKE_EBUSY, "connection limit");
    c->refusal_told = 1; /* answered: not a refusal in the count or the log */
  }
  /* llhttp refuses Content-Length beside Transfer-Encoding, twice, or as a
   * list, and a request's Transfer-Encoding that does not end in chunked;
   * not an empty one, nor one in HTTP/1.0 (whose framing RFC 9112 §6.1
   * calls faulty). */
  /* llhttp takes 0.9, 2.0 and 3.0 too: spiked speaks HTTP/1.0 and 1.1 */
  if (p->http_major != 1) return stop(c, SPIKE_EVERSION, "spiked speaks HTTP/1.1 and 1.0");
  if (p->method == HTTP_CONNECT) return stop(c, SPIKE_EMETHOD, "CONNECT");
  /* RFC 9112 §3.2: HTTP/1.1 needs one Host; two could name two servers */
  if (c->nhost > 1) return stop(c, SPIKE_EINVAL, "Host given twice");
  if (c->nhost == 0 && p->http_minor == 1) return stop(c, SPIKE_EINVAL, "Host missing (HTTP/1.1)");
  if (c->saw_te && !(p->flags & F_CHUNKED))
    return stop(c, SPIKE_EINVAL, "Transfer-Encoding that does not end in chunked (spaces around it at most)");
  if (c->saw_te && (p->http_major != 1 || p->http_minor != 1))
    return stop(c, SPIKE_EINVAL, "Transfer-Encoding before HTTP/1.1");
  /* Upgrade is only offered (RFC 9110 §7.8): the connection stays
   * HTTP/1.1, and what follows is the next request. */
  p->upgrade = 0;
  c->trailers = 1;
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->lc->srv->lim.max_body_bytes)
    return stop(c, SPIKE_ETOOLARGE, "body");
  int body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
  if (c->cur->expect && body && p->http_major == 1 && p->http_minor >= 1) continue_100(c);
  return 0;
}

static const char *scan_framing(conn *c, const char *p, const char *end);

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  req *r = c->cur;
  /* the framing before this piece of body is checked; the body is not framing */
  const char *why = scan_framing(c, c->scan_at, at);
  if (why != NULL) return stop(c, SPIKE_EINVAL, why);
  c->scan_at = at + n;
  c->scan = (p->flags & F_CHUNKED) ? SCAN_DATA_END : SCAN_MID;
  c->body_bytes += (uint32_t)n;
  if (c->body_bytes > c->lc->srv->lim.max_body_bytes) return stop(c, SPIKE_ETOOLARGE, "body");
  if (r->body_len == 0) r->body_off = (uint32_t)r->in.len;
  jb_raw(&r->in, at, n);
  r->body_len += (uint32_t)n;
  return 0;
}

/* A whole request: feed() dispatches it once its last framing bytes have
 * passed the check, which needs the position only a pause gives. */
static int on_message_complete(llhttp_t *p) {
  conn *c = p->data;
  req *r = c->cur;
  if (r->in.oom) return stop(c, SPIKE_EINTERNAL, "out of memory");
  c->cur = NULL;
  c->req_deadline_ms = 0; /* waiting on us now, not on the client */
  r->keep_alive = (uint8_t)(llhttp_should_keep_alive(p) && !c->refusal);
  r->http10 = p->http_major == 1 && p->http_minor == 0;
  uint8_t m = llhttp_get_method(p);
  r->method = m == HTTP_GET    ? RM_GET
              : m == HTTP_POST ? RM_POST
              : m == HTTP_HEAD ? RM_HEAD
              : m == HTTP_PUT  ? RM_PUT
                               : RM_OTHER;
  r->llmethod = m;
  assert(c->complete == NULL);
  c->complete = r;
  return HPE_PAUSED;
}

static llhttp_settings_t parser_settings;

void conn_init_settings(void) {
  llhttp_settings_init(&parser_settings);
  parser_settings.on_message_begin = on_message_begin;
  parser_settings.on_method = on_method;
  parser_settings.on_method_complete = on_method_complete;
  parser_settings.on_url = on_url;
  parser_settings.on_url_complete = on_url_complete;
  parser_settings.on_version = on_version;
  parser_settings.on_version_complete = on_version_complete;
  parser_settings.on_header_field = on_header_field;
  parser_settings.on_header_field_complete = on_header_field_complete;
  parser_settings.on_header_value = on_header_value;
  parser_settings.on_header_value_complete = on_header_value_complete;
  parser_settings.on_headers_complete = on_headers_complete;
  parser_settings.on_body = on_body;
  parser_settings.on_message_complete = on_message_complete;
}

/* ---- reading ------------------------------------------------------------ */

/* Check framing bytes (everything llhttp reads outside a body) from p to
 * end, carrying c->scan across reads: a line ends in CRLF exactly and
 * does not start with a space or tab. NULL, or why the bytes are refused. */
static const char *scan_framing(conn *c, const char *p, const char *end) {
  uint8_t st = c->scan;
  uint32_t line = c->scan_line, max = c->lc->srv->lim.max_header_bytes;
  assert(p <= end);
  for (; p < end; p++) {
    char ch = *p;
    if (st == SCAN_DATA_END) {
      if (ch != '\r') return "chunk data not followed by CRLF";
      st = SCAN_CR;
    } else if (st == SCAN_CR) {
      if (ch != '\n') return "CR without LF";
      st = SCAN_LINE_START;
      line = 0;
    } else if (++line > max) {
      /* the head's lines are bounded as a whole (over_headers); a chunk's
       * size line, extensions and all, had no bound but the timeout */
      return "a line longer than --max-header-bytes (a chunk extension?)";
    } else if (ch == '\n') {
      return "LF without CR";
    } else if (ch == '\r') {
      st = SCAN_CR;
    } else if (st == SCAN_LINE_START && (ch == ' ' || ch == '\t')) {
      return "line starts with whitespace (obs-fold)";
    } else {
      st = SCAN_MID;
    }
  }
  c->scan = st;
  c->scan_line = line;
  return NULL;
}

/* Enough in flight: max_pipeline requests, or max_pipeline_bytes of
 * answers the client has not taken yet (one large answer each pipelined
 * request would otherwise hold for a client that never reads). */
static int conn_full(const conn *c) {
  const http_limits *lim = &c->lc->srv->lim;
  if (c->queued >= lim->max_pipeline) return 1;
  uint64_t held = 0;
  for (const req *r = c->head; r != NULL; r = r->next)
    if (r->done) held += r->out.len - r->out_off;
  return held >= lim->max_pipeline_bytes;
}

/* Keep the input from data to end for when the connection may parse
 * again; 0, or -1 when out of memory (the connection is closed). */
static int keep_pending(conn *c, const char *data, const char *end) {
  if (data == end) return 0;
  c->pending = malloc((size_t)(end - data));
  if (c->pending == NULL) {
    conn_close(c);
    return -1;
  }
  memcpy(c->pending, data, (size_t)(end - data));
  c->pending_len = (size_t)(end - data);
  return 0;
}

/* After llhttp refused a method: 1 when the request line around pos is
 * well formed (token SP target SP HTTP/d.d) and only its method is
 * unknown (405), with *allow the methods its target allows (NULL: not one
 * of our paths, or the line not all in data); 0 when the line itself is
 * malformed (400). */
static int method_only_unknown(const char *data, size_t len, const char *pos, const char **allow) {
  const char *b = pos, *end = data + len;
  *allow = NULL;
  if (pos == NULL || pos < data || pos > end) return 1;
  while (b > data && b[-1] != '\n') b--;
  const char *e = memchr(b, '\n', (size_t)(end - b));
  if (e == NULL) return 1;
  if (e > b && e[-1] == '\r') e--;
  const char *p = b;
  while (p < e && (strchr("!#$%&'*+-.^_`|~", *p) != NULL || (*p >= '0' && *p <= '9') ||
                   ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')))
    p++;
  if (p == b || p == e || *p++ != ' ') return 0;
  const char *t = p;
  while (p < e && *p != ' ' && (unsigned char)*p > 0x20 && *p != 0x7f) p++;
  if (p == t || p + 9 != e || *p != ' ') return 0;
  if (memcmp(p + 1, "HTTP/", 5) != 0 || p[6] < '0' || p[6] > '9' || p[7] != '.' || p[8] < '0' ||
      p[8] > '9')
    return 0;
  route_match m;
  router_match(RM_OTHER, t, (size_t)(p - t), &m);
  if (m.h == H_BAD_METHOD) *allow = m.allow;
  return 1;
}

/* What llhttp refused, in the words of a 400: the framing headers first,
 * which it reads strictly (a tab around their value, which RFC 9110 allows
 * elsewhere, is refused there: a request another parser could frame
 * otherwise is not served). */
static const char *parse_error_words(llhttp_errno_t err) {
  switch (err) {
  case HPE_INVALID_CONTENT_LENGTH: return "malformed Content-Length (digits, spaces around them at most)";
  case HPE_UNEXPECTED_CONTENT_LENGTH: return "Content-Length given twice, or with Transfer-Encoding";
  case HPE_INVALID_TRANSFER_ENCODING: return "malformed Transfer-Encoding";
  case HPE_INVALID_CHUNK_SIZE: return "malformed chunk size";
  case HPE_INVALID_HEADER_TOKEN: return "malformed header";
  case HPE_INVALID_URL: return "malformed request target";
  default: return "malformed request";
  }
}

static void feed(conn *c, const char *data, size_t len) {
  loop_ctx *lc = c->lc;
  const char *end = data + len;
  unsigned nreq = 0;
  for (;;) {
    c->scan_at = data;
    llhttp_errno_t err = llhttp_execute(&c->parser, data, (size_t)(end - data));
    if (c->closing) return;
    if (err == HPE_OK) {
      const char *why = scan_framing(c, c->scan_at, end);
      if (why != NULL && !c->no_more) refuse(c, SPIKE_EINVAL, why);
      return;
    }
    if (err == HPE_PAUSED && c->complete != NULL) {
      const char *pos = llhttp_get_error_pos(&c->parser);
      assert(pos != NULL && pos >= data && pos <= end);
      req *r = c->complete;
      c->complete = NULL;
      const char *why = scan_framing(c, c->scan_at, pos);
      if (why != NULL) { /* not served: refused in its place */
        assert(c->cur == NULL);
        c->cur = r;
        refuse(c, SPIKE_EINVAL, why);
        return;
      }
      int keep_alive = r->keep_alive;
      push_req(c, r);
      api_handle(lc, r);
      if (c->closing) return;
      data = pos;
      /* the rest is not read (draining: a request parsed after an answer
       * that said Connection: close would run with no one to answer it) */
      if (!keep_alive || loop_draining(lc)) {
        c->no_more = 1;
        set_reading(c, 0);
        return;
      }
      /* the read was counted (alloc_cb); each request after the first counts too */
      int full = conn_full(c);
      int over = !full && !c->known && nreq++ > 0 &&
                 (++lc->new_reqs >= NEW_REQS_PER_TURN || turn_over(lc));
      if (full || over) { /* the rest waits, parser paused: for room, or for a later turn */
        if (keep_pending(c, data, end) == 0) {
          set_reading(c, 0);
          if (over) q_push(c, CONNQ_READ);
        }
        return;
      }
      llhttp_resume(&c->parser);
      if (data == end) return;
      continue;
    }
    if (err == HPE_PAUSED_UPGRADE) { /* not reached: on_headers_complete clears upgrade */
      c->no_more = 1;
      set_reading(c, 0);
      return;
    }
    if (c->no_more) return;    /* already answering with an error */
    if (c->complete != NULL) { /* stopped before its dispatch: never served */
      req_free(lc, c->complete);
      c->complete = NULL;
    }
    const char *allow;
    if (c->err_status != 0)
      refuse(c, c->err_status, c->err_detail);
    else if (err == HPE_PAUSED_H2_UPGRADE) /* HTTP/2's preface: prior knowledge, h2load's default */
      refuse(c, SPIKE_EVERSION, "HTTP/2 (spiked speaks HTTP/1.1; h2load: --h1)");
    else if (err == HPE_INVALID_METHOD &&
             method_only_unknown(data, (size_t)(end - data), llhttp_get_error_pos(&c->parser),
                                 &allow))
      refuse_allow(c, SPIKE_EMETHOD, "unknown method", allow);
    else if (err == HPE_INVALID_METHOD)
      refuse(c, SPIKE_EINVAL, "malformed request line");
    else
      refuse(c, SPIKE_EINVAL, parse_error_words(err));
    return;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  loop_ctx *lc = c->lc;
  if (buf->base == lc->rbuf) lc->rbuf_busy = 0;
  if (nread == 0) return;
  if (nread == UV_ENOBUFS && c->inq[CONNQ_READ]) { /* deferred by alloc_cb: stays queued */
    read_stop(c);
    return;
  }
  if (c->lingering) {
    linger_read(c, nread);
    return;
  }
  if (nread < 0) {
    /* EOF with answers still owed (a client that half-closes after its
     * requests): finish them, then close. */
    if (nread == UV_EOF && c->queued > 0 && c->cur == NULL) {
      c->no_more = 1;
      c->eof = 1;
      set_reading(c, 0);
      end_feed_waits(c);
    } else {
      close_later(c);
    }
    return;
  }
  feed(c, buf->base, (size_t)nread);
}

static void resume(conn *c);

/* Active while a queue is not empty, so that the loop polls without
 * blocking; it starts each turn with the connections whose requests
 * waited for the budget, oldest first (see alloc_cb). */
static void on_closer_idle(uv_idle_t *h) {
  loop_ctx *lc = h->data;
  for (unsigned n = 0; lc->q[CONNQ_READ] != NULL && n < NEW_REQS_PER_TURN; n++) {
    conn *c = lc->q[CONNQ_READ];
    q_unlink(c, CONNQ_READ);
    c->go_turn = lc->turn; /* read this turn, whatever the budget */
    resume(c);
  }
}

/* A request whose head was read and whose body is on its way: the drain
 * reads it to its end (conn_drain_all). */
static int body_due(const conn *c) { return c->cur != NULL && c->trailers; }

/* Parse what waited while paused, then read again if there is room. */
static void resume(conn *c) {
  loop_ctx *lc = c->lc;
  if (c->closing || c->no_more || c->writing || (lc->draining && !body_due(c))) return;
  if (conn_full(c)) return;
  if (llhttp_get_errno(&c->parser) == HPE_PAUSED) llhttp_resume(&c->parser);
  if (c->pending != NULL) {
    char *data = c->pending;
    size_t len = c->pending_len;
    c->pending = NULL;
    c->pending_len = 0;
    feed(c, data, len);
    free(data);
    if (c->closing || c->no_more || llhttp_get_errno(&c->parser) == HPE_PAUSED) return;
  }
  set_reading(c, 1);
}

/* ---- writing ------------------------------------------------------------ */

static uv_buf_t resp_buf(req *r) {
  return uv_buf_init(r->out.p + r->out_off, (unsigned)(r->out.len - r->out_off));
}

/* Free a written request; 1 when the connection must close after it. */
static int retire(conn *c, req *r) {
  int last = !r->keep_alive;
  c->known = 1;
  req_free(c->lc, r);
  return last;
}

static void after_flush(conn *c) {
  loop_ctx *lc = c->lc;
  if (c->closing || c->writing || c->lingering) return;
  if (c->queued == 0 && c->cur == NULL) {
    if (c->no_more || lc->draining) {
      conn_end(c);
      return;
    }
    c->deadline_ms = uv_now(&lc->loop) + lc->srv->lim.idle_timeout_ms;
  }
  resume(c);
}

static void on_write(uv_write_t *w, int status) {
  conn *c = w->data;
  int close_now = status < 0;
  for (uint32_t i = 0; i < c->writing_reqs && c->head != NULL; i++)
    close_now |= retire(c, pop_req(c));
  c->writing = 0;
  c->writing_reqs = 0;
  if (c->closing) return; /* conn_close left these for us; on_closed frees c */
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (close_now) {
    conn_end(c);
    return;
  }
  c->deadline_ms = 0;
  conn_flush(c);
}

static void conn_flush(conn *c) {
  if (c->closing || c->writing) return;
  uv_buf_t bufs[WRITE_BUFS_MAX];
  unsigned nb = 0;
  for (req *r = c->head; r != NULL && r->done && nb < WRITE_BUFS_MAX; r = r->next)
    bufs[nb++] = resp_buf(r);
  if (nb > 0) {
    int n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nb);
    if (n < 0 && n != UV_EAGAIN) {
      conn_close(c);
      return;
    }
    size_t left = n > 0 ? (size_t)n : 0;
    while (c->head != NULL && c->head->done) {
      req *r = c->head;
      size_t sz = r->out.len - r->out_off;
      if (left < sz) {
        r->out_off += left;
        break;
      }
      left -= sz;
      if (retire(c, pop_req(c))) {
        conn_end(c);
        return;
      }
    }
    /* What the socket did not take goes out as one uv_write, straight from
     * the requests' buffers; reading stops until it completes. */
    nb = 0;
    for (req *r = c->head; r != NULL && r->done && nb < WRITE_BUFS_MAX; r = r->next)
      bufs[nb++] = resp_buf(r);
    if (nb > 0) {
      c->wr.data = c;
      if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, bufs, nb, on_write) != 0) {
        conn_close(c);
        return;
      }
      c->writing = 1;
      c->writing_reqs = nb;
      set_reading(c, 0);
      c->deadline_ms = uv_now(&c->lc->loop) + c->lc->srv->lim.idle_timeout_ms;
      return;
    }
  }
  after_flush(c);
}

void conn_flush_dirty(uv_check_t *h) {
  loop_ctx *lc = h->data;
  lc->accepts = 0;
  if (lc->accept_pending && !lc->draining) { /* see conn_on_accept */
    if (accept_one(lc) == 0) lc->accept_pending = 0, lc->accepts = 1;
  }
  conn *c = lc->dirty;
  lc->dirty = NULL;
  while (c != NULL) {
    conn *next = c->dirty_next;
    c->dirty = 0;
    c->dirty_next = NULL;
    if (!c->closing) conn_flush(c);
    c = next;
  }
  /* Closes free places under --max-conns: near the limit they are not
   * held to the turn's time budget. relaxed: a count, not a publication
   * (read only when something waits to close: other loops write it). */
  int near_limit = lc->q[CONNQ_CLOSE] != NULL &&
                   atomic_load_explicit(&lc->srv->conns, memory_order_relaxed) >=
                       lc->srv->lim.max_conns - lc->srv->lim.max_conns / 8;
  for (unsigned n = 0; lc->q[CONNQ_CLOSE] != NULL && n < CLOSES_PER_TURN &&
                      (n == 0 || near_limit || !turn_over(lc));
       n++)
    conn_close(lc->q[CONNQ_CLOSE]);
  lc->new_reqs = 0; /* the next turn's budget (see alloc_cb) */
  lc->turn++;
  /* A flush above that the socket took at once resumed its connection
   * (after_flush): the pipelined requests it parsed then were answered
   * onto lc->dirty again, to be flushed at the next check. The poll before
   * it must not block (outside QA: 16 answers every 250 ms, the sweep's
   * period, to a client pipelining more than --max-pipeline). */
  if (lc->dirty != NULL) {
    if (!uv_is_active((uv_handle_t *)&lc->closer) && !uv_is_closing((uv_handle_t *)&lc->closer))
      uv_idle_start(&lc->closer, on_closer_idle);
  } else if (lc->q[CONNQ_CLOSE] == NULL && lc->q[CONNQ_READ] == NULL &&
             uv_is_active((uv_handle_t *)&lc->closer)) {
    uv_idle_stop(&lc->closer);
  }
}

void conn_respond(req *r) {
  conn *c = r->c;
  r->done = 1;
  r->parked = 0;
  if (c == NULL) { /* the client left while the engine worked */
    req_free(r->lc, r);
    return;
  }
  api_done(c->lc, r, uv_hrtime() - r->t0_ns);
  mark_dirty(c);
}

/* ---- accepting, sweeping, draining ------------------------------------- */

/* A refusal at the connection limit is a 503 that api.c does not log: a
 * flood would write a line for each. One line a second at most, with the
 * count since the last; spike_connections_refused_total has them all.
 * Called at each refusal and by the sweep, so the count a burst ends with
 * is told within a second too, not at the next burst. */
void conn_log_refusals(loop_ctx *lc, int force) {
  uint64_t now = uv_now(&lc->loop);
  if (lc->refusals_unlogged == 0 ||
      (!force && lc->refusal_logged_ms != 0 && now - lc->refusal_logged_ms < 1000))
    return;
  log_line(LOG_ERROR, "http", NULL, NULL,
           "connection limit (--max-conns %u): %llu connection(s) refused", lc->srv->lim.max_conns,
           (unsigned long long)lc->refusals_unlogged);
  lc->refusal_logged_ms = now;
  lc->refusals_unlogged = 0;
}

/* Take the connection libuv has accepted; 0, or -1 when it stays pending
 * (no memory: tried again next turn). */
static int accept_one(loop_ctx *lc) {
  server *srv = lc->srv;
  conn *c = calloc(1, sizeof(*c));
  if (c == NULL) return -1;
  c->lc = lc;
  uv_tcp_init(&lc->loop, &c->tcp);
  c->tcp.data = c;
  /* relaxed: the connection limit is a count, not a publication. */
  uint32_t open = atomic_fetch_add_explicit(&srv->conns, 1, memory_order_relaxed);
  c->next = lc->conns;
  if (lc->conns != NULL) lc->conns->prev = c;
  lc->conns = c;
  lc->nconns++;
  metrics_gauge_add(&lc->m.connections, 1);
  if (uv_accept((uv_stream_t *)&lc->listener, (uv_stream_t *)&c->tcp) != 0) {
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, on_closed);
    return 0;
  }
  int refused = open >= srv->lim.max_conns || lc->draining;
  if (refused) {
    /* Refused: its request head is read (within --header-timeout-ms), a
     * probe of liveness, readiness or /metrics is answered as usual, and
     * anything else gets a 503 saying so (refuse), then a lingering close,
     * since the client has likely sent its body already. A full server is
     * still alive and still scraped: a balancer's or kubelet's probe opens
     * a connection of its own each time, and a liveness probe answered 503
     * at the limit would restart the node mid-sale (outside QA). A refusal
     * holds no place under the limit (it would keep the server full for its
     * linger); it has a bound of its own, past which the connection is
     * closed unanswered. */
    /* relaxed: as above. */
    atomic_fetch_sub_explicit(&srv->conns, 1, memory_order_relaxed);
    c->refusal = 1;
    lc->nrefusals++;
    if (lc->draining || lc->nrefusals > srv->lim.max_refusals) {
      c->closing = 1; /* counted as it closes (on_closed) */
      uv_close((uv_handle_t *)&c->tcp, on_closed);
      return 0;
    }
  } else {
    metrics_add(&lc->m.accepted, 1);
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (srv->lim.rate_limit > 0 || srv->access != NULL) {
    struct sockaddr_storage peer;
    int len = sizeof(peer);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) == 0) {
      /* the address alone: every port of one client shares its bucket */
      const void *a = &((struct sockaddr_in *)&peer)->sin_addr;
      size_t n = 4;
      if (peer.ss_family == AF_INET6) a = &((struct sockaddr_in6 *)&peer)->sin6_addr, n = 16;
      c->peer = XXH3_64bits(a, n);
      if (srv->access != NULL) api_format_addr(&peer, c->addr, sizeof(c->addr));
    }
  }
  llhttp_init(&c->parser, HTTP_REQUEST, &parser_settings);
  c->parser.data = c;
  /* A refusal waits for its first byte no longer than a lingering close
   * waits for a quiet client (silent ones held a refusal's place for the
   * header timeout, and a flood of them left none for the probes: outside
   * QA); its head, once begun, has --header-timeout-ms. */
  uint32_t first_ms = srv->lim.idle_timeout_ms;
  if (refused)
    first_ms = srv->lim.linger_idle_ms < srv->lim.header_timeout_ms ? srv->lim.linger_idle_ms
                                                                   : srv->lim.header_timeout_ms;
  c->deadline_ms = uv_now(&lc->loop) + first_ms;
  set_reading(c, 1);
  return 0;
}

/* libuv accepts until the backlog is empty, calling this for each; a
 * flood of ten thousand would hold the loop, and every open connection's
 * requests, for as long as they all take. Past ACCEPTS_PER_TURN in one
 * turn, or past the first once the turn is over its time budget
 * (turn_over), the connection is left pending, which stops libuv watching the
 * listener; conn_flush_dirty takes it at the end of the turn, after the
 * requests that were waiting, and the listener is watched again. */
void conn_on_accept(uv_stream_t *listener, int status) {
  loop_ctx *lc = listener->data;
  if (status < 0) {
    /* EMFILE and friends: libuv already accepted and dropped the pending
     * connection (its reserved-fd trick), so this does not spin. */
    static _Thread_local uint64_t last_ms;
    uint64_t now = uv_now(&lc->loop);
    if (now - last_ms >= 1000) {
      last_ms = now;
      log_line(LOG_WARN, "http", NULL, NULL, "accept failed: %s", uv_strerror(status));
    }
    return;
  }
  if (lc->accepts >= ACCEPTS_PER_TURN || (lc->accepts > 0 && turn_over(lc)) ||
      accept_one(lc) != 0) {
    lc->accept_pending = 1;
    return;
  }
  lc->accepts++;
}

/* Bytes the client sent that this loop has not read yet. */
static int unread_input(conn *c) {
  uv_os_fd_t fd;
  int n = 0;
  return uv_fileno((const uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

/* Bytes written to the client (answers, and a shutdown's FIN) that its TCP
 * has not acknowledged yet: still in the kernel, and lost if the
 * connection is reset (what the client has acknowledged it can still read
 * after a reset). */
static uint32_t output_unacked(conn *c) {
  uv_os_fd_t fd;
  int n = 0;
  if (uv_fileno((const uv_handle_t *)&c->tcp, &fd) != 0 || ioctl(fd, SIOCOUTQ, &n) != 0 || n < 0)
    return 0;
  return (uint32_t)n;
}

/* Close what is late, through close_later: a thousand slowloris
 * connections opened together time out together. */
void conn_sweep(uv_timer_t *t) {
  loop_ctx *lc = t->data;
  uint64_t now = uv_now(&lc->loop);
  for (conn *c = lc->conns, *next; c != NULL; c = next) {
    next = c->next;
    if (c->closing || c->inq[CONNQ_CLOSE]) continue;
    if (!c->reading && !c->lingering) check_gone(c);
    /* two clocks: the connection's (idle, a write, lingering) and, while
     * a request is being received, that request's (req_deadline_ms is
     * left stale wherever cur is dropped, so it counts only with cur) */
    int late = c->deadline_ms != 0 && now >= c->deadline_ms;
    int req_late = c->cur != NULL && c->req_deadline_ms != 0 && now >= c->req_deadline_ms;
    if (!late && !req_late) continue;
    if (c->lingering) { /* a bound, not a fault: the client had its time */
      /* ...unless it is still taking its answers (fewer unacknowledged
       * than at the last look) while its input keeps the linger from going
       * quiet, as a pipelining client that reads slowly does: a close with
       * input coming resets the connection, and the reset throws away the
       * answers not yet taken (outside QA: 2,000 201s a run in a drain).
       * Another --linger-idle-ms each time, to twice --linger-ms in all
       * (during a drain, to the drain's timeout, which then closes it). A
       * quiet client is closed: with no input coming the close is an end of
       * file, and the kernel still delivers what it holds. */
      uint32_t q = output_unacked(c);
      int sending = now < c->linger_heard_ms + lc->srv->lim.linger_idle_ms;
      if (sending && q > 0 && q < c->linger_outq && (lc->draining || now < c->linger_cap_ms)) {
        c->linger_outq = q;
        uint64_t end = now + lc->srv->lim.linger_idle_ms;
        c->linger_end_ms = end < c->linger_cap_ms || lc->draining ? end : c->linger_cap_ms;
        c->deadline_ms = c->linger_end_ms;
        continue;
      }
      log_line(LOG_DEBUG, "http", NULL, NULL, "lingering close ended (%s)",
               now >= c->linger_end_ms ? "linger time" : "quiet");
      close_later(c);
      continue;
    }
    /* Input waiting unread at the deadline: the loop was late (starved of
     * CPU, or a long turn), and this sweep runs before the read that would
     * take it. The client sent in time as far as it can tell, so its
     * deadline is let pass once, and the next sweep judges after the read
     * (once only: a client trickling bytes gains one sweep, no more). A
     * connection writing is late on its own reads, not its sends. */
    uint64_t due = req_late ? c->req_deadline_ms : c->deadline_ms;
    if (!c->writing && c->spared_ms != due && unread_input(c)) {
      c->spared_ms = due;
      continue;
    }
    if (req_late && !late && c->queued > 0) {
      /* The request coming in is late, but ones pipelined before it are
       * still being served (durable reserves waiting for their commit, or
       * answers being written to a slow reader, or in a drain): a cut now
       * lost answers whose effects stand. The late one is dropped unread,
       * nothing more is read, and the connection ends once those answers
       * are written, as after a Connection: close; the write deadline and
       * the drain's timeout still bound it. */
      metrics_add(&lc->m.timeouts, 1);
      log_line(LOG_DEBUG, "http", NULL, NULL,
               "request timed out behind %u being served: dropped, the connection ends after "
               "their answers",
               c->queued);
      req_free(lc, c->cur);
      c->cur = NULL;
      c->no_more = 1;
      set_reading(c, 0);
      continue;
    }
    metrics_add(&lc->m.timeouts, 1);
    if (log_enabled(LOG_DEBUG)) { /* which client: the address (getpeername only here) */
      char addr[64] = "", fields[96] = "";
      struct sockaddr_storage peer;
      int len = sizeof(peer);
      if (c->addr[0] != '\0')
        snprintf(addr, sizeof(addr), "%s", c->addr);
      else if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&peer, &len) == 0)
        api_format_addr(&peer, addr, sizeof(addr));
      if (addr[0] != '\0') snprintf(fields, sizeof(fields), ",\"client\":\"%s\"", addr);
      log_line(LOG_DEBUG, "http", NULL, fields[0] ? fields : NULL, "connection timed out (%s)",
               req_late     ? "request"
               : c->writing ? "write"
                            : "idle");
    }
    close_later(c);
  }
}

/* The drain's end: close the lingering connections whose client has
 * acknowledged every byte written to it, the end of file included (so only
 * once the shutdown is done: libuv queues the FIN at the next writable
 * event, and before it the count is 0 with the FIN not sent); a reset,
 * should it still send, can no longer cost it an answer. The others go on
 * lingering, within their bounds and the drain's timeout. */
void conn_close_delivered(loop_ctx *lc) {
  for (conn *c = lc->conns, *next; c != NULL; c = next) {
    next = c->next;
    if (c->lingering && c->shut && !c->closing && output_unacked(c) == 0) conn_close(c);
  }
}

void conn_drain_all(loop_ctx *lc, int force) {
  uint64_t now = uv_now(&lc->loop);
  for (conn *c = lc->conns, *next; c != NULL; c = next) {
    next = c->next;
    if (c->closing || (c->lingering && !force)) continue;
    if (force) {
      conn_close(c);
    } else if (body_due(c)) {
      /* A request whose head was read, perhaps answered 100 Continue
       * (itself maybe still queued), perhaps behind answers still owed:
       * closing now would leave its client not knowing whether it
       * happened. Its body is read (resume lets it be), the request
       * served and answered with Connection: close. Its deadline is
       * brought within half the drain's, so a slow upload cannot hold the
       * drain to its timeout. (A head not yet whole is closed with the
       * idle: nothing of it was taken, and waiting for it would let a slow
       * client hold the drain.) */
      uint64_t by = now + lc->srv->lim.drain_timeout_ms / 2;
      if (c->req_deadline_ms == 0 || c->req_deadline_ms > by) c->req_deadline_ms = by;
      resume(c);
    } else if (c->queued == 0 && !c->writing) {
      /* Nothing owed. A close with input unread resets the connection,
       * and a reset discards what the kernel still holds of the answers
       * already written (outside QA: a pipelining client that read
       * slowly lost thousands of 201s so). Such a connection lingers, as
       * when the server ends one after an answer; the rest close. */
      if (c->cur != NULL) {
        req_free(lc, c->cur);
        c->cur = NULL;
      }
      if (unread_input(c) || output_unacked(c) > 0)
        conn_end(c);
      else
        conn_close(c);
    } else {
      /* in-flight requests finish; nothing new is read */
      c->no_more = 1;
      set_reading(c, 0);
      if (c->cur != NULL) {
        req_free(lc, c->cur);
        c->cur = NULL;
      }
    }
  }
}

/*
 * http.h -- the HTTP front's shared types: the server, its loops, their
 * connections and requests. conn.c moves bytes (llhttp in, writev out),
 * api.c answers requests, server.c runs the loops; this header is where
 * the three meet.
 *
 * Ownership: a loop owns its connections; a connection owns its requests,
 * which stay in arrival order until their responses are written (HTTP/1.1
 * pipelining). A request waiting on the engine is the engine's until its
 * callback runs, even if its connection has closed meanwhile.
 */
#ifndef SPIKE_HTTP_H
#define SPIKE_HTTP_H

#include <llhttp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <uv.h>

#include "accesslog.h"
#include "auth.h"
#include "json.h"
#include "metrics.h"
#include "ratelimit.h"
#include "router.h"
#include "spike.h"
#include "spike_uv.h"
#include "stats.h"

#define REQ_IN_INLINE 384    /* url, kept headers and body, before the heap */
#define REQ_OUT_INLINE 1024  /* one reserve's whole response fits */
#define RESP_HEAD_ROOM 448   /* status line and headers go in front of the body */
#define READ_BUF_BYTES 65536
/* Per-turn queues of connections (net/conn.c): to close, and whose first
 * read waits for a later turn. */
#define CONNQ_CLOSE 0
#define CONNQ_READ 1
#define CONN_QUEUES 2
#define TRACE_MAX 64
#define API_LIST_MAX 1000  /* orders in one user-orders answer: lc->orders */
#define API_FEED_MAX 1000  /* changes in one feed answer: lc->changes */

typedef struct server server;
typedef struct loop_ctx loop_ctx;
typedef struct conn conn;
typedef struct req req;

/* Limits and behaviour of the HTTP front (flags in main.c). */
typedef struct http_limits {
  uint32_t max_conns;         /* past it new connections are refused (503) */
  uint32_t max_refusals;      /* refusals being answered, per loop; past it: closed at once */
  uint32_t max_header_bytes;  /* request line + headers; 413 past it */
  uint32_t max_body_bytes;    /* 413 past it */
  uint32_t header_timeout_ms; /* from a request's first byte to its last */
  uint32_t idle_timeout_ms;   /* keep-alive connection with nothing to do */
  uint32_t max_pipeline;      /* requests in flight per connection */
  uint64_t max_pipeline_bytes; /* answers written but not yet sent, per connection: past it,
                                * no more requests are read (a client that does not read
                                * its answers holds about this much, plus one answer) */
  uint32_t drain_timeout_ms;  /* SIGTERM: longest wait for in-flight work */
  uint32_t turn_budget_us;    /* a loop turn's busy time past which it takes no new work */
  uint32_t rate_limit;        /* requests per second per client address; 0: off */
  uint32_t rate_burst;        /* bucket size; 0: rate_limit */
  /* Lingering close, after an answer that ends the connection: read and
   * discard what the client still sends until it closes, is quiet for
   * linger_idle_ms, linger_ms have passed or linger_max_bytes are read.
   * linger_ms 0: close at once. */
  uint32_t linger_ms;
  uint32_t linger_idle_ms;
  uint64_t linger_max_bytes;
} http_limits;

struct req {
  spike_op op; /* first: the engine's callback casts back */
  loop_ctx *lc;
  conn *c;     /* NULL once the connection has gone */
  req *next;
  uint8_t method;   /* router_method */
  uint8_t handler;  /* enum handler */
  uint8_t done;     /* the response is in out */
  uint8_t keep_alive;
  uint8_t http10;   /* an HTTP/1.0 request: keep-alive is said, not assumed */
  uint8_t ctype;    /* 0 none, 1 JSON, 2 MessagePack, 3 other */
  uint8_t parked;   /* waiting on the engine */
  uint8_t head;     /* HEAD: answered as GET, without the body */
  uint8_t llmethod; /* llhttp's method, for the access log */
  uint8_t busy;     /* metric_busy, for a 503 */
  uint8_t expect;   /* Expect: 100-continue */
  uint8_t ended;    /* a parked long-poll whose client left: spike_feed_wait_end sent */
  int http;         /* response status */
  int status;       /* spike status the request ended with */
  uint64_t t0_ns;
  /* Copied request pieces: the target at offset 0, then kept header values
   * and the body, each recorded as (offset, length) into in. */
  jbuf in;
  uint32_t target_len;
  uint32_t rid_off, rid_len, auth_off, auth_len, ikey_off, ikey_len, body_off, body_len;
  uint8_t has_rid, has_auth, has_ikey;
  char trace[TRACE_MAX + 1];
  route_match m;
  /* the ids the answer is about (0: none), for the access log */
  uint64_t event_id, order_id, user_id;
  /* the feed: where it stood when answered (X-Spike-* headers) */
  spike_feed_info feed;
  uint64_t restored_from, restored_seq; /* spike_store_origin, with feed */
  uint8_t feed_head_ok;
  /* handler state across an engine wait */
  uint64_t after;
  uint64_t epoch; /* the feed's epoch= (0: not given) */
  uint32_t limit;
  /* the response: out.p + out_off .. out.p + out.len */
  jbuf out;
  size_t out_off;
  char in_store[REQ_IN_INLINE];
  char out_store[REQ_OUT_INLINE];
};

struct conn {
  uv_tcp_t tcp;
  loop_ctx *lc;
  llhttp_t parser;
  req *cur;          /* being parsed */
  req *head, *tail;  /* arrival order */
  uint32_t queued;   /* requests in head..tail */
  uint32_t header_bytes, body_bytes;
  int err_status;         /* why a callback stopped the parser */
  const char *err_detail;
  char hname[32];
  uint8_t hname_len, hkind;
  uint8_t trailers; /* the head is done: header callbacks now bring trailer fields */
  uint8_t saw_te;   /* the head has a Transfer-Encoding field */
  uint8_t nhost;    /* Host fields in the head (2 means two or more) */
  uint8_t scan;     /* framing check: what the last framing byte checked was */
  uint32_t scan_line; /* framing check: bytes of the line being checked so far */
  uint32_t hval_off;
  const char *scan_at; /* framing check: unchecked input from here (during feed only) */
  req *complete;       /* parsed whole; feed() checks its framing, then dispatches it */
  char *pending;     /* input left over when the parser paused */
  size_t pending_len;
  uint64_t deadline_ms;     /* idle, unread answers, lingering: uv_now-based; 0 = none */
  uint64_t req_deadline_ms; /* cur is whole by then (header_timeout_ms); only while cur != NULL */
  uint64_t spared_ms;       /* the deadline a sweep let pass once: input was waiting unread */
  uint64_t linger_end_ms; /* lingering: the last moment, uv_now-based */
  uint64_t linger_bytes;  /* lingering: bytes read and discarded */
  uint64_t linger_cap_ms; /* lingering: linger_end_ms moves on no further */
  uint32_t linger_outq;   /* lingering: bytes the client had not acknowledged at the last look */
  uint64_t linger_heard_ms; /* lingering: the last input (or the start) */
  uint8_t reading, writing, closing, no_more;
  uint8_t eof;       /* the client has sent everything it will */
  uint8_t lingering; /* answered; write side shut down; discarding input */
  uint8_t shut;      /* lingering, and the shutdown is done: the FIN is queued */
  uint8_t refusal;   /* over the limit: in lc->nrefusals, not in srv->conns */
  uint8_t refusal_told; /* a refusal counted (metric and log), or a probe answered: not one */
  uv_shutdown_t sd;
  uint32_t writing_reqs; /* requests whose bytes a uv_write holds */
  uv_write_t wr;
  conn *prev, *next;    /* the loop's list */
  conn *dirty_next;
  uint8_t dirty;
  uint8_t known;        /* a request of it was answered: its reads are never deferred */
  uint32_t go_turn;     /* taken from CONNQ_READ in lc->turn: read whatever the budget */
  uint8_t inq[CONN_QUEUES]; /* in lc->q[i] (see CONNQ_CLOSE, CONNQ_READ) */
  conn *q_prev[CONN_QUEUES], *q_next[CONN_QUEUES];
  uint64_t peer; /* a hash of the client's address, for the rate limiter */
  char addr[56];  /* "ip:port" or "[v6]:port", when the access log is on */
};

struct loop_ctx {
  server *srv;
  uint32_t idx;
  uv_loop_t loop;
  uv_prepare_t turn_clock;   /* times each turn (see loop_turn_busy_ns) */
  uint64_t turn_ns, turn_idle_ns; /* at the last prepare: the clock, libuv's idle time */
  uv_tcp_t listener;
  uv_async_t wake;     /* drain / force from the main thread */
  uv_timer_t sweep;    /* timeouts */
  uv_check_t flush;    /* write what this iteration produced */
  spike_producer *producer;
  spike_uv adapter;
  conn *conns;
  uint32_t nconns;
  uint32_t nlinger;    /* of nconns, lingering */
  uint32_t nrefusals;  /* of nconns, refused for the connection limit */
  conn *dirty;         /* connections with responses to write */
  conn *q[CONN_QUEUES], *q_tail[CONN_QUEUES]; /* work left for later turns, oldest first */
  uv_idle_t closer;    /* active while a queue is not empty: the loop does not block */
  uint32_t new_reqs;   /* requests this turn of connections not yet answered */
  uint32_t turn;       /* loop turns, counted at their end (conn_flush_dirty) */
  uint32_t accepts;    /* connections taken this loop turn */
  uint64_t refusals_unlogged, refusal_logged_ms; /* refusals at max_conns: the log's count */
  uint64_t err_window_ms;  /* 5xx log lines: the second being counted */
  uint32_t err_logged;     /* lines logged in it (at most API_5XX_LOGGED_PER_S) */
  uint64_t err_unlogged;   /* 5xx answers past that, told in one line later */
  uint8_t accept_pending; /* libuv holds one accepted that waits for the next turn */
  req *free_reqs;
  uint32_t nfree;
  metrics m;
  ratelimit rl;
  char rbuf[READ_BUF_BYTES];
  uint8_t rbuf_busy;
  char *scratch;       /* body parsing, max_body_bytes */
  spike_event *events; /* lists and metrics, max_events */
  spike_order *orders; /* user orders, API_LIST_MAX */
  spike_change *changes; /* feed, API_FEED_MAX */
  uint64_t trace_seq, trace_salt;
  char date[48];       /* "Date: ...\r\n", remade once a second */
  int64_t date_sec;
  char log_ts[24];     /* "2026-01-02T03:04:05", remade once a second */
  int64_t log_sec;
  int draining;
  uint64_t delivered_asked_ms; /* the drain's end: when conn_close_delivered last ran */
  _Atomic int forced; /* set by the main thread, then a wake-up */
  int wake_closed;    /* under server.c's done_lock: the loop closed wake, send no more */
  uv_thread_t thread;
  uint8_t inited, handles, listening, started;
};

struct server {
  spike_engine *engine;
  spike_config ecfg;
  http_limits lim;
  auth_config auth;
  char host[64];
  int port;
  uint32_t threads;
  loop_ctx *loops;
  accesslog *access;   /* NULL without --access-log */
  stats *stats;        /* the dashboard's history; NULL if it could not start */
  _Atomic uint32_t conns; /* open across all loops, refusals not included */
  _Atomic int draining;
  const char *backup_dir; /* --backup-dir; NULL: the backup route is refused */
  metrics_backups backups;
};

/* ---- conn.c ---- */
void conn_init_settings(void); /* once, before any loop runs */
void conn_on_accept(uv_stream_t *listener, int status);
/* The request's response is in r->out: queue it for writing. */
void conn_respond(req *r);
/* Close every idle connection (one with input unread or answers not yet
 * acknowledged lingers instead); the rest close when their work is done.
 * Lingering connections are left to the drain's end unless force. */
void conn_drain_all(loop_ctx *lc, int force);
/* The drain's end: close the lingering connections whose client has
 * acknowledged everything written to it, the end of file included. */
void conn_close_delivered(loop_ctx *lc);
void conn_sweep(uv_timer_t *t);
/* The count of refusals not yet logged, once a second (force: now, at a stop). */
void conn_log_refusals(loop_ctx *lc, int force);

/* The loop is draining, or the server is and the loop's wake has not run
 * yet (a feed wait released for the drain can be answered before it):
 * nothing more is read, and the last answer says Connection: close.
 * acquire: pairs with the release in server_run, made before the waits'
 * release. */
static inline int loop_draining(const loop_ctx *lc) {
  return lc->draining || atomic_load_explicit(&lc->srv->draining, memory_order_acquire);
}
void conn_flush_dirty(uv_check_t *h);
req *req_alloc(loop_ctx *lc);
void req_free(loop_ctx *lc, req *r);

/* ---- api.c ---- */
/* A complete request: answer it now (conn_respond) or park it on the engine. */
void api_handle(loop_ctx *lc, req *r);
/* Whether a request whose head has been read (its target and llhttp's
 * method) asks for a probe: GET or HEAD of /healthz/live, /healthz/ready,
 * their aliases, or /metrics. A connection past --max-conns is still
 * answered those. */
int api_probe(const req *r, uint8_t llmethod);
/* Write an error envelope for a request the transport refuses (bad syntax,
 * too large). */
void api_error(loop_ctx *lc, req *r, int status, const char *detail);
/* The ids a request names, as JSON members for a log line ("" if none). */
void api_log_ids(const req *r, char *out, size_t cap);
/* Log how many 5xx answers went unlogged in a second that has ended (the
 * loop's sweep calls it, so a storm's tail is told too). */
void api_log_unlogged(loop_ctx *lc, int force);
/* A response is ready to go (conn_respond): count it in the metrics and
 * write its access line. ns: since its first byte. */
void api_done(loop_ctx *lc, req *r, uint64_t ns);
/* "ip:port" or "[v6]:port" into out. */
struct sockaddr_storage;
void api_format_addr(const struct sockaddr_storage *sa, char *out, size_t cap);

/* The time the current turn has kept its loop's thread busy: since the
 * loop's last prepare (just before it waited for events), less that wait.
 * Wall time: a thread descheduled by the kernel counts as busy. Owner
 * thread only (server.c). */
uint64_t loop_turn_busy_ns(const loop_ctx *lc);

#endif /* SPIKE_HTTP_H */

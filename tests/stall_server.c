/*
 * stall_server.c -- a tiny HTTP/1.1 server that stalls on purpose, for
 * testing that spikebench sees stalls a closed-loop tool hides.
 *
 * It answers every request at once with a small JSON 201, keep-alive,
 * except during a freeze: for --freeze-ms starting at every whole
 * --period-ms since it started (the first at one period), it answers
 * nothing; requests that arrive meanwhile are counted per connection and
 * all answered when the freeze ends. A server stuck in a garbage
 * collection or an fsync looks like this from outside.
 *
 *   stall_server [--port N] [--freeze-ms 200] [--period-ms 1000] [--close] [...]
 *
 * --close answers each connection's first request with Connection: close
 * and closes it, as a server without keep-alive does (--freeze-ms 0: never
 * frozen). --idle-close-ms N closes a keep-alive connection N ms after its
 * last answer if nothing came meanwhile, with no Connection: close said (an
 * idle timeout, as nginx's keepalive_timeout). --delay-ms N answers each
 * request N ms after it is read, or after the answer before it is written
 * (a server slower than its load: one answer per connection every N ms);
 * --slow-every N --slow-ms M holds every Nth request (counted over the
 * server) M ms instead.
 * --refuse-past N answers a connection past N open ones 503 (Retry-After:
 * 1, Connection: close) at once, before it has sent anything, and closes
 * it, as servers at a connection limit do (spiked did until 2026-11-29).
 * --port 0 (the default) takes a free port; the first line on stdout is
 * "listening 127.0.0.1:PORT". Requests are framed by their headers and
 * Content-Length only (spikebench's are small and never chunked); anything
 * else closes the connection. Single-threaded, one libuv loop.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <uv.h>

#define MAX_CONNS 4096
#define IN_BYTES 8192    /* one request's head and body must fit */
#define BATCH 64         /* responses per write */
#define OWED_MAX 1000000 /* answers a connection may be owed before it is cut off */

#define BODY "{\"code\":0,\"msg\":\"ok\",\"data\":{\"id\":\"1\"},\"traceId\":\"stall\"}"
static const char RESPONSE[] =
    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 57\r\n\r\n" BODY;
_Static_assert(sizeof(BODY) - 1 == 57, "Content-Length matches the body");
static const char RESPONSE_CLOSE[] = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                                     "Content-Length: 57\r\nConnection: close\r\n\r\n" BODY;
static const char REFUSAL[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                              "Content-Length: 2\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{}";
static int close_each;
static uint64_t idle_close_ms, delay_ms, refuse_past, slow_every, slow_ms, held_n;

typedef struct sconn {
  uv_tcp_t tcp;
  uv_write_t wr;
  uv_timer_t idle; /* --idle-close-ms */
  uv_timer_t hold; /* --delay-ms */
  int held;        /* --delay-ms: 1 while the next answer waits, 2 when it may go */
  int writing, closing, handles;
  uint64_t owed; /* answers not yet written */
  size_t in_len;
  struct sconn *next_owed;
  int on_owed_list;
  char in[IN_BYTES];
} sconn;

static uv_loop_t *loop;
static uv_tcp_t listener;
static uv_timer_t thaw;
static uint64_t start_ms, freeze_ms = 200, period_ms = 1000;
static sconn *owed_list;
static unsigned nconns;
static uv_buf_t batch[BATCH];

/* 0 when answering; otherwise the ms until the current freeze ends. */
static uint64_t frozen_for(void) {
  if (freeze_ms == 0) return 0;
  uint64_t t = uv_now(loop) - start_ms;
  if (t < period_ms) return 0;
  uint64_t in = t % period_ms;
  return in < freeze_ms ? freeze_ms - in : 0;
}

static void flush(sconn *c);
static void on_thaw(uv_timer_t *t);

static void on_closed(uv_handle_t *h) {
  sconn *c = h->data;
  if (--c->handles > 0) return;
  free(c);
  nconns--;
}

static void sclose(sconn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
  uv_close((uv_handle_t *)&c->idle, on_closed);
  uv_close((uv_handle_t *)&c->hold, on_closed);
}

static void on_hold(uv_timer_t *t) {
  sconn *c = t->data;
  c->held = 2;
  flush(c);
}

static void on_idle(uv_timer_t *t) { sclose(t->data); }

static void on_refused(uv_write_t *w, int status) {
  (void)status;
  sclose(w->data);
}

static void on_written(uv_write_t *w, int status) {
  sconn *c = w->data;
  c->writing = 0;
  if (status < 0 || close_each) {
    sclose(c);
    return;
  }
  flush(c);
  if (idle_close_ms > 0 && c->owed == 0 && !c->writing)
    uv_timer_start(&c->idle, on_idle, idle_close_ms, 0);
}

/* Write what c is owed, BATCH at a time, unless frozen. */
static void flush(sconn *c) {
  if (c->closing || c->writing || c->owed == 0) return;
  uint64_t wait = frozen_for();
  if (wait > 0) {
    if (!c->on_owed_list) {
      c->on_owed_list = 1;
      c->next_owed = owed_list;
      owed_list = c;
    }
    if (!uv_is_active((uv_handle_t *)&thaw) || uv_timer_get_due_in(&thaw) > wait)
      uv_timer_start(&thaw, on_thaw, wait, 0);
    return;
  }
  unsigned n = close_each ? 1 : c->owed < BATCH ? (unsigned)c->owed : BATCH;
  if (delay_ms > 0 || slow_every > 0) {
    if (c->held == 0) {
      c->held = 1;
      held_n++;
      uv_timer_start(&c->hold, on_hold,
                     slow_every > 0 && held_n % slow_every == 0 ? slow_ms : delay_ms, 0);
    }
    if (c->held != 2) return;
    c->held = 0;
    n = 1;
  }
  c->owed -= n;
  c->writing = 1;
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, batch, n, on_written) != 0) {
    c->writing = 0;
    sclose(c);
  }
}

static void on_thaw(uv_timer_t *t) {
  (void)t;
  sconn *list = owed_list;
  owed_list = NULL;
  while (list != NULL) {
    sconn *c = list;
    list = c->next_owed;
    c->on_owed_list = 0;
    c->next_owed = NULL;
    flush(c);
  }
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  sconn *c = h->data;
  *buf = uv_buf_init(c->in + c->in_len, (unsigned)(sizeof(c->in) - c->in_len));
}

/* Complete requests at the front of c->in: count them, keep the rest. */
static int take_requests(sconn *c) {
  for (;;) {
    char *end = NULL;
    for (size_t i = 0; i + 3 < c->in_len; i++)
      if (memcmp(c->in + i, "\r\n\r\n", 4) == 0) {
        end = c->in + i + 4;
        break;
      }
    if (end == NULL) return c->in_len == sizeof(c->in) ? -1 : 0;
    size_t head = (size_t)(end - c->in), body = 0;
    for (char *p = c->in; p < end; p++) {
      if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0) {
        body = strtoul(p + 15, NULL, 10);
        break;
      }
    }
    if (body > sizeof(c->in) - head) return -1;
    if (c->in_len < head + body) return 0;
    memmove(c->in, c->in + head + body, c->in_len - head - body);
    c->in_len -= head + body;
    if (++c->owed > OWED_MAX) return -1;
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)buf;
  sconn *c = s->data;
  if (nread < 0) {
    sclose(c);
    return;
  }
  c->in_len += (size_t)nread;
  uv_timer_stop(&c->idle);
  if (take_requests(c) != 0) {
    sclose(c);
    return;
  }
  flush(c);
}

static void on_conn(uv_stream_t *l, int status) {
  if (status < 0) return;
  sconn *c = calloc(1, sizeof(*c));
  if (c == NULL) return;
  uv_tcp_init(loop, &c->tcp);
  uv_timer_init(loop, &c->idle);
  uv_timer_init(loop, &c->hold);
  c->tcp.data = c;
  c->idle.data = c;
  c->hold.data = c;
  c->wr.data = c;
  c->handles = 3;
  nconns++;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0 || nconns > MAX_CONNS) {
    sclose(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (refuse_past > 0 && nconns > refuse_past) {
    uv_buf_t b = uv_buf_init((char *)REFUSAL, sizeof(REFUSAL) - 1);
    c->writing = 1;
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_refused) != 0) sclose(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static int flag_u64(const char *name, const char *v, uint64_t max, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long x = v ? strtoull(v, &end, 10) : 0;
  if (v == NULL || *v < '0' || *v > '9' || *end != '\0' || errno != 0 || x > max) {
    fprintf(stderr, "stall_server: %s: bad value \"%s\"\n", name, v ? v : "");
    return -1;
  }
  *out = x;
  return 0;
}

int main(int argc, char **argv) {
  uint64_t port = 0;
  for (int i = 1; i < argc; i++) {
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int rc;
    if (strcmp(argv[i], "--port") == 0)
      rc = flag_u64("--port", v, 65535, &port);
    else if (strcmp(argv[i], "--freeze-ms") == 0)
      rc = flag_u64("--freeze-ms", v, 3600000, &freeze_ms);
    else if (strcmp(argv[i], "--period-ms") == 0)
      rc = flag_u64("--period-ms", v, 3600000, &period_ms);
    else if (strcmp(argv[i], "--idle-close-ms") == 0)
      rc = flag_u64("--idle-close-ms", v, 3600000, &idle_close_ms);
    else if (strcmp(argv[i], "--delay-ms") == 0)
      rc = flag_u64("--delay-ms", v, 3600000, &delay_ms);
    else if (strcmp(argv[i], "--slow-every") == 0)
      rc = flag_u64("--slow-every", v, 1000000000, &slow_every);
    else if (strcmp(argv[i], "--slow-ms") == 0)
      rc = flag_u64("--slow-ms", v, 3600000, &slow_ms);
    else if (strcmp(argv[i], "--refuse-past") == 0)
      rc = flag_u64("--refuse-past", v, MAX_CONNS, &refuse_past);
    else if (strcmp(argv[i], "--close") == 0) {
      close_each = 1;
      continue;
    } else {
      fprintf(stderr,
              "usage: stall_server [--port N] [--freeze-ms MS] [--period-ms MS] [--close] "
              "[--idle-close-ms MS] [--delay-ms MS] [--slow-every N --slow-ms MS] "
              "[--refuse-past N]\n");
      return 2;
    }
    if (rc != 0) return 2;
    i++;
  }
  if (period_ms == 0 || freeze_ms >= period_ms) {
    fprintf(stderr, "stall_server: --freeze-ms must be shorter than --period-ms\n");
    return 2;
  }
  for (int i = 0; i < BATCH; i++)
    batch[i] = close_each ? uv_buf_init((char *)RESPONSE_CLOSE, sizeof(RESPONSE_CLOSE) - 1)
                          : uv_buf_init((char *)RESPONSE, sizeof(RESPONSE) - 1);
  loop = uv_default_loop();
  uv_timer_init(loop, &thaw);
  uv_tcp_init(loop, &listener);
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", (int)port, &a);
  int rc = uv_tcp_bind(&listener, (const struct sockaddr *)&a, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&listener, 1024, on_conn);
  if (rc != 0) {
    fprintf(stderr, "stall_server: listen on port %u: %s\n", (unsigned)port, uv_strerror(rc));
    return 1;
  }
  int len = sizeof(a);
  uv_tcp_getsockname(&listener, (struct sockaddr *)&a, &len);
  start_ms = uv_now(loop);
  printf("listening 127.0.0.1:%d\n", ntohs(a.sin_port));
  fflush(stdout);
  return uv_run(loop, UV_RUN_DEFAULT);
}

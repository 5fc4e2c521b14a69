/*
 * hostile.c -- see hostile.h. Plain sockets; the flood uses epoll so that
 * ten thousand connections cost one wait, not ten thousand polls.
 */
#define _GNU_SOURCE
#include "hostile.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_client.h"
#include "test.h"

/* ---- the process and the server ------------------------------------------ */

long hx_raise_nofile(long want) {
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return -1;
  if (lim.rlim_cur != RLIM_INFINITY && (long)lim.rlim_cur >= want) return (long)lim.rlim_cur;
  if (lim.rlim_max != RLIM_INFINITY && (long)lim.rlim_max < want) return -1;
  lim.rlim_cur = (rlim_t)want;
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return -1;
  return want;
}

long hx_rss_kib(pid_t pid) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  if (f == NULL) return -1;
  long kib = -1;
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  fclose(f);
  return kib;
}

int hx_fd_count(pid_t pid) {
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
  DIR *d = opendir(path);
  if (d == NULL) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

/* A connect(2) to 127.0.0.1:port with TCP_NODELAY and, when rcvbuf_bytes
 * > 0, that receive buffer (set first, so the window is small from the
 * start); the fd, or -1. */
static int connect_to(int port, int nonblock, int rcvbuf_bytes) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  if (rcvbuf_bytes > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf_bytes, sizeof(rcvbuf_bytes));
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 && !(nonblock && errno == EINPROGRESS)) {
    close(fd);
    return -1;
  }
  return fd;
}

int hx_connect_nb(int port) { return connect_to(port, 1, 0); }

int hx_connect(int port, int rcvbuf_bytes) { return connect_to(port, 0, rcvbuf_bytes); }

/* ---- parsing what came back ------------------------------------------------ */

/* One whole response at buf[0..len): its length, 0 when incomplete, -1
 * when it is not a response. Fills status, code, close. */
static long one_response(const char *buf, size_t len, int *status, int *code, int *close_) {
  const char *end = memmem(buf, len, "\r\n\r\n", 4);
  if (len >= 9 && strncmp(buf, "HTTP/1.1 ", 9) != 0) return -1;
  if (end == NULL) return len < 9 && strncmp(buf, "HTTP/1.1 ", len) != 0 ? -1 : 0;
  size_t hl = (size_t)(end - buf) + 4;
  if (sscanf(buf, "HTTP/1.1 %d", status) != 1) return -1;
  const char *cl = memmem(buf, hl, "\r\nContent-Length: ", 18);
  if (cl == NULL) return -1;
  size_t body = strtoul(cl + 18, NULL, 10);
  if (len < hl + body) return 0;
  *close_ = memmem(buf, hl, "\r\nConnection: close\r\n", 21) != NULL;
  const char *c = memmem(buf + hl, body, "\"code\":", 7);
  *code = c != NULL ? atoi(c + 7) : -1;
  return (long)(hl + body);
}

/* ---- request smuggling ----------------------------------------------------- */

#define POST_ORDERS "POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\n"
#define CHUNKED POST_ORDERS "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
#define GET_LIVE "GET /healthz/live HTTP/1.1\r\n"

/* Each must be answered with one 400 and a close. "%s" is replaced with a
 * whole reserve: a server that reads the case as two requests makes it. */
const hx_smuggle hx_smuggles[] = {
    /* Content-Length with Transfer-Encoding, either order (CL.TE, TE.CL) */
    {"cl_then_te",
     POST_ORDERS "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s"},
    {"te_then_cl",
     POST_ORDERS "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n%s"},
    {"te_identity_and_cl",
     POST_ORDERS "Transfer-Encoding: identity\r\nContent-Length: 4\r\n\r\nabcd%s"},
    /* duplicate and conflicting Content-Length */
    {"cl_twice_same", POST_ORDERS "Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd%s"},
    {"cl_twice_conflicting", POST_ORDERS "Content-Length: 4\r\nContent-Length: 300\r\n\r\nabcd%s"},
    {"cl_list", POST_ORDERS "Content-Length: 4, 4\r\n\r\nabcd%s"},
    {"cl_plus_sign", POST_ORDERS "Content-Length: +4\r\n\r\nabcd%s"},
    {"cl_hex", POST_ORDERS "Content-Length: 0x4\r\n\r\nabcd%s"},
    {"cl_two_numbers", POST_ORDERS "Content-Length: 4 4\r\n\r\nabcd%s"},
    {"cl_overflow", POST_ORDERS "Content-Length: 18446744073709551620\r\n\r\nabcd%s"},
    {"cl_space_before_colon", POST_ORDERS "Content-Length : 4\r\n\r\nabcd%s"},
    /* obs-fold: a line that starts with a space or tab continues the last */
    {"obs_fold_value", GET_LIVE "Host: t\r\nX-Pad: a\r\n b\r\n\r\n%s"},
    {"obs_fold_tab", GET_LIVE "Host: t\r\nX-Pad: a\r\n\tb\r\n\r\n%s"},
    {"obs_fold_te", POST_ORDERS "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n%s"},
    {"obs_fold_cl", POST_ORDERS "Content-Length:\r\n 4\r\n\r\nabcd%s"},
    {"space_before_cl", GET_LIVE "Host: t\r\n Content-Length: 5\r\n\r\nabcde%s"},
    {"space_before_first_header", GET_LIVE " Host: t\r\n\r\n%s"},
    /* bare LF and bare CR as line ends */
    {"bare_lf_request_line", "GET /healthz/live HTTP/1.1\nHost: t\r\n\r\n%s"},
    {"bare_lf_header", GET_LIVE "Host: t\nX-Pad: a\r\n\r\n%s"},
    {"bare_lf_head_end", GET_LIVE "Host: t\r\n\n%s"},
    {"bare_lf_everywhere", "GET /healthz/live HTTP/1.1\nHost: t\n\n%s"},
    {"bare_cr_header", GET_LIVE "Host: t\rX-Pad: a\r\n\r\n%s"},
    {"bare_cr_head_end", GET_LIVE "Host: t\r\n\rX%s"},
    /* header names */
    {"empty_header_name", GET_LIVE "Host: t\r\n: x\r\n\r\n%s"},
    {"space_in_header_name", GET_LIVE "Host: t\r\nX Pad: x\r\n\r\n%s"},
    /* Transfer-Encoding that is not exactly chunked, or not in HTTP/1.1 */
    {"te_empty", POST_ORDERS "Transfer-Encoding: \r\n\r\n%s"},
    {"te_gzip", POST_ORDERS "Transfer-Encoding: gzip\r\n\r\n%s"},
    {"te_chunked_then_identity",
     POST_ORDERS "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n%s"},
    {"te_twice",
     POST_ORDERS "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s"},
    {"te_xchunked", POST_ORDERS "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n%s"},
    {"te_in_http10",
     "POST /api/v1/events/1/orders HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n%s"},
    /* chunked bodies with bad sizes and bad line ends */
    {"chunk_size_negative", CHUNKED "-4\r\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_size_0x", CHUNKED "0x4\r\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_size_overflow", CHUNKED "10000000000000004\r\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_size_space_after", CHUNKED "4 \r\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_size_space_before", CHUNKED " 4\r\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_size_empty", CHUNKED "\r\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_size_not_hex", CHUNKED "4g\r\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_data_too_long", CHUNKED "4\r\nabcdef\r\n0\r\n\r\n%s"},
    {"chunk_data_no_crlf", CHUNKED "4\r\nabcd0\r\n\r\n%s"},
    /* llhttp 8.1's loose build skips any two bytes after a chunk's data */
    {"chunk_data_then_two_bytes", CHUNKED "4\r\nabcdXX0\r\n\r\n%s"},
    {"chunk_data_then_two_spaces", CHUNKED "4\r\nabcd  0\r\n\r\n%s"},
    {"chunk_data_then_lf_cr", CHUNKED "4\r\nabcd\n\r0\r\n\r\n%s"},
    {"chunk_data_bare_lf", CHUNKED "4\r\nabcd\n0\r\n\r\n%s"},
    {"chunk_data_bare_cr", CHUNKED "4\r\nabcd\rX0\r\n\r\n%s"},
    {"chunk_size_bare_lf", CHUNKED "4\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_size_bare_cr", CHUNKED "4\rXabcd\r\n0\r\n\r\n%s"},
    {"chunk_ext_bare_lf", CHUNKED "4;a\nabcd\r\n0\r\n\r\n%s"},
    {"chunk_ext_bare_cr", CHUNKED "4;a\rXabcd\r\n0\r\n\r\n%s"},
    {"last_chunk_bare_lf", CHUNKED "4\r\nabcd\r\n0\r\n\n%s"},
    {"last_chunk_bare_cr", CHUNKED "4\r\nabcd\r\n0\r\n\rX%s"},
    {"last_chunk_size_bare_cr", CHUNKED "0\rX\r\n%s"},
    {"trailer_obs_fold", CHUNKED "0\r\nX-Pad: a\r\n b\r\n\r\n%s"},
    {"trailer_bare_lf_end", CHUNKED "0\r\nX-Pad: a\r\n\n%s"},
    {"trailer_bare_cr_end", CHUNKED "0\r\nX-Pad: a\r\n\rX%s"},
};
const size_t hx_nsmuggles = sizeof(hx_smuggles) / sizeof(hx_smuggles[0]);

void hx_smuggle_run(int port, const hx_smuggle *s, uint64_t event, uint64_t user, int split,
                    int wait_ms, hx_answer *a) {
  char inner[64], smuggled[512], raw[2048];
  int n = snprintf(inner, sizeof(inner), "{\"user_id\":\"%llu\"}", (unsigned long long)user);
  int m = snprintf(smuggled, sizeof(smuggled),
                   "POST /api/v1/events/%llu/orders HTTP/1.1\r\nHost: t\r\n"
                   "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                   (unsigned long long)event, n, inner);
  CHECK(m > 0 && (size_t)m < sizeof(smuggled));
  const char *at = strstr(s->head, "%s");
  CHECK(at != NULL);
  size_t len = (size_t)snprintf(raw, sizeof(raw), "%.*s%s%s", (int)(at - s->head), s->head,
                                smuggled, at + 2);
  CHECK(len < sizeof(raw));
  memset(a, 0, sizeof(*a));
  int fd = hx_connect(port, 0);
  CHECK(fd >= 0);
  if (split) {
    for (size_t i = 0; i < len; i++) {
      hc_send(fd, raw + i, 1);
      if (i % 8 == 7) usleep(100);
    }
  } else {
    hc_send(fd, raw, len);
  }
  static char in[1 << 16];
  size_t got = 0;
  int64_t end = test_now_ms() + wait_ms;
  a->end = HX_OPEN;
  while (test_now_ms() < end && got < sizeof(in)) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t r = recv(fd, in + got, sizeof(in) - got, 0);
    if (r == 0) {
      a->end = HX_EOF;
      break;
    }
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      a->end = HX_RST;
      break;
    }
    got += (size_t)r;
  }
  close(fd);
  snprintf(a->first, sizeof(a->first), "%.*s", (int)(got < 159 ? got : 159), in);
  for (char *p = a->first; *p; p++)
    if (*p == '\r' || *p == '\n') *p = ' ';
  size_t off = 0;
  while (off < got) {
    int st = 0, code = 0, cl = 0;
    long k = one_response(in + off, got - off, &st, &code, &cl);
    if (k <= 0) break;
    if (a->answers == 0) a->status = st, a->code = code, a->conn_close = cl;
    a->answers++;
    off += (size_t)k;
  }
}

/* ---- slowloris ----------------------------------------------------------- */

/* Half of them trickle headers, half a body their headers announced. */
static const char slow_head[] = "GET /api/v1/events/1 HTTP/1.1\r\nHost: t\r\nX-Slow: ";
static const char slow_body[] = "POST /api/v1/events/1/orders HTTP/1.1\r\nHost: t\r\n"
                                "Content-Type: application/json\r\nContent-Length: 60000\r\n\r\n{";

static void slow_open_one(hx_slow *g, int i, int port) {
  g->fd[i] = hx_connect(port, 0);
  g->t_first_ms[i] = test_now_ms();
  g->t_closed_ms[i] = 0;
  g->sent[i] = 0;
  g->reset[i] = 0;
  if (g->fd[i] < 0) { /* refused at connect: counts as closed at once */
    g->t_closed_ms[i] = g->t_first_ms[i];
    g->reset[i] = 1;
    return;
  }
  fcntl(g->fd[i], F_SETFL, fcntl(g->fd[i], F_GETFL) | O_NONBLOCK);
  const char *s = i % 2 ? slow_body : slow_head;
  size_t n = i % 2 ? sizeof(slow_body) - 1 : sizeof(slow_head) - 1;
  hc_send(g->fd[i], s, n);
  g->sent[i] = (int)n;
  g->open++;
}

void hx_slow_open(hx_slow *g, int port, int n) {
  memset(g, 0, sizeof(*g));
  g->n = n;
  g->fd = calloc((size_t)n, sizeof(int));
  g->t_first_ms = calloc((size_t)n, sizeof(int64_t));
  g->t_closed_ms = calloc((size_t)n, sizeof(int64_t));
  g->sent = calloc((size_t)n, sizeof(int));
  g->reset = calloc((size_t)n, sizeof(int));
  CHECK(g->fd && g->t_first_ms && g->t_closed_ms && g->sent && g->reset);
  for (int i = 0; i < n; i++)
    slow_open_one(g, i, port);
}

/* Has the server closed fd? Reads (and drops) whatever it sent first. */
static int closed_by_server(int fd, int *reset) {
  char b[4096];
  for (;;) {
    ssize_t r = recv(fd, b, sizeof(b), MSG_DONTWAIT);
    if (r > 0) continue;
    if (r == 0) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno == EINTR) continue;
    *reset = 1;
    return 1;
  }
}

int hx_slow_tick(hx_slow *g) {
  int64_t now = test_now_ms();
  for (int i = 0; i < g->n; i++) {
    if (g->fd[i] < 0 || g->t_closed_ms[i] != 0) continue;
    if (closed_by_server(g->fd[i], &g->reset[i])) {
      g->t_closed_ms[i] = now;
      close(g->fd[i]);
      g->fd[i] = -1;
      g->open--;
      continue;
    }
    ssize_t w = send(g->fd[i], "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w == 1) g->sent[i]++;
  }
  return g->open;
}

void hx_slow_refill(hx_slow *g, int port) {
  for (int i = 0; i < g->n; i++)
    if (g->fd[i] < 0) slow_open_one(g, i, port);
}

void hx_slow_close(hx_slow *g) {
  for (int i = 0; i < g->n; i++)
    if (g->fd[i] >= 0) close(g->fd[i]);
  free(g->fd);
  free(g->t_first_ms);
  free(g->t_closed_ms);
  free(g->sent);
  free(g->reset);
  memset(g, 0, sizeof(*g));
}

/* ---- non-readers --------------------------------------------------------- */

void hx_mute_open(hx_mute *g, int port, int n, int reqs, uint64_t event, uint64_t user_base,
                  int body_bytes) {
  memset(g, 0, sizeof(*g));
  g->n = n;
  g->fd = calloc((size_t)n, sizeof(int));
  CHECK(g->fd != NULL);
  size_t cap = (size_t)reqs * (300 + (size_t)body_bytes) + 1;
  char *buf = malloc(cap);
  char *pad = malloc((size_t)body_bytes + 1);
  CHECK(buf != NULL && pad != NULL);
  memset(pad, 'x', (size_t)body_bytes);
  pad[body_bytes] = '\0';
  uint64_t user = user_base;
  for (int i = 0; i < n; i++) {
    size_t len = 0;
    for (int k = 0; k < reqs; k++) {
      int w;
      if (k % 4 == 1)
        w = snprintf(
            buf + len, cap - len,
            "POST /api/v1/events/%llu/orders HTTP/1.1\r\nHost: t\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{\"user_id\":\"%llu\"}",
            (unsigned long long)event,
            14 + (int)snprintf(NULL, 0, "%llu", (unsigned long long)user),
            (unsigned long long)user);
      else if (k % 4 == 3 && body_bytes > 0)
        w = snprintf(buf + len, cap - len,
                     "POST /api/v1/events/%llu/orders HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     (unsigned long long)event, body_bytes, pad);
      else
        w = snprintf(buf + len, cap - len, "GET /api/v1/events/%llu HTTP/1.1\r\nHost: t\r\n\r\n",
                     (unsigned long long)event);
      if (k % 4 == 1) user++;
      CHECK(w > 0 && (size_t)w < cap - len);
      len += (size_t)w;
    }
    g->fd[i] = hx_connect(port, 0);
    if (g->fd[i] < 0) continue;
    fcntl(g->fd[i], F_SETFL, fcntl(g->fd[i], F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    while (off < len) { /* what the socket takes; the rest is dropped */
      ssize_t w = send(g->fd[i], buf + off, len - off, MSG_NOSIGNAL);
      if (w <= 0) break;
      off += (size_t)w;
    }
    g->sent_bytes += (long long)off;
  }
  free(buf);
  free(pad);
}

int hx_mute_closed(hx_mute *g) {
  int closed = 0;
  for (int i = 0; i < g->n; i++) {
    if (g->fd[i] < 0) {
      closed++;
      continue;
    }
    /* look without reading: the answers stay unread */
    struct pollfd p = {g->fd[i], POLLRDHUP, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) closed++;
  }
  return closed;
}

void hx_mute_close(hx_mute *g) {
  for (int i = 0; i < g->n; i++)
    if (g->fd[i] >= 0) close(g->fd[i]);
  free(g->fd);
  memset(g, 0, sizeof(*g));
}

/* ---- a flood of connections ---------------------------------------------- */

enum { FC_CONNECTING = 0, FC_SENT, FC_DONE };

typedef struct fconn {
  int fd;
  uint8_t state;
  uint16_t len;
  char buf[512];
} fconn;

static void note_bad(hx_flood *f, int i, const char *what, const fconn *c) {
  if (f->example[0] != '\0') return;
  snprintf(f->example, sizeof(f->example), "conn %d: %s: %.*s", i, what,
           (int)(c->len < 120 ? c->len : 120), c->buf);
  for (char *p = f->example; *p; p++)
    if (*p == '\r' || *p == '\n') *p = ' ';
}

/* The connection ended (EOF, or reset when rst): classify what it got. */
static void resolve(hx_flood *f, int i, fconn *c, int rst) {
  c->state = FC_DONE;
  if (c->len == 0) {
    if (rst)
      f->closed_rst++;
    else
      f->closed_fin++;
    return;
  }
  int st = 0, code = 0, cl = 0;
  long k = one_response(c->buf, c->len, &st, &code, &cl);
  if (k <= 0 || (size_t)k != c->len) {
    f->bad_partial++;
    note_bad(f, i, "not one whole answer", c);
  } else if (st == 503 && code == 50005 && memmem(c->buf, c->len, "Retry-After: 1", 14) != NULL) {
    if (rst) {
      f->bad_503_rst++;
      note_bad(f, i, "503 then a reset", c);
    } else {
      f->refused_503++;
    }
  } else if (st == 200) {
    f->served++; /* answered, then closed by the server: still served */
  } else {
    f->bad_other++;
    note_bad(f, i, "unexpected answer", c);
  }
}

void hx_flood_run(hx_flood *f, int port, int n, const char *req, int deadline_ms, pid_t pid) {
  memset(f, 0, sizeof(*f));
  f->n = n;
  fconn *c = calloc((size_t)n, sizeof(fconn));
  CHECK(c != NULL);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  CHECK(ep >= 0);
  size_t req_len = strlen(req);
  int64_t t0 = test_now_ms(), next_sample = t0;
  int left = n;
  for (int i = 0; i < n; i++) {
    c[i].fd = hx_connect_nb(port);
    if (c[i].fd < 0) {
      c[i].state = FC_DONE;
      f->closed_rst++;
      left--;
      continue;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
    CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) == 0);
  }
  static struct epoll_event evs[1024];
  while (left > 0) {
    int64_t now = test_now_ms();
    if (now - t0 > deadline_ms) break;
    if (pid > 0 && now >= next_sample) {
      long rss = hx_rss_kib(pid);
      int fds = hx_fd_count(pid);
      if (rss > f->max_rss_kib) f->max_rss_kib = rss;
      if (fds > f->max_fds) f->max_fds = fds;
      next_sample = now + 20;
    }
    int k = epoll_wait(ep, evs, 1024, 20);
    for (int e = 0; e < k; e++) {
      int i = (int)evs[e].data.u32;
      fconn *x = &c[i];
      if (x->state == FC_DONE) continue;
      if (x->state == FC_CONNECTING && (evs[e].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t el = sizeof(err);
        getsockopt(x->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0) { /* refused or reset before we sent anything */
          resolve(f, i, x, 1);
          left--;
          epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
          continue;
        }
        send(x->fd, req, req_len, MSG_NOSIGNAL); /* a reset shows on the read */
        x->state = FC_SENT;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_MOD, x->fd, &ev);
      }
      for (;;) {
        char tmp[4096];
        ssize_t r = recv(x->fd, tmp, sizeof(tmp), 0);
        if (r > 0) {
          size_t room = sizeof(x->buf) - x->len, take = (size_t)r < room ? (size_t)r : room;
          memcpy(x->buf + x->len, tmp, take);
          x->len = (uint16_t)(x->len + take);
          int st = 0, code = 0, cl = 0;
          long whole = one_response(x->buf, x->len, &st, &code, &cl);
          if (whole > 0 && st == 200 && !cl && (size_t)whole == x->len) {
            /* served and kept alive: hold the place until the end */
            f->served++;
            x->state = FC_DONE;
            left--;
            epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
            break;
          }
          continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
          if (x->state != FC_DONE) {
            resolve(f, i, x, r < 0);
            left--;
            epoll_ctl(ep, EPOLL_CTL_DEL, x->fd, NULL);
          }
        }
        break;
      }
    }
  }
  f->took_ms = test_now_ms() - t0;
  for (int i = 0; i < n; i++) {
    if (c[i].state != FC_DONE) {
      f->hung++;
      note_bad(f, i, c[i].state == FC_CONNECTING ? "still connecting" : "no answer, no close",
               &c[i]);
    }
    if (c[i].fd >= 0) close(c[i].fd);
  }
  close(ep);
  free(c);
}

int hx_flood_bad(const hx_flood *f) {
  return f->bad_503_rst + f->bad_partial + f->bad_other + f->hung;
}

/*
 * hostile.h -- hostile HTTP clients, for test_hostile (functional checks in
 * `make test`) and hostile_load (the longer run that `make hostile` puts
 * beside spikebench to measure a legitimate client's p99):
 *
 *   slowloris    connections that trickle a request one byte at a time
 *   non-readers  connections that pipeline requests and never read
 *   smuggling    requests whose framing is ambiguous, each followed in
 *                the same write by a reserve that must never happen
 *   flood        thousands of connections opened at once
 *
 * and what they need to watch the server: its RSS and open descriptors
 * from /proc. Loopback only; every group is bounded in count, and every
 * wait has a deadline.
 */
#ifndef SPIKE_TEST_HOSTILE_H
#define SPIKE_TEST_HOSTILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- the process and the server ------------------------------------------ */

/* Raise this process's RLIMIT_NOFILE soft limit to at least want; the
 * limit now, or -1 when the hard limit is below want. */
long hx_raise_nofile(long want);
/* VmRSS of pid in KiB, or -1. */
long hx_rss_kib(pid_t pid);
/* Open descriptors of pid, or -1. */
int hx_fd_count(pid_t pid);
/* A connect(2) to 127.0.0.1:port that does not wait; the fd, or -1. */
int hx_connect_nb(int port);
/* A blocking connect(2) to 127.0.0.1:port, with a receive buffer of
 * rcvbuf_bytes when > 0 (a client with a small window); the fd, or -1. */
int hx_connect(int port, int rcvbuf_bytes);

/* ---- request smuggling ----------------------------------------------------- */

typedef struct hx_smuggle {
  const char *name;
  const char *head; /* the ambiguous request; "%s" marks where the smuggled one goes */
} hx_smuggle;

extern const hx_smuggle hx_smuggles[];
extern const size_t hx_nsmuggles;

typedef struct hx_answer {
  int answers;     /* whole HTTP responses read */
  int status;      /* the first one's */
  int code;        /* its envelope code */
  int conn_close;  /* it said Connection: close */
  int end;         /* how the connection ended: HX_EOF, HX_RST, HX_OPEN */
  char first[160]; /* its first bytes, for messages */
} hx_answer;

enum { HX_EOF = 1, HX_RST, HX_OPEN };

/* Send case s with a reserve for user on event inside it, as one write
 * (split: one byte per write), and read what comes back for up to
 * wait_ms. */
void hx_smuggle_run(int port, const hx_smuggle *s, uint64_t event, uint64_t user, int split,
                    int wait_ms, hx_answer *a);

/* ---- slowloris ----------------------------------------------------------- */

typedef struct hx_slow {
  int n, open;
  int *fd;
  int64_t *t_first_ms, *t_closed_ms; /* first byte sent; server's close seen (0: not yet) */
  int *sent;
  int *reset; /* the close was a reset */
} hx_slow;

/* Open n connections; each sends the start of a request and then one more
 * byte per hx_slow_tick, never finishing. Half trickle their headers, half
 * a body after complete headers. */
void hx_slow_open(hx_slow *g, int port, int n);
/* One more byte on every open connection; notes those the server closed.
 * Returns how many are still open. */
int hx_slow_tick(hx_slow *g);
/* Reopen the ones the server closed (the load generator keeps n). */
void hx_slow_refill(hx_slow *g, int port);
void hx_slow_close(hx_slow *g);

/* ---- non-readers --------------------------------------------------------- */

typedef struct hx_mute {
  int n;
  int *fd;
  long long sent_bytes;
} hx_mute;

/* Open n connections; each sends reqs pipelined requests (GETs of event,
 * reserves for fresh users from user_base and POSTs with a body of
 * body_bytes that fails validation), as much as the socket takes without
 * waiting, and never reads. */
void hx_mute_open(hx_mute *g, int port, int n, int reqs, uint64_t event, uint64_t user_base,
                  int body_bytes);
/* How many the server has closed so far (EOF or reset seen). */
int hx_mute_closed(hx_mute *g);
void hx_mute_close(hx_mute *g);

/* ---- a flood of connections ---------------------------------------------- */

typedef struct hx_flood {
  int n;
  /* outcomes */
  int served;       /* a whole 200: under the limit */
  int refused_503;  /* a whole 503 (50005, Retry-After), then EOF */
  int closed_fin;   /* closed unanswered, EOF */
  int closed_rst;   /* closed unanswered, reset (or refused at connect) */
  int bad_503_rst;  /* a 503 followed by a reset: the answer could be lost */
  int bad_partial;  /* bytes that are not one whole answer */
  int bad_other;    /* another status */
  int hung;         /* neither answered nor closed by the deadline */
  int64_t took_ms;  /* until every connection was resolved */
  long max_rss_kib; /* the server's, sampled while it ran (with pid) */
  int max_fds;
  char example[200]; /* the first bad one */
} hx_flood;

/* Open n connections at once, send req on each once connected, and
 * resolve every one within deadline_ms. Served connections stay open
 * (holding their place) until all are resolved, then everything closes.
 * pid > 0: sample its RSS and descriptors meanwhile. */
void hx_flood_run(hx_flood *f, int port, int n, const char *req, int deadline_ms, pid_t pid);
/* A flood's bad outcomes, 0 when none. */
int hx_flood_bad(const hx_flood *f);

#endif /* SPIKE_TEST_HOSTILE_H */

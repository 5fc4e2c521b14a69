/*
 * load.c -- the load engine (see load.h).
 *
 * Each thread runs one libuv loop over its share of keep-alive
 * connections, parses answers with llhttp, paces sends with an
 * absolute-time timerfd (libuv timers tick in milliseconds, too coarse for
 * sub-millisecond schedules) and a min-heap of idle connections by next
 * send time. Every buffer is allocated before the run; the hot path
 * formats into a connection's own buffer and records into its thread's
 * histograms. The threads share nothing while they run but the sold-out
 * hint and the timeline hand-over, which takes a mutex once per interval
 * per thread.
 */
#define _GNU_SOURCE
#include "load.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <uv.h>

#define LD_BODY_BYTES 1024        /* answer body kept for its code; longer is not read */
#define LD_READ_BYTES 65536       /* per-thread read buffer */
#define LD_CONNECT_WAIT_MS 30000  /* every connection open before the start */
#define LD_PACE_SLACK_NS 10000ull /* send this early rather than re-arm for it */
#define LD_SWEEP_MS 20
#define LD_BACKOFF_MAX_MS 100 /* a server back up waits at most this for us */
/* a server that closes connections unanswered is asked again at most this often */
#define LD_REFUSED_BACKOFF_MAX_MS 1000
/* ... a close this soon after the connect, that is: later, an unused
 * connection was ended by the server's idle timeout (spiked's is at least
 * 100 ms), its way of working, as after an answer */
#define LD_REFUSED_WITHIN_MS 50
#define LD_TL_SLOTS 64 /* timeline intervals in hand-over at once */
#define NS_PER_S 1000000000ull
#define NS_PER_MS 1000000ull
#define NO_POS UINT32_MAX

const char *const ld_cause_names[CAUSE_COUNT] = {"server", "generator", "down"};

typedef struct tl_acc {
  hist h;
  uint64_t sent, lost, late, in_flight;
  uint64_t out_n[OUT_COUNT];
} tl_acc;

typedef struct tl_gslot {
  int used;
  uint64_t k;
  tl_acc acc;
} tl_gslot;

typedef struct worker worker;

enum cstate { C_CLOSED, C_CONNECTING, C_READY, C_CLOSING };

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t connect_req;
  uv_write_t write_req;
  llhttp_t parser;
  worker *w;
  uint32_t gidx;     /* index over all threads */
  uint32_t heap_pos; /* NO_POS: not waiting in the pacer's heap */
  uint8_t state, busy, done, counted, burst, writing, prepared;
  uint8_t msg_done, keep, bad, truncated, ever_connected, ready_cause;
  uint64_t up_ns; /* when it last opened again after a failure: a send due
                     before that was late because it was down */
  uint8_t closed_after_answer; /* by the server, after a whole answer (Connection: close) */
  uint8_t after_close;   /* the connect under way follows such a close */
  uint8_t answered;      /* it has carried an answer since it last opened */
  uint64_t open_ns;      /* when it last opened */
  uint8_t refused;       /* the server closed it before it carried any answer */
  uint8_t interim;       /* the answer being parsed is a 1xx: the final one follows */
  int status; /* of the answer being parsed */
  uint32_t backoff_ms;
  uint64_t next_ns; /* open loop: the next intended send time */
  uint64_t k;       /* open loop: its sends scheduled so far (send_at) */
  uint64_t intended_ns, sent_ns, reconnect_ns;
  sc_call call; /* the request in flight */
  size_t body_len, wlen;
  char *wbuf; /* R.req_cap bytes */
  char body[LD_BODY_BYTES];
} conn;

struct worker {
  uint32_t id;
  uv_loop_t loop;
  uv_async_t wake;
  uv_timer_t sweep;
  uv_poll_t pacer;
  int tfd;
  uint64_t armed_ns; /* the timerfd's expiry, 0 when not armed */
  int flash_pending;
  pthread_mutex_t wake_mu;
  int wake_closed;
  int wake_ready; /* the async handle exists: main may send */
  int started, stopping;
  uint64_t end_ns; /* R.end_ns, or earlier on a signal */
  /* Open loop: sends due before end_ns are still made after it, when a
   * connection frees, until this (end_ns + the request timeout); what is
   * owed then was never sent. Other modes: end_ns. */
  uint64_t hard_end_ns;
  conn *conns;
  uint32_t nconns, busy_n;
  conn **heap;
  uint32_t heap_n;
  sc_worker scw;
  uint64_t *win_user, *win_order;
  size_t nwins, cap_wins;
  ld_stats st;
  tl_acc tl;                /* the timeline interval this thread is in */
  uint64_t tl_k;            /* its number */
  _Atomic uint64_t tl_next; /* every interval before it handed over; UINT64_MAX: done */
  uint64_t cpu0_ns, wall_end_ns;
  char rbuf[LD_READ_BYTES];
  pthread_t thread;
};

/* One run's state: ld_run sets it up and tears it down. */
static struct {
  const ld_config *cfg;
  const sc_scenario *sc;
  int read_body;
  size_t req_cap;
  uint64_t t0_ns, warm_end_ns, end_ns;
  _Atomic int go;       /* release: t0/warm_end/end are set before it */
  _Atomic int stop;     /* a signal: stop sending now */
  _Atomic int sold_out; /* flash crowd: some thread saw a sold-out answer */
  _Atomic uint64_t connected;
  _Atomic uint64_t connect_failures; /* before the start: a dead URL fails fast */
  _Atomic uint64_t connect_refused;
  _Atomic uint32_t finished;
  uint64_t tl_ns, nrows;
  uint64_t tl_lead_ns; /* row 0 would begin this long before t0: rows end at the warm-up's
                          end (kept from t0, not as a time: the clock may be younger) */
  pthread_mutex_t tl_mu; /* the global slots, rows and row_done */
  tl_gslot *tlg;
  ld_row *rows;
  uint8_t *row_done;
  worker *W;
  uint32_t NW;
  llhttp_settings_t settings;
  uint8_t no_body[SC_KINDS_MAX]; /* templates whose answers have no body (HEAD) */
  /* the run's requests numbered so far (sc_next), on a cache line of its
   * own: every thread takes a number for every request */
  struct {
    _Alignas(64) _Atomic uint64_t n;
  } seq;
} R;

static uint64_t now_ns(void) { return uv_hrtime(); }

static uint64_t thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* ---- stats ------------------------------------------------------------------------ */

void ld_stats_init(ld_stats *s) {
  memset(s, 0, sizeof(*s));
  hist_init(&s->lat);
  hist_init(&s->lat_unc);
  for (int i = 0; i < OUT_COUNT; i++)
    hist_init(&s->out_lat[i]);
  for (int i = 0; i < SC_KINDS_MAX; i++)
    hist_init(&s->kind_lat[i]);
  hist_init(&s->burst);
  hist_init(&s->burst_own);
  hist_init(&s->lag);
}

/* Count n of code in a table of LD_CODES; 0, or -1 when it is full. */
static int count_in(int64_t *codes, uint64_t *counts, uint64_t *used, int64_t code, uint64_t n) {
  for (uint64_t i = 0; i < *used; i++)
    if (codes[i] == code) {
      counts[i] += n;
      return 0;
    }
  if (*used == LD_CODES) return -1;
  codes[*used] = code;
  counts[(*used)++] = n;
  return 0;
}

void ld_count_code(ld_stats *s, int64_t code, uint64_t n) {
  if (count_in(s->code, s->code_n, &s->ncodes, code, n) != 0) s->code_other += n;
}

void ld_stats_merge(ld_stats *d, const ld_stats *s) {
  hist_merge(&d->lat, &s->lat);
  hist_merge(&d->lat_unc, &s->lat_unc);
  for (int i = 0; i < OUT_COUNT; i++)
    hist_merge(&d->out_lat[i], &s->out_lat[i]);
  for (int i = 0; i < SC_KINDS_MAX; i++)
    hist_merge(&d->kind_lat[i], &s->kind_lat[i]);
  hist_merge(&d->burst, &s->burst);
  hist_merge(&d->burst_own, &s->burst_own);
  hist_merge(&d->lag, &s->lag);
  for (int i = 0; i < 600; i++)
    d->status[i] += s->status[i];
  for (uint64_t i = 0; i < s->ncodes; i++)
    ld_count_code(d, s->code[i], s->code_n[i]);
  for (int i = 0; i < OUT_COUNT; i++)
    d->out_n[i] += s->out_n[i];
  for (int i = 0; i < 600; i++)
    d->bad_status[i] += s->bad_status[i];
  for (uint64_t i = 0; i < s->bad_ncodes; i++)
    count_in(d->bad_code, d->bad_code_n, &d->bad_ncodes, s->bad_code[i], s->bad_code_n[i]);
  for (int i = 0; i < CAUSE_COUNT; i++) {
    d->late[i] += s->late[i];
    d->unsent[i] += s->unsent[i];
    if (s->late_max_ns[i] > d->late_max_ns[i]) d->late_max_ns[i] = s->late_max_ns[i];
  }
#define ADD(f) d->f += s->f
  ADD(code_other);
  ADD(unexpected);
  ADD(no_code);
  ADD(sent);
  ADD(e_connect);
  ADD(e_read);
  ADD(e_write);
  ADD(e_timeout);
  ADD(e_parse);
  ADD(server_closed);
  ADD(late_idle_peer);
  ADD(ans_after_end);
  ADD(e_connect_measured);
  ADD(created);
  ADD(paid);
  ADD(unknown_buy);
  ADD(unknown_pay);
  ADD(soldout_seen);
  ADD(wrong_user);
  ADD(wins_dropped);
  ADD(pay_dropped);
  ADD(minted);
  ADD(mint_ns);
  ADD(cpu_ns);
  ADD(burst_sent);
#undef ADD
#define MAXF(f)                                                                                    \
  do {                                                                                             \
    if (s->f > d->f) d->f = s->f;                                                                  \
  } while (0)
#define MINF(f)                                                                                    \
  do {                                                                                             \
    if (s->f != 0 && (d->f == 0 || s->f < d->f)) d->f = s->f;                                      \
  } while (0)
  MAXF(last_won_ns);
  MAXF(last_ans_ns);
  MAXF(last_sent_ns);
  MINF(first_ans_ns);
  MAXF(burst_last_ns);
  MINF(first_won_ns);
  MINF(first_soldout_ns);
#undef MAXF
#undef MINF
}

/* ---- the timeline ----------------------------------------------------------------- */

static void tl_clear(tl_acc *a) {
  hist_init(&a->h);
  a->sent = a->lost = a->late = a->in_flight = 0;
  memset(a->out_n, 0, sizeof(a->out_n));
}

/* Write row k from acc. Caller holds tl_mu. */
static void tl_write_row(uint64_t k, const tl_acc *a, int partial) {
  ld_row *r = &R.rows[k];
  memset(r, 0, sizeof(*r));
  r->index = (uint32_t)k;
  uint64_t from = k * R.tl_ns; /* from t0 - lead */
  r->t_ns = from > R.tl_lead_ns ? from - R.tl_lead_ns : 0;
  r->end_ns = from + R.tl_ns - R.tl_lead_ns;
  r->warmup = R.t0_ns + r->t_ns < R.warm_end_ns;
  r->partial = (uint8_t)partial;
  if (a != NULL) {
    r->sent = a->sent;
    r->lost = a->lost;
    r->late = a->late;
    r->in_flight = a->in_flight;
    memcpy(r->out_n, a->out_n, sizeof(r->out_n));
    r->p50_ns = hist_percentile(&a->h, 50);
    r->p99_ns = hist_percentile(&a->h, 99);
    r->max_ns = hist_max(&a->h);
  }
  R.row_done[k] = 1;
}

/* Merge a thread's interval k (a NULL: nothing happened in it) into the
 * global slot. Caller holds tl_mu. */
static void tl_handover(uint64_t k, const tl_acc *a, uint64_t busy) {
  if (k >= R.nrows) return;
  if (R.row_done[k]) {
    /* finished without this thread (it was stuck): counts only */
    ld_row *r = &R.rows[k];
    if (a != NULL) {
      r->sent += a->sent;
      r->lost += a->lost;
      r->late += a->late;
      for (int i = 0; i < OUT_COUNT; i++)
        r->out_n[i] += a->out_n[i];
    }
    r->partial = 1;
    return;
  }
  tl_gslot *g = &R.tlg[k % LD_TL_SLOTS];
  if (!g->used || g->k != k) {
    /* the slot's interval is LD_TL_SLOTS behind: finish it with what it has */
    if (g->used) tl_write_row(g->k, &g->acc, 1);
    tl_clear(&g->acc);
    g->used = 1;
    g->k = k;
  }
  if (a != NULL) {
    hist_merge(&g->acc.h, &a->h);
    g->acc.sent += a->sent;
    g->acc.lost += a->lost;
    g->acc.late += a->late;
    for (int i = 0; i < OUT_COUNT; i++)
      g->acc.out_n[i] += a->out_n[i];
  }
  g->acc.in_flight += busy;
}

/* Hand over every interval before k. */
static void tl_advance(worker *w, uint64_t k) {
  pthread_mutex_lock(&R.tl_mu);
  tl_handover(w->tl_k, &w->tl, w->busy_n);
  for (uint64_t j = w->tl_k + 1; j < k && j < R.nrows; j++)
    tl_handover(j, NULL, w->busy_n);
  pthread_mutex_unlock(&R.tl_mu);
  tl_clear(&w->tl);
  w->tl_k = k;
  /* release: pairs with tl_collect's acquire, so the hand-over is visible */
  atomic_store_explicit(&w->tl_next, k, memory_order_release);
}

/* The timeline interval now falls in, after handing over older ones. */
static tl_acc *tl_at(worker *w, uint64_t now) {
  uint64_t k = now > R.t0_ns ? (now - R.t0_ns + R.tl_lead_ns) / R.tl_ns : 0;
  if (k >= R.nrows) k = R.nrows - 1;
  if (k > w->tl_k) tl_advance(w, k);
  return &w->tl;
}

/* This thread is done: hand over what it has. */
static void tl_finish_worker(worker *w) {
  pthread_mutex_lock(&R.tl_mu);
  tl_handover(w->tl_k, &w->tl, 0);
  pthread_mutex_unlock(&R.tl_mu);
  tl_clear(&w->tl);
  atomic_store_explicit(&w->tl_next, UINT64_MAX, memory_order_release);
}

/* Finish the rows every thread has handed over (all of them when final),
 * in order from *done, and report each. Runs on the caller's thread. */
static void tl_collect(uint64_t *done, int final) {
  uint64_t upto = UINT64_MAX;
  for (uint32_t i = 0; i < R.NW; i++) {
    /* acquire: pairs with tl_advance's release */
    uint64_t n = atomic_load_explicit(&R.W[i].tl_next, memory_order_acquire);
    if (n < upto) upto = n;
  }
  if (final || upto > R.nrows) {
    /* the last row with anything in it */
    uint64_t last = 0;
    for (uint32_t i = 0; i < R.NW; i++)
      if (R.W[i].tl_k + 1 > last) last = R.W[i].tl_k + 1;
    if (final || upto == UINT64_MAX) upto = last;
    if (upto > R.nrows) upto = R.nrows;
  }
  while (*done < upto) {
    uint64_t k = *done;
    pthread_mutex_lock(&R.tl_mu);
    if (!R.row_done[k]) {
      tl_gslot *g = &R.tlg[k % LD_TL_SLOTS];
      if (g->used && g->k == k) {
        tl_write_row(k, &g->acc, 0);
        g->used = 0;
      } else {
        tl_write_row(k, NULL, 0);
      }
    }
    pthread_mutex_unlock(&R.tl_mu);
    if (R.cfg->on_row) R.cfg->on_row(&R.rows[k], R.cfg->row_arg);
    (*done)++;
  }
}

uint64_t ld_rows_needed(const ld_config *cfg) {
  /* the window, then sends owed to it for up to a timeout, then their answers */
  double span_s = cfg->warmup_s + cfg->duration_s + 2.0 * (double)cfg->timeout_ms / 1000.0 + 1.0;
  uint64_t tl_ns = (cfg->interval_ms ? cfg->interval_ms : 1000) * NS_PER_MS;
  double rows = span_s * 1e9 / (double)tl_ns + 1.0;
  if ((uint64_t)(cfg->warmup_s * 1e9) % tl_ns != 0) rows += 1.0; /* a short first row */
  return rows > (double)UINT64_MAX / 2 ? UINT64_MAX / 2 : (uint64_t)rows;
}

/* ---- the pacer: a min-heap of idle connections by next send time ---------------------- */

static void heap_set(worker *w, uint32_t i, conn *c) {
  w->heap[i] = c;
  c->heap_pos = i;
}

static void heap_up(worker *w, uint32_t i) {
  conn *c = w->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (w->heap[p]->next_ns <= c->next_ns) break;
    heap_set(w, i, w->heap[p]);
    i = p;
  }
  heap_set(w, i, c);
}

static void heap_down(worker *w, uint32_t i) {
  conn *c = w->heap[i];
  for (;;) {
    uint32_t l = 2 * i + 1, m = i;
    uint64_t best = c->next_ns;
    if (l < w->heap_n && w->heap[l]->next_ns < best) m = l, best = w->heap[l]->next_ns;
    if (l + 1 < w->heap_n && w->heap[l + 1]->next_ns < best) m = l + 1;
    if (m == i) break;
    heap_set(w, i, w->heap[m]);
    i = m;
  }
  heap_set(w, i, c);
}

static void heap_remove(worker *w, conn *c) {
  uint32_t i = c->heap_pos;
  if (i == NO_POS) return;
  assert(i < w->heap_n && w->heap[i] == c);
  uint32_t last = --w->heap_n;
  if (i != last) {
    conn *m = w->heap[last];
    heap_set(w, i, m);
    heap_down(w, i);
    heap_up(w, m->heap_pos);
  }
  c->heap_pos = NO_POS;
}

static void pacer_arm(worker *w, uint64_t at_ns) {
  struct itimerspec its;
  memset(&its, 0, sizeof(its));
  its.it_value.tv_sec = (time_t)(at_ns / NS_PER_S);
  its.it_value.tv_nsec = (long)(at_ns % NS_PER_S);
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  /* uv_hrtime is CLOCK_MONOTONIC, so its values are this clock's absolute times */
  int rc = timerfd_settime(w->tfd, TFD_TIMER_ABSTIME, &its, NULL);
  assert(rc == 0);
  (void)rc;
  w->armed_ns = at_ns;
}

static void heap_push(worker *w, conn *c) {
  assert(c->heap_pos == NO_POS && w->heap_n < w->nconns);
  w->heap[w->heap_n] = c;
  c->heap_pos = w->heap_n++;
  heap_up(w, c->heap_pos);
  if (w->armed_ns == 0 || c->next_ns < w->armed_ns) pacer_arm(w, c->next_ns);
}

/* ---- connections ------------------------------------------------------------------ */

static void conn_connect(conn *c);
static void on_write(uv_write_t *req, int status);
static void conn_close(conn *c);
static void schedule(conn *c);
static void check_finish(worker *w);

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)hint;
  conn *c = h->data;
  /* one buffer per thread: a read is parsed before the loop reads again */
  *buf = uv_buf_init(c->w->rbuf, sizeof(c->w->rbuf));
}

/* A request whose answer never came: it may or may not have happened. */
static void lose_request(conn *c) {
  if (!c->busy) return;
  worker *w = c->w;
  int role = R.sc->req[c->call.kind].role;
  if (role == ROLE_BUY)
    w->st.unknown_buy++;
  else if (role == ROLE_PAY)
    w->st.unknown_pay++;
  if (w->started) tl_at(w, now_ns())->lost++;
  c->busy = 0;
  w->busy_n--;
}

static int in_window(uint64_t t) { return t >= R.warm_end_ns && t < R.end_ns; }

/* Whether now is in the measured window, on w's thread: before w started,
 * never (and the window's bounds may still be being written). */
static int now_in_window(const worker *w) { return w->started && in_window(now_ns()); }

/* A failure on c counts against the run only when the request it lost was
 * measured (warm-up's losses are warm-up's), or, with none in flight, when
 * it happens inside the measured window. */
static int measured(const conn *c) { return c->busy ? c->counted : now_in_window(c->w); }

/* Send c's next request (the prepared one, if any), meant for intended_ns;
 * cause says why it may be late. */
static void send_req(conn *c, uint64_t intended_ns, int counted, int cause) {
  worker *w = c->w;
  assert(c->state == C_READY && !c->busy);
  if (!c->prepared) {
    sc_next(&w->scw, &c->call);
    c->wlen = sc_format(&w->scw, &c->call, c->wbuf, R.req_cap);
  }
  c->prepared = 0;
  c->intended_ns = intended_ns;
  c->counted = (uint8_t)counted;
  c->status = 0;
  c->body_len = 0;
  c->truncated = 0;
  c->sent_ns = now_ns();
  /* the interval this send opens, if any, is handed over before it counts
   * as in flight: it was not at the end of the one before (rows said one
   * too many) */
  tl_acc *tl = tl_at(w, c->sent_ns);
  c->busy = 1;
  w->busy_n++;
  tl->sent++;
  if (counted) {
    w->st.sent++;
    if (c->sent_ns > w->st.last_sent_ns) w->st.last_sent_ns = c->sent_ns;
  }
  if (R.cfg->mode == LD_OPEN && c->sent_ns > intended_ns + LD_LATE_NS) {
    uint64_t late = c->sent_ns - intended_ns;
    tl->late++;
    if (counted) {
      w->st.late[cause]++;
      /* another connection is parked until its own next send */
      if (cause == CAUSE_SERVER && w->heap_n > 0) w->st.late_idle_peer++;
      if (late > w->st.late_max_ns[cause]) w->st.late_max_ns[cause] = late;
    }
  }
  if (c->wlen == 0) {
    /* a token could not be signed: checked at start-up, so not expected */
    if (measured(c)) w->st.e_write++;
    conn_close(c);
    return;
  }
  uv_buf_t b = uv_buf_init(c->wbuf, (unsigned)c->wlen);
  int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (n == (int)c->wlen) return;
  if (n < 0 && n != UV_EAGAIN) {
    if (measured(c)) w->st.e_write++;
    conn_close(c);
    return;
  }
  if (n < 0) n = 0;
  b = uv_buf_init(c->wbuf + n, (unsigned)(c->wlen - (size_t)n));
  c->writing = 1;
  if (uv_write(&c->write_req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) {
    c->writing = 0;
    if (measured(c)) w->st.e_write++;
    conn_close(c);
  }
}

static void on_write(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  if (status < 0 && status != UV_ECANCELED && c->state == C_READY) {
    if (measured(c)) c->w->st.e_write++;
    conn_close(c);
  }
}

static void on_response(conn *c) {
  worker *w = c->w;
  ld_stats *st = &w->st;
  const sc_scenario *sc = R.sc;
  uint64_t now = now_ns();
  uint64_t start = c->intended_ns < c->sent_ns ? c->intended_ns : c->sent_ns;
  uint64_t lat = now > start ? now - start : 0;
  uint64_t unc = now > c->sent_ns ? now - c->sent_ns : 0;
  c->answered = 1;
  /* Answered past --timeout-ms: lost, as the sweep, which looks only
   * every few ms, would have had it. */
  if (now - c->sent_ns > R.cfg->timeout_ms * NS_PER_MS) {
    st->e_timeout += c->counted;
    conn_close(c);
    return;
  }
  sc_answer a;
  sc_classify(sc, &c->call, c->status, c->body, c->body_len, c->truncated, &a);
  int role = sc->req[c->call.kind].role;

  tl_acc *tl = tl_at(w, now);
  hist_record(&tl->h, lat);
  tl->out_n[a.outcome]++;
  if (c->counted) {
    hist_record(&st->lat, lat);
    hist_record(&st->lat_unc, unc);
    hist_record(&st->out_lat[a.outcome], lat);
    hist_record(&st->kind_lat[c->call.kind], lat);
    st->out_n[a.outcome]++;
    if (st->first_ans_ns == 0) st->first_ans_ns = now;
    st->last_ans_ns = now;
    if (now > w->end_ns) st->ans_after_end++; /* the window's end, or a Ctrl-C's */
    st->status[a.status >= 100 && a.status <= 599 ? a.status : 0]++;
    if (a.has_code)
      ld_count_code(st, a.code, 1);
    else if (R.read_body)
      st->no_code++;
    if (!sc->expected[a.outcome]) {
      st->unexpected++;
      st->bad_status[a.status >= 100 && a.status <= 599 ? a.status : 0]++;
      if (a.has_code) count_in(st->bad_code, st->bad_code_n, &st->bad_ncodes, a.code, 1);
    }
  }
  if (c->burst) {
    hist_record(&st->burst, lat);
    hist_record(&st->burst_own, unc);
    if (now > st->burst_last_ns) st->burst_last_ns = now;
    c->burst = 0;
  }
  if (role == ROLE_BUY && a.outcome == OUT_WON && (!sc->spike_api || a.status == 201)) {
    st->created++;
    if (st->first_won_ns == 0) st->first_won_ns = now;
    st->last_won_ns = now;
    if (sc->spike_api && (a.user != c->call.user || a.id == 0)) st->wrong_user++;
    if (w->cap_wins > 0) {
      if (w->nwins < w->cap_wins) {
        w->win_user[w->nwins] = c->call.user;
        w->win_order[w->nwins++] = a.id;
      } else {
        st->wins_dropped++;
      }
    }
  }
  if (role == ROLE_PAY && a.outcome == OUT_WON) st->paid++;
  if (a.outcome == OUT_SOLD_OUT) {
    st->soldout_seen++;
    if (st->first_soldout_ns == 0) st->first_soldout_ns = now;
    /* relaxed: a hint to stop buying; the run's end does not depend on it */
    atomic_store_explicit(&R.sold_out, 1, memory_order_relaxed);
  }
  sc_answered(&w->scw, &c->call, &a);
  c->busy = 0;
  w->busy_n--;
  int shedding = c->status >= 500 || c->status == 429;
  if (!shedding) c->backoff_ms = 0; /* a shedding answer keeps the back-off growing */
  if (!c->keep) {
    /* The server's own way of working, not a failure: open the next
     * connection at once (on_closed), and charge its wait to the server.
     * Unless it was shedding (a 5xx or 429 with the close): the server is
     * up and full, so back off as from a refused connect (up to 1 s),
     * rather than storm it with connects (spiked past --max-conns answers
     * each new one 503 and closes it). */
    c->closed_after_answer = (uint8_t)!shedding;
    c->refused = (uint8_t)shedding;
    conn_close(c);
    return;
  }
  c->ready_cause = CAUSE_SERVER;
  schedule(c);
}

/* Returning 1 tells llhttp the message has no body, whatever its
 * Content-Length says. */
static int on_headers_complete(llhttp_t *p) {
  conn *c = p->data;
  /* An interim answer (100 Continue to an Expect: 100-continue, 103 Early
   * Hints) has no body and comes before the final one, which is the answer
   * (RFC 9110 15.2). 101 is final: it switches protocols, and no request
   * here asks for that. */
  if (p->status_code >= 100 && p->status_code <= 199 && p->status_code != 101) {
    c->interim = 1;
    return 1;
  }
  c->status = p->status_code;
  /* the answer to a HEAD has its GET's headers and no body (RFC 9110 9.3.2) */
  return R.no_body[c->call.kind];
}

static int on_body(llhttp_t *p, const char *at, size_t len) {
  conn *c = p->data;
  if (!R.read_body) return 0;
  if (c->body_len + len > sizeof(c->body)) {
    c->truncated = 1;
    return 0;
  }
  memcpy(c->body + c->body_len, at, len);
  c->body_len += len;
  return 0;
}

static int on_message_complete(llhttp_t *p) {
  conn *c = p->data;
  if (!c->busy || c->msg_done) c->bad = 1; /* an answer nobody asked for */
  if (c->interim) {
    c->interim = 0;
    return 0;
  }
  c->msg_done = 1;
  c->keep = (uint8_t)llhttp_should_keep_alive(p);
  return 0;
}

/* The server refuses connections: one it ended before it carried any
 * answer (spiked past --max-refusals closes them unanswered), or one it
 * answered 503 or 429 before any request was sent (spiked past --max-conns,
 * under --max-refusals). A refused connect in all but name: re-opened at
 * once it is refused at once, a storm of connects (69,334 in 3 s at 8
 * connections, 4 refused), so it backs off (conn_close, c->refused). */
static void refused_connect(worker *w, conn *c) {
  w->st.e_connect++;
  if (now_in_window(w)) w->st.e_connect_measured++;
  /* relaxed: a count the main thread reads after join() */
  atomic_fetch_add_explicit(&R.connect_refused, 1, memory_order_relaxed);
  c->refused = 1;
  conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  worker *w = c->w;
  if (nread == 0) return;
  if (nread > 0) {
    llhttp_errno_t err = llhttp_execute(&c->parser, buf->base, (size_t)nread);
    if (err == HPE_OK && c->bad && !c->busy && !c->answered &&
        (c->status == 503 || c->status == 429)) {
      refused_connect(w, c);
      return;
    }
    if (err != HPE_OK || c->bad) {
      if (measured(c)) w->st.e_parse++;
      conn_close(c);
      return;
    }
  } else {
    /* the end of an answer that runs to EOF (no Content-Length) */
    if (nread == UV_EOF && c->busy && !c->msg_done) llhttp_finish(&c->parser);
    if (!c->msg_done) {
      /* closed unanswered right after it opened: the server refuses it */
      int refused = !c->answered && now_ns() - c->open_ns < LD_REFUSED_WITHIN_MS * NS_PER_MS;
      if (c->busy) {
        w->st.e_read += measured(c);
      } else if (refused) {
        refused_connect(w, c);
        return;
      } else {
        /* An idle connection the server ended (its idle timeout, after
         * an answer or on one never used): its way of working, not a
         * failure, so it is re-opened at once and the wait charged to
         * it, as after a Connection: close (it backed off 10 ms and was
         * put down to the server being down). */
        w->st.server_closed++;
        c->closed_after_answer = 1;
      }
      /* one the server ended with our request unanswered: refused too
       * when it was right after the connect */
      c->refused = (uint8_t)refused;
      conn_close(c);
      return;
    }
    c->keep = 0;
  }
  if (c->msg_done) {
    c->msg_done = 0;
    on_response(c);
  }
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  worker *w = c->w;
  if (status == UV_ECANCELED || c->state != C_CONNECTING) return;
  int after_close = c->after_close;
  c->after_close = 0;
  if (status < 0) {
    w->st.e_connect++;
    if (now_in_window(w)) w->st.e_connect_measured++;
    /* relaxed: counts the main thread polls */
    atomic_fetch_add_explicit(&R.connect_failures, 1, memory_order_relaxed);
    if (status == UV_ECONNREFUSED)
      atomic_fetch_add_explicit(&R.connect_refused, 1, memory_order_relaxed);
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  llhttp_init(&c->parser, HTTP_RESPONSE, &R.settings);
  c->parser.data = c;
  c->msg_done = c->bad = c->interim = c->answered = 0;
  c->status = 0; /* not the last connection's: an unsolicited 1xx leaves it unset */
  c->open_ns = now_ns();
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    w->st.e_connect++;
    conn_close(c);
    return;
  }
  c->state = C_READY;
  if (!c->ever_connected) {
    c->ever_connected = 1;
    /* relaxed: a count the main thread polls; go (release/acquire) orders the rest */
    atomic_fetch_add_explicit(&R.connected, 1, memory_order_relaxed);
  }
  if (!after_close) c->up_ns = now_ns();
  if (w->started) {
    if (R.cfg->mode == LD_FLASH && c->burst) c->burst = 0; /* too late for the burst */
    c->ready_cause = after_close ? CAUSE_SERVER : CAUSE_DOWN;
    schedule(c);
  }
}

static void conn_connect(conn *c) {
  worker *w = c->w;
  assert(c->state == C_CLOSED);
  int rc = uv_tcp_init(&w->loop, &c->tcp);
  if (rc != 0) {
    w->st.e_connect++;
    c->after_close = 0;
    c->reconnect_ns = now_ns() + 100 * NS_PER_MS;
    return;
  }
  c->tcp.data = c;
  c->connect_req.data = c;
  c->write_req.data = c;
  c->state = C_CONNECTING;
  rc = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&R.cfg->addr, on_connect);
  if (rc != 0) {
    w->st.e_connect++;
    conn_close(c);
  }
}

static void on_closed(uv_handle_t *h) {
  conn *c = h->data;
  worker *w = c->w;
  c->state = C_CLOSED;
  c->writing = 0;
  int refused = c->refused;
  c->refused = 0;
  if (c->closed_after_answer) { /* no back-off, no wait for the sweep */
    c->closed_after_answer = 0; /* a connect that fails from here backs off as usual */
    c->backoff_ms = 0;
    c->reconnect_ns = 0;
    if (!c->done && !w->stopping && (!w->started || now_ns() < w->hard_end_ns)) {
      c->after_close = 1;
      conn_connect(c);
    }
    return;
  }
  c->after_close = 0;
  /* A server that is down may be back any moment; one that closes
   * connections unanswered is up and full, and is asked less often. */
  uint32_t max_ms = refused ? LD_REFUSED_BACKOFF_MAX_MS : LD_BACKOFF_MAX_MS;
  c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 10;
  if (c->backoff_ms > max_ms) c->backoff_ms = max_ms;
  c->reconnect_ns = now_ns() + c->backoff_ms * NS_PER_MS;
}

static void conn_close(conn *c) {
  if (c->state == C_CLOSED || c->state == C_CLOSING) return;
  worker *w = c->w;
  lose_request(c);
  heap_remove(w, c);
  c->state = C_CLOSING;
  uv_close((uv_handle_t *)&c->tcp, on_closed);
  if (w->started && !w->stopping) check_finish(w);
}

/* ---- the schedule ------------------------------------------------------------------- */

/* Open loop: when c's send number k is due. The run's sends are numbered
 * over every connection (c's are gidx, gidx + conns, ...), send j due at
 * t0 + j / rate, each computed whole: adding a rounded interval instead
 * let one send too many fit before the end (rate 7 for 1 s scheduled 8). */
static uint64_t send_at(const conn *c, uint64_t k) {
  long double j = (long double)c->gidx + (long double)k * R.cfg->conns;
  return R.t0_ns + (uint64_t)(j * 1e9L / (long double)R.cfg->rate);
}

/* The number of c's first send due at t or later. */
static uint64_t first_from(const conn *c, uint64_t t) {
  if (t <= R.t0_ns) return 0;
  long double x =
      ((long double)(t - R.t0_ns) * (long double)R.cfg->rate / 1e9L - c->gidx) / R.cfg->conns;
  uint64_t k = x <= 0 ? 0 : (uint64_t)x;
  while (k > 0 && send_at(c, k - 1) >= t) k--;
  while (send_at(c, k) < t) k++;
  return k;
}

/* Open loop: c's sends still due in the measured window, never to be made
 * (c is done), counted as unsent for the reason given. */
static void owe_rest(conn *c, int cause) {
  worker *w = c->w;
  if (R.cfg->mode != LD_OPEN) return;
  uint64_t from = first_from(c, R.warm_end_ns), end = first_from(c, w->end_ns);
  if (from < c->k) from = c->k;
  if (end > from) w->st.unsent[cause] += end - from;
}

/* c sends no more. In open loop, what its schedule still owed before the
 * end was never sent, for the reason given. */
static void finish_conn(conn *c, int cause) {
  worker *w = c->w;
  if (c->done) return;
  c->done = 1;
  owe_rest(c, cause);
  check_finish(w);
}

/* c is idle: send its next request now, park it until its time, or end it. */
static void schedule(conn *c) {
  worker *w = c->w;
  if (!w->started || w->stopping || c->state != C_READY || c->busy || c->done) return;
  uint64_t now = now_ns();
  switch (R.cfg->mode) {
  case LD_OPEN:
    /* past the end only what the window's schedule still owes is sent */
    if (c->next_ns >= w->end_ns || now >= w->hard_end_ns) {
      finish_conn(c, c->ready_cause);
      return;
    }
    if (c->next_ns > now + LD_PACE_SLACK_NS) {
      heap_push(w, c);
      return;
    }
    {
      uint64_t t = c->next_ns;
      c->next_ns = send_at(c, ++c->k);
      /* a backlog built while the connection was down is the outage's,
       * not the server's, though each of it waits for the answer before */
      send_req(c, t, in_window(t), t < c->up_ns ? CAUSE_DOWN : c->ready_cause);
    }
    return;
  case LD_CLOSED:
    if (now >= w->end_ns) {
      finish_conn(c, CAUSE_SERVER);
      return;
    }
    if (now + LD_PACE_SLACK_NS < R.t0_ns) { /* the run has not begun: wait for t0 */
      c->next_ns = R.t0_ns;
      heap_push(w, c);
      return;
    }
    {
      uint64_t t = now > R.t0_ns ? now : R.t0_ns;
      send_req(c, t, in_window(t), CAUSE_SERVER);
    }
    return;
  case LD_FLASH:
    if (w->flash_pending) return; /* opened before t0: it fires with the crowd */
    /* relaxed: see on_response */
    if (now >= w->end_ns || atomic_load_explicit(&R.sold_out, memory_order_relaxed)) {
      finish_conn(c, CAUSE_SERVER);
      return;
    }
    send_req(c, now, 1, CAUSE_SERVER);
    return;
  }
}

static void on_pace(uv_poll_t *h, int status, int events) {
  worker *w = h->data;
  (void)events;
  uint64_t expirations;
  if (status < 0) return;
  while (read(w->tfd, &expirations, sizeof(expirations)) > 0) {
  }
  w->armed_ns = 0;
  uint64_t now = now_ns();
  if (w->flash_pending) {
    if (now + LD_PACE_SLACK_NS < R.t0_ns) {
      pacer_arm(w, R.t0_ns);
      return;
    }
    w->flash_pending = 0;
    /* the crowd: one request per open connection, all intended at t0 */
    for (uint32_t i = 0; i < w->nconns; i++) {
      conn *c = &w->conns[i];
      if (c->state != C_READY || c->busy) continue;
      c->burst = 1;
      w->st.burst_sent++;
      send_req(c, R.t0_ns, 1, CAUSE_GENERATOR);
    }
    uint64_t done = now_ns();
    hist_record(&w->st.lag, done > R.t0_ns ? done - R.t0_ns : 0);
    check_finish(w);
    return;
  }
  while (w->heap_n > 0 && w->heap[0]->next_ns <= now + LD_PACE_SLACK_NS) {
    conn *c = w->heap[0];
    heap_remove(w, c);
    if (R.cfg->mode == LD_CLOSED) { /* t0 came */
      schedule(c);
      continue;
    }
    uint64_t t = c->next_ns;
    if (t >= w->end_ns || now >= w->hard_end_ns) {
      finish_conn(c, CAUSE_GENERATOR);
      continue;
    }
    c->next_ns = send_at(c, ++c->k);
    uint64_t sent = now_ns();
    send_req(c, t, in_window(t), CAUSE_GENERATOR);
    if (in_window(t)) hist_record(&w->st.lag, sent > t ? sent - t : 0);
  }
  if (w->heap_n > 0) pacer_arm(w, w->heap[0]->next_ns);
}

/* ---- the worker's life --------------------------------------------------------------- */

static void worker_close_all(worker *w) {
  for (uint32_t i = 0; i < w->nconns; i++)
    conn_close(&w->conns[i]);
  pthread_mutex_lock(&w->wake_mu);
  w->wake_closed = 1;
  uv_close((uv_handle_t *)&w->wake, NULL);
  pthread_mutex_unlock(&w->wake_mu);
  uv_close((uv_handle_t *)&w->sweep, NULL);
  uv_close((uv_handle_t *)&w->pacer, NULL);
}

/* Why c, not done, is not sending: the cause its unsent sends are put
 * down to. */
static int cause_of(const conn *c) {
  return c->state == C_READY ? (c->heap_pos != NO_POS ? CAUSE_GENERATOR : CAUSE_SERVER)
         : c->after_close || c->closed_after_answer
             ? CAUSE_SERVER /* closing or re-opening after a close of the server's */
             : CAUSE_DOWN;
}

static void check_finish(worker *w) {
  if (!w->started || w->stopping) return;
  uint64_t now = now_ns();
  if (R.cfg->mode == LD_OPEN && now >= w->end_ns && now < w->hard_end_ns) {
    /* After the window: a connection that owes nothing is done; one that
     * is down (not one re-opening after a Connection: close) sends
     * nothing more, and what it owed was never sent; the others make what
     * they owe. */
    for (uint32_t i = 0; i < w->nconns; i++) {
      conn *c = &w->conns[i];
      int down = cause_of(c) == CAUSE_DOWN;
      if (!c->done && !c->busy && (c->next_ns >= w->end_ns || down)) {
        heap_remove(w, c);
        c->done = 1;
        owe_rest(c, CAUSE_DOWN); /* nothing, for one that owes nothing */
      }
    }
  }
  int over = now >= w->hard_end_ns;
  if (R.cfg->mode == LD_FLASH && atomic_load_explicit(&R.sold_out, memory_order_relaxed)) over = 1;
  if (!over) {
    /* every connection has had its last request answered */
    uint32_t done = 0;
    for (uint32_t i = 0; i < w->nconns; i++)
      done += w->conns[i].done;
    if (done < w->nconns) return;
  }
  if (w->busy_n > 0 || w->flash_pending) return;
  /* connections that are not done now were down (or waiting to be re-opened) */
  for (uint32_t i = 0; i < w->nconns; i++) {
    conn *c = &w->conns[i];
    if (!c->done) {
      int cause = cause_of(c);
      heap_remove(w, c);
      c->done = 1;
      owe_rest(c, cause);
    }
  }
  w->stopping = 1;
  w->wall_end_ns = now_ns();
  w->st.cpu_ns = thread_cpu_ns() - w->cpu0_ns;
  tl_finish_worker(w);
  worker_close_all(w);
}

static void on_sweep(uv_timer_t *t) {
  worker *w = t->data;
  uint64_t now = now_ns();
  uint64_t limit = R.cfg->timeout_ms * NS_PER_MS;
  for (uint32_t i = 0; i < w->nconns; i++) {
    conn *c = &w->conns[i];
    if (c->busy && now - c->sent_ns > limit) {
      w->st.e_timeout += c->counted;
      conn_close(c);
    } else if (c->state == C_CLOSED && !c->done && !w->stopping && now >= c->reconnect_ns &&
               (!w->started || now < w->end_ns)) {
      conn_connect(c);
    }
  }
  if (w->started && !w->stopping) tl_at(w, now); /* hand over an interval that has ended */
  check_finish(w);
}

static void start_run(worker *w) {
  w->started = 1;
  w->end_ns = R.end_ns;
  w->hard_end_ns = R.end_ns + (R.cfg->mode == LD_OPEN ? R.cfg->timeout_ms * NS_PER_MS : 0);
  w->cpu0_ns = thread_cpu_ns();
  for (uint32_t i = 0; i < w->nconns; i++) {
    conn *c = &w->conns[i];
    if (R.cfg->mode == LD_OPEN) c->next_ns = send_at(c, c->k = 0);
    c->ready_cause = CAUSE_GENERATOR;
  }
  if (R.cfg->mode == LD_FLASH) {
    w->flash_pending = 1;
    pacer_arm(w, R.t0_ns);
    return;
  }
  for (uint32_t i = 0; i < w->nconns; i++)
    schedule(&w->conns[i]);
}

static void on_wake(uv_async_t *a) {
  worker *w = a->data;
  /* acquire: pairs with ld_run's release store, so t0/end are visible */
  if (!w->started && atomic_load_explicit(&R.go, memory_order_acquire)) start_run(w);
  if (atomic_load_explicit(&R.stop, memory_order_acquire) && w->started && !w->stopping) {
    uint64_t now = now_ns();
    if (now < w->end_ns) w->end_ns = now;
    w->hard_end_ns = w->end_ns;
    w->flash_pending = 0;
    for (uint32_t i = 0; i < w->nconns; i++) {
      conn *c = &w->conns[i];
      if (!c->done) owe_rest(c, cause_of(c)); /* what was due before the stop */
      heap_remove(w, c);
      c->done = 1;
    }
    check_finish(w);
  }
}

static void *worker_main(void *arg) {
  worker *w = arg;
  /* the pacer wants its timerfd on time, not batched with its neighbours */
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  int rc = uv_loop_init(&w->loop);
  assert(rc == 0);
  w->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  assert(w->tfd >= 0);
  pthread_mutex_lock(&w->wake_mu);
  rc = uv_async_init(&w->loop, &w->wake, on_wake);
  assert(rc == 0);
  w->wake_ready = 1;
  pthread_mutex_unlock(&w->wake_mu);
  uv_timer_init(&w->loop, &w->sweep);
  uv_poll_init(&w->loop, &w->pacer, w->tfd);
  w->wake.data = w->sweep.data = w->pacer.data = w;
  uv_poll_start(&w->pacer, UV_READABLE, on_pace);
  /* often enough that a connection waits past --timeout-ms by a quarter of it at most */
  uint64_t sweep = R.cfg->timeout_ms / 4 < LD_SWEEP_MS ? R.cfg->timeout_ms / 4 : LD_SWEEP_MS;
  uv_timer_start(&w->sweep, on_sweep, sweep ? sweep : 1, sweep ? sweep : 1);
  /* tokens that fit the cache are signed now, not on the send path */
  if (R.sc->users > 0 && sc_worker_premint(&w->scw, R.sc->users) != 0)
    fprintf(stderr, "spikebench: thread %u: signing tokens ahead failed\n", w->id);
  /* the crowd's requests, tokens and all, are written before anyone connects */
  if (R.cfg->mode == LD_FLASH)
    for (uint32_t i = 0; i < w->nconns; i++) {
      conn *c = &w->conns[i];
      sc_next(&w->scw, &c->call);
      c->wlen = sc_format(&w->scw, &c->call, c->wbuf, R.req_cap);
      c->prepared = 1;
    }
  /* what signing costs on the send path, from here on */
  uint64_t minted_before = w->scw.have_mint ? w->scw.mint.minted : 0;
  uint64_t mint_ns_before = w->scw.have_mint ? w->scw.mint.mint_ns : 0;
  for (uint32_t i = 0; i < w->nconns; i++)
    conn_connect(&w->conns[i]);
  /* go may have been given before this loop ran */
  on_wake(&w->wake);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&w->loop);
  assert(rc == 0);
  (void)rc;
  close(w->tfd);
  if (!w->stopping) tl_finish_worker(w); /* never started: nothing to hand over */
  w->st.minted = w->scw.have_mint ? w->scw.mint.minted - minted_before : 0;
  w->st.mint_ns = w->scw.have_mint ? w->scw.mint.mint_ns - mint_ns_before : 0;
  w->st.pay_dropped = w->scw.pay_dropped;
  /* relaxed: join() orders everything after it */
  atomic_fetch_add_explicit(&R.finished, 1, memory_order_relaxed);
  return NULL;
}

static void wake_worker(worker *w) {
  pthread_mutex_lock(&w->wake_mu);
  if (w->wake_ready && !w->wake_closed) uv_async_send(&w->wake);
  pthread_mutex_unlock(&w->wake_mu);
}

static void signal_stop(void) {
  /* release: pairs with on_wake's acquire */
  atomic_store_explicit(&R.stop, 1, memory_order_release);
  for (uint32_t i = 0; i < R.NW; i++)
    wake_worker(&R.W[i]);
}

/* ---- the run ------------------------------------------------------------------------ */

static void free_run(conn *conns, conn **heaps, char *wbufs) {
  for (uint32_t i = 0; R.W != NULL && i < R.NW; i++) {
    free(R.W[i].win_user);
    free(R.W[i].win_order);
    sc_worker_free(&R.W[i].scw);
    pthread_mutex_destroy(&R.W[i].wake_mu);
  }
  free(R.W);
  free(conns);
  free(heaps);
  free(wbufs);
  free(R.tlg);
  free(R.row_done);
  R.W = NULL;
  R.tlg = NULL;
  R.row_done = NULL;
  pthread_mutex_destroy(&R.tl_mu);
}

int ld_run(const ld_config *cfg, ld_result *res) {
  assert(cfg->conns >= 1 && cfg->conns <= LD_CONNS_MAX);
  assert(cfg->threads >= 1 && cfg->threads <= LD_THREADS_MAX && cfg->threads <= cfg->conns);
  assert(cfg->mode != LD_OPEN || cfg->rate > 0);
  memset(&R, 0, sizeof(R));
  R.cfg = cfg;
  R.sc = cfg->sc;
  R.read_body = cfg->sc->spike_api;
  for (int k = 0; k < cfg->sc->nreq; k++) {
    R.read_body |= cfg->sc->req[k].wants_code;
    R.no_body[k] = strcmp(cfg->sc->req[k].method, "HEAD") == 0;
  }
  pthread_mutex_init(&R.tl_mu, NULL);
  size_t longest = sc_max_request(cfg->sc);
  if (longest == 0 || longest > LD_REQ_MAX) {
    fprintf(stderr, "spikebench: a request does not fit %d bytes (or its token failed)\n",
            LD_REQ_MAX);
    pthread_mutex_destroy(&R.tl_mu);
    return -1;
  }
  R.req_cap = (longest + 64) & ~(size_t)63;
  R.tl_ns = (cfg->interval_ms ? cfg->interval_ms : 1000) * NS_PER_MS;
  R.nrows = ld_rows_needed(cfg);
  assert(R.nrows <= LD_ROWS_MAX);

  R.NW = cfg->threads;
  R.W = calloc(R.NW, sizeof(worker));
  conn *conns = calloc(cfg->conns, sizeof(conn));
  conn **heaps = calloc(cfg->conns, sizeof(conn *));
  char *wbufs = malloc(cfg->conns * R.req_cap);
  R.tlg = calloc(LD_TL_SLOTS, sizeof(tl_gslot));
  R.rows = calloc(R.nrows, sizeof(ld_row));
  R.row_done = calloc(R.nrows, 1);
  if (R.W == NULL || conns == NULL || heaps == NULL || wbufs == NULL || R.tlg == NULL ||
      R.rows == NULL || R.row_done == NULL) {
    fprintf(stderr, "spikebench: out of memory for %" PRIu64 " connections\n", cfg->conns);
    free(R.rows);
    free_run(conns, heaps, wbufs);
    return -1;
  }
  uint64_t per = cfg->conns / R.NW, extra = cfg->conns % R.NW, at = 0;
  for (uint32_t i = 0; i < R.NW; i++) {
    worker *w = &R.W[i];
    w->id = i;
    w->nconns = (uint32_t)(per + (i < extra));
    w->conns = conns + at;
    w->heap = heaps + at;
    pthread_mutex_init(&w->wake_mu, NULL);
    ld_stats_init(&w->st);
    tl_clear(&w->tl);
    for (uint32_t j = 0; j < w->nconns; j++) {
      conn *c = &w->conns[j];
      c->w = w;
      c->gidx = (uint32_t)(at + j);
      c->heap_pos = NO_POS;
      c->state = C_CLOSED;
      c->wbuf = wbufs + (at + j) * R.req_cap;
    }
    if (sc_worker_init(&w->scw, cfg->sc, i, cfg->mint_slots, &R.seq.n) != 0) {
      fprintf(stderr, "spikebench: cannot set up thread %u (memory, or a token)\n", i);
      free(R.rows);
      free_run(conns, heaps, wbufs);
      return -1;
    }
    if (cfg->verify_cap > 0) {
      w->cap_wins = cfg->verify_cap / R.NW + 1;
      w->win_user = malloc(w->cap_wins * sizeof(uint64_t));
      w->win_order = malloc(w->cap_wins * sizeof(uint64_t));
      if (w->win_user == NULL || w->win_order == NULL) {
        fprintf(stderr, "spikebench: out of memory for --verify-cap\n");
        free(R.rows);
        free_run(conns, heaps, wbufs);
        return -1;
      }
    }
    at += w->nconns;
  }
  llhttp_settings_init(&R.settings);
  R.settings.on_headers_complete = on_headers_complete;
  R.settings.on_body = on_body;
  R.settings.on_message_complete = on_message_complete;

  /* workers leave the signals to the caller's thread */
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  uint32_t started = 0;
  for (; started < R.NW; started++)
    if (pthread_create(&R.W[started].thread, NULL, worker_main, &R.W[started]) != 0) break;
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  int failed_start = started < R.NW;
  if (failed_start) fprintf(stderr, "spikebench: cannot start thread %u\n", started);

  /* every connection open first, so the schedule starts from a known state */
  uint64_t deadline = now_ns() + LD_CONNECT_WAIT_MS * NS_PER_MS;
  while (!failed_start && atomic_load_explicit(&R.connected, memory_order_relaxed) < cfg->conns &&
         now_ns() < deadline && !*cfg->interrupted) {
    /* nobody answers at all (three refusals per connection): say so now */
    if (atomic_load_explicit(&R.connected, memory_order_relaxed) == 0 &&
        atomic_load_explicit(&R.connect_failures, memory_order_relaxed) >= 3 * cfg->conns)
      break;
    usleep(2000);
  }
  uint64_t connected = atomic_load_explicit(&R.connected, memory_order_relaxed);
  if (connected < cfg->conns && connected > 0)
    fprintf(stderr,
            "spikebench: only %" PRIu64 " of %" PRIu64 " connections opened; running with those\n",
            connected, cfg->conns);

  uint64_t t0 = now_ns() + (cfg->mode == LD_FLASH ? 20 : 5) * NS_PER_MS;
  if (cfg->start_at_ms > 0) {
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    uint64_t real_ms = (uint64_t)rt.tv_sec * 1000 + (uint64_t)rt.tv_nsec / 1000000;
    uint64_t at_mono =
        now_ns() + (cfg->start_at_ms > real_ms ? cfg->start_at_ms - real_ms : 0) * NS_PER_MS;
    if (at_mono > t0) t0 = at_mono;
  }
  R.t0_ns = t0;
  R.warm_end_ns = t0 + (uint64_t)(cfg->warmup_s * 1e9);
  R.end_ns = R.warm_end_ns + (uint64_t)(cfg->duration_s * 1e9);
  if (cfg->mode == LD_FLASH) R.warm_end_ns = t0;
  /* a row never holds both warm-up and window: they are cut at the
   * warm-up's end, and the first is short where need be */
  R.tl_lead_ns = (R.tl_ns - (R.warm_end_ns - t0) % R.tl_ns) % R.tl_ns;
  /* a signal during the connects is an interrupted run too */
  if (*cfg->interrupted) res->stop_ns = t0;
  if (connected == 0 || *cfg->interrupted || failed_start)
    atomic_store_explicit(&R.stop, 1, memory_order_release);
  /* release: pairs with the workers' acquire in on_wake */
  atomic_store_explicit(&R.go, 1, memory_order_release);
  for (uint32_t i = 0; i < started; i++)
    wake_worker(&R.W[i]);

  uint64_t rows_done = 0;
  while (atomic_load_explicit(&R.finished, memory_order_relaxed) < started) {
    usleep(5000);
    if (*cfg->interrupted && !atomic_load_explicit(&R.stop, memory_order_relaxed)) {
      res->stop_ns = now_ns();
      signal_stop();
    }
    tl_collect(&rows_done, 0);
  }
  for (uint32_t i = 0; i < started; i++)
    pthread_join(R.W[i].thread, NULL);
  tl_collect(&rows_done, 1);

  ld_stats_init(&res->total);
  size_t nwins = 0;
  for (uint32_t i = 0; i < R.NW; i++) {
    ld_stats_merge(&res->total, &R.W[i].st);
    nwins += R.W[i].nwins;
    uint64_t wall = R.W[i].wall_end_ns > t0 ? R.W[i].wall_end_ns - t0 : 0;
    double share = wall > 0 ? (double)R.W[i].st.cpu_ns / (double)wall : 0.0;
    if (share > res->cpu_max) res->cpu_max = share;
  }
  if (nwins > 0) {
    res->win_user = malloc(nwins * sizeof(uint64_t));
    res->win_order = malloc(nwins * sizeof(uint64_t));
    if (res->win_user != NULL && res->win_order != NULL) {
      for (uint32_t i = 0; i < R.NW; i++) {
        memcpy(res->win_user + res->nwins, R.W[i].win_user, R.W[i].nwins * sizeof(uint64_t));
        memcpy(res->win_order + res->nwins, R.W[i].win_order, R.W[i].nwins * sizeof(uint64_t));
        res->nwins += R.W[i].nwins;
      }
    } else {
      res->total.wins_dropped += nwins;
    }
  }
  res->rows = R.rows;
  res->nrows = rows_done;
  res->connected = connected;
  res->connect_refused = atomic_load_explicit(&R.connect_refused, memory_order_relaxed);
  res->t0_ns = t0;
  res->warm_end_ns = R.warm_end_ns;
  res->end_ns = R.end_ns;
  const ld_stats *t = &res->total;
  /* the window ends at its end, or at a Ctrl-C */
  uint64_t wend = res->stop_ns != 0 && res->stop_ns < R.end_ns ? res->stop_ns : R.end_ns;
  if (cfg->mode == LD_FLASH) {
    uint64_t last = t->burst_last_ns > t->last_won_ns ? t->burst_last_ns : t->last_won_ns;
    res->window_s = last > t0 ? (double)(last - t0) / 1e9 : 0.0;
  } else {
    res->window_s = wend > R.warm_end_ns ? (double)(wend - R.warm_end_ns) / 1e9 : 0.0;
  }
  /* Answers that came after the window (or after a Ctrl-C): the rate is
   * over the span they came in, first to last, so that a server keeping up
   * with a long latency is not charged for it (measured from the window's
   * start, a 300 ms server at 100/s read as 87/s). */
  double span = t->last_ans_ns > t->first_ans_ns ? (double)(t->last_ans_ns - t->first_ans_ns) / 1e9 : 0;
  /* Open loop with every send made on time (none owed, none late for want
   * of an answer) and the answers after the window a tail (at most 1 % of
   * them): the server kept up, and the latency of its last answers is not
   * a lower rate (one 300 ms answer at the end of 1 s at 100/s read as
   * 77.8/s, sent and answered). Without the tail's bound a server answering
   * 20/s of a 100/s schedule, with connections enough that no send waited,
   * read as 100/s. */
  uint64_t owed = 0, answered = 0;
  for (int i = 0; i < CAUSE_COUNT; i++)
    owed += t->unsent[i];
  for (int i = 0; i < OUT_COUNT; i++)
    answered += t->out_n[i];
  if (cfg->mode == LD_OPEN && owed == 0 && t->late[CAUSE_SERVER] == 0 &&
      t->late[CAUSE_DOWN] == 0 && t->ans_after_end <= 1 + answered / 100)
    span = t->last_sent_ns > R.warm_end_ns ? (double)(t->last_sent_ns - R.warm_end_ns) / 1e9 : 0;
  res->answered_s = cfg->mode != LD_FLASH && t->last_ans_ns > wend && span > res->window_s
                        ? span
                        : res->window_s;
  R.rows = NULL; /* the result owns them now */
  free_run(conns, heaps, wbufs);
  return failed_start ? -1 : 0;
}

void ld_result_free(ld_result *res) {
  free(res->rows);
  free(res->win_user);
  free(res->win_order);
  res->rows = NULL;
  res->win_user = res->win_order = NULL;
}

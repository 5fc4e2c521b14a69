/*
 * load.h -- spikebench's load engine: keep-alive connections on libuv
 * loops, paced open loop, closed loop or a flash crowd, every answer
 * timed and sorted by outcome, and a timeline of the run.
 *
 * Open loop (LD_OPEN): every connection keeps its own schedule of intended
 * send times, rate/C apart, and latency ("corrected") runs from the
 * intended time, not from when the request could finally go out; the
 * "uncorrected" latency from the actual send is kept beside it. A server
 * that stalls for 200 ms is charged for every request that should have
 * been sent during the stall, which a closed-loop tool (LD_CLOSED, wrk)
 * hides by not sending ("coordinated omission"). The trade-off is wrk2's:
 * one request in flight per connection, so an overloaded server shows up
 * as growing latency and as sends that were late or never made, and each
 * late send is put down to its cause: the connection waited for its
 * previous answer (the server was behind), the pacer fired late while the
 * connection was idle (the load generator was behind), or the connection
 * was being re-opened (the server was down or refusing connections).
 *
 * A flash crowd (LD_FLASH) opens every connection first, writes one
 * request on each at the same instant t0 (formatted before it, tokens
 * included), then keeps buying on each connection until some answer says
 * sold out.
 *
 * The timeline: answers are put in intervals of interval_ms from t0 by the
 * time they arrive, sends by the time they were written. Each thread keeps
 * the interval it is in and hands it over when its clock passes the end;
 * the main thread finishes an interval's row once every thread has handed
 * it over, so the per-interval percentiles are exact merges.
 *
 * Bounds: LD_CONNS_MAX connections, LD_THREADS_MAX threads, LD_ROWS_MAX
 * timeline rows (the caller checks interval_ms against the run's length),
 * one request buffer per connection sized to the scenario's longest.
 */
#ifndef SPIKE_BENCH_LOAD_H
#define SPIKE_BENCH_LOAD_H

#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>

#include "hist.h"
#include "scenario.h"

#define LD_CONNS_MAX 60000 /* one loopback address has ~28k ephemeral ports by default */
#define LD_THREADS_MAX 64
#define LD_ROWS_MAX 200000
#define LD_REQ_MAX 16384      /* the longest request a scenario may format */
#define LD_CODES 32           /* distinct envelope codes counted; the rest as "other" */
#define LD_LATE_NS 1000000ull /* a send this much behind its schedule is late */

enum ld_mode { LD_OPEN, LD_CLOSED, LD_FLASH };

/* Why a send was late, or never made. */
enum ld_cause { CAUSE_SERVER, CAUSE_GENERATOR, CAUSE_DOWN, CAUSE_COUNT };
extern const char *const ld_cause_names[CAUSE_COUNT];

typedef struct ld_stats {
  hist lat;                    /* corrected: from the intended send time */
  hist lat_unc;                /* uncorrected: from when it was written */
  hist out_lat[OUT_COUNT];     /* corrected, by outcome */
  hist kind_lat[SC_KINDS_MAX]; /* corrected, by request template */
  hist burst;                  /* flash crowd: the first request of each connection, from t0 */
  hist burst_own;              /* the same, from when each was written */
  hist lag;                    /* how late the pacer wrote an idle connection's request */
  uint64_t status[600];        /* measured answers by HTTP status; [0]: outside 100..599 */
  int64_t code[LD_CODES];
  uint64_t code_n[LD_CODES];
  uint64_t ncodes, code_other, no_code;
  uint64_t out_n[OUT_COUNT];  /* measured answers by outcome */
  uint64_t unexpected;        /* measured answers whose outcome the scenario does not expect */
  uint64_t bad_status[600];   /* those, by HTTP status */
  int64_t bad_code[LD_CODES]; /* and by code, where the body had one */
  uint64_t bad_code_n[LD_CODES];
  uint64_t bad_ncodes;
  uint64_t sent; /* measured sends */
  uint64_t late[CAUSE_COUNT], late_max_ns[CAUSE_COUNT];
  uint64_t unsent[CAUSE_COUNT]; /* what the schedule still owed at the end */
  /* late for the server while another connection of the thread stood idle:
   * each send is bound to its connection, so the wait was for one slow
   * answer on it, not for the server's capacity */
  uint64_t late_idle_peer;
  /* e_connect: connects that failed, and connections the server closed
   * before they carried any answer (it refuses them: spiked past
   * --max-refusals); server_closed: idle connections it closed after an
   * answer (its idle timeout), re-opened at once */
  uint64_t e_connect, e_read, e_write, e_timeout, e_parse, server_closed;
  uint64_t e_connect_measured; /* connects that failed inside the measured window */
  /* whole run, warmup included: what --verify compares with the server */
  uint64_t created, paid, unknown_buy, unknown_pay, soldout_seen, wrong_user;
  uint64_t wins_dropped, pay_dropped;
  uint64_t first_won_ns, last_won_ns, burst_last_ns, first_soldout_ns;
  uint64_t first_ans_ns, last_ans_ns; /* the first and last measured answers' arrivals */
  uint64_t last_sent_ns;              /* the last measured send's write */
  uint64_t ans_after_end;             /* measured answers that came after the window's end */
  uint64_t burst_sent;      /* flash crowd: connections that fired at t0 */
  uint64_t minted, mint_ns; /* tokens signed during the run, and the time it took */
  uint64_t cpu_ns;          /* the thread's CPU time from t0 to its end */
} ld_stats;

typedef struct ld_row {
  uint64_t t_ns, end_ns; /* its span, from t0: the first row is short where the
                            warm-up is not a whole number of intervals */
  uint32_t index;        /* interval number */
  uint8_t warmup;        /* it is in the warm-up (rows are cut at its end) */
  uint8_t partial; /* finished before every thread handed it over (a thread was stuck) */
  uint64_t sent, lost, late;
  uint64_t out_n[OUT_COUNT];
  uint64_t in_flight;              /* requests unanswered at its end, over all threads */
  uint64_t p50_ns, p99_ns, max_ns; /* corrected latency of the answers that arrived in it */
} ld_row;

typedef struct ld_config {
  struct sockaddr_storage addr;
  uint64_t conns;
  uint32_t threads;
  int mode;
  double rate; /* open loop: requests per second over all connections */
  double duration_s, warmup_s;
  uint64_t timeout_ms;
  uint64_t interval_ms; /* timeline interval */
  uint64_t start_at_ms; /* unix ms at which t0 falls (several machines); 0: when connected */
  uint64_t verify_cap;  /* won buys remembered for --verify, over all threads; 0: none */
  size_t mint_slots;    /* token cache per thread */
  const sc_scenario *sc;
  volatile sig_atomic_t *interrupted;           /* set by the caller's signal handler */
  void (*on_row)(const ld_row *row, void *arg); /* each finished row, on the caller's thread */
  void *row_arg;
} ld_config;

typedef struct ld_result {
  ld_stats total;
  ld_row *rows; /* nrows finished rows, in order */
  size_t nrows;
  uint64_t connected; /* connections that opened at least once */
  uint64_t connect_refused; /* of e_connect: ECONNREFUSED, or closed before any answer */
  uint64_t t0_ns, warm_end_ns, end_ns;
  uint64_t stop_ns;               /* when a signal stopped the run; 0: never */
  double window_s;                /* the measured window (flash: t0 to the last answer of note) */
  double answered_s;              /* the window, or from the first measured answer to the
                                     last when those came after it: what the answer rate is
                                     over (a slow server's answers to the window's sends come
                                     after it) */
  uint64_t *win_user, *win_order; /* won buys, for --verify */
  size_t nwins;
  double cpu_max; /* the busiest thread's CPU share of the run, 0..1 */
} ld_result;

/* The number of timeline rows cfg needs (the caller refuses more than
 * LD_ROWS_MAX). */
uint64_t ld_rows_needed(const ld_config *cfg);

/*
 * Run the load cfg describes to its end (or the signal), then fill res
 * (zeroed by the caller). 0, or -1 when it could not start (out of memory,
 * a thread, a token), with the reason on stderr. A server that cannot be
 * reached is not an error here: res->connected says so.
 */
int ld_run(const ld_config *cfg, ld_result *res);

void ld_result_free(ld_result *res);

/* Add src's counts and histograms to dst. */
void ld_stats_merge(ld_stats *dst, const ld_stats *src);
void ld_stats_init(ld_stats *s);

/* Count one answer's code in s (LD_CODES distinct, then "other"). */
void ld_count_code(ld_stats *s, int64_t code, uint64_t n);

#endif /* SPIKE_BENCH_LOAD_H */

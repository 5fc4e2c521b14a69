/*
 * scenario.h -- what spikebench sends and what the answers mean.
 *
 * A scenario is a few request templates and a rule for picking the next
 * one. A template is a method, a target and a body with placeholders,
 * extra header lines, and rules that map an answer (HTTP status, and the
 * JSON body's "code" where a rule names one) onto one of five outcomes:
 *
 *   won       the answer the request is for (a unit bought, a read served)
 *   sold_out  the stock is gone
 *   limited   the buyer already holds the per-user limit
 *   shed      the server refused the load (503, 429)
 *   error     anything else: an answer the scenario does not expect
 *
 * The built-in scenarios are spike's routes written as templates
 * (reserve, flash-crowd, mixed, get); a template file (sc_template_parse)
 * points the same run at any other service. Placeholders, replaced per
 * request (in the target, the body and header values): {user} the buyer's id, {event} --event,
 * {seq} the request's number in this run (1, 2, ... over all threads), {run} this run's id (16 hex
 * digits, different every run), and, in the built-in pay only, {order}. Any other brace is literal
 * text, so JSON bodies need no escaping.
 *
 * Identity: with a mint (mint.h) every request carries
 * "Authorization: Bearer <token of {user}>".
 *
 * Threads: a scenario is read-only once built; each load thread keeps its
 * own sc_worker (user sequence, pay queue, token cache). The requests'
 * numbers ({seq}, and the event each goes to) come from one counter that
 * every sc_worker of a run shares, so they follow the order in which the
 * threads take them, over all threads.
 */
#ifndef SPIKE_BENCH_SCENARIO_H
#define SPIKE_BENCH_SCENARIO_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "mint.h"

#define SC_METHOD_BYTES 16
#define SC_TARGET_BYTES 600 /* the URL's prefix and the template's path */
#define SC_BODY_BYTES 1024  /* a template's body, placeholders unexpanded */
#define SC_HEADER_LINES_MAX 16
#define SC_HEADERS_BYTES 2048 /* all extra header lines of a request, CRLFs included */
#define SC_RULES_MAX 16
#define SC_KINDS_MAX 3 /* mixed: reserve, read, pay */
#define SC_TEMPLATE_BYTES 8192
#define SC_NAME_BYTES 32
#define SC_HOST_BYTES 256
#define SC_PAYQ 65536         /* orders waiting to be paid, per thread */
#define SC_ANY_CODE INT64_MIN /* a rule that matches whatever the code */

enum sc_outcome { OUT_WON, OUT_SOLD_OUT, OUT_LIMITED, OUT_SHED, OUT_ERROR, OUT_COUNT };
extern const char *const sc_outcome_names[OUT_COUNT];

enum sc_id { SC_RESERVE, SC_FLASH, SC_MIXED, SC_GET, SC_TEMPLATE, SC_COUNT };
extern const char *const sc_names[SC_COUNT];

/* What a won answer means for the run's books (and for --verify). */
enum sc_role { ROLE_BUY, ROLE_READ, ROLE_PAY, ROLE_GET };

typedef struct sc_rule {
  uint16_t lo, hi; /* status range: 409..409, or 200..299 for "2xx" */
  int64_t code;    /* the body's "code", or SC_ANY_CODE */
  uint8_t outcome;
} sc_rule;

typedef struct sc_request {
  char name[SC_NAME_BYTES]; /* reserve, read, pay, get, or the template's */
  uint8_t role;
  char method[SC_METHOD_BYTES];
  char target[SC_TARGET_BYTES]; /* placeholders stored as bytes 1..5 */
  char body[SC_BODY_BYTES];
  size_t body_len;
  int has_body;
  char headers[SC_HEADERS_BYTES]; /* the template's own "Name: value\r\n" lines */
  size_t headers_len;
  sc_rule rules[SC_RULES_MAX];
  int nrules;
  int wants_code; /* some rule names a code: read the body's "code" */
} sc_request;

typedef struct sc_scenario {
  int id;
  sc_request req[SC_KINDS_MAX];
  int nreq;
  uint8_t expected[OUT_COUNT]; /* outcomes that are a normal answer in this run */
  int spike_api;               /* spike's own routes: envelope ids are checked */
  uint64_t event, events, users, user_base; /* events: event .. event+events-1 in turn */
  double pay_share, read_share;
  uint64_t seed;
  uint32_t nworkers;
  char run_id[17];
  char host[SC_HOST_BYTES];       /* the Host header */
  char headers[SC_HEADERS_BYTES]; /* --header lines */
  size_t headers_len;
  int host_given, ctype_given; /* --header set Host / Content-Type */
  const char *jwt_secret;      /* NULL: no tokens */
  int64_t jwt_exp_s;
} sc_scenario;

/* One request in flight: which template and the values it was sent with. */
typedef struct sc_call {
  uint8_t kind; /* index into scenario.req */
  uint64_t user, order, seq, event;
} sc_call;

/* What one answer said. */
typedef struct sc_answer {
  int status;
  int has_code; /* the body was JSON with a numeric "code" */
  int64_t code;
  uint64_t id, user; /* spike's data.id and data.user_id; 0 when absent */
  uint8_t outcome;
} sc_answer;

/* One load thread's scenario state. */
typedef struct sc_worker {
  const sc_scenario *sc;
  uint32_t id;
  uint64_t user_seq, rng;
  _Atomic uint64_t *seq;            /* the run's requests numbered so far, shared by its threads */
  uint64_t *payq_order, *payq_user; /* SC_PAYQ each */
  uint32_t payq_head, payq_n;
  uint64_t pay_dropped; /* won buys not paid: the queue was full */
  mint mint;
  int have_mint;
} sc_worker;

/*
 * Build a built-in scenario (SC_RESERVE, SC_FLASH, SC_MIXED, SC_GET) for
 * the API under prefix (the URL's path; "" or "/shop"); get fetches
 * get_target as is. Fills req, expected and spike_api; the caller has set
 * event, users and the rest. 0, or -1 with err when a target does not fit.
 */
int sc_builtin(sc_scenario *sc, int id, const char *prefix, const char *get_target, char *err,
               size_t errcap);

/*
 * Parse a template (text[0..len), the format docs/benchmarks.md gives:
 * lines "method M", "path P", "body B", "header Name: value", "won S...",
 * "sold-out S...", "limited S...", "shed S...", "name N"; # comments) into
 * r, its target put under prefix. Statuses S are 201, 2xx or 409:30001
 * (status and the body's code). Without a won line, 2xx is won. 0, or -1
 * with err saying which line and why.
 */
int sc_template_parse(sc_request *r, const char *prefix, const char *text, size_t len, char *err,
                      size_t errcap);

/* Set sc up as a template scenario around r (copied). */
void sc_from_template(sc_scenario *sc, const sc_request *r);

/* The outcomes this run expects: won and sold_out always; limited when
 * users repeat (--users N); shed always (overload is an answer, an --slo
 * can bound it). Call once the scenario's users are set. */
void sc_set_expected(sc_scenario *sc);

/*
 * Append one "Name: value" header line (as --header gives it) to a header
 * block of cap bytes at buf, *len used; placeholders in it are expanded per
 * request like the body's. Names are HTTP tokens; values have no control
 * characters. Content-Length, Transfer-Encoding and Connection
 * are spikebench's own and refused; so is Authorization when jwt is set.
 * 0, or -1 with err.
 */
int sc_header_add(char *buf, size_t *len, size_t cap, const char *line, int jwt, char *err,
                  size_t errcap);

/* The --header lines with placeholders expanded for user ({seq} 0), into
 * out (NUL-terminated): their length, or 0 when they do not fit (or there
 * are none). */
size_t sc_headers(const sc_scenario *sc, uint64_t user, char *out, size_t cap);

/* A run id: 16 lower-case hex digits from the clock and the pid. */
void sc_run_id(char out[17]);

/* Set up a thread's state; seq is the run's request counter, shared by
 * every thread's sc_worker and zeroed by the caller before the run (it
 * must outlive them). 0, or -1 (out of memory, token signing). */
int sc_worker_init(sc_worker *w, const sc_scenario *sc, uint32_t id, size_t mint_slots,
                   _Atomic uint64_t *seq);
void sc_worker_free(sc_worker *w);

/* Sign, ahead of the run, the tokens of the next n users this thread will
 * buy for (they stay in its cache; n is cut to the cache's size). 0, or -1
 * when signing failed. */
int sc_worker_premint(sc_worker *w, uint64_t n);

/* Choose the next request and its values. Its seq is the next number of
 * the run, over all threads, and --events rotate by it: request k goes to
 * event + (k - 1) mod events. Safe to call from several threads at once
 * (each with its own w). */
void sc_next(sc_worker *w, sc_call *call);

/* Write call's request (head and body) into out[0..cap): its length, or 0
 * when it does not fit or its token could not be signed. */
size_t sc_format(sc_worker *w, const sc_call *call, char *out, size_t cap);

/* The longest request this scenario can produce (largest ids, longest
 * token), so every connection's buffer is sized once; 0 when signing failed. */
size_t sc_max_request(const sc_scenario *sc);

/* Read an answer: status and body into a (code, ids when spike_api) and
 * classify it by call's template. */
void sc_classify(const sc_scenario *sc, const sc_call *call, int status, const char *body,
                 size_t body_len, int body_truncated, sc_answer *a);

/* The outcome the rules of r give status and code (has_code 0: no code). */
int sc_outcome_of(const sc_request *r, int status, int has_code, int64_t code);

/* Bookkeeping after an answer: mixed queues a share of won buys for pay. */
void sc_answered(sc_worker *w, const sc_call *call, const sc_answer *a);

#endif /* SPIKE_BENCH_SCENARIO_H */

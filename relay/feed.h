/*
 * feed.h -- a client of spiked's change feed (GET /api/v1/feed), shared by
 * the programs that follow it: relay/spike-relay (into RabbitMQ) and
 * examples/feed_sqlite (into SQLite).
 *
 * One blocking GET per page over a fresh connection to 127.0.0.1-style
 * IPv4 addresses, the answer read into one static buffer of FEED_RESP_MAX
 * bytes and tokenised into one static array of FEED_TOKENS_MAX jsmn tokens.
 * So: one page at a time per process, not thread-safe, and a page stays
 * valid only until the next feed_fetch. A page of 1000 changes is well under
 * 1 MiB; an answer larger than the buffer is FEED_BAD, never cut silently.
 *
 * feed_fetch applies the checks every consumer owes the feed (docs/api.md,
 * "Resuming"): the store id must be the cursor's, and so must the epoch of
 * the cursor's record (a copy of the store that took other writes has the
 * same id), a refused cursor is an answer to stop on (never skipped), and
 * the page must start right after the cursor with seqs one apart.
 */
#ifndef SPIKE_FEED_H
#define SPIKE_FEED_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#define FEED_RESP_MAX (4u << 20)
#define FEED_TOKENS_MAX 65536
#define FEED_STORE_ID_MAX 32 /* 16 hex digits today, room to spare */
#define FEED_EPOCH_MAX 16    /* 16 hex digits */
#define FEED_LIMIT_MAX 1000  /* the feed's own cap on limit */
#define FEED_WAIT_MS_MAX 30000

typedef struct feed_conn {
  char host[64]; /* IPv4 dotted quad */
  int port;
  const char *token;           /* Bearer token (feed or admin), or NULL */
  unsigned wait_ms;            /* the long-poll; the socket waits this + 10 s */
  volatile sig_atomic_t *stop; /* when set and a signal interrupts a read: FEED_STOPPED */
} feed_conn;

/* What feed_fetch found. Every value but FEED_OK leaves a sentence in the
 * page's why[]. */
enum {
  FEED_OK = 0,
  FEED_UNREACHABLE = -1, /* no answer, a cut answer, a 5xx or a 429: try again later */
  FEED_STOPPED = -2,     /* *stop was set while waiting */
  FEED_OTHER_STORE = -3, /* the store id is not the cursor's: another store */
  FEED_AHEAD = -4,       /* the cursor is ahead of the head: an older copy of the store */
  FEED_DROPPED = -5,     /* the changes after the cursor are gone (--feed-retain) */
  FEED_DENIED = -6,      /* 401 or 403: the token */
  FEED_BAD = -7,         /* anything else: not a feed page */
  FEED_OUT_OF_LINE = -8, /* a page whose seqs do not follow the cursor one by one */
  FEED_FORKED = -9,      /* the cursor's record is another one here: a copy that took other writes */
};

typedef struct feed_page {
  int status; /* HTTP status, 0 without an answer */
  char store_id[FEED_STORE_ID_MAX + 1];
  uint64_t head, first; /* X-Spike-Feed-Head and -First */
  const char *body;     /* the JSON, in the static buffer */
  int changes;          /* token index of data.changes */
  int count;            /* how many changes */
  uint64_t last_seq;    /* the last change's seq (after when count is 0) */
  char last_epoch[FEED_EPOCH_MAX + 1]; /* its epoch (data.nextEpoch): keep it beside
                                          last_seq; "" when the store keeps none */
  /* A store restored from a backup: the store the backup was of and the
   * last seq of its feed the backup holds (X-Spike-Restored-*); "" and 0
   * otherwise. When it is the cursor's store and the cursor is at most
   * restored_seq, the page is this store's continuation of the cursor's
   * history, served as FEED_OK under the new store_id. */
  char restored_from[FEED_STORE_ID_MAX + 1];
  uint64_t restored_seq;
  char why[320];
} feed_page;

/* One change of a page, pointing into it. */
typedef struct feed_change {
  int tok; /* its object's token, for feed_member */
  uint64_t seq, at;
  char type[32];     /* "order.paid", ... */
  char event_id[24]; /* the order's event_id, or the event's id; "" if neither */
  const char *json;  /* the change's JSON object as received */
  size_t json_len;
} feed_change;

/* A whole number in lo..hi written as plain digits (strtoull alone takes a
 * leading space, a sign and trailing junk too), into *out. 0 or -1. */
int feed_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* "HOST:PORT" into c (token, wait_ms and stop untouched). 0 or -1. */
int feed_conn_parse(feed_conn *c, const char *host_port);

/* GET the page after `after` (limit 1..FEED_LIMIT_MAX). store_id is the
 * cursor's store ("" for none yet): an answer from another store is
 * FEED_OTHER_STORE. epoch is the cursor's record's (the last_epoch kept with
 * it; "" for none): this store's record after being another is
 * FEED_FORKED. On FEED_OK every change's seq is after + 1, after + 2, ...
 * (else FEED_OUT_OF_LINE). */
int feed_fetch(const feed_conn *c, const char *store_id, uint64_t after, const char *epoch,
               unsigned limit, feed_page *p);

/* The i-th change of the last page fetched, in order: call with *tok = 0
 * first; it advances *tok. 0, or -1 past the end. */
int feed_next(const feed_page *p, int *tok, feed_change *ch);

/* Reading a change's JSON further (feed_sqlite): the value token of key in
 * the object at t, or -1; a token's text into out (truncated to cap, "" for
 * -1); a token as an unsigned number (0 for -1). */
int feed_member(const feed_page *p, int t, const char *key);
void feed_text(const feed_page *p, int t, char *out, size_t cap);
uint64_t feed_num(const feed_page *p, int t);

/* Sleep ms, cut short when *stop becomes set (NULL: never). */
void feed_sleep_ms(unsigned ms, volatile sig_atomic_t *stop);

#endif

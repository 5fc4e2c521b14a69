/*
 * relay.c -- spike-relay: one spiked's change feed into a RabbitMQ exchange,
 * every change at least once and in order.
 *
 * The loop is read, publish, confirm, then remember: a page of the feed
 * (long-polled) is published as persistent messages on a channel in
 * confirm mode, and only when the broker has confirmed every message of the
 * page is the cursor (store id, last seq) written to its file, with fsync
 * and rename. A crash of anything, anywhere, loses at most the page in
 * flight, which the next run (or the next connection) publishes again from
 * the cursor: duplicates, never gaps. One channel publishes in seq order,
 * and a page is published again only after the broker stopped taking the
 * first try, so the first copy of each change reaches a queue in seq order
 * - unless the broker nacks part of a page (a full queue with
 * reject-publish), which can take a later change of it and refuse an
 * earlier one; that page then goes again one change at a time, each after
 * the one before it was confirmed. Consumers drop the copies by message
 * id, "<store id>:<seq>".
 *
 * The trade-off is latency for simplicity: a page waits for all of its
 * confirms before the next is read, one fsync per page. With pages of up to
 * 1000 changes that keeps up with the feed's peak, and memory stays at the
 * feed client's two buffers plus librabbitmq's pool, released every page.
 *
 * It stops (and says why) rather than guess: a feed from another store, a
 * cursor ahead of the feed's head (an older copy of the store), changes the
 * feed no longer holds, a refused token or broker login, an exchange that
 * routed a change nowhere. spiked and the broker going away are waited out,
 * with backoff, for as long as it takes.
 */
#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "feed.h"

/* Exit statuses (docs/operations.md, "The feed into RabbitMQ"). */
enum {
  EXIT_DONE = 0,  /* --stop-at reached, or SIGTERM/SIGINT */
  EXIT_ERROR = 1, /* the cursor file, a broker or token refusal, a routing failure */
  EXIT_USAGE = 2,
  EXIT_STORE = 3,      /* the feed is another store's, or another history of it (a fork) */
  EXIT_CURSOR = 4,     /* the feed cannot continue the cursor (ahead of the head, or dropped) */
  EXIT_OUT_OF_LINE = 5 /* the feed sent seqs that do not follow the cursor */
};

#define HEARTBEAT_S 60
#define BACKOFF_MIN_MS 100
#define PROGRESS_EVERY_MS 10000

typedef struct opts {
  feed_conn feed;
  char amqp_host[256];
  int amqp_port;
  const char *user, *password, *vhost, *exchange, *exchange_type, *queue, *cursor_path;
  unsigned limit, confirm_timeout_ms, backoff_max_ms;
  uint64_t stop_at;
  uint64_t from; /* --from: where a new cursor starts; UINT64_MAX: not given */
} opts;

static volatile sig_atomic_t stopping;

/* ---- logs: one JSON object per line on stderr, like spiked's ---------------- */

static void logf_(const char *level, const char *extra, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(const char *level, const char *extra, const char *fmt, ...) {
  char msg[1024], esc[2100], ts[40];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  size_t j = 0;
  for (const char *s = msg; *s && j + 7 < sizeof(esc); s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\')
      esc[j++] = '\\', esc[j++] = (char)ch;
    else if (ch < 0x20)
      j += (size_t)snprintf(esc + j, sizeof(esc) - j, "\\u%04x", ch);
    else
      esc[j++] = (char)ch;
  }
  esc[j] = '\0';
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  struct tm tm;
  gmtime_r(&now.tv_sec, &tm);
  size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + n, sizeof(ts) - n, ".%03ldZ", now.tv_nsec / 1000000);
  fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"relay\",\"msg\":\"%s\"%s%s}\n", ts,
          level, esc, extra ? "," : "", extra ? extra : "");
}
#define LOG_INFO(...) logf_("info", NULL, __VA_ARGS__)
#define LOG_WARN(...) logf_("warn", NULL, __VA_ARGS__)
#define LOG_ERROR(...) logf_("error", NULL, __VA_ARGS__)

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the cursor: "<store id> <seq> <epoch>\n", replaced whole ------------------
 * (the epoch of the record at seq; a cursor written before epochs has none) */

typedef struct cursor {
  char store_id[FEED_STORE_ID_MAX + 1]; /* "" before the first change is confirmed */
  uint64_t seq;
  char epoch[FEED_EPOCH_MAX + 1]; /* "" when unknown */
} cursor;

/* A lock beside the cursor file, held for the process's life: two relays
 * on one cursor would each publish from it and store over the other. */
static int cursor_lock(const char *path) {
  char lock[4096];
  snprintf(lock, sizeof(lock), "%s.lock", path);
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    LOG_ERROR("cannot open %s: %s", lock, strerror(errno));
    return -1;
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    LOG_ERROR("another spike-relay holds %s (%s)", lock, strerror(errno));
    close(fd);
    return -1;
  }
  return fd; /* kept open: the lock lives as long as the process */
}

static int cursor_load(const char *path, cursor *c) {
  memset(c, 0, sizeof(*c));
  FILE *f = fopen(path, "re");
  if (f == NULL) {
    if (errno == ENOENT) return 0; /* a first run: from the feed's start */
    LOG_ERROR("cannot read the cursor %s: %s", path, strerror(errno));
    return -1;
  }
  char line[128], seq_s[32], extra;
  uint64_t seq = 0;
  int k = fgets(line, sizeof(line), f) != NULL
              ? sscanf(line, "%32s %31s %16s %c", c->store_id, seq_s, c->epoch, &extra)
              : 0;
  /* digits only, as the relay writes it ("-5" and a number past 2^64 were
   * read as huge seqs and misreported as a cursor ahead of the feed) */
  int ok = (k == 2 || k == 3) && feed_parse_u64(seq_s, 0, UINT64_MAX - 1, &seq) == 0 &&
           strspn(c->store_id, "0123456789abcdefABCDEF") == strlen(c->store_id) &&
           strspn(c->epoch, "0123456789abcdef") == strlen(c->epoch) &&
           (c->epoch[0] == '\0' || strlen(c->epoch) == FEED_EPOCH_MAX);
  fclose(f);
  if (!ok) {
    LOG_ERROR("the cursor %s is not '<store id> <seq> [<epoch>]': refusing to guess (remove it "
              "to start from the feed's beginning)",
              path);
    return -1;
  }
  c->seq = seq;
  return 0;
}

/* Write, fsync, rename over, fsync the directory: after this returns 0 the
 * cursor survives a crash of the process and of the machine. */
static int cursor_store(const char *path, const cursor *c) {
  char tmp[4096], dir[4096];
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  snprintf(dir, sizeof(dir), "%s", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) goto fail;
  char line[96];
  int n = snprintf(line, sizeof(line), "%s %" PRIu64 "%s%s\n", c->store_id, c->seq,
                   c->epoch[0] ? " " : "", c->epoch);
  if (write(fd, line, (size_t)n) != n || fsync(fd) != 0) {
    close(fd);
    goto fail;
  }
  if (close(fd) != 0 || rename(tmp, path) != 0) goto fail;
  int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || fsync(dfd) != 0) {
    if (dfd >= 0) close(dfd);
    goto fail;
  }
  close(dfd);
  return 0;
fail:
  LOG_ERROR("cannot store the cursor %s: %s", path, strerror(errno));
  return -1;
}

/* ---- the broker ------------------------------------------------------------ */

typedef struct broker {
  amqp_connection_state_t conn; /* NULL when not connected */
  uint64_t tag;                 /* the channel's last delivery tag */
  bool acked[FEED_LIMIT_MAX];   /* this page's confirms, by tag - first tag */
  char why[512];                /* what broke, for the log */
} broker;

#define BROKER_FATAL 2 /* broker_connect's "do not try again" */

/* The text of an RPC reply; returns BROKER_FATAL for what retrying cannot
 * cure (a refused login or vhost, an exchange or queue declared otherwise). */
static int reply_why(amqp_rpc_reply_t r, const char *what, char *out, size_t cap) {
  if (r.reply_type == AMQP_RESPONSE_NORMAL) return 0;
  if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    snprintf(out, cap, "%s: %s", what, amqp_error_string2(r.library_error));
    return -1;
  }
  if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
      (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD || r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)) {
    uint16_t code;
    amqp_bytes_t text;
    if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
      amqp_connection_close_t *m = r.reply.decoded;
      code = m->reply_code, text = m->reply_text;
    } else {
      amqp_channel_close_t *m = r.reply.decoded;
      code = m->reply_code, text = m->reply_text;
    }
    snprintf(out, cap, "%s: the broker said %u %.*s", what, code, (int)text.len,
             (const char *)text.bytes);
    return code == AMQP_ACCESS_REFUSED || code == AMQP_NOT_ALLOWED ||
                   code == AMQP_PRECONDITION_FAILED
               ? BROKER_FATAL
               : -1;
  }
  snprintf(out, cap, "%s: an unexpected answer from the broker", what);
  return -1;
}

static void broker_drop(broker *b, bool polite) {
  if (b->conn == NULL) return;
  if (polite) {
    amqp_channel_close(b->conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
  }
  amqp_destroy_connection(b->conn);
  b->conn = NULL;
}

/* Connect, log in, open channel 1 in confirm mode, declare the exchange
 * (durable) and, with --queue, a durable queue bound to all of it.
 * 0, -1 (try again later) or BROKER_FATAL; b->why says what failed. */
static int broker_connect(broker *b, const opts *o) {
  b->conn = amqp_new_connection();
  amqp_socket_t *s = b->conn ? amqp_tcp_socket_new(b->conn) : NULL;
  if (s == NULL) {
    snprintf(b->why, sizeof(b->why), "out of memory for a connection");
    broker_drop(b, false);
    return -1;
  }
  struct timeval tv = {5, 0};
  int rc = amqp_socket_open_noblock(s, o->amqp_host, o->amqp_port, &tv);
  if (rc != AMQP_STATUS_OK) {
    snprintf(b->why, sizeof(b->why), "cannot connect to the broker at %s:%d: %s", o->amqp_host,
             o->amqp_port, amqp_error_string2(rc));
    broker_drop(b, false);
    return -1;
  }
  /* a broker that stops reading must not hang a publish: the socket's
   * own timeout cuts it, and the connection is dropped and made again */
  struct timeval io = {(o->confirm_timeout_ms / 1000) + 1, 0};
  setsockopt(amqp_socket_get_sockfd(s), SOL_SOCKET, SO_SNDTIMEO, &io, sizeof(io));
  amqp_set_handshake_timeout(b->conn, &tv);
  amqp_set_rpc_timeout(b->conn, &tv);
  rc = reply_why(amqp_login(b->conn, o->vhost, 0, 131072, HEARTBEAT_S, AMQP_SASL_METHOD_PLAIN,
                            o->user, o->password),
                 "login", b->why, sizeof(b->why));
  if (rc == 0) {
    amqp_channel_open(b->conn, 1);
    rc = reply_why(amqp_get_rpc_reply(b->conn), "channel.open", b->why, sizeof(b->why));
  }
  if (rc == 0) {
    amqp_confirm_select(b->conn, 1);
    rc = reply_why(amqp_get_rpc_reply(b->conn), "confirm.select", b->why, sizeof(b->why));
  }
  if (rc == 0) {
    amqp_exchange_declare(b->conn, 1, amqp_cstring_bytes(o->exchange),
                          amqp_cstring_bytes(o->exchange_type), 0, 1, 0, 0, amqp_empty_table);
    rc = reply_why(amqp_get_rpc_reply(b->conn), "exchange.declare", b->why, sizeof(b->why));
  }
  if (rc == 0 && o->queue) {
    amqp_queue_declare(b->conn, 1, amqp_cstring_bytes(o->queue), 0, 1, 0, 0, amqp_empty_table);
    rc = reply_why(amqp_get_rpc_reply(b->conn), "queue.declare", b->why, sizeof(b->why));
    if (rc == 0) {
      amqp_queue_bind(b->conn, 1, amqp_cstring_bytes(o->queue), amqp_cstring_bytes(o->exchange),
                      amqp_cstring_bytes("#"), amqp_empty_table);
      rc = reply_why(amqp_get_rpc_reply(b->conn), "queue.bind", b->why, sizeof(b->why));
    }
  }
  if (rc != 0) {
    broker_drop(b, false);
    return rc;
  }
  b->tag = 0;
  return 0;
}

/* One frame the broker sent unasked. 0 on an ack or nack handled, 1 on a
 * return (unroutable), -1 when the connection or channel is gone. */
static int broker_frame(broker *b, const amqp_frame_t *f, uint64_t first_tag, unsigned *acked,
                        bool *nacked) {
  if (f->frame_type != AMQP_FRAME_METHOD) return 0; /* stray content of a return, read below */
  switch (f->payload.method.id) {
  case AMQP_BASIC_ACK_METHOD:
  case AMQP_BASIC_NACK_METHOD: {
    uint64_t tag;
    bool multiple;
    if (f->payload.method.id == AMQP_BASIC_ACK_METHOD) {
      const amqp_basic_ack_t *a = f->payload.method.decoded;
      tag = a->delivery_tag, multiple = a->multiple;
    } else {
      const amqp_basic_nack_t *a = f->payload.method.decoded;
      tag = a->delivery_tag, multiple = a->multiple;
      *nacked = true;
    }
    /* tags before this page's were settled with the page before; a tag
     * after the last published one would be the broker's mistake */
    if (tag > b->tag) {
      snprintf(b->why, sizeof(b->why), "the broker confirmed tag %" PRIu64 ", never published",
               tag);
      return -1;
    }
    for (uint64_t t = multiple ? first_tag : tag; t <= tag; t++)
      if (t >= first_tag && !b->acked[t - first_tag]) {
        b->acked[t - first_tag] = true;
        (*acked)++;
      }
    return 0;
  }
  case AMQP_BASIC_RETURN_METHOD: {
    const amqp_basic_return_t *r = f->payload.method.decoded;
    snprintf(b->why, sizeof(b->why),
             "the exchange routed a change nowhere (%u %.*s, routing key %.*s)", r->reply_code,
             (int)r->reply_text.len, (const char *)r->reply_text.bytes, (int)r->routing_key.len,
             (const char *)r->routing_key.bytes);
    amqp_message_t m;
    if (amqp_read_message(b->conn, f->channel, &m, 0).reply_type != AMQP_RESPONSE_NORMAL) return -1;
    amqp_destroy_message(&m);
    return 1;
  }
  case AMQP_CHANNEL_CLOSE_METHOD:
  case AMQP_CONNECTION_CLOSE_METHOD: {
    amqp_rpc_reply_t r = {.reply_type = AMQP_RESPONSE_SERVER_EXCEPTION, .reply = f->payload.method};
    reply_why(r, "the broker closed the connection", b->why, sizeof(b->why));
    return -1;
  }
  default: return 0;
  }
}

/* Between pages: let librabbitmq send and check heartbeats, and notice a
 * broker that closed the connection. 0, or -1 when it is gone. */
static int broker_pump(broker *b) {
  for (;;) {
    amqp_frame_t f;
    struct timeval zero = {0, 0};
    int rc = amqp_simple_wait_frame_noblock(b->conn, &f, &zero);
    if (rc == AMQP_STATUS_TIMEOUT) {
      amqp_maybe_release_buffers(b->conn);
      return 0;
    }
    if (rc != AMQP_STATUS_OK) {
      snprintf(b->why, sizeof(b->why), "the broker's connection: %s", amqp_error_string2(rc));
      return -1;
    }
    unsigned none = 0;
    bool nacked = false;
    if (broker_frame(b, &f, b->tag + 1, &none, &nacked) < 0) return -1;
  }
}

/* Publish a page and wait for every confirm. 0 when all were acked; -1
 * when the broker failed it (the page must go again, on a new connection);
 * PAGE_UNROUTED when a change was unroutable (b->why says which);
 * PAGE_NACKED when the broker refused some of it (a queue at its
 * x-max-length with reject-publish, say): it may have taken later changes
 * of the page, and the page must go again too. */
#define PAGE_UNROUTED 1
#define PAGE_NACKED 2
static int publish_page(broker *b, const opts *o, const feed_page *p) {
  assert(p->count > 0 && p->count <= FEED_LIMIT_MAX);
  uint64_t first_tag = b->tag + 1;
  memset(b->acked, 0, sizeof(b->acked[0]) * (size_t)p->count);
  feed_change ch;
  int t = 0;
  while (feed_next(p, &t, &ch) == 0) {
    char rkey[96], msg_id[64];
    snprintf(rkey, sizeof(rkey), "%s.%s", ch.type, ch.event_id[0] ? ch.event_id : "none");
    snprintf(msg_id, sizeof(msg_id), "%s:%" PRIu64, p->store_id, ch.seq);
    /* a restored store's messages also name the store it was restored
     * from and the seq up to which their histories are one */
    amqp_table_entry_t h[5] = {
        {.key = amqp_cstring_bytes("spike-store-id"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(p->store_id)}},
        {.key = amqp_cstring_bytes("spike-seq"),
         .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = (int64_t)ch.seq}},
        {.key = amqp_cstring_bytes("spike-event-id"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8, .value.bytes = amqp_cstring_bytes(ch.event_id)}},
        {.key = amqp_cstring_bytes("spike-restored-from"),
         .value = {.kind = AMQP_FIELD_KIND_UTF8,
                   .value.bytes = amqp_cstring_bytes(p->restored_from)}},
        {.key = amqp_cstring_bytes("spike-restored-seq"),
         .value = {.kind = AMQP_FIELD_KIND_I64, .value.i64 = (int64_t)p->restored_seq}},
    };
    amqp_basic_properties_t props = {
        ._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
                  AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
                  AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG,
        .content_type = amqp_cstring_bytes("application/json"),
        .delivery_mode = AMQP_DELIVERY_PERSISTENT,
        .message_id = amqp_cstring_bytes(msg_id),
        .type = amqp_cstring_bytes(ch.type),
        .timestamp = ch.at / 1000,
        .app_id = amqp_cstring_bytes("spike-relay"),
        .headers = {.num_entries = p->restored_from[0] ? 5 : 3, .entries = h},
    };
    amqp_bytes_t body = {.len = ch.json_len, .bytes = (void *)ch.json};
    int rc =
        amqp_basic_publish(b->conn, 1, amqp_cstring_bytes(o->exchange), amqp_cstring_bytes(rkey),
                           1 /* mandatory: unroutable comes back */, 0, &props, body);
    if (rc != AMQP_STATUS_OK) {
      snprintf(b->why, sizeof(b->why), "publishing seq %" PRIu64 ": %s", ch.seq,
               amqp_error_string2(rc));
      return -1;
    }
    b->tag++;
  }
  unsigned acked = 0;
  bool nacked = false, returned = false;
  char first_return[sizeof(b->why)];
  int64_t deadline = now_ms() + o->confirm_timeout_ms;
  while (acked < (unsigned)p->count) {
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      snprintf(b->why, sizeof(b->why), "%u of %d confirms in %u ms", acked, p->count,
               o->confirm_timeout_ms);
      return -1;
    }
    struct timeval tv = {left / 1000, (left % 1000) * 1000};
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(b->conn, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) continue;
    if (rc != AMQP_STATUS_OK) {
      snprintf(b->why, sizeof(b->why), "waiting for confirms: %s", amqp_error_string2(rc));
      return -1;
    }
    rc = broker_frame(b, &f, first_tag, &acked, &nacked);
    if (rc < 0) return -1;
    if (rc == 1 && !returned) { /* the first change routed nowhere is the one to name */
      returned = true;
      memcpy(first_return, b->why, sizeof(first_return));
    }
  }
  if (returned) {
    memcpy(b->why, first_return, sizeof(b->why));
    return PAGE_UNROUTED;
  }
  if (nacked) {
    snprintf(b->why, sizeof(b->why), "the broker refused (nacked) part of the page");
    return PAGE_NACKED;
  }
  amqp_maybe_release_buffers(b->conn);
  return 0;
}

/* ---- the command ----------------------------------------------------------- */

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static const char usage_text[] =
    "usage: spike-relay --feed HOST:PORT --cursor FILE [options]\n"
    "\n"
    "Follows one spiked's change feed and publishes every change to a RabbitMQ\n"
    "exchange: persistent messages, publisher confirms, the cursor stored only\n"
    "after the confirm. Every change arrives at least once, in order; the message\n"
    "id is '<store id>:<seq>', so consumers drop the repeats.\n"
    "\n"
    "  --feed HOST:PORT        spiked's address (IPv4)                        [required]\n"
    "  --feed-token T          the feed (or admin) token; env SPIKE_FEED_TOKEN\n"
    "  --cursor FILE           where the cursor lives ('<store id> <seq> <epoch>') [required]\n"
    "  --amqp HOST:PORT        the broker                        [127.0.0.1:5672]\n"
    "  --amqp-user U           env SPIKE_RELAY_AMQP_USER                        [guest]\n"
    "  --amqp-password P       env SPIKE_RELAY_AMQP_PASSWORD                    [guest]\n"
    "  --vhost V                                                                    [/]\n"
    "  --exchange NAME         declared durable if missing                 [spike.feed]\n"
    "  --exchange-type T       topic, direct, fanout, headers                   [topic]\n"
    "  --queue NAME            also declare a durable queue bound to '#' (not with a\n"
    "                          direct exchange)                               [none]\n"
    "  --limit N               changes per page, 1-1000                          [500]\n"
    "  --wait-ms MS            the feed's long-poll, 0-30000                   [10000]\n"
    "  --confirm-timeout-ms MS confirms not all in by then: reconnect, resend,\n"
    "                          100-3600000                                     [10000]\n"
    "  --backoff-max-ms MS     the longest wait between reconnects, 100-600000  [5000]\n"
    "  --stop-at SEQ           exit 0 once the cursor reaches SEQ             [never]\n"
    "  --from SEQ              a new cursor (no FILE yet) starts after SEQ       [0]\n"
    "  --help\n"
    "\n"
    "Routing key: '<type>.<event id>' (order.paid.17, event.created.17). Headers:\n"
    "spike-store-id, spike-seq, spike-event-id; type, timestamp, content type JSON;\n"
    "the body is the change's JSON as the feed has it.\n"
    "\n"
    "Exit: 0 --stop-at or SIGTERM/SIGINT (after the page in flight); 1 an error\n"
    "(the cursor file, a refused token or broker login, an unroutable change);\n"
    "2 usage; 3 the feed is another store's; 4 the feed cannot continue the cursor\n"
    "(ahead of its head: an older copy of the store; or dropped by --feed-retain);\n"
    "5 the feed's seqs do not follow the cursor.\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "spike-relay: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(spike-relay --help for the options)\n");
  return EXIT_USAGE;
}

typedef struct num_opt {
  int c;
  const char *name;
  uint64_t min, max;
  const char *range;
  unsigned *u32; /* the option's value: one of these two */
  uint64_t *u64;
} num_opt;

static int parse_opts(int argc, char **argv, opts *o) {
  static const struct option longs[] = {{"feed", required_argument, 0, 'f'},
                                        {"feed-token", required_argument, 0, 't'},
                                        {"cursor", required_argument, 0, 'c'},
                                        {"amqp", required_argument, 0, 'a'},
                                        {"amqp-user", required_argument, 0, 'u'},
                                        {"amqp-password", required_argument, 0, 'p'},
                                        {"vhost", required_argument, 0, 'v'},
                                        {"exchange", required_argument, 0, 'x'},
                                        {"exchange-type", required_argument, 0, 'T'},
                                        {"queue", required_argument, 0, 'q'},
                                        {"limit", required_argument, 0, 'l'},
                                        {"wait-ms", required_argument, 0, 'w'},
                                        {"confirm-timeout-ms", required_argument, 0, 'C'},
                                        {"backoff-max-ms", required_argument, 0, 'B'},
                                        {"stop-at", required_argument, 0, 's'},
                                        {"from", required_argument, 0, 'F'},
                                        {"help", no_argument, 0, 'h'},
                                        {0, 0, 0, 0}};
  *o = (opts){.feed = {.wait_ms = 10000, .token = getenv("SPIKE_FEED_TOKEN"), .stop = &stopping},
              .amqp_host = "127.0.0.1",
              .amqp_port = 5672,
              .user = getenv("SPIKE_RELAY_AMQP_USER"),
              .password = getenv("SPIKE_RELAY_AMQP_PASSWORD"),
              .vhost = "/",
              .exchange = "spike.feed",
              .exchange_type = "topic",
              .limit = 500,
              .confirm_timeout_ms = 10000,
              .backoff_max_ms = 5000,
              .stop_at = UINT64_MAX,
              .from = UINT64_MAX};
  /* the numeric options: their bounds, said the same way when broken */
  const num_opt num_opts[] = {
      {'l', "limit", 1, FEED_LIMIT_MAX, "1-1000", &o->limit, NULL},
      {'w', "wait-ms", 0, FEED_WAIT_MS_MAX, "0-30000", &o->feed.wait_ms, NULL},
      {'C', "confirm-timeout-ms", 100, 3600000, "100-3600000", &o->confirm_timeout_ms, NULL},
      {'B', "backoff-max-ms", BACKOFF_MIN_MS, 600000, "100-600000", &o->backoff_max_ms, NULL},
      {'s', "stop-at", 0, UINT64_MAX, "a seq", NULL, &o->stop_at},
      {'F', "from", 0, UINT64_MAX - 1, "a seq", NULL, &o->from},
  };
  if (o->user == NULL) o->user = "guest";
  if (o->password == NULL) o->password = "guest";
  bool have_feed = false;
  int c;
  uint64_t v;
  unsigned char given[128] = {0}; /* each option once: a second silently replaced the first */
  opterr = 0;
  while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
    if (c > 0 && c < 128 && c != 'h' && c != '?' && given[c]++ > 0) {
      const struct option *l = longs;
      while (l->name != NULL && l->val != c)
        l++;
      return usage_error("--%s given twice (one value each)", l->name);
    }
    switch (c) {
    case 'f':
      if (feed_conn_parse(&o->feed, optarg) != 0)
        return usage_error("--feed %s: not an IPv4 HOST:PORT", optarg);
      have_feed = true;
      break;
    case 't': o->feed.token = optarg; break;
    case 'c': o->cursor_path = optarg; break;
    case 'a': {
      const char *colon = strrchr(optarg, ':');
      if (colon == NULL || colon == optarg || (size_t)(colon - optarg) >= sizeof(o->amqp_host) ||
          feed_parse_u64(colon + 1, 1, 65535, &v) != 0)
        return usage_error("--amqp %s: not HOST:PORT", optarg);
      snprintf(o->amqp_host, sizeof(o->amqp_host), "%.*s", (int)(colon - optarg), optarg);
      o->amqp_port = (int)v;
      break;
    }
    case 'u': o->user = optarg; break;
    case 'p': o->password = optarg; break;
    case 'v': o->vhost = optarg; break;
    case 'x': o->exchange = optarg; break;
    case 'T':
      if (strcmp(optarg, "topic") && strcmp(optarg, "direct") && strcmp(optarg, "fanout") &&
          strcmp(optarg, "headers"))
        return usage_error("--exchange-type %s: not topic, direct, fanout or headers", optarg);
      o->exchange_type = optarg;
      break;
    case 'q': o->queue = optarg; break;
    case 'l':
    case 'w':
    case 'C':
    case 'B':
    case 's':
    case 'F': {
      const num_opt *n = num_opts;
      while (n->c != c)
        n++;
      if (feed_parse_u64(optarg, n->min, n->max, &v) != 0) {
        fprintf(stderr, "spike-relay: --%s %s: not %s\n(spike-relay --help for the options)\n",
                n->name, optarg, n->range);
        return EXIT_USAGE;
      }
      if (n->u32)
        *n->u32 = (unsigned)v;
      else
        *n->u64 = v;
      break;
    }
    case 'h': fputs(usage_text, stdout); exit(EXIT_DONE);
    default: return usage_error("%s: unknown option, or one missing its value", argv[optind - 1]);
    }
  }
  if (optind < argc) return usage_error("%s: unexpected argument", argv[optind]);
  if (!have_feed) return usage_error("%s--feed HOST:PORT is required", "");
  if (o->cursor_path == NULL) return usage_error("%s--cursor FILE is required", "");
  /* --queue binds with "#", every key to a topic exchange (and anything to
   * fanout and headers ones) but a key of its own to a direct one, where
   * every change would then be routed nowhere */
  if (o->queue != NULL && strcmp(o->exchange_type, "direct") == 0)
    return usage_error("%s--queue binds with \"#\", which a direct exchange reads as one routing "
                       "key: bind your queues to it yourself, or use a topic exchange",
                       "");
  return 0;
}

/* The wait before the next try: doubling from BACKOFF_MIN_MS to the cap. */
static unsigned backoff_next(unsigned *ms, unsigned max_ms) {
  unsigned now = *ms;
  *ms = *ms * 2 > max_ms ? max_ms : *ms * 2;
  return now;
}

/* Log a failure that is being retried on its 1st, 2nd, 4th, 8th... try,
 * so an outage does not flood the log. */
static void log_retry(unsigned tries, const char *why, unsigned wait_ms) {
  if ((tries & (tries - 1)) == 0)
    logf_("warn", NULL, "%s; try %u, again in %u ms", why, tries, wait_ms);
}

int main(int argc, char **argv) {
  static opts o;
  int rc = parse_opts(argc, argv, &o);
  if (rc != 0) return rc;
  struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: a long-poll ends at once */
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  cursor cur;
  if (cursor_lock(o.cursor_path) < 0 || cursor_load(o.cursor_path, &cur) != 0) return EXIT_ERROR;
  if (o.from != UINT64_MAX) {
    /* a new cursor only: one that exists is where downstream stands */
    if (cur.store_id[0] != '\0') {
      LOG_ERROR("--from %" PRIu64 ": the cursor %s exists (at seq %" PRIu64
                "); --from starts a new one: remove it first if that is what you mean",
                o.from, o.cursor_path, cur.seq);
      return EXIT_ERROR;
    }
    cur.seq = o.from;
  }
  char extra[160];
  snprintf(extra, sizeof(extra), "\"after\":%" PRIu64 ",\"storeId\":\"%s\"", cur.seq, cur.store_id);
  logf_("info", extra, "following %s:%d from seq %" PRIu64 " into exchange %s at %s:%d",
        o.feed.host, o.feed.port, cur.seq, o.exchange, o.amqp_host, o.amqp_port);

  static broker b;
  static feed_page page;
  unsigned broker_wait = BACKOFF_MIN_MS, feed_wait = BACKOFF_MIN_MS, broker_tries = 0,
           feed_tries = 0;
  uint64_t published = 0, progress_seq = cur.seq;
  uint64_t one_by_one_to = 0; /* after a nack: pages of one change up to this seq */
  int64_t progress_at = now_ms();
  int status = EXIT_DONE;
  while (!stopping) {
    /* A cursor at --stop-at is still checked against the feed (another
     * store, another history, a cursor past the head end as without
     * --stop-at): one record asked, none waited for, none published. */
    int at_stop = cur.seq >= o.stop_at;
    feed_conn fc = o.feed;
    if (at_stop) fc.wait_ms = 0;
    unsigned limit = at_stop ? 1
                     : o.stop_at - cur.seq < o.limit ? (unsigned)(o.stop_at - cur.seq)
                                                      : o.limit; /* never past it */
    /* after a nack, the changes of that page one at a time: each goes only
     * after the one before it was confirmed, so a queue that takes one
     * message at a time still takes them all, in order (a whole page again
     * was refused again, forever where the queue holds fewer than a page) */
    if (cur.seq < one_by_one_to) limit = 1;
    rc = feed_fetch(&fc, cur.store_id, cur.seq, cur.epoch, limit, &page);
    if (rc == FEED_STOPPED) break;
    if (rc == FEED_UNREACHABLE) {
      unsigned w = backoff_next(&feed_wait, o.backoff_max_ms);
      log_retry(++feed_tries, page.why, w);
      feed_sleep_ms(w, &stopping);
      if (b.conn && broker_pump(&b) != 0) {
        LOG_WARN("%s; reconnecting", b.why);
        broker_drop(&b, false);
      }
      continue;
    }
    feed_wait = BACKOFF_MIN_MS, feed_tries = 0;
    if (rc == FEED_OK && cur.store_id[0] != '\0' && strcmp(page.store_id, cur.store_id) != 0) {
      /* The store was restored from a backup of the cursor's store that
       * holds everything up to the cursor: go on from it under the new id
       * (docs/operations.md, Backups, rule 1), the cursor rewritten now. */
      snprintf(extra, sizeof(extra), "\"storeId\":\"%s\",\"restoredFrom\":\"%s\"",
               page.store_id, page.restored_from);
      logf_("warn", extra,
            "the store is %s, restored from a backup of the cursor's store %s at seq %" PRIu64
            ": going on after seq %" PRIu64 " under the new id",
            page.store_id, page.restored_from, page.restored_seq, cur.seq);
      snprintf(cur.store_id, sizeof(cur.store_id), "%s", page.store_id);
      if (cursor_store(o.cursor_path, &cur) != 0) {
        status = EXIT_ERROR;
        break;
      }
    }
    if (rc != FEED_OK) {
      LOG_ERROR("%s", page.why);
      status = rc == FEED_OTHER_STORE || rc == FEED_FORKED ? EXIT_STORE
               : rc == FEED_AHEAD || rc == FEED_DROPPED ? EXIT_CURSOR
               : rc == FEED_OUT_OF_LINE                 ? EXIT_OUT_OF_LINE
                                                        : EXIT_ERROR;
      break;
    }
    if (at_stop) break; /* --stop-at reached: exit 0 */
    if (page.count == 0) {
      if (b.conn && broker_pump(&b) != 0) {
        LOG_WARN("%s; reconnecting", b.why);
        broker_drop(&b, false);
      }
      if (fc.wait_ms == 0) feed_sleep_ms(BACKOFF_MIN_MS, &stopping); /* no long-poll: no spin */
      continue;
    }
    /* a page in hand: a broker to take it, waited for as long as it takes */
    while (b.conn == NULL && !stopping) {
      rc = broker_connect(&b, &o);
      if (rc == BROKER_FATAL) break;
      if (rc != 0) {
        unsigned w = backoff_next(&broker_wait, o.backoff_max_ms);
        log_retry(++broker_tries, b.why, w);
        feed_sleep_ms(w, &stopping);
        continue;
      }
      broker_tries = 0;
      snprintf(extra, sizeof(extra), "\"after\":%" PRIu64, cur.seq);
      logf_("info", extra, "connected to the broker at %s:%d; publishing after seq %" PRIu64,
            o.amqp_host, o.amqp_port, cur.seq);
    }
    if (rc == BROKER_FATAL) {
      LOG_ERROR("%s: stopping", b.why);
      status = EXIT_ERROR;
      break;
    }
    if (b.conn == NULL) break; /* stopping */
    rc = publish_page(&b, &o, &page);
    if (rc == PAGE_UNROUTED && o.queue != NULL) {
      /* the queue the relay declares was deleted: declared again on the
       * next connection, so this is a broker failure like any other */
      rc = -1;
    }
    if (rc == PAGE_UNROUTED) {
      LOG_ERROR(
          "%s: bind a queue to exchange %s (or pass --queue); stopping with the cursor at %" PRIu64,
          b.why, o.exchange, cur.seq);
      status = EXIT_ERROR;
      break;
    }
    if (rc != 0) {
      /* the page goes again, from the cursor, on a new connection; the
       * wait keeps a broker that takes connections but not messages from
       * being hammered */
      unsigned w = backoff_next(&broker_wait, o.backoff_max_ms);
      char one_by_one[64] = "";
      if (rc == PAGE_NACKED) {
        if (one_by_one_to < page.last_seq) one_by_one_to = page.last_seq;
        snprintf(one_by_one, sizeof(one_by_one), ", one change at a time up to seq %" PRIu64,
                 one_by_one_to);
      }
      LOG_WARN("%s; reconnecting in %u ms, then publishing again after seq %" PRIu64 "%s", b.why,
               w, cur.seq, one_by_one);
      broker_drop(&b, false);
      feed_sleep_ms(w, &stopping);
      continue;
    }
    broker_wait = BACKOFF_MIN_MS;
    /* every change of the page is confirmed: now, and only now, the cursor */
    snprintf(cur.store_id, sizeof(cur.store_id), "%s", page.store_id);
    cur.seq = page.last_seq;
    snprintf(cur.epoch, sizeof(cur.epoch), "%s", page.last_epoch);
    if (cursor_store(o.cursor_path, &cur) != 0) {
      status = EXIT_ERROR;
      break;
    }
    published += (uint64_t)page.count;
    if (now_ms() - progress_at >= PROGRESS_EVERY_MS) {
      snprintf(extra, sizeof(extra), "\"seq\":%" PRIu64 ",\"head\":%" PRIu64, cur.seq, page.head);
      logf_("info", extra,
            "published %" PRIu64 " changes in %.1f s; cursor %" PRIu64 ", head %" PRIu64,
            cur.seq - progress_seq, (double)(now_ms() - progress_at) / 1000, cur.seq, page.head);
      progress_seq = cur.seq, progress_at = now_ms();
    }
  }
  broker_drop(&b, status == EXIT_DONE);
  snprintf(extra, sizeof(extra), "\"seq\":%" PRIu64 ",\"published\":%" PRIu64, cur.seq, published);
  logf_(status == EXIT_DONE ? "info" : "error", extra,
        "stopped: %" PRIu64 " changes published, cursor %" PRIu64 " (exit %d)", published, cur.seq,
        status);
  return status;
}

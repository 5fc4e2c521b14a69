/*
 * feed_sqlite.c -- a reference consumer of spiked's change feed: it moves
 * every record into SQLite exactly once.
 *
 * The one rule that makes it exactly once: the records and the cursor are
 * written in the same SQLite transaction. A crash (of this program, of
 * spiked, of the machine) before the COMMIT loses both, and the next run
 * asks for the same records again; after it, both are there and the next
 * run asks for what follows. Nothing is ever applied twice: a repeated seq
 * would break the changes table's primary key, and a seq that is not the
 * cursor's next one is refused, so the program stops rather than guess.
 *
 * It also keeps the two promises a consumer must check itself: every
 * answer carries the store's id, which must stay the one the cursor was
 * written against (a replaced store would otherwise be read from a cursor
 * that means nothing there), and a cursor the feed cannot continue (ahead
 * of the head, or behind what --feed-retain kept) is an error answer, never
 * skipped.
 *
 *   feed_sqlite HOST:PORT DB [--token T] [--stop-at SEQ] [--limit N]
 *               [--wait-ms MS] [--retry-s S]
 *
 * Tables: changes (seq, type, at, order_id, event_id, record: the change's
 * JSON as received), orders (the latest state of each order, upserted),
 * cursor (one row: store_id, seq). Exit status: 0 at --stop-at; 1 an
 * error (SQLite, or spiked unreachable for --retry-s); 2 usage; 3 the
 * store's id changed; 4 the feed refused the cursor (dropped or ahead);
 * 5 a repeated or missing seq.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

#define RESP_MAX (4u << 20) /* a feed page of 1000 records is well under 1 MiB */
#define TOKENS_MAX 65536

typedef struct opts {
  char host[64];
  int port;
  const char *db, *token;
  uint64_t stop_at;
  unsigned limit, wait_ms, retry_s;
} opts;

typedef struct resp {
  int status;
  char *head; /* NUL-terminated */
  char *body;
  size_t body_len;
} resp;

static char buf[RESP_MAX + 1];
static jsmntok_t tok[TOKENS_MAX];

/* ---- HTTP: one GET per connection ------------------------------------------ */

static int http_get(const opts *o, const char *target, resp *r) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
  if (inet_pton(AF_INET, o->host, &sa.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {(o->wait_ms / 1000) + 10, 0}; /* the long-poll, and some */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  char req[1024];
  int n = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s%sConnection: close\r\n\r\n",
                   target, o->host, o->token ? "Authorization: Bearer " : "",
                   o->token ? o->token : "", o->token ? "\r\n" : "");
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
    close(fd);
    return -1;
  }
  size_t len = 0;
  for (;;) {
    ssize_t k = recv(fd, buf + len, RESP_MAX - len, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      close(fd);
      return -1;
    }
    if (k == 0 || (len += (size_t)k) == RESP_MAX) break;
  }
  close(fd);
  buf[len] = '\0';
  char *end = strstr(buf, "\r\n\r\n");
  if (end == NULL || sscanf(buf, "HTTP/1.1 %d", &r->status) != 1) return -1;
  *end = '\0';
  r->head = buf;
  r->body = end + 4;
  r->body_len = len - (size_t)(r->body - buf);
  return 0;
}

static const char *header(const resp *r, const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  for (const char *p = strstr(r->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
    if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
      const char *v = p + 3 + n, *e = strstr(v, "\r\n");
      while (*v == ' ') v++;
      size_t l = e ? (size_t)(e - v) : strlen(v);
      snprintf(out, cap, "%.*s", (int)(l < cap ? l : cap - 1), v);
      return out;
    }
  return NULL;
}

/* ---- JSON: jsmn tokens over the body --------------------------------------- */

/* The index of the token after t's whole subtree. */
static int skip(int t) {
  int n = tok[t].size;
  t++;
  for (int i = 0; i < n; i++) t = skip(t);
  return t;
}

static int eq(const char *js, int t, const char *s) {
  size_t n = strlen(s);
  return tok[t].type == JSMN_STRING && (size_t)(tok[t].end - tok[t].start) == n &&
         memcmp(js + tok[t].start, s, n) == 0;
}

/* The value token of key in the object at t, or -1. */
static int member(const char *js, int t, const char *key) {
  if (tok[t].type != JSMN_OBJECT) return -1;
  int n = tok[t].size, k = t + 1;
  for (int i = 0; i < n; i++) {
    if (eq(js, k, key)) return k + 1;
    k = skip(k + 1);
  }
  return -1;
}

static uint64_t num(const char *js, int t) {
  return t < 0 ? 0 : strtoull(js + tok[t].start, NULL, 10);
}

static void text(const char *js, int t, char *out, size_t cap) {
  int n = t < 0 ? 0 : tok[t].end - tok[t].start;
  snprintf(out, cap, "%.*s", n < (int)cap ? n : (int)cap - 1, t < 0 ? "" : js + tok[t].start);
}

/* ---- SQLite ---------------------------------------------------------------- */

static sqlite3 *db;
static sqlite3_stmt *ins_change, *up_order, *set_cursor;

static int exec(const char *sql) {
  char *err = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK) return 0;
  fprintf(stderr, "feed_sqlite: %s: %s\n", sql, err ? err : "?");
  sqlite3_free(err);
  return -1;
}

static int db_open(const char *path) {
  if (sqlite3_open(path, &db) != SQLITE_OK) {
    fprintf(stderr, "feed_sqlite: %s: %s\n", path, sqlite3_errmsg(db));
    return -1;
  }
  sqlite3_busy_timeout(db, 5000);
  if (exec("PRAGMA journal_mode=WAL") != 0 || exec("PRAGMA synchronous=FULL") != 0 ||
      exec("CREATE TABLE IF NOT EXISTS changes(seq INTEGER PRIMARY KEY, type TEXT NOT NULL, "
           "at INTEGER NOT NULL, order_id TEXT, event_id TEXT, record TEXT NOT NULL)") != 0 ||
      exec("CREATE TABLE IF NOT EXISTS orders(id TEXT PRIMARY KEY, event_id TEXT NOT NULL, "
           "user_id TEXT NOT NULL, qty INTEGER NOT NULL, state TEXT NOT NULL, seq INTEGER NOT NULL)") != 0 ||
      exec("CREATE TABLE IF NOT EXISTS cursor(one INTEGER PRIMARY KEY CHECK (one = 1), "
           "store_id TEXT NOT NULL, seq INTEGER NOT NULL)") != 0)
    return -1;
  static const char *const sql[] = {
      "INSERT INTO changes(seq, type, at, order_id, event_id, record) VALUES(?,?,?,?,?,?)",
      "INSERT INTO orders(id, event_id, user_id, qty, state, seq) VALUES(?,?,?,?,?,?) "
      "ON CONFLICT(id) DO UPDATE SET state = excluded.state, seq = excluded.seq",
      "INSERT INTO cursor(one, store_id, seq) VALUES(1,?,?) "
      "ON CONFLICT(one) DO UPDATE SET store_id = excluded.store_id, seq = excluded.seq"};
  sqlite3_stmt **st[] = {&ins_change, &up_order, &set_cursor};
  for (int i = 0; i < 3; i++)
    if (sqlite3_prepare_v2(db, sql[i], -1, st[i], NULL) != SQLITE_OK) {
      fprintf(stderr, "feed_sqlite: %s: %s\n", sql[i], sqlite3_errmsg(db));
      return -1;
    }
  return 0;
}

/* The cursor: the store it belongs to ("" before the first record) and
 * the last seq applied. */
static int load_cursor(char *store, size_t cap, uint64_t *seq) {
  sqlite3_stmt *q;
  store[0] = '\0';
  *seq = 0;
  if (sqlite3_prepare_v2(db, "SELECT store_id, seq FROM cursor WHERE one = 1", -1, &q, NULL) != SQLITE_OK)
    return -1;
  if (sqlite3_step(q) == SQLITE_ROW) {
    snprintf(store, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    *seq = (uint64_t)sqlite3_column_int64(q, 1);
  }
  sqlite3_finalize(q);
  return 0;
}

static int step(sqlite3_stmt *s) {
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? 0 : rc;
}

/* Apply one change: its row, and the order it carries. 0, 5 (a repeat or
 * a gap) or 1. */
static int apply(const char *js, int c, uint64_t expect_seq) {
  uint64_t seq = num(js, member(js, c, "seq"));
  if (seq != expect_seq) {
    fprintf(stderr, "feed_sqlite: got seq %llu where %llu was next: refusing\n",
            (unsigned long long)seq, (unsigned long long)expect_seq);
    return 5;
  }
  char type[32], oid[24] = "", eid[24] = "", uid[24] = "", state[16] = "";
  text(js, member(js, c, "type"), type, sizeof(type));
  int o = member(js, c, "order"), e = member(js, c, "event");
  if (o >= 0) {
    text(js, member(js, o, "id"), oid, sizeof(oid));
    text(js, member(js, o, "event_id"), eid, sizeof(eid));
    text(js, member(js, o, "user_id"), uid, sizeof(uid));
    text(js, member(js, o, "state"), state, sizeof(state));
  } else if (e >= 0) {
    text(js, member(js, e, "id"), eid, sizeof(eid));
  }
  sqlite3_bind_int64(ins_change, 1, (sqlite3_int64)seq);
  sqlite3_bind_text(ins_change, 2, type, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(ins_change, 3, (sqlite3_int64)num(js, member(js, c, "at")));
  sqlite3_bind_text(ins_change, 4, oid[0] ? oid : NULL, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(ins_change, 5, eid[0] ? eid : NULL, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(ins_change, 6, js + tok[c].start, tok[c].end - tok[c].start, SQLITE_TRANSIENT);
  int rc = step(ins_change);
  if (rc == SQLITE_CONSTRAINT) {
    fprintf(stderr, "feed_sqlite: seq %llu is already applied: refusing a repeat\n",
            (unsigned long long)seq);
    return 5;
  }
  if (rc == 0 && o >= 0) {
    sqlite3_bind_text(up_order, 1, oid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(up_order, 2, eid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(up_order, 3, uid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(up_order, 4, (sqlite3_int64)num(js, member(js, o, "qty")));
    sqlite3_bind_text(up_order, 5, state, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(up_order, 6, (sqlite3_int64)seq);
    rc = step(up_order);
  }
  if (rc != 0) {
    fprintf(stderr, "feed_sqlite: seq %llu: %s\n", (unsigned long long)seq, sqlite3_errmsg(db));
    return 1;
  }
  return 0;
}

/* One page: the records and the cursor in one transaction. */
static int apply_page(const char *js, int data, const char *store, uint64_t *cursor) {
  int changes = member(js, data, "changes");
  if (changes < 0 || tok[changes].type != JSMN_ARRAY) return 1;
  if (exec("BEGIN IMMEDIATE") != 0) return 1;
  int rc = 0;
  uint64_t seq = *cursor;
  for (int i = 0, c = changes + 1; rc == 0 && i < tok[changes].size; i++, c = skip(c))
    if ((rc = apply(js, c, seq + 1)) == 0) seq++;
  if (rc == 0) {
    sqlite3_bind_text(set_cursor, 1, store, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(set_cursor, 2, (sqlite3_int64)seq);
    if (step(set_cursor) != 0) rc = 1;
  }
  if (rc == 0 && exec("COMMIT") != 0) rc = 1;
  if (rc != 0) {
    exec("ROLLBACK");
    return rc;
  }
  *cursor = seq;
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: feed_sqlite HOST:PORT DB [--token T] [--stop-at SEQ] [--limit N] "
                  "[--wait-ms MS] [--retry-s S]\n");
  return 2;
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  opts o = {.limit = 100, .wait_ms = 1000, .retry_s = 30, .stop_at = UINT64_MAX};
  if (argc < 3) return usage();
  const char *colon = strrchr(argv[1], ':');
  if (colon == NULL || (size_t)(colon - argv[1]) >= sizeof(o.host)) return usage();
  snprintf(o.host, sizeof(o.host), "%.*s", (int)(colon - argv[1]), argv[1]);
  o.port = atoi(colon + 1);
  o.db = argv[2];
  for (int i = 3; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--token") == 0) o.token = argv[i + 1];
    else if (strcmp(argv[i], "--stop-at") == 0) o.stop_at = strtoull(argv[i + 1], NULL, 10);
    else if (strcmp(argv[i], "--limit") == 0) o.limit = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--wait-ms") == 0) o.wait_ms = (unsigned)atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--retry-s") == 0) o.retry_s = (unsigned)atoi(argv[i + 1]);
    else return usage();
  }
  if ((argc - 3) % 2 != 0 || o.port <= 0 || db_open(o.db) != 0) return o.port <= 0 ? usage() : 1;
  char store[64], hdr[64];
  uint64_t cursor;
  if (load_cursor(store, sizeof(store), &cursor) != 0) return 1;
  int64_t last_ok = now_ms();
  int status = 1;
  while (cursor < o.stop_at) {
    char target[160];
    snprintf(target, sizeof(target), "/api/v1/feed?after=%llu&limit=%u&wait_ms=%u",
             (unsigned long long)cursor, o.limit, o.wait_ms);
    resp r;
    if (http_get(&o, target, &r) != 0 || r.status >= 500) {
      /* spiked restarting or draining: try again, for a while */
      if (now_ms() - last_ok > (int64_t)o.retry_s * 1000) {
        fprintf(stderr, "feed_sqlite: no answer from %s:%d for %u s\n", o.host, o.port, o.retry_s);
        goto out;
      }
      usleep(100000);
      continue;
    }
    last_ok = now_ms();
    const char *id = header(&r, "X-Spike-Store-Id", hdr, sizeof(hdr));
    if (id != NULL && store[0] != '\0' && strcmp(id, store) != 0) {
      fprintf(stderr, "feed_sqlite: the store is %s, the cursor belongs to %s: a replaced store, "
                      "refusing to continue (rebuild from scratch)\n", id, store);
      status = 3;
      goto out;
    }
    if (r.status != 200) {
      fprintf(stderr, "feed_sqlite: the feed refused after=%llu: HTTP %d %.*s\n",
              (unsigned long long)cursor, r.status, (int)r.body_len, r.body);
      status = 4;
      goto out;
    }
    jsmn_parser p;
    jsmn_init(&p);
    int nt = jsmn_parse(&p, r.body, r.body_len, tok, TOKENS_MAX);
    int data = nt > 0 ? member(r.body, 0, "data") : -1;
    if (data < 0 || id == NULL) {
      fprintf(stderr, "feed_sqlite: an answer that is not a feed page\n");
      goto out;
    }
    if (store[0] == '\0') snprintf(store, sizeof(store), "%s", id);
    int rc = apply_page(r.body, data, store, &cursor);
    if (rc != 0) {
      status = rc;
      goto out;
    }
  }
  status = 0;
out:
  sqlite3_finalize(ins_change);
  sqlite3_finalize(up_order);
  sqlite3_finalize(set_cursor);
  sqlite3_close(db);
  return status;
}

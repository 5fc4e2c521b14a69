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
 * cursor (one row: store_id, seq, and the epoch of the record at seq).
 * Exit status: 0 at --stop-at; 1 an error (SQLite, or spiked unreachable
 * for --retry-s); 2 usage; 3 the store's id changed, or the store is a copy
 * that took other writes (its record at the cursor has another epoch); 4
 * the feed refused the cursor (dropped or ahead); 5 a repeated or missing
 * seq.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "feed.h" /* relay/feed.h: the feed's client, shared with spike-relay */

typedef struct opts {
  feed_conn feed;
  const char *db;
  uint64_t stop_at;
  unsigned limit, retry_s;
} opts;

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
           "user_id TEXT NOT NULL, qty INTEGER NOT NULL, state TEXT NOT NULL, seq INTEGER NOT "
           "NULL)") != 0 ||
      exec("CREATE TABLE IF NOT EXISTS cursor(one INTEGER PRIMARY KEY CHECK (one = 1), "
           "store_id TEXT NOT NULL, seq INTEGER NOT NULL, epoch TEXT NOT NULL DEFAULT '')") != 0)
    return -1;
  /* a database made before the cursor kept its epoch: add the column */
  sqlite3_stmt *q;
  int has_epoch = 0;
  if (sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info('cursor')", -1, &q, NULL) != SQLITE_OK)
    return -1;
  while (sqlite3_step(q) == SQLITE_ROW)
    has_epoch |= strcmp((const char *)sqlite3_column_text(q, 0), "epoch") == 0;
  sqlite3_finalize(q);
  if (!has_epoch && exec("ALTER TABLE cursor ADD COLUMN epoch TEXT NOT NULL DEFAULT ''") != 0)
    return -1;
  static const char *const sql[] = {
      "INSERT INTO changes(seq, type, at, order_id, event_id, record) VALUES(?,?,?,?,?,?)",
      "INSERT INTO orders(id, event_id, user_id, qty, state, seq) VALUES(?,?,?,?,?,?) "
      "ON CONFLICT(id) DO UPDATE SET state = excluded.state, seq = excluded.seq",
      "INSERT INTO cursor(one, store_id, seq, epoch) VALUES(1,?,?,?) "
      "ON CONFLICT(one) DO UPDATE SET store_id = excluded.store_id, seq = excluded.seq, "
      "epoch = excluded.epoch"};
  sqlite3_stmt **st[] = {&ins_change, &up_order, &set_cursor};
  for (int i = 0; i < 3; i++)
    if (sqlite3_prepare_v2(db, sql[i], -1, st[i], NULL) != SQLITE_OK) {
      fprintf(stderr, "feed_sqlite: %s: %s\n", sql[i], sqlite3_errmsg(db));
      return -1;
    }
  return 0;
}

/* The cursor: the store it belongs to ("" before the first record), the
 * last seq applied and that record's epoch ("" when unknown). */
static int load_cursor(char *store, size_t cap, uint64_t *seq, char *epoch, size_t ecap) {
  sqlite3_stmt *q;
  store[0] = epoch[0] = '\0';
  *seq = 0;
  if (sqlite3_prepare_v2(db, "SELECT store_id, seq, epoch FROM cursor WHERE one = 1", -1, &q,
                         NULL) != SQLITE_OK)
    return -1;
  if (sqlite3_step(q) == SQLITE_ROW) {
    snprintf(store, cap, "%s", (const char *)sqlite3_column_text(q, 0));
    *seq = (uint64_t)sqlite3_column_int64(q, 1);
    snprintf(epoch, ecap, "%s", (const char *)sqlite3_column_text(q, 2));
  }
  sqlite3_finalize(q);
  return 0;
}

static int step(sqlite3_stmt *s) {
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  return rc == SQLITE_DONE ? 0 : rc;
}

/* Apply one change: its row, and the order it carries. 0, 5 (a repeat)
 * or 1. feed_fetch has already checked that the seqs follow the cursor. */
static int apply(const feed_page *p, const feed_change *ch) {
  char oid[24] = "", uid[24] = "", state[16] = "";
  int o = feed_member(p, ch->tok, "order");
  if (o >= 0) {
    feed_text(p, feed_member(p, o, "id"), oid, sizeof(oid));
    feed_text(p, feed_member(p, o, "user_id"), uid, sizeof(uid));
    feed_text(p, feed_member(p, o, "state"), state, sizeof(state));
  }
  sqlite3_bind_int64(ins_change, 1, (sqlite3_int64)ch->seq);
  sqlite3_bind_text(ins_change, 2, ch->type, -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(ins_change, 3, (sqlite3_int64)ch->at);
  sqlite3_bind_text(ins_change, 4, oid[0] ? oid : NULL, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(ins_change, 5, ch->event_id[0] ? ch->event_id : NULL, -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(ins_change, 6, ch->json, (int)ch->json_len, SQLITE_TRANSIENT);
  int rc = step(ins_change);
  if (rc == SQLITE_CONSTRAINT) {
    fprintf(stderr, "feed_sqlite: seq %llu is already applied: refusing a repeat\n",
            (unsigned long long)ch->seq);
    return 5;
  }
  if (rc == 0 && o >= 0) {
    sqlite3_bind_text(up_order, 1, oid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(up_order, 2, ch->event_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(up_order, 3, uid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(up_order, 4, (sqlite3_int64)feed_num(p, feed_member(p, o, "qty")));
    sqlite3_bind_text(up_order, 5, state, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(up_order, 6, (sqlite3_int64)ch->seq);
    rc = step(up_order);
  }
  if (rc != 0) {
    fprintf(stderr, "feed_sqlite: seq %llu: %s\n", (unsigned long long)ch->seq, sqlite3_errmsg(db));
    return 1;
  }
  return 0;
}

/* One page: the records and the cursor in one transaction. */
static int apply_page(const feed_page *p, const char *store, uint64_t *cursor) {
  if (exec("BEGIN IMMEDIATE") != 0) return 1;
  int rc = 0, t = 0;
  feed_change ch;
  while (rc == 0 && feed_next(p, &t, &ch) == 0)
    rc = apply(p, &ch);
  if (rc == 0) {
    sqlite3_bind_text(set_cursor, 1, store, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(set_cursor, 2, (sqlite3_int64)p->last_seq);
    sqlite3_bind_text(set_cursor, 3, p->last_epoch, -1, SQLITE_TRANSIENT);
    if (step(set_cursor) != 0) rc = 1;
  }
  if (rc == 0 && exec("COMMIT") != 0) rc = 1;
  if (rc != 0) {
    exec("ROLLBACK");
    return rc;
  }
  *cursor = p->last_seq;
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
  opts o = {.feed.wait_ms = 1000, .limit = 100, .retry_s = 30, .stop_at = UINT64_MAX};
  if (argc < 3 || feed_conn_parse(&o.feed, argv[1]) != 0) return usage();
  o.db = argv[2];
  for (int i = 3; i + 1 < argc; i += 2) {
    uint64_t v = 0;
    const char *a = argv[i], *val = argv[i + 1];
    if (strcmp(a, "--token") == 0) {
      o.feed.token = val;
      continue;
    }
    if (strcmp(a, "--stop-at") != 0 && strcmp(a, "--limit") != 0 && strcmp(a, "--wait-ms") != 0 &&
        strcmp(a, "--retry-s") != 0)
      return usage();
    if (strcmp(a, "--stop-at") == 0 ? feed_parse_u64(val, 0, UINT64_MAX, &v)
        : strcmp(a, "--limit") == 0 ? feed_parse_u64(val, 1, FEED_LIMIT_MAX, &v)
        : strcmp(a, "--wait-ms") == 0 ? feed_parse_u64(val, 0, FEED_WAIT_MS_MAX, &v)
                                      : feed_parse_u64(val, 0, 86400, &v)) {
      fprintf(stderr, "feed_sqlite: %s %s: not a whole number in its range\n", a, val);
      return usage();
    }
    if (strcmp(a, "--stop-at") == 0) o.stop_at = v;
    else if (strcmp(a, "--limit") == 0) o.limit = (unsigned)v;
    else if (strcmp(a, "--wait-ms") == 0) o.feed.wait_ms = (unsigned)v;
    else o.retry_s = (unsigned)v;
  }
  if ((argc - 3) % 2 != 0) return usage();
  if (db_open(o.db) != 0) return 1;
  char store[FEED_STORE_ID_MAX + 1], epoch[FEED_EPOCH_MAX + 1];
  uint64_t cursor;
  if (load_cursor(store, sizeof(store), &cursor, epoch, sizeof(epoch)) != 0) return 1;
  int64_t last_ok = now_ms();
  int status = 1;
  while (cursor < o.stop_at) {
    feed_page p;
    /* a page ends at --stop-at, not past it */
    unsigned limit = o.stop_at - cursor < o.limit ? (unsigned)(o.stop_at - cursor) : o.limit;
    int rc = feed_fetch(&o.feed, store, cursor, epoch, limit, &p);
    if (rc == FEED_UNREACHABLE) {
      /* spiked restarting or draining: try again, for a while */
      if (now_ms() - last_ok > (int64_t)o.retry_s * 1000) {
        fprintf(stderr, "feed_sqlite: %s, for %u s\n", p.why, o.retry_s);
        goto out;
      }
      feed_sleep_ms(100, NULL);
      continue;
    }
    last_ok = now_ms();
    if (rc != FEED_OK) {
      fprintf(stderr, "feed_sqlite: %s\n", p.why);
      status = rc == FEED_OTHER_STORE || rc == FEED_FORKED ? 3
               : rc == FEED_AHEAD || rc == FEED_DROPPED ? 4
               : rc == FEED_OUT_OF_LINE                 ? 5
                                                        : 1;
      goto out;
    }
    if (store[0] == '\0') {
      snprintf(store, sizeof(store), "%s", p.store_id);
    } else if (strcmp(store, p.store_id) != 0) {
      /* A store restored from a backup of the cursor's store at or past
       * the cursor: the feed goes on, under its new id (spike-relay
       * follows it; docs/operations.md, Backups). This consumer stops on
       * any id change, and writes nothing of the new store's. */
      fprintf(stderr,
              "feed_sqlite: the store is %s, restored from %s at seq %llu; the cursor (%s %llu) "
              "could go on under the new id, but feed_sqlite stops on any change of store id: "
              "check the restore, then move the cursor row to the new id to go on\n",
              p.store_id, p.restored_from[0] ? p.restored_from : "another store",
              (unsigned long long)p.restored_seq, store, (unsigned long long)cursor);
      status = 3;
      goto out;
    }
    if ((rc = apply_page(&p, store, &cursor)) != 0) {
      status = rc;
      goto out;
    }
    snprintf(epoch, sizeof(epoch), "%s", p.last_epoch);
  }
  status = 0;
out:
  sqlite3_finalize(ins_change);
  sqlite3_finalize(up_order);
  sqlite3_finalize(set_cursor);
  sqlite3_close(db);
  return status;
}

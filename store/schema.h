/*
 * schema.h -- the store: one LMDB environment, the layout of its databases,
 * and the only API the engine uses to reach them. Every put and get of a
 * record goes through here, so the writer, recovery, the reads and the
 * reference benchmark write byte-identical records. The store knows LMDB
 * and the record codec, and nothing of the engine's memory; its callers see
 * neither LMDB nor msgpack.
 *
 *   events  id    -> event record (codec.h)
 *   orders  id    -> order record, with the user's previous order and the
 *                    idempotency key's hash (the engine derives its per-user
 *                    and key indexes from these at recovery: no index is a
 *                    B-tree write per order)
 *   feed    seq   -> change record
 *   meta    name  -> value ("schema", "id_hwm", "store_id"; a backup's
 *                    "backup_of", "backup_seq", "backup_at_ms", and a
 *                    restored store's "restored_from", "restored_seq",
 *                    "restored_at_ms", "backup_at_ms": see backup.h)
 *
 * Schema 1 also had buyers (user, event -> order ids) and keys (event, key
 * hash -> order id); store_open migrates such a store to schema 2 in one
 * transaction, folding both into the order records.
 *
 * Integers in keys are big-endian so LMDB's byte order is numeric order.
 * Results: 0, an errno value, or one of the STORE_* codes below (the first
 * two are LMDB's own values).
 *
 * Threads: a store_txn is used by one thread at a time; several may read
 * at once, and one writes (the engine's writer).
 */
#ifndef SPIKE_SCHEMA_H
#define SPIKE_SCHEMA_H

#include <stddef.h>
#include <stdint.h>

#include "spike.h"

#define STORE_SCHEMA_VERSION 2
#define STORE_NOTFOUND (-30798) /* no such record */
#define STORE_MAP_FULL (-30792) /* the map is full: nothing was written */
#define STORE_ECORRUPT (-30400) /* a record that does not decode */
#define STORE_NOSPACE (-30401)  /* a commit refused for space before anything of it
                                   reached the disk: see store_write_commit */

typedef struct store store;
typedef struct store_txn store_txn;

/* An order as stored: the public order and what the engine derives its
 * indexes from at recovery. */
typedef struct order_rec {
  spike_order o;
  uint64_t prev;       /* the user's previous order, in commit order; 0: none */
  uint64_t rseq;       /* seq of its order.reserved change; 0: written by schema 1 */
  uint64_t key1, key2; /* its idempotency key's hash, when keyed */
  uint8_t keyed;
} order_rec;


/* Open (creating) dir's environment and databases, checking the schema
 * version and migrating a schema 1 store. On failure returns non-zero with
 * a sentence in err. */
int store_open(store **out, const char *dir, uint64_t map_size_bytes, unsigned max_readers,
               char *err, size_t errlen);
void store_close(store *s);

/* Orders rewritten by the migration at open (0 when none ran). */
uint64_t store_migrated(const store *s);

/* The store's id: random (never 0) when the store is made, kept in meta
 * "store_id" for its life; a copy of the file keeps it. A backup made by
 * backup.c carries a mark, and the first open of it (a restore) gives the
 * store a new id and records where it came from. */
uint64_t store_id(const store *s);

/* Each open begins an epoch (schema.c, "epochs"): a random id for the feed
 * records that run writes, from the head + 1 at open. */
typedef struct store_epoch {
  uint64_t first_seq, id;
} store_epoch;
/* The epoch of feed record seq: the id of the run that wrote it (for a seq
 * past the head, this run's); 0 for seq 0 and for records older than the
 * first epoch kept (written by a build that kept none). */
uint64_t store_epoch_of(const store *s, uint64_t seq);

/* Where a restored store came from; all 0 for a store that was not. */
typedef struct store_origin {
  uint64_t restored_from; /* the id of the store the backup was taken of */
  uint64_t restored_seq;  /* that store's newest feed seq in the backup */
  int64_t backup_at_ms;   /* when the backup's snapshot was taken */
  int64_t restored_at_ms; /* when it was first opened here */
  int restored_now;       /* 1: this open made the restore */
} store_origin;
void store_get_origin(const store *s, store_origin *out);

/* fsync a directory (a rename or a creation in it made durable): 0 or errno. */
int store_fsync_dir(const char *dir);

/* The LMDB environment, for backup.c alone. */
struct MDB_env *store_lmdb_env(store *s);

/* The map at open: what the caller asked for, what it was once the file
 * was opened (LMDB adopts a file's bigger map), and what it is after the
 * open-time growth (doubled when over 80% used). */
void store_map_open_sizes(const store *s, uint64_t *asked, uint64_t *was, uint64_t *now);

/* The map's size and its high-water mark, in bytes. Any thread. */
void store_map_usage(const store *s, uint64_t *size_bytes, uint64_t *used_bytes);

/* Text for any return value of this module. */
const char *store_strerror(int rc);

/* How much of the map the file has ever used (its high-water mark), in
 * percent. Pages freed inside it are reused, so this never falls. */
uint32_t store_map_used_pct(const store *s);

/* ---- transactions --------------------------------------------------------
 * A store_txn holds one LMDB transaction at a time and the buffer its
 * records decode into; allocate one per thread that reads or writes and
 * reuse it. */
store_txn *store_txn_new(store *s); /* NULL when out of memory */
store *store_txn_store(const store_txn *t);
void store_txn_free(store_txn *t);  /* ends whatever transaction is open */

/* A read snapshot: begin, any number of gets, end. */
int store_read_begin(store_txn *t);
void store_read_end(store_txn *t);

/* The write transaction (one at a time per store). Commit ends it whether
 * it succeeds or not, and so does abort.
 *
 * A commit syncs its data pages, then writes the meta page that makes them
 * the store's state. With defer_meta 0 that write is synchronous (LMDB's
 * own two-step commit): durable when this returns 0. With defer_meta 1 it
 * is not synced (MDB_NOMETASYNC): the store stays consistent across a power
 * cut, but the commit may be taken back until the next commit's data sync,
 * or store_sync, has carried its meta page down. One sync per commit, for a
 * caller that commits again at once. */
int store_write_begin(store_txn *t);
/* Errors: STORE_MAP_FULL and STORE_NOSPACE (the file system is full) say
 * that nothing of the commit was written and the store is as it was: once
 * there is room, commit again. Any other error (an I/O error, ENOSPC from
 * the sync) may have cost data the page cache held: never retry it; reopen
 * the store and recover from what is on disk. */
int store_write_commit(store_txn *t, int defer_meta);
void store_write_abort(store_txn *t);
int store_txn_open(const store_txn *t);

/* Make a commit made with defer_meta durable, when no commit follows it. */
int store_sync(store *s);

/* 1 when this process could allocate bytes on the store's file system
 * (or an eighth of its size, when that is less: a small file system can
 * still have room), or that cannot be told; 0 when it could not. Tries an
 * allocation of that size (a nameless file, dropped at once), statvfs
 * where that cannot be done. */
int store_has_room(store *s, uint64_t bytes);

/* Clear the reader slots of processes that died in a read transaction (a
 * `spiked --backup` killed mid-copy): such a slot pins its snapshot, and
 * no page freed after it is reused until it goes, so the file grows with
 * every commit until the map is full. How many were cleared. */
int store_reader_check(store *s);

/* Keep data.mdb written up to 1 MiB past the pages LMDB uses, so that a
 * commit's new pages overwrite the file instead of growing it (schema.c
 * says why). Only from the thread that commits, between transactions;
 * best effort: a file system short of room is left alone. */
void store_write_ahead(store *s);

/* What a file system (statfs's f_type) means for a store on it. In memory
 * (tmpfs, ramfs) nothing survives a reboot; copy-on-write (btrfs, ZFS)
 * puts an overwrite in new blocks. On both, nothing is written ahead.
 * *name gets its name, or NULL for any other file system. */
typedef enum { STORE_FS_PLAIN, STORE_FS_MEMORY, STORE_FS_COPY_ON_WRITE } store_fs_kind;
store_fs_kind store_fs_of(unsigned long f_type, const char **name);

/* ---- records ------------------------------------------------------------- */

static inline void store_be64(uint8_t out[8], uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) out[i] = (uint8_t)v;
}
static inline uint64_t store_get_be64(const uint8_t in[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | in[i];
  return v;
}

/* append: the caller knows id is the largest so far (LMDB's fast path). */
int store_put_order(store_txn *t, const order_rec *r, int append);
int store_get_order(store_txn *t, uint64_t id, spike_order *o);
int store_get_order_rec(store_txn *t, uint64_t id, order_rec *r);
/* Put the order and append its change record (seq, type, at), encoding the
 * order once for both: every order change is these two puts. */
int store_put_order_change(store_txn *t, const order_rec *r, int append, uint64_t seq,
                           spike_change_type type, int64_t at);
int store_put_event(store_txn *t, const spike_event *e, int closed);
/* The event's state is computed at now_ms; *closed may be NULL. */
int store_get_event(store_txn *t, uint64_t id, int64_t now_ms, spike_event *e, int *closed);
int store_append_change(store_txn *t, uint64_t seq, spike_change_type type, int64_t at,
                        const spike_order *o, const spike_event *e, int closed);
int store_put_meta(store_txn *t, const char *name, uint64_t v);
int store_get_meta(store_txn *t, const char *name, uint64_t *v);

/* ---- the feed ------------------------------------------------------------- */

/* The oldest and newest seqs (0 when the feed is empty). */
int store_feed_bounds(store_txn *t, uint64_t *first, uint64_t *last);
/* Records in the feed and the bytes of the pages they take. */
int store_feed_size(store_txn *t, uint64_t *records, uint64_t *bytes);
/* Records with after < seq <= upto, oldest first, up to max; *count gets how
 * many were copied, *next the seq of the last one (after when none). */
int store_feed_read(store_txn *t, uint64_t after, uint64_t upto, spike_change *out, uint32_t max,
                    uint32_t *count, uint64_t *next);
/* Delete the n oldest records; *deleted gets how many went. */
int store_feed_trim(store_txn *t, uint64_t n, uint64_t *deleted);

/* ---- walks ------------------------------------------------------------------ */

/* Call fn for every record, in key order, until it returns non-zero (which
 * is returned). Recovery's walks. */
typedef int (*store_event_fn)(void *arg, const spike_event *e, int closed);
typedef int (*store_order_fn)(void *arg, const order_rec *r);
int store_each_event(store_txn *t, int64_t now_ms, store_event_fn fn, void *arg);
int store_each_order(store_txn *t, store_order_fn fn, void *arg);

#endif /* SPIKE_SCHEMA_H */

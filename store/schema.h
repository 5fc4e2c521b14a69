/*
 * schema.h -- the LMDB environment and the layout of its databases. Every
 * put and get of a record goes through here, so the writer, recovery, the
 * reads and the reference benchmark write byte-identical records.
 *
 *   events  id                         -> event record (codec.h)
 *   orders  id                         -> order record
 *   buyers  user_id, event_id          -> order ids (DUPSORT, DUPFIXED)
 *   keys    event_id, key hash (128b)  -> order id
 *   feed    seq                        -> change record
 *   meta    name                       -> value ("schema", "id_hwm")
 *
 * Integers in keys are big-endian so LMDB's byte order is numeric order.
 * Return values are LMDB's (0, MDB_NOTFOUND, MDB_MAP_FULL, errno values)
 * plus STORE_ECORRUPT for a record that does not decode.
 */
#ifndef SPIKE_SCHEMA_H
#define SPIKE_SCHEMA_H

#include <lmdb.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "spike.h"

#define STORE_SCHEMA_VERSION 1
#define STORE_ECORRUPT (-30400) /* below LMDB's MDB_LAST_ERRCODE range */

typedef struct store {
  MDB_env *env;
  MDB_dbi events, orders, buyers, keys, feed, meta;
} store;

/* Open (creating) dir's environment and databases, checking the schema
 * version. On failure returns non-zero with a sentence in err. */
int store_open(store *s, const char *dir, uint64_t map_size_bytes, unsigned max_readers,
               char *err, size_t errlen);
void store_close(store *s);

/* How much of the map the file has ever used (its high-water mark), in
 * percent. Pages freed inside it are reused, so this never falls. */
uint32_t store_map_used_pct(const store *s);

/* Text for any return value of this module. */
const char *store_strerror(int rc);

static inline void store_be64(uint8_t out[8], uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) out[i] = (uint8_t)v;
}
static inline uint64_t store_get_be64(const uint8_t in[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | in[i];
  return v;
}

/* flags: 0 or MDB_APPEND (the caller knows id is the largest so far). */
int store_put_order(const store *s, MDB_txn *txn, const spike_order *o, unsigned flags);
int store_get_order(const store *s, MDB_txn *txn, uint64_t id, msgpack_zone *z,
                    spike_order *o);
/* Put the order and append its change record (seq, type, at), encoding the
 * order once for both: every order change is these two puts. */
int store_put_order_change(const store *s, MDB_txn *txn, const spike_order *o, unsigned flags,
                           uint64_t seq, spike_change_type type, int64_t at);
int store_put_event(const store *s, MDB_txn *txn, const spike_event *e, int closed);
/* The event's state is computed at now_ms; *closed may be NULL. */
int store_get_event(const store *s, MDB_txn *txn, uint64_t id, msgpack_zone *z, int64_t now_ms,
                    spike_event *e, int *closed);
int store_put_buyer(const store *s, MDB_txn *txn, uint64_t user_id, uint64_t event_id,
                    uint64_t order_id);
int store_put_key(const store *s, MDB_txn *txn, uint64_t event_id, uint64_t k1, uint64_t k2,
                  uint64_t order_id);
int store_append_change(const store *s, MDB_txn *txn, uint64_t seq, spike_change_type type,
                        int64_t at, const spike_order *o, const spike_event *e, int closed);
int store_put_meta(const store *s, MDB_txn *txn, const char *name, uint64_t v);
int store_get_meta(const store *s, MDB_txn *txn, const char *name, uint64_t *v);

/* The newest and oldest feed seqs (0 when the feed is empty). */
int store_feed_bounds(const store *s, MDB_txn *txn, uint64_t *first, uint64_t *last);

#endif /* SPIKE_SCHEMA_H */

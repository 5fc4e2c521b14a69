/*
 * schema.c -- LMDB environment set-up and the record-level puts and gets.
 * Thin on purpose: encoding is codec.c's, batching and failure handling the
 * writer's. What lives here is the key layout and the open-time checks.
 */
#include "schema.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "codec.h"

const char *store_strerror(int rc) {
  if (rc == STORE_ECORRUPT) return "a stored record does not decode";
  return mdb_strerror(rc);
}

static int open_dbi(MDB_txn *txn, const char *name, unsigned flags, MDB_dbi *dbi) {
  return mdb_dbi_open(txn, name, flags | MDB_CREATE, dbi);
}

uint32_t store_map_used_pct(const store *s) {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(s->env, &info);
  mdb_env_stat(s->env, &st);
  uint64_t used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
  return (uint32_t)(used * 100 / info.me_mapsize);
}

int store_open(store *s, const char *dir, uint64_t map_size_bytes, unsigned max_readers,
               char *err, size_t errlen) {
  MDB_txn *txn = NULL;
  const char *what = "mdb_env_create";
  memset(s, 0, sizeof(*s));
  int rc = mdb_env_create(&s->env);
  if (rc != 0) goto fail;
  what = "mdb_env_set_maxdbs";
  if ((rc = mdb_env_set_maxdbs(s->env, 8)) != 0) goto fail;
  what = "mdb_env_set_maxreaders";
  if ((rc = mdb_env_set_maxreaders(s->env, max_readers)) != 0) goto fail;
  what = "mdb_env_set_mapsize";
  if ((rc = mdb_env_set_mapsize(s->env, map_size_bytes)) != 0) goto fail;
  /* NOTLS: read transactions belong to producers, not to OS threads, so an
   * embedding host may move a producer between threads between calls. */
  what = "mdb_env_open";
  if ((rc = mdb_env_open(s->env, dir, MDB_NOTLS | MDB_NORDAHEAD, 0644)) != 0) goto fail;
  int dead = 0;
  mdb_reader_check(s->env, &dead); /* clear slots of crashed readers */

  /* If the file on disk was created with a bigger map, LMDB adopts it;
   * grow ours to match so a smaller flag never shrinks a live store. */
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  if (store_map_used_pct(s) > 80) {
    /* More than 80% used: grow at open, the one moment no reader exists. */
    what = "mdb_env_set_mapsize (grow)";
    if ((rc = mdb_env_set_mapsize(s->env, info.me_mapsize * 2)) != 0) goto fail;
  }

  what = "mdb_txn_begin";
  if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) goto fail;
  what = "mdb_dbi_open";
  if ((rc = open_dbi(txn, "events", 0, &s->events)) != 0 ||
      (rc = open_dbi(txn, "orders", 0, &s->orders)) != 0 ||
      (rc = open_dbi(txn, "buyers", MDB_DUPSORT | MDB_DUPFIXED, &s->buyers)) != 0 ||
      (rc = open_dbi(txn, "keys", 0, &s->keys)) != 0 ||
      (rc = open_dbi(txn, "feed", 0, &s->feed)) != 0 ||
      (rc = open_dbi(txn, "meta", 0, &s->meta)) != 0)
    goto fail;
  uint64_t version = 0;
  rc = store_get_meta(s, txn, "schema", &version);
  if (rc == MDB_NOTFOUND) {
    what = "writing the schema version";
    if ((rc = store_put_meta(s, txn, "schema", STORE_SCHEMA_VERSION)) != 0) goto fail;
  } else if (rc != 0) {
    goto fail;
  } else if (version != STORE_SCHEMA_VERSION) {
    snprintf(err, errlen, "%s: schema version %llu, this build reads %d", dir,
             (unsigned long long)version, STORE_SCHEMA_VERSION);
    mdb_txn_abort(txn);
    mdb_env_close(s->env);
    s->env = NULL;
    return EINVAL;
  }
  what = "mdb_txn_commit";
  rc = mdb_txn_commit(txn);
  txn = NULL; /* freed by commit even when it fails */
  if (rc != 0) goto fail;
  return 0;

fail:
  snprintf(err, errlen, "%s: %s: %s", dir, what, store_strerror(rc));
  if (txn != NULL) mdb_txn_abort(txn);
  if (s->env != NULL) mdb_env_close(s->env);
  s->env = NULL;
  return rc;
}

void store_close(store *s) {
  if (s->env == NULL) return;
  mdb_env_close(s->env);
  s->env = NULL;
}

int store_put_order(const store *s, MDB_txn *txn, const spike_order *o, unsigned flags) {
  uint8_t k[8], v[CODEC_ORDER_MAX];
  store_be64(k, o->id);
  size_t n = codec_encode_order(o, v, sizeof(v));
  if (n == 0) return STORE_ECORRUPT;
  MDB_val key = {sizeof(k), k}, val = {n, v};
  return mdb_put(txn, s->orders, &key, &val, flags);
}

static int append_feed(const store *s, MDB_txn *txn, uint64_t seq, const uint8_t *v, size_t n) {
  uint8_t k[8];
  store_be64(k, seq);
  MDB_val key = {sizeof(k), k}, val = {n, (void *)v};
  /* seqs come from the writer alone, strictly increasing: append. */
  return mdb_put(txn, s->feed, &key, &val, MDB_APPEND);
}

int store_put_order_change(const store *s, MDB_txn *txn, const spike_order *o, unsigned flags,
                           uint64_t seq, spike_change_type type, int64_t at) {
  uint8_t k[8], v[CODEC_ORDER_MAX], c[CODEC_CHANGE_MAX];
  store_be64(k, o->id);
  size_t n = codec_encode_order(o, v, sizeof(v));
  size_t cn = n ? codec_wrap_change(type, at, v, n, c, sizeof(c)) : 0;
  if (cn == 0) return STORE_ECORRUPT;
  MDB_val key = {sizeof(k), k}, val = {n, v};
  int rc = mdb_put(txn, s->orders, &key, &val, flags);
  return rc != 0 ? rc : append_feed(s, txn, seq, c, cn);
}

int store_get_order(const store *s, MDB_txn *txn, uint64_t id, msgpack_zone *z,
                    spike_order *o) {
  uint8_t k[8];
  store_be64(k, id);
  MDB_val key = {sizeof(k), k}, val;
  int rc = mdb_get(txn, s->orders, &key, &val);
  if (rc != 0) return rc;
  if (codec_decode_order(val.mv_data, val.mv_size, z, o) != 0 || o->id != id)
    return STORE_ECORRUPT;
  return 0;
}

int store_put_event(const store *s, MDB_txn *txn, const spike_event *e, int closed) {
  uint8_t k[8], v[CODEC_EVENT_MAX];
  store_be64(k, e->id);
  size_t n = codec_encode_event(e, closed, v, sizeof(v));
  if (n == 0) return STORE_ECORRUPT;
  MDB_val key = {sizeof(k), k}, val = {n, v};
  return mdb_put(txn, s->events, &key, &val, 0);
}

int store_get_event(const store *s, MDB_txn *txn, uint64_t id, msgpack_zone *z, int64_t now_ms,
                    spike_event *e, int *closed) {
  uint8_t k[8];
  store_be64(k, id);
  MDB_val key = {sizeof(k), k}, val;
  int rc = mdb_get(txn, s->events, &key, &val);
  if (rc != 0) return rc;
  if (codec_decode_event(val.mv_data, val.mv_size, z, now_ms, e, closed) != 0 || e->id != id)
    return STORE_ECORRUPT;
  return 0;
}

int store_put_buyer(const store *s, MDB_txn *txn, uint64_t user_id, uint64_t event_id,
                    uint64_t order_id) {
  uint8_t k[16], v[8];
  store_be64(k, user_id);
  store_be64(k + 8, event_id);
  store_be64(v, order_id);
  MDB_val key = {sizeof(k), k}, val = {sizeof(v), v};
  return mdb_put(txn, s->buyers, &key, &val, 0);
}

int store_put_key(const store *s, MDB_txn *txn, uint64_t event_id, uint64_t k1, uint64_t k2,
                  uint64_t order_id) {
  uint8_t k[24], v[8];
  store_be64(k, event_id);
  store_be64(k + 8, k1);
  store_be64(k + 16, k2);
  store_be64(v, order_id);
  MDB_val key = {sizeof(k), k}, val = {sizeof(v), v};
  return mdb_put(txn, s->keys, &key, &val, 0);
}

int store_append_change(const store *s, MDB_txn *txn, uint64_t seq, spike_change_type type,
                        int64_t at, const spike_order *o, const spike_event *e, int closed) {
  uint8_t v[CODEC_CHANGE_MAX];
  size_t n = codec_encode_change(type, at, o, e, closed, v, sizeof(v));
  if (n == 0) return STORE_ECORRUPT;
  return append_feed(s, txn, seq, v, n);
}

int store_put_meta(const store *s, MDB_txn *txn, const char *name, uint64_t v) {
  uint8_t b[8];
  store_be64(b, v);
  MDB_val key = {strlen(name), (void *)name}, val = {sizeof(b), b};
  return mdb_put(txn, s->meta, &key, &val, 0);
}

int store_get_meta(const store *s, MDB_txn *txn, const char *name, uint64_t *v) {
  MDB_val key = {strlen(name), (void *)name}, val;
  int rc = mdb_get(txn, s->meta, &key, &val);
  if (rc != 0) return rc;
  if (val.mv_size != 8) return STORE_ECORRUPT;
  *v = store_get_be64(val.mv_data);
  return 0;
}

int store_feed_bounds(const store *s, MDB_txn *txn, uint64_t *first, uint64_t *last) {
  MDB_cursor *c;
  MDB_val k, v;
  *first = *last = 0;
  int rc = mdb_cursor_open(txn, s->feed, &c);
  if (rc != 0) return rc;
  rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  if (rc == 0 && k.mv_size == 8) {
    *first = store_get_be64(k.mv_data);
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (rc == 0) *last = store_get_be64(k.mv_data);
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

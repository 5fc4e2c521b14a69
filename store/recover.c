/*
 * recover.c -- one read transaction over every database, in dependency
 * order: events, then orders (which name events), then keys. Recovery
 * trusts nothing it can cross-check: the event counters must equal the sums
 * over the orders, since both were written in the same transactions.
 */
#include "recover.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "writer.h"

typedef struct sums {
  uint64_t reserved, sold;
} sums;

static int load_events(spike_engine *e, MDB_txn *txn, msgpack_zone *z, int64_t now,
                       char *err, size_t errlen) {
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, e->st.events, &c);
  if (rc != 0) goto fail;
  while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
    spike_event ev;
    int closed;
    if (codec_decode_event(v.mv_data, v.mv_size, z, now, &ev, &closed) != 0) {
      snprintf(err, errlen, "event record %zu bytes does not decode", v.mv_size);
      mdb_cursor_close(c);
      return SPIKE_ESTORAGE;
    }
    uint32_t slot = slab_load(&e->slab, &ev, closed);
    if (slot == SLAB_NONE) {
      snprintf(err, errlen, "more events on disk than max_events (%u)", e->cfg.max_events);
      mdb_cursor_close(c);
      return SPIKE_EINVAL;
    }
    writer_load_event(e->w, slot, &ev, closed);
  }
  mdb_cursor_close(c);
  if (rc == MDB_NOTFOUND) return SPIKE_OK;
fail:
  snprintf(err, errlen, "reading events: %s", store_strerror(rc));
  return SPIKE_ESTORAGE;
}

static int load_orders(spike_engine *e, MDB_txn *txn, msgpack_zone *z, sums *sum,
                       uint64_t *max_id, char *err, size_t errlen) {
  MDB_cursor *c;
  MDB_val k, v;
  int status = SPIKE_ESTORAGE;
  uint32_t armed = 0;
  int rc = mdb_cursor_open(txn, e->st.orders, &c);
  if (rc != 0) {
    snprintf(err, errlen, "reading orders: %s", store_strerror(rc));
    return SPIKE_ESTORAGE;
  }
  while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
    spike_order o;
    if (codec_decode_order(v.mv_data, v.mv_size, z, &o) != 0) {
      snprintf(err, errlen, "order record %zu bytes does not decode", v.mv_size);
      goto out;
    }
    uint32_t slot = slab_find(&e->slab, o.event_id);
    if (slot == SLAB_NONE) {
      snprintf(err, errlen, "order %" PRIu64 " names missing event %" PRIu64, o.id, o.event_id);
      goto out;
    }
    if (o.id > *max_id) *max_id = o.id;
    if (o.state == SPIKE_ORDER_RESERVED) sum[slot].reserved += o.qty;
    if (o.state == SPIKE_ORDER_PAID) sum[slot].sold += o.qty;
    if (o.state == SPIKE_ORDER_RESERVED || o.state == SPIKE_ORDER_PAID) {
      uint32_t b = lim_upsert(&e->buyers, o.user_id, slot);
      if (b == LIM_FULL) {
        snprintf(err, errlen, "more buyers on disk than max_buyers (%u) holds at 3/4 load",
                 lim_capacity(&e->buyers));
        status = SPIKE_EINVAL;
        goto out;
      }
      /* relaxed: recovery is single-threaded. */
      atomic_fetch_add_explicit(&lim_at(&e->buyers, b)->val, o.qty, memory_order_relaxed);
    }
    if (o.state == SPIKE_ORDER_RESERVED) {
      if (writer_arm(e->w, o.id, o.expires_at) != 0) {
        snprintf(err, errlen, "out of memory arming %u reservations", armed);
        status = SPIKE_EINTERNAL;
        goto out;
      }
      armed++;
    }
  }
  if (rc != MDB_NOTFOUND) {
    snprintf(err, errlen, "reading orders: %s", store_strerror(rc));
    goto out;
  }
  /* relaxed: no other thread exists yet. */
  atomic_store_explicit(&e->armed, armed, memory_order_relaxed);
  if (armed > e->armed_max) e->armed_max = armed;
  status = SPIKE_OK;
out:
  mdb_cursor_close(c);
  return status;
}

static int load_keys(spike_engine *e, MDB_txn *txn, char *err, size_t errlen) {
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(txn, e->st.keys, &c);
  if (rc != 0) goto fail;
  while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
    if (k.mv_size != 24 || v.mv_size != 8) {
      mdb_cursor_close(c);
      snprintf(err, errlen, "idempotency key record has the wrong size");
      return SPIKE_ESTORAGE;
    }
    const uint8_t *kb = k.mv_data;
    uint32_t i = lim_upsert(&e->keys, store_get_be64(kb + 8), store_get_be64(kb + 16));
    if (i == LIM_FULL) {
      mdb_cursor_close(c);
      snprintf(err, errlen, "more idempotency keys on disk than max_keys (%u) holds",
               lim_capacity(&e->keys));
      return SPIKE_EINVAL;
    }
    /* relaxed: recovery is single-threaded. */
    atomic_store_explicit(&lim_at(&e->keys, i)->val, store_get_be64(v.mv_data),
                          memory_order_relaxed);
  }
  mdb_cursor_close(c);
  if (rc == MDB_NOTFOUND) return SPIKE_OK;
fail:
  snprintf(err, errlen, "reading idempotency keys: %s", store_strerror(rc));
  return SPIKE_ESTORAGE;
}

/* Both were written in the same transactions: any difference is damage. */
static int check_sums(spike_engine *e, const sums *sum, char *err, size_t errlen) {
  uint32_t n = atomic_load_explicit(&e->slab.count, memory_order_relaxed);
  for (uint32_t i = 0; i < n; i++) {
    spike_event ev;
    slab_read(slab_at(&e->slab, i), 0, &ev);
    if (ev.reserved != sum[i].reserved || ev.sold != sum[i].sold) {
      snprintf(err, errlen,
               "event %" PRIu64 ": stored reserved/sold %" PRIu64 "/%" PRIu64
               " but its orders hold %" PRIu64 "/%" PRIu64,
               ev.id, ev.reserved, ev.sold, sum[i].reserved, sum[i].sold);
      return SPIKE_ESTORAGE;
    }
  }
  return SPIKE_OK;
}

int recover(spike_engine *e, char *err, size_t errlen) {
  MDB_txn *txn;
  msgpack_zone z;
  int64_t now = engine_now_ms();
  int rc = mdb_txn_begin(e->st.env, NULL, MDB_RDONLY, &txn);
  if (rc != 0) {
    snprintf(err, errlen, "mdb_txn_begin: %s", mdb_strerror(rc));
    return SPIKE_ESTORAGE;
  }
  sums *sum = calloc(e->cfg.max_events, sizeof(*sum));
  if (sum == NULL || !msgpack_zone_init(&z, 1024)) {
    free(sum);
    mdb_txn_abort(txn);
    snprintf(err, errlen, "out of memory");
    return SPIKE_EINTERNAL;
  }
  uint64_t hwm = 0, max_id = 0, first = 0, last = 0;
  int status = SPIKE_ESTORAGE;
  rc = store_get_meta(&e->st, txn, "id_hwm", &hwm);
  if (rc != 0 && rc != MDB_NOTFOUND) {
    snprintf(err, errlen, "reading id_hwm: %s", store_strerror(rc));
    goto out;
  }
  if ((status = load_events(e, txn, &z, now, err, errlen)) != SPIKE_OK) goto out;
  if ((status = load_orders(e, txn, &z, sum, &max_id, err, errlen)) != SPIKE_OK) goto out;
  if ((status = check_sums(e, sum, err, errlen)) != SPIKE_OK) goto out;
  if ((status = load_keys(e, txn, err, errlen)) != SPIKE_OK) goto out;
  if ((rc = store_feed_bounds(&e->st, txn, &first, &last)) != 0) {
    snprintf(err, errlen, "reading the feed: %s", store_strerror(rc));
    status = SPIKE_ESTORAGE;
    goto out;
  }
  if (max_id > hwm) hwm = max_id;
  writer_load_feed(e->w, first, last);
  e->id_floor_ms = ids_floor_ms(hwm, now);
  writer_load_orders_max(e->w, max_id, hwm, e->id_floor_ms);
  status = SPIKE_OK;
out:
  msgpack_zone_destroy(&z);
  free(sum);
  mdb_txn_abort(txn);
  return status;
}

/*
 * recover.c -- one read snapshot over the whole store, in dependency order:
 * events, then orders (which name events). Every index the engine keeps in
 * memory is derived here from the order records: the units each buyer
 * holds, the expiry timers, the idempotency keys, and each user's newest
 * order (the head of the chain through the records' prev, the one with the
 * highest rseq). Recovery trusts nothing it can cross-check: the event
 * counters must equal the sums over the orders, since both were written in
 * the same transactions.
 */
#include "recover.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "writer.h"

typedef struct sums {
  uint64_t reserved, sold;
} sums;

/* Orders are applied RECOVER_AHEAD at a time: as each is read, the lines
 * of the tables it will probe (users, buyers, keys: at random) are asked
 * for; when the batch is full it is applied in read order, the users
 * probes first, then the chain heads they found (asked for in between).
 * The misses of a batch overlap instead of adding up. */
typedef struct pending {
  order_rec rr;
  uint32_t slot;
  uint32_t u;    /* users entry, after the first pass */
  uint8_t holds; /* reserved or paid: its units count against the buyer */
  uint64_t utag, btag, ktag;
} pending;

/* What the walks share; the first refusal's status and sentence. */
typedef struct rec {
  spike_engine *e;
  sums *sum;
  uint64_t *head_rseq; /* per users entry: the rseq of its head so far */
  uint64_t max_id;
  uint32_t armed;
  uint32_t npending; /* read, not yet applied (see load_order) */
  pending pending[RECOVER_AHEAD];
  int status;
  char *err;
  size_t errlen;
} rec;

/* Stop a walk with a status and a sentence. */
static int refuse(rec *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int refuse(rec *r, int status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->err, r->errlen, fmt, ap);
  va_end(ap);
  r->status = status;
  return -1;
}

static int load_event(void *arg, const spike_event *ev, int closed) {
  rec *r = arg;
  uint32_t slot = slab_load(&r->e->slab, ev, closed);
  if (slot == SLAB_NONE)
    return refuse(r, SPIKE_EINVAL, "more events on disk than max_events (%u)",
                  r->e->cfg.max_events);
  writer_load_event(r->e->w, slot, ev, closed);
  return 0;
}

/* Apply everything but the chain head; find the users entry. */
static int apply_one(rec *r, pending *pd) {
  spike_engine *e = r->e;
  const order_rec *rr = &pd->rr;
  const spike_order *o = &rr->o;
  uint32_t slot = pd->slot;
  if (o->id > r->max_id) r->max_id = o->id;
  if (o->state == SPIKE_ORDER_RESERVED) r->sum[slot].reserved += o->qty;
  if (o->state == SPIKE_ORDER_PAID) r->sum[slot].sold += o->qty;
  if (pd->holds) {
    uint32_t b = lim_upsert_tag(&e->buyers, o->user_id, slot, pd->btag);
    if (b == LIM_FULL)
      return refuse(r, SPIKE_EINVAL, "more buyers on disk than max_buyers (%u) holds at 3/4 load",
                    lim_capacity(&e->buyers));
    /* relaxed: recovery is single-threaded. */
    atomic_fetch_add_explicit(&lim_at(&e->buyers, b)->val, o->qty, memory_order_relaxed);
  }
  if (o->state == SPIKE_ORDER_RESERVED) {
    if (writer_arm(e->w, o->id, o->expires_at) != 0)
      return refuse(r, SPIKE_EINTERNAL, "out of memory arming %u reservations", r->armed);
    r->armed++;
  }
  /* relaxed throughout: recovery is single-threaded. */
  if (rr->keyed) {
    uint32_t k = lim_upsert_tag(&e->keys, rr->key1, rr->key2, pd->ktag);
    if (k == LIM_FULL)
      return refuse(r, SPIKE_EINVAL, "more idempotency keys on disk than max_keys (%u) holds",
                    lim_capacity(&e->keys));
    atomic_store_explicit(&lim_at(&e->keys, k)->val, o->id, memory_order_relaxed);
  }
  pd->u = lim_upsert_tag(&e->users, o->user_id, 0, pd->utag);
  if (pd->u == LIM_FULL)
    return refuse(r, SPIKE_EINVAL, "more users on disk than max_users (%u%s) holds at 3/4 load",
                  lim_capacity(&e->users),
                  e->users_as_buyers ? ", max_buyers's: max_users was 0" : "");
  __builtin_prefetch(&e->user_head[pd->u], 1);
  __builtin_prefetch(&r->head_rseq[pd->u], 1);
  return 0;
}

/* The head is the last order the writer committed for the user: highest
 * rseq, then (schema 1's orders have none) highest id. */
static void apply_head(rec *r, const pending *pd) {
  const order_rec *rr = &pd->rr;
  _Atomic uint64_t *head_at = &r->e->user_head[pd->u];
  /* relaxed: recovery is single-threaded. */
  uint64_t head = atomic_load_explicit(head_at, memory_order_relaxed);
  if (head == 0 || rr->rseq > r->head_rseq[pd->u] ||
      (rr->rseq == r->head_rseq[pd->u] && rr->o.id > head)) {
    atomic_store_explicit(head_at, rr->o.id, memory_order_relaxed);
    r->head_rseq[pd->u] = rr->rseq;
  }
}

/* Apply the batch in read order. 0, or -1 with the refusal set. */
static int flush_pending(rec *r) {
  for (uint32_t i = 0; i < r->npending; i++)
    if (apply_one(r, &r->pending[i]) != 0) return -1;
  for (uint32_t i = 0; i < r->npending; i++) apply_head(r, &r->pending[i]);
  r->npending = 0;
  return 0;
}

static int load_order(void *arg, const order_rec *rr) {
  rec *r = arg;
  spike_engine *e = r->e;
  const spike_order *o = &rr->o;
  uint32_t slot = slab_find(&e->slab, o->event_id);
  if (slot == SLAB_NONE) {
    /* the orders read before it first: their refusal, if any, comes first */
    if (flush_pending(r) != 0) return -1;
    return refuse(r, SPIKE_ESTORAGE, "order %" PRIu64 " names missing event %" PRIu64, o->id,
                  o->event_id);
  }
  pending *pd = &r->pending[r->npending++];
  pd->rr = *rr;
  pd->slot = slot;
  pd->holds = o->state == SPIKE_ORDER_RESERVED || o->state == SPIKE_ORDER_PAID;
  pd->utag = lim_tag(o->user_id, 0);
  lim_prefetch(&e->users, pd->utag);
  if (pd->holds) {
    pd->btag = lim_tag(o->user_id, slot);
    lim_prefetch(&e->buyers, pd->btag);
  }
  if (rr->keyed) {
    pd->ktag = lim_tag(rr->key1, rr->key2);
    lim_prefetch(&e->keys, pd->ktag);
  }
  return r->npending == RECOVER_AHEAD ? flush_pending(r) : 0;
}

/* Both were written in the same transactions: any difference is damage. */
static int check_sums(rec *r) {
  spike_engine *e = r->e;
  uint32_t n = atomic_load_explicit(&e->slab.count, memory_order_relaxed);
  for (uint32_t i = 0; i < n; i++) {
    spike_event ev;
    slab_read(slab_at(&e->slab, i), 0, &ev);
    if (ev.reserved != r->sum[i].reserved || ev.sold != r->sum[i].sold)
      return refuse(r, SPIKE_ESTORAGE,
                    "event %" PRIu64 ": stored reserved/sold %" PRIu64 "/%" PRIu64
                    " but its orders hold %" PRIu64 "/%" PRIu64,
                    ev.id, ev.reserved, ev.sold, r->sum[i].reserved, r->sum[i].sold);
  }
  return 0;
}

/* A walk's result: 0, or the status set by a refusal, or a store error. */
static int walked(rec *r, int rc, const char *what) {
  if (rc == 0) return SPIKE_OK;
  if (r->status != SPIKE_OK) return r->status;
  snprintf(r->err, r->errlen, "reading %s: %s", what, store_strerror(rc));
  return rc == ENOMEM ? SPIKE_EINTERNAL : SPIKE_ESTORAGE;
}

int recover(spike_engine *e, char *err, size_t errlen) {
  int64_t now = engine_now_ms();
  store_txn *t = store_txn_new(e->st);
  rec r = {.e = e, .status = SPIKE_OK, .err = err, .errlen = errlen};
  r.sum = calloc(e->cfg.max_events, sizeof(*r.sum));
  r.head_rseq = calloc(lim_capacity(&e->users), sizeof(*r.head_rseq));
  if (t == NULL || r.sum == NULL || r.head_rseq == NULL) {
    store_txn_free(t);
    free(r.sum);
    free(r.head_rseq);
    snprintf(err, errlen, "out of memory");
    return SPIKE_EINTERNAL;
  }
  uint64_t hwm = 0, first = 0, last = 0;
  int status;
  int rc = store_read_begin(t);
  if (rc != 0) {
    snprintf(err, errlen, "opening a snapshot: %s", store_strerror(rc));
    status = rc == ENOMEM ? SPIKE_EINTERNAL : SPIKE_ESTORAGE;
    goto out;
  }
  rc = store_get_meta(t, "id_hwm", &hwm);
  if (rc != 0 && rc != STORE_NOTFOUND) {
    status = walked(&r, rc, "id_hwm");
    goto out;
  }
  if ((status = walked(&r, store_each_event(t, now, load_event, &r), "events")) != SPIKE_OK ||
      (status = walked(&r, store_each_order(t, load_order, &r), "orders")) != SPIKE_OK)
    goto out;
  if (flush_pending(&r) != 0) { /* the last, partial batch */
    status = r.status;
    goto out;
  }
  /* relaxed: no other thread exists yet. */
  atomic_store_explicit(&e->armed, r.armed, memory_order_relaxed);
  if (r.armed > e->armed_max) {
    /* Live reservations are owed to their buyers: the bound rises to hold
     * them (refusing to open would leave them unpaid until a restart with
     * a larger flag, and expiry frees them anyway). Said, not silent. */
    engine_log(e, LOG_WARN, "engine", NULL, 0,
               "%u live reservations on disk, more than max_reserved (%u): the bound is raised to "
               "%u until a restart; until they are paid, cancelled or expire, new reserves get "
               "507",
               r.armed, e->armed_max, r.armed);
    e->armed_max = r.armed;
  }
  if (check_sums(&r) != 0) {
    status = r.status;
    goto out;
  }
  if ((rc = store_feed_bounds(t, &first, &last)) != 0) {
    status = walked(&r, rc, "the feed");
    goto out;
  }
  if (r.max_id > hwm) hwm = r.max_id;
  writer_load_feed(e->w, first, last);
  e->id_floor_ms = ids_floor_ms(hwm, now);
  store_read_end(t);
  /* The floor is stored before any id is minted above it. Soon after a
   * restart the floor is ahead of the clock, so this life mints at it; if
   * it died before its first commit, the next life would compute the same
   * floor from the same mark and mint the ids this one answered with
   * ack=memory again. */
  hwm = (((uint64_t)e->id_floor_ms + 1) << IDS_MS_SHIFT) - 1; /* the floor's last id */
  rc = store_write_begin(t);
  if (rc == 0) rc = store_put_meta(t, "id_hwm", hwm);
  if (rc == 0) rc = store_write_commit(t, 0);
  else store_write_abort(t);
  if (rc != 0) {
    snprintf(err, errlen, "storing the id floor: %s", store_strerror(rc));
    status = rc == ENOMEM ? SPIKE_EINTERNAL : SPIKE_ESTORAGE;
    goto out;
  }
  writer_load_orders_max(e->w, r.max_id, hwm, e->id_floor_ms);
  status = SPIKE_OK;
out:
  store_read_end(t);
  store_txn_free(t);
  free(r.sum);
  free(r.head_rseq);
  return status;
}

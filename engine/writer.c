/*
 * writer.c -- the one thread that writes the store. See writer.h for the cycle
 * and the take/give rule that keeps failed batches safe.
 *
 * Trade-off: every change funnels through one thread and one transaction
 * per batch. That caps write throughput at what one core can encode and put,
 * but it makes ordering trivial (the feed's seq is a plain counter, order
 * state transitions need no locks) and amortises each fsync over the whole
 * batch, which is where durable throughput comes from.
 *
 * The writer owns: the timing wheel, the committed ("shadow") counters of
 * every event, the feed seq, and the lists of ops waiting for a commit.
 */
#include "writer.h"

#include <assert.h>
#include <errno.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "log.h"
#include "order.h"
#include "thread.h"
#include "wheel.h"

enum fx_type {
  FX_SELL = 1,  /* pay: reserved -> sold; the reservation ends */
  FX_RELEASE,   /* cancel / expiry: reserved -> available, buyer units back; ends */
  FX_VISIBLE,   /* a created event becomes visible */
  FX_RESTOCK,
  FX_CLOSE,
};

/* An effect applied to memory after the commit (a "give"). */
typedef struct fx {
  uint8_t type;
  uint8_t popped;  /* the reservation's timer already fired */
  uint8_t expiry;  /* count it in orders_expired */
  uint32_t slot;
  uint32_t qty;
  uint64_t user;
  uint64_t order;  /* FX_SELL, FX_RELEASE: the reservation that ends */
  uint64_t add;
} fx;

enum undo_type {
  UD_RESERVE = 1, /* give back a producer's take, disarm its timer */
  UD_REARM,       /* a popped wheel entry goes back */
  UD_CREATE,      /* a created slot dies */
};

/* What to undo in memory when the batch fails. */
typedef struct undo {
  uint8_t type;
  uint32_t slot;
  uint32_t qty;
  uint32_t buyer_idx;
  uint32_t key_idx;
  uint64_t id;
  int64_t deadline;
} undo;

/* An event's counters as committed (or as this batch will commit them). */
typedef struct shadow {
  uint64_t total, reserved, sold;
  uint64_t batch;  /* the batch that last saved this slot */
  uint8_t closed;
  /* The writer's copy of what never changes: reading the slab's hot line,
   * which producers CAS all the time, would cost a transfer per order. */
  uint32_t pay_timeout_s;
  uint64_t event_id;
  int64_t price;
} shadow;

/* A feed wait a host ended (spike_feed_wait_end): the op and its producer,
 * compared with the parked ones, never read, and where the end came in the
 * rings' order (no): it ends only a wait parked before it, never a new wait
 * the host made with the same op once the old one was answered. */
typedef struct feed_end {
  uintptr_t op, producer;
  uint64_t no;
} feed_end;

typedef struct oplist {
  spike_op *head, *tail;
  uint32_t n;
} oplist;

/* The orders this batch wrote: a verdict read from one of them stands or
 * falls with the batch. Open addressing, stamped with the batch number so
 * that a new batch starts empty without clearing. */
typedef struct touched {
  uint64_t id;
  uint64_t batch;
} touched;

/* Users whose newest order this batch wrote: the chain head each will have
 * once the batch commits (published to the users table only then, so a
 * reader never follows a head its snapshot does not hold). Open addressing
 * by user entry, stamped like touched. */
typedef struct head {
  uint32_t user_idx;
  uint64_t order;
  uint64_t batch;
} head;

struct writer {
  spike_engine *e;
  wheel wheel;       /* on the wall clock: the one deadlines are promised in */
  shadow *sh;        /* per slot */
  uint32_t *dirty;   /* slots touched in this batch */
  shadow *saved;     /* their values before it */
  uint32_t ndirty;
  uint64_t batch;
  fx *fx;
  uint32_t nfx;
  undo *ud;
  uint32_t nud;
  uint32_t cap;      /* batch_max: messages + expiries per batch */
  uint32_t n;        /* used of cap in this batch */
  uint32_t acked;    /* reserves in this batch acknowledged at enqueue */
  uint32_t reserves; /* reserves written in this batch */
  uint64_t room_reserves; /* reserves committed since the last refusal for room */
  int64_t room_asked_ms;  /* monotonic: the last store_has_room after a commit */
  touched *touched;
  uint32_t touched_mask;
  head *heads;       /* touched_mask + 1 slots */
  uint32_t *head_list; /* the slots used in this batch */
  uint32_t nheads;
  oplist done;       /* complete after the commit; ESTORAGE if it fails */
  oplist unsynced;   /* committed, answered once the commit is durable */
  uint32_t acked_unsynced; /* memory acks in the unsynced batch */
  uint64_t seq_unsynced;   /* the feed seq the unsynced batch reached */
  uint64_t unsynced_batch; /* the batch number that left it; 0: none */
  oplist final;      /* decided whatever the commit does */
  oplist deferred;   /* waiting for an order still in a ring */
  oplist waiters;    /* parked feed waits */
  feed_end *ends;    /* waits to end at this cycle's settle (MSG_FEED_END); cap */
  uint32_t nends;
  uint64_t feed_no;  /* feed waits and ends taken, in ring order (feed_end.no) */
  store_txn *txn;    /* the batch's write transaction, when open */
  int writes;
  int deferred_meta; /* the last commit left its meta page to the next */
  uint64_t paced_from; /* monotonic ns: when the last batch that wrote began */
  uint64_t seq, seq_committed, feed_first;
  uint64_t seq_durable;  /* what readers of the feed may see */
  uint64_t orders_max;
  uint64_t hwm;
  int64_t now;       /* wall clock: what records say */
  int64_t mono;      /* monotonic: what timers run on */
  uint32_t rr;
  uint64_t signal;   /* producers to wake, one bit per index */
  /* Per producer: the largest order id taken from its ring, or below its
   * first id of this run. An id above it that the producer has minted is
   * still on its way. */
  uint64_t drained[SPIKE_PRODUCERS_MAX];
  /* After STORE_MAP_FULL or STORE_NOSPACE, due expiries wait (they would fail again and, being
   * due, be retried at once): 100 ms doubling to 5 s, reset by a commit. */
  int64_t expire_after_ms; /* monotonic */
  int64_t probe_after_ms;  /* monotonic: a full disk's next probing commit (room_probe) */
  uint32_t expire_backoff_ms;
  int64_t last_fail_log_ms; /* monotonic */
  int64_t readers_checked_ms; /* monotonic: the last sweep of dead readers */
  uint32_t fails_unlogged;  /* batches refused for room since the last line */
  uint32_t fail_ops;        /* the last one's ops */
  int fail_rc;              /* and its error */
};

/* One bit per producer in writer.signal, one id space per producer. */
_Static_assert(SPIKE_PRODUCERS_MAX <= 64, "writer.signal is a 64-bit mask");
_Static_assert(SPIKE_PRODUCERS_MAX <= IDS_PRODUCERS, "ids give each producer its own space");

#define EXPIRE_BACKOFF_MIN_MS 100
#define EXPIRE_BACKOFF_MAX_MS 5000
/* How long an op waits for an order that is still in a ring. A ring is
 * drained within a few batches; this bounds a wait for an id that was
 * minted but never sent as an order (an event's id). */
#define DEFER_MAX_MS 2000
/* A full disk counts as full until this process could allocate this much
 * there, or an eighth of the file system if less (store_has_room; room_probe
 * says why). */
#define ROOM_BACK_BYTES (4u << 20)

/* ---- small helpers --------------------------------------------------- */

static void list_push(oplist *l, spike_op *op) {
  OP(op)->next_ = NULL;
  if (l->tail == NULL)
    l->head = op;
  else
    OP(l->tail)->next_ = op;
  l->tail = op;
  l->n++;
}

static oplist list_take(oplist *l) {
  oplist out = *l;
  memset(l, 0, sizeof(*l));
  return out;
}

/* Queue op's completion, delivered after the batch. final: the result does
 * not depend on this batch's commit (a verdict on committed state, a feed
 * wait), so it stands even when the commit fails. */
static void finish(writer *w, spike_op *op, int status, int final) {
  op->status = status;
  list_push(final ? &w->final : &w->done, op);
}

/* Fail every op of a list (taken whole) with SPIKE_ESTORAGE and why. Returns
 * how many. */
static uint32_t fail_all(writer *w, oplist *l, const char *why) {
  oplist all = list_take(l);
  for (spike_op *op = all.head, *next; op != NULL; op = next) {
    next = OP(op)->next_;
    op->detail = why;
    op->replayed = 0;
    finish(w, op, SPIKE_ESTORAGE, 0);
  }
  return all.n;
}

static uint32_t touched_home(const writer *w, uint64_t id) {
  return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & w->touched_mask;
}

static void touched_add(writer *w, uint64_t id) {
  for (uint32_t h = touched_home(w, id);; h = (h + 1) & w->touched_mask) {
    touched *t = &w->touched[h];
    if (t->batch != w->batch || t->id == id) {
      t->id = id;
      t->batch = w->batch;
      return;
    }
  }
}

static int touched_has(const writer *w, uint64_t id) {
  for (uint32_t h = touched_home(w, id);; h = (h + 1) & w->touched_mask) {
    const touched *t = &w->touched[h];
    if (t->batch != w->batch) return 0;
    if (t->id == id) return 1;
  }
}


static int txn_begin(writer *w) {
  if (store_txn_open(w->txn)) return 0;
  return store_write_begin(w->txn);
}

static void touch(writer *w, uint32_t slot) {
  shadow *s = &w->sh[slot];
  if (s->batch == w->batch) return;
  assert(w->ndirty < w->e->cfg.max_events);
  w->saved[w->ndirty] = *s;
  w->dirty[w->ndirty++] = slot;
  s->batch = w->batch;
}

static void add_fx(writer *w, fx f) {
  assert(w->nfx < w->cap);
  w->fx[w->nfx++] = f;
}

static void add_undo(writer *w, undo u) {
  assert(w->nud < w->cap);
  w->ud[w->nud++] = u;
}

static void event_snapshot(const writer *w, uint32_t slot, spike_event *out) {
  const slab_event *se = &w->e->slab.ev[slot];
  const shadow *s = &w->sh[slot];
  memset(out, 0, sizeof(*out));
  out->id = se->id;
  memcpy(out->name, se->name, se->name_len + 1);
  out->price = se->price;
  out->stock_total = s->total;
  out->reserved = s->reserved;
  out->sold = s->sold;
  assert(s->reserved + s->sold <= s->total); /* I1, on disk */
  out->available = s->total - s->reserved - s->sold;
  out->start_at = se->start_at;
  out->end_at = se->end_at;
  out->per_user_limit = se->per_user_limit;
  out->pay_timeout_s = se->pay_timeout_s;
  out->state = codec_event_state(s->closed, w->now, se->start_at, se->end_at, out->available);
}

static int feed_event(writer *w, spike_change_type type, uint32_t slot) {
  spike_event ev;
  event_snapshot(w, slot, &ev);
  w->writes = 1;
  return store_append_change(w->txn, ++w->seq, type, w->now, NULL, &ev,
                             w->sh[slot].closed);
}

/* Write an order and its change record; ids are appended when they are the
 * largest so far (one producer, or several in step), put otherwise. */
static int write_order(writer *w, const order_rec *r, spike_change_type type, int64_t at) {
  uint64_t id = r->o.id;
  w->writes = 1;
  touched_add(w, id);
  int rc = store_put_order_change(w->txn, r, id > w->orders_max, ++w->seq, type, at);
  if (rc == 0 && id > w->orders_max) w->orders_max = id;
  return rc;
}

static uint32_t head_slot(const writer *w, uint32_t user_idx) {
  uint32_t h = (user_idx * 0x9E3779B1u) & w->touched_mask;
  while (w->heads[h].batch == w->batch && w->heads[h].user_idx != user_idx)
    h = (h + 1) & w->touched_mask;
  return h;
}

/* The user's newest order as of this point in the batch. */
static uint64_t head_get(writer *w, uint32_t user_idx) {
  const head *hd = &w->heads[head_slot(w, user_idx)];
  if (hd->batch == w->batch) return hd->order;
  /* relaxed: the writer is the only thread that stores it. */
  return atomic_load_explicit(&w->e->user_head[user_idx], memory_order_relaxed);
}

static void head_set(writer *w, uint32_t user_idx, uint64_t order) {
  uint32_t h = head_slot(w, user_idx);
  head *hd = &w->heads[h];
  if (hd->batch != w->batch) {
    assert(w->nheads < w->cap);
    w->head_list[w->nheads++] = h;
    hd->batch = w->batch;
    hd->user_idx = user_idx;
  }
  hd->order = order;
}

/* ---- applying messages ------------------------------------------------ */

/* Give a reserve's takes back: its batch failed, it never reached one, or
 * the writer refused it. */
static void undo_reserve(writer *w, uint32_t slot, uint32_t qty, uint32_t buyer_idx,
                         uint32_t key_idx, uint64_t order_id) {
  spike_engine *e = w->e;
  slab_release(slab_at(&e->slab, slot), qty);
  lim_give(lim_at(&e->buyers, buyer_idx), qty);
  if (key_idx != LIM_FULL) lim_key_unbind(lim_at(&e->keys, key_idx), order_id);
  /* relaxed: a bound, not a publication. */
  atomic_fetch_sub_explicit(&e->armed, 1, memory_order_relaxed);
}

static int apply_reserve(writer *w, const msg *m) {
  spike_engine *e = w->e;
  shadow *s = &w->sh[m->event_slot];
  if (m->op == NULL) {
    w->acked++;
  } else if (s->closed) {
    /* The close was applied first (in this batch or an earlier one) and
     * has completed or will complete before this: no reserve may follow it.
     * A reserve acknowledged at enqueue is committed anyway: it was
     * confirmed before the close could complete (the producer saw the
     * event open), and a confirmed order is never dropped. */
    undo_reserve(w, m->event_slot, m->qty, m->buyer_idx, m->key_idx, m->order_id);
    finish(w, m->op, SPIKE_ENOTLIVE, 0);
    return 0;
  }
  order_rec r;
  memset(&r, 0, sizeof(r));
  spike_order *o = &r.o;
  o->id = m->order_id;
  o->event_id = s->event_id;
  o->user_id = m->user_id;
  o->qty = m->qty;
  o->amount = s->price * (int64_t)m->qty;
  o->state = SPIKE_ORDER_RESERVED;
  o->created_at = m->created_at;
  o->expires_at = m->created_at + (int64_t)s->pay_timeout_s * 1000;
  /* The indexes recovery derives: the user's chain, in commit order (rseq
   * is the seq write_order gives its change record), and the key. */
  r.prev = head_get(w, m->user_idx);
  r.rseq = w->seq + 1;
  if (m->key_idx != LIM_FULL) {
    const lim_entry *k = lim_at(&e->keys, m->key_idx);
    r.keyed = 1;
    r.key1 = k->k1;
    r.key2 = k->k2;
  }

  /* Register the undo and arm the timer before any put: whatever fails
   * below, the take is given back and the timer disarmed with it. */
  add_undo(w, (undo){.type = UD_RESERVE, .slot = m->event_slot, .qty = m->qty,
                     .buyer_idx = m->buyer_idx, .key_idx = m->key_idx, .id = o->id});
  int armed = wheel_arm(&w->wheel, o->id, o->expires_at);
  assert(armed == 0); /* the producers' armed bound keeps a free entry */
  (void)armed;
  if (m->op != NULL) finish(w, m->op, SPIKE_OK, 0);

  touch(w, m->event_slot);
  s->reserved += m->qty;
  assert(s->reserved + s->sold <= s->total); /* I1: the producer's CAS held */

  int rc = txn_begin(w);
  if (rc == 0) rc = write_order(w, &r, SPIKE_CHANGE_ORDER_RESERVED, o->created_at);
  if (rc == 0) {
    head_set(w, m->user_idx, o->id);
    w->reserves++;
  }
  return rc;
}

/* Expire a reserved order inside this batch. popped: its timer fired. */
static int expire_order(writer *w, order_rec *r, uint32_t slot, int popped) {
  spike_order *o = &r->o;
  assert(o->state == SPIKE_ORDER_RESERVED);
  o->state = SPIKE_ORDER_EXPIRED;
  /* When it expired, the same whether the wheel fired on time or a restart
   * found it overdue; the feed record's time says when that was recorded. */
  o->cancelled_at = o->expires_at;
  shadow *s = &w->sh[slot];
  touch(w, slot);
  assert(s->reserved >= o->qty);
  s->reserved -= o->qty;
  add_fx(w, (fx){.type = FX_RELEASE, .popped = (uint8_t)popped, .expiry = 1, .slot = slot,
                 .qty = o->qty, .user = o->user_id, .order = o->id});
  return write_order(w, r, SPIKE_CHANGE_ORDER_EXPIRED, w->now);
}

/* An order id that some producer minted but whose reserve the writer has
 * not taken from that producer's ring yet. */
static int in_flight(const writer *w, uint64_t order_id) {
  uint32_t pi = ids_producer(order_id);
  if (pi >= w->e->cfg.max_producers || order_id <= w->drained[pi]) return 0;
  /* acquire: the producer mints before it publishes; a stale value can only
   * make this answer "not found" for an order nobody could know of yet. */
  return order_id <= atomic_load_explicit(&w->e->producers[pi].ids.last, memory_order_acquire);
}

/* Park op until the order it names has come out of its ring. */
static void defer(writer *w, spike_op *op) {
  if (OP(op)->deadline_ == 0) OP(op)->deadline_ = w->mono + DEFER_MAX_MS;
  list_push(&w->deferred, op);
}

/* Pay or cancel: decided here, on the one thread that writes orders, so a
 * pay racing a cancel or an expiry has exactly one winner. */
static int apply_order_op(writer *w, spike_op *op) {
  order_rec r;
  spike_order *o = &r.o;
  int rc = txn_begin(w);
  if (rc != 0) {
    finish(w, op, SPIKE_ESTORAGE, 0);
    return rc;
  }
  rc = store_get_order_rec(w->txn, OP(op)->a_, &r);
  if (rc == STORE_NOTFOUND) {
    /* With ack=memory a reserve answered on one producer can be paid on
     * another before the writer has taken it from the first one's ring. */
    if (!in_flight(w, OP(op)->a_)) {
      finish(w, op, SPIKE_ENOORDER, 1);
    } else if (OP(op)->deadline_ == 0 || w->mono < OP(op)->deadline_) {
      defer(w, op);
    } else {
      op->detail = "the order is still on its way";
      finish(w, op, SPIKE_EBUSY, 1);
    }
    return 0;
  }
  if (rc != 0) {
    finish(w, op, SPIKE_ESTORAGE, 0);
    return rc;
  }
  if (OP(op)->c_ != 0 && o->event_id != OP(op)->c_) {
    /* Not found where it was looked for; final as below. */
    finish(w, op, SPIKE_ENOORDER, !touched_has(w, o->id));
    return 0;
  }
  if (OP(op)->b_ != 0 && o->user_id != OP(op)->b_) {
    /* Final unless this batch wrote the order: then it falls with it. */
    op->detail = "not your order";
    finish(w, op, SPIKE_EFORBIDDEN, !touched_has(w, o->id));
    return 0;
  }
  uint32_t slot = slab_find(&w->e->slab, o->event_id);
  assert(slot != SLAB_NONE);
  if (o->state == SPIKE_ORDER_RESERVED && w->now >= o->expires_at) {
    /* Past its deadline: it is expired, whether or not its timer fired. */
    rc = expire_order(w, &r, slot, 0);
    if (rc != 0) {
      finish(w, op, SPIKE_ESTORAGE, 0);
      return rc;
    }
  }
  int pay = OP(op)->type_ == MSG_PAY;
  order_action action = ORDER_CANCEL;
  if (pay)
    action = o->state == SPIKE_ORDER_PAID && strlen(o->payment_id) == OP(op)->pid_len_ &&
                     memcmp(o->payment_id, OP(op)->pid_, OP(op)->pid_len_) == 0
                 ? ORDER_PAY_SAME
                 : ORDER_PAY_OTHER;
  spike_order_state next;
  order_verdict verdict = order_decide(o->state, action, &next);
  if (verdict != ORDER_APPLY) {
    op->r.order = *o;
    op->replayed = verdict == ORDER_REPEAT;
    /* A verdict on a state this batch wrote falls with the batch. */
    finish(w, op, verdict == ORDER_REPEAT ? SPIKE_OK : SPIKE_ESTATE, !touched_has(w, o->id));
    return 0;
  }
  shadow *s = &w->sh[slot];
  touch(w, slot);
  assert(s->reserved >= o->qty);
  s->reserved -= o->qty;
  o->state = next;
  if (pay) {
    s->sold += o->qty;
    o->paid_at = w->now;
    memcpy(o->payment_id, OP(op)->pid_, OP(op)->pid_len_);
    o->payment_id[OP(op)->pid_len_] = '\0';
    add_fx(w, (fx){.type = FX_SELL, .slot = slot, .qty = o->qty, .order = o->id});
  } else {
    o->cancelled_at = w->now;
    add_fx(w, (fx){.type = FX_RELEASE, .slot = slot, .qty = o->qty, .user = o->user_id,
                   .order = o->id});
  }
  op->r.order = *o;
  finish(w, op, SPIKE_OK, 0);
  return write_order(w, &r, pay ? SPIKE_CHANGE_ORDER_PAID : SPIKE_CHANGE_ORDER_CANCELLED, w->now);
}

/* A retried idempotency key: answered, or deferred while its order is not
 * applied yet; 0 or a store error. */
static int apply_replay(writer *w, spike_op *op) {
  lim_entry *k = lim_at(&w->e->keys, OP(op)->idx_);
  if (lim_val(k) != OP(op)->a_) {
    /* The original was refused here and unbound the key: by a close that
     * came first (the retry cannot buy either), or with its failed batch. */
    if (w->sh[OP(op)->slot_].closed) {
      finish(w, op, SPIKE_ENOTLIVE, 0);
    } else {
      op->detail = "the original request failed";
      finish(w, op, SPIKE_ESTORAGE, 1);
    }
    return 0;
  }
  int rc = txn_begin(w);
  if (rc == 0) rc = store_get_order(w->txn, OP(op)->a_, &op->r.order);
  if (rc == STORE_NOTFOUND) {
    /* The key was bound before the original was sent, so it is on its way. */
    if (OP(op)->deadline_ == 0 || w->mono < OP(op)->deadline_) {
      defer(w, op);
    } else {
      op->detail = "the original request is still in progress";
      finish(w, op, SPIKE_EBUSY, 1);
    }
    return 0;
  }
  if (rc != 0) {
    finish(w, op, SPIKE_ESTORAGE, 0);
    return rc;
  }
  op->replayed = 1;
  if (op->r.order.user_id != OP(op)->b_) op->detail = "the idempotency key is another user's";
  finish(w, op, op->r.order.user_id == OP(op)->b_ ? SPIKE_OK : SPIKE_EFORBIDDEN,
         !touched_has(w, OP(op)->a_));
  return 0;
}

static int apply_create(writer *w, spike_op *op) {
  uint32_t slot = OP(op)->slot_;
  slab_event *se = slab_at(&w->e->slab, slot);
  add_undo(w, (undo){.type = UD_CREATE, .slot = slot});
  add_fx(w, (fx){.type = FX_VISIBLE, .slot = slot});
  finish(w, op, SPIKE_OK, 0);
  touch(w, slot);
  shadow *s = &w->sh[slot];
  /* relaxed: the producer stored total before publishing the message. */
  s->total = atomic_load_explicit(&se->total, memory_order_relaxed);
  s->reserved = s->sold = 0;
  s->closed = 0;
  s->event_id = se->id;
  s->price = se->price;
  s->pay_timeout_s = se->pay_timeout_s;
  int rc = txn_begin(w);
  if (rc == 0) rc = feed_event(w, SPIKE_CHANGE_EVENT_CREATED, slot);
  return rc;
}

static int apply_restock(writer *w, spike_op *op) {
  shadow *s = &w->sh[OP(op)->slot_];
  if (s->closed) {
    finish(w, op, SPIKE_ENOTLIVE, 0);
    return 0;
  }
  if (s->total + OP(op)->b_ > UINT32_MAX) {
    op->detail = "add";
    finish(w, op, SPIKE_EINVAL, 0);
    return 0;
  }
  touch(w, OP(op)->slot_);
  s->total += OP(op)->b_;
  add_fx(w, (fx){.type = FX_RESTOCK, .slot = OP(op)->slot_, .add = OP(op)->b_});
  finish(w, op, SPIKE_OK, 0);
  int rc = txn_begin(w);
  if (rc == 0) rc = feed_event(w, SPIKE_CHANGE_EVENT_RESTOCKED, OP(op)->slot_);
  return rc;
}

static int apply_close(writer *w, spike_op *op) {
  shadow *s = &w->sh[OP(op)->slot_];
  if (s->closed) {
    op->replayed = 1;
    finish(w, op, SPIKE_OK, 0);
    return 0;
  }
  touch(w, OP(op)->slot_);
  s->closed = 1;
  add_fx(w, (fx){.type = FX_CLOSE, .slot = OP(op)->slot_});
  finish(w, op, SPIKE_OK, 0);
  int rc = txn_begin(w);
  if (rc == 0) rc = feed_event(w, SPIKE_CHANGE_EVENT_CLOSED, OP(op)->slot_);
  return rc;
}

/* Parked feed waits all end at shutdown. */
static int feed_released(const writer *w) {
  /* acquire: pairs with the release in spike_feed_release. */
  return atomic_load_explicit(&w->e->feed_released, memory_order_acquire) ||
         atomic_load_explicit(&w->e->stopping, memory_order_relaxed);
}

/* A feed wait answers from what is committed: its result is final. */
static void apply_feed_wait(writer *w, spike_op *op) {
  if (w->seq_durable > OP(op)->a_ || OP(op)->deadline_ <= w->mono || feed_released(w)) {
    op->seq = w->seq_durable;
    finish(w, op, SPIKE_OK, 1);
  } else if (w->waiters.n >= w->e->cfg.max_feed_waiters) {
    op->detail = "too many parked feed requests";
    finish(w, op, SPIKE_EBUSY, 1);
  } else {
    OP(op)->c_ = ++w->feed_no; /* unused by a feed wait otherwise: when it was parked */
    list_push(&w->waiters, op);
  }
}

/* Noted now, done at the cycle's settle: a host ending many waits at once
 * (a thousand clients gone) costs one pass over the parked ones. At most
 * cap, as each takes a message of the batch; only a failed writer's cycle,
 * which takes whole rings, can find it full, and that wait then ends at
 * its deadline. */
static void note_feed_end(writer *w, const msg *m) {
  uint64_t no = ++w->feed_no;
  if (w->nends < w->cap) w->ends[w->nends++] = (feed_end){(uintptr_t)m->op, (uintptr_t)m->user_id, no};
}

/* By op and producer. */
static int pair_cmp(const void *a, const void *b) {
  const feed_end *x = a, *y = b;
  if (x->op != y->op) return x->op < y->op ? -1 : 1;
  return x->producer < y->producer ? -1 : x->producer > y->producer;
}

/* ... then by no, so a pair's last end is the last of its run. */
static int end_cmp(const void *a, const void *b) {
  int c = pair_cmp(a, b);
  if (c != 0) return c;
  const feed_end *x = a, *y = b;
  return x->no < y->no ? -1 : x->no > y->no;
}

/* Whether a parked wait was ended after it was parked. */
static int feed_ended(const writer *w, spike_op *op) {
  if (w->nends == 0) return 0;
  feed_end key = {(uintptr_t)op, (uintptr_t)OP(op)->producer_, 0};
  const feed_end *e = bsearch(&key, w->ends, w->nends, sizeof(*w->ends), pair_cmp);
  if (e == NULL) return 0;
  const feed_end *last = w->ends + w->nends;
  while (e + 1 < last && pair_cmp(e + 1, &key) == 0) e++;
  return e->no > OP(op)->c_;
}

static int apply(writer *w, const msg *m) {
  switch (m->type) {
  case MSG_RESERVE: return apply_reserve(w, m);
  case MSG_REPLAY: OP(m->op)->deadline_ = 0; return apply_replay(w, m->op);
  case MSG_PAY:
  case MSG_CANCEL: OP(m->op)->deadline_ = 0; return apply_order_op(w, m->op);
  case MSG_EVENT_CREATE: return apply_create(w, m->op);
  case MSG_EVENT_RESTOCK: return apply_restock(w, m->op);
  case MSG_EVENT_CLOSE: return apply_close(w, m->op);
  case MSG_FEED_WAIT: apply_feed_wait(w, m->op); return 0;
  case MSG_FEED_END: note_feed_end(w, m); return 0;
  }
  assert(!"unknown message type");
  return EINVAL;
}

/* ---- one batch ---------------------------------------------------------- */

static void sleep_us(uint32_t us) {
  struct timespec ts = {0, (long)us * 1000};
  nanosleep(&ts, NULL);
}

/* What a reserve's apply will read at random: its message (written by the
 * producer, on another core), its user's chain head, its overlay slot and
 * its timer's index slot. The message is asked for two strides ahead and
 * read one stride ahead to ask for the rest, so the misses overlap instead
 * of adding up. (Written in the loop, not as a function: gcc finds
 * a function whose only effect is a prefetch "const" and deletes calls to
 * it.) */
#define PREFETCH_AHEAD 16
/* Drain the rings into the batch. Returns a store error or 0. */
static int drain(writer *w, uint32_t *work) {
  spike_engine *e = w->e;
  uint32_t np = e->cfg.max_producers;
  uint64_t start = engine_mono_ns();
  int rc = 0;
  for (;;) {
    uint32_t got = 0;
    for (uint32_t k = 0; k < np && w->n < w->cap && rc == 0; k++) {
      uint32_t pi = (w->rr + k) % np;
      spike_producer *p = &e->producers[pi];
      /* acquire: pairs with the release in spike_producer_open. */
      if (!atomic_load_explicit(&p->active, memory_order_acquire)) continue;
      uint32_t avail = ring_peek(&p->submit);
      uint32_t take = avail < w->cap - w->n ? avail : w->cap - w->n;
      uint32_t i = 0;
      while (i < take && rc == 0) {
        if (i + 2 * PREFETCH_AHEAD < take) __builtin_prefetch(ring_at(&p->submit, i + 2 * PREFETCH_AHEAD));
        if (i + PREFETCH_AHEAD < take) {
          const msg *ahead = ring_at(&p->submit, i + PREFETCH_AHEAD);
          if (ahead->type == MSG_RESERVE) {
            __builtin_prefetch(&e->user_head[ahead->user_idx]);
            __builtin_prefetch(&w->heads[(ahead->user_idx * 0x9E3779B1u) & w->touched_mask]);
            __builtin_prefetch(wheel_index_at(&w->wheel, ahead->order_id));
          }
        }
        const msg *m = ring_at(&p->submit, i++);
        if (m->type == MSG_RESERVE && m->order_id > w->drained[pi]) w->drained[pi] = m->order_id;
        rc = apply(w, m);
      }
      ring_release(&p->submit, i);
      got += i;
      w->n += i;
    }
    *work += got;
    if (rc != 0 || w->n >= w->cap) break;
    if (got == 0) {
      uint64_t waited_us = (engine_mono_ns() - start) / 1000;
      if (w->n == 0 || waited_us >= e->cfg.batch_us) break;
      uint64_t left = e->cfg.batch_us - waited_us;
      sleep_us(left < 50 ? (uint32_t)left : 50);
    }
  }
  w->rr = (w->rr + 1) % np;
  return rc;
}

static int retry_deferred(writer *w, uint32_t *work) {
  oplist l = list_take(&w->deferred);
  int rc = 0;
  for (spike_op *op = l.head, *next; op != NULL; op = next) {
    next = OP(op)->next_;
    if (rc != 0) {
      list_push(&w->deferred, op);
      continue;
    }
    uint32_t before = w->deferred.n;
    rc = OP(op)->type_ == MSG_REPLAY ? apply_replay(w, op) : apply_order_op(w, op);
    if (w->deferred.n == before) (*work)++;
  }
  return rc;
}

/* Fire due expiries into the batch until it holds `upto` operations. */
static int expire_due(writer *w, uint32_t *work, uint32_t upto) {
  if (w->mono < w->expire_after_ms) return 0;
  wheel_advance(&w->wheel, w->now);
  uint64_t id;
  int64_t deadline;
  while (w->n < upto && wheel_pop(&w->wheel, &id, &deadline)) {
    order_rec r;
    spike_order *o = &r.o;
    int rc = txn_begin(w);
    if (rc == 0) rc = store_get_order_rec(w->txn, id, &r);
    if (rc != 0 && rc != STORE_NOTFOUND) {
      int again = wheel_arm(&w->wheel, id, deadline); /* its own entry just freed */
      assert(again == 0);
      (void)again;
      return rc;
    }
    if (rc == STORE_NOTFOUND) {
      /* Only a reserve whose batch failed has no order, and undoing it
       * disarmed its timer: this cannot be, but must not leak the count. */
      engine_log(w->e, LOG_ERROR, "writer", NULL, 0, "timer for missing order %llu",
               (unsigned long long)id);
      atomic_fetch_sub_explicit(&w->e->armed, 1, memory_order_relaxed);
      continue;
    }
    if (o->state == SPIKE_ORDER_RESERVED && o->expires_at > w->now) {
      /* The clock stepped back between the advance and now: wait again,
       * never expire early. */
      int again = wheel_arm(&w->wheel, id, o->expires_at);
      assert(again == 0);
      (void)again;
      continue;
    }
    w->n++;
    (*work)++;
    add_undo(w, (undo){.type = UD_REARM, .id = id, .deadline = deadline});
    /* Not reserved: paid, cancelled or expired earlier in this batch, whose
     * effect ends the reservation (and finds the timer gone) after the
     * commit. */
    if (o->state != SPIKE_ORDER_RESERVED) continue;
    uint32_t slot = slab_find(&w->e->slab, o->event_id);
    assert(slot != SLAB_NONE);
    rc = expire_order(w, &r, slot, 1);
    if (rc != 0) return rc;
  }
  return 0;
}

/* The largest id any producer has minted: a safe high-water mark. */
static uint64_t minted_hwm(const writer *w) {
  uint64_t hwm = w->hwm;
  for (uint32_t i = 0; i < w->e->cfg.max_producers; i++) {
    /* relaxed: see ids_next. */
    uint64_t last = atomic_load_explicit(&w->e->producers[i].ids.last, memory_order_relaxed);
    if (last > hwm) hwm = last;
  }
  return hwm;
}

static int trim_feed(writer *w) {
  uint64_t retain = w->e->cfg.feed_retain;
  if (retain == 0 || w->feed_first == 0 || w->seq - w->feed_first + 1 <= retain) return 0;
  uint64_t excess = w->seq - w->feed_first + 1 - retain;
  if (excess > w->cap) excess = w->cap; /* bound the work per batch */
  uint64_t deleted;
  int rc = store_feed_trim(w->txn, excess, &deleted);
  w->feed_first += deleted;
  return rc;
}

/* A commit refused for room (the map, the file system): nothing of it was
 * written and the store is as it was, so the writer goes on, and a sync of
 * an earlier batch after it proves what it should (store_write_commit). */
static int refused_for_room(int rc) { return rc == STORE_MAP_FULL || rc == STORE_NOSPACE; }

static const char *commit_why(int rc) {
  if (rc == STORE_MAP_FULL) return "map full: raise --map-size";
  if (rc == STORE_NOSPACE) return "disk full";
  if (rc == ENOSPC || rc == EDQUOT) return "disk full at sync: reopen the engine";
  if (rc == EIO) return "I/O error";
  if (rc == ENOMEM) return "out of memory";
  return "commit failed";
}

/* Messages waiting in every ring: a heuristic, so ring_depth's relaxed
 * snapshot will do. */
static uint32_t backlog(const writer *w) {
  spike_engine *e = w->e;
  uint32_t n = 0;
  for (uint32_t k = 0; k < e->cfg.max_producers; k++) {
    spike_producer *p = &e->producers[k];
    if (atomic_load_explicit(&p->active, memory_order_acquire)) n += ring_depth(&p->submit);
  }
  return n;
}

/* Write the batch's event records, high-water mark and trim, then commit. */
static int commit(writer *w) {
  int rc = 0;
  for (uint32_t i = 0; i < w->ndirty && rc == 0; i++) {
    spike_event ev;
    event_snapshot(w, w->dirty[i], &ev);
    rc = store_put_event(w->txn, &ev, w->sh[w->dirty[i]].closed);
  }
  uint64_t hwm = minted_hwm(w);
  if (rc == 0 && hwm > w->hwm) {
    rc = store_put_meta(w->txn, "id_hwm", hwm);
    w->hwm = hwm;
  }
  if (rc == 0 && w->feed_first == 0 && w->seq > w->seq_committed)
    w->feed_first = w->seq_committed + 1;
  /* how far this run's epoch reaches (store/schema.c, "epochs") */
  if (rc == 0 && w->seq > w->seq_committed) rc = store_put_meta(w->txn, "epoch_end", w->seq);
  if (rc == 0) rc = trim_feed(w);
  if (rc != 0) return rc;
  uint64_t t0 = engine_mono_ns();
  /* At least as much queued behind this batch as in it: the writer is
   * behind, the next commit follows at once, and this batch's meta page can
   * ride on its sync. Otherwise the meta page is written synchronously now:
   * holding the answers for another sync would only add to their latency
   * (the page write costs a small part of a sync). */
  w->deferred_meta = backlog(w) >= w->n;
  rc = store_write_commit(w->txn, w->deferred_meta);
  if (rc == 0) {
    uint64_t ns = engine_mono_ns() - t0;
    engine_stats *st = &w->e->stats;
    int b = 0;
    while (b < SPIKE_COMMIT_BUCKETS && (double)ns / 1e9 > spike_commit_bucket_s[b]) b++;
    /* relaxed: reporting counters. */
    atomic_fetch_add_explicit(&st->commit_hist[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&st->commit_ns_sum, ns, memory_order_relaxed);
  }
  return rc;
}

/* n reserves acknowledged at enqueue are settled, durable or lost: they no
 * longer count against the memory-ack bound. */
static void settle_acked_n(writer *w, uint32_t n, int lost) {
  spike_engine *e = w->e;
  if (n == 0) return;
  /* release: pairs with the acquire of the producers' claims (see
   * fail_batch). */
  atomic_fetch_sub_explicit(&e->unconfirmed, n, memory_order_release);
  if (lost) {
    atomic_fetch_add_explicit(&e->stats.acks_lost, n, memory_order_relaxed);
    engine_log(e, LOG_ERROR, "writer", NULL, 0,
             "%u reserves acknowledged with ack=memory were lost with their batch", n);
  }
}

/* Stop the writer: a failed write or sync is never retried, since the page
 * cache may already have dropped the data (I6). Reopen from disk. Stored
 * before any ack count drops (release, in settle_acked_n): a producer whose
 * claim reads the lower count also sees commits_failing (acquire, in
 * spike_reserve), so what can be lost stays within the one bound. */
static void writer_halt(writer *w, const char *why) {
  spike_engine *e = w->e;
  atomic_store_explicit(&e->commits_failing, 1, memory_order_relaxed);
  atomic_store_explicit(&e->failed_why, why, memory_order_relaxed);
  atomic_store_explicit(&e->failed, 1, memory_order_release);
}

/* This batch's, when it failed. */
static void settle_acked(writer *w, int lost) {
  settle_acked_n(w, w->acked, lost);
  w->acked = 0;
}

/* Batches refused for room (a full map or disk fail every batch): one line
 * a second at most, with the count since the last. Called at each failure,
 * after a commit that succeeds and before the writer sleeps (at most 1 s),
 * so the count a run of failures ends with is told within a second or two,
 * not at the next failure, which may never come. */
static void report_fails(writer *w, int stopping) {
  if (w->fails_unlogged == 0) return; /* every cycle: no clock read for nothing */
  int64_t now = engine_mono_ms();
  if (!stopping && now - w->last_fail_log_ms < 1000) return;
  engine_error(w->e, SPIKE_ESTORAGE, "writer",
               "commit failed: %s (%u batches since the last report, %u ops in the last); "
               "writer %s, %s",
               store_strerror(w->fail_rc), w->fails_unlogged, w->fail_ops,
               stopping ? "stopping" : "continues",
               w->fail_rc == STORE_MAP_FULL ? "raise --map-size" : "free space on the data volume");
  w->last_fail_log_ms = now;
  w->fails_unlogged = 0;
}

/* Where the tables stand, for room_refused (engine.c), and how far past
 * it they may grow while commits fail for room: a batch when the failures
 * begin; half as far after each commit that fails for room, twice as far
 * (to a batch) from where they stand after each commit of reserves that
 * fits meanwhile (room_refused's reserve a second among them; not a pay
 * or an expiry, which fit in pages a batch of new orders cannot use). So
 * new buyers find room that comes back inside the file (pages freed:
 * --feed-retain, a snapshot released) at the rate commits fit, while a
 * disk where a lone reserve fits and no batch does leaves a dead entry or
 * two a second, not a batch. */
static void room_rebase(writer *w, int fitted) {
  spike_engine *e = w->e;
  /* relaxed: bounds; map_full's release publishes them to a new episode */
  uint32_t s = atomic_load_explicit(&e->room_slack, memory_order_relaxed);
  if (fitted < 0) { /* the failures begin */
    s = w->cap;
  } else if (!fitted) {
    atomic_store_explicit(&e->room_slack, s > 1 ? s / 2 : 1, memory_order_relaxed);
    return;
  } else {
    s = s >= w->cap / 2 ? w->cap : s * 2;
  }
  atomic_store_explicit(&e->room_base[0], lim_used(&e->buyers), memory_order_relaxed);
  atomic_store_explicit(&e->room_base[1], lim_used(&e->users), memory_order_relaxed);
  atomic_store_explicit(&e->room_base[2], lim_used(&e->keys), memory_order_relaxed);
  atomic_store_explicit(&e->room_slack, s, memory_order_relaxed);
}

/* The batch failed: undo every take, restore the shadows, fail every op
 * whose result depended on it. */
static void fail_batch(writer *w, int rc, uint64_t seq0, uint64_t orders_max0, uint64_t hwm0,
                       uint64_t feed_first0) {
  spike_engine *e = w->e;
  store_write_abort(w->txn);
  for (uint32_t i = w->nud; i-- > 0;) {
    undo *u = &w->ud[i];
    switch (u->type) {
    case UD_RESERVE: {
      undo_reserve(w, u->slot, u->qty, u->buyer_idx, u->key_idx, u->id);
      int rc2 = wheel_cancel(&w->wheel, u->id);
      assert(rc2 == 0); /* armed by apply_reserve; a pop in this batch re-armed first */
      (void)rc2;
      break;
    }
    case UD_REARM: {
      int armed = wheel_arm(&w->wheel, u->id, u->deadline);
      assert(armed == 0); /* its own entry was freed when it popped */
      (void)armed;
      break;
    }
    case UD_CREATE: slab_make_dead(&e->slab, u->slot); break;
    }
  }
  for (uint32_t i = w->ndirty; i-- > 0;) w->sh[w->dirty[i]] = w->saved[i];
  w->seq = seq0;
  w->orders_max = orders_max0;
  w->hwm = hwm0;
  w->feed_first = feed_first0;
  w->nfx = 0;
  /* From now on no ack runs ahead of its commit: a map or disk that filled
   * may fill again (small batches may still fit) and any other failure stops
   * the writer, so this holds until the engine is reopened. Stored before
   * the acked count drops (see writer_halt). */
  const char *why = commit_why(rc);
  if (refused_for_room(rc))
    atomic_store_explicit(&e->commits_failing, 1, memory_order_relaxed);
  else
    writer_halt(w, why);
  settle_acked(w, 1);
  fail_all(w, &w->done, why);
  /* relaxed: reporting and health flags; nothing is read through them. */
  atomic_fetch_add_explicit(&e->stats.failures, 1, memory_order_relaxed);
  if (refused_for_room(rc)) {
    room_rebase(w, atomic_load_explicit(&e->map_full, memory_order_relaxed) == 0 ? -1 : 0);
    /* release: the bases are read after it (room_refused) */
    atomic_store_explicit(&e->map_full, rc == STORE_MAP_FULL ? ENGINE_FULL_MAP : ENGINE_FULL_DISK,
                          memory_order_release);
    w->room_reserves = 0;
    uint32_t b = w->expire_backoff_ms * 2;
    w->expire_backoff_ms = b < EXPIRE_BACKOFF_MIN_MS ? EXPIRE_BACKOFF_MIN_MS
                           : b > EXPIRE_BACKOFF_MAX_MS ? EXPIRE_BACKOFF_MAX_MS
                                                       : b;
    w->expire_after_ms = w->mono + w->expire_backoff_ms;
    w->fails_unlogged++;
    w->fail_rc = rc;
    w->fail_ops = w->n;
    report_fails(w, 0);
  } else {
    engine_error(w->e, SPIKE_ESTORAGE, "writer", "commit failed: %s; writer stopped, reopen the engine",
             store_strerror(rc));
  }
}

/* A reservation has ended (paid, cancelled, expired): its timer goes, unless
 * it fired already, and its place in the bound is free. */
static void end_reservation(writer *w, const fx *f) {
  if (!f->popped) wheel_cancel(&w->wheel, f->order); /* -1: it fired in the same batch */
  /* relaxed: a bound and a counter, not a publication. */
  atomic_fetch_sub_explicit(&w->e->armed, 1, memory_order_relaxed);
  if (f->expiry) atomic_fetch_add_explicit(&w->e->stats.expired, 1, memory_order_relaxed);
}

/* store_has_room after a commit on a full disk, at most every 100 ms: it
 * allocates 4 MiB and drops them, not a cost for every commit of a crowd. */
static int room_asked(writer *w) {
  if (w->mono - w->room_asked_ms < 100) return 0;
  w->room_asked_ms = w->mono;
  return store_has_room(w->e->st, ROOM_BACK_BYTES);
}

/* The batch succeeded: apply the gives; if it wrote, publish and count. */
static void post_commit(writer *w, int committed) {
  spike_engine *e = w->e;
  for (uint32_t i = 0; i < w->nfx; i++) {
    fx *f = &w->fx[i];
    slab_event *se = f->slot < e->slab.capacity ? slab_at(&e->slab, f->slot) : NULL;
    switch (f->type) {
    case FX_SELL:
      slab_sell(se, f->qty);
      end_reservation(w, f);
      break;
    case FX_RELEASE: {
      slab_release(se, f->qty);
      uint32_t b = lim_find(&e->buyers, f->user, f->slot);
      assert(b != LIM_FULL);
      lim_give(lim_at(&e->buyers, b), f->qty);
      end_reservation(w, f);
      break;
    }
    case FX_VISIBLE: slab_make_visible(&e->slab, f->slot); break;
    case FX_RESTOCK: {
      int rc = slab_restock(se, f->add);
      assert(rc == 0);
      (void)rc;
      break;
    }
    case FX_CLOSE:
      /* release: pairs with the acquire of flags in spike_reserve. */
      atomic_fetch_or_explicit(&se->flags, SLAB_FLAG_CLOSED, memory_order_release);
      break;
    }
  }
  w->nfx = 0;
  for (uint32_t i = 0; i < w->nheads; i++) {
    const head *hd = &w->heads[w->head_list[i]];
    /* release: a reader that loads the head and then opens a snapshot
     * finds the order in it (the commit happened before this store). */
    atomic_store_explicit(&e->user_head[hd->user_idx], hd->order, memory_order_release);
  }
  w->nheads = 0;
  if (!committed) return;
  w->expire_backoff_ms = 0;
  w->expire_after_ms = 0;
  w->seq_committed = w->seq;
  /* A full disk has room again when a commit fits and this process could
   * allocate ROOM_BACK_BYTES there (space comes back from outside;
   * room_probe says why both), or when a whole batch's worth of reserves
   * committed since the last refusal (room inside the file: pages LMDB
   * freed, under --feed-retain say, serve the crowd with the file system
   * full). A full map does only when reserves fit: a close or a new event
   * small enough to commit says nothing of the next order. */
  int full = atomic_load_explicit(&e->map_full, memory_order_relaxed);
  w->room_reserves += w->reserves;
  if (full == ENGINE_FULL_MAP    ? w->reserves > 0
      : full != ENGINE_FULL_DISK ? 1
                                 : w->room_reserves >= w->cap || room_asked(w))
    atomic_store_explicit(&e->map_full, 0, memory_order_relaxed);
  else if (full != 0 && w->reserves > 0)
    /* a reserve fit: new buyers may try further. Not a pay or an expiry:
     * one fits in pages a batch of new orders cannot use, and each one
     * doubled the allowance the failed batch had halved, a batch of dead
     * entries for each (unbounded while pays fit); room_refused's reserve
     * a second still finds room that comes back. */
    room_rebase(w, 1);
  engine_stats *st = &e->stats;
  uint32_t b = 0;
  while (b < SPIKE_BATCH_BUCKETS && w->n > spike_batch_bucket[b]) b++;
  /* relaxed: reporting counters. */
  atomic_fetch_add_explicit(&st->commits, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&st->ops, w->n, memory_order_relaxed);
  atomic_fetch_add_explicit(&st->batch_hist[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&st->batch_sum, w->n, memory_order_relaxed);
}

/* Hand completed ops back to their producers and wake them. */
static void deliver(writer *w, oplist *l) {
  spike_engine *e = w->e;
  for (spike_op *op = l->head, *next; op != NULL; op = next) {
    next = OP(op)->next_; /* read before the producer may reuse op */
    spike_producer *p = OP(op)->producer_;
    if (op->status == SPIKE_OK && OP(op)->type_ >= MSG_EVENT_CREATE && OP(op)->type_ <= MSG_EVENT_CLOSE)
      slab_read(slab_at(&e->slab, OP(op)->slot_), w->now, &op->r.event);
    spike_op **slot = ring_acquire(&p->done);
    assert(slot != NULL); /* inflight <= ring size, checked at submit */
    *slot = op;
    ring_publish(&p->done);
    w->signal |= 1ull << p->idx;
  }
  memset(l, 0, sizeof(*l));
}

static void signal_producers(writer *w) {
  while (w->signal != 0) {
    int i = __builtin_ctzll(w->signal);
    w->signal &= w->signal - 1;
    uint64_t one = 1;
    ssize_t n = write(w->e->producers[i].efd, &one, sizeof(one));
    (void)n; /* EAGAIN only at a counter of 2^64-2: already readable */
  }
}

static void settle_waiters(writer *w, uint32_t *work) {
  if (w->nends > 1) qsort(w->ends, w->nends, sizeof(*w->ends), end_cmp);
  oplist l = list_take(&w->waiters);
  for (spike_op *op = l.head, *next; op != NULL; op = next) {
    next = OP(op)->next_;
    if (w->seq_durable > OP(op)->a_ || OP(op)->deadline_ <= w->mono || feed_released(w) ||
        feed_ended(w, op)) {
      op->seq = w->seq_durable;
      finish(w, op, SPIKE_OK, 1);
      (*work)++;
    } else {
      list_push(&w->waiters, op);
    }
  }
  w->nends = 0;
}

/* The end of every cycle: settle parked feed waits, hand every answer back,
 * wake the producers that got one. Returns the cycle's work. */
static uint32_t answer(writer *w, uint32_t work) {
  settle_waiters(w, &work);
  /* relaxed: a reporting gauge (spike_stats) */
  atomic_store_explicit(&w->e->feed_waiters, w->waiters.n, memory_order_relaxed);
  deliver(w, &w->done);
  deliver(w, &w->final);
  signal_producers(w);
  return work;
}

static void clock_read(writer *w) {
  w->now = engine_now_ms();
  w->mono = engine_mono_ms();
}

/* After a fatal error: answer everything with SPIKE_ESTORAGE, write nothing.
 * The failure settled the unsynced batch too (lose_unsynced). */
static uint32_t cycle_failed(writer *w) {
  spike_engine *e = w->e;
  uint32_t work = 0;
  assert(w->unsynced_batch == 0);
  const char *why = atomic_load_explicit(&e->failed_why, memory_order_relaxed);
  w->acked = 0;
  atomic_store_explicit(&e->commits_failing, 1, memory_order_relaxed);
  for (uint32_t k = 0; k < e->cfg.max_producers; k++) {
    spike_producer *p = &e->producers[k];
    if (!atomic_load_explicit(&p->active, memory_order_acquire)) continue;
    uint32_t avail = ring_peek(&p->submit);
    for (uint32_t i = 0; i < avail; i++) {
      msg *m = ring_at(&p->submit, i);
      if (m->type == MSG_FEED_END) { /* no completion: its wait ends at the settle */
        note_feed_end(w, m);
        continue;
      }
      if (m->type == MSG_RESERVE) {
        /* No timer was armed for it. */
        undo_reserve(w, m->event_slot, m->qty, m->buyer_idx, m->key_idx, m->order_id);
        if (m->op == NULL) w->acked++;
      }
      if (m->type == MSG_EVENT_CREATE) slab_make_dead(&e->slab, OP(m->op)->slot_);
      if (m->op != NULL) {
        m->op->detail = why;
        finish(w, m->op, SPIKE_ESTORAGE, 0);
      }
    }
    ring_release(&p->submit, avail);
    work += avail;
  }
  settle_acked(w, 1);
  work += fail_all(w, &w->deferred, why);
  clock_read(w);
  return answer(w, work);
}

/* ---- durability ----------------------------------------------------------
 * A commit syncs its data pages, then writes the meta page that makes them
 * the store's state. When the writer is behind (as much queued as in the
 * batch), that meta page is not synced (store_write_commit's defer_meta): a
 * power cut can take the commit back, never tear it, so the batch is
 * answered once the next commit's data sync has carried it down. Behind,
 * that is one sync per batch instead of two. Otherwise the meta page is
 * written synchronously and the batch answered at once, as LMDB commits by
 * default; an explicit sync is needed only when a deferred batch finds no
 * next commit after all.
 *
 * While a batch is unsynced, the next cycle reads its state: a verdict
 * given then (a repeated pay, an order of another user, a closed event)
 * stands only if that batch becomes durable. */

/* The unsynced batch is durable: answer it, and let readers see its seq. */
static void durable(writer *w) {
  settle_acked_n(w, w->acked_unsynced, 0);
  w->acked_unsynced = 0;
  w->unsynced_batch = 0;
  if (w->seq_unsynced > w->seq_durable) w->seq_durable = w->seq_unsynced;
  /* release: pairs with the acquire in spike_stats_get / feed reads. */
  atomic_store_explicit(&w->e->feed_seq, w->seq_durable, memory_order_release);
  oplist l = list_take(&w->unsynced);
  for (spike_op *op = l.head, *next; op != NULL; op = next) {
    next = OP(op)->next_;
    list_push(&w->done, op);
  }
}

/* The unsynced batch will not be known durable: its sync failed, or a
 * write after it failed (and a sync after a failed write proves nothing on
 * Linux, which reports a writeback error once). Its outcome is unknown
 * until a reopen reads the disk, so its ops fail, its memory acks count as
 * lost, and the writer stops. If it is older than this cycle, this cycle's
 * verdicts may have read it: they fail too (a feed wait reads only the
 * durable seq and stands). */
static void lose_unsynced(writer *w, int rc) {
  const char *why = commit_why(rc);
  writer_halt(w, why);
  atomic_fetch_add_explicit(&w->e->stats.failures, 1, memory_order_relaxed);
  if (w->unsynced_batch != w->batch) {
    fail_all(w, &w->done, why);
    oplist l = list_take(&w->final);
    for (spike_op *op = l.head, *next; op != NULL; op = next) {
      next = OP(op)->next_;
      if (OP(op)->type_ == MSG_FEED_WAIT) {
        list_push(&w->final, op);
      } else {
        op->detail = why;
        op->replayed = 0;
        finish(w, op, SPIKE_ESTORAGE, 0);
      }
    }
  }
  settle_acked_n(w, w->acked_unsynced, 1);
  w->acked_unsynced = 0;
  w->unsynced_batch = 0;
  fail_all(w, &w->unsynced, why);
  engine_error(w->e, SPIKE_ESTORAGE, "writer",
           "%s: the last commit is not known durable; writer stopped, reopen the engine",
           store_strerror(rc));
}

/* Sync the unsynced batch now. */
static void sync_unsynced(writer *w) {
  if (w->unsynced_batch == 0) return;
  int rc = store_sync(w->e->st);
  if (rc == 0)
    durable(w);
  else
    lose_unsynced(w, rc);
}

/* This batch committed: the one before it is durable now (this commit's
 * data sync carried its meta page). This one is too when its meta page was
 * written synchronously; otherwise it waits for the next. */
static void committed(writer *w) {
  oplist mine = list_take(&w->done);
  durable(w); /* the batch before: its ops join done */
  w->unsynced = mine;
  w->acked_unsynced = w->acked;
  w->acked = 0;
  w->seq_unsynced = w->seq_committed;
  w->unsynced_batch = w->batch;
  if (!w->deferred_meta) durable(w);
}

/* A full disk has room again once a commit fits and this process could
 * allocate ROOM_BACK_BYTES there: a commit fits in LMDB's freed pages long before
 * there is room for the crowd's (a small one fits, the next batch needs
 * new blocks and fails), and ready at 200 then would put the node back
 * in a load balancer's rotation once a second only to fail its orders.
 * The room comes back from outside: with nothing else to commit (a load
 * balancer sends nothing to a node whose readiness is 503), ready would
 * stay 503 for good. So while the disk is full, an idle writer commits one
 * record a second once there is that much room, the id high-water mark as
 * it is; the first that fits makes ready 200. */
#define ROOM_PROBE_MS 1000

static int disk_full(const writer *w) {
  /* relaxed: a health flag, written by this thread */
  return atomic_load_explicit(&w->e->map_full, memory_order_relaxed) == ENGINE_FULL_DISK;
}

static int room_probe(writer *w) {
  if (w->writes || !disk_full(w) || w->mono < w->probe_after_ms) return 0;
  w->probe_after_ms = w->mono + ROOM_PROBE_MS;
  if (!store_has_room(w->e->st, ROOM_BACK_BYTES)) return 0;
  int rc = txn_begin(w);
  if (rc == 0) rc = store_put_meta(w->txn, "id_hwm", w->hwm);
  if (rc == 0) w->writes = 1;
  return rc;
}

static int rings_pending(writer *w);

/* A process that dies in a read transaction (a backup command killed
 * mid-copy) leaves its reader slot in lock.mdb, and the snapshot it pins
 * keeps every page freed since from reuse: the file then grows with each
 * commit until the map is full. LMDB clears such slots at open; the
 * writer does once a second too (a scan of the reader table, and a lock
 * probe per reader process). */
#define READERS_CHECK_MS 1000

/* One batch. Returns how much work it did (0: nothing to do). */
static uint32_t cycle(writer *w) {
  spike_engine *e = w->e;
  if (atomic_load_explicit(&e->failed, memory_order_acquire)) return cycle_failed(w);
  clock_read(w);
  if (w->mono - w->readers_checked_ms >= READERS_CHECK_MS) {
    w->readers_checked_ms = w->mono;
    int dead = store_reader_check(e->st);
    if (dead > 0)
      engine_log(e, LOG_WARN, "writer", NULL, 0,
                 "cleared %d reader slot%s of a process that died reading the store (a "
                 "spiked --backup killed mid-copy?): its snapshot kept freed pages from reuse",
                 dead, dead > 1 ? "s" : "");
  }
  uint64_t began = e->pacing ? engine_mono_ns() : 0;
  if (e->pacing) {
    /* seq_cst, then a fence: a message whose urgent flag this clears was
     * published before it, and the drain below sees it (see pace). */
    atomic_store_explicit(&e->urgent, 0, memory_order_seq_cst);
    atomic_thread_fence(memory_order_seq_cst);
  }
  w->batch++;
  w->n = w->nfx = w->nud = w->ndirty = w->acked = w->nheads = w->reserves = 0;
  w->writes = 0;
  uint64_t seq0 = w->seq, orders_max0 = w->orders_max, hwm0 = w->hwm;
  uint64_t feed_first0 = w->feed_first;
  uint32_t work = 0;

  /* Expiries first, up to half the batch, so that load filling every batch
   * cannot starve them; then the rings; then whatever room is left. */
  int rc = retry_deferred(w, &work);
  if (rc == 0) rc = expire_due(w, &work, w->cap - w->cap / 2);
  if (rc == 0) rc = drain(w, &work);
  if (rc == 0 && w->deferred.n > 0) rc = retry_deferred(w, &work);
  if (rc == 0) rc = expire_due(w, &work, w->cap);
  if (rc == 0) rc = room_probe(w);
  if (rc == 0 && store_txn_open(w->txn)) {
    if (w->writes) {
      rc = commit(w);
    } else {
      store_write_abort(w->txn); /* only reads: nothing to commit */
    }
  }
  if (rc != 0) {
    fail_batch(w, rc, seq0, orders_max0, hwm0, feed_first0);
    w->paced_from = 0; /* what the failure left queued goes at once (pace) */
  } else {
    post_commit(w, w->writes);
    if (w->writes) committed(w);
    if (w->writes) w->paced_from = began;
  }
  if (rc != 0 && !refused_for_room(rc)) {
    if (w->unsynced_batch != 0) lose_unsynced(w, rc); /* never sync after a failed write */
  } else if (!w->writes || rc != 0 || !rings_pending(w)) {
    sync_unsynced(w); /* nothing more to commit at once: make the last commit durable now */
  }
  uint32_t did = answer(w, work);
  /* the file written ahead of the next commits' pages, once this batch's
   * answers are out (store_write_ahead) */
  if (rc == 0 && w->writes) store_write_ahead(e->st);
  return did;
}

/* ---- the thread ------------------------------------------------------- */

static int rings_pending(writer *w) {
  spike_engine *e = w->e;
  for (uint32_t k = 0; k < e->cfg.max_producers; k++) {
    spike_producer *p = &e->producers[k];
    /* seq_cst, as the ring's tail: the writer's half of the sleep handshake
     * is a seq_cst store of writer_sleeping followed by these loads. */
    if (atomic_load_explicit(&p->active, memory_order_seq_cst) && ring_pending_sc(&p->submit))
      return 1;
  }
  return 0;
}

/* How long until the next thing is due: a timer (wall clock), a waiter's
 * or a deferred op's deadline, the end of an expiry back-off (monotonic). */
static int64_t next_wake_in_ms(writer *w) {
  int64_t mono = engine_mono_ms(), now = engine_now_ms();
  int64_t next = wheel_next_ms(&w->wheel);
  int64_t in = next == INT64_MAX ? INT64_MAX : next - now;
  if (w->expire_after_ms > mono && in < w->expire_after_ms - mono) in = w->expire_after_ms - mono;
  for (spike_op *op = w->waiters.head; op != NULL; op = OP(op)->next_)
    if (OP(op)->deadline_ - mono < in) in = OP(op)->deadline_ - mono;
  if (w->deferred.head != NULL && in > 1) in = 1;
  if (disk_full(w)) {
    int64_t probe = w->probe_after_ms > mono ? w->probe_after_ms - mono : 0;
    if (probe < in) in = probe;
  }
  return in;
}

static void writer_sleep(writer *w) {
  spike_engine *e = w->e;
  int64_t timeout_ms = next_wake_in_ms(w);
  if (timeout_ms < 1) timeout_ms = 1;
  if (timeout_ms > 1000) timeout_ms = 1000;
  /* seq_cst store then seq_cst loads of every ring's tail (and of the feed
   * release, when waits are parked): the writer's half of the handshake in
   * engine_wake_writer. */
  atomic_store_explicit(&e->writer_sleeping, WRITER_ASLEEP, memory_order_seq_cst);
  int released = w->waiters.head != NULL &&
                 atomic_load_explicit(&e->feed_released, memory_order_seq_cst);
  if (!released && !rings_pending(w) && !atomic_load_explicit(&e->stopping, memory_order_seq_cst)) {
    struct timespec ts = {timeout_ms / 1000, (timeout_ms % 1000) * 1000000};
    syscall(SYS_futex, (int *)&e->writer_sleeping, FUTEX_WAIT_PRIVATE, WRITER_ASLEEP, &ts, NULL, 0);
  }
  atomic_store_explicit(&e->writer_sleeping, WRITER_AWAKE, memory_order_relaxed);
}

/* ack=memory with memory_commit_us: a batch begins at most that long after
 * the last one that wrote began, so that a commit, whose syncs cost the
 * same for a few orders as for hundreds, carries more reserves that were
 * answered at enqueue and wait for nobody. Anything a caller waits on ends
 * the wait: an urgent message (engine_wake_writer: a durable reserve, a
 * pay, a feed release, a feed wait shorter than the pace...), a ring half
 * full (nudge_writer makes that urgent too), a batch waiting for its sync,
 * a deferred op, a stop, a failed batch, and a full last batch (what did
 * not fit may be urgent: the flag was cleared as that batch began). It
 * ends no later than the writer's next timer or parked wait's deadline.
 * Reserves past the memory-ack bound (unconfirmed_max) wait for their
 * commit, so they are urgent: the bound on what a crash can lose holds
 * whatever the pace.
 *
 * The handshake is writer_sleep's: WRITER_PACING stored seq_cst, then
 * urgent loaded seq_cst; a producer stores its tail, then urgent, then
 * loads writer_sleeping, all seq_cst. Either this sees urgent or the
 * producer sees WRITER_PACING and wakes the futex (whose wait fails if the
 * word is no longer WRITER_PACING). */
static void pace(writer *w) {
  spike_engine *e = w->e;
  if (!e->pacing) return;
  uint64_t due = w->paced_from + (uint64_t)e->cfg.memory_commit_us * 1000;
  /* no later than a timer, a parked feed wait's deadline or a retry */
  int64_t in = next_wake_in_ms(w);
  if (in <= 0) return;
  if (in < INT64_MAX && engine_mono_ns() + (uint64_t)in * 1000000 < due)
    due = engine_mono_ns() + (uint64_t)in * 1000000;
  for (;;) {
    uint64_t now = engine_mono_ns();
    if (now >= due || w->n >= w->cap || w->unsynced_batch != 0 || w->deferred.n > 0 ||
        atomic_load_explicit(&e->failed, memory_order_acquire))
      return;
    atomic_store_explicit(&e->writer_sleeping, WRITER_PACING, memory_order_seq_cst);
    if (atomic_load_explicit(&e->urgent, memory_order_seq_cst) ||
        atomic_load_explicit(&e->stopping, memory_order_seq_cst)) {
      atomic_store_explicit(&e->writer_sleeping, WRITER_AWAKE, memory_order_relaxed);
      return;
    }
    uint64_t left = due - now;
    struct timespec ts = {(time_t)(left / 1000000000u), (long)(left % 1000000000u)};
    syscall(SYS_futex, (int *)&e->writer_sleeping, FUTEX_WAIT_PRIVATE, WRITER_PACING, &ts, NULL, 0);
    /* AWAKE already: a producer woke it, for a reason to commit now. */
    if (atomic_exchange_explicit(&e->writer_sleeping, WRITER_AWAKE, memory_order_seq_cst) == WRITER_AWAKE)
      return;
  }
}

static void *writer_main(void *arg) {
  writer *w = arg;
  spike_engine *e = w->e;
  (void)prctl(PR_SET_NAME, "spike-writer"); /* top -H, perf, /proc/PID/task/TID/comm */
  for (;;) {
    pace(w);
    if (cycle(w) > 0) {
      report_fails(w, 0);
      continue;
    }
    if (atomic_load_explicit(&e->stopping, memory_order_acquire)) {
      if (!rings_pending(w)) break;
      continue;
    }
    report_fails(w, 0);
    writer_sleep(w);
  }
  report_fails(w, 1); /* what is left untold, at the stop */
  return NULL;
}

/* ---- set-up ------------------------------------------------------------ */

writer *writer_create(spike_engine *e) {
  writer *w = calloc(1, sizeof(*w));
  if (w == NULL) return NULL;
  w->e = e;
  w->cap = e->cfg.batch_max;
  uint32_t tsize = 2;
  while (tsize < w->cap * 2) tsize <<= 1;
  w->touched_mask = tsize - 1;
  w->touched = calloc(tsize, sizeof(*w->touched));
  w->heads = calloc(tsize, sizeof(*w->heads));
  w->head_list = calloc(w->cap, sizeof(*w->head_list));
  w->ends = calloc(w->cap, sizeof(*w->ends));
  w->sh = calloc(e->cfg.max_events, sizeof(*w->sh));
  w->saved = calloc(e->cfg.max_events, sizeof(*w->saved));
  w->dirty = calloc(e->cfg.max_events, sizeof(*w->dirty));
  w->fx = calloc(w->cap, sizeof(*w->fx));
  w->ud = calloc(w->cap, sizeof(*w->ud));
  if (w->touched == NULL || w->heads == NULL || w->head_list == NULL || w->ends == NULL ||
      w->sh == NULL || w->saved == NULL || w->dirty == NULL ||
      w->fx == NULL || w->ud == NULL || (w->txn = store_txn_new(e->st)) == NULL ||
      wheel_init(&w->wheel, e->cfg.max_reserved, engine_now_ms()) != 0) {
    writer_destroy(w);
    return NULL;
  }
  return w;
}

void writer_destroy(writer *w) {
  if (w == NULL) return;
  assert(w->txn == NULL || !store_txn_open(w->txn));
  store_txn_free(w->txn);
  wheel_free(&w->wheel);
  free(w->touched);
  free(w->heads);
  free(w->head_list);
  free(w->ends);
  free(w->sh);
  free(w->saved);
  free(w->dirty);
  free(w->fx);
  free(w->ud);
  free(w);
}

void writer_load_event(writer *w, uint32_t slot, const spike_event *ev, int closed) {
  w->sh[slot] = (shadow){.total = ev->stock_total,
                         .reserved = ev->reserved,
                         .sold = ev->sold,
                         .closed = (uint8_t)closed,
                         .pay_timeout_s = ev->pay_timeout_s,
                         .event_id = ev->id,
                         .price = ev->price};
}

int writer_arm(writer *w, uint64_t order_id, int64_t deadline_ms) {
  if (wheel_used(&w->wheel) == w->wheel.capacity &&
      wheel_grow(&w->wheel, w->wheel.capacity * 2) != 0)
    return -1;
  return wheel_arm(&w->wheel, order_id, deadline_ms);
}

void writer_load_feed(writer *w, uint64_t first, uint64_t last) {
  w->feed_first = first;
  w->seq = w->seq_committed = w->seq_durable = last;
  atomic_store_explicit(&w->e->feed_seq, last, memory_order_relaxed);
}

void writer_load_orders_max(writer *w, uint64_t max_id, uint64_t hwm, int64_t floor_ms) {
  w->orders_max = max_id;
  w->hwm = hwm;
  /* Every id of this run is above the floor; none below it is in a ring. */
  uint64_t below = ((uint64_t)floor_ms << IDS_MS_SHIFT) - 1;
  for (uint32_t i = 0; i < SPIKE_PRODUCERS_MAX; i++) w->drained[i] = below;
}

int writer_expire_overdue(writer *w) {
  for (;;) {
    /* relaxed: read on the only thread that writes it right now. */
    uint64_t failures = atomic_load_explicit(&w->e->stats.failures, memory_order_relaxed);
    cycle(w);
    if (atomic_load_explicit(&w->e->stats.failures, memory_order_relaxed) != failures)
      return SPIKE_ESTORAGE;
    if (!wheel_has_due(&w->wheel)) return 0; /* cycle advanced to now */
  }
}

int writer_start(writer *w) {
  spike_engine *e = w->e;
  if (thread_start(&e->writer_thread, writer_main, w) != 0) return -1; /* no signals */
  e->writer_running = 1;
  return 0;
}

void writer_stop(writer *w) {
  spike_engine *e = w->e;
  if (!e->writer_running) return;
  atomic_store_explicit(&e->stopping, 1, memory_order_seq_cst);
  if (atomic_exchange_explicit(&e->writer_sleeping, 0, memory_order_seq_cst))
    syscall(SYS_futex, (int *)&e->writer_sleeping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
  pthread_join(e->writer_thread, NULL);
  e->writer_running = 0;
}

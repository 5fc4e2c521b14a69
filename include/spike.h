/*
 * spike.h -- the whole public surface of libspike, the flash-sale engine.
 *
 * An engine (spike_engine) owns one data directory: an LMDB environment, an
 * in-memory slab of events, the per-user and idempotency tables, and one
 * writer thread that group-commits every change. Callers talk to it through
 * producers (spike_producer): one per calling thread, each with a bounded
 * lock-free submission ring into the writer and a completion ring back.
 *
 * Invariants the engine keeps (I1-I6, listed in docs/design.md,
 * "Invariants"): no event ever has
 * reserved + sold > stock_total; available + reserved + sold == stock_total;
 * a user never holds more than per_user_limit units of one event; one
 * (event, idempotency key) makes at most one order and one (order,
 * payment_id) pays at most once; with SPIKE_ACK_DURABLE a completion means
 * the change is committed and synced; a failed commit fails and undoes its
 * whole batch.
 *
 * Results, in the manner of small parsers: a submission returns
 *   < 0            refused now (one of the SPIKE_E* codes below); no callback.
 *   SPIKE_OK       done now; the result is already in the op; no callback.
 *   SPIKE_PENDING  accepted; the op's callback runs later, exactly once, on
 *                  the producer's own thread, from spike_producer_drain().
 *
 * Completions do not assume an event loop. spike_producer_fd() is an eventfd
 * that becomes readable when completions are waiting; watch it with any loop
 * (epoll, libuv through spike_uv.h, nginx's ngx_event) and call
 * spike_producer_drain() when it fires. The rules for callbacks are in the
 * "Callbacks" section below.
 *
 * Ownership: every struct the caller passes in is caller-allocated. A
 * spike_op handed to a submission that returned SPIKE_PENDING belongs to the
 * engine until its callback runs; it must not be moved, freed or reused
 * before then.
 *
 * Misuse is refused at the call with SPIKE_EMISUSE, never an abort: a
 * producer used from a thread that is not its own, an op submitted again
 * through the same producer while it is pending (op is left untouched), a
 * NULL callback, a drain or close from inside one of the producer's own
 * callbacks, a spike_config not made by spike_config_init(), a NULL engine,
 * producer, op or out pointer (a NULL spec is SPIKE_EINVAL, field "spec";
 * functions without a status do nothing with a NULL, and
 * spike_producer_fd gives -1). A pending op
 * submitted through another producer is not detected: do not. Nothing the
 * engine returns needs freeing by the caller except the engine and producer
 * handles, through their close functions.
 *
 * ABI: the library's soname is libspike.so.SPIKE_ABI_VERSION. Within one ABI
 * version functions are only added; spike_config and spike_stats carry
 * their size, spike_op has reserved space, and every other struct keeps its
 * layout. docs/embedding.md ("ABI policy") says what moves the soname.
 */
#ifndef SPIKE_H
#define SPIKE_H

#include <stddef.h>
#include <stdint.h>

/* Marks what libspike exports. The library is built with
 * -fvisibility=hidden, so the names declared here with SPIKE_EXTERN, all
 * spike_*, are the only ones a program linking it can see or collide with. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define SPIKE_EXTERN __attribute__((visibility("default")))
#else
#define SPIKE_EXTERN
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define SPIKE_VERSION_MAJOR 0
#define SPIKE_VERSION_MINOR 3
#define SPIKE_VERSION_PATCH 0
#define SPIKE_VERSION_STRING "0.3.0"
/* The N of libspike.so.N. It changes only when a program built against an
 * older spike.h of the same N could misbehave with this library. */
#define SPIKE_ABI_VERSION 1

/*
 * One table yields the status enum, its message, and the contract's code and
 * HTTP status, so the four can never drift apart. XX(name, code, http, msg).
 * Every status is the negative of its contract code: SPIKE_ESOLDOUT == -30001.
 *
 * The three "cannot now" statuses ask for different actions:
 *   SPIKE_EBUSY    a queue is full or the engine is in the way for a moment
 *                  (commit queue, ops in flight, a key being written, a close
 *                  while work is outstanding): retry soon; nothing was done.
 *   SPIKE_EFULL    a table sized at spike_open() is full (events, buyers,
 *                  users, idempotency keys, live reservations, producers):
 *                  a configuration limit. Retrying helps only for live
 *                  reservations (they end as orders are paid, cancelled or
 *                  expire); the rest need a larger spike_config.
 *   SPIKE_ELOCKED  spike_open(): another engine, in this process or another,
 *                  owns the data directory.
 * spike_producer_error() and spike_engine_error() say which bound was hit.
 */
#define SPIKE_ERRNO_MAP(XX)                                                    \
  XX(ENOCREDS, 20001, 401, "credentials missing")                              \
  XX(ETOKEN, 20005, 401, "token invalid or expired")                           \
  XX(EFORBIDDEN, 20006, 403, "not allowed")                                    \
  XX(ESOLDOUT, 30001, 409, "sold out")                                         \
  XX(ESTATE, 30002, 409, "the order's state does not allow this operation")    \
  XX(ENOTLIVE, 30006, 409, "the sale is not live")                             \
  XX(ELIMIT, 30007, 409, "per-user limit reached")                             \
  XX(ENOORDER, 30008, 404, "order not found")                                  \
  XX(ENOEVENT, 30009, 404, "event not found")                                  \
  XX(EEXIST, 30010, 409, "event id already exists")                            \
  XX(EINVAL, 40001, 400, "parameter validation failed")                        \
  XX(EMETHOD, 40002, 405, "method not allowed on this route")                  \
  XX(EBADBODY, 40003, 400, "body is not valid JSON or MessagePack")            \
  XX(ENOROUTE, 40004, 404, "no such route")                                    \
  XX(ETOOLARGE, 40005, 413, "body or headers too large")                       \
  XX(ERATE, 40009, 429, "rate limited")                                        \
  XX(ESTORAGE, 50001, 500, "storage error")                                    \
  XX(EINTERNAL, 50002, 500, "internal error")                                  \
  XX(EMISUSE, 50003, 500, "the library was called the wrong way")              \
  XX(EBUSY, 50005, 503, "overloaded")                                          \
  XX(EFULL, 50006, 507, "a table is full")                                     \
  XX(ELOCKED, 50007, 503, "the data directory is in use")                      \
  XX(EVERSION, 50008, 505, "HTTP version not supported")

typedef enum spike_status {
  SPIKE_OK = 0,
  /* Not an error: the op was accepted and its callback will run. */
  SPIKE_PENDING = 1,
#define SPIKE_XX_(name, code, http, msg) SPIKE_##name = -(code),
  SPIKE_ERRNO_MAP(SPIKE_XX_)
#undef SPIKE_XX_
} spike_status;

/* The status's message ("sold out"); "unknown status" for anything else. */
SPIKE_EXTERN const char *spike_strerror(int status);
/* The contract's numeric code: 0 for SPIKE_OK, 30001 for SPIKE_ESOLDOUT;
 * 50002 (internal) for anything else, as spike_http_status gives it 500. */
SPIKE_EXTERN int spike_code(int status);
/* The contract's HTTP status: 200 for SPIKE_OK, 409 for SPIKE_ESOLDOUT. */
SPIKE_EXTERN int spike_http_status(int status);
/* The library's version string, e.g. "0.3.0" (not the ABI version). */
SPIKE_EXTERN const char *spike_version(void);

/* -------------------------------------------------------------------------
 * Logging
 *
 * An engine logs through spike_config.log_cb when it is set. Without one it
 * writes one JSON object per line on stderr (ts, level, module, msg and the
 * key-value pairs as string members, except "ms" and "bytes", written as
 * JSON numbers when all digits), each line in one write(2).
 */
typedef enum spike_log_level {
  SPIKE_LOG_DEBUG = 0,
  SPIKE_LOG_INFO = 1,
  SPIKE_LOG_WARN = 2,
  SPIKE_LOG_ERROR = 3,
} spike_log_level;

/* One key-value pair of a log line ("orderId" = "42"). Both NUL-terminated. */
typedef struct spike_log_kv {
  const char *key;
  const char *value;
} spike_log_kv;

/*
 * A log sink. Called with every line at or above spike_config.log_level, on
 * whichever thread logs: the writer thread, a producer's thread, the one in
 * spike_open(), or the one running spike_backup(); so it must be
 * thread-safe. module is "engine", "writer" or "backup"; msg, kv and the
 * strings they point to live only for the call. It must not call back into the engine (spike_strerror and
 * the other pure functions excepted) and should not block: the writer waits
 * for it.
 */
typedef void (*spike_log_cb)(void *ctx, spike_log_level level, const char *module,
                             const char *msg, const spike_log_kv *kv, size_t kv_count);

/* The level of the default stderr sink, process-wide: lines below it are
 * dropped there, whatever an engine's log_level. Default SPIKE_LOG_INFO.
 * Any thread. */
SPIKE_EXTERN void spike_set_log_level(int level);

/* -------------------------------------------------------------------------
 * Configuration
 */
typedef enum spike_ack {
  /* A reserve completes only after the batch holding it is committed and
   * durable (its data and meta pages synced). Survives kill -9 and power
   * loss. The default. */
  SPIKE_ACK_DURABLE = 0,
  /* A reserve completes when it is enqueued, before its commit, while at
   * most batch_max reserves so acknowledged are uncommitted; past that it
   * waits for its commit as in durable mode (spike_reserve returns
   * SPIKE_PENDING). Once a commit has failed, every reserve waits for its
   * commit until the engine is reopened (a map or disk that filled may fill
   * again, and any other failure stops the writer). A crash or a failed batch
   * can lose at most batch_max acknowledged reserves, counted in
   * spike_stats.acks_lost_total. Pay, cancel and event operations always
   * complete after their commit, so a cancel's units are back before it
   * answers. */
  SPIKE_ACK_MEMORY = 1,
} spike_ack;

/* Limits with their bounds. The defaults come from spike_config_init(). */
#define SPIKE_NAME_MAX 127       /* event name, bytes */
#define SPIKE_KEY_MAX 64         /* idempotency key, bytes */
#define SPIKE_PAYMENT_ID_MAX 64  /* payment id, bytes */
#define SPIKE_PRODUCERS_MAX 64   /* hard ceiling for max_producers */
#define SPIKE_PAY_TIMEOUT_MAX_S (7u * 24 * 3600)

typedef struct spike_config {
  /* sizeof(spike_config) as the caller's spike.h has it: spike_config_init()
   * records it, and spike_open() reads only that much (a config from an
   * older spike.h gets the defaults for the fields it lacks). Do not set. */
  uint32_t size;
  uint32_t reserved0_;
  const char *data_dir;       /* directory holding the LMDB files; created */
  uint64_t map_size_bytes;    /* LMDB map size, 1 MiB .. 64 TiB; default 1 GiB; a store
                                 keeps a larger map it already has */
  spike_ack ack;              /* default SPIKE_ACK_DURABLE */
  uint32_t batch_max;         /* ops per commit, 1..65536; default 4096 */
  uint32_t batch_us;          /* extra wait to fill a batch; default 0 */
  uint32_t max_events;        /* events the slab holds; default 4096 */
  uint32_t max_buyers;        /* (event,user) slots, power of two (usable
                                 to 3/4); 1<<20 */
  uint32_t max_users;         /* users with orders in the store, power of two
                                 (usable to 3/4); 0, the default: the same
                                 as max_buyers */
  uint32_t max_keys;          /* idempotency key slots, power of two
                                 (usable to 3/4); 1<<20 */
  uint32_t max_reserved;      /* live reservations (reserved, not yet paid,
                                 cancelled or expired); 1<<20 */
  uint32_t max_producers;     /* producers, 1..SPIKE_PRODUCERS_MAX; 16 */
  uint32_t ring_size;         /* per-producer ring slots, power of two; 8192 */
  uint32_t max_feed_waiters;  /* parked spike_feed_wait ops; default 1024 */
  uint64_t feed_retain;       /* newest feed records kept; 0 keeps all */
  spike_log_cb log_cb;        /* NULL (default): JSON lines on stderr */
  void *log_ctx;              /* passed to log_cb */
  spike_log_level log_level;  /* lines below it are dropped; SPIKE_LOG_INFO */
  /* The struct of 0.2.0 ended here, padded to 8 bytes: a field added in
   * that padding would be covered by an older program's size (and its
   * padding read as the field), so fields are added past it, and never
   * into tail padding of this struct either (keep it a multiple of 8). */
  uint32_t reserved1_;        /* the old padding; ignored */
  uint32_t memory_commit_us;  /* with SPIKE_ACK_MEMORY: how long reserves
                                 answered at enqueue may wait for their
                                 commit, so that one commit carries more of
                                 them. Anything a caller waits on ends the
                                 wait at once: a durable reserve, a reserve
                                 past the memory-ack bound, a pay, a cancel,
                                 an event change, a feed wait shorter than
                                 the pace, spike_feed_release; so does a
                                 ring half full. 0: commit at once. At most
                                 1 s (checked in both ack modes); default
                                 5000 */
  uint32_t reserved2_;        /* ignored */
} spike_config;

/* Fill cfg with the defaults and record its size; data_dir becomes
 * "./data". Call it on every spike_config before setting fields: a config
 * not made by it is refused by spike_open() (SPIKE_EMISUSE). The inline
 * wrapper passes the size of the caller's struct. */
SPIKE_EXTERN void spike_config_init_size(spike_config *cfg, size_t size);
static inline void spike_config_init(spike_config *cfg) {
  spike_config_init_size(cfg, sizeof(*cfg));
}

/* -------------------------------------------------------------------------
 * Records
 */
typedef enum spike_event_state {
  SPIKE_EVENT_SCHEDULED = 0, /* before start_at */
  SPIKE_EVENT_LIVE,          /* between start_at and end_at, units left */
  SPIKE_EVENT_SOLD_OUT,      /* live window, nothing available */
  SPIKE_EVENT_ENDED,         /* at or after end_at */
  SPIKE_EVENT_CLOSED,        /* closed early by an admin; final */
} spike_event_state;

typedef struct spike_event {
  uint64_t id;
  char name[SPIKE_NAME_MAX + 1]; /* NUL-terminated */
  int64_t price;                 /* cents per unit */
  uint64_t stock_total;          /* initial stock plus restocks */
  uint64_t available;
  uint64_t reserved;
  uint64_t sold;
  int64_t start_at;              /* unix ms */
  int64_t end_at;                /* unix ms */
  uint32_t per_user_limit;
  uint32_t pay_timeout_s;
  spike_event_state state;
} spike_event;

typedef enum spike_order_state {
  SPIKE_ORDER_RESERVED = 1,
  SPIKE_ORDER_PAID,
  SPIKE_ORDER_CANCELLED,
  SPIKE_ORDER_EXPIRED,
} spike_order_state;

typedef struct spike_order {
  uint64_t id;
  uint64_t event_id;
  uint64_t user_id;
  uint32_t qty;
  int64_t amount;        /* price * qty, cents */
  spike_order_state state;
  int64_t created_at;    /* unix ms */
  int64_t expires_at;    /* unix ms; a reserved order expires at this time */
  int64_t paid_at;       /* unix ms, 0 when not paid */
  int64_t cancelled_at;  /* unix ms, 0 when not cancelled or expired */
  char payment_id[SPIKE_PAYMENT_ID_MAX + 1]; /* "" when not paid */
} spike_order;

typedef enum spike_change_type {
  SPIKE_CHANGE_ORDER_RESERVED = 1,
  SPIKE_CHANGE_ORDER_PAID,
  SPIKE_CHANGE_ORDER_CANCELLED,
  SPIKE_CHANGE_ORDER_EXPIRED,
  SPIKE_CHANGE_EVENT_CREATED,
  SPIKE_CHANGE_EVENT_RESTOCKED,
  SPIKE_CHANGE_EVENT_CLOSED,
} spike_change_type;

/* One record of the change feed. Order changes carry the order as it was
 * after the change; event changes carry the event. */
typedef struct spike_change {
  uint64_t seq;          /* strictly increasing, never reused */
  spike_change_type type;
  int64_t at;            /* unix ms of the change */
  union {
    spike_order order;   /* SPIKE_CHANGE_ORDER_* */
    spike_event event;   /* SPIKE_CHANGE_EVENT_* */
  } u;
} spike_change;

/* "order.reserved", "event.created", ...; NULL for an unknown type. */
SPIKE_EXTERN const char *spike_change_name(spike_change_type type);
/* "scheduled", "live", ...; "reserved", "paid", ...; NULL when unknown. */
SPIKE_EXTERN const char *spike_event_state_name(spike_event_state state);
SPIKE_EXTERN const char *spike_order_state_name(spike_order_state state);

/* -------------------------------------------------------------------------
 * Engine
 */
typedef struct spike_engine spike_engine;

/*
 * Open the engine on cfg->data_dir (created if missing), recover its state
 * from LMDB and start the writer thread. Recovery rebuilds the slab, the
 * per-user counts, the idempotency keys and the expiry timers, and expires
 * every reservation whose deadline passed while the engine was down, all
 * before this returns. cfg is copied.
 * Errors: SPIKE_EINVAL (a config value out of range, or a table configured
 * too small for what is on disk), SPIKE_ELOCKED (another engine owns the
 * data directory: another process, whose pid is named, or this one),
 * SPIKE_ESTORAGE (LMDB or the file system refused, or a stored record is
 * corrupt), SPIKE_EINTERNAL (out of memory), SPIKE_EMISUSE (cfg was not
 * made by spike_config_init, or comes from a newer spike.h);
 * spike_open_error() says which, in words. On any error *out (when out is
 * not NULL) is NULL.
 */
SPIKE_EXTERN int spike_open(spike_engine **out, const spike_config *cfg);

/* Why the last spike_open() on this thread failed, in words. */
SPIKE_EXTERN const char *spike_open_error(void);

/*
 * The engine's last error, in words, for a log or an operator: a refused
 * spike_close() or spike_producer_open(), a failed commit (which says what
 * the file system answered), a failed read. Copies at most cap bytes,
 * NUL-terminated, into buf (may be NULL with cap 0) and returns the error's
 * status, SPIKE_OK when there was none. Any thread.
 */
SPIKE_EXTERN int spike_engine_error(spike_engine *e, char *buf, size_t cap);

/*
 * Stop the writer after it has committed every op already submitted, close
 * LMDB and free the engine. Every producer must have been closed first.
 * Errors: SPIKE_EBUSY (a producer is still open, or spike_backup is
 * running; nothing was closed).
 */
SPIKE_EXTERN int spike_close(spike_engine *e);

/* -------------------------------------------------------------------------
 * Producers: one per calling thread
 */
typedef struct spike_producer spike_producer;
typedef struct spike_op spike_op;
typedef void (*spike_cb)(spike_op *op);

/*
 * Register a producer. It belongs to one thread: the first that submits
 * through it, drains it, reads through it (spike_order_get,
 * spike_user_orders, spike_feed_read, spike_feed_fetch) or calls
 * spike_feed_wait_end (so a host may open producers on its main thread and
 * hand each, unused, to its own loop). Those calls from any other thread
 * return SPIKE_EMISUSE. To move work to another thread, close it
 * there and open one in the new thread. Any thread.
 * Errors: SPIKE_EFULL (max_producers are open), SPIKE_EINTERNAL.
 */
SPIKE_EXTERN int spike_producer_open(spike_engine *e, spike_producer **out);

/* The completion eventfd: readable when callbacks are waiting. Owned by the
 * producer; do not close it. Watch it level- or edge-triggered (see
 * Callbacks). -1 for NULL or a closed producer (stop watching the fd before
 * spike_producer_close: the slot's descriptor serves its next producer). */
SPIKE_EXTERN int spike_producer_fd(const spike_producer *p);

/* Run the callbacks of the ops that had completed when it was called, on
 * this thread, and return how many ran; completions that arrive meanwhile
 * make the fd readable again. Safe to call when the fd is not readable
 * (returns 0). SPIKE_EMISUSE from a thread that is not p's, or from inside
 * one of p's callbacks. */
SPIKE_EXTERN int spike_producer_drain(spike_producer *p);

/* Ops submitted through p whose callbacks have not run yet. */
SPIKE_EXTERN uint32_t spike_producer_inflight(const spike_producer *p);

/*
 * What the last refused or failed operation through p met, in words: which
 * call, which status, and the cause ("spike_reserve: a table is full:
 * buyer table full (max_buyers 65536); raise max_buyers"). Covers refusals
 * at the call and failures delivered to a callback, but not SPIKE_EMISUSE
 * refusals made before an op is looked at (a NULL or pending op, another
 * thread, a closed producer): those say everything in their status. Copies at most cap
 * bytes, NUL-terminated, into buf and returns that status, SPIKE_OK when
 * nothing has failed since spike_producer_open(). p's thread (or any, while
 * p has no owner yet); from another, or on a closed p, SPIKE_EMISUSE and a
 * text saying so.
 */
SPIKE_EXTERN int spike_producer_error(const spike_producer *p, char *buf, size_t cap);

/*
 * Unregister p. Waits for the writer to take what is still in its ring
 * (reserves acknowledged at enqueue). Errors: SPIKE_EBUSY (ops are still in
 * flight: drain until spike_producer_inflight() is 0; nothing was closed),
 * SPIKE_EMISUSE (called from inside one of p's callbacks, or p is closed
 * already). Any thread, once p's owner thread has stopped using it: a close
 * that races a call on p in that thread is not detected, and must not
 * happen. Once closed, every call with p is refused with SPIKE_EMISUSE,
 * until a spike_producer_open() hands the same slot out again.
 */
SPIKE_EXTERN int spike_producer_close(spike_producer *p);

/* -------------------------------------------------------------------------
 * Callbacks
 *
 * A callback runs once for each submission that returned SPIKE_PENDING, and
 * never for one that returned anything else. It runs on the producer's
 * thread, inside spike_producer_drain(), never inside a submission.
 *
 * - The op is the caller's again when the callback starts: it may read it,
 *   submit it again (through any producer), or free it; the engine does not
 *   touch it after the callback returns.
 * - From a callback the caller may submit any operation through any producer
 *   its thread owns, read (spike_event_get, spike_order_get, ...), and call
 *   spike_producer_inflight, spike_producer_error and every function that
 *   takes an engine. It may not drain or close the producer whose callback
 *   is running (SPIKE_EMISUSE), nor close the engine (SPIKE_EBUSY: its
 *   producers are open).
 * - Callbacks of one producer never run concurrently, and never nest.
 * - The eventfd may be watched edge-triggered (EPOLLET) or level-triggered:
 *   a drain reads the fd before it pops completions, and the writer writes
 *   it after it pushes them, so a completion the drain did not run always
 *   makes the fd readable again (a new edge). A drain leaves the fd quiet
 *   unless a completion's write came after the drain's read: then the fd is
 *   readable once more, and the next drain runs it or returns 0.
 * - The writer thread never runs caller code except log_cb.
 */

/* -------------------------------------------------------------------------
 * Operations. The caller allocates a spike_op (on its own request struct,
 * for example) and may set op->data; the engine fills the result fields
 * before the callback runs or before returning SPIKE_OK. The rest is the
 * engine's.
 */
#define SPIKE_OP_PRIVATE_BYTES 192

struct spike_op {
  void *data;            /* the caller's; never touched by the engine */
  /* results */
  int status;            /* SPIKE_OK or a SPIKE_E* status */
  int replayed;          /* 1: an idempotent repeat (a retried key, a repaid
                            payment id, a repeated cancel) */
  const char *detail;    /* static text naming the field or cause, or NULL */
  uint64_t seq;          /* spike_feed_wait: the newest committed seq */
  union {
    spike_order order;   /* reserve, pay, cancel */
    spike_event event;   /* event create, restock, close */
  } r;
  /* Results a later release of this ABI adds; the engine zeroes them. */
  uint64_t reserved_[4];
  /* The engine's while the op is pending; opaque, never to be read. */
  uint64_t private_[SPIKE_OP_PRIVATE_BYTES / 8];
};

/*
 * Reserve qty units of event_id for user_id. key (NULL with key_len 0, or
 * 1..SPIKE_KEY_MAX bytes) is the idempotency key: the same (event, key) makes at most one
 * order; a repeat completes with that order and op->replayed = 1 (a repeat
 * by another user is SPIKE_EFORBIDDEN).
 * SPIKE_ACK_MEMORY: returns SPIKE_OK with op->r.order filled (a new order),
 * or SPIKE_PENDING when the memory-ack bound is reached (see spike_ack);
 * SPIKE_ACK_DURABLE: returns SPIKE_PENDING, the callback runs once the order
 * is committed. A replayed key is always SPIKE_PENDING. cb is required.
 * Errors now: SPIKE_EINVAL (qty 0, user_id 0, key too long; op->detail
 * names it),
 * SPIKE_ENOEVENT, SPIKE_ENOTLIVE, SPIKE_ESOLDOUT, SPIKE_ELIMIT (qty above
 * the user's remaining limit), SPIKE_EBUSY (ring full, too many ops in
 * flight, or another request with this key in progress: retry),
 * SPIKE_EFULL (the buyer, user, key or live-reservation table is full),
 * op->detail saying which, SPIKE_ESTORAGE (the writer has failed),
 * SPIKE_EMISUSE. In the callback: SPIKE_OK,
 * SPIKE_ESTORAGE (the commit failed and the reservation was undone; or,
 * after a failed sync, the batch had committed but was never proven
 * durable: whether the order was kept is known only once the engine is
 * reopened, where a retry with the same key answers with it if it was, and
 * the user's orders show it),
 * SPIKE_ENOTLIVE (the event was closed before the writer took it, or a
 * replay whose original was refused so), SPIKE_EFORBIDDEN (replay),
 * SPIKE_EBUSY (a replay whose original is still in flight after 2 s).
 * Thread: the producer's.
 */
SPIKE_EXTERN int spike_reserve(spike_producer *p, spike_op *op,
                               uint64_t event_id, uint64_t user_id,
                               uint32_t qty, const char *key, size_t key_len,
                               spike_cb cb);

/*
 * Pay a reserved order. user_id 0 acts as an admin; otherwise the order
 * must belong to user_id (SPIKE_EFORBIDDEN). payment_id: 1..64 bytes of
 * UTF-8 with no control characters (C0, DEL or C1, as an event's name;
 * else SPIKE_EINVAL, detail "payment_id"). A
 * repeat with the same payment_id succeeds with op->replayed = 1; another
 * payment_id on a paid order, or any pay of a cancelled or expired order (or
 * one whose deadline has passed), is SPIKE_ESTATE. Always SPIKE_PENDING
 * unless refused now (SPIKE_EINVAL, SPIKE_ENOORDER for order_id 0, which
 * no order has, SPIKE_EBUSY, SPIKE_ESTORAGE, SPIKE_EMISUSE). Completes after its commit in both ack modes. An order
 * whose reserve is still on its way to the writer (ack=memory, another
 * producer) is waited for, up to 2 s. Callback statuses: SPIKE_OK,
 * SPIKE_ENOORDER, SPIKE_EFORBIDDEN, SPIKE_ESTATE, SPIKE_EBUSY (the order
 * was still on its way after 2 s), SPIKE_ESTORAGE. op->r.order holds the
 * order after the operation. A verdict (a repeat, SPIKE_ESTATE,
 * SPIKE_EFORBIDDEN) is given on durable state only: if the batch it read
 * fails to become durable, it is SPIKE_ESTORAGE instead. A pay whose own
 * batch committed but whose sync failed is SPIKE_ESTORAGE too, and may be
 * found done once the engine is reopened (as a reserve, above).
 */
SPIKE_EXTERN int spike_pay(spike_producer *p, spike_op *op, uint64_t order_id,
                           uint64_t user_id, const char *payment_id,
                           size_t payment_id_len, spike_cb cb);

/* Cancel a reserved order; its units return to available. Cancelling a
 * cancelled order succeeds with op->replayed = 1; a paid or expired order
 * is SPIKE_ESTATE. Otherwise as spike_pay(). */
SPIKE_EXTERN int spike_cancel(spike_producer *p, spike_op *op,
                              uint64_t order_id, uint64_t user_id, spike_cb cb);

/* spike_pay and spike_cancel of an order that must be of event_id: an
 * order of another event is SPIKE_ENOORDER, decided by the writer as it
 * applies the operation, so also for an order whose reserve is still on
 * its way (ack=memory). event_id 0: any event, as spike_pay and
 * spike_cancel. */
SPIKE_EXTERN int spike_pay_in_event(spike_producer *p, spike_op *op, uint64_t event_id,
                                    uint64_t order_id, uint64_t user_id,
                                    const char *payment_id, size_t payment_id_len,
                                    spike_cb cb);
SPIKE_EXTERN int spike_cancel_in_event(spike_producer *p, spike_op *op, uint64_t event_id,
                                       uint64_t order_id, uint64_t user_id, spike_cb cb);

/*
 * Event ids a caller picks (spec.id, PUT /api/v1/events/{id}) are unique
 * per engine: a taken one is SPIKE_EEXIST, in memory before the commit.
 * Ids the engine mints are (unix ms << 20 | producer << 14 | sequence),
 * which is above 2^53 for any clock after 1970-04-10, so a caller that
 * keeps to 1..SPIKE_EVENT_ID_CLIENT_MAX never takes one the engine will
 * mint later (and its ids stay exact in JavaScript). See docs/scale-out.md.
 */
#define SPIKE_EVENT_ID_CLIENT_MAX ((UINT64_C(1) << 53) - 1)

/* What an event is created from. */
typedef struct spike_event_spec {
  uint64_t id;             /* 0: the engine picks one; else see above */
  const char *name;        /* 1..SPIKE_NAME_MAX bytes of UTF-8, no controls
                              (C0, DEL or C1: U+0000-001F, U+007F-009F) */
  size_t name_len;
  uint64_t stock;          /* 1..UINT32_MAX */
  int64_t price;           /* cents, 0..10^12 */
  int64_t start_at;        /* unix ms, 0..253402300799999 (9999-12-31) */
  int64_t end_at;          /* unix ms, > start_at, <= 253402300799999 */
  uint32_t per_user_limit; /* 1..1000000 */
  uint32_t pay_timeout_s;  /* 1..SPIKE_PAY_TIMEOUT_MAX_S */
  /* Zero (an initializer that names the fields, or memset, does it): room
   * for fields a later release of this ABI adds, zero meaning "absent".
   * Anything else is SPIKE_EINVAL ("reserved"). */
  uint64_t reserved_[2];
} spike_event_spec;

/* Check spec; SPIKE_OK or SPIKE_EINVAL with *field naming the bad field. */
SPIKE_EXTERN int spike_event_spec_check(const spike_event_spec *spec,
                                        const char **field);

/*
 * Create an event. Always completes after its commit (SPIKE_PENDING), in
 * both ack modes; the event is visible to reads and reserves from then on.
 * spec and its name are copied before this returns.
 * Errors now: SPIKE_EINVAL (op->detail names the field), SPIKE_EEXIST,
 * SPIKE_EFULL (max_events are in the slab), SPIKE_EBUSY (the ring),
 * SPIKE_ESTORAGE.
 * Callback: SPIKE_OK with op->r.event, or SPIKE_ESTORAGE.
 */
SPIKE_EXTERN int spike_event_create(spike_producer *p, spike_op *op,
                                    const spike_event_spec *spec, spike_cb cb);

/* Add units to an event (add: 1.., the total stays <= UINT32_MAX).
 * Completes after its commit. Errors: SPIKE_EINVAL, SPIKE_ENOEVENT,
 * SPIKE_ENOTLIVE (closed), SPIKE_EBUSY, SPIKE_ESTORAGE. */
SPIKE_EXTERN int spike_event_restock(spike_producer *p, spike_op *op,
                                     uint64_t event_id, uint64_t add,
                                     spike_cb cb);

/* Close an event: no reserve is accepted once this completes (a durable
 * reserve the writer takes after the close fails with SPIKE_ENOTLIVE; an
 * ack=memory one answered before the close completed is kept); reserved
 * orders can still be paid or cancelled. Repeating is SPIKE_OK. Completes
 * after its commit. Errors: SPIKE_ENOEVENT, SPIKE_EBUSY, SPIKE_ESTORAGE. */
SPIKE_EXTERN int spike_event_close(spike_producer *p, spike_op *op,
                                   uint64_t event_id, spike_cb cb);

/*
 * Park until the feed holds a record with seq > after, or wait_ms passes
 * (0..30000). Completes with SPIKE_OK and op->seq = the newest durable
 * seq (what spike_feed_read can return) either way; woken by the commit, never by polling. Errors now:
 * SPIKE_EINVAL (wait_ms), SPIKE_EBUSY (ring), SPIKE_ESTORAGE. In the
 * callback: SPIKE_OK, or SPIKE_EBUSY when max_feed_waiters are parked.
 */
SPIKE_EXTERN int spike_feed_wait(spike_producer *p, spike_op *op,
                                 uint64_t after, uint32_t wait_ms, spike_cb cb);

/* End one pending spike_feed_wait of p now, as if its wait_ms had passed:
 * its callback runs soon with SPIKE_OK and op->seq, and it no longer holds
 * one of max_feed_waiters. For a host whose client went away (spiked calls
 * it when a long-poll's connection closes). An op that is not a pending
 * spike_feed_wait of p is left alone (SPIKE_OK). SPIKE_EBUSY: p's ring is
 * full, the wait goes on (try again, or let wait_ms end it);
 * SPIKE_EMISUSE: not p's thread, or op is NULL. Added in 0.3.0. */
SPIKE_EXTERN int spike_feed_wait_end(spike_producer *p, spike_op *op);

/* Complete every parked spike_feed_wait now, and any later one at once:
 * for shutdown, so that producers can drain. Any thread. */
SPIKE_EXTERN void spike_feed_release(spike_engine *e);

/* -------------------------------------------------------------------------
 * Reads: synchronous, never blocked by the writer.
 */

/* Any thread. Errors: SPIKE_ENOEVENT. */
SPIKE_EXTERN int spike_event_get(spike_engine *e, uint64_t event_id,
                                 spike_event *out);

/*
 * Any thread. Events in id order, those with id > after (0: from the
 * first), up to max. *count gets how many were copied; *next (may be NULL)
 * the id to pass as `after` for the next page, or 0 when this page holds
 * the last event. Errors: SPIKE_EINVAL (max is 0).
 */
SPIKE_EXTERN int spike_event_list(spike_engine *e, uint64_t after, spike_event *out,
                                  uint32_t max, uint32_t *count, uint64_t *next);

/* Committed orders, read from LMDB on the producer's thread. With
 * SPIKE_ACK_MEMORY a reserve answered at enqueue is seen here once its
 * batch commits: up to about memory_commit_us (the pace) and a commit
 * later. A commit
 * is seen here as soon as it is made, which can be a batch before it is
 * durable (see docs/design.md, Durability). Errors: SPIKE_ENOORDER,
 * SPIKE_ESTORAGE, SPIKE_EMISUSE (not p's thread). */
SPIKE_EXTERN int spike_order_get(spike_producer *p, uint64_t order_id,
                                 spike_order *out);

/*
 * A user's committed orders in one event (event_id != 0) or in all, newest
 * first (the order they were committed in, reversed). after: 0 for the
 * newest; otherwise the *next of the previous page, and the page starts with
 * the order committed before that one. Up to max are copied; *count gets
 * how many. *next (may be NULL) gets the cursor for the next page, 0 when
 * there is none. A page also ends after 100,000 orders of other events
 * were skipped, with *next set, so every call is bounded. Errors:
 * SPIKE_EINVAL (after is not one of this user's orders, or max is 0), SPIKE_ESTORAGE,
 * SPIKE_EMISUSE (not p's thread).
 */
SPIKE_EXTERN int spike_user_orders(spike_producer *p, uint64_t user_id, uint64_t event_id,
                                   uint64_t after, spike_order *out, uint32_t max,
                                   uint32_t *count, uint64_t *next);

/* Where the change feed stands, for a consumer that must neither miss nor
 * repeat a record. */
typedef struct spike_feed_info {
  uint64_t store_id; /* random (never 0) when the store was made, the same
                        for its life; a copy of its files keeps it, a
                        restored backup gets a new one (see
                        spike_store_origin). A different id means a
                        different store: start over, or resume from
                        spike_store_origin.restored_seq. */
  uint64_t head;     /* the newest durable seq; 0 when there is none */
  uint64_t first;    /* the oldest seq still kept (feed_retain drops older
                        ones); head + 1 when none is */
  uint64_t records;  /* records kept */
  uint64_t bytes;    /* the LMDB pages they take */
} spike_feed_info;

/* Feed records with seq > after, oldest first, up to max: durable ones
 * only, so no record read here can be taken back by a power cut. *count
 * gets how many were copied; *next the seq to pass as `after` next time.
 * A cursor the feed cannot continue is refused, never answered with a
 * page that skips: after > the head (a restored or replaced store) and
 * after + 1 < the oldest kept seq (records dropped by feed_retain) are
 * SPIKE_EINVAL with nothing copied; spike_feed_fetch says which.
 * Errors: SPIKE_EINVAL, SPIKE_ESTORAGE, SPIKE_EMISUSE (not p's thread). */
SPIKE_EXTERN int spike_feed_read(spike_producer *p, uint64_t after,
                                 spike_change *out, uint32_t max,
                                 uint32_t *count, uint64_t *next);

/* spike_feed_read, and *info read from the same snapshot as the records
 * (filled on SPIKE_OK and SPIKE_EINVAL). With max 0, out may be NULL: the
 * feed's standing alone, SPIKE_OK with nothing copied (spike_feed_read
 * with max 0 is the same). The cursor is still checked: after 0 once
 * feed_retain has dropped seq 1 is SPIKE_EINVAL, *info filled all the
 * same. Errors: as spike_feed_read. */
SPIKE_EXTERN int spike_feed_fetch(spike_producer *p, uint64_t after,
                                  spike_change *out, uint32_t max,
                                  uint32_t *count, uint64_t *next,
                                  spike_feed_info *info);

/* The epoch of feed record seq: a random id of the run of the engine that
 * wrote it (each spike_open begins one, at the head + 1). Two copies of a
 * store that both took writes after the copy was made (a cold copy or a
 * disk snapshot started beside or instead of the original) keep the same
 * store_id and seqs, but the records after the fork have other epochs. A
 * consumer keeps the epoch of its cursor's record beside it and, when it
 * resumes, compares it with this store's: another epoch means this store's
 * record of that seq is not the one it read, and its cursor means nothing
 * here. 0 for seq 0, and for records older than the first epoch kept
 * (written before a build that keeps them); for a seq past the head, the
 * running epoch. Any thread. */
SPIKE_EXTERN uint64_t spike_feed_epoch(spike_engine *e, uint64_t seq);

/* -------------------------------------------------------------------------
 * Backups and the store's origin
 */

/* Where the store came from. A store restored from a backup (the first
 * open of a copy of what spike_backup wrote) has a new store_id, so a feed
 * consumer of the store it came from sees a different store, and says
 * which store and which seq it starts from: its feed is that store's feed
 * up to restored_seq, under the same seqs, and its own after. */
typedef struct spike_store_origin {
  uint64_t store_id;       /* as spike_feed_info.store_id */
  uint64_t restored_from;  /* the store_id the backup was taken of; 0: this
                              store was not restored from a backup */
  uint64_t restored_seq;   /* that store's newest feed seq in the backup */
  int64_t backup_at_ms;    /* unix ms when the backup's copy began */
  int64_t restored_at_ms;  /* unix ms when the restored copy was first opened */
} spike_store_origin;

/* Any thread. Fixed for the engine's life. */
SPIKE_EXTERN void spike_store_origin_get(spike_engine *e, spike_store_origin *out);

/* What a backup holds, or why it failed. */
typedef struct spike_backup_info {
  uint64_t store_id;     /* of the store backed up */
  uint64_t seq;          /* the newest feed seq in the backup; 0: none.
                            Every change with a seq up to this is in it. */
  uint64_t bytes;        /* the backup's data.mdb */
  int64_t at_ms;         /* unix ms when the copy began */
  uint64_t duration_ms;
  char error[256];       /* on failure: what went wrong, in words */
} spike_backup_info;

/*
 * A hot, compacting backup of the engine's store into the directory
 * dest_dir, made while the engine serves: LMDB's compacting copy of one
 * read snapshot (every change committed before the call is in it), synced,
 * then renamed into place, so dest_dir either holds a whole backup
 * (data.mdb) or does not exist; a crash mid-copy can leave only a
 * dest_dir.partial.PID directory, which is safe to delete. Commits go on
 * meanwhile; pages they free are reused only after the copy.
 * Restore: copy dest_dir/data.mdb into an empty data directory and open it
 * (see spike_store_origin). Any thread; blocks for the copy (seconds per
 * GiB), so call it off a loop thread. One backup per engine at a time.
 * Errors: SPIKE_EINVAL (dest_dir exists, or its parent directory does not),
 * SPIKE_EBUSY (a backup of this engine is running), SPIKE_ESTORAGE (the
 * copy failed: a full disk, an I/O error; nothing is left at dest_dir);
 * out->error says which. out may not be NULL.
 */
SPIKE_EXTERN int spike_backup(spike_engine *e, const char *dest_dir, spike_backup_info *out);

/*
 * The same for the store in data_dir, without opening an engine on it:
 * the store is opened read-only beside whoever serves it (another process
 * may be running spiked on it; LMDB lets a second process read). Not for
 * a store this process has open (LMDB forbids opening one environment
 * twice in a process): use spike_backup there; this refuses it with
 * SPIKE_EMISUSE. Errors: as spike_backup, and SPIKE_EINVAL when data_dir
 * holds no spike store.
 */
SPIKE_EXTERN int spike_backup_dir(const char *data_dir, const char *dest_dir,
                                  spike_backup_info *out);

/* -------------------------------------------------------------------------
 * Health and statistics
 */

/* SPIKE_OK when storage is writable and the queues have room; otherwise
 * SPIKE_ESTORAGE, SPIKE_EBUSY (the commit queue is nearly full) or
 * SPIKE_EFULL (the live-reservation table is full) with *why saying which
 * (static text; why may be NULL). Any thread. */
SPIKE_EXTERN int spike_health(spike_engine *e, const char **why);

/* Histogram bounds (upper, inclusive) shared by every spike_stats. */
#define SPIKE_COMMIT_BUCKETS 16  /* 50 us .. 1.6 s, doubling; +Inf last */
#define SPIKE_BATCH_BUCKETS 14   /* 1, 2, 4 .. 8192; +Inf last */
SPIKE_EXTERN extern const double spike_commit_bucket_s[SPIKE_COMMIT_BUCKETS];
SPIKE_EXTERN extern const uint32_t spike_batch_bucket[SPIKE_BATCH_BUCKETS];

typedef struct spike_stats {
  uint32_t size;             /* sizeof as the caller's spike.h has it */
  uint32_t reserved0_;
  uint64_t commits_total;
  uint64_t commit_failures_total;
  uint64_t ops_committed_total;
  uint64_t orders_expired_total;
  uint64_t commit_seconds_count[SPIKE_COMMIT_BUCKETS + 1]; /* not cumulative */
  double commit_seconds_sum;
  uint64_t batch_size_count[SPIKE_BATCH_BUCKETS + 1];      /* not cumulative */
  uint64_t batch_size_sum;
  uint32_t queue_depth;      /* ops waiting in every producer ring */
  uint32_t queue_capacity;   /* sum of the rings' sizes */
  uint32_t reservations_live;     /* reserved orders not yet paid, cancelled
                                     or expired, in flight included */
  uint32_t reservations_capacity; /* max_reserved (or more, after recovery) */
  uint64_t acks_lost_total;  /* ack=memory reserves lost with a failed batch */
  /* capacities count slots; these hash tables take entries up to 3/4 of
   * them (SPIKE_EFULL past that) */
  uint32_t buyers_used, buyers_capacity;
  uint32_t users_used, users_capacity;
  uint32_t keys_used, keys_capacity;
  uint64_t feed_seq;         /* newest durable feed seq */
  uint64_t store_id;         /* as spike_feed_info.store_id */
  uint64_t map_size_bytes;   /* the LMDB map */
  uint64_t map_used_bytes;   /* its high-water mark (pages freed inside are
                                reused, so this never falls) */
  uint32_t feed_waiters;     /* spike_feed_wait ops parked now (0.3.0) */
  uint32_t feed_waiters_capacity; /* max_feed_waiters */
} spike_stats;

/* Any thread. A snapshot; counters are monotonic. The inline wrapper passes
 * the size of the caller's struct; fields it lacks are not written. */
SPIKE_EXTERN void spike_stats_get_size(spike_engine *e, spike_stats *out, size_t size);
static inline void spike_stats_get(spike_engine *e, spike_stats *out) {
  spike_stats_get_size(e, out, sizeof(*out));
}

#ifdef __cplusplus
}
#endif
#endif /* SPIKE_H */

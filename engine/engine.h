/*
 * engine.h -- the engine's internal state, shared by the public API
 * (engine.c), the writer thread (store/writer.c) and recovery
 * (store/recover.c). Nothing here is part of the public surface.
 *
 * Data flows one way: a producer thread checks and takes stock in memory
 * (slab, buyers, keys), then puts one msg on its own submission ring; the
 * writer drains every ring into one store transaction per batch, commits,
 * applies the effects that give stock back, and hands completed ops back
 * through each producer's completion ring and eventfd.
 */
#ifndef SPIKE_ENGINE_H
#define SPIKE_ENGINE_H

#include <pthread.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

#include "ids.h"
#include "limit.h"
#include "ring.h"
#include "schema.h"
#include "slab.h"
#include "spike.h"

typedef struct writer writer;

/* spike_op's private area as the engine sees it: spike.h shows callers only
 * SPIKE_OP_PRIVATE_BYTES of opaque storage, so what is kept here can change
 * without touching the ABI. Only ever accessed through OP(). */
typedef struct op_priv {
  spike_cb cb_;
  spike_op *next_;
  spike_producer *producer_;
  uint64_t a_;        /* order id or feed seq */
  uint64_t b_;        /* user id or restock amount */
  uint64_t c_;        /* pay, cancel: the event the order must be of (0: any) */
  int64_t deadline_;  /* feed wait: monotonic ms */
  uint32_t slot_;     /* event slot */
  uint32_t idx_;      /* idempotency key entry */
  uint8_t type_;      /* enum msg_type */
  uint8_t pid_len_;
  char pid_[SPIKE_PAYMENT_ID_MAX];
} op_priv;

_Static_assert(sizeof(op_priv) <= sizeof(((spike_op *)0)->private_),
               "the op's private fields fit the room spike.h gives them");
_Static_assert(_Alignof(op_priv) <= _Alignof(uint64_t), "and its alignment");

#define OP(op) ((op_priv *)(void *)(op)->private_)

enum msg_type {
  MSG_RESERVE = 1,
  MSG_REPLAY,       /* a retried idempotency key: answer with its order */
  MSG_PAY,
  MSG_CANCEL,
  MSG_EVENT_CREATE,
  MSG_EVENT_RESTOCK,
  MSG_EVENT_CLOSE,
  MSG_FEED_WAIT,
  MSG_FEED_END,     /* end op's feed wait now; no completion of its own */
};

/* One submission. Reserves carry everything by value, because with
 * ack=memory the caller's op is free again as soon as spike_reserve
 * returns; every other type carries its arguments in the op. */
typedef struct msg {
  uint8_t type;
  uint8_t pad_[3];
  uint32_t qty;
  uint32_t event_slot;
  uint32_t buyer_idx;
  uint32_t key_idx;      /* LIM_FULL when the reserve had no key */
  uint32_t user_idx;     /* the user's entry in the users table */
  uint64_t order_id;
  uint64_t user_id;
  int64_t created_at;
  spike_op *op;          /* NULL for a reserve acknowledged at enqueue;
                            MSG_FEED_END: the wait to end, compared, never
                            read (it may be answered and gone by then) */
} msg;

_Static_assert(sizeof(msg) <= 64, "a message fits one cache line");
#define MSG_SLOT_BYTES 64

#define PRODUCER_CLOSED ((uintptr_t)1) /* no pthread_t is 1 */

struct spike_producer {
  spike_engine *e;
  uint32_t idx;
  int efd;
  ring submit;            /* msg slots, this thread -> writer */
  ring done;              /* spike_op *, writer -> this thread */
  ids ids;
  uint32_t inflight;      /* owner thread only */
  /* The thread that uses it: bound by the first submission or drain, so a
   * host may open producers on one thread and hand each to its own loop;
   * PRODUCER_CLOSED from its close until the slot is opened again.
   * relaxed throughout: only the owner's own accesses need to agree. */
  _Atomic uintptr_t owner;
  spike_op **pend;        /* ops in flight, by address: owner thread only */
  uint32_t pend_mask;
  store_txn *rtxn;        /* reads, on the owner's thread */
  _Atomic int active;
  /* Set while spike_producer_drain runs callbacks: a nested drain or a
   * close from a callback is refused. relaxed: the owner's own flag, read
   * elsewhere only to refuse a close that would race its drain anyway. */
  _Atomic int draining;
  /* The last refusal or failed completion, formatted only when asked
   * (spike_producer_error): owner thread only. */
  int err_status;
  uint8_t err_type;       /* enum msg_type of the op */
  const char *err_detail; /* static text or NULL */
};

/* Counters the writer bumps and any thread reads; all relaxed (reporting). */
typedef struct engine_stats {
  _Atomic uint64_t commits;
  _Atomic uint64_t failures;
  _Atomic uint64_t ops;
  _Atomic uint64_t expired;
  _Atomic uint64_t commit_hist[SPIKE_COMMIT_BUCKETS + 1];
  _Atomic uint64_t commit_ns_sum;
  _Atomic uint64_t batch_hist[SPIKE_BATCH_BUCKETS + 1];
  _Atomic uint64_t batch_sum;
  _Atomic uint64_t acks_lost;          /* memory acks whose batch failed */
} engine_stats;

struct spike_engine {
  spike_config cfg;                    /* max_users filled in when given as 0 */
  int users_as_buyers;                 /* max_users was 0: it is max_buyers */
  struct spike_engine *open_next;      /* the process's open engines (lock_dir) */
  uint64_t dir_dev, dir_ino;           /* the data directory's identity */
  pid_t open_pid;                      /* the process that opened it (a fork inherits the list) */
  pthread_mutex_t err_lock;            /* guards err_status and err_text */
  int err_status;
  char err_text[512];
  char *data_dir;
  int lock_fd;
  slab slab;
  lim_table buyers;
  lim_table keys;
  lim_table users;              /* user -> an index into user_head */
  /* Per users entry, the user's newest committed order: the head of the
   * chain through the order records. Apart from the entries, which
   * producers write, so the writer's reads of it do not bounce. */
  _Atomic uint64_t *user_head;
  store *st;
  writer *w;
  spike_producer *producers;    /* cfg.max_producers slots, rings preallocated */
  pthread_mutex_t producers_lock;
  int64_t id_floor_ms;
  uint32_t armed_max;
  uint32_t unconfirmed_max;            /* memory acks not yet committed: batch_max */
  int pacing;                          /* ack=memory with memory_commit_us > 0 */
  /* Live reservations: taken by a producer and not yet paid, cancelled,
   * expired or undone. Bounded by armed_max (max_reserved). */
  alignas(64) _Atomic uint32_t armed;
  /* Reserves acknowledged at enqueue (ack=memory) whose batch has not
   * committed yet: what a crash can lose, bounded by unconfirmed_max. */
  alignas(64) _Atomic uint32_t unconfirmed;
  _Atomic int commits_failing;         /* a batch failed: no early acks until reopened */
  /* WRITER_AWAKE, WRITER_ASLEEP (any message wakes it) or WRITER_PACING
   * (waiting out memory_commit_us: only an urgent message, or a ring half
   * full, wakes it). */
  alignas(64) _Atomic int writer_sleeping;
  /* pacing: a message that waits for a commit was queued since the writer
   * began its last drain (stored by engine_wake_writer). */
  _Atomic int urgent;
  _Atomic int stopping;
  _Atomic int feed_released;           /* spike_feed_release was called */
  _Atomic int failed;                  /* fatal storage error: no commits */
  _Atomic int map_full;                /* last commit ran out of room: ENGINE_FULL_* */
  /* the buyer, user and key tables' entries when commits began to fail
   * for room (stored before map_full, which publishes them) */
  _Atomic uint32_t room_base[3];
  /* how far past room_base they may grow: batch_max when the failures
   * begin, halved by each commit that fails for room, doubled (to
   * batch_max) by each commit of reserves that fits meanwhile */
  _Atomic uint32_t room_slack;
  _Atomic int64_t room_probe_ms; /* room_refused's last reserve let through (monotonic) */
  const char *_Atomic failed_why;
  _Atomic uint64_t feed_seq;           /* newest committed feed seq */
  _Atomic uint32_t feed_waiters;       /* parked feed waits, as of the writer's last cycle */
  engine_stats stats;
  _Atomic int backing_up;              /* spike_backup is running */
  pthread_t writer_thread;
  int writer_running;
};

/* Why the last commit failed for room (spike_engine.map_full); 0: it did not. */
#define ENGINE_FULL_MAP 1  /* the LMDB map */
#define ENGINE_FULL_DISK 2 /* the file system */

/* Unix milliseconds (CLOCK_REALTIME). */
int64_t engine_now_ms(void);
/* Monotonic nanoseconds, for durations. */
uint64_t engine_mono_ns(void);
/* Monotonic milliseconds: the clock of timers (expiry, feed waits), which
 * a step of the wall clock must not fire early or stall. */
int64_t engine_mono_ms(void);

/* Log through the engine's sink (spike_config.log_cb, or JSON on stderr).
 * kv: n key-value pairs; fmt: the message. Any thread. */
void engine_log(spike_engine *e, int level, const char *module, const spike_log_kv *kv, size_t n,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Record the engine's last error (spike_engine_error) and, with a module,
 * log it at LOG_ERROR from that module. Any thread. */
void engine_error(spike_engine *e, int status, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define WRITER_AWAKE 0
#define WRITER_ASLEEP 1
#define WRITER_PACING 2

/* Wake the writer if it sleeps or paces, for a message that waits for a
 * commit; call after ring_publish_sc. */
void engine_wake_writer(spike_engine *e);


#endif /* SPIKE_ENGINE_H */

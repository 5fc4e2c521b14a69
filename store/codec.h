/*
 * codec.h -- msgpack encoding of the records spike keeps in LMDB.
 *
 * Records are positional msgpack arrays whose first element is the format
 * version, so a field can be appended later without breaking old readers:
 *
 *   event  [1, id, name, price, stock_total, reserved, sold, start_at,
 *           end_at, per_user_limit, pay_timeout_s, closed]
 *   order  [1, id, event_id, user_id, qty, amount, state, created_at,
 *           expires_at, paid_at, cancelled_at, payment_id, prev, rseq, key]
 *          prev: the user's previous order in commit order (0: none);
 *          rseq: the seq of the order's order.reserved change; key: nil or
 *          the 16-byte hash of its idempotency key. The last three came
 *          with store schema 2: a record without them decodes with zeros.
 *   change [1, type, at, order-or-event array]
 *
 * Encoding writes into a caller buffer (no allocation). Decoding uses a
 * caller's msgpack_zone, cleared on entry, so a reused zone allocates only
 * while it grows; a record's shape is checked first (containers of at most
 * 32 elements, 4 levels deep, lengths within its bytes), so a corrupt one
 * cannot make msgpack-c allocate what it claims. Every decoded record is
 * checked (codec_*_valid) and every record is checked again before it is
 * written: a pair of assertions.
 */
#ifndef SPIKE_CODEC_H
#define SPIKE_CODEC_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "schema.h"
#include "spike.h"

#define CODEC_VERSION 1
#define CODEC_ORDER_MAX 224
#define CODEC_EVENT_MAX 256
#define CODEC_CHANGE_MAX (16 + CODEC_EVENT_MAX)

/* Bytes written, or 0 when cap is too small. codec_encode_order writes an
 * order with no prev, rseq or key. */
size_t codec_encode_order_rec(const order_rec *r, uint8_t *buf, size_t cap);
size_t codec_encode_order(const spike_order *o, uint8_t *buf, size_t cap);
size_t codec_encode_event(const spike_event *e, int closed, uint8_t *buf, size_t cap);
/* order for SPIKE_CHANGE_ORDER_*, event (+ closed) for SPIKE_CHANGE_EVENT_*. */
size_t codec_encode_change(spike_change_type type, int64_t at, const spike_order *o,
                           const spike_event *e, int closed, uint8_t *buf, size_t cap);

/* An order's change record, with the order record itself as its tail: the
 * bytes codec_encode_change writes, but with r's prev, rseq and key, and
 * *order_at set to where the order record (codec_encode_order_rec's bytes)
 * starts. One encoding serves both puts. 0 when cap is too small. */
size_t codec_encode_order_change(const order_rec *r, spike_change_type type, int64_t at,
                                 uint8_t *buf, size_t cap, size_t *order_at);

/* 0, or -1 when the bytes are not a valid record. The event's state is
 * computed at now_ms; *closed (may be NULL) gets the stored flag. */
int codec_decode_order(const void *buf, size_t len, msgpack_zone *z, spike_order *o);
int codec_decode_order_rec(const void *buf, size_t len, msgpack_zone *z, order_rec *r);
int codec_decode_event(const void *buf, size_t len, msgpack_zone *z, int64_t now_ms,
                       spike_event *e, int *closed);
/* c->seq is not stored in the value; the caller sets it from the key. */
int codec_decode_change(const void *buf, size_t len, msgpack_zone *z, spike_change *c);

/* An event's state at now_ms: the one rule every reader of an event uses
 * (the slab, the writer, decoded records). */
spike_event_state codec_event_state(int closed, int64_t now_ms, int64_t start_at, int64_t end_at,
                                    uint64_t available);

/* Structural checks shared by encode (assert) and decode (reject). */
int codec_order_valid(const spike_order *o);
int codec_event_valid(const spike_event *e);

#endif /* SPIKE_CODEC_H */

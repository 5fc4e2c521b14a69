/*
 * fuzz_record.c -- libFuzzer target for the stored-record decoders
 * (store/codec.c): the bytes a damaged or hostile data file could hold.
 * Nothing may crash, over-read or allocate what a record claims; whatever
 * decodes must pass the record checks and survive a round trip: encoded
 * again and decoded, the same record.
 *
 *   make build/fuzz/fuzz_record
 *   ./build/fuzz/fuzz_record -max_total_time=60 tests/corpus/record
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define ASSERT(c) ((c) ? (void)0 : abort())

static msgpack_zone zone;

static void same_order(const spike_order *a, const spike_order *b) {
  ASSERT(a->id == b->id && a->event_id == b->event_id && a->user_id == b->user_id);
  ASSERT(a->qty == b->qty && a->amount == b->amount && a->state == b->state);
  ASSERT(a->created_at == b->created_at && a->expires_at == b->expires_at);
  ASSERT(a->paid_at == b->paid_at && a->cancelled_at == b->cancelled_at);
  ASSERT(strcmp(a->payment_id, b->payment_id) == 0);
}

static void same_event(const spike_event *a, const spike_event *b) {
  ASSERT(a->id == b->id && strcmp(a->name, b->name) == 0 && a->price == b->price);
  ASSERT(a->stock_total == b->stock_total && a->reserved == b->reserved && a->sold == b->sold);
  ASSERT(a->available == b->available && a->start_at == b->start_at && a->end_at == b->end_at);
  ASSERT(a->per_user_limit == b->per_user_limit && a->pay_timeout_s == b->pay_timeout_s);
  ASSERT(a->state == b->state);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int ready;
  if (!ready) ready = msgpack_zone_init(&zone, 1024);
  uint8_t buf[CODEC_CHANGE_MAX + 64];

  order_rec r, r2;
  if (codec_decode_order_rec(data, size, &zone, &r) == 0) {
    ASSERT(codec_order_valid(&r.o));
    size_t n = codec_encode_order_rec(&r, buf, sizeof(buf));
    ASSERT(n > 0);
    ASSERT(codec_decode_order_rec(buf, n, &zone, &r2) == 0);
    same_order(&r.o, &r2.o);
    ASSERT(r.prev == r2.prev && r.rseq == r2.rseq && r.keyed == r2.keyed);
    ASSERT(!r.keyed || (r.key1 == r2.key1 && r.key2 == r2.key2));
  }

  spike_event e, e2;
  int closed, closed2;
  if (codec_decode_event(data, size, &zone, 1800000000000ll, &e, &closed) == 0) {
    ASSERT(codec_event_valid(&e));
    size_t n = codec_encode_event(&e, closed, buf, sizeof(buf));
    ASSERT(n > 0);
    ASSERT(codec_decode_event(buf, n, &zone, 1800000000000ll, &e2, &closed2) == 0);
    same_event(&e, &e2);
    ASSERT(closed == closed2);
  }

  spike_change c, c2;
  if (codec_decode_change(data, size, &zone, &c) == 0) {
    int ev = c.type >= SPIKE_CHANGE_EVENT_CREATED;
    size_t n = codec_encode_change(c.type, c.at, ev ? NULL : &c.u.order, ev ? &c.u.event : NULL,
                                   ev && c.u.event.state == SPIKE_EVENT_CLOSED, buf, sizeof(buf));
    ASSERT(n > 0);
    ASSERT(codec_decode_change(buf, n, &zone, &c2) == 0);
    ASSERT(c.type == c2.type && c.at == c2.at);
    if (ev) same_event(&c.u.event, &c2.u.event);
    else same_order(&c.u.order, &c2.u.order);
  }
  return 0;
}

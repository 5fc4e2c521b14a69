/*
 * codec.c -- msgpack-c packing into fixed buffers and unpacking through a
 * reusable zone. Positional arrays keep records small (an order is ~60
 * bytes) and decoding a matter of indexing; the version element leads so
 * the layout can grow.
 */
#include "codec.h"

#include <assert.h>
#include <string.h>


/* The packers below are inlined into each encoder, where the callback is
 * known: gcc then turns every field into a bounds check and a store, not
 * an indirect call and a memcpy (an order and its change record: 96 ns to
 * 22 ns, measured with -O2). */
#define INLINE static inline __attribute__((always_inline))

typedef struct fbuf {
  uint8_t *p;
  size_t len, cap;
  int overflow;
} fbuf;

INLINE int fbuf_write(void *data, const char *buf, size_t len) {
  fbuf *f = data;
  if (f->overflow || len > f->cap - f->len) {
    f->overflow = 1;
    return -1;
  }
  memcpy(f->p + f->len, buf, len);
  f->len += len;
  return 0;
}

spike_event_state codec_event_state(int closed, int64_t now_ms, int64_t start_at, int64_t end_at,
                                    uint64_t available) {
  if (closed) return SPIKE_EVENT_CLOSED;
  if (now_ms >= end_at) return SPIKE_EVENT_ENDED;
  if (now_ms < start_at) return SPIKE_EVENT_SCHEDULED;
  return available == 0 ? SPIKE_EVENT_SOLD_OUT : SPIKE_EVENT_LIVE;
}

int codec_order_valid(const spike_order *o) {
  return o->id != 0 && o->event_id != 0 && o->qty > 0 && o->amount >= 0 &&
         o->state >= SPIKE_ORDER_RESERVED && o->state <= SPIKE_ORDER_EXPIRED &&
         o->created_at >= 0 && o->expires_at >= o->created_at &&
         (o->state == SPIKE_ORDER_PAID) == (o->paid_at != 0) &&
         (o->state == SPIKE_ORDER_PAID) == (o->payment_id[0] != '\0') &&
         (o->state == SPIKE_ORDER_CANCELLED || o->state == SPIKE_ORDER_EXPIRED) ==
             (o->cancelled_at != 0) &&
         memchr(o->payment_id, '\0', sizeof(o->payment_id)) != NULL;
}

int codec_event_valid(const spike_event *e) {
  /* reserved + sold is compared without the sum, which could wrap */
  return e->id != 0 && e->name[0] != '\0' && e->price >= 0 && e->stock_total > 0 &&
         e->stock_total <= UINT32_MAX && e->reserved <= e->stock_total &&
         e->sold <= e->stock_total - e->reserved &&
         e->available == e->stock_total - e->reserved - e->sold && e->end_at > e->start_at &&
         e->per_user_limit >= 1 && e->pay_timeout_s >= 1 &&
         e->pay_timeout_s <= SPIKE_PAY_TIMEOUT_MAX_S &&
         memchr(e->name, '\0', sizeof(e->name)) != NULL;
}

INLINE void pack_order(msgpack_packer *pk, const order_rec *r) {
  const spike_order *o = &r->o;
  msgpack_pack_array(pk, 15);
  msgpack_pack_uint8(pk, CODEC_VERSION);
  msgpack_pack_uint64(pk, o->id);
  msgpack_pack_uint64(pk, o->event_id);
  msgpack_pack_uint64(pk, o->user_id);
  msgpack_pack_uint32(pk, o->qty);
  msgpack_pack_int64(pk, o->amount);
  msgpack_pack_uint8(pk, (uint8_t)o->state);
  msgpack_pack_int64(pk, o->created_at);
  msgpack_pack_int64(pk, o->expires_at);
  msgpack_pack_int64(pk, o->paid_at);
  msgpack_pack_int64(pk, o->cancelled_at);
  size_t n = strlen(o->payment_id);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, o->payment_id, n);
  msgpack_pack_uint64(pk, r->prev);
  msgpack_pack_uint64(pk, r->rseq);
  if (r->keyed) {
    uint8_t k[16];
    for (int i = 0; i < 8; i++) {
      k[i] = (uint8_t)(r->key1 >> (56 - 8 * i));
      k[8 + i] = (uint8_t)(r->key2 >> (56 - 8 * i));
    }
    msgpack_pack_bin(pk, sizeof(k));
    msgpack_pack_bin_body(pk, k, sizeof(k));
  } else {
    msgpack_pack_nil(pk);
  }
}

INLINE void pack_event(msgpack_packer *pk, const spike_event *e, int closed) {
  msgpack_pack_array(pk, 12);
  msgpack_pack_uint8(pk, CODEC_VERSION);
  msgpack_pack_uint64(pk, e->id);
  size_t n = strlen(e->name);
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, e->name, n);
  msgpack_pack_int64(pk, e->price);
  msgpack_pack_uint64(pk, e->stock_total);
  msgpack_pack_uint64(pk, e->reserved);
  msgpack_pack_uint64(pk, e->sold);
  msgpack_pack_int64(pk, e->start_at);
  msgpack_pack_int64(pk, e->end_at);
  msgpack_pack_uint32(pk, e->per_user_limit);
  msgpack_pack_uint32(pk, e->pay_timeout_s);
  msgpack_pack_uint8(pk, closed ? 1 : 0);
}

size_t codec_encode_order_rec(const order_rec *r, uint8_t *buf, size_t cap) {
  assert(codec_order_valid(&r->o));
  fbuf f = {buf, 0, cap, 0};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &f, fbuf_write);
  pack_order(&pk, r);
  return f.overflow ? 0 : f.len;
}

size_t codec_encode_order(const spike_order *o, uint8_t *buf, size_t cap) {
  order_rec r;
  memset(&r, 0, sizeof(r));
  r.o = *o;
  return codec_encode_order_rec(&r, buf, cap);
}

size_t codec_encode_event(const spike_event *e, int closed, uint8_t *buf, size_t cap) {
  assert(codec_event_valid(e));
  fbuf f = {buf, 0, cap, 0};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &f, fbuf_write);
  pack_event(&pk, e, closed);
  return f.overflow ? 0 : f.len;
}

/* [version, type, at, ...]: the head every change record starts with. */
INLINE void pack_change_head(msgpack_packer *pk, spike_change_type type, int64_t at) {
  msgpack_pack_array(pk, 4);
  msgpack_pack_uint8(pk, CODEC_VERSION);
  msgpack_pack_uint8(pk, (uint8_t)type);
  msgpack_pack_int64(pk, at);
}

size_t codec_encode_change(spike_change_type type, int64_t at, const spike_order *o,
                           const spike_event *e, int closed, uint8_t *buf, size_t cap) {
  fbuf f = {buf, 0, cap, 0};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &f, fbuf_write);
  pack_change_head(&pk, type, at);
  if (type >= SPIKE_CHANGE_EVENT_CREATED) {
    assert(e != NULL && codec_event_valid(e));
    pack_event(&pk, e, closed);
  } else {
    assert(o != NULL && codec_order_valid(o));
    order_rec r;
    memset(&r, 0, sizeof(r));
    r.o = *o;
    pack_order(&pk, &r);
  }
  return f.overflow ? 0 : f.len;
}

size_t codec_encode_order_change(const order_rec *r, spike_change_type type, int64_t at,
                                 uint8_t *buf, size_t cap, size_t *order_at) {
  assert(type < SPIKE_CHANGE_EVENT_CREATED && codec_order_valid(&r->o));
  fbuf f = {buf, 0, cap, 0};
  msgpack_packer pk;
  msgpack_packer_init(&pk, &f, fbuf_write);
  pack_change_head(&pk, type, at);
  *order_at = f.len;
  pack_order(&pk, r);
  return f.overflow ? 0 : f.len;
}

/* ---- decoding ---------------------------------------------------------- */

static int get_u64(const msgpack_object *a, uint32_t i, uint64_t *v) {
  if (a->via.array.ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER) return -1;
  *v = a->via.array.ptr[i].via.u64;
  return 0;
}

static int get_i64(const msgpack_object *a, uint32_t i, int64_t *v) {
  const msgpack_object *o = &a->via.array.ptr[i];
  if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
    *v = (int64_t)o->via.u64;
  else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
    *v = o->via.i64;
  else
    return -1;
  return 0;
}

static int get_u32(const msgpack_object *a, uint32_t i, uint32_t *v) {
  uint64_t u;
  if (get_u64(a, i, &u) != 0 || u > UINT32_MAX) return -1;
  *v = (uint32_t)u;
  return 0;
}

static int get_str(const msgpack_object *a, uint32_t i, char *out, size_t cap) {
  const msgpack_object *o = &a->via.array.ptr[i];
  if (o->type != MSGPACK_OBJECT_STR || o->via.str.size >= cap) return -1;
  if (o->via.str.size > 0) memcpy(out, o->via.str.ptr, o->via.str.size); /* "" has no ptr */
  out[o->via.str.size] = '\0';
  return 0;
}

static int is_record(const msgpack_object *a, uint32_t n) {
  uint64_t v;
  return a->type == MSGPACK_OBJECT_ARRAY && a->via.array.size >= n &&
         get_u64(a, 0, &v) == 0 && v == CODEC_VERSION;
}

static int unpack_order(const msgpack_object *a, order_rec *r) {
  uint64_t state;
  spike_order *o = &r->o;
  memset(r, 0, sizeof(*r));
  if (!is_record(a, 12) || get_u64(a, 1, &o->id) || get_u64(a, 2, &o->event_id) ||
      get_u64(a, 3, &o->user_id) || get_u32(a, 4, &o->qty) || get_i64(a, 5, &o->amount) ||
      get_u64(a, 6, &state) || get_i64(a, 7, &o->created_at) ||
      get_i64(a, 8, &o->expires_at) || get_i64(a, 9, &o->paid_at) ||
      get_i64(a, 10, &o->cancelled_at) ||
      get_str(a, 11, o->payment_id, sizeof(o->payment_id)))
    return -1;
  if (state < SPIKE_ORDER_RESERVED || state > SPIKE_ORDER_EXPIRED) return -1;
  o->state = (spike_order_state)state;
  if (a->via.array.size >= 15) {
    const msgpack_object *k = &a->via.array.ptr[14];
    if (get_u64(a, 12, &r->prev) || get_u64(a, 13, &r->rseq)) return -1;
    if (k->type == MSGPACK_OBJECT_BIN && k->via.bin.size == 16) {
      const uint8_t *b = (const uint8_t *)k->via.bin.ptr;
      for (int i = 0; i < 8; i++) {
        r->key1 = r->key1 << 8 | b[i];
        r->key2 = r->key2 << 8 | b[8 + i];
      }
      r->keyed = 1;
    } else if (k->type != MSGPACK_OBJECT_NIL) {
      return -1;
    }
  }
  return codec_order_valid(o) ? 0 : -1;
}

static int unpack_event(const msgpack_object *a, int64_t now_ms, spike_event *e,
                        int *closed) {
  uint64_t c;
  memset(e, 0, sizeof(*e));
  if (!is_record(a, 12) || get_u64(a, 1, &e->id) || get_str(a, 2, e->name, sizeof(e->name)) ||
      get_i64(a, 3, &e->price) || get_u64(a, 4, &e->stock_total) ||
      get_u64(a, 5, &e->reserved) || get_u64(a, 6, &e->sold) || get_i64(a, 7, &e->start_at) ||
      get_i64(a, 8, &e->end_at) || get_u32(a, 9, &e->per_user_limit) ||
      get_u32(a, 10, &e->pay_timeout_s) || get_u64(a, 11, &c))
    return -1;
  if (e->reserved > e->stock_total || e->sold > e->stock_total - e->reserved) return -1;
  e->available = e->stock_total - e->reserved - e->sold;
  e->state = codec_event_state(c != 0, now_ms, e->start_at, e->end_at, e->available);
  if (closed != NULL) *closed = c != 0;
  return codec_event_valid(e) ? 0 : -1;
}

/* ---- the shape check ------------------------------------------------------
 * msgpack-c allocates a container's declared size before it reads a single
 * element, so five bytes claiming an array of four billion would ask the
 * allocator for 64 GiB. Before a record reaches it, walk its encoding once:
 * every container within CODEC_CONTAINER_MAX elements and CODEC_DEPTH_MAX
 * levels, every length within the bytes that are there. */

#define CODEC_CONTAINER_MAX 32
#define CODEC_DEPTH_MAX 4

static uint32_t be(const uint8_t *p, int n) {
  uint32_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* One object at *pos; 0 with *pos after it, or -1. */
static int walk_one(const uint8_t *p, size_t len, size_t *pos, int depth) {
  if (*pos >= len || depth > CODEC_DEPTH_MAX) return -1;
  uint8_t t = p[(*pos)++];
  size_t left = len - *pos, skip = 0;
  uint32_t items = 0; /* contained objects (twice a map's pairs) */
  if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) return 0;
  if (t >= 0xa0 && t <= 0xbf) {
    skip = t & 0x1f;
  } else if (t >= 0x90 && t <= 0x9f) {
    items = t & 0x0f;
  } else if (t >= 0x80 && t <= 0x8f) {
    items = 2u * (t & 0x0f);
  } else {
    static const uint8_t fixed[] = {[0xca] = 4, [0xcb] = 8, [0xcc] = 1, [0xcd] = 2, [0xce] = 4,
                                    [0xcf] = 8, [0xd0] = 1, [0xd1] = 2, [0xd2] = 4, [0xd3] = 8,
                                    [0xd4] = 2, [0xd5] = 3, [0xd6] = 5, [0xd7] = 9, [0xd8] = 17};
    int n = t == 0xc4 || t == 0xd9 || t == 0xc7 ? 1 : t == 0xc5 || t == 0xda || t == 0xc8 ? 2
          : t == 0xc6 || t == 0xdb || t == 0xc9 ? 4 : 0;
    if (n > 0) { /* bin, str, ext: a length, then bytes (ext: a type byte too) */
      if (left < (size_t)n) return -1;
      skip = be(p + *pos, n) + (t >= 0xc7 && t <= 0xc9 ? 1u : 0u);
      *pos += (size_t)n;
      left -= (size_t)n;
    } else if (t == 0xdc || t == 0xdd || t == 0xde || t == 0xdf) {
      n = t == 0xdc || t == 0xde ? 2 : 4;
      if (left < (size_t)n) return -1;
      uint32_t c = be(p + *pos, n);
      if (c > CODEC_CONTAINER_MAX) return -1;
      items = t >= 0xde ? 2 * c : c;
      *pos += (size_t)n;
    } else if (t < sizeof(fixed) && fixed[t] != 0) {
      skip = fixed[t];
    } else {
      return -1; /* 0xc1: never used */
    }
  }
  if (skip > left) return -1;
  *pos += skip;
  if (items > 2 * CODEC_CONTAINER_MAX) return -1;
  for (uint32_t i = 0; i < items; i++)
    if (walk_one(p, len, pos, depth + 1) != 0) return -1;
  return 0;
}

/* The record is one object, of a sane shape, filling buf exactly. */
static int shape_ok(const void *buf, size_t len) {
  size_t pos = 0;
  return walk_one(buf, len, &pos, 0) == 0 && pos == len;
}

static int unpack(const void *buf, size_t len, msgpack_zone *z, msgpack_object *obj) {
  size_t off = 0;
  msgpack_zone_clear(z);
  if (!shape_ok(buf, len)) return -1;
  if (msgpack_unpack(buf, len, &off, z, obj) != MSGPACK_UNPACK_SUCCESS || off != len)
    return -1;
  return 0;
}

int codec_decode_order_rec(const void *buf, size_t len, msgpack_zone *z, order_rec *r) {
  msgpack_object obj;
  if (unpack(buf, len, z, &obj) != 0) return -1;
  return unpack_order(&obj, r);
}

int codec_decode_order(const void *buf, size_t len, msgpack_zone *z, spike_order *o) {
  order_rec r;
  if (codec_decode_order_rec(buf, len, z, &r) != 0) return -1;
  *o = r.o;
  return 0;
}

int codec_decode_event(const void *buf, size_t len, msgpack_zone *z, int64_t now_ms,
                       spike_event *e, int *closed) {
  msgpack_object obj;
  if (unpack(buf, len, z, &obj) != 0) return -1;
  return unpack_event(&obj, now_ms, e, closed);
}

int codec_decode_change(const void *buf, size_t len, msgpack_zone *z, spike_change *c) {
  msgpack_object obj;
  uint64_t type;
  memset(c, 0, sizeof(*c));
  if (unpack(buf, len, z, &obj) != 0 || !is_record(&obj, 4) || get_u64(&obj, 1, &type) ||
      get_i64(&obj, 2, &c->at))
    return -1;
  if (type < SPIKE_CHANGE_ORDER_RESERVED || type > SPIKE_CHANGE_EVENT_CLOSED) return -1;
  c->type = (spike_change_type)type;
  const msgpack_object *payload = &obj.via.array.ptr[3];
  if (c->type >= SPIKE_CHANGE_EVENT_CREATED) return unpack_event(payload, c->at, &c->u.event, NULL);
  order_rec r;
  if (unpack_order(payload, &r) != 0) return -1;
  c->u.order = r.o;
  return 0;
}

/*
 * test_codec.c -- the msgpack records (store/codec.h): round trips of every
 * order state, event and change type at the edges of their fields; encode
 * into buffers too small; decode of every truncation, trailing bytes, wrong
 * versions, wrong types, out-of-range and invalid records. Inputs that are
 * decoded (and buffers that are encoded into) sit flush against a PROT_NONE
 * page in the picohttpparser manner, so any over-read or over-write crashes.
 */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "codec.h"
#include "slab.h"
#include "test.h"

#define T0 1700000000000ll

/* ---- guard pages --------------------------------------------------------- */

/* [PROT_NONE][one read-write page][PROT_NONE] */
typedef struct guard {
  uint8_t *map;
  uint8_t *page;
  size_t size;
} guard;

static void guard_open(guard *g) {
  g->size = (size_t)sysconf(_SC_PAGESIZE);
  g->map = mmap(NULL, 3 * g->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(g->map != MAP_FAILED);
  CHECK_EQ(mprotect(g->map, g->size, PROT_NONE), 0);
  CHECK_EQ(mprotect(g->map + 2 * g->size, g->size, PROT_NONE), 0);
  g->page = g->map + g->size;
}

static void guard_close(guard *g) { CHECK_EQ(munmap(g->map, 3 * g->size), 0); }

/* A copy of src ending exactly at the guard page after it. */
static const uint8_t *flush_end(guard *g, const void *src, size_t len) {
  CHECK(len <= g->size);
  uint8_t *p = g->page + g->size - len;
  memcpy(p, src, len);
  return p;
}

/* A copy of src starting exactly after the guard page before it. */
static const uint8_t *flush_start(guard *g, const void *src, size_t len) {
  CHECK(len <= g->size);
  memcpy(g->page, src, len);
  return g->page;
}

/* ---- records ------------------------------------------------------------- */

static spike_order order_in(spike_order_state st) {
  spike_order o;
  memset(&o, 0, sizeof(o));
  o.id = 0x1234567890abcdefull;
  o.event_id = 42;
  o.user_id = 7;
  o.qty = 2;
  o.amount = 3998;
  o.state = st;
  o.created_at = T0;
  o.expires_at = T0 + 900000;
  if (st == SPIKE_ORDER_PAID) {
    o.paid_at = T0 + 1000;
    strcpy(o.payment_id, "pay-1");
  }
  if (st == SPIKE_ORDER_CANCELLED || st == SPIKE_ORDER_EXPIRED) o.cancelled_at = T0 + 2000;
  return o;
}

static spike_event event_in(void) {
  spike_event e;
  memset(&e, 0, sizeof(e));
  e.id = 99;
  strcpy(e.name, "Summer \"flash\" sale \xe2\x80\x94 \xe9\x99\x90\xe6\x97\xb6 \xf0\x9f\x8e\x89");
  e.price = 1999;
  e.stock_total = 100;
  e.reserved = 10;
  e.sold = 20;
  e.available = 70;
  e.start_at = T0;
  e.end_at = T0 + 3600000;
  e.per_user_limit = 2;
  e.pay_timeout_s = 900;
  e.state = SPIKE_EVENT_LIVE;
  return e;
}

static void check_order_eq(const spike_order *a, const spike_order *b) {
  CHECK_EQ(a->id, b->id);
  CHECK_EQ(a->event_id, b->event_id);
  CHECK_EQ(a->user_id, b->user_id);
  CHECK_EQ(a->qty, b->qty);
  CHECK_EQ(a->amount, b->amount);
  CHECK_EQ(a->state, b->state);
  CHECK_EQ(a->created_at, b->created_at);
  CHECK_EQ(a->expires_at, b->expires_at);
  CHECK_EQ(a->paid_at, b->paid_at);
  CHECK_EQ(a->cancelled_at, b->cancelled_at);
  CHECK(strcmp(a->payment_id, b->payment_id) == 0);
}

static void check_event_eq(const spike_event *a, const spike_event *b) {
  CHECK_EQ(a->id, b->id);
  CHECK(strcmp(a->name, b->name) == 0);
  CHECK_EQ(a->price, b->price);
  CHECK_EQ(a->stock_total, b->stock_total);
  CHECK_EQ(a->available, b->available);
  CHECK_EQ(a->reserved, b->reserved);
  CHECK_EQ(a->sold, b->sold);
  CHECK_EQ(a->start_at, b->start_at);
  CHECK_EQ(a->end_at, b->end_at);
  CHECK_EQ(a->per_user_limit, b->per_user_limit);
  CHECK_EQ(a->pay_timeout_s, b->pay_timeout_s);
}

/* Encode, then decode from a guard-flush copy; compare. */
static void round_trip_order(guard *g, msgpack_zone *z, const spike_order *o) {
  CHECK(codec_order_valid(o));
  uint8_t buf[CODEC_ORDER_MAX];
  size_t n = codec_encode_order(o, buf, sizeof(buf));
  CHECK(n > 0 && n <= CODEC_ORDER_MAX);
  spike_order back;
  CHECK_EQ(codec_decode_order(flush_end(g, buf, n), n, z, &back), 0);
  check_order_eq(o, &back);
  CHECK_EQ(codec_decode_order(flush_start(g, buf, n), n, z, &back), 0);
  check_order_eq(o, &back);
  CHECK(codec_order_valid(&back));
}

static void round_trip_event(guard *g, msgpack_zone *z, const spike_event *e, int closed) {
  CHECK(codec_event_valid(e));
  uint8_t buf[CODEC_EVENT_MAX];
  size_t n = codec_encode_event(e, closed, buf, sizeof(buf));
  CHECK(n > 0 && n <= CODEC_EVENT_MAX);
  static const int64_t nows[] = {INT64_MIN,    -1,           0,        1, T0 - 1, T0, T0 + 1,
                                 T0 + 3599999, T0 + 3600000, INT64_MAX};
  for (size_t i = 0; i < sizeof(nows) / sizeof(nows[0]); i++) {
    spike_event back;
    int c = -1;
    CHECK_EQ(codec_decode_event(flush_end(g, buf, n), n, z, nows[i], &back, &c), 0);
    check_event_eq(e, &back);
    CHECK_EQ(c, closed != 0);
    /* The state is computed at the reader's now, never stored. */
    CHECK_EQ(back.state, codec_event_state(closed, nows[i], e->start_at, e->end_at, e->available));
    CHECK_EQ(codec_decode_event(flush_start(g, buf, n), n, z, nows[i], &back, NULL), 0);
    check_event_eq(e, &back);
  }
}

/* ---- round trips ----------------------------------------------------------- */

static void order_round_trip(void) {
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  for (int st = SPIKE_ORDER_RESERVED; st <= SPIKE_ORDER_EXPIRED; st++) {
    spike_order o = order_in((spike_order_state)st);
    round_trip_order(&g, &z, &o);
    /* Every integer at its widest. */
    o.id = UINT64_MAX;
    o.event_id = UINT64_MAX;
    o.user_id = UINT64_MAX;
    o.qty = UINT32_MAX;
    o.amount = INT64_MAX;
    o.created_at = INT64_MAX - 1;
    o.expires_at = INT64_MAX;
    if (o.paid_at) o.paid_at = INT64_MIN; /* negative times still encode */
    if (o.cancelled_at) o.cancelled_at = INT64_MIN;
    round_trip_order(&g, &z, &o);
    /* ...and at its narrowest: every integer one byte, so msgpack-c hands
     * the empty payment id back with a NULL pointer. */
    o = order_in((spike_order_state)st);
    o.id = 1;
    o.event_id = 1;
    o.user_id = 0;
    o.qty = 1;
    o.amount = 0;
    o.created_at = 0;
    o.expires_at = 0;
    if (o.paid_at) o.paid_at = 1;
    if (o.cancelled_at) o.cancelled_at = -1;
    round_trip_order(&g, &z, &o);
  }
  /* payment_id: 1 byte, 64 bytes, quotes and UTF-8. */
  spike_order o = order_in(SPIKE_ORDER_PAID);
  strcpy(o.payment_id, "x");
  round_trip_order(&g, &z, &o);
  memset(o.payment_id, 'p', SPIKE_PAYMENT_ID_MAX);
  o.payment_id[SPIKE_PAYMENT_ID_MAX] = '\0';
  round_trip_order(&g, &z, &o);
  strcpy(o.payment_id, "\"q\" 'x' \\ \xc3\xa9\xe2\x82\xac\xf0\x9f\x92\xb3");
  round_trip_order(&g, &z, &o);
  /* The empty payment id of an unpaid order. */
  o = order_in(SPIKE_ORDER_RESERVED);
  CHECK_EQ(o.payment_id[0], '\0');
  round_trip_order(&g, &z, &o);
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

static void event_round_trip(void) {
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  spike_event e = event_in();
  round_trip_event(&g, &z, &e, 0);
  round_trip_event(&g, &z, &e, 1);
  /* Sold out, untouched, and every counter at 32 bits. */
  e.reserved = 30;
  e.sold = 70;
  e.available = 0;
  round_trip_event(&g, &z, &e, 0);
  e.reserved = e.sold = 0;
  e.available = 100;
  round_trip_event(&g, &z, &e, 0);
  e.stock_total = UINT32_MAX;
  e.reserved = 1;
  e.sold = UINT32_MAX - 2;
  e.available = 1;
  e.price = INT64_MAX;
  e.id = UINT64_MAX;
  e.per_user_limit = UINT32_MAX;
  e.pay_timeout_s = SPIKE_PAY_TIMEOUT_MAX_S;
  e.start_at = INT64_MIN;
  e.end_at = INT64_MAX;
  round_trip_event(&g, &z, &e, 1);
  e = event_in();
  e.price = 0;
  e.pay_timeout_s = 1;
  e.per_user_limit = 1;
  e.stock_total = 1;
  e.reserved = e.sold = 0;
  e.available = 1;
  e.start_at = -5;
  e.end_at = -4;
  round_trip_event(&g, &z, &e, 0);
  /* Names: one byte, the longest, quotes and escapes, multi-byte UTF-8. */
  static const char *names[] = {
      "a",
      "\"double\" and 'single' quotes, a \\backslash\\ and a /slash/",
      "tab\there, newline\nthere, {\"json\":[1,2]}",
      ("Schn\xc3\xa4ppchen \xe9\x99\x90\xe6\x97\xb6\xe6\x8a\xa2\xe8\xb4\xad "
       "\xf0\x9f\x8e\x89\xf0\x9f\x94\xa5"),
  };
  e = event_in();
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    strcpy(e.name, names[i]);
    round_trip_event(&g, &z, &e, 0);
  }
  memset(e.name, 'n', SPIKE_NAME_MAX);
  e.name[SPIKE_NAME_MAX] = '\0';
  round_trip_event(&g, &z, &e, 0);
  /* 127 bytes of 3-byte UTF-8 can't fit evenly: 42 x 3 + 1. */
  char *p = e.name;
  for (int i = 0; i < 42; i++, p += 3)
    memcpy(p, "\xe2\x82\xac", 3);
  *p++ = '!';
  *p = '\0';
  CHECK_EQ(strlen(e.name), SPIKE_NAME_MAX);
  round_trip_event(&g, &z, &e, 1);
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

static void change_round_trip(void) {
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  static const spike_order_state for_type[] = {0, SPIKE_ORDER_RESERVED, SPIKE_ORDER_PAID,
                                               SPIKE_ORDER_CANCELLED, SPIKE_ORDER_EXPIRED};
  static const int64_t ats[] = {0, T0, INT64_MAX, -1};
  for (int t = SPIKE_CHANGE_ORDER_RESERVED; t <= SPIKE_CHANGE_EVENT_CLOSED; t++) {
    for (size_t a = 0; a < sizeof(ats) / sizeof(ats[0]); a++) {
      spike_order o =
          order_in(t <= SPIKE_CHANGE_ORDER_EXPIRED ? for_type[t] : SPIKE_ORDER_RESERVED);
      if (t == SPIKE_CHANGE_ORDER_PAID) {
        memset(o.payment_id, 'Z', SPIKE_PAYMENT_ID_MAX);
        o.payment_id[SPIKE_PAYMENT_ID_MAX] = '\0';
      }
      spike_event e = event_in();
      if (a == 2) {
        memset(e.name, 'N', SPIKE_NAME_MAX);
        e.name[SPIKE_NAME_MAX] = '\0';
      }
      int closed = t == SPIKE_CHANGE_EVENT_CLOSED;
      uint8_t buf[CODEC_CHANGE_MAX];
      int is_event = t >= SPIKE_CHANGE_EVENT_CREATED;
      size_t n = codec_encode_change((spike_change_type)t, ats[a], is_event ? NULL : &o,
                                     is_event ? &e : NULL, closed, buf, sizeof(buf));
      CHECK(n > 0 && n <= CODEC_CHANGE_MAX);
      spike_change c;
      c.seq = 12345;
      CHECK_EQ(codec_decode_change(flush_end(&g, buf, n), n, &z, &c), 0);
      CHECK_EQ(c.type, t);
      CHECK_EQ(c.at, ats[a]);
      CHECK_EQ(c.seq, 0); /* not stored: the caller sets it from the key */
      if (is_event) {
        check_event_eq(&e, &c.u.event);
        /* An event change's state is as of the change. */
        CHECK_EQ(c.u.event.state, codec_event_state(closed, ats[a], e.start_at, e.end_at, e.available));
      } else {
        check_order_eq(&o, &c.u.order);
      }
      CHECK_EQ(codec_decode_change(flush_start(&g, buf, n), n, &z, &c), 0);
      CHECK_EQ(c.type, t);
    }
  }
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

static void order_change_same_bytes(void) {
  /* codec_encode_order_change writes the bytes codec_encode_change writes
   * (an order without prev, rseq or key), its tail from *order_at is the
   * order record codec_encode_order_rec writes (with them), both decode,
   * and a short buffer (ending at the guard page) reports 0. */
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  uint64_t rs = test_seed();
  for (int i = 0; i < 400; i++) {
    int t = SPIKE_CHANGE_ORDER_RESERVED + i % 4;
    order_rec r;
    memset(&r, 0, sizeof(r));
    r.o = order_in(t == SPIKE_CHANGE_ORDER_PAID        ? SPIKE_ORDER_PAID
                   : t == SPIKE_CHANGE_ORDER_CANCELLED ? SPIKE_ORDER_CANCELLED
                   : t == SPIKE_CHANGE_ORDER_EXPIRED   ? SPIKE_ORDER_EXPIRED
                                                       : SPIKE_ORDER_RESERVED);
    int64_t at = i % 5 == 0 ? -T0 : T0 + i;
    uint8_t want[CODEC_CHANGE_MAX], got[CODEC_CHANGE_MAX], rec[CODEC_ORDER_MAX];
    size_t at_order = 0;
    if (i % 2 == 0) { /* no prev, rseq or key: the same bytes as encode_change */
      size_t wn = codec_encode_change((spike_change_type)t, at, &r.o, NULL, 0, want, sizeof(want));
      CHECK(wn > 0);
      CHECK_EQ(codec_encode_order_change(&r, (spike_change_type)t, at, got, sizeof(got), &at_order),
               wn);
      CHECK(memcmp(got, want, wn) == 0);
    }
    r.prev = test_rand(&rs) >> (i % 64);
    r.rseq = test_rand(&rs) >> (i % 60);
    r.keyed = i % 3 != 0;
    if (r.keyed) {
      r.key1 = test_rand(&rs);
      r.key2 = test_rand(&rs);
    }
    size_t gn =
        codec_encode_order_change(&r, (spike_change_type)t, at, got, sizeof(got), &at_order);
    size_t rn = codec_encode_order_rec(&r, rec, sizeof(rec));
    CHECK(gn > 0 && rn > 0 && at_order + rn == gn);
    CHECK(memcmp(got + at_order, rec, rn) == 0);
    spike_change c;
    CHECK_EQ(codec_decode_change(flush_end(&g, got, gn), gn, &z, &c), 0);
    CHECK_EQ(c.type, t);
    CHECK_EQ(c.at, at);
    check_order_eq(&r.o, &c.u.order);
    order_rec back;
    CHECK_EQ(codec_decode_order_rec(flush_end(&g, got + at_order, rn), rn, &z, &back), 0);
    CHECK(back.prev == r.prev && back.rseq == r.rseq && back.keyed == r.keyed);
    CHECK(back.key1 == r.key1 && back.key2 == r.key2);
    for (size_t cap = 0; cap < gn; cap++)
      CHECK_EQ(codec_encode_order_change(&r, (spike_change_type)t, at, g.page + g.size - cap, cap,
                                         &at_order),
               0);
    CHECK_EQ(codec_encode_order_change(&r, (spike_change_type)t, at, g.page + g.size - gn, gn,
                                       &at_order),
             gn);
  }
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

/* ---- encode bounds --------------------------------------------------------- */

static void encode_too_small(void) {
  guard g;
  guard_open(&g);
  spike_order o = order_in(SPIKE_ORDER_PAID);
  memset(o.payment_id, 'p', SPIKE_PAYMENT_ID_MAX);
  o.payment_id[SPIKE_PAYMENT_ID_MAX] = '\0';
  spike_event e = event_in();
  memset(e.name, 'n', SPIKE_NAME_MAX);
  e.name[SPIKE_NAME_MAX] = '\0';
  uint8_t full[CODEC_CHANGE_MAX];
  size_t on = codec_encode_order(&o, full, sizeof(full));
  size_t en = codec_encode_event(&e, 1, full, sizeof(full));
  size_t cn = codec_encode_change(SPIKE_CHANGE_EVENT_CREATED, T0, NULL, &e, 0, full, sizeof(full));
  size_t con = codec_encode_change(SPIKE_CHANGE_ORDER_PAID, T0, &o, NULL, 0, full, sizeof(full));
  CHECK(on > 0 && en > 0 && cn > 0 && con > 0);
  /* The largest records fit their bounds. */
  CHECK(on <= CODEC_ORDER_MAX);
  CHECK(en <= CODEC_EVENT_MAX);
  CHECK(cn <= CODEC_CHANGE_MAX && con <= CODEC_CHANGE_MAX);
  /* Every capacity below the size answers 0 and writes nothing past it (the
   * buffer ends at the guard page); exactly the size succeeds. */
  size_t sizes[4] = {on, en, cn, con};
  for (int which = 0; which < 4; which++) {
    for (size_t cap = 0; cap <= sizes[which]; cap++) {
      uint8_t *buf = g.page + g.size - cap;
      size_t got = 0;
      switch (which) {
      case 0: got = codec_encode_order(&o, buf, cap); break;
      case 1: got = codec_encode_event(&e, 1, buf, cap); break;
      case 2:
        got = codec_encode_change(SPIKE_CHANGE_EVENT_CREATED, T0, NULL, &e, 0, buf, cap);
        break;
      default: got = codec_encode_change(SPIKE_CHANGE_ORDER_PAID, T0, &o, NULL, 0, buf, cap); break;
      }
      CHECK_EQ(got, cap == sizes[which] ? sizes[which] : 0);
    }
  }
  /* The bytes written at the exact size are the same record. */
  uint8_t a[CODEC_ORDER_MAX];
  uint8_t *b = g.page + g.size - on;
  CHECK_EQ(codec_encode_order(&o, a, sizeof(a)), on);
  CHECK_EQ(codec_encode_order(&o, b, on), on);
  CHECK(memcmp(a, b, on) == 0);
  guard_close(&g);
}

/* ---- decode: truncation and trailing bytes ---------------------------------- */

typedef int (*decode_fn)(const uint8_t *buf, size_t len, msgpack_zone *z);

static int dec_order(const uint8_t *buf, size_t len, msgpack_zone *z) {
  spike_order o;
  return codec_decode_order(buf, len, z, &o);
}
static int dec_event(const uint8_t *buf, size_t len, msgpack_zone *z) {
  spike_event e;
  int c;
  return codec_decode_event(buf, len, z, T0, &e, &c);
}
static int dec_change(const uint8_t *buf, size_t len, msgpack_zone *z) {
  spike_change c;
  return codec_decode_change(buf, len, z, &c);
}

/* Every strict prefix fails, flush against the guard page at either end;
 * the whole record succeeds; one more byte of any kind fails. */
static void check_prefixes_and_tail(guard *g, msgpack_zone *z, decode_fn dec, const uint8_t *rec,
                                    size_t n) {
  CHECK_EQ(dec(flush_end(g, rec, n), n, z), 0);
  for (size_t len = 0; len < n; len++) {
    CHECK_EQ(dec(flush_end(g, rec, len), len, z), -1);
    CHECK_EQ(dec(flush_start(g, rec, len), len, z), -1);
  }
  uint8_t more[CODEC_CHANGE_MAX * 2 + 1];
  CHECK(n * 2 + 1 <= sizeof(more));
  memcpy(more, rec, n);
  static const uint8_t tails[] = {0x00, 0xc0, 0x7f, 0xff, 0x90, 0xc1};
  for (size_t i = 0; i < sizeof(tails); i++) {
    more[n] = tails[i];
    CHECK_EQ(dec(flush_end(g, more, n + 1), n + 1, z), -1);
  }
  /* Two records back to back are not one record. */
  memcpy(more + n, rec, n);
  CHECK_EQ(dec(flush_end(g, more, 2 * n), 2 * n, z), -1);
}

static void decode_truncated_and_trailing(void) {
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  uint8_t buf[CODEC_CHANGE_MAX];
  size_t n;
  for (int st = SPIKE_ORDER_RESERVED; st <= SPIKE_ORDER_EXPIRED; st++) {
    spike_order o = order_in((spike_order_state)st);
    if (st == SPIKE_ORDER_PAID) {
      memset(o.payment_id, 'q', SPIKE_PAYMENT_ID_MAX);
      o.payment_id[SPIKE_PAYMENT_ID_MAX] = '\0';
    }
    o.amount = INT64_MAX;
    n = codec_encode_order(&o, buf, sizeof(buf));
    check_prefixes_and_tail(&g, &z, dec_order, buf, n);
    n = codec_encode_change((spike_change_type)st, -T0, &o, NULL, 0, buf, sizeof(buf));
    check_prefixes_and_tail(&g, &z, dec_change, buf, n);
  }
  spike_event e = event_in();
  n = codec_encode_event(&e, 0, buf, sizeof(buf));
  check_prefixes_and_tail(&g, &z, dec_event, buf, n);
  memset(e.name, 'n', SPIKE_NAME_MAX);
  e.name[SPIKE_NAME_MAX] = '\0';
  n = codec_encode_event(&e, 1, buf, sizeof(buf));
  check_prefixes_and_tail(&g, &z, dec_event, buf, n);
  for (int t = SPIKE_CHANGE_EVENT_CREATED; t <= SPIKE_CHANGE_EVENT_CLOSED; t++) {
    n = codec_encode_change((spike_change_type)t, T0, NULL, &e, 1, buf, sizeof(buf));
    check_prefixes_and_tail(&g, &z, dec_change, buf, n);
  }
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

/* ---- hand-built records ------------------------------------------------------ */

typedef enum vkind { V_U, V_I, V_S, V_NIL, V_TRUE, V_F, V_ARR, V_MAP, V_BIN, V_RAW } vkind;

typedef struct val {
  vkind k;
  uint64_t u;
  int64_t i;
  const char *s; /* V_S, V_BIN: bytes; V_RAW: already-packed bytes */
  size_t n;      /* their length */
} val;

static val vu(uint64_t u) { return (val){V_U, u, 0, NULL, 0}; }
static val vi(int64_t i) { return (val){V_I, 0, i, NULL, 0}; }
static val vs(const char *s) { return (val){V_S, 0, 0, s, strlen(s)}; }
static val vk(vkind k) { return (val){k, 0, 0, "ab", 2}; }

static void pack_val(msgpack_packer *pk, msgpack_sbuffer *sb, const val *v) {
  switch (v->k) {
  case V_U: msgpack_pack_uint64(pk, v->u); break;
  case V_I: msgpack_pack_int64(pk, v->i); break;
  case V_S:
    msgpack_pack_str(pk, v->n);
    msgpack_pack_str_body(pk, v->s, v->n);
    break;
  case V_NIL: msgpack_pack_nil(pk); break;
  case V_TRUE: msgpack_pack_true(pk); break;
  case V_F: msgpack_pack_double(pk, 1.0); break;
  case V_ARR: msgpack_pack_array(pk, 0); break;
  case V_MAP: msgpack_pack_map(pk, 0); break;
  case V_BIN:
    msgpack_pack_bin(pk, v->n);
    msgpack_pack_bin_body(pk, v->s, v->n);
    break;
  case V_RAW: msgpack_sbuffer_write(sb, v->s, v->n); break;
  }
}

/* An array of n values into sb (cleared first). */
static void pack_array(msgpack_sbuffer *sb, const val *v, size_t n) {
  msgpack_sbuffer_clear(sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
  msgpack_pack_array(&pk, n);
  for (size_t i = 0; i < n; i++)
    pack_val(&pk, sb, &v[i]);
}

static void order_vals(const spike_order *o, val *v) {
  v[0] = vu(1);
  v[1] = vu(o->id);
  v[2] = vu(o->event_id);
  v[3] = vu(o->user_id);
  v[4] = vu(o->qty);
  v[5] = vi(o->amount);
  v[6] = vu((uint64_t)o->state);
  v[7] = vi(o->created_at);
  v[8] = vi(o->expires_at);
  v[9] = vi(o->paid_at);
  v[10] = vi(o->cancelled_at);
  v[11] = vs(o->payment_id);
}

/* What codec_encode_order appends since schema 2: no prev, rseq 0, no key. */
static void order_tail(val *v) {
  v[12] = vu(0);
  v[13] = vu(0);
  v[14] = vk(V_NIL);
}

static void event_vals(const spike_event *e, int closed, val *v) {
  v[0] = vu(1);
  v[1] = vu(e->id);
  v[2] = vs(e->name);
  v[3] = vi(e->price);
  v[4] = vu(e->stock_total);
  v[5] = vu(e->reserved);
  v[6] = vu(e->sold);
  v[7] = vi(e->start_at);
  v[8] = vi(e->end_at);
  v[9] = vu(e->per_user_limit);
  v[10] = vu(e->pay_timeout_s);
  v[11] = vu((uint64_t)closed);
}

/* Decode sb's bytes from a guard-flush copy. */
static int dec_sb(guard *g, msgpack_zone *z, decode_fn dec, const msgpack_sbuffer *sb) {
  return dec(flush_end(g, sb->data, sb->size), sb->size, z);
}

/* A corrupt record that claims a huge container is refused before
 * msgpack-c allocates what it claims (under ASan such an allocation aborts
 * the test), and so is one whose lengths run past its bytes. */
static void huge_claims_refused(void) {
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  static const uint8_t arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xf0};
  static const uint8_t arr16[] = {0xdc, 0xff, 0xff, 0x01};
  static const uint8_t map32[] = {0xdf, 0x7f, 0xff, 0xff, 0xff};
  static const uint8_t str32[] = {0x9f, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
  static const uint8_t nested[] = {0x94, 0x01, 0x01, 0x00, 0xdd, 0x10, 0x00, 0x00, 0x00};
  static const uint8_t deep[] = {0x91, 0x91, 0x91, 0x91, 0x91, 0x91, 0x01};
  const struct {
    const uint8_t *p;
    size_t n;
  } bad[] = {{arr32, sizeof(arr32)}, {arr16, sizeof(arr16)}, {map32, sizeof(map32)},
             {str32, sizeof(str32)}, {nested, sizeof(nested)}, {deep, sizeof(deep)}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    spike_order o;
    spike_event e;
    spike_change c;
    CHECK_EQ(codec_decode_order(bad[i].p, bad[i].n, &z, &o), -1);
    CHECK_EQ(codec_decode_event(bad[i].p, bad[i].n, &z, 0, &e, NULL), -1);
    CHECK_EQ(codec_decode_change(bad[i].p, bad[i].n, &z, &c), -1);
  }
  msgpack_zone_destroy(&z);
}

/* prev, rseq and the key survive a round trip, keyed or not. */
static void order_rec_round_trip(void) {
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  uint64_t rs = test_seed();
  for (int i = 0; i < 1000; i++) {
    order_rec r;
    memset(&r, 0, sizeof(r));
    r.o = order_in((spike_order_state)(SPIKE_ORDER_RESERVED + i % 4));
    r.prev = test_rand(&rs) >> (i % 64);
    r.rseq = test_rand(&rs) >> (i % 60);
    r.keyed = i % 3 != 0;
    if (r.keyed) {
      r.key1 = test_rand(&rs);
      r.key2 = i % 7 == 0 ? 0 : test_rand(&rs);
    }
    uint8_t buf[CODEC_ORDER_MAX];
    size_t n = codec_encode_order_rec(&r, buf, sizeof(buf));
    CHECK(n > 0 && n <= CODEC_ORDER_MAX);
    order_rec back;
    CHECK_EQ(codec_decode_order_rec(buf, n, &z, &back), 0);
    check_order_eq(&r.o, &back.o);
    CHECK(back.prev == r.prev && back.rseq == r.rseq && back.keyed == r.keyed);
    CHECK(back.key1 == r.key1 && back.key2 == r.key2);
  }
  msgpack_zone_destroy(&z);
}

static void hand_built_matches_codec(void) {
  /* The hand builder writes what the codec writes, so the cases below
   * differ from a valid record only where they say. */
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  val v[15];
  uint8_t buf[CODEC_EVENT_MAX];
  for (int st = SPIKE_ORDER_RESERVED; st <= SPIKE_ORDER_EXPIRED; st++) {
    spike_order o = order_in((spike_order_state)st);
    order_vals(&o, v);
    order_tail(v);
    pack_array(&sb, v, 15);
    size_t n = codec_encode_order(&o, buf, sizeof(buf));
    CHECK_EQ(sb.size, n);
    CHECK(memcmp(sb.data, buf, n) == 0);
  }
  spike_event e = event_in();
  event_vals(&e, 1, v);
  pack_array(&sb, v, 12);
  size_t n = codec_encode_event(&e, 1, buf, sizeof(buf));
  CHECK_EQ(sb.size, n);
  CHECK(memcmp(sb.data, buf, n) == 0);
  msgpack_sbuffer_destroy(&sb);
}

static void decode_wrong_version_and_shape(void) {
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  val v[17];
  spike_order o = order_in(SPIKE_ORDER_PAID);
  spike_event e = event_in();

  /* Version: 0, 2, 255, a huge one, a negative one, a string. */
  static const uint64_t bad_versions[] = {0, 2, 255, UINT64_MAX};
  for (size_t i = 0; i < sizeof(bad_versions) / sizeof(bad_versions[0]); i++) {
    order_vals(&o, v);
    v[0] = vu(bad_versions[i]);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
    event_vals(&e, 0, v);
    v[0] = vu(bad_versions[i]);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
  }
  order_vals(&o, v);
  v[0] = vi(-1);
  pack_array(&sb, v, 12);
  CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  v[0] = vs("1");
  pack_array(&sb, v, 12);
  CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  /* The codec's own bytes with the version patched. */
  uint8_t buf[CODEC_EVENT_MAX];
  size_t n = codec_encode_order(&o, buf, sizeof(buf));
  CHECK_EQ(buf[0], 0x9f); /* fixarray of 15 */
  CHECK_EQ(buf[1], CODEC_VERSION);
  buf[1] = 2;
  CHECK_EQ(dec_order(flush_end(&g, buf, n), n, &z), -1);
  buf[1] = CODEC_VERSION;
  CHECK_EQ(dec_order(flush_end(&g, buf, n), n, &z), 0);

  /* Too few elements; more elements are a later version's appended fields. */
  for (size_t k = 0; k < 12; k++) {
    order_vals(&o, v);
    pack_array(&sb, v, k);
    CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
    event_vals(&e, 0, v);
    pack_array(&sb, v, k);
    CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
  }
  order_vals(&o, v);
  order_tail(v);
  v[15] = vs("appended later");
  v[16] = vu(5);
  pack_array(&sb, v, 17);
  spike_order ob;
  CHECK_EQ(codec_decode_order(sb.data, sb.size, &z, &ob), 0);
  check_order_eq(&o, &ob);
  /* A record from before schema 2 (12 elements) decodes with zeros. */
  order_vals(&o, v);
  pack_array(&sb, v, 12);
  order_rec rb;
  CHECK_EQ(codec_decode_order_rec(sb.data, sb.size, &z, &rb), 0);
  check_order_eq(&o, &rb.o);
  CHECK(rb.prev == 0 && rb.rseq == 0 && !rb.keyed);
  /* prev and rseq are unsigned; the key is nil or 16 bytes of bin. */
  order_vals(&o, v);
  order_tail(v);
  v[12] = vi(-1);
  pack_array(&sb, v, 15);
  CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  order_tail(v);
  v[14] = vk(V_BIN); /* 2 bytes */
  pack_array(&sb, v, 15);
  CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  v[14] = vs("0123456789abcdef");
  pack_array(&sb, v, 15);
  CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  event_vals(&e, 1, v);
  v[12] = vk(V_NIL);
  pack_array(&sb, v, 13);
  spike_event eb;
  int closed = 0;
  CHECK_EQ(codec_decode_event(sb.data, sb.size, &z, T0, &eb, &closed), 0);
  check_event_eq(&e, &eb);
  CHECK_EQ(closed, 1);

  /* Not an array at all. */
  static const vkind not_arrays[] = {V_NIL, V_TRUE, V_F, V_MAP, V_BIN};
  for (size_t i = 0; i < sizeof(not_arrays) / sizeof(not_arrays[0]); i++) {
    msgpack_sbuffer_clear(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    val x = vk(not_arrays[i]);
    pack_val(&pk, &sb, &x);
    CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
    CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
    CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), -1);
  }
  /* Bytes that are not msgpack: a reserved byte, an empty input. */
  static const uint8_t junk[] = {0xc1};
  CHECK_EQ(dec_order(flush_end(&g, junk, 1), 1, &z), -1);
  CHECK_EQ(dec_order(flush_end(&g, junk, 0), 0, &z), -1);
  CHECK_EQ(dec_change(flush_end(&g, junk, 0), 0, &z), -1);

  msgpack_sbuffer_destroy(&sb);
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

static void decode_wrong_types(void) {
  /* Each field in turn replaced by each wrong kind of value. */
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  val v[12];
  static const vkind for_int[] = {V_S, V_NIL, V_TRUE, V_F, V_ARR, V_MAP, V_BIN};
  static const vkind for_str[] = {V_U, V_NIL, V_TRUE, V_F, V_ARR, V_MAP, V_BIN};
  spike_order o = order_in(SPIKE_ORDER_PAID);
  spike_event e = event_in();
  int cases = 0;
  for (int f = 0; f < 12; f++) {
    for (int k = 0; k < 7; k++) {
      order_vals(&o, v);
      v[f] = f == 11 ? vk(for_str[k]) : vk(for_int[k]);
      if (v[f].k == V_U) v[f].u = 1;
      pack_array(&sb, v, 12);
      CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
      event_vals(&e, 0, v);
      v[f] = f == 2 ? vk(for_str[k]) : vk(for_int[k]);
      if (v[f].k == V_U) v[f].u = 1;
      pack_array(&sb, v, 12);
      CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
      cases += 2;
    }
  }
  CHECK_EQ(cases, 168);
  /* Unsigned fields refuse negatives; 32-bit fields refuse 2^32; signed
   * fields refuse values past INT64_MAX. */
  static const int unsigned_order[] = {1, 2, 3, 4, 6};
  for (size_t i = 0; i < sizeof(unsigned_order) / sizeof(unsigned_order[0]); i++) {
    order_vals(&o, v);
    v[unsigned_order[i]] = vi(-1);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  }
  order_vals(&o, v);
  v[4] = vu(1ull << 32); /* qty */
  pack_array(&sb, v, 12);
  CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  static const int signed_order[] = {5, 7, 8, 9, 10};
  for (size_t i = 0; i < sizeof(signed_order) / sizeof(signed_order[0]); i++) {
    order_vals(&o, v);
    v[signed_order[i]] = vu((uint64_t)INT64_MAX + 1);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  }
  static const int unsigned_event[] = {1, 4, 5, 6, 9, 10, 11};
  for (size_t i = 0; i < sizeof(unsigned_event) / sizeof(unsigned_event[0]); i++) {
    event_vals(&e, 0, v);
    v[unsigned_event[i]] = vi(-1);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
  }
  static const int u32_event[] = {9, 10};
  for (size_t i = 0; i < 2; i++) {
    event_vals(&e, 0, v);
    v[u32_event[i]] = vu((1ull << 32) + 1); /* truncates to 1: valid if not refused */
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
  }
  static const int signed_event[] = {3, 7, 8};
  for (size_t i = 0; i < 3; i++) {
    event_vals(&e, 0, v);
    v[signed_event[i]] = vu((uint64_t)INT64_MAX + 1);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
  }
  /* Order states outside reserved..expired. */
  static const uint64_t bad_states[] = {0, 5, 255, UINT64_MAX};
  for (size_t i = 0; i < 4; i++) {
    order_vals(&o, v);
    v[6] = vu(bad_states[i]);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  }
  /* A payment id of 65 bytes, a name of 128: one past their buffers. */
  char longs[SPIKE_NAME_MAX + 2];
  memset(longs, 'L', sizeof(longs));
  longs[SPIKE_PAYMENT_ID_MAX + 1] = '\0';
  order_vals(&o, v);
  v[11] = vs(longs);
  pack_array(&sb, v, 12);
  CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
  longs[SPIKE_PAYMENT_ID_MAX + 1] = 'L';
  longs[SPIKE_NAME_MAX + 1] = '\0';
  event_vals(&e, 0, v);
  v[2] = vs(longs);
  pack_array(&sb, v, 12);
  CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
  msgpack_sbuffer_destroy(&sb);
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

static void decode_change_shape(void) {
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  uint8_t ord[CODEC_ORDER_MAX], evt[CODEC_EVENT_MAX];
  spike_order o = order_in(SPIKE_ORDER_RESERVED);
  spike_event e = event_in();
  size_t on = codec_encode_order(&o, ord, sizeof(ord));
  size_t en = codec_encode_event(&e, 0, evt, sizeof(evt));
  val order_raw = {V_RAW, 0, 0, (const char *)ord, on};
  val event_raw = {V_RAW, 0, 0, (const char *)evt, en};
  val v[5];
  /* The builder's valid change decodes. */
  v[0] = vu(1);
  v[1] = vu(SPIKE_CHANGE_ORDER_RESERVED);
  v[2] = vi(T0);
  v[3] = order_raw;
  pack_array(&sb, v, 4);
  spike_change c;
  CHECK_EQ(codec_decode_change(sb.data, sb.size, &z, &c), 0);
  check_order_eq(&o, &c.u.order);
  /* Unknown types. */
  static const uint64_t bad_types[] = {0, 8, 255, UINT64_MAX};
  for (size_t i = 0; i < 4; i++) {
    v[1] = vu(bad_types[i]);
    pack_array(&sb, v, 4);
    CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), -1);
  }
  /* A payload of the other kind. */
  for (int t = SPIKE_CHANGE_ORDER_RESERVED; t <= SPIKE_CHANGE_EVENT_CLOSED; t++) {
    v[1] = vu((uint64_t)t);
    v[3] = t >= SPIKE_CHANGE_EVENT_CREATED ? order_raw : event_raw;
    pack_array(&sb, v, 4);
    CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), -1);
    v[3] = t >= SPIKE_CHANGE_EVENT_CREATED ? event_raw : order_raw;
    pack_array(&sb, v, 4);
    CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), 0);
  }
  /* Wrong version, wrong types of type / at / payload, too short. */
  v[1] = vu(SPIKE_CHANGE_ORDER_RESERVED);
  v[3] = order_raw;
  v[0] = vu(2);
  pack_array(&sb, v, 4);
  CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), -1);
  v[0] = vu(1);
  static const vkind wrong[] = {V_S, V_NIL, V_TRUE, V_F, V_ARR, V_MAP, V_BIN};
  for (int f = 1; f < 4; f++) {
    for (size_t k = 0; k < sizeof(wrong) / sizeof(wrong[0]); k++) {
      val keep = v[f];
      v[f] = vk(wrong[k]);
      pack_array(&sb, v, 4);
      CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), -1);
      v[f] = keep;
    }
  }
  v[1] = vi(-1);
  pack_array(&sb, v, 4);
  CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), -1);
  v[1] = vu(SPIKE_CHANGE_ORDER_RESERVED);
  for (size_t k = 0; k < 4; k++) {
    pack_array(&sb, v, k);
    CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), -1);
  }
  /* An invalid record inside a well-formed change. */
  val bad_order[12];
  order_vals(&o, bad_order);
  bad_order[4] = vu(0); /* qty 0 */
  msgpack_sbuffer inner;
  msgpack_sbuffer_init(&inner);
  pack_array(&inner, bad_order, 12);
  v[3] = (val){V_RAW, 0, 0, inner.data, inner.size};
  pack_array(&sb, v, 4);
  CHECK_EQ(dec_sb(&g, &z, dec_change, &sb), -1);
  msgpack_sbuffer_destroy(&inner);
  msgpack_sbuffer_destroy(&sb);
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

/* ---- validity ---------------------------------------------------------------- */

static void invalid_orders(void) {
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  val v[12];
  /* Each mutation of a valid order: codec_order_valid says no, and the same
   * record on disk is refused by decode. */
  for (int m = 0; m < 16; m++) {
    spike_order o = order_in(m < 8 ? SPIKE_ORDER_PAID : SPIKE_ORDER_RESERVED);
    switch (m) {
    case 0: o.id = 0; break;
    case 1: o.event_id = 0; break;
    case 2: o.qty = 0; break;
    case 3: o.amount = -1; break;
    case 4: o.paid_at = 0; break;                   /* paid without a time */
    case 5: o.payment_id[0] = '\0'; break;          /* paid without an id */
    case 6: o.cancelled_at = T0; break;             /* paid and cancelled */
    case 7: o.state = SPIKE_ORDER_CANCELLED; break; /* cancelled with payment */
    case 8: o.paid_at = T0; break;                  /* reserved with a paid time */
    case 9: strcpy(o.payment_id, "x"); break;       /* reserved with a payment id */
    case 10: o.cancelled_at = T0; break;            /* reserved with a cancel time */
    case 11: o.expires_at = o.created_at - 1; break;
    case 12:
      o.created_at = -1;
      o.expires_at = 0;
      break;
    case 13: o.state = SPIKE_ORDER_CANCELLED; break; /* without cancelled_at */
    case 14: o.state = SPIKE_ORDER_EXPIRED; break;   /* without cancelled_at */
    default:
      o.state = SPIKE_ORDER_EXPIRED;
      o.cancelled_at = T0;
      o.paid_at = 1;
      break;
    }
    CHECK(!codec_order_valid(&o));
    order_vals(&o, v);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_order, &sb), -1);
    /* And inside a change. */
    uint8_t buf[CODEC_CHANGE_MAX];
    val cv[4] = {vu(1), vu(SPIKE_CHANGE_ORDER_RESERVED), vi(T0), {V_RAW, 0, 0, sb.data, sb.size}};
    msgpack_sbuffer cs;
    msgpack_sbuffer_init(&cs);
    pack_array(&cs, cv, 4);
    CHECK(cs.size <= sizeof(buf));
    CHECK_EQ(dec_sb(&g, &z, dec_change, &cs), -1);
    msgpack_sbuffer_destroy(&cs);
  }
  /* A payment id buffer with no terminator is invalid (never encoded). */
  spike_order o = order_in(SPIKE_ORDER_PAID);
  memset(o.payment_id, 'x', sizeof(o.payment_id));
  CHECK(!codec_order_valid(&o));
  /* Valid ones, for contrast: every state as built, and user 0. */
  for (int st = SPIKE_ORDER_RESERVED; st <= SPIKE_ORDER_EXPIRED; st++) {
    o = order_in((spike_order_state)st);
    CHECK(codec_order_valid(&o));
    o.user_id = 0;
    CHECK(codec_order_valid(&o));
  }
  msgpack_sbuffer_destroy(&sb);
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

static void invalid_events(void) {
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  val v[12];
  for (int m = 0; m < 12; m++) {
    spike_event e = event_in();
    switch (m) {
    case 0: e.id = 0; break;
    case 1: /* an empty name, after one-byte values: a NULL string pointer */
      e.name[0] = '\0';
      e.id = 1;
      break;
    case 2: e.price = -1; break;
    case 3:
      e.stock_total = 0;
      e.reserved = e.sold = e.available = 0;
      break;
    case 4:
      e.stock_total = (uint64_t)UINT32_MAX + 1;
      e.available = e.stock_total - 30;
      break;
    case 5:
      e.reserved = 50;
      e.sold = 51;
      break; /* oversold */
    case 6: e.end_at = e.start_at; break;
    case 7: e.end_at = e.start_at - 1; break;
    case 8: e.per_user_limit = 0; break;
    case 9: e.pay_timeout_s = 0; break;
    case 10: e.pay_timeout_s = SPIKE_PAY_TIMEOUT_MAX_S + 1; break;
    default:
      e.start_at = INT64_MAX;
      e.end_at = INT64_MIN;
      break;
    }
    CHECK(!codec_event_valid(&e));
    event_vals(&e, 0, v);
    pack_array(&sb, v, 12);
    CHECK_EQ(dec_sb(&g, &z, dec_event, &sb), -1);
  }
  /* available is derived on decode; in a struct it must balance. */
  spike_event e = event_in();
  e.available = 69;
  CHECK(!codec_event_valid(&e));
  e = event_in();
  memset(e.name, 'x', sizeof(e.name)); /* no terminator */
  CHECK(!codec_event_valid(&e));
  e = event_in();
  CHECK(codec_event_valid(&e));
  msgpack_sbuffer_destroy(&sb);
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

static void zone_reuse(void) {
  /* One zone across many decodes of every kind: cleared on entry, so it
   * neither grows without bound nor leaks (valgrind runs this file). */
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  uint8_t ob[CODEC_ORDER_MAX], eb[CODEC_EVENT_MAX], cb[CODEC_CHANGE_MAX];
  spike_order o = order_in(SPIKE_ORDER_PAID);
  spike_event e = event_in();
  size_t on = codec_encode_order(&o, ob, sizeof(ob));
  size_t en = codec_encode_event(&e, 0, eb, sizeof(eb));
  size_t cn = codec_encode_change(SPIKE_CHANGE_EVENT_RESTOCKED, T0, NULL, &e, 0, cb, sizeof(cb));
  for (int i = 0; i < 20000; i++) {
    spike_order o2;
    spike_event e2;
    spike_change c2;
    CHECK_EQ(codec_decode_order(ob, on, &z, &o2), 0);
    CHECK_EQ(codec_decode_event(eb, en, &z, T0, &e2, NULL), 0);
    CHECK_EQ(codec_decode_change(cb, cn, &z, &c2), 0);
    CHECK_EQ(codec_decode_order(ob, on - 1, &z, &o2), -1);
    if (i == 0) {
      check_order_eq(&o, &o2);
      check_event_eq(&e, &e2);
      CHECK_EQ(c2.type, SPIKE_CHANGE_EVENT_RESTOCKED);
    }
  }
  msgpack_zone_destroy(&z);
}

static void random_bytes_never_crash(void) {
  /* Random mutations of valid records, flush against the guard page: decode
   * may accept or refuse, but what it accepts is valid. */
  uint64_t seed = test_seed(), rs = seed;
  guard g;
  guard_open(&g);
  msgpack_zone z;
  CHECK(msgpack_zone_init(&z, 1024));
  uint8_t recs[3][CODEC_CHANGE_MAX];
  size_t lens[3];
  spike_order o = order_in(SPIKE_ORDER_PAID);
  spike_event e = event_in();
  lens[0] = codec_encode_order(&o, recs[0], sizeof(recs[0]));
  lens[1] = codec_encode_event(&e, 1, recs[1], sizeof(recs[1]));
  lens[2] = codec_encode_change(SPIKE_CHANGE_ORDER_PAID, T0, &o, NULL, 0, recs[2], sizeof(recs[2]));
  int accepted = 0;
  for (int i = 0; i < 60000; i++) {
    int which = (int)(test_rand(&rs) % 3);
    uint8_t m[CODEC_CHANGE_MAX];
    size_t n = lens[which];
    memcpy(m, recs[which], n);
    int flips = 1 + (int)(test_rand(&rs) % 3);
    for (int f = 0; f < flips; f++)
      m[test_rand(&rs) % n] = (uint8_t)test_rand(&rs);
    if (test_rand(&rs) % 4 == 0) n = test_rand(&rs) % (n + 1);
    /* msgpack-c allocates an array's or map's elements from its header
     * before reading them, so a 32-bit count (0xdd, 0xdf) asks for up to
     * ~100 GiB, which the sanitizers' allocators abort on. Not fed here. */
    if (memchr(m, 0xdd, n) != NULL || memchr(m, 0xdf, n) != NULL) continue;
    const uint8_t *p = flush_end(&g, m, n);
    if (which == 0) {
      spike_order d;
      if (codec_decode_order(p, n, &z, &d) == 0) {
        CHECK(codec_order_valid(&d));
        accepted++;
      }
    } else if (which == 1) {
      spike_event d;
      if (codec_decode_event(p, n, &z, T0, &d, NULL) == 0) {
        CHECK(codec_event_valid(&d));
        CHECK_EQ(d.available + d.reserved + d.sold, d.stock_total);
        accepted++;
      }
    } else {
      spike_change d;
      if (codec_decode_change(p, n, &z, &d) == 0) {
        CHECK(d.type >= SPIKE_CHANGE_ORDER_RESERVED && d.type <= SPIKE_CHANGE_EVENT_CLOSED);
        if (d.type >= SPIKE_CHANGE_EVENT_CREATED)
          CHECK(codec_event_valid(&d.u.event));
        else
          CHECK(codec_order_valid(&d.u.order));
        accepted++;
      }
    }
  }
  CHECK(accepted > 0); /* some mutations land on harmless bytes */
  msgpack_zone_destroy(&z);
  guard_close(&g);
}

TEST_LIST({"order_rec_round_trip", order_rec_round_trip, 0},
          {"huge_claims_refused", huge_claims_refused, 0},
          {"order_round_trip", order_round_trip, 0}, {"event_round_trip", event_round_trip, 0},
          {"change_round_trip", change_round_trip, 0},
          {"order_change_same_bytes", order_change_same_bytes, 0},
          {"encode_too_small", encode_too_small, 0},
          {"decode_truncated_and_trailing", decode_truncated_and_trailing, 0},
          {"hand_built_matches_codec", hand_built_matches_codec, 0},
          {"decode_wrong_version_and_shape", decode_wrong_version_and_shape, 0},
          {"decode_wrong_types", decode_wrong_types, 0},
          {"decode_change_shape", decode_change_shape, 0}, {"invalid_orders", invalid_orders, 0},
          {"invalid_events", invalid_events, 0}, {"zone_reuse", zone_reuse, 0},
          {"random_bytes_never_crash", random_bytes_never_crash, 0})

/*
 * json.c -- the response writer. Numbers are formatted backwards into a
 * small stack buffer (no printf on the hot path); strings are escaped per
 * RFC 8259 with the control characters as \u00XX.
 */
#include "json.h"

#include <stdlib.h>
#include <string.h>

#include "log.h" /* log_escape */

void jb_init(jbuf *b, char *storage, size_t cap) {
  b->p = storage;
  b->len = 0;
  b->cap = cap;
  b->heap = 0;
  b->oom = 0;
}

void jb_free(jbuf *b) {
  if (b->heap) free(b->p);
  b->p = NULL;
  b->heap = 0;
  b->len = b->cap = 0;
}

int jb_reserve(jbuf *b, size_t n) {
  if (b->oom) return -1;
  if (b->len + n <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + n) cap *= 2;
  if (cap > JB_MAX_BYTES) {
    b->oom = 1;
    return -1;
  }
  char *p = b->heap ? realloc(b->p, cap) : malloc(cap);
  if (p == NULL) {
    b->oom = 1;
    return -1;
  }
  if (!b->heap && b->len > 0) memcpy(p, b->p, b->len);
  b->p = p;
  b->cap = cap;
  b->heap = 1;
  return 0;
}

void jb_raw(jbuf *b, const char *s, size_t n) {
  if (jb_reserve(b, n) != 0) return;
  memcpy(b->p + b->len, s, n);
  b->len += n;
}

/* The same escaping as the log's (log_escape): quotes, backslashes and
 * controls escaped, UTF-8 as it is, and a byte that starts no well-formed
 * sequence (text an older library stored unchecked) U+FFFD, so the answer
 * stays JSON. */
void jb_str(jbuf *b, const char *s, size_t n) {
  /* at most 6 bytes out for one in; log_escape keeps 7 spare and a NUL */
  size_t cap = n * 6 + 8;
  if (jb_reserve(b, cap + 2) != 0) return;
  char *o = b->p + b->len;
  *o++ = '"';
  o += log_escape(o, cap, s, n);
  *o++ = '"';
  b->len = (size_t)(o - b->p);
}

void jb_cstr(jbuf *b, const char *s) { jb_str(b, s, strlen(s)); }

size_t json_fmt_u64(char out[20], uint64_t v) {
  char tmp[20];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

void jb_u64(jbuf *b, uint64_t v) {
  char d[20];
  jb_raw(b, d, json_fmt_u64(d, v));
}

void jb_i64(jbuf *b, int64_t v) {
  if (v < 0) {
    jb_lit(b, "-");
    jb_u64(b, (uint64_t)0 - (uint64_t)v);
  } else {
    jb_u64(b, (uint64_t)v);
  }
}

void jb_id(jbuf *b, uint64_t v) {
  char d[22];
  d[0] = '"';
  size_t n = json_fmt_u64(d + 1, v);
  d[n + 1] = '"';
  jb_raw(b, d, n + 2);
}

void json_event(jbuf *b, const spike_event *e) {
  jb_lit(b, "{\"id\":");
  jb_id(b, e->id);
  jb_lit(b, ",\"name\":");
  jb_cstr(b, e->name);
  jb_lit(b, ",\"price\":");
  jb_i64(b, e->price);
  jb_lit(b, ",\"stock_total\":");
  jb_u64(b, e->stock_total);
  jb_lit(b, ",\"available\":");
  jb_u64(b, e->available);
  jb_lit(b, ",\"reserved\":");
  jb_u64(b, e->reserved);
  jb_lit(b, ",\"sold\":");
  jb_u64(b, e->sold);
  jb_lit(b, ",\"start_at\":");
  jb_i64(b, e->start_at);
  jb_lit(b, ",\"end_at\":");
  jb_i64(b, e->end_at);
  jb_lit(b, ",\"per_user_limit\":");
  jb_u64(b, e->per_user_limit);
  jb_lit(b, ",\"pay_timeout_s\":");
  jb_u64(b, e->pay_timeout_s);
  jb_lit(b, ",\"state\":");
  jb_cstr(b, spike_event_state_name(e->state));
  jb_lit(b, "}");
}

void json_order(jbuf *b, const spike_order *o) {
  jb_lit(b, "{\"id\":");
  jb_id(b, o->id);
  jb_lit(b, ",\"event_id\":");
  jb_id(b, o->event_id);
  jb_lit(b, ",\"user_id\":");
  jb_id(b, o->user_id);
  jb_lit(b, ",\"qty\":");
  jb_u64(b, o->qty);
  jb_lit(b, ",\"amount\":");
  jb_i64(b, o->amount);
  jb_lit(b, ",\"state\":");
  jb_cstr(b, spike_order_state_name(o->state));
  jb_lit(b, ",\"created_at\":");
  jb_i64(b, o->created_at);
  jb_lit(b, ",\"expires_at\":");
  jb_i64(b, o->expires_at);
  jb_lit(b, ",\"paid_at\":");
  jb_i64(b, o->paid_at);
  jb_lit(b, ",\"cancelled_at\":");
  jb_i64(b, o->cancelled_at);
  jb_lit(b, ",\"payment_id\":");
  jb_cstr(b, o->payment_id);
  jb_lit(b, "}");
}

void json_change(jbuf *b, const spike_change *c) {
  jb_lit(b, "{\"seq\":");
  jb_u64(b, c->seq);
  jb_lit(b, ",\"type\":");
  jb_cstr(b, spike_change_name(c->type));
  jb_lit(b, ",\"at\":");
  jb_i64(b, c->at);
  if (c->type >= SPIKE_CHANGE_EVENT_CREATED) {
    jb_lit(b, ",\"event\":");
    json_event(b, &c->u.event);
  } else {
    jb_lit(b, ",\"order\":");
    json_order(b, &c->u.order);
  }
  jb_lit(b, "}");
}

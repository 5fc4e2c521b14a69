/*
 * json.h -- writing JSON responses into a buffer that starts in caller
 * storage (a request's inline bytes) and moves to the heap only when a
 * response outgrows it (lists, the feed, metrics). Appends never fail
 * visibly: past JB_MAX_BYTES the buffer stops growing and oom is set, and
 * the caller answers 500 instead.
 *
 * 64-bit ids are written as JSON strings (jb_id) so JavaScript clients do
 * not lose precision (CONTRACT §2).
 */
#ifndef SPIKE_JSON_H
#define SPIKE_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "spike.h"

#define JB_MAX_BYTES (16u << 20)

typedef struct jbuf {
  char *p;
  size_t len, cap;
  int heap; /* p was malloc'd here */
  int oom;
} jbuf;

void jb_init(jbuf *b, char *storage, size_t cap);
void jb_free(jbuf *b);
/* Make room for n more bytes; 0, or -1 (oom set). */
int jb_reserve(jbuf *b, size_t n);
void jb_raw(jbuf *b, const char *s, size_t n);
#define jb_lit(b, s) jb_raw((b), (s), sizeof(s) - 1)
void jb_str(jbuf *b, const char *s, size_t n); /* quoted and escaped */
void jb_cstr(jbuf *b, const char *s);
void jb_u64(jbuf *b, uint64_t v);
/* v in decimal into out (not terminated); returns its length, 1..20. */
size_t json_fmt_u64(char out[20], uint64_t v);
void jb_i64(jbuf *b, int64_t v);
void jb_id(jbuf *b, uint64_t v); /* "123" */

void json_event(jbuf *b, const spike_event *e);
void json_order(jbuf *b, const spike_order *o);
/* {"seq":..,"type":"order.paid","at":..,"order":{..}} (or "event") */
void json_change(jbuf *b, const spike_change *c);

#endif /* SPIKE_JSON_H */

/*
 * js.h -- the little JSON spikebench reads and writes: a jsmn token walk
 * over one answer (the envelope's code, data.id, an event's counters, a
 * user's orders) and string escaping for the --json report.
 *
 * Nothing is allocated: the caller owns the text and the token array, and
 * every lookup is a walk over at most that many tokens. A document with
 * more tokens than the caller gave is refused (js_parse returns -1), never
 * read in part.
 */
#ifndef SPIKE_BENCH_JS_H
#define SPIKE_BENCH_JS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* jsmn's types and prototypes; js.c holds its one definition */
#define JSMN_HEADER
#include <jsmn.h>

typedef struct js_doc {
  const char *s;
  size_t n;
  jsmntok_t *t;
  int nt; /* tokens parsed */
} js_doc;

/* Parse s[0..n) with up to cap tokens of toks. 0, or -1 when it is not
 * JSON, is empty, or needs more than cap tokens. */
int js_parse(js_doc *d, const char *s, size_t n, jsmntok_t *toks, int cap);

/* The value token of key in the object at token obj (0 is the root), or -1
 * when obj is not an object or has no such key. */
int js_key(const js_doc *d, int obj, const char *key);

/* The token after the subtree that starts at token i. */
int js_skip(const js_doc *d, int i);

/* Token i as an unsigned integer: a number or a string of 1-20 digits that
 * fits 64 bits. 0, or -1. */
int js_u64(const js_doc *d, int i, uint64_t *out);

/* Token i is the string s. */
int js_is(const js_doc *d, int i, const char *s);

/* Token i (a string or primitive) copied into out, NUL-terminated and cut
 * to cap-1 bytes; 0, or -1 when i is not one. */
int js_str(const js_doc *d, int i, char *out, size_t cap);

/* s as a JSON string literal, quotes included. */
void js_write_str(FILE *f, const char *s);

#endif /* SPIKE_BENCH_JS_H */

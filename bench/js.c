/*
 * js.c -- jsmn lookups for spikebench (see js.h). jsmn gives objects their
 * key count and keys a size of 1 (their value), so one counter walks any
 * subtree; lookups are linear, which is right for envelopes of a dozen
 * keys and bounded for the verify reads by the caller's token array.
 */
/* jsmn itself, compiled once here with external linkage (js.h declares it) */
#include <jsmn.h>

#include "js.h"

#include <string.h>

#include "log.h"

int js_parse(js_doc *d, const char *s, size_t n, jsmntok_t *toks, int cap) {
  d->s = s;
  d->n = n;
  d->t = toks;
  d->nt = 0;
  if (n == 0) return -1;
  jsmn_parser p;
  jsmn_init(&p);
  int r = jsmn_parse(&p, s, n, toks, (unsigned)cap);
  if (r <= 0) return -1;
  d->nt = r;
  return 0;
}

int js_skip(const js_doc *d, int i) {
  int pending = 1;
  while (pending > 0 && i < d->nt) {
    pending += d->t[i].size - 1;
    i++;
  }
  return i;
}

int js_key(const js_doc *d, int obj, const char *key) {
  if (obj < 0 || obj >= d->nt || d->t[obj].type != JSMN_OBJECT) return -1;
  size_t kl = strlen(key);
  int i = obj + 1;
  for (int k = 0; k < d->t[obj].size && i + 1 < d->nt; k++) {
    if (d->t[i].type == JSMN_STRING && (size_t)(d->t[i].end - d->t[i].start) == kl &&
        memcmp(d->s + d->t[i].start, key, kl) == 0)
      return i + 1;
    i = js_skip(d, i);
  }
  return -1;
}

int js_u64(const js_doc *d, int i, uint64_t *out) {
  if (i < 0 || i >= d->nt || (d->t[i].type != JSMN_PRIMITIVE && d->t[i].type != JSMN_STRING))
    return -1;
  int len = d->t[i].end - d->t[i].start;
  if (len < 1 || len > 20) return -1;
  uint64_t v = 0;
  for (int k = 0; k < len; k++) {
    char ch = d->s[d->t[i].start + k];
    if (ch < '0' || ch > '9') return -1;
    uint64_t digit = (uint64_t)(ch - '0');
    if (v > (UINT64_MAX - digit) / 10) return -1;
    v = v * 10 + digit;
  }
  *out = v;
  return 0;
}

int js_is(const js_doc *d, int i, const char *s) {
  size_t n = strlen(s);
  return i >= 0 && i < d->nt && d->t[i].type == JSMN_STRING &&
         (size_t)(d->t[i].end - d->t[i].start) == n && memcmp(d->s + d->t[i].start, s, n) == 0;
}

int js_str(const js_doc *d, int i, char *out, size_t cap) {
  if (i < 0 || i >= d->nt || cap == 0 ||
      (d->t[i].type != JSMN_STRING && d->t[i].type != JSMN_PRIMITIVE))
    return -1;
  size_t len = (size_t)(d->t[i].end - d->t[i].start);
  if (len >= cap) len = cap - 1;
  memcpy(out, d->s + d->t[i].start, len);
  out[len] = '\0';
  return 0;
}

void js_write_str(FILE *f, const char *s) {
  fputc('"', f);
  size_t n = strlen(s);
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      fprintf(f, "\\%c", ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      fprintf(f, "\\u%04x", ch);
    } else if (ch < 0x80) {
      fputc(ch, f);
    } else {
      /* JSON is UTF-8: a byte of no whole sequence (a --label in Latin-1)
       * is written as U+FFFD, so the file always parses */
      size_t k = log_utf8_seq((const unsigned char *)s + i, n - i);
      if (k == 0) {
        fputs("\\ufffd", f);
      } else {
        fwrite(s + i, 1, k, f);
        i += k - 1;
      }
    }
  }
  fputc('"', f);
}

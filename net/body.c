/*
 * body.c -- request bodies into a flat list of top-level fields.
 *
 * JSON: jsmn tokenizes into a fixed token array on the stack, but jsmn is
 * lenient even with JSMN_STRICT (it takes leading, trailing and doubled
 * commas, doubled colons, a missing ':' or ',', any run of printable bytes
 * as a primitive, raw control bytes, bad UTF-8 and lone surrogates in
 * strings). So a second pass walks the tokens with a cursor over the input
 * and checks every byte between them against the JSON grammar, every
 * primitive against the number/true/false/null grammar, and unescapes every
 * string (keys and nested ones too) while checking UTF-8. What passes is
 * exactly RFC 8259 JSON, at the price of a second pass over bytes that are
 * already in cache. Repeated keys parse; body_only and the getters refuse them.
 *
 * MessagePack: a small bounded reader of our own, not msgpack-c. msgpack-c's
 * unpackers take memory from a msgpack_zone, and msgpack_zone_init mallocs
 * its first chunk with no way to hand it caller memory; a body holds one
 * flat map, so reading it directly costs less code than working around the
 * zone. Strings point into the input; nested containers are skipped with a
 * depth bound, and every declared length is checked against the bytes left.
 */
#define JSMN_STATIC
#define JSMN_STRICT
#include "body.h"

#include <assert.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <jsmn.h>

/* Nesting of skipped values below the top-level object or map. */
#define BODY_DEPTH_MAX 16
/* Top object, each field's key and value, and room for nested values. */
#define BODY_JSON_TOKENS (1 + 2 * BODY_FIELDS_MAX + 96)
_Static_assert(BODY_FIELDS_MAX <= 64, "fields are scanned linearly");

/* A body past one of these bounds may be valid JSON or MessagePack: it is
 * refused as a parameter (SPIKE_EINVAL, saying which), not as malformed.
 * The numbers are the macros' (a static assertion keeps them so). */
#define LIMIT_FIELDS "body: more than 16 fields"
#define LIMIT_DEPTH "body: values nested deeper than 16"
#define LIMIT_VALUES "body: more than 128 JSON names and values"
_Static_assert(BODY_FIELDS_MAX == 16 && BODY_DEPTH_MAX == 16 && BODY_JSON_TOKENS == 129,
               "the LIMIT_ texts name these bounds");

/* The body refused: at a bound (limit), or as malformed. */
static int refused(body *b, const char *limit) {
  memset(b, 0, sizeof(*b));
  if (limit == NULL) return SPIKE_EBADBODY;
  snprintf(b->bad, sizeof(b->bad), "%s", limit);
  return SPIKE_EINVAL;
}

/* ---- shared: UTF-8, decimal ----------------------------------------------- */

/* Length of the well-formed UTF-8 sequence at p (n bytes left), 0 if none:
 * no overlong forms, no surrogates, nothing past U+10FFFF. */
static size_t utf8_seq(const uint8_t *p, size_t n) {
  static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
  size_t len = p[0] < 0x80   ? 1
               : p[0] < 0xc0 ? 0
               : p[0] < 0xe0 ? 2
               : p[0] < 0xf0 ? 3
               : p[0] < 0xf8 ? 4
                             : 0;
  uint32_t cp = p[0] & (0x7f >> len);
  if (len <= 1) return len;
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((p[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3f);
  }
  if (cp < min_cp[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

static size_t utf8_put(char *d, uint32_t cp) {
  static const uint8_t lead[5] = {0, 0, 0xc0, 0xe0, 0xf0};
  size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
  for (size_t i = n - 1; i > 0; i--, cp >>= 6)
    d[i] = (char)(0x80 | (cp & 0x3f));
  d[0] = (char)(lead[n] | cp);
  return n;
}

/* n > 0 decimal digits into *out; -1 on a non-digit or past UINT64_MAX. */
static int dec_u64(const char *p, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned d = (unsigned)(p[i] - '0');
    if (d > 9 || v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* ---- JSON ------------------------------------------------------------------ */

typedef struct jctx {
  const char *in;
  size_t len, pos; /* pos: the grammar cursor, every byte before it checked */
  const jsmntok_t *t;
  int nt, ti; /* tokens from jsmn, the next one to walk */
  char *scratch;
  size_t used, scratch_len;
  const char *limit; /* the bound a valid body passed, if one did */
} jctx;

static int hex4(const char *p, size_t n, uint32_t *out) {
  uint32_t v = 0;
  if (n < 4) return -1;
  for (int i = 0; i < 4; i++) {
    char c = p[i];
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (d < 0) return -1;
    v = v << 4 | (uint32_t)d;
  }
  *out = v;
  return 0;
}

/* Unescape s[0..n) into d; the output is never longer than the input. */
static int json_unescape(const char *s, size_t n, char *d, size_t *out_len) {
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  size_t i = 0, o = 0;
  uint32_t cp, lo;
  while (i < n) {
    uint8_t c = (uint8_t)s[i];
    if (c < 0x20 || c == '"') return -1;
    if (c != '\\') {
      size_t k = utf8_seq((const uint8_t *)s + i, n - i);
      if (k == 0) return -1;
      memcpy(d + o, s + i, k);
      i += k, o += k;
      continue;
    }
    if (n - i < 2) return -1;
    const char *e = memchr(from, s[i + 1], sizeof(from) - 1);
    i += 2;
    if (e != NULL) {
      d[o++] = to[e - from];
      continue;
    }
    if (s[i - 1] != 'u' || hex4(s + i, n - i, &cp) != 0 || (cp >= 0xdc00 && cp <= 0xdfff))
      return -1;
    i += 4;
    if (cp >= 0xd800 && cp <= 0xdbff) { /* a high surrogate: its low half must follow */
      if (n - i < 6 || s[i] != '\\' || s[i + 1] != 'u' || hex4(s + i + 2, 4, &lo) != 0 ||
          lo < 0xdc00 || lo > 0xdfff)
        return -1;
      i += 6;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    o += utf8_put(d + o, cp);
  }
  *out_len = o;
  return 0;
}

static void json_ws(jctx *c) {
  while (c->pos < c->len && (c->in[c->pos] == ' ' || c->in[c->pos] == '\t' ||
                             c->in[c->pos] == '\n' || c->in[c->pos] == '\r'))
    c->pos++;
}

/* Whitespace, then exactly ch. */
static int json_punct(jctx *c, char ch) {
  json_ws(c);
  if (c->pos >= c->len || c->in[c->pos] != ch) return -1;
  c->pos++;
  return 0;
}

/* The next token, which must begin at the cursor. */
static const jsmntok_t *json_next(jctx *c) {
  json_ws(c);
  if (c->ti >= c->nt) return NULL;
  const jsmntok_t *t = &c->t[c->ti++];
  size_t at = c->pos + (t->type == JSMN_STRING); /* a string token starts after its quote */
  if (t->start < 0 || t->end < t->start || (size_t)t->start != at || (size_t)t->end > c->len ||
      (t->type == JSMN_STRING && (c->in[c->pos] != '"' || (size_t)t->end == c->len)))
    return NULL;
  return t;
}

/* A string token at the cursor. keep: its text must stay valid, so an
 * escaped one claims its scratch; otherwise scratch is only a checking area. */
static int json_string(jctx *c, const jsmntok_t *t, int keep, const char **s, uint32_t *n) {
  const char *src = c->in + t->start;
  size_t src_len = (size_t)(t->end - t->start), out_len;
  char *dst = c->scratch + c->used;
  assert(c->used + src_len <= c->scratch_len);
  if (t->type != JSMN_STRING || json_unescape(src, src_len, dst, &out_len) != 0) return -1;
  c->pos = (size_t)t->end + 1;
  *n = (uint32_t)out_len;
  *s = src;
  if (out_len != src_len) { /* escapes only ever shrink: equal length means none */
    *s = dst;
    if (keep) c->used += out_len;
  }
  return 0;
}

static size_t digits(const char *p, size_t n, size_t i) {
  while (i < n && p[i] >= '0' && p[i] <= '9')
    i++;
  return i;
}

/* true / false / null / a number; integers that fit become UINT or NEGINT. */
static int json_primitive(const char *p, size_t n, body_field *f) {
  size_t neg = n > 0 && p[0] == '-', i = neg, int_end, j;
  uint64_t v;
  f->type = BODY_OTHER;
  if ((n == 4 && (memcmp(p, "true", 4) == 0 || memcmp(p, "null", 4) == 0)) ||
      (n == 5 && memcmp(p, "false", 5) == 0))
    return 0;
  if (i >= n || p[i] < '0' || p[i] > '9') return -1;
  i = p[i] == '0' ? i + 1 : digits(p, n, i);
  int_end = i;
  if (i < n && p[i] == '.') {
    if ((j = digits(p, n, i + 1)) == i + 1) return -1;
    i = j;
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    i += i + 1 < n && (p[i + 1] == '+' || p[i + 1] == '-') ? 2 : 1;
    if ((j = digits(p, n, i)) == i) return -1;
    i = j;
  }
  if (i != n) return -1;
  if (int_end != n || dec_u64(p + neg, int_end - neg, &v) != 0)
    return 0; /* a float, or an integer past 64 bits: valid JSON, not ours */
  if (!neg || v == 0) {
    f->type = BODY_UINT, f->u = v;
  } else if (v <= (uint64_t)INT64_MAX + 1) {
    f->type = BODY_NEGINT, f->i = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
  }
  return 0;
}

static int json_value(jctx *c, int depth, body_field *f);

/* The object or array t at the cursor; b: fill it with the top level's fields. */
static int json_container(jctx *c, const jsmntok_t *t, int depth, body *b) {
  int obj = t->type == JSMN_OBJECT;
  body_field skip;
  if (b != NULL && !obj) return -1;
  if (b != NULL && t->size > BODY_FIELDS_MAX) {
    c->limit = LIMIT_FIELDS;
    return -1;
  }
  c->pos++;
  for (int k = 0; k < t->size; k++) {
    body_field *f = b != NULL ? &b->f[k] : &skip;
    if (k > 0 && json_punct(c, ',') != 0) return -1;
    if (obj) {
      const jsmntok_t *key = json_next(c);
      if (key == NULL || key->size != 1 ||
          json_string(c, key, b != NULL, &f->name, &f->name_len) != 0 || json_punct(c, ':') != 0)
        return -1;
    }
    if (json_value(c, depth + 1, f) != 0) return -1;
  }
  if (json_punct(c, obj ? '}' : ']') != 0 || c->pos != (size_t)t->end) return -1;
  if (b != NULL) b->n = (uint32_t)t->size;
  return 0;
}

static int json_value(jctx *c, int depth, body_field *f) {
  const jsmntok_t *t = json_next(c);
  if (t == NULL) return -1;
  if (depth > BODY_DEPTH_MAX) {
    c->limit = LIMIT_DEPTH;
    return -1;
  }
  f->type = BODY_OTHER;
  switch (t->type) {
  case JSMN_STRING: f->type = BODY_STR; return json_string(c, t, depth == 1, &f->s, &f->s_len);
  case JSMN_PRIMITIVE:
    c->pos = (size_t)t->end;
    return json_primitive(c->in + t->start, (size_t)(t->end - t->start), f);
  case JSMN_OBJECT:
  case JSMN_ARRAY: return json_container(c, t, depth, NULL);
  default: return -1;
  }
}

int body_parse_json(body *b, const char *in, size_t len, char *scratch, size_t scratch_len) {
  jsmntok_t toks[BODY_JSON_TOKENS];
  jsmn_parser p;
  jctx c = {.in = in, .len = len, .t = toks, .scratch = scratch, .scratch_len = scratch_len};
  const jsmntok_t *top;
  memset(b, 0, sizeof(*b));
  if (len == 0) return SPIKE_OK;
  if (scratch == NULL || scratch_len < len) return SPIKE_EINTERNAL;
  if (len > INT_MAX) goto fail; /* jsmn keeps offsets in int */
  jsmn_init(&p);
  c.nt = jsmn_parse(&p, in, len, toks, BODY_JSON_TOKENS);
  if (c.nt == JSMN_ERROR_NOMEM) c.limit = LIMIT_VALUES;
  if (c.nt < 1 || (top = json_next(&c)) == NULL || top->type != JSMN_OBJECT ||
      json_container(&c, top, 0, b) != 0)
    goto fail;
  json_ws(&c);
  if (c.pos != len || c.ti != c.nt) goto fail;
  return SPIKE_OK;
fail:
  return refused(b, c.limit);
}

/* ---- MessagePack ----------------------------------------------------------- */

typedef struct mctx {
  const uint8_t *in;
  size_t len, pos;
  const char *limit; /* as jctx's */
} mctx;

/* n big-endian bytes at the cursor. */
static int mp_be(mctx *c, size_t n, uint64_t *v) {
  if (c->len - c->pos < n) return -1;
  *v = 0;
  for (size_t i = 0; i < n; i++)
    *v = *v << 8 | c->in[c->pos++];
  return 0;
}

static int mp_skip(mctx *c, uint64_t n) {
  if (c->len - c->pos < n) return -1;
  c->pos += (size_t)n;
  return 0;
}

static int mp_str(mctx *c, uint64_t n, body_field *f) {
  if (c->len - c->pos < n) return -1;
  for (size_t i = 0, k; i < n; i += k)
    if ((k = utf8_seq(c->in + c->pos + i, (size_t)n - i)) == 0) return -1;
  f->type = BODY_STR;
  f->s = (const char *)c->in + c->pos;
  f->s_len = (uint32_t)n;
  c->pos += (size_t)n;
  return 0;
}

static int mp_value(mctx *c, int depth, body_field *f);

/* n values of a skipped array, or n / 2 pairs of a skipped map. */
static int mp_seq(mctx *c, uint64_t n, int depth) {
  body_field skip;
  if (n > c->len - c->pos) return -1; /* each value takes a byte at least */
  for (uint64_t i = 0; i < n; i++)
    if (mp_value(c, depth + 1, &skip) != 0) return -1;
  return 0;
}

/* The value at the cursor, depth containers deep, into f. */
static int mp_value(mctx *c, int depth, body_field *f) {
  uint64_t n, v;
  unsigned w;
  uint8_t b;
  if (c->pos >= c->len) return -1;
  if (depth > BODY_DEPTH_MAX) {
    c->limit = LIMIT_DEPTH;
    return -1;
  }
  b = c->in[c->pos++];
  f->type = BODY_OTHER;
  if (b <= 0x7f) return f->type = BODY_UINT, f->u = b, 0;
  if (b >= 0xe0) return f->type = BODY_NEGINT, f->i = (int64_t)b - 256, 0;
  if (b >= 0xa0 && b <= 0xbf) return mp_str(c, b & 0x1f, f);
  if (b >= 0x80 && b <= 0x9f) return mp_seq(c, b < 0x90 ? 2u * (b & 0x0f) : b & 0x0f, depth);
  if (b == 0xc0 || b == 0xc2 || b == 0xc3) return 0; /* nil, false, true */
  if (b >= 0xc4 && b <= 0xc9) { /* bin 8/16/32, ext 8/16/32 (a type byte before the data) */
    if (mp_be(c, 1u << ((b - 0xc4) % 3), &n) != 0) return -1;
    return mp_skip(c, n + (b >= 0xc7));
  }
  if (b == 0xca || b == 0xcb) return mp_skip(c, b == 0xca ? 4 : 8); /* float 32/64 */
  if (b >= 0xcc && b <= 0xcf) {
    if (mp_be(c, 1u << (b - 0xcc), &v) != 0) return -1;
    return f->type = BODY_UINT, f->u = v, 0;
  }
  if (b >= 0xd0 && b <= 0xd3) {
    w = 8u << (b - 0xd0);
    if (mp_be(c, w / 8, &v) != 0) return -1;
    if ((v >> (w - 1) & 1) == 0) return f->type = BODY_UINT, f->u = v, 0;
    /* two's complement by hand: ~v within w bits is |v| - 1 and fits int64 */
    f->type = BODY_NEGINT;
    f->i = -(int64_t)(~v & (w == 64 ? UINT64_MAX : (UINT64_C(1) << w) - 1)) - 1;
    return 0;
  }
  if (b >= 0xd4 && b <= 0xd8) return mp_skip(c, 1 + (1u << (b - 0xd4))); /* fixext */
  if (b >= 0xd9 && b <= 0xdb) return mp_be(c, 1u << (b - 0xd9), &n) != 0 ? -1 : mp_str(c, n, f);
  if (b >= 0xdc) { /* array 16/32, map 16/32 */
    if (mp_be(c, b & 1 ? 4 : 2, &n) != 0) return -1;
    return mp_seq(c, b >= 0xde ? 2 * n : n, depth);
  }
  return -1; /* 0xc1 is never used */
}

int body_parse_msgpack(body *b, const char *in, size_t len, char *scratch, size_t scratch_len) {
  mctx c = {.in = (const uint8_t *)in, .len = len, .pos = 1};
  uint64_t n;
  body_field key;
  (void)scratch; /* strings are stored raw: nothing to unescape */
  (void)scratch_len;
  memset(b, 0, sizeof(*b));
  if (len == 0) return SPIKE_OK;
  if (len > INT32_MAX) goto fail; /* lengths are kept in uint32_t */
  if ((c.in[0] & 0xf0) == 0x80)
    n = c.in[0] & 0x0f;
  else if (c.in[0] != 0xde && c.in[0] != 0xdf)
    goto fail;
  else if (mp_be(&c, c.in[0] == 0xde ? 2 : 4, &n) != 0)
    goto fail;
  if (n > BODY_FIELDS_MAX) {
    /* a count the bytes could hold (two a field at least) is a bound
     * passed; one they cannot is a malformed map */
    if (n <= (len - c.pos) / 2) c.limit = LIMIT_FIELDS;
    goto fail;
  }
  for (uint32_t k = 0; k < n; k++) {
    if (mp_value(&c, 1, &key) != 0 || key.type != BODY_STR) goto fail;
    b->f[k].name = key.s;
    b->f[k].name_len = key.s_len;
    if (mp_value(&c, 1, &b->f[k]) != 0) goto fail;
  }
  if (c.pos != len) goto fail;
  b->n = (uint32_t)n;
  return SPIKE_OK;
fail:
  return refused(b, c.limit);
}

/* ---- lookups --------------------------------------------------------------- */

static int name_is(const body_field *f, const char *name, size_t len) {
  return f->name_len == len && memcmp(f->name, name, len) == 0;
}

int body_only(body *b, const char *const *allowed, const char **field) {
  for (uint32_t i = 0; i < b->n; i++) {
    const body_field *f = &b->f[i];
    int ok = 0;
    for (const char *const *a = allowed; *a != NULL && !ok; a++)
      ok = name_is(f, *a, strlen(*a));
    for (uint32_t j = 0; j < i && ok; j++)
      ok = !name_is(&b->f[j], f->name, f->name_len);
    if (ok) continue;
    /* A copy for the error message: cut on a UTF-8 boundary, control bytes masked. */
    size_t n = f->name_len < sizeof(b->bad) - 1 ? f->name_len : sizeof(b->bad) - 1;
    if (n < f->name_len)
      while (n > 0 && ((uint8_t)f->name[n] & 0xc0) == 0x80)
        n--;
    for (size_t k = 0; k < n; k++)
      b->bad[k] = (uint8_t)f->name[k] < 0x20 || f->name[k] == 0x7f ? '?' : f->name[k];
    b->bad[n] = '\0';
    if (field != NULL) *field = b->bad;
    return SPIKE_EINVAL;
  }
  return SPIKE_OK;
}

static int bad(const char *name, const char **field) {
  if (field != NULL) *field = name;
  return SPIKE_EINVAL;
}

/* The field called name into *out (NULL when absent). A repeated name is
 * refused here too, so callers that skip body_only never see first-wins. */
static int lookup(const body *b, const char *name, int required, int *present, const char **field,
                  const body_field **out) {
  size_t len = strlen(name);
  *out = NULL;
  for (uint32_t i = 0; i < b->n; i++) {
    if (!name_is(&b->f[i], name, len)) continue;
    if (*out != NULL) return bad(name, field);
    *out = &b->f[i];
  }
  if (*out == NULL && required) return bad(name, field);
  if (present != NULL) *present = *out != NULL;
  return SPIKE_OK;
}

int body_u64(const body *b, const char *name, int required, uint64_t min, uint64_t max,
             uint64_t *out, int *present, const char **field) {
  const body_field *f;
  uint64_t v;
  int rc = lookup(b, name, required, present, field, &f);
  if (rc != SPIKE_OK || f == NULL) return rc;
  if (f->type == BODY_UINT)
    v = f->u;
  else if (f->type != BODY_STR || f->s_len > 20 || (f->s_len > 1 && f->s[0] == '0') ||
           dec_u64(f->s, f->s_len, &v) != 0)
    return bad(name, field);
  if (v < min || v > max) return bad(name, field);
  *out = v;
  return SPIKE_OK;
}

int body_i64(const body *b, const char *name, int required, int64_t min, int64_t max, int64_t *out,
             int *present, const char **field) {
  const body_field *f;
  int64_t v;
  int rc = lookup(b, name, required, present, field, &f);
  if (rc != SPIKE_OK || f == NULL) return rc;
  if (f->type == BODY_UINT && f->u <= INT64_MAX)
    v = (int64_t)f->u;
  else if (f->type == BODY_NEGINT)
    v = f->i;
  else
    return bad(name, field);
  if (v < min || v > max) return bad(name, field);
  *out = v;
  return SPIKE_OK;
}

int body_str(const body *b, const char *name, int required, size_t min_len, size_t max_len,
             const char **out, size_t *out_len, int *present, const char **field) {
  const body_field *f;
  int rc = lookup(b, name, required, present, field, &f);
  if (rc != SPIKE_OK || f == NULL) return rc;
  if (f->type != BODY_STR || f->s_len < min_len || f->s_len > max_len) return bad(name, field);
  for (uint32_t i = 0; i < f->s_len; i++)
    if ((uint8_t)f->s[i] < 0x20 || f->s[i] == 0x7f) return bad(name, field);
  *out = f->s;
  *out_len = f->s_len;
  return SPIKE_OK;
}

/*
 * body.h -- request bodies, JSON (jsmn) or MessagePack (msgpack-c), read
 * into one flat list of top-level fields, then fetched by name with type
 * and range checks.
 *
 * A body must be one object (JSON) or one map (MessagePack) whose keys are
 * strings; values may be integers, strings, or anything else (floats,
 * booleans, null, nested containers), which a typed getter then refuses as
 * the wrong type. Ids are 64-bit and arrive as a JSON number or a decimal
 * string; both are accepted by body_u64.
 *
 * No allocation: the caller gives a body (with BODY_FIELDS_MAX slots) and a
 * scratch buffer at least as long as the input, into which JSON strings are
 * unescaped (an unescaped string is never longer than its escaped form).
 * Field names and string values point into the input or the scratch; both
 * must outlive the body.
 *
 * Errors: SPIKE_EBADBODY (not valid JSON / MessagePack, not an object/map,
 * trailing bytes) and SPIKE_EINVAL (a field is missing, has the wrong type,
 * is out of range, is repeated, or is unknown; *field then names it,
 * pointing into static storage or the body). A body past a bound (more
 * than BODY_FIELDS_MAX fields, values nested deeper than 16, more than 128
 * JSON names and values) is SPIKE_EINVAL from the parse, with b->bad
 * saying which: it may be valid, and the bound is ours.
 */
#ifndef SPIKE_BODY_H
#define SPIKE_BODY_H

#include <stddef.h>
#include <stdint.h>

#include "spike.h"

#define BODY_FIELDS_MAX 16

typedef enum body_type {
  BODY_UINT,   /* a non-negative integer: u */
  BODY_NEGINT, /* a negative integer: i */
  BODY_STR,    /* a string: s, s_len (UTF-8, unescaped) */
  BODY_OTHER,  /* float, bool, null, array, object */
} body_type;

typedef struct body_field {
  const char *name;
  uint32_t name_len;
  body_type type;
  uint64_t u;
  int64_t i;
  const char *s;
  uint32_t s_len;
} body_field;

typedef struct body {
  body_field f[BODY_FIELDS_MAX];
  uint32_t n;
  /* set by body_only: a NUL-terminated copy of the offending name, which *field points to */
  char bad[64];
} body;

/* Parse a JSON object. An empty input (len 0) is an empty object. */
int body_parse_json(body *b, const char *in, size_t len, char *scratch, size_t scratch_len);

/* Parse a MessagePack map. An empty input is an empty map. */
int body_parse_msgpack(body *b, const char *in, size_t len, char *scratch, size_t scratch_len);

/* SPIKE_EINVAL (naming the first) when a field's name is not in allowed
 * (a NULL-terminated list), or a name appears twice. */
int body_only(body *b, const char *const *allowed, const char **field);

/*
 * Typed getters. When the field is absent: SPIKE_OK with *present = 0 and
 * the output untouched if !required, else SPIKE_EINVAL. When present but
 * the wrong type or out of [min, max]: SPIKE_EINVAL. *field names the field
 * on error. present may be NULL.
 */
int body_u64(const body *b, const char *name, int required, uint64_t min, uint64_t max,
             uint64_t *out, int *present, const char **field);
int body_i64(const body *b, const char *name, int required, int64_t min, int64_t max,
             int64_t *out, int *present, const char **field);
/* A string of min_len..max_len bytes with no control characters. */
int body_str(const body *b, const char *name, int required, size_t min_len, size_t max_len,
             const char **out, size_t *out_len, int *present, const char **field);

#endif /* SPIKE_BODY_H */

/*
 * fuzz_body.c -- libFuzzer target for net/body.c. Every input is parsed as
 * JSON and as MessagePack; whatever parses must keep the body's invariants,
 * and every getter on every field must agree with the field's type. A map
 * our MessagePack reader accepts must also be one msgpack-c accepts, with
 * the same keys and values.
 *
 *   make build/fuzz/fuzz_body
 *   ./build/fuzz/fuzz_body -max_total_time=60 -max_len=4096 tests/corpus/body
 */
#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"

#define ASSERT(c) ((c) ? (void)0 : abort())

static int within(const char *p, size_t n, const char *base, size_t len) {
  return p >= base && p + n <= base + len;
}

static int repeats(const body *b, uint32_t i) {
  int n = 0;
  for (uint32_t j = 0; j < b->n; j++)
    n += b->f[j].name_len == b->f[i].name_len &&
         memcmp(b->f[j].name, b->f[i].name, b->f[i].name_len) == 0;
  return n > 1;
}

static void check_getters(const body *b, const body_field *f, const char *name, int dup) {
  const char *field = NULL, *s = NULL;
  uint64_t u = 0;
  int64_t i = 0;
  size_t len = 0;
  int present = -1, rc;

  rc = body_u64(b, name, 1, 0, UINT64_MAX, &u, &present, &field);
  ASSERT(rc == SPIKE_OK || (rc == SPIKE_EINVAL && field == name));
  if (dup || f->type == BODY_NEGINT || f->type == BODY_OTHER) ASSERT(rc == SPIKE_EINVAL);
  if (!dup && f->type == BODY_UINT) ASSERT(rc == SPIKE_OK && u == f->u && present == 1);
  if (rc == SPIKE_OK && f->type == BODY_STR) ASSERT(f->s_len >= 1 && f->s_len <= 20);

  rc = body_i64(b, name, 1, INT64_MIN, INT64_MAX, &i, NULL, &field);
  ASSERT(rc == SPIKE_OK || (rc == SPIKE_EINVAL && field == name));
  if (dup || f->type == BODY_STR || f->type == BODY_OTHER) ASSERT(rc == SPIKE_EINVAL);
  if (!dup && f->type == BODY_NEGINT) ASSERT(rc == SPIKE_OK && i == f->i && i < 0);
  if (!dup && f->type == BODY_UINT) ASSERT((rc == SPIKE_OK) == (f->u <= INT64_MAX));

  rc = body_str(b, name, 0, 0, SIZE_MAX, &s, &len, &present, &field);
  ASSERT(rc == SPIKE_OK || (rc == SPIKE_EINVAL && field == name));
  if (dup || f->type != BODY_STR) ASSERT(rc == SPIKE_EINVAL);
  if (rc == SPIKE_OK) {
    ASSERT(s == f->s && len == f->s_len && present == 1);
    for (size_t k = 0; k < len; k++)
      ASSERT((uint8_t)s[k] >= 0x20 && s[k] != 0x7f);
  }
}

static void check(body *b, const uint8_t *data, size_t size, const char *scratch) {
  const char *in = (const char *)data, *names[BODY_FIELDS_MAX + 1], *field = NULL;
  static const char *const none[] = {NULL};
  char copies[BODY_FIELDS_MAX][4096 + 1];
  uint32_t named = 0;
  int any_dup = 0;
  ASSERT(b->n <= BODY_FIELDS_MAX);
  for (uint32_t k = 0; k < b->n; k++) {
    const body_field *f = &b->f[k];
    ASSERT(f->name_len <= size);
    ASSERT(within(f->name, f->name_len, in, size) || within(f->name, f->name_len, scratch, size));
    ASSERT(f->type <= BODY_OTHER);
    if (f->type == BODY_STR)
      ASSERT(within(f->s, f->s_len, in, size) || within(f->s, f->s_len, scratch, size));
    any_dup |= repeats(b, k);
    if (f->name_len >= sizeof(copies[0]) || memchr(f->name, '\0', f->name_len) != NULL) continue;
    memcpy(copies[named], f->name, f->name_len);
    copies[named][f->name_len] = '\0';
    check_getters(b, f, copies[named], repeats(b, k));
    names[named] = copies[named];
    named++;
  }
  names[named] = NULL;
  int rc = body_only(b, names, &field);
  if (named == b->n && !any_dup)
    ASSERT(rc == SPIKE_OK);
  else
    ASSERT(rc == SPIKE_EINVAL && field == b->bad && strlen(b->bad) < sizeof(b->bad));
  rc = body_only(b, none, &field);
  ASSERT(b->n == 0 ? rc == SPIKE_OK : rc == SPIKE_EINVAL && field == b->bad);
  /* an optional field that is absent: OK, untouched (unless the fuzzer learned the name) */
  static const char absent[] = "\x01-absent";
  uint64_t u = 7;
  int present = -1, there = 0;
  for (uint32_t k = 0; k < b->n; k++)
    there |= b->f[k].name_len == sizeof(absent) - 1 &&
             memcmp(b->f[k].name, absent, sizeof(absent) - 1) == 0;
  rc = body_u64(b, absent, 0, 0, 1, &u, &present, &field);
  if (!there) ASSERT(rc == SPIKE_OK && u == 7 && present == 0);
}

/* What our reader accepted, msgpack-c must read the same way. */
static void check_msgpack_c(const body *b, const uint8_t *data, size_t size) {
  msgpack_unpacked up;
  size_t off = 0;
  if (size == 0) return;
  msgpack_unpacked_init(&up);
  ASSERT(msgpack_unpack_next(&up, (const char *)data, size, &off) == MSGPACK_UNPACK_SUCCESS);
  ASSERT(off == size && up.data.type == MSGPACK_OBJECT_MAP && up.data.via.map.size == b->n);
  for (uint32_t k = 0; k < b->n; k++) {
    const msgpack_object *key = &up.data.via.map.ptr[k].key, *val = &up.data.via.map.ptr[k].val;
    const body_field *f = &b->f[k];
    ASSERT(key->type == MSGPACK_OBJECT_STR && key->via.str.size == f->name_len);
    /* msgpack-c hands back NULL for an empty string */
    ASSERT(f->name_len == 0 || memcmp(key->via.str.ptr, f->name, f->name_len) == 0);
    switch (f->type) {
    case BODY_UINT:
      ASSERT(val->type == MSGPACK_OBJECT_POSITIVE_INTEGER && val->via.u64 == f->u);
      break;
    case BODY_NEGINT:
      ASSERT(val->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && val->via.i64 == f->i);
      break;
    case BODY_STR:
      ASSERT(val->type == MSGPACK_OBJECT_STR && val->via.str.size == f->s_len);
      ASSERT(f->s_len == 0 || memcmp(val->via.str.ptr, f->s, f->s_len) == 0);
      break;
    default:
      ASSERT(val->type != MSGPACK_OBJECT_POSITIVE_INTEGER &&
             val->type != MSGPACK_OBJECT_NEGATIVE_INTEGER && val->type != MSGPACK_OBJECT_STR);
    }
  }
  msgpack_unpacked_destroy(&up);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* exactly the input's length, so ASan sees a byte of over-write */
  char *scratch = malloc(size ? size : 1);
  body b;
  int rc;
  ASSERT(scratch != NULL);
  rc = body_parse_json(&b, (const char *)data, size, scratch, size);
  ASSERT(rc == SPIKE_OK || ((rc == SPIKE_EBADBODY || (rc == SPIKE_EINVAL && b.bad[0])) && b.n == 0));
  if (rc == SPIKE_OK) check(&b, data, size, scratch);
  rc = body_parse_msgpack(&b, (const char *)data, size, scratch, size);
  ASSERT(rc == SPIKE_OK || ((rc == SPIKE_EBADBODY || (rc == SPIKE_EINVAL && b.bad[0])) && b.n == 0));
  if (rc == SPIKE_OK) {
    check(&b, data, size, scratch);
    check_msgpack_c(&b, data, size);
  }
  free(scratch);
  return 0;
}

/*
 * test_body.c -- request bodies: every getter and error path, the JSON
 * grammar at its edges (escapes, numbers, nesting, what jsmn alone would let
 * through), MessagePack of every type and width, and truncation at every
 * prefix. Every parse reads its input, and writes its scratch, flush
 * against a PROT_NONE page (picohttpparser's trick), so one byte of
 * over-read or over-write crashes the case.
 */
#define _GNU_SOURCE
#include <msgpack.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "body.h"
#include "test.h"

#define AREA_BYTES (128 * 1024)

static char *area_in, *area_scratch;

static char *guarded(void) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  char *p =
      mmap(NULL, AREA_BYTES + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(p != MAP_FAILED);
  CHECK(mprotect(p + AREA_BYTES, page, PROT_NONE) == 0);
  return p;
}

static int parse(int msgpack, body *b, const void *s, size_t n) {
  if (area_in == NULL) area_in = guarded(), area_scratch = guarded();
  CHECK(n <= AREA_BYTES);
  char *in = area_in + AREA_BYTES - n, *scratch = area_scratch + AREA_BYTES - n;
  memcpy(in, s, n);
  memset(scratch, 0xa5, n);
  int rc =
      msgpack ? body_parse_msgpack(b, in, n, scratch, n) : body_parse_json(b, in, n, scratch, n);
  if (rc != SPIKE_OK) CHECK_EQ(b->n, 0);
  CHECK(b->n <= BODY_FIELDS_MAX);
  return rc;
}
static int pj(body *b, const char *s) { return parse(0, b, s, strlen(s)); }
#define PJ_RAW(b, lit) parse(0, b, lit, sizeof(lit) - 1)
#define PM_RAW(b, lit) parse(1, b, lit, sizeof(lit) - 1)

static int within(const char *p, size_t n, const char *base, size_t len) {
  return p >= base && p + n <= base + len;
}
static int in_area(const char *p, size_t n, const char *area) {
  return within(p, n, area, AREA_BYTES);
}

static const body_field *fld(const body *b, const char *name) {
  for (uint32_t i = 0; i < b->n; i++)
    if (b->f[i].name_len == strlen(name) && memcmp(b->f[i].name, name, strlen(name)) == 0)
      return &b->f[i];
  return NULL;
}

static int str_is(const body *b, const char *name, const char *want, size_t want_len) {
  const body_field *f = fld(b, name);
  return f != NULL && f->type == BODY_STR && f->s_len == want_len &&
         memcmp(f->s, want, want_len) == 0;
}

/* The guard is real: a read one byte past an input dies. */
static void guard_page_bites(void) {
  body b;
  CHECK_EQ(pj(&b, "{}"), SPIKE_OK);
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    volatile const char *end = area_in + AREA_BYTES;
    freopen("/dev/null", "w", stderr); /* the sanitizers' SEGV report is expected here */
    _exit(*end == 0x5a ? 3 : 4);
  }
  int st;
  CHECK(waitpid(pid, &st, 0) == pid);
  CHECK(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 3 && WEXITSTATUS(st) != 4));
}

/* ---- MessagePack builders -------------------------------------------------- */

typedef struct mp {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} mp;

static void mp_init(mp *m) {
  msgpack_sbuffer_init(&m->sb);
  msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}
static void mp_s(mp *m, const char *s) {
  msgpack_pack_str(&m->pk, strlen(s));
  msgpack_pack_str_body(&m->pk, s, strlen(s));
}
static void mp_raw(mp *m, const char *s, size_t n) { msgpack_sbuffer_write(&m->sb, s, n); }
static int mp_parse(body *b, mp *m) { return parse(1, b, m->sb.data, m->sb.size); }

/* ---- JSON ------------------------------------------------------------------ */

static void json_api_bodies(void) {
  body b;
  const char *field = NULL, *s;
  size_t s_len;
  uint64_t u;
  int64_t i;
  int present = -1;
  CHECK_EQ(pj(&b, "{\"user_id\":\"42\",\"qty\":1,\"request_id\":\"abc\"}"), SPIKE_OK);
  CHECK_EQ(b.n, 3);
  CHECK_EQ(body_u64(&b, "user_id", 1, 1, UINT64_MAX, &u, &present, &field), SPIKE_OK);
  CHECK_EQ(u, 42);
  CHECK_EQ(present, 1);
  CHECK_EQ(body_u64(&b, "qty", 0, 1, 100, &u, NULL, &field), SPIKE_OK);
  CHECK_EQ(u, 1);
  CHECK_EQ(body_str(&b, "request_id", 0, 1, 64, &s, &s_len, &present, &field), SPIKE_OK);
  CHECK(s_len == 3 && memcmp(s, "abc", 3) == 0);
  CHECK(in_area(s, s_len, area_in)); /* nothing to unescape: zero-copy */
  static const char *const allowed[] = {"user_id", "qty", "request_id", NULL};
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_OK);

  CHECK_EQ(pj(&b, " {\n\t\"name\" : \"Sale\", \"stock\":100,\"price\":999,\"start_at\":0,"
                  "\"end_at\":1893456000000 }\r\n"),
           SPIKE_OK);
  CHECK_EQ(b.n, 5);
  CHECK_EQ(body_i64(&b, "end_at", 1, 0, INT64_MAX, &i, NULL, &field), SPIKE_OK);
  CHECK_EQ(i, 1893456000000LL);
  CHECK_EQ(body_i64(&b, "start_at", 1, 0, INT64_MAX, &i, NULL, &field), SPIKE_OK);
  CHECK_EQ(i, 0);
  CHECK(str_is(&b, "name", "Sale", 4));
}

static void json_empty(void) {
  body b;
  CHECK_EQ(parse(0, &b, "", 0), SPIKE_OK);
  CHECK_EQ(b.n, 0);
  CHECK_EQ(pj(&b, "{}"), SPIKE_OK);
  CHECK_EQ(pj(&b, " \t\r\n{ \n } \n"), SPIKE_OK);
  CHECK_EQ(b.n, 0);
  CHECK_EQ(pj(&b, " "), SPIKE_EBADBODY);
  CHECK_EQ(pj(&b, "\n"), SPIKE_EBADBODY);
  char scratch[4];
  CHECK_EQ(body_parse_json(&b, "{}", 2, scratch, 1), SPIKE_EINTERNAL); /* caller's bug */
}

static void json_escapes(void) {
  body b;
  CHECK_EQ(pj(&b, "{\"s\":\"a\\\"b\\\\c\\/d\\be\\ff\\ng\\rh\\ti\"}"), SPIKE_OK);
  CHECK(str_is(&b, "s", "a\"b\\c/d\be\ff\ng\rh\ti", 17));
  CHECK(in_area(fld(&b, "s")->s, 17, area_scratch));
  CHECK_EQ(pj(&b, "{\"a\":\"\\u0041\",\"b\":\"\\u00e9\",\"c\":\"\\u20AC\",\"d\":\"\\uffff\"}"),
           SPIKE_OK);
  CHECK(str_is(&b, "a", "A", 1));
  CHECK(str_is(&b, "b", "\xc3\xa9", 2));
  CHECK(str_is(&b, "c", "\xe2\x82\xac", 3));
  CHECK(str_is(&b, "d", "\xef\xbf\xbf", 3));
  /* surrogate pairs: the first and last astral code points and an emoji */
  CHECK_EQ(pj(&b, "{\"a\":\"\\ud800\\udc00\",\"b\":\"x\\uD83D\\uDE00y\",\"c\":\"\\udbff\\udfff\"}"),
           SPIKE_OK);
  CHECK(str_is(&b, "a", "\xf0\x90\x80\x80", 4));
  CHECK(str_is(&b, "b", "x\xf0\x9f\x98\x80y", 6));
  CHECK(str_is(&b, "c", "\xf4\x8f\xbf\xbf", 4));
  /* raw UTF-8 passes through; \u0000 is valid JSON, refused by body_str */
  CHECK_EQ(pj(&b, "{\"u\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\",\"z\":\"a\\u0000b\"}"),
           SPIKE_OK);
  CHECK(str_is(&b, "u", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
  CHECK(str_is(&b, "z", "a\0b", 3));
  /* escaped keys are unescaped too, and several strings share the scratch */
  CHECK_EQ(pj(&b, "{\"us\\u0065r_id\":\"\\u0034\\u0032\",\"q\\ty\":\"\\\\\"}"), SPIKE_OK);
  uint64_t u = 0;
  CHECK_EQ(body_u64(&b, "user_id", 1, 0, UINT64_MAX, &u, NULL, NULL), SPIKE_OK);
  CHECK_EQ(u, 42);
  CHECK(str_is(&b, "q\ty", "\\", 1));
  CHECK_EQ(pj(&b, "{\"\":\"\"}"), SPIKE_OK);
  CHECK(str_is(&b, "", "", 0));
}

static void json_invalid(void) {
  /* clang-format off */
  static const char *const bad[] = {
      /* unterminated */
      "{", "{\"a\"", "{\"a\":", "{\"a\":1", "{\"a\":\"x", "{\"a\":\"x\"", "{\"a\":[1,2}",
      "{\"a\":{\"b\":1}", "{\"a\":\"x\\\"}", "\"", "{\"a\":\"\\",
      /* commas, colons */
      "{\"a\":1,}", "{,\"a\":1}", "{\"a\":1,,\"b\":2}", "{\"a\":[1,]}", "{\"a\":[,1]}",
      "{\"a\":[1,,2]}", "{\"a\":{\"b\":1,}}", "{,}", "{\"a\" 1}", "{\"a\" \"b\"}",
      "{\"a\":1 \"b\":2}", "{\"a\"::1}", "{\"a\":1:2}", "{:1}", "{\"a\":}", "{\"a\"}",
      "{\"a\":[1 2]}", "{\"a\":{\"b\"}}", "{\"a\":{\"b\":}}", "{\"a\":[1}", "{\"a\":{]}",
      /* quotes, bare words, keys that are not strings */
      "{'a':1}", "{\"a\":'x'}", "{a:1}", "{\"a\":tru}", "{\"a\":nul}", "{\"a\":True}",
      "{\"a\":undefined}", "{\"a\":truex}", "{\"a\":nullnull}", "{1:1}", "{null:1}", "{{}:1}",
      "{[]:1}", "{\"a\":1\"b\"}", "{\"a\":x}",
      /* numbers */
      "{\"a\":01}", "{\"a\":-01}", "{\"a\":00}", "{\"a\":NaN}", "{\"a\":Infinity}",
      "{\"a\":-Infinity}", "{\"a\":+1}", "{\"a\":.5}", "{\"a\":1.}", "{\"a\":1e}", "{\"a\":1e+}",
      "{\"a\":-}", "{\"a\":0x10}", "{\"a\":1.5.5}", "{\"a\":1e5e5}", "{\"a\":--1}", "{\"a\":1-}",
      "{\"a\":-.5}", "{\"a\":1,5}",
      /* trailing bytes, comments, several values */
      "{\"a\":1}x", "{\"a\":1} {}", "{\"a\":1}}", "{\"a\":1}]", "{} 1", "{}{}", "{} //",
      "{\"a\":1 /* c */}", "{}\x0b", "{}\xc2\xa0", "\xef\xbb\xbf{}",
      /* not an object */
      "[]", "[1]", "1", "-1", "\"a\"", "true", "null", "[{\"a\":1}]", "}", "]", ":", ",",
      /* raw control bytes in strings */
      "{\"a\":\"x\ny\"}", "{\"a\":\"\t\"}", "{\"a\":\"\x01\"}", "{\"a\":\"\x1f\"}", "{\"\x01\":1}",
      "{\"a\":[\"\n\"]}",
      /* invalid UTF-8: stray bytes, overlong, encoded surrogate, past U+10FFFF, cut short */
      "{\"a\":\"\xff\"}", "{\"a\":\"\x80\"}", "{\"a\":\"\xc0\xaf\"}", "{\"a\":\"\xc1\xbf\"}",
      "{\"a\":\"\xe0\x80\xaf\"}", "{\"a\":\"\xf0\x80\x80\xaf\"}", "{\"a\":\"\xed\xa0\x80\"}",
      "{\"a\":\"\xf4\x90\x80\x80\"}", "{\"a\":\"\xf5\x80\x80\x80\"}", "{\"a\":\"\xe2\x82\"}",
      "{\"a\":\"\xe2\x82x\"}", "{\"\xfe\":1}", "{\"a\":{\"b\":\"\xc3\"}}",
      "{\"a\":\"\xf0\x9f\x98\"}",
      /* escapes: unknown, short, lone or mismatched surrogates */
      "{\"a\":\"\\x\"}", "{\"a\":\"\\'\"}", "{\"a\":\"\\0\"}", "{\"a\":\"\\U0041\"}",
      "{\"a\":\"\\u12\"}", "{\"a\":\"\\u12G4\"}", "{\"a\":\"\\u\"}", "{\"a\":\"\\ud800\"}",
      "{\"a\":\"\\udc00\"}", "{\"a\":\"\\udfff\\ud800\"}", "{\"a\":\"\\ud800x\"}",
      "{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"\\ud800\\ud800\"}", "{\"a\":\"\\ud800\\\"}",
      "{\"a\":\"\\ud800\\u\"}", "{\"a\":\"\\ud83d\\ude0\"}", "{\"\\ud800\":1}",
      "{\"a\":[\"\\ud800\"]}", "{\"a\":\"\\\"}",
  };
  /* clang-format on */
  body b;
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    int rc = pj(&b, bad[k]);
    if (rc != SPIKE_EBADBODY) fprintf(stderr, "accepted: %s\n", bad[k]);
    CHECK_EQ(rc, SPIKE_EBADBODY);
  }
  /* NUL bytes: jsmn stops at one; the bytes after it still count */
  CHECK_EQ(PJ_RAW(&b, "{\"a\":1}\0"), SPIKE_EBADBODY);
  CHECK_EQ(PJ_RAW(&b, "{\"a\":\"x\0y\"}"), SPIKE_EBADBODY);
  CHECK_EQ(PJ_RAW(&b, "{\"a\":1\0}"), SPIKE_EBADBODY);
  CHECK_EQ(PJ_RAW(&b, "\0{}"), SPIKE_EBADBODY);
  /* a raw DEL is valid JSON, refused only by body_str */
  CHECK_EQ(pj(&b, "{\"a\":\"\x7f\"}"), SPIKE_OK);
}

static void json_nested(void) {
  body b;
  CHECK_EQ(pj(&b, "{\"a\":{\"b\":[1,{\"c\":\"d\\n\"}],\"e\":[],\"f\":{}},\"g\":2,"
                  "\"h\":[[[\"x\"]],true,false,null,-1.5e-3,\"\\ud83d\\ude00\"]}"),
           SPIKE_OK);
  CHECK_EQ(b.n, 3);
  CHECK_EQ(fld(&b, "a")->type, BODY_OTHER);
  CHECK_EQ(fld(&b, "g")->type, BODY_UINT);
  CHECK_EQ(fld(&b, "g")->u, 2);
  CHECK_EQ(fld(&b, "h")->type, BODY_OTHER);
  CHECK_EQ(pj(&b, "{\"t\":true,\"f\":false,\"n\":null,\"x\":1.5,\"y\":[],\"z\":{}}"), SPIKE_OK);
  CHECK_EQ(b.n, 6);
  for (uint32_t k = 0; k < b.n; k++)
    CHECK_EQ(b.f[k].type, BODY_OTHER);
  CHECK_EQ(pj(&b, " {\n \"a\" :\t[ 1 , { } , [ ] , 0e0 , -0.0E+00 ] ,\r\n \"b\" : \"x\" } "),
           SPIKE_OK);
  CHECK_EQ(b.n, 2);
  CHECK(str_is(&b, "b", "x", 1));
  /* nested values hold duplicate keys of their own: not ours to judge */
  CHECK_EQ(pj(&b, "{\"a\":{\"k\":1,\"k\":2},\"b\":1}"), SPIKE_OK);
  CHECK_EQ(b.n, 2);
}

static void json_depth_and_tokens(void) {
  body b;
  char buf[8192];
  for (int depth = 1; depth <= 40; depth++) {
    int n = sprintf(buf, "{\"a\":");
    for (int k = 0; k < depth; k++)
      buf[n++] = '[';
    for (int k = 0; k < depth; k++)
      buf[n++] = ']';
    strcpy(buf + n, "}");
    /* past a bound, valid JSON is a parameter refused, saying which */
    CHECK_EQ(pj(&b, buf), depth <= 16 ? SPIKE_OK : SPIKE_EINVAL);
    if (depth > 16) CHECK(strstr(b.bad, "nested deeper than 16") != NULL);
    n = sprintf(buf, "{\"a\":");
    for (int k = 0; k < depth; k++)
      n += sprintf(buf + n, "{\"k\":");
    n += sprintf(buf + n, "1");
    for (int k = 0; k < depth; k++)
      buf[n++] = '}';
    strcpy(buf + n, "}");
    CHECK_EQ(pj(&b, buf), depth <= 15 ? SPIKE_OK : SPIKE_EINVAL); /* 1 sits one deeper */
  }
  /* 1000 levels: past the token array long before the depth bound */
  int n = sprintf(buf, "{\"a\":");
  for (int k = 0; k < 1000; k++)
    buf[n++] = '[';
  for (int k = 0; k < 1000; k++)
    buf[n++] = ']';
  strcpy(buf + n, "}");
  CHECK_EQ(pj(&b, buf), SPIKE_EINVAL);
  CHECK(strstr(b.bad, "more than 128 JSON names and values") != NULL);
  /* every field holding a small array fits the token budget... */
  n = sprintf(buf, "{");
  for (int k = 0; k < BODY_FIELDS_MAX; k++)
    n += sprintf(buf + n, "%s\"f%d\":[1,2,3,4]", k ? "," : "", k);
  strcpy(buf + n, "}");
  CHECK_EQ(pj(&b, buf), SPIKE_OK);
  CHECK_EQ(b.n, BODY_FIELDS_MAX);
  /* ...a long array does not */
  n = sprintf(buf, "{\"a\":[0");
  for (int k = 0; k < 300; k++)
    n += sprintf(buf + n, ",0");
  strcpy(buf + n, "]}");
  CHECK_EQ(pj(&b, buf), SPIKE_EINVAL);
  /* malformed is malformed, however deep */
  n = sprintf(buf, "{\"a\":");
  for (int k = 0; k < 30; k++)
    buf[n++] = '[';
  strcpy(buf + n, "}");
  CHECK_EQ(pj(&b, buf), SPIKE_EBADBODY);
}

static void json_fields_max(void) {
  body b;
  char buf[1024];
  int n = sprintf(buf, "{");
  for (int k = 0; k < BODY_FIELDS_MAX; k++)
    n += sprintf(buf + n, "%s\"f%d\":%d", k ? "," : "", k, k);
  strcpy(buf + n, "}");
  CHECK_EQ(pj(&b, buf), SPIKE_OK);
  CHECK_EQ(b.n, BODY_FIELDS_MAX);
  CHECK_EQ(b.f[BODY_FIELDS_MAX - 1].u, BODY_FIELDS_MAX - 1);
  strcpy(buf + n, ",\"x\":0}");
  CHECK_EQ(pj(&b, buf), SPIKE_EINVAL);
  CHECK(strstr(b.bad, "more than 16 fields") != NULL);
  CHECK_EQ(b.n, 0);
}

static void json_numbers(void) {
  body b;
  const body_field *f;
  CHECK_EQ(pj(&b, "{\"a\":0,\"b\":18446744073709551615,\"c\":18446744073709551616,"
                  "\"d\":-9223372036854775808,\"e\":-9223372036854775809,\"f\":1.5,\"g\":1e3,"
                  "\"h\":-0,\"i\":-1,\"j\":9223372036854775807,\"k\":9223372036854775808,"
                  "\"l\":99999999999999999999999,\"m\":-0.0,\"n\":1E-2,\"o\":0.5e+1,\"p\":-7}"),
           SPIKE_OK);
  CHECK_EQ(b.n, 16);
  f = fld(&b, "a");
  CHECK(f->type == BODY_UINT && f->u == 0);
  f = fld(&b, "b");
  CHECK(f->type == BODY_UINT && f->u == UINT64_MAX);
  CHECK_EQ(fld(&b, "c")->type, BODY_OTHER);
  f = fld(&b, "d");
  CHECK(f->type == BODY_NEGINT && f->i == INT64_MIN);
  CHECK_EQ(fld(&b, "e")->type, BODY_OTHER);
  CHECK_EQ(fld(&b, "f")->type, BODY_OTHER);
  CHECK_EQ(fld(&b, "g")->type, BODY_OTHER);
  f = fld(&b, "h");
  CHECK(f->type == BODY_UINT && f->u == 0);
  f = fld(&b, "i");
  CHECK(f->type == BODY_NEGINT && f->i == -1);
  CHECK_EQ(fld(&b, "l")->type, BODY_OTHER);
  CHECK_EQ(fld(&b, "m")->type, BODY_OTHER);
  CHECK_EQ(fld(&b, "n")->type, BODY_OTHER);
  CHECK_EQ(fld(&b, "o")->type, BODY_OTHER);

  const char *field = NULL;
  uint64_t u = 7;
  int64_t i = 7;
  CHECK_EQ(body_u64(&b, "b", 1, 0, UINT64_MAX, &u, NULL, &field), SPIKE_OK);
  CHECK(u == UINT64_MAX);
  CHECK_EQ(body_u64(&b, "c", 1, 0, UINT64_MAX, &u, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "c") == 0);
  CHECK_EQ(body_u64(&b, "f", 1, 0, UINT64_MAX, &u, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_u64(&b, "g", 1, 0, UINT64_MAX, &u, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_u64(&b, "i", 1, 0, UINT64_MAX, &u, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "i") == 0);
  CHECK_EQ(body_i64(&b, "d", 1, INT64_MIN, INT64_MAX, &i, NULL, &field), SPIKE_OK);
  CHECK(i == INT64_MIN);
  CHECK_EQ(body_i64(&b, "e", 1, INT64_MIN, INT64_MAX, &i, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_i64(&b, "j", 1, INT64_MIN, INT64_MAX, &i, NULL, &field), SPIKE_OK);
  CHECK(i == INT64_MAX);
  CHECK_EQ(body_i64(&b, "k", 1, INT64_MIN, INT64_MAX, &i, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "k") == 0);
  CHECK_EQ(body_u64(&b, "k", 1, 0, UINT64_MAX, &u, NULL, &field), SPIKE_OK);
  CHECK(u == (uint64_t)INT64_MAX + 1);
  CHECK_EQ(body_i64(&b, "h", 1, 0, 0, &i, NULL, &field), SPIKE_OK);
  CHECK_EQ(i, 0);
}

static void json_prefixes(void) {
  static const char full[] = "{\"user_id\":\"42\",\"qty\":1,\"n\":-3,\"x\":[1.5,{\"k\":null}],"
                             "\"e\":\"\\u00e9\\ud83d\\ude00\\n\",\"t\":true}";
  body b;
  CHECK_EQ(parse(0, &b, full, sizeof(full) - 1), SPIKE_OK);
  CHECK_EQ(b.n, 6);
  for (size_t n = 1; n < sizeof(full) - 1; n++)
    CHECK_EQ(parse(0, &b, full, n), SPIKE_EBADBODY);
  CHECK_EQ(parse(0, &b, full, 0), SPIKE_OK);
}

/* ---- getters --------------------------------------------------------------- */

static void getter_u64(void) {
  body b;
  const char *field = NULL;
  uint64_t u;
  int present;
  CHECK_EQ(pj(&b, "{\"n\":5,\"s\":\"18446744073709551615\",\"z\":\"0\",\"lz\":\"007\","
                  "\"e\":\"\",\"big\":\"18446744073709551616\",\"d21\":\"123456789012345678901\","
                  "\"neg\":\"-1\",\"sp\":\" 1\",\"x\":\"1a\",\"ni\":-1,\"f\":2.0,\"b\":true,"
                  "\"o\":{},\"plus\":\"+1\"}"),
           SPIKE_OK);
  CHECK_EQ(body_u64(&b, "n", 1, 5, 5, &u, &present, &field), SPIKE_OK);
  CHECK_EQ(u, 5);
  CHECK_EQ(body_u64(&b, "s", 1, 0, UINT64_MAX, &u, &present, &field), SPIKE_OK);
  CHECK(u == UINT64_MAX && present == 1);
  CHECK_EQ(body_u64(&b, "z", 1, 0, 10, &u, &present, &field), SPIKE_OK);
  CHECK_EQ(u, 0);
  static const char *const bad[] = {"lz", "e",  "big", "d21", "neg", "sp",
                                    "x",  "ni", "f",   "b",   "o",   "plus"};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    u = 77;
    field = NULL;
    CHECK_EQ(body_u64(&b, bad[k], 0, 0, UINT64_MAX, &u, &present, &field), SPIKE_EINVAL);
    CHECK(field == bad[k]); /* the caller's own name: valid as long as it needs */
    CHECK_EQ(u, 77);
  }
  /* the range, at and past each bound */
  CHECK_EQ(body_u64(&b, "n", 1, 6, 9, &u, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "n") == 0);
  CHECK_EQ(body_u64(&b, "n", 1, 0, 4, &u, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_u64(&b, "n", 1, 0, 5, &u, NULL, NULL), SPIKE_OK);
  CHECK_EQ(body_u64(&b, "s", 1, 0, UINT64_MAX - 1, &u, NULL, &field), SPIKE_EINVAL);
  /* absent: optional leaves out alone, required names the field */
  u = 77;
  present = -1;
  CHECK_EQ(body_u64(&b, "missing", 0, 1, 2, &u, &present, &field), SPIKE_OK);
  CHECK(u == 77 && present == 0);
  CHECK_EQ(body_u64(&b, "missing", 0, 1, 2, &u, NULL, &field), SPIKE_OK);
  CHECK_EQ(body_u64(&b, "missing", 1, 1, 2, &u, &present, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "missing") == 0);
  CHECK_EQ(body_u64(&b, "N", 1, 0, 9, &u, NULL, &field), SPIKE_EINVAL); /* names are exact */
  CHECK_EQ(body_u64(&b, "", 1, 0, 9, &u, NULL, &field), SPIKE_EINVAL);
}

static void getter_i64(void) {
  body b;
  const char *field = NULL;
  int64_t i;
  int present;
  CHECK_EQ(pj(&b, "{\"p\":42,\"n\":-42,\"s\":\"42\",\"big\":9223372036854775808,\"f\":-1.0,"
                  "\"nul\":null}"),
           SPIKE_OK);
  CHECK_EQ(body_i64(&b, "p", 1, -100, 100, &i, &present, &field), SPIKE_OK);
  CHECK(i == 42 && present == 1);
  CHECK_EQ(body_i64(&b, "n", 1, -42, -42, &i, NULL, &field), SPIKE_OK);
  CHECK_EQ(i, -42);
  static const char *const bad[] = {"s", "big", "f", "nul"};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    i = 77;
    CHECK_EQ(body_i64(&b, bad[k], 1, INT64_MIN, INT64_MAX, &i, NULL, &field), SPIKE_EINVAL);
    CHECK(field == bad[k] && i == 77);
  }
  CHECK_EQ(body_i64(&b, "n", 1, -41, 0, &i, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "n") == 0);
  CHECK_EQ(body_i64(&b, "p", 1, 0, 41, &i, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_i64(&b, "p", 1, 43, 50, &i, NULL, &field), SPIKE_EINVAL);
  i = 77;
  present = -1;
  CHECK_EQ(body_i64(&b, "none", 0, 0, 1, &i, &present, &field), SPIKE_OK);
  CHECK(i == 77 && present == 0);
  CHECK_EQ(body_i64(&b, "none", 1, 0, 1, &i, &present, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "none") == 0);
}

static void getter_str(void) {
  body b;
  const char *field = NULL, *s = NULL;
  size_t len = 0;
  int present;
  CHECK_EQ(pj(&b,
              "{\"id\":\"p-1\",\"e\":\"\",\"nl\":\"a\\nb\",\"del\":\"a\\u007f\",\"raw\":\"\x7f\","
              "\"u\":\"\xc3\xa9t\xc3\xa9\",\"n\":5,\"z\":\"\\u0000\",\"tab\":\"\\t\"}"),
           SPIKE_OK);
  CHECK_EQ(body_str(&b, "id", 1, 1, 64, &s, &len, &present, &field), SPIKE_OK);
  CHECK(len == 3 && memcmp(s, "p-1", 3) == 0 && present == 1);
  CHECK_EQ(body_str(&b, "id", 1, 3, 3, &s, &len, NULL, &field), SPIKE_OK);
  CHECK_EQ(body_str(&b, "id", 1, 4, 64, &s, &len, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "id") == 0);
  CHECK_EQ(body_str(&b, "id", 1, 1, 2, &s, &len, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_str(&b, "e", 1, 0, 10, &s, &len, NULL, &field), SPIKE_OK);
  CHECK_EQ(len, 0);
  CHECK_EQ(body_str(&b, "e", 1, 1, 10, &s, &len, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_str(&b, "u", 1, 5, 5, &s, &len, NULL, &field), SPIKE_OK); /* bytes, not chars */
  static const char *const bad[] = {"nl", "del", "raw", "n", "z", "tab"};
  for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
    s = NULL;
    CHECK_EQ(body_str(&b, bad[k], 1, 0, 64, &s, &len, NULL, &field), SPIKE_EINVAL);
    CHECK(field == bad[k] && s == NULL);
  }
  present = -1;
  CHECK_EQ(body_str(&b, "nope", 0, 1, 64, &s, &len, &present, &field), SPIKE_OK);
  CHECK(present == 0 && s == NULL);
  CHECK_EQ(body_str(&b, "nope", 1, 1, 64, &s, &len, &present, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "nope") == 0);
}

static void only_and_repeats(void) {
  body b;
  const char *field = NULL;
  static const char *const allowed[] = {"a", "b", NULL};
  static const char *const none[] = {NULL};
  CHECK_EQ(pj(&b, "{\"b\":1,\"a\":2}"), SPIKE_OK);
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_OK);
  CHECK_EQ(body_only(&b, none, &field), SPIKE_EINVAL);
  CHECK(field == b.bad && strcmp(field, "b") == 0);
  CHECK_EQ(pj(&b, "{}"), SPIKE_OK);
  CHECK_EQ(body_only(&b, none, &field), SPIKE_OK);
  /* the first offender in body order */
  CHECK_EQ(pj(&b, "{\"a\":1,\"zz\":2,\"yy\":3}"), SPIKE_OK);
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_EINVAL);
  CHECK(field == b.bad && strcmp(field, "zz") == 0);
  /* repeats: body_only and every getter refuse them */
  CHECK_EQ(pj(&b, "{\"a\":1,\"b\":\"x\",\"a\":2}"), SPIKE_OK);
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "a") == 0);
  uint64_t u;
  int64_t i;
  const char *s;
  size_t len;
  CHECK_EQ(body_u64(&b, "a", 0, 0, 9, &u, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "a") == 0);
  CHECK_EQ(body_i64(&b, "a", 0, 0, 9, &i, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_str(&b, "a", 0, 0, 9, &s, &len, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_str(&b, "b", 1, 0, 9, &s, &len, NULL, &field), SPIKE_OK);
  /* an escaped spelling is the same name */
  CHECK_EQ(pj(&b, "{\"a\":1,\"\\u0061\":2}"), SPIKE_OK);
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_EINVAL);
  /* the copy in b.bad: cut to fit on a UTF-8 boundary, control bytes masked */
  char buf[256];
  int n = sprintf(buf, "{\"");
  for (int k = 0; k < 62; k++)
    buf[n++] = 'x';
  n += sprintf(buf + n, "\xc3\xa9yyyy\":1}");
  CHECK_EQ(pj(&b, buf), SPIKE_OK);
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_EINVAL);
  CHECK_EQ(strlen(field), 62);
  n = sprintf(buf, "{\"");
  for (int k = 0; k < 100; k++)
    buf[n++] = 'x';
  sprintf(buf + n, "\":1}");
  CHECK_EQ(pj(&b, buf), SPIKE_OK);
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_EINVAL);
  CHECK_EQ(strlen(field), sizeof(b.bad) - 1);
  CHECK_EQ(pj(&b, "{\"a\\nb\\u0000c\\u007f\":1}"), SPIKE_OK);
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "a?b?c?") == 0);
}

/* ---- MessagePack ----------------------------------------------------------- */

static void msgpack_api_body(void) {
  body b;
  mp m;
  const char *field, *s;
  size_t len;
  uint64_t u;
  mp_init(&m);
  msgpack_pack_map(&m.pk, 3);
  mp_s(&m, "user_id");
  mp_s(&m, "42");
  mp_s(&m, "qty");
  msgpack_pack_uint32(&m.pk, 1);
  mp_s(&m, "request_id");
  mp_s(&m, "abc");
  CHECK_EQ(mp_parse(&b, &m), SPIKE_OK);
  CHECK_EQ(b.n, 3);
  CHECK_EQ(body_u64(&b, "user_id", 1, 1, UINT64_MAX, &u, NULL, &field), SPIKE_OK);
  CHECK_EQ(u, 42);
  CHECK_EQ(body_u64(&b, "qty", 0, 1, 100, &u, NULL, &field), SPIKE_OK);
  CHECK_EQ(u, 1);
  CHECK_EQ(body_str(&b, "request_id", 0, 1, 64, &s, &len, NULL, &field), SPIKE_OK);
  CHECK(len == 3 && memcmp(s, "abc", 3) == 0 && in_area(s, len, area_in));
  msgpack_sbuffer_destroy(&m.sb);
  CHECK_EQ(parse(1, &b, "", 0), SPIKE_OK);
  CHECK_EQ(b.n, 0);
  CHECK_EQ(PM_RAW(&b, "\x80"), SPIKE_OK);
  CHECK_EQ(PM_RAW(&b, "\xde\x00\x00"), SPIKE_OK);
  CHECK_EQ(PM_RAW(&b, "\xdf\x00\x00\x00\x01\xa1k\x07"), SPIKE_OK); /* map32 */
  CHECK_EQ(b.n, 1);
  CHECK_EQ(PM_RAW(&b, "\xde\x00\x01\xa1k\x07"), SPIKE_OK); /* map16 */
  CHECK_EQ(fld(&b, "k")->u, 7);
}

static void msgpack_ints(void) {
  body b;
  mp m;
  mp_init(&m);
  msgpack_pack_map(&m.pk, 16);
  mp_s(&m, "p0"), msgpack_pack_uint8(&m.pk, 0); /* positive fixint */
  mp_s(&m, "p7f"), msgpack_pack_uint8(&m.pk, 127);
  mp_s(&m, "u8"), msgpack_pack_fix_uint8(&m.pk, 200);
  mp_s(&m, "u16"), msgpack_pack_fix_uint16(&m.pk, 60000);
  mp_s(&m, "u32"), msgpack_pack_fix_uint32(&m.pk, 4000000000u);
  mp_s(&m, "u64"), msgpack_pack_fix_uint64(&m.pk, UINT64_MAX);
  mp_s(&m, "n1"), msgpack_pack_int8(&m.pk, -1); /* negative fixint */
  mp_s(&m, "n32"), msgpack_pack_int8(&m.pk, -32);
  mp_s(&m, "i8"), msgpack_pack_fix_int8(&m.pk, -128);
  mp_s(&m, "i16"), msgpack_pack_fix_int16(&m.pk, -32768);
  mp_s(&m, "i32"), msgpack_pack_fix_int32(&m.pk, INT32_MIN);
  mp_s(&m, "i64"), msgpack_pack_fix_int64(&m.pk, INT64_MIN);
  mp_s(&m, "i64m"), msgpack_pack_fix_int64(&m.pk, -1);
  mp_s(&m, "i8p"), msgpack_pack_fix_int8(&m.pk, 5); /* signed type, sign clear */
  mp_s(&m, "i64p"), msgpack_pack_fix_int64(&m.pk, INT64_MAX);
  mp_s(&m, "i16m"), msgpack_pack_fix_int16(&m.pk, -129);
  CHECK_EQ(mp_parse(&b, &m), SPIKE_OK);
  msgpack_sbuffer_destroy(&m.sb);
  CHECK_EQ(b.n, 16);
  static const struct {
    const char *name;
    uint64_t u;
  } us[] = {{"p0", 0},      {"p7f", 127},         {"u8", 200},
            {"u16", 60000}, {"u32", 4000000000u}, {"u64", UINT64_MAX},
            {"i8p", 5},     {"i64p", INT64_MAX}};
  for (size_t k = 0; k < sizeof(us) / sizeof(us[0]); k++) {
    const body_field *f = fld(&b, us[k].name);
    CHECK(f != NULL && f->type == BODY_UINT && f->u == us[k].u);
  }
  static const struct {
    const char *name;
    int64_t i;
  } is[] = {{"n1", -1},         {"n32", -32},       {"i8", -128}, {"i16", -32768},
            {"i32", INT32_MIN}, {"i64", INT64_MIN}, {"i64m", -1}, {"i16m", -129}};
  for (size_t k = 0; k < sizeof(is) / sizeof(is[0]); k++) {
    const body_field *f = fld(&b, is[k].name);
    CHECK(f != NULL && f->type == BODY_NEGINT && f->i == is[k].i);
  }
  uint64_t u;
  int64_t i;
  const char *field;
  CHECK_EQ(body_u64(&b, "u64", 1, 0, UINT64_MAX, &u, NULL, &field), SPIKE_OK);
  CHECK(u == UINT64_MAX);
  CHECK_EQ(body_i64(&b, "u64", 1, INT64_MIN, INT64_MAX, &i, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_i64(&b, "i64", 1, INT64_MIN, INT64_MAX, &i, NULL, &field), SPIKE_OK);
  CHECK(i == INT64_MIN);
  CHECK_EQ(body_u64(&b, "i8", 1, 0, UINT64_MAX, &u, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "i8") == 0);
}

static void msgpack_strs_and_others(void) {
  body b;
  mp m;
  char long_s[70000];
  memset(long_s, 'x', sizeof(long_s));
  mp_init(&m);
  msgpack_pack_map(&m.pk, 16);
  mp_s(&m, "fix"), mp_s(&m, "h\xc3\xa9");
  mp_s(&m, "s8"), msgpack_pack_str(&m.pk, 40), msgpack_pack_str_body(&m.pk, long_s, 40);
  mp_s(&m, "s16"), msgpack_pack_str(&m.pk, 300), msgpack_pack_str_body(&m.pk, long_s, 300);
  mp_s(&m, "s32"), mp_raw(&m, "\xdb\0\0\0\003abc", 8);
  mp_s(&m, "f32"), msgpack_pack_float(&m.pk, 1.5f);
  mp_s(&m, "f64"), msgpack_pack_double(&m.pk, 2.5);
  mp_s(&m, "nil"), msgpack_pack_nil(&m.pk);
  mp_s(&m, "t"), msgpack_pack_true(&m.pk);
  mp_s(&m, "f"), msgpack_pack_false(&m.pk);
  mp_s(&m, "bin"), msgpack_pack_bin(&m.pk, 3), msgpack_pack_bin_body(&m.pk, "\xff\x00\x01", 3);
  mp_s(&m, "arr"), msgpack_pack_array(&m.pk, 3), msgpack_pack_int(&m.pk, 1), mp_s(&m, "x"),
      msgpack_pack_array(&m.pk, 0);
  mp_s(&m, "map"), msgpack_pack_map(&m.pk, 2), msgpack_pack_int(&m.pk, 1), /* any key type */
      msgpack_pack_nil(&m.pk), mp_s(&m, "k"), msgpack_pack_map(&m.pk, 1), mp_s(&m, "a"),
      msgpack_pack_double(&m.pk, 0);
  mp_s(&m, "ext"), msgpack_pack_ext(&m.pk, 3, 7), msgpack_pack_ext_body(&m.pk, "abc", 3);
  mp_s(&m, "fx1"), msgpack_pack_ext(&m.pk, 1, -1), msgpack_pack_ext_body(&m.pk, "a", 1);
  mp_s(&m, "fx16"), msgpack_pack_ext(&m.pk, 16, 1), msgpack_pack_ext_body(&m.pk, long_s, 16);
  mp_s(&m, "e"), mp_s(&m, "");
  CHECK_EQ(mp_parse(&b, &m), SPIKE_OK);
  CHECK_EQ(b.n, 16);
  CHECK(str_is(&b, "fix", "h\xc3\xa9", 3));
  CHECK(str_is(&b, "s8", long_s, 40));
  CHECK(str_is(&b, "s16", long_s, 300));
  CHECK(str_is(&b, "s32", "abc", 3));
  CHECK(str_is(&b, "e", "", 0));
  static const char *const others[] = {"f32", "f64", "nil", "t",   "f",   "bin",
                                       "arr", "map", "ext", "fx1", "fx16"};
  for (size_t k = 0; k < sizeof(others) / sizeof(others[0]); k++)
    CHECK_EQ(fld(&b, others[k])->type, BODY_OTHER);
  const char *field, *s;
  size_t len;
  uint64_t u;
  CHECK_EQ(body_str(&b, "bin", 1, 0, 64, &s, &len, NULL, &field), SPIKE_EINVAL);
  CHECK_EQ(body_u64(&b, "f64", 1, 0, 64, &u, NULL, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "f64") == 0);

  /* every proper prefix is truncated */
  for (size_t n = 1; n < m.sb.size; n++)
    CHECK_EQ(parse(1, &b, m.sb.data, n), SPIKE_EBADBODY);
  msgpack_sbuffer_destroy(&m.sb);

  /* str32 of 65536+ bytes, packed by msgpack-c itself */
  mp_init(&m);
  msgpack_pack_map(&m.pk, 1);
  mp_s(&m, "big");
  msgpack_pack_str(&m.pk, sizeof(long_s) - 1000);
  msgpack_pack_str_body(&m.pk, long_s, sizeof(long_s) - 1000);
  CHECK_EQ(m.sb.data[5], (char)0xdb);
  CHECK_EQ(mp_parse(&b, &m), SPIKE_OK);
  CHECK_EQ(fld(&b, "big")->s_len, sizeof(long_s) - 1000);
  msgpack_sbuffer_destroy(&m.sb);
}

static void msgpack_invalid(void) {
  body b;
  /* not a map at the top */
  CHECK_EQ(PM_RAW(&b, "\x90"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\xa1x"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\xc0"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\xdc\x00\x00"), SPIKE_EBADBODY);
  /* keys must be strings */
  CHECK_EQ(PM_RAW(&b, "\x81\x01\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xc4\x01k\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xc0\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\x90\x01"), SPIKE_EBADBODY);
  /* the never-used byte, anywhere */
  CHECK_EQ(PM_RAW(&b, "\xc1"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xc1"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\x91\xc1"), SPIKE_EBADBODY);
  /* invalid UTF-8 in keys and strings, top level or nested */
  CHECK_EQ(PM_RAW(&b, "\x81\xa1\xff\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xa1\x80"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xa3\xed\xa0\x80"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xa2\xc0\xaf"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xa2\xe2\x82"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\x91\xa1\xfe"), SPIKE_EBADBODY);
  /* control characters are valid at parse, refused by body_str */
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xa2\n\x7f"), SPIKE_OK);
  const char *s, *field;
  size_t len;
  CHECK_EQ(body_str(&b, "k", 1, 0, 9, &s, &len, NULL, &field), SPIKE_EINVAL);
  /* trailing bytes */
  CHECK_EQ(PM_RAW(&b, "\x80\x00"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\x01\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x80\x80"), SPIKE_EBADBODY);
  /* lengths past the input, up to 2^32 - 1 */
  CHECK_EQ(PM_RAW(&b, "\xdf\xff\xff\xff\xff"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xdd\xff\xff\xff\xff\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xdf\xff\xff\xff\xff\x01\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xdb\xff\xff\xff\xffxyz"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xc6\xff\xff\xff\xffxyz"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xc9\xff\xff\xff\xff\x01xyz"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xc7\x03\x01xy"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xd8\x01xyz"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xcb\x00\x00"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k\xcf\x00\x00\x00\x00\x00\x00\x00"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x82\xa1k\x01"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa1k"), SPIKE_EBADBODY);
  CHECK_EQ(PM_RAW(&b, "\x81\xa2k"), SPIKE_EBADBODY);
}

static void msgpack_limits(void) {
  body b;
  mp m;
  for (int fields = BODY_FIELDS_MAX; fields <= BODY_FIELDS_MAX + 1; fields++) {
    mp_init(&m);
    msgpack_pack_map(&m.pk, (size_t)fields);
    for (int k = 0; k < fields; k++) {
      char name[16];
      sprintf(name, "f%d", k);
      mp_s(&m, name);
      msgpack_pack_int(&m.pk, k);
    }
    CHECK_EQ(mp_parse(&b, &m), fields <= BODY_FIELDS_MAX ? SPIKE_OK : SPIKE_EINVAL);
    msgpack_sbuffer_destroy(&m.sb);
  }
  for (int depth = 1; depth <= 40; depth++) {
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_s(&m, "a");
    for (int k = 1; k < depth; k++)
      msgpack_pack_array(&m.pk, 1);
    msgpack_pack_array(&m.pk, 0);
    CHECK_EQ(mp_parse(&b, &m), depth <= 16 ? SPIKE_OK : SPIKE_EINVAL);
    msgpack_sbuffer_destroy(&m.sb);
  }
  /* repeats are the caller's to refuse, as in JSON */
  CHECK_EQ(PM_RAW(&b, "\x82\xa1k\x01\xa1k\x02"), SPIKE_OK);
  static const char *const allowed[] = {"k", NULL};
  const char *field;
  CHECK_EQ(body_only(&b, allowed, &field), SPIKE_EINVAL);
  CHECK(strcmp(field, "k") == 0);
}

/* Byte flips over valid bodies of both kinds: no crash, and what parses
 * keeps the invariants. SPIKE_SEED replays a run. */
static void mutations(void) {
  static const char s0[] = "{\"user_id\":\"42\",\"qty\":1,\"request_id\":\"abc\"}";
  static const char s1[] =
      "{\"a\":[1,{\"b\":\"\\u00e9\\ud83d\\ude00\"}],\"n\":-9223372036854775808,\"f\":1.5e3}";
  static const char s2[] = "\203\247user_id\24242\243qty\001\252request_id\243abc";
  static const char s3[] = "\202\241a\222\315\001\000\201\241k\300\241n\323\200\0\0\0\0\0\0\0";
  static const struct {
    const char *s;
    size_t n;
  } seeds[] = {
      {s0, sizeof(s0) - 1}, {s1, sizeof(s1) - 1}, {s2, sizeof(s2) - 1}, {s3, sizeof(s3) - 1}};
  body b;
  for (size_t k = 0; k < 4; k++)
    CHECK_EQ(parse(k >= 2, &b, seeds[k].s, seeds[k].n), SPIKE_OK);
  uint64_t st = test_seed();
  char buf[256];
  for (int iter = 0; iter < 200000; iter++) {
    size_t pick = test_rand(&st) % 4, n = seeds[pick].n;
    memcpy(buf, seeds[pick].s, n);
    for (int k = (int)(test_rand(&st) % 4); k >= 0; k--)
      buf[test_rand(&st) % n] = test_rand(&st) % 4 ? (char)test_rand(&st) : "{}[]\",:\\"[k];
    if (test_rand(&st) % 8 == 0) n = test_rand(&st) % n;
    for (int msgpack = 0; msgpack < 2; msgpack++) {
      if (parse(msgpack, &b, buf, n) != SPIKE_OK) continue;
      const char *in = area_in + AREA_BYTES - n, *sc = area_scratch + AREA_BYTES - n;
      for (uint32_t k = 0; k < b.n; k++) {
        const body_field *f = &b.f[k];
        CHECK(within(f->name, f->name_len, in, n) || within(f->name, f->name_len, sc, n));
        if (f->type == BODY_STR)
          CHECK(within(f->s, f->s_len, in, n) || within(f->s, f->s_len, sc, n));
      }
    }
  }
}

TEST_LIST({"guard_page_bites", guard_page_bites, 0}, {"json_api_bodies", json_api_bodies, 0},
          {"json_empty", json_empty, 0}, {"json_escapes", json_escapes, 0},
          {"json_invalid", json_invalid, 0}, {"json_nested", json_nested, 0},
          {"json_depth_and_tokens", json_depth_and_tokens, 0},
          {"json_fields_max", json_fields_max, 0}, {"json_numbers", json_numbers, 0},
          {"json_prefixes", json_prefixes, 0}, {"getter_u64", getter_u64, 0},
          {"getter_i64", getter_i64, 0}, {"getter_str", getter_str, 0},
          {"only_and_repeats", only_and_repeats, 0}, {"msgpack_api_body", msgpack_api_body, 0},
          {"msgpack_ints", msgpack_ints, 0},
          {"msgpack_strs_and_others", msgpack_strs_and_others, 0},
          {"msgpack_invalid", msgpack_invalid, 0}, {"msgpack_limits", msgpack_limits, 0},
          {"mutations", mutations, 0})

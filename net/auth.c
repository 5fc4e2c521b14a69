/*
 * auth.c -- bearer tokens. The admin token is compared in constant time;
 * JWTs are verified with libjwt, which checks the HMAC. libjwt 1.10 does not
 * pin the algorithm or check exp itself, so both are checked here: only
 * HS256 is accepted (never "none"), a token without exp is refused, one
 * whose nbf is still ahead too, and so is a sub of 0 (no user). The claims
 * read here may each appear once, named plainly (claims_once).
 */
#define JSMN_STATIC
#define JSMN_STRICT
#include "auth.h"

#include <errno.h>
#include <jsmn.h>
#include <jwt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "router.h"
#include "spike.h"

int auth_equal(const char *a, size_t an, const char *b, size_t bn) {
  /* Compare over the longer length so the time leaks only the lengths. */
  size_t n = an > bn ? an : bn;
  unsigned char diff = an != bn;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = i < an ? (unsigned char)a[i] : 0;
    unsigned char y = i < bn ? (unsigned char)b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

/* base64url without padding (RFC 7515 §2) into out; its length, or -1. */
static long b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap) {
  size_t len = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = in[i];
    int v = ch >= 'A' && ch <= 'Z'   ? ch - 'A'
            : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26
            : ch >= '0' && ch <= '9' ? ch - '0' + 52
            : ch == '-'              ? 62
            : ch == '_'              ? 63
                                     : -1;
    if (v < 0) return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (len == cap) return -1;
      out[len++] = (unsigned char)(acc >> bits);
    }
  }
  return (long)len;
}

/* The claims spiked reads (sub, exp, nbf) each appear at most once in the
 * payload, with names written plainly. libjwt keeps the last of a repeated
 * claim: a gateway that read the first would have vetted another user, as
 * with a body's repeated field. 0 when so. */
static int claims_once(const char *tok, size_t n) {
  const char *dot1 = memchr(tok, '.', n);
  if (dot1 == NULL) return -1;
  const char *p = dot1 + 1;
  const char *dot2 = memchr(p, '.', n - (size_t)(p - tok));
  if (dot2 == NULL) return -1;
  static _Thread_local unsigned char js[AUTH_TOKEN_MAX];
  static _Thread_local jsmntok_t t[AUTH_TOKEN_MAX / 2]; /* a token per two bytes at most */
  long len = b64url_decode(p, (size_t)(dot2 - p), js, sizeof(js));
  if (len <= 0) return -1;
  jsmn_parser jp;
  jsmn_init(&jp);
  int nt = jsmn_parse(&jp, (const char *)js, (size_t)len, t, sizeof(t) / sizeof(t[0]));
  if (nt < 1 || t[0].type != JSMN_OBJECT) return -1;
  int seen[3] = {0, 0, 0};
  static const char *const names[3] = {"sub", "exp", "nbf"};
  for (int i = 1; i < nt;) {
    const jsmntok_t *k = &t[i];
    if (k->type != JSMN_STRING) return -1;
    const char *kp = (const char *)js + k->start;
    size_t kl = (size_t)(k->end - k->start);
    /* An escaped name could spell one of ours ("s\u0075b"): refused, as
     * long as it is short enough to (three \uXXXX escapes at most, 18
     * bytes); a long one ("https:\/\/example.com\/roles") cannot. */
    if (kl <= 18 && memchr(kp, '\\', kl) != NULL) return -1;
    for (int c = 0; c < 3; c++)
      if (kl == 3 && memcmp(kp, names[c], 3) == 0 && seen[c]++ > 0) return -1;
    /* the value, and everything inside it */
    int v = i + 1;
    if (v >= nt) return -1;
    int end = t[v].end;
    for (i = v + 1; i < nt && t[i].start < end; i++) {}
  }
  return 0;
}

/* A NumericDate claim (RFC 7519 §2: seconds, possibly with a fraction);
 * ENOENT when absent, EINVAL when not a number. Whole seconds, rounded
 * down. Read from the claim's JSON: libjwt's integer getter gives 0 for a
 * number with a fraction, and no error. */
static int numeric_date(jwt_t *jwt, const char *name, long *out) {
  errno = 0;
  (void)jwt_get_grant_int(jwt, name);
  if (errno == ENOENT) return ENOENT;
  char *json = jwt_get_grants_json(jwt, name);
  if (json == NULL) return EINVAL;
  char *end;
  errno = 0;
  double d = strtod(json, &end);
  int bad = errno != 0 || end == json || *end != '\0' || !isfinite(d) || d < 0 || d > 1e15;
  free(json);
  if (bad) return EINVAL;
  *out = (long)floor(d);
  return 0;
}

static int verify_jwt(const auth_config *a, const char *tok, size_t n, int64_t now_s,
                      uint64_t *user) {
  char buf[AUTH_TOKEN_MAX + 1];
  if (n > AUTH_TOKEN_MAX || a->jwt_secret == NULL) return SPIKE_ETOKEN;
  memcpy(buf, tok, n);
  buf[n] = '\0';
  jwt_t *jwt = NULL;
  if (jwt_decode(&jwt, buf, (const unsigned char *)a->jwt_secret,
                 (int)strlen(a->jwt_secret)) != 0 || jwt == NULL)
    return SPIKE_ETOKEN;
  int status = SPIKE_ETOKEN;
  if (jwt_get_alg(jwt) != JWT_ALG_HS256) goto out;
  if (claims_once(buf, n) != 0) goto out;
  long exp, nbf;
  if (numeric_date(jwt, "exp", &exp) != 0 || exp <= now_s) goto out;
  /* nbf is optional; when given, a number, and not before it (RFC 7519 §4.1.5) */
  int rc = numeric_date(jwt, "nbf", &nbf);
  if (rc != ENOENT && (rc != 0 || nbf > now_s)) goto out;
  const char *sub = jwt_get_grant(jwt, "sub");
  uint64_t uid;
  if (sub != NULL) {
    if (router_parse_u64(sub, strlen(sub), &uid) != 0) goto out;
  } else {
    /* a number: as JSON wrote it (libjwt's integers stop at 2^63 - 1) */
    char *json = jwt_get_grants_json(jwt, "sub");
    int bad = json == NULL || router_parse_u64(json, strlen(json), &uid) != 0;
    free(json);
    if (bad) goto out;
  }
  if (uid == 0) goto out; /* no user is 0 */
  *user = uid;
  status = SPIKE_OK;
out:
  jwt_free(jwt);
  return status;
}

int auth_identify(const auth_config *a, const char *hdr, size_t len, int64_t now_s, who *w,
                  uint64_t *user) {
  *w = WHO_NOBODY;
  if (hdr == NULL) return SPIKE_OK;
  if (len < 7 || strncasecmp(hdr, "Bearer ", 7) != 0) return SPIKE_ETOKEN;
  const char *tok = hdr + 7;
  size_t n = len - 7;
  while (n > 0 && *tok == ' ') tok++, n--;
  while (n > 0 && tok[n - 1] == ' ') n--;
  if (n == 0) return SPIKE_ETOKEN;
  if (a->admin_token != NULL && a->admin_token[0] != '\0' &&
      auth_equal(tok, n, a->admin_token, strlen(a->admin_token))) {
    *w = WHO_ADMIN;
    return SPIKE_OK;
  }
  if (a->feed_token != NULL && a->feed_token[0] != '\0' &&
      auth_equal(tok, n, a->feed_token, strlen(a->feed_token))) {
    *w = WHO_FEED;
    return SPIKE_OK;
  }
  if (a->mode != AUTH_JWT) return SPIKE_ETOKEN;
  int rc = verify_jwt(a, tok, n, now_s, user);
  if (rc == SPIKE_OK) *w = WHO_USER;
  return rc;
}

int auth_admin(const auth_config *a, who w, int hdr_present, int identify_status, int feed_route) {
  int configured = a->admin_token != NULL && a->admin_token[0] != '\0';
  if (w == WHO_FEED) return feed_route ? SPIKE_OK : SPIKE_EFORBIDDEN;
  /* Open on loopback, but a credential that was sent and does not verify
   * is refused there too: the client would meet the same 401 elsewhere. */
  if (!configured && hdr_present && identify_status != SPIKE_OK) return identify_status;
  if (!configured) return a->loopback ? SPIKE_OK : SPIKE_EFORBIDDEN;
  if (w == WHO_ADMIN) return SPIKE_OK;
  if (identify_status != SPIKE_OK) return SPIKE_ETOKEN;
  if (!hdr_present) return SPIKE_ENOCREDS;
  return SPIKE_EFORBIDDEN; /* a valid user token on an admin route */
}

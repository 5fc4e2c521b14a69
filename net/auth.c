/*
 * auth.c -- bearer tokens. The admin token is compared in constant time;
 * JWTs are verified with libjwt, which checks the HMAC. libjwt 1.10 does not
 * pin the algorithm or check exp itself, so both are checked here: only
 * HS256 is accepted (never "none"), a token without exp is refused, one
 * whose nbf is still ahead too, and so is a sub of 0 (no user).
 */
#include "auth.h"

#include <errno.h>
#include <jwt.h>
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
  errno = 0;
  long exp = jwt_get_grant_int(jwt, "exp");
  if (errno != 0 || exp <= now_s) goto out;
  errno = 0; /* nbf is optional; when given, a number, and not before it (RFC 7519 §4.1.5) */
  long nbf = jwt_get_grant_int(jwt, "nbf");
  if (errno != ENOENT && (errno != 0 || nbf > now_s)) goto out;
  const char *sub = jwt_get_grant(jwt, "sub");
  uint64_t uid;
  if (sub != NULL) {
    if (router_parse_u64(sub, strlen(sub), &uid) != 0) goto out;
  } else {
    errno = 0;
    long v = jwt_get_grant_int(jwt, "sub");
    if (errno != 0 || v < 0) goto out;
    uid = (uint64_t)v;
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

/*
 * auth.c -- bearer tokens. The admin token is compared in constant time;
 * JWTs are verified with libjwt, which checks the HMAC. libjwt 1.10 does not
 * pin the algorithm or check exp itself, so both are checked here: only
 * HS256 is accepted (never "none"), a token without exp is refused, one
 * whose nbf is still ahead too, and so is a sub of 0 (no user). The claims
 * and header members read here may each appear once, named plainly
 * (read_members).
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

#include "log.h"
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

enum { CLAIM_SUB, CLAIM_EXP, CLAIM_NBF, CLAIMS };

/* A member's value as the token writes it: JSON text, and jsmn's type (0:
 * the member is absent). Points into a thread's own buffer, good until its
 * next read_members. */
typedef struct claim {
  const char *p;
  size_t len;
  int type;
} claim;

/* Read the members named in names (nnames of them, each of 3 or 4 letters)
 * from one of the token's parts (its base64url text, seg..seg + n), which
 * libjwt has already decoded and checked, so both parsers read the same
 * bytes. Each may appear once, named plainly: libjwt keeps the last of a
 * repeated member, and a gateway that read the first would have vetted
 * another token (as with a body's repeated field). 0, or -1 when the part
 * breaks that. out points into a thread's own buffer, good until the next
 * call. */
static int read_members(const char *seg, size_t n, const char *const *names, int nnames,
                        claim *out) {
  memset(out, 0, sizeof(claim) * (size_t)nnames);
  static _Thread_local unsigned char js[AUTH_TOKEN_MAX];
  static _Thread_local jsmntok_t t[AUTH_TOKEN_MAX / 2]; /* a token per two bytes at most */
  long len = b64url_decode(seg, n, js, sizeof(js));
  if (len <= 0) return -1;
  jsmn_parser jp;
  jsmn_init(&jp);
  int nt = jsmn_parse(&jp, (const char *)js, (size_t)len, t, sizeof(t) / sizeof(t[0]));
  if (nt < 1 || t[0].type != JSMN_OBJECT) return -1;
  for (int i = 1; i < nt;) {
    const jsmntok_t *k = &t[i];
    if (k->type != JSMN_STRING) return -1;
    const char *kp = (const char *)js + k->start;
    size_t kl = (size_t)(k->end - k->start);
    /* An escaped name might spell one of ours ("s\u0075b"). A \u escape
     * takes 6 bytes a letter, so only names of up to 24 bytes could spell
     * one of four letters: those are refused, a longer one
     * ("https:\/\/example.com\/roles") is not. */
    if (kl <= 24 && memchr(kp, '\\', kl) != NULL) return -1;
    int v = i + 1;
    if (v >= nt) return -1;
    for (int c = 0; c < nnames; c++) {
      if (kl != strlen(names[c]) || memcmp(kp, names[c], kl) != 0) continue;
      if (out[c].type != 0) return -1; /* given twice */
      out[c] = (claim){(const char *)js + t[v].start, (size_t)(t[v].end - t[v].start), t[v].type};
    }
    /* past the value, and everything inside it */
    int end = t[v].end;
    for (i = v + 1; i < nt && t[i].start < end; i++) {}
  }
  return 0;
}

/* The header (its base64url text): alg exactly "HS256" (RFC 7515 §4.1.1:
 * case-sensitive), once; no crit (it names extensions a receiver must
 * understand, and we know none: §4.1.11); typ, if given, a string (libjwt
 * refuses one but "JWT"). 0 or -1. */
static int check_header(const char *seg, size_t n) {
  static const char *const names[] = {"alg", "crit", "typ"};
  claim h[3];
  if (read_members(seg, n, names, 3, h) != 0) return -1;
  if (h[0].type != JSMN_STRING || h[0].len != 5 || memcmp(h[0].p, "HS256", 5) != 0) return -1;
  if (h[1].type != 0) return -1;
  if (h[2].type != 0 && h[2].type != JSMN_STRING) return -1;
  return 0;
}

/* A user id as sub writes it: decimal digits, no leading zero (as a body's
 * ids: "01013" and "1013" would be one user under two names). 0 or -1. */
static int sub_id(const char *p, size_t n, uint64_t *uid) {
  if (n > 1 && p[0] == '0') return -1;
  return router_parse_u64(p, n, uid);
}

/* A NumericDate (RFC 7519 §2: seconds, possibly with a fraction) in whole
 * seconds, rounded down; -1 when the claim is not a number. */
static int numeric_date(const claim *c, long *out) {
  char num[32];
  if (c->type != JSMN_PRIMITIVE || c->len == 0 || c->len >= sizeof(num)) return -1;
  memcpy(num, c->p, c->len);
  num[c->len] = '\0';
  char *end;
  errno = 0;
  double d = strtod(num, &end);
  if (errno != 0 || *end != '\0' || !isfinite(d) || d < 0 || d > 1e15) return -1;
  *out = (long)floor(d);
  return 0;
}

/* *why: what refused the token, for the debug log (the client hears only
 * 401 invalid_token, as RFC 6750 has it: no oracle for a forger). */
static int verify_jwt(const auth_config *a, const char *tok, size_t n, int64_t now_s,
                      uint64_t *user, const char **why) {
  char buf[AUTH_TOKEN_MAX + 1];
  *why = "longer than 8 KiB, or no --jwt-secret";
  if (n > AUTH_TOKEN_MAX || a->jwt_secret == NULL) return SPIKE_ETOKEN;
  memcpy(buf, tok, n);
  buf[n] = '\0';
  jwt_t *jwt = NULL;
  *why = "not a JWT libjwt reads, or its signature does not verify (or typ is not JWT)";
  if (jwt_decode(&jwt, buf, (const unsigned char *)a->jwt_secret,
                 (int)strlen(a->jwt_secret)) != 0 || jwt == NULL)
    return SPIKE_ETOKEN;
  int status = SPIKE_ETOKEN;
  /* libjwt read three parts: header.payload.signature */
  const char *dot1 = memchr(buf, '.', n);
  const char *dot2 = dot1 != NULL ? memchr(dot1 + 1, '.', n - (size_t)(dot1 + 1 - buf)) : NULL;
  *why = "not three parts";
  if (dot2 == NULL) goto out;
  *why = "alg is not HS256 (exactly, once), or the header has crit or a typ not a string";
  if (jwt_get_alg(jwt) != JWT_ALG_HS256 || check_header(buf, (size_t)(dot1 - buf)) != 0) goto out;
  /* sub, exp and nbf from the payload's text: libjwt's integer getter
   * gives 0, and no error, for a number with a fraction */
  static const char *const names[CLAIMS] = {"sub", "exp", "nbf"};
  claim cl[CLAIMS];
  long exp, nbf;
  *why = "sub, exp or nbf given twice, or its name escaped";
  if (read_members(dot1 + 1, (size_t)(dot2 - dot1 - 1), names, CLAIMS, cl) != 0) goto out;
  *why = "exp missing, not a NumericDate, or past";
  if (numeric_date(&cl[CLAIM_EXP], &exp) != 0 || exp <= now_s) goto out;
  /* nbf is optional; when given, a number, and not before it (RFC 7519 §4.1.5) */
  *why = "nbf not a NumericDate, or not yet";
  if (cl[CLAIM_NBF].type != 0 && (numeric_date(&cl[CLAIM_NBF], &nbf) != 0 || nbf > now_s)) goto out;
  const char *sub = jwt_get_grant(jwt, "sub");
  uint64_t uid;
  *why = "sub missing, or not a user id (digits, no leading zero, 1 .. 2^64 - 1)";
  if (sub != NULL) {
    if (sub_id(sub, strlen(sub), &uid) != 0) goto out;
  } else {
    /* a number, as the payload writes it (libjwt's integers stop at 2^63 - 1) */
    if (cl[CLAIM_SUB].type != JSMN_PRIMITIVE ||
        sub_id(cl[CLAIM_SUB].p, cl[CLAIM_SUB].len, &uid) != 0)
      goto out;
  }
  if (uid == 0) goto out; /* no user is 0 */
  *user = uid;
  *why = NULL;
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
  const char *why;
  int rc = verify_jwt(a, tok, n, now_s, user, &why);
  if (rc == SPIKE_OK) *w = WHO_USER;
  else if (log_enabled(LOG_DEBUG))
    log_line(LOG_DEBUG, "auth", NULL, NULL, "bearer token refused: %s", why);
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

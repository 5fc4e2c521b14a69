/*
 * mint.c -- per-user HS256 tokens (see mint.h). One jwt_t is kept and only
 * its "sub" grant replaced between tokens, which halves libjwt's work per
 * token; the cache is a plain array indexed by user modulo its size.
 */
#define _GNU_SOURCE
#include "mint.h"

#include <inttypes.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int mint_init(mint *m, const char *secret, int64_t exp_s, size_t nslots) {
  memset(m, 0, sizeof(*m));
  size_t sl = secret ? strlen(secret) : 0;
  if (sl == 0 || sl >= sizeof(m->secret) || nslots > MINT_SLOTS_MAX) return -1;
  memcpy(m->secret, secret, sl + 1);
  m->secret_len = sl;
  m->exp_s = exp_s;
  jwt_t *j = NULL;
  if (jwt_new(&j) != 0 || j == NULL) return -1;
  if (jwt_add_grant_int(j, "exp", (long)exp_s) != 0 ||
      jwt_set_alg(j, JWT_ALG_HS256, (const unsigned char *)m->secret, (int)sl) != 0) {
    jwt_free(j);
    return -1;
  }
  m->jwt = j;
  if (nslots > 0) {
    m->slots = calloc(nslots, sizeof(mint_slot));
    if (m->slots == NULL) {
      mint_free(m);
      return -1;
    }
    m->nslots = nslots;
  }
  return 0;
}

/* Sign a token for user into dst; its length, or 0. */
static size_t sign(mint *m, uint64_t user, char *dst) {
  char sub[24];
  snprintf(sub, sizeof(sub), "%" PRIu64, user);
  jwt_t *j = m->jwt;
  uint64_t t = mono_ns();
  jwt_del_grants(j, "sub");
  char *tok = jwt_add_grant(j, "sub", sub) == 0 ? jwt_encode_str(j) : NULL;
  m->mint_ns += mono_ns() - t;
  if (tok == NULL) return 0;
  size_t n = strlen(tok);
  if (n >= MINT_TOKEN_BYTES)
    n = 0;
  else
    memcpy(dst, tok, n + 1);
  free(tok);
  if (n > 0) m->minted++;
  return n;
}

const char *mint_token(mint *m, uint64_t user, size_t *len) {
  if (m->nslots == 0) {
    *len = sign(m, user, m->scratch);
    return *len ? m->scratch : NULL;
  }
  mint_slot *s = &m->slots[user % m->nslots];
  if (s->len > 0 && s->user == user) {
    m->hits++;
    *len = s->len;
    return s->tok;
  }
  size_t n = sign(m, user, s->tok);
  s->len = (uint16_t)n;
  s->user = user;
  *len = n;
  return n ? s->tok : NULL;
}

void mint_free(mint *m) {
  if (m->jwt != NULL) jwt_free(m->jwt);
  free(m->slots);
  m->jwt = NULL;
  m->slots = NULL;
  m->nslots = 0;
}

/*
 * auth.h -- who is calling: the admin (a bearer token compared in constant
 * time), a user (an HS256 JWT whose sub is the user id, exp enforced, with
 * --auth jwt), or nobody in particular.
 */
#ifndef SPIKE_AUTH_H
#define SPIKE_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKEN_MAX 4096

typedef enum auth_mode { AUTH_NONE = 0, AUTH_JWT = 1 } auth_mode;

typedef struct auth_config {
  auth_mode mode;
  const char *jwt_secret;  /* AUTH_JWT */
  const char *admin_token; /* NULL or "" when none is configured */
  int loopback;            /* the server listens on loopback only */
  const char *feed_token;  /* read-only: the change feed and nothing else */
} auth_config;

/* WHO_FEED: the feed token's bearer, who may read the change feed and is
 * nobody in particular everywhere else. */
typedef enum who { WHO_NOBODY = 0, WHO_USER, WHO_ADMIN, WHO_FEED } who;

/*
 * Identify the caller from an Authorization header value (NULL when the
 * header is absent). Returns SPIKE_OK with *w (and *user for WHO_USER), or
 * SPIKE_ETOKEN when a bearer token was given but is neither the admin
 * token nor (with AUTH_JWT) a valid, unexpired JWT. now_s: unix seconds.
 */
int auth_identify(const auth_config *a, const char *hdr, size_t len, int64_t now_s, who *w,
                  uint64_t *user);

/* The admin routes' rule: SPIKE_OK, or the status to answer (20001 no
 * credentials, 20005 bad token, 20006 a user or the feed token, or no
 * admin token configured off loopback). hdr_present: an Authorization
 * header was sent. feed_route: the route is the change feed, which the
 * feed token may read too. */
int auth_admin(const auth_config *a, who w, int hdr_present, int identify_status, int feed_route);

/* Constant-time equality of two byte strings (the time depends only on
 * their lengths). 1 when equal. */
int auth_equal(const char *a, size_t an, const char *b, size_t bn);

#endif /* SPIKE_AUTH_H */

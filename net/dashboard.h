/*
 * dashboard.h -- the files of the live page, compiled in.
 */
#ifndef SPIKE_DASHBOARD_H
#define SPIKE_DASHBOARD_H

#include <stddef.h>

#include "router.h"

/* The headers every file of the page is sent with: same-origin scripts,
 * styles and fetches only, nothing framed, no type sniffing. (They and
 * finish()'s own headers must fit RESP_HEAD_ROOM: api.c asserts it.) */
#define DASHBOARD_HEADERS                                                                          \
  "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "             \
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"            \
  "X-Content-Type-Options: nosniff\r\n"

/* File a (static storage, not NUL-counted in *len) and its Content-Type. */
void dashboard_asset(router_asset a, const char **body, size_t *len, const char **ctype);

#endif /* SPIKE_DASHBOARD_H */

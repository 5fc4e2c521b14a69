/*
 * verify.c -- the post-run checks of --verify (see verify.h). The checks
 * that need only numbers are kept apart from the reads, so they can be
 * tested against hand-made books and snapshots; the reads are plain
 * blocking sockets with llhttp, since they run outside the load.
 */
#define _GNU_SOURCE
#include "verify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/time.h>
#include <unistd.h>

#include <llhttp.h>

#include "js.h"
#include "text.h"
#include "mint.h"

/* ---- blocking HTTP ---------------------------------------------------------------- */

typedef struct bresp {
  int status, complete, truncated;
  size_t len, cap;
  char *body;
} bresp;

static int b_on_headers(llhttp_t *p) {
  ((bresp *)p->data)->status = p->status_code;
  return 0;
}

static int b_on_body(llhttp_t *p, const char *at, size_t n) {
  bresp *r = p->data;
  if (r->len + n >= r->cap) { /* one byte kept for the terminating NUL */
    r->truncated = 1;
    return 0;
  }
  memcpy(r->body + r->len, at, n);
  r->len += n;
  return 0;
}

static int b_on_complete(llhttp_t *p) {
  ((bresp *)p->data)->complete = 1;
  return HPE_PAUSED;
}

static char vbody[VF_BODY_BYTES];
static jsmntok_t vtoks[VF_TOKENS];

/* GET path over a new connection, as user (0: no token); 0 with r filled,
 * or -1 (why in err). */
static int http_get(const vf_target *t, const char *path, uint64_t user, bresp *r, char *err,
                    size_t errcap) {
  static char buf[16384];
  const sc_scenario *sc = t->sc;
  *r = (bresp){.body = vbody, .cap = sizeof(vbody)};
  char auth[MINT_TOKEN_BYTES + 40] = "";
  if (user != 0 && sc->jwt_secret != NULL) {
    mint m;
    size_t tl;
    const char *tok =
        mint_init(&m, sc->jwt_secret, sc->jwt_exp_s, 0) == 0 ? mint_token(&m, user, &tl) : NULL;
    if (tok == NULL) {
      sb_say(err, errcap, "cannot sign a token for user %" PRIu64, user);
      mint_free(&m);
      return -1;
    }
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s\r\n", tok);
    mint_free(&m);
  }
  char extra[SC_HEADERS_BYTES + 64];
  size_t el = sc_headers(sc, user, extra, sizeof(extra));
  if (el == 0 && sc->headers_len > 0) {
    sb_say(err, errcap, "--header lines too long");
    return -1;
  }
  int n = snprintf(buf, sizeof(buf), "GET %s HTTP/1.1\r\n%s%s%s%s%sConnection: close\r\n\r\n", path,
                   sc->host_given ? "" : "Host: ", sc->host_given ? "" : sc->host,
                   sc->host_given ? "" : "\r\n", extra, auth);
  if (n < 0 || (size_t)n >= sizeof(buf)) {
    sb_say(err, errcap, "request for %s too long", path);
    return -1;
  }
  int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    sb_say(err, errcap, "socket: %s", strerror(errno));
    return -1;
  }
  socklen_t alen =
      t->addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  struct timeval tv = {10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (connect(fd, (const struct sockaddr *)&t->addr, alen) != 0) {
    sb_say(err, errcap, "connect: %s", strerror(errno));
    close(fd);
    return -1;
  }
  if (send(fd, buf, (size_t)n, MSG_NOSIGNAL) != n) {
    sb_say(err, errcap, "send: %s", strerror(errno));
    close(fd);
    return -1;
  }
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_headers_complete = b_on_headers;
  s.on_body = b_on_body;
  s.on_message_complete = b_on_complete;
  llhttp_t p;
  llhttp_init(&p, HTTP_RESPONSE, &s);
  p.data = r;
  while (!r->complete) {
    ssize_t got = recv(fd, buf, sizeof(buf), 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (got == 0) llhttp_finish(&p);
      if (r->complete) break;
      sb_say(err, errcap, "%s", got == 0 ? "closed before the answer ended" : strerror(errno));
      close(fd);
      return -1;
    }
    llhttp_errno_t e = llhttp_execute(&p, buf, (size_t)got);
    if (e != HPE_OK && e != HPE_PAUSED) {
      sb_say(err, errcap, "bad answer: %s", llhttp_errno_name(e));
      close(fd);
      return -1;
    }
  }
  close(fd);
  if (r->truncated) {
    sb_say(err, errcap, "answer body larger than %zu bytes", r->cap);
    return -1;
  }
  r->body[r->len] = '\0'; /* for messages; the parsers take the length */
  return 0;
}

static size_t api_prefix(const vf_target *t) {
  size_t n = strlen(t->prefix);
  while (n > 0 && t->prefix[n - 1] == '/')
    n--;
  return n;
}

int vf_read_event(const vf_target *t, vf_event *e, char *err, size_t errcap) {
  char path[SC_TARGET_BYTES + 64];
  snprintf(path, sizeof(path), "%.*s/api/v1/events/%" PRIu64, (int)api_prefix(t), t->prefix,
           t->sc->event);
  bresp r;
  if (http_get(t, path, 0, &r, err, errcap) != 0) return -1;
  js_doc d;
  if (r.status != 200 || js_parse(&d, r.body, r.len, vtoks, VF_TOKENS) != 0) {
    sb_say(err, errcap, "GET %s answered %d: %.200s", path, r.status, r.body);
    return -1;
  }
  int data = js_key(&d, 0, "data");
  struct {
    const char *k;
    uint64_t *v;
  } f[] = {{"stock_total", &e->stock_total},
           {"available", &e->available},
           {"reserved", &e->reserved},
           {"sold", &e->sold},
           {"per_user_limit", &e->per_user_limit},
           {"pay_timeout_s", &e->pay_timeout_s}};
  for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
    if (js_u64(&d, js_key(&d, data, f[i].k), f[i].v) != 0) {
      sb_say(err, errcap, "GET %s: no \"%s\" in the event: %.200s", path, f[i].k, r.body);
      return -1;
    }
  e->state[0] = '\0';
  js_str(&d, js_key(&d, data, "state"), e->state, sizeof(e->state));
  return 0;
}

int64_t vf_read_expired(const vf_target *t) {
  static const char name[] = "\nspike_orders_expired_total ";
  char path[SC_TARGET_BYTES + 16], err[256];
  snprintf(path, sizeof(path), "%.*s/metrics", (int)api_prefix(t), t->prefix);
  bresp r;
  /* a page too long for the buffer still has this early line in it */
  if ((http_get(t, path, 0, &r, err, sizeof(err)) != 0 && !r.truncated) || r.status != 200)
    return -1;
  const char *at = memmem(r.body, r.len, name, sizeof(name) - 1);
  if (at == NULL) return -1;
  at += sizeof(name) - 1;
  int64_t n = 0;
  const char *end = r.body + r.len;
  if (at >= end || *at < '0' || *at > '9') return -1;
  for (; at < end && *at >= '0' && *at <= '9'; at++) n = n * 10 + (*at - '0');
  return n;
}

int vf_read_user_orders(const vf_target *t, uint64_t user, uint64_t order, uint64_t *live,
                        uint64_t *qty, int *found, char *err, size_t errcap) {
  char path[SC_TARGET_BYTES + 96];
  snprintf(path, sizeof(path), "%.*s/api/v1/users/%" PRIu64 "/orders?event_id=%" PRIu64,
           (int)api_prefix(t), t->prefix, user, t->sc->event);
  bresp r;
  if (http_get(t, path, user, &r, err, errcap) != 0) return -1;
  js_doc d;
  int arr = -1;
  if (js_parse(&d, r.body, r.len, vtoks, VF_TOKENS) == 0)
    arr = js_key(&d, js_key(&d, 0, "data"), "orders");
  if (r.status != 200 || arr < 0 || d.t[arr].type != JSMN_ARRAY) {
    sb_say(err, errcap, "GET %s answered %d: %.200s", path, r.status, r.body);
    return -1;
  }
  *live = *qty = 0;
  *found = 0;
  int i = arr + 1;
  for (int k = 0; k < d.t[arr].size && i < d.nt; k++) {
    uint64_t id = 0, q = 0;
    js_u64(&d, js_key(&d, i, "id"), &id);
    js_u64(&d, js_key(&d, i, "qty"), &q);
    int state = js_key(&d, i, "state");
    if (js_is(&d, state, "reserved") || js_is(&d, state, "paid")) {
      (*live)++;
      *qty += q;
    }
    if (id == order) *found = 1;
    i = js_skip(&d, i);
  }
  return 0;
}

/* ---- the checks --------------------------------------------------------------------- */

static void add_check(vf_report *rep, const char *name, int ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_check(vf_report *rep, const char *name, int ok, const char *fmt, ...) {
  if (rep->n >= VF_CHECKS_MAX) return;
  vf_check *c = &rep->checks[rep->n++];
  c->name = name;
  c->ok = ok;
  rep->failed += !ok;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
  va_end(ap);
}

static int balanced(const vf_event *e) {
  return e->available + e->reserved + e->sold == e->stock_total &&
         e->reserved + e->sold <= e->stock_total;
}

typedef struct pair {
  uint64_t user, order;
} pair;

static int cmp_pair(const void *a, const void *b) {
  const pair *x = a, *y = b;
  if (x->user != y->user) return x->user < y->user ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* "grew by got, within [want, want + unknown]" */
static int within(int64_t got, uint64_t want, uint64_t unknown) {
  return unknown == 0 ? got == (int64_t)want
                      : got >= (int64_t)want && got <= (int64_t)(want + unknown);
}

void vf_checks(vf_input *in, const vf_event *b, const vf_event *a, vf_report *rep) {
  add_check(rep, "balance-before", balanced(b),
            "available %" PRIu64 " + reserved %" PRIu64 " + sold %" PRIu64 " vs stock %" PRIu64,
            b->available, b->reserved, b->sold, b->stock_total);
  add_check(rep, "balance-after", balanced(a),
            "available %" PRIu64 " + reserved %" PRIu64 " + sold %" PRIu64 " vs stock %" PRIu64,
            a->available, a->reserved, a->sold, a->stock_total);
  int64_t taken = (int64_t)(a->reserved + a->sold) - (int64_t)(b->reserved + b->sold);
  /* an expiry gives its units back: taken may fall short of the 201s by the
   * reservations that expired meanwhile (any event's: an upper bound), and
   * by any number when that is not known */
  int64_t short_by = in->expired < 0 ? INT64_MAX / 2 : in->expired;
  add_check(rep, "taken-equals-201s",
            short_by == 0 ? within(taken, in->created, in->unknown_buy)
                          : taken <= (int64_t)(in->created + in->unknown_buy) &&
                                taken >= (int64_t)in->created - short_by,
            "reserved+sold grew by %" PRId64 "; 201s %" PRIu64
            ", reserves without an answer %" PRIu64 "%s",
            taken, in->created, in->unknown_buy,
            in->expired < 0   ? " (a lower bound unknown: reservations may have expired meanwhile)"
            : in->expired > 0 ? " (less reservations that expired meanwhile)"
                              : "");
  if (in->check_paid) {
    int64_t sold = (int64_t)a->sold - (int64_t)b->sold;
    add_check(rep, "sold-equals-paid", within(sold, in->paid, in->unknown_pay),
              "sold grew by %" PRId64 "; paid answers %" PRIu64 ", pays without an answer %" PRIu64,
              sold, in->paid, in->unknown_pay);
  }
  add_check(rep, "201-for-the-asking-user", in->wrong_user == 0,
            "%" PRIu64 " 201s named another user or had no order", in->wrong_user);

  /* sort the wins by user, then order: per-user counts and duplicates */
  size_t n = in->nwins;
  pair *p = n ? malloc(n * sizeof(pair)) : NULL;
  uint64_t *orders = n ? malloc(n * sizeof(uint64_t)) : NULL;
  if (n && (p == NULL || orders == NULL)) {
    add_check(rep, "per-user-limit", 0, "out of memory for %zu wins", n);
    free(p);
    free(orders);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    p[i] = (pair){in->win_user[i], in->win_order[i]};
    orders[i] = in->win_order[i];
  }
  if (n) {
    qsort(p, n, sizeof(pair), cmp_pair);
    qsort(orders, n, sizeof(uint64_t), cmp_u64);
  }
  for (size_t i = 0; i < n; i++) {
    in->win_user[i] = p[i].user;
    in->win_order[i] = p[i].order;
  }
  uint64_t worst = 0, worst_user = 0, over = 0, dup = 0, users = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && p[j].user == p[i].user)
      j++;
    users++;
    if (j - i > worst) worst = j - i, worst_user = p[i].user;
    if (j - i > b->per_user_limit) over++;
    i = j;
  }
  for (size_t i = 1; i < n; i++)
    dup += orders[i] == orders[i - 1];
  free(p);
  free(orders);
  add_check(rep, "per-user-limit", over == 0,
            "%" PRIu64 " users won; most by one user: %" PRIu64 " (user %" PRIu64
            "), limit %" PRIu64 "%s",
            users, worst, worst_user, b->per_user_limit,
            in->wins_dropped ? "; some 201s past --verify-cap were not checked" : "");
  add_check(rep, "order-ids-unique", dup == 0, "%" PRIu64 " order ids seen twice", dup);
  /* Every scenario buys one unit at a time and none gives units back: a
   * true sold out leaves none, unless a reservation expired meanwhile. */
  if (in->soldout_seen > 0 && in->expired == 0)
    add_check(rep, "sold-out-means-empty", a->available == 0,
              "a sold-out answer came; available after the run is %" PRIu64, a->available);
}

void vf_sample(const vf_target *t, const vf_input *in, const vf_event *b, uint64_t want,
               vf_report *rep) {
  size_t n = in->nwins;
  if (n == 0 || want == 0) return;
  size_t *first = malloc(n * sizeof(size_t));
  if (first == NULL) {
    add_check(rep, "server-per-user", 0, "out of memory for %zu wins", n);
    return;
  }
  size_t users = 0;
  for (size_t i = 0; i < n; i++)
    if (i == 0 || in->win_user[i] != in->win_user[i - 1]) first[users++] = i;
  if (want > users) want = users;
  uint64_t asked = 0, bad = 0, missing = 0;
  char err[256] = "";
  for (uint64_t k = 0; k < want; k++) {
    size_t i = first[k * users / want];
    uint64_t live, qty;
    int found;
    if (vf_read_user_orders(t, in->win_user[i], in->win_order[i], &live, &qty, &found, err,
                            sizeof(err)) != 0) {
      bad++;
      continue;
    }
    asked++;
    if (qty > b->per_user_limit) bad++;
    if (!found) missing++;
  }
  free(first);
  add_check(rep, "server-per-user", bad == 0 && missing == 0,
            "%" PRIu64 " winners read back: %" PRIu64 " over the limit or unreadable, %" PRIu64
            " without their order%s%s",
            asked, bad, missing, err[0] ? "; " : "", err);
}

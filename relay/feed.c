/*
 * feed.c -- the change feed's client: one GET per page, its headers, jsmn
 * tokens over its body, and the checks a consumer owes the feed.
 *
 * A fresh connection per page (Connection: close) keeps this small and
 * makes a restarted spiked just the next connect; the cost, one connect per
 * page of up to 1000 changes, does not show next to the consumers' own work
 * (an fsync per page). Everything lives in two static buffers sized up
 * front, so a consumer's memory does not grow with the feed.
 */
#define _GNU_SOURCE
#include "feed.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define JSMN_STATIC
#define JSMN_STRICT
#include <jsmn.h>

static char buf[FEED_RESP_MAX + 1];
static jsmntok_t tok[FEED_TOKENS_MAX];

int feed_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

int feed_conn_parse(feed_conn *c, const char *host_port) {
  const char *colon = strrchr(host_port, ':');
  if (colon == NULL || colon == host_port || (size_t)(colon - host_port) >= sizeof(c->host))
    return -1;
  snprintf(c->host, sizeof(c->host), "%.*s", (int)(colon - host_port), host_port);
  uint64_t port;
  struct in_addr a;
  if (feed_parse_u64(colon + 1, 1, 65535, &port) != 0 || inet_pton(AF_INET, c->host, &a) != 1)
    return -1;
  c->port = (int)port;
  return 0;
}

/* ---- HTTP: one GET per connection ------------------------------------------ */

/* 0 and the answer in buf (head NUL-terminated at *body - 4), -1 on no or
 * a cut answer, -2 when stopped. */
static int http_get(const feed_conn *c, const char *target, size_t *len_out, char **body) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
  if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1) return -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {(c->wait_ms / 1000) + 10, 0}; /* the long-poll, and some */
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int rc = -1;
  while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
    if (errno != EINTR) goto out;
    if (c->stop && *c->stop) {
      rc = -2;
      goto out;
    }
  }
  char req[1024];
  int n =
      snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s%sConnection: close\r\n\r\n",
               target, c->host, c->token ? "Authorization: Bearer " : "", c->token ? c->token : "",
               c->token ? "\r\n" : "");
  if (n <= 0 || (size_t)n >= sizeof(req) || send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) goto out;
  size_t len = 0;
  for (;;) {
    ssize_t k = recv(fd, buf + len, FEED_RESP_MAX - len, 0);
    if (k < 0 && errno == EINTR) {
      if (c->stop && *c->stop) {
        rc = -2;
        goto out;
      }
      continue;
    }
    if (k < 0) goto out;
    if (k == 0) break;
    if ((len += (size_t)k) == FEED_RESP_MAX) goto out; /* too large: not a page we can hold */
  }
  buf[len] = '\0';
  char *end = strstr(buf, "\r\n\r\n");
  if (end == NULL) goto out;
  *end = '\0';
  *body = end + 4;
  *len_out = len;
  rc = 0;
out:
  close(fd);
  return rc;
}

/* The value of header name in the head at buf, or NULL. */
static const char *header(const char *name, char *out, size_t cap) {
  size_t n = strlen(name);
  for (const char *p = strstr(buf, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n"))
    if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
      const char *v = p + 3 + n, *e = strstr(v, "\r\n");
      while (*v == ' ')
        v++;
      size_t l = e ? (size_t)(e - v) : strlen(v);
      snprintf(out, cap, "%.*s", (int)(l < cap ? l : cap - 1), v);
      return out;
    }
  return NULL;
}

/* ---- JSON: jsmn tokens over the body --------------------------------------- */

/* The index of the token after t's whole subtree. */
static int skip(int t) {
  int n = tok[t].size;
  t++;
  for (int i = 0; i < n; i++)
    t = skip(t);
  return t;
}

static int eq(const char *js, int t, const char *s) {
  size_t n = strlen(s);
  return tok[t].type == JSMN_STRING && (size_t)(tok[t].end - tok[t].start) == n &&
         memcmp(js + tok[t].start, s, n) == 0;
}

static int member(const char *js, int t, const char *key) {
  if (t < 0 || tok[t].type != JSMN_OBJECT) return -1;
  int n = tok[t].size, k = t + 1;
  for (int i = 0; i < n; i++) {
    if (eq(js, k, key)) return k + 1;
    k = skip(k + 1);
  }
  return -1;
}

int feed_member(const feed_page *p, int t, const char *key) { return member(p->body, t, key); }

uint64_t feed_num(const feed_page *p, int t) {
  return t < 0 ? 0 : strtoull(p->body + tok[t].start, NULL, 10);
}

void feed_text(const feed_page *p, int t, char *out, size_t cap) {
  int n = t < 0 ? 0 : tok[t].end - tok[t].start;
  snprintf(out, cap, "%.*s", n < (int)cap ? n : (int)cap - 1, t < 0 ? "" : p->body + tok[t].start);
}

int feed_next(const feed_page *p, int *t, feed_change *ch) {
  if (*t == 0) *t = p->changes + 1;
  if (p->changes < 0 || *t >= skip(p->changes)) return -1;
  int c = *t;
  memset(ch, 0, sizeof(*ch));
  ch->tok = c;
  ch->seq = feed_num(p, member(p->body, c, "seq"));
  ch->at = feed_num(p, member(p->body, c, "at"));
  feed_text(p, member(p->body, c, "type"), ch->type, sizeof(ch->type));
  int o = member(p->body, c, "order"), e = member(p->body, c, "event");
  if (o >= 0)
    feed_text(p, member(p->body, o, "event_id"), ch->event_id, sizeof(ch->event_id));
  else if (e >= 0)
    feed_text(p, member(p->body, e, "id"), ch->event_id, sizeof(ch->event_id));
  ch->json = p->body + tok[c].start;
  ch->json_len = (size_t)(tok[c].end - tok[c].start);
  *t = skip(c);
  return 0;
}

/* ---- a page ---------------------------------------------------------------- */

#define WHY(...) snprintf(p->why, sizeof(p->why), __VA_ARGS__)

int feed_fetch(const feed_conn *c, const char *store_id, uint64_t after, const char *epoch,
               unsigned limit, feed_page *p) {
  memset(p, 0, sizeof(*p));
  p->changes = -1;
  p->last_seq = after;
  snprintf(p->last_epoch, sizeof(p->last_epoch), "%s", epoch);
  char target[200], v[64];
  snprintf(target, sizeof(target), "/api/v1/feed?after=%llu&limit=%u&wait_ms=%u%s%.16s",
           (unsigned long long)after, limit, c->wait_ms, epoch[0] && after ? "&epoch=" : "",
           epoch[0] && after ? epoch : "");
  size_t len;
  char *body;
  errno = 0;
  int rc = http_get(c, target, &len, &body);
  if (rc == -2) return WHY("stopped"), FEED_STOPPED;
  if (rc != 0 || sscanf(buf, "HTTP/1.1 %d", &p->status) != 1) {
    WHY("no answer from %s:%d (%s)", c->host, c->port, errno ? strerror(errno) : "cut short");
    return FEED_UNREACHABLE;
  }
  p->body = body;
  size_t body_len = len - (size_t)(body - buf);
  if (p->status >= 500 || p->status == 429) { /* restarting, draining, overloaded, rate limited */
    WHY("%s:%d answered HTTP %d: %.200s", c->host, c->port, p->status, body);
    return FEED_UNREACHABLE;
  }
  if (p->status == 401 || p->status == 403) {
    WHY("the feed refused the token: HTTP %d %.200s", p->status, body);
    return FEED_DENIED;
  }
  const char *id = header("X-Spike-Store-Id", p->store_id, sizeof(p->store_id));
  p->head = header("X-Spike-Feed-Head", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
  p->first = header("X-Spike-Feed-First", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
  if (id == NULL) {
    WHY("an answer without X-Spike-Store-Id (HTTP %d): not spiked's feed", p->status);
    return FEED_BAD;
  }
  if (header("X-Spike-Restored-From", p->restored_from, sizeof(p->restored_from)) != NULL)
    p->restored_seq =
        header("X-Spike-Restored-Seq", v, sizeof(v)) ? strtoull(v, NULL, 10) : 0;
  if (store_id[0] != '\0' && strcmp(id, store_id) != 0) {
    if (strcmp(p->restored_from, store_id) != 0) {
      WHY("the store is %s, the cursor belongs to %s: a replaced store, refusing to continue "
          "(rebuild from scratch)",
          id, store_id);
      return FEED_OTHER_STORE;
    }
    if (after > p->restored_seq) {
      WHY("the store is %s, restored from a backup of the cursor's store %s at seq %llu, "
          "behind the cursor %llu: the changes %llu..%llu published downstream are not in it; "
          "reconcile downstream (docs/operations.md, Backups), then start a cursor '%s %llu'",
          id, store_id, (unsigned long long)p->restored_seq, (unsigned long long)after,
          (unsigned long long)p->restored_seq + 1, (unsigned long long)after, id,
          (unsigned long long)p->restored_seq);
      return FEED_AHEAD;
    }
    /* the cursor's history up to restored_seq, going on under a new id:
     * served as FEED_OK, page's store_id the new one */
  }
  if (p->status != 200 && after > p->head) {
    WHY("the cursor %llu is ahead of the feed's head %llu: the store is an older copy of the "
        "cursor's (restored from a backup?), refusing to continue",
        (unsigned long long)after, (unsigned long long)p->head);
    return FEED_AHEAD;
  }
  if (p->status != 200 && after + 1 < p->first) {
    WHY("the changes after the cursor %llu are gone (the feed now starts at %llu, "
        "--feed-retain): resync downstream, then start afresh after seq %llu (spike-relay: a "
        "new cursor with --from)",
        (unsigned long long)after, (unsigned long long)p->first, (unsigned long long)p->first - 1);
    return FEED_DROPPED;
  }
  if (p->status == 400 && strstr(body, "validation failed: epoch: this store's record ") != NULL) {
    WHY("the store's record %llu is not the one the cursor read (another epoch): a copy of the "
        "store that took other writes (a restored snapshot?), refusing to continue (rebuild "
        "from scratch)",
        (unsigned long long)after);
    return FEED_FORKED;
  }
  if (p->status != 200) {
    WHY("the feed refused after=%llu: HTTP %d %.200s", (unsigned long long)after, p->status, body);
    return FEED_BAD;
  }
  jsmn_parser jp;
  jsmn_init(&jp);
  int nt = jsmn_parse(&jp, body, body_len, tok, FEED_TOKENS_MAX);
  int data = nt > 0 ? member(body, 0, "data") : -1;
  p->changes = member(body, data, "changes");
  if (p->changes < 0 || tok[p->changes].type != JSMN_ARRAY) {
    p->changes = -1;
    WHY("an answer that is not a feed page (%s)",
        nt < 0 ? "not JSON, or too many tokens" : "no changes");
    return FEED_BAD;
  }
  int ne = member(body, data, "nextEpoch");
  if (ne >= 0) feed_text(p, ne, p->last_epoch, sizeof(p->last_epoch));
  p->count = tok[p->changes].size;
  if (p->count > (int)limit) {
    WHY("a page of %d changes where %u were asked for", p->count, limit);
    return FEED_BAD;
  }
  feed_change ch;
  int t = 0;
  while (feed_next(p, &t, &ch) == 0) {
    if (ch.seq != p->last_seq + 1) {
      WHY("got seq %llu where %llu was next: refusing", (unsigned long long)ch.seq,
          (unsigned long long)p->last_seq + 1);
      return FEED_OUT_OF_LINE;
    }
    p->last_seq = ch.seq;
  }
  return FEED_OK;
}

void feed_sleep_ms(unsigned ms, volatile sig_atomic_t *stop) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  while (!(stop && *stop) && nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

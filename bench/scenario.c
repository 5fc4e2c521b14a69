/*
 * scenario.c -- spikebench's request templates (see scenario.h).
 *
 * A template is stored ready to send: placeholders become single bytes
 * (1..5) in the target and body, so expanding one per request is a copy
 * with a switch on those bytes and no parsing; the statuses become a
 * short rule list matched in order. The built-in scenarios are the same
 * templates, so spike's routes and anybody's go through one path. The
 * price is a fixed buffer per template (a few KB), which bounds a
 * template's size in the open: a longer one is refused when read.
 */
#define _GNU_SOURCE
#include "scenario.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "js.h"
#include "text.h"
#include "spike.h"

const char *const sc_outcome_names[OUT_COUNT] = {"won", "sold_out", "limited", "shed", "error"};
const char *const sc_names[SC_COUNT] = {"reserve", "flash-crowd", "mixed", "get", "template"};

/* placeholder marks inside a stored target or body */
enum { PH_USER = 1, PH_EVENT, PH_SEQ, PH_RUN, PH_ORDER, PH_END };
static const char *const ph_names[PH_END] = {NULL, "user", "event", "seq", "run", "order"};

#define SC_TOKENS 96 /* JSON tokens of one envelope */

/* Copy src[0..n) into dst (cap bytes) with {name} placeholders turned into
 * marks; allow_order lets {order} through. The stored length, or -1 with
 * err when it does not fit or has a control character. */
static long compile(char *dst, size_t cap, const char *src, size_t n, int allow_order,
                    const char *what, char *err, size_t errcap) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    unsigned char ch = (unsigned char)src[i];
    if (ch < 0x20 || ch == 0x7f) {
      sb_say(err, errcap, "%s: control character at byte %zu", what, i);
      return -1;
    }
    int mark = 0;
    size_t used = 1;
    if (ch == '{') {
      for (int p = PH_USER; p < PH_END; p++) {
        size_t l = strlen(ph_names[p]);
        if (i + l + 1 < n && memcmp(src + i + 1, ph_names[p], l) == 0 && src[i + 1 + l] == '}') {
          mark = p;
          used = l + 2;
        }
      }
      if (mark == PH_ORDER && !allow_order) {
        sb_say(err, errcap, "%s: {order} is only for the built-in pay", what);
        return -1;
      }
    }
    if (o + 1 >= cap) {
      sb_say(err, errcap, "%s: longer than %zu bytes", what, cap - 1);
      return -1;
    }
    dst[o++] = mark ? (char)mark : (char)ch;
    i += used;
  }
  dst[o] = '\0';
  return (long)o;
}

static void rule(sc_request *r, uint16_t lo, uint16_t hi, int64_t code, int outcome) {
  if (r->nrules >= SC_RULES_MAX) return;
  r->rules[r->nrules++] = (sc_rule){lo, hi, code, (uint8_t)outcome};
  if (code != SC_ANY_CODE) r->wants_code = 1;
}

/* spike's answers that are not errors, for every route */
static void spike_rules(sc_request *r, int won_status) {
  rule(r, (uint16_t)won_status, (uint16_t)won_status, SC_ANY_CODE, OUT_WON);
  rule(r, 409, 409, -SPIKE_ESOLDOUT, OUT_SOLD_OUT);
  rule(r, 409, 409, -SPIKE_ELIMIT, OUT_LIMITED);
  rule(r, 503, 503, SC_ANY_CODE, OUT_SHED);
  rule(r, 429, 429, SC_ANY_CODE, OUT_SHED);
}

static int builtin_req(sc_request *r, const char *name, int role, const char *method,
                       const char *prefix, const char *path, const char *body, char *err,
                       size_t errcap) {
  memset(r, 0, sizeof(*r));
  snprintf(r->name, sizeof(r->name), "%s", name);
  r->role = (uint8_t)role;
  snprintf(r->method, sizeof(r->method), "%s", method);
  char full[SC_TARGET_BYTES + 64];
  int n = snprintf(full, sizeof(full), "%s%s", prefix, path);
  if (n < 0 || (size_t)n >= sizeof(full) ||
      compile(r->target, sizeof(r->target), full, (size_t)n, 1, "--url path", err, errcap) < 0) {
    if (err && err[0] == '\0') sb_say(err, errcap, "--url: path too long");
    return -1;
  }
  if (body != NULL) {
    long bl = compile(r->body, sizeof(r->body), body, strlen(body), 1, "body", err, errcap);
    if (bl < 0) return -1;
    r->body_len = (size_t)bl;
    r->has_body = 1;
  }
  return 0;
}

int sc_builtin(sc_scenario *sc, int id, const char *prefix, const char *get_target, char *err,
               size_t errcap) {
  if (err && errcap) err[0] = '\0';
  sc->id = id;
  sc->nreq = 0;
  sc->spike_api = id != SC_GET;
  /* "http://h/" and "http://h" are the same API */
  char pre[SC_TARGET_BYTES];
  size_t pl = strlen(prefix);
  while (pl > 0 && prefix[pl - 1] == '/')
    pl--;
  if (pl >= sizeof(pre)) {
    sb_say(err, errcap, "--url: path too long");
    return -1;
  }
  memcpy(pre, prefix, pl);
  pre[pl] = '\0';
  sc_request *r = &sc->req[0];
  if (id == SC_GET) {
    if (builtin_req(r, "get", ROLE_GET, "GET", "", get_target[0] ? get_target : "/", NULL, err,
                    errcap) != 0)
      return -1;
    rule(r, 200, 299, SC_ANY_CODE, OUT_WON);
    rule(r, 503, 503, SC_ANY_CODE, OUT_SHED);
    rule(r, 429, 429, SC_ANY_CODE, OUT_SHED);
    sc->nreq = 1;
    return 0;
  }
  if (builtin_req(r, "reserve", ROLE_BUY, "POST", pre, "/api/v1/events/{event}/orders",
                  "{\"user_id\":\"{user}\"}", err, errcap) != 0)
    return -1;
  spike_rules(r, 201);
  rule(r, 200, 200, SC_ANY_CODE, OUT_WON); /* a retried key: the same order */
  sc->nreq = 1;
  if (id == SC_MIXED) {
    if (builtin_req(&sc->req[1], "read", ROLE_READ, "GET", pre, "/api/v1/events/{event}", NULL, err,
                    errcap) != 0 ||
        builtin_req(&sc->req[2], "pay", ROLE_PAY, "POST", pre, "/api/v1/orders/{order}/pay",
                    "{\"user_id\":\"{user}\",\"payment_id\":\"sb-{order}\"}", err, errcap) != 0)
      return -1;
    spike_rules(&sc->req[1], 200);
    spike_rules(&sc->req[2], 200);
    sc->nreq = 3;
  }
  return 0;
}

/* ---- template files ------------------------------------------------------------ */

static int parse_status(const char *w, size_t n, sc_rule *out) {
  char buf[48];
  if (n == 0 || n >= sizeof(buf)) return -1;
  memcpy(buf, w, n);
  buf[n] = '\0';
  char *colon = strchr(buf, ':');
  out->code = SC_ANY_CODE;
  if (colon != NULL) {
    *colon = '\0';
    char *end;
    long long c = strtoll(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || c < 0 || c > 999999999) return -1;
    out->code = c;
  }
  size_t sl = strlen(buf);
  if (sl == 3 && buf[0] >= '1' && buf[0] <= '5' && strcasecmp(buf + 1, "xx") == 0) {
    out->lo = (uint16_t)((buf[0] - '0') * 100);
    out->hi = (uint16_t)(out->lo + 99);
    return 0;
  }
  if (sl != 3 || !isdigit((unsigned char)buf[0]) || !isdigit((unsigned char)buf[1]) ||
      !isdigit((unsigned char)buf[2]))
    return -1;
  int s = atoi(buf);
  if (s < 100 || s > 599) return -1;
  out->lo = out->hi = (uint16_t)s;
  return 0;
}

static char *expand(char *o, char *end, const char *src, size_t n, const sc_scenario *sc,
                    const sc_call *call);

static int is_tchar(int ch) {
  return isalnum(ch) || (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

int sc_header_add(char *buf, size_t *len, size_t cap, const char *line, int jwt, char *err,
                  size_t errcap) {
  const char *colon = strchr(line, ':');
  if (colon == NULL || colon == line) {
    sb_say(err, errcap, "header \"%.60s\" is not \"Name: value\"", line);
    return -1;
  }
  size_t nl = (size_t)(colon - line);
  for (size_t i = 0; i < nl; i++)
    if (!is_tchar((unsigned char)line[i])) {
      sb_say(err, errcap, "header name \"%.*s\" is not an HTTP token", (int)nl, line);
      return -1;
    }
  const char *v = colon + 1;
  while (*v == ' ' || *v == '\t')
    v++;
  size_t vl = strlen(v);
  while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
    vl--;
  for (size_t i = 0; i < vl; i++)
    if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f) {
      sb_say(err, errcap, "header %.*s: a control character (or tab) in the value", (int)nl, line);
      return -1;
    }
  static const char *const own[] = {"content-length", "transfer-encoding", "connection"};
  for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
    if (nl == strlen(own[i]) && strncasecmp(line, own[i], nl) == 0) {
      sb_say(err, errcap, "header %.*s is spikebench's own (it frames every request itself)",
             (int)nl, line);
      return -1;
    }
  if (jwt && nl == 13 && strncasecmp(line, "authorization", 13) == 0) {
    sb_say(err, errcap, "header Authorization and --jwt-secret both give the credentials");
    return -1;
  }
  size_t lines = 0;
  for (size_t i = 0; i + 1 < *len; i++)
    lines += buf[i] == '\r' && buf[i + 1] == '\n';
  char h[SC_HEADERS_BYTES];
  int hl = snprintf(h, sizeof(h), "%.*s: %.*s", (int)nl, line, (int)vl, v);
  long cl = -1;
  if (lines < SC_HEADER_LINES_MAX && hl > 0 && (size_t)hl < sizeof(h) && *len + 3 < cap)
    cl = compile(buf + *len, cap - *len - 2, h, (size_t)hl, 0, "header", err, errcap);
  if (cl < 0) {
    sb_say(err, errcap, "more than %d header lines or %zu bytes of them", SC_HEADER_LINES_MAX,
           cap - 1);
    buf[*len] = '\0';
    return -1;
  }
  *len += (size_t)cl;
  memcpy(buf + *len, "\r\n", 3);
  *len += 2;
  return 0;
}

size_t sc_headers(const sc_scenario *sc, uint64_t user, char *out, size_t cap) {
  if (cap == 0) return 0;
  sc_call c = {0, user, 0, 0, sc->event};
  char *e = expand(out, out + cap - 1, sc->headers, sc->headers_len, sc, &c);
  if (e == NULL) e = out;
  *e = '\0';
  return (size_t)(e - out);
}

int sc_template_parse(sc_request *r, const char *prefix, const char *text, size_t len, char *err,
                      size_t errcap) {
  memset(r, 0, sizeof(*r));
  snprintf(r->name, sizeof(r->name), "template");
  r->role = ROLE_BUY;
  if (err && errcap) err[0] = '\0';
  if (len > SC_TEMPLATE_BYTES) {
    sb_say(err, errcap, "template longer than %d bytes", SC_TEMPLATE_BYTES);
    return -1;
  }
  int have_path = 0, have_won = 0, have_method = 0;
  size_t pl = strlen(prefix);
  while (pl > 0 && prefix[pl - 1] == '/')
    pl--;
  int lineno = 0;
  for (size_t at = 0; at < len;) {
    const char *line = text + at;
    const char *nl = memchr(line, '\n', len - at);
    size_t ll = nl ? (size_t)(nl - line) : len - at;
    at += ll + (nl != NULL);
    lineno++;
    if (ll > 0 && line[ll - 1] == '\r') ll--;
    while (ll > 0 && (*line == ' ' || *line == '\t'))
      line++, ll--;
    if (ll == 0 || *line == '#') continue;
    size_t kl = 0;
    while (kl < ll && line[kl] != ' ' && line[kl] != '\t')
      kl++;
    const char *v = line + kl;
    size_t vl = ll - kl;
    while (vl > 0 && (*v == ' ' || *v == '\t'))
      v++, vl--;
    char key[16];
    if (kl >= sizeof(key)) kl = sizeof(key) - 1;
    memcpy(key, line, kl);
    key[kl] = '\0';
    char where[48];
    snprintf(where, sizeof(where), "line %d (%s)", lineno, key);
    int out = -1;
    if (strcmp(key, "method") == 0) {
      if (vl == 0 || vl >= sizeof(r->method)) {
        sb_say(err, errcap, "%s: a method of 1-%zu letters", where, sizeof(r->method) - 1);
        return -1;
      }
      for (size_t i = 0; i < vl; i++)
        if (!isupper((unsigned char)v[i])) {
          sb_say(err, errcap, "%s: \"%.*s\" is not an upper-case method", where, (int)vl, v);
          return -1;
        }
      memcpy(r->method, v, vl);
      r->method[vl] = '\0';
      have_method = 1;
    } else if (strcmp(key, "path") == 0) {
      if (vl == 0 || v[0] != '/') {
        sb_say(err, errcap, "%s: the path starts with /", where);
        return -1;
      }
      for (size_t i = 0; i < vl; i++)
        if (v[i] == ' ' || v[i] == '\t') {
          sb_say(err, errcap, "%s: spaces in the path", where);
          return -1;
        }
      char full[SC_TARGET_BYTES + 8];
      if (pl + vl >= sizeof(full)) {
        sb_say(err, errcap, "%s: longer than %d bytes with the URL's prefix", where,
               SC_TARGET_BYTES - 1);
        return -1;
      }
      memcpy(full, prefix, pl);
      memcpy(full + pl, v, vl);
      if (compile(r->target, sizeof(r->target), full, pl + vl, 0, where, err, errcap) < 0)
        return -1;
      have_path = 1;
    } else if (strcmp(key, "body") == 0) {
      long bl = compile(r->body, sizeof(r->body), v, vl, 0, where, err, errcap);
      if (bl < 0) return -1;
      r->body_len = (size_t)bl;
      r->has_body = 1;
    } else if (strcmp(key, "header") == 0) {
      char h[SC_HEADERS_BYTES];
      if (vl >= sizeof(h)) {
        sb_say(err, errcap, "%s: too long", where);
        return -1;
      }
      memcpy(h, v, vl);
      h[vl] = '\0';
      char why[160];
      if (sc_header_add(r->headers, &r->headers_len, sizeof(r->headers), h, 0, why, sizeof(why)) !=
          0) {
        sb_say(err, errcap, "%s: %s", where, why);
        return -1;
      }
    } else if (strcmp(key, "name") == 0) {
      if (vl == 0 || vl >= sizeof(r->name)) {
        sb_say(err, errcap, "%s: a name of 1-%zu characters", where, sizeof(r->name) - 1);
        return -1;
      }
      memcpy(r->name, v, vl);
      r->name[vl] = '\0';
    } else if (strcmp(key, "won") == 0) {
      out = OUT_WON;
      have_won = 1;
    } else if (strcmp(key, "sold-out") == 0) {
      out = OUT_SOLD_OUT;
    } else if (strcmp(key, "limited") == 0) {
      out = OUT_LIMITED;
    } else if (strcmp(key, "shed") == 0) {
      out = OUT_SHED;
    } else {
      sb_say(err, errcap,
             "line %d: unknown key \"%s\" (method, path, body, header, name, won, sold-out, "
             "limited, shed)",
             lineno, key);
      return -1;
    }
    if (out < 0) continue;
    if (vl == 0) {
      sb_say(err, errcap, "%s: give statuses like 201, 2xx or 409:30001", where);
      return -1;
    }
    for (size_t i = 0; i < vl;) {
      size_t j = i;
      while (j < vl && v[j] != ' ' && v[j] != '\t')
        j++;
      sc_rule ru;
      if (parse_status(v + i, j - i, &ru) != 0) {
        sb_say(err, errcap, "%s: \"%.*s\" is not a status (201, 2xx, 409:30001)", where,
               (int)(j - i), v + i);
        return -1;
      }
      if (r->nrules >= SC_RULES_MAX) {
        sb_say(err, errcap, "%s: more than %d statuses in all", where, SC_RULES_MAX);
        return -1;
      }
      rule(r, ru.lo, ru.hi, ru.code, out);
      i = j;
      while (i < vl && (v[i] == ' ' || v[i] == '\t'))
        i++;
    }
  }
  if (!have_path) {
    sb_say(err, errcap, "the template has no path line");
    return -1;
  }
  if (!have_method) snprintf(r->method, sizeof(r->method), "%s", r->has_body ? "POST" : "GET");
  if (!have_won) rule(r, 200, 299, SC_ANY_CODE, OUT_WON);
  if (r->nrules > SC_RULES_MAX) return -1;
  return 0;
}

void sc_from_template(sc_scenario *sc, const sc_request *r) {
  sc->id = SC_TEMPLATE;
  sc->req[0] = *r;
  sc->nreq = 1;
  sc->spike_api = 0;
}

void sc_set_expected(sc_scenario *sc) {
  memset(sc->expected, 0, sizeof(sc->expected));
  sc->expected[OUT_WON] = 1;
  sc->expected[OUT_SHED] = 1;
  if (sc->id != SC_GET) sc->expected[OUT_SOLD_OUT] = 1;
  /* a fresh user per request is never at its limit: a 30007 then means
   * these user ids were used before (the same --user-base twice) */
  if (sc->id != SC_GET && sc->users > 0) sc->expected[OUT_LIMITED] = 1;
}

void sc_run_id(char out[17]) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t x = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
               ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ull;
  /* splitmix64's finaliser: every bit of the input moves every bit */
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 31;
  snprintf(out, 17, "%016" PRIx64, x);
}

/* ---- per thread ------------------------------------------------------------------ */

int sc_worker_init(sc_worker *w, const sc_scenario *sc, uint32_t id, size_t mint_slots,
                   _Atomic uint64_t *seq) {
  memset(w, 0, sizeof(*w));
  w->sc = sc;
  w->id = id;
  w->seq = seq;
  w->rng = sc->seed * 0x9E3779B97F4A7C15ull + id + 1;
  if (sc->id == SC_MIXED) {
    w->payq_order = calloc(SC_PAYQ, sizeof(uint64_t));
    w->payq_user = calloc(SC_PAYQ, sizeof(uint64_t));
    if (w->payq_order == NULL || w->payq_user == NULL) {
      sc_worker_free(w);
      return -1;
    }
  }
  if (sc->jwt_secret != NULL) {
    if (mint_init(&w->mint, sc->jwt_secret, sc->jwt_exp_s, mint_slots) != 0) {
      sc_worker_free(w);
      return -1;
    }
    w->have_mint = 1;
  }
  return 0;
}

void sc_worker_free(sc_worker *w) {
  free(w->payq_order);
  free(w->payq_user);
  w->payq_order = w->payq_user = NULL;
  if (w->have_mint) mint_free(&w->mint);
  w->have_mint = 0;
}

static uint64_t xorshift(uint64_t *s) {
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

static double rand01(uint64_t *s) { return (double)(xorshift(s) >> 11) / 9007199254740992.0; }

static uint64_t next_user(sc_worker *w) {
  const sc_scenario *sc = w->sc;
  /* interleaved by thread so threads never share a user by accident */
  uint64_t k = w->user_seq++ * sc->nworkers + w->id;
  return sc->user_base + (sc->users ? k % sc->users : k);
}

int sc_worker_premint(sc_worker *w, uint64_t n) {
  if (!w->have_mint || w->mint.nslots == 0) return 0;
  if (n > w->mint.nslots) n = w->mint.nslots;
  uint64_t seq = w->user_seq;
  for (uint64_t i = 0; i < n; i++) {
    size_t len;
    if (mint_token(&w->mint, next_user(w), &len) == NULL) {
      w->user_seq = seq;
      return -1;
    }
  }
  w->user_seq = seq;
  return 0;
}

void sc_next(sc_worker *w, sc_call *call) {
  const sc_scenario *sc = w->sc;
  /* One counter for the run, not one per thread: numbered per thread, a
   * thread with more connections than another sent more of some events
   * (--events 2 over threads of 2 and 1 connections: 2/3 to one event).
   * relaxed: each number is taken once; nothing else is ordered by it. */
  call->seq = atomic_fetch_add_explicit(w->seq, 1, memory_order_relaxed) + 1;
  call->event = sc->event + (sc->events > 1 ? (call->seq - 1) % sc->events : 0);
  call->order = 0;
  call->kind = 0;
  if (sc->id == SC_MIXED) {
    if (w->payq_n > 0) {
      call->kind = 2;
      call->order = w->payq_order[w->payq_head];
      call->user = w->payq_user[w->payq_head];
      w->payq_head = (w->payq_head + 1) % SC_PAYQ;
      w->payq_n--;
      return;
    }
    if (rand01(&w->rng) < sc->read_share) {
      call->kind = 1;
      call->user = 0;
      return;
    }
  }
  call->user = sc->id == SC_GET ? 0 : next_user(w);
}

/* Expand a compiled template into out; the new end, or NULL when it does
 * not fit. */
static char *expand(char *o, char *end, const char *src, size_t n, const sc_scenario *sc,
                    const sc_call *call) {
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)src[i];
    if (ch >= PH_END) {
      if (o >= end) return NULL;
      *o++ = (char)ch;
      continue;
    }
    char num[24];
    const char *s = num;
    size_t l;
    switch (ch) {
    case PH_USER: l = (size_t)snprintf(num, sizeof(num), "%" PRIu64, call->user); break;
    case PH_EVENT: l = (size_t)snprintf(num, sizeof(num), "%" PRIu64, call->event); break;
    case PH_SEQ: l = (size_t)snprintf(num, sizeof(num), "%" PRIu64, call->seq); break;
    case PH_ORDER: l = (size_t)snprintf(num, sizeof(num), "%" PRIu64, call->order); break;
    case PH_RUN:
      s = sc->run_id;
      l = strlen(s);
      break;
    default: return NULL; /* a control byte compile() let through: not possible */
    }
    if ((size_t)(end - o) < l) return NULL;
    memcpy(o, s, l);
    o += l;
  }
  return o;
}

static int append(char **o, char *end, const char *s, size_t n) {
  if ((size_t)(end - *o) < n) return -1;
  memcpy(*o, s, n);
  *o += n;
  return 0;
}

#define APPEND_LIT(o, end, lit) append(o, end, lit, sizeof(lit) - 1)

/* The request for call with the token tok (NULL: none) into out. */
static size_t format_with(const sc_scenario *sc, const sc_call *call, const char *tok,
                          size_t tok_len, char *out, size_t cap) {
  const sc_request *r = &sc->req[call->kind];
  char body[SC_BODY_BYTES + 1024];
  char *be = body;
  if (r->has_body) {
    be = expand(body, body + sizeof(body), r->body, r->body_len, sc, call);
    if (be == NULL) return 0;
  }
  size_t bl = (size_t)(be - body);
  char *o = out, *end = out + cap;
  if (append(&o, end, r->method, strlen(r->method)) || APPEND_LIT(&o, end, " ")) return 0;
  o = expand(o, end, r->target, strlen(r->target), sc, call);
  if (o == NULL || APPEND_LIT(&o, end, " HTTP/1.1\r\n")) return 0;
  if (!sc->host_given) {
    if (APPEND_LIT(&o, end, "Host: ") || append(&o, end, sc->host, strlen(sc->host)) ||
        APPEND_LIT(&o, end, "\r\n"))
      return 0;
  }
  o = expand(o, end, sc->headers, sc->headers_len, sc, call);
  if (o == NULL) return 0;
  o = expand(o, end, r->headers, r->headers_len, sc, call);
  if (o == NULL) return 0;
  if (tok != NULL) {
    if (APPEND_LIT(&o, end, "Authorization: Bearer ") || append(&o, end, tok, tok_len) ||
        APPEND_LIT(&o, end, "\r\n"))
      return 0;
  }
  if (r->has_body) {
    int own_ctype = sc->ctype_given || strcasestr(r->headers, "content-type:") != NULL;
    if (!own_ctype && APPEND_LIT(&o, end, "Content-Type: application/json\r\n")) return 0;
    char cl[48];
    int n = snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", bl);
    if (append(&o, end, cl, (size_t)n)) return 0;
  }
  if (APPEND_LIT(&o, end, "\r\n") || append(&o, end, body, bl)) return 0;
  return (size_t)(o - out);
}

/* Requests that carry a user's token: those that name a user. */
static int wants_token(const sc_scenario *sc, const sc_call *call) {
  return sc->jwt_secret != NULL && sc->req[call->kind].role != ROLE_GET &&
         sc->req[call->kind].role != ROLE_READ;
}

size_t sc_format(sc_worker *w, const sc_call *call, char *out, size_t cap) {
  const char *tok = NULL;
  size_t tl = 0;
  if (wants_token(w->sc, call)) {
    tok = mint_token(&w->mint, call->user, &tl);
    if (tok == NULL) return 0;
  }
  return format_with(w->sc, call, tok, tl, out, cap);
}

size_t sc_max_request(const sc_scenario *sc) {
  static char buf[65536];
  size_t worst = 0;
  for (int k = 0; k < sc->nreq; k++) {
    sc_call c = {(uint8_t)k, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX};
    const char *tok = NULL;
    size_t tl = 0;
    mint m;
    if (wants_token(sc, &c)) {
      if (mint_init(&m, sc->jwt_secret, sc->jwt_exp_s, 0) != 0) return 0;
      tok = mint_token(&m, UINT64_MAX, &tl);
      if (tok == NULL) {
        mint_free(&m);
        return 0;
      }
    }
    size_t n = format_with(sc, &c, tok, tl, buf, sizeof(buf));
    if (tok != NULL) mint_free(&m);
    if (n == 0) return 0;
    if (n > worst) worst = n;
  }
  return worst;
}

int sc_outcome_of(const sc_request *r, int status, int has_code, int64_t code) {
  for (int i = 0; i < r->nrules; i++) {
    const sc_rule *ru = &r->rules[i];
    if (status < ru->lo || status > ru->hi) continue;
    if (ru->code != SC_ANY_CODE && (!has_code || code != ru->code)) continue;
    return ru->outcome;
  }
  return OUT_ERROR;
}

void sc_classify(const sc_scenario *sc, const sc_call *call, int status, const char *body,
                 size_t body_len, int body_truncated, sc_answer *a) {
  const sc_request *r = &sc->req[call->kind];
  a->status = status;
  a->has_code = 0;
  a->code = -1;
  a->id = a->user = 0;
  if ((sc->spike_api || r->wants_code) && !body_truncated && body_len > 0) {
    jsmntok_t toks[SC_TOKENS];
    js_doc d;
    uint64_t v;
    if (js_parse(&d, body, body_len, toks, SC_TOKENS) == 0 && d.t[0].type == JSMN_OBJECT &&
        js_u64(&d, js_key(&d, 0, "code"), &v) == 0 && v <= INT64_MAX) {
      a->has_code = 1;
      a->code = (int64_t)v;
      if (sc->spike_api) {
        int data = js_key(&d, 0, "data");
        if (js_u64(&d, js_key(&d, data, "id"), &v) == 0) a->id = v;
        if (js_u64(&d, js_key(&d, data, "user_id"), &v) == 0) a->user = v;
      }
    }
  }
  a->outcome = (uint8_t)sc_outcome_of(r, status, a->has_code, a->code);
}

void sc_answered(sc_worker *w, const sc_call *call, const sc_answer *a) {
  const sc_scenario *sc = w->sc;
  if (sc->id != SC_MIXED || sc->req[call->kind].role != ROLE_BUY || a->status != 201 || a->id == 0)
    return;
  if (rand01(&w->rng) >= sc->pay_share) return;
  if (w->payq_n == SC_PAYQ) {
    w->pay_dropped++;
    return;
  }
  uint32_t tail = (w->payq_head + w->payq_n) % SC_PAYQ;
  w->payq_order[tail] = a->id;
  w->payq_user[tail] = call->user;
  w->payq_n++;
}

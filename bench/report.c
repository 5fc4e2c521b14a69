/*
 * report.c -- the verdict, the words and the files of a run (see
 * report.h).
 *
 * Everything here reads a finished run and writes text; nothing runs
 * during the load. The verdict is computed once and then printed, written
 * to JSON and returned as the exit status, so the three can never
 * disagree. Explanations are picked from the run's own counters (which
 * cause each late send had, how busy the generator's threads were, how
 * connects failed), never from guesses about the server.
 */
#define _GNU_SOURCE
#include "report.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hist.h"
#include "js.h"
#include "text.h"
#include "plot.h"
#include "spike.h"

static const double pcts[] = {50, 90, 99, 99.9, 99.99};
static const char *const pct_keys[] = {"p50", "p90", "p99", "p99_9", "p99_99"};

static double ms(uint64_t ns) { return (double)ns / 1e6; }

void rp_fmt_ns(char *out, size_t cap, double ns) {
  if (ns >= 1e9)
    snprintf(out, cap, "%.3g s", ns / 1e9);
  else if (ns >= 1e6)
    snprintf(out, cap, "%.3g ms", ns / 1e6);
  else
    snprintf(out, cap, "%.3g us", ns / 1e3);
}

/* ---- --slo ---------------------------------------------------------------------------- */

static int parse_term(rp_term *t, const char *s, size_t n, char *err, size_t errcap) {
  memset(t, 0, sizeof(*t));
  t->outcome = -1;
  snprintf(t->text, sizeof(t->text), "%.*s", (int)n, s);
  const char *end = s + n;
  /* the metric's name runs up to the operator */
  const char *op = s;
  while (op < end && *op != '<' && *op != '>')
    op++;
  if (op == end) {
    sb_say(err, errcap, "--slo: \"%s\" has no < <= > >=", t->text);
    return -1;
  }
  char name[RP_TERM_BYTES];
  size_t nl = (size_t)(op - s);
  while (nl > 0 && s[nl - 1] == ' ')
    nl--;
  if (nl == 0 || nl >= sizeof(name)) {
    sb_say(err, errcap, "--slo: \"%s\" names no metric", t->text);
    return -1;
  }
  memcpy(name, s, nl);
  name[nl] = '\0';
  const char *v = op + 1;
  if (v < end && *v == '=') {
    t->op = *op == '<' ? OP_LE : OP_GE;
    v++;
  } else {
    t->op = *op == '<' ? OP_LT : OP_GT;
  }
  while (v < end && *v == ' ')
    v++;
  char num[RP_TERM_BYTES];
  size_t vl = (size_t)(end - v);
  if (vl == 0 || vl >= sizeof(num)) {
    sb_say(err, errcap, "--slo: \"%s\" has no value", t->text);
    return -1;
  }
  memcpy(num, v, vl);
  num[vl] = '\0';
  char *unit;
  errno = 0;
  /* decimal, as every number spikebench takes: strtod also reads hex
   * ("0x10ms" was 16 ms), "inf" and "nan" */
  int decimal = isdigit((unsigned char)num[0]) || (num[0] == '.' && isdigit((unsigned char)num[1]));
  double x = decimal ? strtod(num, &unit) : 0;
  if (decimal && strcspn(num, "xX") < (size_t)(unit - num)) decimal = 0;
  if (!decimal || unit == num || errno != 0 || !isfinite(x) || x < 0) {
    sb_say(err, errcap, "--slo: \"%s\": \"%s\" is not a number", t->text, num);
    return -1;
  }
  while (*unit == ' ')
    unit++;

  /* an outcome or "uncorrected" before a latency metric */
  char *metric = name;
  char *dot = strchr(name, '.');
  if (dot != NULL && !(name[0] == 'p' && dot > name + 1 && strchr(name, '.') == dot &&
                       strspn(name + 1, "0123456789") == (size_t)(dot - name - 1))) {
    *dot = '\0';
    if (strcmp(name, "uncorrected") == 0) {
      t->uncorrected = 1;
    } else {
      for (int o = 0; o < OUT_COUNT; o++)
        if (strcmp(name, sc_outcome_names[o]) == 0) t->outcome = o;
      if (t->outcome < 0) {
        sb_say(err, errcap, "--slo: \"%s\": \"%s\" is not an outcome or \"uncorrected\"", t->text,
               name);
        return -1;
      }
    }
    metric = dot + 1;
  }
  int latency = 0;
  if (metric[0] == 'p' && metric[1] != '\0' &&
      strspn(metric + 1, "0123456789.") == strlen(metric + 1)) {
    char *pe;
    t->pct = strtod(metric + 1, &pe);
    if (*pe != '\0' || !(t->pct > 0 && t->pct < 100)) {
      sb_say(err, errcap, "--slo: \"%s\": a percentile between p0 and p100", t->text);
      return -1;
    }
    t->metric = M_LATENCY;
    latency = 1;
  } else if (strcmp(metric, "max") == 0) {
    t->metric = M_MAX;
    latency = 1;
  } else if (strcmp(metric, "mean") == 0) {
    t->metric = M_MEAN;
    latency = 1;
  } else if (metric != name) {
    sb_say(err, errcap, "--slo: \"%s\": after \"%s.\" comes pN, max or mean", t->text, name);
    return -1;
  } else if (strcmp(metric, "errors") == 0) {
    t->metric = M_ERRORS;
  } else if (strcmp(metric, "rate") == 0) {
    t->metric = M_RATE;
  } else if (strcmp(metric, "unsent") == 0) {
    t->metric = M_UNSENT;
  } else if (strcmp(metric, "late") == 0) {
    t->metric = M_LATE;
  } else {
    t->metric = M_OUTCOME;
    for (int o = 0; o < OUT_COUNT; o++)
      if (strcmp(metric, sc_outcome_names[o]) == 0) t->outcome = o;
    if (t->outcome < 0) {
      sb_say(err, errcap,
             "--slo: \"%s\": unknown metric \"%s\" (pN, max, mean, errors, rate, unsent, late, "
             "won, sold_out, limited, shed)",
             t->text, metric);
      return -1;
    }
  }
  if (latency) {
    double mult = strcmp(unit, "us") == 0   ? 1e3
                  : strcmp(unit, "ms") == 0 ? 1e6
                  : strcmp(unit, "s") == 0  ? 1e9
                                            : 0;
    if (mult == 0) {
      sb_say(err, errcap, "--slo: \"%s\": a latency needs a unit: us, ms or s", t->text);
      return -1;
    }
    t->value = x * mult;
    return 0;
  }
  if (strcmp(unit, "%") == 0) {
    if (x > 100) {
      sb_say(err, errcap, "--slo: \"%s\": a share above 100%%", t->text);
      return -1;
    }
    t->share = 1;
    t->value = x / 100.0;
  } else if (*unit == '\0') {
    t->value = x;
  } else {
    sb_say(err, errcap, "--slo: \"%s\": \"%s\" is not a unit here (%% or none)", t->text, unit);
    return -1;
  }
  return 0;
}

int rp_slo_parse(rp_slo *s, const char *text, char *err, size_t errcap) {
  memset(s, 0, sizeof(*s));
  const char *p = text;
  while (*p) {
    while (*p == ' ' || *p == ',')
      p++;
    if (*p == '\0') break;
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    while (n > 0 && p[n - 1] == ' ')
      n--;
    if (s->n == RP_TERMS_MAX) {
      sb_say(err, errcap, "--slo: more than %d terms", RP_TERMS_MAX);
      return -1;
    }
    if (n >= RP_TERM_BYTES) {
      sb_say(err, errcap, "--slo: a term longer than %d characters", RP_TERM_BYTES - 1);
      return -1;
    }
    if (parse_term(&s->t[s->n], p, n, err, errcap) != 0) return -1;
    if (s->t[s->n].metric == M_ERRORS) s->errors_given = 1;
    s->n++;
    p += n;
  }
  if (s->n == 0) {
    sb_say(err, errcap, "--slo: no terms");
    return -1;
  }
  return 0;
}

/* ---- the verdict ------------------------------------------------------------------- */

static uint64_t answers(const ld_stats *t) { return hist_count(&t->lat); }

static uint64_t lost(const ld_stats *t) {
  return t->e_timeout + t->e_read + t->e_write + t->e_parse;
}

static uint64_t unsent_all(const ld_stats *t) {
  uint64_t n = 0;
  for (int i = 0; i < CAUSE_COUNT; i++)
    n += t->unsent[i];
  return n;
}

static uint64_t late_all(const ld_stats *t) {
  uint64_t n = 0;
  for (int i = 0; i < CAUSE_COUNT; i++)
    n += t->late[i];
  return n;
}

static int holds(int op, double x, double want) {
  switch (op) {
  case OP_LT: return x < want;
  case OP_LE: return x <= want;
  case OP_GT: return x > want;
  default: return x >= want;
  }
}

/* What the answer rate is over: the window, or the time the window's
 * answers took when they came after it (ld_result.answered_s). */
static double answer_span(const ld_result *res) {
  return res->answered_s > res->window_s ? res->answered_s : res->window_s;
}

/* The rate the open-loop schedule kept over the window: its sends, made or
 * not, over the window. That is --rate, except where --rate times the
 * window is not whole: the schedule sends at 0, 1/rate, 2/rate ..., so
 * --rate 1 for 0.1 s sends one, 10 a second over that window, and a share
 * of --rate said 1000 %. A share of the target is of this. */
static double schedule_rate(const rp_run *run) {
  const ld_stats *s = &run->res->total;
  double sched = (double)(s->sent + unsent_all(s)), w = run->res->window_s;
  return w > 0 && sched > 0 ? sched / w : run->cfg->rate;
}

/* errors and requests: as the verdict counts them (answers, lost requests
 * and sends never made), the share an errors term bounds. */
static void eval_term(const rp_run *run, const rp_term *t, rp_term_result *r, uint64_t errors,
                      uint64_t requests) {
  const ld_stats *s = &run->res->total;
  double window = answer_span(run->res);
  r->measurable = 1;
  const hist *h = t->uncorrected    ? &s->lat_unc
                  : t->outcome >= 0 ? &s->out_lat[t->outcome]
                                    : &s->lat;
  uint64_t n_ans = answers(s);
  double denom = 0;
  switch (t->metric) {
  case M_LATENCY: r->observed = (double)hist_percentile(h, t->pct); break;
  case M_MAX: r->observed = (double)hist_max(h); break;
  case M_MEAN: r->observed = hist_mean(h); break;
  case M_ERRORS:
    r->observed = (double)errors;
    denom = (double)requests;
    break;
  case M_OUTCOME:
    r->observed = (double)s->out_n[t->outcome];
    denom = (double)n_ans;
    break;
  case M_RATE:
    r->observed = window > 0 ? (double)n_ans / window : 0;
    if (t->share) {
      if (run->cfg->mode != LD_OPEN) {
        r->measurable = 0;
      } else {
        r->observed /= schedule_rate(run);
      }
    }
    break;
  case M_UNSENT:
    r->observed = (double)unsent_all(s);
    denom = (double)(s->sent + unsent_all(s));
    break;
  case M_LATE:
    r->observed = (double)late_all(s);
    denom = (double)(s->sent + unsent_all(s));
    break;
  }
  if (t->share && t->metric != M_RATE) r->observed = denom > 0 ? r->observed / denom : 0;
  /* a latency of nothing at all is not a pass */
  if ((t->metric == M_LATENCY || t->metric == M_MAX || t->metric == M_MEAN) && hist_count(h) == 0)
    r->measurable = 0;
  r->ok = r->measurable && holds(t->op, r->observed, t->value);
}

static void reason(rp_verdict *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reason(rp_verdict *v, const char *fmt, ...) {
  if (v->nreasons >= RP_REASONS_MAX) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v->reasons[v->nreasons++], RP_REASON_BYTES, fmt, ap);
  va_end(ap);
}

/* What an unexpected answer usually means, for spike's codes and for any
 * server's statuses. NULL when there is nothing useful to say. */
static const char *hint(int spike_api, int status, int64_t code, int fresh_users) {
  if (spike_api) {
    switch (-code) {
    case SPIKE_ENOCREDS:
      return "the server wants credentials: --jwt-secret (its --auth jwt secret) or --header "
             "'Authorization: Bearer ...'";
    case SPIKE_ETOKEN: return "the token was refused: does --jwt-secret match the server's?";
    case SPIKE_EFORBIDDEN: return "not allowed for this caller";
    case SPIKE_ELIMIT:
      return fresh_users ? "users that should be new already hold their limit: these ids bought "
                           "in an earlier run on this store; give each run its own --user-base"
                         : NULL;
    case SPIKE_ENOTLIVE: return "the sale is not live (not started, ended or closed)";
    case SPIKE_ENOEVENT: return "no such event: check --event";
    case SPIKE_ENOROUTE: return "no such route: check --url's path";
    default: break;
    }
  }
  if (status == 401 || status == 403)
    return "the server wants credentials (--header, --jwt-secret)";
  if (status == 404) return "nothing at that path: check --url and the template's path";
  if (status >= 500) return "the server failed these requests";
  return NULL;
}

/* "91206 answered status 401 (most with code 20001, credentials missing): hint"
 * for the three most common unexpected statuses. */
static void describe_unexpected(const rp_run *run, char *out, size_t cap) {
  const ld_stats *s = &run->res->total;
  out[0] = '\0';
  int chosen[3] = {-1, -1, -1};
  for (int k = 0; k < 3; k++) {
    uint64_t best = 0;
    for (int i = 0; i < 600; i++)
      if (s->bad_status[i] > best && i != chosen[0] && i != chosen[1]) {
        best = s->bad_status[i];
        chosen[k] = i;
      }
    if (chosen[k] < 0) break;
    sb_add(out, cap, "%s%" PRIu64 " answered status %d", k ? ", " : "", best, chosen[k]);
  }
  int64_t top_code = -1;
  uint64_t code_n = 0;
  for (uint64_t i = 0; i < s->bad_ncodes; i++)
    if (s->bad_code_n[i] > code_n) code_n = s->bad_code_n[i], top_code = s->bad_code[i];
  if (code_n > 0 && run->sc->spike_api && top_code > 0 && top_code <= 99999)
    sb_add(out, cap, " (most with code %" PRId64 ", %s)", top_code, spike_strerror((int)-top_code));
  else if (code_n > 0)
    sb_add(out, cap, " (most with code %" PRId64 ")", top_code);
  const char *h = hint(run->sc->spike_api, chosen[0], code_n ? top_code : -1, run->sc->users == 0);
  if (h != NULL) sb_add(out, cap, ": %s", h);
}

void rp_judge(const rp_run *run, rp_verdict *v) {
  memset(v, 0, sizeof(*v));
  const ld_result *res = run->res;
  const ld_stats *s = &res->total;
  const sc_scenario *sc = run->sc;
  uint64_t n = answers(s), l = lost(s);
  /* Sends the window's schedule owed that were never made: no connection
   * could be opened (the server went away) or none was free within the
   * request timeout after the end (the server stopped answering). They are
   * requests it did not answer, like lost ones. After a Ctrl-C, which cut
   * that grace short, only the first kind counts. */
  uint64_t gone = s->unsent[CAUSE_DOWN] + (res->stop_ns != 0 ? 0 : s->unsent[CAUSE_SERVER]);
  v->errors = s->unexpected + l + gone;
  v->requests = n + l + gone;
  v->errors_ok = 1;
  int failed = 0, described = 0;

  /* a signal before the measured window began: nothing was measured, which
   * is not the server's failure (it said "no answers", or "down" while the
   * connections were still being opened) */
  int cut_before = res->stop_ns != 0 && res->window_s <= 0;
  if (cut_before) {
    /* the interrupted reason below says it */
  } else if (res->connected == 0) {
    reason(v,
           "the server was down: no connection to %s opened (%" PRIu64 " attempts failed, %" PRIu64
           " refused)",
           run->url, s->e_connect, res->connect_refused);
    failed = 1;
  } else if (n == 0) {
    reason(v, "no answers in the measured window (%" PRIu64 " sent, %" PRIu64 " lost)", s->sent, l);
    failed = 1;
  }
  if (n > 0) {
    uint64_t aim = s->out_n[OUT_WON] + (sc->id == SC_GET ? 0 : s->out_n[OUT_SOLD_OUT]);
    if (aim == 0) {
      char why[RP_REASON_BYTES];
      describe_unexpected(run, why, sizeof(why));
      reason(v, "no answer was %s: %s", sc->id == SC_GET ? "a success" : "a win or a sold out",
             why[0] ? why : "every answer was limited or shed");
      described = why[0] != '\0';
      failed = 1;
    }
  }
  /* every term, errors ones included: each errors term must hold (a count
   * and a share may both be given; the last one alone decided before) */
  int errors_terms_hold = 1;
  for (int i = 0; run->slo && i < run->slo->n; i++) {
    eval_term(run, &run->slo->t[i], &v->terms[i], v->errors, v->requests);
    if (run->slo->t[i].metric == M_ERRORS && !v->terms[i].ok) errors_terms_hold = 0;
  }
  if (v->errors > 0) {
    v->errors_ok = run->slo != NULL && run->slo->errors_given && errors_terms_hold;
    if (!v->errors_ok) {
      char why[RP_REASON_BYTES] = "";
      if (!described) describe_unexpected(run, why, sizeof(why));
      char lostw[320] = "";
      if (l > 0)
        sb_say(lostw, sizeof(lostw),
               "%s%" PRIu64 " request%s lost (%" PRIu64 " timed out, %" PRIu64 " cut off, %" PRIu64
               " not written, %" PRIu64 " unreadable)",
               why[0] ? "; " : "", l, l == 1 ? "" : "s", s->e_timeout, s->e_read, s->e_write,
               s->e_parse);
      if (gone > s->unsent[CAUSE_DOWN])
        sb_add(lostw, sizeof(lostw),
               "%s%" PRIu64 " never sent: every connection still waited for an answer "
               "--timeout-ms after the window (the server was behind)",
               why[0] || lostw[0] ? "; " : "", gone - s->unsent[CAUSE_DOWN]);
      if (s->unsent[CAUSE_DOWN] > 0)
        sb_add(lostw, sizeof(lostw),
               "%s%" PRIu64 " never sent: no connection was open (the server went away, refused "
               "connections or let requests time out: %" PRIu64 " connects failed, %" PRIu64
               " refused)",
               why[0] || lostw[0] ? "; " : "", s->unsent[CAUSE_DOWN], s->e_connect,
               res->connect_refused);
      reason(v,
             "%" PRIu64 " of %" PRIu64 " requests (%.3f%%) did not get an answer this scenario "
             "expects%s%s%s%s",
             v->errors, v->requests,
             100.0 * (double)v->errors / (double)(v->requests ? v->requests : 1),
             run->slo && run->slo->errors_given ? " (over the --slo errors threshold)"
                                                : " (allowed: none without --slo errors)",
             why[0] || lostw[0] ? ": " : "", why, lostw);
      failed = 1;
    }
  }
  if (run->verify != NULL && (run->verify->failed > 0 || run->verify->error[0] != '\0')) {
    if (run->verify->error[0])
      reason(v, "--verify: %s", run->verify->error);
    else
      reason(v, "--verify: %d of %d checks failed", run->verify->failed, run->verify->n);
    failed = 1;
  }
  int slo_failed = 0;
  for (int i = 0; run->slo && i < run->slo->n; i++) {
    const rp_term *t = &run->slo->t[i];
    if (t->metric == M_ERRORS || v->terms[i].ok) continue;
    slo_failed = 1;
    char obs[64];
    if (!v->terms[i].measurable)
      snprintf(obs, sizeof(obs), "%s",
               t->metric == M_RATE ? "no --rate to compare with" : "no answers");
    else if (t->metric <= M_MEAN)
      rp_fmt_ns(obs, sizeof(obs), v->terms[i].observed);
    else if (t->share)
      snprintf(obs, sizeof(obs), "%.3f%%", 100.0 * v->terms[i].observed);
    else
      snprintf(obs, sizeof(obs), "%.6g", v->terms[i].observed);
    reason(v, "--slo %s did not hold: %s", t->text, obs);
  }
  /* A signal ended the run: what it measured is reported, never as a
   * pass. Sends due before the signal that no connection was free to make
   * (each waited for an answer: the server was behind) are left out of the
   * corrected latency, which then understates it: said, with their number. */
  if (res->stop_ns != 0) {
    if (s->unsent[CAUSE_SERVER] > 0)
      reason(v,
             "interrupted: the window ends at the signal; %" PRIu64 " sends due before it were "
             "never made, every connection still waiting for an answer (the server was behind): "
             "their wait is not in the corrected latency, which understates this run",
             s->unsent[CAUSE_SERVER]);
    else if (cut_before)
      reason(v, "interrupted before the measured window began: nothing was measured");
    else
      reason(v, "interrupted: the window ends at the signal; what was measured up to it is above");
  }
  v->exit_code = failed ? 1 : res->stop_ns != 0 ? 4 : slo_failed ? 3 : 0;
}

/* ---- explanations ------------------------------------------------------------------- */

void rp_explain(const rp_run *run, char *out, size_t cap) {
  const ld_result *res = run->res;
  const ld_stats *s = &res->total;
  out[0] = '\0';
  if (run->cfg->mode == LD_FLASH) return;
  int gen_busy = res->cpu_max >= 0.9;
  if (run->cfg->mode == LD_CLOSED) {
    if (gen_busy)
      sb_add(out, cap,
             "The load generator's busiest thread was at %.0f%% CPU: this rate may be spikebench's "
             "limit, not the server's (add --threads, or more machines and spikebench merge). ",
             100.0 * res->cpu_max);
    return;
  }
  uint64_t late = late_all(s), unsent = unsent_all(s);
  if (res->connected == 0) {
    sb_add(out, cap,
           "None of the %.0f sends the schedule called for were made: the server was down or "
           "refused connections (%" PRIu64 " connects failed, %" PRIu64 " refused).",
           /* one at 0, 1/rate, ... before the window's end */
           ceil(run->cfg->rate * run->cfg->duration_s - 1e-9), s->e_connect, res->connect_refused);
    return;
  }
  if (late == 0 && unsent == 0) {
    sb_add(out, cap, "Every request went out on schedule (none more than 1 ms late). ");
  } else {
    uint64_t sched = s->sent + unsent;
    sb_add(out, cap,
           "Of %" PRIu64 " sends the schedule called for, %" PRIu64
           " went out more than 1 ms late and %" PRIu64 " were never made. ",
           sched, late, unsent);
    static const char *const why[CAUSE_COUNT] = {
        "because the server was behind: a connection waits for its answer before its next "
        "send, so the schedule slipped while answers were slow (the latency above counts the "
        "wait of a send made late; one never made found no connection free within "
        "--timeout-ms after the end, and counts as a request not answered; more --connections "
        "let the schedule go on, a lower --rate finds what the server sustains)",
        "because the load generator was behind: its pacer fired late while connections were "
        "idle",
        "because no connection was open: the server went away, refused connections or let a "
        "request time out, and they were being re-opened"};
    for (int c = 0; c < CAUSE_COUNT; c++) {
      if (s->late[c] == 0 && s->unsent[c] == 0) continue;
      char mx[32];
      rp_fmt_ns(mx, sizeof(mx), (double)s->late_max_ns[c]);
      if (s->late[c] > 0) sb_add(out, cap, "%" PRIu64 " late (up to %s)", s->late[c], mx);
      if (s->late[c] > 0 && s->unsent[c] > 0) sb_add(out, cap, " and ");
      if (s->unsent[c] > 0) sb_add(out, cap, "%" PRIu64 " never made", s->unsent[c]);
      sb_add(out, cap, " %s", why[c]);
      if (c == CAUSE_GENERATOR && gen_busy)
        sb_add(out, cap,
               " (busiest thread at %.0f%% CPU: add --threads, or more machines and "
               "spikebench merge)",
               100.0 * res->cpu_max);
      else if (c == CAUSE_GENERATOR)
        sb_add(out, cap,
               " (busiest thread at only %.0f%% CPU: the machine did not run it on time; "
               "other processes share its cores)",
               100.0 * res->cpu_max);
      if (c == CAUSE_SERVER && s->late_idle_peer > 0)
        sb_add(out, cap,
               " (%" PRIu64 " of the late ones while another connection stood idle: each send "
               "is bound to its connection, so that wait was for one slow answer, not for the "
               "server's capacity; more --connections take it out of the corrected latency)",
               s->late_idle_peer);
      if (c == CAUSE_DOWN)
        sb_add(out, cap, " (%" PRIu64 " connects failed, %" PRIu64 " refused)", s->e_connect,
               res->connect_refused);
      sb_add(out, cap, ". ");
    }
  }
  if (gen_busy && s->late[CAUSE_GENERATOR] == 0 && s->unsent[CAUSE_GENERATOR] == 0)
    sb_add(out, cap, "The busiest load thread was at %.0f%% CPU: close to the generator's limit. ",
           100.0 * res->cpu_max);
  size_t n = strlen(out);
  if (n > 0 && out[n - 1] == ' ') out[n - 1] = '\0';
}

/* ---- text ----------------------------------------------------------------------------- */

static void print_lat(FILE *f, const char *what, const hist *h) {
  fprintf(f, "  %-12s", what);
  if (hist_count(h) == 0) {
    fprintf(f, "no answers\n");
    return;
  }
  fprintf(
      f,
      "p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  p99.99 %.3f  max %.3f ms  (mean %.3f, n %" PRIu64
      ")\n",
      ms(hist_percentile(h, 50)), ms(hist_percentile(h, 90)), ms(hist_percentile(h, 99)),
      ms(hist_percentile(h, 99.9)), ms(hist_percentile(h, 99.99)), ms(hist_max(h)),
      hist_mean(h) / 1e6, hist_count(h));
  if (h->clamped > 0)
    fprintf(f, "  %-12s(%" PRIu64 " outside the histogram's 1 us .. %.0f s, counted at its nearer end)\n",
            "", h->clamped, HIST_MAX_NS / 1e9);
}

void rp_wrap(FILE *f, const char *label, int label_w, int width, const char *text) {
  const char *p = text;
  int first = 1;
  size_t room = width > label_w + 12 ? (size_t)(width - label_w - 2) : 10;
  while (*p) {
    size_t n = strlen(p), cut = n;
    if (n > room) {
      cut = room;
      while (cut > 0 && p[cut] != ' ')
        cut--;
      if (cut == 0) cut = room;
    }
    fprintf(f, "  %-*s%.*s\n", label_w, first ? label : "", (int)cut, p);
    first = 0;
    p += cut;
    while (*p == ' ')
      p++;
  }
}

/* Wrap under the summary's 12-column labels. */
static void print_wrapped(FILE *f, const char *label, const char *text) {
  rp_wrap(f, label, 12, 98, text);
}

static const char *mode_name(int mode) {
  return mode == LD_OPEN ? "open" : mode == LD_CLOSED ? "closed" : "flash";
}

void rp_print_row(FILE *f, const ld_row *r) {
  uint64_t ans = 0;
  for (int i = 0; i < OUT_COUNT; i++)
    ans += r->out_n[i];
  fprintf(f,
          "[%7.2fs]%s sent %" PRIu64 " answered %" PRIu64 " (won %" PRIu64 ", sold out %" PRIu64
          ", limited %" PRIu64 ", shed %" PRIu64 ", error %" PRIu64 ")  p50 %.3f  p99 %.3f  max "
          "%.3f ms  in flight %" PRIu64 "%s\n",
          (double)r->end_ns / 1e9, r->warmup ? " warmup" : "",
          r->sent, ans, r->out_n[OUT_WON], r->out_n[OUT_SOLD_OUT], r->out_n[OUT_LIMITED],
          r->out_n[OUT_SHED], r->out_n[OUT_ERROR], ms(r->p50_ns), ms(r->p99_ns), ms(r->max_ns),
          r->in_flight, r->lost ? " (some lost)" : "");
}

static void print_flash(FILE *f, const rp_run *run) {
  const ld_result *res = run->res;
  const ld_stats *t = &res->total;
  uint64_t t0 = res->t0_ns;
  char line[600];
  sb_say(line, sizeof(line),
         "%" PRIu64 " connections fired at t0, all written within %.3f ms; %" PRIu64
         " answers in all (a connection that won buys again until sold out)",
         t->burst_sent, ms(hist_max(&t->lag)), answers(t));
  print_wrapped(f, "crowd", line);
  sb_say(line, sizeof(line), "%" PRIu64 " won", t->created);
  if (t->first_won_ns > t0)
    sb_add(line, sizeof(line), " (first at %.3f ms, last at %.3f ms)", ms(t->first_won_ns - t0),
           ms(t->last_won_ns - t0));
  if (t->soldout_seen && t->created == 0)
    sb_add(line, sizeof(line), "; sold out before the crowd came");
  else if (t->soldout_seen)
    sb_add(line, sizeof(line), "; sold out: first sold-out answer at %.3f ms",
           ms(t->first_soldout_ns - t0));
  else
    sb_add(line, sizeof(line), "; not sold out");
  sb_add(line, sizeof(line), "; every burst answer in by %.3f ms",
         t->burst_last_ns > t0 ? ms(t->burst_last_ns - t0) : 0.0);
  print_wrapped(f, "sale", line);
  print_lat(f, "burst", &t->burst);
  print_lat(f, "own send", &t->burst_own);
  fprintf(f,
          "              (burst: each connection's first answer, timed from the common start;\n"
          "              own send: the same answers timed from when each request was written)\n");
}

void rp_print(FILE *f, const rp_run *run, const rp_verdict *v) {
  const ld_config *cfg = run->cfg;
  const ld_result *res = run->res;
  const ld_stats *t = &res->total;
  const sc_scenario *sc = run->sc;
  uint64_t n = answers(t);
  fprintf(f, "spikebench %s on %s", sc_names[sc->id], run->url);
  if (sc->spike_api && sc->events > 1)
    fprintf(f, " (events %" PRIu64 "..%" PRIu64 ")", sc->event, sc->event + sc->events - 1);
  else if (sc->spike_api)
    fprintf(f, " (event %" PRIu64 ")", sc->event);
  fprintf(f, ", %" PRIu64 " connections, %u thread%s, ", cfg->conns, cfg->threads,
          cfg->threads == 1 ? "" : "s");
  if (cfg->mode == LD_OPEN)
    fprintf(f, "open loop at %.0f req/s, %.1f s (+%.1f s warmup)\n", cfg->rate, cfg->duration_s,
            cfg->warmup_s);
  else if (cfg->mode == LD_CLOSED)
    fprintf(f, "closed loop (--max), %.1f s (+%.1f s warmup)\n", cfg->duration_s, cfg->warmup_s);
  else
    fprintf(f, "flash crowd\n");
  if (res->stop_ns) fprintf(f, "  interrupted: the window ends at the signal\n");

  if (cfg->mode == LD_FLASH) {
    print_flash(f, run);
  } else {
    double aw = answer_span(res) > 0 ? answer_span(res) : 1;
    if (cfg->mode == LD_OPEN) {
      double sr = schedule_rate(run);
      fprintf(f,
              "  rate        target %.0f req/s; sent %.1f/s, answered %.1f/s (%.1f%% of target)\n",
              cfg->rate, (double)t->sent / aw, (double)n / aw, 100.0 * (double)n / aw / sr);
      if (fabs(sr - cfg->rate) > 0.01 * cfg->rate) {
        char note[256];
        snprintf(note, sizeof(note),
                 "(the schedule's %" PRIu64 " sends in the %.3f s window are %.1f/s, as --rate "
                 "times the window is not whole: the share is of that)",
                 t->sent + unsent_all(t), res->window_s, sr);
        print_wrapped(f, "", note);
      }
    } else
      fprintf(f, "  rate        %" PRIu64 " answers in %.3f s = %.1f req/s\n", n, aw,
              (double)n / aw);
    if (answer_span(res) > res->window_s + 0.001)
      fprintf(f,
              "              (the window's %.3f s of sends and their answers took %.3f s: "
              "both rates are over that)\n",
              res->window_s, res->answered_s);
    char why[RP_EXPLAIN_BYTES];
    rp_explain(run, why, sizeof(why));
    if (why[0]) print_wrapped(f, "", why);
    if (cfg->mode == LD_OPEN) {
      print_lat(f, "corrected", &t->lat);
      print_lat(f, "uncorrected", &t->lat_unc);
      fprintf(f, "              (corrected: from each request's intended send time; uncorrected: "
                 "from its actual send)\n");
      if (hist_count(&t->lag) > 0)
        fprintf(f,
                "  send lag    p99 %.3f ms, max %.3f ms (the pacer's own lateness, in the "
                "corrected figures)\n",
                ms(hist_percentile(&t->lag, 99)), ms(hist_max(&t->lag)));
    } else {
      print_lat(f, "latency", &t->lat);
      fprintf(f, "              (closed loop: each request is sent when the last is answered, so "
                 "nothing is corrected)\n");
    }
  }
  for (int o = 0; o < OUT_COUNT; o++) {
    if (t->out_n[o] == 0) continue;
    fprintf(f, "  %-12s%" PRIu64 " (%.1f%%)  ", sc_outcome_names[o], t->out_n[o],
            100.0 * (double)t->out_n[o] / (double)(n ? n : 1));
    const hist *h = &t->out_lat[o];
    fprintf(f, "p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms%s\n", ms(hist_percentile(h, 50)),
            ms(hist_percentile(h, 99)), ms(hist_percentile(h, 99.9)), ms(hist_max(h)),
            sc->expected[o] ? "" : "  (not expected here)");
  }
  if (sc->id == SC_MIXED)
    for (int k = 0; k < sc->nreq; k++)
      if (hist_count(&t->kind_lat[k]) > 0) print_lat(f, sc->req[k].name, &t->kind_lat[k]);
  if (n > 0) {
    fprintf(f, "  status     ");
    for (int i = 0; i < 600; i++)
      if (t->status[i]) fprintf(f, " %d: %" PRIu64, i, t->status[i]);
    fputc('\n', f);
  }
  if (t->ncodes || t->code_other || t->no_code) {
    fprintf(f, "  codes      ");
    for (uint64_t i = 0; i < t->ncodes; i++)
      fprintf(f, " %" PRId64 ": %" PRIu64, t->code[i], t->code_n[i]);
    if (t->code_other) fprintf(f, " other: %" PRIu64, t->code_other);
    if (t->no_code) fprintf(f, " none: %" PRIu64, t->no_code);
    fputc('\n', f);
  }
  fprintf(f,
          "  socket      connect %" PRIu64 " (refused %" PRIu64 "), read %" PRIu64
          ", write %" PRIu64 ", timeout %" PRIu64 ", parse %" PRIu64
          "; closed by server when idle %" PRIu64 "\n",
          t->e_connect, res->connect_refused, t->e_read, t->e_write, t->e_timeout, t->e_parse,
          t->server_closed);
  char gen[160];
  sb_say(gen, sizeof(gen), "busiest load thread at %.0f%% CPU over the run", 100.0 * res->cpu_max);
  print_wrapped(f, "generator", gen);
  if (t->minted > 0)
    fprintf(f,
            "  tokens      %" PRIu64 " signed during the run, %.1f us each on the sending thread\n",
            t->minted, (double)t->mint_ns / 1e3 / (double)t->minted);
  if (t->pay_dropped)
    fprintf(f, "  note        %" PRIu64 " orders not paid: the pay queue was full\n",
            t->pay_dropped);
  if (run->verify != NULL) {
    const vf_report *vr = run->verify;
    if (vr->error[0]) fprintf(f, "  verify      FAILED: %s\n", vr->error);
    for (int i = 0; i < vr->n; i++)
      fprintf(f, "  verify      %-4s %-24s %s\n", vr->checks[i].ok ? "ok" : "FAIL",
              vr->checks[i].name, vr->checks[i].detail);
  }
  for (int i = 0; run->slo && i < run->slo->n; i++) {
    const rp_term *term = &run->slo->t[i];
    if (term->metric == M_ERRORS) {
      int ok = v->errors == 0 || v->terms[i].ok;
      if (term->share)
        fprintf(f, "  slo         %-4s %-24s %.3f%% (%" PRIu64 " of %" PRIu64 ")\n", ok ? "ok" : "FAIL",
                term->text, 100.0 * v->terms[i].observed, v->errors, v->requests);
      else
        fprintf(f, "  slo         %-4s %-24s %" PRIu64 " of %" PRIu64 "\n", ok ? "ok" : "FAIL",
                term->text, v->errors, v->requests);
      continue;
    }
    const rp_term_result *r = &v->terms[i];
    char obs[48];
    if (!r->measurable)
      snprintf(obs, sizeof(obs), "not measurable");
    else if (term->metric <= M_MEAN)
      rp_fmt_ns(obs, sizeof(obs), r->observed);
    else if (term->share)
      snprintf(obs, sizeof(obs), "%.3f%%", 100.0 * r->observed);
    else
      snprintf(obs, sizeof(obs), "%.6g", r->observed);
    fprintf(f, "  slo         %-4s %-24s %s\n", r->ok ? "ok" : "FAIL", term->text, obs);
  }
  if (v->exit_code == 0) {
    fprintf(f, "  verdict     PASS\n");
    /* PASS is about the answers; a rate far short of the target is easy to
     * misread under it */
    double aw = answer_span(res) > 0 ? answer_span(res) : 1;
    double share = cfg->mode == LD_OPEN ? (double)n / aw / schedule_rate(run) : 1.0;
    if (share < 0.9) {
      char note[256];
      snprintf(note, sizeof(note),
               "(%s, but only %.1f%% of the target rate was answered: --slo 'rate>=95%%' "
               "makes the rate part of the verdict)",
               v->errors == 0 ? "every answer was a correct one" : "the errors were within --slo",
               100.0 * share);
      print_wrapped(f, "", note);
    }
  } else {
    fprintf(f, "  verdict     %s (exit %d)\n",
            v->exit_code == 1   ? "FAIL"
            : v->exit_code == 4 ? "INTERRUPTED"
                                : "SLO MISSED",
            v->exit_code);
    for (int i = 0; i < v->nreasons; i++)
      print_wrapped(f, "", v->reasons[i]);
  }
}

/* ---- JSON ------------------------------------------------------------------------------- */

static void json_lat(FILE *f, const hist *h) {
  fprintf(f, "{\"count\":%" PRIu64 ",\"min\":%.6f,\"mean\":%.6f,\"stddev\":%.6f", hist_count(h),
          ms(hist_min(h)), hist_mean(h) / 1e6, hist_stddev(h) / 1e6);
  for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++)
    fprintf(f, ",\"%s\":%.6f", pct_keys[i], ms(hist_percentile(h, pcts[i])));
  fprintf(f, ",\"max\":%.6f,\"clamped\":%" PRIu64 "}", ms(hist_max(h)), h->clamped);
}

static void json_causes(FILE *f, const char *key, const uint64_t *v) {
  fprintf(f, ",\"%s\":{", key);
  for (int c = 0; c < CAUSE_COUNT; c++)
    fprintf(f, "%s\"%s\":%" PRIu64, c ? "," : "", ld_cause_names[c], v[c]);
  fputc('}', f);
}

void rp_write_json(FILE *f, const rp_run *run, const rp_verdict *v) {
  const ld_config *cfg = run->cfg;
  const ld_result *res = run->res;
  const ld_stats *t = &res->total;
  const sc_scenario *sc = run->sc;
  uint64_t n = answers(t);
  double w = res->window_s, aw = answer_span(res);
  fprintf(f, "{\"tool\":\"spikebench\",\"scenario\":\"%s\",\"request\":", sc_names[sc->id]);
  js_write_str(f, sc->req[0].name);
  fputs(",\"url\":", f);
  js_write_str(f, run->url);
  fprintf(f,
          ",\"run_id\":\"%s\",\"event\":%" PRIu64 ",\"events\":%" PRIu64
          ",\"connections\":%" PRIu64 ",\"threads\":%u,\"mode\":\"%s\"",
          sc->run_id, sc->event, sc->events ? sc->events : 1, cfg->conns, cfg->threads, mode_name(cfg->mode));
  fprintf(f,
          ",\"rate\":%.3f,\"duration_s\":%.3f,\"warmup_s\":%.3f,\"user_base\":%" PRIu64
          ",\"users\":%" PRIu64,
          cfg->mode == LD_OPEN ? cfg->rate : 0.0, cfg->duration_s, cfg->warmup_s, sc->user_base,
          sc->users);
  fprintf(f, ",\"interrupted\":%s", res->stop_ns ? "true" : "false");
  fprintf(f,
          ",\"window_s\":%.6f,\"answered_s\":%.6f,\"requests\":%" PRIu64
          ",\"rps\":%.3f,\"sent\":%" PRIu64 ",\"unsent\":%" PRIu64 ",\"late\":%" PRIu64,
          w, aw, n, aw > 0 ? (double)n / aw : 0.0, t->sent, unsent_all(t), late_all(t));
  fprintf(f, ",\"achieved\":{\"sent_per_s\":%.3f,\"answered_per_s\":%.3f,\"share_of_target\":%.6f}",
          aw > 0 ? (double)t->sent / aw : 0.0, aw > 0 ? (double)n / aw : 0.0,
          cfg->mode == LD_OPEN && aw > 0 ? (double)n / aw / schedule_rate(run) : 0.0);
  json_causes(f, "late_by_cause", t->late);
  json_causes(f, "unsent_by_cause", t->unsent);
  fprintf(f, ",\"late_server_with_idle_connection\":%" PRIu64, t->late_idle_peer);
  fputs(",\"explain\":", f);
  char why[RP_EXPLAIN_BYTES];
  rp_explain(run, why, sizeof(why));
  js_write_str(f, why);
  fprintf(f, ",\"generator\":{\"cpu_max\":%.4f,\"tokens_signed\":%" PRIu64 ",\"token_us\":%.3f}",
          res->cpu_max, t->minted, t->minted ? (double)t->mint_ns / 1e3 / (double)t->minted : 0.0);
  fputs(",\"latency_ms\":", f);
  json_lat(f, &t->lat);
  fputs(",\"latency_uncorrected_ms\":", f);
  json_lat(f, &t->lat_unc);
  fputs(",\"send_lag_ms\":", f);
  json_lat(f, &t->lag);
  fputs(",\"outcomes\":{", f);
  for (int o = 0; o < OUT_COUNT; o++)
    fprintf(f, "%s\"%s\":%" PRIu64, o ? "," : "", sc_outcome_names[o], t->out_n[o]);
  fputs("},\"expected\":[", f);
  for (int o = 0, first = 1; o < OUT_COUNT; o++)
    if (sc->expected[o]) {
      fprintf(f, "%s\"%s\"", first ? "" : ",", sc_outcome_names[o]);
      first = 0;
    }
  fputs("],\"by_outcome\":{", f);
  for (int o = 0, first = 1; o < OUT_COUNT; o++) {
    if (hist_count(&t->out_lat[o]) == 0) continue;
    fprintf(f, "%s\"%s\":", first ? "" : ",", sc_outcome_names[o]);
    json_lat(f, &t->out_lat[o]);
    first = 0;
  }
  fputs("},\"by_kind\":{", f);
  for (int k = 0, first = 1; k < sc->nreq; k++) {
    if (hist_count(&t->kind_lat[k]) == 0) continue;
    fprintf(f, "%s", first ? "" : ",");
    js_write_str(f, sc->req[k].name);
    fputc(':', f);
    json_lat(f, &t->kind_lat[k]);
    first = 0;
  }
  fputs("},\"status\":{", f);
  for (int i = 0, first = 1; i < 600; i++) {
    if (t->status[i] == 0) continue;
    fprintf(f, "%s\"%d\":%" PRIu64, first ? "" : ",", i, t->status[i]);
    first = 0;
  }
  fputs("},\"codes\":{", f);
  for (uint64_t i = 0; i < t->ncodes; i++)
    fprintf(f, "%s\"%" PRId64 "\":%" PRIu64, i ? "," : "", t->code[i], t->code_n[i]);
  fprintf(f, "},\"codes_other\":%" PRIu64 ",\"no_envelope\":%" PRIu64, t->code_other, t->no_code);
  fprintf(f,
          ",\"errors\":{\"connect\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"read\":%" PRIu64
          ",\"write\":%" PRIu64 ",\"timeout\":%" PRIu64 ",\"parse\":%" PRIu64
          ",\"server_closed\":%" PRIu64 ",\"unexpected\":%" PRIu64 "}",
          t->e_connect, res->connect_refused, t->e_read, t->e_write, t->e_timeout, t->e_parse,
          t->server_closed, t->unexpected);
  fprintf(f,
          ",\"run\":{\"created\":%" PRIu64 ",\"paid\":%" PRIu64 ",\"unknown_reserve\":%" PRIu64
          ",\"unknown_pay\":%" PRIu64 ",\"sold_out_answers\":%" PRIu64 ",\"pay_dropped\":%" PRIu64
          "}",
          t->created, t->paid, t->unknown_buy, t->unknown_pay, t->soldout_seen, t->pay_dropped);
  if (cfg->mode == LD_FLASH) {
    uint64_t t0 = res->t0_ns;
    fprintf(f,
            ",\"flash\":{\"sold_out\":%s,\"sell_out_ms\":%.6f,\"first_won_ms\":%.6f,"
            "\"first_sold_out_ms\":%.6f,\"burst_done_ms\":%.6f,\"burst\":",
            t->soldout_seen ? "true" : "false", t->last_won_ns > t0 ? ms(t->last_won_ns - t0) : 0.0,
            t->first_won_ns > t0 ? ms(t->first_won_ns - t0) : 0.0,
            t->first_soldout_ns > t0 ? ms(t->first_soldout_ns - t0) : 0.0,
            t->burst_last_ns > t0 ? ms(t->burst_last_ns - t0) : 0.0);
    json_lat(f, &t->burst);
    fputs(",\"burst_from_own_send\":", f);
    json_lat(f, &t->burst_own);
    fprintf(f, ",\"burst_written_ms\":%.6f}", ms(hist_max(&t->lag)));
  }
  fprintf(f, ",\"timeline\":{\"interval_ms\":%" PRIu64 ",\"rows\":[",
          cfg->interval_ms ? cfg->interval_ms : 1000);
  for (size_t i = 0; i < res->nrows; i++) {
    const ld_row *r = &res->rows[i];
    fprintf(f, "%s{\"t\":%.3f,\"end\":%.3f,\"warmup\":%s,\"sent\":%" PRIu64, i ? "," : "",
            (double)r->t_ns / 1e9, (double)r->end_ns / 1e9, r->warmup ? "true" : "false",
            r->sent);
    for (int o = 0; o < OUT_COUNT; o++)
      fprintf(f, ",\"%s\":%" PRIu64, sc_outcome_names[o], r->out_n[o]);
    fprintf(f,
            ",\"lost\":%" PRIu64 ",\"late\":%" PRIu64 ",\"in_flight\":%" PRIu64
            ",\"p50_ms\":%.6f,\"p99_ms\":%.6f,\"max_ms\":%.6f%s}",
            r->lost, r->late, r->in_flight, ms(r->p50_ns), ms(r->p99_ns), ms(r->max_ns),
            r->partial ? ",\"partial\":true" : "");
  }
  fputs("]}", f);
  if (run->verify != NULL) {
    const vf_report *vr = run->verify;
    fprintf(f, ",\"verify\":{\"ok\":%s", vr->failed || vr->error[0] ? "false" : "true");
    if (vr->error[0]) {
      fputs(",\"error\":", f);
      js_write_str(f, vr->error);
    }
    fputs(",\"checks\":[", f);
    for (int i = 0; i < vr->n; i++) {
      fprintf(f, "%s{\"name\":\"%s\",\"ok\":%s,\"detail\":", i ? "," : "", vr->checks[i].name,
              vr->checks[i].ok ? "true" : "false");
      js_write_str(f, vr->checks[i].detail);
      fputc('}', f);
    }
    fputs("]}", f);
  }
  fprintf(f,
          ",\"verdict\":{\"ok\":%s,\"exit\":%d,\"errors\":%" PRIu64 ",\"of\":%" PRIu64
          ",\"reasons\":[",
          v->exit_code == 0 ? "true" : "false", v->exit_code, v->errors, v->requests);
  for (int i = 0; i < v->nreasons; i++) {
    fputs(i ? "," : "", f);
    js_write_str(f, v->reasons[i]);
  }
  fputs("],\"slo\":[", f);
  for (int i = 0; run->slo && i < run->slo->n; i++) {
    fputs(i ? ",{\"term\":" : "{\"term\":", f);
    js_write_str(f, run->slo->t[i].text);
    if (run->slo->t[i].metric == M_ERRORS && run->slo->t[i].share) /* a fraction, as other shares */
      fprintf(f, ",\"ok\":%s,\"measurable\":true,\"observed\":%.9g}",
              v->errors == 0 || v->terms[i].ok ? "true" : "false", v->terms[i].observed);
    else if (run->slo->t[i].metric == M_ERRORS)
      fprintf(f, ",\"ok\":%s,\"measurable\":true,\"observed\":%" PRIu64 "}",
              v->errors == 0 || v->terms[i].ok ? "true" : "false", v->errors);
    else
      fprintf(f, ",\"ok\":%s,\"measurable\":%s,\"observed\":%.9g}",
              v->terms[i].ok ? "true" : "false", v->terms[i].measurable ? "true" : "false",
              v->terms[i].observed);
  }
  fputs("]}}\n", f);
}

/* ---- .hgrm files --------------------------------------------------------------------- */

void rp_hgrm_name(char *out, size_t cap, const char *path, const char *part) {
  size_t n = strlen(path);
  if (n > 5 && strcmp(path + n - 5, ".hgrm") == 0) n -= 5;
  snprintf(out, cap, "%.*s.%s.hgrm", (int)n, path, part);
}

/* MERGED_MARK ends what `spikebench merge` writes: such a file may be
 * written over by the next merge (rp_outputs_safe). */
#define MERGED_MARK "#[spikebench-merged]"

static int write_one_marked(const char *path, const hist *h, const char *mark) {
  FILE *f = fopen(path, "w");
  int rc = f == NULL || hist_write_hgrm(h, f) != 0 || (mark != NULL && fprintf(f, "%s\n", mark) < 0)
               ? -1
               : 0;
  if (f != NULL && fclose(f) != 0) rc = -1;
  if (rc != 0) fprintf(stderr, "spikebench: %s: %s\n", path, strerror(errno));
  return rc;
}

static int write_one(const char *path, const hist *h) { return write_one_marked(path, h, NULL); }

/* Whether path is a file an earlier merge wrote. */
static int merged_file(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  char line[256];
  int found = 0;
  while (!found && fgets(line, sizeof(line), f) != NULL)
    found = strncmp(line, MERGED_MARK, sizeof(MERGED_MARK) - 1) == 0;
  fclose(f);
  return found;
}

int rp_write_hgrms(const char *path, const ld_stats *t) {
  char name[1024];
  int rc = write_one(path, &t->lat);
  rp_hgrm_name(name, sizeof(name), path, "uncorrected");
  if (write_one(name, &t->lat_unc) != 0) rc = -1;
  for (int o = 0; o < OUT_COUNT; o++) {
    if (hist_count(&t->out_lat[o]) == 0) continue;
    rp_hgrm_name(name, sizeof(name), path, sc_outcome_names[o]);
    if (write_one(name, &t->out_lat[o]) != 0) rc = -1;
  }
  return rc;
}

/* ---- spikebench merge -------------------------------------------------------------- */

/* One file under two names: the same string, or the same inode. */
static int same_file(const char *a, const char *b) {
  struct stat sa, sb;
  return strcmp(a, b) == 0 || (stat(a, &sa) == 0 && stat(b, &sb) == 0 &&
                               sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

int rp_outputs_safe(const char *cmd, const char *out, const char *json, const char *const *in,
                    int nin, int dup_ok) {
  const char *form = strcmp(cmd, "merge") == 0 ? "spikebench merge OUT.hgrm A.hgrm [B.hgrm ...]"
                                               : "spikebench plot OUT.svg A.hgrm [B.hgrm ...]";
  for (int i = 0; i < nin; i++) {
    if (same_file(out, in[i])) {
      fprintf(stderr, "spikebench: %s: %s is both the output and an input; the output comes "
                      "first: %s (see spikebench --help)\n", cmd, out, form);
      return 2;
    }
    if (json != NULL && same_file(json, in[i])) {
      fprintf(stderr, "spikebench: %s: --json %s is also an input (see spikebench --help)\n", cmd,
              json);
      return 2;
    }
    for (int j = 0; j < i && !dup_ok; j++)
      if (same_file(in[i], in[j])) {
        fprintf(stderr, "spikebench: %s: %s is given twice: its latencies would count twice\n",
                cmd, in[i]);
        return 2;
      }
  }
  if (json != NULL && same_file(json, out)) {
    fprintf(stderr, "spikebench: %s: --json %s is also the output (see spikebench --help)\n",
            cmd, json);
    return 2;
  }
  /* `merge host1.hgrm host2.hgrm host3.hgrm`, OUT forgotten, wrote over
   * host1's result (found by outside QA). An earlier merge's output may be
   * replaced: it is made again from its inputs. */
  static hist scratch;
  int exact;
  FILE *f = fopen(out, "r");
  int holds = f != NULL && hist_load_hgrm(f, &scratch, &exact) == 0;
  if (f != NULL) fclose(f);
  if (holds && !(strcmp(cmd, "merge") == 0 && merged_file(out))) {
    fprintf(stderr, "spikebench: %s: %s exists and holds a latency distribution; the output "
                    "comes first: %s; remove it to replace it\n", cmd, out, form);
    return 2;
  }
  return 0;
}

int rp_merge_main(int argc, char **argv) {
  const char *out = NULL, *json = NULL;
  const char *in[256];
  int nin = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--json") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "spikebench: merge: --json needs a file (see spikebench --help)\n");
        return 2;
      }
      if (json != NULL) {
        fprintf(stderr, "spikebench: merge: --json given twice (see spikebench --help)\n");
        return 2;
      }
      json = argv[++i];
    } else if (strncmp(argv[i], "--", 2) == 0) {
      fprintf(stderr, "spikebench: merge: unknown flag \"%s\" (see spikebench --help)\n", argv[i]);
      return 2;
    } else if (out == NULL) {
      out = argv[i];
    } else if (nin == (int)(sizeof(in) / sizeof(in[0]))) {
      fprintf(stderr, "spikebench: merge: at most %zu input files\n", sizeof(in) / sizeof(in[0]));
      return 2;
    } else {
      in[nin++] = argv[i];
    }
  }
  if (out == NULL || nin == 0) {
    fprintf(stderr, "spikebench: merge: give OUT.hgrm and at least one .hgrm file (see "
                    "spikebench --help)\n");
    return 2;
  }
  int safe = rp_outputs_safe("merge", out, json, in, nin, 0);
  if (safe != 0) return safe;
  static hist total, one;
  hist_init(&total);
  int exact_all = 1;
  for (int i = 0; i < nin; i++) {
    FILE *f = fopen(in[i], "r");
    if (f == NULL) {
      fprintf(stderr, "spikebench: merge: %s: %s\n", in[i], strerror(errno));
      return 1;
    }
    int exact;
    int rc = hist_load_hgrm(f, &one, &exact);
    fclose(f);
    if (rc != 0) {
      fprintf(stderr, "spikebench: merge: %s is not an .hgrm percentile distribution\n", in[i]);
      return 1;
    }
    if (!exact) {
      exact_all = 0;
      fprintf(stderr,
              "spikebench: merge: %s has no exact counts (not written by spikebench): its values "
              "are taken from its percentile rows, so the merge overstates them by up to one "
              "row's step\n",
              in[i]);
    }
    hist_merge(&total, &one);
  }
  if (write_one_marked(out, &total, MERGED_MARK) != 0) return 1;
  printf("spikebench merge: %d file%s, %s, into %s\n", nin, nin == 1 ? "" : "s",
         exact_all ? "exact" : "approximate", out);
  print_lat(stdout, "merged", &total);
  if (json != NULL) {
    FILE *f = fopen(json, "w");
    if (f == NULL) {
      fprintf(stderr, "spikebench: merge: %s: %s\n", json, strerror(errno));
      return 1;
    }
    fprintf(f, "{\"tool\":\"spikebench\",\"merged\":%d,\"exact\":%s,\"latency_ms\":", nin,
            exact_all ? "true" : "false");
    json_lat(f, &total);
    fputs("}\n", f);
    if (fclose(f) != 0) return 1;
  }
  return 0;
}

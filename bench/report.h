/*
 * report.h -- what spikebench says about a run, and whether it passed.
 *
 * The verdict (rp_judge) decides the exit status:
 *
 *   0  the answers were what the scenario expects and every --slo term held
 *   1  the run failed: nothing could be reached, nothing answered, nothing
 *      won or sold out, more unexpected answers or lost requests than the
 *      errors threshold allows (none, unless --slo names "errors"), or
 *      --verify found a violation
 *   3  the answers were right but an --slo term did not hold
 *
 * (2 is bad usage, decided before a run.) Each reason is one sentence that
 * names the numbers and, for answers spike's contract explains (401 20001,
 * 409 30007 for users that should be new, ...), what to change.
 *
 * --slo is a comma-separated list of terms "METRIC OP VALUE":
 *   p50 p90 p99 p99.9 p99.99 (any pN), max, mean   latency, VALUE in us, ms or s;
 *       prefixed "won." (or another outcome) for that outcome's answers only,
 *       "uncorrected." for latency from the actual send
 *   errors                 unexpected answers and lost requests: N or N%
 *   won sold_out limited shed   that outcome's answers: N or N% of all answers
 *   rate                   answers per second, or N% of the open-loop --rate
 *   unsent late            sends never made / made over 1 ms late: N or N% of the schedule
 * with OP one of < <= > >=. Example: 'p99<2ms,won.p99.9<10ms,errors<0.1%,rate>=99%'.
 *
 * The rest is output: the text summary, the --json document (timeline
 * included), the .hgrm files per outcome, and `spikebench merge`.
 */
#ifndef SPIKE_BENCH_REPORT_H
#define SPIKE_BENCH_REPORT_H

#include <stdio.h>

#include "load.h"
#include "verify.h"

#define RP_TERMS_MAX 16
#define RP_TERM_BYTES 48
#define RP_REASONS_MAX 16
#define RP_REASON_BYTES 400
#define RP_EXPLAIN_BYTES 2048

enum rp_metric { M_LATENCY, M_MAX, M_MEAN, M_ERRORS, M_OUTCOME, M_RATE, M_UNSENT, M_LATE };
enum rp_op { OP_LT, OP_LE, OP_GT, OP_GE };

typedef struct rp_term {
  char text[RP_TERM_BYTES]; /* as given */
  int metric;
  int outcome;     /* latency: -1 for every answer, or one outcome; M_OUTCOME: which */
  int uncorrected; /* latency from the actual send */
  double pct;      /* M_LATENCY: the percentile */
  int op;
  double value; /* ns for latencies; a fraction 0..1 when share; else a count or req/s */
  int share;    /* VALUE was given in % */
} rp_term;

typedef struct rp_slo {
  rp_term t[RP_TERMS_MAX];
  int n;
  int errors_given; /* a term names errors: it replaces "no errors at all" */
} rp_slo;

/* Parse text into s. 0, or -1 with err naming the term. */
int rp_slo_parse(rp_slo *s, const char *text, char *err, size_t errcap);

/* Everything the report reads. */
typedef struct rp_run {
  const char *url;
  const sc_scenario *sc;
  const ld_config *cfg;
  const ld_result *res;
  const vf_report *verify; /* NULL: no --verify */
  const rp_slo *slo;
} rp_run;

typedef struct rp_term_result {
  int ok;
  double observed; /* in the term's units: ns, a fraction, a count, req/s */
  int measurable;  /* 0: e.g. a rate share without a target */
} rp_term_result;

typedef struct rp_verdict {
  int exit_code; /* 0, 1 or 3 */
  int nreasons;
  char reasons[RP_REASONS_MAX][RP_REASON_BYTES];
  rp_term_result terms[RP_TERMS_MAX];
  uint64_t errors, requests; /* unexpected answers + lost requests, over answers + lost */
  int errors_ok;             /* errors within what is allowed */
} rp_verdict;

void rp_judge(const rp_run *run, rp_verdict *v);

/* Why sends were late or never made, and what the achieved rate means, in
 * sentences that fit the case; "" when there is nothing to say. */
void rp_explain(const rp_run *run, char *out, size_t cap);

/* The text summary. */
void rp_print(FILE *f, const rp_run *run, const rp_verdict *v);

/* The --json document. */
void rp_write_json(FILE *f, const rp_run *run, const rp_verdict *v);

/* One timeline row as the progress line. */
void rp_print_row(FILE *f, const ld_row *row);

/*
 * --hgrm PATH: the corrected distribution in PATH, and beside it
 * STEM.uncorrected.hgrm and STEM.<outcome>.hgrm for each outcome that has
 * answers (STEM: PATH without .hgrm). 0, or -1 with the failing file on
 * stderr.
 */
int rp_write_hgrms(const char *path, const ld_stats *t);

/* The derived file name for one part ("won", "uncorrected"). */
void rp_hgrm_name(char *out, size_t cap, const char *path, const char *part);

/* `spikebench merge OUT.hgrm A.hgrm B.hgrm ... [--json OUT.json]`: the
 * exit status. */
int rp_merge_main(int argc, char **argv);

/* `spikebench merge` and `plot`, before anything is read or written: 0, or
 * 2 after saying why on stderr, when an output would destroy what the
 * command reads or another output (the output names an input or the other
 * output; the output exists and holds a latency distribution that no
 * earlier merge wrote, as when OUT was forgotten and the first input took
 * its place) or, where dup_ok is 0, an input is given twice (it would
 * count twice). */
int rp_outputs_safe(const char *cmd, const char *out, const char *json, const char *const *in,
                    int nin, int dup_ok);

/* text wrapped to width columns, the first line after label (padded to
 * label_w), the rest under it. */
void rp_wrap(FILE *f, const char *label, int label_w, int width, const char *text);

/* "1.2 s", "350 ms", "2.50 us": a duration in ns for people. */
void rp_fmt_ns(char *out, size_t cap, double ns);

#endif /* SPIKE_BENCH_REPORT_H */

/*
 * test_sb_report.c -- spikebench's verdict and words (bench/report.c):
 * --slo parsing, the exit status for runs that went right, runs whose
 * answers were wrong (401s, 409s for users that should be new, the server
 * down), thresholds crossed; the explanation of late and never-made sends
 * for each cause; the JSON document; the .hgrm files per outcome and
 * `spikebench merge`, exact and from another tool's file.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../bench/js.h"
#include "../bench/report.h"
#include "test.h"

static sc_scenario sc;
static ld_config cfg;
static ld_result res;
static rp_verdict v;
static rp_slo slo;
static char err[300], text[1 << 16];

/* A run of mode with n answers of outcome o (status, code), 1 ms each. */
static void make_run(int id, int mode, uint64_t n, int o, int status, int64_t code) {
  memset(&sc, 0, sizeof(sc));
  CHECK_EQ(sc_builtin(&sc, id, "", "/", err, sizeof(err)), 0);
  sc.event = 1;
  sc_set_expected(&sc);
  memset(&cfg, 0, sizeof(cfg));
  cfg.mode = mode;
  cfg.rate = mode == LD_OPEN ? 1000 : 0;
  cfg.conns = 8;
  cfg.threads = 1;
  cfg.duration_s = 1;
  cfg.interval_ms = 1000;
  cfg.sc = &sc;
  memset(&res, 0, sizeof(res));
  ld_stats_init(&res.total);
  res.connected = 8;
  res.window_s = 1.0;
  ld_stats *t = &res.total;
  t->sent = n;
  for (uint64_t i = 0; i < n; i++) {
    hist_record(&t->lat, 1000000 + i);
    hist_record(&t->lat_unc, 500000 + i);
    hist_record(&t->out_lat[o], 1000000 + i);
  }
  t->out_n[o] = n;
  t->status[status] = n;
  if (code >= 0) ld_count_code(t, code, n);
  if (!sc.expected[o]) {
    t->unexpected = n;
    t->bad_status[status] = n;
    if (code >= 0) {
      t->bad_code[0] = code;
      t->bad_code_n[0] = n;
      t->bad_ncodes = 1;
    }
  }
}

static void judge(const char *slo_text, const vf_report *vr) {
  if (slo_text != NULL) CHECK_EQ(rp_slo_parse(&slo, slo_text, err, sizeof(err)), 0);
  rp_run run = {"http://127.0.0.1:1", &sc, &cfg, &res, vr, slo_text ? &slo : NULL};
  rp_judge(&run, &v);
  FILE *f = tmpfile();
  rp_print(f, &run, &v);
  rewind(f);
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  text[n] = '\0';
  fclose(f);
}

static int reasons_have(const char *s) {
  for (int i = 0; i < v.nreasons; i++)
    if (strstr(v.reasons[i], s) != NULL) return 1;
  return 0;
}

static void slo_parse(void) {
  CHECK_EQ(rp_slo_parse(&slo,
                        "p99<2ms, won.p99.9<=10ms,uncorrected.p50<1s,max<500us,errors<0.1%,"
                        "rate>=99%,shed<5,late<1%,sold_out>=1,mean<3ms",
                        err, sizeof(err)),
           0);
  CHECK_EQ(slo.n, 10);
  CHECK(slo.errors_given);
  rp_term *t = slo.t;
  CHECK(t[0].metric == M_LATENCY && t[0].pct == 99 && t[0].op == OP_LT && t[0].value == 2e6);
  CHECK(t[0].outcome == -1 && !t[0].uncorrected);
  CHECK(t[1].outcome == OUT_WON && t[1].pct == 99.9 && t[1].op == OP_LE && t[1].value == 10e6);
  CHECK(t[2].uncorrected && t[2].pct == 50 && t[2].value == 1e9);
  CHECK(t[3].metric == M_MAX && t[3].value == 5e5);
  CHECK(t[4].metric == M_ERRORS && t[4].share && t[4].value == 0.001);
  CHECK(t[5].metric == M_RATE && t[5].share && t[5].op == OP_GE && t[5].value == 0.99);
  CHECK(t[6].metric == M_OUTCOME && t[6].outcome == OUT_SHED && !t[6].share && t[6].value == 5);
  CHECK(t[7].metric == M_LATE && t[7].share);
  CHECK(t[8].metric == M_OUTCOME && t[8].outcome == OUT_SOLD_OUT && t[8].op == OP_GE);
  CHECK(t[9].metric == M_MEAN && t[9].value == 3e6);
  static const struct {
    const char *s, *why;
  } bad[] = {{"p99", "no < <= > >="},
             {"p99<2", "needs a unit"},
             {"p99<2kg", "needs a unit"},
             {"p100<1ms", "between p0 and p100"},
             {"bogus<1", "unknown metric"},
             {"errors<101%", "above 100%"},
             {"errors<1ms", "not a unit here"},
             {"winner.p99<1ms", "not an outcome"},
             {"won.errors<1", "after \"won.\""},
             {"p99<abc", "is not a number"},
             {"", "no terms"},
             {"p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms,"
              "p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms,p99<1ms",
              "more than 16"}};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    err[0] = '\0';
    CHECK_EQ(rp_slo_parse(&slo, bad[i].s, err, sizeof(err)), -1);
    if (strstr(err, bad[i].why) == NULL) fprintf(stderr, "[%s]: %s\n", bad[i].s, err);
    CHECK(strstr(err, bad[i].why) != NULL);
  }
}

static void verdict_pass(void) {
  make_run(SC_RESERVE, LD_OPEN, 1000, OUT_WON, 201, 0);
  judge(NULL, NULL);
  CHECK_EQ(v.exit_code, 0);
  CHECK_EQ(v.nreasons, 0);
  CHECK(strstr(text, "verdict     PASS") != NULL);
  CHECK(strstr(text, "corrected   p50") != NULL && strstr(text, "uncorrected p50") != NULL);
  /* SLO that holds; one that does not: exit 3 */
  judge("p99<2ms,rate>=99%,won>=1000", NULL);
  CHECK_EQ(v.exit_code, 0);
  CHECK(v.terms[0].ok && v.terms[1].ok && v.terms[2].ok);
  judge("p99<500us,won.p50<2ms", NULL);
  CHECK_EQ(v.exit_code, 3);
  CHECK(!v.terms[0].ok && v.terms[1].ok);
  CHECK(reasons_have("--slo p99<500us did not hold"));
  CHECK(strstr(text, "SLO MISSED (exit 3)") != NULL);
  /* a latency of an outcome with no answers, a rate share without a --rate */
  judge("sold_out.p99<1s", NULL);
  CHECK_EQ(v.exit_code, 3);
  CHECK(!v.terms[0].measurable);
  make_run(SC_RESERVE, LD_CLOSED, 1000, OUT_WON, 201, 0);
  judge("rate>=99%", NULL);
  CHECK_EQ(v.exit_code, 3);
  judge("rate>=900", NULL);
  CHECK_EQ(v.exit_code, 0);
}

static void verdict_wrong_answers(void) {
  /* every answer a 401: the server wants tokens */
  make_run(SC_RESERVE, LD_OPEN, 91206, OUT_ERROR, 401, 20001);
  judge(NULL, NULL);
  CHECK_EQ(v.exit_code, 1);
  CHECK(reasons_have("no answer was a win or a sold out"));
  CHECK(reasons_have("91206 answered status 401"));
  CHECK(reasons_have("credentials missing"));
  CHECK(reasons_have("--jwt-secret"));
  CHECK(strstr(text, "verdict     FAIL (exit 1)") != NULL);
  /* an --slo on latency alone does not make it pass */
  judge("p99<1s", NULL);
  CHECK_EQ(v.exit_code, 1);

  /* a re-run against the same users: every answer 409 30007, fast */
  make_run(SC_RESERVE, LD_OPEN, 1000, OUT_LIMITED, 409, 30007);
  judge(NULL, NULL);
  CHECK_EQ(v.exit_code, 1);
  CHECK(reasons_have("--user-base"));
  /* with --users N, limits are expected: then it is fine */
  make_run(SC_RESERVE, LD_OPEN, 1000, OUT_LIMITED, 409, 30007);
  sc.users = 10;
  sc_set_expected(&sc);
  res.total.unexpected = 0;
  memset(res.total.bad_status, 0, sizeof(res.total.bad_status));
  res.total.out_n[OUT_WON] = 1; /* one won, the rest limited */
  judge(NULL, NULL);
  CHECK_EQ(v.exit_code, 0);

  /* a few errors: failing by default, passing under --slo errors<1% */
  make_run(SC_RESERVE, LD_OPEN, 1000, OUT_WON, 201, 0);
  res.total.e_timeout = 3;
  judge(NULL, NULL);
  CHECK_EQ(v.exit_code, 1);
  CHECK(reasons_have("3 of 1003 requests"));
  CHECK(reasons_have("3 timed out"));
  judge("errors<1%", NULL);
  CHECK_EQ(v.exit_code, 0);
  CHECK(v.errors_ok);
  judge("errors<0.1%", NULL);
  CHECK_EQ(v.exit_code, 1);
  CHECK(reasons_have("over the --slo errors threshold"));
  judge("errors<=3", NULL);
  CHECK_EQ(v.exit_code, 0);

  /* the server down: no connection at all */
  make_run(SC_RESERVE, LD_OPEN, 0, OUT_WON, 201, -1);
  res.connected = 0;
  res.total.e_connect = 48;
  res.connect_refused = 48;
  judge(NULL, NULL);
  CHECK_EQ(v.exit_code, 1);
  CHECK(reasons_have("the server was down"));
  CHECK(reasons_have("48 refused"));
  CHECK(strstr(text, "None of the 1000 sends the schedule called for were made") != NULL);

  /* --verify found a violation */
  make_run(SC_RESERVE, LD_OPEN, 10, OUT_WON, 201, 0);
  vf_report vr;
  memset(&vr, 0, sizeof(vr));
  vr.n = 2;
  vr.failed = 1;
  judge(NULL, &vr);
  CHECK_EQ(v.exit_code, 1);
  CHECK(reasons_have("--verify: 1 of 2 checks failed"));

  /* get: sold out is no success */
  make_run(SC_GET, LD_CLOSED, 10, OUT_SHED, 503, -1);
  judge(NULL, NULL);
  CHECK_EQ(v.exit_code, 1);
  CHECK(reasons_have("no answer was a success"));
}

static void explain(const char *need) {
  rp_run run = {"u", &sc, &cfg, &res, NULL, NULL};
  char out[RP_EXPLAIN_BYTES];
  rp_explain(&run, out, sizeof(out));
  if (strstr(out, need) == NULL) fprintf(stderr, "want [%s] in [%s]\n", need, out);
  CHECK(strstr(out, need) != NULL);
}

static void explanations(void) {
  make_run(SC_RESERVE, LD_OPEN, 1000, OUT_WON, 201, 0);
  explain("Every request went out on schedule");
  ld_stats *t = &res.total;
  t->late[CAUSE_SERVER] = 40;
  t->late_max_ns[CAUSE_SERVER] = 200000000;
  t->unsent[CAUSE_SERVER] = 7;
  explain("40 late (up to 200 ms) and 7 never made because the server was behind");
  explain(
      "Of 1007 sends the schedule called for, 40 went out more than 1 ms late and 7 were never");
  t->late[CAUSE_GENERATOR] = 5;
  t->late_max_ns[CAUSE_GENERATOR] = 3000000;
  res.cpu_max = 0.97;
  explain("because the load generator was behind");
  explain("busiest thread at 97% CPU: add --threads");
  res.cpu_max = 0.05;
  explain("at only 5% CPU: the machine did not run it on time");
  t->unsent[CAUSE_DOWN] = 9;
  t->e_connect = 12;
  res.connect_refused = 12;
  explain("9 never made because no connection was open: the server went away, refused "
          "connections or let a request time out, and they were being re-opened (12 connects "
          "failed, 12 refused)");
  /* closed loop: nothing is late; a busy generator is said */
  make_run(SC_RESERVE, LD_CLOSED, 1000, OUT_WON, 201, 0);
  res.cpu_max = 0.99;
  explain("may be spikebench's limit");
}

static void json_document(void) {
  make_run(SC_RESERVE, LD_OPEN, 100, OUT_WON, 201, 0);
  ld_row rows[2] = {{0}, {0}};
  rows[0].index = 0;
  rows[0].sent = 60;
  rows[0].out_n[OUT_WON] = 60;
  rows[0].p99_ns = 1000000;
  rows[1].index = 1;
  rows[1].sent = 40;
  rows[1].out_n[OUT_WON] = 40;
  rows[1].in_flight = 3;
  res.rows = rows;
  res.nrows = 2;
  CHECK_EQ(rp_slo_parse(&slo, "p99<1ms,errors<1%", err, sizeof(err)), 0);
  rp_run run = {"http://h/\"q\"", &sc, &cfg, &res, NULL, &slo};
  rp_judge(&run, &v);
  FILE *f = tmpfile();
  rp_write_json(f, &run, &v);
  rewind(f);
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  fclose(f);
  static jsmntok_t toks[4096];
  js_doc d;
  CHECK_EQ(js_parse(&d, text, n, toks, 4096), 0);
  CHECK(d.t[0].type == JSMN_OBJECT);
  uint64_t x;
  int verdict = js_key(&d, 0, "verdict");
  CHECK(js_u64(&d, js_key(&d, verdict, "exit"), &x) == 0 && x == 3);
  int slo_arr = js_key(&d, verdict, "slo");
  CHECK(slo_arr >= 0 && d.t[slo_arr].type == JSMN_ARRAY && d.t[slo_arr].size == 2);
  int tl = js_key(&d, 0, "timeline");
  int r = js_key(&d, tl, "rows");
  CHECK(r >= 0 && d.t[r].size == 2);
  int row1 = js_skip(&d, r + 1);
  CHECK(js_u64(&d, js_key(&d, row1, "in_flight"), &x) == 0 && x == 3);
  CHECK(js_u64(&d, js_key(&d, row1, "won"), &x) == 0 && x == 40);
  int bo = js_key(&d, 0, "by_outcome");
  CHECK(js_u64(&d, js_key(&d, js_key(&d, bo, "won"), "count"), &x) == 0 && x == 100);
  CHECK(js_key(&d, 0, "latency_uncorrected_ms") >= 0);
  CHECK(js_key(&d, js_key(&d, 0, "late_by_cause"), "generator") >= 0);
  char url[32];
  CHECK(js_str(&d, js_key(&d, 0, "url"), url, sizeof(url)) == 0);
  CHECK(strcmp(url, "http://h/\\\"q\\\"") == 0); /* escaped, as jsmn leaves it */
  res.rows = NULL;
}

static void hgrm_files_and_merge(void) {
  char dir[512], path[600], a[700], b[700], out[700], name[700];
  snprintf(dir, sizeof(dir), "%s", test_tmpdir("sb-report"));
  make_run(SC_RESERVE, LD_OPEN, 1000, OUT_WON, 201, 0);
  for (int i = 0; i < 10; i++)
    hist_record(&res.total.out_lat[OUT_SOLD_OUT], 5000000);
  res.total.out_n[OUT_SOLD_OUT] = 10;
  snprintf(path, sizeof(path), "%s/run.hgrm", dir);
  CHECK_EQ(rp_write_hgrms(path, &res.total), 0);
  rp_hgrm_name(name, sizeof(name), path, "won");
  CHECK(strcmp(name + strlen(dir), "/run.won.hgrm") == 0);
  CHECK(access(name, R_OK) == 0);
  rp_hgrm_name(name, sizeof(name), path, "sold_out");
  CHECK(access(name, R_OK) == 0);
  rp_hgrm_name(name, sizeof(name), path, "uncorrected");
  CHECK(access(name, R_OK) == 0);
  rp_hgrm_name(name, sizeof(name), path, "shed");
  CHECK(access(name, R_OK) != 0); /* no answers of it: no file */

  /* two machines' files merge into what one process would have recorded */
  static hist h1, h2, both, got;
  hist_init(&h1);
  hist_init(&h2);
  hist_init(&both);
  uint64_t s = test_seed();
  for (int i = 0; i < 50000; i++) {
    uint64_t x = 2000 + test_rand(&s) % 90000000;
    hist_record(i % 3 ? &h1 : &h2, x);
    hist_record(&both, x);
  }
  snprintf(a, sizeof(a), "%s/a.hgrm", dir);
  snprintf(b, sizeof(b), "%s/b.hgrm", dir);
  snprintf(out, sizeof(out), "%s/m.hgrm", dir);
  FILE *f = fopen(a, "w");
  CHECK(hist_write_hgrm(&h1, f) == 0);
  fclose(f);
  f = fopen(b, "w");
  CHECK(hist_write_hgrm(&h2, f) == 0);
  fclose(f);
  char *argv[] = {"spikebench", "merge", out, a, b, NULL};
  fflush(stdout);
  CHECK_EQ(rp_merge_main(5, argv), 0);
  f = fopen(out, "r");
  int exact;
  CHECK_EQ(hist_load_hgrm(f, &got, &exact), 0);
  fclose(f);
  CHECK(exact);
  CHECK(memcmp(&got, &both, sizeof(got)) == 0);

  /* a file without spikebench's counts: from its rows, never below the truth */
  FILE *in = fopen(a, "r"), *o = fopen(b, "w");
  char line[1024];
  while (fgets(line, sizeof(line), in) != NULL)
    if (strncmp(line, "#[c ", 4) != 0 && strncmp(line, "#[spikebench", 12) != 0) fputs(line, o);
  fclose(in);
  fclose(o);
  char *argv2[] = {"spikebench", "merge", out, b, NULL};
  CHECK_EQ(rp_merge_main(4, argv2), 0);
  f = fopen(out, "r");
  CHECK_EQ(hist_load_hgrm(f, &got, &exact), 0);
  fclose(f);
  CHECK(exact); /* merge writes its own counts */
  CHECK_EQ(hist_count(&got), hist_count(&h1));
  for (double p = 10; p < 100; p += 10) {
    uint64_t want = hist_percentile(&h1, p), have = hist_percentile(&got, p);
    CHECK(have >= want);
    CHECK((double)have <= (double)want * 1.25 + 1e6);
  }
  /* rows print ms with 3 decimals: the max comes back within a microsecond */
  CHECK(hist_max(&got) + 1000 >= hist_max(&h1) && hist_max(&got) <= hist_max(&h1) + 1000);

  /* outputs that would destroy an input (outside QA): OUT forgotten, so
   * the first machine's file took its place; OUT among the inputs; an
   * input twice; --json naming OUT or an input, or given twice. Each is
   * refused before anything is written. */
  char a2[600], json[600];
  snprintf(a2, sizeof(a2), "%s/./a.hgrm", dir); /* a, by another name */
  snprintf(json, sizeof(json), "%s/m.json", dir);
  struct stat before, after;
  CHECK_EQ(stat(a, &before), 0);
  char *forgot[] = {"spikebench", "merge", a, b, NULL};
  CHECK_EQ(rp_merge_main(4, forgot), 2);
  char *among[] = {"spikebench", "merge", out, a, out, NULL};
  CHECK_EQ(rp_merge_main(5, among), 2);
  char *twice[] = {"spikebench", "merge", json, a, a2, NULL};
  CHECK_EQ(rp_merge_main(5, twice), 2);
  char *json_out[] = {"spikebench", "merge", out, a, "--json", out, NULL};
  CHECK_EQ(rp_merge_main(6, json_out), 2);
  char *json_in[] = {"spikebench", "merge", out, a, "--json", a2, NULL};
  CHECK_EQ(rp_merge_main(6, json_in), 2);
  char *json_twice[] = {"spikebench", "merge", out, a, "--json", json, "--json", json, NULL};
  CHECK_EQ(rp_merge_main(8, json_twice), 2);
  CHECK_EQ(stat(a, &after), 0);
  CHECK(after.st_size == before.st_size && after.st_mtime == before.st_mtime);
  CHECK(access(json, F_OK) != 0);
  f = fopen(a, "r");
  CHECK_EQ(hist_load_hgrm(f, &got, &exact), 0);
  fclose(f);
  CHECK(memcmp(&got, &h1, sizeof(got)) == 0); /* a is a's still */
  /* an earlier merge's output is made again: allowed (done above too) */
  char *again[] = {"spikebench", "merge", out, a, b, "--json", json, NULL};
  CHECK_EQ(rp_merge_main(7, again), 0);
  CHECK_EQ(rp_merge_main(7, again), 0);

  /* usage and bad input */
  char *none[] = {"spikebench", "merge", out, NULL};
  CHECK_EQ(rp_merge_main(3, none), 2);
  char *flag[] = {"spikebench", "merge", "--bogus", NULL};
  CHECK_EQ(rp_merge_main(3, flag), 2);
  snprintf(name, sizeof(name), "%s/not.hgrm", dir);
  f = fopen(name, "w");
  fputs("{\"not\":\"hgrm\"}\n", f);
  fclose(f);
  char *bad[] = {"spikebench", "merge", out, name, NULL};
  CHECK_EQ(rp_merge_main(4, bad), 1);
  snprintf(name, sizeof(name), "%s/missing.hgrm", dir);
  char *missing[] = {"spikebench", "merge", out, name, NULL};
  CHECK_EQ(rp_merge_main(4, missing), 1);
  test_rmrf(dir);
}

static void progress_row(void) {
  ld_row r = {0};
  r.index = 4;
  r.t_ns = 4000000000u;
  r.end_ns = 5000000000u;
  r.sent = 10;
  r.out_n[OUT_WON] = 8;
  r.out_n[OUT_SHED] = 2;
  r.p50_ns = 1500000;
  r.in_flight = 3;
  FILE *f = tmpfile();
  rp_print_row(f, &r);
  rewind(f);
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  text[n] = '\0';
  fclose(f);
  CHECK(strstr(text, "[   5.00s] sent 10 answered 10 (won 8, sold out 0, limited 0, shed 2") ==
        text);
  CHECK(strstr(text, "p50 1.500") != NULL && strstr(text, "in flight 3") != NULL);
}

TEST_LIST({"slo_parse", slo_parse, 0}, {"verdict_pass", verdict_pass, 0},
          {"verdict_wrong_answers", verdict_wrong_answers, 0}, {"explanations", explanations, 0},
          {"json_document", json_document, 0}, {"hgrm_files_and_merge", hgrm_files_and_merge, 0},
          {"progress_row", progress_row, 0})

/*
 * plot.c -- the SVG writer behind `spikebench plot` and --svg.
 *
 * x is log10(1/(1-p)): each further nine of the percentile takes the same
 * width, which is what makes a tail visible at all. y is linear from 0 to
 * a round number above the largest latency, as HdrHistogram's plotter
 * draws it, so a stall reads as a cliff rather than being flattened by a
 * log axis. Text only, fixed size; the picture is meant to be committed
 * next to the numbers it shows.
 */
#include "plot.h"

#include <math.h>
#include <string.h>

#include "log.h"

#define W 900.0
#define H 520.0
#define LEFT 80.0
#define RIGHT 30.0
#define TOP 50.0
#define BOTTOM 60.0
#define PW (W - LEFT - RIGHT)
#define PH (H - TOP - BOTTOM)

static const char *const palette[PLOT_SERIES_MAX] = {
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#aec7e8",
};

static void esc(FILE *f, const char *s) {
  size_t n = s != NULL ? strlen(s) : 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    switch (ch) {
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '&': fputs("&amp;", f); break;
    case '"': fputs("&quot;", f); break;
    default:
      if (ch < 0x80) {
        /* control characters are not allowed in XML 1.0 text */
        if (ch >= 0x20) fputc(ch, f);
      } else {
        /* nor bytes of no UTF-8 sequence: U+FFFD for them */
        size_t k = log_utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0) {
          fputs("&#xFFFD;", f);
        } else {
          fwrite(s + i, 1, k, f);
          i += k - 1;
        }
      }
    }
  }
}

/* The document's start: size, white ground, the title on top. */
static void svg_open(FILE *f, double height, const char *title) {
  fprintf(f,
          "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
          "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
          W, height, W, height);
  fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
  fprintf(f, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">", W / 2);
  esc(f, title);
  fputs("</text>\n", f);
}

/* x in nines: log10(1/(1-p)); 100 % has none, the caller puts it on the edge. */
static double nines(double pct, double max_nines) {
  if (pct >= 100.0) return max_nines;
  if (pct <= 0.0) return 0.0;
  double x = log10(100.0 / (100.0 - pct));
  return x > max_nines ? max_nines : x;
}

/* 1, 2 or 5 times a power of ten, at or above v. */
static double round_up(double v) {
  if (!(v > 0.0)) return 1.0;
  double p = pow(10.0, floor(log10(v)));
  for (int i = 0; i < 4; i++) {
    static const double steps[] = {1.0, 2.0, 5.0, 10.0};
    if (steps[i] * p >= v * (1.0 - 1e-12)) return steps[i] * p;
  }
  return 10.0 * p;
}

static void pct_label(char *out, size_t cap, int k) {
  /* k nines: 0 %, 90 %, 99 %, 99.9 % ... */
  if (k <= 1) {
    snprintf(out, cap, k == 0 ? "0%%" : "90%%");
    return;
  }
  char digits[24] = "99";
  for (int i = 2; i < k && i < 16; i++)
    strcat(digits, i == 2 ? ".9" : "9");
  snprintf(out, cap, "%s%%", digits);
}

int plot_svg(FILE *f, const char *title, const plot_series *s, size_t n) {
  if (n == 0 || n > PLOT_SERIES_MAX) return -1;
  double ymax = 0.0, xmax_data = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (s[i].n == 0 || s[i].pct == NULL || s[i].ms == NULL) return -1;
    for (size_t j = 0; j < s[i].n; j++) {
      if (isfinite(s[i].ms[j]) && s[i].ms[j] > ymax) ymax = s[i].ms[j];
      if (s[i].pct[j] < 100.0) {
        double x = nines(s[i].pct[j], PLOT_NINES_MAX);
        if (x > xmax_data) xmax_data = x;
      }
    }
  }
  int kmax = (int)ceil(xmax_data - 1e-9);
  if (kmax < PLOT_NINES_MIN) kmax = PLOT_NINES_MIN;
  if (kmax > PLOT_NINES_MAX) kmax = PLOT_NINES_MAX;
  double xmax = kmax;
  double top = round_up(ymax);

  svg_open(f, H, title != NULL ? title : "Latency by Percentile Distribution");

  /* grid: one vertical line per nine, five horizontal steps */
  fputs("<g stroke=\"#dddddd\" stroke-width=\"1\">\n", f);
  for (int k = 0; k <= kmax; k++) {
    double x = LEFT + PW * k / xmax;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x, TOP, x, TOP + PH);
  }
  for (int k = 0; k <= 5; k++) {
    double y = TOP + PH - PH * k / 5.0;
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", LEFT, y, LEFT + PW, y);
  }
  fputs("</g>\n", f);
  fprintf(f,
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
          "stroke=\"#333333\"/>\n",
          LEFT, TOP, PW, PH);

  /* axis labels */
  fputs("<g fill=\"#333333\">\n", f);
  for (int k = 0; k <= kmax; k++) {
    char lab[32];
    pct_label(lab, sizeof(lab), k);
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
            LEFT + PW * k / xmax, TOP + PH + 18, lab);
  }
  for (int k = 0; k <= 5; k++) {
    double v = top * k / 5.0;
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", LEFT - 6,
            TOP + PH - PH * k / 5.0 + 4, v);
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">Percentile</text>\n",
          LEFT + PW / 2, H - 18);
  fprintf(f,
          "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" "
          "transform=\"rotate(-90 18 %.1f)\">Latency (milliseconds)</text>\n",
          TOP + PH / 2, TOP + PH / 2);
  fputs("</g>\n", f);

  /* series, then the legend over them */
  for (size_t i = 0; i < n; i++) {
    fprintf(f,
            "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
            "points=\"",
            palette[i]);
    for (size_t j = 0; j < s[i].n; j++) {
      double ms = isfinite(s[i].ms[j]) && s[i].ms[j] > 0.0 ? s[i].ms[j] : 0.0;
      double x = LEFT + PW * nines(s[i].pct[j], xmax) / xmax;
      double y = TOP + PH - PH * (ms / top);
      fprintf(f, "%s%.2f,%.2f", j ? " " : "", x, y);
    }
    fputs("\"><title>", f);
    esc(f, s[i].label);
    fputs("</title></polyline>\n", f);
  }
  double lx = LEFT + 16, ly = TOP + 16;
  size_t longest = 0;
  for (size_t i = 0; i < n; i++) {
    size_t len = s[i].label != NULL ? strlen(s[i].label) : 0;
    if (len > longest) longest = len;
  }
  /* about 7 px a character at this font size, within the plot's width */
  double lw = 52.0 + 7.0 * (double)longest;
  if (lw > PW - 32) lw = PW - 32;
  fprintf(f,
          "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"white\" "
          "fill-opacity=\"0.85\" stroke=\"#999999\"/>\n",
          lx - 8, ly - 12, lw, 18.0 * n + 8);
  for (size_t i = 0; i < n; i++) {
    double y = ly + 18.0 * i;
    fprintf(f,
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
            "stroke-width=\"3\"/>\n",
            lx, y, lx + 24, y, palette[i]);
    fprintf(f, "<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">", lx + 32, y + 4);
    esc(f, s[i].label);
    fputs("</text>\n", f);
  }
  fputs("</svg>\n", f);
  return ferror(f) ? -1 : 0;
}

/* ---- the timeline ------------------------------------------------------------ */

#define TL_H_PANEL 220.0
#define TL_GAP 50.0

int plot_timeline_svg(FILE *f, const char *title, const double *x, size_t n,
                      const plot_panel *panels, size_t np, double warmup_end_s) {
  if (n == 0 || np == 0 || np > PLOT_PANELS_MAX) return -1;
  for (size_t p = 0; p < np; p++)
    if (panels[p].nlines == 0 || panels[p].nlines > PLOT_LINES_MAX) return -1;
  double x0 = x[0], x1 = x[n - 1];
  if (n > 1) x1 += (x[n - 1] - x[n - 2]); /* the end of the last interval */
  if (!(x1 > x0)) x1 = x0 + 1.0;
  double height = TOP + np * TL_H_PANEL + (np - 1) * TL_GAP + BOTTOM;
  svg_open(f, height, title != NULL ? title : "Timeline");
  for (size_t p = 0; p < np; p++) {
    double top = TOP + p * (TL_H_PANEL + TL_GAP), bottom = top + TL_H_PANEL;
    double ymax = 0;
    for (size_t l = 0; l < panels[p].nlines; l++)
      for (size_t i = 0; i < n; i++) {
        double v = panels[p].lines[l].y[i];
        if (isfinite(v) && v > ymax) ymax = v;
      }
    double ytop = round_up(ymax);
    if (warmup_end_s > x0) {
      double wx = LEFT + PW * ((warmup_end_s < x1 ? warmup_end_s : x1) - x0) / (x1 - x0);
      fprintf(f,
              "<rect class=\"warmup\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
              "fill=\"#f2f2f2\"/>\n",
              LEFT, top, wx - LEFT, TL_H_PANEL);
    }
    fputs("<g stroke=\"#dddddd\" stroke-width=\"1\">\n", f);
    for (int k = 0; k <= 4; k++) {
      double y = bottom - TL_H_PANEL * k / 4.0;
      fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", LEFT, y, LEFT + PW,
              y);
    }
    fputs("</g>\n", f);
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#333333\"/>\n",
            LEFT, top, PW, TL_H_PANEL);
    fputs("<g fill=\"#333333\">\n", f);
    for (int k = 0; k <= 4; k++)
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", LEFT - 6,
              bottom - TL_H_PANEL * k / 4.0 + 4, ytop * k / 4.0);
    for (int k = 0; k <= 5; k++)
      fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.3g</text>\n",
              LEFT + PW * k / 5.0, bottom + 16, x0 + (x1 - x0) * k / 5.0);
    fprintf(f,
            "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 18 %.1f)\">",
            top + TL_H_PANEL / 2, top + TL_H_PANEL / 2);
    esc(f, panels[p].ylabel);
    fputs("</text>\n</g>\n", f);
    for (size_t l = 0; l < panels[p].nlines; l++) {
      fprintf(f,
              "<polyline class=\"series\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" "
              "points=\"",
              palette[l]);
      /* steps: each value holds across its interval */
      for (size_t i = 0; i < n; i++) {
        double v = panels[p].lines[l].y[i];
        if (!isfinite(v) || v < 0) v = 0;
        double xe = i + 1 < n ? x[i + 1] : x1;
        double cy = bottom - TL_H_PANEL * v / ytop;
        fprintf(f, "%s%.2f,%.2f %.2f,%.2f", i ? " " : "", LEFT + PW * (x[i] - x0) / (x1 - x0), cy,
                LEFT + PW * (xe - x0) / (x1 - x0), cy);
      }
      fputs("\"><title>", f);
      esc(f, panels[p].lines[l].label);
      fputs("</title></polyline>\n", f);
      fprintf(f,
              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
              "stroke-width=\"3\"/>\n",
              LEFT + 12 + 110.0 * l, top + 14, LEFT + 30 + 110.0 * l, top + 14, palette[l]);
      fprintf(f, "<text class=\"legend\" x=\"%.1f\" y=\"%.1f\">", LEFT + 34 + 110.0 * l, top + 18);
      esc(f, panels[p].lines[l].label);
      fputs("</text>\n", f);
    }
  }
  fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">seconds from the start</text>\n",
          LEFT + PW / 2, height - 18);
  fputs("</svg>\n", f);
  return ferror(f) ? -1 : 0;
}

/*
 * plot.h -- latency-by-percentile plots as plain SVG, drawn the way
 * HdrHistogram's plotter draws them: latency in milliseconds up the y axis,
 * percentile along a log scale of 1/(1-p) with gridlines at 0 %, 90 %,
 * 99 %, 99.9 %, 99.99 % and 99.999 % (and further nines when a series
 * reaches them), several runs overlaid with a legend.
 *
 * No dependencies and no allocation: the caller owns every point and the
 * writer streams text to a FILE.
 */
#ifndef SPIKE_PLOT_H
#define SPIKE_PLOT_H

#include <stddef.h>
#include <stdio.h>

#define PLOT_SERIES_MAX 12 /* colours in the palette; more series are refused */
#define PLOT_NINES_MIN 5   /* the x axis reaches at least 99.999 % */
#define PLOT_NINES_MAX 7   /* and at most 99.99999 %; points past it sit on the edge */

typedef struct plot_series {
  const char *label; /* legend text; escaped on output */
  const double *pct; /* 0 .. 100, non-decreasing */
  const double *ms;  /* latency at pct[i] */
  size_t n;
} plot_series;

/*
 * Write an SVG document to f: title on top (escaped), one polyline per
 * series, a legend. A point at 100 % (no finite 1/(1-p)) is drawn at the
 * right edge, so the maximum shows. Returns 0; -1 when n is 0 or above
 * PLOT_SERIES_MAX, a series is empty, or writing failed.
 */
int plot_svg(FILE *f, const char *title, const plot_series *series, size_t n);

/* ---- the timeline ------------------------------------------------------------ */

#define PLOT_PANELS_MAX 4
#define PLOT_LINES_MAX 8 /* per panel */

typedef struct plot_line {
  const char *label;
  const double *y; /* one value per x */
} plot_line;

typedef struct plot_panel {
  const char *ylabel;
  const plot_line *lines;
  size_t nlines;
} plot_panel;

/*
 * Write an SVG of panels stacked over one time axis: x_s[i] is the start of
 * interval i in seconds (increasing), each panel a few step lines over it
 * (a value holds across its interval) on a linear y axis from 0, with a
 * legend; the time before warmup_end_s (0: no
 * warmup) is shaded. Returns 0; -1 when n is 0, a panel count or line
 * count is out of bounds, or writing failed.
 */
int plot_timeline_svg(FILE *f, const char *title, const double *x_s, size_t n,
                      const plot_panel *panels, size_t npanels, double warmup_end_s);

#endif /* SPIKE_PLOT_H */

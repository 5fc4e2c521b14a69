/*
 * text.h -- bounded message formatting shared by spikebench's modules.
 * Messages are cut short at the buffer's end rather than refused: a long
 * reason losing its tail is better than no reason.
 */
#ifndef SPIKE_BENCH_TEXT_H
#define SPIKE_BENCH_TEXT_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Format into dst (cap bytes), NUL-terminated; nothing when cap is 0. */
static inline void sb_say(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void sb_say(char *dst, size_t cap, const char *fmt, ...) {
  if (dst == NULL || cap == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst, cap, fmt, ap);
  va_end(ap);
}

/* Append to the NUL-terminated string in dst (cap bytes). */
static inline void sb_add(char *dst, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void sb_add(char *dst, size_t cap, const char *fmt, ...) {
  size_t n = strlen(dst);
  if (n + 1 >= cap) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(dst + n, cap - n, fmt, ap);
  va_end(ap);
}

#endif /* SPIKE_BENCH_TEXT_H */

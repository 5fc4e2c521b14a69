/*
 * log.c -- JSON log lines. See log.h. Formatting happens on the caller's
 * stack and the line goes out in one write(2): no lock, no buffering that a
 * crash could lose, no interleaving between threads.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spike.h"

/* relaxed: a count for reporting */
static _Atomic uint64_t lines_lost;

static _Atomic int level_ = LOG_INFO;

void log_set_level(int level) {
  /* relaxed: a filter; a late view only logs one line more or less. */
  atomic_store_explicit(&level_, level, memory_order_relaxed);
}

void spike_set_log_level(int level) { log_set_level(level); }

int log_enabled(int level) { return level >= atomic_load_explicit(&level_, memory_order_relaxed); }

int log_level_parse(const char *name) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  for (int i = 0; i < 4; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

size_t log_utf8_seq(const unsigned char *s, size_t n) {
  unsigned char c = s[0];
  size_t len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
  if (len == 0 || n < len) return 0;
  for (size_t i = 1; i < len; i++)
    if ((s[i] & 0xc0) != 0x80) return 0;
  if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0) || (c == 0xf0 && s[1] < 0x90) ||
      (c == 0xf4 && s[1] >= 0x90))
    return 0;
  return len;
}

size_t log_escape(char *out, size_t cap, const char *s, size_t n) {
  size_t j = 0;
  if (cap == 0) return 0;
  for (size_t i = 0; i < n && j + 7 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[j++] = '\\';
      out[j++] = (char)c;
    } else if (c < 0x20 || c == 0x7f) {
      j += (size_t)snprintf(out + j, cap - j, "\\u%04x", c);
    } else if (c < 0x80) {
      out[j++] = (char)c;
    } else {
      /* JSON text is UTF-8: a byte that begins no whole sequence (a client's
       * Latin-1, a cut in the middle of a character) becomes U+FFFD */
      size_t k = log_utf8_seq((const unsigned char *)s + i, n - i);
      if (k == 0) {
        memcpy(out + j, "\\ufffd", 6);
        j += 6;
      } else {
        memcpy(out + j, s + i, k);
        j += k;
        i += k - 1;
      }
    }
  }
  out[j] = '\0';
  return j;
}

/* One line: the message (m bytes), then trace, then fields (JSON members,
 * each with its leading comma) and kv (as string members), cut to fit. */
static void emit(int level, const char *module, const char *trace, const char *fields,
                 const spike_log_kv *kv, size_t nkv, const char *msg, size_t m) {
  static const char *const names[] = {"debug", "info", "warn", "error"};
  char line[LOG_LINE_MAX];
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof(line),
                   "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\","
                   "\"module\":\"%s\",\"msg\":\"",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000, names[level & 3], module);
  size_t len = (size_t)n;
  /* Room is kept for the closing members below: the message is cut first. */
  size_t tail_room = 96 + (trace ? 80 : 0) + (fields ? strlen(fields) : 0);
  for (size_t i = 0; i < nkv; i++) tail_room += strlen(kv[i].key) + strlen(kv[i].value) + 8;
  if (tail_room > sizeof(line) / 2) tail_room = sizeof(line) / 2;
  len += log_escape(line + len, sizeof(line) - len - tail_room, msg, m);
  len += (size_t)snprintf(line + len, sizeof(line) - len, "\"");
  if (trace != NULL) {
    len += (size_t)snprintf(line + len, sizeof(line) - len, ",\"traceId\":\"");
    len += log_escape(line + len, sizeof(line) - len - 8, trace, strlen(trace));
    len += (size_t)snprintf(line + len, sizeof(line) - len, "\"");
  }
  if (fields != NULL && len + strlen(fields) + 3 < sizeof(line))
    len += (size_t)snprintf(line + len, sizeof(line) - len, "%s", fields);
  for (size_t i = 0; i < nkv && len + 16 < sizeof(line); i++) {
    /* a duration or a size is a number in every line that has one (spiked's
     * own "store opened" writes ms so), whatever the kv's string says; ids
     * and seqs stay strings, as 64-bit values are in the API */
    int num = (strcmp(kv[i].key, "ms") == 0 || strcmp(kv[i].key, "bytes") == 0) &&
              kv[i].value[0] != '\0' && strlen(kv[i].value) <= 15 &&
              strspn(kv[i].value, "0123456789") == strlen(kv[i].value);
    len += (size_t)snprintf(line + len, sizeof(line) - len, ",\"");
    len += log_escape(line + len, sizeof(line) - len - 8, kv[i].key, strlen(kv[i].key));
    len += (size_t)snprintf(line + len, sizeof(line) - len, num ? "\":" : "\":\"");
    len += log_escape(line + len, sizeof(line) - len - 4, kv[i].value, strlen(kv[i].value));
    if (!num) len += (size_t)snprintf(line + len, sizeof(line) - len, "\"");
  }
  if (len > sizeof(line) - 3) len = sizeof(line) - 3;
  len += (size_t)snprintf(line + len, sizeof(line) - len, "}\n");
  if (len > sizeof(line) - 1) len = sizeof(line) - 1;
  ssize_t w = write(STDERR_FILENO, line, len);
  /* a full disk under --log-file: nowhere to say so but the count */
  if (w != (ssize_t)len) atomic_fetch_add_explicit(&lines_lost, 1, memory_order_relaxed);
}

uint64_t log_lines_lost(void) { return atomic_load_explicit(&lines_lost, memory_order_relaxed); }

void log_line(int level, const char *module, const char *trace, const char *fields,
              const char *fmt, ...) {
  if (!log_enabled(level)) return;
  char msg[LOG_LINE_MAX / 2];
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  if (m < 0) m = 0;
  if ((size_t)m >= sizeof(msg)) m = sizeof(msg) - 1;
  emit(level, module, trace, fields, NULL, 0, msg, (size_t)m);
}

static _Thread_local const char *thread_trace;

void log_thread_trace(const char *trace) { thread_trace = trace; }

void log_kv(int level, const char *module, const spike_log_kv *kv, size_t n, const char *msg) {
  if (!log_enabled(level)) return;
  emit(level, module, thread_trace, NULL, kv, n, msg, strlen(msg));
}

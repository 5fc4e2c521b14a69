/*
 * log.h -- one JSON object per line on stderr: ts, level, module, msg,
 * traceId and any ids the caller adds. The engine and spiked both log
 * through here, so every line in a deployment has the same shape.
 *
 * A line is formatted into a stack buffer and written with one write(2),
 * so lines from different threads never interleave. Lines longer than
 * LOG_LINE_MAX are cut (and stay valid JSON).
 */
#ifndef SPIKE_LOG_H
#define SPIKE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "spike.h"

#define LOG_LINE_MAX 2048

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

void log_set_level(int level);
int log_enabled(int level);
/* "debug", "info", "warn", "error" -> level, or -1. */
int log_level_parse(const char *name);

/*
 * Write one line if level is enabled. trace: the request's traceId or NULL.
 * fields: extra members already encoded as JSON, each starting with a comma
 * (",\"orderId\":\"42\""), or NULL. fmt: the message, escaped here.
 */
void log_line(int level, const char *module, const char *trace, const char *fields,
              const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/*
 * The default sink of an engine with no spike_config.log_cb: the same line
 * as log_line, with each key-value pair as a string member. msg is taken as
 * it is (no format).
 */
void log_kv(int level, const char *module, const spike_log_kv *kv, size_t n, const char *msg);

/* The traceId log_kv adds to the lines this thread writes, or NULL: set by
 * spiked around library calls made for one request (a backup on the pool),
 * so the engine's lines about it carry the request's traceId. */
void log_thread_trace(const char *trace);

/* The length of the well-formed UTF-8 sequence of more than one byte that
 * s (n bytes) begins with (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF), 0 if none. */
size_t log_utf8_seq(const unsigned char *s, size_t n);

/* Append s (n bytes) to out as JSON string content (no quotes): '"', '\\'
 * and control characters escaped, well-formed UTF-8 kept, any other byte
 * written as U+FFFD (so a line is valid JSON whatever a client sent);
 * returns the bytes written, never more than cap - 1; out is NUL-terminated. */
size_t log_escape(char *out, size_t cap, const char *s, size_t n);

/* Lines a write(2) to stderr did not take whole (a full disk under
 * --log-file): counted, since they cannot be told where they go. */
uint64_t log_lines_lost(void);

#endif /* SPIKE_LOG_H */

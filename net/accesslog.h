/*
 * accesslog.h -- the opt-in access log (--access-log PATH|-): one JSON line
 * per answered request, written off the loops.
 *
 * Each loop thread appends lines to a buffer of its own with a memcpy, no
 * lock and no system call. A full buffer (or, at every sweep, a non-empty
 * one) is handed to one writer thread, which write(2)s it and hands it
 * back. Every loop has ACCESS_BUFS buffers: when the writer is that far
 * behind (a slow disk), new lines are dropped and counted rather than
 * slowing the loops down. SIGHUP reopens the file (logrotate's convention).
 */
#ifndef SPIKE_ACCESSLOG_H
#define SPIKE_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#define ACCESS_BUFS 32             /* per loop thread: 2 MiB */
#define ACCESS_BUF_BYTES (64u << 10)
#define ACCESS_LINE_MAX 2048

typedef struct accesslog accesslog;

/* Open path for appending ("-": standard output) for nloops loop threads
 * and start the writer thread. 0, or -1 with a sentence in err. */
int accesslog_open(accesslog **out, const char *path, uint32_t nloops, char *err, size_t errlen);

/* Loop thread loop only: append one whole line (n <= ACCESS_LINE_MAX,
 * ending in '\n'). 0, or -1 when it was dropped (every buffer full). */
int accesslog_write(accesslog *a, uint32_t loop, const char *line, size_t n);

/* Loop thread loop only: hand what its buffer holds to the writer. */
void accesslog_flush(accesslog *a, uint32_t loop);

/* Any thread (the signal thread on SIGHUP): open the file's path again; the
 * writer takes the new file before its next write, so a rotated file is let
 * go of. 0, or -errno when the path cannot be opened (the old file stays). */
int accesslog_reopen(accesslog *a);

/* After every loop has stopped: write what is left, stop the writer,
 * close the file and free a. */
void accesslog_close(accesslog *a);

/* Lines its file refused (a full disk): lost, not queued. Any thread. */
uint64_t accesslog_lost(accesslog *a);

#endif /* SPIKE_ACCESSLOG_H */

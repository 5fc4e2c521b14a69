/*
 * server.h -- spiked's runtime: the engine, N event-loop threads each with
 * its own listener (SO_REUSEPORT), producer and connections, and the main
 * thread waiting for SIGTERM/SIGINT to drain.
 */
#ifndef SPIKE_SERVER_H
#define SPIKE_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "http.h"

typedef struct server_config {
  const char *listen;   /* "host:port", "[v6]:port" */
  spike_config engine;
  uint32_t threads;     /* event-loop threads */
  auth_mode auth;
  const char *jwt_secret;
  const char *admin_token;
  const char *feed_token;  /* read-only bearer token for the change feed */
  const char *access_log;  /* path, "-" (stdout) or NULL (none) */
  const char *log_file;    /* stderr goes here (reopened on SIGHUP); NULL: stderr */
  /* where each value server_check looks at came from, as a bad value's
   * line says it ("FILE:N: ", "$SPIKE_LOG_FILE: "), "" or NULL for a flag */
  const char *access_log_from, *log_file_from, *listen_from, *backup_dir_from;
  const char *feed_token_from, *auth_from;
  const char *backup_dir;  /* where POST /api/v1/admin/backup writes; NULL or "": off */
  int demo;             /* create a demo event on an empty store */
  http_limits lim;
} server_config;

/* Defaults for everything but the engine (spike_config_init does that). */
void server_config_init(server_config *cfg);

/* Run until SIGTERM or SIGINT, then drain: stop accepting, finish what is
 * in flight, commit, close LMDB. SIGHUP reopens the log files (logrotate)
 * and goes on. Returns the process exit status (0 after a clean drain). */
int server_run(const server_config *cfg);
/* The signals server_run takes with sigwait (SIGINT, SIGTERM, SIGHUP):
 * blocked from main's first line, so one that comes early waits for it. */
void server_signals(sigset_t *sigs);
/* A thread that ends the process (exit 0) on SIGINT or SIGTERM until
 * server_run has opened the store; started by main with the signals
 * blocked, stopped by server_run once the store is open. */
void server_watch_start(void);
void server_watch_stop(void);
/* The checks server_run makes before it touches anything (the address's
 * form, tokens, --backup-dir, --jwt-secret, the log files): 0, or 2 with
 * the reason on stderr. starting 0 (--check-config): a log file's missing
 * directory is a note, not a failure. */
int server_check(const server_config *cfg, int starting);

#endif /* SPIKE_SERVER_H */

/*
 * http_client.h -- what the HTTP tests need to drive a real spiked: start
 * and stop the binary on a free loopback port with a fresh data directory,
 * speak HTTP/1.1 over plain sockets, and read JSON answers.
 *
 * The binary is $SPIKED (default build/rel/spiked), so run.sh can point
 * the same tests at the sanitizer builds.
 */
#ifndef SPIKE_TEST_HTTP_CLIENT_H
#define SPIKE_TEST_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct spiked {
  pid_t pid;
  int port;
  char dir[256];
  char log[300];
} spiked;

/* When > 0, the next spiked_start gives the server this RLIMIT_NOFILE. */
extern int spiked_nofile;

/* Start spiked with --listen 127.0.0.1:<free port> --data <dir> plus args
 * (NULL-terminated); dir NULL makes a fresh one. Waits for /healthz/live. */
void spiked_start(spiked *s, const char *dir, const char *const *args);
/* The same on a given port (a restart where clients expect it). */
void spiked_start_on(spiked *s, int port, const char *dir, const char *const *args);
/* spiked_start with tests/fault.c loaded into spiked alone ($FAULT_SHIM,
 * default build/rel/tests/libfault.so), steered by a control file whose
 * path goes into ctl (removed first: no faults until fault_ctl). */
void spiked_start_shim(spiked *s, const char *dir, const char *const *args, char *ctl,
                       size_t ctl_cap);
/* Fork and exec spiked under the shim with the control file already saying
 * faults ("delay=3000": every sync first sleeps 3 s), and return: not
 * waiting for it to listen. */
void spiked_spawn_shim(spiked *s, const char *dir, const char *faults, char *ctl,
                       size_t ctl_cap);
/* Replace the control file's text at once ("write=ENOSPC", ...). */
void fault_ctl(const char *ctl, const char *what);
/* Run spiked ($SPIKED) with args until it exits (10 s at most; longer
 * aborts); its stderr into log. Returns its exit status. */
int spiked_refused(const char *const *args, char *log, size_t cap);
/* Send sig and wait; returns the exit status (or 128+signal). */
int spiked_stop(spiked *s, int sig);
/* The server's log so far, NUL-terminated, static storage. */
const char *spiked_log(const spiked *s);

typedef struct hc_resp {
  int status;
  char head[8192];     /* status line and headers */
  char body[1 << 20];
  size_t body_len;
  int closed;          /* the server closed the connection after it */
} hc_resp;

/* A loopback TCP port that was free a moment ago. */
int hc_free_port(void);
int hc_connect(int port);
void hc_send(int fd, const char *buf, size_t n);
/* Read one response; 0, or -1 when the connection closed first / timed out. */
int hc_read(int fd, hc_resp *r, int timeout_ms);
/* One request on a new connection (Connection: close); returns status. */
int hc_do(int port, const char *method, const char *path, const char *headers,
          const char *body, hc_resp *r);
/* A request's bytes: method, path, extra headers ("" or "K: v\r\n..."),
 * JSON body (NULL for none). Returns the length written into buf. */
size_t hc_format(char *buf, size_t cap, const char *method, const char *path,
                 const char *headers, const char *body);

/* POST /api/v1/events: a live sale (started a minute ago, ending in an
 * hour) of stock units with this id; CHECKs the 201. */
void hc_create_event(int port, uint64_t id, uint64_t stock);

/* The value of header name (case-insensitive) in r->head, or NULL. */
const char *hc_header(const hc_resp *r, const char *name, char *out, size_t cap);

/* JSON: the value at path ("code", "data.id", "data.orders.0.state") in
 * r->body, unquoted if a string, into out. 0, or -1 when absent. */
int hc_json(const hc_resp *r, const char *path, char *out, size_t cap);
/* The envelope's code, or -1. */
int hc_code(const hc_resp *r);
/* hc_json as an integer (strings of digits too); -1 when absent. */
long long hc_json_int(const hc_resp *r, const char *path);
/* Elements of the array at path, or -1. */
int hc_json_len(const hc_resp *r, const char *path);

#endif /* SPIKE_TEST_HTTP_CLIENT_H */

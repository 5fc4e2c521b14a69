/*
 * http_client.c -- see http_client.h. Blocking sockets with poll timeouts;
 * responses framed by Content-Length (spiked always sends it); JSON read
 * with jsmn.
 */
#define _GNU_SOURCE
#include "http_client.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define JSMN_STATIC
#include <jsmn.h>

#include "test.h"

/* Per-fd leftovers: bytes read past one response belong to the next. */
#define HC_FDS 4096
static struct {
  char *buf;
  size_t len;
} carry[HC_FDS];

static const char *spiked_bin(void) {
  const char *bin = getenv("SPIKED");
  return bin != NULL && *bin != '\0' ? bin : "build/rel/spiked";
}

/* Run spiked with args until it exits (10 s at most); its stderr into log.
 * Returns its exit status. */
int spiked_refused(const char *const *args, char *log, size_t cap) {
  char path[300];
  const char *tmp = getenv("TMPDIR");
  snprintf(path, sizeof(path), "%s/spike-test-refused-%d.err", tmp != NULL && *tmp ? tmp : "/tmp",
           (int)getpid());
  const char *argv[32] = {spiked_bin()};
  int n = 1;
  for (int i = 0; args[i] != NULL && n < 31; i++) argv[n++] = args[i];
  argv[n] = NULL;
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    execv(argv[0], (char *const *)argv);
    _exit(127);
  }
  int st = 0;
  int64_t t0 = test_now_ms();
  while (waitpid(pid, &st, WNOHANG) == 0) {
    if (test_now_ms() - t0 > 10000) {
      kill(pid, SIGKILL);
      waitpid(pid, &st, 0);
      fprintf(stderr, "spiked kept running where it should have refused\n");
      abort();
    }
    usleep(10 * 1000);
  }
  int fd = open(path, O_RDONLY);
  CHECK(fd >= 0);
  ssize_t got = read(fd, log, cap - 1);
  log[got > 0 ? got : 0] = '\0';
  close(fd);
  unlink(path);
  CHECK(WIFEXITED(st));
  return WEXITSTATUS(st);
}

int hc_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  CHECK(bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
  socklen_t len = sizeof(a);
  CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
  close(fd);
  return ntohs(a.sin_port);
}

int hc_connect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  CHECK(fd >= 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
    close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

int spiked_nofile;

static void spawn(spiked *s, int port, const char *dir, const char *const *args);
static int start_once(spiked *s, int port, const char *dir, const char *const *args,
                      int may_retry);

void spiked_start(spiked *s, const char *dir, const char *const *args) {
  /* another program may take the free port before spiked binds it */
  for (int i = 0; i < 5; i++)
    if (start_once(s, hc_free_port(), dir, args, i < 4) == 0) return;
}

/* The shim and its control file in the environment the next spiked
 * inherits (shim_env(NULL, 0) takes them out again). */
static void shim_env(char *ctl, size_t ctl_cap) {
  if (ctl == NULL) {
    unsetenv("LD_PRELOAD");
    unsetenv("SPIKE_FAULT_CTL");
    unsetenv("ASAN_OPTIONS");
    return;
  }
  const char *shim = getenv("FAULT_SHIM");
  if (shim == NULL || *shim == '\0') shim = "build/rel/tests/libfault.so";
  CHECK(access(shim, R_OK) == 0);
  const char *tmp = getenv("TMPDIR");
  snprintf(ctl, ctl_cap, "%s/spike-test-faultctl-%d", tmp != NULL && *tmp ? tmp : "/tmp",
           (int)getpid());
  unlink(ctl);
  /* for spiked alone: it inherits these at its fork */
  setenv("LD_PRELOAD", shim, 1);
  setenv("SPIKE_FAULT_CTL", ctl, 1);
  setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 1);
}

void spiked_start_shim(spiked *s, const char *dir, const char *const *args, char *ctl,
                       size_t ctl_cap) {
  shim_env(ctl, ctl_cap);
  spiked_start(s, dir, args);
  shim_env(NULL, 0);
}

void spiked_spawn_shim(spiked *s, const char *dir, const char *faults, char *ctl,
                       size_t ctl_cap) {
  shim_env(ctl, ctl_cap);
  fault_ctl(ctl, faults);
  spawn(s, hc_free_port(), dir, NULL);
  shim_env(NULL, 0);
}

void fault_ctl(const char *ctl, const char *what) {
  char tmp[600];
  snprintf(tmp, sizeof(tmp), "%s.new", ctl);
  FILE *f = fopen(tmp, "w");
  CHECK(f != NULL);
  fprintf(f, "%s\n", what);
  fclose(f);
  CHECK_EQ(rename(tmp, ctl), 0);
}

/* 1 when process pid holds a socket listening on 127.0.0.1:port: the
 * server under test, not another program that took the port between
 * hc_free_port() and spiked's bind (tests run beside each other). */
static int listens(pid_t pid, int port) {
  FILE *f = fopen("/proc/net/tcp", "r");
  if (f == NULL) return 0;
  char line[512], want[32];
  unsigned long inodes[16];
  int n = 0;
  snprintf(want, sizeof(want), "0100007F:%04X", (unsigned)port);
  while (fgets(line, sizeof(line), f) != NULL && n < 16) {
    char local[64], st[8];
    unsigned long inode;
    /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
    if (sscanf(line, "%*s %63s %*s %7s %*s %*s %*s %*s %*s %lu", local, st, &inode) == 3 &&
        strcmp(local, want) == 0 && strcmp(st, "0A") == 0)
      inodes[n++] = inode;
  }
  fclose(f);
  if (n == 0) return 0;
  char dir[64];
  snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  int found = 0;
  for (struct dirent *de; !found && (de = readdir(d)) != NULL;) {
    char path[320], link[64];
    snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
    ssize_t len = readlink(path, link, sizeof(link) - 1);
    if (len <= 0) continue;
    link[len] = '\0';
    for (int i = 0; i < n && !found; i++) {
      char sock[48];
      snprintf(sock, sizeof(sock), "socket:[%lu]", inodes[i]);
      found = strcmp(link, sock) == 0;
    }
  }
  closedir(d);
  return found;
}

/* 1 when GET /healthz/live on port answers 200, over one connection (a
 * test with --max-conns 1 must not find a second one of ours); 0 when the
 * connection fails or the answer is another (the probe may have closed). */
static int answers_live(int port) {
  static hc_resp live;
  static char buf[512];
  int fd = hc_connect(port);
  if (fd < 0) return 0;
  size_t n = hc_format(buf, sizeof(buf), "GET", "/healthz/live", NULL, NULL);
  int ok = send(fd, buf, n, MSG_NOSIGNAL) == (ssize_t)n && hc_read(fd, &live, 10000) == 0 &&
           live.status == 200;
  if (fd < HC_FDS) carry[fd].len = 0;
  close(fd);
  return ok;
}

/* Start; 0 once it listens, -1 when it exited at start for want of the
 * port (taken after hc_free_port() chose it) and may_retry; aborts otherwise. */
/* Fork and exec spiked, its stderr into s->log; not waiting for anything. */
static void spawn(spiked *s, int port, const char *dir, const char *const *args) {
  memset(s, 0, sizeof(*s));
  s->port = port;
  if (dir != NULL)
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
  else
    snprintf(s->dir, sizeof(s->dir), "%s", test_tmpdir("http"));
  snprintf(s->log, sizeof(s->log), "%s.log", s->dir);
  const char *bin = spiked_bin();
  char listen[64];
  snprintf(listen, sizeof(listen), "127.0.0.1:%d", s->port);
  const char *argv[64] = {bin, "--listen", listen, "--data", s->dir};
  int n = 5;
  for (int i = 0; args != NULL && args[i] != NULL && n < 62; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  fflush(NULL);
  s->pid = fork();
  CHECK(s->pid >= 0);
  if (s->pid == 0) {
    /* a test killed by its time limit takes its server with it */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (spiked_nofile > 0) {
      struct rlimit lim = {(rlim_t)spiked_nofile, (rlim_t)spiked_nofile};
      setrlimit(RLIMIT_NOFILE, &lim);
    }
    int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 2);
    close(fd);
    execv(bin, (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
    _exit(127);
  }
}

static int start_once(spiked *s, int port, const char *dir, const char *const *args,
                      int may_retry) {
  spawn(s, port, dir, args);
  /* A bound on a hang, not a timing: the TSan build on a loaded machine
   * takes seconds to zero its tables. */
  int64_t give_up = test_now_ms() + 30000;
  while (test_now_ms() < give_up) {
    if (listens(s->pid, s->port)) {
      /* An answer, not only a listening socket: spiked's start-up probe of
       * its address (claim_address) listens for a moment before the store
       * opens. */
      if (answers_live(s->port)) return 0;
    }
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      if (may_retry && strstr(spiked_log(s), "address already in use") != NULL) return -1;
      fprintf(stderr, "spiked exited at start:\n%s\n", spiked_log(s));
      abort();
    }
    usleep(10000);
  }
  fprintf(stderr, "spiked did not listen within 30 s:\n%s\n", spiked_log(s));
  abort();
}

void spiked_start_on(spiked *s, int port, const char *dir, const char *const *args) {
  start_once(s, port, dir, args, 0);
}

int spiked_stop(spiked *s, int sig) {
  if (s->pid <= 0) return -1;
  kill(s->pid, sig);
  int st = 0;
  for (int i = 0; i < 3000; i++) { /* 30 s */
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid) break;
    if (i == 2999) {
      fprintf(stderr, "spiked ignored signal %d for 30 s\n", sig);
      kill(s->pid, SIGKILL);
      waitpid(s->pid, &st, 0);
    }
    usleep(10000);
  }
  s->pid = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

const char *spiked_log(const spiked *s) {
  static char buf[1 << 16];
  buf[0] = '\0';
  FILE *f = fopen(s->log, "r");
  if (f == NULL) return buf;
  size_t n = fread(buf, 1, sizeof(buf) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

void hc_send(int fd, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return; /* the server closed: the read will say so */
    buf += w;
    n -= (size_t)w;
  }
}


static ssize_t fill(int fd, char *dst, size_t cap, int timeout_ms) {
  if (fd < HC_FDS && carry[fd].len > 0) {
    size_t n = carry[fd].len < cap ? carry[fd].len : cap;
    memcpy(dst, carry[fd].buf, n);
    memmove(carry[fd].buf, carry[fd].buf + n, carry[fd].len - n);
    carry[fd].len -= n;
    return (ssize_t)n;
  }
  struct pollfd p = {fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return -2;
  return recv(fd, dst, cap, 0);
}

static void put_back(int fd, const char *p, size_t n) {
  if (n == 0 || fd >= HC_FDS) return;
  carry[fd].buf = realloc(carry[fd].buf, carry[fd].len + n);
  memmove(carry[fd].buf + n, carry[fd].buf, carry[fd].len);
  memcpy(carry[fd].buf, p, n);
  carry[fd].len += n;
}

int hc_read(int fd, hc_resp *r, int timeout_ms) {
  static char buf[(1 << 20) + 8192];
  size_t len = 0;
  char *end = NULL;
  r->status = 0;
  r->body_len = 0;
  r->closed = 0;
  while (end == NULL) {
    if (len == sizeof(buf)) return -1;
    ssize_t n = fill(fd, buf + len, sizeof(buf) - len, timeout_ms);
    if (n <= 0) {
      r->closed = 1;
      return -1;
    }
    len += (size_t)n;
    end = memmem(buf, len, "\r\n\r\n", 4);
  }
  size_t hl = (size_t)(end - buf) + 4;
  if (hl >= sizeof(r->head)) return -1;
  memcpy(r->head, buf, hl);
  r->head[hl] = '\0';
  if (sscanf(r->head, "HTTP/1.1 %d", &r->status) != 1) return -1;
  char v[32];
  size_t cl = hc_header(r, "Content-Length", v, sizeof(v)) ? strtoul(v, NULL, 10) : 0;
  if (cl >= sizeof(r->body)) return -1;
  while (len < hl + cl) {
    ssize_t n = fill(fd, buf + len, sizeof(buf) - len, timeout_ms);
    if (n <= 0) {
      r->closed = 1;
      return -1;
    }
    len += (size_t)n;
  }
  memcpy(r->body, buf + hl, cl);
  r->body[cl] = '\0';
  r->body_len = cl;
  put_back(fd, buf + hl + cl, len - hl - cl);
  char conn[32];
  if (hc_header(r, "Connection", conn, sizeof(conn)) && strcasecmp(conn, "close") == 0)
    r->closed = 1;
  return 0;
}

size_t hc_format(char *buf, size_t cap, const char *method, const char *path, const char *headers,
                 const char *body) {
  int n;
  if (body != NULL)
    n = snprintf(buf, cap,
                 "%s %s HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n%s\r\n%s",
                 method, path, strlen(body), headers ? headers : "", body);
  else
    n = snprintf(buf, cap, "%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n", method, path,
                 headers ? headers : "");
  CHECK(n > 0 && (size_t)n < cap);
  return (size_t)n;
}

int hc_do(int port, const char *method, const char *path, const char *headers, const char *body,
          hc_resp *r) {
  static char buf[1 << 17];
  int fd = hc_connect(port);
  CHECK(fd >= 0);
  size_t n = hc_format(buf, sizeof(buf), method, path, headers, body);
  hc_send(fd, buf, n);
  int rc = hc_read(fd, r, 10000);
  if (fd < HC_FDS) carry[fd].len = 0;
  close(fd);
  return rc == 0 ? r->status : -1;
}

const char *hc_header(const hc_resp *r, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = strstr(r->head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
    const char *h = p + 2;
    if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
      h += nl + 1;
      while (*h == ' ')
        h++;
      const char *e = strstr(h, "\r\n");
      size_t n = (size_t)(e - h);
      if (n >= cap) n = cap - 1;
      memcpy(out, h, n);
      out[n] = '\0';
      return out;
    }
  }
  return NULL;
}

/* ---- JSON ------------------------------------------------------------------- */

static int skip(const jsmntok_t *t, int i) {
  int n = t[i].size, j = i + 1;
  if (t[i].type == JSMN_OBJECT)
    for (int k = 0; k < n; k++)
      j = skip(t, j + 1);
  else if (t[i].type == JSMN_ARRAY)
    for (int k = 0; k < n; k++)
      j = skip(t, j);
  return j;
}

/* The token index at path, or -1. */
static int find(const char *js, const jsmntok_t *t, const char *path) {
  int i = 0;
  char part[64];
  while (*path != '\0') {
    const char *dot = strchr(path, '.');
    size_t n = dot ? (size_t)(dot - path) : strlen(path);
    if (n >= sizeof(part)) return -1;
    memcpy(part, path, n);
    part[n] = '\0';
    path += n + (dot != NULL);
    if (t[i].type == JSMN_OBJECT) {
      int j = i + 1, found = -1;
      for (int k = 0; k < t[i].size; k++) {
        if ((size_t)(t[j].end - t[j].start) == n && memcmp(js + t[j].start, part, n) == 0) {
          found = j + 1;
          break;
        }
        j = skip(t, j + 1);
      }
      if (found < 0) return -1;
      i = found;
    } else if (t[i].type == JSMN_ARRAY) {
      int idx = atoi(part), j = i + 1;
      if (idx >= t[i].size) return -1;
      for (int k = 0; k < idx; k++)
        j = skip(t, j);
      i = j;
    } else {
      return -1;
    }
  }
  return i;
}

static jsmntok_t toks[1 << 16];

static int locate(const hc_resp *r, const char *path) {
  jsmn_parser p;
  jsmn_init(&p);
  int n = jsmn_parse(&p, r->body, r->body_len, toks, sizeof(toks) / sizeof(toks[0]));
  if (n <= 0) return -1;
  return find(r->body, toks, path);
}

int hc_json(const hc_resp *r, const char *path, char *out, size_t cap) {
  int i = locate(r, path);
  if (i < 0) return -1;
  size_t n = (size_t)(toks[i].end - toks[i].start);
  if (n >= cap) n = cap - 1;
  memcpy(out, r->body + toks[i].start, n);
  out[n] = '\0';
  return 0;
}

int hc_code(const hc_resp *r) { return (int)hc_json_int(r, "code"); }

long long hc_json_int(const hc_resp *r, const char *path) {
  char v[64];
  if (hc_json(r, path, v, sizeof(v)) != 0 || v[0] == '\0') return -1;
  return strtoll(v, NULL, 10);
}

int hc_json_len(const hc_resp *r, const char *path) {
  int i = locate(r, path);
  return i < 0 || toks[i].type != JSMN_ARRAY ? -1 : toks[i].size;
}

void hc_create_event(int port, uint64_t id, uint64_t stock) {
  static hc_resp r;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  long long now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
  char body[256];
  snprintf(body, sizeof(body),
           "{\"id\":%llu,\"name\":\"Sale\",\"stock\":%llu,\"price\":100,\"start_at\":%lld,"
           "\"end_at\":%lld}",
           (unsigned long long)id, (unsigned long long)stock, now - 60000, now + 3600000);
  CHECK_EQ(hc_do(port, "POST", "/api/v1/events", NULL, body, &r), 201);
}

/*
 * accesslog.c -- buffers handed between the loops and one writer thread.
 *
 * A buffer is in one of three places: a loop's hand (the one it fills), a
 * loop's free list, or the writer's queue. Lines are copied in by the loop
 * with no lock; the mutex is taken only to hand a buffer over (once per
 * ACCESS_BUF_BYTES, or once per sweep), so the loops never wait on the
 * disk. Lines of one loop stay in order; lines of different loops are
 * interleaved buffer by buffer, each line whole.
 */
#include "accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "log.h"

typedef struct abuf {
  struct abuf *next;
  uint32_t loop;
  size_t len;
  char data[ACCESS_BUF_BYTES];
} abuf;

typedef struct aloop {
  abuf *cur;  /* the loop's; NULL when every buffer is away */
  abuf *free; /* under the lock */
} aloop;

struct accesslog {
  _Atomic uint64_t lost; /* lines a write refused (a full disk); relaxed: a count */
  pthread_mutex_t lock;
  pthread_cond_t ready;
  abuf *head, *tail; /* the writer's queue, under the lock */
  int stop;          /* under the lock */
  int reopen;        /* under the lock: next_fd waits to replace fd */
  int next_fd;       /* under the lock; -1 when none */
  int fd, own_fd;
  char *path;
  uint32_t nloops;
  aloop *loops;
  abuf *all;
  pthread_t thread;
};

static int open_file(const char *path) {
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static void write_all(accesslog *a, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(a->fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) { /* a full or failing disk: these lines are lost, say so once a buffer */
      log_line(LOG_ERROR, "http", NULL, NULL, "access log %s: %s", a->path, strerror(errno));
      uint64_t lines = 0;
      for (size_t i = 0; i < n; i++)
        lines += p[i] == '\n';
      atomic_fetch_add_explicit(&a->lost, lines, memory_order_relaxed);
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void *writer_main(void *arg) {
  accesslog *a = arg;
  (void)prctl(PR_SET_NAME, "spike-accesslog");
  pthread_mutex_lock(&a->lock);
  for (;;) {
    while (a->head == NULL && !a->stop && !a->reopen) pthread_cond_wait(&a->ready, &a->lock);
    if (a->reopen) { /* the file opened by accesslog_reopen replaces the old one */
      a->reopen = 0;
      int old = a->fd;
      a->fd = a->next_fd;
      a->next_fd = -1;
      pthread_mutex_unlock(&a->lock);
      close(old);
      pthread_mutex_lock(&a->lock);
      continue;
    }
    abuf *b = a->head;
    if (b == NULL) break; /* stopped and nothing left */
    a->head = b->next;
    if (a->head == NULL) a->tail = NULL;
    pthread_mutex_unlock(&a->lock);
    write_all(a, b->data, b->len);
    pthread_mutex_lock(&a->lock);
    b->len = 0;
    b->next = a->loops[b->loop].free;
    a->loops[b->loop].free = b;
  }
  pthread_mutex_unlock(&a->lock);
  return NULL;
}

int accesslog_open(accesslog **out, const char *path, uint32_t nloops, char *err, size_t errlen) {
  *out = NULL;
  accesslog *a = calloc(1, sizeof(*a));
  if (a == NULL) goto oom;
  a->nloops = nloops;
  a->next_fd = -1;
  a->loops = calloc(nloops, sizeof(aloop));
  a->all = calloc((size_t)nloops * ACCESS_BUFS, sizeof(abuf));
  a->path = strdup(path);
  if (a->loops == NULL || a->all == NULL || a->path == NULL) goto oom;
  for (uint32_t l = 0; l < nloops; l++) {
    for (uint32_t k = 0; k < ACCESS_BUFS; k++) {
      abuf *b = &a->all[l * ACCESS_BUFS + k];
      b->loop = l;
      b->next = a->loops[l].free;
      a->loops[l].free = b;
    }
    a->loops[l].cur = a->loops[l].free;
    a->loops[l].free = a->loops[l].cur->next;
  }
  if (strcmp(path, "-") == 0) {
    a->fd = STDOUT_FILENO;
  } else if ((a->fd = open_file(path)) < 0) {
    snprintf(err, errlen, "--access-log %s: %s", path, strerror(errno));
    goto fail;
  } else {
    a->own_fd = 1;
  }
  pthread_mutex_init(&a->lock, NULL);
  pthread_cond_init(&a->ready, NULL);
  if (pthread_create(&a->thread, NULL, writer_main, a) != 0) {
    snprintf(err, errlen, "--access-log: cannot start its thread");
    if (a->own_fd) close(a->fd);
    goto fail;
  }
  *out = a;
  return 0;
oom:
  snprintf(err, errlen, "--access-log: out of memory");
fail:
  if (a != NULL) {
    free(a->loops);
    free(a->all);
    free(a->path);
    free(a);
  }
  return -1;
}

/* Queue the loop's buffer for the writer and take a free one (or none). */
static void hand_over(accesslog *a, aloop *l) {
  pthread_mutex_lock(&a->lock);
  if (l->cur != NULL && l->cur->len > 0) {
    l->cur->next = NULL;
    if (a->tail != NULL) a->tail->next = l->cur;
    else a->head = l->cur;
    a->tail = l->cur;
    l->cur = NULL;
    pthread_cond_signal(&a->ready);
  }
  if (l->cur == NULL && l->free != NULL) {
    l->cur = l->free;
    l->free = l->cur->next;
  }
  pthread_mutex_unlock(&a->lock);
}

uint64_t accesslog_lost(accesslog *a) {
  return a != NULL ? atomic_load_explicit(&a->lost, memory_order_relaxed) : 0;
}

int accesslog_write(accesslog *a, uint32_t loop, const char *line, size_t n) {
  aloop *l = &a->loops[loop];
  if (l->cur == NULL || l->cur->len + n > ACCESS_BUF_BYTES) hand_over(a, l);
  if (l->cur == NULL || l->cur->len + n > ACCESS_BUF_BYTES) return -1;
  memcpy(l->cur->data + l->cur->len, line, n);
  l->cur->len += n;
  return 0;
}

void accesslog_flush(accesslog *a, uint32_t loop) {
  aloop *l = &a->loops[loop];
  if (l->cur == NULL || l->cur->len > 0) hand_over(a, l);
}

int accesslog_reopen(accesslog *a) {
  if (!a->own_fd) return 0; /* standard output stays */
  int fd = open_file(a->path);
  if (fd < 0) return -errno;
  pthread_mutex_lock(&a->lock);
  if (a->next_fd >= 0) close(a->next_fd); /* a reopen not taken yet: this one is newer */
  a->next_fd = fd;
  a->reopen = 1;
  pthread_cond_signal(&a->ready);
  pthread_mutex_unlock(&a->lock);
  return 0;
}

void accesslog_close(accesslog *a) {
  if (a == NULL) return;
  for (uint32_t l = 0; l < a->nloops; l++) accesslog_flush(a, l);
  pthread_mutex_lock(&a->lock);
  a->stop = 1;
  pthread_cond_signal(&a->ready);
  pthread_mutex_unlock(&a->lock);
  pthread_join(a->thread, NULL);
  if (a->own_fd) close(a->fd);
  if (a->next_fd >= 0) close(a->next_fd);
  pthread_mutex_destroy(&a->lock);
  pthread_cond_destroy(&a->ready);
  free(a->loops);
  free(a->all);
  free(a->path);
  free(a);
}

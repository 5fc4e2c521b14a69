/*
 * powerloss.c -- an LD_PRELOAD shim that keeps, beside every LMDB data file
 * (a path ending in "data.mdb"), the file as a power cut would leave it:
 * "<path>.durable". Writes go to the real file at once and are queued; an
 * fsync or fdatasync of the file applies the queue to the durable image;
 * writes through a descriptor opened with O_DSYNC or O_SYNC apply at once.
 * A test kills the process, moves the image over the data file and opens
 * the store: what it finds is what survived the cut, unsynced writes
 * dropped (their order between two syncs does not matter: they are all
 * dropped).
 *
 * The image starts as a copy of the file when the process first opens it,
 * so a test that swaps it in after every cut runs life after life on what
 * each cut left. LMDB's write calls on this platform are pwrite, lseek +
 * writev, and write (for copies); each is covered. It would also msync and
 * ftruncate the data file, but only with MDB_WRITEMAP, which the store does
 * not use; the lock file holds only the reader table, which LMDB rebuilds
 * when the first process opens it, so what a cut leaves in it is moot.
 *
 *   spike_powerloss_cut(n, torn) cut the power at this process's n-th I/O op
 *                              on the data file (a write or a sync; 0: never):
 *                              the op is not done, the process dies at once
 *                              (SIGKILL). torn != 0 seeds the torn mode: each
 *                              512-byte sector of what was written and not
 *                              synced reaches the image or not, at random.
 *   spike_powerloss_ops()      I/O ops on the data file so far
 *   spike_powerloss_pending()  bytes written and not yet synced (tests)
 *   spike_powerloss_reset()    start tracking in this process, with nothing
 *                              seen yet (a child after fork, so its first open
 *                              copies the file as it is now). Until it is
 *                              called nothing is tracked: the test's parent,
 *                              which checks what the cut left, writes no image.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define FDS_MAX 1024

/* A write not yet synced. One queue for every descriptor, in the order
 * the writes were made: two descriptors may write one file (the store's
 * own writes ahead of LMDB's pages, then LMDB's pages over them), and a
 * sync applies what they wrote in that order, as the page cache holds it. */
typedef struct pending {
  off_t off;
  size_t len;
  int file; /* which image: an index into seen[] */
  struct pending *next;
  unsigned char data[];
} pending;

typedef struct tracked {
  int on;
  int sync; /* O_DSYNC or O_SYNC: every write is durable at once */
  int file; /* the file's index into seen[] and images[] */
} tracked;

#define FILES_MAX 64
static tracked fds[FDS_MAX];
static pending *q_head, *q_tail;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char seen[FILES_MAX][PATH_MAX]; /* images this process has started */
static int images[FILES_MAX];           /* each one's descriptor */
static int nseen;
static int armed; /* spike_powerloss_reset was called in this process */
static uint64_t ops, cut_at, torn_rng;

#define REAL(name, type)                                                       \
  static type real_##name;                                                     \
  if (real_##name == NULL) {                                                   \
    void *sym_ = dlsym(RTLD_NEXT, #name);                                      \
    memcpy(&real_##name, &sym_, sizeof(sym_));                                 \
  }

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*close_fn)(int);
typedef int (*sync_fn)(int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef off_t (*lseek_fn)(int, off_t, int);

static int is_data(const char *path) {
  size_t n = strlen(path);
  return n >= 8 && strcmp(path + n - 8, "data.mdb") == 0;
}

/* The image of path, as an index into seen[] and images[]: copied from
 * the file the first time this process sees it; -1 when it cannot be made
 * (the descriptor is then not tracked). More than FILES_MAX files abort. */
static int open_image(const char *path) {
  REAL(open, open_fn);
  REAL(pwrite, pwrite_fn);
  REAL(close, close_fn); /* this runs under the lock close() takes */
  char img[PATH_MAX];
  snprintf(img, sizeof(img), "%s.durable", path);
  for (int i = 0; i < nseen; i++)
    if (strcmp(seen[i], img) == 0) return i;
  if (nseen == FILES_MAX) abort();
  /* Copy into a scratch file and rename it into place: a kill during the
   * copy (the test kills at random) leaves no image, so the test keeps the
   * data file as the last cut left it, never half an image. */
  char tmp[PATH_MAX + 8];
  snprintf(tmp, sizeof(tmp), "%s.tmp", img);
  int fd = real_open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return -1;
  int src = real_open(path, O_RDONLY | O_CLOEXEC);
  if (src >= 0) {
    unsigned char buf[65536];
    ssize_t n;
    off_t off = 0;
    while ((n = read(src, buf, sizeof(buf))) > 0) {
      if (real_pwrite(fd, buf, (size_t)n, off) != n) abort();
      off += n;
    }
    if (n < 0) abort();
    real_close(src);
  }
  if (rename(tmp, img) != 0) abort();
  snprintf(seen[nseen], PATH_MAX, "%s", img);
  images[nseen] = fd;
  return nseen++;
}

static void track(int fd, const char *path, int flags) {
  if (!armed || fd < 0 || fd >= FDS_MAX || !is_data(path)) return;
  pthread_mutex_lock(&lock);
  int file = open_image(path);
  if (file >= 0) fds[fd] = (tracked){.on = 1, .sync = (flags & (O_DSYNC | O_SYNC)) != 0, .file = file};
  pthread_mutex_unlock(&lock);
}

static void apply(int file, off_t off, const void *p, size_t len) {
  REAL(pwrite, pwrite_fn);
  if (real_pwrite(images[file], p, len, off) != (ssize_t)len) abort();
}

/* A write that reached the file at off: durable now, or queued. */
static void op_or_cut(void);

/* Before a write or a sync on fd: the cut may come here. */
static void before_op(int fd) {
  if (fd < 0 || fd >= FDS_MAX) return;
  pthread_mutex_lock(&lock);
  if (fds[fd].on) op_or_cut();
  pthread_mutex_unlock(&lock);
}

static void wrote(int fd, off_t off, const struct iovec *iov, int cnt, ssize_t n) {
  if (fd < 0 || fd >= FDS_MAX || n <= 0) return;
  pthread_mutex_lock(&lock);
  tracked *t = &fds[fd];
  if (t->on) {
    size_t left = (size_t)n;
    for (int i = 0; i < cnt && left > 0; i++) {
      size_t len = iov[i].iov_len < left ? iov[i].iov_len : left;
      if (t->sync) {
        apply(t->file, off, iov[i].iov_base, len);
        /* an older queued write to these bytes is older data: as the page
         * cache would, it now holds these, so a later sync cannot put the
         * old ones back over them */
        for (pending *pd = q_head; pd != NULL; pd = pd->next) {
          off_t a = pd->off > off ? pd->off : off;
          off_t b = pd->off + (off_t)pd->len < off + (off_t)len ? pd->off + (off_t)pd->len
                                                                : off + (off_t)len;
          if (pd->file == t->file && a < b)
            memcpy(pd->data + (a - pd->off), (const unsigned char *)iov[i].iov_base + (a - off),
                   (size_t)(b - a));
        }
      } else {
        pending *pd = malloc(sizeof(*pd) + len);
        if (pd == NULL) abort();
        pd->off = off;
        pd->len = len;
        pd->file = t->file;
        pd->next = NULL;
        memcpy(pd->data, iov[i].iov_base, len);
        if (q_tail != NULL) q_tail->next = pd;
        else q_head = pd;
        q_tail = pd;
      }
      off += (off_t)len;
      left -= len;
    }
  }
  pthread_mutex_unlock(&lock);
}

static void synced(int fd) {
  if (fd < 0 || fd >= FDS_MAX) return;
  pthread_mutex_lock(&lock);
  /* A sync of one descriptor flushes the file, whichever descriptor
   * wrote it, in the order it was written; other files' writes stay. */
  if (fds[fd].on) {
    int file = fds[fd].file;
    pending **link = &q_head;
    q_tail = NULL;
    while (*link != NULL) {
      pending *pd = *link;
      if (pd->file == file) {
        apply(file, pd->off, pd->data, pd->len);
        *link = pd->next;
        free(pd);
      } else {
        q_tail = pd;
        link = &pd->next;
      }
    }
  }
  pthread_mutex_unlock(&lock);
}

void spike_powerloss_cut(uint64_t n, uint64_t torn) {
  pthread_mutex_lock(&lock);
  cut_at = n;
  torn_rng = torn;
  pthread_mutex_unlock(&lock);
}

uint64_t spike_powerloss_ops(void) {
  pthread_mutex_lock(&lock);
  uint64_t n = ops;
  pthread_mutex_unlock(&lock);
  return n;
}

static uint64_t rng_next(void) { /* xorshift64* */
  torn_rng ^= torn_rng >> 12;
  torn_rng ^= torn_rng << 25;
  torn_rng ^= torn_rng >> 27;
  return torn_rng * 0x2545F4914F6CDD1Dull;
}

/* Count an op on the data file; at the cut, the power goes: in torn mode
 * some of what was written and not synced reaches the disk, sector by
 * sector; then the process stops before the op happens. Caller holds lock. */
static void op_or_cut(void) {
  if (++ops != cut_at || cut_at == 0) return;
  if (torn_rng != 0)
    for (pending *pd = q_head; pd != NULL; pd = pd->next) {
      /* sectors are 512-byte aligned on the device */
      off_t first = pd->off & ~(off_t)511, end = pd->off + (off_t)pd->len;
      for (off_t s = first; s < end; s += 512) {
        if (rng_next() & 1) continue;
        off_t a = s < pd->off ? pd->off : s, b = s + 512 < end ? s + 512 : end;
        apply(pd->file, a, pd->data + (a - pd->off), (size_t)(b - a));
      }
    }
  raise(SIGKILL);
}

void spike_powerloss_reset(void) {
  pthread_mutex_lock(&lock);
  for (pending *pd = q_head, *next; pd != NULL; pd = next) {
    next = pd->next;
    free(pd);
  }
  q_head = q_tail = NULL;
  for (int i = 0; i < FDS_MAX; i++) fds[i] = (tracked){0};
  /* inherited image descriptors stay open, unused */
  nseen = 0;
  ops = cut_at = torn_rng = 0;
  armed = 1;
  pthread_mutex_unlock(&lock);
}

size_t spike_powerloss_pending(void) {
  size_t n = 0;
  pthread_mutex_lock(&lock);
  for (pending *pd = q_head; pd != NULL; pd = pd->next) n += pd->len;
  pthread_mutex_unlock(&lock);
  return n;
}

/* The mode argument open() takes with O_CREAT or O_TMPFILE. */
#define MODE_ARG(flags, mode)                                                  \
  do {                                                                         \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                                     \
      va_list ap;                                                              \
      va_start(ap, flags);                                                     \
      (mode) = (mode_t)va_arg(ap, int);                                        \
      va_end(ap);                                                              \
    }                                                                          \
  } while (0)

int open(const char *path, int flags, ...) {
  REAL(open, open_fn);
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  int fd = real_open(path, flags, mode);
  track(fd, path, flags);
  return fd;
}

int open64(const char *path, int flags, ...) {
  REAL(open64, open_fn);
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  int fd = real_open64(path, flags, mode);
  track(fd, path, flags);
  return fd;
}

int openat(int dir, const char *path, int flags, ...) {
  REAL(openat, openat_fn);
  mode_t mode = 0;
  MODE_ARG(flags, mode);
  int fd = real_openat(dir, path, flags, mode);
  track(fd, path, flags);
  return fd;
}

int close(int fd) {
  REAL(close, close_fn);
  if (fd >= 0 && fd < FDS_MAX) {
    pthread_mutex_lock(&lock);
    /* A close is not a sync: what the descriptor wrote stays queued for
     * the file's next sync, through any descriptor, as the page cache
     * keeps it; the image stays open for the file's next descriptor. */
    if (fds[fd].on) fds[fd] = (tracked){0};
    pthread_mutex_unlock(&lock);
  }
  return real_close(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite, pwrite_fn);
  before_op(fd);
  ssize_t r = real_pwrite(fd, buf, n, off);
  struct iovec iov = {(void *)buf, n};
  wrote(fd, off, &iov, 1, r);
  return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) { return pwrite(fd, buf, n, off); }

ssize_t write(int fd, const void *buf, size_t n) {
  REAL(write, write_fn);
  REAL(lseek, lseek_fn);
  before_op(fd);
  int on = fd >= 0 && fd < FDS_MAX && fds[fd].on;
  off_t off = on ? real_lseek(fd, 0, SEEK_CUR) : 0;
  ssize_t r = real_write(fd, buf, n);
  struct iovec iov = {(void *)buf, n};
  if (on) wrote(fd, off, &iov, 1, r);
  return r;
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  REAL(writev, writev_fn);
  REAL(lseek, lseek_fn);
  before_op(fd);
  int on = fd >= 0 && fd < FDS_MAX && fds[fd].on;
  off_t off = on ? real_lseek(fd, 0, SEEK_CUR) : 0;
  ssize_t r = real_writev(fd, iov, cnt);
  if (on) wrote(fd, off, iov, cnt, r);
  return r;
}

int fsync(int fd) {
  REAL(fsync, sync_fn);
  before_op(fd);
  int r = real_fsync(fd);
  if (r == 0) synced(fd);
  return r;
}

int fdatasync(int fd) {
  REAL(fdatasync, sync_fn);
  before_op(fd);
  int r = real_fdatasync(fd);
  if (r == 0) synced(fd);
  return r;
}

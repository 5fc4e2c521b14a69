/*
 * fault.c -- an LD_PRELOAD shim that makes the storage calls LMDB uses fail
 * on demand, so tests can drive the engine's I/O-error paths (I6) without
 * a broken disk.
 *
 *   spike_fault_sync(EIO)    every fsync/fdatasync fails with EIO (0: stop)
 *   spike_fault_write(ENOSPC) every pwrite/pwritev, and writev to a regular
 *                             file (LMDB writes a run of pages with lseek and
 *                             writev), fails
 *   spike_fault_sync_delay_ms(500) every fsync/fdatasync first sleeps (0: stop)
 *   spike_fault_sync_after(n, EIO) the next n syncs succeed, every later one
 *                             fails (spike_fault_sync(0) stops it)
 *   spike_fault_sync_once(n, EIO) the next n syncs succeed, the one after
 *                             fails, and later ones succeed again: how Linux
 *                             reports a writeback error (once per fd)
 *   spike_fault_write_after(n, k, ENOSPC) once n more syncs and then k more
 *                             writes have been made, every write fails
 *                             (spike_fault_write(0) stops it)
 *   spike_fault_write_limit(end, ENOSPC) a write to a regular file that
 *                             would reach past byte end of it fails, whole,
 *                             and the rest succeed: a file system that has
 *                             room for that much of the file (-1: stop)
 *   spike_fault_free_bytes(n) fstatvfs says n bytes are free, and fallocate
 *                             of more than n fails with ENOSPC (-1: the truth)
 *
 * Tests find the switches with dlsym(RTLD_DEFAULT, ...). A process that
 * cannot call them (spiked under a shell test) is steered by a file instead:
 * with SPIKE_FAULT_CTL=path in its environment, the shim rereads path when
 * it changes, before each call it can fail. It holds "write=ENOSPC" and/or
 * "sync=EIO" (ENOSPC, EDQUOT, EIO or 0), "copy=ENOSPC" (every write() to a
 * regular file fails: LMDB writes with write() only when it copies an
 * environment, so this fails a backup and nothing else) and "delay=MS"
 * (every sync first sleeps MS ms); a missing file means no faults.
 * stdin, stdout and stderr are never failed, so logging still works.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static _Atomic int sync_errno, write_errno, sync_delay_ms, sync_ok_left = -1, sync_later_errno;
static _Atomic int sync_just_once, write_after_syncs = -1, write_later_errno;
static _Atomic int writes_ok_left = -1;
static _Atomic int copy_errno;
static _Atomic long long write_limit = -1, free_bytes = -1;
static _Atomic int limit_errno;

void spike_fault_sync(int err) {
  atomic_store(&sync_ok_left, -1);
  atomic_store(&sync_errno, err);
}
void spike_fault_sync_after(int n, int err) {
  atomic_store(&sync_just_once, 0);
  atomic_store(&sync_later_errno, err);
  atomic_store(&sync_ok_left, n);
}
void spike_fault_sync_once(int n, int err) {
  atomic_store(&sync_just_once, 1);
  atomic_store(&sync_later_errno, err);
  atomic_store(&sync_ok_left, n);
}
void spike_fault_write(int err) {
  atomic_store(&write_after_syncs, -1);
  atomic_store(&writes_ok_left, -1);
  atomic_store(&write_errno, err);
}
void spike_fault_write_after(int n, int k, int err) {
  atomic_store(&write_later_errno, err);
  atomic_store(&writes_ok_left, -1);
  atomic_store(&write_after_syncs, n);
  atomic_store(&writes_ok_left, k);
}
void spike_fault_sync_delay_ms(int ms) { atomic_store(&sync_delay_ms, ms); }
void spike_fault_write_limit(long long end, int err) {
  atomic_store(&limit_errno, err);
  atomic_store(&write_limit, end);
}
void spike_fault_free_bytes(long long n) { atomic_store(&free_bytes, n); }

/* dlsym returns an object pointer; POSIX guarantees it converts, C does not,
 * so copy the bytes. */
#define REAL(name, type)                                                       \
  static type real_##name;                                                     \
  if (real_##name == NULL) {                                                   \
    void *sym_ = dlsym(RTLD_NEXT, #name);                                      \
    memcpy(&real_##name, &sym_, sizeof(sym_));                                 \
  }

/* ---- the control file -------------------------------------------------- */

static int errno_named(const char *s, size_t n) {
  if (n == 6 && memcmp(s, "ENOSPC", 6) == 0) return ENOSPC;
  if (n == 6 && memcmp(s, "EDQUOT", 6) == 0) return EDQUOT;
  if (n == 3 && memcmp(s, "EIO", 3) == 0) return EIO;
  return 0;
}

static int ctl_errno(const char *text, const char *key) {
  const char *at = strstr(text, key);
  if (at == NULL) return 0;
  at += strlen(key);
  return errno_named(at, strcspn(at, " \t\r\n"));
}

/* Reread SPIKE_FAULT_CTL when it has changed. Callers are the storage
 * calls themselves, on the writer thread and the producers' threads: the
 * last reader's view wins, and every view is a whole file. */
static void ctl_poll(void) {
  static _Atomic long seen_ns = -1, seen_ino = -1, seen_size = -1;
  static const char *path;
  static _Atomic int looked;
  if (!atomic_load(&looked)) {
    path = getenv("SPIKE_FAULT_CTL");
    atomic_store(&looked, 1);
  }
  if (path == NULL) return;
  struct stat st;
  long ns = -2, ino = -2, size = -2;
  if (stat(path, &st) == 0) {
    ns = (long)st.st_mtim.tv_sec * 1000000000l + st.st_mtim.tv_nsec;
    ino = (long)st.st_ino;
    size = (long)st.st_size;
  }
  if (ns == atomic_load(&seen_ns) && ino == atomic_load(&seen_ino) &&
      size == atomic_load(&seen_size))
    return;
  char text[128] = "";
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, text, sizeof(text) - 1);
    text[n > 0 ? n : 0] = '\0';
    close(fd);
  }
  atomic_store(&write_errno, ctl_errno(text, "write="));
  atomic_store(&sync_errno, ctl_errno(text, "sync="));
  atomic_store(&copy_errno, ctl_errno(text, "copy="));
  const char *delay = strstr(text, "delay=");
  atomic_store(&sync_delay_ms, delay != NULL ? atoi(delay + 6) : 0);
  atomic_store(&seen_ns, ns);
  atomic_store(&seen_ino, ino);
  atomic_store(&seen_size, size);
}

typedef int (*sync_fn)(int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*writev_fn)(int, const struct iovec *, int);
typedef ssize_t (*write_fn)(int, const void *, size_t);

static void stall(int fd) {
  ctl_poll();
  int ms = atomic_load(&sync_delay_ms);
  if (ms <= 0 || fd <= 2) return;
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
  nanosleep(&ts, NULL);
}

/* A sync counted down by spike_fault_sync_after or _once: the one that
 * reaches 0 fails, alone (returns 1, errno set) or with every later one. */
static int count_sync(int fd) {
  if (fd <= 2) return 0;
  int left = atomic_load(&sync_ok_left);
  while (left >= 0) {
    if (atomic_compare_exchange_weak(&sync_ok_left, &left, left - 1)) {
      if (left != 0) return 0;
      if (atomic_load(&sync_just_once)) {
        errno = atomic_load(&sync_later_errno);
        return 1;
      }
      atomic_store(&sync_errno, atomic_load(&sync_later_errno));
      return 0;
    }
  }
  return 0;
}

/* A sync was made: counted down by spike_fault_write_after. */
static void synced(int fd) {
  if (fd <= 2) return;
  int left = atomic_load(&write_after_syncs);
  while (left > 0 && !atomic_compare_exchange_weak(&write_after_syncs, &left, left - 1)) {
  }
}

/* A write is about to be made: once spike_fault_write_after's syncs are
 * made, it counts the writes let through; the one past them turns every
 * write from then on into a failure. */
static void writing(int fd) {
  if (fd <= 2 || atomic_load(&write_after_syncs) != 0) return;
  int left = atomic_load(&writes_ok_left);
  while (left >= 0) {
    if (atomic_compare_exchange_weak(&writes_ok_left, &left, left - 1)) {
      if (left == 0) {
        atomic_store(&write_after_syncs, -1);
        atomic_store(&write_errno, atomic_load(&write_later_errno));
      }
      return;
    }
  }
}

static int failing(_Atomic int *which, int fd) {
  if (fd <= 2) return 0;
  ctl_poll();
  int err = atomic_load(which);
  if (err == 0 || fd <= 2) return 0;
  errno = err;
  return 1;
}

/* A write of n bytes at off would reach past spike_fault_write_limit's end
 * (off < 0: at the descriptor's offset, as writev writes). */
static int past_limit(int fd, off_t off, size_t n) {
  long long end = atomic_load(&write_limit);
  if (end < 0 || fd <= 2) return 0;
  if (off < 0 && (off = lseek(fd, 0, SEEK_CUR)) < 0) return 0;
  if ((long long)off + (long long)n <= end) return 0;
  errno = atomic_load(&limit_errno);
  return 1;
}

static size_t iov_bytes(const struct iovec *iov, int cnt) {
  size_t n = 0;
  for (int i = 0; i < cnt; i++) n += iov[i].iov_len;
  return n;
}

int fsync(int fd) {
  REAL(fsync, sync_fn);
  stall(fd);
  if (count_sync(fd) || failing(&sync_errno, fd)) return -1;
  int rc = real_fsync(fd);
  if (rc == 0) synced(fd);
  return rc;
}

int fdatasync(int fd) {
  REAL(fdatasync, sync_fn);
  stall(fd);
  if (count_sync(fd) || failing(&sync_errno, fd)) return -1;
  int rc = real_fdatasync(fd);
  if (rc == 0) synced(fd);
  return rc;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite, pwrite_fn);
  writing(fd);
  if (failing(&write_errno, fd) || past_limit(fd, off, n)) return -1;
  return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite64, pwrite_fn);
  writing(fd);
  if (failing(&write_errno, fd) || past_limit(fd, off, n)) return -1;
  return real_pwrite64(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev, pwritev_fn);
  writing(fd);
  if (failing(&write_errno, fd) || past_limit(fd, off, iov_bytes(iov, cnt))) return -1;
  return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev64, pwritev_fn);
  writing(fd);
  if (failing(&write_errno, fd) || past_limit(fd, off, iov_bytes(iov, cnt))) return -1;
  return real_pwritev64(fd, iov, cnt, off);
}

/* Sockets are written with writev too (libuv): only files fail. */
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  REAL(writev, writev_fn);
  struct stat st;
  if (fd > 2 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    writing(fd);
    if (failing(&write_errno, fd) || past_limit(fd, -1, iov_bytes(iov, cnt))) return -1;
  }
  return real_writev(fd, iov, cnt);
}

/* write() to a regular file: only LMDB's environment copy (a backup). */
ssize_t write(int fd, const void *buf, size_t n) {
  REAL(write, write_fn);
  struct stat st;
  if (fd > 2 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && failing(&copy_errno, fd)) return -1;
  return real_write(fd, buf, n);
}

typedef int (*fstatvfs_fn)(int, struct statvfs *);

int fstatvfs(int fd, struct statvfs *v) {
  REAL(fstatvfs, fstatvfs_fn);
  int rc = real_fstatvfs(fd, v);
  long long n = atomic_load(&free_bytes);
  if (rc == 0 && n >= 0 && v->f_frsize > 0) v->f_bavail = v->f_bfree = (fsblkcnt_t)n / v->f_frsize;
  return rc;
}

typedef int (*fallocate_fn)(int, int, off_t, off_t);
int fallocate(int fd, int mode, off_t offset, off_t len) {
  REAL(fallocate, fallocate_fn);
  long long n = atomic_load(&free_bytes);
  if (n >= 0 && offset + len > n) {
    errno = ENOSPC;
    return -1;
  }
  return real_fallocate(fd, mode, offset, len);
}

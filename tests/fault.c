/*
 * fault.c -- an LD_PRELOAD shim that makes the storage calls LMDB uses fail
 * on demand, so tests can drive the engine's I/O-error paths (I6) without
 * a broken disk.
 *
 *   spike_fault_sync(EIO)    every fsync/fdatasync fails with EIO (0: stop)
 *   spike_fault_write(ENOSPC) every pwrite/pwritev to a file fails
 *   spike_fault_sync_delay_ms(500) every fsync/fdatasync first sleeps (0: stop)
 *   spike_fault_sync_after(n, EIO) the next n syncs succeed, every later one
 *                             fails (spike_fault_sync(0) stops it)
 *   spike_fault_sync_once(n, EIO) the next n syncs succeed, the one after
 *                             fails, and later ones succeed again: how Linux
 *                             reports a writeback error (once per fd)
 *
 * Tests find the two switches with dlsym(RTLD_DEFAULT, ...); stdin, stdout
 * and stderr are never failed, so logging still works.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static _Atomic int sync_errno, write_errno, sync_delay_ms, sync_ok_left = -1, sync_later_errno;
static _Atomic int sync_just_once;

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
void spike_fault_write(int err) { atomic_store(&write_errno, err); }
void spike_fault_sync_delay_ms(int ms) { atomic_store(&sync_delay_ms, ms); }

/* dlsym returns an object pointer; POSIX guarantees it converts, C does not,
 * so copy the bytes. */
#define REAL(name, type)                                                       \
  static type real_##name;                                                     \
  if (real_##name == NULL) {                                                   \
    void *sym_ = dlsym(RTLD_NEXT, #name);                                      \
    memcpy(&real_##name, &sym_, sizeof(sym_));                                 \
  }

typedef int (*sync_fn)(int);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);

static void stall(int fd) {
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

static int failing(_Atomic int *which, int fd) {
  int err = atomic_load(which);
  if (err == 0 || fd <= 2) return 0;
  errno = err;
  return 1;
}

int fsync(int fd) {
  REAL(fsync, sync_fn);
  stall(fd);
  if (count_sync(fd)) return -1;
  return failing(&sync_errno, fd) ? -1 : real_fsync(fd);
}

int fdatasync(int fd) {
  REAL(fdatasync, sync_fn);
  stall(fd);
  if (count_sync(fd)) return -1;
  return failing(&sync_errno, fd) ? -1 : real_fdatasync(fd);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite, pwrite_fn);
  return failing(&write_errno, fd) ? -1 : real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
  REAL(pwrite64, pwrite_fn);
  return failing(&write_errno, fd) ? -1 : real_pwrite64(fd, buf, n, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev, pwritev_fn);
  return failing(&write_errno, fd) ? -1 : real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) {
  REAL(pwritev64, pwritev_fn);
  return failing(&write_errno, fd) ? -1 : real_pwritev64(fd, iov, cnt, off);
}

/*
 * failalloc.c -- an LD_PRELOAD shim that fails the Nth memory allocation
 * (malloc, calloc, realloc, aligned_alloc, posix_memalign, memalign, and
 * mmap, which the engine's tables and LMDB's maps use), and keeps a ledger
 * of what is allocated while it tracks, each entry with its caller, so a
 * test can show that a failed call left nothing behind. Tests find the
 * switches with dlsym(RTLD_DEFAULT, ...):
 *
 *   failalloc_arm(n, sticky)  the nth allocation from now fails with ENOMEM,
 *                             and with sticky every later one too; counts
 *                             from 0 again; n 0 disarms (and stops counting)
 *   failalloc_calls()         allocations counted since the last arm
 *   failalloc_failed()        how many of them were failed
 *   failalloc_track(on)       start recording (emptying the ledger) or stop
 *   failalloc_live()          ledger entries: allocations and mappings made
 *                             while recording and not freed since (-1 when
 *                             the ledger overflowed)
 *   failalloc_report(fd)      one line per entry: what, bytes, caller
 *
 * Every thread's allocations count (the writer's too). Memory comes from
 * glibc's own allocator (__libc_malloc and kin) and mappings from the system
 * call, so nothing here recurses or needs dlsym. glibc's internal mappings
 * (thread stacks, large malloc chunks) do not pass through here. Not for use
 * with ASan or valgrind, which replace the allocator themselves.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static _Atomic long fail_at, calls, failed;
static _Atomic int sticky, tracking;

void failalloc_arm(long n, int sticky_) {
  atomic_store(&fail_at, 0);
  atomic_store(&calls, 0);
  atomic_store(&failed, 0);
  atomic_store(&sticky, sticky_);
  atomic_store(&fail_at, n);
}
long failalloc_calls(void) { return atomic_load(&calls); }
long failalloc_failed(void) { return atomic_load(&failed); }

/* One allocation is being made: fail it? */
static int fail_now(void) {
  long n = atomic_load(&fail_at);
  if (n <= 0) return 0;
  long c = atomic_fetch_add(&calls, 1) + 1;
  if (c == n || (c > n && atomic_load(&sticky))) {
    atomic_fetch_add(&failed, 1);
    errno = ENOMEM;
    return 1;
  }
  return 0;
}

/* ---- the ledger: what was allocated while recording, and is still held ---- */

enum { LEDGER_MAX = 1 << 15 };
typedef struct entry {
  uintptr_t at;
  size_t bytes;
  const void *caller;
  char what; /* 'm' memory, 'p' mapping */
} entry;
static entry ledger[LEDGER_MAX];
static long ledger_n;
static int ledger_overflow;
static atomic_flag ledger_lock = ATOMIC_FLAG_INIT;

static void lock(void) {
  while (atomic_flag_test_and_set_explicit(&ledger_lock, memory_order_acquire)) {
  }
}
static void unlock(void) { atomic_flag_clear_explicit(&ledger_lock, memory_order_release); }

static void note(const void *p, size_t bytes, const void *caller, char what) {
  if (p == NULL || !atomic_load(&tracking)) return;
  lock();
  if (ledger_n < LEDGER_MAX)
    ledger[ledger_n++] = (entry){(uintptr_t)p, bytes, caller, what};
  else
    ledger_overflow = 1;
  unlock();
}

static void forget(const void *p) {
  if (p == NULL) return;
  lock();
  for (long i = ledger_n; i-- > 0;)
    if (ledger[i].at == (uintptr_t)p) {
      ledger[i] = ledger[--ledger_n];
      break;
    }
  unlock();
}

void failalloc_track(int on) {
  lock();
  if (on) {
    ledger_n = 0;
    ledger_overflow = 0;
  }
  atomic_store(&tracking, on);
  unlock();
}

long failalloc_live(void) {
  lock();
  long n = ledger_overflow ? -1 : ledger_n;
  unlock();
  return n;
}

void failalloc_report(int fd) {
  static entry copy[LEDGER_MAX];
  lock(); /* copied out first: dladdr may take locks of its own */
  long n = ledger_n;
  memcpy(copy, ledger, (size_t)n * sizeof(entry));
  unlock();
  for (long i = 0; i < n; i++) {
    /* where from: a symbol when the caller's object exports one, and the
     * offset in the object, for addr2line -e */
    Dl_info info;
    const char *sym = "?", *obj = "?";
    uintptr_t off = 0, rel = 0;
    if (dladdr(copy[i].caller, &info) != 0) {
      if (info.dli_sname != NULL) {
        sym = info.dli_sname;
        off = (uintptr_t)copy[i].caller - (uintptr_t)info.dli_saddr;
      }
      if (info.dli_fname != NULL) obj = info.dli_fname;
      rel = (uintptr_t)copy[i].caller - (uintptr_t)info.dli_fbase;
    }
    dprintf(fd, "  still held: %s of %zu bytes at %p, from %s+0x%zx (%s+0x%zx)\n",
            copy[i].what == 'p' ? "mapping" : "allocation", copy[i].bytes, (void *)copy[i].at,
            sym, (size_t)off, obj, (size_t)rel);
  }
}

/* ---- the interposed calls ---------------------------------------------------- */

#define CALLER __builtin_return_address(0)

void *malloc(size_t n) {
  if (fail_now()) return NULL;
  void *p = __libc_malloc(n);
  note(p, n, CALLER, 'm');
  return p;
}

void *calloc(size_t k, size_t n) {
  if (fail_now()) return NULL;
  void *p = __libc_calloc(k, n);
  note(p, k * n, CALLER, 'm');
  return p;
}

void *realloc(void *old, size_t n) {
  if (old != NULL && n == 0) { /* glibc: a free */
    forget(old);
    return __libc_realloc(old, 0);
  }
  if (fail_now()) return NULL;
  void *p = __libc_realloc(old, n);
  if (p != NULL) {
    forget(old);
    note(p, n, CALLER, 'm');
  }
  return p;
}

void *memalign(size_t align, size_t n) {
  if (fail_now()) return NULL;
  void *p = __libc_memalign(align, n);
  note(p, n, CALLER, 'm');
  return p;
}

void *aligned_alloc(size_t align, size_t n) {
  if (fail_now()) return NULL;
  void *p = __libc_memalign(align, n);
  note(p, n, CALLER, 'm');
  return p;
}

int posix_memalign(void **out, size_t align, size_t n) {
  if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
  if (fail_now()) return ENOMEM;
  void *p = __libc_memalign(align, n);
  if (p == NULL) return ENOMEM;
  note(p, n, CALLER, 'm');
  *out = p;
  return 0;
}

void free(void *p) {
  if (p == NULL) return;
  forget(p);
  __libc_free(p);
}

void *mmap(void *addr, size_t n, int prot, int flags, int fd, off_t off) {
  if (fail_now()) return MAP_FAILED;
  long r = syscall(SYS_mmap, addr, n, prot, flags, fd, off);
  if (r == -1) return MAP_FAILED;
  note((void *)r, n, CALLER, 'p');
  return (void *)r;
}

void *mmap64(void *addr, size_t n, int prot, int flags, int fd, off_t off) {
  return mmap(addr, n, prot, flags, fd, off);
}

int munmap(void *addr, size_t n) {
  forget(addr);
  return (int)syscall(SYS_munmap, addr, n);
}

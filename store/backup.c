/*
 * backup.c -- hot, compacting backups of a store (see backup.h): LMDB's
 * compacting copy into a directory beside the destination, synced and
 * marked, then renamed into place. The trade-off is LMDB's: the copy holds
 * one read snapshot for its whole length, so it never blocks a commit, but
 * pages the writer frees meanwhile are not reused until it ends (the live
 * file may grow by what was written during the copy). The copy shares the
 * disk with the writer's fsyncs: it writes past the page cache, at low CPU
 * and I/O priority.
 */
#define _GNU_SOURCE /* O_DIRECT */
#include "backup.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "thread.h"

#define COPY_NICE 10        /* added to the copy's nice: behind the serving threads */
#define IOPRIO_WHO_THREAD 1 /* linux/ioprio.h: IOPRIO_WHO_PROCESS, a thread id */
#define IOPRIO_BE_LOWEST ((2 << 13) | 7) /* best-effort class, level 7 */

static int64_t clock_ms(clockid_t which) {
  struct timespec ts;
  clock_gettime(which, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct paths {
  char dest[PATH_MAX];   /* without trailing slashes */
  char parent[PATH_MAX]; /* its directory */
  char tmp[PATH_MAX + 32];  /* where the copy is made: dest.partial.PID */
  char file[PATH_MAX + 48]; /* tmp/data.mdb */
} paths;

/* Check dest and name the paths; STORE_BADDEST with a sentence when it is
 * refused. */
static int plan(const char *dest, paths *p, char *err, size_t errlen) {
  size_t n = strlen(dest);
  while (n > 1 && dest[n - 1] == '/') n--;
  if (n == 0 || n + 64 >= PATH_MAX) {
    snprintf(err, errlen, "backup destination: %s", n == 0 ? "empty" : "name too long");
    return STORE_BADDEST;
  }
  memcpy(p->dest, dest, n);
  p->dest[n] = '\0';
  memcpy(p->parent, p->dest, n + 1); /* (dest's trailing slash made "a/b/" its own parent) */
  char *slash = strrchr(p->parent, '/');
  if (slash == NULL)
    strcpy(p->parent, ".");
  else
    slash[slash == p->parent ? 1 : 0] = '\0';
  /* an interrupted backup leaves NAME.partial.PID, which operations.md
   * calls safe to delete: no backup may be named so */
  const char *base = strrchr(p->dest, '/');
  if (strstr(base != NULL ? base + 1 : p->dest, ".partial") != NULL) {
    snprintf(err, errlen,
             "backup destination %s: a name with \".partial\" is an interrupted backup's", p->dest);
    return STORE_BADDEST;
  }
  snprintf(p->tmp, sizeof(p->tmp), "%s.partial.%ld", p->dest, (long)getpid());
  snprintf(p->file, sizeof(p->file), "%s/data.mdb", p->tmp);
  struct stat st;
  if (stat(p->parent, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, errlen, "backup destination %s: its directory %s %s", p->dest, p->parent,
             errno == ENOENT ? "does not exist" : "is not a directory");
    return STORE_BADDEST;
  }
  if (lstat(p->dest, &st) == 0) {
    snprintf(err, errlen, "backup destination %s already exists", p->dest);
    return STORE_BADDEST;
  }
  return 0;
}

static void remove_tmp(const paths *p) {
  char lock[PATH_MAX + 48];
  snprintf(lock, sizeof(lock), "%s/lock.mdb", p->tmp);
  unlink(p->file);
  unlink(lock);
  rmdir(p->tmp);
}

/* The newest feed seq in the copy and its store id; then the mark that
 * makes its first open a restore, in one synced commit. */
static int mark_copy(const paths *p, int64_t at_ms, store_backup_info *out, char *err,
                     size_t errlen) {
  MDB_env *env = NULL;
  MDB_txn *txn = NULL;
  MDB_dbi meta, feed;
  MDB_cursor *c = NULL;
  MDB_val k, v;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, 8);
  if (rc == 0) rc = mdb_env_open(env, p->tmp, MDB_NOTLS | MDB_NORDAHEAD, 0644);
  if (rc == 0) rc = mdb_txn_begin(env, NULL, 0, &txn);
  if (rc == 0 && (mdb_dbi_open(txn, "meta", 0, &meta) != 0 ||
                  mdb_dbi_open(txn, "feed", 0, &feed) != 0)) {
    snprintf(err, errlen, "the store copied is not a spike store");
    rc = EINVAL;
  }
  k = (MDB_val){8, (void *)"store_id"};
  if (rc == 0 && (mdb_get(txn, meta, &k, &v) != 0 || v.mv_size != 8)) {
    snprintf(err, errlen, "the store copied has no store id (not a spike store)");
    rc = EINVAL;
  }
  if (rc == 0) out->store_id = store_get_be64(v.mv_data);
  if (rc == 0) rc = mdb_cursor_open(txn, feed, &c);
  out->seq = 0;
  if (rc == 0) {
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (rc == 0 && k.mv_size == 8) out->seq = store_get_be64(k.mv_data);
    if (rc == MDB_NOTFOUND) rc = 0;
    mdb_cursor_close(c);
  }
  const struct {
    const char *name;
    uint64_t v;
  } marks[] = {{"backup_of", out->store_id}, {"backup_seq", out->seq},
               {"backup_at_ms", (uint64_t)at_ms}};
  for (size_t i = 0; rc == 0 && i < sizeof(marks) / sizeof(marks[0]); i++) {
    uint8_t b[8];
    store_be64(b, marks[i].v);
    k = (MDB_val){strlen(marks[i].name), (void *)marks[i].name};
    v = (MDB_val){sizeof(b), b};
    rc = mdb_put(txn, meta, &k, &v, 0);
  }
  if (rc == 0) {
    rc = mdb_txn_commit(txn); /* synced: the copy's pages and the mark */
    txn = NULL;
  }
  if (txn != NULL) mdb_txn_abort(txn);
  if (env != NULL) mdb_env_close(env);
  if (rc != 0 && err[0] == '\0')
    snprintf(err, errlen, "marking the backup: %s", store_strerror(rc));
  return rc;
}

typedef struct copy_job {
  MDB_env *env;
  int fd;
  int rc;
} copy_job;

/* The copy on a thread of its own, at low CPU and I/O priority (the thread
 * LMDB starts to write the copy inherits both), so that the loops and the
 * writer, whose commits wait on the same disk, come first. Its own thread:
 * an unprivileged process cannot raise a priority back once lowered. Best
 * effort: a refused setting leaves the copy at the caller's priority. */
static void *copy_low(void *arg) {
  copy_job *j = arg;
  (void)prctl(PR_SET_NAME, "spike-backup");
  pid_t tid = (pid_t)syscall(SYS_gettid);
  errno = 0;
  int nice_now = getpriority(PRIO_PROCESS, (id_t)tid);
  if (errno == 0)
    (void)setpriority(PRIO_PROCESS, (id_t)tid, nice_now + COPY_NICE < 19 ? nice_now + COPY_NICE : 19);
  (void)syscall(SYS_ioprio_set, IOPRIO_WHO_THREAD, tid, IOPRIO_BE_LOWEST);
  j->rc = mdb_env_copyfd2(j->env, j->fd, MDB_CP_COMPACT);
  return NULL;
}

static int copy(MDB_env *env, int fd) {
  copy_job j = {env, fd, 0};
  pthread_t t;
  int rc = thread_start(&t, copy_low, &j); /* takes no signals (thread.h) */
  if (rc != 0) return rc;
  pthread_join(t, NULL);
  return j.rc;
}

static int backup_env(MDB_env *env, const paths *p, store_backup_info *out, char *err,
                      size_t errlen) {
  int64_t t0 = clock_ms(CLOCK_MONOTONIC);
  out->at_ms = clock_ms(CLOCK_REALTIME);
  if (mkdir(p->tmp, 0755) != 0) {
    int rc = errno;
    snprintf(err, errlen, "backup destination %s: making %s: %s", p->dest, p->tmp,
             strerror(rc));
    return rc == EEXIST ? STORE_BADDEST : rc;
  }
  const char *what = "creating the copy";
  int rc = 0, fd = open(p->file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) rc = errno;
  /* Past the page cache, as LMDB's own mdb_env_copy2 writes: on ext4
   * (data=ordered) the writer's every fsync would otherwise also flush
   * whatever the copy has left dirty. Where the file system refuses
   * O_DIRECT the copy goes through the cache. */
  if (rc == 0) (void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_DIRECT);
  if (rc == 0) {
    what = "copying";
    rc = copy(env, fd);
  }
  if (rc == 0 && fsync(fd) != 0) {
    what = "syncing the copy";
    rc = errno;
  }
  if (fd >= 0 && close(fd) != 0 && rc == 0) {
    what = "closing the copy";
    rc = errno;
  }
  if (rc != 0) snprintf(err, errlen, "backup %s: %s: %s", p->dest, what, store_strerror(rc));
  if (rc == 0) rc = mark_copy(p, out->at_ms, out, err, errlen);
  if (rc == 0) {
    char lock[PATH_MAX + 48];
    snprintf(lock, sizeof(lock), "%s/lock.mdb", p->tmp);
    unlink(lock); /* a reader table, not part of the store */
    struct stat st;
    out->bytes = stat(p->file, &st) == 0 ? (uint64_t)st.st_size : 0;
    what = "syncing its directory";
    rc = store_fsync_dir(p->tmp);
    if (rc == 0 && rename(p->tmp, p->dest) != 0) {
      what = "renaming it into place";
      rc = errno == EEXIST || errno == ENOTEMPTY ? STORE_BADDEST : errno;
    }
    if (rc == 0) {
      /* renamed: from here on dest is a whole backup, synced or not */
      rc = store_fsync_dir(p->parent);
      if (rc != 0) {
        snprintf(err, errlen, "backup %s: syncing %s: %s", p->dest, p->parent, strerror(rc));
        return rc;
      }
    } else {
      snprintf(err, errlen, "backup %s: %s: %s", p->dest, what,
               rc == STORE_BADDEST ? "it exists now" : strerror(rc));
    }
  }
  if (rc != 0) {
    remove_tmp(p);
    return rc;
  }
  out->duration_ms = (uint64_t)(clock_ms(CLOCK_MONOTONIC) - t0);
  return 0;
}

int store_backup(store *s, const char *dest, store_backup_info *out, char *err, size_t errlen) {
  paths p;
  err[0] = '\0';
  memset(out, 0, sizeof(*out));
  int rc = plan(dest, &p, err, errlen);
  return rc != 0 ? rc : backup_env(store_lmdb_env(s), &p, out, err, errlen);
}

int store_backup_dir(const char *data_dir, const char *dest, store_backup_info *out, char *err,
                     size_t errlen) {
  paths p;
  err[0] = '\0';
  memset(out, 0, sizeof(*out));
  int rc = plan(dest, &p, err, errlen);
  if (rc != 0) return rc;
  MDB_env *env = NULL;
  const char *what = "mdb_env_create";
  rc = mdb_env_create(&env);
  if (rc == 0) {
    what = "opening it read-only";
    /* RDONLY: never a write to the store; a running spiked's commits go on
     * beside this reader (its slot is in lock.mdb). */
    char lock[PATH_MAX + 16], data[PATH_MAX + 16];
    struct stat lb, db;
    snprintf(lock, sizeof(lock), "%s/lock.mdb", data_dir);
    snprintf(data, sizeof(data), "%s/data.mdb", data_dir);
    int made_lock = stat(lock, &lb) != 0 && errno == ENOENT;
    rc = mdb_env_open(env, data_dir, MDB_RDONLY | MDB_NOTLS | MDB_NORDAHEAD, 0644);
    /* A lock.mdb this open made (root's cron, on a store not yet started
     * since its restore) belongs to the store's owner, or the spiked that
     * runs as that user cannot open its own store afterwards. */
    if (rc == 0 && made_lock && stat(data, &db) == 0 && geteuid() != db.st_uid)
      (void)!chown(lock, db.st_uid, db.st_gid); /* refused unless root: then it is ours */
    /* a backup killed mid-copy left its reader slot: cleared here too, or
     * it pins its snapshot in the serving store until spiked restarts */
    int dead = 0;
    if (rc == 0) (void)mdb_reader_check(env, &dead);
  }
  if (rc != 0) {
    snprintf(err, errlen, "%s: %s: %s", data_dir, what,
             rc == ENOENT ? "no store there" : store_strerror(rc));
    if (rc == ENOENT) rc = EINVAL;
  } else {
    rc = backup_env(env, &p, out, err, errlen);
  }
  if (env != NULL) mdb_env_close(env);
  return rc;
}

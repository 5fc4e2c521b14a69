/*
 * bench_disk.c -- the disk's floor under a durable commit, and what
 * committing to several stores at once would buy on this disk.
 *
 * A durable commit of LMDB's default kind is, at the disk, some pages
 * written and fdatasync'd, then a 120-byte meta page written through an
 * O_DSYNC descriptor: two flushes in a row. This program times exactly
 * that I/O with nothing else around it:
 *
 *   overwrite  16 KiB into a region written and synced before, fdatasync
 *   append     16 KiB at the end of a growing file, fdatasync (the file
 *              system must also commit the new size and blocks)
 *   commit     overwrite, then the meta write: LMDB's default commit
 *   commit xN  N threads doing commit at once, each on its own file: what
 *              N stores with a writer each could get from this disk
 *
 * Each case reports commits (or syncs) per second and the p50 and p99 of
 * one. A durable answer waits for at least one commit, so `commit`'s p50
 * is the floor under every ack=durable latency on this disk; and a closed
 * loop of C clients that each wait for their commit can make at most about
 * C / (commit time) orders per second, whatever the CPU (docs/design.md,
 * "Why one store").
 *
 *   bench_disk [--seconds S] [--jobs N] [DIR]
 *
 * S is (0, 60] (default 2), N 1..16 (default 4). DIR (default $TMPDIR or
 * /tmp) must be on the disk being measured; the files are removed at the
 * end. Not a test: it reports and exits 0.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define CHUNK (16 * 1024)
#define SLOTS 256 /* overwrite cycles through this many chunks: 4 MiB */
#define META 120
#define MAX_JOBS 16
#define SECONDS_MAX 60.0
#define MAX_SAMPLES (1 << 20)

enum kind { OVERWRITE, APPEND, COMMIT };

typedef struct job {
  const char *dir;
  int index;
  enum kind kind;
  double seconds;
  uint64_t start_ns; /* shared start, so jobs overlap */
  /* out */
  uint64_t n;
  double *lat_ms;
  int err;
} job;

static int cmp_double(const void *a, const void *b) { return bench_cmp_double(a, b); }

static void *run_job(void *arg) {
  job *j = arg;
  char path[600];
  snprintf(path, sizeof(path), "%s/spike-bench-disk-%d-%d.data", j->dir, (int)getpid(), j->index);
  static const char zero[CHUNK];
  char buf[CHUNK];
  memset(buf, 0xa5, sizeof(buf));
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
  int mfd = fd < 0 ? -1 : open(path, O_WRONLY | O_DSYNC); /* as LMDB's meta descriptor */
  if (fd < 0 || mfd < 0) {
    j->err = errno;
    goto out;
  }
  /* The region overwrite and commit write into: written and synced first,
   * as LMDB's pages are once the store has grown past them. */
  for (int i = 0; i < SLOTS + 1; i++)
    if (pwrite(fd, zero, CHUNK, (off_t)i * CHUNK) != CHUNK) {
      j->err = errno ? errno : EIO;
      goto out;
    }
  if (fdatasync(fd) != 0) {
    j->err = errno;
    goto out;
  }
  uint64_t t = now_ns();
  if (t < j->start_ns) {
    struct timespec ts = {0, (long)(j->start_ns - t)};
    nanosleep(&ts, NULL);
  }
  uint64_t end = j->start_ns + (uint64_t)(j->seconds * 1e9);
  off_t tail = (off_t)(SLOTS + 1) * CHUNK;
  for (uint64_t i = 0; j->n < MAX_SAMPLES; i++) {
    uint64_t t0 = now_ns();
    if (t0 >= end) break;
    off_t at = j->kind == APPEND ? tail + (off_t)i * CHUNK : (off_t)(1 + i % SLOTS) * CHUNK;
    if (pwrite(fd, buf, CHUNK, at) != CHUNK || fdatasync(fd) != 0) {
      j->err = errno ? errno : EIO;
      break;
    }
    /* the meta page: LMDB writes it at offset 0 or one page in, in turn */
    if (j->kind == COMMIT && pwrite(mfd, buf, META, (off_t)(i & 1) * 4096) != META) {
      j->err = errno ? errno : EIO;
      break;
    }
    j->lat_ms[j->n++] = (double)(now_ns() - t0) / 1e6;
  }
out:
  if (mfd >= 0) close(mfd);
  if (fd >= 0) close(fd);
  unlink(path);
  return NULL;
}

typedef struct result {
  double per_s, p50, p99;
} result;

/* Runs jobs of one kind at once; 0 or an errno. */
static int run_case(const char *dir, enum kind kind, int jobs, double seconds, result *r) {
  job js[MAX_JOBS];
  pthread_t th[MAX_JOBS];
  uint64_t start = now_ns() + 200 * 1000 * 1000ull; /* after every job's set-up */
  int err = 0, started = 0;
  for (int i = 0; i < jobs; i++) {
    js[i] = (job){.dir = dir, .index = i, .kind = kind, .seconds = seconds, .start_ns = start};
    js[i].lat_ms = malloc(sizeof(double) * MAX_SAMPLES);
    if (js[i].lat_ms == NULL || pthread_create(&th[i], NULL, run_job, &js[i]) != 0) {
      free(js[i].lat_ms);
      err = ENOMEM;
      break;
    }
    started++;
  }
  uint64_t total = 0;
  for (int i = 0; i < started; i++) {
    pthread_join(th[i], NULL);
    if (js[i].err) err = js[i].err;
    total += js[i].n;
  }
  double *all = err || total == 0 ? NULL : malloc(sizeof(double) * total);
  if (all != NULL) {
    uint64_t k = 0;
    for (int i = 0; i < started; i++) {
      memcpy(all + k, js[i].lat_ms, sizeof(double) * js[i].n);
      k += js[i].n;
    }
    qsort(all, total, sizeof(double), cmp_double);
    r->per_s = (double)total / seconds;
    r->p50 = all[total / 2];
    r->p99 = all[(uint64_t)((double)total * 0.99)];
    free(all);
  } else if (!err) {
    err = total == 0 ? ETIMEDOUT : ENOMEM;
  }
  for (int i = 0; i < started; i++) free(js[i].lat_ms);
  return err;
}

static void usage(FILE *f) {
  fprintf(f, "usage: bench_disk [--seconds S] [--jobs N] [DIR]\n"
             "  the disk's floor under a durable commit: fdatasync'd overwrites and appends,\n"
             "  LMDB's two-flush commit, and N commits at once on N files (default 4; 1..%d);\n"
             "  S seconds a case, (0, %g] (default 2); files in DIR (default $TMPDIR or /tmp)\n",
          MAX_JOBS, SECONDS_MAX);
}

int main(int argc, char **argv) {
  double seconds = 2;
  int jobs_max = 4;
  const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--seconds") == 0) {
      seconds = bench_arg_double(argc, argv, &i, 0, SECONDS_MAX);
    } else if (strcmp(argv[i], "--jobs") == 0) {
      jobs_max = (int)bench_arg_u64(argc, argv, &i, 1, MAX_JOBS);
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "bench_disk: unknown flag \"%s\"\n", argv[i]);
      usage(stderr);
      return 2;
    } else {
      dir = argv[i];
    }
  }

  static const struct {
    const char *name;
    enum kind kind;
  } solo[] = {{"overwrite + fdatasync", OVERWRITE},
              {"append + fdatasync", APPEND},
              {"commit (data sync, then meta O_DSYNC)", COMMIT}};
  printf("bench_disk: %s, %.1f s a case\n", dir, seconds);
  result one = {0};
  for (size_t c = 0; c < sizeof(solo) / sizeof(solo[0]); c++) {
    result r;
    int err = run_case(dir, solo[c].kind, 1, seconds, &r);
    if (err) {
      fprintf(stderr, "bench_disk: %s: %s\n", solo[c].name, strerror(err));
      return 1;
    }
    printf("%-40s %8.0f /s   p50 %.3f ms   p99 %.3f ms\n", solo[c].name, r.per_s, r.p50, r.p99);
    if (solo[c].kind == COMMIT) one = r;
  }
  printf("summary\tdisk commit floor (p50)\t%.3f ms\t-\t-\n", one.p50);
  for (int n = 2; n <= jobs_max; n *= 2) {
    result r;
    int err = run_case(dir, COMMIT, n, seconds, &r);
    if (err) {
      fprintf(stderr, "bench_disk: %d commits at once: %s\n", n, strerror(err));
      return 1;
    }
    printf("commit x%-2d (%d files at once)%*s %8.0f /s   p50 %.3f ms   p99 %.3f ms   %.2fx one file\n",
           n, n, n < 10 ? 12 : 11, "", r.per_s, r.p50, r.p99, r.per_s / one.per_s);
    printf("summary\tdisk commits, %d files at once\t%.0f /s\t%.0f /s (one file)\t%.2f\n", n,
           r.per_s, one.per_s, r.per_s / one.per_s);
  }
  return 0;
}

/*
 * test.c -- the runner behind test.h. Forking per case means a crash, a
 * hang or leaked state in one case never hides or poisons another.
 */
#define _GNU_SOURCE
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

pid_t test_spawn(const char *const *argv, const char *log, int append) {
  fflush(NULL);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  return pid;
}

static uint64_t seed_;
static int seed_set_;

uint64_t test_seed(void) {
  if (seed_set_) return seed_;
  const char *s = getenv("SPIKE_SEED");
  if (s != NULL && *s != '\0') {
    seed_ = strtoull(s, NULL, 0);
  } else {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    seed_ = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
  }
  if (seed_ == 0) seed_ = 1;
  seed_set_ = 1;
  fprintf(stderr, "seed: SPIKE_SEED=%" PRIu64 "\n", seed_);
  return seed_;
}

uint64_t test_rand(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 0x2545F4914F6CDD1Dull;
}

int64_t test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void test_rmrf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

const char *test_tmpdir(const char *tag) {
  static char path[512];
  const char *base = getenv("TMPDIR");
  if (base == NULL || *base == '\0') base = "/tmp";
  snprintf(path, sizeof(path), "%s/spike-test-%s-%d", base, tag, (int)getpid());
  test_rmrf(path);
  if (mkdir(path, 0755) != 0) {
    fprintf(stderr, "mkdir %s: %s\n", path, strerror(errno));
    abort();
  }
  return path;
}

static int run_case(const test_case *c) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    /* SPIKE_TEST_TIMEOUT_S: for the long forms (make soak-crash) */
    const char *t = getenv("SPIKE_TEST_TIMEOUT_S");
    alarm(t != NULL && atoi(t) > 0 ? (unsigned)atoi(t) : c->timeout_s ? c->timeout_s : 60);
    c->fn();
    fflush(NULL);
    _exit(0);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
  if (WIFSIGNALED(st))
    fprintf(stderr, "  %s: killed by signal %d%s\n", c->name, WTERMSIG(st),
            WTERMSIG(st) == SIGALRM ? " (time limit)" : "");
  else
    fprintf(stderr, "  %s: exit status %d\n", c->name, WEXITSTATUS(st));
  return 1;
}

int test_main(int argc, char **argv, const test_case *cases, size_t n) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1) {
    for (size_t i = 0; i < n; i++)
      if (strcmp(cases[i].name, argv[1]) == 0) {
        cases[i].fn();
        printf("ok %s\n", cases[i].name);
        return 0;
      }
    fprintf(stderr, "no case named %s\n", argv[1]);
    return 2;
  }
  int passed = 0, failed = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t t0 = test_now_ms();
    int bad = run_case(&cases[i]);
    printf("%s %s (%lld ms)\n", bad ? "FAIL" : "ok", cases[i].name,
           (long long)(test_now_ms() - t0));
    if (bad)
      failed++;
    else
      passed++;
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}

/*
 * path.c -- see path.h.
 */
#include "path.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void path_dir(const char *path, char *dir, size_t cap) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL)
    snprintf(dir, cap, ".");
  else if (slash == path)
    snprintf(dir, cap, "/");
  else
    snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

int path_writable(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode)) return EISDIR;
    return access(path, W_OK) == 0 ? 0 : errno;
  }
  char dir[PATH_MAX];
  path_dir(path, dir, sizeof(dir));
  struct stat dst;
  if (stat(dir, &dst) != 0) return errno;
  if (!S_ISDIR(dst.st_mode)) return ENOTDIR; /* access() said EACCES for a file */
  if (access(dir, W_OK | X_OK) != 0) return errno;
  /* access() passes root anywhere, and some file systems take no new file
   * however writable they look (/proc, /sys): make it, then take it away */
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) /* ENOENT with the directory there (/proc): creating is refused */
    return errno == EEXIST ? 0 : errno == ENOENT ? EPERM : errno;
  close(fd);
  unlink(path);
  return 0;
}

int dir_writable(const char *dir) {
  struct stat st;
  if (stat(dir, &st) != 0) return errno;
  if (!S_ISDIR(st.st_mode)) return ENOTDIR;
  if (access(dir, W_OK | X_OK) != 0) return errno;
  char probe[PATH_MAX];
  if (snprintf(probe, sizeof(probe), "%s/.spiked-check-XXXXXX", dir) >= (int)sizeof(probe))
    return ENAMETOOLONG;
  if (mkdtemp(probe) == NULL) /* ENOENT with the directory there (/proc): refused */
    return errno == ENOENT ? EPERM : errno;
  rmdir(probe);
  return 0;
}

/*
 * path.c -- see path.h.
 */
#include "path.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int path_writable(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) {
    if (S_ISDIR(st.st_mode)) return EISDIR;
    return access(path, W_OK) == 0 ? 0 : errno;
  }
  char dir[PATH_MAX];
  snprintf(dir, sizeof(dir), "%s", path);
  char *slash = strrchr(dir, '/');
  if (slash == NULL)
    snprintf(dir, sizeof(dir), ".");
  else if (slash == dir)
    slash[1] = '\0';
  else
    *slash = '\0';
  return access(dir, W_OK | X_OK) == 0 ? 0 : errno;
}

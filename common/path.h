/*
 * path.h -- whether a program could write a file where it was told to,
 * checked before it starts work that ends in writing it.
 */
#ifndef SPIKE_PATH_H
#define SPIKE_PATH_H

#include <stddef.h>

/* 0 when path can be written: an existing file (not a directory) this
 * process may write, or a new name in a directory it may write into.
 * Otherwise the errno that says why (EISDIR, ENOENT, ENOTDIR, EACCES, ...).
 * Nothing is left behind: a new name is tried by creating it (access()
 * passes root anywhere, and /proc takes no new file), then removed. */
int path_writable(const char *path);

/* 0 when dir is a directory this process may make a new directory in,
 * else the errno that says why (ENOTDIR, ENOENT, EACCES, EROFS, EPERM...).
 * Tried the same way: a directory is made there and removed again. */
int dir_writable(const char *dir);

/* The directory path names its file in: "." for a bare name, "/" for one
 * at the root. */
void path_dir(const char *path, char *dir, size_t cap);

#endif

/*
 * mem.c -- see mem.h. mmap directly: the sizes are large, freed once, and
 * madvise needs the mapping's own bounds.
 */
#include "mem.h"

#include <string.h>
#include <sys/mman.h>

void *mem_lazy(size_t bytes) {
  if (bytes == 0) return NULL;
  void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  madvise(m, bytes, MADV_HUGEPAGE);
  return m;
}

void mem_populate(void *p, size_t bytes) {
  if (p != NULL) memset(p, 0, bytes); /* touch every page: populate now, not on the hot path */
}

void *mem_populated(size_t bytes) {
  void *m = mem_lazy(bytes);
  mem_populate(m, bytes);
  return m;
}

void mem_free(void *p, size_t bytes) {
  if (p != NULL) munmap(p, bytes);
}

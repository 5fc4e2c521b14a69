/*
 * backup.h -- a hot, compacting copy of a store, made while it serves, that
 * is either whole or absent, and that a restore can recognise.
 *
 * The copy is LMDB's own (mdb_env_copyfd2 with MDB_CP_COMPACT): one read
 * transaction walks the B-trees and writes the live pages in order, free
 * pages left out. Writers are not blocked (a read snapshot is all it
 * holds); what they pay is pages freed during the copy that cannot be
 * reused until it ends, and the disk's bandwidth.
 *
 * Layout: dest is a directory holding data.mdb, made as dest.partial.PID
 * beside it, the copy written and fsynced, marked (meta "backup_of" = the
 * store's id, "backup_seq" = its newest feed seq in the copy,
 * "backup_at_ms") in one synced commit, then renamed to dest and the parent
 * directory fsynced. A crash at any point leaves dest absent (a
 * *.partial.* directory may remain: never a complete backup); a failure
 * removes what it made. The first open of a copy of dest is its restore
 * (schema.c: store_open).
 */
#ifndef SPIKE_BACKUP_H
#define SPIKE_BACKUP_H

#include <stddef.h>
#include <stdint.h>

#include "schema.h"

#define STORE_BADDEST (-30402) /* the destination is refused: see err */

typedef struct store_backup_info {
  uint64_t store_id; /* of the store copied */
  uint64_t seq;      /* the newest feed seq the backup holds; 0: none */
  uint64_t bytes;    /* the backup's data.mdb */
  int64_t at_ms;     /* wall clock when the copy began */
  uint64_t duration_ms;
} store_backup_info;

/* Back up the open store s into dest (which must not exist; its parent
 * must be a directory). Any thread; blocks for the copy. Returns 0,
 * STORE_BADDEST (dest exists, its parent is missing or not a directory, a
 * name too long), or the errno / LMDB code that stopped the copy (ENOSPC:
 * the backup's file system is full); err gets a sentence on failure. */
int store_backup(store *s, const char *dest, store_backup_info *out, char *err, size_t errlen);

/* The same for the store in data_dir, opened read-only beside whoever
 * serves it (LMDB lets another process read): a backup of a running
 * spiked's store from a second process. */
int store_backup_dir(const char *data_dir, const char *dest, store_backup_info *out, char *err,
                     size_t errlen);

#endif /* SPIKE_BACKUP_H */

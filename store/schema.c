/*
 * schema.c -- LMDB environment set-up, transactions, and the record-level
 * puts, gets and walks. Thin on purpose: encoding is codec.c's, batching
 * and failure handling the engine's writer. What lives here is the key
 * layout and the open-time checks.
 */
#define _GNU_SOURCE /* O_TMPFILE, fallocate: store_has_room */
#include "schema.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"

_Static_assert(STORE_NOTFOUND == MDB_NOTFOUND, "store codes are LMDB's");
_Static_assert(STORE_MAP_FULL == MDB_MAP_FULL, "store codes are LMDB's");
_Static_assert(STORE_ECORRUPT < MDB_KEYEXIST || STORE_ECORRUPT > MDB_LAST_ERRCODE,
               "STORE_ECORRUPT is outside LMDB's codes");
_Static_assert(STORE_NOSPACE < MDB_KEYEXIST || STORE_NOSPACE > MDB_LAST_ERRCODE,
               "STORE_NOSPACE is outside LMDB's codes");

struct store {
  MDB_env *env;
  MDB_dbi events, orders, feed, meta;
  uint64_t migrated;
  int probe_fd; /* our own descriptor on data.mdb, read-only: see space_refusal */
  int ahead_fd;  /* another, for store_write_ahead alone (-1: not done here) */
  int dir_fd;    /* the data directory, for store_has_room (-1: none) */
  uint64_t ahead_to; /* data.mdb is written (zeros past LMDB's pages) up to here */
  uint64_t ahead_used; /* LMDB's pages at the last look */
  uint64_t ahead_grew; /* what a commit adds to them, on average (1/8 of the last) */
  uint64_t id;                       /* meta "store_id" */
  uint64_t map_was, map_bytes;       /* the map before and after open */
  uint64_t map_asked;
  store_origin origin;
  store_epoch *epochs; /* every run's first seq and id, by seq; read-only after open */
  size_t nepochs;
};

struct store_txn {
  store *s;
  MDB_txn *txn;   /* the open transaction, or NULL */
  MDB_txn *idle;  /* a reset read transaction kept for renewal */
  msgpack_zone zone;
};

const char *store_strerror(int rc) {
  if (rc == STORE_ECORRUPT) return "a stored record does not decode";
  if (rc == STORE_NOSPACE) return "no space left on the file system; nothing was written";
  return mdb_strerror(rc);
}

uint32_t store_map_used_pct(const store *s) {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(s->env, &info);
  mdb_env_stat(s->env, &st);
  uint64_t used = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
  return (uint32_t)(used * 100 / info.me_mapsize);
}

static int open_dbi(MDB_txn *txn, const char *name, unsigned flags, MDB_dbi *dbi) {
  return mdb_dbi_open(txn, name, flags | MDB_CREATE, dbi);
}

static int get_meta(const store *s, MDB_txn *txn, const char *name, uint64_t *v) {
  MDB_val key = {strlen(name), (void *)name}, val;
  int rc = mdb_get(txn, s->meta, &key, &val);
  if (rc != 0) return rc;
  if (val.mv_size != 8) return STORE_ECORRUPT;
  *v = store_get_be64(val.mv_data);
  return 0;
}

static int put_meta(const store *s, MDB_txn *txn, const char *name, uint64_t v) {
  uint8_t b[8];
  store_be64(b, v);
  MDB_val key = {strlen(name), (void *)name}, val = {sizeof(b), b};
  return mdb_put(txn, s->meta, &key, &val, 0);
}

/* ---- migration from schema 1 --------------------------------------------------
 * Schema 1 kept two indexes as B-trees written with every order: buyers
 * (user, event -> order ids) and keys (event, key hash -> order id). Schema
 * 2 keeps what they said in the order records (the user's previous order,
 * the key's hash), so the engine rebuilds both at recovery. One transaction
 * rewrites every order in id order, chaining each user's orders oldest
 * first, and drops the two databases. */

typedef struct u64map {
  uint64_t *k, *v1, *v2;
  uint64_t mask;
} u64map;

static int map_init(u64map *m, uint64_t n) {
  uint64_t size = 16;
  while (size < n * 2) size <<= 1;
  m->mask = size - 1;
  m->k = calloc(size, sizeof(uint64_t));
  m->v1 = calloc(size, sizeof(uint64_t));
  m->v2 = calloc(size, sizeof(uint64_t));
  return m->k != NULL && m->v1 != NULL && m->v2 != NULL ? 0 : ENOMEM;
}

static void map_free(u64map *m) {
  free(m->k);
  free(m->v1);
  free(m->v2);
}

/* The slot for key (never 0), empty (k 0) or its own. */
static uint64_t map_slot(const u64map *m, uint64_t key) {
  uint64_t h = (key * 0x9E3779B97F4A7C15ull) & m->mask;
  while (m->k[h] != 0 && m->k[h] != key) h = (h + 1) & m->mask;
  return h;
}

static int migrate_1(store *s, MDB_txn *txn) {
  MDB_dbi buyers, keys;
  MDB_stat st_keys, st_orders;
  int rc = mdb_dbi_open(txn, "keys", 0, &keys);
  if (rc == 0) rc = mdb_dbi_open(txn, "buyers", MDB_DUPSORT, &buyers);
  if (rc == 0) rc = mdb_stat(txn, keys, &st_keys);
  if (rc == 0) rc = mdb_stat(txn, s->orders, &st_orders);
  if (rc != 0) return rc;
  u64map bykey, byuser;
  memset(&bykey, 0, sizeof(bykey));
  memset(&byuser, 0, sizeof(byuser));
  msgpack_zone z;
  if (!msgpack_zone_init(&z, 1024)) return ENOMEM;
  MDB_cursor *c = NULL;
  MDB_val k, v;
  if ((rc = map_init(&bykey, st_keys.ms_entries + 1)) != 0 ||
      (rc = map_init(&byuser, st_orders.ms_entries + 1)) != 0)
    goto out;
  /* order id -> its key's hash */
  if ((rc = mdb_cursor_open(txn, keys, &c)) != 0) goto out;
  while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
    if (k.mv_size != 24 || v.mv_size != 8) {
      rc = STORE_ECORRUPT;
      break;
    }
    uint64_t order = store_get_be64(v.mv_data);
    uint64_t h = map_slot(&bykey, order);
    bykey.k[h] = order;
    bykey.v1[h] = store_get_be64((uint8_t *)k.mv_data + 8);
    bykey.v2[h] = store_get_be64((uint8_t *)k.mv_data + 16);
  }
  mdb_cursor_close(c);
  c = NULL;
  if (rc != MDB_NOTFOUND) goto out;
  /* every order, oldest first: chain it to the user's previous one */
  if ((rc = mdb_cursor_open(txn, s->orders, &c)) != 0) goto out;
  while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
    order_rec r;
    if (codec_decode_order_rec(v.mv_data, v.mv_size, &z, &r) != 0) {
      rc = STORE_ECORRUPT;
      break;
    }
    uint64_t u = map_slot(&byuser, r.o.user_id);
    r.prev = byuser.k[u] != 0 ? byuser.v1[u] : 0;
    byuser.k[u] = r.o.user_id;
    byuser.v1[u] = r.o.id;
    uint64_t h = map_slot(&bykey, r.o.id);
    if (bykey.k[h] == r.o.id) {
      r.keyed = 1;
      r.key1 = bykey.v1[h];
      r.key2 = bykey.v2[h];
    }
    uint8_t buf[CODEC_ORDER_MAX];
    size_t n = codec_encode_order_rec(&r, buf, sizeof(buf));
    if (n == 0) {
      rc = STORE_ECORRUPT;
      break;
    }
    /* The key is copied out first: k points into the page this put
     * rewrites. */
    uint8_t kb[8];
    if (k.mv_size != sizeof(kb)) {
      rc = STORE_ECORRUPT;
      break;
    }
    memcpy(kb, k.mv_data, sizeof(kb));
    MDB_val nk = {sizeof(kb), kb}, nv = {n, buf};
    if ((rc = mdb_cursor_put(c, &nk, &nv, MDB_CURRENT)) != 0) break;
    s->migrated++;
  }
  mdb_cursor_close(c);
  c = NULL;
  if (rc != MDB_NOTFOUND) goto out;
  rc = mdb_drop(txn, keys, 1);
  if (rc == 0) rc = mdb_drop(txn, buyers, 1);
  if (rc == 0) rc = put_meta(s, txn, "schema", STORE_SCHEMA_VERSION);
out:
  if (c != NULL) mdb_cursor_close(c);
  msgpack_zone_destroy(&z);
  map_free(&bykey);
  map_free(&byuser);
  return rc;
}

/* ---- creating a store ------------------------------------------------------
 * LMDB creates an environment by writing its two meta pages unsynced; a
 * power cut before the first commit's sync can leave a data file that is not
 * an LMDB file at all, and a store that never opens again. So a new store
 * is made whole in a directory beside, its first commit synced, and its
 * data file renamed into place: after a cut there is no store (made again
 * at the next open) or a whole one. */

#define STORE_NEW "new.tmp"

static void remove_new(const char *dir) {
  char path[PATH_MAX + 32];
  const char *files[] = {"data.mdb", "lock.mdb", "data.mdb.durable"};
  for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
    snprintf(path, sizeof(path), "%s/" STORE_NEW "/%s", dir, files[i]);
    unlink(path);
  }
  snprintf(path, sizeof(path), "%s/" STORE_NEW, dir);
  rmdir(path);
}

int store_fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = fsync(fd) == 0 ? 0 : errno;
  close(fd);
  return rc;
}

static int create_store(const char *dir, uint64_t map_size_bytes, const char **what) {
  char tmp[PATH_MAX], from[PATH_MAX + 16], to[PATH_MAX + 16];
  snprintf(tmp, sizeof(tmp), "%s/" STORE_NEW, dir);
  remove_new(dir); /* what a cut during an earlier creation left */
  *what = "creating the store";
  if (mkdir(tmp, 0755) != 0) return errno;
  MDB_env *env = NULL;
  MDB_txn *txn = NULL;
  MDB_dbi dbi;
  int rc = mdb_env_create(&env);
  if (rc == 0) rc = mdb_env_set_maxdbs(env, 8);
  if (rc == 0) rc = mdb_env_set_mapsize(env, map_size_bytes);
  if (rc == 0) rc = mdb_env_open(env, tmp, MDB_NOTLS | MDB_NORDAHEAD, 0644);
  if (rc == 0) rc = mdb_txn_begin(env, NULL, 0, &txn);
  static const char *const names[] = {"events", "orders", "feed", "meta"};
  for (size_t i = 0; rc == 0 && i < sizeof(names) / sizeof(names[0]); i++)
    rc = mdb_dbi_open(txn, names[i], MDB_CREATE, &dbi);
  if (rc == 0) {
    uint8_t b[8];
    store_be64(b, STORE_SCHEMA_VERSION);
    MDB_val key = {6, (void *)"schema"}, val = {sizeof(b), b};
    rc = mdb_dbi_open(txn, "meta", 0, &dbi);
    if (rc == 0) rc = mdb_put(txn, dbi, &key, &val, 0);
  }
  if (rc == 0) {
    rc = mdb_txn_commit(txn); /* synced, meta page included */
    txn = NULL;
  }
  if (txn != NULL) mdb_txn_abort(txn);
  if (env != NULL) mdb_env_close(env);
  snprintf(from, sizeof(from), "%s/data.mdb", tmp);
  snprintf(to, sizeof(to), "%s/data.mdb", dir);
  if (rc == 0 && rename(from, to) != 0) rc = errno;
  if (rc == 0) rc = store_fsync_dir(dir);
  remove_new(dir);
  return rc;
}

/* What the store on disk is, read before anything is written to it: a
 * store this build refuses (a newer schema, another program's LMDB
 * environment) is left byte for byte as it was. *version: 0 for a new,
 * empty environment. On refusal returns EINVAL with a sentence in err. */
static int read_schema(store *s, const char *dir, uint64_t *version, char *err, size_t errlen) {
  MDB_txn *txn;
  MDB_dbi main_dbi, meta;
  MDB_stat st;
  *version = 0;
  int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
  if (rc != 0) return rc;
  if ((rc = mdb_dbi_open(txn, NULL, 0, &main_dbi)) != 0 ||
      (rc = mdb_stat(txn, main_dbi, &st)) != 0)
    goto out;
  rc = mdb_dbi_open(txn, "meta", 0, &meta);
  if (rc == MDB_NOTFOUND) {
    /* Every store this project writes has its databases and its schema
     * version from its first commit on: anything else in the environment
     * is not ours to write into. */
    rc = 0;
    if (st.ms_entries != 0) {
      snprintf(err, errlen,
               "%s: not a spike store (an LMDB environment without spike's schema "
               "version); nothing was written",
               dir);
      rc = EINVAL;
    }
    goto out;
  }
  if (rc != 0) goto out;
  s->meta = meta;
  rc = get_meta(s, txn, "schema", version);
  if (rc == MDB_NOTFOUND || (rc == 0 && *version == 0)) {
    snprintf(err, errlen, "%s: not a spike store (no schema version); nothing was written", dir);
    rc = EINVAL;
  } else if (rc == 0 && *version > STORE_SCHEMA_VERSION) {
    snprintf(err, errlen,
             "%s: store schema %llu is newer than this build reads (1 to %d): run the release "
             "that wrote it; nothing was written",
             dir, (unsigned long long)*version, STORE_SCHEMA_VERSION);
    rc = EINVAL;
  }
out:
  mdb_txn_abort(txn);
  return rc;
}

/* A random nonzero id (a store's, an epoch's): 0 or errno. */
static int random_id(uint64_t *out) {
  do {
    if (getrandom(out, sizeof(*out), 0) != (ssize_t)sizeof(*out)) return errno;
  } while (*out == 0);
  return 0;
}

static int new_store_id(store *s, MDB_txn *txn) {
  int rc = random_id(&s->id);
  return rc != 0 ? rc : put_meta(s, txn, "store_id", s->id);
}

static int del_meta(const store *s, MDB_txn *txn, const char *name) {
  MDB_val key = {strlen(name), (void *)name};
  int rc = mdb_del(txn, s->meta, &key, NULL);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

static int get_meta_or_0(const store *s, MDB_txn *txn, const char *name, uint64_t *v) {
  int rc = get_meta(s, txn, name, v);
  if (rc == MDB_NOTFOUND) *v = 0;
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* A backup (backup.c) carries "backup_of": the first open of it is its
 * restore. The store takes a new id, so that a feed consumer of the old one
 * sees a different store, and records which store and which feed seq it
 * starts from; the mark goes, so a second open is an ordinary one and two
 * restores of one backup are two stores with two ids. */
static int read_origin(store *s, MDB_txn *txn) {
  store_origin *o = &s->origin;
  uint64_t of, seq, at = 0;
  int rc = get_meta_or_0(s, txn, "backup_of", &of);
  if (rc == 0 && of != 0) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    rc = get_meta_or_0(s, txn, "backup_seq", &seq);
    if (rc == 0) rc = new_store_id(s, txn);
    if (rc == 0) rc = put_meta(s, txn, "restored_from", of);
    if (rc == 0) rc = put_meta(s, txn, "restored_seq", seq);
    if (rc == 0) rc = put_meta(s, txn, "restored_at_ms", now_ms);
    if (rc == 0) rc = del_meta(s, txn, "backup_of");
    if (rc == 0) rc = del_meta(s, txn, "backup_seq");
    o->restored_now = 1;
  }
  if (rc == 0) rc = get_meta_or_0(s, txn, "restored_from", &o->restored_from);
  if (rc == 0) rc = get_meta_or_0(s, txn, "restored_seq", &o->restored_seq);
  if (rc == 0) rc = get_meta_or_0(s, txn, "restored_at_ms", &at);
  o->restored_at_ms = (int64_t)at;
  if (rc == 0) rc = get_meta_or_0(s, txn, "backup_at_ms", &at);
  o->backup_at_ms = (int64_t)at;
  return rc;
}

/* ---- epochs ---------------------------------------------------------------
 * Each open of the store begins an epoch: a random id kept in meta under
 * "epoch" + the big-endian seq of the first feed record it will write (the
 * head + 1). A run that writes nothing leaves its key to the next open,
 * which overwrites it. Two copies of one store that both take writes past
 * the copy's head (a cold copy or a disk snapshot started beside, or instead
 * of, the original) share their store id and their seqs, but not the
 * epochs of the records after the fork: a consumer that sends the epoch of
 * its cursor's record learns that this store's record of that seq is
 * another one (docs/api.md, the feed).
 *
 * Every commit that writes feed records also stores "epoch_end", its last
 * seq. Records past it at the next open were written by a build that keeps
 * no epochs (a rollback, then forward again): they get an epoch of id 0,
 * unknown, rather than the epoch before them. Epoch keys found with no
 * "epoch_end" beside them are dropped for the same reason. */
#define EPOCH_KEY "epoch"
#define EPOCH_KEY_LEN 5

static int space_refusal(store *s, int rc);

static int is_epoch_key(const MDB_val *k) {
  return k->mv_size == EPOCH_KEY_LEN + 8 && memcmp(k->mv_data, EPOCH_KEY, EPOCH_KEY_LEN) == 0;
}

static int put_epoch(const store *s, MDB_txn *txn, uint64_t first_seq, uint64_t id) {
  uint8_t key[EPOCH_KEY_LEN + 8], val[8];
  memcpy(key, EPOCH_KEY, EPOCH_KEY_LEN);
  store_be64(key + EPOCH_KEY_LEN, first_seq);
  store_be64(val, id);
  MDB_val k = {sizeof(key), key}, v = {sizeof(val), val};
  return mdb_put(txn, s->meta, &k, &v, 0);
}

static int drop_epochs(const store *s, MDB_txn *txn) {
  MDB_cursor *c;
  MDB_val k = {EPOCH_KEY_LEN, (void *)EPOCH_KEY}, v;
  int rc = mdb_cursor_open(txn, s->meta, &c);
  if (rc != 0) return rc;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)) {
    if (!is_epoch_key(&k)) break;
    if ((rc = mdb_cursor_del(c, 0)) != 0) break;
    k = (MDB_val){EPOCH_KEY_LEN, (void *)EPOCH_KEY};
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

static int feed_bounds(const store *s, MDB_txn *txn, uint64_t *first, uint64_t *last);

static int begin_epoch(store *s, MDB_txn *txn) {
  uint64_t first, last, end, id;
  MDB_cursor *c;
  MDB_val k, v;
  int rc = feed_bounds(s, txn, &first, &last);
  if (rc != 0) return rc;
  rc = get_meta(s, txn, "epoch_end", &end);
  if (rc == MDB_NOTFOUND)
    rc = drop_epochs(s, txn); /* none that can be trusted */
  else if (rc == 0 && last > end)
    rc = put_epoch(s, txn, end + 1, 0); /* written by a build that keeps no epochs */
  if (rc != 0 || (rc = random_id(&id)) != 0 || (rc = put_epoch(s, txn, last + 1, id)) != 0 ||
      (rc = put_meta(s, txn, "epoch_end", last)) != 0)
    return rc;
  /* every epoch, in seq order (the keys sort so) */
  if ((rc = mdb_cursor_open(txn, s->meta, &c)) != 0) return rc;
  k = (MDB_val){EPOCH_KEY_LEN, (void *)EPOCH_KEY};
  size_t cap = 0;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    if (!is_epoch_key(&k)) break;
    if (v.mv_size != 8) {
      rc = STORE_ECORRUPT;
      break;
    }
    if (s->nepochs == cap) {
      cap = cap ? 2 * cap : 16;
      store_epoch *grown = realloc(s->epochs, cap * sizeof(*grown));
      if (grown == NULL) {
        rc = ENOMEM;
        break;
      }
      s->epochs = grown;
    }
    s->epochs[s->nepochs++] = (store_epoch){store_get_be64((const uint8_t *)k.mv_data + EPOCH_KEY_LEN),
                                            store_get_be64(v.mv_data)};
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND || rc == 0 ? 0 : rc;
}

uint64_t store_epoch_of(const store *s, uint64_t seq) {
  size_t lo = 0, hi = s->nepochs; /* the last epoch that began at or before seq */
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (s->epochs[mid].first_seq <= seq)
      lo = mid + 1;
    else
      hi = mid;
  }
  return seq == 0 || lo == 0 ? 0 : s->epochs[lo - 1].id;
}

/* A data.mdb shorter than its pages need (have < need bytes): a copy cut
 * short, an interrupted copy or a restore onto a full disk. LMDB would take
 * an empty one for a new store (the restored orders silently gone), and
 * fault the process with SIGBUS at the first read of a page past the end
 * of a longer one: both are refused, in these words. */
static int cut_short(const char *dir, uint64_t have, uint64_t need, char *err, size_t errlen) {
  snprintf(err, errlen,
           "%s: data.mdb is %llu bytes but its pages run to %llu: the file was cut short (an "
           "interrupted copy?); restore it from a backup, or remove it to start an empty store",
           dir, (unsigned long long)have, (unsigned long long)need);
  return STORE_ECORRUPT;
}

int store_open(store **out, const char *dir, uint64_t map_size_bytes, unsigned max_readers,
               char *err, size_t errlen) {
  MDB_txn *txn = NULL;
  const char *what = "allocating the store";
  *out = NULL;
  err[0] = '\0';
  store *s = calloc(1, sizeof(*s));
  int rc = ENOMEM;
  if (s == NULL) goto fail;
  s->probe_fd = -1;
  s->ahead_fd = -1;
  s->dir_fd = -1;
  char data[PATH_MAX + 16];
  snprintf(data, sizeof(data), "%s/data.mdb", dir);
  struct stat sb;
  if (stat(data, &sb) != 0) {
    if (errno == ENOENT && (rc = create_store(dir, map_size_bytes, &what)) != 0) goto fail;
  } else if (S_ISREG(sb.st_mode) && sb.st_size < 2 * 4096) {
    /* short of the two meta pages (of LMDB's least page size): a store is
     * made whole elsewhere and renamed in (create_store), so never so */
    rc = cut_short(dir, (uint64_t)sb.st_size, 2 * 4096, err, errlen);
    goto fail;
  }
  what = "mdb_env_create";
  if ((rc = mdb_env_create(&s->env)) != 0) goto fail;
  what = "mdb_env_set_maxdbs";
  if ((rc = mdb_env_set_maxdbs(s->env, 8)) != 0) goto fail;
  what = "mdb_env_set_maxreaders";
  if ((rc = mdb_env_set_maxreaders(s->env, max_readers)) != 0) goto fail;
  what = "mdb_env_set_mapsize";
  if ((rc = mdb_env_set_mapsize(s->env, map_size_bytes)) != 0) goto fail;
  /* NOTLS: read transactions belong to producers, not to OS threads, so an
   * embedding host may move a producer between threads between calls. */
  what = "mdb_env_open";
  if ((rc = mdb_env_open(s->env, dir, MDB_NOTLS | MDB_NORDAHEAD, 0644)) != 0) {
    /* LMDB says only "Permission denied": name the file and its owner (a
     * store copied in, or a lock.mdb made, by root beside a service that
     * runs as another user, as its unit's DynamicUser does). */
    if (rc == EACCES || rc == EPERM) {
      static const char *const files[] = {"data.mdb", "lock.mdb"};
      for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char f[PATH_MAX + 16];
        struct stat fb;
        snprintf(f, sizeof(f), "%s/%s", dir, files[i]);
        if (stat(f, &fb) == 0 && access(f, R_OK | W_OK) != 0) {
          snprintf(err, errlen,
                   "%s: %s is owned by uid %u (mode %03o) and this process (uid %u) cannot "
                   "write it: give the store's files to the user spiked runs as",
                   dir, files[i], (unsigned)fb.st_uid, (unsigned)(fb.st_mode & 0777),
                   (unsigned)geteuid());
          break;
        }
      }
    }
    goto fail;
  }
  what = "opening data.mdb";
  if ((s->probe_fd = open(data, O_RDONLY | O_CLOEXEC)) < 0) {
    rc = errno;
    goto fail;
  }
  s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); /* -1: statvfs alone */
  /* Where zeros written ahead buy nothing (store_write_ahead): in memory
   * they would only take memory, and a copy-on-write file system puts an
   * overwrite in new blocks anyway, so they would only double the writes. */
  struct statfs vfs;
  const char *fs_name;
  int no_ahead = fstatfs(s->probe_fd, &vfs) != 0 ||
                 store_fs_of((unsigned long)vfs.f_type, &fs_name) != STORE_FS_PLAIN;
  /* shorter than its meta page says */
  what = "checking data.mdb's size";
  MDB_envinfo fi;
  MDB_stat fs;
  struct stat fsb;
  if (fstat(s->probe_fd, &fsb) != 0) {
    rc = errno;
    goto fail;
  }
  mdb_env_info(s->env, &fi);
  mdb_env_stat(s->env, &fs);
  uint64_t need = ((uint64_t)fi.me_last_pgno + 1) * fs.ms_psize;
  if ((uint64_t)fsb.st_size < need) {
    rc = cut_short(dir, (uint64_t)fsb.st_size, need, err, errlen);
    goto fail;
  }
  /* Writing ahead has a descriptor of its own: on NFS a write takes a
   * writeback error nobody has seen yet, and space_refusal's fdatasync on
   * probe_fd must still see one. Best effort: without it, no writing ahead. */
  s->ahead_used = need; /* the store as it is is no commit's growth */
  if (!no_ahead) s->ahead_fd = open(data, O_WRONLY | O_CLOEXEC);
  uint64_t version;
  what = "reading the schema version";
  if ((rc = read_schema(s, dir, &version, err, errlen)) != 0) goto fail;
  store_reader_check(s); /* clear slots of crashed readers */
  /* A process that died after a commit whose meta page it had not synced
   * (a deferred one) left that commit in the page cache only; without this
   * sync it would be read, published and served as durable, and a power
   * cut could still take it back. */
  what = "sync at open";
  if ((rc = mdb_env_sync(s->env, 1)) != 0) goto fail;

  /* LMDB maps the size set before the open even when the file's own map,
   * in its meta page, is bigger (it only rounds up to the pages in use),
   * and the next commit writes that smaller map back. So adopt the file's
   * (size 0: the meta page's), and grow it to the size asked for if that
   * is larger: a smaller --map-size, or none, never shrinks a live store.
   * No transaction is open, as a resize needs (found by outside QA: a
   * restart without the flag took a 2 GiB store back to 1 GiB). */
  what = "mdb_env_set_mapsize (the store's own)";
  if ((rc = mdb_env_set_mapsize(s->env, 0)) != 0) goto fail;
  MDB_envinfo info;
  mdb_env_info(s->env, &info);
  if (info.me_mapsize < map_size_bytes) {
    if ((rc = mdb_env_set_mapsize(s->env, map_size_bytes)) != 0) goto fail;
    mdb_env_info(s->env, &info);
  }
  s->map_asked = map_size_bytes;
  s->map_was = s->map_bytes = info.me_mapsize;
  if (store_map_used_pct(s) > 80) {
    /* More than 80% used: grow at open, the one moment no reader exists. */
    what = "mdb_env_set_mapsize (grow)";
    if ((rc = mdb_env_set_mapsize(s->env, info.me_mapsize * 2)) != 0) goto fail;
    mdb_env_info(s->env, &info);
    s->map_bytes = info.me_mapsize;
  }

  what = "mdb_txn_begin";
  if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0) goto fail;
  what = "mdb_dbi_open";
  if ((rc = open_dbi(txn, "events", 0, &s->events)) != 0 ||
      (rc = open_dbi(txn, "orders", 0, &s->orders)) != 0 ||
      (rc = open_dbi(txn, "feed", 0, &s->feed)) != 0 ||
      (rc = open_dbi(txn, "meta", 0, &s->meta)) != 0)
    goto fail;
  if (version == 0) {
    what = "writing the schema version";
    if ((rc = put_meta(s, txn, "schema", STORE_SCHEMA_VERSION)) != 0) goto fail;
  } else if (version == 1) {
    what = "migrating from schema 1";
    if ((rc = migrate_1(s, txn)) != 0) goto fail;
  }
  /* The store's identity: random when it is made (or first opened by a
   * build that keeps one), then never changed, so a feed consumer can tell
   * this store from a restored copy's successor or a replacement. */
  what = "the store id";
  rc = get_meta(s, txn, "store_id", &s->id);
  if (rc == MDB_NOTFOUND) rc = new_store_id(s, txn);
  if (rc != 0) goto fail;
  what = "the store's origin";
  if ((rc = read_origin(s, txn)) != 0) goto fail;
  what = "the run's epoch";
  if ((rc = begin_epoch(s, txn)) != 0) goto fail;
  what = "mdb_txn_commit";
  rc = mdb_txn_commit(txn);
  txn = NULL; /* freed by commit even when it fails */
  if (rc != 0) {
    rc = space_refusal(s, rc); /* a full disk says so, as a commit's does */
    goto fail;
  }
  *out = s;
  return 0;

fail:
  if (err[0] == '\0') snprintf(err, errlen, "%s: %s: %s", dir, what, store_strerror(rc));
  if (txn != NULL) mdb_txn_abort(txn);
  if (s != NULL && s->env != NULL) mdb_env_close(s->env);
  if (s != NULL && s->probe_fd >= 0) close(s->probe_fd);
  if (s != NULL && s->ahead_fd >= 0) close(s->ahead_fd);
  if (s != NULL && s->dir_fd >= 0) close(s->dir_fd);
  if (s != NULL) free(s->epochs);
  free(s);
  return rc;
}

void store_close(store *s) {
  if (s == NULL) return;
  mdb_env_close(s->env);
  close(s->probe_fd);
  if (s->ahead_fd >= 0) close(s->ahead_fd);
  if (s->dir_fd >= 0) close(s->dir_fd);
  free(s->epochs);
  free(s);
}

uint64_t store_migrated(const store *s) { return s->migrated; }

uint64_t store_id(const store *s) { return s->id; }

void store_get_origin(const store *s, store_origin *out) { *out = s->origin; }

struct MDB_env *store_lmdb_env(store *s) { return s->env; }

void store_map_open_sizes(const store *s, uint64_t *asked, uint64_t *was, uint64_t *now) {
  *asked = s->map_asked;
  *was = s->map_was;
  *now = s->map_bytes;
}

void store_map_usage(const store *s, uint64_t *size_bytes, uint64_t *used_bytes) {
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(s->env, &info);
  mdb_env_stat(s->env, &st);
  *size_bytes = info.me_mapsize;
  *used_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
}

/* ---- transactions -------------------------------------------------------- */

store_txn *store_txn_new(store *s) {
  store_txn *t = calloc(1, sizeof(*t));
  if (t == NULL) return NULL;
  t->s = s;
  if (!msgpack_zone_init(&t->zone, 1024)) {
    free(t);
    return NULL;
  }
  return t;
}

store *store_txn_store(const store_txn *t) { return t->s; }

void store_txn_free(store_txn *t) {
  if (t == NULL) return;
  if (t->txn != NULL) mdb_txn_abort(t->txn);
  if (t->idle != NULL) mdb_txn_abort(t->idle);
  msgpack_zone_destroy(&t->zone);
  free(t);
}

int store_read_begin(store_txn *t) {
  if (t->idle != NULL) {
    int rc = mdb_txn_renew(t->idle);
    if (rc != 0) return rc;
    t->txn = t->idle;
    t->idle = NULL;
    return 0;
  }
  return mdb_txn_begin(t->s->env, NULL, MDB_RDONLY, &t->txn);
}

void store_read_end(store_txn *t) {
  if (t->txn == NULL) return;
  mdb_txn_reset(t->txn); /* keeps the reader slot for the next renew */
  t->idle = t->txn;
  t->txn = NULL;
}

int store_write_begin(store_txn *t) { return mdb_txn_begin(t->s->env, NULL, 0, &t->txn); }

/* Free space below which a short write is taken for a full file system. */
#define FULL_BELOW_BYTES (1u << 20)

/*
 * A commit that failed for space, when nothing of it can have reached the
 * disk: STORE_NOSPACE, which the caller may retry once space returns.
 * Otherwise rc, which it must not.
 *
 * LMDB commits in three steps and fails at the first error: write the
 * transaction's pages (to pages free in the committed state), fdatasync,
 * write the meta page that makes them current. A write refused for space
 * (ENOSPC, EDQUOT, or the EIO LMDB reports for a short write: the file
 * system filled in the middle of one) happens in the first step, and leaves
 * the committed state and the page cache as they were. The same errno from
 * the other two steps does not: a failed fdatasync may have cost dirty
 * pages of earlier commits (the kernel marks them clean after a failed
 * writeback; NFS and thin provisioning report ENOSPC there), and a failed
 * meta page write sets LMDB's fatal flag. Both are detected after the fact:
 * LMDB's flag makes any new transaction MDB_PANIC, and Linux (4.13 on)
 * reports a writeback error once to every open file description, so an
 * fdatasync on a descriptor of our own still reports one that LMDB's
 * fdatasync has already taken.
 */
static int space_refusal(store *s, int rc) {
  if (rc == EIO) {
    struct statvfs v;
    if (fstatvfs(s->probe_fd, &v) != 0 || (uint64_t)v.f_bavail * v.f_frsize >= FULL_BELOW_BYTES)
      return rc;
  } else if (rc != ENOSPC && rc != EDQUOT) {
    return rc;
  }
  if (fdatasync(s->probe_fd) != 0) return rc;
  MDB_txn *txn;
  int panic = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
  if (panic == MDB_PANIC) return rc;
  if (panic == 0) mdb_txn_abort(txn);
  return STORE_NOSPACE;
}

int store_reader_check(store *s) {
  int dead = 0;
  return mdb_reader_check(s->env, &dead) == 0 ? dead : 0;
}

int store_has_room(store *s, uint64_t bytes) {
  struct statvfs v;
  if (fstatvfs(s->probe_fd, &v) != 0) return 1;
  uint64_t eighth = (uint64_t)v.f_blocks * v.f_frsize / 8;
  if (bytes > eighth) bytes = eighth;
  /* What this process may allocate there, asked of the file system itself:
   * statvfs's f_bavail leaves out the blocks ext4 keeps for root (which a
   * root spiked writes into, and so is refused only once they are gone
   * too), and knows nothing of a quota or of btrfs's metadata. The file
   * has no name (O_TMPFILE) and goes with its descriptor, a crash
   * included. Where that cannot be asked (no O_TMPFILE: NFS; no fallocate),
   * statvfs answers. */
  int fd = s->dir_fd >= 0 ? openat(s->dir_fd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600) : -1;
  if (fd >= 0) {
    int rc = fallocate(fd, 0, 0, (off_t)bytes) == 0 ? 0 : errno;
    close(fd);
    if (rc == 0) return 1;
    if (rc == ENOSPC || rc == EDQUOT) return 0;
  }
  return (uint64_t)v.f_bavail * v.f_frsize >= bytes;
}

int store_write_commit(store_txn *t, int defer_meta) {
  /* LMDB reads MDB_NOMETASYNC from the environment when it writes the meta
   * page: set for this commit alone. (0.9.24 has no per-transaction flag;
   * the engine has one writing thread, so nothing else commits meanwhile.) */
  int rc = mdb_env_set_flags(t->s->env, MDB_NOMETASYNC, defer_meta);
  if (rc != 0) {
    mdb_txn_abort(t->txn);
    t->txn = NULL;
    return rc;
  }
  rc = mdb_txn_commit(t->txn);
  t->txn = NULL; /* freed by the commit, even when it fails: never abort it */
  return rc == 0 ? 0 : space_refusal(t->s, rc);
}

void store_write_abort(store_txn *t) {
  if (t->txn == NULL) return;
  mdb_txn_abort(t->txn);
  t->txn = NULL;
}

int store_txn_open(const store_txn *t) { return t->txn != NULL; }

int store_sync(store *s) { return mdb_env_sync(s->env, 1); }

/* ---- writing the file ahead of LMDB ---------------------------------------
 * LMDB puts a commit's new pages at the end of data.mdb, and a store that
 * takes orders grows with nearly every commit. An fdatasync after the file
 * grew must also commit its new size and blocks (on ext4, a journal commit
 * beside the data): bench_disk's append-and-sync takes 1.5-2x an overwrite's
 * on the disks measured (docs/benchmarks.md, "The disk floor"), and every
 * durable commit paid it. So the writer keeps the file written, with zeros,
 * up to 1 MiB past the last page LMDB uses: new pages then overwrite blocks
 * the file already has, and one commit in many (the one after an
 * extension) pays for the size, the blocks and the zeros' flush.
 *
 * Safe by where it writes: only past the file's current size, and only
 * from the writer's thread between its transactions. LMDB writes data.mdb
 * only from the thread that commits, and only within a transaction or a
 * sync that thread makes (a commit's pages and meta page, pages a large
 * transaction spills early, the old meta page put back after a failed meta
 * write, an environment sync), so nothing of LMDB's lies past the size
 * while this runs; a page it later puts there overwrites the zeros. LMDB
 * reads only the pages its meta page reaches, never the file's size (nor
 * does a backup copy more), and a cut short file is told by those pages
 * (store_open), so the zeros are never read. What a power cut leaves of
 * them does not matter either. */
/* An extension's zeros are flushed by the next commit: 512 KiB of them
 * every 512 KiB of growth left an ack=durable p99.9 at 15,000 reserves/s as
 * it was, where 2 MiB at a time raised it (docs/benchmarks.md). */
#define AHEAD_BYTES (1u << 20)        /* written this far past LMDB's last page */
#define AHEAD_LOW (512u << 10)        /* extended when less than this is left */
#define AHEAD_KEEP_FREE (64u << 20)   /* never take the file system's last 64 MiB */
#define AHEAD_BIG_COMMIT (256u << 10) /* commits growing the store this much are left alone */

store_fs_kind store_fs_of(unsigned long f_type, const char **name) {
  switch (f_type) {
  case 0x01021994ul: *name = "tmpfs"; return STORE_FS_MEMORY;
  case 0x858458f6ul: *name = "ramfs"; return STORE_FS_MEMORY;
  case 0x9123683eul: *name = "btrfs"; return STORE_FS_COPY_ON_WRITE;
  case 0x2fc12fc1ul: *name = "zfs"; return STORE_FS_COPY_ON_WRITE;
  default: *name = NULL; return STORE_FS_PLAIN;
  }
}

void store_write_ahead(store *s) {
  MDB_envinfo info;
  MDB_stat st;
  if (s->ahead_fd < 0) return;
  mdb_env_info(s->env, &info);
  mdb_env_stat(s->env, &st);
  uint64_t used = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
  uint64_t grew = used > s->ahead_used ? used - s->ahead_used : 0;
  s->ahead_used = used;
  s->ahead_grew = s->ahead_grew - s->ahead_grew / 8 + grew / 8;
  if (used + AHEAD_LOW <= s->ahead_to) return;
  /* Commits this big flush enough that the file's new size is a small part
   * of each, and writing zeros first would only write their bytes twice
   * (bench_writer at batch 4096: 0.91x with, against 1.28x at 256). */
  if (s->ahead_grew >= AHEAD_BIG_COMMIT) return;
  struct stat sb;
  struct statvfs v;
  if (fstat(s->ahead_fd, &sb) != 0 || fstatvfs(s->ahead_fd, &v) != 0) return;
  uint64_t from = (uint64_t)sb.st_size, to = used + AHEAD_BYTES;
  if (to > info.me_mapsize) to = info.me_mapsize;
  if (from >= to) { /* LMDB's own pages, or an earlier extension, reach it */
    s->ahead_to = from;
    return;
  }
  if ((uint64_t)v.f_bavail * v.f_frsize < to - from + AHEAD_KEEP_FREE) return;
  static const char zeros[256 * 1024];
  while (from < to) {
    size_t n = to - from < sizeof(zeros) ? (size_t)(to - from) : sizeof(zeros);
    ssize_t w = pwrite(s->ahead_fd, zeros, n, (off_t)from);
    if (w <= 0) break; /* LMDB appends from here, as without this */
    from += (uint64_t)w;
  }
  s->ahead_to = from;
}

/* ---- records ------------------------------------------------------------- */

int store_put_order(store_txn *t, const order_rec *r, int append) {
  uint8_t k[8], v[CODEC_ORDER_MAX];
  store_be64(k, r->o.id);
  size_t n = codec_encode_order_rec(r, v, sizeof(v));
  if (n == 0) return STORE_ECORRUPT;
  MDB_val key = {sizeof(k), k}, val = {n, v};
  return mdb_put(t->txn, t->s->orders, &key, &val, append ? MDB_APPEND : 0);
}

static int append_feed(store_txn *t, uint64_t seq, const uint8_t *v, size_t n) {
  uint8_t k[8];
  store_be64(k, seq);
  MDB_val key = {sizeof(k), k}, val = {n, (void *)v};
  /* seqs come from the writer alone, strictly increasing: append. */
  return mdb_put(t->txn, t->s->feed, &key, &val, MDB_APPEND);
}

int store_put_order_change(store_txn *t, const order_rec *r, int append, uint64_t seq,
                           spike_change_type type, int64_t at) {
  uint8_t k[8], c[CODEC_CHANGE_MAX];
  size_t at_order;
  store_be64(k, r->o.id);
  size_t cn = codec_encode_order_change(r, type, at, c, sizeof(c), &at_order);
  if (cn == 0) return STORE_ECORRUPT;
  assert(cn - at_order <= CODEC_ORDER_MAX);
  MDB_val key = {sizeof(k), k}, val = {cn - at_order, c + at_order};
  int rc = mdb_put(t->txn, t->s->orders, &key, &val, append ? MDB_APPEND : 0);
  return rc != 0 ? rc : append_feed(t, seq, c, cn);
}

int store_get_order_rec(store_txn *t, uint64_t id, order_rec *r) {
  uint8_t k[8];
  store_be64(k, id);
  MDB_val key = {sizeof(k), k}, val;
  int rc = mdb_get(t->txn, t->s->orders, &key, &val);
  if (rc != 0) return rc;
  if (codec_decode_order_rec(val.mv_data, val.mv_size, &t->zone, r) != 0 || r->o.id != id)
    return STORE_ECORRUPT;
  return 0;
}

int store_get_order(store_txn *t, uint64_t id, spike_order *o) {
  order_rec r;
  int rc = store_get_order_rec(t, id, &r);
  if (rc == 0) *o = r.o;
  return rc;
}

int store_put_event(store_txn *t, const spike_event *e, int closed) {
  uint8_t k[8], v[CODEC_EVENT_MAX];
  store_be64(k, e->id);
  size_t n = codec_encode_event(e, closed, v, sizeof(v));
  if (n == 0) return STORE_ECORRUPT;
  MDB_val key = {sizeof(k), k}, val = {n, v};
  return mdb_put(t->txn, t->s->events, &key, &val, 0);
}

int store_get_event(store_txn *t, uint64_t id, int64_t now_ms, spike_event *e, int *closed) {
  uint8_t k[8];
  store_be64(k, id);
  MDB_val key = {sizeof(k), k}, val;
  int rc = mdb_get(t->txn, t->s->events, &key, &val);
  if (rc != 0) return rc;
  if (codec_decode_event(val.mv_data, val.mv_size, &t->zone, now_ms, e, closed) != 0 ||
      e->id != id)
    return STORE_ECORRUPT;
  return 0;
}

int store_append_change(store_txn *t, uint64_t seq, spike_change_type type, int64_t at,
                        const spike_order *o, const spike_event *e, int closed) {
  uint8_t v[CODEC_CHANGE_MAX];
  size_t n = codec_encode_change(type, at, o, e, closed, v, sizeof(v));
  if (n == 0) return STORE_ECORRUPT;
  return append_feed(t, seq, v, n);
}

int store_put_meta(store_txn *t, const char *name, uint64_t v) {
  return put_meta(t->s, t->txn, name, v);
}

int store_get_meta(store_txn *t, const char *name, uint64_t *v) {
  return get_meta(t->s, t->txn, name, v);
}

/* ---- the feed ---------------------------------------------------------------- */

static int feed_bounds(const store *s, MDB_txn *txn, uint64_t *first, uint64_t *last) {
  MDB_cursor *c;
  MDB_val k, v;
  *first = *last = 0;
  int rc = mdb_cursor_open(txn, s->feed, &c);
  if (rc != 0) return rc;
  rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  if (rc == 0 && k.mv_size == 8) {
    *first = store_get_be64(k.mv_data);
    rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
    if (rc == 0) *last = store_get_be64(k.mv_data);
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_feed_bounds(store_txn *t, uint64_t *first, uint64_t *last) {
  return feed_bounds(t->s, t->txn, first, last);
}

int store_feed_size(store_txn *t, uint64_t *records, uint64_t *bytes) {
  MDB_stat st;
  int rc = mdb_stat(t->txn, t->s->feed, &st);
  if (rc != 0) return rc;
  *records = st.ms_entries;
  *bytes = (uint64_t)st.ms_psize * (st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages);
  return 0;
}

int store_feed_read(store_txn *t, uint64_t after, uint64_t upto, spike_change *out, uint32_t max,
                    uint32_t *count, uint64_t *next) {
  MDB_cursor *c = NULL;
  uint8_t kb[8];
  uint32_t n = 0;
  *count = 0;
  *next = after;
  if (after >= upto) return 0;
  store_be64(kb, after + 1);
  MDB_val k = {sizeof(kb), kb}, v;
  int rc = mdb_cursor_open(t->txn, t->s->feed, &c);
  if (rc == 0) rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
  while (rc == 0 && n < max) {
    if (k.mv_size != 8) {
      rc = STORE_ECORRUPT;
      break;
    }
    uint64_t seq = store_get_be64(k.mv_data);
    if (seq > upto) break;
    if (codec_decode_change(v.mv_data, v.mv_size, &t->zone, &out[n]) != 0) {
      rc = STORE_ECORRUPT;
      break;
    }
    out[n].seq = seq;
    *next = seq;
    n++;
    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  if (c != NULL) mdb_cursor_close(c);
  *count = n;
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int store_feed_trim(store_txn *t, uint64_t n, uint64_t *deleted) {
  MDB_cursor *c;
  MDB_val k, v;
  *deleted = 0;
  int rc = mdb_cursor_open(t->txn, t->s->feed, &c);
  if (rc != 0) return rc;
  for (uint64_t i = 0; i < n && rc == 0; i++) {
    rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    if (rc == 0) rc = mdb_cursor_del(c, 0);
    if (rc == 0) (*deleted)++;
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- walks ---------------------------------------------------------------------- */

/* Walk one database, handing each record to step. */
static int walk(store_txn *t, MDB_dbi dbi, int (*step)(store_txn *, MDB_val *, MDB_val *, void *),
                void *arg) {
  MDB_cursor *c;
  MDB_val k, v;
  int rc = mdb_cursor_open(t->txn, dbi, &c);
  if (rc != 0) return rc;
  while ((rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0)
    if ((rc = step(t, &k, &v, arg)) != 0) break;
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

typedef struct walk_ctx {
  union {
    store_event_fn event;
    store_order_fn order;
  } fn;
  void *arg;
  int64_t now_ms;
} walk_ctx;

static int event_step(store_txn *t, MDB_val *k, MDB_val *v, void *arg) {
  walk_ctx *w = arg;
  spike_event e;
  int closed;
  if (k->mv_size != 8 ||
      codec_decode_event(v->mv_data, v->mv_size, &t->zone, w->now_ms, &e, &closed) != 0)
    return STORE_ECORRUPT;
  return w->fn.event(w->arg, &e, closed);
}

static int order_step(store_txn *t, MDB_val *k, MDB_val *v, void *arg) {
  walk_ctx *w = arg;
  order_rec r;
  if (k->mv_size != 8 || codec_decode_order_rec(v->mv_data, v->mv_size, &t->zone, &r) != 0 ||
      r.o.id != store_get_be64(k->mv_data))
    return STORE_ECORRUPT;
  return w->fn.order(w->arg, &r);
}

int store_each_event(store_txn *t, int64_t now_ms, store_event_fn fn, void *arg) {
  walk_ctx w = {.fn.event = fn, .arg = arg, .now_ms = now_ms};
  return walk(t, t->s->events, event_step, &w);
}

int store_each_order(store_txn *t, store_order_fn fn, void *arg) {
  walk_ctx w = {.fn.order = fn, .arg = arg};
  return walk(t, t->s->orders, order_step, &w);
}

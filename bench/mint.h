/*
 * mint.h -- HS256 tokens for spikebench's virtual users: one JWT per user
 * id, {"sub":"<user>","exp":<exp_s>} signed with the secret spiked's
 * --auth jwt verifies, so a run can reach a protected server as many
 * different users as it buys for.
 *
 * Signing goes through libjwt (the library spiked verifies with) and costs
 * a few microseconds, so tokens are kept in a direct-mapped cache of
 * user -> token sized at init: a run that cycles through --users N that
 * fit the cache mints each once; a run of fresh users mints one per
 * request, on the sending thread, and the time it took is counted
 * (minted, mint_ns) so the report can say what it cost.
 *
 * Threads: a mint is one thread's (each spikebench thread has its own).
 */
#ifndef SPIKE_BENCH_MINT_H
#define SPIKE_BENCH_MINT_H

#include <stddef.h>
#include <stdint.h>

#define MINT_TOKEN_BYTES 256  /* one compact JWS; a longer one is a failure */
#define MINT_SECRET_BYTES 512 /* --jwt-secret */
#define MINT_SLOTS_MAX 65536  /* cache slots of one mint */

typedef struct mint_slot {
  uint64_t user;
  uint16_t len; /* 0: empty */
  char tok[MINT_TOKEN_BYTES];
} mint_slot;

typedef struct mint {
  void *jwt; /* libjwt's jwt_t, kept between tokens */
  char secret[MINT_SECRET_BYTES];
  size_t secret_len;
  int64_t exp_s;
  mint_slot *slots;
  size_t nslots;
  uint64_t minted, hits;          /* tokens signed; tokens served from the cache */
  uint64_t mint_ns;               /* time spent signing */
  char scratch[MINT_TOKEN_BYTES]; /* the token when there is no cache */
} mint;

/*
 * Set m up to sign with secret (1..MINT_SECRET_BYTES-1 bytes) tokens that
 * expire at exp_s (unix seconds), with a cache of nslots (0..MINT_SLOTS_MAX)
 * slots. 0, or -1 (bad secret, out of memory, libjwt refused).
 */
int mint_init(mint *m, const char *secret, int64_t exp_s, size_t nslots);

/* The token for user, NUL-terminated, valid until the next call on m; its
 * length in *len. NULL when signing failed. */
const char *mint_token(mint *m, uint64_t user, size_t *len);

void mint_free(mint *m);

#endif /* SPIKE_BENCH_MINT_H */

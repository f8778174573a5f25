/*
 * The group key hierarchy.
 *
 *   group secret (32 bytes: random, or Argon2id(passphrase, salt, limits))
 *     PRK              = HKDF-Extract(salt = "zks/v1/hkdf-salt", IKM = secret)   [SHA-256]
 *     blob key         = HKDF-Expand(PRK, "zks/v1/blob-key", 32)
 *     auth seed        = HKDF-Expand(PRK, "zks/v1/group-auth-seed", 32)
 *     content key base = HKDF-Expand(PRK, "zks/v1/content-key-base", 32)
 *     auth keypair     = Ed25519 keypair from the auth seed
 *     group_id         = BLAKE2b-256("zks/v1/group-id" || auth public key)
 *
 * The labels are ASCII without a terminating NUL. The key epoch (default 0)
 * names which secret a blob was sealed under and is bound into every
 * envelope; rotating the secret moves to the next epoch.
 *
 * A zks_group lives in one guarded libsodium allocation, read-only once
 * derived and zeroed when freed. It never changes after creation, so any
 * number of threads may use one group at once; zks_group_free must not race
 * with any other use.
 */
#ifndef ZKS_CRYPTO_GROUP_H
#define ZKS_CRYPTO_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "crypto/nodeid.h"
#include "zks.h"

#define ZKS_GROUP_SECRET_LEN 32
#define ZKS_GROUP_ID_LEN     32
#define ZKS_GROUP_KEY_LEN    32 /* blob key, auth seed, content key base */

#define ZKS_KDF_SALT            "zks/v1/hkdf-salt"
#define ZKS_KDF_LABEL_BLOB_KEY  "zks/v1/blob-key"
#define ZKS_KDF_LABEL_AUTH_SEED "zks/v1/group-auth-seed"
#define ZKS_KDF_LABEL_CONTENT   "zks/v1/content-key-base"
#define ZKS_GROUP_ID_PREFIX     "zks/v1/group-id"

/*
 * Argon2id parameters of a passphrase group. They belong to the group and
 * travel with it (in the invite), so that every device derives the same
 * secret. memlimit is in bytes and must be a whole number of KiB, the unit
 * Argon2 itself works in.
 */
#define ZKS_PWHASH_SALT_LEN         16
#define ZKS_PWHASH_OPSLIMIT_MIN     1u
#define ZKS_PWHASH_OPSLIMIT_MAX     64u
#define ZKS_PWHASH_MEMLIMIT_MIN     8192u        /* libsodium's Argon2id minimum */
#define ZKS_PWHASH_MEMLIMIT_MAX     (4ull << 30) /* 4 GiB */
#define ZKS_PWHASH_OPSLIMIT_DEFAULT 3u
#define ZKS_PWHASH_MEMLIMIT_DEFAULT (256ull << 20) /* 256 MiB */
#define ZKS_PASSPHRASE_MAX          1024

typedef struct zks_pwhash_params {
    uint32_t opslimit; /* Argon2 passes */
    uint64_t memlimit; /* bytes */
    uint8_t salt[ZKS_PWHASH_SALT_LEN];
} zks_pwhash_params;

typedef struct zks_group zks_group;

/*
 * Fills `p` with the default limits and a fresh random salt, for a new
 * passphrase group. Returns 0, ZKS_EINVAL or ZKS_ECRYPTO. Any thread.
 */
int zks_pwhash_params_new(zks_pwhash_params *p);

/*
 * Checks parameters received from elsewhere. Returns 0, or ZKS_EINVAL when
 * opslimit or memlimit is outside the ranges above or memlimit is not a
 * multiple of 1024. Any thread.
 */
ZKS_WARN_UNUSED int zks_pwhash_params_check(const zks_pwhash_params *p);

/*
 * A new group with a random secret, epoch 0. *out is owned by the caller
 * (zks_group_free). Returns 0, ZKS_EINVAL, ZKS_ENOMEM or ZKS_ECRYPTO.
 */
int zks_group_generate(zks_group **out);

/*
 * The group of a known secret (from an invite or a rotation) at `epoch`.
 * The caller keeps and zeroes its copy of `secret`.
 * Returns 0, ZKS_EINVAL, ZKS_ENOMEM or ZKS_ECRYPTO.
 */
int zks_group_from_secret(zks_group **out, const uint8_t secret[ZKS_GROUP_SECRET_LEN],
                          uint32_t epoch);

/*
 * The group whose secret is Argon2id(`pass`, params), epoch 0. The
 * passphrase bytes are used exactly as given (1 to ZKS_PASSPHRASE_MAX
 * bytes); an application taking text from people should normalise it (NFC)
 * first. This is slow by design: it takes params->memlimit bytes of memory.
 * Returns 0; ZKS_EINVAL for an empty or overlong passphrase or parameters
 * that fail zks_pwhash_params_check; ZKS_ENOMEM when the memory cannot be
 * had; ZKS_ECRYPTO.
 */
int zks_group_from_passphrase(zks_group **out, const char *pass, size_t len,
                              const zks_pwhash_params *params);

/* Zeroes and frees the group. NULL is a no-op. */
void zks_group_free(zks_group *g);

/* The 32-byte group_id; owned by the group, valid until it is freed. */
const uint8_t *zks_group_id(const zks_group *g);

/* The group authentication public key (32 bytes), sent to the relay in HELLO. */
const uint8_t *zks_group_auth_public(const zks_group *g);

uint32_t zks_group_epoch(const zks_group *g);

/*
 * The group secret (32 bytes), for building invites. Owned by the group;
 * callers must not copy it anywhere that is not zeroed after use.
 */
const uint8_t *zks_group_secret(const zks_group *g);

/* The content key base (32 bytes) for large-content keys. Same rules as the secret. */
const uint8_t *zks_group_content_key_base(const zks_group *g);

/* Copies the Argon2id parameters of a passphrase group; ZKS_ENOENT for a random one. */
int zks_group_pwhash_params(const zks_group *g, zks_pwhash_params *out);

/*
 * group_id from a group authentication public key (the relay's check).
 * Uses no secret. Any thread.
 */
void zks_group_id_from_auth_public(uint8_t id[ZKS_GROUP_ID_LEN],
                                   const uint8_t auth_pk[ZKS_NODEID_LEN]);

/* For the crypto layer only: the blob encryption key (32 bytes). */
const uint8_t *zks_group_blob_key(const zks_group *g);

/* For the crypto layer only: Ed25519-signs `len` bytes with the group auth key. */
int zks_group_auth_sign(const zks_group *g, uint8_t sig[ZKS_SIG_LEN], const uint8_t *msg,
                        size_t len);

/* For the crypto layer and its tests: the derived auth seed (32 bytes). */
const uint8_t *zks_group_auth_seed(const zks_group *g);

/*
 * HKDF-SHA256 (RFC 5869): Extract with `salt`, then Expand with `info` into
 * `out_len` bytes (at most 255 * 32). Returns 0, ZKS_EINVAL or ZKS_ECRYPTO.
 */
int zks_hkdf_sha256(uint8_t *out, size_t out_len, const uint8_t *ikm, size_t ikm_len,
                    const uint8_t *salt, size_t salt_len, const uint8_t *info, size_t info_len);

#endif

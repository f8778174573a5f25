/*
 * NodeIds and node keys.
 *
 * Every endpoint, device or relay, holds an Ed25519 keypair; its 32-byte
 * public key is its NodeId. People see a NodeId as lowercase RFC 4648 base32
 * without padding (52 characters); input may also be 64 hexadecimal digits.
 *
 * A zks_node_key holds the secret half in guarded libsodium memory that is
 * read-only once the key is made and is zeroed when freed. A key never
 * changes after creation, so one key may be used by any number of threads at
 * once; zks_node_key_free must not race with any other use.
 *
 * Key file: one line of text, mode 0600,
 *     "zks-node-key-v1 " <64 lowercase hex digits of the seed> " " <NodeId text> "\n"
 * The NodeId repeats the public key so that a damaged file is detected when
 * it is loaded rather than when a peer refuses the handshake.
 */
#ifndef ZKS_CRYPTO_NODEID_H
#define ZKS_CRYPTO_NODEID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zks.h"

#define ZKS_NODEID_LEN      32 /* Ed25519 public key */
#define ZKS_NODEID_TEXT_LEN 52 /* base32 characters, without the NUL */
#define ZKS_NODEID_HEX_LEN  64
#define ZKS_NODE_SEED_LEN   32 /* Ed25519 seed: the whole secret */
#define ZKS_SIG_LEN         64 /* Ed25519 signature */

/* The key file's first word, with its version. */
#define ZKS_NODE_KEY_FILE_TAG "zks-node-key-v1"
/* Exact size of a key file: tag, space, hex seed, space, NodeId text, newline. */
#define ZKS_NODE_KEY_FILE_LEN                                                                      \
    (sizeof ZKS_NODE_KEY_FILE_TAG - 1 + 1 + 2 * ZKS_NODE_SEED_LEN + 1 + ZKS_NODEID_TEXT_LEN + 1)

typedef struct zks_node_key zks_node_key;

/*
 * Writes the base32 text form of `id` (52 characters and a NUL) to `out`.
 * Any thread.
 */
void zks_nodeid_to_text(char out[ZKS_NODEID_TEXT_LEN + 1], const uint8_t id[ZKS_NODEID_LEN]);

/*
 * Parses a NodeId from `len` characters at `s` (not NUL-terminated): either
 * 52 base32 characters (lowercase as printed; uppercase and mixed case are
 * accepted too, since the alphabet is case-insensitive) or 64 hex digits in
 * either case. No surrounding whitespace, padding or prefix.
 * Returns 0 or ZKS_EMALFORMED (`id` zeroed); ZKS_EINVAL for NULL pointers.
 * Any thread.
 */
ZKS_WARN_UNUSED int zks_nodeid_from_text(uint8_t id[ZKS_NODEID_LEN], const char *s, size_t len);

/*
 * Makes a new random key (*out owned by the caller; free with
 * zks_node_key_free). Returns 0, ZKS_ENOMEM or ZKS_ECRYPTO. Any thread.
 */
int zks_node_key_generate(zks_node_key **out);

/*
 * Makes the key whose secret is the 32-byte Ed25519 `seed` (the caller keeps
 * and zeroes its copy). Returns 0, ZKS_EINVAL, ZKS_ENOMEM or ZKS_ECRYPTO.
 */
int zks_node_key_from_seed(zks_node_key **out, const uint8_t seed[ZKS_NODE_SEED_LEN]);

/* Zeroes and frees the key. NULL is a no-op. */
void zks_node_key_free(zks_node_key *k);

/* The NodeId (public key): 32 bytes owned by the key, valid until it is freed. */
const uint8_t *zks_node_key_public(const zks_node_key *k);

/*
 * Copies the 32-byte seed to `seed`, for handing the key to the TLS stack.
 * The caller must sodium_memzero its copy as soon as it is done with it.
 */
void zks_node_key_seed(const zks_node_key *k, uint8_t seed[ZKS_NODE_SEED_LEN]);

/*
 * Signs `len` bytes at `msg` (Ed25519, pure) into `sig`.
 * Returns 0, ZKS_EINVAL (NULL arguments) or ZKS_ECRYPTO.
 */
int zks_node_key_sign(const zks_node_key *k, uint8_t sig[ZKS_SIG_LEN], const uint8_t *msg,
                      size_t len);

/*
 * Checks an Ed25519 signature by `id` over `len` bytes at `msg`. Uses no
 * secret. Returns 0, or ZKS_EAUTH for a bad signature or unusable public key.
 */
ZKS_WARN_UNUSED int zks_nodeid_verify(const uint8_t id[ZKS_NODEID_LEN],
                                      const uint8_t sig[ZKS_SIG_LEN], const uint8_t *msg,
                                      size_t len);

/* Bytes a sealed box adds to its message (an X25519 public key and a tag). */
#define ZKS_NODEID_BOX_OVERHEAD 48

/*
 * Seals `len` bytes at `msg` for the holder of NodeId `id` alone, into `out`
 * (len + ZKS_NODEID_BOX_OVERHEAD bytes): a libsodium sealed box to the
 * X25519 form of the Ed25519 key. The sender stays anonymous; only the
 * holder of the key opens it. Returns 0, ZKS_EINVAL (NULL, or a NodeId that
 * is no usable public key) or ZKS_ECRYPTO. Any thread.
 */
int zks_nodeid_box_seal(uint8_t *out, const uint8_t *msg, size_t len,
                        const uint8_t id[ZKS_NODEID_LEN]);

/* Whether a box can be sealed for `id` (it is a usable Ed25519 public key). Any thread. */
bool zks_nodeid_box_usable(const uint8_t id[ZKS_NODEID_LEN]);

/*
 * Opens a box sealed for `k` (`len` bytes at `box`) into `out`
 * (len - ZKS_NODEID_BOX_OVERHEAD bytes). Returns 0, ZKS_EINVAL, or ZKS_EAUTH
 * for a box not sealed for this key or altered. Any thread.
 */
int zks_node_key_box_open(const zks_node_key *k, uint8_t *out, const uint8_t *box, size_t len);

/*
 * Writes the key file form of `k` (ZKS_NODE_KEY_FILE_LEN bytes, no NUL) to
 * `out`. The text holds the secret: the caller zeroes it after use.
 */
void zks_node_key_format(const zks_node_key *k, char out[ZKS_NODE_KEY_FILE_LEN]);

/*
 * Parses key file text (the format above; the final newline may be missing).
 * Returns 0 with *out set, ZKS_EMALFORMED for anything else (including a
 * NodeId that does not match the seed), ZKS_ENOMEM or ZKS_ECRYPTO.
 */
ZKS_WARN_UNUSED int zks_node_key_parse(zks_node_key **out, const char *text, size_t len);

/*
 * Saves `k` to a new file at `path`, mode 0600. The key is written to a
 * temporary file in the same directory, flushed to disk, then linked into
 * place, so `path` either does not exist or holds the whole key, even after
 * a crash; an existing file is never replaced.
 * Returns 0; ZKS_EEXIST when `path` exists; ZKS_ENOENT when the directory
 * does not; ZKS_EIO for any other file-system failure (permission denied, a
 * full or read-only file system, a file system without hard links), logged
 * with its cause; ZKS_ENOMEM; ZKS_EINVAL for NULL arguments.
 */
int zks_node_key_save(const zks_node_key *k, const char *path);

/*
 * Loads a key saved by zks_node_key_save. The file must be a regular file
 * (a symbolic link is refused), owned by the effective user, with no
 * permission bits for group or others; these are checked on the opened
 * descriptor.
 * Returns 0 with *out set; ZKS_ENOENT when there is no such file; ZKS_EPERM
 * when the file is not a regular file, belongs to someone else, is
 * accessible to group or others, or cannot be opened for lack of
 * permission; ZKS_EMALFORMED for bad content; ZKS_EIO, ZKS_ENOMEM,
 * ZKS_ECRYPTO; ZKS_EINVAL for NULL arguments.
 */
ZKS_WARN_UNUSED int zks_node_key_load(zks_node_key **out, const char *path);

#endif

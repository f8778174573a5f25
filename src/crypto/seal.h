/*
 * Sealed blobs: what a device pushes and the relay stores without reading.
 *
 *   record    = MessagePack map {0: kind (uint), 1: app timestamp (uint, ms),
 *                                2: data (bin)}
 *   envelope  = MessagePack map {0: envelope version (1), 1: key epoch (uint),
 *                                2: nonce (bin 24), 3: ciphertext (bin)}
 *   ciphertext = XChaCha20-Poly1305-IETF(blob key, nonce, record, AD),
 *                the 16-byte tag appended
 *
 * The associated data has a fixed layout of ZKS_BLOB_AD_LEN bytes:
 *
 *   offset size  field
 *        0   14  "zks/v1/blob-ad" (ASCII, no NUL)
 *       14    4  protocol version, big-endian (ZKS_PROTOCOL_VERSION)
 *       18    4  key epoch, big-endian
 *       22   32  group_id
 *       54   16  blob_id
 *       70   32  sender NodeId
 *
 * so a blob opens only for the group, epoch, blob_id and sender it was
 * sealed for. Every seal takes a fresh random 192-bit nonce: from the
 * system's generator (zks_blob_seal), or from a zks_nonce_source.
 *
 * These functions keep no state; a zks_group is only read, so any thread may
 * seal and open at once with the same group.
 */
#ifndef ZKS_CRYPTO_SEAL_H
#define ZKS_CRYPTO_SEAL_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "crypto/group.h"
#include "crypto/nodeid.h"
#include "zks.h"

/* The largest envelope, in bytes; the same limit the wire protocol sets for a blob. */
#define ZKS_CRYPTO_MAX_BLOB  1048576u
#define ZKS_BLOB_ID_LEN      16
#define ZKS_BLOB_NONCE_LEN   24
#define ZKS_BLOB_TAG_LEN     16
#define ZKS_ENVELOPE_VERSION 1
#define ZKS_BLOB_AD_TAG      "zks/v1/blob-ad"
#define ZKS_BLOB_AD_LEN                                                                            \
    (sizeof ZKS_BLOB_AD_TAG - 1 + 4 + 4 + ZKS_GROUP_ID_LEN + ZKS_BLOB_ID_LEN + ZKS_NODEID_LEN)
/* Envelope bytes beyond the data, at most (every integer at its widest). */
#define ZKS_BLOB_MAX_OVERHEAD 85u
/* Data of this size or less always fits in an envelope. */
#define ZKS_BLOB_MAX_DATA (ZKS_CRYPTO_MAX_BLOB - ZKS_BLOB_MAX_OVERHEAD)

/* An opened record. `data` points into the caller's plaintext buffer. */
typedef struct zks_record {
    uint64_t kind;
    uint64_t app_ts; /* application timestamp, milliseconds */
    const uint8_t *data;
    size_t len;
    /* Key 3: a group rotation package (crypto/rotation.h), or NULL. Such a
     * record is the library's own and is never handed to the application. */
    const uint8_t *rotation;
    size_t rotation_len;
} zks_record;

/*
 * The exact envelope size for these record fields, or 0 when it would
 * exceed ZKS_CRYPTO_MAX_BLOB. Any thread.
 */
size_t zks_blob_sealed_len(uint32_t epoch, uint64_t kind, uint64_t app_ts, size_t len);

/*
 * Seals `len` bytes of `data` as a record {kind, app_ts, data} from
 * `sender`, under blob id `blob_id`, with the blob key and epoch of `g`,
 * and appends the envelope to `out`. The envelope is built in place: one
 * reservation in `out`, no other allocation, no copy but the data itself.
 * Returns 0; ZKS_ETOOBIG when the envelope would exceed ZKS_CRYPTO_MAX_BLOB
 * or the buffer's own limit; ZKS_ENOMEM; ZKS_EINVAL for NULL arguments;
 * ZKS_ECRYPTO; or the error already stuck in `out`. On failure `out` holds
 * what it held before (any partial envelope is zeroed and dropped).
 */
int zks_blob_seal(zks_buf *out, const zks_group *g, const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                  const uint8_t sender[ZKS_NODEID_LEN], uint64_t kind, uint64_t app_ts,
                  const uint8_t *data, size_t len);

/*
 * zks_blob_seal with a caller-chosen nonce: one from a zks_nonce_source, or a
 * fixed one for test vectors. A nonce must never be used twice with one blob
 * key, and only random nonces guarantee that across devices.
 */
int zks_blob_seal_with_nonce(zks_buf *out, const zks_group *g,
                             const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                             const uint8_t sender[ZKS_NODEID_LEN], uint64_t kind, uint64_t app_ts,
                             const uint8_t *data, size_t len,
                             const uint8_t nonce[ZKS_BLOB_NONCE_LEN]);

/*
 * Seals a rotation record: kind 0, `app_ts`, no data, and the `len` bytes of
 * `package` (crypto/rotation.h) under key 3, with a nonce from the system's
 * generator. Errors as zks_blob_seal.
 */
int zks_blob_seal_rotation(zks_buf *out, const zks_group *g, const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                           const uint8_t sender[ZKS_NODEID_LEN], uint64_t app_ts,
                           const uint8_t *package, size_t len);

/*
 * Random nonces without a system call each. A source holds a 256-bit key
 * drawn once from the system's generator; nonce number i is the first 24
 * bytes of the ChaCha20 (IETF) keystream under that key with i, little-endian
 * and zero-padded, as its 96-bit nonce. Distinct numbers give independent
 * pseudo-random values, so across sources and devices they collide no more
 * often than fresh random nonces would, and one source never repeats one.
 * Drawing from the system for every blob cost a getrandom call per push.
 *
 * A source is not secret in the sense a key is (the nonces it yields travel
 * in every envelope), but knowing its key predicts them; it is wiped when
 * done. take may be called from any number of threads at once.
 */
typedef struct zks_nonce_source {
    uint8_t key[32];
    _Atomic uint64_t next;
} zks_nonce_source;

/* Draws the key. Returns 0, or an error from zks_crypto_init. */
int zks_nonce_source_init(zks_nonce_source *s);
void zks_nonce_source_take(zks_nonce_source *s, uint8_t nonce[ZKS_BLOB_NONCE_LEN]);
void zks_nonce_source_wipe(zks_nonce_source *s);

/*
 * Opens an envelope sealed for `g`, `blob_id` and `sender`. `plain` is reset
 * and receives the decrypted record, but only after the ciphertext has
 * authenticated: on any failure it is left empty and no plaintext byte was
 * ever exposed. On success rec->data points into plain->data; the caller
 * owns `plain` and should sodium_memzero its bytes before zks_buf_free.
 * No allocation but growing `plain` (whose old bytes are zeroed first), so
 * `env` must not point into `plain`.
 * Returns 0; ZKS_ETOOBIG for an envelope over ZKS_CRYPTO_MAX_BLOB;
 * ZKS_ETRUNCATED when it ends early; ZKS_EMALFORMED when it is not a valid
 * v1 envelope, or when an authentic record is not a valid record;
 * ZKS_EUNSUPPORTED for an envelope version other than 1; ZKS_EAUTH when the
 * epoch differs from the group's, or the key, associated data or ciphertext
 * do not authenticate; ZKS_ENOMEM; ZKS_EINVAL for NULL arguments.
 */
ZKS_WARN_UNUSED int zks_blob_open(zks_record *rec, zks_buf *plain, const zks_group *g,
                                  const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                                  const uint8_t sender[ZKS_NODEID_LEN], const uint8_t *env,
                                  size_t env_len);

/*
 * Reads only the key epoch of an envelope, so a caller holding several
 * epochs' groups can pick the one to open it with. Checks the envelope's
 * structure (not its authenticity). Same errors as zks_blob_open's parsing.
 */
ZKS_WARN_UNUSED int zks_envelope_epoch(uint32_t *epoch, const uint8_t *env, size_t env_len);

/* Builds the associated data described above. Any thread. */
void zks_blob_ad(uint8_t ad[ZKS_BLOB_AD_LEN], uint32_t epoch,
                 const uint8_t group_id[ZKS_GROUP_ID_LEN], const uint8_t blob_id[ZKS_BLOB_ID_LEN],
                 const uint8_t sender[ZKS_NODEID_LEN]);

/*
 * Parses a decrypted record. Keys must be unsigned integers in strictly
 * ascending order; 0, 1 and 2 are required and keys above 2 are skipped, so
 * a later record version may add fields. Nothing may follow the map.
 * rec->data points into `p`. Returns 0 or the reader's ZKS_ETRUNCATED,
 * ZKS_ETOOBIG, ZKS_EMALFORMED.
 */
ZKS_WARN_UNUSED int zks_record_parse(zks_record *rec, const uint8_t *p, size_t len);

#endif

/*
 * HELLO membership proofs.
 *
 * A device proves to a relay that it belongs to a group by signing, with the
 * group authentication key, a message bound to its TLS connection:
 *
 *   offset size  field
 *        0   18  "zks/v1/hello-proof" (ASCII, no NUL)
 *       18   32  group_id
 *       50   32  device NodeId
 *       82    1  channel-binding length n (1..64)
 *       83    n  channel binding (the TLS exporter value the transport supplies)
 *
 * The proof is the 64-byte Ed25519 signature of that message. The relay
 * holds no secret: it checks that group_id is the hash of the group
 * authentication public key sent in HELLO, then the signature.
 * Stateless; any thread.
 */
#ifndef ZKS_CRYPTO_PROOF_H
#define ZKS_CRYPTO_PROOF_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/group.h"
#include "crypto/nodeid.h"
#include "zks.h"

#define ZKS_PROOF_TAG           "zks/v1/hello-proof"
#define ZKS_PROOF_LEN           ZKS_SIG_LEN
#define ZKS_CHANNEL_BINDING_MIN 1
#define ZKS_CHANNEL_BINDING_MAX 64
#define ZKS_PROOF_MSG_MAX                                                                          \
    (sizeof ZKS_PROOF_TAG - 1 + ZKS_GROUP_ID_LEN + ZKS_NODEID_LEN + 1 + ZKS_CHANNEL_BINDING_MAX)

/*
 * Builds the signed message into `out` and returns its length, or 0 when
 * `cb_len` is outside 1..64. Exposed so tests can check the layout.
 */
size_t zks_proof_message(uint8_t out[ZKS_PROOF_MSG_MAX], const uint8_t group_id[ZKS_GROUP_ID_LEN],
                         const uint8_t device[ZKS_NODEID_LEN], const uint8_t *cb, size_t cb_len);

/*
 * Signs the proof that `device` belongs to `g` on the connection whose
 * channel binding is `cb` (1 to 64 bytes).
 * Returns 0; ZKS_EINVAL for NULL arguments or a binding of the wrong size;
 * ZKS_ECRYPTO.
 */
int zks_proof_sign(uint8_t proof[ZKS_PROOF_LEN], const zks_group *g, const uint8_t *cb,
                   size_t cb_len, const uint8_t device[ZKS_NODEID_LEN]);

/*
 * Checks a proof with public values only: `group_id` must equal the hash of
 * `group_pk` (compared in constant time), and `proof` must be the group
 * key's signature over the message for `group_id`, `device` and `cb`.
 * Returns 0; ZKS_EAUTH when either check fails; ZKS_EINVAL for NULL
 * arguments or a binding of the wrong size.
 */
ZKS_WARN_UNUSED int zks_proof_verify(const uint8_t proof[ZKS_PROOF_LEN],
                                     const uint8_t group_id[ZKS_GROUP_ID_LEN],
                                     const uint8_t group_pk[ZKS_NODEID_LEN], const uint8_t *cb,
                                     size_t cb_len, const uint8_t device[ZKS_NODEID_LEN]);

#endif

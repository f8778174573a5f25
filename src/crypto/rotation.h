/*
 * Group secret rotation (docs/PROTOCOL.md, "Rotation record";
 * docs/SECURITY.md, "Rotation").
 *
 * A device that rotates the group makes a new random secret at the next key
 * epoch and seals it for each device that stays, one sealed box per NodeId
 * (zks_nodeid_box_seal), so that only those devices learn it: a device left
 * out (a revoked one) holds the old secret, which opens the record, but no
 * box in it. The rotating device signs the whole with its own node key:
 *
 *   digest = BLAKE2b-256("zks/v1/rotation" || old group_id || be32 old epoch ||
 *                        be32 epoch || group_id || rotator || be32 n || entries)
 *   sig    = Ed25519(rotator's node key, digest)
 *
 * where each entry is a recipient NodeId (32 bytes) followed by its sealed
 * box of the 32-byte secret (80 bytes). The package is a MessagePack map
 * {0: epoch, 1: group_id, 2: rotator, 3: [entry...], 4: sig}, carried in
 * key 3 of a sealed blob's record under the old group.
 *
 * Stateless; any thread.
 */
#ifndef ZKS_CRYPTO_ROTATION_H
#define ZKS_CRYPTO_ROTATION_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "crypto/group.h"
#include "crypto/nodeid.h"
#include "zks.h"

#define ZKS_ROTATION_TAG            "zks/v1/rotation"
#define ZKS_ROTATION_MAX_RECIPIENTS 1000
#define ZKS_ROTATION_BOX_LEN        (ZKS_GROUP_SECRET_LEN + ZKS_NODEID_BOX_OVERHEAD)
#define ZKS_ROTATION_ENTRY_LEN      (ZKS_NODEID_LEN + ZKS_ROTATION_BOX_LEN)
/* The largest package: map, fields, the entries array and its bin headers. */
#define ZKS_ROTATION_MAX_LEN                                                                       \
    (64 + ZKS_ROTATION_MAX_RECIPIENTS * (ZKS_ROTATION_ENTRY_LEN + 2) + 2 * ZKS_NODEID_LEN +        \
     ZKS_SIG_LEN)

/* A parsed package; `entries` points into the parsed bytes. */
typedef struct zks_rotation {
    uint32_t epoch;
    uint8_t group_id[ZKS_GROUP_ID_LEN];
    uint8_t rotator[ZKS_NODEID_LEN];
    uint8_t sig[ZKS_SIG_LEN];
    const uint8_t *entries[ZKS_ROTATION_MAX_RECIPIENTS]; /* each ZKS_ROTATION_ENTRY_LEN bytes */
    size_t n;
} zks_rotation;

/*
 * Writes the package that moves group `from` to group `to` (whose epoch must
 * be from's plus one), signed by `rotator`, with a box for each of the `n`
 * NodeIds in `recipients` (1 to ZKS_ROTATION_MAX_RECIPIENTS, all
 * different). Appends to `out`. Returns 0, ZKS_EINVAL (bad arguments, a
 * repeated recipient, a NodeId that is no public key), ZKS_ETOOBIG,
 * ZKS_ENOMEM or ZKS_ECRYPTO.
 */
int zks_rotation_seal(zks_buf *out, const zks_group *from, const zks_group *to,
                      const zks_node_key *rotator, const uint8_t (*recipients)[ZKS_NODEID_LEN],
                      size_t n);

/*
 * Parses a package's structure (nothing is verified): ZKS_EMALFORMED,
 * ZKS_ETRUNCATED or ZKS_ETOOBIG for anything but the layout above. Integer
 * keys must be 0 to 4, each once, in order.
 */
int zks_rotation_parse(zks_rotation *out, const uint8_t *p, size_t len);

/*
 * Opens a parsed package for device `me`, which holds group `from`: checks
 * the signature by rot->rotator over the package and `from`, that the epoch
 * follows from's, opens me's box and checks that its secret gives
 * rot->group_id. *to: the new group (caller frees it). Returns 0; ZKS_ENOENT
 * when the package has no box for `me` (it was left out); ZKS_EAUTH for a
 * bad signature, another group or epoch, a box that does not open or a
 * secret of another group; ZKS_EINVAL; ZKS_ENOMEM; ZKS_ECRYPTO.
 */
int zks_rotation_open(zks_group **to, const zks_rotation *rot, const zks_group *from,
                      const zks_node_key *me);

#endif

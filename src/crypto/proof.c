#include "crypto/proof.h"

#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

size_t zks_proof_message(uint8_t out[ZKS_PROOF_MSG_MAX], const uint8_t group_id[ZKS_GROUP_ID_LEN],
                         const uint8_t device[ZKS_NODEID_LEN], const uint8_t *cb, size_t cb_len)
{
    if (cb == NULL || cb_len < ZKS_CHANNEL_BINDING_MIN || cb_len > ZKS_CHANNEL_BINDING_MAX)
        return 0;
    uint8_t *p = out;
    memcpy(p, ZKS_PROOF_TAG, sizeof ZKS_PROOF_TAG - 1);
    p += sizeof ZKS_PROOF_TAG - 1;
    memcpy(p, group_id, ZKS_GROUP_ID_LEN);
    p += ZKS_GROUP_ID_LEN;
    memcpy(p, device, ZKS_NODEID_LEN);
    p += ZKS_NODEID_LEN;
    *p++ = (uint8_t)cb_len;
    memcpy(p, cb, cb_len);
    p += cb_len;
    return (size_t)(p - out);
}

int zks_proof_sign(uint8_t proof[ZKS_PROOF_LEN], const zks_group *g, const uint8_t *cb,
                   size_t cb_len, const uint8_t device[ZKS_NODEID_LEN])
{
    if (proof == NULL)
        return ZKS_EINVAL;
    memset(proof, 0, ZKS_PROOF_LEN);
    if (g == NULL || device == NULL)
        return ZKS_EINVAL;
    uint8_t msg[ZKS_PROOF_MSG_MAX];
    size_t len = zks_proof_message(msg, zks_group_id(g), device, cb, cb_len);
    if (len == 0)
        return ZKS_EINVAL;
    return zks_group_auth_sign(g, proof, msg, len);
}

int zks_proof_verify(const uint8_t proof[ZKS_PROOF_LEN], const uint8_t group_id[ZKS_GROUP_ID_LEN],
                     const uint8_t group_pk[ZKS_NODEID_LEN], const uint8_t *cb, size_t cb_len,
                     const uint8_t device[ZKS_NODEID_LEN])
{
    if (proof == NULL || group_id == NULL || group_pk == NULL || device == NULL)
        return ZKS_EINVAL;
    uint8_t msg[ZKS_PROOF_MSG_MAX];
    size_t len = zks_proof_message(msg, group_id, device, cb, cb_len);
    if (len == 0)
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    uint8_t want[ZKS_GROUP_ID_LEN];
    zks_group_id_from_auth_public(want, group_pk);
    if (sodium_memcmp(want, group_id, sizeof want) != 0)
        return ZKS_EAUTH;
    return crypto_sign_verify_detached(proof, msg, len, group_pk) == 0 ? 0 : ZKS_EAUTH;
}

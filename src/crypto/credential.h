/*
 * Enterprise credentials.
 *
 * A relay run for an organisation admits only devices that hold a
 * credential from one of the organisation's issuer keys (Ed25519). The
 * device sends it in HELLO's `auth` field; the relay checks it with public
 * keys only. A credential names the one device it was issued to, so a
 * copied credential is useless without that device's key, which the TLS
 * handshake proves; it may also be limited to one group.
 *
 *   offset size  field
 *        0    1  version: 1
 *        1   32  issuer: the Ed25519 public key that signed it
 *       33   32  device: the NodeId it was issued to
 *       65   32  group_id it is limited to; 32 zero bytes for any group
 *       97    8  not_before, Unix seconds, big-endian
 *      105    8  not_after, Unix seconds, big-endian (later than not_before)
 *      113   64  Ed25519 signature by `issuer` over
 *                "zks/v1/enterprise-credential" (ASCII, no NUL) || bytes 0..112
 *
 * 177 bytes in all, nothing after. A relay accepts a credential up to
 * ZKS_CREDENTIAL_SKEW_S seconds before not_before and after not_after, for
 * clocks that disagree. Stateless; any thread.
 */
#ifndef ZKS_CRYPTO_CREDENTIAL_H
#define ZKS_CRYPTO_CREDENTIAL_H

#include <stddef.h>
#include <stdint.h>

#include "crypto/nodeid.h"
#include "zks.h"

#define ZKS_CREDENTIAL_TAG     "zks/v1/enterprise-credential"
#define ZKS_CREDENTIAL_VERSION 1
#define ZKS_CREDENTIAL_BODY    113 /* the signed bytes after the tag */
#define ZKS_CREDENTIAL_LEN     (ZKS_CREDENTIAL_BODY + ZKS_SIG_LEN)
#define ZKS_CREDENTIAL_SKEW_S  300

typedef struct zks_credential {
    uint8_t issuer[ZKS_NODEID_LEN];
    uint8_t device[ZKS_NODEID_LEN];
    uint8_t group_id[32]; /* all zero: any group */
    uint64_t not_before;  /* Unix seconds */
    uint64_t not_after;
} zks_credential;

/*
 * Fills in c->issuer from `issuer` and signs `c` into `out`.
 * Returns 0; ZKS_EINVAL for NULL arguments or not_after <= not_before;
 * ZKS_ECRYPTO.
 */
int zks_credential_sign(uint8_t out[ZKS_CREDENTIAL_LEN], zks_credential *c,
                        const zks_node_key *issuer);

/*
 * Reads the fields of `len` bytes at `data` without checking the signature.
 * Returns 0; ZKS_EMALFORMED for a wrong length or version, or not_after <=
 * not_before (`out` zeroed); ZKS_EINVAL for NULL arguments.
 */
ZKS_WARN_UNUSED int zks_credential_parse(zks_credential *out, const uint8_t *data, size_t len);

/*
 * The first and last second (Unix time) a relay admits `c`: its validity
 * widened by ZKS_CREDENTIAL_SKEW_S either way, saturating at 0 and
 * UINT64_MAX.
 */
uint64_t zks_credential_first_s(const zks_credential *c);
uint64_t zks_credential_last_s(const zks_credential *c);

/*
 * Admits `device` to group `group_id` at `now_s` (Unix seconds) with the
 * credential at `data`: well formed, signed by one of the `n` issuer keys,
 * issued to `device`, for that group or any, and valid at `now_s` give or
 * take ZKS_CREDENTIAL_SKEW_S. On success fills `out` (may be NULL).
 * Returns 0; ZKS_EMALFORMED; ZKS_EAUTH for any other refusal (no credential
 * at all, `data` NULL or `len` 0, included), with *why (may be NULL) set to
 * a static sentence that names the reason and no secret; ZKS_EINVAL for a
 * NULL `device` or `group_id`, or NULL `issuers` with `n` above 0.
 */
ZKS_WARN_UNUSED int zks_credential_check(zks_credential *out, const uint8_t *data, size_t len,
                                         const uint8_t (*issuers)[ZKS_NODEID_LEN], size_t n,
                                         const uint8_t device[ZKS_NODEID_LEN],
                                         const uint8_t group_id[32], uint64_t now_s,
                                         const char **why);

#endif

/*
 * Fuzzes the enterprise credential reader and check (the bytes a relay
 * takes from HELLO's auth field). The input is the credential; the issuer
 * the check trusts is the key of a fixed seed, so the seed corpus holds
 * credentials that pass. Whatever is admitted must parse to fields that
 * say so.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/credential.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1800000000ull

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static zks_node_key *issuer;
    static uint8_t trusted[1][ZKS_NODEID_LEN];
    if (issuer == NULL) {
        uint8_t seed[ZKS_NODE_SEED_LEN];
        memset(seed, 0x11, sizeof seed);
        if (zks_node_key_from_seed(&issuer, seed) != 0)
            abort();
        memcpy(trusted[0], zks_node_key_public(issuer), ZKS_NODEID_LEN);
    }
    uint8_t device[ZKS_NODEID_LEN], group[32];
    memset(device, 0x22, sizeof device);
    memset(group, 0x33, sizeof group);

    zks_credential parsed, admitted;
    int prc = zks_credential_parse(&parsed, data, size);
    if (prc != 0 && prc != ZKS_EMALFORMED)
        abort();
    if (prc == 0 && (size != ZKS_CREDENTIAL_LEN || parsed.not_after <= parsed.not_before))
        abort();
    const char *why = NULL;
    int rc = zks_credential_check(&admitted, data, size, trusted, 1, device, group, NOW, &why);
    if (rc == 0) {
        if (prc != 0 || why != NULL || memcmp(&parsed, &admitted, sizeof parsed) != 0 ||
            memcmp(admitted.device, device, sizeof device) != 0 ||
            memcmp(admitted.issuer, trusted[0], ZKS_NODEID_LEN) != 0)
            abort();
    } else if ((rc != ZKS_EAUTH && rc != ZKS_EMALFORMED) || why == NULL) {
        abort();
    }
    return 0;
}

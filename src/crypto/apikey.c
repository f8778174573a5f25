#include "crypto/apikey.h"

#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

bool zks_api_key_valid(const char *key, size_t len)
{
    if (key == NULL || len < ZKS_API_KEY_MIN || len > ZKS_API_KEY_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        /* Printable, no space: the key travels in an HTTP header and in one word of a file. */
        if (key[i] <= ' ' || key[i] > '~')
            return false;
    }
    return true;
}

int zks_api_key_digest(uint8_t out[ZKS_API_KEY_DIGEST_LEN], const char *key, size_t len)
{
    memset(out, 0, ZKS_API_KEY_DIGEST_LEN);
    if (!zks_api_key_valid(key, len))
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, ZKS_API_KEY_DIGEST_LEN);
    crypto_generichash_update(&st, (const uint8_t *)ZKS_API_KEY_TAG, sizeof ZKS_API_KEY_TAG - 1);
    crypto_generichash_update(&st, (const uint8_t *)key, len);
    crypto_generichash_final(&st, out, ZKS_API_KEY_DIGEST_LEN);
    sodium_memzero(&st, sizeof st);
    return 0;
}

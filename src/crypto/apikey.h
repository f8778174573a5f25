/*
 * API keys of a discovery service (docs/DISCOVERY.md).
 *
 * An API key is any text of 16 to 256 printable ASCII characters without
 * spaces; the ones zks makes are "zksk_" and 52 base32 characters (256
 * random bits). A discovery service keeps only a key's digest,
 *     BLAKE2b-256("zks/v1/api-key" (ASCII, no NUL) || key),
 * shown as a NodeId is (52 base32 characters), so that its file names no
 * usable key. Stateless; any thread.
 */
#ifndef ZKS_CRYPTO_APIKEY_H
#define ZKS_CRYPTO_APIKEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "zks.h"

#define ZKS_API_KEY_TAG        "zks/v1/api-key"
#define ZKS_API_KEY_PREFIX     "zksk_"
#define ZKS_API_KEY_MIN        16
#define ZKS_API_KEY_MAX        256
#define ZKS_API_KEY_DIGEST_LEN 32

/* Whether `len` bytes at `key` have the shape of an API key (length, characters). */
bool zks_api_key_valid(const char *key, size_t len);

/* The digest of a key of valid shape. ZKS_EINVAL otherwise, `out` zeroed; ZKS_ECRYPTO. */
ZKS_WARN_UNUSED int zks_api_key_digest(uint8_t out[ZKS_API_KEY_DIGEST_LEN], const char *key,
                                       size_t len);

#endif

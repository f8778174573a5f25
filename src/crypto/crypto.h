/*
 * Shared plumbing of the crypto layer: libsodium initialisation and the
 * guarded allocation every long-lived secret lives in.
 */
#ifndef ZKS_CRYPTO_CRYPTO_H
#define ZKS_CRYPTO_CRYPTO_H

#include <stddef.h>

#include "zks.h"

/*
 * Initialises libsodium once per process (later calls are cheap). Any thread;
 * concurrent first calls are safe. Every crypto entry point that needs
 * libsodium calls it, so callers never have to.
 * Returns 0 or ZKS_ECRYPTO when libsodium cannot initialise.
 */
ZKS_WARN_UNUSED int zks_crypto_init(void);

/*
 * Allocates `size` zeroed bytes with sodium_malloc (guard pages, canary,
 * mlock where the system allows), the size rounded up so that the returned
 * pointer is suitably aligned for any struct. NULL when out of memory.
 * Release with zks_secure_free, which zeroes the memory.
 */
void *zks_secure_alloc(size_t size);

/* Zeroes and releases memory from zks_secure_alloc, even if made read-only. NULL is a no-op. */
void zks_secure_free(void *p);

#endif

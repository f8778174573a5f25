#include "crypto/crypto.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <sodium.h>

#include "common/log.h"

static atomic_int sodium_ready;

int zks_crypto_init(void)
{
    if (atomic_load_explicit(&sodium_ready, memory_order_acquire))
        return 0;
    /* sodium_init() takes its own lock and is idempotent, so racing first
     * callers are harmless; the flag only spares later calls that lock. */
    if (sodium_init() < 0) {
        ZKS_LOGE("crypto: libsodium failed to initialise");
        return ZKS_ECRYPTO;
    }
    atomic_store_explicit(&sodium_ready, 1, memory_order_release);
    return 0;
}

void *zks_secure_alloc(size_t size)
{
    if (zks_crypto_init() != 0)
        return NULL;
    /* sodium_malloc places the block against a guard page, so its address is
     * only as aligned as its size: round the size up to keep structs aligned. */
    size_t align = _Alignof(max_align_t);
    if (size > SIZE_MAX - align)
        return NULL;
    size_t rounded = (size + align - 1) / align * align;
    void *p = sodium_malloc(rounded);
    if (p != NULL)
        memset(p, 0, rounded);
    return p;
}

void zks_secure_free(void *p)
{
    if (p != NULL)
        sodium_free(p);
}

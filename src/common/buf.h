/*
 * A growable byte buffer with a hard capacity limit, used by encoders. Once an
 * append fails (out of memory or over the limit) the error sticks: later
 * appends do nothing and zks_buf_err() reports the first failure, so encoders
 * check once at the end.
 */
#ifndef ZKS_COMMON_BUF_H
#define ZKS_COMMON_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct zks_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t limit; /* largest len allowed; 0 means SIZE_MAX */
    int err;      /* first failure, sticky */
} zks_buf;

/* An empty buffer that will refuse to grow past `limit` bytes (0 = no limit). */
void zks_buf_init(zks_buf *b, size_t limit);

/* Frees the storage and returns the buffer to its initial empty state. */
void zks_buf_free(zks_buf *b);

/* Drops the contents and clears the sticky error, keeping the storage. */
void zks_buf_reset(zks_buf *b);

/* Makes room for `n` more bytes. ZKS_ENOMEM or ZKS_ETOOBIG. */
int zks_buf_reserve(zks_buf *b, size_t n);

/* Appends `n` bytes (a no-op once an error is set). */
void zks_buf_append(zks_buf *b, const void *p, size_t n);

/* Appends `n` bytes and returns where they go (NULL on error); the caller fills them. */
uint8_t *zks_buf_extend(zks_buf *b, size_t n);

static inline int zks_buf_err(const zks_buf *b)
{
    return b->err;
}

static inline void zks_be32_put(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t zks_be32_get(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void zks_be64_put(uint8_t *p, uint64_t v)
{
    zks_be32_put(p, (uint32_t)(v >> 32));
    zks_be32_put(p + 4, (uint32_t)v);
}

static inline uint64_t zks_be64_get(const uint8_t *p)
{
    return (uint64_t)zks_be32_get(p) << 32 | zks_be32_get(p + 4);
}

#endif

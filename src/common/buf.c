#include "common/buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zks.h"

void zks_buf_init(zks_buf *b, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->limit = limit ? limit : SIZE_MAX;
}

void zks_buf_free(zks_buf *b)
{
    size_t limit = b->limit;
    free(b->data);
    zks_buf_init(b, limit);
}

void zks_buf_reset(zks_buf *b)
{
    b->len = 0;
    b->err = 0;
}

int zks_buf_reserve(zks_buf *b, size_t n)
{
    if (b->err)
        return b->err;
    if (n > b->limit - b->len) {
        b->err = ZKS_ETOOBIG;
        return b->err;
    }
    size_t need = b->len + n;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->limit)
        cap = b->limit;
    uint8_t *p = realloc(b->data, cap);
    if (p == NULL) {
        b->err = ZKS_ENOMEM;
        return b->err;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

uint8_t *zks_buf_extend(zks_buf *b, size_t n)
{
    if (zks_buf_reserve(b, n) != 0)
        return NULL;
    uint8_t *p = b->data + b->len;
    b->len += n;
    return p;
}

void zks_buf_append(zks_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    uint8_t *dst = zks_buf_extend(b, n);
    if (dst)
        memcpy(dst, p, n);
}

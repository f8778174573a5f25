#include "proto/frame.h"

#include <stdlib.h>
#include <string.h>

#include "zks.h"

void zks_framer_init(zks_framer *f, size_t max_body)
{
    memset(f, 0, sizeof *f);
    f->max_body = max_body ? max_body : ZKS_FRAME_MAX_BODY;
}

void zks_framer_free(zks_framer *f)
{
    free(f->body);
    f->body = NULL;
    f->hdr_have = f->body_len = f->body_have = 0;
}

int zks_framer_idle(const zks_framer *f)
{
    /* Nothing started, or the last frame was whole and has been handed out. */
    return f->hdr_have == 0 || (f->hdr_have == ZKS_FRAME_HEADER_LEN && f->body_have == f->body_len);
}

/* Forgets the frame just handed out, keeping nothing but the limit. */
static void next_frame(zks_framer *f)
{
    f->hdr_have = 0;
    f->body_len = 0;
    f->body_have = 0;
}

int zks_framer_feed(zks_framer *f, const uint8_t *p, size_t len, size_t *consumed,
                    const uint8_t **body, size_t *body_len)
{
    *consumed = 0;
    *body = NULL;
    *body_len = 0;
    if (f->err)
        return f->err;

    /* The body handed out last time lives until now; release it. */
    if (f->hdr_have == ZKS_FRAME_HEADER_LEN && f->body_have == f->body_len) {
        free(f->body);
        f->body = NULL;
        next_frame(f);
    }

    size_t used = 0;
    if (f->hdr_have < ZKS_FRAME_HEADER_LEN) {
        size_t n = ZKS_FRAME_HEADER_LEN - f->hdr_have;
        if (n > len)
            n = len;
        memcpy(f->hdr + f->hdr_have, p, n);
        f->hdr_have += n;
        used += n;
        if (f->hdr_have < ZKS_FRAME_HEADER_LEN) {
            *consumed = used;
            return 0;
        }
        f->body_len = zks_be32_get(f->hdr);
        f->body_have = 0;
        if (f->body_len > f->max_body) {
            f->err = ZKS_ETOOBIG;
            *consumed = used;
            return f->err;
        }
        /* Fast path: the whole body is already here, so point at it. */
        if (len - used >= f->body_len) {
            *body = p + used;
            *body_len = f->body_len;
            f->body_have = f->body_len;
            *consumed = used + f->body_len;
            return 0;
        }
        if (f->body_len > 0) {
            f->body = malloc(f->body_len);
            if (f->body == NULL) {
                f->err = ZKS_ENOMEM;
                *consumed = used;
                return f->err;
            }
        }
    }

    size_t n = f->body_len - f->body_have;
    if (n > len - used)
        n = len - used;
    if (n)
        memcpy(f->body + f->body_have, p + used, n);
    f->body_have += n;
    used += n;
    *consumed = used;
    if (f->body_have == f->body_len) {
        *body = f->body;
        *body_len = f->body_len;
    }
    return 0;
}

void zks_frame_put_header(zks_buf *b, size_t body_len)
{
    uint8_t *h = zks_buf_extend(b, ZKS_FRAME_HEADER_LEN);
    if (h == NULL)
        return;
    if (body_len > UINT32_MAX) {
        b->err = ZKS_ETOOBIG;
        return;
    }
    zks_be32_put(h, (uint32_t)body_len);
}

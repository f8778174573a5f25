/*
 * Frames: a 4-byte big-endian body length, then the MessagePack body.
 *
 * The reassembler takes bytes in whatever chunks the transport delivers and
 * hands out whole frame bodies. A frame whose declared length exceeds the
 * limit is refused as soon as its header is complete, before any allocation;
 * the error then sticks and the stream must be closed.
 */
#ifndef ZKS_PROTO_FRAME_H
#define ZKS_PROTO_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"

#define ZKS_FRAME_HEADER_LEN 4
/* The largest sealed blob the protocol carries. */
#define ZKS_MAX_BLOB (1024u * 1024u)
/* The largest frame body: one largest blob plus room for the message fields. */
#define ZKS_FRAME_MAX_BODY (ZKS_MAX_BLOB + 4096u)

typedef struct zks_framer {
    size_t max_body;
    uint8_t hdr[ZKS_FRAME_HEADER_LEN];
    size_t hdr_have;
    uint8_t *body; /* partial body being collected, or NULL */
    size_t body_len;
    size_t body_have;
    int err;
} zks_framer;

/* `max_body` of 0 means ZKS_FRAME_MAX_BODY. */
void zks_framer_init(zks_framer *f, size_t max_body);

/* Frees any partial frame. The framer may be initialised again afterwards. */
void zks_framer_free(zks_framer *f);

/*
 * Consumes bytes from `p` (at most `len`) and sets *consumed to how many.
 * When a frame completes, *body and *body_len describe it and the call stops
 * consuming there; the body points into `p` or into the framer's own storage
 * and stays valid until the next call. Call again with the rest of the input.
 * Returns 0, or ZKS_ETOOBIG for a frame over the limit (sticky).
 */
int zks_framer_feed(zks_framer *f, const uint8_t *p, size_t len, size_t *consumed,
                    const uint8_t **body, size_t *body_len);

/* True when no partial frame is buffered (a clean point to end a stream). */
int zks_framer_idle(const zks_framer *f);

/* Appends a frame header for a body of `body_len` bytes. */
void zks_frame_put_header(zks_buf *b, size_t body_len);

#endif

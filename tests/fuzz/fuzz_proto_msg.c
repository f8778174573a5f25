/*
 * Fuzzes the message decoder. Whatever decodes must also encode, and the
 * encoding must decode again to a message that encodes to the same bytes:
 * the decoder never accepts what the encoder would refuse, and the encoding
 * of a message is unique.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "proto/frame.h"
#include "proto/msg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zks_msg m;
    if (zks_msg_decode(&m, data, size) != 0) {
        if (m.type != 0 || m.owned != NULL)
            abort();
        return 0;
    }
    zks_buf once, twice;
    zks_buf_init(&once, 0);
    zks_buf_init(&twice, 0);
    if (zks_msg_encode_frame(&once, &m) != 0)
        abort();
    /* The canonical form drops unknown fields and shortens integers: never longer. */
    if (once.len - ZKS_FRAME_HEADER_LEN > size)
        abort();
    if (zks_be32_get(once.data) != once.len - ZKS_FRAME_HEADER_LEN)
        abort();
    zks_msg again;
    if (zks_msg_decode(&again, once.data + ZKS_FRAME_HEADER_LEN, once.len - ZKS_FRAME_HEADER_LEN) !=
        0)
        abort();
    if (again.type != m.type)
        abort();
    if (zks_msg_encode_frame(&twice, &again) != 0)
        abort();
    if (twice.len != once.len || memcmp(twice.data, once.data, once.len) != 0)
        abort();
    zks_msg_clear(&again);
    zks_msg_clear(&m);
    zks_buf_free(&once);
    zks_buf_free(&twice);
    return 0;
}

/*
 * Fuzzes the frame reassembler. The first input byte picks a chunk size so
 * the same bytes are also fed in pieces, as a transport would deliver them.
 */
#include <stddef.h>
#include <stdint.h>

#include "proto/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t chunk = (size_t)data[0] + 1;
    data++;
    size--;
    zks_framer f;
    zks_framer_init(&f, 4096);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        size_t used;
        const uint8_t *body;
        size_t body_len;
        if (zks_framer_feed(&f, data + off, n, &used, &body, &body_len) != 0)
            break;
        /* Touch every byte of the body so ASan checks the bounds. */
        volatile uint8_t sink = 0;
        for (size_t i = 0; body && i < body_len; i++)
            sink ^= body[i];
        (void)sink;
        off += used;
    }
    zks_framer_free(&f);
    return 0;
}

/* Fuzzes the relay's discovery table parser, then asks the table what a client would. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "relay/discovery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zks_discovery *d = NULL;
    char err[256];
    if (zks_discovery_parse(&d, (const char *)data, size, "fuzz", err, sizeof err) != 0)
        return 0;
    zks_buf out;
    zks_buf_init(&out, 1 << 20);
    /* The input's first 52 bytes as a NodeId, and its first 24 as an API key. */
    if (size >= 52)
        (void)zks_discovery_relay(d, (const char *)data, 52, &out);
    if (size >= 24)
        (void)zks_discovery_key(d, (const char *)data, 24, &out);
    zks_buf_free(&out);
    zks_discovery_free(d);
    return 0;
}

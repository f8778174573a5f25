/*
 * The client's discovery answer parser on arbitrary bytes, both ways it is
 * used: a key's relay list, and one relay asked for by NodeId.
 */
#include <stdint.h>
#include <string.h>

#include "client/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > ZKS__DISCOVERY_BODY_MAX)
        return 0;
    zks__relay_spec out[ZKS__MAX_RELAYS];
    size_t n;
    if (zks__discovery_parse(out, ZKS__MAX_RELAYS, &n, (const char *)data, size, NULL) == 0) {
        /* What parsed formats back to text that parses to the same relay. */
        for (size_t i = 0; i < n; i++) {
            char text[ZKS_RELAY_TEXT_MAX];
            zks__relay_spec again;
            zks__relay_format(text, &out[i]);
            if (zks__relay_parse(&again, text) != 0 || memcmp(again.id, out[i].id, 32) != 0 ||
                again.naddrs != out[i].naddrs)
                __builtin_trap();
        }
    }
    static const uint8_t want[32] = {1, 2, 3};
    (void)zks__discovery_parse(out, ZKS__MAX_RELAYS, &n, (const char *)data, size, want);
    return 0;
}

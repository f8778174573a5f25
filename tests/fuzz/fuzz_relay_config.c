/* Fuzzes the relay's config file parser with arbitrary text. */
#include <stddef.h>
#include <stdint.h>

#include "relay/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zks_relay_config c;
    zks_relay_config_defaults(&c);
    char err[256];
    (void)zks_relay_config_load_text(&c, (const char *)data, size, "fuzz", err, sizeof err);
    return 0;
}

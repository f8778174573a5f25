/* Fuzzes the generic MessagePack skipper, which every decoder uses on unknown fields. */
#include <stddef.h>
#include <stdint.h>

#include "common/mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    zks_mp_reader r;
    zks_mp_reader_init(&r, data, size);
    while (r.left > 0 && zks_mp_skip(&r) == 0) {
    }
    return 0;
}

/*
 * Fuzzes the record parser that runs on authenticated plaintext. Only group
 * members can reach it, but it must still hold on any bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "crypto/seal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *copy = malloc(size ? size : 1);
    if (copy == NULL)
        return 0;
    for (size_t i = 0; i < size; i++)
        copy[i] = data[i];
    zks_record rec;
    if (zks_record_parse(&rec, copy, size) == 0) {
        if (rec.len > size ||
            (rec.len > 0 && (rec.data < copy || rec.data + rec.len > copy + size)))
            abort();
        volatile uint8_t sink = 0;
        for (size_t i = 0; i < rec.len; i++)
            sink ^= rec.data[i];
        (void)sink;
    }
    free(copy);
    return 0;
}

/*
 * Fuzzes the NodeId text parser and the base32 decoder under it. Whatever
 * parses must print back to a canonical form that parses to the same bytes.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/base32.h"
#include "crypto/nodeid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);

    uint8_t id[ZKS_NODEID_LEN], back[ZKS_NODEID_LEN];
    if (zks_nodeid_from_text(id, text, size) == 0) {
        char printed[ZKS_NODEID_TEXT_LEN + 1];
        zks_nodeid_to_text(printed, id);
        if (zks_nodeid_from_text(back, printed, ZKS_NODEID_TEXT_LEN) != 0 ||
            memcmp(id, back, sizeof id) != 0)
            abort();
        if (size == ZKS_NODEID_TEXT_LEN)
            for (size_t i = 0; i < size; i++)
                if (lower(text[i]) != printed[i])
                    abort();
    }

    /* The generic decoder, for every output length the input could stand for. */
    uint8_t out[64];
    char again[128];
    for (size_t n = 0; n < sizeof out; n++) {
        if (zks_base32_encoded_len(n) != size)
            continue;
        if (zks_base32_decode(out, n, text, size) == 0) {
            if (zks_base32_encode(again, sizeof again, out, n) != 0)
                abort();
            for (size_t i = 0; i < size; i++)
                if (lower(text[i]) != again[i])
                    abort();
        }
    }
    free(text);
    return 0;
}

/*
 * Fuzzes the node key file parser. Whatever parses must format back to a
 * file that parses to the same key.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/nodeid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    zks_node_key *k;
    if (zks_node_key_parse(&k, text, size) == 0) {
        char again[ZKS_NODE_KEY_FILE_LEN];
        zks_node_key_format(k, again);
        zks_node_key *k2;
        if (zks_node_key_parse(&k2, again, sizeof again) != 0)
            abort();
        if (memcmp(zks_node_key_public(k), zks_node_key_public(k2), ZKS_NODEID_LEN) != 0)
            abort();
        zks_node_key_free(k2);
        zks_node_key_free(k);
    } else if (k != NULL) {
        abort();
    }
    free(text);
    return 0;
}

/*
 * The state directory's group file parser on arbitrary text: it must refuse
 * or accept without crashing, reading out of bounds or leaking, and what it
 * accepts must be a whole group: a passphrase group at epoch 0 with no
 * previous group, a previous group only at the epoch before the group's.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    zks_group_key *g = NULL, *prev = NULL;
    if (zks__state_group_parse(&g, &prev, text) == 0) {
        if (g == NULL || (g->has_pw && (zks_group_epoch(g->g) != 0 || prev != NULL)) ||
            (prev != NULL && zks_group_epoch(prev->g) + 1 != zks_group_epoch(g->g)))
            abort();
    } else if (g != NULL || prev != NULL) {
        abort();
    }
    zks_group_key_free(g);
    zks_group_key_free(prev);
    free(text);
    return 0;
}

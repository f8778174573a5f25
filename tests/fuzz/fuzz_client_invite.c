/*
 * The invite parser on arbitrary text: it must refuse or accept without
 * crashing, reading out of bounds or leaking, and what it accepts must
 * encode back to an invite that parses to the same information.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= ZKS_INVITE_TEXT_MAX + 16)
        return 0;
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    static zks_invite_info info;
    if (zks_invite_inspect(&info, text) == 0) {
        zks_group_key *key = NULL;
        /* Only random-secret groups are opened: a passphrase would cost an Argon2id run. */
        if (!info.passphrase && zks_group_key_from_invite(&key, text, NULL) == 0) {
            const char *relays[ZKS_INVITE_MAX_RELAYS];
            for (size_t i = 0; i < info.nrelays; i++)
                relays[i] = info.relays[i];
            static char again[ZKS_INVITE_TEXT_MAX];
            static zks_invite_info info2;
            if (zks_invite_encode(again, sizeof again, key, relays, info.nrelays) != 0 ||
                zks_invite_inspect(&info2, again) != 0 ||
                memcmp(info.group_id, info2.group_id, sizeof info.group_id) != 0 ||
                info.nrelays != info2.nrelays)
                abort();
            zks_group_key_free(key);
        }
    }
    free(text);
    return 0;
}

/*
 * Rotation packages on arbitrary input: parsed, and what parses opened by a
 * fixed device of a fixed group: refused without a crash or a read out of
 * bounds, or, for a package really sealed for it (the seed corpus has one),
 * opened to the group it names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crypto/rotation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static zks_group *from;
    static zks_node_key *me;
    if (from == NULL) {
        static const uint8_t secret[ZKS_GROUP_SECRET_LEN] = {1, 2, 3};
        static const uint8_t seed[ZKS_NODE_SEED_LEN] = {4, 5, 6};
        if (zks_group_from_secret(&from, secret, 0) != 0 || zks_node_key_from_seed(&me, seed) != 0)
            abort();
    }
    zks_rotation *rot = malloc(sizeof *rot);
    if (rot == NULL)
        return 0;
    if (zks_rotation_parse(rot, data, size) == 0) {
        if (rot->n == 0 || rot->n > ZKS_ROTATION_MAX_RECIPIENTS || rot->epoch == 0)
            abort();
        zks_group *to = NULL;
        if (zks_rotation_open(&to, rot, from, me) == 0) {
            if (memcmp(zks_group_id(to), rot->group_id, ZKS_GROUP_ID_LEN) != 0 ||
                zks_group_epoch(to) != rot->epoch)
                abort();
            zks_group_free(to);
        }
    }
    free(rot);
    return 0;
}

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "client/internal.h"
#include "crypto/crypto.h"

static int wrap(zks_group_key **out, zks_group *g, const zks_pwhash_params *pw)
{
    zks_group_key *k = calloc(1, sizeof *k);
    if (k == NULL) {
        zks_group_free(g);
        return ZKS_ENOMEM;
    }
    k->g = g;
    if (pw) {
        k->has_pw = true;
        k->pw = *pw;
    }
    *out = k;
    return 0;
}

int zks_group_key_generate(zks_group_key **out)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    zks_group *g;
    int rc = zks_group_generate(&g);
    if (rc != 0)
        return rc;
    return wrap(out, g, NULL);
}

int zks_group_key_from_passphrase(zks_group_key **out, const char *passphrase, uint32_t opslimit,
                                  uint64_t memlimit, const uint8_t salt[ZKS_SALT_SIZE])
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (passphrase == NULL || salt == NULL)
        return ZKS_EINVAL;
    zks_pwhash_params p;
    p.opslimit = opslimit ? opslimit : ZKS_PWHASH_OPSLIMIT_DEFAULT;
    p.memlimit = memlimit ? memlimit : ZKS_PWHASH_MEMLIMIT_DEFAULT;
    memcpy(p.salt, salt, sizeof p.salt);
    if (zks_pwhash_params_check(&p) != 0)
        return ZKS_EINVAL;
    size_t len = strlen(passphrase);
    if (len == 0 || len > ZKS_PASSPHRASE_MAX)
        return ZKS_EINVAL;
    zks_group *g;
    int rc = zks_group_from_passphrase(&g, passphrase, len, &p);
    if (rc != 0)
        return rc;
    return wrap(out, g, &p);
}

int zks_group_key_new_passphrase(zks_group_key **out, const char *passphrase, uint32_t opslimit,
                                 uint64_t memlimit)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    zks_pwhash_params p;
    int rc = zks_pwhash_params_new(&p);
    if (rc != 0)
        return rc;
    return zks_group_key_from_passphrase(out, passphrase, opslimit, memlimit, p.salt);
}

int zks_group_key_from_secret(zks_group_key **out, const uint8_t secret[ZKS_GROUP_SECRET_SIZE])
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (secret == NULL)
        return ZKS_EINVAL;
    zks_group *g;
    int rc = zks_group_from_secret(&g, secret, 0);
    if (rc != 0)
        return rc;
    return wrap(out, g, NULL);
}

int zks__group_key_wrap(zks_group_key **out, zks_group *g)
{
    return wrap(out, g, NULL);
}

int zks__group_key_at_epoch(zks_group_key **out, const uint8_t secret[ZKS_GROUP_SECRET_SIZE],
                            uint32_t epoch)
{
    *out = NULL;
    zks_group *g;
    int rc = zks_group_from_secret(&g, secret, epoch);
    if (rc != 0)
        return rc;
    return wrap(out, g, NULL);
}

int zks_group_key_copy(zks_group_key **out, const zks_group_key *key)
{
    if (out == NULL)
        return ZKS_EINVAL;
    *out = NULL;
    if (key == NULL)
        return ZKS_EINVAL;
    zks_group *g;
    int rc = zks_group_from_secret(&g, zks_group_secret(key->g), zks_group_epoch(key->g));
    if (rc != 0)
        return rc;
    return wrap(out, g, key->has_pw ? &key->pw : NULL);
}

void zks_group_key_free(zks_group_key *key)
{
    if (key == NULL)
        return;
    zks_group_free(key->g);
    sodium_memzero(key, sizeof *key);
    free(key);
}

int zks_group_key_id(uint8_t out[ZKS_GROUP_ID_SIZE], const zks_group_key *key)
{
    if (out == NULL)
        return ZKS_EINVAL;
    memset(out, 0, ZKS_GROUP_ID_SIZE);
    if (key == NULL)
        return ZKS_EINVAL;
    memcpy(out, zks_group_id(key->g), ZKS_GROUP_ID_SIZE);
    return 0;
}

int zks_group_key_params(uint32_t *opslimit, uint64_t *memlimit, uint8_t salt[ZKS_SALT_SIZE],
                         const zks_group_key *key)
{
    if (opslimit == NULL || memlimit == NULL || salt == NULL)
        return ZKS_EINVAL;
    *opslimit = 0;
    *memlimit = 0;
    memset(salt, 0, ZKS_SALT_SIZE);
    if (key == NULL)
        return ZKS_EINVAL;
    if (!key->has_pw)
        return ZKS_ENOENT;
    *opslimit = key->pw.opslimit;
    *memlimit = key->pw.memlimit;
    memcpy(salt, key->pw.salt, ZKS_SALT_SIZE);
    return 0;
}

#include "crypto/rotation.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/mp.h"
#include "crypto/crypto.h"

enum { F_EPOCH = 0, F_GROUP_ID, F_ROTATOR, F_ENTRIES, F_SIG, F_COUNT };

/* The digest the rotator signs: the package's fields bound to the group it leaves. */
static void digest_of(uint8_t out[32], const zks_group *from, uint32_t epoch,
                      const uint8_t group_id[ZKS_GROUP_ID_LEN],
                      const uint8_t rotator[ZKS_NODEID_LEN], const uint8_t *const *entries,
                      size_t n)
{
    crypto_generichash_state h;
    uint8_t be[4];
    crypto_generichash_init(&h, NULL, 0, 32);
    crypto_generichash_update(&h, (const uint8_t *)ZKS_ROTATION_TAG, sizeof ZKS_ROTATION_TAG - 1);
    crypto_generichash_update(&h, zks_group_id(from), ZKS_GROUP_ID_LEN);
    zks_be32_put(be, zks_group_epoch(from));
    crypto_generichash_update(&h, be, 4);
    zks_be32_put(be, epoch);
    crypto_generichash_update(&h, be, 4);
    crypto_generichash_update(&h, group_id, ZKS_GROUP_ID_LEN);
    crypto_generichash_update(&h, rotator, ZKS_NODEID_LEN);
    zks_be32_put(be, (uint32_t)n);
    crypto_generichash_update(&h, be, 4);
    for (size_t i = 0; i < n; i++)
        crypto_generichash_update(&h, entries[i], ZKS_ROTATION_ENTRY_LEN);
    crypto_generichash_final(&h, out, 32);
}

int zks_rotation_seal(zks_buf *out, const zks_group *from, const zks_group *to,
                      const zks_node_key *rotator, const uint8_t (*recipients)[ZKS_NODEID_LEN],
                      size_t n)
{
    if (out == NULL || from == NULL || to == NULL || rotator == NULL || recipients == NULL ||
        n == 0 || zks_group_epoch(from) == UINT32_MAX ||
        zks_group_epoch(to) != zks_group_epoch(from) + 1)
        return ZKS_EINVAL;
    if (n > ZKS_ROTATION_MAX_RECIPIENTS)
        return ZKS_ETOOBIG;
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (memcmp(recipients[i], recipients[j], ZKS_NODEID_LEN) == 0)
                return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    uint8_t *block = malloc(n * ZKS_ROTATION_ENTRY_LEN);
    const uint8_t **entries = malloc(n * sizeof *entries);
    int rc = block && entries ? 0 : ZKS_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t *e = block + i * ZKS_ROTATION_ENTRY_LEN;
        memcpy(e, recipients[i], ZKS_NODEID_LEN);
        rc = zks_nodeid_box_seal(e + ZKS_NODEID_LEN, zks_group_secret(to), ZKS_GROUP_SECRET_LEN,
                                 recipients[i]);
        entries[i] = e;
    }
    uint8_t digest[32], sig[ZKS_SIG_LEN];
    const uint8_t *me = zks_node_key_public(rotator);
    if (rc == 0) {
        digest_of(digest, from, zks_group_epoch(to), zks_group_id(to), me, entries, n);
        rc = zks_node_key_sign(rotator, sig, digest, sizeof digest);
    }
    if (rc == 0) {
        size_t start = out->len;
        zks_mp_write_map(out, F_COUNT);
        zks_mp_write_uint(out, F_EPOCH);
        zks_mp_write_uint(out, zks_group_epoch(to));
        zks_mp_write_uint(out, F_GROUP_ID);
        zks_mp_write_bin(out, zks_group_id(to), ZKS_GROUP_ID_LEN);
        zks_mp_write_uint(out, F_ROTATOR);
        zks_mp_write_bin(out, me, ZKS_NODEID_LEN);
        zks_mp_write_uint(out, F_ENTRIES);
        zks_mp_write_array(out, (uint32_t)n);
        for (size_t i = 0; i < n; i++)
            zks_mp_write_bin(out, entries[i], ZKS_ROTATION_ENTRY_LEN);
        zks_mp_write_uint(out, F_SIG);
        zks_mp_write_bin(out, sig, sizeof sig);
        if ((rc = zks_buf_err(out)) != 0)
            out->len = start;
    }
    free(block);
    free(entries);
    return rc;
}

/* Reads the next key, which must be `want`. */
static int expect_key(zks_mp_reader *r, uint64_t want)
{
    uint64_t key;
    int rc = zks_mp_read_uint(r, &key);
    if (rc != 0)
        return rc;
    return key == want ? 0 : ZKS_EMALFORMED;
}

int zks_rotation_parse(zks_rotation *out, const uint8_t *p, size_t len)
{
    if (out == NULL || (p == NULL && len != 0))
        return ZKS_EINVAL;
    memset(out, 0, sizeof *out);
    zks_mp_reader r;
    zks_mp_reader_init(&r, p, len);
    uint32_t nfields, n;
    uint64_t epoch;
    int rc;
    if ((rc = zks_mp_read_map(&r, &nfields, F_COUNT)) != 0)
        return rc;
    if (nfields != F_COUNT)
        return ZKS_EMALFORMED;
    if ((rc = expect_key(&r, F_EPOCH)) != 0 || (rc = zks_mp_read_uint(&r, &epoch)) != 0 ||
        (rc = expect_key(&r, F_GROUP_ID)) != 0 ||
        (rc = zks_mp_read_bin_exact(&r, out->group_id, ZKS_GROUP_ID_LEN)) != 0 ||
        (rc = expect_key(&r, F_ROTATOR)) != 0 ||
        (rc = zks_mp_read_bin_exact(&r, out->rotator, ZKS_NODEID_LEN)) != 0 ||
        (rc = expect_key(&r, F_ENTRIES)) != 0 ||
        (rc = zks_mp_read_array(&r, &n, ZKS_ROTATION_MAX_RECIPIENTS)) != 0)
        goto fail;
    if (epoch == 0 || epoch > UINT32_MAX || n == 0) {
        rc = ZKS_EMALFORMED;
        goto fail;
    }
    for (uint32_t i = 0; i < n; i++) {
        size_t elen;
        if ((rc = zks_mp_read_bin(&r, &out->entries[i], &elen, ZKS_ROTATION_ENTRY_LEN)) != 0)
            goto fail;
        if (elen != ZKS_ROTATION_ENTRY_LEN) {
            rc = ZKS_EMALFORMED;
            goto fail;
        }
    }
    if ((rc = expect_key(&r, F_SIG)) != 0 ||
        (rc = zks_mp_read_bin_exact(&r, out->sig, ZKS_SIG_LEN)) != 0)
        goto fail;
    if (r.left != 0) {
        rc = ZKS_EMALFORMED;
        goto fail;
    }
    out->epoch = (uint32_t)epoch;
    out->n = n;
    return 0;
fail:
    memset(out, 0, sizeof *out);
    return rc;
}

int zks_rotation_open(zks_group **to, const zks_rotation *rot, const zks_group *from,
                      const zks_node_key *me)
{
    if (to == NULL)
        return ZKS_EINVAL;
    *to = NULL;
    if (rot == NULL || from == NULL || me == NULL || rot->n == 0 ||
        rot->n > ZKS_ROTATION_MAX_RECIPIENTS)
        return ZKS_EINVAL;
    if (zks_crypto_init() != 0)
        return ZKS_ECRYPTO;
    if (zks_group_epoch(from) == UINT32_MAX || rot->epoch != zks_group_epoch(from) + 1)
        return ZKS_EAUTH;
    uint8_t digest[32];
    digest_of(digest, from, rot->epoch, rot->group_id, rot->rotator, rot->entries, rot->n);
    if (zks_nodeid_verify(rot->rotator, rot->sig, digest, sizeof digest) != 0)
        return ZKS_EAUTH;
    const uint8_t *mine = NULL;
    for (size_t i = 0; i < rot->n && mine == NULL; i++)
        if (memcmp(rot->entries[i], zks_node_key_public(me), ZKS_NODEID_LEN) == 0)
            mine = rot->entries[i] + ZKS_NODEID_LEN;
    if (mine == NULL)
        return ZKS_ENOENT;
    uint8_t secret[ZKS_GROUP_SECRET_LEN];
    int rc = zks_node_key_box_open(me, secret, mine, ZKS_ROTATION_BOX_LEN);
    if (rc == 0)
        rc = zks_group_from_secret(to, secret, rot->epoch);
    sodium_memzero(secret, sizeof secret);
    if (rc == 0 && sodium_memcmp(zks_group_id(*to), rot->group_id, ZKS_GROUP_ID_LEN) != 0) {
        zks_group_free(*to);
        *to = NULL;
        rc = ZKS_EAUTH;
    }
    return rc;
}
